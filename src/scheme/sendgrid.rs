//! SendGrid's signed Event Webhook:
//! `X-Twilio-Email-Event-Webhook-Signature: <base64 DER>` with
//! `X-Twilio-Email-Event-Webhook-Timestamp: <unix seconds>` (feature
//! `ecdsa`).
//!
//! The signed content is `<timestamp><raw body>`, with no separator. The
//! body is sent exactly as signed, its final `\r\n` included: it is never
//! trimmed (a body without it does not verify). The signature is ECDSA
//! over P-256 with SHA-256, DER-encoded (`SEQUENCE { r, s }`, at most 72
//! bytes), in standard base64.
//!
//! The key is the "verification key" from SendGrid's Mail Settings: the
//! base64 of a DER SubjectPublicKeyInfo, as SendGrid shows it (PEM armour,
//! `-----BEGIN PUBLIC KEY-----` … `-----END PUBLIC KEY-----`, is also
//! accepted). It is parsed strictly when the route is built: exactly the
//! `id-ecPublicKey` and `prime256v1` identifiers, an uncompressed point on
//! the curve, nothing after it. Any other key is a
//! [`ConfigError::InvalidSecretEncoding`], as is any key without the
//! feature `ecdsa`.
//!
//! Decisions:
//!
//! - **High S verifies.** Any `s` in `[1, n - 1]` is accepted (`ring`'s
//!   `ECDSA_P256_SHA256_ASN1`). SendGrid's signers do not normalise `S`
//!   (one of its SDKs' published vectors has a high `S`), so refusing it
//!   would refuse about half of the real deliveries. `(r, n - s)` is then
//!   a second valid signature of the same body, which gives an attacker
//!   nothing: it cannot sign other content, and dedupe does not key on the
//!   signature.
//! - **Malformed signatures.** A header that is not canonical base64 of 8
//!   to 72 bytes shaped as a DER `SEQUENCE` of two `INTEGER`s is
//!   `malformed_signature`. A well-shaped DER that `ring` refuses (a
//!   non-minimal integer, `r` or `s` zero or not below `n`) is
//!   `signature_mismatch`, like any signature that does not verify.
//! - **Freshness.** SendGrid documents no tolerance. The timestamp is
//!   signed, so it is checked against the route's tolerance (300 seconds
//!   unless you set another); SendGrid retries a failed delivery later with
//!   a fresh signature.
//! - **Delivery id and event type.** The body is a JSON array of up to a
//!   few hundred events, each with its own `sg_event_id`; nothing
//!   identifies the batch and no header names it. Both are absent, so
//!   dedupe keys on the hash of the body (a retried batch is the same
//!   bytes), and per-event deduplication is left to the handler.
//!
//! ```
//! use webhook_guard::{Scheme, Verifier};
//!
//! let verifier = Verifier::builder(Scheme::sendgrid())
//!     .secret("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==")
//!     .build();
//! assert_eq!(verifier.is_ok(), cfg!(feature = "ecdsa"));
//! ```
//!
//! [`ConfigError::InvalidSecretEncoding`]: crate::ConfigError::InvalidSecretEncoding

use http::{HeaderMap, HeaderName};
use zeroize::Zeroizing;

use super::{Field, Parsed, Piece, Pieces, Signatures};
use crate::{ConfigError, Rejection};

/// `X-Twilio-Email-Event-Webhook-Signature`.
pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("x-twilio-email-event-webhook-signature");
/// `X-Twilio-Email-Event-Webhook-Timestamp`.
pub(crate) const TIMESTAMP: HeaderName = HeaderName::from_static("x-twilio-email-event-webhook-timestamp");

/// Longest DER ECDSA P-256 signature: `30 46 02 21 <33> 02 21 <33>`.
const MAX_DER_LEN: usize = 72;
/// Its base64: 96 characters.
const MAX_BASE64_LEN: usize = MAX_DER_LEN.div_ceil(3) * 4;

const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PEM_END: &str = "-----END PUBLIC KEY-----";

/// The scheme's definition (see [`Def`](super::Def)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendGrid;

/// Standard base64 (padded, canonical), or a configuration error.
fn base64_bytes(index: usize, text: &str, what: &'static str) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(Zeroizing::new)
        .map_err(|_| ConfigError::InvalidSecretEncoding { index, reason: what })
}

