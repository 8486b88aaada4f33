//! Sigma correlations through the public API: each type with its exact window edges, group-by,
//! chained correlations, both syntaxes, out-of-order events within the lateness, and a restart
//! in the middle of a window (snapshot and restore).
//!
//! Window edges follow the Sigma correlation specification as rsigma implements it: an event at
//! `t` counts with the events at `t - timespan` and later (both ends included).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Map, Value};
use vigie_detect::{CorrelationHit, Correlator, CorrelatorConfig, LoadOptions, RuleSet};

const BASE: &str = r#"
title: SSH failed password
id: ssh-failed
name: ssh_failed
logsource: {product: linux, service: auth}
detection:
  sel: {event.action: ssh_failed}
  condition: sel
level: low
---
title: SSH accepted
id: ssh-accepted
name: ssh_accepted
logsource: {product: linux, service: auth}
detection:
  sel: {event.action: ssh_accepted}
  condition: sel
level: low
"#;

/// 2026-11-26T10:00:00Z
const T0: i64 = 1_795_687_200;

fn pack(correlations: &str) -> RuleSet {
    let text = format!("{BASE}\n---\n{correlations}");
    let (set, report) = RuleSet::load_str("test.yml", &text, &LoadOptions::default());
    assert!(report.rejected.is_empty(), "{:#?}", report.rejected);
    set
}

fn correlator(set: &RuleSet, lateness_secs: u64) -> Correlator {
    let cfg = CorrelatorConfig {
        lateness_secs,
        ..CorrelatorConfig::default()
    };
    Correlator::new(set, cfg).expect("correlator")
}

fn event(action: &str, ip: &str, user: &str, t: i64) -> Map<String, Value> {
    let ts = chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339();
    json!({"@timestamp": ts, "event": {"action": action}, "source": {"ip": ip},
           "user": {"name": user}, "host": {"name": "bastion-1"}})
    .as_object()
    .unwrap()
    .clone()
}

/// Evaluates the event with the pack, feeds its detections, and advances to its time.
fn feed(set: &RuleSet, c: &mut Correlator, ev: &Map<String, Value>, t: i64) -> Vec<CorrelationHit> {
    let ids: Vec<String> = set.evaluate_map(ev).iter().map(|r| r.id.clone()).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut hits = c.push(ev, &refs, t, t);
    hits.extend(c.advance(t));
    hits
}

const BRUTE: &str = r#"
title: SSH brute force
id: ssh-brute
correlation:
  type: event_count
  rules: [ssh_failed]
  group-by: [source.ip]
  timespan: 60s
  condition: {gte: 3}
level: high
"#;

#[test]
fn event_count_counts_both_window_ends() {
    let set = pack(BRUTE);
    let mut c = correlator(&set, 0);
    for t in [0, 30] {
        assert!(feed(
            &set,
            &mut c,
            &event("ssh_failed", "203.0.113.9", "root", T0 + t),
            T0 + t
        )
        .is_empty());
    }
    // Third failure exactly `timespan` after the first: the first still counts.
    let hits = feed(
        &set,
        &mut c,
        &event("ssh_failed", "203.0.113.9", "root", T0 + 60),
        T0 + 60,
    );
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].rule.id, "ssh-brute");
    assert_eq!(hits[0].rule.level, "high");
    assert_eq!(hits[0].value, 3.0);
    assert_eq!(
        hits[0].group,
        vec![("source.ip".to_owned(), "203.0.113.9".to_owned())]
    );
}

#[test]
fn event_count_one_second_past_the_window_does_not_fire() {
    let set = pack(BRUTE);
    let mut c = correlator(&set, 0);
    for t in [0, 30, 61] {
        let hits = feed(
            &set,
            &mut c,
            &event("ssh_failed", "203.0.113.9", "root", T0 + t),
            T0 + t,
        );
        assert!(hits.is_empty(), "fired at +{t}: {hits:?}");
    }
    // Other rules and other groups do not count.
    let mut c = correlator(&set, 0);
    feed(
        &set,
        &mut c,
        &event("ssh_failed", "203.0.113.9", "root", T0),
        T0,
    );
    feed(
        &set,
        &mut c,
        &event("ssh_failed", "198.51.100.7", "root", T0 + 1),
        T0 + 1,
    );
    let hits = feed(
        &set,
        &mut c,
        &event("ssh_accepted", "203.0.113.9", "root", T0 + 2),
        T0 + 2,
    );
    assert!(hits.is_empty());
    assert!(!c.wants("ssh-accepted"));
    assert!(c.wants("ssh_failed"));
}

