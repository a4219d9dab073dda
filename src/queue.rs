//! Fast acknowledgement: store the verified delivery, answer 202 at once,
//! run the handler afterwards.
//!
//! Every webhook guide says "put a queue in front": providers give a
//! receiver only a few seconds (GitHub 10 s, Slack 3 s, Shopify 5 s)
//! before they count a delivery as failed and retry it. An [`AckQueue`]
//! sits where the handler would be, behind the verification layer, so a
//! request is still verified, deduplicated and schema-validated before it
//! is accepted; then it is stored and answered
//! `202 {"status":"accepted","id":…,"type":…}`, and one of a fixed number
//! of workers runs the handler.
//!
//! # Where deliveries are kept
//!
//! The queue keeps deliveries in a [`QueueStorage`]:
//!
//! - [`MemoryQueue`] (the default): fast, and **lost on a crash**: a
//!   delivery answered 202 and not yet run is gone if the process is
//!   killed, and GitHub, for one, never redelivers on its own.
//! - `SqliteState::queue` (feature `sqlite`): the delivery (its exact
//!   bytes, headers and verified metadata) is committed to a SQLite file,
//!   with fsync, **before** the 202 is sent; a restarted process runs what
//!   the previous one accepted and did not finish. When the route's dedupe
//!   store is the same SQLite state, the dedupe key is marked processed in
//!   the same transaction, so a delivery is never stored without its key,
//!   nor the other way round.
//!
//! # Runs, retries and dead letters
//!
//! A worker takes a delivery, rebuilds the request (same path, headers and
//! body, with the [`VerifiedWebhook`] in its extensions and
//! [`VerifiedWebhook::attempt`] set) and calls the handler. A response
//! below 400 marks it done. A 5xx (or 408, 429) is retried after an
//! exponential backoff (1 s, 2 s, 4 s, … up to 5 minutes), up to
//! [`max_attempts`](AckQueueBuilder::max_attempts) runs in all (default
//! 5); then, or at once for any other 4xx (a payload that does not fit
//! the handler's type fails the same way every time), the delivery
//! becomes a dead letter, logged at error level and passed to
//! [`on_dead_letter`](AckQueueBuilder::on_dead_letter).
//! [`AckQueueHandle::dead_letters`] lists them and
//! [`AckQueueHandle::requeue_dead_letters`] puts them back.
//!
//! Runs are *at least once*: if the process dies after the handler
//! finished but before the storage recorded it done, the next process
//! runs it again (with a higher attempt number). Make handlers idempotent
//! on [`VerifiedWebhook::delivery_id`] where a second run would hurt.
//!
//! # Answers
//!
//! | case | answer |
//! |---|---|
//! | stored | 202 `{"status":"accepted","id":…,"type":…}` |
//! | the storage is full | 503 `queue_full` with `Retry-After`; nothing stored |
//! | the storage cannot be written | 503 `queue_unavailable` with `Retry-After`; nothing stored |
//! | the queue is shutting down | 503 `shutting_down` with `Retry-After` |
//!
//! A 503 makes most providers retry; GitHub does not (redeliver it from
//! the repository's webhook page), so these are logged at error level.
//!
//! ```
//! use std::num::NonZeroUsize;
//! use axum::{routing::post_service, Router};
//! use webhook_guard::dispatch::{Event, EventRouter, HandlerError};
//! use webhook_guard::queue::AckQueue;
//! use webhook_guard::{Scheme, Verifier};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let events = EventRouter::new().on("push", |_e: Event<serde_json::Value>| async {
//!     Ok::<(), HandlerError>(()) // slow work is fine here
//! });
//! let (queued, handle) = AckQueue::builder()
//!     .capacity(NonZeroUsize::new(1024).unwrap())
//!     .workers(NonZeroUsize::new(4).unwrap())
//!     .spawn(events)?;
//! let github = Verifier::builder(Scheme::github()).secret("s3cret").build()?;
//! let app: Router = Router::new().route("/webhooks/github", post_service(queued).layer(github.layer()));
//! // … serve `app`; on shutdown:
//! handle.shutdown(std::time::Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Request, StatusCode};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt as _};

