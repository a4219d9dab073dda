//! Lemon Squeezy: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::{json_path, BodyFields, BodyRef};
use super::super::{CustomScheme, SignatureEncoding};
use crate::{Provider, Scheme};

impl Scheme {
    /// Lemon Squeezy: `X-Signature: <hex>`, HMAC-SHA256 of the raw body keyed
    /// with the signing secret's text (6 to 40 characters, chosen by the user).
    ///
    /// No timestamp and no delivery id are signed; the dedupe key is the
    /// SHA-256 of the verified body. The event type is the body's
    /// `meta.event_name` (`order_created`, …); the `X-Event-Name` header says
    /// the same but is not signed, so it is not read.
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::lemon_squeezy())
    ///     .secret("the secret from the Lemon Squeezy dashboard")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn lemon_squeezy() -> Self {
        let scheme = CustomScheme::builder("lemonsqueezy", HeaderName::from_static("x-signature"))
            .encoding(SignatureEncoding::Hex)
            .body(fields, false, None);
        Self::of(scheme.preset(), Provider::Named("lemonsqueezy"))
    }
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        event_type: json_path(body, &["meta", "event_name"]),
        ..BodyFields::default()
    }
}
