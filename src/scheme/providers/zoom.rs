//! Zoom: the scheme (docs on its constructor).

use http::{HeaderMap, HeaderName};

use super::super::{json_str, BodyFields, BodyFieldsFn, BodyRef, Def, Key, Parsed, Sign};
use super::super::{CustomScheme, SignatureEncoding, SignedPiece};
use crate::{ConfigError, Rejection};
use crate::{Provider, Scheme};

impl Scheme {
    /// Zoom: `x-zm-signature: v0=<hex>`, HMAC-SHA256 of
    /// `v0:<x-zm-request-timestamp>:<raw body>` keyed with the app's secret
    /// token, with the timestamp (Unix seconds) checked against the tolerance.
    ///
    /// No delivery id is signed; the dedupe key is the SHA-256 of the verified
    /// body. The event type is the body's `event` (`meeting.started`, …).
    ///
    /// Zoom's URL validation (a signed `endpoint.url_validation` event,
    /// sent when the endpoint is saved and every 72 hours) is answered by
    /// the layer, as Zoom requires: 200
    /// `{"plainToken": P, "encryptedToken": hex HMAC-SHA256(secret token, P)}`
    /// under the secret that verified it.
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::zoom())
    ///     .secret("the secret from the Zoom dashboard")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn zoom() -> Self {
        let scheme = CustomScheme::builder("zoom", HeaderName::from_static("x-zm-signature"))
            .prefix("v0=")
            .encoding(SignatureEncoding::Hex)
            .timestamp_header(HeaderName::from_static("x-zm-request-timestamp"))
            .signed_content([
                SignedPiece::literal("v0:"),
                SignedPiece::Header(HeaderName::from_static("x-zm-request-timestamp")),
                SignedPiece::literal(":"),
                SignedPiece::Body,
            ])
            .body(fields, false, Some("event"));
        Self::of(
            Zoom {
                inner: scheme.preset(),
            },
            Provider::Named("zoom"),
        )
    }
}

fn fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        event_type: json_str(body, "event"),
        ..BodyFields::default()
    }
}

/// Zoom's URL validation event, answered by the layer.
const URL_VALIDATION: &str = "endpoint.url_validation";

#[derive(Debug, Clone)]
struct Zoom {
    inner: CustomScheme,
}

impl Def for Zoom {
    fn is_timestamped(&self) -> bool {
        true
    }

    fn signs_delivery_id(&self) -> bool {
        false
    }

    fn key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
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

    fn answer_verified(
        &self,
        hook: &crate::VerifiedWebhook,
        sign: &Sign<'_>,
    ) -> Option<axum::response::Response> {
        use axum::response::IntoResponse as _;
        if hook.event_type() != Some(URL_VALIDATION) {
            return None;
        }
        let plain = hook
            .doc()
            .ok()?
            .get("payload")?
            .get("plainToken")?
            .as_str()?
            .to_owned();
        let encrypted = hex::encode(sign(plain.as_bytes())?);
        let body = serde_json::json!({ "plainToken": plain, "encryptedToken": encrypted });
        Some(
            (
                [(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                )],
                body.to_string(),
            )
                .into_response(),
        )
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &Key, input: &super::super::SignInput<'_>, out: &mut HeaderMap) {
        self.inner.sign(key, input, out);
    }
}
