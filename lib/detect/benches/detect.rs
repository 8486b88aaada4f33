//! The agent's detect stage, measured: `cargo bench -p vigie-detect --bench detect`.
//!
//! Needs the SigmaHQ corpus in `../shared/data/sigmahq` (public test data; without it the bench
//! says so and measures Vigie's own rules only). Prints first, outside criterion:
//! - the memory the Linux pack takes (RSS before and after loading it, first thing);
//! - the time to load the whole SigmaHQ corpus (3,780 files), median of 3;
//!
//! then criterion measures, per event on one core, a mixed Linux stream (auditd process
//! creation in ECS, raw auditd records, sshd / sudo / cron syslog events, all tagged with
//! their logsource as the parsers tag them) against the 248 SigmaHQ Linux rules plus
//! Vigie's own, JSON parsing included; then the same without the JSON parse, and the JSON
//! parse alone.

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{black_box, Criterion, Throughput};
use serde_json::json;
use vigie_detect::{load_mapping_dir, LoadOptions, RuleSet};
use vigie_event::Event;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sigmahq() -> Option<PathBuf> {
    let p = repo().join("../shared/data/sigmahq");
    p.is_dir().then_some(p)
}

/// The rule folders of the SigmaHQ corpus (3,780 files in all).
const CORPUS_DIRS: [&str; 6] = [
    "rules",
    "rules-emerging-threats",
    "rules-threat-hunting",
    "rules-compliance",
    "rules-placeholder",
    "rules-dfir",
];

/// Rule files of the corpus whose logsource is `product: linux`, placeholder rules aside (they
/// need values the pack is not given).
fn linux_rule_files(root: &Path) -> Vec<PathBuf> {
    let paths: Vec<PathBuf> = CORPUS_DIRS
        .iter()
        .filter(|d| **d != "rules-placeholder")
        .map(|d| root.join(d))
        .collect();
    vigie_detect::rule_files(&paths)
        .unwrap_or_default()
        .into_iter()
        .filter(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains("product: linux")))
        .collect()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn options() -> LoadOptions {
    LoadOptions {
        mappings: load_mapping_dir(&repo().join("rules/mappings")).unwrap_or_default(),
        ..LoadOptions::default()
    }
}

