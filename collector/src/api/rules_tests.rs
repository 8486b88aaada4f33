//! Central detection through the routes: rules posted, listed, disabled and deleted; events
//! not evaluated at the edge get central detections and alerts, events evaluated with the
//! same pack are trusted; correlations raise one grouped alert; agents get the pack with an
//! ETag.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

use super::tests::{harness, harness_with, Harness, TOKEN};
use crate::config::IngestConfig;

const FAILED: &str = "title: SSH failed password
id: vigie-test-ssh-failed
logsource: {product: linux, service: auth}
detection:
  sel: {event.action: ssh_failed}
  condition: sel
level: low
";

const BRUTE: &str = "title: SSH brute force
id: vigie-test-ssh-brute
correlation:
  type: event_count
  rules: [vigie-test-ssh-failed]
  group-by: [source.ip]
  timespan: 5m
  condition: {gte: 3}
level: high
";

impl Harness {
    async fn pack_of(&self, peer: crate::listener::Peer) -> vigie_wire::Rulepack {
        let req = Request::get(vigie_wire::RULEPACK_PATH)
            .extension(peer)
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = self.call(req).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    async fn post_yaml(&self, yaml: &str, ctype: &str) -> (StatusCode, Value) {
        let req = Request::post("/api/v1/rules")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, ctype)
            .body(Body::from(yaml.to_owned()))
            .unwrap();
        let (status, _, body) = self.call(req).await;
        (status, body)
    }
}

