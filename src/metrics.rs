//! The guard's metrics on the [`metrics`](https://docs.rs/metrics/0.24)
//! facade (feature `metrics`), for whichever exporter the application
//! already uses (`metrics-exporter-prometheus`, an OpenTelemetry bridge,
//! ...).
//!
//! [`MetricsObserver`] is an [`Observer`]: give it to every route
//! ([`VerifierBuilder::observer`](crate::VerifierBuilder::observer)), and
//! to the [`RateLimiter`](crate::rate_limit::RateLimiterBuilder::observer)
//! and [`AckQueue`](crate::queue::AckQueueBuilder::observer) if you use
//! them (a route's dedupe reports to the route's observer by itself).
//! It emits through the `metrics` macros at each call, which look the
//! recorder up every time: an application may install its recorder
//! before or after building its verifiers.
//!
//! ```
//! use axum::{routing::post, Router};
//! use webhook_guard::metrics::MetricsObserver;
//! use webhook_guard::{Scheme, Secret, Verifier};
//!
//! // The event types your handlers know; any other is counted as `_other`.
//! let metrics = MetricsObserver::builder()
//!     .event_types(["invoice.paid", "invoice.payment_failed"])
//!     .build();
//! let stripe = Verifier::builder(Scheme::stripe())
//!     .name("stripe-payments")
//!     .secret(Secret::labeled("2026-03", "whsec_test_secret"))
//!     .observer(metrics.clone())
//!     .build()?;
//! let app: Router = Router::new().route("/webhooks/stripe", post(|| async { "ok" }).layer(stripe.layer()));
//! // Then install the recorder of your exporter, before or after this.
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```
//!
//! # Sampled values
//!
//! Three things are not events but states, and are set when the
//! application asks: call these every few seconds (each is cheap, but the
//! limiter's count takes a lock per shard, so not per request):
//!
//! - [`MetricsObserver::publish`]: the help texts and each route's
//!   last-verified-delivery time again (see below why);
//! - [`MetricsObserver::sample_rate_limiter`]: the clients a limiter tracks;
//! - [`MetricsObserver::sample_queue`]: a queue's depth and capacity.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use webhook_guard::metrics::MetricsObserver;
//! use webhook_guard::queue::AckQueue;
//! use webhook_guard::RateLimiter;
//!
//! /// Spawn this once: `tokio::spawn(sample(metrics, limiter, queue, 1024))`.
//! async fn sample(metrics: Arc<MetricsObserver>, limiter: RateLimiter, queue: AckQueue, capacity: usize) {
//!     let mut tick = tokio::time::interval(Duration::from_secs(10));
//!     loop {
//!         tick.tick().await;
//!         metrics.publish();
//!         metrics.sample_rate_limiter(&limiter);
//!         // An error leaves the depth as it was; the queue's own
//!         // `queue_unavailable` events tell that the storage fails.
//!         let _ = metrics.sample_queue(&queue, capacity).await;
//!     }
//! }
//! ```
//!
//! # The last verified delivery
//!
//! `webhook_guard_last_verified_delivery_timestamp_seconds{route}` is set
//! to **0** when the route is built ([`Observer::on_route`]), not to the
//! build time, and to the Unix time of each verified delivery after that.
//! With 0, an alert such as
//! `time() - webhook_guard_last_verified_delivery_timestamp_seconds > 3600`
//! fires after a restart that no delivery followed, which is what it is
//! for: a provider that stopped sending (or a secret that stopped
//! matching) is found even across restarts. The build time would hide
//! such silence for one more alert window after each restart. The gauge
//! exists from the build on, so the alert also fires for a route that
//! never got a delivery (use `absent()` only for a route you expect and
//! do not see at all).
//!
//! A verified delivery is one answered `processed`, `accepted`,
//! `duplicate` or `ignored`: its signature matched and it was not refused
//! afterwards (a duplicate is the provider retrying a delivery that
//! already verified; an ignored one was verified and has no handler).
//!
//! A recorder installed after the routes were built misses the 0 set at
//! build time; [`MetricsObserver::publish`] sets every route's gauge again
//! (0, or the time of its last verified delivery), so call it once the
//! recorder is installed, or periodically as above.
//!
//! # Metrics
//!
//! Every metric, its type and labels. Durations are in seconds, sizes in
//! bytes; histograms get their buckets from the exporter.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `webhook_guard_requests_total` | counter | `route`, `provider`, `outcome` | Requests that reached the verify layer, by [`Outcome::name`]: `processed`, `accepted`, `duplicate`, `ignored`, `handshake`, `rejected`, `cancelled`. |
//! | `webhook_guard_rejections_total` | counter | `route`, `provider`, `reason` | Rejected requests by [`RejectionKind::reason`](crate::RejectionKind::reason) (`signature_mismatch`, `timestamp_out_of_tolerance`, `handler_error`, ...). |
//! | `webhook_guard_secret_matches_total` | counter | `route`, `secret` | Verified deliveries by the secret that matched: its label ([`Secret::labeled`](crate::Secret::labeled)), or its 0-based index (`"0"`, `"1"`) when it has none. When the old secret's count stops growing after a rotation, it can be removed. |
//! | `webhook_guard_request_duration_seconds` | histogram | `route`, `provider`, `outcome` | Time in the verify layer, handler included, from the request to the answer. |
//! | `webhook_guard_handler_duration_seconds` | histogram | `route`, `provider` | Time in the inner service (the handler, or the queue's enqueue), for requests that reached it. |
//! | `webhook_guard_body_size_bytes` | histogram | `route`, `provider` | Size of each body read to its end. |
//! | `webhook_guard_timestamp_skew_seconds` | histogram | `route`, `provider`, `direction` | Distance between the signed timestamp and the clock, for schemes that sign one, of verified deliveries and of those refused as `timestamp_out_of_tolerance`. `direction` is `past` (the usual transit delay; a zero skew counts here) or `future` (the sender's clock is ahead). |
//! | `webhook_guard_verification_hints_total` | counter | `route`, `hint` | [Diagnostic hints](crate::hints) found for refused requests, on routes with [`Diagnostics`](crate::hints::Diagnostics), by [`Hint::code`](crate::hints::Hint::code): `body_line_endings_changed`, `trailing_newline`, `bom_stripped`, `bom_added`, `secret_quoted`, `secret_trailing_newline`, `secret_of_other_route`, `standard_secret_encoding`, `timestamp_in_milliseconds`, `clock_skew`. Sampled: at most the handle's per-second cap of requests are examined. |
//! | `webhook_guard_events_total` | counter | `route`, `provider`, `event_type`, `result` | Verified deliveries by event type and result (typed dispatch). `event_type` is one of the registered types ([`MetricsObserverBuilder::event_types`]) or `_other`; `result` is the outcome name, or for a rejected delivery its reason (`invalid_payload`, `schema_violation`, `handler_error`, ...). |
//! | `webhook_guard_last_verified_delivery_timestamp_seconds` | gauge | `route` | Unix time of the route's last verified delivery; 0 from the build until the first (see above). |
//! | `webhook_guard_dedupe_operations_total` | counter | `route`, `op`, `result` | Dedupe store operations: `op` is `claim`, `complete` or `release`; `result` is `acquired`, `duplicate`, `in_progress`, `done`, or for a failed store `unavailable` or `full`. |
//! | `webhook_guard_dedupe_store_duration_seconds` | histogram | `route`, `op` | Time the dedupe store took per operation. |
//! | `webhook_guard_rate_limit_events_total` | counter | `event`, `class` | Rate limiter decisions and charges: `event` is `allowed`, `limited`, `locked_out` (refused: too many failed authentications), `refunded` (a verified delivery's charge given back) or `failed_authentication` (a failure charged); `class` is `sender` for clients in the limiter's sender networks, else `other`. |
//! | `webhook_guard_rate_limit_tracked_clients` | gauge | | Clients the limiter's quotas track, set by [`MetricsObserver::sample_rate_limiter`]. |
//! | `webhook_guard_queue_events_total` | counter | `provider`, `event` | Fast-acknowledgement queue events: `enqueued`, `full`, `unavailable`, `shutting_down` (a store attempt), `done`, `retried`, `dead_letter` (a run). |
//! | `webhook_guard_queue_store_duration_seconds` | histogram | `provider` | Time the queue's storage took to store (or refuse) a delivery. |
//! | `webhook_guard_queue_wait_seconds` | histogram | `provider` | For each run: time since the delivery was received, in whole seconds (the storage keeps the receipt time in seconds). |
//! | `webhook_guard_queue_run_duration_seconds` | histogram | `provider` | Time the handler took for each run. |
//! | `webhook_guard_queue_depth` | gauge | | Deliveries stored and not done (waiting, delayed or running), set by [`MetricsObserver::sample_queue`]. |
//! | `webhook_guard_queue_capacity` | gauge | | The queue's capacity as given to [`MetricsObserver::sample_queue`]. |
//!
//! # Labels
//!
//! Every label value comes from a closed set: configuration (route names,
//! custom provider names, secret labels or indexes, the registered event
//! types), or the crate's own names (outcomes, reasons, hint codes,
//! operations, events, `past`/`future`, `sender`/`other`). No label holds a client
//! address, a delivery id, a signature, a secret, or any other value a
//! client chose: an unregistered event type is `_other`, and nothing is
//! labeled before verification except by configuration. The number of
//! series is therefore bounded by the configuration, whatever clients
//! send.
//!
//! # Help texts
//!
//! [`MetricsObserver::describe`] registers each metric's help text and
//! unit with the current recorder. The builder calls it, and so does
//! [`MetricsObserver::publish`], so a recorder installed later gets them
//! too; describing again only replaces the same text.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, SharedString, Unit,
};

