//! Intercom: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::{json_str, BodyFields, BodyRef};
use super::super::{CustomScheme, SignatureEncoding};
use crate::{Provider, Scheme};

impl Scheme {
    /// Intercom: `X-Hub-Signature: sha1=<hex>`, HMAC-SHA1 (Intercom's
    /// design, pinned by the scheme: a `sha256=` header is malformed) of
    /// the raw body keyed with the app's client secret.
    ///
    /// No timestamp is signed. The delivery id and dedupe key is the
    /// notification's `id` in the body (signed); the event type is its
    /// `topic` (`conversation.user.created`, `ping`, …).
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::intercom())
    ///     .secret("the client secret from the Intercom Developer Hub")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn intercom() -> Self {
        let scheme = CustomScheme::builder("intercom", HeaderName::from_static("x-hub-signature"))
            .prefix("sha1=")
            .encoding(SignatureEncoding::Hex)
            .sha1()
            .body(fields, true, Some("topic"));
        Self::of(scheme.preset(), Provider::Named("intercom"))
    }
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        id: json_str(body, "id"),
        event_type: json_str(body, "topic"),
        action: None,
    }
}
