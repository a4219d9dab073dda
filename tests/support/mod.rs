//! Shared helpers for the integration tests: a real axum router around the
//! layer, a handler that counts its calls and echoes what it was given, the
//! problem+json checks, and request bodies that record how they were read.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use webhook_guard::{Rejection, RejectionKind, VerifiedWebhook, Verifier};

/// Path every test router serves.
pub(crate) const PATH: &str = "/hook";

/// Every kind the crate knows today, to find one by its reason code.
pub(crate) const ALL_KINDS: [RejectionKind; 15] = [
    RejectionKind::MissingSignature,
    RejectionKind::MalformedSignature,
    RejectionKind::SignatureMismatch,
    RejectionKind::MissingTimestamp,
    RejectionKind::MalformedTimestamp,
    RejectionKind::TimestampOutOfTolerance,
    RejectionKind::MissingHeader,
    RejectionKind::MalformedHeader,
    RejectionKind::BodyTooLarge,
    RejectionKind::UnsupportedContentEncoding,
    RejectionKind::MethodNotAllowed,
    RejectionKind::BodyReadFailed,
    RejectionKind::InvalidJson,
    RejectionKind::UntrustedCertificate,
    RejectionKind::CertificateUnavailable,
];

/// The kind whose reason code is `reason`.
pub(crate) fn kind_of(reason: &str) -> RejectionKind {
    ALL_KINDS
        .into_iter()
        .find(|k| k.reason() == reason)
        .unwrap_or_else(|| panic!("unknown reason code {reason:?}"))
}

/// A router serving `POST /hook` behind `verifier`'s layer (the form the
/// crate's docs show: `post(handler).layer(verifier.layer())`), and the
/// number of times the handler ran.
pub(crate) fn app(verifier: &Verifier) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let handler = move |hook: VerifiedWebhook, body: Bytes| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Json(echo(&hook, &body))
        }
    };
    let router = Router::new().route(PATH, post(handler).layer(verifier.layer()));
    (router, calls)
}

/// What the handler saw, as JSON.
pub(crate) fn echo(hook: &VerifiedWebhook, body: &Bytes) -> Value {
    json!({
        "provider": hook.provider().name(),
        "delivery_id": hook.delivery_id(),
        "event_type": hook.event_type(),
        "timestamp": hook.timestamp_unix(),
        "timestamp_rfc": hook.timestamp().map(|t| t.unix_timestamp()),
        "secret_index": hook.secret_index(),
        "secret_label": hook.secret_label(),
        "form": hook.is_form_encoded(),
        "hook_body_hex": hex::encode(hook.body()),
        "extractor_body_hex": hex::encode(body),
        "same_buffer": hook.body().as_ptr() == body.as_ptr(),
    })
}

/// Sends one request through `router` with `oneshot`.
pub(crate) async fn send<B>(router: Router, request: Request<B>) -> Response
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    router.oneshot(request).await.expect("the router is infallible")
}

/// The whole response body.
pub(crate) async fn body_bytes(response: Response) -> Bytes {
    response
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes()
}

/// The response body parsed as JSON.
pub(crate) async fn body_json(response: Response) -> Value {
    let bytes = body_bytes(response).await;
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// A `POST /hook` request with `headers` and `body`.
pub(crate) fn post_request<B>(headers: HeaderMap, body: B) -> Request<B> {
    let mut request = Request::post(PATH).body(body).expect("request");
    *request.headers_mut() = headers;
    request
}

/// Builds a header map from static pairs (appending, so a name may repeat).
pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    map
}

/// Checks a default rejection response: status, `application/problem+json`,
/// the RFC 9457 fields and the reason, the provider, the [`Rejection`] in
/// the extensions, and that none of `forbidden` (secrets, computed
/// signatures, request bytes) appears anywhere in the body or headers.
/// Returns the rejection and the parsed document.
pub(crate) async fn assert_problem(
    what: &str,
    response: Response,
    kind: RejectionKind,
    provider: &str,
    forbidden: &[&str],
) -> (Rejection, Value) {
    assert_eq!(response.status(), kind.status(), "{what}: status");
    assert_eq!(
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes),
        Some(&b"application/problem+json"[..]),
        "{what}: content type"
    );
    for (name, value) in response.headers() {
        for f in forbidden {
            assert!(
                !String::from_utf8_lossy(value.as_bytes()).contains(f),
                "{what}: header {name} leaks {f:?}"
            );
        }
    }
    let rejection = response
        .extensions()
        .get::<Rejection>()
        .cloned()
        .unwrap_or_else(|| panic!("{what}: no Rejection in the response extensions"));
    assert_eq!(rejection.kind(), kind, "{what}: kind in extensions");
    let bytes = body_bytes(response).await;
    let text = String::from_utf8(bytes.to_vec()).expect("problem document is UTF-8");
    for f in forbidden {
        assert!(!f.is_empty(), "{what}: empty forbidden string");
        assert!(!text.contains(f), "{what}: body leaks {f:?}: {text}");
    }
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    let reason = kind.reason();
    assert_eq!(
        doc["type"],
        json!(format!("tag:webhook-guard,2026:reason/{reason}")),
        "{what}: type in {text}"
    );
    assert_eq!(doc["title"], json!(kind.title()), "{what}: title in {text}");
    assert_eq!(
        doc["status"],
        json!(kind.status().as_u16()),
        "{what}: status in {text}"
    );
    assert_eq!(doc["reason"], json!(reason), "{what}: reason in {text}");
    assert_eq!(doc["provider"], json!(provider), "{what}: provider in {text}");
    let detail = doc["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: detail is not a string in {text}"));
    assert!(!detail.is_empty(), "{what}: empty detail");
    assert_eq!(
        detail,
        rejection.detail(),
        "{what}: detail differs from the Rejection's"
    );
    (rejection, doc)
}

