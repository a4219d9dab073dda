//! Configuration shared by the demo receiver and the demo sender: the
//! routes, their schemes, and the secrets read from the environment (with
//! the same built-in development defaults on both sides).

// Each demo binary uses a different part of this module.
#![allow(dead_code)]
use std::fmt;

pub(crate) mod admin;

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
pub(crate) const ROUTES: [Route; 9] = [
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
    Route {
        name: "discord",
        env: "DISCORD_PUBLIC_KEY",
        // The public key of the development seed in `DISCORD_DEV_SEED`.
        dev_secret: "f07726f2e30e8a1b51dac4f63ae8df8552a02391a214be429eb92124bbc53bf3",
        scheme: Scheme::discord,
    },
    Route {
        name: "sendgrid",
        env: "SENDGRID_PUBLIC_KEY",
        // The public key of the development key in `SENDGRID_DEV_KEY`.
        dev_secret: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzSON+wcWZq4amvrGdv7ZxQ05HpCgBoBuXErIBvPR3cJ6QSwjCyr9DnhS89Nn7PX7vcMLVChs8cwGu81FfSBgiw==",
        scheme: Scheme::sendgrid,
    },
];

/// The development Ed25519 seed (hex) the demo sender signs Discord
/// interactions with (`DISCORD_SIGNING_KEY` replaces it). Public: never
/// for real traffic.
pub(crate) const DISCORD_DEV_SEED: &str = "8e377a15a3bd12689dfd625af9f25f9512707b5bd026783520cc040ca1ef2618";

/// The development P-256 key (PKCS#8, base64) the demo sender signs
/// SendGrid events with (`SENDGRID_SIGNING_KEY` replaces it). Public:
/// never for real traffic.
pub(crate) const SENDGRID_DEV_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgqSMElIzSmnGtB/be160u4gqzPMw9dEHsRkjL6NZIf2yhRANCAATNI437BxZmrhqa+sZ2/tnFDTkekKAGgG5cSsgG89HdwnpBLCMLKv0OeFLz02fs9fu9wwtUKGzxzAa7zUV9IGCL";

/// The `whpk_` public keys the standard route also accepts, for `v1a`
/// (Ed25519) signatures; unset, `v1a` entries are ignored.
pub(crate) const STANDARD_PUBLIC_KEYS: &str = "STANDARD_WEBHOOK_PUBLIC_KEYS";

/// PayPal: the subscription's webhook id (signed by PayPal), and its
/// development default.
pub(crate) const PAYPAL_WEBHOOK_ID: (&str, &str) = ("PAYPAL_WEBHOOK_ID", "WH-WEBHOOK-GUARD-DEV");

/// Every provider route with the variables it reads, as `GET /providers`
/// lists them.
pub(crate) fn providers() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = ROUTES
        .iter()
        .map(|r| {
            let mut env = vec![r.env];
            match r.name {
                "standard" => env.push(STANDARD_PUBLIC_KEYS),
                "meta" => env.push(META_VERIFY_TOKEN.0),
                _ => {}
            }
            (r.name, env)
        })
        .collect();
    out.push((
        "paypal",
        vec![PAYPAL_WEBHOOK_ID.0, "PAYPAL_CERT_FILE", "PAYPAL_SANDBOX"],
    ));
    out
}

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
