//! Per-request rejections and the one table that maps them to HTTP.
//!
//! Every request the [`Verifier`](crate::Verifier) refuses becomes a
//! [`Rejection`]: an opaque value with a [`RejectionKind`] and context
//! getters. By default it is answered as an RFC 9457
//! `application/problem+json` document:
//!
//! ```json
//! {"type":"tag:webhook-guard,2026:reason/signature_mismatch",
//!  "title":"Signature mismatch","status":401,
//!  "detail":"no signature in the request matches any configured secret",
//!  "reason":"signature_mismatch","provider":"stripe"}
//! ```
//!
//! The `reason` is stable and machine-readable, so the real sender can see
//! in its delivery log why a request failed. Nothing in a rejection (its
//! `Display`, `Debug`, the body or the log line) contains a secret, a
//! computed signature, or bytes copied from the request.
//!
//! The rejection is also attached to the response's extensions, so an outer
//! layer can see why a request was refused.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

use crate::hints::Hint;
use crate::Provider;

/// What went wrong. New kinds may be added in minor releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// The signature header is absent. 401, `missing_signature`.
    MissingSignature,
    /// The signature header is sent on several lines, is not ASCII, is too
    /// long, lists too many signatures, or is not in the scheme's format
    /// (including a header that carries no signature of the pinned version,
    /// such as a Stripe header with only `v0`). 401, `malformed_signature`.
    MalformedSignature,
    /// No signature matches any configured secret. 401, `signature_mismatch`.
    SignatureMismatch,
    /// The scheme signs a timestamp and none was sent. 401, `missing_timestamp`.
    MissingTimestamp,
    /// The timestamp is not 1 to 10 ASCII digits, or is sent twice.
    /// 401, `malformed_timestamp`.
    MalformedTimestamp,
    /// The timestamp is further from the clock than the tolerance, in
    /// either direction. 401, `timestamp_out_of_tolerance`. See
    /// [`Rejection::timestamp`].
    TimestampOutOfTolerance,
    /// Another header the scheme signs (such as `webhook-id`) is absent.
    /// 401, `missing_header`.
    MissingHeader,
    /// Another header the scheme signs is malformed or sent on several
    /// lines. 401, `malformed_header`.
    MalformedHeader,
    /// The body is larger than the configured limit. 413, `body_too_large`.
    BodyTooLarge,
    /// The body is compressed (`Content-Encoding` other than `identity`).
    /// 415, `unsupported_content_encoding`.
    UnsupportedContentEncoding,
    /// The method is not `POST`. 405, `method_not_allowed`.
    MethodNotAllowed,
    /// The body could not be read to its end (the client went away or sent
    /// a broken stream). 400, `body_read_failed`.
    BodyReadFailed,
    /// The verified body is not valid JSON. 400, `invalid_json`.
    InvalidJson,
    /// Another request is handling the same delivery right now. 409,
    /// `in_progress`, with `Retry-After`: the retry then gets `duplicate`.
    InProgress,
    /// The dedupe store could not be reached or did not answer in time.
    /// 503, `dedupe_store_unavailable`, with `Retry-After`.
    DedupeStoreUnavailable,
    /// The dedupe store is full of keys it must not forget yet. 503,
    /// `dedupe_store_full`, with `Retry-After`.
    DedupeStoreFull,
    /// The client sent more requests than its quota. 429, `rate_limited`,
    /// with `Retry-After`.
    RateLimited,
    /// The client failed authentication too often and is throttled for a
    /// while. 429, `too_many_failed_authentications`, with `Retry-After`.
    TooManyFailedAuthentications,
    /// The client's address is not in the route's allowlist (or could not
    /// be determined). 403, `client_not_allowed`.
    ClientNotAllowed,
    /// The verified JSON body repeats a key in an object (a generic value
    /// and a typed struct would read it differently). 400, `duplicate_keys`.
    DuplicateKeys,
    /// The verified JSON fails the route's JSON Schema. 422,
    /// `schema_violation`; see [`Rejection::pointer`].
    SchemaViolation,
    /// The verified JSON does not deserialize into the handler's type. 422,
    /// `invalid_payload`; see [`Rejection::pointer`].
    InvalidPayload,
    /// The handler failed. 500, `handler_error`; the dedupe claim is
    /// released, so the provider's retry is processed.
    HandlerError,
    /// The fast-acknowledgement queue is full. 503, `queue_full`, with
    /// `Retry-After`.
    QueueFull,
    /// A subscription handshake carried the wrong verify token. 403,
    /// `handshake_rejected`.
    HandshakeRejected,
    /// A handshake request lacks its challenge (`crc_token`,
    /// `hub.challenge`). 400, `missing_challenge`.
    MissingChallenge,
    /// The body did not arrive in time: a gap between two chunks was
    /// longer than the idle timeout, or the whole body took longer than
    /// the body deadline. 408, `body_read_timeout`; the connection is
    /// closed.
    BodyReadTimeout,
    /// Buffering this body would cross the process-wide budget of body
    /// bytes held at once. 503, `server_busy`, with `Retry-After`.
    ServerBusy,
    /// The fast-acknowledgement queue's storage could not be written, so
    /// nothing was stored. 503, `queue_unavailable`, with `Retry-After`.
    QueueUnavailable,
    /// The receiver is shutting down. 503, `shutting_down`.
    ShuttingDown,
    /// The request names a certificate the route does not trust: PayPal's
    /// `PAYPAL-CERT-URL` is not a PayPal certificate address, or the
    /// certificate found there is not PayPal's, has no chain to a trust
    /// anchor, or is not valid now. Checked before any certificate is
    /// looked up. 401, `untrusted_certificate`.
    UntrustedCertificate,
    /// The certificate the request names cannot be had now (fetch failed
    /// or timed out). 503, `certificate_unavailable`, with `Retry-After`:
    /// the provider retries.
    CertificateUnavailable,
}