use crate::dedupe::{ClaimTicket, StoreError, StoreErrorKind};
use crate::observe::{Answered, Observer, QueueEvent, QueueRecord};
use crate::{Clock as _, ConfigError, Rejection, RejectionKind, SystemClock, VerifiedWebhook};

mod memory;
#[cfg(feature = "redis")]
mod redis;
mod storage;
#[cfg(feature = "redis")]
pub use self::redis::{RedisQueue, RedisQueueBuilder};
pub use memory::MemoryQueue;
pub use storage::{ClaimSettlement, DeadLetter, Delivery, Job, JobId, QueueStorage, Taken};

/// Default capacity of the in-memory storage.
pub const DEFAULT_CAPACITY: usize = 1024;
/// Default number of workers.
pub const DEFAULT_WORKERS: usize = 4;
/// Default number of runs of a failing delivery before it becomes a dead
/// letter.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Longest backoff between two runs of a failing delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a worker waits after the storage failed before it tries again.
const STORAGE_PAUSE: Duration = Duration::from_secs(1);
/// How long an idle worker sleeps when nothing is delayed (a new enqueue
/// wakes it sooner).
const IDLE_POLL: Duration = Duration::from_secs(5);

type DeadLetterHook = Arc<dyn Fn(&Delivery, u32, &str) + Send + Sync>;

/// The service that stores verified requests and answers 202. Cheap to
/// clone. Made by [`AckQueueBuilder::spawn`].
#[derive(Clone)]
pub struct AckQueue {
    shared: Arc<Shared>,
}

struct Shared {
    storage: Arc<dyn QueueStorage>,
    accepting: AtomicBool,
    wake: Notify,
    retry_after: Duration,
    observer: Option<Arc<dyn Observer>>,
}

impl Shared {
    /// Reports `event` for a delivery to the observer, if any.
    fn report(
        &self,
        event: QueueEvent,
        fill: impl FnOnce(&mut QueueRecord<'_>),
        provider: &crate::Provider,
        event_type: Option<&str>,
    ) {
        if let Some(observer) = &self.observer {
            let mut record = QueueRecord {
                event,
                provider,
                event_type,
                storage_latency: None,
                attempt: None,
                run_time: None,
                since_received: None,
                status: None,
            };
            fill(&mut record);
            observer.on_queue(&record);
        }
    }
}

/// Stops an [`AckQueue`]'s workers, and reads and requeues its dead
/// letters.
pub struct AckQueueHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
}

/// Builder for [`AckQueue`].
#[must_use]
pub struct AckQueueBuilder {
    storage: Option<Arc<dyn QueueStorage>>,
    capacity: NonZeroUsize,
    workers: NonZeroUsize,
    retry_after: Duration,
    max_attempts: u32,
    backoff: Duration,
    on_dead_letter: Option<DeadLetterHook>,
    observer: Option<Arc<dyn Observer>>,
}

