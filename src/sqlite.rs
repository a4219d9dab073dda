//! Durable state in one SQLite file (feature `sqlite`): dedupe keys and the
//! fast-acknowledgement queue, surviving restarts and crashes.
//!
//! ```no_run
//! use webhook_guard::dedupe::Dedupe;
//! use webhook_guard::sqlite::SqliteState;
//!
//! # fn run() -> Result<(), webhook_guard::ConfigError> {
//! let state = SqliteState::open("/var/lib/receiver/webhooks.sqlite3")?;
//! let dedupe = Dedupe::builder(state.dedupe_store(), "stripe").build()?;
//! let queue = state.queue(); // a `QueueStorage` for the fast-ack queue
//! # let _ = (dedupe, queue);
//! # Ok(())
//! # }
//! ```
//!
//! # What is durable, and when
//!
//! Every change that must outlive the process (a completed key, an
//! enqueued delivery, a settled job) is a SQLite transaction in WAL mode,
//! and its future returns only once the transaction is committed **and
//! the WAL is fsynced**. An enqueued delivery is therefore on disk
//! **before** the 202 is sent, and a completed key is remembered across a
//! crash, a power loss or a restart. A delivery enqueued with a dedupe
//! settlement ([`ClaimSettlement`]) and its key marked processed are one
//! transaction: after a crash either both are there or neither is.
//!
//! The fsync is pipelined: the writer thread commits with
//! `synchronous=NORMAL` (the WAL frames are written, not yet fsynced) and
//! hands the committed transaction to a sync thread, which fsyncs the WAL
//! file once (`fdatasync`) for everything committed since its last fsync
//! and only then answers. An answer thus comes after its transaction is on
//! disk, as with `synchronous=FULL`, but the writer runs the next
//! transaction while the disk works. Checkpoints (copying the WAL into the
//! database file, fsynced) run on a connection and thread of their own
//! every 3 ms while commits come (up to 24 ms apart when idle), so no
//! commit waits for one. SQLite writes the WAL from its beginning again
//! only when a transaction starts with every frame copied, which
//! checkpoints running beside a steady stream of commits never leave; so
//! once the WAL holds 1 024 frames (4 MiB), the writer thread checkpoints
//! the few frames left between two of its transactions, and the WAL
//! starts again instead of growing. If an fsync fails, the kernel
//! may have dropped what it could not write, so nothing written since can
//! be trusted: every operation fails (503) from then on, and the error is
//! logged, until the process restarts and SQLite recovers the file.
//!
//! Claims are **not** written. The file has one owner process (see
//! below), so the store answers claims, leases and releases from an
//! in-memory index ([`MemoryStore`], bounded by
//! [`max_keys`](SqliteStateBuilder::max_keys)) that holds every live claim
//! and every remembered key, loaded from the file when it is opened. A
//! claim dies with its process, which is what its lease would come to
//! anyway: the delivery was not acknowledged, so its sender retries, and
//! the retry is processed at once instead of waiting out a dead process's
//! lease. Completed keys are kept in the file as a log in completion
//! order, so each delivery appends a few bytes to the last pages instead
//! of rewriting a page chosen by its (random) key.
//!
//! One exception, on purpose: the takes, completed jobs
//! ([`complete`](QueueStorage::complete), and
//! [`complete_and_take`](QueueStorage::complete_and_take)), sweeps and
//! reads of a batch commit in a transaction of their own, and are
//! answered without waiting for an fsync. Such a commit survives the
//! process being killed (SQLite has written it to the
//! WAL file, which is in the OS's cache); only a power loss or an OS crash
//! before the next fsync can undo it, and the next fsync of the WAL
//! covers it too. Undoing one is harmless: a lost take is a job
//! ready again, as [`recover`](QueueStorage::recover) makes it anyway; a
//! lost completion leaves the job stored as running, so
//! [`recover`](QueueStorage::recover) makes it ready again and the handler
//! runs it once more, which the queue's at-least-once promise allows (a
//! handler must already bear a second run of a delivery whose process died
//! before its completion was recorded); a lost sweep deletes again.
//!
//! # Group commit
//!
//! One writer thread owns the connection. Every write is sent to it and
//! awaited; the thread takes everything that is waiting (up to 256
//! operations), runs them in **one** transaction (the light ones above in
//! a second one), commits once, and the sync thread's next fsync covers
//! it; then each is answered. Under load many deliveries share an fsync,
//! without any added wait when the load is light. An operation refused
//! before it writes (the queue is full) fails alone; if a statement fails
//! (disk full, I/O error), the whole batch is rolled back and every
//! operation in it fails, so no operation is ever half stored. Every
//! statement is prepared once and kept in the connection's statement
//! cache.
//!
//! # Failures: 503, never a guess
//!
//! If the file cannot be written (disk full, I/O error, the commit fails),
//! every operation of the batch answers a [`StoreError`]: the layer
//! answers 503 with `Retry-After`, runs nothing, and the sender retries.
//! From then on claims fail closed too: each one first makes a probe
//! write, and only once a write commits again are claims answered from
//! the index. (A handler already running when the disk fills may finish
//! without its completion being stored; the key is then remembered until
//! the process exits, and the sender's retry after a restart runs again.)
//!
//! # One process per file
//!
//! A [`SqliteState`] owns its file: it holds an exclusive advisory lock on
//! `<file>.owner` for as long as it lives, so a second process (or a
//! second `SqliteState` in the same process) opening the same file waits
//! up to the [busy timeout](SqliteStateBuilder::busy_timeout) and then
//! fails with a [`ConfigError`]. An administrative state opened with
//! [`beside_owner`](SqliteStateBuilder::beside_owner) takes no lock and
//! shares the file with the owner through SQLite's own locking (WAL), to
//! list or requeue dead letters while the receiver runs. Two processes can therefore never share the
//! queue (each would [`recover`](QueueStorage::recover) the other's running
//! jobs); run one receiver per file, and use `RedisStore` (feature `redis`)
//! for dedupe keys shared by several receivers. The lock is released when
//! the last handle is dropped, or by the OS when the process dies.
//!
//! # Bounded
//!
//! - **Keys**: at most [`max_keys`](SqliteStateBuilder::max_keys) keys
//!   (live claims and remembered keys) are held in memory (default
//!   [`DEFAULT_MAX_KEYS`], 60 bytes each at the bound: see
//!   [`MemoryStore`]); when full, keys past their replay window are
//!   evicted first, and if every key is still inside its replay window (or
//!   a live claim) a new key fails with [`StoreError::full`] (503) rather
//!   than be forgotten: the same rule as [`MemoryStore`]. The file's log
//!   of completed keys is swept every
//!   [sweep interval](SqliteStateBuilder::sweep_interval) (default 60 s):
//!   keys past their idempotency retention go, and past `max_keys` rows
//!   the oldest past their replay window go too (also between sweeps,
//!   once the log outgrows the bound by an eighth). At a start the keys
//!   still remembered are loaded, the most recent first to find room.
//! - **Queue**: at most [`queue_capacity`](SqliteStateBuilder::queue_capacity)
//!   deliveries waiting or running (default [`DEFAULT_QUEUE_CAPACITY`]);
//!   past it, enqueue fails with [`StoreError::full`] (503 `queue_full`).
//!   Dead letters stay until they are requeued.
//! - **File**: optionally capped with
//!   [`max_file_size`](SqliteStateBuilder::max_file_size); a full file (or
//!   a full disk) fails writes with a [`StoreError`], never silently.
//! - **WAL**: checkpointed every few milliseconds and started again from
//!   its beginning at about 4 MiB; its file is truncated to 64 MiB after a
//!   checkpoint if it ever grew past that.
//!
//! # Time
//!
//! Leases, retention and retry delays use the system clock in Unix
//! milliseconds (saturating arithmetic). A clock stepped far backwards
//! extends leases and retention; stepped forwards it shortens them.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::clock::{Clock, SystemClock};
use crate::dedupe::{
    Claim, DedupeKey, DedupeStore, LeaseToken, MemoryStore, Retention, StoreError, StoreFuture,
};
use crate::queue::{ClaimSettlement, DeadLetter, Delivery, JobId, QueueStorage, Taken};
use crate::ConfigError;

