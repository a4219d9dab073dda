//! The demo receiver: every provider route behind webhook-guard.
//!
//! ```text
//! cargo run --release --example receiver
//! cargo run --example send -- stripe        # in another terminal
//! ```
//!
//! Its outside behaviour (routes, environment variables, status codes and
//! bodies) is specified in the project's receiver contract; the README
//! summarises it. Every secret variable takes a comma-separated list
//! (rotation); unset, a public development secret is used and printed with
//! a warning. A malformed variable stops the receiver with a one-line error
//! naming it and exit code 2.
//!
//! # Admin listener
//!
//! Metrics and health checks are served on a second, plain-HTTP listener,
//! apart from the webhook routes:
//!
//! ```text
//! cargo run --example receiver
//! curl -s http://127.0.0.1:9464/metrics     # in another terminal
//! ```
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `WEBHOOK_ADMIN_ADDR` | the admin listener's address, or `off` | `127.0.0.1:9464` |
//! | `WEBHOOK_ADMIN_PUBLIC` | `1` allows a non-loopback `WEBHOOK_ADMIN_ADDR` | unset (`0`) |
//!
//! Routes: `GET /metrics` (the Prometheus text exposition, content type
//! `text/plain; version=0.0.4; charset=utf-8`, of every `webhook_guard_*`
//! metric: see `webhook_guard::metrics`), and `GET /healthz` and
//! `GET /readyz`, the same handlers as on the main listener (so `/readyz`
//! turns 503 `shutting_down` on both at the same moment). Any other path
//! is 404 (a known path with another method, 405). `/metrics` is not
//! served on the main listener. Nothing on the admin listener goes through
//! the rate limiter or counts as a failed authentication. It is served by
//! the same serving helper as the main listener (the same
//! `WEBHOOK_HEADER_TIMEOUT_SECS`, at most 64 connections), and stops after
//! the main listener has drained and the queue workers have stopped (with
//! 1 s for its own requests). It is plain HTTP even when the main listener
//! serves HTTPS.
//!
//! Start-up:
//!
//! - a `WEBHOOK_ADMIN_ADDR` that is not a loopback address (such as
//!   `0.0.0.0:9464`) stops the receiver with one line naming the variable,
//!   unless `WEBHOOK_ADMIN_PUBLIC=1`: the metrics have no authentication,
//!   so exposing them takes a deliberate second setting (and a firewall);
//! - a `WEBHOOK_ADMIN_ADDR` that is set and cannot be bound (busy, not an
//!   address of this machine) stops the receiver with one line naming the
//!   variable, exit code 2;
//! - when the variable is **not** set and the default `127.0.0.1:9464`
//!   cannot be bound (typically a second receiver on the same machine),
//!   the receiver logs one WARN line saying the admin listener is off
//!   because the default port is busy, and serves webhooks without it.
//!   Scripts that start several receivers set `WEBHOOK_ADMIN_ADDR=off` or
//!   a port of their own for each, so none depends on the default port;
//! - `off` binds nothing, and no metrics recorder is installed.
//!
//! The start-up output says which: `admin listener: http://ADDR (...)` or
//! `admin listener: off`.
//!
//! ## Metrics and their buckets
//!
//! Every route is named after its path (`stripe`, `github`, ...: the
//! `route` label) and reports to one `MetricsObserver`, as do the rate
//! limiter and, with `WEBHOOK_ACK=queue`, the queue. The event types the
//! demo knows (its two test types and the sample types of
//! `examples/send.rs`) are registered; any other is counted as `_other`.
//! Every 5 s the recorder's upkeep runs and the sampled gauges are set
//! (each route's last-verified time, the limiter's tracked clients, the
//! queue's depth and capacity); right after start every route's
//! `webhook_guard_last_verified_delivery_timestamp_seconds` is 0.
//!
//! The recorder (`metrics-exporter-prometheus`, without its own HTTP
//! listener) exposes every histogram as a real Prometheus histogram, with
//! buckets per metric, so quantiles can be aggregated across replicas and
//! alert thresholds fall on a bucket bound:
//!
//! - request, handler and queue-run durations (s): 0.0005, 0.001, 0.0025,
//!   0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 3, 4, 5, 10, 30.
//!   Fine below 10 ms, where the guard itself works; then the providers'
//!   delivery timeouts (Slack 3 s, Shopify 5 s, GitHub 10 s), 2.5 s (an
//!   alert threshold that leaves room under Slack's 3 s), and 30 s (the
//!   default body deadline);
//! - dedupe and queue store latencies (s): 0.0001 to 5 (memory and SQLite
//!   answer in microseconds, Redis in about a millisecond);
//! - body size (bytes): 256, 1 KiB, 4 KiB, 16 KiB, 64 KiB, 256 KiB,
//!   512 KiB, 1 MiB (the default `WEBHOOK_MAX_BODY_BYTES`; a different
//!   configured limit is added as a bound, so "bodies near the limit" is
//!   one bucket);
//! - timestamp skew (s): 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800,
//!   3600, 21600, 86400: transit delay is about a second, a drifting clock
//!   shows in the minutes before the 300 s default tolerance (the
//!   configured `WEBHOOK_TOLERANCE_SECS` is added as a bound), and refused
//!   stale deliveries and replays fall in the hour and day buckets;
//! - queue wait (s, counted in whole seconds): 0.5 to 86400.

use std::io::Write as _;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::{get, post_service};
use axum::Router;
use serde_json::Value;
use sha2::Digest as _;
use webhook_guard::dedupe::{Dedupe, DedupeStore, MemoryStore};
use webhook_guard::dispatch::{Event, EventRouter, HandlerError};
use webhook_guard::handshake::Handshake;
use webhook_guard::inspect::Inspector;
use webhook_guard::metrics::MetricsObserver;
use webhook_guard::observe::{Fanout, Observer};
use webhook_guard::queue::{AckQueue, AckQueueHandle, Delivery};
use webhook_guard::schema::Schemas;
use webhook_guard::serve::{Readiness, Server};
use webhook_guard::sqlite::SqliteState;
use webhook_guard::{BodyBudget, Networks, ProxyHeader, RateLimiter, Scheme, Verifier};

mod common;
use common::admin::{self, AdminAddr};
use common::EnvError;

