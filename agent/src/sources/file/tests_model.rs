//! Model test: random sequences of writes, partial writes, rename rotations,
//! copytruncate rotations, deletions of fully read rotated files, polls with
//! random budgets and restarts from the acknowledged checkpoints. Whatever the
//! sequence, every complete line written is read exactly once (deleting and
//! recreating the live file included).
//!
//! The model keeps, for the live file and each rotated file, the lines it
//! holds. Rotated files are deleted only once all their lines were read (a
//! file deleted before it was ever opened is lost by nature). Every line is
//! unique, so first lines (fingerprints) never collide by accident.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::path::Path;

use proptest::prelude::*;

use super::tests::{ack, opts, texts};
use super::{RawLine, Tailer};
use crate::checkpoint::Checkpoints;

#[derive(Debug, Clone)]
enum Action {
    /// Complete lines, with padding lengths.
    Write(Vec<usize>),
    /// The first part of a line; the next write or rotation completes it.
    WritePartial(usize),
    /// Rename app.log to app.log.1 (shifting older ones), write `late` lines to the
    /// renamed file, then reopen app.log.
    RotateRename {
        late: usize,
    },
    /// Copy app.log to app.log.1 (shifting older ones), then truncate app.log.
    CopyTruncate,
    /// Delete the oldest rotated file if all its lines were read.
    DeleteOldest,
    /// Delete app.log and create it again (its inode number is likely reused) if all
    /// its lines were read.
    RecreateLive,
    Poll(usize),
    /// Drop the tailer and start a new one from checkpoints of everything read.
    Restart,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => prop::collection::vec(0usize..40, 1..5).prop_map(Action::Write),
        1 => (0usize..30).prop_map(Action::WritePartial),
        1 => (0usize..3).prop_map(|late| Action::RotateRename { late }),
        1 => Just(Action::CopyTruncate),
        1 => Just(Action::DeleteOldest),
        1 => Just(Action::RecreateLive),
        3 => (1usize..50).prop_map(Action::Poll),
        1 => Just(Action::Restart),
    ]
}

struct Model<'a> {
    dir: &'a Path,
    counter: usize,
    live: Vec<String>,
    rotated: Vec<Vec<String>>,
    written: Vec<String>,
    partial: Option<String>,
    writer: fs::File,
}

impl Model<'_> {
    fn path(&self, k: usize) -> std::path::PathBuf {
        match k {
            0 => self.dir.join("app.log"),
            k => self.dir.join(format!("app.log.{k}")),
        }
    }

    fn reopen(&mut self) {
        self.writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(0))
            .unwrap();
    }

    fn raw_write(&mut self, s: &str) {
        use std::io::Write;
        self.writer.write_all(s.as_bytes()).unwrap();
    }

    fn next_line(&mut self, pad: usize) -> String {
        self.counter += 1;
        format!("L{}-{}", self.counter, "p".repeat(pad))
    }

    fn complete_partial(&mut self) {
        if let Some(line) = self.partial.take() {
            let half = line.len() / 2;
            self.raw_write(&format!("{}\n", &line[half..]));
            self.live.push(line.clone());
            self.written.push(line);
        }
    }

    fn write(&mut self, pads: &[usize]) {
        self.complete_partial();
        for &pad in pads {
            let line = self.next_line(pad);
            self.raw_write(&format!("{line}\n"));
            self.live.push(line.clone());
            self.written.push(line);
        }
    }

    fn shift_rotated(&mut self) {
        for k in (1..=self.rotated.len()).rev() {
            fs::rename(self.path(k), self.path(k + 1)).unwrap();
        }
    }
}

fn run(actions: Vec<Action>, fingerprint_bytes: usize, max_open_files: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), &["app.log*"]);
    o.fingerprint_bytes = fingerprint_bytes;
    o.max_open_files = max_open_files;
    let writer = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("app.log"))
        .unwrap();
    let mut m = Model {
        dir: dir.path(),
        counter: 0,
        live: Vec::new(),
        rotated: Vec::new(),
        written: Vec::new(),
        partial: None,
        writer,
    };
    let mut tailer = Tailer::new("model", o.clone(), &Checkpoints::new(), true).unwrap();
    let mut read: Vec<RawLine> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let poll = |t: &mut Tailer, max: usize, read: &mut Vec<RawLine>, seen: &mut HashSet<String>| {
        let mut out = Vec::new();
        let more = t.poll(&mut out, max);
        assert!(out.len() <= max, "poll pushed more than max_lines");
        for s in texts(&out) {
            assert!(seen.insert(s.clone()), "line read twice: {s}");
        }
        read.extend(out);
        more
    };
    for a in actions {
        match a {
            Action::Write(pads) => m.write(&pads),
            Action::WritePartial(pad) => {
                m.complete_partial();
                let line = m.next_line(pad + 2);
                let half = line.len() / 2;
                m.raw_write(&line[..half]);
                m.partial = Some(line);
            }
            Action::RotateRename { late } => {
                m.complete_partial();
                m.shift_rotated();
                fs::rename(m.path(0), m.path(1)).unwrap();
                let mut old = std::mem::take(&mut m.live);
                for _ in 0..late {
                    let line = m.next_line(3);
                    m.raw_write(&format!("{line}\n"));
                    old.push(line.clone());
                    m.written.push(line);
                }
                m.rotated.insert(0, old);
                m.reopen();
            }
            Action::CopyTruncate => {
                m.complete_partial();
                m.shift_rotated();
                fs::copy(m.path(0), m.path(1)).unwrap();
                OpenOptions::new()
                    .write(true)
                    .open(m.path(0))
                    .unwrap()
                    .set_len(0)
                    .unwrap();
                let old = std::mem::take(&mut m.live);
                m.rotated.insert(0, old);
            }
            Action::DeleteOldest => {
                if let Some(oldest) = m.rotated.last() {
                    if oldest.iter().all(|l| seen.contains(l)) {
                        fs::remove_file(m.path(m.rotated.len())).unwrap();
                        m.rotated.pop();
                    }
                }
            }
            Action::RecreateLive => {
                if m.partial.is_none() && m.live.iter().all(|l| seen.contains(l)) {
                    fs::remove_file(m.path(0)).unwrap();
                    m.live.clear();
                    m.reopen();
                }
            }
            Action::Poll(max) => {
                poll(&mut tailer, max, &mut read, &mut seen);
            }
            Action::Restart => {
                let mut cp = Checkpoints::new();
                ack("model", &mut cp, &read);
                tailer = Tailer::new("model", o.clone(), &cp, false).unwrap();
            }
        }
    }
    m.complete_partial();
    let mut quiet = 0;
    for _ in 0..100_000 {
        let before = read.len();
        let more = poll(&mut tailer, 1000, &mut read, &mut seen);
        if read.len() == before && !more {
            quiet += 1;
            if quiet == 4 {
                break;
            }
        } else {
            quiet = 0;
        }
    }
    let mut got = texts(&read);
    got.sort();
    let mut expected = m.written.clone();
    expected.sort();
    let missing: Vec<_> = expected.iter().filter(|l| !seen.contains(*l)).collect();
    assert!(missing.is_empty(), "lines never read: {missing:?}");
    assert_eq!(got, expected);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_line_is_read_exactly_once(
        actions in prop::collection::vec(action(), 1..60),
        fingerprint_bytes in prop_oneof![Just(16usize), Just(1024usize)],
        max_open_files in prop_oneof![Just(1usize), Just(2usize), Just(1024usize)],
    ) {
        run(actions, fingerprint_bytes, max_open_files);
    }
}
