//! PayPal: RSA signatures checked against PayPal's certificate, with no
//! call back to PayPal (feature `paypal`).
//!
//! PayPal sends five headers, all required:
//!
//! | header | use |
//! |---|---|
//! | `PAYPAL-TRANSMISSION-ID` | signed; the delivery id and the dedupe key |
//! | `PAYPAL-TRANSMISSION-TIME` | RFC 3339, signed; checked against the tolerance and the route's clock |
//! | `PAYPAL-TRANSMISSION-SIG` | base64 RSASSA-PKCS1-v1_5 SHA-256 signature |
//! | `PAYPAL-AUTH-ALGO` | must be exactly `SHA256withRSA`: the algorithm is pinned, never chosen by the request |
//! | `PAYPAL-CERT-URL` | where PayPal's certificate lives; believed only after the checks below |
//!
//! The signed string is `<transmission id>|<transmission time>|<webhook
//! id>|<CRC-32 of the raw body, unsigned decimal>`. The webhook id is the
//! id of your subscription in PayPal's developer dashboard: it is never in
//! the request, so you give it ([`PayPal::builder`]).
//!
//! # The certificate
//!
//! `PAYPAL-CERT-URL` comes from the request, so anyone can name any
//! address. It is believed only when it is exactly
//! `https://<host>/v1/notifications/certs/<id>`, where `<host>` is one of
//! PayPal's certificate hosts and `<id>` is letters, digits and `-`: no
//! port (not even `:443`), no user info, no query or fragment, no IP
//! literal, no trailing dot, no percent-encoding, no other letter case.
//! Anything else is refused with 401 `untrusted_certificate` before any
//! certificate is looked up, so a request never chooses where the
//! receiver connects.
//!
//! The hosts: `api.paypal.com` and `api-m.paypal.com`, and with
//! [`PayPalBuilder::sandbox`] also `api.sandbox.paypal.com` and
//! `api-m.sandbox.paypal.com`. PayPal publishes no such list: these are
//! the hosts seen in real deliveries' certificate URLs (reported in
//! PayPal's SDK issue trackers) and the `api-m` API hosts PayPal's REST
//! documentation uses. [`PayPalBuilder::hosts`] replaces the list.
//!
//! The certificate itself comes from a [`CertificateSource`]:
//!
//! - [`PinnedCertificates`]: PEM certificates you give at build, offline.
//!   They are trusted as configured (no chain is validated), but each
//!   must be PayPal's message-verification certificate by name
//!   (`messageverificationcerts.paypal.com`, or
//!   `messageverificationcerts.sandbox.paypal.com` for a sandbox host),
//!   and valid at the route's clock when a delivery is checked.
//! - `FetchedCertificates` (feature `paypal-fetch`): fetches the
//!   certificate the URL names over HTTPS, validates its chain to trust
//!   anchors ([`TrustAnchors`]) and caches it, with timeouts, a size cap,
//!   one fetch per URL at a time and no redirects; see its module docs.
//! - Your own source: it gets the checked [`CertUrl`] and answers with
//!   [`PayPalCertificate`]s, or with [`CertificateError::Unavailable`],
//!   which the layer answers with 503 `certificate_unavailable` and
//!   `Retry-After` so PayPal retries, never with a 401 or a 500.
//!
//! ```
//! use webhook_guard::paypal::{PayPal, PinnedCertificates};
//! use webhook_guard::{Scheme, Verifier};
//!
//! # let pem = include_str!("../../tests/data/paypal/leaf.pem");
//! let paypal = PayPal::builder("4JH86294D6297924G")
//!     .certificates(PinnedCertificates::from_pem(pem)?)
//!     .build()?;
//! let verifier = Verifier::builder(Scheme::paypal(paypal)).build()?;
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use rustls_pki_types::{CertificateDer, ServerName};

#[cfg(feature = "paypal-fetch")]
mod fetch;
#[cfg(feature = "paypal-fetch")]
pub use fetch::{FetchedCertificates, FetchedCertificatesBuilder};

use super::{Algorithm, Algorithms, BodyFields, BodyRef, Field, Key, Parsed, Piece, Pieces, Signatures};
use crate::{ConfigError, Rejection, RejectionKind};

/// `PAYPAL-TRANSMISSION-ID`.
pub(crate) const TRANSMISSION_ID: HeaderName = HeaderName::from_static("paypal-transmission-id");
/// `PAYPAL-TRANSMISSION-TIME`.
pub(crate) const TRANSMISSION_TIME: HeaderName = HeaderName::from_static("paypal-transmission-time");
/// `PAYPAL-TRANSMISSION-SIG`.
pub(crate) const TRANSMISSION_SIG: HeaderName = HeaderName::from_static("paypal-transmission-sig");
/// `PAYPAL-CERT-URL`.
pub(crate) const CERT_URL: HeaderName = HeaderName::from_static("paypal-cert-url");
/// `PAYPAL-AUTH-ALGO`.
pub(crate) const AUTH_ALGO: HeaderName = HeaderName::from_static("paypal-auth-algo");

