//! The observer hook, end to end: a recording observer on real axum
//! routers behind the layer, with requests signed like the providers sign
//! them. Each test checks the records a scripted sequence produces:
//! exactly one per request, with the outcome, reason, matched secret,
//! skew, body size, times and (only once verified) event type; and the
//! dedupe, rate limiter and queue records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::routing::{get, post, post_service};
use axum::Router;
use http::{Request, StatusCode};
use tower::ServiceExt as _;
use webhook_guard::dedupe::{Dedupe, MemoryStore};
use webhook_guard::dispatch::{Event, EventRouter, HandlerError};
use webhook_guard::handshake::Handshake;
use webhook_guard::observe::{
    DedupeOp, DedupeRecord, DedupeResult, Observer, Outcome, QueueEvent, QueueRecord, RateLimitEvent,
    RateLimitRecord, RequestRecord, RouteRecord,
};
use webhook_guard::queue::AckQueue;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{FixedClock, RateLimiter, RejectionKind, Scheme, Secret, Verifier};

use support::{body_bytes, headers, post_request, send, PATH};

const NOW: i64 = 1_700_000_000;
const STRIPE_SECRET: &str = "whsec_observe_test_secret";
const STRIPE_OLD: &str = "whsec_observe_old_secret";
const EVENT_ID: &str = "evt_observed_delivery_0001";
const STRIPE_BODY: &str = r#"{"id":"evt_observed_delivery_0001","type":"invoice.paid"}"#;

/// A request record, owned.
#[derive(Debug, Clone)]
struct Req {
    route: String,
    provider: String,
    outcome: Outcome,
    status: Option<StatusCode>,
    secret: Option<(usize, Option<String>)>,
    skew: Option<i64>,
    future: Option<bool>,
    body_bytes: Option<usize>,
    layer: Duration,
    handler: Option<Duration>,
    event_type: Option<String>,
    debug: String,
}

/// A route: name, provider, secret labels.
type RouteSeen = (String, String, Vec<Option<String>>);
/// A dedupe record: route, namespace, op, result, its Debug.
type DedupeSeen = (String, String, DedupeOp, DedupeResult, String);
/// A queue record: event, attempt, event type, fields consistent, its Debug.
type QueueSeen = (QueueEvent, Option<u32>, Option<String>, bool, String);

/// Records everything it is told.
#[derive(Default)]
struct Recorder {
    routes: Mutex<Vec<RouteSeen>>,
    requests: Mutex<Vec<Req>>,
    dedupe: Mutex<Vec<DedupeSeen>>,
    limits: Mutex<Vec<RateLimitRecord>>,
    queue: Mutex<Vec<QueueSeen>>,
}

impl Observer for Recorder {
    fn on_route(&self, r: &RouteRecord<'_>) {
        self.routes.lock().unwrap().push((
            r.route.to_string(),
            r.provider.name().to_owned(),
            r.secret_labels
                .iter()
                .map(|l| l.as_deref().map(str::to_owned))
                .collect(),
        ));
    }

    fn on_request(&self, r: &RequestRecord<'_>) {
        assert!(r.layer_time >= r.handler_time.unwrap_or_default());
        assert_eq!(r.own_time(), r.layer_time - r.handler_time.unwrap_or_default());
        self.requests.lock().unwrap().push(Req {
            route: r.route.to_string(),
            provider: r.provider.name().to_owned(),
            outcome: r.outcome,
            status: r.status,
            secret: r.secret.map(|s| (s.index, s.label.map(|l| l.to_string()))),
            skew: r.skew.map(|s| s.secs()),
            future: r.skew.map(|s| s.is_future()),
            body_bytes: r.body_bytes,
            layer: r.layer_time,
            handler: r.handler_time,
            event_type: r.event_type.map(str::to_owned),
            debug: format!("{r:?}"),
        });
    }

    fn on_dedupe(&self, r: &DedupeRecord<'_>) {
        self.dedupe.lock().unwrap().push((
            r.route.to_string(),
            r.namespace.to_owned(),
            r.op,
            r.result,
            format!("{r:?}"),
        ));
    }

