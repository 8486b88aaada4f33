//! Tailer behaviour tests: real files in temporary directories, `Tailer::poll`
//! driven directly with `glob_interval_ms = 0` (a scan at every poll). Tests
//! through `spawn` are in `tests_spawn.rs`, the model test in `tests_model.rs`.
//! Waiting is bounded by generous deadlines only.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::checkpoint::Checkpoints;

pub(super) const DEADLINE: Duration = Duration::from_secs(20);

pub(super) fn opts(dir: &Path, include: &[&str]) -> FileSourceOptions {
    let mut o = FileSourceOptions::new(
        include
            .iter()
            .map(|p| dir.join(p).to_string_lossy().into_owned())
            .collect(),
    );
    o.glob_interval_ms = 0;
    o.use_inotify = false;
    o
}

pub(super) fn tailer(o: FileSourceOptions) -> Tailer {
    Tailer::new("src", o, &Checkpoints::new(), false).unwrap()
}

/// Polls until nothing more comes for a few scans in a row (dead files need one).
pub(super) fn drain(t: &mut Tailer) -> Vec<RawLine> {
    let mut all = Vec::new();
    let mut quiet = 0;
    for _ in 0..10_000 {
        let mut out = Vec::new();
        let more = t.poll(&mut out, 100);
        if out.is_empty() && !more {
            quiet += 1;
            if quiet >= 4 {
                return all;
            }
        } else {
            quiet = 0;
        }
        all.extend(out);
    }
    panic!("tailer never went quiet");
}

pub(super) fn texts(lines: &[RawLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect()
}

pub(super) fn append(path: &Path, s: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(s.as_bytes()).unwrap();
}

/// Acknowledges every line: the checkpoints the pipeline would save.
pub(super) fn ack(source: &str, cp: &mut Checkpoints, lines: &[RawLine]) {
    for l in lines {
        cp.record_file(source, l.fingerprint, &l.path, l.end_offset, 0);
    }
}

/// A logger: keeps its file open in append mode, like syslog daemons do.
struct Writer {
    path: PathBuf,
    file: File,
}

impl Writer {
    fn open(path: &Path) -> Writer {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        Writer {
            path: path.to_path_buf(),
            file,
        }
    }
    fn line(&mut self, s: &str) {
        writeln!(self.file, "{s}").unwrap();
    }
    fn reopen(&mut self) {
        *self = Writer::open(&self.path.clone());
    }
}

/// Asserts every expected line was read exactly once, in order within each generation
/// (lines are named `g<gen>-<n>`).
fn assert_exactly_once(got: &[String], expected: &[String]) {
    let mut g = got.to_vec();
    let mut e = expected.to_vec();
    g.sort();
    e.sort();
    assert_eq!(g, e, "lines read (sorted) differ from lines written");
    let generation = |s: &str| s.split('-').next().map(str::to_owned);
    for gen in expected.iter().filter_map(|s| generation(s)) {
        let a: Vec<_> = got
            .iter()
            .filter(|s| generation(s) == Some(gen.clone()))
            .collect();
        let b: Vec<_> = expected
            .iter()
            .filter(|s| generation(s) == Some(gen.clone()))
            .collect();
        assert_eq!(a, b, "order within generation {gen}");
    }
}

fn rename_rotation(include: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut w = Writer::open(&log);
    w.line("g0-first");
    let mut t = tailer(opts(dir.path(), &[include]));
    let mut expected = vec!["g0-first".to_string()];
    let mut got = texts(&drain(&mut t));
    for gen in 0..5 {
        for i in 0..20 {
            let s = format!("g{gen}-{i}");
            w.line(&s);
            expected.push(s);
            if i == 10 {
                let mut out = Vec::new();
                t.poll(&mut out, 7);
                got.extend(texts(&out));
            }
        }
        // Rotate: shift old files, rename the live one, keep writing to it a little
        // (the daemon has not reopened yet), then reopen a new file.
        for k in (1..=gen).rev() {
            let from = dir.path().join(format!("app.log.{k}"));
            if from.exists() {
                fs::rename(&from, dir.path().join(format!("app.log.{}", k + 1))).unwrap();
            }
        }
        fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        let s = format!("g{gen}-late");
        w.line(&s);
        expected.push(s);
        w.reopen();
        let s = format!("g{}-first", gen + 1);
        w.line(&s);
        expected.push(s);
        let mut out = Vec::new();
        t.poll(&mut out, 1000);
        got.extend(texts(&out));
    }
    got.extend(texts(&drain(&mut t)));
    assert_exactly_once(&got, &expected);
}

#[test]
fn rename_rotation_loses_and_doubles_nothing_when_rotated_names_match_include() {
    rename_rotation("app.log*");
}

#[test]
fn rename_rotation_loses_and_doubles_nothing_when_rotated_names_do_not_match() {
    rename_rotation("app.log");
}

#[test]
fn copytruncate_reads_lines_written_before_the_copy_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut w = Writer::open(&log);
    let mut t = tailer(opts(dir.path(), &["app.log*"]));
    let mut expected = Vec::new();
    let mut got = Vec::new();
    for gen in 0..3 {
        for i in 0..10 {
            let s = format!("g{gen}-{i}");
            w.line(&s);
            expected.push(s);
            if i == 4 {
                got.extend(texts(&drain(&mut t)));
            }
        }
        // Lines 5..9 are not read yet when logrotate copies then truncates.
        if gen > 0 {
            fs::rename(
                dir.path().join("app.log.1"),
                dir.path().join(format!("app.log.{}", gen + 1)),
            )
            .unwrap();
        }
        fs::copy(&log, dir.path().join("app.log.1")).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        let mut out = Vec::new();
        t.poll(&mut out, 1000);
        let from_copy: Vec<_> = out
            .iter()
            .filter(|l| l.path.ends_with("app.log.1"))
            .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
            .collect();
        assert_eq!(
            from_copy,
            (5..10).map(|i| format!("g{gen}-{i}")).collect::<Vec<_>>(),
            "the unread lines come from the copy"
        );
        got.extend(texts(&out));
    }
    w.line("g9-last");
    expected.push("g9-last".into());
    got.extend(texts(&drain(&mut t)));
    assert_exactly_once(&got, &expected);
}

