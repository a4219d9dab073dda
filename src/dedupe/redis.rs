//! The Redis dedupe store (feature `redis`): one set of keys shared by every
//! receiver behind a load balancer.
//!
//! Each key is one Redis string named `prefix + 64 hex digits` (the
//! [`DedupeKey`], never client data), holding either `p:<token>` (claimed,
//! expiring after the lease) or `d` (processed, expiring after the
//! idempotency retention). Every operation is one small Lua script, so
//! checking and changing a key is a single atomic step on the server.
//!
//! The store connects lazily, on first use, and reconnects by itself: it
//! can be built while Redis is down, answers [`StoreError`] (503 with
//! `Retry-After`) while it stays down, and resumes when it comes back.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::{Claim, DedupeKey, DedupeStore, LeaseToken, Retention, StoreError, StoreFuture};
use crate::fleet::RedisConnection;
use crate::ConfigError;

const DEFAULT_KEY_PREFIX: &str = "webhook-guard:dedupe:";
const UNREACHABLE: &str = "the Redis dedupe store is unreachable";

/// The largest TTL sent to Redis, in milliseconds (about 146 million
/// years): Redis rejects expiry times that overflow when added to its
/// clock, so longer durations saturate here.
const MAX_TTL_MS: u64 = 1 << 62;

/// `KEYS[1]` the key, `ARGV[1]` `p:<token>`, `ARGV[2]` the lease in ms.
/// Returns -1 (acquired), -2 (already processed) or the holder's remaining
/// lease in ms (at least 1).
const CLAIM_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return -1
end
if v == ARGV[1] then
  -- Our own claim, when a call is retried after its answer was lost.
  return -1
end
if v == 'd' then
  return -2
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  -- A claim without an expiry would block the key forever: give it a lease.
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(ARGV[2])
end
if ttl < 1 then
  return 1
end
return ttl
";

/// `KEYS[1]` the key, `ARGV[1]` `p:<token>`, `ARGV[2]` the idempotency
/// retention in ms. Marks the key processed if it is free or ours.
const COMPLETE_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] then
  redis.call('SET', KEYS[1], 'd', 'PX', ARGV[2])
  return 1
end
return 0
";

/// `KEYS[1]` the key, `ARGV[1]` `p:<token>`. Frees the key if it is ours.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// A [`DedupeStore`] in Redis, shared by every receiver that points at the
/// same server and key prefix. Cheap to clone; clones share one connection.
///
/// Build it with [`RedisStore::builder`]. Building parses the URL but does
/// **not** connect: the store connects on first use and reconnects by
/// itself, so a receiver can start while Redis is down. While Redis is
/// unreachable every operation fails within the
/// [timeout](RedisStoreBuilder::timeout) with an
/// [`Unavailable`](super::StoreErrorKind::Unavailable) [`StoreError`]
/// (the layer answers 503 with `Retry-After`, and runs nothing); service
/// resumes by itself when Redis is back. Call [`ping`](RedisStore::ping) at
/// start-up if you would rather fail fast.
///
/// # Keys
///
/// One Redis string per delivery, named `prefix` followed by the 64 hex
/// digits of its [`DedupeKey`] (nothing a client sent), holding
/// `p:<lease token>` while claimed (expiring after the lease) or `d` once
/// processed (expiring after the idempotency retention). Every operation is
/// a small Lua script, so claiming is atomic across all receivers. A
/// processed key lives for the idempotency retention, which is never
/// shorter than the replay window: the replay-window guarantee holds as
/// long as Redis keeps keys until they expire.
///
/// # Eviction
///
/// **Redis must not evict these keys early.** A key evicted under memory
/// pressure is a delivery forgotten, and a replay that gets through.
/// Configure the server with `maxmemory-policy noeviction` (writes then
/// fail when memory is full, which this store reports as a 503), or
/// `volatile-ttl` (evicts the keys closest to expiry first) on a server
/// whose other keys can spare it; never an `allkeys-*` or `volatile-lru`/
/// `volatile-lfu`/`volatile-random` policy shared with other data. Use a
/// persistent, replicated Redis if forgetting keys on a restart matters.
///
/// # Secrets
///
/// The URL may hold a password. Neither `Debug` (it shows only the key
/// prefix), nor [`ConfigError`], nor [`StoreError`] ever contain it.
///
/// ```no_run
/// use std::time::Duration;
/// use webhook_guard::dedupe::{Dedupe, RedisStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::builder("redis://:password@127.0.0.1:6379/0")
///     .key_prefix("billing:webhooks:")
///     .timeout(Duration::from_millis(300))
///     .build()?;
/// store.ping().await?; // optional: fail at start-up if Redis is down
///
/// // One store for every route; one namespace per route.
/// let stripe = Dedupe::builder(store.clone(), "stripe").build()?;
/// let github = Dedupe::builder(store, "github").build()?;
/// # let _ = (stripe, github);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: RedisConnection,
    prefix: String,
    claim: Script,
    complete: Script,
    release: Script,
}

