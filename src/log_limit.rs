//! Rejection logs an attacker cannot flood.
//!
//! Every rejection is logged as one `tracing` event on target
//! `webhook_guard` (`"webhook rejected"` at `WARN` from the
//! [`Verifier`](crate::Verifier), `"request refused by the rate limiter"`
//! at `DEBUG` from the [`RateLimiter`](crate::RateLimiter)). Anyone can
//! send unsigned requests, so the events of requests that were not
//! authenticated are rate-limited per reason: at most
//! [`DEFAULT_REJECTION_LOGS_PER_SECOND`] (10) events a second for each
//! reason, with a burst of as many, per verifier and per rate limiter.
//! Change it with
//! [`VerifierBuilder::rejection_logs_per_second`](crate::VerifierBuilder::rejection_logs_per_second)
//! and
//! [`RateLimiterBuilder::rejection_logs_per_second`](crate::rate_limit::RateLimiterBuilder::rejection_logs_per_second).
//!
//! The reasons limited are every one that can happen before or at the
//! signature check: `missing_signature`, `malformed_signature`,
//! `signature_mismatch`, `missing_timestamp`, `malformed_timestamp`,
//! `timestamp_out_of_tolerance`, `missing_header`, `malformed_header`,
//! `body_too_large`, `unsupported_content_encoding`, `method_not_allowed`,
//! `body_read_failed`, `body_read_timeout`, `server_busy`,
//! `client_not_allowed`, `handshake_rejected`, `missing_challenge`,
//! `rate_limited` and `too_many_failed_authentications`. Each has its own
//! allowance, so a flood of one reason never hides another: a rotated
//! secret's `signature_mismatch` still shows while `missing_signature`
//! floods. Rejections of authenticated deliveries (`invalid_json`,
//! `duplicate_keys`, `schema_violation`, `invalid_payload`, `in_progress`,
//! the dedupe store's and the queue's 503s, `handler_error`) come from the
//! real sender and are always logged.
//!
//! When events were dropped, the next event logged for that reason
//! carries a `suppressed` field: how many events of that reason were
//! dropped since the previous one was logged. An event without the field
//! follows none dropped. There is no timer and no summary line: after a
//! flood stops, its last count is reported with the next rejection of
//! that reason, whenever it comes. Counts of responses by reason belong
//! in metrics, which count every request; these events are samples.
//!
//! The allowance is a token bucket per reason, refilled from the
//! verifier's [`Clock`](crate::Clock) in milliseconds (the rate limiter
//! uses the system clock), behind one small mutex per reason: a fixed
//! amount of memory, whatever the traffic. The response is never
//! affected, only the log.

use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};

use crate::RejectionKind;

/// Default for how many rejection events of one reason are logged per
/// second (and at once) for requests that were not authenticated: 10.
/// The rest are counted and the count is logged with the next event of
/// that reason, in its `suppressed` field.
pub const DEFAULT_REJECTION_LOGS_PER_SECOND: u32 = 10;

/// How many reasons are limited; the length of [`LogLimiter`]'s table.
const LIMITED: usize = 21;

/// The table slot of `kind`, or `None` for a reason that only an
/// authenticated request can get (always logged).
fn slot(kind: RejectionKind) -> Option<usize> {
    use RejectionKind::*;
    // Exhaustive on purpose: a new kind must be classified here.
    Some(match kind {
        MissingSignature => 0,
        MalformedSignature => 1,
        SignatureMismatch => 2,
        MissingTimestamp => 3,
        MalformedTimestamp => 4,
        TimestampOutOfTolerance => 5,
        MissingHeader => 6,
        MalformedHeader => 7,
        BodyTooLarge => 8,
        UnsupportedContentEncoding => 9,
        MethodNotAllowed => 10,
        BodyReadFailed => 11,
        BodyReadTimeout => 12,
        ServerBusy => 13,
        ClientNotAllowed => 14,
        HandshakeRejected => 15,
        MissingChallenge => 16,
        RateLimited => 17,
        TooManyFailedAuthentications => 18,
        UntrustedCertificate => 19,
        CertificateUnavailable => 20,
        InvalidJson
        | DuplicateKeys
        | SchemaViolation
        | InvalidPayload
        | InProgress
        | DedupeStoreUnavailable
        | DedupeStoreFull
        | HandlerError
        | QueueFull
        | QueueUnavailable
        | ShuttingDown => return None,
    })
}

/// One token bucket per limited reason.
pub(crate) struct LogLimiter {
    /// Tokens per second; also the bucket's size.
    per_second: u64,
    buckets: [Mutex<Bucket>; LIMITED],
}

struct Bucket {
    tokens: TokenBucket,
    /// Events dropped since the last one logged.
    suppressed: u64,
}

/// A token bucket refilled from a clock in milliseconds, holding at most
/// one second's worth of tokens (the log limiter's and the diagnostic
/// hints' cap).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    /// Thousandths of a token: refilled by `per_second` per millisecond.
    milli_tokens: u64,
    /// When it was last refilled, in Unix milliseconds.
    last_ms: Option<i64>,
}

impl TokenBucket {
    /// A full bucket of `per_second` tokens.
    pub(crate) fn full(per_second: u64) -> Self {
        Self {
            milli_tokens: per_second.saturating_mul(1000),
            last_ms: None,
        }
    }

