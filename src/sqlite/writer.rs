//! The writer thread: the only owner of the connection. Schema, batches
//! (one transaction; a savepoint only around an operation that writes
//! twice), and every operation's SQL, each statement prepared once and
//! kept in the connection's statement cache.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Params, Row};
use tokio::sync::oneshot;

use super::RETRY_AFTER;
use crate::clock::Clock;
use crate::dedupe::{Claim, DedupeKey, LeaseToken, Retention, StoreError};
use crate::queue::{ClaimSettlement, DeadLetter, Delivery, Job, JobId, Taken};
use crate::ConfigError;

/// The most operations in one transaction.
const MAX_BATCH: usize = 256;
/// The most expired keys one sweep deletes before letting requests in.
pub(super) const SWEEP_CHUNK: usize = 10_000;
/// Prepared statements kept by the connection (every statement this
/// module runs more than once fits).
const STATEMENT_CACHE: usize = 64;
/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const HELD: i64 = 0;
const DONE: i64 = 1;

const READY: i64 = 0;
const RUNNING: i64 = 1;
const DEAD: i64 = 2;

const SCHEMA_V1: &str = "
CREATE TABLE dedupe_keys (
    key BLOB PRIMARY KEY NOT NULL,          -- a DedupeKey, 32 bytes
    state INTEGER NOT NULL,                 -- 0 held, 1 done
    token BLOB,                             -- the holder's LeaseToken, 16 bytes
    until_ms INTEGER NOT NULL,              -- held: lease end; done: idempotency end
    protected_until_ms INTEGER NOT NULL     -- never evicted before (replay window end)
) WITHOUT ROWID;
CREATE INDEX dedupe_keys_until ON dedupe_keys (until_ms);
CREATE INDEX dedupe_keys_protected ON dedupe_keys (protected_until_ms);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state INTEGER NOT NULL,                 -- 0 ready, 1 running, 2 dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at_ms INTEGER NOT NULL,
    last_error TEXT,
    received_at INTEGER NOT NULL,           -- Unix seconds
    buried_at INTEGER,                      -- Unix seconds
    delivery BLOB NOT NULL                  -- Delivery::encode
);
CREATE INDEX jobs_take ON jobs (state, next_at_ms, id);

CREATE TABLE counters (name TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counters (name, n) VALUES ('keys', 0), ('live_jobs', 0);
CREATE TRIGGER keys_insert AFTER INSERT ON dedupe_keys
    BEGIN UPDATE counters SET n = n + 1 WHERE name = 'keys'; END;
CREATE TRIGGER keys_delete AFTER DELETE ON dedupe_keys
    BEGIN UPDATE counters SET n = n - 1 WHERE name = 'keys'; END;
CREATE TRIGGER jobs_insert AFTER INSERT ON jobs WHEN NEW.state <> 2
    BEGIN UPDATE counters SET n = n + 1 WHERE name = 'live_jobs'; END;
CREATE TRIGGER jobs_delete AFTER DELETE ON jobs WHEN OLD.state <> 2
    BEGIN UPDATE counters SET n = n - 1 WHERE name = 'live_jobs'; END;
CREATE TRIGGER jobs_bury AFTER UPDATE OF state ON jobs WHEN OLD.state <> 2 AND NEW.state = 2
    BEGIN UPDATE counters SET n = n - 1 WHERE name = 'live_jobs'; END;
CREATE TRIGGER jobs_unbury AFTER UPDATE OF state ON jobs WHEN OLD.state = 2 AND NEW.state <> 2
    BEGIN UPDATE counters SET n = n + 1 WHERE name = 'live_jobs'; END;

CREATE TABLE meta (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
";

pub(super) struct Config {
    pub(super) max_keys: usize,
    pub(super) queue_capacity: usize,
    pub(super) sweep_interval: Duration,
    pub(super) busy_timeout: Duration,
    pub(super) max_pages: Option<u64>,
    pub(super) clock: Arc<dyn Clock>,
    /// Whether this state owns the file (takes the owner lock).
    pub(super) owner: bool,
}

pub(super) struct Request {
    pub(super) op: Op,
    /// `None` for the thread's own sweeps.
    pub(super) reply: Option<oneshot::Sender<Result<Reply, StoreError>>>,
}

pub(super) enum Op {
    Claim {
        key: DedupeKey,
        token: LeaseToken,
        times: Retention,
    },
    Complete(ClaimSettlement),
    Release {
        key: DedupeKey,
        token: LeaseToken,
    },
    Sweep,
    KeyCount,
    Enqueue {
        blob: Vec<u8>,
        received_at: i64,
        claim: Option<ClaimSettlement>,
    },
    Take,
    Done(JobId),
    /// `Done`, then `Take`, in one trip.
    DoneAndTake(JobId),
    Retry {
        id: JobId,
        after: Duration,
        error: String,
    },
    Bury {
        id: JobId,
        error: String,
    },
    DeadLetters(usize),
    RequeueDead(Option<Vec<JobId>>),
    Recover,
    Len,
}

impl Op {
    /// Whether losing this operation's commit to a power loss is harmless
    /// (see the module docs), so a batch of only such operations may
    /// commit without an fsync of its own.
    fn is_light(&self) -> bool {
        matches!(
            self,
            Self::Claim { .. }
                | Self::Release { .. }
                | Self::Take
                | Self::Done(_)
                | Self::DoneAndTake(_)
                | Self::Sweep
                | Self::KeyCount
                | Self::DeadLetters(_)
                | Self::Len
        )
    }
}

pub(super) enum Reply {
    Claim(Claim),
    Unit,
    Id(JobId),
    Taken(Box<Taken>),
    Dead(Vec<DeadLetter>),
    Count(usize),
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> ConfigError {
    ConfigError::InvalidStore {
        reason: format!("SQLite file {}: {what}", path.display()),
    }
}

/// Takes the owner lock: an exclusive advisory lock on `<path>.owner`,
/// held for the state's life and released by the OS if the process dies.
/// Waits up to the busy timeout for another owner to go.
pub(super) fn owner_lock(path: &Path, config: &Config) -> Result<std::fs::File, ConfigError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".owner");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            invalid(
                path,
                format!("cannot open its owner lock file: {e} (is its directory writable?)"),
            )
        })?;
    let start = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < config.busy_timeout => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(invalid(
                    path,
                    "database is locked (another process, or another SqliteState, has it open)",
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(invalid(path, format!("cannot lock its owner lock file: {e}")))
            }
        }
    }
}

