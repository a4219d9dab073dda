//! `serve <mode> <addr>`: the servers the load script compares.
//!
//! | mode | what runs before the handler |
//! |---|---|
//! | `bare` | nothing: a plain axum `Router`, the handler takes the body as `Bytes` |
//! | `stack` | the rate limiter (around the whole app), then the GitHub verify layer with in-memory dedupe; same handler |
//! | `stack-metrics` | `stack` with a `MetricsObserver` on the route and the limiter, and `metrics-exporter-prometheus`'s recorder installed (histograms with buckets; upkeep and a render every 5 s, as a scrape would) |
//! | `full` | `stack` plus JSON Schema validation, and typed dispatch through an `EventRouter` to a serde-struct handler |
//! | `queue-mem` | `stack`, but the handler runs on the workers of an `AckQueue` kept in memory (`MemoryQueue`); the request is answered 202 once queued |
//! | `queue-sqlite` | `queue-mem` with the dedupe keys and the queue in one `SqliteState` file (fsync before the 202, the claim settled in the enqueue's transaction) |
//! | `stack-redis` | `stack` with the whole state in Redis: the limiter shared (`RateLimiterBuilder::shared`) and the dedupe keys in a `RedisStore`, on the Redis at `WEBHOOK_GUARD_REDIS_URL` |
//! | `queue-redis` | `queue-mem` with the whole state in Redis: shared limiter, `RedisStore` dedupe and a `RedisQueue` |
//!
//! The two queue modes have the same queue capacity ([`QUEUE_CAPACITY`])
//! and workers ([`QUEUE_WORKERS`]). `queue-sqlite` keeps its file in a
//! fresh directory under the system's temporary directory (`TMPDIR`),
//! named after the process id and removed when the server stops.
//!
//! Every mode also serves `GET /stats` (outside the verify layer): how many
//! deliveries the handler processed (in the queue modes: how many the
//! workers ran), how the dedupe store answered its claims, so the script
//! can check that the load exercised fresh deliveries and not the cheaper
//! duplicate path, and how many deliveries are queued and not yet done
//! (`queued`, always 0 outside the queue modes), so it can wait for the
//! workers to drain the queue. The same line is printed to stderr when the
//! server stops (SIGTERM or ctrl-c).

use std::hint::black_box;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::handler::Handler as _;
use axum::response::IntoResponse;
use axum::routing::{get, post, post_service};
use axum::Router;
use bytes::Bytes;
use http::{header, StatusCode};
use webhook_guard::dedupe::RedisStore;
use webhook_guard::dedupe::{
    Claim, Dedupe, DedupeKey, DedupeStore, LeaseToken, MemoryStore, Retention, StoreFuture,
};
use webhook_guard::dispatch::{Event, EventRouter, HandlerError};
use webhook_guard::fleet::RedisConnection;
use webhook_guard::metrics::MetricsObserver;
use webhook_guard::queue::{AckQueue, RedisQueue};
use webhook_guard::schema::Schemas;
use webhook_guard::sqlite::SqliteState;
use webhook_guard::{RateLimiter, Scheme, Verifier};

use crate::payload::{self, IssuesEvent};

/// How long the dedupe store remembers a processed delivery: the shortest
/// the crate allows (the replay window may not be shorter than the
/// verifier's tolerance, and neither may be under one second). The script
/// replays a finite pool, so a delivery comes round again after
/// `pool / (requests per second)` seconds: with a pool bigger than the
/// server's rate times this, its key has always expired by then and every
/// claim is fresh. The script pauses longer than this after its warm-up
/// for the same reason.
pub(crate) const RETENTION: Duration = Duration::from_secs(1);

/// The rate limiter's quota per client (the load comes from one address):
/// far above what one core serves, so no request is ever limited, while
/// every request still goes through the limiter's check.
const QUOTA_PER_SECOND: u32 = 10_000_000;

/// How many deliveries the queue modes' storage holds: far more than a
/// run sends, so no request is ever refused `queue_full`.
pub(crate) const QUEUE_CAPACITY: usize = 1_000_000;

/// How many workers run the handler in the queue modes unless
/// `LOAD_QUEUE_WORKERS` says otherwise (the crate's default).
pub(crate) const QUEUE_WORKERS: usize = 4;

