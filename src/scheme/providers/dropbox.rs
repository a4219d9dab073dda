//! Dropbox: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::{BodyFields, BodyRef};
use super::super::{CustomScheme, SignatureEncoding};
use crate::{Provider, Scheme};

impl Scheme {
    /// Dropbox: `X-Dropbox-Signature: <hex>`, HMAC-SHA256 of the raw body keyed
    /// with the app secret's text.
    ///
    /// A notification only says which accounts changed: no timestamp, no id and
    /// no event type. The dedupe key is the SHA-256 of the verified body, so
    /// the same notification sent twice is a duplicate. Dropbox checks a new
    /// endpoint with an unauthenticated `GET ?challenge=…` echo; see
    /// [`Handshake::dropbox_challenge`](crate::handshake::Handshake::dropbox_challenge).
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::dropbox())
    ///     .secret("the secret from the Dropbox dashboard")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn dropbox() -> Self {
        let scheme = CustomScheme::builder("dropbox", HeaderName::from_static("x-dropbox-signature"))
            .encoding(SignatureEncoding::Hex)
            .body(fields, false, None);
        Self::of(scheme.preset(), Provider::Named("dropbox"))
    }
}

fn fields(_: BodyRef<'_>) -> BodyFields {
    BodyFields::default()
}
