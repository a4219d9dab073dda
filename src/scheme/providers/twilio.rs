//! Twilio: the scheme (docs on its constructor).

use std::sync::Arc;

use hmac::Mac as _;
use http::{HeaderMap, HeaderName};
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

use super::super::algorithm::{keyed, HmacSha1};
use super::super::{Algorithm, Def, Field, Found, Key, Parsed, Piece, Pieces, ProviderKey, Signatures};
use super::square::checked_url;
use crate::{ConfigError, Provider, Rejection, RejectionKind, Scheme};

const SIGNATURE: HeaderName = HeaderName::from_static("x-twilio-signature");
const IDEMPOTENCY: HeaderName = HeaderName::from_static("i-twilio-idempotency-token");

/// The request's mode, the one piece of the layout.
const FORM: &[u8] = b"form";
const JSON: &[u8] = b"json";

impl Scheme {
    /// Twilio: `X-Twilio-Signature: <base64>`, HMAC-SHA1 (Twilio's design,
    /// pinned by the scheme) keyed with the account's auth token, over the
    /// URL Twilio called followed by the form parameters sorted by name,
    /// each as `name` + `value` (a name's distinct values sorted too).
    /// `url` is that URL exactly as configured in Twilio (scheme, host,
    /// path, any query): it comes from your configuration, never from the
    /// request's `Host` or path. Twilio's own libraries also accept the URL
    /// with the scheme's default port (`:443`, `:80`) added or removed, so
    /// this does too.
    ///
    /// JSON requests (`Content-Type: application/json`): Twilio signs the
    /// URL with `bodySHA256=<hex SHA-256 of the body>` added to its query
    /// and no parameters; the hash is computed here from the received
    /// body, so a changed body fails the signature.
    ///
    /// No timestamp is signed. The delivery id shown is the
    /// `I-Twilio-Idempotency-Token` header (not signed): the dedupe key is
    /// the SHA-256 of the verified body. No event type is read (Twilio's
    /// callbacks name theirs in fields such as `MessageStatus`). Twilio's
    /// HMAC-SHA256 "SharedKey" mode (public beta, announced by
    /// `X-Twilio-Webhooks-Signature-Settings`) is not accepted: a request
    /// signed that way fails as a mismatch.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidScheme`] when the URL is empty, holds
    /// whitespace or is not `http(s)://`.
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::twilio("https://hooks.example.com/webhooks/twilio")?)
    ///     .secret("the auth token from the Twilio console")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn twilio(url: &str) -> Result<Self, ConfigError> {
        let url = checked_url(url)?;
        Ok(Self::of(
            Twilio {
                urls: Arc::from(variants(url)),
            },
            Provider::Named("twilio"),
        ))
    }
}

/// `url`, and the same with the scheme's default port added (or removed,
/// if it is there).
fn variants(url: &str) -> Vec<Vec<u8>> {
    let mut out = vec![url.as_bytes().to_vec()];
    let (scheme, port) = if url.starts_with("https://") {
        ("https://", ":443")
    } else {
        ("http://", ":80")
    };
    let rest = &url[scheme.len()..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let other = match authority.strip_suffix(port) {
        Some(host) => format!("{scheme}{host}{tail}"),
        None if !authority.contains(':') => format!("{scheme}{authority}{port}{tail}"),
        None => return out,
    };
    out.push(other.into_bytes());
    out
}

#[derive(Debug, Clone)]
struct Twilio {
    urls: Arc<[Vec<u8>]>,
}

impl Def for Twilio {
    fn is_timestamped(&self) -> bool {
        false
    }

    fn signs_delivery_id(&self) -> bool {
        false
    }

    fn accepts_forms(&self) -> bool {
        true
    }

    fn key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        let bytes = crate::secret::plain_key(index, secret)?;
        let mac: HmacSha1 = keyed(index, &bytes)?;
        Ok(Key::Provider(Arc::new(TwilioKey {
            mac,
            urls: Arc::clone(&self.urls),
        })))
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        let raw = super::super::required(
            Found::lookup(headers, &SIGNATURE),
            &SIGNATURE,
            RejectionKind::MissingSignature,
            RejectionKind::MalformedSignature,
        )?
        .as_bytes();
        let tag = super::super::sha1_base64_tag(raw).ok_or_else(|| {
            super::super::bad_signature("X-Twilio-Signature is not the base64 of a 20-byte HMAC-SHA1 tag")
        })?;
        let json = headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().to_ascii_lowercase().starts_with(b"application/json"));
        let mut out = Parsed::empty();
        out.signatures.push_other(Algorithm::Provider, tag.to_vec())?;
        out.content = Pieces::new(&[Piece::Bytes(if json { JSON } else { FORM })]);
        out.id = super::super::informational(Found::lookup(headers, &IDEMPOTENCY), &IDEMPOTENCY);
        out.event_type = Field::Absent;
        Ok(out)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &Key, input: &super::super::SignInput<'_>, out: &mut HeaderMap) {
        use base64::Engine as _;
        let Some(url) = self.urls.first() else { return };
        // A body that decodes as a form (and does not look like JSON) is
        // signed as one; any other body as JSON. The content type says
        // which, as Twilio's does.
        let form = match input.body.first() {
            Some(b'{' | b'[') => None,
            _ => sorted_params(input.body),
        };
        let (tag, content_type) = match form {
            Some(params) => (key.sign(&[url, &params]), "application/x-www-form-urlencoded"),
            None => (key.sign(&[&json_url(url, input.body)]), "application/json"),
        };
        out.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        out.insert(
            SIGNATURE,
            super::super::value(&base64::engine::general_purpose::STANDARD.encode(tag)),
        );
        out.insert(IDEMPOTENCY, super::super::value(input.id));
    }
}

