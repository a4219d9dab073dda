//! What happens to a verified payload, through real axum routers driven
//! with `oneshot`: JSON Schema validation and strict JSON (before the
//! dedupe claim, never for a forged body), typed dispatch with
//! `EventRouter`, the GET handshakes (Meta, X CRC) and Slack's
//! `url_verification`, and the fast-acknowledgement queue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use axum::routing::{post, post_service};
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::{header, HeaderValue, Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, Notify, Semaphore};
use webhook_guard::dedupe::{Dedupe, DedupeStore, MemoryStore};
use webhook_guard::dispatch::{Event, EventRouter, HandlerError};
use webhook_guard::handshake::Handshake;
use webhook_guard::queue::AckQueue;
use webhook_guard::schema::Schemas;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{ConfigError, FixedClock, Rejection, RejectionKind, Scheme, VerifiedWebhook, Verifier};

use support::{app, assert_ok, assert_problem, body_bytes, send, Counting, PATH};

const NOW: i64 = 1_700_000_000;
const STRIPE_SECRET: &str = "whsec_payload_stripe_7c21d9";
const GITHUB_SECRET: &str = "github payload secret 51ae";
const SLACK_SECRET: &str = "slack-payload-secret-e83f";
const META_SECRET: &str = "meta-app-secret-payload-90b2";
const META_TOKEN: &str = "meta-verify-token-4f1c";
const META_PATH: &str = "/webhooks/meta";
const X_SECRET: &str = "x-consumer-secret-first-2d7a";
const X_SECRET_OLD: &str = "x-consumer-secret-second-b61e";
const X_PATH: &str = "/webhooks/x";
const FORM: &str = "application/x-www-form-urlencoded";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn dedupe(store: impl DedupeStore, namespace: &str) -> Dedupe {
    Dedupe::builder(store, namespace).build().unwrap()
}

/// A Stripe verifier at `NOW`, with optional schemas and dedupe.
fn stripe(schemas: Option<Schemas>, dedupe: Option<Dedupe>) -> Verifier {
    let mut builder = Verifier::builder(Scheme::stripe())
        .secret(STRIPE_SECRET)
        .clock(FixedClock::new(NOW));
    if let Some(schemas) = schemas {
        builder = builder.schemas(schemas);
    }
    if let Some(dedupe) = dedupe {
        builder = builder.dedupe(dedupe);
    }
    builder.build().unwrap()
}

fn stripe_signer() -> TestSigner {
    TestSigner::new(&Scheme::stripe(), STRIPE_SECRET)
        .unwrap()
        .timestamp(NOW)
}

/// A correctly signed Stripe delivery of `body` to `PATH`.
fn stripe_request(body: impl Into<Bytes>) -> Request<Body> {
    stripe_signer().request(PATH, body)
}

/// A Stripe event body.
fn event(id: &str, kind: &str, object: Value) -> String {
    json!({"id": id, "object": "event", "type": kind, "created": NOW, "data": {"object": object}}).to_string()
}

fn github() -> Verifier {
    Verifier::builder(Scheme::github())
        .secret(GITHUB_SECRET)
        .build()
        .unwrap()
}

fn github_request(event: &str, delivery: &str, body: &str) -> Request<Body> {
    TestSigner::new(&Scheme::github(), GITHUB_SECRET)
        .unwrap()
        .event_type(event)
        .id(delivery)
        .request(PATH, body.to_owned())
}

fn slack(dedupe: Option<Dedupe>, schemas: Option<Schemas>) -> Verifier {
    let mut builder = Verifier::builder(Scheme::slack())
        .secret(SLACK_SECRET)
        .clock(FixedClock::new(NOW));
    if let Some(dedupe) = dedupe {
        builder = builder.dedupe(dedupe);
    }
    if let Some(schemas) = schemas {
        builder = builder.schemas(schemas);
    }
    builder.build().unwrap()
}

