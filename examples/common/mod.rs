//! Configuration shared by the demo receiver and the demo sender: the
//! routes, their schemes, and the secrets read from the environment (with
//! the same built-in development defaults on both sides).

// Each demo binary uses a different part of this module.
#![allow(dead_code)]
use std::fmt;

pub(crate) mod admin;

use base64::Engine as _;
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
}

impl Route {
    /// Its signature scheme ([`Scheme::named_with_url`] by the route's
    /// name; schemes that sign the URL sign [`public_url`] + the route's
    /// path).
    pub(crate) fn scheme(&self) -> Result<Scheme, EnvError> {
        let url = format!("{}/webhooks/{}", public_url()?, self.name);
        Scheme::named_with_url(self.name, &url)
            .ok_or_else(|| EnvError::new(self.env, format!("no built-in scheme is called {:?}", self.name)))?
            .map_err(|e| EnvError::new(PUBLIC_URL, e.to_string()))
    }
}

/// The external base URL the providers call (`WEBHOOK_PUBLIC_URL`), for
/// the schemes that sign it.
pub(crate) const PUBLIC_URL: &str = "WEBHOOK_PUBLIC_URL";

/// [`PUBLIC_URL`] without a trailing slash; unset: `http://` and the
/// listen address.
pub(crate) fn public_url() -> Result<String, EnvError> {
    match var(PUBLIC_URL)? {
        Some(url) => Ok(url.trim_end_matches('/').to_owned()),
        None => Ok(format!("http://{}", addr()?)),
    }
}

/// Every route the demo serves: [`FIRST_ROUTES`], then one per provider
/// of [`Scheme::named_providers`], configured by `<NAME>_WEBHOOK_SECRET`
/// with the development secret `whsec_` + base64 of
/// `webhook-guard-dev-<name>-secret` (for Adyen, its hex).
pub(crate) fn routes() -> Vec<Route> {
    let mut out: Vec<Route> = FIRST_ROUTES.into_iter().collect();
    for name in Scheme::named_providers() {
        // Built once at start, for the life of the process.
        let env: &'static str =
            Box::leak(format!("{}_WEBHOOK_SECRET", name.to_ascii_uppercase()).into_boxed_str());
        // `whsec_` + base64, so that it is also a valid key for the
        // Standard Webhooks senders; the others use the text as is, but
        // Adyen, whose keys are hex.
        let text = format!("webhook-guard-dev-{name}-secret");
        let dev_secret: &'static str = Box::leak(
            match name {
                "adyen" => hex::encode(text),
                _ => format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(text)),
            }
            .into_boxed_str(),
        );
        out.push(Route {
            name,
            env,
            dev_secret,
        });
    }
    out
}

/// The routes of the first providers, in the order the contract lists them.
pub(crate) const FIRST_ROUTES: [Route; 9] = [
    Route {
        name: "stripe",
        env: "STRIPE_WEBHOOK_SECRET",
        dev_secret: "whsec_webhook_guard_dev_stripe_secret",
    },
    Route {
        name: "github",
        env: "GITHUB_WEBHOOK_SECRET",
        dev_secret: "webhook-guard-dev-github-secret",
    },
    Route {
        name: "standard",
        env: "STANDARD_WEBHOOK_SECRET",
        dev_secret: "whsec_d2ViaG9vay1ndWFyZC1kZXYtc3RhbmRhcmQta2V5ISE=",
    },
    Route {
        name: "slack",
        env: "SLACK_SIGNING_SECRET",
        dev_secret: "webhook-guard-dev-slack-signing-secret",
    },
    Route {
        name: "shopify",
        env: "SHOPIFY_WEBHOOK_SECRET",
        dev_secret: "webhook-guard-dev-shopify-secret",
    },
    Route {
        name: "meta",
        env: "META_APP_SECRET",
        dev_secret: "webhook-guard-dev-meta-app-secret",
    },
    Route {
        name: "x",
        env: "X_CONSUMER_SECRET",
        dev_secret: "webhook-guard-dev-x-consumer-secret",
    },
    Route {
        name: "discord",
        env: "DISCORD_PUBLIC_KEY",
        // The public key of the development seed in `DISCORD_DEV_SEED`.
        dev_secret: "f07726f2e30e8a1b51dac4f63ae8df8552a02391a214be429eb92124bbc53bf3",
    },
    Route {
        name: "sendgrid",
        env: "SENDGRID_PUBLIC_KEY",
        // The public key of the development key in `SENDGRID_DEV_KEY`.
        dev_secret: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzSON+wcWZq4amvrGdv7ZxQ05HpCgBoBuXErIBvPR3cJ6QSwjCyr9DnhS89Nn7PX7vcMLVChs8cwGu81FfSBgiw==",
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
    let mut out: Vec<(&'static str, Vec<&'static str>)> = routes()
        .iter()
        .map(|r| {
            let mut env = vec![r.env];
            match r.name {
                "standard" => env.push(STANDARD_PUBLIC_KEYS),
                "meta" => env.push(META_VERIFY_TOKEN.0),
                "dropbox" => env.push(DROPBOX_CHALLENGE),
                "square" | "twilio" | "hubspot" => env.push(PUBLIC_URL),
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

/// `1` makes the dropbox route answer Dropbox's unauthenticated
/// `GET ?challenge=` echo.
pub(crate) const DROPBOX_CHALLENGE: &str = "DROPBOX_CHALLENGE";

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
