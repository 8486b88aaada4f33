//! Linux audit logs (`/var/log/audit/audit.log`): records assembled into events.
//!
//! The kernel writes one audit event as several records (lines) that share
//! `msg=audit(TIME:SERIAL)`: an `execve` is `SYSCALL`, `EXECVE`, `CWD`, `PATH`..., `PROCTITLE`,
//! and on some systems `EOE`; records of concurrent events may interleave. [`AuditAssembler`]
//! takes the lines one by one and emits one [`Event`] per serial when the event is complete:
//! - at its `EOE` record, or at its `PROCTITLE` record (the kernel writes it last);
//! - at once for record types that are events on their own (user-space messages: `USER_LOGIN`,
//!   `ADD_USER`, `SERVICE_STOP`..., and `TTY`);
//! - when a record arrives whose audit time is more than `flush_after_ms` after the event's
//!   (the log has moved on: auparse's rule), or by [`AuditAssembler::flush`] once no record came
//!   for `flush_after_ms` of `Context::now`;
//! - when `max_pending_events` events are pending, the oldest is emitted to make room.
//!
//! Nothing is lost silently: records beyond `max_records_per_event` are counted in
//! [`AuditAssembler::dropped_records`] and the event gets the flag `truncated`; a line that is
//! not an audit record becomes an event of its own (flag `parse_failure`); `EOE` lines carry no
//! data and are not kept. `push` and `flush` never panic, whatever the bytes.
//!
//! # Event shape
//!
//! Every event has `@timestamp` (the audit time), `message` (a summary: `executed chattr -i
//! /etc/passwd`, `opened-file /etc/shadow by vim`), `event.kind` `event`, `event.module`
//! `auditd`, `event.dataset` `auditd.log` (or `Context::dataset`), `event.original` (the record
//! lines joined by `\n`, unless `Context::keep_original` is off), `host.name` (`node=`, else
//! `Context::host_name`), `auditd.log.sequence` (the serial), `auditd.log.record_type` (the
//! primary record: `EXECVE`, else the first that is not a syscall auxiliary, else `SYSCALL`),
//! `auditd.log.record_types` (every type present, in order) and the tags
//! `vigie.logsource.{product: linux, service: auditd}`, plus `category: process_creation` when
//! the event has an `EXECVE` record.
//!
//! `event.action`, `event.category` and `event.type` follow Elastic's auditd integration
//! (`executed`, `logged-in`, `added-user-account`; a `SYSCALL` event by its system call:
//! `opened-file`, `connected-to`...; the lower-cased record type when unknown). `event.outcome`
//! comes from `success=` or `res=`. Record keys land on ECS names as Elastic renames them:
//! `pid`/`ppid` -> `process.pid`/`process.parent.pid`, `exe` -> `process.executable`, `comm` ->
//! `process.name`, `exit` -> `process.exit_code`, `uid`/`auid`/`euid`/`gid`... ->
//! `user.id`/`user.audit.id`/`user.effective.id`/`user.group.id`..., the enriched names
//! (`UID="root"`) -> `user.name`, `user.audit.name`..., `acct` -> `user.name` (authentication
//! and sessions) or `user.target.name`/`group.name` (account management, with `id` ->
//! `user.target.id`/`group.id`), `addr` -> `source.address`/`source.ip`, `terminal` ->
//! `user.terminal`, `CWD` -> `process.working_directory`. `EXECVE` arguments (hex decoded,
//! split `aN[i]` chunks joined, `argc` respected) make `process.args`, `process.args_count` and
//! `process.command_line`, and the first ten are kept as `auditd.log.a0`..`a9` for Sigma rules
//! (a syscall's own `a0`..`a3` are kept there when there is no `EXECVE`). `PROCTITLE` gives
//! `process.title` and `auditd.log.proctitle` (and the command line when there is no
//! `EXECVE`). `PATH` records make `auditd.paths` (one object each, without `item` and empty
//! `cap_*`), `auditd.log.name` and `auditd.log.nametype` (a string, or a list when several)
//! and `file.path` (the first path that is not a `PARENT`, made absolute with the `CWD`),
//! `file.inode`, `file.mode`... `syscall=59` is named (`auditd.log.syscall: execve`) for
//! x86_64 and aarch64. Other keys are kept as `auditd.log.<key>`.

