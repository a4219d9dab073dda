//! `RedisStore` against a real `redis-server` (feature `redis`): the
//! atomicity contract of `DedupeStore`, leases, sharing between receivers,
//! key names, outages and recovery, and that no password leaks.
//!
//! Each test starts its own `redis-server` on a free loopback port (the
//! binary from `REDIS_SERVER`, else `redis-server` on `PATH`) and kills it
//! when done. A missing binary fails the tests: it does not skip them.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use webhook_guard::dedupe::{
    Claim, DedupeKey, DedupeStore, LeaseToken, RedisStore, Retention, StoreErrorKind,
};
use webhook_guard::ConfigError;

const PREFIX: &str = "test:dedupe:";

/// A `redis-server` child process on a loopback port, killed on drop.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<&'static str>,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

impl RedisServer {
    fn start() -> Self {
        Self::start_on(free_port(), None)
    }

    fn start_with_password(password: &'static str) -> Self {
        Self::start_on(free_port(), Some(password))
    }

    fn start_on(port: u16, password: Option<&'static str>) -> Self {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let mut command = Command::new(&binary);
        command
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = password {
            command.args(["--requirepass", password]);
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!(
                "these tests need a redis-server binary, and {binary:?} could not be started \
                 ({e}); install one (e.g. `apt-get install redis-server`) or point \
                 REDIS_SERVER at it"
            ),
        };
        let mut server = Self {
            child: Some(child),
            port,
            password,
        };
        server.wait_until_ready();
        server
    }