#[test]
fn value_count_counts_distinct_values() {
    let set = pack(
        r#"
title: Password spraying
id: spray
correlation:
  type: value_count
  rules: [ssh-failed]
  group-by: [source.ip]
  timespan: 5m
  condition: {gte: 3, field: user.name}
level: high
"#,
    );
    let mut c = correlator(&set, 0);
    let users = ["alice", "alice", "bob", "bob"];
    for (i, u) in users.iter().enumerate() {
        let t = T0 + i as i64;
        assert!(feed(&set, &mut c, &event("ssh_failed", "203.0.113.9", u, t), t).is_empty());
    }
    // The third distinct user, 300 s after the first event: still inside.
    let hits = feed(
        &set,
        &mut c,
        &event("ssh_failed", "203.0.113.9", "carol", T0 + 300),
        T0 + 300,
    );
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].value, 3.0);
}

const SEQUENCE: &str = r#"
title: Brute force then success
id: brute-then-success
correlation:
  type: TYPE
  rules: [ssh_failed, ssh_accepted]
  group-by: [source.ip]
  timespan: 10m
level: critical
"#;

#[test]
fn temporal_needs_every_rule_in_any_order() {
    let set = pack(&SEQUENCE.replace("TYPE", "temporal"));
    let mut c = correlator(&set, 0);
    assert!(feed(
        &set,
        &mut c,
        &event("ssh_accepted", "203.0.113.9", "root", T0),
        T0
    )
    .is_empty());
    let hits = feed(
        &set,
        &mut c,
        &event("ssh_failed", "203.0.113.9", "root", T0 + 600),
        T0 + 600,
    );
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].rule.level, "critical");
    // 601 s apart: outside.
    let mut c = correlator(&set, 0);
    feed(
        &set,
        &mut c,
        &event("ssh_accepted", "203.0.113.9", "root", T0),
        T0,
    );
    let hits = feed(
        &set,
        &mut c,
        &event("ssh_failed", "203.0.113.9", "root", T0 + 601),
        T0 + 601,
    );
    assert!(hits.is_empty());
}

#[test]
fn temporal_ordered_needs_the_order() {
    let set = pack(&SEQUENCE.replace("TYPE", "temporal_ordered"));
    let mut c = correlator(&set, 0);
    feed(
        &set,
        &mut c,
        &event("ssh_accepted", "203.0.113.9", "root", T0),
        T0,
    );
    let hits = feed(
        &set,
        &mut c,
        &event("ssh_failed", "203.0.113.9", "root", T0 + 5),
        T0 + 5,
    );
    assert!(
        hits.is_empty(),
        "success before failure is not the sequence"
    );
    let hits = feed(
        &set,
        &mut c,
        &event("ssh_accepted", "203.0.113.9", "root", T0 + 10),
        T0 + 10,
    );
    assert_eq!(hits.len(), 1, "failure then success is");
}

#[test]
fn legacy_action_correlation_syntax_loads() {
    let set = pack(
        r#"
action: correlation
title: SSH brute force (legacy syntax)
id: ssh-brute-legacy
type: event_count
rule: ssh_failed
group-by: [source.ip]
timespan: 1m
condition: {gte: 2}
level: medium
"#,
    );
    assert_eq!(set.correlations().len(), 1);
    let mut c = correlator(&set, 0);
    feed(
        &set,
        &mut c,
        &event("ssh_failed", "203.0.113.9", "root", T0),
        T0,
    );
    let hits = feed(
        &set,
        &mut c,
        &event("ssh_failed", "203.0.113.9", "root", T0 + 1),
        T0 + 1,
    );
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].rule.id, "ssh-brute-legacy");
}