use crate::dedupe::{StoreError, StoreErrorKind};
use crate::observe::{
    DedupeOp, DedupeRecord, DedupeResult, Observer, Outcome, QueueEvent, QueueRecord, RateLimitEvent,
    RateLimitRecord, RequestRecord, RouteRecord, SecretMatch,
};
use crate::queue::AckQueue;
use crate::{Clock, Provider, RateLimiter, SystemClock};

const REQUESTS: &str = "webhook_guard_requests_total";
const REJECTIONS: &str = "webhook_guard_rejections_total";
const SECRET_MATCHES: &str = "webhook_guard_secret_matches_total";
const REQUEST_DURATION: &str = "webhook_guard_request_duration_seconds";
const HANDLER_DURATION: &str = "webhook_guard_handler_duration_seconds";
const BODY_SIZE: &str = "webhook_guard_body_size_bytes";
const SKEW: &str = "webhook_guard_timestamp_skew_seconds";
const HINTS: &str = "webhook_guard_verification_hints_total";
const EVENTS: &str = "webhook_guard_events_total";
const LAST_VERIFIED: &str = "webhook_guard_last_verified_delivery_timestamp_seconds";
const DEDUPE_OPS: &str = "webhook_guard_dedupe_operations_total";
const DEDUPE_DURATION: &str = "webhook_guard_dedupe_store_duration_seconds";
const RATE_LIMIT_EVENTS: &str = "webhook_guard_rate_limit_events_total";
const TRACKED_CLIENTS: &str = "webhook_guard_rate_limit_tracked_clients";
const QUEUE_EVENTS: &str = "webhook_guard_queue_events_total";
const QUEUE_STORE_DURATION: &str = "webhook_guard_queue_store_duration_seconds";
const QUEUE_WAIT: &str = "webhook_guard_queue_wait_seconds";
const QUEUE_RUN_DURATION: &str = "webhook_guard_queue_run_duration_seconds";
const QUEUE_DEPTH: &str = "webhook_guard_queue_depth";
const QUEUE_CAPACITY: &str = "webhook_guard_queue_capacity";

