//! Fast acknowledgement: answer 202 at once, run the handler afterwards
//! on a bounded in-process queue.
//!
//! Every webhook guide says "put a queue in front": providers give a
//! receiver only a few seconds (GitHub 10 s, Slack 3 s, Shopify 5 s)
//! before they count a delivery as failed and retry it. An [`AckQueue`]
//! sits where the handler would be, behind the verification layer, so a
//! request is still verified, deduplicated and schema-validated before it
//! is accepted; then it is queued and answered
//! `202 {"status":"accepted","id":…,"type":…}` at once, and one of a
//! fixed number of workers runs the handler.
//!
//! - **Full queue**: 503 `queue_full` with `Retry-After`, so the provider
//!   retries later; nothing is dropped silently.
//! - **Shutdown**: [`AckQueueHandle::shutdown`] stops accepting (503) and
//!   waits until every queued job has run.
//!
//! **The trade-off.** After a 202 the provider considers the delivery
//! done: if the handler then fails, the provider will **not** retry it
//! (the failure is logged at error level), and a dedupe claim is completed
//! when the job is accepted, not when it succeeds. Prefer it when handlers
//! can be slower than the provider's timeout, or when bursts must be
//! smoothed; keep the synchronous mode (the default) when a failed handler
//! must make the provider retry, or add your own durable retry.
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
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Ready};
use std::num::NonZeroUsize;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Request, StatusCode};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt as _};

use crate::{ConfigError, Rejection, RejectionKind, VerifiedWebhook};

mod storage;
pub use storage::{ClaimSettlement, DeadLetter, Delivery, Job, JobId, QueueStorage, Taken};

/// Default queue capacity.
pub const DEFAULT_CAPACITY: usize = 1024;
/// Default number of workers.
pub const DEFAULT_WORKERS: usize = 4;

type Pending = Request<Body>;

/// The service that queues verified requests and answers 202. Cheap to
/// clone. Made by [`AckQueueBuilder::spawn`].
#[derive(Clone)]
pub struct AckQueue {
    sender: Arc<RwLock<Option<mpsc::Sender<Pending>>>>,
    capacity: usize,
    retry_after: Duration,
}

/// Stops an [`AckQueue`] and waits for it to drain.
pub struct AckQueueHandle {
    sender: Arc<RwLock<Option<mpsc::Sender<Pending>>>>,
    workers: Vec<JoinHandle<()>>,
}

/// Builder for [`AckQueue`].
#[must_use]
#[derive(Debug)]
pub struct AckQueueBuilder {
    capacity: NonZeroUsize,
    workers: NonZeroUsize,
    retry_after: Duration,
}

impl AckQueue {
    /// Starts configuring a queue: capacity 1024, 4 workers.
    pub fn builder() -> AckQueueBuilder {
        AckQueueBuilder {
            capacity: NonZeroUsize::new(DEFAULT_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            workers: NonZeroUsize::new(DEFAULT_WORKERS).unwrap_or(NonZeroUsize::MIN),
            retry_after: Duration::from_secs(5),
        }
    }

    /// Jobs waiting to run right now.
    pub fn queued(&self) -> usize {
        let guard = self
            .sender
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard
            .as_ref()
            .map_or(0, |s| self.capacity.saturating_sub(s.capacity()))
    }

    fn accept(&self, req: Pending) -> Response {
        let Some(hook) = req.extensions().get::<VerifiedWebhook>().cloned() else {
            // Behind no verification layer: a configuration mistake, never
            // an unverified job accepted.
            return crate::MissingVerification.into_response();
        };
        let outcome = {
            let guard = self
                .sender
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match guard.as_ref() {
                Some(sender) => sender.try_send(req).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => "the queue is full; retry later",
                    mpsc::error::TrySendError::Closed(_) => "the receiver is shutting down; retry later",
                }),
                None => Err("the receiver is shutting down; retry later"),
            }
        };
        match outcome {
            Ok(()) => {
                let body = serde_json::json!({
                    "status": "accepted",
                    "id": hook.delivery_id(),
                    "type": hook.event_type(),
                });
                (
                    StatusCode::ACCEPTED,
                    [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                    body.to_string(),
                )
                    .into_response()
            }
            Err(detail) => {
                tracing::warn!(target: "webhook_guard", "{detail}");
                Rejection::new(RejectionKind::QueueFull, detail)
                    .with_provider(hook.provider())
                    .with_retry_after(self.retry_after)
                    .to_response()
            }
        }
    }
}

impl fmt::Debug for AckQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckQueue")
            .field("capacity", &self.capacity)
            .field("queued", &self.queued())
            .finish()
    }
}

impl Service<Request<Body>> for AckQueue {
    type Response = Response;
    type Error = Infallible;
    type Future = Ready<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        ready(Ok(self.accept(req)))
    }
}

impl AckQueueHandle {
    /// Stops accepting (new requests get 503 `queue_full`) and waits until
    /// every queued job has run.
    pub async fn shutdown(self) {
        drop(
            self.sender
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        for worker in self.workers {
            if let Err(e) = worker.await {
                tracing::error!(target: "webhook_guard", error = %e, "a queue worker panicked");
            }
        }
    }
}

impl fmt::Debug for AckQueueHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckQueueHandle")
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl AckQueueBuilder {
    /// How many accepted jobs may wait. Default 1024.
    pub fn capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How many jobs run at once. Default 4.
    pub fn workers(mut self, workers: NonZeroUsize) -> Self {
        self.workers = workers;
        self
    }

    /// The `Retry-After` sent with a 503 when the queue is full. Default
    /// 5 s.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// Starts the workers, each running `handler` (any service taking the
    /// verified request, such as an
    /// [`EventRouter`](crate::dispatch::EventRouter) or an axum handler
    /// turned into a service), and returns the queue service and its
    /// shutdown handle.
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
        let (tx, rx) = mpsc::channel::<Pending>(self.capacity.get());
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..self.workers.get())
            .map(|_| {
                let rx = rx.clone();
                let handler = handler.clone();
                runtime.spawn(async move {
                    loop {
                        let job = rx.lock().await.recv().await;
                        let Some(job) = job else { break };
                        run(handler.clone(), job).await;
                    }
                })
            })
            .collect();
        let sender = Arc::new(RwLock::new(Some(tx)));
        Ok((
            AckQueue {
                sender: sender.clone(),
                capacity: self.capacity.get(),
                retry_after: self.retry_after,
            },
            AckQueueHandle { sender, workers },
        ))
    }
}

async fn run<S>(handler: S, job: Pending)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let hook = job.extensions().get::<VerifiedWebhook>().cloned();
    let Ok(response) = handler.oneshot(job).await;
    if response.status().is_server_error() || response.status().is_client_error() {
        tracing::error!(
            target: "webhook_guard",
            provider = hook.as_ref().map(|h| h.provider().name().to_owned()),
            id = hook.as_ref().and_then(VerifiedWebhook::delivery_id),
            status = response.status().as_u16(),
            "a queued webhook failed after it was acknowledged with 202; the provider will not retry it"
        );
    }
}
