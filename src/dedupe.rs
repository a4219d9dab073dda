//! Deduplication of deliveries, with leases.
//!
//! Webhook senders retry (Stripe for three days), attackers replay captured
//! requests, and receivers run as several instances behind a load
//! balancer. With a [`Dedupe`] on a route
//! ([`VerifierBuilder::dedupe`](crate::VerifierBuilder::dedupe)) each
//! verified delivery is *claimed* in a [`DedupeStore`] before the handler
//! runs:
//!
//! | claim | answer |
//! |---|---|
//! | [`Claim::Acquired`] | the handler runs; on success (a status below 400) the claim is *completed*, otherwise (a 4xx or 5xx, an error, a dropped future) it is *released* so the provider's retry is processed |
//! | [`Claim::AlreadyProcessed`] | 200 `{"status":"duplicate","id":…,"type":…}`; the handler does not run |
//! | [`Claim::InProgress`] | 409 problem+json with `Retry-After`: another request is handling the same delivery right now |
//! | the store failed ([`StoreError`]) | 503 problem+json with `Retry-After`; nothing runs |
//!
//! The claim happens only **after** the signature is verified: a forged
//! request carrying a real delivery id never touches the store, so it
//! cannot block the real delivery.
//!
//! # Keys
//!
//! Keys come only from signed bytes, and are namespaced per route:
//!
//! | scheme | key |
//! |---|---|
//! | Standard Webhooks | the `webhook-id` header (it is signed) |
//! | Stripe | the body's `id` |
//! | Slack | the body's `event_id`, else a SHA-256 of the body |
//! | GitHub, Shopify | a SHA-256 of the body: their delivery-id headers are **not** signed, so a captured body replayed under a fresh id is still a duplicate |
//! | custom | the delivery-id header when the scheme signs it, else a SHA-256 of the body |
//!
//! The namespace and the key are hashed together with SHA-256 into a
//! fixed-length [`DedupeKey`] before any store sees them, so nothing a
//! client sends reaches a store verbatim.
//!
//! # Times
//!
//! A [`Retention`] holds three durations:
//!
//! - the **lease**: how long a claim stays [`Claim::InProgress`] if it is
//!   never completed or released (the process died). Make it longer than
//!   your slowest handler. Default 60 s.
//! - the **replay window**: how long a processed key is *guaranteed* to be
//!   remembered. It must be at least the route's timestamp tolerance and
//!   defaults to twice it (a timestamp accepted up to the tolerance in the
//!   future stays acceptable for twice the tolerance).
//! - the **idempotency retention**: how long a processed key is kept when
//!   there is room. Default 72 hours, since Stripe retries for three days.
//!
//! ```
//! use std::time::Duration;
//! use webhook_guard::dedupe::{Dedupe, MemoryStore};
//! use webhook_guard::{Scheme, Verifier};
//!
//! let store = MemoryStore::new(); // share one store between routes
//! let stripe = Verifier::builder(Scheme::stripe())
//!     .secret("whsec_test_secret")
//!     .dedupe(
//!         Dedupe::builder(store.clone(), "stripe")
//!             .retention(Duration::from_secs(72 * 3600))
//!             .build()?,
//!     )
//!     .build()?;
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::observe::Observer;
use crate::ConfigError;

mod guard;
pub(crate) use guard::{run, ClaimTicket};
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreBuilder};

pub use memory::{MemoryStore, MemoryStoreBuilder, DEFAULT_MAX_ENTRIES};

/// Default lease of a claim.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Default idempotency retention: 72 hours.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(72 * 3600);

/// The future a [`DedupeStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A fixed-length dedupe key: a SHA-256 of the route's namespace and the
/// delivery's signed key. What a store keeps.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DedupeKey([u8; 32]);