/// Builder for [`RedisStore`], from [`RedisStore::builder`].
#[must_use]
pub struct RedisStoreBuilder {
    conn: crate::fleet::RedisConnectionBuilder,
    key_prefix: String,
}

impl RedisStore {
    /// Starts configuring a store for the server at `url`, e.g.
    /// `redis://127.0.0.1:6379/0`, `rediss://user:password@host:6380/0` or
    /// `redis+unix:///run/redis.sock`. The URL is parsed by
    /// [`build`](RedisStoreBuilder::build); nothing connects until first use.
    /// For a private CA, or to share one connection with the rate limiter
    /// and the queue, build a [`RedisConnection`] and use
    /// [`on`](Self::on).
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder {
            conn: RedisConnection::builder(url),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
        }
    }

    /// A store on `conn` (shared with the rate limiter and the queue),
    /// with the key prefix `key_prefix` (default
    /// `"webhook-guard:dedupe:"`, see [`RedisStoreBuilder::key_prefix`]).
    pub fn on(conn: RedisConnection, key_prefix: Option<&str>) -> Self {
        RedisStore {
            inner: Arc::new(Inner {
                conn,
                prefix: key_prefix.unwrap_or(DEFAULT_KEY_PREFIX).to_owned(),
                claim: Script::new(CLAIM_LUA),
                complete: Script::new(COMPLETE_LUA),
                release: Script::new(RELEASE_LUA),
            }),
        }
    }

    /// Connects (if not yet connected) and sends `PING`, within the
    /// timeout: a start-up check. Optional: the store connects by itself on
    /// first use.
    ///
    /// # Errors
    ///
    /// An [`Unavailable`](super::StoreErrorKind::Unavailable) [`StoreError`]
    /// if Redis cannot be reached or does not answer in time.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.inner.conn.ping().await
    }

    /// The Redis key of `key`: the prefix and 64 hex digits.
    fn redis_key(&self, key: &DedupeKey) -> String {
        let mut name = String::with_capacity(self.inner.prefix.len() + 64);
        name.push_str(&self.inner.prefix);
        name.push_str(&key.to_hex());
        name
    }

    async fn eval(
        &self,
        script: &Script,
        key: &DedupeKey,
        token: LeaseToken,
        ttl: Option<Duration>,
    ) -> Result<i64, StoreError> {
        let name = &self.redis_key(key);
        let value = &held_by(token);
        // Every script is idempotent for its token, so the connection's
        // one retry after a broken connection cannot double-claim.
        self.inner
            .conn
            .run(|mut conn| async move {
                let mut invocation = script.prepare_invoke();
                invocation.key(name).arg(value);
                if let Some(ttl) = ttl {
                    invocation.arg(ttl_ms(ttl));
                }
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await
            .map_err(|e| e.with_message(UNREACHABLE))
    }
}

/// The value of a key claimed by `token`: `p:` and 32 hex digits.
fn held_by(token: LeaseToken) -> String {
    format!("p:{:032x}", token.as_u128())
}

/// Milliseconds for `PX`: saturating, and never 0 (Redis rejects `PX 0`).
fn ttl_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MS)
}

