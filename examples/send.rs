//! The demo sender: signs a sample event like the real provider would and
//! POSTs it to the demo receiver, then prints the answer.
//!
//! ```text
//! cargo run --example send -- stripe
//! cargo run --example send -- github --type push
//! cargo run --example send -- standard --type test.handler_error   # the demo handler fails: 500
//! cargo run --example send -- slack --tamper                       # body changed after signing: 401
//! cargo run --example send -- standard --v1a                       # Ed25519 (v1a) instead of v1
//! cargo run --example send -- paypal                               # RSA, as PayPal signs
//! ```
//!
//! Providers: stripe, github, standard, slack, shopify, meta, x, discord,
//! sendgrid, paypal.
//! It reads the same secret variables as the receiver (the first secret of
//! each list signs) and the same development defaults, and `WEBHOOK_ADDR`
//! for the target. Asymmetric schemes sign with a private key the
//! receiver never holds:
//!
//! - `--v1a`: `STANDARD_WEBHOOK_SIGNING_KEY` (`whsk_`), by default the
//!   development key whose public key is
//!   `whpk_XlnN9Yboe3obwzpgJ8iPor/XPG5nfegDuID9BfU86Ag=` (give that to the
//!   receiver in `STANDARD_WEBHOOK_PUBLIC_KEYS`).
//! - `discord`: `DISCORD_SIGNING_KEY` (the hex Ed25519 seed), by default
//!   the development seed whose public key is the receiver's default.
//! - `sendgrid`: `SENDGRID_SIGNING_KEY` (PKCS#8 P-256, base64), by default
//!   the development key whose public key is the receiver's default.
//! - `paypal`: `PAYPAL_SIGNING_KEY_FILE` (PKCS#8 PEM), by default the test
//!   key of `tests/data/paypal/leaf.pem` (give that certificate to the
//!   receiver in `PAYPAL_CERT_FILE`), over `PAYPAL_WEBHOOK_ID`.
//!
//! Exit status: 0 for a 2xx answer, 1 otherwise, 2 for bad arguments.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use webhook_guard::test_util::TestSigner;
use webhook_guard::Scheme;

mod common;

const USAGE: &str =
    "usage: send <stripe|github|standard|slack|shopify|meta|x|discord|sendgrid|paypal|any other name GET /providers lists> [--type EVENT] [--id ID] [--tamper] [--v1a]";

/// The development `whsk_` key for `--v1a` (public: never for real
/// traffic).
const DEV_V1A_SIGNING_KEY: &str = "whsk_oz2u379sAou9zyGrRN6CFTSXhiN2j1VjVCdplpc9D88=";

