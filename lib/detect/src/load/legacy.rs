//! The older correlation syntax (Sigma's first correlation proposal), rewritten into the
//! SigmaHQ v2 form before parsing:
//!
//! ```yaml
//! action: correlation          # v2: no action, a `correlation:` mapping
//! type: event_count            # -> correlation.type (`temporal` + `ordered: true` ->
//! rule: failed_login           #    temporal_ordered); rule / rules -> correlation.rules
//! group-by: [User]             # -> correlation.group-by
//! timespan: 10m                # -> correlation.timespan
//! condition: {gte: 5}          # -> correlation.condition
//! ```
//!
//! `aliases`, `generate` and `field` move under `correlation:` too; `title`, `id`, `name`,
//! `level` and the other metadata stay where they are. Texts without `action: correlation`
//! are left alone (and not re-serialized).

use serde::Deserialize;
use yaml_serde::{Mapping, Value};

/// Keys that move under `correlation:`.
const MOVED: [&str; 7] = [
    "type",
    "rules",
    "group-by",
    "timespan",
    "condition",
    "aliases",
    "generate",
];

/// The text with its legacy correlation documents rewritten, or `None` when there are none
/// (or the text is not YAML: the parser then reports it as it is).
pub(crate) fn upgrade(text: &str) -> Option<String> {
    if !text.contains("correlation") || !text.contains("action") {
        return None;
    }
    let mut docs = Vec::new();
    let mut changed = false;
    for doc in yaml_serde::Deserializer::from_str(text) {
        let mut value = Value::deserialize(doc).ok()?;
        if let Some(m) = value.as_mapping_mut() {
            if m.get("action").and_then(Value::as_str) == Some("correlation") {
                rewrite(m);
                changed = true;
            }
        }
        docs.push(value);
    }
    if !changed {
        return None;
    }
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(&doc).ok()?);
    }
    Some(out)
}

fn rewrite(m: &mut Mapping) {
    m.remove("action");
    let mut corr = Mapping::new();
    if let Some(rule) = m.remove("rule") {
        corr.insert("rules".into(), rule);
    }
    for key in MOVED {
        if let Some(v) = m.remove(key) {
            corr.insert(key.into(), v);
        }
    }
    let ordered = m.remove("ordered").and_then(|v| v.as_bool()) == Some(true);
    if ordered && corr.get("type").and_then(Value::as_str) == Some("temporal") {
        corr.insert("type".into(), "temporal_ordered".into());
    }
    m.insert("correlation".into(), Value::Mapping(corr));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_documents_move_under_correlation() {
        let text = "title: Failed\nid: r1\nlogsource: {product: linux}\ndetection: {s: {a: b}, condition: s}\n---\naction: correlation\ntitle: Many\ntype: temporal\nordered: true\nrule: [r1, r2]\ngroup-by: [User]\ntimespan: 5m\n";
        let out = upgrade(text).unwrap();
        let docs: Vec<Value> = yaml_serde::Deserializer::from_str(&out)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].get("id").and_then(Value::as_str), Some("r1"));
        let c = docs[1].get("correlation").unwrap();
        assert_eq!(
            c.get("type").and_then(Value::as_str),
            Some("temporal_ordered")
        );
        assert_eq!(c.get("timespan").and_then(Value::as_str), Some("5m"));
        assert!(c.get("rules").unwrap().as_sequence().is_some());
        assert!(docs[1].get("action").is_none());
        assert_eq!(upgrade("title: x\naction: global\n"), None);
    }
}
