//! The collector's rule pack at the edge, end to end: an agent with `[detect] source =
//! "collector"` fetches the pack from `GET /v1/rulepack` (real mTLS, its own certificate),
//! evaluates every event with it and stamps each with the collector's version, so the
//! collector trusts the edge's verdict; a rule posted while the agent runs reaches it at the
//! next poll; and a restart while the collector is down starts with the pack saved on disk.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::Value;
use vigie_e2e::{append_lines, Agent, Collector};

const ROOT_SHELL: &str = "6c1d2e3f-0a1b-4c2d-8e3f-5a6b7c8d9e01";
const ROOT_KEY_LOGIN: &str = "6c1d2e3f-0a1b-4c2d-8e3f-5a6b7c8d9e02";

fn root_shell_rule() -> String {
    format!(
        "title: Sudo runs a root shell\nid: {ROOT_SHELL}\nlogsource: {{product: linux, service: sudo}}\n\
         detection:\n  keywords: ['COMMAND=/bin/bash']\n  condition: keywords\nlevel: high\n"
    )
}

fn root_key_login_rule() -> String {
    format!(
        "title: Root logs in with a key\nid: {ROOT_KEY_LOGIN}\nlogsource: {{product: linux, service: sshd}}\n\
         detection:\n  sel:\n    message|contains|all: ['Accepted publickey', 'for root']\n  condition: sel\nlevel: medium\n"
    )
}

/// `POST /api/v1/rules` with a YAML body; returns the pack's new version.
fn post_rules(collector: &Collector, yaml: String) -> String {
    let r = collector
        .http()
        .post(collector.url("/api/v1/rules"))
        .bearer_auth(&collector.token)
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().unwrap();
    assert_eq!(status, 201, "{v}");
    v["version"].as_str().unwrap().to_owned()
}

