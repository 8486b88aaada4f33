//! Edge detection: the agent runs the Sigma rules of its rule pack on every event it ships.
//!
//! `[detect]` in the configuration names rule files or directories and the field mappings.
//! For each event, after normalization:
//! - rules that match tag it: `vigie.detections` (`[{rule_id, title, level}]`) and
//!   `vigie.rulepack` (the pack's version); the pipeline then seals the batch at once, so a
//!   detection does not wait for the batch timeout;
//! - filter rules (custom attribute `vigie: {action: drop}`, or ids listed in
//!   `detect.drop_rules`) drop the event: noise never crosses the network. A drop is counted
//!   per rule and reported in the agent's stats (not as data loss: it is what the rule asks).
//!   An event that a detection rule also matches is kept and tagged, never dropped.
//!
//! The pack is reloaded when its files change (checked every `reload_interval_secs`): the new
//! pack replaces the old one between two events, so no event is lost or evaluated twice. A
//! pack that cannot be read keeps the previous one in use; rules it rejects are logged.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{json, Value};
use vigie_detect::{Action, LoadOptions, LoadReport, RuleSet};
use vigie_event::Event;
use vigie_wire::DetectStats;

/// `[detect]`: edge detection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectSection {
    /// Sigma rule files or directories (walked for `*.yml` / `*.yaml`). Empty: detection off.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// Field-mapping files or directories (pySigma pipelines, as in Vigie's `rules/mappings/`).
    #[serde(default)]
    pub mappings: Vec<PathBuf>,
    /// Values of the `%name%` placeholders used by rules with the `expand` modifier.
    #[serde(default)]
    pub placeholders: BTreeMap<String, Vec<String>>,
    /// Ids of rules whose matches are dropped as noise (like `vigie: {action: drop}`).
    #[serde(default)]
    pub drop_rules: Vec<String>,
    /// How often rule files are checked for changes, in seconds (0: never reload).
    #[serde(default = "default_reload_interval_secs")]
    pub reload_interval_secs: u64,
}

fn default_reload_interval_secs() -> u64 {
    10
}

impl DetectSection {
    /// Resolves relative paths against the configuration file's directory.
    pub fn resolve(&mut self, base: &Path) {
        for p in self.rules.iter_mut().chain(self.mappings.iter_mut()) {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Whether detection is on.
    pub fn enabled(&self) -> bool {
        !self.rules.is_empty()
    }
}

/// Loads the pack `cfg` describes.
pub fn load_pack(cfg: &DetectSection) -> anyhow::Result<(RuleSet, LoadReport)> {
    let opts = LoadOptions {
        mappings: vigie_detect::load_mappings(&cfg.mappings)?,
        placeholders: cfg.placeholders.clone(),
        drop_rules: cfg.drop_rules.iter().cloned().collect::<BTreeSet<_>>(),
        disabled: BTreeSet::new(),
        only_central: false,
    };
    Ok(RuleSet::load(&cfg.rules, &opts)?)
}

/// What to do with an event after detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No rule matched.
    Pass,
    /// Detections were added to the event.
    Tagged,
    /// A filter rule matched: the event is dropped.
    Drop,
}

/// The agent's detect stage.
pub struct EdgeDetector {
    cfg: DetectSection,
    set: RuleSet,
    /// Modification times and sizes of the pack's files when it was loaded.
    files: Vec<(PathBuf, Option<SystemTime>, u64)>,
    stats: Arc<Mutex<DetectStats>>,
}

impl EdgeDetector {
    /// Loads the pack; `None` when detection is off.
    pub fn start(cfg: &DetectSection) -> anyhow::Result<Option<Self>> {
        if !cfg.enabled() {
            return Ok(None);
        }
        let files = pack_files(cfg);
        let (set, report) = load_pack(cfg)?;
        log_report(&set, &report);
        let stats = DetectStats {
            rulepack: set.version().to_owned(),
            rules: set.len() as u64,
            ..DetectStats::default()
        };
        Ok(Some(Self {
            cfg: cfg.clone(),
            set,
            files,
            stats: Arc::new(Mutex::new(stats)),
        }))
    }

    /// The counters, shared with the stats reporter.
    pub fn stats(&self) -> Arc<Mutex<DetectStats>> {
        self.stats.clone()
    }

    /// Runs the rules on `ev` and tags it (or tells to drop it).
    pub fn apply(&self, ev: &mut Event) -> Verdict {
        let matches = self.set.evaluate(ev);
        let verdict = if matches.is_empty() {
            Verdict::Pass
        } else if matches.iter().all(|r| r.action == Action::Drop) {
            Verdict::Drop
        } else {
            Verdict::Tagged
        };
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.events_evaluated += 1;
        match verdict {
            Verdict::Pass => {}
            Verdict::Drop => {
                for r in &matches {
                    *stats.filtered.entry(r.id.clone()).or_insert(0) += 1;
                }
            }
            Verdict::Tagged => {
                stats.events_tagged += 1;
                drop(stats);
                let detections: Vec<Value> = matches
                    .iter()
                    .filter(|r| r.action == Action::Tag)
                    .map(|r| json!({"rule_id": r.id, "title": r.title, "level": r.level}))
                    .collect();
                ev.set("vigie.detections", Value::Array(detections));
                ev.set("vigie.rulepack", self.set.version());
            }
        }
        verdict
    }

    /// Reloads the pack if one of its files changed (or appeared, or went away). A pack that
    /// cannot be read keeps the current one.
    pub fn reload_if_changed(&mut self) {
        let files = pack_files(&self.cfg);
        if files == self.files {
            return;
        }
        self.files = files;
        match load_pack(&self.cfg) {
            Ok((set, report)) => {
                log_report(&set, &report);
                tracing::info!(old = %self.set.version(), new = %set.version(), rules = set.len(), "rule pack reloaded");
                let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                stats.rulepack = set.version().to_owned();
                stats.rules = set.len() as u64;
                self.set = set;
            }
            Err(e) => {
                tracing::error!(error = %e, version = %self.set.version(), "rule pack cannot be reloaded; the previous one stays in use");
                self.stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .reload_failures += 1;
            }
        }
    }

    /// How often to look for changes (`None`: never).
    pub fn reload_interval(&self) -> Option<std::time::Duration> {
        (self.cfg.reload_interval_secs > 0)
            .then(|| std::time::Duration::from_secs(self.cfg.reload_interval_secs))
    }
}

/// Every file of the pack (rules and mappings) with its modification time and size.
fn pack_files(cfg: &DetectSection) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut paths = vigie_detect::rule_files(&cfg.rules).unwrap_or_default();
    paths.extend(vigie_detect::rule_files(&cfg.mappings).unwrap_or_default());
    paths
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let mtime = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map_or(0, |m| m.len());
            (p, mtime, len)
        })
        .collect()
}

fn log_report(set: &RuleSet, report: &LoadReport) {
    for r in &report.rejected {
        tracing::warn!(file = %r.file.display(), id = r.id.as_deref().unwrap_or("-"), reason = %r.reason, "rule rejected");
    }
    tracing::info!(
        version = %set.version(),
        loaded = report.loaded,
        rejected = report.rejected.len(),
        "rule pack loaded"
    );
}
