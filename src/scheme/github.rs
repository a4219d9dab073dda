//! GitHub: `X-Hub-Signature-256: sha256=<hex>` over the raw body.
//!
//! The key is the webhook secret's text. There is no SHA-1 fallback: the
//! legacy `X-Hub-Signature` header is never read. GitHub signs no timestamp
//! and does not sign `X-GitHub-Delivery`, so a captured delivery stays valid
//! for ever: pair this scheme with deduplication on the body's hash. The
//! delivery id is `X-GitHub-Delivery`, the event type `X-GitHub-Event`.
//!
//! ```
//! use webhook_guard::{Scheme, Verifier};
//!
//! let verifier = Verifier::builder(Scheme::github())
//!     .secret("It's a Secret to Everybody")
//!     .build()?;
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```

use http::{HeaderMap, HeaderName};

use super::{BodyFields, BodyRef, Parsed, Piece, Pieces};
use crate::{Rejection, RejectionKind};

/// `X-Hub-Signature-256`.
pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");
/// `X-GitHub-Delivery`.
pub(crate) const DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
/// `X-GitHub-Event`.
pub(crate) const EVENT: HeaderName = HeaderName::from_static("x-github-event");

/// The scheme's definition (see [`Def`](super::Def)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct GitHub;

impl super::Def for GitHub {
    fn is_timestamped(&self) -> bool {
        false
    }

    fn signs_delivery_id(&self) -> bool {
        false
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        parse(headers)
    }

    fn body_fields(&self) -> Option<super::BodyFieldsFn> {
        Some(body_fields)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &super::Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
        sign(key, input, out);
    }
}

/// Reads the headers into `out` (built by [`Parsed::empty`](super::Parsed::empty)).
#[inline(always)]
pub(crate) fn parse_into<'h>(headers: &'h HeaderMap, out: &mut Parsed<'h>) -> Result<(), Rejection> {
    let [signature, delivery, event] = super::find(headers, [&SIGNATURE, &DELIVERY, &EVENT]);
    let raw = super::required(
        signature,
        &SIGNATURE,
        RejectionKind::MissingSignature,
        RejectionKind::MalformedSignature,
    )?
    .as_bytes();
    let hex = raw
        .strip_prefix(b"sha256=")
        .ok_or_else(|| super::bad_signature("X-Hub-Signature-256 does not start with sha256="))?;
    let tag = super::hex_tag(hex)
        .ok_or_else(|| super::bad_signature("X-Hub-Signature-256 is not 64 hex digits"))?;
    out.timestamp = None;
    out.signatures.push(tag)?;
    out.content = Pieces::new(&[Piece::Body]);
    out.id = super::informational(delivery, &DELIVERY);
    out.event_type = super::informational(event, &EVENT);
    Ok(())
}

/// The headers read into a new [`Parsed`].
pub(crate) fn parse(headers: &HeaderMap) -> Result<Parsed<'_>, Rejection> {
    let mut out = Parsed::empty();
    parse_into(headers, &mut out)?;
    Ok(out)
}

/// GitHub keeps the id and the event type in headers; the body's `action`
/// (`opened`, `closed`, …) refines the event type for dispatch.
fn body_fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        id: None,
        event_type: None,
        action: super::json_str(body, "action"),
    }
}

#[cfg(any(test, feature = "test-util"))]
fn sign(key: &super::Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
    let tag = key.sign(&[input.body]);
    out.insert(SIGNATURE, super::value(&format!("sha256={}", hex::encode(tag))));
    out.insert(DELIVERY, super::value(input.id));
    out.insert(EVENT, super::value(input.event_type.unwrap_or("ping")));
}
