//! Standard Webhooks (and Svix): `webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64>[ v1,<base64>…]`.
//!
//! The signed content is `<id>.<timestamp>.<raw body>`. The secret is
//! `whsec_` followed by the base64 key (the prefix may be left off); the
//! HMAC key is the decoded bytes. The `svix-id`, `svix-timestamp` and
//! `svix-signature` names are accepted as aliases; when both names are
//! sent they must agree. Only `v1` (symmetric) signatures count, other
//! versions in the list (such as `v1a`) are skipped, and a list with no
//! `v1` is rejected. The delivery id is `webhook-id` (it is signed), the
//! event type the body's `type`.
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

use super::{BodyFields, BodyRef, Field, Parsed, Piece, Pieces, Signatures};
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

pub(crate) fn key(index: usize, secret: &str) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
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

pub(crate) fn parse(headers: &HeaderMap) -> Result<Parsed<'_>, Rejection> {
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

    let mut signatures = Signatures::new();
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
        if &entry[..comma] != b"v1" {
            continue;
        }
        signatures.push(
            super::base64_tag(&entry[comma + 1..])
                .ok_or_else(|| super::bad_signature("a v1 signature is not the base64 of 32 bytes"))?,
        )?;
    }
    if signatures.is_empty() {
        return Err(super::bad_signature("webhook-signature carries no v1 signature"));
    }
    Ok(Parsed {
        timestamp: Some(timestamp),
        signatures,
        content: Pieces::new(&[
            Piece::Bytes(id),
            Piece::Bytes(b"."),
            Piece::Bytes(ts),
            Piece::Bytes(b"."),
            Piece::Body,
        ]),
        id: Field::Header(id_value),
        event_type: Field::Body,
    })
}

pub(crate) fn body_fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        id: None,
        event_type: super::json_str(body, "type"),
        action: None,
    }
}

#[cfg(any(test, feature = "test-util"))]
pub(crate) fn sign(mac: crate::secret::HmacSha256, input: &super::SignInput<'_>, out: &mut HeaderMap) {
    use base64::Engine as _;
    let ts = input.timestamp.to_string();
    let tag = super::mac_of(mac, &[input.id.as_bytes(), b".", ts.as_bytes(), b".", input.body]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(tag);
    out.insert(ID, super::value(input.id));
    out.insert(TIMESTAMP, super::value(&ts));
    out.insert(SIGNATURE, super::value(&format!("v1,{b64}")));
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
    fn only_v1_counts() {
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
        assert!(key(0, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(key(0, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(matches!(
            key(1, "whsec_not base64!"),
            Err(ConfigError::InvalidSecretEncoding { index: 1, .. })
        ));
        assert!(matches!(
            key(0, "whsec_"),
            Err(ConfigError::EmptySecret { index: 0 })
        ));
    }
}
