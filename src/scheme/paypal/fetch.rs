//! [`FetchedCertificates`]: PayPal's certificate fetched from the URL a
//! delivery names, its chain validated, and cached (feature
//! `paypal-fetch`). The user-facing docs are on the type.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{OnceCell, Semaphore};
use tokio_rustls::rustls;

use super::{
    pem_certificates, CertUrl, CertificateError, CertificateFuture, CertificateSource, PayPalCertificate,
    TrustAnchors,
};
use crate::{Clock, ConfigError, SystemClock};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY_BYTES: usize = 64 * 1024;
const TTL: Duration = Duration::from_secs(24 * 60 * 60);
const FAILURE_TTL: Duration = Duration::from_secs(30);
const CACHE_CAPACITY: usize = 64;
const MAX_IN_FLIGHT: usize = 4;
/// hyper's read buffer (its smallest is 8 KiB): bounds the response head.
const READ_BUFFER: usize = 16 * 1024;

type Answer = Result<Arc<[PayPalCertificate]>, CertificateError>;

/// A [`CertificateSource`] that fetches the certificate a delivery names
/// over HTTPS, validates its chain and caches it (feature
/// `paypal-fetch`). Cloning shares the cache.
///
/// ```no_run
/// use webhook_guard::paypal::{FetchedCertificates, PayPal};
/// use webhook_guard::{Scheme, Verifier};
///
/// let paypal = PayPal::builder("4JH86294D6297924G")
///     .certificates(FetchedCertificates::with_webpki_roots().build()?)
///     .build()?;
/// let verifier = Verifier::builder(Scheme::paypal(paypal)).build()?;
/// # Ok::<(), webhook_guard::ConfigError>(())
/// ```
///
/// # What it does with a certificate URL
///
/// The route has already checked the URL to the letter (`https`, one of
/// the route's PayPal hosts, the certificate path; see the
/// [PayPal module docs](crate::paypal)): nothing else ever reaches the fetcher, so
/// a request cannot make the receiver connect anywhere but to a PayPal
/// certificate host, on port 443.
///
/// 1. The cache is asked first (keyed by the whole URL).
/// 2. On a miss, one `GET` over HTTPS: rustls (ring), SNI and the server
///    certificate checked against the URL's host, HTTP/1.1 by hyper. Only
///    `200` is taken; redirects are never followed (a `3xx` is a failure,
///    so a redirect to another host is never contacted).
/// 3. The body is PEM: the leaf first, then any intermediates. The
///    intermediates given with [`FetchedCertificatesBuilder::intermediates`]
///    are added after them (PayPal has served only the leaf, and PayPal's
///    SDKs ship DigiCert's intermediate for that reason).
/// 4. The chain is validated with [`TrustAnchors::validate`] at the
///    builder's clock: a path to a trust anchor (server-authentication
///    purpose), the leaf issued to `messageverificationcerts.paypal.com`
///    (or the sandbox name for a sandbox host), every certificate valid.
///
/// What the layer answers:
///
/// | outcome | answer |
/// |---|---|
/// | validated | the signature is checked with the leaf |
/// | connect or TLS failure, timeout, a status other than 200, a body over the cap, a body that is not PEM certificates, too many fetches in flight | 503 `certificate_unavailable` with `Retry-After`: PayPal retries |
/// | a chain that does not validate (unknown root, wrong name, expired) | 401 `untrusted_certificate` |
///
/// # Defaults and why each limit exists
///
/// | setting | default | why |
/// |---|---|---|
/// | [`tls_roots`](FetchedCertificatesBuilder::tls_roots) | the chain anchors | the HTTPS server must prove it is the PayPal host (no man in the middle can serve its own certificate) |
/// | [`connect_timeout`](FetchedCertificatesBuilder::connect_timeout) | 5 s (DNS, TCP and TLS handshake) | a host that does not answer must not hold the delivery |
/// | [`timeout`](FetchedCertificatesBuilder::timeout) | 10 s, the whole fetch | a server that trickles bytes must not either |
/// | [`max_body_bytes`](FetchedCertificatesBuilder::max_body_bytes) | 64 KiB | memory: a PEM chain is a few KiB; reading stops at the cap |
/// | [`ttl`](FetchedCertificatesBuilder::ttl) | 24 h, and never past the leaf's `notAfter` | amplification: one fetch serves every delivery signed with the same certificate (PayPal itself serves it with `max-age=86400`) |
/// | [`failure_ttl`](FetchedCertificatesBuilder::failure_ttl) | 30 s, for unavailable and untrusted results | amplification: a flood of deliveries naming a broken URL costs one fetch per 30 s, not one per delivery |
/// | [`cache_capacity`](FetchedCertificatesBuilder::cache_capacity) | 64 URLs, the oldest evicted | memory: certificate ids come from requests, so anyone can name new ones |
/// | [`max_in_flight`](FetchedCertificatesBuilder::max_in_flight) | 4 fetches at once; past it, unavailable at once | amplification: a flood of new certificate ids cannot open more than 4 connections to PayPal |
/// | one fetch per URL | always | concurrent deliveries naming the same URL wait for the fetch in flight |
/// | [`clock`](FetchedCertificatesBuilder::clock) | [`SystemClock`] | the chain's validity and the cache's expiry are read from it |
///
/// Nothing blocks a thread: the fetch is async, awaited by the first
/// delivery that needs it (if that delivery goes away, the next waiting
/// one carries the fetch on). Cache entries hold public certificates
/// only.
///
/// # Roots
///
/// [`FetchedCertificates::with_webpki_roots`] trusts the Mozilla roots of
/// the `webpki-roots` crate, both for the HTTPS connection and for the
/// certificate chain (PayPal's certificates chain to DigiCert's public
/// roots). [`FetchedCertificates::builder`] takes the chain's anchors you
/// choose; the HTTPS connection trusts the same ones unless
/// [`tls_roots`](FetchedCertificatesBuilder::tls_roots) says otherwise.
///
/// Mozilla's list (`webpki-roots` 1.0.10) no longer has DigiCert's 2006
/// roots, *DigiCert Global Root CA* and *DigiCert High Assurance EV Root
/// CA*, and the published 2015 sandbox certificate chained to the second.
/// If PayPal's certificate of the day still chains to one of them, every
/// delivery is answered 401 `untrusted_certificate` with
/// [`with_webpki_roots`](FetchedCertificates::with_webpki_roots): trust
/// the system's store instead (which may still carry them), for example:
///
/// ```no_run
/// use webhook_guard::paypal::{FetchedCertificates, TrustAnchors};
///
/// let pem = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt")?;
/// let fetcher = FetchedCertificates::builder(TrustAnchors::from_pem(&pem)?).build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Connecting elsewhere: `resolve`
///
/// [`FetchedCertificatesBuilder::resolve`] connects to a fixed address for
/// a host, like curl's `--resolve`: the TLS handshake still sends and
/// verifies that host's name, so the server must still hold a certificate
/// for it. It is for tests (a loopback server) and for a fixed egress
/// address. It is configuration: nothing in a request changes where the
/// fetcher connects.
#[derive(Clone)]
pub struct FetchedCertificates {
    inner: Arc<Inner>,
}

