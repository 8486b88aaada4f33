//! `value_count` correlations counted incrementally.
//!
//! rsigma 0.23 keeps a `value_count` window as a list of (time, value) entries and counts its
//! distinct values by hashing every entry into a new set on every event: a window of 1,000
//! entries costs 1,000 hash insertions per event, a third of central detection's time with 20
//! correlations (`examples/central_load.rs`). Here each window also keeps a count per distinct
//! value, updated as entries come in and leave, so an event costs a few hash operations.
//!
//! Everything else is rsigma's, reused rather than rewritten: the compiled correlation
//! (pipelines applied, aliases resolved), the group key, the condition, the entry cap, and the
//! snapshot format ([`WindowState::ValueCount`]), so a saved state restores whichever side
//! holds a correlation. The semantics are rsigma's sliding window: an event at `t` counts with
//! the entries at `t - timespan` and later; at most `max_group_entries` entries per window,
//! the oldest dropped first; the condition checked after every event, firing again while it
//! holds.
//!
//! Only plain cases are taken ([`Distinct::takes`]): a sliding window, no suppression, the
//! default `alert` action, and no correlation chained on it. The rest stays with rsigma.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use rsigma_eval::correlation::compile_correlation;
use rsigma_eval::event::EventValue;
use rsigma_eval::pipeline::apply_pipelines_to_correlation;
use rsigma_eval::{
    CompiledCorrelation, CorrelationAction, Event as _, GroupByField, GroupKey, Pipeline,
    WindowState,
};
use rsigma_parser::{CorrelationRule, CorrelationType, SigmaRule, WindowMode};

use crate::SigmaView;

/// One window: its entries in time order and how many of them hold each value.
#[derive(Debug, Default)]
struct Window {
    entries: VecDeque<(i64, Arc<str>)>,
    counts: HashMap<Arc<str>, u32>,
}

impl Window {
    fn push(&mut self, ts: i64, value: &str) {
        let value = match self.counts.get_key_value(value) {
            Some((known, _)) => known.clone(),
            None => Arc::from(value),
        };
        *self.counts.entry(value.clone()).or_insert(0) += 1;
        self.entries.push_back((ts, value));
    }

    fn pop_front(&mut self) {
        let Some((_, value)) = self.entries.pop_front() else {
            return;
        };
        if let Some(n) = self.counts.get_mut(&*value) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&*value);
            }
        }
    }

    /// Drops the entries older than `cutoff`.
    fn evict(&mut self, cutoff: i64) {
        while self.entries.front().is_some_and(|(t, _)| *t < cutoff) {
            self.pop_front();
        }
    }

    fn truncate(&mut self, cap: usize) {
        while self.entries.len() > cap.max(1) {
            self.pop_front();
        }
    }

    fn latest(&self) -> i64 {
        self.entries.back().map_or(i64::MIN, |(t, _)| *t)
    }

    fn to_state(&self) -> WindowState {
        WindowState::ValueCount {
            entries: self
                .entries
                .iter()
                .map(|(t, v)| (*t, v.to_string()))
                .collect(),
        }
    }

    fn from_state(state: WindowState) -> Option<Self> {
        let WindowState::ValueCount { entries } = state else {
            return None;
        };
        let mut w = Window::default();
        for (t, v) in entries {
            w.push(t, &v);
        }
        Some(w)
    }
}

/// A correlation that fired (here, or in rsigma: the Correlator handles both alike).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fired {
    /// The correlation as the Correlator knows it: its id, else its name, else its title.
    pub id: String,
    pub group: Vec<(String, String)>,
    pub value: f64,
    pub timespan_secs: u64,
}

/// The `value_count` correlations taken from rsigma, and their windows.
#[derive(Debug, Default)]
pub(crate) struct Distinct {
    corrs: Vec<CompiledCorrelation>,
    /// Stable id of each correlation, as rsigma's snapshots name them.
    ids: Vec<String>,
    /// A fed rule key (id, else title; or name) -> the identities aliases resolve with and
    /// the correlations that refer to it, in order.
    by_rule: HashMap<String, (Vec<String>, Vec<usize>)>,
    windows: HashMap<(usize, GroupKey), Window>,
    max_group_entries: usize,
    max_windows: usize,
}

