//! What the layer gathers about one request for its observer: nothing at
//! all when the route has no observer.

use std::time::{Duration, Instant};

use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};

use crate::observe::{Outcome, RequestDetails, RequestRecord, SecretMatch, Skew};
use crate::{Rejection, RejectionKind, VerifiedWebhook, Verifier};

/// One request's facts, reported once: when the layer answers, or, if the
/// response future is dropped first, as [`Outcome::Cancelled`].
pub(crate) struct Watch<'v> {
    trace: Option<Trace<'v>>,
}

struct Trace<'v> {
    verifier: &'v Verifier,
    start: Instant,
    handler_start: Option<Instant>,
    handler_time: Option<Duration>,
    body_bytes: Option<usize>,
    skew: Option<Skew>,
    hook: Option<VerifiedWebhook>,
    /// Diagnostic hints of a rejection (empty: no allocation).
    hints: Vec<crate::hints::Hint>,
    /// The request itself, only for an observer that asked for it.
    request: Option<Box<Captured>>,
}

/// A copy of the request for an observer that
/// [wants it](crate::observe::Observer::wants_request).
struct Captured {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Option<Bytes>,
}

impl<'v> Watch<'v> {
    /// Starts watching `req`, if `verifier` has an observer (copying its
    /// head only if the observer wants the request).
    #[inline]
    pub(crate) fn start<B>(verifier: &'v Verifier, req: &Request<B>) -> Self {
        Self {
            trace: verifier.observer().map(|observer| Trace {
                verifier,
                start: Instant::now(),
                handler_start: None,
                handler_time: None,
                body_bytes: None,
                skew: None,
                hook: None,
                hints: Vec::new(),
                request: observer.wants_request().then(|| {
                    Box::new(Captured {
                        method: req.method().clone(),
                        uri: req.uri().clone(),
                        headers: req.headers().clone(),
                        body: None,
                    })
                }),
            }),
        }
    }

    /// The body was read to its end.
    #[inline]
    pub(crate) fn body(&mut self, bytes: &Bytes) {
        if let Some(t) = &mut self.trace {
            t.body_bytes = Some(bytes.len());
            if let Some(request) = &mut t.request {
                request.body = Some(bytes.clone());
            }
        }
    }

    /// The request verified as `hook`.
    #[inline]
    pub(crate) fn verified(&mut self, hook: &VerifiedWebhook) {
        if let Some(t) = &mut self.trace {
            t.skew = hook
                .timestamp_unix()
                .map(|ts| Skew::between(ts, t.verifier.now_unix()));
            t.hook = Some(hook.clone());
        }
    }

    /// The inner service is called now.
    #[inline]
    pub(crate) fn handler_started(&mut self) {
        if let Some(t) = &mut self.trace {
            t.handler_start = Some(Instant::now());
        }
    }

    /// The inner service answered.
    #[inline]
    pub(crate) fn handler_finished(&mut self) {
        if let Some(t) = &mut self.trace {
            t.handler_time = t.handler_start.map(|s| s.elapsed());
        }
    }

    /// The layer answers `response` to a request it rejected with `kind`
    /// (the [`Rejection`] is in the response's extensions).
    #[inline]
    pub(crate) fn rejected(&mut self, kind: RejectionKind, response: &Response) {
        if let Some(t) = &mut self.trace {
            if let Some(rejection) = response.extensions().get::<Rejection>() {
                if let Some(ts) = rejection.timestamp() {
                    t.skew = Some(Skew::between(ts.timestamp(), ts.now()));
                }
                if !rejection.hints().is_empty() {
                    t.hints = rejection.hints().to_vec();
                }
            }
        }
        self.finish(Outcome::Rejected(kind), Some(response));
    }

    /// The layer answers `response`.
    #[inline]
    pub(crate) fn answered(&mut self, outcome: Outcome, response: &Response) {
        self.finish(outcome, Some(response));
    }

    /// The inner service answered `response`: its outcome is read from
    /// the response's marks, only when there is a record to make.
    #[inline]
    pub(crate) fn responded(&mut self, response: &Response) {
        if self.trace.is_some() {
            self.finish(crate::observe::outcome_of(response), Some(response));
        }
    }

    /// The inner service failed with an error instead of a response.
    #[inline]
    pub(crate) fn failed(&mut self) {
        self.finish(Outcome::Rejected(RejectionKind::HandlerError), None);
    }

    fn finish(&mut self, outcome: Outcome, response: Option<&Response>) {
        let Some(t) = self.trace.take() else {
            return;
        };
        let Some(observer) = t.verifier.observer() else {
            return;
        };
        let hook = t.hook.as_ref();
        let event_type = hook.and_then(VerifiedWebhook::event_type_for_record);
        let record = RequestRecord {
            route: t.verifier.name_arc(),
            provider: t.verifier.scheme().provider(),
            outcome,
            status: response.map(Response::status),
            secret: hook.map(|h| SecretMatch {
                index: h.secret_index(),
                label: h.secret_label_arc(),
            }),
            skew: t.skew,
            body_bytes: t.body_bytes,
            layer_time: t.start.elapsed(),
            handler_time: match (t.handler_time, t.handler_start) {
                (Some(time), _) => Some(time),
                // Still in the handler: cancelled while it ran.
                (None, Some(start)) => Some(start.elapsed()),
                (None, None) => None,
            },
            event_type: event_type.as_deref(),
            hints: &t.hints,
            request: t.request.as_deref().map(|r| RequestDetails {
                method: &r.method,
                uri: &r.uri,
                headers: &r.headers,
                body: r.body.as_ref(),
            }),
        };
        observer.on_request(&record);
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if self.trace.is_some() {
            self.finish(Outcome::Cancelled, None);
        }
    }
}
