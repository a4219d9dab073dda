//! Per-client rate limiting, applied before anything else, that tells the
//! genuine sender from the rest.
//!
//! A [`RateLimiter`] wraps the whole application when it is served:
//! [`RateLimiter::into_make_service`] takes your `Router` and gives
//! `axum::serve` a make-service that knows each connection's peer address.
//! There is no other way to put it in front of a router, so a router
//! served without the peer address is not a per-request 500 but a program
//! that does not compile.
//!
//! For every request, before routing and before any body byte is read:
//!
//! 1. the client address is found: the socket peer, unless the peer is one
//!    of the [trusted proxies](RateLimiterBuilder::trusted_proxies); then
//!    the rightmost untrusted hop of the forwarding header (see
//!    [`client_ip`](crate::client_ip)). IPv6 clients are counted per /64;
//!    IPv4-mapped IPv6 addresses count as IPv4.
//! 2. a client locked out for failing authentication too often gets 429
//!    `too_many_failed_authentications`, whoever it is;
//! 3. the client is classed: inside the
//!    [sender networks](RateLimiterBuilder::sender_networks) it is charged
//!    to the sender quota (default 1 000 a second, burst 2 000), anywhere
//!    else to the default quota (default 50 a second, burst 100); a client
//!    over its quota gets 429 `rate_limited`;
//! 4. otherwise the request goes on, with [`ClientIp`](crate::ClientIp) and axum's
//!    `ConnectInfo<SocketAddr>` in its extensions.
//!
//! After the response:
//!
//! - if it is a **fresh verified delivery** (a [`Verifier`](crate::Verifier)
//!   authenticated it and it reached your handler or queue, whatever they
//!   answered) from a client in the sender networks, its charge is
//!   **refunded** (for every client with
//!   [`refund_verified_deliveries`](RateLimiterBuilder::refund_verified_deliveries)).
//!   A duplicate (200 `duplicate`),
//!   a delivery in progress elsewhere (409), a dedupe store failure (503),
//!   any rejection (401, 400, 413, 422, ...) and a handshake keep their
//!   charge, as does every request to a route without a verifier.
//! - if it is a 401 from a [`Verifier`](crate::Verifier) (its [`Rejection`]
//!   is in the response extensions), the client's *failed-authentication*
//!   quota is charged. That quota is much stricter (default 20 a minute)
//!   and throttles signature guessing and timing probes, while the real
//!   sender, whose requests verify, never touches it.
//!
//! Every 429 is problem+json with an integer `Retry-After` of at least 1.
//!
//! # Holding a real sender's peak
//!
//! Providers deliver from a handful of addresses, so a per-address quota
//! that is right for an attacker refuses a merchant's sale, and a refused
//! delivery may never come back (GitHub does not retry). Two mechanisms
//! work together:
//!
//! - **Refunds.** A fresh verified delivery from the sender networks
//!   gives its charge back when it is answered, so it never uses up the
//!   budget those addresses have for unauthenticated traffic, and the
//!   genuine sender is limited by its *concurrency* (how many requests it
//!   has in flight at once may reach the burst), never by its *rate*.
//!   Outside the sender networks every request counts by default, so the
//!   default quota keeps its plain meaning (requests a second per
//!   address); [`refund_verified_deliveries`](RateLimiterBuilder::refund_verified_deliveries)
//!   extends refunds to every client, for senders whose addresses are not
//!   published. Unsigned, forged and invalid
//!   requests, and replays answered `duplicate` or 409, are charged as
//!   before, so a flood and a guesser are still stopped at the burst.
//! - **A sender class.** The burst for everyone else (100) is too small a
//!   concurrency for a provider at peak: a sale at 1 000 deliveries a
//!   second into a handler that takes 200 ms keeps 200 in flight. The
//!   sender networks get their own, larger quota, still a quota: those
//!   addresses are shared by everyone on the provider's platform, and
//!   deliveries another tenant points at you fail your verification.
//!
//! Refunds alone would refuse the genuine sender once its concurrency
//! passes the default burst; a class alone would refuse it once its rate
//! passes any fixed quota, and would let its own 429s be spent by replays
//! and by the platform's other tenants. Together, a sender in its networks
//! is refused only past 2 000 deliveries in flight, and the budget for
//! everything that does not verify stays what you set.
//!
//! The [failed-authentication lockout](RateLimiterBuilder::failed_authentications_per_minute)
//! applies to every client, sender networks included.
//!
//! What is refunded is only as fresh as the verifier can tell: with a
//! [`Dedupe`](crate::dedupe::Dedupe) store, a replayed delivery is a
//! `duplicate` and is charged; without one, a replay the scheme cannot
//! detect (inside its timestamp tolerance, or any replay for a scheme that
//! signs no timestamp, such as GitHub's) verifies again and is refunded
//! like the original. Configure a dedupe store on every route.
//!
//! # Loading the providers' ranges
//!
//! The crate never fetches anything: load the published ranges when you
//! deploy (and refresh them as the providers ask), then pass them as one
//! comma-separated list to [`Networks::parse`](crate::Networks::parse):
//!
//! - GitHub: the `hooks` member of `https://api.github.com/meta`, e.g.
//!   `curl -s https://api.github.com/meta | jq -r '.hooks | join(",")'`;
//! - Stripe: its webhook IP list, `https://stripe.com/files/ips/ips_webhooks.txt`
//!   (one address a line) or the `WEBHOOKS` member of
//!   `https://stripe.com/files/ips/ips_webhooks.json`, e.g.
//!   `curl -s https://stripe.com/files/ips/ips_webhooks.json | jq -r '.WEBHOOKS | join(",")'`;
//! - other providers: the list their documentation publishes, if any.
//!
//! The client address is resolved first (trusted proxies honoured), then
//! classed; a forwarding header from an untrusted peer cannot put a client
//! in the sender class.
//!
//! # Several replicas (feature `redis`)
//!
//! Each replica's quotas are its own unless they are shared:
//! [`RateLimiterBuilder::shared`] keeps every client's quotas and its
//! failed-authentication count in Redis (one GCRA timestamp per client and
//! quota, updated by one Lua script per request on the Redis server's
//! clock), so a client spreading its requests over the replicas gets its
//! quota once, and a guesser locked out on one replica is locked out on
//! all. The local quota stays in front, and a client Redis refused is
//! refused locally until its wait is over, so a flood costs no round trip
//! per request. Refunds and failed authentications are recorded in Redis
//! too. While Redis is unreachable, [`RedisFallback`] decides (and
//! [`RateLimiter::shared_fallback_active`] tells you it is in force).
//!
//! # Memory
//!
//! A client's state in each quota is one number. Each quota tracks at most
//! [`max_tracked_clients`](RateLimiterBuilder::max_tracked_clients)
//! clients, in shards; a client whose quota is full again is idle and is
//! forgotten (a shard sweeps its idle clients at most once a second when
//! it is half full, and [`RateLimiter::forget_idle_clients`] sweeps all of
//! them now). When a flood of distinct addresses fills a shard with active
//! clients, the newcomers share one overflow quota until room frees up, so
//! memory stays bounded and the flood stays throttled; clients already
//! tracked keep their own quota.
//!
//! ```no_run
//! use std::num::NonZeroU32;
//! use axum::{routing::post, Router};
//! use webhook_guard::{Networks, RateLimiter, Scheme, Verifier, VerifiedWebhook};
//!
//! # async fn handle(_: VerifiedWebhook) {}
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let github = Verifier::builder(Scheme::github()).secret("s3cret").build()?;
//! let app = Router::new().route("/webhooks/github", post(handle).layer(github.layer()));
//!
//! // GitHub's `hooks` ranges, loaded at deploy time.
//! let senders = std::env::var("WEBHOOK_SENDER_NETWORKS").unwrap_or_default();
//! let limiter = RateLimiter::builder()
//!     .per_second(NonZeroU32::new(50).unwrap())
//!     .burst(NonZeroU32::new(100).unwrap())
//!     .trusted_proxies(Networks::parse("10.0.0.0/8")?) // your load balancers
//!     .sender_networks(Networks::parse(&senders)?)
//!     .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, limiter.into_make_service(app)).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::{RateLimitingMiddleware, StateInformationMiddleware};
use governor::{DefaultKeyedRateLimiter, Quota};
use http::HeaderMap;

