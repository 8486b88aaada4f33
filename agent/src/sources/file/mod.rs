//! File source: tails log files matched by glob patterns, surviving rotation,
//! truncation and restarts without losing or doubling lines.
//!
//! - **Discovery**: include globs are expanded every `glob_interval_ms` (and at
//!   once when inotify reports a created, renamed or deleted entry); exclude
//!   globs are matched against the full path and the file name.
//! - **Identity**: a file is its fingerprint (xxh3 of its first line, see
//!   `fingerprint.rs`), never its inode alone; a file whose first line is not
//!   complete is not read yet. Two files with identical first lines are one
//!   file to the tailer (a limitation of every first-bytes identity).
//! - **Start position**: a fingerprint with a checkpoint resumes there, at any
//!   path; files found at the agent's very first start begin at `read_from`;
//!   every file found later begins at 0.
//! - **Rotation**: a renamed file keeps its fingerprint and position; an open
//!   file that is no longer found (renamed away, deleted) is read to its end,
//!   its last unterminated line emitted, then closed (after one more scan, so
//!   writes racing the rotation are read too). A truncated file
//!   (copytruncate) first has its remainder read from the copy when a path
//!   matching include has the same fingerprint, then is read from 0 as a new file.
//! - **Bounds**: per-file read buffer of 64 KiB released when consumed,
//!   `max_line_bytes` per line, `max_open_files` handles, a byte and line
//!   budget per poll shared round-robin across files.
//! - **Output**: [`RawLine`]s with `end_offset`, the checkpoint value once the
//!   line is acknowledged under [`crate::checkpoint::Checkpoints::file_key`]
//!   (source name + fingerprint). The tailer never writes checkpoints itself.
//!
//! [`Tailer::poll`] is synchronous and driven by [`spawn`] on its own OS thread.

mod config;
mod fingerprint;
mod multiline;
mod reader;
mod scan;
mod tailer;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_spawn;
mod watch;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checkpoint::Checkpoints;
use crate::ratelimit::SourceLimiter;

pub use config::{FileSourceOptions, MultilineOptions, ReadFrom};
pub use tailer::{Tailer, TailerStatsHandle};

/// Lines handed to the channel per message by [`spawn`].
const SPAWN_BATCH_LINES: usize = 1000;

/// One line (or multiline event) read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// The source name.
    pub source: Arc<str>,
    /// Path the line was read from.
    pub path: Arc<Path>,
    /// Fingerprint of the file (see [`crate::checkpoint::Checkpoints::file_key`]).
    pub fingerprint: u64,
    /// Byte offset of the line start.
    pub offset: u64,
    /// Offset just after the line and its newline: the checkpoint value once acknowledged.
    pub end_offset: u64,
    /// The line, without its newline and without a trailing `\r`. Not necessarily UTF-8.
    pub bytes: Vec<u8>,
    /// The line was longer than `max_line_bytes`: cut there, the rest of it skipped.
    pub truncated: bool,
    /// 1, or the number of lines joined into a multiline event.
    pub lines_joined: u32,
}

/// Counters of a tailer since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailerStats {
    /// Files currently tracked (found at the last scan, or still open).
    pub files_watched: u64,
    /// Physical lines read.
    pub lines_read: u64,
    /// Bytes read from files.
    pub bytes_read: u64,
    /// Lines cut at `max_line_bytes`.
    pub lines_truncated: u64,
    /// Failed stat, open or read attempts (each is retried at a later scan).
    pub read_errors: u64,
    /// Bytes written to the open files and not read yet, as of the last scan
    /// (a gauge: the source is lagging when it grows).
    pub lag_bytes: u64,
}

