//! Declarative parsers: a source described in YAML (`rules/parsers/*.yml`) as stages that turn
//! one raw line into an ECS-shaped [`Event`].
//!
//! A parser file names the parser, the `event.dataset` and Sigma logsource tags its events get,
//! and a list of stages run in order on a working event that starts as `{"message": <line>}`:
//! `syslog` (the header, through the syslog codec), `json`, `kv`, `csv`, `regex` (named
//! captures written to fields), `date`, `set`, `set_default`, `append`, `rename`, `delete`,
//! `translate`, `convert`, and `stages` (a block). Any stage may have an `if:` condition.
//! `rules/parsers/README.md` is the reference of the format.
//!
//! Loading compiles everything once: regexes (dispatched by their literal prefix, see
//! `regex_op.rs`), conditions, templates, and one slot per field the file names, so that the
//! stages run on a working record (`record.rs`) without walking maps or allocating keys, and
//! the event is built once at the end.
//!
//! ```
//! use vigie_parse::{Context, Parser};
//!
//! let yaml = r#"
//! name: demo
//! dataset: demo.app
//! logsource: {product: demo}
//! stages:
//!   - regex:
//!       patterns:
//!         - match: '^user=(?P<user.name>\S+) port=(?P<source.port>\d+)$'
//!           set: {event.action: login}
//!       convert: {source.port: integer}
//! "#;
//! let parser = Parser::from_yaml(yaml, "demo.yml").unwrap();
//! let now = chrono::DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z").unwrap().to_utc();
//! let ev = parser.parse(b"user=alice port=22", &Context::new(now));
//! assert_eq!(ev.get_str("user.name"), Some("alice"));
//! assert_eq!(ev.get_i64("source.port"), Some(22));
//! assert_eq!(ev.get_str("event.dataset"), Some("demo.app"));
//! assert_eq!(ev.get_str("vigie.logsource.product"), Some("demo"));
//! ```
//!
//! Invariants of [`Parser::parse`], the same as [`crate::decode`]'s: it never fails and never
//! panics; every event has `@timestamp`, `message`, `event.kind`, `event.original` (unless
//! [`Context::keep_original`] is off), `host.name` when the line or the context gives one, and
//! `event.dataset` when the parser, the line or the context gives one (in that order: a stage's
//! value, then the file's `dataset`, then [`Context::dataset`]). A line that a stage with
//! `on_failure: fail` cannot read is kept as a plain message with the flag `parse_failure`, and
//! still gets the file's dataset and logsource tags; invalid UTF-8 is replaced and flagged.
//!
//! Loading ([`Parser::from_yaml`]) checks the whole file; a [`ParserError`] names the file, the
//! line and column, and what is wrong.

use std::fmt;

use serde_json::Value;
use vigie_event::{fields, flags, Event};

use crate::{lossy_utf8, time, Context};

mod condition;
mod config;
mod date;
mod kv_csv;
mod ops;
mod record;
mod regex_op;
mod registry;
mod stage;
mod template;

pub use registry::Registry;

/// A parser file that cannot be used, or a folder of them that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParserError {
    /// The text is not a valid parser definition.
    #[error("{origin}{}: {message}", Position(*line, *column))]
    Invalid {
        /// Where the text came from (a file path, or a name given by the caller).
        origin: String,
        /// The line (from 1) of the problem, when known.
        line: Option<usize>,
        /// The column (from 1) of the problem, when known.
        column: Option<usize>,
        /// What is wrong, with the path of the YAML node (`stages[2].regex`) when known.
        message: String,
    },
    /// A file or folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: std::path::PathBuf,
        /// The reason.
        #[source]
        source: std::io::Error,
    },
}

/// `:line:column`, or what is known of it.
struct Position(Option<usize>, Option<usize>);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(l), Some(c)) => write!(f, ":{l}:{c}"),
            (Some(l), None) => write!(f, ":{l}"),
            _ => Ok(()),
        }
    }
}

impl ParserError {
    fn invalid(origin: &str, line: Option<usize>, column: Option<usize>, message: String) -> Self {
        ParserError::Invalid {
            origin: origin.to_owned(),
            line,
            column,
            message,
        }
    }

