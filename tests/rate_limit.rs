//! The rate limiter in front of real axum routers, driven both with
//! `oneshot` through `RateLimiter::service` and over real TCP through
//! `axum::serve(listener, limiter.into_make_service(app))` with clients
//! bound to distinct 127.0.0.x source addresses: burst then 429
//! problem+json with `Retry-After`, refusal before the body is read and
//! before the verifier, per-client quotas, trusted proxies and spoofed
//! forwarding headers, the failed-authentication lockout through a real
//! `Verifier`, per-route allowlists, bounded memory under a flood of
//! addresses, IPv6 /64 buckets and IPv4-mapped peers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::ConnectInfo;
use axum::response::Response;
use axum::routing::{any, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body::Frame;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;
use webhook_guard::dedupe::{Dedupe, MemoryStore};
use webhook_guard::test_util::TestSigner;
use webhook_guard::{
    ClientIp, Networks, ProxyHeader, RateLimiter, Rejection, RejectionKind, Scheme, VerifiedWebhook, Verifier,
};

use support::{post_request, Spy, PATH};

const SECRET: &str = "s";
const DELIVERY: &str = r#"{"action":"opened","number":7}"#;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A limiter with `per_second` and `burst`, defaults otherwise.
fn limiter(per_second: u32, burst: u32) -> RateLimiter {
    RateLimiter::builder()
        .per_second(nz(per_second))
        .burst(nz(burst))
        .build()
}

/// A router whose `/hook` (any method) echoes the [`ClientIp`] and axum
/// `ConnectInfo` it was given, and the number of times it ran.
fn echo_app() -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let handler = move |client: ClientIp, ConnectInfo(peer): ConnectInfo<SocketAddr>, body: Bytes| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Json(json!({
                "client": client.ip().to_string(),
                "peer": peer.to_string(),
                "body_len": body.len(),
            }))
        }
    };
    (Router::new().route(PATH, any(handler)), calls)
}

/// A `POST /hook` with `pairs` as headers and a small body.
fn plain(pairs: &[(&str, &str)]) -> Request<Body> {
    post_request(support::headers(pairs), Body::from("x"))
}

/// Sends `request` from `peer` through `limiter` in front of `app`.
async fn call<B>(limiter: &RateLimiter, app: &Router, peer: SocketAddr, request: Request<B>) -> Response
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    limiter
        .service(app.clone(), peer)
        .oneshot(request)
        .await
        .expect("the limiter and the router are infallible")
}

/// Asserts a 200 from [`echo_app`] and returns what the handler echoed.
async fn assert_echo(what: &str, response: Response) -> Value {
    let status = response.status();
    let bytes = support::body_bytes(response).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{what}: expected 200, got {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap()
}

/// Checks a refusal's head and problem document: status, problem+json,
/// the RFC 9457 fields and `reason`, no `provider` (the limiter is not a
/// route), and, for a 429, an integer `Retry-After` of at least 1 that
/// the document repeats. Returns `Retry-After` in seconds (0 for non-429).
fn check_problem(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    kind: RejectionKind,
) -> u64 {
    let text = String::from_utf8_lossy(body);
    assert_eq!(status, kind.status(), "{what}: status; body {text}");
    assert_eq!(
        headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
        Some(&b"application/problem+json"[..]),
        "{what}: content type"
    );
    let doc: Value =
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    let reason = kind.reason();
    assert_eq!(
        doc["type"],
        json!(format!("tag:webhook-guard,2026:reason/{reason}")),
        "{what}: {text}"
    );
    assert_eq!(doc["title"], json!(kind.title()), "{what}: {text}");
    assert_eq!(doc["status"], json!(kind.status().as_u16()), "{what}: {text}");
    assert_eq!(doc["reason"], json!(reason), "{what}: {text}");
    assert!(
        doc["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: detail in {text}"
    );
    if status != StatusCode::TOO_MANY_REQUESTS {
        return 0;
    }
    let retry = headers
        .get(header::RETRY_AFTER)
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .to_str()
        .unwrap();
    let retry: u64 = retry
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Retry-After {retry:?} is not an integer"));
    assert!(retry >= 1, "{what}: Retry-After {retry}");
    assert_eq!(doc["retry_after"], json!(retry), "{what}: {text}");
    retry
}

/// [`check_problem`] on an in-process response, which must also carry its
/// [`Rejection`] in the extensions. Returns `Retry-After` in seconds.
async fn assert_refused(what: &str, response: Response, kind: RejectionKind) -> u64 {
    let status = response.status();
    let headers = response.headers().clone();
    let rejection = response
        .extensions()
        .get::<Rejection>()
        .cloned()
        .unwrap_or_else(|| panic!("{what}: no Rejection in the extensions (status {status})"));
    assert_eq!(rejection.kind(), kind, "{what}: {rejection}");
    if kind.status() == StatusCode::TOO_MANY_REQUESTS {
        assert!(
            rejection.retry_after().is_some(),
            "{what}: no retry_after in the Rejection"
        );
    }
    let body = support::body_bytes(response).await;
    check_problem(what, status, &headers, &body, kind)
}

/// The kind of the [`Rejection`] in a response, if any, and its status.
fn outcome(response: &Response) -> (StatusCode, Option<RejectionKind>) {
    (
        response.status(),
        response.extensions().get::<Rejection>().map(Rejection::kind),
    )
}

/// A body that never yields a frame and counts how often it was polled.
struct Stalled {
    polls: Arc<AtomicUsize>,
}

impl Stalled {
    fn new() -> (Self, Arc<AtomicUsize>) {
        let polls = Arc::new(AtomicUsize::new(0));
        (
            Self {
                polls: Arc::clone(&polls),
            },
            polls,
        )
    }
}

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Poll::Pending
    }
}

// --- GitHub deliveries ------------------------------------------------------

fn github() -> Verifier {
    Verifier::builder(Scheme::github())
        .secret(SECRET)
        .build()
        .unwrap()
}

/// Headers GitHub would send for `body`.
fn signed(body: &[u8]) -> HeaderMap {
    TestSigner::new(&Scheme::github(), SECRET).unwrap().headers(body)
}

/// Well-formed headers for `body` whose signature is wrong.
fn forged(body: &[u8]) -> HeaderMap {
    let mut headers = signed(body);
    headers.insert(
        HeaderName::from_static("x-hub-signature-256"),
        HeaderValue::from_str(&format!("sha256={}", "0".repeat(64))).unwrap(),
    );
    headers
}

fn good_delivery() -> Request<Body> {
    post_request(signed(DELIVERY.as_bytes()), Body::from(DELIVERY))
}

fn bad_delivery() -> Request<Body> {
    post_request(forged(DELIVERY.as_bytes()), Body::from(DELIVERY))
}

/// A limiter whose request quota never gets in the way, with the given
/// failed-authentication quota.
fn generous(failed_per_minute: Option<u32>) -> RateLimiter {
    RateLimiter::builder()
        .per_second(nz(10_000))
        .burst(nz(10_000))
        .failed_authentications_per_minute(failed_per_minute.map(nz))
        .build()
}

// --- Real TCP ----------------------------------------------------------------

