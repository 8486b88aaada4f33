//! The `regex` stage: a list of patterns with named captures, the first that matches wins.
//!
//! Each capture group named after a field path (`(?P<user.name>\S+)`) writes what it matched
//! to that field; groups that did not take part in the match, or matched nothing, write
//! nothing. A pattern may carry its own `set:` block, applied when it is the one that matched.
//!
//! Speed: every pattern is compiled once, when the file loads. A pattern anchored at the start
//! by a literal (`^Accepted `, `^pam_unix\(`) is tried only on text that starts with that
//! literal: patterns are filed by the first byte of their literal prefix, so a line is tried
//! against the few patterns that can match it, in file order. Patterns without such a prefix
//! are tried on every line; when a stage has several, one `RegexSet` pass first tells which
//! of them can match at all.

use regex::{Captures, Regex, RegexSet};
use serde_json::Value;

use super::config::field;
use super::ops::Conv;
use super::record::{Field, Record};
use super::template::ValueTpl;

/// Fewest unprefixed patterns in a stage for which a `RegexSet` prefilter pays off.
const SET_MIN_PATTERNS: usize = 3;

/// One compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    pub regex: Regex,
    /// Literal text every match starts with, if the pattern is anchored by one.
    pub prefix: Option<String>,
    /// Capture group index, target field, conversion.
    pub captures: Vec<(usize, Field, Option<Conv>)>,
    /// Fields written when this pattern matched.
    pub set: Vec<(Field, ValueTpl)>,
}

/// A compiled `regex` stage.
#[derive(Debug, Clone)]
pub(crate) struct RegexOp {
    pub field: Field,
    patterns: Vec<Pattern>,
    /// Candidate patterns (indexes, in file order) by the first byte of the text.
    by_first_byte: Vec<Vec<usize>>,
    /// Candidates for an empty text: the unprefixed patterns.
    unprefixed: Vec<usize>,
    /// Prefilter over the unprefixed patterns, and each pattern's index in it.
    set: Option<(RegexSet, Vec<Option<usize>>)>,
}

impl Pattern {
    /// A pattern from its regex; `convert` gives the conversion of captured fields.
    pub fn new(regex: Regex, convert: &[(String, Conv)], set: Vec<(Field, ValueTpl)>) -> Pattern {
        let captures = regex
            .capture_names()
            .enumerate()
            .filter_map(|(i, name)| Some((i, name?.to_owned())))
            .map(|(i, name)| {
                let conv = convert.iter().find(|(f, _)| *f == name).map(|(_, c)| *c);
                (i, field(&name), conv)
            })
            .collect();
        Pattern {
            prefix: literal_prefix(regex.as_str()),
            regex,
            captures,
            set,
        }
    }
}

