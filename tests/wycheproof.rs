//! Every Wycheproof HMAC-SHA256 vector, replayed through the verifier.
//!
//! Expectations: a `valid` vector with a full 32-byte tag verifies; a
//! vector whose tag is truncated (shorter than 32 bytes) is rejected even
//! when Wycheproof marks it valid for truncated MACs (we only ever accept
//! full-length tags); an `invalid` vector is rejected.
//!
//! Getting the vectors' keys into the verifier: every secret goes through
//! the public API as text, and for every scheme but Standard Webhooks the
//! HMAC key *is* that text, which must be non-empty UTF-8 without
//! surrounding whitespace. In this set the `invalid` vectors (108 of 174)
//! use the key `00 01 .. 1f`, which is such text (control characters, none
//! of them whitespace to Rust), so they run through a `CustomScheme` with
//! the key as the secret and the message as the body. The `valid` vectors
//! have random keys that are not UTF-8: those with a truncated tag still
//! run through the custom scheme, since that rejection happens while the
//! header is decoded, before any key is used (so it holds whatever the
//! key); those with a full tag are counted and skipped on that path.
//!
//! The path that does take arbitrary key bytes is Standard Webhooks
//! (`whsec_` + base64 of the key). It signs `<id>.<timestamp>.<body>`
//! rather than the body alone, so the vector's tag is carried over to that
//! content: `delta = tag XOR HMAC(key, msg)[..len]` is exactly how
//! Wycheproof modified (or truncated) the correct tag, and the header sent
//! is `HMAC(key, id.ts.msg)[..len] XOR delta`. That exercises every vector
//! (key, message, tag length and tag modification) through the real header
//! decoding and the real constant-time comparison. The reference HMAC (the
//! `hmac` crate) is itself first checked against Wycheproof's verdict.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;
use webhook_guard::{CustomScheme, FixedClock, RejectionKind, Scheme, SignatureEncoding, Verifier};
use wycheproof::mac::{TestName, TestSet};
use wycheproof::TestResult;

const NOW: i64 = 1_700_000_000;
const TAG_LEN: usize = 32;
const CUSTOM_HEADER: HeaderName = HeaderName::from_static("x-wycheproof-signature");

