//! Typed event dispatch: verified deliveries routed by event type to async
//! handlers that receive an [`Event<T>`].
//!
//! In the spirit of `@octokit/webhooks`' `on("issues.opened", …)`, but
//! typed: each handler names the payload type it wants, and the router
//! deserializes it from the body's one JSON parse.
//!
//! ```
//! use axum::{routing::post_service, Router};
//! use serde::Deserialize;
//! use webhook_guard::dispatch::{Event, EventRouter, HandlerError};
//! use webhook_guard::{Scheme, Verifier};
//!
//! #[derive(Deserialize)]
//! struct Issue { number: u64, title: String }
//! #[derive(Deserialize)]
//! struct IssuesEvent { issue: Issue }
//!
//! async fn opened(event: Event<IssuesEvent>) -> Result<(), HandlerError> {
//!     let issue = &event.data().issue;
//!     println!("#{} opened: {} (delivery {:?})", issue.number, issue.title, event.delivery_id());
//!     Ok(())
//! }
//!
//! let events = EventRouter::new()
//!     .on("issues.opened", opened)
//!     .on("push", |event: Event<serde_json::Value>| async move {
//!         println!("push to {:?}", event.data().get("ref"));
//!         Ok::<(), HandlerError>(())
//!     });
//! let github = Verifier::builder(Scheme::github()).secret("s3cret").build()?;
//! let app: Router = Router::new()
//!     .route("/webhooks/github", post_service(events).layer(github.layer()));
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```
//!
//! # Matching
//!
//! An event's name is its [event type](crate::VerifiedWebhook::event_type)
//! (Stripe's `invoice.paid`, GitHub's `X-GitHub-Event`, …). When the body
//! has an [`action`](crate::VerifiedWebhook::action) (GitHub), a handler
//! registered for `type.action` (`issues.opened`) is preferred, then one
//! for the bare `type` (`issues`). [`EventRouter::on_any`] handlers run for
//! every event, after the matching one; [`EventRouter::fallback`] runs when
//! no `on` handler matched.
//!
//! # Answers
//!
//! | outcome | answer |
//! |---|---|
//! | every handler that ran succeeded | 200 `{"status":"processed","id":…,"type":…}` |
//! | no handler at all for this event | 200 `{"status":"ignored","id":…,"type":…}` by default (providers retry any non-2xx); see [`EventRouter::unhandled_status`] |
//! | the body does not deserialize into a handler's type | 422 `invalid_payload`, naming the failing JSON pointer — never reported as a signature failure |
//! | the body is not JSON, or repeats a key | 400 `invalid_json` / `duplicate_keys` |
//! | a handler returned an error | 500 `handler_error`; with [dedupe](crate::dedupe) the claim is released, so the provider's retry is processed |
//!
//! Form-encoded Slack bodies are presented to handlers as a JSON object of
//! their fields (strings), so `Event<MySlashCommand>` works too.

use std::collections::HashMap;
use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Request, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::Service;

use crate::{MissingVerification, Rejection, RejectionKind, VerifiedWebhook};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Arc<dyn Fn(VerifiedWebhook) -> BoxFuture<Result<(), Failure>> + Send + Sync>;

/// A verified event with its payload deserialized as `T`.
#[derive(Clone)]
pub struct Event<T> {
    data: T,
    hook: VerifiedWebhook,
}

impl<T> Event<T> {
    /// The payload.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The payload, by value.
    pub fn into_data(self) -> T {
        self.data
    }

    /// Everything about the delivery: provider, ids, timestamp, the exact
    /// verified bytes.
    pub fn delivery(&self) -> &VerifiedWebhook {
        &self.hook
    }

    /// The provider's delivery id (see [`VerifiedWebhook::delivery_id`]).
    pub fn delivery_id(&self) -> Option<&str> {
        self.hook.delivery_id()
    }

    /// The event type (see [`VerifiedWebhook::event_type`]).
    pub fn event_type(&self) -> Option<&str> {
        self.hook.event_type()
    }

    /// The body's `action`, for GitHub (see [`VerifiedWebhook::action`]).
    pub fn action(&self) -> Option<&str> {
        self.hook.action()
    }

    /// The raw verified body.
    pub fn body(&self) -> &[u8] {
        self.hook.body()
    }
}

impl<T: fmt::Debug> fmt::Debug for Event<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("data", &self.data)
            .field("delivery", &self.hook)
            .finish()
    }
}

/// A handler's failure: anything that converts into a boxed error.
/// Answered with 500 `handler_error`; the error itself is logged, never
/// sent to the client.
pub struct HandlerError(Box<dyn Error + Send + Sync>);

impl HandlerError {
    /// A failure with a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self(message.to_string().into())
    }
}

impl<E: Into<Box<dyn Error + Send + Sync>>> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why a dispatch did not succeed.
enum Failure {
    /// The payload was refused (400 or 422).
    Payload(Rejection),
    /// A handler failed (500).
    Handler(HandlerError),
}

/// Routes verified events to typed handlers. Cheap to clone. Use it as the
/// service behind a [`VerifyWebhookLayer`](crate::VerifyWebhookLayer), e.g.
/// `post_service(router).layer(verifier.layer())`.
#[derive(Clone, Default)]
pub struct EventRouter {
    inner: Arc<Routes>,
}

#[derive(Clone, Default)]
struct Routes {
    on: HashMap<String, Handler>,
    any: Vec<Handler>,
    fallback: Option<Handler>,
    unhandled: Option<StatusCode>,
}

impl EventRouter {
    /// A router with no handlers.
    pub fn new() -> Self {
        Self::default()
    }

    fn routes(&mut self) -> &mut Routes {
        // Unique while the router is being built; a clone taken earlier
        // keeps its own table.
        Arc::make_mut(&mut self.inner)
    }

    /// Runs `handler` for events named `event` (`invoice.paid`, `push`,
    /// `issues.opened`, …), with the payload deserialized as `T`.
    /// Registering the same name twice replaces the first handler.
    #[must_use]
    pub fn on<T, F, Fut, E>(mut self, event: impl Into<String>, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Event<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<HandlerError> + 'static,
    {
        self.routes().on.insert(event.into(), typed(handler));
        self
    }

    /// Runs `handler` for every event, after the matching `on` handler (or
    /// the fallback).
    #[must_use]
    pub fn on_any<T, F, Fut, E>(mut self, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Event<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<HandlerError> + 'static,
    {
        self.routes().any.push(typed(handler));
        self
    }

    /// Runs `handler` for events that no `on` handler matched.
    #[must_use]
    pub fn fallback<T, F, Fut, E>(mut self, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Event<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<HandlerError> + 'static,
    {
        self.routes().fallback = Some(typed(handler));
        self
    }

    /// The status for an event no handler takes (no `on` match, no
    /// fallback, no `on_any`). Default 200 with `{"status":"ignored"}`:
    /// providers retry any non-2xx, usually for days.
    #[must_use]
    pub fn unhandled_status(mut self, status: StatusCode) -> Self {
        self.routes().unhandled = Some(status);
        self
    }

    /// Dispatches one verified delivery.
    pub async fn dispatch(&self, hook: VerifiedWebhook) -> Response {
        self.dispatch_marked(hook, false).await
    }

    /// [`dispatch`](Self::dispatch); when `observed`, an event no handler
    /// takes is marked for the layer's [observer](crate::observe) as
    /// ignored.
    async fn dispatch_marked(&self, hook: VerifiedWebhook, observed: bool) -> Response {
        let routes = &*self.inner;
        // A body that is not acceptable JSON is a 400 before any matching:
        // its event type could not even be read.
        if !hook.is_form_encoded() {
            if let Err(rejection) = hook.doc() {
                tracing::warn!(
                    target: "webhook_guard",
                    provider = hook.provider().name(),
                    reason = rejection.reason(),
                    "verified payload refused"
                );
                return rejection.to_response();
            }
        }
        let matched = hook
            .event_type()
            .and_then(|t| {
                let with_action = hook.action().and_then(|a| routes.on.get(&format!("{t}.{a}")));
                with_action.or_else(|| routes.on.get(t))
            })
            .or(routes.fallback.as_ref());
        if matched.is_none() && routes.any.is_empty() {
            let ignored = answer(&hook, routes.unhandled.unwrap_or(StatusCode::OK), "ignored");
            return if observed {
                crate::observe::mark(ignored, crate::observe::Answered::Ignored)
            } else {
                ignored
            };
        }
        for handler in matched.into_iter().chain(routes.any.iter()) {
            match handler(hook.clone()).await {
                Ok(()) => {}
                Err(Failure::Payload(rejection)) => {
                    tracing::warn!(
                        target: "webhook_guard",
                        provider = hook.provider().name(),
                        reason = rejection.reason(),
                        pointer = rejection.pointer(),
                        "verified payload refused"
                    );
                    return rejection.to_response();
                }
                Err(Failure::Handler(error)) => {
                    tracing::error!(
                        target: "webhook_guard",
                        provider = hook.provider().name(),
                        id = hook.delivery_id(),
                        kind = hook.event_type(),
                        %error,
                        "webhook handler failed"
                    );
                    return Rejection::new(
                        RejectionKind::HandlerError,
                        "the handler failed to process this event; the provider should retry it",
                    )
                    .with_provider(hook.provider())
                    .to_response();
                }
            }
        }
        answer(&hook, StatusCode::OK, "processed")
    }
}

fn typed<T, F, Fut, E>(handler: F) -> Handler
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(Event<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<HandlerError> + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |hook: VerifiedWebhook| {
        let handler = handler.clone();
        Box::pin(async move {
            let data: T = payload(&hook).map_err(Failure::Payload)?;
            handler(Event { data, hook })
                .await
                .map_err(|e| Failure::Handler(e.into()))
        }) as BoxFuture<Result<(), Failure>>
    })
}

/// The payload as `T`: from the one JSON parse, or from a form's fields.
fn payload<T: DeserializeOwned>(hook: &VerifiedWebhook) -> Result<T, Rejection> {
    if hook.is_form_encoded() {
        let fields: serde_json::Map<String, Value> = form_urlencoded::parse(hook.body())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        return crate::json::typed(&Value::Object(fields)).map_err(|r| r.with_provider(hook.provider()));
    }
    hook.json()
}

/// 200 (or the configured status) with `{"status", "id", "type"}`.
fn answer(hook: &VerifiedWebhook, status: StatusCode, word: &str) -> Response {
    tracing::info!(
        target: "webhook_guard",
        provider = hook.provider().name(),
        id = hook.delivery_id(),
        kind = hook.event_type(),
        "{word}"
    );
    let body = serde_json::json!({ "status": word, "id": hook.delivery_id(), "type": hook.event_type() });
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_string(),
    )
        .into_response()
}

impl fmt::Debug for EventRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.inner.on.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("EventRouter")
            .field("on", &names)
            .field("on_any", &self.inner.any.len())
            .field("fallback", &self.inner.fallback.is_some())
            .finish()
    }
}

impl<B: Send + 'static> Service<Request<B>> for EventRouter {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let router = self.clone();
        let hook = req.extensions().get::<VerifiedWebhook>().cloned();
        let observed = crate::observe::is_observed(req.extensions());
        Box::pin(async move {
            Ok(match hook {
                Some(hook) => router.dispatch_marked(hook, observed).await,
                None => MissingVerification.into_response(),
            })
        })
    }
}
