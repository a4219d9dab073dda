//! Diagnostic hints, end to end: each hint provoked by the mistake users
//! actually make (a proxy that rewrites the body, a quoted secret, the
//! test secret on the live route, a Standard Webhooks secret used raw, a
//! timestamp in milliseconds, a skewed clock), seen by the observer, the
//! metrics and the inspector, kept out of the response unless the
//! development switch is on; and a request with a wrong signature and no
//! such mistake gets none, the per-second cap holds, and a verified
//! request examines nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use serde_json::Value;
use sha2::Sha256;
use webhook_guard::hints::{Diagnostics, Hint};
use webhook_guard::observe::{Observer, RequestRecord};
use webhook_guard::test_util::TestSigner;
use webhook_guard::{FixedClock, Rejection, RejectionKind, Scheme, Secret, Verifier};

use support::{body_bytes, send, PATH};

const NOW: i64 = 1_700_000_000;
const STRIPE_SECRET: &str = "whsec_hints_live_secret_0001";
const STRIPE_TEST_SECRET: &str = "whsec_hints_test_secret_0002";
const UNRELATED: &str = "whsec_someone_else_entirely_9";
const GITHUB_SECRET: &str = "hints-github-secret";
/// A JSON body as a sender pretty-prints it: LF line endings and a
/// trailing newline.
const PRETTY: &str = "{\n  \"id\": \"evt_hints_0001\",\n  \"type\": \"invoice.paid\"\n}\n";
const COMPACT: &str = r#"{"id":"evt_hints_0002","type":"invoice.paid"}"#;

/// What the observer saw for each request: the reason and the hint codes.
#[derive(Default)]
struct Records(Mutex<Vec<(Option<RejectionKind>, Vec<Hint>)>>);

impl Observer for Records {
    fn on_request(&self, record: &RequestRecord<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((record.outcome.rejection(), record.hints.to_vec()));
    }
}

impl Records {
    fn take(&self) -> Vec<(Option<RejectionKind>, Vec<Hint>)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Route {
    router: Router,
    records: Arc<Records>,
}

fn route(
    scheme: Scheme,
    name: &str,
    secret: impl Into<Secret>,
    diagnostics: &Diagnostics,
) -> (Verifier, Route) {
    let records = Arc::new(Records::default());
    let verifier = Verifier::builder(scheme)
        .name(name)
        .secret(secret)
        .clock(FixedClock::new(NOW))
        .observer(records.clone())
        .diagnostics(diagnostics.clone())
        .build()
        .expect("route");
    let router = Router::new().route(PATH, post(|| async { "ok" }).layer(verifier.layer()));
    (verifier, Route { router, records })
}

/// A POST with these headers and this body.
fn request(headers: HeaderMap, body: impl Into<Bytes>) -> Request<axum::body::Body> {
    let mut request = Request::post(PATH)
        .body(axum::body::Body::from(body.into()))
        .expect("request");
    *request.headers_mut() = headers;
    request
}

/// Sends one request; returns the status, the problem document, the
/// rejection's hints and the observer's record.
async fn exchange(route: &Route, req: Request<axum::body::Body>) -> Exchange {
    let response = send(route.router.clone(), req).await;
    let status = response.status();
    let rejection_hints = response
        .extensions()
        .get::<Rejection>()
        .map(|r| r.hints().to_vec())
        .unwrap_or_default();
    let bytes = body_bytes(response).await;
    let problem = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
    let mut records = route.records.take();
    assert_eq!(records.len(), 1, "one record per request");
    let (reason, hints) = records.pop().unwrap();
    assert_eq!(hints, rejection_hints, "the record's hints are the rejection's");
    Exchange {
        status,
        reason,
        hints,
        problem,
    }
}

struct Exchange {
    status: StatusCode,
    reason: Option<RejectionKind>,
    hints: Vec<Hint>,
    problem: Value,
}

impl Exchange {
    fn codes(&self) -> Vec<&'static str> {
        self.hints.iter().map(Hint::code).collect()
    }

