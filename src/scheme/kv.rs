//! Schemes that pack the timestamp and the signatures into one header as a
//! list of `key=value` items, Stripe's shape: Paddle
//! (`ts=…;h1=…[;h1=…]`), Calendly and Mux (`t=…,v1=…`), WorkOS
//! (`t=<milliseconds>, v1=…`). The signed content is
//! `<timestamp as sent><joiner><raw body>`.
//!
//! Parsing is strict where it matters and lenient where providers differ:
//! spaces around items are ignored (WorkOS writes `, `); a second
//! timestamp item is malformed; unknown keys are ignored; every signature
//! item must be 64 hex digits; at least one must be present.

use http::{HeaderMap, HeaderName};

use super::{BodyFieldsFn, Field, Parsed, Piece, Pieces};
use crate::{Rejection, RejectionKind};

/// Unit of the timestamp item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Seconds,
    Millis,
}

/// A key=value signature header scheme (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct KvScheme {
    pub(crate) header: HeaderName,
    /// Separates items (`,` or `;`).
    pub(crate) separator: u8,
    /// What the test signer writes between items (`,`, `;` or `, `).
    #[cfg_attr(not(any(test, feature = "test-util")), allow(dead_code))]
    pub(crate) separator_out: &'static str,
    pub(crate) timestamp_key: &'static [u8],
    pub(crate) signature_key: &'static [u8],
    pub(crate) unit: Unit,
    /// Between the timestamp and the body in the signed content.
    pub(crate) joiner: &'static [u8],
    pub(crate) body_fields: BodyFieldsFn,
    /// Whether the id the body fields give is the provider's own event id
    /// (signed, so a dedupe key).
    pub(crate) body_id: bool,
    /// The top-level body member holding the event type, if it is one.
    pub(crate) event_member: Option<&'static str>,
}

impl KvScheme {
    fn label(&self) -> &str {
        self.header.as_str()
    }
}

impl super::Def for KvScheme {
    fn is_timestamped(&self) -> bool {
        true
    }

    fn signs_delivery_id(&self) -> bool {
        self.body_id
    }

    fn body_fields(&self) -> Option<BodyFieldsFn> {
        Some(self.body_fields)
    }

