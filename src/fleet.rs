//! A fleet of receivers on one Redis (feature `redis`): the connection they
//! share, and the checks a Redis should pass before it holds their state.
//!
//! One [`RedisConnection`] serves every shared piece of a receiver:
//!
//! | piece | type | what lives in Redis |
//! |---|---|---|
//! | dedupe keys | [`RedisStore::on`](crate::dedupe::RedisStore::on) | one string per delivery |
//! | per-client quotas and the failed-authentication lockout | [`RateLimiterBuilder::shared`](crate::rate_limit::RateLimiterBuilder::shared) | one GCRA timestamp per client and quota |
//! | the fast-acknowledgement queue | [`RedisQueue`](crate::queue::RedisQueue) | a stream, a consumer group, a delay set and a dead-letter stream |
//!
//! # Connecting
//!
//! `redis://`, `rediss://` (TLS, with rustls: the platform's roots, or the
//! CA given to [`RedisConnectionBuilder::ca_pem`]), `redis+unix://`; a
//! user and password in the URL authenticate with `AUTH` (ACL users
//! included). Building parses the URL and reads the CA; nothing connects
//! until first use, and the connection comes back by itself after Redis
//! restarts. [`RedisConnection::check`] connects at start-up and reports
//! what would make Redis lose state ([`ServerReport::warnings`]); a TLS
//! certificate that does not verify is an error there
//! ([`CheckError::Tls`]), so a receiver can refuse to start.
//!
//! # Topologies
//!
//! A single Redis (or Valkey) node, with or without replicas behind a
//! stable address (a managed service's primary endpoint, Sentinel behind a
//! proxy). Every script touches keys of one hash slot (one client's quota,
//! one delivery's dedupe key, the queue's keys under one `{tag}`), so the
//! key layout is ready for Redis Cluster, but this crate connects to one
//! node: **Cluster's redirections (`MOVED`) and Sentinel's failover are not
//! followed**. Redis 6.2 or later (`XAUTOCLAIM`); `WAITAOF` needs 7.2.
//! The tests and proofs run against the `redis-server` Debian 12 packages
//! (7.0); Valkey speaks the same commands but is not packaged there, so it
//! is not tested.
//!
//! # Secrets
//!
//! The URL may hold a password. No `Debug`, error or log line of this
//! module contains it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, RedisError, RedisResult, ServerErrorKind};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::dedupe::StoreError;
use crate::ConfigError;

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
const UNREACHABLE: &str = "Redis is unreachable";

/// A connection to the Redis that a fleet of receivers shares. Cheap to
/// clone; clones share one multiplexed connection, created on first use.
/// See the [module docs](self).
///
/// ```no_run
/// use webhook_guard::fleet::RedisConnection;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisConnection::builder("rediss://app:password@redis.internal:6380/0")
///     .ca_pem(std::fs::read("/etc/ssl/redis-ca.pem")?)
///     .build()?;
/// let report = redis.check().await?; // a bad certificate fails here
/// for warning in report.warnings() {
///     eprintln!("warning: {warning}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisConnection {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    timeout: Duration,
    retry_after: Duration,
    slot: Mutex<Slot>,
    /// The password in the URL, to redact from error text.
    password: Option<Zeroizing<String>>,
}

/// The connection, created on first use.
#[derive(Default)]
struct Slot {
    /// The manager and its generation, once a first connection succeeded.
    manager: Option<(u64, ConnectionManager)>,
    next_generation: u64,
    /// When the last attempt to create the manager failed.
    failed_at: Option<Instant>,
}

/// Builder for [`RedisConnection`], from [`RedisConnection::builder`].
#[must_use]
pub struct RedisConnectionBuilder {
    url: Zeroizing<String>,
    ca_pem: Option<Vec<u8>>,
    timeout: Duration,
    retry_after: Duration,
}

impl RedisConnection {
    /// Starts configuring a connection to the server at `url`, e.g.
    /// `redis://127.0.0.1:6379/0`, `rediss://user:password@host:6380/0` or
    /// `redis+unix:///run/redis.sock`.
    pub fn builder(url: &str) -> RedisConnectionBuilder {
        RedisConnectionBuilder {
            url: Zeroizing::new(url.to_owned()),
            ca_pem: None,
            timeout: DEFAULT_TIMEOUT,
            retry_after: DEFAULT_RETRY_AFTER,
        }
    }

    /// The longest one operation may take, connecting included.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The `Retry-After` suggested while Redis is unreachable.
    pub fn retry_after(&self) -> Duration {
        self.inner.retry_after
    }

