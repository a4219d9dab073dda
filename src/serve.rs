//! Serving an axum app with the timeouts, the connection cap and the
//! graceful shutdown a public webhook endpoint needs.
//!
//! # Why not `axum::serve`
//!
//! `axum::serve` (0.8) builds hyper's connections without a timer, and
//! hyper applies its header-read timeout only when a timer is set: under
//! `axum::serve` a client that dribbles a request head one byte at a time,
//! or opens a connection and sends nothing, holds the connection and its
//! task for ever. It also accepts without limit, and its graceful shutdown
//! waits for every connection with no deadline, so one stalled client
//! holds a deploy. [`Server`] is the same accept loop with those holes
//! closed:
//!
//! | Setting | Default | What it bounds |
//! |---|---|---|
//! | [`header_read_timeout`](Server::header_read_timeout) | 10 s | a new connection's request head, counted from accept (TLS: from the end of the handshake), and each later head from its first byte; a connection that sends nothing at all is closed after it too. Also bounds the TLS handshake. |
//! | [`keep_alive_timeout`](Server::keep_alive_timeout) | 75 s | an idle keep-alive connection between requests: closed when no new request starts within it after the last response. Longer than the common 60 s idle timeout of load balancers, so that the balancer, not this server, closes idle connections (no race on a reused connection). |
//! | [`max_connections`](Server::max_connections) | 10 000 | open connections. At the cap the server stops calling `accept()`: new connections wait in the kernel's listen backlog (not accepted, not answered) until a connection closes, and are refused by the kernel once the backlog is full. |
//! | [`shutdown_grace`](Server::shutdown_grace) | 10 s | how long in-flight requests may finish after the shutdown signal; connections still open then are dropped. |
//! | [`shutdown_delay`](Server::shutdown_delay) | 0 | time between the signal and the end of accepting, during which [`Readiness`] already answers 503 (for orchestrators that remove an endpoint only after its readiness check fails). |
//!
//! Only HTTP/1.1 is served (webhook senders use it), with keep-alive. The
//! request body and the handler are not bounded here: the verification
//! layer bounds the body ([`VerifierBuilder`](crate::VerifierBuilder)'s body
//! limit and body read timeout), the application its handlers. Accept errors
//! never stop the server: running out of file descriptors (`EMFILE`) is
//! logged and retried after a short pause. Logs go through `tracing` under
//! the target `webhook_guard`.
//!
//! # Shutdown
//!
//! With [`with_graceful_shutdown`](Server::with_graceful_shutdown) (usually
//! given [`shutdown_signal()`], which waits for SIGTERM or Ctrl-C), the
//! signal:
//!
//! 1. flips [`Readiness`] to not ready at once (`GET /readyz` answers 503
//!    `shutting_down`; [`Readiness::shutting_down`] resolves, so the
//!    application can stop its own work too);
//! 2. after [`shutdown_delay`](Server::shutdown_delay), stops accepting and
//!    closes the listener (new connections are refused);
//! 3. asks every connection to finish: idle ones close, in-flight requests
//!    finish and their connection closes after the response;
//! 4. waits at most [`shutdown_grace`](Server::shutdown_grace), then drops
//!    whatever is left.
//!
//! [`serve`](Server::serve) then returns a [`Drain`] saying whether every
//! connection finished in time.
//!
//! # Connection info
//!
//! The make-service is called once per connection with the peer's
//! [`SocketAddr`]. axum implements `Connected<SocketAddr> for SocketAddr`,
//! so both [`RateLimiter::into_make_service`](crate::RateLimiter::into_make_service)
//! and `router.into_make_service_with_connect_info::<SocketAddr>()` work as
//! they are, and [`serve_router`](Server::serve_router) does the latter for
//! a plain [`Router`]: handlers can extract `ConnectInfo<SocketAddr>`.
//!
//! # Examples
//!
//! Plain HTTP behind a load balancer that terminates TLS, with the rate
//! limiter in front of the app:
//!
//! ```no_run
//! use axum::{routing::post, Router};
//! use webhook_guard::serve::Server;
//! use webhook_guard::RateLimiter;
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new().route("/webhook", post(|| async { "ok" }));
//! let limiter = RateLimiter::builder().build();
//! Server::bind("0.0.0.0:3000").await?
//!     .serve(limiter.into_make_service(app))
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Graceful shutdown on SIGTERM or Ctrl-C, with a readiness route for the
//! orchestrator, and the application's own work stopped once shutdown
//! starts:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use axum::{routing::post, Router};
//! use webhook_guard::serve::{shutdown_signal, Drain, Server};
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = Server::bind("0.0.0.0:3000")
//!     .await?
//!     .shutdown_grace(Duration::from_secs(20))
//!     .with_graceful_shutdown(shutdown_signal());
//! let readiness = server.readiness();
//! let app = Router::new()
//!     .route("/webhook", post(|| async { "ok" }))
//!     .route("/readyz", readiness.route());
//!
//! // The application's own background work stops when shutdown starts.
//! let worker = tokio::spawn({
//!     let readiness = readiness.clone();
//!     async move { readiness.shutting_down().await }
//! });
//!
//! match server.serve_router(app).await? {
//!     Drain::Complete => tracing::info!("every request finished"),
//!     Drain::TimedOut { dropped } => tracing::warn!(dropped, "connections dropped at the deadline"),
//!     _ => {}
//! }
//! let _ = worker.await;
//! # Ok(())
//! # }
//! ```
//!
//! HTTPS in process (feature `tls`), from PEM files:
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::post, Router};
//! use webhook_guard::serve::{shutdown_signal, Server, TlsConfig};
//!
//! let tls = TlsConfig::from_pem_files("/etc/webhook/cert.pem", "/etc/webhook/key.pem")?;
//! let app = Router::new().route("/webhook", post(|| async { "ok" }));
//! Server::bind("0.0.0.0:443")
//!     .await?
//!     .tls(tls)
//!     .with_graceful_shutdown(shutdown_signal())
//!     .serve_router(app)
//!     .await?;
//! # Ok(())
//! # }
//! ```

