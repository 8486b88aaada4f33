//! Fault injection: the real agent and collector on loopback with real mTLS,
//! uniquely numbered lines written while things go wrong, and a check
//! through the export API that every number arrived exactly once.
//!
//! `VIGIE_SOAK=1` makes the scenarios longer (more kills, more lines).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vigie_e2e::proxy::{FaultProxy, Mode};
use vigie_e2e::{append_lines, Agent, Collector};

const BATCH: &str = "max_events = 1000\ntimeout_ms = 100";
const QUERY: &str = "vigie.source:app";

fn soak() -> bool {
    std::env::var_os("VIGIE_SOAK").is_some()
}

fn append(path: &Path, from: usize, to: usize) {
    append_lines(path, from, to, |i| {
        format!("fault line {i:07} user=bob src=192.0.2.{}", i % 250)
    });
}

/// Copies `path` to `to` and truncates `path`, like logrotate's copytruncate.
fn copytruncate(path: &Path, to: &Path) {
    std::fs::copy(path, to).unwrap();
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

fn sources(logs: &Path) -> String {
    format!(
        "[[sources]]\nname = \"app\"\ntype = \"file\"\ninclude = [\"{}/app.log*\"]\nformat = \"plain\"\nread_from = \"beginning\"\nglob_interval_ms = 200\n",
        logs.display()
    )
}

struct Setup {
    collector: Collector,
    agent: Agent,
    logs: PathBuf,
}

fn setup(root: &Path) -> Setup {
    let collector = Collector::start(root).unwrap();
    let agent = Agent::enroll(root, "agent", &collector).unwrap();
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    Setup {
        collector,
        agent,
        logs,
    }
}

/// Waits for `n` events, then checks that numbers `0..n` arrived exactly once.
fn assert_exactly_once(collector: &Collector, n: usize, timeout: Duration) {
    let got = collector.wait_count(QUERY, n as u64, timeout).unwrap();
    let messages = collector.export_messages(QUERY).unwrap();
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for m in &messages {
        let num = m
            .strip_prefix("fault line ")
            .and_then(|r| r.get(..7))
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("unexpected message {m:?}"));
        *seen.entry(num).or_default() += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(10).collect();
    let missing: Vec<_> = (0..n).filter(|i| !seen.contains_key(i)).take(10).collect();
    assert!(
        doubled.is_empty() && missing.is_empty() && seen.len() == n,
        "count={got} exported={} distinct={} of {n}; doubled (first 10) {doubled:?}; missing (first 10) {missing:?}",
        messages.len(),
        seen.len()
    );
    assert_eq!(messages.len(), n);
}

fn log_of(agent: &Agent) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(&agent.dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("agent-") {
            out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    out
}

#[test]
fn agent_killed_repeatedly_during_writes_and_rotations_loses_and_doubles_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        collector,
        mut agent,
        logs,
    } = setup(tmp.path());
    agent.configure(&collector, BATCH, &sources(&logs)).unwrap();
    let app = logs.join("app.log");
    let kills = if soak() { 20 } else { 8 };
    let per_round = 3_000;
    agent.start().unwrap();
    let mut next = 0;
    for round in 0..kills {
        // Lines keep coming while the agent runs, then it dies mid-work.
        for _ in 0..3 {
            append(&app, next, next + per_round / 3);
            next += per_round / 3;
            std::thread::sleep(Duration::from_millis(60));
        }
        agent.proc.as_mut().unwrap().kill();
        // Rotations while the agent is down, alternating rename and copytruncate.
        match round % 3 {
            0 => std::fs::rename(&app, logs.join(format!("app.log.{round}"))).unwrap(),
            1 => copytruncate(&app, &logs.join(format!("app.log.{round}"))),
            _ => {}
        }
        append(&app, next, next + 500);
        next += 500;
        agent.start().unwrap();
    }
    assert_exactly_once(&collector, next, Duration::from_secs(120));
    // Re-sent after a kill: only batches that were in flight (8 at most),
    // answered as duplicates, never stored twice.
    let resent = metric(&collector, "vigie_batches_duplicate_total");
    println!("{kills} kills: {resent} batches sent again and answered as duplicates");
    assert!(
        resent <= 8 * kills as u64,
        "{resent} duplicates for {kills} kills"
    );
    assert!(
        !log_of(&agent).contains(" ERROR "),
        "no error expected:\n{}",
        log_of(&agent)
    );
}

