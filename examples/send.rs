//! The demo sender: signs a sample event like the real provider would and
//! POSTs it to the demo receiver, then prints the answer.
//!
//! ```text
//! cargo run --example send -- stripe
//! cargo run --example send -- github --type push
//! cargo run --example send -- standard --type test.handler_error   # the demo handler fails: 500
//! cargo run --example send -- slack --tamper                       # body changed after signing: 401
//! ```
//!
//! Providers: stripe, github, standard, slack, shopify. It reads the same
//! secret variables as the receiver (the first secret of each list signs)
//! and the same development defaults, and `WEBHOOK_ADDR` for the target.
//! Exit status: 0 for a 2xx answer, 1 otherwise, 2 for bad arguments.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use webhook_guard::test_util::TestSigner;

mod common;
use common::ROUTES;

const USAGE: &str =
    "usage: send <stripe|github|standard|slack|shopify|meta|x> [--type EVENT] [--id ID] [--tamper]";

struct Args {
    provider: String,
    event_type: Option<String>,
    id: Option<String>,
    tamper: bool,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let provider = it.next().ok_or(USAGE)?;
    let mut args = Args {
        provider,
        event_type: None,
        id: None,
        tamper: false,
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--type" => args.event_type = Some(it.next().ok_or("--type needs a value")?),
            "--id" => args.id = Some(it.next().ok_or("--id needs a value")?),
            "--tamper" => args.tamper = true,
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// A sample body for each provider, shaped like the real thing.
fn sample(provider: &str, event_type: Option<&str>, id: &str, now: i64) -> (Vec<u8>, Option<String>) {
    let body = match provider {
        "stripe" => json!({
            "id": id, "object": "event", "api_version": "2024-06-20", "created": now, "livemode": false,
            "type": event_type.unwrap_or("payment_intent.succeeded"),
            "data": { "object": { "id": "pi_3Demo", "object": "payment_intent", "amount": 2000, "currency": "usd", "status": "succeeded" } }
        }),
        "github" => json!({
            "zen": "Keep it logically awesome.", "hook_id": 1,
            "repository": { "full_name": "octo-org/hello-world" }, "sender": { "login": "octocat" }
        }),
        "standard" => json!({
            "type": event_type.unwrap_or("invoice.paid"), "timestamp": "2026-11-23T10:00:00Z",
            "data": { "invoice_id": "inv_123", "amount": 1200 }
        }),
        "slack" => match event_type {
            Some("url_verification") => {
                json!({ "token": "demo", "type": "url_verification", "challenge": format!("challenge-{id}") })
            }
            other => json!({
                "token": "demo", "team_id": "T0001", "api_app_id": "A0001", "event_id": id, "event_time": now,
                "type": other.unwrap_or("event_callback"),
                "event": { "type": "app_mention", "text": "hello <@U0001>", "user": "U0002", "channel": "C0001" }
            }),
        },
        "meta" => json!({
            "object": event_type.unwrap_or("page"),
            "entry": [{ "id": "1234567890", "time": now, "changes": [{ "field": "feed", "value": { "item": "status", "verb": "add" } }] }]
        }),
        "x" => json!({
            "for_user_id": "2244994945",
            event_type.unwrap_or("tweet_create_events"): [{ "id_str": id, "text": "hello from the demo" }]
        }),
        _ => {
            json!({ "id": 820982911946154508_u64, "email": "jon@example.com", "total_price": "10.00", "currency": "USD" })
        }
    };
    let header_type = match provider {
        "github" => Some(event_type.unwrap_or("ping").to_owned()),
        "shopify" => Some(event_type.unwrap_or("orders/create").to_owned()),
        _ => None,
    };
    (body.to_string().into_bytes(), header_type)
}

async fn run(args: Args) -> Result<bool, String> {
    let route = ROUTES
        .iter()
        .find(|r| r.name == args.provider)
        .ok_or_else(|| format!("unknown provider {:?}\n{USAGE}", args.provider))?;
    let (secrets, _) = common::secrets(route).map_err(|e| e.to_string())?;
    let secret = secrets.into_iter().next().unwrap_or_default();
    let addr = common::addr().map_err(|e| e.to_string())?;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    let unix = i64::try_from(now.as_secs()).map_err(|e| e.to_string())?;
    let prefix = match route.name {
        "stripe" => "evt_",
        "slack" => "Ev",
        "standard" => "msg_",
        _ => "",
    };
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("{prefix}{:x}", now.as_nanos()));
    let (body, header_type) = sample(route.name, args.event_type.as_deref(), &id, unix);

    let mut signer = TestSigner::new(&(route.scheme)(), secret.as_str())
        .map_err(|e| format!("{}: {e}", route.env))?
        .timestamp(unix)
        .id(id);
    if let Some(t) = header_type {
        signer = signer.event_type(t);
    }
    let headers = signer.headers(&body);
    let mut body = body;
    if args.tamper {
        body.extend_from_slice(b" ");
    }

    let uri = format!("http://{addr}/webhooks/{}", route.name);
    let mut request = http::Request::post(&uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    request.headers_mut().extend(headers);
    println!("POST {uri}");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("cannot reach the receiver at {addr} (is it running?): {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    println!("HTTP {status}");
    println!("{}", String::from_utf8_lossy(&body));
    Ok(status.is_success())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