impl AckQueue {
    /// Starts configuring a queue: in memory, capacity 1024, 4 workers, 5
    /// attempts.
    pub fn builder() -> AckQueueBuilder {
        AckQueueBuilder {
            storage: None,
            capacity: NonZeroUsize::new(DEFAULT_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            workers: NonZeroUsize::new(DEFAULT_WORKERS).unwrap_or(NonZeroUsize::MIN),
            retry_after: Duration::from_secs(5),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Duration::from_secs(1),
            on_dead_letter: None,
            observer: None,
        }
    }

    /// Deliveries stored and not yet done (waiting, delayed or running).
    ///
    /// # Errors
    ///
    /// The storage's error when it cannot tell.
    pub async fn stored(&self) -> Result<usize, StoreError> {
        self.shared.storage.len().await
    }

    /// Whether the storage keeps deliveries across a crash.
    pub fn is_durable(&self) -> bool {
        self.shared.storage.is_durable()
    }

    async fn accept(shared: Arc<Shared>, req: Request<Body>) -> Response {
        let Some(hook) = req.extensions().get::<VerifiedWebhook>().cloned() else {
            // Behind no verification layer: a configuration mistake, never
            // an unverified job accepted.
            return crate::MissingVerification.into_response();
        };
        let refuse = |kind: RejectionKind, detail: &'static str, after: Duration| {
            Rejection::new(kind, detail)
                .with_provider(hook.provider())
                .with_retry_after(after)
                .to_response()
        };
        if !shared.accepting.load(Ordering::Acquire) {
            shared.report(
                QueueEvent::ShuttingDown,
                |_| {},
                hook.provider(),
                hook.event_type(),
            );
            return refuse(
                RejectionKind::ShuttingDown,
                "the receiver is shutting down; retry later",
                shared.retry_after,
            );
        }
        let delivery = Delivery::capture(req.uri(), req.headers(), &hook, SystemClock.now_unix());
        // Settle the dedupe claim in the same transaction when the store
        // and the storage share one.
        let ticket = req.extensions().get::<ClaimTicket>().filter(|t| {
            let scope = shared.storage.transaction_scope();
            scope.is_some() && scope == t.store.transaction_scope()
        });
        let settlement = ticket.map(|t| t.settlement);
        let observed = crate::observe::is_observed(req.extensions());
        let started = shared.observer.as_ref().map(|_| Instant::now());
        let enqueued = shared.storage.enqueue(&delivery, settlement).await;
        if let Some(started) = started {
            let event = match &enqueued {
                Ok(_) => QueueEvent::Enqueued,
                Err(e) if e.kind() == StoreErrorKind::Full => QueueEvent::Full,
                Err(_) => QueueEvent::Unavailable,
            };
            let latency = started.elapsed();
            shared.report(
                event,
                |r| r.storage_latency = Some(latency),
                hook.provider(),
                hook.event_type(),
            );
        }
        match enqueued {
            Ok(_) => {
                if let Some(ticket) = ticket {
                    ticket.settled.store(true, Ordering::Release);
                }
                shared.wake.notify_one();
                let response = (
                    StatusCode::ACCEPTED,
                    [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                    accepted_body(hook.delivery_id(), hook.event_type()),
                )
                    .into_response();
                if observed {
                    crate::observe::mark(response, Answered::Accepted)
                } else {
                    response
                }
            }
            Err(e) => {
                tracing::error!(
                    target: "webhook_guard",
                    provider = hook.provider().name(),
                    id = hook.delivery_id(),
                    error = %e,
                    "a verified delivery could not be queued and was answered 503; \
                     providers that do not retry (GitHub) need a manual redelivery"
                );
                let after = e.retry_after().max(shared.retry_after);
                match e.kind() {
                    StoreErrorKind::Full => {
                        refuse(RejectionKind::QueueFull, "the queue is full; retry later", after)
                    }
                    _ => refuse(
                        RejectionKind::QueueUnavailable,
                        "the queue could not store the delivery; nothing was stored, retry later",
                        after,
                    ),
                }
            }
        }
    }
}

impl fmt::Debug for AckQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckQueue")
            .field("durable", &self.shared.storage.is_durable())
            .field("accepting", &self.shared.accepting.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The future an [`AckQueue`] returns.
pub struct AckFuture(Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>);

impl Future for AckFuture {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for AckFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AckFuture")
    }
}

impl Service<Request<Body>> for AckQueue {
    type Response = Response;
    type Error = Infallible;
    type Future = AckFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        AckFuture(Box::pin(async move { Ok(Self::accept(shared, req).await) }))
    }
}

