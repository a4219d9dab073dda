//! The `metrics` feature, end to end: a [`MetricsObserver`] on real axum
//! routers behind the layer, a recording `metrics` recorder installed
//! *after* the verifiers were built, and the exact series a scripted
//! sequence of deliveries produces (processed, duplicate, rejections,
//! rotation, an unregistered event type, the queue, the rate limiter),
//! with no label holding a secret, a delivery id or a client address.
//!
//! Each test but one installs its recorder for its own thread
//! (`metrics::with_local_recorder`, on a current-thread runtime, so every
//! task of the test runs on that thread); the one that installs the
//! global recorder is the only test that emits anything outside such a
//! scope.

#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::routing::{post, post_service};
use axum::Router;
use http::{Request, StatusCode};
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tower::ServiceExt as _;
use webhook_guard::dedupe::{Dedupe, MemoryStore};
use webhook_guard::dispatch::{Event, EventRouter, HandlerError};
use webhook_guard::metrics::MetricsObserver;
use webhook_guard::queue::AckQueue;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{FixedClock, RateLimiter, Scheme, Secret, Verifier};

use support::{headers, post_request, send, PATH};

const NOW: i64 = 1_700_000_000;
/// The observer's clock: the time of a verified delivery.
const SEEN_AT: i64 = 1_700_000_123;
const STRIPE_SECRET: &str = "whsec_metrics_new_secret";
const STRIPE_OLD: &str = "whsec_metrics_old_secret";
const PAID_ID: &str = "evt_metrics_delivery_0001";
const PAID: &str = r#"{"id":"evt_metrics_delivery_0001","type":"invoice.paid"}"#;
const OTHER_ID: &str = "evt_metrics_delivery_0002";
const OTHER: &str = r#"{"id":"evt_metrics_delivery_0002","type":"customer.created"}"#;
const ROUTE: &str = "payments";

/// A series: metric name and its labels, sorted by key.
type Series = (String, Vec<(String, String)>);

/// A histogram's samples.
#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// A recorder that keeps every series it is asked for.
#[derive(Default)]
struct Recording {
    counters: Mutex<BTreeMap<Series, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<Series, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<Series, Arc<Samples>>>,
    described: Mutex<BTreeMap<String, (Option<Unit>, String)>>,
}

fn series(key: &Key) -> Series {
    let mut labels: Vec<_> = key
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    (key.name().to_owned(), labels)
}

fn owned(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut labels: Vec<_> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

impl Recording {
    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.described
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned(), (unit, description.to_string()));
    }

    /// Every counter named `name`: its labels (sorted) and value.
    fn counters(&self, name: &str) -> BTreeMap<Vec<(String, String)>, u64> {
        self.counters
            .lock()
            .unwrap()
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, labels), v)| (labels.clone(), v.load(Ordering::SeqCst)))
            .collect()
    }

    /// The gauge `name{labels}`, if it was ever registered.
    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.gauges
            .lock()
            .unwrap()
            .get(&owned(name, labels))
            .map(|v| f64::from_bits(v.load(Ordering::SeqCst)))
    }

    /// The samples of histogram `name{labels}` (empty if none).
    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.histograms
            .lock()
            .unwrap()
            .get(&owned(name, labels))
            .map(|s| s.0.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// Every label value of every series.
    fn label_values(&self) -> Vec<String> {
        let mut all: Vec<Series> = self.counters.lock().unwrap().keys().cloned().collect();
        all.extend(self.gauges.lock().unwrap().keys().cloned());
        all.extend(self.histograms.lock().unwrap().keys().cloned());
        all.into_iter()
            .flat_map(|(_, labels)| labels.into_iter().map(|(_, v)| v))
            .collect()
    }

    /// Every metric name seen, of any type.
    fn names(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .counters
            .lock()
            .unwrap()
            .keys()
            .map(|s| s.0.clone())
            .collect();
        all.extend(self.gauges.lock().unwrap().keys().map(|s| s.0.clone()));
        all.extend(self.histograms.lock().unwrap().keys().map(|s| s.0.clone()));
        all.sort();
        all.dedup();
        all
    }
}

