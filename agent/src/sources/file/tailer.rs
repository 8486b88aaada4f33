//! The tailer: the table of tracked files and the fair, bounded read loop.
//!
//! Files are tracked by fingerprint ([`Tracked`]). A tracked file is either
//! open (a [`LineReader`] positioned after the last line handed out) or closed
//! (its `offset` says where to resume). Discovery, rotation and truncation live
//! in `scan.rs`; this module reads: each [`Tailer::poll`] visits the open files
//! round-robin from a rotating start, giving each a turn of at most one read
//! buffer, and loops until the line budget or the byte budget is spent or no
//! file has more, so one busy file cannot starve the others.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::fingerprint::read_fingerprint;
use super::multiline::{Assembler, Event, MultilineRule};
use super::reader::{Line, LineReader, READ_BUF_BYTES};
use super::{FileSourceError, FileSourceOptions, RawLine, TailerStats};
use crate::checkpoint::Checkpoints;

/// Most bytes read in one poll, across files (then `poll` returns "more").
const POLL_BYTES: usize = 8 * 1024 * 1024;

/// Settings fixed at construction.
#[derive(Debug)]
pub(super) struct Settings {
    pub name: Arc<str>,
    pub opts: FileSourceOptions,
    pub exclude: GlobSet,
    pub multiline: Option<MultilineRule>,
    pub glob_interval: Duration,
}

/// One file, identified by its fingerprint.
#[derive(Debug)]
pub(super) struct Tracked {
    pub fingerprint: u64,
    /// Path the file was last found at.
    pub path: Arc<Path>,
    /// Where to resume when closed (while open, the reader's `line_start` is authoritative).
    pub offset: u64,
    pub reader: Option<LineReader>,
    pub assembler: Assembler,
    /// Last scan that found the file at an included path.
    pub seen_scan: u64,
    /// Scan at which the open file was first not found any more.
    pub dead_since: Option<u64>,
    /// Logical time of the last read turn (for closing the least recently read).
    pub last_read_tick: u64,
    /// Poll and scan at which the fingerprint of the open handle was last checked.
    pub verified: (u64, u64),
}

impl Tracked {
    /// Closes the handle, keeping the position.
    pub(super) fn close(&mut self) {
        if let Some(r) = self.reader.take() {
            self.offset = r.line_start();
        }
    }
}

/// Counters shared with other threads (published at the end of every poll).
#[derive(Debug, Default)]
struct SharedStats {
    files_watched: AtomicU64,
    lines_read: AtomicU64,
    bytes_read: AtomicU64,
    lines_truncated: AtomicU64,
    read_errors: AtomicU64,
    lag_bytes: AtomicU64,
}

/// Reads the counters of a tailer running on another thread.
#[derive(Debug, Clone)]
pub struct TailerStatsHandle(Arc<SharedStats>);

