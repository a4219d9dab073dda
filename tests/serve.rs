//! The serving helper over real sockets on 127.0.0.1: the header timeout
//! (a half-sent head, a connection that sends nothing, a TLS handshake that
//! never finishes), the keep-alive idle timeout (and that it, not the header
//! timeout, governs the wait between requests), the connection cap, graceful
//! shutdown (in-flight request finishes, readiness flips to 503, new
//! connections refused, idle keep-alive connections closed, a stalled client
//! dropped at the grace deadline), connect info with both make-services,
//! and HTTPS against a self-signed certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use webhook_guard::serve::{Drain, Readiness, Server};
use webhook_guard::RateLimiter;

/// Longest any test waits for something that should happen within about a
/// second: generous, for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(10);

struct Running {
    addr: SocketAddr,
    readiness: Readiness,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<Drain>>,
}

impl Running {
    fn signal(&mut self) {
        self.stop.take().expect("signalled once").send(()).unwrap();
    }

    async fn finished(self) -> Drain {
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("serve returns")
            .unwrap()
            .unwrap()
    }
}

/// Slow handler state: `started` is notified when it begins, `done` set
/// when it has finished sleeping.
#[derive(Clone, Default)]
struct Slow {
    started: Arc<Notify>,
    done: Arc<AtomicBool>,
}

fn app(slow: Slow) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/slow",
            get(move || {
                let slow = slow.clone();
                async move {
                    slow.started.notify_one();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    slow.done.store(true, Ordering::SeqCst);
                    "slow done"
                }
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
}

async fn start(configure: impl FnOnce(Server) -> Server, app: Router) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let server = configure(Server::new(listener)).with_graceful_shutdown(async {
        let _ = rx.await;
    });
    let addr = server.local_addr().unwrap();
    let readiness = server.readiness();
    let app = app.route("/readyz", readiness.route());
    let task = tokio::spawn(server.serve_router(app));
    Running {
        addr,
        readiness,
        stop: Some(tx),
        task,
    }
}

/// Reads one HTTP/1.1 response with a `content-length`: (status, body).
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert_eq!(
            n,
            1,
            "connection closed inside a response head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8(body).unwrap())
}

async fn get_on<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::timeout(PATIENCE, read_response(stream))
        .await
        .expect("a response")
}

/// Waits until the peer closes the connection (EOF or reset); returns how
/// long that took, or panics after `PATIENCE`. Whatever the server sends
/// first is returned too.
async fn wait_closed<S: AsyncRead + Unpin>(stream: &mut S) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    let mut received = Vec::new();
    let result = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(result.is_ok(), "the connection was still open after {PATIENCE:?}");
    (start.elapsed(), received)
}

/// Whether the connection is still open and silent after `wait`.
async fn still_open<S: AsyncRead + Unpin>(stream: &mut S, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(wait, stream.read(&mut buf)).await.is_err()
}

#[tokio::test]
async fn half_sent_request_head_is_closed_within_the_header_timeout() {
    let running = start(
        |s| {
            s.header_read_timeout(Duration::from_secs(1))
                .keep_alive_timeout(Duration::from_secs(60))
        },
        app(Slow::default()),
    )
    .await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow")
        .await
        .unwrap();
    let (elapsed, received) = wait_closed(&mut stream).await;
    assert!(elapsed < Duration::from_secs(5), "closed only after {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(800),
        "closed too early: {elapsed:?}"
    );
    assert!(!received.starts_with(b"HTTP/1.1 200"), "the half head was served");

    // A complete request on a fresh connection is still served.
    let mut fresh = TcpStream::connect(running.addr).await.unwrap();
    assert_eq!(get_on(&mut fresh, "/").await, (200, "hello".to_owned()));
}