    fn on_rate_limit(&self, r: &RateLimitRecord) {
        self.limits.lock().unwrap().push(*r);
    }

    fn on_queue(&self, r: &QueueRecord<'_>) {
        let ok = r.provider.name() == "stripe"
            && (r.storage_latency.is_some() != r.run_time.is_some())
            && (r.run_time.is_some() == r.status.is_some());
        self.queue.lock().unwrap().push((
            r.event,
            r.attempt,
            r.event_type.map(str::to_owned),
            ok,
            format!("{r:?}"),
        ));
    }
}

impl Recorder {
    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    /// The one record made since `before` records, checked to be the only one.
    fn only_new(&self, before: usize) -> Req {
        let all = self.requests();
        assert_eq!(all.len(), before + 1, "exactly one record per request: {all:#?}");
        all[before].clone()
    }
}

fn stripe(recorder: &Arc<Recorder>) -> webhook_guard::VerifierBuilder {
    Verifier::builder(Scheme::stripe())
        .clock(FixedClock::new(NOW))
        .observer(recorder.clone())
}

fn signer(secret: &str, at: i64) -> TestSigner {
    TestSigner::new(&Scheme::stripe(), secret).unwrap().timestamp(at)
}

fn router(verifier: &Verifier) -> Router {
    Router::new().route(PATH, post(|| async { "done" }).layer(verifier.layer()))
}

#[tokio::test]
async fn a_processed_delivery_yields_one_full_record() {
    let recorder = Arc::new(Recorder::default());
    let verifier = stripe(&recorder)
        .secret(Secret::labeled("2026", STRIPE_SECRET))
        .build()
        .unwrap();
    assert_eq!(verifier.name(), "stripe", "the default name is the provider's");
    assert_eq!(
        *recorder.routes.lock().unwrap(),
        vec![(
            "stripe".to_owned(),
            "stripe".to_owned(),
            vec![Some("2026".to_owned())]
        )],
        "the route is announced once, when built"
    );
    let request = signer(STRIPE_SECRET, NOW - 7).request(PATH, STRIPE_BODY);
    let signature = request.headers()["stripe-signature"].to_str().unwrap().to_owned();
    let response = send(router(&verifier), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&body_bytes(response).await[..], b"done");

    let r = recorder.only_new(0);
    assert_eq!(r.route, "stripe");
    assert_eq!(r.provider, "stripe");
    assert_eq!(r.outcome, Outcome::Processed);
    assert_eq!(r.outcome.name(), "processed");
    assert_eq!(r.status, Some(StatusCode::OK));
    assert_eq!(r.secret, Some((0, Some("2026".to_owned()))));
    assert_eq!(r.skew, Some(7), "signed 7 s before the clock");
    assert_eq!(r.future, Some(false));
    assert_eq!(r.body_bytes, Some(STRIPE_BODY.len()));
    assert!(r.handler.is_some(), "the handler ran");
    assert!(r.layer >= r.handler.unwrap());
    assert_eq!(r.event_type.as_deref(), Some("invoice.paid"));
    // Nothing a client chose beyond the verified event type, and no secret.
    for forbidden in [STRIPE_SECRET, EVENT_ID, "evt_observed", &signature, "v1="] {
        assert!(!r.debug.contains(forbidden), "{forbidden:?} in {}", r.debug);
    }
}

#[tokio::test]
async fn routes_carry_their_configured_name() {
    let recorder = Arc::new(Recorder::default());
    let verifier = stripe(&recorder)
        .name("stripe-payments")
        .secret(STRIPE_SECRET)
        .build()
        .unwrap();
    assert_eq!(verifier.name(), "stripe-payments");
    assert!(format!("{verifier:?}").contains("stripe-payments"));
    let routes = recorder.routes.lock().unwrap().clone();
    assert_eq!(
        routes,
        vec![("stripe-payments".to_owned(), "stripe".to_owned(), vec![None])]
    );
    let app = router(&verifier);
    send(app.clone(), signer(STRIPE_SECRET, NOW).request(PATH, STRIPE_BODY)).await;
    send(app, post_request(headers(&[]), Body::from(STRIPE_BODY))).await;
    let all = recorder.requests();
    assert_eq!(all.len(), 2);
    assert!(all
        .iter()
        .all(|r| r.route == "stripe-payments" && r.provider == "stripe"));
}

