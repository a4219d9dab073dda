//! Signature schemes, one file per provider, pinned per route.
//!
//! A [`Scheme`] says which headers carry the signature (and the timestamp,
//! and the delivery id), how the signature is encoded, which bytes are
//! signed, and how a configured secret becomes the HMAC key. It is chosen
//! by you for each route and never guessed from the request.
//!
//! | constructor | signature header | signed content | key |
//! |---|---|---|---|
//! | [`Scheme::stripe`] | `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]` | `<t>.<body>` | the secret text, `whsec_` included |
//! | [`Scheme::github`] | `X-Hub-Signature-256: sha256=<hex>` | body | the secret text |
//! | [`Scheme::standard_webhooks`] | `webhook-signature: v1,<base64>[ v1a,…]` (+ `webhook-id`, `webhook-timestamp`; `svix-*` aliases) | `<id>.<timestamp>.<body>` | base64 after `whsec_` (`v1`); an Ed25519 public key after `whpk_` (`v1a`, feature `ed25519`) |
//! | [`Scheme::slack`] | `X-Slack-Signature: v0=<hex>` (+ `X-Slack-Request-Timestamp`) | `v0:<ts>:<body>` | the secret text |
//! | [`Scheme::shopify`] | `X-Shopify-Hmac-Sha256: <base64>` (or `Shopify-Hmac-Sha256`) | body | the secret text |
//! | [`Scheme::discord`] | `X-Signature-Ed25519: <hex>` (+ `X-Signature-Timestamp`) | `<timestamp><body>` | the application's Ed25519 public key, 64 hex digits (feature `ed25519`) |
//! | [`Scheme::sendgrid`] | `X-Twilio-Email-Event-Webhook-Signature: <base64 DER>` (+ `…-Timestamp`) | `<timestamp><body>` | the verification key: base64 DER of a P-256 public key (feature `ecdsa`) |
//! | [`Scheme::custom`] | you say ([`CustomScheme`]) | you say | the secret text |
//!
//! All are HMAC-SHA256, except Standard Webhooks' `v1a` and Discord
//! (Ed25519) and SendGrid (ECDSA P-256 with SHA-256), all three verified
//! with `ring`. For HMAC the signed content is streamed into the MAC piece
//! by piece, never concatenated; received tags are decoded to exactly 32
//! bytes and compared in constant time. Each key is only ever checked against candidates of
//! its own algorithm, and the algorithm is the route's choice (its keys),
//! never the request's.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{ConfigError, Rejection, RejectionKind};

mod algorithm;
mod custom;
mod discord;
mod github;
mod kv;
#[cfg(feature = "paypal")]
pub mod paypal;
pub(crate) mod providers;
mod sendgrid;
mod shopify;
mod slack;
mod standard;
mod stripe;

pub(crate) use algorithm::{Algorithm, Algorithms, Key, LabeledKey, ProviderKey, Signatures, MAC_LEN};
pub use custom::{CustomScheme, CustomSchemeBuilder, SignatureEncoding, SignedPiece};

/// Most candidate signatures one header may list; more is malformed.
pub(crate) const MAX_SIGNATURES: usize = 8;
/// Longest accepted value of any header a scheme reads, in bytes.
pub(crate) const MAX_HEADER_LEN: usize = 4096;
/// Most pieces a signed layout may have.
pub(crate) const MAX_PIECES: usize = 8;

/// Who sent a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// Stripe.
    Stripe,
    /// GitHub.
    GitHub,
    /// Any sender that follows the Standard Webhooks specification
    /// (Svix and its customers among them).
    StandardWebhooks,
    /// Slack.
    Slack,
    /// Shopify.
    Shopify,
    /// Meta (Facebook, Instagram, WhatsApp).
    Meta,
    /// X (Twitter).
    X,
    /// PayPal.
    PayPal,
    /// Discord (interactions).
    Discord,
    /// SendGrid (the signed Event Webhook).
    SendGrid,
    /// Any other built-in provider (`razorpay`, `paddle`, …): holds its
    /// name, the same as its [`Scheme`] constructor's and its demo route's.
    /// See [`Scheme::named`].
    Named(&'static str),
    /// A provider described with [`CustomScheme`]; holds its name.
    Custom(Arc<str>),
}