impl AckQueueHandle {
    /// Stops accepting (new requests get 503 `shutting_down`) and stops the
    /// workers, waiting at most `grace` for the runs in progress.
    ///
    /// With a durable storage, deliveries not yet run stay stored for the
    /// next start, and a run cut short by `grace` is run again then. With
    /// the in-memory storage, the workers first run every stored delivery
    /// (within `grace`), since what is left is lost. Returns whether every
    /// worker finished within `grace`.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        self.shared.accepting.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        self.shared.wake.notify_waiters();
        let workers = std::mem::take(&mut self.workers);
        let aborts: Vec<_> = workers.iter().map(JoinHandle::abort_handle).collect();
        let all = async {
            for worker in workers {
                if let Err(e) = worker.await {
                    if e.is_panic() {
                        tracing::error!(target: "webhook_guard", "a queue worker panicked");
                    }
                }
            }
        };
        let finished = tokio::time::timeout(grace, all).await.is_ok();
        if !finished {
            for abort in aborts {
                abort.abort();
            }
            tracing::warn!(
                target: "webhook_guard",
                "queue workers did not finish within the shutdown grace; \
                 a durable queue runs the interrupted deliveries again at the next start"
            );
        }
        finished
    }

    /// Up to `limit` dead letters, oldest first.
    ///
    /// # Errors
    ///
    /// The storage's error.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.shared.storage.dead_letters(limit).await
    }

    /// Puts dead letters back in the queue (those named, or all with
    /// `None`), ready now with a fresh count of attempts. Returns how many.
    ///
    /// # Errors
    ///
    /// The storage's error.
    pub async fn requeue_dead_letters(&self, ids: Option<&[JobId]>) -> Result<usize, StoreError> {
        let n = self.shared.storage.requeue_dead(ids).await?;
        self.shared.wake.notify_waiters();
        for _ in 0..n.min(1024) {
            self.shared.wake.notify_one();
        }
        Ok(n)
    }
}

impl fmt::Debug for AckQueueHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckQueueHandle")
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl fmt::Debug for AckQueueBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckQueueBuilder")
            .field("durable", &self.storage.as_ref().map(|s| s.is_durable()))
            .field("capacity", &self.capacity)
            .field("workers", &self.workers)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl AckQueueBuilder {
    /// Where deliveries are kept. Default: a [`MemoryQueue`] of
    /// [`capacity`](Self::capacity).
    pub fn storage(mut self, storage: impl QueueStorage) -> Self {
        self.storage = Some(Arc::new(storage));
        self
    }

    /// How many deliveries the default in-memory storage holds. Default
    /// 1024. (A storage given with [`storage`](Self::storage) has its own
    /// bound.)
    pub fn capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How many deliveries run at once. Default 4.
    ///
    /// With a storage that keeps deliveries elsewhere (`SqliteState`,
    /// `RedisQueue`), each worker settles a delivery and takes the next in
    /// one trip to the storage, so the trips, not the handler, can set the
    /// rate for a fast handler: on one core, the SQLite queue's 4 workers
    /// ran about 12 500 deliveries a second, 8 about 14 000 and 16 about
    /// 15 500, while it accepted about 18 000 (BENCHMARKS.md).
    pub fn workers(mut self, workers: NonZeroUsize) -> Self {
        self.workers = workers;
        self
    }

    /// The `Retry-After` sent with a 503 (queue full, unavailable or
    /// shutting down), at least. Default 5 s.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// Runs of a failing delivery before it becomes a dead letter. Default
    /// 5; at least 1.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The first retry's delay; each next one doubles, up to 5 minutes.
    /// Default 1 s.
    pub fn backoff(mut self, first: Duration) -> Self {
        self.backoff = first;
        self
    }

    /// Called (on a worker) when a delivery runs out of attempts, with the
    /// delivery, its number of runs and the last failure.
    pub fn on_dead_letter<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Delivery, u32, &str) + Send + Sync + 'static,
    {
        self.on_dead_letter = Some(Arc::new(hook));
        self
    }

    /// Reports every store attempt (stored, full, unavailable, shutting
    /// down, with the storage's latency) and every run (done, retried,
    /// dead letter, with its attempt, run time and time since the
    /// delivery was received) to `observer`; see
    /// [`observe`](crate::observe). Default: none.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Starts the workers, each running `handler` (any service taking the
    /// verified request, such as an
    /// [`EventRouter`](crate::dispatch::EventRouter) or an axum handler
    /// turned into a service), and returns the queue service and its
    /// handle. The workers first take back deliveries that a previous
    /// process took and never finished ([`QueueStorage::recover`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidQueue`] when called outside a tokio runtime.
    pub fn spawn<S>(self, handler: S) -> Result<(AckQueue, AckQueueHandle), ConfigError>
    where
        S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::InvalidQueue {
            reason: "AckQueue::spawn must be called inside a tokio runtime",
        })?;
        let storage = self
            .storage
            .unwrap_or_else(|| Arc::new(MemoryQueue::new(self.capacity.get())));
        let shared = Arc::new(Shared {
            storage,
            accepting: AtomicBool::new(true),
            wake: Notify::new(),
            retry_after: self.retry_after,
            observer: self.observer,
        });
        let (stop, stopped) = watch::channel(false);
        let (recovered_tx, recovered) = watch::channel(false);
        // One task takes back what a previous process left running before
        // any worker takes anything.
        {
            let shared = shared.clone();
            runtime.spawn(async move {
                loop {
                    match shared.storage.recover().await {
                        Ok(n) => {
                            if n > 0 {
                                tracing::warn!(
                                    target: "webhook_guard",
                                    deliveries = n,
                                    "deliveries a previous process took and never finished will run again"
                                );
                            }
                            break;
                        }
                        Err(e) => {
                            tracing::error!(target: "webhook_guard", error = %e, "queue recovery failed; retrying");
                            tokio::time::sleep(STORAGE_PAUSE).await;
                        }
                    }
                }
                let _ = recovered_tx.send(true);
            });
        }
        let policy = Arc::new(Policy {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            on_dead_letter: self.on_dead_letter,
        });
        let workers = (0..self.workers.get())
            .map(|_| {
                runtime.spawn(worker(
                    shared.clone(),
                    handler.clone(),
                    policy.clone(),
                    stopped.clone(),
                    recovered.clone(),
                ))
            })
            .collect();
        Ok((
            AckQueue {
                shared: shared.clone(),
            },
            AckQueueHandle {
                shared,
                stop,
                workers,
            },
        ))
    }
}

