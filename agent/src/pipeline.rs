//! From raw records to sealed batches, and from acknowledgements to
//! checkpoints.
//!
//! [`Normalizer`] decodes a raw line with its source's codec and adds what
//! the agent knows (host, file path and offset, source name, dataset).
//! [`BatchBuilder`] appends events as NDJSON and seals a batch when it reaches
//! `max_events` or `max_bytes`, or `timeout_ms` after its first event. A
//! sealed batch carries the positions it covers (per file: the end offset of
//! its last line; per journald source: its last cursor).
//!
//! [`CheckpointTracker`] applies those positions only once the batch is
//! acknowledged, and only in sequence order: with several batches in flight,
//! batch 7's positions are not applied before batch 6 is acknowledged, so a
//! crash never skips lines.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use chrono::{Offset, Utc};
use serde_json::Value;
use vigie_event::{fields, flags, Event};
use vigie_parse::{Codec, Context};

use crate::checkpoint::Checkpoints;
use crate::config::BatchSection;
use crate::recycle::Recycler;
use crate::sources::file::RawLine;

/// A position a batch covers, applied to the checkpoints once acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    File {
        source: Arc<str>,
        fingerprint: u64,
        path: Arc<Path>,
        offset: u64,
    },
    Journal {
        source: Arc<str>,
        cursor: String,
    },
}

/// How a source's lines become events.
#[derive(Debug)]
pub struct SourceInfo {
    pub decoder: Decoder,
    pub dataset: String,
    /// Sigma logsource tags for events whose decoder set none.
    pub logsource: Vec<(String, String)>,
}

/// A source's decoder, built from its [`crate::config::Format`].
#[derive(Debug)]
pub enum Decoder {
    Codec(Codec),
    Parser(Box<vigie_parse::Parser>),
    /// Stateful: records wait for the rest of their audit serial.
    Auditd(std::sync::Mutex<Assembly>),
}

/// An auditd source's assembler and the position of its last line.
#[derive(Debug)]
pub struct Assembly {
    asm: vigie_parse::AuditAssembler,
    last: Option<Position>,
}

impl Decoder {
    /// The decoder of a configured format.
    pub fn new(format: &crate::config::Format) -> Self {
        use crate::config::Format;
        match format {
            Format::Codec(c) => Decoder::Codec(*c),
            Format::Parser(name) => match vigie_parse::Registry::shared().get(name) {
                Some(p) => Decoder::Parser(Box::new(p.clone())),
                // Checked when the configuration was read.
                None => Decoder::Codec(Codec::Plain),
            },
            Format::Auditd => Decoder::Auditd(std::sync::Mutex::new(Assembly {
                asm: vigie_parse::AuditAssembler::new(vigie_parse::AuditOptions::default()),
                last: None,
            })),
        }
    }
}

/// Events an assembling source completed, and the position that may be checkpointed after
/// them: only when nothing is left pending, so that a restart neither loses nor repeats a
/// record.
pub struct Assembled {
    pub source: Arc<str>,
    pub events: Vec<Event>,
    pub position: Option<Position>,
}

/// Turns raw records into ECS events.
pub struct Normalizer {
    host_name: String,
    sources: HashMap<Arc<str>, SourceInfo>,
    version: &'static str,
}

