//! How much memory a flood of distinct keys costs, and whether the bounds
//! hold: one million distinct dedupe keys into a [`MemoryStore`], one
//! million distinct clients through [`RateLimiter::check`].
//!
//! | scenario | what |
//! |---|---|
//! | `store aged 100/s` | MemoryStore bounded at 100 000 keys (`max_entries(DEFAULT_MAX_ENTRIES)`, the old default), a [`FixedClock`] moved one second every 100 keys: 60 000 keys per 600 s replay window, so old keys age out of the window as the flood goes on |
//! | `store aged 200/s` | the same at 200 keys a second: 120 000 keys per window, more than the bound, so claims fail `Full` (fail closed) instead of forgetting young keys |
//! | `store young` | `max_entries(1 000 000)`, the clock standing still: every key kept, so ΔRSS / len is the cost of one key (with the tables at their largest, as at the bound) |
//! | `store 64 MiB filled` | the default bound (`DEFAULT_MAX_BYTES`, 64 MiB: `capacity()` keys), the clock standing still, `capacity()` + 5 % keys sent: the store fills to about its capacity and refuses the rest `Full`; ΔRSS stays near 64 MiB (1 MiB bound without `--bench`) |
//!
//! `tbl B/key` is the store's own [`MemoryStore::table_bytes`] per key
//! held, to check the RSS figure against.
//! | `limiter IPv4` | 1 000 000 distinct IPv4 clients, default `max_tracked_clients` (100 000) |
//! | `limiter IPv6 /64` | 1 000 000 distinct IPv6 /64 prefixes, likewise |
//!
//! The limiters use a quota of 1 000 a second with a burst of 1, so a
//! client's quota refills in 1 ms: governor forgets only clients whose quota
//! has refilled, and the `after forget` rows wait 20 ms before calling
//! `forget_idle_clients()`. Every claim that is acquired is completed, with
//! the retention a route gets by default (lease 60 s, replay window 600 s,
//! idempotency 72 h).
//!
//! Each scenario runs in a fresh child process (this binary, re-executed),
//! so its RSS figures (`VmRSS` from `/proc/self/status`) start from the
//! same baseline and are not blurred by memory an earlier scenario freed
//! but the allocator kept. Within a scenario, freed memory is not always
//! returned to the OS either, so an `after forget` RSS is an upper bound.
//!
//! The program exits non-zero if a store holds more than its `capacity()`
//! (or its tables take more than its `max_bytes`),
//! or a limiter tracks more than `max_tracked_clients + 256`.
//!
//! Run:
//!
//! ```text
//! cargo bench --bench flood_memory                  # 1 000 000 keys per scenario
//! BENCH_SMOKE=1 cargo bench --bench flood_memory    # 100 000 keys, for CI
//! ```
//!
//! Run without `--bench` (as `cargo test --benches` does) it uses 20 000
//! keys, just to check that it works.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use webhook_guard::dedupe::{
    Claim, DedupeKey, DedupeStore, LeaseToken, MemoryStore, Retention, StoreErrorKind,
};
use webhook_guard::{FixedClock, RateLimiter};

/// Set in a child: the scenario it runs.
const SCENARIO_ENV: &str = "FLOOD_MEMORY_SCENARIO";
/// Set in a child: how many distinct keys the flood sends.
const KEYS_ENV: &str = "FLOOD_MEMORY_KEYS";
/// The MemoryStore's default bound.
const STORE_BOUND: usize = webhook_guard::dedupe::DEFAULT_MAX_ENTRIES;
/// How far past its capacity the `store 64 MiB filled` flood goes: 5 %.
const OVERFILL_DIV: usize = 20;
/// The limiter's default `max_tracked_clients`.
const LIMITER_BOUND: usize = 100_000;
/// How far past its bound a limiter may be: it measures itself every 256
/// calls.
const LIMITER_SLACK: usize = 256;
/// Longer than the limiters' quota takes to refill (1 ms).
const REFILL_WAIT: Duration = Duration::from_millis(20);

