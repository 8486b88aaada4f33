//! The auditd assembler: golden cases, public samples, bounds, and the SigmaHQ auditd rules.
//!
//! Golden cases are `rules/parsers/tests/auditd/<case>.log` (audit.log lines) and `<case>.json`
//! (the array of expected events, in emission order). Each case is pushed line by line with a
//! fixed context (now = 2026-11-26T12:00:00Z, host `testhost`), then flushed once 10 s later
//! (events still pending then are emitted by time); after that nothing may be left pending.
//! To rewrite the expected files after a deliberate change, run with `VIGIE_BLESS=1` and review
//! the diff.
//!
//! The sample tests read `/work/shared/data` (or `VIGIE_SHARED_DATA`) and are skipped, with a
//! note on stderr, when it is absent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use pretty_assertions::assert_eq;
use serde_json::Value;
use vigie_detect::{load_mapping_dir, LoadOptions, RuleSet};
use vigie_event::Event;
use vigie_parse::auditd::{AuditAssembler, AuditOptions};
use vigie_parse::Context;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden_dir() -> PathBuf {
    repo().join("rules/parsers/tests/auditd")
}

fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("VIGIE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/data"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: {} is absent", dir.display());
        None
    }
}

fn ctx() -> Context {
    let now = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut ctx = Context::new(now);
    ctx.host_name = Some("testhost".to_owned());
    ctx
}

fn later(ctx: &Context, secs: i64) -> Context {
    let mut c = ctx.clone();
    c.now = ctx.now + Duration::seconds(secs);
    c
}

/// The lines of a `.log` file: split on `\n`, the last newline ending the last line.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|b| *b == b'\n').collect()
}

/// Pushes every line, then flushes 10 s later; checks nothing is left.
fn assemble(audit: &mut AuditAssembler, lines: &[&[u8]], ctx: &Context) -> Vec<Event> {
    let mut events = Vec::new();
    for line in lines {
        events.extend(audit.push(line, ctx));
    }
    events.extend(audit.flush(&later(ctx, 10), false));
    assert_eq!(
        audit.pending(),
        0,
        "events left pending after the time flush"
    );
    assert!(audit.flush(ctx, true).is_empty());
    events
}

fn assemble_text(text: &str) -> Vec<Event> {
    let mut audit = AuditAssembler::new(AuditOptions::default());
    let lines: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
    assemble(&mut audit, &lines, &ctx())
}

/// Every event holds what the crate promises, whatever its records.
fn check_invariants(ev: &Event) {
    for field in [
        "@timestamp",
        "message",
        "event.kind",
        "event.dataset",
        "event.original",
    ] {
        assert!(ev.contains(field), "{field} missing: {}", ev.to_json_line());
    }
    assert_eq!(ev.get_str("vigie.logsource.product"), Some("linux"));
    assert_eq!(ev.get_str("vigie.logsource.service"), Some("auditd"));
}