impl TailerStatsHandle {
    /// The counters as of the end of the tailer's last poll.
    pub fn get(&self) -> TailerStats {
        let s = &self.0;
        TailerStats {
            files_watched: s.files_watched.load(Ordering::Relaxed),
            lines_read: s.lines_read.load(Ordering::Relaxed),
            bytes_read: s.bytes_read.load(Ordering::Relaxed),
            lines_truncated: s.lines_truncated.load(Ordering::Relaxed),
            read_errors: s.read_errors.load(Ordering::Relaxed),
            lag_bytes: s.lag_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Tails the files of one file source. See the module documentation of `sources::file`.
#[derive(Debug)]
pub struct Tailer {
    pub(super) cfg: Settings,
    /// Acknowledged offsets of this source, by fingerprint.
    pub(super) checkpoints: HashMap<u64, u64>,
    pub(super) files: HashMap<u64, Tracked>,
    pub(super) first_start: bool,
    pub(super) scan_count: u64,
    pub(super) next_scan: Instant,
    pub(super) scan_requested: bool,
    pub(super) poll_count: u64,
    pub(super) tick: u64,
    cursor: usize,
    pub(super) stats: TailerStats,
    shared: Arc<SharedStats>,
    /// Last warning time per path, for rate-limiting.
    pub(super) warned: HashMap<PathBuf, Instant>,
    /// A read buffer no file holds, for the next one that reads: files give theirs up
    /// when they have nothing buffered, and a new one would be 64 KiB to zero each time.
    spare: Vec<u8>,
}

/// Outcome of one read turn on one file.
enum Turn {
    /// Nothing more to read now (or the file was closed).
    Idle,
    /// Stopped by a budget with data left.
    More,
    /// The file is shorter than the read position, or its content was replaced.
    Truncated,
    /// An I/O error; the file is closed and retried at a later scan.
    Error(std::io::Error, &'static str),
}

impl Tailer {
    /// Builds a tailer and runs its first scan.
    ///
    /// `checkpoints` are the acknowledged ones; `first_start` is true when the agent has
    /// no checkpoint file yet (files found now start at `read_from`).
    pub fn new(
        name: &str,
        opts: FileSourceOptions,
        checkpoints: &Checkpoints,
        first_start: bool,
    ) -> Result<Tailer, FileSourceError> {
        opts.validate()?;
        for pattern in &opts.include {
            glob::Pattern::new(pattern).map_err(|source| FileSourceError::InvalidInclude {
                pattern: pattern.clone(),
                source,
            })?;
        }
        let mut exclude = GlobSetBuilder::new();
        for pattern in &opts.exclude {
            let glob = Glob::new(pattern).map_err(|source| FileSourceError::InvalidExclude {
                pattern: pattern.clone(),
                source,
            })?;
            exclude.add(glob);
        }
        let exclude = exclude
            .build()
            .map_err(|source| FileSourceError::InvalidExclude {
                pattern: opts.exclude.join(", "),
                source,
            })?;
        let multiline = match &opts.multiline {
            Some(m) => Some(MultilineRule {
                start: regex::bytes::Regex::new(&m.start_pattern).map_err(|source| {
                    FileSourceError::InvalidMultilinePattern {
                        pattern: m.start_pattern.clone(),
                        source,
                    }
                })?,
                timeout: Duration::from_millis(m.timeout_ms),
                max_lines: m.max_lines,
                max_bytes: opts.max_line_bytes,
            }),
            None => None,
        };
        let prefix = format!("{name}/");
        let own = checkpoints
            .files
            .iter()
            .filter_map(|(key, cp)| {
                let hex = key.strip_prefix(&prefix)?;
                let fp = u64::from_str_radix(hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 16)?;
                Some((fp, cp.offset))
            })
            .collect();
        let now = Instant::now();
        let mut tailer = Tailer {
            cfg: Settings {
                name: Arc::from(name),
                glob_interval: Duration::from_millis(opts.glob_interval_ms),
                opts,
                exclude,
                multiline,
            },
            checkpoints: own,
            files: HashMap::new(),
            first_start,
            scan_count: 0,
            next_scan: now,
            scan_requested: false,
            poll_count: 0,
            tick: 0,
            cursor: 0,
            stats: TailerStats::default(),
            shared: Arc::new(SharedStats::default()),
            warned: HashMap::new(),
            spare: Vec::new(),
        };
        tailer.scan(now);
        tailer.publish();
        Ok(tailer)
    }

    /// The source name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The options the tailer was built with.
    pub fn options(&self) -> &FileSourceOptions {
        &self.cfg.opts
    }

    /// Counters since creation.
    pub fn stats(&self) -> TailerStats {
        self.stats
    }

    /// A handle to read the counters from another thread.
    pub fn stats_handle(&self) -> TailerStatsHandle {
        TailerStatsHandle(Arc::clone(&self.shared))
    }

    /// Makes the next poll scan the include patterns whatever `glob_interval_ms` says
    /// (called on inotify create/rename/delete events).
    pub fn request_scan(&mut self) {
        self.scan_requested = true;
    }

    /// Scans (when `glob_interval_ms` elapsed or a scan was requested), reads what is
    /// available and pushes at most `max_lines` lines to `out`. Returns true when more
    /// data is immediately available.
    pub fn poll(&mut self, out: &mut Vec<RawLine>, max_lines: usize) -> bool {
        self.poll_count += 1;
        let now = Instant::now();
        if self.scan_requested || now >= self.next_scan {
            self.scan(now);
        }
        let start = out.len();
        let mut ids: Vec<u64> = self
            .files
            .iter()
            .filter(|(_, f)| f.reader.is_some())
            .map(|(fp, _)| *fp)
            .collect();
        ids.sort_unstable();
        if !ids.is_empty() {
            let k = self.cursor % ids.len();
            ids.rotate_left(k);
        }
        self.cursor = self.cursor.wrapping_add(1);

        let share = max_lines.div_ceil(ids.len().max(1)).max(1);
        let mut budget = POLL_BYTES;
        let mut more = false;
        'rounds: loop {
            let mut again = false;
            for &fp in &ids {
                let left = max_lines.saturating_sub(out.len() - start);
                if left == 0 {
                    more = true;
                    break 'rounds;
                }
                // A share of the line budget per turn, so every file gets lines in
                // this poll; rounds repeat while files have more.
                let room = left.min(share);
                self.tick += 1;
                let (scan_count, poll_count, tick) = (self.scan_count, self.poll_count, self.tick);
                let Some(f) = self.files.get_mut(&fp) else {
                    continue;
                };
                let turn = read_turn(
                    &self.cfg,
                    &mut self.stats,
                    f,
                    out,
                    room,
                    (&mut budget, &mut self.spare),
                    (scan_count, poll_count, tick),
                    now,
                );
                match turn {
                    Turn::Idle => {}
                    Turn::More => again = true,
                    Turn::Truncated => {
                        self.handle_truncation(fp);
                        again = true;
                    }
                    Turn::Error(e, what) => {
                        f.close();
                        let path = Arc::clone(&f.path);
                        self.report_error(&path, what, &e);
                    }
                }
            }
            if !again {
                break;
            }
            if budget == 0 {
                more = true;
                break;
            }
        }
        if let Some(rule) = &self.cfg.multiline {
            for f in self.files.values_mut() {
                if !f.assembler.has_pending() {
                    continue;
                }
                if out.len() - start >= max_lines {
                    more = true;
                    break;
                }
                if let Some(ev) = f.assembler.flush_if_idle(rule, now) {
                    out.push(event_line(&self.cfg.name, f.fingerprint, ev));
                }
            }
        }
        self.publish();
        more || self.scan_requested
    }

    /// Counts an I/O error and warns about it, at most once a minute per path.
    pub(super) fn report_error(&mut self, path: &Path, what: &str, err: &std::io::Error) {
        const WARN_EVERY: Duration = Duration::from_secs(60);
        const MAX_WARNED_PATHS: usize = 4096;
        self.stats.read_errors += 1;
        let now = Instant::now();
        let due = self
            .warned
            .get(path)
            .is_none_or(|last| now.saturating_duration_since(*last) >= WARN_EVERY);
        if due {
            if self.warned.len() >= MAX_WARNED_PATHS {
                self.warned.clear();
            }
            self.warned.insert(path.to_path_buf(), now);
            tracing::warn!(
                source = %self.cfg.name,
                path = %path.display(),
                error = %err,
                "cannot {what} file; retrying at later scans"
            );
        }
    }

    fn publish(&self) {
        let s = &self.shared;
        s.files_watched
            .store(self.stats.files_watched, Ordering::Relaxed);
        s.lines_read.store(self.stats.lines_read, Ordering::Relaxed);
        s.bytes_read.store(self.stats.bytes_read, Ordering::Relaxed);
        s.lines_truncated
            .store(self.stats.lines_truncated, Ordering::Relaxed);
        s.read_errors
            .store(self.stats.read_errors, Ordering::Relaxed);
        s.lag_bytes.store(self.stats.lag_bytes, Ordering::Relaxed);
    }
}

/// Reads from one open file until it has nothing more, a budget is spent or it must be
/// handled by the caller (truncation, error). `clock` is (scan count, poll count, tick);
/// `buffers` the bytes left to read in this poll and the tailer's spare read buffer.
#[allow(clippy::too_many_arguments)]
fn read_turn(
    cfg: &Settings,
    stats: &mut TailerStats,
    f: &mut Tracked,
    out: &mut Vec<RawLine>,
    room: usize,
    buffers: (&mut usize, &mut Vec<u8>),
    clock: (u64, u64, u64),
    now: Instant,
) -> Turn {
    let (budget, spare) = buffers;
    let (scan_count, poll_count, tick) = clock;
    let max_line_bytes = cfg.opts.max_line_bytes;
    let mut emitted = 0usize;
    let mut turn_bytes = 0usize;
    let mut checked = false;
    loop {
        let Some(reader) = f.reader.as_mut() else {
            return Turn::Idle;
        };
        if emitted >= room {
            return Turn::More;
        }
        if let Some(line) = reader.next_buffered(max_line_bytes) {
            emitted += usize::from(emit_line(cfg, stats, f, line, out, now));
            continue;
        }
        let mut at_eof = false;
        if !checked {
            checked = true;
            let size = match reader.file().metadata() {
                Ok(m) => m.len(),
                Err(e) => return Turn::Error(e, "stat"),
            };
            if size < reader.read_pos() {
                return Turn::Truncated;
            }
            // The content may have been replaced: check the first line again when the
            // file grew (once a poll) and at every scan (a file truncated to exactly its
            // read position, e.g. 0, would go unnoticed otherwise).
            let (at_poll, at_scan) = f.verified;
            if (size > reader.read_pos() && at_poll != poll_count) || at_scan != scan_count {
                f.verified = (poll_count, scan_count);
                match read_fingerprint(reader.file(), cfg.opts.fingerprint_bytes) {
                    Ok(Some(fp)) if fp == f.fingerprint => {}
                    Ok(_) => return Turn::Truncated,
                    Err(e) => return Turn::Error(e, "read"),
                }
            }
            at_eof = size == reader.read_pos();
        }
        if !at_eof {
            if turn_bytes >= READ_BUF_BYTES || *budget == 0 {
                return Turn::More;
            }
            let n = match reader.fill((*budget).min(READ_BUF_BYTES - turn_bytes), spare) {
                Ok(n) => n,
                Err(e) => return Turn::Error(e, "read"),
            };
            turn_bytes += n;
            *budget -= n;
            stats.bytes_read += n as u64;
            at_eof = n == 0;
            if n > 0 {
                f.last_read_tick = tick;
            }
        }
        if !at_eof {
            continue;
        }
        reader.release_buffer_if_empty(spare);
        if f.dead_since.is_none_or(|s| s >= scan_count) {
            return Turn::Idle;
        }
        // Gone since before the last scan and read to its end: hand out the last
        // unterminated line and the pending event, then close for good.
        if emitted >= room {
            return Turn::More;
        }
        if let Some(line) = reader.take_partial(max_line_bytes) {
            emitted += usize::from(emit_line(cfg, stats, f, line, out, now));
            continue;
        }
        let end = reader.read_pos();
        if let Some(ev) = f.assembler.flush() {
            out.push(event_line(&cfg.name, f.fingerprint, ev));
        }
        f.reader = None;
        f.offset = end;
        tracing::debug!(source = %cfg.name, path = %f.path.display(), "file gone and read to its end: closed");
        return Turn::Idle;
    }
}

/// Counts a line and hands it out, through the multiline assembler if configured.
/// Returns true when a `RawLine` was pushed.
fn emit_line(
    cfg: &Settings,
    stats: &mut TailerStats,
    f: &mut Tracked,
    line: Line,
    out: &mut Vec<RawLine>,
    now: Instant,
) -> bool {
    stats.lines_read += 1;
    if line.truncated {
        stats.lines_truncated += 1;
    }
    match &cfg.multiline {
        Some(rule) => match f.assembler.push(rule, &f.path, line, now) {
            Some(ev) => {
                out.push(event_line(&cfg.name, f.fingerprint, ev));
                true
            }
            None => false,
        },
        None => {
            out.push(RawLine {
                source: Arc::clone(&cfg.name),
                path: Arc::clone(&f.path),
                fingerprint: f.fingerprint,
                offset: line.offset,
                end_offset: line.end_offset,
                bytes: line.bytes,
                truncated: line.truncated,
                lines_joined: 1,
            });
            true
        }
    }
}

fn event_line(source: &Arc<str>, fingerprint: u64, ev: Event) -> RawLine {
    RawLine {
        source: Arc::clone(source),
        path: ev.path,
        fingerprint,
        offset: ev.offset,
        end_offset: ev.end_offset,
        bytes: ev.bytes,
        truncated: ev.truncated,
        lines_joined: ev.lines,
    }
}