    /// Connects (if not yet connected) and sends `PING`, within the
    /// timeout.
    ///
    /// # Errors
    ///
    /// An [`Unavailable`](crate::dedupe::StoreErrorKind::Unavailable)
    /// [`StoreError`] if Redis cannot be reached or does not answer in time.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await })
            .await
            .map(drop)
    }

    /// Connects and reads `INFO` (a start-up check): the server's version,
    /// whether append-only persistence is on, its `maxmemory-policy`. Uses
    /// only `INFO`, which managed services allow where they restrict
    /// `CONFIG`.
    ///
    /// # Errors
    ///
    /// [`CheckError::Tls`] when the server's certificate does not verify
    /// (or TLS cannot be set up), [`CheckError::Auth`] when the server
    /// refuses the credentials, [`CheckError::Unreachable`] otherwise.
    pub async fn check(&self) -> Result<ServerReport, CheckError> {
        let attempt = async {
            let mut conn = self.connect_once().await?;
            redis::cmd("INFO").query_async::<String>(&mut conn).await
        };
        let info = match tokio::time::timeout(self.inner.timeout.max(Duration::from_secs(2)), attempt).await {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => return Err(self.classify(&e)),
            Err(_) => return Err(CheckError::Unreachable("no answer in time".to_owned())),
        };
        Ok(ServerReport::parse(&info))
    }

    /// One plain connection (no manager): a start-up check sees the real
    /// cause of a failure instead of a retry loop's.
    async fn connect_once(&self) -> RedisResult<redis::aio::MultiplexedConnection> {
        self.inner.client.get_multiplexed_async_connection().await
    }

    /// Sorts a failed connection into what the operator must fix.
    fn classify(&self, e: &RedisError) -> CheckError {
        let text = self.redact(e.to_string());
        let lower = text.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            CheckError::Tls(text)
        } else if matches!(e.kind(), ErrorKind::AuthenticationFailed)
            || lower.contains("wrongpass")
            || lower.contains("noauth")
        {
            CheckError::Auth(text)
        } else {
            CheckError::Unreachable(text)
        }
    }

    /// Runs `op` on the connection (connecting first if needed), all within
    /// the timeout. An operation that fails because the connection broke
    /// (Redis restarted since the last call) is tried once more: the
    /// manager reconnects on that second call, so the first request after
    /// an outage is not refused. Callers make their operations safe to
    /// repeat.
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run_within(self.inner.timeout, op).await
    }

    /// [`run`](Self::run) with another time limit (a `WAITAOF` may take
    /// longer than a plain command).
    pub(crate) async fn run_within<T, F, Fut>(&self, limit: Duration, op: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let started = Instant::now();
        let attempt = async {
            let mut retried = false;
            loop {
                let (generation, conn) = self.manager(started).await?;
                match op(conn).await {
                    Ok(value) => return Ok(value),
                    Err(e) => {
                        if needs_new_manager(&e) {
                            self.forget_manager(generation).await;
                        }
                        let broken =
                            e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal();
                        if broken && !retried {
                            retried = true;
                            continue;
                        }
                        return Err(self.unavailable(&e));
                    }
                }
            }
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::unavailable(UNREACHABLE, self.inner.retry_after)
                .with_source(format!("no answer within the {} ms timeout", limit.as_millis()))),
        }
    }

    /// The connection manager, created on first use. The lock is held only
    /// while the manager is created, so concurrent first calls share one
    /// connection attempt; a call that waited for an attempt that failed
    /// fails too, without trying again.
    async fn manager(&self, started: Instant) -> Result<(u64, ConnectionManager), StoreError> {
        let mut slot = self.inner.slot.lock().await;
        if let Some((generation, manager)) = &slot.manager {
            return Ok((*generation, manager.clone()));
        }
        if slot.failed_at.is_some_and(|at| at >= started) {
            return Err(StoreError::unavailable(UNREACHABLE, self.inner.retry_after)
                .with_source("connecting to Redis failed"));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.inner.timeout))
            .set_response_timeout(Some(self.inner.timeout))
            // Reconnection is retried once in the background; after that
            // each failing operation starts a new attempt, so service
            // resumes on its own however long Redis was away.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(self.inner.timeout);
        match ConnectionManager::new_with_config(self.inner.client.clone(), config).await {
            Ok(manager) => {
                let generation = slot.next_generation;
                slot.next_generation = slot.next_generation.wrapping_add(1);
                slot.manager = Some((generation, manager.clone()));
                slot.failed_at = None;
                Ok((generation, manager))
            }
            Err(e) => {
                slot.failed_at = Some(Instant::now());
                Err(self.unavailable(&e))
            }
        }
    }

    /// Drops the manager of `generation` (if it is still the current one),
    /// so that the next operation connects afresh.
    async fn forget_manager(&self, generation: u64) {
        let mut slot = self.inner.slot.lock().await;
        if slot.manager.as_ref().is_some_and(|(g, _)| *g == generation) {
            slot.manager = None;
        }
    }

    /// `text` with the URL's password (if any) replaced.
    fn redact(&self, mut text: String) -> String {
        if let Some(password) = self.inner.password.as_deref().filter(|p| !p.is_empty()) {
            if text.contains(password) {
                text = text.replace(password, "<redacted>");
            }
        }
        text
    }

    /// The error for a failed Redis call, with the password redacted.
    pub(crate) fn unavailable(&self, e: &RedisError) -> StoreError {
        StoreError::unavailable(UNREACHABLE, self.inner.retry_after).with_source(self.redact(e.to_string()))
    }
}