    /// Polls with a raw `PING` until the server answers (`+PONG`, or
    /// `-NOAUTH` when it wants a password).
    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("redis-server on port {} exited early: {status}", self.port);
                }
            }
            if self.answers_ping() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => buf.starts_with(b"+PONG") || buf.starts_with(b"-NOAUTH"),
            _ => false,
        }
    }

    fn url(&self) -> String {
        match self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A plain connection, to look at what the store wrote.
    fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("raw client")
            .get_connection()
            .expect("raw connection")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn store(server: &RedisServer) -> RedisStore {
    RedisStore::builder(&server.url())
        .key_prefix(PREFIX)
        .timeout(Duration::from_secs(2))
        .build()
        .expect("store")
}

fn times(lease: Duration) -> Retention {
    Retention::new(lease, Duration::from_secs(600), Duration::from_secs(3600))
}

fn minute() -> Retention {
    times(Duration::from_secs(60))
}

fn key(name: &str) -> DedupeKey {
    DedupeKey::from_id("redis-tests", name.as_bytes())
}

async fn claim(store: &RedisStore, key: &DedupeKey, token: LeaseToken, t: Retention) -> Claim {
    store.claim(key, token, t).await.expect("claim")
}

fn redis_name(key: &DedupeKey) -> String {
    format!("{PREFIX}{}", key.to_hex())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_complete_then_duplicate() {
    let server = RedisServer::start();
    let s = store(&server);
    s.ping().await.expect("ping");
    let k = key("evt_1");
    let (a, b) = (LeaseToken::random(), LeaseToken::random());

    assert_eq!(claim(&s, &k, a, minute()).await, Claim::Acquired);
    let raw: String = redis::cmd("GET")
        .arg(redis_name(&k))
        .query(&mut server.raw())
        .unwrap();
    assert_eq!(raw, format!("p:{:032x}", a.as_u128()));

    match claim(&s, &k, b, minute()).await {
        Claim::InProgress { retry_after } => {
            assert!(retry_after > Duration::ZERO);
            assert!(retry_after <= Duration::from_secs(60), "{retry_after:?}");
            assert!(retry_after > Duration::from_secs(50), "{retry_after:?}");
        }
        other => panic!("expected InProgress, got {other:?}"),
    }

    s.complete(&k, a, minute()).await.expect("complete");
    assert_eq!(claim(&s, &k, b, minute()).await, Claim::AlreadyProcessed);
    assert_eq!(claim(&s, &k, a, minute()).await, Claim::AlreadyProcessed);

    // Remembered for the idempotency retention (≥ the replay window).
    let mut raw = server.raw();
    let value: String = redis::cmd("GET").arg(redis_name(&k)).query(&mut raw).unwrap();
    assert_eq!(value, "d");
    let pttl: i64 = redis::cmd("PTTL").arg(redis_name(&k)).query(&mut raw).unwrap();
    assert!(pttl > 3_590_000 && pttl <= 3_600_000, "{pttl}");

    // Completing again changes nothing.
    s.complete(&k, b, minute()).await.expect("complete again");
    assert_eq!(claim(&s, &k, b, minute()).await, Claim::AlreadyProcessed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_makes_the_key_claimable_again() {
    let server = RedisServer::start();
    let s = store(&server);
    let k = key("evt_release");
    let (a, b) = (LeaseToken::random(), LeaseToken::random());

    assert_eq!(claim(&s, &k, a, minute()).await, Claim::Acquired);
    s.release(&k, a).await.expect("release");
    assert_eq!(claim(&s, &k, b, minute()).await, Claim::Acquired);
    // Releasing a key nobody holds is fine.
    s.release(&key("never"), a).await.expect("release unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_token_cannot_release_or_complete_a_live_claim() {
    let server = RedisServer::start();
    let s = store(&server);
    let k = key("evt_foreign");
    let (owner, intruder, third) = (LeaseToken::random(), LeaseToken::random(), LeaseToken::random());

    assert_eq!(claim(&s, &k, owner, minute()).await, Claim::Acquired);
    s.release(&k, intruder).await.expect("foreign release");
    assert!(matches!(
        claim(&s, &k, third, minute()).await,
        Claim::InProgress { .. }
    ));
    s.complete(&k, intruder, minute())
        .await
        .expect("foreign complete");
    assert!(matches!(
        claim(&s, &k, third, minute()).await,
        Claim::InProgress { .. }
    ));
    let raw: String = redis::cmd("GET")
        .arg(redis_name(&k))
        .query(&mut server.raw())
        .unwrap();
    assert_eq!(raw, format!("p:{:032x}", owner.as_u128()));

    // The owner still can.
    s.complete(&k, owner, minute()).await.expect("complete");
    assert_eq!(claim(&s, &k, third, minute()).await, Claim::AlreadyProcessed);
    // And a release after completion does not forget the key.
    s.release(&k, owner).await.expect("release after complete");
    assert_eq!(claim(&s, &k, third, minute()).await, Claim::AlreadyProcessed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_frees_the_key() {
    let server = RedisServer::start();
    let s = store(&server);
    let k = key("evt_lease");
    let second = times(Duration::from_secs(1));
    let (a, b) = (LeaseToken::random(), LeaseToken::random());

    assert_eq!(claim(&s, &k, a, second).await, Claim::Acquired);
    match claim(&s, &k, b, second).await {
        Claim::InProgress { retry_after } => {
            assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}");
            assert!(retry_after >= Duration::from_millis(1));
        }
        other => panic!("expected InProgress, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(claim(&s, &k, b, second).await, Claim::Acquired);
    // The old owner can no longer release the new claim.
    s.release(&k, a).await.expect("stale release");
    assert!(matches!(
        claim(&s, &k, LeaseToken::random(), second).await,
        Claim::InProgress { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_after_the_own_lease_expired_still_records_it() {
    let server = RedisServer::start();
    let s = store(&server);
    let k = key("evt_slow_handler");
    let second = times(Duration::from_secs(1));
    let a = LeaseToken::random();

    assert_eq!(claim(&s, &k, a, second).await, Claim::Acquired);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.complete(&k, a, second).await.expect("late complete");
    assert_eq!(
        claim(&s, &k, LeaseToken::random(), second).await,
        Claim::AlreadyProcessed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_claims_acquire_exactly_once() {
    let server = RedisServer::start();
    let s = store(&server);
    let k = key("evt_race");

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim(&k, LeaseToken::random(), minute()).await })
        })
        .collect();
    let mut acquired = 0;
    let mut in_progress = 0;
    for task in tasks {
        match task.await.expect("task").expect("claim") {
            Claim::Acquired => acquired += 1,
            Claim::InProgress { retry_after } => {
                assert!(retry_after <= Duration::from_secs(60));
                in_progress += 1;
            }
            Claim::AlreadyProcessed => panic!("nobody completed the key"),
        }
    }
    assert_eq!((acquired, in_progress), (1, 49));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_share_the_keys() {
    let server = RedisServer::start();
    let receiver_a = store(&server);
    let receiver_b = store(&server);
    let k = key("evt_shared");
    let (a, b) = (LeaseToken::random(), LeaseToken::random());

    assert_eq!(claim(&receiver_a, &k, a, minute()).await, Claim::Acquired);
    assert!(matches!(
        claim(&receiver_b, &k, b, minute()).await,
        Claim::InProgress { .. }
    ));
    receiver_a.complete(&k, a, minute()).await.expect("complete");
    assert_eq!(claim(&receiver_b, &k, b, minute()).await, Claim::AlreadyProcessed);

    // A different prefix is a different set of keys.
    let other_app = RedisStore::builder(&server.url())
        .key_prefix("other-app:")
        .build()
        .expect("store");
    assert_eq!(claim(&other_app, &k, b, minute()).await, Claim::Acquired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_the_prefix_and_fixed_length_hex() {
    let server = RedisServer::start();
    let s = store(&server);
    let t = LeaseToken::random();
    for id in ["evt_1", "a much longer delivery id with spaces and ünïcödé", ""] {
        assert_eq!(claim(&s, &key(id), t, minute()).await, Claim::Acquired);
    }
    s.complete(&key("evt_1"), t, minute()).await.expect("complete");

    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{PREFIX}*"))
        .query(&mut server.raw())
        .unwrap();
    keys.sort();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for name in &keys {
        let hex = name.strip_prefix(PREFIX).expect("prefixed");
        assert_eq!(hex.len(), 64, "{name}");
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{name}"
        );
        assert!(!name.contains("evt_1"));
    }
    let all: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut server.raw()).unwrap();
    assert_eq!(all.len(), 3, "only prefixed keys are written: {all:?}");
    // Every key expires.
    for name in &keys {
        let pttl: i64 = redis::cmd("PTTL").arg(name).query(&mut server.raw()).unwrap();
        assert!(pttl > 0, "{name}: {pttl}");
    }
}

/// Claims until one succeeds or `limit` passes.
async fn claim_until_ok(store: &RedisStore, key: &DedupeKey, limit: Duration) -> Claim {
    let deadline = Instant::now() + limit;
    loop {
        match store.claim(key, LeaseToken::random(), minute()).await {
            Ok(claim) => return claim,
            Err(e) => {
                assert_eq!(e.kind(), StoreErrorKind::Unavailable, "{e}");
                assert!(
                    Instant::now() < deadline,
                    "the store did not recover within {limit:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_then_back_on_the_same_port() {
    let mut server = RedisServer::start();
    let port = server.port;
    let s = RedisStore::builder(&server.url())
        .key_prefix(PREFIX)
        .timeout(Duration::from_secs(1))
        .retry_after(Duration::from_secs(7))
        .build()
        .expect("store");
    assert_eq!(
        claim(&s, &key("before"), LeaseToken::random(), minute()).await,
        Claim::Acquired
    );

    server.kill();
    for attempt in 0..3 {
        let started = Instant::now();
        let err = s
            .claim(&key("during"), LeaseToken::random(), minute())
            .await
            .expect_err("Redis is down");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "attempt {attempt} took {took:?}");
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);
        assert_eq!(err.retry_after(), Duration::from_secs(7));
        assert!(err.to_string().contains("unreachable"), "{err}");
        let err = s.complete(&key("during"), LeaseToken::random(), minute()).await;
        assert_eq!(err.map_err(|e| e.kind()), Err(StoreErrorKind::Unavailable));
        let err = s.release(&key("during"), LeaseToken::random()).await;
        assert_eq!(err.map_err(|e| e.kind()), Err(StoreErrorKind::Unavailable));
    }

    // The same instance recovers by itself once Redis is back.
    let _server = RedisServer::start_on(port, None);
    let answer = claim_until_ok(&s, &key("after"), Duration::from_secs(10)).await;
    assert_eq!(answer, Claim::Acquired);
    assert!(matches!(
        claim(&s, &key("after"), LeaseToken::random(), minute()).await,
        Claim::InProgress { .. }
    ));
}

/// Regression: after Redis restarted, the first call must not be refused
/// because the old connection is dead (the receiver once answered the
/// first delivery after an outage with 503 although Redis was back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_call_after_a_restart_succeeds() {
    for outage_with_traffic in [false, true] {
        let mut server = RedisServer::start();
        let port = server.port;
        let s = store(&server);
        assert_eq!(
            claim(&s, &key("warm"), LeaseToken::random(), minute()).await,
            Claim::Acquired
        );
        server.kill();
        if outage_with_traffic {
            assert!(s
                .claim(&key("down"), LeaseToken::random(), minute())
                .await
                .is_err());
        }
        let _server = RedisServer::start_on(port, None);
        let token = LeaseToken::random();
        let first = s.claim(&key("first-after"), token, minute()).await;
        assert_eq!(
            first.ok(),
            Some(Claim::Acquired),
            "traffic during outage: {outage_with_traffic}"
        );
        // A repeated call with the same token (an answer lost on a broken
        // connection) is still ours, never a 409 against ourselves.
        assert_eq!(
            claim(&s, &key("first-after"), token, minute()).await,
            Claim::Acquired
        );
        assert!(matches!(
            claim(&s, &key("first-after"), LeaseToken::random(), minute()).await,
            Claim::InProgress { .. }
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_while_redis_is_down_then_it_starts() {
    let port = free_port();
    let s = RedisStore::builder(&format!("redis://127.0.0.1:{port}/"))
        .key_prefix(PREFIX)
        .timeout(Duration::from_secs(1))
        .build()
        .expect("building does not connect");

    let started = Instant::now();
    let err = s
        .claim(&key("early"), LeaseToken::random(), minute())
        .await
        .expect_err("nothing listens yet");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err.kind(), StoreErrorKind::Unavailable);
    assert_eq!(err.retry_after(), Duration::from_secs(5), "the default");
    assert_eq!(
        s.ping().await.map_err(|e| e.kind()),
        Err(StoreErrorKind::Unavailable)
    );

    // Concurrent first calls while down all fail, promptly.
    let started = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim(&key("early"), LeaseToken::random(), minute()).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.expect("task").is_err());
    }
    assert!(started.elapsed() < Duration::from_secs(3));

    let _server = RedisServer::start_on(port, None);
    let answer = claim_until_ok(&s, &key("early"), Duration::from_secs(10)).await;
    assert_eq!(answer, Claim::Acquired);
    s.ping().await.expect("ping");
}

#[test]
fn a_bad_url_is_a_config_error_without_the_password() {
    for url in [
        "http://:hunter2@127.0.0.1:1/",
        "redis://:hunter2@127.0.0.1:1/not-a-db",
        "redis://:hunter2@[::1/",
        "rediss://:hunter2@127.0.0.1:1/not-a-db",
        "hunter2",
    ] {
        match RedisStore::builder(url).build() {
            Err(e @ ConfigError::InvalidStore { .. }) => {
                assert!(!e.to_string().contains("hunter2"), "{e}");
                assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
            }
            Err(other) => panic!("{url}: wrong error {other:?}"),
            Ok(store) => panic!("{url}: built {store:?}"),
        }
    }
    // A zero timeout would fail every operation.
    assert!(matches!(
        RedisStore::builder("redis://127.0.0.1/")
            .timeout(Duration::ZERO)
            .build(),
        Err(ConfigError::InvalidStore { .. })
    ));
}

#[tokio::test]
async fn debug_and_errors_never_show_the_password() {
    let url = "redis://:hunter2@127.0.0.1:1/";
    let builder = RedisStore::builder(url).key_prefix("shop:");
    assert!(!format!("{builder:?}").contains("hunter2"));
    let s = builder
        .timeout(Duration::from_millis(300))
        .build()
        .expect("parses");
    let debug = format!("{s:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("shop:"), "{debug}");

    // Nothing listens on port 1.
    let err = s
        .claim(&key("x"), LeaseToken::random(), minute())
        .await
        .expect_err("unreachable");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable);
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_server() {
    let server = RedisServer::start_with_password("s3cret-pw");
    let s = store(&server);
    s.ping().await.expect("ping with the password");
    let k = key("evt_auth");
    assert_eq!(
        claim(&s, &k, LeaseToken::random(), minute()).await,
        Claim::Acquired
    );

    // A wrong password is unavailable, and the error does not quote it.
    let wrong = RedisStore::builder(&format!("redis://:wr0ng-pw@127.0.0.1:{}/", server.port))
        .timeout(Duration::from_secs(1))
        .build()
        .expect("parses");
    let err = wrong
        .claim(&k, LeaseToken::random(), minute())
        .await
        .expect_err("wrong password");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable);
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("wr0ng-pw"), "{text}");
        assert!(!text.contains("s3cret-pw"), "{text}");
    }
    // And it keeps failing cleanly (no stuck or panicking connection).
    assert!(wrong.claim(&k, LeaseToken::random(), minute()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out() {
    // Connections are accepted by the kernel but nothing ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    let s = RedisStore::builder(&format!("redis://127.0.0.1:{port}/"))
        .timeout(Duration::from_millis(300))
        .build()
        .expect("store");

    let started = Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim(&key("silent"), LeaseToken::random(), minute()).await })
        })
        .collect();
    for task in tasks {
        let err = task.await.expect("task").expect_err("no answer");
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert!(s.ping().await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}