/// rsigma's stable id of a correlation.
pub(crate) fn stable_id(id: &Option<String>, name: &Option<String>, title: &str) -> String {
    id.clone()
        .or_else(|| name.clone())
        .unwrap_or_else(|| title.to_owned())
}

/// Whether rules or correlations set `rsigma.*` attributes, which can change the engine's
/// defaults (suppression, action) for every correlation: then nothing is taken.
fn engine_defaults_touched(rules: &[SigmaRule], corrs: &[CorrelationRule]) -> bool {
    let touched = |k: &String| k.starts_with("rsigma.");
    rules
        .iter()
        .any(|r| r.custom_attributes.keys().any(touched))
        || corrs
            .iter()
            .any(|c| c.custom_attributes.keys().any(touched))
}

impl Distinct {
    /// Takes the correlations of `corrs` this module handles (compiled with `pipelines`);
    /// returns it and, for each correlation, whether it was taken (the others go to rsigma).
    pub(crate) fn build(
        pipelines: &[Pipeline],
        rules: &[SigmaRule],
        corrs: &[CorrelationRule],
        max_group_entries: usize,
        max_windows: usize,
    ) -> (Self, Vec<bool>) {
        let mut me = Distinct {
            max_group_entries: max_group_entries.max(1),
            max_windows: max_windows.max(1),
            ..Distinct::default()
        };
        if engine_defaults_touched(rules, corrs) {
            return (me, vec![false; corrs.len()]);
        }
        // Correlations others chain on stay with rsigma, which feeds their firings onwards.
        let parents: HashSet<&str> = corrs
            .iter()
            .flat_map(|c| c.rules.iter().map(String::as_str))
            .collect();
        let mut taken = Vec::with_capacity(corrs.len());
        for c in corrs {
            let names = [c.id.as_deref(), c.name.as_deref(), Some(c.title.as_str())];
            let chained = names.iter().flatten().any(|n| parents.contains(n));
            let compiled = if chained {
                None
            } else {
                compile(pipelines, c).filter(Self::takes)
            };
            taken.push(compiled.is_some());
            if let Some(compiled) = compiled {
                me.ids.push(stable_id(&c.id, &c.name, &c.title));
                me.corrs.push(compiled);
            }
        }
        for r in rules {
            let key = r.id.clone().unwrap_or_else(|| r.title.clone());
            let mut refs = vec![key.clone()];
            refs.extend(r.name.clone());
            let indices: Vec<usize> = me
                .corrs
                .iter()
                .enumerate()
                .filter(|(_, c)| c.rule_refs.iter().any(|x| refs.contains(x)))
                .map(|(i, _)| i)
                .collect();
            if indices.is_empty() {
                continue;
            }
            for k in refs.clone() {
                me.by_rule.insert(k, (refs.clone(), indices.clone()));
            }
        }
        (me, taken)
    }

    /// Whether a compiled correlation is one this module counts exactly as rsigma would.
    fn takes(c: &CompiledCorrelation) -> bool {
        c.correlation_type == CorrelationType::ValueCount
            && c.window_mode == WindowMode::Sliding
            && c.suppress_secs.is_none()
            && c.action.is_none_or(|a| a == CorrelationAction::Alert)
            && c.condition.field.as_ref().is_some_and(|f| !f.is_empty())
    }

    /// Correlations taken.
    pub(crate) fn len(&self) -> usize {
        self.corrs.len()
    }

    /// Forgets every window.
    pub(crate) fn clear(&mut self) {
        self.windows.clear();
    }

    /// Windows held.
    pub(crate) fn windows(&self) -> usize {
        self.windows.len()
    }

