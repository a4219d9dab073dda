//! Adyen: the scheme (docs on its constructor).

use std::sync::Arc;

use hmac::Mac as _;
use http::HeaderMap;
use subtle::ConstantTimeEq as _;

use super::super::algorithm::{keyed, HmacSha256};
use super::super::{
    Algorithm, BodyFields, BodyFieldsFn, BodyRef, Def, Key, Parsed, Pieces, ProviderKey, Signatures,
};
use crate::{ConfigError, Provider, Rejection, Scheme};

/// Most notification items one delivery may carry.
const MAX_ITEMS: usize = 64;

impl Scheme {
    /// Adyen standard webhooks: each notification item carries its own
    /// signature, `additionalData.hmacSignature` (base64 HMAC-SHA256), over
    /// eight of its fields joined with `:`:
    /// `pspReference:originalReference:merchantAccountCode:merchantReference:amount.value:amount.currency:eventCode:success`
    /// (an absent field is empty). The key is the HMAC key from the
    /// Customer Area, **hex-decoded** (64 hex digits). A delivery verifies
    /// only if it has 1 to 64 items and every item's signature matches.
    ///
    /// **Adyen signs only those fields of each item**: everything else
    /// (`reason`, `paymentMethod`, the rest of `additionalData`, `live`) is
    /// not covered; read only signed fields for decisions, or fetch the
    /// payment. The delivery id and dedupe key is the first item's
    /// `pspReference` and `eventCode` (signed), as `<pspReference>:<eventCode>`;
    /// the event type is its `eventCode` (`AUTHORISATION`, …). Adyen
    /// expects the literal body `[accepted]` back: the demo receiver
    /// answers it on its `adyen` route.
    ///
    /// ```
    /// use webhook_guard::{Scheme, Verifier};
    ///
    /// let verifier = Verifier::builder(Scheme::adyen())
    ///     .secret("44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056")
    ///     .build()?;
    /// assert!(Verifier::builder(Scheme::adyen()).secret("not hex").build().is_err());
    /// # Ok::<(), webhook_guard::ConfigError>(())
    /// ```
    pub fn adyen() -> Self {
        Self::of(Adyen, Provider::Named("adyen"))
    }
}

#[derive(Debug, Clone, Copy)]
struct Adyen;

impl Def for Adyen {
    fn is_timestamped(&self) -> bool {
        false
    }

    fn signs_delivery_id(&self) -> bool {
        true
    }

    fn key(&self, index: usize, secret: &str) -> Result<Key, ConfigError> {
        let text = crate::secret::plain_key(index, secret)?;
        let bad = ConfigError::InvalidSecretEncoding {
            index,
            reason: "an Adyen HMAC key is hex (an even number of hex digits, 64 in the Customer Area)",
        };
        if text.is_empty() || text.len() % 2 != 0 {
            return Err(bad);
        }
        let mut bytes = zeroize::Zeroizing::new(vec![0u8; text.len() / 2]);
        hex::decode_to_slice(&*text, &mut bytes).map_err(|_| bad)?;
        let mac: HmacSha256 = keyed(index, &bytes)?;
        Ok(Key::Provider(Arc::new(AdyenKey { mac })))
    }

    fn parse<'h>(&'h self, _headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        Parsed::signed_in_body()
    }

    fn body_fields(&self) -> Option<BodyFieldsFn> {
        Some(fields)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, _key: &Key, _input: &super::super::SignInput<'_>, _out: &mut HeaderMap) {
        // Nothing goes in the headers: a test body carries its items'
        // signatures (see the vectors).
    }
}

/// The items of a notification body.
fn items(doc: &serde_json::Value) -> Option<Vec<&serde_json::Value>> {
    let items = doc.get("notificationItems")?.as_array()?;
    if items.is_empty() || items.len() > MAX_ITEMS {
        return None;
    }
    items.iter().map(|i| i.get("NotificationRequestItem")).collect()
}

/// The signed string of one item.
fn signed_string(item: &serde_json::Value) -> String {
    let text = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    };
    let amount = item.get("amount");
    [
        text(item.get("pspReference")),
        text(item.get("originalReference")),
        text(item.get("merchantAccountCode")),
        text(item.get("merchantReference")),
        text(amount.and_then(|a| a.get("value"))),
        text(amount.and_then(|a| a.get("currency"))),
        text(item.get("eventCode")),
        text(item.get("success")),
    ]
    .join(":")
}

struct AdyenKey {
    mac: HmacSha256,
}

impl AdyenKey {
    fn tag(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

impl ProviderKey for AdyenKey {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Provider
    }

    fn verify(&self, _content: &Pieces<'_>, body: &[u8], _candidates: &Signatures) -> bool {
        use base64::Engine as _;
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
            return false;
        };
        let Some(items) = items(&doc) else {
            return false;
        };
        let mut all = subtle::Choice::from(1);
        for item in items {
            let sent = item
                .get("additionalData")
                .and_then(|d| d.get("hmacSignature"))
                .and_then(serde_json::Value::as_str)
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
            let Some(sent) = sent.filter(|s| s.len() == 32) else {
                return false;
            };
            all &= self.tag(signed_string(item).as_bytes()).ct_eq(sent.as_slice());
        }
        bool::from(all)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, pieces: &[&[u8]]) -> Vec<u8> {
        self.tag(&pieces.concat()).to_vec()
    }
}

/// The first item's `<pspReference>:<eventCode>` and `eventCode`.
fn fields(body: BodyRef<'_>) -> BodyFields {
    let BodyRef::Json(doc) = body else {
        return BodyFields::default();
    };
    // As `items`: every item must be a `NotificationRequestItem`.
    let first = doc
        .get("notificationItems")
        .and_then(|items| items.elements())
        .filter(|items| (1..=MAX_ITEMS).contains(&items.len()))
        .and_then(|mut items| {
            let first = items.next()?.get("NotificationRequestItem")?;
            items
                .all(|i| i.get("NotificationRequestItem").is_some())
                .then_some(first)
        });
    let get = |k: &str| first.and_then(|i| i.get(k)).and_then(|v| v.as_str());
    BodyFields {
        id: get("pspReference")
            .zip(get("eventCode"))
            .map(|(p, e)| format!("{p}:{e}")),
        event_type: get("eventCode").map(str::to_owned),
        action: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adyens_documented_example_reproduces() {
        use base64::Engine as _;
        let Ok(Key::Provider(key)) = Adyen.key(
            0,
            "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
        ) else {
            panic!("the documented key is refused")
        };
        let item = serde_json::json!({
            "pspReference": "7914073381342284", "merchantAccountCode": "TestMerchant",
            "merchantReference": "TestPayment-1407325143704", "amount": {"value": 1130, "currency": "EUR"},
            "eventCode": "AUTHORISATION", "success": "true"
        });
        assert_eq!(
            signed_string(&item),
            "7914073381342284::TestMerchant:TestPayment-1407325143704:1130:EUR:AUTHORISATION:true"
        );
        let tag = key.sign(&[signed_string(&item).as_bytes()]);
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(tag),
            "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0="
        );
    }
}
