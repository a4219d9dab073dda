//! Signature schemes, one file per provider, pinned per route.
//!
//! A [`Scheme`] says which headers carry the signature (and the timestamp,
//! and the delivery id), how the signature is encoded, which bytes are
//! signed, and how a configured secret becomes the HMAC key. It is chosen
//! by you for each route and never guessed from the request.
//!
//! | constructor | signature header | signed content | key |
//! |---|---|---|---|
//! | [`Scheme::stripe`] | `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]` | `<t>.<body>` | the secret text, `whsec_` included |
//! | [`Scheme::github`] | `X-Hub-Signature-256: sha256=<hex>` | body | the secret text |
//! | [`Scheme::standard_webhooks`] | `webhook-signature: v1,<base64>[ v1,…]` (+ `webhook-id`, `webhook-timestamp`; `svix-*` aliases) | `<id>.<timestamp>.<body>` | base64 after `whsec_` |
//! | [`Scheme::slack`] | `X-Slack-Signature: v0=<hex>` (+ `X-Slack-Request-Timestamp`) | `v0:<ts>:<body>` | the secret text |
//! | [`Scheme::shopify`] | `X-Shopify-Hmac-Sha256: <base64>` (or `Shopify-Hmac-Sha256`) | body | the secret text |
//! | [`Scheme::custom`] | you say ([`CustomScheme`]) | you say | the secret text |
//!
//! All are HMAC-SHA256. The signed content is streamed into the MAC piece by
//! piece, never concatenated; received signatures are decoded to exactly 32
//! bytes and compared in constant time.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use zeroize::Zeroizing;

use crate::{ConfigError, Rejection, RejectionKind};

mod custom;
mod github;
mod shopify;
mod slack;
mod standard;
mod stripe;

pub use custom::{CustomScheme, CustomSchemeBuilder, SignatureEncoding, SignedPiece};

/// Most candidate signatures one header may list; more is malformed.
pub(crate) const MAX_SIGNATURES: usize = 8;
/// Longest accepted value of any header a scheme reads, in bytes.
pub(crate) const MAX_HEADER_LEN: usize = 4096;
/// Most pieces a signed layout may have.
pub(crate) const MAX_PIECES: usize = 8;
/// Length of an HMAC-SHA256 tag.
pub(crate) const MAC_LEN: usize = 32;

/// Who sent a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// Stripe.
    Stripe,
    /// GitHub.
    GitHub,
    /// Any sender that follows the Standard Webhooks specification
    /// (Svix and its customers among them).
    StandardWebhooks,
    /// Slack.
    Slack,
    /// Shopify.
    Shopify,
    /// Meta (Facebook, Instagram, WhatsApp).
    Meta,
    /// X (Twitter).
    X,
    /// A provider described with [`CustomScheme`]; holds its name.
    Custom(Arc<str>),
}

impl Provider {
    /// A short lowercase name: `stripe`, `github`, `standard`, `slack`,
    /// `shopify`, or the custom scheme's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Stripe => "stripe",
            Self::GitHub => "github",
            Self::StandardWebhooks => "standard",
            Self::Slack => "slack",
            Self::Shopify => "shopify",
            Self::Meta => "meta",
            Self::X => "x",
            Self::Custom(name) => name,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a route's webhooks are signed. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Scheme {
    kind: Kind,
    provider: Provider,
}

#[derive(Clone, Debug)]
enum Kind {
    Stripe,
    GitHub,
    Standard,
    Slack,
    Shopify,
    Custom(Arc<CustomScheme>),
}

impl Scheme {
    /// Stripe: `Stripe-Signature: t=…,v1=…`. Only `v1` counts; `v0` and
    /// unknown keys are ignored, so a header with no `v1` is rejected.
    pub fn stripe() -> Self {
        Self {
            kind: Kind::Stripe,
            provider: Provider::Stripe,
        }
    }

    /// GitHub: `X-Hub-Signature-256: sha256=…` over the body. The SHA-1
    /// `X-Hub-Signature` header is never consulted.
    pub fn github() -> Self {
        Self {
            kind: Kind::GitHub,
            provider: Provider::GitHub,
        }
    }