/// The label of an event type that is not registered.
pub const OTHER_EVENT_TYPE: &str = "_other";

/// Index labels of unlabeled secrets, without an allocation for the usual
/// few.
const INDEXES: [&str; 8] = ["0", "1", "2", "3", "4", "5", "6", "7"];

/// An [`Observer`] that turns the guard's records into metrics on the
/// `metrics` facade. See the [module docs](self) for the metrics and how
/// to install it.
pub struct MetricsObserver {
    event_types: HashSet<Arc<str>>,
    clock: Arc<dyn Clock>,
    /// Each route's last verified delivery (Unix seconds, 0 for none).
    routes: RwLock<HashMap<Arc<str>, AtomicI64>>,
}

/// Builder for [`MetricsObserver`].
#[must_use]
pub struct MetricsObserverBuilder {
    event_types: HashSet<Arc<str>>,
    clock: Option<Arc<dyn Clock>>,
}

impl MetricsObserver {
    /// Starts configuring an observer: no registered event type (every
    /// event type is `_other`), the system clock.
    pub fn builder() -> MetricsObserverBuilder {
        MetricsObserverBuilder {
            event_types: HashSet::new(),
            clock: None,
        }
    }

    /// Registers every metric's help text and unit with the current
    /// recorder. Harmless to repeat: a recorder keeps the last text.
    pub fn describe() {
        describe_counter!(
            REQUESTS,
            Unit::Count,
            "Requests that reached the webhook verify layer, by outcome."
        );
        describe_counter!(REJECTIONS, Unit::Count, "Rejected webhook requests, by reason.");
        describe_counter!(
            SECRET_MATCHES,
            Unit::Count,
            "Verified webhook deliveries, by the configured secret that matched (label or index)."
        );
        describe_histogram!(
            REQUEST_DURATION,
            Unit::Seconds,
            "Time in the webhook verify layer, handler included."
        );
        describe_histogram!(
            HANDLER_DURATION,
            Unit::Seconds,
            "Time in the webhook handler (or the queue's enqueue)."
        );
        describe_histogram!(
            BODY_SIZE,
            Unit::Bytes,
            "Size of webhook request bodies read to their end."
        );
        describe_histogram!(
            SKEW,
            Unit::Seconds,
            "Distance between a webhook's signed timestamp and the clock, by direction (past or future)."
        );
        describe_counter!(
            HINTS,
            Unit::Count,
            "Diagnostic hints found for failed webhook verifications, by hint code."
        );
        describe_counter!(
            EVENTS,
            Unit::Count,
            "Verified webhook deliveries by registered event type (else _other) and result."
        );
        describe_gauge!(
            LAST_VERIFIED,
            Unit::Seconds,
            "Unix time of the route's last verified webhook delivery; 0 since the route was built without one."
        );
        describe_counter!(
            DEDUPE_OPS,
            Unit::Count,
            "Webhook dedupe store operations, by operation and result."
        );
        describe_histogram!(
            DEDUPE_DURATION,
            Unit::Seconds,
            "Time the webhook dedupe store took, by operation."
        );
        describe_counter!(
            RATE_LIMIT_EVENTS,
            Unit::Count,
            "Webhook rate limiter decisions and charges, by event and client class."
        );
        describe_gauge!(
            TRACKED_CLIENTS,
            Unit::Count,
            "Clients the webhook rate limiter tracks."
        );
        describe_counter!(
            QUEUE_EVENTS,
            Unit::Count,
            "Webhook queue store attempts and runs, by event."
        );
        describe_histogram!(
            QUEUE_STORE_DURATION,
            Unit::Seconds,
            "Time the webhook queue's storage took to store a delivery."
        );
        describe_histogram!(
            QUEUE_WAIT,
            Unit::Seconds,
            "Time from a webhook delivery's receipt to its run (whole seconds)."
        );
        describe_histogram!(
            QUEUE_RUN_DURATION,
            Unit::Seconds,
            "Time the queued webhook handler took per run."
        );
        describe_gauge!(
            QUEUE_DEPTH,
            Unit::Count,
            "Webhook deliveries stored in the queue and not done."
        );
        describe_gauge!(QUEUE_CAPACITY, Unit::Count, "Capacity of the webhook queue.");
    }

