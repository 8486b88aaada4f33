//! Edge detection end to end: an agent with a rule pack tails a real auth.log, tags what its
//! rules detect, drops what its filter rules call noise (counted in the fleet API, never
//! shipped), and picks up a new rule written while it runs, without losing a line.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigie_e2e::{append_lines, Agent, Collector};

const SUDO_SHELL: &str = "5b7c1f0e-6a51-4c55-9d3f-0c1b2e3f4a01";
const CRON_NOISE: &str = "5b7c1f0e-6a51-4c55-9d3f-0c1b2e3f4a02";
const ROOT_KEY_LOGIN: &str = "5b7c1f0e-6a51-4c55-9d3f-0c1b2e3f4a03";

fn write_rules(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("sudo_shell.yml"),
        format!(
            "title: Sudo runs a root shell\nid: {SUDO_SHELL}\nlogsource: {{product: linux, service: sudo}}\n\
             detection:\n  keywords: ['COMMAND=/bin/bash', 'COMMAND=/bin/sh']\n  condition: keywords\nlevel: high\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("cron_noise.yml"),
        format!(
            "title: Cron session noise\nid: {CRON_NOISE}\nlogsource: {{product: linux, service: cron}}\n\
             vigie: {{action: drop}}\n\
             detection:\n  keywords: ['pam_unix(cron:session)']\n  condition: keywords\nlevel: informational\n"
        ),
    )
    .unwrap();
}

fn auth_line(i: usize) -> String {
    match i % 10 {
        0 => format!("Nov 26 10:{:02}:{:02} bastion sudo[{}]:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/bash", (i / 60) % 60, i % 60, 1000 + i),
        1 | 2 => format!("Nov 26 10:{:02}:{:02} bastion CRON[{}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)", (i / 60) % 60, i % 60, 2000 + i),
        3 => format!("Nov 26 10:{:02}:{:02} bastion sshd[{}]: Accepted publickey for root from 203.0.113.{} port 52{:03} ssh2: ED25519 SHA256:abc", (i / 60) % 60, i % 60, 3000 + i, i % 250, i % 1000),
        _ => format!("Nov 26 10:{:02}:{:02} bastion sshd[{}]: Connection closed by 198.51.100.{} port 40{:03} [preauth] n={i}", (i / 60) % 60, i % 60, 4000 + i, i % 250, i % 1000),
    }
}