    /// Standard Webhooks (Svix): `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`, or their `svix-*` aliases. Only `v1` signatures
    /// count. Secrets are `whsec_` followed by the base64 key.
    pub fn standard_webhooks() -> Self {
        Self {
            kind: Kind::Standard,
            provider: Provider::StandardWebhooks,
        }
    }

    /// Slack: `X-Slack-Signature: v0=…` with `X-Slack-Request-Timestamp`,
    /// for JSON and form-encoded bodies alike.
    pub fn slack() -> Self {
        Self {
            kind: Kind::Slack,
            provider: Provider::Slack,
        }
    }

    /// Shopify: `X-Shopify-Hmac-Sha256` (or `Shopify-Hmac-Sha256`), base64,
    /// over the body.
    pub fn shopify() -> Self {
        Self {
            kind: Kind::Shopify,
            provider: Provider::Shopify,
        }
    }

    /// Meta (Facebook, Instagram, WhatsApp): `X-Hub-Signature-256:
    /// sha256=<hex>` over the body, keyed with the app secret. No timestamp
    /// and no delivery id are signed; the event type is the body's
    /// `object`. Pair it with [`Handshake::meta`](crate::handshake::Handshake::meta)
    /// for the subscription check.
    pub fn meta() -> Self {
        let scheme = CustomScheme::body_signed(
            "meta",
            HeaderName::from_static("x-hub-signature-256"),
            "sha256=",
            SignatureEncoding::Hex,
            meta_fields,
        );
        Self {
            kind: Kind::Custom(Arc::new(scheme)),
            provider: Provider::Meta,
        }
    }

    /// X (Twitter) Account Activity: `X-Twitter-Webhooks-Signature:
    /// sha256=<base64>` over the body, keyed with the consumer secret. No
    /// timestamp and no delivery id are signed; the event type is the first
    /// top-level body key ending in `_events`. Pair it with
    /// [`Handshake::x_crc`](crate::handshake::Handshake::x_crc) for the CRC
    /// check.
    pub fn x() -> Self {
        let scheme = CustomScheme::body_signed(
            "x",
            HeaderName::from_static("x-twitter-webhooks-signature"),
            "sha256=",
            SignatureEncoding::Base64,
            x_fields,
        );
        Self {
            kind: Kind::Custom(Arc::new(scheme)),
            provider: Provider::X,
        }
    }

    /// A scheme described piece by piece; see [`CustomScheme`].
    pub fn custom(scheme: CustomScheme) -> Self {
        let provider = Provider::Custom(scheme.name().into());
        Self {
            kind: Kind::Custom(Arc::new(scheme)),
            provider,
        }
    }

    /// Who signs with this scheme.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// Whether this scheme signs a timestamp.
    pub fn is_timestamped(&self) -> bool {
        match &self.kind {
            Kind::Stripe | Kind::Standard | Kind::Slack => true,
            Kind::GitHub | Kind::Shopify => false,
            Kind::Custom(c) => c.timestamp_header().is_some(),
        }
    }