    /// Feeds one detection of the rule `rule` at event time `ts`; pushes what fired and
    /// returns how many windows were evicted to stay under the cap.
    pub(crate) fn feed(
        &mut self,
        view: &SigmaView<'_>,
        rule: &str,
        ts: i64,
        out: &mut Vec<Fired>,
    ) -> u64 {
        let Some((refs, indices)) = self.by_rule.get(rule) else {
            return 0;
        };
        let ts = ts.clamp(0, i64::MAX / 2);
        let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
        let mut evicted = 0;
        for &i in indices {
            let corr = &self.corrs[i];
            let key = (i, GroupKey::extract(view, &corr.group_by, &refs));
            if !self.windows.contains_key(&key) && self.windows.len() >= self.max_windows {
                evicted += make_room(&mut self.windows, &self.corrs, self.max_windows, ts);
            }
            let window = self.windows.entry(key.clone()).or_default();
            window.evict(ts - corr.timespan_secs as i64);
            if let Some(fields) = &corr.condition.field {
                if let Some(value) = count_key(view, fields) {
                    window.push(ts, &value);
                }
            }
            window.truncate(corr.max_group_entries.unwrap_or(self.max_group_entries));
            let value = window.counts.len() as f64;
            if corr.condition.check(value) {
                out.push(Fired {
                    id: self.ids[i].clone(),
                    group: key.1.to_pairs(&corr.group_by),
                    value,
                    timespan_secs: corr.timespan_secs,
                });
            }
        }
        evicted
    }

    /// Adds the windows to an rsigma snapshot, in its format.
    pub(crate) fn export(&self, windows: &mut HashMap<String, Vec<(GroupKey, WindowState)>>) {
        for ((i, group), w) in &self.windows {
            windows
                .entry(self.ids[*i].clone())
                .or_default()
                .push((group.clone(), w.to_state()));
        }
    }

    /// Takes this module's windows out of an rsigma snapshot (whichever side saved them).
    pub(crate) fn import(&mut self, windows: &mut HashMap<String, Vec<(GroupKey, WindowState)>>) {
        for (i, id) in self.ids.iter().enumerate() {
            for (group, state) in windows.remove(id).unwrap_or_default() {
                if let Some(w) = Window::from_state(state) {
                    self.windows.insert((i, group), w);
                }
            }
        }
    }
}

/// Compiles a correlation as rsigma's engine does (pipelines first).
pub(crate) fn compile(pipelines: &[Pipeline], c: &CorrelationRule) -> Option<CompiledCorrelation> {
    let mut c = c.clone();
    if !pipelines.is_empty() {
        apply_pipelines_to_correlation(pipelines, &mut c).ok()?;
    }
    compile_correlation(&c).ok()
}

/// The top-level keys of an event that correlations can read (group-by fields with their
/// aliases, counted fields, and the Sigma names a missing ECS field falls back to), or `None`
/// when a correlation does not compile here (then events are kept whole).
pub(crate) fn fields_read(
    pipelines: &[Pipeline],
    corrs: &[CorrelationRule],
    fallbacks: &crate::mapping::Fallbacks,
) -> Option<HashSet<String>> {
    let mut paths: Vec<String> = Vec::new();
    for c in corrs {
        let compiled = compile(pipelines, c)?;
        for g in &compiled.group_by {
            match g {
                GroupByField::Direct(f) => paths.push(f.clone()),
                GroupByField::Aliased { alias, mapping } => {
                    paths.push(alias.clone());
                    paths.extend(mapping.values().cloned());
                }
            }
        }
        paths.extend(compiled.condition.field.iter().flatten().cloned());
    }
    let extra: Vec<String> = paths
        .iter()
        .filter_map(|p| fallbacks.get(p))
        .flatten()
        .cloned()
        .collect();
    paths.extend(extra);
    let mut keys = HashSet::new();
    for p in paths {
        // A dotted path is read as a flat key first, then from its root object down.
        if let Some((root, _)) = p.split_once('.') {
            keys.insert(root.to_owned());
        }
        keys.insert(p);
    }
    Some(keys)
}

/// Drops expired windows, then the stalest down to 90% of the cap; returns how many went.
fn make_room(
    windows: &mut HashMap<(usize, GroupKey), Window>,
    corrs: &[CompiledCorrelation],
    cap: usize,
    now: i64,
) -> u64 {
    let before = windows.len();
    windows.retain(|(i, _), w| {
        w.evict(now - corrs[*i].timespan_secs as i64);
        !w.entries.is_empty()
    });
    if windows.len() >= cap {
        let excess = windows.len() - cap * 9 / 10;
        let mut by_age: Vec<((usize, GroupKey), i64)> = windows
            .iter()
            .map(|(k, w)| (k.clone(), w.latest()))
            .collect();
        by_age.sort_unstable_by_key(|(_, t)| *t);
        for (k, _) in by_age.into_iter().take(excess) {
            windows.remove(&k);
        }
    }
    (before - windows.len()) as u64
}

