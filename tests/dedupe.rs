//! Deduplication, end to end.
//!
//! A. The `DedupeStore` atomicity contract, written once and run against
//!    every store: `MemoryStore` (system clock), with the `sqlite` feature
//!    `SqliteStore` (a temporary file), and with the `redis` feature
//!    `RedisStore` against a real `redis-server`.
//! B. `MemoryStore`'s bound: full of keys younger than the replay window it
//!    fails closed (`Full`, with the time left), never forgets such a key,
//!    evicts older ones to make room, and stays bounded under a flood.
//! C. The layer's dedupe step through a real axum router, with requests
//!    signed like the providers sign them: duplicates, the key of every
//!    scheme, namespaces, forged requests, failing and slow handlers,
//!    dropped futures, store failures, concurrency, configuration errors.
//!    The store-agnostic cases run for both stores.
//! D. Redis only, each test with a `redis-server` of its own: two receivers
//!    sharing one Redis, Redis killed and restarted under a running router,
//!    a store built while Redis is down.
//!
//! Redis: `WEBHOOK_GUARD_REDIS_URL` (set by `scripts/test.sh` and CI) names
//! a shared server, used with a key prefix unique to each test; without it
//! every Redis test starts its own `redis-server`. A missing `redis-server`
//! fails the tests: they never skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[cfg(feature = "redis")]
#[path = "support/redis.rs"]
mod redis_support;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use http::{header, HeaderValue, Request, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{Barrier, Notify};
use webhook_guard::dedupe::{
    Claim, Dedupe, DedupeKey, DedupeStore, LeaseToken, MemoryStore, Retention, StoreError, StoreErrorKind,
    StoreFuture,
};
use webhook_guard::test_util::TestSigner;
use webhook_guard::{
    Clock as _, ConfigError, FixedClock, RejectionKind, Scheme, SystemClock, VerifiedWebhook, Verifier,
};

use support::{assert_problem, body_bytes, send, Counting, PATH};

// ---------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------

/// The memory store of the shared suites: default bound, the system clock
/// (Redis runs on real time, so the suites do too).
fn memory_store() -> MemoryStore {
    MemoryStore::builder().clock(SystemClock).build()
}

/// A `RedisStore` on the shared server (with a prefix of its own) or on a
/// server of its own; the guard keeps that server alive.
#[cfg(feature = "redis")]
async fn redis_store(test: &str) -> (webhook_guard::dedupe::RedisStore, redis_support::TestRedis) {
    let redis = redis_support::TestRedis::new(test);
    let store = webhook_guard::dedupe::RedisStore::builder(redis.url())
        .key_prefix(redis.prefix().to_owned())
        .build()
        .expect("RedisStore::build");
    if let Err(e) = store.ping().await {
        panic!(
            "Redis at {} does not answer PING ({e}); shared server: {}",
            redis.url(),
            redis.is_shared()
        );
    }
    (store, redis)
}

/// A `SqliteStore` in a file of its own (system clock); the directory
/// lives as long as the guard.
#[cfg(feature = "sqlite")]
fn sqlite_store() -> (webhook_guard::sqlite::SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = webhook_guard::sqlite::SqliteState::open(dir.path().join("state.sqlite3"))
        .expect("SqliteState::open");
    (state.dedupe_store(), dir)
}

/// Runs each generic `async fn case<S: DedupeStore + Clone>(store: S)` once
/// per store: `$suite::memory::case`, (feature `sqlite`)
/// `$suite::sqlite::case` and (feature `redis`) `$suite::redis::case`.
macro_rules! for_each_store {
    ($suite:ident: $($case:ident),+ $(,)?) => {
        mod $suite {
            mod memory {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        super::super::$case(super::super::memory_store()).await;
                    }
                )+
            }

            #[cfg(feature = "sqlite")]
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let (store, _dir) = super::super::sqlite_store();
                        super::super::$case(store).await;
                    }
                )+
            }

            #[cfg(feature = "redis")]
            mod redis {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let (store, _redis) = super::super::redis_store(stringify!($case)).await;
                        super::super::$case(store).await;
                    }
                )+
            }
        }
    };
}

// ---------------------------------------------------------------------------
// A. The atomicity contract, for every store
// ---------------------------------------------------------------------------

for_each_store!(conformance:
    claim_then_in_progress_then_processed,
    release_frees_the_key,
    foreign_token_cannot_complete_or_release_a_live_claim,
    release_after_complete_keeps_it_processed,
    lease_expiry_frees_the_key,
    complete_after_own_lease_expired_records_processed,
    late_owner_cannot_touch_the_next_holder,
    fifty_concurrent_claims_acquire_once,
    distinct_keys_are_independent,
    completed_key_is_forgotten_after_idempotency_retention,
);

