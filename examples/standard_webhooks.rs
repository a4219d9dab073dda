//! Standard Webhooks (and Svix) on one axum route.
//!
//! Any sender following <https://www.standardwebhooks.com> works. Svix and
//! the services built on it (Clerk, Resend, …) send the same headers named
//! `svix-id`, `svix-timestamp` and `svix-signature`, which are accepted too.
//! The secret is the endpoint's `whsec_…` signing secret (give several,
//! comma-separated, while you roll it).
//!
//! ```sh
//! STANDARD_WEBHOOK_SECRET='whsec_…' cargo run --example standard_webhooks
//! ```
//!
//! To receive real deliveries locally, relay them with the Svix CLI, then
//! point the sender's endpoint (or the Svix dashboard's "Testing" tab) at the
//! printed `https://play.svix.com/in/…` URL:
//!
//! ```sh
//! svix listen http://localhost:3000/webhook
//! ```

use axum::{http::StatusCode, routing::post, Router};
use webhook_guard::serve::{shutdown_signal, Server};
use webhook_guard::{Rejection, Scheme, VerifiedWebhook, Verifier};

async fn webhook(hook: VerifiedWebhook) -> Result<StatusCode, Rejection> {
    let payload: serde_json::Value = hook.json()?;
    // `webhook-id` is signed and stays the same across retries: deduplicate on it.
    let id = hook.delivery_id().unwrap_or_default();
    let kind = hook.event_type().unwrap_or("unknown"); // the body's `type`
    tracing::info!(id, sent_at = ?hook.timestamp(), "verified {kind}");
    match kind {
        "user.created" => tracing::info!(user = %payload["data"]["id"], "new user"),
        "invoice.paid" => tracing::info!("invoice paid"),
        _ => {}
    }
    Ok(StatusCode::OK)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let Ok(secrets) = std::env::var("STANDARD_WEBHOOK_SECRET") else {
        fail("STANDARD_WEBHOOK_SECRET is not set (the endpoint's whsec_... signing secret)")
    };
    let verifier = Verifier::builder(Scheme::standard_webhooks()).secrets(secrets.split(','));
    let verifier = match verifier.build() {
        Ok(verifier) => verifier,
        Err(e) => fail(&format!("STANDARD_WEBHOOK_SECRET: {e}")),
    };
    let app = Router::new().route("/webhook", post(webhook).layer(verifier.layer()));
    let addr = std::env::var("WEBHOOK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    // Header and idle timeouts, a connection cap, graceful shutdown on
    // SIGTERM or Ctrl-C: see `webhook_guard::serve`.
    let server = Server::bind(&addr)
        .await?
        .with_graceful_shutdown(shutdown_signal());
    tracing::info!("listening on http://{addr}/webhook");
    server.serve_router(app).await?;
    Ok(())
}

/// Prints one line to stderr and exits with status 1.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