impl Provider {
    /// A short lowercase name: `stripe`, `github`, `standard`, `slack`,
    /// `shopify`, `meta`, `x`, `discord`, `sendgrid`, or the custom
    /// scheme's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Custom(name) => name,
            named => named.static_name().unwrap_or_default(),
        }
    }

    /// The name of a built-in provider (`None` for a custom one).
    pub(crate) fn static_name(&self) -> Option<&'static str> {
        Some(match self {
            Self::Stripe => "stripe",
            Self::GitHub => "github",
            Self::StandardWebhooks => "standard",
            Self::Slack => "slack",
            Self::Shopify => "shopify",
            Self::Meta => "meta",
            Self::X => "x",
            Self::PayPal => "paypal",
            Self::Discord => "discord",
            Self::SendGrid => "sendgrid",
            Self::Named(name) => name,
            Self::Custom(_) => return None,
        })
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One provider's signing scheme: everything the verify layer needs to
/// know about it, and nothing the layer must match on. Each provider's
/// file implements it; [`Scheme`] holds one behind an `Arc`.
///
/// The layer's steps, in order: [`Def::parse`] reads the headers into
/// the signed pieces, the candidate signatures, the timestamp and where
/// the id and event type live; every [`Key`] made by [`Def::key`] at
/// build is asked whether a candidate of its algorithm signs the pieces;
/// [`Def::body_fields`] reads the id and event type from a verified body.
pub(crate) trait Def: fmt::Debug + Send + Sync + 'static {
    /// Whether the scheme signs a timestamp (checked against the
    /// tolerance before the body is read).
    fn is_timestamped(&self) -> bool;

    /// Whether the delivery id comes from signed bytes, so it can be a
    /// dedupe key.
    fn signs_delivery_id(&self) -> bool;

    /// Turns the configured secret at `index` into key material, once,
    /// when the route is built. By default the secret's text is the
    /// HMAC-SHA256 key.
    fn key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        let bytes = crate::secret::plain_key(index, secret)?;
        Key::hmac_sha256(index, &bytes)
    }

    /// Turns a secret into the key a test signer signs with. By default
    /// the same as [`Def::key`] (symmetric keys sign and verify alike).
    #[cfg(any(test, feature = "test-util"))]
    fn signing_key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        self.key(index, secret)
    }

    /// Whether the route needs configured secrets. `false` for a scheme
    /// whose key is named by each request ([`Def::request_key`]).
    fn needs_secrets(&self) -> bool {
        true
    }

    /// The algorithms of the keys [`Def::request_key`] gives, if any.
    fn request_algorithms(&self) -> Algorithms {
        Algorithms::default()
    }

    /// For a scheme whose key is named by the request (PayPal's
    /// certificate URL, in [`Parsed::key_ref`]): looks it up. `now` is the
    /// route's clock. `None`: the route's own keys verify.
    fn request_key<'a>(&'a self, key_ref: &'a [u8], now: i64) -> Option<KeyFuture<'a>> {
        let _ = (key_ref, now);
        None
    }

    /// Whether the scheme's senders post `application/x-www-form-urlencoded`
    /// bodies too (Slack, Twilio, Mailgun); for every other scheme a body
    /// is JSON whatever its unsigned `Content-Type` says.
    fn accepts_forms(&self) -> bool {
        false
    }

    /// Reads the scheme's headers. Never panics; allocates nothing for
    /// HMAC-SHA256 schemes.
    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection>;

    /// How to read the delivery id and event type from a verified body,
    /// for schemes that keep them there.
    fn body_fields(&self) -> Option<BodyFieldsFn> {
        None
    }

    /// For a scheme whose event type is a string member of a JSON body's
    /// top-level object (the same one [`Def::body_fields`] reads): its
    /// name, so an observer's record gets the event type without a full
    /// parse of the body.
    fn event_type_member(&self) -> Option<&'static str> {
        None
    }

    /// After verification: an answer the scheme gives itself instead of
    /// the handler (a handshake sent as a signed delivery, such as Slack's
    /// `url_verification`). `sign` is an HMAC-SHA256 under the secret that
    /// verified the delivery (Zoom's answer carries one). `None` by
    /// default.
    fn answer_verified(
        &self,
        hook: &crate::VerifiedWebhook,
        sign: &Sign<'_>,
    ) -> Option<axum::response::Response> {
        let _ = (hook, sign);
        None
    }

    /// Writes the headers a real sender would send for `input`, signed
    /// with `key` (made by [`Def::key`]).
    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &Key, input: &SignInput<'_>, out: &mut HeaderMap);
}

/// An HMAC-SHA256 under a route's secret, for a handshake's answer
/// (`None` if that secret is not an HMAC-SHA256 key).
pub(crate) type Sign<'a> = dyn Fn(&[u8]) -> Option<[u8; 32]> + 'a;

/// A key being looked up for one request.
pub(crate) type KeyFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Key, Rejection>> + Send + 'a>>;

/// How a route's webhooks are signed. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Scheme {
    def: Arc<dyn Def>,
    provider: Provider,
    /// The HMAC built-ins, whose header parse is called directly (inlined
    /// into the verify path) instead of through `def`.
    hot: Hot,
}

/// The built-in HMAC schemes on the hot path, told apart without a
/// virtual call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hot {
    Stripe,
    GitHub,
    Standard,
    Slack,
    Shopify,
    /// Every other scheme: through its [`Def`].
    Other,
}

impl Scheme {
    fn of(def: impl Def, provider: Provider) -> Self {
        Self {
            def: Arc::new(def),
            provider,
            hot: Hot::Other,
        }
    }

    pub(crate) fn hot(mut self, hot: Hot) -> Self {
        self.hot = hot;
        self
    }

    /// Stripe: `Stripe-Signature: t=…,v1=…`. Only `v1` counts; `v0` and
    /// unknown keys are ignored, so a header with no `v1` is rejected.
    pub fn stripe() -> Self {
        Self::of(stripe::Stripe, Provider::Stripe).hot(Hot::Stripe)
    }

    /// GitHub: `X-Hub-Signature-256: sha256=…` over the body. The SHA-1
    /// `X-Hub-Signature` header is never consulted.
    pub fn github() -> Self {
        Self::of(github::GitHub, Provider::GitHub).hot(Hot::GitHub)
    }

    /// Standard Webhooks (Svix): `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`, or their `svix-*` aliases. `v1` (HMAC-SHA256)
    /// signatures count for `whsec_` secrets (`whsec_` followed by the
    /// base64 key); `v1a` (Ed25519) signatures for `whpk_` public keys,
    /// with the feature `ed25519`.
    pub fn standard_webhooks() -> Self {
        Self::of(standard::Standard, Provider::StandardWebhooks).hot(Hot::Standard)
    }

    /// Slack: `X-Slack-Signature: v0=…` with `X-Slack-Request-Timestamp`,
    /// for JSON and form-encoded bodies alike.
    pub fn slack() -> Self {
        Self::of(slack::Slack, Provider::Slack).hot(Hot::Slack)
    }

    /// Shopify: `X-Shopify-Hmac-Sha256` (or `Shopify-Hmac-Sha256`), base64,
    /// over the body.
    pub fn shopify() -> Self {
        Self::of(shopify::Shopify, Provider::Shopify).hot(Hot::Shopify)
    }

    /// Meta (Facebook, Instagram, WhatsApp): `X-Hub-Signature-256:
    /// sha256=<hex>` over the body, keyed with the app secret. No timestamp
    /// and no delivery id are signed; the event type is the body's
    /// `object`. Pair it with [`Handshake::meta`](crate::handshake::Handshake::meta)
    /// for the subscription check.
    pub fn meta() -> Self {
        let scheme = CustomScheme::body_signed(
            "meta",
            HeaderName::from_static("x-hub-signature-256"),
            "sha256=",
            SignatureEncoding::Hex,
            meta_fields,
        );
        Self::of(scheme, Provider::Meta)
    }

