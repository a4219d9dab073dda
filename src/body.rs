//! Reading the body once, under a size limit, two timers and a shared
//! budget of buffered bytes.
//!
//! The layer's reader enforces, while the body streams in:
//!
//! - the route's body limit: 413 as soon as it is crossed, nothing past it
//!   is buffered;
//! - an idle timeout between two chunks and a total deadline for the whole
//!   body, which starts when the layer starts reading it: 408
//!   `body_read_timeout`, and the connection is closed. A client trickling
//!   one byte at a time never trips the idle timeout but trips the
//!   deadline;
//! - a process-wide [`BodyBudget`] of body bytes buffered at once across
//!   every in-flight request: 503 `server_busy` with `Retry-After: 1`, and
//!   the body is not buffered. When the request carries a `Content-Length`,
//!   that many bytes (at most the route's limit) are reserved before the
//!   first byte is read; otherwise bytes are reserved as they arrive.
//!
//! The timers use tokio's timer, created only once the body actually waits
//! for the network (a body that is already there costs no timer). Outside
//! a tokio runtime the body is read without them. Inside one, the runtime
//! needs its time driver (`#[tokio::main]`, `axum::serve` under it and
//! `Builder::enable_all` all have it).

use std::fmt;
use std::future::{poll_fn, Future as _};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body;
use tokio::time::{Instant, Sleep};

use crate::{Rejection, RejectionKind};

/// Default process-wide budget of body bytes buffered at once: 64 MiB.
pub const DEFAULT_INFLIGHT_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Bodies up to this size may use the whole [`BodyBudget`]; larger ones
/// only seven eighths of it.
pub(crate) const SMALL_BODY: usize = 64 * 1024;

/// The `Retry-After` of a `server_busy` rejection.
pub(crate) const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A budget of request-body bytes buffered at once, shared by every
/// verifier that uses it (and by every clone: cloning is an `Arc` clone).
///
/// Each request reserves its body's bytes before they are buffered: its
/// whole `Content-Length` (at most the route's body limit) when the header
/// is there, else each chunk as it arrives. The reservation is held until
/// the layer's response future finishes (the verified bytes are alive
/// while the handler runs) and is returned when that future completes or
/// is dropped, whatever the outcome. A request that would take the budget
/// past its size is answered 503 `server_busy` with `Retry-After: 1` and
/// its body is not buffered.
///
/// The last eighth of the budget is kept for ordinary bodies (64 KiB or
/// less): a request whose body is larger may fill only seven eighths of
/// it. A flood of stalled large bodies from many addresses (each holding
/// its reservation until the idle timeout drops it) then still leaves
/// room for the genuine sender's deliveries.
///
/// Every [`Verifier`](crate::Verifier) not given a budget through
/// [`VerifierBuilder::body_budget`](crate::VerifierBuilder::body_budget)
/// uses [`BodyBudget::global`].
///
/// ```
/// use webhook_guard::{BodyBudget, Scheme, Verifier};
///
/// // 16 MiB shared by two routes.
/// let budget = BodyBudget::new(16 * 1024 * 1024);
/// let github = Verifier::builder(Scheme::github())
///     .secret("It's a Secret to Everybody")
///     .body_budget(budget.clone())
///     .build()?;
/// let stripe = Verifier::builder(Scheme::stripe())
///     .secret("whsec_test_secret")
///     .body_budget(budget.clone())
///     .build()?;
/// assert_eq!(budget.in_use(), 0);
/// # Ok::<(), webhook_guard::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct BodyBudget {
    shared: Arc<Shared>,
}

struct Shared {
    limit: usize,
    used: AtomicUsize,
}

