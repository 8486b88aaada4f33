//! [`Spool`]: the segment index, appends, the read cursor and
//! acknowledgements.
//!
//! Memory is bounded whatever the backlog: per segment a few counters; per
//! record handed out and not yet acknowledged, its size and event count; per
//! acknowledgement received ahead of the watermark, its seq. Payloads are read
//! back from disk one at a time.
//!
//! Invariants: segments are ordered and their seq ranges `[first_seq,
//! end_seq)` do not overlap; within a segment seqs are consecutive (a write
//! that fails and cannot be rolled back seals the segment). A record is *live*
//! (counted in `live` and in its segment's `live`) until it is acknowledged,
//! dropped or lost; the watermark is one below the oldest live record, or the
//! last assigned seq when none is live. Every live record below the read
//! cursor is in `in_flight`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::format::{self, Bad};
use super::state::{self, State};
use super::{
    Append, Dropped, FsyncPolicy, Record, SpoolConfig, SpoolError, WhenFull, MAX_PAYLOAD_BYTES,
};

/// The on-disk spool. See the [module documentation](super).
#[derive(Debug)]
pub struct Spool {
    pub(super) dir: PathBuf,
    pub(super) cfg: SpoolConfig,
    pub(super) segments: VecDeque<Segment>,
    /// Writer of the last segment while it takes appends.
    pub(super) active: Option<File>,
    pub(super) next_seq: u64,
    /// The watermark in memory.
    pub(super) acked: u64,
    /// What the `acked` file holds.
    pub(super) persisted: State,
    /// Acknowledged seqs above the watermark.
    pub(super) acked_ahead: BTreeSet<u64>,
    /// Handed out, not acknowledged: seq → (events, record bytes).
    pub(super) in_flight: BTreeMap<u64, (u32, u64)>,
    /// In flight when `drop_oldest` removed their segment: not counted as
    /// dropped (the sender still holds them), unless abandoned
    /// ([`Spool::abandon`]).
    pub(super) dropped_in_flight: BTreeMap<u64, (u32, u64)>,
    pub(super) cursor: Cursor,
    pub(super) reader: Option<(u64, File)>,
    pub(super) durable: u64,
    /// Appends not fsynced yet (`interval` policy only).
    pub(super) unsynced: bool,
    pub(super) last_sync: Instant,
    pub(super) live: Dropped,
    pub(super) disk_bytes: u64,
    /// Files to delete (their bytes still count in `disk_bytes`).
    pub(super) doomed: Vec<(PathBuf, u64)>,
    pub(super) lost: Dropped,
    pub(super) buf: Vec<u8>,
}

#[derive(Debug)]
pub(super) struct Segment {
    pub(super) first_seq: u64,
    /// One past the last readable record.
    pub(super) end_seq: u64,
    pub(super) path: PathBuf,
    /// Length of the file (what it costs on disk).
    pub(super) file_bytes: u64,
    /// End of the last valid record: reads stop and appends start here.
    pub(super) valid_bytes: u64,
    pub(super) live: Dropped,
}

/// The next record to hand out: `seq`, found at `offset` of the segment
/// starting at `segment` (or at the start of the next segment holding `seq`).
#[derive(Debug)]
pub(super) struct Cursor {
    pub(super) seq: u64,
    pub(super) segment: Option<u64>,
    pub(super) offset: u64,
}

impl Dropped {
    pub(super) fn one(events: u32, bytes: u64) -> Dropped {
        Dropped {
            records: 1,
            events: u64::from(events),
            bytes,
        }
    }

    fn sub(&mut self, other: Dropped) {
        self.records = self.records.saturating_sub(other.records);
        self.events = self.events.saturating_sub(other.events);
        self.bytes = self.bytes.saturating_sub(other.bytes);
    }
}

