//! The development inspector beside two verified routes (feature
//! `inspect`): every delivery the routes get shows up, masked, on a page
//! served on a separate loopback port.
//!
//! ```sh
//! cargo run --example inspect --features inspect
//! # open http://127.0.0.1:9465/inspect, then send deliveries:
//! cargo run --example send -- stripe                                   # processed
//! cargo run --example send -- stripe --tamper                          # signature_mismatch
//! ```
//!
//! Variables: `WEBHOOK_ADDR` (default `127.0.0.1:3000`, routes
//! `POST /webhooks/stripe` and `POST /webhooks/github`),
//! `WEBHOOK_INSPECT_ADDR` (default `127.0.0.1:9465`; must be a loopback
//! address), `WEBHOOK_INSPECT_KEEP` (entries kept, default 200),
//! `WEBHOOK_INSPECT_BODIES=1` (development switch: keep and show bodies),
//! `STRIPE_WEBHOOK_SECRET` and `GITHUB_WEBHOOK_SECRET` (development
//! defaults when unset).

use std::net::SocketAddr;

use axum::routing::post;
use axum::Router;
use webhook_guard::dedupe::{Dedupe, MemoryStore};
use webhook_guard::inspect::Inspector;
use webhook_guard::serve::{shutdown_signal, Server};
use webhook_guard::{Scheme, Secret, Verifier};

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = var("WEBHOOK_ADDR", "127.0.0.1:3000");
    let inspect_addr: SocketAddr = var("WEBHOOK_INSPECT_ADDR", "127.0.0.1:9465").parse()?;
    if !inspect_addr.ip().is_loopback() {
        eprintln!(
            "error: WEBHOOK_INSPECT_ADDR must be a loopback address (the inspector is for development)"
        );
        std::process::exit(1);
    }
    let keep: usize = var("WEBHOOK_INSPECT_KEEP", "200").parse()?;
    let inspector = Inspector::builder()
        .keep(keep)
        .keep_bodies(var("WEBHOOK_INSPECT_BODIES", "0") == "1")
        .build();

    let stripe = Verifier::builder(Scheme::stripe())
        .name("stripe")
        .secret(Secret::labeled(
            "dev",
            var("STRIPE_WEBHOOK_SECRET", "whsec_inspect_demo_secret"),
        ))
        .dedupe(Dedupe::builder(MemoryStore::new(), "stripe").build()?)
        .observer(inspector.observer())
        .build()?;
    let github = Verifier::builder(Scheme::github())
        .name("github")
        .secret(Secret::labeled(
            "dev",
            var("GITHUB_WEBHOOK_SECRET", "github_inspect_demo_secret"),
        ))
        .observer(inspector.observer())
        .build()?;
    let app = Router::new()
        .route("/webhooks/stripe", post(|| async { "ok" }).layer(stripe.layer()))
        .route("/webhooks/github", post(|| async { "ok" }).layer(github.layer()));

    let webhooks = Server::bind(&addr)
        .await?
        .with_graceful_shutdown(shutdown_signal());
    let admin = Server::bind(inspect_addr)
        .await?
        .with_graceful_shutdown(shutdown_signal());
    println!("webhooks on http://{}", webhooks.local_addr()?);
    println!("inspector on http://{}/inspect", admin.local_addr()?);
    let (a, b) = tokio::join!(webhooks.serve_router(app), admin.serve_router(inspector.router()));
    a?;
    b?;
    Ok(())
}