    fn event_type_member(&self) -> Option<&'static str> {
        self.event_member
    }

    fn parse<'h>(&'h self, headers: &'h HeaderMap) -> Result<Parsed<'h>, Rejection> {
        let raw = super::required(
            super::Found::lookup(headers, &self.header),
            &self.header,
            RejectionKind::MissingSignature,
            RejectionKind::MalformedSignature,
        )?
        .as_bytes();
        let mut out = Parsed::empty();
        let mut t: Option<&[u8]> = None;
        for (n, item) in raw.split(|b| *b == self.separator).enumerate() {
            if n >= 4 * super::MAX_SIGNATURES {
                return Err(super::bad_signature("the signature header lists too many items"));
            }
            let item = item.trim_ascii();
            let Some(eq) = item.iter().position(|b| *b == b'=') else {
                return Err(Rejection::new(
                    RejectionKind::MalformedSignature,
                    format!("an item of {} is not key=value", self.label()),
                ));
            };
            let (key, value) = (&item[..eq], &item[eq + 1..]);
            if key == self.timestamp_key {
                if t.is_some() {
                    return Err(Rejection::new(
                        RejectionKind::MalformedTimestamp,
                        format!("{} carries more than one timestamp", self.label()),
                    ));
                }
                t = Some(value);
            } else if key == self.signature_key {
                out.signatures.push(
                    super::hex_tag(value)
                        .ok_or_else(|| super::bad_signature("a signature item is not 64 hex digits"))?,
                )?;
            }
        }
        let t = t.ok_or_else(|| {
            Rejection::new(
                RejectionKind::MissingTimestamp,
                format!("{} carries no timestamp", self.label()),
            )
        })?;
        let timestamp = match self.unit {
            Unit::Seconds => super::timestamp(t, self.label())?,
            Unit::Millis => crate::timestamp::millis(t).ok_or_else(|| {
                Rejection::new(
                    RejectionKind::MalformedTimestamp,
                    format!(
                        "the timestamp in {} is not 1 to 13 ASCII digits of Unix milliseconds",
                        self.label()
                    ),
                )
            })?,
        };
        if out.signatures.is_empty() {
            return Err(super::bad_signature("the signature header carries no signature"));
        }
        out.timestamp = Some(timestamp);
        out.content = Pieces::new(&[Piece::Bytes(t), Piece::Bytes(self.joiner), Piece::Body]);
        out.id = if self.body_id { Field::Body } else { Field::Absent };
        out.event_type = Field::Body;
        Ok(out)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &super::Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
        let t = match self.unit {
            Unit::Seconds => input.timestamp.to_string(),
            Unit::Millis => input.timestamp.saturating_mul(1000).to_string(),
        };
        let tag = key.sign(&[t.as_bytes(), self.joiner, input.body]);
        let value = format!(
            "{}={t}{}{}={}",
            String::from_utf8_lossy(self.timestamp_key),
            self.separator_out,
            String::from_utf8_lossy(self.signature_key),
            hex::encode(tag)
        );
        out.insert(self.header.clone(), super::value(&value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::{BodyFields, BodyRef, Def as _};
    use http::HeaderValue;

    fn fields(_: BodyRef<'_>) -> BodyFields {
        BodyFields::default()
    }

    fn scheme(separator: u8, unit: Unit) -> KvScheme {
        KvScheme {
            header: HeaderName::from_static("x-sig"),
            separator,
            separator_out: ",",
            timestamp_key: b"t",
            signature_key: b"v1",
            unit,
            joiner: b".",
            body_fields: fields,
            body_id: false,
            event_member: None,
        }
    }

    fn parse(s: &KvScheme, v: &'static str) -> Result<Option<i64>, RejectionKind> {
        let mut h = HeaderMap::new();
        h.insert("x-sig", HeaderValue::from_static(v));
        s.parse(&h).map(|p| p.timestamp).map_err(|r| r.kind())
    }

    const SIG: &str = "5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd";

    #[test]
    fn reads_items_in_any_order_with_spaces() {
        let s = scheme(b',', Unit::Seconds);
        let v = Box::leak(format!("v1={SIG} , t=1700000000,x=y").into_boxed_str());
        assert_eq!(parse(&s, v), Ok(Some(1_700_000_000)));
        let ms = scheme(b',', Unit::Millis);
        let v = Box::leak(format!("t=1700000000999, v1={SIG}").into_boxed_str());
        assert_eq!(parse(&ms, v), Ok(Some(1_700_000_000)));
    }

    #[test]
    fn refuses_bad_headers() {
        use RejectionKind::*;
        let s = scheme(b';', Unit::Seconds);
        let cases: Vec<(String, RejectionKind)> = vec![
            (format!("h1={SIG}"), MissingTimestamp),
            ("t=1700000000".to_owned(), MalformedSignature),
            ("t=1700000000;v1=abc".to_owned(), MalformedSignature),
            (format!("t=1;t=2;v1={SIG}"), MalformedTimestamp),
            (format!("t=-1;v1={SIG}"), MalformedTimestamp),
            (format!("t=1700000000;v1{SIG}"), MalformedSignature),
            (format!("t=1700000000,v1={SIG}"), MalformedTimestamp),
            (String::new(), MalformedSignature),
            (format!("t=1;{}", "x=y;".repeat(40)), MalformedSignature),
        ];
        for (header, kind) in cases {
            let header: &'static str = Box::leak(header.into_boxed_str());
            assert_eq!(parse(&s, header), Err(kind), "{header}");
        }
        let ms = scheme(b',', Unit::Millis);
        for bad in ["t=99999999999999", "t=01", "t=1e3"] {
            let v = Box::leak(format!("{bad},v1={SIG}").into_boxed_str());
            assert_eq!(parse(&ms, v), Err(MalformedTimestamp), "{bad}");
        }
    }
}
