//! Tests of the engine: loading errors with their positions, each stage type, the event
//! invariants, and linux_auth on lines picked for what they exercise (the golden files in
//! `rules/parsers/tests/` cover the rest).

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Value};

use super::*;

fn ctx() -> Context {
    let now = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut ctx = Context::new(now);
    ctx.host_name = Some("agent-host".to_owned());
    ctx
}

/// The error of loading `yaml`, as `(line, column, message)`.
fn load_err(yaml: &str) -> (usize, usize, String) {
    let err = Parser::from_yaml(yaml, "bad.yml").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("bad.yml:"), "{text}");
    let (line, column) = err
        .position()
        .unwrap_or_else(|| panic!("no position: {text}"));
    (line, column, text)
}

fn parse(yaml: &str, line: &str) -> Value {
    Parser::from_yaml(yaml, "test.yml")
        .unwrap()
        .parse(line.as_bytes(), &ctx())
        .into_value()
}

#[test]
fn loading_errors_name_the_place_and_the_problem() {
    // Unknown stage type: the key is named, with the valid ones.
    let (line, col, msg) = load_err("name: x\nstages:\n  - syslog: {}\n  - regexp: {}\n");
    assert_eq!((line, col), (4, 5), "{msg}");
    assert!(
        msg.contains("unknown field `regexp`") && msg.contains("`regex`"),
        "{msg}"
    );

    // Unknown key inside a stage.
    let (line, _, msg) = load_err("name: x\nstages:\n  - kv:\n      fieldd: message\n");
    assert_eq!(line, 4, "{msg}");
    assert!(msg.contains("unknown field `fieldd`"), "{msg}");

    // A bad regex: its message, at the pattern.
    let yaml = "name: x\nstages:\n  - regex:\n      patterns:\n        - ok\n        - '(?P<a>x'\n";
    let (line, col, msg) = load_err(yaml);
    assert_eq!((line, col), (6, 11), "{msg}");
    assert!(
        msg.contains("invalid regex") && msg.contains("unclosed group"),
        "{msg}"
    );

    // A template reading a field that nothing writes: at the stage.
    let yaml = "name: x\nstages:\n  - regex:\n      patterns: ['^(?P<source.ip>\\S+)']\n  \
                - set: {related.ip: '{{source.ipp}}'}\n";
    let (line, col, msg) = load_err(yaml);
    assert_eq!((line, col), (5, 5), "{msg}");
    assert!(
        msg.contains("stages[1]") && msg.contains("`source.ipp`"),
        "{msg}"
    );

    // A condition on a field nothing writes.
    let (line, _, msg) =
        load_err("name: x\nstages:\n  - set: {a: b}\n    if: {exists: proces.name}\n");
    assert_eq!(line, 3, "{msg}");
    assert!(msg.contains("the condition reads `proces.name`"), "{msg}");

    // Two types in one stage, none at all.
    let (_, _, msg) = load_err("name: x\nstages:\n  - {set: {a: b}, delete: a}\n");
    assert!(msg.contains("has set and delete"), "{msg}");
    let (_, _, msg) = load_err("name: x\nstages:\n  - if: {exists: message}\n");
    assert!(msg.contains("has no type"), "{msg}");

    // Bad names, formats and zones.
    let (line, _, msg) = load_err("version: 1\nname: Linux-Auth\nstages: [{set: {a: b}}]\n");
    assert_eq!(line, 2, "{msg}");
    assert!(msg.contains("lowercase"), "{msg}");
    let (_, _, msg) = load_err("name: x\nstages: [{date: {formats: [yyyy-MM-dd]}}]\n");
    assert!(msg.contains("unknown date format"), "{msg}");
    let (_, _, msg) = load_err("name: x\nstages: [{syslog: {timezone: Mars/Olympus}}]\n");
    assert!(msg.contains("unknown time zone"), "{msg}");
    let (_, _, msg) = load_err("name: x\nstages: [{set: {a: '{{b'}}]\n");
    assert!(msg.contains("never closed"), "{msg}");
    let (line, _, msg) = load_err("name: x\nstages: []\n");
    assert_eq!(line, 2, "{msg}");
    let (line, _, msg) = load_err("name: x\nstages:\n  - set: {a: 1}\n  - set: {a: 1\n");
    assert_eq!(line, 5, "{msg}"); // YAML syntax: at the end of the flow mapping
    let (_, _, msg) =
        load_err("name: x\nstages: [{regex: {patterns: [a], convert: {b: integer}}}]\n");
    assert!(msg.contains("no pattern captures"), "{msg}");
}

