//! Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the raw body.
//!
//! The key is the app's client secret text. The newer `Shopify-Hmac-Sha256`
//! name is accepted too (if both are sent they must agree). Shopify signs
//! no timestamp and does not sign `X-Shopify-Webhook-Id`: pair this scheme
//! with deduplication on the body's hash. The delivery id is
//! `X-Shopify-Webhook-Id`, the event type `X-Shopify-Topic`.
//!
//! ```
//! use webhook_guard::{Scheme, Verifier};
//!
//! let verifier = Verifier::builder(Scheme::shopify())
//!     .secret("my-shopify-app-secret")
//!     .build()?;
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```

use http::{HeaderMap, HeaderName};

use super::{Field, Parsed, Piece, Pieces};
use crate::{Rejection, RejectionKind};

/// `X-Shopify-Hmac-Sha256`.
pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("x-shopify-hmac-sha256");
/// `Shopify-Hmac-Sha256`.
pub(crate) const SIGNATURE_ALIAS: HeaderName = HeaderName::from_static("shopify-hmac-sha256");
/// `X-Shopify-Webhook-Id`.
pub(crate) const WEBHOOK_ID: HeaderName = HeaderName::from_static("x-shopify-webhook-id");
/// `Shopify-Webhook-Id`.
pub(crate) const WEBHOOK_ID_ALIAS: HeaderName = HeaderName::from_static("shopify-webhook-id");
/// `X-Shopify-Topic`.
pub(crate) const TOPIC: HeaderName = HeaderName::from_static("x-shopify-topic");
/// `Shopify-Topic`.
pub(crate) const TOPIC_ALIAS: HeaderName = HeaderName::from_static("shopify-topic");

/// The scheme's definition (see [`Def`](super::Def)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shopify;

impl super::Def for Shopify {
    fn is_timestamped(&self) -> bool {
        false
    }

    fn signs_delivery_id(&self) -> bool {
        false
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        parse(headers)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &super::Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
        sign(key, input, out);
    }
}

/// Reads the headers into `out` (built by [`Parsed::empty`](super::Parsed::empty)).
#[inline(always)]
pub(crate) fn parse_into<'h>(headers: &'h HeaderMap, out: &mut Parsed<'h>) -> Result<(), Rejection> {
    let [signature, signature_alias, id, id_alias, topic, topic_alias] = super::find(
        headers,
        [
            &SIGNATURE,
            &SIGNATURE_ALIAS,
            &WEBHOOK_ID,
            &WEBHOOK_ID_ALIAS,
            &TOPIC,
            &TOPIC_ALIAS,
        ],
    );
    let raw = super::single_aliased(
        (signature, &SIGNATURE),
        (signature_alias, &SIGNATURE_ALIAS),
        RejectionKind::MalformedSignature,
    )?
    .ok_or_else(|| {
        Rejection::new(
            RejectionKind::MissingSignature,
            "the x-shopify-hmac-sha256 header is missing",
        )
    })?
    .as_bytes();
    let tag = super::base64_tag(raw)
        .ok_or_else(|| super::bad_signature("X-Shopify-Hmac-Sha256 is not the base64 of 32 bytes"))?;
    out.timestamp = None;
    out.signatures.push(tag)?;
    out.content = Pieces::new(&[Piece::Body]);
    out.id = either((id, &WEBHOOK_ID), (id_alias, &WEBHOOK_ID_ALIAS));
    out.event_type = either((topic, &TOPIC), (topic_alias, &TOPIC_ALIAS));
    Ok(())
}

/// The headers read into a new [`Parsed`].
pub(crate) fn parse(headers: &HeaderMap) -> Result<Parsed<'_>, Rejection> {
    let mut out = Parsed::empty();
    parse_into(headers, &mut out)?;
    Ok(out)
}

fn either<'h>(
    (found, name): (super::Found<'h>, &HeaderName),
    (found_alias, alias): (super::Found<'h>, &HeaderName),
) -> Field<'h> {
    match super::informational(found, name) {
        Field::Absent => super::informational(found_alias, alias),
        field => field,
    }
}

#[cfg(any(test, feature = "test-util"))]
fn sign(key: &super::Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
    use base64::Engine as _;
    let tag = key.sign(&[input.body]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(tag);
    out.insert(SIGNATURE, super::value(&b64));
    out.insert(WEBHOOK_ID, super::value(input.id));
    out.insert(TOPIC, super::value(input.event_type.unwrap_or("orders/create")));
}
