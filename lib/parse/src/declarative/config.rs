//! Parser files as written (YAML), checked and compiled into stages.
//!
//! Every mapping is read with `deny_unknown_fields`, so a misspelt key or an unknown stage type
//! is an error that names the key and where it is. Each stage is checked as it is read:
//! exactly one stage type, regexes and date formats that compile, and no template, condition
//! or source field that reads a field no earlier stage writes (a misspelt field name would
//! otherwise silently never match). Errors raised while checking a stage point at the stage;
//! errors about a pattern point at the pattern.
//!
//! The fields "an earlier stage writes" are tracked while the file is read, in file order:
//! `message` at the start, then what each stage may write (the syslog header fields, capture
//! names, `set` targets, …). A `json` stage writing to the event's root makes every name
//! possible, so later references are not checked; one writing under `target` (and a `kv` stage
//! with a `target`) makes every name under it possible.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::ops::Stage;
use super::record::{Field, FieldTable, NO_SLOT};

/// The fields the syslog stage may write (besides `log.syslog.structured_data.*`).
pub(crate) const SYSLOG_FIELDS: [&str; 16] = [
    "message",
    "@timestamp",
    "host.name",
    "process.name",
    "process.pid",
    "log.level",
    "log.flags",
    "log.syslog.priority",
    "log.syslog.facility.code",
    "log.syslog.facility.name",
    "log.syslog.severity.code",
    "log.syslog.severity.name",
    "log.syslog.version",
    "log.syslog.hostname",
    "log.syslog.appname",
    "log.syslog.msgid",
];

/// The stage types, as listed in errors.
pub(super) const STAGE_TYPES: &str =
    "syslog, json, kv, csv, regex, date, set, set_default, append, \
     rename, delete, translate, convert, stages";

/// Fields some earlier stage may have written.
#[derive(Debug, Clone, Default)]
pub(crate) struct Known {
    exact: BTreeSet<String>,
    prefixes: Vec<String>,
    any: bool,
}

impl Known {
    /// What the first stage sees: the line, as `message`.
    pub fn start() -> Known {
        let mut k = Known::default();
        k.exact.insert("message".to_owned());
        k
    }

    fn knows(&self, path: &str) -> bool {
        let under = |parent: &str, child: &str| {
            child.len() > parent.len()
                && child.starts_with(parent)
                && child.as_bytes()[parent.len()] == b'.'
        };
        self.any
            || self.exact.contains(path)
            || self.prefixes.iter().any(|p| p == path || under(p, path))
            // Reading an object some of whose fields are written.
            || self.exact.iter().any(|e| under(path, e))
    }
}

/// What is tracked while a file is read.
struct State {
    /// The fields written so far; `None` when not checking.
    known: Option<Known>,
    /// Every field the file names.
    table: FieldTable,
}

thread_local! {
    /// The state of the file being read; `None` outside [`read_file`] and [`with_fields`].
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// The field named `path`, with its slot in the file being read (no slot outside one).
pub(crate) fn field(path: &str) -> Field {
    let id = STATE.with(|s| s.borrow_mut().as_mut().map(|s| s.table.intern(path)));
    Field {
        id: id.unwrap_or(NO_SLOT),
        path: path.to_owned(),
    }
}

/// Runs `f` (which builds fields) with a field table, without checking what stages read;
/// returns the table, in which the base may hold every field.
#[cfg(test)]
pub(crate) fn with_fields<T>(f: impl FnOnce() -> T) -> (T, FieldTable) {
    STATE.with(|s| {
        *s.borrow_mut() = Some(State {
            known: None,
            table: FieldTable::default(),
        })
    });
    let out = f();
    let mut table = STATE
        .with(|s| s.borrow_mut().take())
        .map(|s| s.table)
        .unwrap_or_default();
    table.seal(|_| true);
    (out, table)
}

pub(super) fn known_snapshot() -> Option<Known> {
    STATE.with(|s| s.borrow().as_ref().and_then(|s| s.known.clone()))
}

pub(super) fn known_check<'a>(
    reads: impl IntoIterator<Item = &'a str>,
    what: &str,
) -> Result<(), String> {
    match known_snapshot() {
        Some(known) => check_reads(&known, reads, what),
        None => Ok(()),
    }
}

pub(super) fn check_reads<'a>(
    known: &Known,
    reads: impl IntoIterator<Item = &'a str>,
    what: &str,
) -> Result<(), String> {
    for path in reads {
        if !known.knows(path) {
            return Err(format!(
                "{what} reads `{path}`, which no earlier stage writes (misspelt, or set later?)"
            ));
        }
    }
    Ok(())
}

pub(super) fn known_add(exact: impl IntoIterator<Item = String>, prefixes: Vec<String>, any: bool) {
    STATE.with(|s| {
        if let Some(known) = s.borrow_mut().as_mut().and_then(|s| s.known.as_mut()) {
            known.exact.extend(exact);
            known.prefixes.extend(prefixes);
            known.any |= any;
        }
    });
}

/// Reads a whole file with field tracking on; returns it with the fields it names (the table
/// is not sealed).
pub(crate) fn read_file(text: &str) -> Result<(RawFile, FieldTable), yaml_serde::Error> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            STATE.with(|s| *s.borrow_mut() = None);
        }
    }
    let _reset = Reset;
    STATE.with(|s| {
        *s.borrow_mut() = Some(State {
            known: Some(Known::start()),
            table: FieldTable::default(),
        })
    });
    let file: RawFile = yaml_serde::from_str(text)?;
    let table = STATE
        .with(|s| s.borrow_mut().take())
        .map(|s| s.table)
        .unwrap_or_default();
    Ok((file, table))
}

fn default_version() -> u32 {
    1
}

/// A parser file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    /// Format version; only 1 exists.
    #[serde(default = "default_version")]
    pub version: u32,
    /// The parser's name: lowercase letters, digits and `_`.
    pub name: String,
    /// What the parser reads, for people.
    pub description: Option<String>,
    /// `event.dataset` of every event, unless a stage set one.
    pub dataset: Option<String>,
    /// `vigie.logsource.*` tags of every event, unless a stage set them.
    #[serde(default)]
    pub logsource: Logsource,
    /// The stages, run in order on each line.
    pub stages: Vec<Stage>,
}

/// Sigma logsource tags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Logsource {
    pub product: Option<String>,
    pub category: Option<String>,
    pub service: Option<String>,
}

/// A mapping read in file order; a key given twice is an error.
#[derive(Debug)]
pub(crate) struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of field names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<V>, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(de::Error::custom(format!("key `{k}` is given twice")));
                    }
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

/// One value or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub(super) fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

/// For stage types whose settings all have defaults: `syslog:` alone (null) is `syslog: {}`.
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}