struct Inner {
    anchors: TrustAnchors,
    intermediates: Vec<Vec<u8>>,
    tls: tokio_rustls::TlsConnector,
    tls_roots: usize,
    clock: Arc<dyn Clock>,
    resolve: HashMap<String, SocketAddr>,
    connect_timeout: Duration,
    total_timeout: Duration,
    max_body_bytes: usize,
    ttl_ms: i64,
    failure_ttl_ms: i64,
    cache_capacity: usize,
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    fetches: AtomicUsize,
    cache: Mutex<Cache>,
}

/// The answer of one fetch and when it stops being used (clock
/// milliseconds).
struct Outcome {
    answer: Answer,
    expires_ms: i64,
}

/// One URL's entry: its fetch (pending until the cell is set) and its age.
struct Slot {
    cell: Arc<OnceCell<Outcome>>,
    seq: u64,
}

#[derive(Default)]
struct Cache {
    slots: HashMap<String, Slot>,
    next_seq: u64,
}

impl Cache {
    /// The cell to await for `url`: the cached or pending one, or a new
    /// one (evicting expired entries, then the oldest finished one, then
    /// the oldest).
    fn cell(&mut self, url: &str, now_ms: i64, capacity: usize) -> Arc<OnceCell<Outcome>> {
        let live = |slot: &Slot| slot.cell.get().is_none_or(|o| now_ms < o.expires_ms);
        if let Some(slot) = self.slots.get(url) {
            if live(slot) {
                return Arc::clone(&slot.cell);
            }
        }
        self.slots.remove(url);
        if self.slots.len() >= capacity {
            self.slots.retain(|_, slot| live(slot));
        }
        while self.slots.len() >= capacity {
            let oldest = |done: bool| {
                self.slots
                    .iter()
                    .filter(|(_, s)| !done || s.cell.initialized())
                    .min_by_key(|(_, s)| s.seq)
                    .map(|(k, _)| k.clone())
            };
            match oldest(true).or_else(|| oldest(false)) {
                Some(key) => self.slots.remove(&key),
                None => break,
            };
        }
        let cell = Arc::new(OnceCell::new());
        self.next_seq = self.next_seq.wrapping_add(1);
        self.slots.insert(
            url.to_owned(),
            Slot {
                cell: Arc::clone(&cell),
                seq: self.next_seq,
            },
        );
        cell
    }
}

