//! Compiled stages and how they run on the working event.
//!
//! A stage runs when its condition holds (or it has none). Parsing stages (`syslog`, `json`,
//! `kv`, `csv`, `regex`, `date`) and `convert` can fail: the field to read is missing, or
//! its text is not of the expected shape. What a failure does is the stage's `on_failure`:
//! `continue` (nothing is written, the next stage runs) or `fail` (the whole line becomes a
//! parse failure: see [`super::Parser::parse`]). The other stages never fail. The `regex`
//! stage lives in [`super::regex_op`], `kv` and `csv` in [`super::kv_csv`].

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::condition::Condition;
use super::date::{Format, Zone};
use super::kv_csv::{CsvOp, KvOp};
use super::record::{Field, Record};
use super::regex_op::RegexOp;
use super::template::ValueTpl;
use crate::{syslog, Context};

/// What a failing stage does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OnFailure {
    /// The line becomes a parse failure.
    Fail,
    /// Nothing is written; the next stage runs.
    Continue,
}

/// A type for `convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Conv {
    Integer,
    Float,
    Boolean,
    String,
    /// An IP address, kept as a string: the conversion fails on anything else.
    Ip,
}

impl Conv {
    /// The value converted, or `None` when it cannot be.
    pub fn apply(self, v: &Value) -> Option<Value> {
        match (self, v) {
            (Conv::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Some(v.clone()),
            (Conv::Integer, Value::Number(n)) => {
                let f = n.as_f64()?;
                (f.fract() == 0.0 && f.abs() < 9e15).then(|| Value::from(f as i64))
            }
            (Conv::Integer, Value::String(s)) => {
                let s = s.trim();
                s.parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| s.parse::<u64>().map(Value::from))
                    .ok()
            }
            (Conv::Float, Value::Number(n)) => n.as_f64().and_then(float),
            (Conv::Float, Value::String(s)) => s.trim().parse::<f64>().ok().and_then(float),
            (Conv::Boolean, Value::Bool(_)) => Some(v.clone()),
            (Conv::Boolean, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Some(Value::Bool(true)),
                "false" | "no" | "off" | "0" => Some(Value::Bool(false)),
                _ => None,
            },
            (Conv::String, Value::String(_)) => Some(v.clone()),
            (Conv::String, Value::Number(_) | Value::Bool(_)) => Some(Value::String(v.to_string())),
            (Conv::Ip, Value::String(s)) => s.trim().parse::<IpAddr>().ok().map(|_| v.clone()),
            _ => None,
        }
    }
}

fn float(f: f64) -> Option<Value> {
    serde_json::Number::from_f64(f).map(Value::Number)
}

/// A compiled stage.
#[derive(Debug, Clone)]
pub(crate) struct Stage {
    pub cond: Option<Condition>,
    pub op: Op,
    pub on_failure: OnFailure,
}

/// What a stage does.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Syslog {
        field: Field,
        zone: Option<Zone>,
    },
    Json {
        field: Field,
        target: Option<String>,
    },
    Kv(KvOp),
    Csv(CsvOp),
    Regex(Box<RegexOp>),
    Date(DateOp),
    Set(Vec<(Field, ValueTpl)>),
    SetDefault(Vec<(Field, ValueTpl)>),
    Append(Vec<(Field, ValueTpl)>),
    Rename(Vec<(Field, Field)>),
    Delete(Vec<Field>),
    Translate(TranslateOp),
    Convert(Vec<(Field, Conv)>),
    Block(Vec<Stage>),
}

/// A `date` stage.
#[derive(Debug, Clone)]
pub(crate) struct DateOp {
    pub field: Field,
    pub target: Field,
    pub formats: Vec<Format>,
    pub zone: Zone,
}

/// A `translate` stage.
#[derive(Debug, Clone)]
pub(crate) struct TranslateOp {
    pub field: Field,
    pub target: Field,
    pub map: HashMap<String, ValueTpl>,
    pub default: Option<ValueTpl>,
}

/// A stage with `on_failure: fail` failed: the line is a parse failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failed;