#[test]
fn copytruncate_detected_when_the_file_regrew_past_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut w = Writer::open(&log);
    w.line("a-0");
    let mut t = tailer(opts(dir.path(), &["app.log*"]));
    assert_eq!(texts(&drain(&mut t)), ["a-0"]);
    w.line("a-1");
    fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    // The new content is longer than the old position before the tailer looks again.
    let expected_new: Vec<String> = (0..5)
        .map(|i| format!("b-{i}-with-a-longer-text"))
        .collect();
    for s in &expected_new {
        w.line(s);
    }
    let got = texts(&drain(&mut t));
    let mut expected = vec!["a-1".to_string()];
    expected.extend(expected_new);
    assert_eq!(got, expected);
}

#[test]
fn file_deleted_while_open_is_read_to_its_end_including_a_final_unterminated_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "a\nb\n");
    let mut t = tailer(opts(dir.path(), &["*.log"]));
    assert_eq!(texts(&drain(&mut t)), ["a", "b"]);
    let mut w = OpenOptions::new().append(true).open(&log).unwrap();
    w.write_all(b"c\nfinal-no-newline").unwrap();
    fs::remove_file(&log).unwrap();
    let lines = drain(&mut t);
    assert_eq!(texts(&lines), ["c", "final-no-newline"]);
    assert_eq!(lines[1].end_offset, 22);
    assert_eq!(t.stats().files_watched, 0);
    // Nothing more is emitted later.
    assert!(drain(&mut t).is_empty());
}

#[test]
fn restart_resumes_exactly_at_the_acknowledged_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    for i in 0..10 {
        append(&log, &format!("l{i}\n"));
    }
    let mut t = tailer(opts(dir.path(), &["app.log"]));
    let lines = drain(&mut t);
    assert_eq!(lines.len(), 10);
    drop(t);
    let mut cp = Checkpoints::new();
    ack("src", &mut cp, &lines[..6]);
    append(&log, "l10\nl11\n");
    // first_start = true with read_from = end: the checkpoint wins.
    let mut o = opts(dir.path(), &["app.log"]);
    o.read_from = ReadFrom::End;
    let mut t = Tailer::new("src", o, &cp, true).unwrap();
    assert_eq!(
        texts(&drain(&mut t)),
        ["l6", "l7", "l8", "l9", "l10", "l11"]
    );
}