const SCENARIOS: [&str; 6] = [
    "store-aged-100",
    "store-aged-200",
    "store-young",
    "store-filled",
    "limiter-v4",
    "limiter-v6",
];

/// One line of the table.
struct Row {
    scenario: String,
    sent: u64,
    tracked: usize,
    bound: usize,
    /// Claims that failed `Full`, or checks answered 429; `None` if not
    /// applicable.
    refused: Option<u64>,
    rss_before: u64,
    rss_after: u64,
    secs: f64,
    /// The store's `table_bytes()` at the end (0 for a limiter).
    table_bytes: u64,
}

impl Row {
    fn to_line(&self) -> String {
        format!(
            "ROW\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.scenario,
            self.sent,
            self.tracked,
            self.bound,
            self.refused.map_or_else(|| "-".to_owned(), |r| r.to_string()),
            self.rss_before,
            self.rss_after,
            self.secs,
            self.table_bytes
        )
    }

    fn from_line(line: &str) -> Option<Self> {
        let mut f = line.strip_prefix("ROW\t")?.split('\t');
        Some(Self {
            scenario: f.next()?.to_owned(),
            sent: f.next()?.parse().ok()?,
            tracked: f.next()?.parse().ok()?,
            bound: f.next()?.parse().ok()?,
            refused: f.next()?.parse().ok(),
            rss_before: f.next()?.parse().ok()?,
            rss_after: f.next()?.parse().ok()?,
            secs: f.next()?.parse().ok()?,
            table_bytes: f.next()?.parse().ok()?,
        })
    }

    fn delta(&self) -> i64 {
        self.rss_after as i64 - self.rss_before as i64
    }
}

/// The resident set size of this process, in bytes (0 where
/// `/proc/self/status` cannot be read).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn mib(bytes: i64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn default_times() -> Retention {
    Retention::new(
        Duration::from_secs(60),
        Duration::from_secs(600),
        Duration::from_secs(72 * 3600),
    )
}

/// How a flooded store is bounded.
enum Bound {
    Entries(usize),
    Bytes(usize),
}

/// Floods a MemoryStore with `n` distinct keys (`None`: its capacity plus
/// 5 %), moving its clock one second every `keys_per_second` keys (never,
/// if `None`).
fn flood_store(name: &str, n: Option<u64>, bound: Bound, keys_per_second: Option<u64>) -> Vec<Row> {
    let clock = Arc::new(FixedClock::new(1_700_000_000));
    let max_bytes = match bound {
        Bound::Bytes(max) => Some(max),
        Bound::Entries(_) => None,
    };
    let builder = match bound {
        Bound::Entries(max) => MemoryStore::builder().max_entries(NonZeroUsize::new(max).unwrap()),
        Bound::Bytes(max) => MemoryStore::builder().max_bytes(NonZeroUsize::new(max).unwrap()),
    };
    let store = builder.clock(clock.clone()).build();
    let n = n.unwrap_or_else(|| {
        let capacity = store.capacity();
        u64::try_from(capacity + capacity / OVERFILL_DIV).unwrap()
    });
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let times = default_times();
    let rss_before = rss();
    let started = Instant::now();
    let mut full = 0u64;
    rt.block_on(async {
        for i in 0..n {
            if keys_per_second.is_some_and(|rate| i > 0 && i % rate == 0) {
                clock.advance(1);
            }
            let key = DedupeKey::from_id("flood", &i.to_le_bytes());
            let token = LeaseToken::random();
            match store.claim(&key, token, times).await {
                Ok(Claim::Acquired) => store.complete(&key, token, times).await.expect("complete"),
                Ok(other) => panic!("key {i} is not fresh: {other:?}"),
                Err(e) if e.kind() == StoreErrorKind::Full => full += 1,
                Err(e) => panic!("the memory store failed: {e}"),
            }
        }
    });
    let secs = started.elapsed().as_secs_f64();
    if let Some(max) = max_bytes {
        assert!(
            store.table_bytes() <= max,
            "BOUND EXCEEDED: {name}: tables of {} bytes, more than {max}",
            store.table_bytes()
        );
    }
    vec![Row {
        scenario: name.to_owned(),
        sent: n,
        tracked: store.len(),
        bound: store.capacity(),
        refused: Some(full),
        rss_before,
        rss_after: rss(),
        secs,
        table_bytes: u64::try_from(store.table_bytes()).unwrap(),
    }]
}

