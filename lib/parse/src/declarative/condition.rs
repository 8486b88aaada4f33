//! Stage conditions: the `if:` of a stage.
//!
//! A condition is a mapping of tests, all of which must hold:
//! - `exists: path` (or a list of paths): the field is present;
//! - `equals: {path: value}`: the field equals the value, or one of the values when a list is
//!   given (`equals: {process.name: [sshd, sshd-session]}`);
//! - `contains: {path: text}` / `starts_with: {path: text}`: substring and prefix tests on a
//!   string field (a list of texts means any of them);
//! - `matches: {path: regex}`: the regex finds a match in the string field;
//! - `and: [cond, …]`, `or: [cond, …]`, `not: cond`: combinations.
//!
//! On a list field (`event.category`) a test holds when it holds for one of its items. A test on
//! a missing field is false (so `not: {equals: …}` is true for it). Numbers and strings compare
//! by their text: `equals: {source.port: 22}` holds for `22` and for `"22"`.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::config::field;
use super::record::{Field, Record};
use super::template::check_path;

/// A compiled condition.
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    Exists(Field),
    Equals(Field, Vec<String>),
    Contains(Field, Vec<String>),
    StartsWith(Field, Vec<String>),
    Matches(Field, Regex),
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
}

/// One value or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A scalar compared by `equals`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(s) => s,
        }
    }
}

/// A condition as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    exists: Option<OneOrMany<String>>,
    equals: Option<BTreeMap<String, OneOrMany<Scalar>>>,
    contains: Option<BTreeMap<String, OneOrMany<String>>>,
    starts_with: Option<BTreeMap<String, OneOrMany<String>>>,
    matches: Option<BTreeMap<String, String>>,
    and: Option<Vec<Condition>>,
    or: Option<Vec<Condition>>,
    not: Option<Box<Condition>>,
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawCondition::deserialize(d)?;
        raw.compile().map_err(serde::de::Error::custom)
    }
}

fn texts<T>(
    map: Option<BTreeMap<String, OneOrMany<T>>>,
    text: impl Fn(T) -> String,
    make: impl Fn(Field, Vec<String>) -> Condition,
    out: &mut Vec<Condition>,
) -> Result<(), String> {
    for (path, values) in map.into_iter().flatten() {
        check_path(&path)?;
        let values: Vec<String> = values.into_vec().into_iter().map(&text).collect();
        if values.is_empty() {
            return Err(format!("no value given to compare {path} with"));
        }
        out.push(make(field(&path), values));
    }
    Ok(())
}

impl RawCondition {
    fn compile(self) -> Result<Condition, String> {
        let mut all = Vec::new();
        for path in self.exists.map(OneOrMany::into_vec).into_iter().flatten() {
            check_path(&path)?;
            all.push(Condition::Exists(field(&path)));
        }
        texts(self.equals, Scalar::text, Condition::Equals, &mut all)?;
        texts(self.contains, |s| s, Condition::Contains, &mut all)?;
        texts(self.starts_with, |s| s, Condition::StartsWith, &mut all)?;
        for (path, re) in self.matches.into_iter().flatten() {
            check_path(&path)?;
            let re = Regex::new(&re).map_err(|e| format!("invalid regex for {path}: {e}"))?;
            all.push(Condition::Matches(field(&path), re));
        }
        if let Some(list) = self.and {
            all.push(Condition::And(list));
        }
        if let Some(list) = self.or {
            if list.is_empty() {
                return Err("`or` needs at least one condition".to_owned());
            }
            all.push(Condition::Or(list));
        }
        if let Some(c) = self.not {
            all.push(Condition::Not(c));
        }
        match all.len() {
            0 => Err(
                "empty condition: expected one of exists, equals, contains, starts_with, \
                 matches, and, or, not"
                    .to_owned(),
            ),
            1 => Ok(all.remove(0)),
            _ => Ok(Condition::And(all)),
        }
    }
}

