//! Any other HMAC-SHA256 sender, described with `CustomScheme`: here Meta
//! (Facebook, Instagram, Messenger, WhatsApp Cloud API), which signs the raw
//! body with the app secret in `X-Hub-Signature-256: sha256=<hex>`.
//!
//! Run, with the App Secret (App settings → Basic) and a verify token you
//! choose and also type in the dashboard's webhook settings:
//!
//! ```sh
//! META_APP_SECRET='…' META_VERIFY_TOKEN='pick-one' cargo run --example custom_hmac
//! ```
//!
//! Meta needs a public HTTPS URL: put a tunnel in front (`ngrok http 3000`),
//! set `https://<tunnel>/webhook` as the callback URL (Meta checks it with the
//! unsigned GET handshake below), then press "Test" next to a field.
//!
//! X (Twitter) is the same scheme with base64: build it with
//! `CustomScheme::builder("x", HeaderName::from_static("x-twitter-webhooks-signature"))`,
//! `.prefix("sha256=")` and `.encoding(SignatureEncoding::Base64)`, keyed
//! with the consumer secret (its GET `crc_token` check is yours to answer).

use axum::handler::Handler as _;
use axum::{extract::Query, http::HeaderName, http::StatusCode, routing::get, Router};
use serde::Deserialize;
use webhook_guard::serve::{shutdown_signal, Server};
use webhook_guard::{CustomScheme, Rejection, Scheme, SignatureEncoding, VerifiedWebhook, Verifier};

async fn webhook(hook: VerifiedWebhook) -> Result<StatusCode, Rejection> {
    let payload: serde_json::Value = hook.json()?;
    // "page", "instagram", "whatsapp_business_account", …
    tracing::info!(object = %payload["object"], "verified {} bytes", hook.body().len());
    Ok(StatusCode::OK)
}

/// GET `?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`: echo the challenge.
#[derive(Deserialize)]
struct Handshake {
    #[serde(rename = "hub.verify_token")]
    token: String,
    #[serde(rename = "hub.challenge")]
    challenge: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let (Ok(secret), Ok(verify_token)) = (
        std::env::var("META_APP_SECRET"),
        std::env::var("META_VERIFY_TOKEN"),
    ) else {
        fail("META_APP_SECRET and META_VERIFY_TOKEN must both be set")
    };
    let meta = CustomScheme::builder("meta", HeaderName::from_static("x-hub-signature-256"))
        .prefix("sha256=")
        .encoding(SignatureEncoding::Hex)
        .build()?; // fails only if the description above is inconsistent
    let verifier = match Verifier::builder(Scheme::custom(meta)).secret(secret).build() {
        Ok(verifier) => verifier,
        Err(e) => fail(&format!("META_APP_SECRET: {e}")),
    };
    let handshake = move |Query(q): Query<Handshake>| async move {
        if q.token == verify_token {
            Ok(q.challenge)
        } else {
            Err(StatusCode::FORBIDDEN)
        }
    };
    // Only the POST is verified; the GET handshake is not signed.
    let route = get(handshake).post(webhook.layer(verifier.layer()));
    let app = Router::new().route("/webhook", route);
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