#[test]
fn golden_cases() {
    let bless = std::env::var_os("VIGIE_BLESS").is_some();
    let mut logs: Vec<PathBuf> = fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    assert!(
        logs.len() >= 6,
        "golden cases missing in {}",
        golden_dir().display()
    );
    let mut failures = Vec::new();
    for log in &logs {
        let bytes = fs::read(log).unwrap();
        let mut audit = AuditAssembler::new(AuditOptions::default());
        let events = assemble(&mut audit, &lines(&bytes), &ctx());
        events.iter().for_each(check_invariants);
        let actual = Value::Array(events.into_iter().map(Event::into_value).collect());
        let expected_path = log.with_extension("json");
        if bless {
            let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
            fs::write(&expected_path, text).unwrap();
            continue;
        }
        let expected: Value = serde_json::from_str(
            &fs::read_to_string(&expected_path)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display())),
        )
        .unwrap();
        if actual != expected {
            failures.push(log.display().to_string());
            assert_eq!(actual, expected, "{}", log.display());
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn execve_events_are_assembled_with_decoded_arguments() {
    let events = assemble_text(concat!(
        "type=SYSCALL msg=audit(1795687200.101:10): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 items=1 ppid=10 pid=11 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=1 comm=\"sh\" exe=\"/usr/bin/dash\" key=(null)\n",
        "type=EXECVE msg=audit(1795687200.101:10): argc=3 a0=\"sh\" a1=\"-c\" a2=6563686F20226869220A\n",
        "type=EOE msg=audit(1795687200.101:10): \n",
    ));
    assert_eq!(events.len(), 1);
    let ev = &events[0];
    assert_eq!(
        ev.get("process.args"),
        Some(&serde_json::json!(["sh", "-c", "echo \"hi\"\n"]))
    );
    assert_eq!(
        ev.get_str("process.command_line"),
        Some("sh -c echo \"hi\"\n")
    );
    assert_eq!(ev.get_str("process.executable"), Some("/usr/bin/dash"));
    assert_eq!(ev.get_i64("process.pid"), Some(11));
    assert_eq!(ev.get_i64("process.parent.pid"), Some(10));
    assert_eq!(ev.get_str("user.id"), Some("0"));
    assert_eq!(ev.get_str("user.audit.id"), Some("1000"));
    assert_eq!(ev.get_str("event.action"), Some("executed"));
    assert_eq!(ev.get_str("event.outcome"), Some("success"));
    assert_eq!(
        ev.get_str("vigie.logsource.category"),
        Some("process_creation")
    );
    // The syscall's own pointers are not taken for arguments.
    assert_eq!(ev.get_str("auditd.log.a2"), Some("echo \"hi\"\n"));
    assert!(!ev.contains("auditd.log.a3"));
    assert!(!ev.contains("auditd.log.key"));
    // EOE is not kept in the original.
    assert_eq!(ev.get_str("event.original").unwrap().lines().count(), 2);
}

#[test]
fn argc_bounds_the_arguments_and_missing_records_leave_gaps() {
    let events = assemble_text(concat!(
        "type=EXECVE msg=audit(1795687200.000:20): argc=2 a0=\"ls\" a1=\"-l\" a2=\"junk\"\n",
        "type=EXECVE msg=audit(1795687200.000:21): argc=4 a0=\"cp\" a2=\"b\"\n",
    ));
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].get("process.args"),
        Some(&serde_json::json!(["ls", "-l"]))
    );
    assert_eq!(events[0].get_str("process.executable"), Some("ls"));
    assert_eq!(
        events[1].get("process.args"),
        Some(&serde_json::json!(["cp", "b"]))
    );
    assert_eq!(events[1].get_i64("process.args_count"), Some(4));
}

#[test]
fn keep_original_off_and_node_names() {
    let mut c = ctx();
    c.keep_original = false;
    c.host_name = None;
    let mut audit = AuditAssembler::new(AuditOptions::default());
    let ev = audit.push(b"node=db-2 type=USER_ACCT msg=audit(1795687200.000:30): pid=1 uid=0 auid=0 ses=1 msg='op=PAM:accounting acct=\"root\" exe=\"/usr/sbin/cron\" hostname=? addr=? terminal=cron res=success'", &c);
    assert_eq!(ev.len(), 1);
    assert!(!ev[0].contains("event.original"));
    assert_eq!(ev[0].get_str("host.name"), Some("db-2"));
    let ev = audit.push(
        b"type=DAEMON_END msg=audit(1795687200.000:31): op=terminate auid=0 pid=1 res=success",
        &c,
    );
    assert!(!ev[0].contains("host.name"));
}