    /// Turns a configured secret into HMAC key bytes.
    pub(crate) fn key(&self, index: usize, secret: &str) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
        match &self.kind {
            Kind::Standard => standard::key(index, secret),
            _ => crate::secret::plain_key(index, secret),
        }
    }

    /// Reads the scheme's headers. Never panics, never allocates.
    #[inline]
    pub(crate) fn parse<'a>(&'a self, headers: &'a HeaderMap) -> Result<Parsed<'a>, Rejection> {
        match &self.kind {
            Kind::Stripe => stripe::parse(headers),
            Kind::GitHub => github::parse(headers),
            Kind::Standard => standard::parse(headers),
            Kind::Slack => slack::parse(headers),
            Kind::Shopify => shopify::parse(headers),
            Kind::Custom(c) => c.parse(headers),
        }
    }

    /// Whether [`VerifiedWebhook::delivery_id`](crate::VerifiedWebhook::delivery_id)
    /// comes from signed bytes, so it can be a dedupe key: Stripe's body
    /// `id`, `webhook-id`, Slack's body `event_id`, a custom id header that
    /// is signed. GitHub's and Shopify's id headers are not signed.
    pub(crate) fn signs_delivery_id(&self) -> bool {
        match &self.kind {
            Kind::Stripe | Kind::Standard | Kind::Slack => true,
            Kind::GitHub | Kind::Shopify => false,
            Kind::Custom(c) => c.signs_delivery_id(),
        }
    }

    /// How to read the delivery id and event type from a verified body, for
    /// schemes that keep them there.
    pub(crate) fn body_fields(&self) -> Option<BodyFieldsFn> {
        match &self.kind {
            Kind::Stripe => Some(stripe::body_fields),
            Kind::Standard => Some(standard::body_fields),
            Kind::Slack => Some(slack::body_fields),
            Kind::GitHub => Some(github::body_fields),
            Kind::Shopify => None,
            Kind::Custom(c) => c.body_fields(),
        }
    }

    /// Writes the headers a real sender would send for `input`.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn sign(&self, mac: crate::secret::HmacSha256, input: &SignInput<'_>, out: &mut HeaderMap) {
        match &self.kind {
            Kind::Stripe => stripe::sign(mac, input, out),
            Kind::GitHub => github::sign(mac, input, out),
            Kind::Standard => standard::sign(mac, input, out),
            Kind::Slack => slack::sign(mac, input, out),
            Kind::Shopify => shopify::sign(mac, input, out),
            Kind::Custom(c) => c.sign(mac, input, out),
        }
    }
}

/// What a test signer is asked to sign.
#[cfg(any(test, feature = "test-util"))]
pub(crate) struct SignInput<'a> {
    pub(crate) timestamp: i64,
    pub(crate) id: &'a str,
    pub(crate) event_type: Option<&'a str>,
    pub(crate) body: &'a [u8],
}

/// Delivery id, event type and action found in a verified body.
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyFields {
    pub(crate) id: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) action: Option<String>,
}

/// A verified body, as a scheme's field reader sees it: the one strict
/// JSON parse, or the raw bytes of a form.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BodyRef<'a> {
    /// The parsed value, and the raw bytes it came from (for the rare
    /// reader that needs the document order of keys).
    Json(&'a serde_json::Value, &'a [u8]),
    Form(&'a [u8]),
}

pub(crate) type BodyFieldsFn = fn(BodyRef<'_>) -> BodyFields;

/// Meta: the event type is the body's `object` (`page`, `instagram`,
/// `whatsapp_business_account`, …).
fn meta_fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        event_type: json_str(body, "object"),
        ..BodyFields::default()
    }
}

/// X: the event type is the first top-level key ending in `_events`
/// (`tweet_create_events`, …), in the order the body lists them.
fn x_fields(body: BodyRef<'_>) -> BodyFields {
    let event_type = match body {
        BodyRef::Json(serde_json::Value::Object(_), raw) => first_key_ending(raw, "_events"),
        _ => None,
    };
    BodyFields {
        event_type,
        ..BodyFields::default()
    }
}

