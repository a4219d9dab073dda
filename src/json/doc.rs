//! The one parse of a verified body: a compact document in one arena.
//!
//! [`Doc`] holds the body's text (checked UTF-8, copied once) and a flat
//! array of 16-byte nodes in document order. A string is a range of that
//! text: strings without escapes point into the body's own bytes, the few
//! with escapes are decoded once and appended after it. A container knows
//! how many members it has and where its subtree ends, so walking one
//! skips its children's subtrees without recursion.
//!
//! The same document serves the JSON Schema validator (through
//! `jsonschema`'s custom representation traits), the scheme's readers of
//! the dedupe id and event type, and typed deserialization (a serde
//! `Deserializer` over the nodes), so no `serde_json::Value` tree is
//! built unless the application asks for one.
//!
//! The grammar is RFC 8259 as `serde_json` reads it, with the same limits:
//! 127 nested containers at most, paired surrogates only, numbers that
//! fit `u64`/`i64` kept as integers, `-0` and larger integers as `f64`,
//! non-integers read by `serde_json` itself (the same rounding), infinite
//! ones refused. Objects that repeat a key are refused.
//!
//! Typed reads follow `serde_json::from_slice` too: each `deserialize_*`
//! takes only the JSON types `serde_json`'s does (a field identifier is a
//! string, never an index), struct variants take arrays, and map keys read
//! as numbers or booleans only when written as exactly one, without
//! escapes. Two differences remain, a refusal and a last-bit rounding: an
//! `i128`/`u128` field refuses
//! integers past `u64`/`i64` and `-0` (kept as `f64` here, read exactly by
//! `serde_json`), and an `f32` field gets the `f64` rounded again, where
//! `serde_json` rounds the decimal once (they differ only for decimals
//! within a hair of halfway between two `f32`s).

use std::borrow::Cow;
use std::fmt;
use std::ops::ControlFlow;

use jsonschema::json::{Array, Json, JsonNumber, Node as SchemaNode, NodeIdentity, Object};
use jsonschema::JsonType;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::JsonError;

/// Containers nested deeper than this are refused (`serde_json`'s limit).
const MAX_DEPTH: u32 = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Null,
    True,
    False,
    /// `a | b << 32` is the value's bits.
    U64,
    I64,
    F64,
    /// `text[a..b]`.
    Str,
    /// `a` elements follow.
    Array,
    /// `a` members follow, each a `Str` key node then its value.
    Object,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    tag: Tag,
    /// Index of the node after this one's subtree.
    next: u32,
    a: u32,
    b: u32,
}

impl Slot {
    fn number(self) -> Option<DocNumber> {
        let bits = u64::from(self.a) | (u64::from(self.b) << 32);
        match self.tag {
            Tag::U64 => Some(DocNumber::U64(bits)),
            Tag::I64 => Some(DocNumber::I64(bits as i64)),
            Tag::F64 => Some(DocNumber::F64(f64::from_bits(bits))),
            _ => None,
        }
    }
}

/// A dropped document's buffers, kept by each thread for its next parse
/// (the text and nodes of a 1 KiB body are past the allocator's small
/// sizes, so allocating them fresh every request costs more than the
/// parse's smallest steps). Only buffers up to this size are kept (a body
/// of ~7 KiB), so a thread holds at most this much between parses: also
/// the blocking-pool threads a handler may drop its delivery on.
const SPARE_MAX_BYTES: usize = 32 * 1024;

std::thread_local! {
    static SPARE: std::cell::Cell<Option<(String, Vec<Slot>)>> = const { std::cell::Cell::new(None) };
}

/// Buffers for a parse of `len` bytes: the thread's spare ones, emptied,
/// or new ones.
fn buffers(len: usize) -> (String, Vec<Slot>) {
    let (mut text, mut nodes) = SPARE
        .try_with(std::cell::Cell::take)
        .ok()
        .flatten()
        .unwrap_or_default();
    text.clear();
    nodes.clear();
    text.reserve(len + 16);
    nodes.reserve(len / 5 + 4);
    (text, nodes)
}

impl Drop for Doc {
    fn drop(&mut self) {
        let bytes = self.text.capacity() + self.nodes.capacity() * std::mem::size_of::<Slot>();
        if bytes == 0 || bytes > SPARE_MAX_BYTES {
            return;
        }
        let text = std::mem::take(&mut self.text);
        let nodes = std::mem::take(&mut self.nodes);
        // Fails only while the thread is being torn down: the buffers are
        // then simply freed.
        let _ = SPARE.try_with(|spare| spare.set(Some((text, nodes))));
    }
}

/// A parsed JSON document. The root is node 0.
#[derive(Default)]
pub(crate) struct Doc {
    text: String,
    nodes: Vec<Slot>,
    /// `text[..plain]` is the body; strings with escapes, decoded, follow.
    plain: u32,
}

impl fmt::Debug for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the body's content.
        f.debug_struct("Doc").field("nodes", &self.nodes.len()).finish()
    }
}