#[test]
fn the_oldest_pending_event_is_emitted_when_the_bound_is_hit() {
    let opts = AuditOptions {
        max_pending_events: 3,
        ..AuditOptions::default()
    };
    let mut audit = AuditAssembler::new(opts);
    let c = ctx();
    let mut out = Vec::new();
    for serial in 1..=5 {
        let line = format!("type=SYSCALL msg=audit(1795687200.000:{serial}): arch=c000003e syscall=2 success=yes exit=3 pid=1 comm=\"a\"");
        out.extend(audit.push(line.as_bytes(), &c));
        assert!(audit.pending() <= 3);
    }
    let serials: Vec<i64> = out
        .iter()
        .map(|e| e.get_i64("auditd.log.sequence").unwrap())
        .collect();
    assert_eq!(serials, [1, 2]);
    assert_eq!(audit.pending(), 3);
    // Not yet idle long enough: nothing; then everything, oldest first.
    assert!(audit.flush(&later(&c, 1), false).is_empty());
    let rest: Vec<i64> = audit
        .flush(&c, true)
        .iter()
        .map(|e| e.get_i64("auditd.log.sequence").unwrap())
        .collect();
    assert_eq!(rest, [3, 4, 5]);
    assert_eq!(audit.dropped_records(), 0);
}

#[test]
fn records_beyond_the_bound_are_counted_and_flagged() {
    let opts = AuditOptions {
        max_records_per_event: 3,
        ..AuditOptions::default()
    };
    let mut audit = AuditAssembler::new(opts);
    let c = ctx();
    audit.push(b"type=SYSCALL msg=audit(1795687200.000:9): arch=c000003e syscall=59 success=yes exit=0 pid=5 comm=\"x\" exe=\"/x\"", &c);
    for i in 0..5 {
        let line = format!(
            "type=PATH msg=audit(1795687200.000:9): item={i} name=\"/p{i}\" nametype=NORMAL"
        );
        assert!(audit.push(line.as_bytes(), &c).is_empty());
    }
    let events = audit.push(b"type=EOE msg=audit(1795687200.000:9): ", &c);
    assert_eq!(events.len(), 1);
    assert_eq!(audit.dropped_records(), 3);
    assert!(events[0].has_flag("truncated"));
    assert_eq!(
        events[0].get("auditd.log.name"),
        Some(&serde_json::json!(["/p0", "/p1"]))
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    let pieces: [&[u8]; 16] = [
        b"type=",
        b"SYSCALL ",
        b"EXECVE ",
        b"msg=audit(",
        b"1795687200.1",
        b":42): ",
        b"a0=",
        b"\"x",
        b"41424320",
        b"a1[0]=",
        b"msg='",
        b"' ",
        b"\x1d",
        b"\xff\xfe",
        b"node=",
        b"argc=999999999999 ",
    ];
    let mut audit = AuditAssembler::new(AuditOptions {
        max_pending_events: 16,
        max_records_per_event: 4,
        flush_after_ms: 2000,
    });
    let c = ctx();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..1_500 {
        let mut line = Vec::new();
        for _ in 0..8 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            line.extend_from_slice(pieces[(state % pieces.len() as u64) as usize]);
        }
        for end in 0..=line.len() {
            for ev in audit.push(&line[..end], &c) {
                check_invariants(&ev);
            }
        }
    }
    for ev in audit.flush(&c, true) {
        check_invariants(&ev);
    }
    assert_eq!(audit.pending(), 0);
}

