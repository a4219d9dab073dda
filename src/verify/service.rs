use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::Request;
use tower::Service;

use super::future::ResponseFuture;
use super::watch::Watch;
use crate::body::Reservation;
use crate::observe::Outcome;
use crate::{Rejection, Verifier};

/// A service that lets through only requests the real sender signed; the
/// rest are answered with a [`Rejection`] response and never reach the
/// inner service. Made by [`VerifyWebhookLayer`](super::VerifyWebhookLayer).
#[derive(Clone, Debug)]
pub struct VerifyWebhook<S> {
    inner: S,
    verifier: Verifier,
}

impl<S> VerifyWebhook<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, verifier: Verifier) -> Self {
        Self { inner, verifier }
    }
}

impl<S, B> Service<Request<B>> for VerifyWebhook<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone takes the place of the service that was driven ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        ResponseFuture::new(async move {
            // The request's record for the route's observer (nothing
            // without one); reported once, when the layer answers or
            // this future is dropped.
            let mut watch = Watch::start(&verifier, &req);
            // The body's bytes in the budget: held while the handler runs
            // (it has the verified bytes), given back when this future
            // finishes or is dropped.
            let mut held = Reservation::new(verifier.body_budget());
            let req = match accept(&verifier, req, &mut held, &mut watch).await {
                Ok(Step::Continue(req)) => req,
                Ok(Step::Answer(response)) => {
                    watch.answered(Outcome::Handshake, &response);
                    return Ok(response);
                }
                Err(rejection) => {
                    let kind = rejection.kind();
                    let response = verifier.reject(rejection);
                    watch.rejected(kind, &response);
                    return Ok(response);
                }
            };
            let response = match verifier.dedupe() {
                Some((dedupe, times)) => {
                    crate::dedupe::run(&verifier, dedupe, *times, req, inner, &mut watch).await
                }
                None => {
                    watch.handler_started();
                    let response = inner.call(req).await.map(crate::rate_limit::fresh);
                    watch.handler_finished();
                    response
                }
            };
            drop(held);
            match &response {
                Ok(r) => watch.responded(r),
                Err(_) => watch.failed(),
            }
            response
        })
    }
}

/// What the checks decided for a request that was not rejected.
enum Step {
    /// Go on to the dedupe step and the handler.
    Continue(Request<Body>),
    /// Answered by the layer itself (a handshake).
    Answer(Response),
}

/// Runs the checks; on success the request carries the verified bytes as
/// its body and the [`VerifiedWebhook`](crate::VerifiedWebhook) in its
/// extensions.
async fn accept<B>(
    verifier: &Verifier,
    req: Request<B>,
    held: &mut Reservation<'_>,
    watch: &mut Watch<'_>,
) -> Result<Step, Rejection>
where
    B: http_body::Body<Data = Bytes>,
{
    let (mut parts, body) = req.into_parts();
    verifier.check_client(&parts.extensions)?;
    if let Some(answer) = verifier.handshake(&parts.method, parts.uri.query()) {
        return answer.map(Step::Answer);
    }
    let hint = verifier.check_head(&parts.method, &parts.headers)?;
    let verified = {
        let mut parsed = crate::scheme::Parsed::empty();
        verifier.check_headers(&parts.headers, &mut parsed)?;
        let request_key = match verifier.request_key(&parsed) {
            Some(lookup) => Some(lookup.await.map_err(|r| verifier.tag(r))?),
            None => None,
        };
        let bytes = crate::body::read(
            body,
            verifier.max_body_bytes(),
            hint,
            Some(verifier.body_timeouts()),
            held,
        )
        .await
        .map_err(|r| verifier.tag(r))?;
        watch.body(&bytes);
        verifier.authenticate(&parsed, request_key.as_ref(), &parts.headers, bytes)?
    };
    watch.verified(&verified);
    if let Some(answer) = verifier.url_verification(&verified) {
        return Ok(Step::Answer(answer));
    }
    verifier.validate(&verified)?;
    let body = Body::from(verified.body().clone());
    parts.extensions.insert(verified);
    if verifier.observer().is_some() {
        parts.extensions.insert(crate::observe::Observed);
    }
    Ok(Step::Continue(Request::from_parts(parts, body)))
}
