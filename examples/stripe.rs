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

use axum::{routing::post_service, Router};
use serde::Deserialize;
use webhook_guard::dedupe::{Dedupe, MemoryStore};
use webhook_guard::dispatch::{Event, EventRouter, HandlerError};
use webhook_guard::schema::Schemas;
use webhook_guard::serve::{shutdown_signal, Server};
use webhook_guard::{RateLimiter, Scheme, Verifier};

/// The part of a Stripe event this app reads; serde ignores the rest.
#[derive(Debug, Deserialize)]
struct StripeEvent<T> {
    id: String,
    data: EventData<T>,
}

#[derive(Debug, Deserialize)]
struct EventData<T> {
    object: T,
}

/// A PaymentIntent, as far as this app cares.
#[derive(Debug, Deserialize)]
struct PaymentIntent {
    id: String,
    amount: i64,
    currency: String,
}

/// Runs once per event: Stripe's retries of the same event id are answered
/// `duplicate` by the dedupe step and never reach this function.
async fn payment_succeeded(event: Event<StripeEvent<PaymentIntent>>) -> Result<(), HandlerError> {
    let intent = &event.data().data.object;
    tracing::info!(
        event = %event.data().id,
        intent = %intent.id,
        "payment of {} {} succeeded",
        intent.amount,
        intent.currency
    );
    Ok(())
}

async fn checkout_completed(event: Event<StripeEvent<serde_json::Value>>) -> Result<(), HandlerError> {
    tracing::info!(event = %event.data().id, "checkout completed: fulfil the order");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let Ok(secrets) = std::env::var("STRIPE_WEBHOOK_SECRET") else {
        fail("STRIPE_WEBHOOK_SECRET is not set (the endpoint's whsec_... signing secret)")
    };
    // Every event must look like a Stripe event before any handler sees it.
    let schema = serde_json::from_str(include_str!("schemas/stripe.json"))?;
    let verifier = Verifier::builder(Scheme::stripe())
        .secrets(secrets.split(','))
        .schemas(Schemas::builder().default_schema(schema).build()?)
        .dedupe(Dedupe::builder(MemoryStore::new(), "stripe").build()?)
        .build();
    let verifier = match verifier {
        Ok(verifier) => verifier,
        Err(e) => fail(&format!("STRIPE_WEBHOOK_SECRET: {e}")),
    };
    // Typed handlers by event type; other events are answered 200 "ignored"
    // (Stripe keeps retrying anything that is not 2xx).
    let events = EventRouter::new()
        .on("payment_intent.succeeded", payment_succeeded)
        .on("checkout.session.completed", checkout_completed);
    let app = Router::new().route("/webhook", post_service(events).layer(verifier.layer()));
    let addr = std::env::var("WEBHOOK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    // Header and idle timeouts, a connection cap, graceful shutdown on
    // SIGTERM or Ctrl-C: see `webhook_guard::serve`.
    let server = Server::bind(&addr)
        .await?
        .with_graceful_shutdown(shutdown_signal());
    tracing::info!("listening on http://{addr}/webhook");
    // Per-client rate limiting before any body is read.
    let limiter = RateLimiter::builder().build();
    server.serve(limiter.into_make_service(app)).await?;
    Ok(())
}

/// Prints one line to stderr and exits with status 1.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
