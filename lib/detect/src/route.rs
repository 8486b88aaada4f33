//! Logsource routing: the rules are grouped by their logsource (product, category, service),
//! one rsigma engine per group, and an event is handed only to the groups its
//! `vigie.logsource` tags satisfy. A group's constraint is satisfied when every dimension it
//! sets equals the event's tag for that dimension (case-insensitive); the group of rules that
//! set none is always evaluated; an event without tags goes to every group.
//!
//! Choosing groups up front, instead of asking one engine to check each candidate rule's
//! logsource, keeps an event from ever touching the candidate indexes of other sources.
//!
//! A rule that can only match through its keywords (see [`crate::gate`]) gets a group of its
//! own, evaluated only when the keyword gate opens it.

use rsigma_eval::{Engine, EvaluationResult, Pipeline};
use rsigma_parser::{Detection, FilterRule, LogSource, SigmaRule};

use crate::event::SigmaView;
use crate::gate::{self, Gate};

/// One logsource's rules.
struct Group {
    product: Option<String>,
    category: Option<String>,
    service: Option<String>,
    engine: Engine,
    /// Evaluated only when the gate opens it (one keyword-gated rule).
    gated: bool,
}

/// An event's tags, as the event holds them (trimmed; compared ignoring ASCII case).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tags<'a> {
    pub product: Option<&'a str>,
    pub category: Option<&'a str>,
    pub service: Option<&'a str>,
}

impl Tags<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.product.is_none() && self.category.is_none() && self.service.is_none()
    }
}

/// The rules, grouped by logsource.
pub(crate) struct Router {
    groups: Vec<Group>,
    gate: Option<Gate>,
}

fn lower(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
}

fn key(ls: &LogSource) -> (Option<String>, Option<String>, Option<String>) {
    (lower(&ls.product), lower(&ls.category), lower(&ls.service))
}

impl Router {
    /// Compiles `rules` (with `pipelines` applied); returns the router and, for each rule that
    /// did not compile, its index in `rules` and the reason.
    pub(crate) fn build(
        pipelines: &[Pipeline],
        rules: &[&SigmaRule],
    ) -> (Self, Vec<(usize, String)>) {
        let mut groups: Vec<Group> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut gated = Vec::new();
        let new_group = |product, category, service, gated| {
            let mut engine = Engine::new();
            for p in pipelines {
                engine.add_pipeline(p.clone());
            }
            Group {
                product,
                category,
                service,
                engine,
                gated,
            }
        };
        for (i, rule) in rules.iter().enumerate() {
            let (product, category, service) = key(&rule.logsource);
            if let Some(needles) = gate::needles(rule) {
                gated.push((groups.len(), needles));
                groups.push(new_group(product, category, service, true));
                members.push(vec![i]);
                continue;
            }
            let at = groups.iter().position(|g| {
                !g.gated && g.product == product && g.category == category && g.service == service
            });
            let at = at.unwrap_or_else(|| {
                groups.push(new_group(product, category, service, false));
                members.push(Vec::new());
                groups.len() - 1
            });
            members[at].push(i);
        }
        let gate = Gate::build(&gated);
        // Compiling (regexes, the candidate indexes' automata) is most of a pack's load time;
        // groups are independent, so they compile on every core.
        let mut work: Vec<(&mut Group, &Vec<usize>)> = groups.iter_mut().zip(&members).collect();
        // Heaviest groups first (popped from the end), each thread taking the next one. The
        // weight is the number of values, not of rules: ten rules listing thousands of driver
        // hashes cost as much to compile as a thousand ordinary ones.
        work.sort_by_cached_key(|(_, idx)| idx.iter().map(|&i| weight(rules[i])).sum::<usize>());
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        let queue = std::sync::Mutex::new(work);
        let compile = || {
            let mut errors = Vec::new();
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some((group, idx)) = next else { break };
                for (j, err) in group.engine.add_rules(idx.iter().map(|&i| rules[i])) {
                    errors.push((idx[j], err.to_string()));
                }
            }
            errors
        };
        let mut errors: Vec<(usize, String)> = if threads == 1 || rules.len() < 64 {
            compile()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads).map(|_| scope.spawn(compile)).collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            })
        };
        errors.sort_by_key(|e| e.0);
        (Router { groups, gate }, errors)
    }

    /// Applies a filter to the rules it names, in every group.
    pub(crate) fn apply_filter(&mut self, filter: &FilterRule) -> Result<(), String> {
        for g in &mut self.groups {
            g.engine.apply_filter(filter).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The detections of every group `tags` satisfies.
    pub(crate) fn evaluate(&self, view: &SigmaView<'_>, tags: &Tags<'_>) -> Vec<EvaluationResult> {
        let mut out = Vec::new();
        // The gated groups the event's keyword fields open, looked for once, when needed.
        let mut open: Option<Vec<usize>> = None;
        for (i, g) in self.groups.iter().enumerate() {
            if !(tags.is_empty() || g.accepts(tags)) {
                continue;
            }
            if g.gated {
                let open = open.get_or_insert_with(|| {
                    self.gate
                        .as_ref()
                        .map_or_else(Vec::new, |gate| gate.open(view))
                });
                if open.binary_search(&i).is_err() {
                    continue;
                }
            }
            out.extend(g.engine.evaluate(view));
        }
        out
    }

    /// Number of logsource groups (the keyword-gated rules' own groups aside).
    pub(crate) fn groups(&self) -> usize {
        self.groups.iter().filter(|g| !g.gated).count()
    }

    /// Number of keyword-gated rules (each in a group of its own).
    pub(crate) fn gated(&self) -> usize {
        self.groups.iter().filter(|g| g.gated).count()
    }
}

/// How much a rule costs to compile, roughly: its detection values.
fn weight(rule: &SigmaRule) -> usize {
    fn of(d: &Detection) -> usize {
        match d {
            Detection::AllOf(items) => items.iter().map(|i| i.values.len().max(1)).sum(),
            Detection::AnyOf(ds) | Detection::And(ds) => ds.iter().map(of).sum(),
            Detection::Keywords(values) => values.len().max(1),
            Detection::ArrayMatch { body, .. } => of(body),
            Detection::Conditional { named, .. } => named.values().map(of).sum(),
        }
    }
    1 + rule.detection.named.values().map(of).sum::<usize>()
}

impl Group {
    fn accepts(&self, tags: &Tags<'_>) -> bool {
        // The group's side is lowercased when it is built.
        let ok = |want: &Option<String>, have: &Option<&str>| match want {
            None => true,
            Some(w) => have.is_some_and(|h| h.eq_ignore_ascii_case(w)),
        };
        ok(&self.product, &tags.product)
            && ok(&self.category, &tags.category)
            && ok(&self.service, &tags.service)
    }
}
