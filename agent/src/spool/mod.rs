//! The on-disk spool: sealed batches wait here, durable, until the collector
//! acknowledges them.
//!
//! The agent survives its own restarts (even SIGKILL) and collector outages
//! of hours with bounded memory: the backlog lives on disk, bounded by
//! `max_bytes`, and is read back one record at a time.
//!
//! # Layout
//! A spool directory (mode 0700 when created here) holds segment files
//! `NNNNNNNNNNNNNNNNNNNN.seg` (the seq of their first record, 20 digits) and
//! one state file, `acked`; every file is created with mode 0600. A segment is
//! a sequence of length-prefixed, CRC-32-checked records (see `format.rs`),
//! one per sealed batch: a seq assigned here, the batch's event count, and its
//! payload (the gzip'ed NDJSON, opaque to the spool). Segments roll over at
//! `segment_bytes`; a segment file is deleted once every record in it was
//! acknowledged or dropped (the segment being appended to is kept until it
//! rolls over, to avoid creating a file per batch).
//!
//! # Seqs and acknowledgements
//! Seqs strictly increase, also across restarts, and are never reused: the
//! `acked` file keeps a floor for the next seq, written before the newest
//! segment is deleted, and a tail cut off at open moves the next seq past
//! every seq the cut bytes could have held. (The collector deduplicates
//! batches by id, so a reused seq would make it discard a new batch.)
//! Acknowledgements may come in any order; the *watermark* is the highest seq
//! such that every record up to it is acknowledged, dropped or lost. It is
//! persisted in `acked` — at every advance with `fsync = "always"`, otherwise
//! at [`Spool::sync`], [`Spool::close`] and when needed to keep the seq
//! floor — and never claims an unacknowledged record. After a crash, records
//! acknowledged after the last persisted watermark are handed out again: that
//! is expected, the collector recognises them by batch id.
//!
//! # Durability (`fsync`)
//! - `always` (default): every append is fsynced before it returns.
//! - `interval`: appends are not fsynced; the caller calls [`Spool::sync`]
//!   every `fsync_interval_ms` (see [`Spool::needs_sync`]). Records are handed
//!   out for sending only once synced, so a record the collector saw is never
//!   lost from disk and its seq never reused.
//! - `never`: the spool never fsyncs on its own. A crash of the agent loses
//!   nothing (the OS has the data), but a crash of the OS or a power loss can
//!   lose or tear the newest records — including ones already sent, whose
//!   seqs may then be reused and the new batches taken as duplicates.
//!
//! # Recovery at open
//! Every segment is read and every record checked (length, checksum, seq).
//! A bad or torn record in the last segment is cut off (the file is
//! truncated there); one in an earlier segment ends that segment: the
//! records before it are kept, the bytes after it are reported as corrupt.
//! Both are reported in [`OpenReport`]. A record found corrupt later, when
//! read back for sending, ends its segment the same way; the records lost are
//! counted in [`Spool::lost`] and logged as an error.
//!
//! # When full
//! `max_bytes` bounds the bytes of segment files. `when_full = "block"`
//! (default): [`Spool::append`] returns [`Append::Full`] without writing; the
//! caller stops reading its sources (their positions hold, so nothing is lost
//! while the files exist) and retries after acknowledgements.
//! `"drop_oldest"`: whole oldest segments are dropped until the new record
//! fits; the records, events and bytes dropped are counted exactly and
//! returned, and a dropped record is never handed out afterwards.
//!
//! The spool is synchronous and `Send`; the caller shares it behind a mutex
//! and calls it from blocking-friendly contexts (an append with
//! `fsync = "always"` waits for the disk).

use std::path::PathBuf;

use serde::Deserialize;

mod format;
mod open;
mod state;
mod store;

pub use format::MAX_PAYLOAD_BYTES;
pub use store::Spool;

/// `[spool]`: the on-disk buffer between the pipeline and the shipper.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Whether sealed batches go through the on-disk spool. Without it they
    /// wait in memory and an agent restart sends them again from the sources.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The spool directory (default: `spool` under the agent's data directory).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Most bytes of segment files on disk (default 1 GiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Size at which a segment file is closed and a new one started
    /// (default 64 MiB). Disk is reclaimed a whole segment at a time, and
    /// `when_full = "drop_oldest"` drops a whole segment at a time.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// When appended batches are forced to disk: `"always"`, `"interval"`
    /// (every `fsync_interval_ms`) or `"never"` (left to the OS).
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// Period of the fsync with `fsync = "interval"`, in milliseconds.
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
    /// What to do when the spool holds `max_bytes`: `"block"` (stop reading
    /// sources until batches are acknowledged) or `"drop_oldest"` (drop the
    /// oldest batches, counted).
    #[serde(default)]
    pub when_full: WhenFull,
}

/// When appended records are fsynced.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// After every append.
    #[default]
    Always,
    /// Every `fsync_interval_ms`, driven by the caller's [`Spool::sync`].
    Interval,
    /// Never by the spool itself.
    Never,
}

