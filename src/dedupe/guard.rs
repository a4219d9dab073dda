//! The dedupe step of the layer: claim, run the handler, complete or
//! release.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::Request;
use tower::Service;

use super::{Claim, Dedupe, DedupeKey, DedupeStore, LeaseToken, Retention, StoreError, StoreErrorKind};
use crate::{Rejection, RejectionKind, VerifiedWebhook, Verifier};

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
    match store.claim(&key, token, times).await {
        Ok(Claim::Acquired) => {}
        Ok(Claim::AlreadyProcessed) => return Ok(duplicate(&hook)),
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
    let result = inner.call(req).await.map(crate::rate_limit::fresh);
    held.succeeded = matches!(&result, Ok(response) if response.status().as_u16() < 400);
    // If this future is dropped while the store answers, `held` finishes
    // the job (complete or release) in the background.
    if held.succeeded && settled.load(Ordering::Acquire) {
        // Already marked processed in the queue's transaction.
    } else if held.succeeded {
        if let Err(e) = store.complete(&key, token, times).await {
            tracing::error!(
                target: "webhook_guard",
                provider = hook.provider().name(),
                error = %e,
                "could not mark a processed delivery in the dedupe store; retrying in the background"
            );
            complete_later(store.clone(), key, token, times);
        }
    } else if let Err(e) = store.release(&key, token).await {
        tracing::warn!(
            target: "webhook_guard",
            provider = hook.provider().name(),
            error = %e,
            "could not release a failed delivery's claim; it frees itself when its lease ends"
        );
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
