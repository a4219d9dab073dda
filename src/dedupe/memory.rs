//! The in-memory dedupe store: the default, no setup, one process.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{Claim, DedupeKey, DedupeStore, LeaseToken, Retention, StoreError, StoreFuture};
use crate::clock::{Clock, SystemClock};

/// Default bound of a [`MemoryStore`]: 100 000 keys (about 25 MiB when full).
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

const SHARDS: usize = 16;

/// A [`DedupeStore`] in this process's memory. Cheap to clone; clones share
/// the same keys, so one store can serve every route.
///
/// It is bounded twice:
///
/// - **by time**: a completed key is dropped after its idempotency
///   retention, an abandoned claim after its lease;
/// - **by count**: at most [`max_entries`](MemoryStoreBuilder::max_entries)
///   keys, split evenly over 16 shards by key hash. When a key's shard is
///   full it evicts that shard's oldest keys that are past their replay
///   window; it **never** evicts a key younger than its replay window or a
///   live claim. If the shard holds only such keys, a new claim fails with
///   [`StoreError::full`] (503 and `Retry-After`) instead of forgetting
///   one, since forgetting it would let a replay through. Keys spread
///   evenly, so with only young keys this starts at roughly 85 % of the
///   bound: size the bound with that margin.
///
/// Each key costs about 220 bytes (measured with the `flood_memory`
/// bench), so the default bound of 100 000 keys is about 25 MiB at most. Only verified deliveries are claimed, so only the
/// real sender's volume fills it: size it for your peak deliveries per
/// replay window. Use `RedisStore` (feature `redis`)
/// when several receivers share the traffic.
///
/// ```
/// use std::num::NonZeroUsize;
/// use webhook_guard::dedupe::MemoryStore;
///
/// let store = MemoryStore::builder()
///     .max_entries(NonZeroUsize::new(1_000_000).unwrap())
///     .build();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Mutex<Shard>>,
    /// Each shard's bound; they add up to exactly `max_entries`.
    caps: Vec<usize>,
    clock: Arc<dyn Clock>,
}

/// Hashes a [`DedupeKey`] by folding its bytes.
///
/// Every key is a SHA-256 output (of the namespace and the delivery's
/// signed id or body), so its bytes are already uniformly spread and no
/// client can choose them: a keyed SipHash over them again would only add
/// cost to each of the map operations a claim makes.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _len: usize) {
        // The length prefix of the key's byte array: always 32.
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap = HashMap<DedupeKey, Entry, BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct Shard {
    map: KeyMap,
    /// Keys in the order they were claimed, with the generation of the
    /// claim; a reference whose generation no longer matches is stale.
    order: VecDeque<(DedupeKey, u64)>,
    next_gen: u64,
}

struct Entry {
    generation: u64,
    state: State,
}

#[derive(Clone, Copy)]
enum State {
    Held { token: LeaseToken, until: i64 },
    Done { protected_until: i64, expires: i64 },
}

impl State {
    /// Whether the entry still means anything at `now`.
    fn live(self, now: i64) -> bool {
        match self {
            Self::Held { until, .. } => until > now,
            Self::Done { expires, .. } => expires > now,
        }
    }

    /// Until when the entry may not be evicted.
    fn protected_until(self) -> i64 {
        match self {
            Self::Held { until, .. } => until,
            Self::Done { protected_until, .. } => protected_until,
        }
    }
}

