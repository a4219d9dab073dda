//! A local inspector for development (feature `inspect`): a page that
//! lists the last deliveries the guard saw, updating live.
//!
//! [`Inspector`] is an [`Observer`]: give it to the routes you are
//! developing ([`VerifierBuilder::observer`](crate::VerifierBuilder::observer);
//! with another observer beside it, such as the metrics one, combine them
//! with [`Fanout`](crate::observe::Fanout)), and serve
//! [`Inspector::router`] on a **separate, loopback-only** listener (an
//! admin port). Open `http://127.0.0.1:PORT/inspect` and send deliveries:
//! each one appears within a second with
//!
//! - the time, the route, the verdict (the [`Outcome`](crate::observe::Outcome)'s name), the status
//!   and the rejection's reason code,
//! - hints for a refused delivery, on a route with
//!   [`Diagnostics`](crate::hints::Diagnostics) (`code: sentence`),
//! - the timestamp skew and the label of the secret that matched,
//! - the request's headers, with every signature, token, cookie and key
//!   **masked** (see below),
//! - the body's size and SHA-256 (never the body itself, unless the
//!   development switch [`InspectorBuilder::keep_bodies`] is on),
//! - a "copy as curl" button: a `curl` command that sends the same headers
//!   again, with shell variables (`$STRIPE_SIGNATURE`) in place of the
//!   masked values and `--data-binary @body.json` for the body.
//!
//! ```
//! use axum::{routing::post, Router};
//! use webhook_guard::inspect::Inspector;
//! use webhook_guard::{Scheme, Verifier};
//!
//! // The last 200 requests, headers masked, bodies not kept.
//! let inspector = Inspector::builder().keep(200).build();
//! let stripe = Verifier::builder(Scheme::stripe())
//!     .secret("whsec_test_secret")
//!     .observer(inspector.observer())
//!     .build()?;
//! let app: Router = Router::new().route("/webhooks/stripe", post(|| async { "ok" }).layer(stripe.layer()));
//! // Served on its own loopback listener, never beside the public routes:
//! let admin: Router = inspector.router();
//! // axum::serve(TcpListener::bind("127.0.0.1:9464").await?, admin
//! //     .into_make_service_with_connect_info::<std::net::SocketAddr>())
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```
//!
//! # For development only
//!
//! The page shows what clients sent: paths, header values (masked or
//! not), sizes and hashes. Turn it on for development and demos only
//! (off by default), and serve it only on a loopback address. The router
//! enforces what it can:
//!
//! - a request whose peer address it sees (`ConnectInfo<SocketAddr>`,
//!   which [`serve`](crate::serve) and axum's
//!   `into_make_service_with_connect_info` provide) and that is not a
//!   loopback address is refused with 403;
//! - a request whose `Host` is not a loopback address or `localhost` is
//!   refused with 403 (a web page that rebinds its DNS name to 127.0.0.1
//!   cannot read the entries);
//! - the page loads nothing from elsewhere, under
//!   `Content-Security-Policy: default-src 'self'` and
//!   `X-Content-Type-Options: nosniff`; every value it shows is
//!   attacker-controlled text, put in the page as text (never as HTML).
//!
//! # Masking
//!
//! A header is masked when its name is one known to carry a signature or
//! a token (`stripe-signature`, `x-hub-signature-256`, `webhook-signature`,
//! `svix-signature`, `x-slack-signature`, `x-shopify-hmac-sha256`,
//! `authorization`, `cookie`, `x-gitlab-token`, ...), when its name contains
//! `signature`, `sig`, `token`, `secret`, `auth`, `key`, `hmac`, `cookie`,
//! `session`, `password` or `credential`, or when it was named with
//! [`InspectorBuilder::mask_header`]. A masked value keeps only its
//! structure: known scheme words and parameter names (`v1`, `sha256`,
//! `Bearer`, `t`) and a signed timestamp's digits; every other part
//! becomes `<masked, N bytes>`, so `t=1700000000,v1=5257a8...` shows as
//! `t=1700000000,v1=<masked, 64 bytes>`. Query parameters with such names
//! (Meta's `hub.verify_token`) are masked the same way.
//!
//! # Memory
//!
//! The inspector keeps at most [`keep`](InspectorBuilder::keep) entries
//! (oldest dropped first), and each entry at most
//! [`max_headers`](InspectorBuilder::max_headers) headers, each value cut
//! at [`max_value_bytes`](InspectorBuilder::max_value_bytes), the target
//! cut at 1 KiB, and (only with [`keep_bodies`](InspectorBuilder::keep_bodies))
//! the body cut at [`max_body_bytes`](InspectorBuilder::max_body_bytes).
//!
//! # Cost
//!
//! An inspecting route copies each request's method, target and headers
//! and hashes its body (on the request's task). A route without an
//! inspector pays nothing: the layer copies the request only for an
//! observer whose [`Observer::wants_request`] says so.
//!
//! # Endpoints of [`Inspector::router`]
//!
//! - `GET /inspect`: the page.
//! - `GET /inspect/entries?after=ID`: JSON, `{"keep", "bodies", "last",
//!   "entries"}`, the entries newer than `ID` (all with `after=0`), newest
//!   first; the page polls it every second with the last id it has.
//! - `GET /inspect/app.js`, `GET /inspect/app.css`: the page's script and
//!   style (same origin, as the policy requires).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::header::{self, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::observe::{Observer, RequestDetails, RequestRecord};

/// Header names whose values carry a signature or a token.
const SENSITIVE_NAMES: [&str; 14] = [
    "stripe-signature",
    "x-hub-signature",
    "x-hub-signature-256",
    "webhook-signature",
    "svix-signature",
    "x-slack-signature",
    "x-shopify-hmac-sha256",
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-gitlab-token",
    "x-api-key",
    "x-webhook-secret",
];

/// Parts of a name that mark a header (or a query parameter) as sensitive.
const SENSITIVE_PARTS: [&str; 11] = [
    "signature",
    "sig",
    "token",
    "secret",
    "auth",
    "key",
    "hmac",
    "cookie",
    "session",
    "password",
    "credential",
];

/// Words a masked value may keep: authentication schemes and signature
/// versions.
const SCHEME_WORDS: [&str; 14] = [
    "bearer",
    "basic",
    "digest",
    "token",
    "hmac",
    "v0",
    "v1",
    "v1a",
    "v2",
    "sha1",
    "sha256",
    "sha512",
    "hmac-sha256",
    "hmac-sha1",
];

/// Parameter names a masked value may keep (`name=<masked>`).
const PARAM_NAMES: [&str; 12] = [
    "t",
    "ts",
    "timestamp",
    "v0",
    "v1",
    "v1a",
    "v2",
    "sha1",
    "sha256",
    "sha512",
    "alg",
    "keyid",
];

/// Parameters whose value is kept when it is all digits (a signed time).
const TIME_PARAMS: [&str; 3] = ["t", "ts", "timestamp"];

/// Headers a `curl` command sets itself.
const CURL_SKIPS: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "accept-encoding",
];

