#![doc = include_str!("../docs/crate.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod body;
pub mod client_ip;
mod clock;
pub mod dedupe;
mod delivery;
pub mod dispatch;
mod error;
#[cfg(feature = "redis")]
pub mod fleet;
pub mod handshake;
pub mod hints;
#[cfg(feature = "inspect")]
pub mod inspect;
#[doc(hidden)]
pub mod internals;
mod json;
pub mod log_limit;
pub mod manual;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod observe;
#[cfg(feature = "paypal")]
pub use scheme::paypal;
pub mod queue;
pub mod rate_limit;
mod rejection;
pub mod schema;
pub mod scheme;
mod secret;
pub mod serve;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "test-util")]
pub mod test_util;
mod timestamp;
mod verify;

pub use body::{BodyBudget, DEFAULT_INFLIGHT_BODY_BYTES};
pub use client_ip::{ClientIp, Networks, ProxyHeader};
pub use clock::{Clock, FixedClock, SystemClock};
pub use delivery::{MissingVerification, VerifiedWebhook};
pub use error::ConfigError;
pub use log_limit::DEFAULT_REJECTION_LOGS_PER_SECOND;
pub use rate_limit::RateLimiter;
pub use rejection::{Rejection, RejectionKind, TimestampContext};
pub use scheme::{CustomScheme, CustomSchemeBuilder, Provider, Scheme, SignatureEncoding, SignedPiece};
pub use secret::Secret;
pub use verify::{
    ResponseFuture, Verifier, VerifierBuilder, VerifyWebhook, VerifyWebhookLayer, DEFAULT_BODY_DEADLINE,
    DEFAULT_BODY_IDLE_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_TOLERANCE,
};

/// The README's code blocks, compiled as doc tests so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