/// Builder for [`MemoryStore`].
#[must_use]
pub struct MemoryStoreBuilder {
    max_entries: NonZeroUsize,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    /// A store with the defaults: at most [`DEFAULT_MAX_ENTRIES`] keys, the
    /// system clock.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_entries: NonZeroUsize::new(DEFAULT_MAX_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            clock: Arc::new(SystemClock),
        }
    }

    /// How many keys are held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound on the number of keys.
    pub fn max_entries(&self) -> usize {
        self.inner.caps.iter().sum()
    }

    /// The shard of `key` and its bound.
    fn shard(&self, key: &DedupeKey) -> (MutexGuard<'_, Shard>, usize) {
        let index = usize::from(key.as_bytes()[0]) % self.inner.shards.len();
        (lock(&self.inner.shards[index]), self.inner.caps[index])
    }

    fn now(&self) -> i64 {
        self.inner.clock.now_unix_millis()
    }

    pub(crate) fn claim_now(
        &self,
        key: &DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> Result<Claim, StoreError> {
        let now = self.now();
        let (mut shard, cap) = self.shard(key);
        shard.sweep(now, 2);
        if let Some(entry) = shard.map.get(key) {
            match entry.state {
                State::Held { until, .. } if until > now => {
                    return Ok(Claim::InProgress {
                        retry_after: millis(until - now),
                    })
                }
                State::Done { expires, .. } if expires > now => return Ok(Claim::AlreadyProcessed),
                _ => {}
            }
        } else {
            shard.make_room(now, cap)?;
        }
        let until = now.saturating_add(as_millis(times.lease()));
        shard.put(*key, State::Held { token, until });
        Ok(Claim::Acquired)
    }

    pub(crate) fn complete_now(
        &self,
        key: &DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let done = State::Done {
            protected_until: now.saturating_add(as_millis(times.replay_window())),
            expires: now.saturating_add(as_millis(times.idempotency())),
        };
        let (mut shard, cap) = self.shard(key);
        match shard.map.get_mut(key) {
            Some(entry) => match entry.state {
                State::Held { token: holder, until } if holder != token && until > now => {}
                State::Done { expires, .. } if expires > now => {}
                // Ours, or an expired claim nobody holds: the work was done.
                _ => entry.state = done,
            },
            None => {
                shard.make_room(now, cap)?;
                shard.put(*key, done);
            }
        }
        Ok(())
    }

    pub(crate) fn release_now(&self, key: &DedupeKey, token: LeaseToken) {
        let (mut shard, _) = self.shard(key);
        if matches!(
            shard.map.get(key),
            Some(Entry { state: State::Held { token: holder, .. }, .. }) if *holder == token
        ) {
            shard.map.remove(key);
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Shard {
    fn put(&mut self, key: DedupeKey, state: State) {
        let generation = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        self.map.insert(key, Entry { generation, state });
        self.order.push_back((key, generation));
        // Released keys leave stale references behind; keep the queue
        // within a constant factor of the map.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, g)| map.get(k).is_some_and(|e| e.generation == *g));
        }
    }

    /// Whether the oldest reference is stale or its entry is dead at `now`;
    /// removes it if so.
    fn pop_dead_front(&mut self, now: i64) -> bool {
        let Some((key, generation)) = self.order.front().copied() else {
            return false;
        };
        // One hash for the lookup and the removal.
        if let std::collections::hash_map::Entry::Occupied(e) = self.map.entry(key) {
            if e.get().generation == generation {
                if e.get().state.live(now) {
                    return false;
                }
                e.remove();
            }
        }
        self.order.pop_front();
        true
    }

    /// Drops up to `budget` dead entries from the front, so memory follows
    /// time even when the store is never full.
    fn sweep(&mut self, now: i64, budget: usize) {
        for _ in 0..budget {
            if !self.pop_dead_front(now) {
                break;
            }
        }
        if self.map.capacity() > 64 && self.map.len() < self.map.capacity() / 4 {
            self.map.shrink_to_fit();
            self.order.shrink_to_fit();
        }
    }

    /// Frees one slot if the shard is full, evicting only entries past
    /// their replay window (or dead).
    fn make_room(&mut self, now: i64, cap: usize) -> Result<(), StoreError> {
        while self.map.len() >= cap {
            if self.pop_dead_front(now) {
                continue;
            }
            let Some((key, _)) = self.order.front().copied() else {
                // The queue always references every entry; unreachable in
                // practice, but never loop forever.
                return Err(StoreError::full(Duration::from_secs(1)));
            };
            let Some(state) = self.map.get(&key).map(|e| e.state) else {
                self.order.pop_front();
                continue;
            };
            let protected = state.protected_until();
            if protected > now {
                return Err(StoreError::full(millis(protected - now)));
            }
            // Done and past its replay window: best-effort idempotency ends.
            self.map.remove(&key);
            self.order.pop_front();
        }
        Ok(())
    }
}

impl DedupeStore for MemoryStore {
    fn claim<'a>(
        &'a self,
        key: &'a DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> StoreFuture<'a, Claim> {
        Box::pin(std::future::ready(self.claim_now(key, token, times)))
    }

    fn complete<'a>(
        &'a self,
        key: &'a DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(self.complete_now(key, token, times)))
    }

    fn release<'a>(&'a self, key: &'a DedupeKey, token: LeaseToken) -> StoreFuture<'a, ()> {
        self.release_now(key, token);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .field("max_entries", &self.max_entries())
            .finish()
    }
}

impl MemoryStoreBuilder {
    /// The most keys held at once. Default [`DEFAULT_MAX_ENTRIES`].
    pub fn max_entries(mut self, max: NonZeroUsize) -> Self {
        self.max_entries = max;
        self
    }

    /// The clock for leases and retention. Default: the system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The store.
    pub fn build(self) -> MemoryStore {
        let max = self.max_entries.get();
        let shards = SHARDS.min(max);
        let caps = (0..shards)
            .map(|i| max / shards + usize::from(i < max % shards))
            .collect();
        MemoryStore {
            inner: Arc::new(Inner {
                shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
                caps,
                clock: self.clock,
            }),
        }
    }
}

impl fmt::Debug for MemoryStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStoreBuilder")
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding the lock cannot leave a shard inconsistent
    // (every update is a single map operation), so poisoning is ignored.
    shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn as_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FixedClock;

    fn times(lease: u64, window: u64, keep: u64) -> Retention {
        Retention::new(
            Duration::from_secs(lease),
            Duration::from_secs(window),
            Duration::from_secs(keep),
        )
    }

    #[test]
    fn key_hash_spreads_keys_over_the_low_bits() {
        use std::hash::BuildHasher as _;
        let build = BuildHasherDefault::<KeyHasher>::default();
        let mut buckets = vec![0u32; 1024];
        let mut hashes = std::collections::HashSet::new();
        for n in 0..16_384u32 {
            let key = DedupeKey::from_id("spread", &n.to_le_bytes());
            let h = build.hash_one(key);
            hashes.insert(h);
            buckets[(h % 1024) as usize] += 1;
        }
        assert_eq!(hashes.len(), 16_384, "no two keys share a hash");
        // 16 per bucket on average; a uniform spread stays far below 64.
        assert!(buckets.iter().all(|&n| (1..64).contains(&n)), "{buckets:?}");
    }

    fn store(max: usize, clock: &Arc<FixedClock>) -> MemoryStore {
        MemoryStore::builder()
            .max_entries(NonZeroUsize::new(max).unwrap_or(NonZeroUsize::MIN))
            .clock(clock.clone())
            .build()
    }

    #[test]
    fn full_of_young_keys_fails_closed_then_recovers() {
        let clock = Arc::new(FixedClock::new(1_000));
        // One shard of 16 (max 16 → 1 per shard): fill the shard of key 0.
        let s = store(16, &clock);
        let t = times(60, 600, 3600);
        let k1 = DedupeKey([0; 32]);
        let mut k2 = [0; 32];
        k2[1] = 1;
        let k2 = DedupeKey(k2);
        let tok = LeaseToken::random();
        assert_eq!(s.claim_now(&k1, tok, t).ok(), Some(Claim::Acquired));
        assert!(s.complete_now(&k1, tok, t).is_ok());
        let err = s.claim_now(&k2, tok, t).err();
        assert_eq!(
            err.as_ref().map(StoreError::kind),
            Some(crate::dedupe::StoreErrorKind::Full)
        );
        assert_eq!(err.map(|e| e.retry_after()), Some(Duration::from_secs(600)));
        // Past the replay window the old key may go, to make room.
        clock.advance(601);
        assert_eq!(s.claim_now(&k2, tok, t).ok(), Some(Claim::Acquired));
        // k1 was evicted for it; k2's live claim is never evicted.
        assert!(s.claim_now(&k1, tok, t).is_err());
        assert!(s.complete_now(&k2, tok, t).is_ok());
        clock.advance(601);
        assert_eq!(s.claim_now(&k1, tok, t).ok(), Some(Claim::Acquired));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn the_bound_is_exact() {
        let clock = Arc::new(FixedClock::new(1_000));
        for max in [1, 15, 16, 17, 20, 100, 10_001] {
            assert_eq!(store(max, &clock).max_entries(), max);
        }
    }

    #[test]
    fn released_keys_do_not_grow_the_queue() {
        let clock = Arc::new(FixedClock::new(1_000));
        let s = store(16, &clock);
        let t = times(60, 600, 3600);
        let k = DedupeKey([3; 32]);
        for _ in 0..10_000 {
            let tok = LeaseToken::random();
            assert_eq!(s.claim_now(&k, tok, t).ok(), Some(Claim::Acquired));
            s.release_now(&k, tok);
        }
        let (shard, _) = s.shard(&k);
        assert!(shard.order.len() <= 64 + 2, "{}", shard.order.len());
    }
}
