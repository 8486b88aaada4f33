//! Stages as written (YAML) and their compilation.
//!
//! A stage is a mapping with exactly one stage type (`regex:`, `set:`, …) and optionally `if`,
//! `on_failure` and `description`. Each stage is compiled as soon as it is read, so that its
//! errors carry its position: the regexes and date formats must compile, and what it reads
//! must have been written by an earlier stage (see [`super::config`]). Compiling also names
//! every field the stage touches, which gives it its slot (see [`super::record`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use regex::Regex;
use serde::de::{self, value::MapAccessDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::condition::Condition;
use super::config::{
    check_reads, field, known_add, known_check, known_snapshot, present, Known, OneOrMany, Ordered,
    STAGE_TYPES, SYSLOG_FIELDS,
};
use super::date::{Format, Zone};
use super::kv_csv::{CsvOp, KvOp};
use super::ops::{Conv, DateOp, OnFailure, Op, Stage, TranslateOp};
use super::record::Field;
use super::regex_op::{Pattern, RegexOp};
use super::template::{check_path, ValueTpl};

fn message() -> String {
    "message".to_owned()
}
fn space() -> String {
    " ".to_owned()
}
fn equals_sign() -> String {
    "=".to_owned()
}
fn comma() -> String {
    ",".to_owned()
}
fn double_quote() -> String {
    "\"".to_owned()
}
fn timestamp() -> String {
    "@timestamp".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyslogCfg {
    #[serde(default = "message")]
    field: String,
    timezone: Option<String>,
}

impl Default for SyslogCfg {
    fn default() -> Self {
        SyslogCfg {
            field: message(),
            timezone: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCfg {
    #[serde(default = "message")]
    field: String,
    target: Option<String>,
}

impl Default for JsonCfg {
    fn default() -> Self {
        JsonCfg {
            field: message(),
            target: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KvCfg {
    #[serde(default = "message")]
    field: String,
    #[serde(default = "space")]
    separator: String,
    #[serde(default = "equals_sign")]
    value_separator: String,
    target: Option<String>,
    #[serde(default)]
    map: Ordered<String>,
    #[serde(default)]
    keep_empty: bool,
    #[serde(default)]
    convert: Ordered<Conv>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvCfg {
    #[serde(default = "message")]
    field: String,
    #[serde(default = "comma")]
    separator: String,
    #[serde(default = "double_quote")]
    quote: String,
    columns: Vec<Option<String>>,
    #[serde(default)]
    trim: bool,
    #[serde(default)]
    convert: Ordered<Conv>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegexCfg {
    #[serde(default = "message")]
    field: String,
    patterns: Vec<RawPattern>,
    #[serde(default)]
    convert: Ordered<Conv>,
}

/// A pattern: a regex, or `{match: regex, set: {…}}`.
#[derive(Debug)]
struct RawPattern {
    regex: Regex,
    set: Ordered<yaml_serde::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternMap {
    #[serde(rename = "match")]
    regex: String,
    #[serde(default)]
    set: Ordered<yaml_serde::Value>,
}

fn compile_regex(src: &str) -> Result<Regex, String> {
    Regex::new(src).map_err(|e| format!("invalid regex {src:?}: {e}"))
}

impl<'de> Deserialize<'de> for RawPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PV;
        impl<'de> Visitor<'de> for PV {
            type Value = RawPattern;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a regex, or a mapping with `match` (a regex) and `set`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPattern, E> {
                Ok(RawPattern {
                    regex: compile_regex(v).map_err(E::custom)?,
                    set: Ordered::default(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawPattern, A::Error> {
                let p = PatternMap::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RawPattern {
                    regex: compile_regex(&p.regex).map_err(de::Error::custom)?,
                    set: p.set,
                })
            }
        }
        d.deserialize_any(PV)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DateCfg {
    #[serde(default = "message")]
    field: String,
    #[serde(default = "timestamp")]
    target: String,
    formats: OneOrMany<String>,
    timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TranslateCfg {
    field: String,
    target: Option<String>,
    map: Ordered<yaml_serde::Value>,
    default: Option<yaml_serde::Value>,
}

/// A stage as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    #[serde(rename = "if")]
    cond: Option<Condition>,
    on_failure: Option<OnFailure>,
    #[allow(dead_code)] // for people reading the file
    description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    syslog: Option<SyslogCfg>,
    #[serde(default, deserialize_with = "present")]
    json: Option<JsonCfg>,
    kv: Option<KvCfg>,
    csv: Option<CsvCfg>,
    regex: Option<RegexCfg>,
    date: Option<DateCfg>,
    set: Option<Ordered<yaml_serde::Value>>,
    set_default: Option<Ordered<yaml_serde::Value>>,
    append: Option<Ordered<yaml_serde::Value>>,
    rename: Option<Ordered<String>>,
    delete: Option<OneOrMany<String>>,
    translate: Option<TranslateCfg>,
    convert: Option<Ordered<Conv>>,
    stages: Option<Vec<Stage>>,
}

impl<'de> Deserialize<'de> for Stage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SV;
        impl<'de> Visitor<'de> for SV {
            type Value = Stage;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a stage: a mapping with one of {STAGE_TYPES}")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Stage, A::Error> {
                let before = known_snapshot();
                let raw = RawStage::deserialize(MapAccessDeserializer::new(map))?;
                raw.compile(before.as_ref()).map_err(de::Error::custom)
            }
        }
        d.deserialize_map(SV)
    }
}

fn paths<'a>(list: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    list.into_iter().try_for_each(check_path)
}

/// Compiles `field: value` entries, checking what their templates read.
fn fields(
    entries: Ordered<yaml_serde::Value>,
    what: &str,
) -> Result<Vec<(Field, ValueTpl)>, String> {
    let mut out = Vec::with_capacity(entries.0.len());
    for (path, v) in entries.0 {
        check_path(&path)?;
        let v = ValueTpl::from_yaml(&v).map_err(|e| format!("{what} {path}: {e}"))?;
        let mut reads = Vec::new();
        v.refs(&mut reads);
        known_check(reads, &format!("the value of {path}"))?;
        out.push((field(&path), v));
    }
    Ok(out)
}

fn checked(path: &str) -> Result<Field, String> {
    check_path(path)?;
    Ok(field(path))
}

fn single_char(s: &str, what: &str) -> Result<char, String> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(format!("{what} must be one character, not {s:?}")),
    }
}

fn convert_list(c: Ordered<Conv>) -> Result<Vec<(String, Conv)>, String> {
    paths(c.0.iter().map(|(p, _)| p.as_str()))?;
    Ok(c.0)
}

fn convert_fields(c: Ordered<Conv>) -> Result<Vec<(Field, Conv)>, String> {
    c.0.into_iter()
        .map(|(p, conv)| Ok((checked(&p)?, conv)))
        .collect()
}

impl RawStage {
    /// Checks and compiles the stage; `before` is what was known before it (its condition
    /// runs there).
    fn compile(mut self, before: Option<&Known>) -> Result<Stage, String> {
        if let (Some(cond), Some(known)) = (&self.cond, before) {
            let mut reads = Vec::new();
            cond.fields(&mut reads);
            check_reads(known, reads, "the condition")?;
        }
        let mut types = Vec::new();
        for (name, given) in [
            ("syslog", self.syslog.is_some()),
            ("json", self.json.is_some()),
            ("kv", self.kv.is_some()),
            ("csv", self.csv.is_some()),
            ("regex", self.regex.is_some()),
            ("date", self.date.is_some()),
            ("set", self.set.is_some()),
            ("set_default", self.set_default.is_some()),
            ("append", self.append.is_some()),
            ("rename", self.rename.is_some()),
            ("delete", self.delete.is_some()),
            ("translate", self.translate.is_some()),
            ("convert", self.convert.is_some()),
            ("stages", self.stages.is_some()),
        ] {
            if given {
                types.push(name);
            }
        }
        match types.as_slice() {
            [] => {
                return Err(format!(
                    "the stage has no type: expected one of {STAGE_TYPES}"
                ))
            }
            [_] => {}
            [a, b, ..] => {
                return Err(format!(
                    "a stage has one type, this one has {a} and {b}: split it into two stages"
                ))
            }
        }
        let parsing = types[0] == "syslog" || types[0] == "json" || types[0] == "csv";
        let on_failure = self.on_failure.unwrap_or(if parsing {
            OnFailure::Fail
        } else {
            OnFailure::Continue
        });
        let cond = self.cond.take();
        let op = self.compile_op()?;
        Ok(Stage {
            cond,
            op,
            on_failure,
        })
    }

    /// Compiles the one stage type given.
    fn compile_op(self) -> Result<Op, String> {
        if let Some(c) = self.syslog {
            check_path(&c.field)?;
            let zone = c.timezone.as_deref().map(Zone::parse).transpose()?;
            let zone = zone.filter(|z| !matches!(z, Zone::Local));
            known_check(zone.iter().flat_map(Zone::refs), "the time zone")?;
            known_check([c.field.as_str()], "the syslog stage")?;
            let prefixes = vec!["log.syslog.structured_data".to_owned()];
            known_add(
                SYSLOG_FIELDS.iter().map(|f| (*f).to_owned()),
                prefixes,
                false,
            );
            return Ok(Op::Syslog {
                field: field(&c.field),
                zone,
            });
        }
        if let Some(c) = self.json {
            check_path(&c.field)?;
            known_check([c.field.as_str()], "the json stage")?;
            match &c.target {
                Some(t) => {
                    check_path(t)?;
                    known_add([], vec![t.clone()], false);
                }
                None => known_add([], Vec::new(), true),
            }
            return Ok(Op::Json {
                field: field(&c.field),
                target: c.target,
            });
        }
        if let Some(c) = self.kv {
            check_path(&c.field)?;
            known_check([c.field.as_str()], "the kv stage")?;
            if c.separator.is_empty() || c.value_separator.is_empty() {
                return Err("kv separators cannot be empty".to_owned());
            }
            paths(c.map.0.iter().map(|(_, to)| to.as_str()))?;
            if let Some(t) = &c.target {
                check_path(t)?;
            }
            if c.target.is_none() && c.map.0.is_empty() {
                known_add([], Vec::new(), true);
            }
            known_add(
                c.map.0.iter().map(|(_, to)| to.clone()),
                c.target.iter().cloned().collect(),
                false,
            );
            return Ok(Op::Kv(KvOp {
                field: field(&c.field),
                separator: c.separator,
                value_separator: c.value_separator,
                prefix: c.target.map(|t| format!("{t}.")),
                map: c.map.0.into_iter().map(|(k, to)| (k, field(&to))).collect(),
                keep_empty: c.keep_empty,
                convert: convert_list(c.convert)?,
            }));
        }
        if let Some(c) = self.csv {
            check_path(&c.field)?;
            known_check([c.field.as_str()], "the csv stage")?;
            paths(c.columns.iter().flatten().map(String::as_str))?;
            if c.columns.iter().flatten().next().is_none() {
                return Err("csv needs at least one named column".to_owned());
            }
            known_add(c.columns.iter().flatten().cloned(), Vec::new(), false);
            return Ok(Op::Csv(CsvOp {
                field: field(&c.field),
                separator: single_char(&c.separator, "the csv separator")?,
                quote: single_char(&c.quote, "the csv quote")?,
                columns: c.columns.iter().map(|c| c.as_deref().map(field)).collect(),
                trim: c.trim,
                convert: convert_fields(c.convert)?,
            }));
        }
        if let Some(c) = self.regex {
            return compile_regex_stage(c);
        }
        if let Some(c) = self.date {
            check_path(&c.field)?;
            check_path(&c.target)?;
            let zone = match c.timezone.as_deref() {
                Some(z) => Zone::parse(z)?,
                None => Zone::Local,
            };
            known_check([c.field.as_str()], "the date stage")?;
            known_check(zone.refs(), "the time zone")?;
            let formats = c.formats.into_vec();
            if formats.is_empty() {
                return Err("date needs at least one format".to_owned());
            }
            let formats = formats
                .iter()
                .map(|f| Format::parse(f))
                .collect::<Result<Vec<_>, _>>()?;
            known_add([c.target.clone()], Vec::new(), false);
            return Ok(Op::Date(DateOp {
                field: field(&c.field),
                target: field(&c.target),
                formats,
                zone,
            }));
        }
        for (entries, what, make) in [
            (self.set, "set", Op::Set as fn(_) -> Op),
            (self.set_default, "set_default", Op::SetDefault),
            (self.append, "append", Op::Append),
        ] {
            if let Some(entries) = entries {
                let entries = fields(entries, what)?;
                known_add(
                    entries.iter().map(|(f, _)| f.path.clone()),
                    Vec::new(),
                    false,
                );
                return Ok(make(entries));
            }
        }
        if let Some(pairs) = self.rename {
            for (from, to) in &pairs.0 {
                check_path(from)?;
                check_path(to)?;
            }
            known_check(pairs.0.iter().map(|(f, _)| f.as_str()), "rename")?;
            known_add(pairs.0.iter().map(|(_, t)| t.clone()), Vec::new(), false);
            let pairs = pairs.0.iter().map(|(f, t)| (field(f), field(t))).collect();
            return Ok(Op::Rename(pairs));
        }
        if let Some(list) = self.delete {
            let list = list.into_vec();
            paths(list.iter().map(String::as_str))?;
            known_check(list.iter().map(String::as_str), "delete")?;
            return Ok(Op::Delete(list.iter().map(|p| field(p)).collect()));
        }
        if let Some(c) = self.translate {
            return compile_translate(c);
        }
        if let Some(c) = self.convert {
            let list = convert_fields(c)?;
            known_check(list.iter().map(|(f, _)| f.path.as_str()), "convert")?;
            return Ok(Op::Convert(list));
        }
        match self.stages {
            Some(stages) if stages.is_empty() => Err("`stages` is empty".to_owned()),
            Some(stages) => Ok(Op::Block(stages)),
            None => Err(format!(
                "the stage has no type: expected one of {STAGE_TYPES}"
            )),
        }
    }
}

fn compile_regex_stage(c: RegexCfg) -> Result<Op, String> {
    check_path(&c.field)?;
    known_check([c.field.as_str()], "the regex stage")?;
    if c.patterns.is_empty() {
        return Err("regex needs at least one pattern".to_owned());
    }
    let source = field(&c.field);
    let convert = convert_list(c.convert)?;
    let mut patterns = Vec::with_capacity(c.patterns.len());
    for (i, raw) in c.patterns.into_iter().enumerate() {
        let names: Vec<String> = raw
            .regex
            .capture_names()
            .flatten()
            .map(str::to_owned)
            .collect();
        paths(names.iter().map(String::as_str))
            .map_err(|e| format!("pattern {}: capture name: {e}", i + 1))?;
        // Captures are known to this pattern's `set`, and to every later stage.
        known_add(names, Vec::new(), false);
        let set = fields(raw.set, "set").map_err(|e| format!("pattern {}: {e}", i + 1))?;
        known_add(set.iter().map(|(f, _)| f.path.clone()), Vec::new(), false);
        patterns.push(Pattern::new(raw.regex, &convert, set));
    }
    let captured: BTreeSet<&str> = patterns
        .iter()
        .flat_map(|p| p.captures.iter().map(|(_, f, _)| f.path.as_str()))
        .collect();
    if let Some((f, _)) = convert.iter().find(|(f, _)| !captured.contains(f.as_str())) {
        return Err(format!("convert names `{f}`, which no pattern captures"));
    }
    Ok(Op::Regex(Box::new(RegexOp::new(source, patterns)?)))
}

fn compile_translate(c: TranslateCfg) -> Result<Op, String> {
    check_path(&c.field)?;
    known_check([c.field.as_str()], "translate")?;
    let target = c.target.unwrap_or_else(|| c.field.clone());
    check_path(&target)?;
    let mut map = HashMap::with_capacity(c.map.0.len());
    let mut reads = Vec::new();
    for (k, v) in &c.map.0 {
        map.insert(k.clone(), ValueTpl::from_yaml(v)?);
    }
    let default = c.default.as_ref().map(ValueTpl::from_yaml).transpose()?;
    map.values()
        .chain(default.iter())
        .for_each(|v| v.refs(&mut reads));
    known_check(reads, "a translate value")?;
    known_add([target.clone()], Vec::new(), false);
    Ok(Op::Translate(TranslateOp {
        field: field(&c.field),
        target: field(&target),
        map,
        default,
    }))
}
