//! The least a verifier with webhook-guard's checks costs: one function per
//! scheme, written for that scheme alone, that makes the checks a verifier
//! must make and hands nothing back but the body and the header bytes it
//! read (no allocation). The `minimal` line of each `verify` group, between
//! `raw_hmac` (no checks at all) and `webhook_guard`.
//!
//! Each one, like the crate:
//!
//! - finds its headers with the map's hashed lookup of a `HeaderName`
//!   built once, and refuses a header sent twice, longer than 4 096 bytes
//!   or not visible ASCII;
//! - decodes the tags to 32 bytes (`const-hex`, `base64`), at most 8;
//! - parses the signed timestamp (1 to 10 digits, no leading zero) and
//!   checks it against the real clock with a 5-minute tolerance;
//! - computes the HMAC from a key state made once and compares it with
//!   every candidate in constant time;
//! - reads the headers that carry the delivery id and event type.
//!
//! Less than the crate, to keep this a floor: the Standard Webhooks and
//! Shopify functions read only the primary header names (the crate also
//! reads the `svix-*` and unprefixed Shopify aliases and checks that both
//! agree), there is no configurable clock or tolerance, no rejection
//! message, and no `VerifiedWebhook` to hand to a handler.

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A keyed HMAC-SHA256 state.
pub type Key = Hmac<Sha256>;

/// What a minimal verifier accepts: the body and the header bytes it read.
pub struct Accepted<'h> {
    pub body: Bytes,
    pub id: Option<&'h [u8]>,
    pub event_type: Option<&'h [u8]>,
    pub timestamp: Option<i64>,
}

/// A minimal verifier: the key state, the request's headers and body.
pub type Minimal = for<'h> fn(&Key, &'h HeaderMap, &Bytes) -> Option<Accepted<'h>>;

/// The minimal verifier of a scheme, by the bench's scheme name.
pub fn of(scheme: &str) -> Option<Minimal> {
    Some(match scheme {
        "github" => github,
        "stripe" => stripe,
        "standard" => standard,
        "slack" => slack,
        "shopify" => shopify,
        _ => return None,
    })
}

const MAX_HEADER_LEN: usize = 4096;
const MAX_TAGS: usize = 8;
const TOLERANCE_SECS: i64 = 300;

/// The header's bytes if it is present once, at most 4 096 bytes and
/// visible ASCII.
#[inline(always)]
fn once<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h [u8]> {
    let mut all = headers.get_all(name).iter();
    let value = all.next()?;
    if all.next().is_some() {
        return None;
    }
    let bytes = value.as_bytes();
    let bad = bytes.iter().fold(false, |bad, b| bad | !(0x20..0x7f).contains(b));
    (bytes.len() <= MAX_HEADER_LEN && !bad).then_some(bytes)
}

/// 1 to 10 ASCII digits of Unix seconds, no leading zero.
#[inline(always)]
fn timestamp(raw: &[u8]) -> Option<i64> {
    if raw.is_empty() || raw.len() > 10 || (raw.len() > 1 && raw[0] == b'0') {
        return None;
    }
    raw.iter().try_fold(0i64, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
    })
}

/// Whether `at` is within the tolerance of the real clock.
#[inline(always)]
fn fresh(at: i64) -> bool {
    let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
        return false;
    };
    i64::try_from(now.as_secs())
        .ok()
        .and_then(|now| now.checked_sub(at))
        .is_some_and(|skew| skew.abs() <= TOLERANCE_SECS)
}

/// The body and what was read, if `ok`.
#[inline(always)]
fn accept<'h>(
    ok: bool,
    body: &Bytes,
    id: Option<&'h [u8]>,
    event_type: Option<&'h [u8]>,
    timestamp: Option<i64>,
) -> Option<Accepted<'h>> {
    ok.then(|| Accepted {
        body: body.clone(),
        id,
        event_type,
        timestamp,
    })
}

#[inline(always)]
fn hex_tag(raw: &[u8]) -> Option<[u8; 32]> {
    let mut tag = [0u8; 32];
    const_hex::decode_to_slice(raw, &mut tag).ok()?;
    Some(tag)
}

#[inline(always)]
fn base64_tag(raw: &[u8]) -> Option<[u8; 32]> {
    let mut tag = [0u8; 32];
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(raw, &mut tag)
        .ok()?;
    (n == 32).then_some(tag)
}

/// Up to [`MAX_TAGS`] tags.
struct Tags {
    tags: [[u8; 32]; MAX_TAGS],
    len: usize,
}

impl Tags {
    fn new() -> Self {
        Self {
            tags: [[0; 32]; MAX_TAGS],
            len: 0,
        }
    }

    #[inline(always)]
    fn push(&mut self, tag: [u8; 32]) -> Option<()> {
        *self.tags.get_mut(self.len)? = tag;
        self.len += 1;
        Some(())
    }

