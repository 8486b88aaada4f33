//! Central detection end to end (issue #6): the collector runs Vigie's rules and
//! correlations and serves them to an agent, which tails a real auth.log holding an SSH brute
//! force. The API shows one grouped brute-force alert with the right occurrence count and
//! entities, and one "followed by a success" alert; the collector restarted in the middle of
//! a window keeps counting.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigie_e2e::{append_lines, Agent, Collector};

const BRUTE: &str = "1d24ee53-7162-4000-9454-fafb312e0f28";
const BRUTE_THEN_SUCCESS: &str = "52ecf237-ead7-4699-aa3b-1b2524d30e19";

fn repo_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

/// Adds `[detection]` with the shipped rules, correlations and mappings to collector.toml.
fn enable_detection(collector: &Collector) {
    let path = collector.config_path();
    let mut text = std::fs::read_to_string(&path).unwrap();
    let r = repo_rules();
    text.push_str(&format!(
        "\n[detection]\nrules = [{:?}, {:?}]\nmappings = [{:?}]\n\n[detection.correlation]\nlateness_secs = 1\nstate_save_interval_secs = 1\n",
        r.join("sigma").to_string_lossy(),
        r.join("correlations").to_string_lossy(),
        r.join("mappings").to_string_lossy(),
    ));
    std::fs::write(&path, text).unwrap();
}

/// A failed (or accepted) sshd password line at second `s` after 10:00.
fn sshd(s: usize, ok: bool, ip: &str, user: &str) -> String {
    let (m, s) = (s / 60, s % 60);
    let verb = if ok { "Accepted" } else { "Failed" };
    format!("Nov 26 10:{m:02}:{s:02} bastion-1 sshd[{}]: {verb} password for {user} from {ip} port {} ssh2", 4000 + s, 40000 + s)
}

fn alerts(collector: &Collector) -> Vec<Value> {
    let (status, body) = collector.get("/api/v1/alerts?limit=100").unwrap();
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

fn wait_alert(collector: &Collector, rule: &str, occurrences: u64) -> Value {
    let start = Instant::now();
    loop {
        let found = alerts(collector)
            .into_iter()
            .find(|a| a["rule"]["id"] == rule);
        if let Some(a) = &found {
            if a["occurrences"].as_u64() >= Some(occurrences) {
                return a.clone();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no alert {rule} with {occurrences} occurrences; alerts: {:#?}",
            alerts(collector)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_ssh_brute_force_in_auth_log_becomes_one_grouped_alert() {
    let root = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(root.path()).unwrap();
    enable_detection(&collector);
    if let Some(mut p) = collector.proc.take() {
        p.terminate(Duration::from_secs(10));
    }
    collector.serve().unwrap();

    let logs = root.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let auth = logs.join("auth.log");
    // The attacker fails 4 times, and a second address fails 3 times: nothing yet.
    append_lines(&auth, 0, 4, |i| sshd(i * 10, false, "203.0.113.45", "root"));
    append_lines(&auth, 4, 7, |i| {
        sshd(i * 10, false, "198.51.100.7", "alice")
    });

    let mut agent = Agent::enroll(root.path(), "agent", &collector).unwrap();
    let sources = format!(
        "[detect]\nsource = \"collector\"\nreload_interval_secs = 1\n\n\
         [[sources]]\nname = \"auth\"\ntype = \"file\"\ninclude = [{:?}]\nformat = \"linux_auth\"\nread_from = \"beginning\"\n",
        auth.to_string_lossy()
    );
    agent
        .configure(&collector, "timeout_ms = 100", &sources)
        .unwrap();
    agent.start().unwrap();
    collector
        .wait_count("vigie.source:auth", 7, Duration::from_secs(60))
        .unwrap();
    // Let the correlation watermark pass them.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        alerts(&collector).iter().all(|a| a["rule"]["id"] != BRUTE),
        "{:#?}",
        alerts(&collector)
    );

    // The collector restarts in the middle of the window (state saved at stop).
    if let Some(mut p) = collector.proc.take() {
        p.terminate(Duration::from_secs(10));
    }
    collector.serve().unwrap();

    // Three more failures: the 5th, 6th and 7th of the window each fire the correlation,
    // grouped into one alert; then the attacker gets in.
    append_lines(&auth, 7, 10, |i| {
        sshd(70 + (i - 7) * 10, false, "203.0.113.45", "admin")
    });
    let a = wait_alert(&collector, BRUTE, 3);
    assert_eq!(a["occurrences"], 3, "{a}");
    assert_eq!(a["origin"], "correlation", "{a}");
    assert_eq!(a["entities"]["source.ip"], "203.0.113.45", "{a}");
    assert_eq!(a["status"], "open");
    append_lines(&auth, 10, 11, |_| sshd(150, true, "203.0.113.45", "admin"));
    let chained = wait_alert(&collector, BRUTE_THEN_SUCCESS, 1);
    assert_eq!(chained["urgency"], 75, "{chained}");

    // One alert per rule; the second address never reached the threshold; the single
    // failures (building blocks) raised nothing of their own.
    let all = alerts(&collector);
    let brute: Vec<&Value> = all.iter().filter(|a| a["rule"]["id"] == BRUTE).collect();
    assert_eq!(brute.len(), 1, "{all:#?}");
    assert!(
        all.iter()
            .all(|a| a["entities"]["source.ip"] != "198.51.100.7"),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .all(|a| a["rule"]["id"] != "ad5f00ba-9c65-4962-994c-52862b2d9655"),
        "{all:#?}"
    );
    // The agent evaluated the events with the collector's pack: the collector trusted them.
    let (_, rules) = collector.get("/api/v1/rules").unwrap();
    let version = rules["version"].as_str().unwrap().to_owned();
    let events = collector.export_events("vigie.source:auth").unwrap();
    assert_eq!(events.len(), 11);
    assert!(
        events
            .iter()
            .all(|e| e["vigie"]["rulepack"] == version.as_str()),
        "every event stamped with the collector's pack"
    );
}
