//! What a flood of deliveries (retries, replays, abusive clients) costs on the
//! hot paths, measured with criterion:
//!
//! - `dedupe/claim_complete`: one claim + complete of a fresh key, and one
//!   claim of a key already completed (a duplicate), for [`MemoryStore`] and,
//!   with `--features redis`, for [`RedisStore`] against a throwaway
//!   `redis-server` child on a free loopback port (skipped with a note if
//!   `redis-server` is not on `PATH`). The same generic function measures
//!   every store. Store futures are polled in place, as the layer polls
//!   them inside the request's task; one that is not ready at once (Redis)
//!   is finished with a current-thread tokio runtime's `block_on`
//!   (`runtime/block_on_empty` is that overhead alone).
//! - `rate_limit/check`: [`RateLimiter::check`] for one repeated client (the
//!   hot path), clients rotating among 1 000, a client behind a 3-hop
//!   trusted-proxy `X-Forwarded-For`, and an IPv6 client. The quota is
//!   1 000 000 000 a second with a burst of 1 000 000 000 per client, so
//!   every measured call takes the allow path (each result is checked).
//! - `pipeline/<github|standard>/1KiB`: over the same 1 KiB body, a raw
//!   HMAC-SHA256 of the bytes the scheme signs (`Hmac<Sha256>` pre-keyed,
//!   cloned, `verify_slice`), `Verifier::verify`, the dedupe key alone
//!   (`dedupe_key`), and verify + rate limit +
//!   dedupe (the rate limiter's check, the verify, the dedupe key derived
//!   as the layer does — a SHA-256 of the body for GitHub, of the signed
//!   `webhook-id` for Standard Webhooks —, a fresh lease token and a
//!   MemoryStore claim + complete), so the ratios come from one run.
//!
//! Run:
//!
//! ```text
//! cargo bench --bench replay_abuse                      # memory store only
//! cargo bench --all-features --bench replay_abuse       # with Redis
//! BENCH_SMOKE=1 cargo bench --all-features --bench replay_abuse   # CI: tiny times
//! cargo bench --all-features --bench replay_abuse -- --test       # one iteration each
//! cargo bench --bench replay_abuse -- rate_limit        # one group (a criterion filter)
//! ```
//!
//! Every fresh-key measurement checks that the claim was `Acquired`, so the
//! store's `Full` error path is never what is measured: the MemoryStore
//! keeps its default bound and a [`FixedClock`] that moves past the
//! idempotency retention before each new key, so completed keys age out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;
use tokio::runtime::Runtime;
use webhook_guard::dedupe::{
    Claim, DedupeKey, DedupeStore, LeaseToken, MemoryStore, Retention, StoreError, StoreFuture,
};
use webhook_guard::test_util::TestSigner;
use webhook_guard::{FixedClock, Networks, RateLimiter, Scheme, Verifier};

/// The GitHub webhook secret of every benchmark.
const SECRET: &str = "It's a Secret to Everybody";
/// Fresh keys per setup batch: the live keys of one batch, far under the
/// MemoryStore's default bound of 100 000.
const BATCH: u64 = 10_000;
/// Per-client quota of the limiters: so large that every check is allowed.
const HUGE_QUOTA: u32 = 1_000_000_000;

