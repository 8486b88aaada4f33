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
//! wildcard rules, 39k gating every keyword rule (the logsource groups' engines then have
//! no keyword automaton left to run).
//!
//! The gate is sound by construction: a rule gets one only when each of its conditions needs
//! a keyword detection (the condition is that detection, or an `and` with it, or an `or` of
//! such), and every keyword of that detection is an ASCII string with a plain part of at
//! least [`MIN_NEEDLE`] bytes. Anything else (numbers, negations, selectors, `'@'`) leaves
//! the rule to the engine, evaluated as before.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use rsigma_eval::event::Event as _;
use rsigma_parser::{ConditionExpr, Detection, SigmaRule, SigmaValue, StringPart};

use crate::event::SigmaView;

/// Needles shorter than this would open the gate on nearly every event (`'@'`, `':'`): such a
/// rule is left to the engine.
const MIN_NEEDLE: usize = 3;

/// The literals a rule needs: it can match only if one of them occurs (ASCII lowercase).
pub(crate) fn needles(rule: &SigmaRule) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for condition in &rule.detection.conditions {
        out.extend(condition_needles(rule, condition)?);
    }
    (!out.is_empty() && out.iter().all(|n| n.len() >= MIN_NEEDLE)).then_some(out)
}

fn condition_needles(rule: &SigmaRule, expr: &ConditionExpr) -> Option<Vec<String>> {
    match expr {
        ConditionExpr::Identifier(name) => match rule.detection.named.get(name)? {
            Detection::Keywords(values) => values.iter().map(keyword_needle).collect(),
            _ => None,
        },
        // Every operand must hold: one gated operand gates the whole; the one whose shortest
        // needle is longest is likely the rarest.
        ConditionExpr::And(operands) => operands
            .iter()
            .filter_map(|o| condition_needles(rule, o))
            .max_by_key(|n| n.iter().map(String::len).min()),
        // Any operand may hold: each must be gated, and any of their needles opens the gate.
        ConditionExpr::Or(operands) => {
            let mut all = Vec::new();
            for o in operands {
                all.extend(condition_needles(rule, o)?);
            }
            Some(all)
        }
        ConditionExpr::Not(_) | ConditionExpr::Selector { .. } => None,
    }
}

/// The longest plain part of a keyword, lowercased; `None` when the keyword is not a string,
/// is only wildcards, or is not ASCII (Unicode case folding is left to the engine).
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
    (!longest.is_empty() && longest.is_ascii()).then(|| longest.to_ascii_lowercase())
}

/// One automaton over the needles of every gated rule.
pub(crate) struct Gate {
    automaton: AhoCorasick,
    /// Needle index -> the gated group it opens.
    owner: Vec<usize>,
}

impl Gate {
    /// A gate over `(group index, needles)` pairs; `None` when there is nothing to gate.
    pub(crate) fn build(gated: &[(usize, Vec<String>)]) -> Option<Self> {
        let mut owner = Vec::new();
        let mut patterns: Vec<&str> = Vec::new();
        for (group, needles) in gated {
            for n in needles {
                owner.push(*group);
                patterns.push(n);
            }
        }
        if patterns.is_empty() {
            return None;
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .ascii_case_insensitive(true)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .or_else(|_| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .ascii_case_insensitive(true)
                    .build(&patterns)
            })
            .ok()?;
        Some(Self { automaton, owner })
    }

    /// The gated groups `view`'s keyword fields open, sorted, without repeats.
    pub(crate) fn open(&self, view: &SigmaView<'_>) -> Vec<usize> {
        let mut open = Vec::new();
        view.visit_string_values(&mut |s| {
            let folded;
            let haystack = if s.is_ascii() {
                s
            } else {
                folded = s.to_lowercase();
                folded.as_str()
            };
            for m in self.automaton.find_overlapping_iter(haystack) {
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
        parse_sigma_yaml(&text)
            .expect("parses")
            .rules
            .into_iter()
            .next()
            .expect("one rule")
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
    fn anything_else_is_not_gated() {
        let field = rule("  sel: {CommandLine|contains: curl}\n  condition: sel\n");
        assert_eq!(needles(&field), None);
        let or_field = rule("  a: ['al*pha']\n  sel: {user: root}\n  condition: a or sel\n");
        assert_eq!(needles(&or_field), None);
        let not = rule("  a: ['al*pha']\n  condition: not a\n");
        assert_eq!(needles(&not), None);
        let selector = rule("  a: ['al*pha']\n  condition: 1 of a*\n");
        assert_eq!(needles(&selector), None);
        let star = rule("  a: ['al*pha', '*']\n  condition: a\n");
        assert_eq!(needles(&star), None);
        let number = rule("  a: ['al*pha', 42]\n  condition: a\n");
        assert_eq!(needles(&number), None);
    }
}
