//! Hostile input, driven through one realistic app: every route of the demo
//! receiver (stripe, github, standard, slack, shopify, meta, x) with its
//! JSON Schema, dedupe on a `MemoryStore`, a `FixedClock`, and a
//! `RateLimiter` in front (`limiter.service(router, peer)` per request).
//!
//! The table [`cases`] names, for every case, the class of
//! `SECURITY.md` it attacks (a promise `P1`..`P11` or a Rust pitfall) and
//! the answer the receiver contract requires: status, problem+json
//! `reason`, the handler not run and the dedupe store not touched for every
//! rejection, and no secret and no computed signature anywhere in the
//! response. Bespoke tests below cover what a table row cannot (streaming
//! bodies, dedupe sequences, rate limiting, client IP, Debug output).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use axum::routing::{get, post_service};
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use tower::ServiceExt as _;
use webhook_guard::dedupe::{
    Claim, Dedupe, DedupeKey, DedupeStore, LeaseToken, MemoryStore, Retention, StoreError, StoreFuture,
};
use webhook_guard::dispatch::{Event, EventRouter, HandlerError};
use webhook_guard::handshake::Handshake;
use webhook_guard::schema::Schemas;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{
    ConfigError, FixedClock, Networks, ProxyHeader, RateLimiter, Rejection, Scheme, Verifier,
};

use support::{Broken, Counting, Endless, Spy};

// ---------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------

const NOW: i64 = 1_700_000_000;
const TOLERANCE: i64 = 300;
const MAX_BODY: usize = 1_048_576;
const ID: &str = "msg_hostile_2f9c";
const META_TOKEN: &str = "hostile-meta-verify-token-7d1e";
const FAILING_EVENT: &str = "test.handler_error";

/// The classes of `SECURITY.md`: its eleven promises and its Rust pitfalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    P1RawBytes,
    P2ConstantTimeFullLength,
    P3FailClosed,
    P4SchemePinned,
    P5StrictParsing,
    P6Replay,
    P7ResourceBounds,
    P8ClientIp,
    P9JsonAfterAuth,
    P10Hygiene,
    P11NoPanicNo5xx,
    PitfallFromStr,
    PitfallHeaderMapGet,
    PitfallObsText,
    PitfallGovernorExtractor,
    PitfallGovernorMemory,
    PitfallJsonschema,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum R {
    Stripe,
    GitHub,
    Standard,
    Slack,
    Shopify,
    Meta,
    X,
}

impl R {
    const ALL: [R; 7] = [
        R::Stripe,
        R::GitHub,
        R::Standard,
        R::Slack,
        R::Shopify,
        R::Meta,
        R::X,
    ];

    fn name(self) -> &'static str {
        match self {
            R::Stripe => "stripe",
            R::GitHub => "github",
            R::Standard => "standard",
            R::Slack => "slack",
            R::Shopify => "shopify",
            R::Meta => "meta",
            R::X => "x",
        }
    }

    fn path(self) -> String {
        format!("/webhooks/{}", self.name())
    }

    fn secret(self) -> &'static str {
        match self {
            R::Stripe => "whsec_hostile_stripe_secret_41c7",
            R::GitHub => "hostile-github-secret-9e02",
            R::Standard => "whsec_aG9zdGlsZS1zdGFuZGFyZC13ZWJob29rcy1rZXkhIQ==",
            R::Slack => "hostile-slack-signing-secret-55ab",
            R::Shopify => "hostile-shopify-secret-0c3d",
            R::Meta => "hostile-meta-app-secret-a8f1",
            R::X => "hostile-x-consumer-secret-6b2e",
        }
    }

    fn scheme(self) -> Scheme {
        match self {
            R::Stripe => Scheme::stripe(),
            R::GitHub => Scheme::github(),
            R::Standard => Scheme::standard_webhooks(),
            R::Slack => Scheme::slack(),
            R::Shopify => Scheme::shopify(),
            R::Meta => Scheme::meta(),
            R::X => Scheme::x(),
        }
    }

    fn schema(self) -> &'static str {
        match self {
            R::Stripe => include_str!("../examples/schemas/stripe.json"),
            R::GitHub => include_str!("../examples/schemas/github.json"),
            R::Standard => include_str!("../examples/schemas/standard.json"),
            R::Slack => include_str!("../examples/schemas/slack.json"),
            R::Shopify => include_str!("../examples/schemas/shopify.json"),
            R::Meta => include_str!("../examples/schemas/meta.json"),
            R::X => include_str!("../examples/schemas/x.json"),
        }
    }

    /// A body the route's schema accepts.
    fn body(self) -> &'static str {
        match self {
            R::Stripe => {
                r#"{"id":"evt_hostile_1","object":"event","type":"invoice.paid","created":1700000000,"data":{"object":{"id":"in_1"}}}"#
            }
            R::GitHub => r#"{"action":"opened","number":7}"#,
            R::Standard => r#"{"type":"invoice.paid","timestamp":"2023-11-14T22:13:20Z","data":{"id":1}}"#,
            R::Slack => r#"{"type":"event_callback","event_id":"Ev0HOSTILE","event":{"type":"app_mention"}}"#,
            R::Shopify => r#"{"id":820982911946154508,"email":"jon@example.com"}"#,
            R::Meta => r#"{"object":"page","entry":[{"id":"1","time":1700000000}]}"#,
            R::X => r#"{"for_user_id":"2244994945","tweet_create_events":[]}"#,
        }
    }

    /// The HMAC key bytes, worked out here independently.
    fn key(self) -> Vec<u8> {
        match self {
            R::Standard => base64::engine::general_purpose::STANDARD
                .decode(&self.secret()["whsec_".len()..])
                .unwrap(),
            _ => self.secret().as_bytes().to_vec(),
        }
    }
}

/// HMAC-SHA256 of `route`'s signed content, computed here with `hmac`.
fn mac(route: R, body: &[u8], ts: i64, id: &str) -> [u8; 32] {
    let ts = ts.to_string();
    let parts: Vec<&[u8]> = match route {
        R::Stripe => vec![ts.as_bytes(), b".", body],
        R::Slack => vec![b"v0:", ts.as_bytes(), b":", body],
        R::Standard => vec![id.as_bytes(), b".", ts.as_bytes(), b".", body],
        R::GitHub | R::Shopify | R::Meta | R::X => vec![body],
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&route.key()).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn b64(tag: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(tag)
}

/// Every form the computed signature for `body` could be written in.
fn computed_forms(route: R, body: &[u8]) -> Vec<String> {
    let tag = mac(route, body, NOW, ID);
    vec![
        hex::encode(tag),
        hex::encode_upper(tag),
        b64(&tag),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag),
    ]
}

type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// The demo app, rebuilt for one test.
struct World {
    router: Router,
    limiter: RateLimiter,
    seen: Seen,
    store: Counting<Arc<dyn DedupeStore>>,
    clock: Arc<FixedClock>,
    verifiers: Vec<Verifier>,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// A limiter nobody in the table reaches.
fn generous() -> RateLimiter {
    RateLimiter::builder()
        .per_second(nz(100_000))
        .burst(nz(100_000))
        .failed_authentications_per_minute(Some(nz(100_000)))
        .trusted_proxies(Networks::parse("10.0.0.0/8").unwrap())
        .proxy_header(ProxyHeader::XForwardedForThenForwarded)
        .build()
}

impl World {
    fn new(limiter: RateLimiter) -> Self {
        Self::with_store(limiter, Arc::new(MemoryStore::new()))
    }

    fn with_store(limiter: RateLimiter, store: Arc<dyn DedupeStore>) -> Self {
        let store = Counting::new(store);
        let clock = Arc::new(FixedClock::new(NOW));
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        let events = EventRouter::new().on_any(move |event: Event<Value>| {
            let log = Arc::clone(&log);
            async move {
                log.lock().unwrap().push((
                    event.delivery().provider().name().to_owned(),
                    event.body().to_vec(),
                ));
                match event.event_type() {
                    Some(FAILING_EVENT) => Err(HandlerError::msg("fails on purpose")),
                    _ => Ok(()),
                }
            }
        });
        let mut router = Router::new().route("/healthz", get(|| async { "ok" }));
        let mut verifiers = Vec::new();
        for route in R::ALL {
            let schema: Value = serde_json::from_str(route.schema()).unwrap();
            let mut builder = Verifier::builder(route.scheme())
                .secret(route.secret())
                .tolerance(Duration::from_secs(TOLERANCE.unsigned_abs()))
                .max_body_bytes(NonZeroUsize::new(MAX_BODY).unwrap())
                .clock(Arc::clone(&clock))
                .schemas(Schemas::builder().default_schema(schema).build().unwrap())
                .dedupe(Dedupe::builder(store.clone(), route.name()).build().unwrap());
            match route {
                R::Meta => builder = builder.handshake(Handshake::meta(META_TOKEN)),
                R::X => builder = builder.handshake(Handshake::x_crc()),
                _ => {}
            }
            let verifier = builder.build().unwrap();
            router = router.route(
                &route.path(),
                post_service(events.clone()).layer(verifier.layer()),
            );
            verifiers.push(verifier);
        }
        Self {
            router,
            limiter,
            seen,
            store,
            clock,
            verifiers,
        }
    }

    async fn send<B>(&self, peer: SocketAddr, request: Request<B>) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        self.limiter
            .service(self.router.clone(), peer)
            .oneshot(request)
            .await
            .expect("the limiter and the router are infallible")
    }

    async fn go(&self, req: Req) -> Response {
        let peer = req.peer;
        self.send(peer, req.into_request()).await
    }

    fn runs(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

const PEER: &str = "198.51.100.20:40000";

/// A request under construction: everything an attacker controls.
#[derive(Clone)]
struct Req {
    route: Option<R>,
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
    peer: SocketAddr,
}

impl Req {
    /// A `POST` to `route` with no headers.
    fn bare(route: R, body: impl Into<Bytes>) -> Self {
        Self {
            route: Some(route),
            method: Method::POST,
            uri: route.path(),
            headers: HeaderMap::new(),
            body: body.into(),
            peer: PEER.parse().unwrap(),
        }
    }

    fn set(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.as_ref()).unwrap(),
        );
        self
    }

    fn add(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.as_ref()).unwrap(),
        );
        self
    }

    fn del(mut self, name: &str) -> Self {
        self.headers.remove(name);
        self
    }

    /// The same headers with another body (the signature no longer fits).
    fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    fn uri(mut self, uri: &str) -> Self {
        self.uri = uri.to_owned();
        self
    }

    fn get(&self, name: &str) -> String {
        String::from_utf8(self.headers[name].as_bytes().to_vec()).unwrap()
    }

    fn into_request(self) -> Request<Body> {
        let mut request = Request::builder()
            .method(self.method)
            .uri(self.uri)
            .body(Body::from(self.body))
            .unwrap();
        *request.headers_mut() = self.headers;
        request
    }
}

/// What a real sender sends for `body` on `route` at `ts`.
fn signed_at(route: R, body: impl Into<Bytes>, ts: i64) -> Req {
    let body = body.into();
    let mut signer = TestSigner::new(&route.scheme(), route.secret())
        .unwrap()
        .timestamp(ts)
        .id(ID);
    match route {
        R::GitHub => signer = signer.event_type("pull_request"),
        R::Shopify => signer = signer.event_type("orders/create"),
        _ => {}
    }
    let mut req = Req::bare(route, body.clone());
    req.headers = signer.headers(&body);
    req
}