use crate::client_ip::{ClientIpConfig, IpKey};
use crate::log_limit::{LogLimiter, DEFAULT_REJECTION_LOGS_PER_SECOND};
use crate::observe::{Observer, RateLimitEvent, RateLimitRecord};
use crate::{Networks, ProxyHeader, Rejection, RejectionKind};

mod gcra;
#[cfg(feature = "redis")]
mod redis;
mod service;

#[cfg(feature = "redis")]
pub use self::redis::RedisFallback;

use gcra::{Gcra, Keyed, Origin, Slot};
pub use service::{IntoMakeServiceWithRateLimit, RateLimit, ResponseFuture};

/// Default sustained rate per client: 50 requests a second.
pub const DEFAULT_PER_SECOND: u32 = 50;
/// Default burst per client: 100 requests.
pub const DEFAULT_BURST: u32 = 100;
/// Default sustained rate per client address inside the
/// [sender networks](RateLimiterBuilder::sender_networks): 1 000 requests a
/// second (fresh verified deliveries are refunded on top of it).
pub const DEFAULT_SENDER_PER_SECOND: u32 = 1_000;
/// Default burst per client address inside the
/// [sender networks](RateLimiterBuilder::sender_networks): 2 000 requests.
pub const DEFAULT_SENDER_BURST: u32 = 2_000;
/// Default failed authentications allowed per client per minute.
pub const DEFAULT_FAILED_AUTH_PER_MINUTE: u32 = 20;
/// Default bound on tracked clients (per quota).
pub const DEFAULT_MAX_TRACKED_CLIENTS: usize = 100_000;

/// How often the saturation of the failed-authentication state is
/// measured, in calls.
const MEASURE_EVERY: u64 = 256;
/// Least time between two sweeps of idle clients.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Put in a response's extensions by the verify layer when the request
/// verified and reached the handler or the queue (whatever they
/// answered): the [`RateLimiter`] refunds that request's charge. Never for
/// a duplicate, a delivery in progress, a store failure, a rejection or a
/// handshake.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FreshDelivery;