/// Waits until the agent reports (`stats_interval_secs = 1`) the pack `version` in use.
fn wait_agent_pack(collector: &Collector, version: &str) -> Value {
    let start = Instant::now();
    let mut stats = Value::Null;
    while start.elapsed() < Duration::from_secs(60) {
        let (status, v) = collector.get("/api/v1/agents").unwrap();
        assert_eq!(status, 200, "{v}");
        stats = v["items"][0]["stats"].clone();
        if stats["detect"]["rulepack"] == version {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stats
}

/// The one event whose message holds `marker`.
fn event_with(collector: &Collector, marker: &str) -> Value {
    assert_eq!(
        collector
            .wait_count(marker, 1, Duration::from_secs(60))
            .unwrap(),
        1,
        "{marker} never arrived"
    );
    let mut events = collector.export_events(marker).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    events.remove(0)
}

fn sudo_line(marker: &str) -> String {
    format!("Nov 26 10:00:00 bastion sudo[4242]:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/bash {marker}")
}

fn sshd_key_line(marker: &str) -> String {
    format!("Nov 26 10:00:01 bastion sshd[4243]: Accepted publickey for root from 203.0.113.9 port 52000 ssh2: ED25519 SHA256:{marker}")
}

#[test]
fn the_agent_runs_the_collectors_pack_and_stamps_every_event_with_its_version() {
    let tmp = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(tmp.path()).unwrap();
    let first = post_rules(&collector, root_shell_rule());
    let mut agent = Agent::enroll(tmp.path(), "bastion", &collector).unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let auth = logs.join("auth.log");
    std::fs::write(&auth, "").unwrap();
    let rest = format!(
        "[detect]\nsource = \"collector\"\nreload_interval_secs = 1\n\n\
         [[sources]]\nname = \"auth\"\ntype = \"file\"\ninclude = [{:?}]\nformat = \"syslog\"\nread_from = \"beginning\"\n",
        auth.to_string_lossy()
    );
    agent
        .configure_via(
            &collector,
            &collector.base_url(),
            "stats_interval_secs = 1",
            "max_events = 100\ntimeout_ms = 100",
            &rest,
        )
        .unwrap();
    agent.start().unwrap();
    let stats = wait_agent_pack(&collector, &first);
    assert_eq!(stats["detect"]["rulepack"], first.as_str(), "{stats}");
    assert_eq!(stats["detect"]["rules"], 1, "{stats}");
    let saved = agent.dir.join("rulepack.json");
    let pack: Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(pack["version"], first.as_str());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&saved).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // A match is tagged at the edge (no `origin: central`), a non-match is stamped all the
    // same: both were evaluated with the collector's version, which then trusts them.
    append_lines(&auth, 0, 2, |i| {
        if i == 0 {
            sudo_line("zebra1")
        } else {
            sshd_key_line("zebra2")
        }
    });
    let tagged = event_with(&collector, "zebra1");
    assert_eq!(tagged["vigie"]["rulepack"], first.as_str(), "{tagged}");
    assert_eq!(
        tagged["vigie"]["detections"],
        serde_json::json!([{"rule_id": ROOT_SHELL, "title": "Sudo runs a root shell", "level": "high"}]),
        "{tagged}"
    );
    let passed = event_with(&collector, "zebra2");
    assert_eq!(passed["vigie"]["rulepack"], first.as_str(), "{passed}");
    assert!(passed["vigie"].get("detections").is_none(), "{passed}");
    let (_, alerts) = collector.get("/api/v1/alerts").unwrap();
    assert_eq!(alerts["total"], 1, "{alerts}");
    assert_eq!(alerts["items"][0]["origin"], "edge", "{alerts}");

    // A rule posted while the agent runs is in use at its next poll.
    let second = post_rules(&collector, root_key_login_rule());
    assert_ne!(second, first);
    let stats = wait_agent_pack(&collector, &second);
    assert_eq!(stats["detect"]["rulepack"], second.as_str(), "{stats}");
    assert_eq!(stats["detect"]["rules"], 2, "{stats}");
    assert_eq!(stats["detect"]["reload_failures"], 0, "{stats}");
    append_lines(&auth, 2, 3, |_| sshd_key_line("zebra3"));
    let login = event_with(&collector, "zebra3");
    assert_eq!(login["vigie"]["rulepack"], second.as_str(), "{login}");
    assert_eq!(login["vigie"]["detections"][0]["rule_id"], ROOT_KEY_LOGIN);
    assert!(
        login["vigie"]["detections"][0].get("origin").is_none(),
        "{login}"
    );

    // A restart while the collector is down starts with the pack saved on disk: the lines it
    // reads then are evaluated at the edge, with the collector's current version.
    collector.proc.as_mut().unwrap().kill();
    agent
        .proc
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(30))
        .unwrap();
    agent.start().unwrap();
    append_lines(&auth, 3, 4, |_| sudo_line("zebra4"));
    let start = Instant::now();
    let log = loop {
        let log = agent.proc.as_ref().unwrap().log_text();
        if log.contains("rule pack of the last run in use")
            || start.elapsed() > Duration::from_secs(30)
        {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(log.contains("rule pack of the last run in use"), "{log}");
    assert!(log.contains(&second), "{log}");
    collector.serve().unwrap();
    let late = event_with(&collector, "zebra4");
    assert_eq!(late["vigie"]["rulepack"], second.as_str(), "{late}");
    assert_eq!(
        late["vigie"]["detections"][0]["rule_id"], ROOT_SHELL,
        "{late}"
    );
    assert!(
        late["vigie"]["detections"][0].get("origin").is_none(),
        "{late}"
    );
}

/// The agent's stats as the fleet API shows them, once `check` holds (or the last seen).
fn wait_agent(collector: &Collector, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    let mut agent = Value::Null;
    while start.elapsed() < Duration::from_secs(60) {
        agent = collector.get("/api/v1/agents").unwrap().1["items"][0].clone();
        if check(&agent) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    agent
}

fn file_source(name: &str, path: &std::path::Path) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\ntype = \"file\"\ninclude = [{:?}]\nformat = \"plain\"\nread_from = \"beginning\"\n",
        path.to_string_lossy()
    )
}

/// `[fleet.sources]`: the agent runs its group's sources from the collector, takes a change
/// while it runs (restarting its pipeline without losing or doubling a line), refuses a bad
/// document and keeps the last good one, also across a restart.
#[test]
fn central_sources_are_pulled_applied_and_a_bad_document_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(tmp.path()).unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let (app, other) = (logs.join("app.log"), logs.join("other.log"));
    let central = collector.dir.join("sources-default.toml");
    std::fs::write(&central, file_source("app", &app)).unwrap();
    let cfg_path = collector.config_path();
    let mut text = std::fs::read_to_string(&cfg_path).unwrap();
    text.push_str("\n[fleet.sources]\ndefault = \"sources-default.toml\"\n");
    std::fs::write(&cfg_path, text).unwrap();
    collector.restart().unwrap();

    let mut agent = Agent::enroll(tmp.path(), "ws", &collector).unwrap();
    // No local source at all: everything comes from the collector.
    agent
        .configure_via(
            &collector,
            &collector.base_url(),
            "stats_interval_secs = 1\ncentral_sources = true\nconfig_interval_secs = 1",
            "max_events = 100\ntimeout_ms = 100",
            "",
        )
        .unwrap();
    let line = |tag: &'static str| move |i: usize| format!("{tag} line {i:05}");
    append_lines(&app, 0, 100, line("app"));
    agent.start().unwrap();
    assert_eq!(
        collector
            .wait_count("app", 100, Duration::from_secs(60))
            .unwrap(),
        100
    );
    let first = vigie_wire::config_version(&std::fs::read_to_string(&central).unwrap());
    let a = wait_agent(&collector, |a| a["stats"]["config_version"] == first);
    assert_eq!(a["stats"]["config_version"], first.as_str(), "{a}");

    // A second source while the agent runs: the pipeline restarts on both.
    let both = format!(
        "{}{}",
        file_source("app", &app),
        file_source("other", &other)
    );
    std::fs::write(&central, &both).unwrap();
    let second = vigie_wire::config_version(&both);
    let a = wait_agent(&collector, |a| a["stats"]["config_version"] == second);
    assert_eq!(a["stats"]["config_version"], second.as_str(), "{a}");
    append_lines(&app, 100, 200, line("app"));
    append_lines(&other, 0, 50, line("other"));
    assert_eq!(
        collector
            .wait_count("other", 50, Duration::from_secs(60))
            .unwrap(),
        50
    );
    assert_eq!(
        collector
            .wait_count("app", 200, Duration::from_secs(60))
            .unwrap(),
        200
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(collector.count("app").unwrap(), 200, "nothing read twice");

    // A document the agent cannot use: refused, reported, the last good one keeps running.
    std::fs::write(
        &central,
        format!("{both}[[sources]]\nname = \"bad\"\ntype = \"bogus\"\nformat = \"plain\"\n"),
    )
    .unwrap();
    let a = wait_agent(&collector, |a| a["status"] == "degraded");
    assert_eq!(a["status"], "degraded", "{a}");
    let reason = a["status_reasons"][0].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("central configuration refused") && reason.contains("bogus"),
        "{a}"
    );
    append_lines(&app, 200, 250, line("app"));
    assert_eq!(
        collector
            .wait_count("app", 250, Duration::from_secs(60))
            .unwrap(),
        250
    );
    // Restarted while the collector still serves the bad document: the saved good one runs.
    agent
        .proc
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(20));
    agent.start().unwrap();
    append_lines(&other, 50, 80, line("other"));
    assert_eq!(
        collector
            .wait_count("other", 80, Duration::from_secs(60))
            .unwrap(),
        80
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(collector.count("app").unwrap(), 250);
    assert_eq!(collector.count("other").unwrap(), 80);
}
