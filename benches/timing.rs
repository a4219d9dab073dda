//! Timing check (dudect style): does the time [`Verifier::verify`] takes to
//! reject a forged signature depend on *where* the forgery is wrong?
//!
//! | test | class Left | class Right | gate |
//! |---|---|---|---|
//! | `verify_first_vs_last_byte` | GitHub signature, first tag byte wrong | last tag byte wrong | max \|t\| < 5 |
//! | `naive_first_vs_last_byte` | early-exit compare of 4 KiB, first byte differs | last byte differs | max \|t\| ≥ 5 |
//! | `naive_tag_first_vs_last_byte` | HMAC of the body, then an early-exit compare of the 32-byte tag, first byte wrong | last byte wrong | none: shows how sensitive the run was |
//!
//! The real path is `verifier.verify(&headers, body.clone())` with the
//! GitHub scheme and a 64-byte body (small, so the comparison is a large
//! share of the work): header parse, hex decode, HMAC-SHA256, the
//! constant-time compare (`subtle`), the rejection. Every measured call
//! asserts that the request is rejected. The wrong byte is the right byte
//! XOR 0x01, 0x10 or 0x11, which keeps every hex digit in its class (digit
//! or letter), so the hex decoder takes the same branches in both classes
//! and only the comparison can tell them apart. Inputs are prepared before
//! timing, in 32 slots whose classes are drawn again every 1024 samples (see
//! [`measure`]): with a fixed input per class, the objects' addresses alone
//! gave |t| ≈ 7–12 over 2 000 000 samples, even in an A/A run.
//!
//! `naive_first_vs_last_byte` is the positive control, in the same run: a
//! comparison that returns at the first differing byte must be flagged, or
//! the check is meaningless (too few samples, too much noise).
//! `naive_tag_first_vs_last_byte` is the same mistake at the real path's
//! scale (a 31-byte difference in a compare after an HMAC); it is reported,
//! not gated, as a measure of how small a leak this run could see.
//!
//! Method (as dudect, Reparaz et al. 2016): classes are interleaved at random
//! from a seeded [`BenchRng`]; each call is timed alone with
//! [`Instant`]; after a warm-up, Welch's t is computed on all samples and on
//! 100 croppings at the percentiles `1 - 0.5^(k/10)` of the pooled times
//! (dudect-bencher's own choice), and the largest |t| is reported.
//! dudect-bencher's `ctbench_main!` prints its t values but does not return
//! them, so this binary has its own `main` and does the statistics itself, to
//! be able to gate on them.
//!
//! The program exits non-zero if the control is **not** flagged
//! (max |t| < 5) or the real path **is** flagged (max |t| ≥ 5).
//!
//! Run:
//!
//! ```text
//! cargo bench --bench timing                  # real path 10 000 000 samples, ~15 s
//! BENCH_SMOKE=1 cargo bench --bench timing    # real path 1 000 000, for CI, a few seconds
//! TIMING_AA=1 cargo bench --bench timing      # A/A: both classes wrong in the first byte
//! ```
//!
//! `TIMING_AA=1` is a check of the harness: every test, the control
//! included, compares like with like, so all three should stay below 5 and
//! the run fails on the unflagged control, as it should.
//!
//! Run without `--bench` (as `cargo test --benches` does) it uses 20 000
//! samples, just to check that it works; the gates still apply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use dudect_bencher::rand::{Rng as _, SeedableRng as _};
use dudect_bencher::{BenchRng, Class};
use hmac::{Hmac, Mac as _};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{Scheme, Verifier};

/// |t| at or above which a test is flagged (dudect's threshold).
const T_THRESHOLD: f64 = 5.0;
/// The RNG seed: the same class schedule on every run.
const SEED: u64 = 0x5eed_d0d0_7157_0001;
/// The webhook secret.
const SECRET: &str = "It's a Secret to Everybody";
/// The real path's body size.
const BODY_LEN: usize = 64;
/// The control's buffer size.
const CONTROL_LEN: usize = 4096;
/// Prepared inputs (slots), half of them in each class at any time.
const POOL: usize = 32;
/// Masks that make a tag byte wrong while keeping both its hex digits in
/// their class (`0`–`9` or `a`–`f`).
const MASKS: [u8; 3] = [0x01, 0x10, 0x11];

