//! Golden cases for [`map_entry`](super::map_entry).

use super::*;
use serde_json::json;

fn entry(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn typical_sshd_entry() {
    let e = entry(json!({
        "__CURSOR": "s=6d2a1f;i=4c1;b=0b7c;m=1a2b;t=64a1;x=9f",
        "__REALTIME_TIMESTAMP": "1795684442123456",
        "__MONOTONIC_TIMESTAMP": "123456789",
        "_BOOT_ID": "0b7c5a6b4c2d4e8f9a1b2c3d4e5f6a7b",
        "_MACHINE_ID": "5f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "_HOSTNAME": "bastion-1",
        "_TRANSPORT": "syslog",
        "PRIORITY": "6",
        "SYSLOG_FACILITY": "4",
        "SYSLOG_IDENTIFIER": "sshd",
        "SYSLOG_PID": "12345",
        "_PID": "12345",
        "_UID": "0",
        "_GID": "0",
        "_COMM": "sshd",
        "_EXE": "/usr/sbin/sshd",
        "_CMDLINE": "sshd: alice [priv]",
        "_SYSTEMD_UNIT": "ssh.service",
        "_SYSTEMD_SLICE": "system.slice",
        "MESSAGE": "Accepted publickey for alice from 198.51.100.7 port 53712 ssh2: ED25519 SHA256:abc",
        "UNMAPPED_FIELD": "dropped"
    }));
    let event = map_entry(&e, Some("agent-host"));
    let message =
        "Accepted publickey for alice from 198.51.100.7 port 53712 ssh2: ED25519 SHA256:abc";
    assert_eq!(
        event.into_value(),
        json!({
            "@timestamp": "2026-11-26T09:14:02.123456Z",
            "message": message,
            "event": {"original": message, "dataset": "journald", "kind": "event"},
            "host": {
                "name": "bastion-1",
                "id": "5f1e2d3c4b5a69788796a5b4c3d2e1f0",
                "boot": {"id": "0b7c5a6b4c2d4e8f9a1b2c3d4e5f6a7b"}
            },
            "log": {
                "level": "info",
                "syslog": {
                    "appname": "sshd",
                    "severity": {"code": 6, "name": "info"},
                    "facility": {"code": 4, "name": "auth"},
                    "priority": 38
                }
            },
            "process": {
                "name": "sshd",
                "pid": 12345,
                "executable": "/usr/sbin/sshd",
                "command_line": "sshd: alice [priv]"
            },
            "user": {"id": "0"},
            "group": {"id": "0"},
            "service": {"name": "ssh"},
            "systemd": {"unit": "ssh.service"},
            "journald": {"systemd_slice": "system.slice", "transport": "syslog"},
            "vigie": {"logsource": {"product": "linux", "service": "auth"}}
        })
    );
}

#[test]
fn binary_message_is_decoded_and_flagged() {
    // "bad \xff byte" as journalctl writes non-UTF-8 data.
    let e = entry(json!({
        "__REALTIME_TIMESTAMP": "1795684442000000",
        "MESSAGE": [98, 97, 100, 32, 255, 32, 98, 121, 116, 101],
        "SYSLOG_IDENTIFIER": "kernel"
    }));
    let event = map_entry(&e, None);
    assert_eq!(event.get_str("message"), Some("bad \u{fffd} byte"));
    assert!(event.has_flag(flags::INVALID_UTF8));
    assert!(!event.has_flag(flags::TIMESTAMP_MISSING));
}

#[test]
fn byte_array_that_is_utf8_is_not_flagged() {
    // journalctl also uses byte arrays for valid text holding control bytes.
    let e = entry(json!({
        "__REALTIME_TIMESTAMP": "1795684442000000",
        "MESSAGE": [27, 91, 49, 109, 104, 105],
    }));
    let event = map_entry(&e, None);
    assert_eq!(event.get_str("message"), Some("\u{1b}[1mhi"));
    assert!(!event.has_flag(flags::INVALID_UTF8));
}

#[test]
fn missing_fields_are_left_out_and_time_is_flagged() {
    let before = Utc::now();
    let event = map_entry(&entry(json!({"MESSAGE": "hello"})), Some("agent-host"));
    assert_eq!(event.get_str("message"), Some("hello"));
    assert_eq!(event.get_str("host.name"), Some("agent-host"));
    assert!(event.has_flag(flags::TIMESTAMP_MISSING));
    assert!(event.timestamp().is_some_and(|t| t >= before));
    for absent in [
        "process.name",
        "process.pid",
        "log.level",
        "log.syslog",
        "user.id",
        "service.name",
        "systemd.unit",
        "journald",
    ] {
        assert!(!event.contains(absent), "{absent} should be absent");
    }
    assert_eq!(event.get_str("vigie.logsource.service"), Some("syslog"));
    assert_eq!(event.get_str("event.dataset"), Some("journald"));

    let empty = map_entry(&Map::new(), None);
    assert!(!empty.contains("message"));
    assert!(!empty.contains("host.name"));
}

#[test]
fn comm_names_the_process_without_identifier() {
    let e = entry(json!({"_COMM": "cron", "SYSLOG_PID": "77", "_SYSTEMD_UNIT": "session-4.scope"}));
    let event = map_entry(&e, None);
    assert_eq!(event.get_str("process.name"), Some("cron"));
    assert!(!event.contains("log.syslog.appname"));
    assert_eq!(event.get_i64("process.pid"), Some(77));
    assert_eq!(event.get_str("service.name"), Some("session-4.scope"));
}

#[test]
fn severities_map_to_ecs_levels() {
    let expected = [
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ];
    for (code, level) in expected.iter().enumerate() {
        let e = entry(json!({"PRIORITY": code.to_string()}));
        let event = map_entry(&e, None);
        assert_eq!(event.get_str("log.level"), Some(*level));
        assert_eq!(event.get_i64("log.syslog.severity.code"), Some(code as i64));
    }
    let bogus = map_entry(&entry(json!({"PRIORITY": "9"})), None);
    assert!(!bogus.contains("log.level"));
}

#[test]
fn auth_routing_by_facility_or_identifier() {
    let service = |v: Value| {
        map_entry(&entry(v), None)
            .get_str("vigie.logsource.service")
            .map(str::to_owned)
    };
    assert_eq!(
        service(json!({"SYSLOG_FACILITY": "10", "SYSLOG_IDENTIFIER": "polkitd"})).as_deref(),
        Some("auth")
    );
    assert_eq!(
        service(json!({"SYSLOG_FACILITY": "3", "SYSLOG_IDENTIFIER": "sudo"})).as_deref(),
        Some("auth")
    );
    assert_eq!(
        service(json!({"SYSLOG_IDENTIFIER": "systemd-logind"})).as_deref(),
        Some("auth")
    );
    assert_eq!(
        service(json!({"SYSLOG_FACILITY": "3", "SYSLOG_IDENTIFIER": "systemd"})).as_deref(),
        Some("syslog")
    );
}

#[test]
fn repeated_field_uses_its_first_value() {
    let e = entry(json!({"MESSAGE": ["first", "second"], "_PID": ["12", "13"]}));
    let event = map_entry(&e, None);
    assert_eq!(event.get_str("message"), Some("first"));
    assert_eq!(event.get_i64("process.pid"), Some(12));
}

#[test]
fn unparsed_line_is_kept_as_message() {
    let event = unparsed_event(b"-- No entries --", Some("h"));
    assert_eq!(event.get_str("message"), Some("-- No entries --"));
    assert_eq!(event.get_str("host.name"), Some("h"));
    assert!(event.has_flag(flags::PARSE_FAILURE));
    assert!(!event.has_flag(flags::INVALID_UTF8));
    assert!(unparsed_event(b"\xff", None).has_flag(flags::INVALID_UTF8));
}
