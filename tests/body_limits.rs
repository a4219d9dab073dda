//! Slow and stalled bodies, and the process-wide budget of buffered body
//! bytes, driven over real HTTP on 127.0.0.1 (`axum::serve`, a raw TCP
//! client that can stall or trickle) and through `oneshot` with bodies
//! that never finish.
//!
//! What is proved: a gap between chunks longer than the idle timeout and a
//! trickle slower than the deadline are answered 408 `body_read_timeout`
//! (problem+json, `Connection: close`, the connection closed, the handler
//! not run); a body that would cross the budget is answered 503
//! `server_busy` with `Retry-After` and is not buffered, whether it is
//! reserved from its `Content-Length` or chunk by chunk; the reservation
//! is held while the handler runs and given back afterwards, on every
//! rejection and when the request is cancelled mid-read; the head checks
//! still come before the budget.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use http_body::Frame;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use webhook_guard::test_util::TestSigner;
use webhook_guard::{
    BodyBudget, ConfigError, RejectionKind, Scheme, Verifier, DEFAULT_BODY_DEADLINE,
    DEFAULT_BODY_IDLE_TIMEOUT, DEFAULT_INFLIGHT_BODY_BYTES,
};

use support::{assert_problem, post_request, send, Broken};

const SECRET: &str = "It's a Secret to Everybody";
const KIB: usize = 1024;
/// How long a test waits for something that should happen at once (or
/// after a short timer) before it fails: generous, for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(15);

fn signer() -> TestSigner {
    TestSigner::new(&Scheme::github(), SECRET).unwrap()
}

fn builder() -> webhook_guard::VerifierBuilder {
    Verifier::builder(Scheme::github()).secret(SECRET)
}

/// A JSON body of exactly `len` bytes.
fn json_body(len: usize) -> Vec<u8> {
    assert!(len >= 10);
    let mut body = b"{\"pad\":\"".to_vec();
    body.resize(len - 2, b'a');
    body.extend_from_slice(b"\"}");
    body
}

/// What the handler saw: how many times it ran, and the budget's use
/// while it ran.
#[derive(Clone, Default)]
struct Seen {
    calls: Arc<AtomicUsize>,
    in_use: Arc<Mutex<Vec<usize>>>,
}

impl Seen {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// `POST /hook` behind `verifier`'s layer; the handler records what it saw.
fn router(verifier: &Verifier) -> (Router, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let budget = verifier.body_budget().clone();
    let handler = move |body: Bytes| {
        let record = record.clone();
        let budget = budget.clone();
        async move {
            record.calls.fetch_add(1, Ordering::SeqCst);
            record.in_use.lock().unwrap().push(budget.in_use());
            format!("got {} bytes", body.len())
        }
    };
    (
        Router::new().route(support::PATH, post(handler).layer(verifier.layer())),
        seen,
    )
}

/// Serves `verifier`'s router on 127.0.0.1.
async fn serve(verifier: &Verifier) -> (SocketAddr, Seen) {
    let (app, seen) = router(verifier);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, seen)
}

/// How a raw request frames its body.
#[derive(Clone, Copy)]
enum Framing {
    Length(usize),
    Chunked,
}

