//! Quotas and the failed-authentication lockout shared through Redis
//! (feature `redis`): see [`RateLimiterBuilder::shared`](super::RateLimiterBuilder::shared).

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::Script;

use crate::client_ip::IpKey;
use crate::fleet::RedisConnection;

/// The default prefix of the limiter's keys.
pub(super) const DEFAULT_PREFIX: &str = "webhook-guard:rate:";

/// Most clients remembered in each local cache of Redis's refusals.
const MAX_CACHED: usize = 100_000;

/// While Redis is unreachable, how often one request tries it again; the
/// others apply the fallback at once instead of each waiting for the
/// connection's timeout.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// What a shared [`RateLimiter`](super::RateLimiter) does while Redis is
/// unreachable. Every switch to it and back is logged once (`WARN`, then
/// `INFO`), and [`RateLimiter::shared_fallback_active`](super::RateLimiter::shared_fallback_active)
/// tells the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisFallback {
    /// Each replica limits on its own, at its share of the quota: the
    /// configured `per_second` and `burst` divided by `replicas` (at least
    /// 1). `replicas: 1` lets each replica grant the whole quota, so a
    /// client spreading over N replicas gets N times it while Redis is
    /// down. The default, with `replicas: 1`.
    Local {
        /// How many replicas share the quota.
        replicas: NonZeroU32,
    },
    /// No limit while Redis is down (the local front check still applies
    /// the whole quota per replica).
    Allow,
    /// Every request is refused 429 `rate_limited` while Redis is down.
    Deny,
}

impl Default for RedisFallback {
    fn default() -> Self {
        Self::Local {
            replicas: NonZeroU32::MIN,
        }
    }
}

/// One client's quota in GCRA terms, in microseconds: the emission
/// interval and the tolerance (`interval * (burst - 1)`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Cell {
    interval_us: u64,
    tolerance_us: u64,
}

impl Cell {
    /// `burst` requests at once, `count` per `period` sustained.
    pub(super) fn new(count: NonZeroU32, period: Duration, burst: NonZeroU32) -> Self {
        let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
        let interval_us = (period_us / u64::from(count.get())).max(1);
        Self {
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(burst.get()) - 1),
        }
    }
}

/// `KEYS[1]` the client's quota, `KEYS[2]` its failed-authentication
/// quota (same hash slot); `ARGV` the quota's interval and tolerance, the
/// lockout's (interval 0: no lockout), all in µs. Returns `{0, 0}`
/// (admitted and charged), `{1, wait_ms}` (over quota) or `{2, wait_ms}`
/// (locked out). The server's clock (`TIME`) decides, so replicas whose
/// clocks differ agree.
const ADMIT_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local aT = tonumber(ARGV[3])
if aT > 0 then
  local atat = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  local wait = atat - tonumber(ARGV[4]) - now
  if wait > 0 then return {2, math.ceil(wait / 1000)} end
end
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local wait = tat - tau - now
if wait > 0 then return {1, math.ceil(wait / 1000)} end
local new = tat + T
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.ceil((new - now) / 1000) + 1)
return {0, 0}
";

/// `KEYS[1]` a failed-authentication quota; `ARGV` its interval and
/// tolerance (µs). Charges one failure; returns how long the client is now
/// locked out in ms (0: not locked out).
const FAIL_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
if tat - tau - now <= 0 then
  tat = tat + T
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
local wait = tat - tau - now
if wait > 0 then return math.ceil(wait / 1000) end
return 0
";

/// `KEYS[1]` a quota; `ARGV[1]` its interval (µs). Gives one charge back,
/// never below the present.
const REFUND_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = (tonumber(v) or 0) - tonumber(ARGV[1])
if tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
return 1
";

/// What the shared check decided.
pub(super) enum Verdict {
    Admitted,
    Limited(Duration),
    LockedOut(Duration),
    /// Redis did not answer: the caller applies the fallback.
    Unreachable,
}