mod conn;
#[cfg(feature = "tls")]
mod tls;

use std::convert::Infallible;
use std::fmt;
use std::future::{pending, poll_fn, ready, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::Service;

#[cfg(feature = "tls")]
pub use tls::TlsConfig;

use crate::{Rejection, RejectionKind};
use conn::{Activity, DeadlineIo, Tracked};

/// Default [`Server::header_read_timeout`]: 10 seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`Server::keep_alive_timeout`]: 75 seconds.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default [`Server::max_connections`]: 10 000.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default [`Server::shutdown_grace`]: 10 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Longest duration any setting accepts; longer ones are cut to it (a
/// year: "for ever", without deadline arithmetic overflowing).
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Pause after an accept error that is not about one connection (such as
/// running out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The serving helper: an accept loop over a [`TcpListener`] with the
/// timeouts, connection cap and graceful shutdown described in [the module
/// docs](self).
pub struct Server {
    listener: TcpListener,
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
    max_connections: usize,
    shutdown_grace: Duration,
    shutdown_delay: Duration,
    signal: Option<Signal>,
    readiness: Readiness,
    #[cfg(feature = "tls")]
    tls: Option<TlsConfig>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Server");
        d.field("local_addr", &self.listener.local_addr().ok())
            .field("header_read_timeout", &self.header_read_timeout)
            .field("keep_alive_timeout", &self.keep_alive_timeout)
            .field("max_connections", &self.max_connections)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("shutdown_delay", &self.shutdown_delay)
            .field("graceful_shutdown", &self.signal.is_some())
            .field("readiness", &self.readiness);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.is_some());
        d.finish()
    }
}