#[test]
fn restart_after_rotation_while_down_resumes_the_renamed_file_and_reads_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut w = Writer::open(&log);
    w.line("old-0");
    w.line("old-1");
    let mut t = tailer(opts(dir.path(), &["app.log*"]));
    let lines = drain(&mut t);
    drop(t);
    let mut cp = Checkpoints::new();
    ack("src", &mut cp, &lines);
    // While the agent is down: more lines, rotation, lines in the new file.
    w.line("old-2");
    fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    w.line("old-3");
    w.reopen();
    w.line("new-0");
    let mut t = Tailer::new("src", opts(dir.path(), &["app.log*"]), &cp, false).unwrap();
    let mut got = texts(&drain(&mut t));
    got.sort();
    assert_eq!(got, ["new-0", "old-2", "old-3"]);
}

#[test]
fn two_sources_on_one_file_keep_separate_positions() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "a\nb\nc\n");
    let mut first = Tailer::new(
        "first",
        opts(dir.path(), &["app.log"]),
        &Checkpoints::new(),
        false,
    )
    .unwrap();
    let lines = drain(&mut first);
    let mut cp = Checkpoints::new();
    ack("first", &mut cp, &lines[..2]);
    assert!(cp.files.keys().all(|k| k.starts_with("first/")));
    let mut again = Tailer::new("first", opts(dir.path(), &["app.log"]), &cp, false).unwrap();
    let mut second = Tailer::new("second", opts(dir.path(), &["app.log"]), &cp, false).unwrap();
    assert_eq!(texts(&drain(&mut again)), ["c"]);
    assert_eq!(texts(&drain(&mut second)), ["a", "b", "c"]);
}

#[test]
fn long_lines_are_truncated_flagged_and_skipped_to_the_next_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let huge = "y".repeat(300_000);
    append(
        &log,
        &format!("short\n{}\nafter\n{huge}\nend\n", "x".repeat(100)),
    );
    let mut o = opts(dir.path(), &["app.log"]);
    o.max_line_bytes = 16;
    let mut t = tailer(o);
    let lines = drain(&mut t);
    let got: Vec<_> = lines
        .iter()
        .map(|l| (String::from_utf8_lossy(&l.bytes).into_owned(), l.truncated))
        .collect();
    assert_eq!(
        got,
        [
            ("short".to_string(), false),
            ("x".repeat(16), true),
            ("after".to_string(), false),
            ("y".repeat(16), true),
            ("end".to_string(), false)
        ]
    );
    assert_eq!((lines[1].offset, lines[1].end_offset), (6, 107));
    assert_eq!(t.stats().lines_truncated, 2);
    assert_eq!(t.stats().lines_read, 5);
}

#[test]
fn partial_last_line_is_emitted_only_once_complete() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "one\ntw");
    let mut t = tailer(opts(dir.path(), &["app.log"]));
    let lines = drain(&mut t);
    assert_eq!(texts(&lines), ["one"]);
    assert_eq!(lines[0].end_offset, 4);
    assert!(drain(&mut t).is_empty());
    append(&log, "o\r\nthree\n");
    let lines = drain(&mut t);
    assert_eq!(texts(&lines), ["two", "three"]);
    assert_eq!((lines[0].offset, lines[0].end_offset), (4, 9));
}

#[test]
fn first_line_not_complete_is_not_read_until_it_is_then_read_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "hello wor");
    let mut o = opts(dir.path(), &["app.log"]);
    o.read_from = ReadFrom::End;
    let mut t = Tailer::new("src", o, &Checkpoints::new(), true).unwrap();
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.stats().files_watched, 0);
    append(&log, "ld\nsecond\n");
    assert_eq!(texts(&drain(&mut t)), ["hello world", "second"]);
}

#[test]
fn recycled_inode_with_new_content_is_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "first-file-0\nfirst-file-1\n");
    let mut t = tailer(opts(dir.path(), &["app.log"]));
    let lines = drain(&mut t);
    assert_eq!(lines.len(), 2);
    fs::remove_file(&log).unwrap();
    assert!(drain(&mut t).is_empty());
    // Same path, likely the same inode number, different content: read from 0.
    append(&log, "second-0\nsecond-1\nsecond-2\n");
    assert_eq!(texts(&drain(&mut t)), ["second-0", "second-1", "second-2"]);

    // And after a restart whose checkpoint is the first file's position.
    let mut cp = Checkpoints::new();
    ack("src", &mut cp, &lines);
    fs::remove_file(&log).unwrap();
    append(&log, "third-0\nthird-1\nthird-2\nthird-3\n");
    let mut t = Tailer::new("src", opts(dir.path(), &["app.log"]), &cp, false).unwrap();
    assert_eq!(
        texts(&drain(&mut t)),
        ["third-0", "third-1", "third-2", "third-3"]
    );
}