struct Args {
    provider: String,
    event_type: Option<String>,
    id: Option<String>,
    tamper: bool,
    v1a: bool,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let provider = it.next().ok_or(USAGE)?;
    let mut args = Args {
        provider,
        event_type: None,
        id: None,
        tamper: false,
        v1a: false,
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--type" => args.event_type = Some(it.next().ok_or("--type needs a value")?),
            "--id" => args.id = Some(it.next().ok_or("--id needs a value")?),
            "--tamper" => args.tamper = true,
            "--v1a" => args.v1a = true,
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
        "paypal" => json!({
            "id": format!("WH-{id}"), "create_time": "2026-11-23T10:00:00Z", "resource_type": "capture",
            "event_type": event_type.unwrap_or("PAYMENT.CAPTURE.COMPLETED"),
            "summary": "Payment completed for $ 20.0 USD",
            "resource": { "id": "4EU7004268015634R", "status": "COMPLETED", "amount": { "value": "20.00", "currency_code": "USD" } }
        }),
        "discord" => json!({
            "id": id, "application_id": "1234567890", "type": event_type.map_or(2, |t| t.parse().unwrap_or(2)),
            "data": { "name": "ping", "type": 1 }, "token": "demo-interaction-token", "version": 1
        }),
        "sendgrid" => json!([
            { "email": "jon@example.com", "event": event_type.unwrap_or("delivered"), "timestamp": now,
              "sg_event_id": id, "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0" }
        ]),
        "x" => json!({
            "for_user_id": "2244994945",
            event_type.unwrap_or("tweet_create_events"): [{ "id_str": id, "text": "hello from the demo" }]
        }),
        "coinbase" => json!({
            "id": 1, "scheduled_for": "2026-11-23T10:00:00Z",
            "event": { "id": id, "type": event_type.unwrap_or("charge:confirmed"), "data": { "code": "DEMO" } }
        }),
        "shopify" => {
            json!({ "id": 820982911946154508_u64, "email": "jon@example.com", "total_price": "10.00", "currency": "USD" })
        }
        // Every other provider: one body with the id and the event type in
        // each member a provider reads them from (`type`, `event`,
        // `event_type`, `topic`, `meta.event_name`, `event.id`, …).
        _ => {
            let t = event_type.unwrap_or("demo.event");
            json!({
                "id": id, "event_id": id, "type": t, "event": t, "event_type": t, "topic": t,
                "meta": { "event_name": t }, "created_at": now, "data": { "object": "demo" }
            })
        }
    };
    let header_type = match provider {
        "github" => Some(event_type.unwrap_or("ping").to_owned()),
        "shopify" => Some(event_type.unwrap_or("orders/create").to_owned()),
        named
            if common::routes()
                .iter()
                .skip(common::FIRST_ROUTES.len())
                .any(|r| r.name == named) =>
        {
            Some(event_type.unwrap_or("demo.event").to_owned())
        }
        _ => None,
    };
    (body.to_string().into_bytes(), header_type)
}

/// Mailgun and Adyen sign inside the body: their bodies, signed with
/// `secret`; every other provider's `body` as it is.
fn signed_in_body(
    provider: &str,
    body: Vec<u8>,
    secret: &str,
    id: &str,
    now: i64,
    event_type: Option<&str>,
) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mac = |key: &[u8], data: &[u8]| -> Result<Vec<u8>, String> {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).map_err(|e| e.to_string())?;
        mac.update(data);
        Ok(mac.finalize().into_bytes().to_vec())
    };
    Ok(match provider {
        "mailgun" => {
            let token = format!("{id}{id}");
            let signature = hex::encode(mac(secret.as_bytes(), format!("{now}{token}").as_bytes())?);
            json!({
                "signature": { "timestamp": now.to_string(), "token": token, "signature": signature },
                "event-data": { "event": event_type.unwrap_or("delivered"), "id": id, "timestamp": now }
            })
            .to_string()
            .into_bytes()
        }
        "adyen" => {
            let key = hex::decode(secret).map_err(|_| "ADYEN_WEBHOOK_SECRET: not hex".to_owned())?;
            let event = event_type.unwrap_or("AUTHORISATION");
            let signed = format!("{id}::DemoMerchant:order-{id}:1130:EUR:{event}:true");
            let signature = base64::engine::general_purpose::STANDARD.encode(mac(&key, signed.as_bytes())?);
            json!({
                "live": "false",
                "notificationItems": [{ "NotificationRequestItem": {
                    "pspReference": id, "merchantAccountCode": "DemoMerchant",
                    "merchantReference": format!("order-{id}"), "amount": { "value": 1130, "currency": "EUR" },
                    "eventCode": event, "success": "true",
                    "additionalData": { "hmacSignature": signature }
                }}]
            })
            .to_string()
            .into_bytes()
        }
        _ => body,
    })
}