    /// X (Twitter) Account Activity: `X-Twitter-Webhooks-Signature:
    /// sha256=<base64>` over the body, keyed with the consumer secret. No
    /// timestamp and no delivery id are signed; the event type is the first
    /// top-level body key ending in `_events`. Pair it with
    /// [`Handshake::x_crc`](crate::handshake::Handshake::x_crc) for the CRC
    /// check.
    pub fn x() -> Self {
        let scheme = CustomScheme::body_signed(
            "x",
            HeaderName::from_static("x-twitter-webhooks-signature"),
            "sha256=",
            SignatureEncoding::Base64,
            x_fields,
        );
        Self::of(scheme, Provider::X)
    }

    /// PayPal: RSA signatures checked against PayPal's certificate, with
    /// the certificate URL checked first (feature `paypal`); see
    /// [`crate::paypal`]. A PayPal route takes no secret.
    #[cfg(feature = "paypal")]
    pub fn paypal(config: crate::paypal::PayPal) -> Self {
        Self::of(config, Provider::PayPal)
    }

    /// Discord interactions: `X-Signature-Ed25519` (Ed25519, 128 hex
    /// digits) over `<X-Signature-Timestamp><body>` with no separator,
    /// keyed with the application's public key from the Developer Portal
    /// (64 hex digits). Needs the feature `ed25519`: without it, building
    /// the route fails with [`ConfigError::InvalidSecretEncoding`].
    ///
    /// The signed timestamp is checked against the route's tolerance. The
    /// delivery id is the body's `id` (signed); the event type is the
    /// interaction `type` by name (`PING`, `APPLICATION_COMMAND`,
    /// `MESSAGE_COMPONENT`, `APPLICATION_COMMAND_AUTOCOMPLETE`,
    /// `MODAL_SUBMIT`), or the number as text for others. A verified `PING`
    /// is answered by the layer with `200 {"type":1}` (JSON) and never
    /// reaches the handler; every signature failure is `401`, as Discord
    /// requires. App *webhook events* (same signature, ping `"type": 0`,
    /// answered `204`) are left to the handler.
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::discord())
    ///     .secret("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    ///     .build();
    /// assert_eq!(verifier.is_ok(), cfg!(feature = "ed25519"));
    /// ```
    pub fn discord() -> Self {
        Self::of(discord::Discord, Provider::Discord)
    }

    /// SendGrid's signed Event Webhook:
    /// `X-Twilio-Email-Event-Webhook-Signature` (ECDSA P-256 with SHA-256,
    /// DER, base64) over `<X-Twilio-Email-Event-Webhook-Timestamp><body>`
    /// with no separator; the body's final `\r\n` is signed and never
    /// trimmed. The key is the verification key from Mail Settings: the
    /// base64 of a DER SubjectPublicKeyInfo (PEM armour also accepted),
    /// parsed strictly (a P-256 point on the curve, nothing else). Needs the
    /// feature `ecdsa`: without it, building the route fails with
    /// [`ConfigError::InvalidSecretEncoding`].
    ///
    /// - A high `S` verifies (SendGrid's signers do not normalise it).
    /// - A header that is not base64 of a DER `SEQUENCE` of two `INTEGER`s
    ///   (at most 72 bytes) is `malformed_signature`; a well-shaped one that
    ///   does not verify is `signature_mismatch`.
    /// - SendGrid documents no freshness window: the signed timestamp is
    ///   checked against the route's tolerance (300 seconds by default).
    /// - The body is an array of events: no delivery id is signed and there
    ///   is no event type, so dedupe keys on the body's hash.
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::sendgrid())
    ///     .secret("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==")
    ///     .build();
    /// assert_eq!(verifier.is_ok(), cfg!(feature = "ecdsa"));
    /// ```
    pub fn sendgrid() -> Self {
        Self::of(sendgrid::SendGrid, Provider::SendGrid)
    }

    /// The built-in scheme called `name` (its [`Provider::name`]), for
    /// the schemes that need no configuration beyond secrets: `stripe`,
    /// `github`, `standard`, `slack`, `shopify`, `meta`, `x`, `discord`,
    /// `sendgrid` and every name in [`Scheme::named_providers`] but those
    /// that sign a URL (see [`Scheme::named_with_url`]).
    pub fn named(name: &str) -> Option<Self> {
        if let Some((_, make)) = BUILT_IN.iter().find(|(n, _)| *n == name) {
            return Some(make());
        }
        match providers::find(name)?.1 {
            providers::Make::Plain(make) => Some(make()),
            providers::Make::Url(_) => None,
        }
    }

    /// [`Scheme::named`], also for the providers that sign the URL they
    /// call (`square`), with `url` that URL (from your configuration: the
    /// public base URL and the route's path). `None` for an unknown name.
    pub fn named_with_url(name: &str, url: &str) -> Option<Result<Self, ConfigError>> {
        match providers::find(name) {
            Some((_, providers::Make::Url(make))) => Some(make(url)),
            _ => Self::named(name).map(Ok),
        }
    }

    /// The names of the built-in providers reported as
    /// [`Provider::Named`], in alphabetical order.
    pub fn named_providers() -> impl Iterator<Item = &'static str> {
        providers::NAMED.iter().map(|(name, _)| *name)
    }

    /// The body-field reader of the scheme [`Scheme::named`] builds for
    /// `name`, from a table built once (a stored queue delivery finds
    /// it by its provider's name without building a scheme).
    pub(crate) fn body_fields_named(name: &str) -> Option<BodyFieldsFn> {
        static TABLE: std::sync::OnceLock<std::collections::HashMap<&'static str, BodyFieldsFn>> =
            std::sync::OnceLock::new();
        TABLE
            .get_or_init(|| {
                BUILT_IN
                    .iter()
                    .map(|(name, _)| *name)
                    .chain(Self::named_providers())
                    .filter_map(|n| Some((n, Self::named(n)?.body_fields()?)))
                    .collect()
            })
            .get(name)
            .copied()
    }

    /// A scheme described piece by piece; see [`CustomScheme`].
    pub fn custom(scheme: CustomScheme) -> Self {
        let provider = Provider::Custom(scheme.name().into());
        Self::of(scheme, provider)
    }

    /// Whether the scheme's senders post form bodies too (see
    /// [`Def::accepts_forms`]).
    pub(crate) fn accepts_forms(&self) -> bool {
        self.hot == Hot::Slack || self.def.accepts_forms()
    }

    /// Who signs with this scheme.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// Whether this scheme signs a timestamp.
    pub fn is_timestamped(&self) -> bool {
        self.def.is_timestamped()
    }

    /// Turns a configured secret into key material.
    pub(crate) fn key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        self.def.key(index, secret)
    }

    /// Turns a secret into the key a test signer signs with.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn signing_key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        self.def.signing_key(index, secret)
    }

    /// Whether the route needs configured secrets.
    pub(crate) fn needs_secrets(&self) -> bool {
        self.def.needs_secrets()
    }

    /// The algorithms of the keys requests name.
    pub(crate) fn request_algorithms(&self) -> Algorithms {
        self.def.request_algorithms()
    }

    /// Looks up the key a request names, for schemes that have one.
    pub(crate) fn request_key<'a>(
        &'a self,
        parsed: &Parsed<'a>,
        now: impl FnOnce() -> i64,
    ) -> Option<KeyFuture<'a>> {
        let key_ref = parsed.key_ref?;
        self.def.request_key(key_ref, now())
    }

    /// Reads the scheme's headers into a new [`Parsed`] (off the verify
    /// path: hints, tests).
    pub(crate) fn parse<'a>(&'a self, headers: &'a HeaderMap) -> Result<Parsed<'a>, Rejection> {
        let mut out = Parsed::empty();
        self.parse_into(headers, &mut out)?;
        Ok(out)
    }

    /// Reads the scheme's headers into `out` (from [`Parsed::empty`]).
    #[inline(always)]
    pub(crate) fn parse_into<'a>(
        &'a self,
        headers: &'a HeaderMap,
        out: &mut Parsed<'a>,
    ) -> Result<(), Rejection> {
        // The same functions the built-ins' `Def::parse` calls, without
        // the virtual call, writing into the caller's `Parsed`: no copy of
        // it per request (the verify bench holds this path to within 3 %
        // of the enum-matched schemes that preceded the trait).
        match self.hot {
            Hot::Stripe => stripe::parse_into(headers, out),
            Hot::GitHub => github::parse_into(headers, out),
            Hot::Standard => standard::parse_into(headers, out),
            Hot::Slack => slack::parse_into(headers, out),
            Hot::Shopify => shopify::parse_into(headers, out),
            Hot::Other => {
                *out = self.def.parse(headers)?;
                Ok(())
            }
        }
    }

    /// The scheme's own answer to a verified delivery, if it has one.
    pub(crate) fn answer_verified(
        &self,
        hook: &crate::VerifiedWebhook,
        sign: &Sign<'_>,
    ) -> Option<axum::response::Response> {
        self.def.answer_verified(hook, sign)
    }

    /// Whether [`VerifiedWebhook::delivery_id`](crate::VerifiedWebhook::delivery_id)
    /// comes from signed bytes, so it can be a dedupe key: Stripe's body
    /// `id`, `webhook-id`, Slack's body `event_id`, a custom id header that
    /// is signed. GitHub's and Shopify's id headers are not signed.
    pub(crate) fn signs_delivery_id(&self) -> bool {
        self.def.signs_delivery_id()
    }

    /// How to read the delivery id and event type from a verified body, for
    /// schemes that keep them there.
    pub(crate) fn body_fields(&self) -> Option<BodyFieldsFn> {
        self.def.body_fields()
    }

    /// See [`Def::event_type_member`].
    pub(crate) fn event_type_member(&self) -> Option<&'static str> {
        self.def.event_type_member()
    }

    /// Writes the headers a real sender would send for `input`.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn sign(&self, key: &Key, input: &SignInput<'_>, out: &mut HeaderMap) {
        self.def.sign(key, input, out);
    }
}