#[test]
fn chained_correlation_fires_on_its_parent() {
    let set = pack(&format!(
        "{BRUTE}\n---\n{}",
        r#"
title: Brute force then success (chained)
id: brute-chain
correlation:
  type: temporal_ordered
  rules: [ssh-brute, ssh_accepted]
  group-by: [source.ip]
  timespan: 10m
level: critical
"#
    ));
    let mut c = correlator(&set, 0);
    let mut all = Vec::new();
    for t in 0..3 {
        all.extend(feed(
            &set,
            &mut c,
            &event("ssh_failed", "203.0.113.9", "root", T0 + t),
            T0 + t,
        ));
    }
    all.extend(feed(
        &set,
        &mut c,
        &event("ssh_accepted", "203.0.113.9", "root", T0 + 100),
        T0 + 100,
    ));
    let ids: Vec<&str> = all.iter().map(|h| h.rule.id.as_str()).collect();
    assert!(ids.contains(&"ssh-brute"), "{ids:?}");
    assert!(ids.contains(&"brute-chain"), "{ids:?}");
}

#[test]
fn out_of_order_events_within_the_lateness_land_in_their_window() {
    let set = pack(BRUTE);
    // Arrival order 60, 0, 30 (event times); lateness 120 s.
    let mut c = correlator(&set, 120);
    let mut hits = Vec::new();
    for t in [60, 0, 30] {
        let ev = event("ssh_failed", "203.0.113.9", "root", T0 + t);
        let ids: Vec<String> = set.evaluate_map(&ev).iter().map(|r| r.id.clone()).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        hits.extend(c.push(&ev, &refs, T0 + t, T0 + 70));
        hits.extend(c.advance(T0 + 70));
    }
    assert!(
        hits.is_empty(),
        "nothing is fed before the watermark passes"
    );
    assert_eq!(c.pending(), 3);
    let hits = c.advance(T0 + 100);
    // The watermark is the newest event time minus the lateness, not the clock...
    assert!(hits.is_empty());
    let newer = event("ssh_accepted", "192.0.2.1", "x", T0 + 200);
    c.push(&newer, &["ssh-accepted"], T0 + 200, T0 + 100);
    // Ignored rule (no correlation uses it): nothing buffered, watermark unchanged.
    assert_eq!(c.pending(), 3);
    let late = event("ssh_failed", "198.51.100.1", "root", T0 + 190);
    c.push(&late, &["ssh-failed"], T0 + 190, T0 + 150);
    let hits = c.advance(T0 + 150);
    assert!(hits.is_empty());
    // ...until an event has waited `lateness` on the clock: it goes, with the older ones,
    // in event-time order.
    let hits = c.advance(T0 + 190);
    assert_eq!(hits.len(), 1, "fed in event-time order: {hits:?}");
    assert_eq!(hits[0].at_secs, T0 + 60);
    assert_eq!(c.stats().fed, 3);
    assert_eq!(c.pending(), 1);
    let hits = c.advance(T0 + 270);
    assert!(hits.is_empty());
    assert_eq!(c.pending(), 0);

    // Without lateness, the same arrival order loses the two late events, counted.
    let mut c = correlator(&set, 0);
    let mut hits = Vec::new();
    for t in [60, 0, 30] {
        hits.extend(feed(
            &set,
            &mut c,
            &event("ssh_failed", "203.0.113.9", "root", T0 + t),
            T0 + t,
        ));
    }
    assert!(hits.is_empty());
    assert_eq!(c.stats().late_dropped, 2);
}

#[test]
fn a_restart_in_the_middle_of_a_window_keeps_counting() {
    let set = pack(BRUTE);
    let mut c = correlator(&set, 15);
    for t in [0, 20] {
        let ev = event("ssh_failed", "203.0.113.9", "root", T0 + t);
        c.push(&ev, &["ssh-failed"], T0 + t, T0 + t);
    }
    // One fed, one still waiting for the watermark.
    c.advance(T0 + 21);
    assert_eq!((c.stats().fed, c.pending()), (1, 1));
    let saved = c.snapshot().unwrap();
    drop(c);

    // A new process: same pack loaded again.
    let set = pack(BRUTE);
    let mut c = correlator(&set, 15);
    c.restore(&saved).unwrap();
    assert_eq!(c.pending(), 1);
    let ev = event("ssh_failed", "203.0.113.9", "root", T0 + 40);
    c.push(&ev, &["ssh-failed"], T0 + 40, T0 + 40);
    let hits = c.drain();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].value, 3.0);

    // A snapshot that does not read is an error, not a panic.
    assert!(c.restore("{not json").is_err());
}

