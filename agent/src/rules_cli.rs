//! `vigie-agent rules check` and `vigie-agent rules test`: write and test a rule in an
//! afternoon, without a collector.
//!
//! - `check PATH...` loads rule files or directories and prints the load report: one line per
//!   rejected document (file, id, reason), then `loaded N, rejected M`. With `--json`:
//!   `{"loaded":N,"rejected":[{"file":…,"id":…,"reason":…}]}`. Exit code 1 when a document
//!   was rejected, so it can gate a rules repository's CI.
//! - `test --rules PATH... --events FILE` runs the rules on events (NDJSON; or raw lines read
//!   with `--format json|syslog|plain`) and prints one JSON object per match:
//!   `{"rule":{"id":…,"title":…,"level":…},"event":{…}}`.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;
use vigie_detect::{LoadOptions, LoadReport, RuleSet};
use vigie_event::Event;
use vigie_parse::{decode, Codec, Context};

/// Longest event line read by `rules test`.
const MAX_EVENT_LINE_BYTES: usize = 1024 * 1024;

/// Loads `rules` with the mappings under `mappings`.
pub fn load(rules: &[PathBuf], mappings: &[PathBuf]) -> Result<(RuleSet, LoadReport)> {
    let opts = LoadOptions {
        mappings: vigie_detect::load_mappings(mappings)?,
        ..LoadOptions::default()
    };
    Ok(RuleSet::load(rules, &opts)?)
}

/// `rules check`: prints the report; `Ok(false)` when something was rejected.
pub fn check(rules: &[PathBuf], mappings: &[PathBuf], as_json: bool) -> Result<bool> {
    let (_, report) = load(rules, mappings)?;
    let mut out = std::io::stdout().lock();
    if as_json {
        let rejected: Vec<_> = report
            .rejected
            .iter()
            .map(|r| json!({"file": r.file, "id": r.id, "reason": r.reason}))
            .collect();
        writeln!(
            out,
            "{}",
            json!({"loaded": report.loaded, "rejected": rejected})
        )?;
    } else {
        for r in &report.rejected {
            writeln!(
                out,
                "rejected {} ({}): {}",
                r.file.display(),
                r.id.as_deref().unwrap_or("no id"),
                r.reason.replace('\n', " ")
            )?;
        }
        writeln!(
            out,
            "loaded {}, rejected {}",
            report.loaded,
            report.rejected.len()
        )?;
    }
    Ok(report.rejected.is_empty())
}

/// `rules test`: prints every match; returns how many there were.
pub fn test(
    rules: &[PathBuf],
    mappings: &[PathBuf],
    events: &PathBuf,
    format: Option<Codec>,
) -> Result<u64> {
    let (set, report) = load(rules, mappings)?;
    for r in &report.rejected {
        eprintln!(
            "vigie-agent: rule rejected: {} ({}): {}",
            r.file.display(),
            r.id.as_deref().unwrap_or("no id"),
            r.reason.replace('\n', " ")
        );
    }
    let file =
        std::fs::File::open(events).with_context(|| format!("cannot read {}", events.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let ctx = Context::new(chrono::Utc::now());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut matches = 0;
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let n = std::io::Read::by_ref(&mut reader)
            .take(MAX_EVENT_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        number += 1;
        if line.len() > MAX_EVENT_LINE_BYTES {
            anyhow::bail!(
                "{}:{number}: line longer than {MAX_EVENT_LINE_BYTES} bytes",
                events.display()
            );
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let event = match format {
            Some(codec) => decode(codec, text, false, &ctx),
            None => serde_json::from_slice::<serde_json::Value>(text)
                .ok()
                .and_then(Event::from_value)
                .with_context(|| {
                    format!(
                        "{}:{number}: not a JSON object (give --format for raw lines)",
                        events.display()
                    )
                })?,
        };
        for rule in set.evaluate(&event) {
            matches += 1;
            writeln!(
                out,
                "{}",
                json!({
                    "rule": {"id": rule.id, "title": rule.title, "level": rule.level},
                    "event": event.as_map(),
                })
            )?;
        }
    }
    out.flush()?;
    Ok(matches)
}