/// A unique key for one case, so cases never share state even on a shared
/// Redis.
fn key(case: &str) -> DedupeKey {
    DedupeKey::from_id(
        "conformance",
        format!("{case}/{:?}", LeaseToken::random()).as_bytes(),
    )
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Lease 10 s, replay window 60 s, retention 120 s.
fn long() -> Retention {
    Retention::new(secs(10), secs(60), secs(120))
}

/// Lease 1 s (the shortest), long window and retention.
fn one_second_lease() -> Retention {
    Retention::new(secs(1), secs(60), secs(120))
}

/// A little past a one-second lease.
const PAST_LEASE: Duration = Duration::from_millis(1300);

async fn claim<S: DedupeStore>(store: &S, key: &DedupeKey, token: LeaseToken, t: Retention) -> Claim {
    store.claim(key, token, t).await.expect("claim")
}

/// Asserts `claim` answers `InProgress` with `0 < retry_after <= lease`.
async fn assert_in_progress<S: DedupeStore>(what: &str, store: &S, key: &DedupeKey, t: Retention) {
    match claim(store, key, LeaseToken::random(), t).await {
        Claim::InProgress { retry_after } => assert!(
            !retry_after.is_zero() && retry_after <= t.lease(),
            "{what}: retry_after {retry_after:?} not in (0, {:?}]",
            t.lease()
        ),
        other => panic!("{what}: expected InProgress, got {other:?}"),
    }
}

async fn claim_then_in_progress_then_processed<S: DedupeStore + Clone>(store: S) {
    let k = key("basic");
    let t = long();
    let owner = LeaseToken::random();
    assert_eq!(claim(&store, &k, owner, t).await, Claim::Acquired);
    assert_in_progress("second claim", &store, &k, t).await;
    assert_in_progress("third claim", &store, &k, t).await;
    store.complete(&k, owner, t).await.expect("complete");
    for _ in 0..3 {
        assert_eq!(
            claim(&store, &k, LeaseToken::random(), t).await,
            Claim::AlreadyProcessed
        );
    }
}

async fn release_frees_the_key<S: DedupeStore + Clone>(store: S) {
    let k = key("release");
    let t = long();
    let first = LeaseToken::random();
    assert_eq!(claim(&store, &k, first, t).await, Claim::Acquired);
    store.release(&k, first).await.expect("release");
    let second = LeaseToken::random();
    assert_eq!(claim(&store, &k, second, t).await, Claim::Acquired);
    // The new claim is a real one: it holds the key.
    assert_in_progress("after the re-claim", &store, &k, t).await;
    store.complete(&k, second, t).await.expect("complete");
    assert_eq!(
        claim(&store, &k, LeaseToken::random(), t).await,
        Claim::AlreadyProcessed
    );
}

async fn foreign_token_cannot_complete_or_release_a_live_claim<S: DedupeStore + Clone>(store: S) {
    let k = key("foreign");
    let t = long();
    let owner = LeaseToken::random();
    let stranger = LeaseToken::random();
    assert_eq!(claim(&store, &k, owner, t).await, Claim::Acquired);
    store.release(&k, stranger).await.expect("foreign release is Ok");
    assert_in_progress("after a foreign release", &store, &k, t).await;
    store
        .complete(&k, stranger, t)
        .await
        .expect("foreign complete is Ok");
    assert_in_progress("after a foreign complete", &store, &k, t).await;
    // The owner still holds it: its release frees the key.
    store.release(&k, owner).await.expect("release");
    assert_eq!(claim(&store, &k, stranger, t).await, Claim::Acquired);
}

async fn release_after_complete_keeps_it_processed<S: DedupeStore + Clone>(store: S) {
    let k = key("release-after-complete");
    let t = long();
    let owner = LeaseToken::random();
    assert_eq!(claim(&store, &k, owner, t).await, Claim::Acquired);
    store.complete(&k, owner, t).await.expect("complete");
    store.release(&k, owner).await.expect("release");
    store.release(&k, LeaseToken::random()).await.expect("release");
    assert_eq!(
        claim(&store, &k, LeaseToken::random(), t).await,
        Claim::AlreadyProcessed
    );
}

async fn lease_expiry_frees_the_key<S: DedupeStore + Clone>(store: S) {
    let k = key("lease");
    let t = one_second_lease();
    assert_eq!(claim(&store, &k, LeaseToken::random(), t).await, Claim::Acquired);
    assert_in_progress("within the lease", &store, &k, t).await;
    tokio::time::sleep(PAST_LEASE).await;
    let next = LeaseToken::random();
    assert_eq!(claim(&store, &k, next, t).await, Claim::Acquired);
    assert_in_progress("the new claim holds it", &store, &k, t).await;
}

async fn complete_after_own_lease_expired_records_processed<S: DedupeStore + Clone>(store: S) {
    let k = key("late-complete");
    let t = one_second_lease();
    let owner = LeaseToken::random();
    assert_eq!(claim(&store, &k, owner, t).await, Claim::Acquired);
    tokio::time::sleep(PAST_LEASE).await;
    // Nobody else claimed it meanwhile: the work was done, record it.
    store.complete(&k, owner, t).await.expect("complete");
    assert_eq!(
        claim(&store, &k, LeaseToken::random(), t).await,
        Claim::AlreadyProcessed
    );
}

async fn late_owner_cannot_touch_the_next_holder<S: DedupeStore + Clone>(store: S) {
    let k = key("late-owner");
    let t = one_second_lease();
    let late = LeaseToken::random();
    assert_eq!(claim(&store, &k, late, t).await, Claim::Acquired);
    tokio::time::sleep(PAST_LEASE).await;
    let next = LeaseToken::random();
    let t_next = long();
    assert_eq!(claim(&store, &k, next, t_next).await, Claim::Acquired);
    // The handler that outlived its lease finishes now: it must neither
    // free nor complete the claim the next request holds.
    store.release(&k, late).await.expect("release");
    assert_in_progress("after the late owner's release", &store, &k, t_next).await;
    store.complete(&k, late, t).await.expect("complete");
    assert_in_progress("after the late owner's complete", &store, &k, t_next).await;
    store.complete(&k, next, t_next).await.expect("complete");
    assert_eq!(
        claim(&store, &k, LeaseToken::random(), t_next).await,
        Claim::AlreadyProcessed
    );
}

async fn fifty_concurrent_claims_acquire_once<S: DedupeStore + Clone>(store: S) {
    const N: usize = 50;
    let k = key("concurrent");
    let t = long();
    let barrier = Arc::new(Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                store.claim(&k, LeaseToken::random(), t).await
            })
        })
        .collect();
    let mut acquired = 0;
    for task in tasks {
        match task.await.expect("task").expect("claim") {
            Claim::Acquired => acquired += 1,
            Claim::InProgress { retry_after } => {
                assert!(
                    !retry_after.is_zero() && retry_after <= t.lease(),
                    "{retry_after:?}"
                );
            }
            Claim::AlreadyProcessed => panic!("nobody completed the key"),
        }
    }
    assert_eq!(acquired, 1, "exactly one of {N} concurrent claims acquires");
}

async fn distinct_keys_are_independent<S: DedupeStore + Clone>(store: S) {
    let t = long();
    let a = key("independent-a");
    let b = key("independent-b");
    // The same id in another namespace is another key.
    let id = format!("{:?}", LeaseToken::random());
    let c1 = DedupeKey::from_id("ns-1", id.as_bytes());
    let c2 = DedupeKey::from_id("ns-2", id.as_bytes());
    let (ta, tb, tc1, tc2) = (
        LeaseToken::random(),
        LeaseToken::random(),
        LeaseToken::random(),
        LeaseToken::random(),
    );
    assert_eq!(claim(&store, &a, ta, t).await, Claim::Acquired);
    assert_eq!(claim(&store, &b, tb, t).await, Claim::Acquired);
    assert_eq!(claim(&store, &c1, tc1, t).await, Claim::Acquired);
    assert_eq!(claim(&store, &c2, tc2, t).await, Claim::Acquired);
    store.complete(&a, ta, t).await.expect("complete");
    store.release(&c1, tc1).await.expect("release");
    assert_eq!(
        claim(&store, &a, LeaseToken::random(), t).await,
        Claim::AlreadyProcessed
    );
    assert_in_progress("b is untouched by a's completion", &store, &b, t).await;
    assert_in_progress("c2 is untouched by c1's release", &store, &c2, t).await;
    assert_eq!(claim(&store, &c1, LeaseToken::random(), t).await, Claim::Acquired);
    store.release(&b, tb).await.expect("release");
    assert_eq!(
        claim(&store, &a, LeaseToken::random(), t).await,
        Claim::AlreadyProcessed,
        "a is untouched by b's release"
    );
    assert_eq!(claim(&store, &b, LeaseToken::random(), t).await, Claim::Acquired);
}

async fn completed_key_is_forgotten_after_idempotency_retention<S: DedupeStore + Clone>(store: S) {
    let k = key("retention");
    // Replay window 1 s, idempotency retention 2 s.
    let t = Retention::new(secs(10), secs(1), secs(2));
    let owner = LeaseToken::random();
    assert_eq!(claim(&store, &k, owner, t).await, Claim::Acquired);
    store.complete(&k, owner, t).await.expect("complete");
    let completed = Instant::now();
    // Within the replay window it must be remembered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        claim(&store, &k, LeaseToken::random(), t).await,
        Claim::AlreadyProcessed
    );
    tokio::time::sleep_until((completed + Duration::from_millis(2500)).into()).await;
    assert_eq!(
        claim(&store, &k, LeaseToken::random(), t).await,
        Claim::Acquired,
        "a completed key is still remembered 2.5 s after completion with a 2 s retention"
    );
}

// ---------------------------------------------------------------------------
// B. MemoryStore's bound
// ---------------------------------------------------------------------------

const T0: i64 = 1_700_000_000;

fn fixed_memory(max: usize, clock: &Arc<FixedClock>) -> MemoryStore {
    MemoryStore::builder()
        .max_entries(NonZeroUsize::new(max).unwrap())
        .clock(Arc::clone(clock))
        .build()
}

/// Claims and completes `k`; `Err` if the store is full.
async fn process<S: DedupeStore>(store: &S, k: &DedupeKey, t: Retention) -> Result<(), StoreError> {
    let token = LeaseToken::random();
    match store.claim(k, token, t).await? {
        Claim::Acquired => store.complete(k, token, t).await,
        other => panic!("a fresh key was {other:?}"),
    }
}

fn expect_full(what: &str, r: Result<(), StoreError>, min: Duration, max: Duration) {
    match r {
        Err(e) => {
            assert_eq!(e.kind(), StoreErrorKind::Full, "{what}: {e}");
            assert!(
                e.retry_after() >= min && e.retry_after() <= max,
                "{what}: retry_after {:?} not in [{min:?}, {max:?}]",
                e.retry_after()
            );
        }
        Ok(()) => panic!("{what}: a full store accepted a new key"),
    }
}

