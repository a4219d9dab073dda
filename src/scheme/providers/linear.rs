//! Linear: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::{json_str, BodyFields, BodyRef};
use super::super::{CustomScheme, SignatureEncoding};
use crate::{Provider, Scheme};

impl Scheme {
    /// Linear: `Linear-Signature: <hex>`, HMAC-SHA256 of the raw body keyed
    /// with the webhook's signing secret.
    ///
    /// Linear puts its timestamp inside the body (`webhookTimestamp`, in
    /// milliseconds), not in a header; it is signed but not checked here, so
    /// pair the route with dedupe (the key is the SHA-256 of the verified
    /// body). The delivery id shown is the `Linear-Delivery` header (not
    /// signed); the event type is the body's `type` (`Issue`, `Comment`, …).
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::linear())
    ///     .secret("the secret from the Linear dashboard")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn linear() -> Self {
        let scheme = CustomScheme::builder("linear", HeaderName::from_static("linear-signature"))
            .encoding(SignatureEncoding::Hex)
            .delivery_id_header(HeaderName::from_static("linear-delivery"))
            .body(fields, false, Some("type"));
        Self::of(scheme.preset(), Provider::Named("linear"))
    }
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        event_type: json_str(body, "type"),
        ..BodyFields::default()
    }
}
