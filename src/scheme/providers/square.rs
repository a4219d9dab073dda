//! Square: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::{json_str, BodyFields, BodyRef};
use super::super::{CustomScheme, SignatureEncoding, SignedPiece};
use crate::{ConfigError, Provider, Scheme};

impl Scheme {
    /// Square: `x-square-hmacsha256-signature: <base64>`, HMAC-SHA256 of
    /// `<notification URL><raw body>` keyed with the subscription's
    /// signature key **as text** (it looks like base64url and is not
    /// decoded). `notification_url` is the URL exactly as configured in
    /// Square (scheme, host, path, any query; a trailing slash counts):
    /// it comes from your configuration, never from the request.
    ///
    /// No timestamp is signed. The delivery id and dedupe key is the
    /// body's `event_id` (signed); the event type is `type`
    /// (`payment.updated`, …). The legacy HMAC-SHA1 `x-square-signature`
    /// is not accepted.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidScheme`] when the URL is empty, holds
    /// whitespace or control characters, or is not `http(s)://`.
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::square("https://hooks.example.com/webhooks/square")?)
    ///     .secret("the signature key from the Square Developer Console")
    ///     .build()?;
    /// assert!(Scheme::square("").is_err());
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn square(notification_url: &str) -> Result<Self, ConfigError> {
        let url = checked_url(notification_url)?;
        let scheme =
            CustomScheme::builder("square", HeaderName::from_static("x-square-hmacsha256-signature"))
                .encoding(SignatureEncoding::Base64)
                .signed_content([SignedPiece::literal(url), SignedPiece::Body])
                .body(fields, true, Some("type"))
                .preset();
        Ok(Self::of(scheme, Provider::Named("square")))
    }
}

/// A URL a scheme signs, from configuration: `http(s)://`, printable
/// ASCII without spaces.
pub(crate) fn checked_url(url: &str) -> Result<&str, ConfigError> {
    let printable = url.bytes().all(|b| b.is_ascii_graphic());
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or_default();
    if !printable || rest.is_empty() {
        return Err(ConfigError::InvalidScheme {
            reason: "the notification URL must be the http(s):// URL the provider calls, without spaces",
        });
    }
    Ok(url)
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        id: json_str(body, "event_id"),
        event_type: json_str(body, "type"),
        action: None,
    }
}
