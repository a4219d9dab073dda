//! Razorpay: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::{json_str, BodyFields, BodyRef};
use super::super::{CustomScheme, SignatureEncoding};
use crate::{Provider, Scheme};

impl Scheme {
    /// Razorpay: `X-Razorpay-Signature: <hex>`, HMAC-SHA256 of the raw body
    /// keyed with the webhook secret's text.
    ///
    /// No timestamp is signed. The delivery id shown is the
    /// `X-Razorpay-Event-Id` header, which is not signed: the dedupe key is the
    /// SHA-256 of the verified body. The event type is the body's `event`
    /// (`payment.captured`, …).
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::razorpay())
    ///     .secret("the secret from the Razorpay dashboard")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn razorpay() -> Self {
        let scheme = CustomScheme::builder("razorpay", HeaderName::from_static("x-razorpay-signature"))
            .encoding(SignatureEncoding::Hex)
            .delivery_id_header(HeaderName::from_static("x-razorpay-event-id"))
            .body(fields, false, Some("event"));
        Self::of(scheme.preset(), Provider::Named("razorpay"))
    }
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        event_type: json_str(body, "event"),
        ..BodyFields::default()
    }
}