/// A mixed Linux stream, as NDJSON lines.
fn stream(n: usize) -> Vec<String> {
    let commands = [
        ("/usr/bin/ls", "ls -la /var/log"),
        ("/usr/bin/python3", "python3 /opt/app/manage.py runserver"),
        (
            "/usr/bin/curl",
            "curl -s https://updates.example.com/v2/manifest.json",
        ),
        ("/usr/bin/systemctl", "systemctl status nginx"),
        ("/usr/bin/grep", "grep -r TODO /srv/app"),
        ("/usr/bin/tar", "tar czf /backup/home.tgz /home"),
    ];
    (0..n)
        .map(|i| {
            let v = match i % 5 {
                0 | 1 => {
                    let (exe, cmd) = commands[i % commands.len()];
                    json!({
                        "@timestamp": "2026-11-26T10:00:00.000000Z",
                        "event": {"kind": "event", "category": ["process"], "type": ["start"], "dataset": "auditd.log",
                                  "original": format!("type=EXECVE msg=audit(1764151200.{i:03}:{i}): argc=2 a0=\"{exe}\"")},
                        "process": {"executable": exe, "command_line": format!("{cmd} --run {i}"), "pid": 1000 + i,
                                    "args": cmd.split(' ').collect::<Vec<_>>(),
                                    "parent": {"pid": 900, "executable": "/bin/bash"}, "working_directory": "/home/alice"},
                        "user": {"name": "alice", "id": "1000"},
                        "host": {"name": "web-1"},
                        "vigie": {"logsource": {"product": "linux", "category": "process_creation"}}
                    })
                }
                2 => json!({
                    "@timestamp": "2026-11-26T10:00:00.000000Z",
                    "event": {"kind": "event", "dataset": "auditd.log", "original": format!("type=SYSCALL msg=audit(1764151200.{i:03}:{i}): arch=c000003e syscall=59 success=yes exit=0 comm=\"sshd\" exe=\"/usr/sbin/sshd\" key=\"exec\"")},
                    "type": "SYSCALL", "syscall": "59", "success": "yes", "comm": "sshd", "exe": "/usr/sbin/sshd", "key": "exec", "uid": "0", "auid": "1000",
                    "host": {"name": "web-1"},
                    "vigie": {"logsource": {"product": "linux", "service": "auditd"}}
                }),
                3 => json!({
                    "@timestamp": "2026-11-26T10:00:00.000000Z",
                    "message": format!("Accepted publickey for alice from 198.51.100.{} port {} ssh2: ED25519 SHA256:Zm9v", i % 250, 40000 + i % 20000),
                    "event": {"kind": "event", "dataset": "system.auth", "original": format!("Nov 26 10:00:00 web-1 sshd[{i}]: Accepted publickey for alice from 198.51.100.{} port 40000 ssh2", i % 250)},
                    "process": {"name": "sshd", "pid": i},
                    "host": {"name": "web-1"},
                    "vigie": {"logsource": {"product": "linux", "service": "sshd"}}
                }),
                _ => json!({
                    "@timestamp": "2026-11-26T10:00:00.000000Z",
                    "message": "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
                    "event": {"kind": "event", "dataset": "system.syslog", "original": format!("Nov 26 10:00:00 web-1 CRON[{i}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)")},
                    "process": {"name": "CRON", "pid": i},
                    "host": {"name": "web-1"},
                    "vigie": {"logsource": {"product": "linux", "service": "cron"}}
                }),
            };
            v.to_string()
        })
        .collect()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let own = repo().join("rules/sigma");
    let mut paths = vec![own];
    let root = sigmahq();
    match &root {
        Some(root) => {
            let linux = linux_rule_files(root);
            println!("SigmaHQ Linux rule files: {}", linux.len());
            paths.extend(linux);
        }
        None => println!("../shared/data/sigmahq is absent: measuring Vigie's own rules only"),
    }
    // The pack first, in a fresh process: measured after the corpus, its memory would come
    // from what the corpus loads freed, and show as nothing.
    let before = rss_kib();
    let (set, report) = RuleSet::load(&paths, &options()).expect("linux pack");
    let after = rss_kib();
    println!(
        "Linux pack: {} rules loaded, {} rejected; RSS {} KiB -> {} KiB (+{} KiB)",
        report.detection_rules,
        report.rejected.len(),
        before,
        after,
        after.saturating_sub(before)
    );
    if let Some(root) = &root {
        let all: Vec<PathBuf> = CORPUS_DIRS.iter().map(|d| root.join(d)).collect();
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let (set, report) = RuleSet::load(&all, &LoadOptions::default()).expect("corpus");
            times.push(t.elapsed());
            black_box((set, report));
        }
        times.sort();
        println!(
            "whole SigmaHQ corpus (3,780 files) load: median {:?} (of {:?})",
            times[1], times
        );
    }

    let lines = stream(2_000);
    let hits: usize = lines
        .iter()
        .map(|l| {
            set.evaluate(
                &Event::from_value(serde_json::from_str(l).expect("json")).expect("object"),
            )
            .len()
        })
        .sum();
    println!(
        "matches in one pass of the stream: {hits} of {} events",
        lines.len()
    );

    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("parse_json_and_evaluate_mixed_linux", |b| {
        b.iter(|| {
            let mut n = 0;
            for l in &lines {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                let ev = Event::from_value(v).expect("object");
                n += set.evaluate(&ev).len();
            }
            black_box(n)
        })
    });
    // What the JSON parse alone costs of the figure above.
    g.bench_function("parse_json_only_mixed_linux", |b| {
        b.iter(|| {
            let mut n = 0;
            for l in &lines {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                n += Event::from_value(v).expect("object").as_map().len();
            }
            black_box(n)
        })
    });
    let events: Vec<Event> = lines
        .iter()
        .map(|l| Event::from_value(serde_json::from_str(l).expect("json")).expect("object"))
        .collect();
    g.bench_function("evaluate_only_mixed_linux", |b| {
        b.iter(|| events.iter().map(|e| set.evaluate(e).len()).sum::<usize>())
    });
    g.finish();
    c.final_summary();
}
