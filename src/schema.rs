//! JSON Schema validation of verified bodies.
//!
//! A verified body is authentic, not well-formed. [`Schemas`] holds a
//! route's JSON Schemas, compiled once when they are built: a default
//! schema for every event, plus optional schemas for particular event
//! types (both apply when both exist). Attach them with
//! [`VerifierBuilder::schemas`](crate::VerifierBuilder::schemas).
//!
//! The layer validates after the signature is verified and before the
//! dedupe claim, so a malformed delivery never touches the store:
//!
//! - a body that is not JSON: 400 `invalid_json`;
//! - an object that repeats a key: 400 `duplicate_keys` (a generic value
//!   keeps the last key while a derived struct errors: validation and
//!   dispatch must never disagree about the same bytes);
//! - JSON that fails a schema: 422 `schema_violation`, whose problem
//!   document names the JSON pointer of the first failing member (and the
//!   schema keyword) but never echoes the value;
//! - JSON that lacks a member the schema requires: 422 `schema_violation`
//!   whose `pointer` is where the missing member belongs (`/data`, or
//!   `/data/object` when `data` lacks `object`; `~` and `/` in the name are
//!   escaped as `~0` and `~1`, RFC 6901) and whose `detail` names it, as
//!   in `missing required property "data" at "/data"`. The name comes from
//!   the schema, not from the request.
//!
//! The body is parsed once; the same parse feeds validation, the event
//! type, the dedupe key and typed deserialization. Form-encoded bodies
//! (Slack slash commands) are not JSON and skip validation.
//!
//! Schemas are compiled offline: a `$ref` to anything outside the schema
//! itself (a URL or a file) is a [`ConfigError::InvalidSchema`], never a
//! fetch. `pattern` uses the linear-time `regex` engine, so no pattern can
//! backtrack catastrophically on hostile input. Validation stops at the
//! first error.
//!
//! ```
//! use serde_json::json;
//! use webhook_guard::schema::Schemas;
//! use webhook_guard::{Scheme, Verifier};
//!
//! let schemas = Schemas::builder()
//!     .default_schema(json!({"type": "object", "required": ["id", "type", "data"]}))
//!     .event_schema("invoice.paid", json!({
//!         "properties": {"data": {"required": ["object"]}}
//!     }))
//!     .build()?;
//! let stripe = Verifier::builder(Scheme::stripe())
//!     .secret("whsec_test")
//!     .schemas(schemas)
//!     .build()?;
//! # Ok::<(), webhook_guard::ConfigError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonschema::{PatternOptions, Validator};
use serde_json::Value;

use crate::json::{Doc, DocJson, DocRef};
use crate::{ConfigError, Rejection, RejectionKind, VerifiedWebhook};

/// A route's compiled JSON Schemas. Cheap to clone.
#[derive(Clone)]
pub struct Schemas {
    inner: Arc<Inner>,
}

struct Inner {
    default: Option<Validator<DocJson>>,
    by_type: HashMap<String, Validator<DocJson>>,
}

/// Builder for [`Schemas`].
#[must_use]
#[derive(Debug, Default)]
pub struct SchemasBuilder {
    default: Option<Value>,
    by_type: Vec<(String, Value)>,
}

impl Schemas {
    /// Starts an empty set of schemas.
    pub fn builder() -> SchemasBuilder {
        SchemasBuilder::default()
    }

    /// Checks a parsed body whose event type is `event_type`: the default
    /// schema, then the event type's own.
    ///
    /// # Errors
    ///
    /// A 422 [`RejectionKind::SchemaViolation`] naming the first failing
    /// JSON pointer.
    pub fn validate(&self, event_type: Option<&str>, value: &Value) -> Result<(), Rejection> {
        // The schemas are compiled for the layer's own parse of a body; a
        // value is written out and read that way (the same members, so the
        // same answer).
        let bytes = serde_json::to_vec(value).map_err(|_| {
            Rejection::new(
                RejectionKind::SchemaViolation,
                "the value cannot be written as JSON",
            )
        })?;
        let doc = Doc::parse(&bytes).map_err(|_| {
            Rejection::new(
                RejectionKind::SchemaViolation,
                "the value cannot be read back as JSON",
            )
        })?;
        self.validate_doc(event_type, doc.root())
    }

    /// Checks a verified delivery against the schemas, on the delivery's
    /// own parse of its body (the one the dedupe key, the event type and
    /// [`VerifiedWebhook::json`] read; no `serde_json::Value` is built).
    /// What the layer does after verifying, for code that verifies
    /// without the layer. A form-encoded body (Slack slash commands) is
    /// not JSON and passes.
    ///
    /// # Errors
    ///
    /// 400 [`RejectionKind::InvalidJson`] or [`RejectionKind::DuplicateKeys`]
    /// if the body is not acceptable JSON; a 422
    /// [`RejectionKind::SchemaViolation`] naming the first failing JSON
    /// pointer.
    pub fn validate_webhook(&self, hook: &VerifiedWebhook) -> Result<(), Rejection> {
        if hook.is_form_encoded() {
            return Ok(());
        }
        let doc = hook.doc()?;
        self.validate_doc(hook.event_type(), doc)
            .map_err(|r| r.with_provider(hook.provider()))
    }