    /// Refills for the time since the last call, then takes a token if
    /// there is one. A clock that went back refills nothing, and refills
    /// from its new time on.
    pub(crate) fn take(&mut self, per_second: u64, now_ms: i64) -> bool {
        let elapsed = self
            .last_ms
            .map_or(0, |last| u64::try_from(now_ms.saturating_sub(last)).unwrap_or(0));
        self.last_ms = Some(now_ms);
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(per_second))
            .min(per_second.saturating_mul(1000));
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

impl LogLimiter {
    /// A full bucket of `per_second` for every limited reason.
    pub(crate) fn new(per_second: NonZeroU32) -> Self {
        let per_second = u64::from(per_second.get());
        Self {
            per_second,
            buckets: std::array::from_fn(|_| {
                Mutex::new(Bucket {
                    tokens: TokenBucket::full(per_second),
                    suppressed: 0,
                })
            }),
        }
    }

    /// Whether to log a rejection of `kind` now: `Some(suppressed)` to log
    /// it, with the number of events of that reason dropped since the last
    /// one logged; `None` to drop it (it is counted). `now_ms` is read only
    /// for a limited reason.
    pub(crate) fn admit(&self, kind: RejectionKind, now_ms: impl FnOnce() -> i64) -> Option<u64> {
        let Some(bucket) = slot(kind).and_then(|i| self.buckets.get(i)) else {
            return Some(0);
        };
        let now = now_ms();
        let mut b = bucket.lock().unwrap_or_else(PoisonError::into_inner);
        if b.tokens.take(self.per_second, now) {
            Some(std::mem::take(&mut b.suppressed))
        } else {
            b.suppressed = b.suppressed.saturating_add(1);
            None
        }
    }
}

/// The `suppressed` field of an event: absent when nothing was dropped.
pub(crate) fn suppressed_field(suppressed: u64) -> Option<u64> {
    (suppressed > 0).then_some(suppressed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32) -> LogLimiter {
        LogLimiter::new(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
    }

    /// How many of `n` events at `now` are logged, and the suppressed
    /// counts they carry.
    fn run(l: &LogLimiter, kind: RejectionKind, n: usize, now: i64) -> Vec<u64> {
        (0..n).filter_map(|_| l.admit(kind, || now)).collect()
    }

    #[test]
    fn a_burst_then_nothing_until_the_clock_moves() {
        let l = limiter(10);
        let logged = run(&l, RejectionKind::MissingSignature, 1000, 5_000);
        assert_eq!(logged, vec![0; 10]);
        // 99 ms later: still less than one token.
        assert_eq!(
            run(&l, RejectionKind::MissingSignature, 5, 5_099),
            Vec::<u64>::new()
        );
        // 100 ms: one token, carrying everything dropped so far.
        assert_eq!(run(&l, RejectionKind::MissingSignature, 2, 5_100), vec![995]);
        // A second later: a full bucket again, the one dropped first.
        assert_eq!(run(&l, RejectionKind::MissingSignature, 12, 6_100), {
            let mut v = vec![0; 10];
            v[0] = 1;
            v
        });
        // Idle for an hour: still only a bucket's worth.
        let logged = run(&l, RejectionKind::MissingSignature, 100, 3_606_100);
        assert_eq!(logged.len(), 10);
        assert_eq!(logged.first(), Some(&2));
    }

    #[test]
    fn each_reason_has_its_own_bucket() {
        let l = limiter(3);
        assert_eq!(run(&l, RejectionKind::SignatureMismatch, 100, 0).len(), 3);
        assert_eq!(run(&l, RejectionKind::TimestampOutOfTolerance, 100, 0).len(), 3);
        assert_eq!(run(&l, RejectionKind::RateLimited, 100, 0).len(), 3);
    }

    #[test]
    fn authenticated_reasons_are_never_limited_and_never_read_the_clock() {
        let l = limiter(1);
        for kind in [
            RejectionKind::SchemaViolation,
            RejectionKind::InvalidJson,
            RejectionKind::HandlerError,
            RejectionKind::DedupeStoreUnavailable,
        ] {
            for _ in 0..100 {
                assert_eq!(l.admit(kind, || panic!("clock read for {kind:?}")), Some(0));
            }
        }
    }

    #[test]
    fn a_clock_going_back_refills_nothing_and_then_resumes() {
        let l = limiter(1);
        assert_eq!(run(&l, RejectionKind::MissingHeader, 3, 10_000).len(), 1);
        assert!(run(&l, RejectionKind::MissingHeader, 3, 0).is_empty());
        // One second after the new time: one token.
        assert_eq!(run(&l, RejectionKind::MissingHeader, 3, 1_000), vec![5]);
        // Extreme times saturate instead of overflowing.
        assert_eq!(run(&l, RejectionKind::MissingHeader, 1, i64::MAX), vec![2]);
        assert_eq!(
            run(&l, RejectionKind::MissingHeader, 1, i64::MIN),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn every_limited_reason_has_a_slot_of_its_own() {
        use RejectionKind::*;
        let limited = [
            MissingSignature,
            MalformedSignature,
            SignatureMismatch,
            MissingTimestamp,
            MalformedTimestamp,
            TimestampOutOfTolerance,
            MissingHeader,
            MalformedHeader,
            BodyTooLarge,
            UnsupportedContentEncoding,
            MethodNotAllowed,
            BodyReadFailed,
            BodyReadTimeout,
            ServerBusy,
            ClientNotAllowed,
            HandshakeRejected,
            MissingChallenge,
            RateLimited,
            TooManyFailedAuthentications,
            UntrustedCertificate,
            CertificateUnavailable,
        ];
        let mut slots: Vec<usize> = limited.iter().filter_map(|k| slot(*k)).collect();
        slots.sort_unstable();
        assert_eq!(slots, (0..LIMITED).collect::<Vec<_>>());
        // Every authentication failure is limited.
        for kind in limited {
            assert!(slot(kind).is_some(), "{kind:?}");
        }
    }
}