/// Where a key came from; part of the hash, so an id can never collide
/// with a body digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeySource<'a> {
    /// A signed delivery id.
    Id(&'a [u8]),
    /// The whole verified body.
    Body(&'a [u8]),
}

impl DedupeKey {
    /// Derives the key of a delivery whose signed id is `id`, on the route
    /// namespaced `namespace`. Stores never see `id` itself.
    ///
    /// ```
    /// use webhook_guard::dedupe::DedupeKey;
    ///
    /// let a = DedupeKey::from_id("stripe", b"evt_1");
    /// assert_eq!(a, DedupeKey::from_id("stripe", b"evt_1"));
    /// assert_ne!(a, DedupeKey::from_id("stripe-eu", b"evt_1"));
    /// assert_eq!(a.to_hex().len(), 64);
    /// ```
    pub fn from_id(namespace: &str, id: &[u8]) -> Self {
        Self::derive(namespace, KeySource::Id(id))
    }

    /// Derives the key of a delivery identified by its whole verified body.
    pub fn from_body(namespace: &str, body: &[u8]) -> Self {
        Self::derive(namespace, KeySource::Body(body))
    }

    /// A key from its stored bytes (a durable store reading its file).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn from_stored(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(crate) fn derive(namespace: &str, source: KeySource<'_>) -> Self {
        let mut h = Sha256::new();
        h.update(b"webhook-guard/dedupe/v1\0");
        h.update((namespace.len() as u64).to_be_bytes());
        h.update(namespace.as_bytes());
        match source {
            KeySource::Id(id) => {
                h.update(b"i");
                h.update(id);
            }
            KeySource::Body(body) => {
                h.update(b"b");
                h.update(body);
            }
        }
        Self(h.finalize().into())
    }

    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as 64 lowercase hex digits, e.g. for a Redis key name.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for DedupeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DedupeKey({}…)", hex::encode(&self.0[..6]))
    }
}

/// Identifies one claim, so that only its owner completes or releases it.
/// Random, 128 bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct LeaseToken(u128);

impl LeaseToken {
    /// A fresh token, unique across processes: a random 64-bit
    /// per-process prefix (read once from the OS) and a 64-bit counter.
    /// Tokens only need to be unique, not secret: no client ever sees one.
    pub fn random() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::OnceLock;
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| {
            let mut bytes = [0u8; 8];
            if getrandom::fill(&mut bytes).is_err() {
                // The OS source failing is vanishingly rare; fall back to
                // the process id and the time, which still differ between
                // the processes sharing a store.
                use std::hash::{BuildHasher, Hasher};
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u32(std::process::id());
                h.write_u128(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or_default(),
                );
                return h.finish();
            }
            u64::from_le_bytes(bytes)
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self((u128::from(prefix) << 64) | u128::from(n))
    }

    /// The token's value, for stores that persist it.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// A token from a persisted value.
    pub fn from_u128(value: u128) -> Self {
        Self(value)
    }
}

/// The answer to [`DedupeStore::claim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key was free (never seen, expired, or released): it is now held
    /// by the caller's token until the lease ends.
    Acquired,
    /// Another claim holds the key and has neither completed nor released
    /// it; its lease ends in `retry_after` (at most).
    InProgress {
        /// When the holder's lease ends, at the latest.
        retry_after: Duration,
    },
    /// The key was completed and is still remembered.
    AlreadyProcessed,
}

/// How long a store keeps a key. See the [module docs](self#times).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    lease: Duration,
    replay_window: Duration,
    idempotency: Duration,
}

impl Retention {
    /// The three durations; `replay_window` is raised to at least one
    /// second, `idempotency` to at least `replay_window`, and `lease` to at
    /// least one second.
    pub fn new(lease: Duration, replay_window: Duration, idempotency: Duration) -> Self {
        let second = Duration::from_secs(1);
        let replay_window = replay_window.max(second);
        Self {
            lease: lease.max(second),
            replay_window,
            idempotency: idempotency.max(replay_window),
        }
    }

    /// How long an uncompleted claim holds its key.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How long a completed key is guaranteed to be remembered.
    pub fn replay_window(&self) -> Duration {
        self.replay_window
    }

    /// How long a completed key is kept when there is room.
    pub fn idempotency(&self) -> Duration {
        self.idempotency
    }
}