const MAX_TARGET_BYTES: usize = 1024;
const MAX_NAME_BYTES: usize = 64;
const MAX_HINTS: usize = 8;
const MAX_SHORT_BYTES: usize = 256;
/// Longest hint kept (its code and sentence), in bytes.
const MAX_HINT_BYTES: usize = 512;

const PAGE: &str = include_str!("inspect/page.html");
const SCRIPT: &str = include_str!("inspect/app.js");
const STYLE: &str = include_str!("inspect/app.css");

const CSP: &str = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// The last deliveries the guard saw, for a development page. A cheap,
/// clonable handle: every clone shares the same entries. See [the module
/// docs](self).
#[derive(Clone)]
pub struct Inspector {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    entries: Mutex<Ring>,
}

#[derive(Clone)]
struct Config {
    keep: usize,
    keep_bodies: bool,
    max_headers: usize,
    max_value_bytes: usize,
    max_body_bytes: usize,
    masked: Vec<String>,
}

struct Ring {
    last: u64,
    entries: VecDeque<Arc<Entry>>,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.shared.config;
        f.debug_struct("Inspector")
            .field("keep", &c.keep)
            .field("keep_bodies", &c.keep_bodies)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

/// Builder for [`Inspector`].
#[derive(Debug, Clone)]
pub struct InspectorBuilder {
    keep: usize,
    keep_bodies: bool,
    max_headers: usize,
    max_value_bytes: usize,
    max_body_bytes: usize,
    masked: Vec<String>,
}

impl Default for InspectorBuilder {
    fn default() -> Self {
        Self {
            keep: 200,
            keep_bodies: false,
            max_headers: 32,
            max_value_bytes: 256,
            max_body_bytes: 64 * 1024,
            masked: Vec::new(),
        }
    }
}

impl InspectorBuilder {
    /// How many entries to keep, the oldest dropped first. Default 200;
    /// at least 1.
    #[must_use]
    pub fn keep(mut self, entries: usize) -> Self {
        self.keep = entries.max(1);
        self
    }

