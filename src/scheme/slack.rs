//! Slack: `X-Slack-Signature: v0=<hex>` with `X-Slack-Request-Timestamp`.
//!
//! The signed content is `v0:<timestamp>:<raw body>` and the key is the
//! app's signing secret text. JSON bodies (Events API) and form-encoded
//! bodies (slash commands, interactivity) verify alike. The delivery id is
//! the JSON body's `event_id`; the event type is the JSON body's `type`, or
//! for a form body its `command` field, or `interactive` when it carries a
//! `payload` field.
//!
//! ```
//! use webhook_guard::{Scheme, Verifier};
//!
//! let verifier = Verifier::builder(Scheme::slack())
//!     .secret("8f742231b10e8888abcd99yyyzzz85a5")
//!     .build()?;
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```

use http::{HeaderMap, HeaderName};

use super::{BodyFields, BodyRef, Field, Parsed, Piece, Pieces};
use crate::Rejection;

/// `X-Slack-Signature`.
pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("x-slack-signature");
/// `X-Slack-Request-Timestamp`.
pub(crate) const TIMESTAMP: HeaderName = HeaderName::from_static("x-slack-request-timestamp");

/// The scheme's definition (see [`Def`](super::Def)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slack;

impl super::Def for Slack {
    fn is_timestamped(&self) -> bool {
        true
    }

    fn signs_delivery_id(&self) -> bool {
        true
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        parse(headers)
    }

    fn accepts_forms(&self) -> bool {
        true
    }

    fn body_fields(&self) -> Option<super::BodyFieldsFn> {
        Some(body_fields)
    }

    fn event_type_member(&self) -> Option<&'static str> {
        Some("type")
    }

    /// `url_verification` is answered with its challenge (JSON bodies
    /// only; form bodies are slash commands and interactions).
    fn answer_verified(
        &self,
        hook: &crate::VerifiedWebhook,
        sign: &super::Sign<'_>,
    ) -> Option<axum::response::Response> {
        let _ = sign;
        use axum::response::IntoResponse as _;
        if hook.is_form_encoded() {
            return None;
        }
        let value = hook.doc().ok()?;
        if value.get("type").and_then(|t| t.as_str()) != Some("url_verification") {
            return None;
        }
        let body = serde_json::json!({ "challenge": value.get("challenge").map(|c| c.to_value()) });
        Some(
            (
                [(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                )],
                body.to_string(),
            )
                .into_response(),
        )
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &super::Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
        sign(key, input, out);
    }
}

/// Reads the headers into `out` (built by [`Parsed::empty`](super::Parsed::empty)).
#[inline(always)]
pub(crate) fn parse_into<'h>(headers: &'h HeaderMap, out: &mut Parsed<'h>) -> Result<(), Rejection> {
    let (raw, ts, timestamp) =
        super::signature_and_timestamp(headers, &SIGNATURE, &TIMESTAMP, "X-Slack-Request-Timestamp")?;
    let hex = raw
        .strip_prefix(b"v0=")
        .ok_or_else(|| super::bad_signature("X-Slack-Signature does not start with v0="))?;
    let tag =
        super::hex_tag(hex).ok_or_else(|| super::bad_signature("X-Slack-Signature is not 64 hex digits"))?;
    out.timestamp = Some(timestamp);
    out.signatures.push(tag)?;
    out.content = Pieces::new(&[
        Piece::Bytes(b"v0:"),
        Piece::Bytes(ts),
        Piece::Bytes(b":"),
        Piece::Body,
    ]);
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
    let BodyRef::Form(body) = body else {
        return BodyFields {
            id: super::json_str(body, "event_id"),
            event_type: super::json_str(body, "type"),
            action: None,
        };
    };
    let mut command = None;
    let mut interactive = false;
    for (key, value) in form_urlencoded::parse(body) {
        match &*key {
            "command" if command.is_none() => command = Some(value.into_owned()),
            "payload" => interactive = true,
            _ => {}
        }
    }
    let event_type = command.or_else(|| interactive.then(|| "interactive".to_owned()));
    BodyFields {
        id: None,
        event_type,
        action: None,
    }
}

#[cfg(any(test, feature = "test-util"))]
fn sign(key: &super::Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
    let ts = input.timestamp.to_string();
    let tag = key.sign(&[b"v0:", ts.as_bytes(), b":", input.body]);
    out.insert(SIGNATURE, super::value(&format!("v0={}", hex::encode(tag))));
    out.insert(TIMESTAMP, super::value(&ts));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn form_bodies_give_command_or_interactive() {
        let f = body_fields(BodyRef::Form(b"token=x&command=%2Fweather&text=94070"));
        assert_eq!(f.event_type.as_deref(), Some("/weather"));
        let f = body_fields(BodyRef::Form(b"payload=%7B%22type%22%3A%22block_actions%22%7D"));
        assert_eq!(f.event_type.as_deref(), Some("interactive"));
        let bytes = br#"{"type":"event_callback","event_id":"Ev1"}"#;
        let doc = crate::json::Doc::parse(bytes).unwrap();
        let f = body_fields(BodyRef::Json(doc.root()));
        assert_eq!(
            (f.id.as_deref(), f.event_type.as_deref()),
            (Some("Ev1"), Some("event_callback"))
        );
    }
}
