//! The writer thread: the only owner of the connection. Schema, batches
//! (one transaction each, rolled back whole if a statement fails), and
//! every operation's SQL, each statement prepared once and kept in the
//! connection's statement cache.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Params, Row};
use tokio::sync::oneshot;

use super::RETRY_AFTER;
use crate::clock::Clock;
use crate::dedupe::{DedupeKey, MemoryStore, StoreError};
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
const SCHEMA_VERSION: i64 = 2;

const READY: i64 = 0;
const DEAD: i64 = 2;

/// Completed dedupe keys are a log in completion order: appends touch the
/// last pages only, whatever the keys' (random) bytes. Lookups are served
/// by the in-memory index loaded from it at start (see the module docs of
/// `sqlite`); a key completed twice has two rows, and the later retention
/// wins.
const SCHEMA_KEYS: &str = "
CREATE TABLE done_keys (
    seq INTEGER PRIMARY KEY,                -- completion order
    key BLOB NOT NULL,                      -- a DedupeKey, 32 bytes
    until_ms INTEGER NOT NULL,              -- remembered until (idempotency end)
    protected_until_ms INTEGER NOT NULL     -- never evicted before (replay window end)
);
CREATE INDEX done_keys_until ON done_keys (until_ms);
";

const SCHEMA_JOBS: &str = "
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state INTEGER NOT NULL,                 -- 0 ready (or running: see runs), 2 dead
    attempts INTEGER NOT NULL DEFAULT 0,    -- runs finished or cut short
    next_at_ms INTEGER NOT NULL,
    last_error TEXT,
    received_at INTEGER NOT NULL,           -- Unix seconds
    buried_at INTEGER,                      -- Unix seconds
    delivery BLOB NOT NULL                  -- Delivery::encode
);
CREATE INDEX jobs_take ON jobs (state, next_at_ms, id);

CREATE TABLE meta (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
";

/// The jobs being run, with the attempt each run is: a few small rows,
/// written when a job is taken and deleted when it is settled, so taking a
/// job never rewrites its (large) row.
const SCHEMA_RUNS: &str = "
CREATE TABLE runs (job INTEGER PRIMARY KEY NOT NULL, attempts INTEGER NOT NULL);
";

/// Version 1 (development builds before the first release) kept every key,
/// claims included, in a table keyed by the key, with counters kept by
/// triggers: its completed keys move to the log, the rest goes.
const MIGRATE_V1: &str = "
DROP TRIGGER IF EXISTS keys_insert;
DROP TRIGGER IF EXISTS keys_delete;
DROP TRIGGER IF EXISTS jobs_insert;
DROP TRIGGER IF EXISTS jobs_delete;
DROP TRIGGER IF EXISTS jobs_bury;
DROP TRIGGER IF EXISTS jobs_unbury;
DROP TABLE IF EXISTS counters;
-- Version 1 marked running jobs with state 1; version 2 keeps them in runs.
INSERT INTO runs (job, attempts) SELECT id, attempts FROM jobs WHERE state = 1;
UPDATE jobs SET state = 0 WHERE state = 1;
INSERT INTO done_keys (key, until_ms, protected_until_ms)
    SELECT key, until_ms, protected_until_ms FROM dedupe_keys WHERE state = 1
    ORDER BY protected_until_ms;
DROP TABLE dedupe_keys;
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
    /// Set while the file cannot be written (the last write failed),
    /// cleared by the next write that commits.
    pub(super) failing: Arc<AtomicBool>,
}

pub(super) struct Request {
    pub(super) op: Op,
    /// `None` for the thread's own sweeps.
    pub(super) reply: Option<oneshot::Sender<Result<Reply, StoreError>>>,
}

/// A completed key as the file keeps it (times in Unix milliseconds).
#[derive(Clone, Copy)]
pub(super) struct KeyRow {
    pub(super) key: DedupeKey,
    pub(super) until_ms: i64,
    pub(super) protected_until_ms: i64,
}

impl KeyRow {
    /// The row of `settle` completed at `now` (Unix milliseconds).
    pub(super) fn completed(settle: &ClaimSettlement, now: i64) -> Self {
        Self {
            key: settle.key,
            until_ms: now.saturating_add(ms(settle.times.idempotency())),
            protected_until_ms: now.saturating_add(ms(settle.times.replay_window())),
        }
    }
}