#[test]
fn every_stage_type() {
    let yaml = r#"
name: t
dataset: t.events
logsource: {product: p, service: s}
stages:
  - json: {}
  - kv: {field: kvs, target: _kv, convert: {_kv.n: integer}}
  - csv: {field: row, columns: [first, null, third], trim: true}
  - regex:
      field: line
      patterns:
        - match: '^(?P<user.name>\w+) from (?P<_addr>\S+)$'
          set: {event.action: "login-{{user.name}}"}
  - date: {field: when, formats: ["%d/%m/%Y %H:%M", rfc3339], timezone: "+01:00"}
  - set: {a.copy: "{{_kv.n}}", a.list: ["{{first}}", "{{nope}}", x]}
  - set_default: {a.copy: 0, a.default: d}
  - append: {a.list: [y, x]}
  - rename: {_addr: source.ip}
  - delete: [row]
  - translate: {field: code, target: a.meaning, map: {"7": seven}, default: other}
  - convert: {code: string}
  - if: {equals: {user.name: alice}}
    stages:
      - set: {a.block: true}
  - if: {not: {exists: user.name}}
    set: {a.never: 1}
"#;
    let line = r#"{"kvs":"n=42 flag=on","row":" a , b , c ","line":"alice from 192.0.2.1","when":"26/11/2026 10:30","code":7,"_drop":1}"#;
    let v = parse(yaml, line);
    assert_eq!(v["first"], json!("a"));
    assert_eq!(v["third"], json!("c"));
    assert!(v.get("row").is_none() && v.get("_kv").is_none() && v.get("_drop").is_none());
    assert_eq!(v["user"]["name"], json!("alice"));
    assert_eq!(v["source"]["ip"], json!("192.0.2.1"));
    assert_eq!(v["event"]["action"], json!("login-alice"));
    assert_eq!(v["@timestamp"], json!("2026-11-26T09:30:00.000000Z"));
    assert_eq!(
        v["a"],
        json!({"copy": 42, "list": ["a", "x", "y"], "default": "d", "meaning": "seven", "block": true})
    );
    assert_eq!(v["code"], json!("7"));
    assert_eq!(v["event"]["dataset"], json!("t.events"));
    assert_eq!(
        v["vigie"]["logsource"],
        json!({"product": "p", "service": "s"})
    );
    assert_eq!(v["event"]["original"], json!(line));
    assert_eq!(v["host"]["name"], json!("agent-host"));
}

#[test]
fn failures_follow_on_failure() {
    let yaml = "name: t\ndataset: t.d\nlogsource: {product: p}\nstages:\n  - json: {}\n  \
                - set: {a: b}\n";
    // json fails by default: the line is kept, flagged, with the file's tags.
    let v = parse(yaml, "not json");
    assert_eq!(v["message"], json!("not json"));
    assert_eq!(v["log"]["flags"], json!(["parse_failure"]));
    assert_eq!(v["event"]["dataset"], json!("t.d"));
    assert_eq!(v["vigie"]["logsource"]["product"], json!("p"));
    assert!(v.get("a").is_none());
    assert_eq!(v["@timestamp"], json!("2026-11-26T12:00:00.000000Z"));
    // With on_failure: continue, the next stages run.
    let yaml = "name: t\nstages:\n  - json: {}\n    on_failure: continue\n  - set: {a: b}\n";
    let v = parse(yaml, "not json");
    assert_eq!(v["a"], json!("b"));
    assert!(v.get("log").is_none());
    // A regex that must match.
    let yaml = "name: t\nstages:\n  - regex: {patterns: ['^x']}\n    on_failure: fail\n";
    assert_eq!(parse(yaml, "y")["log"]["flags"], json!(["parse_failure"]));
    assert!(parse(yaml, "x").get("log").is_none());
}

#[test]
fn invariants_hold_for_any_bytes() {
    let parser = Registry::builtin().get("linux_auth").cloned().unwrap();
    let mut c = ctx();
    c.keep_original = false;
    let ev = parser.parse(
        b"Nov 26 10:00:00 h sshd[1]: Invalid user \xff from 192.0.2.1\r\n",
        &c,
    );
    assert!(ev.has_flag("invalid_utf8"));
    assert_eq!(ev.get_str("user.name"), Some("\u{fffd}"));
    assert!(!ev.contains("event.original"));
    let pieces: [&[u8]; 10] = [
        b"Nov 26 10:00:00 ",
        b"h ",
        b"sshd[1]: ",
        b"sudo: ",
        b"Accepted password for ",
        b"a from ",
        b"192.0.2.1 port 22",
        b" : TTY=x ; COMMAND=",
        b"\xff",
        b"pam_unix(x:session): session opened for user ",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2_000 {
        let mut line = Vec::new();
        for _ in 0..6 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            line.extend_from_slice(pieces[(state % pieces.len() as u64) as usize]);
        }
        let ev = parser.parse(&line, &ctx());
        for field in [
            "@timestamp",
            "message",
            "event.kind",
            "event.original",
            "host.name",
        ] {
            assert!(ev.contains(field), "{field} missing for {line:?}");
        }
        assert_eq!(ev.get_str("event.dataset"), Some("system.auth"));
        assert!(ev.as_map().keys().all(|k| !k.starts_with('_')), "{line:?}");
    }
}

