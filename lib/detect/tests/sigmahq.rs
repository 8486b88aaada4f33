//! The SigmaHQ corpus and its regression data (from `../shared/data/sigmahq`, absent from a
//! user's clone: the tests then say so and pass without checking anything).
//!
//! - The whole corpus loads: every rule loads or is rejected for a precise reason, and the
//!   placeholder rules load once their placeholders are supplied.
//! - SigmaHQ's regression events (Windows event logs exported as JSON) trigger the rule they
//!   were recorded for: at least 201 of the 202 tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use vigie_detect::{LoadOptions, RuleSet};

const RULE_DIRS: [&str; 6] = [
    "rules",
    "rules-emerging-threats",
    "rules-threat-hunting",
    "rules-compliance",
    "rules-placeholder",
    "rules-dfir",
];

fn sigmahq() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/sigmahq");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} is absent (public test data of the Vigie workspace)",
            dir.display()
        );
        None
    }
}

fn corpus_paths(root: &Path) -> Vec<PathBuf> {
    RULE_DIRS.iter().map(|d| root.join(d)).collect()
}

#[test]
fn the_whole_corpus_loads_or_names_what_is_missing() {
    let Some(root) = sigmahq() else { return };
    let (set, report) = RuleSet::load(&corpus_paths(&root), &LoadOptions::default()).unwrap();
    assert_eq!(report.files, 3780, "the corpus has 3,780 rule files");
    assert_eq!(report.loaded + report.rejected.len(), report.files);
    assert_eq!(set.len(), report.detection_rules);
    // The only rules that cannot load as they are: those whose `expand` placeholders are
    // site-specific values (admin workstations, domain controllers...).
    for r in &report.rejected {
        assert!(
            r.reason.starts_with("placeholder %"),
            "unexpected rejection of {} ({:?}): {}",
            r.file.display(),
            r.id,
            r.reason
        );
        assert!(
            r.id.is_some(),
            "{} rejected without its id",
            r.file.display()
        );
    }
    assert_eq!(report.rejected.len(), 25, "{:#?}", report.rejected);

    // Supplied placeholders make them load.
    let mut opts = LoadOptions::default();
    for r in &report.rejected {
        for name in r.reason.split('%').skip(1).step_by(2) {
            opts.placeholders
                .insert(name.to_owned(), vec![format!("value-of-{name}")]);
        }
    }
    let (_, report) = RuleSet::load(&corpus_paths(&root), &opts).unwrap();
    assert!(report.rejected.is_empty(), "{:#?}", report.rejected);
    assert_eq!(report.loaded, 3780);
}

/// A Windows event as exported to JSON (`{"Event":{"System":…,"EventData":…}}`), flattened the
/// way Sigma's Windows rules name fields: `EventID`, `Channel`, `Provider_Name`, `Computer` and
/// every EventData / UserData field at the top level (names with spaces also without them).
fn flatten_windows(event: &Value) -> Value {
    let mut out = Map::new();
    let ev = &event["Event"];
    let system = &ev["System"];
    for key in [
        "EventID", "Channel", "Computer", "Level", "Task", "Keywords",
    ] {
        if let Some(v) = system.get(key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    if let Some(name) = system.pointer("/Provider/#attributes/Name") {
        out.insert("Provider_Name".into(), name.clone());
    }
    let mut data = |obj: &Value| {
        if let Some(map) = obj.as_object() {
            for (k, v) in map {
                if k != "#attributes" {
                    out.insert(k.clone(), v.clone());
                    // Defender names its fields with spaces ("Source Name"); Sigma's windefend
                    // rules spell them without ("SourceName"), as Windows event forwarders do.
                    if k.contains(' ') {
                        out.insert(k.replace(' ', ""), v.clone());
                    }
                }
            }
        }
    };
    data(&ev["EventData"]);
    if let Some(user) = ev["UserData"].as_object() {
        user.values().for_each(&mut data);
    }
    Value::Object(out)
}

/// Every JSON value of a file holding one or more concatenated objects.
fn read_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("readable events file");
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|v| v.expect("JSON events"))
        .collect()
}

#[test]
fn regression_events_trigger_their_rule() {
    let Some(root) = sigmahq() else { return };
    let (set, _) = RuleSet::load(&corpus_paths(&root), &LoadOptions::default()).unwrap();
    let mut infos = Vec::new();
    collect_infos(&root.join("regression_data"), &mut infos);

    let mut tests = 0;
    let mut detected = 0;
    let mut exact_count = 0;
    let mut missed = Vec::new();
    for info in infos {
        let text = std::fs::read_to_string(&info).unwrap();
        let meta: BTreeMap<String, Value> = yaml_serde::from_str(&text).unwrap();
        let rule_id = meta["rule_metadata"][0]["id"].as_str().unwrap().to_owned();
        let Some(cases) = meta.get("regression_tests_info").and_then(Value::as_array) else {
            continue;
        };
        for case in cases {
            // The JSON export sits beside the .evtx the descriptor names.
            let evtx = case["path"].as_str().unwrap();
            let json = info
                .parent()
                .unwrap()
                .join(Path::new(evtx).with_extension("json").file_name().unwrap());
            if !json.exists() {
                continue; // a raw-text test (Cisco) has no JSON events
            }
            tests += 1;
            let want = case["match_count"].as_u64().unwrap_or(1) as usize;
            let hits = read_events(&json)
                .iter()
                .filter(|e| {
                    set.evaluate_value(&flatten_windows(e))
                        .iter()
                        .any(|r| r.id == rule_id)
                })
                .count();
            if hits > 0 {
                detected += 1;
            } else {
                missed.push(format!("{rule_id} ({})", json.display()));
            }
            if hits == want {
                exact_count += 1;
            }
        }
    }
    eprintln!(
        "SigmaHQ regression: {detected}/{tests} detected, {exact_count} with the exact match count; missed: {missed:#?}"
    );
    assert_eq!(tests, 202);
    assert!(detected >= 201, "missed: {missed:#?}");
}

fn collect_infos(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("regression data dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect_infos(&path, out);
        } else if path.file_name().is_some_and(|n| n == "info.yml") {
            out.push(path);
        }
    }
}