pub(super) enum Op {
    /// A write that needs fresh pages, undone at once: whether the file
    /// can be written again.
    Probe,
    Complete(KeyRow),
    Sweep,
    KeyCount,
    Enqueue {
        blob: Vec<u8>,
        received_at: i64,
        key: Option<KeyRow>,
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
            Self::Take
                | Self::Done(_)
                | Self::DoneAndTake(_)
                | Self::Sweep
                | Self::KeyCount
                | Self::DeadLetters(_)
                | Self::Len
        )
    }

    /// Whether committing this operation shows the file can take new
    /// rows again (it inserted some).
    fn proves_writable(&self) -> bool {
        matches!(self, Self::Probe | Self::Complete(_) | Self::Enqueue { .. })
    }
}

pub(super) enum Reply {
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
    // The bundled SQLite is built with STAT4, which re-prepares a cached
    // statement whenever a new value is bound to a parameter in a range
    // constraint (`next_at_ms <= ?`, bound to the clock: every time). The
    // query planner stability guarantee turns that off; our plans are
    // fixed by the indexes anyway.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(|e| invalid(path, e))?;
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
    let steps = match version {
        0 => format!("{SCHEMA_KEYS} {SCHEMA_JOBS} {SCHEMA_RUNS}"),
        1 => format!("{SCHEMA_KEYS} {SCHEMA_RUNS} {MIGRATE_V1}"),
        // The current version, or a newer one (refused by the caller).
        _ => return Ok(()),
    };
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
    .inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })
}

/// Loads the completed keys still remembered into `index`, the most
/// recent first, so that if they do not all fit the oldest are left out
/// (of two rows of one key, the later retention wins). Returns how many
/// were loaded and how many found no room.
pub(super) fn load_keys(
    conn: &Connection,
    index: &MemoryStore,
    now: i64,
) -> rusqlite::Result<(usize, usize)> {
    let mut stmt = conn.prepare(
        "SELECT key, until_ms, protected_until_ms FROM done_keys WHERE until_ms > ?1 ORDER BY seq DESC",
    )?;
    let mut rows = stmt.query([now])?;
    let (mut loaded, mut skipped) = (0usize, 0usize);
    while let Some(row) = rows.next()? {
        let key = match row.get_ref(0)? {
            ValueRef::Blob(b) => <[u8; 32]>::try_from(b).ok(),
            _ => None,
        };
        let Some(key) = key else { continue };
        if index.restore(&DedupeKey::from_stored(key), row.get(2)?, row.get(1)?) {
            loaded += 1;
        } else {
            skipped += 1;
        }
    }
    Ok((loaded, skipped))
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
    /// Where committed transactions wait for their fsync, if the syncer
    /// thread runs; without it, commits fsync by themselves.
    syncer: Option<mpsc::Sender<Vec<Answer>>>,
    /// Set for good when an fsync of the WAL failed.
    poisoned: Arc<AtomicBool>,
    /// Jobs waiting or running. Counted at start and kept by this thread
    /// (the only writer of jobs but an administrative state's requeue,
    /// which the next sweep's recount picks up).
    live_jobs: usize,
    /// Rows of `done_keys`, kept the same way.
    key_rows: usize,
    /// The jobs this process has taken and not settled, with the attempt
    /// each run is (also in `runs`, for the next start).
    running: std::collections::HashMap<i64, i64>,
    /// The order (`next_at_ms`, `id`) of the last job taken: the next take
    /// looks past it first, so jobs taken and not yet settled are not read
    /// again.
    cursor: Option<(i64, i64)>,
}

/// Why an operation failed: refused before it wrote anything (the rest of
/// the batch goes on), or a failed statement (the batch is rolled back).
enum Failure {
    Refused(StoreError),
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(e)
    }
}

type OpResult = Result<Reply, Failure>;

/// A job [`Writer::next_due`] found: id, due time, attempts, delivery.
type DueJob = (i64, i64, i64, Option<Delivery>);

/// WAL pages past which the writer checkpoints by itself: a backstop, as
/// the checkpointer thread keeps the WAL far smaller.
const WAL_BACKSTOP_PAGES: u32 = 8192;