#[tokio::test]
async fn memory_full_of_young_keys_fails_closed_and_evicts_only_old_ones() {
    let clock = Arc::new(FixedClock::new(T0));
    let store = fixed_memory(160, &clock);
    let max = store.max_entries();
    assert_eq!(max, 160);
    // Replay window 1000 s, retention a day: room is made only by evicting
    // keys past their replay window.
    let t = Retention::new(secs(60), secs(1000), secs(86_400));
    let mut n = 0u64;
    let mut fresh = || {
        n += 1;
        DedupeKey::from_id("full", &n.to_be_bytes())
    };

    // Batch A, at T0: fill the store completely. Keys landing in an
    // already full part of the store are refused with Full.
    let mut a = Vec::new();
    let mut refused = 0;
    while store.len() < max {
        let k = fresh();
        match process(&store, &k, t).await {
            Ok(()) => a.push(k),
            Err(e) => {
                assert_eq!(e.kind(), StoreErrorKind::Full, "{e}");
                assert_eq!(e.retry_after(), secs(1000), "nothing has aged yet");
                refused += 1;
            }
        }
        assert!(a.len() + refused < 1_000_000, "the store never filled up");
    }
    assert_eq!(a.len(), max);

    // 400 s later every key is still young: a new key is refused, with the
    // time left in the replay window, whatever part of the store it lands in.
    clock.advance(400);
    for _ in 0..200 {
        let k = fresh();
        expect_full(
            "400 s after the fill",
            process(&store, &k, t).await,
            secs(599),
            secs(600),
        );
        assert_eq!(store.len(), max);
    }
    // And not one young key was forgotten for them.
    for k in &a {
        assert_eq!(
            claim(&store, k, LeaseToken::random(), t).await,
            Claim::AlreadyProcessed,
            "a key younger than its replay window was forgotten"
        );
    }

    // Past batch A's replay window: new keys evict old ones.
    clock.advance(601);
    let mut b = Vec::new();
    for _ in 0..40 {
        let k = fresh();
        process(&store, &k, t)
            .await
            .expect("room is made by evicting keys past their replay window");
        b.push(k);
        assert!(store.len() <= max);
    }

    // Batch C, at the same instant: keep adding until the young keys (B
    // and C) fill the store. Keys landing in a part already full of young
    // keys are refused; every young key must survive.
    let mut young = b.clone();
    let mut attempts = 0;
    while young.len() < max {
        let k = fresh();
        match process(&store, &k, t).await {
            Ok(()) => young.push(k),
            Err(e) => {
                assert_eq!(e.kind(), StoreErrorKind::Full, "{e}");
                assert_eq!(e.retry_after(), secs(1000), "B and C were all completed now");
            }
        }
        assert!(store.len() <= max, "len {} > max {max}", store.len());
        attempts += 1;
        assert!(attempts < 1_000_000, "the store never filled with young keys");
    }
    assert_eq!(store.len(), max, "every A key was evicted for a young one");
    for k in &young {
        assert_eq!(
            claim(&store, k, LeaseToken::random(), t).await,
            Claim::AlreadyProcessed,
            "a young key was evicted"
        );
    }
    expect_full(
        "full of young keys",
        process(&store, &fresh(), t).await,
        secs(1000),
        secs(1000),
    );
}

#[tokio::test]
async fn memory_never_evicts_a_live_claim() {
    let clock = Arc::new(FixedClock::new(T0));
    let store = fixed_memory(1, &clock);
    assert_eq!(store.max_entries(), 1);
    let t = Retention::new(secs(60), secs(1), secs(1));
    let held = DedupeKey::from_id("live", b"held");
    let other = DedupeKey::from_id("live", b"other");
    assert_eq!(
        claim(&store, &held, LeaseToken::random(), t).await,
        Claim::Acquired
    );
    expect_full("live claim", process(&store, &other, t).await, secs(60), secs(60));
    clock.advance(30);
    expect_full(
        "live claim, 30 s on",
        process(&store, &other, t).await,
        secs(30),
        secs(30),
    );
    assert_in_progress("the claim survived", &store, &held, t).await;
    clock.advance(31);
    process(&store, &other, t)
        .await
        .expect("an expired claim makes room");
    assert_eq!(store.len(), 1);
}

/// A flood of distinct, completed keys with a small bound and a clock
/// moving past the replay window: `len()` never exceeds the bound, no key
/// is refused (there is always an old key to evict), and recent keys are
/// remembered.
#[tokio::test]
async fn memory_flood_stays_bounded() {
    // 1,000,000 keys take six to seven seconds in an unoptimised build, so
    // debug builds flood with 200,000: twenty times the bound, which makes
    // the point as well. Optimised builds use the full million.
    const KEYS: u64 = if cfg!(debug_assertions) {
        200_000
    } else {
        1_000_000
    };
    const MAX: usize = 10_000;
    // Keys completed per clock second: with a one-second replay window, the
    // young keys are a fraction of the bound, so none is ever refused.
    const PER_SECOND: u64 = 2_000;
    let clock = Arc::new(FixedClock::new(T0));
    let store = fixed_memory(MAX, &clock);
    let max = store.max_entries();
    // Replay window 1 s, retention an hour: only eviction (not expiry)
    // keeps the store bounded.
    let t = Retention::new(secs(60), secs(1), secs(3600));
    let mut peak = 0;
    for i in 0..KEYS {
        if i > 0 && i % PER_SECOND == 0 {
            clock.advance(1);
        }
        let k = DedupeKey::from_id("flood", &i.to_be_bytes());
        let token = LeaseToken::from_u128(u128::from(i));
        match store.claim(&k, token, t).await {
            Ok(Claim::Acquired) => {}
            other => panic!("key {i}: {other:?} (len {})", store.len()),
        }
        store.complete(&k, token, t).await.expect("complete");
        if i % 97 == 0 {
            let len = store.len();
            assert!(len <= max, "key {i}: len {len} > max {max}");
            peak = peak.max(len);
        }
    }
    assert!(store.len() <= max);
    // The store really filled (so eviction, not expiry, was exercised).
    assert!(peak > max * 9 / 10, "peak {peak} of {max}");
    // The last second's keys are within their replay window: remembered.
    for i in KEYS - PER_SECOND / 2..KEYS {
        let k = DedupeKey::from_id("flood", &i.to_be_bytes());
        assert_eq!(
            claim(&store, &k, LeaseToken::random(), t).await,
            Claim::AlreadyProcessed,
            "key {i}"
        );
    }
}

/// The bound is set in bytes by default (64 MiB, 60 bytes a key), or in
/// keys; `max_bytes` and `max_entries` set the same bound, the last call
/// winning.
#[test]
fn memory_bound_in_bytes_or_keys() {
    assert_eq!(MemoryStore::DEFAULT_MAX_BYTES, 64 << 20);
    assert_eq!(MemoryStore::BYTES_PER_KEY, 60);
    let default = MemoryStore::new();
    assert_eq!(default.capacity(), 1_118_468);
    assert_eq!(default.max_entries(), default.capacity());
    assert!(default.capacity() * MemoryStore::BYTES_PER_KEY <= MemoryStore::DEFAULT_MAX_BYTES);
    // Nothing is allocated up front beyond a few small tables.
    assert!(default.table_bytes() < 64 << 10, "{}", default.table_bytes());

    let mib = NonZeroUsize::new(1 << 20).unwrap();
    let ten = NonZeroUsize::new(10).unwrap();
    let bytes = MemoryStore::builder().max_bytes(mib).build();
    assert_eq!(bytes.capacity(), ((1 << 20) - 16 * 48) / 60);
    assert_eq!(
        MemoryStore::builder()
            .max_bytes(mib)
            .max_entries(ten)
            .build()
            .capacity(),
        10
    );
    assert_eq!(
        MemoryStore::builder()
            .max_entries(ten)
            .max_bytes(mib)
            .build()
            .capacity(),
        bytes.capacity()
    );
    // A bound too small for one key still holds one.
    let tiny = MemoryStore::builder().max_bytes(NonZeroUsize::MIN).build();
    assert_eq!(tiny.capacity(), 1);
}