/// `BENCH_SMOKE=1`: tiny warm-up and measurement times, for CI.
fn smoke() -> bool {
    std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn config() -> Criterion {
    let c = Criterion::default();
    if smoke() {
        c.warm_up_time(Duration::from_millis(50))
            .measurement_time(Duration::from_millis(100))
            .sample_size(10)
    } else {
        c
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime")
}

/// The retention a route gets by default: a 60 s lease, a replay window of
/// twice the 300 s tolerance, 72 hours of idempotency.
fn default_times() -> Retention {
    Retention::new(
        Duration::from_secs(60),
        Duration::from_secs(600),
        Duration::from_secs(72 * 3600),
    )
}

/// Seconds to move a [`FixedClock`] so that every key completed before is
/// past its idempotency retention (dead, swept and evicted as the store goes).
fn age_past(times: Retention) -> i64 {
    i64::try_from(times.idempotency().as_secs()).unwrap_or(i64::MAX / 4) + 1
}

/// A MemoryStore with the default bound and a clock that stands still
/// until told to move.
fn memory_store() -> (MemoryStore, Arc<FixedClock>) {
    let clock = Arc::new(FixedClock::new(1_700_000_000));
    (MemoryStore::builder().clock(clock.clone()).build(), clock)
}

/// Drives a store future the way the layer does: polled in place, inside
/// the request's own task. A store that answers at once (the MemoryStore)
/// costs no runtime round trip; one that waits (Redis) is finished on the
/// runtime.
fn run<T>(rt: &Runtime, fut: StoreFuture<'_, T>) -> Result<T, StoreError> {
    // Inside the runtime's context, as a request is (Redis's timeouts need
    // its timer).
    let _context = rt.enter();
    let mut fut = fut;
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => rt.block_on(fut),
    }
}

/// Claims `key` and completes it, checking that the claim was acquired.
fn claim_complete<S: DedupeStore>(
    rt: &Runtime,
    store: &S,
    key: &DedupeKey,
    token: LeaseToken,
    times: Retention,
) {
    match run(rt, store.claim(key, token, times)) {
        Ok(Claim::Acquired) => {}
        other => panic!("a fresh key was not acquired: {other:?}"),
    }
    run(rt, store.complete(key, token, times)).expect("complete");
}

/// `<store>/fresh`: one claim + complete of a never-seen key per
/// iteration, and `<store>/duplicate`: one claim of a completed key
/// (rotating among 1 024). `fresh_key` makes the keys, outside the timing
/// (with the lease token); it may also move the store's clock.
fn bench_store<S: DedupeStore>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    store: &S,
    times: Retention,
    mut fresh_key: impl FnMut() -> DedupeKey,
) {
    group.bench_function(format!("{name}/fresh"), |b| {
        b.iter_batched(
            || (fresh_key(), LeaseToken::random()),
            |(key, token)| claim_complete(rt, store, &key, token, times),
            BatchSize::NumIterations(BATCH),
        );
    });

    let done: Vec<DedupeKey> = (0..1024).map(|_| fresh_key()).collect();
    for key in &done {
        claim_complete(rt, store, key, LeaseToken::random(), times);
    }
    let token = LeaseToken::random();
    let mut next = 0;
    group.bench_function(format!("{name}/duplicate"), |b| {
        b.iter(|| {
            let key = &done[next];
            next = (next + 1) % done.len();
            let claim = run(rt, store.claim(key, token, times));
            assert!(matches!(claim, Ok(Claim::AlreadyProcessed)), "{claim:?}");
        });
    });
}

fn dedupe(c: &mut Criterion) {
    let rt = runtime();
    let times = default_times();

    let mut group = c.benchmark_group("runtime");
    group.bench_function("block_on_empty", |b| {
        b.iter(|| rt.block_on(async { black_box(0) }))
    });
    group.finish();

    let mut group = c.benchmark_group("dedupe/claim_complete");
    let (store, clock) = memory_store();
    let mut n = 0u64;
    bench_store(&mut group, &rt, "memory", &store, times, || {
        // Every key completed before this one is now past its retention,
        // so the store's bound is never what fails a claim.
        clock.advance(age_past(times));
        n += 1;
        DedupeKey::from_id("bench-memory", &n.to_le_bytes())
    });
    assert!(store.len() <= store.max_entries());
    drop(store);

    #[cfg(feature = "redis")]
    redis_benches(&mut group, &rt, times);
    group.finish();
}

#[cfg(feature = "redis")]
fn redis_benches(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, times: Retention) {
    use webhook_guard::dedupe::RedisStore;

    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::builder(&server.url)
        .key_prefix("webhook-guard-bench:")
        .build()
        .expect("a Redis store");
    rt.block_on(store.ping())
        .expect("the bench's redis-server answers PING");
    let mut n = 0u64;
    bench_store(group, rt, "redis", &store, times, || {
        n += 1;
        DedupeKey::from_id("bench-redis", &n.to_le_bytes())
    });
    drop(store);
    drop(server);
}

