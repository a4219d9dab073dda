//! Diagnostic hints: why a delivery that should verify did not.
//!
//! Most failed signatures in production are not attacks but set-up
//! mistakes: a proxy that rewrote the body's line endings, a secret pasted
//! with its quotes, the test secret on the live route. The
//! [`Rejection`](crate::Rejection) says only `signature_mismatch`, as it
//! must. With [`Diagnostics`] turned on for a route
//! ([`VerifierBuilder::diagnostics`](crate::VerifierBuilder::diagnostics)),
//! the route looks, **after** a request has already failed, for the
//! mistakes users actually make, and reports what it found as [`Hint`]s:
//!
//! - to the log: one `WARN` event per hint on target `webhook_guard`
//!   (`"webhook verification hint"`, fields `route`, `reason`, `hint`);
//! - to the route's [observer](crate::observe), in
//!   [`RequestRecord::hints`](crate::observe::RequestRecord::hints): the
//!   inspector (feature `inspect`) shows them, and the `MetricsObserver`
//!   (feature `metrics`) counts them in
//!   `webhook_guard_verification_hints_total{route,hint}`;
//! - to [`Rejection::hints`](crate::Rejection::hints), for code that calls
//!   [`Verifier::verify`](crate::Verifier::verify) itself;
//! - to the HTTP response **never**, unless the development-only switch
//!   [`Diagnostics::in_response`] is on.
//!
//! ```
//! use webhook_guard::hints::Diagnostics;
//! use webhook_guard::{Scheme, Verifier};
//!
//! // One handle for the routes that should know each other's secrets.
//! let diagnostics = Diagnostics::new();
//! let live = Verifier::builder(Scheme::stripe())
//!     .name("stripe-live")
//!     .secret("whsec_live_secret")
//!     .diagnostics(diagnostics.clone())
//!     .build()?;
//! let test = Verifier::builder(Scheme::stripe())
//!     .name("stripe-test")
//!     .secret("whsec_test_secret")
//!     .diagnostics(diagnostics.clone())
//!     .build()?;
//! // A delivery signed with the test secret that reaches the live route is
//! // refused as always, and logged with the hint `secret_of_other_route`
//! // naming `stripe-test`.
//! # let _ = (live, test);
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```
//!
//! # The hints
//!
//! | code | the mistake | how it is found |
//! |---|---|---|
//! | `body_line_endings_changed` | something between the sender and the route turned the body's `\n` into `\r\n` or the reverse | the signature matches the body with its line endings turned back |
//! | `trailing_newline` | a trailing newline was added to the body, or removed | the signature matches the body with it removed, or added |
//! | `bom_stripped` | the sender's body began with a UTF-8 byte order mark that was stripped on the way | the signature matches the body with `EF BB BF` put back in front |
//! | `bom_added` | a byte order mark was put in front of the body on the way | the signature matches the body without it |
//! | `secret_quoted` | the configured secret is wrapped in quotes (`"whsec_…"` copied from a `.env` file) | the signature matches under the secret without its quotes |
//! | `secret_trailing_newline` | the sender signs with the secret followed by a newline (read from a file) | the signature matches under the secret with `\n` (or `\r\n`) after it |
//! | `secret_of_other_route` | the secret of another route or environment signed it (the test secret on the live route) | the signature matches under a key of another route built with the same [`Diagnostics`] |
//! | `standard_secret_encoding` | a Standard Webhooks `whsec_` secret was used as raw text by the sender instead of base64-decoded, or decoded where the scheme takes the text | the signature matches under the other reading of the secret |
//! | `timestamp_in_milliseconds` | the timestamp is in milliseconds | a 13-digit value in the scheme's headers, read as seconds, parses and is inside the tolerance |
//! | `clock_skew` | the sender's clock (or this server's) is off by more than the tolerance, by at most a day | the timestamp is out of tolerance by at most 24 h; the hint gives the size and the direction |
//!
//! # Why no hint is an oracle
//!
//! An oracle would let someone without the secret learn something about
//! it, or about what would verify, by sending requests and reading the
//! answers. None of the hints does, for these reasons:
//!
//! - **The signature hints need a valid signature.** Every hint but the
//!   two timestamp hints is given only when a signature in the request
//!   verifies over a transformed input (the body with other line endings,
//!   a key from the secret without its quotes, another route's key). Only
//!   a holder of one of the secrets can make such a signature. Someone
//!   without a secret gets none of these hints, whatever they send: what
//!   they would "learn" is that their random signature did not match,
//!   which the 401 already says. The transformations are fixed and few (a
//!   dozen MACs at most), so trying them is not a search: no hint ever
//!   says how close a signature was.
//! - **What a signature hint reveals is about the mistake, not about the
//!   secret.** `body_line_endings_changed`, `trailing_newline`,
//!   `bom_stripped` and `bom_added` say what happened to bytes the sender
//!   chose. `secret_quoted` and `secret_trailing_newline` say that the
//!   configured text and the sender's differ by quotes or a newline around
//!   the same secret, which the sender, holding that secret, already has.
//!   `standard_secret_encoding` says which of two readings of the same
//!   secret the sender used. `secret_of_other_route` names the other route
//!   (its configured name and the label of the secret, never the secret):
//!   the one thing it tells is that the holder of that route's secret sent
//!   a delivery to this route, and it tells it to the log, the metrics and
//!   the inspector only.
//! - **The timestamp hints reveal nothing secret.** `timestamp_in_milliseconds`
//!   and `clock_skew` are computed from the request's timestamp header and
//!   this server's clock only: the layer checks the timestamp before it
//!   reads the body, so these two hints are given without a signature check
//!   and do not claim the sender is genuine. The rejection's detail already
//!   tells anyone how far off the timestamp was, and the `Date` header of
//!   any response tells the clock. `clock_skew` is given only up to a day
//!   off; beyond that the delivery is not a clock problem but an old or
//!   replayed one.
//! - **They stay on this side.** Hints go to the log, the metrics and the
//!   inspector, which are the operator's. They are put in the response
//!   only with [`Diagnostics::in_response`], a development switch: with it
//!   a holder of another route's secret learns that route's name, and
//!   anyone learns which of the mistakes above their own request made.
//!
//! Left out on purpose, because they would reveal something about a
//! secret to someone who does not hold it, or turn the route into a
//! search: "the secret differs by one character" or "has a typo" (needs a
//! search around the secret and tells the sender how close they are), "the
//! secret is shorter or longer" (its length), "the signature's first bytes
//! match" (a prefix of the MAC, the classic timing oracle made explicit),
//! "the signature was made with a rotated-out secret" (would need old
//! secrets kept), and "the signature matches the body parsed and
//! re-serialized as JSON" (unbounded variants, and nothing a user can fix
//! on the receiving side).
//!
//! # Cost
//!
//! Nothing at all for a request that verifies, and nothing for a failed
//! request on a route without [`Diagnostics`]. On a route with them, a
//! request refused as `signature_mismatch`, `malformed_timestamp` or
//! `timestamp_out_of_tolerance` first takes a token from the handle's
//! bucket ([`Diagnostics::per_second`], default
//! [`DEFAULT_HINTS_PER_SECOND`]: 5 a second, with a burst of as many,
//! shared by every route on the handle). Without a token nothing is
//! computed ([`Diagnostics::skipped`] counts those). With one, the
//! signature hints cost at most [`MAX_TRIES`] MACs over a body of at most
//! [`MAX_BODY_BYTES`] (256 KiB; a larger body gets no signature hint), and
//! the timestamp hints a re-parse of the headers. Keys of other routes are
//! kept only while those routes are alive.
//!
//! A flood of bad requests uses up the tokens, so a real mistake may go
//! without a hint for a while: hints are samples, like the
//! [rejection logs](crate::log_limit); counts belong to the metrics.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use crate::scheme::{Algorithm, Key, LabeledKey, Parsed};
use crate::{Provider, Scheme, Secret};

/// Default for how many failed requests a [`Diagnostics`] handle examines
/// per second (and at once): 5.
pub const DEFAULT_HINTS_PER_SECOND: u32 = 5;

/// The largest body the signature hints look at: 256 KiB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The most MACs the signature hints compute for one failed request.
pub const MAX_TRIES: usize = 48;

/// The largest skew, either way, reported as [`Hint::ClockSkew`]: a day.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(24 * 60 * 60);

/// Most hints kept for one request.
const MAX_HINTS: usize = 4;

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A likely cause of a failed verification. See [the module docs](self)
/// for how each is found and why none reveals a secret. Its `Display` is
/// a sentence telling what to fix; [`Hint::code`] is a stable name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Hint {
    /// The signature matches the body with its line endings changed back:
    /// something on the way rewrote them. `signed_crlf` is whether the
    /// sender's body had `\r\n` (and the route got `\n`).
    #[non_exhaustive]
    LineEndingsChanged {
        /// Whether the signed body had `\r\n` line endings.
        signed_crlf: bool,
    },
    /// The signature matches the body with a trailing newline removed
    /// (`added`: something added one) or added (something removed one).
    #[non_exhaustive]
    TrailingNewline {
        /// Whether a newline was added on the way (else one was removed).
        added: bool,
    },
    /// The signature matches the body with a UTF-8 byte order mark in
    /// front: the sender's body had one, and it was stripped on the way.
    BomStripped,
    /// The signature matches the body without its leading UTF-8 byte
    /// order mark: one was added on the way.
    BomAdded,
    /// The signature matches under the configured secret at `index`
    /// without the quotes around it.
    #[non_exhaustive]
    SecretQuoted {
        /// The configured secret's position, 0-based.
        index: usize,
    },
    /// The signature matches under the configured secret at `index`
    /// followed by a newline: the sender signs with the newline.
    #[non_exhaustive]
    SecretTrailingNewline {
        /// The configured secret's position, 0-based.
        index: usize,
    },
    /// The signature matches under a secret of another route (built with
    /// the same [`Diagnostics`]): the other environment's secret, or the
    /// delivery was sent to the wrong URL.
    #[non_exhaustive]
    SecretOfOtherRoute {
        /// The other route's name.
        route: Arc<str>,
        /// The label of its secret that matched, if it has one.
        label: Option<Arc<str>>,
    },
    /// The signature matches under the other reading of a Standard
    /// Webhooks `whsec_` secret: `sender_decoded` is whether the sender
    /// used the base64-decoded bytes (where the route's scheme takes the
    /// text), else it used the text (where the route decodes it).
    #[non_exhaustive]
    StandardSecretEncoding {
        /// Whether the sender base64-decoded the secret.
        sender_decoded: bool,
    },
    /// The timestamp is in milliseconds; read as seconds it is inside the
    /// tolerance.
    TimestampInMilliseconds,
    /// The signed timestamp is further from the clock than the tolerance,
    /// by at most [`MAX_CLOCK_SKEW`].
    #[non_exhaustive]
    ClockSkew {
        /// The clock minus the timestamp, in seconds: positive when the
        /// timestamp is behind the clock.
        secs: i64,
        /// The route's tolerance.
        tolerance: Duration,
    },
}

impl Hint {
    /// A stable snake_case name: `body_line_endings_changed`,
    /// `trailing_newline`, `bom_stripped`, `bom_added`, `secret_quoted`,
    /// `secret_trailing_newline`, `secret_of_other_route`,
    /// `standard_secret_encoding`, `timestamp_in_milliseconds` or
    /// `clock_skew`. New ones may be added in minor releases.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::LineEndingsChanged { .. } => "body_line_endings_changed",
            Self::TrailingNewline { .. } => "trailing_newline",
            Self::BomStripped => "bom_stripped",
            Self::BomAdded => "bom_added",
            Self::SecretQuoted { .. } => "secret_quoted",
            Self::SecretTrailingNewline { .. } => "secret_trailing_newline",
            Self::SecretOfOtherRoute { .. } => "secret_of_other_route",
            Self::StandardSecretEncoding { .. } => "standard_secret_encoding",
            Self::TimestampInMilliseconds => "timestamp_in_milliseconds",
            Self::ClockSkew { .. } => "clock_skew",
        }
    }
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineEndingsChanged { signed_crlf: true } => f.write_str(
                "the signature matches the body with CRLF line endings: something between the sender \
                 and this route turned them into LF; pass the body through unchanged",
            ),
            Self::LineEndingsChanged { signed_crlf: false } => f.write_str(
                "the signature matches the body with LF line endings: something between the sender \
                 and this route turned them into CRLF; pass the body through unchanged",
            ),
            Self::TrailingNewline { added: true } => f.write_str(
                "the signature matches the body without its trailing newline: something on the way \
                 added one; pass the body through unchanged",
            ),
            Self::TrailingNewline { added: false } => f.write_str(
                "the signature matches the body with a trailing newline: something on the way \
                 removed it; pass the body through unchanged",
            ),
            Self::BomStripped => f.write_str(
                "the signature matches the body with a UTF-8 byte order mark in front: something on \
                 the way stripped it; pass the body through unchanged",
            ),
            Self::BomAdded => f.write_str(
                "the signature matches the body without its leading UTF-8 byte order mark: something \
                 on the way added it; pass the body through unchanged",
            ),
            Self::SecretQuoted { index } => write!(
                f,
                "the signature matches secret {index} without the quotes around it: remove the \
                 quotes from the configured value"
            ),
            Self::SecretTrailingNewline { index } => write!(
                f,
                "the signature matches secret {index} followed by a newline: the sender signs with \
                 a newline after the secret (read from a file?); remove it on the sender's side"
            ),
            Self::SecretOfOtherRoute { route, label } => {
                write!(f, "the signature matches a secret of the route {route:?}")?;
                if let Some(label) = label {
                    write!(f, " (labeled {label:?})")?;
                }
                f.write_str(
                    ": the delivery was sent to the wrong URL, or this route is configured with the \
                     other environment's secret (test and live?)",
                )
            }
            Self::StandardSecretEncoding {
                sender_decoded: false,
            } => f.write_str(
                "the signature matches the whsec_ secret used as text: the sender must \
                 base64-decode the part after whsec_ and use those bytes as the key",
            ),
            Self::StandardSecretEncoding { sender_decoded: true } => f.write_str(
                "the signature matches the base64-decoded whsec_ secret, but this route's scheme \
                 uses the secret's text as the key: use Scheme::standard_webhooks, or have the \
                 sender sign with the text",
            ),
            Self::TimestampInMilliseconds => f.write_str(
                "the timestamp is in milliseconds; it must be in whole seconds since the Unix epoch",
            ),
            Self::ClockSkew { secs, tolerance } => {
                let direction = if *secs >= 0 { "behind" } else { "ahead of" };
                write!(
                    f,
                    "the sender's timestamp is {} s {direction} this server's clock, more than the \
                     tolerance of {} s: check that both clocks are synchronized (NTP)",
                    secs.unsigned_abs(),
                    tolerance.as_secs()
                )
            }
        }
    }
}

/// Turns diagnostic hints on for the routes given it
/// ([`VerifierBuilder::diagnostics`](crate::VerifierBuilder::diagnostics)).
/// Cheap to clone; clones share everything: the per-second cap, the
/// [`in_response`](Self::in_response) switch, the counters, and the
/// routes' keys, so that a route can tell that another route's secret
/// signed a request. Give the same handle to every route of an
/// application (test and live routes included). See the [module
/// docs](self).
#[derive(Clone)]
pub struct Diagnostics {
    shared: Arc<Shared>,
}

struct Shared {
    in_response: AtomicBool,
    bucket: Mutex<Bucket>,
    examined: AtomicU64,
    skipped: AtomicU64,
    routes: Mutex<Vec<Weak<RouteKeys>>>,
}

/// A token bucket refilled from the route's clock in milliseconds.
struct Bucket {
    per_second: u64,
    tokens: crate::log_limit::TokenBucket,
}

/// A route's keys, as the other routes on the handle see them.
pub(crate) struct RouteKeys {
    route: Arc<str>,
    keys: Vec<LabeledKey>,
}

impl Default for Diagnostics {
    fn default() -> Self {
        Self::new()
    }
}

impl Diagnostics {
    /// Hints on, at most [`DEFAULT_HINTS_PER_SECOND`] failed requests
    /// examined per second, never in the response.
    pub fn new() -> Self {
        let per_second = u64::from(DEFAULT_HINTS_PER_SECOND);
        Self {
            shared: Arc::new(Shared {
                in_response: AtomicBool::new(false),
                bucket: Mutex::new(Bucket {
                    per_second,
                    tokens: crate::log_limit::TokenBucket::full(per_second),
                }),
                examined: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                routes: Mutex::new(Vec::new()),
            }),
        }
    }

    /// How many failed requests are examined per second, and at once,
    /// across every route on this handle (and its clones). Default:
    /// [`DEFAULT_HINTS_PER_SECOND`]. The rest get no hint.
    #[must_use]
    pub fn per_second(self, per_second: NonZeroU32) -> Self {
        {
            let mut b = self.shared.bucket.lock().unwrap_or_else(PoisonError::into_inner);
            b.per_second = u64::from(per_second.get());
            b.tokens = crate::log_limit::TokenBucket::full(b.per_second);
        }
        self
    }

    /// **Development only.** Also puts the hints in the problem+json
    /// response, as `"hints": [{"code": …, "detail": …}]`, so that the
    /// sender's delivery log shows them. Never turn it on in production:
    /// it tells whoever holds another route's secret that route's name,
    /// and anyone which of the mistakes of the [module docs](self) their
    /// own request made. Default: off. Applies to every clone.
    #[must_use]
    pub fn in_response(self, on: bool) -> Self {
        self.shared.in_response.store(on, Ordering::Relaxed);
        self
    }

    /// Whether hints go in the response ([`Self::in_response`]).
    pub fn hints_in_response(&self) -> bool {
        self.shared.in_response.load(Ordering::Relaxed)
    }

    /// How many failed requests were examined for hints (whether any was
    /// found).
    pub fn examined(&self) -> u64 {
        self.shared.examined.load(Ordering::Relaxed)
    }

    /// How many failed requests were not examined because the
    /// [per-second cap](Self::per_second) was reached.
    pub fn skipped(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }

    /// Takes a token, or counts a skip.
    fn admit(&self, now_ms: i64) -> bool {
        let admitted = {
            let mut b = self.shared.bucket.lock().unwrap_or_else(PoisonError::into_inner);
            let per_second = b.per_second;
            b.tokens.take(per_second, now_ms)
        };
        let counter = if admitted {
            &self.shared.examined
        } else {
            &self.shared.skipped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        admitted
    }

    /// Registers a route's keys; forgets routes that are gone.
    fn register(&self, keys: &Arc<RouteKeys>) {
        let mut routes = self.shared.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes.retain(|r| r.strong_count() > 0);
        routes.push(Arc::downgrade(keys));
    }

    /// The keys of the other live routes.
    fn others(&self, own: &Arc<RouteKeys>) -> Vec<Arc<RouteKeys>> {
        let routes = self.shared.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|r| !Arc::ptr_eq(r, own))
            .collect()
    }
}

impl fmt::Debug for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_second = self
            .shared
            .bucket
            .lock()
            .map(|b| b.per_second)
            .unwrap_or_default();
        f.debug_struct("Diagnostics")
            .field("per_second", &per_second)
            .field("in_response", &self.hints_in_response())
            .field("examined", &self.examined())
            .field("skipped", &self.skipped())
            .finish_non_exhaustive()
    }
}

/// A key made from a configured secret with a likely mistake applied, and
/// the hint it proves.
struct Variant {
    key: Key,
    hint: Hint,
}

/// One route's diagnostics: the shared handle, its own keys as the other
/// routes see them, and the mistaken keys made from its secrets.
pub(crate) struct RouteDiagnostics {
    handle: Diagnostics,
    own: Arc<RouteKeys>,
    variants: Vec<Variant>,
}

impl RouteDiagnostics {
    /// Made once, when the route is built: registers its keys with the
    /// handle and keys the mistaken readings of its secrets.
    pub(crate) fn new(
        handle: Diagnostics,
        route: Arc<str>,
        scheme: &Scheme,
        secrets: &[Secret],
        keys: &[LabeledKey],
    ) -> Self {
        let own = Arc::new(RouteKeys {
            route,
            keys: keys.to_vec(),
        });
        handle.register(&own);
        let mut variants = Vec::new();
        for ((index, secret), key) in secrets.iter().enumerate().zip(keys) {
            if key.key().algorithm() == Algorithm::HmacSha256 {
                variant_keys(scheme, index, secret.expose(), &mut variants);
            }
        }
        Self {
            handle,
            own,
            variants,
        }
    }

    /// Whether hints go in the response.
    pub(crate) fn in_response(&self) -> bool {
        self.handle.hints_in_response()
    }

    /// After a signature mismatch: which mistake, if any, would make one
    /// of the request's signatures verify.
    pub(crate) fn signature(&self, parsed: &Parsed<'_>, body: &[u8], now_ms: i64) -> Vec<Hint> {
        if body.len() > MAX_BODY_BYTES || !self.handle.admit(now_ms) {
            return Vec::new();
        }
        let mut hints = Vec::new();
        let mut tries = 0usize;
        let mut try_key = |key: &Key, body: &[u8]| {
            if tries >= MAX_TRIES {
                return false;
            }
            tries += 1;
            key.verify(&parsed.content, body, &parsed.signatures)
        };
        // The route's secrets, read the mistaken ways.
        if let Some(v) = self.variants.iter().find(|v| try_key(&v.key, body)) {
            hints.push(v.hint.clone());
        }
        // The other routes' secrets.
        'routes: for other in self.handle.others(&self.own) {
            for key in &other.keys {
                if try_key(key.key(), body) {
                    hints.push(Hint::SecretOfOtherRoute {
                        route: Arc::clone(&other.route),
                        label: key.label().cloned(),
                    });
                    break 'routes;
                }
            }
        }
        // The body, changed back.
        'bodies: for (changed, hint) in body_variants(body) {
            for key in &self.own.keys {
                if try_key(key.key(), &changed) {
                    hints.push(hint);
                    break 'bodies;
                }
            }
        }
        hints.truncate(MAX_HINTS);
        hints
    }

    /// After a malformed timestamp: whether it is in milliseconds.
    pub(crate) fn malformed_timestamp(
        &self,
        scheme: &Scheme,
        headers: &HeaderMap,
        now: i64,
        tolerance: Duration,
        now_ms: i64,
    ) -> Vec<Hint> {
        if !self.handle.admit(now_ms) {
            return Vec::new();
        }
        milliseconds(scheme, headers, now, tolerance)
            .then_some(Hint::TimestampInMilliseconds)
            .into_iter()
            .collect()
    }

    /// After a timestamp out of tolerance: a clock skew, if it is at most
    /// a day.
    pub(crate) fn stale(&self, skew: i64, tolerance: Duration, now_ms: i64) -> Vec<Hint> {
        if !self.handle.admit(now_ms) {
            return Vec::new();
        }
        if skew.unsigned_abs() > MAX_CLOCK_SKEW.as_secs() {
            return Vec::new();
        }
        vec![Hint::ClockSkew {
            secs: skew,
            tolerance,
        }]
    }
}

impl fmt::Debug for RouteDiagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteDiagnostics")
            .field("handle", &self.handle)
            .field("variants", &self.variants.len())
            .finish_non_exhaustive()
    }
}

/// The keys of the mistaken readings of the secret at `index` (an HMAC
/// secret): without quotes, followed by a newline, and the other reading
/// of a `whsec_` secret.
fn variant_keys(scheme: &Scheme, index: usize, secret: &str, out: &mut Vec<Variant>) {
    use base64::Engine as _;
    let standard = matches!(scheme.provider(), Provider::StandardWebhooks);
    // Quotes around the configured value: the sender signs without them.
    for quote in ['"', '\''] {
        let inner = secret
            .strip_prefix(quote)
            .and_then(|s| s.strip_suffix(quote))
            .filter(|s| !s.is_empty() && s.trim() == *s);
        if let Some(key) = inner.and_then(|s| scheme.key(index, s).ok()) {
            out.push(Variant {
                key,
                hint: Hint::SecretQuoted { index },
            });
        }
    }
    if standard {
        // The sender used the text as the key, with or without `whsec_`.
        let mut texts = vec![secret];
        if let Some(rest) = secret.strip_prefix("whsec_") {
            texts.push(rest);
        }
        for text in texts {
            if let Ok(key) = Key::hmac_sha256(index, text.as_bytes()) {
                out.push(Variant {
                    key,
                    hint: Hint::StandardSecretEncoding {
                        sender_decoded: false,
                    },
                });
            }
        }
    } else {
        // Every other scheme keys with the secret's text: the sender's
        // text had a newline after it.
        for newline in ["\n", "\r\n"] {
            let text = zeroize::Zeroizing::new(format!("{secret}{newline}"));
            if let Ok(key) = Key::hmac_sha256(index, text.as_bytes()) {
                out.push(Variant {
                    key,
                    hint: Hint::SecretTrailingNewline { index },
                });
            }
        }
        // A `whsec_` secret the sender base64-decoded, as Standard
        // Webhooks does.
        let decoded = secret
            .strip_prefix("whsec_")
            .and_then(|rest| base64::engine::general_purpose::STANDARD.decode(rest).ok())
            .map(zeroize::Zeroizing::new)
            .filter(|bytes| !bytes.is_empty());
        if let Some(key) = decoded.and_then(|bytes| Key::hmac_sha256(index, &bytes).ok()) {
            out.push(Variant {
                key,
                hint: Hint::StandardSecretEncoding { sender_decoded: true },
            });
        }
    }
}

/// The body as it may have been before something on the way changed it,
/// with the hint each proves. Only the changes the body shows signs of.
fn body_variants(body: &[u8]) -> Vec<(Vec<u8>, Hint)> {
    let mut out = Vec::new();
    let has_crlf = body.windows(2).any(|w| w == b"\r\n");
    let has_lf = body.contains(&b'\n');
    if has_crlf {
        out.push((crlf_to_lf(body), Hint::LineEndingsChanged { signed_crlf: false }));
    } else if has_lf {
        out.push((lf_to_crlf(body), Hint::LineEndingsChanged { signed_crlf: true }));
    }
    if let Some(stripped) = body.strip_suffix(b"\r\n").or_else(|| body.strip_suffix(b"\n")) {
        out.push((stripped.to_vec(), Hint::TrailingNewline { added: true }));
    }
    if !body.ends_with(b"\n") {
        for newline in [&b"\n"[..], b"\r\n"] {
            out.push(([body, newline].concat(), Hint::TrailingNewline { added: false }));
        }
    }
    match body.strip_prefix(BOM) {
        Some(rest) => out.push((rest.to_vec(), Hint::BomAdded)),
        None => out.push(([BOM, body].concat(), Hint::BomStripped)),
    }
    out
}

fn crlf_to_lf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        if b == b'\r' && body.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

fn lf_to_crlf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len().saturating_add(body.len() / 16));
    for &b in body {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Most headers looked at for a millisecond timestamp.
const MAX_HEADERS_SCANNED: usize = 32;

/// Whether a 13-digit run in one of the request's headers, cut to its
/// first 10 digits (seconds), makes the scheme's headers parse with a
/// timestamp inside the tolerance.
fn milliseconds(scheme: &Scheme, headers: &HeaderMap, now: i64, tolerance: Duration) -> bool {
    for (name, value) in headers.iter().take(MAX_HEADERS_SCANNED) {
        let bytes = value.as_bytes();
        if bytes.len() > crate::scheme::MAX_HEADER_LEN {
            continue;
        }
        let Some(start) = thirteen_digits(bytes) else {
            continue;
        };
        let mut seconds = Vec::with_capacity(bytes.len());
        seconds.extend_from_slice(&bytes[..start + 10]);
        seconds.extend_from_slice(&bytes[start + 13..]);
        let Ok(seconds) = HeaderValue::from_bytes(&seconds) else {
            continue;
        };
        let mut changed = headers.clone();
        changed.insert(name.clone(), seconds);
        if let Ok(parsed) = scheme.parse(&changed) {
            if parsed
                .timestamp
                .is_some_and(|ts| crate::timestamp::check(ts, now, tolerance).is_ok())
            {
                return true;
            }
        }
    }
    false
}

/// Where the first run of exactly 13 ASCII digits starts.
fn thirteen_digits(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i - start == 13 {
                return Some(start);
            }
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_round_trip() {
        assert_eq!(crlf_to_lf(b"a\r\nb\r\n\r"), b"a\nb\n\r");
        assert_eq!(lf_to_crlf(b"a\nb\n"), b"a\r\nb\r\n");
        assert_eq!(crlf_to_lf(&lf_to_crlf(b"x\ny\n\nz")), b"x\ny\n\nz");
    }

    #[test]
    fn thirteen_digit_runs_only() {
        assert_eq!(thirteen_digits(b"1700000000000"), Some(0));
        assert_eq!(thirteen_digits(b"t=1700000000000,v1=ab"), Some(2));
        assert_eq!(thirteen_digits(b"1700000000"), None);
        assert_eq!(thirteen_digits(b"17000000000000"), None);
        assert_eq!(thirteen_digits(b"12,1700000000000"), Some(3));
    }

    #[test]
    fn body_variants_follow_what_the_body_shows() {
        let codes = |body: &[u8]| -> Vec<&'static str> {
            body_variants(body).iter().map(|(_, h)| h.code()).collect()
        };
        assert_eq!(
            codes(b"{}\n"),
            ["body_line_endings_changed", "trailing_newline", "bom_stripped"]
        );
        assert_eq!(
            codes(b"\xEF\xBB\xBF{}"),
            ["trailing_newline", "trailing_newline", "bom_added"]
        );
    }

    #[test]
    fn the_bucket_caps_and_refills() {
        let d = Diagnostics::new().per_second(NonZeroU32::MIN.saturating_add(1));
        assert!(d.admit(1_000));
        assert!(d.admit(1_000));
        assert!(!d.admit(1_000));
        assert!(!d.admit(1_499));
        assert!(d.admit(1_500));
        assert_eq!((d.examined(), d.skipped()), (3, 2));
    }
}
