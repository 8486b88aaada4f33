//! The syslog codec against Loghub's Linux and OpenSSH samples and their ground truth.
//!
//! Every line of `shared/data/loghub/{Linux,OpenSSH}/*_2k.log` is decoded with the syslog codec
//! and checked against the structured CSV beside it (hostname, pid, program name, message).
//! The data lives outside the repository (`../../../shared/data` from this crate); when it is
//! absent, as in users' clones, the test says so and passes.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use vigie_event::flags;
use vigie_parse::{decode, Codec, Context};

/// One Loghub sample and where its CSV keeps each ground-truth field (the column names differ:
/// in OpenSSH's CSV the hostname is the column named "Component").
struct Sample {
    dir: &'static str,
    log: &'static str,
    host_col: &'static str,
    pid_col: &'static str,
    /// The program name column, or the name every line has when the CSV does not record it.
    name: Name,
}

enum Name {
    Column(&'static str),
    Always(&'static str),
}

const SAMPLES: [Sample; 2] = [
    Sample {
        dir: "Linux",
        log: "Linux_2k.log",
        host_col: "Level",
        pid_col: "PID",
        name: Name::Column("Component"),
    },
    Sample {
        dir: "OpenSSH",
        log: "OpenSSH_2k.log",
        host_col: "Component",
        pid_col: "Pid",
        name: Name::Always("sshd"),
    },
];

fn loghub_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/loghub")
}

/// Splits one CSV record (RFC 4180 quoting, no newlines inside fields).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Whether a line starts like a BSD syslog line: `Mmm dd HH:MM:SS `.
fn syslog_shaped(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 16
        && b[..3].iter().all(u8::is_ascii_alphabetic)
        && b[3] == b' '
        && (b[4] == b' ' || b[4].is_ascii_digit())
        && b[5].is_ascii_digit()
        && b[6] == b' '
        && b[9] == b':'
        && b[12] == b':'
        && b[15] == b' '
}

#[test]
fn loghub_syslog_matches_ground_truth() {
    let root = loghub_dir();
    if !root.is_dir() {
        eprintln!(
            "SKIPPED loghub_syslog_matches_ground_truth: {} not found (the shared test data is \
             not part of the repository)",
            root.display()
        );
        return;
    }
    let now = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut ctx = Context::new(now);
    ctx.host_name = Some("reader".to_owned());
    let mut problems = Vec::new();
    let mut checked_names = 0;
    for sample in &SAMPLES {
        let log_path = root.join(sample.dir).join(sample.log);
        let raw = fs::read(&log_path).unwrap();
        let csv_path = root
            .join(sample.dir)
            .join(format!("{}_structured.csv", sample.log));
        let csv = fs::read_to_string(&csv_path).unwrap();
        let mut rows = csv.lines();
        let header = csv_fields(rows.next().unwrap());
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let (line_col, host_col, pid_col, content_col) = (
            col("LineId"),
            col(sample.host_col),
            col(sample.pid_col),
            col("Content"),
        );
        let name_col = match sample.name {
            Name::Column(c) => Some(col(c)),
            Name::Always(_) => None,
        };
        let rows: Vec<Vec<String>> = rows.map(csv_fields).collect();
        let lines: Vec<&[u8]> = raw
            .strip_suffix(b"\n")
            .unwrap_or(&raw)
            .split(|b| *b == b'\n')
            .collect();
        assert_eq!(
            lines.len(),
            rows.len(),
            "{}: lines and CSV rows differ",
            sample.log
        );

        let mut shaped = 0;
        for (i, (line, row)) in lines.iter().zip(&rows).enumerate() {
            let at = format!("{}:{}", sample.log, i + 1);
            assert_eq!(row[line_col], (i + 1).to_string(), "{at}: CSV out of order");
            let ev = decode(Codec::Syslog, line, false, &ctx);
            let text = String::from_utf8_lossy(line);
            if !syslog_shaped(&text) {
                continue;
            }
            shaped += 1;
            if ev.has_flag(flags::PARSE_FAILURE) || ev.has_flag(flags::TIMESTAMP_MISSING) {
                problems.push(format!("{at}: not parsed: {text}"));
                continue;
            }
            if ev.get_str("host.name") != Some(row[host_col].as_str()) {
                problems.push(format!(
                    "{at}: host {:?} != {:?}",
                    ev.get_str("host.name"),
                    row[host_col]
                ));
            }
            let want_name = match (name_col, &sample.name) {
                (Some(c), _) => row[c].as_str(),
                (None, Name::Always(n)) => n,
                (None, Name::Column(_)) => unreachable!(),
            };
            // A few Linux lines have a "component" that is not a syslog tag ("syslogd 1.4.1",
            // "-- root[2421]"); Loghub split those by hand. Only real tags are compared.
            if want_name.contains(' ') {
                continue;
            }
            checked_names += 1;
            let want_pid = row[pid_col].parse::<i64>().ok();
            if ev.get_i64("process.pid") != want_pid {
                problems.push(format!(
                    "{at}: pid {:?} != {want_pid:?}",
                    ev.get("process.pid")
                ));
            }
            if ev.get_str("process.name") != Some(want_name) {
                problems.push(format!(
                    "{at}: name {:?} != {want_name:?}",
                    ev.get_str("process.name")
                ));
            }
            let message = ev.get_str("message").unwrap_or_default();
            if message.trim() != row[content_col].trim() {
                problems.push(format!(
                    "{at}: message {message:?} != {:?}",
                    row[content_col]
                ));
            }
        }
        assert!(
            shaped * 100 >= lines.len() * 99,
            "{}: only {shaped} syslog-shaped lines",
            sample.log
        );
    }
    assert!(
        checked_names > 3_900,
        "too few names compared: {checked_names}"
    );
    assert!(
        problems.is_empty(),
        "{} mismatch(es) with Loghub's ground truth, first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
