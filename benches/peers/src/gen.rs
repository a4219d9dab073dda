//! `gen <n> <file>`: the pool of pre-signed deliveries the load script
//! replays.
//!
//! One delivery per line, tab-separated: the request headers as
//! `Name: value` fields, then the body (compact JSON: no tab, no newline).
//! `scripts/load/pool.lua` reads the file when wrk starts and builds each
//! request once with `wrk.format`.

use std::fs::File;
use std::io::{BufWriter, Write};

use webhook_guard::test_util::TestSigner;
use webhook_guard::Scheme;

use crate::payload;

/// The largest pool `gen` writes (about 1.3 KB a delivery).
pub(crate) const MAX_DELIVERIES: u64 = 1_000_000;

/// Writes `n` distinct signed GitHub deliveries to `path`.
pub(crate) fn run(n: u64, path: &str) -> Result<(), String> {
    if n == 0 || n > MAX_DELIVERIES {
        return Err(format!("<n> must be between 1 and {MAX_DELIVERIES}, not {n}"));
    }
    let signer = TestSigner::new(&Scheme::github(), payload::SECRET)
        .map_err(|e| format!("signer: {e}"))?
        .event_type(payload::EVENT);
    let file = File::create(path).map_err(|e| format!("cannot create {path}: {e}"))?;
    let mut out = BufWriter::new(file);
    let write_err = |e: std::io::Error| format!("cannot write {path}: {e}");
    for i in 1..=n {
        let body = payload::body(i);
        // X-GitHub-Delivery is informational (GitHub does not sign it); a
        // distinct GUID-like id per delivery, as GitHub sends.
        let signer = signer.clone().id(format!("00000000-0000-4000-8000-{i:012x}"));
        write!(out, "Content-Type: application/json").map_err(write_err)?;
        for (name, value) in &signer.headers(body.as_bytes()) {
            let value = value
                .to_str()
                .map_err(|_| format!("header {name} is not printable ASCII"))?;
            write!(out, "\t{name}: {value}").map_err(write_err)?;
        }
        // serde_json escapes control characters, so the body is one line.
        writeln!(out, "\t{body}").map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    Ok(())
}
