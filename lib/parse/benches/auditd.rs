//! Records per second through [`AuditAssembler`], measured in process on one thread.
//!
//! Each iteration pushes one batch of `audit.log` lines (about 2,000 records with distinct
//! serials, the mix of a busy server with execve and file-watch rules: `execve` events of 7
//! records with hex arguments, file events of 5 records, single-record PAM and systemd
//! messages), then flushes what is left. Criterion's throughput is in records (lines):
//! - `assemble`: lines in, [`vigie_event::Event`]s out (parse, assemble, normalize);
//! - `assemble_serialize`: the same, then each event written as a JSON line, as the agent
//!   batches it.
//!
//! Run with `cargo bench -p vigie-parse --bench auditd`.

use std::hint::black_box;

use chrono::DateTime;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigie_parse::auditd::{AuditAssembler, AuditOptions};
use vigie_parse::Context;

/// One audit event per template; `{T}` is the audit time, `{S}` the serial.
const TEMPLATES: [&[&str]; 4] = [
    &[
        r#"type=SYSCALL msg=audit({T}:{S}): arch=c000003e syscall=59 success=yes exit=0 a0=55d1c3a0 a1=55d1c3b8 a2=55d1c3d0 a3=8 items=2 ppid=2214 pid=2290 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="curl" exe="/usr/bin/curl" subj=unconfined key="susp_activity""#,
        r#"type=EXECVE msg=audit({T}:{S}): argc=4 a0="curl" a1="-s" a2="-o" a3=2F746D702F7061796C6F616420312E7368"#,
        r#"type=CWD msg=audit({T}:{S}): cwd="/home/alice/projects/web""#,
        r#"type=PATH msg=audit({T}:{S}): item=0 name="/usr/bin/curl" inode=1311 dev=fd:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0"#,
        r#"type=PATH msg=audit({T}:{S}): item=1 name="/lib64/ld-linux-x86-64.so.2" inode=2049 dev=fd:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0"#,
        r#"type=PROCTITLE msg=audit({T}:{S}): proctitle=6375726C002D73002D6F002F746D702F7061796C6F616420312E7368"#,
        r#"type=EOE msg=audit({T}:{S}): "#,
    ],
    &[
        r#"type=SYSCALL msg=audit({T}:{S}): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=7ffc2a1b a2=241 a3=1b6 items=2 ppid=1 pid=811 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="rsyslogd" exe="/usr/sbin/rsyslogd" key="logging""#,
        r#"type=CWD msg=audit({T}:{S}): cwd="/""#,
        r#"type=PATH msg=audit({T}:{S}): item=0 name="/etc/" inode=131073 dev=fd:01 mode=040755 ouid=0 ogid=0 rdev=00:00 nametype=PARENT cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0"#,
        r#"type=PATH msg=audit({T}:{S}): item=1 name="/etc/rsyslog.conf" inode=132001 dev=fd:01 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0"#,
        r#"type=PROCTITLE msg=audit({T}:{S}): proctitle=2F7573722F7362696E2F727379736C6F6764002D6E"#,
    ],
    &[
        r#"type=USER_ACCT msg=audit({T}:{S}): pid=10125 uid=0 auid=4294967295 ses=4294967295 msg='op=PAM:accounting acct="root" exe="/usr/sbin/cron" hostname=? addr=? terminal=cron res=success'"#,
    ],
    &[
        r#"type=SERVICE_STOP msg=audit({T}:{S}): pid=1 uid=0 auid=4294967295 ses=4294967295 msg='unit=phpsessionclean comm="systemd" exe="/lib/systemd/systemd" hostname=? addr=? terminal=? res=success'"#,
    ],
];

/// About `records` lines, templates in turn, one serial per event, 1 ms apart.
fn batch(records: usize) -> Vec<String> {
    let mut lines = Vec::with_capacity(records + 8);
    let mut serial = 1_000u64;
    while lines.len() < records {
        for template in TEMPLATES {
            serial += 1;
            let ms = serial % 1000;
            let time = format!("{}.{ms:03}", 1_764_140_000 + serial / 1000);
            for line in template {
                lines.push(
                    line.replace("{T}", &time)
                        .replace("{S}", &serial.to_string()),
                );
            }
        }
    }
    lines
}

fn bench(c: &mut Criterion) {
    let lines = batch(2_000);
    let now = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default();
    let mut ctx = Context::new(now);
    ctx.host_name = Some("web-1.example.org".to_owned());
    let mut group = c.benchmark_group("auditd");
    group.throughput(Throughput::Elements(lines.len() as u64));
    let mut audit = AuditAssembler::new(AuditOptions::default());
    group.bench_function("assemble", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for line in &lines {
                n += audit.push(line.as_bytes(), &ctx).len();
            }
            n += audit.flush(&ctx, true).len();
            black_box(n)
        })
    });
    let mut out = Vec::with_capacity(1 << 20);
    group.bench_function("assemble_serialize", |b| {
        b.iter(|| {
            out.clear();
            for line in &lines {
                for ev in audit.push(line.as_bytes(), &ctx) {
                    ev.write_json(&mut out);
                    out.push(b'\n');
                }
            }
            for ev in audit.flush(&ctx, true) {
                ev.write_json(&mut out);
                out.push(b'\n');
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
