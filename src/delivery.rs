//! The verified delivery handed to your handler.
//!
//! After the layer has verified a request it puts a [`VerifiedWebhook`] in
//! the request's extensions; take it as an axum extractor. The request body
//! is the very same bytes ([`VerifiedWebhook::body`] shares their buffer),
//! so `Bytes`, `String` or `Json` extractors work too.
//!
//! ```
//! use axum::http::StatusCode;
//! use webhook_guard::VerifiedWebhook;
//!
//! async fn handle(hook: VerifiedWebhook) -> Result<StatusCode, webhook_guard::Rejection> {
//!     let event: serde_json::Value = hook.json()?;
//!     tracing::info!(
//!         provider = %hook.provider(),
//!         id = hook.delivery_id(),
//!         kind = hook.event_type(),
//!         secret = hook.secret_index(),
//!         "verified {} bytes", hook.body().len()
//!     );
//!     let _ = event;
//!     Ok(StatusCode::NO_CONTENT)
//! }
//! ```

use std::fmt;
use std::sync::{Arc, OnceLock};

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;

use crate::json::{Doc, DocRef, JsonError};
use crate::scheme::{BodyFields, BodyFieldsFn, BodyRef, Field, Parsed};
use crate::{Provider, Rejection, RejectionKind, Scheme};

/// A request whose signature has been verified. Cheap to clone.
#[derive(Clone)]
pub struct VerifiedWebhook {
    inner: Arc<Inner>,
}

struct Inner {
    provider: Provider,
    id: Source,
    event_type: Source,
    timestamp: Option<i64>,
    secret_index: usize,
    secret_label: Option<Arc<str>>,
    form: bool,
    attempt: Option<u32>,
    body: Bytes,
    body_fields: Option<BodyFieldsFn>,
    /// The top-level member that holds the event type, for a light read.
    event_type_member: Option<&'static str>,
    from_body: OnceLock<BodyFields>,
    /// The one parse of the body.
    doc: OnceLock<Result<Doc, JsonFailure>>,
    /// A `serde_json::Value` of it, built only when asked for.
    value: OnceLock<serde_json::Value>,
}

/// The `action` `read` finds in `body` (a form, or JSON parsed strictly;
/// none if it does not parse): what [`VerifiedWebhook::action`] answers
/// for the same body.
pub(crate) fn read_action(read: BodyFieldsFn, body: &[u8], form: bool) -> Option<String> {
    if form {
        return read(BodyRef::Form(body)).action;
    }
    let doc = Doc::parse(body).ok()?;
    read(BodyRef::Json(doc.root())).action
}

/// Why the body has no JSON value (kept so the parse happens once).
#[derive(Debug, Clone, Copy)]
enum JsonFailure {
    Syntax,
    DuplicateKey,
}

enum Source {
    Absent,
    Header(HeaderValue),
    Body,
    /// Restored from a queue's storage.
    Stored(Box<str>),
}

impl Source {
    fn from(field: Field<'_>) -> Self {
        match field {
            Field::Absent => Self::Absent,
            Field::Header(v) => Self::Header(v.clone()),
            Field::Body => Self::Body,
        }
    }
}