#[tokio::test]
async fn connection_that_sends_nothing_is_closed_within_the_header_timeout() {
    let running = start(
        |s| {
            s.header_read_timeout(Duration::from_secs(1))
                .keep_alive_timeout(Duration::from_secs(60))
        },
        app(Slow::default()),
    )
    .await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    let (elapsed, received) = wait_closed(&mut stream).await;
    assert!(elapsed < Duration::from_secs(5), "closed only after {elapsed:?}");
    assert!(received.is_empty() || !received.starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout_not_the_header_timeout() {
    let running = start(
        |s| {
            s.header_read_timeout(Duration::from_secs(1))
                .keep_alive_timeout(Duration::from_secs(5))
        },
        app(Slow::default()),
    )
    .await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    assert_eq!(get_on(&mut stream, "/").await, (200, "hello".to_owned()));
    // Idle for longer than the header timeout: the connection stays open,
    // and the next request on it is served.
    assert!(still_open(&mut stream, Duration::from_millis(2500)).await);
    assert_eq!(get_on(&mut stream, "/").await, (200, "hello".to_owned()));
    // Then idle past the keep-alive timeout: closed.
    let (elapsed, received) = wait_closed(&mut stream).await;
    assert!(received.is_empty(), "unexpected bytes: {received:?}");
    assert!(
        elapsed >= Duration::from_secs(4),
        "closed before the keep-alive timeout: {elapsed:?}"
    );
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let running = start(
        |s| {
            s.max_connections(2)
                .header_read_timeout(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(30))
        },
        app(Slow::default()),
    )
    .await;
    let mut first = TcpStream::connect(running.addr).await.unwrap();
    let mut second = TcpStream::connect(running.addr).await.unwrap();
    assert_eq!(get_on(&mut first, "/").await.0, 200);
    assert_eq!(get_on(&mut second, "/").await.0, 200);

    // The kernel completes the third handshake (backlog), but the server
    // does not accept it, so its request gets no answer.
    let mut third = TcpStream::connect(running.addr).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert!(
        still_open(&mut third, Duration::from_secs(1)).await,
        "served past the cap"
    );

    // One closes: the third is accepted and answered.
    drop(first);
    let response = tokio::time::timeout(PATIENCE, read_response(&mut third))
        .await
        .expect("served");
    assert_eq!(response, (200, "hello".to_owned()));
    // The second still works.
    assert_eq!(get_on(&mut second, "/").await.0, 200);
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_and_refuses_new_connections() {
    let slow = Slow::default();
    let mut running = start(|s| s.shutdown_grace(Duration::from_secs(10)), app(slow.clone())).await;
    assert!(running.readiness.is_ready());

    // An idle keep-alive connection must not hold the drain.
    let mut idle = TcpStream::connect(running.addr).await.unwrap();
    assert_eq!(get_on(&mut idle, "/readyz").await, (200, "ok".to_owned()));

    let mut busy = TcpStream::connect(running.addr).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, slow.started.notified())
        .await
        .expect("slow handler started");

    running.signal();
    tokio::time::timeout(PATIENCE, running.readiness.shutting_down())
        .await
        .expect("readiness flips");
    assert!(!running.readiness.is_ready());
    let response = running.readiness.response();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["reason"], "shutting_down");

    // New connections are refused while the slow request is still running.
    let refused_at = Instant::now();
    loop {
        // A connect racing the listener's close may be reset (or land in
        // the backlog being discarded); soon after, it must be refused.
        match TcpStream::connect(running.addr).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
            _ => {
                assert!(
                    refused_at.elapsed() < Duration::from_millis(500),
                    "still accepting"
                );
                tokio::task::yield_now().await;
            }
        }
    }
    assert!(
        !slow.done.load(Ordering::SeqCst),
        "the slow request was expected to be in flight"
    );

    // The in-flight request finishes with its response; the connection
    // closes after it (no keep-alive during shutdown).
    let (status, body) = tokio::time::timeout(PATIENCE, read_response(&mut busy))
        .await
        .expect("response");
    assert_eq!((status, body.as_str()), (200, "slow done"));
    wait_closed(&mut busy).await;
    // The idle connection was closed by the shutdown.
    wait_closed(&mut idle).await;

    assert_eq!(running.finished().await, Drain::Complete);
}

#[tokio::test]
async fn readiness_answers_503_during_the_shutdown_delay() {
    let mut running = start(
        |s| {
            s.shutdown_delay(Duration::from_secs(2))
                .shutdown_grace(Duration::from_secs(5))
        },
        app(Slow::default()),
    )
    .await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    assert_eq!(get_on(&mut stream, "/readyz").await, (200, "ok".to_owned()));
    running.signal();
    tokio::time::timeout(PATIENCE, running.readiness.shutting_down())
        .await
        .expect("flips");
    // Still accepting and serving during the delay, readiness says 503.
    let mut during = TcpStream::connect(running.addr).await.unwrap();
    let (status, body) = get_on(&mut during, "/readyz").await;
    assert_eq!(status, 503);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["reason"], "shutting_down");
    assert_eq!(get_on(&mut during, "/").await, (200, "hello".to_owned()));
    assert_eq!(running.finished().await, Drain::Complete);
}

