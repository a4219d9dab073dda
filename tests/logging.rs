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

/// Lines of `logged` whose event is `message` with `reason`, as the
/// `suppressed` count each carries (0 when absent).
fn suppressed_counts(logged: &str, message: &str, reason: &str) -> Vec<u64> {
    logged
        .lines()
        .filter(|l| l.contains(message) && l.contains(&format!("reason=\"{reason}\"")))
        .map(|l| {
            l.split_whitespace()
                .find_map(|word| word.strip_prefix("suppressed="))
                .map_or(0, |n| n.parse().unwrap())
        })
        .collect()
}

fn capturing() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    (capture.clone(), tracing::subscriber::set_default(subscriber))
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[test]
fn unauthenticated_rejection_logs_are_limited_per_reason_with_a_suppressed_count() {
    let (capture, _guard) = capturing();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let clock = Arc::new(FixedClock::new(NOW));
    let schemas = webhook_guard::schema::Schemas::builder()
        .default_schema(serde_json::json!({"required": ["data"]}))
        .build()
        .unwrap();
    let verifier = Verifier::builder(Scheme::stripe())
        .secret(SECRET)
        .clock(Arc::clone(&clock))
        .schemas(schemas)
        .build()
        .unwrap();
    let app = Router::new().route("/hook", post(|| async { "ok" }).layer(verifier.layer()));
    let signer = TestSigner::new(&Scheme::stripe(), SECRET).unwrap().timestamp(NOW);
    let send = |request: Request<Body>, status: StatusCode| {
        let response = runtime.block_on(app.clone().oneshot(request)).unwrap();
        assert_eq!(response.status(), status);
    };
    let unsigned = || Request::post("/hook").body(Body::from("{}")).unwrap();
    let tampered = || {
        let mut r = signer.request("/hook", "{}");
        *r.body_mut() = Body::from("{ }");
        r
    };
    let rejected = "webhook rejected";

    // A flood of one reason: the default allowance, 10, is logged.
    for _ in 0..1000 {
        send(unsigned(), StatusCode::UNAUTHORIZED);
    }
    let logged = capture.text();
    assert_eq!(
        suppressed_counts(&logged, rejected, "missing_signature"),
        vec![0; 10]
    );
    assert_eq!(logged.lines().count(), 10, "{logged}");
    assert!(!logged.contains("suppressed"), "{logged}");

    // Another reason is not starved by the first.
    for _ in 0..5 {
        send(tampered(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        suppressed_counts(&capture.text(), rejected, "signature_mismatch"),
        vec![0; 5]
    );

    // Rejections of verified deliveries are all logged.
    for _ in 0..50 {
        send(signer.request("/hook", "{}"), StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(
        suppressed_counts(&capture.text(), rejected, "schema_violation"),
        vec![0; 50]
    );

    // Nothing more for the flooded reason until the clock moves ...
    send(unsigned(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        suppressed_counts(&capture.text(), rejected, "missing_signature").len(),
        10
    );
    // ... then the next line carries what was dropped: 1001 - 10.
    clock.advance(1);
    send(unsigned(), StatusCode::UNAUTHORIZED);
    let counts = suppressed_counts(&capture.text(), rejected, "missing_signature");
    assert_eq!(counts.len(), 11);
    assert_eq!(counts.last(), Some(&991));
    let with_count = capture.text().lines().last().unwrap().to_owned();
    assert!(with_count.contains("suppressed=991"), "{with_count}");
    assert!(with_count.contains("provider=\"stripe\""), "{with_count}");
    // The following lines of the refilled second carry none.
    for _ in 0..20 {
        send(unsigned(), StatusCode::UNAUTHORIZED);
    }
    let counts = suppressed_counts(&capture.text(), rejected, "missing_signature");
    assert_eq!(counts.len(), 20);
    assert_eq!(counts[11..], [0; 9]);
}

#[test]
fn the_allowance_is_configurable() {
    let (capture, _guard) = capturing();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let clock = Arc::new(FixedClock::new(NOW));
    let verifier = Verifier::builder(Scheme::stripe())
        .secret(SECRET)
        .clock(Arc::clone(&clock))
        .rejection_logs_per_second(std::num::NonZeroU32::new(2).unwrap())
        .build()
        .unwrap();
    let app = Router::new().route("/hook", post(|| async { "ok" }).layer(verifier.layer()));
    for _ in 0..100 {
        let request = Request::get("/hook").body(Body::empty()).unwrap();
        let response = runtime.block_on(app.clone().oneshot(request)).unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    // A second later, the next line carries the 98 dropped.
    clock.advance(1);
    let request = Request::get("/hook").body(Body::empty()).unwrap();
    runtime.block_on(app.clone().oneshot(request)).unwrap();
    assert_eq!(
        suppressed_counts(&capture.text(), "webhook rejected", "method_not_allowed"),
        vec![0, 0, 98]
    );
}

#[test]
fn rate_limiter_refusal_logs_are_limited_too() {
    let (capture, _guard) = capturing();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let limiter = webhook_guard::RateLimiter::builder()
        .per_second(std::num::NonZeroU32::new(1).unwrap())
        .burst(std::num::NonZeroU32::new(1).unwrap())
        .build();
    let app = Router::new().route("/hook", post(|| async { "ok" }));
    let peer: std::net::SocketAddr = "127.0.0.7:4000".parse().unwrap();
    let service = limiter.service(app, peer);
    let started = std::time::Instant::now();
    let mut refused = 0_u64;
    for _ in 0..1000 {
        let request = Request::post("/hook").body(Body::empty()).unwrap();
        let response = runtime.block_on(service.clone().oneshot(request)).unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    let elapsed = started.elapsed();
    let counts = suppressed_counts(
        &capture.text(),
        "request refused by the rate limiter",
        "rate_limited",
    );
    // The limiter reads the system clock: a burst of 10, then 10 a second
    // of however long the loop took (plus one for rounding).
    let allowed = 10 + 10 * elapsed.as_millis() as u64 / 1000 + 1;
    assert!(refused >= 990, "{refused} refused");
    assert!(counts.len() >= 10, "{counts:?}");
    assert!(
        counts.len() as u64 <= allowed,
        "{} lines in {elapsed:?}",
        counts.len()
    );
    // Every refusal is either a line or counted in a later line or still
    // pending: never more reported than refused.
    let reported = counts.len() as u64 + counts.iter().sum::<u64>();
    assert!(reported <= refused, "{reported} > {refused}");
}