impl VerifiedWebhook {
    pub(crate) fn new(
        scheme: &Scheme,
        parsed: &Parsed<'_>,
        headers: &HeaderMap,
        secret_index: usize,
        secret_label: Option<Arc<str>>,
        body: Bytes,
    ) -> Self {
        // Only the schemes whose senders post forms (Slack, Twilio,
        // Mailgun) read form bodies; for every other scheme the body is
        // JSON whatever the Content-Type claims, so a client cannot skip
        // schema validation by calling its body a form.
        let form = scheme.accepts_forms()
            && headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
            // The header is not signed: a signed JSON body stays JSON (with
            // its `event_id` as the dedupe key) whatever it is relabelled as.
            && !matches!(body.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['));
        Self {
            inner: Arc::new(Inner {
                provider: scheme.provider().clone(),
                id: Source::from(parsed.id),
                event_type: Source::from(parsed.event_type),
                timestamp: parsed.timestamp,
                secret_index,
                secret_label,
                form,
                attempt: None,
                body,
                body_fields: scheme.body_fields(),
                event_type_member: scheme.event_type_member(),
                from_body: OnceLock::new(),
                doc: OnceLock::new(),
                value: OnceLock::new(),
            }),
        }
    }

    /// A delivery rebuilt from what a queue stored: the fields that
    /// verification established, and the same body bytes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn restore(
        provider: Provider,
        id: Option<String>,
        event_type: Option<String>,
        action: Option<String>,
        timestamp: Option<i64>,
        secret_index: usize,
        secret_label: Option<Arc<str>>,
        form: bool,
        attempt: u32,
        body: Bytes,
        action_from: Option<BodyFieldsFn>,
    ) -> Self {
        let stored = |v: Option<String>| v.map_or(Source::Absent, |v| Source::Stored(v.into_boxed_str()));
        // The id and event type are stored; the action is too, unless it
        // was never read: then it is read from the body on first use,
        // with the scheme's reader (`action_from`).
        let from_body = OnceLock::new();
        if action_from.is_none() {
            let _ = from_body.set(BodyFields {
                id: None,
                event_type: None,
                action,
            });
        }
        Self {
            inner: Arc::new(Inner {
                provider,
                id: stored(id),
                event_type: stored(event_type),
                timestamp,
                secret_index,
                secret_label,
                form,
                attempt: Some(attempt),
                body,
                body_fields: action_from,
                event_type_member: None,
                from_body,
                doc: OnceLock::new(),
                value: OnceLock::new(),
            }),
        }
    }

    fn body_fields(&self) -> &BodyFields {
        self.inner.from_body.get_or_init(|| {
            let Some(read) = self.inner.body_fields else {
                return BodyFields::default();
            };
            if self.inner.form {
                return read(BodyRef::Form(&self.inner.body));
            }
            match self.doc() {
                Ok(doc) => read(BodyRef::Json(doc)),
                Err(_) => BodyFields::default(),
            }
        })
    }

    /// The body parsed as JSON, as a `serde_json::Value`, built on the
    /// first call from the one parse of the body (the dedupe key, the
    /// event type, schema validation and typed deserialization read that
    /// parse directly, without a `Value`). Duplicate object keys are
    /// refused.
    ///
    /// # Errors
    ///
    /// 400 [`RejectionKind::InvalidJson`] if the body is not JSON, 400
    /// [`RejectionKind::DuplicateKeys`] if an object repeats a key.
    pub fn json_value(&self) -> Result<&serde_json::Value, Rejection> {
        let doc = self.doc()?;
        Ok(self.inner.value.get_or_init(|| doc.to_value()))
    }

    /// The one parse of the body (cached): the errors of
    /// [`json_value`](Self::json_value).
    pub(crate) fn doc(&self) -> Result<DocRef<'_>, Rejection> {
        let parsed = self.inner.doc.get_or_init(|| match Doc::parse(&self.inner.body) {
            Ok(doc) => Ok(doc),
            Err(JsonError::Syntax) => Err(JsonFailure::Syntax),
            Err(JsonError::DuplicateKey) => Err(JsonFailure::DuplicateKey),
        });
        match parsed {
            Ok(doc) => Ok(doc.root()),
            Err(JsonFailure::Syntax) => Err(Rejection::new(
                RejectionKind::InvalidJson,
                "the verified body is not valid JSON",
            )
            .with_provider(&self.inner.provider)),
            Err(JsonFailure::DuplicateKey) => Err(Rejection::new(
                RejectionKind::DuplicateKeys,
                "the verified body repeats a key in a JSON object",
            )
            .with_provider(&self.inner.provider)),
        }
    }

    /// The body's `action` (GitHub: `opened`, `closed`, …), which refines
    /// the event type for dispatch (`issues.opened`).
    pub fn action(&self) -> Option<&str> {
        self.body_fields().action.as_deref()
    }

    /// The body's `action` if it is known without reading the body
    /// (`Ok`), else the scheme's reader that finds it (`Err`): a queue
    /// stores the reader instead of parsing the body on the request's
    /// path.
    pub(crate) fn action_or_reader(&self) -> Result<Option<&str>, BodyFieldsFn> {
        match (self.inner.from_body.get(), self.inner.body_fields) {
            (Some(fields), _) => Ok(fields.action.as_deref()),
            (None, None) => Ok(None),
            (None, Some(read)) => Err(read),
        }
    }

    fn field<'a>(&'a self, source: &'a Source, pick: fn(&BodyFields) -> Option<&str>) -> Option<&'a str> {
        match source {
            Source::Absent => None,
            Source::Header(v) => v.to_str().ok(),
            Source::Body => pick(self.body_fields()),
            Source::Stored(v) => Some(v),
        }
    }

    /// Who sent it.
    pub fn provider(&self) -> &Provider {
        &self.inner.provider
    }

    /// The delivery id the provider shows in its dashboard: Stripe's event
    /// `id`, `X-GitHub-Delivery`, `webhook-id`, Slack's `event_id`,
    /// `X-Shopify-Webhook-Id`, or a custom scheme's id header.
    ///
    /// For GitHub and Shopify this header is **not signed**: use it for
    /// logs, not for deduplication. Ids read from the body are parsed on
    /// first use.
    pub fn delivery_id(&self) -> Option<&str> {
        self.field(&self.inner.id, |f| f.id.as_deref())
    }

