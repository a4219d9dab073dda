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
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use webhook_guard::{Provider, VerifiedWebhook, Verifier};

mod common;
use common::{EnvError, ROUTES};

/// The demo handler fails on purpose for this event type, to show that a
/// failed delivery is answered 500 (and so retried by the provider).
const FAILING_EVENT: &str = "test.handler_error";

struct Config {
    addr: SocketAddr,
    verifiers: Vec<(&'static str, Verifier)>,
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
    if common::var("WEBHOOK_REDIS_URL")?.is_some() {
        return Err(EnvError::new(
            "WEBHOOK_REDIS_URL",
            "is set, but this receiver was built without the `redis` feature",
        ));
    }
    let mut verifiers = Vec::new();
    for route in &ROUTES {
        let (secrets, is_default) = common::secrets(route)?;
        if is_default {
            eprintln!(
                "warning: {} is not set; using the public development secret {:?}. Never use it for real traffic.",
                route.env, route.dev_secret
            );
        }
        let verifier = Verifier::builder((route.scheme)())
            .secrets(secrets)
            .tolerance(Duration::from_secs(tolerance))
            .max_body_bytes(max_body)
            .build()
            .map_err(|e| EnvError::new(route.env, e.to_string()))?;
        verifiers.push((route.name, verifier));
    }
    Ok(Config { addr, verifiers })
}

/// The application: one verified route per provider, plus `/healthz`.
fn app(config: &Config) -> Router {
    let mut router = Router::new().route("/healthz", get(|| async { "ok" }));
    for (name, verifier) in &config.verifiers {
        router = router.route(&format!("/webhooks/{name}"), post(handle).layer(verifier.layer()));
    }
    router
}

/// The demo's business logic: accept every verified event, except the
/// deliberately failing one.
async fn handle(hook: VerifiedWebhook) -> Response {
    if *hook.provider() == Provider::Slack && hook.is_form_encoded() {
        return processed(&hook);
    }
    let body: Value = match hook.json() {
        Ok(body) => body,
        Err(rejection) => {
            tracing::warn!(provider = %hook.provider(), reason = rejection.reason(), "verified body refused");
            return rejection.into_response();
        }
    };
    if *hook.provider() == Provider::Slack && body.get("type") == Some(&json!("url_verification")) {
        return Json(json!({ "challenge": body.get("challenge") })).into_response();
    }
    if hook.event_type() == Some(FAILING_EVENT) {
        tracing::error!(provider = %hook.provider(), id = hook.delivery_id(), "demo handler failed");
        return handler_failed();
    }
    processed(&hook)
}

fn processed(hook: &VerifiedWebhook) -> Response {
    tracing::info!(provider = %hook.provider(), id = hook.delivery_id(), kind = hook.event_type(), "processed");
    Json(json!({ "status": "processed", "id": hook.delivery_id(), "type": hook.event_type() }))
        .into_response()
}

fn handler_failed() -> Response {
    let doc = json!({
        "type": "tag:webhook-guard,2026:reason/handler_error",
        "title": "Handler failed",
        "status": 500,
        "detail": "the handler failed to process this event; the provider should retry it",
        "reason": "handler_error",
    });
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
        doc.to_string(),
    )
        .into_response()
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
    let app = app(&config).into_make_service_with_connect_info::<SocketAddr>();
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        eprintln!("error: server failed: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