impl Doc {
    /// Parses `bytes` as one JSON value, refusing duplicate keys.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Doc, JsonError> {
        let text = std::str::from_utf8(bytes).map_err(|_| JsonError::Syntax)?;
        let (mut owned, nodes) = buffers(text.len());
        owned.push_str(text);
        // Not the spare's: a fresh small scratch measured faster.
        let keys = Vec::with_capacity(32);
        let mut p = Parser {
            b: bytes,
            i: 0,
            nodes,
            text: owned,
            depth: MAX_DEPTH,
            keys,
        };
        p.ws();
        let parsed = p.value();
        p.ws();
        // A refused body's buffers go back too.
        let doc = Doc {
            text: p.text,
            nodes: p.nodes,
            plain: offset(bytes.len())?,
        };
        parsed?;
        if p.i != bytes.len() {
            return Err(JsonError::Syntax);
        }
        Ok(doc)
    }

    /// The root value.
    pub(crate) fn root(&self) -> DocRef<'_> {
        DocRef { doc: self, idx: 0 }
    }

    fn slot(&self, idx: u32) -> Slot {
        self.nodes[idx as usize]
    }

    fn str_at(&self, s: Slot) -> &str {
        self.text.get(s.a as usize..s.b as usize).unwrap_or_default()
    }
}

struct Parser<'b> {
    b: &'b [u8],
    i: usize,
    nodes: Vec<Slot>,
    text: String,
    depth: u32,
    /// Scratch for the duplicate-key check.
    keys: Vec<Key>,
}

/// A key's range in the text, and a fingerprint of it (its length and
/// first eight bytes).
#[derive(Clone, Copy)]
struct Key {
    a: u32,
    b: u32,
    print: u128,
}

impl Key {
    fn new(text: &[u8], a: u32, b: u32) -> Key {
        let bytes = text.get(a as usize..b as usize).unwrap_or_default();
        let head = match bytes.get(..8) {
            Some(eight) => eight.iter().rev().fold(0u64, |h, &x| h << 8 | u64::from(x)),
            None => bytes.iter().rev().fold(0u64, |h, &x| h << 8 | u64::from(x)),
        };
        Key {
            a,
            b,
            print: u128::from(head) | (u128::from(b - a) << 64),
        }
    }
}

