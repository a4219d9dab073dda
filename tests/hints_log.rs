//! The log line of a diagnostic hint: one WARN per hint, naming the route
//! and the hint, never the secret. In a test binary of its own: `tracing`
//! caches each log callsite's interest process-wide, and other tests
//! logging from the same callsite on other threads (with no subscriber)
//! can leave it cached as "never" while this test's scoped subscriber is
//! being set, which made this check flaky beside the other hint tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::Router;
use http::Request;
use tower::ServiceExt as _;
use webhook_guard::hints::Diagnostics;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{FixedClock, Scheme, Verifier};

const NOW: i64 = 1_780_000_000;
const SECRET: &str = "whsec_hints_live_secret_0001";
const UNRELATED: &str = "whsec_someone_else_entirely_9";
const BODY: &str = r#"{"id":"evt_hints_0002","type":"invoice.paid"}"#;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn each_hint_is_logged_once_without_the_secret() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // The route is configured with the secret in quotes (copied from a
    // .env file); the sender signs with the secret itself.
    let verifier = Verifier::builder(Scheme::stripe())
        .name("stripe-live")
        .secret(format!("\"{SECRET}\""))
        .clock(FixedClock::new(NOW))
        .diagnostics(Diagnostics::new())
        .build()
        .unwrap();
    let app = Router::new().route("/hook", post(|| async { "ok" }).layer(verifier.layer()));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        for secret in [SECRET, UNRELATED] {
            let signer = TestSigner::new(&Scheme::stripe(), secret).unwrap().timestamp(NOW);
            let request: Request<_> = signer.request("/hook", BODY);
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), 401);
        }
    });
    let logged = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let hint_lines: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("webhook verification hint"))
        .collect();
    assert_eq!(hint_lines.len(), 1, "{logged}");
    assert!(hint_lines[0].contains("WARN"), "{logged}");
    assert!(hint_lines[0].contains("hint=\"secret_quoted\""), "{logged}");
    assert!(hint_lines[0].contains("route=\"stripe-live\""), "{logged}");
    assert!(!logged.contains(SECRET), "no secret in the log: {logged}");
}