    /// Refused for `reason` with exactly the hint `code`, and no hint in
    /// the response.
    fn assert_hint(&self, reason: RejectionKind, code: &str) {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED);
        assert_eq!(self.reason, Some(reason));
        assert_eq!(self.codes(), [code]);
        assert!(
            self.problem.get("hints").is_none(),
            "no hint in the response by default: {}",
            self.problem
        );
    }

    fn assert_none(&self, reason: RejectionKind) {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED);
        assert_eq!(self.reason, Some(reason));
        assert!(self.hints.is_empty(), "{:?}", self.hints);
        assert!(self.problem.get("hints").is_none());
    }
}

fn stripe(secret: &str) -> TestSigner {
    TestSigner::new(&Scheme::stripe(), secret)
        .expect("signer")
        .timestamp(NOW)
}

fn github(secret: &str) -> TestSigner {
    TestSigner::new(&Scheme::github(), secret).expect("signer")
}

fn hex_hmac(key: &[u8], pieces: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in pieces {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn a_proxy_that_rewrites_line_endings_is_named() {
    let d = Diagnostics::new();
    let (_v, live) = route(Scheme::stripe(), "stripe", STRIPE_SECRET, &d);
    // Signed with LF, delivered with CRLF (a Windows hop, a text-mode
    // rewrite).
    let headers = stripe(STRIPE_SECRET).headers(PRETTY.as_bytes());
    let crlf = PRETTY.replace('\n', "\r\n");
    let got = exchange(&live, request(headers, crlf)).await;
    got.assert_hint(RejectionKind::SignatureMismatch, "body_line_endings_changed");
    assert!(matches!(
        got.hints[0],
        Hint::LineEndingsChanged {
            signed_crlf: false,
            ..
        }
    ));
    assert!(got.hints[0].to_string().contains("LF line endings"));

    // Signed with CRLF, delivered with LF.
    let signed = PRETTY.replace('\n', "\r\n");
    let headers = stripe(STRIPE_SECRET).headers(signed.as_bytes());
    let got = exchange(&live, request(headers, PRETTY)).await;
    got.assert_hint(RejectionKind::SignatureMismatch, "body_line_endings_changed");
    assert!(matches!(
        got.hints[0],
        Hint::LineEndingsChanged {
            signed_crlf: true,
            ..
        }
    ));
}

#[tokio::test]
async fn a_trailing_newline_added_or_removed_is_named() {
    let d = Diagnostics::new();
    let (_v, gh) = route(Scheme::github(), "github", GITHUB_SECRET, &d);
    // Signed compact, a proxy (or a logging middleware) appended a newline.
    let headers = github(GITHUB_SECRET).headers(COMPACT.as_bytes());
    let got = exchange(&gh, request(headers, format!("{COMPACT}\n"))).await;
    got.assert_hint(RejectionKind::SignatureMismatch, "trailing_newline");
    assert!(matches!(got.hints[0], Hint::TrailingNewline { added: true, .. }));

    // Signed with its newline, which was trimmed on the way.
    let headers = github(GITHUB_SECRET).headers(PRETTY.as_bytes());
    let got = exchange(&gh, request(headers, PRETTY.trim_end().to_owned())).await;
    got.assert_hint(RejectionKind::SignatureMismatch, "trailing_newline");
    assert!(matches!(got.hints[0], Hint::TrailingNewline { added: false, .. }));
}

#[tokio::test]
async fn a_stripped_byte_order_mark_is_named() {
    let d = Diagnostics::new();
    let (_v, gh) = route(Scheme::github(), "github", GITHUB_SECRET, &d);
    // The sender's serializer wrote a BOM and signed it; a proxy that
    // decodes and re-encodes text dropped it.
    let signed = format!("\u{feff}{COMPACT}");
    let headers = github(GITHUB_SECRET).headers(signed.as_bytes());
    let got = exchange(&gh, request(headers, COMPACT)).await;
    got.assert_hint(RejectionKind::SignatureMismatch, "bom_stripped");

    // And one added on the way.
    let headers = github(GITHUB_SECRET).headers(COMPACT.as_bytes());
    let got = exchange(&gh, request(headers, signed)).await;
    got.assert_hint(RejectionKind::SignatureMismatch, "bom_added");
}

#[tokio::test]
async fn a_quoted_secret_is_named() {
    let d = Diagnostics::new();
    // Copied from a .env file with its quotes; the sender signs with the
    // secret itself.
    let (_v, live) = route(Scheme::stripe(), "stripe", format!("\"{STRIPE_SECRET}\""), &d);
    let headers = stripe(STRIPE_SECRET).headers(COMPACT.as_bytes());
    let got = exchange(&live, request(headers, COMPACT)).await;
    got.assert_hint(RejectionKind::SignatureMismatch, "secret_quoted");
    assert!(matches!(got.hints[0], Hint::SecretQuoted { index: 0, .. }));
    assert!(
        !got.hints[0].to_string().contains(STRIPE_SECRET),
        "never the secret"
    );

    // Single quotes too.
    let (_v, single) = route(Scheme::github(), "github", format!("'{GITHUB_SECRET}'"), &d);
    let headers = github(GITHUB_SECRET).headers(COMPACT.as_bytes());
    let got = exchange(&single, request(headers, COMPACT)).await;
    got.assert_hint(RejectionKind::SignatureMismatch, "secret_quoted");
}

#[tokio::test]
async fn a_sender_secret_with_a_trailing_newline_is_named() {
    let d = Diagnostics::new();
    let (_v, gh) = route(Scheme::github(), "github", GITHUB_SECRET, &d);
    // The sender read its secret from a file, newline included.
    let tag = hex_hmac(format!("{GITHUB_SECRET}\n").as_bytes(), &[COMPACT.as_bytes()]);
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("x-hub-signature-256"),
        HeaderValue::from_str(&format!("sha256={tag}")).unwrap(),
    );
    let got = exchange(&gh, request(headers, COMPACT)).await;
    got.assert_hint(RejectionKind::SignatureMismatch, "secret_trailing_newline");
}

#[tokio::test]
async fn the_secret_of_another_route_is_named_by_route_only() {
    let d = Diagnostics::new();
    let (_live_v, live) = route(Scheme::stripe(), "stripe-live", STRIPE_SECRET, &d);
    let records = Arc::new(Records::default());
    let _test_v = Verifier::builder(Scheme::stripe())
        .name("stripe-test")
        .secret(Secret::labeled("2026-test", STRIPE_TEST_SECRET))
        .clock(FixedClock::new(NOW))
        .observer(records)
        .diagnostics(d.clone())
        .build()
        .unwrap();
    // The test environment's secret on the live route.
    let headers = stripe(STRIPE_TEST_SECRET).headers(COMPACT.as_bytes());
    let got = exchange(&live, request(headers.clone(), COMPACT)).await;
    got.assert_hint(RejectionKind::SignatureMismatch, "secret_of_other_route");
    match &got.hints[0] {
        Hint::SecretOfOtherRoute { route, label, .. } => {
            assert_eq!(&**route, "stripe-test");
            assert_eq!(label.as_deref(), Some("2026-test"));
        }
        other => panic!("{other:?}"),
    }
    let text = got.hints[0].to_string();
    assert!(
        text.contains("stripe-test") && !text.contains(STRIPE_TEST_SECRET),
        "{text}"
    );

    // A route on another handle is not known to this one.
    let other = Diagnostics::new();
    let (_alone_v, alone) = route(Scheme::stripe(), "stripe-alone", STRIPE_SECRET, &other);
    exchange(&alone, request(headers, COMPACT))
        .await
        .assert_none(RejectionKind::SignatureMismatch);

    // Once the other route is dropped, its keys are forgotten.
    drop(_test_v);
    let headers = stripe(STRIPE_TEST_SECRET).headers(COMPACT.as_bytes());
    exchange(&live, request(headers, COMPACT))
        .await
        .assert_none(RejectionKind::SignatureMismatch);
}

#[tokio::test]
async fn a_standard_webhooks_secret_read_the_other_way_is_named() {
    let engine = base64::engine::general_purpose::STANDARD;
    let d = Diagnostics::new();
    let secret = format!("whsec_{}", engine.encode([0x5a_u8; 24]));
    let (_v, standard) = route(Scheme::standard_webhooks(), "standard", secret.as_str(), &d);
    // The sender's hand-written signer used the text as the HMAC key: the
    // same as a correct signer whose secret decodes to that text.
    for raw in [secret.as_str(), secret.trim_start_matches("whsec_")] {
        let as_text = format!("whsec_{}", engine.encode(raw.as_bytes()));
        let headers = TestSigner::new(&Scheme::standard_webhooks(), as_text)
            .unwrap()
            .timestamp(NOW)
            .id("msg_hints_1")
            .headers(COMPACT.as_bytes());
        let got = exchange(&standard, request(headers, COMPACT)).await;
        got.assert_hint(RejectionKind::SignatureMismatch, "standard_secret_encoding");
        assert!(matches!(
            got.hints[0],
            Hint::StandardSecretEncoding {
                sender_decoded: false,
                ..
            }
        ));
    }

    // The reverse: a route whose scheme keys with the text, given a
    // whsec_ secret, and a sender that base64-decodes it.
    let decoded = "decoded-standard-key-bytes";
    let secret = format!("whsec_{}", engine.encode(decoded));
    let (_v, gh) = route(Scheme::github(), "github", secret.as_str(), &d);
    let headers = github(decoded).headers(COMPACT.as_bytes());
    let got = exchange(&gh, request(headers, COMPACT)).await;
    got.assert_hint(RejectionKind::SignatureMismatch, "standard_secret_encoding");
    assert!(matches!(
        got.hints[0],
        Hint::StandardSecretEncoding {
            sender_decoded: true,
            ..
        }
    ));
}

#[tokio::test]
async fn a_timestamp_in_milliseconds_is_named() {
    let d = Diagnostics::new();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([7_u8; 32])
    );
    let (_v, standard) = route(Scheme::standard_webhooks(), "standard", secret.as_str(), &d);
    let mut headers = TestSigner::new(&Scheme::standard_webhooks(), secret.as_str())
        .unwrap()
        .timestamp(NOW)
        .id("msg_hints_ms")
        .headers(COMPACT.as_bytes());
    // `Date.now()` instead of seconds.
    headers.insert(
        HeaderName::from_static("webhook-timestamp"),
        HeaderValue::from_str(&format!("{NOW}123")).unwrap(),
    );
    let got = exchange(&standard, request(headers, COMPACT)).await;
    got.assert_hint(RejectionKind::MalformedTimestamp, "timestamp_in_milliseconds");

    // Stripe's `t=` in milliseconds.
    let (_v, live) = route(Scheme::stripe(), "stripe", STRIPE_SECRET, &d);
    let mut headers = stripe(STRIPE_SECRET).headers(COMPACT.as_bytes());
    let value = headers["stripe-signature"]
        .to_str()
        .unwrap()
        .replace(&format!("t={NOW},"), &format!("t={NOW}456,"));
    headers.insert(
        HeaderName::from_static("stripe-signature"),
        HeaderValue::from_str(&value).unwrap(),
    );
    let got = exchange(&live, request(headers, COMPACT)).await;
    got.assert_hint(RejectionKind::MalformedTimestamp, "timestamp_in_milliseconds");

    // 13 digits that are not a time near now: no hint.
    let mut headers = stripe(STRIPE_SECRET).headers(COMPACT.as_bytes());
    let value = headers["stripe-signature"]
        .to_str()
        .unwrap()
        .replace(&format!("t={NOW},"), "t=9999999999999,");
    headers.insert(
        HeaderName::from_static("stripe-signature"),
        HeaderValue::from_str(&value).unwrap(),
    );
    exchange(&live, request(headers, COMPACT))
        .await
        .assert_none(RejectionKind::MalformedTimestamp);
}