    /// [`validate`](Self::validate) on the one parse of a body.
    pub(crate) fn validate_doc(&self, event_type: Option<&str>, doc: DocRef<'_>) -> Result<(), Rejection> {
        if let Some(v) = &self.inner.default {
            check(v, doc)?;
        }
        if let Some(v) = event_type.and_then(|t| self.inner.by_type.get(t)) {
            check(v, doc)?;
        }
        Ok(())
    }
}

fn check(validator: &Validator<DocJson>, value: DocRef<'_>) -> Result<(), Rejection> {
    let Err(error) = validator.validate(value) else {
        return Ok(());
    };
    let at = error.instance_path().to_string();
    // A missing member: the schema names it, the client did not choose it,
    // so the pointer and the detail may say which one is missing.
    if let jsonschema::error::ValidationErrorKind::Required {
        property: Value::String(name),
    } = error.kind()
    {
        let pointer = member_pointer(&at, name);
        return Err(Rejection::new(
            RejectionKind::SchemaViolation,
            format!("missing required property {name:?} at {pointer:?}"),
        )
        .with_pointer(pointer));
    }
    let keyword = error
        .schema_path()
        .to_string()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let shown = if at.is_empty() { "/" } else { &at };
    Err(Rejection::new(
        RejectionKind::SchemaViolation,
        format!("the payload fails the route's JSON Schema at {shown:?} (keyword {keyword:?})"),
    )
    .with_pointer(at))
}

/// The JSON pointer (RFC 6901) of member `name` of the object at `parent`:
/// `~` is written `~0` and `/` is written `~1`.
fn member_pointer(parent: &str, name: &str) -> String {
    let mut pointer = String::with_capacity(parent.len() + name.len() + 1);
    pointer.push_str(parent);
    pointer.push('/');
    for c in name.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
    pointer
}

impl fmt::Debug for Schemas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<&str> = self.inner.by_type.keys().map(String::as_str).collect();
        types.sort_unstable();
        f.debug_struct("Schemas")
            .field("default", &self.inner.default.is_some())
            .field("event_types", &types)
            .finish()
    }
}

impl SchemasBuilder {
    /// The schema every event must satisfy.
    pub fn default_schema(mut self, schema: Value) -> Self {
        self.default = Some(schema);
        self
    }

    /// A schema that events of `event_type` must also satisfy.
    pub fn event_schema(mut self, event_type: impl Into<String>, schema: Value) -> Self {
        self.by_type.push((event_type.into(), schema));
        self
    }

    /// Compiles every schema.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSchema`] if a schema is not a valid JSON
    /// Schema, refers to a URL or a file through `$ref`, or uses a
    /// `pattern` the linear-time regex engine does not support
    /// (look-around, back-references).
    pub fn build(self) -> Result<Schemas, ConfigError> {
        let default = self.default.as_ref().map(|s| compile(None, s)).transpose()?;
        let mut by_type = HashMap::new();
        for (event_type, schema) in &self.by_type {
            let validator = compile(Some(event_type), schema)?;
            by_type.insert(event_type.clone(), validator);
        }
        Ok(Schemas {
            inner: Arc::new(Inner { default, by_type }),
        })
    }
}

fn compile(event_type: Option<&str>, schema: &Value) -> Result<Validator<DocJson>, ConfigError> {
    compile_for::<DocJson>(schema).map_err(|reason| ConfigError::InvalidSchema {
        event_type: event_type.map(str::to_owned),
        reason,
    })
}

