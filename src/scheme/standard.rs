//! Standard Webhooks (and Svix): `webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64>[ v1a,<base64>…]`.
//!
//! The signed content is `<id>.<timestamp>.<raw body>`. The `svix-id`,
//! `svix-timestamp` and `svix-signature` names are accepted as aliases;
//! when both names are sent they must agree. The delivery id is
//! `webhook-id` (it is signed), the event type the body's `type`.
//!
//! Two signature versions, and the route's keys decide which count:
//!
//! - `v1`, HMAC-SHA256, for a `whsec_` secret (the prefix may be left
//!   off): the HMAC key is the base64-decoded bytes after it.
//! - `v1a`, Ed25519, for a `whpk_` public key (feature `ed25519`): the
//!   base64 (padded or not) of the sender's 32-byte public key. The route
//!   trusts only the keys it is given, never a key named by the request.
//!   Verification is strict: a signature whose `S` is not reduced is
//!   refused (`ring`), and a key of small order or in a non-canonical
//!   encoding is refused when the route is built. A `whsk_` key is the
//!   sender's signing key and is refused by the verifier (test signers
//!   take it).
//!
//! A header may list both versions. Entries of other versions are skipped;
//! a header with no entry of a version the route has a key for is
//! rejected as malformed (so a route with only a `whsec_` secret ignores
//! `v1a` entries, as the reference libraries do).
//!
//! ```
//! use webhook_guard::{Scheme, Verifier};
//!
//! let verifier = Verifier::builder(Scheme::standard_webhooks())
//!     .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
//!     .build()?;
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```

use http::{HeaderMap, HeaderName};
use zeroize::Zeroizing;

use super::{BodyFields, BodyRef, Field, Parsed, Piece, Pieces};
use crate::{ConfigError, Rejection, RejectionKind};

/// `webhook-id`.
pub(crate) const ID: HeaderName = HeaderName::from_static("webhook-id");
/// `webhook-timestamp`.
pub(crate) const TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// `webhook-signature`.
pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const SVIX_ID: HeaderName = HeaderName::from_static("svix-id");
const SVIX_TIMESTAMP: HeaderName = HeaderName::from_static("svix-timestamp");
const SVIX_SIGNATURE: HeaderName = HeaderName::from_static("svix-signature");

/// Most entries (of any version) the signature list may hold.
const MAX_ENTRIES: usize = 2 * super::MAX_SIGNATURES;

/// The bytes after a `whpk_` or `whsk_` prefix: standard base64, padded
/// or not (the reference implementation adds the padding).
fn asymmetric_bytes(index: usize, encoded: &str) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    use base64::Engine as _;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(encoded)
        .map(Zeroizing::new)
        .map_err(|_| ConfigError::InvalidSecretEncoding {
            index,
            reason: "expected whpk_ or whsk_ followed by standard base64",
        })
}

/// A `whpk_` public key (feature `ed25519`).
fn public_key(index: usize, encoded: &str) -> Result<super::Key, ConfigError> {
    let bytes = asymmetric_bytes(index, encoded)?;
    #[cfg(feature = "ed25519")]
    return super::Key::ed25519(index, &bytes);
    #[cfg(not(feature = "ed25519"))]
    {
        let _ = bytes;
        Err(ConfigError::InvalidSecretEncoding {
            index,
            reason: "whpk_ public keys (v1a, Ed25519) need the crate feature ed25519",
        })
    }
}

fn key_bytes(index: usize, secret: &str) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    use base64::Engine as _;
    crate::secret::check_plain(index, secret)?;
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map(Zeroizing::new)
        .map_err(|_| ConfigError::InvalidSecretEncoding {
            index,
            reason: "expected whsec_ followed by standard base64",
        })?;
    if key.is_empty() {
        return Err(ConfigError::EmptySecret { index });
    }
    Ok(key)
}

/// The scheme's definition (see [`Def`](super::Def)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Standard;

impl super::Def for Standard {
    fn is_timestamped(&self) -> bool {
        true
    }

    fn signs_delivery_id(&self) -> bool {
        true
    }

    /// `whsec_` (or no prefix): an HMAC key for `v1`; `whpk_`: an Ed25519
    /// public key for `v1a`. A `whsk_` key is the sender's secret: refused.
    fn key(&self, index: usize, secret: &str) -> Result<super::Key, ConfigError> {
        crate::secret::check_plain(index, secret)?;
        if let Some(public) = secret.strip_prefix("whpk_") {
            return public_key(index, public);
        }
        if secret.starts_with("whsk_") {
            return Err(ConfigError::InvalidSecretEncoding {
                index,
                reason: "a whsk_ key is the sender's secret signing key: configure its whpk_ public key",
            });
        }
        super::Key::hmac_sha256(index, &key_bytes(index, secret)?)
    }

    /// Test signers also take a `whsk_` key (the 32-byte Ed25519 seed)
    /// and sign `v1a` with it.
    #[cfg(any(test, feature = "test-util"))]
    fn signing_key(&self, index: usize, secret: &str) -> Result<super::Key, ConfigError> {
        if let Some(seed) = secret.strip_prefix("whsk_") {
            let seed = asymmetric_bytes(index, seed)?;
            #[cfg(feature = "ed25519")]
            return super::Key::ed25519_signing(index, &seed);
            #[cfg(not(feature = "ed25519"))]
            {
                let _ = seed;
                return Err(ConfigError::InvalidSecretEncoding {
                    index,
                    reason: "whsk_ keys (v1a, Ed25519) need the crate feature ed25519",
                });
            }
        }
        self.key(index, secret)
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        parse(headers)
    }

    fn body_fields(&self) -> Option<super::BodyFieldsFn> {
        Some(body_fields)
    }

    fn event_type_member(&self) -> Option<&'static str> {
        Some("type")
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &super::Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
        sign(key, input, out);
    }
}

/// Reads the headers into `out` (built by [`Parsed::empty`](super::Parsed::empty)).
#[inline(always)]
pub(crate) fn parse_into<'h>(headers: &'h HeaderMap, out: &mut Parsed<'h>) -> Result<(), Rejection> {
    let [sig, svix_sig, ts, svix_ts, id, svix_id] = super::find(
        headers,
        [
            &SIGNATURE,
            &SVIX_SIGNATURE,
            &TIMESTAMP,
            &SVIX_TIMESTAMP,
            &ID,
            &SVIX_ID,
        ],
    );
    let sig = super::single_aliased(
        (sig, &SIGNATURE),
        (svix_sig, &SVIX_SIGNATURE),
        RejectionKind::MalformedSignature,
    )?
    .ok_or_else(|| {
        Rejection::new(
            RejectionKind::MissingSignature,
            "the webhook-signature header is missing",
        )
    })?
    .as_bytes();
    let ts = super::single_aliased(
        (ts, &TIMESTAMP),
        (svix_ts, &SVIX_TIMESTAMP),
        RejectionKind::MalformedTimestamp,
    )?
    .ok_or_else(|| {
        Rejection::new(
            RejectionKind::MissingTimestamp,
            "the webhook-timestamp header is missing",
        )
    })?
    .as_bytes();
    let id_value = super::single_aliased((id, &ID), (svix_id, &SVIX_ID), RejectionKind::MalformedHeader)?
        .ok_or_else(|| Rejection::new(RejectionKind::MissingHeader, "the webhook-id header is missing"))?;
    let id = id_value.as_bytes();
    if id.is_empty() {
        return Err(Rejection::new(
            RejectionKind::MalformedHeader,
            "the webhook-id header is empty",
        ));
    }
    let timestamp = super::timestamp(ts, "webhook-timestamp")?;

    let signatures = &mut out.signatures;
    for (n, entry) in sig.split(|b| *b == b' ').enumerate() {
        if n >= MAX_ENTRIES {
            return Err(super::bad_signature(
                "webhook-signature lists too many signatures",
            ));
        }
        let Some(comma) = entry.iter().position(|b| *b == b',') else {
            return Err(super::bad_signature(
                "a webhook-signature entry is not version,signature",
            ));
        };
        match &entry[..comma] {
            b"v1" => signatures.push(
                super::base64_tag(&entry[comma + 1..])
                    .ok_or_else(|| super::bad_signature("a v1 signature is not the base64 of 32 bytes"))?,
            )?,
            // An entry that is not an Ed25519 signature is skipped, like
            // an unknown version: a route without a `whpk_` key ignores
            // `v1a`, and one with only such keys then finds no candidate.
            b"v1a" => match ed25519_signature(&entry[comma + 1..]) {
                Some(sig) => signatures.push_other(super::Algorithm::Ed25519, sig)?,
                None => continue,
            },
            _ => continue,
        }
    }
    if signatures.is_empty() {
        return Err(super::bad_signature(
            "webhook-signature carries no v1 or v1a signature",
        ));
    }
    out.timestamp = Some(timestamp);
    out.content = Pieces::new(&[
        Piece::Bytes(id),
        Piece::Bytes(b"."),
        Piece::Bytes(ts),
        Piece::Bytes(b"."),
        Piece::Body,
    ]);
    out.id = Field::Header(id_value);
    out.event_type = Field::Body;
    Ok(())
}

/// The headers read into a new [`Parsed`].
pub(crate) fn parse(headers: &HeaderMap) -> Result<Parsed<'_>, Rejection> {
    let mut out = Parsed::empty();
    parse_into(headers, &mut out)?;
    Ok(out)
}

fn body_fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        id: None,
        event_type: super::json_str(body, "type"),
        action: None,
    }
}

/// Canonical standard base64 of exactly 64 bytes (88 characters, `==`).
fn ed25519_signature(raw: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    if raw.len() != 88 {
        return None;
    }
    let mut buf = [0u8; 66];
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(raw, &mut buf)
        .ok()?;
    buf.get(..64).filter(|_| n == 64).map(<[u8]>::to_vec)
}

#[cfg(any(test, feature = "test-util"))]
fn sign(key: &super::Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
    use base64::Engine as _;
    let ts = input.timestamp.to_string();
    let tag = key.sign(&[input.id.as_bytes(), b".", ts.as_bytes(), b".", input.body]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(tag);
    let version = match key.algorithm() {
        super::Algorithm::HmacSha256 => "v1",
        // Standard Webhooks' signing keys are HMAC or Ed25519.
        _ => "v1a",
    };
    out.insert(ID, super::value(input.id));
    out.insert(TIMESTAMP, super::value(&ts));
    out.insert(SIGNATURE, super::value(&format!("{version},{b64}")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn svix_aliases_work_and_must_agree() {
        let h = headers(&[
            ("svix-id", "msg_1"),
            ("svix-timestamp", "1614265330"),
            ("svix-signature", SIG),
        ]);
        assert!(parse(&h).is_ok());
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("svix-id", "msg_2"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", SIG),
        ]);
        assert_eq!(
            parse(&h).err().map(|r| r.kind()),
            Some(RejectionKind::MalformedHeader)
        );
    }

    #[test]
    fn a_v1a_entry_that_is_not_64_bytes_is_skipped() {
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        assert_eq!(
            parse(&h).err().map(|r| r.kind()),
            Some(RejectionKind::MalformedSignature)
        );
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", "v1,"),
        ]);
        assert_eq!(
            parse(&h).err().map(|r| r.kind()),
            Some(RejectionKind::MalformedSignature)
        );
    }

    #[test]
    fn secrets_must_be_base64() {
        assert!(key_bytes(0, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(key_bytes(0, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(matches!(
            key_bytes(1, "whsec_not base64!"),
            Err(ConfigError::InvalidSecretEncoding { index: 1, .. })
        ));
        assert!(matches!(
            key_bytes(0, "whsec_"),
            Err(ConfigError::EmptySecret { index: 0 })
        ));
    }
}
