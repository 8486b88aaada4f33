//! One ECS event from the records of one audit event (same `msg=audit(TIME:SERIAL)`).
//!
//! The records are read in a fixed order: the primary record first (the one that says what
//! happened: `EXECVE`, else the first record that is not a syscall auxiliary such as
//! `CONFIG_CHANGE`, `ADD_USER` or `AVC`, else `SYSCALL`), then `SYSCALL`, then the others; the
//! first record to give a field wins. `EXECVE` and `PATH` records have their own readers, and
//! so do the `cwd` and `proctitle` keys; every other key lands on its ECS name (the renames of
//! Elastic's auditd integration: `uid` -> `user.id`, `exe` -> `process.executable`...) or,
//! when it has none, under `auditd.log.<key>`. See the module documentation for the shape.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::DateTime;
use serde_json::{Map, Value};
use vigie_event::{fields as f, flags, Event};

use super::common::{common, summary};
use super::record::{self, Field, Header, Quote};
use super::tables::{self, Meaning, Subject};
use crate::Context;

/// How many EXECVE arguments are also written as `auditd.log.a0`..`a9`, for Sigma rules
/// written on the raw keys (the mapping in `rules/mappings/auditd.yml` covers these ten).
const RAW_ARGS: u32 = 10;

/// Records that only add detail to the syscall they come with; never the primary record.
fn is_auxiliary(rtype: &str) -> bool {
    matches!(
        rtype,
        "SYSCALL"
            | "CWD"
            | "PATH"
            | "PROCTITLE"
            | "SOCKADDR"
            | "BPRM_FCAPS"
            | "OBJ_PID"
            | "MMAP"
            | "FD_PAIR"
            | "IPC"
            | "IPC_SET_PERM"
            | "CAPSET"
            | "MQ_OPEN"
            | "MQ_SENDRECV"
            | "MQ_NOTIFY"
            | "MQ_GETSETATTR"
            | "EXECVE"
            | "EOE"
    )
}

/// What the caller knows about the records besides their text.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extra {
    /// Records dropped because the event had too many.
    pub dropped: u32,
    /// Some line held bytes that were not UTF-8.
    pub invalid_utf8: bool,
}

