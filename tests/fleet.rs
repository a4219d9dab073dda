//! A fleet of receivers on one Redis (feature `redis`), against real
//! `redis-server`s:
//!
//! - quotas and the failed-authentication lockout shared by two limiters
//!   (two replicas), with a local pair as the contrast;
//! - the fallbacks while Redis is unreachable (`Deny`, `Allow`, `Local`),
//!   and the shared quota coming back once a killed Redis restarts;
//! - the Redis queue: a delivery taken and left unsettled is taken over by
//!   another consumer once its lease runs out, its capacity, and an outage;
//! - the start-up check: version, append-only persistence, an unreachable
//!   server, refused credentials that never show the password.
//!
//! Tests on the shared server (`WEBHOOK_GUARD_REDIS_URL`) use a key prefix
//! or queue name of their own; tests that kill Redis, or that need a given
//! configuration, start their own `redis-server`. Quotas run at one
//! request a second, so every count allows for the requests regained while
//! a slow machine sends them (none when they take under a second).

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "support/redis.rs"]
mod redis_support;

use std::convert::Infallible;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{any, post_service};
use axum::Router;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt as _;
use webhook_guard::dedupe::{StoreErrorKind, StoreFuture};
use webhook_guard::fleet::{CheckError, RedisConnection};
use webhook_guard::queue::{
    AckQueue, ClaimSettlement, DeadLetter, Delivery, Job, JobId, MemoryQueue, QueueStorage, RedisQueue, Taken,
};
use webhook_guard::rate_limit::RedisFallback;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{RateLimiter, Rejection, RejectionKind, Scheme, Verifier};

use redis_support::{unique_prefix, RedisServer, TestRedis};
use support::{post_request, PATH};

const SECRET: &str = "fleet-test-secret";
const DELIVERY: &str = r#"{"action":"opened","number":7}"#;

// ---------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// A client at `127.0.<subnet>.<host>`.
fn peer(subnet: u8, host: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 0, subnet, host), 40_000))
}

/// A connection with a timeout generous enough for a busy machine.
fn connect(url: &str) -> RedisConnection {
    RedisConnection::builder(url)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// A connection to a closed loopback port: every call fails at once.
fn unreachable_connection() -> RedisConnection {
    RedisConnection::builder(&format!("redis://127.0.0.1:{}/", closed_port()))
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap()
}

/// A limiter whose quota (`per_second`, `burst`) is shared in Redis under
/// `prefix`, with `fallback` while Redis is unreachable.
fn shared(
    conn: RedisConnection,
    prefix: &str,
    per_second: u32,
    burst: u32,
    fallback: RedisFallback,
) -> RateLimiter {
    RateLimiter::builder()
        .per_second(nz(per_second))
        .burst(nz(burst))
        .shared(conn, Some(prefix))
        .shared_fallback(fallback)
        .build()
}

/// The same limiter without Redis.
fn local(per_second: u32, burst: u32) -> RateLimiter {
    RateLimiter::builder()
        .per_second(nz(per_second))
        .burst(nz(burst))
        .build()
}

/// A router whose `/hook` answers 200, and the number of times it ran.
fn ok_app() -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let handler = move || {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "ok"
        }
    };
    (Router::new().route(PATH, any(handler)), calls)
}

/// A small `POST /hook`.
fn plain() -> Request<Body> {
    post_request(HeaderMap::new(), Body::from("x"))
}

/// Sends `request` from `peer` through `limiter` (one replica) in front of
/// `app`, as `into_make_service` would for a connection from `peer`.
async fn call(limiter: &RateLimiter, app: &Router, peer: SocketAddr, request: Request<Body>) -> Response {
    limiter
        .service(app.clone(), peer)
        .oneshot(request)
        .await
        .expect("the limiter and the router are infallible")
}

/// The status and the [`Rejection`] kind (if any) of a response.
fn outcome(response: &Response) -> (StatusCode, Option<RejectionKind>) {
    (
        response.status(),
        response.extensions().get::<Rejection>().map(Rejection::kind),
    )
}

