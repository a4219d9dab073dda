//! Payload types that take each path of a serde `Deserializer`: structs
//! with optional and defaulted fields, integers of every width (range
//! errors), `char`, unit, tuples, maps with numeric keys, externally,
//! internally, adjacently and un-tagged enums (the last three buffer
//! through `deserialize_any`), flattened members and unknown fields
//! refused. Shared by the property tests and the `json_schema` fuzz
//! target, which compare typed reads with `serde_json::from_slice`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct Event {
    pub id: Option<String>,
    pub n: Option<i32>,
    pub s: Option<u8>,
    #[serde(default)]
    pub list: Vec<f64>,
    pub kind: Option<Kind>,
    pub obj: Option<BTreeMap<String, u16>>,
    pub by_number: Option<BTreeMap<u32, bool>>,
    pub pair: Option<(i8, String)>,
    pub unit: Option<()>,
    pub a: Option<char>,
    pub b: Option<Box<Event>>,
    pub tagged: Option<Tagged>,
    pub loose: Option<Loose>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    A,
    B(i64),
    C { x: bool },
    D(u8, u8),
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Tagged {
    Paid { amount: u64 },
    Failed { reason: Option<String> },
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub(crate) enum Loose {
    Int(i64),
    Float(f64),
    Text(String),
    Flag(bool),
    List(Vec<Loose>),
    Map(BTreeMap<String, Loose>),
    Null(()),
}

#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct Flattened {
    pub id: Option<u64>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "type", content = "c", rename_all = "lowercase")]
pub(crate) enum Adjacent {
    Paid(u64),
    Failed { reason: Option<String> },
    C,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Strict {
    pub id: String,
    #[serde(default)]
    pub n: u64,
}