impl Parser<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    fn push(&mut self, tag: Tag, a: u32, b: u32) -> Result<u32, JsonError> {
        let idx = u32::try_from(self.nodes.len()).map_err(|_| JsonError::Syntax)?;
        self.nodes.push(Slot {
            tag,
            next: idx.checked_add(1).ok_or(JsonError::Syntax)?,
            a,
            b,
        });
        Ok(idx)
    }

    fn literal(&mut self, word: &[u8], tag: Tag) -> Result<(), JsonError> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            self.push(tag, 0, 0).map(drop)
        } else {
            Err(JsonError::Syntax)
        }
    }

    fn value(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => {
                let (a, b) = self.string()?;
                self.push(Tag::Str, a, b).map(drop)
            }
            Some(b'n') => self.literal(b"null", Tag::Null),
            Some(b't') => self.literal(b"true", Tag::True),
            Some(b'f') => self.literal(b"false", Tag::False),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(JsonError::Syntax),
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth -= 1;
        if self.depth == 0 {
            return Err(JsonError::Syntax);
        }
        Ok(())
    }

    fn close(&mut self, idx: u32, count: u32) -> Result<(), JsonError> {
        self.depth += 1;
        let next = u32::try_from(self.nodes.len()).map_err(|_| JsonError::Syntax)?;
        let slot = &mut self.nodes[idx as usize];
        slot.next = next;
        slot.a = count;
        Ok(())
    }

    fn array(&mut self) -> Result<(), JsonError> {
        self.enter()?;
        self.i += 1;
        let idx = self.push(Tag::Array, 0, 0)?;
        let mut count = 0u32;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return self.close(idx, 0);
        }
        loop {
            self.value()?;
            count += 1;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.i += 1;
                    return self.close(idx, count);
                }
                _ => return Err(JsonError::Syntax),
            }
        }
    }

    fn object(&mut self) -> Result<(), JsonError> {
        self.enter()?;
        self.i += 1;
        let idx = self.push(Tag::Object, 0, 0)?;
        let keys_from = self.keys.len();
        let mut count = 0u32;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return self.close(idx, 0);
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(JsonError::Syntax);
            }
            let (a, b) = self.string()?;
            self.push(Tag::Str, a, b)?;
            self.keys.push(Key::new(self.text.as_bytes(), a, b));
            self.ws();
            if self.peek() != Some(b':') {
                return Err(JsonError::Syntax);
            }
            self.i += 1;
            self.ws();
            self.value()?;
            count += 1;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(JsonError::Syntax),
            }
        }
        let duplicate = self.has_duplicate(keys_from);
        self.keys.truncate(keys_from);
        if duplicate {
            return Err(JsonError::DuplicateKey);
        }
        self.close(idx, count)
    }

    /// Whether the keys gathered since `from` repeat one.
    fn has_duplicate(&mut self, from: usize) -> bool {
        let text = self.text.as_bytes();
        let key = |k: &Key| text.get(k.a as usize..k.b as usize).unwrap_or_default();
        let keys = &mut self.keys[from..];
        if keys.len() <= 16 {
            // Fingerprints first: the bytes are compared only when two
            // keys have the same length and the same first eight bytes.
            for (n, k) in keys.iter().enumerate() {
                if keys[n + 1..]
                    .iter()
                    .any(|other| other.print == k.print && key(other) == key(k))
                {
                    return true;
                }
            }
            return false;
        }
        keys.sort_unstable_by(|x, y| x.print.cmp(&y.print).then_with(|| key(x).cmp(key(y))));
        keys.windows(2)
            .any(|pair| pair[0].print == pair[1].print && key(&pair[0]) == key(&pair[1]))
    }

    /// A string at `self.i` (the opening quote): its range in `text`.
    /// Inlined: returned through memory, the pair cost a store-forwarding
    /// stall per string.
    #[inline(always)]
    fn string(&mut self) -> Result<(u32, u32), JsonError> {
        self.i += 1;
        let start = self.i;
        self.skip_plain();
        loop {
            match self.peek() {
                Some(b'"') => {
                    let end = self.i;
                    self.i += 1;
                    return Ok((offset(start)?, offset(end)?));
                }
                Some(b'\\') => return self.escaped(start),
                Some(0..=0x1f) | None => return Err(JsonError::Syntax),
                Some(_) => self.i += 1,
            }
        }
    }

    /// Skips string bytes that need no attention (not `"`, `\\` or a
    /// control character), eight at a time.
    #[inline]
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let w = u64::from_le_bytes(word);
            let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
            // A byte below 0x20: `w - 0x20` borrows into its high bit
            // where `w`'s high bit is clear.
            let special = zero_in(w ^ (ONES * u64::from(b'"')))
                | zero_in(w ^ (ONES * u64::from(b'\\')))
                | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
            if special != 0 {
                // The lowest flagged byte is the first special one (borrows
                // only run upwards, so lower bytes are never false hits).
                self.i += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
    }

    /// The rest of a string that has escapes, decoded and appended to the
    /// text; `start` is where its content began.
    fn escaped(&mut self, start: usize) -> Result<(u32, u32), JsonError> {
        let from = self.text.len();
        let plain = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| JsonError::Syntax)?;
        self.text.push_str(plain);
        loop {
            let run = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            let chunk = std::str::from_utf8(&self.b[run..self.i]).map_err(|_| JsonError::Syntax)?;
            self.text.push_str(chunk);
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok((offset(from)?, offset(self.text.len())?));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.i += 1;
                            let c = self.unicode()?;
                            self.text.push(c);
                            continue;
                        }
                        _ => return Err(JsonError::Syntax),
                    };
                    self.i += 1;
                    self.text.push(c);
                }
                _ => return Err(JsonError::Syntax),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self.b.get(self.i..self.i + 4).ok_or(JsonError::Syntax)?;
        let mut n = 0u32;
        for &d in digits {
            let v = (d as char).to_digit(16).ok_or(JsonError::Syntax)?;
            n = n * 16 + v;
        }
        self.i += 4;
        Ok(n)
    }

    /// After `\u`: one code point; a surrogate must be followed by its pair.
    fn unicode(&mut self) -> Result<char, JsonError> {
        let n = self.hex4()?;
        let code = match n {
            0xDC00..=0xDFFF => return Err(JsonError::Syntax),
            0xD800..=0xDBFF => {
                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                    return Err(JsonError::Syntax);
                }
                self.i += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(JsonError::Syntax);
                }
                0x10000 + ((n - 0xD800) << 10) + (low - 0xDC00)
            }
            n => n,
        };
        char::from_u32(code).ok_or(JsonError::Syntax)
    }

    fn digits(&mut self) -> usize {
        let from = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - from
    }

    fn number(&mut self) -> Result<(), JsonError> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let int_start = self.i;
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(JsonError::Syntax);
                }
            }
            Some(b'1'..=b'9') => {
                self.i += 1;
                self.digits();
            }
            _ => return Err(JsonError::Syntax),
        }
        let int_end = self.i;
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(JsonError::Syntax);
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(JsonError::Syntax);
            }
            float = true;
        }
        let whole = &self.b[start..self.i];
        if !float {
            // ASCII digits only, so the parse below cannot fail on syntax.
            let digits = &self.b[int_start..int_end];
            let magnitude = if digits.len() <= 19 {
                // At most 19 digits always fit.
                Some(digits.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
            } else {
                digits
                    .iter()
                    .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            };
            match (negative, magnitude) {
                (false, Some(n)) => return self.push_bits(Tag::U64, n),
                (true, Some(n)) if n != 0 && n <= 1 << 63 => {
                    let v = 0i64.wrapping_sub_unsigned(n);
                    return self.push_bits(Tag::I64, v as u64);
                }
                _ => {}
            }
        }
        // `serde_json`'s own reading of the number, so both agree to the bit.
        let text = std::str::from_utf8(whole).map_err(|_| JsonError::Syntax)?;
        let v: f64 = serde_json::from_str(text).map_err(|_| JsonError::Syntax)?;
        if !v.is_finite() {
            return Err(JsonError::Syntax);
        }
        self.push_bits(Tag::F64, v.to_bits())
    }

    fn push_bits(&mut self, tag: Tag, bits: u64) -> Result<(), JsonError> {
        self.push(tag, bits as u32, (bits >> 32) as u32).map(drop)
    }
}

fn offset(n: usize) -> Result<u32, JsonError> {
    u32::try_from(n).map_err(|_| JsonError::Syntax)
}

/// One value of a [`Doc`].
#[derive(Clone, Copy)]
pub(crate) struct DocRef<'a> {
    doc: &'a Doc,
    idx: u32,
}

impl fmt::Debug for DocRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocRef").field("idx", &self.idx).finish()
    }
}

