//! Signature verification, side by side with the limit and the peers.
//!
//! One criterion group per scheme and body size (256 B, 1 KiB, 16 KiB,
//! 1 MiB). Every group holds, over the same body:
//!
//! - `raw_hmac`: the floor. `Hmac<Sha256>` keyed once outside the timing,
//!   cloned, fed exactly the bytes the scheme signs (for Stripe `t.` then
//!   the body, for Standard Webhooks `id.ts.` then the body…), then
//!   `verify_slice` (constant time) against the tag. No header parsing, no
//!   clock, nothing else.
//! - `minimal` (the five built-in HMAC schemes): a verifier written for
//!   that scheme alone with the crate's checks and no result to hand over
//!   (`minimal/mod.rs`): what any verifier that checks as much must spend.
//! - `webhook_guard`: `Verifier::verify(&headers, body)` with that scheme,
//!   the real clock and the default tolerance, returning the
//!   `VerifiedWebhook` (dropped inside the timing).
//! - `svix`: `svix::webhooks::Webhook::verify` of a Standard Webhooks
//!   delivery of the same body (svix only speaks that scheme).
//! - `standardwebhooks` (Standard Webhooks groups only): the reference
//!   crate's `Webhook::verify`.
//!
//! Every request also carries the headers a real delivery has besides the
//! scheme's (`Host`, `User-Agent`, `Accept`, `Content-Type`,
//! `Content-Length`, a request id), so header lookups cost what they cost
//! in a server.
//!
//! Run from the crate's root:
//!
//! ```text
//! cargo bench --manifest-path benches/peers/Cargo.toml --bench verify
//! BENCH_SMOKE=1 cargo bench --manifest-path benches/peers/Cargo.toml --bench verify   # CI
//! python3 scripts/bench_ratios.py          # the ratio table from criterion's output
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{Scheme, Verifier};

mod minimal;

const SIZES: [(usize, &str); 4] = [
    (256, "256B"),
    (1024, "1KiB"),
    (16 * 1024, "16KiB"),
    (1024 * 1024, "1MiB"),
];

/// The text secret of every text-keyed scheme.
const TEXT_SECRET: &str = "whsec_plain_text_secret_for_benches";
/// The Standard Webhooks secret (base64 key after `whsec_`).
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID: &str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";

