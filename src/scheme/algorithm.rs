//! Signature algorithms: the key material a route holds, the candidate
//! signatures a request carries, and the one place where a candidate is
//! checked against a key.
//!
//! A scheme ([`Def`](super::Def)) turns each configured secret into a
//! [`Key`] when the route is built, and each request's headers into
//! [`Signatures`]. The verify layer only asks every key whether one of the
//! candidates of its own algorithm signs the request's content
//! ([`Key::verify`]); it knows nothing of any algorithm. HMAC-SHA256 tags,
//! the common case, are kept inline (no allocation per request); other
//! algorithms' signatures are kept with the algorithm they claim, so a key
//! is only ever checked against candidates of its own algorithm.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use super::{Piece, Pieces, MAX_SIGNATURES};
use crate::{ConfigError, Rejection, RejectionKind};

/// HMAC-SHA256.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA1, for the providers that still sign with it (Twilio,
/// Intercom, Vercel): pinned by the scheme, never chosen by a request.
pub(crate) type HmacSha1 = Hmac<sha1::Sha1>;

/// Length of an HMAC-SHA1 tag.
pub(crate) const SHA1_MAC_LEN: usize = 20;

/// Length of an HMAC-SHA256 tag.
pub(crate) const MAC_LEN: usize = 32;

/// A signature algorithm, pinned by the route's scheme and key: never
/// chosen by the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub(crate) enum Algorithm {
    /// HMAC with SHA-256 and a 32-byte tag.
    HmacSha256,
    /// Ed25519 (RFC 8032) with a 32-byte public key and a 64-byte
    /// signature (feature `ed25519` to verify).
    Ed25519,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048 to 8192 bits, under a
    /// certificate's key (feature `paypal`).
    #[cfg_attr(not(feature = "paypal"), allow(dead_code))]
    RsaPkcs1Sha256,
    /// ECDSA over P-256 with SHA-256, a DER-encoded signature (feature
    /// `ecdsa` to verify).
    EcdsaP256Sha256,
    /// HMAC with SHA-1 and a 20-byte tag (the provider's design, pinned
    /// per scheme).
    HmacSha1,
    /// A shared token sent as is (GitLab's `X-Gitlab-Token`): equality in
    /// constant time, no signature.
    Token,
    /// A provider's own construction, checked by its [`ProviderKey`]
    /// (signatures in the body, or over bytes rebuilt from it).
    Provider,
}

/// The key of a provider whose signed bytes are rebuilt from the body
/// (Twilio's sorted form parameters, Mailgun's and Adyen's signatures in
/// the body): the provider's file says how.
pub(crate) trait ProviderKey: Send + Sync + 'static {
    /// The algorithm of the candidates it checks.
    fn algorithm(&self) -> Algorithm;

    /// Whether one of `candidates` (or the body itself) signs the request.
    fn verify(&self, content: &Pieces<'_>, body: &[u8], candidates: &Signatures) -> bool;

    /// Signs `pieces`, for test signers.
    #[cfg(any(test, feature = "test-util"))]
    fn sign(&self, pieces: &[&[u8]]) -> Vec<u8>;
}

impl Algorithm {
    const fn bit(self) -> u8 {
        match self {
            Self::HmacSha256 => 1,
            Self::Ed25519 => 2,
            Self::RsaPkcs1Sha256 => 4,
            Self::EcdsaP256Sha256 => 8,
            Self::HmacSha1 => 16,
            Self::Token => 32,
            Self::Provider => 64,
        }
    }
}

/// The algorithms of a route's keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Algorithms(u8);

impl Algorithms {
    pub(crate) fn with(self, algorithm: Algorithm) -> Self {
        Self(self.0 | algorithm.bit())
    }

    pub(crate) fn contains(self, algorithm: Algorithm) -> bool {
        self.0 & algorithm.bit() != 0
    }
}

