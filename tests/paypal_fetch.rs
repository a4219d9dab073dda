//! `FetchedCertificates` against real HTTPS servers on loopback: the
//! certificate fetched once and cached, concurrent deliveries sharing one
//! fetch, expiry, every failure answered 503 with `Retry-After` (404, a
//! redirect, an oversized body, a server that never answers, an untrusted
//! TLS certificate), chains that do not validate answered 401, failures
//! remembered, the in-flight cap.
//!
//! The servers present `tests/data/paypal/tls/server.pem`, issued by a
//! test TLS CA to PayPal's certificate hosts (see `tls/README.md`); the
//! fetcher is told to connect to the loopback server for those names with
//! `resolve`, and TLS still verifies the name. The PayPal chain served is
//! the test leaf and intermediate of `tests/paypal.rs`, anchored at the
//! test root.

#![cfg(feature = "paypal-fetch")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use webhook_guard::paypal::{
    FetchedCertificates, FetchedCertificatesBuilder, PayPal, PinnedCertificates, TrustAnchors,
};
use webhook_guard::test_util::TestSigner;
use webhook_guard::{ConfigError, FixedClock, RejectionKind, Scheme, Verifier};

use support::{app, assert_ok, assert_problem, post_request, send};

const NOW: i64 = 1_780_000_000; // 2026-05-28, inside the test certificates' validity.
const URL: &str = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-test";

