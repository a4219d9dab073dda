//! Time, injected: verification code never reads the system clock directly.
//!
//! The [`Verifier`](crate::Verifier) asks its [`Clock`] for the current Unix
//! time when it checks a signed timestamp. Production uses [`SystemClock`];
//! tests use [`FixedClock`] to replay a provider's published vector at the
//! moment it was signed.
//!
//! ```
//! use webhook_guard::{Clock, FixedClock};
//!
//! let clock = FixedClock::new(1_531_420_618);
//! assert_eq!(clock.now_unix(), 1_531_420_618);
//! clock.advance(301);
//! assert_eq!(clock.now_unix(), 1_531_420_919);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time, in whole seconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current time, in seconds since 1970-01-01T00:00:00Z.
    fn now_unix(&self) -> i64;

    /// The current time in milliseconds since the epoch, for the dedupe
    /// store's leases. Defaults to [`now_unix`](Self::now_unix) × 1000.
    fn now_unix_millis(&self) -> i64 {
        self.now_unix().saturating_mul(1000)
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        // `SystemTime` directly: `OffsetDateTime::now_utc` also works out
        // the calendar date, which costs more than the clock read itself.
        since_epoch(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    fn now_unix_millis(&self) -> i64 {
        since_epoch(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// The system time as a signed count of `unit` since the Unix epoch
/// (negative for a clock set before 1970).
fn since_epoch(unit: impl Fn(std::time::Duration) -> i64) -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => unit(after),
        Err(before) => unit(before.duration()).saturating_neg(),
    }
}

/// A clock that stands still until told to move; for tests.
#[derive(Default)]
pub struct FixedClock {
    now: AtomicI64,
}

impl FixedClock {
    /// A clock showing `unix_seconds`.
    pub fn new(unix_seconds: i64) -> Self {
        Self {
            now: AtomicI64::new(unix_seconds),
        }
    }

    /// Sets the time.
    pub fn set(&self, unix_seconds: i64) {
        self.now.store(unix_seconds, Ordering::SeqCst);
    }

    /// Moves the time by `seconds` (negative moves it back), saturating.
    pub fn advance(&self, seconds: i64) {
        let _ = self.now.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
            Some(now.saturating_add(seconds))
        });
    }
}

impl Clock for FixedClock {
    fn now_unix(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for FixedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FixedClock").field(&self.now_unix()).finish()
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now_unix(&self) -> i64 {
        (**self).now_unix()
    }

    fn now_unix_millis(&self) -> i64 {
        (**self).now_unix_millis()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_agrees_with_the_calendar_clock() {
        let before = time::OffsetDateTime::now_utc().unix_timestamp();
        let secs = SystemClock.now_unix();
        let millis = SystemClock.now_unix_millis();
        let after = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((before..=after).contains(&secs), "{before} <= {secs} <= {after}");
        assert!((before * 1000..=(after + 1) * 1000).contains(&millis));
        assert!(secs > 1_700_000_000, "a clock after 2023");
    }
}