#[test]
fn collector_killed_and_restarted_while_the_agent_sends() {
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        mut collector,
        mut agent,
        logs,
    } = setup(tmp.path());
    agent.configure(&collector, BATCH, &sources(&logs)).unwrap();
    let app = logs.join("app.log");
    agent.start().unwrap();
    let rounds = if soak() { 10 } else { 4 };
    let mut next = 0;
    for _ in 0..rounds {
        for _ in 0..5 {
            append(&app, next, next + 2_000);
            next += 2_000;
            std::thread::sleep(Duration::from_millis(40));
        }
        collector.proc.as_mut().unwrap().kill();
        append(&app, next, next + 2_000);
        next += 2_000;
        std::thread::sleep(Duration::from_millis(300));
        collector.serve().unwrap();
    }
    assert_exactly_once(&collector, next, Duration::from_secs(120));
}

#[test]
fn network_black_holed_longer_than_the_request_timeout_then_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        collector,
        mut agent,
        logs,
    } = setup(tmp.path());
    let upstream = format!("127.0.0.1:{}", collector.port).parse().unwrap();
    let proxy = FaultProxy::start(upstream).unwrap();
    let url = format!("https://127.0.0.1:{}", proxy.addr().port());
    agent
        .configure_via(
            &collector,
            &url,
            "request_timeout_secs = 2",
            BATCH,
            &sources(&logs),
        )
        .unwrap();
    let app = logs.join("app.log");
    append(&app, 0, 5_000);
    agent.start().unwrap();
    let first = collector
        .wait_count(QUERY, 5_000, Duration::from_secs(60))
        .unwrap();
    assert_eq!(first, 5_000, "agent log:\n{}", log_of(&agent));

    proxy.set_mode(Mode::BlackHole);
    append(&app, 5_000, 15_000);
    // Longer than the request timeout: requests in flight time out and retry.
    std::thread::sleep(Duration::from_secs(5));
    append(&app, 15_000, 20_000);
    proxy.set_mode(Mode::Pass);
    assert_exactly_once(&collector, 20_000, Duration::from_secs(120));
    assert!(
        log_of(&agent).contains("sending failed; will retry"),
        "the agent should have seen the black hole"
    );
}

/// The spool dir's segment bytes.
fn spool_bytes(agent: &Agent) -> u64 {
    std::fs::read_dir(agent.dir.join("spool"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Waits until the spool stops growing (at least 2 s unchanged); returns its bytes.
fn spool_settled(agent: &Agent, timeout: Duration) -> u64 {
    let start = Instant::now();
    let (mut peak, mut stable) = (0, 0);
    while start.elapsed() < timeout && stable < 4 {
        let now = spool_bytes(agent);
        stable = if now == peak && now > 0 {
            stable + 1
        } else {
            0
        };
        peak = peak.max(now);
        std::thread::sleep(Duration::from_millis(500));
    }
    peak
}

/// A kill can land in the middle of a spool write: the last record is then
/// torn. Its lines were never counted as spooled, so the next start must
/// read them again from the file (the seq is skipped, not the lines).
#[test]
fn a_spool_record_torn_by_a_kill_is_read_again_from_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        mut collector,
        mut agent,
        logs,
    } = setup(tmp.path());
    agent.configure(&collector, BATCH, &sources(&logs)).unwrap();
    // Nothing is acknowledged while the collector is down: all stays spooled.
    collector.proc.as_mut().unwrap().kill();
    let app = logs.join("app.log");
    append(&app, 0, 5_000);
    agent.start().unwrap();
    assert!(spool_settled(&agent, Duration::from_secs(60)) > 0);
    agent.proc.as_mut().unwrap().kill();
    // Tear the last record as a kill during its write() would.
    let mut segs: Vec<PathBuf> = std::fs::read_dir(agent.dir.join("spool"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".seg"))
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 10)
        .unwrap();

    collector.serve().unwrap();
    agent.start().unwrap();
    assert_exactly_once(&collector, 5_000, Duration::from_secs(60));
    let log = log_of(&agent);
    assert!(
        log.contains("last record incomplete"),
        "the torn record should be reported:\n{log}"
    );
    assert!(!log.contains(" ERROR "), "a torn tail is no error:\n{log}");
}