    /// Sets the help texts and every known route's
    /// `webhook_guard_last_verified_delivery_timestamp_seconds` again (0,
    /// or the time of its last verified delivery), for a recorder
    /// installed after the routes were built. Call it once the recorder
    /// is installed, or periodically.
    pub fn publish(&self) {
        Self::describe();
        let routes = self
            .routes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (route, last) in routes.iter() {
            let at = last.load(Ordering::Relaxed);
            gauge!(LAST_VERIFIED, "route" => SharedString::from(Arc::clone(route))).set(at as f64);
        }
    }

    /// Sets `webhook_guard_rate_limit_tracked_clients` from `limiter`.
    /// Takes a lock per shard of the limiter: call it periodically, not
    /// per request.
    pub fn sample_rate_limiter(&self, limiter: &RateLimiter) {
        gauge!(TRACKED_CLIENTS).set(limiter.tracked_clients() as f64);
    }

    /// Sets `webhook_guard_queue_depth` from `queue` and
    /// `webhook_guard_queue_capacity` to `capacity` (the capacity given to
    /// the queue or its storage), and returns the depth.
    ///
    /// # Errors
    ///
    /// The storage's error when it cannot tell its depth; the depth gauge
    /// is then left as it was (the capacity is still set).
    pub async fn sample_queue(&self, queue: &AckQueue, capacity: usize) -> Result<usize, StoreError> {
        gauge!(QUEUE_CAPACITY).set(capacity as f64);
        let depth = queue.stored().await?;
        gauge!(QUEUE_DEPTH).set(depth as f64);
        Ok(depth)
    }