/// Checks a 429 of `kind`: problem+json whose `reason` is the kind's, the
/// [`Rejection`] in the extensions, an integer `Retry-After` of at least 1
/// that the document repeats. Returns `Retry-After` in seconds.
async fn assert_refused(what: &str, response: Response, kind: RejectionKind) -> u64 {
    let status = response.status();
    let headers = response.headers().clone();
    let rejection = response.extensions().get::<Rejection>().cloned();
    let body = support::body_bytes(response).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "{what}: status; body {text}"
    );
    assert_eq!(
        rejection.map(|r| r.kind()),
        Some(kind),
        "{what}: the Rejection in the extensions"
    );
    assert_eq!(
        headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
        Some(&b"application/problem+json"[..]),
        "{what}: content type"
    );
    let doc: Value =
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    assert_eq!(doc["reason"], json!(kind.reason()), "{what}: {text}");
    assert_eq!(doc["status"], json!(429), "{what}: {text}");
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

/// A burst from one client: how many requests were admitted before the
/// first refusal, the refusal, and how long it all took.
struct Burst {
    admitted: usize,
    refusal: Response,
    elapsed: Duration,
}

/// Sends small requests from `peer`, round robin over `replicas`, until
/// one is refused (at most `max`).
async fn burst(replicas: &[&RateLimiter], app: &Router, peer: SocketAddr, max: usize) -> Burst {
    let started = Instant::now();
    for i in 0..max {
        let limiter = replicas[i % replicas.len()];
        let response = call(limiter, app, peer, plain()).await;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => {
                return Burst {
                    admitted: i,
                    refusal: response,
                    elapsed: started.elapsed(),
                }
            }
            other => panic!("request {i} from {peer}: unexpected status {other}"),
        }
    }
    panic!("{max} requests from {peer} were all admitted");
}

/// Asserts that a burst admitted `expected` requests, plus at most what
/// `sources` quotas of one request a second regained while it ran.
fn assert_admitted(what: &str, burst: &Burst, expected: usize, sources: usize) {
    let regained = usize::try_from(burst.elapsed.as_secs()).unwrap() * sources;
    assert!(
        (expected..=expected + regained).contains(&burst.admitted),
        "{what}: {} admitted, expected {expected} (plus up to {regained} regained in {:?})",
        burst.admitted,
        burst.elapsed
    );
}

// --- GitHub deliveries ------------------------------------------------------

fn github() -> Verifier {
    Verifier::builder(Scheme::github())
        .secret(SECRET)
        .build()
        .unwrap()
}

fn signed(body: &[u8]) -> HeaderMap {
    TestSigner::new(&Scheme::github(), SECRET).unwrap().headers(body)
}

/// Well-formed GitHub headers whose signature is wrong.
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

// --- Queue deliveries ------------------------------------------------------

/// A [`MemoryQueue`] that keeps a copy of every delivery it stores.
struct Capture {
    queue: MemoryQueue,
    seen: Mutex<Vec<Delivery>>,
}

impl QueueStorage for Capture {
    fn enqueue<'a>(
        &'a self,
        delivery: &'a Delivery,
        claim: Option<ClaimSettlement>,
    ) -> StoreFuture<'a, JobId> {
        self.seen.lock().unwrap().push(delivery.clone());
        self.queue.enqueue(delivery, claim)
    }
    fn take(&self) -> StoreFuture<'_, Taken> {
        self.queue.take()
    }
    fn complete(&self, id: JobId) -> StoreFuture<'_, ()> {
        self.queue.complete(id)
    }
    fn retry<'a>(&'a self, id: JobId, after: Duration, error: &'a str) -> StoreFuture<'a, ()> {
        self.queue.retry(id, after, error)
    }
    fn bury<'a>(&'a self, id: JobId, error: &'a str) -> StoreFuture<'a, ()> {
        self.queue.bury(id, error)
    }
    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<DeadLetter>> {
        self.queue.dead_letters(limit)
    }
    fn requeue_dead<'a>(&'a self, ids: Option<&'a [JobId]>) -> StoreFuture<'a, usize> {
        self.queue.requeue_dead(ids)
    }
    fn recover(&self) -> StoreFuture<'_, usize> {
        self.queue.recover()
    }
    fn len(&self) -> StoreFuture<'_, usize> {
        self.queue.len()
    }
    fn is_durable(&self) -> bool {
        false
    }
}

