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
//! own, evaluated only when the keyword gate opens it; the gate is run only for an event that
//! one of the gated rules' logsources accepts.

use rsigma_eval::{Engine, EvaluationResult, Pipeline};
use rsigma_parser::{Detection, FilterRule, LogSource, SigmaRule};

use crate::event::SigmaView;
use crate::gate::{self, Gate};

/// A logsource constraint, lowercased; `None` sets no constraint on that dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    product: Option<String>,
    category: Option<String>,
    service: Option<String>,
}

/// One logsource's rules (or one keyword-gated rule).
struct Group {
    source: Source,
    engine: Engine,
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
    /// The keyword-gated rules, one per group; the gate's group indexes point here.
    gated: Vec<Group>,
    /// The distinct logsources of `gated`.
    gated_sources: Vec<Source>,
    gate: Gate,
}

fn lower(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
}

fn source(ls: &LogSource) -> Source {
    Source {
        product: lower(&ls.product),
        category: lower(&ls.category),
        service: lower(&ls.service),
    }
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
        let mut gated: Vec<Group> = Vec::new();
        let mut gated_members: Vec<Vec<usize>> = Vec::new();
        let mut needles = Vec::new();
        let new_group = |source| {
            let mut engine = Engine::new();
            for p in pipelines {
                engine.add_pipeline(p.clone());
            }
            Group { source, engine }
        };
        for (i, rule) in rules.iter().enumerate() {
            let source = source(&rule.logsource);
            if let Some(n) = gate::needles(rule) {
                needles.push((gated.len(), n));
                gated.push(new_group(source));
                gated_members.push(vec![i]);
                continue;
            }
            let at = groups.iter().position(|g| g.source == source);
            let at = at.unwrap_or_else(|| {
                groups.push(new_group(source));
                members.push(Vec::new());
                groups.len() - 1
            });
            members[at].push(i);
        }
        let gate = Gate::build(&needles);
        let mut gated_sources: Vec<Source> = Vec::new();
        for g in &gated {
            if !gated_sources.contains(&g.source) {
                gated_sources.push(g.source.clone());
            }
        }
        // Compiling (regexes, the candidate indexes' automata) is most of a pack's load time;
        // groups are independent, so they compile on every core.
        let mut work: Vec<(&mut Group, &Vec<usize>)> = groups
            .iter_mut()
            .zip(&members)
            .chain(gated.iter_mut().zip(&gated_members))
            .collect();
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
        let router = Router {
            groups,
            gated,
            gated_sources,
            gate,
        };
        (router, errors)
    }

    /// Applies a filter to the rules it names, in every group.
    pub(crate) fn apply_filter(&mut self, filter: &FilterRule) -> Result<(), String> {
        for g in self.groups.iter_mut().chain(&mut self.gated) {
            g.engine.apply_filter(filter).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The detections of every group `tags` satisfies.
    pub(crate) fn evaluate(&self, view: &SigmaView<'_>, tags: &Tags<'_>) -> Vec<EvaluationResult> {
        let accepts = |source: &Source| tags.is_empty() || source.accepts(tags);
        let mut out = Vec::new();
        for g in self.groups.iter().filter(|g| accepts(&g.source)) {
            out.extend(g.engine.evaluate(view));
        }
        // No gated rule for this event's logsource: no scan.
        if !self.gated_sources.iter().any(accepts) {
            return out;
        }
        for i in self.gate.open(view) {
            if let Some(g) = self.gated.get(i).filter(|g| accepts(&g.source)) {
                out.extend(g.engine.evaluate(view));
            }
        }
        out
    }

    /// Number of logsource groups (the keyword-gated rules' own groups aside).
    pub(crate) fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Number of keyword-gated rules (each in a group of its own).
    pub(crate) fn gated(&self) -> usize {
        self.gated.len()
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

impl Source {
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
