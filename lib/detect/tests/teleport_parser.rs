//! The shipped Teleport rules (`rules/sigma/teleport_*.yml`) on events read with the
//! `teleport` parser (`rules/parsers/teleport.yml`) rather than the plain json codec.
//!
//! The rules are written on Teleport's field names; the parser moves many of them to ECS
//! names or under `teleport.audit.*`, and `rules/mappings/teleport.yml` must follow. Each
//! golden event of `rules/sigma/tests/teleport_*/` keeps the raw Teleport line in
//! `event.original` and `message` (or is Teleport's object itself plus the `vigie` tags): that line goes through the parser, and the rule must fire on every positive event and on
//! none of the negative ones, as it does on the json codec's events (`shipped_rules.rs`).

use std::path::{Path, PathBuf};

use serde_json::Value;
use vigie_detect::{load_mapping_dir, LoadOptions, RuleSet};
use vigie_parse::{Context, Parser, Registry};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

/// Every shipped rule, loaded with the shipped mappings, as an agent loads them.
fn shipped_rules() -> RuleSet {
    let mappings = load_mapping_dir(&rules_dir().join("mappings"))
        .unwrap_or_else(|e| panic!("shipped mappings do not load: {e}"));
    let options = LoadOptions {
        mappings,
        ..LoadOptions::default()
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(rules_dir().join("sigma"))
        .unwrap_or_else(|e| panic!("rules/sigma: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    let (set, report) =
        RuleSet::load(&files, &options).unwrap_or_else(|e| panic!("rules do not load: {e}"));
    assert!(report.rejected.is_empty(), "{:#?}", report.rejected);
    set
}

fn teleport_parser() -> Parser {
    let mut reg = Registry::new();
    reg.load_dir(&rules_dir().join("parsers"))
        .unwrap_or_else(|e| panic!("rules/parsers: {e}"));
    reg.get("teleport")
        .cloned()
        .unwrap_or_else(|| panic!("no teleport parser in rules/parsers"))
}

/// The rule's id, from its file.
fn rule_id(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("{} has no id", path.display()))
        .trim()
        .to_owned()
}

/// The raw Teleport lines behind a golden file (each event's `event.original`, else `message`).
fn raw_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            if let Some(raw) = v.pointer("/event/original").and_then(Value::as_str) {
                return raw.to_owned();
            }
            if let Some(raw) = v["message"].as_str() {
                return raw.to_owned();
            }
            // An event written as Teleport's object with only the logsource tags added.
            if let Some(map) = v.as_object_mut() {
                map.remove("vigie");
            }
            v.to_string()
        })
        .collect()
}

#[test]
fn teleport_rules_fire_on_parsed_events() {
    let set = shipped_rules();
    let parser = teleport_parser();
    let ctx = Context::new(chrono::Utc::now());
    let tests = rules_dir().join("sigma/tests");
    let mut names: Vec<String> = std::fs::read_dir(&tests)
        .unwrap_or_else(|e| panic!("{}: {e}", tests.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("teleport_"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "Teleport rule tests missing: {names:?}");
    let mut failures = Vec::new();
    let (mut positives, mut negatives) = (0, 0);
    for name in &names {
        let id = rule_id(&rules_dir().join("sigma").join(format!("{name}.yml")));
        for (file, want) in [("positive.ndjson", true), ("negative.ndjson", false)] {
            for line in raw_lines(&tests.join(name).join(file)) {
                let event = parser.parse(line.as_bytes(), &ctx);
                assert!(!event.has_flag("parse_failure"), "{line}");
                assert_eq!(event.get_str("vigie.logsource.product"), Some("teleport"));
                let value = event.into_value();
                let fired = set.evaluate_value(&value).iter().any(|r| r.id == id);
                if fired != want {
                    failures.push(format!(
                        "{name}/{file}: {} on\n{line}\nparsed as {value}",
                        if want { "did not fire" } else { "fired" }
                    ));
                }
                if want {
                    positives += 1;
                } else {
                    negatives += 1;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        positives >= 15 && negatives >= 15,
        "{positives} / {negatives}"
    );
}

/// The mapping of `program` to two fields keeps the exact-name filters exact: a session.command
/// of `ssh` reading a private key is filtered out, the same of `cat` is not.
#[test]
fn program_matches_the_process_name() {
    let set = shipped_rules();
    let parser = teleport_parser();
    let ctx = Context::new(chrono::Utc::now());
    let line = |program: &str| {
        format!(
            r#"{{"argv":["-i","/home/ubuntu/.ssh/id_ed25519"],"code":"T4000I","event":"session.command","path":"/usr/bin/{program}","pid":2,"ppid":1,"program":"{program}","time":"2026-11-26T10:05:53.919Z","uid":"734930bb-00e6-4ee6-8798-37f1e9473fac","user":"alice"}}"#
        )
    };
    let fired = |program: &str| {
        let event = parser.parse(line(program).as_bytes(), &ctx).into_value();
        set.evaluate_value(&event)
            .iter()
            .any(|r| r.title.contains("credential") || r.title.contains("Credential"))
    };
    assert!(fired("cat"));
    assert!(!fired("ssh"));
}
