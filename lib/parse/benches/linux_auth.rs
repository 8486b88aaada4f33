//! Lines per second of the built-in `linux_auth` declarative parser, on one thread.
//!
//! Each iteration parses a fixed mix of 24 auth.log / secure lines (sshd logins, failures and
//! disconnects, PAM sessions, sudo, su, cron, systemd-logind, useradd, and lines no pattern
//! knows), so criterion's throughput is lines per second:
//! - `linux_auth/parse`: [`Parser::parse`], the syslog header through the last stage and the
//!   event's invariants (the whole "parse + normalize" of a line), dropping the event;
//! - `linux_auth/syslog_codec`: the plain syslog codec on the same lines, for comparison (the
//!   header alone, no ECS normalization).
//!
//! Run with `cargo bench -p vigie-parse --bench linux_auth`. The goal is 300,000 lines/s per
//! core for `parse`.

use std::hint::black_box;

use chrono::{DateTime, FixedOffset};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigie_parse::{decode, Codec, Context, Registry};

/// A day of a bastion's auth.log, in the proportions such files have: mostly sshd noise from
/// scanners, sessions, cron, some sudo.
const LINES: [&str; 24] = [
    "Nov 26 09:14:02 web-01 sshd[48211]: Failed password for invalid user postgres from 203.0.113.45 port 51022 ssh2",
    "Nov 26 09:14:07 web-01 sshd[48211]: Failed password for root from 203.0.113.45 port 51022 ssh2",
    "Nov 26 09:14:08 web-01 sshd[48211]: Invalid user admin from 203.0.113.77 port 33000",
    "Nov 26 09:14:09 web-01 sshd[48211]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.45  user=root",
    "Nov 26 09:14:10 web-01 sshd[48211]: Connection closed by authenticating user root 203.0.113.45 port 51022 [preauth]",
    "Nov 26 09:14:11 web-01 sshd[48212]: Received disconnect from 203.0.113.45 port 51023:11: Bye Bye [preauth]",
    "Nov 26 09:14:12 web-01 sshd[48212]: Disconnected from invalid user admin 203.0.113.77 port 33000 [preauth]",
    "Nov 26 09:15:31 web-01 sshd[48240]: Accepted password for jenkins-deploy from 198.51.100.23 port 40112 ssh2",
    "Nov 26 09:15:31 web-01 sshd[48240]: pam_unix(sshd:session): session opened for user jenkins-deploy(uid=1001) by (uid=0)",
    "Nov 26 09:15:32 web-01 systemd-logind[712]: New session 42 of user jenkins-deploy.",
    "Nov 26 09:16:02 web-01 sudo:   deploy : TTY=pts/1 ; PWD=/srv/app ; USER=root ; COMMAND=/usr/bin/systemctl restart app.service",
    "Nov 26 09:16:02 web-01 sudo: pam_unix(sudo:session): session opened for user root(uid=0) by deploy(uid=1001)",
    "Nov 26 09:16:03 web-01 sudo: pam_unix(sudo:session): session closed for user root",
    "Nov 26 09:17:01 web-01 CRON[48302]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
    "Nov 26 09:17:01 web-01 CRON[48303]: (root) CMD (   cd / && run-parts --report /etc/cron.hourly > /dev/null 2>&1)",
    "Nov 26 09:17:01 web-01 CRON[48302]: pam_unix(cron:session): session closed for user root",
    "Nov 26 09:18:44 web-01 sshd[48251]: Accepted publickey for alice from 203.0.113.45 port 51022 ssh2: ED25519 SHA256:5mPxk2WQ9bTlLqW8fVnF1vQ0m6s0A9n8yX3Zr2cD4eE",
    "Nov 26 09:19:12 web-01 sshd[48300]: Did not receive identification string from 203.0.113.50 port 51549",
    "Nov 26 09:20:03 web-01 sshd[48390]: Disconnected from authenticating user root 203.0.113.45 port 51544 [preauth]",
    "Nov 26 09:21:00 web-01 su[6001]: (to root) alice on pts/0",
    "Nov 26 09:22:00 web-01 useradd[7002]: new user: name=dave, UID=1005, GID=1005, home=/home/dave, shell=/bin/bash, from=/dev/pts/0",
    "Nov 26 09:23:00 web-01 sshd[812]: Server listening on 0.0.0.0 port 22.",
    "Nov 26 09:45:02 web-01 systemd-logind[712]: Removed session 42.",
    "Nov 26 09:46:00 web-01 polkitd[611]: Registered Authentication Agent for unix-session:42",
];

fn context() -> Context {
    let now = DateTime::parse_from_rfc3339("2026-11-26T09:30:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default();
    let mut ctx = Context::new(now);
    ctx.host_name = Some("web-01.example.org".to_owned());
    ctx.local_offset = FixedOffset::east_opt(3600).unwrap_or(ctx.local_offset);
    ctx
}

fn linux_auth(c: &mut Criterion) {
    let reg = Registry::builtin();
    let Some(parser) = reg.get("linux_auth") else {
        panic!("linux_auth does not load: {:?}", reg.builtin_errors());
    };
    let ctx = context();
    let lines: Vec<&[u8]> = LINES.iter().map(|l| l.as_bytes()).collect();
    let classified = lines
        .iter()
        .filter(|l| parser.parse(l, &ctx).contains("event.action"))
        .count();
    println!(
        "{} lines, {} with an event.action, {} bytes on average",
        lines.len(),
        classified,
        lines.iter().map(|l| l.len()).sum::<usize>() / lines.len()
    );

    let mut group = c.benchmark_group("linux_auth");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(parser.parse(black_box(line), &ctx));
            }
        })
    });
    group.bench_function("syslog_codec", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(decode(Codec::Syslog, black_box(line), false, &ctx));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, linux_auth);
criterion_main!(benches);
