//! Retro-hunts: one Sigma detection rule run over the events already stored, in a time range,
//! as a background job whose progress and matches can be read while it runs.
//!
//! - **The rule** is a rule of the collector's pack, by id (enabled or disabled), or the YAML
//!   text of one detection rule. Either way it is loaded with the pack's mappings and
//!   placeholders ([`crate::central::Pack::load_options`]), so it matches what live detection
//!   would. A rule of the pack is loaded from the pack's own texts with every other rule and
//!   correlation left out, so the pack's Sigma filters apply to it as they do live; a YAML
//!   rule gets only the filters of its own text. Correlations are refused: a hunt runs one
//!   detection rule.
//! - **The scan** walks the stored events of `[from, to)` that match the optional pre-filter
//!   (a query in the events search syntax), newest first ([`Store::export`]), and evaluates
//!   the rule on each with [`RuleSet::evaluate_map`], as central detection does: an event's
//!   `vigie.logsource` tags route it to the rule or not exactly as they would live.
//! - **Progress** (`scanned`, `matches_total`, the matches kept) is published every
//!   [`CHUNK_EVENTS`] events, and a cancellation is seen at the same points (and before the
//!   scan starts). `total` counts the events in range when the hunt starts; events stored in
//!   the range during the hunt may be scanned too, so `scanned` can end above `total`.
//! - **Matches**: the first `max_matches` matching events found (the newest) are kept, the
//!   others only counted (`truncated`).
//! - **Jobs** live in memory only ([`Hunts`]): at most [`MAX_RUNNING`] run at once, the last
//!   [`KEPT_HUNTS`] are kept (finished ones are forgotten oldest first), and a restart of the
//!   collector forgets them all.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use vigie_detect::RuleSet;

use crate::central::Pack;
use crate::store::{Query, Store, StoreError};

/// Hunts running at the same time, at most.
pub const MAX_RUNNING: usize = 2;
/// Hunts kept in memory (running or finished), at most.
pub const KEPT_HUNTS: usize = 50;
/// Matching events kept when the request does not say.
pub const DEFAULT_MAX_MATCHES: usize = 1000;
/// Largest `max_matches` accepted.
pub const MAX_MATCHES: usize = 10_000;
/// Events scanned between two progress updates (and cancellation checks).
pub const CHUNK_EVENTS: u64 = 1000;

/// Name the YAML rule of a hunt is loaded under (it shows in rejection reasons).
const YAML_SOURCE_NAME: &str = "hunt.yml";

/// Why a hunt cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HuntError {
    /// No rule or correlation of the pack has this id.
    #[error("no rule {0:?} in the collector's pack (GET /api/v1/rules lists them)")]
    UnknownRule(String),
    /// The rule is a correlation, or the text holds no or several detection rules.
    #[error("a retro-hunt runs one detection rule: {0}")]
    NotOneRule(String),
    /// The rule does not load; the reason is the loader's.
    #[error("the rule is rejected: {0}")]
    Rejected(String),
    /// [`MAX_RUNNING`] hunts are running.
    #[error("{MAX_RUNNING} retro-hunts are running already: wait for one to end, or cancel one (DELETE /api/v1/hunts/{{id}})")]
    Busy,
}

/// The rule a hunt runs.
#[derive(Debug, Clone)]
pub enum HuntRule {
    /// A rule of the pack, by id.
    Id(String),
    /// The YAML text of one detection rule.
    Yaml(String),
}

/// The rule of a hunt, as its JSON shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub id: String,
    pub title: String,
    pub level: String,
}

/// Loads the rule of a hunt the way the pack loads its rules. Returns a set holding that one
/// detection rule, and the rule.
pub fn load_rule(pack: &Pack, rule: &HuntRule) -> Result<(RuleSet, RuleRef), HuntError> {
    let mut opts = pack.load_options();
    opts.only_central = false;
    match rule {
        HuntRule::Id(id) => {
            let listed = pack.list();
            let Some(info) = listed.iter().find(|r| &r.id == id) else {
                return Err(HuntError::UnknownRule(id.clone()));
            };
            if info.kind == "correlation" {
                return Err(HuntError::NotOneRule(format!(
                    "{id} is a correlation; hunt one of the rules it refers to"
                )));
            }
            // Everything else is left out; the pack's filters stay.
            opts.disabled = listed
                .iter()
                .map(|r| r.id.clone())
                .filter(|other| other != id)
                .collect::<BTreeSet<String>>();
            let (set, report) = RuleSet::load_sources(&pack.sources, &opts);
            match set.rule(id) {
                Some(r) => {
                    let found = rule_ref(r);
                    Ok((set, found))
                }
                None => {
                    let reasons = reasons(
                        report
                            .rejected
                            .iter()
                            .filter(|r| r.id.as_deref() == Some(id.as_str())),
                    );
                    if reasons.is_empty() {
                        Err(HuntError::NotOneRule(format!(
                            "{id} is not a detection rule"
                        )))
                    } else {
                        Err(HuntError::Rejected(reasons))
                    }
                }
            }
        }
        HuntRule::Yaml(text) => {
            let limit = vigie_detect::MAX_RULE_FILE_BYTES as usize;
            if text.len() > limit {
                return Err(HuntError::Rejected(format!(
                    "the rule text is larger than {limit} bytes"
                )));
            }
            if text.trim().is_empty() {
                return Err(HuntError::NotOneRule(
                    "the text holds no detection rule".into(),
                ));
            }
            if has_correlation(text) {
                return Err(HuntError::NotOneRule(
                    "the text holds a correlation; hunt one of the rules it refers to".into(),
                ));
            }
            opts.disabled.clear();
            let sources = [(YAML_SOURCE_NAME.to_owned(), text.clone())];
            let (set, report) = RuleSet::load_sources(&sources, &opts);
            if !report.rejected.is_empty() {
                return Err(HuntError::Rejected(reasons(report.rejected.iter())));
            }
            if !set.correlations().is_empty() {
                return Err(HuntError::NotOneRule("the text holds a correlation".into()));
            }
            let first = set.rules().next().map(|r| rule_ref(r));
            match (set.len(), first) {
                (1, Some(found)) => Ok((set, found)),
                (0, _) | (_, None) => Err(HuntError::NotOneRule(
                    "the text holds no detection rule".into(),
                )),
                (n, Some(_)) => Err(HuntError::NotOneRule(format!(
                    "the text holds {n} detection rules"
                ))),
            }
        }
    }
}