/// The verifying material of one configured secret, parsed once when the
/// route is built. Never printed.
#[derive(Clone)]
pub(crate) enum Key {
    /// An HMAC-SHA256 state keyed once, cloned per request so the key
    /// schedule is not recomputed. The key bytes themselves are zeroized
    /// right after keying; the inner and outer pad states kept here are
    /// not zeroized on drop (the `hmac` 0.12 / `sha2` 0.10 states offer no
    /// way to do so without `unsafe`).
    HmacSha256(HmacSha256),
    /// An HMAC-SHA1 state keyed once (as for HMAC-SHA256).
    HmacSha1(HmacSha1),
    /// A shared token: the SHA-256 of its bytes, compared in constant time
    /// with the SHA-256 of what the request sends (equal lengths, so the
    /// comparison does not reveal the token's length).
    Token([u8; 32]),
    /// A shared token in the clear, for test signers only.
    #[cfg(any(test, feature = "test-util"))]
    TokenSigning(Arc<[u8]>),
    /// A provider's own construction.
    Provider(Arc<dyn ProviderKey>),
    /// An Ed25519 public key from the route's trust list.
    #[cfg(feature = "ed25519")]
    Ed25519(ring::signature::UnparsedPublicKey<[u8; 32]>),
    /// An Ed25519 key pair, for test signers only (a verifier never holds
    /// a sender's signing key).
    #[cfg(all(feature = "ed25519", any(test, feature = "test-util")))]
    Ed25519Signing(Arc<ring::signature::Ed25519KeyPair>),
    /// PayPal certificates named by one request and checked for it (any
    /// one may have signed).
    #[cfg(feature = "paypal")]
    Certificates(Arc<[crate::paypal::PayPalCertificate]>),
    /// An RSA key pair, for test signers only.
    #[cfg(all(feature = "paypal", any(test, feature = "test-util")))]
    RsaSigning(Arc<ring::rsa::KeyPair>),
    /// An ECDSA P-256 public key (the uncompressed point) from the
    /// route's trust list.
    #[cfg(feature = "ecdsa")]
    EcdsaP256(ring::signature::UnparsedPublicKey<[u8; P256_POINT_LEN]>),
    /// An ECDSA P-256 key pair, for test signers only.
    #[cfg(all(feature = "ecdsa", any(test, feature = "test-util")))]
    EcdsaP256Signing(Arc<ring::signature::EcdsaKeyPair>),
}

impl Key {
    /// An HMAC-SHA256 key. HMAC accepts keys of any length, so this only
    /// fails if the `hmac` crate changes that; it is reported as a
    /// configuration error anyway.
    pub(crate) fn hmac_sha256(index: usize, key: &[u8]) -> Result<Self, ConfigError> {
        keyed(index, key).map(Self::HmacSha256)
    }

    /// An HMAC-SHA1 key.
    pub(crate) fn hmac_sha1(index: usize, key: &[u8]) -> Result<Self, ConfigError> {
        keyed(index, key).map(Self::HmacSha1)
    }