/// A `redis-server` child on a free loopback port, killed when dropped.
#[cfg(feature = "redis")]
struct RedisServer {
    child: std::process::Child,
    dir: std::path::PathBuf,
    url: String,
}

#[cfg(feature = "redis")]
impl RedisServer {
    /// Starts one, or prints a note and returns `None` when `redis-server`
    /// is not installed.
    fn start() -> Option<Self> {
        use std::net::{TcpListener, TcpStream};
        use std::process::{Command, Stdio};
        use std::time::Instant;

        let dir = std::env::temp_dir().join(format!("webhook-guard-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory for redis-server");
        for _attempt in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let spawned = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match spawned {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!("note: redis-server is not on PATH; skipping the Redis benchmarks");
                    let _ = std::fs::remove_dir_all(&dir);
                    return None;
                }
                Err(e) => panic!("starting redis-server: {e}"),
            };
            let mut server = Self {
                child,
                dir: dir.clone(),
                url: format!("redis://127.0.0.1:{port}/"),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if server.child.try_wait().ok().flatten().is_some() {
                    break; // exited: the port was taken after all; try another
                }
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    eprintln!(
                        "redis-server for the benchmarks: {} (pid {})",
                        server.url,
                        server.child.id()
                    );
                    return Some(server);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            server.stop();
        }
        panic!("could not start redis-server on a loopback port");
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(feature = "redis")]
impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A limiter whose quota every measured call stays within.
fn huge_limiter(trusted: Networks) -> RateLimiter {
    let huge = NonZeroU32::new(HUGE_QUOTA).unwrap();
    RateLimiter::builder()
        .per_second(huge)
        .burst(huge)
        .trusted_proxies(trusted)
        .build()
}

fn allowed(limiter: &RateLimiter, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    match limiter.check(peer, headers) {
        Ok(ip) => ip,
        Err(r) => panic!("the quota was meant to allow every request: {r:?}"),
    }
}

fn rate_limit(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/check");
    let none = HeaderMap::new();

    let limiter = huge_limiter(Networks::none());
    let client = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    group.bench_function("one_client", |b| {
        b.iter(|| allowed(&limiter, black_box(client), &none));
    });

    let limiter = huge_limiter(Networks::none());
    let clients: Vec<IpAddr> = (0..1_000u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xC633_6400 + i))) // 198.51.100.0 + i
        .collect();
    let mut next = 0;
    group.bench_function("rotating_1000_clients", |b| {
        b.iter(|| {
            let peer = clients[next];
            next = (next + 1) % clients.len();
            allowed(&limiter, peer, &none)
        });
    });

    let limiter = huge_limiter(Networks::parse("10.0.0.0/8").unwrap());
    let proxy = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
    let mut forwarded = HeaderMap::new();
    forwarded.insert(
        "x-forwarded-for",
        HeaderValue::from_static("203.0.113.7, 10.1.0.1, 10.2.0.1"),
    );
    assert_eq!(allowed(&limiter, proxy, &forwarded), client);
    group.bench_function("xff_3_hops_trusted_proxy", |b| {
        b.iter(|| allowed(&limiter, black_box(proxy), &forwarded));
    });

    let limiter = huge_limiter(Networks::none());
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 1));
    group.bench_function("ipv6_client", |b| {
        b.iter(|| allowed(&limiter, black_box(v6), &none));
    });
    group.finish();
}