/// Marks `response` as the answer to a fresh verified delivery.
pub(crate) fn fresh(mut response: http::Response<axum::body::Body>) -> http::Response<axum::body::Body> {
    response.extensions_mut().insert(FreshDelivery);
    response
}

/// Per-client rate limiting. Cheap to clone (an `Arc`); clones share the
/// same counters. See the [module docs](self).
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    client: ClientIpConfig,
    origin: Origin,
    default: Class,
    senders: Networks,
    /// `None` when there are no sender networks.
    sender: Option<Class>,
    /// Whether clients outside the sender networks are refunded too.
    refund_everyone: bool,
    failures: Option<Failures>,
    /// The per-reason allowance of refusal events.
    logs: LogLimiter,
    observer: Option<Arc<dyn Observer>>,
    /// The quotas and lockout shared through Redis, if any.
    #[cfg(feature = "redis")]
    shared: Option<SharedQuotas>,
}

/// A shared limiter's Redis side and the quotas it charges there.
#[cfg(feature = "redis")]
struct SharedQuotas {
    redis: self::redis::Shared,
    default: self::redis::Cell,
    sender: self::redis::Cell,
    lockout: Option<self::redis::Cell>,
    /// The per-replica share used while Redis is down
    /// ([`RedisFallback::Local`] with more than one replica).
    fallback: Option<(Class, Option<Class>)>,
}

/// One request quota: its settings and its clients.
struct Class {
    keyed: Keyed,
    per_second: NonZeroU32,
    burst: NonZeroU32,
}

impl Class {
    fn new(per_second: NonZeroU32, burst: NonZeroU32, max: usize) -> Self {
        Self {
            keyed: Keyed::new(Gcra::new(per_second, burst), max),
            per_second,
            burst,
        }
    }
}

/// Where one admitted request was charged, for its refund.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Charge {
    sender: bool,
    slot: Slot,
}

type GovernorInstant = <DefaultClock as governor::clock::Clock>::Instant;

/// A keyed governor limiter whose memory is bounded (the
/// failed-authentication quota).
struct Bounded<M: RateLimitingMiddleware<GovernorInstant>> {
    limiter: DefaultKeyedRateLimiter<IpKey, M>,
    max: usize,
    calls: AtomicU64,
    saturated: AtomicBool,
    last_sweep: Mutex<Instant>,
}

impl<M: RateLimitingMiddleware<GovernorInstant>> Bounded<M> {
    fn with(limiter: DefaultKeyedRateLimiter<IpKey, M>, max: usize) -> Self {
        Self {
            limiter,
            max,
            calls: AtomicU64::new(0),
            saturated: AtomicBool::new(false),
            last_sweep: Mutex::new(Instant::now()),
        }
    }
}

impl<M> Bounded<M>
where
    M: RateLimitingMiddleware<GovernorInstant, NegativeOutcome = governor::NotUntil<GovernorInstant>>,
{
    /// Checks `key`; `None` means the keyed state is full.
    fn check(&self, key: &IpKey) -> Option<Result<M::PositiveOutcome, Duration>> {
        let calls = self.calls.fetch_add(1, Ordering::Relaxed);
        if calls.is_multiple_of(MEASURE_EVERY) || self.saturated.load(Ordering::Relaxed) {
            self.maintain();
        }
        if self.saturated.load(Ordering::Relaxed) {
            return None;
        }
        let clock = self.limiter.clock();
        Some(
            self.limiter
                .check_key(key)
                .map_err(|not_until| not_until.wait_time_from(clock.now())),
        )
    }

    /// Forgets idle clients (at most once a second) and records whether
    /// the state is full.
    fn maintain(&self) {
        let mut len = self.limiter.len();
        if len >= self.max / 2 || self.saturated.load(Ordering::Relaxed) {
            let due = match self.last_sweep.try_lock() {
                Ok(mut last) if last.elapsed() >= SWEEP_EVERY => {
                    *last = Instant::now();
                    true
                }
                _ => false,
            };
            if due {
                self.limiter.retain_recent();
                self.limiter.shrink_to_fit();
                len = self.limiter.len();
            }
        }
        self.saturated.store(len >= self.max, Ordering::Relaxed);
    }

    fn sweep_now(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.saturated
            .store(self.limiter.len() >= self.max, Ordering::Relaxed);
    }
}

/// The failed-authentication quota and the clients it has locked out.
struct Failures {
    quota: Bounded<StateInformationMiddleware>,
    lockouts: Mutex<HashMap<IpKey, Instant>>,
    locked: AtomicUsize,
    max: usize,
}

impl Failures {
    /// How long `key` is still locked out, if it is.
    fn locked_out(&self, key: &IpKey) -> Option<Duration> {
        if self.locked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut map = self
            .lockouts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = *map.get(key)?;
        let now = Instant::now();
        if until > now {
            return Some(until - now);
        }
        map.remove(key);
        self.locked.store(map.len(), Ordering::Relaxed);
        None
    }