/// What happens to an append when the spool is full.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Nothing is written; [`Append::Full`] tells the caller to wait.
    #[default]
    Block,
    /// The oldest segments are dropped to make room.
    DropOldest,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            enabled: default_enabled(),
            dir: None,
            max_bytes: default_max_bytes(),
            segment_bytes: default_segment_bytes(),
            fsync: FsyncPolicy::default(),
            fsync_interval_ms: default_fsync_interval_ms(),
            when_full: WhenFull::default(),
        }
    }
}

fn default_enabled() -> bool {
    true
}
fn default_max_bytes() -> u64 {
    1 << 30
}
fn default_segment_bytes() -> u64 {
    64 << 20
}
fn default_fsync_interval_ms() -> u64 {
    1000
}

impl SpoolConfig {
    /// Checks the values; the message names the key and what would be valid.
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_bytes == 0 {
            return Err("spool.segment_bytes must be > 0".into());
        }
        if self.max_bytes < self.segment_bytes {
            return Err(format!(
                "spool.max_bytes ({}) must be at least spool.segment_bytes ({}); \
                 a few times more is better, disk is reclaimed a segment at a time",
                self.max_bytes, self.segment_bytes
            ));
        }
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval_ms == 0 {
            return Err("spool.fsync_interval_ms must be > 0 with fsync = \"interval\"".into());
        }
        Ok(())
    }
}

/// One spooled batch, read back for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Assigned by the spool at append; strictly increasing, never reused.
    pub seq: u64,
    /// Events in the batch.
    pub events: u32,
    /// The batch as appended (gzip'ed NDJSON).
    pub payload: Vec<u8>,
}

/// Records, events and bytes (record framing included) dropped or lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub records: u64,
    pub events: u64,
    pub bytes: u64,
}

impl Dropped {
    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    fn add(&mut self, other: Dropped) {
        self.records += other.records;
        self.events += other.events;
        self.bytes += other.bytes;
    }
}

/// The outcome of [`Spool::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Append {
    /// The record is in the spool under `seq`. With `when_full =
    /// "drop_oldest"`, `dropped` counts the records dropped to make room.
    Stored { seq: u64, dropped: Dropped },
    /// `when_full = "block"` and no room: nothing was written. Retry after
    /// acknowledgements.
    Full,
}

/// A bad record found at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The segment file.
    pub path: PathBuf,
    /// Offset of the bad record in the file.
    pub offset: u64,
    /// Bytes from there to the end of the file, none of them usable.
    pub bytes: u64,
    /// Whether the file was truncated there (the last segment) or kept as is.
    pub truncated: bool,
    /// The last segment simply ends inside its last record: the write was
    /// cut short by a crash or a kill, nothing already written is damaged.
    pub torn: bool,
    /// What is wrong with the record.
    pub reason: String,
}

/// What [`Spool::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Segment files kept.
    pub segments: u32,
    /// Unacknowledged records found (they will be handed out again).
    pub records: u64,
    /// Events in those records.
    pub events: u64,
    /// Bytes of those records.
    pub bytes: u64,
    /// Bytes cut off the end of the last segment (a torn or corrupt tail).
    pub truncated_bytes: u64,
    /// Earlier segments with a bad record (kept up to it).
    pub corrupt_segments: u32,
    /// Bytes after a bad record in those earlier segments (lost).
    pub corrupt_bytes: u64,
    /// Every bad record found, for logging.
    pub corruptions: Vec<Corruption>,
    /// The watermark after open: records up to it are not handed out again.
    pub acked_seq: u64,
    /// The seq the next append gets.
    pub next_seq: u64,
    /// Every record below this seq was completely written by an earlier run
    /// (it is in a segment, or was acknowledged): the source positions saved
    /// as pending on one of them may take effect. A record torn by a crash is
    /// at or above it, even though `next_seq` skips past it.
    pub written_end: u64,
}

/// Errors of the spool. Each names the file or directory involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The configuration cannot be used.
    #[error("invalid spool configuration: {0}")]
    Config(String),
    /// The spool directory could not be created or listed.
    #[error("cannot use spool directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A spool file could not be read.
    #[error("cannot read spool file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A spool file could not be created, written, truncated or fsynced.
    #[error("cannot write spool file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A fully acknowledged segment could not be deleted (retried later).
    #[error("cannot delete spool segment {path}: {source}")]
    Delete {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The `acked` state file cannot be used.
    #[error(
        "spool state file {path} is corrupt: {reason}; move it away to start over \
         (unacknowledged batches in the spool would be sent again)"
    )]
    State { path: PathBuf, reason: String },
    /// A record that can never fit.
    #[error(
        "a batch of {bytes} bytes cannot be spooled in {dir}: the limit is {limit} bytes \
         (spool.max_bytes, at most {MAX_PAYLOAD_BYTES} bytes per batch); lower batch.max_bytes"
    )]
    TooLarge {
        dir: PathBuf,
        bytes: u64,
        limit: u64,
    },
    /// An acknowledgement for a seq the spool never assigned (a caller bug).
    #[error("acknowledged seq {seq} was never assigned by the spool in {dir} (next is {next})")]
    UnknownSeq { dir: PathBuf, seq: u64, next: u64 },
    /// An acknowledgement for a record not handed out yet (a caller bug).
    #[error("acknowledged seq {seq} of the spool in {dir} was not handed out yet")]
    NotHandedOut { dir: PathBuf, seq: u64 },
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