impl RejectionKind {
    /// The one table: status, reason code and title of each kind.
    const fn info(self) -> (StatusCode, &'static str, &'static str) {
        use RejectionKind::*;
        match self {
            MissingSignature => (StatusCode::UNAUTHORIZED, "missing_signature", "Missing signature"),
            MalformedSignature => (
                StatusCode::UNAUTHORIZED,
                "malformed_signature",
                "Malformed signature",
            ),
            SignatureMismatch => (
                StatusCode::UNAUTHORIZED,
                "signature_mismatch",
                "Signature mismatch",
            ),
            MissingTimestamp => (StatusCode::UNAUTHORIZED, "missing_timestamp", "Missing timestamp"),
            MalformedTimestamp => (
                StatusCode::UNAUTHORIZED,
                "malformed_timestamp",
                "Malformed timestamp",
            ),
            TimestampOutOfTolerance => (
                StatusCode::UNAUTHORIZED,
                "timestamp_out_of_tolerance",
                "Timestamp outside the tolerance",
            ),
            MissingHeader => (
                StatusCode::UNAUTHORIZED,
                "missing_header",
                "Missing signed header",
            ),
            MalformedHeader => (
                StatusCode::UNAUTHORIZED,
                "malformed_header",
                "Malformed signed header",
            ),
            BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "Body too large"),
            UnsupportedContentEncoding => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_encoding",
                "Compressed bodies are not accepted",
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            BodyReadFailed => (
                StatusCode::BAD_REQUEST,
                "body_read_failed",
                "Body could not be read",
            ),
            InvalidJson => (StatusCode::BAD_REQUEST, "invalid_json", "Body is not valid JSON"),
            InProgress => (StatusCode::CONFLICT, "in_progress", "Delivery in progress"),
            DedupeStoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "dedupe_store_unavailable",
                "Dedupe store unavailable",
            ),
            DedupeStoreFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                "dedupe_store_full",
                "Dedupe store full",
            ),
            RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests"),
            TooManyFailedAuthentications => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failed_authentications",
                "Too many failed authentications",
            ),
            ClientNotAllowed => (StatusCode::FORBIDDEN, "client_not_allowed", "Client not allowed"),
            DuplicateKeys => (
                StatusCode::BAD_REQUEST,
                "duplicate_keys",
                "JSON object with duplicate keys",
            ),
            SchemaViolation => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "schema_violation",
                "Payload fails the schema",
            ),
            InvalidPayload => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_payload",
                "Payload of an unexpected shape",
            ),
            HandlerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "handler_error",
                "Handler failed",
            ),
            QueueFull => (StatusCode::SERVICE_UNAVAILABLE, "queue_full", "Queue full"),
            HandshakeRejected => (StatusCode::FORBIDDEN, "handshake_rejected", "Handshake rejected"),
            MissingChallenge => (StatusCode::BAD_REQUEST, "missing_challenge", "Missing challenge"),
            BodyReadTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "body_read_timeout",
                "Body not received in time",
            ),
            ServerBusy => (StatusCode::SERVICE_UNAVAILABLE, "server_busy", "Server busy"),
            QueueUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_unavailable",
                "Queue unavailable",
            ),
            ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "Shutting down"),
            UntrustedCertificate => (
                StatusCode::UNAUTHORIZED,
                "untrusted_certificate",
                "Untrusted certificate",
            ),
            CertificateUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "certificate_unavailable",
                "Certificate unavailable",
            ),
        }
    }

    /// The HTTP status this kind is answered with.
    pub const fn status(self) -> StatusCode {
        self.info().0
    }

    /// The stable, machine-readable reason code (`signature_mismatch`, …).
    pub const fn reason(self) -> &'static str {
        self.info().1
    }

    /// A short human-readable title.
    pub const fn title(self) -> &'static str {
        self.info().2
    }

    /// Whether this kind is an authentication failure (answered with 401).
    pub const fn is_authentication_failure(self) -> bool {
        self.info().0.as_u16() == 401
    }
}

