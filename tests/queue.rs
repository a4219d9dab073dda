//! The fast-acknowledgement queue: runs, retries with backoff, dead
//! letters and their requeue, attempt numbers, shutdown, and the same
//! behaviour over every storage (in memory; SQLite with the `sqlite`
//! feature, where the dedupe claim and the enqueue share a transaction).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use axum::routing::post_service;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use webhook_guard::dedupe::{Dedupe, DedupeStore, MemoryStore};
use webhook_guard::dispatch::{Event, EventRouter, HandlerError};
use webhook_guard::queue::{AckQueue, AckQueueHandle, QueueStorage};
use webhook_guard::test_util::TestSigner;
use webhook_guard::{Scheme, Verifier};

const SECRET: &str = "queue-test-secret";

/// What the handler saw: (delivery id, attempt) per run.
type Runs = Arc<Mutex<Vec<(String, u32)>>>;

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

fn verifier(store: Option<Arc<dyn DedupeStore>>) -> Verifier {
    let mut b = Verifier::builder(Scheme::standard_webhooks()).secret(standard_secret());
    if let Some(store) = store {
        b = b.dedupe(Dedupe::builder(store, "standard").build().unwrap());
    }
    b.build().unwrap()
}

fn standard_secret() -> String {
    use base64::Engine as _;
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(SECRET)
    )
}

fn request(id: &str, event_type: &str) -> Request<Body> {
    let body = json!({"type": event_type, "timestamp": "2026-01-01T00:00:00Z", "data": {"n": id}});
    TestSigner::new(&Scheme::standard_webhooks(), standard_secret())
        .unwrap()
        .id(id)
        .request("/webhooks/standard", body.to_string())
}

/// A handler that records every run and fails for `fail.*` event types
/// (500) and `reject.*` ones (422).
fn handler(runs: Runs) -> EventRouter {
    EventRouter::new().on_any(move |event: Event<Value>| {
        let runs = runs.clone();
        async move {
            let id = event.delivery_id().unwrap_or_default().to_owned();
            let attempt = event.delivery().attempt().unwrap_or(0);
            runs.lock().unwrap().push((id, attempt));
            match event.event_type() {
                Some(t) if t.starts_with("fail.") => Err(HandlerError::msg("fails on purpose")),
                _ => Ok(()),
            }
        }
    })
}