mod writer;

use writer::{KeyRow, Op, Reply, Request};

/// Default bound on dedupe keys held (in memory, 60 bytes each at the
/// bound; the file's log of completed keys is trimmed to it).
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;
/// Default bound on deliveries waiting or running in the queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 100_000;
/// Default interval between two sweeps of expired keys.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Default time an operation may take before it fails (503).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time [`SqliteStateBuilder::open`] waits for a file another
/// connection holds.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// When a sender should retry after the file failed.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// One SQLite file holding dedupe keys and the queue, and the writer
/// thread that owns it. Cheap to clone; the thread stops and the file is
/// unlocked when the last clone (and every store and queue made from it)
/// is dropped. Dropping the last one waits for the thread to finish the
/// batch it is running (one commit), so the file can be opened again at
/// once. See the [module docs](self).
///
/// Its [`SqliteStore`] and [`SqliteQueue`] report the same
/// `transaction_scope` (the address of the state shared by the clones),
/// so a queue enqueue settles the store's claim in the same transaction.
#[derive(Clone)]
pub struct SqliteState {
    shared: Arc<Shared>,
}

struct Shared {
    /// Live claims and every remembered key, loaded from the file at
    /// start: what claims are answered from.
    index: MemoryStore,
    /// Set by the writer thread while the file cannot be written.
    failing: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
    sender: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    timeout: Duration,
    /// The owner lock, released after the thread has closed the file.
    _owner: Option<std::fs::File>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the channel stops the thread once it has answered what
        // it holds; waiting for it closes the file, so that the same file
        // can be opened again as soon as the last handle is gone.
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// Builder for [`SqliteState`].
#[must_use]
pub struct SqliteStateBuilder {
    path: PathBuf,
    timeout: Duration,
    config: writer::Config,
}

impl SqliteState {
    /// Opens (creating it if needed) the file at `path` with the defaults.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStore`] naming the path and the problem: its
    /// directory is missing or not writable, it is not a SQLite file, it
    /// was written by a newer version of this crate, or another process
    /// holds it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::builder(path).open()
    }

