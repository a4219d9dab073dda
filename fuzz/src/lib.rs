//! Shared helpers of the fuzz targets under `fuzz_targets/`: each target is
//! a three-line bin that calls one function here with libFuzzer's bytes.
//!
//! Every function must never panic on any input; a panic (or a failed
//! `assert!`) is a finding. Reproducers of past findings live under
//! `fuzz/regressions/<target>/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use webhook_guard::dedupe::DedupeKey;
use webhook_guard::internals;
use webhook_guard::schema::Schemas;
use webhook_guard::{Networks, ProxyHeader, RejectionKind};

mod router;
pub use router::router;

/// The schemes whose header parsers are fuzzed, built once.
pub mod schemes {
    use std::sync::LazyLock;

    use http::HeaderName;
    use webhook_guard::{CustomScheme, Scheme, SignatureEncoding, SignedPiece};

    macro_rules! scheme {
        ($name:ident, $make:expr) => {
            /// The scheme, built once.
            pub fn $name() -> &'static Scheme {
                static S: LazyLock<Scheme> = LazyLock::new(|| $make);
                &S
            }
        };
    }

    /// The scheme a fuzz input's first byte picks: stripe, github,
    /// standard, slack, shopify, custom, discord, sendgrid, paypal, then
    /// every provider of `Scheme::named_providers` in order (modulo their
    /// number; the first six keep the indexes the committed seeds were
    /// written with). A new named provider is fuzzed without a change here.
    pub fn pick(byte: u8) -> &'static Scheme {
        let named = named();
        match usize::from(byte) % (9 + named.len()) {
            0 => stripe(),
            1 => github(),
            2 => standard_webhooks(),
            3 => slack(),
            4 => shopify(),
            5 => custom(),
            6 => discord(),
            7 => sendgrid(),
            8 => paypal(),
            n => &named[n - 9],
        }
    }

    /// The named providers' schemes, built once.
    fn named() -> &'static [Scheme] {
        static S: LazyLock<Vec<Scheme>> = LazyLock::new(|| {
            Scheme::named_providers()
                .filter_map(|name| {
                    Scheme::named_with_url(name, "https://hooks.example.com/webhooks/fuzz")?.ok()
                })
                .collect()
        });
        &S
    }

    scheme!(stripe, Scheme::stripe());
    scheme!(github, Scheme::github());
    scheme!(standard_webhooks, Scheme::standard_webhooks());
    scheme!(slack, Scheme::slack());
    scheme!(shopify, Scheme::shopify());
    scheme!(discord, Scheme::discord());
    scheme!(sendgrid, Scheme::sendgrid());
    scheme!(
        paypal,
        Scheme::paypal(
            webhook_guard::paypal::PayPal::builder("WH-FUZZ-1")
                .sandbox(true)
                .certificates(
                    webhook_guard::paypal::PinnedCertificates::from_pem(include_str!(
                        "../../tests/data/paypal/leaf.pem"
                    ))
                    .expect("the test leaf is PayPal's name"),
                )
                .build()
                .expect("the fuzzed PayPal scheme is valid"),
        )
    );
    scheme!(
        custom,
        Scheme::custom(
            CustomScheme::builder("acme", HeaderName::from_static("x-acme-signature"))
                .prefix("v1=")
                .separator(b' ')
                .encoding(SignatureEncoding::Base64)
                .timestamp_header(HeaderName::from_static("x-acme-timestamp"))
                .delivery_id_header(HeaderName::from_static("x-acme-id"))
                .event_type_header(HeaderName::from_static("x-acme-event"))
                .signed_content([
                    SignedPiece::Header(HeaderName::from_static("x-acme-timestamp")),
                    SignedPiece::literal("."),
                    SignedPiece::Header(HeaderName::from_static("x-acme-id")),
                    SignedPiece::literal("."),
                    SignedPiece::Body,
                ])
                .build()
                .expect("the fuzzed custom scheme is valid"),
        )
    );
}

/// A header block: one `name: value` per line (`\n`, an optional `\r`
/// before it), appended in order so a name may repeat. Lines whose name or
/// value `http` refuses are skipped. One space after the colon is dropped.
pub fn headers(block: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(name, value);
        }
    }
    map
}

