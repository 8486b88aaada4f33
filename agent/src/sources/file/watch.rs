//! inotify watches on the directories a file source's include patterns start from, read by
//! the tailer's own thread.
//!
//! The tailer waits here ([`DirWatcher::wait`], `poll(2)` on the inotify descriptor with the
//! polling interval as timeout) and reads what is queued only when it is about to read the
//! files ([`DirWatcher::drain`]). Between two reads the kernel keeps the events, and merges
//! each one with the previous if they are identical (same directory, same file, same kind):
//! a file written a thousand times while the tailer reads or waits out
//! `min_read_interval_ms` is one `IN_MODIFY` when it next looks. No thread wakes up per
//! write (a watcher thread that read every event, as the `notify` crate's does, cost the agent
//! 40% of its CPU at 1,000 writes a second).
//!
//! - Directory entries created, deleted or renamed ask for a rescan ([`Wake::Rescan`]); a
//!   modified file asks for a read ([`Wake::Data`]); a lost event (queue overflow) or a read
//!   error asks for a rescan.
//! - A pattern with wildcards in a directory part (`/var/log/**/*.log`) watches the tree under
//!   its literal prefix, subdirectories created later included (at most [`MAX_WATCHES`]
//!   directories, symbolic links not followed).
//! - A directory that does not exist yet, or that is deleted or renamed away, is retried every
//!   [`WATCH_RETRY`]. Polling, always on, catches whatever this misses (NFS, overflow).

use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

/// How often directories that could not be watched (missing) are retried.
pub(super) const WATCH_RETRY: Duration = Duration::from_secs(5);
/// Most directories one source watches (a recursive pattern over a huge tree stops there;
/// polling still covers the rest).
pub(super) const MAX_WATCHES: usize = 4096;
/// Bytes read from the inotify descriptor at a time (events are 16 bytes plus a name).
const READ_BUFFER: usize = 16 * 1024;

/// What the watched directories ask of the tailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wake {
    /// File data changed: read.
    Data,
    /// Directory entries changed (or events were lost): scan, then read.
    Rescan,
}

impl Wake {
    /// The stronger of two requests (a rescan reads too).
    fn max(a: Option<Wake>, b: Wake) -> Option<Wake> {
        match (a, b) {
            (Some(Wake::Rescan), _) | (_, Wake::Rescan) => Some(Wake::Rescan),
            _ => Some(Wake::Data),
        }
    }
}

/// A watched directory.
#[derive(Debug, Clone)]
struct Dir {
    path: PathBuf,
    /// Whether its subdirectories are watched too.
    recursive: bool,
    /// Whether it is a root (one of the include patterns' directories).
    root: bool,
}

/// The inotify instance of one file source and its watches.
pub(super) struct DirWatcher {
    inotify: Inotify,
    buf: Vec<u8>,
    dirs: HashMap<WatchDescriptor, Dir>,
    /// Roots not watched (missing, or gone), with whether they are recursive.
    missing: Vec<(PathBuf, bool)>,
    last_retry: Instant,
    /// Events read since the start (for tests and debugging).
    events_read: u64,
    /// Most directories watched ([`MAX_WATCHES`]; lower in tests).
    max_watches: usize,
    /// Whether the limit was reached and said (once).
    warned_full: bool,
}

fn mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
        | WatchMask::EXCL_UNLINK
}

impl DirWatcher {
    /// Watches the directories `include` starts from (those that exist; the others are
    /// retried). Fails only when inotify itself is unavailable.
    pub fn new(include: &[String]) -> io::Result<DirWatcher> {
        Self::with_limit(include, MAX_WATCHES)
    }

