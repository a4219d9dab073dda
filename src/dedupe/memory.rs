//! The in-memory dedupe store: the default, no setup, one process. See
//! [`MemoryStore`] for its layout, bound and eviction.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::size_of;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{Claim, DedupeKey, DedupeStore, LeaseToken, Retention, StoreError, StoreFuture};
use crate::clock::{Clock, SystemClock};

/// The bound a [`MemoryStore`] had by default when it was set as a count:
/// 100 000 keys.
///
/// No longer the default: the default bound is now
/// [`MemoryStore::DEFAULT_MAX_BYTES`] (64 MiB, about 1.1 million keys). Pass
/// this to [`MemoryStoreBuilder::max_entries`] to keep the old bound (it now
/// takes about 6 MiB).
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

const SHARDS: usize = 16;
/// The bytes of one slot.
const SLOT_BYTES: usize = size_of::<Slot>();
/// A table holds at most `LOAD_NUM` keys per `LOAD_DEN` slots.
const LOAD_NUM: usize = 4;
const LOAD_DEN: usize = 5;
/// The smallest table (unless the shard's full table is smaller).
const MIN_SLOTS: usize = 64;
/// A shard drops its dead keys after `max(slots / TIDY_DIV, MIN_TIDY)`
/// new keys.
const TIDY_DIV: usize = 4;
const MIN_TIDY: usize = 16;
/// A shard at its bound queues the `cap / EVICT_DIV` keys whose guard ends
/// first, so one pass over its table serves that many evictions.
const EVICT_DIV: usize = 32;
/// The "until" of a live claim's slot.
const HELD: u64 = u64::MAX;

const _: () = assert!(SLOT_BYTES == 48, "a slot is a 32-byte key and two u64 times");

/// A [`DedupeStore`] in this process's memory. Cheap to clone; clones share
/// the same keys, so one store can serve every route.
///
/// It is bounded twice:
///
/// - **by time**: a completed key is dropped after its idempotency
///   retention, an abandoned claim after its lease;
/// - **by size**: at most [`capacity`](Self::capacity) keys, by default as
///   many as fit in [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES) (64 MiB:
///   1 118 468 keys at [`BYTES_PER_KEY`](Self::BYTES_PER_KEY) = 60 bytes
///   each), split evenly over 16 shards by key. When a key's shard is full
///   it drops its expired keys, then evicts keys past their replay window;
///   it **never** evicts a key younger than its replay window or a live
///   claim. If the shard holds only such keys, a new claim fails with
///   [`StoreError::full`] (503 and `Retry-After`) instead of forgetting
///   one, since forgetting it would let a replay through. Keys spread
///   evenly but not exactly, so with only young keys refusals start a
///   little before the bound (at about 85 % of it for 100 000 keys, nearer
///   100 % for larger bounds): size the bound with that margin.
///
/// Memory is allocated as keys arrive (tables double up to their share of
/// the bound) and given back as they expire. Only verified deliveries are
/// claimed, so only the real sender's volume fills it: size it for your
/// peak deliveries per replay window (the default holds about 1 800 a
/// second sustained over the default 600 s window). Use `RedisStore` (feature
/// `redis`) when several receivers share the traffic.
///
/// # Layout
///
/// The store is 16 shards (by the key's first byte), each a mutex around an
/// open-addressing hash table with linear probing over fixed 48-byte slots:
///
/// | bytes | field |
/// |---|---|
/// | 32 | the [`DedupeKey`] (a SHA-256 output, so its bytes 8..16 are the hash) |
/// | 8 | until when the key is protected: the end of its replay window, or of its lease while it is claimed |
/// | 8 | until when it is remembered: the end of its idempotency retention; a marker while it is claimed; 0 in an empty slot |
///
/// Times are the clock's Unix milliseconds (biased so that an empty slot is
/// all zeroes), so leases and windows keep millisecond precision. The
/// [`LeaseToken`] of a live claim (16 bytes) is kept in a small side map of
/// the shard's live claims, which only holds as many keys as there are
/// claims being handled right now; a claim's slot leaves that map when it
/// is completed, released or dropped.
///
/// A table holds at most 4 keys per 5 slots (load factor 0.8), so a key
/// costs [`MemoryStore::BYTES_PER_KEY`] = 60 bytes of table at the bound.
/// Deletion is by backward shift (no tombstones), so a table never fills
/// with dead slots. Tables start small (64 to 127 slots) and double as keys arrive, up
/// to the size that holds their share of the bound, and halve again when
/// they are four fifths empty: resident memory follows the keys held, not
/// the bound. While a shard is resized its old table briefly exists next to
/// the new one (at most 1/32 of the bound's bytes, one shard at a time).
///
/// # Bound and eviction
///
/// The bound is set in bytes ([`MemoryStoreBuilder::max_bytes`], default
/// [`MemoryStore::DEFAULT_MAX_BYTES`] = 64 MiB, about 1.1 million keys) or in
/// keys ([`MemoryStoreBuilder::max_entries`]); either way it becomes an exact
/// number of keys ([`MemoryStore::capacity`]), split over the shards. When a
/// new key's shard holds its share:
///
/// 1. one pass over the shard's table drops every key past its idempotency
///    retention and every claim past its lease, and queues the 1/32 of the
///    shard's keys whose replay window (or lease) ends first, oldest
///    first;
/// 2. if the pass freed nothing, and on the following new keys until the
///    queue is used up, the queue's first key is evicted if it is past its
///    replay window (or lease), so keys past their replay window go oldest
///    first; a queued claim that was completed meanwhile is requeued at
///    its new time, one that is gone is skipped;
/// 3. if the queue's first key is still young, the new key is refused with
///    [`StoreError::full`] and a `retry_after` of when that key leaves its
///    replay window. A key younger than its replay window and a live claim
///    are **never** evicted.
///
/// So a shard at its bound reads its whole table once per 1/32 of its keys
/// evicted or per queue used up, and refuses in constant time meanwhile.
/// The queue (40 bytes per queued key, about 1.3 bytes per key of the
/// bound) exists only while the shard is at its bound. A claim made after
/// the pass is not queued: if its lease ends unused while the queue is
/// still young, its slot is reclaimed at the next pass (the store fails
/// closed meanwhile).
///
/// Besides, after every `slots / 4` new keys a shard drops its dead keys in
/// one pass (and halves its table while it is more than four fifths
/// empty), so memory follows time even when the store is never full; the
/// pass costs about four slots' reading per new key.
///
/// ```
/// use std::num::NonZeroUsize;
/// use webhook_guard::dedupe::MemoryStore;
///
/// // 256 MiB of keys: about 4.5 million.
/// let store = MemoryStore::builder()
///     .max_bytes(NonZeroUsize::new(256 << 20).unwrap())
///     .build();
/// assert_eq!(store.len(), 0);
/// assert!(store.capacity() > 4_400_000);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Mutex<Shard>>,
    clock: Arc<dyn Clock>,
}

