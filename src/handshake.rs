//! Subscription handshakes that providers send before (or between)
//! deliveries, answered by the layer so nobody hand-writes them.
//!
//! | provider | request | answer |
//! |---|---|---|
//! | Slack | a verified `POST` whose JSON `type` is `url_verification` | 200 `{"challenge": …}` (automatic on [`Scheme::slack`](crate::Scheme::slack) routes) |
//! | Meta | `GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C` | 200 `C` (`text/plain`) when `T` equals the verify token, compared in constant time; 403 `handshake_rejected` otherwise; 400 `missing_challenge` without a challenge |
//! | Dropbox | `GET ?challenge=C` (unauthenticated) | 200 `C` as `text/plain` with `X-Content-Type-Options: nosniff`; 400 `missing_challenge` when `challenge` is missing, empty, longer than 512 bytes or not made of URL-safe characters. Opt in with [`Handshake::dropbox_challenge`]: anyone can make the route echo a token |
//! | X | `GET ?crc_token=C` | 200 `{"response_token":"sha256=<base64 HMAC-SHA256(consumer secret, C)>"}` under the route's first secret; 400 `missing_challenge` when `crc_token` is missing, empty or not a plain token |
//!
//! ```
//! use webhook_guard::handshake::Handshake;
//! use webhook_guard::{Scheme, Verifier};
//!
//! let meta = Verifier::builder(Scheme::meta())
//!     .secret("meta-app-secret")
//!     .handshake(Handshake::meta("my-verify-token"))
//!     .build()?;
//! let x = Verifier::builder(Scheme::x())
//!     .secret("x-consumer-secret")
//!     .handshake(Handshake::x_crc())
//!     .build()?;
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```
//!
//! **The X CRC is a signing oracle by design:** its answer is the same
//! HMAC that signs deliveries, over bytes the requester chooses. The layer
//! therefore answers only tokens made of base64 and URL-safe characters
//! (at most 512) and that do not parse as JSON (digits alone would), so
//! the answer can never be replayed as the signature of a delivery.

use std::fmt;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method, StatusCode};
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

use crate::{Rejection, RejectionKind, Secret};

/// Longest `crc_token` answered.
const MAX_CRC_TOKEN: usize = 512;

/// A `GET` handshake a route answers. See the [module docs](self).
#[derive(Clone)]
pub struct Handshake {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Meta(Secret),
    XCrc,
    Dropbox,
}

impl Handshake {
    /// Meta's (Facebook, Instagram, WhatsApp) subscription check, against
    /// `verify_token` (the token you typed in the app dashboard).
    pub fn meta(verify_token: impl Into<Secret>) -> Self {
        Self {
            kind: Kind::Meta(verify_token.into()),
        }
    }

    /// X's (Twitter's) challenge-response check, answered with the route's
    /// first secret (the consumer secret).
    pub fn x_crc() -> Self {
        Self { kind: Kind::XCrc }
    }

    /// Dropbox's endpoint check: `GET ?challenge=C` is answered with `C`
    /// (`text/plain`, `nosniff`). It is unauthenticated, as Dropbox sends
    /// it, so only tokens of URL-safe characters (at most 512) are echoed:
    /// the answer can carry no markup.
    pub fn dropbox_challenge() -> Self {
        Self { kind: Kind::Dropbox }
    }

    /// The verify token, if this is Meta's handshake (checked when the
    /// verifier is built).
    pub(crate) fn token(&self) -> Option<&Secret> {
        match &self.kind {
            Kind::Meta(token) => Some(token),
            Kind::XCrc | Kind::Dropbox => None,
        }
    }

    /// Answers a `GET`, or `None` for any other method.
    pub(crate) fn answer(
        &self,
        method: &Method,
        query: Option<&str>,
        sign: impl FnOnce(&[u8]) -> Option<[u8; 32]>,
    ) -> Option<Result<Response, Rejection>> {
        if method != Method::GET {
            return None;
        }
        let query = query.unwrap_or_default().as_bytes();
        Some(match &self.kind {
            Kind::Meta(token) => meta(token, query),
            Kind::XCrc => x_crc(query, sign),
            Kind::Dropbox => dropbox(query),
        })
    }
}

/// The first value of `name` in a query string, or `None`; a name given
/// twice is refused (`Err`), since the two values could disagree.
fn param(query: &[u8], name: &str) -> Result<Option<String>, ()> {
    let mut found = None;
    for (key, value) in form_urlencoded::parse(query) {
        if key == name {
            if found.is_some() {
                return Err(());
            }
            found = Some(value.into_owned());
        }
    }
    Ok(found)
}

fn dropbox(query: &[u8]) -> Result<Response, Rejection> {
    let missing = || {
        Rejection::new(
            RejectionKind::MissingChallenge,
            "the challenge parameter is missing, empty, too long or not URL-safe characters",
        )
    };
    let challenge = param(query, "challenge")
        .map_err(|()| missing())?
        .unwrap_or_default();
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    if challenge.is_empty() || challenge.len() > MAX_CRC_TOKEN || !challenge.bytes().all(safe) {
        return Err(missing());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        challenge,
    )
        .into_response())
}

fn meta(token: &Secret, query: &[u8]) -> Result<Response, Rejection> {
    let rejected = || {
        Rejection::new(
            RejectionKind::HandshakeRejected,
            "the subscription handshake's mode or verify token is wrong",
        )
    };
    let mode = param(query, "hub.mode").map_err(|()| rejected())?;
    let sent = param(query, "hub.verify_token").map_err(|()| rejected())?;
    let challenge = param(query, "hub.challenge").map_err(|()| rejected())?;
    // Digests of equal length, so the comparison does not reveal the
    // token's length either.
    let digest = |bytes: &[u8]| -> [u8; 32] { sha2::Sha256::digest(bytes).into() };
    let token_ok = sent
        .is_some_and(|sent| bool::from(digest(sent.as_bytes()).ct_eq(&digest(token.expose().as_bytes()))));
    if mode.as_deref() != Some("subscribe") || !token_ok {
        return Err(rejected());
    }
    match challenge {
        Some(c) if !c.is_empty() => Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            c,
        )
            .into_response()),
        _ => Err(Rejection::new(
            RejectionKind::MissingChallenge,
            "the subscription handshake has no hub.challenge",
        )),
    }
}

fn x_crc(query: &[u8], sign: impl FnOnce(&[u8]) -> Option<[u8; 32]>) -> Result<Response, Rejection> {
    let missing = || {
        Rejection::new(
            RejectionKind::MissingChallenge,
            "the CRC check needs one crc_token of base64 or URL-safe characters",
        )
    };
    let token = param(query, "crc_token")
        .map_err(|()| missing())?
        .ok_or_else(missing)?;
    let plain = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_' | b'.'));
    // Digits alone (or `true`, `null`) are valid JSON too: refuse any
    // token that parses as JSON, so no answer is a delivery's signature.
    let json = serde_json::from_str::<serde::de::IgnoredAny>(&token).is_ok();
    if token.is_empty() || token.len() > MAX_CRC_TOKEN || !plain || json {
        return Err(missing());
    }
    use base64::Engine as _;
    // Only an HMAC key can answer; X's scheme only makes those.
    let tag = sign(token.as_bytes()).ok_or_else(|| {
        Rejection::new(
            RejectionKind::HandshakeRejected,
            "the route's key cannot answer the CRC check",
        )
    })?;
    let mac = base64::engine::general_purpose::STANDARD.encode(tag);
    let body = serde_json::json!({ "response_token": format!("sha256={mac}") });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_string(),
    )
        .into_response())
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Meta(_) => f.write_str("Handshake::Meta { verify_token: <redacted> }"),
            Kind::XCrc => f.write_str("Handshake::XCrc"),
            Kind::Dropbox => f.write_str("Handshake::Dropbox"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(h: &Handshake, query: &str) -> Result<(StatusCode, String), RejectionKind> {
        let answer = h.answer(&Method::GET, Some(query), |b| {
            let mut out = [0u8; 32];
            out[..b.len().min(32)].copy_from_slice(&b[..b.len().min(32)]);
            Some(out)
        });
        match answer {
            Some(Ok(r)) => Ok((r.status(), format!("{:?}", r.headers().get(header::CONTENT_TYPE)))),
            Some(Err(r)) => Err(r.kind()),
            None => Err(RejectionKind::MethodNotAllowed),
        }
    }

    #[test]
    fn meta_checks_mode_token_and_challenge() {
        let h = Handshake::meta("tok");
        let ok = run(&h, "hub.mode=subscribe&hub.verify_token=tok&hub.challenge=123");
        assert!(ok.is_ok_and(|(s, ct)| s == StatusCode::OK && ct.contains("text/plain")));
        for bad in [
            "hub.mode=subscribe&hub.verify_token=tok2&hub.challenge=1",
            "hub.mode=subscribe&hub.verify_token=to&hub.challenge=1",
            "hub.mode=unsubscribe&hub.verify_token=tok&hub.challenge=1",
            "hub.verify_token=tok&hub.challenge=1",
            "hub.mode=subscribe&hub.challenge=1",
            "hub.mode=subscribe&hub.verify_token=tok&hub.verify_token=x&hub.challenge=1",
        ] {
            assert_eq!(
                run(&h, bad).err(),
                Some(RejectionKind::HandshakeRejected),
                "{bad}"
            );
        }
        assert_eq!(
            run(&h, "hub.mode=subscribe&hub.verify_token=tok").err(),
            Some(RejectionKind::MissingChallenge)
        );
        assert!(h.answer(&Method::POST, None, |_| Some([0; 32])).is_none());
    }

    #[test]
    fn dropbox_echoes_only_url_safe_challenges() {
        let h = Handshake::dropbox_challenge();
        let answer = h.answer(&Method::GET, Some("challenge=Ab9-_.~z"), |_| None);
        let Some(Ok(r)) = answer else {
            panic!("the challenge was not answered")
        };
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers().get(header::X_CONTENT_TYPE_OPTIONS),
            Some(&HeaderValue::from_static("nosniff"))
        );
        assert!(r.headers()[header::CONTENT_TYPE]
            .as_bytes()
            .starts_with(b"text/plain"));
        for bad in [
            "",
            "challenge=",
            "challenge=%3Cscript%3E",
            "challenge=a%20b",
            "challenge=a&challenge=b",
        ] {
            assert_eq!(run(&h, bad).err(), Some(RejectionKind::MissingChallenge), "{bad}");
        }
        let long = format!("challenge={}", "a".repeat(MAX_CRC_TOKEN + 1));
        assert_eq!(run(&h, &long).err(), Some(RejectionKind::MissingChallenge));
        assert!(h.answer(&Method::POST, None, |_| None).is_none());
    }

    #[test]
    fn x_crc_answers_only_plain_tokens() {
        let h = Handshake::x_crc();
        assert!(run(&h, "crc_token=abcDEF123-_=").is_ok());
        for bad in [
            "",
            "crc_token=",
            "crc_token=%7B%22a%22%3A1%7D",
            "crc_token=a&crc_token=b",
            "crc_token=a%20b",
        ] {
            assert_eq!(run(&h, bad).err(), Some(RejectionKind::MissingChallenge), "{bad}");
        }
        let long = format!("crc_token={}", "a".repeat(MAX_CRC_TOKEN + 1));
        assert_eq!(run(&h, &long).err(), Some(RejectionKind::MissingChallenge));
    }

    #[test]
    fn debug_hides_the_token() {
        assert!(!format!("{:?}", Handshake::meta("hunter2")).contains("hunter2"));
    }
}
