//! The dedupe step of the layer: claim, run the handler, complete or
//! release.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::Request;
use tower::Service;

use super::{Claim, Dedupe, DedupeKey, DedupeStore, LeaseToken, Retention, StoreError, StoreErrorKind};
use crate::observe::{Answered, DedupeOp, DedupeRecord, DedupeResult};
use crate::verify::Watch;
use crate::{Rejection, RejectionKind, VerifiedWebhook, Verifier};

/// Reports one store operation to the dedupe's observer.
fn report(
    verifier: &Verifier,
    dedupe: &Dedupe,
    op: DedupeOp,
    result: DedupeResult,
    started: Option<Instant>,
) {
    if let (Some(observer), Some(started)) = (dedupe.observer(), started) {
        observer.on_dedupe(&DedupeRecord {
            route: verifier.name_arc(),
            namespace: dedupe.namespace(),
            op,
            result,
            latency: started.elapsed(),
        });
    }
}

/// What a complete or release answered, for the observer.
fn store_answer<T>(result: &Result<T, StoreError>) -> DedupeResult {
    match result {
        Ok(_) => DedupeResult::Done,
        Err(e) => DedupeResult::Error(e.kind()),
    }
}

/// How often, and how far apart, a failed `complete` is retried in the
/// background.
const COMPLETE_RETRIES: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(15),
];

/// Runs `inner` for a verified request at most once per dedupe key.
pub(crate) async fn run<S>(
    verifier: &Verifier,
    dedupe: &Dedupe,
    times: Retention,
    mut req: Request<Body>,
    mut inner: S,
    watch: &mut Watch<'_>,
) -> Result<Response, S::Error>
where
    S: Service<Request<Body>, Response = Response>,
{
    let Some(hook) = req.extensions().get::<VerifiedWebhook>().cloned() else {
        // The layer always inserts it before this step.
        return Ok(verifier.reject(Rejection::new(
            RejectionKind::DedupeStoreUnavailable,
            "the delivery was not verified",
        )));
    };
    let key = verifier.dedupe_key(dedupe.namespace(), &hook);
    let times = verifier.retention_for(&hook, times);
    let token = LeaseToken::random();
    let store = dedupe.store();
    // Store latency is measured only for an observer.
    let clock = || dedupe.observer().map(|_| Instant::now());
    let started = clock();
    let claim = store.claim(&key, token, times).await;
    let result = match &claim {
        Ok(Claim::Acquired) => DedupeResult::Acquired,
        Ok(Claim::AlreadyProcessed) => DedupeResult::Duplicate,
        Ok(Claim::InProgress { .. }) => DedupeResult::InProgress,
        Err(e) => DedupeResult::Error(e.kind()),
    };
    report(verifier, dedupe, DedupeOp::Claim, result, started);
    match claim {
        Ok(Claim::Acquired) => {}
        Ok(Claim::AlreadyProcessed) => {
            let response = duplicate(&hook);
            return Ok(match verifier.observer() {
                Some(_) => crate::observe::mark(response, Answered::Duplicate),
                None => response,
            });
        }
        Ok(Claim::InProgress { retry_after }) => {
            return Ok(verifier.reject(
                verifier.tag(
                    Rejection::new(
                        RejectionKind::InProgress,
                        "this delivery is being processed by another request; retry later",
                    )
                    .with_retry_after(retry_after),
                ),
            ));
        }
        Err(e) => return Ok(verifier.reject(verifier.tag(store_failed(&e)))),
    }
    // A queue that shares this store's transactions settles the claim
    // together with the enqueue, and says so through the ticket.
    let ticket = ClaimTicket {
        store: store.clone(),
        settlement: crate::queue::ClaimSettlement { key, token, times },
        settled: Arc::new(AtomicBool::new(false)),
    };
    let settled = ticket.settled.clone();
    req.extensions_mut().insert(ticket);
    let mut held = Held {
        store: Some(store.clone()),
        key,
        token,
        times,
        succeeded: false,
    };
    // Verified and handed to the handler or the queue: the rate limiter
    // refunds it, whatever the handler answers.
    watch.handler_started();
    let result = inner.call(req).await.map(crate::rate_limit::fresh);
    watch.handler_finished();
    held.succeeded = matches!(&result, Ok(response) if response.status().as_u16() < 400);
    // If this future is dropped while the store answers, `held` finishes
    // the job (complete or release) in the background.
    if held.succeeded && settled.load(Ordering::Acquire) {
        // Already marked processed in the queue's transaction.
    } else if held.succeeded {
        let started = clock();
        let completed = store.complete(&key, token, times).await;
        report(
            verifier,
            dedupe,
            DedupeOp::Complete,
            store_answer(&completed),
            started,
        );
        if let Err(e) = completed {
            tracing::error!(
                target: "webhook_guard",
                provider = hook.provider().name(),
                error = %e,
                "could not mark a processed delivery in the dedupe store; retrying in the background"
            );
            complete_later(store.clone(), key, token, times);
        }
    } else {
        let started = clock();
        let released = store.release(&key, token).await;
        report(
            verifier,
            dedupe,
            DedupeOp::Release,
            store_answer(&released),
            started,
        );
        if let Err(e) = released {
            tracing::warn!(
                target: "webhook_guard",
                provider = hook.provider().name(),
                error = %e,
                "could not release a failed delivery's claim; it frees itself when its lease ends"
            );
        }
    }
    held.store = None;
    result
}