/// Sends `n` distinct clients (`client(i)`) through a limiter with the
/// default bound, then forgets the idle ones.
fn flood_limiter(name: &str, n: u64, client: impl Fn(u64) -> IpAddr) -> Vec<Row> {
    let limiter = RateLimiter::builder()
        .per_second(NonZeroU32::new(1_000).unwrap())
        .burst(NonZeroU32::MIN)
        .max_tracked_clients(NonZeroUsize::new(LIMITER_BOUND).unwrap())
        .build();
    let headers = HeaderMap::new();
    let rss_before = rss();
    let started = Instant::now();
    let mut refused = 0u64;
    for i in 0..n {
        if limiter.check(client(i), &headers).is_err() {
            refused += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let flooded = Row {
        scenario: name.to_owned(),
        sent: n,
        tracked: limiter.tracked_clients(),
        bound: LIMITER_BOUND,
        refused: Some(refused),
        rss_before,
        rss_after: rss(),
        secs,
        table_bytes: 0,
    };
    std::thread::sleep(REFILL_WAIT);
    let started = Instant::now();
    limiter.forget_idle_clients();
    let forgotten = Row {
        scenario: format!("{name}, after forget"),
        sent: n,
        tracked: limiter.tracked_clients(),
        bound: LIMITER_BOUND,
        refused: None,
        rss_before,
        rss_after: rss(),
        secs: started.elapsed().as_secs_f64(),
        table_bytes: 0,
    };
    vec![flooded, forgotten]
}

/// Runs one scenario (in a child) and prints its rows.
fn child(scenario: &str, n: u64) -> ExitCode {
    println!("BASE\t{}", rss());
    let rows = match scenario {
        "store-aged-100" => flood_store(
            "store aged 100/s",
            Some(n),
            Bound::Entries(STORE_BOUND),
            Some(100),
        ),
        "store-aged-200" => flood_store(
            "store aged 200/s",
            Some(n),
            Bound::Entries(STORE_BOUND),
            Some(200),
        ),
        "store-young" => flood_store(
            "store young",
            Some(n),
            Bound::Entries(usize::try_from(n).unwrap()),
            None,
        ),
        "store-filled" => {
            // The default bound, except in the quick check run.
            let bytes = if n >= 100_000 {
                MemoryStore::DEFAULT_MAX_BYTES
            } else {
                1 << 20
            };
            let name = format!("store {} MiB filled", bytes >> 20);
            flood_store(&name, None, Bound::Bytes(bytes), None)
        }
        "limiter-v4" => flood_limiter("limiter IPv4", n, |i| {
            // Distinct addresses from 1.0.0.0 up.
            IpAddr::V4(Ipv4Addr::from(0x0100_0000 + u32::try_from(i).unwrap()))
        }),
        "limiter-v6" => flood_limiter("limiter IPv6 /64", n, |i| {
            // 2001:db8:<i as 32 bits>::1, one /64 each.
            let bits = (0x2001_0db8u128 << 96) | (u128::from(i) << 64) | 1;
            IpAddr::V6(Ipv6Addr::from(bits))
        }),
        other => {
            eprintln!("unknown scenario {other}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    for row in &rows {
        println!("{}", row.to_line());
        let limit = if row.scenario.starts_with("limiter") {
            row.bound + LIMITER_SLACK
        } else {
            row.bound
        };
        if row.tracked > limit {
            eprintln!(
                "BOUND EXCEEDED: {}: {} tracked keys, more than {limit}",
                row.scenario, row.tracked
            );
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    if let Ok(scenario) = std::env::var(SCENARIO_ENV) {
        let n = std::env::var(KEYS_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        return child(&scenario, n);
    }

    let benching = std::env::args().any(|a| a == "--bench");
    let smoke = std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1");
    let (n, mode): (u64, &str) = match (benching, smoke) {
        (true, false) => (1_000_000, "full"),
        (_, true) => (100_000, "smoke (BENCH_SMOKE=1)"),
        (false, false) => (20_000, "check (run without --bench)"),
    };
    let exe = std::env::current_exe().expect("the path of this program");

    let mut rows = Vec::new();
    let mut baseline = None;
    let mut failed = Vec::new();
    for scenario in SCENARIOS {
        let output = Command::new(&exe)
            .env(SCENARIO_ENV, scenario)
            .env(KEYS_ENV, n.to_string())
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("re-running this program for a scenario");
        let stdout = String::from_utf8_lossy(&output.stdout);
        for line in stdout.lines() {
            if let Some(base) = line.strip_prefix("BASE\t") {
                baseline.get_or_insert(base.parse::<u64>().unwrap_or(0));
            } else if let Some(row) = Row::from_line(line) {
                rows.push(row);
            }
        }
        if !output.status.success() {
            failed.push(scenario);
        }
    }

    print_table(n, mode, baseline.unwrap_or(0), &rows);
    if failed.is_empty() {
        println!(
            "\nall bounds held (store len <= capacity, tables <= max_bytes; limiter tracked <= max_tracked + {LIMITER_SLACK})"
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("\nFAILED: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

fn print_table(n: u64, mode: &str, baseline: u64, rows: &[Row]) {
    println!("\nflood_memory: {n} distinct keys per scenario, mode {mode}");
    println!(
        "baseline RSS of a fresh process: {} MiB; each scenario below runs in its own process",
        mib(baseline as i64)
    );
    println!(
        "limiters: 1000/s, burst 1 (refills in 1 ms); `after forget` = forget_idle_clients() after {} ms\n",
        REFILL_WAIT.as_millis()
    );
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8}",
        "scenario",
        "sent",
        "tracked",
        "bound",
        "refused",
        "RSS before",
        "RSS after",
        "Δ MiB",
        "Δ B/key",
        "tbl B/key",
        "secs"
    );
    for r in rows {
        let per_key = if r.tracked > 0 {
            format!("{:.0}", r.delta() as f64 / r.tracked as f64)
        } else {
            "-".to_owned()
        };
        let table_per_key = if r.table_bytes > 0 && r.tracked > 0 {
            format!("{:.1}", r.table_bytes as f64 / r.tracked as f64)
        } else {
            "-".to_owned()
        };
        let refused = r.refused.map_or_else(
            || "-".to_owned(),
            |x| {
                if r.scenario.starts_with("store") {
                    format!("{x} Full")
                } else {
                    format!("{x} 429")
                }
            },
        );
        println!(
            "{:<32} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8.2}",
            r.scenario,
            r.sent,
            r.tracked,
            r.bound,
            refused,
            mib(r.rss_before as i64),
            mib(r.rss_after as i64),
            mib(r.delta()),
            per_key,
            table_per_key,
            r.secs
        );
    }

    println!("\nratios:");
    let find = |name: &str| rows.iter().find(|r| r.scenario == name);
    for r in rows {
        println!(
            "  {:<32} tracked/sent {:>6.2}%  RSS after/baseline {:>5.1}x",
            r.scenario,
            100.0 * r.tracked as f64 / r.sent as f64,
            r.rss_after as f64 / baseline.max(1) as f64
        );
    }
    if let Some(young) = find("store young") {
        for name in ["store aged 100/s", "store aged 200/s"] {
            if let Some(aged) = find(name) {
                println!(
                    "  {name}: Δ RSS is {:.1}% of the unbounded store's ({} vs {} MiB)",
                    100.0 * aged.delta() as f64 / young.delta().max(1) as f64,
                    mib(aged.delta()),
                    mib(young.delta())
                );
            }
        }
    }
}
