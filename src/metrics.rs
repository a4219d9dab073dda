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
//! It registers each series with the current recorder the first time it
//! is needed and keeps the handle, so a request costs a few atomic
//! updates and no registry lookups. The handles belong to the recorder
//! they came from: when the recorder in use changes (one installed later,
//! or a thread's local recorder), the observer registers its series with
//! the new one. An application may therefore install its recorder before
//! or after building its verifiers.
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
//! | `webhook_guard_rate_limit_shared_fallback` | gauge | | For a limiter shared through Redis (feature `redis`): 1 while Redis is unreachable and its fallback applies, else 0; set by [`MetricsObserver::sample_rate_limiter`], absent for a local limiter. |
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
use std::sync::{Arc, OnceLock, RwLock};

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Gauge,
    Histogram, SharedString, Unit,
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
#[cfg(feature = "redis")]
const SHARED_FALLBACK: &str = "webhook_guard_rate_limit_shared_fallback";
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
    routes: RwLock<HashMap<Arc<str>, Arc<AtomicI64>>>,
    /// Registered handles per route, by the address of the route's name
    /// (each entry holds the name, so the address is not reused while
    /// the entry lives).
    route_handles: RwLock<FastMap<usize, Arc<RouteHandles>>>,
    /// Registered dedupe handles per route, keyed like `route_handles`.
    dedupe_handles: RwLock<FastMap<usize, Arc<DedupeHandles>>>,
    /// The rate limiter's counters.
    rate_handles: RwLock<Option<Arc<RateHandles>>>,
    /// The queue's handles per provider name.
    queue_handles: RwLock<HashMap<String, Arc<QueueHandles>>>,
}

/// The address of the recorder the `metrics` macros would use on this
/// thread now: handles registered with another recorder are not used.
fn recorder_id() -> usize {
    ::metrics::with_recorder(|recorder| std::ptr::from_ref(recorder).cast::<()>() as usize)
}

/// A multiply-rotate hasher for the handle caches: their keys are
/// addresses and small numbers from closed sets (never client input), so
/// a hash that resists flooding is not needed, and SipHash would be most
/// of a lookup's cost.
#[derive(Default, Clone, Copy)]
struct FastHash(u64);

impl std::hash::Hasher for FastHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHash>>;

/// A handle registered on first use.
struct Slot<H>(OnceLock<H>);

impl<H: Clone> Slot<H> {
    const fn new() -> Self {
        Self(OnceLock::new())
    }

    fn get(&self, register: impl FnOnce() -> H) -> &H {
        self.0.get_or_init(register)
    }
}

fn slots<H: Clone, const N: usize>() -> [Slot<H>; N] {
    std::array::from_fn(|_| Slot::new())
}

/// Handles of series whose labels are not all known in advance, by a
/// small key.
struct Keyed<K, H>(RwLock<FastMap<K, H>>);

impl<K: std::hash::Hash + Eq, H: Clone> Keyed<K, H> {
    fn new() -> Self {
        Self(RwLock::new(FastMap::default()))
    }

    fn with(&self, key: K, register: impl FnOnce() -> H, use_it: impl FnOnce(&H)) {
        {
            let map = self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(handle) = map.get(&key) {
                use_it(handle);
                return;
            }
        }
        let handle = register();
        use_it(&handle);
        let mut map = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A bound on what a misbehaving caller could grow (every key comes
        // from a closed set; this is only a backstop).
        if map.len() < 4096 {
            map.entry(key).or_insert(handle);
        }
    }
}

/// Number of [`Outcome`] names.
const OUTCOMES: usize = 7;
/// Rejection kinds with a cached counter (the rest register each time).
const KINDS: usize = 48;
/// Secret indexes with a cached counter (the rest register each time).
const SECRETS: usize = 8;

const fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Processed => 0,
        Outcome::Accepted => 1,
        Outcome::Duplicate => 2,
        Outcome::Ignored => 3,
        Outcome::Handshake => 4,
        Outcome::Rejected(_) => 5,
        Outcome::Cancelled => 6,
    }
}

/// The result label's key in the events counter: an outcome, or a
/// rejection's kind.
const fn result_key(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Rejected(kind) => OUTCOMES + kind as usize,
        other => outcome_index(other),
    }
}