/// A number of a [`Doc`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum DocNumber {
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> DocRef<'a> {
    fn slot(&self) -> Slot {
        self.doc.slot(self.idx)
    }

    fn at(&self, idx: u32) -> DocRef<'a> {
        DocRef { doc: self.doc, idx }
    }

    /// The string, if this is one.
    pub(crate) fn as_str(&self) -> Option<&'a str> {
        let s = self.slot();
        (s.tag == Tag::Str).then(|| self.doc.str_at(s))
    }

    /// The number, if this is one.
    pub(crate) fn number(&self) -> Option<DocNumber> {
        self.slot().number()
    }

    /// The value as `u64`, if it is a non-negative integer.
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self.number()? {
            DocNumber::U64(n) => Some(n),
            _ => None,
        }
    }

    /// The member `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<DocRef<'a>> {
        let s = self.slot();
        if s.tag != Tag::Object {
            return None;
        }
        let text = self.doc.text.as_bytes();
        let mut at = self.idx + 1;
        for _ in 0..s.a {
            let k = self.doc.slot(at);
            // Lengths first: most keys differ there.
            if (k.b - k.a) as usize == key.len()
                && text.get(k.a as usize..k.b as usize) == Some(key.as_bytes())
            {
                return Some(self.at(k.next));
            }
            at = self.doc.slot(k.next).next;
        }
        None
    }

    /// An object's members in document order.
    pub(crate) fn members(&self) -> Option<Members<'a>> {
        let s = self.slot();
        (s.tag == Tag::Object).then_some(Members {
            doc: self.doc,
            at: self.idx + 1,
            left: s.a,
        })
    }

    /// An array's elements.
    pub(crate) fn elements(&self) -> Option<Elements<'a>> {
        let s = self.slot();
        (s.tag == Tag::Array).then_some(Elements {
            doc: self.doc,
            at: self.idx + 1,
            left: s.a,
        })
    }

    /// The value as a `serde_json::Value` (built here).
    pub(crate) fn to_value(self) -> Value {
        let s = self.slot();
        match s.tag {
            Tag::Null => Value::Null,
            Tag::True => Value::Bool(true),
            Tag::False => Value::Bool(false),
            Tag::U64 | Tag::I64 | Tag::F64 => self
                .number()
                .map_or(Value::Null, |n| Value::Number(n.to_number())),
            Tag::Str => Value::String(self.doc.str_at(s).to_owned()),
            Tag::Array => Value::Array(
                self.elements()
                    .into_iter()
                    .flatten()
                    .map(DocRef::to_value)
                    .collect(),
            ),
            Tag::Object => Value::Object(
                self.members()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.to_owned(), v.to_value()))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }
}

impl DocNumber {
    fn to_number(self) -> Number {
        match self {
            DocNumber::U64(n) => n.into(),
            DocNumber::I64(n) => n.into(),
            // Finite by construction.
            DocNumber::F64(f) => Number::from_f64(f).unwrap_or_else(|| 0.into()),
        }
    }
}