impl fmt::Debug for FetchedCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        let cached = i
            .cache
            .lock()
            .map_or_else(|e| e.into_inner().slots.len(), |c| c.slots.len());
        f.debug_struct("FetchedCertificates")
            .field("anchors", &i.anchors)
            .field("tls_roots", &i.tls_roots)
            .field("intermediates", &i.intermediates.len())
            .field("resolve", &i.resolve.len())
            .field("connect_timeout", &i.connect_timeout)
            .field("timeout", &i.total_timeout)
            .field("max_body_bytes", &i.max_body_bytes)
            .field("ttl_ms", &i.ttl_ms)
            .field("failure_ttl_ms", &i.failure_ttl_ms)
            .field("cache_capacity", &i.cache_capacity)
            .field("cached", &cached)
            .field("max_in_flight", &i.max_in_flight)
            .field(
                "in_flight",
                &(i.max_in_flight - i.permits.available_permits().min(i.max_in_flight)),
            )
            .field("fetches", &i.fetches.load(Ordering::Relaxed))
            .finish()
    }
}

impl FetchedCertificates {
    /// Starts a configuration whose chains must lead to `anchors` (and
    /// whose HTTPS connections trust the same roots, unless
    /// [`FetchedCertificatesBuilder::tls_roots`] says otherwise).
    pub fn builder(anchors: TrustAnchors) -> FetchedCertificatesBuilder {
        FetchedCertificatesBuilder {
            anchors,
            tls_roots: None,
            intermediates: Vec::new(),
            bad_intermediates: None,
            clock: Arc::new(SystemClock),
            resolve: HashMap::new(),
            connect_timeout: CONNECT_TIMEOUT,
            total_timeout: TOTAL_TIMEOUT,
            max_body_bytes: MAX_BODY_BYTES,
            ttl: TTL,
            failure_ttl: FAILURE_TTL,
            cache_capacity: CACHE_CAPACITY,
            max_in_flight: MAX_IN_FLIGHT,
        }
    }

    /// [`builder`](Self::builder) with the Mozilla roots of the
    /// `webpki-roots` crate, for the chain and the HTTPS connection.
    pub fn with_webpki_roots() -> FetchedCertificatesBuilder {
        Self::builder(TrustAnchors::from_anchors(
            webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
        ))
    }