/// Runs `stages` in order on `rec`.
pub(crate) fn run(stages: &[Stage], rec: &mut Record, ctx: &Context) -> Result<(), Failed> {
    for stage in stages {
        if stage.cond.as_ref().is_some_and(|c| !c.eval(rec)) {
            continue;
        }
        if !stage.op.apply(rec, ctx)? && stage.on_failure == OnFailure::Fail {
            return Err(Failed);
        }
    }
    Ok(())
}

/// Marks the templates of `stages` that read a scratch field for the last time, so that they
/// move its value rather than copy it. `live` holds the fields read after the stages (none at
/// the end: scratch fields are dropped then); the fields the stages read are added to it.
///
/// The stages run in file order and never loop, so walking them backwards sees every read that
/// can follow a template; reads are compared as paths, a field above or below counting as the
/// same field. Writes are ignored (a read after a write would find the new value, but keeping
/// such a field alive is only a copy too many).
pub(crate) fn mark_last_reads(stages: &mut [Stage], live: &mut Vec<String>) {
    for stage in stages.iter_mut().rev() {
        stage.op.mark_last_reads(live);
        if let Some(cond) = &stage.cond {
            let mut reads = Vec::new();
            cond.fields(&mut reads);
            live.extend(reads.into_iter().map(str::to_owned));
        }
    }
}

/// Marks `values` (evaluated in order, one after the other) against `live`.
fn mark_values<'a>(
    values: impl DoubleEndedIterator<Item = &'a mut ValueTpl>,
    live: &mut Vec<String>,
) {
    for v in values.rev() {
        v.mark_last_reads(live);
    }
}

/// Marks `values` of which at most one is evaluated (the `set` of each regex pattern, the
/// entries of a `translate` map) against the same `live`; then adds what any of them reads.
fn mark_alternatives<'a>(
    values: impl Iterator<Item = Vec<&'a mut ValueTpl>>,
    live: &mut Vec<String>,
) {
    let after = live.clone();
    for one in values {
        let mut mine = after.clone();
        mark_values(one.into_iter(), &mut mine);
        live.extend(mine.into_iter().skip(after.len()));
    }
}

impl Op {
    fn mark_last_reads(&mut self, live: &mut Vec<String>) {
        let mut add = |p: &str| live.push(p.to_owned());
        match self {
            Op::Syslog { field, zone, .. } => {
                zone.iter().flat_map(Zone::refs).for_each(&mut add);
                add(&field.path);
            }
            Op::Json { field, .. } => add(&field.path),
            Op::Kv(kv) => add(&kv.field.path),
            Op::Csv(csv) => add(&csv.field.path),
            Op::Regex(re) => {
                let field = re.field.path.clone();
                mark_alternatives(
                    re.sets_mut()
                        .map(|set| set.iter_mut().map(|(_, v)| v).collect()),
                    live,
                );
                live.push(field);
            }
            Op::Date(d) => {
                d.zone.refs().for_each(&mut add);
                add(&d.field.path);
            }
            Op::Set(fields) => mark_values(fields.iter_mut().map(|(_, v)| v), live),
            Op::SetDefault(fields) => {
                // Each target is tested before its value is evaluated.
                for (f, v) in fields.iter_mut().rev() {
                    v.mark_last_reads(live);
                    live.push(f.path.clone());
                }
            }
            Op::Append(fields) => {
                // Each value is evaluated, then its target read.
                for (f, v) in fields.iter_mut().rev() {
                    live.push(f.path.clone());
                    v.mark_last_reads(live);
                }
            }
            Op::Rename(pairs) => pairs.iter().for_each(|(from, _)| add(&from.path)),
            Op::Delete(fields) => fields.iter().for_each(|f| add(&f.path)),
            Op::Translate(t) => {
                let field = t.field.path.clone();
                let values = t.map.values_mut().chain(t.default.as_mut());
                mark_alternatives(values.map(|v| vec![v]), live);
                live.push(field);
            }
            Op::Convert(fields) => fields.iter().for_each(|(f, _)| add(&f.path)),
            Op::Block(stages) => mark_last_reads(stages, live),
        }
    }
}

/// What the stages may write into the base event rather than into slots.
#[derive(Debug, Default)]
pub(crate) struct BaseShape {
    pub any: bool,
    pub exact: Vec<String>,
    pub prefixes: Vec<String>,
}