    /// The event type's label: itself when registered, else `_other`.
    fn event_label(&self, event_type: &str) -> SharedString {
        match self.event_types.get(event_type) {
            Some(known) => SharedString::from(Arc::clone(known)),
            None => SharedString::const_str(OTHER_EVENT_TYPE),
        }
    }

    /// Records a verified delivery of `route` now.
    fn verified(&self, route: &Arc<str>, label: SharedString) {
        let now = self.clock.now_unix();
        {
            let routes = self
                .routes
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(last) = routes.get(route) {
                last.fetch_max(now, Ordering::Relaxed);
            }
        }
        gauge!(LAST_VERIFIED, "route" => label).set(now as f64);
    }
}

impl fmt::Debug for MetricsObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes = self.routes.read().map(|r| r.len()).unwrap_or(0);
        f.debug_struct("MetricsObserver")
            .field("event_types", &self.event_types.len())
            .field("routes", &routes)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for MetricsObserverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsObserverBuilder")
            .field("event_types", &self.event_types.len())
            .finish_non_exhaustive()
    }
}

impl MetricsObserverBuilder {
    /// Registers event types: a verified delivery of one of these is
    /// labeled with it in `webhook_guard_events_total`, any other with
    /// `_other`. Adds to those already registered. Event types are chosen
    /// by the provider: register only those you expect, so a sender cannot
    /// grow the number of series.
    pub fn event_types<I, S>(mut self, event_types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.event_types.extend(event_types.into_iter().map(Into::into));
        self
    }

    /// The clock that times verified deliveries (default: the system
    /// clock); for tests.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Builds the observer and describes every metric to the current
    /// recorder (see [`MetricsObserver::describe`]).
    pub fn build(self) -> Arc<MetricsObserver> {
        MetricsObserver::describe();
        Arc::new(MetricsObserver {
            event_types: self.event_types,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            routes: RwLock::new(HashMap::new()),
        })
    }
}

/// The provider's label, without an allocation for the built-in ones.
fn provider_label(provider: &Provider) -> SharedString {
    match (provider, provider.static_name()) {
        (_, Some(name)) => SharedString::const_str(name),
        (Provider::Custom(name), None) => SharedString::from(Arc::clone(name)),
        (other, None) => SharedString::from(other.name().to_owned()),
    }
}

/// The matched secret's label: its configured label, else its index.
fn secret_label(secret: SecretMatch<'_>) -> SharedString {
    match (secret.label, INDEXES.get(secret.index)) {
        (Some(label), _) => SharedString::from(Arc::clone(label)),
        (None, Some(index)) => SharedString::const_str(index),
        (None, None) => SharedString::from_owned(secret.index.to_string()),
    }
}

/// The `result` label of `webhook_guard_events_total`.
const fn result_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Rejected(kind) => kind.reason(),
        other => other.name(),
    }
}

/// Whether `outcome` is a verified delivery that was not refused.
const fn is_verified_delivery(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Processed | Outcome::Accepted | Outcome::Duplicate | Outcome::Ignored
    )
}

const fn dedupe_op(op: DedupeOp) -> &'static str {
    match op {
        DedupeOp::Claim => "claim",
        DedupeOp::Complete => "complete",
        DedupeOp::Release => "release",
    }
}

const fn dedupe_result(result: DedupeResult) -> &'static str {
    match result {
        DedupeResult::Acquired => "acquired",
        DedupeResult::Duplicate => "duplicate",
        DedupeResult::InProgress => "in_progress",
        DedupeResult::Done => "done",
        DedupeResult::Error(StoreErrorKind::Unavailable) => "unavailable",
        DedupeResult::Error(StoreErrorKind::Full) => "full",
    }
}

const fn rate_limit_event(event: RateLimitEvent) -> &'static str {
    match event {
        RateLimitEvent::Allowed => "allowed",
        RateLimitEvent::Limited => "limited",
        RateLimitEvent::LockedOut => "locked_out",
        RateLimitEvent::Refunded => "refunded",
        RateLimitEvent::FailedAuthentication => "failed_authentication",
    }
}

const fn queue_event(event: QueueEvent) -> &'static str {
    match event {
        QueueEvent::Enqueued => "enqueued",
        QueueEvent::Full => "full",
        QueueEvent::Unavailable => "unavailable",
        QueueEvent::ShuttingDown => "shutting_down",
        QueueEvent::Done => "done",
        QueueEvent::Retried => "retried",
        QueueEvent::DeadLetter => "dead_letter",
    }
}