impl RegexOp {
    /// Builds the stage and its dispatch tables.
    pub fn new(field: Field, patterns: Vec<Pattern>) -> Result<RegexOp, String> {
        let mut by_first_byte = vec![Vec::new(); 256];
        let mut unprefixed = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            match p.prefix.as_deref().and_then(|s| s.as_bytes().first()) {
                Some(&b) => by_first_byte[usize::from(b)].push(i),
                None => {
                    unprefixed.push(i);
                    by_first_byte.iter_mut().for_each(|list| list.push(i));
                }
            }
        }
        // Each list was filled in pattern order: it is in file order.
        let set = if unprefixed.len() >= SET_MIN_PATTERNS {
            let sources = unprefixed.iter().map(|&i| patterns[i].regex.as_str());
            let set = RegexSet::new(sources).map_err(|e| format!("regex set: {e}"))?;
            let mut index = vec![None; patterns.len()];
            for (k, &i) in unprefixed.iter().enumerate() {
                index[i] = Some(k);
            }
            Some((set, index))
        } else {
            None
        };
        Ok(RegexOp {
            field,
            patterns,
            by_first_byte,
            unprefixed,
            set,
        })
    }

    /// The `set` block of each pattern.
    pub fn sets_mut(&mut self) -> impl Iterator<Item = &mut Vec<(Field, ValueTpl)>> {
        self.patterns.iter_mut().map(|p| &mut p.set)
    }

    /// The first pattern (in file order) that matches `text`, and its captures.
    pub fn find<'t>(&self, text: &'t str) -> Option<(usize, Captures<'t>)> {
        let candidates = match text.as_bytes().first() {
            Some(&b) => &self.by_first_byte[usize::from(b)],
            None => &self.unprefixed,
        };
        let mut set_matches = None;
        for &i in candidates {
            let p = &self.patterns[i];
            match (&p.prefix, &self.set) {
                (Some(prefix), _) if !text.starts_with(prefix.as_str()) => continue,
                (None, Some((set, index))) => {
                    let m = set_matches.get_or_insert_with(|| set.matches(text));
                    if !index[i].is_some_and(|k| m.matched(k)) {
                        continue;
                    }
                }
                _ => {}
            }
            if let Some(caps) = p.regex.captures(text) {
                return Some((i, caps));
            }
        }
        None
    }

    /// Runs the stage on `rec`; false when the field is missing or no pattern matched.
    pub fn apply(&self, rec: &mut Record) -> bool {
        let id = self.field.id;
        // The text is read where it is: taken out of its slot for the time of the match (the
        // captures may write that slot), or borrowed from the base event. Only a text inside
        // an object held by another slot is copied.
        let taken = rec.slots.get_mut(id).and_then(Option::take);
        let copied = match (&taken, rec.ancestors_empty(id)) {
            (None, false) => rec
                .get(&self.field)
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        };
        let matched = {
            let Record { table, slots, base } = &mut *rec;
            let text: Option<&str> = match (&taken, &copied) {
                (Some(v), _) => v.as_str(),
                (None, Some(s)) => Some(s),
                (None, None) if table.in_base(id) => {
                    base.get(&self.field.path).and_then(Value::as_str)
                }
                (None, None) => None,
            };
            match text.and_then(|t| self.find(t)) {
                Some((i, caps)) => {
                    for (group, f, conv) in &self.patterns[i].captures {
                        let Some(m) = caps.get(*group).filter(|m| !m.is_empty()) else {
                            continue;
                        };
                        let value = Value::String(m.as_str().to_owned());
                        let value = match conv {
                            Some(c) => c.apply(&value).unwrap_or(value),
                            None => value,
                        };
                        table.set_slot(slots, f, value);
                    }
                    Some(i)
                }
                None => None,
            }
        };
        if let Some(v) = taken {
            if let Some(slot @ None) = rec.slots.get_mut(id) {
                *slot = Some(v);
            }
        }
        let Some(i) = matched else {
            return false;
        };
        for (f, v) in &self.patterns[i].set {
            if let Some(v) = v.eval(rec) {
                rec.set(f, v);
            }
        }
        true
    }
}