/// A byte-bounded store filled with young keys: it holds at most its
/// capacity, its tables never take more than the bytes, it refuses new
/// keys with the time left in the replay window, forgets none of them, and
/// takes new keys again once the old ones are past their window.
#[tokio::test]
async fn memory_byte_bound_fails_closed_and_stays_within_its_bytes() {
    const BYTES: usize = 256 << 10;
    let clock = Arc::new(FixedClock::new(T0));
    let store = MemoryStore::builder()
        .max_bytes(NonZeroUsize::new(BYTES).unwrap())
        .clock(Arc::clone(&clock))
        .build();
    let capacity = store.capacity();
    assert_eq!(capacity, (BYTES - 16 * 48) / 60);
    let t = Retention::new(secs(60), secs(300), secs(86_400));
    let mut kept = Vec::new();
    let mut refused = 0;
    for n in 0..(capacity as u64) * 2 {
        let k = DedupeKey::from_id("bytes", &n.to_be_bytes());
        match process(&store, &k, t).await {
            Ok(()) => kept.push(k),
            Err(e) => {
                assert_eq!(e.kind(), StoreErrorKind::Full, "{e}");
                assert_eq!(e.retry_after(), secs(300));
                refused += 1;
            }
        }
        assert!(store.len() <= capacity);
        assert!(store.table_bytes() <= BYTES, "{} bytes", store.table_bytes());
    }
    assert_eq!(kept.len() + refused, capacity * 2);
    assert_eq!(store.len(), kept.len());
    // Keys spread over the shards, so some filled before others.
    assert!(kept.len() > capacity * 8 / 10, "{} of {capacity}", kept.len());
    for k in &kept {
        assert_eq!(
            claim(&store, k, LeaseToken::random(), t).await,
            Claim::AlreadyProcessed,
            "a young key was forgotten"
        );
    }
    clock.advance(301);
    for n in 0..100u64 {
        let k = DedupeKey::from_id("bytes, later", &n.to_be_bytes());
        process(&store, &k, t)
            .await
            .expect("keys past their replay window make room");
    }
    assert!(store.len() <= capacity);
}

/// The tables grow with the keys held and shrink again once they expire.
#[tokio::test]
async fn memory_tables_follow_the_keys() {
    let clock = Arc::new(FixedClock::new(T0));
    let store = MemoryStore::builder().clock(Arc::clone(&clock)).build();
    let empty = store.table_bytes();
    let t = Retention::new(secs(60), secs(10), secs(10));
    for n in 0..50_000u64 {
        process(&store, &DedupeKey::from_id("grow", &n.to_be_bytes()), t)
            .await
            .unwrap();
    }
    let grown = store.table_bytes();
    // 50 000 keys at 48 bytes a slot, at most four fifths full.
    assert!(grown >= 50_000 * 60, "{grown}");
    assert!(grown <= 50_000 * 48 * 4, "{grown}");
    // Once they have expired, new keys (few at a time) tidy them away.
    for n in 0..50_000u64 {
        clock.advance(11);
        process(&store, &DedupeKey::from_id("later", &n.to_be_bytes()), t)
            .await
            .unwrap();
    }
    assert!(store.len() < 1_000, "{}", store.len());
    assert!(
        store.table_bytes() < grown / 8,
        "{} of {grown}",
        store.table_bytes()
    );
    assert!(store.table_bytes() >= empty);
}

// ---------------------------------------------------------------------------
// C. Through the layer
// ---------------------------------------------------------------------------

const STRIPE_SECRET: &str = "whsec_dedupe_stripe_5c2a91";
const GITHUB_SECRET: &str = "github dedupe secret";
const SLACK_SECRET: &str = "slack-dedupe-secret-77e1";
const STANDARD_SECRET: &str = "whsec_ZGVkdXBlLXN0YW5kYXJkLWtleS0zMi1ieXRlcyEhIQ==";

#[derive(Clone, Copy, Debug)]
enum P {
    Stripe,
    GitHub,
    Standard,
    Slack,
}

impl P {
    fn scheme(self) -> Scheme {
        match self {
            P::Stripe => Scheme::stripe(),
            P::GitHub => Scheme::github(),
            P::Standard => Scheme::standard_webhooks(),
            P::Slack => Scheme::slack(),
        }
    }

    fn secret(self) -> &'static str {
        match self {
            P::Stripe => STRIPE_SECRET,
            P::GitHub => GITHUB_SECRET,
            P::Standard => STANDARD_SECRET,
            P::Slack => SLACK_SECRET,
        }
    }

    /// A verifier (system clock, default tolerance) deduplicating in
    /// `store` under `namespace`.
    fn verifier(self, store: impl DedupeStore, namespace: &str) -> Verifier {
        Verifier::builder(self.scheme())
            .secret(self.secret())
            .dedupe(Dedupe::builder(store, namespace).build().expect("Dedupe"))
            .build()
            .expect("Verifier")
    }

    /// Signs like the real sender, now.
    fn signer(self) -> TestSigner {
        TestSigner::new(&self.scheme(), self.secret()).expect("signer")
    }
}

fn now() -> i64 {
    SystemClock.now_unix()
}

/// What the handler does, and how often it ran.
#[derive(Default)]
struct Probe {
    calls: AtomicUsize,
    /// The status it answers; 0 means 200.
    status: AtomicU16,
    /// Whether it waits on `gate` before answering.
    block: AtomicBool,
    gate: Notify,
    /// A pause before answering, in milliseconds.
    delay_ms: AtomicU64,
}

impl Probe {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn block(&self, block: bool) {
        self.block.store(block, Ordering::SeqCst);
    }