/// Whether a failed call may have left the manager unable to recover by
/// itself. The manager reconnects after I/O errors and dropped connections,
/// but a reconnection that fails for another reason (a password or
/// database the server refuses after a restart) would stick; such a
/// manager is replaced by a fresh one on the next call.
fn needs_new_manager(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed
            | ErrorKind::InvalidClientConfig
            | ErrorKind::Client
            | ErrorKind::RESP3NotSupported
            | ErrorKind::Server(ServerErrorKind::ResponseError)
    )
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL or the client: they may hold a password.
        f.debug_struct("RedisConnection")
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConnectionBuilder {
    /// The CA certificate(s), PEM, that signed the server's certificate
    /// (`rediss://` only); default: the platform's roots.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// The longest an operation may take, connecting included, before it
    /// fails as unavailable (503). Default 500 ms. Also the connection and
    /// response timeouts of the underlying connection.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `Retry-After` suggested to the sender while Redis is
    /// unreachable. Default 5 s.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Parses the URL (and the CA), without connecting.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStore`] if the URL does not parse, the CA is
    /// not PEM, a CA is given for a non-TLS URL, or the timeout is zero.
    /// The reason never quotes the URL.
    pub fn build(self) -> Result<RedisConnection, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidStore {
            reason: reason.to_owned(),
        };
        if self.timeout.is_zero() {
            return Err(invalid("the Redis timeout must be greater than zero"));
        }
        let tls = matches!(
            self.url
                .split_once("://")
                .map(|(s, _)| s.to_ascii_lowercase())
                .as_deref(),
            Some("rediss" | "valkeys")
        );
        let client = match self.ca_pem {
            Some(pem) => {
                if !tls {
                    return Err(invalid(
                        "a CA certificate was given, but the Redis URL is not rediss:// (TLS)",
                    ));
                }
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(invalid("the Redis CA file holds no PEM certificate"));
                }
                Client::build_with_tls(
                    self.url.as_str(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            None => Client::open(self.url.as_str()),
        }
        .map_err(|e| {
            // A CA that does not parse is reported as such; a URL problem
            // never quotes the URL.
            if e.to_string().to_ascii_lowercase().contains("cert") {
                invalid("the Redis CA file does not parse as PEM certificates")
            } else {
                invalid(url_problem(&self.url))
            }
        })?;
        let password = client
            .get_connection_info()
            .redis_settings()
            .password()
            .map(|p| Zeroizing::new(p.to_owned()));
        Ok(RedisConnection {
            inner: Arc::new(Inner {
                client,
                timeout: self.timeout,
                retry_after: self.retry_after,
                slot: Mutex::new(Slot::default()),
                password,
            }),
        })
    }
}

impl fmt::Debug for RedisConnectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("RedisConnectionBuilder")
            .field("ca_pem", &self.ca_pem.is_some())
            .field("timeout", &self.timeout)
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

/// Why `url` did not parse, without quoting any of it.
pub(crate) fn url_problem(url: &str) -> &'static str {
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("redis" | "rediss" | "valkey" | "valkeys" | "redis+unix" | "valkey+unix" | "unix") => {
            "the Redis URL is not valid (expected redis[s]://[[user]:password@]host[:port][/db] \
             or redis+unix:///path)"
        }
        _ => {
            "not a Redis URL (expected redis[s]://[[user]:password@]host[:port][/db] \
              or redis+unix:///path)"
        }
    }
}

