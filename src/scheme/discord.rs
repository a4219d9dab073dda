//! Discord interactions: `X-Signature-Ed25519: <hex>` with
//! `X-Signature-Timestamp: <unix seconds>` (feature `ed25519`).
//!
//! The signed content is `<timestamp><raw body>`, with no separator, and
//! the signature is Ed25519 (RFC 8032), 64 bytes as exactly 128 hex digits.
//! The key is the application's public key from the Developer Portal: 64
//! hex digits (32 bytes). A key of small order or in a non-canonical
//! encoding is refused when the route is built, and verification is strict
//! (`ring`: a signature whose `S` is not reduced is refused). Without the
//! feature `ed25519`, building a route with this scheme fails with
//! [`ConfigError::InvalidSecretEncoding`].
//!
//! The timestamp is signed and checked against the route's tolerance (the
//! official library checks none; Discord sends interactions as they
//! happen, so the default tolerance holds). The delivery id is the body's
//! `id` (signed, so it is a dedupe key); the event type is the interaction
//! `type` by name: `PING` (1), `APPLICATION_COMMAND` (2),
//! `MESSAGE_COMPONENT` (3), `APPLICATION_COMMAND_AUTOCOMPLETE` (4),
//! `MODAL_SUBMIT` (5), or the number as text for any other.
//!
//! A verified `PING` (`"type": 1`) is answered by the layer itself with
//! `200`, `Content-Type: application/json`, `{"type":1}`, and never reaches
//! the handler. Every signature failure is `401`, as Discord requires (it
//! sends invalid signatures on purpose, and removes an endpoint that
//! accepts them).
//!
//! Discord's app *webhook events* are signed the same way, but their ping
//! is `"type": 0` and wants `204`: this scheme does not answer it (the
//! event type is then `"0"`, for the handler to answer).
//!
//! ```
//! use webhook_guard::{Scheme, Verifier};
//!
//! let verifier = Verifier::builder(Scheme::discord())
//!     .secret("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
//!     .build();
//! assert_eq!(verifier.is_ok(), cfg!(feature = "ed25519"));
//! ```
//!
//! [`ConfigError::InvalidSecretEncoding`]: crate::ConfigError::InvalidSecretEncoding

use http::{HeaderMap, HeaderName};

use super::{BodyFields, BodyRef, Field, Parsed, Piece, Pieces, Signatures};
use crate::{ConfigError, Rejection};

/// `X-Signature-Ed25519`.
pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("x-signature-ed25519");
/// `X-Signature-Timestamp`.
pub(crate) const TIMESTAMP: HeaderName = HeaderName::from_static("x-signature-timestamp");

/// Length of an Ed25519 signature.
const SIGNATURE_LEN: usize = 64;

/// The scheme's definition (see [`Def`](super::Def)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Discord;

/// Exactly `N` bytes as `2 * N` hex digits (either case).
fn hex_exact<const N: usize>(raw: &[u8]) -> Option<[u8; N]> {
    if raw.len() != 2 * N || !raw.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(raw, &mut out).ok()?;
    Some(out)
}

/// The 32 bytes of a key written as 64 hex digits.
fn key_bytes(
    index: usize,
    secret: &str,
    what: &'static str,
) -> Result<zeroize::Zeroizing<[u8; 32]>, ConfigError> {
    crate::secret::check_plain(index, secret)?;
    hex_exact::<32>(secret.as_bytes())
        .map(zeroize::Zeroizing::new)
        .ok_or(ConfigError::InvalidSecretEncoding { index, reason: what })
}

impl super::Def for Discord {
    fn is_timestamped(&self) -> bool {
        true
    }

    fn signs_delivery_id(&self) -> bool {
        true
    }