/// A real delivery as a queue stores it: a signed GitHub request with
/// delivery id `id`, verified by the layer and accepted (202) by an
/// [`AckQueue`].
async fn delivery(id: &str) -> Delivery {
    let capture = Arc::new(Capture {
        queue: MemoryQueue::new(16),
        seen: Mutex::new(Vec::new()),
    });
    let handler = tower::service_fn(|_request: Request<Body>| async {
        Ok::<_, Infallible>(StatusCode::OK.into_response())
    });
    let (queue, handle) = AckQueue::builder()
        .storage(Arc::clone(&capture))
        .workers(NonZeroUsize::MIN)
        .spawn(handler)
        .unwrap();
    let app = Router::new().route("/webhooks/github", post_service(queue).layer(github().layer()));
    let request = TestSigner::new(&Scheme::github(), SECRET)
        .unwrap()
        .id(id)
        .request("/webhooks/github", DELIVERY);
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(handle.shutdown(Duration::from_secs(10)).await);
    let seen = capture.seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "one delivery stored");
    let delivery = seen[0].clone();
    assert_eq!(delivery.delivery_id(), Some(id));
    delivery
}

/// A Redis queue named `name` on `conn`: lease 1 s, polling every 50 ms.
fn redis_queue(conn: RedisConnection, name: &str) -> RedisQueue {
    RedisQueue::builder(conn)
        .name(name)
        .lease(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

fn expect_job(what: &str, taken: Taken) -> Job {
    match taken {
        Taken::Job(job) => job,
        Taken::Idle { next_due } => panic!("{what}: nothing taken (next due {next_due:?})"),
    }
}

// ---------------------------------------------------------------------------
// Shared quotas
// ---------------------------------------------------------------------------

/// Two replicas on one Redis grant a client its burst once between them:
/// 6 requests alternating over both, then 429 `rate_limited` (with
/// `Retry-After`) from whichever replica gets the 7th. Another client is
/// unaffected. Without Redis the same pair grants the burst twice.
#[tokio::test]
async fn two_replicas_grant_one_client_its_burst_once() {
    let redis = TestRedis::new("shared_quota");
    let prefix = format!("{}rate:", redis.prefix());
    // Two replicas: two connections, two limiters, one prefix.
    let (conn_a, conn_b) = (connect(redis.url()), connect(redis.url()));
    conn_a.ping().await.unwrap();
    conn_b.ping().await.unwrap();
    let a = shared(conn_a, &prefix, 1, 6, RedisFallback::Deny);
    let b = shared(conn_b, &prefix, 1, 6, RedisFallback::Deny);
    assert!(a.is_shared() && b.is_shared());
    let (app, calls) = ok_app();

    let client = peer(3, 1);
    let run = burst(&[&a, &b], &app, client, 40).await;
    assert_admitted("shared pair", &run, 6, 1);
    assert_eq!(calls.load(Ordering::SeqCst), run.admitted);
    assert!(
        !a.shared_fallback_active() && !b.shared_fallback_active(),
        "Redis answered every call"
    );
    let retry = assert_refused(
        "shared pair, over the burst",
        run.refusal,
        RejectionKind::RateLimited,
    )
    .await;
    assert!(retry <= 2, "Retry-After {retry} for a quota of 1 a second");

    // Another client has its own quota, on both replicas.
    for (name, limiter) in [("a", &a), ("b", &b)] {
        let response = call(limiter, &app, peer(3, 2), plain()).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "another client on replica {name}"
        );
    }

    // The contrast: two local limiters each grant the whole burst.
    let (la, lb) = (local(1, 6), local(1, 6));
    assert!(!la.is_shared() && !la.shared_fallback_active());
    let run = burst(&[&la, &lb], &app, client, 60).await;
    assert_admitted("local pair", &run, 12, 2);
    assert_refused(
        "local pair, over both bursts",
        run.refusal,
        RejectionKind::RateLimited,
    )
    .await;
}

/// A client that fails authentication 3 times, spread over two replicas
/// (2 on one, 1 on the other: neither would lock it out alone), is locked
/// out on both: even a correctly signed delivery is 429
/// `too_many_failed_authentications` and never reaches the handler.
/// Another client is served. A local pair does not lock it out.
#[tokio::test]
async fn the_lockout_follows_a_client_from_replica_to_replica() {
    let redis = TestRedis::new("shared_lockout");
    let prefix = format!("{}rate:", redis.prefix());
    let replica = |lockout_shared: bool| {
        let builder = RateLimiter::builder().failed_authentications_per_minute(Some(nz(3)));
        if lockout_shared {
            builder
                .shared(connect(redis.url()), Some(&prefix))
                .shared_fallback(RedisFallback::Deny)
                .build()
        } else {
            builder.build()
        }
    };
    let (a, b) = (replica(true), replica(true));
    let (app, calls) = support::app(&github());
    let guesser = peer(3, 10);

    for (i, (name, limiter)) in [("a", &a), ("b", &b), ("a", &a)].into_iter().enumerate() {
        let response = call(limiter, &app, guesser, bad_delivery()).await;
        assert_eq!(
            outcome(&response),
            (StatusCode::UNAUTHORIZED, Some(RejectionKind::SignatureMismatch)),
            "forged delivery {} on replica {name}",
            i + 1
        );
    }
    for name in ["b", "a"] {
        let limiter = if name == "a" { &a } else { &b };
        let response = call(limiter, &app, guesser, good_delivery()).await;
        let retry = assert_refused(
            &format!("correctly signed delivery from the guesser on replica {name}"),
            response,
            RejectionKind::TooManyFailedAuthentications,
        )
        .await;
        // 3 a minute: the next try is at most 20 s away.
        assert!((1..=21).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the handler ran for a locked-out client"
    );
    assert!(!a.shared_fallback_active() && !b.shared_fallback_active());

    for (name, limiter) in [("a", &a), ("b", &b)] {
        let response = call(limiter, &app, peer(3, 11), good_delivery()).await;
        support::assert_ok(&format!("another client on replica {name}"), response).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // The contrast: local replicas each count only what they saw.
    let (la, lb) = (replica(false), replica(false));
    for limiter in [&la, &lb, &la] {
        let response = call(limiter, &app, guesser, bad_delivery()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = call(&lb, &app, guesser, good_delivery()).await;
    support::assert_ok("the guesser on a local replica that saw one failure", response).await;
}

// ---------------------------------------------------------------------------
// Fallbacks
// ---------------------------------------------------------------------------

/// With Redis unreachable (a closed port): `Deny` refuses everyone with
/// 429 `rate_limited`; `Allow` admits up to the local burst; `Local` with
/// 2 replicas admits half the burst. Each says its fallback is active.
#[tokio::test]
async fn fallbacks_apply_while_redis_is_unreachable() {
    let prefix = unique_prefix("fallbacks");
    let (app, calls) = ok_app();

    let deny = shared(unreachable_connection(), &prefix, 1, 6, RedisFallback::Deny);
    assert!(deny.is_shared());
    assert!(!deny.shared_fallback_active(), "no call made yet");
    for host in [20, 21] {
        let response = call(&deny, &app, peer(3, host), plain()).await;
        assert_refused(
            "Deny while Redis is unreachable",
            response,
            RejectionKind::RateLimited,
        )
        .await;
    }
    assert!(deny.shared_fallback_active());
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let allow = shared(unreachable_connection(), &prefix, 1, 6, RedisFallback::Allow);
    let run = burst(&[&allow], &app, peer(3, 22), 40).await;
    assert_admitted("Allow: the local front quota", &run, 6, 1);
    assert_refused(
        "Allow, over the local burst",
        run.refusal,
        RejectionKind::RateLimited,
    )
    .await;
    assert!(allow.shared_fallback_active());

    let halves = shared(
        unreachable_connection(),
        &prefix,
        1,
        6,
        RedisFallback::Local { replicas: nz(2) },
    );
    let run = burst(&[&halves], &app, peer(3, 23), 40).await;
    assert_admitted("Local with 2 replicas: half the burst", &run, 3, 1);
    assert_refused(
        "Local, over half the burst",
        run.refusal,
        RejectionKind::RateLimited,
    )
    .await;
    assert!(halves.shared_fallback_active());

    // The default fallback: each replica grants the whole quota.
    assert_eq!(
        RedisFallback::default(),
        RedisFallback::Local {
            replicas: NonZeroU32::MIN
        }
    );
    let whole = RateLimiter::builder()
        .per_second(nz(1))
        .burst(nz(6))
        .shared(unreachable_connection(), Some(&prefix))
        .build();
    let run = burst(&[&whole], &app, peer(3, 24), 40).await;
    assert_admitted("the default fallback: the whole burst", &run, 6, 1);
    assert!(whole.shared_fallback_active());
}

/// Sends requests from fresh clients through `limiter` until one reaches
/// Redis again (admitted, fallback no longer active).
async fn wait_until_shared(what: &str, limiter: &RateLimiter, app: &Router, subnet: u8) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for host in 1..=250 {
        let response = call(limiter, app, peer(subnet, host), plain()).await;
        if response.status() == StatusCode::OK && !limiter.shared_fallback_active() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: Redis never reached again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: Redis never reached again");
}

/// Redis is killed under two running replicas: they keep serving at their
/// fallback share (`Local` with 2 replicas: half the burst), then, once
/// Redis restarts on the same port, the shared quota applies again.
#[tokio::test]
async fn a_redis_outage_falls_back_then_the_shared_quota_returns() {
    let mut server = RedisServer::start();
    let prefix = unique_prefix("outage_rate");
    let replica = || {
        let conn = RedisConnection::builder(&server.url())
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        shared(conn, &prefix, 1, 6, RedisFallback::Local { replicas: nz(2) })
    };
    let (a, b) = (replica(), replica());
    let (app, _) = ok_app();
    for (name, limiter) in [("a", &a), ("b", &b)] {
        let response = call(limiter, &app, peer(4, 1), plain()).await;
        assert_eq!(response.status(), StatusCode::OK, "replica {name} with Redis up");
        assert!(!limiter.shared_fallback_active(), "replica {name} with Redis up");
    }

    server.kill();
    let run = burst(&[&a], &app, peer(4, 2), 40).await;
    assert_admitted("replica a while Redis is down", &run, 3, 1);
    assert_refused(
        "replica a while Redis is down",
        run.refusal,
        RejectionKind::RateLimited,
    )
    .await;
    assert!(a.shared_fallback_active());
    let response = call(&b, &app, peer(4, 3), plain()).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "replica b serves while Redis is down"
    );
    assert!(b.shared_fallback_active());

    server.restart();
    wait_until_shared("replica a", &a, &app, 5).await;
    wait_until_shared("replica b", &b, &app, 6).await;

    // A fresh client gets the whole shared burst from replica a (its
    // fallback share would be 3), and replica b, which never saw it,
    // refuses it too: only Redis knows.
    let client = peer(4, 4);
    let run = burst(&[&a], &app, client, 40).await;
    assert_admitted("replica a after the restart", &run, 6, 1);
    assert_refused(
        "replica a after the restart",
        run.refusal,
        RejectionKind::RateLimited,
    )
    .await;
    if run.elapsed < Duration::from_millis(800) {
        let response = call(&b, &app, client, plain()).await;
        assert_refused(
            "replica b, for the client replica a used up",
            response,
            RejectionKind::RateLimited,
        )
        .await;
    }
    assert!(!a.shared_fallback_active() && !b.shared_fallback_active());
}

// ---------------------------------------------------------------------------
// The Redis queue
// ---------------------------------------------------------------------------

/// Two consumers of one queue (built separately, on clones of one
/// connection): a delivery the first took and never settled is not handed
/// to the second while its lease runs, then is, as attempt 2.
#[tokio::test]
async fn an_unsettled_delivery_is_taken_over_by_another_consumer() {
    let redis = TestRedis::new("queue_takeover");
    let name = format!("{}queue", redis.prefix());
    let conn = connect(redis.url());
    let (q1, q2) = (redis_queue(conn.clone(), &name), redis_queue(conn, &name));
    assert!(q1.is_durable());
    assert_eq!(q1.recover().await.unwrap(), 0);
    assert_eq!(
        q2.recover().await.unwrap(),
        0,
        "a second recover finds the group made"
    );
    let delivery = delivery("delivery-takeover").await;

    let id = q1.enqueue(&delivery, None).await.unwrap();
    assert_eq!(q1.len().await.unwrap(), 1);
    let job = expect_job("q1's first take", q1.take().await.unwrap());
    assert_eq!((job.id, job.attempt), (id, 1));
    assert_eq!(job.delivery.delivery_id(), Some("delivery-takeover"));
    assert_eq!(job.delivery.body(), delivery.body());
    assert_eq!(job.delivery.uri(), "/webhooks/github");
    match q2.take().await.unwrap() {
        Taken::Idle { .. } => {}
        Taken::Job(job) => panic!("q2 took {job:?} while q1's lease runs"),
    }
    assert_eq!(q2.len().await.unwrap(), 1, "a running delivery is still stored");

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let job = expect_job("q2's take after the lease", q2.take().await.unwrap());
    assert_eq!((job.id, job.attempt), (id, 2));
    assert_eq!(job.delivery.delivery_id(), Some("delivery-takeover"));
    q2.complete(id).await.unwrap();
    assert_eq!(q1.len().await.unwrap(), 0);
    assert_eq!(q2.len().await.unwrap(), 0);
    match q1.take().await.unwrap() {
        Taken::Idle { .. } => {}
        Taken::Job(job) => panic!("q1 took {job:?} after it was completed"),
    }
}

/// A handler that runs three times the lease keeps its delivery: its
/// worker renews the lease while it runs, so a second consumer polling
/// all along never takes it over, and it runs once.
#[tokio::test]
async fn a_run_longer_than_the_lease_is_not_taken_over() {
    let redis = TestRedis::new("queue_renewal");
    let name = format!("{}queue", redis.prefix());
    let conn = connect(redis.url());
    let (q1, q2) = (redis_queue(conn.clone(), &name), redis_queue(conn, &name));
    q2.recover().await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = {
        let runs = runs.clone();
        tower::service_fn(move |_req: Request<Body>| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok::<_, Infallible>(StatusCode::OK.into_response())
            }
        })
    };
    let (_queue, handle) = AckQueue::builder()
        .storage(q1.clone())
        .workers(NonZeroUsize::MIN)
        .spawn(handler)
        .unwrap();
    q1.enqueue(&delivery("delivery-renewal").await, None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while runs.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the worker never started the delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Three leases long, the other consumer keeps asking.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2_800) {
        if let Taken::Job(job) = q2.take().await.unwrap() {
            panic!("taken over while its handler ran: {job:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while q1.len().await.unwrap() != 0 {
        assert!(Instant::now() < deadline, "the long run was never recorded done");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "run once");
    assert!(handle.shutdown(Duration::from_secs(5)).await);
}

/// An entry that is not a delivery (written by something else) is moved
/// to the dead-letter stream the first time it is taken, instead of
/// failing every take after every lease; listing the dead letters skips it.
#[tokio::test]
async fn an_entry_that_is_not_a_delivery_is_put_aside() {
    let redis = TestRedis::new("queue_poison");
    let name = format!("{}queue", redis.prefix());
    let queue = redis_queue(connect(redis.url()), &name);
    queue.recover().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut raw = client.get_connection().unwrap();
    let _: String = redis::cmd("XADD")
        .arg(format!("{{{name}}}:s"))
        .arg("*")
        .arg("d")
        .arg("not a delivery")
        .arg("a")
        .arg("0")
        .query(&mut raw)
        .unwrap();
    assert_eq!(queue.len().await.unwrap(), 1);
    match queue.take().await.unwrap() {
        Taken::Idle { .. } => {}
        Taken::Job(job) => panic!("took {job:?}"),
    }
    assert_eq!(queue.len().await.unwrap(), 0, "no longer in the queue");
    let dead: usize = redis::cmd("XLEN")
        .arg(format!("{{{name}}}:dead"))
        .query(&mut raw)
        .unwrap();
    assert_eq!(dead, 1, "kept in the dead-letter stream");
    assert!(queue.dead_letters(10).await.unwrap().is_empty());
    // A real delivery behind it still runs.
    let id = queue
        .enqueue(&delivery("delivery-after-poison").await, None)
        .await
        .unwrap();
    let job = expect_job("the real delivery", queue.take().await.unwrap());
    assert_eq!(job.id, id);
}

/// A queue of capacity 1 refuses a second delivery as full, and has room
/// again once the first is done.
#[tokio::test]
async fn a_full_redis_queue_refuses_as_full() {
    let redis = TestRedis::new("queue_capacity");
    let queue = RedisQueue::builder(connect(redis.url()))
        .name(format!("{}queue", redis.prefix()))
        .capacity(NonZeroUsize::MIN)
        .build()
        .unwrap();
    queue.recover().await.unwrap();
    let delivery = delivery("delivery-capacity").await;
    let id = queue.enqueue(&delivery, None).await.unwrap();
    let err = queue.enqueue(&delivery, None).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Full, "{err:?}");
    assert_eq!(queue.len().await.unwrap(), 1);

    // Taken, it still counts; done, it leaves room.
    let job = expect_job("the only delivery", queue.take().await.unwrap());
    assert_eq!(job.id, id);
    let err = queue.enqueue(&delivery, None).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Full, "while running: {err:?}");
    queue.complete(id).await.unwrap();
    queue.enqueue(&delivery, None).await.unwrap();
    assert_eq!(queue.len().await.unwrap(), 1);
}

/// While Redis is down an enqueue fails as unavailable (the request would
/// be answered 503), with the connection's `Retry-After`; once Redis is
/// back the first enqueue works, and the delivery can be taken (the
/// restarted Redis lost the consumer group: `take` makes it again).
#[tokio::test]
async fn the_redis_queue_is_unavailable_during_an_outage_then_works_again() {
    let mut server = RedisServer::start();
    let conn = RedisConnection::builder(&server.url())
        .timeout(Duration::from_secs(1))
        .retry_after(Duration::from_secs(3))
        .build()
        .unwrap();
    let queue = redis_queue(conn, &format!("{}queue", unique_prefix("queue_outage")));
    queue.recover().await.unwrap();
    let delivery = delivery("delivery-outage").await;
    queue.enqueue(&delivery, None).await.unwrap();

    server.kill();
    let err = queue.enqueue(&delivery, None).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err:?}");
    assert_eq!(err.retry_after(), Duration::from_secs(3));
    let err = queue.take().await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "take: {err:?}");
    assert!(queue.len().await.is_err());

    server.restart();
    let id = queue
        .enqueue(&delivery, None)
        .await
        .expect("the first enqueue after Redis restarted");
    // Nothing persisted: only the new delivery is there.
    assert_eq!(queue.len().await.unwrap(), 1);
    let mut taken = None;
    for _ in 0..3 {
        if let Taken::Job(job) = queue.take().await.unwrap() {
            taken = Some(job);
            break;
        }
    }
    let job = taken.expect("the delivery stored after the restart is taken");
    assert_eq!((job.id, job.attempt), (id, 1));
    queue.complete(id).await.unwrap();
    assert_eq!(queue.len().await.unwrap(), 0);
}