#[test]
fn elastic_raw_sample() {
    let Some(data) = shared_data() else { return };
    let bytes = fs::read(data.join("elastic/auditd/log/test-auditd-raw.log")).unwrap();
    let lines = lines(&bytes);
    let mut audit = AuditAssembler::new(AuditOptions::default());
    let events = assemble(&mut audit, &lines, &ctx());
    events.iter().for_each(check_invariants);
    // 47 lines: the CWD and PATH of serial 479 make one event; everything else stands alone.
    assert_eq!(lines.len(), 47);
    assert_eq!(events.len(), 46);
    let failures: Vec<&Event> = events
        .iter()
        .filter(|e| e.has_flag("parse_failure"))
        .collect();
    assert_eq!(
        failures.len(),
        1,
        "only `type=UNKNOWN[1329] msg=g` is unreadable"
    );
    assert_eq!(audit.dropped_records(), 0);
    let by_seq = |seq: i64| {
        events
            .iter()
            .find(|e| e.get_i64("auditd.log.sequence") == Some(seq))
            .unwrap_or_else(|| panic!("no event {seq}"))
    };
    let charon = by_seq(18877199);
    assert_eq!(
        charon.get_str("process.executable"),
        Some("/usr/libexec/strongswan/charon (deleted)")
    );
    assert_eq!(charon.get_str("auditd.log.syscall"), Some("sendto"));
    assert_eq!(charon.get_str("host.architecture"), Some("x86_64"));
    let cmd = by_seq(19600329);
    assert_eq!(cmd.get_str("event.action"), Some("ran-command"));
    assert_eq!(
        cmd.get_str("process.command_line"),
        Some("/usr/lib64/nagios/plugins/check_asterisk_sip_peers -p 202")
    );
    let login = by_seq(19623789);
    assert_eq!(login.get_str("user.name"), Some("admin"));
    assert_eq!(login.get_str("source.ip"), Some("89.160.20.156"));
    assert_eq!(
        login.get("event.category"),
        Some(&serde_json::json!(["authentication"]))
    );
    let add_user = by_seq(389);
    assert_eq!(add_user.get_str("event.action"), Some("added-user-account"));
    assert_eq!(add_user.get_str("user.target.id"), Some("1000"));
    let cwd_path = by_seq(479);
    assert_eq!(cwd_path.get_str("file.path"), Some("/sbin/auditctl"));
    assert_eq!(
        cwd_path.get_str("process.working_directory"),
        Some("/home/some_user")
    );
    let top = by_seq(579393);
    assert_eq!(top.get("process.args"), Some(&serde_json::json!(["top"])));
    let title = by_seq(194440);
    assert_eq!(title.get_str("process.title"), Some("sshd: burn [priv]"));
    let old_login = by_seq(19623791);
    assert_eq!(old_login.get_str("user.audit.id"), Some("700"));
    assert_eq!(old_login.get_str("auditd.log.old_auid"), Some("700"));
    let node = by_seq(4686);
    assert_eq!(node.get_str("host.name"), Some("localhost.localdomain"));
}

#[test]
fn ait_sample() {
    let Some(data) = shared_data() else { return };
    let bytes = fs::read(data.join("ait/Audit/Audit_2k.log")).unwrap();
    let lines = lines(&bytes);
    let mut audit = AuditAssembler::new(AuditOptions::default());
    let events = assemble(&mut audit, &lines, &ctx());
    events.iter().for_each(check_invariants);
    assert_eq!(lines.len(), 2000);
    // Four AVC + SYSCALL + PROCTITLE triples; every other line is an event of its own.
    assert_eq!(events.len(), 2000 - 8);
    assert!(events.iter().all(|e| !e.has_flag("parse_failure")));
    let triples: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.get("auditd.log.record_types")
                == Some(&serde_json::json!(["AVC", "SYSCALL", "PROCTITLE"]))
        })
        .collect();
    assert_eq!(triples.len(), 4);
    assert_eq!(
        triples[0].get_str("process.title"),
        Some("apparmor_parser -r -T -W /etc/apparmor.d/sbin.dhclient")
    );
    let logins = events
        .iter()
        .filter(|e| e.get_str("event.action") == Some("changed-login-id-to"))
        .count();
    assert_eq!(logins, 262);
    // Every serial of the file is emitted once (LOGIN records wait for possible syscall
    // records, so they may come after the session records that follow them).
    let mut emitted: Vec<i64> = events
        .iter()
        .map(|e| e.get_i64("auditd.log.sequence").unwrap())
        .collect();
    emitted.sort_unstable();
    let mut serials: Vec<i64> = String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| l.split_once("):")?.0.rsplit_once(':')?.1.parse().ok())
        .collect();
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(emitted, serials);
}

/// The SigmaHQ auditd and Linux process_creation rules, with the shipped mappings.
fn sigma_rules(data: &Path) -> RuleSet {
    let rules = data.join("sigmahq/rules/linux");
    let opts = LoadOptions {
        mappings: load_mapping_dir(&repo().join("rules/mappings")).unwrap(),
        ..LoadOptions::default()
    };
    let (set, report) = RuleSet::load(
        &[rules.join("auditd"), rules.join("process_creation")],
        &opts,
    )
    .unwrap();
    assert!(set.len() > 100, "{report:?}");
    set
}

