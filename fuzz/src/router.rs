//! The `router` target: the real axum router with four verified routes
//! (Stripe, GitHub, Standard Webhooks, Slack), each behind a `Verifier`
//! with dedupe in a `MemoryStore` and the demo's JSON Schema, at a fixed
//! time, driven with `oneshot` on a current-thread runtime built once.
//!
//! Input: byte 0 picks the route, byte 1 the method, byte 2 the signing
//! flags (bit 0: sign with `TestSigner`; bit 1: with a wrong secret
//! instead), byte 3 the signing time offset (`i8` × 10 s), byte 4 the
//! delivery id; then header lines (`name: value`), an empty line, and the
//! body.
//!
//! Asserts: no panic; the status is one the receiver contract allows
//! (200, 400, 401, 405, 409, 413, 415, 422 here: no rate limiter, no
//! failing handler, a store that is never full); a 2xx only for a request
//! this target signed with the route's secret inside the tolerance; an
//! error other than axum's bare 405 is `application/problem+json`; no
//! response carries the route's secret (unless the request itself did: a
//! handler may echo what it was sent).

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use http::{header, Method, Request, StatusCode};
use tower::ServiceExt as _;
use webhook_guard::dedupe::{Dedupe, MemoryStore};
use webhook_guard::schema::Schemas;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{FixedClock, Scheme, VerifiedWebhook, Verifier};

/// The fixed time of the verifiers' clock.
const NOW: i64 = 1_700_000_000;
/// The verifiers' tolerance.
const TOLERANCE: i64 = 300;
/// Stores are rebuilt (with the whole app) past this many keys, so a long
/// campaign neither fills them (503) nor grows without bound.
const REBUILD_AT: usize = 100_000;

struct Route {
    path: &'static str,
    scheme: fn() -> Scheme,
    secret: &'static str,
    wrong: &'static str,
    schema: &'static str,
    timestamped: bool,
    max_body: usize,
}

const ROUTES: [Route; 4] = [
    Route {
        path: "/webhooks/stripe",
        scheme: Scheme::stripe,
        secret: "whsec_fuzz_stripe_3b9c1e",
        wrong: "whsec_fuzz_stripe_3b9c1f",
        schema: include_str!("../../examples/schemas/stripe.json"),
        timestamped: true,
        max_body: 1 << 20,
    },
    Route {
        path: "/webhooks/github",
        scheme: Scheme::github,
        secret: "fuzz github secret 7d2a",
        wrong: "fuzz github secret 7d2b",
        schema: include_str!("../../examples/schemas/github.json"),
        timestamped: false,
        // Small, so fuzzed bodies reach the 413 path.
        max_body: 256,
    },
    Route {
        path: "/webhooks/standard",
        scheme: Scheme::standard_webhooks,
        secret: "whsec_ZnV6ei1zdGFuZGFyZC1rZXktMzItYnl0ZXMtbG9uZyE=",
        wrong: "whsec_d3JvbmctZnV6ei1rZXktMzItYnl0ZXMtbG9uZy4uLg==",
        schema: include_str!("../../examples/schemas/standard.json"),
        timestamped: true,
        max_body: 1 << 20,
    },
    Route {
        path: "/webhooks/slack",
        scheme: Scheme::slack,
        secret: "fuzz-slack-signing-secret-5e0f",
        wrong: "fuzz-slack-signing-secret-5e0e",
        schema: include_str!("../../examples/schemas/slack.json"),
        timestamped: true,
        max_body: 1 << 20,
    },
];

struct App {
    router: Router,
    stores: Vec<Arc<MemoryStore>>,
}