struct Policy {
    max_attempts: u32,
    backoff: Duration,
    on_dead_letter: Option<DeadLetterHook>,
}

impl Policy {
    /// The delay before run `attempt + 1`: the first backoff doubled for
    /// each run so far, at most [`MAX_BACKOFF`].
    fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.backoff.saturating_mul(1u32 << doublings).min(MAX_BACKOFF)
    }
}

/// The 202's body: `{"status":"accepted","id":…,"type":…}`, written
/// straight from the strings (no `serde_json::Value` built per delivery).
fn accepted_body(id: Option<&str>, event_type: Option<&str>) -> String {
    #[derive(serde::Serialize)]
    struct Accepted<'a> {
        status: &'static str,
        id: Option<&'a str>,
        #[serde(rename = "type")]
        event_type: Option<&'a str>,
    }
    serde_json::to_string(&Accepted {
        status: "accepted",
        id,
        event_type,
    })
    .unwrap_or_default()
}

async fn worker<S>(
    shared: Arc<Shared>,
    handler: S,
    policy: Arc<Policy>,
    mut stopped: watch::Receiver<bool>,
    mut recovered: watch::Receiver<bool>,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    if recovered.wait_for(|done| *done).await.is_err() {
        return;
    }
    let durable = shared.storage.is_durable();
    // What the last run's settlement took already (`complete_and_take`).
    let mut taken: Option<Result<Taken, StoreError>> = None;
    loop {
        let stopping = *stopped.borrow();
        // A durable queue stops at once (what is stored stays stored); an
        // in-memory one first runs what it holds, since that would be lost.
        // A delivery already taken (with the last one's completion) still
        // runs, as one taken by `take` would; a durable queue's worker
        // that is stopping takes nothing more (see `run`).
        let holds_job = matches!(taken, Some(Ok(Taken::Job(_))));
        if stopping && durable && !holds_job {
            return;
        }
        let next = match taken.take() {
            Some(next) => next,
            None => shared.storage.take().await,
        };
        let next_due = match next {
            Ok(Taken::Job(job)) => {
                let take_next = || !(durable && *stopped.borrow());
                taken = run(&shared, handler.clone(), &policy, job, take_next).await;
                continue;
            }
            Ok(Taken::Idle { next_due }) => next_due,
            Err(e) => {
                tracing::error!(target: "webhook_guard", error = %e, "the queue storage failed; pausing");
                Some(STORAGE_PAUSE)
            }
        };
        if stopping {
            return;
        }
        let wait = next_due.unwrap_or(IDLE_POLL).min(IDLE_POLL);
        tokio::select! {
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// Runs `job` and records its outcome. After a success, when `take_next`
/// says so, also takes the next delivery in the same trip to the storage
/// and returns what it found.
async fn run<S>(
    shared: &Shared,
    handler: S,
    policy: &Policy,
    job: Job,
    take_next: impl FnOnce() -> bool,
) -> Option<Result<Taken, StoreError>>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let req = job.delivery.to_request(job.attempt);
    let started = shared.observer.as_ref().map(|_| Instant::now());
    let handled = handler.oneshot(req);
    let Ok(response) = match shared.storage.renew_every() {
        None => handled.await,
        Some(every) => {
            // Renew the hold while the handler runs, so that a run longer
            // than the storage's lease is not taken over by another
            // consumer and run twice.
            tokio::pin!(handled);
            loop {
                tokio::select! {
                    response = &mut handled => break response,
                    () = tokio::time::sleep(every) => {
                        if let Err(e) = shared.storage.keep(job.id).await {
                            tracing::warn!(
                                target: "webhook_guard",
                                error = %e,
                                "could not renew a running delivery's lease; another consumer may take it over"
                            );
                        }
                    }
                }
            }
        }
    };
    let status = response.status();
    let report = |event: QueueEvent| {
        if let Some(started) = started {
            let run_time = started.elapsed();
            let waited = SystemClock
                .now_unix()
                .saturating_sub(job.delivery.received_at_unix());
            shared.report(
                event,
                |r| {
                    r.attempt = Some(job.attempt);
                    r.run_time = Some(run_time);
                    r.since_received = Some(Duration::from_secs(u64::try_from(waited).unwrap_or(0)));
                    r.status = Some(status);
                },
                job.delivery.provider(),
                job.delivery.event_type(),
            );
        }
    };
    let settled = if status.as_u16() < 400 {
        report(QueueEvent::Done);
        if take_next() {
            match shared.storage.complete_and_take(job.id).await {
                Ok(next) => return Some(Ok(next)),
                Err(e) => Err(e),
            }
        } else {
            shared.storage.complete(job.id).await
        }
    } else {
        let error = match response.extensions().get::<Rejection>() {
            Some(r) => format!("{} {}", status.as_u16(), r.reason()),
            None => format!("{}", status.as_u16()),
        };
        // A client error (a typed payload that does not fit, say) is the
        // same on every run: no point in retrying it.
        let final_error = status.is_client_error()
            && status != StatusCode::REQUEST_TIMEOUT
            && status != StatusCode::TOO_MANY_REQUESTS;
        if final_error || job.attempt >= policy.max_attempts {
            report(QueueEvent::DeadLetter);
            tracing::error!(
                target: "webhook_guard",
                provider = job.delivery.provider().name(),
                id = job.delivery.delivery_id(),
                attempts = job.attempt,
                status = status.as_u16(),
                "a queued delivery failed on its last attempt and is now a dead letter"
            );
            let buried = shared.storage.bury(job.id, &error).await;
            if buried.is_ok() {
                if let Some(hook) = &policy.on_dead_letter {
                    hook(&job.delivery, job.attempt, &error);
                }
            }
            buried
        } else {
            report(QueueEvent::Retried);
            let delay = policy.delay(job.attempt);
            tracing::warn!(
                target: "webhook_guard",
                provider = job.delivery.provider().name(),
                id = job.delivery.delivery_id(),
                attempt = job.attempt,
                status = status.as_u16(),
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "a queued delivery failed; it will run again"
            );
            shared.storage.retry(job.id, delay, &error).await
        }
    };
    if let Err(e) = settled {
        tracing::error!(
            target: "webhook_guard",
            error = %e,
            "could not record a queued delivery's outcome; it runs again after the next start"
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = Policy {
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            on_dead_letter: None,
        };
        assert_eq!(p.delay(1), Duration::from_secs(1));
        assert_eq!(p.delay(2), Duration::from_secs(2));
        assert_eq!(p.delay(4), Duration::from_secs(8));
        assert_eq!(p.delay(30), MAX_BACKOFF);
        assert_eq!(p.delay(u32::MAX), MAX_BACKOFF);
    }
}