fn matched(set: &RuleSet, log: &str) -> Vec<String> {
    let events = assemble_text(log);
    assert_eq!(events.len(), 1, "{log}");
    let mut ids: Vec<String> = set
        .evaluate(&events[0])
        .iter()
        .map(|r| r.id.clone())
        .collect();
    ids.sort();
    ids
}

#[test]
fn sigmahq_auditd_rules_fire_on_assembled_events() {
    let Some(data) = shared_data() else { return };
    let set = sigma_rules(&data);
    let cases: [(&str, &str, &str); 7] = [
        (
            "chattr -i (EXECVE a0/a1)",
            "a5b977d6-8a81-4475-91b9-49dbfcd941f7",
            concat!(
                "type=SYSCALL msg=audit(1795687200.000:1): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 items=1 ppid=1 pid=2 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=1 comm=\"chattr\" exe=\"/usr/bin/chattr\" key=(null)\n",
                "type=EXECVE msg=audit(1795687200.000:1): argc=3 a0=\"chattr\" a1=\"-i\" a2=\"/etc/passwd\"\n",
                "type=PROCTITLE msg=audit(1795687200.000:1): proctitle=636861747472002D69002F6574632F706173737764\n",
            ),
        ),
        (
            "base64 -d (process_creation Image + CommandLine)",
            "e2072cab-8c9a-459b-b63c-40ae79e27031",
            concat!(
                "type=SYSCALL msg=audit(1795687200.000:2): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 items=1 ppid=1 pid=3 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=1 comm=\"base64\" exe=\"/usr/bin/base64\" key=(null)\n",
                "type=EXECVE msg=audit(1795687200.000:2): argc=3 a0=\"base64\" a1=\"-d\" a2=2F746D702F7061792062696E\n",
                "type=EOE msg=audit(1795687200.000:2): \n",
            ),
        ),
        (
            "insmod (SYSCALL comm + exe)",
            "106d7cbd-80ff-4985-b682-a7043e5acb72",
            concat!(
                "type=SYSCALL msg=audit(1795687200.000:3): arch=c000003e syscall=313 success=yes exit=0 a0=3 a1=55 a2=0 a3=0 items=0 ppid=1 pid=4 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=1 comm=\"insmod\" exe=\"/usr/bin/kmod\" key=\"modules\"\n",
                "type=PROCTITLE msg=audit(1795687200.000:3): proctitle=696E736D6F64002F746D702F726B2E6B6F\n",
            ),
        ),
        (
            "audit configuration written (PATH name)",
            "977ef627-4539-4875-adf4-ed8f780c4922",
            concat!(
                "type=SYSCALL msg=audit(1795687200.000:4): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=1 a2=241 a3=1b6 items=2 ppid=1 pid=5 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=1 comm=\"tee\" exe=\"/usr/bin/tee\" key=\"audit\"\n",
                "type=CWD msg=audit(1795687200.000:4): cwd=\"/root\"\n",
                "type=PATH msg=audit(1795687200.000:4): item=0 name=\"/etc/audit/\" inode=1 dev=fd:01 mode=040750 ouid=0 ogid=0 rdev=00:00 nametype=PARENT\n",
                "type=PATH msg=audit(1795687200.000:4): item=1 name=\"/etc/audit/rules.d/audit.rules\" inode=2 dev=fd:01 mode=0100640 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL\n",
                "type=PROCTITLE msg=audit(1795687200.000:4): proctitle=746565002F6574632F61756469742F72756C65732E642F61756469742E72756C6573\n",
            ),
        ),
        (
            "ASLR off by the personality syscall (SYSCALL name + raw a0)",
            "e497a24e-9345-4a62-9803-b06d7d7cb132",
            "type=SYSCALL msg=audit(1795687200.000:5): arch=c000003e syscall=135 success=yes exit=0 a0=40000 a1=0 a2=0 a3=0 items=0 ppid=1 pid=6 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=1 comm=\"setarch\" exe=\"/usr/bin/setarch\" key=(null)\n",
        ),
        (
            "user account created (ADD_USER record type)",
            "759d0d51-bc99-4b5e-9add-8f5b2c8e7512",
            "type=ADD_USER msg=audit(1795687200.000:6): pid=7 uid=0 auid=1000 ses=1 msg='op=add-user acct=\"mallory\" exe=\"/usr/sbin/useradd\" hostname=? addr=? terminal=pts/0 res=success'\n",
        ),
        (
            "web server user runs a program (euid 33, numeric)",
            "c0d3734d-330f-4a03-aae2-65dacc6a8222",
            concat!(
                "type=SYSCALL msg=audit(1795687200.000:7): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 items=1 ppid=1 pid=8 auid=4294967295 uid=33 gid=33 euid=33 suid=33 fsuid=33 egid=33 sgid=33 fsgid=33 tty=(none) ses=4294967295 comm=\"uname\" exe=\"/usr/bin/uname\" key=\"detect_execve_www\"\n",
                "type=EXECVE msg=audit(1795687200.000:7): argc=2 a0=\"uname\" a1=\"-a\"\n",
                "type=EOE msg=audit(1795687200.000:7): \n",
            ),
        ),
    ];
    for (what, rule, log) in cases {
        let ids = matched(&set, log);
        assert!(
            ids.iter().any(|id| id == rule),
            "{what}: expected {rule}, matched {ids:?}"
        );
    }
}

