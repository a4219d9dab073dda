//! A key's retention follows its signed timestamp: for timestamped schemes
//! the key must outlive only the window in which the timestamp check would
//! still accept a replay, so the store may evict it after that; schemes
//! without a signed time keep the route's whole replay window.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use http::StatusCode;
use tower::ServiceExt as _;
use webhook_guard::dedupe::{
    Claim, Dedupe, DedupeKey, DedupeStore, LeaseToken, MemoryStore, Retention, StoreFuture,
};
use webhook_guard::test_util::TestSigner;
use webhook_guard::{FixedClock, Scheme, Verifier};

const NOW: i64 = 1_800_000_000;

/// A memory store that records the retention of every claim.
#[derive(Clone, Default)]
struct Recording {
    inner: MemoryStore,
    seen: Arc<Mutex<Vec<Retention>>>,
}

impl DedupeStore for Recording {
    fn claim<'a>(
        &'a self,
        key: &'a DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> StoreFuture<'a, Claim> {
        self.seen.lock().unwrap().push(times);
        self.inner.claim(key, token, times)
    }
    fn complete<'a>(
        &'a self,
        key: &'a DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> StoreFuture<'a, ()> {
        self.inner.complete(key, token, times)
    }
    fn release<'a>(&'a self, key: &'a DedupeKey, token: LeaseToken) -> StoreFuture<'a, ()> {
        self.inner.release(key, token)
    }
}

async fn replay_window_of(scheme: Scheme, secret: &str, signed_at: i64, body: &str) -> Duration {
    let store = Recording::default();
    let verifier = Verifier::builder(scheme.clone())
        .secret(secret)
        .tolerance(Duration::from_secs(300))
        .clock(FixedClock::new(NOW))
        .dedupe(Dedupe::builder(store.clone(), "r").build().unwrap())
        .build()
        .unwrap();
    let app = Router::new().route("/hook", post(|| async { "ok" }).layer(verifier.layer()));
    let req = TestSigner::new(&scheme, secret)
        .unwrap()
        .timestamp(signed_at)
        .id("msg_retention")
        .request("/hook", body.to_owned());
    let response = app.oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = store.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    seen[0].replay_window()
}

#[tokio::test]
async fn timestamped_keys_are_kept_until_the_timestamp_check_would_refuse_a_replay() {
    let body = r#"{"id":"evt_r","type":"x"}"#;
    // Signed 299 s ago with a 300 s tolerance: a replay is refused by the
    // timestamp check two seconds from now, so two seconds suffice.
    let w = replay_window_of(Scheme::stripe(), "whsec_r", NOW - 299, body).await;
    assert_eq!(w, Duration::from_secs(2));
    // Signed now: tolerance + 1 s.
    let w = replay_window_of(Scheme::stripe(), "whsec_r", NOW, body).await;
    assert_eq!(w, Duration::from_secs(301));
    // Signed 300 s in the future (the most the check accepts): still no
    // longer than the route's replay window (twice the tolerance).
    let w = replay_window_of(Scheme::stripe(), "whsec_r", NOW + 300, body).await;
    assert_eq!(w, Duration::from_secs(600));
}

#[tokio::test]
async fn schemes_without_a_signed_time_keep_the_whole_replay_window() {
    let w = replay_window_of(Scheme::github(), "gh-secret", NOW - 299, r#"{"a":1}"#).await;
    assert_eq!(w, Duration::from_secs(600));
}
