//! Zendesk: the scheme (docs on its constructors).

use http::{HeaderMap, HeaderName};

use super::super::{json_str, BodyFields, BodyFieldsFn, BodyRef, Def, Key, Parsed};
use super::super::{CustomScheme, SignatureEncoding, SignedPiece};
use crate::{ConfigError, Provider, Rejection, Scheme};

/// The public secret Zendesk signs test requests from its webhook builder
/// with (base64 of `this_secret_is_for_testing_only`): anyone can sign
/// with it.
const TEST_SECRET: &str = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==";

impl Scheme {
    /// Zendesk: `X-Zendesk-Webhook-Signature: <base64>`, HMAC-SHA256 of
    /// `<X-Zendesk-Webhook-Signature-Timestamp><raw body>` keyed with the
    /// webhook's signing secret **as text** (it looks like base64 and is
    /// not decoded). The timestamp is an RFC 3339 date-time, checked
    /// against the route's tolerance (Zendesk documents no window).
    ///
    /// Zendesk signs the test requests its webhook builder sends with a
    /// public static secret; building a route with that secret fails with
    /// [`ConfigError::InvalidSecretEncoding`] (anyone could sign with it).
    /// [`Scheme::zendesk_allowing_test_secret`] accepts it, for a test
    /// route only.
    ///
    /// The delivery id shown is `X-Zendesk-Webhook-Invocation-Id` (not
    /// signed): the dedupe key is the SHA-256 of the verified body. The
    /// event type is the body's `type`.
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::zendesk())
    ///     .secret("the signing secret revealed in Zendesk's admin center")
    ///     .build()?;
    /// assert!(Verifier::builder(Scheme::zendesk())
    ///     .secret("dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==")
    ///     .build()
    ///     .is_err());
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn zendesk() -> Self {
        Self::of(zendesk(false), Provider::Named("zendesk"))
    }

    /// [`Scheme::zendesk`] that also accepts Zendesk's public test secret:
    /// for a route that receives the webhook builder's test requests, never
    /// for real traffic.
    pub fn zendesk_allowing_test_secret() -> Self {
        Self::of(zendesk(true), Provider::Named("zendesk"))
    }
}

fn zendesk(allow_test_secret: bool) -> Zendesk {
    let ts = HeaderName::from_static("x-zendesk-webhook-signature-timestamp");
    let inner = CustomScheme::builder("zendesk", HeaderName::from_static("x-zendesk-webhook-signature"))
        .encoding(SignatureEncoding::Base64)
        .timestamp_header(ts.clone())
        .rfc3339()
        .signed_content([SignedPiece::Header(ts), SignedPiece::Body])
        .delivery_id_header(HeaderName::from_static("x-zendesk-webhook-invocation-id"))
        .body(fields, false, Some("type"))
        .preset();
    Zendesk {
        inner,
        allow_test_secret,
    }
}

#[derive(Debug, Clone)]
struct Zendesk {
    inner: CustomScheme,
    allow_test_secret: bool,
}

impl Def for Zendesk {
    fn is_timestamped(&self) -> bool {
        self.inner.is_timestamped()
    }

    fn signs_delivery_id(&self) -> bool {
        self.inner.signs_delivery_id()
    }

    fn key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        if !self.allow_test_secret && secret.trim() == TEST_SECRET {
            return Err(ConfigError::InvalidSecretEncoding {
                index,
                reason: "this is Zendesk's public test secret, which anyone can sign with; use the webhook's own signing secret (or Scheme::zendesk_allowing_test_secret for a test route)",
            });
        }
        self.inner.key(index, secret)
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        self.inner.parse(headers)
    }

    fn body_fields(&self) -> Option<BodyFieldsFn> {
        self.inner.body_fields()
    }

    fn event_type_member(&self) -> Option<&'static str> {
        self.inner.event_type_member()
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &Key, input: &super::super::SignInput<'_>, out: &mut HeaderMap) {
        self.inner.sign(key, input, out);
    }
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        event_type: json_str(body, "type"),
        ..BodyFields::default()
    }
}