/// How far a signed timestamp was from the clock, for a
/// [`RejectionKind::TimestampOutOfTolerance`] rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampContext {
    timestamp: i64,
    now: i64,
    skew: i64,
    tolerance: Duration,
}

impl TimestampContext {
    /// The signed timestamp, in Unix seconds.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The clock's time when the request was checked, in Unix seconds.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// `now - timestamp` in seconds: positive when the timestamp is in the
    /// past, negative when it is in the future (saturated at the `i64`
    /// bounds).
    pub fn skew_secs(&self) -> i64 {
        self.skew
    }

    /// The configured tolerance.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }
}

/// A request the [`Verifier`](crate::Verifier) refused.
///
/// ```
/// use webhook_guard::{Rejection, RejectionKind};
///
/// let r = Rejection::new(RejectionKind::InvalidJson, "the body is not JSON");
/// assert_eq!(r.status(), http::StatusCode::BAD_REQUEST);
/// assert_eq!(r.reason(), "invalid_json");
/// ```
#[derive(Debug, Clone)]
pub struct Rejection {
    kind: RejectionKind,
    detail: Cow<'static, str>,
    provider: Option<Provider>,
    context: Context,
    /// Diagnostic hints, found only on a route with
    /// [`Diagnostics`](crate::hints::Diagnostics); `None` otherwise (one
    /// pointer, so every `Result` carrying a rejection stays small).
    hints: Option<Box<Hints>>,
}

/// A rejection's hints and whether the default response shows them
/// (development only).
#[derive(Debug, Clone)]
struct Hints {
    list: Vec<Hint>,
    in_response: bool,
}

/// The one piece of context a rejection may carry.
#[derive(Debug, Clone)]
enum Context {
    None,
    Timestamp(TimestampContext),
    BodyLimit(usize),
    RetryAfter(Duration),
    Pointer(Box<str>),
}

