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

use axum::{routing::post_service, Router};
use serde::Deserialize;
use webhook_guard::dedupe::{Dedupe, MemoryStore};
use webhook_guard::dispatch::{Event, EventRouter, HandlerError};
use webhook_guard::serve::{shutdown_signal, Server};
use webhook_guard::{RateLimiter, Scheme, Verifier};

#[derive(Debug, Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Debug, Deserialize)]
struct Issue {
    number: u64,
    title: String,
}

/// The `issues` payload, as far as this app cares.
#[derive(Debug, Deserialize)]
struct IssuesEvent {
    issue: Issue,
    repository: Repository,
}

/// The `push` payload, as far as this app cares.
#[derive(Debug, Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    git_ref: String,
    repository: Repository,
}

/// `issues` with `"action": "opened"`: matched before plain `issues`.
async fn issue_opened(event: Event<IssuesEvent>) -> Result<(), HandlerError> {
    let e = event.data();
    tracing::info!(
        delivery = event.delivery_id(), // X-GitHub-Delivery: informational, not signed
        "new issue #{} in {}: {}",
        e.issue.number,
        e.repository.full_name,
        e.issue.title
    );
    Ok(())
}

/// Every other `issues` action (closed, labeled, …).
async fn issue_changed(event: Event<IssuesEvent>) -> Result<(), HandlerError> {
    tracing::info!(
        "issue #{} {}",
        event.data().issue.number,
        event.action().unwrap_or("changed")
    );
    Ok(())
}

async fn push(event: Event<PushEvent>) -> Result<(), HandlerError> {
    let e = event.data();
    tracing::info!("push to {} in {}", e.git_ref, e.repository.full_name);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let Ok(secret) = std::env::var("GITHUB_WEBHOOK_SECRET") else {
        fail("GITHUB_WEBHOOK_SECRET is not set (the secret from the webhook's settings)")
    };
    // GitHub signs no timestamp and not its delivery id: deduplicate on the
    // body, so "Redeliver" (or a captured replay) is answered `duplicate`.
    let verifier = match Verifier::builder(Scheme::github())
        .secret(secret)
        .dedupe(Dedupe::builder(MemoryStore::new(), "github").build()?)
        .build()
    {
        Ok(verifier) => verifier,
        Err(e) => fail(&format!("GITHUB_WEBHOOK_SECRET: {e}")),
    };
    let events = EventRouter::new()
        .on("issues.opened", issue_opened)
        .on("issues", issue_changed)
        .on("push", push)
        .on("ping", |_: Event<serde_json::Value>| async {
            tracing::info!("webhook configured");
            Ok::<(), HandlerError>(())
        });
    let app = Router::new().route("/webhook", post_service(events).layer(verifier.layer()));
    let addr = std::env::var("WEBHOOK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    // Header and idle timeouts, a connection cap, graceful shutdown on
    // SIGTERM or Ctrl-C: see `webhook_guard::serve`.
    let server = Server::bind(&addr)
        .await?
        .with_graceful_shutdown(shutdown_signal());
    tracing::info!("listening on http://{addr}/webhook");
    server
        .serve(RateLimiter::builder().build().into_make_service(app))
        .await?;
    Ok(())
}

/// Prints one line to stderr and exits with status 1.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