#[test]
fn sigmahq_rules_stay_quiet_on_benign_activity() {
    let Some(data) = shared_data() else { return };
    let set = sigma_rules(&data);
    let benign = [
        concat!(
            "type=SYSCALL msg=audit(1795687200.000:11): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 items=1 ppid=1 pid=2 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=1 comm=\"ls\" exe=\"/usr/bin/ls\" key=(null)\n",
            "type=EXECVE msg=audit(1795687200.000:11): argc=3 a0=\"ls\" a1=\"-la\" a2=2F686F6D652F616C6963652F6D7920646F6373\n",
            "type=CWD msg=audit(1795687200.000:11): cwd=\"/home/alice\"\n",
            "type=PROCTITLE msg=audit(1795687200.000:11): proctitle=6C73002D6C61\n",
        ),
        concat!(
            "type=SYSCALL msg=audit(1795687200.000:12): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=1 a2=0 a3=0 items=1 ppid=1 pid=3 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=1 comm=\"vim\" exe=\"/usr/bin/vim.basic\" key=\"home\"\n",
            "type=PATH msg=audit(1795687200.000:12): item=0 name=\"/home/alice/notes.txt\" inode=9 dev=fd:01 mode=0100644 ouid=1000 ogid=1000 rdev=00:00 nametype=NORMAL\n",
            "type=PROCTITLE msg=audit(1795687200.000:12): proctitle=76696D006E6F7465732E747874\n",
        ),
        "type=USER_ACCT msg=audit(1795687200.000:13): pid=10125 uid=0 auid=4294967295 ses=4294967295 msg='op=PAM:accounting acct=\"root\" exe=\"/usr/sbin/cron\" hostname=? addr=? terminal=cron res=success'\n",
        "type=SERVICE_STOP msg=audit(1795687200.000:14): pid=1 uid=0 auid=4294967295 ses=4294967295 msg='unit=phpsessionclean comm=\"systemd\" exe=\"/lib/systemd/systemd\" hostname=? addr=? terminal=? res=success'\n",
        "type=SYSCALL msg=audit(1795687200.000:15): arch=c000003e syscall=135 success=yes exit=0 a0=0 a1=0 a2=0 a3=0 items=0 ppid=1 pid=6 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=1 comm=\"wine\" exe=\"/usr/bin/wine\" key=(null)\n",
    ];
    for log in benign {
        let ids = matched(&set, log);
        assert!(ids.is_empty(), "benign activity matched {ids:?}:\n{log}");
    }
}