#[tokio::test]
async fn clock_skew_beyond_the_tolerance_is_named_with_its_size() {
    let d = Diagnostics::new();
    let (_v, live) = route(Scheme::stripe(), "stripe", STRIPE_SECRET, &d);
    for (at, secs) in [(NOW - 600, 600), (NOW + 600, -600)] {
        let headers = stripe(STRIPE_SECRET).timestamp(at).headers(COMPACT.as_bytes());
        let got = exchange(&live, request(headers, COMPACT)).await;
        got.assert_hint(RejectionKind::TimestampOutOfTolerance, "clock_skew");
        match &got.hints[0] {
            Hint::ClockSkew {
                secs: s, tolerance, ..
            } => {
                assert_eq!((*s, *tolerance), (secs, Duration::from_secs(300)));
            }
            other => panic!("{other:?}"),
        }
        let text = got.hints[0].to_string();
        let direction = if secs > 0 { "behind" } else { "ahead of" };
        assert!(text.contains(&format!("600 s {direction}")), "{text}");
    }
    // Two days old is a replay or a fixture, not a clock: no hint.
    let headers = stripe(STRIPE_SECRET)
        .timestamp(NOW - 2 * 86_400)
        .headers(COMPACT.as_bytes());
    exchange(&live, request(headers, COMPACT))
        .await
        .assert_none(RejectionKind::TimestampOutOfTolerance);
}