/// Twilio's key: the auth token's HMAC-SHA1 state and the URLs it may
/// have signed.
struct TwilioKey {
    mac: HmacSha1,
    urls: Arc<[Vec<u8>]>,
}

impl ProviderKey for TwilioKey {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Provider
    }

    fn verify(&self, content: &Pieces<'_>, body: &[u8], candidates: &Signatures) -> bool {
        let json = content.iter().any(|p| matches!(p, Piece::Bytes(b) if *b == JSON));
        let params = match json {
            // A form body that does not decode strictly verifies nothing.
            false => match sorted_params(body) {
                Some(params) => Some(params),
                None => return false,
            },
            true => None,
        };
        // The URLs come from configuration, so stopping at the first that
        // matches reveals nothing secret.
        for url in self.urls.iter() {
            let mut hit = subtle::Choice::from(0);
            let mut mac = self.mac.clone();
            match &params {
                Some(params) => {
                    mac.update(url);
                    mac.update(params);
                }
                None => mac.update(&json_url(url, body)),
            }
            let tag = mac.finalize().into_bytes();
            for candidate in candidates.of(Algorithm::Provider) {
                hit |= tag.as_slice().ct_eq(candidate);
            }
            if bool::from(hit) {
                return true;
            }
        }
        false
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, pieces: &[&[u8]]) -> Vec<u8> {
        super::super::algorithm::tag_of(&self.mac, pieces)
    }
}

/// The URL a JSON request is signed with: `bodySHA256=<hex>` added to its
/// query.
fn json_url(url: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = url.to_vec();
    out.push(if url.contains(&b'?') { b'&' } else { b'?' });
    out.extend_from_slice(b"bodySHA256=");
    out.extend_from_slice(hex::encode(sha2::Sha256::digest(body)).as_bytes());
    out
}

/// The form parameters of `body`, sorted by name, each name's distinct
/// values sorted, concatenated as `name` + `value`; `None` if the body
/// does not decode strictly (see [`strict_form`](super::super::strict_form)).
/// Decoded once into one buffer and sorted as ranges of it: no allocation
/// per parameter.
fn sorted_params(body: &[u8]) -> Option<Vec<u8>> {
    let mut decoded = Vec::with_capacity(body.len());
    let mut pairs: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = Vec::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        let name = decode_into(name, &mut decoded)?;
        let value = decode_into(value, &mut decoded)?;
        pairs.push((name, value));
    }
    let text = |r: &std::ops::Range<usize>| decoded.get(r.clone()).unwrap_or_default();
    pairs.sort_by(|a, b| {
        text(&a.0)
            .cmp(text(&b.0))
            .then_with(|| text(&a.1).cmp(text(&b.1)))
    });
    pairs.dedup_by(|a, b| text(&a.0) == text(&b.0) && text(&a.1) == text(&b.1));
    let mut out = Vec::with_capacity(decoded.len());
    for (name, value) in &pairs {
        out.extend_from_slice(text(name));
        out.extend_from_slice(text(value));
    }
    Some(out)
}

/// Appends the form decoding of `raw` (`+` a space, `%XX` a byte) to
/// `out` and returns where it is; `None` for a broken escape or bytes
/// that are not UTF-8 once decoded.
fn decode_into(raw: &[u8], out: &mut Vec<u8>) -> Option<std::ops::Range<usize>> {
    let start = out.len();
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let mut byte = [0u8; 1];
                hex::decode_to_slice(raw.get(i + 1..i + 3)?, &mut byte).ok()?;
                out.push(byte[0]);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    std::str::from_utf8(out.get(start..)?).ok()?;
    Some(start..out.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_variants_add_or_drop_the_default_port() {
        let v = |u: &str| {
            variants(u)
                .into_iter()
                .map(|b| String::from_utf8(b).unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            v("https://mycompany.com/myapp.php?foo=1"),
            [
                "https://mycompany.com/myapp.php?foo=1",
                "https://mycompany.com:443/myapp.php?foo=1"
            ]
        );
        assert_eq!(v("http://h:80"), ["http://h:80", "http://h"]);
        assert_eq!(v("https://h:8443/x"), ["https://h:8443/x"]);
    }

    #[test]
    fn params_sort_by_name_then_distinct_value() {
        assert_eq!(
            sorted_params(b"b=2&a=9&a=1&a=9&c=%2B1").as_deref(),
            Some(&b"a1a9b2c+1"[..])
        );
        // Not UTF-8 once decoded, or a broken escape: nothing to sign.
        assert_eq!(sorted_params(b"a=%FF"), None);
        assert_eq!(sorted_params(&[b'a', b'=', 0xef, 0x17]), None);
        assert_eq!(sorted_params(b"a=%4"), None);
    }
}