/// The demo handler fails on purpose for this event type, to show that a
/// failed delivery is answered 500 (and so retried by the provider).
const FAILING_EVENT: &str = "test.handler_error";
/// The demo handler takes two seconds for this event type, so a concurrent
/// identical delivery can be seen getting 409 (in progress).
const SLOW_EVENT: &str = "test.slow_handler";

/// The event types the demo knows, labeled by name in
/// `webhook_guard_events_total` (any other is `_other`): the two the demo
/// handler treats specially, and the sample types `examples/send.rs` sends.
const EVENT_TYPES: [&str; 11] = [
    FAILING_EVENT,
    SLOW_EVENT,
    "payment_intent.succeeded",
    "invoice.paid",
    "event_callback",
    "url_verification",
    "ping",
    "orders/create",
    "page",
    "tweet_create_events",
    "issues",
];

/// The state file inside `WEBHOOK_STATE_DIR`.
const STATE_FILE: &str = "webhook-guard.sqlite3";

/// `WEBHOOK_ACK`: where the handler runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ack {
    /// Before the answer (the default).
    Sync,
    /// After a 202, from the queue.
    Queue,
}

struct Config {
    addr: SocketAddr,
    admin: AdminAddr,
    metrics: Arc<MetricsObserver>,
    tolerance: Duration,
    max_body: usize,
    verifiers: Vec<(&'static str, Verifier)>,
    /// The development inspector (`WEBHOOK_INSPECT=1`), when served.
    inspector: Option<Inspector>,
    limiter: RateLimiter,
    store: &'static str,
    state: Option<SqliteState>,
    ack: Ack,
    workers: NonZeroUsize,
    max_attempts: u32,
    header_timeout: Duration,
    max_connections: usize,
    grace: Duration,
    log: Option<ProcessedLog>,
    #[cfg(feature = "tls")]
    tls: Option<webhook_guard::serve::TlsConfig>,
    /// `WEBHOOK_REDIS_URL`: the Redis every replica shares (dedupe, quotas,
    /// lockout, queue).
    #[cfg(feature = "redis")]
    redis: Option<fleet::Fleet>,
}

fn number(var: &'static str, default: u64, what: &str) -> Result<u64, EnvError> {
    match number_or_zero(var, default, what)? {
        0 => Err(EnvError::new(var, format!("0 is not {what} greater than 0"))),
        n => Ok(n),
    }
}

fn number_or_zero(var: &'static str, default: u64, what: &str) -> Result<u64, EnvError> {
    match common::var(var)? {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse::<u64>()
            .map_err(|_| EnvError::new(var, format!("{raw:?} is not {what}"))),
    }
}

fn seconds(var: &'static str, default: u64) -> Result<Duration, EnvError> {
    number(var, default, "a whole number of seconds").map(Duration::from_secs)
}

fn config() -> Result<Config, EnvError> {
    let addr = common::addr()?;
    let admin = admin::addr()?;
    // Wired in whether or not the admin listener serves them: without an
    // installed recorder the `metrics` macros do nothing.
    let metrics = MetricsObserver::builder().event_types(EVENT_TYPES).build();
    let tolerance = number("WEBHOOK_TOLERANCE_SECS", 300, "a whole number of seconds")?;
    let max_body = number("WEBHOOK_MAX_BODY_BYTES", 1_048_576, "a whole number of bytes")?;
    let max_body = usize::try_from(max_body)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| EnvError::new("WEBHOOK_MAX_BODY_BYTES", "is too large"))?;
    let per_second = rate("WEBHOOK_RATE_PER_SEC", 50)?;
    let burst = rate("WEBHOOK_RATE_BURST", 100)?;
    let failed_auth = number_or_zero("WEBHOOK_FAILED_AUTH_PER_MIN", 20, "a whole number")?;
    let failed_auth = u32::try_from(failed_auth)
        .map_err(|_| EnvError::new("WEBHOOK_FAILED_AUTH_PER_MIN", "is too large"))?;
    let header_timeout = seconds("WEBHOOK_HEADER_TIMEOUT_SECS", 10)?;
    let body_timeout = seconds("WEBHOOK_BODY_TIMEOUT_SECS", 30)?;
    let max_connections = number("WEBHOOK_MAX_CONNECTIONS", 10_000, "a whole number")?;
    let max_connections = usize::try_from(max_connections)
        .map_err(|_| EnvError::new("WEBHOOK_MAX_CONNECTIONS", "is too large"))?;
    let inflight = number(
        "WEBHOOK_MAX_INFLIGHT_BODY_BYTES",
        64 * 1024 * 1024,
        "a whole number of bytes",
    )?;
    let inflight = usize::try_from(inflight)
        .map_err(|_| EnvError::new("WEBHOOK_MAX_INFLIGHT_BODY_BYTES", "is too large"))?;
    let grace = seconds("WEBHOOK_SHUTDOWN_GRACE_SECS", 10)?;
    let ack = match common::var("WEBHOOK_ACK")?.as_deref().map(str::trim) {
        None | Some("sync") => Ack::Sync,
        Some("queue") => Ack::Queue,
        Some(other) => {
            return Err(EnvError::new(
                "WEBHOOK_ACK",
                format!("{other:?} is neither \"sync\" nor \"queue\""),
            ))
        }
    };
    let workers = number("WEBHOOK_QUEUE_WORKERS", 4, "a whole number")?;
    let workers = usize::try_from(workers)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| EnvError::new("WEBHOOK_QUEUE_WORKERS", "is too large"))?;
    let max_attempts = number("WEBHOOK_QUEUE_MAX_ATTEMPTS", 5, "a whole number")?;
    let max_attempts = u32::try_from(max_attempts)
        .map_err(|_| EnvError::new("WEBHOOK_QUEUE_MAX_ATTEMPTS", "is too large"))?;
    let log = match common::var("WEBHOOK_PROCESSED_LOG")? {
        Some(path) => Some(ProcessedLog::open(path.trim().into())?),
        None => None,
    };
    #[cfg(feature = "tls")]
    let tls = tls()?;
    #[cfg(not(feature = "tls"))]
    if common::var("WEBHOOK_TLS_CERT")?.is_some() || common::var("WEBHOOK_TLS_KEY")?.is_some() {
        return Err(EnvError::new(
            "WEBHOOK_TLS_CERT",
            "is set, but this receiver was built without the `tls` feature (add --features tls)",
        ));
    }
    let trusted = match common::var("WEBHOOK_TRUSTED_PROXIES")? {
        Some(list) => {
            Networks::parse(&list).map_err(|e| EnvError::new("WEBHOOK_TRUSTED_PROXIES", e.to_string()))?
        }
        None => Networks::none(),
    };
    let senders = match common::var("WEBHOOK_SENDER_NETWORKS")? {
        Some(list) => {
            Networks::parse(&list).map_err(|e| EnvError::new("WEBHOOK_SENDER_NETWORKS", e.to_string()))?
        }
        None => Networks::none(),
    };
    let sender_per_second = rate(
        "WEBHOOK_SENDER_RATE_PER_SEC",
        webhook_guard::rate_limit::DEFAULT_SENDER_PER_SECOND,
    )?;
    let sender_burst = rate(
        "WEBHOOK_SENDER_RATE_BURST",
        webhook_guard::rate_limit::DEFAULT_SENDER_BURST,
    )?;
    #[cfg(feature = "redis")]
    let redis = fleet::Fleet::from_env()?;
    #[cfg(not(feature = "redis"))]
    for var in [
        "WEBHOOK_RATE_REDIS_FALLBACK",
        "WEBHOOK_REDIS_CA_FILE",
        "WEBHOOK_QUEUE_LEASE_SECS",
    ] {
        if common::var(var)?.is_some() {
            return Err(EnvError::new(
                var,
                "is set, but this receiver was built without the `redis` feature (add --features redis)",
            ));
        }
    }
    let limiter = RateLimiter::builder()
        .per_second(per_second)
        .burst(burst)
        .sender_networks(senders)
        .sender_per_second(sender_per_second)
        .sender_burst(sender_burst)
        .failed_authentications_per_minute(NonZeroU32::new(failed_auth))
        .trusted_proxies(trusted)
        // The demo believes whichever forwarding header its proxy sends;
        // pin one with `ProxyHeader::XForwardedFor` or `Forwarded` in
        // production, matching what your proxy writes.
        .proxy_header(ProxyHeader::XForwardedForThenForwarded)
        .observer(metrics.clone());
    #[cfg(feature = "redis")]
    let limiter = match &redis {
        Some(fleet) => limiter
            .shared(fleet.conn.clone(), None)
            .shared_fallback(fleet.fallback),
        None => limiter,
    };
    let limiter = limiter.build();
    let state = state()?;
    #[cfg(feature = "redis")]
    let (store, store_name) = match &redis {
        Some(fleet) => (
            Arc::new(webhook_guard::dedupe::RedisStore::on(fleet.conn.clone(), None)) as Arc<dyn DedupeStore>,
            "redis (WEBHOOK_REDIS_URL)",
        ),
        None => store(state.as_ref())?,
    };
    #[cfg(not(feature = "redis"))]
    let (store, store_name) = store(state.as_ref())?;
    let budget = BodyBudget::new(inflight);
    let (token_var, token_default) = common::META_VERIFY_TOKEN;
    let meta_token = match common::var(token_var)? {
        Some(token) => token,
        None => {
            eprintln!(
                "warning: {token_var} is not set; using the public development token {token_default:?}. Never use it for real traffic."
            );
            token_default.to_owned()
        }
    };
    let inspector = inspector(admin)?;
    let observer: Arc<dyn Observer> = match &inspector {
        Some(inspector) => Arc::new(Fanout::new().with(metrics.clone()).with(inspector.observer())),
        None => metrics.clone(),
    };
    let diagnostics = diagnostics()?;
    let common_route = |scheme: Scheme, name: &'static str| -> Result<_, EnvError> {
        let builder = Verifier::builder(scheme);
        let builder = match &diagnostics {
            Some(d) => builder.diagnostics(d.clone()),
            None => builder,
        };
        Ok(builder
            .name(name)
            .observer(observer.clone())
            .tolerance(Duration::from_secs(tolerance))
            .max_body_bytes(max_body)
            .body_deadline(body_timeout)
            .body_idle_timeout(body_timeout)
            .body_budget(budget.clone())
            .schemas(schemas(name).map_err(|e| EnvError::new("WEBHOOK_ADDR", e))?)
            .dedupe(
                Dedupe::builder(store.clone(), name)
                    .build()
                    .map_err(|e| EnvError::new("WEBHOOK_REDIS_URL", e.to_string()))?,
            ))
    };
    let mut verifiers = Vec::new();
    let dropbox_challenge = match common::var(common::DROPBOX_CHALLENGE)?.as_deref() {
        None | Some("" | "0") => false,
        Some("1") => true,
        Some(other) => {
            return Err(EnvError::new(
                common::DROPBOX_CHALLENGE,
                format!("{other:?} is neither 1 nor 0"),
            ))
        }
    };
    for route in &common::routes() {
        let (mut secrets, is_default) = common::secrets(route)?;
        let own = secrets.len();
        if route.name == "standard" {
            // v1a (Ed25519) public keys beside the v1 secrets.
            if let Some(keys) = common::var(common::STANDARD_PUBLIC_KEYS)? {
                secrets.extend(keys.split(',').map(|k| k.trim().to_owned()));
            }
        }
        if is_default {
            eprintln!(
                "warning: {} is not set; using the public development secret {:?}. Never use it for real traffic.",
                route.env, route.dev_secret
            );
        }
        let mut builder = common_route(route.scheme()?, route.name)?.secrets(secrets);
        match route.name {
            "meta" => builder = builder.handshake(Handshake::meta(meta_token.as_str())),
            "x" => builder = builder.handshake(Handshake::x_crc()),
            "dropbox" if dropbox_challenge => builder = builder.handshake(Handshake::dropbox_challenge()),
            _ => {}
        }
        let verifier = builder.build().map_err(|e| {
            let var = match e {
                webhook_guard::ConfigError::InvalidHandshake { .. } => token_var,
                webhook_guard::ConfigError::InvalidSecretEncoding { index, .. }
                | webhook_guard::ConfigError::EmptySecret { index }
                | webhook_guard::ConfigError::SecretHasSurroundingWhitespace { index }
                    if index >= own =>
                {
                    common::STANDARD_PUBLIC_KEYS
                }
                _ => route.env,
            };
            EnvError::new(var, e.to_string())
        })?;
        verifiers.push((route.name, verifier));
    }
    let paypal = common_route(Scheme::paypal(paypal()?), "paypal")?
        .build()
        .map_err(|e| EnvError::new("PAYPAL_WEBHOOK_ID", e.to_string()))?;
    verifiers.push(("paypal", paypal));
    Ok(Config {
        addr,
        admin,
        metrics,
        tolerance: Duration::from_secs(tolerance),
        max_body: max_body.get(),
        verifiers,
        inspector,
        limiter,
        store: store_name,
        state,
        ack,
        workers,
        max_attempts,
        header_timeout,
        max_connections,
        grace,
        log,
        #[cfg(feature = "tls")]
        tls,
        #[cfg(feature = "redis")]
        redis,
    })
}

