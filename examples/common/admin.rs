//! The demo receiver's admin listener: `WEBHOOK_ADMIN_ADDR`, the Prometheus
//! recorder and its histogram buckets, and the admin router. The receiver's
//! module docs describe the behaviour; this is the code.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use super::{var, EnvError};

/// The variable naming the admin listener's address.
pub(crate) const ADDR_VAR: &str = "WEBHOOK_ADMIN_ADDR";
/// The variable that allows a non-loopback admin address.
pub(crate) const PUBLIC_VAR: &str = "WEBHOOK_ADMIN_PUBLIC";
/// The default admin address (9464: the port commonly used by Prometheus
/// exporters of application metrics).
pub(crate) const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));
/// The content type of the Prometheus text exposition format 0.0.4.
pub(crate) const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where the admin listener should listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdminAddr {
    /// `WEBHOOK_ADMIN_ADDR=off`.
    Off,
    /// Unset: [`DEFAULT_ADDR`], given up with a warning when it is busy.
    Default(SocketAddr),
    /// Set: this address, or the receiver does not start.
    Explicit(SocketAddr),
}

/// Reads `WEBHOOK_ADMIN_ADDR` and `WEBHOOK_ADMIN_PUBLIC`. A non-loopback
/// address is an error unless `WEBHOOK_ADMIN_PUBLIC=1`.
pub(crate) fn addr() -> Result<AdminAddr, EnvError> {
    let public = match var(PUBLIC_VAR)?.as_deref().map(str::trim) {
        None | Some("" | "0") => false,
        Some("1") => true,
        Some(other) => {
            return Err(EnvError::new(
                PUBLIC_VAR,
                format!("{other:?} is neither \"1\" nor \"0\""),
            ))
        }
    };
    let addr = match var(ADDR_VAR)? {
        None => return Ok(AdminAddr::Default(DEFAULT_ADDR)),
        Some(raw) if raw.trim().eq_ignore_ascii_case("off") => return Ok(AdminAddr::Off),
        Some(raw) => raw.trim().parse::<SocketAddr>().map_err(|_| {
            EnvError::new(
                ADDR_VAR,
                format!("{raw:?} is neither \"off\" nor an address such as 127.0.0.1:9464"),
            )
        })?,
    };
    if !addr.ip().is_loopback() && !public {
        return Err(EnvError::new(
            ADDR_VAR,
            format!(
                "{addr} is not a loopback address; the admin listener serves metrics without authentication, \
                 so set {PUBLIC_VAR}=1 to serve it there on purpose (behind a firewall)"
            ),
        ));
    }
    Ok(AdminAddr::Explicit(addr))
}

/// Binds the admin listener. `Ok(None)`: off, or the default address could
/// not be bound (then one WARN line says so and the receiver goes on
/// without it). An explicit address that cannot be bound is an error.
pub(crate) async fn bind(addr: AdminAddr) -> Result<Option<TcpListener>, EnvError> {
    match addr {
        AdminAddr::Off => Ok(None),
        AdminAddr::Explicit(addr) => TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|e| EnvError::new(ADDR_VAR, format!("cannot listen on {addr}: {e}"))),
        AdminAddr::Default(addr) => match TcpListener::bind(addr).await {
            Ok(listener) => Ok(Some(listener)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                tracing::warn!(
                    "admin listener off: the default port {addr} is busy (another receiver on this machine?); \
                     serving webhooks without /metrics. Set {ADDR_VAR} to another address, or to off"
                );
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(
                    "admin listener off: cannot listen on the default {addr} ({e}); serving webhooks without \
                     /metrics. Set {ADDR_VAR} to another address, or to off"
                );
                Ok(None)
            }
        },
    }
}

/// Request and handler durations (seconds): fine below 10 ms where the
/// guard itself works, then points at the providers' delivery timeouts
/// (Slack 3 s, Shopify 5 s, GitHub 10 s) and at 2.5 s (an alert threshold
/// that leaves room under Slack's), and 30 s (the default body deadline).
pub(crate) const DURATION_BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 10.0, 30.0,
];

/// Store latencies (seconds): an in-process or SQLite store answers in
/// microseconds, Redis in about a millisecond; seconds mean trouble.
pub(crate) const STORE_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Body sizes (bytes): x4 steps from 256 B, up to the 1 MiB default limit
/// (the configured limit is added when it differs).
pub(crate) const BODY_BUCKETS: [f64; 8] = [
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    524_288.0,
    1_048_576.0,
];

/// Timestamp skew (seconds): transit delay is a second or less; a clock
/// drifting by minutes shows before the 300 s default tolerance (the
/// configured tolerance is added when it differs); past it, replays and
/// stale retries by the hour and the day.
pub(crate) const SKEW_BUCKETS: [f64; 14] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0,
];

/// Queue wait (seconds, measured in whole seconds): from at once to a
/// backlog of a day.
pub(crate) const QUEUE_WAIT_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];

/// `buckets` with `extra` added in order (when it is not already there).
fn with_point(buckets: &[f64], extra: f64) -> Vec<f64> {
    let mut points = buckets.to_vec();
    if extra.is_finite() && extra > 0.0 && !points.contains(&extra) {
        points.push(extra);
        points.sort_by(f64::total_cmp);
    }
    points
}

/// The Prometheus recorder with the buckets above set per metric (every
/// histogram is exposed as a real histogram, not a summary), the
/// configured tolerance and body limit added as bucket bounds.
pub(crate) fn builder(tolerance: Duration, max_body: usize) -> Result<PrometheusBuilder, BuildError> {
    let full = |name: &str| Matcher::Full(name.to_owned());
    let body = with_point(&BODY_BUCKETS, max_body as f64);
    let skew = with_point(&SKEW_BUCKETS, tolerance.as_secs_f64());
    PrometheusBuilder::new()
        .set_buckets_for_metric(full("webhook_guard_request_duration_seconds"), &DURATION_BUCKETS)?
        .set_buckets_for_metric(full("webhook_guard_handler_duration_seconds"), &DURATION_BUCKETS)?
        .set_buckets_for_metric(
            full("webhook_guard_queue_run_duration_seconds"),
            &DURATION_BUCKETS,
        )?
        .set_buckets_for_metric(
            full("webhook_guard_dedupe_store_duration_seconds"),
            &STORE_BUCKETS,
        )?
        .set_buckets_for_metric(full("webhook_guard_queue_store_duration_seconds"), &STORE_BUCKETS)?
        .set_buckets_for_metric(full("webhook_guard_body_size_bytes"), &body)?
        .set_buckets_for_metric(full("webhook_guard_timestamp_skew_seconds"), &skew)?
        .set_buckets_for_metric(full("webhook_guard_queue_wait_seconds"), &QUEUE_WAIT_BUCKETS)
}

/// Installs the recorder built by `builder` as the process's global
/// recorder and returns the handle that renders it.
pub(crate) fn install(builder: PrometheusBuilder) -> Result<PrometheusHandle, String> {
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    Ok(handle)
}

/// The admin routes: `GET /metrics` (the text exposition rendered from
/// `handle`) beside `health` (the same `/healthz` and `/readyz` as the
/// main listener). Any other path: 404.
pub(crate) fn router(handle: PrometheusHandle, health: Router) -> Router {
    health.route(
        "/metrics",
        get(move || {
            let body = handle.render();
            std::future::ready(([(CONTENT_TYPE, EXPOSITION_CONTENT_TYPE)], body))
        }),
    )
}

/// How often the recorder's upkeep runs and the sampled gauges are set.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);
