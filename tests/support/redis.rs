//! Redis for the dedupe tests.
//!
//! - [`TestRedis`]: a Redis URL and a key prefix unique to one test. When
//!   `WEBHOOK_GUARD_REDIS_URL` is set (`scripts/test.sh`, CI) it is that
//!   shared server; otherwise the test gets a [`RedisServer`] of its own.
//! - [`RedisServer`]: a throwaway `redis-server` on a free loopback port,
//!   without persistence, that can be killed and restarted on the same port.
//!   Tests that kill Redis always use one of these, never the shared server.
//!
//! These tests fail, never skip, when Redis is unavailable: a missing
//! `redis-server` binary is a panic that says how to get one.
//!
//! Included by a test binary with
//! `#[path = "support/redis.rs"] mod redis_support;`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The shared server's URL, when one is provided.
pub(crate) const URL_ENV: &str = "WEBHOOK_GUARD_REDIS_URL";
/// The `redis-server` binary to run; default: `redis-server` on `PATH`.
pub(crate) const BINARY_ENV: &str = "REDIS_SERVER";

/// How long a fresh server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a killed server may take to be gone.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A key prefix no other test (in this process or any other) uses.
pub(crate) fn unique_prefix(test: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("webhook-guard-test:{}:{nanos:x}:{n}:{test}:", std::process::id())
}

/// A Redis for one test: the shared server with a unique key prefix, or a
/// server of its own (stopped when this is dropped).
pub(crate) struct TestRedis {
    url: String,
    prefix: String,
    server: Option<RedisServer>,
}

impl TestRedis {
    /// The shared server if `WEBHOOK_GUARD_REDIS_URL` is set, else a new
    /// [`RedisServer`]. `test` goes into the key prefix, for debugging.
    pub(crate) fn new(test: &str) -> Self {
        let prefix = unique_prefix(test);
        match std::env::var(URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Self {
                url,
                prefix,
                server: None,
            },
            _ => {
                let server = RedisServer::start();
                Self {
                    url: server.url(),
                    prefix,
                    server: Some(server),
                }
            }
        }
    }

    /// The server's URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// This test's key prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether this is the shared server from `WEBHOOK_GUARD_REDIS_URL`.
    pub(crate) fn is_shared(&self) -> bool {
        self.server.is_none()
    }
}

/// A `redis-server` child on `127.0.0.1:<port>`, without persistence
/// (`--save "" --appendonly no`). Killed (SIGKILL) on drop.
///
/// The server runs under a small `sh` watchdog that holds the read end of
/// a pipe whose write end only this process has: if the test process dies
/// without running destructors, the pipe closes and the watchdog kills the
/// server, so no `redis-server` outlives the tests.
pub(crate) struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    running: Option<Running>,
}

struct Running {
    /// The watchdog shell; `redis-server` is its child.
    shell: Child,
    /// Closing it makes the watchdog kill the server.
    lifeline: Option<ChildStdin>,
}

/// The watchdog: starts `$0 "$@"` (the server), kills it with SIGKILL as
/// soon as its standard input reaches end of file, and exits with the
/// server. Standard input is passed to the watcher explicitly: a
/// non-interactive shell gives background jobs `/dev/null` otherwise.
const WATCHDOG: &str = r#"
exec 3<&0
"$0" "$@" </dev/null &
server=$!
{ cat >/dev/null; kill -9 "$server" 2>/dev/null; } <&3 &
watcher=$!
exec 3<&-
wait "$server"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
"#;

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers
    /// `PING`.
    ///
    /// # Panics
    ///
    /// If `redis-server` (or `$REDIS_SERVER`) cannot be run, or no server
    /// could be started.
    pub(crate) fn start() -> Self {
        let binary = binary();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("webhook-guard-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut last = String::new();
        for _ in 0..10 {
            let port = free_port();
            let mut server = Self {
                binary: binary.clone(),
                port,
                dir: dir.clone(),
                running: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                // Most likely the port was taken in between: try another.
                Err(e) => last = e,
            }
        }
        panic!("could not start redis-server on a loopback port: {last}");
    }

    /// `redis://127.0.0.1:<port>/`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server was started and not killed (it may still have
    /// died by itself).
    pub(crate) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Kills the server (SIGKILL, as a crash would) and waits until it is
    /// gone. Does nothing if it is not running.
    pub(crate) fn kill(&mut self) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        // Closing the pipe makes the watchdog kill the server and exit.
        drop(running.lifeline.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match running.shell.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = running.shell.kill();
                    let _ = running.shell.wait();
                    panic!(
                        "redis-server on port {} did not stop within {STOP_TIMEOUT:?}",
                        self.port
                    );
                }
            }
        }
        // The server is reaped by the watchdog before it exits; check that
        // the port no longer answers anyway.
        assert!(
            ping(self.port).is_err(),
            "redis-server on port {} still answers after being killed",
            self.port
        );
    }

    /// Starts the server again on the same port (empty: nothing persists)
    /// and waits until it answers `PING`. Kills it first if it runs.
    ///
    /// # Panics
    ///
    /// If the server does not come back on its port.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        // The port was just freed by the killed server; retry briefly in
        // case the kernel is slow to release it.
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("could not restart redis-server on port {}: {last}", self.port);
    }

    /// Spawns the server on `self.port` and waits for `PING`; on failure
    /// the child is gone and the error carries its log.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.join(format!("redis-{}.log", self.port));
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(&self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run sh: {e}"))?;
        let lifeline = shell.stdin.take();
        let mut running = Running { shell, lifeline };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = running.shell.try_wait() {
                return Err(format!(
                    "redis-server on port {} exited ({status}); its log:\n{}",
                    self.port,
                    read_log(&log)
                ));
            }
            if ping(self.port).is_ok() {
                self.running = Some(running);
                return Ok(());
            }
            if Instant::now() > deadline {
                drop(running.lifeline.take());
                let _ = running.shell.kill();
                let _ = running.shell.wait();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {START_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    read_log(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            drop(running.lifeline.take());
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if !matches!(running.shell.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = running.shell.kill();
            let _ = running.shell.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("running", &self.running.is_some())
            .finish()
    }
}

/// The `redis-server` binary, checked to run.
fn binary() -> PathBuf {
    let binary = std::env::var_os(BINARY_ENV)
        .filter(|b| !b.is_empty())
        .map_or_else(|| PathBuf::from("redis-server"), PathBuf::from);
    match Command::new(&binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => binary,
        Ok(out) => panic!(
            "`{} --version` failed ({}): {}",
            binary.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "cannot run `{}` ({e}). The Redis dedupe tests need a Redis server: install one \
             (`apt-get install redis-server`), set {BINARY_ENV} to the redis-server binary, or \
             set {URL_ENV} to a running server (scripts/test.sh does this). They do not skip.",
            binary.display()
        ),
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// Sends `PING` to `127.0.0.1:port` and expects `+PONG`.
pub(crate) fn ping(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_millis(500))))
        .map_err(|e| e.to_string())?;
    stream.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut answer = [0u8; 64];
    let mut read = 0;
    while read < 7 {
        match stream.read(&mut answer[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    if answer[..read].starts_with(b"+PONG") {
        Ok(())
    } else {
        Err(format!(
            "unexpected answer to PING: {:?}",
            String::from_utf8_lossy(&answer[..read])
        ))
    }
}

fn read_log(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()))
}
