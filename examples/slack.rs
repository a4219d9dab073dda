//! Slack Events API and slash commands on one axum route.
//!
//! Run, with the Signing Secret from your app's Basic Information page
//! (<https://api.slack.com/apps>):
//!
//! ```sh
//! SLACK_SIGNING_SECRET='…' cargo run --example slack
//! ```
//!
//! Slack needs a public HTTPS URL, so put a tunnel in front (for example
//! `cloudflared tunnel --url http://localhost:3000` or `ngrok http 3000`) and
//! paste `https://<tunnel>/slack` as the Request URL under Event
//! Subscriptions (Slack sends a signed `url_verification` challenge at once)
//! and under Slash Commands; then type the command in Slack. Answer within
//! three seconds; do slow work in the background.
//!
//! Form bodies are parsed with `form_urlencoded` (add `form_urlencoded = "1"`).

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::{routing::post, Router};
use serde_json::{json, Value};
use webhook_guard::serve::{shutdown_signal, Server};
use webhook_guard::{Rejection, Scheme, VerifiedWebhook, Verifier};

async fn slack(hook: VerifiedWebhook) -> Result<Response, Rejection> {
    if hook.is_form_encoded() {
        // event_type() is the slash command ("/weather"), or "interactive"
        // for button clicks; acknowledge anything else with an empty 200.
        let Some(command) = hook.event_type().filter(|c| c.starts_with('/')) else {
            return Ok(().into_response());
        };
        let text = form_urlencoded::parse(hook.body())
            .find(|(key, _)| key == "text")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        tracing::info!("verified {command} {text:?}");
        return Ok(reply(
            json!({ "response_type": "ephemeral", "text": format!("You said {text:?}") }),
        ));
    }
    let payload: Value = hook.json()?;
    match hook.event_type() {
        Some("url_verification") => Ok(reply(json!({ "challenge": payload["challenge"] }))),
        Some("event_callback") => {
            // event_id is Slack's delivery id: deduplicate retries on it.
            let event = payload["event"]["type"].as_str().unwrap_or_default();
            tracing::info!(id = hook.delivery_id(), "verified event {event}");
            Ok(().into_response())
        }
        other => {
            tracing::info!("ignoring {other:?}");
            Ok(().into_response())
        }
    }
}

/// A JSON response (or use axum's `Json`, behind its `json` feature).
fn reply(body: Value) -> Response {
    ([(CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let Ok(secret) = std::env::var("SLACK_SIGNING_SECRET") else {
        fail("SLACK_SIGNING_SECRET is not set (Basic Information → App Credentials → Signing Secret)")
    };
    let verifier = match Verifier::builder(Scheme::slack()).secret(secret).build() {
        Ok(verifier) => verifier,
        Err(e) => fail(&format!("SLACK_SIGNING_SECRET: {e}")),
    };
    let app = Router::new().route("/slack", post(slack).layer(verifier.layer()));
    let addr = std::env::var("WEBHOOK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    // Header and idle timeouts, a connection cap, graceful shutdown on
    // SIGTERM or Ctrl-C: see `webhook_guard::serve`.
    let server = Server::bind(&addr)
        .await?
        .with_graceful_shutdown(shutdown_signal());
    tracing::info!("listening on http://{addr}/slack");
    server.serve_router(app).await?;
    Ok(())
}

/// Prints one line to stderr and exits with status 1.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