/// The claim held for a request, in its extensions while the inner
/// service runs: a queue whose storage shares the store's transactions
/// ([`DedupeStore::transaction_scope`]) completes it with the enqueue and
/// sets `settled`.
#[derive(Clone)]
pub(crate) struct ClaimTicket {
    pub(crate) store: Arc<dyn DedupeStore>,
    pub(crate) settlement: crate::queue::ClaimSettlement,
    pub(crate) settled: Arc<AtomicBool>,
}

/// The 503 for a store failure.
fn store_failed(e: &StoreError) -> Rejection {
    tracing::error!(target: "webhook_guard", error = %e, "dedupe store failed");
    let (kind, detail) = match e.kind() {
        StoreErrorKind::Full => (
            RejectionKind::DedupeStoreFull,
            "the dedupe store is full of recent deliveries; retry later",
        ),
        _ => (
            RejectionKind::DedupeStoreUnavailable,
            "the dedupe store is unavailable; nothing was processed, retry later",
        ),
    };
    Rejection::new(kind, detail).with_retry_after(e.retry_after())
}

/// 200 `{"status":"duplicate","id":…,"type":…}`.
fn duplicate(hook: &VerifiedWebhook) -> Response {
    tracing::info!(
        target: "webhook_guard",
        provider = hook.provider().name(),
        id = hook.delivery_id(),
        "duplicate delivery; the handler does not run again"
    );
    let body = serde_json::json!({
        "status": "duplicate",
        "id": hook.delivery_id(),
        "type": hook.event_type(),
    });
    (
        [(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

fn complete_later(store: Arc<dyn DedupeStore>, key: DedupeKey, token: LeaseToken, times: Retention) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        for delay in COMPLETE_RETRIES {
            tokio::time::sleep(delay).await;
            if store.complete(&key, token, times).await.is_ok() {
                return;
            }
        }
        tracing::error!(
            target: "webhook_guard",
            "gave up marking a processed delivery; a retry after its lease may be processed again"
        );
    });
}

/// A claim held while the handler runs. If the future is dropped (the
/// client went away, a timeout layer fired) before the claim is settled,
/// it is settled in the background: released if the handler had not
/// succeeded, so the provider's retry is processed; completed if it had,
/// so the retry is a duplicate and never runs the handler twice.
struct Held {
    store: Option<Arc<dyn DedupeStore>>,
    key: DedupeKey,
    token: LeaseToken,
    times: Retention,
    succeeded: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        let (key, token, times) = (self.key, self.token, self.times);
        if self.succeeded {
            complete_later(store, key, token, times);
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = store.release(&key, token).await;
            });
        }
    }
}