impl Spool {
    /// Appends one sealed batch of `events` events. Returns its seq, or
    /// [`Append::Full`] (nothing written) when the spool is full and
    /// `when_full = "block"`. With `fsync = "always"` the record is on disk
    /// when this returns. On `Err`, nothing usable was stored.
    pub fn append(&mut self, events: u32, payload: &[u8]) -> Result<Append, SpoolError> {
        let bytes = format::record_bytes(payload.len());
        let limit = self
            .cfg
            .max_bytes
            .min(MAX_PAYLOAD_BYTES + format::record_bytes(0));
        if bytes > limit {
            return Err(SpoolError::TooLarge {
                dir: self.dir.clone(),
                bytes,
                limit,
            });
        }
        self.collect()?;
        if self.active.is_some() {
            if let Some(last) = self.segments.back() {
                if last.valid_bytes > 0 && last.valid_bytes + bytes > self.cfg.segment_bytes {
                    self.seal_active()?;
                    self.collect()?;
                }
            }
        }
        let mut dropped = Dropped::default();
        while self.disk_bytes + bytes > self.cfg.max_bytes {
            let idle_active =
                self.active.is_some() && self.segments.back().is_some_and(|s| s.live.records == 0);
            if idle_active {
                // Fully acknowledged: its space can be reclaimed now.
                self.seal_active()?;
                self.collect()?;
                continue;
            }
            match self.cfg.when_full {
                WhenFull::Block => return Ok(Append::Full),
                WhenFull::DropOldest => {
                    if self.segments.is_empty() {
                        // Only files that could not be deleted remain: collect() said why.
                        break;
                    }
                    dropped.add(self.drop_oldest()?);
                }
            }
        }
        let seq = self.next_seq;
        if self.active.is_none() {
            self.create_segment(seq)?;
        }
        self.write_record(seq, events, payload)?;
        Ok(Append::Stored { seq, dropped })
    }

    fn write_record(&mut self, seq: u64, events: u32, payload: &[u8]) -> Result<(), SpoolError> {
        let (Some(file), Some(seg)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return Err(SpoolError::Write {
                path: self.dir.clone(),
                source: io::Error::other("no segment open for appending"),
            });
        };
        self.buf.clear();
        format::encode(seq, events, payload, &mut self.buf);
        let bytes = self.buf.len() as u64;
        let always = self.cfg.fsync == FsyncPolicy::Always;
        let written =
            file.write_all(&self.buf)
                .and_then(|()| if always { file.sync_data() } else { Ok(()) });
        if let Err(source) = written {
            let path = seg.path.clone();
            if file.set_len(seg.valid_bytes).is_err() {
                // Part of the record may be in the file: seal it there and
                // never reuse the seq.
                let len = file.metadata().map_or(seg.valid_bytes + bytes, |m| m.len());
                self.disk_bytes += len.saturating_sub(seg.file_bytes);
                seg.file_bytes = len;
                self.active = None;
                self.next_seq += 1;
            }
            return Err(SpoolError::Write { path, source });
        }
        let rec = Dropped::one(events, bytes);
        seg.end_seq = seq + 1;
        seg.valid_bytes += bytes;
        seg.file_bytes += bytes;
        seg.live.add(rec);
        self.live.add(rec);
        self.disk_bytes += bytes;
        self.next_seq = seq + 1;
        match self.cfg.fsync {
            FsyncPolicy::Always | FsyncPolicy::Never => self.durable = seq,
            FsyncPolicy::Interval => {
                self.unsynced = true;
                if self.sync_due() {
                    // The record is stored: a failed sync is retried by the next one.
                    if let Err(e) = self.sync() {
                        tracing::warn!(error = %e, "spool fsync failed; will retry");
                    }
                }
            }
        }
        Ok(())
    }