/// What a test signer is asked to sign.
#[cfg(any(test, feature = "test-util"))]
pub(crate) struct SignInput<'a> {
    pub(crate) timestamp: i64,
    pub(crate) id: &'a str,
    pub(crate) event_type: Option<&'a str>,
    pub(crate) body: &'a [u8],
}

/// Delivery id, event type and action found in a verified body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BodyFields {
    pub(crate) id: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) action: Option<String>,
}

/// A verified body, as a scheme's field reader sees it: the one strict
/// JSON parse, or the raw bytes of a form.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BodyRef<'a> {
    /// The one parse of the body (members in document order).
    Json(crate::json::DocRef<'a>),
    Form(&'a [u8]),
}

pub(crate) type BodyFieldsFn = fn(BodyRef<'_>) -> BodyFields;

/// Builds a scheme that needs nothing but its secrets.
type BuildScheme = fn() -> Scheme;

/// The built-in schemes [`Scheme::named`] builds that have a variant of
/// their own in [`Provider`], by name.
const BUILT_IN: [(&str, BuildScheme); 9] = [
    ("stripe", Scheme::stripe),
    ("github", Scheme::github),
    ("standard", Scheme::standard_webhooks),
    ("slack", Scheme::slack),
    ("shopify", Scheme::shopify),
    ("meta", Scheme::meta),
    ("x", Scheme::x),
    ("discord", Scheme::discord),
    ("sendgrid", Scheme::sendgrid),
];

/// Meta: the event type is the body's `object` (`page`, `instagram`,
/// `whatsapp_business_account`, …).
fn meta_fields(body: BodyRef<'_>) -> BodyFields {
    BodyFields {
        event_type: json_str(body, "object"),
        ..BodyFields::default()
    }
}

/// X: the event type is the first top-level key ending in `_events`
/// (`tweet_create_events`, …), in the order the body lists them.
fn x_fields(body: BodyRef<'_>) -> BodyFields {
    let event_type = match body {
        BodyRef::Json(doc) => doc
            .members()
            .and_then(|mut m| m.find(|(k, _)| k.ends_with("_events")))
            .map(|(k, _)| k.to_owned()),
        BodyRef::Form(_) => None,
    };
    BodyFields {
        event_type,
        ..BodyFields::default()
    }
}

/// A string member of a JSON object body, down a path of object keys
/// (`["event", "id"]`).
pub(crate) fn json_path(body: BodyRef<'_>, path: &[&str]) -> Option<String> {
    let BodyRef::Json(mut value) = body else {
        return None;
    };
    for key in path {
        value = value.get(key)?;
    }
    value.as_str().map(str::to_owned)
}

/// The pairs of an `application/x-www-form-urlencoded` body, decoded
/// strictly: `+` is a space, `%XX` a byte, and every name and value must
/// then be UTF-8, else `None`. (Lossy decoding would map different bodies
/// to the same text, which a scheme that signs the decoded text must not
/// allow.)
pub(crate) fn strict_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    fn decode(raw: &[u8]) -> Option<String> {
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while let Some(&b) = raw.get(i) {
            match b {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = raw.get(i + 1..i + 3)?;
                    let mut byte = [0u8; 1];
                    hex::decode_to_slice(hex, &mut byte).ok()?;
                    out.push(byte[0]);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }
    if body.is_empty() {
        return Some(Vec::new());
    }
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &b""[..]),
            };
            Some((decode(name)?, decode(value)?))
        })
        .collect()
}

