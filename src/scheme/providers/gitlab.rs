//! GitLab: the shared-token mode and the Standard Webhooks signing mode
//! (docs on their constructors).

use http::{HeaderMap, HeaderName};

use super::super::standard::Standard;
use super::super::{Algorithm, Def, Field, Found, Key, Parsed, Piece, Pieces};
use crate::{ConfigError, Provider, Rejection, RejectionKind, Scheme};

/// `X-Gitlab-Token`.
const TOKEN: HeaderName = HeaderName::from_static("x-gitlab-token");
/// `X-Gitlab-Event`.
const EVENT: HeaderName = HeaderName::from_static("x-gitlab-event");
/// `X-Gitlab-Event-UUID`.
const EVENT_UUID: HeaderName = HeaderName::from_static("x-gitlab-event-uuid");

impl Scheme {
    /// GitLab's classic webhooks: `X-Gitlab-Token` carries the secret
    /// token itself, compared in constant time (as SHA-256 digests, so
    /// its length does not leak either). **This is a shared token, not a
    /// signature**: the body is not covered and the token is the same on
    /// every request, so anyone who sees one request can send others. Use
    /// it over HTTPS only, pair it with dedupe (the key is the SHA-256 of
    /// the body), and prefer [`Scheme::gitlab_signing`] where your GitLab
    /// offers signing tokens.
    ///
    /// The delivery id shown is `X-Gitlab-Event-UUID` and the event type
    /// `X-Gitlab-Event` (`Push Hook`, …), neither signed.
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::gitlab())
    ///     .secret("the secret token typed in GitLab's webhook settings")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn gitlab() -> Self {
        Self::of(GitLabToken, Provider::Named("gitlab"))
    }

    /// GitLab's signing-token mode (GitLab's `webhook_signing_token`
    /// flag): Standard Webhooks v1 over `webhook-id`, `webhook-timestamp`
    /// and `webhook-signature`, with a `whsec_` token of 32 bytes. The
    /// delivery id and dedupe key is `webhook-id` (signed; GitLab's
    /// `Idempotency-Key`); the event type is `X-Gitlab-Event` (not
    /// signed). Reported as `gitlab`, like [`Scheme::gitlab`]; a route
    /// takes one mode or the other.
    pub fn gitlab_signing() -> Self {
        Self::of(GitLabSigning, Provider::Named("gitlab"))
    }
}

#[derive(Debug, Clone, Copy)]
struct GitLabToken;

impl Def for GitLabToken {
    fn is_timestamped(&self) -> bool {
        false
    }

    fn signs_delivery_id(&self) -> bool {
        false
    }

    fn key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        let bytes = crate::secret::plain_key(index, secret)?;
        Ok(Key::token(&bytes))
    }

    #[cfg(any(test, feature = "test-util"))]
    fn signing_key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        let bytes = crate::secret::plain_key(index, secret)?;
        Ok(Key::token_signing(&bytes))
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        let token = super::super::required(
            Found::lookup(headers, &TOKEN),
            &TOKEN,
            RejectionKind::MissingSignature,
            RejectionKind::MalformedSignature,
        )?
        .as_bytes();
        if token.is_empty() || token.len() > 1024 {
            return Err(super::super::bad_signature("X-Gitlab-Token is empty or too long"));
        }
        let mut out = Parsed::empty();
        out.signatures.push_other(Algorithm::Token, token.to_vec())?;
        out.content = Pieces::new(&[Piece::Body]);
        out.id = super::super::informational(Found::lookup(headers, &EVENT_UUID), &EVENT_UUID);
        out.event_type = super::super::informational(Found::lookup(headers, &EVENT), &EVENT);
        Ok(out)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &Key, input: &super::super::SignInput<'_>, out: &mut HeaderMap) {
        let token = key.sign(&[]);
        if let Ok(value) = http::HeaderValue::from_bytes(&token) {
            out.insert(TOKEN, value);
        }
        out.insert(EVENT_UUID, super::super::value(input.id));
        if let Some(event) = input.event_type {
            out.insert(EVENT, super::super::value(event));
        }
    }
}

/// Standard Webhooks, with the event type from `X-Gitlab-Event`.
#[derive(Debug, Clone, Copy)]
struct GitLabSigning;

impl Def for GitLabSigning {
    fn is_timestamped(&self) -> bool {
        Standard.is_timestamped()
    }

    fn signs_delivery_id(&self) -> bool {
        Standard.signs_delivery_id()
    }

    fn key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        Standard.key(index, secret)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn signing_key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        Standard.signing_key(index, secret)
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        let mut out = Standard.parse(headers)?;
        out.event_type = match Found::lookup(headers, &EVENT) {
            Found::Absent => Field::Absent,
            found => super::super::informational(found, &EVENT),
        };
        Ok(out)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &Key, input: &super::super::SignInput<'_>, out: &mut HeaderMap) {
        Standard.sign(key, input, out);
        if let Some(event) = input.event_type {
            out.insert(EVENT, super::super::value(event));
        }
    }
}
