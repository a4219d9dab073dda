//! Signing requests for your own tests (feature `test-util`).
//!
//! Our answer to stripe-node's `generateTestHeaderString`: a
//! [`TestSigner`] writes the headers a real sender would send, for every
//! scheme, at the timestamp you choose, so you can drive your own handlers
//! through the real layer.
//!
//! ```
//! use tower::ServiceExt as _;
//! use axum::{routing::post, Router};
//! use webhook_guard::test_util::TestSigner;
//! use webhook_guard::{FixedClock, Scheme, Verifier, VerifiedWebhook};
//!
//! # tokio_test_block_on(async {
//! let verifier = Verifier::builder(Scheme::stripe())
//!     .secret("whsec_test")
//!     .clock(FixedClock::new(1_700_000_000))
//!     .build()?;
//! let app = Router::new().route(
//!     "/hook",
//!     post(|hook: VerifiedWebhook| async move { hook.event_type().unwrap_or("").to_owned() })
//!         .layer(verifier.layer()),
//! );
//! let request = TestSigner::new(&Scheme::stripe(), "whsec_test")?
//!     .timestamp(1_700_000_000)
//!     .request("/hook", r#"{"id":"evt_1","type":"invoice.paid"}"#);
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};

use crate::clock::{Clock as _, SystemClock};
use crate::scheme::{Key, SignInput};
use crate::{ConfigError, Scheme, Secret};

/// Signs request bodies the way a scheme's real sender does.
#[derive(Debug, Clone)]
#[must_use]
pub struct TestSigner {
    scheme: Scheme,
    key: Key,
    timestamp: i64,
    id: String,
    event_type: Option<String>,
    extra: HeaderMap,
}

impl TestSigner {
    /// A signer for `scheme` with `secret` (in the same form the
    /// [`Verifier`](crate::Verifier) takes it), at the current time, with
    /// delivery id `msg_test`.
    ///
    /// # Errors
    ///
    /// The same [`ConfigError`]s as the verifier for a bad secret.
    pub fn new(scheme: &Scheme, secret: impl Into<Secret>) -> Result<Self, ConfigError> {
        let secret = secret.into();
        Ok(Self {
            key: scheme.signing_key(0, secret.expose())?,
            scheme: scheme.clone(),
            timestamp: SystemClock.now_unix(),
            id: "msg_test".to_owned(),
            event_type: None,
            extra: HeaderMap::new(),
        })
    }

    /// The signed timestamp (Unix seconds), for timestamped schemes.
    pub fn timestamp(mut self, unix_seconds: i64) -> Self {
        self.timestamp = unix_seconds;
        self
    }

    /// The delivery id written in the scheme's id header (`webhook-id`,
    /// `X-GitHub-Delivery`, `X-Shopify-Webhook-Id`, …).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The event type written in the scheme's event header
    /// (`X-GitHub-Event`, `X-Shopify-Topic`, …), where it has one.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// An extra header sent with the request, and signed if a custom
    /// scheme's signed content names it.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.extra.insert(name, value);
        self
    }

    /// The headers for `body`: the extra headers plus the scheme's
    /// signature, timestamp, id and event headers.
    pub fn headers(&self, body: &[u8]) -> HeaderMap {
        let mut out = self.extra.clone();
        let input = SignInput {
            timestamp: self.timestamp,
            id: &self.id,
            event_type: self.event_type.as_deref(),
            body,
        };
        self.scheme.sign(&self.key, &input, &mut out);
        out
    }

    /// A signed `POST` request to `uri` carrying `body`.
    pub fn request(&self, uri: &str, body: impl Into<Bytes>) -> Request<Body> {
        let body = body.into();
        let mut request = Request::new(Body::from(body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri.parse().unwrap_or_default();
        *request.headers_mut() = self.headers(&body);
        request
    }
}
