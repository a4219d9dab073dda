//! Paddle Billing: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::kv::{KvScheme, Unit};
use super::super::{json_str, BodyFields, BodyRef};
use crate::{Provider, Scheme};

impl Scheme {
    /// Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>…]`,
    /// HMAC-SHA256 of `<ts>:<raw body>` keyed with the whole secret key text
    /// (`pdl_ntfset_…`, never decoded). Several `h1` entries are accepted
    /// (Paddle sends one per active secret while you rotate); `ts` is checked
    /// against the route's tolerance (Paddle's SDK allows 5 s; the crate's
    /// default of 300 s also absorbs clock skew, set a smaller one if you
    /// like).
    ///
    /// The delivery id and dedupe key is the body's `event_id` (signed); the
    /// event type is `event_type` (`transaction.completed`, …).
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::paddle())
    ///     .secret("the secret from the Paddle Billing dashboard")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn paddle() -> Self {
        let scheme = KvScheme {
            header: HeaderName::from_static("paddle-signature"),
            separator: b';',
            separator_out: ";",
            timestamp_key: b"ts",
            signature_key: b"h1",
            unit: Unit::Seconds,
            joiner: b":",
            body_fields: fields,
            body_id: true,
            event_member: Some("event_type"),
        };
        Self::of(scheme, Provider::Named("paddle"))
    }
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        id: json_str(body, "event_id"),
        event_type: json_str(body, "event_type"),
        action: None,
    }
}
