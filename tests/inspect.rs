//! The development inspector (feature `inspect`), end to end: a real axum
//! router behind the layer with an `Inspector` as its observer, requests
//! signed like Stripe signs them, and the inspector's own router asked for
//! its page and its JSON. Checks the ring's bound, the masking of every
//! signature and token (in the JSON and in the page), the body kept only
//! with the development switch, the SHA-256, the verdicts, the `after`
//! cursor, the loopback-only rules, and that an observer that does not ask
//! for the request is given none.

#![cfg(feature = "inspect")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::routing::post;
use axum::Router;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use webhook_guard::dedupe::{Dedupe, MemoryStore};
use webhook_guard::inspect::Inspector;
use webhook_guard::observe::{Fanout, Observer, RequestRecord};
use webhook_guard::test_util::TestSigner;
use webhook_guard::{FixedClock, Scheme, Secret, Verifier, VerifierBuilder};

use support::{body_bytes, send, PATH};

const NOW: i64 = 1_700_000_000;
const SECRET: &str = "whsec_inspect_test_secret";
const BODY: &str = r#"{"id":"evt_inspected_0001","type":"invoice.paid"}"#;

fn stripe(observer: Arc<dyn Observer>) -> VerifierBuilder {
    Verifier::builder(Scheme::stripe())
        .clock(FixedClock::new(NOW))
        .secret(Secret::labeled("2026-03", SECRET))
        .observer(observer)
}

fn signer(at: i64) -> TestSigner {
    TestSigner::new(&Scheme::stripe(), SECRET).unwrap().timestamp(at)
}

fn app(verifier: &Verifier) -> Router {
    Router::new().route(PATH, post(|| async { "done" }).layer(verifier.layer()))
}

/// A signed delivery of `body`, with its signature header's value.
fn signed(at: i64, body: &str) -> (Request<Body>, String) {
    let request = signer(at).request(PATH, body.to_owned());
    let signature = request.headers()["stripe-signature"].to_str().unwrap().to_owned();
    (request, signature)
}

/// `GET uri` on the inspector's router, as a loopback client would.
async fn admin(inspector: &Inspector, uri: &str) -> (StatusCode, http::HeaderMap, String) {
    let mut request = Request::get(uri)
        .header("host", "127.0.0.1:9464")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 50000))));
    let response = send(inspector.router(), request).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = body_bytes(response).await;
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