    /// The application's Ed25519 public key, 64 hex digits.
    fn key(&self, index: usize, secret: &str) -> Result<super::Key, ConfigError> {
        let bytes = key_bytes(index, secret, "a Discord public key is 64 hex digits (32 bytes)")?;
        #[cfg(feature = "ed25519")]
        return super::Key::ed25519(index, &*bytes);
        #[cfg(not(feature = "ed25519"))]
        {
            let _ = bytes;
            Err(ConfigError::InvalidSecretEncoding {
                index,
                reason: "Discord public keys (Ed25519) need the crate feature ed25519",
            })
        }
    }

    /// Test signers take the 32-byte Ed25519 seed as 64 hex digits.
    #[cfg(any(test, feature = "test-util"))]
    fn signing_key(&self, index: usize, secret: &str) -> Result<super::Key, ConfigError> {
        let seed = key_bytes(
            index,
            secret,
            "a Discord test signing key is a 32-byte Ed25519 seed as 64 hex digits",
        )?;
        #[cfg(feature = "ed25519")]
        return super::Key::ed25519_signing(index, &*seed);
        #[cfg(not(feature = "ed25519"))]
        {
            let _ = seed;
            Err(ConfigError::InvalidSecretEncoding {
                index,
                reason: "Discord keys (Ed25519) need the crate feature ed25519",
            })
        }
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        parse(headers)
    }

    fn body_fields(&self) -> Option<super::BodyFieldsFn> {
        Some(body_fields)
    }

    /// A `PING` is answered with a `PONG`: `{"type":1}`.
    fn answer_verified(
        &self,
        hook: &crate::VerifiedWebhook,
        sign: &super::Sign<'_>,
    ) -> Option<axum::response::Response> {
        let _ = sign;
        use axum::response::IntoResponse as _;
        let value = hook.doc().ok()?;
        if value.get("type").and_then(|t| t.as_u64()) != Some(1) {
            return None;
        }
        Some(
            (
                [(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                )],
                r#"{"type":1}"#,
            )
                .into_response(),
        )
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &super::Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
        let ts = input.timestamp.to_string();
        let signature = key.sign(&[ts.as_bytes(), input.body]);
        out.insert(SIGNATURE, super::value(&hex::encode(signature)));
        out.insert(TIMESTAMP, super::value(&ts));
    }
}

fn parse(headers: &HeaderMap) -> Result<Parsed<'_>, Rejection> {
    let (raw, ts, timestamp) =
        super::signature_and_timestamp(headers, &SIGNATURE, &TIMESTAMP, "X-Signature-Timestamp")?;
    let signature = hex_exact::<SIGNATURE_LEN>(raw)
        .ok_or_else(|| super::bad_signature("X-Signature-Ed25519 is not 128 hex digits"))?;
    let mut signatures = Signatures::new();
    signatures.push_other(super::Algorithm::Ed25519, signature.to_vec())?;
    Ok(Parsed {
        timestamp: Some(timestamp),
        signatures,
        content: Pieces::new(&[Piece::Bytes(ts), Piece::Body]),
        id: Field::Body,
        event_type: Field::Body,
        key_ref: None,
    })
}