impl Rejection {
    /// A rejection of `kind` with a human-readable `detail`. The detail is
    /// sent to the client: never put a secret or request bytes in it.
    pub fn new(kind: RejectionKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            provider: None,
            context: Context::None,
            hints: None,
        }
    }

    /// Asks the client to retry after `after`: the response gets a
    /// `Retry-After` header in whole seconds, rounded up, at least 1.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.context = Context::RetryAfter(after);
        self
    }

    /// Names the JSON pointer of the first failing member (for 422s).
    /// Only the path is kept, never the value found there.
    pub(crate) fn with_pointer(mut self, pointer: String) -> Self {
        self.context = Context::Pointer(pointer.into_boxed_str());
        self
    }

    /// For [`RejectionKind::SchemaViolation`] and
    /// [`RejectionKind::InvalidPayload`]: the JSON pointer (RFC 6901) of the
    /// first failing member, such as `/data/object`.
    pub fn pointer(&self) -> Option<&str> {
        match &self.context {
            Context::Pointer(p) => Some(p),
            _ => None,
        }
    }

    /// When the client should retry, for 409, 429 and 503 rejections.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.context {
            Context::RetryAfter(after) => Some(after),
            _ => None,
        }
    }

    pub(crate) fn stale(timestamp: i64, now: i64, skew: i64, tolerance: Duration) -> Self {
        let direction = if skew >= 0 { "in the past" } else { "in the future" };
        let detail = format!(
            "the signed timestamp is {} s {direction}; the tolerance is {} s",
            skew.unsigned_abs(),
            tolerance.as_secs()
        );
        let mut r = Self::new(RejectionKind::TimestampOutOfTolerance, detail);
        r.context = Context::Timestamp(TimestampContext {
            timestamp,
            now,
            skew,
            tolerance,
        });
        r
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        let mut r = Self::new(
            RejectionKind::BodyTooLarge,
            format!("the body is larger than the limit of {limit} bytes"),
        );
        r.context = Context::BodyLimit(limit);
        r
    }

    pub(crate) fn with_provider(mut self, provider: &Provider) -> Self {
        self.provider = Some(provider.clone());
        self
    }

    /// Attaches diagnostic hints; `in_response` puts them in the default
    /// response too.
    pub(crate) fn with_hints(mut self, hints: Vec<Hint>, in_response: bool) -> Self {
        self.hints = (!hints.is_empty() || in_response).then(|| {
            Box::new(Hints {
                list: hints,
                in_response,
            })
        });
        self
    }

    /// Diagnostic hints about why the request failed, on a route with
    /// [`Diagnostics`](crate::hints::Diagnostics) (empty otherwise, and
    /// when none was found). They are in the default response only with
    /// [`Diagnostics::in_response`](crate::hints::Diagnostics::in_response).
    pub fn hints(&self) -> &[Hint] {
        self.hints.as_ref().map_or(&[], |h| h.list.as_slice())
    }

    /// What went wrong.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The HTTP status of the default response.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The machine-readable reason code.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// The human-readable explanation sent in the problem document.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The provider of the route that refused the request, if known.
    pub fn provider(&self) -> Option<&Provider> {
        self.provider.as_ref()
    }

    /// For [`RejectionKind::TimestampOutOfTolerance`]: how far off the
    /// timestamp was.
    pub fn timestamp(&self) -> Option<&TimestampContext> {
        match &self.context {
            Context::Timestamp(ctx) => Some(ctx),
            _ => None,
        }
    }

    /// For [`RejectionKind::BodyTooLarge`]: the limit that was exceeded.
    pub fn body_limit(&self) -> Option<usize> {
        match self.context {
            Context::BodyLimit(limit) => Some(limit),
            _ => None,
        }
    }

    /// The default `application/problem+json` response, with the rejection
    /// in its extensions. Same as [`IntoResponse::into_response`].
    pub fn to_response(&self) -> Response {
        let status = self.status();
        let mut doc = serde_json::json!({
            "type": format!("tag:webhook-guard,2026:reason/{}", self.reason()),
            "title": self.kind.title(),
            "status": status.as_u16(),
            "detail": self.detail,
            "reason": self.reason(),
        });
        if let (Some(provider), Some(map)) = (&self.provider, doc.as_object_mut()) {
            map.insert("provider".into(), provider.name().into());
        }
        if let (Some(limit), Some(map)) = (self.body_limit(), doc.as_object_mut()) {
            map.insert("limit".into(), limit.into());
        }
        if let (Some(pointer), Some(map)) = (self.pointer(), doc.as_object_mut()) {
            map.insert("pointer".into(), pointer.into());
        }
        if let (Some(after), Some(map)) = (self.retry_after(), doc.as_object_mut()) {
            map.insert(
                "retry_after".into(),
                crate::dedupe::retry_after_secs(after).into(),
            );
        }
        let shown = self
            .hints
            .as_ref()
            .filter(|h| h.in_response && !h.list.is_empty());
        if let (Some(shown), Some(map)) = (shown, doc.as_object_mut()) {
            let hints: Vec<serde_json::Value> = shown
                .list
                .iter()
                .map(|h| serde_json::json!({"code": h.code(), "detail": h.to_string()}))
                .collect();
            map.insert("hints".into(), hints.into());
        }
        let mut response = (status, doc.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.kind == RejectionKind::MethodNotAllowed {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        if self.kind == RejectionKind::BodyReadTimeout {
            // The rest of the body may still trickle in: the connection is
            // not reused (hyper closes it after this response).
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(after) = self.retry_after() {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::dedupe::retry_after_secs(after)),
            );
        }
        response.extensions_mut().insert(self.clone());
        response
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason(), self.detail)
    }
}

impl std::error::Error for Rejection {}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.to_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_auth_failure_is_401() {
        use RejectionKind::*;
        for kind in [
            MissingSignature,
            MalformedSignature,
            SignatureMismatch,
            MissingTimestamp,
            MalformedTimestamp,
            TimestampOutOfTolerance,
            MissingHeader,
            MalformedHeader,
        ] {
            assert_eq!(kind.status(), StatusCode::UNAUTHORIZED, "{kind:?}");
            assert!(kind.is_authentication_failure());
        }
        assert!(!BodyTooLarge.is_authentication_failure());
        assert!(!RateLimited.is_authentication_failure());
        assert!(!TooManyFailedAuthentications.is_authentication_failure());
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        for (after, header) in [
            (0, "1"),
            (1, "1"),
            (999, "1"),
            (1000, "1"),
            (1001, "2"),
            (60_000, "60"),
        ] {
            let r = Rejection::new(RejectionKind::RateLimited, "slow down")
                .with_retry_after(Duration::from_millis(after));
            let response = r.to_response();
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(
                response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()),
                Some(header),
                "{after} ms"
            );
        }
        let plain = Rejection::new(RejectionKind::SignatureMismatch, "no").to_response();
        assert!(plain.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn stale_detail_says_how_far_off() {
        let r = Rejection::stale(1000, 1412, 412, Duration::from_secs(300));
        assert_eq!(
            r.detail(),
            "the signed timestamp is 412 s in the past; the tolerance is 300 s"
        );
        let ctx = r.timestamp().copied();
        assert_eq!(ctx.map(|c| c.skew_secs()), Some(412));
        let r = Rejection::stale(2000, 1000, -1000, Duration::from_secs(300));
        assert!(r.detail().contains("1000 s in the future"));
    }
}