impl Recorder for Recording {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().unwrap();
        Counter::from_arc(counters.entry(series(key)).or_default().clone())
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut gauges = self.gauges.lock().unwrap();
        Gauge::from_arc(gauges.entry(series(key)).or_default().clone())
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().unwrap();
        Histogram::from_arc(histograms.entry(series(key)).or_default().clone())
    }
}

/// The global recorder's handle.
struct Global(Arc<Recording>);

impl Recorder for Global {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.0.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.0.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.0.register_histogram(key, metadata)
    }
}

/// Runs `test` on a current-thread runtime with `recording` as this
/// thread's recorder: every task the test spawns runs on this thread.
fn with_recording<F: Future>(recording: &Recording, test: impl FnOnce() -> F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(recording, || runtime.block_on(test()))
}

/// Labels as owned pairs, sorted, for comparing with [`Recording::counters`].
fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    owned("", pairs).1
}

fn signer(secret: &str, at: i64) -> TestSigner {
    TestSigner::new(&Scheme::stripe(), secret).unwrap().timestamp(at)
}

fn observer() -> Arc<MetricsObserver> {
    MetricsObserver::builder()
        .event_types(["invoice.paid", "invoice.payment_failed"])
        .clock(FixedClock::new(SEEN_AT))
        .build()
}

/// A Stripe route named `payments` with an old and a new secret and a
/// dedupe, reporting to `metrics`.
fn payments(metrics: &Arc<MetricsObserver>) -> Verifier {
    Verifier::builder(Scheme::stripe())
        .name(ROUTE)
        .clock(FixedClock::new(NOW))
        .secret(Secret::labeled("old", STRIPE_OLD))
        .secret(Secret::labeled("new", STRIPE_SECRET))
        .dedupe(Dedupe::builder(MemoryStore::new(), "stripe").build().unwrap())
        .observer(metrics.clone())
        .build()
        .unwrap()
}

fn router(verifier: &Verifier) -> Router {
    Router::new().route(PATH, post(|| async { "done" }).layer(verifier.layer()))
}