/// One route's handles, registered with one recorder.
struct RouteHandles {
    recorder: usize,
    /// Keeps the address the cache is keyed by in use.
    _route: Arc<str>,
    provider: Provider,
    label: SharedString,
    provider_label: SharedString,
    last_at: Arc<AtomicI64>,
    requests: [Slot<Counter>; OUTCOMES],
    durations: [Slot<Histogram>; OUTCOMES],
    rejections: [Slot<Counter>; KINDS],
    /// By the secret's index, with the label it was registered under (a
    /// reload that relabels an index registers it again, uncached).
    secrets: [Slot<(Option<Arc<str>>, Counter)>; SECRETS],
    handler: Slot<Histogram>,
    body: Slot<Histogram>,
    skew: [Slot<Histogram>; 2],
    hints: Keyed<&'static str, Counter>,
    /// By (index of the registered event type, or `usize::MAX` for
    /// `_other`; [`result_key`]).
    events: Keyed<(usize, usize), Counter>,
    last_verified: Slot<Gauge>,
}

/// One route's dedupe handles, registered with one recorder.
struct DedupeHandles {
    recorder: usize,
    /// Keeps the address the cache is keyed by in use.
    _route: Arc<str>,
    label: SharedString,
    /// By (operation, result).
    ops: [[Slot<Counter>; 6]; 3],
    durations: [Slot<Histogram>; 3],
}

impl RouteHandles {
    fn new(recorder: usize, route: &Arc<str>, provider: &Provider, last_at: Arc<AtomicI64>) -> Self {
        Self {
            recorder,
            _route: Arc::clone(route),
            provider: provider.clone(),
            label: SharedString::from(Arc::clone(route)),
            provider_label: provider_label(provider),
            last_at,
            requests: slots(),
            durations: slots(),
            rejections: slots(),
            secrets: slots(),
            handler: Slot::new(),
            body: Slot::new(),
            skew: slots(),
            hints: Keyed::new(),
            events: Keyed::new(),
            last_verified: Slot::new(),
        }
    }

    fn route(&self) -> SharedString {
        self.label.clone()
    }

    fn provider(&self) -> SharedString {
        self.provider_label.clone()
    }
}

/// The rate limiter's counters, registered with one recorder.
struct RateHandles {
    recorder: usize,
    /// By (event, sender).
    events: [[Slot<Counter>; 2]; 5],
}

