//! What watching costs: the verify layer at 1 KiB with a `MetricsObserver`
//! and a real Prometheus recorder installed, beside the same layer without
//! an observer, measured with criterion in one run.
//!
//! Both routes are a Stripe verifier (fixed clock, one secret) in front of
//! a handler that answers 200; each iteration sends one signed 1 KiB
//! delivery through the router with `oneshot` on a current-thread runtime
//! (the request is built outside the timing). Group `observe/1KiB`:
//!
//! - `layer`: no observer (the baseline);
//! - `layer_metrics`: `MetricsObserver` with two registered event types,
//!   the global recorder being `metrics-exporter-prometheus`'s
//!   `PrometheusRecorder` (histograms with buckets, as the demo receiver
//!   configures them), so every counter and histogram is really recorded.
//!
//! Before measuring, the bench checks that both answer 200 and that the
//! recorder's rendering holds the route's request counter.
//!
//! ```text
//! cargo bench --all-features --bench observe
//! BENCH_SMOKE=1 cargo bench --all-features --bench observe   # CI: tiny times
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::Request;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::ServiceExt as _;
use webhook_guard::metrics::MetricsObserver;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{FixedClock, Scheme, Verifier};

const SECRET: &str = "whsec_bench_observe";
const NOW: i64 = 1_780_000_000;

fn smoke() -> bool {
    std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn config() -> Criterion {
    let c = Criterion::default();
    if smoke() {
        c.warm_up_time(Duration::from_millis(50))
            .measurement_time(Duration::from_millis(100))
            .sample_size(10)
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4))
    }
}

/// A Stripe event of exactly 1 KiB.
fn body() -> String {
    let mut body = String::from(r#"{"id":"evt_1","type":"invoice.paid","data":{"object":{"padding":""#);
    while body.len() < 1024 - 4 {
        body.push('x');
    }
    body.push_str(r#""}}}"#);
    assert_eq!(body.len(), 1024);
    body
}

/// An observer that looks at nothing: what the layer spends building the
/// record (clock reads, the event type) without any metric.
#[derive(Debug)]
struct Blind;

impl webhook_guard::observe::Observer for Blind {
    fn on_request(&self, record: &webhook_guard::observe::RequestRecord<'_>) {
        black_box(record.event_type);
    }
}

fn router(metrics: Option<std::sync::Arc<dyn webhook_guard::observe::Observer>>) -> Router {
    let mut builder = Verifier::builder(Scheme::stripe())
        .name("stripe-payments")
        .secret(SECRET)
        .clock(FixedClock::new(NOW));
    if let Some(m) = metrics {
        builder = builder.observer(m);
    }
    let verifier = builder.build().unwrap();
    Router::new().route("/hook", post(|| async { "ok" }).layer(verifier.layer()))
}

fn observe(c: &mut Criterion) {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0])
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();
    let metrics = MetricsObserver::builder()
        .event_types(["invoice.paid", "invoice.payment_failed"])
        .build();
    let plain = router(None);
    let blind = router(Some(std::sync::Arc::new(Blind)));
    let watched = router(Some(metrics));
    let signer = TestSigner::new(&Scheme::stripe(), SECRET).unwrap().timestamp(NOW);
    let body = body();
    let request = || -> Request<Body> { signer.request("/hook", body.clone()) };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for app in [&plain, &watched] {
        let status = rt.block_on(app.clone().oneshot(request())).unwrap().status();
        assert_eq!(status, 200);
    }
    let rendered = handle.render();
    assert!(
        rendered.contains(
            r#"webhook_guard_requests_total{route="stripe-payments",provider="stripe",outcome="processed"} 1"#
        ),
        "the recorder did not record the delivery:\n{rendered}"
    );

    let mut group = c.benchmark_group("observe/1KiB");
    group.throughput(Throughput::Bytes(1024));
    group.bench_function("layer", |b| {
        b.iter_batched(
            request,
            |req| rt.block_on(plain.clone().oneshot(black_box(req))).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("layer_blind_observer", |b| {
        b.iter_batched(
            request,
            |req| rt.block_on(blind.clone().oneshot(black_box(req))).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("layer_metrics", |b| {
        b.iter_batched(
            request,
            |req| rt.block_on(watched.clone().oneshot(black_box(req))).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = observe
}
criterion_main!(benches);
