//! WorkOS: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::kv::{KvScheme, Unit};
use super::super::{json_str, BodyFields, BodyRef};
use crate::{Provider, Scheme};

impl Scheme {
    /// WorkOS: `WorkOS-Signature: t=<unix milliseconds>, v1=<hex>`, HMAC-SHA256
    /// of `<t>.<raw body>` (`t` as sent, in milliseconds) keyed with the
    /// webhook secret's text; `t` is checked against the route's tolerance
    /// (WorkOS's SDK allows 180 s, past only).
    ///
    /// The delivery id and dedupe key is the body's `id` (signed); the event
    /// type is `event` (`dsync.user.created`, …).
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::workos())
    ///     .secret("the secret from the WorkOS dashboard")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn workos() -> Self {
        let scheme = KvScheme {
            header: HeaderName::from_static("workos-signature"),
            separator: b',',
            separator_out: ", ",
            timestamp_key: b"t",
            signature_key: b"v1",
            unit: Unit::Millis,
            joiner: b".",
            body_fields: fields,
            body_id: true,
            event_member: Some("event"),
        };
        Self::of(scheme, Provider::Named("workos"))
    }
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        id: json_str(body, "id"),
        event_type: json_str(body, "event"),
        action: None,
    }
}