/// Why [`RedisConnection::check`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckError {
    /// TLS could not be set up: most often the server's certificate does
    /// not verify against the configured CA (or the platform's roots).
    Tls(String),
    /// The server refused the user or password.
    Auth(String),
    /// Redis could not be reached, or did not answer in time.
    Unreachable(String),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tls(cause) => write!(f, "the Redis server's TLS certificate does not verify: {cause}"),
            Self::Auth(cause) => write!(f, "Redis refused the credentials: {cause}"),
            Self::Unreachable(cause) => write!(f, "Redis is unreachable: {cause}"),
        }
    }
}

impl std::error::Error for CheckError {}

/// What [`RedisConnection::check`] read from `INFO`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerReport {
    /// `redis_version` (Valkey reports a Redis-compatible one too).
    pub version: Option<String>,
    /// `valkey_version`, on Valkey.
    pub valkey_version: Option<String>,
    /// `aof_enabled`: append-only persistence on.
    pub append_only: Option<bool>,
    /// `maxmemory_policy`.
    pub maxmemory_policy: Option<String>,
}

impl ServerReport {
    /// Reads the fields from `INFO`'s text.
    pub fn parse(info: &str) -> Self {
        let mut report = Self::default();
        for line in info.lines() {
            let Some((name, value)) = line.trim().split_once(':') else {
                continue;
            };
            match name {
                "redis_version" => report.version = Some(value.to_owned()),
                "valkey_version" => report.valkey_version = Some(value.to_owned()),
                "aof_enabled" => report.append_only = Some(value == "1"),
                "maxmemory_policy" => report.maxmemory_policy = Some(value.to_owned()),
                _ => {}
            }
        }
        report
    }

    /// Whether the server has `WAITAOF` (Redis and Valkey 7.2 or later).
    pub fn has_waitaof(&self) -> bool {
        self.version
            .as_deref()
            .and_then(parse_version)
            .is_some_and(|v| v >= (7, 2))
    }

    /// What would make this Redis lose the fleet's state, one sentence
    /// each: append-only persistence off (a restart forgets dedupe keys
    /// and loses queued deliveries), or a `maxmemory-policy` that may evict
    /// keys with a TTL (dedupe keys have one: an evicted key is a replay
    /// let through).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.append_only == Some(false) {
            warnings.push(
                "Redis append-only persistence is off (appendonly no): a Redis restart forgets \
                 every dedupe key and loses queued deliveries; set appendonly yes \
                 (appendfsync always, or everysec with WAITAOF)"
                    .to_owned(),
            );
        }
        if let Some(policy) = self.maxmemory_policy.as_deref() {
            if policy != "noeviction" && policy != "volatile-ttl" {
                warnings.push(format!(
                    "Redis maxmemory-policy is {policy}: under memory pressure it may evict dedupe \
                     keys (a replay let through) or queued deliveries; use noeviction"
                ));
            }
        }
        warnings
    }
}

/// `"7.2.4"` → `(7, 2)`.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_info_and_warn() {
        let info = "# Server\r\nredis_version:7.0.15\r\n# Persistence\r\naof_enabled:0\r\n\
                    # Memory\r\nmaxmemory_policy:allkeys-lru\r\n";
        let report = ServerReport::parse(info);
        assert_eq!(report.version.as_deref(), Some("7.0.15"));
        assert!(!report.has_waitaof());
        let warnings = report.warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("append-only"));
        assert!(warnings[1].contains("allkeys-lru"));
        let good = ServerReport::parse("redis_version:7.2.4\naof_enabled:1\nmaxmemory_policy:noeviction\n");
        assert!(good.has_waitaof());
        assert!(good.warnings().is_empty());
    }

    #[test]
    fn bad_urls_and_cas_never_quote_the_url() {
        for (url, ca) in [
            ("http://:hunter2@127.0.0.1:1/", None),
            ("redis://:hunter2@127.0.0.1:1/notadb", None),
            (
                "redis://:hunter2@127.0.0.1:1/",
                Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            ),
            ("rediss://:hunter2@127.0.0.1:1/", Some(b"not pem".to_vec())),
            ("hunter2", None),
        ] {
            let mut builder = RedisConnection::builder(url);
            if let Some(ca) = ca {
                builder = builder.ca_pem(ca);
            }
            match builder.build() {
                Err(ConfigError::InvalidStore { reason }) => assert!(!reason.contains("hunter2"), "{reason}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let built = RedisConnection::builder("rediss://u:hunter2@127.0.0.1:1/").build();
        let shown = format!("{built:?}");
        assert!(built.is_ok(), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!format!("{:?}", RedisConnection::builder("redis://:hunter2@h/")).contains("hunter2"));
    }
}