/// The Redis side of a shared limiter.
pub(super) struct Shared {
    conn: RedisConnection,
    prefix: String,
    pub(super) fallback: RedisFallback,
    admit: Script,
    fail: Script,
    refund: Script,
    /// "Refused until" per client and quota, so a flood from one client
    /// costs no Redis round trip per request.
    limited: Mutex<HashMap<(IpKey, bool), Instant>>,
    locked: Mutex<HashMap<IpKey, Instant>>,
    /// Whether the last call found Redis unreachable.
    down: AtomicBool,
    /// When Redis was last found unreachable (see [`PROBE_EVERY`]).
    failed_at: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Remembers `key` as refused until `until`, within the cache's bound.
fn remember<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Instant>>, key: K, until: Instant) {
    let mut map = lock(map);
    if map.len() >= MAX_CACHED {
        let now = Instant::now();
        map.retain(|_, t| *t > now);
        if map.len() >= MAX_CACHED {
            return;
        }
    }
    map.insert(key, until);
}

/// How long `key` is still refused, if it is.
fn cached<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Instant>>, key: &K) -> Option<Duration> {
    let mut map = lock(map);
    let until = *map.get(key)?;
    let now = Instant::now();
    if until > now {
        return Some(until - now);
    }
    map.remove(key);
    None
}

impl Shared {
    pub(super) fn new(conn: RedisConnection, prefix: String, fallback: RedisFallback) -> Self {
        Self {
            conn,
            prefix,
            fallback,
            admit: Script::new(ADMIT_LUA),
            fail: Script::new(FAIL_LUA),
            refund: Script::new(REFUND_LUA),
            limited: Mutex::new(HashMap::new()),
            locked: Mutex::new(HashMap::new()),
            down: AtomicBool::new(false),
            failed_at: Mutex::new(None),
        }
    }

    /// The key of `client`'s quota `which` (`d` default, `s` sender, `a`
    /// failed authentications): the client in a hash tag, so a client's
    /// keys share one Cluster slot.
    fn key(&self, client: IpKey, which: char) -> String {
        let mut name = String::with_capacity(self.prefix.len() + 24);
        name.push_str(&self.prefix);
        let _ = match client {
            IpKey::V4(v4) => write!(name, "{{4:{v4:08x}}}:{which}"),
            IpKey::V6(v6) => write!(name, "{{6:{v6:016x}}}:{which}"),
        };
        name
    }

    pub(super) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Whether to skip Redis now: it was found unreachable less than
    /// [`PROBE_EVERY`] ago (one caller per period probes it again).
    fn skip(&self) -> bool {
        if !self.is_down() {
            return false;
        }
        let mut failed_at = lock(&self.failed_at);
        match *failed_at {
            Some(at) if at.elapsed() < PROBE_EVERY => true,
            _ => {
                // This caller probes; the others keep skipping meanwhile.
                *failed_at = Some(Instant::now());
                false
            }
        }
    }

    /// Records whether Redis answered, logging each switch once.
    fn reached(&self, ok: bool, error: Option<&dyn fmt::Display>) {
        if !ok {
            *lock(&self.failed_at) = Some(Instant::now());
        }
        let was_down = self.down.swap(!ok, Ordering::Relaxed);
        if was_down == ok {
            if ok {
                tracing::info!(target: "webhook_guard", "the shared rate limiter reaches Redis again");
            } else {
                tracing::warn!(
                    target: "webhook_guard",
                    fallback = ?self.fallback,
                    error = error.map(tracing::field::display),
                    "the shared rate limiter cannot reach Redis; applying its fallback"
                );
            }
        }
    }