    /// **Development switch**: keep each body (up to
    /// [`max_body_bytes`](Self::max_body_bytes)) and show it on the page.
    /// Default `false`: only the body's size and SHA-256 are kept. Bodies
    /// hold your providers' data (customers, payments): never turn this on
    /// where real deliveries arrive.
    #[must_use]
    pub fn keep_bodies(mut self, keep: bool) -> Self {
        self.keep_bodies = keep;
        self
    }

    /// How many headers to keep per entry (the rest are counted). Default 32.
    #[must_use]
    pub fn max_headers(mut self, headers: usize) -> Self {
        self.max_headers = headers;
        self
    }

    /// Where to cut each kept header value. Default 256 bytes.
    #[must_use]
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// Where to cut a kept body (with [`keep_bodies`](Self::keep_bodies)).
    /// Default 64 KiB.
    #[must_use]
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Also masks the header (or query parameter) `name`, such as a custom
    /// scheme's signature header whose name the default rules miss.
    #[must_use]
    pub fn mask_header(mut self, name: impl Into<String>) -> Self {
        self.masked.push(name.into().to_ascii_lowercase());
        self
    }

    /// The inspector.
    pub fn build(self) -> Inspector {
        Inspector {
            shared: Arc::new(Shared {
                config: Config {
                    keep: self.keep,
                    keep_bodies: self.keep_bodies,
                    max_headers: self.max_headers,
                    max_value_bytes: self.max_value_bytes,
                    max_body_bytes: self.max_body_bytes,
                    masked: self.masked,
                },
                entries: Mutex::new(Ring {
                    last: 0,
                    entries: VecDeque::new(),
                }),
            }),
        }
    }
}

impl Default for Inspector {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl Inspector {
    /// Starts configuring an inspector: 200 entries, bodies not kept.
    pub fn builder() -> InspectorBuilder {
        InspectorBuilder::default()
    }

    /// This inspector as a route's observer (another handle on the same
    /// entries).
    pub fn observer(&self) -> Arc<dyn Observer> {
        Arc::new(self.clone())
    }

    /// How many entries are kept now.
    pub fn len(&self) -> usize {
        self.ring().entries.len()
    }

    /// Whether no entry is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kept entries newer than `after` (an [`Entry::id`]; 0 for all),
    /// newest first.
    pub fn entries_after(&self, after: u64) -> Vec<Arc<Entry>> {
        let ring = self.ring();
        ring.entries
            .iter()
            .rev()
            .take_while(|e| e.id > after)
            .cloned()
            .collect()
    }

    /// The id of the newest entry ever recorded (0 before the first).
    pub fn last_id(&self) -> u64 {
        self.ring().last
    }

    /// The JSON that `GET /inspect/entries?after=ID` answers.
    pub fn entries_json(&self, after: u64) -> serde_json::Value {
        let (last, entries) = {
            let ring = self.ring();
            let entries: Vec<Arc<Entry>> = ring
                .entries
                .iter()
                .rev()
                .take_while(|e| e.id > after)
                .cloned()
                .collect();
            (ring.last, entries)
        };
        let list: Vec<&Entry> = entries.iter().map(|e| &**e).collect();
        serde_json::json!({
            "keep": self.shared.config.keep,
            "bodies": self.shared.config.keep_bodies,
            "last": last,
            "entries": list,
        })
    }

    /// The inspector's routes: `GET /inspect` (the page),
    /// `GET /inspect/entries` (JSON), `GET /inspect/app.js` and
    /// `GET /inspect/app.css`. Serve them on a loopback-only listener;
    /// see [the module docs](self) for what the router refuses.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/inspect", get(page))
            .route("/inspect/entries", get(entries))
            .route("/inspect/app.js", get(script))
            .route("/inspect/app.css", get(style))
            .with_state(self.clone())
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.shared.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, entry: Entry) {
        let mut ring = self.ring();
        ring.last = ring.last.saturating_add(1);
        let entry = Entry {
            id: ring.last,
            ..entry
        };
        while ring.entries.len() >= self.shared.config.keep {
            ring.entries.pop_front();
        }
        ring.entries.push_back(Arc::new(entry));
    }
}

impl Observer for Inspector {
    fn wants_request(&self) -> bool {
        true
    }