/// `WEBHOOK_REDIS_URL` and what goes with it (feature `redis`).
#[cfg(feature = "redis")]
mod fleet {
    use std::time::Duration;

    use webhook_guard::fleet::{CheckError, RedisConnection};
    use webhook_guard::queue::RedisQueue;
    use webhook_guard::rate_limit::RedisFallback;

    use super::common::{self, EnvError};

    const URL: &str = "WEBHOOK_REDIS_URL";

    /// The shared Redis and the settings of the pieces kept there.
    pub(crate) struct Fleet {
        pub(crate) conn: RedisConnection,
        pub(crate) fallback: RedisFallback,
        pub(crate) lease: Duration,
        pub(crate) wait_for_aof: Option<Duration>,
    }

    impl Fleet {
        /// Reads the variables; `None` without `WEBHOOK_REDIS_URL` (the
        /// other Redis variables are then an error, not silently unused).
        pub(crate) fn from_env() -> Result<Option<Self>, EnvError> {
            let Some(url) = common::var(URL)? else {
                for var in [
                    "WEBHOOK_RATE_REDIS_FALLBACK",
                    "WEBHOOK_REDIS_CA_FILE",
                    "WEBHOOK_QUEUE_LEASE_SECS",
                    "WEBHOOK_REDIS_WAITAOF_MS",
                ] {
                    if common::var(var)?.is_some() {
                        return Err(EnvError::new(var, "is set, but WEBHOOK_REDIS_URL is not"));
                    }
                }
                return Ok(None);
            };
            let mut builder = RedisConnection::builder(url.trim());
            if let Some(path) = common::var("WEBHOOK_REDIS_CA_FILE")? {
                let pem = std::fs::read(path.trim()).map_err(|e| {
                    EnvError::new(
                        "WEBHOOK_REDIS_CA_FILE",
                        format!("cannot read {}: {e}", path.trim()),
                    )
                })?;
                builder = builder.ca_pem(pem);
            }
            let conn = builder.build().map_err(|e| EnvError::new(URL, e.to_string()))?;
            let fallback = match common::var("WEBHOOK_RATE_REDIS_FALLBACK")?
                .as_deref()
                .map(str::trim)
            {
                None | Some("local") => RedisFallback::default(),
                Some("allow") => RedisFallback::Allow,
                Some("deny") => RedisFallback::Deny,
                Some(other) => {
                    return Err(EnvError::new(
                        "WEBHOOK_RATE_REDIS_FALLBACK",
                        format!("{other:?} is none of local, allow, deny"),
                    ))
                }
            };
            let lease = super::seconds("WEBHOOK_QUEUE_LEASE_SECS", 60)?;
            let wait_for_aof = match common::var("WEBHOOK_REDIS_WAITAOF_MS")? {
                None => None,
                Some(_) => Some(Duration::from_millis(super::number(
                    "WEBHOOK_REDIS_WAITAOF_MS",
                    1000,
                    "a whole number of milliseconds",
                )?)),
            };
            Ok(Some(Self {
                conn,
                fallback,
                lease,
                wait_for_aof,
            }))
        }

