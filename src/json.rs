//! Strict JSON: one parse of a verified body into a `serde_json::Value`
//! that refuses duplicate object keys.
//!
//! `serde_json::Value` silently keeps the last of two equal keys, while a
//! derived struct errors on them: a schema check on the `Value` and a typed
//! handler would then disagree about the same bytes. Refusing duplicates at
//! the one parse removes the disagreement.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::{Rejection, RejectionKind};

mod doc;

pub(crate) use doc::{Doc, DocJson, DocRef};

/// Why a body is not acceptable JSON.
#[derive(Debug)]
pub(crate) enum JsonError {
    /// Not JSON at all (or nested too deep, or trailing bytes).
    Syntax,
    /// An object repeats a key.
    DuplicateKey,
}

/// Parses `bytes` as one JSON value, refusing duplicate keys, into a
/// `serde_json::Value` (built from the one [`Doc`] parse).
pub(crate) fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    Doc::parse(bytes).map(|doc| doc.root().to_value())
}

/// The string value of the member `key` of a top-level JSON object, read
/// without building the document: the whole text is checked for syntax
/// and every other value is skipped. `None` when the text is not a JSON
/// object, the member is absent or not a string, or the top level names
/// it twice. Duplicate keys below the top level are not looked for (the
/// strict parse, [`parse_strict`], refuses them).
pub(crate) fn top_level_str(bytes: &[u8], key: &str) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let found = de.deserialize_map(MemberVisitor { key }).ok()?;
    de.end().ok()?;
    found
}

/// Reads one member of an object, skipping the rest.
struct MemberVisitor<'k> {
    key: &'k str,
}

impl<'de> Visitor<'de> for MemberVisitor<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut found: Option<Option<String>> = None;
        while let Some(is_key) = map.next_key_seed(KeyIs(self.key))? {
            if !is_key {
                map.next_value::<de::IgnoredAny>()?;
            } else if found.is_some() {
                return Err(de::Error::custom("duplicate object key"));
            } else {
                // A value of another type is skipped, and counts as found.
                found = Some(map.next_value::<StrOrOther>()?.0);
            }
        }
        Ok(found.flatten())
    }
}

/// Whether a key is the wanted one, without allocating it.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

/// A string value, or `None` for any other JSON value (skipped).
struct StrOrOther(Option<String>);

impl<'de> serde::Deserialize<'de> for StrOrOther {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrOrOther;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_str<E>(self, v: &str) -> Result<StrOrOther, E> {
                Ok(StrOrOther(Some(v.to_owned())))
            }

            fn visit_bool<E>(self, _: bool) -> Result<StrOrOther, E> {
                Ok(StrOrOther(None))
            }

            fn visit_i64<E>(self, _: i64) -> Result<StrOrOther, E> {
                Ok(StrOrOther(None))
            }

            fn visit_u64<E>(self, _: u64) -> Result<StrOrOther, E> {
                Ok(StrOrOther(None))
            }

            fn visit_f64<E>(self, _: f64) -> Result<StrOrOther, E> {
                Ok(StrOrOther(None))
            }

            fn visit_unit<E>(self) -> Result<StrOrOther, E> {
                Ok(StrOrOther(None))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrOrOther, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(StrOrOther(None))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrOrOther, A::Error> {
                while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(StrOrOther(None))
            }
        }
        deserializer.deserialize_any(V)
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
    serde_path_to_error::deserialize(value).map_err(|e| mismatch(e.path()))
}

/// [`typed`] from the one parse of a body, without a `Value`.
pub(crate) fn typed_doc<T: serde::de::DeserializeOwned>(doc: DocRef<'_>) -> Result<T, Rejection> {
    if let Ok(typed) = T::deserialize(doc) {
        return Ok(typed);
    }
    serde_path_to_error::deserialize(doc).map_err(|e| mismatch(e.path()))
}

fn mismatch(path: &serde_path_to_error::Path) -> Rejection {
    let pointer = pointer_of(path);
    Rejection::new(
        RejectionKind::InvalidPayload,
        format!("the payload does not have the shape the handler expects at {pointer:?}"),
    )
    .with_pointer(pointer)
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
    fn top_level_member_agrees_with_the_strict_parse() {
        let cases: &[&[u8]] = &[
            br#"{"id":"evt_1","type":"invoice.paid","data":{"object":{"type":"nested"}}}"#,
            br#"{"data":{"type":"nested"},"type":"a\u0062c"}"#,
            br#"{"type":1}"#,
            br#"{"type":null}"#,
            br#"{"type":["x"]}"#,
            br#"{"other":"x"}"#,
            br#"{"typ\u0065":"escaped-key"}"#,
            br#"["type","x"]"#,
            br#""type""#,
            br#"{"type":"x"} trailing"#,
            br#"{"type":"x""#,
            br#"{"type":"x","type":"y"}"#,
            br#"  {"type" : "spaced" }  "#,
            b"",
        ];
        for case in cases {
            let strict = parse_strict(case)
                .ok()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
            assert_eq!(
                top_level_str(case, "type"),
                strict,
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        // Below the top level, duplicates are not looked for.
        let nested = br#"{"type":"t","data":{"a":1,"a":2}}"#;
        assert!(parse_strict(nested).is_err());
        assert_eq!(top_level_str(nested, "type").as_deref(), Some("t"));
    }

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