    /// The line and column of an [`ParserError::Invalid`] error, when known.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            ParserError::Invalid {
                line: Some(l),
                column: Some(c),
                ..
            } => Some((*l, *c)),
            _ => None,
        }
    }

    fn from_yaml(origin: &str, err: &yaml_serde::Error) -> Self {
        let text = err.to_string();
        let loc = err.location();
        // yaml_serde appends " at line L column C"; the position is written in front instead.
        let message = match &loc {
            Some(l) => {
                let suffix = format!(" at line {} column {}", l.line(), l.column());
                text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
            }
            None => text,
        };
        let (line, column) = (loc.as_ref().map(|l| l.line()), loc.map(|l| l.column()));
        ParserError::invalid(origin, line, column, message)
    }
}

/// A compiled parser.
#[derive(Debug, Clone)]
pub struct Parser {
    name: String,
    description: Option<String>,
    dataset: Option<String>,
    logsource: Vec<(&'static str, String)>,
    stages: Vec<ops::Stage>,
    fields: record::FieldTable,
    /// The fields every event gets, by slot.
    common: Common,
}

/// Slots of the fields every event gets (see [`Parser::finish`]).
#[derive(Debug, Clone)]
struct Common {
    original: record::Field,
    kind: record::Field,
    host: record::Field,
    dataset: record::Field,
    logsource: Vec<(record::Field, String)>,
}

/// The line (from 1) where `key:` starts a line at the top level of `text`.
fn top_level_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))
        .map(|i| i + 1)
}

