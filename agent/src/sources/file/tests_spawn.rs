//! Tests through `spawn`: the tailer on its own thread, woken by inotify or by
//! polling, sending batches on a tokio channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests::{append, opts, texts, DEADLINE};
use super::*;
use crate::checkpoint::Checkpoints;

fn recv_lines(rx: &mut tokio::sync::mpsc::Receiver<Vec<RawLine>>, n: usize) -> Vec<String> {
    recv_lines_within(rx, n, DEADLINE)
}

fn recv_lines_within(
    rx: &mut tokio::sync::mpsc::Receiver<Vec<RawLine>>,
    n: usize,
    wait: Duration,
) -> Vec<String> {
    recv_batches_within(rx, n, wait).concat()
}

/// The batches received until they hold `n` lines or `wait` passed, as texts.
fn recv_batches_within(
    rx: &mut tokio::sync::mpsc::Receiver<Vec<RawLine>>,
    n: usize,
    wait: Duration,
) -> Vec<Vec<String>> {
    let start = Instant::now();
    let (mut got, mut lines) = (Vec::new(), 0);
    while lines < n && start.elapsed() < wait {
        match rx.try_recv() {
            Ok(batch) => {
                lines += batch.len();
                got.push(texts(&batch));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    got
}

/// A tailer thread that only inotify can wake: polling and globbing are an hour apart.
struct InotifyOnly {
    rx: tokio::sync::mpsc::Receiver<Vec<RawLine>>,
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

impl InotifyOnly {
    fn spawn(mut o: FileSourceOptions, capacity: usize) -> InotifyOnly {
        o.use_inotify = true;
        o.poll_interval_ms = 3_600_000;
        o.glob_interval_ms = 3_600_000;
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        let stop = Arc::new(AtomicBool::new(false));
        let handle = spawn("src", o, &Checkpoints::new(), true, tx, Arc::clone(&stop)).unwrap();
        InotifyOnly { rx, stop, handle }
    }

    /// Stops the thread: sets `stop`, then writes to `path` so that it wakes and sees it.
    fn stop(self, path: &Path) {
        self.stop.store(true, Ordering::Relaxed);
        append(path, "wake\n");
        drop(self.rx);
        self.handle.join().unwrap();
    }
}

#[test]
fn spawn_with_inotify_wakes_on_new_files_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = InotifyOnly::spawn(opts(dir.path(), &["*.log"]), 4);
    let rx = &mut t.rx;
    // Give the thread time to set up its watch: retry creating files until one is seen.
    let start = Instant::now();
    let mut got = Vec::new();
    let mut n = 0;
    while got.is_empty() && start.elapsed() < DEADLINE {
        append(&dir.path().join(format!("new{n}.log")), "hello\n");
        n += 1;
        got = recv_lines_within(rx, 1, Duration::from_millis(200));
        if got.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(
        got.iter().all(|s| s == "hello") && !got.is_empty(),
        "{got:?}"
    );
    append(&dir.path().join("new0.log"), "more\n");
    let got = recv_lines(rx, 1);
    assert!(got.contains(&"more".to_string()), "{got:?}");
    t.stop(&dir.path().join("new0.log"));
}

#[test]
fn spawn_with_inotify_finds_files_in_new_subdirectories() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = InotifyOnly::spawn(opts(dir.path(), &["**/*.log"]), 4);
    let rx = &mut t.rx;
    // The thread sets its watches up first: retry in new directories until a line is seen.
    let start = Instant::now();
    let mut got = Vec::new();
    let mut n = 0;
    while got.is_empty() && start.elapsed() < DEADLINE {
        let sub = dir.path().join(format!("app{n}/2026"));
        std::fs::create_dir_all(&sub).unwrap();
        // Distinct first lines: files with the same first line are one file to the tailer.
        append(&sub.join("x.log"), &format!("deep {n}\n"));
        n += 1;
        got = recv_lines_within(rx, n, Duration::from_millis(300));
    }
    assert!(
        !got.is_empty() && got.iter().all(|l| l.starts_with("deep ")),
        "{got:?}"
    );
    // Every new subdirectory is watched now: a write to a file in it wakes the tailer.
    let got = recv_lines_within(rx, n - got.len(), Duration::from_secs(2));
    assert!(got.iter().all(|l| l.starts_with("deep ")), "{got:?}");
    let sub = dir.path().join(format!("app{}/2026", n - 1));
    append(&sub.join("x.log"), "again\n");
    assert_eq!(recv_lines(rx, 1), ["again"]);
    t.stop(&sub.join("x.log"));
}

#[test]
fn spawn_without_inotify_polls() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), "a1\n");
    let mut o = opts(dir.path(), &["*.log"]);
    o.poll_interval_ms = 10;
    o.glob_interval_ms = 10;
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let stop = Arc::new(AtomicBool::new(false));
    let t = Tailer::new("src", o, &Checkpoints::new(), false).unwrap();
    let stats = t.stats_handle();
    let handle = spawn_tailer(t, tx, Arc::clone(&stop), None).unwrap();
    assert_eq!(recv_lines(&mut rx, 1), ["a1"]);
    append(&dir.path().join("b.log"), "b1\n");
    assert_eq!(recv_lines(&mut rx, 1), ["b1"]);
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert_eq!(stats.get().lines_read, 2);
    assert_eq!(stats.get().files_watched, 2);
}

#[test]
fn writes_close_together_are_read_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, "first\n");
    let mut o = opts(dir.path(), &["*.log"]);
    o.min_read_interval_ms = 1_000;
    let mut t = InotifyOnly::spawn(o, 64);
    let rx = &mut t.rx;
    assert_eq!(recv_lines(rx, 1), ["first"]);
    // Five writes 10 ms apart, within the interval: the first one wakes the tailer, which
    // waits out the rest of the interval and reads them together. Read at every
    // notification, they would come in up to five batches.
    for i in 0..5 {
        append(&path, &format!("w{i}\n"));
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = recv_batches_within(rx, 5, DEADLINE);
    let (lines, batches) = (got.concat(), got.len());
    assert_eq!(lines, ["w0", "w1", "w2", "w3", "w4"]);
    assert!(batches <= 2, "{batches} batches for five close writes");
    t.stop(&path);
}
