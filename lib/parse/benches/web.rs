//! Lines per second of the built-in `nginx_access` declarative parser, on one thread.
//!
//! Each iteration parses a fixed mix of 12 access-log lines (browsers, API clients,
//! scanners, a `$host` prefix, an empty request, a common-format line), so criterion's
//! throughput is lines per second of [`Parser::parse`]: the whole line through the last stage
//! and the event's invariants (parse + normalize), dropping the event.
//!
//! Run with `cargo bench -p vigie-parse --bench web`.

use std::hint::black_box;

use chrono::DateTime;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigie_parse::{Context, Registry};

const LINES: [&str; 12] = [
    r#"203.0.113.45 - - [26/Nov/2026:09:14:02 +0000] "GET / HTTP/1.1" 200 615 "-" "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0""#,
    r#"203.0.113.45 - - [26/Nov/2026:09:14:02 +0000] "GET /static/app.css?v=3 HTTP/1.1" 200 18211 "https://www.example.com/" "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0""#,
    r#"203.0.113.45 - - [26/Nov/2026:09:14:03 +0000] "GET /static/app.js?v=3 HTTP/1.1" 200 90211 "https://www.example.com/" "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0""#,
    r#"198.51.100.23 - alice [26/Nov/2026:09:15:31 +0100] "POST /api/v1/login HTTP/2.0" 401 54 "https://www.example.com/login" "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15""#,
    r#"198.51.100.23 - alice [26/Nov/2026:09:15:40 +0100] "GET /api/v1/orders?page=2&size=50 HTTP/2.0" 200 8812 "https://www.example.com/orders" "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15""#,
    r#"203.0.113.77 - - [26/Nov/2026:09:16:02 +0000] "GET /.env HTTP/1.1" 404 153 "-" "curl/8.5.0""#,
    r#"192.0.2.10 - - [26/Nov/2026:09:17:01 +0000] "GET /health HTTP/1.0" 200 2 "-" "kube-probe/1.30""#,
    r#"198.51.100.9 - - [26/Nov/2026:09:19:12 +0000] "GET /api/v1/report HTTP/1.1" 502 559 "-" "Go-http-client/1.1""#,
    r#"2001:db8::7 - - [26/Nov/2026:09:20:03 +0000] "HEAD / HTTP/1.1" 304 0 "-" "Wget/1.21.4""#,
    r#"www.example.com 203.0.113.45 - - [26/Nov/2026:10:00:00 +0000] "GET /index.html HTTP/1.1" 200 1024 "-" "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0""#,
    r#"203.0.113.99 - - [26/Nov/2026:10:00:02 +0000] "" 400 0 "-" "-""#,
    r#"192.0.2.20 - - [26/Nov/2026:10:00:05 +0000] "GET /robots.txt HTTP/1.1" 200 67"#,
];

fn nginx_access(c: &mut Criterion) {
    let reg = Registry::builtin();
    let Some(parser) = reg.get("nginx_access") else {
        panic!("nginx_access does not load: {:?}", reg.builtin_errors());
    };
    let now = DateTime::parse_from_rfc3339("2026-11-26T10:30:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default();
    let mut ctx = Context::new(now);
    ctx.host_name = Some("web-01.example.org".to_owned());
    let lines: Vec<&[u8]> = LINES.iter().map(|l| l.as_bytes()).collect();
    let parsed = lines
        .iter()
        .filter(|l| parser.parse(l, &ctx).contains("http.response.status_code"))
        .count();
    println!(
        "{} lines, {} parsed, {} bytes on average",
        lines.len(),
        parsed,
        lines.iter().map(|l| l.len()).sum::<usize>() / lines.len()
    );

    let mut group = c.benchmark_group("nginx_access");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(parser.parse(black_box(line), &ctx));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, nginx_access);
criterion_main!(benches);