#[test]
fn timestamps_are_normalized() {
    let yaml = "name: t\nstages:\n  - json: {}\n";
    let v = parse(yaml, r#"{"@timestamp":"2026-11-26T10:00:00+01:00"}"#);
    assert_eq!(v["@timestamp"], json!("2026-11-26T09:00:00.000000Z"));
    let v = parse(yaml, r#"{"@timestamp":1700000000000}"#);
    assert_eq!(v["@timestamp"], json!("2023-11-14T22:13:20.000000Z"));
    let v = parse(yaml, r#"{"@timestamp":"soon"}"#);
    assert_eq!(v["@timestamp"], json!("2026-11-26T12:00:00.000000Z"));
    assert_eq!(v["log"]["flags"], json!(["timestamp_missing"]));
}

#[test]
fn syslog_stage_time_zone() {
    let yaml = "name: t\nstages:\n  - syslog: {timezone: '-05:00'}\n";
    let v = parse(yaml, "Nov 26 10:00:00 h app: hi");
    assert_eq!(v["@timestamp"], json!("2026-11-26T15:00:00.000000Z"));
    let mut c = ctx();
    c.local_offset = FixedOffset::east_opt(3600).unwrap();
    let p = Parser::from_yaml("name: t\nstages:\n  - syslog:\n", "t").unwrap();
    let ev = p.parse(b"Nov 26 10:00:00 h app: hi", &c);
    assert_eq!(
        ev.get_str("@timestamp"),
        Some("2026-11-26T09:00:00.000000Z")
    );
    assert_eq!(ev.get_str("host.name"), Some("h"));
}

/// The dataset precedence: a stage's value, then the file's, then the context's.
#[test]
fn dataset_precedence() {
    let mut c = ctx();
    c.dataset = Some("from.context".into());
    let p = Parser::from_yaml("name: t\nstages: [{set: {a: 1}}]\n", "t").unwrap();
    assert_eq!(
        p.parse(b"x", &c).get_str("event.dataset"),
        Some("from.context")
    );
    let p = Parser::from_yaml(
        "name: t\ndataset: from.file\nstages: [{set: {a: 1}}]\n",
        "t",
    )
    .unwrap();
    assert_eq!(
        p.parse(b"x", &c).get_str("event.dataset"),
        Some("from.file")
    );
    let p = Parser::from_yaml(
        "name: t\ndataset: from.file\nstages: [{set: {event.dataset: from.stage}}]\n",
        "t",
    )
    .unwrap();
    assert_eq!(
        p.parse(b"x", &c).get_str("event.dataset"),
        Some("from.stage")
    );
}

#[test]
fn scratch_values_moved_on_their_last_read_are_read_in_full_before() {
    // `_o.user` is read by two templates, a condition, and once more inside a list and a
    // translate entry: only the very last read may move it, every earlier one sees it whole.
    let yaml = r#"
name: moves
stages:
  - json: {target: _o}
  - set:
      user.name: "{{_o.user}}"
      user.id: "{{_o.id}}"
      related.user: ["{{_o.user}}", "{{_o.user}}"]
  - if: {equals: {_o.user: alice}}
    set: {event.action: "{{_o.action}}", event.reason: "{{_o.action}}"}
  - translate:
      field: _o.kind
      target: event.kind
      map: {a: "{{_o.user}}", b: "{{_o.nested}}"}
  - set: {user.target.name: "{{_o.user}}", _copy: "{{_o.nested}}"}
  - set: {labels: "{{_copy}}"}
"#;
    let line =
        r#"{"user": "alice", "id": 7, "action": "login", "kind": "a", "nested": {"x": [1]}}"#;
    let ev = parse(yaml, line);
    assert_eq!(ev["user"]["name"], "alice");
    assert_eq!(ev["user"]["id"], 7);
    assert_eq!(ev["related"]["user"], json!(["alice", "alice"]));
    assert_eq!(ev["event"]["action"], "login");
    assert_eq!(ev["event"]["reason"], "login");
    assert_eq!(ev["event"]["kind"], "alice");
    assert_eq!(ev["user"]["target"]["name"], "alice");
    assert_eq!(ev["labels"], json!({"x": [1]}));
    assert!(ev.get("_o").is_none() && ev.get("_copy").is_none());
}
