//! The verifier and its tower layer.
//!
//! A [`Verifier`] holds one route's configuration: its [`Scheme`], the
//! accepted secrets (keyed once, when it is built), the timestamp
//! tolerance, the body limit, the body timers and budget, and the clock.
//! [`Verifier::layer`] turns it into a [`VerifyWebhookLayer`] for axum or
//! any tower stack; [`Verifier::verify`] checks a request you have already
//! buffered.
//!
//! The layer handles a request in this order, and stops at the first
//! failure:
//!
//! 1. the method must be `POST` (405);
//! 2. `Content-Encoding` must be absent or `identity` (415: compressed
//!    bodies are refused, never inflated);
//! 3. a `Content-Length` over the limit is refused before any byte is read
//!    (413);
//! 4. the scheme's headers are parsed strictly and the signed timestamp, if
//!    any, is checked against the clock (401), still before the body is read;
//! 5. the body's bytes are reserved in the process-wide [`BodyBudget`]
//!    (the whole `Content-Length`, at most the limit, when the header is
//!    there): if that would cross the budget, 503 `server_busy` with
//!    `Retry-After: 1`, and the body is not read;
//! 6. the body is read once, under the limit, stopping as soon as it is
//!    crossed (413); a body without `Content-Length` is reserved in the
//!    budget as its bytes arrive (503 as in step 5). A wait for the first
//!    chunk or between two chunks longer than the idle timeout (default
//!    10 s), or a whole body slower than the body deadline (default 30 s,
//!    counted from the start of step 5), is answered 408
//!    `body_read_timeout` and the connection is closed;
//! 7. every candidate signature is compared in constant time with the MAC
//!    of the signed content under every configured secret (401); on a
//!    route with [`Diagnostics`](crate::hints::Diagnostics), a request
//!    refused here or at step 4 is then examined for the usual mistakes
//!    (see [`hints`](crate::hints));
//! 8. the handler runs with the same bytes as its body and a
//!    [`VerifiedWebhook`] in the request extensions. The body's budget
//!    reservation is held until the layer's response future finishes, and
//!    given back when it finishes or is dropped, whatever the outcome.
//!
//! Steps 5 and 6 bound what slow or stalled clients cost: each is dropped
//! after the idle timeout or the deadline, and together they never hold
//! more body bytes than the budget
//! ([`DEFAULT_INFLIGHT_BODY_BYTES`](crate::DEFAULT_INFLIGHT_BODY_BYTES), 64 MiB,
//! unless [`VerifierBuilder::body_budget`] says otherwise), however many
//! connections they open. The timers need a tokio runtime with its time
//! driver (`#[tokio::main]` has one); outside a runtime the body is read
//! without them.
//!
//! ```
//! use axum::{routing::post, Router};
//! use webhook_guard::{Scheme, Verifier, VerifiedWebhook};
//!
//! async fn handle(hook: VerifiedWebhook) -> &'static str {
//!     println!("{} delivery {:?}", hook.provider(), hook.delivery_id());
//!     "ok"
//! }
//!
//! let github = Verifier::builder(Scheme::github())
//!     .secret("It's a Secret to Everybody")
//!     .build()?;
//! let app: Router = Router::new().route("/webhooks/github", post(handle).layer(github.layer()));
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use bytes::Bytes;
use hmac::Mac as _;
use http::{header, HeaderMap, Method};

use crate::body::Timeouts;
use crate::clock::{Clock, SystemClock};
use crate::dedupe::{Dedupe, DedupeKey, Retention};
use crate::delivery::VerifiedWebhook;
use crate::handshake::Handshake;
use crate::hints::{Diagnostics, RouteDiagnostics};
use crate::log_limit::{LogLimiter, DEFAULT_REJECTION_LOGS_PER_SECOND};
use crate::observe::{Observer, RouteRecord};
use crate::schema::Schemas;
use crate::scheme::{Algorithms, Key, LabeledKey, Parsed};
use crate::{BodyBudget, ClientIp, ConfigError, Networks, Rejection, RejectionKind, Scheme, Secret};

