//! Central detection: the collector's rule pack, evaluated on the events that were not
//! evaluated at the edge with the same pack, and its correlations, fed with every detection.
//!
//! - **The pack** is the rule files of `[detection] rules` plus the rules posted through the
//!   API, minus the ids disabled through the API, with the mappings of `[detection] mappings`.
//!   It is built from named texts ([`vigie_detect::RuleSet::load_sources`]); the same texts are
//!   served to agents (`GET /v1/rulepack`), so an agent on this pack reports the same version
//!   and its events are trusted: an event whose `vigie.rulepack` equals the pack's version is
//!   not evaluated again (edge detection really offloads the collector).
//! - **Central matches** are added to the event before it is stored, as
//!   `vigie.detections: [{rule_id, title, level, origin: "central"}]` (edge tags kept).
//! - **Correlations** get every stored event with detections of the rules they refer to, in
//!   event-time order (see [`vigie_detect::Correlator`]); a firing becomes an alert with
//!   origin `correlation`, grouped by the correlation's group-by values. The state is saved to
//!   the database every `state_save_interval_secs` and at a clean stop, and restored at start.
//! - **Reloads** (a rule posted, enabled, disabled or deleted) build a new pack and swap it in
//!   between two batches; the correlation state carries over.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use vigie_detect::{
    Action, CorrelationHit, Correlator, CorrelatorConfig, CorrelatorStats, LoadOptions, LoadReport,
    Rejection, RuleSet,
};

use crate::config::DetectionConfig;
use crate::db::{Db, NewDetection};

/// Name under which API rules appear in the pack: `api/<id>.yml`.
pub fn api_source_name(id: &str) -> String {
    format!("api/{id}.yml")
}

/// Why a pack could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CentralError {
    #[error("{0}")]
    Detect(#[from] vigie_detect::DetectError),
    #[error("{0}")]
    Db(#[from] crate::db::DbError),
    #[error("mapping {name}: {reason}")]
    Mapping { name: String, reason: String },
}

/// One rule or correlation of the pack, as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleInfo {
    pub id: String,
    pub title: String,
    pub level: String,
    /// `detection` or `correlation`.
    pub kind: &'static str,
    /// `api`, or the rule file's name in the pack.
    pub origin: String,
    pub enabled: bool,
    /// Whether its matches raise alerts of their own (false: it only feeds correlations).
    pub alerts: bool,
}

/// A built pack: the rules, what agents are served, and what the API lists.
pub struct Pack {
    pub set: RuleSet,
    /// Its `vigie: {scope: central}` rules: run on events the edge evaluated with this pack.
    pub central: RuleSet,
    pub revision: i64,
    pub report: LoadReport,
    /// The rule texts, by name (files, then API rules).
    pub sources: Vec<(String, String)>,
    /// The mapping texts, by name.
    pub mappings: Vec<(String, String)>,
    pub placeholders: std::collections::BTreeMap<String, Vec<String>>,
    pub disabled: Vec<String>,
    /// Ids of the rules posted through the API.
    pub api_ids: BTreeSet<String>,
    /// The options the pack was loaded with (mappings, placeholders, disabled ids).
    load_options: LoadOptions,
}

impl Pack {
    pub fn version(&self) -> &str {
        self.set.version()
    }

    /// The options this pack was loaded with, to load other rules the same way (the
    /// retro-hunts of [`crate::hunts`]).
    pub fn load_options(&self) -> LoadOptions {
        self.load_options.clone()
    }