    fn on_request(&self, record: &RequestRecord<'_>) {
        let entry = Entry::from_record(record, &self.shared.config);
        self.push(entry);
    }
}

/// One header as kept: its name, and its value cut and, when the name is
/// sensitive, masked.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct KeptHeader {
    /// The header's name (lowercase).
    pub name: String,
    /// Its value as shown: masked, or cut at the configured length.
    pub value: String,
    /// Whether the value was masked.
    pub masked: bool,
}

/// One request the inspector kept. Everything here was masked and cut
/// when it was recorded.
#[derive(Clone, Serialize)]
pub struct Entry {
    id: u64,
    time_ms: u64,
    route: String,
    provider: String,
    verdict: &'static str,
    status: Option<u16>,
    reason: Option<&'static str>,
    hints: Vec<String>,
    skew_secs: Option<i64>,
    secret_index: Option<usize>,
    secret_label: Option<String>,
    event_type: Option<String>,
    layer_ms: f64,
    method: Option<String>,
    target: Option<String>,
    headers: Vec<KeptHeader>,
    headers_dropped: usize,
    body_bytes: Option<usize>,
    body_sha256: Option<String>,
    body: Option<String>,
    body_truncated: bool,
    curl: Option<String>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("route", &self.route)
            .field("verdict", &self.verdict)
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("body_bytes", &self.body_bytes)
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// Its id: 1 for the inspector's first request, then one more for each.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// When it was answered, in milliseconds since the Unix epoch.
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// The route's name.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The provider's name.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The verdict: the [`Outcome`](crate::observe::Outcome)'s name
    /// (`processed`, `rejected`, ...).
    pub fn verdict(&self) -> &str {
        self.verdict
    }

    /// The status answered (`None` when cancelled).
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The rejection's reason code, for a rejected request.
    pub fn reason(&self) -> Option<&str> {
        self.reason
    }

    /// Diagnostic hints about a refused request.
    pub fn hints(&self) -> &[String] {
        &self.hints
    }

    /// The timestamp skew in seconds (clock minus signed time).
    pub fn skew_secs(&self) -> Option<i64> {
        self.skew_secs
    }

    /// The label of the secret that matched (`None` when none matched or
    /// it has no label).
    pub fn secret_label(&self) -> Option<&str> {
        self.secret_label.as_deref()
    }

    /// The kept headers, masked.
    pub fn headers(&self) -> &[KeptHeader] {
        &self.headers
    }

    /// The body's size, when it was read.
    pub fn body_bytes(&self) -> Option<usize> {
        self.body_bytes
    }

    /// The body's SHA-256 in lowercase hex, when it was read.
    pub fn body_sha256(&self) -> Option<&str> {
        self.body_sha256.as_deref()
    }