        /// The start-up check: a certificate that does not verify or
        /// refused credentials stop the receiver; an unreachable Redis is
        /// a warning (requests get 503 until it answers); what would lose
        /// state is a warning each.
        pub(crate) async fn check(&self) -> Result<(), EnvError> {
            match self.conn.check().await {
                Ok(report) => {
                    for warning in report.warnings() {
                        eprintln!("warning: {warning}");
                    }
                    if self.wait_for_aof.is_some() && !report.has_waitaof() {
                        return Err(EnvError::new(
                            "WEBHOOK_REDIS_WAITAOF_MS",
                            format!(
                                "is set, but this Redis ({}) has no WAITAOF (needs 7.2 or later)",
                                report.version.as_deref().unwrap_or("unknown version")
                            ),
                        ));
                    }
                    println!(
                        "redis: reachable (version {}, append-only {})",
                        report.version.as_deref().unwrap_or("unknown"),
                        match report.append_only {
                            Some(true) => "on",
                            Some(false) => "off",
                            None => "unknown",
                        }
                    );
                    Ok(())
                }
                Err(e @ (CheckError::Tls(_) | CheckError::Auth(_))) => Err(EnvError::new(URL, e.to_string())),
                Err(e) => {
                    eprintln!(
                        "warning: {URL}: {e}; starting anyway: requests that need Redis get 503 until it answers"
                    );
                    Ok(())
                }
            }
        }

        /// The Redis Streams queue of `WEBHOOK_ACK=queue`.
        pub(crate) fn queue(&self) -> Result<RedisQueue, EnvError> {
            let mut builder = RedisQueue::builder(self.conn.clone()).lease(self.lease);
            if let Some(wait) = self.wait_for_aof {
                builder = builder.wait_for_aof(wait);
            }
            builder
                .build()
                .map_err(|e| EnvError::new("WEBHOOK_QUEUE_LEASE_SECS", e.to_string()))
        }
    }
}

