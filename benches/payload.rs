//! What the payload step costs next to plain serde, measured with criterion.
//!
//! The bodies are Stripe-shaped `invoice.paid` events
//! (`{"id","object":"event","type","created","data":{"object":{…}}}`) of
//! exactly 256 B, 1 KiB, 16 KiB and 256 KiB: the invoice carries
//! `lines.data`, an array of 256-byte line items, as many as fit (none at
//! 256 B, 3 at 1 KiB, 62 at 16 KiB, 1 019 at 256 KiB), and its
//! `description` pads the body to the exact size. The schema is
//! `examples/schemas/stripe.json`, compiled once as the default schema; the
//! typed payload is [`StripeEvent`], whose invoice and line items are typed
//! structs too (so the typed step deserializes every line item).
//!
//! One group per size, `payload/<size>`, so every ratio comes from one run:
//!
//! - `serde_typed`: `serde_json::from_slice::<StripeEvent>`, one typed
//!   parse (the baseline);
//! - `serde_value`: `serde_json::from_slice::<serde_json::Value>`, one
//!   generic parse;
//! - `guard_parse_validate_typed`: webhook-guard's payload step on a fresh
//!   [`VerifiedWebhook`] (made by `Verifier::verify` outside the timing),
//!   as the layer and `EventRouter` run it: `schemas.validate_webhook(&hook)`
//!   (the one strict parse into a compact document, refusing duplicate
//!   keys, and the schema on that document) and `hook.json::<StripeEvent>()`
//!   (deserialized from the same document, not from the bytes);
//! - `guard_parse`: the one parse alone (`hook.json::<IgnoredAny>()`, which
//!   forces it and reads nothing); `guard_json_value`: the parse and a
//!   `serde_json::Value` built from it, for applications that ask for one;
//!   `guard_validate` and `guard_typed_from_parsed`: the schema and the
//!   typed read on a hook whose body is already parsed;
//! - `serde_typed_from_value`: `StripeEvent::deserialize(&value)` from an
//!   already parsed `Value`, without the hook's error-path tracking
//!   (`serde_path_to_error`): what `guard_typed_from_parsed` costs at least;
//! - `serde_value_validate_serde_typed`: what a layer that parses twice
//!   would cost: `from_slice::<Value>`, `jsonschema`'s validator on the
//!   `Value` (the same schema), `from_slice::<StripeEvent>`;
//! - `verify_parse_validate_typed`: the whole pipeline, HMAC included:
//!   `Verifier::verify` (Stripe scheme, schemas attached, fixed clock), then
//!   validate and typed as above. (`Verifier::verify` itself does not
//!   validate: the layer does, with the same public `Schemas::validate_webhook`.)
//! - `per_request_pipeline` and `per_request_serde_typed`: the whole
//!   pipeline and serde's typed parse with everything dropped inside the
//!   timing (`iter`), as one request of a server pays for them: the
//!   allocator reuses warm memory, where `iter_batched` keeps a batch of
//!   parsed trees alive and adds page faults no server sees;
//! - `raw_hmac_sha256`: HMAC-SHA256 over the same signed bytes (`<t>.` and
//!   the body) with a pre-keyed, cloned `Hmac<Sha256>` and `verify_slice`
//!   against the header's tag: the floor for `verify_parse_validate_typed`.
//!
//! Every measurement that builds something (a parsed tree, a typed event,
//! a hook) returns it and criterion drops it after the timing
//! (`iter_batched`), so no variant pays for freeing a parsed tree and the
//! others not. Before measuring, each size is checked: the
//! body has the intended size, it verifies, passes the schema, the typed
//! result through the hook equals serde's, and the hook's `Value` is
//! cached (`json_value` twice returns the same value).
//!
//! Run:
//!
//! ```text
//! cargo bench --all-features --bench payload                   # full run
//! BENCH_SMOKE=1 cargo bench --all-features --bench payload     # CI: tiny times
//! cargo bench --all-features --bench payload -- --test         # one iteration each
//! cargo bench --all-features --bench payload -- payload/1KiB   # one size (a criterion filter)
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use webhook_guard::schema::Schemas;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{FixedClock, Scheme, VerifiedWebhook, Verifier};

/// The Stripe endpoint secret of every benchmark.
const SECRET: &str = "whsec_payload_bench_secret";
/// The signed timestamp, and the verifier's fixed clock.
const NOW: i64 = 1_700_000_000;
/// The Stripe event schema shipped with the examples.
const STRIPE_SCHEMA: &str = include_str!("../examples/schemas/stripe.json");
/// Group names and exact body sizes.
const SIZES: [(&str, usize); 4] = [
    ("256B", 256),
    ("1KiB", 1024),
    ("16KiB", 16 * 1024),
    ("256KiB", 256 * 1024),
];