/// Asserts a response is the handler's 200 and returns what it echoed.
pub(crate) async fn assert_ok(what: &str, response: Response) -> Value {
    let status = response.status();
    if status != StatusCode::OK {
        let text = String::from_utf8_lossy(&body_bytes(response).await).into_owned();
        panic!("{what}: expected 200, got {status}: {text}");
    }
    let echo = body_json(response).await;
    assert_eq!(
        echo["hook_body_hex"], echo["extractor_body_hex"],
        "{what}: VerifiedWebhook::body and the Bytes extractor disagree"
    );
    echo
}

/// A body that hands out `data` in one frame and records every poll.
pub(crate) struct Spy {
    data: Option<Bytes>,
    polls: Arc<AtomicUsize>,
}

impl Spy {
    /// A spy body carrying `data`, and its poll counter.
    pub(crate) fn new(data: impl Into<Bytes>) -> (Self, Arc<AtomicUsize>) {
        let polls = Arc::new(AtomicUsize::new(0));
        (
            Self {
                data: Some(data.into()),
                polls: Arc::clone(&polls),
            },
            polls,
        )
    }
}

impl http_body::Body for Spy {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }
}

/// A body with no known length that yields 1 KiB chunks for ever,
/// counting the chunks pulled from it.
pub(crate) struct Endless {
    pulled: Arc<AtomicUsize>,
}

impl Endless {
    /// An endless body and its chunk counter.
    pub(crate) fn new() -> (Self, Arc<AtomicUsize>) {
        let pulled = Arc::new(AtomicUsize::new(0));
        (
            Self {
                pulled: Arc::clone(&pulled),
            },
            pulled,
        )
    }
}

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.pulled.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'a'; 1024])))))
    }
}

/// A body that yields `first`, then fails, as a client that goes away
/// mid-upload.
pub(crate) struct Broken {
    first: Option<Bytes>,
    failed: Arc<AtomicBool>,
}

impl Broken {
    /// A broken body and a flag set once it has returned its error.
    pub(crate) fn new(first: impl Into<Bytes>) -> (Self, Arc<AtomicBool>) {
        let failed = Arc::new(AtomicBool::new(false));
        (
            Self {
                first: Some(first.into()),
                failed: Arc::clone(&failed),
            },
            failed,
        )
    }
}

impl http_body::Body for Broken {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        self.failed.store(true, Ordering::SeqCst);
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        ))))
    }
}

/// An axum body from static bytes.
pub(crate) fn body(bytes: impl Into<Bytes>) -> Body {
    Body::from(bytes.into())
}

/// Counts the calls reaching a store.
#[derive(Clone)]
pub(crate) struct Counting<S> {
    inner: S,
    claims: Arc<AtomicUsize>,
    completes: Arc<AtomicUsize>,
    releases: Arc<AtomicUsize>,
}

impl<S> Counting<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            claims: Arc::default(),
            completes: Arc::default(),
            releases: Arc::default(),
        }
    }

    /// Claims, completes and releases so far.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (
            self.claims.load(Ordering::SeqCst),
            self.completes.load(Ordering::SeqCst),
            self.releases.load(Ordering::SeqCst),
        )
    }

    /// Every call so far.
    pub(crate) fn calls(&self) -> usize {
        let (a, b, c) = self.counts();
        a + b + c
    }
}

impl<S: webhook_guard::dedupe::DedupeStore> webhook_guard::dedupe::DedupeStore for Counting<S> {
    fn claim<'a>(
        &'a self,
        key: &'a webhook_guard::dedupe::DedupeKey,
        token: webhook_guard::dedupe::LeaseToken,
        times: webhook_guard::dedupe::Retention,
    ) -> webhook_guard::dedupe::StoreFuture<'a, webhook_guard::dedupe::Claim> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        self.inner.claim(key, token, times)
    }

    fn complete<'a>(
        &'a self,
        key: &'a webhook_guard::dedupe::DedupeKey,
        token: webhook_guard::dedupe::LeaseToken,
        times: webhook_guard::dedupe::Retention,
    ) -> webhook_guard::dedupe::StoreFuture<'a, ()> {
        self.completes.fetch_add(1, Ordering::SeqCst);
        self.inner.complete(key, token, times)
    }

    fn release<'a>(
        &'a self,
        key: &'a webhook_guard::dedupe::DedupeKey,
        token: webhook_guard::dedupe::LeaseToken,
    ) -> webhook_guard::dedupe::StoreFuture<'a, ()> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        self.inner.release(key, token)
    }
}