mod future;
mod layer;
mod service;
mod watch;
pub(crate) use watch::Watch;

pub use future::ResponseFuture;
pub use layer::VerifyWebhookLayer;
pub use service::VerifyWebhook;

/// Default tolerance for signed timestamps, in both directions.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// Default body limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default longest gap between two chunks of a body: 10 s.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed for a whole body, from when the layer starts
/// reading it: 30 s.
pub const DEFAULT_BODY_DEADLINE: Duration = Duration::from_secs(30);

type RejectionHandler = Arc<dyn Fn(&Rejection) -> Response + Send + Sync>;

/// Verifies one route's webhooks. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    scheme: Scheme,
    keys: Vec<LabeledKey>,
    /// The algorithms of `keys`: a request must carry a candidate of one.
    algorithms: Algorithms,
    tolerance: Duration,
    max_body: usize,
    body_timeouts: Timeouts,
    budget: BodyBudget,
    clock: Arc<dyn Clock>,
    on_rejection: Option<RejectionHandler>,
    dedupe: Option<(Dedupe, Retention)>,
    allowed_clients: Option<Networks>,
    schemas: Option<Schemas>,
    handshake: Option<Handshake>,
    rejection_logs: LogLimiter,
    name: Arc<str>,
    observer: Option<Arc<dyn Observer>>,
    /// Diagnostic hints, off (`None`) by default.
    diagnostics: Option<RouteDiagnostics>,
}

/// Builder for [`Verifier`]; start with [`Verifier::builder`].
#[must_use]
pub struct VerifierBuilder {
    scheme: Scheme,
    secrets: Vec<Secret>,
    tolerance: Duration,
    max_body: NonZeroUsize,
    body_idle: Duration,
    body_deadline: Duration,
    budget: Option<BodyBudget>,
    clock: Arc<dyn Clock>,
    on_rejection: Option<RejectionHandler>,
    dedupe: Option<Dedupe>,
    allowed_clients: Option<Networks>,
    schemas: Option<Schemas>,
    handshake: Option<Handshake>,
    rejection_logs_per_second: NonZeroU32,
    name: Option<Arc<str>>,
    observer: Option<Arc<dyn Observer>>,
    diagnostics: Option<Diagnostics>,
}

impl Verifier {
    /// Starts configuring a verifier for `scheme`. Defaults: a tolerance of
    /// 300 s, a body limit of 1 MiB, a body idle timeout of 10 s and a body
    /// deadline of 30 s, the process-wide [`BodyBudget::global`], the system
    /// clock.
    pub fn builder(scheme: Scheme) -> VerifierBuilder {
        VerifierBuilder {
            scheme,
            secrets: Vec::new(),
            tolerance: DEFAULT_TOLERANCE,
            max_body: NonZeroUsize::new(DEFAULT_MAX_BODY_BYTES).unwrap_or(NonZeroUsize::MIN),
            body_idle: DEFAULT_BODY_IDLE_TIMEOUT,
            body_deadline: DEFAULT_BODY_DEADLINE,
            budget: None,
            clock: Arc::new(SystemClock),
            on_rejection: None,
            dedupe: None,
            allowed_clients: None,
            schemas: None,
            handshake: None,
            rejection_logs_per_second: NonZeroU32::new(DEFAULT_REJECTION_LOGS_PER_SECOND)
                .unwrap_or(NonZeroU32::MIN),
            name: None,
            observer: None,
            diagnostics: None,
        }
    }

    /// The route's name, for observers
    /// ([`VerifierBuilder::name`]; default: the provider's name).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The route's name, shared.
    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// The route's observer, if any.
    #[inline]
    pub(crate) fn observer(&self) -> Option<&Arc<dyn Observer>> {
        self.inner.observer.as_ref()
    }

    /// The clock's time now, in Unix seconds.
    pub(crate) fn now_unix(&self) -> i64 {
        self.inner.clock.now_unix()
    }