fn app(verifier: &Verifier, queue: AckQueue) -> Router {
    Router::new().route("/webhooks/standard", post_service(queue).layer(verifier.layer()))
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let response: Response = router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn runs_of(runs: &Runs, id: &str) -> Vec<u32> {
    runs.lock()
        .unwrap()
        .iter()
        .filter(|(i, _)| i == id)
        .map(|(_, a)| *a)
        .collect()
}

async fn spawn(
    storage: Option<Arc<dyn QueueStorage>>,
    runs: Runs,
    dead: Arc<Mutex<Vec<(String, u32)>>>,
) -> (AckQueue, AckQueueHandle) {
    let mut b = AckQueue::builder()
        .workers(nz(2))
        .max_attempts(3)
        .backoff(Duration::from_millis(50))
        .on_dead_letter(move |delivery, attempts, _error| {
            dead.lock()
                .unwrap()
                .push((delivery.delivery_id().unwrap_or_default().to_owned(), attempts));
        });
    if let Some(storage) = storage {
        b = b.storage(storage);
    }
    b.spawn(handler(runs)).unwrap()
}

/// GitHub's body `action` refines the event type for dispatch
/// (`issues.opened`). Queuing does not parse the body for it (the 202's
/// path stays light); the worker's handler finds it in the body, whether
/// the delivery was kept in memory or stored and read back.
async fn github_action_dispatches_after_the_queue(storage: Option<Arc<dyn QueueStorage>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler = {
        let seen = seen.clone();
        EventRouter::new().on("issues.opened", move |event: Event<Value>| {
            let seen = seen.clone();
            async move {
                let number = event.data()["issue"]["number"].as_i64().unwrap_or(-1);
                seen.lock()
                    .unwrap()
                    .push(format!("{} {number}", event.delivery_id().unwrap_or_default()));
                Ok::<(), HandlerError>(())
            }
        })
    };
    let mut b = AckQueue::builder().workers(nz(1));
    if let Some(storage) = storage {
        b = b.storage(storage);
    }
    let (queue, handle) = b.spawn(handler).unwrap();
    let verifier = Verifier::builder(Scheme::github())
        .secret(SECRET)
        .build()
        .unwrap();
    let router = Router::new().route("/webhooks/github", post_service(queue).layer(verifier.layer()));
    let request = TestSigner::new(&Scheme::github(), SECRET)
        .unwrap()
        .id("gh-1")
        .event_type("issues")
        .request("/webhooks/github", r#"{"action":"opened","issue":{"number":7}}"#);
    let (status, doc) = send(&router, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    assert_eq!(doc, json!({"status": "accepted", "id": "gh-1", "type": "issues"}));
    wait_for("issues.opened to run", || {
        seen.lock().unwrap().as_slice() == ["gh-1 7"]
    })
    .await;
    assert!(handle.shutdown(Duration::from_secs(10)).await);
}

#[tokio::test]
async fn memory_queue_dispatches_on_the_body_action() {
    github_action_dispatches_after_the_queue(None).await;
}

/// The behaviour every storage must show.
async fn retries_dead_letters_and_requeue(
    storage: Option<Arc<dyn QueueStorage>>,
    store: Arc<dyn DedupeStore>,
) {
    let runs: Runs = Arc::default();
    let dead = Arc::new(Mutex::new(Vec::new()));
    let (queue, handle) = spawn(storage, runs.clone(), dead.clone()).await;
    let router = app(&verifier(Some(store)), queue.clone());

    // A good delivery runs once, as attempt 1.
    let (status, doc) = send(&router, request("msg_ok", "ok.event")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    assert_eq!(
        doc,
        json!({"status": "accepted", "id": "msg_ok", "type": "ok.event"})
    );
    wait_for("msg_ok to run", || runs_of(&runs, "msg_ok") == [1]).await;
    // Its repeat is a duplicate and does not run again.
    let (status, doc) = send(&router, request("msg_ok", "ok.event")).await;
    assert_eq!(
        (status, doc["status"].clone()),
        (StatusCode::OK, json!("duplicate"))
    );

    // A failing delivery runs max_attempts times with rising attempt
    // numbers, then becomes a dead letter.
    let (status, _) = send(&router, request("msg_fail", "fail.event")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for("msg_fail to be buried", || !dead.lock().unwrap().is_empty()).await;
    assert_eq!(runs_of(&runs, "msg_fail"), [1, 2, 3]);
    assert_eq!(*dead.lock().unwrap(), [("msg_fail".to_owned(), 3)]);
    let letters = handle.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(letters[0].delivery.delivery_id(), Some("msg_fail"));
    assert!(letters[0].last_error.contains("500"), "{}", letters[0].last_error);
    // The repeat of an accepted (even dead) delivery is still a duplicate.
    let (status, doc) = send(&router, request("msg_fail", "fail.event")).await;
    assert_eq!(
        (status, doc["status"].clone()),
        (StatusCode::OK, json!("duplicate"))
    );

    // Requeued, it runs again from attempt 1.
    assert_eq!(handle.requeue_dead_letters(None).await.unwrap(), 1);
    wait_for("msg_fail to be buried again", || dead.lock().unwrap().len() == 2).await;
    assert_eq!(runs_of(&runs, "msg_fail"), [1, 2, 3, 1, 2, 3]);

    let mut emptied = false;
    for _ in 0..400 {
        if queue.stored().await.is_ok_and(|n| n == 0) {
            emptied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(emptied, "the queue never emptied");
    assert!(handle.shutdown(Duration::from_secs(10)).await);
    // After shutdown nothing is accepted.
    let (status, doc) = send(&router, request("msg_late", "ok.event")).await;
    assert_eq!(
        (status, doc["reason"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("shutting_down"))
    );
    assert!(runs_of(&runs, "msg_late").is_empty());
}

#[tokio::test]
async fn memory_queue_retries_buries_and_requeues() {
    retries_dead_letters_and_requeue(None, Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_client_error_from_the_handler_is_buried_at_once() {
    let runs: Runs = Arc::default();
    let dead = Arc::new(Mutex::new(Vec::new()));
    // A typed handler whose type does not fit: 422, the same every run.
    let events = EventRouter::new().on_any({
        let runs = runs.clone();
        move |event: Event<std::collections::BTreeMap<String, u64>>| {
            let runs = runs.clone();
            async move {
                runs.lock()
                    .unwrap()
                    .push((String::new(), event.delivery().attempt().unwrap_or(0)));
                Ok::<(), HandlerError>(())
            }
        }
    });
    let dead2 = dead.clone();
    let (queue, handle) = AckQueue::builder()
        .max_attempts(5)
        .backoff(Duration::from_millis(10))
        .on_dead_letter(move |d, attempts, error| {
            dead2.lock().unwrap().push((
                format!("{}:{error}", d.delivery_id().unwrap_or_default()),
                attempts,
            ));
        })
        .spawn(events)
        .unwrap();
    let router = app(&verifier(None), queue);
    let (status, _) = send(&router, request("msg_shape", "ok.event")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for("the dead letter", || !dead.lock().unwrap().is_empty()).await;
    let letters = dead.lock().unwrap().clone();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1, 1, "a 4xx is not retried");
    assert!(letters[0].0.starts_with("msg_shape:422"), "{letters:?}");
    assert!(runs.lock().unwrap().is_empty(), "the typed handler never ran");
    assert!(handle.shutdown(Duration::from_secs(10)).await);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use webhook_guard::sqlite::SqliteState;

    #[tokio::test]
    async fn sqlite_queue_retries_buries_and_requeues() {
        let dir = tempfile::tempdir().unwrap();
        let state = SqliteState::open(dir.path().join("state.db")).unwrap();
        retries_dead_letters_and_requeue(Some(Arc::new(state.queue())), Arc::new(state.dedupe_store())).await;
    }

    /// A delivery accepted with 202 and never run (the process stopped)
    /// runs after a restart on the same file; its repeat stays a
    /// duplicate across the restart.
    #[tokio::test]
    async fn sqlite_queue_dispatches_on_the_body_action() {
        let dir = tempfile::tempdir().unwrap();
        let state = SqliteState::open(dir.path().join("state.db")).unwrap();
        super::github_action_dispatches_after_the_queue(Some(Arc::new(state.queue()))).await;
    }

    #[tokio::test]
    async fn accepted_deliveries_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let state = SqliteState::open(&path).unwrap();
            // A handler that never finishes: nothing is marked done.
            let events = EventRouter::new().on_any(|_e: Event<Value>| async {
                std::future::pending::<()>().await;
                Ok::<(), HandlerError>(())
            });
            let (queue, handle) = AckQueue::builder()
                .storage(state.queue())
                .workers(nz(1))
                .spawn(events)
                .unwrap();
            let router = app(&verifier(Some(Arc::new(state.dedupe_store()))), queue);
            for id in ["msg_a", "msg_b"] {
                let (status, doc) = send(&router, request(id, "ok.event")).await;
                assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
            }
            // The worker is stuck in msg_a; shutdown gives up on it.
            assert!(!handle.shutdown(Duration::from_millis(200)).await);
        }
        // Let the runtime drop the aborted worker and release the file.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let runs: Runs = Arc::default();
        let state = SqliteState::open(&path).unwrap();
        let (queue, handle) = spawn(Some(Arc::new(state.queue())), runs.clone(), Arc::default()).await;
        let router = app(&verifier(Some(Arc::new(state.dedupe_store()))), queue);
        wait_for("both to run after the restart", || {
            runs_of(&runs, "msg_a").len() == 1 && runs_of(&runs, "msg_b").len() == 1
        })
        .await;
        // msg_a had been taken once before the restart: this is its 2nd run.
        assert_eq!(runs_of(&runs, "msg_a"), [2]);
        assert_eq!(runs_of(&runs, "msg_b"), [1]);
        for id in ["msg_a", "msg_b"] {
            let (status, doc) = send(&router, request(id, "ok.event")).await;
            assert_eq!(
                (status, doc["status"].clone()),
                (StatusCode::OK, json!("duplicate"))
            );
        }
        assert!(handle.shutdown(Duration::from_secs(10)).await);
    }

    /// Dead letters can be listed and requeued from another state opened
    /// beside the running owner (the demo's `dead-letters` commands); the
    /// owner's workers run the requeued delivery.
    #[tokio::test]
    async fn dead_letters_are_requeued_from_beside_the_owner() {
        use webhook_guard::queue::QueueStorage as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = SqliteState::open(&path).unwrap();
        let runs: Runs = Arc::default();
        let dead = Arc::new(Mutex::new(Vec::new()));
        let (queue, handle) = spawn(Some(Arc::new(state.queue())), runs.clone(), dead.clone()).await;
        let router = app(&verifier(Some(Arc::new(state.dedupe_store()))), queue);
        let (status, _) = send(&router, request("msg_dead", "fail.event")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        wait_for("the dead letter", || dead.lock().unwrap().len() == 1).await;

        // A second owner is refused; an administrative state is not.
        assert!(SqliteState::builder(&path)
            .busy_timeout(Duration::from_millis(100))
            .open()
            .is_err());
        let admin = SqliteState::builder(&path).beside_owner().open().unwrap();
        let letters = admin.queue().dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].delivery.delivery_id(), Some("msg_dead"));
        assert_eq!(admin.queue().requeue_dead(None).await.unwrap(), 1);
        drop(admin);
        // The owner's idle workers look again within a few seconds.
        wait_for("the requeued run", || runs_of(&runs, "msg_dead").len() == 4).await;
        assert_eq!(runs_of(&runs, "msg_dead")[..4], [1, 2, 3, 1]);
        assert!(handle.shutdown(Duration::from_secs(10)).await);
    }

    /// When the storage cannot be written, the delivery is answered 503
    /// `queue_unavailable` with `Retry-After`, nothing is stored, and its
    /// claim is released: the sender's retry is not a duplicate nor 409.
    #[tokio::test]
    async fn an_unwritable_queue_is_503_queue_unavailable_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = SqliteState::builder(dir.path().join("state.db"))
            .max_file_size(128 * 1024)
            .open()
            .unwrap();
        let runs: Runs = Arc::default();
        let (queue, handle) = spawn(Some(Arc::new(state.queue())), runs.clone(), Arc::default()).await;
        let router = app(&verifier(Some(Arc::new(state.dedupe_store()))), queue.clone());
        let big = |id: &str| {
            let body = json!({"type": "ok.event", "timestamp": "t", "data": {"pad": "x".repeat(400 * 1024)}});
            TestSigner::new(&Scheme::standard_webhooks(), standard_secret())
                .unwrap()
                .id(id)
                .request("/webhooks/standard", body.to_string())
        };
        for attempt in 0..2 {
            let response: Response = router.clone().oneshot(big("msg_big")).await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "attempt {attempt}"
            );
            assert!(response.headers().contains_key(http::header::RETRY_AFTER));
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let doc: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(
                doc["reason"],
                json!("queue_unavailable"),
                "attempt {attempt}: {doc}"
            );
        }
        assert_eq!(queue.stored().await.unwrap(), 0);
        // A small delivery still fits and runs.
        let (status, _) = send(&router, request("msg_small", "ok.event")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        wait_for("msg_small to run", || runs_of(&runs, "msg_small") == [1]).await;
        assert!(runs_of(&runs, "msg_big").is_empty());
        assert!(handle.shutdown(Duration::from_secs(10)).await);
    }
}

#[cfg(feature = "redis")]
#[path = "support/redis.rs"]
mod redis_support;

/// The same behaviour on Redis Streams, with the dedupe keys in the same
/// Redis (one connection, a key prefix and a queue name of its own).
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_queue_retries_buries_and_requeues() {
    use webhook_guard::dedupe::RedisStore;
    use webhook_guard::fleet::RedisConnection;
    use webhook_guard::queue::RedisQueue;

    let redis = redis_support::TestRedis::new("queue_retries");
    let conn = RedisConnection::builder(redis.url())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let storage = RedisQueue::builder(conn.clone())
        .name(format!("{}queue", redis.prefix()))
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let store = RedisStore::on(conn, Some(&format!("{}dedupe:", redis.prefix())));
    retries_dead_letters_and_requeue(Some(Arc::new(storage)), Arc::new(store)).await;
}
