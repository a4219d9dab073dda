//! Mailgun: the scheme (docs on its constructor).

use std::sync::Arc;

use hmac::Mac as _;
use http::HeaderMap;
use subtle::ConstantTimeEq as _;

use super::super::algorithm::{keyed, HmacSha256};
use super::super::{
    json_path, Algorithm, BodyFields, BodyFieldsFn, BodyRef, Def, Key, Parsed, Pieces, ProviderKey,
    Signatures,
};
use crate::{ConfigError, Provider, Rejection, Scheme};

impl Scheme {
    /// Mailgun: the signature is **in the body**, not in a header: JSON
    /// webhooks carry `{"signature": {"timestamp", "token", "signature"},
    /// "event-data": {…}}`, legacy form webhooks the fields `timestamp`,
    /// `token` and `signature`. The signature is the hex HMAC-SHA256 of
    /// `<timestamp><token>` keyed with the HTTP webhook signing key (not
    /// the API key).
    ///
    /// **Mailgun does not sign the event data**: a captured
    /// (timestamp, token, signature) triple verifies with any
    /// `event-data`. The token is single use, so it is the delivery id
    /// and the dedupe key here: pair the route with dedupe (retention at
    /// least your tolerance for old timestamps) and a replayed token is a
    /// duplicate whatever data it carries. The timestamp is signed but,
    /// being in the body, is not checked against the tolerance. A missing
    /// or malformed signature object fails as `signature_mismatch`. The
    /// event type is `event-data.event` (`delivered`, …) or the form's
    /// `event`.
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::mailgun())
    ///     .secret("the HTTP webhook signing key from Mailgun")
    ///     .build()?;
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn mailgun() -> Self {
        Self::of(Mailgun, Provider::Named("mailgun"))
    }
}

#[derive(Debug, Clone, Copy)]
struct Mailgun;

impl Def for Mailgun {
    fn is_timestamped(&self) -> bool {
        false
    }

    fn signs_delivery_id(&self) -> bool {
        true
    }

    fn accepts_forms(&self) -> bool {
        true
    }

    fn key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        let bytes = crate::secret::plain_key(index, secret)?;
        let mac: HmacSha256 = keyed(index, &bytes)?;
        Ok(Key::Provider(Arc::new(MailgunKey { mac })))
    }

    fn parse<'h>(&'h self, _headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        Parsed::signed_in_body()
    }

    fn body_fields(&self) -> Option<BodyFieldsFn> {
        Some(fields)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, _key: &Key, _input: &super::super::SignInput<'_>, _out: &mut HeaderMap) {
        // Nothing goes in the headers: a test body must carry its own
        // signature object (see the vectors).
    }
}

/// The signature fields of a body: (timestamp, token, signature).
fn signature_fields(body: &[u8]) -> Option<(String, String, String)> {
    if let Ok(serde_json::Value::Object(doc)) = serde_json::from_slice::<serde_json::Value>(body) {
        let sig = doc.get("signature")?;
        let text = |k: &str| match sig.get(k)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        return Some((text("timestamp")?, text("token")?, text("signature")?));
    }
    let (mut ts, mut token, mut signature) = (None, None, None);
    for (k, v) in super::super::strict_form(body)? {
        let slot = match &*k {
            "timestamp" => &mut ts,
            "token" => &mut token,
            "signature" => &mut signature,
            _ => continue,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(v);
    }
    Some((ts?, token?, signature?))
}

struct MailgunKey {
    mac: HmacSha256,
}

impl ProviderKey for MailgunKey {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Provider
    }

    fn verify(&self, _content: &Pieces<'_>, body: &[u8], _candidates: &Signatures) -> bool {
        let Some((ts, token, signature)) = signature_fields(body) else {
            return false;
        };
        let mut sent = [0u8; 32];
        if signature.len() != 64
            || hex::decode_to_slice(signature.as_bytes(), &mut sent).is_err()
            || token.is_empty()
        {
            return false;
        }
        let mut mac = self.mac.clone();
        mac.update(ts.as_bytes());
        mac.update(token.as_bytes());
        bool::from(mac.finalize().into_bytes().as_slice().ct_eq(&sent))
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, pieces: &[&[u8]]) -> Vec<u8> {
        super::super::algorithm::tag_of(&self.mac, pieces)
    }
}

/// The token (single use, signed) and the event.
fn fields(body: BodyRef<'_>) -> BodyFields {
    match body {
        BodyRef::Json(..) => BodyFields {
            id: json_path(body, &["signature", "token"]),
            event_type: json_path(body, &["event-data", "event"]),
            action: None,
        },
        BodyRef::Form(raw) => {
            let mut out = BodyFields::default();
            for (k, v) in super::super::strict_form(raw).unwrap_or_default() {
                match &*k {
                    "token" if out.id.is_none() => out.id = Some(v),
                    "event" if out.event_type.is_none() => out.event_type = Some(v),
                    _ => {}
                }
            }
            out
        }
    }
}