/// The control for every hint above: requests with a wrong signature
/// (another secret altogether), bodies with every feature the body hints
/// look at, and fresh timestamps, are examined and get no hint.
#[tokio::test]
async fn a_wrong_signature_without_such_a_mistake_gets_none() {
    let d = Diagnostics::new().per_second(NonZeroU32::new(100).unwrap());
    let (_l, live) = route(
        Scheme::stripe(),
        "stripe-live",
        format!("\"{STRIPE_SECRET}\""),
        &d,
    );
    let (_t, _test) = route(Scheme::stripe(), "stripe-test", STRIPE_TEST_SECRET, &d);
    let (_g, gh) = route(Scheme::github(), "github", GITHUB_SECRET, &d);
    let standard_secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([9_u8; 32])
    );
    let (_s, standard) = route(
        Scheme::standard_webhooks(),
        "standard",
        standard_secret.as_str(),
        &d,
    );
    let crlf = PRETTY.replace('\n', "\r\n");
    let bom = format!("\u{feff}{COMPACT}");
    let bodies = [PRETTY, crlf.as_str(), COMPACT, bom.as_str()];
    let other_standard = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([1_u8; 32])
    );
    let mut examined = 0;
    for body in bodies {
        let headers = stripe(UNRELATED).headers(body.as_bytes());
        exchange(&live, request(headers, body.to_owned()))
            .await
            .assert_none(RejectionKind::SignatureMismatch);
        let headers = github("another-github-secret").headers(body.as_bytes());
        exchange(&gh, request(headers, body.to_owned()))
            .await
            .assert_none(RejectionKind::SignatureMismatch);
        let headers = TestSigner::new(&Scheme::standard_webhooks(), other_standard.as_str())
            .unwrap()
            .timestamp(NOW)
            .headers(body.as_bytes());
        exchange(&standard, request(headers, body.to_owned()))
            .await
            .assert_none(RejectionKind::SignatureMismatch);
        examined += 3;
    }
    // A malformed timestamp that is not in milliseconds.
    let mut headers = stripe(UNRELATED).headers(COMPACT.as_bytes());
    let value = headers["stripe-signature"]
        .to_str()
        .unwrap()
        .replace(&format!("t={NOW},"), &format!("t={NOW}.5,"));
    headers.insert(
        HeaderName::from_static("stripe-signature"),
        HeaderValue::from_str(&value).unwrap(),
    );
    exchange(&live, request(headers, COMPACT))
        .await
        .assert_none(RejectionKind::MalformedTimestamp);
    examined += 1;
    assert_eq!(d.examined(), examined, "every one was examined");
    assert_eq!(d.skipped(), 0);
}

