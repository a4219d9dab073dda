//! The request quota: a keyed GCRA (generic cell rate algorithm) whose
//! charges can be refunded.
//!
//! A client's whole state is one number, its TAT (theoretical arrival
//! time): nanoseconds since the limiter's origin at which its quota is
//! full again. A request at `now` is allowed iff
//! `max(TAT, now) + interval - now <= burst * interval`, and then moves the
//! TAT there; a refused request changes nothing. A refund moves the TAT
//! back by one interval, never below `now` (a TAT at or before `now` is an
//! idle client, whose quota is full).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::client_ip::IpKey;

/// Nanoseconds in a second.
const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// The latest `now` the limiter uses (about 146 years after its origin):
/// `MAX_NOW` plus the largest tolerance (`u32::MAX` seconds) plus an
/// interval still fits in a `u64`, so the arithmetic below never saturates
/// in practice (it saturates rather than overflows regardless).
pub(super) const MAX_NOW: u64 = u64::MAX / 4;

/// At most this many shards per map.
const SHARDS: usize = 16;

/// Least time between two sweeps of one shard's idle clients, in nanos.
const SWEEP_EVERY: u64 = NANOS_PER_SECOND;

/// A monotonic clock in nanoseconds since the limiter was built.
#[derive(Clone, Copy, Debug)]
pub(super) struct Origin(Instant);

impl Origin {
    pub(super) fn new() -> Self {
        Self(Instant::now())
    }

    /// Nanoseconds since the origin, at most [`MAX_NOW`].
    pub(super) fn now(self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .min(MAX_NOW)
    }
}

/// One quota: the emission interval and the burst tolerance, in nanos.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Gcra {
    interval: u64,
    tolerance: u64,
}

impl Gcra {
    /// `per_second` requests a second, `burst` at once. A rate above a
    /// billion a second is a billion a second.
    pub(super) fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        let interval = (NANOS_PER_SECOND / u64::from(per_second.get())).max(1);
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.get())),
        }
    }

    /// Charges one request at `now` to a client whose TAT is `tat`: the new
    /// TAT, or how long until the request would be allowed.
    pub(super) fn charge(self, tat: u64, now: u64) -> Result<u64, Duration> {
        let next = tat.max(now).saturating_add(self.interval);
        let ahead = next.saturating_sub(now);
        if ahead <= self.tolerance {
            Ok(next)
        } else {
            Err(Duration::from_nanos(ahead - self.tolerance))
        }
    }

    /// Gives one charge back: the TAT one interval earlier, never earlier
    /// than `now` (an idle client cannot bank refunds).
    pub(super) fn refund(self, tat: u64, now: u64) -> u64 {
        if tat <= now {
            tat
        } else {
            tat.saturating_sub(self.interval).max(now)
        }
    }
}

/// Where a request's charge went, so that it can be refunded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    /// The client's own entry.
    Keyed(IpKey),
    /// The shared overflow cell (the map was full of active clients).
    Overflow,
}

/// One shard of a [`Keyed`] map.
#[derive(Debug)]
struct Shard {
    tats: HashMap<IpKey, u64, RandomState>,
    cap: usize,
    next_sweep: u64,
}

impl Shard {
    /// Drops idle clients; gives memory back after a flood.
    fn sweep(&mut self, now: u64) {
        self.tats.retain(|_, tat| *tat > now);
        if self.tats.capacity() > 64 && self.tats.capacity() / 4 > self.tats.len() {
            self.tats.shrink_to_fit();
        }
        self.next_sweep = now.saturating_add(SWEEP_EVERY);
    }
}