/// The distinct key of an event, as rsigma renders it: one field's value as text, or several
/// joined with U+001F; `None` (not counted) when a field is missing or not a scalar.
fn count_key(view: &SigmaView<'_>, fields: &[String]) -> Option<String> {
    let part = |name: &str| -> Option<String> {
        match view.get_field(name)? {
            EventValue::Str(s) => Some(s.to_string()),
            EventValue::Int(n) => Some(n.to_string()),
            EventValue::Float(f) => Some(f.to_string()),
            EventValue::Bool(b) => Some(b.to_string()),
            EventValue::Null => Some("null".to_owned()),
            _ => None,
        }
    };
    if let [one] = fields {
        return part(one);
    }
    let parts: Option<Vec<String>> = fields.iter().map(|f| part(f)).collect();
    Some(parts?.join("\u{1f}"))
}

#[cfg(test)]
mod tests {
    //! The incremental count against rsigma's own, on the same random streams.
    #![allow(clippy::unwrap_used)]

    use serde_json::{json, Map, Value};

    use crate::{CorrelationHit, Correlator, CorrelatorConfig, LoadOptions, RuleSet};

    const PACK: &str = r#"
title: SSH failed password
id: ssh-failed
name: ssh_failed
logsource: {product: linux, service: auth}
detection:
  sel: {event.action: ssh_failed}
  condition: sel
level: low
---
title: SSH accepted
id: ssh-accepted
logsource: {product: linux, service: auth}
detection:
  sel: {event.action: ssh_accepted}
  condition: sel
level: low
---
title: Spraying from one address
id: spray
correlation:
  type: value_count
  rules: [ssh_failed]
  group-by: [source.ip]
  timespan: 60s
  condition: {gte: 3, field: user.name}
level: high
---
title: Hosts and users touched, both rules
id: pairs
correlation:
  type: value_count
  rules: [ssh-failed, ssh-accepted]
  group-by: [user.name]
  timespan: 2m
  condition: {gte: 2, lt: 5, field: [host.name, source.port]}
level: medium
---
title: Few addresses, no grouping
name: few_addresses
correlation:
  type: value_count
  rules: [ssh-accepted]
  timespan: 30s
  condition: {lte: 2, field: source.ip}
level: low
---
title: Sudo failure, a rule with a name and no id
name: sudo_failed
logsource: {product: linux, service: sudo}
detection:
  sel: {event.action: sudo_failed}
  condition: sel
level: low
---
title: Users failing sudo on one host
id: sudo-users
correlation:
  type: value_count
  rules: [sudo_failed]
  group-by: [host.name]
  timespan: 60s
  condition: {gte: 2, field: user.name}
level: medium
---
title: Sudo failures per host
id: sudo-burst
correlation:
  type: event_count
  rules: [sudo_failed]
  group-by: [host.name]
  timespan: 60s
  condition: {gte: 3}
level: medium
---
title: Failures per address
id: brute
correlation:
  type: event_count
  rules: [ssh_failed]
  group-by: [source.ip]
  timespan: 60s
  condition: {gte: 4}
level: high
"#;

    /// 2026-11-26T10:00:00Z
    const T0: i64 = 1_795_687_200;