#[test]
fn a_scripted_sequence_yields_exactly_these_series() {
    let metrics = observer();
    let verifier = payments(&metrics);
    // The recorder comes after the observer and the route were built.
    let recording = Recording::default();
    let signatures = with_recording(&recording, || async {
        let app = router(&verifier);
        let mut signatures = Vec::new();
        let mut call = |request: Request<Body>| {
            if let Some(s) = request.headers().get("stripe-signature") {
                signatures.push(s.to_str().unwrap().to_owned());
            }
            send(app.clone(), request)
        };
        // Rotation: the old secret, then the new one (a duplicate).
        assert_eq!(
            call(signer(STRIPE_OLD, NOW - 7).request(PATH, PAID))
                .await
                .status(),
            StatusCode::OK
        );
        assert_eq!(
            call(signer(STRIPE_SECRET, NOW - 7).request(PATH, PAID))
                .await
                .status(),
            StatusCode::OK
        );
        // An event type no one registered.
        assert_eq!(
            call(signer(STRIPE_SECRET, NOW - 7).request(PATH, OTHER))
                .await
                .status(),
            StatusCode::OK
        );
        // Two rejection reasons, and a third with a future timestamp.
        let forged = call(signer("whsec_forger", NOW).request(PATH, PAID)).await;
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
        let unsigned = call(post_request(headers(&[]), Body::from(PAID))).await;
        assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
        let ahead = call(signer(STRIPE_SECRET, NOW + 900).request(PATH, PAID)).await;
        assert_eq!(ahead.status(), StatusCode::UNAUTHORIZED);
        signatures
    });

    let r = |pairs: &[(&str, &str)]| labels(pairs);
    assert_eq!(
        recording.counters("webhook_guard_requests_total"),
        BTreeMap::from([
            (
                r(&[("route", ROUTE), ("provider", "stripe"), ("outcome", "processed")]),
                2
            ),
            (
                r(&[("route", ROUTE), ("provider", "stripe"), ("outcome", "duplicate")]),
                1
            ),
            (
                r(&[("route", ROUTE), ("provider", "stripe"), ("outcome", "rejected")]),
                3
            ),
        ])
    );
    assert_eq!(
        recording.counters("webhook_guard_rejections_total"),
        BTreeMap::from([
            (
                r(&[
                    ("route", ROUTE),
                    ("provider", "stripe"),
                    ("reason", "signature_mismatch")
                ]),
                1
            ),
            (
                r(&[
                    ("route", ROUTE),
                    ("provider", "stripe"),
                    ("reason", "missing_signature")
                ]),
                1
            ),
            (
                r(&[
                    ("route", ROUTE),
                    ("provider", "stripe"),
                    ("reason", "timestamp_out_of_tolerance")
                ]),
                1
            ),
        ])
    );
    assert_eq!(
        recording.counters("webhook_guard_secret_matches_total"),
        BTreeMap::from([
            (r(&[("route", ROUTE), ("secret", "old")]), 1),
            (r(&[("route", ROUTE), ("secret", "new")]), 2),
        ]),
        "the old secret matched once, then the new one"
    );
    assert_eq!(
        recording.counters("webhook_guard_events_total"),
        BTreeMap::from([
            (
                r(&[
                    ("route", ROUTE),
                    ("provider", "stripe"),
                    ("event_type", "invoice.paid"),
                    ("result", "processed")
                ]),
                1
            ),
            (
                r(&[
                    ("route", ROUTE),
                    ("provider", "stripe"),
                    ("event_type", "invoice.paid"),
                    ("result", "duplicate")
                ]),
                1
            ),
            (
                r(&[
                    ("route", ROUTE),
                    ("provider", "stripe"),
                    ("event_type", "_other"),
                    ("result", "processed")
                ]),
                1
            ),
        ]),
        "event types only once verified, and unregistered ones as _other"
    );
    assert_eq!(
        recording.counters("webhook_guard_dedupe_operations_total"),
        BTreeMap::from([
            (r(&[("route", ROUTE), ("op", "claim"), ("result", "acquired")]), 2),
            (r(&[("route", ROUTE), ("op", "complete"), ("result", "done")]), 2),
            (
                r(&[("route", ROUTE), ("op", "claim"), ("result", "duplicate")]),
                1
            ),
        ])
    );
    assert_eq!(
        recording
            .samples(
                "webhook_guard_dedupe_store_duration_seconds",
                &[("route", ROUTE), ("op", "claim")]
            )
            .len(),
        3
    );

    // Histograms: one sample per request, by outcome; the handler ran
    // twice (the duplicate never reached it).
    let route = [("route", ROUTE), ("provider", "stripe")];
    let by_outcome = |outcome| {
        recording
            .samples(
                "webhook_guard_request_duration_seconds",
                &[route[0], route[1], ("outcome", outcome)],
            )
            .len()
    };
    assert_eq!(
        (
            by_outcome("processed"),
            by_outcome("duplicate"),
            by_outcome("rejected")
        ),
        (2, 1, 3)
    );
    assert_eq!(
        recording
            .samples("webhook_guard_handler_duration_seconds", &route)
            .len(),
        2
    );
    let sizes = recording.samples("webhook_guard_body_size_bytes", &route);
    // The three verified bodies and the forged one; the unsigned one and
    // the one too far ahead were refused before their body was read.
    let (paid, other) = (PAID.len() as f64, OTHER.len() as f64);
    assert_eq!(sizes, vec![paid, paid, other, paid]);
    // The skew of the verified ones (past) and of the one too far ahead.
    assert_eq!(
        recording.samples(
            "webhook_guard_timestamp_skew_seconds",
            &[route[0], route[1], ("direction", "past")]
        ),
        vec![7.0, 7.0, 7.0]
    );
    assert_eq!(
        recording.samples(
            "webhook_guard_timestamp_skew_seconds",
            &[route[0], route[1], ("direction", "future")]
        ),
        vec![900.0]
    );
    assert_eq!(
        recording.gauge(
            "webhook_guard_last_verified_delivery_timestamp_seconds",
            &[("route", ROUTE)]
        ),
        Some(SEEN_AT as f64)
    );

    // No label holds a secret, a signature, a delivery id or a body byte
    // a client chose (the unregistered event type included).
    assert_eq!(signatures.len(), 5);
    let values = recording.label_values();
    for value in &values {
        for forbidden in [
            STRIPE_SECRET,
            STRIPE_OLD,
            "whsec",
            PAID_ID,
            OTHER_ID,
            "evt_",
            "customer.created",
            "v1=",
        ]
        .iter()
        .copied()
        .chain(signatures.iter().map(String::as_str))
        {
            assert!(
                !value.contains(forbidden),
                "label value {value:?} holds {forbidden:?}"
            );
        }
    }
    // And every name follows the conventions.
    for name in recording.names() {
        assert!(name.starts_with("webhook_guard_"), "{name}");
    }
}

