//! HubSpot: the scheme (docs on its constructor).

use http::HeaderName;

use super::super::{BodyFields, BodyRef};
use super::super::{CustomScheme, SignatureEncoding, SignedPiece};
use super::square::checked_url;
use crate::{ConfigError, Provider, Scheme};

impl Scheme {
    /// HubSpot, signature v3 only: `X-HubSpot-Signature-v3: <base64>`,
    /// HMAC-SHA256 of `POST<url><raw body><X-HubSpot-Request-Timestamp>`
    /// keyed with the app's client secret, with the timestamp (Unix
    /// milliseconds) checked against the route's tolerance (HubSpot says
    /// five minutes, the crate's default). `url` is the webhook URL exactly
    /// as configured in HubSpot (scheme, host, path, any query): it comes
    /// from your configuration, never from the request.
    ///
    /// Signatures v1 and v2 (`X-HubSpot-Signature` with
    /// `X-HubSpot-Signature-Version`) are plain SHA-256 of the secret
    /// followed by the data, not HMAC (open to length extension): they are
    /// never accepted, so a request that carries only them is
    /// `missing_signature`.
    ///
    /// The dedupe key is the SHA-256 of the verified body; the event type
    /// is the first event's `subscriptionType` (`contact.creation`, …)
    /// (HubSpot sends events in batches, as a JSON array).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidScheme`] when the URL is empty, holds
    /// whitespace or is not `http(s)://`.
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::hubspot("https://hooks.example.com/webhooks/hubspot")?)
    ///     .secret("the app's client secret")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn hubspot(url: &str) -> Result<Self, ConfigError> {
        let url = checked_url(url)?;
        let ts = HeaderName::from_static("x-hubspot-request-timestamp");
        let scheme = CustomScheme::builder("hubspot", HeaderName::from_static("x-hubspot-signature-v3"))
            .encoding(SignatureEncoding::Base64)
            .timestamp_header(ts.clone())
            .millis()
            .signed_content([
                SignedPiece::literal("POST"),
                SignedPiece::literal(url),
                SignedPiece::Body,
                SignedPiece::Header(ts),
            ])
            .body(fields, false, None)
            .preset();
        Ok(Self::of(scheme, Provider::Named("hubspot")))
    }
}

/// The first event's `subscriptionType` of a batch (or of a single event).
fn fields(body: BodyRef<'_>) -> BodyFields {
    let BodyRef::Json(value) = body else {
        return BodyFields::default();
    };
    let first = match value.elements() {
        Some(mut items) => items.next(),
        None => Some(value),
    };
    BodyFields {
        event_type: first
            .and_then(|e| e.get("subscriptionType"))
            .and_then(|e| e.as_str())
            .map(str::to_owned),
        ..BodyFields::default()
    }
}