/// Opens the file, sets it up and migrates the schema.
pub(super) fn open(path: &Path, config: &Config) -> Result<Connection, ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(invalid(path, "the path is empty"));
    }
    if path.is_dir() {
        return Err(invalid(path, "the path is a directory"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(invalid(path, format!("{} is not a directory", dir.display()))),
        Err(e) => return Err(invalid(path, format!("directory {}: {e}", dir.display()))),
    }
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        invalid(
            path,
            format!("cannot open or create it (is its directory writable?): {e}"),
        )
    })?;
    conn.busy_timeout(config.busy_timeout)
        .map_err(|e| invalid(path, e))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Normal locking: an administrative connection (dead letters) may
    // share the file with its owner; ownership is the separate owner lock.
    conn.execute_batch(
        "PRAGMA page_size = 4096;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA journal_size_limit = 67108864;",
    )
    .map_err(|e| explain(path, e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| explain(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(invalid(
            path,
            format!("cannot use WAL mode (journal mode {mode})"),
        ));
    }
    if let Some(pages) = config.max_pages {
        // Answers the limit it set; SQLite keeps at least the current size.
        let _: i64 = conn
            .query_row(
                &format!(
                    "PRAGMA max_page_count = {}",
                    pages.clamp(1, u64::from(u32::MAX - 1))
                ),
                [],
                |r| r.get(0),
            )
            .map_err(|e| explain(path, e))?;
    }
    migrate(&conn).map_err(|e| explain(path, e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| explain(path, e))?;
    if version != SCHEMA_VERSION {
        return Err(invalid(
            path,
            format!("schema version {version}, this version of webhook-guard reads {SCHEMA_VERSION}"),
        ));
    }
    // A write, so a file that cannot be written fails now rather than at
    // the first request.
    conn.execute(
        "INSERT OR REPLACE INTO meta (name, value) VALUES ('opened_at_ms', ?1)",
        [config.clock.now_unix_millis()],
    )
    .map_err(|e| explain(path, e))?;
    Ok(conn)
}

fn explain(path: &Path, e: rusqlite::Error) -> ConfigError {
    let hint = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            " (another process, or another SqliteState, has it open)"
        }
        Some(rusqlite::ErrorCode::NotADatabase) => " (not a SQLite file)",
        Some(
            rusqlite::ErrorCode::ReadOnly
            | rusqlite::ErrorCode::CannotOpen
            | rusqlite::ErrorCode::PermissionDenied,
        ) => " (is the file and its directory writable?)",
        Some(rusqlite::ErrorCode::DiskFull) => " (the disk is full)",
        _ => "",
    };
    invalid(path, format!("{e}{hint}"))
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA_V1} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
    }
    // Later versions: `if version == 1 { … PRAGMA user_version = 2 }`.
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SyncMode {
    Full,
    Normal,
}