/// A top-level string member of a JSON object body.
pub(crate) fn json_str(body: BodyRef<'_>, key: &str) -> Option<String> {
    match body {
        BodyRef::Json(v) => v.get(key).and_then(|v| v.as_str()).map(str::to_owned),
        BodyRef::Form(_) => None,
    }
}

/// One piece of signed content.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Piece<'a> {
    Bytes(&'a [u8]),
    /// The body, or for [`Pieces::body_crc32`] its CRC-32.
    Body,
}

/// The signed layout of one request: pieces fed to the MAC in order.
///
/// `Piece` has one data-less variant so it fits in 16 bytes (the
/// reference's niche); PayPal's CRC of the body is a flag here instead
/// of a third variant, which kept `Parsed` small on the HMAC path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pieces<'a> {
    buf: [Piece<'a>; MAX_PIECES],
    len: usize,
    /// Each [`Piece::Body`] stands for the body's CRC-32 (IEEE) in
    /// unsigned decimal (PayPal).
    #[cfg_attr(not(feature = "paypal"), allow(dead_code))]
    body_crc32: bool,
}

impl<'a> Pieces<'a> {
    pub(crate) fn new(pieces: &[Piece<'a>]) -> Self {
        let mut out = Self {
            buf: [Piece::Body; MAX_PIECES],
            len: 0,
            body_crc32: false,
        };
        for p in pieces.iter().take(MAX_PIECES) {
            out.buf[out.len] = *p;
            out.len += 1;
        }
        out
    }

    /// The same pieces, with the body replaced by its CRC-32 in decimal.
    #[cfg(feature = "paypal")]
    pub(crate) fn with_body_crc32(mut self) -> Self {
        self.body_crc32 = true;
        self
    }

    /// Whether the body stands for its CRC-32 (see [`Self::with_body_crc32`]).
    #[cfg_attr(not(feature = "paypal"), allow(dead_code))]
    pub(crate) fn body_crc32(&self) -> bool {
        self.body_crc32
    }

    pub(crate) fn push(&mut self, piece: Piece<'a>) -> bool {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = piece;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Piece<'a>> {
        self.buf[..self.len].iter()
    }

    /// The signed content in one buffer, for algorithms that cannot take
    /// it piece by piece (Ed25519 hashes it twice; `ring`'s ECDSA and RSA
    /// take the message whole).
    #[cfg(any(feature = "ed25519", feature = "paypal", feature = "ecdsa"))]
    pub(crate) fn concat(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 128);
        for p in self.iter() {
            match p {
                Piece::Bytes(b) => out.extend_from_slice(b),
                #[cfg(feature = "paypal")]
                Piece::Body if self.body_crc32 => {
                    out.extend_from_slice(paypal::crc32(body).to_string().as_bytes());
                }
                Piece::Body => out.extend_from_slice(body),
            }
        }
        out
    }
}

/// Where a delivery's id or type comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field<'h> {
    Absent,
    Header(&'h HeaderValue),
    Body,
}

/// Everything a scheme read from the headers.
#[derive(Debug, Clone)]
pub(crate) struct Parsed<'h> {
    pub(crate) timestamp: Option<i64>,
    pub(crate) signatures: Signatures,
    pub(crate) content: Pieces<'h>,
    pub(crate) id: Field<'h>,
    pub(crate) event_type: Field<'h>,
    /// What the request names as its key, for a scheme that resolves it
    /// ([`Def::request_key`]): PayPal's certificate URL.
    pub(crate) key_ref: Option<&'h [u8]>,
}

impl Parsed<'_> {
    /// For a scheme whose signatures are in the body (Mailgun, Adyen): a
    /// placeholder candidate, so that the route's key (which reads the
    /// body) is asked, and the id and event type from the body.
    pub(crate) fn signed_in_body() -> Result<Self, Rejection> {
        let mut out = Self::empty();
        out.signatures.push_other(Algorithm::Provider, Vec::new())?;
        out.id = Field::Body;
        out.event_type = Field::Body;
        Ok(out)
    }

    /// Nothing read yet: no timestamp, no signature, no piece.
    #[inline(always)]
    pub(crate) fn empty() -> Self {
        Self {
            timestamp: None,
            signatures: Signatures::new(),
            content: Pieces::new(&[]),
            id: Field::Absent,
            event_type: Field::Absent,
            key_ref: None,
        }
    }
}

/// How often a header name occurs in a request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Found<'h> {
    Absent,
    Once(&'h HeaderValue),
    Repeated,
}