    /// Counts one failed authentication. Once the quota is spent, `key`
    /// is locked out until the quota has room again, so no request beyond
    /// the quota is ever checked against the secrets.
    fn charge(&self, key: &IpKey) {
        let wait = match self.quota.check(key) {
            Some(Ok(snapshot)) if snapshot.remaining_burst_capacity() > 0 => return,
            // That was the last allowed failure: lock out until one more is.
            Some(Ok(snapshot)) => snapshot.quota().replenish_interval(),
            Some(Err(wait)) => wait,
            // Too many distinct failing clients tracked: lock out briefly.
            None => Duration::from_secs(1),
        };
        let now = Instant::now();
        let mut map = self
            .lockouts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= self.max {
            map.retain(|_, until| *until > now);
            map.shrink_to_fit();
        }
        if map.len() < self.max || map.contains_key(key) {
            map.insert(*key, now + wait);
        }
        self.locked.store(map.len(), Ordering::Relaxed);
    }
}

impl RateLimiter {
    /// Starts configuring a limiter. Defaults: 50 requests a second with a
    /// burst of 100 per client, no trusted proxies, no sender networks
    /// (whose quota is 1 000 a second with a burst of 2 000), 20 failed
    /// authentications a minute, 100 000 tracked clients.
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder {
            per_second: NonZeroU32::new(DEFAULT_PER_SECOND).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(DEFAULT_BURST).unwrap_or(NonZeroU32::MIN),
            trusted: Networks::none(),
            header: ProxyHeader::default(),
            senders: Networks::none(),
            sender_per_second: NonZeroU32::new(DEFAULT_SENDER_PER_SECOND).unwrap_or(NonZeroU32::MIN),
            sender_burst: NonZeroU32::new(DEFAULT_SENDER_BURST).unwrap_or(NonZeroU32::MIN),
            refund_everyone: false,
            failed_auth: NonZeroU32::new(DEFAULT_FAILED_AUTH_PER_MINUTE),
            max_tracked: NonZeroUsize::new(DEFAULT_MAX_TRACKED_CLIENTS).unwrap_or(NonZeroUsize::MIN),
            logs_per_second: NonZeroU32::new(DEFAULT_REJECTION_LOGS_PER_SECOND).unwrap_or(NonZeroU32::MIN),
            observer: None,
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// Wraps `app` (usually an axum `Router`) into a make-service for
    /// `axum::serve`: every connection's peer address is known, every
    /// request is limited before it is routed.
    pub fn into_make_service<S>(self, app: S) -> IntoMakeServiceWithRateLimit<S> {
        IntoMakeServiceWithRateLimit::new(app, self)
    }

    /// Wraps `inner` for one connection from `peer`, for servers other than
    /// `axum::serve` and for tests.
    pub fn service<S>(&self, inner: S, peer: SocketAddr) -> RateLimit<S> {
        RateLimit::new(inner, self.clone(), peer)
    }

    /// The client address of a request from `peer`, as the limiter sees it.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.inner.client.resolve(peer, headers)
    }

    /// How many clients the request quotas (the default one and the
    /// sender one) track right now.
    pub fn tracked_clients(&self) -> usize {
        let senders = self.inner.sender.as_ref().map_or(0, |c| c.keyed.len());
        self.inner.default.keyed.len() + senders
    }

    /// Forgets clients whose quota is full again, now. The limiter does
    /// this by itself; this is for measurements and tests.
    pub fn forget_idle_clients(&self) {
        let now = self.inner.origin.now();
        self.inner.default.keyed.forget_idle(now);
        if let Some(c) = &self.inner.sender {
            c.keyed.forget_idle(now);
        }
        if let Some(f) = &self.inner.failures {
            f.quota.sweep_now();
        }
    }