impl App {
    fn new() -> Self {
        let clock = Arc::new(FixedClock::new(NOW));
        let mut router = Router::new();
        let mut stores = Vec::new();
        for route in &ROUTES {
            let store = Arc::new(
                MemoryStore::builder()
                    .max_entries(NonZeroUsize::new(4 * REBUILD_AT).expect("non-zero"))
                    .clock(Arc::clone(&clock))
                    .build(),
            );
            let schema = serde_json::from_str(route.schema).expect("schema JSON");
            let verifier = Verifier::builder((route.scheme)())
                .secret(route.secret)
                .tolerance(Duration::from_secs(TOLERANCE as u64))
                .max_body_bytes(NonZeroUsize::new(route.max_body).expect("non-zero"))
                .clock(Arc::clone(&clock))
                .schemas(Schemas::builder().default_schema(schema).build().expect("schema"))
                .dedupe(
                    Dedupe::builder(Arc::clone(&store), route.path)
                        .build()
                        .expect("dedupe"),
                )
                .build()
                .expect("verifier");
            let handler = |_hook: VerifiedWebhook| async { "handled" };
            router = router.route(route.path, post(handler).layer(verifier.layer()));
            stores.push(store);
        }
        Self { router, stores }
    }

    fn keys(&self) -> usize {
        self.stores.iter().map(|s| s.len()).sum()
    }
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
});

thread_local! {
    static APP: RefCell<App> = RefCell::new(App::new());
}

fn split_blank_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[]),
    }
}

/// The `router` target.
pub fn router(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<5>() else {
        return;
    };
    let [r, m, flags, offset, id] = *head;
    let route = &ROUTES[usize::from(r) % ROUTES.len()];
    let method = match m % 8 {
        0..=4 => Method::POST,
        5 => Method::GET,
        6 => Method::PUT,
        _ => Method::DELETE,
    };
    let sign = flags & 1 != 0;
    let wrong_secret = flags & 2 != 0;
    let offset = i64::from(offset as i8) * 10;
    let (block, body) = split_blank_line(rest);

    let mut headers = http::HeaderMap::new();
    if sign {
        let secret = if wrong_secret { route.wrong } else { route.secret };
        headers = TestSigner::new(&(route.scheme)(), secret)
            .expect("signer")
            .timestamp(NOW + offset)
            .id(format!("msg_fuzz_{}", id % 4))
            .event_type("push")
            .headers(body);
    }
    for (name, value) in crate::headers(block) {
        // `HeaderMap`'s iterator gives `None` for a repeated name's later
        // values; keep the last name seen.
        if let Some(name) = name {
            headers.append(name, value);
        } else if let Some(last) = headers.keys().last().cloned() {
            headers.append(last, value);
        }
    }
    let mut request = Request::new(Body::from(body.to_vec()));
    *request.method_mut() = method.clone();
    *request.uri_mut() = route.path.parse().expect("uri");
    *request.headers_mut() = headers;

    let authentic = sign && !wrong_secret && (!route.timestamped || offset.abs() <= TOLERANCE);

    let router = APP.with(|app| {
        let mut app = app.borrow_mut();
        if app.keys() > REBUILD_AT {
            *app = App::new();
        }
        app.router.clone()
    });
    let (status, content_type, bytes) = RUNTIME.block_on(async move {
        let response = router.oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("response body");
        (status, content_type, bytes)
    });

    const ALLOWED: [u16; 8] = [200, 400, 401, 405, 409, 413, 415, 422];
    assert!(
        ALLOWED.contains(&status.as_u16()),
        "status {status} on {method} {} (signed: {sign}, wrong secret: {wrong_secret}, offset {offset}): {}",
        route.path,
        String::from_utf8_lossy(&bytes)
    );
    if status.is_success() {
        assert!(
            authentic,
            "{status} for a request not signed with the route's secret in tolerance \
             (signed: {sign}, wrong secret: {wrong_secret}, offset {offset}) on {}",
            route.path
        );
    } else if !(status == StatusCode::METHOD_NOT_ALLOWED && method != Method::POST) {
        assert_eq!(
            content_type.as_ref().map(|v| v.as_bytes()),
            Some(&b"application/problem+json"[..]),
            "{status} without a problem document: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // A response may echo what the client sent (the demo handler answers
    // with the delivery's type): the secret counts only when the request
    // did not carry it itself.
    let carries = |hay: &[u8]| {
        hay.windows(route.secret.len())
            .any(|w| w == route.secret.as_bytes())
    };
    assert!(
        carries(data) || !carries(&bytes),
        "the response carries the secret"
    );
}