/// An object's members: `(key, value)`.
#[derive(Clone)]
pub(crate) struct Members<'a> {
    doc: &'a Doc,
    at: u32,
    left: u32,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, DocRef<'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = self.doc.slot(self.at);
        let value = key.next;
        self.at = self.doc.slot(value).next;
        Some((
            self.doc.str_at(key),
            DocRef {
                doc: self.doc,
                idx: value,
            },
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for Members<'_> {}

/// An array's elements.
#[derive(Clone)]
pub(crate) struct Elements<'a> {
    doc: &'a Doc,
    at: u32,
    left: u32,
}

impl<'a> Iterator for Elements<'a> {
    type Item = DocRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let idx = self.at;
        self.at = self.doc.slot(idx).next;
        Some(DocRef { doc: self.doc, idx })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for Elements<'_> {}

// ---------------------------------------------------------------------------
// JSON Schema: `jsonschema`'s custom representation traits.

/// The [`Doc`] representation for `jsonschema`.
pub(crate) struct DocJson;

impl Json for DocJson {
    type Node<'a> = DocRef<'a>;
    type PreparedKey = Box<str>;
    type StringBuffer = Doc;

    // A lookup scans the members, so one pass over them is never worse.
    const KEYS_PER_LOOKUP: usize = 1 << 16;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>(buffer: &mut Doc, string: &str, f: impl FnOnce(DocRef<'_>) -> T) -> T {
        buffer.text.clear();
        buffer.text.push_str(string);
        buffer.nodes.clear();
        let end = u32::try_from(string.len()).unwrap_or(u32::MAX);
        buffer.plain = end;
        buffer.nodes.push(Slot {
            tag: Tag::Str,
            next: 1,
            a: 0,
            b: end,
        });
        f(buffer.root())
    }
}

impl JsonNumber for DocNumber {
    fn as_u64(&self) -> Option<u64> {
        match *self {
            DocNumber::U64(n) => Some(n),
            DocNumber::I64(n) => u64::try_from(n).ok(),
            DocNumber::F64(_) => None,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match *self {
            DocNumber::U64(n) => i64::try_from(n).ok(),
            DocNumber::I64(n) => Some(n),
            DocNumber::F64(_) => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        Some(match *self {
            DocNumber::U64(n) => n as f64,
            DocNumber::I64(n) => n as f64,
            DocNumber::F64(f) => f,
        })
    }

    fn as_str(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_number().to_string())
    }

    fn to_number(&self) -> Cow<'_, Number> {
        Cow::Owned(DocNumber::to_number(*self))
    }

    fn is_integer(&self) -> bool {
        match *self {
            DocNumber::U64(_) | DocNumber::I64(_) => true,
            DocNumber::F64(f) => f.fract() == 0.0,
        }
    }

    fn is_written_as_integer(&self) -> bool {
        !matches!(self, DocNumber::F64(_))
    }
}

impl<'a> SchemaNode<'a, DocJson> for DocRef<'a> {
    type Object = DocRef<'a>;
    type Array = DocRef<'a>;
    type Number = DocNumber;

    fn as_object(&self) -> Option<DocRef<'a>> {
        (self.slot().tag == Tag::Object).then_some(*self)
    }

    fn as_array(&self) -> Option<DocRef<'a>> {
        (self.slot().tag == Tag::Array).then_some(*self)
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        DocRef::as_str(self).map(Cow::Borrowed)
    }

    fn as_number(&self) -> Option<DocNumber> {
        self.number()
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.slot().tag {
            Tag::True => Some(true),
            Tag::False => Some(false),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        self.slot().tag == Tag::Null
    }

    fn json_type(&self) -> JsonType {
        match self.slot().tag {
            Tag::Null => JsonType::Null,
            Tag::True | Tag::False => JsonType::Boolean,
            Tag::U64 | Tag::I64 | Tag::F64 => JsonType::Number,
            Tag::Str => JsonType::String,
            Tag::Array => JsonType::Array,
            Tag::Object => JsonType::Object,
        }
    }

    fn equals_value(&self, expected: &Value) -> bool {
        match (self.slot().tag, expected) {
            (Tag::Str, Value::String(s)) => DocRef::as_str(self) == Some(s.as_str()),
            (Tag::Str, _) => false,
            (Tag::Null, v) => v.is_null(),
            (Tag::True, v) => v.as_bool() == Some(true),
            (Tag::False, v) => v.as_bool() == Some(false),
            _ => jsonschema::json::cmp::equal(&DocRef::to_value(*self), expected),
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(DocRef::to_value(*self))
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::tagged(
            std::ptr::from_ref(self.doc) as usize,
            self.idx,
        ))
    }
}

impl<'a> Object<'a, DocJson> for DocRef<'a> {
    type Node = DocRef<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        self.slot().a as usize
    }

    fn get(&self, key: &Box<str>) -> Option<DocRef<'a>> {
        DocRef::get(self, key)
    }

    fn members(&self) -> Members<'a> {
        DocRef::members(self).unwrap_or(Members {
            doc: self.doc,
            at: 0,
            left: 0,
        })
    }

    fn try_for_each_name_node<B>(
        &self,
        _buffer: &mut Doc,
        mut f: impl FnMut(DocRef<'_>) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        // Keys are string nodes of the document already.
        let mut at = self.idx + 1;
        for _ in 0..self.slot().a {
            f(self.at(at))?;
            at = self.doc.slot(self.doc.slot(at).next).next;
        }
        ControlFlow::Continue(())
    }
}

impl<'a> Array<'a, DocJson> for DocRef<'a> {
    type Node = DocRef<'a>;
    type ElementsIter = Elements<'a>;

    fn len(&self) -> usize {
        self.slot().a as usize
    }

    fn elements(&self) -> Elements<'a> {
        DocRef::elements(self).unwrap_or(Elements {
            doc: self.doc,
            at: 0,
            left: 0,
        })
    }
}

// ---------------------------------------------------------------------------
// serde: typed deserialization straight from the document.

/// Why a typed read failed (the message only; the caller names the path).
pub(crate) type DeError = de::value::Error;