/// A signed Slack delivery; `content_type` is sent (and not signed, as
/// Slack does) when given.
fn slack_request(body: &str, content_type: Option<&'static str>) -> Request<Body> {
    let mut signer = TestSigner::new(&Scheme::slack(), SLACK_SECRET)
        .unwrap()
        .timestamp(NOW);
    if let Some(ct) = content_type {
        signer = signer.header(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    signer.request(PATH, body.to_owned())
}

/// `POST /hook` behind `verifier`, handled by `service`.
fn dispatch_app(verifier: &Verifier, events: EventRouter) -> Router {
    Router::new().route(PATH, post_service(events).layer(verifier.layer()))
}

type Log = Arc<Mutex<Vec<String>>>;

fn new_log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// A handler that records `name:<event type>` and succeeds.
fn recorder(
    log: &Log,
    name: &'static str,
) -> impl Fn(Event<Value>) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static {
    let log = Arc::clone(log);
    move |event: Event<Value>| {
        log.lock()
            .unwrap()
            .push(format!("{name}:{}", event.event_type().unwrap_or("-")));
        std::future::ready(Ok(()))
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// A problem+json check that does not require a `provider` member: status,
/// content type, the RFC 9457 members, the reason, the `Rejection` in the
/// extensions, and none of `forbidden` in the headers or the body.
async fn problem(what: &str, response: Response, kind: RejectionKind, forbidden: &[&str]) -> Value {
    assert_eq!(response.status(), kind.status(), "{what}: status");
    assert_eq!(
        response.headers().get(header::CONTENT_TYPE),
        Some(&HeaderValue::from_static("application/problem+json")),
        "{what}: content type"
    );
    for (name, value) in response.headers() {
        for f in forbidden {
            assert!(
                !String::from_utf8_lossy(value.as_bytes()).contains(f),
                "{what}: header {name} leaks {f:?}"
            );
        }
    }
    assert_eq!(
        response.extensions().get::<Rejection>().map(Rejection::kind),
        Some(kind),
        "{what}: Rejection in the extensions"
    );
    let text = String::from_utf8(body_bytes(response).await.to_vec()).unwrap();
    for f in forbidden {
        assert!(!text.contains(f), "{what}: body leaks {f:?}: {text}");
    }
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    assert_eq!(doc["reason"], json!(kind.reason()), "{what}: {text}");
    assert_eq!(doc["status"], json!(kind.status().as_u16()), "{what}: {text}");
    assert_eq!(doc["title"], json!(kind.title()), "{what}: {text}");
    assert_eq!(
        doc["type"],
        json!(format!("tag:webhook-guard,2026:reason/{}", kind.reason())),
        "{what}: {text}"
    );
    assert!(
        doc["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {text}"
    );
    doc
}

/// Asserts a 2xx JSON answer equal to `expected`.
async fn assert_json(what: &str, response: Response, status: StatusCode, expected: Value) {
    let got = response.status();
    let ct = response.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = body_bytes(response).await;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(got, status, "{what}: status ({text})");
    assert_eq!(
        ct,
        Some(HeaderValue::from_static("application/json")),
        "{what}: content type"
    );
    let doc: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    assert_eq!(doc, expected, "{what}");
}

// ---------------------------------------------------------------------------
// 1. Schemas and strict JSON
// ---------------------------------------------------------------------------

/// The default schema (shaped like the demo's Stripe schema, with a few
/// extra members to test pointers) and an `invoice.paid` schema.
fn stripe_schemas() -> Schemas {
    Schemas::builder()
        .default_schema(json!({
            "type": "object",
            "required": ["id", "object", "type", "created", "data"],
            "properties": {
                "id": {"type": "string", "pattern": "^evt_[A-Za-z0-9_]+$"},
                "object": {"const": "event"},
                "type": {"type": "string"},
                "created": {"type": "integer"},
                "data": {
                    "type": "object",
                    "required": ["object"],
                    "properties": {"object": {
                        "type": "object",
                        "properties": {
                            "a/b~c": {"type": "integer"},
                            "lines": {
                                "type": "array",
                                "items": {"type": "object", "properties": {"sku": {"type": "string"}}}
                            }
                        }
                    }}
                }
            }
        }))
        .event_schema(
            "invoice.paid",
            json!({
                "properties": {"data": {"properties": {"object": {
                    "required": ["amount_paid"],
                    "properties": {"amount_paid": {"type": "integer", "minimum": 0}}
                }}}}
            }),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn schema_valid_body_reaches_the_handler() {
    let (router, calls) = app(&stripe(Some(stripe_schemas()), None));
    let body = event(
        "evt_valid_1",
        "invoice.paid",
        json!({"amount_paid": 1200, "a/b~c": 3, "lines": [{"sku": "x"}]}),
    );
    let echo = assert_ok("valid", send(router.clone(), stripe_request(body.clone())).await).await;
    assert_eq!(echo["event_type"], json!("invoice.paid"));
    assert_eq!(echo["delivery_id"], json!("evt_valid_1"));
    assert_eq!(echo["hook_body_hex"], json!(hex::encode(&body)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Another type, valid under the default schema alone.
    let other = event("evt_valid_2", "customer.created", json!({}));
    assert_ok("other type", send(router, stripe_request(other)).await).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn schema_violation_is_422_naming_the_pointer_never_the_value() {
    let store = Counting::new(MemoryStore::new());
    let verifier = stripe(Some(stripe_schemas()), Some(dedupe(store.clone(), "stripe")));
    let (router, calls) = app(&verifier);
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "data.object is not an object",
            event("evt_s1", "invoice.created", json!("LEAKY-OBJECT-STRING-1")),
            "/data/object",
            "LEAKY-OBJECT-STRING-1",
        ),
        (
            "created is not an integer",
            json!({"id": "evt_s2", "object": "event", "type": "invoice.created",
                   "created": "LEAKY-CREATED-2", "data": {"object": {}}})
            .to_string(),
            "/created",
            "LEAKY-CREATED-2",
        ),
        (
            "id fails its pattern",
            event("evt-LEAKY-ID-3", "invoice.created", json!({})),
            "/id",
            "LEAKY-ID-3",
        ),
        (
            "object fails its const",
            json!({"id": "evt_s4", "object": "LEAKY-CONST-4", "type": "invoice.created",
                   "created": NOW, "data": {"object": {}}})
            .to_string(),
            "/object",
            "LEAKY-CONST-4",
        ),
        (
            "a key with / and ~ is escaped (RFC 6901)",
            event("evt_s5", "invoice.created", json!({"a/b~c": "LEAKY-ESCAPED-5"})),
            "/data/object/a~1b~0c",
            "LEAKY-ESCAPED-5",
        ),
        (
            "an array member",
            event(
                "evt_s6",
                "invoice.created",
                json!({"lines": [{"sku": "a"}, {"sku": "b"}, {"sku": ["LEAKY-ARRAY-6"]}]}),
            ),
            "/data/object/lines/2/sku",
            "LEAKY-ARRAY-6",
        ),
        (
            "the event type's own schema",
            event("evt_s7", "invoice.paid", json!({"amount_paid": "LEAKY-AMOUNT-7"})),
            "/data/object/amount_paid",
            "LEAKY-AMOUNT-7",
        ),
        (
            "the root is not an object",
            json!(["LEAKY-ROOT-8"]).to_string(),
            "",
            "LEAKY-ROOT-8",
        ),
    ];
    for (what, body, pointer, canary) in cases {
        let response = send(router.clone(), stripe_request(body)).await;
        let (rejection, doc) = assert_problem(
            what,
            response,
            RejectionKind::SchemaViolation,
            "stripe",
            &[canary, STRIPE_SECRET],
        )
        .await;
        assert_eq!(doc["pointer"], json!(pointer), "{what}: {doc}");
        assert_eq!(rejection.pointer(), Some(pointer), "{what}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the handler ran for a schema failure"
    );
    assert_eq!(store.calls(), 0, "a schema failure touched the dedupe store");
}

#[tokio::test]
async fn event_type_schema_applies_in_addition_and_only_to_its_type() {
    let (router, calls) = app(&stripe(Some(stripe_schemas()), None));

    // invoice.paid without amount_paid: the event schema's `required`.
    let response = send(
        router.clone(),
        stripe_request(event("evt_e1", "invoice.paid", json!({}))),
    )
    .await;
    let (_, doc) = assert_problem(
        "missing amount_paid",
        response,
        RejectionKind::SchemaViolation,
        "stripe",
        &[],
    )
    .await;
    assert_eq!(doc["pointer"], json!("/data/object/amount_paid"), "{doc}");
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains(r#"missing required property "amount_paid""#),
        "{doc}"
    );

    // The same body under another type: the event schema does not apply.
    for (id, object) in [("evt_e2", json!({})), ("evt_e3", json!({"amount_paid": "n/a"}))] {
        let response = send(
            router.clone(),
            stripe_request(event(id, "invoice.created", object)),
        )
        .await;
        assert_ok(id, response).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // invoice.paid satisfying its own schema still needs the default one.
    let body = json!({"id": "evt_e4", "object": "event", "type": "invoice.paid", "created": "LEAKY-E4",
                      "data": {"object": {"amount_paid": 5}}});
    let response = send(router.clone(), stripe_request(body.to_string())).await;
    let (_, doc) = assert_problem(
        "default schema on invoice.paid",
        response,
        RejectionKind::SchemaViolation,
        "stripe",
        &["LEAKY-E4"],
    )
    .await;
    assert_eq!(doc["pointer"], json!("/created"), "{doc}");

    // Only an event-type schema: other types pass, that type is checked.
    let only_event = Schemas::builder()
        .event_schema(
            "invoice.paid",
            json!({"properties": {"data": {"required": ["object"], "properties": {
                "object": {"required": ["amount_paid"]}}}}}),
        )
        .build()
        .unwrap();
    let (router, calls) = app(&stripe(Some(only_event), None));
    let response = send(
        router.clone(),
        stripe_request(event("evt_e5", "invoice.created", json!("anything"))),
    )
    .await;
    assert_ok("no schema for this type", response).await;
    let response = send(router, stripe_request(event("evt_e6", "invoice.paid", json!({})))).await;
    let (_, doc) = assert_problem(
        "event schema only",
        response,
        RejectionKind::SchemaViolation,
        "stripe",
        &[],
    )
    .await;
    assert_eq!(doc["pointer"], json!("/data/object/amount_paid"), "{doc}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

const STANDARD_SECRET: &str = "whsec_cGF5bG9hZC1zdGFuZGFyZC13ZWJob29rcy1rZXk=";

/// A Standard Webhooks route with the demo receiver's schema, plus a
/// nested `data.object` and a member whose name needs RFC 6901 escaping.
fn standard_app() -> Router {
    let mut schema: Value = serde_json::from_str(include_str!("../examples/schemas/standard.json")).unwrap();
    schema["properties"]["data"]["properties"] = json!({
        "object": {"type": "object", "required": ["id"]},
        "a/b~c": {"type": "object", "required": ["x/y~z"]}
    });
    let verifier = Verifier::builder(Scheme::standard_webhooks())
        .secret(STANDARD_SECRET)
        .clock(FixedClock::new(NOW))
        .schemas(Schemas::builder().default_schema(schema).build().unwrap())
        .build()
        .unwrap();
    app(&verifier).0
}

fn standard_request(body: Value) -> Request<Body> {
    TestSigner::new(&Scheme::standard_webhooks(), STANDARD_SECRET)
        .unwrap()
        .timestamp(NOW)
        .id("msg_payload_1")
        .request(PATH, body.to_string())
}

#[tokio::test]
async fn missing_required_member_is_422_naming_it() {
    let router = standard_app();
    let ts = "2023-11-14T22:13:20Z";
    let cases = [
        (
            "Standard Webhooks body without data",
            json!({"type": "LEAKY-TYPE-1", "timestamp": ts}),
            "/data",
            "data",
            "LEAKY-TYPE-1",
        ),
        (
            "nested: data.object without id",
            json!({"type": "t", "timestamp": ts, "data": {"object": {"name": "LEAKY-NAME-2"}}}),
            "/data/object/id",
            "id",
            "LEAKY-NAME-2",
        ),
        (
            "names with / and ~ are escaped",
            json!({"type": "t", "timestamp": ts, "data": {"a/b~c": {"v": "LEAKY-V-3"}}}),
            "/data/a~1b~0c/x~1y~0z",
            "x/y~z",
            "LEAKY-V-3",
        ),
    ];
    for (what, body, pointer, name, canary) in cases {
        let response = send(router.clone(), standard_request(body)).await;
        let doc = problem(
            what,
            response,
            RejectionKind::SchemaViolation,
            &[canary, STANDARD_SECRET],
        )
        .await;
        assert_eq!(doc["pointer"], json!(pointer), "{what}: {doc}");
        assert_eq!(
            doc["detail"],
            json!(format!("missing required property {name:?} at {pointer:?}")),
            "{what}: {doc}"
        );
    }
    // A wrong type names the pointer and the keyword, never the value.
    let body = json!({"type": "t", "timestamp": ts, "data": "LEAKY-DATA-4"});
    let response = send(router, standard_request(body)).await;
    let doc = problem(
        "data a string",
        response,
        RejectionKind::SchemaViolation,
        &["LEAKY-DATA-4"],
    )
    .await;
    assert_eq!(doc["pointer"], json!("/data"), "{doc}");
    let detail = doc["detail"].as_str().unwrap();
    assert!(detail.contains(r#"(keyword "type")"#), "{doc}");
    assert!(!detail.contains("missing"), "{doc}");
}

#[tokio::test]
async fn non_json_verified_body_is_400_invalid_json() {
    let store = Counting::new(MemoryStore::new());
    let (router, calls) = app(&stripe(
        Some(stripe_schemas()),
        Some(dedupe(store.clone(), "stripe")),
    ));
    for body in [
        &b"LEAKY not json at all"[..],
        b"",
        br#"{"id":"evt_j1","type":"LEAKY"#,
        br#"{"id":"evt_j2"} {"id":"evt_j3"}"#,
        b"\xff\xfe",
        br#"{"id":"evt_j4",}"#,
    ] {
        let what = String::from_utf8_lossy(body).into_owned();
        let response = send(router.clone(), stripe_request(Bytes::copy_from_slice(body))).await;
        assert_problem(&what, response, RejectionKind::InvalidJson, "stripe", &["LEAKY"]).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(store.calls(), 0, "invalid JSON touched the dedupe store");
}

#[tokio::test]
async fn duplicate_keys_are_400_at_any_depth_and_after_unescaping() {
    let store = Counting::new(MemoryStore::new());
    let (router, calls) = app(&stripe(
        Some(stripe_schemas()),
        Some(dedupe(store.clone(), "stripe")),
    ));
    let head = r#""object":"event","created":1700000000"#;
    let cases = [
        (
            "top-level type",
            format!(
                r#"{{"id":"evt_k1",{head},"type":"invoice.created","data":{{"object":{{}}}},"type":"invoice.paid"}}"#
            ),
        ),
        (
            "top-level id",
            format!(
                r#"{{"id":"evt_k2",{head},"type":"invoice.created","data":{{"object":{{}}}},"id":"evt_k2b"}}"#
            ),
        ),
        (
            "nested",
            format!(
                r#"{{"id":"evt_k3",{head},"type":"invoice.paid","data":{{"object":{{"amount_paid":1,"amount_paid":-1}}}}}}"#
            ),
        ),
        (
            "inside an array",
            format!(
                r#"{{"id":"evt_k4",{head},"type":"x","data":{{"object":{{"lines":[{{"sku":"a"}},{{"sku":"a","sku":"b"}}]}}}}}}"#
            ),
        ),
        (
            "\\u0061 equals a",
            format!(r#"{{"id":"evt_k5",{head},"type":"x","data":{{"object":{{}}}},"a":1,"\u0061":2}}"#),
        ),
        (
            "escaped id",
            format!(
                r#"{{"id":"evt_k6",{head},"type":"x","data":{{"object":{{}}}},"\u0069\u0064":"evt_k6b"}}"#
            ),
        ),
        (
            "\\/ equals /",
            format!(r#"{{"id":"evt_k7",{head},"type":"x","data":{{"object":{{"a/b":1,"a\/b":2}}}}}}"#),
        ),
    ];
    for (what, body) in cases {
        let response = send(router.clone(), stripe_request(body)).await;
        assert_problem(what, response, RejectionKind::DuplicateKeys, "stripe", &[]).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(store.calls(), 0, "duplicate keys touched the dedupe store");

    // Control: the same key at two different levels is not a duplicate.
    let ok = format!(r#"{{"id":"evt_k8",{head},"type":"x","data":{{"object":{{"data":{{"object":1}}}}}}}}"#);
    assert_ok("same key, other level", send(router, stripe_request(ok)).await).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(
        store.calls() > 0,
        "the counting store does not see the real claim"
    );
}

#[tokio::test]
async fn forged_body_is_never_parsed() {
    let store = Counting::new(MemoryStore::new());
    let (router, calls) = app(&stripe(
        Some(stripe_schemas()),
        Some(dedupe(store.clone(), "stripe")),
    ));
    let genuine = event("evt_f1", "invoice.paid", json!({"amount_paid": 1}));
    let forged_bodies = [
        "this is not JSON".to_owned(),
        r#"{"a":1,"a":2}"#.to_owned(),
        event("evt_f1", "invoice.paid", json!("not an object")),
    ];
    for body in &forged_bodies {
        // Signed for another body.
        let mut request = stripe_request(genuine.clone());
        *request.body_mut() = Body::from(body.clone());
        let response = send(router.clone(), request).await;
        assert_problem(body, response, RejectionKind::SignatureMismatch, "stripe", &[]).await;
        // Signed with another secret.
        let request = TestSigner::new(&Scheme::stripe(), "whsec_someone_else")
            .unwrap()
            .timestamp(NOW)
            .request(PATH, body.clone());
        let response = send(router.clone(), request).await;
        assert_problem(body, response, RejectionKind::SignatureMismatch, "stripe", &[]).await;
        // Not signed at all.
        let request = Request::post(PATH).body(Body::from(body.clone())).unwrap();
        let response = send(router.clone(), request).await;
        assert_problem(body, response, RejectionKind::MissingSignature, "stripe", &[]).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(store.calls(), 0, "a forged request touched the dedupe store");
}

#[tokio::test]
async fn form_content_type_on_a_json_route_is_still_validated_as_json() {
    let (router, calls) = app(&stripe(Some(stripe_schemas()), None));
    let with_form = |body: String, ct: &'static str| {
        stripe_signer()
            .header(header::CONTENT_TYPE, HeaderValue::from_static(ct))
            .request(PATH, body)
    };
    for ct in [FORM, "Application/X-WWW-Form-Urlencoded; charset=utf-8"] {
        // A form body is not JSON.
        let response = send(
            router.clone(),
            with_form("id=evt_c1&type=invoice.paid&command=%2Fx".to_owned(), ct),
        )
        .await;
        assert_problem(ct, response, RejectionKind::InvalidJson, "stripe", &[]).await;
        // JSON that fails the schema is refused whatever the content type.
        let response = send(
            router.clone(),
            with_form(
                event("evt_c2", "invoice.paid", json!({"amount_paid": "LEAKY-C2"})),
                ct,
            ),
        )
        .await;
        let (_, doc) = assert_problem(
            ct,
            response,
            RejectionKind::SchemaViolation,
            "stripe",
            &["LEAKY-C2"],
        )
        .await;
        assert_eq!(doc["pointer"], json!("/data/object/amount_paid"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Valid JSON labelled as a form passes, and is not a form.
    let response = send(
        router,
        with_form(event("evt_c3", "invoice.paid", json!({"amount_paid": 1})), FORM),
    )
    .await;
    let echo = assert_ok("valid JSON labelled as a form", response).await;
    assert_eq!(echo["form"], json!(false));
    assert_eq!(echo["event_type"], json!("invoice.paid"));
}

fn slack_schemas() -> Schemas {
    Schemas::builder()
        .default_schema(json!({
            "type": "object",
            "required": ["type", "event_id"],
            "properties": {"event_id": {"type": "string"}}
        }))
        .build()
        .unwrap()
}

#[tokio::test]
async fn slack_form_body_skips_the_schema_and_reaches_the_handler() {
    let (router, calls) = app(&slack(None, Some(slack_schemas())));
    let form =
        "token=xyz&team_id=T1&command=%2Fweather&text=94070&response_url=https%3A%2F%2Fexample.invalid";
    for ct in [FORM, "application/x-www-form-urlencoded; charset=utf-8"] {
        let echo = assert_ok(ct, send(router.clone(), slack_request(form, Some(ct))).await).await;
        assert_eq!(echo["form"], json!(true), "{ct}");
        assert_eq!(echo["event_type"], json!("/weather"), "{ct}");
        assert_eq!(echo["delivery_id"], Value::Null, "{ct}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Control: a Slack JSON body is validated.
    let response = send(
        router.clone(),
        slack_request(r#"{"type":"event_callback","event_id":["LEAKY-SLACK"]}"#, None),
    )
    .await;
    let (_, doc) = assert_problem(
        "slack json",
        response,
        RejectionKind::SchemaViolation,
        "slack",
        &["LEAKY-SLACK"],
    )
    .await;
    assert_eq!(doc["pointer"], json!("/event_id"));
    // A Slack JSON body labelled application/json is not a form either.
    let response = send(
        router,
        slack_request(r#"{"type":"event_callback"}"#, Some("application/json")),
    )
    .await;
    let (_, doc) = assert_problem(
        "slack json, json content type",
        response,
        RejectionKind::SchemaViolation,
        "slack",
        &[],
    )
    .await;
    assert_eq!(doc["pointer"], json!("/event_id"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn remote_refs_are_config_errors_at_build() {
    let remote = [
        json!({"$ref": "https://example.com/schema.json"}),
        json!({"$ref": "http://127.0.0.1:9/schema.json"}),
        json!({"$ref": "file:///etc/passwd"}),
        json!({"$ref": "file:///work/main/examples/schemas/stripe.json"}),
        json!({"type": "object", "properties": {"data": {"$ref": "https://example.com/data.json#/x"}}}),
        json!({"$defs": {"a": {"$ref": "file:///tmp/a.json"}}, "properties": {"x": {"$ref": "#/$defs/a"}}}),
    ];
    for schema in &remote {
        let built = Schemas::builder().default_schema(schema.clone()).build();
        assert!(
            matches!(built, Err(ConfigError::InvalidSchema { event_type: None, .. })),
            "{schema}: {built:?}"
        );
        let built = Schemas::builder().event_schema("push", schema.clone()).build();
        assert!(
            matches!(built, Err(ConfigError::InvalidSchema { event_type: Some(ref t), .. }) if t == "push"),
            "{schema}: {built:?}"
        );
    }
    // A reference inside the schema itself is fine.
    let local = json!({"$defs": {"id": {"type": "string"}}, "properties": {"id": {"$ref": "#/$defs/id"}}});
    assert!(Schemas::builder().default_schema(local).build().is_ok());
}

#[test]
fn backtracking_patterns_are_config_errors() {
    for pattern in ["^(?=a)a$", "(?!b)a", "(?<=a)b", "(?<!a)b", r"^(a)\1$"] {
        let schema = json!({"type": "object", "properties": {"s": {"type": "string", "pattern": pattern}}});
        let built = Schemas::builder().default_schema(schema).build();
        assert!(
            matches!(built, Err(ConfigError::InvalidSchema { .. })),
            "{pattern}: {built:?}"
        );
        let schema = json!({"type": "object", "patternProperties": {pattern: {"type": "string"}}});
        let built = Schemas::builder().event_schema("t", schema).build();
        assert!(
            matches!(built, Err(ConfigError::InvalidSchema { event_type: Some(ref t), .. }) if t == "t"),
            "patternProperties {pattern}: {built:?}"
        );
    }
    // A plain pattern compiles.
    let plain = json!({"properties": {"s": {"pattern": "^(a+)+$"}}});
    assert!(Schemas::builder().default_schema(plain).build().is_ok());
}

#[tokio::test]
async fn catastrophic_pattern_validates_in_linear_time() {
    let schemas = Schemas::builder()
        .default_schema(json!({
            "type": "object",
            "properties": {"data": {"properties": {"object": {"properties": {
                "name": {"type": "string", "pattern": "^(a+)+$"}
            }}}}}
        }))
        .build()
        .unwrap();
    let (router, calls) = app(&stripe(Some(schemas), None));
    let evil = format!("{}b", "a".repeat(30 * 1024));
    let good = "a".repeat(30 * 1024);
    let bodies = [
        event("evt_redos_1", "invoice.paid", json!({ "name": evil })),
        event("evt_redos_2", "invoice.paid", json!({ "name": good })),
    ];
    // Run on a thread of its own, so that a backtracking engine would make
    // the timeout fire instead of hanging this runtime.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = runtime.block_on(async move {
            let mut out = Vec::new();
            for body in bodies {
                let response = send(router.clone(), stripe_request(body)).await;
                let status = response.status();
                let pointer = response
                    .extensions()
                    .get::<Rejection>()
                    .and_then(|r| r.pointer().map(str::to_owned));
                out.push((status, pointer, body_bytes(response).await));
            }
            out
        });
        let _ = tx.send(out);
    });
    let out = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("validating ^(a+)+$ against 30 KB took exponential time")
        .unwrap();
    let (status, pointer, body) = &out[0];
    let text = String::from_utf8_lossy(body);
    assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert_eq!(pointer.as_deref(), Some("/data/object/name"));
    assert!(text.contains("schema_violation"), "{text}");
    assert!(!text.contains("aaaaaaaaaaaaaaaab"), "the value is echoed: {text}");
    let (status, _, body) = &out[1];
    assert_eq!(*status, StatusCode::OK, "{}", String::from_utf8_lossy(body));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// 2. Dispatch
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct Line {
    qty: u32,
}

#[derive(Debug, Deserialize)]
struct Invoice {
    id: String,
    amount: u64,
    currency: String,
    #[serde(default)]
    lines: Vec<Line>,
    #[serde(default)]
    metadata: HashMap<String, u64>,
}

#[derive(Debug, Deserialize)]
struct InvoiceData {
    object: Invoice,
}

#[derive(Debug, Deserialize)]
struct InvoicePaid {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: InvoiceData,
}

#[tokio::test]
async fn typed_handler_gets_the_event_and_its_delivery() {
    let seen: Arc<Mutex<Option<Value>>> = Arc::new(Mutex::new(None));
    let events = EventRouter::new().on("invoice.paid", {
        let seen = Arc::clone(&seen);
        move |event: Event<InvoicePaid>| {
            let seen = Arc::clone(&seen);
            async move {
                let d = event.data();
                let o = &d.data.object;
                *seen.lock().unwrap() = Some(json!({
                    "id": d.id,
                    "kind": d.kind,
                    "invoice": o.id,
                    "amount": o.amount,
                    "currency": o.currency,
                    "qty": o.lines.iter().map(|l| l.qty).sum::<u32>(),
                    "metadata": o.metadata.get("k"),
                    "delivery_id": event.delivery_id(),
                    "event_type": event.event_type(),
                    "action": event.action(),
                    "timestamp": event.delivery().timestamp_unix(),
                    "timestamp_rfc": event.delivery().timestamp().map(|t| t.unix_timestamp()),
                    "provider": event.delivery().provider().name(),
                    "body": String::from_utf8_lossy(event.body()),
                }));
                Ok::<(), HandlerError>(())
            }
        }
    });
    let router = dispatch_app(&stripe(None, None), events);
    let body = event(
        "evt_typed_1",
        "invoice.paid",
        json!({"id": "in_1", "amount": 4200, "currency": "eur", "lines": [{"qty": 2}, {"qty": 3}],
               "metadata": {"k": 9}}),
    );
    let response = send(router, stripe_request(body.clone())).await;
    assert_json(
        "typed",
        response,
        StatusCode::OK,
        json!({"status": "processed", "id": "evt_typed_1", "type": "invoice.paid"}),
    )
    .await;
    let seen = seen.lock().unwrap().clone().expect("the handler did not run");
    assert_eq!(
        seen,
        json!({
            "id": "evt_typed_1", "kind": "invoice.paid", "invoice": "in_1", "amount": 4200,
            "currency": "eur", "qty": 5, "metadata": 9,
            "delivery_id": "evt_typed_1", "event_type": "invoice.paid", "action": null,
            "timestamp": NOW, "timestamp_rfc": NOW, "provider": "stripe", "body": body,
        })
    );
}

#[tokio::test]
async fn github_action_handler_is_preferred_then_the_bare_type() {
    let log = new_log();
    let events = EventRouter::new()
        .on("issues.opened", recorder(&log, "opened"))
        .on("issues", recorder(&log, "issues"));
    let router = dispatch_app(&github(), events);
    let cases = [
        (r#"{"action":"opened","issue":{"number":1}}"#, "opened:issues"),
        (r#"{"action":"closed","issue":{"number":1}}"#, "issues:issues"),
        (r#"{"issue":{"number":2}}"#, "issues:issues"),
        (r#"{"action":"reopened","issue":{"number":3}}"#, "issues:issues"),
    ];
    for (n, (body, expected)) in cases.iter().enumerate() {
        let delivery = format!("gh-delivery-{n}");
        let response = send(router.clone(), github_request("issues", &delivery, body)).await;
        assert_json(
            body,
            response,
            StatusCode::OK,
            json!({"status": "processed", "id": delivery, "type": "issues"}),
        )
        .await;
        assert_eq!(
            entries(&log).last().map(String::as_str),
            Some(*expected),
            "{body}"
        );
    }
    assert_eq!(entries(&log).len(), cases.len(), "one handler per event");

    // Only the action-specific handler: another action is not handled.
    let log = new_log();
    let router = dispatch_app(
        &github(),
        EventRouter::new().on("issues.opened", recorder(&log, "opened")),
    );
    let response = send(
        router.clone(),
        github_request("issues", "gh-x", r#"{"action":"closed"}"#),
    )
    .await;
    assert_json(
        "closed, only opened registered",
        response,
        StatusCode::OK,
        json!({"status": "ignored", "id": "gh-x", "type": "issues"}),
    )
    .await;
    // The action refines the header's type, not another event's.
    let response = send(
        router,
        github_request("pull_request", "gh-y", r#"{"action":"opened"}"#),
    )
    .await;
    assert_json(
        "pull_request opened",
        response,
        StatusCode::OK,
        json!({"status": "ignored", "id": "gh-y", "type": "pull_request"}),
    )
    .await;
    assert!(entries(&log).is_empty(), "{:?}", entries(&log));
}

#[tokio::test]
async fn on_any_runs_after_the_matching_handler_for_every_event() {
    let log = new_log();
    let events = EventRouter::new()
        .on_any(recorder(&log, "any"))
        .on("invoice.paid", recorder(&log, "on"));
    let router = dispatch_app(&stripe(None, None), events);
    let response = send(
        router.clone(),
        stripe_request(event("evt_any_1", "invoice.paid", json!({}))),
    )
    .await;
    assert_json(
        "matched",
        response,
        StatusCode::OK,
        json!({"status": "processed", "id": "evt_any_1", "type": "invoice.paid"}),
    )
    .await;
    assert_eq!(entries(&log), ["on:invoice.paid", "any:invoice.paid"]);
    let response = send(
        router,
        stripe_request(event("evt_any_2", "customer.created", json!({}))),
    )
    .await;
    assert_json(
        "unmatched",
        response,
        StatusCode::OK,
        json!({"status": "processed", "id": "evt_any_2", "type": "customer.created"}),
    )
    .await;
    assert_eq!(
        entries(&log),
        ["on:invoice.paid", "any:invoice.paid", "any:customer.created"]
    );
}

#[tokio::test]
async fn fallback_runs_only_when_nothing_matched() {
    let log = new_log();
    let events = EventRouter::new()
        .on("invoice.paid", recorder(&log, "on"))
        .fallback(recorder(&log, "fallback"))
        .on_any(recorder(&log, "any"))
        .unhandled_status(StatusCode::ACCEPTED);
    let router = dispatch_app(&stripe(None, None), events);
    let response = send(
        router.clone(),
        stripe_request(event("evt_fb_1", "customer.created", json!({}))),
    )
    .await;
    assert_json(
        "fallback",
        response,
        StatusCode::OK,
        json!({"status": "processed", "id": "evt_fb_1", "type": "customer.created"}),
    )
    .await;
    assert_eq!(
        entries(&log),
        ["fallback:customer.created", "any:customer.created"]
    );
    let response = send(
        router.clone(),
        stripe_request(event("evt_fb_2", "invoice.paid", json!({}))),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        entries(&log)[2..],
        ["on:invoice.paid".to_owned(), "any:invoice.paid".to_owned()]
    );
    // A body with no type at all goes to the fallback too.
    let response = send(router, stripe_request(r#"{"id":"evt_fb_3"}"#)).await;
    assert_json(
        "no type",
        response,
        StatusCode::OK,
        json!({"status": "processed", "id": "evt_fb_3", "type": null}),
    )
    .await;
    assert_eq!(entries(&log)[4..], ["fallback:-".to_owned(), "any:-".to_owned()]);
}

#[tokio::test]
async fn unhandled_event_is_ignored_with_a_configurable_status() {
    let log = new_log();
    let base = EventRouter::new().on("invoice.paid", recorder(&log, "on"));
    let body = || event("evt_ign_1", "customer.created", json!({}));
    let expected = json!({"status": "ignored", "id": "evt_ign_1", "type": "customer.created"});

    let router = dispatch_app(&stripe(None, None), base.clone());
    assert_json(
        "default",
        send(router, stripe_request(body())).await,
        StatusCode::OK,
        expected.clone(),
    )
    .await;

    let router = dispatch_app(
        &stripe(None, None),
        base.clone().unhandled_status(StatusCode::ACCEPTED),
    );
    assert_json(
        "202",
        send(router.clone(), stripe_request(body())).await,
        StatusCode::ACCEPTED,
        expected.clone(),
    )
    .await;
    assert!(entries(&log).is_empty());
    // A handled event is still 200 processed.
    let response = send(
        router,
        stripe_request(event("evt_ign_2", "invoice.paid", json!({}))),
    )
    .await;
    assert_json(
        "handled",
        response,
        StatusCode::OK,
        json!({"status": "processed", "id": "evt_ign_2", "type": "invoice.paid"}),
    )
    .await;
    assert_eq!(entries(&log), ["on:invoice.paid"]);

    // The router the status was set on is a copy: `base` keeps 200.
    let router = dispatch_app(&stripe(None, None), base);
    assert_eq!(
        send(router, stripe_request(body())).await.status(),
        StatusCode::OK
    );

    // An empty router ignores everything.
    let router = dispatch_app(&stripe(None, None), EventRouter::new());
    assert_json(
        "empty router",
        send(router, stripe_request(body())).await,
        StatusCode::OK,
        expected,
    )
    .await;
}

#[tokio::test]
async fn typed_mismatch_is_422_invalid_payload_with_pointer() {
    let calls = Arc::new(AtomicUsize::new(0));
    let events = EventRouter::new().on("invoice.paid", {
        let calls = Arc::clone(&calls);
        move |_event: Event<InvoicePaid>| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<(), HandlerError>(()))
        }
    });
    let router = dispatch_app(&stripe(None, None), events);
    let cases = [
        (
            json!({"id": "in_1", "amount": "LEAKY-AMOUNT-STRING", "currency": "eur"}),
            "/data/object/amount",
            "LEAKY-AMOUNT-STRING",
        ),
        (
            json!({"id": "in_1", "amount": 1, "currency": ["LEAKY-CURRENCY"]}),
            "/data/object/currency",
            "LEAKY-CURRENCY",
        ),
        (
            json!({"id": "in_1", "amount": 1, "currency": "eur",
                   "lines": [{"qty": 1}, {"qty": "LEAKY-QTY"}]}),
            "/data/object/lines/1/qty",
            "LEAKY-QTY",
        ),
        (
            json!({"id": "in_1", "amount": 1, "currency": "eur", "metadata": {"a/b~c": "LEAKY-META"}}),
            "/data/object/metadata/a~1b~0c",
            "LEAKY-META",
        ),
        (
            json!({"id": "in_1", "amount": 1, "LEAKY-EXTRA": "ignored"}),
            "/data/object",
            "LEAKY-EXTRA-VALUE-NEVER-PRESENT",
        ),
    ];
    for (object, pointer, canary) in cases {
        let body = event("evt_mis", "invoice.paid", object);
        let response = send(router.clone(), stripe_request(body.clone())).await;
        let (rejection, doc) = assert_problem(
            &body,
            response,
            RejectionKind::InvalidPayload,
            "stripe",
            &[canary],
        )
        .await;
        assert_eq!(doc["pointer"], json!(pointer), "{body}: {doc}");
        assert_eq!(rejection.pointer(), Some(pointer));
    }
    // Negative for a u64: also 422 at the member.
    let body = event(
        "evt_mis",
        "invoice.paid",
        json!({"id": "in_1", "amount": -5, "currency": "eur"}),
    );
    let response = send(router.clone(), stripe_request(body)).await;
    let (_, doc) = assert_problem("negative", response, RejectionKind::InvalidPayload, "stripe", &[]).await;
    assert_eq!(doc["pointer"], json!("/data/object/amount"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Without a schema, the router itself refuses a verified body that is not
/// JSON or repeats a key (400), as `dispatch`'s docs say, whether or not a
/// handler could be matched: for body-typed schemes (Stripe) such a body
/// has no readable event type at all.
#[tokio::test]
async fn dispatch_without_schema_refuses_non_json_and_duplicate_keys() {
    let log = new_log();
    let routers = [
        ("on_any", EventRouter::new().on_any(recorder(&log, "any"))),
        ("on", EventRouter::new().on("invoice.paid", recorder(&log, "on"))),
    ];
    let dup = r#"{"id":"evt_dup","type":"invoice.paid","type":"invoice.paid","data":{"object":{}}}"#;
    let nested = r#"{"id":"evt_dup2","type":"invoice.paid","data":{"object":{"amount":1,"amount":2}}}"#;
    let mut wrong = Vec::new();
    for (name, events) in routers {
        let router = dispatch_app(&stripe(None, None), events);
        for (body, kind) in [
            ("LEAKY not json", RejectionKind::InvalidJson),
            (dup, RejectionKind::DuplicateKeys),
            (nested, RejectionKind::DuplicateKeys),
        ] {
            let response = send(router.clone(), stripe_request(body)).await;
            if response.status() != kind.status() {
                let status = response.status();
                let text = String::from_utf8_lossy(&body_bytes(response).await).into_owned();
                wrong.push(format!(
                    "{name} router, body {body}: expected {}, got {status} {text}",
                    kind.reason()
                ));
                continue;
            }
            assert_problem(&format!("{name}: {body}"), response, kind, "stripe", &["LEAKY"]).await;
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    assert!(entries(&log).is_empty(), "{:?}", entries(&log));
}

#[tokio::test]
async fn handler_error_is_500_and_never_shows_the_message() {
    let events = EventRouter::new()
        .on("invoice.paid", |_e: Event<Value>| async {
            Err::<(), _>(HandlerError::msg(
                "LEAKY-HANDLER-MESSAGE postgres://user:hunter2@db",
            ))
        })
        .on("invoice.voided", |_e: Event<Value>| async {
            Err::<(), _>(std::io::Error::other("LEAKY-IO-ERROR"))
        });
    let router = dispatch_app(&stripe(None, None), events);
    for (kind, canary) in [
        ("invoice.paid", "LEAKY-HANDLER-MESSAGE"),
        ("invoice.voided", "LEAKY-IO-ERROR"),
    ] {
        let response = send(router.clone(), stripe_request(event("evt_he_1", kind, json!({})))).await;
        assert_problem(
            kind,
            response,
            RejectionKind::HandlerError,
            "stripe",
            &[canary, "hunter2"],
        )
        .await;
    }
}

#[tokio::test]
async fn with_dedupe_a_handler_error_releases_the_claim_and_success_completes_it() {
    let calls = Arc::new(AtomicUsize::new(0));
    let events = EventRouter::new().on("invoice.paid", {
        let calls = Arc::clone(&calls);
        move |_e: Event<Value>| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n == 1 {
                    Err(HandlerError::msg("the first attempt fails"))
                } else {
                    Ok(())
                }
            }
        }
    });
    let verifier = stripe(None, Some(dedupe(MemoryStore::new(), "stripe")));
    let router = dispatch_app(&verifier, events);
    let body = event("evt_dd_1", "invoice.paid", json!({}));
    let response = send(router.clone(), stripe_request(body.clone())).await;
    assert_problem("first", response, RejectionKind::HandlerError, "stripe", &[]).await;
    let response = send(router.clone(), stripe_request(body.clone())).await;
    assert_json(
        "retry",
        response,
        StatusCode::OK,
        json!({"status": "processed", "id": "evt_dd_1", "type": "invoice.paid"}),
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the retry ran the handler again");
    let response = send(router, stripe_request(body)).await;
    assert_json(
        "after success",
        response,
        StatusCode::OK,
        json!({"status": "duplicate", "id": "evt_dd_1", "type": "invoice.paid"}),
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[derive(Debug, Deserialize)]
struct SlashCommand {
    command: String,
    text: String,
}

#[tokio::test]
async fn slack_form_body_dispatches_to_its_command() {
    let seen = new_log();
    let log = new_log();
    let events = EventRouter::new()
        .on("/weather", {
            let seen = Arc::clone(&seen);
            move |event: Event<SlashCommand>| {
                seen.lock().unwrap().push(format!(
                    "{}|{}|{}",
                    event.data().command,
                    event.data().text,
                    event.delivery().is_form_encoded()
                ));
                std::future::ready(Ok::<(), HandlerError>(()))
            }
        })
        .on("interactive", recorder(&log, "interactive"));
    let router = dispatch_app(&slack(None, Some(slack_schemas())), events);
    let form = "token=xyz&team_id=T1&command=%2Fweather&text=94070+and%20more%21&user_id=U1";
    let response = send(router.clone(), slack_request(form, Some(FORM))).await;
    assert_json(
        "slash command",
        response,
        StatusCode::OK,
        json!({"status": "processed", "id": null, "type": "/weather"}),
    )
    .await;
    assert_eq!(entries(&seen), ["/weather|94070 and more!|true"]);

    let payload = "payload=%7B%22type%22%3A%22block_actions%22%7D";
    let response = send(router.clone(), slack_request(payload, Some(FORM))).await;
    assert_json(
        "interactive",
        response,
        StatusCode::OK,
        json!({"status": "processed", "id": null, "type": "interactive"}),
    )
    .await;
    assert_eq!(entries(&log), ["interactive:interactive"]);

    // A command no handler takes is ignored; a form missing `text` is a
    // typed mismatch, not a signature failure.
    let response = send(
        router.clone(),
        slack_request("command=%2Fother&text=x", Some(FORM)),
    )
    .await;
    assert_json(
        "other command",
        response,
        StatusCode::OK,
        json!({"status": "ignored", "id": null, "type": "/other"}),
    )
    .await;
    let response = send(router, slack_request("command=%2Fweather", Some(FORM))).await;
    let (_, doc) = assert_problem("no text", response, RejectionKind::InvalidPayload, "slack", &[]).await;
    assert_eq!(doc["pointer"], json!(""));
    assert_eq!(entries(&seen).len(), 1);
}

/// Slack signs the body and the timestamp, not the `Content-Type`: a
/// captured JSON event relabelled as a form is the same signed delivery and
/// must not be processed again.
#[tokio::test]
async fn slack_content_type_does_not_change_a_deliverys_identity() {
    let calls = Arc::new(AtomicUsize::new(0));
    let events = EventRouter::new().on_any({
        let calls = Arc::clone(&calls);
        move |_e: Event<Value>| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<(), HandlerError>(()))
        }
    });
    let router = dispatch_app(&slack(Some(dedupe(MemoryStore::new(), "slack")), None), events);
    let body = r#"{"type":"event_callback","event_id":"Ev_replay_1","event":{"type":"message"}}"#;
    let response = send(router.clone(), slack_request(body, Some("application/json"))).await;
    assert_json(
        "first",
        response,
        StatusCode::OK,
        json!({"status": "processed", "id": "Ev_replay_1", "type": "event_callback"}),
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for ct in [FORM, "application/x-www-form-urlencoded; charset=utf-8"] {
        let response = send(router.clone(), slack_request(body, Some(ct))).await;
        let status = response.status();
        let text = String::from_utf8_lossy(&body_bytes(response).await).into_owned();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the same signed bytes relabelled {ct:?} ran the handler again: {status} {text}"
        );
    }
}

#[tokio::test]
async fn router_without_the_layer_is_a_500_configuration_error() {
    let log = new_log();
    let router = Router::new().route(
        PATH,
        post_service(EventRouter::new().on_any(recorder(&log, "any"))),
    );
    let response = send(
        router,
        stripe_request(event("evt_nl_1", "invoice.paid", json!({}))),
    )
    .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let text = String::from_utf8_lossy(&body_bytes(response).await).into_owned();
    assert!(text.contains("VerifyWebhookLayer"), "{text}");
    assert!(entries(&log).is_empty());

    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::new().route(
        PATH,
        post({
            let calls = Arc::clone(&calls);
            move |_hook: VerifiedWebhook| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                "ran"
            }
        }),
    );
    let response = send(
        router,
        stripe_request(event("evt_nl_2", "invoice.paid", json!({}))),
    )
    .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------
// 3. Handshakes
// ---------------------------------------------------------------------------

fn meta_app(events: EventRouter) -> Router {
    let verifier = Verifier::builder(Scheme::meta())
        .secret(META_SECRET)
        .handshake(Handshake::meta(META_TOKEN))
        .build()
        .unwrap();
    Router::new().route(META_PATH, post_service(events).layer(verifier.layer()))
}

fn x_app(events: EventRouter) -> Router {
    let verifier = Verifier::builder(Scheme::x())
        .secrets([X_SECRET, X_SECRET_OLD])
        .handshake(Handshake::x_crc())
        .build()
        .unwrap();
    Router::new().route(X_PATH, post_service(events).layer(verifier.layer()))
}

#[tokio::test]
async fn meta_subscription_handshake_echoes_the_challenge() {
    let log = new_log();
    let router = meta_app(EventRouter::new().on_any(recorder(&log, "any")));
    let encoded_token = META_TOKEN.replace('-', "%2D");
    for (query, challenge) in [
        (
            format!("hub.mode=subscribe&hub.verify_token={META_TOKEN}&hub.challenge=1158201444"),
            "1158201444",
        ),
        (
            format!("hub.challenge=C&hub.verify_token={encoded_token}&hub.mode=subscribe"),
            "C",
        ),
    ] {
        let response = send(router.clone(), get(&format!("{META_PATH}?{query}"))).await;
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        let ct = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(ct.starts_with("text/plain"), "{query}: {ct}");
        assert_eq!(body_bytes(response).await, challenge.as_bytes(), "{query}");
    }
    assert!(entries(&log).is_empty(), "the handshake reached the handler");
}

#[tokio::test]
async fn meta_handshake_refusals() {
    let log = new_log();
    let router = meta_app(EventRouter::new().on_any(recorder(&log, "any")));
    let t = META_TOKEN;
    let short = &META_TOKEN[..META_TOKEN.len() - 1];
    let upper = META_TOKEN.to_uppercase();
    let rejected = [
        "hub.mode=subscribe&hub.verify_token=wrong-token&hub.challenge=C".to_owned(),
        format!("hub.mode=subscribe&hub.verify_token={t}x&hub.challenge=C"),
        format!("hub.mode=subscribe&hub.verify_token={short}&hub.challenge=C"),
        format!("hub.mode=subscribe&hub.verify_token={upper}&hub.challenge=C"),
        "hub.mode=subscribe&hub.verify_token=&hub.challenge=C".to_owned(),
        format!("hub.mode=unsubscribe&hub.verify_token={t}&hub.challenge=C"),
        format!("hub.mode=SUBSCRIBE&hub.verify_token={t}&hub.challenge=C"),
        format!("hub.verify_token={t}&hub.challenge=C"),
        "hub.mode=subscribe&hub.challenge=C".to_owned(),
        format!("hub.mode=subscribe&hub.verify_token={t}&hub.verify_token={t}&hub.challenge=C"),
        format!("hub.mode=subscribe&hub.verify_token={t}&hub.verify_token=other&hub.challenge=C"),
        format!("hub.mode=subscribe&hub.verify_token=other&hub.verify_token={t}&hub.challenge=C"),
        format!("hub.mode=subscribe&hub.mode=subscribe&hub.verify_token={t}&hub.challenge=C"),
        String::new(),
    ];
    for query in &rejected {
        let response = send(router.clone(), get(&format!("{META_PATH}?{query}"))).await;
        assert_problem(
            query,
            response,
            RejectionKind::HandshakeRejected,
            "meta",
            &[META_SECRET],
        )
        .await;
    }
    let response = send(router.clone(), get(META_PATH)).await;
    assert_problem(
        "no query",
        response,
        RejectionKind::HandshakeRejected,
        "meta",
        &[],
    )
    .await;
    for query in [
        format!("hub.mode=subscribe&hub.verify_token={t}"),
        format!("hub.mode=subscribe&hub.verify_token={t}&hub.challenge="),
    ] {
        let response = send(router.clone(), get(&format!("{META_PATH}?{query}"))).await;
        assert_problem(
            &query,
            response,
            RejectionKind::MissingChallenge,
            "meta",
            &[META_TOKEN, META_SECRET],
        )
        .await;
    }
    assert!(entries(&log).is_empty());
}

#[tokio::test]
async fn meta_post_needs_its_signature_and_is_typed_by_object() {
    let log = new_log();
    let router = meta_app(EventRouter::new().on("page", recorder(&log, "page")));
    let body = r#"{"object":"page","entry":[{"id":"1","time":1700000000,"changes":[]}]}"#;

    let signer = TestSigner::new(&Scheme::meta(), META_SECRET).unwrap();
    let headers = signer.headers(body.as_bytes());
    let expected = format!(
        "sha256={}",
        hex::encode(hmac_sha256(META_SECRET.as_bytes(), body.as_bytes()))
    );
    assert_eq!(
        headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok()),
        Some(expected.as_str()),
        "TestSigner and an independent HMAC disagree"
    );

    // Hand-built, without the signer: the header alone is enough.
    let request = Request::post(META_PATH)
        .header("x-hub-signature-256", &expected)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = send(router.clone(), request).await;
    assert_json(
        "signed",
        response,
        StatusCode::OK,
        json!({"status": "processed", "id": null, "type": "page"}),
    )
    .await;
    assert_eq!(entries(&log), ["page:page"]);

    let other = r#"{"object":"whatsapp_business_account","entry":[]}"#;
    let response = send(router.clone(), signer.request(META_PATH, other)).await;
    assert_json(
        "another object",
        response,
        StatusCode::OK,
        json!({"status": "ignored", "id": null, "type": "whatsapp_business_account"}),
    )
    .await;

    // Unsigned, even with a valid handshake query, and wrongly signed.
    let handshake = format!("{META_PATH}?hub.mode=subscribe&hub.verify_token={META_TOKEN}&hub.challenge=C");
    let request = Request::post(handshake.as_str()).body(Body::from(body)).unwrap();
    let response = send(router.clone(), request).await;
    assert_problem(
        "unsigned post",
        response,
        RejectionKind::MissingSignature,
        "meta",
        &[],
    )
    .await;
    let mut request = signer.request(handshake.as_str(), body);
    *request.body_mut() = Body::from(other);
    let response = send(router.clone(), request).await;
    assert_problem(
        "signed for another body",
        response,
        RejectionKind::SignatureMismatch,
        "meta",
        &[],
    )
    .await;
    let request = TestSigner::new(&Scheme::meta(), "another-app-secret")
        .unwrap()
        .request(META_PATH, body);
    let response = send(router.clone(), request).await;
    assert_problem(
        "other secret",
        response,
        RejectionKind::SignatureMismatch,
        "meta",
        &[META_SECRET],
    )
    .await;
    let request = Request::post(META_PATH)
        .header("x-hub-signature-256", expected.replace("sha256=", "sha1="))
        .body(Body::from(body))
        .unwrap();
    let response = send(router, request).await;
    assert_problem(
        "wrong prefix",
        response,
        RejectionKind::MalformedSignature,
        "meta",
        &[],
    )
    .await;
    assert_eq!(entries(&log), ["page:page"]);
}

#[tokio::test]
async fn x_crc_is_answered_with_the_first_secret() {
    let log = new_log();
    let router = x_app(EventRouter::new().on_any(recorder(&log, "any")));
    for (query, token) in [
        ("crc_token=abc", "abc"),
        ("crc_token=Zm9vYmFy%2B%2F%3D", "Zm9vYmFy+/="),
        ("other=1&crc_token=A-b_c.9", "A-b_c.9"),
    ] {
        let response = send(router.clone(), get(&format!("{X_PATH}?{query}"))).await;
        let first = format!(
            "sha256={}",
            b64(&hmac_sha256(X_SECRET.as_bytes(), token.as_bytes()))
        );
        let second = format!(
            "sha256={}",
            b64(&hmac_sha256(X_SECRET_OLD.as_bytes(), token.as_bytes()))
        );
        assert_ne!(first, second);
        assert_json(
            query,
            response,
            StatusCode::OK,
            json!({ "response_token": first }),
        )
        .await;
    }
    assert!(entries(&log).is_empty());

    let json_like = r#"{"a":1}"#;
    let oracle = hmac_sha256(X_SECRET.as_bytes(), json_like.as_bytes());
    let (oracle_b64, oracle_hex) = (b64(&oracle), hex::encode(oracle));
    let long = format!("crc_token={}", "a".repeat(513));
    for query in [
        "",
        "crc_token=",
        "crc_token",
        "other=abc",
        "crc_token=%7B%22a%22%3A1%7D",
        "crc_token=a&crc_token=b",
        "crc_token=a%20b",
        long.as_str(),
    ] {
        let uri = if query.is_empty() {
            X_PATH.to_owned()
        } else {
            format!("{X_PATH}?{query}")
        };
        let response = send(router.clone(), get(&uri)).await;
        assert_problem(
            query,
            response,
            RejectionKind::MissingChallenge,
            "x",
            &[&oracle_b64, &oracle_hex, X_SECRET],
        )
        .await;
    }
    assert!(entries(&log).is_empty());
}

/// An X delivery signed independently of the crate.
fn x_request(secret: &str, body: &str) -> Request<Body> {
    Request::post(X_PATH)
        .header(
            "x-twitter-webhooks-signature",
            format!("sha256={}", b64(&hmac_sha256(secret.as_bytes(), body.as_bytes()))),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn x_delivery_is_typed_by_its_first_events_key_in_document_order() {
    let log = new_log();
    let mut events = EventRouter::new();
    for name in [
        "tweet_create_events",
        "favorite_events",
        "z_events",
        "a_events",
        "follow_events",
        "x_events",
    ] {
        events = events.on(name, recorder(&log, name));
    }
    let router = x_app(events);
    let cases = [
        (
            r#"{"for_user_id":"1","tweet_create_events":[],"favorite_events":[]}"#,
            "tweet_create_events",
        ),
        (
            r#"{"for_user_id":"1","favorite_events":[],"tweet_create_events":[]}"#,
            "favorite_events",
        ),
        (r#"{"z_events":[],"a_events":[]}"#, "z_events"),
        (
            r#"{"for_user_id":"1","user":{"x_events":[]},"follow_events":[{"a":{"b_events":1}}]}"#,
            "follow_events",
        ),
    ];
    for (n, (body, kind)) in cases.iter().enumerate() {
        let secret = if n % 2 == 0 { X_SECRET } else { X_SECRET_OLD };
        let response = send(router.clone(), x_request(secret, body)).await;
        assert_json(
            body,
            response,
            StatusCode::OK,
            json!({"status": "processed", "id": null, "type": kind}),
        )
        .await;
        assert_eq!(
            entries(&log).last().cloned(),
            Some(format!("{kind}:{kind}")),
            "{body}"
        );
    }
    let response = send(router.clone(), x_request(X_SECRET, r#"{"for_user_id":"1"}"#)).await;
    assert_json(
        "no _events key",
        response,
        StatusCode::OK,
        json!({"status": "ignored", "id": null, "type": null}),
    )
    .await;
    assert_eq!(entries(&log).len(), cases.len());

    // The signer writes the same header as the independent computation.
    let body = r#"{"tweet_create_events":[]}"#;
    let signed = TestSigner::new(&Scheme::x(), X_SECRET)
        .unwrap()
        .headers(body.as_bytes());
    assert_eq!(
        signed.get("x-twitter-webhooks-signature"),
        x_request(X_SECRET, body)
            .headers()
            .get("x-twitter-webhooks-signature")
    );

    // Forged, unsigned, hex-encoded.
    let mut forged = x_request(X_SECRET, body);
    *forged.body_mut() = Body::from(r#"{"favorite_events":[]}"#);
    let response = send(router.clone(), forged).await;
    assert_problem("forged", response, RejectionKind::SignatureMismatch, "x", &[]).await;
    let response = send(
        router.clone(),
        Request::post(X_PATH).body(Body::from(body)).unwrap(),
    )
    .await;
    assert_problem("unsigned", response, RejectionKind::MissingSignature, "x", &[]).await;
    let hex_signed = Request::post(X_PATH)
        .header(
            "x-twitter-webhooks-signature",
            format!(
                "sha256={}",
                hex::encode(hmac_sha256(X_SECRET.as_bytes(), body.as_bytes()))
            ),
        )
        .body(Body::from(body))
        .unwrap();
    let response = send(router, hex_signed).await;
    assert_problem("hex", response, RejectionKind::MalformedSignature, "x", &[]).await;
    assert_eq!(entries(&log).len(), cases.len());
}

#[tokio::test]
async fn get_on_a_route_without_a_handshake_is_405() {
    let (router, calls) = app(&stripe(None, None));
    let response = send(router, get(&format!("{PATH}?hub.mode=subscribe&crc_token=abc"))).await;
    let ct_allow = response.headers().get(header::ALLOW).cloned();
    assert_problem(
        "stripe GET",
        response,
        RejectionKind::MethodNotAllowed,
        "stripe",
        &[],
    )
    .await;
    assert_eq!(ct_allow, Some(HeaderValue::from_static("POST")));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let log = new_log();
    let router = dispatch_app(&github(), EventRouter::new().on_any(recorder(&log, "any")));
    let response = send(router, get(PATH)).await;
    assert_problem(
        "github GET",
        response,
        RejectionKind::MethodNotAllowed,
        "github",
        &[],
    )
    .await;

    // A route with a handshake answers only GET; other methods are 405.
    let router = x_app(EventRouter::new().on_any(recorder(&log, "any")));
    let request = Request::put(format!("{X_PATH}?crc_token=abc"))
        .body(Body::empty())
        .unwrap();
    let response = send(router, request).await;
    assert_problem("x PUT", response, RejectionKind::MethodNotAllowed, "x", &[]).await;
    assert!(entries(&log).is_empty());
}

#[tokio::test]
async fn slack_url_verification_is_answered_by_the_layer() {
    let store = Counting::new(MemoryStore::new());
    let log = new_log();
    let events = EventRouter::new()
        .on("url_verification", recorder(&log, "on"))
        .on_any(recorder(&log, "any"))
        .fallback(recorder(&log, "fallback"));
    let router = dispatch_app(&slack(Some(dedupe(store.clone(), "slack")), None), events);
    let challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P";
    let body = format!(
        r#"{{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"{challenge}","type":"url_verification"}}"#
    );
    for _ in 0..2 {
        let response = send(router.clone(), slack_request(&body, None)).await;
        assert_json(
            "url_verification",
            response,
            StatusCode::OK,
            json!({ "challenge": challenge }),
        )
        .await;
    }
    assert!(entries(&log).is_empty(), "{:?}", entries(&log));
    assert_eq!(store.calls(), 0, "url_verification touched the dedupe store");

    // Unsigned, wrongly signed, stale: 401, never the challenge.
    let unsigned = Request::post(PATH).body(Body::from(body.clone())).unwrap();
    let response = send(router.clone(), unsigned).await;
    assert_problem(
        "unsigned",
        response,
        RejectionKind::MissingSignature,
        "slack",
        &[challenge],
    )
    .await;
    let forged = TestSigner::new(&Scheme::slack(), "not-the-slack-secret")
        .unwrap()
        .timestamp(NOW)
        .request(PATH, body.clone());
    let response = send(router.clone(), forged).await;
    assert_problem(
        "forged",
        response,
        RejectionKind::SignatureMismatch,
        "slack",
        &[challenge],
    )
    .await;
    let stale = TestSigner::new(&Scheme::slack(), SLACK_SECRET)
        .unwrap()
        .timestamp(NOW - 3600)
        .request(PATH, body.clone());
    let response = send(router.clone(), stale).await;
    assert_problem(
        "stale",
        response,
        RejectionKind::TimestampOutOfTolerance,
        "slack",
        &[challenge],
    )
    .await;
    assert!(entries(&log).is_empty());
    assert_eq!(store.calls(), 0);

    // Control: an ordinary event does reach the handler and the store.
    let response = send(
        router,
        slack_request(r#"{"type":"event_callback","event_id":"Ev1"}"#, None),
    )
    .await;
    assert_json(
        "event_callback",
        response,
        StatusCode::OK,
        json!({"status": "processed", "id": "Ev1", "type": "event_callback"}),
    )
    .await;
    assert_eq!(entries(&log), ["fallback:event_callback", "any:event_callback"]);
    assert!(store.calls() > 0);
}

#[test]
fn meta_verify_token_must_be_clean() {
    for token in ["", " ", "   ", "\t", " vt42", "vt42 ", "\tvt42", "vt42\n"] {
        let built = Verifier::builder(Scheme::meta())
            .secret(META_SECRET)
            .handshake(Handshake::meta(token))
            .build();
        assert!(
            matches!(built, Err(ConfigError::InvalidHandshake { .. })),
            "{token:?}: {built:?}"
        );
        if let Err(e) = built {
            assert!(!e.to_string().contains("vt42"), "{e}");
        }
    }
    let built = Verifier::builder(Scheme::meta())
        .secret(META_SECRET)
        .handshake(Handshake::meta("vt42"))
        .build();
    assert!(built.is_ok(), "{built:?}");
}

// ---------------------------------------------------------------------------
// 4. Fast acknowledgement
// ---------------------------------------------------------------------------

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

fn queue_app(verifier: &Verifier, queue: AckQueue) -> Router {
    Router::new().route(PATH, post_service(queue).layer(verifier.layer()))
}

/// A handler that reports the delivery id it starts on, waits for a permit
/// from `gate`, then counts itself done.
struct Gated {
    started: mpsc::UnboundedReceiver<String>,
    gate: Arc<Semaphore>,
    done: Arc<AtomicUsize>,
}

fn gated() -> (EventRouter, Gated) {
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let gate = Arc::new(Semaphore::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let events = EventRouter::new().on_any({
        let (gate, done) = (Arc::clone(&gate), Arc::clone(&done));
        move |event: Event<Value>| {
            let (tx, gate, done) = (tx.clone(), Arc::clone(&gate), Arc::clone(&done));
            let id = event.delivery_id().unwrap_or("-").to_owned();
            async move {
                let _ = tx.send(id);
                gate.acquire().await.unwrap().forget();
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }
    });
    (
        events,
        Gated {
            started: rx,
            gate,
            done,
        },
    )
}

impl Gated {
    async fn next_started(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(10), self.started.recv())
            .await
            .expect("no queued handler started")
            .expect("channel closed")
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }
}

fn accepted(id: &str) -> Value {
    json!({"status": "accepted", "id": id, "type": "invoice.paid"})
}

async fn assert_queue_full(what: &str, response: Response) {
    assert_queue_refused(what, response, RejectionKind::QueueFull).await;
}

async fn assert_shutting_down(what: &str, response: Response) {
    assert_queue_refused(what, response, RejectionKind::ShuttingDown).await;
}

async fn assert_queue_refused(what: &str, response: Response, kind: RejectionKind) {
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry.is_some_and(|r| r >= 1),
        "{what}: Retry-After {:?}",
        response.headers().get(header::RETRY_AFTER)
    );
    let doc = problem(what, response, kind, &[]).await;
    assert_eq!(doc["retry_after"], json!(retry.unwrap()), "{what}: {doc}");
}

#[tokio::test]
async fn ack_queue_answers_202_before_the_handler_finishes() {
    let release = Arc::new(Notify::new());
    let (started_tx, mut started_rx) = mpsc::unbounded_channel::<()>();
    let done = Arc::new(AtomicUsize::new(0));
    let events = EventRouter::new().on("invoice.paid", {
        let (release, done) = (Arc::clone(&release), Arc::clone(&done));
        move |event: Event<InvoicePaid>| {
            let (release, done, started) = (Arc::clone(&release), Arc::clone(&done), started_tx.clone());
            async move {
                assert_eq!(event.data().data.object.amount, 7);
                let _ = started.send(());
                release.notified().await;
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }
    });
    let (queue, handle) = AckQueue::builder().spawn(events).unwrap();
    let router = queue_app(&stripe(None, None), queue);
    let body = event(
        "evt_ack_1",
        "invoice.paid",
        json!({"id": "in_1", "amount": 7, "currency": "eur"}),
    );
    let response = send(router, stripe_request(body)).await;
    assert_json("ack", response, StatusCode::ACCEPTED, accepted("evt_ack_1")).await;
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "answered after the handler finished"
    );
    tokio::time::timeout(Duration::from_secs(10), started_rx.recv())
        .await
        .expect("the queued handler never started");
    assert_eq!(done.load(Ordering::SeqCst), 0);
    release.notify_one();
    tokio::time::timeout(Duration::from_secs(20), handle.shutdown(Duration::from_secs(20)))
        .await
        .expect("shutdown did not drain");
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn ack_queue_full_is_503_and_shutdown_drains_then_refuses() {
    let (events, mut gated) = gated();
    let (queue, handle) = AckQueue::builder()
        .capacity(nz(2))
        .workers(nz(1))
        .spawn(events)
        .unwrap();
    let router = queue_app(&stripe(None, None), queue);
    let send_id = |id: &str| {
        let request = stripe_request(event(id, "invoice.paid", json!({})));
        send(router.clone(), request)
    };
    assert_json(
        "1st",
        send_id("evt_qf_1").await,
        StatusCode::ACCEPTED,
        accepted("evt_qf_1"),
    )
    .await;
    assert_eq!(gated.next_started().await, "evt_qf_1");
    assert_json(
        "2nd, queued",
        send_id("evt_qf_2").await,
        StatusCode::ACCEPTED,
        accepted("evt_qf_2"),
    )
    .await;
    assert_queue_full("3rd", send_id("evt_qf_3").await).await;
    assert_eq!(gated.done(), 0);

    // Shutdown waits for the running and the queued job.
    let shutdown = tokio::spawn(handle.shutdown(Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!shutdown.is_finished(), "shutdown returned with jobs left");
    assert_shutting_down("during shutdown", send_id("evt_qf_4").await).await;
    gated.gate.add_permits(16);
    tokio::time::timeout(Duration::from_secs(20), shutdown)
        .await
        .expect("shutdown did not drain")
        .unwrap();
    assert_eq!(gated.done(), 2, "every accepted job ran before shutdown returned");
    assert_eq!(gated.next_started().await, "evt_qf_2");
    assert!(gated.started.try_recv().is_err(), "a refused job ran");

    assert_shutting_down("after shutdown", send_id("evt_qf_5").await).await;
    assert_eq!(gated.done(), 2);
}

#[tokio::test]
async fn ack_queue_shutdown_runs_every_accepted_job() {
    let done = Arc::new(AtomicUsize::new(0));
    let events = EventRouter::new().on_any({
        let done = Arc::clone(&done);
        move |_e: Event<Value>| {
            let done = Arc::clone(&done);
            async move {
                tokio::time::sleep(Duration::from_millis(40)).await;
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }
    });
    let (queue, handle) = AckQueue::builder()
        .capacity(nz(16))
        .workers(nz(2))
        .spawn(events)
        .unwrap();
    let router = queue_app(&stripe(None, None), queue);
    let total = 7;
    for n in 0..total {
        let id = format!("evt_drain_{n}");
        let response = send(
            router.clone(),
            stripe_request(event(&id, "invoice.paid", json!({}))),
        )
        .await;
        assert_json(&id, response, StatusCode::ACCEPTED, accepted(&id)).await;
    }
    tokio::time::timeout(Duration::from_secs(20), handle.shutdown(Duration::from_secs(20)))
        .await
        .expect("shutdown did not drain");
    assert_eq!(done.load(Ordering::SeqCst), total);
    let response = send(
        router,
        stripe_request(event("evt_drain_late", "invoice.paid", json!({}))),
    )
    .await;
    assert_shutting_down("after shutdown", response).await;
    assert_eq!(done.load(Ordering::SeqCst), total);
}

#[tokio::test]
async fn ack_queue_failing_handler_does_not_change_the_202() {
    let calls = Arc::new(AtomicUsize::new(0));
    let events = EventRouter::new()
        .on("invoice.paid", {
            let calls = Arc::clone(&calls);
            move |_e: Event<Value>| {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Err::<(), _>(HandlerError::msg("LEAKY fails after the ack")))
            }
        })
        .on("invoice.voided", {
            let calls = Arc::clone(&calls);
            move |_e: Event<InvoicePaid>| {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Ok::<(), HandlerError>(()))
            }
        });
    let (queue, handle) = AckQueue::builder().spawn(events).unwrap();
    let router = queue_app(&stripe(None, None), queue);
    let response = send(
        router.clone(),
        stripe_request(event("evt_fail_1", "invoice.paid", json!({}))),
    )
    .await;
    let text = format!("{:?}", response.headers());
    assert!(!text.contains("LEAKY"));
    assert_json("failing", response, StatusCode::ACCEPTED, accepted("evt_fail_1")).await;
    // A typed mismatch is found only after the ack, too.
    let response = send(
        router,
        stripe_request(event("evt_fail_2", "invoice.voided", json!({"amount": "x"}))),
    )
    .await;
    assert_json(
        "mismatch",
        response,
        StatusCode::ACCEPTED,
        json!({"status": "accepted", "id": "evt_fail_2", "type": "invoice.voided"}),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(20), handle.shutdown(Duration::from_secs(20)))
        .await
        .expect("shutdown did not drain");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "only the failing handler ran");
}

#[tokio::test]
async fn ack_queue_with_dedupe() {
    let (events, mut gated) = gated();
    let (queue, handle) = AckQueue::builder()
        .capacity(nz(2))
        .workers(nz(1))
        .spawn(events)
        .unwrap();
    let store = Counting::new(MemoryStore::new());
    let verifier = stripe(Some(stripe_schemas()), Some(dedupe(store.clone(), "stripe")));
    let router = queue_app(&verifier, queue);
    let send_id = |id: &str| {
        let request = stripe_request(event(id, "invoice.paid", json!({"amount_paid": 1})));
        send(router.clone(), request)
    };
    assert_json(
        "a",
        send_id("evt_qd_a").await,
        StatusCode::ACCEPTED,
        accepted("evt_qd_a"),
    )
    .await;
    assert_eq!(gated.next_started().await, "evt_qd_a");
    // Accepted is enough for a resend to be a duplicate, even while the
    // handler is still running.
    assert_json(
        "a again",
        send_id("evt_qd_a").await,
        StatusCode::OK,
        json!({"status": "duplicate", "id": "evt_qd_a", "type": "invoice.paid"}),
    )
    .await;
    assert_json(
        "b",
        send_id("evt_qd_b").await,
        StatusCode::ACCEPTED,
        accepted("evt_qd_b"),
    )
    .await;
    assert_queue_full("c", send_id("evt_qd_c").await).await;

    // A schema failure is still refused before the queue and the store.
    let calls = store.calls();
    let response = send(
        router.clone(),
        stripe_request(event("evt_qd_bad", "invoice.paid", json!({}))),
    )
    .await;
    assert_problem("schema", response, RejectionKind::SchemaViolation, "stripe", &[]).await;
    assert_eq!(store.calls(), calls);

    // Once there is room, the refused delivery is accepted: its claim was
    // released, so it is neither a duplicate nor in progress.
    gated.gate.add_permits(1);
    assert_eq!(gated.next_started().await, "evt_qd_b");
    assert_json(
        "c again",
        send_id("evt_qd_c").await,
        StatusCode::ACCEPTED,
        accepted("evt_qd_c"),
    )
    .await;
    assert_json(
        "b again",
        send_id("evt_qd_b").await,
        StatusCode::OK,
        json!({"status": "duplicate", "id": "evt_qd_b", "type": "invoice.paid"}),
    )
    .await;
    gated.gate.add_permits(16);
    tokio::time::timeout(Duration::from_secs(20), handle.shutdown(Duration::from_secs(20)))
        .await
        .expect("shutdown did not drain");
    assert_eq!(gated.done(), 3);
    assert_eq!(gated.next_started().await, "evt_qd_c");
}

/// An `AckQueue` mounted without the layer is a configuration mistake, as
/// for an `EventRouter`: it must not answer 202 to a request nobody
/// verified.
#[tokio::test]
async fn ack_queue_without_the_layer_never_accepts() {
    let calls = Arc::new(AtomicUsize::new(0));
    let events = EventRouter::new().on_any({
        let calls = Arc::clone(&calls);
        move |_e: Event<Value>| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<(), HandlerError>(()))
        }
    });
    let (queue, handle) = AckQueue::builder().spawn(events).unwrap();
    let router = Router::new().route(PATH, post_service(queue));
    let unsigned = Request::post(PATH)
        .body(Body::from(event("evt_nolayer", "invoice.paid", json!({}))))
        .unwrap();
    let response = send(router, unsigned).await;
    let status = response.status();
    let text = String::from_utf8_lossy(&body_bytes(response).await).into_owned();
    tokio::time::timeout(Duration::from_secs(20), handle.shutdown(Duration::from_secs(20)))
        .await
        .expect("shutdown did not drain");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "an unverified request was answered {status} {text}"
    );
}
