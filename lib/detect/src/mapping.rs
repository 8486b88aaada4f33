//! Field mappings: SigmaHQ field names to Vigie's ECS fields, per logsource.
//!
//! A mapping file is a pySigma processing pipeline (the format Sigma users already write):
//! `field_name_mapping` transformations gated by `logsource` rule conditions. When a file is
//! evaluated, an event that lacks a mapped ECS field is looked up under the rule's own field
//! name (`process.executable`, else `Image`), so an event that arrives raw, without
//! normalization, still matches the rule on its original names.
//!
//! Placeholders (`%admins%` with the `expand` modifier) come from the configuration and are
//! applied by a last pipeline; a rule whose placeholder is not supplied is rejected.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rsigma_eval::pipeline::Transformation;
use rsigma_eval::pipeline::{parse_pipeline, Pipeline};
use rsigma_parser::{Detection, Modifier, SigmaRule, SigmaValue};

use crate::DetectError;

/// Largest mapping file read.
const MAX_MAPPING_BYTES: u64 = 4 * 1024 * 1024;

/// Loads every `*.yml` / `*.yaml` pipeline in `dir` (sorted by name; the pipelines' own
/// `priority` then orders them).
pub fn load_mapping_dir(dir: &Path) -> Result<Vec<Pipeline>, DetectError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DetectError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| is_yaml(p))
        .collect();
    files.sort();
    files.iter().map(|f| load_mapping_file(f)).collect()
}

/// Loads the mappings of `paths`: each a directory (see [`load_mapping_dir`]) or a file.
pub fn load_mappings(paths: &[PathBuf]) -> Result<Vec<Pipeline>, DetectError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(load_mapping_dir(p)?);
        } else {
            out.push(load_mapping_file(p)?);
        }
    }
    Ok(out)
}

/// Loads one mapping pipeline.
pub fn load_mapping_file(path: &Path) -> Result<Pipeline, DetectError> {
    let text = crate::load::read_capped(path, MAX_MAPPING_BYTES)?;
    parse_mapping(&text).map_err(|reason| DetectError::Mapping {
        path: path.to_owned(),
        reason,
    })
}

/// Parses a mapping pipeline from YAML text. The pipeline's name gets the digest of the text,
/// so that a pack's version changes exactly when a mapping file does.
pub fn parse_mapping(text: &str) -> Result<Pipeline, String> {
    use sha2::Digest;
    let mut pipeline = parse_pipeline(text).map_err(|e| e.to_string())?;
    let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
    pipeline.name = format!("{}#{}", pipeline.name, &digest[..16]);
    Ok(pipeline)
}

/// ECS name -> the Sigma names mapped to it. Looked up for every field an event lacks, so
/// hashed with FxHash (short keys from our own rule files, not attacker-chosen).
pub(crate) type Fallbacks = HashMap<String, Vec<String>, rustc_hash::FxBuildHasher>;

/// For every ECS name the mappings produce, the Sigma names mapped to it: an event that lacks
/// the ECS field is looked up under those names (a raw, unnormalized event). Done in the event
/// view rather than as alternatives in the rule, so that `Field: null` and `exists: false`
/// keep their meaning (absent under *both* names).
pub(crate) fn fallbacks(pipelines: &[Pipeline]) -> Fallbacks {
    let mut out = Fallbacks::default();
    for p in pipelines {
        for item in &p.transformations {
            if let Transformation::FieldNameMapping { mapping } = &item.transformation {
                for (from, targets) in mapping {
                    for to in targets {
                        if to != from {
                            let names = out.entry(to.clone()).or_default();
                            if !names.contains(from) {
                                names.push(from.clone());
                                names.sort();
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The pipeline that expands `%name%` placeholders from the configuration. It runs after
/// every mapping (highest priority number).
pub fn placeholder_pipeline(placeholders: &BTreeMap<String, Vec<String>>) -> Pipeline {
    let vars: HashMap<String, Vec<String>> = placeholders
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut pipeline = parse_pipeline(
        "name: vigie placeholders\npriority: 1000\ntransformations:\n  - type: value_placeholders\n",
    )
    .unwrap_or_else(|_| Pipeline {
        name: "vigie placeholders".into(),
        priority: 1000,
        vars: HashMap::new(),
        transformations: Vec::new(),
        finalizers: Vec::new(),
        source_refs: Vec::new(),
    });
    pipeline.vars = vars;
    pipeline
}

/// The `%name%` placeholders a rule's `expand` values use, without the percent signs.
pub(crate) fn placeholders_of(rule: &SigmaRule) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for detection in rule.detection.named.values() {
        placeholders_in(detection, &mut out);
    }
    out
}

fn placeholders_in(detection: &Detection, out: &mut BTreeSet<String>) {
    match detection {
        Detection::AllOf(items) => {
            for item in items {
                if !item.field.modifiers.contains(&Modifier::Expand) {
                    continue;
                }
                for value in &item.values {
                    if let SigmaValue::String(s) = value {
                        names_in(&s.original, out);
                    }
                }
            }
        }
        Detection::AnyOf(subs) | Detection::And(subs) => {
            subs.iter().for_each(|d| placeholders_in(d, out));
        }
        Detection::ArrayMatch { body, .. } => placeholders_in(body, out),
        Detection::Conditional { named, .. } => {
            named.values().for_each(|d| placeholders_in(d, out));
        }
        Detection::Keywords(_) => {}
    }
}

/// Every `%name%` in `text`.
fn names_in(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else { break };
        let name = &after[..end];
        if !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        {
            out.insert(name.to_owned());
            rest = &after[end + 1..];
        } else {
            rest = after;
        }
    }
}

pub(crate) fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml") | Some("yaml")
    )
}