/// The queue modes' worker count: `LOAD_QUEUE_WORKERS` (which
/// `scripts/load.sh` passes on) if set, else [`QUEUE_WORKERS`].
fn queue_workers() -> Result<NonZeroUsize, String> {
    match std::env::var("LOAD_QUEUE_WORKERS") {
        Err(_) => Ok(NonZeroUsize::new(QUEUE_WORKERS).unwrap_or(NonZeroUsize::MIN)),
        Ok(v) => v
            .parse::<NonZeroUsize>()
            .map_err(|_| format!("LOAD_QUEUE_WORKERS must be a whole number greater than 0, not '{v}'")),
    }
}

/// How long the queue modes' workers get to finish at shutdown.
const QUEUE_GRACE: Duration = Duration::from_secs(5);

/// The answer of the `bare` and `stack` handlers, shaped like the
/// `EventRouter`'s.
const PROCESSED: &str = r#"{"status":"processed"}"#;

/// Which server to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Bare,
    Stack,
    StackMetrics,
    Full,
    QueueMem,
    QueueSqlite,
    StackRedis,
    QueueRedis,
}

impl Mode {
    /// The mode's name on the command line.
    fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::Stack => "stack",
            Self::StackMetrics => "stack-metrics",
            Self::Full => "full",
            Self::QueueMem => "queue-mem",
            Self::QueueSqlite => "queue-sqlite",
            Self::StackRedis => "stack-redis",
            Self::QueueRedis => "queue-redis",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "bare" => Some(Self::Bare),
            "stack" => Some(Self::Stack),
            "stack-metrics" => Some(Self::StackMetrics),
            "full" => Some(Self::Full),
            "queue-mem" => Some(Self::QueueMem),
            "queue-sqlite" => Some(Self::QueueSqlite),
            "stack-redis" => Some(Self::StackRedis),
            "queue-redis" => Some(Self::QueueRedis),
            _ => None,
        }
    }
}

/// What the server counts.
#[derive(Default)]
struct Stats {
    /// Handler runs: deliveries processed.
    handled: AtomicU64,
    /// Dedupe claims answered `Acquired`: fresh deliveries.
    acquired: AtomicU64,
    /// Claims answered `AlreadyProcessed`: answered 200 `duplicate`
    /// without running the handler.
    duplicate: AtomicU64,
    /// Claims answered `InProgress` (409).
    in_progress: AtomicU64,
    /// Claims the store failed (503).
    store_error: AtomicU64,
}