#[tokio::test]
async fn stalled_client_does_not_hold_shutdown_past_the_grace_period() {
    let mut running = start(
        |s| {
            s.header_read_timeout(Duration::from_secs(60))
                .shutdown_grace(Duration::from_secs(1))
        },
        app(Slow::default()),
    )
    .await;
    let mut stalled = TcpStream::connect(running.addr).await.unwrap();
    stalled.write_all(b"GET / HTTP/1.1\r\nHost: local").await.unwrap();
    // Make sure the server has accepted it before the signal.
    let mut probe = TcpStream::connect(running.addr).await.unwrap();
    assert_eq!(get_on(&mut probe, "/").await.0, 200);
    drop(probe);

    let signalled = Instant::now();
    running.signal();
    let drain = running.finished().await;
    assert_eq!(drain, Drain::TimedOut { dropped: 1 });
    assert!(
        signalled.elapsed() < Duration::from_secs(6),
        "took {:?}",
        signalled.elapsed()
    );
    wait_closed(&mut stalled).await;
}

#[tokio::test]
async fn handlers_get_the_peer_address_with_either_make_service() {
    // serve_router: into_make_service_with_connect_info::<SocketAddr>().
    let running = start(|s| s, app(Slow::default())).await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    assert_eq!(get_on(&mut stream, "/peer").await, (200, local.to_string()));

    // RateLimiter::into_make_service.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::new(listener);
    let addr = server.local_addr().unwrap();
    let limiter = RateLimiter::builder().build();
    tokio::spawn(server.serve(limiter.into_make_service(app(Slow::default()))));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    assert_eq!(get_on(&mut stream, "/peer").await, (200, local.to_string()));
}

#[cfg(feature = "tls")]
mod tls {
    use std::sync::Arc;

    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
    use tokio_rustls::TlsConnector;
    use webhook_guard::serve::TlsConfig;

    use super::*;

    const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/serve-cert.pem");
    const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/serve-key.pem");

    fn connector() -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(CERT).unwrap()).unwrap();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    #[tokio::test]
    async fn https_request_succeeds_against_a_self_signed_certificate() {
        let tls = TlsConfig::from_pem_files(CERT, KEY).unwrap();
        let running = start(|s| s.tls(tls), app(Slow::default())).await;
        for name in ["localhost", "127.0.0.1"] {
            let tcp = TcpStream::connect(running.addr).await.unwrap();
            let server_name = ServerName::try_from(name).unwrap().to_owned();
            let mut stream = connector().connect(server_name, tcp).await.unwrap();
            assert_eq!(get_on(&mut stream, "/").await, (200, "hello".to_owned()));
            assert_eq!(get_on(&mut stream, "/readyz").await, (200, "ok".to_owned()));
        }
        // Plain HTTP on the TLS port is not served.
        let mut plain = TcpStream::connect(running.addr).await.unwrap();
        plain
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let (_, received) = wait_closed(&mut plain).await;
        assert!(!received.starts_with(b"HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn unfinished_tls_handshake_is_dropped_within_the_header_timeout() {
        let tls = TlsConfig::from_pem_files(CERT, KEY).unwrap();
        let running = start(
            |s| s.tls(tls).header_read_timeout(Duration::from_secs(1)),
            app(Slow::default()),
        )
        .await;
        // Opens TCP and sends nothing.
        let mut silent = TcpStream::connect(running.addr).await.unwrap();
        let (elapsed, _) = wait_closed(&mut silent).await;
        assert!(elapsed < Duration::from_secs(5), "closed only after {elapsed:?}");
        // Sends the first bytes of a ClientHello, then stalls.
        let mut partial = TcpStream::connect(running.addr).await.unwrap();
        partial
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        let (elapsed, _) = wait_closed(&mut partial).await;
        assert!(elapsed < Duration::from_secs(5), "closed only after {elapsed:?}");
    }

    #[test]
    fn bad_pem_files_give_clear_errors_without_quoting_the_key() {
        let missing = TlsConfig::from_pem_files("/nonexistent/cert.pem", KEY).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(missing.to_string().contains("/nonexistent/cert.pem"), "{missing}");

        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("key.pem");
        std::fs::write(&junk, "-----BEGIN PRIVATE KEY-----\nSECRETSECRET%%%\n").unwrap();
        let bad = TlsConfig::from_pem_files(CERT, &junk).unwrap_err();
        let message = bad.to_string();
        assert!(message.contains("private key"), "{message}");
        assert!(!message.contains("SECRET"), "the key file was quoted: {message}");

        // A certificate file given as the key: no key found.
        let swapped = TlsConfig::from_pem_files(CERT, CERT).unwrap_err();
        assert!(swapped.to_string().contains("no PEM private key"), "{swapped}");
    }
}