#[test]
fn backlog_spooled_while_the_collector_is_down_drains_with_rotations() {
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        mut collector,
        mut agent,
        logs,
    } = setup(tmp.path());
    let spool = "[spool]\nsegment_bytes = 1048576\n";
    agent
        .configure_via(
            &collector,
            &collector.base_url(),
            "",
            "max_events = 1000\ntimeout_ms = 100\nmax_bytes = 262144",
            &format!("{spool}\n{}", sources(&logs)),
        )
        .unwrap();
    let app = logs.join("app.log");
    append(&app, 0, 1_000);
    agent.start().unwrap();
    let first = collector
        .wait_count(QUERY, 1_000, Duration::from_secs(60))
        .unwrap();
    assert_eq!(first, 1_000, "agent log:\n{}", log_of(&agent));
    collector.proc.as_mut().unwrap().kill();

    // A backlog, with two rotations, while the collector is down.
    let total = if soak() { 500_000 } else { 100_000 };
    let third = total / 3;
    append(&app, 1_000, third);
    std::fs::rename(&app, logs.join("app.log.1")).unwrap();
    append(&app, third, 2 * third);
    copytruncate(&app, &logs.join("app.log.2"));
    append(&app, 2 * third, total);
    // The backlog goes to the spool: wait until it stops growing.
    let peak = spool_settled(&agent, Duration::from_secs(120));
    assert!(
        peak > 1 << 20,
        "the backlog should be on disk, spool peaked at {peak} bytes"
    );

    collector.serve().unwrap();
    assert_exactly_once(&collector, total, Duration::from_secs(300));
    // Acknowledged segments are reclaimed (the one being written may stay).
    let start = Instant::now();
    while spool_bytes(&agent) > 1 << 20 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        spool_bytes(&agent) <= 1 << 20,
        "spool still holds {} bytes after the drain",
        spool_bytes(&agent)
    );
}

#[test]
fn full_spool_blocks_without_loss_or_drops_oldest_and_reports_it() {
    for drop_oldest in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let Setup {
            mut collector,
            mut agent,
            logs,
        } = setup(tmp.path());
        let when_full = if drop_oldest { "drop_oldest" } else { "block" };
        // Small segments and a spool of four of them.
        let spool = format!(
            "[spool]\nsegment_bytes = 262144\nmax_bytes = 1048576\nwhen_full = \"{when_full}\"\n"
        );
        agent
            .configure_via(
                &collector,
                &collector.base_url(),
                "",
                "max_events = 1000\ntimeout_ms = 100\nmax_bytes = 65536",
                &format!("{spool}\n{}", sources(&logs)),
            )
            .unwrap();
        collector.proc.as_mut().unwrap().kill();
        let app = logs.join("app.log");
        let total = 150_000;
        append(&app, 0, total);
        agent.start().unwrap();
        // Let the agent fill the spool (several times over in drop mode).
        let log_says = |what: &str| log_of(&agent).contains(what);
        let start = Instant::now();
        let signal = if drop_oldest {
            "oldest batches dropped"
        } else {
            "spool full"
        };
        while !log_says(signal) && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(log_says(signal), "expected {signal:?} in the agent log");
        assert!(
            spool_bytes(&agent) <= 1 << 20,
            "the spool stays within max_bytes"
        );
        std::thread::sleep(Duration::from_secs(2));
        collector.serve().unwrap();
        if !drop_oldest {
            assert_exactly_once(&collector, total, Duration::from_secs(180));
            continue;
        }
        // Drop mode: what arrived + what was reported dropped = everything,
        // and nothing arrived twice.
        let (arrived, reported) =
            arrived_and_dropped(&collector, total as u64, Duration::from_secs(180));
        assert!(reported > 0, "drops must be reported");
        assert_eq!(
            arrived + reported,
            total as u64,
            "arrived {arrived} + dropped {reported} must be every line"
        );
        let messages = collector.export_messages(QUERY).unwrap();
        let distinct: std::collections::HashSet<_> = messages.iter().collect();
        assert_eq!(distinct.len(), messages.len(), "nothing doubled");
    }
}