impl Normalizer {
    pub fn new(host_name: String, sources: HashMap<Arc<str>, SourceInfo>) -> Self {
        Self {
            host_name,
            sources,
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// A decoding context for lines read now.
    pub fn context(&self) -> Context {
        let mut ctx = Context::new(Utc::now());
        ctx.host_name = Some(self.host_name.clone());
        ctx.local_offset = chrono::Local::now().offset().fix();
        ctx
    }

    /// Whether `source` assembles several lines into one event (auditd).
    pub fn is_assembled(&self, source: &str) -> bool {
        matches!(
            self.sources.get(source).map(|i| &i.decoder),
            Some(Decoder::Auditd(_))
        )
    }

    /// Feeds one line to an assembling source.
    pub fn assemble(&self, line: &RawLine, ctx: &Context, pos: Position) -> Assembled {
        let info = self.sources.get(&line.source);
        let mut out = Assembled {
            source: line.source.clone(),
            events: Vec::new(),
            position: None,
        };
        if let Some(Decoder::Auditd(m)) = info.map(|i| &i.decoder) {
            let mut a = m.lock().unwrap_or_else(|e| e.into_inner());
            out.events = a.asm.push(&line.bytes, ctx);
            a.last = Some(pos.clone());
            if a.asm.pending() == 0 {
                out.position = Some(pos);
            }
        }
        for ev in &mut out.events {
            ev.set(fields::LOG_FILE_PATH, line.path.to_string_lossy().as_ref());
            self.finish(ev, &line.source, info);
        }
        out
    }

    /// Events of assembling sources left waiting longer than their flush delay.
    pub fn flush_assembled(&self, ctx: &Context) -> Vec<Assembled> {
        let mut out = Vec::new();
        for (source, info) in &self.sources {
            let Decoder::Auditd(m) = &info.decoder else {
                continue;
            };
            let mut a = m.lock().unwrap_or_else(|e| e.into_inner());
            let mut events = a.asm.flush(ctx, false);
            if events.is_empty() {
                continue;
            }
            let position = (a.asm.pending() == 0).then(|| a.last.clone()).flatten();
            drop(a);
            for ev in &mut events {
                self.finish(ev, source, Some(info));
            }
            out.push(Assembled {
                source: source.clone(),
                events,
                position,
            });
        }
        out
    }

    /// Whether any source assembles lines.
    pub fn has_assembled(&self) -> bool {
        self.sources
            .values()
            .any(|i| matches!(i.decoder, Decoder::Auditd(_)))
    }

    /// Decodes one line of a file source.
    pub fn file_line(&self, line: &RawLine, ctx: &Context) -> Event {
        let info = self.sources.get(&line.source);
        let mut ev = match info.map(|i| &i.decoder) {
            Some(Decoder::Parser(p)) => {
                let mut ev = p.parse(&line.bytes, ctx);
                if line.truncated {
                    ev.add_flag(flags::TRUNCATED);
                }
                ev
            }
            Some(Decoder::Codec(c)) => vigie_parse::decode(*c, &line.bytes, line.truncated, ctx),
            _ => vigie_parse::decode(Codec::Plain, &line.bytes, line.truncated, ctx),
        };
        ev.set(fields::LOG_FILE_PATH, line.path.to_string_lossy().as_ref());
        ev.set(fields::LOG_OFFSET, line.offset);
        if line.lines_joined > 1 {
            ev.add_flag(flags::MULTILINE);
        }
        self.finish(&mut ev, &line.source, info);
        ev
    }

    /// Completes an event from a journald source.
    pub fn journal_event(&self, source: &Arc<str>, mut ev: Event) -> Event {
        let info = self.sources.get(source);
        self.finish(&mut ev, source, info);
        ev
    }

    /// Completes an event the agent makes itself (a data-loss report):
    /// `vigie.source` is `vigie-agent`.
    pub fn agent_event(&self, mut ev: Event) -> Event {
        self.finish(&mut ev, "vigie-agent", None);
        ev
    }

    fn finish(&self, ev: &mut Event, source: &str, info: Option<&SourceInfo>) {
        ev.set_default(fields::HOST_NAME, self.host_name.as_str());
        ev.set(fields::VIGIE_SOURCE, source);
        if let Some(info) = info {
            ev.set_default(fields::EVENT_DATASET, info.dataset.as_str());
            if !info.logsource.is_empty() && !ev.contains("vigie.logsource") {
                for (k, v) in &info.logsource {
                    ev.set(&format!("vigie.logsource.{k}"), v.as_str());
                }
            }
        }
        ev.set_default(fields::EVENT_KIND, "event");
        ev.set(fields::AGENT_TYPE, "vigie");
        ev.set(fields::AGENT_VERSION, self.version);
        ev.set(fields::AGENT_NAME, self.host_name.as_str());
    }
}

/// A batch ready to ship.
#[derive(Debug)]
pub struct SealedBatch {
    pub sequence: u64,
    /// NDJSON, uncompressed.
    pub body: Vec<u8>,
    pub events: usize,
    pub positions: Vec<Position>,
}

/// Accumulates events into the next batch.
pub struct BatchBuilder {
    cfg: BatchSection,
    recycler: Arc<Recycler>,
    next_sequence: u64,
    body: Vec<u8>,
    events: usize,
    positions: HashMap<(Arc<str>, Option<u64>), Position>,
    opened: Option<tokio::time::Instant>,
}

impl BatchBuilder {
    /// A builder whose bodies come from (and, once gzipped, go back to) `recycler`.
    pub fn new(cfg: BatchSection, first_sequence: u64, recycler: Arc<Recycler>) -> Self {
        Self {
            body: recycler.body(cfg.max_bytes.min(1 << 20)),
            recycler,
            cfg,
            next_sequence: first_sequence,
            events: 0,
            positions: HashMap::new(),
            opened: None,
        }
    }

    /// Appends one event and the position it moves its source to (if any);
    /// returns a sealed batch when this one is full.
    pub fn push(&mut self, ev: &Event, pos: Option<Position>) -> Option<SealedBatch> {
        ev.write_json(&mut self.body);
        self.body.push(b'\n');
        self.events += 1;
        if let Some(pos) = pos {
            self.keep_position(pos);
        }
        self.opened.get_or_insert_with(tokio::time::Instant::now);
        if self.events >= self.cfg.max_events || self.body.len() >= self.cfg.max_bytes {
            return self.seal();
        }
        None
    }

    /// Records where a source is after an event that is not shipped (dropped by a filter
    /// rule): the position moves with the next batch that seals.
    pub fn keep_position(&mut self, pos: Position) {
        let key = match &pos {
            Position::File {
                source,
                fingerprint,
                ..
            } => (source.clone(), Some(*fingerprint)),
            Position::Journal { source, .. } => (source.clone(), None),
        };
        self.positions.insert(key, pos);
    }

    /// When the open batch must be sealed even if not full.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.opened
            .map(|t| t + std::time::Duration::from_millis(self.cfg.timeout_ms))
    }

    /// Seals the open batch, if it holds anything.
    pub fn seal(&mut self) -> Option<SealedBatch> {
        if self.events == 0 {
            return None;
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.opened = None;
        let cap = self.cfg.max_bytes.min(1 << 20);
        Some(SealedBatch {
            sequence,
            body: std::mem::replace(&mut self.body, self.recycler.body(cap)),
            events: std::mem::take(&mut self.events),
            positions: self.positions.drain().map(|(_, p)| p).collect(),
        })
    }
}

/// Applies acknowledged positions in sequence order.
pub struct CheckpointTracker {
    next: u64,
    done: BTreeMap<u64, Vec<Position>>,
}

impl CheckpointTracker {
    pub fn new(first_sequence: u64) -> Self {
        Self {
            next: first_sequence,
            done: BTreeMap::new(),
        }
    }

    /// Records that batch `sequence` is acknowledged; applies every position
    /// that is now in order. Returns whether `cp` changed.
    pub fn acked(&mut self, sequence: u64, positions: Vec<Position>, cp: &mut Checkpoints) -> bool {
        self.done.insert(sequence, positions);
        let mut changed = false;
        let now = Utc::now().timestamp();
        while let Some(positions) = self.done.remove(&self.next) {
            for p in positions {
                apply_position(cp, p, now);
                changed = true;
            }
            self.next += 1;
        }
        changed
    }

    /// Batches acknowledged but waiting for an earlier one.
    pub fn waiting(&self) -> usize {
        self.done.len()
    }
}

/// Moves `cp` to `p` (a file offset never moves backwards).
pub fn apply_position(cp: &mut Checkpoints, p: Position, now: i64) {
    match p {
        Position::File {
            source,
            fingerprint,
            path,
            offset,
        } => {
            let prev = cp.file_offset(&source, fingerprint).unwrap_or(0);
            if offset >= prev {
                cp.record_file(&source, fingerprint, &path, offset, now);
            }
        }
        Position::Journal { source, cursor } => {
            cp.journald.insert(source.to_string(), cursor);
        }
    }
}

/// The `message` of an event, for logs.
pub fn message_of(ev: &Event) -> Option<&str> {
    ev.get(fields::MESSAGE).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_pos(fp: u64, offset: u64) -> Position {
        Position::File {
            source: Arc::from("auth"),
            fingerprint: fp,
            path: Arc::from(Path::new("/var/log/auth.log")),
            offset,
        }
    }

    #[test]
    fn batches_seal_by_count_and_keep_last_position_per_file() {
        let cfg = BatchSection {
            max_events: 3,
            ..BatchSection::default()
        };
        let mut b = BatchBuilder::new(cfg, 10, Arc::default());
        let ev = Event::new();
        assert!(b.push(&ev, Some(file_pos(1, 10))).is_none());
        assert!(b.push(&ev, Some(file_pos(1, 20))).is_none());
        let sealed = b.push(&ev, Some(file_pos(2, 5))).expect("full at 3");
        assert_eq!(sealed.sequence, 10);
        assert_eq!(sealed.events, 3);
        assert_eq!(sealed.body.iter().filter(|c| **c == b'\n').count(), 3);
        let mut pos = sealed.positions.clone();
        pos.sort_by_key(|p| match p {
            Position::File { fingerprint, .. } => *fingerprint,
            Position::Journal { .. } => 0,
        });
        assert_eq!(pos, vec![file_pos(1, 20), file_pos(2, 5)]);
        assert!(b.seal().is_none(), "nothing left to seal");
    }

    #[test]
    fn checkpoints_advance_only_in_order() {
        let mut cp = Checkpoints::default();
        let mut t = CheckpointTracker::new(0);
        assert!(!t.acked(1, vec![file_pos(1, 200)], &mut cp));
        assert_eq!(cp.file_offset("auth", 1), None, "batch 1 waits for batch 0");
        assert!(t.acked(0, vec![file_pos(1, 100)], &mut cp));
        assert_eq!(cp.file_offset("auth", 1), Some(200));
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn journal_cursor_is_recorded() {
        let mut cp = Checkpoints::default();
        let mut t = CheckpointTracker::new(5);
        let p = Position::Journal {
            source: Arc::from("journal"),
            cursor: "s=abc".into(),
        };
        assert!(t.acked(5, vec![p], &mut cp));
        assert_eq!(
            cp.journald.get("journal").map(String::as_str),
            Some("s=abc")
        );
    }
}