// ---------------------------------------------------------------------------
// The start-up check
// ---------------------------------------------------------------------------

/// A live server without persistence: its version, append-only off and a
/// warning saying so.
#[tokio::test]
async fn the_check_reports_the_version_and_warns_without_append_only() {
    let server = RedisServer::start(); // started with --appendonly no
    let report = connect(&server.url()).check().await.unwrap();
    let version = report.version.clone().expect("a redis_version");
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    let (major, minor) = match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => panic!("redis_version {version:?}"),
    };
    assert!(major >= 6, "redis_version {version}");
    assert_eq!(report.has_waitaof(), (major, minor) >= (7, 2), "{report:?}");
    assert_eq!(report.append_only, Some(false), "{report:?}");
    assert!(report.maxmemory_policy.is_some(), "{report:?}");
    let warnings = report.warnings();
    assert!(warnings.iter().any(|w| w.contains("append-only")), "{warnings:?}");
}

#[tokio::test]
async fn the_check_tells_an_unreachable_server() {
    let conn = unreachable_connection();
    match conn.check().await {
        Err(CheckError::Unreachable(_)) => {}
        other => panic!("check against a closed port: {other:?}"),
    }
    let err = conn.ping().await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err:?}");
}

/// Sets `requirepass` on the server at `port` (`CONFIG SET`).
fn require_password(port: u16, password: &str) {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let command = format!(
        "*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$11\r\nrequirepass\r\n${}\r\n{password}\r\n",
        password.len()
    );
    stream.write_all(command.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 64];
    while !answer.ends_with(b"\r\n") {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the server closed the connection");
        answer.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(answer, b"+OK\r\n", "{}", String::from_utf8_lossy(&answer));
}

/// A server that requires a password: the right one passes the check; a
/// wrong one, or none, is [`CheckError::Auth`], and the wrong password
/// appears in no error's text nor the connection's `Debug`.
#[tokio::test]
async fn refused_credentials_are_an_auth_error_that_never_shows_the_password() {
    const RIGHT: &str = "right-pw-c41d2e";
    const WRONG: &str = "wrong-pw-7f3a9b";
    let server = RedisServer::start();
    let port = server.port();
    require_password(port, RIGHT);

    let right = connect(&format!("redis://:{RIGHT}@127.0.0.1:{port}/"));
    assert!(!format!("{right:?}").contains(RIGHT));
    right.check().await.unwrap();
    right.ping().await.unwrap();

    for url in [
        format!("redis://:{WRONG}@127.0.0.1:{port}/"),
        format!("redis://default:{WRONG}@127.0.0.1:{port}/"),
    ] {
        let wrong = connect(&url);
        let err = wrong.check().await.unwrap_err();
        assert!(matches!(err, CheckError::Auth(_)), "{err:?}");
        let err = wrong.ping().await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err:?}");
        let shown = [
            wrong.check().await.unwrap_err().to_string(),
            format!("{:?}", wrong.check().await.unwrap_err()),
            err.to_string(),
            format!("{err:?}"),
            format!("{wrong:?}"),
        ];
        for text in shown {
            assert!(!text.contains(WRONG), "the password shows in {text:?}");
        }
    }

    let none = connect(&server.url());
    match none.check().await {
        Err(CheckError::Auth(_)) => {}
        other => panic!("check without the required password: {other:?}"),
    }
}