/// Polls until the lines stored plus the drops reported reach `total` (or
/// `timeout`); returns both.
fn arrived_and_dropped(collector: &Collector, total: u64, timeout: Duration) -> (u64, u64) {
    let start = Instant::now();
    loop {
        let arrived = collector.count(QUERY).unwrap();
        let reported = loss_reported(collector);
        if arrived + reported >= total || start.elapsed() > timeout {
            return (arrived, reported);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The `app` source with more keys (a rate limit).
fn sources_with(logs: &Path, keys: &str) -> String {
    sources(logs).replace(
        "glob_interval_ms = 200\n",
        &format!("glob_interval_ms = 200\n{keys}"),
    )
}

/// A counter of the collector's `/metrics` (0 when absent).
fn metric(collector: &Collector, name: &str) -> u64 {
    let text = collector
        .http()
        .get(collector.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Sum of `vigie.loss.events` over the data-loss events stored.
fn loss_reported(collector: &Collector) -> u64 {
    let r = collector
        .http()
        .get(collector.url("/api/v1/events/export"))
        .query(&[("q", "event.action:data-loss")])
        .bearer_auth(&collector.token)
        .send()
        .unwrap();
    let text = r.text().unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v.pointer("/vigie/loss/events")
                .and_then(serde_json::Value::as_u64)
        })
        .sum()
}

#[test]
fn rate_limit_drop_mode_counts_and_reports_every_dropped_line() {
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        collector,
        mut agent,
        logs,
    } = setup(tmp.path());
    let limited = sources_with(
        &logs,
        "max_events_per_second = 500\nburst_events = 1000\nwhen_limited = \"drop\"\n",
    );
    agent
        .configure_via(
            &collector,
            &collector.base_url(),
            "stats_interval_secs = 1",
            BATCH,
            &limited,
        )
        .unwrap();
    let total = 20_000;
    append(&logs.join("app.log"), 0, total);
    agent.start().unwrap();
    let (arrived, reported) =
        arrived_and_dropped(&collector, total as u64, Duration::from_secs(90));
    assert!(
        arrived >= 1_000 && arrived < total as u64,
        "the burst passes, the flood does not: {arrived}"
    );
    assert_eq!(
        arrived + reported,
        total as u64,
        "arrived {arrived} + reported dropped {reported}"
    );
    let (status, v) = collector
        .get("/api/v1/events?q=event.reason:rate_limit&limit=1")
        .unwrap();
    assert_eq!(status, 200);
    let msg = v["events"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(msg.contains("source app"), "{msg}");
    // The fleet view shows the agent degraded, and why.
    let start = Instant::now();
    let mut agent_view = serde_json::Value::Null;
    while start.elapsed() < Duration::from_secs(30) {
        agent_view = collector.get("/api/v1/agents").unwrap().1["items"][0].clone();
        if agent_view["status"] == "degraded" {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(agent_view["status"], "degraded", "{agent_view}");
    assert!(
        agent_view["status_reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("dropping events"),
        "{agent_view}"
    );
}

#[test]
fn rate_limit_block_mode_slows_the_source_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        collector,
        mut agent,
        logs,
    } = setup(tmp.path());
    let limited = sources_with(&logs, "max_events_per_second = 2000\nburst_events = 1000\n");
    agent.configure(&collector, BATCH, &limited).unwrap();
    let app = logs.join("app.log");
    let total = 8_000;
    append(&app, 0, total);
    let start = Instant::now();
    agent.start().unwrap();
    assert_exactly_once(&collector, total, Duration::from_secs(90));
    // 7,000 lines past the burst at 2,000/s take at least 3.5 s.
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "the limit should have slowed the source: {:?}",
        start.elapsed()
    );
    assert_eq!(loss_reported(&collector), 0);
}

/// logrotate's numbering: `app.log.N` → `app.log.N+1`, then `app.log` →
/// `app.log.1` by rename, or copied to `app.log.1` and truncated.
fn logrotate(logs: &Path, rotated: &mut usize, copy: bool) {
    for n in (1..=*rotated).rev() {
        std::fs::rename(
            logs.join(format!("app.log.{n}")),
            logs.join(format!("app.log.{}", n + 1)),
        )
        .unwrap();
    }
    let app = logs.join("app.log");
    if copy {
        copytruncate(&app, &logs.join("app.log.1"));
    } else {
        std::fs::rename(&app, logs.join("app.log.1")).unwrap();
    }
    *rotated += 1;
}

#[test]
fn rotation_storm_every_line_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        collector,
        mut agent,
        logs,
    } = setup(tmp.path());
    agent.configure(&collector, BATCH, &sources(&logs)).unwrap();
    agent.start().unwrap();
    // 200,000 lines at about 20,000 lines/s, rotated every 1.25 s,
    // alternating rename and copytruncate.
    let total = 200_000;
    let (chunk, pause) = (1_000, Duration::from_millis(50));
    let app = logs.join("app.log");
    let (mut next, mut rotated, mut last_rotation) = (0, 0, Instant::now());
    while next < total {
        let t = Instant::now();
        append(&app, next, next + chunk);
        next += chunk;
        if last_rotation.elapsed() >= Duration::from_millis(1250) {
            let copy = rotated % 2 == 1;
            logrotate(&logs, &mut rotated, copy);
            last_rotation = Instant::now();
        }
        std::thread::sleep(pause.saturating_sub(t.elapsed()));
    }
    assert!(rotated >= 6, "only {rotated} rotations");
    assert_exactly_once(&collector, total, Duration::from_secs(240));
}

#[test]
fn an_agent_over_its_quota_is_slowed_by_429_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        mut collector,
        mut agent,
        logs,
    } = setup(tmp.path());
    // A small quota: 2,000 events/s, bursts of 5,000 (batches are 1,000).
    let path = collector.config_path();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_batch_events = 50000", "max_batch_events = 5000")
        .replace(
            "agent_events_per_second = 5000",
            "agent_events_per_second = 2000",
        )
        .replace("agent_burst_events = 100000", "agent_burst_events = 5000");
    std::fs::write(&path, text).unwrap();
    collector
        .proc
        .take()
        .unwrap()
        .terminate(Duration::from_secs(30));
    collector.serve().unwrap();
    agent.configure(&collector, BATCH, &sources(&logs)).unwrap();
    let app = logs.join("app.log");
    let total = 15_000;
    append(&app, 0, total);
    let start = Instant::now();
    agent.start().unwrap();
    assert_exactly_once(&collector, total, Duration::from_secs(120));
    // 10,000 events past the burst at 2,000/s take at least 4 s.
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(
        metric(
            &collector,
            "vigie_batches_throttled_total{reason=\"agent\"}"
        ) > 0,
        "429s expected in /metrics"
    );
    assert!(
        log_of(&agent).contains("collector busy; will retry"),
        "the agent should have been told to wait"
    );
}