/// The one algorithm accepted.
const ALGO: &[u8] = b"SHA256withRSA";
/// The production certificate hosts.
const HOSTS: [&str; 2] = ["api.paypal.com", "api-m.paypal.com"];
/// The sandbox certificate hosts.
const SANDBOX_HOSTS: [&str; 2] = ["api.sandbox.paypal.com", "api-m.sandbox.paypal.com"];
/// The name PayPal's production signing certificate is issued to.
pub(crate) const CERT_NAME: &str = "messageverificationcerts.paypal.com";
/// The name of the sandbox signing certificate.
pub(crate) const SANDBOX_CERT_NAME: &str = "messageverificationcerts.sandbox.paypal.com";
/// The path every certificate URL starts with.
const CERT_PATH: &str = "/v1/notifications/certs/";
/// Longest certificate id accepted after [`CERT_PATH`].
const MAX_CERT_ID: usize = 128;
/// Longest transmission id (PayPal's schema says 50).
const MAX_TRANSMISSION_ID: usize = 64;
/// Longest signature, base64 (PayPal's schema says 500; RSA-4096 is 684).
const MAX_SIGNATURE_B64: usize = 684;
/// How long a client should wait when a certificate is unavailable.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// PayPal's environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Environment {
    /// Live payments.
    Live,
    /// PayPal's sandbox.
    Sandbox,
}

impl Environment {
    /// The name the signing certificate of this environment is issued to.
    pub fn certificate_name(self) -> &'static str {
        match self {
            Self::Live => CERT_NAME,
            Self::Sandbox => SANDBOX_CERT_NAME,
        }
    }
}

/// A certificate URL that passed the host check: `https`, a PayPal
/// certificate host, the certificate path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertUrl<'a> {
    url: &'a str,
    host: &'a str,
    environment: Environment,
}

impl<'a> CertUrl<'a> {
    /// The whole URL, as the request sent it.
    pub fn as_str(&self) -> &'a str {
        self.url
    }

    /// The host (one of the route's certificate hosts).
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The environment of the host.
    pub fn environment(&self) -> Environment {
        self.environment
    }
}

/// The certificate hosts a route believes, each with its environment.
#[derive(Debug, Clone)]
struct Hosts(Vec<(String, Environment)>);

impl Hosts {
    /// Checks `raw` (a header value: visible ASCII, bounded) against the
    /// exact URL shape. Pure string work: no network, no resolver.
    fn check<'a>(&'a self, raw: &'a str) -> Option<CertUrl<'a>> {
        let rest = raw.strip_prefix("https://")?;
        let slash = rest.find('/')?;
        let (host, path) = rest.split_at(slash);
        let environment = self
            .0
            .iter()
            .find(|(h, _)| h.as_str() == host)
            .map(|(_, env)| *env)?;
        let id = path.strip_prefix(CERT_PATH)?;
        let id_ok = !id.is_empty()
            && id.len() <= MAX_CERT_ID
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        id_ok.then_some(CertUrl {
            url: raw,
            host,
            environment,
        })
    }
}

/// The URL check with the default hosts (the sandbox ones too when
/// `sandbox`): whether `raw` is believed, and for which environment. For
/// the fuzz targets.
pub(crate) fn check_default_url(raw: &str, sandbox: bool) -> Option<Environment> {
    let live = HOSTS.iter().map(|h| ((*h).to_owned(), Environment::Live));
    let extra = SANDBOX_HOSTS
        .iter()
        .map(|h| ((*h).to_owned(), Environment::Sandbox));
    let hosts = Hosts(live.chain(extra.take(if sandbox { 2 } else { 0 })).collect());
    hosts.check(raw).map(|u| u.environment())
}

/// Why a [`CertificateSource`] has no certificate to give.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateError {
    /// The certificate cannot be had now (fetch failed, timed out, too
    /// large, the source is busy). Answered 503 `certificate_unavailable`
    /// with `Retry-After`: PayPal retries.
    Unavailable(String),
    /// The certificate was had, and is not to be trusted (wrong name, no
    /// chain to a trust anchor, expired). Answered 401
    /// `untrusted_certificate`.
    Untrusted(String),
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "PayPal's certificate is unavailable: {why}"),
            Self::Untrusted(why) => write!(f, "PayPal's certificate is not trusted: {why}"),
        }
    }
}

impl std::error::Error for CertificateError {}

/// What a [`CertificateSource`] answers.
pub type CertificateFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<[PayPalCertificate]>, CertificateError>> + Send + 'a>>;