    /// Decides one request from socket peer `peer`, before its body is
    /// read: the resolved client address, or the 429 to answer. The
    /// services call this for you; it is public for other servers and for
    /// benchmarks. A request admitted here is charged for good: only the
    /// services see the response and refund fresh verified deliveries.
    ///
    /// # Errors
    ///
    /// A [`Rejection`] of kind [`RejectionKind::RateLimited`] or
    /// [`RejectionKind::TooManyFailedAuthentications`], with its
    /// `retry_after` set.
    pub fn check(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, Rejection> {
        self.admit(peer, headers).map(|(ip, _)| ip)
    }

    /// [`check`](Self::check), also saying where the request was charged.
    pub(crate) fn admit(&self, peer: IpAddr, headers: &HeaderMap) -> Result<(IpAddr, Charge), Rejection> {
        let inner = &*self.inner;
        let ip = inner.client.resolve(peer, headers);
        let key = IpKey::of(ip);
        if let Some(wait) = inner.failures.as_ref().and_then(|f| f.locked_out(&key)) {
            self.report(RateLimitEvent::LockedOut, false);
            return Err(Rejection::new(
                RejectionKind::TooManyFailedAuthentications,
                "too many requests from this client failed authentication; retry later",
            )
            .with_retry_after(wait));
        }
        let (sender, class) = match &inner.sender {
            Some(class) if inner.senders.contains(ip) => (true, class),
            _ => (false, &inner.default),
        };
        let charged = class.keyed.charge(key, inner.origin.now());
        self.report(
            if charged.is_ok() {
                RateLimitEvent::Allowed
            } else {
                RateLimitEvent::Limited
            },
            sender,
        );
        match charged {
            Ok(slot) => Ok((ip, Charge { sender, slot })),
            Err(wait) => Err(Rejection::new(
                RejectionKind::RateLimited,
                format!(
                    "this client is over its quota of {} requests a second (burst {}); retry later",
                    class.per_second, class.burst
                ),
            )
            .with_retry_after(wait)),
        }
    }

    /// Gives back the charge of a request that turned out to be a fresh
    /// verified delivery.
    pub(crate) fn refund(&self, charge: Charge) {
        let inner = &*self.inner;
        let class = match (&inner.sender, charge.sender) {
            (Some(class), true) => class,
            _ if inner.refund_everyone => &inner.default,
            _ => return,
        };
        class.keyed.refund(charge.slot, inner.origin.now());
        self.report(RateLimitEvent::Refunded, charge.sender);
    }

    /// Whether the limiter shares its quotas through Redis
    /// ([`RateLimiterBuilder::shared`]).
    pub fn is_shared(&self) -> bool {
        #[cfg(feature = "redis")]
        {
            self.inner.shared.is_some()
        }
        #[cfg(not(feature = "redis"))]
        {
            false
        }
    }

    /// Whether a shared limiter found Redis unreachable on its last call
    /// and is applying its [`RedisFallback`]; `false` for a local limiter.
    #[cfg(feature = "redis")]
    pub fn shared_fallback_active(&self) -> bool {
        self.inner.shared.as_ref().is_some_and(|s| s.redis.is_down())
    }

    /// The shared part of [`admit`](Self::admit): the client's quota and
    /// lockout in Redis, or the fallback while Redis is unreachable.
    #[cfg(feature = "redis")]
    pub(crate) async fn admit_shared(&self, ip: IpAddr, charge: Charge) -> Result<(), Rejection> {
        use self::redis::Verdict;
        let Some(shared) = &self.inner.shared else {
            return Ok(());
        };
        let key = IpKey::of(ip);
        let quota = if charge.sender {
            shared.sender
        } else {
            shared.default
        };
        let verdict = shared
            .redis
            .admit(key, charge.sender, quota, shared.lockout)
            .await;
        let limited = |wait: Duration| {
            let class = match (&self.inner.sender, charge.sender) {
                (Some(class), true) => class,
                _ => &self.inner.default,
            };
            self.report(RateLimitEvent::Limited, charge.sender);
            Err(Rejection::new(
                RejectionKind::RateLimited,
                format!(
                    "this client is over its quota of {} requests a second (burst {}); retry later",
                    class.per_second, class.burst
                ),
            )
            .with_retry_after(wait))
        };
        match verdict {
            Verdict::Admitted => Ok(()),
            Verdict::Limited(wait) => limited(wait),
            Verdict::LockedOut(wait) => {
                self.report(RateLimitEvent::LockedOut, false);
                Err(Rejection::new(
                    RejectionKind::TooManyFailedAuthentications,
                    "too many requests from this client failed authentication; retry later",
                )
                .with_retry_after(wait))
            }
            Verdict::Unreachable => match shared.redis.fallback {
                RedisFallback::Allow => Ok(()),
                RedisFallback::Deny => limited(Duration::from_secs(1)),
                RedisFallback::Local { .. } => {
                    let Some((default, sender)) = &shared.fallback else {
                        // One replica: the local front check already
                        // charged the whole quota.
                        return Ok(());
                    };
                    let class = match (sender, charge.sender) {
                        (Some(class), true) => class,
                        _ => default,
                    };
                    match class.keyed.charge(key, self.inner.origin.now()) {
                        Ok(_) => Ok(()),
                        Err(wait) => limited(wait),
                    }
                }
            },
        }
    }

    /// After the response, for a shared limiter: refunds a fresh verified
    /// delivery's charge in Redis (in the background) and charges a failed
    /// authentication there (before the response leaves, so the client's
    /// next request on any replica sees it).
    #[cfg(feature = "redis")]
    pub(crate) async fn settle_shared(&self, ip: IpAddr, charge: Charge, fresh: bool, failed_auth: bool) {
        let Some(shared) = &self.inner.shared else {
            return;
        };
        let key = IpKey::of(ip);
        if fresh && (charge.sender || self.inner.refund_everyone) {
            let limiter = self.clone();
            let quota = if charge.sender {
                shared.sender
            } else {
                shared.default
            };
            tokio::spawn(async move {
                if let Some(shared) = &limiter.inner.shared {
                    shared.redis.refund(key, charge.sender, quota).await;
                }
            });
        }
        if failed_auth {
            if let Some(lockout) = shared.lockout {
                shared.redis.failed(key, lockout).await;
            }
        }
    }

    /// Reports an event to the observer, if any.
    #[inline]
    fn report(&self, event: RateLimitEvent, sender: bool) {
        if let Some(observer) = &self.inner.observer {
            observer.on_rate_limit(&RateLimitRecord { event, sender });
        }
    }

    /// Charges a failed authentication to `ip`.
    pub(crate) fn failed_authentication(&self, ip: IpAddr) {
        if let Some(f) = &self.inner.failures {
            f.charge(&IpKey::of(ip));
            self.report(RateLimitEvent::FailedAuthentication, false);
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        let sender = inner.sender.as_ref();
        f.debug_struct("RateLimiter")
            .field("per_second", &inner.default.per_second)
            .field("burst", &inner.default.burst)
            .field("trusted_proxies", &inner.client.trusted)
            .field("proxy_header", &inner.client.header)
            .field("sender_networks", &inner.senders)
            .field("sender_per_second", &sender.map(|c| c.per_second))
            .field("sender_burst", &sender.map(|c| c.burst))
            .field("tracked_clients", &self.tracked_clients())
            .finish_non_exhaustive()
    }
}

/// Builder for [`RateLimiter`]; start with [`RateLimiter::builder`].
#[must_use]
#[derive(Debug)]
pub struct RateLimiterBuilder {
    per_second: NonZeroU32,
    burst: NonZeroU32,
    trusted: Networks,
    header: ProxyHeader,
    senders: Networks,
    sender_per_second: NonZeroU32,
    sender_burst: NonZeroU32,
    refund_everyone: bool,
    failed_auth: Option<NonZeroU32>,
    max_tracked: NonZeroUsize,
    logs_per_second: NonZeroU32,
    observer: Option<Arc<dyn Observer>>,
    #[cfg(feature = "redis")]
    shared: Option<(crate::fleet::RedisConnection, String, RedisFallback)>,
}

impl RateLimiterBuilder {
    /// Shares the quotas and the failed-authentication lockout with every
    /// replica on the same Redis (feature `redis`): each client's quota is
    /// one GCRA timestamp in Redis, updated by one Lua script per request
    /// with the Redis server's clock, so three replicas grant a client its
    /// quota once, not three times. The lockout is counted there too, so it
    /// follows a guessing client from replica to replica.
    ///
    /// The local quota stays in front (a replica never grants more than
    /// the whole quota on its own), and a client Redis refused is refused
    /// locally until its wait is over, so a flood from one client costs no
    /// round trip per request. Keys: `prefix` (default
    /// `"webhook-guard:rate:"`), the client in a hash tag
    /// (`{4:7f000001}`, `{6:<the /64>}`), then `:d` (default quota), `:s`
    /// (sender quota) or `:a` (failed authentications); each expires when
    /// its quota is full again. While Redis is unreachable the
    /// [`RedisFallback`] applies (see [`shared_fallback`](Self::shared_fallback)).
    #[cfg(feature = "redis")]
    pub fn shared(mut self, redis: crate::fleet::RedisConnection, prefix: Option<&str>) -> Self {
        let fallback = self.shared.as_ref().map(|s| s.2).unwrap_or_default();
        let prefix = prefix.unwrap_or(self::redis::DEFAULT_PREFIX).to_owned();
        self.shared = Some((redis, prefix, fallback));
        self
    }

    /// What a [shared](Self::shared) limiter does while Redis is
    /// unreachable. Default [`RedisFallback::Local`] with one replica.
    /// Has no effect on a local limiter; call it after
    /// [`shared`](Self::shared).
    #[cfg(feature = "redis")]
    pub fn shared_fallback(mut self, fallback: RedisFallback) -> Self {
        if let Some(shared) = &mut self.shared {
            shared.2 = fallback;
        }
        self
    }

    /// Sustained requests per second per client. Default 50.
    pub fn per_second(mut self, rate: NonZeroU32) -> Self {
        self.per_second = rate;
        self
    }

    /// Requests a client may send at once before the rate applies.
    /// Default 100.
    pub fn burst(mut self, burst: NonZeroU32) -> Self {
        self.burst = burst;
        self
    }

    /// The proxies whose forwarding header is believed. Default: none, so
    /// the socket peer is the client. Never list addresses you do not
    /// control: a client connecting from a trusted address can claim to be
    /// anyone.
    pub fn trusted_proxies(mut self, proxies: Networks) -> Self {
        self.trusted = proxies;
        self
    }

    /// Which header the trusted proxies write. Default
    /// [`ProxyHeader::XForwardedFor`].
    pub fn proxy_header(mut self, header: ProxyHeader) -> Self {
        self.header = header;
        self
    }

    /// The networks your providers deliver from (GitHub's `hooks` ranges,
    /// Stripe's webhook addresses; see [the module docs](self) for where
    /// to find them). A client address inside them is charged to the
    /// sender quota ([`sender_per_second`](Self::sender_per_second),
    /// [`sender_burst`](Self::sender_burst)), per address, instead of the
    /// default one. The address is the one resolved behind the
    /// [trusted proxies](Self::trusted_proxies). The failed-authentication
    /// lockout applies to these clients too. Default: none.
    pub fn sender_networks(mut self, networks: Networks) -> Self {
        self.senders = networks;
        self
    }

    /// Sustained requests per second per client address inside the
    /// [sender networks](Self::sender_networks). Default 1 000.
    pub fn sender_per_second(mut self, rate: NonZeroU32) -> Self {
        self.sender_per_second = rate;
        self
    }

    /// Requests a client address inside the
    /// [sender networks](Self::sender_networks) may send at once before
    /// the rate applies. Default 2 000.
    pub fn sender_burst(mut self, burst: NonZeroU32) -> Self {
        self.sender_burst = burst;
        self
    }

    /// Also refund fresh verified deliveries of clients outside the
    /// [sender networks](Self::sender_networks), so that their quota
    /// ([`per_second`](Self::per_second), [`burst`](Self::burst)) counts
    /// only what does not verify (and replays) and a verified sender is
    /// limited by its concurrency alone. Default `false`: outside the
    /// sender networks every request counts, as the quota's name says;
    /// inside them, fresh verified deliveries are always refunded.
    pub fn refund_verified_deliveries(mut self, refund: bool) -> Self {
        self.refund_everyone = refund;
        self
    }

    /// Failed authentications (401s from a [`Verifier`](crate::Verifier))
    /// a client may cause per minute before it is locked out; `None`
    /// disables the check. Default 20.
    pub fn failed_authentications_per_minute(mut self, limit: Option<NonZeroU32>) -> Self {
        self.failed_auth = limit;
        self
    }

    /// The most clients tracked at once, per quota. Default 100 000
    /// (a few MiB).
    pub fn max_tracked_clients(mut self, max: NonZeroUsize) -> Self {
        self.max_tracked = max;
        self
    }

    /// How many refusal events (`DEBUG`, `"request refused by the rate
    /// limiter"`) of one reason, `rate_limited` or
    /// `too_many_failed_authentications`, are logged per second (and at
    /// once). Past it the events are counted, and the count is logged with
    /// the next event of that reason, in its `suppressed` field; see
    /// [`log_limit`](crate::log_limit). Default:
    /// [`DEFAULT_REJECTION_LOGS_PER_SECOND`], 10.
    pub fn rejection_logs_per_second(mut self, per_second: NonZeroU32) -> Self {
        self.logs_per_second = per_second;
        self
    }

    /// Reports every decision (allowed, limited, locked out), refund and
    /// failed authentication to `observer`, without the client's
    /// address; see [`observe`](crate::observe). Default: none.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The limiter. Every setting is typed, so this cannot fail.
    pub fn build(self) -> RateLimiter {
        let max = self.max_tracked.get();
        let failures = self.failed_auth.map(|per_minute| Failures {
            quota: Bounded::with(
                DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute))
                    .with_middleware::<StateInformationMiddleware>(),
                max,
            ),
            lockouts: Mutex::new(HashMap::new()),
            locked: AtomicUsize::new(0),
            max,
        });
        #[cfg(feature = "redis")]
        let has_senders = !self.senders.is_empty();
        let sender =
            (!self.senders.is_empty()).then(|| Class::new(self.sender_per_second, self.sender_burst, max));
        RateLimiter {
            inner: Arc::new(Inner {
                client: ClientIpConfig {
                    trusted: self.trusted,
                    header: self.header,
                },
                origin: Origin::new(),
                default: Class::new(self.per_second, self.burst, max),
                senders: self.senders,
                sender,
                refund_everyone: self.refund_everyone,
                failures,
                logs: LogLimiter::new(self.logs_per_second),
                observer: self.observer,
                #[cfg(feature = "redis")]
                shared: self.shared.map(|(conn, prefix, fallback)| {
                    use self::redis::Cell;
                    let second = Duration::from_secs(1);
                    let fallback_classes = match fallback {
                        RedisFallback::Local { replicas } if replicas.get() > 1 => {
                            let share = |n: NonZeroU32| {
                                NonZeroU32::new(n.get() / replicas.get()).unwrap_or(NonZeroU32::MIN)
                            };
                            Some((
                                Class::new(share(self.per_second), share(self.burst), max),
                                has_senders.then(|| {
                                    Class::new(share(self.sender_per_second), share(self.sender_burst), max)
                                }),
                            ))
                        }
                        _ => None,
                    };
                    SharedQuotas {
                        redis: self::redis::Shared::new(conn, prefix, fallback),
                        default: Cell::new(self.per_second, second, self.burst),
                        sender: Cell::new(self.sender_per_second, second, self.sender_burst),
                        lockout: self.failed_auth.map(|n| Cell::new(n, Duration::from_secs(60), n)),
                        fallback: fallback_classes,
                    }
                }),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn limiter(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter::builder()
            .per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
            .burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
            .build()
    }

    fn refused(v: &Result<IpAddr, Rejection>) -> Option<(RejectionKind, Option<Duration>)> {
        v.as_ref().err().map(|r| (r.kind(), r.retry_after()))
    }

    #[test]
    fn burst_then_429_with_a_wait() {
        let l = limiter(1, 3);
        let h = HeaderMap::new();
        for _ in 0..3 {
            assert!(refused(&l.check(ip("127.0.0.2"), &h)).is_none());
        }
        let (kind, wait) =
            refused(&l.check(ip("127.0.0.2"), &h)).unwrap_or((RejectionKind::InvalidJson, None));
        assert_eq!(kind, RejectionKind::RateLimited);
        assert!(wait.is_some_and(|w| w > Duration::ZERO && w <= Duration::from_secs(1)));
        // Another client has its own quota.
        assert!(refused(&l.check(ip("127.0.0.3"), &h)).is_none());
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let l = limiter(1, 1);
        let h = HeaderMap::new();
        assert!(refused(&l.check(ip("2001:db8:1:2::1"), &h)).is_none());
        assert!(refused(&l.check(ip("2001:db8:1:2::ffff"), &h)).is_some());
        assert!(refused(&l.check(ip("2001:db8:1:3::1"), &h)).is_none());
    }

    #[test]
    fn failed_authentications_lock_out_only_that_client() {
        let l = RateLimiter::builder()
            .failed_authentications_per_minute(NonZeroU32::new(3))
            .build();
        let h = HeaderMap::new();
        let bad = ip("127.0.0.9");
        for _ in 0..2 {
            l.failed_authentication(bad);
            assert!(refused(&l.check(bad, &h)).is_none());
        }
        // The third failure spends the quota: no fourth guess is checked.
        l.failed_authentication(bad);
        let verdict = refused(&l.check(bad, &h));
        assert_eq!(
            verdict.map(|v| v.0),
            Some(RejectionKind::TooManyFailedAuthentications)
        );
        assert!(verdict.and_then(|v| v.1).is_some_and(|w| w > Duration::ZERO));
        assert!(refused(&l.check(ip("127.0.0.10"), &h)).is_none());
    }

    #[test]
    fn tracked_clients_stay_bounded_and_overflow_shares_a_quota() {
        let l = RateLimiter::builder()
            .per_second(NonZeroU32::MIN)
            .burst(NonZeroU32::new(1_000_000).unwrap_or(NonZeroU32::MIN))
            .max_tracked_clients(NonZeroUsize::new(1_000).unwrap_or(NonZeroUsize::MIN))
            .build();
        let h = HeaderMap::new();
        for i in 0..20_000u32 {
            let _ = l.check(IpAddr::from(i.to_be_bytes()), &h);
        }
        assert!(l.tracked_clients() <= 1_000, "{}", l.tracked_clients());
    }

    #[test]
    fn outside_the_sender_networks_refunds_are_off_by_default() {
        let l = limiter(1, 2);
        let h = HeaderMap::new();
        let peer = ip("127.0.0.3");
        for _ in 0..2 {
            let Ok((_, charge)) = l.admit(peer, &h) else {
                panic!("within the burst");
            };
            l.refund(charge);
        }
        assert_eq!(
            refused(&l.check(peer, &h)).map(|r| r.0),
            Some(RejectionKind::RateLimited),
            "every request counts for an unknown client"
        );
    }

    #[test]
    fn refunded_requests_never_spend_the_quota() {
        let l = RateLimiter::builder()
            .per_second(NonZeroU32::MIN)
            .burst(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN))
            .refund_verified_deliveries(true)
            .build();
        let h = HeaderMap::new();
        let peer = ip("127.0.0.2");
        for i in 0..500 {
            let Ok((_, charge)) = l.admit(peer, &h) else {
                panic!("refunded request {i} refused");
            };
            l.refund(charge);
        }
        // Two in flight at once is the burst; unrefunded requests are
        // charged as ever.
        assert!(refused(&l.check(peer, &h)).is_none());
        assert!(refused(&l.check(peer, &h)).is_none());
        assert_eq!(
            refused(&l.check(peer, &h)).map(|v| v.0),
            Some(RejectionKind::RateLimited)
        );
    }

    #[test]
    fn sender_networks_get_their_own_quota_per_address() {
        let l = RateLimiter::builder()
            .per_second(NonZeroU32::MIN)
            .burst(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN))
            .sender_networks(
                Networks::parse("127.0.1.0/24, 2001:db8:5::/48").unwrap_or_else(|_| Networks::none()),
            )
            .sender_per_second(NonZeroU32::MIN)
            .sender_burst(NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN))
            .build();
        let h = HeaderMap::new();
        let count = |peer: IpAddr| (0..20).filter(|_| l.check(peer, &h).is_ok()).count();
        assert_eq!(count(ip("127.0.1.7")), 5);
        assert_eq!(count(ip("127.0.1.8")), 5, "per address, not per network");
        assert_eq!(count(ip("::ffff:127.0.1.9")), 5);
        assert_eq!(count(ip("2001:db8:5:1::1")), 5);
        assert_eq!(count(ip("127.0.2.7")), 2);
        assert_eq!(count(ip("2001:db8:6::1")), 2);
        let shown = format!("{l:?}");
        assert!(
            shown.contains("sender_networks: Networks(127.0.1.0/24, 2001:db8:5::/48)"),
            "{shown}"
        );
        assert!(shown.contains("sender_burst: Some(5)"), "{shown}");
        assert_eq!(l.tracked_clients(), 6);
        // Without sender networks, nobody is in the class.
        let plain = limiter(1, 2);
        assert_eq!(
            (0..20)
                .filter(|_| plain.check(ip("127.0.1.7"), &h).is_ok())
                .count(),
            2
        );
    }

    #[test]
    fn the_lockout_applies_inside_the_sender_networks() {
        let l = RateLimiter::builder()
            .sender_networks(Networks::parse("127.0.1.0/24").unwrap_or_else(|_| Networks::none()))
            .failed_authentications_per_minute(NonZeroU32::new(2))
            .build();
        let h = HeaderMap::new();
        let sender = ip("127.0.1.1");
        l.failed_authentication(sender);
        l.failed_authentication(sender);
        assert_eq!(
            refused(&l.check(sender, &h)).map(|v| v.0),
            Some(RejectionKind::TooManyFailedAuthentications)
        );
    }
}
