//! `vigie-agent rules check` and `vigie-agent rules test`: write and test a rule in an
//! afternoon, without a collector.
//!
//! - `check PATH...` loads rule files or directories and prints the load report: one line per
//!   rejected document (file, id, reason), then `loaded N, rejected M`. With `--json`:
//!   `{"loaded":N,"rejected":[{"file":…,"id":…,"reason":…}]}`. Exit code 1 when a document
//!   was rejected, so it can gate a rules repository's CI.
//! - `test --rules PATH... --events FILE` runs the rules on events (NDJSON; or raw lines read
//!   with `--format` and a codec or a parser name: `syslog`, `linux_auth`, `teleport`...)
//!   and prints one JSON object per match:
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

/// How `rules test` reads raw lines: a codec, or a built-in parser.
#[derive(Clone, Copy)]
pub enum LineFormat {
    Codec(Codec),
    Parser(&'static vigie_parse::Parser),
}

impl LineFormat {
    /// A built-in parser (`linux_auth`, `teleport`, ...) or a codec (`json`, `syslog`,
    /// `plain`) by name.
    pub fn parse(name: &str) -> Result<LineFormat> {
        if let Some(p) = vigie_parse::Registry::shared().get(name) {
            return Ok(LineFormat::Parser(p));
        }
        name.parse::<Codec>().map(LineFormat::Codec).map_err(|_| {
            anyhow::anyhow!(
                "unknown format {name:?}: a codec (json, syslog, plain) or a parser ({})",
                vigie_parse::Registry::shared().names().join(", ")
            )
        })
    }
}

/// `rules test`: prints every match; returns how many there were.
pub fn test(
    rules: &[PathBuf],
    mappings: &[PathBuf],
    events: &PathBuf,
    format: Option<LineFormat>,
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
            Some(LineFormat::Codec(codec)) => decode(codec, text, false, &ctx),
            Some(LineFormat::Parser(parser)) => parser.parse(text, &ctx),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_lines_are_read_with_a_parser_or_a_codec() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let rule = dir.path().join("r.yml");
        std::fs::write(
            &rule,
            "title: SSH failure\nid: r1\nlogsource: {product: linux, service: sshd}\n\
             detection:\n  sel: {event.action: ssh_login, event.outcome: failure}\n  condition: sel\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let lines = dir.path().join("auth.log");
        std::fs::write(
            &lines,
            "Nov 26 10:00:40 bastion-1 sshd[4040]: Failed password for alice from 198.51.100.7 port 40040 ssh2\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let run = |format: &str| {
            let f = LineFormat::parse(format).unwrap_or_else(|e| panic!("{e}"));
            test(std::slice::from_ref(&rule), &[], &lines, Some(f))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        // The parser sets event.action / event.outcome and the sshd logsource; the bare
        // syslog codec does not.
        assert_eq!(run("linux_auth"), 1);
        assert_eq!(run("syslog"), 0);
        let err = LineFormat::parse("nope")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("linux_auth"), "{err}");
    }
}