    /// The body (lossy UTF-8, cut), only with
    /// [`InspectorBuilder::keep_bodies`].
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }

    /// The `curl` command that sends this request again, masked values as
    /// shell variables and the body from `body.json`.
    pub fn curl(&self) -> Option<&str> {
        self.curl.as_deref()
    }

    fn from_record(record: &RequestRecord<'_>, config: &Config) -> Self {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut entry = Entry {
            id: 0,
            time_ms,
            route: record.route.to_string(),
            provider: record.provider.name().to_owned(),
            verdict: record.outcome.name(),
            status: record.status.map(|s| s.as_u16()),
            reason: record.outcome.rejection().map(|k| k.reason()),
            hints: record
                .hints
                .iter()
                .take(MAX_HINTS)
                .map(|h| cut(&format!("{}: {h}", h.code()), MAX_HINT_BYTES))
                .collect(),
            skew_secs: record.skew.map(|s| s.secs()),
            secret_index: record.secret.map(|s| s.index),
            secret_label: record.secret.and_then(|s| s.label).map(|l| l.to_string()),
            event_type: record.event_type.map(|e| cut(e, MAX_SHORT_BYTES)),
            layer_ms: record.layer_time.as_secs_f64() * 1000.0,
            method: None,
            target: None,
            headers: Vec::new(),
            headers_dropped: 0,
            body_bytes: record.body_bytes,
            body_sha256: None,
            body: None,
            body_truncated: false,
            curl: None,
        };
        if let Some(request) = record.request {
            entry.fill(&request, config);
        }
        entry
    }

    fn fill(&mut self, request: &RequestDetails<'_>, config: &Config) {
        let (target, curl_target) = mask_target(request, config);
        self.method = Some(request.method.as_str().to_owned());
        self.target = Some(target);
        let total = request.headers.len();
        self.headers = request
            .headers
            .iter()
            .take(config.max_headers)
            .map(|(name, value)| {
                let name = cut(name.as_str(), MAX_NAME_BYTES);
                if is_sensitive(&name, config) {
                    KeptHeader {
                        value: cut(&mask_value(value.as_bytes()), config.max_value_bytes),
                        name,
                        masked: true,
                    }
                } else {
                    KeptHeader {
                        value: cut(&String::from_utf8_lossy(value.as_bytes()), config.max_value_bytes),
                        name,
                        masked: false,
                    }
                }
            })
            .collect();
        self.headers_dropped = total.saturating_sub(self.headers.len());
        if let Some(body) = request.body {
            self.body_bytes = Some(body.len());
            self.body_sha256 = Some(hex::encode(Sha256::digest(body)));
            if config.keep_bodies {
                let kept = &body[..body.len().min(config.max_body_bytes)];
                self.body = Some(String::from_utf8_lossy(kept).into_owned());
                self.body_truncated = kept.len() < body.len();
            }
        }
        self.curl = Some(self.build_curl(request.headers, &curl_target));
    }

    fn build_curl(&self, headers: &HeaderMap, target: &str) -> String {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty())
            .map_or_else(|| "localhost".to_owned(), |h| cut(h, MAX_SHORT_BYTES));
        let method = self.method.as_deref().unwrap_or("POST");
        let mut lines = vec![format!(
            "curl -sS -X {} {}",
            shell_quote(method),
            shell_quote(&format!("http://{host}{target}"))
        )];
        for h in &self.headers {
            if CURL_SKIPS.contains(&h.name.as_str()) {
                continue;
            }
            if h.masked {
                lines.push(format!(
                    "-H {}\"${}\"",
                    shell_quote(&format!("{}: ", h.name)),
                    variable(&h.name)
                ));
            } else {
                lines.push(format!("-H {}", shell_quote(&format!("{}: {}", h.name, h.value))));
            }
        }
        if self.body_bytes.unwrap_or(0) > 0 {
            lines.push("--data-binary @body.json".to_owned());
        }
        lines.join(" \\\n  ")
    }
}

/// Whether `name` (lowercase) is a header or parameter to mask.
fn is_sensitive(name: &str, config: &Config) -> bool {
    let name = name.to_ascii_lowercase();
    SENSITIVE_NAMES.contains(&name.as_str())
        || SENSITIVE_PARTS.iter().any(|part| name.contains(part))
        || config.masked.contains(&name)
}

/// `<masked, N bytes>`.
fn masked(bytes: usize) -> String {
    format!("<masked, {bytes} bytes>")
}

/// A sensitive value with only its structure left: scheme words,
/// parameter names and a signed time's digits.
fn mask_value(value: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(value) else {
        return masked(value.len());
    };
    let mut out = String::new();
    let mut piece = String::new();
    let flush = |piece: &mut String, out: &mut String| {
        if !piece.is_empty() {
            out.push_str(&mask_piece(piece));
            piece.clear();
        }
    };
    for c in text.chars() {
        if c == ',' || c == ' ' || c == ';' {
            flush(&mut piece, &mut out);
            out.push(c);
        } else {
            piece.push(c);
        }
    }
    flush(&mut piece, &mut out);
    out
}

fn mask_piece(piece: &str) -> String {
    let lower = piece.to_ascii_lowercase();
    if SCHEME_WORDS.contains(&lower.as_str()) {
        return piece.to_owned();
    }
    if let Some((name, value)) = piece.split_once('=') {
        let lname = name.to_ascii_lowercase();
        if PARAM_NAMES.contains(&lname.as_str()) && !value.is_empty() && !value.starts_with('=') {
            let is_time = TIME_PARAMS.contains(&lname.as_str())
                && value.len() <= 20
                && value.bytes().all(|b| b.is_ascii_digit());
            return if is_time {
                piece.to_owned()
            } else {
                format!("{name}={}", masked(value.len()))
            };
        }
    }
    masked(piece.len())
}

