//! The `nginx_access`, `nginx_error` and `teleport` parsers against the raw inputs of Elastic's
//! integration tests (`../../../shared/data/elastic/{nginx/access,nginx/error,teleport/audit}`
//! from this crate).
//!
//! Elastic's expected documents are not among the public samples kept here, so the values they
//! hold for the fields these parsers map are written below, taken from
//! `packages/nginx/data_stream/{access,error}/_dev/test/pipeline/*-expected.json` of
//! elastic/integrations (`test-access.log-expected.json`, `test-error-raw.log-expected.json`);
//! for Teleport, what Elastic's `event-fields.yml` pipeline does with each field is checked
//! against the raw object of every line. Every raw line must parse without `parse_failure`;
//! nginx error entries are joined first, as Elastic's multiline setting for that file does.
//! When the samples are absent, as in users' clones, the tests say so and pass.
//!
//! Also here: what the golden files cannot compare, the timestamps of the lines without a
//! year in them (nginx error log, journald).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use vigie_event::Event;
use vigie_parse::{Context, Parser, Registry};

fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/elastic")
}

fn parser(name: &str) -> Parser {
    let mut reg = Registry::new();
    reg.load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/parsers"))
        .unwrap_or_else(|e| panic!("{e}"));
    reg.get(name).cloned().unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The context of Elastic's fixtures: UTC (their pipelines read zone-less times as UTC).
fn context() -> Context {
    Context::new(at("2026-11-26T12:00:00Z"))
}

/// The file's text, or `None` (and a note) when the public samples are absent.
fn sample(path: &Path) -> Option<String> {
    match fs::read_to_string(path) {
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

fn text<'e>(ev: &'e Event, field: &str) -> Option<&'e str> {
    ev.get_str(field)
}

/// Elastic's `test-access.log-expected.json`, the fields this parser maps: @timestamp,
/// source.address (= source.ip), http.request.method, url.original (= url.path here),
/// http.response.status_code, http.response.body.bytes, http.request.referrer, event.outcome,
/// destination.domain.
#[allow(clippy::type_complexity)]
const NGINX_ACCESS: [(&str, &str, &str, i64, i64, &str, &str, &str); 14] = [
    ("2016-10-25T12:49:33Z", "67.43.156.13", "/", 200, 612, "", "success", ""),
    ("2016-10-25T12:49:34Z", "67.43.156.13", "/favicon.ico", 404, 571, "http://localhost:8080/", "failure", ""),
    ("2016-10-25T12:50:44Z", "67.43.156.13", "/adsasd", 404, 571, "", "failure", ""),
    ("2016-12-07T09:34:43Z", "67.43.156.13", "/", 200, 612, "", "success", ""),
    ("2016-12-07T09:34:43Z", "67.43.156.13", "/favicon.ico", 404, 571, "http://localhost:8080/", "failure", ""),
    ("2016-12-07T09:43:18Z", "67.43.156.13", "/test", 404, 571, "", "failure", ""),
    ("2016-12-07T09:43:21Z", "67.43.156.13", "/test", 404, 571, "", "failure", ""),
    ("2016-12-07T09:43:23Z", "67.43.156.13", "/test1", 404, 571, "", "failure", ""),
    ("2016-12-07T10:04:37Z", "127.0.0.1", "/test1", 404, 571, "", "failure", ""),
    ("2016-12-07T10:04:58Z", "127.0.0.1", "/", 304, 0, "", "success", ""),
    ("2016-12-07T10:04:59Z", "127.0.0.1", "/", 304, 0, "", "success", ""),
    ("2016-12-07T10:05:07Z", "127.0.0.1", "/taga", 404, 169, "", "failure", ""),
    ("2020-06-09T19:10:39Z", "192.168.0.1", "/A%20Beka%20G1%20Howe/029_AND_30/15%20reading%20elephants.mp4", 206, 7648063, "http://lessons.example.com/A%20Beka%20G1%20Howe/029_AND_30/15%20reading%20elephants.mp4", "success", "lessons.example.com"),
    ("2020-06-09T19:15:39Z", "192.168.0.1", "/%D0%A0%D1%83%D1%81%D1%81%D0%BA%D0%B0%D1%8F%20%D1%88%D0%BA%D0%BE%D0%BB%D0%B0%20-%20InternetUrok%201%D0%BA%D0%BB%D0%B0%D1%81%D1%81/", 206, 7648063, "http://lessons.example.com/A%20Beka%20G1%20Howe/029_AND_30/15%20reading%20elephants.mp4", "success", "lessons.example.com"),
];

#[test]
fn elastic_nginx_access_fields_agree() {
    let path = shared_data().join("nginx/access/test-access.log");
    let Some(log) = sample(&path) else {
        return;
    };
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), NGINX_ACCESS.len());
    let parser = parser("nginx_access");
    for (line, want) in lines.iter().zip(NGINX_ACCESS) {
        let (ts, addr, url, status, bytes, referrer, outcome, domain) = want;
        let ev = parser.parse(line.as_bytes(), &context());
        assert!(!ev.has_flag("parse_failure"), "{line}");
        assert_eq!(ev.timestamp(), Some(at(ts)), "{line}");
        assert_eq!(text(&ev, "source.address"), Some(addr), "{line}");
        assert_eq!(text(&ev, "source.ip"), Some(addr), "{line}");
        assert_eq!(text(&ev, "user.name"), None, "{line}");
        assert_eq!(text(&ev, "http.request.method"), Some("GET"), "{line}");
        assert_eq!(text(&ev, "http.version"), Some("1.1"), "{line}");
        assert_eq!(text(&ev, "url.original"), Some(url), "{line}");
        assert_eq!(text(&ev, "url.path"), Some(url), "{line}");
        assert_eq!(ev.get("http.response.status_code"), Some(&json!(status)));
        assert_eq!(ev.get("http.response.body.bytes"), Some(&json!(bytes)));
        let referrer = (!referrer.is_empty()).then_some(referrer);
        assert_eq!(text(&ev, "http.request.referrer"), referrer, "{line}");
        assert_eq!(text(&ev, "event.outcome"), Some(outcome), "{line}");
        let domain = (!domain.is_empty()).then_some(domain);
        assert_eq!(text(&ev, "destination.domain"), domain, "{line}");
        assert_eq!(ev.get("event.category"), Some(&json!(["web"])), "{line}");
        assert_eq!(ev.get("event.type"), Some(&json!(["access"])), "{line}");
        assert!(
            text(&ev, "user_agent.original").is_some_and(|ua| ua.starts_with("Mozilla/5.0 (")),
            "{line}"
        );
        assert_eq!(
            ev.get_str("vigie.logsource.category"),
            Some("webserver"),
            "{line}"
        );
    }
}