fn data(file: &str) -> String {
    let path = format!("{}/tests/data/paypal/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

/// What a test server answers to every request.
#[derive(Clone)]
enum Reply {
    /// 200 with this body (with `Content-Length`).
    Ok(String),
    /// 200 with this body in chunks of 1000 bytes (no `Content-Length`).
    Chunked(String),
    /// This status, with `Location` for a redirect.
    Status(u16, Option<String>),
    /// Reads the request and never answers.
    Hang,
}

struct Server {
    addr: SocketAddr,
    /// TCP connections accepted.
    connections: Arc<AtomicUsize>,
    /// Requests read (one per fetch).
    requests: Arc<AtomicUsize>,
}

fn server_config(cert: &str) -> Arc<rustls::ServerConfig> {
    let certs = vec![rustls::pki_types::CertificateDer::from(der(&data(cert)))];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(der(&data("tls/server-key.pk8.pem")).into());
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// An HTTPS server on 127.0.0.1 presenting `cert` (under
/// `tests/data/paypal/`), waiting `delay` before each answer.
async fn https(cert: &str, reply: Reply, delay: Duration) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(cert));
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (Arc::clone(&connections), Arc::clone(&requests));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let (acceptor, reply, r) = (acceptor.clone(), reply.clone(), Arc::clone(&r));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                r.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let out = match reply {
                    Reply::Ok(body) => {
                        format!("HTTP/1.1 200 OK\r\ncontent-type: application/x-pem-file\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).into_bytes()
                    }
                    Reply::Chunked(body) => {
                        let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
                        for chunk in body.as_bytes().chunks(1000) {
                            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                            out.extend_from_slice(chunk);
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\n\r\n");
                        out
                    }
                    Reply::Status(code, location) => {
                        let location = location.map(|l| format!("location: {l}\r\n")).unwrap_or_default();
                        format!("HTTP/1.1 {code} Nope\r\n{location}content-length: 0\r\nconnection: close\r\n\r\n").into_bytes()
                    }
                    Reply::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                };
                let _ = tls.write_all(&out).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server {
        addr,
        connections,
        requests,
    }
}

/// The test leaf and the test intermediate, as PayPal would serve a chain.
fn chain() -> String {
    data("leaf.pem") + &data("intermediate-ca.pem")
}

/// [`chain`] followed by newlines up to `len` bytes.
fn padded(len: usize) -> String {
    let chain = chain();
    let pad = len.saturating_sub(chain.len());
    chain + &"\n".repeat(pad)
}

async fn serving(reply: Reply) -> Server {
    https("tls/server.pem", reply, Duration::ZERO).await
}

/// A fetcher trusting the test root for chains and the test TLS CA for
/// HTTPS, connecting to `server` for `api.paypal.com`, reading `clock`.
fn fetcher(server: &Server, clock: &Arc<FixedClock>) -> FetchedCertificatesBuilder {
    FetchedCertificates::builder(TrustAnchors::from_pem(&data("root-ca.pem")).unwrap())
        .tls_roots(TrustAnchors::from_pem(&data("tls/ca.pem")).unwrap())
        .resolve("api.paypal.com", server.addr)
        .clock(Arc::clone(clock))
}

/// A verifier on `clock` whose PayPal route fetches with `fetcher`.
fn route(fetcher: FetchedCertificatesBuilder, clock: &Arc<FixedClock>) -> Verifier {
    let paypal = PayPal::builder("WH-TEST-1")
        .certificates(fetcher.build().unwrap())
        .build()
        .unwrap();
    Verifier::builder(Scheme::paypal(paypal))
        .clock(Arc::clone(clock))
        .build()
        .unwrap()
}

/// Signs as PayPal would with the test leaf's key, naming [`URL`].
fn signer(at: i64) -> TestSigner {
    let paypal = PayPal::builder("WH-TEST-1")
        .certificates(PinnedCertificates::from_pem(&data("leaf.pem")).unwrap())
        .build()
        .unwrap();
    TestSigner::new(&Scheme::paypal(paypal), data("leaf-key.pk8.pem"))
        .unwrap()
        .timestamp(at)
}

/// One delivery signed at `at`, naming `url`.
async fn deliver(verifier: &Verifier, at: i64, url: &str) -> axum::response::Response {
    let mut headers = signer(at).headers(b"{}");
    headers.insert("paypal-cert-url", HeaderValue::from_str(url).unwrap());
    let (router, _) = app(verifier);
    send(router, post_request(headers, support::body("{}"))).await
}

/// 503 `certificate_unavailable` with `Retry-After`, the handler not run.
async fn assert_unavailable(what: &str, response: axum::response::Response) {
    let retry = response.headers().get("retry-after").cloned();
    let (rejection, _) = assert_problem(
        what,
        response,
        RejectionKind::CertificateUnavailable,
        "paypal",
        &[],
    )
    .await;
    assert_eq!(rejection.kind().status(), 503, "{what}");
    let retry = retry.unwrap_or_else(|| panic!("{what}: no Retry-After"));
    assert!(
        retry.to_str().unwrap().parse::<u64>().unwrap() > 0,
        "{what}: Retry-After {retry:?}"
    );
}

async fn assert_untrusted(what: &str, response: axum::response::Response) {
    assert_problem(what, response, RejectionKind::UntrustedCertificate, "paypal", &[]).await;
}

/// The certificate is fetched once, verifies the delivery, serves the next
/// one from the cache, and is fetched again after the TTL.
#[tokio::test]
async fn a_fetched_certificate_verifies_and_is_cached_until_the_ttl() {
    let server = serving(Reply::Ok(chain())).await;
    let clock = Arc::new(FixedClock::new(NOW));
    let verifier = route(fetcher(&server, &clock).ttl(Duration::from_secs(3600)), &clock);

    assert_ok("first", deliver(&verifier, NOW, URL).await).await;
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    clock.advance(3599);
    assert_ok("cached", deliver(&verifier, NOW + 3599, URL).await).await;
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        1,
        "not served from the cache"
    );

    clock.advance(1);
    assert_ok("after the TTL", deliver(&verifier, NOW + 3600, URL).await).await;
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        2,
        "not fetched again after the TTL"
    );
}

/// 20 deliveries at once naming the same URL: one fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_share_one_fetch() {
    let server = https("tls/server.pem", Reply::Ok(chain()), Duration::from_millis(300)).await;
    let clock = Arc::new(FixedClock::new(NOW));
    let verifier = route(fetcher(&server, &clock), &clock);
    let deliveries: Vec<_> = (0..20)
        .map(|_| {
            let verifier = verifier.clone();
            tokio::spawn(async move { deliver(&verifier, NOW, URL).await })
        })
        .collect();
    for (i, d) in deliveries.into_iter().enumerate() {
        assert_ok(&format!("delivery {i}"), d.await.unwrap()).await;
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

/// A server that does not answer 200 with a small body is 503 with
/// `Retry-After`: 404, a redirect (whose target is never contacted), a
/// body over the cap (declared or streamed), a body that is no PEM.
#[tokio::test]
async fn failed_fetches_are_503_with_retry_after() {
    let elsewhere = serving(Reply::Ok(chain())).await;
    for (what, reply) in [
        ("404", Reply::Status(404, None)),
        ("500", Reply::Status(500, None)),
        (
            "302 to another host",
            Reply::Status(
                302,
                Some("https://other.example/v1/notifications/certs/CERT-1".to_owned()),
            ),
        ),
        (
            "301 to the same host",
            Reply::Status(301, Some(format!("{URL}-moved"))),
        ),
        // The chain itself, padded past the cap: valid but for its size.
        ("200 with a body over the cap", Reply::Ok(padded(64 * 1024 + 1))),
        (
            "200 with a chunked body over the cap",
            Reply::Chunked(padded(64 * 1024 + 1)),
        ),
        ("200 with no certificate", Reply::Ok("hello".to_owned())),
    ] {
        let server = serving(reply).await;
        let clock = Arc::new(FixedClock::new(NOW));
        let fetcher = fetcher(&server, &clock).resolve("other.example", elsewhere.addr);
        let verifier = route(fetcher, &clock);
        assert_unavailable(what, deliver(&verifier, NOW, URL).await).await;
        assert_eq!(server.requests.load(Ordering::SeqCst), 1, "{what}");
    }
    assert_eq!(
        elsewhere.connections.load(Ordering::SeqCst),
        0,
        "a redirect was followed"
    );
}

/// A server that never answers, or never speaks TLS, is 503 within the
/// timeouts.
#[tokio::test]
async fn a_silent_server_is_503_within_the_timeout() {
    let hanging = serving(Reply::Hang).await;
    let clock = Arc::new(FixedClock::new(NOW));
    let fetcher = fetcher(&hanging, &clock)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_millis(500));
    let verifier = route(fetcher, &clock);
    let start = Instant::now();
    assert_unavailable("no answer", deliver(&verifier, NOW, URL).await).await;
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert_eq!(hanging.requests.load(Ordering::SeqCst), 1);

    // TCP accepted, TLS never spoken: the connect timeout.
    let mute = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = mute.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = mute.accept().await {
            held.push(tcp);
        }
    });
    let fetcher = FetchedCertificates::builder(TrustAnchors::from_pem(&data("root-ca.pem")).unwrap())
        .tls_roots(TrustAnchors::from_pem(&data("tls/ca.pem")).unwrap())
        .resolve("api.paypal.com", addr)
        .clock(Arc::clone(&clock))
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_secs(30));
    let verifier = route(fetcher, &clock);
    let start = Instant::now();
    assert_unavailable("no TLS", deliver(&verifier, NOW, URL).await).await;
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    held.abort();
}

