//! The user manual: threat model, promises and layer order.
#![doc = include_str!("../docs/manual.md")]