struct Writer {
    conn: Connection,
    config: Config,
    sync: SyncMode,
}

/// The thread's loop: until every sender is gone, take what is waiting,
/// run it as one transaction, answer; sweep when it is time.
pub(super) fn run(conn: Connection, requests: Receiver<Request>, config: Config) {
    let interval = config.sweep_interval;
    let mut writer = Writer {
        conn,
        config,
        sync: SyncMode::Full,
    };
    let mut next_sweep = Instant::now() + interval;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let wait = next_sweep.saturating_duration_since(Instant::now());
        match requests.recv_timeout(wait) {
            Ok(first) => batch.push(first),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if Instant::now() >= next_sweep && batch.len() < MAX_BATCH {
            batch.push(Request {
                op: Op::Sweep,
                reply: None,
            });
            next_sweep = Instant::now() + interval;
        }
        if !batch.is_empty() {
            writer.run_batch(&mut batch);
        }
    }
    let _ = writer.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::unavailable("the SQLite store failed", RETRY_AFTER).with_source(e)
}

/// A key's `state`, `token` and `until_ms`.
type KeyRow = (i64, Option<Vec<u8>>, i64);

type Answer = (
    Option<oneshot::Sender<Result<Reply, StoreError>>>,
    Result<Reply, StoreError>,
);

impl Writer {
    fn now(&self) -> i64 {
        self.config.clock.now_unix_millis()
    }

    /// Runs `sql` (one statement) from the statement cache.
    fn exec(&self, sql: &str, params: impl Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(params)
    }