#[tokio::test]
async fn each_rejection_yields_one_record_with_its_reason_and_no_event_type() {
    let recorder = Arc::new(Recorder::default());
    let verifier = stripe(&recorder)
        .secret(STRIPE_SECRET)
        .max_body_bytes(NonZeroUsize::new(256).unwrap())
        .build()
        .unwrap();
    let app = router(&verifier);

    // Missing signature: nothing read, nothing verified.
    let response = send(app.clone(), post_request(headers(&[]), Body::from(STRIPE_BODY))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let r = recorder.only_new(0);
    assert_eq!(r.outcome, Outcome::Rejected(RejectionKind::MissingSignature));
    assert_eq!(r.outcome.rejection(), Some(RejectionKind::MissingSignature));
    assert_eq!(r.status, Some(StatusCode::UNAUTHORIZED));
    assert_eq!(
        (r.secret.clone(), r.body_bytes, r.handler, r.event_type.clone()),
        (None, None, None, None)
    );

    // Signed with another secret: the body was read, the signature did not
    // match, and the body's `type` is not reported (it is not verified).
    let request = signer("whsec_someone_else", NOW).request(PATH, STRIPE_BODY);
    let signature = request.headers()["stripe-signature"].to_str().unwrap().to_owned();
    send(app.clone(), request).await;
    let r = recorder.only_new(1);
    assert_eq!(r.outcome, Outcome::Rejected(RejectionKind::SignatureMismatch));
    assert_eq!(r.body_bytes, Some(STRIPE_BODY.len()));
    assert_eq!(r.secret, None);
    assert_eq!(r.event_type, None, "no event type before verification");
    assert_eq!(r.handler, None);
    assert!(!r.debug.contains("invoice.paid") && !r.debug.contains(&signature));

    // Stale, in the past and in the future: the skew and its sign.
    send(
        app.clone(),
        signer(STRIPE_SECRET, NOW - 400).request(PATH, STRIPE_BODY),
    )
    .await;
    let r = recorder.only_new(2);
    assert_eq!(
        r.outcome,
        Outcome::Rejected(RejectionKind::TimestampOutOfTolerance)
    );
    assert_eq!((r.skew, r.future), (Some(400), Some(false)));
    assert_eq!(r.event_type, None);
    send(
        app.clone(),
        signer(STRIPE_SECRET, NOW + 900).request(PATH, STRIPE_BODY),
    )
    .await;
    let r = recorder.only_new(3);
    assert_eq!(
        r.outcome,
        Outcome::Rejected(RejectionKind::TimestampOutOfTolerance)
    );
    assert_eq!((r.skew, r.future), (Some(-900), Some(true)));

    // Too large by its Content-Length: refused before reading.
    let big = format!(
        r#"{{"id":"evt_big","type":"invoice.paid","pad":"{}"}}"#,
        "x".repeat(400)
    );
    let mut request = signer(STRIPE_SECRET, NOW).request(PATH, big.clone());
    request.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        big.len().to_string().parse().unwrap(),
    );
    let response = send(app.clone(), request).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = recorder.only_new(4);
    assert_eq!(r.outcome, Outcome::Rejected(RejectionKind::BodyTooLarge));
    assert_eq!((r.body_bytes, r.handler), (None, None));

    // Wrong method.
    let request = Request::get(PATH).body(Body::empty()).unwrap();
    let app_any = Router::new().route(PATH, get(|| async { "no" }).layer(verifier.layer()));
    send(app_any, request).await;
    let r = recorder.only_new(5);
    assert_eq!(r.outcome, Outcome::Rejected(RejectionKind::MethodNotAllowed));
    assert_eq!(r.status, Some(StatusCode::METHOD_NOT_ALLOWED));
}