/// The first top-level key of a JSON object, in document order, that ends
/// with `suffix`. (A parsed `Value` keeps keys sorted, not in order.)
fn first_key_ending(raw: &[u8], suffix: &str) -> Option<String> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
    struct Keys<'s>(&'s str);
    impl<'de> Visitor<'de> for Keys<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
            // The whole object is read (the deserializer checks its end).
            let mut found = None;
            while let Some(key) = map.next_key::<String>()? {
                if found.is_none() && key.ends_with(self.0) {
                    found = Some(key);
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(raw);
    de.deserialize_map(Keys(suffix)).ok().flatten()
}

/// A top-level string member of a JSON object body.
pub(crate) fn json_str(body: BodyRef<'_>, key: &str) -> Option<String> {
    match body {
        BodyRef::Json(v, _) => v.get(key).and_then(serde_json::Value::as_str).map(str::to_owned),
        BodyRef::Form(_) => None,
    }
}

/// One piece of signed content.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Piece<'a> {
    Bytes(&'a [u8]),
    Body,
}

/// The signed layout of one request: pieces fed to the MAC in order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pieces<'a> {
    buf: [Piece<'a>; MAX_PIECES],
    len: usize,
}

impl<'a> Pieces<'a> {
    pub(crate) fn new(pieces: &[Piece<'a>]) -> Self {
        let mut out = Self {
            buf: [Piece::Body; MAX_PIECES],
            len: 0,
        };
        for p in pieces.iter().take(MAX_PIECES) {
            out.buf[out.len] = *p;
            out.len += 1;
        }
        out
    }

    pub(crate) fn push(&mut self, piece: Piece<'a>) -> bool {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = piece;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Piece<'a>> {
        self.buf[..self.len].iter()
    }
}

/// Candidate signatures, each decoded to exactly [`MAC_LEN`] bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signatures {
    buf: [[u8; MAC_LEN]; MAX_SIGNATURES],
    len: usize,
}

impl Signatures {
    pub(crate) fn new() -> Self {
        Self {
            buf: [[0; MAC_LEN]; MAX_SIGNATURES],
            len: 0,
        }
    }

    /// Adds a candidate, or fails when the cap is reached.
    pub(crate) fn push(&mut self, tag: [u8; MAC_LEN]) -> Result<(), Rejection> {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = tag;
                self.len += 1;
                Ok(())
            }
            None => Err(Rejection::new(
                RejectionKind::MalformedSignature,
                "the signature header lists more signatures than are accepted",
            )),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn as_slice(&self) -> &[[u8; MAC_LEN]] {
        &self.buf[..self.len]
    }
}

/// Where a delivery's id or type comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field<'h> {
    Absent,
    Header(&'h HeaderValue),
    Body,
}

/// Everything a scheme read from the headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parsed<'h> {
    pub(crate) timestamp: Option<i64>,
    pub(crate) signatures: Signatures,
    pub(crate) content: Pieces<'h>,
    pub(crate) id: Field<'h>,
    pub(crate) event_type: Field<'h>,
}

/// How often a header name occurs in a request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Found<'h> {
    Absent,
    Once(&'h HeaderValue),
    Repeated,
}

impl<'h> Found<'h> {
    /// Looks `name` up in the map (one hashed lookup).
    pub(crate) fn lookup(headers: &'h HeaderMap, name: &HeaderName) -> Self {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Self::Absent,
            (Some(v), None) => Self::Once(v),
            (Some(_), Some(_)) => Self::Repeated,
        }
    }

    fn add(&mut self, value: &'h HeaderValue) {
        *self = match self {
            Self::Absent => Self::Once(value),
            _ => Self::Repeated,
        };
    }
}

/// Finds every header a scheme reads. A request's header map is small, so
/// one pass comparing names costs less than a lookup per name (each lookup
/// hashes the name byte by byte); a large map is searched by lookups. Both
/// ways give the same answer.
pub(crate) fn find<'h, const N: usize>(headers: &'h HeaderMap, names: [&HeaderName; N]) -> [Found<'h>; N] {
    if headers.len() > SCAN_MAX_PER_NAME * N {
        return names.map(|name| Found::lookup(headers, name));
    }
    scan(headers, names)
}

/// Above this many header values per wanted name, [`find`] looks names up
/// instead of scanning (a lookup costs about as much as comparing a name
/// with this many others).
const SCAN_MAX_PER_NAME: usize = 6;

/// One pass over every header value (duplicates included).
pub(crate) fn scan<'h, const N: usize>(headers: &'h HeaderMap, names: [&HeaderName; N]) -> [Found<'h>; N] {
    let mut found = [Found::Absent; N];
    for (name, value) in headers {
        for (slot, wanted) in found.iter_mut().zip(names) {
            if name == wanted {
                slot.add(value);
            }
        }
    }
    found
}

/// Checks a header that must appear at most once, be visible ASCII and be
/// at most [`MAX_HEADER_LEN`] bytes. `malformed` is the kind reported when
/// it is not.
pub(crate) fn single<'h>(
    found: Found<'h>,
    name: &HeaderName,
    malformed: RejectionKind,
) -> Result<Option<&'h HeaderValue>, Rejection> {
    let value = match found {
        Found::Absent => return Ok(None),
        Found::Once(value) => value,
        Found::Repeated => {
            return Err(Rejection::new(
                malformed,
                format!("the {name} header is sent more than once"),
            ))
        }
    };
    let bytes = value.as_bytes();
    if bytes.len() > MAX_HEADER_LEN {
        return Err(Rejection::new(
            malformed,
            format!("the {name} header is too long"),
        ));
    }
    // A fold rather than `all`: no early exit, so it vectorizes.
    if bytes.iter().fold(false, |bad, b| bad | !(0x20..0x7f).contains(b)) {
        return Err(Rejection::new(
            malformed,
            format!("the {name} header is not visible ASCII"),
        ));
    }
    Ok(Some(value))
}