/// WAL frames past which the writer checkpoints between two of its
/// transactions, so that the WAL starts again from its beginning (see
/// [`Writer::restart_wal`]): about 4 MiB.
const WAL_RESTART_FRAMES: i64 = 1024;
/// How often the checkpointer thread copies the WAL into the database
/// while commits keep coming (under load, p99 went 5.9, 3.9, 3.0 ms at 30,
/// 10, 3 ms apart, and no lower at 1 ms; see BENCHMARKS.md).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(3);
/// The longest it waits between looks while nothing new is committed: it
/// doubles its wait from [`CHECKPOINT_EVERY`] up to this, so an idle
/// state wakes about 40 times a second.
const CHECKPOINT_IDLE: Duration = Duration::from_millis(24);

/// Copies committed WAL pages into the database file (and fsyncs it) on a
/// connection of its own, every [`CHECKPOINT_EVERY`] while the WAL grows
/// (often, so that each checkpoint is short: a long one holds up the WAL
/// fsyncs that answers wait for; less often, up to [`CHECKPOINT_IDLE`],
/// while it does not), so that the writer
/// thread's commits never wait for a checkpoint (SQLite's automatic
/// checkpoint would run inside the commit that crosses its threshold).
/// A passive checkpoint takes no lock a writer needs. Once the WAL holds
/// [`WAL_RESTART_FRAMES`], it sets `restart`, and the writer checkpoints
/// the rest between two of its transactions so that the WAL starts again
/// from its beginning (see [`Writer::restart_wal`]).
fn checkpointer(path: &Path, busy_timeout: Duration, stop: &Receiver<()>, restart: &AtomicBool) {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match Connection::open_with_flags(path, flags) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(target: "webhook_guard", error = %e, "SQLite: cannot open the checkpoint connection; the writer checkpoints by itself");
            return;
        }
    };
    let _ = conn.busy_timeout(busy_timeout);
    let mut wait = CHECKPOINT_EVERY;
    // The WAL's frames and those copied, at the last look.
    let mut last: Option<(i64, i64)> = None;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok(frames) => {
                if frames.0 >= WAL_RESTART_FRAMES {
                    restart.store(true, Ordering::Relaxed);
                }
                wait = if last == Some(frames) {
                    wait.saturating_mul(2).min(CHECKPOINT_IDLE)
                } else {
                    CHECKPOINT_EVERY
                };
                last = Some(frames);
            }
            Err(e) => {
                tracing::debug!(target: "webhook_guard", error = %e, "SQLite: checkpoint failed; retrying");
            }
        }
    }
}

/// Makes committed transactions durable before they are answered: waits
/// for the transactions the writer hands over (committed with
/// `synchronous=NORMAL`, so their WAL frames are written but not
/// fsynced), takes every one that is waiting, fsyncs the WAL file once
/// (`fdatasync`) and answers them. The fsync covers every frame written
/// before it started, so each answer comes after its transaction is on
/// disk, as with `synchronous=FULL`; but the writer thread runs the next
/// transaction meanwhile instead of waiting for the disk. If an fsync
/// fails, what the page cache holds is unknown: every operation from then
/// on fails until the process restarts (see the module docs).
fn syncer(wal: &std::fs::File, committed: &Receiver<Vec<Answer>>, poisoned: &AtomicBool) {
    let mut groups: Vec<Vec<Answer>> = Vec::new();
    while let Ok(first) = committed.recv() {
        groups.push(first);
        while let Ok(next) = committed.try_recv() {
            groups.push(next);
        }
        let synced = if poisoned.load(Ordering::Relaxed) {
            Err(poisoned_error())
        } else {
            wal.sync_data().map_err(|e| {
                poisoned.store(true, Ordering::Relaxed);
                tracing::error!(
                    target: "webhook_guard",
                    error = %e,
                    "SQLite: the WAL could not be synced to disk; every operation fails until the process restarts"
                );
                poisoned_error()
            })
        };
        for answers in groups.drain(..) {
            match &synced {
                Ok(()) => answer_all(answers.into_iter()),
                Err(e) => answer_all(answers.into_iter().map(|(reply, _)| (reply, Err(clone_error(e))))),
            }
        }
    }
}

