//! Parses lines with built-in declarative parsers, for profiling the engine.
//!
//! ```text
//! parse_stream REPEAT PARSER:FILE [PARSER:FILE ...]
//! ```
//!
//! Every line of each `FILE` is parsed with the built-in parser `PARSER`, and the whole mix
//! `REPEAT` times; the events are dropped. It prints the number of events and lines per
//! second. Under `valgrind --tool=callgrind`, a run with `REPEAT=0` measures the set-up
//! (loading the built-in parsers, reading the files): the instructions of a run with
//! `REPEAT=N` minus those of `REPEAT=0`, divided by `N` times the number of lines, are the
//! instructions per line. `VIGIE_HOST_NAME` sets the context's host name (as the benches do).
//! With `VIGIE_DUMP=1`, each event is printed as a JSON line first (`event.ingested` aside, the
//! output is the same from run to run: compare it before and after a change of the engine).

use std::hint::black_box;
use std::time::Instant;

use chrono::DateTime;
use vigie_parse::{Context, Parser, Registry};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((repeat, specs)) = args.split_first() else {
        eprintln!("usage: parse_stream REPEAT PARSER:FILE [PARSER:FILE ...]");
        std::process::exit(2);
    };
    let repeat: usize = repeat.parse().unwrap_or_else(|_| {
        eprintln!("REPEAT must be a number, not {repeat:?}");
        std::process::exit(2)
    });
    let reg = Registry::builtin();
    let mut texts: Vec<(&Parser, Vec<u8>)> = Vec::new();
    for spec in specs {
        let Some((name, path)) = spec.split_once(':') else {
            eprintln!("{spec:?}: expected PARSER:FILE");
            std::process::exit(2);
        };
        let Some(parser) = reg.get(name) else {
            eprintln!("no built-in parser {name:?}");
            std::process::exit(2);
        };
        let text = std::fs::read(path).unwrap_or_else(|e| {
            eprintln!("{path}: {e}");
            std::process::exit(2)
        });
        texts.push((parser, text));
    }
    let lines: Vec<(&Parser, &[u8])> = texts
        .iter()
        .flat_map(|(p, t)| {
            t.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(move |l| (*p, l))
        })
        .collect();
    let now = DateTime::parse_from_rfc3339("2026-11-26T09:30:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default();
    let mut ctx = Context::new(now);
    ctx.host_name = std::env::var("VIGIE_HOST_NAME").ok();
    if std::env::var_os("VIGIE_DUMP").is_some() {
        for (parser, line) in &lines {
            println!("{}", parser.parse(line, &ctx).to_json_line());
        }
    }
    let start = Instant::now();
    for _ in 0..repeat {
        for (parser, line) in &lines {
            black_box(parser.parse(black_box(line), &ctx));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let n = repeat * lines.len();
    println!(
        "{n} events in {secs:.3} s: {:.0} lines/s",
        n as f64 / secs.max(1e-9)
    );
}