/// nginx error entries: a line that does not start with a date continues the previous entry
/// (Elastic's `multiline.first_line_pattern` for this file).
fn nginx_error_entries(log: &str) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    for line in log.lines() {
        let starts = line.len() > 11 && line.as_bytes()[4] == b'/' && line.as_bytes()[7] == b'/';
        match entries.last_mut() {
            Some(last) if !starts => {
                last.push('\n');
                last.push_str(line);
            }
            _ => entries.push(line.to_owned()),
        }
    }
    entries
}

#[test]
fn elastic_nginx_error_fields_agree() {
    let path = shared_data().join("nginx/error/test-error-raw.log");
    let Some(log) = sample(&path) else {
        return;
    };
    let entries = nginx_error_entries(&log);
    // Elastic's `test-error-raw.log-expected.json`: @timestamp, log.level, process.pid,
    // process.thread.id, nginx.error.connection_id, client.ip, server.domain,
    // http.request.method, url.path (Elastic keeps the query in it: compared without it),
    // http.request.referrer. Elastic reads the server "service[.]domain[.]com" as "service"
    // (its grok stops at the bracket); this parser keeps the whole name.
    #[allow(clippy::type_complexity)]
    let want: [(&str, &str, i64, i64, i64, &str, &str, &str, &str); 5] = [
        (
            "2016-10-25T14:49:34Z",
            "error",
            54053,
            0,
            1,
            "127.0.0.1",
            "localhost",
            "/favicon.ico",
            "http://localhost:8080/",
        ),
        (
            "2016-10-25T14:50:44Z",
            "error",
            54053,
            0,
            3,
            "127.0.0.1",
            "localhost",
            "/adsasd",
            "",
        ),
        (
            "2019-10-30T23:26:34Z",
            "error",
            205860,
            205860,
            180289,
            "",
            "",
            "",
            "",
        ),
        (
            "2019-11-05T14:50:44Z",
            "error",
            54053,
            0,
            3,
            "127.0.0.1",
            "localhost",
            "/pysio",
            "",
        ),
        (
            "2022-10-24T20:40:32Z",
            "warn",
            15910,
            0,
            149074,
            "1.1.1.1",
            "service[.]domain[.]com",
            "/api/",
            "https://service[.]domain[.]com/api/?tkd=343",
        ),
    ];
    assert_eq!(entries.len(), want.len());
    let parser = parser("nginx_error");
    for (entry, want) in entries.iter().zip(want) {
        let (ts, level, pid, tid, conn, client, server, path, referrer) = want;
        let ev = parser.parse(entry.as_bytes(), &context());
        assert!(!ev.has_flag("parse_failure"), "{entry}");
        assert_eq!(ev.timestamp(), Some(at(ts)), "{entry}");
        assert_eq!(text(&ev, "log.level"), Some(level), "{entry}");
        assert_eq!(ev.get("process.pid"), Some(&json!(pid)), "{entry}");
        assert_eq!(ev.get("process.thread.id"), Some(&json!(tid)), "{entry}");
        assert_eq!(
            ev.get("nginx.error.connection_id"),
            Some(&json!(conn)),
            "{entry}"
        );
        let opt = |s: &'static str| (!s.is_empty()).then_some(s);
        assert_eq!(text(&ev, "client.ip"), opt(client), "{entry}");
        assert_eq!(text(&ev, "source.ip"), opt(client), "{entry}");
        assert_eq!(text(&ev, "server.domain"), opt(server), "{entry}");
        assert_eq!(text(&ev, "url.path"), opt(path), "{entry}");
        assert_eq!(text(&ev, "http.request.referrer"), opt(referrer), "{entry}");
        if !path.is_empty() {
            assert_eq!(text(&ev, "http.request.method"), Some("GET"), "{entry}");
            assert_eq!(text(&ev, "http.version"), Some("1.1"), "{entry}");
        }
        // The message is what follows the connection number, continuation lines included.
        let after = entry.split_once(": *").unwrap().1;
        let message = after.split_once(' ').unwrap().1;
        assert_eq!(text(&ev, "message"), Some(message), "{entry}");
        assert_eq!(ev.get("event.type"), Some(&json!(["error"])), "{entry}");
    }
    let fastcgi = parser.parse(entries[2].as_bytes(), &context());
    assert_eq!(
        text(&fastcgi, "message").map(|m| m.lines().count()),
        Some(3)
    );
    let upstream = parser.parse(entries[4].as_bytes(), &context());
    assert_eq!(
        text(&upstream, "nginx.error.upstream"),
        Some("https://2.2.2.2:443/api/?tkd=343")
    );
    assert_eq!(text(&upstream, "url.query"), Some("tkd=343"));

    // Left unjoined, the continuation lines are parse failures, and only they.
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| {
            parser
                .parse(l.as_bytes(), &context())
                .has_flag("parse_failure")
        })
        .collect();
    assert_eq!(failures.len(), 2, "{failures:#?}");
    assert!(failures.iter().all(|l| l.starts_with("PHP message: ")));
}