    /// Starts configuring the state kept at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteStateBuilder {
        SqliteStateBuilder {
            path: path.as_ref().to_path_buf(),
            timeout: DEFAULT_TIMEOUT,
            config: writer::Config {
                max_keys: DEFAULT_MAX_KEYS,
                queue_capacity: DEFAULT_QUEUE_CAPACITY,
                sweep_interval: DEFAULT_SWEEP_INTERVAL,
                busy_timeout: DEFAULT_BUSY_TIMEOUT,
                max_pages: None,
                clock: Arc::new(SystemClock),
                owner: true,
                failing: Arc::new(AtomicBool::new(false)),
            },
        }
    }

    /// The dedupe store kept in this file.
    pub fn dedupe_store(&self) -> SqliteStore {
        SqliteStore { state: self.clone() }
    }

    /// The queue storage kept in this file.
    pub fn queue(&self) -> SqliteQueue {
        SqliteQueue { state: self.clone() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Deletes every expired key now (the writer thread also does it every
    /// sweep interval). Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the file could not be written.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let mut total = 0usize;
        loop {
            // In chunks, so requests are served in between.
            let n = count(self.call(Op::Sweep).await?)?;
            total = total.saturating_add(n);
            if n < writer::SWEEP_CHUNK {
                return Ok(total);
            }
        }
    }

    /// How many completed dedupe keys the file holds (remembered or not
    /// yet swept; a key completed again after its retention counts
    /// twice until the sweep). Live claims are not in the file.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the writer thread has stopped.
    pub async fn key_count(&self) -> Result<usize, StoreError> {
        count(self.call(Op::KeyCount).await?)
    }

    /// Fails closed while the file cannot be written: if the last write
    /// failed, a probe write must succeed first.
    async fn writable(&self) -> Result<(), StoreError> {
        if self.shared.failing.load(Ordering::Relaxed) {
            unit(self.call(Op::Probe).await?)?;
        }
        Ok(())
    }

    fn now(&self) -> i64 {
        self.shared.clock.now_unix_millis()
    }

    fn scope(&self) -> usize {
        Arc::as_ptr(&self.shared).addr()
    }

    /// Sends `op` to the writer thread and waits for its committed answer.
    async fn call(&self, op: Op) -> Result<Reply, StoreError> {
        let (reply, answer) = oneshot::channel();
        let sender = self.shared.sender.as_ref().ok_or_else(stopped)?;
        sender
            .send(Request {
                op,
                reply: Some(reply),
            })
            .map_err(|_| stopped())?;
        match tokio::time::timeout(self.shared.timeout, answer).await {
            Ok(answer) => answer.map_err(|_| stopped())?,
            Err(_) => Err(StoreError::unavailable(
                "the SQLite store did not answer in time",
                RETRY_AFTER,
            )),
        }
    }
}

impl fmt::Debug for SqliteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteState")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStateBuilder {
    /// The most dedupe keys kept. Default [`DEFAULT_MAX_KEYS`].
    pub fn max_keys(mut self, max: NonZeroUsize) -> Self {
        self.config.max_keys = max.get();
        self
    }

    /// The most deliveries waiting or running in the queue (dead letters
    /// not counted). Default [`DEFAULT_QUEUE_CAPACITY`].
    pub fn queue_capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.config.queue_capacity = capacity.get();
        self
    }

    /// How often expired keys are deleted. Default
    /// [`DEFAULT_SWEEP_INTERVAL`]; raised to at least 10 ms.
    pub fn sweep_interval(mut self, every: Duration) -> Self {
        self.config.sweep_interval = every.max(Duration::from_millis(10));
        self
    }

    /// How long [`open`](Self::open) waits for a file another connection
    /// holds before failing. Default [`DEFAULT_BUSY_TIMEOUT`].
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.config.busy_timeout = timeout;
        self
    }

    /// The largest the database file may grow (rounded down to whole
    /// 4 KiB pages; never below its current size). Past it every write
    /// fails with a [`StoreError`] (503) until deliveries are settled or
    /// keys swept, which frees pages for reuse. Default: no limit but the
    /// disk's. The WAL file (at most 64 MiB after a checkpoint) comes on
    /// top.
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.config.max_pages = Some(bytes / 4096);
        self
    }

    /// How long an operation may wait for its commit before it fails with
    /// a [`StoreError`] (503), e.g. on a disk that hangs. Default
    /// [`DEFAULT_TIMEOUT`]. The operation may still be committed after
    /// its caller gave up: a claim then holds its key until its lease
    /// ends; an enqueue is stored (with its key settled), and the sender's
    /// retry is answered as a duplicate. Needs Tokio's timer (any runtime
    /// built with `enable_time` or `enable_all`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Opens the file beside the process that owns it, for administration
    /// (listing and requeueing dead letters, counting keys) while a
    /// receiver runs on it: this state does not take the owner lock. Never
    /// run a queue's workers on it, since starting a queue takes back
    /// every running delivery, the owner's included; the owner's workers
    /// pick up requeued dead letters within a few seconds.
    pub fn beside_owner(mut self) -> Self {
        self.config.owner = false;
        self
    }

    /// The clock for leases, retention and retry delays. Default: the
    /// system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }

    /// Opens (creating it if needed) the file, migrates its schema, locks
    /// it and starts the writer thread.
    ///
    /// # Errors
    ///
    /// See [`SqliteState::open`].
    pub fn open(self) -> Result<SqliteState, ConfigError> {
        let owner = if self.config.owner {
            Some(writer::owner_lock(&self.path, &self.config)?)
        } else {
            None
        };
        let conn = writer::open(&self.path, &self.config)?;
        let index = MemoryStore::builder()
            .max_entries(NonZeroUsize::new(self.config.max_keys).unwrap_or(NonZeroUsize::MIN))
            .shared_clock(Arc::clone(&self.config.clock))
            .build();
        if self.config.owner {
            let now = self.config.clock.now_unix_millis();
            let (loaded, skipped) =
                writer::load_keys(&conn, &index, now).map_err(|e| ConfigError::InvalidStore {
                    reason: format!("SQLite file {}: cannot read its keys: {e}", self.path.display()),
                })?;
            if skipped > 0 {
                tracing::warn!(
                    target: "webhook_guard",
                    loaded,
                    skipped,
                    "SQLite: more remembered keys than max_keys; the oldest were left out"
                );
            }
        }
        let failing = Arc::clone(&self.config.failing);
        let clock = Arc::clone(&self.config.clock);
        let (sender, receiver) = mpsc::channel();
        let config = self.config;
        let path = self.path.clone();
        let thread = std::thread::Builder::new()
            .name("webhook-guard-sqlite".into())
            .spawn(move || writer::run(conn, receiver, config, &path))
            .map_err(|e| ConfigError::InvalidStore {
                reason: format!("cannot start the SQLite writer thread: {e}"),
            })?;
        Ok(SqliteState {
            shared: Arc::new(Shared {
                index,
                failing,
                clock,
                sender: Some(sender),
                thread: Some(thread),
                path: self.path,
                timeout: self.timeout,
                _owner: owner,
            }),
        })
    }
}