    /// A shared token in the clear, for test signers.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn token_signing(token: &[u8]) -> Self {
        Self::TokenSigning(Arc::from(token))
    }

    /// A shared token, compared as is.
    pub(crate) fn token(token: &[u8]) -> Self {
        use sha2::Digest as _;
        Self::Token(Sha256::digest(token).into())
    }

    /// The algorithm this key verifies.
    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            Self::HmacSha256(_) => Algorithm::HmacSha256,
            Self::HmacSha1(_) => Algorithm::HmacSha1,
            Self::Token(_) => Algorithm::Token,
            #[cfg(any(test, feature = "test-util"))]
            Self::TokenSigning(_) => Algorithm::Token,
            Self::Provider(key) => key.algorithm(),
            #[cfg(feature = "ed25519")]
            Self::Ed25519(_) => Algorithm::Ed25519,
            #[cfg(all(feature = "ed25519", any(test, feature = "test-util")))]
            Self::Ed25519Signing(_) => Algorithm::Ed25519,
            #[cfg(feature = "paypal")]
            Self::Certificates(_) => Algorithm::RsaPkcs1Sha256,
            #[cfg(all(feature = "paypal", any(test, feature = "test-util")))]
            Self::RsaSigning(_) => Algorithm::RsaPkcs1Sha256,
            #[cfg(feature = "ecdsa")]
            Self::EcdsaP256(_) => Algorithm::EcdsaP256Sha256,
            #[cfg(all(feature = "ecdsa", any(test, feature = "test-util")))]
            Self::EcdsaP256Signing(_) => Algorithm::EcdsaP256Sha256,
        }
    }

    /// An RSA key pair from a PKCS#8 private key, PEM (`PRIVATE KEY`) or
    /// base64 DER, for test signers.
    #[cfg(all(feature = "paypal", any(test, feature = "test-util")))]
    pub(crate) fn rsa_signing(index: usize, pkcs8: &str) -> Result<Self, ConfigError> {
        use base64::Engine as _;
        let b64: String = pkcs8
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.chars().filter(|c| !c.is_ascii_whitespace()))
            .collect();
        let bad = || ConfigError::InvalidSecretEncoding {
            index,
            reason: "expected an RSA private key in PKCS#8 (PEM or base64 DER)",
        };
        let der = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| bad())?,
        );
        ring::rsa::KeyPair::from_pkcs8(&der)
            .map(|pair| Self::RsaSigning(Arc::new(pair)))
            .map_err(|_| bad())
    }

    /// An Ed25519 public key: exactly 32 bytes, a canonical encoding of a
    /// point that is not of small order (such a key would let anyone
    /// forge signatures that verify under it).
    #[cfg(feature = "ed25519")]
    pub(crate) fn ed25519(index: usize, bytes: &[u8]) -> Result<Self, ConfigError> {
        let bad = |reason| ConfigError::InvalidSecretEncoding { index, reason };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("an Ed25519 public key is 32 bytes"))?;
        if ed25519_weak(&key) {
            return Err(bad(
                "the Ed25519 public key is not canonical or is of small order",
            ));
        }
        Ok(Self::Ed25519(ring::signature::UnparsedPublicKey::new(
            &ring::signature::ED25519,
            key,
        )))
    }

    /// An Ed25519 key pair from its 32-byte seed, for test signers.
    #[cfg(all(feature = "ed25519", any(test, feature = "test-util")))]
    pub(crate) fn ed25519_signing(index: usize, seed: &[u8]) -> Result<Self, ConfigError> {
        ring::signature::Ed25519KeyPair::from_seed_unchecked(seed)
            .map(|pair| Self::Ed25519Signing(Arc::new(pair)))
            .map_err(|_| ConfigError::InvalidSecretEncoding {
                index,
                reason: "an Ed25519 secret key is a 32-byte seed",
            })
    }

    /// An ECDSA P-256 public key from its DER SubjectPublicKeyInfo: exactly
    /// the `id-ecPublicKey` / `prime256v1` algorithm identifier and an
    /// uncompressed point (65 bytes, `04 ‖ x ‖ y`) that lies on the curve.
    /// Anything else (another curve, a compressed point, trailing bytes,
    /// an RSA key) is refused.
    #[cfg(feature = "ecdsa")]
    pub(crate) fn ecdsa_p256_spki(index: usize, der: &[u8]) -> Result<Self, ConfigError> {
        let bad = |reason| ConfigError::InvalidSecretEncoding { index, reason };
        let point = der.strip_prefix(P256_SPKI_PREFIX.as_slice()).ok_or(bad(
            "not the DER SubjectPublicKeyInfo of an uncompressed P-256 (prime256v1) public key",
        ))?;
        let point: [u8; P256_POINT_LEN] = point
            .try_into()
            .map_err(|_| bad("a P-256 public key is a 65-byte uncompressed point"))?;
        if point[0] != 4 || !p256_on_curve(&point) {
            return Err(bad("the P-256 public key is not a point on the curve"));
        }
        Ok(Self::EcdsaP256(ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            point,
        )))
    }

    /// An ECDSA P-256 key pair from its PKCS#8 document, for test signers.
    #[cfg(all(feature = "ecdsa", any(test, feature = "test-util")))]
    pub(crate) fn ecdsa_p256_signing(index: usize, pkcs8: &[u8]) -> Result<Self, ConfigError> {
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .map(|pair| Self::EcdsaP256Signing(Arc::new(pair)))
        .map_err(|_| ConfigError::InvalidSecretEncoding {
            index,
            reason: "an ECDSA P-256 secret key is a PKCS#8 document",
        })
    }

    /// The keyed HMAC-SHA256 state, for the handshakes that answer with a
    /// MAC (X's CRC check).
    pub(crate) fn hmac_sha256_state(&self) -> Option<HmacSha256> {
        match self {
            Self::HmacSha256(mac) => Some(mac.clone()),
            _ => None,
        }
    }

    /// Whether one of `candidates` of this key's algorithm signs `content`
    /// (with `body` for its [`Piece::Body`]). Tags are compared in constant
    /// time, and every candidate is compared.
    #[inline]
    pub(crate) fn verify(&self, content: &Pieces<'_>, body: &[u8], candidates: &Signatures) -> bool {
        match self {
            Self::HmacSha256(state) => hmac_verify(state, content, body, candidates),
            other => other.verify_other(content, body, candidates),
        }
    }

    /// Every key but HMAC-SHA256: out of the hot path.
    #[inline(never)]
    fn verify_other(&self, content: &Pieces<'_>, body: &[u8], candidates: &Signatures) -> bool {
        match self {
            Self::HmacSha1(state) => {
                let mut mac = state.clone();
                for piece in content.iter() {
                    match piece {
                        Piece::Bytes(bytes) => mac.update(bytes),
                        Piece::Body => mac.update(body),
                    }
                }
                let tag = mac.finalize().into_bytes();
                let mut hit = subtle::Choice::from(0);
                for candidate in candidates.of(Algorithm::HmacSha1) {
                    hit |= tag.as_slice().ct_eq(candidate);
                }
                bool::from(hit)
            }
            Self::Token(digest) => {
                use sha2::Digest as _;
                let mut hit = subtle::Choice::from(0);
                for candidate in candidates.of(Algorithm::Token) {
                    let sent: [u8; 32] = Sha256::digest(candidate).into();
                    hit |= sent.ct_eq(digest);
                }
                bool::from(hit)
            }
            #[cfg(any(test, feature = "test-util"))]
            Self::TokenSigning(_) => false,
            Self::Provider(key) => key.verify(content, body, candidates),
            #[cfg(any(feature = "ed25519", feature = "paypal", feature = "ecdsa"))]
            other => other.verify_asymmetric(content, body, candidates),
            #[cfg(not(any(feature = "ed25519", feature = "paypal", feature = "ecdsa")))]
            Self::HmacSha256(state) => hmac_verify(state, content, body, candidates),
        }
    }

    /// The algorithms other than HMAC, out of the HMAC hot path.
    #[cfg(any(feature = "ed25519", feature = "paypal", feature = "ecdsa"))]
    #[inline(never)]
    fn verify_asymmetric(&self, content: &Pieces<'_>, body: &[u8], candidates: &Signatures) -> bool {
        match self {
            Self::HmacSha256(state) => hmac_verify(state, content, body, candidates),
            Self::HmacSha1(_) | Self::Token(_) | Self::Provider(_) => {
                self.verify_other(content, body, candidates)
            }
            #[cfg(any(test, feature = "test-util"))]
            Self::TokenSigning(_) => false,
            #[cfg(feature = "ed25519")]
            Self::Ed25519(public) => {
                let mut found = false;
                let mut message = None;
                for candidate in candidates.of(Algorithm::Ed25519) {
                    let message = message.get_or_insert_with(|| content.concat(body));
                    found |= public.verify(message, candidate).is_ok();
                }
                found
            }
            #[cfg(all(feature = "ed25519", any(test, feature = "test-util")))]
            Self::Ed25519Signing(_) => false,
            #[cfg(feature = "paypal")]
            Self::Certificates(certs) => {
                let mut found = false;
                let mut message = None;
                for candidate in candidates.of(Algorithm::RsaPkcs1Sha256) {
                    let message = message.get_or_insert_with(|| content.concat(body));
                    for cert in certs.iter() {
                        found |= cert.verify(message, candidate);
                    }
                }
                found
            }
            #[cfg(all(feature = "paypal", any(test, feature = "test-util")))]
            Self::RsaSigning(_) => false,
            // Any S in [1, n - 1] verifies (ring does not require low S):
            // SendGrid's signers do not normalise S.
            #[cfg(feature = "ecdsa")]
            Self::EcdsaP256(public) => {
                let mut found = false;
                let mut message = None;
                for candidate in candidates.of(Algorithm::EcdsaP256Sha256) {
                    let message = message.get_or_insert_with(|| content.concat(body));
                    found |= public.verify(message, candidate).is_ok();
                }
                found
            }
            #[cfg(all(feature = "ecdsa", any(test, feature = "test-util")))]
            Self::EcdsaP256Signing(_) => false,
        }
    }

    /// Signs `pieces` the way a sender holding this key does (test
    /// signers only; a symmetric key signs and verifies alike).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn sign(&self, pieces: &[&[u8]]) -> Vec<u8> {
        match self {
            Self::HmacSha256(state) => tag_of(state, pieces),
            Self::HmacSha1(state) => tag_of(state, pieces),
            // A token signs nothing: the test signer sends the token.
            Self::Token(_) => Vec::new(),
            Self::TokenSigning(token) => token.to_vec(),
            Self::Provider(key) => key.sign(pieces),
            #[cfg(feature = "ed25519")]
            Self::Ed25519(_) => Vec::new(),
            #[cfg(feature = "ed25519")]
            Self::Ed25519Signing(pair) => pair.sign(&pieces.concat()).as_ref().to_vec(),
            #[cfg(feature = "paypal")]
            Self::Certificates(_) => Vec::new(),
            #[cfg(feature = "paypal")]
            Self::RsaSigning(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                let rng = ring::rand::SystemRandom::new();
                match pair.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &rng,
                    &pieces.concat(),
                    &mut sig,
                ) {
                    Ok(()) => sig,
                    Err(_) => Vec::new(),
                }
            }
            #[cfg(feature = "ecdsa")]
            Self::EcdsaP256(_) => Vec::new(),
            #[cfg(feature = "ecdsa")]
            Self::EcdsaP256Signing(pair) => pair
                .sign(&ring::rand::SystemRandom::new(), &pieces.concat())
                .map(|sig| sig.as_ref().to_vec())
                .unwrap_or_default(),
        }
    }
}

