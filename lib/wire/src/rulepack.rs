//! `GET /v1/rulepack`: the rule pack the collector serves to its agents.
//!
//! The body is JSON: the pack's version (`sha256-…`, also the `ETag`), the collector's
//! revision number, the rule and mapping texts by name, the placeholder values and the ids of
//! disabled rules. An agent loading these texts with these options gets the same version,
//! and the collector trusts the detections of events stamped with it. A request with
//! `If-None-Match: "<version>"` for the current version gets `304 Not Modified`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The path of the rule pack.
pub const RULEPACK_PATH: &str = "/v1/rulepack";

/// Largest rule pack body an agent accepts (the texts of a few thousand rules).
pub const MAX_RULEPACK_BYTES: usize = 64 * 1024 * 1024;

/// A named text: a rule file or a mapping file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedText {
    pub name: String,
    pub text: String,
}

/// The rule pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rulepack {
    /// The pack's version; the agent stamps evaluated events with it (`vigie.rulepack`).
    pub version: String,
    /// The collector's revision number of this version (increasing).
    pub revision: i64,
    pub rules: Vec<NamedText>,
    pub mappings: Vec<NamedText>,
    #[serde(default)]
    pub placeholders: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub disabled: Vec<String>,
}
