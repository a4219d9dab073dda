//! Per-client rate limiting, applied before anything else.
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
//!    `too_many_failed_authentications`;
//! 3. a client over its quota gets 429 `rate_limited`;
//! 4. otherwise the request goes on, with [`ClientIp`](crate::ClientIp) and axum's
//!    `ConnectInfo<SocketAddr>` in its extensions.
//!
//! After the response: if it is a 401 from the [`Verifier`](crate::Verifier)
//! (its [`Rejection`] is in the response extensions), the client's
//! *failed-authentication* quota is charged. That quota is much stricter
//! (default 20 a minute) and throttles signature guessing and timing
//! probes, while the real sender, whose requests verify, never touches it.
//!
//! Every 429 is problem+json with an integer `Retry-After` of at least 1.
//!
//! # Memory
//!
//! The limiter forgets idle clients (`retain_recent` and `shrink_to_fit`,
//! at most once a second) and tracks about
//! [`max_tracked_clients`](RateLimiterBuilder::max_tracked_clients) (it
//! measures every 256 requests, so it may overshoot by that many). When a
//! flood of distinct addresses fills it with active clients, the requests
//! share one overflow quota until room frees up, so memory stays bounded
//! and the flood stays throttled.
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
//! let limiter = RateLimiter::builder()
//!     .per_second(NonZeroU32::new(50).unwrap())
//!     .burst(NonZeroU32::new(100).unwrap())
//!     .trusted_proxies(Networks::parse("10.0.0.0/8")?) // your load balancers
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
use governor::middleware::{NoOpMiddleware, RateLimitingMiddleware, StateInformationMiddleware};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use http::HeaderMap;

use crate::client_ip::{ClientIpConfig, IpKey};
use crate::{Networks, ProxyHeader, Rejection, RejectionKind};

mod service;

pub use service::{IntoMakeServiceWithRateLimit, RateLimit, ResponseFuture};

/// Default sustained rate per client: 50 requests a second.
pub const DEFAULT_PER_SECOND: u32 = 50;
/// Default burst per client: 100 requests.
pub const DEFAULT_BURST: u32 = 100;
/// Default failed authentications allowed per client per minute.
pub const DEFAULT_FAILED_AUTH_PER_MINUTE: u32 = 20;
/// Default bound on tracked clients (per quota).
pub const DEFAULT_MAX_TRACKED_CLIENTS: usize = 100_000;

/// How often the saturation of the keyed state is measured, in calls.
const MEASURE_EVERY: u64 = 256;
/// Least time between two sweeps of idle clients.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Per-client rate limiting. Cheap to clone (an `Arc`); clones share the
/// same counters. See the [module docs](self).
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    client: ClientIpConfig,
    requests: Bounded,
    overflow: DefaultDirectRateLimiter,
    failures: Option<Failures>,
    per_second: NonZeroU32,
    burst: NonZeroU32,
}

type GovernorInstant = <DefaultClock as governor::clock::Clock>::Instant;

/// A keyed limiter whose memory is bounded.
struct Bounded<M: RateLimitingMiddleware<GovernorInstant> = NoOpMiddleware<GovernorInstant>> {
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

impl Bounded {
    fn new(quota: Quota, max: usize) -> Self {
        Self::with(DefaultKeyedRateLimiter::keyed(quota), max)
    }
}

impl<M> Bounded<M>
where
    M: RateLimitingMiddleware<GovernorInstant, NegativeOutcome = governor::NotUntil<GovernorInstant>>,
{
    /// Checks `key`; `None` means the keyed state is full and the caller
    /// must fall back to the overflow quota.
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
    /// burst of 100 per client, no trusted proxies, 20 failed
    /// authentications a minute, 100 000 tracked clients.
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder {
            per_second: NonZeroU32::new(DEFAULT_PER_SECOND).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(DEFAULT_BURST).unwrap_or(NonZeroU32::MIN),
            trusted: Networks::none(),
            header: ProxyHeader::default(),
            failed_auth: NonZeroU32::new(DEFAULT_FAILED_AUTH_PER_MINUTE),
            max_tracked: NonZeroUsize::new(DEFAULT_MAX_TRACKED_CLIENTS).unwrap_or(NonZeroUsize::MIN),
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

    /// How many clients the request quota tracks right now.
    pub fn tracked_clients(&self) -> usize {
        self.inner.requests.limiter.len()
    }

    /// Forgets clients whose quota is full again, now. The limiter does
    /// this by itself; this is for measurements and tests.
    pub fn forget_idle_clients(&self) {
        self.inner.requests.sweep_now();
        if let Some(f) = &self.inner.failures {
            f.quota.sweep_now();
        }
    }

    /// Decides one request from socket peer `peer`, before its body is
    /// read: the resolved client address, or the 429 to answer. The
    /// services call this for you; it is public for other servers and for
    /// benchmarks.
    ///
    /// # Errors
    ///
    /// A [`Rejection`] of kind [`RejectionKind::RateLimited`] or
    /// [`RejectionKind::TooManyFailedAuthentications`], with its
    /// `retry_after` set.
    pub fn check(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, Rejection> {
        let inner = &*self.inner;
        let ip = inner.client.resolve(peer, headers);
        let key = IpKey::of(ip);
        if let Some(wait) = inner.failures.as_ref().and_then(|f| f.locked_out(&key)) {
            return Err(Rejection::new(
                RejectionKind::TooManyFailedAuthentications,
                "too many requests from this client failed authentication; retry later",
            )
            .with_retry_after(wait));
        }
        let outcome = match inner.requests.check(&key) {
            Some(outcome) => outcome,
            None => inner
                .overflow
                .check()
                .map_err(|not_until| not_until.wait_time_from(inner.overflow.clock().now())),
        };
        match outcome {
            Ok(()) => Ok(ip),
            Err(wait) => Err(Rejection::new(
                RejectionKind::RateLimited,
                format!(
                    "this client is over its quota of {} requests a second (burst {}); retry later",
                    inner.per_second, inner.burst
                ),
            )
            .with_retry_after(wait)),
        }
    }

    /// Charges a failed authentication to `ip`.
    pub(crate) fn failed_authentication(&self, ip: IpAddr) {
        if let Some(f) = &self.inner.failures {
            f.charge(&IpKey::of(ip));
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_second", &self.inner.per_second)
            .field("burst", &self.inner.burst)
            .field("trusted_proxies", &self.inner.client.trusted)
            .field("proxy_header", &self.inner.client.header)
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
    failed_auth: Option<NonZeroU32>,
    max_tracked: NonZeroUsize,
}

impl RateLimiterBuilder {
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

    /// The limiter. Every setting is typed, so this cannot fail.
    pub fn build(self) -> RateLimiter {
        let quota = Quota::per_second(self.per_second).allow_burst(self.burst);
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
        RateLimiter {
            inner: Arc::new(Inner {
                client: ClientIpConfig {
                    trusted: self.trusted,
                    header: self.header,
                },
                requests: Bounded::new(quota, max),
                overflow: DefaultDirectRateLimiter::direct(quota),
                failures,
                per_second: self.per_second,
                burst: self.burst,
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
        assert!(
            l.tracked_clients() <= 1_000 + MEASURE_EVERY as usize,
            "{}",
            l.tracked_clients()
        );
    }
}