/// A Standard Webhooks request for `body` under delivery id `id`.
fn standard_with_id(body: &str, id: &str) -> Req {
    let body = Bytes::copy_from_slice(body.as_bytes());
    let signer = TestSigner::new(&R::Standard.scheme(), R::Standard.secret())
        .unwrap()
        .timestamp(NOW)
        .id(id);
    let mut req = Req::bare(R::Standard, body.clone());
    req.headers = signer.headers(&body);
    req
}

fn signed(route: R, body: impl Into<Bytes>) -> Req {
    signed_at(route, body, NOW)
}

/// The route's valid body, signed.
fn good(route: R) -> Req {
    signed(route, route.body())
}

/// The hex tag the real sender computes for `route`'s body at `NOW`.
fn hex_tag(route: R) -> String {
    hex::encode(mac(route, route.body().as_bytes(), NOW, ID))
}

fn b64_tag(route: R) -> String {
    b64(&mac(route, route.body().as_bytes(), NOW, ID))
}

/// A Stripe request whose header is `t=<t>,<rest>` with the good tag.
fn stripe_with_t(t: &str) -> Req {
    good(R::Stripe).set("stripe-signature", format!("t={t},v1={}", hex_tag(R::Stripe)))
}

/// A Standard Webhooks request with `webhook-signature` set to `value`.
fn standard_sig(value: &str) -> Req {
    good(R::Standard).set("webhook-signature", value)
}

fn github_sig(value: impl AsRef<[u8]>) -> Req {
    good(R::GitHub).set("x-hub-signature-256", value)
}

/// A GitHub body of `n` nested arrays.
fn nested_arrays(n: usize) -> Vec<u8> {
    let mut body = vec![b'['; n];
    body.extend(std::iter::repeat_n(b']', n));
    body
}

/// A JSON object with `n` distinct keys, under 1 MiB.
fn many_keys(n: usize) -> String {
    let mut body = String::with_capacity(n * 10);
    body.push('{');
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!("\"{i:x}\":0"));
    }
    body.push('}');
    body
}

