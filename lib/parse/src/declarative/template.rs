//! Field paths and templates of parser files.
//!
//! A field path is a dotted ECS path (`source.ip`, `@timestamp`): non-empty parts separated by
//! single dots, without spaces, braces or quotes. Top-level names starting with `_` (`_addr`,
//! `_tmp.user`) are scratch fields: stages may use them, and they are removed once the last
//! stage has run.
//!
//! A template is a string in which `{{path}}` reads a field of the working event (spaces inside
//! the braces are allowed: `{{ user.name }}`). A template that is exactly one reference copies
//! the field's value with its type (a number stays a number); otherwise the references are
//! written as text into the string (strings as they are, other values as JSON). A template
//! whose field is missing, or whose result is the empty string, gives nothing: the stage that
//! uses it then leaves its target alone. `{{` always opens a reference; there is no escape.

use serde_json::Value;

use super::config::field;
use super::record::{Field, Record};

/// Checks that `path` is a usable field path; the error says why not.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty field name".to_owned());
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '{' | '}' | '"' | '\''))
    {
        return Err(format!("field name {path:?} holds the character {c:?}"));
    }
    if path.split('.').any(str::is_empty) {
        return Err(format!(
            "field name {path:?} has an empty part (a leading, trailing or double dot)"
        ));
    }
    Ok(())
}

/// Whether one path is the other, or a field above or below it.
pub(crate) fn related(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long.starts_with(short) && (long.len() == short.len() || long.as_bytes()[short.len()] == b'.')
}

/// Whether a field path names a scratch field (its first part starts with `_`).
pub(crate) fn is_scratch(path: &str) -> bool {
    path.starts_with('_')
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Field(Field),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
    /// The template is one scratch field that nothing reads afterwards (see
    /// [`ValueTpl::mark_last_reads`]): its value is moved out rather than copied.
    last_read: bool,
}

impl Template {
    /// Parses a template; the error says what is wrong with it.
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("template {src:?}: `{{{{` is never closed by `}}}}`"))?;
            let name = after[..close].trim();
            if name.is_empty() {
                return Err(format!("template {src:?}: empty reference `{{{{}}}}`"));
            }
            check_path(name).map_err(|e| format!("template {src:?}: {e}"))?;
            parts.push(Part::Field(field(name)));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template {
            parts,
            last_read: false,
        })
    }

    /// The fields the template reads.
    pub fn refs(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.path.as_str()),
            Part::Text(_) => None,
        })
    }

    /// [`Template::render`], moving the value out of the record when this is the last read
    /// of a scratch field (what is left there is never read again, and never output).
    fn render_mut(&self, rec: &mut Record) -> Option<Value> {
        if let (true, [Part::Field(f)]) = (self.last_read, self.parts.as_slice()) {
            // (An object with fields set under it is assembled by `render`.)
            if !rec.any_below(f) {
                let v = rec.get_mut(f)?;
                return match v {
                    Value::Null => None,
                    Value::String(s) if s.is_empty() => None,
                    v => Some(std::mem::take(v)),
                };
            }
        }
        self.render(rec)
    }

    /// The template's value on `rec`, or `None` when a field is missing or the result is
    /// empty.
    pub fn render(&self, rec: &Record) -> Option<Value> {
        if let [Part::Field(f)] = self.parts.as_slice() {
            let v = rec.get_cow(f)?;
            return match v.as_ref() {
                Value::Null => None,
                Value::String(s) if s.is_empty() => None,
                _ => Some(v.into_owned()),
            };
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => match rec.get_cow(f)?.as_ref() {
                    Value::Null => return None,
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        (!out.is_empty()).then_some(Value::String(out))
    }
}

/// A value written by `set`, `append` and `translate`: a constant, a template, or a list or
/// object of those.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ValueTpl {
    Const(Value),
    Template(Template),
    List(Vec<ValueTpl>),
    Object(Vec<(String, ValueTpl)>),
}

