//! Stripe webhooks on one axum route.
//!
//! Run (the secret is the endpoint's `whsec_…`; give several, comma-separated,
//! while you roll it):
//!
//! ```sh
//! export STRIPE_WEBHOOK_SECRET="$(stripe listen --print-secret)"
//! cargo run --example stripe
//! ```
//!
//! Send it signed events with the Stripe CLI, in two more terminals:
//!
//! ```sh
//! stripe listen --forward-to localhost:3000/webhook
//! stripe trigger payment_intent.succeeded
//! ```

use axum::{http::StatusCode, routing::post, Router};
use serde::Deserialize;
use webhook_guard::{Rejection, Scheme, VerifiedWebhook, Verifier};

/// The part of a Stripe event this app reads; serde ignores the rest.
#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: serde_json::Value,
}

async fn webhook(hook: VerifiedWebhook) -> Result<StatusCode, Rejection> {
    let event: Event = hook.json()?;
    // Stripe retries, so the same event id can arrive twice: deduplicate on it.
    tracing::info!(id = %event.id, secret = hook.secret_index(), "verified {}", event.kind);
    match event.kind.as_str() {
        "payment_intent.succeeded" => {
            let amount = event.data.object["amount"].as_i64().unwrap_or_default();
            tracing::info!(amount, "payment succeeded");
        }
        "checkout.session.completed" => tracing::info!("checkout completed: fulfil the order"),
        // Answer 2xx to events you do not handle, or Stripe keeps retrying.
        other => tracing::debug!("ignoring {other}"),
    }
    Ok(StatusCode::OK)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let Ok(secrets) = std::env::var("STRIPE_WEBHOOK_SECRET") else {
        fail("STRIPE_WEBHOOK_SECRET is not set (the endpoint's whsec_... signing secret)")
    };
    let verifier = match Verifier::builder(Scheme::stripe())
        .secrets(secrets.split(','))
        .build()
    {
        Ok(verifier) => verifier,
        Err(e) => fail(&format!("STRIPE_WEBHOOK_SECRET: {e}")),
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