/// A server on 127.0.0.1 and the means to shut it down gracefully.
struct Server {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serves `app` behind `limiter`, the way the crate's docs show.
    async fn limited(limiter: RateLimiter, app: Router) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, limiter.into_make_service(app))
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Self { addr, stop, task }
    }

    /// Serves `app` without a limiter, with axum's own connect info.
    async fn with_connect_info(app: Router) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Self { addr, stop, task }
    }

    /// Sends one request from `from` (a fresh connection bound to it).
    async fn send(&self, from: Ipv4Addr, method: &str, pairs: &[(&str, &str)], body: &[u8]) -> Reply {
        http(self.addr, from, method, pairs, body).await
    }

    async fn shutdown(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("graceful shutdown within 10 s")
            .expect("server task")
            .expect("server error");
    }
}

/// A response read off the wire, and the client's own socket address.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    local: SocketAddr,
}

impl Reply {
    /// The handler's echo; panics unless 200.
    fn echo(&self, what: &str) -> Value {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{what}: expected 200, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Checks a refusal of `kind`; returns `Retry-After`.
    fn refused(&self, what: &str, kind: RejectionKind) -> u64 {
        check_problem(what, self.status, &self.headers, &self.body, kind)
    }
}

/// One HTTP/1.1 request written by hand on a socket bound to `from`:0,
/// with `Connection: close`, and its response.
async fn http(
    server: SocketAddr,
    from: Ipv4Addr,
    method: &str,
    pairs: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut replies = http_keep_alive(server, from, 1, method, pairs, body).await;
    assert_eq!(replies.len(), 1);
    replies.remove(0)
}

/// `count` identical requests written at once on one keep-alive
/// connection bound to `from`:0 (the last one with `Connection: close`),
/// and their responses in order.
async fn http_keep_alive(
    server: SocketAddr,
    from: Ipv4Addr,
    count: usize,
    method: &str,
    pairs: &[(&str, &str)],
    body: &[u8],
) -> Vec<Reply> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let local = stream.local_addr().unwrap();
    let mut bytes = Vec::new();
    for i in 1..=count {
        let connection = if i == count { "close" } else { "keep-alive" };
        let mut request = format!(
            "{method} {PATH} HTTP/1.1\r\nHost: {server}\r\nConnection: {connection}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in pairs {
            request.push_str(name);
            request.push_str(": ");
            request.push_str(value);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        bytes.extend_from_slice(request.as_bytes());
        bytes.extend_from_slice(body);
    }
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange(&mut stream, &bytes))
        .await
        .expect("responses within 10 s");
    let mut rest = &raw[..];
    let mut replies = Vec::new();
    while !rest.is_empty() {
        let (status, headers, body, after) = parse_response(rest);
        replies.push(Reply {
            status,
            headers,
            body,
            local,
        });
        rest = after;
    }
    replies
}

/// Writes `request` and reads until the server closes the connection
/// (tokio's `io-util` is not enabled, so with `try_write` / `try_read`).
async fn exchange(stream: &mut TcpStream, mut request: &[u8]) -> Vec<u8> {
    while !request.is_empty() {
        stream.writable().await.unwrap();
        match stream.try_write(request) {
            Ok(n) => request = &request[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("write: {e}"),
        }
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        stream.readable().await.unwrap();
        match stream.try_read(&mut buf) {
            Ok(0) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e} after {} bytes", raw.len()),
        }
    }
}

/// The first response in `raw` (framed by `Content-Length`, chunked, or
/// up to the end) and what follows it.
fn parse_response(raw: &[u8]) -> (StatusCode, HeaderMap, Bytes, &[u8]) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let code: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    let rest = &raw[end + 4..];
    let chunked = headers
        .get(header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let length = headers
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
    let (body, after) = match (chunked, length) {
        (true, _) => dechunk(rest),
        (false, Some(n)) => (rest[..n].to_vec(), &rest[n..]),
        (false, None) => (rest.to_vec(), &rest[rest.len()..]),
    };
    (
        StatusCode::from_u16(code).unwrap(),
        headers,
        Bytes::from(body),
        after,
    )
}