/// A server whose TLS certificate does not chain to the TLS roots is not
/// read: 503.
#[tokio::test]
async fn an_untrusted_https_server_is_503() {
    let server = https("tls/server-untrusted.pem", Reply::Ok(chain()), Duration::ZERO).await;
    let clock = Arc::new(FixedClock::new(NOW));
    let verifier = route(fetcher(&server, &clock), &clock);
    assert_unavailable("untrusted TLS", deliver(&verifier, NOW, URL).await).await;
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert_eq!(server.requests.load(Ordering::SeqCst), 0, "a request was sent");

    // The chain anchors are not TLS roots once others are given.
    let server = serving(Reply::Ok(chain())).await;
    let fetcher = fetcher(&server, &clock).tls_roots(TrustAnchors::from_pem(&data("root-ca.pem")).unwrap());
    let verifier = route(fetcher, &clock);
    assert_unavailable("TLS roots", deliver(&verifier, NOW, URL).await).await;
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
}

/// A chain to an unknown root or a leaf with another name is 401, and the
/// verdict is remembered for the failure TTL.
#[tokio::test]
async fn chains_that_do_not_validate_are_401_and_remembered() {
    for (what, body) in [
        ("unknown root", data("leaf-unknown-root.pem")),
        (
            "unknown root with our intermediate",
            data("leaf-unknown-root.pem") + &data("intermediate-ca.pem"),
        ),
        (
            "wrong name",
            data("leaf-wrong-name.pem") + &data("intermediate-ca.pem"),
        ),
        ("no intermediate", data("leaf.pem")),
        ("expired", data("leaf-expired.pem") + &data("intermediate-ca.pem")),
    ] {
        let server = serving(Reply::Ok(body)).await;
        let clock = Arc::new(FixedClock::new(NOW));
        let verifier = route(fetcher(&server, &clock), &clock);
        assert_untrusted(what, deliver(&verifier, NOW, URL).await).await;
        assert_untrusted(what, deliver(&verifier, NOW, URL).await).await;
        assert_eq!(
            server.requests.load(Ordering::SeqCst),
            1,
            "{what}: not remembered"
        );
    }
}