/// How many samples each test takes.
struct Plan {
    label: &'static str,
    real: usize,
    control: usize,
    calibration: usize,
}

/// One test's result.
struct Outcome {
    name: &'static str,
    samples: usize,
    secs: f64,
    t: Welch,
    crop: Option<f64>,
    medians: (u64, u64),
}

/// Welch's t-test over two running means and variances (Welford).
#[derive(Clone, Copy, Default)]
struct Welch {
    n: [f64; 2],
    mean: [f64; 2],
    m2: [f64; 2],
}

impl Welch {
    fn push(&mut self, class: usize, x: f64) {
        self.n[class] += 1.0;
        let d = x - self.mean[class];
        self.mean[class] += d / self.n[class];
        self.m2[class] += d * (x - self.mean[class]);
    }

    fn t(&self) -> f64 {
        if self.n[0] < 2.0 || self.n[1] < 2.0 {
            return 0.0;
        }
        let v0 = self.m2[0] / (self.n[0] - 1.0);
        let v1 = self.m2[1] / (self.n[1] - 1.0);
        let den = (v0 / self.n[0] + v1 / self.n[1]).sqrt();
        if den == 0.0 {
            0.0
        } else {
            (self.mean[0] - self.mean[1]) / den
        }
    }
}

/// Samples between two reassignments of the slots' classes.
const BATCH: usize = 1024;

/// Times `op` on one slot per sample, after a warm-up of a tenth as many
/// samples (discarded), and runs the statistics.
///
/// Every [`BATCH`] samples each slot gets a fresh random class (half the
/// slots each, paired at random) and a random [`MASKS`] entry through
/// `set`, so a slot's memory serves both classes in turn: effects of one
/// object's address or alignment cannot line up with the class.
fn measure<S>(
    name: &'static str,
    rng: &mut BenchRng,
    samples: usize,
    slots: &mut [S],
    mut set: impl FnMut(&mut S, Class, u8),
    mut op: impl FnMut(&S),
) -> Outcome {
    assert!(slots.len() >= 2 && slots.len().is_multiple_of(2));
    let mut classes = vec![Class::Left; slots.len()];
    let mut run = |rng: &mut BenchRng, n: usize, times: Option<&mut Vec<(usize, u64)>>| {
        let mut times = times;
        let mut done = 0;
        while done < n {
            for pair in 0..slots.len() / 2 {
                let r = rng.next_u64();
                let left = 2 * pair + (r & 1) as usize;
                let right = 2 * pair + 1 - (r & 1) as usize;
                for (slot, class, bits) in [(left, Class::Left, r >> 8), (right, Class::Right, r >> 16)] {
                    classes[slot] = class;
                    set(
                        &mut slots[slot],
                        class,
                        MASKS[(bits % MASKS.len() as u64) as usize],
                    );
                }
            }
            for _ in 0..BATCH.min(n - done) {
                let slot = (rng.next_u64() % slots.len() as u64) as usize;
                let target = &slots[slot];
                let start = Instant::now();
                op(target);
                let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                if let Some(times) = times.as_deref_mut() {
                    times.push((class_index(classes[slot]), ns));
                }
                done += 1;
            }
        }
    };
    run(rng, (samples / 10).max(1000), None);
    let mut times = Vec::with_capacity(samples);
    let started = Instant::now();
    run(rng, samples, Some(&mut times));
    let secs = started.elapsed().as_secs_f64();
    let (t, crop) = max_t(&times);
    Outcome {
        name,
        samples,
        secs,
        t,
        crop,
        medians: (median(&times, 0), median(&times, 1)),
    }
}

fn class_index(class: Class) -> usize {
    match class {
        Class::Left => 0,
        Class::Right => 1,
    }
}

fn median(times: &[(usize, u64)], class: usize) -> u64 {
    let mut v: Vec<u64> = times.iter().filter(|s| s.0 == class).map(|s| s.1).collect();
    if v.is_empty() {
        return 0;
    }
    let mid = v.len() / 2;
    *v.select_nth_unstable(mid).1
}

