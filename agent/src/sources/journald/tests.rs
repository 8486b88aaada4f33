//! Tests of the journald source against a fake journalctl.
//!
//! The fake is a shell script: on its N-th run it records its arguments in
//! `argv.N` and its pid in `pid.N`, prints `stderr.N` to stderr and `lines.N`
//! to stdout, then exits with the code in `exit.N` (0 by default), or keeps
//! running when the file `hold` exists.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::*;

/// Bounds every wait; never reached when the code works.
const PATIENCE: Duration = Duration::from_secs(60);

const FAKE_JOURNALCTL: &str = r#"#!/bin/sh
DIR="$(dirname "$0")"
n=$(cat "$DIR/count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$DIR/count"
printf '%s\n' "$@" > "$DIR/argv.$n"
echo "$$" > "$DIR/pid.$n"
[ -f "$DIR/stderr.$n" ] && cat "$DIR/stderr.$n" >&2
[ -f "$DIR/lines.$n" ] && cat "$DIR/lines.$n"
[ -f "$DIR/exit.$n" ] && exit "$(cat "$DIR/exit.$n")"
[ -f "$DIR/hold" ] && exec sleep 600
exit 0
"#;

struct Fake {
    dir: TempDir,
}

impl Fake {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journalctl");
        fs::write(&path, FAKE_JOURNALCTL).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("journalctl")
    }

    fn write(&self, name: &str, text: &str) {
        fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn lines(&self, run: usize, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        self.write(&format!("lines.{run}"), &text);
    }

    fn argv(&self, run: usize) -> Vec<String> {
        read_lines(&self.dir.path().join(format!("argv.{run}")))
    }

    fn opts(&self) -> JournaldOptions {
        JournaldOptions {
            journalctl_path: self.path(),
            ..JournaldOptions::default()
        }
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One journalctl JSON line, fields in journalctl's order (cursor first).
fn entry(cursor: &str, message: &str) -> String {
    format!(
        concat!(
            r#"{{"__CURSOR":{},"__REALTIME_TIMESTAMP":"1795684442000000","#,
            r#""__MONOTONIC_TIMESTAMP":"8123456","_BOOT_ID":"0b7c5a6b4c2d4e8f9a1b2c3d4e5f6a7b","#,
            r#""PRIORITY":"6","SYSLOG_IDENTIFIER":"sshd","_PID":"4242","MESSAGE":{}}}"#
        ),
        json!(cursor),
        json!(message)
    )
}

/// A running source and the ends of its channels.
struct Running {
    rx: mpsc::Receiver<Vec<JournalRecord>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), JournaldError>>,
}

fn start(opts: JournaldOptions, cursor: Option<&str>, capacity: usize) -> Running {
    let (tx, rx) = mpsc::channel(capacity);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(run(
        "sys".to_owned(),
        opts,
        cursor.map(str::to_owned),
        Some("agent-host".to_owned()),
        tx,
        shutdown,
    ));
    Running { rx, stop, task }
}

impl Running {
    /// Receives exactly `n` records (in as many batches as they come).
    async fn records(&mut self, n: usize) -> Vec<JournalRecord> {
        let mut out = Vec::new();
        while out.len() < n {
            let batch = tokio::time::timeout(PATIENCE, self.rx.recv())
                .await
                .expect("records within the patience bound")
                .expect("source still running");
            assert!(!batch.is_empty(), "batches are never empty");
            out.extend(batch);
        }
        assert_eq!(out.len(), n, "no more records than expected");
        out
    }

    async fn stop(self) -> Result<(), JournaldError> {
        self.stop.send(true).unwrap();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("source stops within the patience bound")
            .unwrap()
    }
}

fn cursors(records: &[JournalRecord]) -> Vec<&str> {
    records.iter().map(|r| r.cursor.as_str()).collect()
}

#[tokio::test]
async fn resumes_after_cursor_with_units_and_boot() {
    let fake = Fake::new();
    fake.lines(1, &[entry("c-1", "first"), entry("c-2", "second")]);
    let opts = JournaldOptions {
        units: vec!["ssh.service".to_owned(), "cron.service".to_owned()],
        current_boot_only: true,
        ..fake.opts()
    };
    let mut running = start(opts, Some("s=abc;i=5"), 8);
    let records = running.records(2).await;
    assert_eq!(cursors(&records), ["c-1", "c-2"]);
    assert_eq!(records[0].event.get_str("message"), Some("first"));
    assert_eq!(records[1].event.get_str("process.name"), Some("sshd"));
    assert_eq!(records[1].event.get_str("host.name"), Some("agent-host"));
    running.stop().await.unwrap();

    let argv = fake.argv(1);
    for expected in [
        "--output=json",
        "--follow",
        "--no-pager",
        "--after-cursor=s=abc;i=5",
        "-b",
    ] {
        assert!(argv.iter().any(|a| a == expected), "{expected} in {argv:?}");
    }
    let units: Vec<_> = argv
        .windows(2)
        .filter(|w| w[0] == "-u")
        .map(|w| w[1].as_str())
        .collect();
    assert_eq!(units, ["ssh.service", "cron.service"]);
    assert!(!argv.iter().any(|a| a.starts_with("--lines")));
}

#[tokio::test]
async fn start_position_without_cursor_follows_read_from() {
    for (read_from, wanted, unwanted) in [
        (JournaldReadFrom::End, "--lines=0", "--no-tail"),
        (JournaldReadFrom::Beginning, "--no-tail", "--lines=0"),
    ] {
        let fake = Fake::new();
        fake.lines(1, &[entry("c-1", "x")]);
        let opts = JournaldOptions {
            read_from,
            ..fake.opts()
        };
        let mut running = start(opts, None, 8);
        running.records(1).await;
        running.stop().await.unwrap();
        let argv = fake.argv(1);
        assert!(argv.iter().any(|a| a == wanted), "{wanted} in {argv:?}");
        assert!(
            !argv.iter().any(|a| a == unwanted),
            "{unwanted} in {argv:?}"
        );
        assert!(!argv.iter().any(|a| a.starts_with("--after-cursor")));
        assert!(!argv.iter().any(|a| a == "-u" || a == "-b"));
    }
}

#[tokio::test]
async fn missing_journalctl_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-journalctl");
    let opts = JournaldOptions {
        journalctl_path: path.clone(),
        ..JournaldOptions::default()
    };
    let running = start(opts, None, 8);
    let result = tokio::time::timeout(PATIENCE, running.task)
        .await
        .expect("ends quickly")
        .unwrap();
    let err = result.expect_err("a missing journalctl is an error");
    assert!(matches!(err, JournaldError::JournalctlNotFound { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "journald source 'sys': journalctl not found at {}; install systemd or remove this source",
            path.display()
        )
    );
}

#[tokio::test]
async fn exited_journalctl_is_restarted_after_the_last_cursor() {
    let fake = Fake::new();
    fake.lines(1, &[entry("c-1", "one"), entry("c-2", "two")]);
    fake.lines(2, &[entry("c-3", "three")]);
    let mut running = start(fake.opts(), None, 8);
    let records = running.records(3).await;
    assert_eq!(cursors(&records), ["c-1", "c-2", "c-3"]);
    running.stop().await.unwrap();
    assert!(fake.argv(1).iter().any(|a| a == "--lines=0"));
    let second = fake.argv(2);
    assert!(
        second.iter().any(|a| a == "--after-cursor=c-2"),
        "{second:?}"
    );
    assert!(!second.iter().any(|a| a == "--lines=0"));
}

#[tokio::test]
async fn rejected_cursor_falls_back_to_read_from() {
    let fake = Fake::new();
    fake.write("stderr.1", "Failed to seek to cursor: Invalid argument\n");
    fake.write("exit.1", "1");
    fake.lines(2, &[entry("c-9", "after fallback")]);
    let opts = JournaldOptions {
        read_from: JournaldReadFrom::Beginning,
        ..fake.opts()
    };
    let mut running = start(opts, Some("garbage"), 8);
    let records = running.records(1).await;
    assert_eq!(cursors(&records), ["c-9"]);
    running.stop().await.unwrap();
    assert!(fake.argv(1).iter().any(|a| a == "--after-cursor=garbage"));
    let second = fake.argv(2);
    assert!(
        !second.iter().any(|a| a.starts_with("--after-cursor")),
        "{second:?}"
    );
    assert!(second.iter().any(|a| a == "--no-tail"));
}

#[tokio::test]
async fn oversized_entry_is_truncated_and_keeps_its_cursor() {
    let fake = Fake::new();
    let long = "x".repeat(5000);
    fake.lines(1, &[entry("c-long", &long), entry("c-next", "short")]);
    let opts = JournaldOptions {
        max_line_bytes: 1024,
        ..fake.opts()
    };
    let mut running = start(opts, None, 8);
    let records = running.records(2).await;
    running.stop().await.unwrap();

    assert_eq!(cursors(&records), ["c-long", "c-next"]);
    let cut = &records[0].event;
    assert!(cut.has_flag(flags::TRUNCATED));
    assert!(!cut.has_flag(flags::PARSE_FAILURE));
    let message = cut.get_str("message").unwrap();
    assert!(
        !message.is_empty() && message.len() < 1024,
        "{}",
        message.len()
    );
    assert!(message.bytes().all(|b| b == b'x'));
    assert_eq!(
        cut.get_str("@timestamp"),
        Some("2026-11-26T09:14:02.000000Z")
    );
    let next = &records[1].event;
    assert_eq!(next.get_str("message"), Some("short"));
    assert!(!next.contains("log.flags"));
}

#[tokio::test]
async fn line_that_is_not_an_entry_is_kept_with_the_previous_cursor() {
    let fake = Fake::new();
    fake.lines(
        1,
        &[
            entry("c-1", "ok"),
            "garbage from journalctl".to_owned(),
            entry("c-2", "ok again"),
        ],
    );
    let mut running = start(fake.opts(), None, 8);
    let records = running.records(3).await;
    running.stop().await.unwrap();
    assert_eq!(cursors(&records), ["c-1", "c-1", "c-2"]);
    let odd = &records[1].event;
    assert_eq!(odd.get_str("message"), Some("garbage from journalctl"));
    assert!(odd.has_flag(flags::PARSE_FAILURE));
}

#[tokio::test]
async fn tight_channel_loses_nothing_and_keeps_order() {
    let fake = Fake::new();
    let lines: Vec<String> = (0..500)
        .map(|i| entry(&format!("c-{i}"), &format!("m-{i}")))
        .collect();
    fake.lines(1, &lines);
    fake.write("hold", "");
    let mut running = start(fake.opts(), None, 1);
    let records = running.records(500).await;
    running.stop().await.unwrap();
    let expected: Vec<String> = (0..500).map(|i| format!("c-{i}")).collect();
    assert_eq!(cursors(&records), expected);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.event.get_str("message") == Some(format!("m-{i}").as_str())));
}

