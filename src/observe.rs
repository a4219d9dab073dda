//! Observing what the guard does: one record per request, and the
//! operations of the dedupe store, the rate limiter and the queue.
//!
//! Install an [`Observer`] on a route with
//! [`VerifierBuilder::observer`](crate::VerifierBuilder::observer) and
//! every request that reaches the verify layer yields exactly one
//! [`RequestRecord`] when the layer answers it: the route's name, the
//! provider, the [`Outcome`] (processed, accepted by the queue, duplicate,
//! ignored, a handshake answered by the layer, or rejected with its
//! [`RejectionKind`]), the response status, which secret matched, the
//! timestamp skew, the body size, the time spent in the layer and in the
//! handler, and the event type once the delivery is verified. A request
//! whose response future is dropped before it finishes (the client went
//! away, an outer timeout fired) yields a record with
//! [`Outcome::Cancelled`] (a future dropped before it was ever polled
//! never started and yields none). [`Verifier::verify`](crate::Verifier::verify),
//! called directly, yields no record.
//!
//! The same observer (or another) can be given to a
//! [`Dedupe`](crate::dedupe::DedupeBuilder::observer) (a route's dedupe
//! without one reports to the route's observer), a
//! [`RateLimiter`](crate::rate_limit::RateLimiterBuilder::observer) and an
//! [`AckQueue`](crate::queue::AckQueueBuilder::observer); each reports its
//! own operations ([`DedupeRecord`], [`RateLimitRecord`],
//! [`QueueRecord`]). Every method of [`Observer`] has an empty default
//! body, so an observer implements only what it needs. A route has one
//! observer; to give it several (metrics and an inspector, say), combine
//! them with [`Fanout`].
//!
//! Routes are named with [`VerifierBuilder::name`](crate::VerifierBuilder::name)
//! (default: the provider's name, such as `stripe`); an observer is told
//! about each route once, when its verifier is built
//! ([`Observer::on_route`]), so it can set up per-route state before the
//! first request.
//!
//! # What a record never holds
//!
//! Records hold only closed, configured or verified values: the route's
//! configured name, the provider, enums, numbers, durations, the label of
//! a configured secret, and the event type of a *verified* delivery. They
//! never hold a secret, a signature, a client address, a delivery id, a
//! header or any byte of the body, so an observer can export them (as
//! metric labels, say) without leaking what a client sent. The event type
//! of a verified delivery is chosen by the provider: map unknown ones to a
//! fixed value before using them as labels.
//!
//! The one exception is asked for: an observer whose
//! [`Observer::wants_request`] answers `true` (a development tool such as
//! the [`Inspector`](crate::inspect::Inspector) of the `inspect` feature)
//! gets the request as the client sent it in [`RequestRecord::request`]
//! (method, target, headers, and the body once read), which is
//! attacker-controlled and may carry signatures and tokens: such an
//! observer masks what it keeps. For every other observer the field is
//! `None` and the layer copies nothing.
//!
//! # Cost
//!
//! Without an observer the layer does nothing more than check that none
//! is installed: no clock read, no allocation. With one, it reads the
//! monotonic clock a few times per request (start, handler start and end,
//! finish) and allocates nothing for the record; the observer is called
//! on the request's task, so it must be quick (update counters, do not
//! block). Only an observer that [wants the request](Observer::wants_request)
//! costs more: a copy of the request's method, target and headers, and a
//! reference to its body's bytes.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use axum::{routing::post, Router};
//! use webhook_guard::observe::{Observer, Outcome, RequestRecord};
//! use webhook_guard::{Scheme, Verifier};
//!
//! #[derive(Default)]
//! struct Counts {
//!     processed: AtomicU64,
//!     rejected: AtomicU64,
//! }
//!
//! impl Observer for Counts {
//!     fn on_request(&self, record: &RequestRecord<'_>) {
//!         match record.outcome {
//!             Outcome::Processed => self.processed.fetch_add(1, Ordering::Relaxed),
//!             Outcome::Rejected(_) => self.rejected.fetch_add(1, Ordering::Relaxed),
//!             _ => 0,
//!         };
//!     }
//! }
//!
//! let counts = Arc::new(Counts::default());
//! let stripe = Verifier::builder(Scheme::stripe())
//!     .name("stripe-payments")
//!     .secret("whsec_test_secret")
//!     .observer(counts.clone())
//!     .build()?;
//! assert_eq!(stripe.name(), "stripe-payments");
//! let app: Router = Router::new().route("/webhooks/stripe", post(|| async { "ok" }).layer(stripe.layer()));
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};

use crate::dedupe::StoreErrorKind;
use crate::{Provider, RejectionKind};

