//! Events per second of the built-in SaaS JSON parsers, on one thread.
//!
//! Each iteration parses a fixed mix of the golden-case lines of `okta` (sign-ins, MFA,
//! admin actions: 20 events of ~1.5 KB), `cloudtrail` (console logins and API calls: 14
//! records of ~1.2 KB) and `cloudflare_http` (Logpush HTTP requests: 8 records of ~1.3 KB),
//! each through its own parser, so criterion's throughput is events per second:
//! - `saas_json/parse`: [`Parser::parse`] (the `json` stage through the last stage and the
//!   event's invariants), dropping the event;
//! - `saas_json/serde_json`: `serde_json::from_slice` of the same lines into a `Value`, the
//!   floor any JSON parser pays, for comparison.
//!
//! Run with `cargo bench -p vigie-parse --bench saas_json`. The goal is 150,000 events/s per
//! core for `parse`.

use std::hint::black_box;

use chrono::DateTime;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigie_parse::{Context, Parser, Registry};

const OKTA: [&str; 2] = [
    include_str!("../../../rules/parsers/tests/okta/logins.log"),
    include_str!("../../../rules/parsers/tests/okta/admin.log"),
];
const CLOUDTRAIL: [&str; 2] = [
    include_str!("../../../rules/parsers/tests/cloudtrail/logins.log"),
    include_str!("../../../rules/parsers/tests/cloudtrail/api_calls.log"),
];
const CLOUDFLARE: [&str; 1] = [include_str!(
    "../../../rules/parsers/tests/cloudflare_http/requests.log"
)];

fn context() -> Context {
    let now = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default();
    Context::new(now)
}

fn saas_json(c: &mut Criterion) {
    let reg = Registry::builtin();
    let get = |name: &str| -> &Parser {
        reg.get(name)
            .unwrap_or_else(|| panic!("{name} does not load: {:?}", reg.builtin_errors()))
    };
    let mut lines: Vec<(&Parser, &[u8])> = Vec::new();
    for (name, files) in [
        ("okta", &OKTA[..]),
        ("cloudtrail", &CLOUDTRAIL[..]),
        ("cloudflare_http", &CLOUDFLARE[..]),
    ] {
        let parser = get(name);
        for text in files {
            lines.extend(text.lines().map(|l| (parser, l.as_bytes())));
        }
    }
    let ctx = context();
    let failed = lines
        .iter()
        .filter(|(p, l)| p.parse(l, &ctx).has_flag("parse_failure"))
        .count();
    assert_eq!(failed, 0, "every line of the mix parses");
    println!(
        "{} events, {} bytes on average",
        lines.len(),
        lines.iter().map(|(_, l)| l.len()).sum::<usize>() / lines.len()
    );

    let mut group = c.benchmark_group("saas_json");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            for (parser, line) in &lines {
                black_box(parser.parse(black_box(line), &ctx));
            }
        })
    });
    group.bench_function("serde_json", |b| {
        b.iter(|| {
            for (_, line) in &lines {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(line)).ok());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, saas_json);
criterion_main!(benches);