impl BodyBudget {
    /// A budget of `bytes` buffered body bytes at once. A budget of zero
    /// refuses every non-empty body.
    pub fn new(bytes: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                limit: bytes,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// The process's default budget, [`DEFAULT_INFLIGHT_BODY_BYTES`],
    /// shared by every verifier that is not given another one.
    pub fn global() -> Self {
        static GLOBAL: OnceLock<BodyBudget> = OnceLock::new();
        GLOBAL
            .get_or_init(|| Self::new(DEFAULT_INFLIGHT_BODY_BYTES))
            .clone()
    }

    /// The budget's size, in bytes.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// The bytes reserved right now by in-flight requests (for metrics and
    /// tests).
    pub fn in_use(&self) -> usize {
        self.shared.used.load(Ordering::Acquire)
    }

    /// Whether `self` and `other` share one counter.
    #[cfg(test)]
    fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Takes `n` bytes from the budget, or nothing if that would take it
    /// past its limit (or overflow).
    #[cfg(test)]
    fn try_reserve(&self, n: usize) -> bool {
        self.try_reserve_under(n, self.shared.limit)
    }

    /// The part of the budget a request of `total` bytes may fill: all of
    /// it for ordinary bodies (up to [`SMALL_BODY`]), all but an eighth
    /// for larger ones. A flood of large stalled bodies then leaves room
    /// for ordinary deliveries until the timers drop it.
    fn cap_for(&self, total: usize) -> usize {
        let limit = self.shared.limit;
        if total <= SMALL_BODY {
            limit
        } else {
            limit - limit / 8
        }
    }

    /// Takes `n` bytes unless the budget's use would pass `cap` (or
    /// overflow).
    fn try_reserve_under(&self, n: usize, cap: usize) -> bool {
        if n == 0 {
            return true;
        }
        let shared = &*self.shared;
        let mut used = shared.used.load(Ordering::Relaxed);
        loop {
            let next = match used.checked_add(n) {
                Some(next) if next <= cap => next,
                _ => return false,
            };
            match shared
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Gives back `n` bytes taken by [`try_reserve`](Self::try_reserve).
    /// Only [`Reservation`] calls it, with what it holds, so the counter
    /// never goes below zero.
    fn release(&self, n: usize) {
        if n != 0 {
            self.shared.used.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

impl Default for BodyBudget {
    /// [`BodyBudget::global`].
    fn default() -> Self {
        Self::global()
    }
}

impl fmt::Debug for BodyBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyBudget")
            .field("limit", &self.limit())
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// Bytes one request holds in a [`BodyBudget`]; given back on drop.
pub(crate) struct Reservation<'a> {
    budget: &'a BodyBudget,
    held: usize,
}

impl<'a> Reservation<'a> {
    /// Holds nothing yet.
    pub(crate) fn new(budget: &'a BodyBudget) -> Self {
        Self { budget, held: 0 }
    }

    /// The bytes held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Makes the reservation at least `total` bytes. On failure it keeps
    /// what it held.
    fn grow_to(&mut self, total: usize) -> bool {
        let Some(more) = total.checked_sub(self.held).filter(|m| *m > 0) else {
            return true;
        };
        if self.budget.try_reserve_under(more, self.budget.cap_for(total)) {
            self.held = total;
            true
        } else {
            false
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.release(self.held);
    }
}

/// The idle timeout between chunks and the deadline for the whole body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) idle: Duration,
    pub(crate) total: Duration,
}

/// Which timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Idle,
    Deadline,
}

/// The two timers of one read. One `Sleep` serves both: while the body
/// waits it is set to the nearer of "idle timeout after now" and the
/// deadline, and it is created only when the body first waits.
struct Timers {
    idle: Duration,
    total: Duration,
    /// `None` when the deadline is past what `Instant` can represent.
    deadline: Option<Instant>,
    /// Timers are not used (none configured, or no tokio runtime).
    off: bool,
    /// The sleep is set for the current wait.
    armed: bool,
    expiry: Expiry,
}

impl Timers {
    fn start(timeouts: Option<Timeouts>) -> Self {
        match timeouts {
            Some(t) => Self {
                idle: t.idle,
                total: t.total,
                deadline: Instant::now().checked_add(t.total),
                off: false,
                armed: false,
                expiry: Expiry::Idle,
            },
            None => Self {
                idle: Duration::ZERO,
                total: Duration::ZERO,
                deadline: None,
                off: true,
                armed: false,
                expiry: Expiry::Idle,
            },
        }
    }

    /// A chunk arrived: the next wait starts a new idle gap.
    fn chunk(&mut self) {
        self.armed = false;
    }

    /// The body is waiting: ready with the rejection once a timer fires.
    fn poll_expired(&mut self, mut sleep: Pin<&mut Option<Sleep>>, cx: &mut Context<'_>) -> Poll<Rejection> {
        if self.off {
            return Poll::Pending;
        }
        if !self.armed {
            if tokio::runtime::Handle::try_current().is_err() {
                // No runtime, so no timer: read as if none was configured.
                self.off = true;
                return Poll::Pending;
            }
            let idle_end = Instant::now().checked_add(self.idle);
            let (at, expiry) = match (idle_end, self.deadline) {
                (Some(idle), Some(deadline)) if idle < deadline => (idle, Expiry::Idle),
                (_, Some(deadline)) => (deadline, Expiry::Deadline),
                (Some(idle), None) => (idle, Expiry::Idle),
                (None, None) => {
                    self.off = true;
                    return Poll::Pending;
                }
            };
            match sleep.as_mut().as_pin_mut() {
                Some(s) => s.reset(at),
                None => sleep.set(Some(tokio::time::sleep_until(at))),
            }
            self.expiry = expiry;
            self.armed = true;
        }
        match sleep.as_pin_mut() {
            Some(s) => s.poll(cx).map(|()| self.rejection()),
            None => Poll::Pending,
        }
    }

    fn rejection(&self) -> Rejection {
        let detail = match self.expiry {
            Expiry::Idle => format!(
                "no body bytes arrived for {} ms, the idle timeout",
                self.idle.as_millis()
            ),
            Expiry::Deadline => format!(
                "the body did not arrive within the {} ms body deadline",
                self.total.as_millis()
            ),
        };
        Rejection::new(RejectionKind::BodyReadTimeout, detail)
    }
}

/// The 503 for a body that would cross the budget.
fn busy() -> Rejection {
    Rejection::new(
        RejectionKind::ServerBusy,
        "too many request bodies are being received at once; retry shortly",
    )
    .with_retry_after(BUSY_RETRY_AFTER)
}

/// Reads `body` to its end.
///
/// - 413 as soon as more than `limit` bytes have arrived (nothing past the
///   limit is buffered);
/// - 400 if the stream breaks;
/// - 408 if `timeouts` are given and a gap between chunks or the whole read
///   takes longer than they allow (the deadline counts from this call);
/// - 503 if `held` cannot grow to cover the bytes: the `Content-Length`
///   `hint` (capped at `limit`) is reserved before the first poll, further
///   bytes as they arrive. `held` keeps what it reserved, whatever the
///   outcome; the caller drops it when the bytes are no longer needed.
///
/// A body that arrives in one chunk is returned as is, without a copy.
pub(crate) async fn read<B>(
    body: B,
    limit: usize,
    hint: Option<u64>,
    timeouts: Option<Timeouts>,
    held: &mut Reservation<'_>,
) -> Result<Bytes, Rejection>
where
    B: Body<Data = Bytes>,
{
    let expected = hint.map_or(0, |h| usize::try_from(h).unwrap_or(usize::MAX).min(limit));
    if !held.grow_to(expected) {
        return Err(busy());
    }
    let mut timers = Timers::start(timeouts);
    let mut sleep = pin!(None::<Sleep>);
    let mut body = pin!(body);
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut len = 0usize;
    loop {
        let frame = poll_fn(|cx| match body.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(Ok(frame)),
            Poll::Pending => timers.poll_expired(sleep.as_mut(), cx).map(Err),
        })
        .await?;
        let Some(frame) = frame else { break };
        timers.chunk();
        let frame = frame.map_err(|_| {
            Rejection::new(
                RejectionKind::BodyReadFailed,
                "the request body could not be read to its end",
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry no body bytes
        };
        if data.is_empty() {
            continue;
        }
        len = match len.checked_add(data.len()) {
            Some(n) if n <= limit => n,
            _ => return Err(Rejection::too_large(limit)),
        };
        if !held.grow_to(len) {
            return Err(busy());
        }
        match (&mut first, &mut buf) {
            (None, None) => first = Some(data),
            (Some(_), None) => {
                // The declared length is already reserved in the budget, so
                // allocating it at once is covered, and saves the doubling
                // growth that would hold up to twice the body.
                let cap = expected.max(len);
                let mut b = BytesMut::with_capacity(cap);
                if let Some(f) = first.take() {
                    b.extend_from_slice(&f);
                }
                b.extend_from_slice(&data);
                buf = Some(b);
            }
            (_, Some(b)) => b.extend_from_slice(&data),
        }
    }
    Ok(match (first, buf) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::convert::Infallible;

    /// A body that yields the given chunks, then `endless` chunks of 1 KiB
    /// for ever, counting what it handed out.
    struct Chunks {
        parts: VecDeque<Bytes>,
        endless: bool,
        served: usize,
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            let next = match self.parts.pop_front() {
                Some(p) => Some(p),
                None if self.endless => Some(Bytes::from(vec![b'a'; 1024])),
                None => None,
            };
            if let Some(p) = &next {
                self.served += p.len();
            }
            Poll::Ready(next.map(|p| Ok(http_body::Frame::data(p))))
        }
    }

    fn chunks(parts: &[&'static [u8]], endless: bool) -> Chunks {
        Chunks {
            parts: parts.iter().map(|p| Bytes::from_static(p)).collect(),
            endless,
            served: 0,
        }
    }

    /// A body that yields `chunk` after every `pending` polls that return
    /// `Pending` (waking itself), `count` times, then ends.
    struct Slow {
        chunk: &'static [u8],
        count: usize,
        pending: usize,
        waited: usize,
    }

    impl Body for Slow {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            if self.count == 0 {
                return Poll::Ready(None);
            }
            if self.waited < self.pending {
                self.waited += 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.waited = 0;
            self.count -= 1;
            Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(self.chunk)))))
        }
    }

    /// A body that never yields anything.
    struct Stalled;

    impl Body for Stalled {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut f = pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    /// Reads with no timers and an unlimited budget.
    async fn plain<B: Body<Data = Bytes>>(
        body: B,
        limit: usize,
        hint: Option<u64>,
    ) -> Result<Bytes, Rejection> {
        let budget = BodyBudget::new(usize::MAX);
        let mut held = Reservation::new(&budget);
        read(body, limit, hint, None, &mut held).await
    }

    const SHORT: Timeouts = Timeouts {
        idle: Duration::from_millis(50),
        total: Duration::from_secs(30),
    };

    #[test]
    fn large_bodies_leave_the_last_eighth_to_small_ones() {
        let budget = BodyBudget::new(800 * 1024);
        let mut large = Vec::new();
        // 100 KiB bodies fill 700 KiB (7/8) and no more.
        for _ in 0..7 {
            let mut r = Reservation::new(&budget);
            assert!(r.grow_to(100 * 1024));
            large.push(r);
        }
        let mut r = Reservation::new(&budget);
        assert!(
            !r.grow_to(100 * 1024),
            "a large body may not take the last eighth"
        );
        // A small one still fits, up to the whole budget.
        let mut small = Reservation::new(&budget);
        assert!(small.grow_to(SMALL_BODY));
        // A chunked body that grows past SMALL_BODY is then held to 7/8.
        let mut growing = Reservation::new(&budget);
        assert!(growing.grow_to(1024));
        assert!(!growing.grow_to(SMALL_BODY + 1));
        assert_eq!(budget.in_use(), 700 * 1024 + SMALL_BODY + 1024);
    }

    #[test]
    fn joins_chunks() {
        let got = block_on(plain(chunks(&[b"ab", b"", b"cd"], false), 4, None));
        assert_eq!(got.ok().as_deref(), Some(&b"abcd"[..]));
    }

    #[test]
    fn single_chunk_is_not_copied() {
        let data = Bytes::from_static(b"hello");
        let body = http_body_util::Full::new(data.clone());
        let got = block_on(plain(body, 5, Some(5))).unwrap_or_default();
        assert_eq!(got.as_ptr(), data.as_ptr());
    }

    #[test]
    fn stops_as_soon_as_the_limit_is_crossed() {
        let mut body = chunks(&[], true);
        let got = block_on(plain(&mut body, 10 * 1024, None));
        assert_eq!(got.err().map(|r| r.kind()), Some(RejectionKind::BodyTooLarge));
        // Eleven 1 KiB chunks were pulled, not one more.
        assert_eq!(body.served, 11 * 1024);
    }

    #[test]
    fn exact_limit_passes() {
        let got = block_on(plain(chunks(&[b"abc", b"de"], false), 5, None));
        assert_eq!(got.ok().as_deref(), Some(&b"abcde"[..]));
        let got = block_on(plain(chunks(&[b"abc", b"def"], false), 5, None));
        assert!(got.is_err());
    }

    // -- the budget's arithmetic -------------------------------------------

    #[test]
    fn budget_exact_boundary() {
        let budget = BodyBudget::new(100);
        assert!(budget.try_reserve(60));
        assert!(budget.try_reserve(40), "reaching the limit exactly is allowed");
        assert_eq!(budget.in_use(), 100);
        assert!(!budget.try_reserve(1), "one byte past the limit is refused");
        assert_eq!(budget.in_use(), 100, "a refused reservation takes nothing");
        assert!(budget.try_reserve(0), "nothing always fits");
        budget.release(40);
        assert!(!budget.try_reserve(41));
        assert!(budget.try_reserve(40));
        budget.release(100);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn budget_never_overflows() {
        let budget = BodyBudget::new(usize::MAX);
        assert!(budget.try_reserve(usize::MAX - 1));
        assert!(!budget.try_reserve(2), "usize::MAX - 1 + 2 overflows: refused");
        assert!(budget.try_reserve(1));
        assert!(!budget.try_reserve(usize::MAX));
        assert_eq!(budget.in_use(), usize::MAX);
        budget.release(usize::MAX);
        assert_eq!(budget.in_use(), 0);
        assert!(!BodyBudget::new(10).try_reserve(usize::MAX));
    }

    #[test]
    fn zero_budget_refuses_every_byte() {
        let budget = BodyBudget::new(0);
        assert!(budget.try_reserve(0));
        assert!(!budget.try_reserve(1));
        let mut held = Reservation::new(&budget);
        assert!(block_on(read(chunks(&[], false), 10, Some(0), None, &mut held)).is_ok());
        let got = block_on(read(chunks(&[b"a"], false), 10, None, None, &mut held));
        assert_eq!(got.err().map(|r| r.kind()), Some(RejectionKind::ServerBusy));
    }

    #[test]
    fn reservation_grows_and_is_given_back_on_drop() {
        let budget = BodyBudget::new(10);
        let other = budget.clone();
        assert!(other.same_as(&budget));
        assert!(!BodyBudget::new(10).same_as(&budget));
        {
            let mut a = Reservation::new(&budget);
            assert!(a.grow_to(4));
            assert!(a.grow_to(3), "shrinking is a no-op");
            assert_eq!(a.held(), 4);
            assert!(a.grow_to(7));
            assert_eq!(other.in_use(), 7, "clones share the counter");
            let mut b = Reservation::new(&other);
            assert!(!b.grow_to(4));
            assert_eq!(b.held(), 0);
            assert!(b.grow_to(3));
            assert!(!a.grow_to(8), "a failed growth keeps what was held");
            assert_eq!(a.held(), 7);
            assert_eq!(budget.in_use(), 10);
        }
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn global_is_one_budget() {
        let a = BodyBudget::global();
        assert!(a.same_as(&BodyBudget::global()));
        assert!(a.same_as(&BodyBudget::default()));
        assert_eq!(a.limit(), DEFAULT_INFLIGHT_BODY_BYTES);
    }

    #[test]
    fn budget_holds_under_contention() {
        let budget = BodyBudget::new(1000);
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..20_000usize {
                        let n = 1 + i % 300;
                        if budget.try_reserve(n) {
                            peak.fetch_max(budget.in_use(), Ordering::Relaxed);
                            budget.release(n);
                        }
                    }
                });
            }
        });
        assert_eq!(budget.in_use(), 0);
        assert!(peak.load(Ordering::Relaxed) <= 1000);
    }