/// `WEBHOOK_TLS_CERT` and `WEBHOOK_TLS_KEY`: both or neither.
#[cfg(feature = "tls")]
fn tls() -> Result<Option<webhook_guard::serve::TlsConfig>, EnvError> {
    match (common::var("WEBHOOK_TLS_CERT")?, common::var("WEBHOOK_TLS_KEY")?) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(EnvError::new(
            "WEBHOOK_TLS_KEY",
            "is not set, but WEBHOOK_TLS_CERT is (set both, or neither)",
        )),
        (None, Some(_)) => Err(EnvError::new(
            "WEBHOOK_TLS_CERT",
            "is not set, but WEBHOOK_TLS_KEY is (set both, or neither)",
        )),
        (Some(cert), Some(key)) => webhook_guard::serve::TlsConfig::from_pem_files(cert.trim(), key.trim())
            .map(Some)
            .map_err(|e| {
                EnvError::new(
                    "WEBHOOK_TLS_CERT",
                    format!("cannot use the certificate and key: {e}"),
                )
            }),
    }
}

/// `WEBHOOK_STATE_DIR`: the SQLite state, created if needed.
fn state() -> Result<Option<SqliteState>, EnvError> {
    let Some(dir) = common::var("WEBHOOK_STATE_DIR")? else {
        return Ok(None);
    };
    if common::var("WEBHOOK_REDIS_URL")?.is_some() {
        return Err(EnvError::new(
            "WEBHOOK_STATE_DIR",
            "and WEBHOOK_REDIS_URL are both set; with WEBHOOK_REDIS_URL every piece of state (dedupe keys, quotas, the queue) lives in Redis, so no state dir is needed (unset one)",
        ));
    }
    let dir = PathBuf::from(dir.trim());
    std::fs::create_dir_all(&dir).map_err(|e| {
        EnvError::new(
            "WEBHOOK_STATE_DIR",
            format!("cannot create {}: {e}", dir.display()),
        )
    })?;
    SqliteState::open(dir.join(STATE_FILE))
        .map(Some)
        .map_err(|e| EnvError::new("WEBHOOK_STATE_DIR", e.to_string()))
}

/// `WEBHOOK_PROCESSED_LOG`: one JSON line at the start and at the end of
/// every run of the demo handler (and when a delivery becomes a dead
/// letter), written whole and flushed before the handler returns.
#[derive(Clone)]
struct ProcessedLog {
    file: Arc<Mutex<std::fs::File>>,
}

impl ProcessedLog {
    fn open(path: PathBuf) -> Result<Self, EnvError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                EnvError::new(
                    "WEBHOOK_PROCESSED_LOG",
                    format!("cannot open {}: {e}", path.display()),
                )
            })?;
        Ok(Self {
            file: Arc::new(Mutex::new(file)),
        })
    }

    fn write(
        &self,
        phase: &str,
        route: &str,
        id: Option<&str>,
        kind: Option<&str>,
        body: &[u8],
        attempt: u32,
    ) {
        let line = serde_json::json!({
            "phase": phase,
            "route": route,
            "id": id,
            "type": kind,
            "body_sha256": hex::encode(sha2::Sha256::digest(body)),
            "attempt": attempt,
        });
        let mut text = line.to_string();
        text.push('\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = file.write_all(text.as_bytes()).and_then(|()| file.flush()) {
            // Not eprintln!, which panics when stderr cannot be written
            // (a full disk under a redirected stderr).
            tracing::error!(error = %e, "WEBHOOK_PROCESSED_LOG: cannot write");
        }
    }
}

/// A per-second rate or a burst: a whole number greater than 0.
fn rate(var: &'static str, default: u32) -> Result<NonZeroU32, EnvError> {
    let n = number(var, u64::from(default), "a whole number")?;
    u32::try_from(n)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| EnvError::new(var, "is too large"))
}

