//! The SaaS parsers (`rules/parsers/{okta,cloudtrail,github_audit,cloudflare_http,
//! cloudflare_firewall,crowdstrike_falcon}.yml`) on the raw inputs of Elastic's integration
//! test fixtures, kept outside the repository (`../../../shared/data/elastic` from this
//! crate). Every raw input must parse without `parse_failure`; where Elastic ships the
//! expected documents (CloudTrail) every field the parser maps must agree with them, and
//! elsewhere the fields an analyst pivots on are checked against the input.
//!
//! When the fixtures are absent, as in users' clones, each test says so and passes. The
//! Falcon fixture is pretty-printed JSON, several lines per object: the streaming connector
//! hands the parser one object per line, so the test splits the objects and writes each on
//! one line first.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;
use vigie_event::Event;
use vigie_parse::{Context, Parser, Registry};

fn elastic_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/elastic")
        .join(sub)
}

/// The fixture's text, or `None` (and a note) when the public samples are absent.
fn fixture(sub: &str, file: &str) -> Option<String> {
    let path = elastic_dir(sub).join(file);
    match fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(_) => {
            eprintln!(
                "skipped: {} is absent (public samples are not in users' clones)",
                path.display()
            );
            None
        }
    }
}

fn parser(name: &str) -> Parser {
    let reg = Registry::shared();
    assert!(
        reg.builtin_errors().is_empty(),
        "{:?}",
        reg.builtin_errors()
    );
    reg.get(name).cloned().unwrap()
}

fn context() -> Context {
    let now = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z").unwrap();
    Context::new(now.with_timezone(&Utc))
}

/// Parses every non-empty line; none may be a parse failure.
fn parse_all(name: &str, text: &str) -> Vec<(Value, Event)> {
    let p = parser(name);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let ev = p.parse(line.as_bytes(), &context());
            assert!(!ev.has_flag("parse_failure"), "{name}: {line}");
            assert!(!ev.has_flag("timestamp_missing"), "{name}: {line}");
            (serde_json::from_str(line).unwrap(), ev)
        })
        .collect()
}

/// A Logpush time: RFC 3339 text or Unix seconds (a number or digits), as the job's
/// timestamp_format says.
fn cloudflare_time(v: &Value) -> Option<DateTime<Utc>> {
    let secs = v
        .as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse::<i64>().ok()));
    match secs {
        Some(secs) => DateTime::from_timestamp(secs, 0),
        None => vigie_event::parse_timestamp_value(v),
    }
}

fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
}

#[test]
fn cloudtrail_agrees_with_elastic_expected_documents() {
    let (Some(log), Some(expected)) = (
        fixture("aws/cloudtrail", "test-console-login-json.log"),
        fixture(
            "aws/cloudtrail",
            "test-console-login-json.log-expected.json",
        ),
    ) else {
        return;
    };
    let doc: Value = serde_json::from_str(&expected).unwrap();
    let expected = doc["expected"].as_array().unwrap();
    let parsed = parse_all("cloudtrail", &log);
    assert_eq!(parsed.len(), expected.len());
    const SAME: [&str; 22] = [
        "event.action",
        "event.provider",
        "event.id",
        "event.kind",
        "event.outcome",
        "event.category",
        "event.type",
        "cloud.region",
        "cloud.account.id",
        "source.address",
        "source.ip",
        "user.name",
        "user.id",
        "user_agent.original",
        "aws.cloudtrail.event_version",
        "aws.cloudtrail.error_message",
        "aws.cloudtrail.user_identity.type",
        "aws.cloudtrail.user_identity.arn",
        "aws.cloudtrail.user_identity.access_key_id",
        "aws.cloudtrail.user_identity.session_context.mfa_authenticated",
        "aws.cloudtrail.user_identity.session_context.session_issuer",
        "aws.cloudtrail.flattened",
    ];
    let mut checked = 0;
    for ((raw, got), want) in parsed.iter().zip(expected) {
        let want = Event::from_value(want.clone()).unwrap();
        let ctx = raw.to_string();
        assert_eq!(got.timestamp(), want.timestamp(), "@timestamp of {ctx}");
        for field in SAME {
            let w = want.get(field);
            // Elastic leaves out a field the record does not have; so must the parser.
            assert_eq!(got.get(field), w, "{field} of {ctx}");
            checked += usize::from(w.is_some());
        }
        assert_eq!(got.get_str("vigie.logsource.product"), Some("aws"));
        assert_eq!(got.get_str("vigie.logsource.service"), Some("cloudtrail"));
    }
    assert!(checked >= 50, "only {checked} fields compared");
}

