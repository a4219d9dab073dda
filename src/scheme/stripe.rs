//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`.
//!
//! The signed content is `<t>.<raw body>`; the HMAC key is the endpoint
//! secret's text, `whsec_` prefix included. Only `v1` signatures count:
//! `v0` (test-mode legacy) and unknown keys are ignored, so a header with no
//! `v1` is rejected rather than downgraded. Several `v1` entries are
//! accepted (Stripe sends one per active secret while you roll a secret); a
//! second `t` is malformed. The delivery id and the event type are the
//! body's `id` and `type`.
//!
//! ```
//! use webhook_guard::{Scheme, Verifier};
//!
//! let verifier = Verifier::builder(Scheme::stripe())
//!     .secret("whsec_test_secret")
//!     .build()?;
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```

use http::{HeaderMap, HeaderName};

use super::{BodyFields, BodyRef, Field, Parsed, Piece, Pieces};
use crate::{Rejection, RejectionKind};

/// `Stripe-Signature`.
pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");

/// The scheme's definition (see [`Def`](super::Def)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stripe;

impl super::Def for Stripe {
    fn is_timestamped(&self) -> bool {
        true
    }

    fn signs_delivery_id(&self) -> bool {
        true
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
    let raw = super::required(
        super::Found::lookup(headers, &SIGNATURE),
        &SIGNATURE,
        RejectionKind::MissingSignature,
        RejectionKind::MalformedSignature,
    )?
    .as_bytes();
    let mut t: Option<&[u8]> = None;
    let signatures = &mut out.signatures;
    for item in raw.split(|b| *b == b',') {
        let Some(eq) = item.iter().position(|b| *b == b'=') else {
            return Err(super::bad_signature("a Stripe-Signature item is not key=value"));
        };
        let (key, value) = (&item[..eq], &item[eq + 1..]);
        match key {
            b"t" if t.is_some() => {
                return Err(Rejection::new(
                    RejectionKind::MalformedTimestamp,
                    "Stripe-Signature carries more than one t",
                ))
            }
            b"t" => t = Some(value),
            b"v1" => signatures.push(
                super::hex_tag(value)
                    .ok_or_else(|| super::bad_signature("a v1 signature is not 64 hex digits"))?,
            )?,
            _ => {}
        }
    }
    let t =
        t.ok_or_else(|| Rejection::new(RejectionKind::MissingTimestamp, "Stripe-Signature carries no t"))?;
    let timestamp = super::timestamp(t, "Stripe-Signature")?;
    if signatures.is_empty() {
        return Err(super::bad_signature("Stripe-Signature carries no v1 signature"));
    }
    out.timestamp = Some(timestamp);
    out.content = Pieces::new(&[Piece::Bytes(t), Piece::Bytes(b"."), Piece::Body]);
    out.id = Field::Body;
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
        id: super::json_str(body, "id"),
        event_type: super::json_str(body, "type"),
        action: None,
    }
}

#[cfg(any(test, feature = "test-util"))]
fn sign(key: &super::Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
    let t = input.timestamp.to_string();
    let tag = key.sign(&[t.as_bytes(), b".", input.body]);
    out.insert(SIGNATURE, super::value(&format!("t={t},v1={}", hex::encode(tag))));
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse_str(v: &'static str) -> Result<(), RejectionKind> {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE, HeaderValue::from_static(v));
        parse(&h).map(|_| ()).map_err(|r| r.kind())
    }

    const SIG: &str = "5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd";

    #[test]
    fn accepts_several_v1_and_ignores_v0_and_unknown() {
        let ok = format!("t=1492774577,v1={SIG},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39,v1={SIG},x=y");
        assert_eq!(parse_str(Box::leak(ok.into_boxed_str())), Ok(()));
    }

    #[test]
    fn rejects_bad_headers() {
        use RejectionKind::*;
        let cases: &[(&str, RejectionKind)] = &[
            (
                "t=1492774577,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39",
                MalformedSignature,
            ),
            ("t=1492774577,v1=", MalformedSignature),
            ("t=1492774577,v1=5257a869", MalformedSignature),
            ("t=1492774577", MalformedSignature),
            (
                "v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
                MissingTimestamp,
            ),
            (
                "t=1,t=2,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
                MalformedTimestamp,
            ),
            (
                "t=+1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
                MalformedTimestamp,
            ),
            ("t=1492774577;v1=x", MalformedTimestamp),
            ("t1492774577,v1=x", MalformedSignature),
            ("", MalformedSignature),
        ];
        for (header, kind) in cases {
            assert_eq!(parse_str(header), Err(*kind), "{header}");
        }
    }
}
