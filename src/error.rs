//! Configuration errors, raised when a [`Verifier`](crate::Verifier), a
//! [`RateLimiter`](crate::RateLimiter) or a dedupe store is built.
//!
//! Bad configuration fails at start-up, never as a silent pass at request
//! time. Per-request failures are [`Rejection`](crate::Rejection)s instead.

use std::fmt;

/// Why a [`Verifier`](crate::Verifier) or a [`Scheme`](crate::Scheme) could
/// not be built.
///
/// The message never contains a secret: secrets are referred to by their
/// position (0-based) in the order they were added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No secret was configured.
    NoSecrets,
    /// The secret at this position is empty or only whitespace.
    EmptySecret {
        /// Position of the secret, in the order it was added (0-based).
        index: usize,
    },
    /// The secret at this position starts or ends with whitespace, which is
    /// almost always a copy-paste or `.env` accident and would make every
    /// signature fail.
    SecretHasSurroundingWhitespace {
        /// Position of the secret, in the order it was added (0-based).
        index: usize,
    },
    /// The secret at this position is not in the encoding the scheme needs
    /// (for Standard Webhooks: `whsec_` followed by standard base64).
    InvalidSecretEncoding {
        /// Position of the secret, in the order it was added (0-based).
        index: usize,
        /// What is wrong with it, without quoting it.
        reason: &'static str,
    },
    /// The timestamp tolerance is zero: every timestamped delivery would be
    /// rejected.
    ZeroTolerance,
    /// The body limit is zero.
    ZeroBodyLimit,
    /// A body timer (the idle timeout or the deadline) is zero: every body
    /// that is not already there would time out.
    ZeroBodyTimeout {
        /// Which one: `"body idle timeout"` or `"body deadline"`.
        setting: &'static str,
    },
    /// A custom scheme's description is inconsistent.
    InvalidScheme {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A network in a CIDR list (trusted proxies, an allowlist) could not be
    /// parsed. Networks are not secret, so the value is quoted.
    InvalidNetwork {
        /// The entry that failed to parse.
        value: String,
    },
    /// The dedupe configuration is inconsistent (an empty namespace, a zero
    /// lease, a retention shorter than the replay window, a replay window
    /// shorter than the route's timestamp tolerance).
    InvalidDedupe {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A JSON Schema could not be compiled: it is not a valid schema, it
    /// refers to a URL or a file through `$ref` (schemas are never
    /// fetched), or a `pattern` needs a backtracking regex engine.
    InvalidSchema {
        /// The event type the schema was for; `None` for the default one.
        event_type: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// A handshake is misconfigured (an empty or whitespace-wrapped Meta
    /// verify token).
    InvalidHandshake {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A PayPal certificate given at build is unusable.
    InvalidCertificate {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A PayPal route's configuration is unusable.
    InvalidPayPal {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A fast-acknowledgement queue could not be started.
    InvalidQueue {
        /// What is wrong.
        reason: &'static str,
    },
    /// A dedupe store could not be configured (for example a Redis URL that
    /// does not parse). The URL itself is never quoted: it may hold a
    /// password.
    InvalidStore {
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSecrets => f.write_str("no secret is configured"),
            Self::EmptySecret { index } => write!(f, "secret #{index} is empty"),
            Self::SecretHasSurroundingWhitespace { index } => {
                write!(f, "secret #{index} starts or ends with whitespace")
            }
            Self::InvalidSecretEncoding { index, reason } => {
                write!(f, "secret #{index} is not valid: {reason}")
            }
            Self::ZeroTolerance => f.write_str("the timestamp tolerance must be greater than zero"),
            Self::ZeroBodyLimit => f.write_str("the body limit must be greater than zero"),
            Self::ZeroBodyTimeout { setting } => write!(f, "the {setting} must be greater than zero"),
            Self::InvalidScheme { reason } => write!(f, "invalid scheme: {reason}"),
            Self::InvalidNetwork { value } => {
                write!(f, "{value:?} is not an IP address or a CIDR network")
            }
            Self::InvalidDedupe { reason } => write!(f, "invalid dedupe configuration: {reason}"),
            Self::InvalidStore { reason } => write!(f, "invalid dedupe store: {reason}"),
            Self::InvalidHandshake { reason } => write!(f, "invalid handshake: {reason}"),
            Self::InvalidQueue { reason } => write!(f, "invalid queue: {reason}"),
            Self::InvalidCertificate { reason } => write!(f, "invalid PayPal certificate: {reason}"),
            Self::InvalidPayPal { reason } => write!(f, "invalid PayPal configuration: {reason}"),
            Self::InvalidSchema {
                event_type: Some(t),
                reason,
            } => write!(f, "invalid JSON Schema for event type {t:?}: {reason}"),
            Self::InvalidSchema {
                event_type: None,
                reason,
            } => write!(f, "invalid JSON Schema: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}