/// Typed reads that take one JSON type and hand it to the visitor as
/// `deserialize_any` would, or refuse any other.
macro_rules! only {
    ($($method:ident => $is:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                if self.slot().tag.$is() {
                    self.deserialize_any(visitor)
                } else {
                    Err(de::Error::invalid_type(self.unexpected(), &visitor))
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for DocRef<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let s = self.slot();
        match s.tag {
            Tag::Null => visitor.visit_unit(),
            Tag::True => visitor.visit_bool(true),
            Tag::False => visitor.visit_bool(false),
            Tag::U64 | Tag::I64 | Tag::F64 => match self.number() {
                Some(DocNumber::U64(n)) => visitor.visit_u64(n),
                Some(DocNumber::I64(n)) => visitor.visit_i64(n),
                Some(DocNumber::F64(f)) => visitor.visit_f64(f),
                None => visitor.visit_unit(),
            },
            Tag::Str => visitor.visit_borrowed_str(self.doc.str_at(s)),
            Tag::Array => {
                let mut seq = SeqDoc {
                    it: Array::elements(&self),
                };
                let value = visitor.visit_seq(&mut seq)?;
                if seq.it.next().is_some() {
                    return Err(de::Error::invalid_length(
                        s.a as usize,
                        &"fewer elements in array",
                    ));
                }
                Ok(value)
            }
            Tag::Object => {
                let mut map = MapDoc {
                    it: Object::members(&self),
                    value: None,
                };
                let value = visitor.visit_map(&mut map)?;
                if map.it.next().is_some() {
                    return Err(de::Error::invalid_length(s.a as usize, &"fewer elements in map"));
                }
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.slot().tag == Tag::Null {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.slot().tag {
            Tag::Str => visitor.visit_enum(self.doc.str_at(self.slot()).into_deserializer()),
            Tag::Object => {
                let mut members = DocRef::members(&self).into_iter().flatten();
                match (members.next(), members.next()) {
                    (Some((variant, value)), None) => visitor.visit_enum(EnumDoc { variant, value }),
                    _ => Err(de::Error::invalid_value(
                        de::Unexpected::Map,
                        &"map with a single key",
                    )),
                }
            }
            _ => Err(de::Error::invalid_type(self.unexpected(), &"string or map")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    // Each typed read takes only the JSON type `serde_json` takes for it,
    // so a visitor that accepts more (a field or variant identifier takes
    // an index, some visitors take numbers as strings) sees what it would
    // see from `serde_json::from_slice`.
    only! {
        deserialize_bool => is_bool,
        deserialize_i8 => is_number, deserialize_i16 => is_number,
        deserialize_i32 => is_number, deserialize_i64 => is_number,
        deserialize_u8 => is_number, deserialize_u16 => is_number,
        deserialize_u32 => is_number, deserialize_u64 => is_number,
        deserialize_f32 => is_number, deserialize_f64 => is_number,
        // Integers wider than 64 bits are numbers past `u64` here, kept as
        // `f64`: refused (`serde_json` reads them exactly).
        deserialize_i128 => is_integer, deserialize_u128 => is_integer,
        deserialize_char => is_str, deserialize_str => is_str,
        deserialize_string => is_str, deserialize_identifier => is_str,
        deserialize_unit => is_null,
        deserialize_seq => is_array,
        deserialize_map => is_object,
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.slot().tag {
            Tag::Str => visitor.visit_borrowed_bytes(self.doc.str_at(self.slot()).as_bytes()),
            Tag::Array => self.deserialize_any(visitor),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // An array (fields in order) or an object, as `serde_json` takes.
        match self.slot().tag {
            Tag::Array | Tag::Object => self.deserialize_any(visitor),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }
}

impl Tag {
    fn is_bool(self) -> bool {
        matches!(self, Tag::True | Tag::False)
    }

    fn is_number(self) -> bool {
        matches!(self, Tag::U64 | Tag::I64 | Tag::F64)
    }

    fn is_integer(self) -> bool {
        matches!(self, Tag::U64 | Tag::I64)
    }

    fn is_str(self) -> bool {
        self == Tag::Str
    }

    fn is_null(self) -> bool {
        self == Tag::Null
    }

    fn is_array(self) -> bool {
        self == Tag::Array
    }

    fn is_object(self) -> bool {
        self == Tag::Object
    }
}

impl DocRef<'_> {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match self.slot().tag {
            Tag::Null => de::Unexpected::Unit,
            Tag::True => de::Unexpected::Bool(true),
            Tag::False => de::Unexpected::Bool(false),
            Tag::U64 | Tag::I64 | Tag::F64 => de::Unexpected::Other("number"),
            Tag::Str => de::Unexpected::Other("string"),
            Tag::Array => de::Unexpected::Seq,
            Tag::Object => de::Unexpected::Map,
        }
    }
}

struct SeqDoc<'de> {
    it: Elements<'de>,
}

impl<'de> SeqAccess<'de> for SeqDoc<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        self.it.next().map(|v| seed.deserialize(v)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.it.len())
    }
}

struct MapDoc<'de> {
    it: Members<'de>,
    value: Option<DocRef<'de>>,
}

impl<'de> MapAccess<'de> for MapDoc<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let escaped = self.it.left > 0 && self.it.doc.slot(self.it.at).a >= self.it.doc.plain;
        match self.it.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(KeyDoc { key, escaped }).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(value) => seed.deserialize(value),
            None => Err(de::Error::custom("value is missing")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.it.len())
    }
}

/// `{"Variant": value}`.
struct EnumDoc<'de> {
    variant: &'de str,
    value: DocRef<'de>,
}

impl<'de> de::EnumAccess<'de> for EnumDoc<'de> {
    type Error = DeError;
    type Variant = DocRef<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, DocRef<'de>), DeError> {
        let variant = seed.deserialize(KeyDoc {
            key: self.variant,
            escaped: false,
        })?;
        Ok((variant, self.value))
    }
}

impl<'de> de::VariantAccess<'de> for DocRef<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_struct("", fields, visitor)
    }
}

/// An object key: a string, also readable as a number or a boolean
/// (`HashMap<u32, _>`), exactly as `serde_json` reads keys: the key as
/// written (no escape) must be one JSON number (or `true`/`false`) and
/// nothing else, so `"07"`, `"+7"`, `" 7"` and `"\u0037"` are not numbers.
struct KeyDoc<'de> {
    key: &'de str,
    escaped: bool,
}

impl KeyDoc<'_> {
    /// The key as one JSON number, read as the document's numbers are.
    fn number(&self) -> Option<DocNumber> {
        if self.escaped {
            return None;
        }
        let mut p = Parser {
            b: self.key.as_bytes(),
            i: 0,
            nodes: Vec::with_capacity(1),
            text: String::new(),
            depth: MAX_DEPTH,
            keys: Vec::new(),
        };
        p.number().ok()?;
        if p.i != self.key.len() {
            return None;
        }
        p.nodes.first().and_then(|slot| slot.number())
    }

    /// The key as a JSON integer of any width (`i128`, `u128`):
    /// `-?(0|[1-9][0-9]*)` and nothing else.
    fn integer(&self) -> Option<&str> {
        let digits = self.key.strip_prefix('-').unwrap_or(self.key);
        let plain = !self.escaped
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || digits.bytes().next().is_some_and(|b| (b'1'..=b'9').contains(&b)));
        plain.then_some(self.key)
    }
}

