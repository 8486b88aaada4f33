//! The foundation's promise, end to end: lines written to real files on an
//! endpoint arrive at the collector exactly once, across rotations, over real
//! mTLS, and can be searched and exported.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::path::Path;
use std::time::Duration;

use vigie_e2e::{append_lines, Agent, Collector};

const BATCH: &str = "max_events = 2000\ntimeout_ms = 200";

fn append(path: &Path, from: usize, to: usize) {
    append_lines(path, from, to, |i| {
        format!(
            "e2e line {i:06} user=alice action=login src=198.51.100.{}",
            i % 250
        )
    });
}

/// A collector and an enrolled agent whose one file source `app` reads
/// `logs/<include>`; returns them with the logs folder (the agent is not started).
fn setup(root: &Path, include: &str, extra: &str) -> (Collector, Agent, std::path::PathBuf) {
    let collector = Collector::start(root).unwrap();
    let agent = Agent::enroll(root, "agent", &collector).unwrap();
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let sources = format!(
        "[[sources]]\nname = \"app\"\ntype = \"file\"\ninclude = [\"{}/{include}\"]\nformat = \"plain\"\n{extra}",
        logs.display()
    );
    agent.configure(&collector, BATCH, &sources).unwrap();
    (collector, agent, logs)
}

fn numbers(messages: &[String]) -> Vec<usize> {
    messages
        .iter()
        .filter_map(|m| m.strip_prefix("e2e line "))
        .filter_map(|m| m.get(..6))
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn fifty_thousand_lines_across_rename_and_copytruncate_arrive_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (collector, mut agent, logs) = setup(
        tmp.path(),
        "app.log*",
        "exclude = [\"*.gz\"]\nread_from = \"beginning\"\n",
    );
    let app = logs.join("app.log");
    append(&app, 0, 5_000);
    agent.start().unwrap();

    // Keep writing while the agent reads; rotate by rename at 20,000.
    let mut next = 5_000;
    while next < 20_000 {
        append(&app, next, next + 2_500);
        next += 2_500;
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::rename(&app, logs.join("app.log.1")).unwrap();
    while next < 35_000 {
        append(&app, next, next + 2_500);
        next += 2_500;
        std::thread::sleep(Duration::from_millis(20));
    }
    // copytruncate, as logrotate does it: copy, then truncate in place.
    // Wait until the agent caught up first, as logrotate's copytruncate
    // can lose lines written between the copy and the truncation by design.
    collector
        .wait_count("", 35_000, Duration::from_secs(120))
        .unwrap();
    std::fs::copy(&app, logs.join("app.log.2")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    while next < 50_000 {
        append(&app, next, next + 2_500);
        next += 2_500;
        std::thread::sleep(Duration::from_millis(20));
    }

    let got = collector
        .wait_count("", 50_000, Duration::from_secs(180))
        .unwrap();
    // Give a doubled batch the time to show up before counting exactly.
    std::thread::sleep(Duration::from_millis(1500));
    let messages = collector.export_messages("").unwrap();
    let nums = numbers(&messages);
    let distinct: HashSet<usize> = nums.iter().copied().collect();
    let log = agent
        .proc
        .as_ref()
        .map(|p| p.log_text())
        .unwrap_or_default();
    assert_eq!(
        got.max(nums.len() as u64),
        50_000,
        "count; agent log:\n{log}"
    );
    assert_eq!(distinct.len(), 50_000, "every line once; agent log:\n{log}");
    assert_eq!(nums.len(), 50_000, "no line twice");
    assert_eq!(
        collector.count("e2e").unwrap(),
        50_000,
        "bare word search finds them all"
    );
    assert_eq!(
        collector.count("\"e2e line 012345\"").unwrap(),
        1,
        "phrase search"
    );
}

#[test]
fn events_carry_ecs_fields_and_are_searchable() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let collector = Collector::start(root).unwrap();
    let mut agent = Agent::enroll(root, "agent", &collector).unwrap();
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(
        logs.join("auth.log"),
        "Nov 26 09:14:02 bastion-1 sshd[4242]: Failed password for invalid user admin from 203.0.113.45 port 51234 ssh2\n\
         Nov 26 09:14:05 bastion-1 sshd[4242]: Accepted publickey for alice from 198.51.100.7 port 50022 ssh2: ED25519 SHA256:abc\n",
    )
    .unwrap();
    std::fs::write(
        logs.join("app.json"),
        "{\"message\":\"hello json\",\"user\":{\"name\":\"bob\"}}\nthis is not json\n",
    )
    .unwrap();
    let sources = format!(
        "[[sources]]\nname = \"auth\"\ntype = \"file\"\ninclude = [\"{0}/auth.log\"]\nformat = \"syslog\"\n\n\
         [[sources]]\nname = \"app\"\ntype = \"file\"\ninclude = [\"{0}/app.json\"]\nformat = \"json\"\n\n\
         [[sources]]\nname = \"journal\"\ntype = \"journald\"\njournalctl_path = \"/nonexistent/journalctl\"\n",
        logs.display()
    );
    agent.configure(&collector, BATCH, &sources).unwrap();
    agent.start().unwrap();
    assert_eq!(
        collector
            .wait_count("", 4, Duration::from_secs(60))
            .unwrap(),
        4
    );

    let (status, v) = collector
        .get("/api/v1/events?q=process.name:sshd%20AND%20%22Failed%20password%22")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["total"], 1, "{v}");
    let ev = &v["events"][0];
    assert_eq!(ev["host"]["name"], "bastion-1");
    assert_eq!(ev["process"]["pid"], 4242);
    assert_eq!(ev["vigie"]["source"], "auth");
    assert!(ev["agent"]["id"].as_str().unwrap().starts_with("agt_"));
    assert!(ev["event"]["ingested"].is_string());
    assert!(ev["event"]["original"]
        .as_str()
        .unwrap()
        .contains("203.0.113.45"));
    assert!(ev["log"]["file"]["path"]
        .as_str()
        .unwrap()
        .ends_with("auth.log"));

    assert_eq!(collector.count("user.name:bob").unwrap(), 1);
    // The line that is not JSON is kept, flagged, never dropped.
    let (_, v) = collector
        .get("/api/v1/events?q=log.flags:parse_failure")
        .unwrap();
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["events"][0]["message"], "this is not json");

    // The journald source failed clearly, and the others kept running.
    let log = agent.proc.as_ref().unwrap().log_text();
    assert!(log.contains("journalctl not found"), "agent log:\n{log}");

    // The fleet view shows the agent.
    let (status, agents) = collector.get("/api/v1/agents").unwrap();
    assert_eq!(status, 200);
    assert_eq!(agents["items"].as_array().unwrap().len(), 1);
    assert_eq!(agents["items"][0]["status"], "online");
}

#[test]
fn agent_restart_resumes_from_checkpoint_without_doubles() {
    let tmp = tempfile::tempdir().unwrap();
    let (collector, mut agent, logs) = setup(tmp.path(), "app.log", "");
    let app = logs.join("app.log");
    append(&app, 0, 3_000);
    agent.start().unwrap();
    assert_eq!(
        collector
            .wait_count("", 3_000, Duration::from_secs(60))
            .unwrap(),
        3_000
    );
    let status = agent
        .proc
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "agent stops cleanly on SIGTERM"
    );
    append(&app, 3_000, 6_000);
    agent.start().unwrap();
    assert_eq!(
        collector
            .wait_count("", 6_000, Duration::from_secs(60))
            .unwrap(),
        6_000
    );
    std::thread::sleep(Duration::from_millis(1000));
    let nums = numbers(&collector.export_messages("").unwrap());
    let distinct: HashSet<usize> = nums.iter().copied().collect();
    assert_eq!(nums.len(), 6_000);
    assert_eq!(distinct.len(), 6_000);
}