/// Receives the guard's records. Called on the request's task (or a
/// queue worker's, or from the drop of a cancelled request's future):
/// keep it quick, never block and never panic. Every method does nothing
/// by default.
pub trait Observer: Send + Sync + 'static {
    /// A route was built ([`VerifierBuilder::build`](crate::VerifierBuilder::build)
    /// succeeded), before any of its requests.
    fn on_route(&self, route: &RouteRecord<'_>) {
        let _ = route;
    }

    /// A request that reached the verify layer was answered (or its
    /// future dropped). Exactly once per request.
    fn on_request(&self, record: &RequestRecord<'_>) {
        let _ = record;
    }

    /// Whether [`RequestRecord::request`] should carry the request itself
    /// (method, target, headers, body): asked when each request reaches
    /// the layer. Default `false`: the layer then copies nothing. Only
    /// development tools should answer `true`; see [the module
    /// docs](self).
    fn wants_request(&self) -> bool {
        false
    }

    /// The layer's dedupe step asked its store something.
    fn on_dedupe(&self, record: &DedupeRecord<'_>) {
        let _ = record;
    }

    /// The rate limiter decided a request, refunded one, or charged a
    /// failed authentication.
    fn on_rate_limit(&self, record: &RateLimitRecord) {
        let _ = record;
    }

    /// The fast-acknowledgement queue stored (or refused) a delivery, or
    /// finished a run of one.
    fn on_queue(&self, record: &QueueRecord<'_>) {
        let _ = record;
    }
}

impl fmt::Debug for dyn Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observer")
    }
}

/// Several observers on one route (metrics and an inspector, say): each
/// is told everything, in the order they were added. It
/// [wants the request](Observer::wants_request) when any of them does.
#[derive(Debug, Clone, Default)]
pub struct Fanout {
    observers: Vec<Arc<dyn Observer>>,
}

impl Fanout {
    /// No observer yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `observer`.
    #[must_use]
    pub fn with(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }
}

impl Observer for Fanout {
    fn on_route(&self, route: &RouteRecord<'_>) {
        self.observers.iter().for_each(|o| o.on_route(route));
    }

    fn on_request(&self, record: &RequestRecord<'_>) {
        for o in &self.observers {
            if o.wants_request() {
                o.on_request(record);
            } else {
                // What it did not ask for, it is not given.
                o.on_request(&RequestRecord {
                    request: None,
                    ..*record
                });
            }
        }
    }

    fn wants_request(&self) -> bool {
        self.observers.iter().any(|o| o.wants_request())
    }

    fn on_dedupe(&self, record: &DedupeRecord<'_>) {
        self.observers.iter().for_each(|o| o.on_dedupe(record));
    }

    fn on_rate_limit(&self, record: &RateLimitRecord) {
        self.observers.iter().for_each(|o| o.on_rate_limit(record));
    }

    fn on_queue(&self, record: &QueueRecord<'_>) {
        self.observers.iter().for_each(|o| o.on_queue(record));
    }
}

/// A route, told once when its verifier is built. Holds no secret: only
/// the labels given with [`Secret::labeled`](crate::Secret::labeled).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RouteRecord<'a> {
    /// The route's name ([`VerifierBuilder::name`](crate::VerifierBuilder::name)).
    pub route: &'a Arc<str>,
    /// The route's provider.
    pub provider: &'a Provider,
    /// The label of each configured secret, by index (`None` when the
    /// secret has no label).
    pub secret_labels: &'a [Option<Arc<str>>],
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Verified and handled: the handler answered below 400.
    Processed,
    /// Verified and stored by the [`AckQueue`](crate::queue::AckQueue),
    /// answered 202; the handler runs later (see [`QueueRecord`]).
    Accepted,
    /// Verified, and already processed: answered by the dedupe step, the
    /// handler did not run.
    Duplicate,
    /// Verified, and no [`EventRouter`](crate::dispatch::EventRouter)
    /// handler was registered for its event type.
    Ignored,
    /// A provider handshake answered by the layer (Meta's or X's `GET`,
    /// Slack's `url_verification`).
    Handshake,
    /// Refused, with why. A handler that answers 400 or more without a
    /// [`Rejection`](crate::Rejection) in its response counts as
    /// [`RejectionKind::HandlerError`] (the status is in
    /// [`RequestRecord::status`]).
    Rejected(RejectionKind),
    /// The response future was dropped before the layer answered: the
    /// client went away, or an outer timeout fired.
    Cancelled,
}

impl Outcome {
    /// A stable lowercase name: `processed`, `accepted`, `duplicate`,
    /// `ignored`, `handshake`, `rejected` or `cancelled`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::Handshake => "handshake",
            Self::Rejected(_) => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    /// The rejection's kind, for [`Outcome::Rejected`].
    pub const fn rejection(self) -> Option<RejectionKind> {
        match self {
            Self::Rejected(kind) => Some(kind),
            _ => None,
        }
    }
}