/// The dedupe store: SQLite under `WEBHOOK_STATE_DIR`, Redis when
/// `WEBHOOK_REDIS_URL` is set (feature `redis`), else in memory. One store
/// serves every route; keys are namespaced by route.
fn store(state: Option<&SqliteState>) -> Result<(Arc<dyn DedupeStore>, &'static str), EnvError> {
    if let Some(state) = state {
        return Ok((Arc::new(state.dedupe_store()), "sqlite (WEBHOOK_STATE_DIR)"));
    }
    match common::var("WEBHOOK_REDIS_URL")? {
        None => {
            let bytes = number(
                "WEBHOOK_DEDUPE_MAX_BYTES",
                u64::try_from(MemoryStore::DEFAULT_MAX_BYTES).unwrap_or(u64::MAX),
                "a whole number of bytes",
            )?;
            let bytes = usize::try_from(bytes)
                .ok()
                .and_then(NonZeroUsize::new)
                .ok_or_else(|| EnvError::new("WEBHOOK_DEDUPE_MAX_BYTES", "is too large"))?;
            let store = MemoryStore::builder().max_bytes(bytes).build();
            println!(
                "dedupe store: in memory, {} MiB for {} keys",
                bytes.get() / (1024 * 1024),
                store.capacity()
            );
            Ok((Arc::new(store), "in-memory"))
        }
        #[cfg(feature = "redis")]
        Some(url) => {
            let store = webhook_guard::dedupe::RedisStore::builder(url.trim())
                .build()
                .map_err(|e| EnvError::new("WEBHOOK_REDIS_URL", e.to_string()))?;
            Ok((Arc::new(store), "redis"))
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => Err(EnvError::new(
            "WEBHOOK_REDIS_URL",
            "is set, but this receiver was built without the `redis` feature (add --features redis)",
        )),
    }
}

/// `WEBHOOK_INSPECT=1`: the development inspector on the admin listener,
/// keeping `WEBHOOK_INSPECT_KEEP` deliveries (default 200). Served only on
/// a loopback admin address; elsewhere it is refused with a warning.
fn inspector(admin: AdminAddr) -> Result<Option<Inspector>, EnvError> {
    match common::var("WEBHOOK_INSPECT")?.as_deref().map(str::trim) {
        None | Some("" | "0") => return Ok(None),
        Some("1") => {}
        Some(other) => {
            return Err(EnvError::new(
                "WEBHOOK_INSPECT",
                format!("{other:?} is neither \"1\" nor \"0\""),
            ))
        }
    }
    let keep = number("WEBHOOK_INSPECT_KEEP", 200, "a whole number")?;
    let keep = usize::try_from(keep).map_err(|_| EnvError::new("WEBHOOK_INSPECT_KEEP", "is too large"))?;
    let loopback = match admin {
        AdminAddr::Off => {
            eprintln!("warning: WEBHOOK_INSPECT=1, but the admin listener is off: no inspector");
            return Ok(None);
        }
        AdminAddr::Default(addr) | AdminAddr::Explicit(addr) => addr.ip().is_loopback(),
    };
    if !loopback {
        eprintln!("warning: WEBHOOK_INSPECT=1, but the admin address is not loopback: the inspector is never served there");
        return Ok(None);
    }
    Ok(Some(Inspector::builder().keep(keep).build()))
}

/// The PayPal route's configuration: `PAYPAL_WEBHOOK_ID` (a development
/// id when unset), `PAYPAL_SANDBOX=1` for the sandbox hosts, and
/// `PAYPAL_CERT_FILE` (pinned certificates) or, unset, certificates
/// fetched from the checked `PAYPAL-CERT-URL` with their chain validated.
fn paypal() -> Result<webhook_guard::paypal::PayPal, EnvError> {
    use webhook_guard::paypal::{PayPal, PinnedCertificates};
    let (id_var, id_default) = common::PAYPAL_WEBHOOK_ID;
    let id = match common::var(id_var)? {
        Some(id) => id.trim().to_owned(),
        None => {
            eprintln!("warning: {id_var} is not set; using the development webhook id {id_default:?}.");
            id_default.to_owned()
        }
    };
    let sandbox = match common::var("PAYPAL_SANDBOX")?.as_deref().map(str::trim) {
        None | Some("" | "0") => false,
        Some("1") => true,
        Some(other) => {
            return Err(EnvError::new(
                "PAYPAL_SANDBOX",
                format!("{other:?} is neither \"1\" nor \"0\""),
            ))
        }
    };
    let builder = PayPal::builder(id).sandbox(sandbox);
    let builder = match common::var("PAYPAL_CERT_FILE")? {
        Some(path) => {
            let pem = std::fs::read_to_string(path.trim())
                .map_err(|e| EnvError::new("PAYPAL_CERT_FILE", format!("cannot read {path:?}: {e}")))?;
            builder.certificates(
                PinnedCertificates::from_pem(&pem)
                    .map_err(|e| EnvError::new("PAYPAL_CERT_FILE", e.to_string()))?,
            )
        }
        None => builder.certificates(fetched_certificates()?),
    };
    builder.build().map_err(|e| EnvError::new(id_var, e.to_string()))
}

/// Certificates fetched over HTTPS from the checked URL, their chain
/// validated to the system's roots (Debian's bundle, which still carries
/// the DigiCert roots PayPal's certificates have chained to), else to
/// Mozilla's list from `webpki-roots`.
fn fetched_certificates() -> Result<webhook_guard::paypal::FetchedCertificates, EnvError> {
    use webhook_guard::paypal::{FetchedCertificates, TrustAnchors};
    const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
    let builder = match std::fs::read_to_string(SYSTEM_ROOTS)
        .ok()
        .and_then(|pem| TrustAnchors::from_pem(&pem).ok())
    {
        Some(roots) => FetchedCertificates::builder(roots),
        None => FetchedCertificates::with_webpki_roots(),
    };
    builder
        .build()
        .map_err(|e| EnvError::new("PAYPAL_CERT_FILE", e.to_string()))
}

/// `WEBHOOK_HINTS=1`: diagnostic hints for failed verifications, logged,
/// counted and shown by the inspector; `WEBHOOK_HINTS_IN_RESPONSE=1` also
/// puts them in the problem+json answer (development only).
fn diagnostics() -> Result<Option<webhook_guard::hints::Diagnostics>, EnvError> {
    let flag = |var: &'static str| -> Result<bool, EnvError> {
        match common::var(var)?.as_deref().map(str::trim) {
            None | Some("" | "0") => Ok(false),
            Some("1") => Ok(true),
            Some(other) => Err(EnvError::new(
                var,
                format!("{other:?} is neither \"1\" nor \"0\""),
            )),
        }
    };
    let (on, in_response) = (flag("WEBHOOK_HINTS")?, flag("WEBHOOK_HINTS_IN_RESPONSE")?);
    if !on && !in_response {
        return Ok(None);
    }
    if in_response {
        eprintln!(
            "warning: WEBHOOK_HINTS_IN_RESPONSE=1 puts diagnostic hints in answers: for development only"
        );
    }
    Ok(Some(
        webhook_guard::hints::Diagnostics::new().in_response(in_response),
    ))
}

/// `GET /providers`: every provider route and the variables it reads.
fn providers() -> Value {
    Value::Array(
        common::providers()
            .into_iter()
            .map(|(name, env)| serde_json::json!({ "name": name, "route": format!("/webhooks/{name}"), "env": env }))
            .collect(),
    )
}

/// The JSON Schema of a route, from `examples/schemas/<route>.json`.
fn schemas(route: &str) -> Result<Schemas, String> {
    let text = match route {
        "stripe" => include_str!("schemas/stripe.json"),
        "standard" => include_str!("schemas/standard.json"),
        "github" => include_str!("schemas/github.json"),
        "slack" => include_str!("schemas/slack.json"),
        "shopify" => include_str!("schemas/shopify.json"),
        "meta" => include_str!("schemas/meta.json"),
        "x" => include_str!("schemas/x.json"),
        "paypal" => include_str!("schemas/paypal.json"),
        "discord" => include_str!("schemas/discord.json"),
        "sendgrid" => include_str!("schemas/sendgrid.json"),
        // The other providers: any JSON object or array (their own shapes
        // are the providers' to document; add a schema file to check one).
        _ => include_str!("schemas/any.json"),
    };
    let schema: Value = serde_json::from_str(text).map_err(|e| format!("schema of {route}: {e}"))?;
    Schemas::builder()
        .default_schema(schema)
        .build()
        .map_err(|e| e.to_string())
}

/// The demo's business logic, wrapped so that every run is written to
/// the processed log.
fn events(log: Option<ProcessedLog>) -> EventRouter {
    EventRouter::new().on_any(move |event: Event<Value>| {
        let log = log.clone();
        async move {
            let hook = event.delivery();
            let attempt = hook.attempt().unwrap_or(1);
            let route = hook.provider().name().to_owned();
            if let Some(log) = &log {
                log.write(
                    "start",
                    &route,
                    hook.delivery_id(),
                    hook.event_type(),
                    hook.body(),
                    attempt,
                );
            }
            handle(&event).await?;
            if let Some(log) = &log {
                log.write(
                    "done",
                    &route,
                    hook.delivery_id(),
                    hook.event_type(),
                    hook.body(),
                    attempt,
                );
            }
            Ok::<(), HandlerError>(())
        }
    })
}

