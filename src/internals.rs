//! Internals for the fuzz targets and property tests in this repository.
//! Not part of the public API: no stability promise, hidden from the docs.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderMap;

use crate::client_ip::ClientIpConfig;
use crate::{Networks, ProxyHeader, Rejection, RejectionKind, Scheme};

/// What a scheme's header parser made of `headers`: the signed timestamp
/// and the number of candidate signatures (of every algorithm), or the
/// rejection kind.
pub fn parse_headers(scheme: &Scheme, headers: &HeaderMap) -> Result<(Option<i64>, usize), RejectionKind> {
    scheme
        .parse(headers)
        .map(|p| (p.timestamp, p.signatures.len()))
        .map_err(|r: Rejection| r.kind())
}

/// The strict timestamp parser (1 to 10 ASCII digits).
pub fn parse_timestamp(raw: &[u8]) -> Option<i64> {
    crate::timestamp::parse(raw)
}

/// The tolerance check: `Err(skew)` when `timestamp` is further from `now`
/// than `tolerance`, in either direction.
pub fn check_timestamp(timestamp: i64, now: i64, tolerance: Duration) -> Result<(), i64> {
    crate::timestamp::check(timestamp, now, tolerance)
}

/// The client address of a request from `peer`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &Networks, header: ProxyHeader) -> IpAddr {
    ClientIpConfig {
        trusted: trusted.clone(),
        header,
    }
    .resolve(peer, headers)
}

/// The strict JSON parse: `Ok(value)`, or the rejection kind
/// (`InvalidJson`, `DuplicateKeys`).
pub fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, RejectionKind> {
    crate::json::parse_strict(bytes).map_err(|e| match e {
        crate::json::JsonError::Syntax => RejectionKind::InvalidJson,
        crate::json::JsonError::DuplicateKey => RejectionKind::DuplicateKeys,
    })
}

/// The strict parse read back through its serde `Deserializer` (the path
/// typed payloads take) into a `serde_json::Value`.
pub fn parse_json_via_serde(bytes: &[u8]) -> Result<serde_json::Value, RejectionKind> {
    use serde::Deserialize as _;
    let doc = crate::json::Doc::parse(bytes).map_err(|e| match e {
        crate::json::JsonError::Syntax => RejectionKind::InvalidJson,
        crate::json::JsonError::DuplicateKey => RejectionKind::DuplicateKeys,
    })?;
    serde_json::Value::deserialize(doc.root()).map_err(|_| RejectionKind::InvalidPayload)
}

/// PayPal's certificate-URL check with the default hosts: `Some(true)`
/// for a believed sandbox URL, `Some(false)` for a live one, `None` when
/// refused.
#[cfg(feature = "paypal")]
pub fn paypal_cert_url(raw: &str, sandbox: bool) -> Option<bool> {
    crate::scheme::paypal::check_default_url(raw, sandbox)
        .map(|env| env == crate::paypal::Environment::Sandbox)
}

/// PayPal's strict RFC 3339 parser (`PAYPAL-TRANSMISSION-TIME`), as Unix
/// seconds.
#[cfg(feature = "paypal")]
pub fn paypal_time(raw: &[u8]) -> Option<i64> {
    crate::scheme::paypal::rfc3339(raw)
}

/// A typed read of `bytes` through the layer's parsed document (the path
/// `VerifiedWebhook::json` and `EventRouter` take): `None` when the strict
/// parse refuses the bytes, else the value or the JSON pointer the
/// mismatch names.
pub fn typed_via_doc<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<Result<T, String>> {
    let doc = crate::json::Doc::parse(bytes).ok()?;
    Some(crate::json::typed_doc::<T>(doc.root()).map_err(|r| r.pointer().unwrap_or_default().to_owned()))
}

/// One schema compiled twice with the routes' options: over the document
/// the layer parses a body into, and over `serde_json::Value`, so tests can
/// check that the two representations get the same verdicts.
pub struct SchemaPair {
    doc: jsonschema::Validator<crate::json::DocJson>,
    value: jsonschema::Validator<jsonschema::json::SerdeJson>,
}

impl SchemaPair {
    /// Compiles `schema` both ways, or says why it does not compile.
    ///
    /// # Errors
    ///
    /// The compiler's message when the schema is invalid.
    pub fn new(schema: &serde_json::Value) -> Result<Self, String> {
        Ok(Self {
            doc: crate::schema::compile_for(schema)?,
            value: crate::schema::compile_for(schema)?,
        })
    }

    /// What each validator finds in `bytes`: the document's verdict
    /// first, then `serde_json::Value`'s. `None` when `bytes` is not strict
    /// JSON.
    pub fn verdicts(&self, bytes: &[u8]) -> Option<(Verdict, Verdict)> {
        let doc = crate::json::Doc::parse(bytes).ok()?;
        let value = crate::json::parse_strict(bytes).ok()?;
        let ours = Verdict::of(self.doc.is_valid(doc.root()), self.doc.iter_errors(doc.root()));
        let reference = Verdict::of(self.value.is_valid(&value), self.value.iter_errors(&value));
        Some((ours, reference))
    }
}

/// One validator's answer on one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What `is_valid` said.
    pub valid: bool,
    /// Every error `iter_errors` gave, as its instance path and schema
    /// path, sorted (member order may differ between representations).
    pub errors: Vec<(String, String)>,
}

impl Verdict {
    fn of(valid: bool, errors: jsonschema::ErrorIterator<'_>) -> Self {
        let mut errors: Vec<(String, String)> = errors
            .map(|e| (e.instance_path().to_string(), e.schema_path().to_string()))
            .collect();
        errors.sort();
        Self { valid, errors }
    }
}