/// Like [`single`], for a header that may also be sent under an alias: when
/// both names are present their values must agree.
pub(crate) fn single_aliased<'h>(
    (found, name): (Found<'h>, &HeaderName),
    (found_alias, alias): (Found<'h>, &HeaderName),
    malformed: RejectionKind,
) -> Result<Option<&'h HeaderValue>, Rejection> {
    match (
        single(found, name, malformed)?,
        single(found_alias, alias, malformed)?,
    ) {
        (Some(a), Some(b)) if a != b => Err(Rejection::new(
            malformed,
            format!("the {name} and {alias} headers disagree"),
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

/// A header the scheme needs, present exactly once.
pub(crate) fn required<'h>(
    found: Found<'h>,
    name: &HeaderName,
    missing: RejectionKind,
    malformed: RejectionKind,
) -> Result<&'h HeaderValue, Rejection> {
    single(found, name, malformed)?
        .ok_or_else(|| Rejection::new(missing, format!("the {name} header is missing")))
}

/// A header read for information only (delivery id, event type): absent if
/// sent twice or not visible ASCII, never an error.
pub(crate) fn informational<'h>(found: Found<'h>, name: &HeaderName) -> Field<'h> {
    match single(found, name, RejectionKind::MalformedHeader) {
        Ok(Some(v)) => Field::Header(v),
        _ => Field::Absent,
    }
}

/// Parses a signed timestamp.
pub(crate) fn timestamp(raw: &[u8], name: &str) -> Result<i64, Rejection> {
    crate::timestamp::parse(raw).ok_or_else(|| {
        Rejection::new(
            RejectionKind::MalformedTimestamp,
            format!("the timestamp in {name} is not 1 to 10 ASCII digits of Unix seconds"),
        )
    })
}

/// Decodes exactly 64 hex digits (either case) into a tag.
pub(crate) fn hex_tag(raw: &[u8]) -> Option<[u8; MAC_LEN]> {
    let mut tag = [0u8; MAC_LEN];
    if raw.len() != MAC_LEN * 2 {
        return None;
    }
    hex::decode_to_slice(raw, &mut tag).ok()?;
    Some(tag)
}

/// Decodes canonical standard base64 that holds exactly 32 bytes.
pub(crate) fn base64_tag(raw: &[u8]) -> Option<[u8; MAC_LEN]> {
    use base64::Engine as _;
    // 32 bytes are 44 base64 characters with one `=`.
    if raw.len() != 44 {
        return None;
    }
    let mut buf = [0u8; 33];
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(raw, &mut buf)
        .ok()?;
    let mut tag = [0u8; MAC_LEN];
    tag.copy_from_slice(buf.get(..MAC_LEN).filter(|_| n == MAC_LEN)?);
    Some(tag)
}

/// A rejection for a signature that cannot be decoded.
pub(crate) fn bad_signature(what: &str) -> Rejection {
    Rejection::new(RejectionKind::MalformedSignature, what.to_owned())
}

