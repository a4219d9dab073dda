//! One connection: the IO wrapper that enforces the idle and header
//! deadlines, and the service wrapper that tells it when a request is being
//! handled.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tower::Service;

/// What the service side tells the IO side about a connection.
#[derive(Debug, Default)]
pub(super) struct Activity {
    /// Requests whose response future has not finished yet.
    in_flight: AtomicUsize,
    /// Requests finished so far (a change means "a response just went out").
    finished: AtomicU64,
}

/// Where a connection is, as far as the deadlines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head: the header deadline runs.
    Head,
    /// A request is being handled: no deadline here (the body phase is the
    /// verification layer's, the handler is the application's).
    Busy,
    /// Between requests on a keep-alive connection: the idle deadline runs.
    Idle,
}

/// The connection's socket (or TLS stream) with a read deadline that
/// depends on the phase: `header_read_timeout` from accept (or from the
/// first byte of a later request) until the head is complete,
/// `keep_alive_timeout` while idle between requests. A read that is still
/// pending past its deadline fails with `TimedOut`, which makes hyper drop
/// the connection.
pub(super) struct DeadlineIo<I> {
    inner: I,
    activity: Arc<Activity>,
    sleep: Pin<Box<Sleep>>,
    phase: Phase,
    seen_finished: u64,
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
}

impl<I> DeadlineIo<I> {
    pub(super) fn new(
        inner: I,
        activity: Arc<Activity>,
        header_read_timeout: Duration,
        keep_alive_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            activity,
            sleep: Box::pin(tokio::time::sleep_until(deadline(header_read_timeout))),
            phase: Phase::Head,
            seen_finished: 0,
            header_read_timeout,
            keep_alive_timeout,
        }
    }

    fn update_phase(&mut self) {
        let busy = self.activity.in_flight.load(Ordering::Acquire) > 0;
        let finished = self.activity.finished.load(Ordering::Acquire);
        if busy {
            self.phase = Phase::Busy;
            self.seen_finished = finished;
        } else if self.phase == Phase::Busy || finished != self.seen_finished {
            self.phase = Phase::Idle;
            self.seen_finished = finished;
            self.sleep.as_mut().reset(deadline(self.keep_alive_timeout));
        }
    }
}

/// `now + after`, without overflowing (the setters cap durations anyway).
pub(super) fn deadline(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after).unwrap_or(now)
}

impl<I: AsyncRead + Unpin> AsyncRead for DeadlineIo<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.update_phase();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == Phase::Idle && buf.filled().len() > before {
                    // The first byte of the next request: its head must be
                    // complete within the header timeout from now.
                    this.phase = Phase::Head;
                    this.sleep.as_mut().reset(deadline(this.header_read_timeout));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.phase != Phase::Busy && this.sleep.as_mut().poll(cx).is_ready() {
                    let what = match this.phase {
                        Phase::Idle => "keep-alive idle timeout",
                        _ => "header read timeout",
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Marks a request in flight until dropped (when its response future
/// finishes or is dropped with the connection).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The application's per-connection service as a hyper service: converts
/// the body to axum's, waits for readiness, tracks the request.
pub(super) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> hyper::service::Service<http::Request<Incoming>> for Tracked<S>
where
    S: Service<axum::extract::Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let guard = InFlight::start(&self.activity);
        let mut service = self.inner.clone();
        Box::pin(async move {
            let _guard = guard;
            poll_fn(|cx| service.poll_ready(cx)).await?;
            service.call(req.map(Body::new)).await
        })
    }
}
