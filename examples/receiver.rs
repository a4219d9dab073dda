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
use webhook_guard::queue::{AckQueue, AckQueueHandle, Delivery};
use webhook_guard::schema::Schemas;
use webhook_guard::serve::{Readiness, Server};
use webhook_guard::sqlite::SqliteState;
use webhook_guard::{BodyBudget, Networks, ProxyHeader, RateLimiter, Verifier};

mod common;
use common::{EnvError, ROUTES};

/// The demo handler fails on purpose for this event type, to show that a
/// failed delivery is answered 500 (and so retried by the provider).
const FAILING_EVENT: &str = "test.handler_error";
/// The demo handler takes two seconds for this event type, so a concurrent
/// identical delivery can be seen getting 409 (in progress).
const SLOW_EVENT: &str = "test.slow_handler";

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
    verifiers: Vec<(&'static str, Verifier)>,
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
        .build();
    let state = state()?;
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
    let mut verifiers = Vec::new();
    for route in &ROUTES {
        let (secrets, is_default) = common::secrets(route)?;
        if is_default {
            eprintln!(
                "warning: {} is not set; using the public development secret {:?}. Never use it for real traffic.",
                route.env, route.dev_secret
            );
        }
        let mut builder = Verifier::builder((route.scheme)())
            .secrets(secrets)
            .tolerance(Duration::from_secs(tolerance))
            .max_body_bytes(max_body)
            .body_deadline(body_timeout)
            .body_idle_timeout(body_timeout)
            .body_budget(budget.clone())
            .schemas(schemas(route.name).map_err(|e| EnvError::new(route.env, e))?)
            .dedupe(
                Dedupe::builder(store.clone(), route.name)
                    .build()
                    .map_err(|e| EnvError::new("WEBHOOK_REDIS_URL", e.to_string()))?,
            );
        match route.name {
            "meta" => builder = builder.handshake(Handshake::meta(meta_token.as_str())),
            "x" => builder = builder.handshake(Handshake::x_crc()),
            _ => {}
        }
        let verifier = builder.build().map_err(|e| {
            let var = match e {
                webhook_guard::ConfigError::InvalidHandshake { .. } => token_var,
                _ => route.env,
            };
            EnvError::new(var, e.to_string())
        })?;
        verifiers.push((route.name, verifier));
    }
    Ok(Config {
        addr,
        verifiers,
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
    })
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
            "and WEBHOOK_REDIS_URL are both set; a receiver keeps its state in one place (unset one)",
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

/// The JSON Schema of a route, from `examples/schemas/<route>.json`.
fn schemas(route: &str) -> Result<Schemas, String> {
    let text = match route {
        "stripe" => include_str!("schemas/stripe.json"),
        "standard" => include_str!("schemas/standard.json"),
        "github" => include_str!("schemas/github.json"),
        "slack" => include_str!("schemas/slack.json"),
        "shopify" => include_str!("schemas/shopify.json"),
        "meta" => include_str!("schemas/meta.json"),
        _ => include_str!("schemas/x.json"),
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

/// The application: one verified route per provider (answered by the
/// handler, or by the queue in `WEBHOOK_ACK=queue`), plus `/healthz` and
/// `/readyz`.
fn app(config: &Config, queue: Option<&AckQueue>, ready: &Readiness) -> Router {
    let events = events(config.log.clone());
    let ready = ready.clone();
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(move || std::future::ready(ready.response())));
    for (name, verifier) in &config.verifiers {
        let path = format!("/webhooks/{name}");
        router = match queue {
            Some(queue) => router.route(&path, post_service(queue.clone()).layer(verifier.layer())),
            None => router.route(&path, post_service(events.clone()).layer(verifier.layer())),
        };
    }
    router
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
    builder
        .spawn(events(config.log.clone()))
        .map_err(|e| EnvError::new("WEBHOOK_ACK", e.to_string()))
}

/// `receiver dead-letters` and `receiver requeue-dead-letters`.
async fn dead_letter_command(command: &str) -> Result<(), EnvError> {
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
    let storage = state.queue();
    let failed = |e: webhook_guard::dedupe::StoreError| EnvError::new("WEBHOOK_STATE_DIR", e.to_string());
    use webhook_guard::queue::QueueStorage as _;
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
    println!("routes: POST {}; GET /healthz, /readyz", routes.join(", "));
    println!(
        "dedupe store: {}; acknowledgement: {}; rate limit: {:?}",
        config.store,
        match (&queue, &config.state) {
            (None, _) => "sync (the handler runs before the answer)",
            (Some(_), Some(_)) => "queue (202, stored in SQLite before the answer)",
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
