//! Sentry integration platform: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::{CustomScheme, SignatureEncoding};
use crate::{Provider, Scheme};

impl Scheme {
    /// Sentry integration platform: `Sentry-Hook-Signature: <hex>`, HMAC-SHA256
    /// of the raw body keyed with the integration's client secret.
    ///
    /// `Sentry-Hook-Timestamp` is sent but not signed, so it is not checked.
    /// The delivery id shown is the `Request-ID` header and the event type the
    /// `Sentry-Hook-Resource` header (`issue`, `error`, …); neither is signed,
    /// so the dedupe key is the SHA-256 of the verified body. Sentry signs the
    /// body as it serialised it: verify the raw bytes, never a re-encoding.
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::sentry())
    ///     .secret("the secret from the Sentry (integration platform) dashboard")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn sentry() -> Self {
        let scheme = CustomScheme::builder("sentry", HeaderName::from_static("sentry-hook-signature"))
            .encoding(SignatureEncoding::Hex)
            .delivery_id_header(HeaderName::from_static("request-id"))
            .event_type_header(HeaderName::from_static("sentry-hook-resource"));
        Self::of(scheme.preset(), Provider::Named("sentry"))
    }
}