    /// Every rule and correlation, enabled ones from the pack and disabled ones by id.
    pub fn list(&self) -> Vec<RuleInfo> {
        let origin = |id: &str, file: &str| {
            if self.api_ids.contains(id) {
                "api".to_owned()
            } else {
                file.to_owned()
            }
        };
        let mut out: Vec<RuleInfo> = self
            .set
            .rules()
            .map(|r| RuleInfo {
                id: r.id.clone(),
                title: r.title.clone(),
                level: r.level.clone(),
                kind: "detection",
                origin: origin(&r.id, &r.file.display().to_string()),
                enabled: true,
                alerts: r.alert && r.action == Action::Tag,
            })
            .collect();
        for c in self.set.correlations() {
            let id =
                c.id.clone()
                    .or_else(|| c.name.clone())
                    .unwrap_or_else(|| c.title.clone());
            out.push(RuleInfo {
                origin: origin(&id, "file"),
                id,
                title: c.title.clone(),
                level: c.level.map_or("medium", |l| l.as_str()).to_owned(),
                kind: "correlation",
                enabled: true,
                alerts: true,
            });
        }
        for id in &self.disabled {
            if !out.iter().any(|r| &r.id == id) {
                out.push(RuleInfo {
                    id: id.clone(),
                    title: String::new(),
                    level: String::new(),
                    kind: "disabled",
                    origin: origin(id, "file"),
                    enabled: false,
                    alerts: false,
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The rejections of one source (an API rule).
    pub fn rejections_of(&self, name: &str) -> Vec<&Rejection> {
        self.report
            .rejected
            .iter()
            .filter(|r| r.file.as_os_str() == name)
            .collect()
    }
}

/// What [`Central::evaluate`] did to a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EvalCounts {
    /// Events evaluated here.
    pub evaluated: u64,
    /// Events evaluated at the edge with this pack, trusted.
    pub trusted: u64,
    /// Central matches added.
    pub matches: u64,
    /// Events marked as new (`vigie.novelty.*`).
    pub novel: u64,
}

/// Central detection state, shared by the ingest handlers.
pub struct Central {
    cfg: DetectionConfig,
    db: Arc<Db>,
    pack: RwLock<Arc<Pack>>,
    /// The packs of the groups of `[detection.groups]`, rebuilt with the pack.
    groups: RwLock<Arc<BTreeMap<String, Arc<Pack>>>>,
    correlator: Mutex<Correlator>,
    novelty: crate::novelty::Novelty,
    /// Serializes reloads.
    reloading: Mutex<()>,
}

fn correlator_cfg(cfg: &DetectionConfig) -> CorrelatorConfig {
    let c = &cfg.correlation;
    CorrelatorConfig {
        lateness_secs: c.lateness_secs,
        max_pending: c.max_pending_events,
        max_state_entries: c.max_state_entries,
        max_group_entries: c.max_group_entries,
    }
}

impl Central {
    /// Builds the pack and restores the saved correlation state.
    pub fn start(cfg: &DetectionConfig, db: Arc<Db>) -> Result<Central, CentralError> {
        let pack = build_pack(cfg, &db)?;
        let mut correlator = Correlator::new(&pack.set, correlator_cfg(cfg))?;
        if let Some(saved) = db.correlation_state()? {
            if let Err(e) = correlator.restore(&saved) {
                tracing::warn!(error = %e, "the saved correlation state is not usable; correlations start empty");
            }
        }
        let groups = build_group_packs(cfg, &db, pack.revision)?;
        Ok(Central {
            cfg: cfg.clone(),
            novelty: crate::novelty::Novelty::new(db.clone()),
            db,
            pack: RwLock::new(Arc::new(pack)),
            groups: RwLock::new(Arc::new(groups)),
            correlator: Mutex::new(correlator),
            reloading: Mutex::new(()),
        })
    }

    /// The pack in use.
    pub fn pack(&self) -> Arc<Pack> {
        self.pack.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The pack of agent group `group`: its own when `[detection.groups]` names it, else
    /// the collector's.
    pub fn pack_for(&self, group: Option<&str>) -> Arc<Pack> {
        if let Some(g) = group {
            let groups = self
                .groups
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(p) = groups.get(g) {
                return p.clone();
            }
        }
        self.pack()
    }

    /// The group packs, by group.
    pub fn group_packs(&self) -> Arc<BTreeMap<String, Arc<Pack>>> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Builds a pack with `extra` API rules added (or replacing same-id ones) without using it:
    /// what a `POST /api/v1/rules` would give.
    pub fn try_pack(&self, extra: &[(String, String)]) -> Result<Pack, CentralError> {
        let _guard = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        build_pack_with(&self.cfg, &self.db, extra)
    }

    /// Builds the pack again (rules changed) and swaps it in; the correlation state carries
    /// over (correlations that left the pack lose theirs).
    pub fn reload(&self) -> Result<Arc<Pack>, CentralError> {
        let _guard = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let pack = Arc::new(build_pack(&self.cfg, &self.db)?);
        let groups = Arc::new(build_group_packs(&self.cfg, &self.db, pack.revision)?);
        let mut fresh = Correlator::new(&pack.set, correlator_cfg(&self.cfg))?;
        {
            let mut corr = self.correlator.lock().unwrap_or_else(|e| e.into_inner());
            let saved = corr.snapshot()?;
            if let Err(e) = fresh.restore(&saved) {
                tracing::warn!(error = %e, "correlation state not carried over to the new pack");
            }
            *corr = fresh;
            *self.pack.write().unwrap_or_else(|e| e.into_inner()) = pack.clone();
            *self.groups.write().unwrap_or_else(|e| e.into_inner()) = groups;
        }
        tracing::info!(version = %pack.version(), revision = pack.revision, rules = pack.set.len(), correlations = pack.set.correlations().len(), "rule pack reloaded");
        Ok(pack)
    }

    /// Marks what is new (see [`crate::novelty`]), then runs the pack of agent group `group`
    /// (see [`Central::pack_for`]; `None` for intakes and connectors) on the events that were
    /// not evaluated with it at the edge (and its central-scope rules on those that were),
    /// adding its matches to `vigie.detections`.
    pub fn evaluate(&self, events: &mut [Map<String, Value>], group: Option<&str>) -> EvalCounts {
        let pack = self.pack_for(group);
        let mut counts = EvalCounts {
            novel: self.novelty.mark(events, Utc::now()),
            ..EvalCounts::default()
        };
        if pack.set.is_empty() {
            return counts;
        }
        let version = pack.version();
        for ev in events.iter_mut() {
            let evaluated_with =
                vigie_event::get_path(ev, "vigie.rulepack").and_then(Value::as_str);
            let set = if evaluated_with == Some(version) {
                counts.trusted += 1;
                if pack.central.is_empty() {
                    continue;
                }
                &pack.central
            } else {
                counts.evaluated += 1;
                &pack.set
            };
            let matches = set.evaluate_map(ev);
            let matches: Vec<_> = matches.iter().filter(|r| r.action == Action::Tag).collect();
            if matches.is_empty() {
                continue;
            }
            let vigie = ev
                .entry("vigie")
                .or_insert_with(|| Value::Object(Map::new()));
            if !vigie.is_object() {
                *vigie = Value::Object(Map::new());
            }
            let Some(vigie) = vigie.as_object_mut() else {
                continue;
            };
            let dets = vigie
                .entry("detections")
                .or_insert_with(|| Value::Array(Vec::new()));
            if !dets.is_array() {
                *dets = Value::Array(Vec::new());
            }
            let Some(dets) = dets.as_array_mut() else {
                continue;
            };
            for r in matches {
                let known = dets
                    .iter()
                    .any(|d| d.get("rule_id").and_then(Value::as_str) == Some(r.id.as_str()));
                if !known {
                    counts.matches += 1;
                    dets.push(json!({"rule_id": r.id, "title": r.title, "level": r.level, "origin": "central"}));
                }
            }
        }
        counts
    }

    /// Whether a detection of `rule_id` raises an alert of its own (false for rules that
    /// only feed correlations; true for rules this pack does not know).
    pub fn alerts_on(&self, rule_id: &str) -> bool {
        self.find_rule(rule_id, |r| r.alert).unwrap_or(true)
    }

    /// `f` of the rule `rule_id` of the collector's pack, else of the first group pack that
    /// has it.
    fn find_rule<T>(&self, rule_id: &str, f: impl Fn(&vigie_detect::Rule) -> T) -> Option<T> {
        if let Some(r) = self.pack().set.rule(rule_id) {
            return Some(f(r));
        }
        self.group_packs()
            .values()
            .find_map(|p| p.set.rule(rule_id).map(|r| f(r)))
    }

    /// The grouping fields of a rule that sets its own (`vigie: {group_by: [...]}`).
    pub fn group_by(&self, rule_id: &str) -> Option<Vec<String>> {
        self.find_rule(rule_id, |r| r.group_by.clone())
            .filter(|g| !g.is_empty())
    }

    /// Feeds stored events and the rules they matched to the correlations; returns the
    /// alerts-to-be of the correlations that fired.
    pub fn correlate(
        &self,
        events: &[(&Map<String, Value>, Vec<&str>)],
        now: DateTime<Utc>,
    ) -> Vec<NewDetection> {
        let mut corr = self.correlator.lock().unwrap_or_else(|e| e.into_inner());
        if corr.is_empty() {
            return Vec::new();
        }
        let mut hits = Vec::new();
        for (ev, rules) in events {
            if !rules.iter().any(|r| corr.wants(r)) {
                continue;
            }
            let ts = vigie_event::get_path(ev, "@timestamp")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map_or_else(|| now.timestamp(), |t| t.timestamp());
            hits.extend(corr.push(ev, rules, ts, now.timestamp()));
        }
        hits.extend(corr.advance(now.timestamp()));
        drop(corr);
        hits.into_iter().map(|h| hit_detection(&h)).collect()
    }

    /// Moves the watermark with the clock (no new events needed); returns what fired.
    pub fn tick(&self, now: DateTime<Utc>) -> Vec<NewDetection> {
        self.correlate(&[], now)
    }

    /// Saves the correlation state.
    pub fn save_state(&self) -> Result<(), CentralError> {
        let snapshot = {
            let corr = self.correlator.lock().unwrap_or_else(|e| e.into_inner());
            corr.snapshot()?
        };
        self.db.save_correlation_state(&snapshot, Utc::now())?;
        Ok(())
    }

    /// Correlation counters and sizes.
    pub fn correlation_stats(&self) -> (CorrelatorStats, usize, usize) {
        let corr = self.correlator.lock().unwrap_or_else(|e| e.into_inner());
        (corr.stats(), corr.states(), corr.pending())
    }

    /// How often to save the correlation state.
    pub fn save_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.cfg.correlation.state_save_interval_secs.max(1))
    }
}

/// The alert-to-be of a correlation firing: entities are its group-by values, the grouping
/// key is the correlation and those values, the event id is derived from them and the time,
/// so the same firing is never counted twice.
fn hit_detection(h: &CorrelationHit) -> NewDetection {
    let mut entities = Map::new();
    for (field, value) in &h.group {
        entities.insert(field.clone(), Value::String(value.clone()));
    }
    let group_key = serde_json::to_string(&h.group).unwrap_or_default();
    let mut digest = Sha256::new();
    digest.update(h.rule.id.as_bytes());
    digest.update([0]);
    digest.update(group_key.as_bytes());
    digest.update(h.at_secs.to_le_bytes());
    let event_id = format!("corr-{}", &hex::encode(digest.finalize())[..32]);
    NewDetection {
        agent_id: "collector".into(),
        event_id,
        urgency: crate::alerts::urgency(&h.rule.level),
        rule_id: h.rule.id.clone(),
        rule_title: h.rule.title.clone(),
        rule_level: h.rule.level.clone(),
        group_key,
        entities: Value::Object(entities).to_string(),
        origin: "correlation",
        at: DateTime::from_timestamp(h.at_secs, 0).unwrap_or_else(Utc::now),
    }
}

fn build_pack(cfg: &DetectionConfig, db: &Db) -> Result<Pack, CentralError> {
    build_pack_with(cfg, db, &[])
}

fn build_pack_with(
    cfg: &DetectionConfig,
    db: &Db,
    extra: &[(String, String)],
) -> Result<Pack, CentralError> {
    build_pack_for(cfg, db, extra, None)
}

/// Each group's pack: the collector's rule files, the group's own, the API rules; minus the
/// rules disabled through the API and those the group leaves out.
fn build_group_packs(
    cfg: &DetectionConfig,
    db: &Db,
    revision: i64,
) -> Result<BTreeMap<String, Arc<Pack>>, CentralError> {
    let mut out = BTreeMap::new();
    for (name, group) in &cfg.groups {
        let mut pack = build_pack_for(cfg, db, &[], Some(group))?;
        pack.revision = revision;
        tracing::info!(group = %name, version = %pack.version(), rules = pack.set.len(), "group rule pack built");
        out.insert(name.clone(), Arc::new(pack));
    }
    Ok(out)
}

fn build_pack_for(
    cfg: &DetectionConfig,
    db: &Db,
    extra: &[(String, String)],
    group: Option<&crate::config::GroupPackConfig>,
) -> Result<Pack, CentralError> {
    let mut sources = vigie_detect::read_sources(&cfg.rules)?;
    if let Some(g) = group {
        sources.extend(vigie_detect::read_sources(&g.rules)?);
    }
    let mut api: HashMap<String, String> = db
        .api_rules()?
        .into_iter()
        .map(|r| (r.id, r.yaml))
        .collect();
    for (id, yaml) in extra {
        api.insert(id.clone(), yaml.clone());
    }
    let mut api_ids: Vec<&String> = api.keys().collect();
    api_ids.sort();
    for id in &api_ids {
        sources.push((api_source_name(id), api[*id].clone()));
    }
    let mappings = vigie_detect::read_sources(&cfg.mappings)?;
    let mut pipelines = Vec::new();
    for (name, text) in &mappings {
        let p = vigie_detect::parse_mapping(text).map_err(|reason| CentralError::Mapping {
            name: name.clone(),
            reason,
        })?;
        pipelines.push(p);
    }
    let mut disabled = db.disabled_rules()?;
    if let Some(g) = group {
        disabled.extend(g.disabled.iter().cloned());
        disabled.sort();
        disabled.dedup();
    }
    let opts = LoadOptions {
        mappings: pipelines,
        placeholders: cfg.placeholders.clone(),
        drop_rules: BTreeSet::new(),
        disabled: disabled.iter().cloned().collect(),
        only_central: false,
    };
    let (set, report) = RuleSet::load_sources(&sources, &opts);
    let (central, _) = RuleSet::load_sources(
        &sources,
        &LoadOptions {
            only_central: true,
            ..opts.clone()
        },
    );
    for r in &report.rejected {
        tracing::warn!(file = %r.file.display(), id = r.id.as_deref().unwrap_or(""), reason = %r.reason, "rule rejected");
    }
    let revision = if extra.is_empty() && group.is_none() {
        db.rulepack_revision(
            set.version(),
            set.len(),
            set.correlations().len(),
            Utc::now(),
        )?
    } else {
        0
    };
    Ok(Pack {
        set,
        central,
        revision,
        report,
        sources,
        mappings,
        placeholders: cfg.placeholders.clone(),
        disabled,
        api_ids: api.into_keys().collect(),
        load_options: opts,
    })
}