impl fmt::Debug for SqliteStateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStateBuilder")
            .field("path", &self.path)
            .field("max_keys", &self.config.max_keys)
            .field("queue_capacity", &self.config.queue_capacity)
            .field("sweep_interval", &self.config.sweep_interval)
            .field("busy_timeout", &self.config.busy_timeout)
            .field("max_pages", &self.config.max_pages)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The [`DedupeStore`] of a [`SqliteState`]: keys committed to the file,
/// remembered across restarts. Cheap to clone. Made by
/// [`SqliteState::dedupe_store`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    state: SqliteState,
}

impl SqliteStore {
    /// The state this store lives in.
    pub fn state(&self) -> &SqliteState {
        &self.state
    }
}

impl DedupeStore for SqliteStore {
    /// Answered from the in-memory index (no disk write): a claim lives
    /// only as long as the process that holds it. Fails closed while the
    /// file cannot be written.
    fn claim<'a>(
        &'a self,
        key: &'a DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> StoreFuture<'a, Claim> {
        Box::pin(async move {
            self.state.writable().await?;
            self.state.shared.index.claim_now(key, token, times)
        })
    }

    /// Committed to the file (with an fsync) before the index records it.
    fn complete<'a>(
        &'a self,
        key: &'a DedupeKey,
        token: LeaseToken,
        times: Retention,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let index = &self.state.shared.index;
            if !index.would_complete(key, token)? {
                return Ok(());
            }
            let settle = ClaimSettlement {
                key: *key,
                token,
                times,
            };
            let row = KeyRow::completed(&settle, self.state.now());
            unit(self.state.call(Op::Complete(row)).await?)?;
            index.complete_now(key, token, times)
        })
    }

    fn release<'a>(&'a self, key: &'a DedupeKey, token: LeaseToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.state.shared.index.release_now(key, token);
            Ok(())
        })
    }

    fn transaction_scope(&self) -> Option<usize> {
        Some(self.state.scope())
    }
}