#[tokio::test]
async fn a_timestamp_ahead_of_the_clock_has_a_negative_skew() {
    let recorder = Arc::new(Recorder::default());
    let verifier = stripe(&recorder).secret(STRIPE_SECRET).build().unwrap();
    let response = send(
        router(&verifier),
        signer(STRIPE_SECRET, NOW + 30).request(PATH, STRIPE_BODY),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let r = recorder.only_new(0);
    assert_eq!(r.outcome, Outcome::Processed);
    assert_eq!((r.skew, r.future), (Some(-30), Some(true)));
}

#[tokio::test]
async fn rotation_names_the_secret_that_matched() {
    let recorder = Arc::new(Recorder::default());
    let verifier = stripe(&recorder)
        .secret(Secret::labeled("old", STRIPE_OLD))
        .secret(Secret::labeled("new", STRIPE_SECRET))
        .build()
        .unwrap();
    assert_eq!(
        recorder.routes.lock().unwrap()[0].2,
        vec![Some("old".to_owned()), Some("new".to_owned())]
    );
    let app = router(&verifier);
    send(app.clone(), signer(STRIPE_OLD, NOW).request(PATH, STRIPE_BODY)).await;
    send(app.clone(), signer(STRIPE_SECRET, NOW).request(PATH, STRIPE_BODY)).await;
    let all = recorder.requests();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].secret, Some((0, Some("old".to_owned()))));
    assert_eq!(all[1].secret, Some((1, Some("new".to_owned()))));
    for r in &all {
        assert_eq!(r.outcome, Outcome::Processed);
        assert!(
            !r.debug.contains(STRIPE_OLD) && !r.debug.contains(STRIPE_SECRET),
            "{}",
            r.debug
        );
    }
}

#[tokio::test]
async fn dedupe_reports_its_claims_and_the_duplicate_outcome() {
    let recorder = Arc::new(Recorder::default());
    let verifier = stripe(&recorder)
        .name("payments")
        .secret(STRIPE_SECRET)
        .dedupe(Dedupe::builder(MemoryStore::new(), "stripe-ns").build().unwrap())
        .build()
        .unwrap();
    let (app, calls) = support::app(&verifier);
    for _ in 0..2 {
        let response = send(app.clone(), signer(STRIPE_SECRET, NOW).request(PATH, STRIPE_BODY)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the handler ran once"
    );
    let all = recorder.requests();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].outcome, Outcome::Processed);
    assert!(all[0].handler.is_some());
    assert_eq!(all[1].outcome, Outcome::Duplicate);
    assert_eq!(all[1].handler, None, "a duplicate never reaches the handler");
    assert_eq!(all[1].event_type.as_deref(), Some("invoice.paid"));
    assert_eq!(all[1].secret, Some((0, None)));

    // The route's dedupe reports to the route's observer.
    let ops: Vec<_> = recorder
        .dedupe
        .lock()
        .unwrap()
        .iter()
        .map(|(route, ns, op, result, debug)| {
            assert_eq!((route.as_str(), ns.as_str()), ("payments", "stripe-ns"));
            assert!(!debug.contains(EVENT_ID), "{debug}");
            (*op, *result)
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            (DedupeOp::Claim, DedupeResult::Acquired),
            (DedupeOp::Complete, DedupeResult::Done),
            (DedupeOp::Claim, DedupeResult::Duplicate),
        ]
    );
}