macro_rules! number_key {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                match self.number() {
                    Some(DocNumber::U64(n)) => visitor.visit_u64(n),
                    Some(DocNumber::I64(n)) => visitor.visit_i64(n),
                    Some(DocNumber::F64(f)) => visitor.visit_f64(f),
                    None => Err(de::Error::invalid_type(de::Unexpected::Str(self.key), &visitor)),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for KeyDoc<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(self.key)
    }

    number_key! {
        deserialize_i8, deserialize_i16, deserialize_i32, deserialize_i64,
        deserialize_u8, deserialize_u16, deserialize_u32, deserialize_u64,
        deserialize_f32, deserialize_f64,
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.integer().map(str::parse::<i128>) {
            Some(Ok(n)) => visitor.visit_i128(n),
            Some(Err(_)) => Err(de::Error::custom("number out of range")),
            None => Err(de::Error::invalid_type(de::Unexpected::Str(self.key), &visitor)),
        }
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.integer().map(str::parse::<u128>) {
            Some(Ok(n)) => visitor.visit_u128(n),
            Some(Err(_)) => Err(de::Error::custom("number out of range")),
            None => Err(de::Error::invalid_type(de::Unexpected::Str(self.key), &visitor)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match (self.escaped, self.key) {
            (false, "true") => visitor.visit_bool(true),
            (false, "false") => visitor.visit_bool(false),
            _ => Err(de::Error::invalid_type(de::Unexpected::Str(self.key), &visitor)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_enum(self.key.into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map
        struct identifier ignored_any
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly where its input is wrong
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::{BTreeMap, HashMap};

    fn same_as_serde_json(text: &str) {
        let ours = Doc::parse(text.as_bytes()).map(|d| d.root().to_value());
        let theirs = serde_json::from_str::<Value>(text);
        match (ours, theirs) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{text}");
                // Floats to the bit, and `-0` as `-0.0`.
                assert_eq!(a.to_string(), b.to_string(), "{text}");
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{text}: ours {a:?}, serde_json {b:?}"),
        }
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            "null",
            "true",
            "false",
            "0",
            "-0",
            "1",
            "-1",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1.5",
            "-1.5e3",
            "1E+2",
            "2e-3",
            "0.1",
            "123456789.123456789e-5",
            "1e308",
            "1e309",
            "-1e400",
            "01",
            "1.",
            ".5",
            "1e",
            "-",
            "+1",
            "0x10",
            "1.0e+",
            r#""""#,
            r#""a\"b\\c\/d\b\f\n\r\t""#,
            r#""\u00e9\u20ac""#,
            r#""\ud83d\ude00""#,
            r#""\ud83d""#,
            r#""\ude00""#,
            r#""\ud83dx""#,
            r#""\ud83d\u0041""#,
            r#""\u12""#,
            r#""\x""#,
            "\"a\u{1}b\"",
            "\"caf\u{e9}\"",
            r#""unterminated"#,
            "[]",
            "[1,2,[3,{}]]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{}",
            r#"{"a":1,"b":[true,null]}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":1 "b":2}"#,
            " \t\n\r[ 1 , 2 ] \n",
            "[1] x",
            "",
            " ",
            "nul",
            "tru",
            "[",
            "{",
            r#"{"a":"#,
        ] {
            same_as_serde_json(text);
        }
        assert!(Doc::parse(b"\"\xff\"").is_err());
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        for depth in [126, 127, 128, 129, 400] {
            same_as_serde_json(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
            let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
            same_as_serde_json(&objects);
        }
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth_and_any_size() {
        let dup = |text: &str| matches!(Doc::parse(text.as_bytes()), Err(JsonError::DuplicateKey));
        assert!(dup(r#"{"a":1,"a":2}"#));
        assert!(dup(r#"{"a":1,"\u0061":2}"#), "escaped spelling of the same key");
        assert!(dup(r#"[{"x":{"a":1,"b":2,"a":3}}]"#));
        assert!(
            !dup(r#"{"a":{"a":1},"b":{"a":2}}"#),
            "equal keys in sibling objects"
        );
        // Past the small-object path too.
        let many: Vec<String> = (0..40).map(|n| format!(r#""k{n}":{n}"#)).collect();
        assert!(Doc::parse(format!("{{{}}}", many.join(",")).as_bytes()).is_ok());
        let mut repeated = many.clone();
        repeated.push(r#""k17":0"#.to_owned());
        assert!(dup(&format!("{{{}}}", repeated.join(","))));
    }

    #[test]
    fn keeps_document_order_and_reads_members() {
        let doc = Doc::parse(br#"{"z":1,"a":{"b":["x","y\n"]},"m":-2}"#).unwrap();
        let root = doc.root();
        let keys: Vec<&str> = root.members().unwrap().map(|(k, _)| k).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        let b = root.get("a").and_then(|a| a.get("b")).unwrap();
        let items: Vec<&str> = b.elements().unwrap().filter_map(|e| e.as_str()).collect();
        assert_eq!(items, ["x", "y\n"]);
        assert_eq!(root.get("z").and_then(|z| z.as_u64()), Some(1));
        assert_eq!(root.get("m").and_then(|m| m.as_u64()), None);
        assert!(root.get("missing").is_none());
        assert!(root.get("z").unwrap().get("z").is_none());
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Plain,
        Tagged(u32),
        Pair { a: i64, b: bool },
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Typed {
        id: String,
        amount: i64,
        ratio: f64,
        note: Option<String>,
        missing: Option<u8>,
        kinds: Vec<Kind>,
        by_number: HashMap<u32, String>,
        nested: BTreeMap<String, Vec<u8>>,
        #[serde(default)]
        skipped: bool,
    }

    #[test]
    fn deserializes_like_serde_json() {
        let text = r#"{"id":"evt_\u0031","amount":-5,"ratio":0.25,"note":null,
            "kinds":["plain",{"tagged":7},{"pair":{"a":-1,"b":true}}],
            "by_number":{"1":"one","20":"twenty"},"nested":{"x":[1,2]},
            "extra":{"ignored":[1,{"deep":null}]}}"#;
        let doc = Doc::parse(text.as_bytes()).unwrap();
        let ours = Typed::deserialize(doc.root()).unwrap();
        let theirs: Typed = serde_json::from_str(text).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours.id, "evt_1");
    }

    #[test]
    fn a_shape_mismatch_names_its_path() {
        let text = r#"{"id":"x","amount":1,"ratio":1,"note":"n","kinds":["plain","other"],
            "by_number":{},"nested":{}}"#;
        let doc = Doc::parse(text.as_bytes()).unwrap();
        let rejection = crate::json::typed_doc::<Typed>(doc.root()).unwrap_err();
        assert_eq!(rejection.pointer(), Some("/kinds/1"));
        let wrong = Doc::parse(br#"{"id":5}"#).unwrap();
        let rejection = crate::json::typed_doc::<Typed>(wrong.root()).unwrap_err();
        assert_eq!(rejection.pointer(), Some("/id"));
    }

    #[test]
    fn validates_through_jsonschema() {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["id", "data"],
            "properties": {
                "id": {"type": "string", "pattern": "^evt_", "maxLength": 8},
                "kind": {"enum": ["a", "b", 3]},
                "data": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}},
                "list": {"type": "array", "items": {"type": "number"}, "uniqueItems": true}
            },
            "propertyNames": {"maxLength": 4},
            "additionalProperties": false
        });
        let validator = jsonschema::options_for::<DocJson>().build(&schema).unwrap();
        let ok = |text: &str| {
            let doc = Doc::parse(text.as_bytes()).unwrap();
            let reference: Value = serde_json::from_str(text).unwrap();
            let ours = validator.is_valid(doc.root());
            assert_eq!(ours, jsonschema::is_valid(&schema, &reference), "{text}");
            ours
        };
        assert!(ok(r#"{"id":"evt_1","data":{"n":2},"kind":"b","list":[1,2.5]}"#));
        assert!(ok(r#"{"id":"evt_1","data":{},"kind":3}"#));
        assert!(!ok(r#"{"id":"evt_1"}"#));
        assert!(!ok(r#"{"id":"x_1","data":{}}"#));
        assert!(!ok(r#"{"id":"evt_123456","data":{}}"#));
        assert!(!ok(r#"{"id":"evt_1","data":{"n":0}}"#));
        assert!(!ok(r#"{"id":"evt_1","data":{"n":1.5}}"#));
        assert!(!ok(r#"{"id":"evt_1","data":{},"kind":"c"}"#));
        assert!(!ok(r#"{"id":"evt_1","data":{},"list":[1,1.0]}"#));
        assert!(!ok(r#"{"id":"evt_1","data":{},"other":1}"#));
        assert!(!ok(r#"{"id":"evt_1","data":{},"longname":1}"#));
        assert!(!ok("[1]"));
        let doc = Doc::parse(br#"{"id":"evt_1","data":{"n":0}}"#).unwrap();
        let error = validator.validate(doc.root()).unwrap_err();
        assert_eq!(error.instance_path().to_string(), "/data/n");
    }

    #[test]
    fn a_dropped_documents_buffers_serve_the_next_parse_and_nothing_of_it_shows() {
        let long = format!(r#"{{"a":"{}","b":[1,2,3],"c":"\u00e9"}}"#, "x".repeat(900));
        let first = Doc::parse(long.as_bytes()).unwrap();
        let text = first.text.as_ptr();
        drop(first);
        let second = Doc::parse(br#"{"b":"short"}"#).unwrap();
        assert_eq!(second.text.as_ptr(), text, "the spare text buffer was reused");
        assert_eq!(second.root().to_value(), serde_json::json!({"b": "short"}));
        assert_eq!(second.text, r#"{"b":"short"}"#);
        drop(second);
        // A refused body gives its buffers back too, and a big one is not kept.
        assert!(Doc::parse(b"[1,").is_err());
        let big = format!("[{}1]", "1,".repeat(40_000));
        drop(Doc::parse(big.as_bytes()).unwrap());
        let spare = SPARE.with(std::cell::Cell::take);
        assert!(spare.is_none(), "a document past the bound is freed, not kept");
    }

    #[test]
    fn debug_never_shows_the_content() {
        let doc = Doc::parse(br#"{"secret":"hunter2"}"#).unwrap();
        assert!(!format!("{doc:?} {:?}", doc.root()).contains("hunter2"));
    }
}
