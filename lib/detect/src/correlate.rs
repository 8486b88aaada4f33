//! Sigma correlation rules over a stream of detections: `event_count`, `value_count`,
//! `temporal`, `temporal_ordered`, `value_sum`, `value_avg` (what rsigma's correlation engine
//! evaluates), with `group-by`, `timespan`, aliases, `generate` and chained correlations, in
//! both the SigmaHQ v2 `correlation:` syntax and the older `action: correlation` one.
//!
//! The [`Correlator`] is fed detections (the rules an event matched, found at the edge or
//! centrally) rather than events: it does not run detection rules again. Only events that
//! matched a rule some correlation refers to are of interest ([`Correlator::wants`]).
//!
//! Invariants:
//! - **Event time, in order.** Windows are measured on the events' own timestamps. Events
//!   wait in a reorder buffer until the watermark (the newest event time seen, never ahead of
//!   the clock, minus `lateness_secs`) passes them, then are fed oldest first: an event up to
//!   `lateness_secs` late lands in the right window. An event that has waited `lateness_secs`
//!   of wall-clock time is fed whatever the watermark (with the older ones), so a quiet
//!   stream or a replay of old events is not held back. An event older than what was already
//!   fed *from the same source* (`agent.id` with `vigie.source`, else `event.dataset`: one
//!   log of one agent, one intake) is counted in [`CorrelatorStats::late_dropped`] and left
//!   out. Sources are ordered each on its own: an agent replaying yesterday's file, or a
//!   SaaS feed running minutes behind, does not make every other source late.
//! - **Bounded.** The reorder buffer holds at most `max_pending` events, each reduced to the
//!   fields correlations read (beyond, the oldest is fed at once); window state holds at most
//!   `max_state_entries` groups across the correlations rsigma counts, and as many across the
//!   `value_count` windows counted incrementally (`distinct`) (beyond, the stalest groups are
//!   evicted and counted), and `max_group_entries` entries per group.
//! - **Restartable.** [`Correlator::snapshot`] serializes the window state and the reorder
//!   buffer; [`Correlator::restore`] takes it back, even after the pack changed (state is keyed
//!   by correlation id; correlations no longer in the pack are forgotten).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rsigma_eval::{
    CorrelationConfig, CorrelationEngine, CorrelationSnapshot, DetectionBody, EvaluationResult,
    ResultBody, RuleHeader, TimestampFallback,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::distinct::{fields_read, stable_id, Distinct, Fired};
use crate::{DetectError, Rule, RuleSet, SigmaView};

/// Bounds and tolerance of a [`Correlator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelatorConfig {
    /// How late (in event time) an event may arrive and still count in its window.
    pub lateness_secs: u64,
    /// Events waiting in the reorder buffer, at most.
    pub max_pending: usize,
    /// Window states (one per correlation and group) kept, at most: by rsigma, and apart by
    /// the incremental `value_count` windows.
    pub max_state_entries: usize,
    /// Entries (events, values) kept per window state, at most.
    pub max_group_entries: usize,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        CorrelatorConfig {
            lateness_secs: 10,
            max_pending: 100_000,
            max_state_entries: 100_000,
            max_group_entries: 1_000,
        }
    }
}

/// A correlation that fired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorrelationHit {
    /// The correlation rule (its id, else its name, else its title), title and level.
    pub rule: Arc<Rule>,
    /// The group-by fields and their values for this window.
    pub group: Vec<(String, String)>,
    /// The aggregated value (count, distinct values, sum…) that met the condition.
    pub value: f64,
    /// The correlation's timespan.
    pub timespan_secs: u64,
    /// The event time (seconds) of the event that completed the window.
    pub at_secs: i64,
}

/// Counters of a [`Correlator`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrelatorStats {
    /// Events fed to the correlations.
    pub fed: u64,
    /// Events older than what was already fed (beyond the lateness), left out.
    pub late_dropped: u64,
    /// Events fed early because the reorder buffer was full.
    pub pending_overflow: u64,
    /// Window states evicted because `max_state_entries` was reached.
    pub state_evicted: u64,
    /// Correlations fired.
    pub fired: u64,
}

/// One event waiting in the reorder buffer: its time, the rules it matched, the event.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    ts: i64,
    seq: u64,
    /// Wall-clock time it arrived.
    #[serde(default)]
    arrived: i64,
    /// The source it came from (see the module documentation).
    #[serde(default)]
    source: String,
    rules: Vec<String>,
    event: Map<String, Value>,
}

/// Sources whose progress is remembered, at most (beyond, the map starts over).
const MAX_SOURCES: usize = 100_000;