/// A 1 KiB JSON-looking body.
fn body_1kib() -> Bytes {
    let mut body = String::from(r#"{"action":"opened","number":1,"padding":""#);
    while body.len() < 1024 - 2 {
        body.push('x');
    }
    body.push_str(r#""}"#);
    assert_eq!(body.len(), 1024);
    Bytes::from(body)
}

/// The Standard Webhooks secret of the id-keyed pipeline.
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One pipeline group per way of keying dedupe: GitHub (no signed id, so
/// the key is a SHA-256 of the body) and Standard Webhooks (the signed
/// `webhook-id` header is the key).
fn pipeline(c: &mut Criterion) {
    use base64::Engine as _;
    let rt = runtime();
    let body = body_1kib();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let github = Scheme::github();
    let github_headers = TestSigner::new(&github, SECRET).unwrap().headers(&body);
    let github_tag = hex::decode(
        github_headers["x-hub-signature-256"]
            .to_str()
            .unwrap()
            .strip_prefix("sha256=")
            .unwrap(),
    )
    .unwrap();
    let standard = Scheme::standard_webhooks();
    let standard_headers = TestSigner::new(&standard, STANDARD_SECRET)
        .unwrap()
        .timestamp(now)
        .id("msg_pipeline")
        .headers(&body);
    let standard_tag = base64::engine::general_purpose::STANDARD
        .decode(
            standard_headers["webhook-signature"]
                .to_str()
                .unwrap()
                .strip_prefix("v1,")
                .unwrap(),
        )
        .unwrap();
    let standard_key = base64::engine::general_purpose::STANDARD
        .decode(STANDARD_SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let cases = [
        (
            "github",
            github,
            SECRET,
            github_headers,
            Vec::new(),
            github_tag,
            SECRET.as_bytes().to_vec(),
        ),
        (
            "standard",
            standard,
            STANDARD_SECRET,
            standard_headers,
            format!("msg_pipeline.{now}.").into_bytes(),
            standard_tag,
            standard_key,
        ),
    ];

    let limiter = huge_limiter(Networks::none());
    let peer = IpAddr::V4(Ipv4Addr::new(140, 82, 115, 1));
    let (store, clock) = memory_store();
    let times = default_times();
    let mut n = 0u64;
    for (name, scheme, secret, headers, prefix, tag, key) in cases {
        let verifier = Verifier::builder(scheme.clone()).secret(secret).build().unwrap();
        assert!(verifier.verify(&headers, body.clone()).is_ok());
        let mut group = c.benchmark_group(format!("pipeline/{name}/1KiB"));
        group.throughput(Throughput::Bytes(body.len() as u64));

        // The floor: the bytes the scheme signs, through a pre-keyed MAC.
        let keyed = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        group.bench_function("raw_hmac_sha256", |b| {
            b.iter(|| {
                let mut mac = keyed.clone();
                mac.update(black_box(&prefix));
                mac.update(black_box(&body));
                mac.verify_slice(&tag).expect("the raw HMAC matches")
            });
        });

        group.bench_function("verify", |b| {
            b.iter(|| {
                verifier
                    .verify(black_box(&headers), body.clone())
                    .expect("verified")
            });
        });

        // The dedupe key alone, derived as the layer derives it: what the
        // pipeline adds over the verify before it touches the store (for
        // GitHub a second SHA-256 pass over the body).
        let signs_id = name == "standard";
        let id = headers
            .get("webhook-id")
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        group.bench_function("dedupe_key", |b| {
            b.iter(|| {
                if signs_id {
                    DedupeKey::from_id(black_box("ns"), black_box(&id))
                } else {
                    DedupeKey::from_body(black_box("ns"), black_box(&body))
                }
            });
        });

        // The limiter's check, the verify, the dedupe key the layer derives
        // (the body's SHA-256 for GitHub, the signed id for Standard
        // Webhooks), a lease token and a MemoryStore claim + complete.
        group.bench_function("verify+rate_limit+dedupe", |b| {
            b.iter_batched(
                || {
                    // A namespace of its own makes the key fresh; the
                    // clock moves so earlier keys age out of the bound.
                    clock.advance(age_past(times));
                    n += 1;
                    format!("{name}-{n}")
                },
                |namespace| {
                    allowed(&limiter, peer, &headers);
                    let hook = verifier.verify(&headers, body.clone()).expect("verified");
                    let key = match hook.delivery_id() {
                        Some(id) if signs_id => DedupeKey::from_id(&namespace, id.as_bytes()),
                        _ => DedupeKey::from_body(&namespace, hook.body()),
                    };
                    claim_complete(&rt, &store, &key, LeaseToken::random(), times);
                    drop(hook);
                    namespace // dropped after the timing, like criterion's outputs
                },
                BatchSize::NumIterations(BATCH),
            );
        });
        group.finish();
    }
    assert!(store.len() <= store.max_entries());
}

criterion_group! {
    name = benches;
    config = config();
    targets = dedupe, rate_limit, pipeline
}
criterion_main!(benches);