    /// The HMAC of `pieces` against every tag, in constant time.
    #[inline(always)]
    fn check(&self, key: &Key, pieces: &[&[u8]]) -> bool {
        let mut mac = key.clone();
        for piece in pieces {
            mac.update(piece);
        }
        let out = mac.finalize().into_bytes();
        let mut hit = subtle::Choice::from(0);
        for tag in &self.tags[..self.len] {
            hit |= out.as_slice().ct_eq(tag);
        }
        self.len > 0 && bool::from(hit)
    }
}

const GITHUB_SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");
const GITHUB_DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
const GITHUB_EVENT: HeaderName = HeaderName::from_static("x-github-event");

#[inline(never)]
fn github<'h>(key: &Key, headers: &'h HeaderMap, body: &Bytes) -> Option<Accepted<'h>> {
    let raw = once(headers, &GITHUB_SIGNATURE)?;
    let tag = hex_tag(raw.strip_prefix(b"sha256=")?)?;
    untimed(key, headers, body, tag, [&GITHUB_DELIVERY, &GITHUB_EVENT])
}

/// Stripe, Standard Webhooks and Slack: fresh, and one of the tags over
/// `pieces`.
#[inline(always)]
fn timed<'h>(
    key: &Key,
    tags: &Tags,
    at: i64,
    pieces: &[&[u8]],
    body: &Bytes,
    id: Option<&'h [u8]>,
) -> Option<Accepted<'h>> {
    accept(fresh(at) && tags.check(key, pieces), body, id, None, Some(at))
}

/// GitHub and Shopify: one tag over the body alone, the id and event type
/// in headers of their own, no timestamp.
#[inline(always)]
fn untimed<'h>(
    key: &Key,
    headers: &'h HeaderMap,
    body: &Bytes,
    tag: [u8; 32],
    [id, event_type]: [&HeaderName; 2],
) -> Option<Accepted<'h>> {
    let mut tags = Tags::new();
    tags.push(tag)?;
    let id = once(headers, id);
    let event_type = once(headers, event_type);
    accept(tags.check(key, &[body]), body, id, event_type, None)
}

const STRIPE_SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");

#[inline(never)]
fn stripe<'h>(key: &Key, headers: &'h HeaderMap, body: &Bytes) -> Option<Accepted<'h>> {
    let raw = once(headers, &STRIPE_SIGNATURE)?;
    let mut t = None;
    let mut tags = Tags::new();
    for item in raw.split(|b| *b == b',') {
        let eq = item.iter().position(|b| *b == b'=')?;
        match &item[..eq] {
            b"t" if t.is_some() => return None,
            b"t" => t = Some(&item[eq + 1..]),
            b"v1" => tags.push(hex_tag(&item[eq + 1..])?)?,
            _ => {}
        }
    }
    let t = t?;
    let at = timestamp(t)?;
    // Stripe's id and type are in the body.
    timed(key, &tags, at, &[t, b".", body], body, None)
}

const STANDARD_ID: HeaderName = HeaderName::from_static("webhook-id");
const STANDARD_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const STANDARD_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

#[inline(never)]
fn standard<'h>(key: &Key, headers: &'h HeaderMap, body: &Bytes) -> Option<Accepted<'h>> {
    let id = once(headers, &STANDARD_ID)?;
    let t = once(headers, &STANDARD_TIMESTAMP)?;
    let raw = once(headers, &STANDARD_SIGNATURE)?;
    let at = timestamp(t)?;
    let mut tags = Tags::new();
    for item in raw.split(|b| *b == b' ') {
        if let Some(encoded) = item.strip_prefix(b"v1,") {
            tags.push(base64_tag(encoded)?)?;
        }
    }
    timed(key, &tags, at, &[id, b".", t, b".", body], body, Some(id))
}

const SLACK_SIGNATURE: HeaderName = HeaderName::from_static("x-slack-signature");
const SLACK_TIMESTAMP: HeaderName = HeaderName::from_static("x-slack-request-timestamp");

#[inline(never)]
fn slack<'h>(key: &Key, headers: &'h HeaderMap, body: &Bytes) -> Option<Accepted<'h>> {
    let raw = once(headers, &SLACK_SIGNATURE)?;
    let t = once(headers, &SLACK_TIMESTAMP)?;
    let at = timestamp(t)?;
    let mut tags = Tags::new();
    tags.push(hex_tag(raw.strip_prefix(b"v0=")?)?)?;
    timed(key, &tags, at, &[b"v0:", t, b":", body], body, None)
}

const SHOPIFY_SIGNATURE: HeaderName = HeaderName::from_static("x-shopify-hmac-sha256");
const SHOPIFY_ID: HeaderName = HeaderName::from_static("x-shopify-webhook-id");
const SHOPIFY_TOPIC: HeaderName = HeaderName::from_static("x-shopify-topic");

#[inline(never)]
fn shopify<'h>(key: &Key, headers: &'h HeaderMap, body: &Bytes) -> Option<Accepted<'h>> {
    let tag = base64_tag(once(headers, &SHOPIFY_SIGNATURE)?)?;
    untimed(key, headers, body, tag, [&SHOPIFY_ID, &SHOPIFY_TOPIC])
}