fn rule_ref(r: &vigie_detect::Rule) -> RuleRef {
    RuleRef {
        id: r.id.clone(),
        title: r.title.clone(),
        level: r.level.clone(),
    }
}

fn reasons<'a>(rejected: impl Iterator<Item = &'a vigie_detect::Rejection>) -> String {
    rejected
        .map(|r| match &r.id {
            Some(id) => format!("{id}: {}", r.reason),
            None => r.reason.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether one of the YAML documents of `text` is a correlation rule (a top-level
/// `correlation` key). Documents that do not read are left to the rule loader to report.
fn has_correlation(text: &str) -> bool {
    use serde::Deserialize as _;
    yaml_serde::Deserializer::from_str(text)
        .filter_map(|doc| yaml_serde::Value::deserialize(doc).ok())
        .any(|v| {
            v.as_mapping()
                .is_some_and(|m| m.contains_key("correlation"))
        })
}

/// What a hunt runs: the rule, the range and the pre-filter, checked.
pub struct HuntSpec {
    /// The rule, as shown.
    pub rule: RuleRef,
    /// A set holding that one rule ([`load_rule`]).
    pub set: RuleSet,
    /// The pre-filter as given (`None`: every event in range).
    pub query_text: Option<String>,
    /// The pre-filter, parsed.
    pub query: Query,
    /// Start of the range (included).
    pub from: DateTime<Utc>,
    /// End of the range (excluded).
    pub to: DateTime<Utc>,
    /// Matching events kept, at most.
    pub max_matches: usize,
}

/// Where a hunt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HuntStatus {
    #[default]
    Running,
    Done,
    Failed,
    Cancelled,
}

#[derive(Default)]
struct Progress {
    status: HuntStatus,
    scanned: u64,
    total: u64,
    matches_total: u64,
    matches: Vec<Value>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

/// One retro-hunt: its request and its progress, shared by its worker and the API.
pub struct Hunt {
    id: String,
    spec: HuntSpec,
    started_at: DateTime<Utc>,
    cancel: AtomicBool,
    progress: Mutex<Progress>,
}

/// What the scan has found since its last progress update.
#[derive(Default)]
struct Chunk {
    scanned: u64,
    matches: u64,
    kept: Vec<Value>,
}

impl Hunt {
    fn new(spec: HuntSpec) -> Hunt {
        Hunt {
            id: format!("hunt_{}", hex::encode(rand::random::<[u8; 8]>())),
            spec,
            started_at: Utc::now(),
            cancel: AtomicBool::new(false),
            progress: Mutex::new(Progress::default()),
        }
    }

    /// The hunt's id (`hunt_` and 16 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the hunt is.
    pub fn status(&self) -> HuntStatus {
        self.lock().status
    }

    /// Asks a running hunt to stop at its next progress update.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    /// Runs the scan to its end (blocking: call it on a blocking thread), then records how it
    /// ended: `done`, `cancelled`, or `failed` with the store's error.
    pub fn run(&self, store: &Store) {
        let outcome = self.scan(store);
        let mut p = self.lock();
        p.finished_at = Some(Utc::now());
        match outcome {
            Ok(true) => p.status = HuntStatus::Done,
            Ok(false) => p.status = HuntStatus::Cancelled,
            Err(e) => {
                p.status = HuntStatus::Failed;
                p.error = Some(e.to_string());
            }
        }
        tracing::info!(hunt = %self.id, rule = %self.spec.rule.id, status = ?p.status,
            scanned = p.scanned, matches = p.matches_total, "retro-hunt ended");
    }

    /// Marks a hunt that is still running as failed (its worker died).
    pub fn fail(&self, message: impl Into<String>) {
        let mut p = self.lock();
        if p.status == HuntStatus::Running {
            p.status = HuntStatus::Failed;
            p.error = Some(message.into());
            p.finished_at = Some(Utc::now());
        }
    }

    /// Scans the range; `Ok(false)` when cancelled.
    fn scan(&self, store: &Store) -> Result<bool, StoreError> {
        if self.cancelled() {
            return Ok(false);
        }
        let spec = &self.spec;
        let (from, to) = (Some(spec.from), Some(spec.to));
        let total = store.count(&spec.query, from, to)?;
        self.lock().total = total;
        let mut chunk = Chunk::default();
        let mut kept = 0usize;
        let mut stopped = false;
        store.export(&spec.query, from, to, &mut |event| {
            chunk.scanned += 1;
            let matched = event.as_object().is_some_and(|map| {
                spec.set
                    .evaluate_map(map)
                    .iter()
                    .any(|r| r.id == spec.rule.id)
            });
            if matched {
                chunk.matches += 1;
                if kept < spec.max_matches {
                    kept += 1;
                    chunk.kept.push(event);
                }
            }
            if chunk.scanned >= CHUNK_EVENTS {
                self.publish(&mut chunk);
                if self.cancelled() {
                    stopped = true;
                    return false;
                }
            }
            true
        })?;
        self.publish(&mut chunk);
        Ok(!stopped)
    }

    fn publish(&self, chunk: &mut Chunk) {
        let chunk = std::mem::take(chunk);
        let mut p = self.lock();
        p.scanned += chunk.scanned;
        p.matches_total += chunk.matches;
        p.matches.extend(chunk.kept);
    }

    /// The hunt as the API shows it; `matches` only when `with_matches`.
    pub fn to_json(&self, with_matches: bool) -> Value {
        let p = self.lock();
        let mut v = json!({
            "id": self.id,
            "status": p.status,
            "rule": self.spec.rule,
            "from": self.spec.from,
            "to": self.spec.to,
            "query": self.spec.query_text,
            "max_matches": self.spec.max_matches,
            "scanned": p.scanned,
            "total": p.total,
            "matches_total": p.matches_total,
            "truncated": p.matches_total > p.matches.len() as u64,
            "cancel_requested": self.cancelled(),
            "started_at": self.started_at,
            "finished_at": p.finished_at,
            "error": p.error,
        });
        if with_matches {
            if let Some(obj) = v.as_object_mut() {
                obj.insert("matches".into(), Value::Array(p.matches.clone()));
            }
        }
        v
    }
}

/// What [`Hunts::cancel_or_forget`] did.
pub enum Removal {
    /// The hunt is running: it was asked to stop.
    Cancelling(Arc<Hunt>),
    /// The hunt had ended: it is forgotten.
    Forgotten,
}

/// The hunts in memory, oldest first. `Send + Sync`: shared through the API state.
#[derive(Default)]
pub struct Hunts {
    /// Lock order: this, then a hunt's progress.
    jobs: Mutex<VecDeque<Arc<Hunt>>>,
}

impl Hunts {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Hunt>>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new hunt as running, unless [`MAX_RUNNING`] already are
    /// ([`HuntError::Busy`]); forgets the oldest finished hunts beyond [`KEPT_HUNTS`]. The
    /// caller then runs it with [`Hunt::run`] on a blocking thread.
    pub fn register(&self, spec: HuntSpec) -> Result<Arc<Hunt>, HuntError> {
        let mut jobs = self.lock();
        let running = jobs
            .iter()
            .filter(|h| h.status() == HuntStatus::Running)
            .count();
        if running >= MAX_RUNNING {
            return Err(HuntError::Busy);
        }
        let hunt = Arc::new(Hunt::new(spec));
        jobs.push_back(hunt.clone());
        while jobs.len() > KEPT_HUNTS {
            let Some(oldest) = jobs.iter().position(|h| h.status() != HuntStatus::Running) else {
                break;
            };
            jobs.remove(oldest);
        }
        tracing::info!(hunt = %hunt.id, rule = %hunt.spec.rule.id, from = %hunt.spec.from,
            to = %hunt.spec.to, "retro-hunt started");
        Ok(hunt)
    }

    /// A hunt by id.
    pub fn get(&self, id: &str) -> Option<Arc<Hunt>> {
        self.lock().iter().find(|h| h.id == id).cloned()
    }

    /// Every hunt kept, newest first.
    pub fn list(&self) -> Vec<Arc<Hunt>> {
        self.lock().iter().rev().cloned().collect()
    }

    /// Asks a running hunt to stop, or forgets an ended one; `None` when there is no such hunt.
    pub fn cancel_or_forget(&self, id: &str) -> Option<Removal> {
        let mut jobs = self.lock();
        let at = jobs.iter().position(|h| h.id == id)?;
        let hunt = jobs[at].clone();
        if hunt.status() == HuntStatus::Running {
            hunt.cancel();
            Some(Removal::Cancelling(hunt))
        } else {
            jobs.remove(at);
            Some(Removal::Forgotten)
        }
    }
}
