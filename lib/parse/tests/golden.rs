//! Golden tests: every `tests/golden/<codec>/<case>.log` is decoded line by line and compared
//! with `<case>.json`, the expected events (pretty JSON objects, one after the other).
//!
//! The context is fixed (now = 2026-11-26T12:00:00Z, host "testhost", UTC, original kept);
//! a case changes it with `<case>.context.json`, an object with any of `now` (RFC 3339),
//! `host_name` (string or null), `local_offset` (`+01:00`), `dataset`, `keep_original` and
//! `truncated` (applies to every line of the case).
//!
//! To write the expected files after a deliberate change, run with `VIGIE_BLESS=1` and review
//! the diff.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::Value;
use vigie_parse::{decode, Codec, Context};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn base_context() -> Context {
    let now = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut ctx = Context::new(now);
    ctx.host_name = Some("testhost".to_owned());
    ctx
}

/// The context and the `truncated` flag of a case.
fn case_context(log: &Path) -> (Context, bool) {
    let mut ctx = base_context();
    let mut truncated = false;
    let path = log.with_extension("context.json");
    let Ok(text) = fs::read_to_string(&path) else {
        return (ctx, truncated);
    };
    let overrides: serde_json::Map<String, Value> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not a JSON object: {e}", path.display()));
    for (key, value) in overrides {
        match (key.as_str(), value) {
            ("now", Value::String(s)) => {
                ctx.now = DateTime::parse_from_rfc3339(&s)
                    .unwrap()
                    .with_timezone(&Utc)
            }
            ("host_name", Value::Null) => ctx.host_name = None,
            ("host_name", Value::String(s)) => ctx.host_name = Some(s),
            ("local_offset", Value::String(s)) => {
                ctx.local_offset = s.parse::<FixedOffset>().unwrap()
            }
            ("dataset", Value::String(s)) => ctx.dataset = Some(s),
            ("keep_original", Value::Bool(b)) => ctx.keep_original = b,
            ("truncated", Value::Bool(b)) => truncated = b,
            (key, value) => panic!(
                "{}: unknown or mistyped key {key:?}: {value}",
                path.display()
            ),
        }
    }
    (ctx, truncated)
}

/// The lines of a `.log` file: split on `\n`, the last newline ending the last line.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|b| *b == b'\n').collect()
}

fn render(events: &[Value]) -> String {
    let mut out = String::new();
    for ev in events {
        out.push_str(&serde_json::to_string_pretty(ev).unwrap());
        out.push('\n');
    }
    out
}

fn cases() -> Vec<(Codec, PathBuf)> {
    let mut cases = Vec::new();
    for codec in Codec::ALL {
        let dir = golden_dir().join(codec.name());
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                cases.push((codec, path));
            }
        }
    }
    cases.sort_by(|a, b| a.1.cmp(&b.1));
    cases
}

#[test]
fn golden_cases() {
    let bless = std::env::var_os("VIGIE_BLESS").is_some();
    let cases = cases();
    assert!(
        cases.len() >= 20,
        "golden cases missing: found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for (codec, log) in &cases {
        let (ctx, truncated) = case_context(log);
        let raw = fs::read(log).unwrap();
        let actual: Vec<Value> = lines(&raw)
            .into_iter()
            .map(|line| decode(*codec, line, truncated, &ctx).into_value())
            .collect();
        let expected_path = log.with_extension("json");
        if bless {
            fs::write(&expected_path, render(&actual)).unwrap();
            continue;
        }
        let name = log
            .strip_prefix(golden_dir())
            .unwrap_or(log)
            .display()
            .to_string();
        let Ok(text) = fs::read_to_string(&expected_path) else {
            failures.push(format!("{name}: {} is missing", expected_path.display()));
            continue;
        };
        let expected: Vec<Value> = serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if expected != actual {
            let (e, a) = (render(&expected), render(&actual));
            failures.push(format!(
                "{name} (expected left, actual right):\n{}",
                pretty_assertions::StrComparison::new(&e, &a)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ (VIGIE_BLESS=1 rewrites them):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
