//! `webhook-guard-peers`: the servers and the request pool of the HTTP load
//! benchmark (`scripts/load.sh`).
//!
//! ```text
//! webhook-guard-peers serve <mode> <addr>   # bare|stack|stack-metrics|full|queue-mem|queue-sqlite|stack-redis|queue-redis; addr e.g. 127.0.0.1:0
//! webhook-guard-peers gen <n> <file>        # n signed deliveries for wrk
//! webhook-guard-peers simulate [options]    # a sender's peak against the demo receiver
//! webhook-guard-peers sqlite-floor [batch] [deliveries] [dir]  # the least a SQLite queue costs
//! ```
//!
//! `simulate` is the capacity check `scripts/capacity.sh` runs; see its
//! module documentation.
//!
//! Every mode runs on the same runtime: tokio's multi-thread runtime with
//! its default worker count, which is the number of CPUs the process may
//! use. The script pins each server to one CPU, so each gets one worker.

use std::process::ExitCode;

mod floor;
mod gen;
mod payload;
mod serve;
mod simulate;

const USAGE: &str = "\
usage: webhook-guard-peers serve <bare|stack|stack-metrics|full|queue-mem|queue-sqlite|stack-redis|queue-redis> <addr>
       webhook-guard-peers gen <n> <file>
       webhook-guard-peers simulate [options]
       webhook-guard-peers sqlite-floor [batch] [deliveries] [dir]

serve  runs one of the load benchmark's servers on <addr> (port 0: any free
       port; the address is printed on stdout) until SIGTERM or ctrl-c.
       bare:  plain axum route, the handler takes the body as bytes
       stack: rate limit + GitHub signature verification + in-memory dedupe
       stack-metrics: stack + MetricsObserver and a Prometheus recorder
       full:  stack + JSON Schema validation + typed dispatch
       queue-mem:    stack, the handler run by an in-memory AckQueue (202)
       queue-sqlite: queue-mem with dedupe and queue in one SQLite file
       stack-redis:  stack with the limiter and dedupe in Redis (WEBHOOK_GUARD_REDIS_URL)
       queue-redis:  queue-mem with the limiter, dedupe and queue in Redis
gen    writes <n> distinct signed GitHub deliveries (1 KiB bodies) to <file>,
       one a line, for scripts/load/pool.lua
simulate  sends a provider's signed deliveries to the demo receiver from
       several source addresses, with an unsigned flood and a signature
       guesser alongside, replays some processed deliveries at the end,
       and checks every answer; exit status 1 when a check failed
sqlite-floor  the CPU per delivery of the least a queue kept in SQLite
       does (a row inserted in batches, then deleted), with and without
       an fsync of the WAL per batch; batch 32, 200000 deliveries, the
       temporary directory by default";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["serve", mode, addr] => match serve::Mode::parse(mode) {
            Some(mode) => serve(mode, addr),
            None => return usage(&format!("unknown mode {mode:?}")),
        },
        ["gen", n, file] => match n.parse::<u64>() {
            Ok(n) => gen::run(n, file),
            Err(_) => return usage(&format!("<n> must be a whole number, not {n:?}")),
        },
        ["simulate", "-h" | "--help"] => {
            println!("{}", simulate::OPTIONS);
            return ExitCode::SUCCESS;
        }
        ["simulate", rest @ ..] => match simulate::run(rest) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) if e.starts_with("--") || e.starts_with("unknown option") => {
                return usage(&format!("{e}\n\n{}", simulate::OPTIONS))
            }
            Err(e) => Err(e),
        },
        ["sqlite-floor", rest @ ..] => floor::run(rest),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => return usage("expected a subcommand"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints `problem` and the usage to stderr; exit status 2.
fn usage(problem: &str) -> ExitCode {
    eprintln!("error: {problem}\n\n{USAGE}");
    ExitCode::from(2)
}

/// Runs a server on the runtime every mode shares.
fn serve(mode: serve::Mode, addr: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(serve::run(mode, addr))
}