/// A keyed GCRA with at most `max` clients, sharded, and one overflow cell
/// that clients share while their shard is full of active clients.
///
/// Addresses are chosen by clients (any host in an IPv6 /48 can pick among
/// 65 536 /64 buckets), so the maps hash with a per-process random key.
#[derive(Debug)]
pub(super) struct Keyed {
    gcra: Gcra,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    overflow: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Keyed {
    /// At most `max` clients (at least one shard each), `gcra` each.
    pub(super) fn new(gcra: Gcra, max: usize) -> Self {
        let count = max.clamp(1, SHARDS);
        let (base, extra) = (max / count, max % count);
        let shards = (0..count)
            .map(|i| {
                Mutex::new(Shard {
                    tats: HashMap::default(),
                    cap: base + usize::from(i < extra),
                    next_sweep: 0,
                })
            })
            .collect();
        Self {
            gcra,
            hasher: RandomState::new(),
            shards,
            overflow: Mutex::new(0),
        }
    }

    fn shard(&self, key: &IpKey) -> &Mutex<Shard> {
        let hash = self.hasher.hash_one(key);
        // The top bits: the map itself uses the low ones.
        let index = usize::try_from(hash >> 32).unwrap_or(0) % self.shards.len();
        &self.shards[index]
    }

    /// Charges one request from `key` at `now`: where the charge went, or
    /// how long to wait.
    pub(super) fn charge(&self, key: IpKey, now: u64) -> Result<Slot, Duration> {
        {
            let mut shard = lock(self.shard(&key));
            if let Some(tat) = shard.tats.get_mut(&key) {
                *tat = self.gcra.charge(*tat, now)?;
                return Ok(Slot::Keyed(key));
            }
            if shard.tats.len() >= shard.cap / 2 && now >= shard.next_sweep {
                shard.sweep(now);
            }
            if shard.tats.len() < shard.cap {
                let tat = self.gcra.charge(0, now)?;
                shard.tats.insert(key, tat);
                return Ok(Slot::Keyed(key));
            }
        }
        let mut cell = lock(&self.overflow);
        *cell = self.gcra.charge(*cell, now)?;
        Ok(Slot::Overflow)
    }

    /// Gives back a charge made to `slot`.
    pub(super) fn refund(&self, slot: Slot, now: u64) {
        match slot {
            Slot::Keyed(key) => {
                let mut shard = lock(self.shard(&key));
                if let Some(tat) = shard.tats.get_mut(&key) {
                    *tat = self.gcra.refund(*tat, now);
                }
            }
            Slot::Overflow => {
                let mut cell = lock(&self.overflow);
                *cell = self.gcra.refund(*cell, now);
            }
        }
    }

    /// Clients tracked right now.
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).tats.len()).sum()
    }

    /// Forgets every idle client now.
    pub(super) fn forget_idle(&self, now: u64) {
        for shard in &*self.shards {
            lock(shard).sweep(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn key(ip: IpAddr) -> IpKey {
        IpKey::of(ip)
    }

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    /// Charges `n` requests at `now`, threading the TAT; how many passed.
    fn burst(g: Gcra, tat: &mut u64, now: u64, n: u32) -> u32 {
        let mut passed = 0;
        for _ in 0..n {
            if let Ok(next) = g.charge(*tat, now) {
                *tat = next;
                passed += 1;
            }
        }
        passed
    }

    #[test]
    fn exact_burst_then_a_wait_of_one_interval() {
        for (rate, size) in [(1, 1), (5, 10), (50, 100), (1000, 2000)] {
            let g = Gcra::new(nz(rate), nz(size));
            let mut tat = 0;
            let now = 7 * NANOS_PER_SECOND;
            assert_eq!(
                burst(g, &mut tat, now, size + 5),
                size,
                "rate {rate} burst {size}"
            );
            let interval = NANOS_PER_SECOND / u64::from(rate);
            assert_eq!(g.charge(tat, now), Err(Duration::from_nanos(interval)));
            // One interval later, exactly one more.
            assert_eq!(burst(g, &mut tat, now + interval, 3), 1);
            // A refused request changed nothing.
            assert_eq!(tat, now + interval + u64::from(size) * interval);
        }
    }

    #[test]
    fn refunds_give_back_one_interval_and_never_go_below_idle() {
        let g = Gcra::new(nz(10), nz(3));
        let interval = NANOS_PER_SECOND / 10;
        let now = 1_000 * NANOS_PER_SECOND;
        let mut tat = 0;
        assert_eq!(burst(g, &mut tat, now, 3), 3);
        assert!(g.charge(tat, now).is_err());
        tat = g.refund(tat, now);
        assert_eq!(tat, now + 2 * interval);
        assert_eq!(burst(g, &mut tat, now, 3), 1, "one refund, one more request");
        // Refunding more than was charged only makes the client idle:
        // the burst afterwards is the burst, not more.
        for _ in 0..10 {
            tat = g.refund(tat, now);
        }
        assert_eq!(tat, now);
        assert_eq!(burst(g, &mut tat, now, 10), 3);
        // A refund on an idle client (its TAT in the past) leaves it be.
        assert_eq!(g.refund(5, now), 5);
        assert_eq!(g.refund(0, 0), 0);
        // A refund in the middle of an interval stops at `now`.
        assert_eq!(g.refund(now + interval / 2, now), now);
    }

    #[test]
    fn a_sender_that_is_always_refunded_is_limited_by_concurrency_only() {
        let g = Gcra::new(nz(5), nz(10));
        let mut tat = 0;
        let mut now = NANOS_PER_SECOND;
        // 10 000 sequential requests a millisecond apart (1 000/s, 200
        // times the rate), each refunded when answered.
        for i in 0..10_000 {
            tat = g
                .charge(tat, now)
                .unwrap_or_else(|w| panic!("request {i} refused, wait {w:?}"));
            tat = g.refund(tat, now);
            now += 1_000_000;
        }
        // Ten in flight at once pass, the eleventh does not.
        assert_eq!(burst(g, &mut tat, now, 11), 10);
    }

    #[test]
    fn extremes_neither_overflow_nor_panic() {
        let widest = Gcra::new(NonZeroU32::MIN, NonZeroU32::MAX);
        let fastest = Gcra::new(NonZeroU32::MAX, NonZeroU32::MAX);
        assert_eq!(fastest.interval, 1);
        for g in [widest, fastest, Gcra::new(NonZeroU32::MIN, NonZeroU32::MIN)] {
            for now in [0, 1, MAX_NOW - 1, MAX_NOW] {
                for tat in [0, now, MAX_NOW, u64::MAX - 1, u64::MAX] {
                    let charged = g.charge(tat, now);
                    if let Ok(next) = charged {
                        assert!(next > tat.max(now) || next == u64::MAX);
                    }
                    let refunded = g.refund(tat, now);
                    assert!(refunded <= tat.max(now) && (refunded >= now || refunded == tat));
                }
            }
        }
        // At the latest `now`, the burst is still exact.
        let g = Gcra::new(nz(1), nz(3));
        let mut tat = 0;
        assert_eq!(burst(g, &mut tat, MAX_NOW, 10), 3);
        // The widest tolerance at the latest `now` does not saturate.
        let mut tat = 0;
        assert_eq!(burst(widest, &mut tat, MAX_NOW, 1_000), 1_000);
        assert_eq!(tat, MAX_NOW + 1_000 * NANOS_PER_SECOND);
    }

    #[test]
    fn keyed_map_is_bounded_refunds_its_slots_and_forgets_idle_clients() {
        let g = Gcra::new(nz(1), nz(2));
        let map = Keyed::new(g, 40);
        let now = NANOS_PER_SECOND;
        let mut overflowed = 0;
        for i in 0..1_000u32 {
            match map.charge(key(IpAddr::from(i.to_be_bytes())), now) {
                Ok(Slot::Keyed(_)) => {}
                Ok(Slot::Overflow) | Err(_) => overflowed += 1,
            }
        }
        assert_eq!(map.len(), 40, "exactly the bound");
        assert_eq!(overflowed, 960);
        // The overflow cell is a quota like any other, and refundable.
        let stranger = key(IpAddr::from([203, 0, 113, 9]));
        assert!(map.charge(stranger, now).is_err());
        map.refund(Slot::Overflow, now);
        assert_eq!(map.charge(stranger, now), Ok(Slot::Overflow));
        // A tracked client keeps its own entry while the map is full.
        let tracked = (0..1_000u32)
            .map(|i| key(IpAddr::from(i.to_be_bytes())))
            .filter(|k| map.charge(*k, now) == Ok(Slot::Keyed(*k)))
            .count();
        assert_eq!(tracked, 40);
        // Idle clients are forgotten; room again.
        let later = now + 10 * NANOS_PER_SECOND;
        map.forget_idle(later);
        assert_eq!(map.len(), 0);
        assert!(matches!(map.charge(stranger, later), Ok(Slot::Keyed(_))));
        // Even a bound of one works.
        let one = Keyed::new(g, 1);
        assert!(matches!(one.charge(stranger, now), Ok(Slot::Keyed(_))));
        assert_eq!(
            one.charge(key(IpAddr::from([1, 1, 1, 1])), now),
            Ok(Slot::Overflow)
        );
        assert_eq!(one.len(), 1);
    }
}