/// A Standard Webhooks body whose correct signature, in standard base64,
/// contains `+` or `/` (so its URL-safe form really differs).
fn standard_urlsafe() -> Req {
    for n in 0..64 {
        let body = format!(r#"{{"type":"a.b","timestamp":"t","data":{{"n":{n}}}}}"#);
        let std = b64(&mac(R::Standard, body.as_bytes(), NOW, ID));
        if std.contains('+') || std.contains('/') {
            let url = std.replace('+', "-").replace('/', "_");
            return signed(R::Standard, body).set("webhook-signature", format!("v1,{url}"));
        }
    }
    unreachable!("some body has a tag with + or /")
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// 200 `processed`: the handler ran once, on exactly the bytes sent.
    Processed,
    /// A problem+json rejection: status and reason; handler not run,
    /// dedupe store not touched.
    Reject(u16, &'static str),
    /// A plain answer with this status (handshakes, 404): handler not run.
    Plain(u16),
}

use Expect::{Plain, Processed, Reject};

struct Case {
    name: &'static str,
    class: Class,
    build: fn() -> Req,
    expect: Expect,
}

const fn case(name: &'static str, class: Class, build: fn() -> Req, expect: Expect) -> Case {
    Case {
        name,
        class,
        build,
        expect,
    }
}

#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    use Class::*;
    vec![
        // --- controls: every route accepts its real sender ---------------
        case("control stripe", P1RawBytes, || good(R::Stripe), Processed),
        case("control github", P1RawBytes, || good(R::GitHub), Processed),
        case("control standard", P1RawBytes, || good(R::Standard), Processed),
        case("control slack", P1RawBytes, || good(R::Slack), Processed),
        case("control shopify", P1RawBytes, || good(R::Shopify), Processed),
        case("control meta", P1RawBytes, || good(R::Meta), Processed),
        case("control x", P1RawBytes, || good(R::X), Processed),
        // --- P1 raw bytes -------------------------------------------------
        case(
            "re-serialized JSON (whitespace added) fails",
            P1RawBytes,
            || good(R::Stripe).body(R::Stripe.body().replace(',', ", ").replace(':', ": ")),
            Reject(401, "signature_mismatch"),
        ),
        case(
            "re-serialized JSON (keys reordered) fails",
            P1RawBytes,
            || good(R::GitHub).body(r#"{"number":7,"action":"opened"}"#),
            Reject(401, "signature_mismatch"),
        ),
        case(
            "trailing newline appended after signing fails",
            P1RawBytes,
            || good(R::Shopify).body(format!("{}\n", R::Shopify.body())),
            Reject(401, "signature_mismatch"),
        ),
        case(
            "non-UTF-8 form body verifies and reaches the handler byte-exact",
            P1RawBytes,
            || {
                signed(
                    R::Slack,
                    &b"command=%2Fdeploy&text=\xff\xfe\x80caf\xe9&user_id=U1"[..],
                )
                .set("content-type", "application/x-www-form-urlencoded")
            },
            Processed,
        ),
        case(
            "non-UTF-8 JSON body verifies, then 400 invalid_json",
            P1RawBytes,
            || signed(R::GitHub, &b"{\"a\":\"\xff\xfe\"}"[..]),
            Reject(400, "invalid_json"),
        ),
        case(
            "BOM-prefixed JSON verifies, then 400 invalid_json",
            P1RawBytes,
            || signed(R::Meta, format!("\u{feff}{}", R::Meta.body())),
            Reject(400, "invalid_json"),
        ),
        // --- P2 full-length constant-time comparison -----------------------
        case(
            "empty X-Hub-Signature-256",
            P2ConstantTimeFullLength,
            || github_sig(""),
            Reject(401, "malformed_signature"),
        ),
        case(
            "sha256= only",
            P2ConstantTimeFullLength,
            || github_sig("sha256="),
            Reject(401, "malformed_signature"),
        ),
        case(
            "truncated tag (first 16 bytes of the real one)",
            P2ConstantTimeFullLength,
            || github_sig(format!("sha256={}", &hex_tag(R::GitHub)[..32])),
            Reject(401, "malformed_signature"),
        ),
        case(
            "tag one hex digit short",
            P2ConstantTimeFullLength,
            || github_sig(format!("sha256={}", &hex_tag(R::GitHub)[..63])),
            Reject(401, "malformed_signature"),
        ),
        case(
            "over-long tag (real tag + 00)",
            P2ConstantTimeFullLength,
            || github_sig(format!("sha256={}00", hex_tag(R::GitHub))),
            Reject(401, "malformed_signature"),
        ),
        case(
            "real tag + garbage",
            P2ConstantTimeFullLength,
            || github_sig(format!("sha256={}zz", hex_tag(R::GitHub))),
            Reject(401, "malformed_signature"),
        ),
        case(
            "all-zero full-length tag",
            P2ConstantTimeFullLength,
            || github_sig(format!("sha256={}", "0".repeat(64))),
            Reject(401, "signature_mismatch"),
        ),
        case(
            "uppercase hex of the real tag is the same MAC",
            P2ConstantTimeFullLength,
            || github_sig(format!("sha256={}", hex_tag(R::GitHub).to_uppercase())),
            Processed,
        ),
        case(
            "Stripe v1= empty",
            P2ConstantTimeFullLength,
            || good(R::Stripe).set("stripe-signature", format!("t={NOW},v1=")),
            Reject(401, "malformed_signature"),
        ),
        case(
            "Stripe truncated v1",
            P2ConstantTimeFullLength,
            || {
                stripe_with_t(&NOW.to_string()).set(
                    "stripe-signature",
                    format!("t={NOW},v1={}", &hex_tag(R::Stripe)[..40]),
                )
            },
            Reject(401, "malformed_signature"),
        ),
        case(
            "Standard base64 without padding",
            P2ConstantTimeFullLength,
            || standard_sig(&format!("v1,{}", b64_tag(R::Standard).trim_end_matches('='))),
            Reject(401, "malformed_signature"),
        ),
        case(
            "Standard base64 with extra padding",
            P2ConstantTimeFullLength,
            || standard_sig(&format!("v1,{}=", b64_tag(R::Standard))),
            Reject(401, "malformed_signature"),
        ),
        case(
            "Standard base64 in the URL-safe alphabet",
            P2ConstantTimeFullLength,
            standard_urlsafe,
            Reject(401, "malformed_signature"),
        ),
        case(
            "Standard base64 with whitespace inside",
            P2ConstantTimeFullLength,
            || {
                let tag = b64_tag(R::Standard);
                standard_sig(&format!("v1,{} {}", &tag[..20], &tag[20..]))
            },
            Reject(401, "malformed_signature"),
        ),
        case(
            "Shopify tag in hex instead of base64",
            P2ConstantTimeFullLength,
            || good(R::Shopify).set("x-shopify-hmac-sha256", hex_tag(R::Shopify)),
            Reject(401, "malformed_signature"),
        ),
        case(
            "X tag truncated base64",
            P2ConstantTimeFullLength,
            || {
                good(R::X).set(
                    "x-twitter-webhooks-signature",
                    format!("sha256={}", &b64_tag(R::X)[..40]),
                )
            },
            Reject(401, "malformed_signature"),
        ),
        // --- P3 fail closed -------------------------------------------------
        case(
            "Stripe signature header missing",
            P3FailClosed,
            || good(R::Stripe).del("stripe-signature"),
            Reject(401, "missing_signature"),
        ),
        case(
            "Standard webhook-signature missing",
            P3FailClosed,
            || good(R::Standard).del("webhook-signature"),
            Reject(401, "missing_signature"),
        ),
        case(
            "Standard webhook-id missing",
            P3FailClosed,
            || good(R::Standard).del("webhook-id"),
            Reject(401, "missing_header"),
        ),
        case(
            "Standard webhook-id empty",
            P3FailClosed,
            || good(R::Standard).set("webhook-id", ""),
            Reject(401, "malformed_header"),
        ),
        case(
            "Slack timestamp missing",
            P3FailClosed,
            || good(R::Slack).del("x-slack-request-timestamp"),
            Reject(401, "missing_timestamp"),
        ),
        case(
            "Meta signature missing",
            P3FailClosed,
            || good(R::Meta).del("x-hub-signature-256"),
            Reject(401, "missing_signature"),
        ),
        case(
            "Stripe v0 only (the real tag under v0)",
            P3FailClosed,
            || good(R::Stripe).set("stripe-signature", format!("t={NOW},v0={}", hex_tag(R::Stripe))),
            Reject(401, "malformed_signature"),
        ),
        case(
            "Standard unknown version v2 only",
            P3FailClosed,
            || standard_sig(&format!("v2,{}", b64_tag(R::Standard))),
            Reject(401, "malformed_signature"),
        ),
        case(
            "Stripe t given twice",
            P3FailClosed,
            || {
                good(R::Stripe).set(
                    "stripe-signature",
                    format!("t={NOW},t={NOW},v1={}", hex_tag(R::Stripe)),
                )
            },
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "GitHub signature on two header lines (both real)",
            PitfallHeaderMapGet,
            || {
                let tag = format!("sha256={}", hex_tag(R::GitHub));
                good(R::GitHub).add("x-hub-signature-256", tag)
            },
            Reject(401, "malformed_signature"),
        ),
        case(
            "Stripe signature on two lines (forged first, real second)",
            PitfallHeaderMapGet,
            || {
                let real = good(R::Stripe).get("stripe-signature");
                good(R::Stripe)
                    .set("stripe-signature", format!("t={NOW},v1={}", "0".repeat(64)))
                    .add("stripe-signature", real)
            },
            Reject(401, "malformed_signature"),
        ),
        case(
            "Standard webhook-timestamp on two lines",
            PitfallHeaderMapGet,
            || good(R::Standard).add("webhook-timestamp", NOW.to_string()),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "Slack timestamp on two lines",
            PitfallHeaderMapGet,
            || good(R::Slack).add("x-slack-request-timestamp", (NOW - 1000).to_string()),
            Reject(401, "malformed_timestamp"),
        ),
        // --- P4 scheme pinned -------------------------------------------------
        case(
            "GitHub SHA-1 header only",
            P4SchemePinned,
            || {
                good(R::GitHub)
                    .del("x-hub-signature-256")
                    .set("x-hub-signature", format!("sha1={}", &hex_tag(R::GitHub)[..40]))
            },
            Reject(401, "missing_signature"),
        ),
        case(
            "Standard-signed request sent to the Stripe route",
            P4SchemePinned,
            || {
                let mut req = good(R::Standard);
                req.route = Some(R::Stripe);
                req.uri("/webhooks/stripe")
            },
            Reject(401, "missing_signature"),
        ),
        case(
            "GitHub-signed request sent to the Meta route (same header, other key)",
            P4SchemePinned,
            || {
                let mut req = signed(R::GitHub, R::Meta.body());
                req.route = Some(R::Meta);
                req.uri("/webhooks/meta")
            },
            Reject(401, "signature_mismatch"),
        ),
        case(
            "Stripe: real tag downgraded to v0 next to a wrong v1",
            P4SchemePinned,
            || {
                good(R::Stripe).set(
                    "stripe-signature",
                    format!("t={NOW},v0={},v1={}", hex_tag(R::Stripe), "1".repeat(64)),
                )
            },
            Reject(401, "signature_mismatch"),
        ),
        case(
            "svix-id disagrees with webhook-id",
            P4SchemePinned,
            || good(R::Standard).set("svix-id", "msg_other"),
            Reject(401, "malformed_header"),
        ),
        case(
            "svix-signature disagrees with webhook-signature",
            P4SchemePinned,
            || standard_sig(&format!("v1,{}", b64_tag(R::Standard))).set("svix-signature", "v1,AAAA"),
            Reject(401, "malformed_signature"),
        ),
        case(
            "svix-timestamp disagrees with webhook-timestamp",
            P4SchemePinned,
            || good(R::Standard).set("svix-timestamp", (NOW + 1).to_string()),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "Standard asymmetric v1a entry only",
            P4SchemePinned,
            || standard_sig(&format!("v1a,{}", b64_tag(R::Standard))),
            Reject(401, "malformed_signature"),
        ),
        case(
            "GitHub sha512= prefix",
            P4SchemePinned,
            || github_sig(format!("sha512={}", hex_tag(R::GitHub))),
            Reject(401, "malformed_signature"),
        ),
        // --- P5 strict parsing ------------------------------------------------
        case(
            "Stripe t=+1700000000",
            PitfallFromStr,
            || stripe_with_t("+1700000000"),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "Stripe t=01700000000",
            PitfallFromStr,
            || stripe_with_t("01700000000"),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "Standard timestamp 0123",
            PitfallFromStr,
            || good(R::Standard).set("webhook-timestamp", "0123"),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "Standard timestamp 1.7e9",
            P5StrictParsing,
            || good(R::Standard).set("webhook-timestamp", "1.7e9"),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "Standard timestamp negative",
            P5StrictParsing,
            || good(R::Standard).set("webhook-timestamp", "-1700000000"),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "Slack timestamp of 11 digits",
            P5StrictParsing,
            || good(R::Slack).set("x-slack-request-timestamp", "17000000000"),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "Slack timestamp in milliseconds",
            P5StrictParsing,
            || good(R::Slack).set("x-slack-request-timestamp", "1700000000000"),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "Stripe huge timestamp (beyond i64)",
            P5StrictParsing,
            || stripe_with_t("99999999999999999999999999"),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "Standard timestamp padded with spaces",
            P5StrictParsing,
            || good(R::Standard).set("webhook-timestamp", " 1700000000 "),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "Slack timestamp with a trailing tab",
            P5StrictParsing,
            || good(R::Slack).set("x-slack-request-timestamp", "1700000000\t"),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "Stripe t empty",
            P5StrictParsing,
            || stripe_with_t(""),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "Stripe header with obs-text bytes",
            PitfallObsText,
            || good(R::Stripe).set("stripe-signature", b"t=1700000000,v1=\xff\xfe\xe9"),
            Reject(401, "malformed_signature"),
        ),
        case(
            "Standard webhook-id with obs-text bytes",
            PitfallObsText,
            || good(R::Standard).set("webhook-id", b"msg_\xc3\xa9"),
            Reject(401, "malformed_header"),
        ),
        case(
            "Slack timestamp with obs-text bytes",
            PitfallObsText,
            || good(R::Slack).set("x-slack-request-timestamp", b"17000000\xb9\xb9"),
            Reject(401, "malformed_timestamp"),
        ),
        case(
            "GitHub signature with obs-text bytes",
            PitfallObsText,
            || github_sig(b"sha256=\x80\x81"),
            Reject(401, "malformed_signature"),
        ),
        // --- P6 replay ----------------------------------------------------------
        case(
            "Stripe timestamp 301 s in the past",
            P6Replay,
            || signed_at(R::Stripe, R::Stripe.body(), NOW - TOLERANCE - 1),
            Reject(401, "timestamp_out_of_tolerance"),
        ),
        case(
            "Stripe timestamp 301 s in the future",
            P6Replay,
            || signed_at(R::Stripe, R::Stripe.body(), NOW + TOLERANCE + 1),
            Reject(401, "timestamp_out_of_tolerance"),
        ),
        case(
            "Stripe timestamp exactly at the tolerance edge is accepted",
            P6Replay,
            || signed_at(R::Stripe, R::Stripe.body(), NOW - TOLERANCE),
            Processed,
        ),
        case(
            "Standard timestamp 0",
            P6Replay,
            || signed_at(R::Standard, R::Standard.body(), 0),
            Reject(401, "timestamp_out_of_tolerance"),
        ),
        case(
            "Slack timestamp 9999999999",
            P6Replay,
            || signed_at(R::Slack, R::Slack.body(), 9_999_999_999),
            Reject(401, "timestamp_out_of_tolerance"),
        ),
        case(
            "Standard: captured request replayed under a fresh webhook-id",
            P6Replay,
            || good(R::Standard).set("webhook-id", "msg_fresh_id"),
            Reject(401, "signature_mismatch"),
        ),
        case(
            "Slack: captured request replayed with a fresh timestamp",
            P6Replay,
            || good(R::Slack).set("x-slack-request-timestamp", (NOW + 5).to_string()),
            Reject(401, "signature_mismatch"),
        ),
        // --- P7 resource bounds ---------------------------------------------
        case(
            "Content-Encoding: gzip",
            P7ResourceBounds,
            || good(R::GitHub).set("content-encoding", "gzip"),
            Reject(415, "unsupported_content_encoding"),
        ),
        case(
            "Content-Encoding: deflate",
            P7ResourceBounds,
            || good(R::Stripe).set("content-encoding", "deflate"),
            Reject(415, "unsupported_content_encoding"),
        ),
        case(
            "Content-Encoding: br",
            P7ResourceBounds,
            || good(R::Standard).set("content-encoding", "br"),
            Reject(415, "unsupported_content_encoding"),
        ),
        case(
            "Content-Encoding: identity, gzip",
            P7ResourceBounds,
            || good(R::Slack).set("content-encoding", "identity, gzip"),
            Reject(415, "unsupported_content_encoding"),
        ),
        case(
            "Content-Encoding: identity on a second line after gzip",
            P7ResourceBounds,
            || {
                good(R::Shopify)
                    .set("content-encoding", "GZIP")
                    .add("content-encoding", "identity")
            },
            Reject(415, "unsupported_content_encoding"),
        ),
        case(
            "Content-Encoding: identity is fine",
            P7ResourceBounds,
            || good(R::Meta).set("content-encoding", "identity"),
            Processed,
        ),
        case(
            "Content-Length over the limit",
            P7ResourceBounds,
            || good(R::X).set("content-length", (MAX_BODY + 1).to_string()),
            Reject(413, "body_too_large"),
        ),
        case(
            "body one byte over the limit (no Content-Length)",
            P7ResourceBounds,
            || signed(R::GitHub, vec![b' '; MAX_BODY + 1]),
            Reject(413, "body_too_large"),
        ),
        case(
            "very long signature header (64 KiB)",
            P7ResourceBounds,
            || github_sig(format!("sha256={}", "a".repeat(65_536))),
            Reject(401, "malformed_signature"),
        ),
        case(
            "very long webhook-id (8 KiB)",
            P7ResourceBounds,
            || good(R::Standard).set("webhook-id", "m".repeat(8192)),
            Reject(401, "malformed_header"),
        ),
        case(
            "1000 Stripe signatures, the real one last",
            P7ResourceBounds,
            || {
                let mut v = format!("t={NOW}");
                for _ in 0..999 {
                    v.push_str(&format!(",v1={}", "0".repeat(64)));
                }
                v.push_str(&format!(",v1={}", hex_tag(R::Stripe)));
                good(R::Stripe).set("stripe-signature", v)
            },
            Reject(401, "malformed_signature"),
        ),
        case(
            "9 Stripe signatures (over the cap), the real one last",
            P7ResourceBounds,
            || {
                let mut v = format!("t={NOW}");
                for _ in 0..8 {
                    v.push_str(&format!(",v1={}", "0".repeat(64)));
                }
                v.push_str(&format!(",v1={}", hex_tag(R::Stripe)));
                good(R::Stripe).set("stripe-signature", v)
            },
            Reject(401, "malformed_signature"),
        ),
        case(
            "1000 Standard signatures in one header",
            P7ResourceBounds,
            || {
                let one = format!("v1,{}", b64_tag(R::Standard));
                standard_sig(&vec![one; 1000].join(" "))
            },
            Reject(401, "malformed_signature"),
        ),
        case(
            "100 000 nested arrays: 400, no stack overflow",
            P7ResourceBounds,
            || signed(R::GitHub, nested_arrays(100_000)),
            Reject(400, "invalid_json"),
        ),
        case(
            "100 000 nested objects: 400, no stack overflow",
            P7ResourceBounds,
            || signed(R::Meta, "{\"a\":".repeat(100_000)),
            Reject(400, "invalid_json"),
        ),
        case(
            "object with 100 000 keys: no panic",
            P7ResourceBounds,
            || signed(R::GitHub, many_keys(100_000)),
            Processed,
        ),
        case(
            "object with 100 000 keys and a repeated one",
            P7ResourceBounds,
            || {
                signed(
                    R::Shopify,
                    format!("{},\"0\":1}}", many_keys(100_000).trim_end_matches('}')),
                )
            },
            Reject(400, "duplicate_keys"),
        ),
        case(
            "2 000 unrelated junk headers next to a real signature",
            P7ResourceBounds,
            || {
                let mut req = good(R::Shopify);
                for i in 0..2000 {
                    req = req.add(&format!("x-junk-{i}"), "j".repeat(64));
                }
                req
            },
            Processed,
        ),
        // --- P9 JSON after auth only -------------------------------------------
        case(
            "unsigned invalid JSON is 401, not 400",
            P9JsonAfterAuth,
            || Req::bare(R::Stripe, "{not json"),
            Reject(401, "missing_signature"),
        ),
        case(
            "forged signature on invalid JSON is 401, not 400",
            P9JsonAfterAuth,
            || github_sig(format!("sha256={}", "f".repeat(64))).body("{not json"),
            Reject(401, "signature_mismatch"),
        ),
        case(
            "unsigned schema-violating JSON is 401, not 422",
            P9JsonAfterAuth,
            || Req::bare(R::Stripe, r#"{"object":"nope"}"#),
            Reject(401, "missing_signature"),
        ),
        case(
            "signed invalid JSON is 400",
            P9JsonAfterAuth,
            || signed(R::X, "{not json"),
            Reject(400, "invalid_json"),
        ),
        case(
            "signed duplicate keys are 400",
            P9JsonAfterAuth,
            || signed(R::GitHub, r#"{"action":"opened","action":"closed"}"#),
            Reject(400, "duplicate_keys"),
        ),
        case(
            "signed nested duplicate keys are 400",
            P9JsonAfterAuth,
            || {
                signed(
                    R::Stripe,
                    r#"{"id":"evt_d","object":"event","type":"a","created":1,"data":{"object":{"k":1,"k":2}}}"#,
                )
            },
            Reject(400, "duplicate_keys"),
        ),
        case(
            "Stripe schema: missing created is 422",
            P9JsonAfterAuth,
            || {
                signed(
                    R::Stripe,
                    r#"{"id":"evt_s","object":"event","type":"a","data":{"object":{}}}"#,
                )
            },
            Reject(422, "schema_violation"),
        ),
        case(
            "Standard schema: type is a number",
            P9JsonAfterAuth,
            || signed(R::Standard, r#"{"type":5,"timestamp":"t","data":{}}"#),
            Reject(422, "schema_violation"),
        ),
        case(
            "GitHub schema: top-level array",
            P9JsonAfterAuth,
            || signed(R::GitHub, "[1,2,3]"),
            Reject(422, "schema_violation"),
        ),
        case(
            "Slack url_verification, signed, answers the challenge only",
            P9JsonAfterAuth,
            || {
                signed(
                    R::Slack,
                    r#"{"type":"url_verification","challenge":"c_hostile_3"}"#,
                )
            },
            Plain(200),
        ),
        case(
            "Slack url_verification, unsigned, is 401",
            P9JsonAfterAuth,
            || {
                Req::bare(
                    R::Slack,
                    r#"{"type":"url_verification","challenge":"c_hostile_3"}"#,
                )
            },
            Reject(401, "missing_signature"),
        ),
        // --- P11 no panics, no 5xx ---------------------------------------------
        case(
            "PUT is 405",
            P11NoPanicNo5xx,
            || good(R::Stripe).method(Method::PUT),
            Reject(405, "method_not_allowed"),
        ),
        case(
            "DELETE is 405",
            P11NoPanicNo5xx,
            || good(R::GitHub).method(Method::DELETE),
            Reject(405, "method_not_allowed"),
        ),
        case(
            "OPTIONS is 405",
            P11NoPanicNo5xx,
            || good(R::Standard).method(Method::OPTIONS),
            Reject(405, "method_not_allowed"),
        ),
        case(
            "TRACE is 405",
            P11NoPanicNo5xx,
            || good(R::Slack).method(Method::TRACE),
            Reject(405, "method_not_allowed"),
        ),
        case(
            "PATCH is 405",
            P11NoPanicNo5xx,
            || good(R::Shopify).method(Method::PATCH),
            Reject(405, "method_not_allowed"),
        ),
        case(
            "GET on a route without a handshake is 405",
            P11NoPanicNo5xx,
            || good(R::Stripe).method(Method::GET),
            Reject(405, "method_not_allowed"),
        ),
        case(
            "extension method FOO is 405",
            P11NoPanicNo5xx,
            || good(R::GitHub).method(Method::from_bytes(b"FOO").unwrap()),
            Reject(405, "method_not_allowed"),
        ),
        case(
            "trailing slash is 404",
            P11NoPanicNo5xx,
            || good(R::Stripe).uri("/webhooks/stripe/"),
            Plain(404),
        ),
        case(
            "dot-dot path is not normalised onto a route",
            P11NoPanicNo5xx,
            || good(R::GitHub).uri("/webhooks/stripe/../github"),
            Plain(404),
        ),
        case(
            "double slash is 404",
            P11NoPanicNo5xx,
            || good(R::GitHub).uri("//webhooks/github"),
            Plain(404),
        ),
        case(
            "upper-case route is 404",
            P11NoPanicNo5xx,
            || good(R::GitHub).uri("/WEBHOOKS/GITHUB"),
            Plain(404),
        ),
        case(
            "percent-encoded route is 404",
            P11NoPanicNo5xx,
            || good(R::GitHub).uri("/webhooks/%67ithub"),
            Plain(404),
        ),
        case(
            "garbage query string is ignored",
            P11NoPanicNo5xx,
            || good(R::GitHub).uri("/webhooks/github?%ff%fe=%00&&=&a"),
            Processed,
        ),
        case(
            "empty body, unsigned",
            P11NoPanicNo5xx,
            || Req::bare(R::Shopify, ""),
            Reject(401, "missing_signature"),
        ),
        case(
            "empty body, signed",
            P11NoPanicNo5xx,
            || signed(R::Stripe, ""),
            Reject(400, "invalid_json"),
        ),
        case(
            "Expect: 100-continue",
            P11NoPanicNo5xx,
            || good(R::Standard).set("expect", "100-continue"),
            Processed,
        ),
        case(
            "Content-Length that is not a number",
            P11NoPanicNo5xx,
            || good(R::Meta).set("content-length", "12abc"),
            Processed,
        ),
        case(
            "Content-Length of u64::MAX + 1",
            P11NoPanicNo5xx,
            || good(R::X).set("content-length", "18446744073709551616"),
            Processed,
        ),
        case(
            "Content-Length of u64::MAX",
            P11NoPanicNo5xx,
            || good(R::X).set("content-length", u64::MAX.to_string()),
            Reject(413, "body_too_large"),
        ),
        case(
            "X-Forwarded-For garbage from an untrusted peer",
            P8ClientIp,
            || good(R::GitHub).set("x-forwarded-for", b"\xff, ::, 999.1.1.1, [x]"),
            Processed,
        ),
        case(
            "trusted proxy with only garbage hops",
            P8ClientIp,
            || {
                let mut req = good(R::GitHub)
                    .set("x-forwarded-for", "unknown, _hidden, 300.1.1.1")
                    .set("forwarded", "for=\"[::1\";;;,,for=");
                req.peer = "10.1.2.3:5555".parse().unwrap();
                req
            },
            Processed,
        ),
        case(
            "trusted proxy with a 100 KiB X-Forwarded-For",
            P8ClientIp,
            || {
                let hops = vec!["203.0.113.1"; 8000].join(", ");
                let mut req = good(R::Meta).set("x-forwarded-for", hops);
                req.peer = "10.9.9.9:1".parse().unwrap();
                req
            },
            Processed,
        ),
        case(
            "IPv4-mapped trusted proxy forwarding an IPv6 client",
            P8ClientIp,
            || {
                let mut req = good(R::X).set("forwarded", r#"for="[2001:db8::7]:443";proto=https"#);
                req.peer = "[::ffff:10.0.0.1]:80".parse().unwrap();
                req
            },
            Processed,
        ),
        // --- more strictness -------------------------------------------------------
        case(
            "GitHub tag with a 0x prefix",
            P5StrictParsing,
            || github_sig(format!("sha256=0x{}", &hex_tag(R::GitHub)[..62])),
            Reject(401, "malformed_signature"),
        ),
        case(
            "GitHub full-length tag with a non-hex digit",
            P5StrictParsing,
            || github_sig(format!("sha256=g{}", &hex_tag(R::GitHub)[1..])),
            Reject(401, "malformed_signature"),
        ),
        case(
            "GitHub SHA256= in upper case",
            P5StrictParsing,
            || github_sig(format!("SHA256={}", hex_tag(R::GitHub))),
            Reject(401, "malformed_signature"),
        ),
        case(
            "GitHub real tag with a trailing space",
            P5StrictParsing,
            || github_sig(format!("sha256={} ", hex_tag(R::GitHub))),
            Reject(401, "malformed_signature"),
        ),
        case(
            "Shopify real tag with a leading space",
            P5StrictParsing,
            || good(R::Shopify).set("x-shopify-hmac-sha256", format!(" {}", b64_tag(R::Shopify))),
            Reject(401, "malformed_signature"),
        ),
        case(
            "Slack v1= instead of v0=",
            P4SchemePinned,
            || good(R::Slack).set("x-slack-signature", format!("v1={}", hex_tag(R::Slack))),
            Reject(401, "malformed_signature"),
        ),
        case(
            "8 Stripe signatures (the cap), the real one last",
            P7ResourceBounds,
            || {
                let mut v = format!("t={NOW}");
                for _ in 0..7 {
                    v.push_str(&format!(",v1={}", "0".repeat(64)));
                }
                v.push_str(&format!(",v1={}", hex_tag(R::Stripe)));
                good(R::Stripe).set("stripe-signature", v)
            },
            Processed,
        ),
        case(
            "8 Standard signatures (the cap), the real one last",
            P7ResourceBounds,
            || {
                let mut entries = vec![format!("v1,{}", b64(&[7; 32])); 7];
                entries.push(format!("v1,{}", b64_tag(R::Standard)));
                standard_sig(&entries.join(" "))
            },
            Processed,
        ),
        case(
            "9 Standard signatures, the real one last",
            P7ResourceBounds,
            || {
                let mut entries = vec![format!("v1,{}", b64(&[7; 32])); 8];
                entries.push(format!("v1,{}", b64_tag(R::Standard)));
                standard_sig(&entries.join(" "))
            },
            Reject(401, "malformed_signature"),
        ),
        case(
            "body of exactly the limit",
            P7ResourceBounds,
            || {
                let mut body = R::GitHub.body().as_bytes().to_vec();
                body.resize(MAX_BODY, b' ');
                signed(R::GitHub, body)
            },
            Processed,
        ),
        case(
            "Content-Length understating the body",
            P1RawBytes,
            || good(R::Stripe).set("content-length", "5"),
            Processed,
        ),
        case(
            "Content-Encoding with obs-text",
            PitfallObsText,
            || good(R::GitHub).set("content-encoding", b"identit\xe9"),
            Reject(415, "unsupported_content_encoding"),
        ),
        case(
            "empty Content-Encoding",
            P7ResourceBounds,
            || good(R::GitHub).set("content-encoding", ""),
            Reject(415, "unsupported_content_encoding"),
        ),
        case(
            "signed Slack JSON relabelled as a form is still JSON",
            P9JsonAfterAuth,
            || {
                signed(
                    R::Slack,
                    r#"{"type":"event_callback","event_id":"Ev1","x":1,"x":2}"#,
                )
                .set("content-type", "application/x-www-form-urlencoded")
            },
            Reject(400, "duplicate_keys"),
        ),
        case(
            "signed Stripe body labelled as a form is still schema-checked",
            P9JsonAfterAuth,
            || {
                signed(R::Stripe, r#"{"id":"evt_f","object":"event"}"#)
                    .set("content-type", "application/x-www-form-urlencoded")
            },
            Reject(422, "schema_violation"),
        ),
        case(
            "POST with handshake parameters is a delivery, not a handshake",
            P3FailClosed,
            || {
                Req::bare(R::Meta, R::Meta.body()).uri(&format!(
                    "/webhooks/meta?hub.mode=subscribe&hub.verify_token={META_TOKEN}&hub.challenge=1"
                ))
            },
            Reject(401, "missing_signature"),
        ),
        case(
            "HEAD is 405",
            P11NoPanicNo5xx,
            || good(R::Meta).method(Method::HEAD),
            Plain(405),
        ),
        case(
            "unknown route is 404",
            P11NoPanicNo5xx,
            || good(R::GitHub).uri("/webhooks/gitlab"),
            Plain(404),
        ),
        case(
            "X CRC with a non-UTF-8 percent-encoded token",
            P5StrictParsing,
            || {
                Req::bare(R::X, "")
                    .method(Method::GET)
                    .uri("/webhooks/x?crc_token=%ff%fe")
            },
            Reject(400, "missing_challenge"),
        ),
        case(
            "X CRC with the token given twice",
            PitfallHeaderMapGet,
            || {
                Req::bare(R::X, "")
                    .method(Method::GET)
                    .uri("/webhooks/x?crc_token=a&crc_token=b")
            },
            Reject(400, "missing_challenge"),
        ),
        case(
            "X signature on two lines",
            PitfallHeaderMapGet,
            || {
                let v = good(R::X).get("x-twitter-webhooks-signature");
                good(R::X).add("x-twitter-webhooks-signature", v)
            },
            Reject(401, "malformed_signature"),
        ),
        case(
            "Meta handshake without a challenge",
            P3FailClosed,
            || {
                Req::bare(R::Meta, "").method(Method::GET).uri(&format!(
                    "/webhooks/meta?hub.mode=subscribe&hub.verify_token={META_TOKEN}"
                ))
            },
            Reject(400, "missing_challenge"),
        ),
        case(
            "Slack url_verification with a repeated challenge key",
            P9JsonAfterAuth,
            || {
                signed(
                    R::Slack,
                    r#"{"type":"url_verification","challenge":"a","challenge":"b"}"#,
                )
            },
            Reject(400, "duplicate_keys"),
        ),
        case(
            "Stripe body of 100 000 keys and no required field: first error, 422",
            PitfallJsonschema,
            || signed(R::Stripe, many_keys(100_000)),
            Reject(422, "schema_violation"),
        ),
        // --- handshakes ------------------------------------------------------------
        case(
            "Meta handshake with the right token",
            P3FailClosed,
            || {
                Req::bare(R::Meta, "").method(Method::GET).uri(&format!(
                    "/webhooks/meta?hub.mode=subscribe&hub.verify_token={META_TOKEN}&hub.challenge=1158201444"
                ))
            },
            Plain(200),
        ),
        case(
            "Meta handshake with a wrong token",
            P3FailClosed,
            || {
                Req::bare(R::Meta, "")
                    .method(Method::GET)
                    .uri("/webhooks/meta?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1")
            },
            Reject(403, "handshake_rejected"),
        ),
        case(
            "Meta handshake with a prefix of the token",
            P2ConstantTimeFullLength,
            || {
                Req::bare(R::Meta, "").method(Method::GET).uri(&format!(
                    "/webhooks/meta?hub.mode=subscribe&hub.verify_token={}&hub.challenge=1",
                    &META_TOKEN[..5]
                ))
            },
            Reject(403, "handshake_rejected"),
        ),
        case(
            "Meta handshake with an empty token",
            P2ConstantTimeFullLength,
            || {
                Req::bare(R::Meta, "")
                    .method(Method::GET)
                    .uri("/webhooks/meta?hub.mode=subscribe&hub.verify_token=&hub.challenge=1")
            },
            Reject(403, "handshake_rejected"),
        ),
        case(
            "Meta handshake with the token given twice",
            PitfallHeaderMapGet,
            || {
                Req::bare(R::Meta, "").method(Method::GET).uri(&format!(
                    "/webhooks/meta?hub.mode=subscribe&hub.verify_token=x&hub.verify_token={META_TOKEN}&hub.challenge=1"
                ))
            },
            Reject(403, "handshake_rejected"),
        ),
        case(
            "X CRC with a plain token",
            P3FailClosed,
            || {
                Req::bare(R::X, "")
                    .method(Method::GET)
                    .uri("/webhooks/x?crc_token=abcDEF123-_")
            },
            Plain(200),
        ),
        case(
            "X CRC with a JSON token",
            P10Hygiene,
            || {
                Req::bare(R::X, "")
                    .method(Method::GET)
                    .uri("/webhooks/x?crc_token=%7B%22a%22%3A1%7D")
            },
            Reject(400, "missing_challenge"),
        ),
        case(
            "X CRC with a token that is a JSON number",
            P10Hygiene,
            || {
                Req::bare(R::X, "")
                    .method(Method::GET)
                    .uri("/webhooks/x?crc_token=1700000000")
            },
            Reject(400, "missing_challenge"),
        ),
        case(
            "X CRC without a token",
            P3FailClosed,
            || Req::bare(R::X, "").method(Method::GET).uri("/webhooks/x"),
            Reject(400, "missing_challenge"),
        ),
        case(
            "X CRC with a 600-byte token",
            P7ResourceBounds,
            || {
                Req::bare(R::X, "")
                    .method(Method::GET)
                    .uri(&format!("/webhooks/x?crc_token={}", "a".repeat(600)))
            },
            Reject(400, "missing_challenge"),
        ),
    ]
}

/// Every string that must never appear in a response: all secrets, the
/// Meta verify token, and the signature the receiver computes for `body`
/// on `route`.
fn forbidden(route: Option<R>, body: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = R::ALL.iter().map(|r| r.secret().to_owned()).collect();
    out.push(META_TOKEN.to_owned());
    out.push(R::Standard.secret()["whsec_".len()..].to_owned());
    if let Some(route) = route {
        out.extend(computed_forms(route, body));
    }
    out
}

/// Checks that nothing in `forbidden` is in the head or `text`.
fn assert_no_leak(what: &str, headers: &HeaderMap, text: &str, forbidden: &[String]) {
    for f in forbidden {
        assert!(!text.contains(f.as_str()), "{what}: body leaks {f:?}: {text}");
        for (name, value) in headers {
            assert!(
                !String::from_utf8_lossy(value.as_bytes()).contains(f.as_str()),
                "{what}: header {name} leaks {f:?}"
            );
        }
    }
}

/// Checks a problem+json answer and returns its document.
fn assert_problem_doc(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    text: &str,
    want_status: u16,
    reason: &str,
    provider: Option<&str>,
) -> Value {
    assert_eq!(status.as_u16(), want_status, "{what}: status; body {text}");
    assert_eq!(
        headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
        Some(&b"application/problem+json"[..]),
        "{what}: content type; body {text}"
    );
    let doc: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    assert_eq!(doc["reason"], json!(reason), "{what}: reason in {text}");
    assert_eq!(
        doc["type"],
        json!(format!("tag:webhook-guard,2026:reason/{reason}")),
        "{what}: type in {text}"
    );
    assert_eq!(doc["status"], json!(want_status), "{what}: status in {text}");
    assert!(
        doc["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: title in {text}"
    );
    assert!(
        doc["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: detail in {text}"
    );
    if let Some(provider) = provider {
        assert_eq!(doc["provider"], json!(provider), "{what}: provider in {text}");
    }
    doc
}

/// Runs one case in a fresh app and checks everything the contract says.
async fn run(case: &Case) {
    let world = World::new(generous());
    let req = (case.build)();
    let what = format!("[{:?}] {}", case.class, case.name);
    let route = req.route;
    let body = req.body.clone();
    let response = world.go(req).await;
    let status = response.status();
    let headers = response.headers().clone();
    let rejection = response.extensions().get::<Rejection>().cloned();
    let bytes = support::body_bytes(response).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(
        !status.is_server_error(),
        "{what}: client input produced {status}: {text}"
    );
    assert_no_leak(&what, &headers, &text, &forbidden(route, &body));
    let seen = world.seen.lock().unwrap().clone();
    match case.expect {
        Processed => {
            assert_eq!(status, StatusCode::OK, "{what}: body {text}");
            let doc: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(doc["status"], "processed", "{what}: {text}");
            assert_eq!(seen.len(), 1, "{what}: the handler ran {} times", seen.len());
            assert_eq!(seen[0].1, body.to_vec(), "{what}: the handler saw other bytes");
            assert_eq!(Some(seen[0].0.as_str()), route.map(R::name), "{what}");
            assert_eq!(world.store.counts(), (1, 1, 0), "{what}: claim and complete once");
        }
        Reject(want, reason) => {
            assert_problem_doc(&what, status, &headers, &text, want, reason, route.map(R::name));
            if let Some(rejection) = rejection {
                assert_eq!(rejection.reason(), reason, "{what}: reason in the extensions");
            }
            assert!(seen.is_empty(), "{what}: the handler ran");
            assert_eq!(
                world.store.calls(),
                0,
                "{what}: a rejected request touched the dedupe store"
            );
        }
        Plain(want) => {
            assert_eq!(status.as_u16(), want, "{what}: body {text}");
            assert!(seen.is_empty(), "{what}: the handler ran");
            assert_eq!(world.store.calls(), 0, "{what}: the dedupe store was touched");
        }
    }
}

#[tokio::test]
async fn table_of_hostile_requests() {
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut names = BTreeSet::new();
    let mut failed = Vec::new();
    for case in cases {
        assert!(names.insert(case.name), "duplicate case name {:?}", case.name);
        // Each case in its own task, so one failure does not hide the rest.
        let name = case.name;
        if tokio::spawn(async move { run(&case).await }).await.is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "{} case(s) failed: {failed:#?}", failed.len());
}

/// Every class of `SECURITY.md` is attacked by the table or by a bespoke
/// test below (listed here by name).
#[test]
fn every_security_class_is_covered() {
    use Class::*;
    let bespoke = [
        (
            P7ResourceBounds,
            "content_length_over_limit_is_413_without_polling_the_body",
        ),
        (
            P7ResourceBounds,
            "chunked_body_over_limit_is_413_and_reading_stops_early",
        ),
        (
            P6Replay,
            "github_body_replayed_under_a_new_delivery_id_is_a_duplicate",
        ),
        (
            P6Replay,
            "forged_request_with_a_real_id_does_not_block_the_real_one",
        ),
        (P6Replay, "slack_event_replayed_as_a_form_is_a_duplicate"),
        (P5StrictParsing, "extreme_clocks_and_timestamps_never_overflow"),
        (
            P11NoPanicNo5xx,
            "unreachable_store_is_503_with_retry_after_and_nothing_runs",
        ),
        (
            P8ClientIp,
            "spoofed_forwarding_headers_from_an_untrusted_peer_are_ignored",
        ),
        (
            PitfallGovernorExtractor,
            "rate_limited_is_429_with_retry_after_at_least_one",
        ),
        (
            PitfallGovernorMemory,
            "tracked_clients_stay_bounded_under_a_flood",
        ),
        (
            P7ResourceBounds,
            "dedupe_store_stays_bounded_under_a_flood_of_keys",
        ),
        (P10Hygiene, "debug_output_hides_secrets"),
        (
            PitfallJsonschema,
            "remote_ref_schema_and_zero_tolerance_are_config_errors",
        ),
        (P11NoPanicNo5xx, "random_garbage_in_every_header_never_5xx"),
        (P11NoPanicNo5xx, "broken_body_is_400_not_5xx"),
    ];
    let mut covered: BTreeSet<Class> = cases().iter().map(|c| c.class).collect();
    covered.extend(bespoke.iter().map(|(c, _)| *c));
    for class in [
        P1RawBytes,
        P2ConstantTimeFullLength,
        P3FailClosed,
        P4SchemePinned,
        P5StrictParsing,
        P6Replay,
        P7ResourceBounds,
        P8ClientIp,
        P9JsonAfterAuth,
        P10Hygiene,
        P11NoPanicNo5xx,
        PitfallFromStr,
        PitfallHeaderMapGet,
        PitfallObsText,
        PitfallGovernorExtractor,
        PitfallGovernorMemory,
        PitfallJsonschema,
    ] {
        assert!(covered.contains(&class), "{class:?} has no case");
    }
}

// ---------------------------------------------------------------------------
// Bespoke tests
// ---------------------------------------------------------------------------

async fn problem(what: &str, response: Response, want: u16, reason: &str, provider: Option<&str>) -> Value {
    let status = response.status();
    let headers = response.headers().clone();
    let text = String::from_utf8_lossy(&support::body_bytes(response).await).into_owned();
    assert_no_leak(what, &headers, &text, &forbidden(None, b""));
    assert_problem_doc(what, status, &headers, &text, want, reason, provider)
}

async fn json_of(what: &str, response: Response) -> Value {
    let status = response.status();
    let text = String::from_utf8_lossy(&support::body_bytes(response).await).into_owned();
    assert_eq!(status, StatusCode::OK, "{what}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// P7: a declared Content-Length over the limit is refused before a single
/// poll of the body.
#[tokio::test]
async fn content_length_over_limit_is_413_without_polling_the_body() {
    let world = World::new(generous());
    let req = good(R::Stripe).set("content-length", (2 * MAX_BODY).to_string());
    let (spy, polls) = Spy::new(vec![b'a'; 16]);
    let mut request = Request::post(R::Stripe.path()).body(spy).unwrap();
    *request.headers_mut() = req.headers;
    let response = world.send(PEER.parse().unwrap(), request).await;
    problem("declared 2 MiB", response, 413, "body_too_large", Some("stripe")).await;
    assert_eq!(polls.load(Ordering::SeqCst), 0, "the body was polled");
    assert_eq!(world.runs(), 0);
    assert_eq!(world.store.calls(), 0);
}

/// P7: a body with no length that never ends is cut off at the limit.
#[tokio::test]
async fn chunked_body_over_limit_is_413_and_reading_stops_early() {
    let world = World::new(generous());
    let req = good(R::GitHub);
    let (endless, pulled) = Endless::new();
    let mut request = Request::post(R::GitHub.path()).body(endless).unwrap();
    *request.headers_mut() = req.headers;
    let response = world.send(PEER.parse().unwrap(), request).await;
    problem("endless body", response, 413, "body_too_large", Some("github")).await;
    let pulled = pulled.load(Ordering::SeqCst);
    assert!(
        pulled <= MAX_BODY / 1024 + 2,
        "pulled {pulled} KiB chunks for a {MAX_BODY}-byte limit"
    );
    assert_eq!(world.runs(), 0);
    // A forged request with an endless body is refused on its headers: not
    // one chunk is read.
    let (endless, pulled) = Endless::new();
    let mut request = Request::post(R::Standard.path()).body(endless).unwrap();
    *request.headers_mut() = good(R::Standard).set("webhook-timestamp", "+1").headers;
    let response = world.send(PEER.parse().unwrap(), request).await;
    problem(
        "malformed + endless",
        response,
        401,
        "malformed_timestamp",
        Some("standard"),
    )
    .await;
    assert_eq!(pulled.load(Ordering::SeqCst), 0);
}

/// P6: GitHub and Shopify do not sign their id headers, so the dedupe key
/// is the body: a captured body under a fresh delivery id is a duplicate.
#[tokio::test]
async fn github_body_replayed_under_a_new_delivery_id_is_a_duplicate() {
    for (route, id_header) in [
        (R::GitHub, "x-github-delivery"),
        (R::Shopify, "x-shopify-webhook-id"),
    ] {
        let world = World::new(generous());
        let first = json_of("first", world.go(good(route)).await).await;
        assert_eq!(first["status"], "processed", "{route:?}");
        assert_eq!(first["id"], ID, "{route:?}: the provider's id is shown");
        for fresh in ["00000000-0000-0000-0000-000000000000", "another-delivery"] {
            let replay = good(route).set(id_header, fresh);
            let doc = json_of("replay", world.go(replay).await).await;
            assert_eq!(doc["status"], "duplicate", "{route:?} replayed as {fresh}");
        }
        // Without the id header at all, still a duplicate.
        let doc = json_of("no id", world.go(good(route).del(id_header)).await).await;
        assert_eq!(doc["status"], "duplicate", "{route:?} without id");
        assert_eq!(world.runs(), 1, "{route:?}: the handler ran again");
    }
    // Stripe's key is the signed body `id`: a re-signed body carrying the
    // same event id (a new timestamp) is a duplicate too.
    let world = World::new(generous());
    json_of("stripe first", world.go(good(R::Stripe)).await).await;
    let again = signed_at(R::Stripe, R::Stripe.body(), NOW - 10);
    let doc = json_of("stripe again", world.go(again).await).await;
    assert_eq!(doc["status"], "duplicate");
    // Keys are namespaced per route: the same body on Meta is new.
    let world = World::new(generous());
    let body = r#"{"object":"page","entry":[]}"#;
    let a = json_of("github", world.go(signed(R::GitHub, body)).await).await;
    let b = json_of("meta", world.go(signed(R::Meta, body)).await).await;
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("processed"), Some("processed"))
    );
    assert_eq!(world.runs(), 2);
}

/// P6: a request that fails verification never touches the store, so a
/// forged request carrying a real id does not block the real delivery;
/// a handler failure releases the claim so the retry is processed.
#[tokio::test]
async fn forged_request_with_a_real_id_does_not_block_the_real_one() {
    let world = World::new(generous());
    // Forged Standard request with the real webhook-id.
    let forged = good(R::Standard).set("webhook-signature", format!("v1,{}", b64(&[9; 32])));
    problem(
        "forged standard",
        world.go(forged).await,
        401,
        "signature_mismatch",
        Some("standard"),
    )
    .await;
    // Forged Stripe request with the real event id in its body.
    let forged = good(R::Stripe).body(R::Stripe.body().replace("invoice.paid", "charge.refunded"));
    problem(
        "forged stripe",
        world.go(forged).await,
        401,
        "signature_mismatch",
        Some("stripe"),
    )
    .await;
    // Forged GitHub request with the real body and a wrong tag.
    let forged = github_sig(format!("sha256={}", "e".repeat(64)));
    problem(
        "forged github",
        world.go(forged).await,
        401,
        "signature_mismatch",
        Some("github"),
    )
    .await;
    assert_eq!(world.store.calls(), 0, "a forged request touched the store");
    for route in [R::Standard, R::Stripe, R::GitHub] {
        let doc = json_of("real", world.go(good(route)).await).await;
        assert_eq!(doc["status"], "processed", "{route:?}");
    }
    assert_eq!(world.runs(), 3);

    // Handler failure: 500, released; the retry is processed.
    let body = r#"{"type":"test.handler_error","timestamp":"t","data":{}}"#;
    let response = world.go(standard_with_id(body, "msg_fails_1")).await;
    problem(
        "handler failure",
        response,
        500,
        "handler_error",
        Some("standard"),
    )
    .await;
    let (claims, completes, releases) = world.store.counts();
    assert_eq!((claims, completes, releases), (4, 3, 1));
    let response = world.go(standard_with_id(body, "msg_fails_1")).await;
    problem(
        "retried failure",
        response,
        500,
        "handler_error",
        Some("standard"),
    )
    .await;
    assert_eq!(world.runs(), 5, "the retry ran the handler again");
}

/// P11: an unreachable dedupe store is a 503 with Retry-After, and nothing
/// runs.
#[tokio::test]
async fn unreachable_store_is_503_with_retry_after_and_nothing_runs() {
    struct Down;
    impl DedupeStore for Down {
        fn claim<'a>(&'a self, _: &'a DedupeKey, _: LeaseToken, _: Retention) -> StoreFuture<'a, Claim> {
            Box::pin(async { Err(StoreError::unavailable("down", Duration::from_secs(3))) })
        }
        fn complete<'a>(&'a self, _: &'a DedupeKey, _: LeaseToken, _: Retention) -> StoreFuture<'a, ()> {
            Box::pin(async { Err(StoreError::unavailable("down", Duration::from_secs(3))) })
        }
        fn release<'a>(&'a self, _: &'a DedupeKey, _: LeaseToken) -> StoreFuture<'a, ()> {
            Box::pin(async { Err(StoreError::unavailable("down", Duration::from_secs(3))) })
        }
    }
    let world = World::with_store(generous(), Arc::new(Down));
    for route in R::ALL {
        let response = world.go(good(route)).await;
        let retry = response.headers().get(header::RETRY_AFTER).cloned();
        problem(
            route.name(),
            response,
            503,
            "dedupe_store_unavailable",
            Some(route.name()),
        )
        .await;
        let retry: u64 = retry.expect("Retry-After").to_str().unwrap().parse().unwrap();
        assert!(retry >= 1);
    }
    assert_eq!(world.runs(), 0);
    // Forged requests are still 401: the store is not even asked.
    let response = world.go(github_sig(format!("sha256={}", "0".repeat(64)))).await;
    problem("forged", response, 401, "signature_mismatch", Some("github")).await;
}

/// P8 + pitfall: forwarding headers from an untrusted peer are ignored;
/// behind a trusted proxy the rightmost untrusted hop is the client; IPv6
/// is bucketed by /64; IPv4-mapped addresses count as IPv4.
#[tokio::test]
async fn spoofed_forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let limiter = || {
        RateLimiter::builder()
            .per_second(nz(1))
            .burst(nz(1))
            .failed_authentications_per_minute(None)
            .trusted_proxies(Networks::parse("10.0.0.0/8").unwrap())
            .proxy_header(ProxyHeader::XForwardedForThenForwarded)
            .build()
    };
    let world = World::new(limiter());
    let attacker: SocketAddr = "203.0.113.66:1".parse().unwrap();
    let mut req = good(R::GitHub);
    req.peer = attacker;
    json_of("first", world.go(req.clone()).await).await;
    for spoof in ["198.51.100.1", "10.0.0.1", "1.2.3.4, 5.6.7.8", "garbage"] {
        let response = world.go(req.clone().set("x-forwarded-for", spoof)).await;
        problem(spoof, response, 429, "rate_limited", None).await;
        let response = world
            .go(req.clone().set("forwarded", format!("for={spoof}")))
            .await;
        problem(spoof, response, 429, "rate_limited", None).await;
    }
    let headers = support::headers(&[("x-forwarded-for", "198.51.100.1")]);
    assert_eq!(world.limiter.client_ip(attacker.ip(), &headers), attacker.ip());

    // Behind the trusted proxy: rightmost untrusted hop; garbage hops never
    // 500 and never let a client pick its bucket.
    let lim = limiter();
    let proxy: IpAddr = "10.1.1.1".parse().unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let h = |v: &str| support::headers(&[("x-forwarded-for", v)]);
    assert_eq!(
        lim.client_ip(proxy, &h("198.51.100.1, 203.0.113.7")),
        ip("203.0.113.7")
    );
    assert_eq!(
        lim.client_ip(proxy, &h("203.0.113.7, 10.2.2.2")),
        ip("203.0.113.7")
    );
    assert_eq!(
        lim.client_ip(proxy, &h("garbage, 203.0.113.7")),
        ip("203.0.113.7")
    );
    // An unreadable rightmost hop stops the walk at the proxy: the client
    // never picks its own bucket with a malformed header.
    for junk in [
        "garbage",
        "",
        ",,,",
        "999.999.999.999",
        "[::1",
        "unknown",
        "_hidden",
        "198.51.100.1, garbage",
        "198.51.100.1,",
    ] {
        assert_eq!(lim.client_ip(proxy, &h(junk)), proxy, "{junk:?}");
    }
    let mut obs = HeaderMap::new();
    obs.insert(
        "x-forwarded-for",
        HeaderValue::from_bytes(b"198.51.100.1, \xff\xfe").unwrap(),
    );
    assert_eq!(lim.client_ip(proxy, &obs), proxy, "obs-text hop");
    assert_eq!(
        lim.client_ip(proxy, &h("::ffff:203.0.113.9")),
        ip("203.0.113.9"),
        "IPv4-mapped forwarded client"
    );
    let world = World::new(limiter());
    let mut via = good(R::GitHub).set("x-forwarded-for", "garbage, 203.0.113.7");
    via.peer = "10.1.1.1:80".parse().unwrap();
    json_of("via proxy", world.go(via.clone()).await).await;
    let response = world
        .go(via.clone().set("x-forwarded-for", "198.51.100.3, 203.0.113.7"))
        .await;
    problem("same client via proxy", response, 429, "rate_limited", None).await;
    json_of(
        "other client",
        world.go(via.set("x-forwarded-for", "203.0.113.8")).await,
    )
    .await;

    // IPv6 /64 buckets and IPv4-mapped peers.
    let world = World::new(limiter());
    let from = |peer: &str| {
        let mut req = good(R::Meta);
        req.peer = peer.parse().unwrap();
        req
    };
    json_of("v6", world.go(from("[2001:db8:1:2::1]:1")).await).await;
    let response = world.go(from("[2001:db8:1:2:ffff:ffff:ffff:fffe]:9")).await;
    problem("same /64", response, 429, "rate_limited", None).await;
    json_of("next /64", world.go(from("[2001:db8:1:3::1]:1")).await).await;
    json_of("mapped", world.go(from("[::ffff:192.0.2.5]:1")).await).await;
    let response = world.go(from("192.0.2.5:2")).await;
    problem("plain after mapped", response, 429, "rate_limited", None).await;
}

/// Pitfall (tower_governor): a 429 carries an integer Retry-After of at
/// least 1, is decided before the body is read, and never reaches the
/// verifier or the handler.
#[tokio::test]
async fn rate_limited_is_429_with_retry_after_at_least_one() {
    let limiter = RateLimiter::builder()
        .per_second(nz(1))
        .burst(nz(2))
        .failed_authentications_per_minute(Some(nz(2)))
        .build();
    let world = World::new(limiter);
    json_of("1", world.go(good(R::Slack)).await).await;
    json_of("2", world.go(good(R::X)).await).await;
    let req = good(R::Stripe);
    let (spy, polls) = Spy::new(req.body.clone());
    let mut request = Request::post(R::Stripe.path()).body(spy).unwrap();
    *request.headers_mut() = req.headers;
    let response = world.send(PEER.parse().unwrap(), request).await;
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .cloned()
        .expect("Retry-After");
    let doc = problem("3", response, 429, "rate_limited", None).await;
    let retry: u64 = retry.to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(doc["retry_after"], json!(retry));
    assert_eq!(polls.load(Ordering::SeqCst), 0, "the body was read");
    assert_eq!(world.runs(), 2);

    // Failed authentications lock a guessing client out, not the others.
    let world = World::new(
        RateLimiter::builder()
            .per_second(nz(1000))
            .burst(nz(1000))
            .failed_authentications_per_minute(Some(nz(2)))
            .build(),
    );
    let mut guess = github_sig(format!("sha256={}", "0".repeat(64)));
    guess.peer = "198.51.100.99:1".parse().unwrap();
    for _ in 0..2 {
        problem(
            "guess",
            world.go(guess.clone()).await,
            401,
            "signature_mismatch",
            Some("github"),
        )
        .await;
    }
    let mut real = good(R::GitHub);
    real.peer = guess.peer;
    let response = world.go(real.clone()).await;
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .cloned()
        .expect("Retry-After");
    problem(
        "locked out",
        response,
        429,
        "too_many_failed_authentications",
        None,
    )
    .await;
    assert!(retry.to_str().unwrap().parse::<u64>().unwrap() >= 1);
    real.peer = PEER.parse().unwrap();
    json_of("other client", world.go(real).await).await;
}

/// Pitfall (governor memory): a flood of distinct addresses does not grow
/// the limiter without bound, and the flood stays throttled.
#[tokio::test]
async fn tracked_clients_stay_bounded_under_a_flood() {
    let limiter = RateLimiter::builder()
        .per_second(nz(1))
        .burst(nz(1))
        .max_tracked_clients(NonZeroUsize::new(64).unwrap())
        .build();
    let world = World::new(limiter);
    let mut refused = 0;
    for i in 0..2000u32 {
        let mut req = Req::bare(R::GitHub, "");
        req.peer = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 1));
        let response = world.go(req).await;
        assert!(!response.status().is_server_error());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    let tracked = world.limiter.tracked_clients();
    assert!(tracked <= 64 + 256 + 8, "{tracked} clients tracked");
    assert!(refused > 0, "the flood was never throttled");
    assert_eq!(world.runs(), 0);
}

/// P10: Debug output of the verifiers, the limiter, the signer and a
/// rejection contains no secret; handshake answers contain only what the
/// contract says.
#[tokio::test]
async fn debug_output_hides_secrets() {
    let world = World::new(generous());
    let everything = format!(
        "{:?} {:?} {:?} {:?}",
        world.verifiers,
        world.limiter,
        world.clock,
        TestSigner::new(&Scheme::github(), R::GitHub.secret()).unwrap()
    );
    for f in forbidden(None, b"") {
        assert!(
            !everything.contains(f.as_str()),
            "Debug leaks {f:?}: {everything}"
        );
    }
    assert!(everything.contains("Verifier"), "{everything}");
    // Nor the key bytes in any form (the decoded Standard key included).
    for route in R::ALL {
        let key = route.key();
        for form in [
            format!("{key:?}"),
            hex::encode(&key),
            String::from_utf8_lossy(&key).into_owned(),
        ] {
            assert!(
                !everything.contains(form.as_str()),
                "Debug leaks the {route:?} key as {form}"
            );
        }
    }
    // A rejection's Display and Debug carry no request bytes either.
    let response = world.go(github_sig(format!("sha256={}", "c".repeat(64)))).await;
    let rejection = response.extensions().get::<Rejection>().cloned().unwrap();
    let shown = format!("{rejection} {rejection:?}");
    assert!(!shown.contains(&"c".repeat(64)), "{shown}");
    for f in forbidden(Some(R::GitHub), R::GitHub.body().as_bytes()) {
        assert!(!shown.contains(f.as_str()), "{shown}");
    }
    // The X CRC answer is exactly HMAC(consumer secret, token), nothing more.
    let response = world
        .go(Req::bare(R::X, "")
            .method(Method::GET)
            .uri("/webhooks/x?crc_token=tok_123"))
        .await;
    let doc = json_of("crc", response).await;
    let mut mac = Hmac::<Sha256>::new_from_slice(R::X.secret().as_bytes()).unwrap();
    mac.update(b"tok_123");
    let expected = format!("sha256={}", b64(&mac.finalize().into_bytes()));
    assert_eq!(doc, json!({ "response_token": expected }));
    // The Meta answer is the challenge, as text.
    let response = world
        .go(Req::bare(R::Meta, "").method(Method::GET).uri(&format!(
            "/webhooks/meta?hub.mode=subscribe&hub.verify_token={META_TOKEN}&hub.challenge=ch_77"
        )))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(support::body_bytes(response).await, Bytes::from_static(b"ch_77"));
    // A schema failure names the path, not the offending value.
    let body = r#"{"id":"evt_x","object":"LEAKED_VALUE_83f2","type":"a","created":1,"data":{"object":{}}}"#;
    let response = world.go(signed(R::Stripe, body)).await;
    let text = String::from_utf8_lossy(&support::body_bytes(response).await).into_owned();
    assert!(text.contains("schema_violation"), "{text}");
    assert!(
        !text.contains("LEAKED_VALUE_83f2"),
        "the 422 echoes the value: {text}"
    );
    assert_eq!(world.runs(), 0);
}

/// P5: time arithmetic cannot overflow, whatever the clock and timestamp.
#[tokio::test]
async fn extreme_clocks_and_timestamps_never_overflow() {
    let world = World::new(generous());
    for (now, ts) in [
        (i64::MAX, 0),
        (i64::MIN, 9_999_999_999),
        (i64::MIN, 0),
        (i64::MAX, 9_999_999_999),
        (-1, 9_999_999_999),
    ] {
        world.clock.set(now);
        for route in [R::Stripe, R::Standard, R::Slack] {
            let response = world.go(signed_at(route, route.body(), ts)).await;
            let what = format!("{route:?} now={now} ts={ts}");
            problem(
                &what,
                response,
                401,
                "timestamp_out_of_tolerance",
                Some(route.name()),
            )
            .await;
        }
    }
    // Untimestamped schemes do not care.
    let doc = json_of("github", world.go(good(R::GitHub)).await).await;
    assert_eq!(doc["status"], "processed");
    world.clock.set(NOW);
    let doc = json_of("back to now", world.go(good(R::Stripe)).await).await;
    assert_eq!(doc["status"], "processed");
}

/// P6: a Slack event relabelled as a form keeps its `event_id` dedupe key,
/// so a captured delivery replayed that way is still a duplicate.
#[tokio::test]
async fn slack_event_replayed_as_a_form_is_a_duplicate() {
    let world = World::new(generous());
    let doc = json_of("first", world.go(good(R::Slack)).await).await;
    assert_eq!(
        doc,
        json!({"status": "processed", "id": "Ev0HOSTILE", "type": "event_callback"})
    );
    for ct in [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "text/plain",
    ] {
        let doc = json_of(ct, world.go(good(R::Slack).set("content-type", ct)).await).await;
        assert_eq!(doc["status"], "duplicate", "{ct}");
    }
    // Same event re-signed at a later timestamp: still the same event id.
    let later = signed_at(R::Slack, R::Slack.body(), NOW + 60);
    assert_eq!(
        json_of("re-signed", world.go(later).await).await["status"],
        "duplicate"
    );
    assert_eq!(world.runs(), 1);
}

/// P7: the in-memory dedupe store stays bounded under a flood of distinct
/// (verified) deliveries: when full it refuses with 503 and Retry-After
/// rather than forget a key, and runs nothing.
#[tokio::test]
async fn dedupe_store_stays_bounded_under_a_flood_of_keys() {
    let store = Arc::new(
        MemoryStore::builder()
            .max_entries(NonZeroUsize::new(4).unwrap())
            .build(),
    );
    let world = World::with_store(generous(), Arc::clone(&store) as Arc<dyn DedupeStore>);
    let mut processed = 0;
    for n in 0..20 {
        let response = world.go(signed(R::GitHub, format!(r#"{{"n":{n}}}"#))).await;
        if response.status() == StatusCode::OK {
            processed += 1;
            continue;
        }
        let retry = response.headers().get(header::RETRY_AFTER).cloned();
        problem("store full", response, 503, "dedupe_store_full", Some("github")).await;
        assert!(
            retry
                .expect("Retry-After")
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
    }
    assert_eq!(processed, 4, "exactly the store's room is processed");
    assert!(store.len() <= 4, "{} keys kept", store.len());
    assert_eq!(world.runs(), 4);
    // The remembered deliveries are still duplicates: nothing was forgotten.
    let doc = json_of("old", world.go(signed(R::GitHub, r#"{"n":0}"#)).await).await;
    assert_eq!(doc["status"], "duplicate");
}

/// P11: a client that goes away mid-upload gets 400, not a 5xx, and
/// nothing runs.
#[tokio::test]
async fn broken_body_is_400_not_5xx() {
    let world = World::new(generous());
    for route in R::ALL {
        let req = good(route);
        let (broken, failed) = Broken::new(Bytes::copy_from_slice(&req.body[..4]));
        let mut request = Request::post(route.path()).body(broken).unwrap();
        *request.headers_mut() = req.headers;
        let response = world.send(PEER.parse().unwrap(), request).await;
        problem(
            route.name(),
            response,
            400,
            "body_read_failed",
            Some(route.name()),
        )
        .await;
        assert!(
            failed.load(Ordering::SeqCst),
            "{route:?}: the body was not read to its error"
        );
    }
    assert_eq!(world.runs(), 0);
    assert_eq!(world.store.calls(), 0);
}

/// P3 + pitfall (jsonschema): what must fail at build time does.
#[test]
fn remote_ref_schema_and_zero_tolerance_are_config_errors() {
    let remote = json!({ "$ref": "https://example.com/schema.json" });
    assert!(Schemas::builder().default_schema(remote).build().is_err());
    let remote = json!({ "type": "object", "properties": { "a": { "$ref": "http://169.254.169.254/x" } } });
    assert!(Schemas::builder().default_schema(remote).build().is_err());
    let zero = Verifier::builder(Scheme::github())
        .secret("s")
        .tolerance(Duration::ZERO)
        .build();
    assert!(zero.is_err(), "tolerance 0 must be a config error");
    for empty in ["", "   ", "\t"] {
        let built = Verifier::builder(Scheme::github()).secret(empty).build();
        assert!(
            matches!(built, Err(ConfigError::EmptySecret { .. })) || built.is_err(),
            "{empty:?} accepted"
        );
    }
    assert!(Verifier::builder(Scheme::stripe()).build().is_err(), "no secret");
    assert!(
        Verifier::builder(Scheme::standard_webhooks())
            .secret("whsec_not base64!")
            .build()
            .is_err(),
        "bad whsec_"
    );
}

/// P11: random bytes in every header the schemes read never produce a 5xx
/// or a panic; every answer is a problem document.
#[tokio::test]
async fn random_garbage_in_every_header_never_5xx() {
    let world = World::new(generous());
    let names = [
        "stripe-signature",
        "x-hub-signature-256",
        "x-hub-signature",
        "x-github-event",
        "x-github-delivery",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-id",
        "svix-timestamp",
        "svix-signature",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "x-shopify-hmac-sha256",
        "x-shopify-topic",
        "x-shopify-webhook-id",
        "x-twitter-webhooks-signature",
        "content-type",
        "content-encoding",
        "content-length",
        "x-forwarded-for",
        "forwarded",
        "expect",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..300 {
        let route = R::ALL[usize::try_from(next() % 7).unwrap()];
        let mut req = if round % 2 == 0 {
            good(route)
        } else {
            Req::bare(route, route.body())
        };
        for name in names {
            if next() % 3 == 0 {
                continue;
            }
            let len = usize::try_from(next() % 80).unwrap();
            let value: Vec<u8> = (0..len)
                .map(|_| {
                    // Any byte a HeaderValue can hold: tab, visible ASCII, obs-text.
                    let b = u8::try_from(next() % 256).unwrap();
                    if b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80 {
                        b
                    } else {
                        b'!'
                    }
                })
                .collect();
            req = if next() % 5 == 0 {
                req.add(name, value)
            } else {
                req.set(name, value)
            };
        }
        let what = format!("round {round} on {route:?}");
        let response = world.go(req).await;
        let status = response.status();
        let text = String::from_utf8_lossy(&support::body_bytes(response).await).into_owned();
        assert!(!status.is_server_error(), "{what}: {status} {text}");
        if status != StatusCode::OK {
            let doc: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{what}: {status} not JSON ({e}): {text}"));
            assert!(doc["reason"].is_string(), "{what}: {text}");
        }
        assert_no_leak(
            &what,
            &HeaderMap::new(),
            &text,
            &forbidden(Some(route), route.body().as_bytes()),
        );
    }
}

/// The providers whose signature is in the body, not in a header (their
/// vectors cover it; Mailgun's token replay has its own test below).
const BODY_SIGNED: [&str; 2] = ["adyen", "mailgun"];

/// The same hostile headers against every provider of
/// `Scheme::named_providers`, read off the scheme itself (the header the
/// test signer writes that changes with the secret is the signature
/// header): absent, sent twice, truncated, over-long, emptied, under
/// another secret, over a tampered body. Adding a provider adds it here.
#[tokio::test]
async fn hostile_signature_headers_for_every_named_provider() {
    // Valid for every scheme: Standard Webhooks senders decode the part
    // after `whsec_`; the others use the text as is.
    const SECRET_A: &str = "whsec_aG9zdGlsZS1zZWNyZXQtYQ==";
    const SECRET_B: &str = "whsec_aG9zdGlsZS1zZWNyZXQtYg==";
    let body = br#"{"id":"evt_hostile","type":"hostile.test","event":"hostile.test"}"#;
    for name in Scheme::named_providers() {
        if BODY_SIGNED.contains(&name) {
            continue;
        }
        let scheme = Scheme::named_with_url(name, &format!("https://hooks.example.com/webhooks/{name}"))
            .unwrap()
            .unwrap();
        let sign = |secret: &str| {
            TestSigner::new(&scheme, secret)
                .unwrap()
                .timestamp(NOW)
                .id(ID)
                .headers(body)
        };
        let good = sign(SECRET_A);
        let other = sign(SECRET_B);
        let signature = good
            .keys()
            .find(|k| good.get(*k) != other.get(*k))
            .unwrap_or_else(|| panic!("{name}: no header changes with the secret"))
            .clone();
        let value = good[&signature].to_str().unwrap().to_owned();
        // A shared token (GitLab's) is the secret itself: a changed token
        // is just another token, and nothing signs the body.
        let token = value == SECRET_A;
        let changed = if token {
            "signature_mismatch"
        } else {
            "malformed_signature"
        };
        let verifier = Verifier::builder(scheme.clone())
            .secret(SECRET_A)
            .clock(FixedClock::new(NOW))
            .build()
            .unwrap();
        let with = |f: &dyn Fn(&mut HeaderMap)| {
            let mut h = good.clone();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            f(&mut h);
            h
        };
        let mut cases: Vec<(&str, HeaderMap, &[u8], &str)> = vec![
            (
                "absent",
                with(&|h| drop(h.remove(&signature))),
                body,
                "missing_signature",
            ),
            (
                "sent twice",
                with(&|h| {
                    h.append(signature.clone(), HeaderValue::from_str(&value).unwrap());
                }),
                body,
                "malformed_signature",
            ),
            (
                "truncated",
                with(&|h| {
                    drop(h.insert(
                        signature.clone(),
                        HeaderValue::from_str(&value[..value.len() - 1]).unwrap(),
                    ))
                }),
                body,
                changed,
            ),
            (
                "over-long",
                with(&|h| {
                    drop(h.insert(
                        signature.clone(),
                        HeaderValue::from_str(&format!("{value}a")).unwrap(),
                    ))
                }),
                body,
                changed,
            ),
            (
                "emptied",
                with(&|h| drop(h.insert(signature.clone(), HeaderValue::from_static("")))),
                body,
                "malformed_signature",
            ),
            (
                "under another secret",
                {
                    let mut h = other.clone();
                    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    h
                },
                body,
                "signature_mismatch",
            ),
        ];
        let tampered: &[u8] = br#"{"id":"evt_hostile","type":"hostile.test","event":"hostile.tesT"}"#;
        if !token {
            cases.push(("tampered body", with(&|_| {}), tampered, "signature_mismatch"));
        }
        let (router, calls) = support::app(&verifier);
        let ok = support::send(
            router.clone(),
            support::post_request(with(&|_| {}), support::body(&body[..])),
        )
        .await;
        assert_eq!(ok.status(), StatusCode::OK, "{name}: the signed request");
        for (what, headers, sent, reason) in cases {
            let response = support::send(
                router.clone(),
                support::post_request(headers, support::body(sent.to_vec())),
            )
            .await;
            let what = format!("{name}: {what}");
            problem(&what, response, 401, reason, Some(name)).await;
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "{name}: only the signed request ran"
        );
    }
}

/// Mailgun signs only the timestamp and token, not the event data: a
/// captured signature replayed with other event data verifies, so the
/// token is the dedupe key, and the replay is a duplicate, not a second
/// run.
#[tokio::test]
async fn mailgun_token_replayed_with_other_event_data_is_a_duplicate() {
    let key = "mailgun-hostile-signing-key";
    let (ts, token) = ("1700000000", "5f6b0c8d7e2a41b9a3c4d5e6f708192a3b4c5d6e7f8091a2b3");
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{ts}{token}").as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let body = |event: &str| {
        json!({
            "signature": { "timestamp": ts, "token": token, "signature": signature },
            "event-data": { "event": event, "id": "evt-hostile" }
        })
        .to_string()
    };
    let store = MemoryStore::new();
    let verifier = Verifier::builder(Scheme::mailgun())
        .secret(key)
        .clock(FixedClock::new(NOW))
        .dedupe(Dedupe::builder(store, "mailgun").build().unwrap())
        .build()
        .unwrap();
    let (router, calls) = support::app(&verifier);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let first = support::send(
        router.clone(),
        support::post_request(headers.clone(), support::body(body("delivered"))),
    )
    .await;
    assert_eq!(first.status(), StatusCode::OK);
    let replay = support::send(
        router.clone(),
        support::post_request(headers, support::body(body("failed"))),
    )
    .await;
    let doc = json_of("mailgun replay", replay).await;
    assert_eq!(doc["status"], "duplicate", "{doc}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the replay did not run");
}