fn detections_of(ev: &Value) -> Vec<String> {
    ev.pointer("/vigie/detections")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d["rule_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn agent_stats(collector: &Collector, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    let mut stats = Value::Null;
    while start.elapsed() < Duration::from_secs(30) {
        let (status, v) = collector.get("/api/v1/agents").unwrap();
        assert_eq!(status, 200);
        stats = v["items"][0]["stats"].clone();
        if done(&stats) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    stats
}

#[test]
fn rules_tag_detections_drop_noise_and_reload_without_losing_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(tmp.path()).unwrap();
    let mut agent = Agent::enroll(tmp.path(), "bastion", &collector).unwrap();
    let rules = tmp.path().join("rules");
    write_rules(&rules);
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let auth = logs.join("auth.log");
    let rest = format!(
        "[detect]\nrules = [{:?}]\nreload_interval_secs = 1\n\n\
         [[sources]]\nname = \"auth\"\ntype = \"file\"\ninclude = [{:?}]\nformat = \"syslog\"\nread_from = \"beginning\"\n",
        rules.to_string_lossy(),
        auth.to_string_lossy()
    );
    agent
        .configure_via(
            &collector,
            &collector.base_url(),
            "stats_interval_secs = 1",
            "max_events = 500\ntimeout_ms = 5000",
            &rest,
        )
        .unwrap();
    append_lines(&auth, 0, 1_000, auth_line);
    agent.start().unwrap();

    // 1,000 lines: 200 cron lines are noise, 800 arrive; 100 sudo shells are tagged.
    assert_eq!(
        collector
            .wait_count("", 800, Duration::from_secs(60))
            .unwrap(),
        800
    );
    let events = collector.export_events("").unwrap();
    assert_eq!(events.len(), 800);
    let tagged: Vec<&Value> = events
        .iter()
        .filter(|e| !detections_of(e).is_empty())
        .collect();
    assert_eq!(tagged.len(), 100);
    for e in &tagged {
        assert_eq!(detections_of(e), [SUDO_SHELL]);
        assert!(e["message"].as_str().unwrap().contains("COMMAND=/bin/bash"));
        assert_eq!(e["vigie"]["detections"][0]["level"], "high");
        assert!(e["vigie"]["rulepack"]
            .as_str()
            .unwrap()
            .starts_with("sha256-"));
    }
    assert!(events
        .iter()
        .all(|e| !e["message"].as_str().unwrap_or("").contains("cron:session")));

    // The filter's drops are counted per rule in the fleet API; nothing is called data loss.
    let stats = agent_stats(&collector, |s| {
        s["detect"]["filtered"][CRON_NOISE].as_u64() == Some(200)
    });
    assert_eq!(stats["detect"]["filtered"][CRON_NOISE], 200, "{stats}");
    assert_eq!(stats["detect"]["events_tagged"], 100, "{stats}");
    assert_eq!(stats["detect"]["rules"], 2, "{stats}");
    assert_eq!(stats["dropped"]["rate_limit"], 0, "{stats}");
    let first_pack = stats["detect"]["rulepack"].as_str().unwrap().to_owned();

    // The 100 root shells are one alert (same rule, same host), with its entities.
    let (status, alerts) = collector.get("/api/v1/alerts").unwrap();
    assert_eq!(status, 200, "{alerts}");
    assert_eq!(alerts["total"], 1, "{alerts}");
    let alert = &alerts["items"][0];
    assert_eq!(alert["rule"]["id"], SUDO_SHELL);
    assert_eq!(alert["rule"]["level"], "high");
    assert_eq!(alert["occurrences"], 100);
    assert_eq!(alert["urgency"], 75);
    assert_eq!(alert["origin"], "edge");
    assert_eq!(alert["status"], "open");
    assert_eq!(alert["entities"]["host.name"], "bastion");
    let first_alert = alert["id"].as_i64().unwrap();
    let (status, one) = collector
        .get(&format!("/api/v1/alerts/{first_alert}"))
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(one["events"].as_array().unwrap().len(), 100);
    assert!(one["events"][0]["message"]
        .as_str()
        .unwrap()
        .contains("COMMAND=/bin/bash"));
    // The analyst closes it as a true positive.
    let (status, closed) = collector
        .patch(
            &format!("/api/v1/alerts/{first_alert}"),
            &serde_json::json!({"status": "closed", "verdict": "true_positive", "comment": "admin shell, ticket 42"}),
        )
        .unwrap();
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["status"], "closed");
    let (status, refused) = collector
        .patch(
            &format!("/api/v1/alerts/{first_alert}"),
            &serde_json::json!({"status": "done"}),
        )
        .unwrap();
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("bad_status"))
    );

    // Alert filters: half of the next root shells are a known false positive (muted for 30
    // days); a filter that already expired mutes nothing; a broken one is refused.
    let (status, muting) = collector
        .post(
            "/api/v1/alert-filters",
            &serde_json::json!({"name": "maintenance shells", "rule_id": SUDO_SHELL,
                "detection": "sel:\n  process.pid|gte: 2500\ncondition: sel", "expires_at": "now+30d"}),
        )
        .unwrap();
    assert_eq!(status, 201, "{muting}");
    let (status, expired) = collector
        .post(
            "/api/v1/alert-filters",
            &serde_json::json!({"name": "old", "detection": "sel:\n  host.name: bastion\ncondition: sel",
                "expires_at": "now-1m"}),
        )
        .unwrap();
    assert_eq!(status, 201, "{expired}");
    let (status, broken) = collector
        .post(
            "/api/v1/alert-filters",
            &serde_json::json!({"name": "broken", "detection": "sel:\n  a: b\ncondition: sel and nope"}),
        )
        .unwrap();
    assert_eq!(
        (status, broken["error"]["code"].as_str()),
        (400, Some("bad_detection")),
        "{broken}"
    );

    // A rule added while the agent runs applies to the lines after it, and no line is lost.
    std::fs::write(
        rules.join("root_key_login.yml"),
        format!(
            "title: Root logs in with a key\nid: {ROOT_KEY_LOGIN}\nlogsource: {{product: linux, service: sshd}}\n\
             detection:\n  sel:\n    message|contains|all: ['Accepted publickey', 'for root']\n  condition: sel\nlevel: medium\n"
        ),
    )
    .unwrap();
    let stats = agent_stats(&collector, |s| s["detect"]["rules"] == 3);
    assert_eq!(stats["detect"]["rules"], 3, "{stats}");
    assert_ne!(stats["detect"]["rulepack"], first_pack.as_str());
    append_lines(&auth, 1_000, 2_000, auth_line);
    assert_eq!(
        collector
            .wait_count("", 1_600, Duration::from_secs(60))
            .unwrap(),
        1_600
    );
    let events = collector.export_events("").unwrap();
    assert_eq!(events.len(), 1_600);
    let root_logins: Vec<&Value> = events
        .iter()
        .filter(|e| detections_of(e).contains(&ROOT_KEY_LOGIN.to_owned()))
        .collect();
    // Lines 1,003, 1,013, ..., 1,993: only the lines written after the reload.
    assert_eq!(root_logins.len(), 100);
    assert!(root_logins
        .iter()
        .all(|e| e["vigie"]["rulepack"] != first_pack.as_str()));

    // After the close, the next root shells are a new alert, linked to the closed one; the
    // root key logins are an alert of their own.
    let (_, open) = collector
        .get("/api/v1/alerts?status=open&sort=occurrences")
        .unwrap();
    assert_eq!(open["total"], 2, "{open}");
    let shells = open["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"]["id"] == SUDO_SHELL)
        .unwrap();
    // Lines 1,000 to 1,990: sudo pids 2,000 to 2,990, the filter mutes pids from 2,500.
    let (_, filters) = collector.get("/api/v1/alert-filters").unwrap();
    assert_eq!(shells["occurrences"], 50, "{filters}");
    assert_eq!(shells["similar_to"], first_alert);
    let muted: Vec<u64> = filters["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["muted"].as_u64().unwrap())
        .collect();
    assert_eq!(muted, [50, 0], "{filters}");
    let logins = open["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"]["id"] == ROOT_KEY_LOGIN)
        .unwrap();
    assert_eq!(logins["occurrences"], 100);
    let (_, history) = collector
        .get(&format!("/api/v1/alerts/{first_alert}"))
        .unwrap();
    assert_eq!(history["history"].as_array().unwrap().len(), 3, "{history}");
    assert_eq!(history["verdict"], "true_positive");
    drop(agent);
}