/// Where a PayPal route gets the certificates to verify with. Called only
/// with a URL that passed the host check. Keep it quick when the answer is
/// cached: it is awaited on every delivery.
pub trait CertificateSource: Send + Sync + 'static {
    /// The certificates that may have signed a delivery naming `url`
    /// (usually one). Each must already be checked for the URL's
    /// environment ([`PayPalCertificate::for_environment`] does it); the
    /// layer still checks each one's validity at its own clock.
    fn certificates<'a>(&'a self, url: CertUrl<'a>) -> CertificateFuture<'a>;
}

/// One of PayPal's signing certificates, checked to be issued to the
/// message-verification name of its environment. Holds public data only.
#[derive(Clone)]
pub struct PayPalCertificate {
    der: CertificateDer<'static>,
    /// The certificate's RSA public key (PKCS#1 `RSAPublicKey`), taken
    /// from its SubjectPublicKeyInfo once, so a delivery costs one ring
    /// verification and no certificate parse.
    rsa_key: Arc<[u8]>,
    not_before: i64,
    not_after: i64,
    environment: Environment,
}

impl PayPalCertificate {
    /// Checks a DER certificate: it parses, it is issued to
    /// `environment`'s message-verification name, and its validity period
    /// can be read. Its chain is not checked here.
    ///
    /// # Errors
    ///
    /// [`CertificateError::Untrusted`] saying which check failed.
    pub fn for_environment(der: Vec<u8>, environment: Environment) -> Result<Self, CertificateError> {
        let der = CertificateDer::from(der);
        let untrusted = |why: &str| CertificateError::Untrusted(why.to_owned());
        let cert =
            webpki::EndEntityCert::try_from(&der).map_err(|_| untrusted("it does not parse as X.509"))?;
        let name = ServerName::try_from(environment.certificate_name())
            .map_err(|_| untrusted("the expected name is not a DNS name"))?;
        cert.verify_is_valid_for_subject_name(&name)
            .map_err(|_| untrusted("it is not issued to PayPal's message-verification name"))?;
        let (not_before, not_after) =
            x509_validity(&der).ok_or_else(|| untrusted("its validity cannot be read"))?;
        let spki = cert.subject_public_key_info();
        let rsa_key = rsa_public_key(spki.as_ref()).ok_or_else(|| untrusted("its key is not an RSA key"))?;
        drop(cert);
        Ok(Self {
            der,
            rsa_key: rsa_key.into(),
            not_before,
            not_after,
            environment,
        })
    }

    /// The certificate's DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The environment it was checked for.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The validity period, Unix seconds, both ends included.
    pub fn validity(&self) -> (i64, i64) {
        (self.not_before, self.not_after)
    }

    fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// RSASSA-PKCS1-v1_5 SHA-256 (2048 to 8192 bits) under the
    /// certificate's key.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &*self.rsa_key)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Debug for PayPalCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayPalCertificate")
            .field("environment", &self.environment)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The roots a fetched certificate chain must lead to. Give the roots
/// you trust for PayPal (PayPal's certificates chain to DigiCert's public
/// roots), for example from your system's store or the `webpki-roots`
/// crate.
#[derive(Clone)]
pub struct TrustAnchors(Arc<[rustls_pki_types::TrustAnchor<'static>]>);

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustAnchors({} roots)", self.0.len())
    }
}

impl TrustAnchors {
    /// Every `CERTIFICATE` block of `pem`, each a root.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidCertificate`] when there is none or a block
    /// is not a certificate.
    pub fn from_pem(pem: &str) -> Result<Self, ConfigError> {
        let blocks = pem_certificates(pem).ok_or(ConfigError::InvalidCertificate {
            reason: "a CERTIFICATE block is not valid PEM",
        })?;
        if blocks.is_empty() {
            return Err(ConfigError::InvalidCertificate {
                reason: "no CERTIFICATE block",
            });
        }
        let mut anchors = Vec::with_capacity(blocks.len());
        for der in blocks {
            let der = CertificateDer::from(der);
            let anchor =
                webpki::anchor_from_trusted_cert(&der).map_err(|_| ConfigError::InvalidCertificate {
                    reason: "a root is not an X.509 certificate",
                })?;
            anchors.push(anchor.to_owned());
        }
        Ok(Self(anchors.into()))
    }

    /// Roots already parsed (for example `webpki_roots::TLS_SERVER_ROOTS`).
    pub fn from_anchors(anchors: impl IntoIterator<Item = rustls_pki_types::TrustAnchor<'static>>) -> Self {
        Self(anchors.into_iter().collect())
    }