    /// The event type, when the scheme knows it: Stripe's and Standard
    /// Webhooks' body `type`, `X-GitHub-Event`, Slack's body `type` (or the
    /// form's `command`, or `interactive`), `X-Shopify-Topic`.
    pub fn event_type(&self) -> Option<&str> {
        self.field(&self.inner.event_type, |f| f.event_type.as_deref())
    }

    /// The event type for an observer's record: [`event_type`](Self::event_type)
    /// when it is at hand (a header, or a body something already parsed),
    /// else, for a scheme whose event type is a top-level string member of
    /// a JSON body, that member read without building the document (no
    /// full parse only for the record; it can differ from `event_type`
    /// only for a body with duplicate keys below the top level, which the
    /// strict parse refuses).
    pub(crate) fn event_type_for_record(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match (&self.inner.event_type, self.inner.event_type_member) {
            (Source::Body, Some(member))
                if !self.inner.form
                    && self.inner.from_body.get().is_none()
                    && self.inner.doc.get().is_none() =>
            {
                crate::json::top_level_str(&self.inner.body, member).map(Cow::Owned)
            }
            _ => self.event_type().map(Cow::Borrowed),
        }
    }

    /// The signed timestamp, in Unix seconds, for timestamped schemes.
    pub fn timestamp_unix(&self) -> Option<i64> {
        self.inner.timestamp
    }

    /// The signed timestamp, for timestamped schemes.
    pub fn timestamp(&self) -> Option<time::OffsetDateTime> {
        self.inner
            .timestamp
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
    }

    /// Position (0-based, in the order they were added) of the secret
    /// whose signature matched. Never the secret itself.
    pub fn secret_index(&self) -> usize {
        self.inner.secret_index
    }

    /// Label of the secret that matched, if it was added with
    /// [`Secret::labeled`](crate::Secret::labeled).
    pub fn secret_label(&self) -> Option<&str> {
        self.inner.secret_label.as_deref()
    }

    /// The matched secret's label, shared (for observers).
    pub(crate) fn secret_label_arc(&self) -> Option<&Arc<str>> {
        self.inner.secret_label.as_ref()
    }

    /// Whether the body was sent as `application/x-www-form-urlencoded`
    /// (Slack slash commands and interactivity).
    pub fn is_form_encoded(&self) -> bool {
        self.inner.form
    }

    /// Which run of a queued delivery this is (1 for the first, counted
    /// by the [`AckQueue`](crate::queue::AckQueue)'s storage, so a run
    /// interrupted by a crash counts too); `None` when the handler runs
    /// inside the request.
    pub fn attempt(&self) -> Option<u32> {
        self.inner.attempt
    }

    /// The exact bytes that were verified.
    pub fn body(&self) -> &Bytes {
        &self.inner.body
    }

    /// Deserializes the verified body as JSON into `T`, from the one parse
    /// of the body (no `serde_json::Value` is built).
    ///
    /// # Errors
    ///
    /// 400 [`RejectionKind::InvalidJson`] or [`RejectionKind::DuplicateKeys`]
    /// if the body is not acceptable JSON; 422
    /// [`RejectionKind::InvalidPayload`], naming the failing path, if it is
    /// JSON of another shape. The message never echoes the body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        let doc = self.doc()?;
        crate::json::typed_doc(doc).map_err(|r| r.with_provider(&self.inner.provider))
    }
}

impl fmt::Debug for VerifiedWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedWebhook")
            .field("provider", &self.inner.provider)
            .field("delivery_id", &self.delivery_id())
            .field("event_type", &self.event_type())
            .field("timestamp", &self.inner.timestamp)
            .field("secret_index", &self.inner.secret_index)
            .field("body_len", &self.inner.body.len())
            .finish()
    }
}

/// The extractor's error: the route is not behind a
/// [`VerifyWebhookLayer`](crate::VerifyWebhookLayer). This is a server
/// configuration mistake, answered with 500.
#[derive(Debug, Clone, Copy)]
pub struct MissingVerification;

impl fmt::Display for MissingVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("this route is not behind a VerifyWebhookLayer")
    }
}

impl std::error::Error for MissingVerification {}

impl IntoResponse for MissingVerification {
    fn into_response(self) -> Response {
        tracing::error!(target: "webhook_guard", "VerifiedWebhook extracted on a route without VerifyWebhookLayer");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedWebhook {
    type Rejection = MissingVerification;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or(MissingVerification)
    }
}
