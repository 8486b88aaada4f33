//! Vigie's own correlation rules (`rules/correlations/`), loaded with the shipped rules and
//! mappings as the collector loads them, replayed on their golden sequences: each line of
//! `tests/<file>/fires.ndjson` and `quiet.ndjson` is `{"event": …, "expect": [ids]}`, the
//! correlations that must fire on that event (in event-time order, no lateness).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use vigie_detect::{load_mapping_dir, Correlator, CorrelatorConfig, LoadOptions, RuleSet};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

fn pack() -> RuleSet {
    let opts = LoadOptions {
        mappings: load_mapping_dir(&rules_dir().join("mappings")).unwrap(),
        ..LoadOptions::default()
    };
    let paths = [rules_dir().join("sigma"), rules_dir().join("correlations")];
    let (set, report) = RuleSet::load(&paths, &opts).unwrap();
    assert!(report.rejected.is_empty(), "{:#?}", report.rejected);
    set
}

fn ts(ev: &Value) -> i64 {
    let t = ev["@timestamp"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp()
}

/// Replays a sequence; the differences from what it expects.
fn replay(set: &RuleSet, path: &Path) -> Vec<String> {
    let mut c = Correlator::new(
        set,
        CorrelatorConfig {
            lateness_secs: 0,
            ..CorrelatorConfig::default()
        },
    )
    .unwrap();
    let mut failures = Vec::new();
    let text = std::fs::read_to_string(path).unwrap();
    for (i, line) in text.lines().enumerate() {
        let step: Value = serde_json::from_str(line).unwrap();
        let ev = step["event"].as_object().unwrap();
        let ids: Vec<String> = set.evaluate_map(ev).iter().map(|r| r.id.clone()).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let t = ts(&step["event"]);
        let mut hits = c.push(ev, &refs, t, t);
        hits.extend(c.advance(t));
        let got: BTreeSet<String> = hits.iter().map(|h| h.rule.id.clone()).collect();
        let want: BTreeSet<String> = step["expect"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        if got != want {
            failures.push(format!(
                "{}:{}: expected {want:?}, fired {got:?} (rules matched: {ids:?})",
                path.display(),
                i + 1
            ));
        }
    }
    failures
}

#[test]
fn shipped_correlations_fire_exactly_on_their_sequences() {
    let set = pack();
    let dir = rules_dir().join("correlations");
    let mut files = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yml") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if stem.starts_with("base_") {
            continue;
        }
        files += 1;
        for kind in ["fires", "quiet"] {
            let seq = dir.join("tests").join(&stem).join(format!("{kind}.ndjson"));
            assert!(seq.is_file(), "{} is missing", seq.display());
            failures.extend(replay(&set, &seq));
        }
    }
    assert!(
        files >= 4,
        "expected the four scenarios of issue #6, found {files}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn building_blocks_raise_no_alert_of_their_own() {
    let set = pack();
    // Referred to by correlations without `generate: true`: matches feed them, no alert.
    for id in [
        "ad5f00ba-9c65-4962-994c-52862b2d9655",
        "610600e8-2598-4371-91d1-8d12ca99e000",
        "cbe9e7fc-c52d-4fbb-ac44-7d2dae6bd509",
        "adc3c3e1-7437-494a-8e7c-559293655a96",
        "7e444fd3-6153-4f29-b7bb-88757fb829fa",
    ] {
        assert!(!set.rule(id).unwrap().alert, "{id} alerts on its own");
    }
    // The sudo burst says `generate: true`: single failures keep their alert.
    assert!(
        set.rule("5b0c2f02-2cb4-4be1-9086-1e7dbb1091ef")
            .unwrap()
            .alert
    );
    // A shipped single-event rule no correlation uses alerts as before.
    assert!(set
        .rule("f3e1c1c4-1a37-4c51-8e0e-7ac0a1b4b6c2")
        .is_none_or(|r| r.alert));
}

#[test]
fn the_new_source_rule_runs_only_at_the_collector() {
    let opts = LoadOptions {
        mappings: load_mapping_dir(&rules_dir().join("mappings")).unwrap(),
        only_central: true,
        ..LoadOptions::default()
    };
    let paths = [rules_dir().join("sigma"), rules_dir().join("correlations")];
    let (central, _) = RuleSet::load(&paths, &opts).unwrap();
    let ids: Vec<String> = central.rules().map(|r| r.id.clone()).collect();
    assert_eq!(ids, vec!["cbe9e7fc-c52d-4fbb-ac44-7d2dae6bd509".to_owned()]);
    assert!(central.correlations().is_empty());
}