/// An HMAC state keyed with the secret at `index`. HMAC accepts keys of
/// any length, so this only fails if the `hmac` crate changes that; it is
/// reported as a configuration error anyway.
pub(crate) fn keyed<M: hmac::digest::KeyInit>(index: usize, key: &[u8]) -> Result<M, ConfigError> {
    M::new_from_slice(key).map_err(|_| ConfigError::InvalidSecretEncoding {
        index,
        reason: "the HMAC implementation refused the key",
    })
}

/// The tag of `state` over `pieces`, for test signers.
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn tag_of<M: hmac::Mac + Clone>(state: &M, pieces: &[&[u8]]) -> Vec<u8> {
    let mut mac = state.clone();
    for p in pieces {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("algorithm", &self.algorithm())
            .field("key", &"[redacted]")
            .finish()
    }
}

/// HMAC-SHA256 of the pieces, compared with every tag in constant time.
#[inline(always)]
fn hmac_verify(state: &HmacSha256, content: &Pieces<'_>, body: &[u8], candidates: &Signatures) -> bool {
    let mut mac = state.clone();
    for piece in content.iter() {
        match piece {
            Piece::Bytes(bytes) => mac.update(bytes),
            #[cfg(feature = "paypal")]
            Piece::Body if content.body_crc32() => crc32_piece(&mut mac, body),
            Piece::Body => mac.update(body),
        }
    }
    let tag = mac.finalize().into_bytes();
    let mut hit = subtle::Choice::from(0);
    for candidate in candidates.tags() {
        hit |= tag.as_slice().ct_eq(candidate.as_slice());
    }
    bool::from(hit)
}

