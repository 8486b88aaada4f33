//! Discovery, rotation and truncation: matching what is on disk to the tracked files.
//!
//! A scan expands the include globs (minus excludes) and, for each regular file:
//! - if its `(device, inode)` is that of an open handle, it is that file (an open
//!   handle pins its inode, so the number cannot have been recycled): the path is
//!   updated (rename) and the file is alive;
//! - otherwise its fingerprint is read. A known fingerprint already found this scan,
//!   or whose open handle was not found (being replaced), is a duplicate and ignored
//!   (e.g. the copy made by copytruncate); a known closed file resumes at its offset,
//!   at whatever path; an unknown fingerprint is a new file, starting at its
//!   checkpoint, else at `read_from` during the first scan of a first start, else at 0.
//!
//! Open files no longer found are marked dead: they are read to their end and closed
//! once a later scan also missed them. On truncation (see `handle_truncation`) the
//! rest of the old content is read from a copy with the same fingerprint if one
//! matches include, and the truncated file is found again as a new file.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::config::ReadFrom;
use super::fingerprint::read_fingerprint;
use super::multiline::Assembler;
use super::reader::{LineReader, READ_BUF_BYTES};
use super::tailer::{Tailer, Tracked};

/// Closed files no longer found are remembered (fingerprint → position) up to this many.
const MAX_GONE_FILES: usize = 4096;