    /// Validates a chain as a certificate source receives it (the leaf
    /// first, then any intermediates, DER) for `environment` at `now`
    /// (Unix seconds): a path to one of these roots (rustls-webpki, with
    /// the server-authentication key purpose where the certificate names
    /// its purposes), the leaf issued to the environment's
    /// message-verification name, every certificate valid at `now`.
    ///
    /// # Errors
    ///
    /// [`CertificateError::Untrusted`] saying which check failed.
    pub fn validate(
        &self,
        chain: &[Vec<u8>],
        environment: Environment,
        now: i64,
    ) -> Result<PayPalCertificate, CertificateError> {
        let untrusted = |why: &str| CertificateError::Untrusted(why.to_owned());
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| untrusted("the chain is empty"))?;
        let leaf_der = CertificateDer::from(leaf.as_slice());
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let cert = webpki::EndEntityCert::try_from(&leaf_der)
            .map_err(|_| untrusted("the leaf does not parse as X.509"))?;
        let time = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now).unwrap_or(0),
        ));
        cert.verify_for_usage(
            &[
                webpki::ring::RSA_PKCS1_2048_8192_SHA256,
                webpki::ring::RSA_PKCS1_2048_8192_SHA384,
                webpki::ring::RSA_PKCS1_2048_8192_SHA512,
                webpki::ring::ECDSA_P256_SHA256,
                webpki::ring::ECDSA_P384_SHA384,
            ],
            &self.0,
            &intermediates,
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| CertificateError::Untrusted(format!("no valid chain to a trusted root ({e:?})")))?;
        let checked = PayPalCertificate::for_environment(leaf.clone(), environment)?;
        if !checked.valid_at(now) {
            return Err(untrusted("the leaf is not valid now"));
        }
        Ok(checked)
    }
}

/// Certificates given at build (PEM), used offline for every delivery
/// whose URL passes the host check; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct PinnedCertificates {
    live: Arc<[PayPalCertificate]>,
    sandbox: Arc<[PayPalCertificate]>,
}

impl PinnedCertificates {
    /// Every `CERTIFICATE` block of `pem`. Each must be issued to the live
    /// or the sandbox message-verification name; it serves deliveries of
    /// that environment.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidCertificate`] when there is no certificate,
    /// a block is not valid base64 or X.509, or a certificate is issued to
    /// another name.
    pub fn from_pem(pem: &str) -> Result<Self, ConfigError> {
        let blocks = pem_certificates(pem).ok_or(ConfigError::InvalidCertificate {
            reason: "a CERTIFICATE block is not valid PEM",
        })?;
        if blocks.is_empty() {
            return Err(ConfigError::InvalidCertificate {
                reason: "no CERTIFICATE block",
            });
        }
        let mut live = Vec::new();
        let mut sandbox = Vec::new();
        for der in blocks {
            if let Ok(cert) = PayPalCertificate::for_environment(der.clone(), Environment::Live) {
                live.push(cert);
            } else if let Ok(cert) = PayPalCertificate::for_environment(der, Environment::Sandbox) {
                sandbox.push(cert);
            } else {
                return Err(ConfigError::InvalidCertificate {
                    reason: "a certificate is not PayPal's message-verification certificate",
                });
            }
        }
        Ok(Self {
            live: live.into(),
            sandbox: sandbox.into(),
        })
    }
}

impl CertificateSource for PinnedCertificates {
    fn certificates<'a>(&'a self, url: CertUrl<'a>) -> CertificateFuture<'a> {
        let certs = match url.environment() {
            Environment::Live => &self.live,
            Environment::Sandbox => &self.sandbox,
        };
        let answer = if certs.is_empty() {
            Err(CertificateError::Untrusted(
                "no certificate is pinned for this environment".to_owned(),
            ))
        } else {
            Ok(Arc::clone(certs))
        };
        Box::pin(std::future::ready(answer))
    }
}

/// A PayPal route's configuration: the webhook id, the certificate hosts
/// and the certificate source. Build it with [`PayPal::builder`] and use
/// it through [`Scheme::paypal`](crate::Scheme::paypal).
#[derive(Clone)]
pub struct PayPal {
    webhook_id: String,
    hosts: Hosts,
    source: Arc<dyn CertificateSource>,
}

impl fmt::Debug for PayPal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayPal")
            .field("webhook_id", &self.webhook_id)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// Builder for [`PayPal`].
#[must_use]
pub struct PayPalBuilder {
    webhook_id: String,
    sandbox: bool,
    hosts: Option<Vec<(String, Environment)>>,
    source: Option<Arc<dyn CertificateSource>>,
}

impl fmt::Debug for PayPalBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayPalBuilder")
            .field("webhook_id", &self.webhook_id)
            .field("sandbox", &self.sandbox)
            .finish_non_exhaustive()
    }
}

impl PayPal {
    /// Starts a configuration for the subscription `webhook_id` (from
    /// PayPal's developer dashboard; it is part of the signed string).
    pub fn builder(webhook_id: impl Into<String>) -> PayPalBuilder {
        PayPalBuilder {
            webhook_id: webhook_id.into(),
            sandbox: false,
            hosts: None,
            source: None,
        }
    }
}

impl PayPalBuilder {
    /// Also accept PayPal's sandbox certificate hosts (and the sandbox
    /// certificate for them). Off by default.
    pub fn sandbox(mut self, on: bool) -> Self {
        self.sandbox = on;
        self
    }