/// PayPal's CRC piece under an HMAC key (no scheme does this; kept out of
/// line).
#[cfg(feature = "paypal")]
#[cold]
#[inline(never)]
fn crc32_piece(mac: &mut HmacSha256, body: &[u8]) {
    mac.update(super::paypal::crc32(body).to_string().as_bytes());
}

/// A route's key with the label of the secret it came from.
#[derive(Clone, Debug)]
pub(crate) struct LabeledKey {
    key: Key,
    label: Option<Arc<str>>,
}

impl LabeledKey {
    pub(crate) fn new(key: Key, label: Option<Arc<str>>) -> Self {
        Self { key, label }
    }

    pub(crate) fn key(&self) -> &Key {
        &self.key
    }

    pub(crate) fn label(&self) -> Option<&Arc<str>> {
        self.label.as_ref()
    }
}

/// The candidate signatures of one request: HMAC-SHA256 tags inline,
/// decoded to exactly [`MAC_LEN`] bytes, and other algorithms' signatures
/// with the algorithm they are for; at most [`MAX_SIGNATURES`] of each.
#[derive(Debug, Clone)]
pub(crate) struct Signatures {
    tags: [[u8; MAC_LEN]; MAX_SIGNATURES],
    len: usize,
    /// Empty (no allocation) unless the request carries one.
    others: Vec<(Algorithm, Box<[u8]>)>,
}

