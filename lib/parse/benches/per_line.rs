//! Per-line CPU cost of the agent's file path, measured in process on one thread.
//!
//! Each benchmark handles one line per iteration (cycling through realistic RFC 3164 lines of
//! `/var/log/auth.log`, `kern.log` and `mail.log`: local time, no PRI, with a hostname), so
//! criterion's time is the cost per line:
//! - `normalize`: what `agent/src/pipeline.rs` does per line before batching — `decode` with
//!   `Codec::Syslog`, then the `ev.set(...)` calls of `Normalizer::file_line` and
//!   `Normalizer::finish`, and dropping the event;
//! - `serialize/*`: appending one finished event to a batch body as a JSON line
//!   (`BatchBuilder::push`), with `serde_json::to_writer` of the event's map and with
//!   [`Event::write_json`];
//! - `line_to_json`: both, as the agent chains them.
//!
//! Run with `cargo bench -p vigie-parse --bench per_line`. To profile one benchmark, build with
//! symbols kept (`CARGO_PROFILE_BENCH_STRIP=none CARGO_PROFILE_BENCH_DEBUG=line-tables-only
//! cargo bench -p vigie-parse --bench per_line --no-run`), then run the printed executable
//! under `perf record -e cpu-clock -g <exe> --bench --profile-time 10 '^normalize$'`.

use std::hint::black_box;
use std::path::Path;

use chrono::{DateTime, FixedOffset};
use criterion::{criterion_group, criterion_main, Criterion};
use vigie_event::{fields, Event};
use vigie_parse::{decode, Codec, Context};

/// Lines as rsyslog writes them with its traditional format (110–210 bytes).
const LINES: [&str; 10] = [
    "Nov 26 09:14:02 web-01.prod sshd[48211]: Failed password for invalid user postgres from 203.0.113.45 port 51022 ssh2",
    "Nov 26 09:14:07 web-01.prod sshd[48211]: Failed password for root from 203.0.113.45 port 51022 ssh2 [preauth] attempt 3 of 6",
    "Nov 26 09:15:31 web-01.prod sshd[48240]: Accepted password for jenkins-deploy from 198.51.100.23 port 40112 ssh2",
    "Nov 26 09:15:31 web-01.prod sshd[48240]: pam_unix(sshd:session): session opened for user deploy(uid=1001) by (uid=0)",
    "Nov 26 09:16:02 web-01.prod sudo:   deploy : TTY=pts/1 ; PWD=/srv/app ; USER=root ; COMMAND=/usr/bin/systemctl restart app.service",
    "Nov 26 09:17:01 web-01.prod CRON[48302]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
    "Nov 26 09:17:01 web-01.prod CRON[48303]: (root) CMD (   cd / && run-parts --report /etc/cron.hourly > /dev/null 2>&1)",
    "Nov 26 09:18:44 web-01.prod kernel: [812345.678901] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=203.0.113.9 DST=192.0.2.10 LEN=60 TOS=0x00 TTL=52 PROTO=TCP SPT=44321 DPT=22",
    "Nov 26 09:19:12 web-01.prod postfix/smtpd[2231]: NOQUEUE: reject: RCPT from unknown[203.0.113.77]: 554 5.7.1 <spam@example.com>: Relay access denied; from=<a@example.net> to=<spam@example.com> proto=ESMTP",
    "Nov 26 09:20:03 web-01.prod sshd[48390]: Disconnected from authenticating user root 203.0.113.45 port 51544 [preauth]",
];

/// What the agent knows about the source, as `Normalizer` holds it.
struct Source {
    host_name: String,
    name: &'static str,
    dataset: &'static str,
    path: &'static Path,
    version: &'static str,
}

impl Source {
    fn new() -> Self {
        Self {
            host_name: "web-1.example.org".to_owned(),
            name: "auth",
            dataset: "system.auth",
            path: Path::new("/var/log/auth.log"),
            version: "0.1.0",
        }
    }