    /// The route's scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.inner.scheme
    }

    /// The timestamp tolerance.
    pub fn tolerance(&self) -> Duration {
        self.inner.tolerance
    }

    /// The body limit, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body
    }

    /// The longest gap allowed between two chunks of a body.
    pub fn body_idle_timeout(&self) -> Duration {
        self.inner.body_timeouts.idle
    }

    /// The time allowed for a whole body, from when the layer starts
    /// reading it.
    pub fn body_deadline(&self) -> Duration {
        self.inner.body_timeouts.total
    }

    /// The budget of buffered body bytes this verifier reserves from.
    pub fn body_budget(&self) -> &BodyBudget {
        &self.inner.budget
    }

    /// The two body timers, for the layer's reader.
    pub(crate) fn body_timeouts(&self) -> Timeouts {
        self.inner.body_timeouts
    }

    /// How many secrets are accepted.
    pub fn secret_count(&self) -> usize {
        self.inner.keys.len()
    }

    /// The route's deduplication and its retention times, if configured.
    pub(crate) fn dedupe(&self) -> Option<&(Dedupe, Retention)> {
        self.inner.dedupe.as_ref()
    }

    /// The dedupe key of a verified delivery: its signed id when the scheme
    /// signs one, else a digest of the body.
    pub(crate) fn dedupe_key(&self, namespace: &str, hook: &VerifiedWebhook) -> DedupeKey {
        if self.inner.scheme.signs_delivery_id() {
            if let Some(id) = hook.delivery_id() {
                return DedupeKey::from_id(namespace, id.as_bytes());
            }
        }
        DedupeKey::from_body(namespace, hook.body())
    }

    /// The retention of one delivery's key. For a scheme that signs a
    /// timestamp, a replay is refused by the timestamp check alone once
    /// the clock passes the signed time plus the tolerance, so the key must
    /// be remembered only until then (plus a second): past that it may be
    /// evicted to make room. Body-hash and id schemes without a signed time
    /// keep the route's full replay window.
    pub(crate) fn retention_for(&self, hook: &VerifiedWebhook, times: Retention) -> Retention {
        let Some(ts) = hook.timestamp_unix() else {
            return times;
        };
        let now = self.inner.clock.now_unix();
        let tolerance = i64::try_from(self.inner.tolerance.as_secs()).unwrap_or(i64::MAX);
        let until = ts.saturating_add(tolerance).saturating_add(1);
        let left = u64::try_from(until.saturating_sub(now)).unwrap_or(0);
        let window = Duration::from_secs(left).min(times.replay_window());
        Retention::new(times.lease(), window, times.idempotency())
    }

    /// A tower layer that verifies every request before the inner service
    /// sees it.
    pub fn layer(&self) -> VerifyWebhookLayer {
        VerifyWebhookLayer::new(self.clone())
    }

    /// Verifies a request whose body you have already read: the headers
    /// and timestamp first, then the signature over `body`. Method, encoding
    /// and size checks are the layer's and are not repeated here.
    ///
    /// # Errors
    ///
    /// A [`Rejection`] saying why the request is not authentic.
    ///
    /// For a scheme whose key each request names (PayPal), the key must be
    /// at hand without waiting (pinned certificates, or a source's cache);
    /// otherwise the answer is [`RejectionKind::CertificateUnavailable`]
    /// (the layer waits for it instead).
    pub fn verify(&self, headers: &HeaderMap, body: Bytes) -> Result<VerifiedWebhook, Rejection> {
        let mut parsed = Parsed::empty();
        self.check_headers(headers, &mut parsed)?;
        let key = match self.request_key(&parsed) {
            Some(mut lookup) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match lookup.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(key) => Some(key.map_err(|r| self.tag(r))?),
                    std::task::Poll::Pending => {
                        return Err(self.tag(
                            Rejection::new(
                                RejectionKind::CertificateUnavailable,
                                "the key this request names is not at hand without waiting",
                            )
                            .with_retry_after(Duration::from_secs(30)),
                        ))
                    }
                }
            }
            None => None,
        };
        self.authenticate(&parsed, key.as_ref(), headers, body)
    }

    /// For a scheme whose key the request names: its lookup.
    pub(crate) fn request_key<'a>(&'a self, parsed: &Parsed<'a>) -> Option<crate::scheme::KeyFuture<'a>> {
        // The clock is read only for a scheme that names its key.
        self.inner.scheme.request_key(parsed, || self.now_unix())
    }

    /// Step 4 of the module docs: parse the scheme's headers and check the
    /// timestamp against the clock.
    #[inline]
    pub(crate) fn check_headers<'a>(
        &'a self,
        headers: &'a HeaderMap,
        parsed: &mut Parsed<'a>,
    ) -> Result<(), Rejection> {
        let inner = &*self.inner;
        // Read into the caller's `Parsed`: returning it would copy it.
        if let Err(r) = inner.scheme.parse_into(headers, parsed) {
            return Err(self.hint_header_failure(self.tag(r), headers));
        }
        if !parsed.signatures.any_for(inner.algorithms) {
            return Err(self.tag(Rejection::new(
                RejectionKind::MalformedSignature,
                "the signature header carries no signature of an algorithm this route has a key for",
            )));
        }
        if let Some(ts) = parsed.timestamp {
            let now = inner.clock.now_unix();
            if let Err(skew) = crate::timestamp::check(ts, now, inner.tolerance) {
                let rejection = self.tag(Rejection::stale(ts, now, skew, inner.tolerance));
                return Err(self.hint_stale(rejection, skew));
            }
        }
        Ok(())
    }

    /// Step 7: the MAC under each key, compared with each candidate in
    /// constant time. Returns the verified delivery.
    pub(crate) fn authenticate(
        &self,
        parsed: &Parsed<'_>,
        request_key: Option<&Key>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<VerifiedWebhook, Rejection> {
        if let Some(key) = request_key {
            if key.verify(&parsed.content, &body, &parsed.signatures) {
                return Ok(VerifiedWebhook::new(
                    &self.inner.scheme,
                    parsed,
                    headers,
                    0,
                    None,
                    body,
                ));
            }
        }
        for (index, key) in self.inner.keys.iter().enumerate() {
            if key.key().verify(&parsed.content, &body, &parsed.signatures) {
                return Ok(VerifiedWebhook::new(
                    &self.inner.scheme,
                    parsed,
                    headers,
                    index,
                    key.label().cloned(),
                    body,
                ));
            }
        }
        let rejection = self.tag(Rejection::new(
            RejectionKind::SignatureMismatch,
            "no signature in the request matches any configured secret",
        ));
        Err(match (&self.inner.diagnostics, request_key) {
            (Some(d), None) => self.hint_mismatch(d, rejection, parsed, &body),
            _ => rejection,
        })
    }

    /// Hints for a request whose signature matched no key (a route with
    /// diagnostics only).
    #[cold]
    #[inline(never)]
    fn hint_mismatch(
        &self,
        diagnostics: &RouteDiagnostics,
        rejection: Rejection,
        parsed: &Parsed<'_>,
        body: &[u8],
    ) -> Rejection {
        let hints = diagnostics.signature(parsed, body, self.inner.clock.now_unix_millis());
        rejection.with_hints(hints, diagnostics.in_response())
    }

    /// Hints for a request whose scheme headers did not parse: a
    /// timestamp in milliseconds.
    #[cold]
    #[inline(never)]
    fn hint_header_failure(&self, rejection: Rejection, headers: &HeaderMap) -> Rejection {
        let inner = &*self.inner;
        match &inner.diagnostics {
            Some(d) if rejection.kind() == RejectionKind::MalformedTimestamp => {
                let hints = d.malformed_timestamp(
                    &inner.scheme,
                    headers,
                    inner.clock.now_unix(),
                    inner.tolerance,
                    inner.clock.now_unix_millis(),
                );
                rejection.with_hints(hints, d.in_response())
            }
            _ => rejection,
        }
    }

    /// Hints for a timestamp out of tolerance: a clock skew.
    #[cold]
    #[inline(never)]
    fn hint_stale(&self, rejection: Rejection, skew: i64) -> Rejection {
        let inner = &*self.inner;
        match &inner.diagnostics {
            Some(d) => {
                let hints = d.stale(skew, inner.tolerance, inner.clock.now_unix_millis());
                rejection.with_hints(hints, d.in_response())
            }
            None => rejection,
        }
    }

    /// A `GET` handshake's answer, if the route has one and this is it.
    pub(crate) fn handshake(
        &self,
        method: &Method,
        query: Option<&str>,
    ) -> Option<Result<Response, Rejection>> {
        let handshake = self.inner.handshake.as_ref()?;
        let first = self.inner.keys.first()?;
        handshake
            .answer(method, query, |bytes| {
                let mut mac = first.key().hmac_sha256_state()?;
                mac.update(bytes);
                Some(mac.finalize().into_bytes().into())
            })
            .map(|r| r.map_err(|e| self.tag(e)))
    }

    /// After verification: a handshake the scheme answers itself (Slack's
    /// `url_verification`, ...), never handed to the handler.
    pub(crate) fn url_verification(&self, hook: &VerifiedWebhook) -> Option<Response> {
        let key = self.inner.keys.get(hook.secret_index());
        let sign = |bytes: &[u8]| -> Option<[u8; 32]> {
            let mut mac = key?.key().hmac_sha256_state()?;
            mac.update(bytes);
            Some(mac.finalize().into_bytes().into())
        };
        self.inner.scheme.answer_verified(hook, &sign)
    }

    /// After verification, before the dedupe claim: the one JSON parse and
    /// the route's schemas (400, 422). Form bodies are not JSON and skip it.
    pub(crate) fn validate(&self, hook: &VerifiedWebhook) -> Result<(), Rejection> {
        let Some(schemas) = &self.inner.schemas else {
            return Ok(());
        };
        schemas.validate_webhook(hook).map_err(|r| self.tag(r))
    }

    /// Step 0: the route's allowlist, if any. The client address is the
    /// one the [`RateLimiter`](crate::RateLimiter) resolved, else axum's
    /// `ConnectInfo` peer; with neither, the request is refused (fail
    /// closed) and the misconfiguration logged.
    pub(crate) fn check_client(&self, extensions: &http::Extensions) -> Result<(), Rejection> {
        let Some(allowed) = &self.inner.allowed_clients else {
            return Ok(());
        };
        use axum::extract::connect_info::{ConnectInfo, MockConnectInfo};
        use std::net::SocketAddr;
        let client = extensions
            .get::<ClientIp>()
            .map(ClientIp::ip)
            .or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
            .or_else(|| extensions.get::<MockConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
        match client {
            Some(ip) if allowed.contains(ip) => Ok(()),
            Some(_) => Err(self.tag(Rejection::new(
                RejectionKind::ClientNotAllowed,
                "this route accepts deliveries only from the provider's published addresses",
            ))),
            None => {
                tracing::error!(
                    target: "webhook_guard",
                    "a route with an allowlist was served without the client address; \
                     serve the app through RateLimiter::into_make_service or with connect info"
                );
                Err(self.tag(Rejection::new(
                    RejectionKind::ClientNotAllowed,
                    "the client address could not be determined",
                )))
            }
        }
    }

    /// Steps 1 to 3, on the request head only.
    pub(crate) fn check_head(&self, method: &Method, headers: &HeaderMap) -> Result<Option<u64>, Rejection> {
        if method != Method::POST {
            return Err(self.tag(Rejection::new(
                RejectionKind::MethodNotAllowed,
                "webhooks are delivered with POST",
            )));
        }
        for value in headers.get_all(header::CONTENT_ENCODING) {
            let identity = value
                .to_str()
                .is_ok_and(|v| v.split(',').all(|t| t.trim().eq_ignore_ascii_case("identity")));
            if !identity {
                return Err(self.tag(Rejection::new(
                    RejectionKind::UnsupportedContentEncoding,
                    "compressed bodies are not accepted; send Content-Encoding: identity",
                )));
            }
        }
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = length {
            if u64::try_from(self.inner.max_body).is_ok_and(|max| length > max) {
                return Err(self.tag(Rejection::too_large(self.inner.max_body)));
            }
        }
        Ok(length)
    }

    /// The response for a rejection: logged once (rejections before the
    /// signature is verified within the per-reason allowance, see
    /// [`log_limit`](crate::log_limit)), then answered with the configured
    /// handler or the default problem document. The rejection is always in
    /// the response's extensions.
    pub(crate) fn reject(&self, rejection: Rejection) -> Response {
        let inner = &*self.inner;
        if let Some(suppressed) = inner
            .rejection_logs
            .admit(rejection.kind(), || inner.clock.now_unix_millis())
        {
            tracing::warn!(
                target: "webhook_guard",
                provider = inner.scheme.provider().name(),
                reason = rejection.reason(),
                status = rejection.status().as_u16(),
                suppressed = crate::log_limit::suppressed_field(suppressed),
                "webhook rejected"
            );
        }
        for hint in rejection.hints() {
            // Capped by the diagnostics' own per-second bucket.
            tracing::warn!(
                target: "webhook_guard",
                route = &*inner.name,
                provider = inner.scheme.provider().name(),
                reason = rejection.reason(),
                hint = hint.code(),
                "webhook verification hint: {hint}"
            );
        }
        let mut response = match &self.inner.on_rejection {
            Some(handler) => handler(&rejection),
            None => rejection.to_response(),
        };
        response.extensions_mut().insert(rejection);
        response
    }

    pub(crate) fn tag(&self, rejection: Rejection) -> Rejection {
        rejection.with_provider(self.inner.scheme.provider())
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("name", &self.inner.name)
            .field("scheme", &self.inner.scheme)
            .field("secrets", &self.inner.keys)
            .field("tolerance", &self.inner.tolerance)
            .field("max_body_bytes", &self.inner.max_body)
            .field("body_idle_timeout", &self.inner.body_timeouts.idle)
            .field("body_deadline", &self.inner.body_timeouts.total)
            .field("body_budget", &self.inner.budget)
            .field("dedupe", &self.inner.dedupe)
            .field("diagnostics", &self.inner.diagnostics)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// Adds an accepted secret. Add several while you rotate: a request
    /// passes if any of its signatures matches under any of them.
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// Adds several accepted secrets.
    pub fn secrets<I>(mut self, secrets: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Secret>,
    {
        self.secrets.extend(secrets.into_iter().map(Into::into));
        self
    }

    /// How far a signed timestamp may be from the clock, in the past or in
    /// the future. Default: 300 s. Must be at least one second.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The largest body accepted, in bytes. Default: 1 MiB.
    pub fn max_body_bytes(mut self, limit: NonZeroUsize) -> Self {
        self.max_body = limit;
        self
    }

    /// The longest gap allowed between two chunks of a body (and before
    /// the first one): past it the request is answered 408
    /// `body_read_timeout` and the connection closed. Default: 10 s. Must
    /// not be zero.
    ///
    /// A client trickling a byte now and then never trips it: see
    /// [`body_deadline`](Self::body_deadline).
    pub fn body_idle_timeout(mut self, idle: Duration) -> Self {
        self.body_idle = idle;
        self
    }

    /// The time allowed for a whole body, counted from when the layer
    /// starts reading it (after the head checks): past it the request is
    /// answered 408 `body_read_timeout` and the connection closed.
    /// Default: 30 s. Must not be zero. An idle timeout longer than the
    /// deadline never fires.
    pub fn body_deadline(mut self, deadline: Duration) -> Self {
        self.body_deadline = deadline;
        self
    }

    /// The budget of body bytes buffered at once that this route reserves
    /// from; share one [`BodyBudget`] (clones share it) between the routes
    /// it should cover. Default: [`BodyBudget::global`], 64 MiB for the
    /// whole process. A request whose body would cross it is answered 503
    /// `server_busy` with `Retry-After: 1`, without reading the body.
    pub fn body_budget(mut self, budget: BodyBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The clock used for the tolerance check. Default: [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Replaces the default problem+json response for rejections. The
    /// [`Rejection`] is still put in the response's extensions.
    pub fn on_rejection<F>(mut self, handler: F) -> Self
    where
        F: Fn(&Rejection) -> Response + Send + Sync + 'static,
    {
        self.on_rejection = Some(Arc::new(handler));
        self
    }

    /// Deduplicates the route's deliveries after they are verified: see
    /// [`dedupe`](crate::dedupe). Without it every verified delivery reaches
    /// the handler, retries and replays included.
    pub fn dedupe(mut self, dedupe: Dedupe) -> Self {
        self.dedupe = Some(dedupe);
        self
    }

    /// Accepts deliveries only from clients in `networks` (403
    /// `client_not_allowed` otherwise), for providers that publish their
    /// sender ranges. Checked before anything else on the route. The
    /// client address is the one the [`RateLimiter`](crate::RateLimiter)
    /// resolved (so trusted proxies are honoured).
    pub fn allowed_clients(mut self, networks: Networks) -> Self {
        self.allowed_clients = Some(networks);
        self
    }

    /// Validates verified JSON bodies against `schemas` before the handler
    /// (and the dedupe claim): 400 for a body that is not JSON or repeats
    /// a key, 422 for one that fails a schema. See [`schema`](crate::schema).
    pub fn schemas(mut self, schemas: Schemas) -> Self {
        self.schemas = Some(schemas);
        self
    }

    /// Answers a provider's `GET` handshake on this route (Meta's
    /// subscription check, X's CRC); see [`handshake`](crate::handshake).
    pub fn handshake(mut self, handshake: Handshake) -> Self {
        self.handshake = Some(handshake);
        self
    }

    /// How many rejection events of one reason are logged per second (and
    /// at once) for requests that were not authenticated: missing or wrong
    /// signatures, stale timestamps, bodies too large, and the other
    /// rejections before the signature is verified. Past it the events are
    /// counted, and the count is logged with the next event of that
    /// reason, in its `suppressed` field. Rejections of verified
    /// deliveries (422 and the like) are always logged. Default:
    /// [`DEFAULT_REJECTION_LOGS_PER_SECOND`](crate::DEFAULT_REJECTION_LOGS_PER_SECOND),
    /// 10, per reason, for this verifier and its clones.
    pub fn rejection_logs_per_second(mut self, per_second: NonZeroU32) -> Self {
        self.rejection_logs_per_second = per_second;
        self
    }

    /// The route's name, reported to [observers](crate::observe) (and
    /// usable as a metric label): a short constant such as
    /// `"stripe-payments"`, never anything a client sends. Default: the
    /// provider's name (`stripe`, `github`, a custom scheme's name).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Reports every request that reaches this route's layer to
    /// `observer`: see [`observe`](crate::observe). The route's
    /// [`dedupe`](Self::dedupe) reports its store operations to it too,
    /// unless it was given an observer of its own. Default: none, and
    /// the layer does no observation work at all.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Turns on [diagnostic hints](crate::hints) for this route: after a
    /// request failed its signature or timestamp check, the route looks
    /// for the usual mistakes (a body whose line endings were changed on
    /// the way, a quoted secret, another route's secret, a timestamp in
    /// milliseconds, ...) and reports what it finds to the log, the
    /// observer and [`Rejection::hints`], within the handle's per-second
    /// cap; never to the response unless
    /// [`Diagnostics::in_response`] is on. Routes built with the same
    /// handle (or its clones) try each other's secrets. Default: off, and
    /// the route does no diagnostic work at all.
    pub fn diagnostics(mut self, diagnostics: Diagnostics) -> Self {
        self.diagnostics = Some(diagnostics);
        self
    }

    /// Checks the configuration and keys every secret once.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if no secret is given, a secret is empty, only
    /// whitespace or has whitespace around it, a Standard Webhooks secret is
    /// not valid base64, or the tolerance is under one second;
    /// [`ConfigError::ZeroBodyTimeout`] if the body idle timeout or the body
    /// deadline is zero; a
    /// [`ConfigError::InvalidDedupe`] if the dedupe replay window is
    /// shorter than the tolerance.
    pub fn build(self) -> Result<Verifier, ConfigError> {
        if self.tolerance.as_secs() == 0 {
            return Err(ConfigError::ZeroTolerance);
        }
        if self.body_idle.is_zero() {
            return Err(ConfigError::ZeroBodyTimeout {
                setting: "body idle timeout",
            });
        }
        if self.body_deadline.is_zero() {
            return Err(ConfigError::ZeroBodyTimeout {
                setting: "body deadline",
            });
        }
        if self.secrets.is_empty() && self.scheme.needs_secrets() {
            return Err(ConfigError::NoSecrets);
        }
        let keys = self
            .secrets
            .iter()
            .enumerate()
            .map(|(index, secret)| {
                let key = self.scheme.key(index, secret.expose())?;
                Ok(LabeledKey::new(key, secret.label().map(Arc::from)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let algorithms = keys.iter().fold(self.scheme.request_algorithms(), |set, k| {
            set.with(k.key().algorithm())
        });
        if let Some(token) = self.handshake.as_ref().and_then(Handshake::token) {
            let t = token.expose();
            if t.trim().is_empty() {
                return Err(ConfigError::InvalidHandshake {
                    reason: "the verify token is empty",
                });
            }
            if t.trim() != t {
                return Err(ConfigError::InvalidHandshake {
                    reason: "the verify token starts or ends with whitespace",
                });
            }
        }
        let dedupe = match self.dedupe {
            Some(mut d) => {
                let times = d.retention(self.tolerance)?;
                if let Some(observer) = &self.observer {
                    d.inherit_observer(observer);
                }
                Some((d, times))
            }
            None => None,
        };
        let name = self
            .name
            .unwrap_or_else(|| Arc::from(self.scheme.provider().name()));
        if let Some(observer) = &self.observer {
            let labels: Vec<Option<Arc<str>>> = keys.iter().map(|k| k.label().cloned()).collect();
            observer.on_route(&RouteRecord {
                route: &name,
                provider: self.scheme.provider(),
                secret_labels: &labels,
            });
        }
        let diagnostics = self.diagnostics.map(|handle| {
            RouteDiagnostics::new(handle, Arc::clone(&name), &self.scheme, &self.secrets, &keys)
        });
        Ok(Verifier {
            inner: Arc::new(Inner {
                scheme: self.scheme,
                keys,
                algorithms,
                tolerance: self.tolerance,
                max_body: self.max_body.get(),
                body_timeouts: Timeouts {
                    idle: self.body_idle,
                    total: self.body_deadline,
                },
                budget: self.budget.unwrap_or_else(BodyBudget::global),
                clock: self.clock,
                on_rejection: self.on_rejection,
                dedupe,
                allowed_clients: self.allowed_clients,
                schemas: self.schemas,
                handshake: self.handshake,
                rejection_logs: LogLimiter::new(self.rejection_logs_per_second),
                name,
                observer: self.observer,
                diagnostics,
            }),
        })
    }
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .field("secrets", &self.secrets)
            .field("tolerance", &self.tolerance)
            .field("max_body_bytes", &self.max_body)
            .field("body_idle_timeout", &self.body_idle)
            .field("body_deadline", &self.body_deadline)
            .field("body_budget", &self.budget)
            .field("dedupe", &self.dedupe)
            .field("diagnostics", &self.diagnostics)
            .finish_non_exhaustive()
    }
}