/// One EXECVE argument: whole, or split into `aN[i]` chunks.
enum Arg<'a> {
    Whole(Option<Cow<'a, str>>),
    Chunks(BTreeMap<u32, (&'a str, Quote)>),
}

struct Builder<'a> {
    ev: Event,
    /// `auditd.log`, put into the event at the end (one object, not one path walk per key).
    log: Map<String, Value>,
    subject: Subject,
    has_execve: bool,
    arch: Option<Cow<'a, str>>,
    syscall: Option<Cow<'a, str>>,
    syscall_enriched: Option<Cow<'a, str>>,
    outcome: Option<&'static str>,
    cwd: Option<Cow<'a, str>>,
    argc: Option<u64>,
    args: BTreeMap<u32, Arg<'a>>,
    paths: Vec<Value>,
    names: Vec<Value>,
    nametypes: Vec<Value>,
    primary_path: Option<(String, usize)>,
    proctitle: Option<String>,
}

/// Builds the event of `lines` (record lines of one serial, in arrival order; none of them
/// `EOE`). Every line must have a valid header; a line without one is skipped.
pub(crate) fn build(lines: &[&str], extra: Extra, ctx: &Context) -> Event {
    let records: Vec<(Header<'_>, &str)> = lines
        .iter()
        .filter_map(|l| record::parse_header(l).map(|h| (h, *l)))
        .collect();
    let Some((first, _)) = records.first() else {
        return super::common::garbled(&lines.join("\n"), extra.invalid_utf8, ctx);
    };
    let first = *first;
    let mut types: Vec<&str> = Vec::with_capacity(records.len());
    for (h, _) in &records {
        if !types.contains(&h.rtype) {
            types.push(h.rtype);
        }
    }
    let has_execve = types.contains(&"EXECVE");
    let primary = if has_execve {
        "EXECVE"
    } else {
        types
            .iter()
            .copied()
            .find(|t| !is_auxiliary(t))
            .or_else(|| types.iter().copied().find(|t| *t == "SYSCALL"))
            .unwrap_or(first.rtype)
    };
    let meaning = tables::record_type(primary);
    let mut b = Builder {
        ev: Event::new(),
        log: Map::new(),
        subject: meaning.map_or(Subject::User, |m| m.subject),
        has_execve,
        arch: None,
        syscall: None,
        syscall_enriched: None,
        outcome: None,
        cwd: None,
        argc: None,
        args: BTreeMap::new(),
        paths: Vec::new(),
        names: Vec::new(),
        nametypes: Vec::new(),
        primary_path: None,
        proctitle: None,
    };
    // Primary first, then SYSCALL, then the rest, each group in arrival order.
    let rank = |t: &str| match t {
        t if t == primary => 0,
        "SYSCALL" => 1,
        _ => 2,
    };
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| rank(records[i].0.rtype));
    for i in order {
        let h = &records[i].0;
        let body = record::fields(h.body);
        match h.rtype {
            "EXECVE" => body.iter().for_each(|fl| b.execve_field(fl)),
            "PATH" => b.path_record(&body),
            _ => body.iter().for_each(|fl| b.field(fl)),
        }
    }
    b.finish(&first, &types, primary, meaning, &records, extra, ctx)
}

/// Sets `auditd.log.<key>` unless it is set; dots in the key become `_` (one field).
fn log_default(log: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    if key.contains('.') {
        log.entry(key.replace('.', "_"))
            .or_insert_with(|| value.into());
    } else if !log.contains_key(key) {
        log.insert(key.to_owned(), value.into());
    }
}

/// Whether `key` is an argument key (`a0`, `a12`).
fn arg_index(key: &str) -> Option<u32> {
    let digits = key.strip_prefix('a')?;
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl<'a> Builder<'a> {
    fn set_int(&mut self, path: &str, key: &str, value: &str) {
        match value.parse::<i64>() {
            Ok(n) => self.ev.set_default(path, n),
            Err(_) => log_default(&mut self.log, key, value),
        }
    }

    fn set_address(&mut self, prefix: &str, value: &str) {
        if self.ev.contains(&format!("{prefix}.address")) {
            return;
        }
        self.ev.set(&format!("{prefix}.address"), value);
        if let Ok(ip) = value.parse::<IpAddr>() {
            self.ev.set(&format!("{prefix}.ip"), ip.to_string());
        }
    }

    /// A field of any record but EXECVE and PATH.
    fn field(&mut self, fl: &Field<'a>) {
        let key = fl.key.as_ref();
        if key == "proctitle" {
            self.proctitle
                .get_or_insert_with(|| proctitle(fl.raw, fl.quote));
            return;
        }
        let Some(value) = record::decode(fl.raw, fl.quote, record::may_be_hex(key)) else {
            return;
        };
        let v = value.as_ref();
        let ev = &mut self.ev;
        let log = &mut self.log;
        match key {
            "pid" => self.set_int(f::PROCESS_PID, key, v),
            "ppid" => self.set_int("process.parent.pid", key, v),
            "exit" => self.set_int("process.exit_code", key, v),
            "uid" => ev.set_default(f::USER_ID, v),
            "auid" | "new_auid" => ev.set_default("user.audit.id", v),
            "euid" => ev.set_default("user.effective.id", v),
            "suid" => ev.set_default("user.saved.id", v),
            "fsuid" => ev.set_default("user.filesystem.id", v),
            "gid" => ev.set_default("user.group.id", v),
            "egid" => ev.set_default("user.effective.group.id", v),
            "sgid" => ev.set_default("user.saved.group.id", v),
            "fsgid" => ev.set_default("user.filesystem.group.id", v),
            "UID" => ev.set_default(f::USER_NAME, v),
            "AUID" => ev.set_default("user.audit.name", v),
            "EUID" => ev.set_default("user.effective.name", v),
            "SUID" => ev.set_default("user.saved.name", v),
            "FSUID" => ev.set_default("user.filesystem.name", v),
            "GID" => ev.set_default("user.group.name", v),
            "EGID" => ev.set_default("user.effective.group.name", v),
            "SGID" => ev.set_default("user.saved.group.name", v),
            "FSGID" => ev.set_default("user.filesystem.group.name", v),
            "ARCH" => ev.set("host.architecture", v),
            "SYSCALL" => {
                self.syscall_enriched.get_or_insert(value);
            }
            "arch" => {
                self.arch.get_or_insert(value);
            }
            "syscall" => {
                self.syscall.get_or_insert(value);
            }
            "cwd" => {
                self.cwd.get_or_insert(value);
            }
            "comm" => ev.set_default(f::PROCESS_NAME, v),
            "exe" => ev.set_default("process.executable", v),
            "terminal" => ev.set_default("user.terminal", v),
            "user" => ev.set_default(f::USER_NAME, v),
            "acct" => match self.subject {
                // The account the event is about, over the name of the uid (often root).
                Subject::User if !log.contains_key("acct") => {
                    ev.set(f::USER_NAME, v);
                    log.insert("acct".to_owned(), v.into());
                }
                Subject::User => {}
                Subject::TargetUser => ev.set_default("user.target.name", v),
                Subject::TargetGroup => ev.set_default("group.name", v),
            },
            "id" => match self.subject {
                Subject::TargetUser => ev.set_default("user.target.id", v),
                Subject::TargetGroup => ev.set_default("group.id", v),
                Subject::User => log_default(log, "id", v),
            },
            "grp" | "new_group" => ev.set_default("group.name", v),
            "res" => {
                let outcome = match v {
                    "success" | "1" => "success",
                    "failed" | "0" => "failure",
                    _ => "unknown",
                };
                self.outcome.get_or_insert(outcome);
            }
            "success" => {
                let outcome = if v == "yes" { "success" } else { "failure" };
                self.outcome.get_or_insert(outcome);
                log_default(log, "success", v);
            }
            "addr" | "src" => self.set_address("source", v),
            "dst" => self.set_address("destination", v),
            "key" => {
                if !log.contains_key("key") {
                    // Several keys of one rule are joined by \x01.
                    let keys: Vec<&str> = v.split('\u{1}').filter(|k| !k.is_empty()).collect();
                    match keys.as_slice() {
                        [] => {}
                        [one] => log_default(log, "key", *one),
                        many => log_default(log, "key", many.to_vec()),
                    }
                }
            }
            "cmd" if !self.has_execve => {
                if !ev.contains("process.command_line") {
                    ev.set("process.command_line", v);
                    ev.set("process.args", v.split_whitespace().collect::<Vec<_>>());
                }
            }
            "old-auid" | "old_auid" => log_default(log, "old_auid", v),
            "old-ses" | "old_ses" => log_default(log, "old_ses", v),
            "new_ses" => log_default(log, "ses", v),
            // A syscall's own arguments make no sense next to the program's.
            _ if self.has_execve && arg_index(key).is_some() => {}
            _ => log_default(log, key, v),
        }
    }

    /// A field of an EXECVE record: `argc`, `aN`, `aN_len`, `aN[i]`.
    fn execve_field(&mut self, fl: &Field<'a>) {
        let key = fl.key.as_ref();
        if key == "argc" {
            if self.argc.is_none() {
                self.argc = fl.raw.parse().ok();
            }
            return;
        }
        if let Some(i) = arg_index(key) {
            let value = record::decode(fl.raw, fl.quote, true);
            self.args.entry(i).or_insert(Arg::Whole(value));
            return;
        }
        let chunk = key.strip_suffix(']').and_then(|k| k.split_once('['));
        if let Some((arg, part)) = chunk {
            if let (Some(i), Ok(part)) = (arg_index(arg), part.parse::<u32>()) {
                if let Arg::Chunks(parts) = self
                    .args
                    .entry(i)
                    .or_insert_with(|| Arg::Chunks(BTreeMap::new()))
                {
                    parts.entry(part).or_insert((fl.raw, fl.quote));
                }
            }
        }
        // `aN_len` (the length of a split argument) is implied by its chunks.
    }

    /// A PATH record: one object of `auditd.paths`, one `auditd.log.name`.
    fn path_record(&mut self, body: &[Field<'a>]) {
        let mut obj = Map::new();
        for fl in body {
            let key = fl.key.as_ref();
            // `item` is the position in the list; empty file capabilities say nothing.
            if key == "item" || (key.starts_with("cap_") && fl.raw == "0") {
                continue;
            }
            let Some(v) = record::decode(fl.raw, fl.quote, record::may_be_hex(key)) else {
                continue;
            };
            obj.insert(key.replace('.', "_"), Value::String(v.into_owned()));
        }
        let name = obj.get("name").and_then(Value::as_str);
        let nametype = obj.get("nametype").and_then(Value::as_str);
        if let Some(name) = name {
            self.names.push(Value::String(name.to_owned()));
            let better = nametype != Some("PARENT");
            match &self.primary_path {
                Some((_, rank)) if *rank <= usize::from(!better) => {}
                _ => self.primary_path = Some((name.to_owned(), usize::from(!better))),
            }
        }
        if let Some(nt) = nametype {
            self.nametypes.push(Value::String(nt.to_owned()));
        }
        self.paths.push(Value::Object(obj));
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        mut self,
        first: &Header<'_>,
        types: &[&str],
        primary: &str,
        meaning: Option<Meaning>,
        records: &[(Header<'_>, &str)],
        extra: Extra,
        ctx: &Context,
    ) -> Event {
        let millis = first.millis.min(999);
        match DateTime::from_timestamp(first.secs, millis * 1_000_000) {
            Some(ts) => self.ev.set_timestamp(ts),
            None => {
                self.ev.set_timestamp(ctx.now);
                self.ev.add_flag(flags::TIMESTAMP_MISSING);
            }
        }
        // System call and architecture.
        let arch = self.arch.as_deref();
        if let Some(arch) = arch {
            let name = tables::arch_name(arch).unwrap_or(arch);
            self.ev.set_default("host.architecture", name);
        }
        let syscall: Option<Cow<'_, str>> = match (&self.syscall_enriched, &self.syscall) {
            (Some(name), _) => Some(Cow::Borrowed(name.as_ref())),
            (None, Some(n)) => Some(
                arch.and_then(|a| tables::syscall_name(a, n))
                    .map_or_else(|| Cow::Borrowed(n.as_ref()), Cow::Borrowed),
            ),
            _ => None,
        };
        if let Some(s) = &syscall {
            self.log.insert("syscall".to_owned(), s.as_ref().into());
        }
        // What happened.
        let meaning = meaning.or_else(|| {
            if primary == "SYSCALL" {
                syscall.as_deref().and_then(tables::syscall)
            } else {
                None
            }
        });
        let lower = primary.to_ascii_lowercase();
        let (action, category, kind) = match meaning {
            Some(m) => (m.action, m.category, m.kind),
            None if primary == "SYSCALL" => (lower.as_str(), &["process"][..], &["info"][..]),
            None => (lower.as_str(), &[][..], &[][..]),
        };
        self.ev.set("event.action", action);
        if !category.is_empty() {
            self.ev.set(f::EVENT_CATEGORY, category.to_vec());
            self.ev.set(f::EVENT_TYPE, kind.to_vec());
        }
        if let Some(outcome) = self.outcome {
            self.ev.set(f::EVENT_OUTCOME, outcome);
        }
        // The program and its arguments.
        if let Some(cwd) = &self.cwd {
            self.ev.set("process.working_directory", cwd.as_ref());
        }
        self.finish_args();
        if let Some(title) = self.proctitle.take() {
            if !self.has_execve {
                self.ev.set_default("process.command_line", title.as_str());
            }
            self.ev.set("process.title", title.as_str());
            self.log.insert("proctitle".to_owned(), title.into());
        }
        self.finish_paths();
        // The record itself.
        self.log.insert("sequence".to_owned(), first.serial.into());
        self.log.insert("record_type".to_owned(), primary.into());
        self.log
            .insert("record_types".to_owned(), types.to_vec().into());
        let log = std::mem::take(&mut self.log);
        self.ev.set("auditd.log", Value::Object(log));
        let original = records
            .iter()
            .map(|(_, l)| *l)
            .collect::<Vec<_>>()
            .join("\n");
        common(&mut self.ev, &original, first.node, ctx);
        if self.has_execve {
            self.ev.set(f::LOGSOURCE_CATEGORY, "process_creation");
        }
        let message = summary(&self.ev, action, self.has_execve);
        self.ev.set(f::MESSAGE, message);
        if extra.dropped > 0 {
            self.ev.add_flag(flags::TRUNCATED);
        }
        if extra.invalid_utf8 {
            self.ev.add_flag(flags::INVALID_UTF8);
        }
        self.ev
    }

    /// `process.args` & co. from the EXECVE arguments gathered.
    fn finish_args(&mut self) {
        if !self.has_execve {
            return;
        }
        let limit = self
            .argc
            .map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let mut args: Vec<(u32, String)> = Vec::with_capacity(self.args.len());
        for (&i, arg) in &self.args {
            if i >= limit {
                break;
            }
            let text = match arg {
                Arg::Whole(v) => v.as_deref().unwrap_or("").to_owned(),
                Arg::Chunks(parts) => {
                    let quote = parts.values().next().map_or(Quote::Double, |p| p.1);
                    let joined: String = parts.values().map(|p| p.0).collect();
                    record::decode(&joined, quote, true).map_or_else(String::new, Cow::into_owned)
                }
            };
            args.push((i, text));
        }
        for (i, text) in args.iter().take_while(|(i, _)| *i < RAW_ARGS) {
            self.log.insert(format!("a{i}"), text.as_str().into());
        }
        let count = self.argc.unwrap_or(args.len() as u64);
        self.ev.set("process.args_count", count);
        if let Some((0, exe)) = args.first() {
            self.ev.set_default("process.executable", exe.as_str());
        }
        let list: Vec<String> = args.into_iter().map(|(_, t)| t).collect();
        self.ev.set("process.command_line", list.join(" "));
        self.ev.set("process.args", list);
    }

    /// `file.*`, `auditd.paths` and `auditd.log.name`/`nametype` from the PATH records.
    fn finish_paths(&mut self) {
        if self.paths.is_empty() {
            return;
        }
        let one_or_many = |mut v: Vec<Value>| match v.len() {
            1 => v.pop().unwrap_or(Value::Null),
            _ => Value::Array(v),
        };
        if !self.names.is_empty() {
            let names = std::mem::take(&mut self.names);
            self.log.insert("name".to_owned(), one_or_many(names));
        }
        if !self.nametypes.is_empty() {
            let nametypes = std::mem::take(&mut self.nametypes);
            self.log
                .insert("nametype".to_owned(), one_or_many(nametypes));
        }
        if let Some((name, _)) = self.primary_path.take() {
            let path = match self.cwd.as_deref() {
                Some(cwd) if !name.starts_with('/') => {
                    format!("{}/{}", cwd.trim_end_matches('/'), name)
                }
                _ => name.clone(),
            };
            let obj = self
                .paths
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str()));
            if let Some(obj) = obj {
                for (from, to) in [
                    ("inode", "file.inode"),
                    ("mode", "file.mode"),
                    ("ouid", "file.uid"),
                    ("ogid", "file.gid"),
                    ("OUID", "file.owner"),
                    ("OGID", "file.group"),
                ] {
                    if let Some(v) = obj.get(from).and_then(Value::as_str) {
                        self.ev.set(to, v);
                    }
                }
            }
            self.ev.set("file.path", path);
        }
        self.ev.set(
            "auditd.paths",
            Value::Array(std::mem::take(&mut self.paths)),
        );
    }
}

/// The text of a PROCTITLE value: hex-decoded, its NUL separators turned into spaces.
fn proctitle(raw: &str, quote: Quote) -> String {
    if quote == Quote::Bare {
        if let Some(mut bytes) = record::hex_bytes(raw) {
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
            for b in &mut bytes {
                if *b == 0 {
                    *b = b' ';
                }
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    raw.to_owned()
}