#[test]
fn state_is_capped_and_evictions_counted() {
    let set = pack(BRUTE);
    let cfg = CorrelatorConfig {
        lateness_secs: 0,
        max_state_entries: 100,
        ..CorrelatorConfig::default()
    };
    let mut c = Correlator::new(&set, cfg).unwrap();
    for i in 0..500i64 {
        let ip = format!("198.51.{}.{}", i / 250, i % 250);
        let ev = event("ssh_failed", &ip, "root", T0 + i / 10);
        c.push(&ev, &["ssh-failed"], T0 + i / 10, T0 + i / 10);
        c.advance(T0 + i / 10);
    }
    assert!(c.states() <= 100, "{} states", c.states());
    assert!(c.stats().state_evicted >= 400, "{:?}", c.stats());
}

#[test]
fn disabled_rules_leave_the_pack_and_their_correlations_with_them() {
    let opts = LoadOptions {
        disabled: ["ssh-failed".to_owned()].into_iter().collect(),
        ..LoadOptions::default()
    };
    let text = format!("{BASE}\n---\n{BRUTE}");
    let (set, report) = RuleSet::load_str("test.yml", &text, &opts);
    assert_eq!(set.len(), 1);
    assert_eq!(report.disabled, 1);
    assert_eq!(set.correlations().len(), 0);
    assert_eq!(report.rejected.len(), 1, "{:#?}", report.rejected);
    let (full, _) = RuleSet::load_str("test.yml", &text, &LoadOptions::default());
    assert_ne!(full.version(), set.version());
}

#[test]
fn sources_load_like_files_of_the_same_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.yml"), BASE).unwrap();
    std::fs::write(dir.path().join("brute.yml"), BRUTE).unwrap();
    let (from_files, _) = RuleSet::load(&[dir.path().into()], &LoadOptions::default()).unwrap();
    let sources = vec![
        ("base.yml".to_owned(), BASE.to_owned()),
        ("brute.yml".to_owned(), BRUTE.to_owned()),
    ];
    let (from_sources, report) = RuleSet::load_sources(&sources, &LoadOptions::default());
    assert!(report.rejected.is_empty());
    assert_eq!(from_sources.len(), 2);
    assert_eq!(from_sources.correlations().len(), 1);
    assert_eq!(from_files.version(), from_sources.version());
}

#[test]
fn a_correlation_with_a_name_and_no_id_fires() {
    // rsigma reports such a firing under the correlation's title (a bug until 2026-11-27:
    // the hit was dropped, so the correlation never alerted).
    let set = pack(&BRUTE.replace("id: ssh-brute", "name: ssh_brute_by_name"));
    let mut c = correlator(&set, 0);
    let mut hits = Vec::new();
    for i in 0..3 {
        let t = T0 + i;
        hits.extend(feed(
            &set,
            &mut c,
            &event("ssh_failed", "203.0.113.9", "root", t),
            t,
        ));
    }
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].rule.id, "ssh_brute_by_name");
    assert_eq!(hits[0].value, 3.0);
}

#[test]
fn aliases_group_events_whose_fields_differ_by_rule() {
    let set = pack(
        r#"
title: Web login
id: web-login
name: web_login
logsource: {category: webserver}
detection:
  sel: {event.action: web_login}
  condition: sel
level: low
---
title: Same address on SSH and the web portal
id: alias-pair
correlation:
  type: temporal
  rules: [ssh_failed, web_login]
  group-by: [ip]
  aliases:
    ip:
      ssh_failed: source.ip
      web_login: client.address
  timespan: 5m
level: high
"#,
    );
    let mut c = correlator(&set, 0);
    let web = |ip: &str, t: i64| {
        let ts = chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339();
        json!({"@timestamp": ts, "event": {"action": "web_login"},
               "client": {"address": ip}, "message": "POST /login 200"})
        .as_object()
        .unwrap()
        .clone()
    };
    let ssh = event("ssh_failed", "203.0.113.9", "root", T0);
    assert!(feed(&set, &mut c, &ssh, T0).is_empty());
    // Another address on the portal: no pair.
    assert!(feed(&set, &mut c, &web("198.51.100.7", T0 + 10), T0 + 10).is_empty());
    let hits = feed(&set, &mut c, &web("203.0.113.9", T0 + 20), T0 + 20);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].rule.id, "alias-pair");
    assert_eq!(
        hits[0].group,
        vec![("ip".to_owned(), "203.0.113.9".to_owned())]
    );
}