/// Which configured secret verified a delivery. Never the secret itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretMatch<'a> {
    /// Position of the secret, 0-based, in the order they were added.
    pub index: usize,
    /// Its label, if it was added with [`Secret::labeled`](crate::Secret::labeled).
    pub label: Option<&'a Arc<str>>,
}

/// How far a signed timestamp was from the receiver's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Skew {
    secs: i64,
}

impl Skew {
    /// From `now - timestamp`, in seconds.
    pub(crate) fn between(timestamp: i64, now: i64) -> Self {
        Self {
            secs: now.saturating_sub(timestamp),
        }
    }

    /// The clock minus the signed time, in seconds: positive when the
    /// timestamp is in the past (the usual transit delay), negative when
    /// it is in the future (the sender's clock is ahead).
    pub const fn secs(self) -> i64 {
        self.secs
    }

    /// Whether the signed time is after the receiver's clock.
    pub const fn is_future(self) -> bool {
        self.secs < 0
    }

    /// The size of the skew, whichever its direction.
    pub const fn magnitude(self) -> Duration {
        Duration::from_secs(self.secs.unsigned_abs())
    }
}

/// One request that reached the verify layer. See [the module
/// docs](self) for what it never holds.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestRecord<'a> {
    /// The route's name ([`VerifierBuilder::name`](crate::VerifierBuilder::name)).
    pub route: &'a Arc<str>,
    /// The route's provider.
    pub provider: &'a Provider,
    /// What became of the request.
    pub outcome: Outcome,
    /// The status the layer answered with (`None` for
    /// [`Outcome::Cancelled`]).
    pub status: Option<StatusCode>,
    /// The secret whose signature matched, once verified.
    pub secret: Option<SecretMatch<'a>>,
    /// For a scheme that signs a timestamp: the skew of a verified
    /// delivery, or of one refused with
    /// [`RejectionKind::TimestampOutOfTolerance`].
    pub skew: Option<Skew>,
    /// The body's size in bytes, when it was read to its end.
    pub body_bytes: Option<usize>,
    /// The whole time in the layer, from the request to its answer,
    /// the handler included.
    pub layer_time: Duration,
    /// The time in the inner service (the handler or the queue's
    /// enqueue), when the request reached it.
    pub handler_time: Option<Duration>,
    /// The verified delivery's event type as the provider named it
    /// ([`VerifiedWebhook::event_type`](crate::VerifiedWebhook::event_type));
    /// `None` before verification. Provider-chosen: map unknown values to
    /// a fixed one before using it as a metric label. When the event type
    /// lives in a JSON body that nothing parsed, it is read from the
    /// body's top level without building the document (which can differ
    /// from `event_type()` only for a body with duplicate keys nested
    /// below the top level).
    pub event_type: Option<&'a str>,
    /// Diagnostic hints about a refused delivery, on a route with
    /// [`Diagnostics`](crate::hints::Diagnostics) (empty when there are
    /// none). Each has a stable [`code`](crate::hints::Hint::code) and a
    /// sentence for a person; neither holds a secret or request bytes.
    pub hints: &'a [crate::hints::Hint],
    /// The request as the client sent it, only for an observer whose
    /// [`Observer::wants_request`] answered `true`; `None` otherwise.
    pub request: Option<RequestDetails<'a>>,
}

/// The request behind a [`RequestRecord`], for an observer that
/// [asked for it](Observer::wants_request). Everything here is what the
/// client sent (attacker-controlled), signatures and tokens included:
/// mask before keeping or showing it. Its `Debug` shows only the method
/// and sizes.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct RequestDetails<'a> {
    /// The request's method.
    pub method: &'a Method,
    /// The request's target (path and query).
    pub uri: &'a Uri,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The body's bytes, when the layer read it to its end (before or
    /// after verification: a tampered body is here too).
    pub body: Option<&'a Bytes>,
}

impl fmt::Debug for RequestDetails<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestDetails")
            .field("method", self.method)
            .field("headers", &self.headers.len())
            .field("body_bytes", &self.body.map(Bytes::len))
            .finish()
    }
}

impl RequestRecord<'_> {
    /// The time in the layer outside the handler.
    pub fn own_time(&self) -> Duration {
        self.layer_time
            .saturating_sub(self.handler_time.unwrap_or(Duration::ZERO))
    }
}

/// A dedupe store operation made by the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DedupeOp {
    /// Claiming a verified delivery's key before the handler.
    Claim,
    /// Marking it processed after the handler succeeded.
    Complete,
    /// Releasing it after the handler failed.
    Release,
}

/// What a dedupe store operation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DedupeResult {
    /// The claim was acquired: the handler runs.
    Acquired,
    /// The key was already processed: a duplicate.
    Duplicate,
    /// Another request holds the claim.
    InProgress,
    /// A complete or a release succeeded.
    Done,
    /// The store failed.
    Error(StoreErrorKind),
}