impl Stats {
    /// The counters, with `queued` deliveries not yet done.
    fn json(&self, queued: usize) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            r#"{{"handled":{},"acquired":{},"duplicate":{},"in_progress":{},"store_error":{},"queued":{},"retention_ms":{}}}"#,
            get(&self.handled),
            get(&self.acquired),
            get(&self.duplicate),
            get(&self.in_progress),
            get(&self.store_error),
            queued,
            RETENTION.as_millis(),
        )
    }

    /// [`json`](Self::json) with what `queue` holds (none: 0), or the
    /// storage's error.
    async fn read(&self, queue: Option<&AckQueue>) -> Result<String, String> {
        let queued = match queue {
            Some(queue) => queue
                .stored()
                .await
                .map_err(|e| format!("the queue cannot tell its length: {e}"))?,
            None => 0,
        };
        Ok(self.json(queued))
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A dedupe store that counts how it answers claims. Completing,
/// releasing and the transaction scope (which lets a SQLite queue settle
/// the claim in its enqueue) are passed through untouched.
struct CountingStore<S> {
    inner: S,
    stats: Arc<Stats>,
}

impl<S: DedupeStore> DedupeStore for CountingStore<S> {
    fn claim<'a>(
        &'a self,
        key: &'a DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> StoreFuture<'a, Claim> {
        let claim = self.inner.claim(key, token, times);
        Box::pin(async move {
            let answer = claim.await;
            Stats::count(match &answer {
                Ok(Claim::Acquired) => &self.stats.acquired,
                Ok(Claim::AlreadyProcessed) => &self.stats.duplicate,
                Ok(Claim::InProgress { .. }) => &self.stats.in_progress,
                Err(_) => &self.stats.store_error,
            });
            answer
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> StoreFuture<'a, ()> {
        self.inner.complete(key, token, times)
    }

    fn release<'a>(&'a self, key: &'a DedupeKey, token: LeaseToken) -> StoreFuture<'a, ()> {
        self.inner.release(key, token)
    }

    fn transaction_scope(&self) -> Option<usize> {
        self.inner.transaction_scope()
    }
}

/// The `queue-sqlite` mode's directory, removed (with the file) on drop.
struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory under the system's temporary directory, named
    /// after this process.
    fn create() -> Result<Self, String> {
        let path = std::env::temp_dir().join(format!("webhook-guard-peers-{}", std::process::id()));
        // A directory left by an earlier process with the same id.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("serve: cannot remove {}: {e}", self.0.display());
        }
    }
}

/// Runs the `mode` server on `addr` until SIGTERM or ctrl-c. Prints
/// `listening on http://<address>/webhook` on stdout once it accepts
/// connections (give port 0 and read the port from that line).
pub(crate) async fn run(mode: Mode, addr: &str) -> Result<(), String> {
    let stats = Arc::new(Stats::default());
    // Declared first so that it is dropped last, after the state's file
    // is closed.
    let state_dir = match mode {
        Mode::QueueSqlite => Some(TempDir::create()?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let queue_workers = queue_workers()?;

    // The Redis modes' connection.
    let redis = match mode {
        Mode::StackRedis | Mode::QueueRedis => Some(redis_connection().await?),
        _ => None,
    };
    // The queue modes' verifier, queue and its handle.
    let mut queued = None;
    if let (Mode::QueueRedis, Some(redis)) = (mode, &redis) {
        let configuration = |e: webhook_guard::ConfigError| format!("configuration: {e}");
        let verifier = verifier(
            mode,
            &stats,
            RedisStore::on(redis.clone(), Some(&redis_prefix("dedupe"))),
            None,
        )
        .map_err(configuration)?;
        let storage = RedisQueue::builder(redis.clone())
            .name(redis_prefix("queue"))
            .capacity(NonZeroUsize::new(QUEUE_CAPACITY).unwrap_or(NonZeroUsize::MIN))
            .build()
            .map_err(configuration)?;
        let (queue, handle) = AckQueue::builder()
            .storage(storage)
            .workers(queue_workers)
            .spawn(bytes_handler(&stats).with_state(()))
            .map_err(configuration)?;
        queued = Some((verifier, queue, handle));
    }
    if matches!(mode, Mode::QueueMem | Mode::QueueSqlite) {
        let configuration = |e: webhook_guard::ConfigError| format!("configuration: {e}");
        // `queue-sqlite` has a directory for its file; `queue-mem` none.
        let (verifier, builder) = match &state_dir {
            Some(dir) => {
                let capacity = NonZeroUsize::new(QUEUE_CAPACITY).unwrap_or(NonZeroUsize::MIN);
                let state = SqliteState::builder(dir.path().join("state.sqlite3"))
                    .queue_capacity(capacity)
                    .open()
                    .map_err(configuration)?;
                (
                    verifier(mode, &stats, state.dedupe_store(), None).map_err(configuration)?,
                    AckQueue::builder().storage(state.queue()),
                )
            }
            None => (
                verifier(mode, &stats, MemoryStore::new(), None).map_err(configuration)?,
                AckQueue::builder().capacity(NonZeroUsize::new(QUEUE_CAPACITY).unwrap_or(NonZeroUsize::MIN)),
            ),
        };
        let (queue, handle) = builder
            .workers(queue_workers)
            .spawn(bytes_handler(&stats).with_state(()))
            .map_err(configuration)?;
        queued = Some((verifier, queue, handle));
    }

    eprintln!(
        "serve {}: {workers} runtime worker(s), dedupe retention {} ms{}",
        mode.name(),
        RETENTION.as_millis(),
        match (&queued, &state_dir) {
            (Some(_), Some(dir)) => format!(
                ", queue of {QUEUE_CAPACITY} in SQLite under {} with {queue_workers} workers",
                dir.path().display()
            ),
            (Some(_), None) if mode == Mode::QueueRedis => {
                format!(", queue of {QUEUE_CAPACITY} in Redis with {queue_workers} workers")
            }
            (Some(_), None) => format!(", queue of {QUEUE_CAPACITY} in memory with {queue_workers} workers"),
            _ => String::new(),
        }
    );
    println!("listening on http://{local}{}", payload::PATH);

    let stats_route = {
        let stats = Arc::clone(&stats);
        let queue = queued.as_ref().map(|(_, queue, _)| queue.clone());
        get(move || {
            let stats = Arc::clone(&stats);
            let queue = queue.clone();
            async move {
                match stats.read(queue.as_ref()).await {
                    Ok(json) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], json),
                    Err(e) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(header::CONTENT_TYPE, "text/plain")],
                        e,
                    ),
                }
            }
        })
    };
    let mut queue_handle = None;
    let mut queue_for_stats = None;
    let served = match mode {
        Mode::Bare => {
            let app = Router::new()
                .route(payload::PATH, post(bytes_handler(&stats)))
                .route("/stats", stats_route);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown())
                .await
        }
        Mode::Stack | Mode::StackMetrics | Mode::Full | Mode::StackRedis => {
            let observer = match mode {
                Mode::StackMetrics => Some(install_metrics()?),
                _ => None,
            };
            let verifier = match &redis {
                Some(redis) => verifier(
                    mode,
                    &stats,
                    RedisStore::on(redis.clone(), Some(&redis_prefix("dedupe"))),
                    None,
                ),
                None => verifier(mode, &stats, MemoryStore::new(), observer.clone()),
            }
            .map_err(|e| format!("configuration: {e}"))?;
            let route = match mode {
                Mode::Full => post_service(event_router(&stats)).layer(verifier.layer()),
                _ => post(bytes_handler(&stats)).layer(verifier.layer()),
            };
            let app = Router::new()
                .route(payload::PATH, route)
                .route("/stats", stats_route);
            let limiter = match (observer, &redis) {
                (Some(observer), _) => limiter_builder().observer(observer).build(),
                (None, Some(redis)) => limiter_builder()
                    .shared(redis.clone(), Some(&redis_prefix("rate")))
                    .build(),
                (None, None) => limiter_builder().build(),
            };
            axum::serve(listener, limiter.into_make_service(app))
                .with_graceful_shutdown(shutdown())
                .await
        }
        Mode::QueueMem | Mode::QueueSqlite | Mode::QueueRedis => {
            let (verifier, queue, handle) = queued
                .take()
                .ok_or_else(|| "the queue was not built".to_string())?;
            queue_handle = Some(handle);
            queue_for_stats = Some(queue.clone());
            let app = Router::new()
                .route(payload::PATH, post_service(queue).layer(verifier.layer()))
                .route("/stats", stats_route);
            let limiter = match &redis {
                Some(redis) => limiter_builder()
                    .shared(redis.clone(), Some(&redis_prefix("rate")))
                    .build(),
                None => limiter_builder().build(),
            };
            axum::serve(listener, limiter.into_make_service(app))
                .with_graceful_shutdown(shutdown())
                .await
        }
    };
    if let Some(handle) = queue_handle {
        if !handle.shutdown(QUEUE_GRACE).await {
            eprintln!(
                "serve {}: the queue workers did not finish within {QUEUE_GRACE:?}",
                mode.name()
            );
        }
    }
    let last = stats
        .read(queue_for_stats.as_ref())
        .await
        .unwrap_or_else(|e| format!("(queue length unknown: {e}) {}", stats.json(0)));
    eprintln!("serve {}: stopped; stats {last}", mode.name());
    // Close the SQLite file before its directory is removed.
    drop(queue_for_stats);
    drop(state_dir);
    served.map_err(|e| format!("server failed: {e}"))
}