#[test]
fn read_from_end_applies_at_first_start_only_and_new_files_start_at_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("old.log"), "x1\nx2\npart");
    let mut o = opts(dir.path(), &["*.log"]);
    o.read_from = ReadFrom::End;
    let mut t = Tailer::new("src", o.clone(), &Checkpoints::new(), true).unwrap();
    assert!(drain(&mut t).is_empty());
    append(&dir.path().join("old.log"), "ial\nx3\n");
    append(&dir.path().join("new.log"), "n1\nn2\n");
    let mut got = texts(&drain(&mut t));
    got.sort();
    assert_eq!(got, ["n1", "n2", "partial", "x3"]);

    // Not a first start (a checkpoint file existed): unknown files start at 0.
    let mut t = Tailer::new("src", o, &Checkpoints::new(), false).unwrap();
    assert_eq!(drain(&mut t).len(), 6);
}

#[test]
fn exclude_matches_full_path_and_file_name() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), "keep\n");
    append(&dir.path().join("auth.log.2.gz"), "gz\n");
    append(&dir.path().join("b.log.1"), "rotated\n");
    fs::create_dir(dir.path().join("sub")).unwrap();
    append(&dir.path().join("sub/c.log"), "sub\n");
    let mut o = opts(dir.path(), &["*", "sub/*"]);
    o.exclude = vec![
        "*.gz".into(),
        "b.log.*".into(),
        format!("{}/sub/*", dir.path().display()),
    ];
    let mut t = tailer(o);
    assert_eq!(texts(&drain(&mut t)), ["keep"]);
}

#[test]
fn invalid_patterns_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), &["[oops"]);
    let err = Tailer::new("s", o.clone(), &Checkpoints::new(), false).unwrap_err();
    assert!(err.to_string().contains("[oops"), "{err}");
    o.include = vec!["/x".into()];
    o.exclude = vec!["{a".into()];
    let err = Tailer::new("s", o.clone(), &Checkpoints::new(), false).unwrap_err();
    assert!(err.to_string().contains("{a"), "{err}");
    o.exclude.clear();
    o.multiline = Some(MultilineOptions {
        start_pattern: "(unclosed".into(),
        timeout_ms: 1,
        max_lines: 5,
    });
    let err = Tailer::new("s", o, &Checkpoints::new(), false).unwrap_err();
    assert!(err.to_string().contains("(unclosed"), "{err}");
}

#[test]
fn invalid_utf8_passes_through_as_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    fs::write(&log, b"\xff\xfe ok\n\x80\n").unwrap();
    let mut t = tailer(opts(dir.path(), &["app.log"]));
    let lines = drain(&mut t);
    let bytes: Vec<&[u8]> = lines.iter().map(|l| l.bytes.as_slice()).collect();
    assert_eq!(bytes, [&b"\xff\xfe ok"[..], &b"\x80"[..]]);
}

fn multiline_opts(dir: &Path, timeout_ms: u64, max_lines: usize) -> FileSourceOptions {
    let mut o = opts(dir, &["app.log"]);
    o.multiline = Some(MultilineOptions {
        start_pattern: r"^\d".into(),
        timeout_ms,
        max_lines,
    });
    o
}

#[test]
fn multiline_joins_continuation_lines_and_flushes_at_next_start_and_max_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "1 boom\n  at a\n  at b\n2 next\n  c1\n  c2\n  c3\n");
    let mut t = tailer(multiline_opts(dir.path(), 3_600_000, 3));
    let lines = drain(&mut t);
    let got: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                String::from_utf8_lossy(&l.bytes).into_owned(),
                l.lines_joined,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("1 boom\n  at a\n  at b".to_string(), 3),
            ("2 next\n  c1\n  c2".to_string(), 3)
        ]
    );
    assert_eq!((lines[0].offset, lines[0].end_offset), (0, 21));
    assert_eq!(lines[1].end_offset, 38);
    // "  c3" started an event that waits for more (timeout is an hour).
    assert_eq!(t.stats().lines_read, 7);
}