    /// `Normalizer::context`: the agent's hostname and local offset, read now.
    fn context(&self) -> Context {
        let now = DateTime::parse_from_rfc3339("2026-11-26T09:30:00Z")
            .map(|t| t.to_utc())
            .unwrap_or_default();
        let mut ctx = Context::new(now);
        ctx.host_name = Some(self.host_name.clone());
        ctx.local_offset = FixedOffset::east_opt(3600).unwrap_or(ctx.local_offset);
        ctx
    }

    /// `Normalizer::file_line` followed by `Normalizer::finish`, call for call.
    fn file_line(&self, bytes: &[u8], offset: u64, ctx: &Context) -> Event {
        let mut ev = decode(Codec::Syslog, bytes, false, ctx);
        ev.set(fields::LOG_FILE_PATH, self.path.to_string_lossy().as_ref());
        ev.set(fields::LOG_OFFSET, offset);
        ev.set_default(fields::HOST_NAME, self.host_name.as_str());
        ev.set(fields::VIGIE_SOURCE, self.name);
        ev.set_default(fields::EVENT_DATASET, self.dataset);
        ev.set_default(fields::EVENT_KIND, "event");
        ev.set(fields::AGENT_TYPE, "vigie");
        ev.set(fields::AGENT_VERSION, self.version);
        ev.set(fields::AGENT_NAME, self.host_name.as_str());
        ev
    }
}

/// A batch body: appended to, emptied when it reaches the agent's default size.
struct Body(Vec<u8>);

impl Body {
    const MAX_BYTES: usize = 1 << 20;

    fn new() -> Self {
        Self(Vec::with_capacity(Self::MAX_BYTES + 4096))
    }

    fn make_room(&mut self) {
        if self.0.len() >= Self::MAX_BYTES {
            self.0.clear();
        }
    }

    /// `BatchBuilder::push` as it is today.
    fn push_serde(&mut self, ev: &Event) {
        self.make_room();
        if serde_json::to_writer(&mut self.0, ev.as_map()).is_err() {
            self.0.extend_from_slice(b"{}");
        }
        self.0.push(b'\n');
    }

    /// `BatchBuilder::push` with [`Event::write_json`].
    fn push_fast(&mut self, ev: &Event) {
        self.make_room();
        ev.write_json(&mut self.0);
        self.0.push(b'\n');
    }
}

fn per_line(c: &mut Criterion) {
    let src = Source::new();
    let ctx = src.context();
    let lines: Vec<&[u8]> = LINES.iter().map(|l| l.as_bytes()).collect();
    let events: Vec<Event> = lines
        .iter()
        .zip(0u64..)
        .map(|(l, i)| src.file_line(l, i * 150, &ctx))
        .collect();
    let json_bytes: usize = events.iter().map(|e| e.to_json_line().len()).sum();
    println!(
        "{} lines, {} bytes of JSON per event on average",
        lines.len(),
        json_bytes / events.len()
    );

    let mut i = 0usize;
    c.bench_function("normalize", |b| {
        b.iter(|| {
            i = (i + 1) % lines.len();
            black_box(src.file_line(black_box(lines[i]), 12_345_678, &ctx))
        })
    });

    let mut body = Body::new();
    c.bench_function("serialize/serde_json", |b| {
        b.iter(|| {
            i = (i + 1) % events.len();
            body.push_serde(black_box(&events[i]));
        })
    });
    c.bench_function("serialize/write_json", |b| {
        b.iter(|| {
            i = (i + 1) % events.len();
            body.push_fast(black_box(&events[i]));
        })
    });

    c.bench_function("line_to_json", |b| {
        b.iter(|| {
            i = (i + 1) % lines.len();
            let ev = src.file_line(black_box(lines[i]), 12_345_678, &ctx);
            body.push_fast(&ev);
        })
    });
}

criterion_group!(benches, per_line);
criterion_main!(benches);