impl BaseShape {
    /// Whether the base event may hold `path`, or a field above or below it.
    pub fn holds(&self, path: &str) -> bool {
        let related = |a: &str, b: &str| {
            a == b
                || (a.len() > b.len() && a.starts_with(b) && a.as_bytes()[b.len()] == b'.')
                || (b.len() > a.len() && b.starts_with(a) && b.as_bytes()[a.len()] == b'.')
        };
        self.any
            || path == "message"
            || self
                .exact
                .iter()
                .chain(&self.prefixes)
                .any(|p| related(path, p))
    }

    /// Adds what `stages` write into the base.
    pub fn add(&mut self, stages: &[Stage]) {
        for stage in stages {
            match &stage.op {
                Op::Syslog { .. } => {
                    let fields = super::config::SYSLOG_FIELDS.iter().map(|f| (*f).to_owned());
                    self.exact.extend(fields);
                    self.prefixes.push("log.syslog.structured_data".to_owned());
                }
                Op::Json { target: None, .. } => self.any = true,
                Op::Json {
                    target: Some(t), ..
                } => self.prefixes.push(t.clone()),
                Op::Kv(kv) => match &kv.prefix {
                    Some(p) => self.prefixes.push(p.trim_end_matches('.').to_owned()),
                    None if kv.map.is_empty() => self.any = true,
                    None => {}
                },
                Op::Block(inner) => self.add(inner),
                _ => {}
            }
        }
    }
}

impl Op {
    /// Runs the stage; `Ok(false)` when it failed.
    fn apply(&self, rec: &mut Record, ctx: &Context) -> Result<bool, Failed> {
        Ok(match self {
            Op::Syslog { field, zone } => apply_syslog(rec, field, zone.as_ref(), ctx),
            Op::Json { field, target } => apply_json(rec, field, target.as_deref()),
            Op::Kv(kv) => kv.apply(rec),
            Op::Csv(csv) => csv.apply(rec),
            Op::Regex(re) => re.apply(rec),
            Op::Date(date) => date.apply(rec, ctx),
            Op::Set(fields) => {
                for (f, v) in fields {
                    if let Some(v) = v.eval(rec) {
                        rec.set(f, v);
                    }
                }
                true
            }
            Op::SetDefault(fields) => {
                for (f, v) in fields {
                    if !rec.exists(f) {
                        if let Some(v) = v.eval(rec) {
                            rec.set(f, v);
                        }
                    }
                }
                true
            }
            Op::Append(fields) => {
                for (f, v) in fields {
                    if let Some(v) = v.eval(rec) {
                        append(rec, f, v);
                    }
                }
                true
            }
            Op::Rename(pairs) => {
                for (from, to) in pairs {
                    if let Some(v) = rec.take(from) {
                        rec.set(to, v);
                    }
                }
                true
            }
            Op::Delete(fields) => {
                for f in fields {
                    rec.take(f);
                }
                true
            }
            Op::Translate(t) => t.apply(rec),
            Op::Convert(fields) => {
                let mut ok = true;
                for (f, conv) in fields {
                    match rec.get(f).map(|v| conv.apply(v)) {
                        Some(Some(v)) => rec.set(f, v),
                        Some(None) => ok = false,
                        None => {}
                    }
                }
                ok
            }
            Op::Block(stages) => {
                run(stages, rec, ctx)?;
                true
            }
        })
    }
}

/// Merges `value` into the base event: at its root when `target` is `None`, else into the
/// object at `target` (created, or replacing a non-object). Objects are merged key by key.
/// The slots of the fields written are cleared: the base now holds the latest values.
fn merge_into_base(rec: &mut Record, target: Option<&str>, value: Map<String, Value>) {
    match target {
        None => {
            if rec.slots.iter().any(Option::is_some) {
                for key in value.keys() {
                    rec.clear_under(key);
                }
            }
            merge(rec.base.as_map_mut(), value);
        }
        Some(path) => {
            let first = path.split('.').next().unwrap_or(path).to_owned();
            let dst = match rec.base.remove(path) {
                Some(Value::Object(mut m)) if !m.is_empty() => {
                    merge(&mut m, value);
                    m
                }
                // Nothing to merge with (the usual case): the object is taken whole.
                _ => value,
            };
            rec.base.set(path, Value::Object(dst));
            rec.clear_under(&first);
        }
    }
}