/// The source of an event: the agent (or intake) and its log.
fn source_of(event: &Map<String, Value>) -> String {
    let get = |p: &str| {
        vigie_event::get_path(event, p)
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let log = match get("vigie.source") {
        "" => get("event.dataset"),
        s => s,
    };
    format!("{}/{log}", get("agent.id"))
}

/// What [`Correlator::snapshot`] writes.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    engine: CorrelationSnapshot,
    pending: Vec<Pending>,
    #[serde(default)]
    fed_until: HashMap<String, i64>,
    newest: i64,
    seq: u64,
    stats: CorrelatorStats,
}

/// Correlation state over a rule pack's correlations.
pub struct Correlator {
    engine: CorrelationEngine,
    /// The id rsigma is given for a detection, when not the rule's key (see `new`).
    engine_ids: HashMap<String, String>,
    /// The `value_count` correlations counted here rather than by rsigma (see `distinct`).
    distinct: Distinct,
    cfg: CorrelatorConfig,
    /// The rule ids and names correlations refer to.
    wanted: std::collections::HashSet<String>,
    /// Rule metadata by id, for the detections fed.
    rules: HashMap<String, Arc<Rule>>,
    /// Correlation metadata by stable id.
    correlations: HashMap<String, Arc<Rule>>,
    fallbacks: crate::mapping::Fallbacks,
    /// The top-level keys of an event that correlations read: a buffered event keeps only
    /// those (`None`: all).
    keep: Option<std::collections::HashSet<String>>,
    /// Reorder buffer, by (time, arrival).
    pending: BTreeMap<(i64, u64), Pending>,
    /// (wall-clock arrival, event time) of the buffered events, in arrival order.
    arrivals: std::collections::VecDeque<(i64, i64)>,
    seq: u64,
    /// Event time of the last event fed, per source.
    fed_until: HashMap<String, i64>,
    /// Newest event time seen.
    newest: i64,
    stats: CorrelatorStats,
}

