//! Coinbase Commerce: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::{json_path, BodyFields, BodyRef};
use super::super::{CustomScheme, SignatureEncoding};
use crate::{Provider, Scheme};

impl Scheme {
    /// Coinbase Commerce: `X-CC-Webhook-Signature: <hex>`, HMAC-SHA256 of the
    /// raw body keyed with the shared secret's text.
    ///
    /// No timestamp is signed. The delivery id and dedupe key is the body's
    /// `event.id` (signed); the event type is `event.type`
    /// (`charge:confirmed`, …).
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::coinbase())
    ///     .secret("the secret from the Coinbase Commerce dashboard")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn coinbase() -> Self {
        let scheme = CustomScheme::builder("coinbase", HeaderName::from_static("x-cc-webhook-signature"))
            .encoding(SignatureEncoding::Hex)
            .body(fields, true, None);
        Self::of(scheme.preset(), Provider::Named("coinbase"))
    }
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        id: json_path(body, &["event", "id"]),
        event_type: json_path(body, &["event", "type"]),
        action: None,
    }
}