/// One dedupe store operation. Holds no key and no delivery id.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct DedupeRecord<'a> {
    /// The route's name.
    pub route: &'a Arc<str>,
    /// The dedupe's namespace (configured).
    pub namespace: &'a str,
    /// Which operation.
    pub op: DedupeOp,
    /// What the store answered.
    pub result: DedupeResult,
    /// How long the store took.
    pub latency: Duration,
}

/// A rate limiter event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateLimitEvent {
    /// A request was let through (and charged).
    Allowed,
    /// A request was refused: the client is over its quota (429
    /// `rate_limited`).
    Limited,
    /// A request was refused: the client failed authentication too often
    /// (429 `too_many_failed_authentications`).
    LockedOut,
    /// A fresh verified delivery's charge was given back.
    Refunded,
    /// A failed authentication was charged to a client.
    FailedAuthentication,
}

/// One rate limiter event. Holds no client address; the number of
/// clients tracked is [`RateLimiter::tracked_clients`](crate::RateLimiter::tracked_clients)
/// (it takes a lock per shard, so sample it rather than reading it per
/// request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitRecord {
    /// What happened.
    pub event: RateLimitEvent,
    /// Whether the client is in the limiter's sender networks (their
    /// quota); `false` for lockouts and failed authentications.
    pub sender: bool,
}

/// A queue event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueueEvent {
    /// A verified delivery was stored (answered 202).
    Enqueued,
    /// The storage was full (503 `queue_full`).
    Full,
    /// The storage could not be written (503 `queue_unavailable`).
    Unavailable,
    /// The queue is shutting down (503 `shutting_down`).
    ShuttingDown,
    /// A run succeeded: the delivery is done.
    Done,
    /// A run failed and the delivery will run again.
    Retried,
    /// A run failed for the last time: the delivery is a dead letter.
    DeadLetter,
}

/// One queue event. Holds no delivery id and no body.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct QueueRecord<'a> {
    /// What happened.
    pub event: QueueEvent,
    /// The delivery's provider.
    pub provider: &'a Provider,
    /// The delivery's verified event type (provider-chosen: map unknown
    /// values to a fixed one before using it as a label).
    pub event_type: Option<&'a str>,
    /// For a store attempt: how long the storage took.
    pub storage_latency: Option<Duration>,
    /// For a run: which run it was (1 for the first).
    pub attempt: Option<u32>,
    /// For a run: how long the handler took.
    pub run_time: Option<Duration>,
    /// For a run: how long since the delivery was received, in whole
    /// seconds (the storage keeps the receipt time in seconds).
    pub since_received: Option<Duration>,
    /// For a run: the handler's status.
    pub status: Option<StatusCode>,
}

/// Put in a verified request's extensions by the layer when the route has
/// an observer: the inner services then mark their answers (and only
/// then, so a route without an observer pays nothing).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed;

/// How a verified request was answered by the inner services, for the
/// layer's record. Zero-sized markers, so putting one in a response's
/// extensions allocates nothing for the value itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answered {
    /// The dedupe step's duplicate answer.
    Duplicate,
    /// The queue's 202.
    Accepted,
    /// The event router's `ignored` answer.
    Ignored,
}

#[derive(Debug, Clone, Copy)]
struct DuplicateMark;
#[derive(Debug, Clone, Copy)]
struct AcceptedMark;
#[derive(Debug, Clone, Copy)]
struct IgnoredMark;

/// Marks `response` with how it was answered.
pub(crate) fn mark(mut response: axum::response::Response, answered: Answered) -> axum::response::Response {
    let extensions = response.extensions_mut();
    match answered {
        Answered::Duplicate => extensions.insert(DuplicateMark).is_some(),
        Answered::Accepted => extensions.insert(AcceptedMark).is_some(),
        Answered::Ignored => extensions.insert(IgnoredMark).is_some(),
    };
    response
}

/// Whether the layer asked for marks on this request's answer.
pub(crate) fn is_observed(extensions: &http::Extensions) -> bool {
    extensions.get::<Observed>().is_some()
}

/// The outcome of a verified request that reached the inner service, read
/// from its response.
pub(crate) fn outcome_of(response: &axum::response::Response) -> Outcome {
    let extensions = response.extensions();
    if let Some(rejection) = extensions.get::<crate::Rejection>() {
        return Outcome::Rejected(rejection.kind());
    }
    if extensions.get::<DuplicateMark>().is_some() {
        Outcome::Duplicate
    } else if extensions.get::<AcceptedMark>().is_some() {
        Outcome::Accepted
    } else if extensions.get::<IgnoredMark>().is_some() {
        Outcome::Ignored
    } else if response.status().as_u16() >= 400 {
        Outcome::Rejected(RejectionKind::HandlerError)
    } else {
        Outcome::Processed
    }
}
