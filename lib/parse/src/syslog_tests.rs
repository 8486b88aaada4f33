//! Unit tests of the syslog codec's pieces; whole lines are covered by the golden tests.

use super::*;
use chrono::{DateTime, Utc};
use serde_json::json;

fn ctx() -> Context {
    Context::new(
        DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    )
}

fn sd(s: &str) -> Value {
    Value::Object(structured_data(s).unwrap().0)
}

#[test]
fn pri_decoding() {
    assert_eq!(priority("<34>Oct"), Ok((Some(34), "Oct")));
    assert_eq!(priority("<0>x"), Ok((Some(0), "x")));
    assert_eq!(priority("<191>x"), Ok((Some(191), "x")));
    assert_eq!(priority("Oct"), Ok((None, "Oct")));
    for bad in ["<192>x", "<>x", "<1234>x", "<12", "<1a>", "<"] {
        assert_eq!(priority(bad), Err(NotParsed), "{bad:?}");
    }
    let mut ev = Event::new();
    set_priority(&mut ev, 86); // authpriv.info
    assert_eq!(ev.get_i64("log.syslog.facility.code"), Some(10));
    assert_eq!(ev.get_str("log.syslog.facility.name"), Some("authpriv"));
    assert_eq!(ev.get_i64("log.syslog.severity.code"), Some(6));
    assert_eq!(ev.get_str("log.syslog.severity.name"), Some("info"));
    assert_eq!(ev.get_str("log.level"), Some("info"));
    assert_eq!(facility_name(23), Some("local7"));
    assert_eq!(severity_name(0), Some("emerg"));
    assert_eq!(facility_name(24), None);
}

#[test]
fn version_detection() {
    assert_eq!(
        version("1 2026-11-26T10:00:00Z h"),
        Some((1, "2026-11-26T10:00:00Z h"))
    );
    assert_eq!(version("1 - h"), Some((1, "- h")));
    assert_eq!(version("Nov 26"), None);
    assert_eq!(version("2026-11-26T10:00:00Z"), None);
    assert_eq!(version("01 2026"), None);
    assert_eq!(version("1 foo"), None);
    assert_eq!(version("1"), None);
}

#[test]
fn sd_escapes() {
    assert_eq!(
        sd(r#"[ex@32473 a="q\"uote" b="back\\slash" c="br\]acket" d="keep\n" e="]"] rest"#),
        json!({"ex@32473": {"a": "q\"uote", "b": "back\\slash", "c": "br]acket", "d": "keep\\n", "e": "]"}})
    );
    let (_, rest) = structured_data(r#"[a x="1"][b] msg"#).unwrap();
    assert_eq!(rest, " msg");
    // A value ending in an escaped backslash closes correctly.
    assert_eq!(sd(r#"[a x="end\\"]"#), json!({"a": {"x": "end\\"}}));
    // Non-ASCII values survive.
    assert_eq!(sd(r#"[a x="héllo ✓"]"#), json!({"a": {"x": "héllo ✓"}}));
}

#[test]
fn sd_repeats() {
    assert_eq!(
        sd(r#"[meta ip="192.0.2.1" ip="192.0.2.2" ip="192.0.2.3"][meta seq="1"]"#),
        json!({"meta": {"ip": ["192.0.2.1", "192.0.2.2", "192.0.2.3"], "seq": "1"}})
    );
}

#[test]
fn sd_malformed() {
    for bad in [
        "[",
        "[]",
        "[a",
        "[a x]",
        "[a x=1]",
        r#"[a x="1]"#,
        r#"[a x="1"#,
        r#"[a x="1"x]"#,
        r#"[a ="1"]"#,
    ] {
        assert_eq!(structured_data(bad), Err(NotParsed), "{bad:?}");
    }
}

#[test]
fn tags() {
    let t = tag("sshd[812]: Accepted").unwrap();
    assert_eq!(
        (t.name, t.procid, t.message),
        ("sshd", Some("812"), "Accepted")
    );
    let t = tag("sudo:     alice : TTY=pts/0").unwrap();
    assert_eq!(
        (t.name, t.procid, t.message),
        ("sudo", None, "alice : TTY=pts/0")
    );
    let t = tag("sshd(pam_unix)[19939]: authentication failure").unwrap();
    assert_eq!((t.name, t.procid), ("sshd(pam_unix)", Some("19939")));
    let t = tag("kernel:").unwrap();
    assert_eq!((t.name, t.message), ("kernel", ""));
    for none in [
        "-- MARK --",
        "http://x y",
        "app[12] x",
        "app[]: x",
        ": x",
        "app[1 2]: x",
        "Failed password",
    ] {
        assert_eq!(tag(none), None, "{none:?}");
    }
    assert_eq!(tag(&format!("{}: x", "a".repeat(200))), None);
}

#[test]
fn hostnames() {
    for h in [
        "web-1",
        "host.example.org",
        "192.0.2.7",
        "2001:db8::1",
        "::1",
        "HOST_2",
    ] {
        assert!(is_hostname(h), "{h}");
    }
    for h in ["", "sshd:", "sshd[1]:", "--", "a/b", "é"] {
        assert!(!is_hostname(h), "{h}");
    }
}

#[test]
fn not_syslog() {
    for line in [
        "",
        "hello world",
        "<html>",
        "2026",
        "Nov 26",
        "1 garbage here",
        "<13>1 2026-99-26T10:00:00Z h a p m -",
    ] {
        assert!(decode(line, &ctx()).is_err(), "{line:?}");
    }
}

#[test]
fn pri_without_timestamp_is_kept() {
    let ev = decode("<13>myapp[7]: started", &ctx()).unwrap();
    assert_eq!(ev.get_str("process.name"), Some("myapp"));
    assert_eq!(ev.get_i64("process.pid"), Some(7));
    assert_eq!(ev.get_str("message"), Some("started"));
    assert!(ev.has_flag(flags::TIMESTAMP_MISSING));
}

#[test]
fn hostname_left_out_by_local_senders() {
    let ev = decode("<13>Nov 26 10:00:00 myapp[7]: started", &ctx()).unwrap();
    assert_eq!(ev.get_str("host.name"), None);
    assert_eq!(ev.get_str("process.name"), Some("myapp"));
}

#[test]
fn procid_non_numeric() {
    let ev = decode("<13>1 2026-11-26T10:00:00Z h app worker-3 - - hi", &ctx()).unwrap();
    assert_eq!(ev.get("process.pid"), None);
    assert_eq!(ev.get_str("log.syslog.procid"), Some("worker-3"));
    let ev = decode("Nov 26 10:00:00 h app[+5]: hi", &ctx()).unwrap();
    assert_eq!(ev.get_str("log.syslog.procid"), Some("+5"));
}

#[test]
fn rfc5424_short_headers() {
    let ev = decode("<13>1 2026-11-26T10:00:00Z h app", &ctx()).unwrap();
    assert_eq!(ev.get_str("process.name"), Some("app"));
    assert_eq!(ev.get_str("message"), Some(""));
    let ev = decode("<13>1 - - - - - -", &ctx()).unwrap();
    assert!(ev.has_flag(flags::TIMESTAMP_MISSING));
    assert_eq!(ev.get_str("message"), Some(""));
    assert_eq!(ev.get("host.name"), None);
}