mod build;
mod common;
mod record;
mod syscalls;
mod tables;

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vigie_event::Event;

use crate::{lossy_utf8, Context};

/// Bounds and timing of the assembly of audit records into events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditOptions {
    /// Most events kept waiting for their last record; when a new event would pass it, the
    /// oldest pending event is emitted as it is.
    #[serde(default = "default_max_pending_events")]
    pub max_pending_events: usize,
    /// Most records kept for one event; the records after it are dropped, counted, and the
    /// event is flagged `truncated`.
    #[serde(default = "default_max_records_per_event")]
    pub max_records_per_event: usize,
    /// How long an event waits for more records (milliseconds): measured on the audit clock
    /// when later records arrive, on the caller's clock by [`AuditAssembler::flush`].
    #[serde(default = "default_flush_after_ms")]
    pub flush_after_ms: u64,
}

fn default_max_pending_events() -> usize {
    4096
}

fn default_max_records_per_event() -> usize {
    64
}

fn default_flush_after_ms() -> u64 {
    2000
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            max_pending_events: default_max_pending_events(),
            max_records_per_event: default_max_records_per_event(),
            flush_after_ms: default_flush_after_ms(),
        }
    }
}

/// Identifies an event: its node, audit time and serial (serials restart at boot, and
/// aggregated logs mix nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    node: u64,
    time_ms: i64,
    serial: u64,
}

/// An event waiting for more records.
#[derive(Debug)]
struct Pending {
    lines: Vec<String>,
    time_ms: i64,
    last_arrival: DateTime<Utc>,
    dropped: u32,
    invalid_utf8: bool,
}

/// Assembles the records of one audit log, read line by line, into events. See the module
/// documentation.
///
/// ```
/// use vigie_parse::auditd::{AuditAssembler, AuditOptions};
/// use vigie_parse::Context;
///
/// let ctx = Context::new(chrono::Utc::now());
/// let mut audit = AuditAssembler::new(AuditOptions::default());
/// let lines = [
///     r#"type=SYSCALL msg=audit(1700000000.123:42): arch=c000003e syscall=59 success=yes exit=0 ppid=900 pid=901 auid=1000 uid=0 euid=0 comm="chattr" exe="/usr/bin/chattr" key="exec""#,
///     r#"type=EXECVE msg=audit(1700000000.123:42): argc=3 a0="chattr" a1="-i" a2=2F6574632F6D792066696C65"#,
///     r#"type=PROCTITLE msg=audit(1700000000.123:42): proctitle=636861747472002D69"#,
/// ];
/// let mut events = Vec::new();
/// for line in lines {
///     events.extend(audit.push(line.as_bytes(), &ctx));
/// }
/// assert_eq!(events.len(), 1);
/// assert_eq!(events[0].get_str("process.command_line"), Some("chattr -i /etc/my file"));
/// assert_eq!(events[0].get_str("auditd.log.syscall"), Some("execve"));
/// assert_eq!(audit.pending(), 0);
/// ```
#[derive(Debug)]
pub struct AuditAssembler {
    opts: AuditOptions,
    pending: HashMap<Key, Pending>,
    /// Pending keys, oldest first; may hold keys already emitted (skipped, then compacted).
    order: VecDeque<Key>,
    dropped: u64,
}