    /// Waits until the handler has been entered `n` times.
    async fn entered(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.calls() < n {
            assert!(Instant::now() < deadline, "the handler was not entered {n} times");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Adds `POST path`, behind `verifier`'s layer, whose handler follows
/// `probe` and answers `{"handled":true,"id":…,"type":…}`.
fn route(router: Router, path: &str, verifier: &Verifier, probe: &Arc<Probe>) -> Router {
    let probe = Arc::clone(probe);
    let handler = move |hook: VerifiedWebhook| {
        let probe = Arc::clone(&probe);
        async move {
            probe.calls.fetch_add(1, Ordering::SeqCst);
            if probe.block.load(Ordering::SeqCst) {
                probe.gate.notified().await;
            }
            let delay = probe.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let status = match probe.status.load(Ordering::SeqCst) {
                0 => StatusCode::OK,
                s => StatusCode::from_u16(s).expect("status"),
            };
            (
                status,
                Json(json!({
                    "handled": true,
                    "id": hook.delivery_id(),
                    "type": hook.event_type(),
                })),
            )
        }
    };
    router.route(path, post(handler).layer(verifier.layer()))
}

/// `POST /hook` behind `verifier`, and its probe.
fn app(verifier: &Verifier) -> (Router, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    (route(Router::new(), PATH, verifier, &probe), probe)
}

/// What came back.
#[derive(Debug)]
enum Outcome {
    /// The handler answered, with this status and body.
    Handled(StatusCode, Value),
    /// 200 `{"status":"duplicate",…}`.
    Duplicate(Value),
    /// A problem document from the layer, with its `Retry-After` in seconds.
    Rejected {
        status: StatusCode,
        reason: String,
        retry_after: Option<u64>,
    },
}

async fn outcome(response: Response) -> Outcome {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let retry_after = response.headers().get(header::RETRY_AFTER).map(|v| {
        v.to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("Retry-After {v:?} is not whole seconds"))
    });
    let bytes = body_bytes(response).await;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    if body["handled"] == json!(true) {
        return Outcome::Handled(status, body);
    }
    if status == StatusCode::OK {
        assert_eq!(content_type, "application/json", "duplicate content type");
        assert_eq!(body["status"], json!("duplicate"), "{body}");
        return Outcome::Duplicate(body);
    }
    assert_eq!(content_type, "application/problem+json", "{status}: {body}");
    let reason = body["reason"].as_str().unwrap_or_default().to_owned();
    if let Some(after) = retry_after {
        assert_eq!(body["retry_after"], json!(after), "{body}");
    }
    Outcome::Rejected {
        status,
        reason,
        retry_after,
    }
}

async fn deliver(router: &Router, request: Request<Body>) -> Outcome {
    outcome(send(router.clone(), request).await).await
}

/// Asserts the handler answered 200 for delivery `id`.
#[track_caller]
fn processed(what: &str, o: &Outcome, id: Option<&str>) {
    match o {
        Outcome::Handled(StatusCode::OK, body) => assert_eq!(body["id"], json!(id), "{what}: {body}"),
        other => panic!("{what}: expected the handler's 200, got {other:?}"),
    }
}

/// Asserts the exact duplicate answer.
#[track_caller]
fn duplicate(what: &str, o: &Outcome, id: Option<&str>, event_type: Option<&str>) {
    match o {
        Outcome::Duplicate(body) => assert_eq!(
            body,
            &json!({"status": "duplicate", "id": id, "type": event_type}),
            "{what}"
        ),
        other => panic!("{what}: expected a duplicate, got {other:?}"),
    }
}

/// Asserts a 409 `in_progress` with a `Retry-After` of at least a second
/// and at most `lease`.
#[track_caller]
fn in_progress(what: &str, o: &Outcome, lease: Duration) {
    match o {
        Outcome::Rejected {
            status,
            reason,
            retry_after: Some(after),
        } if *status == StatusCode::CONFLICT && reason == "in_progress" => {
            assert!(
                *after >= 1 && *after <= lease.as_secs(),
                "{what}: Retry-After {after} not in [1, {}]",
                lease.as_secs()
            );
        }
        other => panic!("{what}: expected 409 in_progress with Retry-After, got {other:?}"),
    }
}

fn stripe_body(id: &str) -> String {
    format!(r#"{{"id":"{id}","type":"invoice.paid","object":"event"}}"#)
}

/// A Stripe id unique to this run (the Redis suites may share a server).
fn unique(prefix: &str) -> String {
    format!("{prefix}_{:032x}", LeaseToken::random().as_u128())
}

for_each_store!(through_the_layer:
    second_identical_delivery_is_a_duplicate,
    stripe_dedupes_on_the_body_id,
    standard_dedupes_on_webhook_id,
    slack_dedupes_on_event_id,
    github_dedupes_on_the_body_not_the_delivery_header,
    routes_with_different_namespaces_are_separate,
    forged_request_never_touches_the_store,
    handler_server_error_releases_the_claim,
    handler_client_error_releases_the_claim,
    slow_handler_answers_concurrent_delivery_in_progress,
    dropped_handler_future_releases_the_claim,
    fifty_concurrent_identical_deliveries_are_processed_once,
);

async fn second_identical_delivery_is_a_duplicate<S: DedupeStore + Clone>(store: S) {
    let (router, probe) = app(&P::Stripe.verifier(store, "stripe"));
    let id = unique("evt");
    let request = || {
        P::Stripe
            .signer()
            .timestamp(now())
            .request(PATH, stripe_body(&id))
    };
    processed("first", &deliver(&router, request()).await, Some(&id));
    duplicate(
        "second",
        &deliver(&router, request()).await,
        Some(&id),
        Some("invoice.paid"),
    );
    duplicate(
        "third",
        &deliver(&router, request()).await,
        Some(&id),
        Some("invoice.paid"),
    );
    assert_eq!(probe.calls(), 1, "the handler ran once");
}

async fn stripe_dedupes_on_the_body_id<S: DedupeStore + Clone>(store: S) {
    let (router, probe) = app(&P::Stripe.verifier(store, "stripe"));
    let id = unique("evt");
    let first = format!(r#"{{"id":"{id}","type":"invoice.paid","attempt":1}}"#);
    let retry = format!(r#"{{"id":"{id}","type":"invoice.paid","attempt":2}}"#);
    let a = P::Stripe.signer().timestamp(now()).request(PATH, first.clone());
    let b = P::Stripe.signer().timestamp(now() - 30).request(PATH, retry);
    assert_ne!(
        a.headers()["stripe-signature"],
        b.headers()["stripe-signature"],
        "the retry must carry another timestamp and signature"
    );
    processed("first", &deliver(&router, a).await, Some(&id));
    duplicate(
        "same id, other body, timestamp and signature",
        &deliver(&router, b).await,
        Some(&id),
        Some("invoice.paid"),
    );
    // Another id is another delivery, even in an otherwise equal body.
    let other = unique("evt");
    let c = P::Stripe
        .signer()
        .timestamp(now())
        .request(PATH, first.replace(&id, &other));
    processed("another id", &deliver(&router, c).await, Some(&other));
    assert_eq!(probe.calls(), 2);
}

async fn standard_dedupes_on_webhook_id<S: DedupeStore + Clone>(store: S) {
    let (router, probe) = app(&P::Standard.verifier(store, "standard"));
    let id = unique("msg");
    let body = r#"{"type":"user.created","data":{"n":1}}"#;
    let other_body = r#"{"type":"user.created","data":{"n":2}}"#;
    let signer = || P::Standard.signer().id(id.clone());
    processed(
        "first",
        &deliver(&router, signer().timestamp(now()).request(PATH, body)).await,
        Some(&id),
    );
    duplicate(
        "same webhook-id, other body and timestamp",
        &deliver(&router, signer().timestamp(now() - 20).request(PATH, other_body)).await,
        Some(&id),
        Some("user.created"),
    );
    // The same body under another webhook-id is another delivery.
    let id2 = unique("msg");
    processed(
        "same body, other webhook-id",
        &deliver(
            &router,
            P::Standard
                .signer()
                .id(id2.clone())
                .timestamp(now())
                .request(PATH, body),
        )
        .await,
        Some(&id2),
    );
    assert_eq!(probe.calls(), 2);
}

async fn slack_dedupes_on_event_id<S: DedupeStore + Clone>(store: S) {
    let (router, probe) = app(&P::Slack.verifier(store, "slack"));
    let event = unique("Ev");
    let body = |event_id: &str, text: &str| {
        format!(r#"{{"type":"event_callback","event_id":"{event_id}","event":{{"text":"{text}"}}}}"#)
    };
    processed(
        "first",
        &deliver(
            &router,
            P::Slack
                .signer()
                .timestamp(now())
                .request(PATH, body(&event, "a")),
        )
        .await,
        Some(&event),
    );
    duplicate(
        "same event_id, other body and timestamp",
        &deliver(
            &router,
            P::Slack
                .signer()
                .timestamp(now() - 10)
                .request(PATH, body(&event, "b")),
        )
        .await,
        Some(&event),
        Some("event_callback"),
    );
    let other = unique("Ev");
    processed(
        "another event_id",
        &deliver(
            &router,
            P::Slack
                .signer()
                .timestamp(now())
                .request(PATH, body(&other, "a")),
        )
        .await,
        Some(&other),
    );
    // A slash command has no event_id: the body itself is the key.
    let form = format!("command=%2Fweather&text={}", unique("t"));
    let form_request = |ts: i64, form: &str| {
        P::Slack
            .signer()
            .timestamp(ts)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .request(PATH, form.to_owned())
    };
    processed(
        "slash command",
        &deliver(&router, form_request(now(), &form)).await,
        None,
    );
    duplicate(
        "the same slash command body, later",
        &deliver(&router, form_request(now() - 10, &form)).await,
        None,
        Some("/weather"),
    );
    processed(
        "another slash command body",
        &deliver(&router, form_request(now(), &format!("{form}x"))).await,
        None,
    );
    assert_eq!(probe.calls(), 4);
}

async fn github_dedupes_on_the_body_not_the_delivery_header<S: DedupeStore + Clone>(store: S) {
    let (router, probe) = app(&P::GitHub.verifier(store, "github"));
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{}"}}"#, unique("sha"));
    let signer = |delivery: &str| P::GitHub.signer().id(delivery).event_type("push");
    let (d1, d2) = (unique("delivery"), unique("delivery"));
    processed(
        "first",
        &deliver(&router, signer(&d1).request(PATH, body.clone())).await,
        Some(&d1),
    );
    // A captured body replayed under a fresh (unsigned) delivery id.
    duplicate(
        "the same body under a fresh X-GitHub-Delivery",
        &deliver(&router, signer(&d2).request(PATH, body.clone())).await,
        Some(&d2),
        Some("push"),
    );
    // Another body under the first delivery id is another delivery.
    processed(
        "another body, the first delivery id",
        &deliver(&router, signer(&d1).request(PATH, format!("{body} "))).await,
        Some(&d1),
    );
    assert_eq!(probe.calls(), 2);
}

async fn routes_with_different_namespaces_are_separate<S: DedupeStore + Clone>(store: S) {
    let probe = Arc::new(Probe::default());
    let router = route(
        route(
            Router::new(),
            "/a",
            &P::Stripe.verifier(store.clone(), "route-a"),
            &probe,
        ),
        "/b",
        &P::Stripe.verifier(store, "route-b"),
        &probe,
    );
    let id = unique("evt");
    let request = |path: &str| {
        P::Stripe
            .signer()
            .timestamp(now())
            .request(path, stripe_body(&id))
    };
    processed("route a", &deliver(&router, request("/a")).await, Some(&id));
    processed("route b", &deliver(&router, request("/b")).await, Some(&id));
    duplicate(
        "route a again",
        &deliver(&router, request("/a")).await,
        Some(&id),
        Some("invoice.paid"),
    );
    duplicate(
        "route b again",
        &deliver(&router, request("/b")).await,
        Some(&id),
        Some("invoice.paid"),
    );
    assert_eq!(probe.calls(), 2);
}

async fn forged_request_never_touches_the_store<S: DedupeStore + Clone>(store: S) {
    let counting = Counting::new(store);
    let (router, probe) = app(&P::Stripe.verifier(counting.clone(), "stripe"));
    let id = unique("evt");
    let body = stripe_body(&id);
    // Signed with another secret, carrying the real delivery's id.
    let forged = TestSigner::new(&Scheme::stripe(), "whsec_attacker_guess")
        .unwrap()
        .timestamp(now())
        .request(PATH, body.clone());
    assert_problem(
        "forged signature",
        send(router.clone(), forged).await,
        RejectionKind::SignatureMismatch,
        "stripe",
        &[STRIPE_SECRET],
    )
    .await;
    // A captured request replayed after the tolerance.
    let stale = P::Stripe
        .signer()
        .timestamp(now() - 3600)
        .request(PATH, body.clone());
    assert_problem(
        "stale replay",
        send(router.clone(), stale).await,
        RejectionKind::TimestampOutOfTolerance,
        "stripe",
        &[STRIPE_SECRET],
    )
    .await;
    assert_eq!(
        counting.counts(),
        (0, 0, 0),
        "a rejected request reached the store"
    );
    assert_eq!(probe.calls(), 0);
    // The real delivery is not blocked by them.
    let real = P::Stripe.signer().timestamp(now()).request(PATH, body);
    processed("the real delivery", &deliver(&router, real).await, Some(&id));
    assert_eq!(counting.counts(), (1, 1, 0));
    assert_eq!(probe.calls(), 1);
}

/// The handler answers `status` (≥ 400) once: the claim is released and
/// the provider's retry is processed; the retry's success completes it.
async fn handler_failure_releases_the_claim<S: DedupeStore + Clone>(store: S, status: u16) {
    let counting = Counting::new(store);
    let (router, probe) = app(&P::Stripe.verifier(counting.clone(), "stripe"));
    let id = unique("evt");
    let request = || {
        P::Stripe
            .signer()
            .timestamp(now())
            .request(PATH, stripe_body(&id))
    };
    probe.answer(status);
    match deliver(&router, request()).await {
        Outcome::Handled(s, _) => assert_eq!(s.as_u16(), status, "the handler's answer is passed on"),
        other => panic!("expected the handler's {status}, got {other:?}"),
    }
    assert_eq!(counting.counts(), (1, 0, 1), "claimed, then released");
    probe.answer(0);
    processed("the retry", &deliver(&router, request()).await, Some(&id));
    assert_eq!(probe.calls(), 2, "the retry ran the handler again");
    duplicate(
        "after the successful retry",
        &deliver(&router, request()).await,
        Some(&id),
        Some("invoice.paid"),
    );
    assert_eq!(probe.calls(), 2);
    // A success below 400 other than 200 completes too.
    let id2 = unique("evt");
    probe.answer(202);
    let accepted = P::Stripe
        .signer()
        .timestamp(now())
        .request(PATH, stripe_body(&id2));
    assert!(matches!(
        deliver(&router, accepted).await,
        Outcome::Handled(StatusCode::ACCEPTED, _)
    ));
    let again = P::Stripe
        .signer()
        .timestamp(now())
        .request(PATH, stripe_body(&id2));
    duplicate(
        "after a 202",
        &deliver(&router, again).await,
        Some(&id2),
        Some("invoice.paid"),
    );
}

async fn handler_server_error_releases_the_claim<S: DedupeStore + Clone>(store: S) {
    handler_failure_releases_the_claim(store, 500).await;
}

async fn handler_client_error_releases_the_claim<S: DedupeStore + Clone>(store: S) {
    handler_failure_releases_the_claim(store, 422).await;
}

async fn slow_handler_answers_concurrent_delivery_in_progress<S: DedupeStore + Clone>(store: S) {
    let (router, probe) = app(&P::Stripe.verifier(store, "stripe"));
    let id = unique("evt");
    let request = || {
        P::Stripe
            .signer()
            .timestamp(now())
            .request(PATH, stripe_body(&id))
    };
    probe.block(true);
    let first = tokio::spawn({
        let router = router.clone();
        let request = request();
        async move { deliver(&router, request).await }
    });
    probe.entered(1).await;
    let response = send(router.clone(), request()).await;
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().parse::<u64>().expect("integer Retry-After"))
        .expect("Retry-After");
    // Default lease: 60 s.
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_problem(
        "concurrent delivery",
        response,
        RejectionKind::InProgress,
        "stripe",
        &[STRIPE_SECRET],
    )
    .await;
    assert_eq!(
        probe.calls(),
        1,
        "the concurrent delivery did not run the handler"
    );
    probe.block(false);
    probe.gate.notify_one();
    processed("the slow first delivery", &first.await.expect("task"), Some(&id));
    duplicate(
        "the retry after it finished",
        &deliver(&router, request()).await,
        Some(&id),
        Some("invoice.paid"),
    );
    assert_eq!(probe.calls(), 1);
}

/// Delivers `request` until the handler runs; a 409 is allowed while the
/// abandoned claim is being released. Panics after `limit`.
async fn processed_within(router: &Router, request: impl Fn() -> Request<Body>, limit: Duration) {
    let started = Instant::now();
    loop {
        match deliver(router, request()).await {
            Outcome::Handled(StatusCode::OK, _) => return,
            o @ Outcome::Rejected { .. } => in_progress("while the claim is released", &o, Duration::MAX),
            other => panic!("expected the handler's 200 or 409, got {other:?}"),
        }
        assert!(
            started.elapsed() < limit,
            "the abandoned claim was not released within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn dropped_handler_future_releases_the_claim<S: DedupeStore + Clone>(store: S) {
    let (router, probe) = app(&P::Stripe.verifier(store, "stripe"));

    // A timeout around the call fires while the handler waits: the
    // future is dropped once the handler has been entered.
    let id = unique("evt");
    let request = || {
        P::Stripe
            .signer()
            .timestamp(now())
            .request(PATH, stripe_body(&id))
    };
    probe.block(true);
    let mut call = Box::pin(send(router.clone(), request()));
    tokio::select! {
        response = &mut call => panic!("the blocked handler answered {}", response.status()),
        () = probe.entered(1) => {}
    }
    let timed_out = tokio::time::timeout(Duration::from_millis(50), &mut call).await;
    assert!(timed_out.is_err(), "the blocked handler answered");
    drop(call);
    assert_eq!(probe.calls(), 1);
    probe.block(false);
    processed_within(&router, request, Duration::from_secs(1)).await;
    assert_eq!(probe.calls(), 2, "the retry ran the handler");
    duplicate(
        "after the retry",
        &deliver(&router, request()).await,
        Some(&id),
        Some("invoice.paid"),
    );

    // The task serving the request is aborted (the client went away).
    let id2 = unique("evt");
    let request2 = || {
        P::Stripe
            .signer()
            .timestamp(now())
            .request(PATH, stripe_body(&id2))
    };
    probe.block(true);
    let task = tokio::spawn({
        let router = router.clone();
        let request = request2();
        async move { send(router, request).await }
    });
    probe.entered(3).await;
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    probe.block(false);
    processed_within(&router, request2, Duration::from_secs(1)).await;
    assert_eq!(probe.calls(), 4);
    duplicate(
        "after the retry of the aborted one",
        &deliver(&router, request2()).await,
        Some(&id2),
        Some("invoice.paid"),
    );
}

async fn fifty_concurrent_identical_deliveries_are_processed_once<S: DedupeStore + Clone>(store: S) {
    const N: usize = 50;
    let (router, probe) = app(&P::Stripe.verifier(store, "stripe"));
    probe.delay_ms.store(50, Ordering::SeqCst);
    let id = unique("evt");
    let signer = P::Stripe.signer().timestamp(now());
    let body = stripe_body(&id);
    let barrier = Arc::new(Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let router = router.clone();
            let request = signer.request(PATH, body.clone());
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                deliver(&router, request).await
            })
        })
        .collect();
    let (mut handled, mut duplicates, mut busy) = (0, 0, 0);
    for task in tasks {
        match task.await.expect("task") {
            o @ Outcome::Handled(..) => {
                processed("the one processed", &o, Some(&id));
                handled += 1;
            }
            o @ Outcome::Duplicate(_) => {
                duplicate("a concurrent one", &o, Some(&id), Some("invoice.paid"));
                duplicates += 1;
            }
            o @ Outcome::Rejected { .. } => {
                in_progress("a concurrent one", &o, secs(60));
                busy += 1;
            }
        }
    }
    assert_eq!(handled, 1, "{duplicates} duplicates, {busy} in progress");
    assert_eq!(handled + duplicates + busy, N);
    assert_eq!(probe.calls(), 1);
    duplicate(
        "afterwards",
        &deliver(&router, signer.request(PATH, body)).await,
        Some(&id),
        Some("invoice.paid"),
    );
}

/// A store that always fails.
#[derive(Clone, Default)]
struct Failing {
    calls: Arc<AtomicUsize>,
}

impl Failing {
    fn error() -> StoreError {
        StoreError::unavailable("the test store is down", secs(7))
    }
}

impl DedupeStore for Failing {
    fn claim<'a>(&'a self, _: &'a DedupeKey, _: LeaseToken, _: Retention) -> StoreFuture<'a, Claim> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(Self::error()) })
    }

    fn complete<'a>(&'a self, _: &'a DedupeKey, _: LeaseToken, _: Retention) -> StoreFuture<'a, ()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(Self::error()) })
    }

    fn release<'a>(&'a self, _: &'a DedupeKey, _: LeaseToken) -> StoreFuture<'a, ()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(Self::error()) })
    }
}