#[test]
fn okta_system_log_fixture() {
    let Some(log) = fixture("okta/system", "test-okta-system-events.log") else {
        return;
    };
    let parsed = parse_all("okta", &log);
    assert_eq!(parsed.len(), 3);
    for (raw, ev) in &parsed {
        let s = |p: &str| str_at(raw, p);
        assert_eq!(ev.get_str("okta.event_type"), s("eventType"));
        assert_eq!(ev.get_str("event.action"), s("eventType"));
        assert_eq!(ev.get_str("event.id"), s("uuid"));
        assert_eq!(ev.get_str("message"), s("displayMessage"));
        assert_eq!(ev.get_str("source.ip"), s("client.ipAddress"));
        assert_eq!(
            ev.get_str("okta.actor.alternate_id"),
            s("actor.alternateId")
        );
        assert_eq!(
            ev.get_str("okta.debug_context.debug_data.request_uri"),
            s("debugContext.debugData.requestUri")
        );
        assert_eq!(
            ev.timestamp(),
            vigie_event::parse_timestamp_value(&raw["published"])
        );
        // Elastic's grok: user.name is the login's part before `@`.
        let login = s("actor.alternateId").unwrap();
        assert_eq!(ev.get_str("user.name"), login.split('@').next());
        assert_eq!(ev.get_str("event.outcome"), Some("success"));
    }
    let kinds: Vec<_> = parsed
        .iter()
        .map(|(_, e)| e.get("event.category").cloned().unwrap())
        .collect();
    assert_eq!(kinds[0], serde_json::json!(["authentication", "session"]));
    assert_eq!(kinds[2], serde_json::json!(["authentication"]));
    // The target list is kept as Okta wrote it (SigmaHQ's target.displayName maps to it).
    assert_eq!(
        parsed[2]
            .1
            .get("okta.target")
            .and_then(Value::as_array)
            .map(Vec::len),
        Some(2)
    );
}

#[test]
fn github_audit_fixture() {
    let Some(log) = fixture("github/audit", "test-audit-json.log") else {
        return;
    };
    let parsed = parse_all("github_audit", &log);
    assert_eq!(parsed.len(), 25);
    for (raw, ev) in &parsed {
        assert_eq!(ev.get_str("event.action"), str_at(raw, "action"));
        assert_eq!(ev.get_str("user.name"), str_at(raw, "actor"));
        assert_eq!(ev.get_str("user.target.name"), str_at(raw, "user"));
        assert_eq!(ev.get_str("github.org"), str_at(raw, "org"));
        assert_eq!(ev.get_str("github.repo"), str_at(raw, "repo"));
        assert_eq!(ev.get_str("github.team"), str_at(raw, "data.team"));
        assert_eq!(
            ev.get_str("client.geo.country_iso_code"),
            str_at(raw, "actor_location.country_code")
        );
        let ms = raw["created_at"].as_i64().unwrap();
        assert_eq!(ev.timestamp(), DateTime::from_timestamp_millis(ms));
    }
    let invite = &parsed[3].1;
    assert_eq!(invite.get_str("event.action"), Some("org.invite_member"));
    assert_eq!(
        invite.get("event.category"),
        Some(&serde_json::json!(["iam"]))
    );
    let rejected = &parsed[20].1;
    assert_eq!(rejected.get_str("event.outcome"), Some("failure"));
}

#[test]
fn cloudflare_http_request_fixture() {
    let Some(log) = fixture(
        "cloudflare_logpush/http_request",
        "test-pipeline-http-request.log",
    ) else {
        return;
    };
    for (raw, ev) in parse_all("cloudflare_http", &log) {
        assert_eq!(ev.get_str("source.ip"), str_at(&raw, "ClientIP"));
        assert_eq!(ev.get_str("url.domain"), str_at(&raw, "ClientRequestHost"));
        assert_eq!(
            ev.get_str("http.request.method"),
            str_at(&raw, "ClientRequestMethod")
        );
        assert_eq!(
            ev.get("http.response.status_code"),
            raw.get("EdgeResponseStatus")
        );
        assert_eq!(ev.get_str("event.id"), str_at(&raw, "RayID"));
        assert_eq!(ev.get_str("http.version"), Some("1.1"));
        assert_eq!(ev.get_str("tls.version"), Some("1.2"));
        assert_eq!(ev.timestamp(), cloudflare_time(&raw["EdgeStartTimestamp"]));
        assert_eq!(
            ev.get("cloudflare.http_request.BotScore"),
            raw.get("BotScore")
        );
    }
}

