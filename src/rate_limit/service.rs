use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Future, Ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::response::Response;
use http::Request;
use tower::Service;

use super::{Charge, FreshDelivery, RateLimiter};
use crate::client_ip::ClientIp;
use crate::{Clock as _, Rejection, SystemClock};

/// The make-service returned by [`RateLimiter::into_make_service`]: gives
/// each connection a [`RateLimit`] that knows its peer address.
#[derive(Clone, Debug)]
pub struct IntoMakeServiceWithRateLimit<S> {
    app: S,
    limiter: RateLimiter,
}

impl<S> IntoMakeServiceWithRateLimit<S> {
    pub(super) fn new(app: S, limiter: RateLimiter) -> Self {
        Self { app, limiter }
    }
}

impl<S, T> Service<T> for IntoMakeServiceWithRateLimit<S>
where
    S: Clone,
    SocketAddr: Connected<T>,
{
    type Response = RateLimit<S>;
    type Error = Infallible;
    type Future = Ready<Result<RateLimit<S>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, target: T) -> Self::Future {
        let peer = SocketAddr::connect_info(target);
        ready(Ok(RateLimit::new(self.app.clone(), self.limiter.clone(), peer)))
    }
}

/// Limits one connection's requests; see [the module docs](super). Made
/// by [`IntoMakeServiceWithRateLimit`] or [`RateLimiter::service`].
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    limiter: RateLimiter,
    peer: SocketAddr,
}

impl<S> RateLimit<S> {
    /// Limits `inner`'s requests from `peer` with `limiter`.
    pub fn new(inner: S, limiter: RateLimiter, peer: SocketAddr) -> Self {
        Self { inner, limiter, peer }
    }
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let (client, charge) = match self.limiter.admit(self.peer.ip(), req.headers()) {
            Ok(admitted) => admitted,
            Err(rejection) => return ResponseFuture::refused(refuse(&self.limiter, rejection)),
        };
        let extensions = req.extensions_mut();
        extensions.insert(ClientIp::new(client));
        extensions.insert(ConnectInfo(self.peer));
        #[cfg(feature = "redis")]
        if self.limiter.is_shared() {
            // The shared check awaits Redis before the inner service is
            // called: take the service that was polled ready, leave a
            // clone in its place.
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            let limiter = self.limiter.clone();
            return ResponseFuture::new(async move {
                if let Err(rejection) = limiter.admit_shared(client, charge).await {
                    return Ok(refuse(&limiter, rejection));
                }
                let response = inner.call(req).await?;
                let (fresh, failed_auth) = settle(&limiter, &response, client, charge);
                limiter.settle_shared(client, charge, fresh, failed_auth).await;
                Ok(response)
            });
        }
        let future = self.inner.call(req);
        let limiter = self.limiter.clone();
        ResponseFuture::new(async move {
            let response = future.await?;
            settle(&limiter, &response, client, charge);
            Ok(response)
        })
    }
}

/// After the response: a fresh verified delivery gets its charge back (the
/// genuine sender is limited by its concurrency only), a failed
/// authentication is charged to the client's lockout quota. Returns
/// whether each happened.
fn settle(
    limiter: &RateLimiter,
    response: &Response,
    client: std::net::IpAddr,
    charge: Charge,
) -> (bool, bool) {
    let fresh = response.extensions().get::<FreshDelivery>().is_some();
    if fresh {
        limiter.refund(charge);
    }
    let failed_auth = response
        .extensions()
        .get::<Rejection>()
        .is_some_and(|r| r.kind().is_authentication_failure());
    if failed_auth {
        limiter.failed_authentication(client);
    }
    (fresh, failed_auth)
}

/// 429s come in floods, so they are logged at debug level only, and
/// within the limiter's per-reason allowance (see
/// [`log_limit`](crate::log_limit)).
fn refuse(limiter: &RateLimiter, rejection: Rejection) -> Response {
    if let Some(suppressed) = limiter
        .inner
        .logs
        .admit(rejection.kind(), || SystemClock.now_unix_millis())
    {
        tracing::debug!(
            target: "webhook_guard",
            reason = rejection.reason(),
            status = rejection.status().as_u16(),
            suppressed = crate::log_limit::suppressed_field(suppressed),
            "request refused by the rate limiter"
        );
    }
    rejection.to_response()
}

type Boxed<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

/// Response future of [`RateLimit`].
pub struct ResponseFuture<E> {
    state: State<E>,
}

enum State<E> {
    Refused(Option<Response>),
    Running(Boxed<E>),
}

impl<E> ResponseFuture<E> {
    fn new(inner: impl Future<Output = Result<Response, E>> + Send + 'static) -> Self {
        Self {
            state: State::Running(Box::pin(inner)),
        }
    }

    fn refused(response: Response) -> Self {
        Self {
            state: State::Refused(Some(response)),
        }
    }
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Refused(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            State::Running(future) => future.as_mut().poll(cx),
        }
    }
}

impl<E> fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