/// A memory store whose `complete` answers slowly.
#[derive(Clone)]
struct SlowComplete {
    inner: MemoryStore,
}

impl DedupeStore for SlowComplete {
    fn claim<'a>(&'a self, k: &'a DedupeKey, t: LeaseToken, r: Retention) -> StoreFuture<'a, Claim> {
        self.inner.claim(k, t, r)
    }

    fn complete<'a>(&'a self, k: &'a DedupeKey, t: LeaseToken, r: Retention) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.inner.complete(k, t, r).await
        })
    }

    fn release<'a>(&'a self, k: &'a DedupeKey, t: LeaseToken) -> StoreFuture<'a, ()> {
        self.inner.release(k, t)
    }
}

/// Regression: a request dropped while its successful handler's claim was
/// being completed left the claim unsettled, and the retry after the lease
/// ran the handler a second time.
#[tokio::test]
async fn dropped_while_completing_still_completes() {
    let store = SlowComplete {
        inner: memory_store(),
    };
    let verifier = Verifier::builder(P::Stripe.scheme())
        .secret(P::Stripe.secret())
        .dedupe(
            Dedupe::builder(store, "stripe")
                .lease(secs(1))
                .build()
                .expect("Dedupe"),
        )
        .build()
        .expect("Verifier");
    let (router, probe) = app(&verifier);
    let id = unique("evt");
    let request = || {
        P::Stripe
            .signer()
            .timestamp(now())
            .request(PATH, stripe_body(&id))
    };
    let first = tokio::time::timeout(Duration::from_millis(100), send(router.clone(), request())).await;
    assert!(first.is_err(), "the slow complete should outlast the timeout");
    assert_eq!(probe.calls(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    duplicate(
        "the retry after the lease",
        &deliver(&router, request()).await,
        Some(&id),
        Some("invoice.paid"),
    );
    assert_eq!(probe.calls(), 1, "the handler ran twice");
}

#[tokio::test]
async fn failing_store_answers_503_and_runs_nothing() {
    let store = Failing::default();
    let (router, probe) = app(&P::Stripe.verifier(store.clone(), "stripe"));
    let id = unique("evt");
    for attempt in 0..2 {
        let request = P::Stripe
            .signer()
            .timestamp(now())
            .request(PATH, stripe_body(&id));
        let response = send(router.clone(), request).await;
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("7")),
            "attempt {attempt}"
        );
        let (rejection, doc) = assert_problem(
            "store down",
            response,
            RejectionKind::DedupeStoreUnavailable,
            "stripe",
            &[STRIPE_SECRET, "the test store is down"],
        )
        .await;
        assert_eq!(rejection.retry_after(), Some(secs(7)));
        assert_eq!(doc["retry_after"], json!(7));
    }
    assert_eq!(probe.calls(), 0, "the handler ran without a claim");
    assert_eq!(
        store.calls.load(Ordering::SeqCst),
        2,
        "one claim per request, nothing else"
    );
}