/// What Elastic's Teleport pipeline (`event-fields.yml`) makes of a raw field, and where the
/// `teleport` parser must put the same value.
const TELEPORT_MOVED: [(&str, &str); 13] = [
    ("event", "event.action"),
    ("code", "event.code"),
    ("uid", "event.id"),
    ("ei", "event.sequence"),
    ("user", "user.name"),
    ("cluster_name", "orchestrator.cluster.name"),
    ("sid", "teleport.audit.session.id"),
    ("login", "teleport.audit.user.os_login"),
    ("pid", "process.pid"),
    ("argv", "process.args"),
    ("src_addr", "source.ip"),
    ("dst_addr", "destination.ip"),
    ("db_service", "teleport.audit.database.service"),
];

#[test]
fn elastic_teleport_fields_agree() {
    let path = shared_data().join("teleport/audit/test-teleport-all-events.log");
    let Some(log) = sample(&path) else {
        return;
    };
    let parser = parser("teleport");
    let mut checked = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let raw: Value = serde_json::from_str(line).unwrap();
        let ev = parser.parse(line.as_bytes(), &context());
        assert!(!ev.has_flag("parse_failure"), "{line}");
        assert_eq!(ev.get_str("event.dataset"), Some("teleport.audit"));
        // @timestamp is Teleport's `time`, which leaves teleport.audit.
        let time = raw["time"].as_str().unwrap();
        assert_eq!(ev.timestamp(), Some(at(time)), "{line}");
        assert!(!ev.contains("teleport.audit.time"), "{line}");
        for (from, to) in TELEPORT_MOVED {
            if let Some(v) = raw.get(from) {
                assert_eq!(ev.get(to), Some(v), "{from} -> {to}: {line}");
                checked += 1;
            }
        }
        // The other ECS names of Elastic's pipeline: ppid and program (see teleport.yml for
        // why program is process.name here), the success flag and the codes.
        if let Some(v) = raw.get("ppid") {
            assert_eq!(ev.get("process.parent.pid"), Some(v), "{line}");
        }
        if let Some(v) = raw.get("program") {
            assert_eq!(ev.get("process.name"), Some(v), "{line}");
        }
        if let Some(v) = raw.get("addr.remote").and_then(Value::as_str) {
            assert_eq!(ev.get_str("client.address"), Some(v), "{line}");
            let ip = v.rsplit_once(':').unwrap().0;
            assert_eq!(ev.get_str("client.ip"), Some(ip), "{line}");
        }
        if let Some(v) = raw.get("addr.local").and_then(Value::as_str) {
            assert_eq!(ev.get_str("server.address"), Some(v), "{line}");
        }
        // dst_port is a number or a numeric string: a number in destination.port.
        if let Some(v) = raw.get("dst_port") {
            let port = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
            assert_eq!(ev.get("destination.port"), port.map(|p| json!(p)).as_ref());
        }
        let code = raw["code"].as_str().unwrap();
        let denied = raw["event"] == "session.network" && raw["action"] == 1;
        let outcome = match raw.get("success") {
            Some(Value::Bool(true)) => Some("success"),
            Some(Value::Bool(false)) => Some("failure"),
            _ if code.ends_with('W') || code.ends_with('E') || denied => Some("failure"),
            _ => None,
        };
        assert_eq!(ev.get_str("event.outcome"), outcome, "{line}");
        // Elastic's categories for the events of this file (event-categories.yml).
        let action = raw["event"].as_str().unwrap();
        let category = match action {
            "user.login" | "auth" => Some("authentication"),
            "session.start" | "session.data" => Some("session"),
            "session.command" => Some("process"),
            "session.network" => Some("network"),
            "session.disk" => Some("file"),
            a if a.starts_with("db.") => Some("database"),
            a if a.starts_with("user.") || a.starts_with("access_request.") => Some("iam"),
            _ => None,
        };
        if let Some(category) = category {
            assert_eq!(ev.get("event.category"), Some(&json!([category])), "{line}");
        }
    }
    assert!(checked >= 150, "only {checked} fields compared");
}

/// The timestamps the golden files leave out (no year in the line): the nginx error log's
/// local time, and journald's microseconds.
#[test]
fn timestamps_without_a_year_in_the_line() {
    let mut ctx = context();
    ctx.local_offset = "+01:00".parse().unwrap();
    let ev = parser("nginx_error").parse(
        b"2026/11/26 09:14:02 [error] 1234#1234: *5 access forbidden by rule, client: 192.0.2.1, server: www.example.com",
        &ctx,
    );
    assert_eq!(ev.timestamp(), Some(at("2026-11-26T08:14:02Z")));

    let line = br#"{"__REALTIME_TIMESTAMP":"1795648442123456","MESSAGE":"hello","PRIORITY":"6","_HOSTNAME":"web-01"}"#;
    let ev = parser("journald").parse(line, &ctx);
    assert_eq!(
        ev.get_str("@timestamp"),
        Some("2026-11-25T23:14:02.123456Z")
    );
    assert_eq!(ev.get_str("message"), Some("hello"));
}
