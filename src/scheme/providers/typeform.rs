//! Typeform: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::{json_str, BodyFields, BodyRef};
use super::super::{CustomScheme, SignatureEncoding};
use crate::{Provider, Scheme};

impl Scheme {
    /// Typeform: `Typeform-Signature: sha256=<base64>`, HMAC-SHA256 of the raw
    /// body keyed with the secret's text.
    ///
    /// No timestamp is signed. The delivery id and dedupe key is the body's
    /// `event_id` (signed); the event type is `event_type` (`form_response`).
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::typeform())
    ///     .secret("the secret from the Typeform dashboard")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn typeform() -> Self {
        let scheme = CustomScheme::builder("typeform", HeaderName::from_static("typeform-signature"))
            .prefix("sha256=")
            .encoding(SignatureEncoding::Base64)
            .body(fields, true, Some("event_type"));
        Self::of(scheme.preset(), Provider::Named("typeform"))
    }
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        id: json_str(body, "event_id"),
        event_type: json_str(body, "event_type"),
        action: None,
    }
}
