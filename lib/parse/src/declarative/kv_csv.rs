//! The `kv` and `csv` stages: text split into named values.
//!
//! `kv` reads `key=value` pairs (separators configurable) from a field. A value may be quoted
//! with `"` or `'` (the quotes are dropped, separators inside are kept); a word without a value
//! separator is skipped; empty values are dropped unless `keep_empty`. Keys listed in `map` go
//! to the field named there; the others go under `target` (or, with neither `map` nor
//! `target`, to the event's root).
//!
//! `csv` reads one record (RFC 4180 quoting: `""` inside quotes is a quote) and writes its
//! columns to the fields listed in `columns` (`null` skips a column); empty values are not
//! written. A quote left open is a failure.

use serde_json::Value;

use super::ops::Conv;
use super::record::{Field, Record};
use super::template::check_path;

/// A `kv` stage.
#[derive(Debug, Clone)]
pub(crate) struct KvOp {
    pub field: Field,
    pub separator: String,
    pub value_separator: String,
    pub prefix: Option<String>,
    /// Keys written to a field of their own; with a map and no prefix, other keys are dropped.
    pub map: Vec<(String, Field)>,
    pub keep_empty: bool,
    pub convert: Vec<(String, Conv)>,
}

/// A `csv` stage.
#[derive(Debug, Clone)]
pub(crate) struct CsvOp {
    pub field: Field,
    pub separator: char,
    pub quote: char,
    pub columns: Vec<Option<Field>>,
    pub trim: bool,
    pub convert: Vec<(Field, Conv)>,
}

/// Converts `value` when `path` has a conversion.
fn converted<'a, K: AsRef<str> + 'a>(
    convert: impl IntoIterator<Item = &'a (K, Conv)>,
    path: &str,
    value: Value,
) -> Value {
    match convert.into_iter().find(|(f, _)| f.as_ref() == path) {
        Some((_, c)) => c.apply(&value).unwrap_or(value),
        None => value,
    }
}

impl AsRef<str> for Field {
    fn as_ref(&self) -> &str {
        &self.path
    }
}

/// Where a `kv` key goes: a field of the file's `map`, or a name made from the key.
enum KvTarget<'a> {
    Slot(&'a Field),
    Base(String),
}

impl KvOp {
    /// Where a key goes, if anywhere.
    fn target(&self, key: &str) -> Option<KvTarget<'_>> {
        if let Some((_, to)) = self.map.iter().find(|(k, _)| k == key) {
            return Some(KvTarget::Slot(to));
        }
        let path = match &self.prefix {
            Some(prefix) => format!("{prefix}{key}"),
            None if self.map.is_empty() => key.to_owned(),
            None => return None,
        };
        check_path(&path).ok()?;
        Some(KvTarget::Base(path))
    }

    pub(super) fn apply(&self, rec: &mut Record) -> bool {
        let Some(Value::String(text)) = rec.get(&self.field) else {
            return false;
        };
        let mut found: Vec<(String, String)> = Vec::new();
        let (sep, vsep) = (self.separator.as_str(), self.value_separator.as_str());
        let mut rest = text.as_str();
        loop {
            rest = rest.trim_start_matches(sep).trim_start();
            if rest.is_empty() {
                break;
            }
            let next_sep = rest.find(sep);
            let Some(v) = rest.find(vsep).filter(|v| next_sep.is_none_or(|s| *v < s)) else {
                // A word without a value: skipped.
                match next_sep {
                    Some(s) => {
                        rest = &rest[s..];
                        continue;
                    }
                    None => break,
                }
            };
            let key = rest[..v].trim();
            let after = &rest[v + vsep.len()..];
            let (value, tail) = match after.chars().next() {
                Some(q @ ('"' | '\'')) => match after[1..].find(q) {
                    Some(end) => (&after[1..1 + end], &after[end + 2..]),
                    None => (&after[1..], ""),
                },
                _ => {
                    let end = after.find(sep).unwrap_or(after.len());
                    (after[..end].trim(), &after[end..])
                }
            };
            rest = tail;
            if key.is_empty() || (value.is_empty() && !self.keep_empty) {
                continue;
            }
            found.push((key.to_owned(), value.to_owned()));
        }
        let any = !found.is_empty();
        for (key, value) in found {
            match self.target(&key) {
                Some(KvTarget::Slot(f)) => {
                    let value = converted(&self.convert, &f.path, Value::String(value));
                    rec.set(f, value);
                }
                Some(KvTarget::Base(path)) => {
                    let value = converted(&self.convert, &path, Value::String(value));
                    // A name the file also reads (a template, a condition) has a slot.
                    match rec.table.slot(&path) {
                        Some(id) => {
                            let f = Field { id, path };
                            rec.set(&f, value);
                        }
                        None => rec.base.set(&path, value),
                    }
                }
                None => {}
            }
        }
        any
    }
}

/// Splits one CSV record; `None` when a quoted value is not closed.
fn split_csv(text: &str, sep: char, quote: char) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == quote {
                if chars.peek() == Some(&quote) {
                    cur.push(quote);
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == quote && cur.is_empty() {
            quoted = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if quoted {
        return None;
    }
    out.push(cur);
    Some(out)
}

impl CsvOp {
    pub(super) fn apply(&self, rec: &mut Record) -> bool {
        let Some(Value::String(text)) = rec.get(&self.field) else {
            return false;
        };
        let Some(values) = split_csv(text, self.separator, self.quote) else {
            return false;
        };
        for (column, value) in self.columns.iter().zip(values) {
            let (Some(f), value) = (column, value) else {
                continue;
            };
            let value = if self.trim {
                value.trim().to_owned()
            } else {
                value
            };
            if !value.is_empty() {
                let value = converted(&self.convert, &f.path, Value::String(value));
                rec.set(f, value);
            }
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::declarative::config::{field, with_fields};
    use serde_json::json;
    use vigie_event::Event;

    #[test]
    fn csv_records() {
        assert_eq!(
            split_csv(r#"a,"b,c",,"d""e""#, ',', '"').unwrap(),
            ["a", "b,c", "", "d\"e"]
        );
        assert_eq!(split_csv(r#"a,"b"#, ',', '"'), None);
    }

    #[test]
    fn kv_pairs() {
        let (op, table) = with_fields(|| KvOp {
            field: field("message"),
            separator: " ".into(),
            value_separator: "=".into(),
            prefix: Some("kv.".into()),
            map: vec![("rhost".into(), field("source.address"))],
            keep_empty: false,
            convert: vec![("kv.uid".into(), Conv::Integer)],
        });
        let line = "authentication failure; logname= uid=0 tty=ssh rhost=203.0.113.9  user=root msg=\"a b\"";
        let mut rec = Record::new(
            &table,
            Event::from_value(json!({ "message": line })).unwrap(),
        );
        assert!(op.apply(&mut rec));
        let ev = rec.into_event();
        assert_eq!(
            ev.get("kv"),
            Some(&json!({"uid": 0, "tty": "ssh", "user": "root", "msg": "a b"}))
        );
        assert_eq!(ev.get_str("source.address"), Some("203.0.113.9"));
        let mut rec = Record::new(
            &table,
            Event::from_value(json!({"message": "nothing"})).unwrap(),
        );
        assert!(!op.apply(&mut rec));
    }
}