fn poisoned_error() -> StoreError {
    StoreError::unavailable(
        "the SQLite WAL could not be synced to disk; restart the process",
        RETRY_AFTER,
    )
}

/// The WAL file of the database at `path`, to fsync; `None` if it cannot
/// be opened (the writer then fsyncs its own commits).
fn open_wal(path: &Path) -> Option<std::fs::File> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&wal)
        .inspect_err(|e| {
            tracing::warn!(target: "webhook_guard", error = %e, "SQLite: cannot open the WAL file to sync it; commits fsync by themselves");
        })
        .ok()
}

/// The thread's loop: until every sender is gone, take what is waiting,
/// run it as one transaction, answer; sweep when it is time, or when the
/// key log has grown well past its bound.
pub(super) fn run(conn: Connection, requests: Receiver<Request>, config: Config, path: &Path) {
    let interval = config.sweep_interval;
    // The owner's checkpoints run beside the writer; an administrative
    // state writes little and keeps SQLite's automatic checkpoint.
    let (stop_checkpoints, checkpoints) = mpsc::channel::<()>();
    let restart_wal = Arc::new(AtomicBool::new(false));
    let checkpoint_thread = if config.owner {
        let restart = Arc::clone(&restart_wal);
        let _ = conn.pragma_update(None, "wal_autocheckpoint", WAL_BACKSTOP_PAGES);
        let (path, busy) = (path.to_path_buf(), config.busy_timeout);
        std::thread::Builder::new()
            .name("webhook-guard-sqlite-checkpoint".into())
            .spawn(move || checkpointer(&path, busy, &checkpoints, &restart))
            .inspect_err(|e| {
                tracing::error!(target: "webhook_guard", error = %e, "SQLite: cannot start the checkpoint thread; the writer checkpoints by itself");
                let _ = conn.pragma_update(None, "wal_autocheckpoint", 1000);
            })
            .ok()
    } else {
        None
    };
    // The owner hands its commits to the syncer thread; an administrative
    // state fsyncs each commit itself.
    let poisoned = Arc::new(AtomicBool::new(false));
    let (syncer_tx, syncer_thread) = match config.owner.then(|| open_wal(path)).flatten() {
        Some(wal) => {
            let (tx, rx) = mpsc::channel::<Vec<Answer>>();
            let flag = Arc::clone(&poisoned);
            match std::thread::Builder::new()
                .name("webhook-guard-sqlite-sync".into())
                .spawn(move || syncer(&wal, &rx, &flag))
            {
                Ok(thread) => (Some(tx), Some(thread)),
                Err(e) => {
                    tracing::warn!(target: "webhook_guard", error = %e, "SQLite: cannot start the sync thread; commits fsync by themselves");
                    (None, None)
                }
            }
        }
        None => (None, None),
    };
    let mut writer = Writer {
        conn,
        config,
        sync: SyncMode::Full,
        syncer: syncer_tx,
        poisoned,
        live_jobs: 0,
        key_rows: 0,
        running: std::collections::HashMap::new(),
        cursor: None,
    };
    if let Err(e) = writer.recount() {
        tracing::error!(target: "webhook_guard", error = %e, "SQLite: cannot count the stored keys and jobs");
    }
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
        // The log may outgrow the bound by an eighth (at least 1 024 rows)
        // between sweeps.
        let slack = (writer.config.max_keys / 8).max(1024);
        let overgrown = writer.key_rows > writer.config.max_keys.saturating_add(slack);
        if (overgrown || Instant::now() >= next_sweep) && batch.len() < MAX_BATCH {
            batch.push(Request {
                op: Op::Sweep,
                reply: None,
            });
            next_sweep = Instant::now() + interval;
        }
        if !batch.is_empty() {
            writer.run_batch(&mut batch);
        }
        if restart_wal.swap(false, Ordering::Relaxed) {
            writer.restart_wal();
        }
    }
    // Every handed-over commit is answered before the file is closed.
    drop(writer.syncer.take());
    if let Some(thread) = syncer_thread {
        let _ = thread.join();
    }
    drop(stop_checkpoints);
    if let Some(thread) = checkpoint_thread {
        let _ = thread.join();
    }
    let _ = writer.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::unavailable("the SQLite store failed", RETRY_AFTER).with_source(e)
}