    /// How many fetches were started (each one connection attempt), for
    /// monitoring.
    pub fn fetches(&self) -> usize {
        self.inner.fetches.load(Ordering::Relaxed)
    }
}

impl CertificateSource for FetchedCertificates {
    fn certificates<'a>(&'a self, url: CertUrl<'a>) -> CertificateFuture<'a> {
        Box::pin(self.inner.lookup(url))
    }
}

impl Inner {
    async fn lookup(&self, url: CertUrl<'_>) -> Answer {
        let now_ms = self.clock.now_unix_millis();
        let cell = {
            let mut cache = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cache.cell(url.as_str(), now_ms, self.cache_capacity)
        };
        let outcome = cell.get_or_init(|| self.fetch(url)).await;
        outcome.answer.clone()
    }

    /// One fetch and its validation, under the in-flight cap.
    async fn fetch(&self, url: CertUrl<'_>) -> Outcome {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            // Not remembered: the URL may be fine.
            return Outcome {
                answer: Err(unavailable("too many certificate fetches in flight")),
                expires_ms: i64::MIN,
            };
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let body = tokio::time::timeout(self.total_timeout, self.get(url))
            .await
            .unwrap_or_else(|_| Err(unavailable("the certificate fetch timed out")));
        drop(permit);
        let answer = body.and_then(|body| self.validate(&body, url));
        let now_ms = self.clock.now_unix_millis();
        let expires_ms = match &answer {
            Ok(certs) => certs.iter().fold(now_ms.saturating_add(self.ttl_ms), |at, c| {
                at.min(c.validity().1.saturating_mul(1000))
            }),
            Err(_) => now_ms.saturating_add(self.failure_ttl_ms),
        };
        Outcome { answer, expires_ms }
    }

    fn validate(&self, body: &[u8], url: CertUrl<'_>) -> Answer {
        let pem = std::str::from_utf8(body).map_err(|_| unavailable("the response is not PEM text"))?;
        let mut chain = pem_certificates(pem)
            .ok_or_else(|| unavailable("the response has a malformed CERTIFICATE block"))?;
        if chain.is_empty() {
            return Err(unavailable("the response has no CERTIFICATE block"));
        }
        chain.extend(self.intermediates.iter().cloned());
        let cert = self
            .anchors
            .validate(&chain, url.environment(), self.clock.now_unix())?;
        Ok(Arc::from(vec![cert]))
    }