    // -- the budget in the reader --------------------------------------------

    #[test]
    fn content_length_is_reserved_before_reading() {
        let budget = BodyBudget::new(100);
        let mut busy = Reservation::new(&budget);
        assert!(busy.grow_to(50));
        let mut body = chunks(&[b"x"], false);
        let mut held = Reservation::new(&budget);
        let got = block_on(read(&mut body, 1000, Some(51), None, &mut held));
        assert_eq!(got.err().map(|r| r.kind()), Some(RejectionKind::ServerBusy));
        assert_eq!(body.served, 0, "nothing was read");
        assert_eq!(held.held(), 0);
        drop(busy);
        let got = block_on(read(&mut body, 1000, Some(51), None, &mut held));
        assert_eq!(got.ok().as_deref(), Some(&b"x"[..]));
        assert_eq!(held.held(), 51, "the Content-Length stays reserved");
    }

    #[test]
    fn content_length_reservation_is_capped_at_the_limit() {
        let budget = BodyBudget::new(10);
        let mut held = Reservation::new(&budget);
        let got = block_on(read(
            chunks(&[b"abc"], false),
            10,
            Some(u64::MAX),
            None,
            &mut held,
        ));
        assert!(got.is_ok());
        assert_eq!(held.held(), 10);
    }

    #[test]
    fn unknown_length_is_reserved_as_it_arrives() {
        let budget = BodyBudget::new(2048 + 512);
        let mut body = chunks(&[], true);
        let mut held = Reservation::new(&budget);
        let got = block_on(read(&mut body, 1 << 20, None, None, &mut held));
        let rejection = got.err();
        assert_eq!(
            rejection.as_ref().map(Rejection::kind),
            Some(RejectionKind::ServerBusy)
        );
        assert_eq!(rejection.and_then(|r| r.retry_after()), Some(BUSY_RETRY_AFTER));
        assert_eq!(body.served, 3 * 1024, "stopped at the chunk that crossed it");
        assert_eq!(held.held(), 2048);
        drop(held);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_body_longer_than_its_hint_reserves_the_rest() {
        let budget = BodyBudget::new(100);
        let mut held = Reservation::new(&budget);
        let got = block_on(read(
            chunks(&[b"abc", b"defg"], false),
            100,
            Some(2),
            None,
            &mut held,
        ));
        assert_eq!(got.ok().as_deref(), Some(&b"abcdefg"[..]));
        assert_eq!(held.held(), 7);
    }

    // -- timers ----------------------------------------------------------------

    #[test]
    fn outside_a_runtime_a_waiting_body_reads_without_timers() {
        let budget = BodyBudget::new(100);
        let mut held = Reservation::new(&budget);
        let body = Slow {
            chunk: b"ab",
            count: 3,
            pending: 2,
            waited: 0,
        };
        let got = block_on(read(body, 100, None, Some(SHORT), &mut held));
        assert_eq!(got.ok().as_deref(), Some(&b"ababab"[..]));
    }

    #[tokio::test]
    async fn idle_gap_times_out() {
        let budget = BodyBudget::new(100);
        let mut held = Reservation::new(&budget);
        let got = read(Stalled, 100, Some(10), Some(SHORT), &mut held).await;
        let rejection = got.err();
        assert_eq!(
            rejection.as_ref().map(Rejection::kind),
            Some(RejectionKind::BodyReadTimeout)
        );
        assert!(rejection.is_some_and(|r| r.detail().contains("idle")));
    }

    #[tokio::test]
    async fn deadline_wins_when_it_is_nearer() {
        let budget = BodyBudget::new(100);
        let mut held = Reservation::new(&budget);
        let t = Timeouts {
            idle: Duration::from_secs(30),
            total: Duration::from_millis(50),
        };
        let got = read(Stalled, 100, None, Some(t), &mut held).await;
        let rejection = got.err();
        assert_eq!(
            rejection.as_ref().map(Rejection::kind),
            Some(RejectionKind::BodyReadTimeout)
        );
        assert!(rejection.is_some_and(|r| r.detail().contains("deadline")));
    }

    #[tokio::test]
    async fn huge_timeouts_do_not_overflow() {
        let budget = BodyBudget::new(100);
        let mut held = Reservation::new(&budget);
        let t = Timeouts {
            idle: Duration::MAX,
            total: Duration::MAX,
        };
        let body = Slow {
            chunk: b"ab",
            count: 2,
            pending: 1,
            waited: 0,
        };
        let got = read(body, 100, None, Some(t), &mut held).await;
        assert_eq!(got.ok().as_deref(), Some(&b"abab"[..]));
    }

    #[tokio::test]
    async fn a_body_that_waits_but_keeps_coming_passes() {
        let budget = BodyBudget::new(100);
        let mut held = Reservation::new(&budget);
        let body = Slow {
            chunk: b"abc",
            count: 20,
            pending: 3,
            waited: 0,
        };
        let got = read(body, 100, None, Some(SHORT), &mut held).await;
        assert_eq!(got.map(|b| b.len()).ok(), Some(60));
    }
}