/// Where claims live.
///
/// # Atomicity contract
///
/// Every implementation must guarantee, for each key, even when many
/// processes share the store:
///
/// 1. **`claim` is atomic.** Of any number of concurrent `claim`s of a free
///    key, exactly one returns [`Claim::Acquired`]; the others return
///    [`Claim::InProgress`] (or [`Claim::AlreadyProcessed`] once it is
///    completed). Checking and taking the key is one indivisible step
///    (a mutex, `SET NX`, a script), never a read followed by a write.
/// 2. **A claim is owned by its token.** `complete` and `release` act only
///    if the key is still held by the same [`LeaseToken`]; otherwise they
///    do nothing and return `Ok`. (A handler that outlived its lease must
///    not release a claim another request now holds.) `complete` on a key
///    whose lease has expired and that nobody else holds records it as
///    processed anyway: the work was done.
/// 3. **Leases end.** A claim that is neither completed nor released is
///    free again after [`Retention::lease`], so a crashed receiver does not
///    block a delivery forever.
/// 4. **Completed keys are remembered** for at least
///    [`Retention::replay_window`]. A store that runs out of room must fail
///    ([`StoreError::full`]) rather than forget a key younger than that.
///    After [`Retention::idempotency`] it may forget.
/// 5. **Failures are errors, not answers.** When the store cannot tell
///    (unreachable, timed out), it returns a [`StoreError`]; it never
///    guesses [`Claim::Acquired`]. The layer answers 503 and runs nothing.
///
/// The conformance suite in the crate's tests runs the same cases against
/// every store.
pub trait DedupeStore: Send + Sync + 'static {
    /// Takes `key` for `token` for [`Retention::lease`], if it is free.
    fn claim<'a>(&'a self, key: &'a DedupeKey, token: LeaseToken, times: Retention)
        -> StoreFuture<'a, Claim>;

    /// Marks `key` processed, if `token` still holds it (or nobody does),
    /// and remembers it for the retention times.
    fn complete<'a>(&'a self, key: &'a DedupeKey, token: LeaseToken, times: Retention)
        -> StoreFuture<'a, ()>;

    /// Frees `key` if `token` still holds it, so the next delivery of the
    /// same key is processed.
    fn release<'a>(&'a self, key: &'a DedupeKey, token: LeaseToken) -> StoreFuture<'a, ()>;

    /// An identity shared with a
    /// [`QueueStorage`](crate::queue::QueueStorage) that can settle this
    /// store's claims inside its enqueue transaction (the same SQLite
    /// file), so a delivery is never stored without its key marked
    /// processed, nor the other way round. `None` (the default): no such
    /// storage.
    fn transaction_scope(&self) -> Option<usize> {
        None
    }
}

impl<S: DedupeStore + ?Sized> DedupeStore for Arc<S> {
    fn claim<'a>(
        &'a self,
        key: &'a DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> StoreFuture<'a, Claim> {
        (**self).claim(key, token, times)
    }

    fn complete<'a>(
        &'a self,
        key: &'a DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> StoreFuture<'a, ()> {
        (**self).complete(key, token, times)
    }

    fn release<'a>(&'a self, key: &'a DedupeKey, token: LeaseToken) -> StoreFuture<'a, ()> {
        (**self).release(key, token)
    }

    fn transaction_scope(&self) -> Option<usize> {
        (**self).transaction_scope()
    }
}

/// What kind of failure a [`StoreError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached or did not answer in time.
    Unavailable,
    /// The store is full of keys it must not forget yet.
    Full,
}

/// A dedupe store failed. Answered with 503 and `Retry-After`.
pub struct StoreError {
    kind: StoreErrorKind,
    retry_after: Duration,
    message: Cow<'static, str>,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl StoreError {
    /// The store could not be reached or answer; ask the sender to retry
    /// after `retry_after`.
    pub fn unavailable(message: impl Into<Cow<'static, str>>, retry_after: Duration) -> Self {
        Self {
            kind: StoreErrorKind::Unavailable,
            retry_after,
            message: message.into(),
            source: None,
        }
    }

    /// The store is full of keys younger than their replay window; room
    /// frees up in `retry_after`.
    pub fn full(retry_after: Duration) -> Self {
        Self {
            kind: StoreErrorKind::Full,
            retry_after,
            message: Cow::Borrowed("the dedupe store is full of keys it must still remember"),
            source: None,
        }
    }