/// One provider's queue handles, registered with one recorder.
struct QueueHandles {
    recorder: usize,
    label: SharedString,
    events: [Slot<Counter>; 7],
    store: Slot<Histogram>,
    wait: Slot<Histogram>,
    run: Slot<Histogram>,
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
        #[cfg(feature = "redis")]
        describe_gauge!(
            SHARED_FALLBACK,
            "1 while the shared webhook rate limiter cannot reach Redis and applies its fallback."
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

    /// Sets `webhook_guard_rate_limit_tracked_clients` from `limiter`,
    /// and, for a limiter shared through Redis,
    /// `webhook_guard_rate_limit_shared_fallback`. Takes a lock per shard
    /// of the limiter: call it periodically, not per request.
    pub fn sample_rate_limiter(&self, limiter: &RateLimiter) {
        gauge!(TRACKED_CLIENTS).set(limiter.tracked_clients() as f64);
        #[cfg(feature = "redis")]
        if limiter.is_shared() {
            gauge!(SHARED_FALLBACK).set(if limiter.shared_fallback_active() {
                1.0
            } else {
                0.0
            });
        }
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

    /// Records a verified delivery of `route` now.
    fn verified(&self, handles: &RouteHandles) {
        let now = self.clock.now_unix();
        handles.last_at.fetch_max(now, Ordering::Relaxed);
        handles
            .last_verified
            .get(|| gauge!(LAST_VERIFIED, "route" => handles.route()))
            .set(now as f64);
    }

    /// The route's handles for the recorder in use now.
    fn route_handles(&self, route: &Arc<str>, provider: &Provider) -> Arc<RouteHandles> {
        let recorder = recorder_id();
        let key = Arc::as_ptr(route).cast::<u8>() as usize;
        {
            let cache = self
                .route_handles
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(handles) = cache.get(&key) {
                if handles.recorder == recorder && handles.provider == *provider {
                    return Arc::clone(handles);
                }
            }
        }
        let last_at = {
            let mut routes = self
                .routes
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            Arc::clone(
                routes
                    .entry(Arc::clone(route))
                    .or_insert_with(|| Arc::new(AtomicI64::new(0))),
            )
        };
        let handles = Arc::new(RouteHandles::new(recorder, route, provider, last_at));
        let mut cache = self
            .route_handles
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.insert(key, Arc::clone(&handles));
        handles
    }

    fn dedupe_handles(&self, route: &Arc<str>) -> Arc<DedupeHandles> {
        let recorder = recorder_id();
        let key = Arc::as_ptr(route).cast::<u8>() as usize;
        {
            let cache = self
                .dedupe_handles
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(handles) = cache.get(&key) {
                if handles.recorder == recorder {
                    return Arc::clone(handles);
                }
            }
        }
        let handles = Arc::new(DedupeHandles {
            recorder,
            _route: Arc::clone(route),
            label: SharedString::from(Arc::clone(route)),
            ops: std::array::from_fn(|_| slots()),
            durations: slots(),
        });
        let mut cache = self
            .dedupe_handles
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.insert(key, Arc::clone(&handles));
        handles
    }

    fn rate_handles(&self) -> Arc<RateHandles> {
        let recorder = recorder_id();
        if let Some(handles) = &*self
            .rate_handles
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
        {
            if handles.recorder == recorder {
                return Arc::clone(handles);
            }
        }
        let handles = Arc::new(RateHandles {
            recorder,
            events: std::array::from_fn(|_| slots()),
        });
        *self
            .rate_handles
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::clone(&handles));
        handles
    }

    fn queue_handles(&self, provider: &Provider) -> Arc<QueueHandles> {
        let recorder = recorder_id();
        {
            let cache = self
                .queue_handles
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(handles) = cache.get(provider.name()) {
                if handles.recorder == recorder {
                    return Arc::clone(handles);
                }
            }
        }
        let handles = Arc::new(QueueHandles {
            recorder,
            label: provider_label(provider),
            events: slots(),
            store: Slot::new(),
            wait: Slot::new(),
            run: Slot::new(),
        });
        let mut cache = self
            .queue_handles
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.insert(provider.name().to_owned(), Arc::clone(&handles));
        handles
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
            route_handles: RwLock::new(FastMap::default()),
            dedupe_handles: RwLock::new(FastMap::default()),
            rate_handles: RwLock::new(None),
            queue_handles: RwLock::new(HashMap::new()),
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
                .or_insert_with(|| Arc::new(AtomicI64::new(0)))
                .load(Ordering::Relaxed)
        };
        gauge!(LAST_VERIFIED, "route" => SharedString::from(Arc::clone(route.route))).set(at as f64);
    }

    fn on_request(&self, record: &RequestRecord<'_>) {
        let h = self.route_handles(record.route, record.provider);
        let h = &*h;
        let outcome = record.outcome.name();
        let index = outcome_index(record.outcome);
        h.requests[index]
            .get(
                || counter!(REQUESTS, "route" => h.route(), "provider" => h.provider(), "outcome" => outcome),
            )
            .increment(1);
        h.durations[index]
            .get(|| {
                histogram!(REQUEST_DURATION, "route" => h.route(), "provider" => h.provider(), "outcome" => outcome)
            })
            .record(record.layer_time.as_secs_f64());
        if let Some(kind) = record.outcome.rejection() {
            let register = || counter!(REJECTIONS, "route" => h.route(), "provider" => h.provider(), "reason" => kind.reason());
            match h.rejections.get(kind as usize) {
                Some(slot) => slot.get(register).increment(1),
                None => register().increment(1),
            }
        }
        if let Some(secret) = record.secret {
            let register =
                || counter!(SECRET_MATCHES, "route" => h.route(), "secret" => secret_label(secret));
            let cached = h
                .secrets
                .get(secret.index)
                .map(|slot| slot.get(|| (secret.label.cloned(), register())));
            match cached {
                Some((label, counter)) if label.as_deref() == secret.label.map(|l| &**l) => {
                    counter.increment(1)
                }
                _ => register().increment(1),
            }
        }
        if let Some(time) = record.handler_time {
            h.handler
                .get(|| histogram!(HANDLER_DURATION, "route" => h.route(), "provider" => h.provider()))
                .record(time.as_secs_f64());
        }
        if let Some(bytes) = record.body_bytes {
            h.body
                .get(|| histogram!(BODY_SIZE, "route" => h.route(), "provider" => h.provider()))
                .record(bytes as f64);
        }
        if let Some(skew) = record.skew {
            let (slot, direction) = if skew.is_future() {
                (&h.skew[1], "future")
            } else {
                (&h.skew[0], "past")
            };
            slot.get(
                || histogram!(SKEW, "route" => h.route(), "provider" => h.provider(), "direction" => direction),
            )
            .record(skew.magnitude().as_secs_f64());
        }
        for hint in record.hints {
            let code = hint.code();
            h.hints.with(
                code,
                || counter!(HINTS, "route" => h.route(), "hint" => code),
                |c| c.increment(1),
            );
        }
        if let Some(event_type) = record.event_type {
            let (key, label) = match self.event_types.get(event_type) {
                Some(known) => (
                    Arc::as_ptr(known).cast::<u8>() as usize,
                    SharedString::from(Arc::clone(known)),
                ),
                None => (usize::MAX, SharedString::const_str(OTHER_EVENT_TYPE)),
            };
            h.events.with(
                (key, result_key(record.outcome)),
                || {
                    counter!(
                        EVENTS,
                        "route" => h.route(),
                        "provider" => h.provider(),
                        "event_type" => label,
                        "result" => result_label(record.outcome)
                    )
                },
                |c| c.increment(1),
            );
        }
        if is_verified_delivery(record.outcome) {
            self.verified(h);
        }
    }