impl Server {
    /// Serves connections accepted on `listener`, with the defaults.
    pub fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            shutdown_delay: Duration::ZERO,
            signal: None,
            readiness: Readiness::new(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Binds a listener to `addr` and serves it, with the defaults.
    ///
    /// # Errors
    ///
    /// The bind error (address in use, permission denied, …).
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Ok(Self::new(TcpListener::bind(addr).await?))
    }

    /// The address the listener is bound to (useful after binding port 0).
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// How long a request head may take; default 10 s. Counted from accept
    /// (or the end of the TLS handshake) for a connection's first request,
    /// so a connection that sends nothing is closed after it too, and from
    /// the first byte for later requests. It also bounds the TLS handshake.
    /// Durations above a year are cut to a year.
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout.min(MAX_DURATION);
        self
    }

    /// How long a keep-alive connection may stay idle between requests
    /// before it is closed; default 75 s (above the usual 60 s idle timeout
    /// of load balancers). Durations above a year are cut to a year.
    #[must_use]
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.keep_alive_timeout = timeout.min(MAX_DURATION);
        self
    }

    /// How many connections may be open at once; default 10 000. At the cap
    /// the server stops accepting: new connections wait in the kernel's
    /// listen backlog until one closes (they are not accepted, so not
    /// answered, in the meantime). 0 is taken as 1.
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// How long in-flight requests may take to finish once shutdown has
    /// started; default 10 s. Connections still open then are dropped.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace.min(MAX_DURATION);
        self
    }

    /// How long to keep accepting and serving after the shutdown signal,
    /// with [`Readiness`] already answering 503; default 0. Useful when an
    /// orchestrator removes the endpoint from its load balancer only after
    /// the readiness check fails.
    #[must_use]
    pub fn shutdown_delay(mut self, delay: Duration) -> Self {
        self.shutdown_delay = delay.min(MAX_DURATION);
        self
    }

    /// Starts a graceful shutdown when `signal` resolves (see [the module
    /// docs](self#shutdown)); usually [`shutdown_signal()`]. Without it the
    /// server runs until its task is dropped.
    #[must_use]
    pub fn with_graceful_shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.signal = Some(Box::pin(signal));
        self
    }

    /// Uses `readiness` (made with [`Readiness::new`]) instead of the
    /// server's own, for an app built before the server.
    #[must_use]
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// The server's readiness: ready until shutdown starts. Route it with
    /// [`Readiness::route`].
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Serves HTTPS with `config` instead of plain HTTP.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Serves `router`, with `ConnectInfo<SocketAddr>` available to its
    /// handlers. Same as [`serve`](Self::serve) with
    /// `router.into_make_service_with_connect_info::<SocketAddr>()`.
    ///
    /// # Errors
    ///
    /// As [`serve`](Self::serve).
    pub async fn serve_router(self, router: Router) -> io::Result<Drain> {
        self.serve(router.into_make_service_with_connect_info::<SocketAddr>())
            .await
    }

    /// Serves connections with a service made per connection by
    /// `make_service`, which is given the peer's address: for example
    /// [`RateLimiter::into_make_service`](crate::RateLimiter::into_make_service)
    /// or `router.into_make_service_with_connect_info::<SocketAddr>()`.
    ///
    /// Returns once the shutdown signal (if any) has fired and the
    /// connections have drained or the grace period ran out; without a
    /// signal it runs until dropped.
    ///
    /// # Errors
    ///
    /// None at present (accept errors are logged and retried); the
    /// `io::Result` leaves room for start-up errors.
    pub async fn serve<M, S>(self, mut make_service: M) -> io::Result<Drain>
    where
        M: Service<SocketAddr, Response = S, Error = Infallible> + Send + 'static,
        M::Future: Send,
        S: Service<axum::extract::Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let Self {
            listener,
            header_read_timeout,
            keep_alive_timeout,
            max_connections,
            shutdown_grace,
            shutdown_delay,
            signal,
            readiness,
            #[cfg(feature = "tls")]
            tls,
        } = self;

        let mut http = hyper::server::conn::http1::Builder::new();
        // hyper's own header timer, as a backstop behind `DeadlineIo`
        // (which enforces both deadlines): hyper counts the idle time
        // between requests as header time, so it gets the longer of the two.
        http.timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout.max(keep_alive_timeout))
            .keep_alive(true);
        let config = Arc::new(ConnConfig {
            http,
            header_read_timeout,
            keep_alive_timeout,
            #[cfg(feature = "tls")]
            tls,
        });

        let limit = Arc::new(Semaphore::new(max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        let stop = {
            let readiness = readiness.clone();
            async move {
                match signal {
                    Some(signal) => signal.await,
                    None => pending().await,
                }
                readiness.set_shutting_down();
                tracing::info!(
                    target: "webhook_guard",
                    delay_ms = duration_ms(shutdown_delay),
                    "shutdown started: readiness is now 503"
                );
                tokio::time::sleep(shutdown_delay).await;
            }
        };
        tokio::pin!(stop);

        if let Ok(addr) = listener.local_addr() {
            tracing::info!(target: "webhook_guard", %addr, "serving");
        }
        loop {
            while let Some(joined) = connections.try_join_next() {
                log_join(joined);
            }
            let permit = tokio::select! {
                biased;
                () = &mut stop => break,
                permit = Arc::clone(&limit).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // the semaphore is never closed
                },
            };
            let (tcp, peer) = tokio::select! {
                biased;
                () = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_error(e).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            if poll_fn(|cx| make_service.poll_ready(cx)).await.is_err() {
                continue; // Infallible
            }
            let Ok(service) = make_service.call(peer).await;
            let config = Arc::clone(&config);
            let stop_rx = stop_rx.clone();
            connections.spawn(async move {
                let _permit = permit;
                config.run(tcp, peer, service, stop_rx).await;
            });
        }

        drop(listener);
        let open = connections.len();
        tracing::info!(
            target: "webhook_guard",
            open,
            grace_ms = duration_ms(shutdown_grace),
            "stopped accepting; draining connections"
        );
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(shutdown_grace, async {
            while let Some(joined) = connections.join_next().await {
                log_join(joined);
            }
        })
        .await;
        match drained {
            Ok(()) => {
                tracing::info!(target: "webhook_guard", "drain complete");
                Ok(Drain::Complete)
            }
            Err(_) => {
                let dropped = connections.len();
                connections.abort_all();
                tracing::warn!(
                    target: "webhook_guard",
                    dropped,
                    "shutdown grace period over: dropping the connections still open"
                );
                Ok(Drain::TimedOut { dropped })
            }
        }
    }
}