#[test]
fn agent_stats_reach_the_fleet_api() {
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        collector,
        mut agent,
        logs,
    } = setup(tmp.path());
    let src = sources(&logs);
    agent
        .configure_via(
            &collector,
            &collector.base_url(),
            "stats_interval_secs = 1",
            BATCH,
            &src,
        )
        .unwrap();
    append(&logs.join("app.log"), 0, 3_000);
    agent.start().unwrap();
    assert_exactly_once(&collector, 3_000, Duration::from_secs(60));
    let start = Instant::now();
    let mut stats = serde_json::Value::Null;
    while start.elapsed() < Duration::from_secs(30) {
        let (status, v) = collector.get("/api/v1/agents").unwrap();
        assert_eq!(status, 200);
        stats = v["items"][0]["stats"].clone();
        if stats["events_shipped"].as_u64() == Some(3_000) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(stats["events_shipped"].as_u64(), Some(3_000), "{stats}");
    assert_eq!(stats["lines_read"].as_u64(), Some(3_000), "{stats}");
    assert_eq!(stats["dropped"]["spool_full"].as_u64(), Some(0), "{stats}");
    assert!(stats["reported_at"].is_string(), "{stats}");
    assert!(!stats["os"].as_str().unwrap().is_empty(), "{stats}");
    assert!(stats["spool_max_bytes"].as_u64().unwrap() > 0, "{stats}");
    let source = &stats["sources"][0];
    assert_eq!(source["name"], "app", "{stats}");
    assert_eq!(source["kind"], "file", "{stats}");
    assert_eq!(source["lines_read"].as_u64(), Some(3_000), "{stats}");
    assert_eq!(source["lag_bytes"].as_u64(), Some(0), "{stats}");
    let (_, v) = collector.get("/api/v1/agents").unwrap();
    assert_eq!(v["items"][0]["status"], "online", "{v}");
    assert_eq!(
        v["items"][0]["status_reasons"],
        serde_json::json!([]),
        "{v}"
    );
}