/// Errors building a file source. Each names the offending setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileSourceError {
    /// An include pattern is not a valid glob.
    #[error("invalid include pattern {pattern:?}: {source}")]
    InvalidInclude {
        /// The pattern.
        pattern: String,
        /// Why it is invalid.
        source: glob::PatternError,
    },
    /// An exclude pattern is not a valid glob.
    #[error("invalid exclude pattern {pattern:?}: {source}")]
    InvalidExclude {
        /// The pattern.
        pattern: String,
        /// Why it is invalid.
        source: globset::Error,
    },
    /// `multiline.start_pattern` is not a valid regular expression.
    #[error("invalid multiline.start_pattern {pattern:?}: {source}")]
    InvalidMultilinePattern {
        /// The pattern.
        pattern: String,
        /// Why it is invalid.
        source: regex::Error,
    },
    /// A value is out of range.
    #[error("invalid {key}: {message}")]
    InvalidOption {
        /// The option key.
        key: &'static str,
        /// What is wrong and what would be valid.
        message: String,
    },
    /// The tailer thread could not be started.
    #[error("cannot start the file tailer thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Builds a tailer and runs it on its own OS thread (see [`spawn_tailer`]).
pub fn spawn(
    name: &str,
    opts: FileSourceOptions,
    checkpoints: &Checkpoints,
    first_start: bool,
    tx: tokio::sync::mpsc::Sender<Vec<RawLine>>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, FileSourceError> {
    let tailer = Tailer::new(name, opts, checkpoints, first_start)?;
    spawn_tailer(tailer, tx, stop, None)
}

/// Runs `tailer` on its own OS thread: polls, sends the lines with `blocking_send` (a
/// full channel is backpressure: reading pauses, positions hold), then sleeps until an
/// inotify event or `poll_interval_ms`. Stops when `stop` is set or `tx` is closed.
///
/// Take [`Tailer::stats_handle`] before calling this to read its counters later.
pub fn spawn_tailer(
    tailer: Tailer,
    tx: tokio::sync::mpsc::Sender<Vec<RawLine>>,
    stop: Arc<AtomicBool>,
    limiter: Option<Arc<SourceLimiter>>,
) -> Result<JoinHandle<()>, FileSourceError> {
    std::thread::Builder::new()
        .name(format!("file-{}", tailer.name()))
        .spawn(move || run(tailer, tx, stop, limiter))
        .map_err(FileSourceError::Spawn)
}

fn run(
    mut tailer: Tailer,
    tx: tokio::sync::mpsc::Sender<Vec<RawLine>>,
    stop: Arc<AtomicBool>,
    limiter: Option<Arc<SourceLimiter>>,
) {
    let poll_interval = Duration::from_millis(tailer.options().poll_interval_ms.max(1));
    let min_gap = Duration::from_millis(tailer.options().min_read_interval_ms);
    // When the last poll that found lines started: a notification after a quiet spell (or
    // after polls that found nothing) is served at once.
    let mut last_read: Option<Instant> = None;
    let mut watcher = if tailer.options().use_inotify {
        match watch::DirWatcher::new(&tailer.options().include) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(source = %tailer.name(), error = %e, "inotify unavailable, polling only");
                None
            }
        }
    } else {
        None
    };
    tracing::info!(source = %tailer.name(), inotify = watcher.is_some(), "file source started");
    while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
        let mut batch = Vec::new();
        let polled = Instant::now();
        let more = tailer.poll(&mut batch, SPAWN_BATCH_LINES);
        if !batch.is_empty() {
            last_read = Some(polled);
        }
        if let Some(l) = &limiter {
            // Drop mode keeps what the limit allows; block mode waits here,
            // so only this source slows down and its position holds.
            l.filter(&mut batch);
            l.wait_blocking(batch.len(), &stop);
        }
        if !batch.is_empty() && tx.blocking_send(batch).is_err() {
            break;
        }
        if more {
            continue;
        }
        let Some(w) = watcher.as_mut() else {
            std::thread::sleep(poll_interval);
            continue;
        };
        w.retry_missing();
        // Writes that follow closely are read together: the kernel keeps (and merges) their
        // events until the next read pass, at most every `min_read_interval_ms`.
        let woken = w.wait_coalesced(poll_interval, last_read.map(|at| at + min_gap));
        match woken {
            Ok(Some(watch::Wake::Rescan)) => tailer.request_scan(),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(source = %tailer.name(), error = %e, "inotify failed, polling only");
                watcher = None;
            }
        }
    }
    tracing::info!(source = %tailer.name(), "file source stopped");
}
