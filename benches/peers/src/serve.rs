//! `serve <mode> <addr>`: the three servers the load script compares.
//!
//! | mode | what runs before the handler |
//! |---|---|
//! | `bare` | nothing: a plain axum `Router`, the handler takes the body as `Bytes` |
//! | `stack` | the rate limiter (around the whole app), then the GitHub verify layer with in-memory dedupe; same handler |
//! | `full` | `stack` plus JSON Schema validation, and typed dispatch through an `EventRouter` to a serde-struct handler |
//!
//! Every mode also serves `GET /stats` (outside the verify layer): how many
//! deliveries the handler processed and how the dedupe store answered its
//! claims, so the script can check that the load exercised fresh deliveries
//! and not the cheaper duplicate path. The same line is printed to stderr
//! when the server stops (SIGTERM or ctrl-c).

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::routing::{get, post, post_service};
use axum::Router;
use bytes::Bytes;
use http::header;
use webhook_guard::dedupe::{
    Claim, Dedupe, DedupeKey, DedupeStore, LeaseToken, MemoryStore, Retention, StoreFuture,
};
use webhook_guard::dispatch::{Event, EventRouter, HandlerError};
use webhook_guard::schema::Schemas;
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

/// The answer of the `bare` and `stack` handlers, shaped like the
/// `EventRouter`'s.
const PROCESSED: &str = r#"{"status":"processed"}"#;

/// Which server to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Bare,
    Stack,
    Full,
}

impl Mode {
    /// The mode's name on the command line.
    fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::Stack => "stack",
            Self::Full => "full",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "bare" => Some(Self::Bare),
            "stack" => Some(Self::Stack),
            "full" => Some(Self::Full),
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
    fn json(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            r#"{{"handled":{},"acquired":{},"duplicate":{},"in_progress":{},"store_error":{},"retention_ms":{}}}"#,
            get(&self.handled),
            get(&self.acquired),
            get(&self.duplicate),
            get(&self.in_progress),
            get(&self.store_error),
            RETENTION.as_millis(),
        )
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A [`MemoryStore`] that counts how it answers claims. Completing and
/// releasing are passed through untouched.
struct CountingStore {
    inner: MemoryStore,
    stats: Arc<Stats>,
}

impl DedupeStore for CountingStore {
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
}

/// Runs the `mode` server on `addr` until SIGTERM or ctrl-c. Prints
/// `listening on http://<address>/webhook` on stdout once it accepts
/// connections (give port 0 and read the port from that line).
pub(crate) async fn run(mode: Mode, addr: &str) -> Result<(), String> {
    let stats = Arc::new(Stats::default());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    eprintln!(
        "serve {}: {workers} runtime worker(s), dedupe retention {} ms",
        mode.name(),
        RETENTION.as_millis()
    );
    println!("listening on http://{local}{}", payload::PATH);

    let stats_route = {
        let stats = Arc::clone(&stats);
        get(move || {
            let stats = Arc::clone(&stats);
            async move { ([(header::CONTENT_TYPE, "application/json")], stats.json()) }
        })
    };
    let served = match mode {
        Mode::Bare => {
            let app = Router::new()
                .route(payload::PATH, post(bytes_handler(&stats)))
                .route("/stats", stats_route);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown())
                .await
        }
        Mode::Stack | Mode::Full => {
            let verifier = verifier(mode, &stats).map_err(|e| format!("configuration: {e}"))?;
            let route = match mode {
                Mode::Full => post_service(event_router(&stats)).layer(verifier.layer()),
                _ => post(bytes_handler(&stats)).layer(verifier.layer()),
            };
            let app = Router::new()
                .route(payload::PATH, route)
                .route("/stats", stats_route);
            axum::serve(listener, limiter().into_make_service(app))
                .with_graceful_shutdown(shutdown())
                .await
        }
    };
    eprintln!("serve {}: stopped; stats {}", mode.name(), stats.json());
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

/// The GitHub verifier with in-memory dedupe (`stack`), plus the JSON
/// Schema (`full`).
fn verifier(mode: Mode, stats: &Arc<Stats>) -> Result<Verifier, webhook_guard::ConfigError> {
    let store = CountingStore {
        inner: MemoryStore::new(),
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
    builder.build()
}

/// A limiter no benchmark load reaches.
fn limiter() -> RateLimiter {
    let quota = NonZeroU32::new(QUOTA_PER_SECOND).unwrap_or(NonZeroU32::MAX);
    RateLimiter::builder().per_second(quota).burst(quota).build()
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