/// Hashes a [`DedupeKey`] by folding its bytes (for the side map of live
/// claims).
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

type ClaimMap = HashMap<DedupeKey, LeaseToken, BuildHasherDefault<KeyHasher>>;

/// One slot of a table. Times are [`enc`]oded milliseconds.
#[derive(Clone, Copy)]
struct Slot {
    key: DedupeKey,
    /// Until when the key may not be evicted: the end of its replay window
    /// (completed) or of its lease (claimed).
    guard: u64,
    /// Until when a completed key is remembered; [`HELD`] for a claim; 0 in
    /// an empty slot.
    expires: u64,
}

impl Slot {
    const EMPTY: Self = Self {
        key: DedupeKey([0; 32]),
        guard: 0,
        expires: 0,
    };

    fn is_empty(&self) -> bool {
        self.expires == 0
    }

    fn is_held(&self) -> bool {
        self.expires == HELD
    }

    /// Whether the (occupied) slot means nothing any more at `now`: a
    /// completed key past its retention, a claim past its lease.
    fn dead(&self, now: u64) -> bool {
        if self.is_held() {
            self.guard <= now
        } else {
            self.expires <= now
        }
    }

    /// The slot's home index in a table of `n` slots.
    fn home(key: &DedupeKey, n: usize) -> usize {
        let b = key.as_bytes();
        let h = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        // Multiply-shift range reduction: uniform for a uniform `h`, any `n`.
        ((u128::from(h) * n as u128) >> 64) as usize
    }
}

struct Shard {
    slots: Vec<Slot>,
    /// Occupied slots.
    len: usize,
    /// This shard's share of the bound, in keys.
    cap: usize,
    /// The slots of the table at its largest.
    full_slots: usize,
    /// The slots of the table at its smallest. Sizes go from here to
    /// `full_slots` by doubling: each is `full_slots >> k`.
    min_slots: usize,
    /// New keys since the last [`tidy`](Self::tidy).
    inserts: usize,
    /// At the bound: the keys that may be evicted first (earliest guard
    /// first), found by the last pass over the table.
    queue: BinaryHeap<Reverse<(u64, [u8; 32])>>,
    /// The tokens of the slots that are claims.
    claims: ClaimMap,
}

/// Builder for [`MemoryStore`].
#[must_use]
pub struct MemoryStoreBuilder {
    bound: Bound,
    clock: Arc<dyn Clock>,
}

#[derive(Clone, Copy, Debug)]
enum Bound {
    Bytes(NonZeroUsize),
    Entries(NonZeroUsize),
}

impl Bound {
    /// The bound in keys.
    fn keys(self) -> usize {
        match self {
            Self::Entries(n) => n.get(),
            // Less each shard's rounding up (at most one slot), so the
            // tables at their largest stay within the bytes.
            Self::Bytes(b) => {
                (b.get().saturating_sub(SHARDS * SLOT_BYTES) / MemoryStore::BYTES_PER_KEY).max(1)
            }
        }
    }
}

