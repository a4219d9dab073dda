//! Configuration shared by the demo receiver and the demo sender: the
//! routes, their schemes, and the secrets read from the environment (with
//! the same built-in development defaults on both sides).

// Each demo binary uses a different part of this module.
#![allow(dead_code)]
use std::fmt;

use webhook_guard::Scheme;

/// One webhook route of the demo.
pub(crate) struct Route {
    /// Path segment and CLI name: `stripe`, `github`, …
    pub(crate) name: &'static str,
    /// The environment variable holding its comma-separated secrets.
    pub(crate) env: &'static str,
    /// The development secret used when the variable is unset. Public on
    /// purpose: never use it for real traffic.
    pub(crate) dev_secret: &'static str,
    /// Its signature scheme.
    pub(crate) scheme: fn() -> Scheme,
}

/// Every route the demo serves, in the order the contract lists them.
pub(crate) const ROUTES: [Route; 7] = [
    Route {
        name: "stripe",
        env: "STRIPE_WEBHOOK_SECRET",
        dev_secret: "whsec_webhook_guard_dev_stripe_secret",
        scheme: Scheme::stripe,
    },
    Route {
        name: "github",
        env: "GITHUB_WEBHOOK_SECRET",
        dev_secret: "webhook-guard-dev-github-secret",
        scheme: Scheme::github,
    },
    Route {
        name: "standard",
        env: "STANDARD_WEBHOOK_SECRET",
        dev_secret: "whsec_d2ViaG9vay1ndWFyZC1kZXYtc3RhbmRhcmQta2V5ISE=",
        scheme: Scheme::standard_webhooks,
    },
    Route {
        name: "slack",
        env: "SLACK_SIGNING_SECRET",
        dev_secret: "webhook-guard-dev-slack-signing-secret",
        scheme: Scheme::slack,
    },
    Route {
        name: "shopify",
        env: "SHOPIFY_WEBHOOK_SECRET",
        dev_secret: "webhook-guard-dev-shopify-secret",
        scheme: Scheme::shopify,
    },
    Route {
        name: "meta",
        env: "META_APP_SECRET",
        dev_secret: "webhook-guard-dev-meta-app-secret",
        scheme: Scheme::meta,
    },
    Route {
        name: "x",
        env: "X_CONSUMER_SECRET",
        dev_secret: "webhook-guard-dev-x-consumer-secret",
        scheme: Scheme::x,
    },
];

/// Meta's subscription-handshake token (`META_VERIFY_TOKEN`) and its
/// development default.
pub(crate) const META_VERIFY_TOKEN: (&str, &str) =
    ("META_VERIFY_TOKEN", "webhook-guard-dev-meta-verify-token");

/// A configuration problem, printed as one line naming the variable.
#[derive(Debug)]
pub(crate) struct EnvError {
    var: &'static str,
    message: String,
}

impl EnvError {
    pub(crate) fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self {
            var,
            message: message.into(),
        }
    }
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.message)
    }
}

/// Reads a variable; unset means `None`. A value that is not Unicode is an
/// error (it is not echoed: it may be a secret).
pub(crate) fn var(name: &'static str) -> Result<Option<String>, EnvError> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(EnvError::new(name, "is not valid UTF-8")),
    }
}

/// The secrets of a route: the variable split on commas (each trimmed), or
/// the development secret. The flag says whether the default was used.
pub(crate) fn secrets(route: &Route) -> Result<(Vec<String>, bool), EnvError> {
    match var(route.env)? {
        Some(list) => Ok((list.split(',').map(|s| s.trim().to_owned()).collect(), false)),
        None => Ok((vec![route.dev_secret.to_owned()], true)),
    }
}

/// The listen address (`WEBHOOK_ADDR`, default `127.0.0.1:3000`).
pub(crate) fn addr() -> Result<std::net::SocketAddr, EnvError> {
    let raw = var("WEBHOOK_ADDR")?.unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    raw.parse().map_err(|_| {
        EnvError::new(
            "WEBHOOK_ADDR",
            format!("{raw:?} is not an address such as 127.0.0.1:3000"),
        )
    })
}