#[tokio::test]
async fn a_failing_handler_is_a_handler_error_and_its_claim_is_released() {
    let recorder = Arc::new(Recorder::default());
    let own = Arc::new(Recorder::default());
    let verifier = stripe(&recorder)
        .secret(STRIPE_SECRET)
        .dedupe(
            Dedupe::builder(MemoryStore::new(), "stripe")
                .observer(own.clone())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let app = Router::new().route(
        PATH,
        post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }).layer(verifier.layer()),
    );
    send(app, signer(STRIPE_SECRET, NOW).request(PATH, STRIPE_BODY)).await;
    let r = recorder.only_new(0);
    assert_eq!(r.outcome, Outcome::Rejected(RejectionKind::HandlerError));
    assert_eq!(r.status, Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert!(r.handler.is_some());
    // A dedupe with an observer of its own reports there, not to the route's.
    assert!(recorder.dedupe.lock().unwrap().is_empty());
    let ops: Vec<_> = own.dedupe.lock().unwrap().iter().map(|d| (d.2, d.3)).collect();
    assert_eq!(
        ops,
        vec![
            (DedupeOp::Claim, DedupeResult::Acquired),
            (DedupeOp::Release, DedupeResult::Done)
        ]
    );
}

#[tokio::test]
async fn handshakes_answered_by_the_layer_are_handshakes() {
    let recorder = Arc::new(Recorder::default());
    let verifier = Verifier::builder(Scheme::meta())
        .secret("meta-app-secret")
        .handshake(Handshake::meta("verify-me"))
        .observer(recorder.clone())
        .build()
        .unwrap();
    let app = Router::new().route(
        PATH,
        get(|| async { "unreachable" })
            .post(|| async { "ok" })
            .layer(verifier.layer()),
    );
    let ok = Request::get(format!(
        "{PATH}?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=42"
    ))
    .body(Body::empty())
    .unwrap();
    let response = send(app.clone(), ok).await;
    assert_eq!(response.status(), StatusCode::OK);
    let r = recorder.only_new(0);
    assert_eq!((r.route.as_str(), r.outcome), ("meta", Outcome::Handshake));
    assert_eq!(
        (r.handler, r.secret.clone(), r.event_type.clone()),
        (None, None, None)
    );

    let wrong = Request::get(format!(
        "{PATH}?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=42"
    ))
    .body(Body::empty())
    .unwrap();
    send(app, wrong).await;
    let r = recorder.only_new(1);
    assert_eq!(r.outcome, Outcome::Rejected(RejectionKind::HandshakeRejected));
    assert!(!r.debug.contains("verify-me") && !r.debug.contains("guess"));
}

#[tokio::test]
async fn an_event_no_handler_takes_is_ignored() {
    let recorder = Arc::new(Recorder::default());
    let verifier = Verifier::builder(Scheme::github())
        .secret("gh-observe-secret")
        .observer(recorder.clone())
        .build()
        .unwrap();
    let events = EventRouter::new().on("push", |_e: Event<serde_json::Value>| async {
        Ok::<(), HandlerError>(())
    });
    let app = Router::new().route(PATH, post_service(events).layer(verifier.layer()));
    let gh = |event: &str| {
        TestSigner::new(&Scheme::github(), "gh-observe-secret")
            .unwrap()
            .event_type(event)
            .request(PATH, r#"{"zen":"hi"}"#)
    };
    assert_eq!(send(app.clone(), gh("push")).await.status(), StatusCode::OK);
    assert_eq!(send(app, gh("issues")).await.status(), StatusCode::OK);
    let all = recorder.requests();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].outcome, Outcome::Processed);
    assert_eq!(all[0].event_type.as_deref(), Some("push"));
    assert_eq!(all[1].outcome, Outcome::Ignored);
    assert_eq!(all[1].event_type.as_deref(), Some("issues"));
    assert!(
        !all[1].debug.contains("msg_test"),
        "no delivery id: {}",
        all[1].debug
    );
}