#[tokio::test]
async fn in_response_is_a_switch_for_development() {
    let d = Diagnostics::new().in_response(true);
    let (_v, gh) = route(Scheme::github(), "github", GITHUB_SECRET, &d);
    let headers = github(GITHUB_SECRET).headers(COMPACT.as_bytes());
    let got = exchange(&gh, request(headers.clone(), format!("{COMPACT}\n"))).await;
    assert_eq!(got.codes(), ["trailing_newline"]);
    let hints = got.problem["hints"].as_array().expect("hints in the response");
    assert_eq!(hints.len(), 1);
    assert_eq!(hints[0]["code"], "trailing_newline");
    assert_eq!(hints[0]["detail"], got.hints[0].to_string());
    assert_eq!(got.problem["reason"], "signature_mismatch");

    // Off again (the switch applies to every clone): not in the response,
    // still in the record.
    let _ = d.clone().in_response(false);
    let got = exchange(&gh, request(headers, format!("{COMPACT}\n"))).await;
    got.assert_hint(RejectionKind::SignatureMismatch, "trailing_newline");
}

#[tokio::test]
async fn the_per_second_cap_holds() {
    // The route's clock stands still: the bucket never refills.
    let d = Diagnostics::new().per_second(NonZeroU32::new(3).unwrap());
    let (_v, gh) = route(Scheme::github(), "github", GITHUB_SECRET, &d);
    let mut hinted = 0;
    for _ in 0..4 {
        let headers = github(GITHUB_SECRET).headers(COMPACT.as_bytes());
        let got = exchange(&gh, request(headers, format!("{COMPACT}\n"))).await;
        assert_eq!(got.reason, Some(RejectionKind::SignatureMismatch));
        hinted += usize::from(!got.hints.is_empty());
    }
    assert_eq!(hinted, 3);
    assert_eq!((d.examined(), d.skipped()), (3, 1));
}