fn merge(dst: &mut Map<String, Value>, src: Map<String, Value>) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(Value::Object(d)), Value::Object(s)) => merge(d, s),
            (_, v) => {
                dst.insert(k, v);
            }
        }
    }
}

fn apply_syslog(rec: &mut Record, field: &Field, zone: Option<&Zone>, ctx: &Context) -> bool {
    let offset = zone.map(|z| z.offset(rec, ctx));
    let Some(Value::String(text)) = rec.get(field) else {
        return false;
    };
    let parsed = match offset {
        Some(local_offset) => syslog::decode(
            text,
            &Context {
                local_offset,
                ..ctx.clone()
            },
        ),
        None => syslog::decode(text, ctx),
    };
    let Ok(parsed) = parsed else {
        return false;
    };
    let only_the_line = field.path == vigie_event::fields::MESSAGE
        && rec.base.as_map().len() == 1
        && !rec.slots.iter().any(Option::is_some);
    if only_the_line {
        // The usual first stage: the base holds only the line, which the header replaces.
        rec.base = parsed;
    } else {
        merge_into_base(rec, None, parsed.into_map());
    }
    true
}

fn apply_json(rec: &mut Record, field: &Field, target: Option<&str>) -> bool {
    let Some(Value::String(text)) = rec.get(field) else {
        return false;
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => {
            merge_into_base(rec, target, map);
            true
        }
        _ => false,
    }
}

/// Adds `value` (or each of its items) to the list at `f`, skipping values already there;
/// an empty list adds nothing (and creates no field).
fn append(rec: &mut Record, f: &Field, value: Value) {
    let new = match value {
        Value::Array(items) if items.is_empty() => return,
        Value::Array(items) => items,
        v => vec![v],
    };
    let mut list = match rec.take(f) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other],
    };
    for v in new {
        if !list.contains(&v) {
            list.push(v);
        }
    }
    rec.set(f, Value::Array(list));
}

impl DateOp {
    fn apply(&self, rec: &mut Record, ctx: &Context) -> bool {
        let offset = self.zone.offset(rec, ctx);
        let Some(v) = rec.get(&self.field) else {
            return false;
        };
        match self.formats.iter().find_map(|f| f.read(v, offset, ctx)) {
            Some(t) => {
                rec.set(
                    &self.target,
                    Value::String(vigie_event::format_timestamp(t)),
                );
                true
            }
            None => false,
        }
    }
}

impl TranslateOp {
    fn apply(&self, rec: &mut Record) -> bool {
        let entry = match rec.get(&self.field) {
            Some(Value::String(s)) => self.map.get(s.as_str()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => self.map.get(&v.to_string()),
            _ => None,
        };
        if let Some(v) = entry.or(self.default.as_ref()).and_then(|v| v.eval(rec)) {
            rec.set(&self.target, v);
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
    fn conversions() {
        assert_eq!(Conv::Integer.apply(&json!(" 22 ")), Some(json!(22)));
        assert_eq!(Conv::Integer.apply(&json!("x")), None);
        assert_eq!(Conv::Integer.apply(&json!(3.0)), Some(json!(3)));
        assert_eq!(Conv::Float.apply(&json!("1.5")), Some(json!(1.5)));
        assert_eq!(Conv::Boolean.apply(&json!("Yes")), Some(json!(true)));
        assert_eq!(Conv::String.apply(&json!(7)), Some(json!("7")));
        assert_eq!(
            Conv::Ip.apply(&json!("2001:db8::1")),
            Some(json!("2001:db8::1"))
        );
        assert_eq!(Conv::Ip.apply(&json!("host.example")), None);
    }

    #[test]
    fn append_keeps_a_set() {
        let (f, table) = with_fields(|| field("related.user"));
        let mut rec = Record::new(&table, Event::new());
        append(&mut rec, &f, json!("alice"));
        append(&mut rec, &f, json!(["alice", "root"]));
        append(&mut rec, &f, json!([]));
        assert_eq!(rec.get(&f), Some(&json!(["alice", "root"])));
    }
}