#[test]
fn publish_sets_the_last_verified_gauge_of_routes_built_before_the_recorder() {
    let metrics = observer();
    let quiet = Verifier::builder(Scheme::stripe())
        .name("quiet")
        .secret(STRIPE_SECRET)
        .observer(metrics.clone())
        .build()
        .unwrap();
    let busy = payments(&metrics);
    let recording = Recording::default();
    with_recording(&recording, || async {
        // Nothing seen yet: the routes were announced to no recorder.
        assert_eq!(
            recording.gauge(
                "webhook_guard_last_verified_delivery_timestamp_seconds",
                &[("route", "quiet")]
            ),
            None
        );
        send(router(&busy), signer(STRIPE_SECRET, NOW).request(PATH, PAID)).await;
        metrics.publish();
    });
    let last = |route| {
        recording.gauge(
            "webhook_guard_last_verified_delivery_timestamp_seconds",
            &[("route", route)],
        )
    };
    assert_eq!(
        last("quiet"),
        Some(0.0),
        "no delivery since the build: 0, so the alert fires"
    );
    assert_eq!(
        last(ROUTE),
        Some(SEEN_AT as f64),
        "publish keeps the last delivery's time"
    );
    // The help texts were given to the late recorder too, with units.
    let described = recording.described.lock().unwrap().clone();
    assert_eq!(
        described
            .get("webhook_guard_request_duration_seconds")
            .map(|d| d.0),
        Some(Some(Unit::Seconds))
    );
    assert_eq!(
        described.get("webhook_guard_body_size_bytes").map(|d| d.0),
        Some(Some(Unit::Bytes))
    );
    assert_eq!(
        described.len(),
        20 + usize::from(cfg!(feature = "redis")),
        "every metric is described: {described:#?}"
    );
    drop(quiet);
}

#[test]
fn a_route_built_with_a_recorder_starts_at_zero() {
    let recording = Recording::default();
    with_recording(&recording, || async {
        let metrics = observer();
        let _route = Verifier::builder(Scheme::github())
            .name("github-app")
            .secret("gh-metrics-secret")
            .observer(metrics.clone())
            .build()
            .unwrap();
        // A second observer described the same metrics again: harmless.
        let _again = observer();
    });
    assert_eq!(
        recording.gauge(
            "webhook_guard_last_verified_delivery_timestamp_seconds",
            &[("route", "github-app")]
        ),
        Some(0.0)
    );
    assert_eq!(
        recording.described.lock().unwrap().len(),
        20 + usize::from(cfg!(feature = "redis"))
    );
}