#[test]
fn cloudflare_firewall_event_fixture() {
    let Some(log) = fixture(
        "cloudflare_logpush/firewall_event",
        "test-pipeline-firewall-event.log",
    ) else {
        return;
    };
    let parsed = parse_all("cloudflare_firewall", &log);
    assert_eq!(parsed.len(), 4);
    for (raw, ev) in &parsed {
        assert_eq!(ev.get_str("source.ip"), str_at(raw, "ClientIP"));
        assert_eq!(ev.get_str("url.domain"), str_at(raw, "ClientRequestHost"));
    }
    // The first three are firewall events; the fourth is written in the HTTP request shape
    // (SecurityAction, EdgeStartTimestamp), which the parser reads too.
    // They are one event with Datetime in the three timestamp formats (RFC 3339, Unix
    // seconds, Unix nanoseconds).
    let when = DateTime::parse_from_rfc3339("2022-05-31T05:23:43Z").unwrap();
    for (raw, ev) in &parsed[..3] {
        assert_eq!(ev.get_str("event.action"), str_at(raw, "Action"));
        assert_eq!(ev.get_str("rule.id"), str_at(raw, "RuleID"));
        assert_eq!(ev.get_str("rule.ruleset"), str_at(raw, "Source"));
        assert_eq!(ev.timestamp(), Some(when.with_timezone(&Utc)), "{raw}");
    }
    // Its SecurityAction is empty: no action, and the time is EdgeStartTimestamp.
    let (raw, ev) = &parsed[3];
    assert_eq!(ev.get_str("event.action"), None);
    assert_eq!(ev.timestamp(), cloudflare_time(&raw["EdgeStartTimestamp"]));
}

#[test]
fn crowdstrike_alerts_api_fixture() {
    let Some(log) = fixture("crowdstrike/alert", "test-automated-lead.log") else {
        return;
    };
    let parsed = parse_all("crowdstrike_falcon", &log);
    assert_eq!(parsed.len(), 2);
    for (raw, ev) in &parsed {
        assert_eq!(ev.get_str("event.kind"), Some("alert"));
        assert_eq!(ev.get_str("event.id"), str_at(raw, "composite_id"));
        assert_eq!(ev.get_str("rule.name"), str_at(raw, "display_name"));
        assert!(ev.get_str("message").is_some_and(|m| !m.starts_with('{')));
        assert_eq!(
            ev.get_str("crowdstrike.alert.cid"),
            str_at(raw, "cid"),
            "the alert is kept under crowdstrike.alert"
        );
    }
    let signal = &parsed[1].1;
    assert_eq!(signal.get_str("host.name"), Some("host-1.example.local"));
    assert_eq!(signal.get_str("user.name"), Some("root"));
    assert_eq!(
        signal.get_str("process.command_line"),
        Some("ps -o pid --no-headers --ppid 652914")
    );
    assert_eq!(signal.get_str("threat.technique.id"), Some("T1068"));
    assert_eq!(signal.get_str("rule.id"), Some("6002"));
}

#[test]
fn crowdstrike_streaming_detection_fixture() {
    let Some(text) = fixture("crowdstrike/falcon", "test-falcon-detection-summary.log") else {
        return;
    };
    // One object per line, as the streaming connector delivers them.
    let lines: Vec<String> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|v| v.unwrap().to_string())
        .collect();
    assert!(lines.len() >= 2);
    let parsed = parse_all("crowdstrike_falcon", &lines.join("\n"));
    for (raw, ev) in &parsed {
        let s = |p: &str| str_at(raw, p);
        assert_eq!(ev.get_str("event.kind"), Some("alert"));
        assert_eq!(ev.get_str("event.action"), s("metadata.eventType"));
        assert_eq!(ev.get_str("rule.name"), s("event.DetectName"));
        assert_eq!(ev.get_str("host.name"), s("event.ComputerName"));
        assert_eq!(ev.get_str("user.name"), s("event.UserName"));
        assert_eq!(ev.get_str("file.hash.sha256"), s("event.SHA256String"));
        assert_eq!(ev.get_str("event.id"), s("event.DetectId"));
        // SeverityName Low: ECS 21, which the collector reads as low.
        assert_eq!(ev.get_i64("event.severity"), Some(21));
        let ms = raw["metadata"]["eventCreationTime"].as_i64().unwrap();
        assert_eq!(ev.timestamp(), DateTime::from_timestamp_millis(ms));
        assert_eq!(
            ev.get_str("crowdstrike.event.SeverityName"),
            s("event.SeverityName")
        );
    }
}