#[tokio::test]
async fn a_dropped_request_is_cancelled() {
    let recorder = Arc::new(Recorder::default());
    let verifier = stripe(&recorder).secret(STRIPE_SECRET).build().unwrap();
    let app = Router::new().route(
        PATH,
        post(std::future::pending::<&'static str>).layer(verifier.layer()),
    );
    let request = signer(STRIPE_SECRET, NOW).request(PATH, STRIPE_BODY);
    let outcome = tokio::time::timeout(Duration::from_millis(200), app.oneshot(request)).await;
    assert!(outcome.is_err(), "the handler never answers");
    let r = recorder.only_new(0);
    assert_eq!(r.outcome, Outcome::Cancelled);
    assert_eq!(r.status, None);
    assert!(r.handler.is_some(), "it was cancelled while the handler ran");
    assert_eq!(r.event_type.as_deref(), Some("invoice.paid"));
}

#[tokio::test]
async fn the_queue_reports_accepted_deliveries_and_their_runs() {
    let recorder = Arc::new(Recorder::default());
    let events = EventRouter::new().on("invoice.paid", |_e: Event<serde_json::Value>| async {
        Ok::<(), HandlerError>(())
    });
    let (queue, handle) = AckQueue::builder()
        .workers(NonZeroUsize::new(1).unwrap())
        .observer(recorder.clone())
        .spawn(events)
        .unwrap();
    // The queue and the route share one observer.
    let verifier = stripe(&recorder).secret(STRIPE_SECRET).build().unwrap();
    let app = Router::new().route(PATH, post_service(queue).layer(verifier.layer()));
    let response = send(app, signer(STRIPE_SECRET, NOW).request(PATH, STRIPE_BODY)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let r = recorder.only_new(0);
    assert_eq!(r.outcome, Outcome::Accepted);
    assert_eq!(r.outcome.name(), "accepted");
    assert_eq!(r.status, Some(StatusCode::ACCEPTED));
    assert!(r.handler.is_some(), "time in the queue's enqueue");

    // The run happens on a worker: wait for its record (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while recorder.queue.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(handle.shutdown(Duration::from_secs(5)).await);
    let queue = recorder.queue.lock().unwrap().clone();
    let events: Vec<_> = queue.iter().map(|q| (q.0, q.1, q.2.as_deref(), q.3)).collect();
    assert_eq!(
        events,
        vec![
            (QueueEvent::Enqueued, None, Some("invoice.paid"), true),
            (QueueEvent::Done, Some(1), Some("invoice.paid"), true),
        ]
    );
    assert!(queue.iter().all(|q| !q.4.contains(EVENT_ID)));
    assert_eq!(recorder.requests().len(), 1, "the run makes no request record");
}

#[tokio::test]
async fn the_rate_limiter_reports_its_decisions() {
    let recorder = Arc::new(Recorder::default());
    let limiter = RateLimiter::builder()
        .per_second(NonZeroU32::new(1).unwrap())
        .burst(NonZeroU32::new(2).unwrap())
        .refund_verified_deliveries(true)
        .observer(recorder.clone())
        .build();
    let verifier = stripe(&recorder).secret(STRIPE_SECRET).build().unwrap();
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
    // A verified delivery: allowed, then refunded.
    let response = call(signer(STRIPE_SECRET, NOW).request(PATH, STRIPE_BODY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    // A forged one: allowed, then charged as a failed authentication.
    let response = call(signer("whsec_forger", NOW).request(PATH, STRIPE_BODY)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The burst of 2 is spent (the refund gave one back, the forgery took
    // it): the next is limited and never reaches the layer.
    call(signer("whsec_forger", NOW).request(PATH, STRIPE_BODY)).await;
    let response = call(signer("whsec_forger", NOW).request(PATH, STRIPE_BODY)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let events: Vec<_> = recorder.limits.lock().unwrap().iter().map(|r| r.event).collect();
    assert_eq!(
        events,
        vec![
            RateLimitEvent::Allowed,
            RateLimitEvent::Refunded,
            RateLimitEvent::Allowed,
            RateLimitEvent::FailedAuthentication,
            RateLimitEvent::Allowed,
            RateLimitEvent::FailedAuthentication,
            RateLimitEvent::Limited,
        ]
    );
    assert!(recorder.limits.lock().unwrap().iter().all(|r| !r.sender));
    assert!(!format!("{:?}", recorder.limits.lock().unwrap()).contains("127.0.0.9"));
    // Three requests reached the layer; the limited one did not.
    let outcomes: Vec<_> = recorder.requests().iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Processed,
            Outcome::Rejected(RejectionKind::SignatureMismatch),
            Outcome::Rejected(RejectionKind::SignatureMismatch),
        ]
    );
}