fn hmac_sha256(key: &[u8], pieces: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    for p in pieces {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The key as a secret the plain-text schemes accept, if it is one.
fn as_secret_text(key: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(key).ok()?;
    (!text.trim().is_empty() && text.trim() == text).then_some(text)
}

fn custom_verifier(secret: &str) -> Verifier {
    let scheme = CustomScheme::builder("wycheproof", CUSTOM_HEADER)
        .encoding(SignatureEncoding::Hex)
        .build()
        .expect("custom scheme");
    Verifier::builder(Scheme::custom(scheme))
        .secret(secret)
        .clock(FixedClock::new(NOW))
        .build()
        .expect("custom verifier")
}

/// What the verifier must answer for a tag of `len` bytes: `None` to
/// accept, else the rejection kind.
fn expected(accept: bool, len: usize) -> Option<RejectionKind> {
    if len != TAG_LEN {
        Some(RejectionKind::MalformedSignature)
    } else if accept {
        None
    } else {
        Some(RejectionKind::SignatureMismatch)
    }
}

fn outcome(
    result: &Result<webhook_guard::VerifiedWebhook, webhook_guard::Rejection>,
) -> Option<RejectionKind> {
    result.as_ref().err().map(webhook_guard::Rejection::kind)
}

#[test]
fn hmac_sha256_vectors() {
    let set = TestSet::load(TestName::HmacSha256).expect("wycheproof hmac_sha256 set");
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut failures = Vec::new();
    let mut total = 0usize;
    let mut standard_exercised = 0usize;
    let mut custom_with_key = 0usize;
    let mut custom_key_independent = 0usize;
    let mut custom_skipped_key_not_text = 0usize;
    let mut truncated = 0usize;
    let mut truncated_marked_valid = 0usize;

    for group in &set.test_groups {
        for test in &group.tests {
            total += 1;
            let tc = test.tc_id;
            let (key, msg, tag) = (&test.key[..], &test.msg[..], &test.tag[..]);
            let len = tag.len();
            if len < TAG_LEN {
                truncated += 1;
                if test.result != TestResult::Invalid {
                    truncated_marked_valid += 1;
                }
            }
            // Only a `valid` full-length tag may pass ("acceptable" does not
            // occur in this set; it would be refused here too).
            let accept = test.result == TestResult::Valid && len == TAG_LEN;
            let want = expected(accept, len);

            // The reference HMAC agrees with Wycheproof's verdict.
            let reference = hmac_sha256(key, &[msg]);
            if len > TAG_LEN || (reference[..len] == *tag) == (test.result == TestResult::Invalid) {
                failures.push(format!(
                    "tcId {tc}: the reference HMAC disagrees with Wycheproof ({:?}, {})",
                    test.result, test.comment
                ));
                continue;
            }

            // 1. Standard Webhooks: the vector's key bytes, its message as the
            // body, its tag modification carried over.
            let id = format!("msg_wycheproof_{tc}");
            let ts = NOW.to_string();
            let content_tag = hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", msg]);
            let sent: Vec<u8> = (0..len).map(|i| content_tag[i] ^ tag[i] ^ reference[i]).collect();
            let verifier = Verifier::builder(Scheme::standard_webhooks())
                .secret(format!("whsec_{}", b64.encode(key)))
                .clock(FixedClock::new(NOW))
                .build()
                .unwrap_or_else(|e| panic!("tcId {tc}: {e}"));
            let mut headers = HeaderMap::new();
            headers.insert("webhook-id", HeaderValue::from_str(&id).unwrap());
            headers.insert("webhook-timestamp", HeaderValue::from_str(&ts).unwrap());
            headers.insert(
                "webhook-signature",
                HeaderValue::from_str(&format!("v1,{}", b64.encode(&sent))).unwrap(),
            );
            let got = outcome(&verifier.verify(&headers, Bytes::copy_from_slice(msg)));
            standard_exercised += 1;
            if got != want {
                failures.push(format!(
                    "tcId {tc} (standard webhooks path, {:?}, {len}-byte tag, {}): expected {want:?}, got {got:?}",
                    test.result, test.comment
                ));
            }

            // 2. A custom scheme with the key as the secret and the message as
            // the whole signed content, where the key is usable text.
            let mut headers = HeaderMap::new();
            headers.insert(CUSTOM_HEADER, HeaderValue::from_str(&hex::encode(tag)).unwrap());
            if let Some(secret) = as_secret_text(key) {
                custom_with_key += 1;
                let got = outcome(&custom_verifier(secret).verify(&headers, Bytes::copy_from_slice(msg)));
                if got != want {
                    failures.push(format!(
                        "tcId {tc} (custom scheme path, {:?}, {len}-byte tag): expected {want:?}, got {got:?}",
                        test.result
                    ));
                }
            } else if len != TAG_LEN {
                // Refused while decoding the header, before any key is used:
                // the outcome is the same for the vector's key.
                custom_key_independent += 1;
                let got = outcome(
                    &custom_verifier("wycheproof-placeholder-secret")
                        .verify(&headers, Bytes::copy_from_slice(msg)),
                );
                if got != Some(RejectionKind::MalformedSignature) {
                    failures.push(format!(
                        "tcId {tc} (custom scheme path, {len}-byte tag, any key): expected \
                         MalformedSignature, got {got:?}"
                    ));
                }
            } else {
                custom_skipped_key_not_text += 1;
            }
        }
    }

    println!(
        "wycheproof hmac_sha256: {total} vectors; standard-webhooks path exercised {standard_exercised}; \
         custom path with the vector's key {custom_with_key}, key-independent (truncated tag) \
         {custom_key_independent}, skipped because the key is not usable secret text \
         {custom_skipped_key_not_text}; truncated tags {truncated} ({truncated_marked_valid} marked valid by \
         Wycheproof, all required to be rejected)"
    );
    assert!(
        failures.is_empty(),
        "{} failing vectors:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(total, set.number_of_tests, "every vector was visited");
    assert!(total > 0, "no vectors");
    assert!(
        standard_exercised * 2 > total,
        "only {standard_exercised} of {total} vectors were exercised"
    );
    assert!(
        custom_with_key * 2 > total,
        "only {custom_with_key} of {total} vectors ran through the custom scheme with their own key"
    );
    assert_eq!(
        custom_with_key + custom_key_independent + custom_skipped_key_not_text,
        total,
        "every vector is counted once on the custom path"
    );
    assert!(
        truncated > 0 && truncated_marked_valid > 0,
        "the set has valid truncated vectors"
    );
}