/// The scheme and the signing secret of a provider.
fn signing(args: &Args) -> Result<(&'static str, Scheme, String, &'static str), String> {
    if args.provider == "paypal" {
        use webhook_guard::paypal::{PayPal, PinnedCertificates};
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/paypal");
        let id = common::var(common::PAYPAL_WEBHOOK_ID.0)
            .map_err(|e| e.to_string())?
            .unwrap_or_else(|| common::PAYPAL_WEBHOOK_ID.1.to_owned());
        let key_file = common::var("PAYPAL_SIGNING_KEY_FILE")
            .map_err(|e| e.to_string())?
            .unwrap_or_else(|| format!("{data}/leaf-key.pk8.pem"));
        let key = std::fs::read_to_string(&key_file)
            .map_err(|e| format!("PAYPAL_SIGNING_KEY_FILE: cannot read {key_file:?}: {e}"))?;
        // The certificate only completes the configuration: signing needs
        // the webhook id and the key.
        let pem = std::fs::read_to_string(format!("{data}/leaf.pem")).map_err(|e| e.to_string())?;
        let paypal = PayPal::builder(id.trim())
            .certificates(PinnedCertificates::from_pem(&pem).map_err(|e| e.to_string())?)
            .build()
            .map_err(|e| format!("PAYPAL_WEBHOOK_ID: {e}"))?;
        return Ok(("paypal", Scheme::paypal(paypal), key, "PAYPAL_SIGNING_KEY_FILE"));
    }
    let routes = common::routes();
    let route = routes
        .iter()
        .find(|r| r.name == args.provider)
        .ok_or_else(|| format!("unknown provider {:?}\n{USAGE}", args.provider))?;
    let own_key = |var: &'static str, dev: &str| -> Result<String, String> {
        Ok(common::var(var)
            .map_err(|e| e.to_string())?
            .unwrap_or_else(|| dev.to_owned()))
    };
    match route.name {
        "discord" => {
            let key = own_key("DISCORD_SIGNING_KEY", common::DISCORD_DEV_SEED)?;
            return Ok((
                route.name,
                route.scheme().map_err(|e| e.to_string())?,
                key,
                "DISCORD_SIGNING_KEY",
            ));
        }
        "sendgrid" => {
            let key = own_key("SENDGRID_SIGNING_KEY", common::SENDGRID_DEV_KEY)?;
            return Ok((
                route.name,
                route.scheme().map_err(|e| e.to_string())?,
                key,
                "SENDGRID_SIGNING_KEY",
            ));
        }
        _ => {}
    }
    if args.v1a {
        if route.name != "standard" {
            return Err("--v1a is for the standard route".to_owned());
        }
        let key = common::var("STANDARD_WEBHOOK_SIGNING_KEY")
            .map_err(|e| e.to_string())?
            .unwrap_or_else(|| DEV_V1A_SIGNING_KEY.to_owned());
        return Ok((
            route.name,
            route.scheme().map_err(|e| e.to_string())?,
            key,
            "STANDARD_WEBHOOK_SIGNING_KEY",
        ));
    }
    let (secrets, _) = common::secrets(route).map_err(|e| e.to_string())?;
    let secret = secrets.into_iter().next().unwrap_or_default();
    Ok((
        route.name,
        route.scheme().map_err(|e| e.to_string())?,
        secret,
        route.env,
    ))
}

async fn run(args: Args) -> Result<bool, String> {
    let (name, scheme, secret, secret_var) = signing(&args)?;
    let addr = common::addr().map_err(|e| e.to_string())?;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    let unix = i64::try_from(now.as_secs()).map_err(|e| e.to_string())?;
    let prefix = match name {
        "stripe" => "evt_",
        "slack" => "Ev",
        "standard" => "msg_",
        "paypal" => "",
        _ => "",
    };
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("{prefix}{:x}", now.as_nanos()));
    let id = if name == "paypal" {
        // PayPal's transmission ids are UUIDs.
        let hex = format!("{:032x}", now.as_nanos());
        args.id.clone().unwrap_or_else(|| {
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        })
    } else {
        id
    };
    let (body, header_type) = sample(name, args.event_type.as_deref(), &id, unix);
    let body = signed_in_body(name, body, &secret, &id, unix, args.event_type.as_deref())?;

    let mut signer = TestSigner::new(&scheme, secret.as_str())
        .map_err(|e| format!("{secret_var}: {e}"))?
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

    let uri = format!("http://{addr}/webhooks/{name}");
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