impl Signatures {
    pub(crate) fn new() -> Self {
        Self {
            tags: [[0; MAC_LEN]; MAX_SIGNATURES],
            len: 0,
            others: Vec::new(),
        }
    }

    /// Adds a signature of another algorithm than HMAC-SHA256, or fails
    /// when the cap is reached.
    pub(crate) fn push_other(&mut self, algorithm: Algorithm, signature: Vec<u8>) -> Result<(), Rejection> {
        if self.others.len() >= MAX_SIGNATURES {
            return Err(too_many());
        }
        self.others.push((algorithm, signature.into_boxed_slice()));
        Ok(())
    }

    /// The candidates for `algorithm`, other than HMAC-SHA256 tags.
    pub(crate) fn of(&self, algorithm: Algorithm) -> impl Iterator<Item = &[u8]> {
        self.others
            .iter()
            .filter(move |(a, _)| *a == algorithm)
            .map(|(_, s)| &**s)
    }

    /// Whether there is a candidate for one of `algorithms`.
    #[inline]
    pub(crate) fn any_for(&self, algorithms: Algorithms) -> bool {
        (self.len > 0 && algorithms.contains(Algorithm::HmacSha256))
            || self.others.iter().any(|(a, _)| algorithms.contains(*a))
    }

    /// Adds an HMAC-SHA256 tag, or fails when the cap is reached.
    pub(crate) fn push(&mut self, tag: [u8; MAC_LEN]) -> Result<(), Rejection> {
        match self.tags.get_mut(self.len) {
            Some(slot) => {
                *slot = tag;
                self.len += 1;
                Ok(())
            }
            None => Err(too_many()),
        }
    }

    /// How many candidates there are, of every algorithm.
    pub(crate) fn len(&self) -> usize {
        self.len + self.others.len()
    }

    /// Whether no candidate was found.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && self.others.is_empty()
    }

    /// The HMAC-SHA256 tags.
    pub(crate) fn tags(&self) -> &[[u8; MAC_LEN]] {
        &self.tags[..self.len]
    }
}