impl Observer for MetricsObserver {
    fn on_route(&self, route: &RouteRecord<'_>) {
        let at = {
            let mut routes = self
                .routes
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            routes
                .entry(Arc::clone(route.route))
                .or_insert_with(|| AtomicI64::new(0))
                .load(Ordering::Relaxed)
        };
        gauge!(LAST_VERIFIED, "route" => SharedString::from(Arc::clone(route.route))).set(at as f64);
    }

    fn on_request(&self, record: &RequestRecord<'_>) {
        let route = SharedString::from(Arc::clone(record.route));
        let provider = provider_label(record.provider);
        let outcome = record.outcome.name();
        counter!(REQUESTS, "route" => route.clone(), "provider" => provider.clone(), "outcome" => outcome)
            .increment(1);
        histogram!(REQUEST_DURATION, "route" => route.clone(), "provider" => provider.clone(), "outcome" => outcome)
            .record(record.layer_time.as_secs_f64());
        if let Some(kind) = record.outcome.rejection() {
            counter!(REJECTIONS, "route" => route.clone(), "provider" => provider.clone(), "reason" => kind.reason())
                .increment(1);
        }
        if let Some(secret) = record.secret {
            counter!(SECRET_MATCHES, "route" => route.clone(), "secret" => secret_label(secret)).increment(1);
        }
        if let Some(time) = record.handler_time {
            histogram!(HANDLER_DURATION, "route" => route.clone(), "provider" => provider.clone())
                .record(time.as_secs_f64());
        }
        if let Some(bytes) = record.body_bytes {
            histogram!(BODY_SIZE, "route" => route.clone(), "provider" => provider.clone())
                .record(bytes as f64);
        }
        if let Some(skew) = record.skew {
            let direction = if skew.is_future() { "future" } else { "past" };
            histogram!(SKEW, "route" => route.clone(), "provider" => provider.clone(), "direction" => direction)
                .record(skew.magnitude().as_secs_f64());
        }
        for hint in record.hints {
            counter!(HINTS, "route" => route.clone(), "hint" => hint.code()).increment(1);
        }
        if let Some(event_type) = record.event_type {
            counter!(
                EVENTS,
                "route" => route.clone(),
                "provider" => provider,
                "event_type" => self.event_label(event_type),
                "result" => result_label(record.outcome)
            )
            .increment(1);
        }
        if is_verified_delivery(record.outcome) {
            self.verified(record.route, route);
        }
    }

    fn on_dedupe(&self, record: &DedupeRecord<'_>) {
        let route = SharedString::from(Arc::clone(record.route));
        let op = dedupe_op(record.op);
        counter!(DEDUPE_OPS, "route" => route.clone(), "op" => op, "result" => dedupe_result(record.result))
            .increment(1);
        histogram!(DEDUPE_DURATION, "route" => route, "op" => op).record(record.latency.as_secs_f64());
    }

    fn on_rate_limit(&self, record: &RateLimitRecord) {
        let class = if record.sender { "sender" } else { "other" };
        counter!(RATE_LIMIT_EVENTS, "event" => rate_limit_event(record.event), "class" => class).increment(1);
    }

    fn on_queue(&self, record: &QueueRecord<'_>) {
        let provider = provider_label(record.provider);
        counter!(QUEUE_EVENTS, "provider" => provider.clone(), "event" => queue_event(record.event))
            .increment(1);
        if let Some(latency) = record.storage_latency {
            histogram!(QUEUE_STORE_DURATION, "provider" => provider.clone()).record(latency.as_secs_f64());
        }
        if let Some(wait) = record.since_received {
            histogram!(QUEUE_WAIT, "provider" => provider.clone()).record(wait.as_secs_f64());
        }
        if let Some(run) = record.run_time {
            histogram!(QUEUE_RUN_DURATION, "provider" => provider).record(run.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_labels_are_the_provider_names() {
        for provider in [
            Provider::Stripe,
            Provider::GitHub,
            Provider::StandardWebhooks,
            Provider::Slack,
            Provider::Shopify,
            Provider::Meta,
            Provider::X,
            Provider::Custom(Arc::from("acme")),
        ] {
            assert_eq!(&*provider_label(&provider), provider.name());
        }
    }

    #[test]
    fn unlabeled_secrets_are_labeled_by_index() {
        for index in [0usize, 1, 7, 8, 12] {
            let label = secret_label(SecretMatch { index, label: None });
            assert_eq!(&*label, index.to_string());
        }
    }
}
