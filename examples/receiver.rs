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

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::process::ExitCode;
use std::time::Duration;

use axum::routing::{get, post_service};
use axum::Router;
use serde_json::Value;
use webhook_guard::dedupe::{Dedupe, DedupeStore, MemoryStore};
use webhook_guard::dispatch::{Event, EventRouter, HandlerError};
use webhook_guard::handshake::Handshake;
use webhook_guard::schema::Schemas;
use webhook_guard::{Networks, ProxyHeader, RateLimiter, Verifier};

mod common;
use common::{EnvError, ROUTES};

/// The demo handler fails on purpose for this event type, to show that a
/// failed delivery is answered 500 (and so retried by the provider).
const FAILING_EVENT: &str = "test.handler_error";
/// The demo handler takes two seconds for this event type, so a concurrent
/// identical delivery can be seen getting 409 (in progress).
const SLOW_EVENT: &str = "test.slow_handler";

struct Config {
    addr: SocketAddr,
    verifiers: Vec<(&'static str, Verifier)>,
    limiter: RateLimiter,
    store: &'static str,
}

fn number(var: &'static str, default: u64, what: &str) -> Result<u64, EnvError> {
    match common::var(var)? {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(EnvError::new(
                var,
                format!("{raw:?} is not {what} greater than 0"),
            )),
        },
    }
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
    let trusted = match common::var("WEBHOOK_TRUSTED_PROXIES")? {
        Some(list) => {
            Networks::parse(&list).map_err(|e| EnvError::new("WEBHOOK_TRUSTED_PROXIES", e.to_string()))?
        }
        None => Networks::none(),
    };
    let limiter = RateLimiter::builder()
        .per_second(per_second)
        .burst(burst)
        .trusted_proxies(trusted)
        // The demo believes whichever forwarding header its proxy sends;
        // pin one with `ProxyHeader::XForwardedFor` or `Forwarded` in
        // production, matching what your proxy writes.
        .proxy_header(ProxyHeader::XForwardedForThenForwarded)
        .build();
    let (store, store_name) = store()?;
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
    })
}

/// A per-second rate or a burst: a whole number greater than 0.
fn rate(var: &'static str, default: u32) -> Result<NonZeroU32, EnvError> {
    let n = number(var, u64::from(default), "a whole number")?;
    u32::try_from(n)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| EnvError::new(var, "is too large"))
}

/// The dedupe store: Redis when `WEBHOOK_REDIS_URL` is set (feature
/// `redis`), else in memory. One store serves every route; keys are
/// namespaced by route.
fn store() -> Result<(std::sync::Arc<dyn DedupeStore>, &'static str), EnvError> {
    match common::var("WEBHOOK_REDIS_URL")? {
        None => Ok((std::sync::Arc::new(MemoryStore::new()), "in-memory")),
        #[cfg(feature = "redis")]
        Some(url) => {
            let store = webhook_guard::dedupe::RedisStore::builder(url.trim())
                .build()
                .map_err(|e| EnvError::new("WEBHOOK_REDIS_URL", e.to_string()))?;
            Ok((std::sync::Arc::new(store), "redis"))
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

/// The application: one verified route per provider, plus `/healthz`.
fn app(config: &Config) -> Router {
    let events = EventRouter::new().on_any(handle);
    let mut router = Router::new().route("/healthz", get(|| async { "ok" }));
    for (name, verifier) in &config.verifiers {
        router = router.route(
            &format!("/webhooks/{name}"),
            post_service(events.clone()).layer(verifier.layer()),
        );
    }
    router
}

/// The demo's business logic: accept every verified event, except the
/// deliberately failing one (and take its time over the slow one). The
/// layer has already verified, validated and deduplicated it; the router
/// answers `processed`, or 500 when this fails.
async fn handle(event: Event<Value>) -> Result<(), HandlerError> {
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

#[tokio::main]
async fn main() -> ExitCode {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
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
    let shown = listener.local_addr().unwrap_or(config.addr);
    println!("webhook-guard demo receiver listening on http://{shown}");
    let routes: Vec<_> = config
        .verifiers
        .iter()
        .map(|(name, _)| format!("/webhooks/{name}"))
        .collect();
    println!("routes: POST {}; GET /healthz", routes.join(", "));
    println!("dedupe store: {}; rate limit: {:?}", config.store, config.limiter);
    let app = config.limiter.clone().into_make_service(app(&config));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        eprintln!("error: server failed: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