impl<'h> Found<'h> {
    /// Looks `name` up in the map (one hashed lookup).
    pub(crate) fn lookup(headers: &'h HeaderMap, name: &HeaderName) -> Self {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Self::Absent,
            (Some(v), None) => Self::Once(v),
            (Some(_), Some(_)) => Self::Repeated,
        }
    }

    fn add(&mut self, value: &'h HeaderValue) {
        *self = match self {
            Self::Absent => Self::Once(value),
            _ => Self::Repeated,
        };
    }
}

/// Finds every header a scheme reads. A request's header map is small, so
/// one pass comparing names costs less than a lookup per name (each lookup
/// hashes the name byte by byte); a large map is searched by lookups. Both
/// ways give the same answer.
pub(crate) fn find<'h, const N: usize>(headers: &'h HeaderMap, names: [&HeaderName; N]) -> [Found<'h>; N] {
    if headers.len() > SCAN_MAX_PER_NAME * N {
        return names.map(|name| Found::lookup(headers, name));
    }
    scan(headers, names)
}

/// Above this many header values per wanted name, [`find`] looks names up
/// instead of scanning (a lookup costs about as much as comparing a name
/// with this many others).
const SCAN_MAX_PER_NAME: usize = 6;

/// One pass over every header value (duplicates included).
pub(crate) fn scan<'h, const N: usize>(headers: &'h HeaderMap, names: [&HeaderName; N]) -> [Found<'h>; N] {
    let mut found = [Found::Absent; N];
    for (name, value) in headers {
        for (slot, wanted) in found.iter_mut().zip(names) {
            if name == wanted {
                slot.add(value);
            }
        }
    }
    found
}

/// Checks a header that must appear at most once, be visible ASCII and be
/// at most [`MAX_HEADER_LEN`] bytes. `malformed` is the kind reported when
/// it is not.
pub(crate) fn single<'h>(
    found: Found<'h>,
    name: &HeaderName,
    malformed: RejectionKind,
) -> Result<Option<&'h HeaderValue>, Rejection> {
    let value = match found {
        Found::Absent => return Ok(None),
        Found::Once(value) => value,
        Found::Repeated => {
            return Err(Rejection::new(
                malformed,
                format!("the {name} header is sent more than once"),
            ))
        }
    };
    let bytes = value.as_bytes();
    if bytes.len() > MAX_HEADER_LEN {
        return Err(Rejection::new(
            malformed,
            format!("the {name} header is too long"),
        ));
    }
    // A fold rather than `all`: no early exit, so it vectorizes.
    if bytes.iter().fold(false, |bad, b| bad | !(0x20..0x7f).contains(b)) {
        return Err(Rejection::new(
            malformed,
            format!("the {name} header is not visible ASCII"),
        ));
    }
    Ok(Some(value))
}

/// Like [`single`], for a header that may also be sent under an alias: when
/// both names are present their values must agree.
pub(crate) fn single_aliased<'h>(
    (found, name): (Found<'h>, &HeaderName),
    (found_alias, alias): (Found<'h>, &HeaderName),
    malformed: RejectionKind,
) -> Result<Option<&'h HeaderValue>, Rejection> {
    match (
        single(found, name, malformed)?,
        single(found_alias, alias, malformed)?,
    ) {
        (Some(a), Some(b)) if a != b => Err(Rejection::new(
            malformed,
            format!("the {name} and {alias} headers disagree"),
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

/// The two headers of a scheme that sends a signed timestamp in one
/// header and its signature in another (Slack, Discord, SendGrid): the
/// signature header's bytes, the timestamp header's bytes, and the
/// timestamp they hold (`label` names the header in the error).
#[inline(always)]
pub(crate) fn signature_and_timestamp<'h>(
    headers: &'h HeaderMap,
    signature: &HeaderName,
    timestamp: &HeaderName,
    label: &str,
) -> Result<(&'h [u8], &'h [u8], i64), Rejection> {
    let [found_signature, found_timestamp] = find(headers, [signature, timestamp]);
    let raw = required(
        found_signature,
        signature,
        RejectionKind::MissingSignature,
        RejectionKind::MalformedSignature,
    )?
    .as_bytes();
    let ts = required(
        found_timestamp,
        timestamp,
        RejectionKind::MissingTimestamp,
        RejectionKind::MalformedTimestamp,
    )?
    .as_bytes();
    let at = self::timestamp(ts, label)?;
    Ok((raw, ts, at))
}

/// A header the scheme needs, present exactly once.
pub(crate) fn required<'h>(
    found: Found<'h>,
    name: &HeaderName,
    missing: RejectionKind,
    malformed: RejectionKind,
) -> Result<&'h HeaderValue, Rejection> {
    single(found, name, malformed)?
        .ok_or_else(|| Rejection::new(missing, format!("the {name} header is missing")))
}

/// A header read for information only (delivery id, event type): absent if
/// sent twice or not visible ASCII, never an error.
pub(crate) fn informational<'h>(found: Found<'h>, name: &HeaderName) -> Field<'h> {
    match single(found, name, RejectionKind::MalformedHeader) {
        Ok(Some(v)) => Field::Header(v),
        _ => Field::Absent,
    }
}

/// Parses a signed timestamp.
pub(crate) fn timestamp(raw: &[u8], name: &str) -> Result<i64, Rejection> {
    crate::timestamp::parse(raw).ok_or_else(|| {
        Rejection::new(
            RejectionKind::MalformedTimestamp,
            format!("the timestamp in {name} is not 1 to 10 ASCII digits of Unix seconds"),
        )
    })
}

/// Decodes exactly 64 hex digits (either case) into a tag.
pub(crate) fn hex_tag(raw: &[u8]) -> Option<[u8; MAC_LEN]> {
    let mut tag = [0u8; MAC_LEN];
    if raw.len() != MAC_LEN * 2 {
        return None;
    }
    hex::decode_to_slice(raw, &mut tag).ok()?;
    Some(tag)
}