impl AuditAssembler {
    /// An assembler with these bounds (a bound of 0 counts as 1).
    pub fn new(opts: AuditOptions) -> Self {
        Self {
            opts,
            pending: HashMap::new(),
            order: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Takes one raw line (without its newline) and returns the events it completes: its own
    /// (an `EOE` or `PROCTITLE` record, a record that stands alone, a line that is not an audit
    /// record), and older pending events it pushes out (by audit time or by the pending bound),
    /// oldest first.
    pub fn push(&mut self, line: &[u8], ctx: &Context) -> Vec<Event> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (text, invalid_utf8) = lossy_utf8(line);
        let mut out = Vec::new();
        if text.trim().is_empty() {
            return out;
        }
        let Some(header) = record::parse_header(&text) else {
            out.push(common::garbled(&text, invalid_utf8, ctx));
            return out;
        };
        let key = Key {
            node: header.node.map_or(0, node_hash),
            time_ms: header.time_ms(),
            serial: header.serial,
        };
        self.expire_before(key.time_ms, ctx, &mut out);
        let rtype_ends_event = header.rtype == "PROCTITLE";
        if header.rtype == "EOE" {
            // An EOE after the PROCTITLE that completed its event finds nothing: ignored.
            if let Some(p) = self.pending.remove(&key) {
                out.push(emit(p, ctx));
            }
            return out;
        }
        if tables::stands_alone(header.rtype) && !self.pending.contains_key(&key) {
            let extra = build::Extra {
                dropped: 0,
                invalid_utf8,
            };
            out.push(build::build(&[text.as_ref()], extra, ctx));
            return out;
        }
        let max_records = self.opts.max_records_per_event.max(1);
        let entry = match self.pending.get_mut(&key) {
            Some(entry) => entry,
            None => {
                if self.pending.len() >= self.opts.max_pending_events.max(1) {
                    self.evict_oldest(ctx, &mut out);
                }
                self.order.push_back(key);
                self.pending.entry(key).or_insert(Pending {
                    lines: Vec::with_capacity(6),
                    time_ms: key.time_ms,
                    last_arrival: ctx.now,
                    dropped: 0,
                    invalid_utf8: false,
                })
            }
        };
        entry.last_arrival = ctx.now;
        if entry.lines.len() >= max_records {
            entry.dropped = entry.dropped.saturating_add(1);
            self.dropped += 1;
        } else {
            entry.lines.push(text.into_owned());
            entry.invalid_utf8 |= invalid_utf8;
        }
        if rtype_ends_event {
            if let Some(p) = self.pending.remove(&key) {
                out.push(emit(p, ctx));
            }
        }
        self.compact();
        out
    }

    /// Emits the events that received no record for `flush_after_ms` of `ctx.now`, or every
    /// pending event when `all` is set (at shutdown), oldest first.
    pub fn flush(&mut self, ctx: &Context, all: bool) -> Vec<Event> {
        let wait = chrono::Duration::milliseconds(
            i64::try_from(self.opts.flush_after_ms).unwrap_or(i64::MAX / 2),
        );
        let mut out = Vec::new();
        let order = std::mem::take(&mut self.order);
        for key in order {
            let Some(p) = self.pending.get(&key) else {
                continue;
            };
            let idle = ctx.now.signed_duration_since(p.last_arrival);
            if all || idle >= wait {
                if let Some(p) = self.pending.remove(&key) {
                    out.push(emit(p, ctx));
                }
            } else {
                self.order.push_back(key);
            }
        }
        out
    }

    /// How many events are waiting for more records.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Records dropped because an event had `max_records_per_event` already (each such event
    /// is flagged `truncated`).
    pub fn dropped_records(&self) -> u64 {
        self.dropped
    }

    /// Emits the pending events whose audit time is more than `flush_after_ms` before `now_ms`
    /// (the time of the record just read), oldest first.
    fn expire_before(&mut self, now_ms: i64, ctx: &Context, out: &mut Vec<Event>) {
        let wait = i64::try_from(self.opts.flush_after_ms).unwrap_or(i64::MAX);
        while let Some(&key) = self.order.front() {
            match self.pending.get(&key) {
                None => {
                    self.order.pop_front();
                }
                Some(p) if p.time_ms.saturating_add(wait) < now_ms => {
                    self.order.pop_front();
                    if let Some(p) = self.pending.remove(&key) {
                        out.push(emit(p, ctx));
                    }
                }
                Some(_) => break,
            }
        }
    }

    fn evict_oldest(&mut self, ctx: &Context, out: &mut Vec<Event>) {
        while let Some(key) = self.order.pop_front() {
            if let Some(p) = self.pending.remove(&key) {
                out.push(emit(p, ctx));
                return;
            }
        }
    }

    /// Drops the keys of emitted events from `order` once they outnumber the pending ones.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.pending.len() + 64 {
            let pending = &self.pending;
            self.order.retain(|k| pending.contains_key(k));
        }
    }
}

fn node_hash(node: &str) -> u64 {
    let mut h = DefaultHasher::new();
    node.hash(&mut h);
    h.finish() | 1
}

/// The event of a pending entry.
fn emit(p: Pending, ctx: &Context) -> Event {
    let lines: Vec<&str> = p.lines.iter().map(String::as_str).collect();
    let extra = build::Extra {
        dropped: p.dropped,
        invalid_utf8: p.invalid_utf8,
    };
    build::build(&lines, extra, ctx)
}