/// The `bare` and `stack` handler: takes the body, counts, answers a small
/// JSON document.
fn bytes_handler(
    stats: &Arc<Stats>,
) -> impl Fn(Bytes) -> std::future::Ready<axum::response::Response> + Clone + Send + Sync + 'static {
    let stats = Arc::clone(stats);
    move |body: Bytes| {
        black_box(body.len());
        Stats::count(&stats.handled);
        std::future::ready(([(header::CONTENT_TYPE, "application/json")], PROCESSED).into_response())
    }
}

/// The `full` mode's typed dispatch: `issues.opened` to a handler of
/// [`IssuesEvent`]; the router answers 200 `processed`.
fn event_router(stats: &Arc<Stats>) -> EventRouter {
    let stats = Arc::clone(stats);
    EventRouter::new().on("issues.opened", move |event: Event<IssuesEvent>| {
        let e = event.data();
        // Touch what was deserialized, as business logic would.
        black_box((
            e.action.len(),
            e.issue.number,
            e.issue.title.len(),
            e.issue.state.len(),
            e.issue.user.id,
            e.issue.labels.iter().map(|l| l.name.len()).sum::<usize>(),
            e.issue.body.as_ref().map(String::len),
            e.repository.id,
            e.repository.full_name.len(),
            e.sender.login.len(),
        ));
        Stats::count(&stats.handled);
        std::future::ready(Ok::<(), HandlerError>(()))
    })
}

