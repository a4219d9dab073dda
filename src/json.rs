//! Strict JSON: one parse of a verified body into a `serde_json::Value`
//! that refuses duplicate object keys.
//!
//! `serde_json::Value` silently keeps the last of two equal keys, while a
//! derived struct errors on them: a schema check on the `Value` and a typed
//! handler would then disagree about the same bytes. Refusing duplicates at
//! the one parse removes the disagreement.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::{Rejection, RejectionKind};

/// Why a body is not acceptable JSON.
#[derive(Debug)]
pub(crate) enum JsonError {
    /// Not JSON at all (or nested too deep, or trailing bytes).
    Syntax,
    /// An object repeats a key.
    DuplicateKey,
}

/// Parses `bytes` as one JSON value, refusing duplicate keys.
pub(crate) fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let duplicate = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match (StrictSeed {
        duplicate: &duplicate,
    })
    .deserialize(&mut de)
    {
        Ok(value) => {
            de.end().map_err(|_| JsonError::Syntax)?;
            Ok(value)
        }
        Err(_) if duplicate.get() => Err(JsonError::DuplicateKey),
        Err(_) => Err(JsonError::Syntax),
    }
}

#[derive(Clone, Copy)]
struct StrictSeed<'a> {
    duplicate: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor { seed: self })
    }
}

struct StrictVisitor<'a> {
    seed: StrictSeed<'a>,
}

impl<'de> Visitor<'de> for StrictVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.seed.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(self.seed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // Members are gathered in document order; duplicates are found on a
        // sorted list of the keys (equal keys end up side by side), and the
        // map is built from all members at once (`BTreeMap` sorts them and
        // builds in one pass; with serde_json's `preserve_order` the
        // document order is kept). Cheaper than a search for the duplicate
        // check plus a search per insert.
        let mut members: Vec<(String, Value)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.seed)?;
            members.push((key, value));
        }
        if members.len() > 1 {
            let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
            keys.sort_unstable();
            if keys.windows(2).any(|pair| pair[0] == pair[1]) {
                self.seed.duplicate.set(true);
                return Err(de::Error::custom("duplicate object key"));
            }
        }
        Ok(Value::Object(members.into_iter().collect::<Map<String, Value>>()))
    }
}

/// Deserializes `T` from an already parsed value; a mismatch is a 422
/// naming the JSON pointer of the first failing member (never its value).
pub(crate) fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, Rejection> {
    // The fast path; the path-tracking deserializer (several times slower)
    // runs only to name the failing member.
    if let Ok(typed) = T::deserialize(value) {
        return Ok(typed);
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let pointer = pointer_of(e.path());
        Rejection::new(
            RejectionKind::InvalidPayload,
            format!("the payload does not have the shape the handler expects at {pointer:?}"),
        )
        .with_pointer(pointer)
    })
}

/// A serde path as an RFC 6901 JSON pointer (`/data/object/id`).
fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        out.push('/');
        match segment {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push_str(&key.replace('~', "~0").replace('/', "~1"))
            }
            Segment::Unknown => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_serde_json() {
        let body = br#"{"a":[1,-2,3.5,"x",true,null,{"b":{}}],"c":"\u00e9"}"#;
        let strict = parse_strict(body).ok();
        let plain: Option<Value> = serde_json::from_slice(body).ok();
        assert!(strict.is_some());
        assert_eq!(strict, plain);
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        assert!(matches!(
            parse_strict(br#"{"a":1,"a":2}"#),
            Err(JsonError::DuplicateKey)
        ));
        assert!(matches!(
            parse_strict(br#"{"x":[{"k":1,"k":1}]}"#),
            Err(JsonError::DuplicateKey)
        ));
        // Escapes are decoded before comparing: "\u0061" is "a".
        assert!(matches!(
            parse_strict(br#"{"a":1,"\u0061":2}"#),
            Err(JsonError::DuplicateKey)
        ));
        assert!(parse_strict(br#"{"a":{"a":1}}"#).is_ok());
    }

    #[test]
    fn refuses_non_json() {
        for body in [&b""[..], b"{", b"{} {}", b"\xff", b"[1,]", b"nul"] {
            assert!(matches!(parse_strict(body), Err(JsonError::Syntax)), "{body:?}");
        }
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(matches!(parse_strict(deep.as_bytes()), Err(JsonError::Syntax)));
    }
}