impl ValueTpl {
    /// Builds a value from YAML: strings holding `{{` become templates.
    pub fn from_yaml(v: &yaml_serde::Value) -> Result<ValueTpl, String> {
        use yaml_serde::Value as Y;
        Ok(match v {
            Y::Null => ValueTpl::Const(Value::Null),
            Y::Bool(b) => ValueTpl::Const(Value::Bool(*b)),
            Y::Number(n) => {
                let json = if let Some(i) = n.as_i64() {
                    Value::from(i)
                } else if let Some(u) = n.as_u64() {
                    Value::from(u)
                } else {
                    n.as_f64()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .ok_or_else(|| format!("number {n} cannot be written in JSON"))?
                };
                ValueTpl::Const(json)
            }
            Y::String(s) if s.contains("{{") => ValueTpl::Template(Template::parse(s)?),
            Y::String(s) => ValueTpl::Const(Value::String(s.clone())),
            Y::Sequence(items) => ValueTpl::List(
                items
                    .iter()
                    .map(ValueTpl::from_yaml)
                    .collect::<Result<_, _>>()?,
            ),
            Y::Mapping(map) => {
                let mut fields = Vec::with_capacity(map.len());
                for (k, v) in map {
                    let key = k
                        .as_str()
                        .ok_or_else(|| format!("object keys must be strings, not {k:?}"))?;
                    fields.push((key.to_owned(), ValueTpl::from_yaml(v)?));
                }
                ValueTpl::Object(fields)
            }
            Y::Tagged(t) => return Err(format!("YAML tags are not supported ({})", t.tag)),
        })
    }

    /// Every field the value reads.
    pub fn refs<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            ValueTpl::Const(_) => {}
            ValueTpl::Template(t) => out.extend(t.refs()),
            ValueTpl::List(items) => items.iter().for_each(|i| i.refs(out)),
            ValueTpl::Object(fields) => fields.iter().for_each(|(_, v)| v.refs(out)),
        }
    }

    /// Marks the templates that are the last read of a scratch field (`live` holds what is
    /// read after this value; the fields the value reads are added to it).
    pub fn mark_last_reads(&mut self, live: &mut Vec<String>) {
        match self {
            ValueTpl::Const(_) => {}
            ValueTpl::Template(t) => {
                if let [Part::Field(f)] = t.parts.as_slice() {
                    t.last_read = is_scratch(&f.path) && !live.iter().any(|l| related(l, &f.path));
                }
                live.extend(t.refs().map(str::to_owned));
            }
            ValueTpl::List(items) => items.iter_mut().rev().for_each(|i| i.mark_last_reads(live)),
            ValueTpl::Object(fields) => fields
                .iter_mut()
                .rev()
                .for_each(|(_, v)| v.mark_last_reads(live)),
        }
    }

    /// The value on `rec`: `None` for a template that gives nothing; list items and object
    /// fields that give nothing are left out.
    pub fn eval(&self, rec: &mut Record) -> Option<Value> {
        match self {
            ValueTpl::Const(v) => Some(v.clone()),
            ValueTpl::Template(t) => t.render_mut(rec),
            ValueTpl::List(items) => Some(Value::Array(
                items.iter().filter_map(|i| i.eval(rec)).collect(),
            )),
            ValueTpl::Object(fields) => Some(Value::Object(
                fields
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.eval(rec)?)))
                    .collect(),
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::declarative::config::with_fields;
    use crate::declarative::record::Record;
    use vigie_event::Event;

    #[test]
    fn templates_copy_or_format() {
        let srcs = [
            "{{ source.port }}",
            "{{user.name}}@{{source.port}}!",
            "x {{nope}}",
            "{{e}}",
        ];
        let (t, table) = with_fields(|| srcs.map(|s| Template::parse(s).unwrap()));
        let ev =
            Event::from_value(json!({"user": {"name": "alice"}, "source": {"port": 22}, "e": ""}));
        let rec = Record::new(&table, ev.unwrap());
        assert_eq!(t[0].render(&rec), Some(json!(22)));
        assert_eq!(t[1].render(&rec), Some(json!("alice@22!")));
        assert_eq!(t[2].render(&rec), None);
        assert_eq!(t[3].render(&rec), None);
        assert_eq!(Template::parse("plain").unwrap().refs().count(), 0);
    }

    #[test]
    fn template_syntax_errors() {
        assert!(Template::parse("{{user.name")
            .unwrap_err()
            .contains("never closed"));
        assert!(Template::parse("a {{ }} b")
            .unwrap_err()
            .contains("empty reference"));
        assert!(Template::parse("{{a..b}}")
            .unwrap_err()
            .contains("empty part"));
    }

    #[test]
    fn paths() {
        assert!(check_path("@timestamp").is_ok());
        assert!(check_path("system.auth.ssh.method").is_ok());
        for bad in ["", ".a", "a.", "a b", "a{b"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(is_scratch("_addr") && !is_scratch("a._b"));
    }
}