impl MemoryStore {
    /// The default bound: 64 MiB of tables, 1 118 468 keys.
    pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

    /// What one key costs at the bound: a 48-byte slot in a table at most
    /// four fifths full.
    pub const BYTES_PER_KEY: usize = SLOT_BYTES * LOAD_DEN / LOAD_NUM;

    /// A store with the defaults: at most [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES)
    /// of keys, the system clock.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            bound: Bound::Bytes(NonZeroUsize::new(Self::DEFAULT_MAX_BYTES).unwrap_or(NonZeroUsize::MIN)),
            clock: Arc::new(SystemClock),
        }
    }

    /// How many keys are held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).len).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound on the number of keys: the same as
    /// [`capacity`](Self::capacity).
    pub fn max_entries(&self) -> usize {
        self.capacity()
    }

    /// How many keys the store can hold: its bound, exactly. With the
    /// default bound, 1 118 468.
    pub fn capacity(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).cap).sum()
    }

    /// The bytes its tables take now (they grow with the keys held, up to
    /// about [`capacity`](Self::capacity) × [`BYTES_PER_KEY`](Self::BYTES_PER_KEY)).
    /// Live claims take about 64 bytes more each, in a side map.
    pub fn table_bytes(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| lock(s).slots.len() * SLOT_BYTES)
            .sum()
    }

    fn shard(&self, key: &DedupeKey) -> MutexGuard<'_, Shard> {
        let index = usize::from(key.as_bytes()[0]) % self.inner.shards.len();
        lock(&self.inner.shards[index])
    }

    fn now(&self) -> u64 {
        enc(self.inner.clock.now_unix_millis())
    }

    pub(crate) fn claim_now(
        &self,
        key: &DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> Result<Claim, StoreError> {
        let now = self.now();
        let mut shard = self.shard(key);
        let held = Slot {
            key: *key,
            guard: now.saturating_add(millis_of(times.lease())),
            expires: HELD,
        };
        match shard.find(key) {
            Ok(i) => {
                let slot = shard.slots[i];
                if !slot.dead(now) {
                    return Ok(if slot.is_held() {
                        Claim::InProgress {
                            retry_after: duration(slot.guard - now),
                        }
                    } else {
                        Claim::AlreadyProcessed
                    });
                }
                // Dead: take it over.
                shard.slots[i] = held;
            }
            Err(_) => {
                shard.make_room(now)?;
                shard.put(held);
            }
        }
        shard.claims.insert(*key, token);
        Ok(Claim::Acquired)
    }

    pub(crate) fn complete_now(
        &self,
        key: &DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let done = Slot {
            key: *key,
            guard: now.saturating_add(millis_of(times.replay_window())),
            // Below the claim marker.
            expires: now.saturating_add(millis_of(times.idempotency())).min(HELD - 1),
        };
        let mut shard = self.shard(key);
        match shard.find(key) {
            Ok(i) => {
                let slot = shard.slots[i];
                if slot.is_held() {
                    let ours = shard.claims.get(key) == Some(&token);
                    if !ours && !slot.dead(now) {
                        // Someone else holds it.
                        return Ok(());
                    }
                    shard.claims.remove(key);
                } else if !slot.dead(now) {
                    // Already completed.
                    return Ok(());
                }
                // Ours, or an expired claim nobody holds: the work was done.
                shard.slots[i] = done;
            }
            Err(_) => {
                shard.make_room(now)?;
                shard.put(done);
            }
        }
        Ok(())
    }

    /// Whether [`complete_now`](Self::complete_now) of `key` by `token`
    /// would record it (`true`: ours, an expired entry, or a new key with
    /// room) or change nothing (`false`: someone else's live claim, or
    /// already completed), without recording it. A new key with no room is
    /// [`StoreError::full`]. May evict what eviction allows (as a claim
    /// would).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn would_complete(&self, key: &DedupeKey, token: LeaseToken) -> Result<bool, StoreError> {
        let now = self.now();
        let mut shard = self.shard(key);
        match shard.find(key) {
            Ok(i) => {
                let slot = shard.slots[i];
                if slot.dead(now) {
                    return Ok(true);
                }
                Ok(slot.is_held() && shard.claims.get(key) == Some(&token))
            }
            Err(_) => shard.make_room(now).map(|()| true),
        }
    }

    /// Puts back a completed key remembered elsewhere (a durable store's
    /// file), protected until `protected_until` and remembered until
    /// `remembered_until` (Unix milliseconds). A key already present keeps
    /// the later of the two records. Returns `false` if it was past its
    /// retention or there was no room for it.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn restore(&self, key: &DedupeKey, protected_until: i64, remembered_until: i64) -> bool {
        let now = self.now();
        let done = Slot {
            key: *key,
            guard: enc(protected_until),
            expires: enc(remembered_until).min(HELD - 1),
        };
        if done.dead(now) {
            return false;
        }
        let mut shard = self.shard(key);
        match shard.find(key) {
            Ok(i) => {
                let slot = shard.slots[i];
                if slot.is_held() {
                    shard.claims.remove(key);
                    shard.slots[i] = done;
                } else if slot.dead(now) || slot.expires < done.expires {
                    shard.slots[i] = done;
                }
                true
            }
            Err(_) => {
                if shard.make_room(now).is_err() {
                    return false;
                }
                shard.put(done);
                true
            }
        }
    }

    pub(crate) fn release_now(&self, key: &DedupeKey, token: LeaseToken) {
        let mut shard = self.shard(key);
        if let Ok(i) = shard.find(key) {
            if shard.slots[i].is_held() && shard.claims.get(key) == Some(&token) {
                shard.remove_at(i);
            }
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Shard {
    fn new(cap: usize) -> Self {
        // At least one slot more than the keys, so a probe always ends.
        let full_slots = cap.saturating_add(cap.div_ceil(LOAD_NUM));
        let mut min_slots = full_slots;
        while min_slots / 2 >= MIN_SLOTS {
            min_slots /= 2;
        }
        Self {
            slots: vec![Slot::EMPTY; min_slots],
            len: 0,
            cap,
            full_slots,
            min_slots,
            inserts: 0,
            queue: BinaryHeap::new(),
            claims: ClaimMap::default(),
        }
    }

    /// The most keys the table may hold at its current size.
    fn limit(&self) -> usize {
        let n = self.slots.len();
        if n >= self.full_slots {
            self.cap
        } else {
            // n × 4/5 without overflow; below n since n >= 2.
            (n / LOAD_DEN * LOAD_NUM + n % LOAD_DEN * LOAD_NUM / LOAD_DEN).min(self.cap)
        }
    }

    /// The index of `key`, or of the empty slot that ends its probe.
    fn find(&self, key: &DedupeKey) -> Result<usize, usize> {
        let n = self.slots.len();
        let mut i = Slot::home(key, n);
        // The table is never full, so this ends at an empty slot at the
        // latest; the bound on steps is only a safeguard.
        for _ in 0..n {
            let slot = &self.slots[i];
            if slot.is_empty() {
                return Err(i);
            }
            if slot.key == *key {
                return Ok(i);
            }
            i = next(i, n);
        }
        Err(i)
    }

    /// Stores `slot` under its key (replacing it if present).
    fn put(&mut self, slot: Slot) {
        match self.find(&slot.key) {
            Ok(i) => self.slots[i] = slot,
            Err(i) => {
                self.slots[i] = slot;
                self.len += 1;
            }
        }
    }

    /// Empties slot `i`, shifting the rest of its run back so that every
    /// key stays reachable from its home (no tombstones).
    fn remove_at(&mut self, i: usize) {
        let removed = self.slots[i];
        if removed.is_empty() {
            return;
        }
        if removed.is_held() {
            self.claims.remove(&removed.key);
        }
        self.len -= 1;
        let n = self.slots.len();
        let mut hole = i;
        let mut j = next(i, n);
        while !self.slots[j].is_empty() {
            let home = Slot::home(&self.slots[j].key, n);
            // Move it into the hole unless its home lies in (hole, j].
            if (j + n - home) % n >= (j + n - hole) % n {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
            j = next(j, n);
        }
        self.slots[hole] = Slot::EMPTY;
    }

    /// Drops the dead keys; shrinks the table while it is mostly empty.
    fn tidy(&mut self, now: u64) {
        self.inserts = 0;
        self.remove_where(usize::MAX, |slot| slot.dead(now));
        while self.slots.len() > self.min_slots && self.len < self.slots.len() / LOAD_DEN {
            // The size below (`full_slots >> (k + 1)`), at most two fifths
            // full.
            self.resize(now, self.slots.len() / 2);
        }
        if self.claims.capacity() > 64 && self.claims.len() < self.claims.capacity() / 4 {
            self.claims.shrink_to_fit();
        }
    }

    /// Moves the live keys into a table of `n` slots, dropping dead ones.
    fn resize(&mut self, now: u64, n: usize) {
        let old = std::mem::replace(&mut self.slots, vec![Slot::EMPTY; n]);
        self.len = 0;
        self.queue = BinaryHeap::new();
        for slot in old {
            if slot.is_empty() {
                continue;
            }
            if slot.dead(now) {
                if slot.is_held() {
                    self.claims.remove(&slot.key);
                }
                continue;
            }
            self.put(slot);
        }
    }

    /// The index of an empty slot, where a scan can start and end without
    /// any run of keys wrapping past it.
    fn empty_index(&self) -> usize {
        self.slots.iter().position(Slot::is_empty).unwrap_or(0)
    }

    /// Removes every slot for which `remove` says so (at most `limit`),
    /// visiting each key once; returns how many.
    fn remove_where(&mut self, limit: usize, mut remove: impl FnMut(&Slot) -> bool) -> usize {
        let n = self.slots.len();
        let start = self.empty_index();
        let mut removed = 0;
        let mut i = next(start, n);
        // Backward shift only moves keys from later in the same run into
        // the hole at `i`, and the run ends before `start` (which stays
        // empty), so every key is visited exactly once.
        while i != start && removed < limit {
            let slot = self.slots[i];
            if !slot.is_empty() && remove(&slot) {
                self.remove_at(i);
                removed += 1;
            } else {
                i = next(i, n);
            }
        }
        removed
    }

    /// Makes room for one new key, or says when there will be some.
    fn make_room(&mut self, now: u64) -> Result<(), StoreError> {
        self.inserts += 1;
        if self.inserts >= (self.slots.len() / TIDY_DIV).max(MIN_TIDY) {
            self.tidy(now);
        }
        if self.len < self.limit() {
            return Ok(());
        }
        let n = self.slots.len();
        if n < self.full_slots {
            // Grow, unless dropping the dead keys leaves the table half
            // empty.
            let live = self
                .slots
                .iter()
                .filter(|s| !s.is_empty() && !s.dead(now))
                .count();
            let size = if live <= self.limit() / 2 {
                n
            } else {
                // The size above.
                let mut m = self.full_slots;
                while m / 2 > n {
                    m /= 2;
                }
                m
            };
            self.resize(now, size);
            return Ok(());
        }
        // At the bound: evict the next key of the queue if it may go, or
        // refuse until it may.
        if let Some(answer) = self.evict_queued(now) {
            return answer;
        }
        // The queue is empty: one pass drops the dead keys and queues the
        // `cap / EVICT_DIV` keys whose guard ends first.
        let want = (self.cap / EVICT_DIV).max(1);
        let mut earliest: BinaryHeap<(u64, [u8; 32])> = BinaryHeap::with_capacity(want + 1);
        let freed = self.remove_where(usize::MAX, |slot| {
            if slot.dead(now) {
                return true;
            }
            if earliest.len() < want || earliest.peek().is_some_and(|(g, _)| slot.guard < *g) {
                earliest.push((slot.guard, slot.key.0));
                if earliest.len() > want {
                    earliest.pop();
                }
            }
            false
        });
        self.queue = earliest.into_iter().map(Reverse).collect();
        if freed > 0 {
            return Ok(());
        }
        self.evict_queued(now)
            // Nothing held at all: cannot happen with a bound of at least
            // one key.
            .unwrap_or_else(|| Err(StoreError::full(Duration::from_secs(1))))
    }

    /// Evicts the first queued key if it is past its guard; `Full` until
    /// then; `None` if the queue is empty. Queued keys that have gone are
    /// skipped, and those whose guard moved (a claim completed) requeued.
    fn evict_queued(&mut self, now: u64) -> Option<Result<(), StoreError>> {
        while let Some(&Reverse((guard, key))) = self.queue.peek() {
            let Ok(i) = self.find(&DedupeKey(key)) else {
                self.queue.pop();
                continue;
            };
            let slot = self.slots[i];
            if slot.guard != guard {
                self.queue.pop();
                self.queue.push(Reverse((slot.guard, key)));
                continue;
            }
            if guard > now {
                return Some(Err(StoreError::full(duration(guard - now))));
            }
            // Past its replay window (or its lease: then dead).
            self.queue.pop();
            self.remove_at(i);
            return Some(Ok(()));
        }
        if self.queue.capacity() > 0 {
            self.queue = BinaryHeap::new();
        }
        None
    }
}

fn next(i: usize, n: usize) -> usize {
    if i + 1 == n {
        0
    } else {
        i + 1
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
            .field("capacity", &self.capacity())
            .field("table_bytes", &self.table_bytes())
            .finish()
    }
}

impl MemoryStoreBuilder {
    /// Bounds the store by the bytes of its tables: it holds at most
    /// `max / `[`BYTES_PER_KEY`](MemoryStore::BYTES_PER_KEY) keys (less a
    /// few, so the tables at their largest never exceed `max`; at least
    /// one). Default [`DEFAULT_MAX_BYTES`](MemoryStore::DEFAULT_MAX_BYTES)
    /// (64 MiB). Live claims take about 64 bytes more each, outside the
    /// bound (they are as many as the requests being handled).
    ///
    /// This and [`max_entries`](Self::max_entries) set the same bound: the
    /// last call wins.
    pub fn max_bytes(mut self, max: NonZeroUsize) -> Self {
        self.bound = Bound::Bytes(max);
        self
    }

    /// Bounds the store by a number of keys, exactly (taking about
    /// [`BYTES_PER_KEY`](MemoryStore::BYTES_PER_KEY) bytes each at most).
    ///
    /// This and [`max_bytes`](Self::max_bytes) set the same bound: the last
    /// call wins.
    pub fn max_entries(mut self, max: NonZeroUsize) -> Self {
        self.bound = Bound::Entries(max);
        self
    }

    /// The clock for leases and retention. Default: the system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The clock, shared with its owner (a durable store's index).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn build(self) -> MemoryStore {
        let max = self.bound.keys();
        let shards = SHARDS.min(max);
        MemoryStore {
            inner: Arc::new(Inner {
                shards: (0..shards)
                    .map(|i| Mutex::new(Shard::new(max / shards + usize::from(i < max % shards))))
                    .collect(),
                clock: self.clock,
            }),
        }
    }
}

impl fmt::Debug for MemoryStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStoreBuilder")
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // No code under the lock panics (indexes stay within the table, the
    // table always has an empty slot), so poisoning is ignored.
    shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Unix milliseconds as a slot time: order-preserving, and 0 (an empty
/// slot) is `i64::MIN`, which no expiry can be.
fn enc(unix_millis: i64) -> u64 {
    unix_millis.cast_unsigned() ^ (1 << 63)
}

fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn duration(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FixedClock;
    use std::collections::HashMap as Model;

    fn times(lease: u64, window: u64, keep: u64) -> Retention {
        Retention::new(
            Duration::from_secs(lease),
            Duration::from_secs(window),
            Duration::from_secs(keep),
        )
    }

    fn store(max: usize, clock: &Arc<FixedClock>) -> MemoryStore {
        MemoryStore::builder()
            .max_entries(NonZeroUsize::new(max).unwrap_or(NonZeroUsize::MIN))
            .clock(clock.clone())
            .build()
    }

    fn key(n: u64) -> DedupeKey {
        DedupeKey::from_id("memory-unit", &n.to_le_bytes())
    }

    /// Every occupied slot is reachable from its home without crossing an
    /// empty slot, `len` counts them, and the claim map holds exactly the
    /// claimed keys.
    fn check_invariants(shard: &Shard) {
        let n = shard.slots.len();
        let mut occupied = 0;
        let mut held = 0;
        for (i, slot) in shard.slots.iter().enumerate() {
            if slot.is_empty() {
                continue;
            }
            occupied += 1;
            if slot.is_held() {
                held += 1;
                assert!(shard.claims.contains_key(&slot.key), "a claim without a token");
            }
            let mut j = Slot::home(&slot.key, n);
            while j != i {
                assert!(!shard.slots[j].is_empty(), "slot {i} is cut off from its home");
                j = next(j, n);
            }
            assert_eq!(shard.find(&slot.key), Ok(i));
        }
        assert_eq!(shard.len, occupied);
        assert_eq!(shard.claims.len(), held);
        assert!(shard.len < n, "a table always keeps an empty slot");
        assert!(shard.len <= shard.cap);
    }

    fn check_all(s: &MemoryStore) {
        for shard in &s.inner.shards {
            check_invariants(&lock(shard));
        }
    }

    #[test]
    fn a_slot_is_48_bytes_and_a_key_60_at_the_bound() {
        assert_eq!(size_of::<Slot>(), 48);
        assert_eq!(MemoryStore::BYTES_PER_KEY, 60);
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

    #[test]
    fn full_of_young_keys_fails_closed_then_recovers() {
        let clock = Arc::new(FixedClock::new(1_000));
        // 16 keys over 16 shards: one each. Fill the shard of key 0.
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
        // Refused at once, and with the time left, until then.
        clock.advance(100);
        let err = s.claim_now(&k2, tok, t).err();
        assert_eq!(err.map(|e| e.retry_after()), Some(Duration::from_secs(500)));
        // Past the replay window the old key may go, to make room.
        clock.advance(501);
        assert_eq!(s.claim_now(&k2, tok, t).ok(), Some(Claim::Acquired));
        // k1 was evicted for it; k2's live claim is never evicted.
        assert!(s.claim_now(&k1, tok, t).is_err());
        assert!(s.complete_now(&k2, tok, t).is_ok());
        clock.advance(601);
        assert_eq!(s.claim_now(&k1, tok, t).ok(), Some(Claim::Acquired));
        assert_eq!(s.len(), 1);
        check_all(&s);
    }

    #[test]
    fn the_bound_is_exact() {
        let clock = Arc::new(FixedClock::new(1_000));
        for max in [1, 15, 16, 17, 20, 100, 10_001] {
            assert_eq!(store(max, &clock).max_entries(), max);
            assert_eq!(store(max, &clock).capacity(), max);
        }
    }

    #[test]
    fn the_byte_bound_holds_the_tables_at_their_largest() {
        for bytes in [1, 100, 1_000, 4_096, 1 << 20, MemoryStore::DEFAULT_MAX_BYTES] {
            let s = MemoryStore::builder()
                .max_bytes(NonZeroUsize::new(bytes).unwrap_or(NonZeroUsize::MIN))
                .build();
            let largest: usize = s
                .inner
                .shards
                .iter()
                .map(|sh| lock(sh).full_slots * SLOT_BYTES)
                .sum();
            assert!(s.capacity() >= 1);
            if bytes >= 1_000 {
                assert!(largest <= bytes, "{bytes}: tables of {largest} bytes");
                // And the bound is used: within a slot per shard of it.
                assert!(
                    bytes - largest <= 2 * SHARDS * MemoryStore::BYTES_PER_KEY,
                    "{bytes}: only {largest}"
                );
            }
        }
        assert_eq!(MemoryStore::new().capacity(), 1_118_468);
    }

    /// Random claims, completions, releases and clock moves against a
    /// plain map: the table answers like the model and keeps its
    /// invariants through growth, backward-shift deletion, tidying and
    /// shrinking.
    #[test]
    fn the_table_agrees_with_a_model() {
        #[derive(Clone, Copy, Debug, PartialEq)]
        enum M {
            Held(LeaseToken, i64),
            Done(i64),
        }
        let clock = Arc::new(FixedClock::new(10_000));
        // Large enough never to be full: the model has no eviction.
        let s = store(100_000, &clock);
        let t = times(5, 10, 300);
        let mut model: Model<u64, M> = Model::new();
        let mut tokens: Model<u64, LeaseToken> = Model::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        let mut peak_table = 0;
        for step in 0..60_000u64 {
            // A growing then shrinking key space, so tables grow and shrink.
            let space = if step < 30_000 { 1 + step / 4 } else { 50 };
            let k = rand(space);
            let now = clock.now_unix();
            let live = |m: &M| match *m {
                M::Held(_, until) => until > now,
                M::Done(exp) => exp > now,
            };
            // Half claims, a third completions, the rest releases and (1 %)
            // clock ticks.
            match rand(100) {
                0..=49 => {
                    let tok = LeaseToken::random();
                    let want = match model.get(&k).filter(|m| live(m)) {
                        Some(M::Held(_, until)) => Claim::InProgress {
                            retry_after: Duration::from_secs((until - now) as u64),
                        },
                        Some(M::Done(_)) => Claim::AlreadyProcessed,
                        None => {
                            model.insert(k, M::Held(tok, now + 5));
                            tokens.insert(k, tok);
                            Claim::Acquired
                        }
                    };
                    assert_eq!(s.claim_now(&key(k), tok, t).ok(), Some(want), "step {step}");
                }
                50..=82 => {
                    let tok = if rand(4) == 0 {
                        LeaseToken::random()
                    } else {
                        tokens.get(&k).copied().unwrap_or_else(LeaseToken::random)
                    };
                    let update = match model.get(&k) {
                        Some(M::Held(holder, until)) => *holder == tok || *until <= now,
                        Some(m @ M::Done(_)) => !live(m),
                        None => true,
                    };
                    if update {
                        model.insert(k, M::Done(now + 300));
                    }
                    assert!(s.complete_now(&key(k), tok, t).is_ok());
                }
                83..=98 => {
                    let tok = tokens.get(&k).copied().unwrap_or_else(LeaseToken::random);
                    if matches!(model.get(&k), Some(M::Held(holder, _)) if *holder == tok) {
                        model.remove(&k);
                    }
                    s.release_now(&key(k), tok);
                }
                _ => clock.advance(1),
            }
            if step % 1_000 == 0 {
                check_all(&s);
                peak_table = peak_table.max(s.table_bytes());
            }
        }
        check_all(&s);
        // Every live key of the model answers as the model says.
        let now = clock.now_unix();
        for (k, m) in &model {
            let probe = LeaseToken::random();
            let got = s.claim_now(&key(*k), probe, t).ok();
            match *m {
                M::Held(_, until) if until > now => {
                    assert!(matches!(got, Some(Claim::InProgress { .. })), "{k}: {got:?}")
                }
                M::Done(exp) if exp > now => {
                    assert_eq!(got, Some(Claim::AlreadyProcessed), "{k}")
                }
                _ => assert_eq!(got, Some(Claim::Acquired), "{k}"),
            }
        }
        // The tables grew with the keys and shrank again after.
        assert!(peak_table > 16 * 64 * SLOT_BYTES * 4, "peak {peak_table}");
        clock.advance(100);
        for k in 0..20_000 {
            let _ = s.claim_now(&key(1_000_000 + k), LeaseToken::random(), t);
            clock.advance(100);
        }
        check_all(&s);
        let smallest: usize = s
            .inner
            .shards
            .iter()
            .map(|sh| lock(sh).min_slots * SLOT_BYTES)
            .sum();
        assert_eq!(s.table_bytes(), smallest, "peak {peak_table}");
    }

    #[test]
    fn released_and_expired_claims_leave_no_token_behind() {
        let clock = Arc::new(FixedClock::new(1_000));
        let s = store(16, &clock);
        let t = times(60, 600, 3600);
        let k = DedupeKey([3; 32]);
        for _ in 0..10_000 {
            let tok = LeaseToken::random();
            assert_eq!(s.claim_now(&k, tok, t).ok(), Some(Claim::Acquired));
            s.release_now(&k, tok);
        }
        assert_eq!(s.len(), 0);
        // An abandoned claim is taken over after its lease, with one token.
        let a = LeaseToken::random();
        assert_eq!(s.claim_now(&k, a, t).ok(), Some(Claim::Acquired));
        clock.advance(61);
        let b = LeaseToken::random();
        assert_eq!(s.claim_now(&k, b, t).ok(), Some(Claim::Acquired));
        // The old holder can no longer release it.
        s.release_now(&k, a);
        assert!(matches!(
            s.claim_now(&k, a, t).ok(),
            Some(Claim::InProgress { .. })
        ));
        check_all(&s);
        assert!(s.complete_now(&k, b, t).is_ok());
        check_all(&s);
    }

    #[test]
    fn a_full_shard_evicts_the_oldest_first_and_never_a_young_key() {
        let clock = Arc::new(FixedClock::new(1_000));
        // 64 keys a shard: each pass queues 64 / 32 = 2.
        let s = MemoryStore::builder()
            .max_entries(NonZeroUsize::new(64 * SHARDS).unwrap_or(NonZeroUsize::MIN))
            .clock(clock.clone())
            .build();
        let shard_of = |k: &DedupeKey| usize::from(k.as_bytes()[0]) % SHARDS;
        let mine: Vec<DedupeKey> = (0..100_000)
            .map(key)
            .filter(|k| shard_of(k) == 0)
            .take(200)
            .collect();
        let t = times(60, 10, 7200);
        // 32 keys at 1 000, then 32 at 1 005: all with a 10 s window.
        for (i, k) in mine[..64].iter().enumerate() {
            if i == 32 {
                clock.advance(5);
            }
            let tok = LeaseToken::random();
            assert_eq!(s.claim_now(k, tok, t).ok(), Some(Claim::Acquired));
            assert!(s.complete_now(k, tok, t).is_ok());
        }
        // Young: refused until the first key is past its window.
        let tok = LeaseToken::random();
        let err = s.claim_now(&mine[64], tok, t).err();
        assert_eq!(err.map(|e| e.retry_after()), Some(Duration::from_secs(5)));
        clock.advance(11);
        // All past their window now: room, taken from the older keys.
        for k in &mine[64..80] {
            let tok = LeaseToken::random();
            assert_eq!(s.claim_now(k, tok, t).ok(), Some(Claim::Acquired));
            assert!(s.complete_now(k, tok, t).is_ok());
        }
        let probe = LeaseToken::random();
        for (i, k) in mine[32..64].iter().enumerate() {
            assert_eq!(
                s.claim_now(k, probe, t).ok(),
                Some(Claim::AlreadyProcessed),
                "newer key {i} was evicted before an older one"
            );
        }
        // The 16 new keys are young: never evicted, whatever comes.
        let mut refused = 0;
        for k in &mine[80..200] {
            let tok = LeaseToken::random();
            match s.claim_now(k, tok, t) {
                Ok(Claim::Acquired) => assert!(s.complete_now(k, tok, t).is_ok()),
                Ok(other) => panic!("{other:?}"),
                Err(e) => {
                    assert_eq!(e.retry_after(), Duration::from_secs(10));
                    refused += 1;
                }
            }
        }
        // 48 old keys made room for 48 of the 120; the rest were refused.
        assert_eq!(refused, 120 - 48);
        for k in &mine[64..80] {
            assert_eq!(s.claim_now(k, probe, t).ok(), Some(Claim::AlreadyProcessed));
        }
        check_all(&s);
    }

    /// A claim queued for eviction that completes meanwhile is requeued at
    /// its new guard, not evicted.
    #[test]
    fn a_queued_claim_that_completes_is_not_evicted() {
        let clock = Arc::new(FixedClock::new(1_000));
        let s = store(1, &clock);
        let t = times(60, 600, 3600);
        let (a, b) = (key(1), key(2));
        let tok = LeaseToken::random();
        assert_eq!(s.claim_now(&a, tok, t).ok(), Some(Claim::Acquired));
        // Queued with its lease end (60 s).
        let err = s.claim_now(&b, LeaseToken::random(), t).err();
        assert_eq!(err.map(|e| e.retry_after()), Some(Duration::from_secs(60)));
        clock.advance(30);
        assert!(s.complete_now(&a, tok, t).is_ok());
        clock.advance(31);
        // Its lease would have ended, but it is now completed: young.
        let err = s.claim_now(&b, LeaseToken::random(), t).err();
        assert_eq!(err.map(|e| e.retry_after()), Some(Duration::from_secs(569)));
        assert_eq!(s.claim_now(&a, tok, t).ok(), Some(Claim::AlreadyProcessed));
        clock.advance(570);
        assert_eq!(s.claim_now(&b, tok, t).ok(), Some(Claim::Acquired));
        check_all(&s);
    }
}