/// The body's `id`, and its `type` by name.
fn body_fields(body: BodyRef<'_>) -> BodyFields {
    let event_type = match body {
        BodyRef::Json(v) => v.get("type").and_then(|t| t.as_u64()).map(|n| {
            match n {
                1 => "PING",
                2 => "APPLICATION_COMMAND",
                3 => "MESSAGE_COMPONENT",
                4 => "APPLICATION_COMMAND_AUTOCOMPLETE",
                5 => "MODAL_SUBMIT",
                other => return other.to_string(),
            }
            .to_owned()
        }),
        BodyRef::Form(_) => None,
    };
    BodyFields {
        id: super::json_str(body, "id"),
        event_type,
        action: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RejectionKind;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    const SIG: &str = "756baa610c8465c468a26af3c4d3bac60c8f46660d21e1292acde7be2082a0850a2a5757e0ca63e815c8f01270a56637d20ab35d5d13e38218056b0d497f370c";

    fn kind(h: &HeaderMap) -> Option<RejectionKind> {
        parse(h).err().map(|r| r.kind())
    }

    #[test]
    fn headers_are_strict() {
        let ok = headers(&[
            ("x-signature-ed25519", SIG),
            ("x-signature-timestamp", "1700000000"),
        ]);
        let parsed = parse(&ok).map_err(|r| r.kind()).ok();
        assert_eq!(parsed.as_ref().and_then(|p| p.timestamp), Some(1_700_000_000));
        let upper = SIG.to_ascii_uppercase();
        let mut h = ok.clone();
        h.insert(
            SIGNATURE,
            HeaderValue::from_str(&upper).unwrap_or_else(|_| HeaderValue::from_static("")),
        );
        assert!(parse(&h).is_ok(), "upper-case hex");
        for bad in [
            &SIG[..126],
            &format!("{SIG}00")[..],
            &format!("0x{}", &SIG[2..])[..],
            "",
        ] {
            let mut h = ok.clone();
            h.insert(
                SIGNATURE,
                HeaderValue::from_str(bad).unwrap_or_else(|_| HeaderValue::from_static("")),
            );
            assert_eq!(kind(&h), Some(RejectionKind::MalformedSignature), "{bad:?}");
        }
        assert_eq!(
            kind(&headers(&[("x-signature-timestamp", "1700000000")])),
            Some(RejectionKind::MissingSignature)
        );
        assert_eq!(
            kind(&headers(&[("x-signature-ed25519", SIG)])),
            Some(RejectionKind::MissingTimestamp)
        );
        assert_eq!(
            kind(&headers(&[
                ("x-signature-ed25519", SIG),
                ("x-signature-timestamp", "1700000000.5"),
            ])),
            Some(RejectionKind::MalformedTimestamp)
        );
        let mut h = ok.clone();
        h.append(SIGNATURE, HeaderValue::from_static(SIG));
        assert_eq!(kind(&h), Some(RejectionKind::MalformedSignature), "sent twice");
    }

    #[test]
    fn event_types_are_named() {
        for (n, name) in [
            (1, "PING"),
            (2, "APPLICATION_COMMAND"),
            (3, "MESSAGE_COMPONENT"),
            (4, "APPLICATION_COMMAND_AUTOCOMPLETE"),
            (5, "MODAL_SUBMIT"),
            (0, "0"),
            (42, "42"),
        ] {
            let v = serde_json::json!({ "id": "7", "type": n });
            let f = fields_of(&v);
            assert_eq!(f.event_type.as_deref(), Some(name));
            assert_eq!(f.id.as_deref(), Some("7"));
        }
        let v = serde_json::json!({ "type": "1" });
        assert_eq!(fields_of(&v).event_type, None);
        let v = serde_json::json!([1]);
        assert_eq!(fields_of(&v).event_type, None);
    }

    #[allow(clippy::unwrap_used)]
    fn fields_of(v: &serde_json::Value) -> BodyFields {
        let bytes = serde_json::to_vec(v).unwrap();
        let doc = crate::json::Doc::parse(&bytes).unwrap();
        body_fields(BodyRef::Json(doc.root()))
    }

    #[test]
    fn keys_are_64_hex_digits() {
        use super::super::Def as _;
        let pk = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let short = &pk[..62];
        let err = Discord.key(0, short).err();
        assert!(matches!(
            err,
            Some(ConfigError::InvalidSecretEncoding { index: 0, .. })
        ));
        assert!(!format!("{err:?}").contains(short));
        assert!(Discord.key(0, &format!(" {pk}")).is_err());
        #[cfg(feature = "ed25519")]
        {
            assert!(Discord.key(0, pk).is_ok());
            assert!(Discord.key(0, &pk.to_ascii_uppercase()).is_ok());
            // A point of small order.
            let weak = "0100000000000000000000000000000000000000000000000000000000000000";
            assert!(Discord.key(0, weak).is_err());
        }
        #[cfg(not(feature = "ed25519"))]
        assert!(Discord.key(0, pk).is_err());
    }
}