/// The MAC of `pieces`, for signing in tests.
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn mac_of(mut mac: crate::secret::HmacSha256, pieces: &[&[u8]]) -> [u8; MAC_LEN] {
    use hmac::Mac as _;
    for p in pieces {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// A header value built from text we produced ourselves.
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_event_type_is_the_first_events_key_in_document_order() {
        let body = br#"{"for_user_id":"1","tweet_create_events":[],"favorite_events":[{"a":{"b":1}}]}"#;
        assert_eq!(
            first_key_ending(body, "_events").as_deref(),
            Some("tweet_create_events")
        );
        let body = br#"{"z_events":1,"a_events":2}"#;
        assert_eq!(first_key_ending(body, "_events").as_deref(), Some("z_events"));
        assert_eq!(first_key_ending(br#"{"for_user_id":"1"}"#, "_events"), None);
        assert_eq!(first_key_ending(b"[1]", "_events"), None);
    }

    #[test]
    fn hex_tag_is_exact() {
        let good = "a".repeat(64);
        assert!(hex_tag(good.as_bytes()).is_some());
        assert!(hex_tag("A".repeat(64).as_bytes()).is_some());
        assert!(hex_tag(b"").is_none());
        assert!(hex_tag("a".repeat(62).as_bytes()).is_none());
        assert!(hex_tag("a".repeat(66).as_bytes()).is_none());
        assert!(hex_tag("g".repeat(64).as_bytes()).is_none());
        // No `0x` prefix, whatever the decoder allows elsewhere.
        assert!(hex_tag(format!("0x{}", "a".repeat(62)).as_bytes()).is_none());
        assert!(hex_tag(format!("0x{}", "a".repeat(64)).as_bytes()).is_none());
        let mixed = "aB".repeat(32);
        assert_eq!(hex_tag(mixed.as_bytes()), Some([0xab; MAC_LEN]));
    }

    #[test]
    fn base64_tag_is_canonical() {
        use base64::Engine as _;
        let enc = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(base64_tag(enc.as_bytes()), Some([7u8; 32]));
        assert!(base64_tag(enc.trim_end_matches('=').as_bytes()).is_none());
        let url = enc.replace('+', "-").replace('/', "_");
        assert!(base64_tag(url.as_bytes()).is_none() || url == enc);
        // Non-zero trailing bits are not canonical.
        let mut odd = enc.clone().into_bytes();
        odd[42] = b'B';
        assert!(base64_tag(&odd).is_none());
        assert!(base64_tag(&enc.as_bytes()[..40]).is_none());
    }

    #[test]
    fn duplicate_lines_are_malformed() {
        let mut h = HeaderMap::new();
        let n = HeaderName::from_static("x-sig");
        h.append(&n, HeaderValue::from_static("a"));
        h.append(&n, HeaderValue::from_static("a"));
        let err = single(Found::lookup(&h, &n), &n, RejectionKind::MalformedSignature).err();
        let err2 = single(scan(&h, [&n])[0], &n, RejectionKind::MalformedSignature).err();
        assert_eq!(err2.map(|e| e.kind()), Some(RejectionKind::MalformedSignature));
        assert_eq!(err.map(|e| e.kind()), Some(RejectionKind::MalformedSignature));
    }

    fn same(a: Found<'_>, b: Found<'_>) -> bool {
        match (a, b) {
            (Found::Absent, Found::Absent) | (Found::Repeated, Found::Repeated) => true,
            (Found::Once(x), Found::Once(y)) => std::ptr::eq(x, y),
            _ => false,
        }
    }

    proptest::proptest! {
        /// The one-pass scan and the per-name lookups agree on every map:
        /// absent, once (the very same value), or repeated.
        #[test]
        fn scan_agrees_with_lookups(
            entries in proptest::collection::vec((0usize..8, "[ -~]{0,8}"), 0..80),
        ) {
            const NAMES: [&str; 8] = [
                "x-hub-signature-256", "x-github-delivery", "webhook-id", "svix-id",
                "host", "content-type", "x-other", "webhook-signature",
            ];
            let mut headers = HeaderMap::new();
            for (name, value) in &entries {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.append(HeaderName::from_static(NAMES[*name]), value);
                }
            }
            let wanted = NAMES.map(HeaderName::from_static);
            let [a, b, c, d, e, f, g, h] = &wanted;
            let scanned = scan(&headers, [a, b, c, d, e, f, g, h]);
            let found = find(&headers, [a, b, c, d, e, f, g, h]);
            for (i, name) in wanted.iter().enumerate() {
                let looked = Found::lookup(&headers, name);
                proptest::prop_assert!(same(scanned[i], looked), "{name}: {:?} vs {:?}", scanned[i], looked);
                proptest::prop_assert!(same(found[i], looked), "{name}");
            }
        }
    }

    #[test]
    fn signature_cap_holds() {
        let mut s = Signatures::new();
        for _ in 0..MAX_SIGNATURES {
            assert!(s.push([0; MAC_LEN]).is_ok());
        }
        assert!(s.push([0; MAC_LEN]).is_err());
    }
}