#[test]
fn multiline_event_is_flushed_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "1 boom\n  at a\n");
    let mut t = tailer(multiline_opts(dir.path(), 50, 100));
    let start = Instant::now();
    let mut lines = Vec::new();
    while lines.is_empty() && start.elapsed() < DEADLINE {
        t.poll(&mut lines, 100);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(texts(&lines), ["1 boom\n  at a"]);
    assert_eq!(lines[0].lines_joined, 2);
    assert_eq!(lines[0].end_offset, 14);
}

#[test]
fn unreadable_entry_is_reported_and_retried_while_other_files_keep_going() {
    let dir = tempfile::tempdir().unwrap();
    // A dangling symlink cannot be opened, not even by root.
    let target = dir.path().join("target.txt");
    std::os::unix::fs::symlink(&target, dir.path().join("bad.log")).unwrap();
    append(&dir.path().join("good.log"), "g1\n");
    let mut t = tailer(opts(dir.path(), &["*.log"]));
    assert_eq!(texts(&drain(&mut t)), ["g1"]);
    assert!(t.stats().read_errors > 0);
    append(&dir.path().join("good.log"), "g2\n");
    assert_eq!(texts(&drain(&mut t)), ["g2"]);
    // Retried at later scans: once the target exists it is read.
    append(&target, "now readable\n");
    assert_eq!(texts(&drain(&mut t)), ["now readable"]);
}

#[test]
fn permission_denied_is_reported_and_retried() {
    // Root reads everything whatever the permissions.
    if effective_uid() == 0 {
        eprintln!("skipped: running as root, permissions are not enforced");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.log");
    append(&secret, "s1\n");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    append(&dir.path().join("good.log"), "g1\n");
    let mut t = tailer(opts(dir.path(), &["*.log"]));
    assert_eq!(texts(&drain(&mut t)), ["g1"]);
    assert!(t.stats().read_errors > 0);
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(texts(&drain(&mut t)), ["s1"]);
}

/// The effective user id, read from /proc (`libc::geteuid` would need `unsafe`).
fn effective_uid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .unwrap_or(0)
}

#[test]
fn one_busy_file_does_not_starve_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = String::new();
    for i in 0..50_000 {
        big.push_str(&format!("big-{i}\n"));
    }
    append(&dir.path().join("big.log"), &big);
    append(&dir.path().join("small.log"), "s1\ns2\ns3\n");
    let mut t = tailer(opts(dir.path(), &["*.log"]));
    let mut out = Vec::new();
    assert!(t.poll(&mut out, 100), "more is available");
    assert_eq!(out.len(), 100);
    let small: Vec<_> = texts(&out)
        .into_iter()
        .filter(|s| s.starts_with('s'))
        .collect();
    assert_eq!(small, ["s1", "s2", "s3"]);
    let rest = drain(&mut t);
    assert_eq!(rest.len() + out.len(), 50_003);
}

#[test]
fn more_files_than_max_open_files_are_all_read() {
    let dir = tempfile::tempdir().unwrap();
    for f in 0..6 {
        append(&dir.path().join(format!("f{f}.log")), &format!("f{f}-0\n"));
    }
    let mut o = opts(dir.path(), &["*.log"]);
    o.max_open_files = 2;
    let mut t = tailer(o);
    assert_eq!(drain(&mut t).len(), 6);
    for round in 1..3 {
        for f in 0..6 {
            append(
                &dir.path().join(format!("f{f}.log")),
                &format!("f{f}-{round}\n"),
            );
        }
        let mut got = texts(&drain(&mut t));
        got.sort();
        let expected: Vec<_> = (0..6).map(|f| format!("f{f}-{round}")).collect();
        assert_eq!(got, expected);
        assert!(t.files.values().filter(|f| f.reader.is_some()).count() <= 2);
    }
}

#[test]
fn files_older_than_ignore_older_secs_are_skipped_until_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("old.log");
    append(&log, "ancient\n");
    let f = OpenOptions::new().append(true).open(&log).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    drop(f);
    let mut o = opts(dir.path(), &["*.log"]);
    o.ignore_older_secs = Some(3600);
    let mut t = tailer(o);
    assert!(drain(&mut t).is_empty());
    append(&log, "fresh\n");
    assert_eq!(texts(&drain(&mut t)), ["fresh"]);
}
