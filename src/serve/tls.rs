//! HTTPS for the serving helper (feature `tls`): rustls with the ring
//! provider, HTTP/1.1 only.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A certificate chain and its private key, ready to serve HTTPS with
/// [`Server::tls`](super::Server::tls).
///
/// rustls with the *ring* provider, chosen explicitly (no process-wide
/// provider needs installing), TLS 1.2 and 1.3, ALPN `http/1.1`, no client
/// certificates. Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1) from two files.
    ///
    /// # Errors
    ///
    /// An [`io::Error`] whose message names the file and what is wrong
    /// with it: it cannot be read, it holds no certificate or no private
    /// key, it is not valid PEM, or rustls refuses the pair (for example a
    /// key that does not match the certificate). The message never quotes
    /// the key file's content.
    pub fn from_pem_files(cert_path: impl AsRef<Path>, key_path: impl AsRef<Path>) -> io::Result<Self> {
        let cert_path = cert_path.as_ref();
        let key_path = key_path.as_ref();
        let certs = read_certs(
            CertificateDer::pem_file_iter(cert_path).map_err(|e| pem_error("certificate", cert_path, e))?,
            cert_path,
        )?;
        let key =
            PrivateKeyDer::from_pem_file(key_path).map_err(|e| pem_error("private key", key_path, e))?;
        Self::build(certs, key)
    }

    /// Same as [`from_pem_files`](Self::from_pem_files), from PEM text
    /// already in memory.
    ///
    /// # Errors
    ///
    /// As for [`from_pem_files`](Self::from_pem_files).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> io::Result<Self> {
        let here = Path::new("(in memory)");
        let certs = read_certs(CertificateDer::pem_slice_iter(cert_pem), here)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| pem_error("private key", here, e))?;
        Self::build(certs, key)
    }

    fn build(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> io::Result<Self> {
        // ring, chosen explicitly so no process-wide provider is needed.
        // rustls 0.23.48 deprecates it for lacking post-quantum key
        // exchange (aws-lc-rs has it, at the cost of a heavier C build);
        // the classical groups it offers are still the common choice.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS configuration: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid(format!("TLS certificate and private key rejected: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub(super) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

fn read_certs<I>(iter: I, path: &Path) -> io::Result<Vec<CertificateDer<'static>>>
where
    I: Iterator<Item = Result<CertificateDer<'static>, pem::Error>>,
{
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate", path, e))?;
    if certs.is_empty() {
        return Err(pem_error("certificate", path, pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// A clear message that never quotes file content (a malformed key file's
/// lines would otherwise end up in the error).
fn pem_error(what: &str, path: &Path, error: pem::Error) -> io::Error {
    let path = path.display();
    match error {
        pem::Error::Io(e) => io::Error::new(e.kind(), format!("TLS {what} file {path}: cannot read it: {e}")),
        pem::Error::NoItemsFound => invalid(format!("TLS {what} file {path}: no PEM {what} found in it")),
        pem::Error::SectionTooLarge => invalid(format!("TLS {what} file {path}: a PEM section is too large")),
        _ => invalid(format!("TLS {what} file {path}: not valid PEM")),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
