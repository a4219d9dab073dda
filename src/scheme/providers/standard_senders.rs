//! Senders that follow Standard Webhooks, each under its own name: the
//! scheme is [`Scheme::standard_webhooks`] (its `svix-*` header aliases
//! and its key decoding included); only the provider's name differs, so
//! metrics, logs and the handler tell them apart. Their headers are read
//! by the same inlined parser as Standard Webhooks' (the parse is the
//! same; only the body fields may differ).

use http::HeaderMap;

use super::super::standard::Standard;
use super::super::{json_path, json_str, BodyFields, BodyFieldsFn, BodyRef, Def, Key, Parsed};
use crate::{ConfigError, Provider, Rejection, Scheme};

impl Scheme {
    /// Clerk: Standard Webhooks over `svix-id`, `svix-timestamp`,
    /// `svix-signature` (or the `webhook-*` names), secret `whsec_…`. The
    /// delivery id and dedupe key is the signed id header; the event type
    /// the body's `type` (`user.created`, …).
    pub fn clerk() -> Self {
        Self::of(Standard, Provider::Named("clerk")).hot(super::super::Hot::Standard)
    }

    /// Resend: Standard Webhooks over the `svix-*` headers, secret
    /// `whsec_…`; event type the body's `type` (`email.sent`, …).
    pub fn resend() -> Self {
        Self::of(Standard, Provider::Named("resend")).hot(super::super::Hot::Standard)
    }

    /// OpenAI: Standard Webhooks over the `webhook-*` headers, secret
    /// `whsec_…`; event type the body's `type` (`response.completed`, …).
    pub fn openai() -> Self {
        Self::of(Standard, Provider::Named("openai")).hot(super::super::Hot::Standard)
    }

    /// Anthropic (beta webhooks): Standard Webhooks over the `webhook-*`
    /// headers with the webhook signing key. The body's top-level `type`
    /// is always `event`; the event type is `data.type`
    /// (`session.created`, …).
    pub fn anthropic() -> Self {
        Self::of(
            StandardWith {
                fields: anthropic_fields,
                member: None,
            },
            Provider::Named("anthropic"),
        )
        .hot(super::super::Hot::Standard)
    }

    /// Replicate: Standard Webhooks over the `webhook-*` headers, secret
    /// `whsec_…` from the default-secret API. The id is stable across
    /// retries, so it dedupes them; prediction bodies carry no `type`.
    pub fn replicate() -> Self {
        Self::of(Standard, Provider::Named("replicate")).hot(super::super::Hot::Standard)
    }

    /// Brex: Standard Webhooks over the `Webhook-*` headers; Brex serves
    /// its secrets as plain base64 without the `whsec_` prefix (both are
    /// accepted), several at once while it rotates them. The event type is
    /// the body's `event_type` (`TRANSFER_PROCESSED`, …).
    pub fn brex() -> Self {
        Self::of(
            StandardWith {
                fields: brex_fields,
                member: Some("event_type"),
            },
            Provider::Named("brex"),
        )
        .hot(super::super::Hot::Standard)
    }
}

/// Standard Webhooks with the event type read from another body member.
#[derive(Debug, Clone, Copy)]
struct StandardWith {
    fields: BodyFieldsFn,
    member: Option<&'static str>,
}

impl Def for StandardWith {
    fn is_timestamped(&self) -> bool {
        Standard.is_timestamped()
    }

    fn signs_delivery_id(&self) -> bool {
        Standard.signs_delivery_id()
    }

    fn key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        Standard.key(index, secret)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn signing_key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        Standard.signing_key(index, secret)
    }

    fn request_algorithms(&self) -> super::super::Algorithms {
        Standard.request_algorithms()
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        Standard.parse(headers)
    }

    fn body_fields(&self) -> Option<BodyFieldsFn> {
        Some(self.fields)
    }

    fn event_type_member(&self) -> Option<&'static str> {
        self.member
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &Key, input: &super::super::SignInput<'_>, out: &mut HeaderMap) {
        Standard.sign(key, input, out);
    }
}

/// Anthropic: `data.type`.
fn anthropic_fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        event_type: json_path(body, &["data", "type"]),
        ..BodyFields::default()
    }
}

/// Brex: `event_type`.
fn brex_fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        event_type: json_str(body, "event_type"),
        ..BodyFields::default()
    }
}