async fn entries(inspector: &Inspector, after: u64) -> Value {
    let (status, headers, body) = admin(inspector, &format!("/inspect/entries?after={after}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn the_ring_keeps_the_newest_n() {
    let inspector = Inspector::builder().keep(5).build();
    let verifier = stripe(inspector.observer()).build().unwrap();
    let app = app(&verifier);
    for _ in 0..10 {
        let response = send(app.clone(), signed(NOW, BODY).0).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(inspector.len(), 5);
    assert_eq!(inspector.last_id(), 10);
    let ids: Vec<u64> = inspector.entries_after(0).iter().map(|e| e.id()).collect();
    assert_eq!(ids, vec![10, 9, 8, 7, 6], "the five newest, newest first");
    let json = entries(&inspector, 0).await;
    assert_eq!(json["keep"], 5);
    assert_eq!(json["last"], 10);
    assert_eq!(json["entries"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn the_after_cursor_returns_only_newer_entries() {
    let inspector = Inspector::default();
    let verifier = stripe(inspector.observer()).build().unwrap();
    let app = app(&verifier);
    for _ in 0..4 {
        send(app.clone(), signed(NOW, BODY).0).await;
    }
    let json = entries(&inspector, 2).await;
    let ids: Vec<u64> = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![4, 3]);
    assert_eq!(json["last"], 4);
    assert!(entries(&inspector, 4).await["entries"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        entries(&inspector, 0).await["entries"].as_array().unwrap().len(),
        4
    );
    // A cursor from before a restart (larger than `last`): nothing, and
    // `last` tells the page to start over.
    let json = entries(&inspector, 99).await;
    assert!(json["entries"].as_array().unwrap().is_empty());
    assert_eq!(json["last"], 4);
}

#[tokio::test]
async fn signatures_and_tokens_are_masked_everywhere() {
    let inspector = Inspector::builder().mask_header("x-custom-proof").build();
    let verifier = stripe(inspector.observer()).build().unwrap();
    let (mut request, signature) = signed(NOW - 3, BODY);
    let tokens = [
        ("authorization", "Bearer tok_very_secret_bearer_value"),
        ("x-gitlab-token", "gitlab_secret_token_value"),
        ("x-custom-proof", "custom_proof_secret_value"),
        ("cookie", "session=cookie_secret_value"),
        ("x-api-key", "api_key_secret_value"),
        ("content-type", "application/json"),
    ];
    for (name, value) in tokens {
        request
            .headers_mut()
            .insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    request
        .headers_mut()
        .insert("host", HeaderValue::from_static("127.0.0.1:8080"));
    *request.uri_mut() = "/hook?hub.verify_token=query_secret_token&page=2"
        .parse()
        .unwrap();
    let response = send(app(&verifier), request).await;
    assert_eq!(response.status(), StatusCode::OK);

    let v1 = signature.split("v1=").nth(1).unwrap();
    let (_, _, json_text) = admin(&inspector, "/inspect/entries?after=0").await;
    let (_, _, page) = admin(&inspector, "/inspect").await;
    let (_, _, script) = admin(&inspector, "/inspect/app.js").await;
    let secrets = [
        v1,
        "tok_very_secret_bearer_value",
        "gitlab_secret_token_value",
        "custom_proof_secret_value",
        "cookie_secret_value",
        "api_key_secret_value",
        "query_secret_token",
        SECRET,
    ];
    for secret in secrets {
        for (what, text) in [("JSON", &json_text), ("page", &page), ("script", &script)] {
            assert!(!text.contains(secret), "{secret:?} in the {what}: {text}");
        }
    }

    let entry = &inspector.entries_after(0)[0];
    let header = |name: &str| {
        entry
            .headers()
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no {name} kept"))
            .clone()
    };
    let stripe = header("stripe-signature");
    assert!(stripe.masked);
    assert_eq!(stripe.value, format!("t={},v1=<masked, 64 bytes>", NOW - 3));
    assert_eq!(header("authorization").value, "Bearer <masked, 28 bytes>");
    assert_eq!(header("x-gitlab-token").value, "<masked, 25 bytes>");
    assert!(header("x-custom-proof").masked, "named with mask_header");
    assert!(header("cookie").masked && header("x-api-key").masked);
    let content_type = header("content-type");
    assert!(!content_type.masked);

    let json: Value = serde_json::from_str(&json_text).unwrap();
    let e = &json["entries"][0];
    assert_eq!(e["target"], "/hook?hub.verify_token=<masked, 18 bytes>&page=2");
    let curl = entry.curl().unwrap();
    assert!(
        curl.starts_with(
            "curl -sS -X 'POST' 'http://127.0.0.1:8080/hook?hub.verify_token=${HUB_VERIFY_TOKEN}&page=2'"
        ),
        "{curl}"
    );
    assert!(
        curl.contains(r#"-H 'stripe-signature: '"$STRIPE_SIGNATURE""#),
        "{curl}"
    );
    assert!(curl.contains(r#"-H 'authorization: '"$AUTHORIZATION""#), "{curl}");
    assert!(curl.contains("-H 'content-type: application/json'"), "{curl}");
    assert!(curl.ends_with("--data-binary @body.json"), "{curl}");
    assert!(!curl.contains("-H 'host:"), "curl sets the host from the URL");
}

#[tokio::test]
async fn the_body_is_kept_only_with_the_development_switch_and_its_hash_always() {
    let expected = hex::encode(Sha256::digest(BODY.as_bytes()));
    for keep_bodies in [false, true] {
        let inspector = Inspector::builder().keep_bodies(keep_bodies).build();
        let verifier = stripe(inspector.observer()).build().unwrap();
        send(app(&verifier), signed(NOW, BODY).0).await;
        let entry = &inspector.entries_after(0)[0];
        assert_eq!(entry.body_bytes(), Some(BODY.len()));
        assert_eq!(entry.body_sha256(), Some(expected.as_str()));
        let json = entries(&inspector, 0).await;
        assert_eq!(json["bodies"], keep_bodies);
        assert_eq!(json["entries"][0]["body_sha256"], expected.as_str());
        let text = json.to_string();
        if keep_bodies {
            assert_eq!(entry.body(), Some(BODY));
            assert_eq!(json["entries"][0]["body"], BODY);
        } else {
            assert_eq!(entry.body(), None);
            assert!(json["entries"][0]["body"].is_null());
            assert!(
                !text.contains("evt_inspected_0001"),
                "no byte of the body: {text}"
            );
        }
    }
}

#[tokio::test]
async fn a_kept_body_is_cut_at_its_bound() {
    let inspector = Inspector::builder().keep_bodies(true).max_body_bytes(10).build();
    let verifier = stripe(inspector.observer()).build().unwrap();
    send(app(&verifier), signed(NOW, BODY).0).await;
    let json = entries(&inspector, 0).await;
    assert_eq!(json["entries"][0]["body"], &BODY[..10]);
    assert_eq!(json["entries"][0]["body_truncated"], true);
    assert_eq!(json["entries"][0]["body_bytes"], BODY.len());
}

#[tokio::test]
async fn verdicts_for_signed_tampered_stale_and_replayed_deliveries() {
    let inspector = Inspector::default();
    let verifier = stripe(inspector.observer())
        .dedupe(Dedupe::builder(MemoryStore::new(), "inspect").build().unwrap())
        .build()
        .unwrap();
    let app = app(&verifier);

    // Signed, 7 s in transit.
    assert_eq!(
        send(app.clone(), signed(NOW - 7, BODY).0).await.status(),
        StatusCode::OK
    );
    // Tampered: signed for one body, sent with another.
    let tampered_body = BODY.replace("invoice.paid", "invoice.void");
    let mut tampered = signer(NOW).request(PATH, BODY.to_owned());
    *tampered.body_mut() = Body::from(tampered_body.clone());
    let tampered_status = send(app.clone(), tampered).await.status();
    assert_eq!(tampered_status, StatusCode::UNAUTHORIZED);
    // Stale: signed an hour ago.
    let stale_status = send(app.clone(), signed(NOW - 3600, BODY).0).await.status();
    assert!(stale_status.is_client_error());
    // Replayed: the first delivery again.
    assert_eq!(
        send(app.clone(), signed(NOW - 7, BODY).0).await.status(),
        StatusCode::OK
    );

    let all = inspector.entries_after(0);
    let [replayed, stale, tampered, first] = &all[..] else {
        panic!("four entries: {all:?}");
    };
    assert_eq!(
        (first.verdict(), first.status(), first.reason()),
        ("processed", Some(200), None)
    );
    assert_eq!(first.skew_secs(), Some(7));
    assert_eq!(first.secret_label(), Some("2026-03"));
    assert_eq!(first.route(), "stripe");
    assert_eq!(first.provider(), "stripe");
    assert!(first.hints().is_empty());

    assert_eq!(
        (tampered.verdict(), tampered.status(), tampered.reason()),
        ("rejected", Some(401), Some("signature_mismatch"))
    );
    assert_eq!(tampered.secret_label(), None);
    assert_eq!(
        tampered.body_sha256(),
        Some(hex::encode(Sha256::digest(tampered_body.as_bytes())).as_str()),
        "the hash of the bytes received, not of the signed ones"
    );

    assert_eq!(
        (stale.verdict(), stale.status(), stale.reason()),
        (
            "rejected",
            Some(stale_status.as_u16()),
            Some("timestamp_out_of_tolerance")
        )
    );
    assert_eq!(stale.skew_secs(), Some(3600));

    assert_eq!((replayed.verdict(), replayed.status()), ("duplicate", Some(200)));
    assert!(replayed.id() > first.id());
    assert!(replayed.time_ms() >= first.time_ms());
}

#[tokio::test]
async fn a_request_refused_before_its_body_was_read_has_no_hash() {
    let inspector = Inspector::default();
    let verifier = stripe(inspector.observer()).build().unwrap();
    let request = Request::post(PATH)
        .header("content-type", "application/json")
        .body(Body::from(BODY))
        .unwrap();
    assert_eq!(
        send(app(&verifier), request).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let entry = &inspector.entries_after(0)[0];
    assert_eq!(entry.reason(), Some("missing_signature"));
    assert_eq!((entry.body_bytes(), entry.body_sha256()), (None, None));
    assert!(
        !entry.curl().unwrap().contains("--data-binary"),
        "no body to send"
    );
}

#[tokio::test]
async fn hostile_values_are_data_never_markup() {
    let inspector = Inspector::default();
    let verifier = stripe(inspector.observer()).build().unwrap();
    let hostile = r#"</script><img src=x onerror=alert(1)>'"$(touch /tmp/pwned)`id`"#;
    let (mut request, _) = signed(NOW, BODY);
    request
        .headers_mut()
        .insert("x-note", HeaderValue::from_str(hostile).unwrap());
    send(app(&verifier), request).await;

    // The JSON carries the value as a string, served as JSON that no
    // browser sniffs as HTML.
    let json = entries(&inspector, 0).await;
    let note = json["entries"][0]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "x-note")
        .unwrap();
    assert_eq!(note["value"], hostile);
    // The page is static (the entries never reach it as markup) and the
    // script only ever writes text.
    let (status, headers, page) = admin(&inspector, "/inspect").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("onerror"));
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'self'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing loaded from elsewhere"
    );
    let (_, _, script) = admin(&inspector, "/inspect/app.js").await;
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!script.contains(sink), "the script uses {sink}");
    }
    // In the curl command the value is one single-quoted shell word.
    let curl = inspector.entries_after(0)[0].curl().unwrap().to_owned();
    let quoted = hostile.replace('\'', r"'\''");
    assert!(curl.contains(&format!("-H 'x-note: {quoted}'")), "{curl}");
}

#[tokio::test]
async fn each_entry_is_bounded() {
    let inspector = Inspector::builder().max_headers(4).max_value_bytes(16).build();
    let verifier = stripe(inspector.observer()).build().unwrap();
    let (mut request, _) = signed(NOW, BODY);
    for i in 0..40 {
        request.headers_mut().insert(
            HeaderName::from_bytes(format!("x-filler-{i:02}").as_bytes()).unwrap(),
            HeaderValue::from_str(&"a".repeat(1000)).unwrap(),
        );
    }
    let total = request.headers().len();
    send(app(&verifier), request).await;
    let json = entries(&inspector, 0).await;
    let e = &json["entries"][0];
    assert_eq!(e["headers"].as_array().unwrap().len(), 4);
    assert_eq!(e["headers_dropped"], total - 4);
    for h in e["headers"].as_array().unwrap() {
        assert!(
            h["value"].as_str().unwrap().len() <= 16 + "… (1000 bytes)".len(),
            "{h}"
        );
    }
}

#[tokio::test]
async fn the_router_answers_loopback_only() {
    let inspector = Inspector::default();
    let get = |peer: [u8; 4], host: &str| {
        let mut request = Request::get("/inspect/entries")
            .header("host", host)
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 40000))));
        request
    };
    let status = |request| {
        let router = inspector.router();
        async move { send(router, request).await.status() }
    };
    assert_eq!(
        status(get([127, 0, 0, 1], "127.0.0.1:9464")).await,
        StatusCode::OK
    );
    assert_eq!(
        status(get([127, 0, 0, 1], "localhost:9464")).await,
        StatusCode::OK
    );
    assert_eq!(status(get([127, 0, 0, 1], "[::1]:9464")).await, StatusCode::OK);
    assert_eq!(
        status(get([10, 1, 2, 3], "127.0.0.1:9464")).await,
        StatusCode::FORBIDDEN,
        "a peer off loopback"
    );
    assert_eq!(
        status(get([127, 0, 0, 1], "rebound.example:9464")).await,
        StatusCode::FORBIDDEN,
        "a DNS name rebound to loopback"
    );
    for path in ["/inspect", "/inspect/app.js", "/inspect/app.css"] {
        let mut request = get([192, 0, 2, 1], "127.0.0.1");
        *request.uri_mut() = path.parse().unwrap();
        assert_eq!(status(request).await, StatusCode::FORBIDDEN, "{path}");
    }
}

/// Whether each record carried the request.
#[derive(Default)]
struct Seen {
    wants: bool,
    carried: Mutex<Vec<bool>>,
}

impl Observer for Seen {
    fn wants_request(&self) -> bool {
        self.wants
    }

    fn on_request(&self, record: &RequestRecord<'_>) {
        if let Some(request) = record.request {
            assert!(request.headers.contains_key("stripe-signature"));
            assert_eq!(request.body.map(|b| b.len()), Some(BODY.len()));
            // Its Debug tells sizes, not values.
            let debug = format!("{record:?}");
            assert!(!debug.contains("v1="), "{debug}");
        }
        self.carried.lock().unwrap().push(record.request.is_some());
    }
}

#[tokio::test]
async fn only_an_observer_that_asks_is_given_the_request() {
    let plain = Arc::new(Seen::default());
    let verifier = stripe(plain.clone()).build().unwrap();
    send(app(&verifier), signed(NOW, BODY).0).await;
    assert_eq!(
        *plain.carried.lock().unwrap(),
        vec![false],
        "nothing copied, nothing to hash"
    );

    let asking = Arc::new(Seen {
        wants: true,
        ..Seen::default()
    });
    let verifier = stripe(asking.clone()).build().unwrap();
    send(app(&verifier), signed(NOW, BODY).0).await;
    assert_eq!(*asking.carried.lock().unwrap(), vec![true]);

    // Beside an inspector in a fanout, a plain observer still gets none.
    let plain = Arc::new(Seen::default());
    let inspector = Inspector::default();
    let fanout = Fanout::new().with(plain.clone()).with(inspector.observer());
    assert!(fanout.wants_request());
    let verifier = stripe(Arc::new(fanout)).build().unwrap();
    send(app(&verifier), signed(NOW, BODY).0).await;
    assert_eq!(*plain.carried.lock().unwrap(), vec![false]);
    assert_eq!(inspector.len(), 1);
    assert!(inspector.entries_after(0)[0].body_sha256().is_some());
}