    fn on_dedupe(&self, record: &DedupeRecord<'_>) {
        let h = self.dedupe_handles(record.route);
        let op = dedupe_op(record.op);
        let op_index = dedupe_op_index(record.op);
        let result = dedupe_result(record.result);
        h.ops[op_index][dedupe_result_index(record.result)]
            .get(|| counter!(DEDUPE_OPS, "route" => h.label.clone(), "op" => op, "result" => result))
            .increment(1);
        h.durations[op_index]
            .get(|| histogram!(DEDUPE_DURATION, "route" => h.label.clone(), "op" => op))
            .record(record.latency.as_secs_f64());
    }

    fn on_rate_limit(&self, record: &RateLimitRecord) {
        let h = self.rate_handles();
        let class = if record.sender { "sender" } else { "other" };
        let event = rate_limit_event(record.event);
        h.events[rate_limit_index(record.event)][usize::from(record.sender)]
            .get(|| counter!(RATE_LIMIT_EVENTS, "event" => event, "class" => class))
            .increment(1);
    }

    fn on_queue(&self, record: &QueueRecord<'_>) {
        let h = self.queue_handles(record.provider);
        let event = queue_event(record.event);
        h.events[queue_event_index(record.event)]
            .get(|| counter!(QUEUE_EVENTS, "provider" => h.label.clone(), "event" => event))
            .increment(1);
        if let Some(latency) = record.storage_latency {
            h.store
                .get(|| histogram!(QUEUE_STORE_DURATION, "provider" => h.label.clone()))
                .record(latency.as_secs_f64());
        }
        if let Some(wait) = record.since_received {
            h.wait
                .get(|| histogram!(QUEUE_WAIT, "provider" => h.label.clone()))
                .record(wait.as_secs_f64());
        }
        if let Some(run) = record.run_time {
            h.run
                .get(|| histogram!(QUEUE_RUN_DURATION, "provider" => h.label.clone()))
                .record(run.as_secs_f64());
        }
    }
}

const fn dedupe_op_index(op: DedupeOp) -> usize {
    match op {
        DedupeOp::Claim => 0,
        DedupeOp::Complete => 1,
        DedupeOp::Release => 2,
    }
}

const fn rate_limit_index(event: RateLimitEvent) -> usize {
    match event {
        RateLimitEvent::Allowed => 0,
        RateLimitEvent::Limited => 1,
        RateLimitEvent::LockedOut => 2,
        RateLimitEvent::Refunded => 3,
        RateLimitEvent::FailedAuthentication => 4,
    }
}

const fn queue_event_index(event: QueueEvent) -> usize {
    match event {
        QueueEvent::Enqueued => 0,
        QueueEvent::Full => 1,
        QueueEvent::Unavailable => 2,
        QueueEvent::ShuttingDown => 3,
        QueueEvent::Done => 4,
        QueueEvent::Retried => 5,
        QueueEvent::DeadLetter => 6,
    }
}

const fn dedupe_result_index(result: DedupeResult) -> usize {
    match result {
        DedupeResult::Acquired => 0,
        DedupeResult::Duplicate => 1,
        DedupeResult::InProgress => 2,
        DedupeResult::Done => 3,
        DedupeResult::Error(StoreErrorKind::Unavailable) => 4,
        DedupeResult::Error(StoreErrorKind::Full) => 5,
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