#[tokio::test]
async fn full_memory_store_answers_503_full() {
    let store = MemoryStore::builder()
        .max_entries(NonZeroUsize::new(1).unwrap())
        .build();
    let (router, probe) = app(&P::Stripe.verifier(store.clone(), "stripe"));
    let (a, b) = (unique("evt"), unique("evt"));
    let request = |id: &str| P::Stripe.signer().timestamp(now()).request(PATH, stripe_body(id));
    processed("first", &deliver(&router, request(&a)).await, Some(&a));
    let response = send(router.clone(), request(&b)).await;
    // Stripe signs a timestamp: the first key must be kept only until the
    // timestamp check alone would refuse its replay, its signed time plus
    // the default tolerance of 300 s plus a second.
    let retry_after: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((300..=301).contains(&retry_after), "Retry-After {retry_after}");
    assert_problem(
        "full store",
        response,
        RejectionKind::DedupeStoreFull,
        "stripe",
        &[STRIPE_SECRET],
    )
    .await;
    assert_eq!(probe.calls(), 1, "the refused delivery did not run");
    // The remembered key is still a duplicate.
    duplicate(
        "first again",
        &deliver(&router, request(&a)).await,
        Some(&a),
        Some("invoice.paid"),
    );
    assert_eq!(store.len(), 1);
}