/// The observer keeps the handles it registered; when the recorder in use
/// changes, the next requests are counted by the new recorder, none by
/// the old one, and the counts do not carry over.
#[test]
fn handles_follow_the_recorder_in_use() {
    let metrics = observer();
    let verifier = Verifier::builder(Scheme::stripe())
        .name(ROUTE)
        .clock(FixedClock::new(NOW))
        .secret(STRIPE_SECRET)
        .observer(metrics.clone())
        .build()
        .unwrap();
    let first = Recording::default();
    let second = Recording::default();
    let send_some = |recording: &Recording, ok: usize, forged: usize| {
        with_recording(recording, || async {
            let app = router(&verifier);
            for _ in 0..ok {
                let response = send(app.clone(), signer(STRIPE_SECRET, NOW - 3).request(PATH, PAID)).await;
                assert_eq!(response.status(), StatusCode::OK);
            }
            for _ in 0..forged {
                let response = send(app.clone(), signer("whsec_forger", NOW).request(PATH, PAID)).await;
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            }
        });
    };
    send_some(&first, 2, 1);
    send_some(&second, 1, 3);
    send_some(&first, 1, 0);
    let requests = |recording: &Recording, outcome: &str| {
        recording
            .counters("webhook_guard_requests_total")
            .get(&labels(&[
                ("outcome", outcome),
                ("provider", "stripe"),
                ("route", ROUTE),
            ]))
            .copied()
    };
    assert_eq!(requests(&first, "processed"), Some(3));
    assert_eq!(requests(&first, "rejected"), Some(1));
    assert_eq!(requests(&second, "processed"), Some(1));
    assert_eq!(requests(&second, "rejected"), Some(3));
    let mismatches = |recording: &Recording| {
        recording
            .counters("webhook_guard_rejections_total")
            .get(&labels(&[
                ("provider", "stripe"),
                ("reason", "signature_mismatch"),
                ("route", ROUTE),
            ]))
            .copied()
    };
    assert_eq!(mismatches(&first), Some(1));
    assert_eq!(mismatches(&second), Some(3));
    assert_eq!(recording_samples(&first), 4);
    assert_eq!(recording_samples(&second), 4);
}

/// Request durations recorded for the test route, any outcome.
fn recording_samples(recording: &Recording) -> usize {
    ["processed", "rejected"]
        .iter()
        .map(|outcome| {
            recording
                .samples(
                    "webhook_guard_request_duration_seconds",
                    &[("outcome", outcome), ("provider", "stripe"), ("route", ROUTE)],
                )
                .len()
        })
        .sum()
}

