//! Twitch EventSub: the scheme (docs on its constructor).

use http::{HeaderMap, HeaderName};

use super::super::{BodyFieldsFn, Def, Field, Found, Key, Parsed, Sign};
use super::super::{CustomScheme, SignatureEncoding, SignedPiece};
use crate::{ConfigError, Provider, Rejection, Scheme};

const MESSAGE_ID: HeaderName = HeaderName::from_static("twitch-eventsub-message-id");
const TIMESTAMP: HeaderName = HeaderName::from_static("twitch-eventsub-message-timestamp");
const MESSAGE_TYPE: HeaderName = HeaderName::from_static("twitch-eventsub-message-type");
const SUBSCRIPTION_TYPE: HeaderName = HeaderName::from_static("twitch-eventsub-subscription-type");

/// The event type of a verification request, answered by the layer.
const VERIFICATION: &str = "webhook_callback_verification";

impl Scheme {
    /// Twitch EventSub (webhook transport):
    /// `Twitch-Eventsub-Message-Signature: sha256=<hex>`, HMAC-SHA256 of
    /// `<message id><timestamp><raw body>` (no separators) keyed with the
    /// secret you chose when subscribing. The timestamp
    /// (`Twitch-Eventsub-Message-Timestamp`, RFC 3339 with nanoseconds)
    /// is checked against the route's tolerance; the delivery id and
    /// dedupe key is the signed message id, so a resent notification is a
    /// duplicate.
    ///
    /// The event type is the subscription type (`channel.follow`, …) for
    /// notifications and `revocation` for a revocation, which reaches the
    /// handler like any delivery (answer it 2xx). A verified
    /// `webhook_callback_verification` is answered by the layer, as Twitch
    /// requires: 200 with the body's `challenge` as `text/plain`. (The
    /// message-type header is not signed; a changed one only changes how a
    /// genuine, verified body is treated.)
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::twitch())
    ///     .secret("the secret sent when subscribing (10 to 100 characters)")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn twitch() -> Self {
        let inner = CustomScheme::builder(
            "twitch",
            HeaderName::from_static("twitch-eventsub-message-signature"),
        )
        .prefix("sha256=")
        .encoding(SignatureEncoding::Hex)
        .timestamp_header(TIMESTAMP)
        .rfc3339()
        .delivery_id_header(MESSAGE_ID)
        .event_type_header(SUBSCRIPTION_TYPE)
        .signed_content([
            SignedPiece::Header(MESSAGE_ID),
            SignedPiece::Header(TIMESTAMP),
            SignedPiece::Body,
        ])
        .preset();
        Self::of(Twitch { inner }, Provider::Named("twitch"))
    }
}

#[derive(Debug, Clone)]
struct Twitch {
    inner: CustomScheme,
}

impl Def for Twitch {
    fn is_timestamped(&self) -> bool {
        true
    }

    fn signs_delivery_id(&self) -> bool {
        true
    }

    fn key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        self.inner.key(index, secret)
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        let mut out = self.inner.parse(headers)?;
        // Verification and revocation messages are told apart by their
        // message type, which then is their event type.
        if let Found::Once(kind) = Found::lookup(headers, &MESSAGE_TYPE) {
            if matches!(kind.as_bytes(), b"webhook_callback_verification" | b"revocation") {
                out.event_type = Field::Header(kind);
            }
        }
        Ok(out)
    }

    fn body_fields(&self) -> Option<BodyFieldsFn> {
        None
    }

    fn answer_verified(
        &self,
        hook: &crate::VerifiedWebhook,
        sign: &Sign<'_>,
    ) -> Option<axum::response::Response> {
        let _ = sign;
        use axum::response::IntoResponse as _;
        if hook.event_type() != Some(VERIFICATION) {
            return None;
        }
        let challenge = hook.doc().ok()?.get("challenge")?.as_str()?.to_owned();
        Some(
            (
                [(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; charset=utf-8"),
                )],
                challenge,
            )
                .into_response(),
        )
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &Key, input: &super::super::SignInput<'_>, out: &mut HeaderMap) {
        self.inner.sign(key, input, out);
    }
}