/// `BENCH_SMOKE=1`: tiny warm-up and measurement times, for CI.
fn smoke() -> bool {
    std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn config() -> Criterion {
    let c = Criterion::default();
    if smoke() {
        c.warm_up_time(Duration::from_millis(50))
            .measurement_time(Duration::from_millis(100))
            .sample_size(10)
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
    }
}

/// A JSON body of exactly `len` bytes.
fn body(len: usize) -> Bytes {
    let mut body = String::from(r#"{"type":"invoice.paid","id":"evt_1","action":"opened","padding":""#);
    while body.len() < len - 2 {
        body.push('x');
    }
    body.push_str(r#""}"#);
    assert_eq!(body.len(), len);
    Bytes::from(body)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What each scheme signs before the body, and how its key is made.
struct Case {
    name: &'static str,
    scheme: Scheme,
    secret: &'static str,
    key: Vec<u8>,
    prefix: fn(i64) -> Vec<u8>,
    /// Decodes the tag from the signed headers.
    tag: fn(&HeaderMap) -> Vec<u8>,
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> &'h str {
    h.get(name).unwrap().to_str().unwrap()
}

fn cases() -> Vec<Case> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
    vec![
        Case {
            name: "stripe",
            scheme: Scheme::stripe(),
            secret: TEXT_SECRET,
            key: TEXT_SECRET.as_bytes().to_vec(),
            prefix: |t| format!("{t}.").into_bytes(),
            tag: |h| {
                let v = header(h, "stripe-signature");
                hex::decode(v.split("v1=").nth(1).unwrap()).unwrap()
            },
        },
        Case {
            name: "github",
            scheme: Scheme::github(),
            secret: TEXT_SECRET,
            key: TEXT_SECRET.as_bytes().to_vec(),
            prefix: |_| Vec::new(),
            tag: |h| hex::decode(header(h, "x-hub-signature-256").strip_prefix("sha256=").unwrap()).unwrap(),
        },
        Case {
            name: "standard",
            scheme: Scheme::standard_webhooks(),
            secret: STANDARD_SECRET,
            key: b64(STANDARD_SECRET.strip_prefix("whsec_").unwrap()),
            prefix: |t| format!("{ID}.{t}.").into_bytes(),
            tag: |h| {
                let v = header(h, "webhook-signature");
                base64::engine::general_purpose::STANDARD
                    .decode(v.strip_prefix("v1,").unwrap())
                    .unwrap()
            },
        },
        Case {
            name: "slack",
            scheme: Scheme::slack(),
            secret: TEXT_SECRET,
            key: TEXT_SECRET.as_bytes().to_vec(),
            prefix: |t| format!("v0:{t}:").into_bytes(),
            tag: |h| hex::decode(header(h, "x-slack-signature").strip_prefix("v0=").unwrap()).unwrap(),
        },
        Case {
            name: "shopify",
            scheme: Scheme::shopify(),
            secret: TEXT_SECRET,
            key: TEXT_SECRET.as_bytes().to_vec(),
            prefix: |_| Vec::new(),
            tag: |h| {
                base64::engine::general_purpose::STANDARD
                    .decode(header(h, "x-shopify-hmac-sha256"))
                    .unwrap()
            },
        },
    ]
}

/// The headers every real delivery carries besides the scheme's own, so
/// header lookups cost what they cost in a server.
fn add_request_headers(headers: &mut HeaderMap, len: usize) {
    use http::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
    headers.insert(HOST, HeaderValue::from_static("hooks.example.com"));
    headers.insert(USER_AGENT, HeaderValue::from_static("Provider-Hookshot/1.0"));
    headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        "x-request-id",
        HeaderValue::from_static("3f6c2a0e-8d4b-4b8e-9a57-1c2d3e4f5a6b"),
    );
}

/// The minimal verifier accepts the delivery, reads what the crate reads
/// from its headers, and refuses it with one body bit flipped or with a
/// stale timestamp's headers.
fn check_minimal(
    minimal: minimal::Minimal,
    keyed: &minimal::Key,
    headers: &HeaderMap,
    body: &Bytes,
    case: &Case,
) {
    let name = case.name;
    let accepted = minimal(keyed, headers, body).expect("the minimal verifier accepts the delivery");
    assert_eq!(accepted.body, body);
    let header_id = matches!(name, "github" | "standard" | "shopify");
    assert_eq!(accepted.id.is_some(), header_id, "{name}: the id header read");
    assert_eq!(
        accepted.event_type.is_some(),
        matches!(name, "github" | "shopify"),
        "{name}: the event type header read"
    );
    let timestamped = matches!(name, "stripe" | "standard" | "slack");
    assert_eq!(accepted.timestamp.is_some(), timestamped);
    let mut flipped = body.to_vec();
    flipped[body.len() / 2] ^= 1;
    assert!(
        minimal(keyed, headers, &Bytes::from(flipped)).is_none(),
        "{name}: a changed body is refused"
    );
    if timestamped {
        let stale = TestSigner::new(&case.scheme, case.secret)
            .unwrap()
            .timestamp(now() - 3600)
            .id(ID)
            .headers(body);
        assert!(
            minimal(keyed, &stale, body).is_none(),
            "{name}: a stale delivery is refused"
        );
    }
}

fn bench_svix(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, body: &Bytes, t: i64) {
    let signer = TestSigner::new(&Scheme::standard_webhooks(), STANDARD_SECRET)
        .unwrap()
        .timestamp(t)
        .id(ID);
    let mut headers = signer.headers(body);
    add_request_headers(&mut headers, body.len());
    let svix = svix::webhooks::Webhook::new(STANDARD_SECRET).unwrap();
    svix.verify(body, &headers).expect("svix accepts our signature");
    group.bench_function("svix", |b| {
        b.iter(|| svix.verify(black_box(body), black_box(&headers)).unwrap());
    });
}

fn verify(c: &mut Criterion) {
    let t = now();
    for case in cases() {
        for (len, label) in SIZES {
            let body = body(len);
            let signer = TestSigner::new(&case.scheme, case.secret)
                .unwrap()
                .timestamp(t)
                .id(ID);
            let mut headers = signer.headers(&body);
            add_request_headers(&mut headers, len);
            let verifier = Verifier::builder(case.scheme.clone())
                .secret(case.secret)
                .max_body_bytes(std::num::NonZeroUsize::new(2 * 1024 * 1024).unwrap())
                .build()
                .unwrap();
            verifier.verify(&headers, body.clone()).expect("verified");
            let prefix = (case.prefix)(t);
            let tag = (case.tag)(&headers);
            let keyed = Hmac::<Sha256>::new_from_slice(&case.key).unwrap();
            {
                let mut mac = keyed.clone();
                mac.update(&prefix);
                mac.update(&body);
                mac.verify_slice(&tag)
                    .expect("the raw HMAC matches the scheme's tag");
            }

            let mut group = c.benchmark_group(format!("verify/{}/{label}", case.name));
            group.throughput(Throughput::Bytes(len as u64));
            if len >= 1024 * 1024 {
                group.sample_size(20);
            }
            group.bench_function("raw_hmac", |b| {
                b.iter(|| {
                    let mut mac = keyed.clone();
                    mac.update(black_box(&prefix));
                    mac.update(black_box(&body));
                    mac.verify_slice(black_box(&tag)).unwrap()
                });
            });
            if let Some(minimal) = minimal::of(case.name) {
                check_minimal(minimal, &keyed, &headers, &body, &case);
                group.bench_function("minimal", |b| {
                    b.iter(|| minimal(&keyed, black_box(&headers), black_box(&body)));
                });
            }
            group.bench_function("webhook_guard", |b| {
                b.iter(|| verifier.verify(black_box(&headers), body.clone()).unwrap());
            });
            bench_svix(&mut group, &body, t);
            if case.name == "standard" {
                let sw = standardwebhooks::Webhook::new(STANDARD_SECRET).unwrap();
                sw.verify(&body, &headers)
                    .expect("standardwebhooks accepts our signature");
                group.bench_function("standardwebhooks", |b| {
                    b.iter(|| sw.verify(black_box(&body), black_box(&headers)).unwrap());
                });
            }
            group.finish();
        }
    }
}

/// Every named provider at 1 KiB (`verify/named/<name>`): the layer's
/// `verify` beside a raw HMAC (SHA-256, or SHA-1 for the providers that
/// sign with it) of the bytes the scheme signs, approximated as a 48-byte
/// prefix (timestamps, ids, literal tags) and the body; Twilio signs the
/// URL and the form parameters sorted, so its raw line is the URL and the
/// form body unsorted. Left out: GitLab's shared token (no HMAC), and
/// Mailgun and Adyen, whose signatures are in the body (their cost is a
/// JSON parse, not a MAC over the body).
fn named(c: &mut Criterion) {
    const URL: &str = "https://hooks.example.com/webhooks/bench";
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"named-provider-bench-secret")
    );
    let t = now();
    for name in Scheme::named_providers() {
        if matches!(name, "gitlab" | "mailgun" | "adyen") {
            continue;
        }
        let scheme = Scheme::named_with_url(name, URL).unwrap().unwrap();
        let body = if name == "twilio" {
            let mut form = String::from("AccountSid=AC0123456789abcdef&MessageStatus=delivered");
            while form.len() < 1024 {
                form.push_str(&format!("&Field{}=value+{}", form.len(), form.len()));
            }
            Bytes::from(form)
        } else {
            body(1024)
        };
        let mut headers = HeaderMap::new();
        add_request_headers(&mut headers, body.len());
        let signed = TestSigner::new(&scheme, secret.as_str())
            .unwrap()
            .timestamp(t)
            .id(ID)
            .event_type("bench.event")
            .headers(&body);
        for (k, v) in &signed {
            headers.insert(k.clone(), v.clone());
        }
        let verifier = Verifier::builder(scheme.clone())
            .secret(secret.as_str())
            .build()
            .unwrap();
        verifier
            .verify(&headers, body.clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let prefix: Vec<u8> = if name == "twilio" {
            URL.as_bytes().to_vec()
        } else {
            vec![b'7'; 48]
        };
        let sha1 = matches!(name, "twilio" | "intercom" | "vercel");
        let mut group = c.benchmark_group(format!("verify/named/{name}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        if sha1 {
            let keyed = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
            group.bench_function("raw_hmac", |b| {
                b.iter(|| {
                    let mut mac = keyed.clone();
                    mac.update(black_box(&prefix));
                    mac.update(black_box(&body));
                    black_box(mac.finalize())
                });
            });
        } else {
            let keyed = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            group.bench_function("raw_hmac", |b| {
                b.iter(|| {
                    let mut mac = keyed.clone();
                    mac.update(black_box(&prefix));
                    mac.update(black_box(&body));
                    black_box(mac.finalize())
                });
            });
        }
        group.bench_function("webhook_guard", |b| {
            b.iter(|| verifier.verify(black_box(&headers), body.clone()).unwrap());
        });
        group.finish();
    }
}

/// The asymmetric schemes at 1 KiB, each beside the bare `ring` call on
/// the same signed bytes: Standard Webhooks `v1a` (Ed25519) and PayPal
/// (RSA-2048 PKCS#1 v1.5 SHA-256, its certificate pinned, so always warm).
fn asymmetric(c: &mut Criterion) {
    use ring::signature::{UnparsedPublicKey, ED25519, RSA_PKCS1_2048_8192_SHA256};
    let t = now();
    let body = body(1024);

    // v1a: whsk_ of the RFC 8032 test 1 seed, and its whpk_.
    let sk = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
    let pk = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let scheme = Scheme::standard_webhooks();
    let mut headers = TestSigner::new(&scheme, sk)
        .unwrap()
        .timestamp(t)
        .id(ID)
        .headers(&body);
    add_request_headers(&mut headers, body.len());
    let verifier = Verifier::builder(scheme).secret(pk).build().unwrap();
    verifier.verify(&headers, body.clone()).expect("v1a verified");
    let sig = base64::engine::general_purpose::STANDARD
        .decode(header(&headers, "webhook-signature").trim_start_matches("v1a,"))
        .unwrap();
    let public = base64::engine::general_purpose::STANDARD
        .decode(&pk[5..])
        .unwrap();
    let message = [format!("{ID}.{t}.").as_bytes(), &body[..]].concat();
    let key = UnparsedPublicKey::new(&ED25519, public);
    key.verify(&message, &sig).expect("ring agrees");
    let mut group = c.benchmark_group("verify/v1a/1KiB");
    group.throughput(Throughput::Bytes(1024));
    group.bench_function("raw_ring", |b| {
        b.iter(|| key.verify(black_box(&message), black_box(&sig)).unwrap());
    });
    group.bench_function("webhook_guard", |b| {
        b.iter(|| verifier.verify(black_box(&headers), body.clone()).unwrap());
    });
    group.finish();

    // PayPal: the test leaf and its key from the crate's test data.
    use webhook_guard::paypal::{PayPal, PinnedCertificates};
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/paypal");
    let read = |f: &str| std::fs::read_to_string(format!("{data}/{f}")).unwrap();
    let paypal = PayPal::builder("WH-BENCH-1")
        .certificates(PinnedCertificates::from_pem(&read("leaf.pem")).unwrap())
        .build()
        .unwrap();
    let scheme = Scheme::paypal(paypal);
    let signer = TestSigner::new(&scheme, read("leaf-key.pk8.pem"))
        .unwrap()
        .timestamp(t)
        .id("8f1a2b3c-0000-4000-8000-000000000001");
    let mut headers = signer.headers(&body);
    add_request_headers(&mut headers, body.len());
    let verifier = Verifier::builder(scheme).build().unwrap();
    verifier.verify(&headers, body.clone()).expect("paypal verified");
    let sig = base64::engine::general_purpose::STANDARD
        .decode(header(&headers, "paypal-transmission-sig"))
        .unwrap();
    let pkcs8: String = read("leaf-key.pk8.pem")
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let pair =
        ring::rsa::KeyPair::from_pkcs8(&base64::engine::general_purpose::STANDARD.decode(pkcs8).unwrap())
            .unwrap();
    let public = pair.public().as_ref().to_vec();
    let crc = {
        // zlib's CRC-32, as PayPal signs it.
        let mut c = !0u32;
        for b in body.iter() {
            c ^= u32::from(*b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    };
    let message = format!(
        "8f1a2b3c-0000-4000-8000-000000000001|{}|WH-BENCH-1|{crc}",
        header(&headers, "paypal-transmission-time")
    );
    let key = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public);
    key.verify(message.as_bytes(), &sig).expect("ring agrees");
    let mut group = c.benchmark_group("verify/paypal/1KiB");
    group.throughput(Throughput::Bytes(1024));
    group.bench_function("raw_ring", |b| {
        b.iter(|| {
            key.verify(black_box(message.as_bytes()), black_box(&sig))
                .unwrap()
        });
    });
    group.bench_function("webhook_guard", |b| {
        b.iter(|| verifier.verify(black_box(&headers), body.clone()).unwrap());
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = verify, asymmetric, named
}
criterion_main!(benches);