/// `parse_*`: a scheme's header parser on arbitrary header lines. Never
/// panics; a success names at most a few signatures, and a timestamp only
/// for timestamped schemes, in the strict range.
pub fn parse_headers(scheme: &webhook_guard::Scheme, data: &[u8]) {
    let map = headers(data);
    match internals::parse_headers(scheme, &map) {
        Ok((timestamp, signatures)) => {
            assert!(signatures >= 1, "a successful parse without a signature");
            assert_eq!(
                timestamp.is_some(),
                scheme.is_timestamped(),
                "timestamp presence disagrees with the scheme"
            );
            if let Some(t) = timestamp {
                assert!((0..=9_999_999_999).contains(&t), "timestamp {t} out of range");
            }
        }
        Err(kind) => {
            // Header parsing only ever decides authentication failures.
            assert_eq!(
                kind.status(),
                http::StatusCode::UNAUTHORIZED,
                "header parse failed with {kind:?}"
            );
        }
    }
}

fn take<const N: usize>(data: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = data.len().min(N);
    out[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    out
}

/// `timestamp`: 8 bytes of clock, 8 of tolerance (seconds), 8 of a raw
/// timestamp, then the header value to parse.
pub fn timestamp(mut data: &[u8]) {
    let now = i64::from_le_bytes(take(&mut data));
    let tolerance = Duration::from_secs(u64::from_le_bytes(take(&mut data)));
    let other = i64::from_le_bytes(take(&mut data));
    let raw = data;
    if let Some(t) = internals::parse_timestamp(raw) {
        assert!((0..=9_999_999_999).contains(&t), "parsed {t} out of range");
        assert!(!raw.is_empty() && raw.len() <= 10, "accepted {raw:?}");
        assert!(
            raw.iter().all(u8::is_ascii_digit),
            "accepted a non-digit: {raw:?}"
        );
        assert!(
            raw.len() == 1 || raw[0] != b'0',
            "accepted a leading zero: {raw:?}"
        );
        assert_eq!(t.to_string().as_bytes(), raw, "value does not round-trip");
        check(t, now, tolerance);
    }
    check(other, now, tolerance);
}

/// The window check against a reference computed in `i128`.
fn check(t: i64, now: i64, tolerance: Duration) {
    let got = internals::check_timestamp(t, now, tolerance);
    let skew = i128::from(now) - i128::from(t);
    let tol = i128::from(tolerance.as_secs()).min(i128::from(i64::MAX));
    if skew.abs() <= tol {
        assert_eq!(got, Ok(()), "t={t} now={now} tol={tolerance:?}");
    } else {
        let saturated = skew.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        assert_eq!(got, Err(saturated), "t={t} now={now} tol={tolerance:?}");
    }
}

/// Trusted-proxy lists `client_ip` picks from.
static TRUSTED: LazyLock<Vec<Networks>> = LazyLock::new(|| {
    [
        "",
        "10.0.0.0/8",
        "10.0.0.0/8, 192.168.0.0/16, 2001:db8::/32",
        "0.0.0.0/0, ::/0",
        "::ffff:10.0.0.0/104, fd00::/8",
        "127.0.0.1, ::1",
        "172.16.0.0/12, 10.1.2.3, 2001:db8:1::/48",
    ]
    .iter()
    .map(|s| Networks::parse(s).expect("valid networks"))
    .collect()
});

const PEERS: [IpAddr; 8] = [
    IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
    IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001)),
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7)),
];

/// Every address written anywhere in `map`'s values, in any of the forms a
/// forwarding header may use (`v4`, `v6`, `[v6]:port`, `v4:port`,
/// `for="…"`), canonicalised. A superset of what the resolver can read.
fn addresses_in(map: &HeaderMap) -> HashSet<IpAddr> {
    let mut out = HashSet::new();
    for value in map.values() {
        let text = String::from_utf8_lossy(value.as_bytes());
        for token in text.split([',', ';', '"', '[', ']', '=', ' ', '\t']) {
            let parsed = token
                .parse::<IpAddr>()
                .ok()
                .or_else(|| token.rsplit_once(':').and_then(|(h, _)| h.parse().ok()))
                .or_else(|| token.split_once(':').and_then(|(h, _)| h.parse().ok()));
            if let Some(ip) = parsed {
                out.insert(ip.to_canonical());
            }
        }
    }
    out
}

