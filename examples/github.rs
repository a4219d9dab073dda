//! GitHub webhooks on one axum route.
//!
//! Run, with the secret you typed in the webhook's settings
//! (Settings → Webhooks → Add webhook, content type `application/json`):
//!
//! ```sh
//! GITHUB_WEBHOOK_SECRET='…' cargo run --example github
//! ```
//!
//! Send it real, signed deliveries without a public URL, with the `gh`
//! webhook extension (`gh extension install cli/gh-webhook`):
//!
//! ```sh
//! gh webhook forward --repo=OWNER/REPO --events=issues,push \
//!     --url=http://localhost:3000/webhook --secret="$GITHUB_WEBHOOK_SECRET"
//! ```
//!
//! then open an issue, or use "Redeliver" under the webhook's Recent Deliveries.

use axum::{http::StatusCode, routing::post, Router};
use serde::Deserialize;
use webhook_guard::{Rejection, Scheme, VerifiedWebhook, Verifier};

/// Fields most GitHub payloads share; `push` has no `action`.
#[derive(Debug, Deserialize)]
struct Payload {
    action: Option<String>,
    repository: Option<Repository>,
}

#[derive(Debug, Deserialize)]
struct Repository {
    full_name: String,
}

async fn webhook(hook: VerifiedWebhook) -> Result<StatusCode, Rejection> {
    let payload: Payload = hook.json()?;
    let event = hook.event_type().unwrap_or("unknown"); // X-GitHub-Event
    let action = payload.action.as_deref().unwrap_or("-");
    let repo = payload.repository.map(|r| r.full_name).unwrap_or_default();
    // X-GitHub-Delivery is not signed: log it, do not deduplicate on it.
    tracing::info!(delivery = hook.delivery_id(), %repo, "verified {event} ({action})");
    match (event, action) {
        ("ping", _) => tracing::info!("webhook configured"),
        ("issues", "opened") => tracing::info!("new issue in {repo}"),
        ("push", _) => tracing::info!("push to {repo}"),
        _ => {}
    }
    Ok(StatusCode::OK)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let Ok(secret) = std::env::var("GITHUB_WEBHOOK_SECRET") else {
        fail("GITHUB_WEBHOOK_SECRET is not set (the secret from the webhook's settings)")
    };
    let verifier = match Verifier::builder(Scheme::github()).secret(secret).build() {
        Ok(verifier) => verifier,
        Err(e) => fail(&format!("GITHUB_WEBHOOK_SECRET: {e}")),
    };
    let app = Router::new().route("/webhook", post(webhook).layer(verifier.layer()));
    let addr = std::env::var("WEBHOOK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!("listening on http://{addr}/webhook");
    axum::serve(listener, app).await?;
    Ok(())
}

/// Prints one line to stderr and exits with status 1.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