fn too_many() -> Rejection {
    Rejection::new(
        RejectionKind::MalformedSignature,
        "the signature header lists more signatures than are accepted",
    )
}

/// Length of an uncompressed P-256 point: `04 ‖ x ‖ y`.
#[cfg(feature = "ecdsa")]
const P256_POINT_LEN: usize = 65;

/// The DER of a P-256 SubjectPublicKeyInfo up to its point: `SEQUENCE
/// (89 bytes) { SEQUENCE (19) { OID 1.2.840.10045.2.1 (id-ecPublicKey),
/// OID 1.2.840.10045.3.1.7 (prime256v1) }, BIT STRING (66 bytes, no unused
/// bits) }`. DER has one encoding of this, so matching it byte for byte is
/// the strict parse.
#[cfg(feature = "ecdsa")]
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Whether an uncompressed P-256 point is a valid public key (coordinates
/// below p, on the curve, not the identity). `ring` checks this only when
/// it verifies, and answers a bad key like a bad signature; its ECDH runs
/// the same public-key check, so one agreement with a throwaway key tells
/// a bad key apart when the route is built.
#[cfg(feature = "ecdsa")]
fn p256_on_curve(point: &[u8; P256_POINT_LEN]) -> bool {
    use ring::agreement;
    let rng = ring::rand::SystemRandom::new();
    let Ok(ours) = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng) else {
        return false;
    };
    let theirs = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, point);
    agreement::agree_ephemeral(ours, &theirs, |_| ()).is_ok()
}

/// Whether an Ed25519 public key is a non-canonical encoding (y at least
/// p = 2^255 - 19) or one of the points of small order. The small-order
/// points' y coordinates, compared without the sign bit (as libsodium's
/// blocklist does): 0, 1, p - 1, and the two of order 8 (with their
/// negations, which share y). The non-canonical 0 and 1 (p and p + 1) are
/// caught by the first test.
#[cfg(feature = "ed25519")]
fn ed25519_weak(key: &[u8; 32]) -> bool {
    const SMALL_ORDER_Y: [[u8; 32]; 5] = [
        [0; 32],
        {
            let mut one = [0; 32];
            one[0] = 1;
            one
        },
        {
            let mut p_minus_one = [0xff; 32];
            p_minus_one[0] = 0xec;
            p_minus_one[31] = 0x7f;
            p_minus_one
        },
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
            0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
        ],
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
            0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
        ],
    ];
    let mut y = *key;
    y[31] &= 0x7f;
    // y >= p: the top byte 0x7f, thirty 0xff in between, the low byte
    // at least 0xed.
    let non_canonical = y[31] == 0x7f && y[1..31].iter().all(|b| *b == 0xff) && y[0] >= 0xed;
    non_canonical || SMALL_ORDER_Y.contains(&y)
}

#[cfg(all(test, feature = "ed25519"))]
mod tests {
    use super::*;

    #[test]
    fn small_order_and_non_canonical_keys_are_weak() {
        // The eight points of small order, as computed from the curve
        // equation (each appears with its sign bit as encoded).
        for hex_key in [
            "0100000000000000000000000000000000000000000000000000000000000000",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
            "0000000000000000000000000000000000000000000000000000000000000080",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
            // p and p + 1: non-canonical 0 and 1.
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            // The identity with its sign bit set.
            "0100000000000000000000000000000000000000000000000000000000000080",
        ] {
            let mut key = [0u8; 32];
            hex::decode_to_slice(hex_key, &mut key).unwrap_or_default();
            assert!(ed25519_weak(&key), "{hex_key}");
            assert!(Key::ed25519(0, &key).is_err(), "{hex_key}");
        }
        // RFC 8032 test 1's public key is fine.
        let mut good = [0u8; 32];
        hex::decode_to_slice(
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            &mut good,
        )
        .unwrap_or_default();
        assert!(!ed25519_weak(&good));
        assert!(Key::ed25519(0, &good).is_ok());
        assert!(Key::ed25519(0, &good[..31]).is_err());
    }
}