impl DedupeStore for RedisStore {
    fn claim<'a>(
        &'a self,
        key: &'a DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> StoreFuture<'a, Claim> {
        Box::pin(async move {
            let lease = times.lease();
            let answer = self.eval(&self.inner.claim, key, token, Some(lease)).await?;
            Ok(match answer {
                -1 => Claim::Acquired,
                -2 => Claim::AlreadyProcessed,
                ms => Claim::InProgress {
                    retry_after: Duration::from_millis(u64::try_from(ms).unwrap_or(1).max(1)),
                },
            })
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> StoreFuture<'a, ()> {
        // The idempotency retention is at least the replay window, so the
        // key is remembered for the window as long as Redis does not evict
        // it (see the type's docs on eviction).
        Box::pin(async move {
            self.eval(&self.inner.complete, key, token, Some(times.idempotency()))
                .await
                .map(drop)
        })
    }

    fn release<'a>(&'a self, key: &'a DedupeKey, token: LeaseToken) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.eval(&self.inner.release, key, token, None).await.map(drop) })
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL or the client: they may hold a password.
        f.debug_struct("RedisStore")
            .field("key_prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// The prefix of every key name. Default `"webhook-guard:dedupe:"`.
    /// Give each application sharing a Redis its own prefix; receivers of
    /// the same application must use the same one to see each other's keys.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The longest an operation may take, connecting included, before it
    /// fails as unavailable (503). Default 500 ms. Also the connection and
    /// response timeouts of the underlying connection.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.conn = self.conn.timeout(timeout);
        self
    }

    /// The `Retry-After` suggested to the sender while Redis is
    /// unreachable. Default 5 s.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.conn = self.conn.retry_after(retry_after);
        self
    }

    /// Parses the URL and builds the store, without connecting.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStore`] if the URL does not parse or the
    /// timeout is zero. The reason never quotes the URL.
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        Ok(RedisStore::on(self.conn.build()?, Some(&self.key_prefix)))
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("RedisStoreBuilder")
            .field("key_prefix", &self.key_prefix)
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_saturate_and_are_never_zero() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_micros(10)), 1);
        assert_eq!(ttl_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(ttl_ms(Duration::MAX), MAX_TTL_MS);
    }

    #[test]
    fn tokens_are_fixed_length() {
        assert_eq!(
            held_by(LeaseToken::from_u128(1)),
            format!("p:{}1", "0".repeat(31))
        );
        assert_eq!(held_by(LeaseToken::from_u128(u128::MAX)).len(), 34);
    }

    #[test]
    fn keys_are_prefixed_hex() {
        let store = RedisStore::builder("redis://127.0.0.1:1/")
            .key_prefix("p:")
            .build();
        let key = DedupeKey::from_id("ns", b"evt_1");
        let name = store.map(|s| s.redis_key(&key)).unwrap_or_default();
        assert_eq!(name, format!("p:{}", key.to_hex()));
        assert_eq!(name.len(), 2 + 64);
    }

    #[test]
    fn bad_urls_never_quote_the_url() {
        for url in [
            "http://:hunter2@127.0.0.1:1/",
            "redis://:hunter2@127.0.0.1:1/notadb",
            "hunter2",
        ] {
            match RedisStore::builder(url).build() {
                Err(ConfigError::InvalidStore { reason }) => {
                    assert!(!reason.contains("hunter2"), "{reason}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn zero_timeout_is_rejected() {
        assert!(matches!(
            RedisStore::builder("redis://127.0.0.1/")
                .timeout(Duration::ZERO)
                .build(),
            Err(ConfigError::InvalidStore { .. })
        ));
    }
}