/// A body exactly at the cap (declared or chunked) is read whole.
#[tokio::test]
async fn a_body_at_the_cap_is_read() {
    for reply in [Reply::Ok(padded(64 * 1024)), Reply::Chunked(padded(64 * 1024))] {
        let server = serving(reply).await;
        let clock = Arc::new(FixedClock::new(NOW));
        assert_ok(
            "at the cap",
            deliver(&route(fetcher(&server, &clock), &clock), NOW, URL).await,
        )
        .await;
    }
}

/// A server that sends only the leaf validates with the configured
/// intermediate.
#[tokio::test]
async fn configured_intermediates_complete_the_chain() {
    let server = serving(Reply::Ok(data("leaf.pem"))).await;
    let clock = Arc::new(FixedClock::new(NOW));
    let fetcher = fetcher(&server, &clock).intermediates(&data("intermediate-ca.pem"));
    assert_ok("leaf only", deliver(&route(fetcher, &clock), NOW, URL).await).await;
}

/// An unavailable certificate is remembered for the failure TTL (default
/// 30 s), then fetched again.
#[tokio::test]
async fn failures_are_remembered_for_the_failure_ttl() {
    let server = serving(Reply::Status(404, None)).await;
    let clock = Arc::new(FixedClock::new(NOW));
    let verifier = route(fetcher(&server, &clock), &clock);
    assert_unavailable("first", deliver(&verifier, NOW, URL).await).await;
    clock.advance(29);
    assert_unavailable("remembered", deliver(&verifier, NOW + 29, URL).await).await;
    assert_eq!(server.requests.load(Ordering::SeqCst), 1, "not remembered");
    clock.advance(1);
    assert_unavailable("again", deliver(&verifier, NOW + 30, URL).await).await;
    assert_eq!(server.requests.load(Ordering::SeqCst), 2, "remembered too long");
}

/// Past the in-flight cap a lookup of another URL is unavailable at once,
/// without a connection; the fetch in flight still completes, and the
/// refused URL is not remembered as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_cap_refuses_more_fetches() {
    let server = https("tls/server.pem", Reply::Ok(chain()), Duration::from_secs(3)).await;
    let clock = Arc::new(FixedClock::new(NOW));
    let verifier = route(fetcher(&server, &clock).max_in_flight(1), &clock);
    let first = {
        let verifier = verifier.clone();
        tokio::spawn(async move { deliver(&verifier, NOW, URL).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.requests.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the first fetch never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let other = "https://api.paypal.com/v1/notifications/certs/CERT-other";
    assert_unavailable("over the cap", deliver(&verifier, NOW, other).await).await;
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "a second connection"
    );
    assert_ok("in flight", first.await.unwrap()).await;
    // Not remembered: with the slot free, the other URL is fetched.
    assert_ok("after", deliver(&verifier, NOW, other).await).await;
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[test]
fn the_configuration_is_checked() {
    let anchors = || TrustAnchors::from_pem(&data("root-ca.pem")).unwrap();
    let build = |b: FetchedCertificatesBuilder| b.build().map(|_| ());
    assert!(build(FetchedCertificates::builder(anchors())).is_ok());
    assert!(build(FetchedCertificates::with_webpki_roots()).is_ok());
    for (what, b) in [
        (
            "connect timeout",
            FetchedCertificates::builder(anchors()).connect_timeout(Duration::ZERO),
        ),
        (
            "timeout",
            FetchedCertificates::builder(anchors()).timeout(Duration::ZERO),
        ),
        (
            "body cap",
            FetchedCertificates::builder(anchors()).max_body_bytes(0),
        ),
        ("ttl", FetchedCertificates::builder(anchors()).ttl(Duration::ZERO)),
        (
            "failure ttl",
            FetchedCertificates::builder(anchors()).failure_ttl(Duration::ZERO),
        ),
        ("cache", FetchedCertificates::builder(anchors()).cache_capacity(0)),
        (
            "in flight",
            FetchedCertificates::builder(anchors()).max_in_flight(0),
        ),
    ] {
        assert!(
            matches!(build(b), Err(ConfigError::InvalidPayPal { .. })),
            "{what}"
        );
    }
    for pem in ["", "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"] {
        assert!(matches!(
            build(FetchedCertificates::builder(anchors()).intermediates(pem)),
            Err(ConfigError::InvalidCertificate { .. })
        ));
    }
    let debug = format!(
        "{:?}",
        FetchedCertificates::builder(anchors())
            .intermediates(&data("intermediate-ca.pem"))
            .build()
            .unwrap()
    );
    assert!(debug.contains("intermediates: 1"), "{debug}");
    assert!(!debug.contains("MII"), "{debug}");
}