/// Opens a connection and sends a `POST /hook` head with `headers`.
async fn open(addr: SocketAddr, headers: &HeaderMap, framing: Framing) -> TcpStream {
    let mut head = format!("POST {} HTTP/1.1\r\nhost: 127.0.0.1\r\n", support::PATH);
    for (name, value) in headers {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("content-type: application/json\r\n");
    match framing {
        Framing::Length(n) => head.push_str(&format!("content-length: {n}\r\n")),
        Framing::Chunked => head.push_str("transfer-encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    let stream = TcpStream::connect(addr).await.unwrap();
    write_all(&stream, head.as_bytes()).await.unwrap();
    stream
}

/// Writes all of `data` (tokio's `io-util` is not a dependency).
async fn write_all(stream: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what is there, waiting for at least one byte (0 at the end).
async fn read_some(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes one chunk of a chunked body (an empty one ends it).
async fn write_chunk(stream: &mut TcpStream, data: &[u8]) {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    if data.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    write_all(stream, &out).await.unwrap();
}

/// A response read off the wire.
#[derive(Debug)]
struct Raw {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Checks a problem+json rejection of `kind` and returns its document.
    fn assert_problem(&self, kind: RejectionKind) -> Value {
        assert_eq!(self.status, kind.status(), "status of {self:?}");
        assert_eq!(
            self.header(header::CONTENT_TYPE),
            Some("application/problem+json"),
            "content type of {self:?}"
        );
        let doc = self.json();
        assert_eq!(doc["reason"], kind.reason(), "{doc}");
        assert_eq!(doc["status"], kind.status().as_u16(), "{doc}");
        assert_eq!(doc["provider"], "github", "{doc}");
        doc
    }
}

/// Reads one response (head and `Content-Length` body), failing the test
/// if it does not come within [`PATIENCE`].
async fn read_response(stream: &mut TcpStream) -> Raw {
    tokio::time::timeout(PATIENCE, read_response_now(stream))
        .await
        .expect("no response in time")
}

async fn read_response_now(stream: &mut TcpStream) -> Raw {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 4096];
        let n = read_some(stream, &mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..end]).unwrap().to_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            header::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            value.trim().parse().unwrap(),
        );
    }
    let length: usize = headers
        .get(header::CONTENT_LENGTH)
        .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = read_some(stream, &mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside a response body");
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Raw {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body,
    }
}

/// Sends a whole signed request on a new connection and reads the answer.
async fn post_whole(addr: SocketAddr, body: &[u8]) -> Raw {
    let mut stream = open(addr, &signer().headers(body), Framing::Length(body.len())).await;
    write_all(&stream, body).await.unwrap();
    read_response(&mut stream).await
}

/// Waits until `budget.in_use()` is `want`, failing after [`PATIENCE`].
async fn wait_in_use(budget: &BodyBudget, want: usize) {
    let start = Instant::now();
    while budget.in_use() != want {
        assert!(
            start.elapsed() < PATIENCE,
            "budget in use stayed at {} (waiting for {want})",
            budget.in_use()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for the server to close the connection, failing after
/// [`PATIENCE`]. Bytes still sent before the close are skipped.
async fn assert_closed(stream: &mut TcpStream) {
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut chunk = [0u8; 1024];
        loop {
            match read_some(stream, &mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

#[test]
fn defaults() {
    let verifier = builder().build().unwrap();
    assert_eq!(verifier.body_idle_timeout(), DEFAULT_BODY_IDLE_TIMEOUT);
    assert_eq!(DEFAULT_BODY_IDLE_TIMEOUT, Duration::from_secs(10));
    assert_eq!(verifier.body_deadline(), DEFAULT_BODY_DEADLINE);
    assert_eq!(DEFAULT_BODY_DEADLINE, Duration::from_secs(30));
    assert_eq!(verifier.body_budget().limit(), DEFAULT_INFLIGHT_BODY_BYTES);
    assert_eq!(DEFAULT_INFLIGHT_BODY_BYTES, 64 * 1024 * 1024);
    assert_eq!(BodyBudget::global().limit(), DEFAULT_INFLIGHT_BODY_BYTES);
}

#[test]
fn configured_values_are_kept() {
    let budget = BodyBudget::new(123);
    let verifier = builder()
        .body_idle_timeout(Duration::from_millis(250))
        .body_deadline(Duration::from_secs(2))
        .body_budget(budget.clone())
        .build()
        .unwrap();
    assert_eq!(verifier.body_idle_timeout(), Duration::from_millis(250));
    assert_eq!(verifier.body_deadline(), Duration::from_secs(2));
    assert_eq!(verifier.body_budget().limit(), 123);
    let debug = format!("{verifier:?}");
    assert!(debug.contains("body_deadline"), "{debug}");
    assert!(!debug.contains(SECRET), "{debug}");
}

#[test]
fn zero_timers_are_refused() {
    let idle = builder().body_idle_timeout(Duration::ZERO).build().unwrap_err();
    assert_eq!(
        idle,
        ConfigError::ZeroBodyTimeout {
            setting: "body idle timeout"
        }
    );
    assert!(idle.to_string().contains("idle timeout"), "{idle}");
    let deadline = builder().body_deadline(Duration::ZERO).build().unwrap_err();
    assert_eq!(
        deadline,
        ConfigError::ZeroBodyTimeout {
            setting: "body deadline"
        }
    );
    assert!(deadline.to_string().contains("deadline"), "{deadline}");
    assert!(builder()
        .body_idle_timeout(Duration::from_nanos(1))
        .body_deadline(Duration::from_nanos(1))
        .build()
        .is_ok());
}

// ---------------------------------------------------------------------------
// Timeouts, over real HTTP
// ---------------------------------------------------------------------------

#[tokio::test]
async fn idle_gap_is_answered_408_and_the_connection_closed() {
    let idle = Duration::from_millis(300);
    let budget = BodyBudget::new(1 << 20);
    let verifier = builder()
        .body_idle_timeout(idle)
        .body_budget(budget.clone())
        .build()
        .unwrap();
    let (addr, seen) = serve(&verifier).await;
    let body = json_body(1000);
    let mut stream = open(addr, &signer().headers(&body), Framing::Length(body.len())).await;
    let start = Instant::now();
    write_all(&stream, &body[..100]).await.unwrap();
    // ...and nothing more.
    let response = read_response(&mut stream).await;
    let waited = start.elapsed();
    let doc = response.assert_problem(RejectionKind::BodyReadTimeout);
    assert_eq!(response.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(doc["reason"], "body_read_timeout");
    assert!(doc["detail"].as_str().unwrap().contains("idle timeout"), "{doc}");
    assert_eq!(response.header(header::CONNECTION), Some("close"));
    assert!(
        waited >= idle,
        "answered after {waited:?}, before the idle timeout"
    );
    assert_closed(&mut stream).await;
    assert_eq!(seen.calls(), 0, "the handler never ran");
    assert_eq!(budget.in_use(), 0, "the reservation was given back");
}

#[tokio::test]
async fn idle_timeout_covers_a_body_that_never_starts() {
    let verifier = builder()
        .body_idle_timeout(Duration::from_millis(300))
        .body_budget(BodyBudget::new(1 << 20))
        .build()
        .unwrap();
    let (addr, seen) = serve(&verifier).await;
    let body = json_body(1000);
    let mut stream = open(addr, &signer().headers(&body), Framing::Chunked).await;
    let response = read_response(&mut stream).await;
    response.assert_problem(RejectionKind::BodyReadTimeout);
    assert_eq!(response.header(header::CONNECTION), Some("close"));
    assert_eq!(seen.calls(), 0);
}

#[tokio::test]
async fn trickling_body_trips_the_deadline() {
    // Gaps of 20 ms never trip a 600 ms idle timeout; the 2 s deadline
    // counts from the start of the body and trips.
    let deadline = Duration::from_secs(2);
    let budget = BodyBudget::new(1 << 20);
    let verifier = builder()
        .body_idle_timeout(Duration::from_millis(600))
        .body_deadline(deadline)
        .body_budget(budget.clone())
        .build()
        .unwrap();
    let (addr, seen) = serve(&verifier).await;
    let body = json_body(100_000);
    let stream = open(addr, &signer().headers(&body), Framing::Length(body.len())).await;
    let stream = Arc::new(stream);
    let write_half = Arc::clone(&stream);
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        for byte in body.chunks(1) {
            if write_all(&write_half, byte).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if start.elapsed() > PATIENCE {
                break;
            }
        }
        sent
    });
    let response = tokio::time::timeout(PATIENCE, async {
        // Reuse the raw reader on the read half.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = read_some(&stream, &mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf
    })
    .await
    .expect("the server neither answered nor closed");
    let waited = start.elapsed();
    let text = String::from_utf8_lossy(&response).into_owned();
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    assert!(text.contains("\"reason\":\"body_read_timeout\""), "{text}");
    assert!(
        text.contains("body deadline"),
        "the deadline fired, not the idle timeout: {text}"
    );
    assert!(
        waited >= deadline,
        "answered after {waited:?}, before the deadline"
    );
    let sent = writer.await.unwrap();
    assert!(sent > 10, "only {sent} bytes were trickled");
    assert_eq!(seen.calls(), 0);
    assert_eq!(budget.in_use(), 0);
}

#[tokio::test]
async fn a_slow_but_steady_body_within_the_timers_passes() {
    let budget = BodyBudget::new(1 << 20);
    let verifier = builder()
        .body_idle_timeout(Duration::from_secs(5))
        .body_deadline(Duration::from_secs(10))
        .body_budget(budget.clone())
        .build()
        .unwrap();
    let (addr, seen) = serve(&verifier).await;
    let body = json_body(4 * KIB);
    let mut stream = open(addr, &signer().headers(&body), Framing::Length(body.len())).await;
    for part in body.chunks(KIB) {
        write_all(&stream, part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
    assert_eq!(seen.calls(), 1);
    assert_eq!(budget.in_use(), 0);
}

// ---------------------------------------------------------------------------
// The budget, over real HTTP
// ---------------------------------------------------------------------------

/// Opens a request of `len` bytes with a `Content-Length`, sends its first
/// KiB and stalls; returns the stream and the rest of the body.
async fn hold(addr: SocketAddr, len: usize) -> (TcpStream, Vec<u8>) {
    let body = json_body(len);
    let stream = open(addr, &signer().headers(&body), Framing::Length(len)).await;
    write_all(&stream, &body[..KIB]).await.unwrap();
    (stream, body[KIB..].to_vec())
}

#[tokio::test]
async fn budget_refuses_a_body_that_would_cross_it_then_recovers() {
    let budget = BodyBudget::new(64 * KIB);
    let verifier = builder().body_budget(budget.clone()).build().unwrap();
    let (addr, seen) = serve(&verifier).await;

    // A holds 48 KiB: its whole Content-Length, before its bytes arrive.
    let (mut a, rest) = hold(addr, 48 * KIB).await;
    wait_in_use(&budget, 48 * KIB).await;

    // B's 32 KiB would cross 64 KiB: 503 without being buffered.
    let b = post_whole(addr, &json_body(32 * KIB)).await;
    let doc = b.assert_problem(RejectionKind::ServerBusy);
    assert_eq!(b.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(doc["reason"], "server_busy");
    assert_eq!(b.header(header::RETRY_AFTER), Some("1"));
    assert_eq!(seen.calls(), 0);
    assert_eq!(budget.in_use(), 48 * KIB, "the refused request took nothing");

    // A finishes; its bytes stay reserved while the handler runs.
    write_all(&a, &rest).await.unwrap();
    let response = read_response(&mut a).await;
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
    assert_eq!(seen.in_use.lock().unwrap().as_slice(), &[48 * KIB]);
    assert_eq!(budget.in_use(), 0, "given back once the response was made");

    // Now a 32 KiB request passes.
    let c = post_whole(addr, &json_body(32 * KIB)).await;
    assert_eq!(c.status, StatusCode::OK, "{c:?}");
    assert_eq!(seen.calls(), 2);
    assert_eq!(budget.in_use(), 0);
}

#[tokio::test]
async fn chunked_bodies_are_reserved_as_they_arrive() {
    let budget = BodyBudget::new(64 * KIB);
    let verifier = builder().body_budget(budget.clone()).build().unwrap();
    let (addr, seen) = serve(&verifier).await;
    let (mut a, rest) = hold(addr, 48 * KIB).await;
    wait_in_use(&budget, 48 * KIB).await;

    // 16 KiB without a Content-Length fills the budget exactly: it passes.
    let fits = json_body(16 * KIB);
    let mut stream = open(addr, &signer().headers(&fits), Framing::Chunked).await;
    for part in fits.chunks(4 * KIB) {
        write_chunk(&mut stream, part).await;
    }
    write_chunk(&mut stream, b"").await;
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
    assert_eq!(seen.in_use.lock().unwrap().as_slice(), &[64 * KIB]);
    assert_eq!(budget.in_use(), 48 * KIB);

    // 24 KiB does not: refused at the chunk that crosses the budget.
    let over = json_body(24 * KIB);
    let mut stream = open(addr, &signer().headers(&over), Framing::Chunked).await;
    for part in over.chunks(4 * KIB) {
        write_chunk(&mut stream, part).await;
    }
    write_chunk(&mut stream, b"").await;
    let response = read_response(&mut stream).await;
    response.assert_problem(RejectionKind::ServerBusy);
    assert_eq!(response.header(header::RETRY_AFTER), Some("1"));
    assert_eq!(seen.calls(), 1);
    wait_in_use(&budget, 48 * KIB).await;

    write_all(&a, &rest).await.unwrap();
    assert_eq!(read_response(&mut a).await.status, StatusCode::OK);
    assert_eq!(budget.in_use(), 0);
}

#[tokio::test]
async fn a_dropped_connection_gives_its_reservation_back() {
    let budget = BodyBudget::new(64 * KIB);
    let verifier = builder().body_budget(budget.clone()).build().unwrap();
    let (addr, seen) = serve(&verifier).await;
    let (a, _) = hold(addr, 48 * KIB).await;
    let (b, _) = hold(addr, 16 * KIB).await;
    wait_in_use(&budget, 64 * KIB).await;
    drop(a);
    wait_in_use(&budget, 16 * KIB).await;
    drop(b);
    wait_in_use(&budget, 0).await;
    let c = post_whole(addr, &json_body(64 * KIB)).await;
    assert_eq!(c.status, StatusCode::OK, "{c:?}");
    assert_eq!(seen.calls(), 1);
    assert_eq!(budget.in_use(), 0);
}

#[tokio::test]
async fn timed_out_requests_free_the_budget_for_a_fresh_delivery() {
    // Stalled clients fill the budget; once the idle timeout drops them a
    // signed delivery is processed.
    let budget = BodyBudget::new(64 * KIB);
    let verifier = builder()
        .body_idle_timeout(Duration::from_secs(1))
        .body_budget(budget.clone())
        .build()
        .unwrap();
    let (addr, seen) = serve(&verifier).await;
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(hold(addr, 16 * KIB).await.0);
    }
    wait_in_use(&budget, 64 * KIB).await;
    let busy = post_whole(addr, &json_body(16 * KIB)).await;
    // Either refused while the budget is full, or (on a slow machine)
    // accepted after the stalled ones already timed out.
    assert!(
        busy.status == StatusCode::SERVICE_UNAVAILABLE || busy.status == StatusCode::OK,
        "{busy:?}"
    );
    for stream in &mut stalled {
        let response = read_response(stream).await;
        response.assert_problem(RejectionKind::BodyReadTimeout);
    }
    wait_in_use(&budget, 0).await;
    let fresh = post_whole(addr, &json_body(16 * KIB)).await;
    assert_eq!(fresh.status, StatusCode::OK, "{fresh:?}");
    assert!(seen.calls() >= 1);
    assert_eq!(budget.in_use(), 0);
}

// ---------------------------------------------------------------------------
// Order of the checks, and every path giving the budget back (oneshot)
// ---------------------------------------------------------------------------

/// A body that yields `first` and then never anything more.
struct Stalls {
    first: Option<Bytes>,
}

impl http_body::Body for Stalls {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.first.take() {
            Some(first) => Poll::Ready(Some(Ok(Frame::data(first)))),
            None => Poll::Pending,
        }
    }
}

#[tokio::test]
async fn head_checks_come_before_the_budget() {
    // A budget of zero refuses every non-empty body; the head checks still
    // answer first.
    let budget = BodyBudget::new(0);
    let verifier = builder()
        .max_body_bytes(NonZeroUsize::new(100).unwrap())
        .body_budget(budget.clone())
        .build()
        .unwrap();
    let (app, seen) = router(&verifier);
    let body = json_body(50);

    let unsigned = post_request(HeaderMap::new(), support::body(body.clone()));
    let response = send(app.clone(), unsigned).await;
    assert_problem(
        "unsigned",
        response,
        RejectionKind::MissingSignature,
        "github",
        &[],
    )
    .await;

    let big = json_body(101);
    let mut headers = signer().headers(&big);
    headers.insert(header::CONTENT_LENGTH, big.len().into());
    let response = send(app.clone(), post_request(headers, support::body(big))).await;
    assert_problem("too large", response, RejectionKind::BodyTooLarge, "github", &[]).await;

    let mut headers = signer().headers(&body);
    headers.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
    let response = send(app.clone(), post_request(headers, support::body(body.clone()))).await;
    assert_problem(
        "gzip",
        response,
        RejectionKind::UnsupportedContentEncoding,
        "github",
        &[],
    )
    .await;

    let response = send(
        app.clone(),
        post_request(signer().headers(&body), support::body(body.clone())),
    )
    .await;
    let (rejection, _) = assert_problem("busy", response, RejectionKind::ServerBusy, "github", &[]).await;
    assert_eq!(rejection.retry_after(), Some(Duration::from_secs(1)));

    // An empty body needs nothing from the budget.
    let response = send(app, post_request(signer().headers(b""), support::body(""))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.calls(), 1);
    assert_eq!(budget.in_use(), 0);
}

#[tokio::test]
async fn every_rejection_gives_the_budget_back() {
    let budget = BodyBudget::new(64 * KIB);
    let verifier = builder()
        .max_body_bytes(NonZeroUsize::new(8 * KIB).unwrap())
        .body_idle_timeout(Duration::from_millis(300))
        .body_budget(budget.clone())
        .build()
        .unwrap();
    let (app, seen) = router(&verifier);
    let body = json_body(4 * KIB);

    // 401 after the body was read: a signature over other bytes.
    let headers = signer().headers(b"other bytes");
    let response = send(app.clone(), post_request(headers, support::body(body.clone()))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(budget.in_use(), 0, "after a signature mismatch");

    // 413 while streaming (no Content-Length).
    let (endless, _) = support::Endless::new();
    let response = send(app.clone(), post_request(signer().headers(&body), endless)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(budget.in_use(), 0, "after a 413 mid-read");

    // 400: the stream broke.
    let (broken, _) = Broken::new(Bytes::from(body.clone()));
    let response = send(app.clone(), post_request(signer().headers(&body), broken)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(budget.in_use(), 0, "after a broken body");

    // 408: the body stalls after its first KiB.
    let mut headers = signer().headers(&body);
    headers.insert(header::CONTENT_LENGTH, body.len().into());
    let stalls = Stalls {
        first: Some(Bytes::copy_from_slice(&body[..KIB])),
    };
    let response = tokio::time::timeout(PATIENCE, send(app, post_request(headers, stalls)))
        .await
        .expect("no answer to a stalled body");
    assert_problem("stalled", response, RejectionKind::BodyReadTimeout, "github", &[]).await;
    assert_eq!(budget.in_use(), 0, "after a 408");
    assert_eq!(seen.calls(), 0);
}

#[tokio::test]
async fn a_cancelled_request_gives_its_reservation_back() {
    let budget = BodyBudget::new(64 * KIB);
    // Timers long enough that only the cancellation ends the request.
    let verifier = builder()
        .body_idle_timeout(Duration::from_secs(60))
        .body_budget(budget.clone())
        .build()
        .unwrap();
    let (app, seen) = router(&verifier);
    let body = json_body(48 * KIB);
    let mut headers = signer().headers(&body);
    headers.insert(header::CONTENT_LENGTH, body.len().into());
    let stalls = Stalls {
        first: Some(Bytes::copy_from_slice(&body[..KIB])),
    };
    let mut request = Box::pin(send(app, post_request(headers, stalls)));
    // Drive it until it waits for the rest of the body.
    let polled = tokio::time::timeout(Duration::from_millis(200), &mut request).await;
    assert!(polled.is_err(), "the request finished: {polled:?}");
    assert_eq!(
        budget.in_use(),
        48 * KIB,
        "the Content-Length is reserved mid-read"
    );
    drop(request);
    assert_eq!(budget.in_use(), 0, "dropping the future gave it back");
    assert_eq!(seen.calls(), 0);
}

#[tokio::test]
async fn routes_sharing_a_budget_share_its_counter() {
    let budget = BodyBudget::new(64 * KIB);
    let one = builder().body_budget(budget.clone()).build().unwrap();
    let two = builder().body_budget(budget.clone()).build().unwrap();
    let (addr_one, _) = serve(&one).await;
    let (addr_two, seen_two) = serve(&two).await;
    let (_a, _) = hold(addr_one, 48 * KIB).await;
    wait_in_use(&budget, 48 * KIB).await;
    let b = post_whole(addr_two, &json_body(32 * KIB)).await;
    b.assert_problem(RejectionKind::ServerBusy);
    let c = post_whole(addr_two, &json_body(16 * KIB)).await;
    assert_eq!(c.status, StatusCode::OK, "{c:?}");
    assert_eq!(seen_two.calls(), 1);
}