    /// Attaches the underlying error. Its `Display` must not contain
    /// credentials.
    pub fn with_source(mut self, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The same failure described by `message` (what failed, in the
    /// caller's terms).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = message.into();
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// When the sender should retry.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreError")
            .field("kind", &self.kind)
            .field("retry_after", &self.retry_after)
            .field("message", &self.message)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_ref().map(|s| &**s as &(dyn Error + 'static))
    }
}

/// One route's deduplication: a store, the route's namespace and the
/// retention times. Cheap to clone. Build with [`Dedupe::builder`].
#[derive(Clone)]
pub struct Dedupe {
    store: Arc<dyn DedupeStore>,
    namespace: Arc<str>,
    lease: Duration,
    replay_window: Option<Duration>,
    idempotency: Duration,
    observer: Option<Arc<dyn Observer>>,
}

/// Builder for [`Dedupe`].
#[must_use]
pub struct DedupeBuilder {
    store: Arc<dyn DedupeStore>,
    namespace: String,
    lease: Duration,
    replay_window: Option<Duration>,
    idempotency: Duration,
    observer: Option<Arc<dyn Observer>>,
}

impl Dedupe {
    /// Deduplicates a route in `store`, under `namespace` (one per route,
    /// e.g. `"stripe"`; two routes with the same namespace share keys).
    pub fn builder(store: impl DedupeStore, namespace: impl Into<String>) -> DedupeBuilder {
        DedupeBuilder {
            store: Arc::new(store),
            namespace: namespace.into(),
            lease: DEFAULT_LEASE,
            replay_window: None,
            idempotency: DEFAULT_RETENTION,
            observer: None,
        }
    }

    /// The route's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(crate) fn store(&self) -> &Arc<dyn DedupeStore> {
        &self.store
    }

    /// Where the layer's store operations are reported.
    pub(crate) fn observer(&self) -> Option<&Arc<dyn Observer>> {
        self.observer.as_ref()
    }

    /// Reports to the route's `observer` unless this dedupe has its own.
    pub(crate) fn inherit_observer(&mut self, observer: &Arc<dyn Observer>) {
        if self.observer.is_none() {
            self.observer = Some(observer.clone());
        }
    }

    /// The times for a route whose timestamp tolerance is `tolerance`.
    pub(crate) fn retention(&self, tolerance: Duration) -> Result<Retention, ConfigError> {
        let window = match self.replay_window {
            Some(w) if w < tolerance => {
                return Err(ConfigError::InvalidDedupe {
                    reason: "the replay window is shorter than the route's timestamp tolerance",
                })
            }
            Some(w) => w,
            None => tolerance.saturating_mul(2),
        };
        if self.idempotency < window {
            return Err(ConfigError::InvalidDedupe {
                reason: "the idempotency retention is shorter than the replay window",
            });
        }
        Ok(Retention::new(self.lease, window, self.idempotency))
    }
}

impl fmt::Debug for Dedupe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedupe")
            .field("namespace", &self.namespace)
            .field("lease", &self.lease)
            .field("replay_window", &self.replay_window)
            .field("idempotency", &self.idempotency)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl DedupeBuilder {
    /// How long a claim holds its key if it is never completed or
    /// released. Default 60 s; at least one second.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a processed key is guaranteed to be remembered. Default:
    /// twice the route's timestamp tolerance; it may not be shorter than
    /// the tolerance.
    pub fn replay_window(mut self, window: Duration) -> Self {
        self.replay_window = Some(window);
        self
    }

    /// How long a processed key is kept when there is room. Default 72
    /// hours; it may not be shorter than the replay window.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.idempotency = retention;
        self
    }

    /// Reports the layer's store operations (claim, complete, release:
    /// their answer and latency) to `observer`; see
    /// [`observe`](crate::observe). Default: the observer of the route
    /// this dedupe is given to, if it has one.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidDedupe`] if the namespace is empty, the lease
    /// is under one second, or the retention is shorter than an explicit
    /// replay window. The replay window is checked against the tolerance
    /// when the [`Verifier`](crate::Verifier) is built.
    pub fn build(self) -> Result<Dedupe, ConfigError> {
        if self.namespace.trim().is_empty() {
            return Err(ConfigError::InvalidDedupe {
                reason: "the namespace is empty",
            });
        }
        if self.lease < Duration::from_secs(1) {
            return Err(ConfigError::InvalidDedupe {
                reason: "the lease must be at least one second",
            });
        }
        if self.replay_window.is_some_and(|w| w < Duration::from_secs(1)) {
            return Err(ConfigError::InvalidDedupe {
                reason: "the replay window must be at least one second",
            });
        }
        if self.replay_window.is_some_and(|w| self.idempotency < w) {
            return Err(ConfigError::InvalidDedupe {
                reason: "the idempotency retention is shorter than the replay window",
            });
        }
        Ok(Dedupe {
            store: self.store,
            namespace: Arc::from(self.namespace),
            lease: self.lease,
            replay_window: self.replay_window,
            idempotency: self.idempotency,
            observer: self.observer,
        })
    }
}

impl fmt::Debug for DedupeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupeBuilder")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least one.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_typed() {
        let id = DedupeKey::from_id("a", b"x");
        assert_ne!(id, DedupeKey::from_id("b", b"x"));
        assert_ne!(id, DedupeKey::from_body("a", b"x"));
        // The namespace length is hashed, so ("ab", "c") differs from ("a", "bc").
        assert_ne!(DedupeKey::from_id("ab", b"c"), DedupeKey::from_id("a", b"bc"));
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(7)), 7);
        assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(LeaseToken::random(), LeaseToken::random());
    }
}