/// `GET /healthz` (200 until the process exits) and `GET /readyz` (200,
/// then 503 `shutting_down` once shutdown starts): the same routes on the
/// main and the admin listener.
fn health(ready: &Readiness) -> Router {
    let ready = ready.clone();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(move || std::future::ready(ready.response())))
}

/// The application: one verified route per provider (answered by the
/// handler, or by the queue in `WEBHOOK_ACK=queue`), plus `/healthz` and
/// `/readyz`.
fn app(config: &Config, queue: Option<&AckQueue>, ready: &Readiness) -> Router {
    let events = events(config.log.clone());
    let providers = providers();
    let mut router = health(ready).route(
        "/providers",
        get(move || std::future::ready(axum::Json(providers.clone()))),
    );
    for (name, verifier) in &config.verifiers {
        let path = format!("/webhooks/{name}");
        let route = match queue {
            Some(queue) => post_service(queue.clone()).layer(verifier.layer()),
            None => post_service(events.clone()).layer(verifier.layer()),
        };
        let route = match *name {
            // Adyen expects the literal body `[accepted]` for every
            // notification it may stop sending.
            "adyen" => route.layer(axum::middleware::map_response(adyen_accepted)),
            _ => route,
        };
        router = router.route(&path, route);
    }
    router
}