/// The literal text every match of `pattern` starts with: the characters after a leading `^`
/// up to the first metacharacter (escaped punctuation counts as literal; a group holding only
/// literal text, such as `(?P<event>Accepted)`, counts as its text), minus a last unit made
/// optional by `?`, `*` or `{`. `None` when the pattern is not anchored, starts with another
/// group or a class, or has an alternation outside any group.
pub(crate) fn literal_prefix(pattern: &str) -> Option<String> {
    let mut rest = pattern.strip_prefix('^')?;
    if has_top_level_alternation(pattern) {
        return None;
    }
    let mut out = String::new();
    while let Some((unit, after)) = literal_unit(rest, true) {
        match after.chars().next() {
            Some('?' | '*' | '{') => break,
            Some('+') => {
                out.push_str(&unit);
                break;
            }
            _ => {
                out.push_str(&unit);
                rest = after;
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The literal text at the start of `s` (one character, an escaped punctuation character, or
/// with `group`, a group holding only literal characters) and what follows it.
fn literal_unit(s: &str, group: bool) -> Option<(String, &str)> {
    let c = s.chars().next()?;
    match c {
        '\\' => {
            let e = s[1..].chars().next()?;
            e.is_ascii_punctuation()
                .then(|| (e.to_string(), &s[1 + e.len_utf8()..]))
        }
        '(' if group => {
            let body = &s[1..];
            let mut rest = if let Some(b) = body.strip_prefix("?:") {
                b
            } else if let Some(b) = body.strip_prefix("?P<").or_else(|| body.strip_prefix("?<")) {
                &b[b.find('>')? + 1..]
            } else if body.starts_with('?') {
                return None;
            } else {
                body
            };
            let mut text = String::new();
            loop {
                if let Some(after) = rest.strip_prefix(')') {
                    return (!text.is_empty()).then_some((text, after));
                }
                let (unit, after) = literal_unit(rest, false)?;
                if matches!(after.chars().next(), Some('?' | '*' | '+' | '{')) {
                    return None;
                }
                text.push_str(&unit);
                rest = after;
            }
        }
        '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => None,
        c => Some((c.to_string(), &s[c.len_utf8()..])),
    }
}

/// Whether `pattern` has a `|` outside every group and class.
fn has_top_level_alternation(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    let (mut i, mut depth) = (0, 0i32);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' => {
                i = class_end(b, i);
                continue;
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'|' if depth <= 0 => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// The index after the class that opens at `start` (nested classes and escapes skipped).
fn class_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    if b.get(i) == Some(&b'^') {
        i += 1;
    }
    if b.get(i) == Some(&b']') {
        i += 1;
    }
    let mut nest = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' => nest += 1,
            b']' => {
                nest -= 1;
                if nest == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let p = |s: &str| literal_prefix(s);
        assert_eq!(p(r"^Accepted (?P<m>\S+) for").as_deref(), Some("Accepted "));
        assert_eq!(p(r"^pam_unix\((?P<s>[^:]+)").as_deref(), Some("pam_unix("));
        assert_eq!(p(r"^Failed (?:none|password)").as_deref(), Some("Failed "));
        assert_eq!(p(r"^Connections? closed").as_deref(), Some("Connection"));
        assert_eq!(p(r"^ab+c").as_deref(), Some("ab"));
        assert_eq!(p(r"^a{2}"), None);
        assert_eq!(p(r"^\s*user"), None);
        assert_eq!(p(r"Accepted"), None);
        assert_eq!(p(r"^Accepted|^Failed"), None);
        assert_eq!(p(r"^Acc[|]x").as_deref(), Some("Acc"));
        assert_eq!(p(r"^(?i)accepted"), None);
        assert_eq!(
            p(r"^(?P<e>Accepted) (?P<m>\S+)").as_deref(),
            Some("Accepted ")
        );
        assert_eq!(p(r"^(?:error: )?Received"), None);
        assert_eq!(p(r"^(Acc|Fail)ed"), None);
        assert_eq!(p(r"^(?:ab)+c").as_deref(), Some("ab"));
        assert_eq!(p(r"^(a?b)c"), None);
        assert_eq!(p(r"^\(to (?P<u>\S+)\)").as_deref(), Some("(to "));
    }

    #[test]
    fn first_match_in_file_order_whatever_the_dispatch() {
        let sources = [
            r"^Accepted (?P<a>\w+)",
            r"(?P<b>\d+) times",
            r"^Acc(?P<c>\w+)",
            r"^x$",
            r"(?P<d>bye)",
            r"(?P<e>e)",
            r"^$",
        ];
        let patterns = sources
            .iter()
            .map(|s| Pattern::new(Regex::new(s).unwrap(), &[], Vec::new()))
            .collect::<Vec<_>>();
        let op = RegexOp::new(field("message"), patterns.clone()).unwrap();
        assert!(op.set.is_some());
        for text in [
            "Accepted password",
            "Accept 3 times",
            "Accent",
            "x",
            "say bye",
            "3 times bye",
            "",
            "zzz",
            "e",
        ] {
            let naive = patterns.iter().position(|p| p.regex.is_match(text));
            assert_eq!(op.find(text).map(|(i, _)| i), naive, "{text:?}");
        }
    }
}