#[test]
fn unlabeled_secrets_are_counted_by_index_and_ignored_events_by_type() {
    let metrics = observer();
    let verifier = Verifier::builder(Scheme::github())
        .name("github-app")
        .secret("gh-metrics-old")
        .secret("gh-metrics-new")
        .observer(metrics.clone())
        .build()
        .unwrap();
    let recording = Recording::default();
    with_recording(&recording, || async {
        let events = EventRouter::new().on("push", |_e: Event<serde_json::Value>| async {
            Ok::<(), HandlerError>(())
        });
        let app = Router::new().route(PATH, post_service(events).layer(verifier.layer()));
        let gh = |secret: &str, event: &str| {
            TestSigner::new(&Scheme::github(), secret)
                .unwrap()
                .event_type(event)
                .request(PATH, r#"{"zen":"hi"}"#)
        };
        assert_eq!(
            send(app.clone(), gh("gh-metrics-new", "push")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            send(app, gh("gh-metrics-old", "issues")).await.status(),
            StatusCode::OK
        );
    });
    let r = |pairs: &[(&str, &str)]| labels(pairs);
    assert_eq!(
        recording.counters("webhook_guard_secret_matches_total"),
        BTreeMap::from([
            (r(&[("route", "github-app"), ("secret", "0")]), 1),
            (r(&[("route", "github-app"), ("secret", "1")]), 1),
        ])
    );
    assert_eq!(
        recording.counters("webhook_guard_requests_total"),
        BTreeMap::from([
            (
                r(&[
                    ("route", "github-app"),
                    ("provider", "github"),
                    ("outcome", "processed")
                ]),
                1
            ),
            (
                r(&[
                    ("route", "github-app"),
                    ("provider", "github"),
                    ("outcome", "ignored")
                ]),
                1
            ),
        ])
    );
    // Neither is registered with this observer (it knows invoice.*).
    assert_eq!(
        recording.counters("webhook_guard_events_total"),
        BTreeMap::from([
            (
                r(&[
                    ("route", "github-app"),
                    ("provider", "github"),
                    ("event_type", "_other"),
                    ("result", "processed")
                ]),
                1
            ),
            (
                r(&[
                    ("route", "github-app"),
                    ("provider", "github"),
                    ("event_type", "_other"),
                    ("result", "ignored")
                ]),
                1
            ),
        ])
    );
    assert_eq!(
        recording.gauge(
            "webhook_guard_last_verified_delivery_timestamp_seconds",
            &[("route", "github-app")]
        ),
        Some(SEEN_AT as f64),
        "an ignored delivery is a verified one"
    );
}

#[test]
fn the_rate_limiter_counts_decisions_and_tracked_clients_without_addresses() {
    let metrics = observer();
    let limiter = RateLimiter::builder()
        .per_second(NonZeroU32::new(1).unwrap())
        .burst(NonZeroU32::new(2).unwrap())
        .refund_verified_deliveries(true)
        .observer(metrics.clone())
        .build();
    let verifier = payments(&metrics);
    let recording = Recording::default();
    with_recording(&recording, || async {
        let app = router(&verifier);
        let peer: SocketAddr = "127.0.0.9:4000".parse().unwrap();
        let call = |request: Request<Body>| {
            let service = limiter.service(app.clone(), peer);
            async move {
                service
                    .oneshot(request)
                    .await
                    .unwrap_or_else(|e: Infallible| match e {})
            }
        };
        assert_eq!(
            call(signer(STRIPE_SECRET, NOW).request(PATH, PAID))
                .await
                .status(),
            StatusCode::OK
        );
        for _ in 0..2 {
            call(signer("whsec_forger", NOW).request(PATH, PAID)).await;
        }
        let limited = call(signer("whsec_forger", NOW).request(PATH, PAID)).await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        metrics.sample_rate_limiter(&limiter);
    });
    let r = |pairs: &[(&str, &str)]| labels(pairs);
    assert_eq!(
        recording.counters("webhook_guard_rate_limit_events_total"),
        BTreeMap::from([
            (r(&[("event", "allowed"), ("class", "other")]), 3),
            (r(&[("event", "refunded"), ("class", "other")]), 1),
            (r(&[("event", "failed_authentication"), ("class", "other")]), 2),
            (r(&[("event", "limited"), ("class", "other")]), 1),
        ])
    );
    assert_eq!(
        recording.gauge("webhook_guard_rate_limit_tracked_clients", &[]),
        Some(1.0)
    );
    assert!(recording
        .label_values()
        .iter()
        .all(|v| !v.contains("127.0.0") && !v.contains("4000")));
}

#[test]
fn the_queue_counts_its_events_wait_and_depth() {
    let metrics = observer();
    let verifier = payments(&metrics);
    let recording = Recording::default();
    with_recording(&recording, || async {
        let events = EventRouter::new().on("invoice.paid", |_e: Event<serde_json::Value>| async {
            Ok::<(), HandlerError>(())
        });
        let (queue, handle) = AckQueue::builder()
            .workers(NonZeroUsize::new(1).unwrap())
            .capacity(NonZeroUsize::new(16).unwrap())
            .observer(metrics.clone())
            .spawn(events)
            .unwrap();
        let app = Router::new().route(PATH, post_service(queue.clone()).layer(verifier.layer()));
        let response = send(app, signer(STRIPE_SECRET, NOW).request(PATH, PAID)).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        // The run happens on the worker: wait for it (bounded).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let done = || {
            recording
                .counters("webhook_guard_queue_events_total")
                .contains_key(&labels(&[("provider", "stripe"), ("event", "done")]))
        };
        while !done() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.sample_queue(&queue, 16).await.unwrap(), 0);
        assert!(handle.shutdown(Duration::from_secs(5)).await);
    });
    let r = |pairs: &[(&str, &str)]| labels(pairs);
    assert_eq!(
        recording.counters("webhook_guard_queue_events_total"),
        BTreeMap::from([
            (r(&[("provider", "stripe"), ("event", "enqueued")]), 1),
            (r(&[("provider", "stripe"), ("event", "done")]), 1),
        ])
    );
    let stripe = [("provider", "stripe")];
    assert_eq!(
        recording
            .samples("webhook_guard_queue_store_duration_seconds", &stripe)
            .len(),
        1
    );
    assert_eq!(
        recording
            .samples("webhook_guard_queue_run_duration_seconds", &stripe)
            .len(),
        1
    );
    assert_eq!(
        recording
            .samples("webhook_guard_queue_wait_seconds", &stripe)
            .len(),
        1
    );
    assert_eq!(recording.gauge("webhook_guard_queue_depth", &[]), Some(0.0));
    assert_eq!(recording.gauge("webhook_guard_queue_capacity", &[]), Some(16.0));
    assert_eq!(
        recording.counters("webhook_guard_requests_total"),
        BTreeMap::from([(
            labels(&[("route", ROUTE), ("provider", "stripe"), ("outcome", "accepted")]),
            1
        )])
    );
    assert_eq!(
        recording.gauge(
            "webhook_guard_last_verified_delivery_timestamp_seconds",
            &[("route", ROUTE)]
        ),
        Some(SEEN_AT as f64),
        "an accepted delivery is a verified one"
    );
}