/// Adyen's acknowledgement: a success (processed, accepted, duplicate)
/// answered `[accepted]`; rejections unchanged.
async fn adyen_accepted(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if response.status().is_success() {
        (
            [(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            "[accepted]",
        )
            .into_response()
    } else {
        response
    }
}

/// The demo's business logic: accept every verified event, except the
/// deliberately failing one (and take its time over the slow one). The
/// layer has already verified, validated and deduplicated it; the router
/// answers `processed`, or 500 when this fails.
async fn handle(event: &Event<Value>) -> Result<(), HandlerError> {
    match event.event_type() {
        Some(FAILING_EVENT) => Err(HandlerError::msg(
            "the demo handler fails on purpose for this event type",
        )),
        Some(SLOW_EVENT) => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The queue of `WEBHOOK_ACK=queue`: in the state dir when there is one,
/// else in memory (lost on a crash).
fn queue(config: &Config) -> Result<(AckQueue, AckQueueHandle), EnvError> {
    let log = config.log.clone();
    let mut builder = AckQueue::builder()
        .observer(config.metrics.clone())
        .workers(config.workers)
        .max_attempts(config.max_attempts)
        .on_dead_letter(move |delivery: &Delivery, attempts, _error| {
            if let Some(log) = &log {
                log.write(
                    "dead",
                    delivery.provider().name(),
                    delivery.delivery_id(),
                    delivery.event_type(),
                    delivery.body(),
                    attempts,
                );
            }
        });
    if let Some(state) = &config.state {
        builder = builder.storage(state.queue());
    }
    #[cfg(feature = "redis")]
    if let Some(fleet) = &config.redis {
        builder = builder.storage(fleet.queue()?);
    }
    builder
        .spawn(events(config.log.clone()))
        .map_err(|e| EnvError::new("WEBHOOK_ACK", e.to_string()))
}

/// Open connections the admin listener serves at once (a scraper and a
/// person or two); more wait in the listen backlog.
const ADMIN_MAX_CONNECTIONS: usize = 64;
/// How long admin requests may take once the admin listener stops.
const ADMIN_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The capacity of the `WEBHOOK_ACK=queue` queue: the SQLite or in-memory
/// default (the demo does not change it).
fn queue_capacity(config: &Config) -> usize {
    #[cfg(feature = "redis")]
    if config.redis.is_some() {
        return webhook_guard::queue::DEFAULT_CAPACITY;
    }
    if config.state.is_some() {
        webhook_guard::sqlite::DEFAULT_QUEUE_CAPACITY
    } else {
        webhook_guard::queue::DEFAULT_CAPACITY
    }
}

/// Every [`admin::SAMPLE_EVERY`]: the recorder's upkeep (histogram samples
/// drained into their buckets), the help texts and last-delivery gauges
/// again, the limiter's tracked clients and the queue's depth.
async fn sample(
    metrics: Arc<MetricsObserver>,
    handle: metrics_exporter_prometheus::PrometheusHandle,
    limiter: RateLimiter,
    queue: Option<AckQueue>,
    capacity: usize,
) {
    let mut tick = tokio::time::interval(admin::SAMPLE_EVERY);
    loop {
        tick.tick().await;
        metrics.publish();
        metrics.sample_rate_limiter(&limiter);
        if let Some(queue) = &queue {
            // An error leaves the depth as it was; the queue's own
            // `unavailable` events say that its storage fails.
            let _ = metrics.sample_queue(queue, capacity).await;
        }
        handle.run_upkeep();
    }
}

/// `receiver dead-letters` and `receiver requeue-dead-letters`.
async fn dead_letter_command(command: &str) -> Result<(), EnvError> {
    #[cfg(feature = "redis")]
    if let Some(fleet) = fleet::Fleet::from_env()? {
        fleet.check().await?;
        return print_dead_letters(command, fleet.queue()?, "WEBHOOK_REDIS_URL").await;
    }
    let Some(dir) = common::var("WEBHOOK_STATE_DIR")? else {
        return Err(EnvError::new(
            "WEBHOOK_STATE_DIR",
            "is not set; dead letters live in the state dir",
        ));
    };
    let path = PathBuf::from(dir.trim()).join(STATE_FILE);
    if !path.exists() {
        return Err(EnvError::new(
            "WEBHOOK_STATE_DIR",
            format!(
                "{} does not exist; no receiver has used this state dir",
                path.display()
            ),
        ));
    }
    // Beside a receiver that may be running on the same file.
    let state = SqliteState::builder(&path)
        .beside_owner()
        .open()
        .map_err(|e| EnvError::new("WEBHOOK_STATE_DIR", e.to_string()))?;
    print_dead_letters(command, state.queue(), "WEBHOOK_STATE_DIR").await
}

/// Lists or requeues the dead letters of `storage`.
async fn print_dead_letters(
    command: &str,
    storage: impl webhook_guard::queue::QueueStorage,
    var: &'static str,
) -> Result<(), EnvError> {
    let failed = |e: webhook_guard::dedupe::StoreError| EnvError::new(var, e.to_string());
    if command == "requeue-dead-letters" {
        let n = storage.requeue_dead(None).await.map_err(failed)?;
        println!("{{\"requeued\":{n}}}");
        return Ok(());
    }
    for letter in storage.dead_letters(usize::MAX).await.map_err(failed)? {
        let d = &letter.delivery;
        let line = serde_json::json!({
            "job": letter.id.0,
            "route": d.provider().name(),
            "uri": d.uri(),
            "id": d.delivery_id(),
            "type": d.event_type(),
            "body_sha256": hex::encode(sha2::Sha256::digest(d.body())),
            "attempts": letter.attempts,
            "last_error": letter.last_error,
            "received_at": d.received_at_unix(),
            "buried_at": letter.buried_at_unix,
        });
        println!("{line}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some(command @ ("dead-letters" | "requeue-dead-letters")) => {
            return match dead_letter_command(command).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Some(other) => {
            eprintln!("error: unknown command {other:?} (known: dead-letters, requeue-dead-letters)");
            return ExitCode::from(2);
        }
    }
    let config = match config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: WEBHOOK_ADDR: cannot listen on {}: {e}", config.addr);
            return ExitCode::from(2);
        }
    };
    let admin_listener = match admin::bind(config.admin).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // The recorder only when something serves it.
    let recorder = match &admin_listener {
        None => None,
        Some(_) => match admin::builder(config.tolerance, config.max_body)
            .map_err(|e| e.to_string())
            .and_then(admin::install)
        {
            Ok(handle) => Some(handle),
            Err(e) => {
                eprintln!(
                    "error: {}: cannot set up the metrics recorder: {e}",
                    admin::ADDR_VAR
                );
                return ExitCode::from(2);
            }
        },
    };
    #[cfg(feature = "redis")]
    if let Some(fleet) = &config.redis {
        if let Err(e) = fleet.check().await {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    let queue = match config.ack {
        Ack::Sync => None,
        Ack::Queue => match queue(&config) {
            Ok(q) => Some(q),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let shown = listener.local_addr().unwrap_or(config.addr);
    #[cfg(feature = "tls")]
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    #[cfg(not(feature = "tls"))]
    let scheme = "http";
    println!("webhook-guard demo receiver listening on {scheme}://{shown}");
    let routes: Vec<_> = config
        .verifiers
        .iter()
        .map(|(name, _)| format!("/webhooks/{name}"))
        .collect();
    println!(
        "routes: POST {}; GET /providers, /healthz, /readyz",
        routes.join(", ")
    );
    match admin_listener.as_ref().map(tokio::net::TcpListener::local_addr) {
        Some(Ok(at)) if config.inspector.is_some() => {
            println!("admin listener: http://{at} (GET /metrics, /healthz, /readyz; inspector: http://{at}/inspect)")
        }
        Some(Ok(at)) => println!("admin listener: http://{at} (GET /metrics, /healthz, /readyz)"),
        Some(Err(_)) => println!("admin listener: on"),
        None => println!("admin listener: off"),
    }
    println!(
        "dedupe store: {}; acknowledgement: {}; rate limit: {:?}",
        config.store,
        match (&queue, &config.state) {
            (None, _) => "sync (the handler runs before the answer)",
            (Some(_), Some(_)) => "queue (202, stored in SQLite before the answer)",
            (Some((q, _)), None) if q.is_durable() => "queue (202, stored in Redis before the answer)",
            (Some(_), None) => "queue (202, in memory: lost on a crash)",
        },
        config.limiter
    );
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))] // reassigned only with TLS
    let mut server = Server::new(listener)
        .header_read_timeout(config.header_timeout)
        .max_connections(config.max_connections)
        .shutdown_grace(config.grace);
    #[cfg(feature = "tls")]
    if let Some(tls) = config.tls.clone() {
        server = server.tls(tls);
    }
    let ready = server.readiness();
    // The admin listener: its own serving helper (header timeout, a small
    // connection cap), no rate limiter, the main listener's readiness; it
    // stops once the main listener has drained and the queue has stopped.
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut sampler = None;
    let mut admin_task = None;
    if let (Some(listener), Some(handle)) = (admin_listener, recorder) {
        // Routes built before the recorder was installed: set their
        // gauges (0) now, so the first scrape already has them.
        config.metrics.publish();
        config.metrics.sample_rate_limiter(&config.limiter);
        handle.run_upkeep();
        sampler = Some(tokio::spawn(sample(
            config.metrics.clone(),
            handle.clone(),
            config.limiter.clone(),
            queue.as_ref().map(|(q, _)| q.clone()),
            queue_capacity(&config),
        )));
        let admin_server = Server::new(listener)
            .header_read_timeout(config.header_timeout)
            .max_connections(ADMIN_MAX_CONNECTIONS)
            .shutdown_grace(ADMIN_SHUTDOWN_GRACE)
            .with_readiness(ready.clone())
            .with_graceful_shutdown(async move {
                let _ = admin_stopped.await;
            });
        let mut admin_router = admin::router(handle, health(&ready));
        if let Some(inspector) = &config.inspector {
            admin_router = admin_router.merge(inspector.router());
        }
        admin_task = Some(tokio::spawn(admin_server.serve_router(admin_router)));
    }
    let app = config
        .limiter
        .clone()
        .into_make_service(app(&config, queue.as_ref().map(|(q, _)| q), &ready));
    let served = server
        .with_graceful_shutdown(webhook_guard::serve::shutdown_signal())
        .serve(app)
        .await;
    // In-flight requests are done (or the grace ran out); stop the workers.
    // A durable queue keeps what they did not run for the next start.
    if let Some((_, handle)) = queue {
        handle.shutdown(config.grace).await;
    }
    // Then the admin listener (it answered /readyz 503 since the signal).
    drop(admin_stop);
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    // Let claims settled in the background (by requests cut off at the
    // deadline) reach the store.
    tokio::time::sleep(Duration::from_millis(100)).await;
    match served {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