/// The [`QueueStorage`] of a [`SqliteState`]: deliveries committed to the
/// file before they are acknowledged. Cheap to clone. Made by
/// [`SqliteState::queue`].
///
/// [`take`](QueueStorage::take) hands out the delivery that has been due
/// the longest (in enqueue order for fresh deliveries; a retried one when
/// its delay has passed).
#[derive(Clone, Debug)]
pub struct SqliteQueue {
    state: SqliteState,
}

impl SqliteQueue {
    /// The state this queue lives in.
    pub fn state(&self) -> &SqliteState {
        &self.state
    }
}

impl QueueStorage for SqliteQueue {
    fn enqueue<'a>(
        &'a self,
        delivery: &'a Delivery,
        claim: Option<ClaimSettlement>,
    ) -> StoreFuture<'a, JobId> {
        Box::pin(async move {
            let index = &self.state.shared.index;
            // A settlement for a key someone else holds (our lease ran out)
            // stores the delivery but leaves the key to its holder.
            let settle = match claim {
                Some(settle) if index.would_complete(&settle.key, settle.token)? => Some(settle),
                _ => None,
            };
            let op = Op::Enqueue {
                blob: delivery.encode(),
                received_at: delivery.received_at_unix(),
                key: settle.as_ref().map(|s| KeyRow::completed(s, self.state.now())),
            };
            let id = match self.state.call(op).await? {
                Reply::Id(id) => id,
                _ => return Err(mismatch()),
            };
            if let Some(s) = settle {
                // Committed: a failure here (no room left since the check)
                // leaves the key claimed until its lease ends, and the
                // file remembers it from the next start.
                let _ = index.complete_now(&s.key, s.token, s.times);
            }
            Ok(id)
        })
    }

    fn take(&self) -> StoreFuture<'_, Taken> {
        Box::pin(async move {
            match self.state.call(Op::Take).await? {
                Reply::Taken(taken) => Ok(*taken),
                _ => Err(mismatch()),
            }
        })
    }

    fn complete(&self, id: JobId) -> StoreFuture<'_, ()> {
        Box::pin(async move { unit(self.state.call(Op::Done(id)).await?) })
    }

    /// One trip to the writer thread: the job is forgotten and the next
    /// one taken in the same transaction (without an fsync of its own: see
    /// the [module docs](self)).
    fn complete_and_take(&self, id: JobId) -> StoreFuture<'_, Taken> {
        Box::pin(async move {
            match self.state.call(Op::DoneAndTake(id)).await? {
                Reply::Taken(taken) => Ok(*taken),
                _ => Err(mismatch()),
            }
        })
    }

    fn retry<'a>(&'a self, id: JobId, after: Duration, error: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let op = Op::Retry {
                id,
                after,
                error: error.to_owned(),
            };
            unit(self.state.call(op).await?)
        })
    }

    fn bury<'a>(&'a self, id: JobId, error: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let op = Op::Bury {
                id,
                error: error.to_owned(),
            };
            unit(self.state.call(op).await?)
        })
    }

    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<DeadLetter>> {
        Box::pin(async move {
            match self.state.call(Op::DeadLetters(limit)).await? {
                Reply::Dead(dead) => Ok(dead),
                _ => Err(mismatch()),
            }
        })
    }

    fn requeue_dead<'a>(&'a self, ids: Option<&'a [JobId]>) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            count(
                self.state
                    .call(Op::RequeueDead(ids.map(<[JobId]>::to_vec)))
                    .await?,
            )
        })
    }

    fn recover(&self) -> StoreFuture<'_, usize> {
        Box::pin(async move { count(self.state.call(Op::Recover).await?) })
    }

    fn len(&self) -> StoreFuture<'_, usize> {
        Box::pin(async move { count(self.state.call(Op::Len).await?) })
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn transaction_scope(&self) -> Option<usize> {
        Some(self.state.scope())
    }
}

fn unit(reply: Reply) -> Result<(), StoreError> {
    match reply {
        Reply::Unit => Ok(()),
        _ => Err(mismatch()),
    }
}

fn count(reply: Reply) -> Result<usize, StoreError> {
    match reply {
        Reply::Count(n) => Ok(n),
        _ => Err(mismatch()),
    }
}

fn stopped() -> StoreError {
    StoreError::unavailable("the SQLite writer thread has stopped", RETRY_AFTER)
}

fn mismatch() -> StoreError {
    StoreError::unavailable("the SQLite writer thread answered another operation", RETRY_AFTER)
}
