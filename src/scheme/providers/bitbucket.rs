//! Bitbucket Cloud: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::{CustomScheme, SignatureEncoding};
use crate::{Provider, Scheme};

impl Scheme {
    /// Bitbucket Cloud: `X-Hub-Signature: sha256=<hex>` (SHA-256 despite the
    /// header's name), HMAC-SHA256 of the raw body keyed with the webhook
    /// secret's text.
    ///
    /// No timestamp is signed. The delivery id shown is the `X-Request-UUID`
    /// header and the event type the `X-Event-Key` header (`repo:push`, …);
    /// neither is signed, so the dedupe key is the SHA-256 of the verified
    /// body.
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::bitbucket())
    ///     .secret("the secret from the Bitbucket Cloud dashboard")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn bitbucket() -> Self {
        let scheme = CustomScheme::builder("bitbucket", HeaderName::from_static("x-hub-signature"))
            .prefix("sha256=")
            .encoding(SignatureEncoding::Hex)
            .delivery_id_header(HeaderName::from_static("x-request-uuid"))
            .event_type_header(HeaderName::from_static("x-event-key"));
        Self::of(scheme.preset(), Provider::Named("bitbucket"))
    }
}