    /// Replaces the certificate hosts: each exact host name with the
    /// environment whose certificate it serves. Lowercase DNS names only.
    pub fn hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = (S, Environment)>,
        S: Into<String>,
    {
        self.hosts = Some(hosts.into_iter().map(|(h, e)| (h.into(), e)).collect());
        self
    }

    /// Where certificates come from (required).
    pub fn certificates(mut self, source: impl CertificateSource) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPayPal`] for an empty or malformed webhook
    /// id, a host that is not a lowercase DNS name, or no certificate
    /// source.
    pub fn build(self) -> Result<PayPal, ConfigError> {
        let bad = |reason| ConfigError::InvalidPayPal { reason };
        let id = &self.webhook_id;
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("the webhook id must be 1 to 64 letters, digits, - or _"));
        }
        let hosts = self.hosts.unwrap_or_else(|| {
            let live = HOSTS.iter().map(|h| ((*h).to_owned(), Environment::Live));
            let sandbox = SANDBOX_HOSTS
                .iter()
                .map(|h| ((*h).to_owned(), Environment::Sandbox));
            live.chain(sandbox.take(if self.sandbox { SANDBOX_HOSTS.len() } else { 0 }))
                .collect()
        });
        if hosts.is_empty() {
            return Err(bad("no certificate host"));
        }
        for (host, _) in &hosts {
            let dns = !host.is_empty()
                && host.len() <= 253
                && !host.starts_with(['.', '-'])
                && !host.ends_with(['.', '-'])
                && host.contains('.')
                && host
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
                && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
            if !dns {
                return Err(bad(
                    "a certificate host must be a lowercase DNS name (no IP, port or trailing dot)",
                ));
            }
        }
        let source = self
            .source
            .ok_or(bad("no certificate source (PayPalBuilder::certificates)"))?;
        Ok(PayPal {
            webhook_id: self.webhook_id,
            hosts: Hosts(hosts),
            source,
        })
    }
}

impl super::Def for PayPal {
    fn is_timestamped(&self) -> bool {
        true
    }

    fn signs_delivery_id(&self) -> bool {
        true
    }

    fn needs_secrets(&self) -> bool {
        false
    }

    fn key(&self, index: usize, _secret: &str) -> Result<Key, ConfigError> {
        Err(ConfigError::InvalidSecretEncoding {
            index,
            reason: "a PayPal route takes no secret: give the webhook id and certificates to PayPal::builder",
        })
    }

    #[cfg(any(test, feature = "test-util"))]
    fn signing_key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        Key::rsa_signing(index, secret)
    }

    fn request_algorithms(&self) -> Algorithms {
        Algorithms::default().with(Algorithm::RsaPkcs1Sha256)
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        let [id, time, sig, url, algo] = super::find(
            headers,
            [
                &TRANSMISSION_ID,
                &TRANSMISSION_TIME,
                &TRANSMISSION_SIG,
                &CERT_URL,
                &AUTH_ALGO,
            ],
        );
        let sig = super::required(
            sig,
            &TRANSMISSION_SIG,
            RejectionKind::MissingSignature,
            RejectionKind::MalformedSignature,
        )?
        .as_bytes();
        let algo = super::required(
            algo,
            &AUTH_ALGO,
            RejectionKind::MissingSignature,
            RejectionKind::MalformedSignature,
        )?;
        if algo.as_bytes() != ALGO {
            return Err(super::bad_signature("PAYPAL-AUTH-ALGO is not SHA256withRSA"));
        }
        let signature = rsa_signature(sig).ok_or_else(|| {
            super::bad_signature("PAYPAL-TRANSMISSION-SIG is not the base64 of an RSA signature")
        })?;
        let mut signatures = Signatures::new();
        signatures.push_other(Algorithm::RsaPkcs1Sha256, signature)?;
        let id_value = super::required(
            id,
            &TRANSMISSION_ID,
            RejectionKind::MissingHeader,
            RejectionKind::MalformedHeader,
        )?;
        let id = id_value.as_bytes();
        if id.is_empty()
            || id.len() > MAX_TRANSMISSION_ID
            || !id
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return Err(Rejection::new(
                RejectionKind::MalformedHeader,
                "PAYPAL-TRANSMISSION-ID is not 1 to 64 letters, digits, - or _",
            ));
        }
        let time = super::required(
            time,
            &TRANSMISSION_TIME,
            RejectionKind::MissingTimestamp,
            RejectionKind::MalformedTimestamp,
        )?
        .as_bytes();
        // The same range as every other scheme's timestamp: 1970 up to
        // ten digits of seconds (the year 2286).
        let timestamp = rfc3339(time)
            .filter(|t| (0..=9_999_999_999).contains(t))
            .ok_or_else(|| {
                Rejection::new(
                    RejectionKind::MalformedTimestamp,
                    "PAYPAL-TRANSMISSION-TIME is not an RFC 3339 date-time",
                )
            })?;
        let url = super::required(
            url,
            &CERT_URL,
            RejectionKind::MissingHeader,
            RejectionKind::UntrustedCertificate,
        )?
        .as_bytes();
        Ok(Parsed {
            timestamp: Some(timestamp),
            signatures,
            content: Pieces::new(&[
                Piece::Bytes(id),
                Piece::Bytes(b"|"),
                Piece::Bytes(time),
                Piece::Bytes(b"|"),
                Piece::Bytes(self.webhook_id.as_bytes()),
                Piece::Bytes(b"|"),
                Piece::Body,
            ])
            .with_body_crc32(),
            id: Field::Header(id_value),
            event_type: Field::Body,
            key_ref: Some(url),
        })
    }

    fn request_key<'a>(&'a self, key_ref: &'a [u8], now: i64) -> Option<super::KeyFuture<'a>> {
        let untrusted = |why: &'static str| Rejection::new(RejectionKind::UntrustedCertificate, why);
        let url = match std::str::from_utf8(key_ref)
            .ok()
            .and_then(|raw| self.hosts.check(raw))
        {
            Some(url) => url,
            None => {
                return Some(Box::pin(std::future::ready(Err(untrusted(
                    "PAYPAL-CERT-URL is not a PayPal certificate address",
                )))))
            }
        };
        let environment = url.environment();
        let lookup = self.source.certificates(url);
        Some(Box::pin(async move {
            let certs = lookup.await.map_err(|e| match e {
                CertificateError::Unavailable(_) => Rejection::new(
                    RejectionKind::CertificateUnavailable,
                    "PayPal's certificate cannot be had now",
                )
                .with_retry_after(RETRY_AFTER),
                CertificateError::Untrusted(_) => untrusted("PayPal's certificate is not trusted"),
            })?;
            let usable: Vec<PayPalCertificate> = certs
                .iter()
                .filter(|c| c.environment == environment && c.valid_at(now))
                .cloned()
                .collect();
            if usable.is_empty() {
                return Err(untrusted("no PayPal certificate for this address is valid now"));
            }
            Ok(Key::Certificates(usable.into()))
        }))
    }

    fn body_fields(&self) -> Option<super::BodyFieldsFn> {
        Some(body_fields)
    }

    fn event_type_member(&self) -> Option<&'static str> {
        Some("event_type")
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
        use base64::Engine as _;
        let time = format_rfc3339(input.timestamp);
        let crc = crc32(input.body).to_string();
        let sig = key.sign(&[
            input.id.as_bytes(),
            b"|",
            time.as_bytes(),
            b"|",
            self.webhook_id.as_bytes(),
            b"|",
            crc.as_bytes(),
        ]);
        let host = self.hosts.0.first().map_or(HOSTS[0], |(h, _)| h.as_str());
        out.insert(TRANSMISSION_ID, super::value(input.id));
        out.insert(TRANSMISSION_TIME, super::value(&time));
        out.insert(
            TRANSMISSION_SIG,
            super::value(&base64::engine::general_purpose::STANDARD.encode(sig)),
        );
        out.insert(
            CERT_URL,
            super::value(&format!("https://{host}{CERT_PATH}CERT-360caa42-fca2a594-test")),
        );
        out.insert(AUTH_ALGO, super::value("SHA256withRSA"));
        out.insert(HeaderName::from_static("paypal-auth-version"), super::value("v2"));
    }
}

/// The event type is the body's `event_type`.
fn body_fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        id: None,
        event_type: super::json_str(body, "event_type"),
        action: None,
    }
}

/// Canonical standard base64 of 256 to 512 bytes (RSA-2048 to RSA-4096).
fn rsa_signature(raw: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    if raw.len() > MAX_SIGNATURE_B64 {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    (256..=512).contains(&bytes.len()).then_some(bytes)
}

/// CRC-32 (IEEE 802.3, as zlib), the checksum PayPal signs: eight bytes
/// a step with eight tables (slice-by-8), then byte by byte.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    const TABLES: [[u32; 256]; 8] = {
        let mut t = [[0u32; 256]; 8];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[0][i] = c;
            i += 1;
        }
        let mut k = 1;
        while k < 8 {
            let mut i = 0;
            while i < 256 {
                let prev = t[k - 1][i];
                t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
                i += 1;
            }
            k += 1;
        }
        t
    };
    let byte = |n: u32| usize::from(n as u8);
    let mut crc = !0u32;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let lo = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ crc;
        let hi = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        crc = TABLES[7][byte(lo)]
            ^ TABLES[6][byte(lo >> 8)]
            ^ TABLES[5][byte(lo >> 16)]
            ^ TABLES[4][byte(lo >> 24)]
            ^ TABLES[3][byte(hi)]
            ^ TABLES[2][byte(hi >> 8)]
            ^ TABLES[1][byte(hi >> 16)]
            ^ TABLES[0][byte(hi >> 24)];
    }
    for b in chunks.remainder() {
        crc = TABLES[0][byte(crc ^ u32::from(*b))] ^ (crc >> 8);
    }
    !crc
}

#[cfg(any(test, feature = "test-util"))]
pub(crate) use crate::timestamp::format_rfc3339;
pub(crate) use crate::timestamp::rfc3339;

/// The DER of every `CERTIFICATE` block of a PEM text; `None` if a block
/// is not base64.
pub(crate) fn pem_certificates(pem: &str) -> Option<Vec<Vec<u8>>> {
    use base64::Engine as _;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let end = after.find(END)?;
        let b64: String = after[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        out.push(base64::engine::general_purpose::STANDARD.decode(b64).ok()?);
        rest = &after[end + END.len()..];
    }
    Some(out)
}

/// The validity period (notBefore, notAfter) of a DER certificate, Unix
/// seconds. Walks `Certificate → tbsCertificate → validity` only.
fn x509_validity(der: &[u8]) -> Option<(i64, i64)> {
    let (tag, cert, _) = der_next(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, tbs, _) = der_next(cert)?;
    if tag != 0x30 {
        return None;
    }
    let mut rest = tbs;
    let mut field = 0;
    loop {
        let (tag, value, next) = der_next(rest)?;
        rest = next;
        if field == 0 && tag == 0xa0 {
            continue; // the explicit version
        }
        field += 1;
        // serialNumber, signature, issuer, validity.
        if field == 4 {
            if tag != 0x30 {
                return None;
            }
            let (t1, not_before, after) = der_next(value)?;
            let (t2, not_after, _) = der_next(after)?;
            return Some((der_time(t1, not_before)?, der_time(t2, not_after)?));
        }
    }
}

/// The PKCS#1 `RSAPublicKey` inside an RSA SubjectPublicKeyInfo
/// (`SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING }`).
fn rsa_public_key(spki: &[u8]) -> Option<Vec<u8>> {
    /// 1.2.840.113549.1.1.1, rsaEncryption.
    const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let (tag, content, _) = der_next(spki)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, algorithm, rest) = der_next(content)?;
    let (oid_tag, oid, _) = der_next(algorithm)?;
    if tag != 0x30 || oid_tag != 0x06 || oid != RSA_ENCRYPTION {
        return None;
    }
    let (tag, bits, _) = der_next(rest)?;
    match (tag, bits.split_first()) {
        (0x03, Some((0, key))) if !key.is_empty() => Some(key.to_vec()),
        _ => None,
    }
}

/// One DER element: its tag, its content and what follows it.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        (bytes.iter().fold(0usize, |l, b| (l << 8) | usize::from(*b)), rest)
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((tag, value, rest))
}

/// UTCTime (`YYMMDDhhmmssZ`) or GeneralizedTime (`YYYYMMDDhhmmssZ`).
fn der_time(tag: u8, value: &[u8]) -> Option<i64> {
    let digits = |s: &[u8]| -> Option<Vec<u8>> { s.iter().all(u8::is_ascii_digit).then(|| s.to_vec()) };
    let full: Vec<u8> = match (tag, value.len()) {
        (0x17, 13) if value[12] == b'Z' => {
            let yy = digits(&value[..2])?;
            let century: &[u8] = if yy[0] < b'5' { b"20" } else { b"19" };
            [century, &value[..12]].concat()
        }
        (0x18, 15) if value[14] == b'Z' => digits(&value[..14])?,
        _ => return None,
    };
    let s = |a: usize, b: usize| std::str::from_utf8(&full[a..b]).ok();
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        s(0, 4)?,
        s(4, 6)?,
        s(6, 8)?,
        s(8, 10)?,
        s(10, 12)?,
        s(12, 14)?
    );
    rfc3339(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        // Every length against the bit-by-bit definition.
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in 0..data.len() {
            let slow = !data[..len].iter().fold(!0u32, |mut c, b| {
                c ^= u32::from(*b);
                for _ in 0..8 {
                    c = if c & 1 != 0 {
                        0xedb8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                }
                c
            });
            assert_eq!(crc32(&data[..len]), slow, "length {len}");
        }
        let body = include_bytes!("../../tests/data/paypal/sandbox-2015-body.json");
        assert_eq!(crc32(body), 2_771_810_304);
    }

    #[test]
    fn transmission_times_outside_the_timestamp_range_are_malformed() {
        let paypal = PayPal::builder("WH-1")
            .certificates(PinnedCertificates {
                live: Arc::from(Vec::new()),
                sandbox: Arc::from(Vec::new()),
            })
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        for (time, ok) in [
            ("2015-05-18T15:45:13Z", true),
            ("1007-05-18T15:45:13Z", false),
            ("1969-12-31T23:59:59Z", false),
            ("2286-11-20T17:46:39Z", true),
            ("2286-11-20T17:46:40Z", false),
        ] {
            let mut h = HeaderMap::new();
            for (k, v) in [
                ("paypal-transmission-id", "dfb3be50-fd74-11e4-8bf3-77339302725b"),
                ("paypal-transmission-time", time),
                (
                    "paypal-cert-url",
                    "https://api.paypal.com/v1/notifications/certs/CERT-1",
                ),
                ("paypal-auth-algo", "SHA256withRSA"),
            ] {
                h.insert(HeaderName::from_static(k), http::HeaderValue::from_static(v));
            }
            let sig = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 256]);
            h.insert(
                TRANSMISSION_SIG,
                http::HeaderValue::from_str(&sig).unwrap_or_else(|e| panic!("{e}")),
            );
            let parsed = super::super::Def::parse(&paypal, &h);
            match (parsed, ok) {
                (Ok(p), true) => assert!(p.timestamp.is_some(), "{time}"),
                (Err(r), false) => assert_eq!(r.kind(), RejectionKind::MalformedTimestamp, "{time}"),
                (other, _) => panic!("{time}: {:?}", other.map(|p| p.timestamp)),
            }
        }
    }

    #[test]
    fn rfc3339_is_strict() {
        assert_eq!(rfc3339(b"2015-05-18T15:45:13Z"), Some(1_431_963_913));
        assert_eq!(rfc3339(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339(b"2015-05-18T17:45:13+02:00"), Some(1_431_963_913));
        assert_eq!(rfc3339(b"2015-05-18T15:45:13.123456Z"), Some(1_431_963_913));
        assert_eq!(rfc3339(b"2024-02-29T00:00:00Z"), Some(1_709_164_800));
        for bad in [
            &b"2015-05-18 15:45:13Z"[..],
            b"2015-05-18T15:45:13",
            b"2015-13-18T15:45:13Z",
            b"2023-02-29T00:00:00Z",
            b"2015-05-18T24:00:00Z",
            b"2015-05-18T15:45:13.Z",
            b"2015-05-18T15:45:13+2:00",
            b"+015-05-18T15:45:13Z",
            b"1431963913",
        ] {
            assert_eq!(rfc3339(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        for unix in [0, 1_431_963_913, 1_709_164_800, 4_102_444_800] {
            assert_eq!(rfc3339(format_rfc3339(unix).as_bytes()), Some(unix));
        }
    }

    #[test]
    fn the_url_check_refuses_every_trick() {
        let hosts = Hosts(vec![
            ("api.paypal.com".to_owned(), Environment::Live),
            ("api.sandbox.paypal.com".to_owned(), Environment::Sandbox),
        ]);
        let ok = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77";
        assert_eq!(hosts.check(ok).map(|u| u.environment()), Some(Environment::Live));
        let sandbox = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-1";
        assert_eq!(
            hosts.check(sandbox).map(|u| u.environment()),
            Some(Environment::Sandbox)
        );
        for bad in [
            "http://api.paypal.com/v1/notifications/certs/CERT-1",
            "HTTPS://api.paypal.com/v1/notifications/certs/CERT-1",
            "https://API.PAYPAL.COM/v1/notifications/certs/CERT-1",
            "https://api.paypal.com:443/v1/notifications/certs/CERT-1",
            "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
            "https://user@api.paypal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com@evil.example/v1/notifications/certs/CERT-1",
            "https://api.paypal.com./v1/notifications/certs/CERT-1",
            "https://api%2epaypal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1",
            "https://evil.example/api.paypal.com/v1/notifications/certs/CERT-1",
            "https://xn--pypal-4ve.com/v1/notifications/certs/CERT-1",
            "https://64.4.250.36/v1/notifications/certs/CERT-1",
            "https://[::1]/v1/notifications/certs/CERT-1",
            "https://api.paypal.com/v1/notifications/certs/",
            "https://api.paypal.com/v1/notifications/certs/CERT-1?x=1",
            "https://api.paypal.com/v1/notifications/certs/CERT-1#x",
            "https://api.paypal.com/v1/notifications/certs/../../oauth2/token",
            "https://api.paypal.com/v1/notifications/certs/CERT%2d1",
            "https://api.paypal.com/v1/notifications/certs/CERT-1/",
            "https://api.paypal.com/v1/notifications/CERT-1",
            "https://api.paypal.com//v1/notifications/certs/CERT-1",
            "https://api.paypal.com\\@evil.example/v1/notifications/certs/CERT-1",
            "//api.paypal.com/v1/notifications/certs/CERT-1",
            "",
        ] {
            assert!(hosts.check(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn validity_is_read_from_the_certificate() {
        let pem = include_str!("../../tests/data/paypal/sandbox-2015.pem");
        let der = pem_certificates(pem).unwrap_or_default();
        assert_eq!(der.len(), 1);
        // 2015-03-18T00:00:00Z to 2017-03-22T12:00:00Z.
        assert_eq!(x509_validity(&der[0]), Some((1_426_636_800, 1_490_184_000)));
        assert_eq!(x509_validity(&der[0][..40]), None);
        assert_eq!(x509_validity(b""), None);
    }
}