/// Whether `test` holds for the value or, for a list, one of its items.
fn any_text(v: &Value, test: &dyn Fn(&str) -> bool) -> bool {
    match v {
        Value::String(s) => test(s),
        Value::Number(n) => test(&n.to_string()),
        Value::Bool(b) => test(if *b { "true" } else { "false" }),
        Value::Array(items) => items.iter().any(|i| !i.is_array() && any_text(i, test)),
        Value::Null | Value::Object(_) => false,
    }
}

impl Condition {
    /// Whether the condition holds on `rec`.
    pub fn eval(&self, rec: &Record) -> bool {
        match self {
            Condition::Exists(f) => rec.exists(f),
            Condition::Equals(f, want) => rec
                .get(f)
                .is_some_and(|v| any_text(v, &|s| want.iter().any(|w| w == s))),
            Condition::Contains(f, want) => rec
                .get(f)
                .is_some_and(|v| any_text(v, &|s| want.iter().any(|w| s.contains(w.as_str())))),
            Condition::StartsWith(f, want) => rec
                .get(f)
                .is_some_and(|v| any_text(v, &|s| want.iter().any(|w| s.starts_with(w.as_str())))),
            Condition::Matches(f, re) => {
                rec.get(f).is_some_and(|v| any_text(v, &|s| re.is_match(s)))
            }
            Condition::And(list) => list.iter().all(|c| c.eval(rec)),
            Condition::Or(list) => list.iter().any(|c| c.eval(rec)),
            Condition::Not(c) => !c.eval(rec),
        }
    }

    /// Every field the condition reads.
    pub fn fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Condition::Exists(p)
            | Condition::Equals(p, _)
            | Condition::Contains(p, _)
            | Condition::StartsWith(p, _)
            | Condition::Matches(p, _) => out.push(&p.path),
            Condition::And(list) | Condition::Or(list) => list.iter().for_each(|c| c.fields(out)),
            Condition::Not(c) => c.fields(out),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::declarative::config::with_fields;
    use serde_json::json;
    use vigie_event::Event;

    #[test]
    fn tests_and_combinations() {
        let ev = Event::from_value(json!({
            "process": {"name": "sshd"},
            "event": {"category": ["authentication", "session"]},
            "source": {"port": 22},
            "message": "Accepted publickey for alice"
        }))
        .unwrap();
        let holds = |y: &str| {
            let (c, table) = with_fields(|| yaml_serde::from_str::<Condition>(y).unwrap());
            let rec = Record::new(&table, ev.clone());
            c.eval(&rec)
        };
        assert!(holds("exists: process.name"));
        assert!(!holds("exists: [process.name, user.name]"));
        assert!(holds("equals: {process.name: [sudo, sshd]}"));
        assert!(holds("equals: {event.category: session}"));
        assert!(holds("equals: {source.port: 22}"));
        assert!(holds("equals: {source.port: '22'}"));
        assert!(holds("contains: {message: publickey}"));
        assert!(holds("starts_with: {message: [Failed, Accepted]}"));
        assert!(holds(r"matches: {message: 'for \w+$'}"));
        assert!(!holds("equals: {user.name: alice}"));
        assert!(holds("not: {equals: {user.name: alice}}"));
        assert!(holds("or: [{exists: nope}, {exists: message}]"));
        assert!(!holds("and: [{exists: nope}, {exists: message}]"));
        assert!(!holds("{exists: message, equals: {process.name: sudo}}"));
    }

    #[test]
    fn bad_conditions_are_refused() {
        let err = |y: &str| {
            yaml_serde::from_str::<Condition>(y)
                .unwrap_err()
                .to_string()
        };
        assert!(err("{}").contains("empty condition"));
        assert!(err("equal: {a: b}").contains("unknown field `equal`"));
        assert!(err("matches: {message: '(unclosed'}").contains("invalid regex for message"));
        assert!(err("exists: 'a..b'").contains("empty part"));
    }
}