impl Parser {
    /// Reads and checks a parser file. `origin` names it in errors (a path, or `builtin:name`).
    pub fn from_yaml(text: &str, origin: &str) -> Result<Parser, ParserError> {
        let (raw, mut fields) =
            config::read_file(text).map_err(|e| ParserError::from_yaml(origin, &e))?;
        let at = |key: &str, message: String| {
            let line = top_level_key_line(text, key);
            ParserError::invalid(origin, line, line.map(|_| 1), message)
        };
        if raw.version != 1 {
            let msg = format!("unknown format version {}: only 1 exists", raw.version);
            return Err(at("version", msg));
        }
        let name_ok = !raw.name.is_empty()
            && raw.name.len() <= 64
            && raw
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            let msg = format!(
                "parser name {:?}: use 1 to 64 lowercase letters, digits and `_`",
                raw.name
            );
            return Err(at("name", msg));
        }
        if raw.stages.is_empty() {
            return Err(at("stages", "`stages` is empty".to_owned()));
        }
        let tag = |key: &str, v: &Option<String>| -> Result<(), ParserError> {
            match v {
                Some(s) if s.is_empty() || s.chars().any(char::is_whitespace) => Err(at(
                    key,
                    format!("{key} {s:?}: must be a non-empty word without spaces"),
                )),
                _ => Ok(()),
            }
        };
        tag("dataset", &raw.dataset)?;
        let ls = &raw.logsource;
        for v in [&ls.product, &ls.category, &ls.service] {
            tag("logsource", v)?;
        }
        let logsource = [
            (fields::LOGSOURCE_PRODUCT, &ls.product),
            (fields::LOGSOURCE_CATEGORY, &ls.category),
            (fields::LOGSOURCE_SERVICE, &ls.service),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.clone()?)))
        .collect();
        let mut common_field = |path: &str| record::Field {
            id: fields.intern(path),
            path: path.to_owned(),
        };
        let common = Common {
            original: common_field(fields::EVENT_ORIGINAL),
            kind: common_field(fields::EVENT_KIND),
            host: common_field(fields::HOST_NAME),
            dataset: common_field(fields::EVENT_DATASET),
            logsource: [
                (fields::LOGSOURCE_PRODUCT, &ls.product),
                (fields::LOGSOURCE_CATEGORY, &ls.category),
                (fields::LOGSOURCE_SERVICE, &ls.service),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((common_field(k), v.clone()?)))
            .collect(),
        };
        let mut stages = raw.stages;
        ops::mark_last_reads(&mut stages, &mut Vec::new());
        let mut base = ops::BaseShape::default();
        base.add(&stages);
        fields.seal(|path| base.holds(path));
        Ok(Parser {
            name: raw.name,
            description: raw.description,
            dataset: raw.dataset,
            logsource,
            stages,
            fields,
            common,
        })
    }

    /// The parser's name (the file's `name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's `description`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The `event.dataset` the parser gives its events, unless a stage sets another.
    pub fn dataset(&self) -> Option<&str> {
        self.dataset.as_deref()
    }

    /// Parses one line (without its newline; a trailing `\r` is dropped too). Never fails: see
    /// the module documentation for what every event holds.
    pub fn parse(&self, line: &[u8], ctx: &Context) -> Event {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (text, invalid_utf8) = lossy_utf8(line);
        let mut base = Event::new();
        base.set(fields::MESSAGE, text.as_ref());
        let mut rec = record::Record::new(&self.fields, base);
        let mut ev = if ops::run(&self.stages, &mut rec, ctx).is_ok() {
            self.fill(&mut rec, &text, ctx);
            let mut ev = rec.into_event();
            ev.as_map_mut().retain(|k, _| !template::is_scratch(k));
            if !ev.contains(fields::MESSAGE) {
                ev.set(fields::MESSAGE, text.as_ref());
            }
            normalize_timestamp(&mut ev, ctx);
            ev
        } else {
            drop(rec);
            let mut ev = Event::new();
            ev.set(fields::MESSAGE, text.as_ref());
            ev.add_flag(flags::PARSE_FAILURE);
            self.finish(&mut ev, &text, ctx);
            ev
        };
        if invalid_utf8 {
            ev.add_flag(flags::INVALID_UTF8);
        }
        ev
    }

    /// Writes, as slots, what every event holds where the stages did not (the same as
    /// [`Parser::finish`], which then finds them present).
    fn fill(&self, rec: &mut record::Record, text: &str, ctx: &Context) {
        let c = &self.common;
        let mut default = |f: &record::Field, v: &str| {
            if !rec.exists(f) {
                rec.set(f, Value::String(v.to_owned()));
            }
        };
        if ctx.keep_original {
            default(&c.original, text);
        }
        default(&c.kind, "event");
        if let Some(host) = &ctx.host_name {
            default(&c.host, host);
        }
        if let Some(dataset) = self.dataset.as_ref().or(ctx.dataset.as_ref()) {
            default(&c.dataset, dataset);
        }
        for (f, value) in &c.logsource {
            default(f, value);
        }
    }

    /// Writes what every event holds, for a line kept as a parse failure.
    fn finish(&self, ev: &mut Event, text: &str, ctx: &Context) {
        normalize_timestamp(ev, ctx);
        if ctx.keep_original {
            ev.set_default(fields::EVENT_ORIGINAL, text);
        }
        ev.set_default(fields::EVENT_KIND, "event");
        if let Some(host) = &ctx.host_name {
            ev.set_default(fields::HOST_NAME, host.as_str());
        }
        if let Some(dataset) = self.dataset.as_ref().or(ctx.dataset.as_ref()) {
            ev.set_default(fields::EVENT_DATASET, dataset.as_str());
        }
        for (path, value) in &self.logsource {
            ev.set_default(path, value.as_str());
        }
    }
}

/// Makes `@timestamp` Vigie's form (RFC 3339, UTC, microseconds): the read time when it is
/// missing, rewritten when a stage left another form, the read time with the flag
/// `timestamp_missing` when it cannot be read.
fn normalize_timestamp(ev: &mut Event, ctx: &Context) {
    let canonical = |s: &str| {
        let b = s.as_bytes();
        b.len() == 27 && b[10] == b'T' && b[19] == b'.' && b[26] == b'Z'
    };
    let fixed = match ev.get(fields::TIMESTAMP) {
        None => Some(ctx.now),
        Some(Value::String(s)) if canonical(s) => return,
        Some(Value::String(s)) => time::rfc3339_exact(s).and_then(|t| t.to_utc(ctx.local_offset)),
        Some(v) => vigie_event::parse_timestamp_value(v),
    };
    match fixed {
        Some(t) => ev.set_timestamp(t),
        None => {
            ev.set_timestamp(ctx.now);
            ev.add_flag(flags::TIMESTAMP_MISSING);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