    /// `GET` the URL: the status must be 200 and the body within the cap.
    async fn get(&self, url: CertUrl<'_>) -> Result<Vec<u8>, CertificateError> {
        let host = url.host();
        let path = url
            .as_str()
            .strip_prefix("https://")
            .and_then(|rest| rest.strip_prefix(host))
            .filter(|path| path.starts_with('/'))
            .ok_or_else(|| unavailable("the URL has no path"))?;
        let tls = tokio::time::timeout(self.connect_timeout, self.connect(host))
            .await
            .unwrap_or_else(|_| Err(unavailable("connecting timed out")))?;
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(READ_BUFFER)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
            .await
            .map_err(|_| unavailable("the HTTP handshake failed"))?;
        // The connection runs beside the exchange and ends with it (on
        // return, error or timeout alike).
        let _connection = AbortOnDrop(tokio::spawn(connection).abort_handle());
        let request = http::Request::get(path)
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "webhook-guard")
            .header(http::header::ACCEPT, "*/*")
            .body(Empty::new())
            .map_err(|_| unavailable("the request cannot be built"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| unavailable("the request failed"))?;
        let status = response.status();
        if status != http::StatusCode::OK {
            return Err(CertificateError::Unavailable(if status.is_redirection() {
                format!("answered {status}; redirects are not followed")
            } else {
                format!("answered {status}")
            }));
        }
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes as u64) {
            return Err(unavailable("the response is larger than the cap"));
        }
        let mut body = response.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| unavailable("reading the response failed"))?;
            if let Ok(data) = frame.into_data() {
                if out.len().saturating_add(data.len()) > self.max_body_bytes {
                    return Err(unavailable("the response is larger than the cap"));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    }

    /// TCP to the host's address (or its `resolve` address), then TLS
    /// with SNI and verification for the host's name.
    async fn connect(
        &self,
        host: &str,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, CertificateError> {
        let addresses: Vec<SocketAddr> = match self.resolve.get(host) {
            Some(address) => vec![*address],
            None => tokio::net::lookup_host((host, 443))
                .await
                .map_err(|_| unavailable("the host name does not resolve"))?
                .collect(),
        };
        let mut tcp = None;
        for address in addresses {
            if let Ok(stream) = TcpStream::connect(address).await {
                tcp = Some(stream);
                break;
            }
        }
        let tcp = tcp.ok_or_else(|| unavailable("no address of the host accepts connections"))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| unavailable("the host is not a DNS name"))?;
        self.tls
            .connect(name, tcp)
            .await
            .map_err(|_| unavailable("the TLS handshake failed (or the server's certificate is not trusted)"))
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn unavailable(why: &str) -> CertificateError {
    CertificateError::Unavailable(why.to_owned())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Builder for [`FetchedCertificates`]; every setting has a default (see
/// [`FetchedCertificates`]).
#[must_use]
pub struct FetchedCertificatesBuilder {
    anchors: TrustAnchors,
    tls_roots: Option<TrustAnchors>,
    intermediates: Vec<Vec<u8>>,
    bad_intermediates: Option<&'static str>,
    clock: Arc<dyn Clock>,
    resolve: HashMap<String, SocketAddr>,
    connect_timeout: Duration,
    total_timeout: Duration,
    max_body_bytes: usize,
    ttl: Duration,
    failure_ttl: Duration,
    cache_capacity: usize,
    max_in_flight: usize,
}

impl fmt::Debug for FetchedCertificatesBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedCertificatesBuilder")
            .field("anchors", &self.anchors)
            .field("tls_roots", &self.tls_roots)
            .field("intermediates", &self.intermediates.len())
            .field("resolve", &self.resolve.len())
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.total_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("ttl", &self.ttl)
            .field("failure_ttl", &self.failure_ttl)
            .field("cache_capacity", &self.cache_capacity)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl FetchedCertificatesBuilder {
    /// The roots the HTTPS server's certificate must chain to. Default:
    /// the chain anchors given to [`FetchedCertificates::builder`].
    pub fn tls_roots(mut self, roots: TrustAnchors) -> Self {
        self.tls_roots = Some(roots);
        self
    }

    /// Intermediates (every `CERTIFICATE` block of `pem`) added after the
    /// ones the server sends, for a server that sends only the leaf. May
    /// be called more than once.
    pub fn intermediates(mut self, pem: &str) -> Self {
        match pem_certificates(pem) {
            Some(blocks) if !blocks.is_empty() => self.intermediates.extend(blocks),
            Some(_) => self.bad_intermediates = Some("no CERTIFICATE block in the intermediates"),
            None => self.bad_intermediates = Some("an intermediate is not valid PEM"),
        }
        self
    }

    /// The clock the chain's validity and the cache's expiry are read
    /// from. Default: [`SystemClock`]. (Timeouts use tokio's timer.)
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Connects to `address` for `host` instead of resolving it, like
    /// curl's `--resolve`: the TLS handshake still sends and verifies
    /// `host`'s name. For tests and fixed egress addresses; see the
    /// [`FetchedCertificates`](FetchedCertificates#connecting-elsewhere-resolve).
    pub fn resolve(mut self, host: impl Into<String>, address: SocketAddr) -> Self {
        self.resolve.insert(host.into(), address);
        self
    }

    /// The longest the name lookup, TCP connect and TLS handshake may
    /// take together. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest a whole fetch may take. Default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.total_timeout = timeout;
        self
    }

    /// The largest response body read; a larger one is a failure and is
    /// not read further. Default 64 KiB.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How long a fetched certificate is used before it is fetched again
    /// (never past the leaf's `notAfter`). Default 24 h.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a failed fetch (unavailable or untrusted) is remembered
    /// before the URL is tried again. Default 30 s.
    pub fn failure_ttl(mut self, ttl: Duration) -> Self {
        self.failure_ttl = ttl;
        self
    }

    /// How many URLs are cached; the oldest entry is evicted. Default 64.
    pub fn cache_capacity(mut self, entries: usize) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// How many fetches may run at once; a lookup that would start one
    /// more is unavailable at once. Default 4.
    pub fn max_in_flight(mut self, fetches: usize) -> Self {
        self.max_in_flight = fetches;
        self
    }

    /// Checks the configuration and builds the TLS client.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidCertificate`] for intermediates that are not
    /// PEM certificates; [`ConfigError::InvalidPayPal`] for a zero
    /// timeout, cap, TTL or capacity, an empty `resolve` host, or TLS
    /// roots that rustls refuses.
    pub fn build(self) -> Result<FetchedCertificates, ConfigError> {
        if let Some(reason) = self.bad_intermediates {
            return Err(ConfigError::InvalidCertificate { reason });
        }
        let bad = |reason| ConfigError::InvalidPayPal { reason };
        if self.connect_timeout.is_zero() || self.total_timeout.is_zero() {
            return Err(bad("the certificate fetch timeouts must be above zero"));
        }
        if self.max_body_bytes == 0 || self.cache_capacity == 0 || self.max_in_flight == 0 {
            return Err(bad(
                "the certificate body cap, cache capacity and in-flight cap must be above zero",
            ));
        }
        if self.ttl.is_zero() || self.failure_ttl.is_zero() {
            return Err(bad("the certificate cache TTLs must be above zero"));
        }
        if self.resolve.keys().any(String::is_empty) {
            return Err(bad("a resolve host is empty"));
        }
        let roots = self.tls_roots.as_ref().unwrap_or(&self.anchors);
        let store = rustls::RootCertStore {
            roots: roots.0.to_vec(),
        };
        let tls_roots = store.roots.len();
        // ring, chosen explicitly so no process-wide provider is needed
        // (as in the serving helper); rustls 0.23.48 deprecates it for
        // lacking post-quantum key exchange.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| bad("rustls refuses its default protocol versions"))?
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(FetchedCertificates {
            inner: Arc::new(Inner {
                anchors: self.anchors,
                intermediates: self.intermediates,
                tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
                tls_roots,
                clock: self.clock,
                resolve: self.resolve,
                connect_timeout: self.connect_timeout,
                total_timeout: self.total_timeout,
                max_body_bytes: self.max_body_bytes,
                ttl_ms: millis(self.ttl),
                failure_ttl_ms: millis(self.failure_ttl),
                cache_capacity: self.cache_capacity,
                permits: Arc::new(Semaphore::new(self.max_in_flight)),
                max_in_flight: self.max_in_flight,
                fetches: AtomicUsize::new(0),
                cache: Mutex::new(Cache::default()),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_evicts_finished_entries_first() {
        let mut cache = Cache::default();
        let pending = cache.cell("a", 0, 2);
        let done = cache.cell("b", 0, 2);
        let _ = done.set(Outcome {
            answer: Err(unavailable("x")),
            expires_ms: 1_000,
        });
        // Full: "b" (finished, though newer) goes before the pending "a".
        let _ = cache.cell("c", 0, 2);
        assert_eq!(cache.slots.len(), 2);
        assert!(cache.slots.contains_key("a") && cache.slots.contains_key("c"));
        assert!(Arc::ptr_eq(&cache.cell("a", 0, 2), &pending));
        // An expired entry is replaced by a new pending one.
        let _ = cache.slots["c"].cell.set(Outcome {
            answer: Err(unavailable("x")),
            expires_ms: 10,
        });
        assert!(cache.cell("c", 5, 2).initialized());
        assert!(!cache.cell("c", 10, 2).initialized());
    }
}