#[tokio::test]
async fn a_verified_request_examines_nothing_and_a_route_without_diagnostics_nothing_either() {
    let d = Diagnostics::new();
    let (_v, gh) = route(Scheme::github(), "github", GITHUB_SECRET, &d);
    for _ in 0..3 {
        let headers = github(GITHUB_SECRET).headers(COMPACT.as_bytes());
        let got = exchange(&gh, request(headers, COMPACT)).await;
        assert_eq!((got.status, got.reason), (StatusCode::OK, None));
        assert!(got.hints.is_empty());
    }
    assert_eq!((d.examined(), d.skipped()), (0, 0));

    // Without diagnostics, the same mistake gets no hint.
    let plain = Verifier::builder(Scheme::github())
        .secret(GITHUB_SECRET)
        .build()
        .unwrap();
    let headers = github(GITHUB_SECRET).headers(COMPACT.as_bytes());
    let err = plain
        .verify(&headers, Bytes::from(format!("{COMPACT}\n")))
        .unwrap_err();
    assert_eq!(err.kind(), RejectionKind::SignatureMismatch);
    assert!(err.hints().is_empty());
}

#[test]
fn verify_called_directly_returns_the_hints_in_the_rejection() {
    let d = Diagnostics::new();
    let verifier = Verifier::builder(Scheme::github())
        .secret(GITHUB_SECRET)
        .diagnostics(d.clone())
        .build()
        .unwrap();
    let headers = github(GITHUB_SECRET).headers(PRETTY.as_bytes());
    let err = verifier
        .verify(&headers, Bytes::from(PRETTY.replace('\n', "\r\n")))
        .unwrap_err();
    assert_eq!(
        err.hints().iter().map(Hint::code).collect::<Vec<_>>(),
        ["body_line_endings_changed"]
    );
    // The default response still carries none.
    let response = err.to_response();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(d.examined(), 1);
}

