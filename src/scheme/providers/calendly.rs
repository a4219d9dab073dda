//! Calendly: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::kv::{KvScheme, Unit};
use super::super::{json_str, BodyFields, BodyRef};
use crate::{Provider, Scheme};

impl Scheme {
    /// Calendly: `Calendly-Webhook-Signature: t=<unix>,v1=<hex>`, HMAC-SHA256 of
    /// `<t>.<raw body>` keyed with the webhook signing key's text; `t` is
    /// checked against the route's tolerance.
    ///
    /// No delivery id is signed (the body names the invitee by URI): the dedupe
    /// key is the SHA-256 of the verified body. The event type is the body's
    /// `event` (`invitee.created`, …).
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::calendly())
    ///     .secret("the secret from the Calendly dashboard")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn calendly() -> Self {
        let scheme = KvScheme {
            header: HeaderName::from_static("calendly-webhook-signature"),
            separator: b',',
            separator_out: ",",
            timestamp_key: b"t",
            signature_key: b"v1",
            unit: Unit::Seconds,
            joiner: b".",
            body_fields: fields,
            body_id: false,
            event_member: Some("event"),
        };
        Self::of(scheme, Provider::Named("calendly"))
    }
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        id: None,
        event_type: json_str(body, "event"),
        action: None,
    }
}