    /// A small deterministic generator (no dependency for a test stream).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    fn stream(seed: u64, n: usize) -> Vec<(i64, Map<String, Value>)> {
        let mut rng = Lcg(seed);
        let mut t = T0;
        (0..n)
            .map(|_| {
                t += rng.next(12) as i64;
                let action = ["ssh_accepted", "ssh_failed", "ssh_failed", "sudo_failed"]
                    [rng.next(4) as usize];
                let ts = chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339();
                let mut ev = json!({"@timestamp": ts, "event": {"action": action},
                    "source": {"ip": format!("203.0.113.{}", rng.next(3)), "port": 40000 + rng.next(3)},
                    "host": {"name": format!("web-{}", rng.next(4))}});
                // Some events lack the counted field, some have a number or a null instead.
                match rng.next(8) {
                    0 => {}
                    1 => ev["user"] = json!({"name": 1000 + rng.next(2)}),
                    2 => ev["user"] = json!({"name": null}),
                    _ => ev["user"] = json!({"name": format!("user{}", rng.next(6))}),
                }
                (t, ev.as_object().unwrap().clone())
            })
            .collect()
    }

    fn sorted(hits: Vec<CorrelationHit>) -> Vec<String> {
        let mut v: Vec<String> = hits
            .into_iter()
            .map(|h| {
                format!(
                    "{} {:?} {} {} {}",
                    h.rule.id, h.group, h.value, h.timespan_secs, h.at_secs
                )
            })
            .collect();
        v.sort();
        v
    }

    fn feed(set: &RuleSet, c: &mut Correlator, t: i64, ev: &Map<String, Value>) -> Vec<String> {
        let ids: Vec<String> = set.evaluate_map(ev).iter().map(|r| r.id.clone()).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut hits = c.push(ev, &refs, t, t);
        hits.extend(c.advance(t));
        sorted(hits)
    }

    fn pair(set: &RuleSet, cfg: CorrelatorConfig) -> (Correlator, Correlator) {
        let fast = Correlator::build(set, cfg, true).unwrap();
        let slow = Correlator::build(set, cfg, false).unwrap();
        assert_eq!(fast.incremental(), 4, "the four value_counts are taken");
        assert_eq!(slow.incremental(), 0);
        (fast, slow)
    }

    #[test]
    fn fires_exactly_as_rsigma_does() {
        let (set, report) = RuleSet::load_str("t.yml", PACK, &LoadOptions::default());
        assert!(report.rejected.is_empty(), "{:#?}", report.rejected);
        // A small entry cap, so truncation is exercised too.
        for max_group_entries in [4, 1_000] {
            let cfg = CorrelatorConfig {
                lateness_secs: 0,
                max_group_entries,
                ..CorrelatorConfig::default()
            };
            for seed in 1..=5 {
                let (mut fast, mut slow) = pair(&set, cfg);
                let mut fired = 0;
                let mut which = std::collections::BTreeSet::new();
                for (i, (t, ev)) in stream(seed, 600).iter().enumerate() {
                    let (a, b) = (feed(&set, &mut fast, *t, ev), feed(&set, &mut slow, *t, ev));
                    assert_eq!(a, b, "seed {seed}, event {i}, cap {max_group_entries}");
                    fired += a.len();
                    which.extend(
                        a.iter()
                            .filter_map(|h| h.split(' ').next().map(String::from)),
                    );
                }
                assert!(
                    fired > 50,
                    "the stream makes the correlations fire ({fired})"
                );
                // Each correlation fires, those on the rule known only by its name included.
                for id in [
                    "spray",
                    "pairs",
                    "few_addresses",
                    "sudo-users",
                    "sudo-burst",
                    "brute",
                ] {
                    assert!(
                        which.contains(id),
                        "seed {seed}: {id} never fired: {which:?}"
                    );
                }
                assert_eq!(fast.states(), slow.states());
                assert_eq!(fast.stats(), slow.stats());
            }
        }
    }

    #[test]
    fn a_snapshot_restores_on_either_side() {
        let (set, _) = RuleSet::load_str("t.yml", PACK, &LoadOptions::default());
        let cfg = CorrelatorConfig {
            lateness_secs: 0,
            ..CorrelatorConfig::default()
        };
        let events = stream(7, 400);
        let (first, rest) = events.split_at(200);
        let (mut fast, mut slow) = pair(&set, cfg);
        for (t, ev) in first {
            feed(&set, &mut fast, *t, ev);
            feed(&set, &mut slow, *t, ev);
        }
        // Each side's state continues on the other kind of correlator.
        let (mut slow2, mut fast2) = (
            Correlator::build(&set, cfg, false).unwrap(),
            Correlator::build(&set, cfg, true).unwrap(),
        );
        slow2.restore(&fast.snapshot().unwrap()).unwrap();
        fast2.restore(&slow.snapshot().unwrap()).unwrap();
        assert_eq!(fast2.states(), slow.states());
        let mut fired = 0;
        for (t, ev) in rest {
            let a = feed(&set, &mut fast2, *t, ev);
            assert_eq!(a, feed(&set, &mut slow2, *t, ev));
            assert_eq!(a, feed(&set, &mut fast, *t, ev));
            fired += a.len();
        }
        assert!(fired > 20, "{fired}");
    }
}