    /// [`DirWatcher::new`] watching at most `max_watches` directories.
    fn with_limit(include: &[String], max_watches: usize) -> io::Result<DirWatcher> {
        let mut roots: Vec<(PathBuf, bool)> = Vec::new();
        for (dir, recursive) in include.iter().map(|p| watch_root(p)) {
            match roots.iter_mut().find(|(d, _)| *d == dir) {
                Some(known) => known.1 |= recursive,
                None => roots.push((dir, recursive)),
            }
        }
        let mut w = DirWatcher {
            inotify: Inotify::init()?,
            buf: vec![0; READ_BUFFER],
            dirs: HashMap::new(),
            missing: roots,
            last_retry: Instant::now(),
            events_read: 0,
            max_watches,
            warned_full: false,
        };
        w.add_missing();
        Ok(w)
    }

    /// Waits until something changes or `timeout` passes; then what changed, read as
    /// [`DirWatcher::drain`] does. An error means inotify cannot be used any more.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<Option<Wake>> {
        let ready = {
            let mut fds = [rustix::event::PollFd::new(
                &self.inotify,
                rustix::event::PollFlags::IN,
            )];
            // A timeout too long for a timespec waits without one (polling then never runs).
            let timeout = rustix::event::Timespec::try_from(timeout).ok();
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(n) => n > 0,
                Err(rustix::io::Errno::INTR) => false,
                Err(e) => return Err(e.into()),
            }
        };
        if ready {
            self.drain()
        } else {
            Ok(None)
        }
    }

    /// Waits as [`DirWatcher::wait`]; once woken, sleeps until `not_before` (so that writes
    /// close together are read in one pass) and adds what arrived meanwhile.
    pub fn wait_coalesced(
        &mut self,
        timeout: Duration,
        not_before: Option<Instant>,
    ) -> io::Result<Option<Wake>> {
        let Some(wake) = self.wait(timeout)? else {
            return Ok(None);
        };
        if let Some(at) = not_before {
            let pause = at.saturating_duration_since(Instant::now());
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        Ok(match self.drain()? {
            Some(later) => Wake::max(Some(wake), later),
            None => Some(wake),
        })
    }

    /// Reads every queued event without waiting: `None` when there was none.
    pub fn drain(&mut self) -> io::Result<Option<Wake>> {
        let mut wake = None;
        let mut new_dirs: Vec<PathBuf> = Vec::new();
        let mut gone: Vec<WatchDescriptor> = Vec::new();
        loop {
            let events = match self.inotify.read_events(&mut self.buf) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            for ev in events {
                self.events_read += 1;
                let m = ev.mask;
                if m.contains(EventMask::Q_OVERFLOW) {
                    wake = Wake::max(wake, Wake::Rescan);
                    // Directory creations may be among the lost events.
                    let recursive = self.dirs.values().filter(|d| d.recursive);
                    new_dirs.extend(recursive.map(|d| d.path.clone()));
                    continue;
                }
                if m.intersects(EventMask::IGNORED | EventMask::MOVE_SELF | EventMask::DELETE_SELF)
                {
                    gone.push(ev.wd.clone());
                    wake = Wake::max(wake, Wake::Rescan);
                    continue;
                }
                if m.intersects(
                    EventMask::CREATE
                        | EventMask::DELETE
                        | EventMask::MOVED_FROM
                        | EventMask::MOVED_TO,
                ) {
                    wake = Wake::max(wake, Wake::Rescan);
                    let dir = self.dirs.get(&ev.wd);
                    if let (Some(dir), Some(name)) = (dir, ev.name) {
                        if dir.recursive
                            && m.contains(EventMask::ISDIR)
                            && m.intersects(EventMask::CREATE | EventMask::MOVED_TO)
                        {
                            new_dirs.push(dir.path.join(name));
                        }
                    }
                    continue;
                }
                if m.contains(EventMask::MODIFY) {
                    wake = Wake::max(wake, Wake::Data);
                }
            }
        }
        for wd in gone {
            self.forget(wd);
        }
        for dir in new_dirs {
            self.add_tree(&dir, true, false);
        }
        Ok(wake)
    }

    /// Retries the missing roots if [`WATCH_RETRY`] passed since the last try.
    pub fn retry_missing(&mut self) {
        if !self.missing.is_empty() && self.last_retry.elapsed() >= WATCH_RETRY {
            self.add_missing();
        }
    }

    /// Drops a watch the kernel removed (or that follows a directory renamed away); a root
    /// goes back to the missing list, to be watched again where it is expected.
    fn forget(&mut self, wd: WatchDescriptor) {
        let Some(dir) = self.dirs.remove(&wd) else {
            return;
        };
        // Still set after a rename: remove it (an error means the kernel already did).
        let _ = self.inotify.watches().remove(wd);
        if dir.root && !self.missing.iter().any(|(p, _)| *p == dir.path) {
            tracing::debug!(dir = %dir.path.display(), "watched directory gone, will retry");
            self.missing.push((dir.path, dir.recursive));
        }
    }

    fn add_missing(&mut self) {
        let missing = std::mem::take(&mut self.missing);
        for (dir, recursive) in missing {
            if !self.add_tree(&dir, recursive, true) {
                self.missing.push((dir, recursive));
            }
        }
        self.last_retry = Instant::now();
    }

    /// Watches `dir`, and when `recursive` every directory under it; false when `dir` itself
    /// could not be watched.
    fn add_tree(&mut self, dir: &Path, recursive: bool, root: bool) -> bool {
        let mut stack = vec![dir.to_path_buf()];
        let mut first = true;
        while let Some(path) = stack.pop() {
            if self.dirs.len() >= self.max_watches {
                if !self.warned_full {
                    self.warned_full = true;
                    tracing::warn!(
                        dir = %path.display(),
                        max = self.max_watches,
                        "too many directories to watch, the rest is polled"
                    );
                }
                return !first;
            }
            match self.inotify.watches().add(&path, mask()) {
                Ok(wd) => {
                    let entry = Dir {
                        path: path.clone(),
                        recursive,
                        root: root && first,
                    };
                    // Watching a directory twice gives the same descriptor: a root stays one,
                    // and the path is where the directory is now.
                    let e = self.dirs.entry(wd).or_insert_with(|| entry.clone());
                    e.recursive |= entry.recursive;
                    e.root |= entry.root;
                    e.path = entry.path;
                }
                Err(e) => {
                    tracing::debug!(dir = %path.display(), error = %e, "cannot watch directory");
                    if first {
                        return false;
                    }
                    continue;
                }
            }
            first = false;
            if recursive {
                if let Ok(entries) = std::fs::read_dir(&path) {
                    // file_type() does not follow symbolic links.
                    let subdirs = entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path());
                    stack.extend(subdirs);
                }
            }
        }
        true
    }

    /// Events read so far.
    #[cfg(test)]
    pub fn events_read(&self) -> u64 {
        self.events_read
    }

    /// Makes the next [`DirWatcher::retry_missing`] try at once.
    #[cfg(test)]
    pub fn expire_retry(&mut self) {
        self.last_retry = Instant::now() - WATCH_RETRY;
    }
}