/// How [`Server::serve`] ended, after a shutdown signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Drain {
    /// Every connection finished within the grace period.
    Complete,
    /// The grace period ran out; these connections were dropped.
    TimedOut {
        /// How many connections were still open and were dropped.
        dropped: usize,
    },
}

impl Drain {
    /// Whether every connection finished within the grace period.
    pub fn is_complete(&self) -> bool {
        matches!(self, Self::Complete)
    }
}

/// What each connection task needs.
struct ConnConfig {
    http: hyper::server::conn::http1::Builder,
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
    #[cfg(feature = "tls")]
    tls: Option<TlsConfig>,
}

impl ConnConfig {
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))] // `stop` is waited on only with TLS
    async fn run<S>(&self, tcp: TcpStream, peer: SocketAddr, service: S, mut stop: watch::Receiver<bool>)
    where
        S: Service<axum::extract::Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let handshake = tokio::time::timeout(self.header_read_timeout, tls.acceptor().accept(tcp));
            let stream = tokio::select! {
                result = handshake => match result {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(target: "webhook_guard", %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(target: "webhook_guard", %peer, "TLS handshake timed out");
                        return;
                    }
                },
                () = stopping(&mut stop) => return,
            };
            return self.serve_io(stream, peer, service, stop).await;
        }
        self.serve_io(tcp, peer, service, stop).await;
    }

    async fn serve_io<I, S>(&self, io: I, peer: SocketAddr, service: S, mut stop: watch::Receiver<bool>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: Service<axum::extract::Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let io = DeadlineIo::new(
            io,
            Arc::clone(&activity),
            self.header_read_timeout,
            self.keep_alive_timeout,
        );
        let connection = self
            .http
            .serve_connection(TokioIo::new(io), Tracked::new(service, activity));
        tokio::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = stopping(&mut stop) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(target: "webhook_guard", %peer, error = %e, "connection closed with an error");
        }
    }
}