impl std::fmt::Debug for Correlator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Correlator")
            .field("correlations", &self.correlations.len())
            .field("pending", &self.pending.len())
            .field("states", &self.states())
            .field("incremental", &self.distinct.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Correlator {
    /// The correlations of `rules`, with empty state.
    pub fn new(rules: &RuleSet, cfg: CorrelatorConfig) -> Result<Self, DetectError> {
        Self::build(rules, cfg, true)
    }

    /// [`Correlator::new`]; with `incremental` false every correlation goes to rsigma (tests
    /// compare both).
    pub(crate) fn build(
        rules: &RuleSet,
        cfg: CorrelatorConfig,
        incremental: bool,
    ) -> Result<Self, DetectError> {
        let engine_cfg = CorrelationConfig {
            timestamp_fields: vec!["@timestamp".into()],
            timestamp_fallback: TimestampFallback::WallClock,
            max_state_entries: cfg.max_state_entries.max(1),
            max_group_entries: Some(cfg.max_group_entries.max(1)),
            ..CorrelationConfig::default()
        };
        let mut engine = CorrelationEngine::new(engine_cfg);
        for p in &rules.pipelines {
            engine.add_pipeline(p.clone());
        }
        let fail = |reason: String| DetectError::Correlation { reason };
        for r in &rules.referenced {
            engine
                .add_rule(r)
                .map_err(|e| fail(format!("rule {}: {e}", r.title)))?;
        }
        let (distinct, taken) = if incremental {
            Distinct::build(
                &rules.pipelines,
                &rules.referenced,
                &rules.correlations,
                cfg.max_group_entries,
                cfg.max_state_entries,
            )
        } else {
            (Distinct::default(), vec![false; rules.correlations.len()])
        };
        let mut wanted = std::collections::HashSet::new();
        let mut correlations = HashMap::new();
        for (c, taken) in rules.correlations.iter().zip(taken) {
            if !taken {
                engine
                    .add_correlation(c)
                    .map_err(|e| fail(format!("correlation {}: {e}", c.title)))?;
            }
            wanted.extend(c.rules.iter().cloned());
            let id = stable_id(&c.id, &c.name, &c.title);
            let meta = Rule {
                id: id.clone(),
                title: c.title.clone(),
                level: c.level.map_or("medium", |l| l.as_str()).to_owned(),
                action: crate::Action::Tag,
                alert: true,
                group_by: Vec::new(),
                file: Default::default(),
            };
            // A chained correlation refers to another by id or name.
            for key in [c.id.clone(), c.name.clone()].into_iter().flatten() {
                correlations.insert(key, Arc::new(meta.clone()));
            }
            // rsigma names the firing of a correlation without an id by its title.
            if c.id.is_none() {
                correlations
                    .entry(c.title.clone())
                    .or_insert_with(|| Arc::new(meta.clone()));
            }
            correlations.insert(id, Arc::new(meta));
        }
        // Referenced rules are also known by name; detections are fed by id.
        let mut known: HashMap<String, Arc<Rule>> = HashMap::new();
        let mut engine_ids = HashMap::new();
        for r in &rules.referenced {
            let key = r.id.clone().unwrap_or_else(|| r.title.clone());
            // rsigma finds a detection's correlations by the id it carries, and a rule
            // without an id has none to match: give it the name correlations refer to.
            if let (None, Some(name)) = (&r.id, &r.name) {
                engine_ids.insert(key.clone(), name.clone());
            }
            wanted.insert(key.clone());
            if let Some(meta) = rules.rule(&key) {
                known.insert(key, meta.clone());
                if let Some(name) = &r.name {
                    known.insert(name.clone(), meta.clone());
                }
            }
        }
        Ok(Correlator {
            engine,
            engine_ids,
            distinct,
            cfg,
            wanted,
            rules: known,
            correlations,
            fallbacks: rules.fallbacks.clone(),
            keep: fields_read(&rules.pipelines, &rules.correlations, &rules.fallbacks),
            pending: BTreeMap::new(),
            arrivals: std::collections::VecDeque::new(),
            seq: 0,
            fed_until: HashMap::new(),
            newest: i64::MIN,
            stats: CorrelatorStats::default(),
        })
    }

    /// Whether the pack has any correlation.
    pub fn is_empty(&self) -> bool {
        self.correlations.is_empty()
    }

    /// Whether a detection of `rule_id` feeds some correlation.
    pub fn wants(&self, rule_id: &str) -> bool {
        self.wanted.contains(rule_id)
    }

    /// Takes an event that matched `rule_ids` at event time `ts_secs`, arriving at wall-clock
    /// time `now_secs`, into the reorder buffer (rules no correlation refers to are ignored).
    /// Returns what firing this caused: usually nothing until [`Correlator::advance`] moves
    /// the watermark, except when the buffer overflowed.
    pub fn push(
        &mut self,
        event: &Map<String, Value>,
        rule_ids: &[&str],
        ts_secs: i64,
        now_secs: i64,
    ) -> Vec<CorrelationHit> {
        let rules: Vec<String> = rule_ids
            .iter()
            .filter(|r| self.wants(r))
            .map(|r| (*r).to_owned())
            .collect();
        if rules.is_empty() {
            return Vec::new();
        }
        let source = source_of(event);
        if self
            .fed_until
            .get(&source)
            .is_some_and(|fed| ts_secs < *fed)
        {
            self.stats.late_dropped += 1;
            return Vec::new();
        }
        self.newest = self.newest.max(ts_secs);
        self.seq += 1;
        self.pending.insert(
            (ts_secs, self.seq),
            Pending {
                ts: ts_secs,
                seq: self.seq,
                arrived: now_secs,
                source,
                rules,
                event: self.project(event),
            },
        );
        self.arrivals.push_back((now_secs, ts_secs));
        let mut out = Vec::new();
        while self.pending.len() > self.cfg.max_pending.max(1) {
            self.stats.pending_overflow += 1;
            if let Some((_, p)) = self.pending.pop_first() {
                self.feed(p, &mut out);
            }
        }
        out
    }

    /// The part of `event` correlations read: buffered events stay small.
    fn project(&self, event: &Map<String, Value>) -> Map<String, Value> {
        match &self.keep {
            None => event.clone(),
            Some(keys) => event
                .iter()
                .filter(|(k, _)| keys.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Feeds every buffered event the watermark has passed: event times up to
    /// `min(newest seen, now_secs) - lateness_secs`. Call it on each batch and on a timer.
    pub fn advance(&mut self, now_secs: i64) -> Vec<CorrelationHit> {
        let lateness = self.cfg.lateness_secs as i64;
        let mut watermark = self.newest.min(now_secs).saturating_sub(lateness);
        // Events that waited `lateness` of wall-clock time go, with everything older.
        while let Some(&(arrived, ts)) = self.arrivals.front() {
            if arrived > now_secs.saturating_sub(lateness) {
                break;
            }
            watermark = watermark.max(ts);
            self.arrivals.pop_front();
        }
        let mut out = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > watermark {
                break;
            }
            let p = entry.remove();
            self.feed(p, &mut out);
        }
        out
    }

    /// Feeds every buffered event now, whatever the watermark (tests, a final drain).
    pub fn drain(&mut self) -> Vec<CorrelationHit> {
        let mut out = Vec::new();
        while let Some((_, p)) = self.pending.pop_first() {
            self.feed(p, &mut out);
        }
        out
    }

    fn feed(&mut self, p: Pending, out: &mut Vec<CorrelationHit>) {
        if self.fed_until.len() >= MAX_SOURCES && !self.fed_until.contains_key(&p.source) {
            self.fed_until.clear();
        }
        let fed = self.fed_until.entry(p.source.clone()).or_insert(p.ts);
        *fed = (*fed).max(p.ts);
        self.stats.fed += 1;
        let detections: Vec<EvaluationResult> = p
            .rules
            .iter()
            .map(|id| {
                let meta = self.rules.get(id);
                EvaluationResult {
                    header: RuleHeader {
                        rule_title: meta.map_or_else(|| id.clone(), |m| m.title.clone()),
                        rule_id: Some(match self.engine_ids.get(id) {
                            Some(engine_id) => engine_id.clone(),
                            None => meta.map_or_else(|| id.clone(), |m| m.id.clone()),
                        }),
                        level: None,
                        tags: Vec::new(),
                        custom_attributes: Arc::default(),
                        enrichments: None,
                    },
                    body: ResultBody::Detection(DetectionBody {
                        matched_selections: Vec::new(),
                        matched_fields: Vec::new(),
                        event: None,
                    }),
                }
            })
            .collect();
        let view = SigmaView::from_map(&p.event).with_fallbacks(&self.fallbacks);
        let before = self.engine.state_count();
        let results = self.engine.process_with_detections(&view, detections, p.ts);
        let cap = self.cfg.max_state_entries.max(1);
        if before >= cap {
            // The engine evicted the stalest groups down to 90% of the cap before adding.
            let after = self.engine.state_count();
            self.stats.state_evicted += (before + 1).saturating_sub(after) as u64;
        }
        // What fired, from rsigma and from the incremental value_counts, as one list.
        let mut fired: Vec<Fired> = results
            .into_iter()
            .filter_map(|r| match r.body {
                ResultBody::Correlation(body) => Some(Fired {
                    id: r.header.rule_id.unwrap_or(r.header.rule_title),
                    group: body.group_key,
                    value: body.aggregated_value,
                    timespan_secs: body.timespan_secs,
                }),
                _ => None,
            })
            .collect();
        for id in &p.rules {
            self.stats.state_evicted += self.distinct.feed(&view, id, p.ts, &mut fired);
        }
        for h in fired {
            let Some(rule) = self.correlations.get(&h.id).cloned() else {
                continue;
            };
            self.stats.fired += 1;
            out.push(CorrelationHit {
                rule,
                group: h.group,
                value: h.value,
                timespan_secs: h.timespan_secs,
                at_secs: p.ts,
            });
        }
    }

    /// Events waiting for the watermark.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Window states held.
    pub fn states(&self) -> usize {
        self.engine.state_count() + self.distinct.windows()
    }

    /// How many correlations are counted incrementally here rather than by rsigma.
    #[cfg(test)]
    pub(crate) fn incremental(&self) -> usize {
        self.distinct.len()
    }

    /// The counters.
    pub fn stats(&self) -> CorrelatorStats {
        self.stats
    }

    /// The state, as JSON, for [`Correlator::restore`] after a restart.
    pub fn snapshot(&self) -> Result<String, DetectError> {
        let mut engine = self.engine.export_state();
        self.distinct.export(&mut engine.windows);
        let snap = Snapshot {
            engine,
            pending: self.pending.values().cloned().collect(),
            fed_until: self.fed_until.clone(),
            newest: self.newest,
            seq: self.seq,
            stats: self.stats,
        };
        serde_json::to_string(&snap).map_err(|e| DetectError::Correlation {
            reason: format!("cannot serialize the correlation state: {e}"),
        })
    }

    /// Takes back a [`Correlator::snapshot`]. State of correlations that are not in this pack
    /// is dropped; buffered events are kept only for rules still referred to.
    pub fn restore(&mut self, snapshot: &str) -> Result<(), DetectError> {
        let snap: Snapshot =
            serde_json::from_str(snapshot).map_err(|e| DetectError::Correlation {
                reason: format!("the saved correlation state does not read: {e}"),
            })?;
        let mut engine = snap.engine;
        self.distinct.import(&mut engine.windows);
        if !self.engine.import_state(engine) {
            self.distinct.clear();
            return Err(DetectError::Correlation {
                reason: "the saved correlation state has an incompatible version".into(),
            });
        }
        for mut p in snap.pending {
            p.rules.retain(|r| self.wanted.contains(r));
            if !p.rules.is_empty() {
                self.pending.insert((p.ts, p.seq), p);
            }
        }
        let mut arrivals: Vec<(i64, i64)> =
            self.pending.values().map(|p| (p.arrived, p.ts)).collect();
        arrivals.sort_unstable();
        self.arrivals = arrivals.into_iter().collect();
        self.fed_until = snap.fed_until;
        self.newest = snap.newest;
        self.seq = snap.seq;
        self.stats = snap.stats;
        Ok(())
    }
}