/// The directory to watch for a glob pattern: its longest literal prefix directory, and
/// whether its subdirectories must be watched too (wildcards in a directory part).
pub(super) fn watch_root(pattern: &str) -> (PathBuf, bool) {
    let is_glob = |c: &Component<'_>| {
        c.as_os_str()
            .to_string_lossy()
            .contains(['*', '?', '[', '{'])
    };
    let components: Vec<Component<'_>> = Path::new(pattern).components().collect();
    let (mut root, recursive) = match components.iter().position(is_glob) {
        // A literal path: watch its directory.
        None => {
            let mut root: PathBuf = components.iter().collect();
            root.pop();
            (root, false)
        }
        Some(i) => {
            let root: PathBuf = components[..i].iter().collect();
            (root, components.len() - i > 1)
        }
    };
    if root.as_os_str().is_empty() {
        root.push(".");
    }
    (root, recursive)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;

    use super::super::tests::append;
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn watcher(pattern: &Path) -> DirWatcher {
        DirWatcher::new(&[pattern.to_string_lossy().into_owned()]).unwrap()
    }

    #[test]
    fn watch_root_is_the_literal_prefix() {
        assert_eq!(
            watch_root("/var/log/auth.log"),
            (PathBuf::from("/var/log"), false)
        );
        assert_eq!(
            watch_root("/var/log/*.log"),
            (PathBuf::from("/var/log"), false)
        );
        assert_eq!(
            watch_root("/var/log/**/*.log"),
            (PathBuf::from("/var/log"), true)
        );
        assert_eq!(watch_root("*.log").0, PathBuf::from("."));
    }

    #[test]
    fn a_thousand_writes_nobody_read_yet_are_one_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        append(&path, "first\n");
        let mut w = watcher(&dir.path().join("*.log"));
        assert_eq!(w.drain().unwrap(), None);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        for i in 0..1000 {
            f.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Data));
        // The kernel merged the identical events while nothing read them.
        assert_eq!(w.events_read(), 1);
        assert_eq!(w.wait(Duration::from_millis(50)).unwrap(), None);
    }

    #[test]
    fn entries_created_renamed_or_deleted_ask_for_a_rescan() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = watcher(&dir.path().join("*.log"));
        append(&dir.path().join("a.log"), "x\n");
        append(&dir.path().join("a.log"), "y\n");
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Rescan));
        std::fs::rename(dir.path().join("a.log"), dir.path().join("a.log.1")).unwrap();
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Rescan));
        append(&dir.path().join("a.log.1"), "z\n");
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Data));
        std::fs::remove_file(dir.path().join("a.log.1")).unwrap();
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Rescan));
    }

    #[test]
    fn subdirectories_of_a_recursive_pattern_are_watched_new_ones_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("old/deep")).unwrap();
        append(&dir.path().join("old/deep/a.log"), "x\n");
        let mut w = watcher(&dir.path().join("**/*.log"));
        append(&dir.path().join("old/deep/a.log"), "y\n");
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Data));
        std::fs::create_dir(dir.path().join("new")).unwrap();
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Rescan));
        append(&dir.path().join("new/b.log"), "z\n");
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Rescan));
        append(&dir.path().join("new/b.log"), "z\n");
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Data));
    }

    #[test]
    fn past_the_limit_directories_are_left_to_polling() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::create_dir(dir.path().join(format!("d{i}"))).unwrap();
        }
        let pattern = dir.path().join("**/*.log").to_string_lossy().into_owned();
        let mut w = DirWatcher::with_limit(&[pattern], 3).unwrap();
        assert_eq!(w.dirs.len(), 3);
        assert!(w.missing.is_empty(), "the root itself is watched");
        // A new subdirectory is seen (its parent may be watched) but not watched itself.
        std::fs::create_dir(dir.path().join("new")).unwrap();
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Rescan));
        assert_eq!(w.dirs.len(), 3);
        assert!(w.warned_full);
    }

    #[test]
    fn a_directory_missing_or_recreated_is_watched_once_it_exists() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("logs");
        let mut w = watcher(&dir.join("*.log"));
        assert_eq!(w.wait(Duration::from_millis(50)).unwrap(), None);
        std::fs::create_dir(&dir).unwrap();
        w.expire_retry();
        w.retry_missing();
        append(&dir.join("a.log"), "x\n");
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Rescan));
        // Deleted, then created again: watched again after the retry.
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Rescan));
        let _ = w.drain();
        std::fs::create_dir(&dir).unwrap();
        w.expire_retry();
        w.retry_missing();
        append(&dir.join("b.log"), "x\n");
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Rescan));
        append(&dir.join("b.log"), "y\n");
        assert_eq!(w.wait(WAIT).unwrap(), Some(Wake::Data));
    }
}