/// A chunked body at the start of `rest`, and what follows it.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, &[u8]) {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&rest[..eol]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        rest = &rest[eol + 2..];
        if size == 0 {
            // No trailers: the final CRLF.
            return (out, &rest[2..]);
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// `127.0.0.n`.
fn lo(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

// ---------------------------------------------------------------------------
// 1. Burst, then 429
// ---------------------------------------------------------------------------

#[tokio::test]
async fn burst_passes_then_429_problem_json_with_retry_after() {
    let limiter = limiter(1, 3);
    let (app, calls) = echo_app();
    let client = addr("127.0.0.2:40000");
    for i in 1..=3 {
        let echo = assert_echo(
            &format!("request {i}"),
            call(&limiter, &app, client, plain(&[])).await,
        )
        .await;
        assert_eq!(echo["client"], "127.0.0.2");
    }
    let response = call(&limiter, &app, client, plain(&[])).await;
    let retry = assert_refused("4th request", response, RejectionKind::RateLimited).await;
    // One request a second: the wait is about a second.
    assert!(retry <= 2, "Retry-After {retry} for a rate of 1/s");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the handler ran for a refused request"
    );
    // The refusal did not cost another client anything.
    let other = call(&limiter, &app, addr("127.0.0.3:40000"), plain(&[])).await;
    assert_echo("another client", other).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn every_request_method_and_path_counts_against_the_same_quota() {
    let limiter = limiter(1, 2);
    let (app, calls) = echo_app();
    let client = addr("127.0.0.2:1");
    let get = Request::get(PATH).body(Body::empty()).unwrap();
    assert_echo("GET", call(&limiter, &app, client, get).await).await;
    // Unknown path: routed to the 404 fallback, but still counted.
    let missing = Request::post("/nowhere").body(Body::empty()).unwrap();
    assert_eq!(
        call(&limiter, &app, client, missing).await.status(),
        StatusCode::NOT_FOUND
    );
    let response = call(&limiter, &app, client, plain(&[])).await;
    assert_refused("3rd request", response, RejectionKind::RateLimited).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// 2. Applied before the body is read and before the verifier
// ---------------------------------------------------------------------------

#[tokio::test]
async fn refused_before_the_body_is_polled() {
    let limiter = limiter(1, 2);
    let (app, calls) = echo_app();
    let client = addr("127.0.0.2:1");
    // A request that passes does read its body (the handler takes Bytes),
    // so the spy would see it if the limiter let the next one through.
    let (spy, polls) = Spy::new("hello");
    let echo = assert_echo(
        "1st",
        call(&limiter, &app, client, post_request(HeaderMap::new(), spy)).await,
    )
    .await;
    assert_eq!(echo["body_len"], 5);
    assert!(
        polls.load(Ordering::SeqCst) > 0,
        "control: the handler polled the body"
    );
    assert_echo("2nd", call(&limiter, &app, client, plain(&[])).await).await;

    let (stalled, polls) = Stalled::new();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        call(&limiter, &app, client, post_request(HeaderMap::new(), stalled)),
    )
    .await
    .expect("the limiter waited for a body that never comes");
    assert_refused("3rd", response, RejectionKind::RateLimited).await;
    assert_eq!(
        polls.load(Ordering::SeqCst),
        0,
        "the refused request's body was polled"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn rate_limited_requests_never_reach_the_verifier() {
    let limiter = RateLimiter::builder()
        .refund_verified_deliveries(true)
        .per_second(nz(1))
        .burst(nz(2))
        .failed_authentications_per_minute(Some(nz(1)))
        .build();
    let (app, calls) = support::app(&github());
    let client = addr("127.0.0.2:1");
    for i in 1..=2 {
        let response = call(&limiter, &app, client, good_delivery()).await;
        support::assert_ok(&format!("delivery {i}"), response).await;
    }
    // Fresh verified deliveries are refunded: the quota is still whole,
    // and two requests that do not verify spend it.
    for i in 1..=2 {
        let response = call(
            &limiter,
            &app,
            client,
            Request::get("/").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "unverified request {i}");
    }
    // Over the quota, a forged delivery is answered by the limiter (429
    // rate_limited), not by the verifier (401), and its body is not read.
    let (stalled, polls) = Stalled::new();
    let request = post_request(forged(DELIVERY.as_bytes()), stalled);
    let response = tokio::time::timeout(Duration::from_secs(10), call(&limiter, &app, client, request))
        .await
        .expect("the request waited for its body");
    assert_refused(
        "forged delivery over the quota",
        response,
        RejectionKind::RateLimited,
    )
    .await;
    assert_eq!(polls.load(Ordering::SeqCst), 0);
    // A correct one too.
    let response = call(&limiter, &app, client, good_delivery()).await;
    assert_refused(
        "good delivery over the quota",
        response,
        RejectionKind::RateLimited,
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------
// 3. Real TCP: per-client quotas, spoofing, trusted proxies
// ---------------------------------------------------------------------------

#[tokio::test]
async fn tcp_distinct_source_addresses_have_distinct_quotas() {
    let (app, calls) = echo_app();
    let server = Server::limited(limiter(1, 2), app).await;
    for n in [2, 3, 4] {
        for i in 1..=2 {
            let reply = server.send(lo(n), "POST", &[], b"hi").await;
            let echo = reply.echo(&format!("127.0.0.{n} request {i}"));
            // The handler sees the resolved client and the socket peer.
            assert_eq!(echo["client"], json!(lo(n).to_string()));
            assert_eq!(echo["peer"], json!(reply.local.to_string()));
            assert_eq!(echo["body_len"], 2);
        }
        let reply = server.send(lo(n), "POST", &[], b"hi").await;
        reply.refused(&format!("127.0.0.{n} request 3"), RejectionKind::RateLimited);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    server.shutdown().await;
}

#[tokio::test]
async fn tcp_every_request_on_a_keep_alive_connection_is_counted() {
    let (app, calls) = echo_app();
    let server = Server::limited(limiter(1, 3), app).await;
    let replies = http_keep_alive(server.addr, lo(6), 5, "POST", &[], b"abc").await;
    assert_eq!(replies.len(), 5);
    for (i, reply) in replies[..3].iter().enumerate() {
        let echo = reply.echo(&format!("request {} on the connection", i + 1));
        assert_eq!(echo["client"], "127.0.0.6");
        assert_eq!(echo["peer"], json!(reply.local.to_string()));
    }
    for (i, reply) in replies[3..].iter().enumerate() {
        reply.refused(
            &format!("request {} on the connection", i + 4),
            RejectionKind::RateLimited,
        );
    }
    // A new connection from the same address shares the quota.
    let reply = server.send(lo(6), "POST", &[], b"").await;
    reply.refused("new connection", RejectionKind::RateLimited);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn tcp_forwarding_headers_from_untrusted_peers_are_ignored() {
    let (app, calls) = echo_app();
    // No trusted proxies at all.
    let server = Server::limited(limiter(1, 3), app).await;
    let spoofs = [
        ("x-forwarded-for", "198.51.100.1"),
        ("forwarded", "for=198.51.100.2"),
        ("x-real-ip", "198.51.100.3"),
    ];
    for (i, (name, value)) in spoofs.iter().enumerate() {
        let reply = server.send(lo(5), "POST", &[(name, value)], b"").await;
        let echo = reply.echo(&format!("spoof {i}"));
        assert_eq!(echo["client"], "127.0.0.5", "{name}: {value}");
    }
    for i in 0..5 {
        let xff = format!("198.51.100.{}", 10 + i);
        let reply = server
            .send(lo(5), "POST", &[("x-forwarded-for", &xff)], b"")
            .await;
        reply.refused(
            &format!("rotating X-Forwarded-For {xff}"),
            RejectionKind::RateLimited,
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn tcp_trusted_proxy_buckets_by_the_forwarded_client() {
    let limiter = RateLimiter::builder()
        .per_second(nz(1))
        .burst(nz(2))
        .trusted_proxies(Networks::parse("127.0.0.1/32").unwrap())
        .build();
    let (app, calls) = echo_app();
    let server = Server::limited(limiter.clone(), app).await;
    let proxy = lo(1);

    // Exhaust 203.0.113.7 through the proxy.
    for i in 1..=2 {
        let reply = server
            .send(proxy, "POST", &[("x-forwarded-for", "203.0.113.7")], b"")
            .await;
        let echo = reply.echo(&format!("203.0.113.7 request {i}"));
        assert_eq!(echo["client"], "203.0.113.7");
        assert_eq!(echo["peer"], json!(reply.local.to_string()));
        assert_eq!(reply.local.ip(), IpAddr::V4(proxy));
    }
    let reply = server
        .send(proxy, "POST", &[("x-forwarded-for", "203.0.113.7")], b"")
        .await;
    reply.refused("203.0.113.7 request 3", RejectionKind::RateLimited);
    // A client-written leftmost entry does not move it to a fresh bucket,
    // on the same line or on a line of its own.
    for spoof in [
        "198.51.100.1, 203.0.113.7",
        "10.0.0.1,203.0.113.7",
        "garbage, 203.0.113.7",
    ] {
        let reply = server
            .send(proxy, "POST", &[("x-forwarded-for", spoof)], b"")
            .await;
        reply.refused(&format!("spoofed {spoof:?}"), RejectionKind::RateLimited);
    }
    let reply = server
        .send(
            proxy,
            "POST",
            &[
                ("x-forwarded-for", "198.51.100.9"),
                ("x-forwarded-for", "203.0.113.7"),
            ],
            b"",
        )
        .await;
    reply.refused("spoofed line of its own", RejectionKind::RateLimited);

    // Another forwarded client has its own quota.
    let reply = server
        .send(proxy, "POST", &[("x-forwarded-for", "203.0.113.8")], b"")
        .await;
    assert_eq!(reply.echo("203.0.113.8")["client"], "203.0.113.8");
    // The proxy itself, with no header, is its own client.
    let reply = server.send(proxy, "POST", &[], b"").await;
    assert_eq!(reply.echo("proxy without a header")["client"], "127.0.0.1");

    // An untrusted peer's X-Forwarded-For is ignored: naming the exhausted
    // client does not hurt it, naming another does not help it.
    let reply = server
        .send(lo(2), "POST", &[("x-forwarded-for", "203.0.113.7")], b"")
        .await;
    assert_eq!(
        reply.echo("untrusted peer naming 203.0.113.7")["client"],
        "127.0.0.2"
    );
    let reply = server
        .send(lo(2), "POST", &[("x-forwarded-for", "203.0.113.99")], b"")
        .await;
    assert_eq!(
        reply.echo("untrusted peer naming 203.0.113.99")["client"],
        "127.0.0.2"
    );
    let reply = server
        .send(lo(2), "POST", &[("x-forwarded-for", "203.0.113.100")], b"")
        .await;
    reply.refused("untrusted peer, 3rd request", RejectionKind::RateLimited);

    // `client_ip` agrees with what the handler saw.
    let headers = support::headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.7")]);
    assert_eq!(limiter.client_ip(ip("127.0.0.1"), &headers), ip("203.0.113.7"));
    assert_eq!(limiter.client_ip(ip("127.0.0.2"), &headers), ip("127.0.0.2"));
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    server.shutdown().await;
}

#[tokio::test]
async fn tcp_forwarded_header_and_ipv6_clients_per_64() {
    let limiter = RateLimiter::builder()
        .per_second(nz(1))
        .burst(nz(2))
        .trusted_proxies(Networks::parse("127.0.0.1").unwrap())
        .proxy_header(ProxyHeader::Forwarded)
        .build();
    let (app, _calls) = echo_app();
    let server = Server::limited(limiter, app).await;
    let proxy = lo(1);

    let reply = server
        .send(
            proxy,
            "POST",
            &[("forwarded", r#"for="[2001:db8::1]:4711""#)],
            b"",
        )
        .await;
    assert_eq!(reply.echo("[2001:db8::1]:4711")["client"], "2001:db8::1");
    // Another address of the same /64 shares the quota.
    let reply = server
        .send(
            proxy,
            "POST",
            &[("forwarded", r#"for="[2001:db8::ffff:2]";proto=https"#)],
            b"",
        )
        .await;
    assert_eq!(reply.echo("2001:db8::ffff:2")["client"], "2001:db8::ffff:2");
    let reply = server
        .send(
            proxy,
            "POST",
            &[("forwarded", r#"for="[2001:db8:0:0:aaaa::3]:80""#)],
            b"",
        )
        .await;
    reply.refused("third address of the /64", RejectionKind::RateLimited);
    // A spoofed element on the left does not help either.
    let reply = server
        .send(
            proxy,
            "POST",
            &[("forwarded", r#"for=198.51.100.1, for="[2001:db8::1]""#)],
            b"",
        )
        .await;
    reply.refused("spoofed Forwarded element", RejectionKind::RateLimited);
    // The next /64 is another client.
    let reply = server
        .send(proxy, "POST", &[("forwarded", r#"for="[2001:db8:0:1::1]""#)], b"")
        .await;
    assert_eq!(reply.echo("next /64")["client"], "2001:db8:0:1::1");
    // With `Forwarded` configured, X-Forwarded-For is not read.
    let reply = server
        .send(proxy, "POST", &[("x-forwarded-for", "203.0.113.7")], b"")
        .await;
    assert_eq!(reply.echo("X-Forwarded-For ignored")["client"], "127.0.0.1");
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// 4. Failed-authentication quota through a real Verifier
// ---------------------------------------------------------------------------

/// The brief's contract: with a quota of 3 failed authentications a
/// minute, 3 forged deliveries are 401 and the 4th request, even correctly
/// signed, is refused with 429 before it is verified.
#[tokio::test]
async fn failed_authentications_lock_the_client_out_once_the_quota_is_spent() {
    let limiter = generous(Some(3));
    let (app, calls) = support::app(&github());
    let a = addr("127.0.0.20:5000");
    for i in 1..=3 {
        let response = call(&limiter, &app, a, bad_delivery()).await;
        assert_eq!(
            outcome(&response),
            (StatusCode::UNAUTHORIZED, Some(RejectionKind::SignatureMismatch)),
            "forged delivery {i}"
        );
    }
    let response = call(&limiter, &app, a, good_delivery()).await;
    let (status, kind) = outcome(&response);
    assert_eq!(
        (status, kind),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some(RejectionKind::TooManyFailedAuthentications)
        ),
        "4th request after 3 failed authentications (quota 3 a minute) was let through to the verifier"
    );
    assert_refused(
        "4th request",
        response,
        RejectionKind::TooManyFailedAuthentications,
    )
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the handler ran for a locked-out client"
    );
}

#[tokio::test]
async fn a_locked_out_client_does_not_lock_out_others() {
    let limiter = generous(Some(3));
    let (app, calls) = support::app(&github());
    let a = addr("127.0.0.20:5000");
    let b = addr("127.0.0.21:5000");
    // Forge until locked out. The quota is never cut short: the first 3
    // failures are always answered by the verifier.
    let mut unauthorized = 0;
    let retry = loop {
        let response = call(&limiter, &app, a, bad_delivery()).await;
        match outcome(&response) {
            (StatusCode::UNAUTHORIZED, Some(kind)) if kind.is_authentication_failure() => unauthorized += 1,
            (StatusCode::TOO_MANY_REQUESTS, _) => {
                break assert_refused("lockout", response, RejectionKind::TooManyFailedAuthentications).await;
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            unauthorized <= 10,
            "never locked out after {unauthorized} failures"
        );
    };
    assert!(
        unauthorized >= 3,
        "locked out after {unauthorized} failures, quota 3"
    );
    // 3 a minute: the next try is up to 20 s away, never less than 1 s.
    assert!((1..=60).contains(&retry), "Retry-After {retry}");

    // A is locked out even when it signs correctly now.
    let response = call(&limiter, &app, a, good_delivery()).await;
    assert_refused(
        "correct delivery from locked-out A",
        response,
        RejectionKind::TooManyFailedAuthentications,
    )
    .await;
    // Even another route or path: the lockout is per client, before routing.
    let response = call(&limiter, &app, a, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_refused(
        "A on another path",
        response,
        RejectionKind::TooManyFailedAuthentications,
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // B is not affected.
    for i in 1..=3 {
        let response = call(&limiter, &app, b, good_delivery()).await;
        support::assert_ok(&format!("B delivery {i}"), response).await;
    }
    // And B's own failures are counted separately from A's.
    for i in 1..=3 {
        let response = call(&limiter, &app, b, bad_delivery()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "B failure {i}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A route that verifies GitHub deliveries on any method (so the verifier,
/// not axum's method router, answers 405), with a 16-byte body limit, and
/// a second route `/allow` only open to 192.0.2.0/24.
fn strict_app() -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let handler = move |_hook: VerifiedWebhook| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "ok"
        }
    };
    let small = Verifier::builder(Scheme::github())
        .secret(SECRET)
        .max_body_bytes(NonZeroUsize::new(16).unwrap())
        .build()
        .unwrap();
    let fenced = Verifier::builder(Scheme::github())
        .secret(SECRET)
        .allowed_clients(Networks::parse("192.0.2.0/24").unwrap())
        .build()
        .unwrap();
    let router = Router::new()
        .route(PATH, any(handler.clone()).layer(small.layer()))
        .route("/allow", any(handler).layer(fenced.layer()));
    (router, calls)
}

#[tokio::test]
async fn rejections_other_than_401_do_not_count_as_failed_authentications() {
    let limiter = generous(Some(3));
    let (app, calls) = strict_app();
    let a = addr("127.0.0.30:5000");
    let small = b"{}";
    let large = b"{\"far\":\"over sixteen bytes\"}";
    for i in 0..10 {
        // 413 (Content-Length over the limit), with a forged signature.
        let request = post_request(forged(large), Body::from(&large[..]));
        let response = call(&limiter, &app, a, request).await;
        assert_eq!(
            outcome(&response),
            (StatusCode::PAYLOAD_TOO_LARGE, Some(RejectionKind::BodyTooLarge)),
            "413 #{i}"
        );
        // 405 from the verifier.
        let mut request = post_request(forged(small), Body::from(&small[..]));
        *request.method_mut() = Method::PUT;
        let response = call(&limiter, &app, a, request).await;
        assert_eq!(
            outcome(&response),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Some(RejectionKind::MethodNotAllowed)
            ),
            "405 #{i}"
        );
        // 415.
        let mut headers = forged(small);
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let response = call(&limiter, &app, a, post_request(headers, Body::from(&small[..]))).await;
        assert_eq!(
            outcome(&response),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Some(RejectionKind::UnsupportedContentEncoding)
            ),
            "415 #{i}"
        );
        // 403 from an allowlist.
        let mut request = post_request(signed(small), Body::from(&small[..]));
        *request.uri_mut() = "/allow".parse().unwrap();
        let response = call(&limiter, &app, a, request).await;
        assert_eq!(
            outcome(&response),
            (StatusCode::FORBIDDEN, Some(RejectionKind::ClientNotAllowed)),
            "403 #{i}"
        );
        // 404 from the router.
        let request = Request::post("/nowhere").body(Body::empty()).unwrap();
        let response = call(&limiter, &app, a, request).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "404 #{i}");
    }
    // 50 rejections later, A is not locked out.
    let response = call(
        &limiter,
        &app,
        a,
        post_request(signed(small), Body::from(&small[..])),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "A after 50 non-401 rejections");
    // And its whole quota of 3 failures is still there (the 1st..3rd are
    // answered by the verifier, never by the lockout).
    for i in 1..=3 {
        let response = call(
            &limiter,
            &app,
            a,
            post_request(forged(small), Body::from(&small[..])),
        )
        .await;
        assert_eq!(
            outcome(&response),
            (StatusCode::UNAUTHORIZED, Some(RejectionKind::SignatureMismatch)),
            "failure {i}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn successful_deliveries_never_count_as_failed_authentications() {
    let limiter = generous(Some(1));
    let (app, calls) = support::app(&github());
    let a = addr("127.0.0.31:5000");
    for i in 1..=20 {
        let response = call(&limiter, &app, a, good_delivery()).await;
        support::assert_ok(&format!("delivery {i}"), response).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn without_a_failed_authentication_quota_nobody_is_locked_out() {
    let limiter = generous(None);
    let (app, calls) = support::app(&github());
    let a = addr("127.0.0.32:5000");
    for i in 1..=10 {
        let response = call(&limiter, &app, a, bad_delivery()).await;
        assert_eq!(
            outcome(&response),
            (StatusCode::UNAUTHORIZED, Some(RejectionKind::SignatureMismatch)),
            "forged delivery {i}"
        );
    }
    let response = call(&limiter, &app, a, good_delivery()).await;
    support::assert_ok("correct delivery after 10 failures", response).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Over time, a client guessing signatures gets no more guesses evaluated
/// than its quota: 600 a minute is one every 100 ms once the burst is
/// spent. The bound only depends on the time elapsed (a slower machine
/// makes fewer guesses, never more).
#[tokio::test]
async fn sustained_guessing_stays_within_the_failed_authentication_quota() {
    const PER_MINUTE: u32 = 600;
    let interval = Duration::from_secs(60) / PER_MINUTE;
    let limiter = generous(Some(PER_MINUTE));
    let (app, calls) = support::app(&github());
    let a = addr("127.0.0.33:5000");
    // Spend the burst.
    let mut spent = 0;
    loop {
        let response = call(&limiter, &app, a, bad_delivery()).await;
        match response.status() {
            StatusCode::UNAUTHORIZED => spent += 1,
            StatusCode::TOO_MANY_REQUESTS => break,
            other => panic!("unexpected {other}"),
        }
        assert!(spent <= 2 * PER_MINUTE, "never locked out");
    }
    // Keep guessing for 2 s, a try every few ms.
    let start = Instant::now();
    let mut evaluated = 0u32;
    while start.elapsed() < Duration::from_secs(2) {
        let response = call(&limiter, &app, a, bad_delivery()).await;
        match response.status() {
            StatusCode::UNAUTHORIZED => evaluated += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let elapsed = start.elapsed();
    // Cells replenished in the window, plus one for the boundary.
    let allowed = (elapsed.as_secs_f64() / interval.as_secs_f64()).floor() as u32 + 1;
    assert!(
        evaluated <= allowed,
        "{evaluated} forged signatures were verified in {elapsed:?} after the burst of {spent} \
         was spent; a quota of {PER_MINUTE}/min allows at most {allowed}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------
// 5. Allowlists
// ---------------------------------------------------------------------------

fn allowlisted() -> Verifier {
    Verifier::builder(Scheme::github())
        .secret(SECRET)
        .allowed_clients(Networks::parse("127.0.0.0/30").unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn allowlist_admits_only_listed_clients() {
    let limiter = generous(Some(20));
    let (app, calls) = support::app(&allowlisted());
    let response = call(&limiter, &app, addr("127.0.0.2:7000"), good_delivery()).await;
    support::assert_ok("127.0.0.2", response).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let (spy, polls) = Spy::new(DELIVERY);
    let request = post_request(signed(DELIVERY.as_bytes()), spy);
    let response = call(&limiter, &app, addr("127.0.0.9:7000"), request).await;
    assert_refused("127.0.0.9", response, RejectionKind::ClientNotAllowed).await;
    assert_eq!(
        polls.load(Ordering::SeqCst),
        0,
        "the body was read for a refused client"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the handler ran for a refused client"
    );
    // An IPv4-mapped peer is checked as IPv4.
    let response = call(&limiter, &app, addr("[::ffff:127.0.0.3]:7000"), good_delivery()).await;
    support::assert_ok("::ffff:127.0.0.3", response).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn allowlist_checks_the_client_resolved_behind_a_trusted_proxy() {
    let limiter = RateLimiter::builder()
        .trusted_proxies(Networks::parse("127.0.0.1/32").unwrap())
        .build();
    let (app, calls) = support::app(&allowlisted());
    let proxy = addr("127.0.0.1:7000");
    let with_xff = |xff: &str| {
        let mut headers = signed(DELIVERY.as_bytes());
        headers.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        post_request(headers, Body::from(DELIVERY))
    };
    // The proxy is inside the allowlist, but the client it forwards is not.
    let response = call(&limiter, &app, proxy, with_xff("203.0.113.7")).await;
    assert_refused(
        "203.0.113.7 via the proxy",
        response,
        RejectionKind::ClientNotAllowed,
    )
    .await;
    // Nor does a spoofed allowed address on the left help.
    let response = call(&limiter, &app, proxy, with_xff("127.0.0.2, 203.0.113.7")).await;
    assert_refused("spoofed leftmost", response, RejectionKind::ClientNotAllowed).await;
    // A listed client via the proxy is accepted.
    let response = call(&limiter, &app, proxy, with_xff("127.0.0.3")).await;
    support::assert_ok("127.0.0.3 via the proxy", response).await;
    // An unlisted, untrusted peer cannot claim a listed address.
    let response = call(&limiter, &app, addr("127.0.0.9:7000"), with_xff("127.0.0.2")).await;
    assert_refused(
        "untrusted peer claiming 127.0.0.2",
        response,
        RejectionKind::ClientNotAllowed,
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn allowlist_fails_closed_without_a_client_address() {
    let (app, calls) = support::app(&allowlisted());
    // No limiter, no connect info: 403, never 500, body not read.
    let (spy, polls) = Spy::new(DELIVERY);
    let response = support::send(app.clone(), post_request(signed(DELIVERY.as_bytes()), spy)).await;
    assert_refused("no client address", response, RejectionKind::ClientNotAllowed).await;
    assert_eq!(polls.load(Ordering::SeqCst), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn allowlist_uses_a_connect_info_extension_without_the_limiter() {
    let (app, calls) = support::app(&allowlisted());
    let mut request = good_delivery();
    request
        .extensions_mut()
        .insert(ConnectInfo(addr("127.0.0.2:7000")));
    support::assert_ok("ConnectInfo 127.0.0.2", support::send(app.clone(), request).await).await;
    let mut request = good_delivery();
    request
        .extensions_mut()
        .insert(ConnectInfo(addr("127.0.0.9:7000")));
    let response = support::send(app.clone(), request).await;
    assert_refused("ConnectInfo 127.0.0.9", response, RejectionKind::ClientNotAllowed).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// axum's documented way to give a router a peer address in tests is the
/// `MockConnectInfo` layer; `ConnectInfo` extractors honour it.
#[tokio::test]
async fn allowlist_uses_axum_mock_connect_info() {
    let (app, calls) = support::app(&allowlisted());
    let allowed = app.clone().layer(MockConnectInfo(addr("127.0.0.2:7000")));
    let response = support::send(allowed, good_delivery()).await;
    let (status, kind) = outcome(&response);
    assert_eq!(
        (status, kind),
        (StatusCode::OK, None),
        "a router with MockConnectInfo(127.0.0.2) was refused: the allowlist ignored the mocked peer"
    );
    let refused = app.layer(MockConnectInfo(addr("127.0.0.9:7000")));
    let response = support::send(refused, good_delivery()).await;
    assert_refused(
        "MockConnectInfo 127.0.0.9",
        response,
        RejectionKind::ClientNotAllowed,
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn tcp_allowlist_with_and_without_the_limiter() {
    let signed_pairs = |body: &[u8]| -> Vec<(String, String)> {
        signed(body)
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect()
    };
    let pairs = signed_pairs(DELIVERY.as_bytes());
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();

    let (app, calls) = support::app(&allowlisted());
    let limited = Server::limited(generous(Some(20)), app.clone()).await;
    let plain = Server::with_connect_info(app).await;
    for server in [&limited, &plain] {
        let reply = server.send(lo(2), "POST", &pairs, DELIVERY.as_bytes()).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "127.0.0.2: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let reply = server.send(lo(9), "POST", &pairs, DELIVERY.as_bytes()).await;
        reply.refused("127.0.0.9", RejectionKind::ClientNotAllowed);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    limited.shutdown().await;
    plain.shutdown().await;
}

// ---------------------------------------------------------------------------
// 6. Bounded memory under a flood of addresses
// ---------------------------------------------------------------------------

#[tokio::test]
async fn tracked_clients_stay_bounded_under_a_flood_of_addresses() {
    const CAP: usize = 10_000;
    const FLOOD: u32 = 200_000;
    const SLACK: usize = 256;
    let per_second = 50;
    let burst = 100;
    let limiter = RateLimiter::builder()
        .per_second(nz(per_second))
        .burst(nz(burst))
        .max_tracked_clients(NonZeroUsize::new(CAP).unwrap())
        .build();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let app = Router::new().route(
        PATH,
        post(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {}
        }),
    );
    let mut most = 0;
    let mut refused = 0u32;
    let started = Instant::now();
    for i in 0..FLOOD {
        // 127.0.0.1 upwards: every address distinct.
        let peer = SocketAddr::from((Ipv4Addr::from(0x7f00_0001 + i), 40_000));
        let request = Request::post(PATH).body(Body::empty()).unwrap();
        let response = call(&limiter, &app, peer, request).await;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("flood request {i} from {peer}: {other}"),
        }
        most = most.max(limiter.tracked_clients());
    }
    let flood_time = started.elapsed();
    println!(
        "flood: {FLOOD} addresses in {flood_time:?}, {refused} refused, at most {most} tracked, {} now",
        limiter.tracked_clients()
    );
    assert!(most <= CAP + SLACK, "{most} clients tracked at once, cap {CAP}");
    assert_eq!(calls.load(Ordering::SeqCst) as u32 + refused, FLOOD);

    // A brand-new client after the flood is throttled sensibly: only 200s
    // and 429 rate_limited, and never more than its own burst plus the
    // shared overflow burst, plus what the time taken replenishes.
    let newcomer = addr("127.255.255.254:1");
    let mut passed = 0u32;
    let mut throttled = 0u32;
    let started = Instant::now();
    for i in 0..3 * burst {
        let response = call(&limiter, &app, newcomer, plain(&[])).await;
        match response.status() {
            StatusCode::OK => passed += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                throttled += 1;
                if throttled == 1 {
                    assert_refused("newcomer", response, RejectionKind::RateLimited).await;
                }
            }
            other => panic!("newcomer request {i}: {other}"),
        }
    }
    let replenished = (started.elapsed().as_secs_f64() * f64::from(per_second)).ceil() as u32;
    assert!(
        passed <= 2 * burst + replenished + 1,
        "newcomer passed {passed} of {} requests",
        3 * burst
    );
    assert!(throttled > 0, "newcomer was never throttled");
    assert!(limiter.tracked_clients() <= CAP + SLACK);

    // Once the flood's clients are idle they are forgotten, and the
    // table is usable again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    limiter.forget_idle_clients();
    assert!(
        limiter.tracked_clients() <= 1,
        "{} clients still tracked after the flood went idle",
        limiter.tracked_clients()
    );
    let fresh = addr("127.255.255.253:1");
    for i in 1..=burst {
        let response = call(&limiter, &app, fresh, plain(&[])).await;
        assert_eq!(response.status(), StatusCode::OK, "fresh client request {i}");
    }
}

// ---------------------------------------------------------------------------
// 7. IPv6 per /64, IPv4-mapped peers as IPv4
// ---------------------------------------------------------------------------

#[tokio::test]
async fn ipv6_clients_are_counted_per_64() {
    let limiter = limiter(1, 1);
    let (app, _calls) = echo_app();
    let echo = assert_echo(
        "2001:db8:1:2::1",
        call(&limiter, &app, addr("[2001:db8:1:2::1]:1"), plain(&[])).await,
    )
    .await;
    assert_eq!(echo["client"], "2001:db8:1:2::1");
    let response = call(
        &limiter,
        &app,
        addr("[2001:db8:1:2:ffff:ffff:ffff:ffff]:2"),
        plain(&[]),
    )
    .await;
    assert_refused("same /64", response, RejectionKind::RateLimited).await;
    let response = call(&limiter, &app, addr("[2001:db8:1:3::1]:1"), plain(&[])).await;
    assert_echo("next /64", response).await;
    let response = call(&limiter, &app, addr("[2001:db8:1:1:ffff::1]:1"), plain(&[])).await;
    assert_echo("previous /64", response).await;
}

#[tokio::test]
async fn ipv4_mapped_peers_count_as_ipv4() {
    let limiter = limiter(1, 1);
    let (app, _calls) = echo_app();
    // Mapped first, then plain.
    let mapped = addr("[::ffff:127.0.0.5]:1234");
    let echo = assert_echo("mapped 127.0.0.5", call(&limiter, &app, mapped, plain(&[])).await).await;
    assert_eq!(echo["client"], "127.0.0.5", "ClientIp is given as IPv4");
    assert_eq!(
        echo["peer"], "[::ffff:127.0.0.5]:1234",
        "ConnectInfo is the socket peer"
    );
    let response = call(&limiter, &app, addr("127.0.0.5:999"), plain(&[])).await;
    assert_refused(
        "plain 127.0.0.5 after mapped",
        response,
        RejectionKind::RateLimited,
    )
    .await;
    // Plain first, then mapped.
    let response = call(&limiter, &app, addr("127.0.0.6:999"), plain(&[])).await;
    assert_echo("plain 127.0.0.6", response).await;
    let response = call(&limiter, &app, addr("[::ffff:127.0.0.6]:1"), plain(&[])).await;
    assert_refused(
        "mapped 127.0.0.6 after plain",
        response,
        RejectionKind::RateLimited,
    )
    .await;
    // A mapped trusted proxy is trusted, and a mapped forwarded client is
    // the same bucket as the plain one.
    let trusting = RateLimiter::builder()
        .per_second(nz(1))
        .burst(nz(1))
        .trusted_proxies(Networks::parse("127.0.0.1").unwrap())
        .build();
    let proxy = addr("[::ffff:127.0.0.1]:80");
    let response = call(
        &trusting,
        &app,
        proxy,
        plain(&[("x-forwarded-for", "::ffff:203.0.113.7")]),
    )
    .await;
    assert_eq!(
        assert_echo("mapped via proxy", response).await["client"],
        "203.0.113.7"
    );
    let response = call(
        &trusting,
        &app,
        proxy,
        plain(&[("x-forwarded-for", "203.0.113.7")]),
    )
    .await;
    assert_refused("plain via proxy", response, RejectionKind::RateLimited).await;
    // The failed-authentication lockout is shared the same way.
    let guarded = generous(Some(1));
    let (verified, _) = support::app(&github());
    for _ in 0..3 {
        let _ = call(&guarded, &verified, addr("[::ffff:127.0.0.7]:1"), bad_delivery()).await;
    }
    let response = call(&guarded, &verified, addr("127.0.0.7:1"), good_delivery()).await;
    assert_refused(
        "plain 127.0.0.7 after mapped failures",
        response,
        RejectionKind::TooManyFailedAuthentications,
    )
    .await;
    // `client_ip` canonicalises too.
    assert_eq!(
        limiter.client_ip(ip("::ffff:127.0.0.5"), &HeaderMap::new()),
        ip("127.0.0.5")
    );
}

// ---------------------------------------------------------------------------
// 8. Holding a real sender's peak: refunds and the sender class
// ---------------------------------------------------------------------------

/// How many requests a quota of `per_second` may have let through on top
/// of its burst since `started` (rounded up, plus one for the edges).
fn replenished(started: Instant, per_second: u32) -> u32 {
    (started.elapsed().as_secs_f64() * f64::from(per_second)).ceil() as u32 + 1
}

/// A GitHub delivery of its own: GitHub signs no delivery id, so the
/// dedupe key is the signed body, which carries `id`.
fn delivery_with_id(id: &str) -> Request<Body> {
    let body = json!({"action": "opened", "delivery": id}).to_string();
    let headers = TestSigner::new(&Scheme::github(), SECRET)
        .unwrap()
        .id(id)
        .headers(body.as_bytes());
    post_request(headers, Body::from(body))
}

/// A GitHub verifier with an in-memory dedupe store.
fn github_with_dedupe() -> Verifier {
    Verifier::builder(Scheme::github())
        .secret(SECRET)
        .dedupe(Dedupe::builder(MemoryStore::new(), "github").build().unwrap())
        .build()
        .unwrap()
}

/// Sends `count` requests made by `request` from `peer`, one after the
/// other; returns how many were answered 429 `rate_limited`, and checks
/// every other answer with `ok`.
async fn refusals(
    limiter: &RateLimiter,
    app: &Router,
    peer: SocketAddr,
    count: usize,
    mut request: impl FnMut(usize) -> Request<Body>,
    ok: impl Fn(usize, StatusCode) -> bool,
) -> u32 {
    let mut refused = 0;
    for i in 0..count {
        let response = call(limiter, app, peer, request(i)).await;
        match outcome(&response) {
            (StatusCode::TOO_MANY_REQUESTS, Some(RejectionKind::RateLimited)) => {
                if refused == 0 {
                    assert_refused("first 429", response, RejectionKind::RateLimited).await;
                }
                refused += 1;
            }
            (status, kind) => assert!(ok(i, status), "request {i}: {status} {kind:?}"),
        }
    }
    refused
}

/// The issue's scenario: a quota of 5 a second with a burst of 10, and a
/// sender delivering 500 times in a row, with and without a dedupe store.
/// Not one delivery is refused, and the sender's budget for requests that
/// do not verify is still whole afterwards.
#[tokio::test]
async fn verified_deliveries_far_over_the_quota_are_never_refused() {
    let limiter = RateLimiter::builder()
        .refund_verified_deliveries(true)
        .per_second(nz(5))
        .burst(nz(10))
        .failed_authentications_per_minute(None)
        .build();
    let peer = addr("127.0.0.40:1");
    let (plain_app, plain_calls) = support::app(&github());
    let refused = refusals(
        &limiter,
        &plain_app,
        peer,
        500,
        |_| good_delivery(),
        |_, s| s == StatusCode::OK,
    )
    .await;
    assert_eq!(refused, 0, "verified deliveries refused without a dedupe store");
    assert_eq!(plain_calls.load(Ordering::SeqCst), 500);

    let (deduped_app, deduped_calls) = support::app(&github_with_dedupe());
    let refused = refusals(
        &limiter,
        &deduped_app,
        peer,
        500,
        |i| delivery_with_id(&format!("delivery-{i}")),
        |_, s| s == StatusCode::OK,
    )
    .await;
    assert_eq!(
        refused, 0,
        "fresh verified deliveries refused with a dedupe store"
    );
    assert_eq!(deduped_calls.load(Ordering::SeqCst), 500);

    // A verified delivery did not use up the client's budget for
    // unauthenticated traffic: the whole burst is there, then 429.
    let started = Instant::now();
    let refused = refusals(
        &limiter,
        &plain_app,
        peer,
        40,
        |_| bad_delivery(),
        |_, s| s == StatusCode::UNAUTHORIZED,
    )
    .await;
    let passed = 40 - refused;
    assert!(
        passed >= 10,
        "only {passed} unsigned requests passed after the deliveries, burst 10"
    );
    assert!(
        passed <= 10 + replenished(started, 5),
        "{passed} unsigned requests passed, burst 10 at 5/s"
    );
}

/// The same number of requests that do not verify is refused after the
/// burst, as before: a flood and a guesser are still stopped.
#[tokio::test]
async fn unsigned_requests_are_refused_after_the_burst() {
    let limiter = RateLimiter::builder()
        .per_second(nz(5))
        .burst(nz(10))
        .failed_authentications_per_minute(None)
        .build();
    let (app, calls) = support::app(&github());
    let unsigned = || post_request(HeaderMap::new(), Body::from(DELIVERY));
    let started = Instant::now();
    let refused = refusals(
        &limiter,
        &app,
        addr("127.0.0.41:1"),
        500,
        |_| unsigned(),
        |_, s| s == StatusCode::UNAUTHORIZED,
    )
    .await;
    let passed = 500 - refused;
    assert!(passed >= 10, "{passed} passed, burst 10");
    assert!(
        passed <= 10 + replenished(started, 5),
        "{passed} of 500 unsigned requests passed"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // A route without a verifier is charged too.
    let refused = refusals(
        &limiter,
        &app,
        addr("127.0.0.42:1"),
        100,
        |_| Request::get("/").body(Body::empty()).unwrap(),
        |_, s| s == StatusCode::NOT_FOUND,
    )
    .await;
    assert!(
        refused >= 100 - 10 - replenished(started, 5),
        "{refused} of 100 refused"
    );
}

/// Replays of one delivery are answered `duplicate` and keep their
/// charge, so a replayer is refused after the burst; only the first,
/// fresh one is refunded.
#[tokio::test]
async fn replays_of_one_delivery_are_charged() {
    let limiter = RateLimiter::builder()
        .refund_verified_deliveries(true)
        .per_second(nz(5))
        .burst(nz(10))
        .failed_authentications_per_minute(None)
        .build();
    let (app, calls) = support::app(&github_with_dedupe());
    let started = Instant::now();
    let mut answered = 0u32;
    let mut refused = 0u32;
    for i in 0..500 {
        let response = call(&limiter, &app, addr("127.0.0.43:1"), delivery_with_id("same-id")).await;
        match response.status() {
            StatusCode::OK => {
                let body = support::body_json(response).await;
                if i > 0 {
                    assert_eq!(body["status"], "duplicate", "replay {i}: {body}");
                }
                answered += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("replay {i}: {other}"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the handler ran for a replay");
    // The fresh delivery plus the burst of duplicates (plus what the
    // time taken replenishes).
    assert!(answered >= 11, "{answered} answered");
    assert!(
        answered <= 11 + replenished(started, 5),
        "{answered} of 500 replays answered"
    );
    assert!(refused > 0);
}

/// An address in the sender networks is charged to the sender quota, per
/// address; every other address to the default one. Over real TCP, from
/// distinct loopback addresses.
#[tokio::test]
async fn tcp_a_sender_network_address_has_its_own_quota() {
    let limiter = RateLimiter::builder()
        .refund_verified_deliveries(true)
        .per_second(nz(1))
        .burst(nz(3))
        .sender_networks(Networks::parse("127.0.0.64/26").unwrap())
        .sender_per_second(nz(5))
        .sender_burst(nz(20))
        .failed_authentications_per_minute(None)
        .build();
    let (app, calls) = support::app(&github());
    let server = Server::limited(limiter, app).await;

    // Unsigned requests: the sender burst from a sender address, the
    // default burst from any other.
    let count_passed = |from: Ipv4Addr, n: usize| {
        let server = &server;
        async move {
            let replies = http_keep_alive(server.addr, from, n, "POST", &[], DELIVERY.as_bytes()).await;
            assert_eq!(replies.len(), n);
            let mut passed = 0;
            for (i, reply) in replies.iter().enumerate() {
                match reply.status {
                    StatusCode::UNAUTHORIZED => passed += 1,
                    StatusCode::TOO_MANY_REQUESTS => {
                        reply.refused(&format!("{from} request {i}"), RejectionKind::RateLimited);
                    }
                    other => panic!("{from} request {i}: {other}"),
                }
            }
            passed
        }
    };
    let started = Instant::now();
    let sender = count_passed(lo(70), 60).await;
    assert!(
        (20..=20 + replenished(started, 5)).contains(&sender),
        "{sender} of 60 unsigned requests from a sender address passed, sender burst 20"
    );
    let started = Instant::now();
    let other_sender = count_passed(lo(71), 60).await;
    assert!(
        (20..=20 + replenished(started, 5)).contains(&other_sender),
        "per address: {other_sender} passed from a second sender address"
    );
    let started = Instant::now();
    let outsider = count_passed(lo(30), 60).await;
    assert!(
        (3..=3 + replenished(started, 1)).contains(&outsider),
        "{outsider} of 60 unsigned requests from outside the sender networks passed, burst 3"
    );

    // Verified deliveries from a sender address: far more than its burst,
    // never refused.
    let headers = signed(DELIVERY.as_bytes());
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
        .collect();
    let replies = http_keep_alive(server.addr, lo(72), 300, "POST", &pairs, DELIVERY.as_bytes()).await;
    assert_eq!(replies.len(), 300);
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, StatusCode::OK, "sender delivery {i}");
    }
    // And from outside: refunds hold there too.
    let replies = http_keep_alive(server.addr, lo(31), 100, "POST", &pairs, DELIVERY.as_bytes()).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(calls.load(Ordering::SeqCst), 400);
    server.shutdown().await;
}

/// The failed-authentication lockout catches a guesser inside the sender
/// networks exactly as anywhere else.
#[tokio::test]
async fn the_lockout_still_catches_a_guesser_in_the_sender_networks() {
    let limiter = RateLimiter::builder()
        .sender_networks(Networks::parse("127.0.0.0/8").unwrap())
        .failed_authentications_per_minute(Some(nz(3)))
        .build();
    let (app, calls) = support::app(&github());
    let guesser = addr("127.0.0.80:1");
    for i in 1..=3 {
        let response = call(&limiter, &app, guesser, bad_delivery()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let response = call(&limiter, &app, guesser, bad_delivery()).await;
    assert_refused("4th guess", response, RejectionKind::TooManyFailedAuthentications).await;
    let response = call(&limiter, &app, guesser, good_delivery()).await;
    assert_refused(
        "a correct delivery from the locked-out address",
        response,
        RejectionKind::TooManyFailedAuthentications,
    )
    .await;
    // Another sender address is not affected.
    let response = call(&limiter, &app, addr("127.0.0.81:1"), good_delivery()).await;
    support::assert_ok("another sender address", response).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// What a refund buys is concurrency, not an unlimited number in flight:
/// with a burst of 4, four verified deliveries held by a slow handler are
/// in flight, the fifth request is refused, and once they are answered
/// the quota is whole again.
#[tokio::test]
async fn a_sender_is_limited_by_its_concurrency() {
    let limiter = RateLimiter::builder()
        .refund_verified_deliveries(true)
        .per_second(nz(1))
        .burst(nz(4))
        .failed_authentications_per_minute(None)
        .build();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (gate, entered) = (Arc::clone(&gate), Arc::clone(&entered));
        move |_: VerifiedWebhook| {
            let (gate, entered) = (Arc::clone(&gate), Arc::clone(&entered));
            async move {
                entered.fetch_add(1, Ordering::SeqCst);
                let _permit = gate.acquire().await;
            }
        }
    };
    let app = Router::new().route(PATH, post(handler).layer(github().layer()));
    let peer = addr("127.0.0.90:1");
    let held: Vec<_> = (0..4)
        .map(|_| tokio::spawn(call_owned(limiter.clone(), app.clone(), peer, good_delivery())))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while entered.load(Ordering::SeqCst) < 4 {
        assert!(
            Instant::now() < deadline,
            "the four deliveries never reached the handler"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let response = call(&limiter, &app, peer, good_delivery()).await;
    assert_refused("a fifth in flight", response, RejectionKind::RateLimited).await;
    gate.add_permits(4);
    for task in held {
        assert_eq!(task.await.unwrap().status(), StatusCode::OK);
    }
    // All four refunded: four more at once pass (the refused fifth cost
    // nothing either).
    gate.add_permits(4);
    for i in 0..4 {
        let response = call(&limiter, &app, peer, good_delivery()).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "delivery {i} after the refunds"
        );
    }
}

async fn call_owned(limiter: RateLimiter, app: Router, peer: SocketAddr, request: Request<Body>) -> Response {
    call(&limiter, &app, peer, request).await
}
