//! Shopify webhooks on one axum route.
//!
//! Run, with your app's client secret (Partner Dashboard or Dev Dashboard →
//! your app → Settings → Client secret; `shpss_…` for public apps):
//!
//! ```sh
//! SHOPIFY_WEBHOOK_SECRET='…' cargo run --example shopify
//! ```
//!
//! Send it a signed sample delivery with the Shopify CLI:
//!
//! ```sh
//! shopify app webhook trigger --topic=orders/create --api-version=2025-07 \
//!     --delivery-method=http --address=http://localhost:3000/webhook \
//!     --client-secret="$SHOPIFY_WEBHOOK_SECRET"
//! ```

use axum::{http::StatusCode, routing::post, Router};
use serde::Deserialize;
use webhook_guard::serve::{shutdown_signal, Server};
use webhook_guard::{Rejection, Scheme, VerifiedWebhook, Verifier};

/// The part of an order payload this app reads.
#[derive(Debug, Deserialize)]
struct Order {
    id: u64,
    total_price: Option<String>,
}

async fn webhook(hook: VerifiedWebhook) -> Result<StatusCode, Rejection> {
    let topic = hook.event_type().unwrap_or("unknown"); // X-Shopify-Topic
                                                        // X-Shopify-Webhook-Id is NOT signed (only the body is): log it, but
                                                        // deduplicate on the payload's own ids or a hash of the body.
    tracing::info!(webhook_id = hook.delivery_id(), "verified {topic}");
    match topic {
        "orders/create" | "orders/paid" => {
            let order: Order = hook.json()?;
            tracing::info!(order = order.id, total = order.total_price.as_deref(), "{topic}");
        }
        "app/uninstalled" => tracing::info!("shop uninstalled the app"),
        _ => {}
    }
    // Answer within five seconds; queue slow work.
    Ok(StatusCode::OK)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let Ok(secret) = std::env::var("SHOPIFY_WEBHOOK_SECRET") else {
        fail("SHOPIFY_WEBHOOK_SECRET is not set (your app's client secret)")
    };
    let verifier = match Verifier::builder(Scheme::shopify()).secret(secret).build() {
        Ok(verifier) => verifier,
        Err(e) => fail(&format!("SHOPIFY_WEBHOOK_SECRET: {e}")),
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