/// The value of each standard base64 character; 0xFF for every other
/// byte.
const BASE64_VALUES: [u8; 256] = {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut values = [0xFF_u8; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        values[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    values
};

/// Decodes canonical standard base64 that holds exactly 32 bytes: 43
/// characters of the standard alphabet, the last of them with its two low
/// bits zero, then one `=`. The same strings `base64`'s `STANDARD` engine
/// decodes to 32 bytes (a property test holds them together), read by a
/// loop made for this one length: 25 to 31 ns less per verify than the
/// general decoder (Standard Webhooks and Shopify at 1 KiB, side by side).
pub(crate) fn base64_tag(raw: &[u8]) -> Option<[u8; MAC_LEN]> {
    let raw: &[u8; 44] = raw.try_into().ok()?;
    let value = |c: u8| u32::from(BASE64_VALUES[usize::from(c)]);
    let mut tag = [0u8; MAC_LEN];
    // Any character outside the alphabet sets bits above the sixth.
    let mut outside = 0u32;
    let mut sextets = |chars: &[u8]| {
        chars.iter().fold(0u32, |acc, &c| {
            let v = value(c);
            outside |= v;
            (acc << 6) | (v & 0x3F)
        })
    };
    // Ten groups of four characters are thirty bytes.
    for (out, group) in tag.chunks_exact_mut(3).zip(raw.chunks_exact(4)) {
        out.copy_from_slice(&sextets(group).to_be_bytes()[1..]);
    }
    // The last three characters hold the last two bytes and two zero bits.
    let bits = sextets(&raw[40..43]);
    if outside > 0x3F || bits & 0b11 != 0 || raw[43] != b'=' {
        return None;
    }
    tag[30..].copy_from_slice(&(bits >> 2).to_be_bytes()[2..]);
    Some(tag)
}

/// Exactly 40 hex digits (either case) as an HMAC-SHA1 tag.
pub(crate) fn sha1_hex_tag(raw: &[u8]) -> Option<[u8; algorithm::SHA1_MAC_LEN]> {
    let mut tag = [0u8; algorithm::SHA1_MAC_LEN];
    if raw.len() != tag.len() * 2 {
        return None;
    }
    hex::decode_to_slice(raw, &mut tag).ok()?;
    Some(tag)
}

/// Canonical standard base64 of exactly 20 bytes (28 characters, one `=`).
pub(crate) fn sha1_base64_tag(raw: &[u8]) -> Option<[u8; algorithm::SHA1_MAC_LEN]> {
    use base64::Engine as _;
    if raw.len() != 28 {
        return None;
    }
    let mut buf = [0u8; 21];
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(raw, &mut buf)
        .ok()?;
    let mut tag = [0u8; algorithm::SHA1_MAC_LEN];
    const LEN: usize = algorithm::SHA1_MAC_LEN;
    tag.copy_from_slice(buf.get(..LEN).filter(|_| n == LEN)?);
    Some(tag)
}

/// A rejection for a signature that cannot be decoded.
pub(crate) fn bad_signature(what: &str) -> Rejection {
    Rejection::new(RejectionKind::MalformedSignature, what.to_owned())
}

/// A header value built from text we produced ourselves.
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn body_fields_are_found_by_name_for_the_schemes_named_builds() {
        let doc = crate::json::Doc::parse(br#"{"action":"opened","id":"evt_1","type":"t.x"}"#).unwrap();
        let read = |name: &str| Scheme::body_fields_named(name).map(|f| f(BodyRef::Json(doc.root())));
        assert_eq!(read("github").unwrap().action.as_deref(), Some("opened"));
        let stripe = read("stripe").unwrap();
        assert_eq!((stripe.id.as_deref(), stripe.action), (Some("evt_1"), None));
        // No body fields, a scheme that needs a URL, an unknown name.
        assert!(read("shopify").is_none());
        assert!(Scheme::named("square").is_none() && read("square").is_none());
        assert!(read("no-such-provider").is_none());
        // Every name agrees with the scheme `named` builds.
        for name in BUILT_IN.iter().map(|(n, _)| *n).chain(Scheme::named_providers()) {
            let built = Scheme::named(name).and_then(|s| s.body_fields());
            assert_eq!(built.map(|f| f(BodyRef::Json(doc.root()))), read(name), "{name}");
        }
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn x_event_type_is_the_first_events_key_in_document_order() {
        fn x_type(body: &[u8]) -> Option<String> {
            let doc = crate::json::Doc::parse(body).unwrap();
            x_fields(BodyRef::Json(doc.root())).event_type
        }
        let body = br#"{"for_user_id":"1","tweet_create_events":[],"favorite_events":[{"a":{"b":1}}]}"#;
        assert_eq!(x_type(body).as_deref(), Some("tweet_create_events"));
        assert_eq!(
            x_type(br#"{"z_events":1,"a_events":2}"#).as_deref(),
            Some("z_events")
        );
        assert_eq!(x_type(br#"{"for_user_id":"1"}"#), None);
        assert_eq!(x_type(b"[1]"), None);
    }

    #[test]
    fn hex_tag_is_exact() {
        let good = "a".repeat(64);
        assert!(hex_tag(good.as_bytes()).is_some());
        assert!(hex_tag("A".repeat(64).as_bytes()).is_some());
        assert!(hex_tag(b"").is_none());
        assert!(hex_tag("a".repeat(62).as_bytes()).is_none());
        assert!(hex_tag("a".repeat(66).as_bytes()).is_none());
        assert!(hex_tag("g".repeat(64).as_bytes()).is_none());
        // No `0x` prefix, whatever the decoder allows elsewhere.
        assert!(hex_tag(format!("0x{}", "a".repeat(62)).as_bytes()).is_none());
        assert!(hex_tag(format!("0x{}", "a".repeat(64)).as_bytes()).is_none());
        let mixed = "aB".repeat(32);
        assert_eq!(hex_tag(mixed.as_bytes()), Some([0xab; MAC_LEN]));
    }

    proptest::proptest! {
        /// The loop made for 32-byte tags accepts exactly what the general
        /// decoder decodes to 32 bytes, with the same bytes: for valid
        /// encodings, for each of them with one byte changed to anything,
        /// and for any 44 bytes drawn mostly from the alphabet.
        #[test]
        fn base64_tag_agrees_with_the_general_decoder(
            tag in proptest::array::uniform32(proptest::num::u8::ANY),
            at in 0usize..44,
            byte in proptest::num::u8::ANY,
            noise in proptest::collection::vec(
                proptest::sample::select(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ .".to_vec()
                ),
                44,
            ),
        ) {
            use base64::Engine as _;
            let general = |raw: &[u8]| {
                let mut buf = [0u8; 33];
                let n = base64::engine::general_purpose::STANDARD.decode_slice(raw, &mut buf).ok()?;
                (raw.len() == 44 && n == MAC_LEN).then(|| {
                    let mut t = [0u8; MAC_LEN];
                    t.copy_from_slice(&buf[..MAC_LEN]);
                    t
                })
            };
            let valid = base64::engine::general_purpose::STANDARD.encode(tag).into_bytes();
            proptest::prop_assert_eq!(base64_tag(&valid), Some(tag));
            let mut changed = valid.clone();
            changed[at] = byte;
            proptest::prop_assert_eq!(base64_tag(&changed), general(&changed));
            proptest::prop_assert_eq!(base64_tag(&noise), general(&noise));
        }
    }

    #[test]
    fn base64_tag_is_canonical() {
        use base64::Engine as _;
        let enc = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(base64_tag(enc.as_bytes()), Some([7u8; 32]));
        assert!(base64_tag(enc.trim_end_matches('=').as_bytes()).is_none());
        let url = enc.replace('+', "-").replace('/', "_");
        assert!(base64_tag(url.as_bytes()).is_none() || url == enc);
        // Non-zero trailing bits are not canonical.
        let mut odd = enc.clone().into_bytes();
        odd[42] = b'B';
        assert!(base64_tag(&odd).is_none());
        assert!(base64_tag(&enc.as_bytes()[..40]).is_none());
    }

    #[test]
    fn duplicate_lines_are_malformed() {
        let mut h = HeaderMap::new();
        let n = HeaderName::from_static("x-sig");
        h.append(&n, HeaderValue::from_static("a"));
        h.append(&n, HeaderValue::from_static("a"));
        let err = single(Found::lookup(&h, &n), &n, RejectionKind::MalformedSignature).err();
        let err2 = single(scan(&h, [&n])[0], &n, RejectionKind::MalformedSignature).err();
        assert_eq!(err2.map(|e| e.kind()), Some(RejectionKind::MalformedSignature));
        assert_eq!(err.map(|e| e.kind()), Some(RejectionKind::MalformedSignature));
    }

    fn same(a: Found<'_>, b: Found<'_>) -> bool {
        match (a, b) {
            (Found::Absent, Found::Absent) | (Found::Repeated, Found::Repeated) => true,
            (Found::Once(x), Found::Once(y)) => std::ptr::eq(x, y),
            _ => false,
        }
    }

    proptest::proptest! {
        /// The one-pass scan and the per-name lookups agree on every map:
        /// absent, once (the very same value), or repeated.
        #[test]
        fn scan_agrees_with_lookups(
            entries in proptest::collection::vec((0usize..8, "[ -~]{0,8}"), 0..80),
        ) {
            const NAMES: [&str; 8] = [
                "x-hub-signature-256", "x-github-delivery", "webhook-id", "svix-id",
                "host", "content-type", "x-other", "webhook-signature",
            ];
            let mut headers = HeaderMap::new();
            for (name, value) in &entries {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.append(HeaderName::from_static(NAMES[*name]), value);
                }
            }
            let wanted = NAMES.map(HeaderName::from_static);
            let [a, b, c, d, e, f, g, h] = &wanted;
            let scanned = scan(&headers, [a, b, c, d, e, f, g, h]);
            let found = find(&headers, [a, b, c, d, e, f, g, h]);
            for (i, name) in wanted.iter().enumerate() {
                let looked = Found::lookup(&headers, name);
                proptest::prop_assert!(same(scanned[i], looked), "{name}: {:?} vs {:?}", scanned[i], looked);
                proptest::prop_assert!(same(found[i], looked), "{name}");
            }
        }
    }

    /// The direct parse of each HMAC built-in is its `Def::parse`: the
    /// same outcome, on signed headers and on broken ones.
    #[test]
    fn the_hot_parse_is_the_schemes_own() {
        let cases = [
            (Scheme::stripe(), Hot::Stripe),
            (Scheme::github(), Hot::GitHub),
            (Scheme::standard_webhooks(), Hot::Standard),
            (Scheme::slack(), Hot::Slack),
            (Scheme::shopify(), Hot::Shopify),
        ];
        for (scheme, hot) in cases {
            assert_eq!(scheme.hot, hot);
            let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
            let Ok(signer) = crate::test_util::TestSigner::new(&scheme, secret) else {
                panic!("no signer for {:?}", scheme.provider());
            };
            let signed = signer
                .timestamp(1_700_000_000)
                .request("/h", r#"{"id":"evt_1","type":"t"}"#);
            let mut broken = signed.headers().clone();
            let names: Vec<_> = broken.keys().cloned().collect();
            for name in names {
                broken.insert(name, value("v9=zz"));
            }
            for headers in [signed.headers(), &broken, &HeaderMap::new()] {
                let direct = scheme.parse(headers);
                let through = scheme.def.parse(headers);
                match (direct, through) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(a.timestamp, b.timestamp);
                        assert_eq!(a.signatures.tags(), b.signatures.tags());
                        assert_eq!(a.content.concat(b"body"), b.content.concat(b"body"));
                    }
                    (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind()),
                    (a, b) => panic!("{:?}: {:?} vs {:?}", scheme.provider(), a.is_ok(), b.is_ok()),
                }
            }
        }
        assert_eq!(Scheme::meta().hot, Hot::Other);
    }

    #[test]
    fn signature_cap_holds() {
        let mut s = Signatures::new();
        for _ in 0..MAX_SIGNATURES {
            assert!(s.push([0; MAC_LEN]).is_ok());
        }
        assert!(s.push([0; MAC_LEN]).is_err());
    }
}