/// A Stripe event, typed all the way down.
#[derive(Debug, PartialEq, Deserialize)]
struct StripeEvent {
    id: String,
    r#type: String,
    created: i64,
    data: Data,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Data {
    object: Invoice,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Invoice {
    id: String,
    amount_due: i64,
    currency: String,
    status: String,
    description: String,
    lines: Lines,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Lines {
    data: Vec<LineItem>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct LineItem {
    id: String,
    amount: i64,
    currency: String,
    description: String,
    quantity: u64,
    period: Period,
    price: Price,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Period {
    start: i64,
    end: i64,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Price {
    id: String,
    unit_amount: i64,
}

/// `BENCH_SMOKE=1`: tiny warm-up and measurement times, for CI.
fn smoke() -> bool {
    std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn config() -> Criterion {
    let c = Criterion::default();
    if smoke() {
        // 40 benchmarks: the analysis (fewer resamples) and the timing
        // together stay under ~0.15 s each.
        c.warm_up_time(Duration::from_millis(20))
            .measurement_time(Duration::from_millis(50))
            .sample_size(10)
            .nresamples(5000)
    } else {
        c
    }
}

/// Line item `i` (256 bytes while `i` has at most 8 digits).
fn line_item(i: usize) -> String {
    format!(
        r#"{{"id":"il_1OaQ7x2eZvKYlo2C{i:08}","object":"line_item","amount":1500,"currency":"usd","description":"1 x Pro plan (at $15.00 / month)","quantity":1,"period":{{"start":1700000000,"end":1702592000}},"price":{{"id":"price_1OaQ7x2eZvKYlo2C","unit_amount":1500}}}}"#
    )
}

/// The event with `items` line items (joined with commas) and a
/// description of `pad` bytes.
fn render(items: &str, count: usize, pad: usize) -> String {
    format!(
        r#"{{"id":"evt_1OaQ7x2eZvKYlo2C","object":"event","type":"invoice.paid","created":{NOW},"data":{{"object":{{"id":"in_1OaQ7x2eZvKYlo2C","object":"invoice","amount_due":{},"currency":"usd","status":"paid","description":"{}","lines":{{"data":[{items}]}}}}}}}}"#,
        1500 * count,
        "x".repeat(pad),
    )
}

/// A Stripe event of exactly `size` bytes, and its number of line items.
fn stripe_event(size: usize) -> (Bytes, usize) {
    let mut items = String::new();
    let mut count = 0;
    loop {
        let next = line_item(count);
        let sep = usize::from(count > 0);
        // The length with one more item and no padding, without rendering
        // it: only the items and the total's digits change.
        let longer = render("", count + 1, 0).len() + items.len() + sep + next.len();
        if longer > size {
            break;
        }
        if count > 0 {
            items.push(',');
        }
        items.push_str(&next);
        count += 1;
    }
    let bare = render(&items, count, 0).len();
    assert!(bare <= size, "the smallest event is {bare} bytes, over {size}");
    let body = render(&items, count, size - bare);
    assert_eq!(body.len(), size);
    (Bytes::from(body), count)
}

fn stripe_schemas() -> Schemas {
    let schema: Value = serde_json::from_str(STRIPE_SCHEMA).expect("stripe.json is JSON");
    Schemas::builder()
        .default_schema(schema)
        .build()
        .expect("stripe.json compiles")
}

/// webhook-guard's payload step on a verified delivery, as the layer and
/// `EventRouter` run it: the one strict parse (a compact document, no
/// `Value`), the schema on it, the typed payload from it.
fn parse_validate_typed(schemas: &Schemas, hook: &VerifiedWebhook) -> StripeEvent {
    schemas
        .validate_webhook(hook)
        .expect("the body passes the schema");
    hook.json::<StripeEvent>().expect("the body is a StripeEvent")
}

/// The hook's one parse alone: a typed read that skips everything
/// (`IgnoredAny`) forces it and costs nothing more.
fn parse(hook: &VerifiedWebhook) {
    hook.json::<IgnoredAny>().expect("the body is JSON");
}

/// The batch size for `iter_batched`: about 1 MiB of body per batch, so the
/// retained outputs (parsed trees, dropped after each batch) stay small.
fn batch(len: usize) -> BatchSize {
    BatchSize::NumIterations(((1 << 20) / len).clamp(8, 1024) as u64)
}

/// The hex `v1` tag and the `t` of a `Stripe-Signature` header.
fn stripe_tag(headers: &HeaderMap) -> (Vec<u8>, String) {
    let header = headers["stripe-signature"].to_str().unwrap();
    let mut t = None;
    let mut v1 = None;
    for item in header.split(',') {
        match item.split_once('=') {
            Some(("t", value)) => t = Some(value.to_owned()),
            Some(("v1", value)) => v1 = Some(hex::decode(value).unwrap()),
            _ => {}
        }
    }
    (v1.unwrap(), t.unwrap())
}

fn payload(c: &mut Criterion) {
    let schemas = stripe_schemas();
    let scheme = Scheme::stripe();
    let signer = TestSigner::new(&scheme, SECRET).unwrap().timestamp(NOW);
    let verifier = Verifier::builder(scheme)
        .secret(SECRET)
        .clock(FixedClock::new(NOW))
        .schemas(schemas.clone())
        .build()
        .unwrap();
    let keyed = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();

    for (name, size) in SIZES {
        let (body, items) = stripe_event(size);
        let len = body.len();
        let headers = signer.headers(&body);
        let (tag, t) = stripe_tag(&headers);
        let prefix = format!("{t}.");
        let verify = || verifier.verify(&headers, body.clone()).expect("verified");

        // The checks: every variant does what it claims, on this body.
        let expected: StripeEvent = serde_json::from_slice(&body).unwrap();
        assert_eq!(expected.r#type, "invoice.paid");
        assert_eq!(expected.data.object.lines.data.len(), items);
        let hook = verify();
        let first: *const Value = hook.json_value().unwrap();
        assert!(
            std::ptr::eq(first, hook.json_value().unwrap()),
            "the hook parses once"
        );
        assert_eq!(hook.event_type(), Some("invoice.paid"));
        assert_eq!(parse_validate_typed(&schemas, &hook), expected);
        let mut mac = keyed.clone();
        mac.update(prefix.as_bytes());
        mac.update(&body);
        mac.verify_slice(&tag).expect("the raw HMAC matches");
        drop(hook);
        eprintln!("payload/{name}: {len} bytes, {items} line items");

        let mut group = c.benchmark_group(format!("payload/{name}"));
        group.throughput(Throughput::Bytes(len as u64));

        group.bench_function("serde_typed", |b| {
            b.iter_batched(
                || (),
                |()| serde_json::from_slice::<StripeEvent>(black_box(&body)).unwrap(),
                batch(len),
            );
        });

        group.bench_function("serde_value", |b| {
            b.iter_batched(
                || (),
                |()| serde_json::from_slice::<Value>(black_box(&body)).unwrap(),
                batch(len),
            );
        });

        group.bench_function("guard_parse_validate_typed", |b| {
            b.iter_batched(
                verify,
                |hook| {
                    let event = parse_validate_typed(&schemas, &hook);
                    (hook, event)
                },
                batch(len),
            );
        });

        group.bench_function("guard_parse", |b| {
            b.iter_batched(
                verify,
                |hook| {
                    parse(&hook);
                    hook
                },
                batch(len),
            );
        });

        group.bench_function("guard_json_value", |b| {
            b.iter_batched(
                verify,
                |hook| {
                    hook.json_value().expect("the body is JSON");
                    hook
                },
                batch(len),
            );
        });

        let parsed = || {
            let hook = verify();
            parse(&hook);
            hook
        };

        let hook = parsed();
        group.bench_function("guard_validate", |b| {
            b.iter(|| {
                schemas
                    .validate_webhook(black_box(&hook))
                    .expect("the body passes the schema");
            });
        });
        drop(hook);

        group.bench_function("guard_typed_from_parsed", |b| {
            b.iter_batched(
                parsed,
                |hook| {
                    let event = hook.json::<StripeEvent>().expect("the body is a StripeEvent");
                    (hook, event)
                },
                batch(len),
            );
        });

        let value: Value = serde_json::from_slice(&body).unwrap();
        group.bench_function("serde_typed_from_value", |b| {
            b.iter_batched(
                || (),
                |()| StripeEvent::deserialize(black_box(&value)).unwrap(),
                batch(len),
            );
        });
        drop(value);

        let value_validator = jsonschema::options()
            .build(&serde_json::from_str(STRIPE_SCHEMA).unwrap())
            .unwrap();
        group.bench_function("serde_value_validate_serde_typed", |b| {
            b.iter_batched(
                || (),
                |()| {
                    let value: Value = serde_json::from_slice(black_box(&body)).unwrap();
                    value_validator
                        .validate(&value)
                        .expect("the body passes the schema");
                    let event: StripeEvent = serde_json::from_slice(black_box(&body)).unwrap();
                    (value, event)
                },
                batch(len),
            );
        });

        group.bench_function("verify_parse_validate_typed", |b| {
            b.iter_batched(
                || body.clone(),
                |body| {
                    let hook = verifier.verify(black_box(&headers), body).expect("verified");
                    let event = parse_validate_typed(&schemas, &hook);
                    (hook, event)
                },
                batch(len),
            );
        });

        // The same as one request of a server pays for it: the hook, its
        // parsed tree and the typed event are dropped inside the timing,
        // so the allocator reuses warm memory as it does under load
        // (`iter_batched` above keeps a whole batch of trees alive, which
        // adds page faults no server sees).
        group.bench_function("per_request_pipeline", |b| {
            b.iter(|| {
                let hook = verifier
                    .verify(black_box(&headers), body.clone())
                    .expect("verified");
                let event = parse_validate_typed(&schemas, &hook);
                black_box((hook, event))
            });
        });

        group.bench_function("per_request_serde_typed", |b| {
            b.iter(|| black_box(serde_json::from_slice::<StripeEvent>(black_box(&body)).unwrap()));
        });

        group.bench_function("raw_hmac_sha256", |b| {
            b.iter(|| {
                let mut mac = keyed.clone();
                mac.update(prefix.as_bytes());
                mac.update(black_box(&body));
                mac.verify_slice(&tag).expect("the raw HMAC matches");
            });
        });

        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = payload
}
criterion_main!(benches);
