//! Mux: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::kv::{KvScheme, Unit};
use super::super::{json_str, BodyFields, BodyRef};
use crate::{Provider, Scheme};

impl Scheme {
    /// Mux: `Mux-Signature: t=<unix>,v1=<hex>`, HMAC-SHA256 of `<t>.<raw body>`
    /// keyed with the webhook signing secret's text; `t` is checked against the
    /// route's tolerance (Mux's SDKs allow 300 s, the crate's default).
    ///
    /// The delivery id and dedupe key is the body's `id` (signed); the event
    /// type is `type` (`video.asset.ready`, …).
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::mux())
    ///     .secret("the secret from the Mux dashboard")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn mux() -> Self {
        let scheme = KvScheme {
            header: HeaderName::from_static("mux-signature"),
            separator: b',',
            separator_out: ",",
            timestamp_key: b"t",
            signature_key: b"v1",
            unit: Unit::Seconds,
            joiner: b".",
            body_fields: fields,
            body_id: true,
            event_member: Some("type"),
        };
        Self::of(scheme, Provider::Named("mux"))
    }
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        id: json_str(body, "id"),
        event_type: json_str(body, "type"),
        action: None,
    }
}