/// The test with the largest |t|: uncropped, or cropped at one of dudect's
/// 100 percentiles (returned with it).
fn max_t(times: &[(usize, u64)]) -> (Welch, Option<f64>) {
    let mut sorted: Vec<u64> = times.iter().map(|s| s.1).collect();
    sorted.sort_unstable();
    let last = (sorted.len() - 1) as f64;
    let cuts: Vec<f64> = (1..=100)
        .map(|k| {
            let pct = 1.0 - 0.5_f64.powf(f64::from(k) / 10.0);
            let rank = pct * last;
            let lo = rank.floor();
            let i = lo as usize;
            let hi = sorted.get(i + 1).copied().unwrap_or(sorted[i]) as f64;
            sorted[i] as f64 + (hi - sorted[i] as f64) * (rank - lo)
        })
        .collect();
    let mut all = Welch::default();
    let mut cropped = vec![Welch::default(); cuts.len()];
    for &(class, ns) in times {
        let x = ns as f64;
        all.push(class, x);
        // The cuts ascend: the croppings that keep `x` are a suffix.
        let first = cuts.partition_point(|&cut| cut <= x);
        for test in &mut cropped[first..] {
            test.push(class, x);
        }
    }
    let mut best = (all, None);
    for (test, &cut) in cropped.iter().zip(&cuts) {
        if test.t().abs() > best.0.t().abs() {
            best = (*test, Some(cut));
        }
    }
    best
}

/// The header name of GitHub's signature.
const SIGNATURE: &str = "x-hub-signature-256";

/// The tag byte a class makes wrong: the first (Left) or the last (Right).
/// With `TIMING_AA=1` both classes make the first byte wrong: an A/A run,
/// to check that the harness itself flags nothing.
fn wrong_byte(class: Class, len: usize) -> usize {
    match class {
        Class::Left => 0,
        Class::Right if std::env::var_os("TIMING_AA").is_some() => 0,
        Class::Right => len - 1,
    }
}

/// The real path: first versus last tag byte wrong.
fn verify_first_vs_last_byte(rng: &mut BenchRng, samples: usize) -> Outcome {
    let verifier = Verifier::builder(Scheme::github())
        .secret(SECRET)
        .build()
        .unwrap();
    let body = Bytes::from(vec![b'x'; BODY_LEN]);
    let signer = TestSigner::new(&Scheme::github(), SECRET).unwrap();
    let signed = signer.headers(&body);
    assert!(
        verifier.verify(&signed, body.clone()).is_ok(),
        "the signer's own signature"
    );
    let hex_tag = signed[SIGNATURE]
        .to_str()
        .unwrap()
        .strip_prefix("sha256=")
        .unwrap();
    let tag: [u8; 32] = hex::decode(hex_tag).unwrap().try_into().unwrap();

    let mut slots = vec![signed.clone(); POOL];
    let set = |headers: &mut HeaderMap, class: Class, mask: u8| {
        let mut wrong = tag;
        wrong[wrong_byte(class, wrong.len())] ^= mask;
        let value = HeaderValue::from_str(&format!("sha256={}", hex::encode(wrong))).unwrap();
        headers.insert(SIGNATURE, value);
    };
    for class in [Class::Left, Class::Right] {
        for mask in MASKS {
            let mut headers = signed.clone();
            set(&mut headers, class, mask);
            assert!(
                verifier.verify(&headers, body.clone()).is_err(),
                "a forged signature passed"
            );
        }
    }
    measure(
        "verify_first_vs_last_byte",
        rng,
        samples,
        &mut slots,
        set,
        |headers| {
            let result = verifier.verify(black_box(headers), black_box(body.clone()));
            assert!(black_box(result).is_err());
        },
    )
}

/// The naive comparison the controls use: returns at the first difference.
#[inline(never)]
fn naive_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    for (x, y) in a.iter().zip(b) {
        if black_box(*x) != black_box(*y) {
            return false;
        }
    }
    true
}