/// The request's target with sensitive query values masked, for the page
/// and for `curl` (shell variables there).
fn mask_target(request: &RequestDetails<'_>, config: &Config) -> (String, String) {
    let path = request.uri.path();
    let Some(query) = request.uri.query() else {
        let path = cut(path, MAX_TARGET_BYTES);
        return (path.clone(), path);
    };
    let mut shown = format!("{path}?");
    let mut curl = shown.clone();
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            shown.push('&');
            curl.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) if is_sensitive(name, config) => {
                shown.push_str(&format!("{name}={}", masked(value.len())));
                curl.push_str(&format!("{name}=${{{}}}", variable(name)));
            }
            _ => {
                shown.push_str(pair);
                curl.push_str(pair);
            }
        }
    }
    (cut(&shown, MAX_TARGET_BYTES), cut(&curl, MAX_TARGET_BYTES))
}

/// A shell variable's name for a masked header or parameter:
/// `stripe-signature` -> `STRIPE_SIGNATURE`.
fn variable(name: &str) -> String {
    let mut var: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if var.is_empty() || var.starts_with(|c: char| c.is_ascii_digit()) {
        var.insert(0, '_');
    }
    var
}

/// `s` in single quotes for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` cut at `max` bytes on a character boundary, with a note of its
/// whole size when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// Refuses a request from a peer that is not on loopback, or addressed to
/// a host that is not (a rebound DNS name).
fn refuse(req: &Request) -> Option<Response> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if peer.is_some_and(|ip| !is_loopback(ip)) {
        return Some(forbidden("the inspector answers loopback clients only"));
    }
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(host) = host {
        if !is_loopback_host(host) {
            return Some(forbidden(
                "the inspector answers requests to a loopback host only",
            ));
        }
    }
    None
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inner, _)) => inner,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(is_loopback)
}

fn forbidden(text: &'static str) -> Response {
    (StatusCode::FORBIDDEN, text).into_response()
}

/// `body` with `content_type` and the page's security headers.
fn secured(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn page(req: Request) -> Response {
    refuse(&req).unwrap_or_else(|| secured("text/html; charset=utf-8", PAGE))
}

async fn script(req: Request) -> Response {
    refuse(&req).unwrap_or_else(|| secured("text/javascript; charset=utf-8", SCRIPT))
}

async fn style(req: Request) -> Response {
    refuse(&req).unwrap_or_else(|| secured("text/css; charset=utf-8", STYLE))
}

async fn entries(State(inspector): State<Inspector>, req: Request) -> Response {
    if let Some(refused) = refuse(&req) {
        return refused;
    }
    let after = req
        .uri()
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "after")
                .and_then(|(_, v)| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    match serde_json::to_vec(&inspector.entries_json(after)) {
        Ok(json) => secured("application/json", json),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_structure_only() {
        assert_eq!(
            mask_value(b"t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"),
            "t=1700000000,v1=<masked, 64 bytes>"
        );
        assert_eq!(mask_value(b"sha256=abcd"), "sha256=<masked, 4 bytes>");
        assert_eq!(
            mask_value(b"v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="),
            "v1,<masked, 44 bytes>"
        );
        assert_eq!(mask_value(b"Bearer abc"), "Bearer <masked, 3 bytes>");
        assert_eq!(mask_value(b"abc"), "<masked, 3 bytes>");
        assert_eq!(mask_value(b"dGVzdA=="), "<masked, 8 bytes>");
        assert_eq!(mask_value(b"t=12ab"), "t=<masked, 4 bytes>");
        assert_eq!(mask_value(b"\xff\xfe"), "<masked, 2 bytes>");
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:9464",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:9464",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "example.com",
            "evil.localhost.example:80",
            "10.0.0.1:80",
            "[2001:db8::1]:80",
            "[::1",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn shell_quoting_and_variables() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(variable("stripe-signature"), "STRIPE_SIGNATURE");
        assert_eq!(variable("hub.verify_token"), "HUB_VERIFY_TOKEN");
        assert_eq!(variable("1x"), "_1X");
    }

    #[test]
    fn cut_keeps_char_boundaries() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("aé", 2), "a… (3 bytes)");
    }
}