/// Resolves once the server stops (or is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Logs a connection task that panicked (a cancelled one was dropped on
/// purpose).
fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        if e.is_panic() {
            tracing::error!(target: "webhook_guard", "a connection task panicked");
        }
    }
}

/// Errors about one connection are skipped; anything else (out of file
/// descriptors, of memory, of buffers) is logged and waited out briefly.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        tracing::debug!(target: "webhook_guard", error = %e, "accept: connection lost before it was accepted");
        return;
    }
    tracing::error!(
        target: "webhook_guard",
        error = %e,
        pause_ms = duration_ms(ACCEPT_ERROR_PAUSE),
        "accept failed; retrying after a pause"
    );
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether the server is ready for traffic: ready from the start, not ready
/// from the moment its shutdown begins. Cheap to clone; every clone sees
/// the same state.
///
/// Route it as `GET /readyz` with [`route`](Self::route): 200 `ok` while
/// ready, then 503 `application/problem+json` with reason `shutting_down`.
#[derive(Clone)]
pub struct Readiness {
    state: Arc<watch::Sender<bool>>,
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// A readiness that is ready; give it to a [`Server`] with
    /// [`Server::with_readiness`].
    pub fn new() -> Self {
        Self {
            state: Arc::new(watch::Sender::new(true)),
        }
    }

    /// Whether the server is ready (its shutdown has not started).
    pub fn is_ready(&self) -> bool {
        *self.state.borrow()
    }

    /// Resolves once shutdown has started (at once if it already has): the
    /// moment to stop the application's own background work.
    pub async fn shutting_down(&self) {
        let mut receiver = self.state.subscribe();
        let _ = receiver.wait_for(|ready| !*ready).await;
    }

    /// The readiness response: 200 `ok` while ready, 503
    /// `application/problem+json` with reason `shutting_down` after.
    pub fn response(&self) -> Response {
        if self.is_ready() {
            "ok".into_response()
        } else {
            Rejection::new(
                RejectionKind::ShuttingDown,
                "the server is shutting down; retry on another instance",
            )
            .to_response()
        }
    }

    /// A `GET` route answering [`response`](Self::response):
    /// `router.route("/readyz", readiness.route())`.
    pub fn route<S>(&self) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let readiness = self.clone();
        get(move || ready(readiness.response()))
    }

    fn set_shutting_down(&self) {
        self.state.send_replace(false);
    }
}

/// Resolves on SIGTERM (Unix) or Ctrl-C (SIGINT), for
/// [`Server::with_graceful_shutdown`]. If neither handler can be installed
/// it logs an error and never resolves.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(e) => {
                tracing::error!(target: "webhook_guard", error = %e, "cannot listen for Ctrl-C");
                pending().await
            }
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
                "SIGTERM"
            }
            Err(e) => {
                tracing::error!(target: "webhook_guard", error = %e, "cannot listen for SIGTERM");
                pending().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = pending::<&str>();
    let received = tokio::select! {
        name = ctrl_c => name,
        name = terminate => name,
    };
    tracing::info!(target: "webhook_guard", signal = received, "shutdown signal received");
}