/// The only test that installs the global recorder (once per process):
/// after the observer and the route were built, on a multi-threaded
/// runtime, as an application installing its exporter late would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_recorder_installed_after_the_routes_were_built_gets_everything() {
    let metrics = MetricsObserver::builder().event_types(["invoice.paid"]).build();
    let verifier = Verifier::builder(Scheme::stripe())
        .name("global-route")
        .clock(FixedClock::new(NOW))
        .secret(STRIPE_SECRET)
        .observer(metrics.clone())
        .build()
        .unwrap();
    let recording = Arc::new(Recording::default());
    metrics::set_global_recorder(Global(recording.clone())).expect("the only global recorder");
    let app = router(&verifier);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                send(app, signer(STRIPE_SECRET, NOW).request(PATH, PAID))
                    .await
                    .status()
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.await.unwrap(), StatusCode::OK);
    }
    metrics.publish();
    let mine = |(labels, _): &(Vec<(String, String)>, u64)| {
        labels.contains(&("route".into(), "global-route".into()))
    };
    let requests: Vec<_> = recording
        .counters("webhook_guard_requests_total")
        .into_iter()
        .filter(|c| mine(c))
        .collect();
    assert_eq!(
        requests,
        vec![(
            labels(&[
                ("route", "global-route"),
                ("provider", "stripe"),
                ("outcome", "processed")
            ]),
            4
        )]
    );
    let seen = recording
        .gauge(
            "webhook_guard_last_verified_delivery_timestamp_seconds",
            &[("route", "global-route")],
        )
        .unwrap();
    // The system clock: after the crate's fixed test time, and sane.
    assert!(seen > NOW as f64, "{seen}");
    assert_eq!(
        recording.described.lock().unwrap().len(),
        20 + usize::from(cfg!(feature = "redis"))
    );
}

/// A limiter shared through Redis reports whether its fallback is in force
/// (here Redis is a closed port: the first request finds it unreachable);
/// a local limiter has no such gauge.
#[cfg(feature = "redis")]
#[test]
fn a_shared_limiter_reports_its_fallback() {
    use webhook_guard::fleet::RedisConnection;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again once the listener is dropped
    let redis = RedisConnection::builder(&format!("redis://127.0.0.1:{port}/"))
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let metrics = observer();
    let shared = RateLimiter::builder().shared(redis, None).build();
    let local = RateLimiter::builder().build();
    let recording = Recording::default();
    with_recording(&recording, || async {
        metrics.sample_rate_limiter(&local);
        assert_eq!(
            recording.gauge("webhook_guard_rate_limit_shared_fallback", &[]),
            None,
            "a local limiter has no fallback gauge"
        );
        metrics.sample_rate_limiter(&shared);
        assert_eq!(
            recording.gauge("webhook_guard_rate_limit_shared_fallback", &[]),
            Some(0.0),
            "Redis not yet tried"
        );
        let app = Router::new().route(PATH, post(|| async { "ok" }));
        let peer: SocketAddr = "127.0.0.9:4000".parse().unwrap();
        let response = shared
            .service(app, peer)
            .oneshot(Request::post(PATH).body(Body::empty()).unwrap())
            .await
            .unwrap_or_else(|e: Infallible| match e {});
        assert_eq!(response.status(), StatusCode::OK, "the default fallback admits");
        metrics.sample_rate_limiter(&shared);
        assert_eq!(
            recording.gauge("webhook_guard_rate_limit_shared_fallback", &[]),
            Some(1.0)
        );
    });
}