/// Positive control: 4 KiB, first versus last byte different.
fn naive_first_vs_last_byte(rng: &mut BenchRng, samples: usize) -> Outcome {
    let reference = vec![0x5a_u8; CONTROL_LEN];
    let mut slots = vec![reference.clone(); POOL];
    let set = |buf: &mut Vec<u8>, class: Class, mask: u8| {
        buf[0] = reference[0];
        buf[CONTROL_LEN - 1] = reference[CONTROL_LEN - 1];
        buf[wrong_byte(class, CONTROL_LEN)] ^= mask;
    };
    measure(
        "naive_first_vs_last_byte",
        rng,
        samples,
        &mut slots,
        set,
        |candidate| {
            assert!(!naive_eq(black_box(&reference), black_box(candidate)));
        },
    )
}

/// Calibration: the real path's leak, had it compared naively — an HMAC of
/// the 64-byte body, then an early-exit compare of the 32-byte tag.
fn naive_tag_first_vs_last_byte(rng: &mut BenchRng, samples: usize) -> Outcome {
    let key = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    let body = vec![b'x'; BODY_LEN];
    let tag: [u8; 32] = key.clone().chain_update(&body).finalize().into_bytes().into();
    let mut slots = vec![tag; POOL];
    let set = |candidate: &mut [u8; 32], class: Class, mask: u8| {
        *candidate = tag;
        candidate[wrong_byte(class, tag.len())] ^= mask;
    };
    measure(
        "naive_tag_first_vs_last_byte",
        rng,
        samples,
        &mut slots,
        set,
        |candidate| {
            let computed = key.clone().chain_update(black_box(&body)).finalize().into_bytes();
            assert!(!naive_eq(&computed, black_box(candidate)));
        },
    )
}

fn report(o: &Outcome) {
    let t = o.t.t();
    let crop = o
        .crop
        .map_or_else(|| "none".to_owned(), |c| format!("< {c:.0} ns"));
    let kept = (o.t.n[0] + o.t.n[1]) as usize;
    println!(
        "{:<30} n = {:>9}  max |t| = {:>8.2}  (crop {crop}, {kept} kept)  median ns L/R = {}/{}  {:.1} s",
        o.name,
        o.samples,
        t.abs(),
        o.medians.0,
        o.medians.1,
        o.secs,
    );
}

fn main() -> ExitCode {
    let benching = std::env::args().any(|a| a == "--bench");
    let smoke = std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1");
    let plan = match (benching, smoke) {
        (true, false) => Plan {
            label: "full",
            real: 10_000_000,
            control: 200_000,
            calibration: 2_000_000,
        },
        (_, true) => Plan {
            label: "smoke (BENCH_SMOKE=1)",
            real: 1_000_000,
            control: 50_000,
            calibration: 200_000,
        },
        (false, false) => Plan {
            label: "check (run without --bench)",
            real: 20_000,
            control: 20_000,
            calibration: 20_000,
        },
    };
    println!(
        "timing: {} run, seed {SEED:#018x}, threshold |t| >= {T_THRESHOLD}",
        plan.label
    );
    let started = Instant::now();
    let mut rng = BenchRng::seed_from_u64(SEED);
    let control = naive_first_vs_last_byte(&mut rng, plan.control);
    report(&control);
    let calibration = naive_tag_first_vs_last_byte(&mut rng, plan.calibration);
    report(&calibration);
    let real = verify_first_vs_last_byte(&mut rng, plan.real);
    report(&real);
    println!("total {:.1} s", started.elapsed().as_secs_f64());

    let mut ok = true;
    if control.t.t().abs() < T_THRESHOLD {
        eprintln!(
            "FAIL: the control (naive early exit) was not flagged: max |t| = {:.2} < {T_THRESHOLD}; \
             the check cannot see a leak in this run",
            control.t.t().abs()
        );
        ok = false;
    }
    if real.t.t().abs() >= T_THRESHOLD {
        eprintln!(
            "FAIL: Verifier::verify takes a different time for a wrong first and a wrong last \
             byte: max |t| = {:.2} >= {T_THRESHOLD}",
            real.t.t().abs()
        );
        ok = false;
    }
    if ok {
        println!(
            "ok: control flagged (|t| = {:.1}), real path not (|t| = {:.2}); \
             calibration (naive 32-byte compare after HMAC, not gated): |t| = {:.2}",
            control.t.t().abs(),
            real.t.t().abs(),
            calibration.t.t().abs()
        );
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