type Answer = (
    Option<oneshot::Sender<Result<Reply, StoreError>>>,
    Result<Reply, StoreError>,
);

impl Writer {
    /// Checkpoints what the checkpoint thread has not copied yet, between
    /// two of this thread's transactions. SQLite writes the WAL again from
    /// its beginning only when a write transaction starts while every
    /// frame in it has been copied; the checkpoint thread's checkpoints run
    /// while this thread commits, so under a steady load that moment never
    /// comes, the WAL grows up to [`WAL_BACKSTOP_PAGES`] and a commit runs
    /// the backstop checkpoint of thousands of pages itself. Here no commit
    /// runs beside the checkpoint, so it copies everything (a few hundred
    /// pages at most: the checkpoint thread has copied the rest) and the
    /// next transaction starts the WAL again. If the checkpoint thread is
    /// checkpointing at that moment, this one is busy and does nothing; it
    /// is asked again.
    fn restart_wal(&mut self) {
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::debug!(target: "webhook_guard", error = %e, "SQLite: checkpoint to restart the WAL failed");
        }
    }

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
    ) -> rusqlite::Result<Option<T>> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_row(params, f).optional())
    }

    fn count(&self, sql: &str, params: impl Params) -> rusqlite::Result<usize> {
        let n: i64 = self.row(sql, params, |r| r.get(0))?.unwrap_or(0);
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Counts the live jobs and the key rows again.
    fn recount(&mut self) -> rusqlite::Result<()> {
        self.live_jobs = self.count("SELECT COUNT(*) FROM jobs WHERE state = ?1", [READY])?;
        self.key_rows = self.count("SELECT COUNT(*) FROM done_keys", [])?;
        Ok(())
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

    /// Runs what `batch` holds and answers every request once its commit
    /// is known: first the operations that need an fsync as one
    /// transaction (handed to the sync thread, whose fsync then runs
    /// while this thread goes on), then the light ones (see
    /// [`Op::is_light`]: workers settling jobs) as a transaction of their
    /// own, answered at its commit, so that they never wait for an fsync.
    fn run_batch(&mut self, batch: &mut Vec<Request>) {
        let (light, heavy): (Vec<Request>, Vec<Request>) = batch.drain(..).partition(|r| r.op.is_light());
        if !heavy.is_empty() {
            let sync = if self.syncer.is_some() {
                SyncMode::Normal
            } else {
                SyncMode::Full
            };
            self.run_transaction(heavy, sync);
        }
        if !light.is_empty() {
            self.run_transaction(light, SyncMode::Normal);
        }
    }

    /// Runs `requests` as one transaction. A refused operation (the queue
    /// is full) wrote nothing and fails alone; a failed statement rolls the
    /// whole transaction back and fails every operation in it, so that no
    /// operation is ever half stored.
    fn run_transaction(&mut self, requests: Vec<Request>, sync: SyncMode) {
        if self.poisoned.load(Ordering::Relaxed) {
            let e = poisoned_error();
            return answer_all(requests.into_iter().map(|r| (r.reply, Err(clone_error(&e)))));
        }
        let light = requests.iter().all(|r| r.op.is_light());
        let writes = requests.iter().any(|r| r.op.proves_writable());
        let (jobs, keys) = (self.live_jobs, self.key_rows);
        let begun = self
            .set_sync(sync)
            .and_then(|()| self.exec("BEGIN IMMEDIATE", []));
        if let Err(e) = begun {
            return self.fail_batch(requests.into_iter().map(|r| r.reply).collect(), &db(e));
        }
        let mut answers: Vec<Answer> = Vec::with_capacity(requests.len());
        let mut failed: Option<StoreError> = None;
        for request in requests {
            if failed.is_some() {
                answers.push((request.reply, Err(stopped_batch())));
                continue;
            }
            let result = match self.apply(request.op) {
                Ok(reply) => Ok(reply),
                Err(Failure::Refused(e)) => Err(e),
                Err(Failure::Db(e)) => {
                    let e = db(e);
                    failed = Some(clone_error(&e));
                    Err(e)
                }
            };
            answers.push((request.reply, result));
        }
        let outcome = match failed {
            Some(e) => Err(e),
            None => self.exec("COMMIT", []).map(|_| ()).map_err(db),
        };
        match outcome {
            Ok(()) => {
                if writes {
                    self.config.failing.store(false, Ordering::Relaxed);
                }
                match &self.syncer {
                    // Durable once the syncer's next fsync is done.
                    Some(syncer) if !light => {
                        if let Err(mpsc::SendError(answers)) = syncer.send(answers) {
                            let e = poisoned_error();
                            answer_all(
                                answers
                                    .into_iter()
                                    .map(|(reply, _)| (reply, Err(clone_error(&e)))),
                            );
                        }
                    }
                    _ => answer_all(answers.into_iter()),
                }
            }
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                (self.live_jobs, self.key_rows) = (jobs, keys);
                self.fail_batch(answers.into_iter().map(|(reply, _)| reply).collect(), &e);
            }
        }
    }

    fn fail_batch(&self, replies: Vec<Option<oneshot::Sender<Result<Reply, StoreError>>>>, e: &StoreError) {
        self.config.failing.store(true, Ordering::Relaxed);
        tracing::error!(target: "webhook_guard", error = %e, "SQLite batch not committed; every operation in it fails");
        answer_all(replies.into_iter().map(|reply| (reply, Err(clone_error(e)))));
    }

    fn apply(&mut self, op: Op) -> OpResult {
        let now = self.now();
        match op {
            Op::Probe => {
                // Two pages' worth, so a file with no free page fails.
                self.exec("CREATE TABLE IF NOT EXISTS probe (b BLOB)", [])?;
                self.exec("INSERT INTO probe (b) VALUES (zeroblob(8192))", [])?;
                self.exec("DELETE FROM probe", [])?;
                Ok(Reply::Unit)
            }
            Op::Complete(row) => {
                self.put_key(&row)?;
                Ok(Reply::Unit)
            }
            Op::Sweep => Ok(Reply::Count(self.sweep(now)?)),
            Op::KeyCount => Ok(Reply::Count(self.key_rows)),
            Op::Enqueue {
                blob,
                received_at,
                key,
            } => self.enqueue(&blob, received_at, key.as_ref(), now).map(Reply::Id),
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
                if let Some(attempts) = self.settle_run(id)? {
                    // Due again, maybe before the cursor.
                    self.cursor = None;
                    self.exec(
                        "UPDATE jobs SET attempts = ?1, next_at_ms = ?2, last_error = ?3 WHERE id = ?4 AND state = ?5",
                        params![attempts, now.saturating_add(ms(after)), error, id.0, READY],
                    )?;
                }
                Ok(Reply::Unit)
            }
            Op::Bury { id, error } => {
                self.bury(id, &error, now)?;
                Ok(Reply::Unit)
            }
            Op::DeadLetters(limit) => Ok(Reply::Dead(self.dead_letters(limit)?)),
            Op::RequeueDead(ids) => self.requeue_dead(ids.as_deref(), now),
            Op::Recover => {
                // Every run recorded was cut short (a process that is gone,
                // or this one's before a restart of its queue): it counts
                // as an attempt, and the job is ready again.
                self.exec(
                    "UPDATE jobs SET attempts = MAX(attempts, \
                     (SELECT r.attempts FROM runs r WHERE r.job = jobs.id)) \
                     WHERE id IN (SELECT job FROM runs)",
                    [],
                )?;
                let n = self.exec("DELETE FROM runs", [])?;
                self.running.clear();
                self.cursor = None;
                Ok(Reply::Count(n))
            }
            Op::Len => Ok(Reply::Count(self.live_jobs)),
        }
    }

    fn put_key(&mut self, row: &KeyRow) -> rusqlite::Result<()> {
        self.exec(
            "INSERT INTO done_keys (key, until_ms, protected_until_ms) VALUES (?1, ?2, ?3)",
            params![row.key.as_bytes(), row.until_ms, row.protected_until_ms],
        )?;
        self.key_rows = self.key_rows.saturating_add(1);
        Ok(())
    }

    /// Forgets the run of `id`, if this process is running it, and says
    /// which attempt it was.
    fn settle_run(&mut self, id: JobId) -> rusqlite::Result<Option<i64>> {
        let Some(attempts) = self.running.remove(&id.0) else {
            return Ok(None);
        };
        if let Err(e) = self.exec("DELETE FROM runs WHERE job = ?1", [id.0]) {
            self.running.insert(id.0, attempts);
            return Err(e);
        }
        Ok(Some(attempts))
    }

    fn done(&mut self, id: JobId) -> rusqlite::Result<()> {
        if self.settle_run(id)?.is_some() {
            let n = self.exec(
                "DELETE FROM jobs WHERE id = ?1 AND state = ?2",
                params![id.0, READY],
            )?;
            self.live_jobs = self.live_jobs.saturating_sub(n);
        }
        Ok(())
    }

    /// Deletes, up to [`SWEEP_CHUNK`], key rows past their retention; then,
    /// if the log holds more rows than the key bound, the oldest rows past
    /// their replay window (the in-memory index has forgotten them already
    /// or may forget them). Recounts the jobs (an administrative state may
    /// have requeued some).
    fn sweep(&mut self, now: i64) -> rusqlite::Result<usize> {
        let chunk = i64::try_from(SWEEP_CHUNK).unwrap_or(i64::MAX);
        let expired = self.exec(
            "DELETE FROM done_keys WHERE seq IN \
             (SELECT seq FROM done_keys WHERE until_ms <= ?1 ORDER BY until_ms LIMIT ?2)",
            params![now, chunk],
        )?;
        self.key_rows = self.key_rows.saturating_sub(expired);
        let mut deleted = expired;
        let excess = self.key_rows.saturating_sub(self.config.max_keys);
        if excess > 0 {
            let old = self.exec(
                "DELETE FROM done_keys WHERE seq IN \
                 (SELECT seq FROM done_keys WHERE protected_until_ms <= ?1 ORDER BY seq LIMIT ?2)",
                params![now, i64::try_from(excess.min(SWEEP_CHUNK)).unwrap_or(i64::MAX)],
            )?;
            self.key_rows = self.key_rows.saturating_sub(old);
            deleted += old;
        }
        self.live_jobs = self.count("SELECT COUNT(*) FROM jobs WHERE state = ?1", [READY])?;
        Ok(deleted)
    }

    fn enqueue(
        &mut self,
        blob: &[u8],
        received_at: i64,
        key: Option<&KeyRow>,
        now: i64,
    ) -> Result<JobId, Failure> {
        if self.live_jobs >= self.config.queue_capacity {
            return Err(Failure::Refused(StoreError::full(RETRY_AFTER)));
        }
        self.exec(
            "INSERT INTO jobs (state, attempts, next_at_ms, received_at, delivery) VALUES (?1, 0, ?2, ?3, ?4)",
            params![READY, now, received_at, blob],
        )?;
        let id = JobId(self.conn.last_insert_rowid());
        self.live_jobs = self.live_jobs.saturating_add(1);
        if let Some(key) = key {
            self.put_key(key)?;
        }
        Ok(id)
    }

    fn take(&mut self, now: i64) -> Result<Taken, Failure> {
        loop {
            // Past the last job taken first; then, if nothing is there
            // (a clock stepped back, say), from the start.
            let mut found = match self.cursor {
                Some(after) => self.next_due(now, Some(after))?,
                None => None,
            };
            if found.is_none() {
                found = self.next_due(now, None)?;
            }
            let Some((id, next_at, attempts, delivery)) = found else {
                // Nothing due but what this process runs: the next is a
                // job due later (a retry's delay).
                let next: Option<i64> = self
                    .row(
                        "SELECT MIN(next_at_ms) FROM jobs WHERE state = ?1 AND next_at_ms > ?2",
                        params![READY, now],
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
                    target: "webhook_guard",
                    job = id,
                    "a stored delivery could not be decoded; moved to the dead letters"
                );
                self.bury(JobId(id), "the stored delivery could not be decoded", now)?;
                continue;
            };
            let attempts = attempts.saturating_add(1);
            self.exec(
                "INSERT OR REPLACE INTO runs (job, attempts) VALUES (?1, ?2)",
                params![id, attempts],
            )?;
            self.running.insert(id, attempts);
            self.cursor = Some((next_at, id));
            return Ok(Taken::Job(Job {
                id: JobId(id),
                attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                delivery,
            }));
        }
    }

    /// The first due job, in order (after `after` if given), that this
    /// process is not running: its id, due time, attempts so far (a run
    /// recorded by a process that is gone counts) and delivery (`None` if
    /// it cannot be decoded). At most as many rows are read as jobs run.
    fn next_due(&self, now: i64, after: Option<(i64, i64)>) -> rusqlite::Result<Option<DueJob>> {
        const COLUMNS: &str =
            "SELECT j.id, j.next_at_ms, MAX(j.attempts, COALESCE(r.attempts, 0)), j.delivery \
             FROM jobs j LEFT JOIN runs r ON r.job = j.id";
        let limit = i64::try_from(self.running.len().saturating_add(1)).unwrap_or(i64::MAX);
        let mut stmt;
        let mut rows = match after {
            Some((next_at, id)) => {
                stmt = self.conn.prepare_cached(&format!(
                    "{COLUMNS} WHERE j.state = ?1 AND j.next_at_ms <= ?2 AND (j.next_at_ms, j.id) > (?3, ?4) \
                     ORDER BY j.next_at_ms, j.id LIMIT ?5"
                ))?;
                stmt.query(params![READY, now, next_at, id, limit])?
            }
            None => {
                stmt = self.conn.prepare_cached(&format!(
                    "{COLUMNS} WHERE j.state = ?1 AND j.next_at_ms <= ?2 ORDER BY j.next_at_ms, j.id LIMIT ?3"
                ))?;
                stmt.query(params![READY, now, limit])?
            }
        };
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            if self.running.contains_key(&id) {
                continue;
            }
            // Decoded straight from SQLite's copy of the blob.
            let delivery = match r.get_ref(3)? {
                ValueRef::Blob(blob) => Delivery::decode(blob).ok(),
                _ => None,
            };
            return Ok(Some((id, r.get(1)?, r.get(2)?, delivery)));
        }
        Ok(None)
    }

    fn bury(&mut self, id: JobId, error: &str, now: i64) -> rusqlite::Result<()> {
        let attempts = self.settle_run(id)?;
        let n = self.exec(
            "UPDATE jobs SET state = ?1, buried_at = ?2, last_error = ?3, \
             attempts = MAX(attempts, COALESCE(?5, 0)) WHERE id = ?4 AND state <> ?1",
            params![DEAD, now.div_euclid(1000), error, id.0, attempts],
        )?;
        self.live_jobs = self.live_jobs.saturating_sub(n);
        Ok(())
    }

    fn dead_letters(&self, limit: usize) -> rusqlite::Result<Vec<DeadLetter>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, attempts, last_error, buried_at, delivery FROM jobs WHERE state = ?1 \
             ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![DEAD, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, attempts, last_error, buried_at, blob) = row?;
            match Delivery::decode(&blob) {
                Ok(delivery) => out.push(DeadLetter {
                    id: JobId(id),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    last_error: last_error.unwrap_or_default(),
                    buried_at_unix: buried_at.unwrap_or_default(),
                    delivery,
                }),
                Err(_) => {
                    tracing::error!(target: "webhook_guard", job = id, "a dead letter could not be decoded; left out")
                }
            }
        }
        Ok(out)
    }

    fn requeue_dead(&mut self, ids: Option<&[JobId]>, now: i64) -> OpResult {
        const SET: &str =
            "UPDATE jobs SET state = ?1, attempts = 0, next_at_ms = ?2, buried_at = NULL, last_error = NULL";
        let n = match ids {
            None => self
                .conn
                .execute(&format!("{SET} WHERE state = ?3"), params![READY, now, DEAD])?,
            Some(ids) => {
                let mut stmt = self
                    .conn
                    .prepare(&format!("{SET} WHERE state = ?3 AND id = ?4"))?;
                let mut n = 0;
                for id in ids {
                    n += stmt.execute(params![READY, now, DEAD, id.0])?;
                }
                n
            }
        };
        self.live_jobs = self.live_jobs.saturating_add(n);
        if n > 0 {
            // Due now, maybe before the cursor.
            self.cursor = None;
        }
        Ok(Reply::Count(n))
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

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