/// A schema compiled with the route's options (no remote references,
/// linear-time patterns) for the JSON representation `J`: the parsed
/// document here, `serde_json::Value` for the tests that compare the two.
pub(crate) fn compile_for<J: jsonschema::json::Json>(schema: &Value) -> Result<Validator<J>, String> {
    jsonschema::options_for::<J>()
        .offline()
        .with_pattern_options(PatternOptions::regex())
        .build(schema)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas() -> Result<Schemas, ConfigError> {
        Schemas::builder()
            .default_schema(json!({
                "type": "object",
                "required": ["id", "type"],
                "properties": {"id": {"type": "string", "pattern": "^evt_[a-z0-9]+$"}}
            }))
            .event_schema(
                "invoice.paid",
                json!({"required": ["data"], "properties": {"data": {"type": "object", "required": ["object"]}}}),
            )
            .build()
    }

    #[test]
    fn default_then_event_type() {
        let s = schemas().ok();
        let s = s.as_ref();
        let ok = json!({"id": "evt_1", "type": "invoice.paid", "data": {"object": {}}});
        assert!(s.is_some_and(|s| s.validate(Some("invoice.paid"), &ok).is_ok()));
        let no_data = json!({"id": "evt_1", "type": "invoice.paid"});
        assert!(s.is_some_and(|s| s.validate(Some("other"), &no_data).is_ok()));
        let err = s.map(|s| s.validate(Some("invoice.paid"), &no_data));
        assert_eq!(
            err.and_then(|e| e.err()).map(|r| r.kind()),
            Some(RejectionKind::SchemaViolation)
        );
    }

    #[test]
    fn names_the_pointer_never_the_value() {
        let s = schemas().ok();
        let bad = json!({"id": "SECRET-LOOKING-VALUE", "type": "x"});
        let err = s.and_then(|s| s.validate(None, &bad).err());
        assert_eq!(err.as_ref().and_then(|e| e.pointer()), Some("/id"));
        let detail = err.map(|e| e.detail().to_owned()).unwrap_or_default();
        assert!(detail.contains("pattern"), "{detail}");
        assert!(!detail.contains("SECRET-LOOKING-VALUE"), "{detail}");
    }

    /// The rejection for `body` under a default schema `schema`.
    fn violation(schema: Value, body: Value) -> Option<Rejection> {
        let s = Schemas::builder().default_schema(schema).build().ok()?;
        s.validate(None, &body).err()
    }

    #[test]
    fn a_missing_member_is_named_by_its_pointer_and_detail() {
        let schema = json!({
            "type": "object",
            "required": ["type", "timestamp", "data"],
            "properties": {"data": {"type": "object", "required": ["object"]}}
        });
        let r = violation(schema.clone(), json!({"type": "a", "timestamp": "t"}));
        assert_eq!(
            r.as_ref().map(Rejection::kind),
            Some(RejectionKind::SchemaViolation)
        );
        assert_eq!(r.as_ref().and_then(|r| r.pointer()), Some("/data"));
        let detail = r.map(|r| r.detail().to_owned()).unwrap_or_default();
        assert_eq!(detail, r#"missing required property "data" at "/data""#);

        let r = violation(
            schema,
            json!({"type": "a", "timestamp": "t", "data": {"x": "LEAKY-X"}}),
        );
        assert_eq!(r.as_ref().and_then(|r| r.pointer()), Some("/data/object"));
        let detail = r.map(|r| r.detail().to_owned()).unwrap_or_default();
        assert!(
            detail.contains(r#"missing required property "object""#),
            "{detail}"
        );
        assert!(!detail.contains("LEAKY-X"), "{detail}");
    }

    #[test]
    fn a_missing_member_name_is_escaped_per_rfc_6901() {
        let schema = json!({"properties": {"a/b": {"required": ["c~d/e"]}}});
        let r = violation(schema, json!({"a/b": {}}));
        assert_eq!(r.as_ref().and_then(|r| r.pointer()), Some("/a~1b/c~0d~1e"));
        let detail = r.map(|r| r.detail().to_owned()).unwrap_or_default();
        assert!(detail.contains(r#""c~d/e""#), "{detail}");
        assert_eq!(member_pointer("", "~/"), "/~0~1");
        assert_eq!(member_pointer("/x", "plain"), "/x/plain");
    }

    #[test]
    fn dependent_required_names_the_missing_member() {
        let schema = json!({"dependentRequired": {"refund": ["reason"]}});
        let r = violation(schema, json!({"refund": "LEAKY-REFUND"}));
        assert_eq!(r.as_ref().and_then(|r| r.pointer()), Some("/reason"));
        let detail = r.map(|r| r.detail().to_owned()).unwrap_or_default();
        assert!(detail.contains(r#""reason""#), "{detail}");
        assert!(!detail.contains("LEAKY-REFUND"), "{detail}");
    }

    #[test]
    fn a_wrong_type_names_the_pointer_and_keyword_never_the_value() {
        let schema = json!({"properties": {"data": {"type": "object"}}});
        let r = violation(schema, json!({"data": "LEAKY-DATA"}));
        assert_eq!(r.as_ref().and_then(|r| r.pointer()), Some("/data"));
        let detail = r.map(|r| r.detail().to_owned()).unwrap_or_default();
        assert_eq!(
            detail,
            r#"the payload fails the route's JSON Schema at "/data" (keyword "type")"#
        );
    }

    #[test]
    fn remote_refs_are_config_errors() {
        for r in ["https://example.com/s.json", "file:///etc/passwd", "/etc/passwd"] {
            let built = Schemas::builder().default_schema(json!({"$ref": r})).build();
            assert!(
                matches!(built, Err(ConfigError::InvalidSchema { .. })),
                "{r}: {built:?}"
            );
        }
        // A local reference is fine.
        let local = json!({"$defs": {"a": {"type": "string"}}, "$ref": "#/$defs/a"});
        assert!(Schemas::builder().default_schema(local).build().is_ok());
    }

    #[test]
    fn backtracking_patterns_are_refused() {
        let lookaround = json!({"type": "string", "pattern": "^(?=a)a$"});
        let built = Schemas::builder().event_schema("t", lookaround).build();
        assert!(matches!(
            built,
            Err(ConfigError::InvalidSchema { event_type: Some(ref t), .. }) if t == "t"
        ));
    }
}