#[test]
fn a_body_over_the_hint_limit_gets_no_signature_hint() {
    let d = Diagnostics::new();
    let verifier = Verifier::builder(Scheme::github())
        .secret(GITHUB_SECRET)
        .diagnostics(d.clone())
        .build()
        .unwrap();
    let big = format!("{}\n", "x".repeat(webhook_guard::hints::MAX_BODY_BYTES));
    let headers = github(GITHUB_SECRET).headers(big.trim_end().as_bytes());
    let err = verifier.verify(&headers, Bytes::from(big)).unwrap_err();
    assert!(err.hints().is_empty());
    assert_eq!(d.examined(), 0);
}

#[cfg(feature = "metrics")]
#[test]
fn hints_are_counted_by_route_and_code() {
    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use webhook_guard::metrics::MetricsObserver;

    /// A counter's name and labels.
    type Series = (String, Vec<(String, String)>);
    #[derive(Default)]
    struct Counters(Mutex<BTreeMap<Series, Arc<AtomicU64>>>);
    impl Recorder for Counters {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            let cell = Arc::clone(
                self.0
                    .lock()
                    .unwrap()
                    .entry((key.name().to_owned(), labels))
                    .or_default(),
            );
            Counter::from_arc(cell)
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    let counters = Counters::default();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    metrics::with_local_recorder(&counters, || {
        runtime.block_on(async {
            let d = Diagnostics::new();
            let verifier = Verifier::builder(Scheme::stripe())
                .name("payments")
                .secret(format!("\"{STRIPE_SECRET}\""))
                .clock(FixedClock::new(NOW))
                .observer(MetricsObserver::builder().build())
                .diagnostics(d)
                .build()
                .unwrap();
            let router = Router::new().route(PATH, post(|| async { "ok" }).layer(verifier.layer()));
            for secret in [STRIPE_SECRET, STRIPE_SECRET, UNRELATED] {
                let headers = stripe(secret).headers(COMPACT.as_bytes());
                let response = send(router.clone(), request(headers, COMPACT)).await;
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            }
        });
    });
    let hints: Vec<_> = counters
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|((name, _), _)| name == "webhook_guard_verification_hints_total")
        .map(|((_, labels), n)| (labels.clone(), n.load(Ordering::Relaxed)))
        .collect();
    assert_eq!(
        hints,
        [(
            vec![
                ("route".to_owned(), "payments".to_owned()),
                ("hint".to_owned(), "secret_quoted".to_owned())
            ],
            2
        )]
    );
}

#[cfg(feature = "inspect")]
#[tokio::test]
async fn the_inspector_shows_the_hints() {
    use webhook_guard::inspect::Inspector;
    let inspector = Inspector::builder().build();
    let verifier = Verifier::builder(Scheme::github())
        .name("github")
        .secret(GITHUB_SECRET)
        .observer(inspector.observer())
        .diagnostics(Diagnostics::new())
        .build()
        .unwrap();
    let router = Router::new().route(PATH, post(|| async { "ok" }).layer(verifier.layer()));
    let headers = github(GITHUB_SECRET).headers(COMPACT.as_bytes());
    let response = send(router.clone(), request(headers, format!("{COMPACT}\n"))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let headers = github("not-the-secret").headers(COMPACT.as_bytes());
    let response = send(router, request(headers, COMPACT)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let entries = inspector.entries_after(0);
    let [wrong, newline] = &entries[..] else {
        panic!("two entries: {entries:?}");
    };
    assert_eq!(newline.hints().len(), 1);
    assert!(
        newline.hints()[0].starts_with("trailing_newline: the signature matches the body without"),
        "{:?}",
        newline.hints()
    );
    assert!(wrong.hints().is_empty());
}