fn failed_login(i: usize, ip: &str, extra: Value) -> String {
    let ts = (chrono::Utc::now() - chrono::Duration::seconds(120 - i as i64)).to_rfc3339();
    let mut ev = json!({"@timestamp": ts, "message": format!("Failed password for root from {ip}"),
        "event": {"action": "ssh_failed"}, "source": {"ip": ip}, "user": {"name": "root"},
        "host": {"name": "bastion-1"}});
    if let (Some(ev), Some(extra)) = (ev.as_object_mut(), extra.as_object()) {
        ev.extend(extra.clone());
    }
    ev.to_string() + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_rules_are_checked_listed_disabled_and_deleted() {
    let h = harness(IngestConfig::default());
    let before = h.get("/api/v1/rules").await;
    assert_eq!(before["items"].as_array().unwrap().len(), 0);

    // Not YAML content type.
    let (status, body) = h.post_yaml(FAILED, "application/json").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    // No id.
    let (status, body) = h
        .post_yaml(
            &FAILED.replace("id: vigie-test-ssh-failed\n", ""),
            "application/yaml",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs an `id`"),
        "{body}"
    );
    // An unknown modifier names the rule and the problem.
    let bad = FAILED.replace("event.action:", "event.action|nosuchmodifier:");
    let (status, body) = h.post_yaml(&bad, "application/yaml").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["rejected"][0]["id"], "vigie-test-ssh-failed", "{body}");
    // A correlation on a rule that does not exist.
    let (status, body) = h.post_yaml(BRUTE, "application/yaml").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("vigie-test-ssh-failed"),
        "{body}"
    );
    assert_eq!(
        h.get("/api/v1/rules").await["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Both documents in one body.
    let (status, body) = h
        .post_yaml(&format!("{FAILED}---\n{BRUTE}"), "application/yaml")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["ids"],
        json!(["vigie-test-ssh-failed", "vigie-test-ssh-brute"])
    );
    let v1 = body["version"].as_str().unwrap().to_owned();
    let rev1 = body["revision"].clone();
    let list = h.get("/api/v1/rules").await;
    assert_eq!(list["version"], v1.as_str());
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    let failed = items
        .iter()
        .find(|r| r["id"] == "vigie-test-ssh-failed")
        .unwrap();
    assert_eq!(failed["origin"], "api");
    assert_eq!(failed["kind"], "detection");
    // It only feeds the correlation (generate: false by default): no alert of its own.
    assert_eq!(failed["alerts"], false);
    let one = h.get("/api/v1/rules/vigie-test-ssh-brute").await;
    assert!(
        one["yaml"].as_str().unwrap().contains("event_count"),
        "{one}"
    );

    // Disabling the base rule takes the correlation with it (reported), and a new version.
    let (status, body) = h
        .send_json(
            "POST",
            "/api/v1/rules/vigie-test-ssh-failed/disable",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["version"], v1.as_str());
    let list = h.get("/api/v1/rules").await;
    let disabled = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "vigie-test-ssh-failed")
        .unwrap()
        .clone();
    assert_eq!(disabled["enabled"], false, "{list}");
    assert_eq!(list["rejected"].as_array().unwrap().len(), 1, "{list}");
    let (status, body) = h
        .send_json(
            "POST",
            "/api/v1/rules/vigie-test-ssh-failed/enable",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["version"],
        v1.as_str(),
        "same texts, same options: same version"
    );
    assert_eq!(
        h.get("/api/v1/rules").await["revision"],
        rev1,
        "a version seen before keeps its revision"
    );

    let (status, _) = h
        .send_json("DELETE", "/api/v1/rules/vigie-test-ssh-brute", json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .send_json("DELETE", "/api/v1/rules/vigie-test-ssh-brute", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .send_json("POST", "/api/v1/rules/nope/disable", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let list = h.get("/api/v1/rules").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_not_evaluated_at_the_edge_are_evaluated_centrally() {
    let h = harness(IngestConfig::default());
    let rule = FAILED.replace("level: low", "level: medium");
    let (status, body) = h.post_yaml(&rule, "application/yaml").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let version = body["version"].as_str().unwrap().to_owned();
    let peer = h.agent("agt_a", true);

    // No rule pack stamp: evaluated here, tagged, stored, alert raised.
    let body: String = (0..4)
        .map(|i| failed_login(i, "203.0.113.9", json!({})))
        .collect();
    let (status, ack) = h.lines(&peer, "s1/1", body).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let alerts = h.get("/api/v1/alerts").await;
    assert_eq!(alerts["total"], 1, "{alerts}");
    assert_eq!(alerts["items"][0]["origin"], "central");
    assert_eq!(alerts["items"][0]["occurrences"], 4);
    assert_eq!(alerts["items"][0]["entities"]["source.ip"], "203.0.113.9");
    let found = h
        .get("/api/v1/events?q=vigie.detections.rule_id:vigie-test-ssh-failed")
        .await;
    assert_eq!(
        found["total"], 4,
        "central detections are stored with the events: {found}"
    );

    // Evaluated at the edge with the same pack and found nothing: trusted, not evaluated.
    let stamp = json!({"vigie": {"rulepack": version}});
    let body: String = (0..3)
        .map(|i| failed_login(i, "198.51.100.7", stamp.clone()))
        .collect();
    let (status, ack) = h.lines(&peer, "s1/2", body).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    // Another pack version: evaluated again.
    let old = json!({"vigie": {"rulepack": "sha256-0000000000000000"}});
    let body: String = (0..2)
        .map(|i| failed_login(i, "192.0.2.44", old.clone()))
        .collect();
    let (status, ack) = h.lines(&peer, "s1/3", body).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let alerts = h.get("/api/v1/alerts?sort=first_seen").await;
    assert_eq!(alerts["total"], 2, "{alerts}");
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("vigie_events_trusted_edge_total 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigie_events_evaluated_central_total 6\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigie_detections_central_total 6\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correlation_raises_one_grouped_alert() {
    let h = harness(IngestConfig::default());
    let (status, body) = h
        .post_yaml(&format!("{FAILED}---\n{BRUTE}"), "application/yaml")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let peer = h.agent("agt_a", true);
    // Five failures from one address, one from another; two minutes old, so the lateness
    // (10 s of event time behind the newest) does not hold the older ones back.
    let mut body: String = (0..5)
        .map(|i| failed_login(i, "203.0.113.9", json!({})))
        .collect();
    body.push_str(&failed_login(5, "198.51.100.7", json!({})));
    let (status, ack) = h.lines(&peer, "s1/1", body).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    // The last events wait for the watermark or `lateness` of wall-clock time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let alerts = loop {
        let fired = h
            .state
            .central
            .tick(chrono::Utc::now() + chrono::Duration::seconds(11));
        if !fired.is_empty() {
            let events: Vec<_> = fired.iter().map(crate::alerts::entity_event).collect();
            let detections = fired.into_iter().enumerate().collect();
            super::agent::filter_and_raise(&h.state, detections, events).await;
        }
        let alerts = h.get("/api/v1/alerts").await;
        if alerts["total"] == 1 || std::time::Instant::now() > deadline {
            break alerts;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // The base rule raises nothing of its own; the correlation fired on the 3rd, 4th and 5th
    // failures of one address: one alert, three occurrences, the address as entity.
    assert_eq!(alerts["total"], 1, "{alerts}");
    let a = &alerts["items"][0];
    assert_eq!(a["rule"]["id"], "vigie-test-ssh-brute", "{a}");
    assert_eq!(a["origin"], "correlation");
    assert_eq!(a["urgency"], 75);
    assert_eq!(a["occurrences"], 3, "{a}");
    assert_eq!(a["entities"]["source.ip"], "203.0.113.9");
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("vigie_correlation_fired_total 3\n"),
        "{metrics}"
    );

    // The state survives a save and a fresh start (the harness's database).
    h.state.central.save_state().unwrap();
    let again = crate::central::Central::start(&Default::default(), h.state.db.clone()).unwrap();
    assert_eq!(again.correlation_stats().0.fired, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_get_the_pack_with_an_etag() {
    let h = harness(IngestConfig::default());
    let (status, body) = h
        .post_yaml(&format!("{FAILED}---\n{BRUTE}"), "application/yaml")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let version = body["version"].as_str().unwrap().to_owned();
    let peer = h.agent("agt_a", true);
    let req = Request::get(vigie_wire::RULEPACK_PATH)
        .extension(peer.clone())
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = h.call(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::ETAG], format!("\"{version}\"").as_str());
    let pack: vigie_wire::Rulepack = serde_json::from_value(body).unwrap();
    assert_eq!(pack.version, version);
    assert_eq!(pack.rules.len(), 2);
    // The agent loading these texts gets the same version.
    let sources: Vec<(String, String)> = pack
        .rules
        .iter()
        .map(|r| (r.name.clone(), r.text.clone()))
        .collect();
    let (set, _) = vigie_detect::RuleSet::load_sources(&sources, &Default::default());
    assert_eq!(set.version(), version);

    let req = Request::get(vigie_wire::RULEPACK_PATH)
        .header(header::IF_NONE_MATCH, format!("\"{version}\""))
        .extension(peer)
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = h.call(req).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    // Without an enrolled certificate: refused.
    let stranger = h.agent("agt_x", false);
    let req = Request::get(vigie_wire::RULEPACK_PATH)
        .extension(stranger)
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = h.call(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_can_group_its_alerts_by_its_own_fields() {
    let h = harness(IngestConfig::default());
    // Grouped by user only: failures of one user from several addresses are one alert.
    let rule = FAILED.replace(
        "level: low",
        "level: medium\nvigie:\n  group_by: [user.name]",
    );
    let (status, body) = h.post_yaml(&rule, "application/yaml").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let peer = h.agent("agt_a", true);
    let body: String = ["203.0.113.9", "198.51.100.7", "192.0.2.1"]
        .iter()
        .enumerate()
        .map(|(i, ip)| failed_login(i, ip, json!({})))
        .collect();
    let (status, ack) = h.lines(&peer, "s1/1", body).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let alerts = h.get("/api/v1/alerts").await;
    assert_eq!(alerts["total"], 1, "{alerts}");
    assert_eq!(alerts["items"][0]["occurrences"], 3);
    assert_eq!(alerts["items"][0]["entities"]["user.name"], "root");

    // Without it, the default key (host, user, source and destination addresses) splits them.
    let h = harness(IngestConfig::default());
    let rule = FAILED.replace("level: low", "level: medium");
    let (status, _) = h.post_yaml(&rule, "application/yaml").await;
    assert_eq!(status, StatusCode::CREATED);
    let peer = h.agent("agt_a", true);
    let body: String = ["203.0.113.9", "198.51.100.7", "192.0.2.1"]
        .iter()
        .enumerate()
        .map(|(i, ip)| failed_login(i, ip, json!({})))
        .collect();
    let (status, _) = h.lines(&peer, "s1/1", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.get("/api/v1/alerts").await["total"], 3);
}

const TELEPORT: &str = "title: Teleport access denied
id: vigie-test-teleport-denied
logsource: {product: teleport, service: audit}
detection:
  sel: {event.action: access_denied}
  condition: sel
level: medium
";

/// `[detection.groups]`: a group's agents get their own pack (its rules added, some left
/// out), with its own version, and their events are judged by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_group_gets_its_own_pack_and_is_judged_by_it() {
    let h = harness_with(IngestConfig::default(), |dir| {
        std::fs::write(dir.join("base.yml"), FAILED).unwrap();
        std::fs::write(dir.join("bastions.yml"), TELEPORT).unwrap();
        let mut groups = std::collections::BTreeMap::new();
        groups.insert(
            "bastions".to_owned(),
            crate::config::GroupPackConfig {
                rules: vec![dir.join("bastions.yml")],
                disabled: vec!["vigie-test-ssh-failed".into()],
            },
        );
        crate::config::DetectionConfig {
            rules: vec![dir.join("base.yml")],
            groups,
            ..Default::default()
        }
    });
    let workstation = h.agent_in("agt_ws", true, "workstations");
    let bastion = h.agent_in("agt_bastion", true, "bastions");
    let ws_pack = h.pack_of(workstation.clone()).await;
    let bastion_pack = h.pack_of(bastion.clone()).await;
    assert_ne!(ws_pack.version, bastion_pack.version);
    let loaded = |p: &vigie_wire::Rulepack| {
        let sources: Vec<(String, String)> = p
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.text.clone()))
            .collect();
        let opts = vigie_detect::LoadOptions {
            disabled: p.disabled.iter().cloned().collect(),
            ..Default::default()
        };
        let (set, _) = vigie_detect::RuleSet::load_sources(&sources, &opts);
        assert_eq!(set.version(), p.version, "the agent gets the same version");
        set.rules().map(|r| r.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(loaded(&ws_pack), vec!["vigie-test-ssh-failed"]);
    assert_eq!(loaded(&bastion_pack), vec!["vigie-test-teleport-denied"]);

    // Unstamped events from the bastion: judged by the bastions' pack.
    let denied = json!({"@timestamp": "2026-11-27T10:00:00Z", "event": {"action": "access_denied"},
        "vigie": {"logsource": {"product": "teleport", "service": "audit"}}, "message": "denied"});
    let body = format!("{}\n{}", failed_login(0, "203.0.113.5", json!({})), denied);
    let (status, ack) = h.lines(&bastion, "b/1", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let found = h.get("/api/v1/events?q=vigie.detections.rule_id:*").await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(
        found["events"][0]["vigie"]["detections"][0]["rule_id"],
        "vigie-test-teleport-denied"
    );
    // The same lines from a workstation: the collector's pack.
    let (status, ack) = h.lines(&workstation, "w/1", body).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let found = h
        .get("/api/v1/events?q=vigie.detections.rule_id:vigie-test-ssh-failed")
        .await;
    assert_eq!(found["total"], 1, "{found}");
    // Stamped with the bastions' version: trusted.
    let stamped = json!({"@timestamp": "2026-11-27T10:00:00Z", "event": {"action": "access_denied"},
        "vigie": {"rulepack": bastion_pack.version, "logsource": {"product": "teleport", "service": "audit"}}});
    let (status, _) = h.lines(&bastion, "b/2", format!("{stamped}\n")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(h
        .metrics()
        .await
        .contains("vigie_events_trusted_edge_total 1\n"));

    let rules = h.get("/api/v1/rules").await;
    assert_eq!(
        rules["groups"]["bastions"]["rules"],
        json!(["vigie-test-teleport-denied"]),
        "{rules}"
    );
    assert_eq!(rules["groups"]["bastions"]["version"], bastion_pack.version);
}