    /// Charges `client`'s quota `quota` in Redis, after checking its
    /// lockout (`lockout`, when there is one).
    pub(super) async fn admit(
        &self,
        client: IpKey,
        sender: bool,
        quota: Cell,
        lockout: Option<Cell>,
    ) -> Verdict {
        if let Some(wait) = cached(&self.locked, &client) {
            return Verdict::LockedOut(wait);
        }
        if let Some(wait) = cached(&self.limited, &(client, sender)) {
            return Verdict::Limited(wait);
        }
        if self.skip() {
            return Verdict::Unreachable;
        }
        let key = self.key(client, if sender { 's' } else { 'd' });
        let auth = self.key(client, 'a');
        let lockout = lockout.unwrap_or(Cell {
            interval_us: 0,
            tolerance_us: 0,
        });
        let script = &self.admit;
        let (key, auth) = (&key, &auth);
        let answer = self
            .conn
            .run(|mut conn| async move {
                script
                    .key(key)
                    .key(auth)
                    .arg(quota.interval_us)
                    .arg(quota.tolerance_us)
                    .arg(lockout.interval_us)
                    .arg(lockout.tolerance_us)
                    .invoke_async::<(i64, i64)>(&mut conn)
                    .await
            })
            .await;
        let (code, wait_ms) = match answer {
            Ok(answer) => {
                self.reached(true, None);
                answer
            }
            Err(e) => {
                self.reached(false, Some(&e));
                return Verdict::Unreachable;
            }
        };
        let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0).max(1));
        match code {
            1 => {
                remember(&self.limited, (client, sender), Instant::now() + wait);
                Verdict::Limited(wait)
            }
            2 => {
                remember(&self.locked, client, Instant::now() + wait);
                Verdict::LockedOut(wait)
            }
            _ => Verdict::Admitted,
        }
    }

    /// Charges a failed authentication to `client`.
    pub(super) async fn failed(&self, client: IpKey, lockout: Cell) {
        if self.skip() {
            return;
        }
        let key = &self.key(client, 'a');
        let script = &self.fail;
        let answer = self
            .conn
            .run(|mut conn| async move {
                script
                    .key(key)
                    .arg(lockout.interval_us)
                    .arg(lockout.tolerance_us)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await;
        match answer {
            Ok(wait_ms) => {
                self.reached(true, None);
                if wait_ms > 0 {
                    let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(1));
                    remember(&self.locked, client, Instant::now() + wait);
                }
            }
            Err(e) => self.reached(false, Some(&e)),
        }
    }

    /// Gives back one charge of `client`'s quota.
    pub(super) async fn refund(&self, client: IpKey, sender: bool, quota: Cell) {
        let key = &self.key(client, if sender { 's' } else { 'd' });
        let script = &self.refund;
        let answer = self
            .conn
            .run(|mut conn| async move {
                script
                    .key(key)
                    .arg(quota.interval_us)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await;
        if answer.is_ok() {
            lock(&self.limited).remove(&(client, sender));
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("prefix", &self.prefix)
            .field("fallback", &self.fallback)
            .field("down", &self.is_down())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_match_the_local_quota() {
        let per_second = NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN);
        let cell = Cell::new(per_second, Duration::from_secs(1), burst);
        assert_eq!(cell.interval_us, 20_000);
        assert_eq!(cell.tolerance_us, 20_000 * 99);
        let one = Cell::new(NonZeroU32::MIN, Duration::from_secs(60), NonZeroU32::MIN);
        assert_eq!((one.interval_us, one.tolerance_us), (60_000_000, 0));
    }

    #[test]
    fn keys_hash_tag_the_client() {
        let conn = RedisConnection::builder("redis://127.0.0.1:1/").build();
        let Ok(conn) = conn else { panic!("url") };
        let shared = Shared::new(conn, "p:".to_owned(), RedisFallback::default());
        assert_eq!(shared.key(IpKey::V4(0x7f00_0001), 'd'), "p:{4:7f000001}:d");
        assert_eq!(shared.key(IpKey::V6(1), 'a'), "p:{6:0000000000000001}:a");
    }
}