/// The DER of the verification key: base64, or base64 inside PEM armour.
fn spki_der(index: usize, secret: &str) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    crate::secret::check_plain(index, secret)?;
    const WHAT: &str = "a SendGrid verification key is the base64 of a DER SubjectPublicKeyInfo";
    match secret.strip_prefix(PEM_BEGIN) {
        Some(rest) => {
            let inner = rest
                .strip_suffix(PEM_END)
                .ok_or(ConfigError::InvalidSecretEncoding {
                    index,
                    reason: "PEM armour without its END PUBLIC KEY line",
                })?;
            let compact: Zeroizing<String> =
                Zeroizing::new(inner.chars().filter(|c| !c.is_ascii_whitespace()).collect());
            base64_bytes(index, &compact, WHAT)
        }
        None => base64_bytes(index, secret, WHAT),
    }
}

impl super::Def for SendGrid {
    fn is_timestamped(&self) -> bool {
        true
    }

    fn signs_delivery_id(&self) -> bool {
        false
    }

    /// The verification key: base64 DER SubjectPublicKeyInfo of a P-256
    /// public key.
    fn key(&self, index: usize, secret: &str) -> Result<super::Key, ConfigError> {
        let der = spki_der(index, secret)?;
        #[cfg(feature = "ecdsa")]
        return super::Key::ecdsa_p256_spki(index, &der);
        #[cfg(not(feature = "ecdsa"))]
        {
            let _ = der;
            Err(ConfigError::InvalidSecretEncoding {
                index,
                reason: "SendGrid verification keys (ECDSA P-256) need the crate feature ecdsa",
            })
        }
    }

    /// Test signers take the base64 of a PKCS#8 P-256 private key.
    #[cfg(any(test, feature = "test-util"))]
    fn signing_key(&self, index: usize, secret: &str) -> Result<super::Key, ConfigError> {
        crate::secret::check_plain(index, secret)?;
        let pkcs8 = base64_bytes(
            index,
            secret,
            "a SendGrid test signing key is the base64 of a PKCS#8 P-256 private key",
        )?;
        #[cfg(feature = "ecdsa")]
        return super::Key::ecdsa_p256_signing(index, &pkcs8);
        #[cfg(not(feature = "ecdsa"))]
        {
            let _ = pkcs8;
            Err(ConfigError::InvalidSecretEncoding {
                index,
                reason: "SendGrid keys (ECDSA P-256) need the crate feature ecdsa",
            })
        }
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        parse(headers)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &super::Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
        use base64::Engine as _;
        let ts = input.timestamp.to_string();
        let signature = key.sign(&[ts.as_bytes(), input.body]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(signature);
        out.insert(SIGNATURE, super::value(&b64));
        out.insert(TIMESTAMP, super::value(&ts));
    }
}

fn parse(headers: &HeaderMap) -> Result<Parsed<'_>, Rejection> {
    let (raw, ts, timestamp) = super::signature_and_timestamp(
        headers,
        &SIGNATURE,
        &TIMESTAMP,
        "X-Twilio-Email-Event-Webhook-Timestamp",
    )?;
    let der = der_signature(raw).ok_or_else(|| {
        super::bad_signature(
            "X-Twilio-Email-Event-Webhook-Signature is not the base64 of a DER ECDSA P-256 signature",
        )
    })?;
    let mut signatures = Signatures::new();
    signatures.push_other(super::Algorithm::EcdsaP256Sha256, der)?;
    Ok(Parsed {
        timestamp: Some(timestamp),
        signatures,
        content: Pieces::new(&[Piece::Bytes(ts), Piece::Body]),
        id: Field::Absent,
        event_type: Field::Absent,
        key_ref: None,
    })
}

/// Canonical standard base64 of at most [`MAX_DER_LEN`] bytes shaped as
/// `SEQUENCE { INTEGER, INTEGER }` in DER lengths (each integer 1 to 33
/// bytes, nothing after). Whether the integers are minimal and in range is
/// `ring`'s check.
fn der_signature(raw: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    if raw.is_empty() || raw.len() > MAX_BASE64_LEN {
        return None;
    }
    let mut buf = [0u8; MAX_DER_LEN + 3];
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(raw, &mut buf)
        .ok()?;
    let der = buf.get(..n)?;
    let (&[0x30, len], rest) = der.split_first_chunk::<2>()? else {
        return None;
    };
    if usize::from(len) != rest.len() {
        return None;
    }
    let rest = der_integer(rest)?;
    let rest = der_integer(rest)?;
    rest.is_empty().then(|| der.to_vec())
}