/// A detection found while the collector was down reaches it ahead of the spool's backlog
/// (a copy on the fast lane), and is stored once although it arrives twice.
#[test]
fn a_detection_overtakes_the_backlog_and_is_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(tmp.path()).unwrap();
    let mut agent = Agent::enroll(tmp.path(), "bastion", &collector).unwrap();
    let rules = tmp.path().join("rules");
    write_rules(&rules);
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let auth = logs.join("auth.log");
    let rest = format!(
        "[detect]\nrules = [{:?}]\n\n\
         [[sources]]\nname = \"auth\"\ntype = \"file\"\ninclude = [{:?}]\nformat = \"syslog\"\nread_from = \"beginning\"\n",
        rules.to_string_lossy(),
        auth.to_string_lossy()
    );
    agent
        .configure_via(
            &collector,
            &collector.base_url(),
            "",
            "max_events = 1000\ntimeout_ms = 100",
            &rest,
        )
        .unwrap();
    let benign = |i: usize| {
        format!("Nov 26 11:00:00 bastion sshd[{i}]: Connection closed by 198.51.100.7 port 40000 [preauth] n={i}")
    };
    append_lines(&auth, 0, 1_000, benign);
    agent.start().unwrap();
    assert_eq!(
        collector
            .wait_count("", 1_000, Duration::from_secs(60))
            .unwrap(),
        1_000
    );
    collector.proc.as_mut().unwrap().kill();

    // A backlog while the collector is down, and a root shell at its very end.
    let total = 61_001;
    append_lines(&auth, 1_000, total - 1, benign);
    append_lines(&auth, total - 1, total, |_| {
        "Nov 26 11:05:00 bastion sudo[4242]:    mallory : TTY=pts/3 ; PWD=/tmp ; USER=root ; COMMAND=/bin/bash zebra42".to_owned()
    });
    // Wait until the agent has read it all (the spool stops growing).
    let spool = |a: &Agent| -> u64 {
        std::fs::read_dir(a.dir.join("spool"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    let start = Instant::now();
    let (mut last, mut stable) = (0, 0);
    while start.elapsed() < Duration::from_secs(120) && stable < 6 {
        let now = spool(&agent);
        stable = if now == last && now > 0 {
            stable + 1
        } else {
            0
        };
        last = now;
        std::thread::sleep(Duration::from_millis(500));
    }

    collector.serve().unwrap();
    let start = Instant::now();
    let mut stored_before = None;
    while start.elapsed() < Duration::from_secs(120) {
        if collector.count("zebra42").unwrap() >= 1 {
            stored_before = Some(collector.count("").unwrap());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stored_before = stored_before.expect("the detection never arrived");
    assert!(
        stored_before < 30_000,
        "the detection arrived after {stored_before} of {total} events: it did not overtake the backlog"
    );
    assert_eq!(
        collector
            .wait_count("", total as u64, Duration::from_secs(300))
            .unwrap(),
        total as u64
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(collector.count("").unwrap(), total as u64);
    let hits = collector.export_events("zebra42").unwrap();
    assert_eq!(hits.len(), 1, "stored once: {hits:?}");
    assert_eq!(detections_of(&hits[0]), [SUDO_SHELL]);
    // One alert, one occurrence: the fast copy and the spooled original are one detection.
    let (_, alerts) = collector.get("/api/v1/alerts").unwrap();
    assert_eq!(alerts["total"], 1, "{alerts}");
    assert_eq!(alerts["items"][0]["occurrences"], 1, "{alerts}");
    assert!(hits[0]["event"]["id"]
        .as_str()
        .is_some_and(|id| id.len() == 32));
}

/// One audit serial: SYSCALL, EXECVE (arguments with spaces hex-encoded, as auditd writes
/// them), CWD, EOE.
fn audit_exec(serial: usize, args: &[&str]) -> String {
    let ts = format!("{}.{:03}", 1_795_687_200 + serial / 10, serial % 1000);
    let exe = format!("/usr/bin/{}", args[0]);
    let mut execve = format!("type=EXECVE msg=audit({ts}:{serial}): argc={}", args.len());
    for (i, a) in args.iter().enumerate() {
        if a.contains(' ') || a.contains('"') {
            let hex: String = a.bytes().map(|b| format!("{b:02X}")).collect();
            execve.push_str(&format!(" a{i}={hex}"));
        } else {
            execve.push_str(&format!(" a{i}=\"{a}\""));
        }
    }
    format!(
        "type=SYSCALL msg=audit({ts}:{serial}): arch=c000003e syscall=59 success=yes exit=0 a0=55a4c1e0 a1=55a4c2f0 a2=55a4c400 a3=0 items=2 ppid=2214 pid={} auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm=\"{}\" exe=\"{exe}\" key=\"exec\"\n\
         {execve}\n\
         type=CWD msg=audit({ts}:{serial}): cwd=\"/home/alice\"\n\
         type=EOE msg=audit({ts}:{serial}): \n",
        3000 + serial,
        args[0]
    )
}

/// audit.log through the auditd assembler: one event per audit serial, detections on the
/// assembled command line, and neither loss nor repeat across a SIGKILL.
#[test]
fn audit_log_is_assembled_detected_and_survives_a_kill() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(tmp.path()).unwrap();
    let mut agent = Agent::enroll(tmp.path(), "endpoint", &collector).unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let audit = logs.join("audit.log");
    let rest = format!(
        "[detect]\nrules = [{:?}]\nmappings = [{:?}]\n\n\
         [[sources]]\nname = \"audit\"\ntype = \"file\"\ninclude = [{:?}]\nformat = \"auditd\"\nread_from = \"beginning\"\n",
        repo.join("rules/sigma").to_string_lossy(),
        repo.join("rules/mappings").to_string_lossy(),
        audit.to_string_lossy()
    );
    agent
        .configure_via(
            &collector,
            &collector.base_url(),
            "",
            "max_events = 200\ntimeout_ms = 100",
            &rest,
        )
        .unwrap();
    let write = |from: usize, to: usize| {
        let mut text = String::new();
        for s in from..to {
            if s % 50 == 7 {
                text.push_str(&audit_exec(
                    s,
                    &["bash", "-c", "unset HISTFILE; history -c"],
                ));
            } else {
                text.push_str(&audit_exec(s, &["ls", "-la", "/var/log"]));
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&audit)
            .unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    };
    write(0, 500);
    agent.start().unwrap();
    assert_eq!(
        collector
            .wait_count("", 500, Duration::from_secs(60))
            .unwrap(),
        500
    );
    agent.proc.as_mut().unwrap().kill();
    write(500, 1_000);
    agent.start().unwrap();
    assert_eq!(
        collector
            .wait_count("", 1_000, Duration::from_secs(60))
            .unwrap(),
        1_000
    );
    std::thread::sleep(Duration::from_secs(2));
    let events = collector.export_events("").unwrap();
    assert_eq!(
        events.len(),
        1_000,
        "no audit event repeated after the kill"
    );
    let mut serials: Vec<u64> = events
        .iter()
        .map(|e| e["auditd"]["log"]["sequence"].as_u64().unwrap())
        .collect();
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(serials.len(), 1_000);
    let tampering: Vec<&Value> = events
        .iter()
        .filter(|e| !detections_of(e).is_empty())
        .collect();
    assert_eq!(tampering.len(), 20, "serials 7, 57, ... 957");
    for e in &tampering {
        assert_eq!(detections_of(e), ["6e1a21f4-8a6d-4fb0-a5f9-57a2fc3bc254"]);
        assert_eq!(e["process"]["args"][2], "unset HISTFILE; history -c");
        assert_eq!(e["process"]["executable"], "/usr/bin/bash");
    }
}
