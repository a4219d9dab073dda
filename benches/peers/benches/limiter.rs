//! The rate limiter's check, local against shared through Redis, side by
//! side in one run.
//!
//! Each measurement sends requests through `RateLimiter::service` around a
//! service that answers at once, on a current-thread runtime:
//!
//! - `local`: the in-process GCRA (the default limiter);
//! - `redis_admitted`: the same quota shared through Redis: the local front
//!   check, then one Lua script (one round trip) per request;
//! - `redis_ping`: a bare `PING` on the same connection, the round trip's
//!   floor.
//!
//! Redis: `WEBHOOK_GUARD_REDIS_URL`, else a `redis-server` started here on
//! a free loopback port (no persistence: the script's writes are what is
//! measured, not the disk).
//!
//! ```text
//! cargo bench --manifest-path benches/peers/Cargo.toml --bench limiter
//! BENCH_SMOKE=1 cargo bench --manifest-path benches/peers/Cargo.toml --bench limiter   # CI
//! python3 scripts/bench_ratios.py --dir benches/peers/target/criterion limiter/
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::num::NonZeroU32;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use tower::{Service as _, ServiceExt as _};
use webhook_guard::fleet::RedisConnection;
use webhook_guard::RateLimiter;

fn smoke() -> bool {
    std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1")
}

/// A `redis-server` this bench started, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Redis to measure against, and the server if this bench started it.
fn redis() -> (String, Option<Server>) {
    if let Ok(url) = std::env::var("WEBHOOK_GUARD_REDIS_URL") {
        return (url, None);
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("this bench needs redis-server on PATH, or WEBHOOK_GUARD_REDIS_URL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (format!("redis://127.0.0.1:{port}/"), Some(Server(child)))
}

fn ok_service() -> impl tower::Service<
    Request<Body>,
    Response = Response,
    Error = Infallible,
    Future = std::future::Ready<Result<Response, Infallible>>,
> + Clone
       + Send
       + 'static {
    tower::service_fn(|_req: Request<Body>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Body::empty())))
    })
}

fn request() -> Request<Body> {
    Request::post("/hook").body(Body::empty()).unwrap()
}

/// Runs `iters` requests from `peer` through `limiter`; the time they took.
async fn run(limiter: &RateLimiter, peer: SocketAddr, iters: u64) -> Duration {
    let mut service = limiter.service(ok_service(), peer);
    let started = Instant::now();
    for _ in 0..iters {
        let response = service.ready().await.unwrap().call(request()).await.unwrap();
        std::hint::black_box(response);
    }
    started.elapsed()
}

fn limiter(c: &mut Criterion) {
    let (url, _server) = redis();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let huge = NonZeroU32::new(1_000_000_000).unwrap();
    let conn = RedisConnection::builder(&url)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    rt.block_on(conn.ping()).expect("Redis answers PING");
    let prefix = format!("bench-{}:", std::process::id());
    let local = RateLimiter::builder().per_second(huge).burst(huge).build();
    let shared = RateLimiter::builder()
        .per_second(huge)
        .burst(huge)
        .shared(conn.clone(), Some(&prefix))
        .build();
    let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let mut group = c.benchmark_group("limiter");
    if smoke() {
        group.warm_up_time(Duration::from_millis(100));
        group.measurement_time(Duration::from_millis(300));
        group.sample_size(10);
    }
    group.bench_function("local", |b| {
        b.iter_custom(|iters| rt.block_on(run(&local, peer, iters)))
    });
    group.bench_function("redis_admitted", |b| {
        b.iter_custom(|iters| rt.block_on(run(&shared, peer, iters)))
    });
    group.bench_function("redis_ping", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    conn.ping().await.unwrap();
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, limiter);
criterion_main!(benches);