/// `client_ip`: byte 0 picks the trusted list, byte 1 the header, byte 2
/// how the peer is made (then 4 or 16 bytes of it); the rest are header
/// lines: a line starting with `f` is a `Forwarded` value, any other an
/// `X-Forwarded-For` value.
pub fn client_ip(mut data: &[u8]) {
    let [t, h, p] = take(&mut data);
    let trusted = &TRUSTED[usize::from(t) % TRUSTED.len()];
    let header = match h % 3 {
        0 => ProxyHeader::XForwardedFor,
        1 => ProxyHeader::Forwarded,
        _ => ProxyHeader::XForwardedForThenForwarded,
    };
    let peer = match p % 4 {
        0 => IpAddr::V4(Ipv4Addr::from(take::<4>(&mut data))),
        1 => IpAddr::V6(Ipv6Addr::from(take::<16>(&mut data))),
        2 => IpAddr::V6(Ipv4Addr::from(take::<4>(&mut data)).to_ipv6_mapped()),
        _ => PEERS[usize::from(p / 4) % PEERS.len()],
    };
    let mut map = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let (name, value) = match line.split_first() {
            Some((b'f' | b'F', rest)) => (http::header::FORWARDED, rest),
            _ => (HeaderName::from_static("x-forwarded-for"), line),
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.append(name, value);
        }
    }
    let got = internals::client_ip(peer, &map, trusted, header);
    let canonical_peer = peer.to_canonical();
    assert_eq!(got, got.to_canonical(), "an IPv4-mapped result: {got}");
    if !trusted.contains(peer) {
        assert_eq!(got, canonical_peer, "an untrusted peer was not the client");
    }
    assert!(
        got == canonical_peer || addresses_in(&map).contains(&got),
        "{got} is neither the peer {peer} nor written in the headers {map:?}"
    );
}

/// `dedupe_key`: byte 0 splits the rest into a namespace (lossy UTF-8) and
/// the bytes used as both an id and a body.
pub fn dedupe_key(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(rest.len());
    let namespace = String::from_utf8_lossy(&rest[..cut]);
    let bytes = &rest[cut..];
    let id = DedupeKey::from_id(&namespace, bytes);
    let body = DedupeKey::from_body(&namespace, bytes);
    assert_eq!(id.as_bytes().len(), 32);
    assert_eq!(id.to_hex().len(), 64);
    assert_eq!(body.to_hex().len(), 64);
    assert_ne!(id, body, "an id key equals the body key of the same bytes");
    assert_eq!(id, DedupeKey::from_id(&namespace, bytes), "not deterministic");
    // Another namespace (one more byte) never gives the same key.
    let other = format!("{namespace}x");
    assert_ne!(id, DedupeKey::from_id(&other, bytes), "namespace ignored");
}

static STRIPE_SCHEMA: LazyLock<Schemas> = LazyLock::new(|| {
    let schema =
        serde_json::from_str(include_str!("../../examples/schemas/stripe.json")).expect("schema JSON");
    Schemas::builder()
        .default_schema(schema)
        .build()
        .expect("schema compiles")
});

/// The Stripe schema and one that uses most keywords, each compiled over
/// the layer's document and over `serde_json::Value`.
static SCHEMA_PAIRS: LazyLock<[internals::SchemaPair; 2]> = LazyLock::new(|| {
    let stripe =
        serde_json::from_str(include_str!("../../examples/schemas/stripe.json")).expect("schema JSON");
    let keywords = serde_json::json!({
        "$defs": {"positive": {"properties": {"n": {"minimum": 0}}, "required": ["n"]}},
        "type": ["object", "array", "integer"],
        "properties": {
            "n": {"multipleOf": 0.5, "maximum": 18446744073709551615_u64, "exclusiveMinimum": -1},
            "s": {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[a-z_]+[0-9]?$"},
            "list": {"uniqueItems": true, "maxItems": 4, "contains": {"type": "integer"},
                     "prefixItems": [{"type": "string"}], "items": {"$ref": "#"}},
            "kind": {"enum": ["a", 1, null, [1, 2], {"x": 1}]},
            "obj": {"$ref": "#/$defs/positive", "maxProperties": 2}
        },
        "patternProperties": {"^x-": {"type": "string"}},
        "propertyNames": {"maxLength": 4},
        "dependentRequired": {"a": ["b"]},
        "if": {"required": ["kind"]}, "then": {"properties": {"kind": {"type": "string"}}},
        "unevaluatedProperties": {"type": ["integer", "object"]}
    });
    [
        internals::SchemaPair::new(&stripe).expect("schema compiles"),
        internals::SchemaPair::new(&keywords).expect("schema compiles"),
    ]
});

/// Payload types for the typed reads (shared with the property tests).
#[path = "../../tests/support/typed_payloads.rs"]
mod typed;

/// The typed read through the layer's document gives `serde_json`'s
/// answer: the same value, or a failure where it fails.
fn typed_agrees<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Some(ours) = internals::typed_via_doc::<T>(data) else {
        return;
    };
    let theirs = serde_json::from_slice::<T>(data);
    match (ours, theirs) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "typed reads disagree"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("typed reads disagree: {a:?} against {b:?}"),
    }
}