    /// The first row `sql` (one statement, from the statement cache)
    /// answers, if any.
    fn row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_row(params, f).optional())
            .map_err(db)
    }

    fn set_sync(&mut self, sync: SyncMode) -> rusqlite::Result<()> {
        if self.sync != sync {
            // Not from the statement cache: SQLite applies this pragma
            // when it prepares the statement, not when it runs it.
            self.conn.execute_batch(match sync {
                SyncMode::Full => "PRAGMA synchronous = FULL",
                SyncMode::Normal => "PRAGMA synchronous = NORMAL",
            })?;
            self.sync = sync;
        }
        Ok(())
    }

    /// Runs `batch` as one transaction and answers every request once the
    /// commit is known.
    fn run_batch(&mut self, batch: &mut Vec<Request>) {
        let light = batch.iter().all(|r| r.op.is_light());
        let begun = self
            .set_sync(if light { SyncMode::Normal } else { SyncMode::Full })
            .and_then(|()| self.exec("BEGIN IMMEDIATE", []));
        if let Err(e) = begun {
            let e = db(e);
            return answer_all(batch.drain(..).map(|r| (r.reply, Err(clone_error(&e)))));
        }
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
        let mut failed: Option<StoreError> = None;
        for request in batch.drain(..) {
            if failed.is_some() {
                answers.push((request.reply, Err(stopped_batch())));
                continue;
            }
            let result = self.run_op(request.op);
            if let Err(e) = &result {
                if self.conn.is_autocommit() {
                    // SQLite rolled the whole transaction back (disk full,
                    // I/O error): nothing of this batch is stored.
                    failed = Some(clone_error(e));
                }
            }
            answers.push((request.reply, result));
        }
        let outcome = match failed {
            Some(e) => Err(e),
            None => self.exec("COMMIT", []).map(|_| ()).map_err(db),
        };
        match outcome {
            Ok(()) => answer_all(answers.into_iter()),
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                tracing::error!(error = %e, "SQLite batch not committed; every operation in it fails");
                answer_all(
                    answers
                        .into_iter()
                        .map(|(reply, _)| (reply, Err(clone_error(&e)))),
                );
            }
        }
    }

    /// Runs one operation so that, if it fails, none of it is stored (and
    /// the rest of the batch is). An operation that writes once needs
    /// nothing more: SQLite undoes a failed statement (triggers included).
    /// Claims, settlements and takes may first evict expired keys or bury
    /// an undecodable job, which stand on their own; only an operation
    /// whose second write could fail after its first runs under a
    /// savepoint.
    fn run_op(&mut self, op: Op) -> Result<Reply, StoreError> {
        let writes_twice = match &op {
            Op::Enqueue { claim, .. } => claim.is_some(),
            Op::RequeueDead(Some(ids)) => ids.len() > 1,
            _ => false,
        };
        if !writes_twice {
            let result = self.apply(op);
            if result.is_ok() && self.conn.is_autocommit() {
                return Err(stopped_batch());
            }
            return result;
        }
        self.exec("SAVEPOINT op", []).map_err(db)?;
        let result = self.apply(op);
        if self.conn.is_autocommit() {
            return result.and(Err(stopped_batch()));
        }
        let closed = match &result {
            Ok(_) => self.exec("RELEASE op", []),
            Err(_) => self
                .exec("ROLLBACK TO op", [])
                .and_then(|_| self.exec("RELEASE op", [])),
        };
        match closed {
            Ok(_) => result,
            Err(e) => Err(db(e)),
        }
    }

    fn apply(&mut self, op: Op) -> Result<Reply, StoreError> {
        let now = self.now();
        match op {
            Op::Claim { key, token, times } => self.claim(&key, token, times, now).map(Reply::Claim),
            Op::Complete(settle) => self.complete(&settle, now).map(|()| Reply::Unit),
            Op::Release { key, token } => {
                self.exec(
                    "DELETE FROM dedupe_keys WHERE key = ?1 AND state = ?2 AND token = ?3",
                    params![key.as_bytes(), HELD, token_bytes(token)],
                )
                .map_err(db)?;
                Ok(Reply::Unit)
            }
            Op::Sweep => self.sweep(now).map(Reply::Count),
            Op::KeyCount => self.counter("keys").map(Reply::Count),
            Op::Enqueue {
                blob,
                received_at,
                claim,
            } => self.enqueue(&blob, received_at, claim, now).map(Reply::Id),
            Op::Take => self.take(now).map(|t| Reply::Taken(Box::new(t))),
            Op::Done(id) => {
                self.done(id)?;
                Ok(Reply::Unit)
            }
            Op::DoneAndTake(id) => {
                self.done(id)?;
                self.take(now).map(|t| Reply::Taken(Box::new(t)))
            }
            Op::Retry { id, after, error } => {
                self.exec(
                    "UPDATE jobs SET state = ?1, next_at_ms = ?2, last_error = ?3 WHERE id = ?4 AND state = ?5",
                    params![READY, now.saturating_add(ms(after)), error, id.0, RUNNING],
                )
                .map_err(db)?;
                Ok(Reply::Unit)
            }
            Op::Bury { id, error } => {
                self.bury(id, &error, now)?;
                Ok(Reply::Unit)
            }
            Op::DeadLetters(limit) => self.dead_letters(limit).map(Reply::Dead),
            Op::RequeueDead(ids) => self.requeue_dead(ids.as_deref(), now).map(Reply::Count),
            Op::Recover => {
                let n = self
                    .exec(
                        "UPDATE jobs SET state = ?1 WHERE state = ?2",
                        params![READY, RUNNING],
                    )
                    .map_err(db)?;
                Ok(Reply::Count(n))
            }
            Op::Len => self.counter("live_jobs").map(Reply::Count),
        }
    }

    fn done(&self, id: JobId) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM jobs WHERE id = ?1 AND state = ?2",
            params![id.0, RUNNING],
        )
        .map_err(db)?;
        Ok(())
    }

    fn counter(&self, name: &str) -> Result<usize, StoreError> {
        let n: i64 = self
            .row("SELECT n FROM counters WHERE name = ?1", [name], |r| r.get(0))?
            .ok_or_else(|| db(rusqlite::Error::QueryReturnedNoRows))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn key_row(&self, key: &DedupeKey) -> Result<Option<KeyRow>, StoreError> {
        self.row(
            "SELECT state, token, until_ms FROM dedupe_keys WHERE key = ?1",
            [key.as_bytes()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }

    fn put_key(
        &self,
        key: &DedupeKey,
        exists: bool,
        state: i64,
        token: Option<LeaseToken>,
        until: i64,
        protected: i64,
    ) -> Result<(), StoreError> {
        let token = token.map(token_bytes);
        let sql = if exists {
            "UPDATE dedupe_keys SET state = ?2, token = ?3, until_ms = ?4, protected_until_ms = ?5 WHERE key = ?1"
        } else {
            "INSERT INTO dedupe_keys (key, state, token, until_ms, protected_until_ms) VALUES (?1, ?2, ?3, ?4, ?5)"
        };
        self.exec(sql, params![key.as_bytes(), state, token, until, protected])
            .map_err(db)?;
        Ok(())
    }

    fn claim(
        &self,
        key: &DedupeKey,
        token: LeaseToken,
        times: Retention,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let row = self.key_row(key)?;
        match row {
            Some((HELD, _, until)) if until > now => {
                return Ok(Claim::InProgress {
                    retry_after: millis(until - now),
                })
            }
            Some((DONE, _, until)) if until > now => return Ok(Claim::AlreadyProcessed),
            Some(_) => {}
            None => self.make_room(now)?,
        }
        let until = now.saturating_add(ms(times.lease()));
        self.put_key(key, row.is_some(), HELD, Some(token), until, until)?;
        Ok(Claim::Acquired)
    }

    fn complete(&self, settle: &ClaimSettlement, now: i64) -> Result<(), StoreError> {
        let row = self.key_row(&settle.key)?;
        let ours = token_bytes(settle.token);
        match &row {
            Some((HELD, holder, until)) if holder.as_deref() != Some(&ours[..]) && *until > now => {
                return Ok(())
            }
            Some((DONE, _, until)) if *until > now => return Ok(()),
            // Ours, or an expired entry nobody holds: the work was done.
            Some(_) => {}
            None => self.make_room(now)?,
        }
        let times = settle.times;
        self.put_key(
            &settle.key,
            row.is_some(),
            DONE,
            None,
            now.saturating_add(ms(times.idempotency())),
            now.saturating_add(ms(times.replay_window())),
        )
    }

    /// Makes room for one more key: drops dead keys, then keys past their
    /// replay window; fails closed if every key must still be remembered.
    fn make_room(&self, now: i64) -> Result<(), StoreError> {
        let max = i64::try_from(self.config.max_keys).unwrap_or(i64::MAX);
        let count = |w: &Self| -> Result<i64, StoreError> {
            Ok(i64::try_from(w.counter("keys")?).unwrap_or(i64::MAX))
        };
        let n = count(self)?;
        if n < max {
            return Ok(());
        }
        // Dead keys first, a few at a time, so their cost is spread.
        self.exec(
            "DELETE FROM dedupe_keys WHERE key IN \
             (SELECT key FROM dedupe_keys WHERE until_ms <= ?1 ORDER BY until_ms LIMIT ?2)",
            params![now, (n - max + 1).clamp(1, 256)],
        )
        .map_err(db)?;
        let n = count(self)?;
        if n < max {
            return Ok(());
        }
        // Then completed keys past their replay window, oldest first.
        self.exec(
            "DELETE FROM dedupe_keys WHERE key IN \
             (SELECT key FROM dedupe_keys WHERE protected_until_ms <= ?1 \
              ORDER BY protected_until_ms LIMIT ?2)",
            params![now, n - max + 1],
        )
        .map_err(db)?;
        if count(self)? < max {
            return Ok(());
        }
        let earliest: Option<i64> = self
            .row("SELECT MIN(protected_until_ms) FROM dedupe_keys", [], |r| {
                r.get(0)
            })?
            .flatten();
        let wait = earliest.map_or(Duration::from_secs(1), |t| millis(t.saturating_sub(now)));
        Err(StoreError::full(wait.max(Duration::from_millis(1))))
    }

    /// Deletes keys that mean nothing any more, up to [`SWEEP_CHUNK`].
    fn sweep(&self, now: i64) -> Result<usize, StoreError> {
        self.exec(
            "DELETE FROM dedupe_keys WHERE key IN \
             (SELECT key FROM dedupe_keys WHERE until_ms <= ?1 ORDER BY until_ms LIMIT ?2)",
            params![now, i64::try_from(SWEEP_CHUNK).unwrap_or(i64::MAX)],
        )
        .map_err(db)
    }

    fn enqueue(
        &self,
        blob: &[u8],
        received_at: i64,
        claim: Option<ClaimSettlement>,
        now: i64,
    ) -> Result<JobId, StoreError> {
        if self.counter("live_jobs")? >= self.config.queue_capacity {
            return Err(StoreError::full(RETRY_AFTER));
        }
        self.exec(
            "INSERT INTO jobs (state, attempts, next_at_ms, received_at, delivery) VALUES (?1, 0, ?2, ?3, ?4)",
            params![READY, now, received_at, blob],
        )
        .map_err(db)?;
        let id = JobId(self.conn.last_insert_rowid());
        if let Some(settle) = claim {
            self.complete(&settle, now)?;
        }
        Ok(id)
    }

    fn take(&self, now: i64) -> Result<Taken, StoreError> {
        loop {
            // Decoded straight from SQLite's copy of the blob.
            let row = self.row(
                "SELECT id, attempts, delivery FROM jobs WHERE state = ?1 AND next_at_ms <= ?2 \
                 ORDER BY next_at_ms, id LIMIT 1",
                params![READY, now],
                |r| {
                    let delivery = match r.get_ref(2)? {
                        ValueRef::Blob(blob) => Delivery::decode(blob).ok(),
                        _ => None,
                    };
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, delivery))
                },
            )?;
            let Some((id, attempts, delivery)) = row else {
                let next: Option<i64> = self
                    .row(
                        "SELECT MIN(next_at_ms) FROM jobs WHERE state = ?1",
                        [READY],
                        |r| r.get(0),
                    )?
                    .flatten();
                return Ok(Taken::Idle {
                    next_due: next.map(|t| millis(t.saturating_sub(now))),
                });
            };
            let Some(delivery) = delivery else {
                // Never hand out what cannot be rebuilt; keep it for an
                // operator instead of failing every take.
                tracing::error!(
                    job = id,
                    "a stored delivery could not be decoded; moved to the dead letters"
                );
                self.bury(JobId(id), "the stored delivery could not be decoded", now)?;
                continue;
            };
            let attempts = attempts.saturating_add(1);
            self.exec(
                "UPDATE jobs SET state = ?1, attempts = ?2 WHERE id = ?3",
                params![RUNNING, attempts, id],
            )
            .map_err(db)?;
            return Ok(Taken::Job(Job {
                id: JobId(id),
                attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                delivery,
            }));
        }
    }

    fn bury(&self, id: JobId, error: &str, now: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE jobs SET state = ?1, buried_at = ?2, last_error = ?3 WHERE id = ?4 AND state <> ?1",
            params![DEAD, now.div_euclid(1000), error, id.0],
        )
        .map_err(db)?;
        Ok(())
    }

    fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, attempts, last_error, buried_at, delivery FROM jobs WHERE state = ?1 \
                 ORDER BY id LIMIT ?2",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![DEAD, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, attempts, last_error, buried_at, blob) = row.map_err(db)?;
            match Delivery::decode(&blob) {
                Ok(delivery) => out.push(DeadLetter {
                    id: JobId(id),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    last_error: last_error.unwrap_or_default(),
                    buried_at_unix: buried_at.unwrap_or_default(),
                    delivery,
                }),
                Err(_) => tracing::error!(job = id, "a dead letter could not be decoded; left out"),
            }
        }
        Ok(out)
    }

    fn requeue_dead(&self, ids: Option<&[JobId]>, now: i64) -> Result<usize, StoreError> {
        const SET: &str =
            "UPDATE jobs SET state = ?1, attempts = 0, next_at_ms = ?2, buried_at = NULL, last_error = NULL";
        match ids {
            None => self
                .conn
                .execute(&format!("{SET} WHERE state = ?3"), params![READY, now, DEAD])
                .map_err(db),
            Some(ids) => {
                let mut stmt = self
                    .conn
                    .prepare(&format!("{SET} WHERE state = ?3 AND id = ?4"))
                    .map_err(db)?;
                let mut n = 0;
                for id in ids {
                    n += stmt.execute(params![READY, now, DEAD, id.0]).map_err(db)?;
                }
                Ok(n)
            }
        }
    }
}

fn answer_all(answers: impl Iterator<Item = Answer>) {
    for (reply, result) in answers {
        if let Some(reply) = reply {
            // The caller may have gone (its future dropped): nothing to do.
            let _ = reply.send(result);
        }
    }
}

fn stopped_batch() -> StoreError {
    StoreError::unavailable("the SQLite transaction was rolled back", RETRY_AFTER)
}

/// `StoreError` is not `Clone` (its source is boxed): the same kind and
/// message, the source as text.
fn clone_error(e: &StoreError) -> StoreError {
    match e.kind() {
        crate::dedupe::StoreErrorKind::Full => StoreError::full(e.retry_after()),
        _ => StoreError::unavailable("the SQLite transaction was not committed", e.retry_after())
            .with_source(e.to_string()),
    }
}

fn token_bytes(token: LeaseToken) -> [u8; 16] {
    token.as_u128().to_be_bytes()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