/// The GitHub verifier with dedupe in `store` (counted), plus the JSON
/// Schema (`full`).
fn verifier<S: DedupeStore>(
    mode: Mode,
    stats: &Arc<Stats>,
    store: S,
    observer: Option<Arc<MetricsObserver>>,
) -> Result<Verifier, webhook_guard::ConfigError> {
    let store = CountingStore {
        inner: store,
        stats: Arc::clone(stats),
    };
    let dedupe = Dedupe::builder(store, "github")
        .replay_window(RETENTION)
        .retention(RETENTION)
        .build()?;
    let mut builder = Verifier::builder(Scheme::github())
        .secret(payload::SECRET)
        // GitHub signs no timestamp, so the tolerance checks nothing here;
        // it only bounds the replay window from below.
        .tolerance(RETENTION)
        .dedupe(dedupe);
    if mode == Mode::Full {
        builder = builder.schemas(Schemas::builder().default_schema(payload::schema()).build()?);
    }
    if let Some(observer) = observer {
        builder = builder.name("github").observer(observer);
    }
    builder.build()
}

/// The Redis at `WEBHOOK_GUARD_REDIS_URL`, checked now (a mode that needs
/// Redis does not start without one).
async fn redis_connection() -> Result<RedisConnection, String> {
    let url = std::env::var("WEBHOOK_GUARD_REDIS_URL").map_err(|_| {
        "the Redis modes need WEBHOOK_GUARD_REDIS_URL (scripts/load.sh starts a redis-server)".to_owned()
    })?;
    let redis = RedisConnection::builder(&url)
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| format!("WEBHOOK_GUARD_REDIS_URL: {e}"))?;
    redis
        .check()
        .await
        .map_err(|e| format!("WEBHOOK_GUARD_REDIS_URL: {e}"))?;
    Ok(redis)
}

/// A key prefix (or queue name) of this server process, so runs never
/// see each other's keys.
fn redis_prefix(what: &str) -> String {
    format!("peers-{}-{what}:", std::process::id())
}

/// A limiter no benchmark load reaches.
fn limiter_builder() -> webhook_guard::rate_limit::RateLimiterBuilder {
    let quota = NonZeroU32::new(QUOTA_PER_SECOND).unwrap_or(NonZeroU32::MAX);
    RateLimiter::builder().per_second(quota).burst(quota)
}

/// `stack-metrics`: installs `metrics-exporter-prometheus`'s recorder as
/// the global one (histograms with buckets, as the demo receiver sets
/// them), runs its upkeep and a render every 5 s (what a scrape costs),
/// and returns the observer.
fn install_metrics() -> Result<Arc<MetricsObserver>, String> {
    use metrics_exporter_prometheus::PrometheusBuilder;
    const SECONDS: [f64; 14] = [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    const STORE: [f64; 13] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ];
    const BYTES: [f64; 10] = [
        256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 33554432.0,
    ];
    const SKEW: [f64; 10] = [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in [
        ("webhook_guard_request_duration_seconds", &SECONDS[..]),
        ("webhook_guard_handler_duration_seconds", &SECONDS[..]),
        ("webhook_guard_dedupe_store_duration_seconds", &STORE[..]),
        ("webhook_guard_body_size_bytes", &BYTES[..]),
        ("webhook_guard_timestamp_skew_seconds", &SKEW[..]),
    ] {
        builder = builder
            .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Full(name.into()), buckets)
            .map_err(|e| format!("buckets: {e}"))?;
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| format!("cannot install the recorder: {e}"))?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
            black_box(handle.render().len());
        }
    });
    Ok(MetricsObserver::builder().build())
}

/// Resolves on SIGTERM (what the script sends) or ctrl-c.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
