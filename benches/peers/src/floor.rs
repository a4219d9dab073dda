//! `sqlite-floor`: the least CPU a queue kept in SQLite spends per
//! delivery, measured without the crate: the bundled SQLite the crate
//! uses, one connection on one thread, no dedupe key, no take, no thread
//! hand-off. Each delivery is one row (a 1 381-byte blob, what the load
//! benchmark's GitHub delivery stores) inserted, in a transaction of
//! `batch` inserts, and deleted, in a transaction of `batch` deletes (a
//! worker's completion); the WAL is checkpointed by SQLite's automatic
//! checkpoint inside the commits, which is included.
//!
//! Two variants run one after the other, each on a fresh file:
//!
//! - `no fsync`: `synchronous=OFF`, nothing is ever synced: the SQLite
//!   work alone.
//! - `fsync`: `synchronous=NORMAL`, and the WAL file is `fdatasync`ed after
//!   each batch of inserts (what acknowledging only stored deliveries
//!   takes); checkpoints sync the WAL and the database file as SQLite
//!   does.
//!
//! It prints the thread's CPU time (from the kernel's scheduler
//! statistics) and the wall time per delivery. Pin it to one CPU, as the
//! load benchmark pins its servers:
//!
//! ```text
//! taskset -c 0 webhook-guard-peers sqlite-floor [batch] [deliveries] [dir]
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::{params, Connection};

/// A stored delivery's size in the load benchmark (`queue-sqlite`).
const ROW_BYTES: usize = 1381;

/// Runs both variants with `args`: `[batch] [deliveries] [dir]`.
pub fn run(args: &[&str]) -> Result<(), String> {
    let number = |i: usize, default: usize| -> Result<usize, String> {
        match args.get(i) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("expected a positive whole number, not {v:?}")),
        }
    };
    let batch = number(0, 32)?;
    let deliveries = number(1, 200_000)?;
    let dir = match args.get(2) {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir(),
    };
    let path = dir.join(format!(
        "webhook-guard-sqlite-floor-{}.sqlite3",
        std::process::id()
    ));
    println!("sqlite-floor: {deliveries} deliveries of {ROW_BYTES} bytes, batches of {batch}, one thread");
    for fsync in [false, true] {
        let measured = measure(&path, batch, deliveries, fsync);
        remove(&path);
        let (cpu, wall) = measured?;
        let per = |ns: u128| ns as f64 / deliveries as f64 / 1000.0;
        println!(
            "  {:<9} CPU {:6.2} us, wall {:6.2} us per delivery (insert, then delete)",
            if fsync { "fsync" } else { "no fsync" },
            per(cpu),
            per(wall)
        );
    }
    Ok(())
}

fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// CPU and wall nanoseconds for `deliveries` inserted and deleted.
fn measure(path: &Path, batch: usize, deliveries: usize, fsync: bool) -> Result<(u128, u128), String> {
    remove(path);
    let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let sql = |e: rusqlite::Error| format!("SQLite: {e}");
    conn.execute_batch(&format!(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; PRAGMA synchronous = {};
         CREATE TABLE jobs (id INTEGER PRIMARY KEY, delivery BLOB NOT NULL);",
        if fsync { "NORMAL" } else { "OFF" }
    ))
    .map_err(sql)?;
    let mut wal_path = path.as_os_str().to_owned();
    wal_path.push("-wal");
    let wal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(PathBuf::from(wal_path))
        .map_err(|e| format!("cannot open the WAL file: {e}"))?;
    let row = vec![0x5a_u8; ROW_BYTES];
    let (cpu0, wall0) = (thread_cpu_ns()?, Instant::now());
    let (mut inserted, mut deleted) = (0usize, 0i64);
    while inserted < deliveries {
        let n = batch.min(deliveries - inserted);
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
        for _ in 0..n {
            conn.prepare_cached("INSERT INTO jobs (delivery) VALUES (?1)")
                .and_then(|mut stmt| stmt.execute(params![row]))
                .map_err(sql)?;
        }
        conn.execute_batch("COMMIT").map_err(sql)?;
        if fsync {
            wal.sync_data().map_err(|e| format!("fsync of the WAL: {e}"))?;
        }
        inserted += n;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
        for _ in 0..n {
            deleted += 1;
            conn.prepare_cached("DELETE FROM jobs WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([deleted]))
                .map_err(sql)?;
        }
        conn.execute_batch("COMMIT").map_err(sql)?;
    }
    let wall = wall0.elapsed().as_nanos();
    let cpu = thread_cpu_ns()?.saturating_sub(cpu0);
    Ok((cpu, wall))
}

/// This thread's time on a CPU so far, in nanoseconds (the first field of
/// `/proc/thread-self/schedstat`, which Linux keeps).
fn thread_cpu_ns() -> Result<u128, String> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| {
            "cannot read this thread's CPU time from /proc/thread-self/schedstat (Linux only)".to_owned()
        })
}