impl Tailer {
    /// Expands the include patterns and reconciles the table of tracked files.
    pub(super) fn scan(&mut self, now: Instant) {
        self.scan_count += 1;
        let scan = self.scan_count;
        self.scan_requested = false;
        self.next_scan = now + self.cfg.glob_interval;

        let open: HashMap<(u64, u64), u64> = self
            .files
            .values()
            .filter_map(|f| f.reader.as_ref().map(|r| (r.inode(), f.fingerprint)))
            .collect();
        let mut unknown = Vec::new();
        let mut lag = 0u64;
        for path in self.expand() {
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    // Vanished since the glob: nothing to report. Present but not
                    // stat-able (dangling symlink, no permission): an error.
                    if fs::symlink_metadata(&path).is_ok() {
                        self.report_error(&path, "stat", &e);
                    }
                    continue;
                }
            };
            if !meta.is_file() {
                continue;
            }
            match open.get(&(meta.dev(), meta.ino())) {
                Some(fp) => {
                    if let Some(f) = self.files.get_mut(fp) {
                        if let Some(r) = f.reader.as_ref() {
                            lag = lag.saturating_add(meta.len().saturating_sub(r.line_start()));
                        }
                        f.seen_scan = scan;
                        f.dead_since = None;
                        if *f.path != *path {
                            tracing::debug!(source = %self.cfg.name, from = %f.path.display(), to = %path.display(), "file renamed");
                            f.path = Arc::from(path);
                        }
                    }
                }
                None => unknown.push((path, meta)),
            }
        }
        self.stats.lag_bytes = lag;
        for (path, meta) in unknown {
            self.discover(path, &meta, scan);
        }
        for f in self.files.values_mut() {
            if f.seen_scan != scan && f.reader.is_some() && f.dead_since.is_none() {
                tracing::debug!(source = %self.cfg.name, path = %f.path.display(), "file no longer found: reading it to its end");
                f.dead_since = Some(scan);
            }
        }
        self.prune(scan);
        self.stats.files_watched = self
            .files
            .values()
            .filter(|f| f.seen_scan == scan || f.reader.is_some())
            .count() as u64;
    }

    /// Paths matching include and not exclude, sorted and deduplicated.
    pub(super) fn expand(&mut self) -> Vec<PathBuf> {
        let mut found = BTreeSet::new();
        let mut errors = Vec::new();
        for pattern in &self.cfg.opts.include {
            // Patterns were validated in `Tailer::new`.
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            for entry in paths {
                match entry {
                    Ok(p) if !self.excluded(&p) => {
                        found.insert(p);
                    }
                    Ok(_) => {}
                    Err(e) => errors.push(e),
                }
            }
        }
        for e in errors {
            let path = e.path().to_path_buf();
            self.report_error(&path, "list directory of", e.error());
        }
        found.into_iter().collect()
    }

    fn excluded(&self, path: &Path) -> bool {
        self.cfg.exclude.is_match(path)
            || path
                .file_name()
                .is_some_and(|name| self.cfg.exclude.is_match(Path::new(name)))
    }

    /// A path whose inode is not that of an open handle: identify it by fingerprint.
    fn discover(&mut self, path: PathBuf, meta: &Metadata, scan: u64) {
        let file = match open_file(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return self.report_error(&path, "open", &e),
        };
        let fp = match read_fingerprint(&file, self.cfg.opts.fingerprint_bytes) {
            Ok(Some(fp)) => fp,
            Ok(None) => return, // first line not complete yet: next scan
            Err(e) => return self.report_error(&path, "read", &e),
        };
        let size = file.metadata().map_or(meta.len(), |m| m.len());
        if let Some(f) = self.files.get_mut(&fp) {
            if f.seen_scan == scan || f.reader.is_some() {
                // A copy of a file found elsewhere, or a replacement of an open file
                // that is still being read to its end (picked up once it is closed).
                return;
            }
            f.seen_scan = scan;
            f.dead_since = None;
            f.path = Arc::from(path.as_path());
            if size < f.offset {
                tracing::warn!(source = %self.cfg.name, path = %path.display(), size, position = f.offset,
                    "file is shorter than its recorded position: reading it from its start");
                f.offset = 0;
            }
            if size > f.offset {
                let pos = f.offset;
                self.attach(fp, file, pos, false);
            }
            return;
        }

        let mut keep_open = true;
        let (pos, mid_line) = if let Some(&offset) = self.checkpoints.get(&fp) {
            if offset > size {
                tracing::warn!(source = %self.cfg.name, path = %path.display(), size, checkpoint = offset,
                    "file is shorter than its checkpoint: reading it from its start");
                (0, false)
            } else {
                (offset, false)
            }
        } else if self.is_old(meta) {
            keep_open = false;
            end_position(&file, size)
        } else if self.first_start
            && self.scan_count == 1
            && self.cfg.opts.read_from == ReadFrom::End
        {
            end_position(&file, size)
        } else {
            (0, false)
        };
        tracing::debug!(source = %self.cfg.name, path = %path.display(), fingerprint = %format_args!("{fp:016x}"), position = pos, "new file");
        self.files.insert(
            fp,
            Tracked {
                fingerprint: fp,
                path: Arc::from(path.as_path()),
                offset: pos,
                reader: None,
                assembler: Assembler::default(),
                seen_scan: scan,
                dead_since: None,
                last_read_tick: self.tick,
                verified: (0, 0),
            },
        );
        if keep_open {
            self.attach(fp, file, pos, mid_line);
        }
    }

    fn is_old(&self, meta: &Metadata) -> bool {
        let Some(secs) = self.cfg.opts.ignore_older_secs else {
            return false;
        };
        meta.modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age > Duration::from_secs(secs))
    }

    /// Gives a tracked file an open handle at `pos`, closing the least recently read
    /// file when `max_open_files` are open. Leaves it closed when nothing can be closed.
    fn attach(&mut self, fp: u64, file: File, pos: u64, mid_line: bool) {
        let open = self.files.values().filter(|f| f.reader.is_some()).count();
        if open >= self.cfg.opts.max_open_files {
            let victim = self
                .files
                .values()
                .filter(|f| f.fingerprint != fp && f.dead_since.is_none())
                .filter_map(|f| {
                    f.reader
                        .as_ref()
                        .map(|r| (r.has_buffered(), f.last_read_tick, f.fingerprint))
                })
                .min();
            match victim.and_then(|(_, _, v)| self.files.get_mut(&v)) {
                Some(v) => v.close(),
                None => return,
            }
        }
        let reader = if mid_line {
            LineReader::new_mid_line(file, pos)
        } else {
            LineReader::new(file, pos)
        };
        let tick = self.tick;
        match reader {
            Ok(r) => {
                if let Some(f) = self.files.get_mut(&fp) {
                    f.reader = Some(r);
                    f.last_read_tick = tick;
                    f.verified = (0, 0);
                }
            }
            Err(e) => {
                if let Some(path) = self.files.get(&fp).map(|f| Arc::clone(&f.path)) {
                    self.report_error(&path, "open", &e);
                }
            }
        }
    }

    /// Forgets the oldest closed files no longer found, past [`MAX_GONE_FILES`].
    fn prune(&mut self, scan: u64) {
        let mut gone: Vec<(u64, u64)> = self
            .files
            .values()
            .filter(|f| f.seen_scan != scan && f.reader.is_none() && !f.assembler.has_pending())
            .map(|f| (f.seen_scan, f.fingerprint))
            .collect();
        if gone.len() <= MAX_GONE_FILES {
            return;
        }
        gone.sort_unstable();
        for (_, fp) in &gone[..gone.len() - MAX_GONE_FILES] {
            self.files.remove(fp);
        }
    }

    /// The open file `fp` is shorter than its read position, or its first line changed:
    /// its content was truncated (copytruncate) or replaced.
    ///
    /// Lines after the last one handed out may survive in a copy: another path matching
    /// include with the same fingerprint, longer than the position. If there is one, the
    /// file continues there. The truncated file itself is found by the next scan (run
    /// right away) as a new file, read from 0.
    pub(super) fn handle_truncation(&mut self, fp: u64) {
        let Some(f) = self.files.get_mut(&fp) else {
            return;
        };
        let Some(reader) = f.reader.as_ref() else {
            return;
        };
        let inode = reader.inode();
        f.close();
        let position = f.offset;
        let path = Arc::clone(&f.path);
        self.scan_requested = true;
        match self.find_copy(fp, inode, position) {
            Some((copy_path, file)) => {
                tracing::info!(source = %self.cfg.name, path = %path.display(), copy = %copy_path.display(), position,
                    "file truncated: reading the rest of its old content from its copy");
                match LineReader::new(file, position) {
                    Ok(r) => {
                        if let Some(f) = self.files.get_mut(&fp) {
                            f.reader = Some(r);
                            f.path = Arc::from(copy_path.as_path());
                            f.verified = (0, 0);
                        }
                    }
                    Err(e) => self.report_error(&copy_path, "open", &e),
                }
            }
            None => {
                tracing::info!(source = %self.cfg.name, path = %path.display(), position,
                    "file truncated: reading it again from its start as a new file");
            }
        }
    }

    /// A file matching include, other than `inode`, with fingerprint `fp` and longer
    /// than `position`.
    fn find_copy(&mut self, fp: u64, inode: (u64, u64), position: u64) -> Option<(PathBuf, File)> {
        for path in self.expand() {
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() || (meta.dev(), meta.ino()) == inode || meta.len() <= position {
                continue;
            }
            let Ok(file) = open_file(&path) else {
                continue;
            };
            if let Ok(Some(found)) = read_fingerprint(&file, self.cfg.opts.fingerprint_bytes) {
                if found == fp {
                    return Some((path, file));
                }
            }
        }
        None
    }
}

/// Opens a file for reading without blocking (a FIFO swapped in must not hang the tailer).
fn open_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// The start of the line after the last complete line of a file of `size` bytes, and
/// whether that position is inside a line (no newline in the last read buffer).
fn end_position(file: &File, size: u64) -> (u64, bool) {
    let window = size.min(READ_BUF_BYTES as u64);
    let from = size - window;
    let mut tail = vec![0u8; window as usize];
    let mut filled = 0;
    while filled < tail.len() {
        match file.read_at(&mut tail[filled..], from + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    match tail[..filled].iter().rposition(|&b| b == b'\n') {
        Some(i) => (from + i as u64 + 1, false),
        None if from == 0 => (0, false),
        None => (size, true),
    }
}