    fn create_segment(&mut self, first_seq: u64) -> Result<(), SpoolError> {
        let path = self.dir.join(format::segment_name(first_seq));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| SpoolError::Write {
                path: path.clone(),
                source,
            })?;
        if self.cfg.fsync != FsyncPolicy::Never {
            sync_dir(&self.dir)?;
        }
        self.segments.push_back(Segment {
            first_seq,
            end_seq: first_seq,
            path,
            file_bytes: 0,
            valid_bytes: 0,
            live: Dropped::default(),
        });
        self.active = Some(file);
        Ok(())
    }

    /// Fsyncs the segment being appended to if it has unsynced appends;
    /// every appended record is then durable.
    fn sync_active(&mut self) -> Result<(), SpoolError> {
        if self.unsynced {
            if let (Some(file), Some(seg)) = (&self.active, self.segments.back()) {
                file.sync_data().map_err(|source| SpoolError::Write {
                    path: seg.path.clone(),
                    source,
                })?;
            }
            self.unsynced = false;
        }
        self.durable = self.next_seq - 1;
        Ok(())
    }

    /// Stops appending to the last segment (fsynced first unless `never`).
    fn seal_active(&mut self) -> Result<(), SpoolError> {
        self.sync_active()?;
        self.active = None;
        Ok(())
    }

    /// Drops the oldest segment; returns what it still held unacknowledged.
    fn drop_oldest(&mut self) -> Result<Dropped, SpoolError> {
        let Some(seg) = self.segments.front() else {
            return Ok(Dropped::default());
        };
        let (first, end, dropped) = (seg.first_seq, seg.end_seq, seg.live);
        let mut counted = dropped;
        let sending: Vec<(u64, (u32, u64))> = self
            .in_flight
            .range(first..end)
            .map(|(s, v)| (*s, *v))
            .collect();
        for (seq, (events, bytes)) in sending {
            counted.sub(Dropped::one(events, bytes));
            self.dropped_in_flight.insert(seq, (events, bytes));
        }
        self.in_flight.retain(|s, _| *s < first || *s >= end);
        self.acked_ahead.retain(|s| *s < first || *s >= end);
        self.retire(0);
        self.live.sub(dropped);
        self.advance_watermark();
        self.persist_if_always()?;
        self.collect()?;
        Ok(counted)
    }

    /// The sender gives up on record `seq` (the agent stops before it was
    /// delivered). Returns what is lost with it: nothing if it is still in
    /// the spool (sent again at the next start), the record if `drop_oldest`
    /// removed it while it was in flight.
    pub fn abandon(&mut self, seq: u64) -> Dropped {
        match self.dropped_in_flight.remove(&seq) {
            Some((events, bytes)) => {
                let lost = Dropped::one(events, bytes);
                self.lost.add(lost);
                lost
            }
            None => Dropped::default(),
        }
    }

    /// The oldest record not handed out since open, read from disk; `None`
    /// when every record was handed out (or, with `fsync = "interval"`, the
    /// next one is not fsynced yet and the interval has not passed). A record
    /// handed out is not handed out again by this `Spool`, even if never
    /// acknowledged: retrying it is the caller's job. A record found corrupt
    /// here is skipped with the rest of its segment (see [`Spool::lost`]).
    pub fn next_unsent(&mut self) -> Result<Option<Record>, SpoolError> {
        loop {
            let Some(i) = self.locate(self.cursor.seq) else {
                return Ok(None);
            };
            if self.cursor.seq.max(self.segments[i].first_seq) > self.durable {
                if self.sync_due() {
                    self.sync()?;
                    continue;
                }
                return Ok(None);
            }
            let seg = &self.segments[i];
            if self.cursor.segment != Some(seg.first_seq) {
                self.cursor = Cursor {
                    seq: self.cursor.seq.max(seg.first_seq),
                    segment: Some(seg.first_seq),
                    offset: 0,
                };
            }
            let file = match &self.reader {
                Some((first, file)) if *first == seg.first_seq => file,
                _ => {
                    let file = File::open(&seg.path).map_err(|source| SpoolError::Read {
                        path: seg.path.clone(),
                        source,
                    })?;
                    &self.reader.insert((seg.first_seq, file)).1
                }
            };
            let want = self.cursor.seq;
            let read = format::read_at(file, self.cursor.offset, seg.valid_bytes, want).map_err(
                |source| SpoolError::Read {
                    path: seg.path.clone(),
                    source,
                },
            )?;
            match read {
                Ok(r) if r.seq < want => self.cursor.offset += r.bytes,
                Ok(r) if r.seq == want => {
                    self.in_flight.insert(r.seq, (r.events, r.bytes));
                    self.cursor.seq += 1;
                    self.cursor.offset += r.bytes;
                    return Ok(Some(Record {
                        seq: r.seq,
                        events: r.events,
                        payload: r.payload,
                    }));
                }
                Ok(r) => self.lose_rest(
                    i,
                    Bad::Seq {
                        expected: want,
                        found: r.seq,
                    },
                )?,
                Err(bad) => self.lose_rest(i, bad)?,
            }
        }
    }

    /// Segment `i` is unreadable from the cursor on: its records from there
    /// are lost.
    fn lose_rest(&mut self, i: usize, bad: Bad) -> Result<(), SpoolError> {
        let from = self.cursor.seq;
        let offset = self.cursor.offset;
        let last = i + 1 == self.segments.len();
        let Some(seg) = self.segments.get_mut(i) else {
            return Ok(());
        };
        let mut kept = Dropped::default();
        for (events, bytes) in self
            .in_flight
            .range(seg.first_seq..seg.end_seq)
            .map(|e| e.1)
        {
            kept.add(Dropped::one(*events, *bytes));
        }
        let mut lost = seg.live;
        lost.sub(kept);
        seg.live = kept;
        seg.end_seq = from;
        tracing::error!(
            path = %seg.path.display(),
            offset,
            reason = %bad,
            records = lost.records,
            events = lost.events,
            "spool segment corrupt: the records after this point are lost"
        );
        if last {
            // No appends after a hole.
            self.active = None;
        }
        self.live.sub(lost);
        self.lost.add(lost);
        self.advance_watermark();
        self.persist_if_always()?;
        self.collect()
    }

    /// Records that the collector has `seq` (or that it can never take it):
    /// it will not be handed out again, even after a restart once the
    /// watermark passed it. Acknowledgements may come in any order and are
    /// idempotent; a seq already dropped is ignored. Deletes segments left
    /// with nothing to send. On `Err` (persisting or deleting failed) the
    /// acknowledgement is still recorded; the failed step is retried later.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        if seq >= self.next_seq {
            return Err(SpoolError::UnknownSeq {
                dir: self.dir.clone(),
                seq,
                next: self.next_seq,
            });
        }
        if self.dropped_in_flight.remove(&seq).is_some() {
            // Delivered after its segment was dropped: not lost.
            return Ok(());
        }
        if seq <= self.acked || self.acked_ahead.contains(&seq) {
            return Ok(());
        }
        let Some((events, bytes)) = self.in_flight.remove(&seq) else {
            let pending = self
                .locate(seq)
                .is_some_and(|i| seq >= self.segments[i].first_seq && seq >= self.cursor.seq);
            if pending {
                return Err(SpoolError::NotHandedOut {
                    dir: self.dir.clone(),
                    seq,
                });
            }
            // Dropped or lost since it was handed out.
            return Ok(());
        };
        let rec = Dropped::one(events, bytes);
        if let Some(i) = self.locate(seq) {
            self.segments[i].live.sub(rec);
        }
        self.live.sub(rec);
        self.acked_ahead.insert(seq);
        self.advance_watermark();
        self.persist_if_always()?;
        self.collect()
    }

    /// Fsyncs the segment being appended to (unless `fsync = "never"`) and
    /// persists the watermark if it moved. With `fsync = "interval"` the
    /// caller calls this every [`Spool::sync_interval`] while
    /// [`Spool::needs_sync`] says so, and at shutdown.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.sync_active()?;
        if self.acked != self.persisted.acked_seq {
            self.persist()?;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs and persists the watermark; for a clean shutdown.
    pub fn close(mut self) -> Result<(), SpoolError> {
        self.sync()
    }

    /// Whether [`Spool::sync`] has something to do (appends not fsynced
    /// with `fsync = "interval"`, or a watermark not persisted).
    pub fn needs_sync(&self) -> bool {
        self.unsynced || self.acked != self.persisted.acked_seq
    }

    /// The period at which the caller should call [`Spool::sync`]:
    /// `fsync_interval_ms` with `fsync = "interval"`, else `None` (calling it
    /// at shutdown is enough).
    pub fn sync_interval(&self) -> Option<Duration> {
        (self.cfg.fsync == FsyncPolicy::Interval)
            .then(|| Duration::from_millis(self.cfg.fsync_interval_ms))
    }

    fn sync_due(&self) -> bool {
        self.sync_interval()
            .is_some_and(|every| self.unsynced && self.last_sync.elapsed() >= every)
    }

    /// The highest seq known to be on disk: with `always`, the last appended;
    /// with `interval`, the last fsynced; with `never`, the last appended
    /// (on disk for a crash of the agent, not of the OS).
    pub fn durable_seq(&self) -> u64 {
        self.durable
    }

    /// Unacknowledged records in the spool.
    pub fn records(&self) -> u64 {
        self.live.records
    }

    /// Events in the unacknowledged records.
    pub fn events(&self) -> u64 {
        self.live.events
    }

    /// Bytes of the unacknowledged records (framing included).
    pub fn bytes(&self) -> u64 {
        self.live.bytes
    }

    /// Bytes of segment files on disk: what `max_bytes` bounds.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Records handed out and not acknowledged yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The watermark in memory: every record up to it is acknowledged,
    /// dropped or lost.
    pub fn acked_seq(&self) -> u64 {
        self.acked
    }

    /// The watermark as persisted in the `acked` file.
    pub fn persisted_acked_seq(&self) -> u64 {
        self.persisted.acked_seq
    }

    /// The seq the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records found corrupt when read back since open (see [`Spool::next_unsent`]).
    pub fn lost(&self) -> Dropped {
        self.lost
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Index of the segment holding `seq` or, if none does, of the first one
    /// after it.
    fn locate(&self, seq: u64) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.end_seq <= seq);
        (i < self.segments.len()).then_some(i)
    }

    /// Moves the watermark up to one below the oldest live record.
    pub(super) fn advance_watermark(&mut self) {
        let mut w = self.acked;
        loop {
            let next = w + 1;
            let Some(i) = self.locate(next) else {
                w = w.max(self.next_seq - 1);
                break;
            };
            let s = next.max(self.segments[i].first_seq);
            if self.acked_ahead.contains(&s) {
                w = s;
            } else {
                w = s - 1;
                break;
            }
        }
        self.acked = w;
        self.acked_ahead = self.acked_ahead.split_off(&(w + 1));
    }

    fn persist(&mut self) -> Result<(), SpoolError> {
        let s = State {
            acked_seq: self.acked,
            next_seq: self.next_seq,
        };
        state::save(&self.dir, s)?;
        self.persisted = s;
        Ok(())
    }

    fn persist_if_always(&mut self) -> Result<(), SpoolError> {
        if self.cfg.fsync == FsyncPolicy::Always && self.acked != self.persisted.acked_seq {
            self.persist()?;
        }
        Ok(())
    }

    /// Persists the next seq if no segment file will show it any more.
    pub(super) fn keep_seq_floor(&mut self) -> Result<(), SpoolError> {
        let shown_by_files = self.segments.back().map_or(0, |s| s.end_seq);
        if shown_by_files < self.next_seq && self.persisted.next_seq < self.next_seq {
            self.persist()?;
        }
        Ok(())
    }

    /// Removes segment `i` from the index; its file is deleted by `collect`.
    fn retire(&mut self, i: usize) {
        let Some(seg) = self.segments.remove(i) else {
            return;
        };
        if i == self.segments.len() {
            // It was the last one.
            self.active = None;
        }
        if self.reader.as_ref().is_some_and(|r| r.0 == seg.first_seq) {
            self.reader = None;
        }
        self.doomed.push((seg.path, seg.file_bytes));
    }

    /// Deletes the files of sealed segments with nothing left to send, after
    /// persisting the seq floor if they carried the newest seqs.
    pub(super) fn collect(&mut self) -> Result<(), SpoolError> {
        let active = self
            .active
            .as_ref()
            .and(self.segments.back())
            .map(|s| s.first_seq);
        let mut i = 0;
        while i < self.segments.len() {
            let seg = &self.segments[i];
            if seg.live.records == 0 && Some(seg.first_seq) != active {
                self.retire(i);
            } else {
                i += 1;
            }
        }
        if self.doomed.is_empty() {
            return Ok(());
        }
        self.keep_seq_floor()?;
        while let Some((path, bytes)) = self.doomed.pop() {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    self.doomed.push((path.clone(), bytes));
                    return Err(SpoolError::Delete { path, source });
                }
            }
            self.disk_bytes = self.disk_bytes.saturating_sub(bytes);
        }
        Ok(())
    }
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| SpoolError::Write {
            path: dir.to_path_buf(),
            source,
        })
}
