//! Vercel: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::{json_str, BodyFields, BodyRef};
use super::super::{CustomScheme, SignatureEncoding};
use crate::{Provider, Scheme};

impl Scheme {
    /// Vercel: `x-vercel-signature: <hex>`, HMAC-SHA1 (Vercel's design,
    /// pinned by the scheme) of the raw body keyed with the webhook secret
    /// shown at creation (or the integration's client secret).
    ///
    /// No timestamp is signed. The delivery id and dedupe key is the
    /// body's `id` (signed); the event type is `type`
    /// (`deployment.created`, …).
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::vercel())
    ///     .secret("the webhook secret from Vercel")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn vercel() -> Self {
        let scheme = CustomScheme::builder("vercel", HeaderName::from_static("x-vercel-signature"))
            .encoding(SignatureEncoding::Hex)
            .sha1()
            .body(fields, true, Some("type"));
        Self::of(scheme.preset(), Provider::Named("vercel"))
    }
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        id: json_str(body, "id"),
        event_type: json_str(body, "type"),
        action: None,
    }
}