/// Skips one DER `INTEGER` of 1 to 33 bytes.
fn der_integer(der: &[u8]) -> Option<&[u8]> {
    let (&[0x02, len], rest) = der.split_first_chunk::<2>()? else {
        return None;
    };
    let len = usize::from(len);
    if !(1..=33).contains(&len) {
        return None;
    }
    rest.get(len..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RejectionKind;
    use http::HeaderValue;

    const NODE_SIG: &str =
        "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
    const NODE_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";

    fn headers(sig: &str, ts: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(sig) {
            h.insert(SIGNATURE, v);
        }
        if let Ok(v) = HeaderValue::from_str(ts) {
            h.insert(TIMESTAMP, v);
        }
        h
    }

    fn kind(h: &HeaderMap) -> Option<RejectionKind> {
        parse(h).err().map(|r| r.kind())
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn signatures_are_bounded_der() {
        assert!(parse(&headers(NODE_SIG, "1588788367")).is_ok());
        // The smallest and the largest shapes.
        let small = b64(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]);
        assert!(der_signature(small.as_bytes()).is_some());
        let mut big = vec![0x30, 0x46, 0x02, 0x21];
        big.extend([0x00; 33]);
        big.extend([0x02, 0x21]);
        big.extend([0x00; 33]);
        assert_eq!(big.len(), MAX_DER_LEN);
        assert!(der_signature(b64(&big).as_bytes()).is_some());
        let mut too_big = big.clone();
        too_big.push(0);
        too_big[1] += 1;
        assert!(der_signature(b64(&too_big).as_bytes()).is_none());
        for bad in [
            // Unpadded, padding only, not base64.
            NODE_SIG.trim_end_matches('='),
            "====",
            "MEUCIQCt*HJe",
            // A SEQUENCE whose length disagrees, an empty integer, an
            // integer of 34 bytes, trailing bytes, another tag.
            &b64(&[0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]),
            &b64(&[0x30, 0x05, 0x02, 0x00, 0x02, 0x01, 0x01]),
            &b64(&[[0x30, 0x26, 0x02, 0x22].as_slice(), &[1; 34], &[0x02, 0x00]].concat()),
            &b64(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00]),
            &b64(&[0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]),
            &b64(&[0x30, 0x06, 0x04, 0x01, 0x01, 0x02, 0x01, 0x01]),
            "",
        ] {
            assert_eq!(
                kind(&headers(bad, "1588788367")),
                Some(RejectionKind::MalformedSignature),
                "{bad:?}"
            );
        }
        let long = "A".repeat(MAX_BASE64_LEN + 4);
        assert_eq!(
            kind(&headers(&long, "1")),
            Some(RejectionKind::MalformedSignature)
        );
        // Non-zero trailing bits are not canonical base64.
        let mut odd = NODE_SIG.to_owned().into_bytes();
        odd[94] = b'1';
        let odd = String::from_utf8(odd).unwrap_or_default();
        assert_eq!(kind(&headers(&odd, "1")), Some(RejectionKind::MalformedSignature));
    }

    #[test]
    fn missing_and_malformed_headers() {
        let mut h = headers(NODE_SIG, "1588788367");
        h.remove(&SIGNATURE);
        assert_eq!(kind(&h), Some(RejectionKind::MissingSignature));
        let mut h = headers(NODE_SIG, "1588788367");
        h.remove(&TIMESTAMP);
        assert_eq!(kind(&h), Some(RejectionKind::MissingTimestamp));
        assert_eq!(
            kind(&headers(NODE_SIG, "-1588788367")),
            Some(RejectionKind::MalformedTimestamp)
        );
    }

    #[test]
    fn keys_are_base64_spki_or_pem() {
        use super::super::Def as _;
        let pem = format!("{PEM_BEGIN}\n{}\n{}\n{PEM_END}", &NODE_KEY[..64], &NODE_KEY[64..]);
        assert_eq!(spki_der(0, &pem).ok(), spki_der(0, NODE_KEY).ok());
        assert!(spki_der(0, &format!("{PEM_BEGIN}\n{NODE_KEY}")).is_err());
        let err = SendGrid.key(3, &NODE_KEY[..40]).err();
        assert!(matches!(
            err,
            Some(ConfigError::InvalidSecretEncoding { index: 3, .. })
        ));
        assert!(!format!("{err:?}").contains(&NODE_KEY[..40]));
        #[cfg(feature = "ecdsa")]
        {
            assert!(SendGrid.key(0, NODE_KEY).is_ok());
            assert!(SendGrid.key(0, &pem).is_ok());
        }
        #[cfg(not(feature = "ecdsa"))]
        assert!(SendGrid.key(0, NODE_KEY).is_err());
    }
}
