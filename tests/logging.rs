//! Every rejection emits exactly one tracing event carrying its reason, and
//! no log line carries a secret or a computed signature.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use http::{Request, StatusCode};
use tower::ServiceExt as _;
use tracing_subscriber::fmt::MakeWriter;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{FixedClock, Scheme, Verifier};

const SECRET: &str = "whsec_logging_test_secret_value";
const NOW: i64 = 1_700_000_000;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn one_event_per_rejection_and_no_secret_in_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let verifier = Verifier::builder(Scheme::stripe())
        .secret(SECRET)
        .clock(FixedClock::new(NOW))
        .build()
        .unwrap();
    let app = Router::new().route("/hook", post(|| async { "ok" }).layer(verifier.layer()));
    let signer = TestSigner::new(&Scheme::stripe(), SECRET).unwrap().timestamp(NOW);
    let body = r#"{"id":"evt_1","type":"x"}"#;
    let signed = signer.headers(body.as_bytes());
    let signature = signed["stripe-signature"].to_str().unwrap().to_owned();
    let computed = signature.split("v1=").nth(1).unwrap().to_owned();

    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (signer.request("/hook", body), StatusCode::OK, ""),
        (
            signer.request("/hook", r#"{"id":"evt_1","type":"y"}"#),
            StatusCode::OK,
            "",
        ),
        (
            {
                let mut r = signer.request("/hook", body);
                *r.body_mut() = Body::from("tampered");
                r
            },
            StatusCode::UNAUTHORIZED,
            "signature_mismatch",
        ),
        (
            Request::post("/hook").body(Body::from(body)).unwrap(),
            StatusCode::UNAUTHORIZED,
            "missing_signature",
        ),
        (
            TestSigner::new(&Scheme::stripe(), SECRET)
                .unwrap()
                .timestamp(NOW - 301)
                .request("/hook", body),
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_tolerance",
        ),
        (
            Request::get("/hook").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (request, status, reason) in cases {
        let before = capture.0.lock().unwrap().len();
        let response = runtime.block_on(app.clone().oneshot(request)).unwrap();
        assert_eq!(response.status(), status, "{reason}");
        let logged = String::from_utf8(capture.0.lock().unwrap()[before..].to_vec()).unwrap();
        let lines: Vec<&str> = logged.lines().collect();
        if reason.is_empty() {
            assert!(lines.is_empty(), "an accepted request logged: {logged}");
        } else {
            assert_eq!(lines.len(), 1, "expected one event for {reason}, got: {logged}");
            assert!(lines[0].contains(&format!("reason=\"{reason}\"")), "{logged}");
            assert!(lines[0].contains("provider=\"stripe\""), "{logged}");
        }
    }
    let all = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(!all.contains(SECRET), "a secret was logged");
    assert!(!all.contains(&computed), "a computed signature was logged");
    assert!(!all.contains("tampered"), "request bytes were logged");
}