/// `json_schema`: the strict parse agrees with `serde_json` (except that
/// it refuses duplicate keys), a parsed value goes through the Stripe
/// schema without panicking, two schemas give the same verdicts and
/// errors on the layer's document as on a `serde_json::Value`, and typed
/// reads give what `serde_json::from_slice` gives.
pub fn json_schema(data: &[u8]) {
    let lax = serde_json::from_slice::<serde_json::Value>(data);
    match internals::parse_json(data) {
        Ok(value) => {
            assert_eq!(lax.as_ref().ok(), Some(&value), "strict and lax parses disagree");
            assert_eq!(
                internals::parse_json_via_serde(data).as_ref(),
                Ok(&value),
                "the typed path reads another value"
            );
            if let Err(rejection) = STRIPE_SCHEMA.validate(None, &value) {
                assert_eq!(rejection.kind(), RejectionKind::SchemaViolation);
            }
            let _ = STRIPE_SCHEMA.validate(value.get("type").and_then(|t| t.as_str()), &value);
            for pair in SCHEMA_PAIRS.iter() {
                let (ours, reference) = pair.verdicts(data).expect("strict JSON");
                assert_eq!(ours, reference, "the document and the Value disagree");
            }
            typed_agrees::<typed::Event>(data);
            typed_agrees::<typed::Tagged>(data);
            typed_agrees::<typed::Adjacent>(data);
            typed_agrees::<typed::Loose>(data);
            typed_agrees::<typed::Flattened>(data);
            typed_agrees::<typed::Strict>(data);
            typed_agrees::<std::collections::BTreeMap<i64, Vec<Option<u16>>>>(data);
        }
        Err(RejectionKind::InvalidJson) => {}
        Err(RejectionKind::DuplicateKeys) => {}
        Err(other) => panic!("parse_json returned {other:?}"),
    }
    if lax.is_err() {
        assert!(
            internals::parse_json(data).is_err(),
            "strict parse accepted what serde_json refuses"
        );
    }
}

/// `paypal_cert_url`: PayPal's certificate-URL check and its RFC 3339
/// parser on arbitrary text. Never panics; a believed URL has exactly the
/// documented shape, and a parsed time parses again to the same value.
pub fn paypal_cert_url(data: &[u8]) {
    if let Some(t) = internals::paypal_time(data) {
        assert!(
            (-62_167_219_200..=253_402_300_799 + 86_400).contains(&t),
            "time {t} out of range"
        );
    }
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let (live, any) = (
        internals::paypal_cert_url(raw, false),
        internals::paypal_cert_url(raw, true),
    );
    if let Some(sandbox) = live {
        assert!(!sandbox, "a sandbox URL believed without the sandbox");
        assert_eq!(any, Some(false), "turning the sandbox on changed a live URL");
    }
    let Some(sandbox) = any else {
        return;
    };
    let rest = raw.strip_prefix("https://").expect("believed without https://");
    let (host, path) = rest.split_at(rest.find('/').expect("believed without a path"));
    let hosts: &[&str] = if sandbox {
        &["api.sandbox.paypal.com", "api-m.sandbox.paypal.com"]
    } else {
        &["api.paypal.com", "api-m.paypal.com"]
    };
    assert!(hosts.contains(&host), "believed host {host:?}");
    let id = path
        .strip_prefix("/v1/notifications/certs/")
        .expect("believed another path");
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "believed certificate id {id:?}"
    );
}