#[test]
fn dedupe_configuration_errors() {
    use webhook_guard::dedupe::DedupeBuilder;

    /// A Stripe verifier with `tolerance` seconds and a dedupe configured
    /// by `configure`; errors from either builder.
    fn build(
        tolerance: u64,
        namespace: &str,
        configure: impl FnOnce(DedupeBuilder) -> DedupeBuilder,
    ) -> Result<Verifier, ConfigError> {
        let dedupe = configure(Dedupe::builder(MemoryStore::new(), namespace)).build()?;
        Verifier::builder(Scheme::stripe())
            .secret(STRIPE_SECRET)
            .tolerance(secs(tolerance))
            .dedupe(dedupe)
            .build()
    }
    fn invalid(what: &str, r: Result<Verifier, ConfigError>) {
        match r {
            Err(ConfigError::InvalidDedupe { reason }) => assert!(!reason.is_empty(), "{what}"),
            other => panic!("{what}: expected InvalidDedupe, got {other:?}"),
        }
    }
    fn valid(what: &str, r: Result<Verifier, ConfigError>) {
        if let Err(e) = r {
            panic!("{what}: {e:?}");
        }
    }

    // A replay window shorter than the tolerance (checked by the Verifier).
    invalid(
        "window 299 s < tolerance 300 s",
        build(300, "ns", |b| b.replay_window(secs(299))),
    );
    valid(
        "window == tolerance",
        build(300, "ns", |b| b.replay_window(secs(300))),
    );
    // A retention shorter than the replay window, explicit or the default
    // (twice the tolerance).
    invalid(
        "retention < explicit window",
        build(300, "ns", |b| b.replay_window(secs(600)).retention(secs(599))),
    );
    invalid(
        "retention < default window (2 x tolerance)",
        build(300, "ns", |b| b.retention(secs(599))),
    );
    valid(
        "retention == default window",
        build(300, "ns", |b| b.retention(secs(600))),
    );
    // An empty namespace.
    invalid("empty namespace", build(300, "", |b| b));
    invalid("blank namespace", build(300, " \t", |b| b));
    // A lease under a second.
    invalid(
        "lease 999 ms",
        build(300, "ns", |b| b.lease(Duration::from_millis(999))),
    );
    invalid("lease 0", build(300, "ns", |b| b.lease(Duration::ZERO)));
    valid("lease 1 s", build(300, "ns", |b| b.lease(secs(1))));
    valid("defaults", build(300, "ns", |b| b));
}

// ---------------------------------------------------------------------------
// D. Redis: several receivers, outages
// ---------------------------------------------------------------------------

#[cfg(feature = "redis")]
mod redis_only {
    use super::*;
    use redis_support::RedisServer;
    use webhook_guard::dedupe::RedisStore;

    /// Asserts a 503 with `reason` and a `Retry-After`; returns it.
    #[track_caller]
    fn unavailable(what: &str, o: &Outcome, expected: &str) -> u64 {
        match o {
            Outcome::Rejected {
                status: StatusCode::SERVICE_UNAVAILABLE,
                reason,
                retry_after: Some(after),
            } if reason == expected => {
                assert!(*after >= 1, "{what}");
                *after
            }
            other => panic!("{what}: expected 503 {expected} with Retry-After, got {other:?}"),
        }
    }

    fn store(url: &str, prefix: &str) -> RedisStore {
        RedisStore::builder(url)
            .key_prefix(prefix.to_owned())
            .build()
            .expect("RedisStore::build")
    }

    /// Delivers until the handler runs; only 503 `dedupe_store_unavailable`
    /// is allowed meanwhile. Panics after `limit`.
    async fn recovers_within(router: &Router, request: impl Fn() -> Request<Body>, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            match deliver(router, request()).await {
                Outcome::Handled(StatusCode::OK, body) => return body,
                o @ Outcome::Rejected { .. } => {
                    unavailable("while Redis comes back", &o, "dedupe_store_unavailable");
                }
                other => panic!("expected 503 or the handler's 200, got {other:?}"),
            }
            assert!(
                started.elapsed() < limit,
                "the router did not recover within {limit:?} of Redis coming back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_receivers_share_one_redis() {
        let server = RedisServer::start();
        let prefix = redis_support::unique_prefix("two_receivers");
        // Two receivers: separate stores (separate connections), one Redis.
        let (one, probe_one) = app(&P::Stripe.verifier(store(&server.url(), &prefix), "stripe"));
        let (two, probe_two) = app(&P::Stripe.verifier(store(&server.url(), &prefix), "stripe"));
        let id = unique("evt");
        let request = || {
            P::Stripe
                .signer()
                .timestamp(now())
                .request(PATH, stripe_body(&id))
        };
        processed("at receiver one", &deliver(&one, request()).await, Some(&id));
        duplicate(
            "at receiver two",
            &deliver(&two, request()).await,
            Some(&id),
            Some("invoice.paid"),
        );
        assert_eq!((probe_one.calls(), probe_two.calls()), (1, 0));

        // And the other way round.
        let id2 = unique("evt");
        let request2 = || {
            P::Stripe
                .signer()
                .timestamp(now())
                .request(PATH, stripe_body(&id2))
        };
        processed("at receiver two", &deliver(&two, request2()).await, Some(&id2));
        duplicate(
            "at receiver one",
            &deliver(&one, request2()).await,
            Some(&id2),
            Some("invoice.paid"),
        );
        assert_eq!((probe_one.calls(), probe_two.calls()), (1, 1));

        // Concurrent copies spread over both: processed once in all.
        probe_one.delay_ms.store(50, Ordering::SeqCst);
        probe_two.delay_ms.store(50, Ordering::SeqCst);
        let id3 = unique("evt");
        let barrier = Arc::new(Barrier::new(20));
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let router = if i % 2 == 0 { one.clone() } else { two.clone() };
                let request = P::Stripe
                    .signer()
                    .timestamp(now())
                    .request(PATH, stripe_body(&id3));
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    deliver(&router, request).await
                })
            })
            .collect();
        let mut handled = 0;
        for task in tasks {
            match task.await.expect("task") {
                Outcome::Handled(StatusCode::OK, _) => handled += 1,
                Outcome::Duplicate(_) => {}
                o @ Outcome::Rejected { .. } => in_progress("a concurrent copy", &o, secs(60)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(handled, 1);
        assert_eq!(probe_one.calls() + probe_two.calls(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_killed_then_restarted_under_a_running_router() {
        let mut server = RedisServer::start();
        let prefix = redis_support::unique_prefix("killed");
        let (router, probe) = app(&P::Stripe.verifier(store(&server.url(), &prefix), "stripe"));
        let before = unique("evt");
        let request = |id: &str| P::Stripe.signer().timestamp(now()).request(PATH, stripe_body(id));
        processed(
            "while Redis is up",
            &deliver(&router, request(&before)).await,
            Some(&before),
        );

        tokio::task::block_in_place(|| server.kill());
        let id = unique("evt");
        let started = Instant::now();
        let o = deliver(&router, request(&id)).await;
        let elapsed = started.elapsed();
        unavailable("Redis killed", &o, "dedupe_store_unavailable");
        assert!(elapsed < secs(3), "a dead Redis took {elapsed:?} to be reported");
        // Still down: a known delivery is neither a duplicate nor processed.
        let response = send(router.clone(), request(&before)).await;
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        assert_problem(
            "Redis still down",
            response,
            RejectionKind::DedupeStoreUnavailable,
            "stripe",
            &[STRIPE_SECRET],
        )
        .await;
        assert_eq!(probe.calls(), 1, "the handler ran while Redis was down");

        // Back on the same port (empty): the same router recovers by itself.
        tokio::task::block_in_place(|| server.restart());
        recovers_within(&router, || request(&id), secs(10)).await;
        duplicate(
            "after recovery",
            &deliver(&router, request(&id)).await,
            Some(&id),
            Some("invoice.paid"),
        );
        assert_eq!(probe.calls(), 2, "the delivery was processed exactly once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn store_built_while_redis_is_down() {
        let mut server = RedisServer::start();
        tokio::task::block_in_place(|| server.kill());
        let prefix = redis_support::unique_prefix("down_at_start");
        let store = store(&server.url(), &prefix);
        let err = store.ping().await.expect_err("PING with Redis down");
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);
        let (router, probe) = app(&P::Stripe.verifier(store.clone(), "stripe"));
        let id = unique("evt");
        let request = || {
            P::Stripe
                .signer()
                .timestamp(now())
                .request(PATH, stripe_body(&id))
        };
        unavailable(
            "Redis down from the start",
            &deliver(&router, request()).await,
            "dedupe_store_unavailable",
        );
        assert_eq!(probe.calls(), 0);

        tokio::task::block_in_place(|| server.restart());
        recovers_within(&router, request, secs(10)).await;
        duplicate(
            "after Redis came up",
            &deliver(&router, request()).await,
            Some(&id),
            Some("invoice.paid"),
        );
        assert_eq!(probe.calls(), 1);
        store.ping().await.expect("PING once Redis is up");
    }
}
