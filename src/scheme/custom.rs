//! Any other HMAC-SHA256 provider, described from parts.
//!
//! A [`CustomScheme`] names the signature header, the prefix before the
//! encoded tag (`sha256=`…), the encoding (hex or base64), the signed
//! content as a sequence of [`SignedPiece`]s (the body, a header's value,
//! literal bytes), and optionally a timestamp header, which must then be
//! part of the signed content. Everything the core does for the named
//! schemes (bounded buffering, constant-time comparison, tolerance, key
//! rotation) applies unchanged.
//!
//! Meta (Facebook, Instagram, WhatsApp) signs the body with the app secret
//! in `X-Hub-Signature-256: sha256=<hex>`:
//!
//! ```
//! use http::HeaderName;
//! use webhook_guard::{CustomScheme, Scheme, SignatureEncoding, SignedPiece, Verifier};
//!
//! let meta = CustomScheme::builder("meta", HeaderName::from_static("x-hub-signature-256"))
//!     .prefix("sha256=")
//!     .encoding(SignatureEncoding::Hex)
//!     .signed_content([SignedPiece::Body])
//!     .build()?;
//! let verifier = Verifier::builder(Scheme::custom(meta)).secret("app-secret").build()?;
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```
//!
//! X (Twitter) uses base64 in `X-Twitter-Webhooks-Signature: sha256=<base64>`:
//!
//! ```
//! use http::HeaderName;
//! use webhook_guard::{CustomScheme, SignatureEncoding};
//!
//! let x = CustomScheme::builder("x", HeaderName::from_static("x-twitter-webhooks-signature"))
//!     .prefix("sha256=")
//!     .encoding(SignatureEncoding::Base64)
//!     .build()?;
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```
//!
//! A timestamped scheme signing `<timestamp>.<body>`:
//!
//! ```
//! use http::HeaderName;
//! use webhook_guard::{CustomScheme, SignatureEncoding, SignedPiece};
//!
//! let ts = HeaderName::from_static("x-acme-timestamp");
//! let acme = CustomScheme::builder("acme", HeaderName::from_static("x-acme-signature"))
//!     .encoding(SignatureEncoding::Hex)
//!     .timestamp_header(ts.clone())
//!     .signed_content([SignedPiece::Header(ts), SignedPiece::literal("."), SignedPiece::Body])
//!     .build()?;
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```

use http::{HeaderMap, HeaderName};

use super::{BodyFieldsFn, Field, Found, Parsed, Piece, Pieces, Signatures, MAX_PIECES};
use crate::{ConfigError, Rejection, RejectionKind};

/// How the tag is written in the signature header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureEncoding {
    /// 64 hex digits (either case).
    Hex,
    /// Standard base64 with padding (44 characters).
    Base64,
}

/// One piece of the signed content, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignedPiece {
    /// The raw request body.
    Body,
    /// The value of a header, which must then be present exactly once.
    Header(HeaderName),
    /// Fixed bytes, such as a `.` separator or a version tag.
    Literal(Vec<u8>),
}

impl SignedPiece {
    /// Fixed bytes.
    pub fn literal(bytes: impl AsRef<[u8]>) -> Self {
        Self::Literal(bytes.as_ref().to_vec())
    }
}

/// A custom HMAC-SHA256 scheme. Build it with [`CustomScheme::builder`] and
/// use it through [`Scheme::custom`](crate::Scheme::custom).
#[derive(Debug, Clone)]
pub struct CustomScheme {
    name: String,
    signature_header: HeaderName,
    prefix: Vec<u8>,
    separator: Option<u8>,
    encoding: SignatureEncoding,
    content: Vec<SignedPiece>,
    timestamp_header: Option<HeaderName>,
    id_header: Option<HeaderName>,
    event_header: Option<HeaderName>,
    /// Reads fields from the body, for the named schemes built on this one.
    body_fields: Option<BodyFieldsFn>,
    /// The id `body_fields` gives is the provider's event id, inside the
    /// signed body (named schemes only): the delivery id and dedupe key.
    body_id: bool,
    /// The top-level body member holding the event type (named schemes).
    event_member: Option<&'static str>,
    /// HMAC-SHA1 instead of HMAC-SHA256 (named schemes whose provider
    /// signs with it).
    sha1: bool,
    /// The timestamp header holds an RFC 3339 date-time instead of Unix
    /// seconds (named schemes).
    rfc3339: bool,
    /// The timestamp header holds Unix milliseconds (named schemes).
    millis: bool,
}

/// Builder for [`CustomScheme`].
#[derive(Debug, Clone)]
#[must_use]
pub struct CustomSchemeBuilder {
    scheme: CustomScheme,
}

impl CustomScheme {
    /// Starts a scheme called `name` (reported as
    /// [`Provider::Custom`](crate::Provider::Custom)) whose signature is in
    /// `signature_header`. Defaults: no prefix, hex, one signature, the body
    /// as the only signed content, no timestamp.
    pub fn builder(name: impl Into<String>, signature_header: HeaderName) -> CustomSchemeBuilder {
        CustomSchemeBuilder {
            scheme: CustomScheme {
                name: name.into(),
                signature_header,
                prefix: Vec::new(),
                separator: None,
                encoding: SignatureEncoding::Hex,
                content: vec![SignedPiece::Body],
                timestamp_header: None,
                id_header: None,
                event_header: None,
                body_fields: None,
                body_id: false,
                event_member: None,
                sha1: false,
                rfc3339: false,
                millis: false,
            },
        }
    }

    /// The scheme's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A named scheme signing the body alone under `header`, `prefix` and
    /// `encoding`, with its fields read from the body: the shape of Meta
    /// and X. Valid by construction.
    pub(crate) fn body_signed(
        name: &str,
        header: HeaderName,
        prefix: &str,
        encoding: SignatureEncoding,
        read: BodyFieldsFn,
    ) -> Self {
        let mut scheme = Self::builder(name, header).scheme;
        scheme.prefix = prefix.as_bytes().to_vec();
        scheme.encoding = encoding;
        scheme.body_fields = Some(read);
        scheme
    }
}

impl super::Def for CustomScheme {
    fn is_timestamped(&self) -> bool {
        self.timestamp_header.is_some()
    }

    fn key(&self, index: usize, secret: &str) -> Result<super::Key, ConfigError> {
        let bytes = crate::secret::plain_key(index, secret)?;
        if self.sha1 {
            super::Key::hmac_sha1(index, &bytes)
        } else {
            super::Key::hmac_sha256(index, &bytes)
        }
    }

    fn body_fields(&self) -> Option<BodyFieldsFn> {
        self.body_fields
    }

    fn event_type_member(&self) -> Option<&'static str> {
        self.event_member
    }

    /// Whether the delivery id is signed: the body's (named schemes that
    /// say so), or a header that is part of the signed content.
    fn signs_delivery_id(&self) -> bool {
        self.body_id
            || self.id_header.as_ref().is_some_and(|id| {
                self.content
                    .iter()
                    .any(|p| matches!(p, SignedPiece::Header(h) if h == id))
            })
    }

    fn parse<'a>(&'a self, headers: &'a HeaderMap) -> Result<Parsed<'a>, Rejection> {
        let raw = super::required(
            Found::lookup(headers, &self.signature_header),
            &self.signature_header,
            RejectionKind::MissingSignature,
            RejectionKind::MalformedSignature,
        )?
        .as_bytes();
        let mut signatures = Signatures::new();
        let items: &mut dyn Iterator<Item = &[u8]> = match self.separator {
            Some(sep) => &mut raw.split(move |b| *b == sep),
            None => &mut std::iter::once(raw),
        };
        for (n, item) in items.enumerate() {
            if n >= 2 * super::MAX_SIGNATURES {
                return Err(super::bad_signature(
                    "the signature header lists too many signatures",
                ));
            }
            let Some(encoded) = item.strip_prefix(self.prefix.as_slice()) else {
                if self.separator.is_some() {
                    continue;
                }
                return Err(super::bad_signature(
                    "the signature does not start with the expected prefix",
                ));
            };
            if self.sha1 {
                let tag = match self.encoding {
                    SignatureEncoding::Hex => super::sha1_hex_tag(encoded),
                    SignatureEncoding::Base64 => super::sha1_base64_tag(encoded),
                }
                .ok_or_else(|| super::bad_signature("the signature is not a 20-byte HMAC-SHA1 tag"))?;
                signatures.push_other(super::Algorithm::HmacSha1, tag.to_vec())?;
                continue;
            }
            let tag = match self.encoding {
                SignatureEncoding::Hex => super::hex_tag(encoded),
                SignatureEncoding::Base64 => super::base64_tag(encoded),
            };
            signatures
                .push(tag.ok_or_else(|| super::bad_signature("the signature is not a 32-byte tag"))?)?;
        }
        if signatures.is_empty() {
            return Err(super::bad_signature(
                "the signature header carries no signature with the expected prefix",
            ));
        }
        let timestamp = match &self.timestamp_header {
            Some(name) => {
                let raw = super::required(
                    Found::lookup(headers, name),
                    name,
                    RejectionKind::MissingTimestamp,
                    RejectionKind::MalformedTimestamp,
                )?;
                Some(if self.millis {
                    crate::timestamp::millis(raw.as_bytes()).ok_or_else(|| {
                        Rejection::new(
                            RejectionKind::MalformedTimestamp,
                            format!(
                                "the timestamp in {name} is not 1 to 13 ASCII digits of Unix milliseconds"
                            ),
                        )
                    })?
                } else if self.rfc3339 {
                    crate::timestamp::rfc3339(raw.as_bytes()).ok_or_else(|| {
                        Rejection::new(
                            RejectionKind::MalformedTimestamp,
                            format!("the timestamp in {name} is not an RFC 3339 date-time"),
                        )
                    })?
                } else {
                    super::timestamp(raw.as_bytes(), name.as_str())?
                })
            }
            None => None,
        };
        let mut content = Pieces::new(&[]);
        for piece in &self.content {
            let piece = match piece {
                SignedPiece::Body => Piece::Body,
                SignedPiece::Literal(bytes) => Piece::Bytes(bytes),
                SignedPiece::Header(name) => Piece::Bytes(
                    super::required(
                        Found::lookup(headers, name),
                        name,
                        RejectionKind::MissingHeader,
                        RejectionKind::MalformedHeader,
                    )?
                    .as_bytes(),
                ),
            };
            // `build` caps the number of pieces, so this always fits.
            if !content.push(piece) {
                return Err(super::bad_signature("the scheme has too many signed pieces"));
            }
        }
        let field = |name: &Option<HeaderName>| match name {
            Some(name) => super::informational(Found::lookup(headers, name), name),
            None => Field::Absent,
        };
        Ok(Parsed {
            timestamp,
            signatures,
            content,
            id: match &self.id_header {
                None if self.body_id => Field::Body,
                name => field(name),
            },
            event_type: match (&self.event_header, self.body_fields) {
                (None, Some(_)) => Field::Body,
                (name, _) => field(name),
            },
            key_ref: None,
        })
    }

    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, key: &super::Key, input: &super::SignInput<'_>, out: &mut HeaderMap) {
        use base64::Engine as _;
        if let Some(name) = &self.timestamp_header {
            let at = if self.millis {
                input.timestamp.saturating_mul(1000).to_string()
            } else if self.rfc3339 {
                crate::timestamp::format_rfc3339(input.timestamp)
            } else {
                input.timestamp.to_string()
            };
            out.insert(name.clone(), super::value(&at));
        }
        if let Some(name) = &self.id_header {
            out.insert(name.clone(), super::value(input.id));
        }
        if let (Some(name), Some(event)) = (&self.event_header, input.event_type) {
            out.insert(name.clone(), super::value(event));
        }
        let mut pieces: Vec<&[u8]> = Vec::new();
        for piece in &self.content {
            pieces.push(match piece {
                SignedPiece::Body => input.body,
                SignedPiece::Literal(bytes) => bytes,
                SignedPiece::Header(name) => out.get(name).map(|v| v.as_bytes()).unwrap_or_default(),
            });
        }
        let tag = key.sign(&pieces);
        let encoded = match self.encoding {
            SignatureEncoding::Hex => hex::encode(tag),
            SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(tag),
        };
        let prefix = String::from_utf8_lossy(&self.prefix);
        out.insert(
            self.signature_header.clone(),
            super::value(&format!("{prefix}{encoded}")),
        );
    }
}

impl CustomSchemeBuilder {
    /// For the named schemes built on this one: reads the delivery id and
    /// event type from the body with `read`; `body_id`: the id it gives is
    /// the provider's signed event id; `event_member`: the top-level member
    /// holding the event type, if it is one.
    pub(crate) fn body(
        mut self,
        read: BodyFieldsFn,
        body_id: bool,
        event_member: Option<&'static str>,
    ) -> Self {
        self.scheme.body_fields = Some(read);
        self.scheme.body_id = body_id;
        self.scheme.event_member = event_member;
        self
    }

    /// The scheme of a named provider, valid by construction (its
    /// description is fixed in the crate and covered by its vectors).
    pub(crate) fn preset(self) -> CustomScheme {
        debug_assert!(
            self.clone().build().is_ok(),
            "a named scheme's description is invalid"
        );
        self.scheme
    }

    /// Signs with HMAC-SHA1 (20-byte tags) instead of HMAC-SHA256.
    pub(crate) fn sha1(mut self) -> Self {
        self.scheme.sha1 = true;
        self
    }

    /// The timestamp header holds Unix milliseconds.
    pub(crate) fn millis(mut self) -> Self {
        self.scheme.millis = true;
        self
    }

    /// The timestamp header holds an RFC 3339 date-time.
    pub(crate) fn rfc3339(mut self) -> Self {
        self.scheme.rfc3339 = true;
        self
    }

    /// Text before the encoded tag, such as `sha256=` or `v1=`.
    pub fn prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.scheme.prefix = prefix.as_ref().to_vec();
        self
    }

    /// The tag's encoding. Default: hex.
    pub fn encoding(mut self, encoding: SignatureEncoding) -> Self {
        self.scheme.encoding = encoding;
        self
    }

    /// The header may list several signatures separated by this byte (for
    /// rotation); entries without the prefix are skipped.
    pub fn separator(mut self, separator: u8) -> Self {
        self.scheme.separator = Some(separator);
        self
    }

    /// The signed content, in order. It must contain [`SignedPiece::Body`]
    /// exactly once, and at most eight pieces. Default: the body alone.
    pub fn signed_content(mut self, pieces: impl IntoIterator<Item = SignedPiece>) -> Self {
        self.scheme.content = pieces.into_iter().collect();
        self
    }

    /// A header carrying the signed Unix timestamp, checked against the
    /// tolerance. It must also appear in the signed content.
    pub fn timestamp_header(mut self, name: HeaderName) -> Self {
        self.scheme.timestamp_header = Some(name);
        self
    }

    /// A header carrying the provider's delivery id (informational).
    pub fn delivery_id_header(mut self, name: HeaderName) -> Self {
        self.scheme.id_header = Some(name);
        self
    }

    /// A header carrying the event type (informational).
    pub fn event_type_header(mut self, name: HeaderName) -> Self {
        self.scheme.event_header = Some(name);
        self
    }

    /// Checks the description.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidScheme`] when the name is empty, the body is not
    /// signed exactly once, there are more than eight pieces, or the
    /// timestamp header is not part of the signed content.
    pub fn build(self) -> Result<CustomScheme, ConfigError> {
        let s = self.scheme;
        let invalid = |reason| Err(ConfigError::InvalidScheme { reason });
        if s.name.trim().is_empty() {
            return invalid("the scheme name is empty");
        }
        if s.content.iter().filter(|p| **p == SignedPiece::Body).count() != 1 {
            return invalid("the signed content must contain the body exactly once");
        }
        if s.content.len() > MAX_PIECES {
            return invalid("the signed content has more than eight pieces");
        }
        if let Some(ts) = &s.timestamp_header {
            if !s.content.contains(&SignedPiece::Header(ts.clone())) {
                return invalid("the timestamp header must be part of the signed content");
            }
        }
        if s.separator.is_some_and(|sep| s.prefix.contains(&sep)) {
            return invalid("the prefix contains the separator");
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_refuses_unsafe_descriptions() {
        let sig = HeaderName::from_static("x-sig");
        let ts = HeaderName::from_static("x-ts");
        assert!(CustomScheme::builder("a", sig.clone())
            .signed_content([])
            .build()
            .is_err());
        assert!(CustomScheme::builder("a", sig.clone())
            .signed_content([SignedPiece::Body, SignedPiece::Body])
            .build()
            .is_err());
        assert!(CustomScheme::builder("a", sig.clone())
            .timestamp_header(ts)
            .build()
            .is_err());
        assert!(CustomScheme::builder(" ", sig.clone()).build().is_err());
        assert!(CustomScheme::builder("a", sig).build().is_ok());
    }
}