#[tokio::test]
async fn shutdown_stops_a_running_journalctl() {
    let fake = Fake::new();
    fake.lines(1, &[entry("c-1", "hello")]);
    fake.write("hold", "");
    let mut running = start(fake.opts(), None, 8);
    running.records(1).await;
    running.stop().await.unwrap();
    let pid = fs::read_to_string(fake.dir.path().join("pid.1")).unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    if Path::new("/proc/self").exists() {
        assert!(
            !proc_dir.exists(),
            "journalctl (pid {}) still running",
            pid.trim()
        );
    }
    assert!(!fake.dir.path().join("argv.2").exists(), "not restarted");
}

#[tokio::test]
async fn invalid_options_are_refused() {
    let opts = JournaldOptions {
        max_line_bytes: 10,
        ..JournaldOptions::default()
    };
    let err = start(opts, None, 1).task.await.unwrap().unwrap_err();
    assert!(
        err.to_string().contains("max_line_bytes = 10 is too small"),
        "{err}"
    );
}

#[test]
fn options_defaults_and_unknown_keys() {
    let opts: JournaldOptions = toml::from_str("").unwrap();
    assert_eq!(opts, JournaldOptions::default());
    assert_eq!(opts.read_from, JournaldReadFrom::End);
    assert_eq!(opts.max_line_bytes, 102_400);
    assert_eq!(opts.journalctl_path, PathBuf::from("journalctl"));

    let opts: JournaldOptions = toml::from_str(
        "units = [\"ssh.service\"]\nread_from = \"beginning\"\ncurrent_boot_only = true\n",
    )
    .unwrap();
    assert_eq!(opts.units, ["ssh.service"]);
    assert_eq!(opts.read_from, JournaldReadFrom::Beginning);
    assert!(opts.current_boot_only);

    let err = toml::from_str::<JournaldOptions>("unit = [\"ssh.service\"]").unwrap_err();
    assert!(err.to_string().contains("unknown field `unit`"), "{err}");
    let err = toml::from_str::<JournaldOptions>("read_from = \"middle\"").unwrap_err();
    assert!(err.to_string().contains("beginning"), "{err}");
}

#[test]
fn backoff_doubles_to_a_cap_and_resets_after_progress() {
    let mut backoff = INITIAL_BACKOFF;
    let delays: Vec<u64> = (0..8)
        .map(|_| next_delay(&mut backoff, false).as_secs())
        .collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(next_delay(&mut backoff, true), INITIAL_BACKOFF);
}
