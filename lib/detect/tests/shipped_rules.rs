//! The rules and field mappings Vigie ships (`rules/sigma`, `rules/mappings` at the top of the
//! repository), checked the way a user's agent loads them.
//!
//! - Every mapping file is a valid pipeline, and the mappings route SigmaHQ field names to the
//!   ECS names while the original names keep matching raw events.
//! - Every rule loads with the mappings, without a single rejection.
//! - Every rule `rules/sigma/<name>.yml` has golden events in `rules/sigma/tests/<name>/`:
//!   `positive.ndjson` (one JSON event per line, each must trigger exactly that rule among the
//!   shipped ones) and `negative.ndjson` (near misses, none may trigger it). Events carry the
//!   `vigie.logsource` tags a parser sets, so logsource routing is part of what is tested.
//! - With the shipped mappings, the SigmaHQ corpus (public test data, skipped when absent)
//!   loads exactly as it does without them: no mapping makes a rule unloadable.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use vigie_detect::{load_mapping_dir, load_mapping_file, LoadOptions, RuleSet};

fn repo_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

fn mappings_dir() -> PathBuf {
    repo_rules().join("mappings")
}

fn sigma_dir() -> PathBuf {
    repo_rules().join("sigma")
}

fn options() -> LoadOptions {
    let mappings = load_mapping_dir(&mappings_dir())
        .unwrap_or_else(|e| panic!("shipped mappings do not load: {e}"));
    LoadOptions {
        mappings,
        ..LoadOptions::default()
    }
}

/// `*.yml` / `*.yaml` files directly in `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yml") | Some("yaml")
                )
        })
        .collect();
    files.sort();
    files
}

/// A shipped rule file: its name (the file stem), id and path.
struct ShippedRule {
    name: String,
    id: String,
    path: PathBuf,
}

fn shipped_rules() -> Vec<ShippedRule> {
    yaml_files(&sigma_dir())
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let doc: yaml_serde::Value =
                yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let id = doc
                .get("id")
                .and_then(|v| v.as_str())
                .unwrap_or_else(|| panic!("{} has no id", path.display()))
                .to_owned();
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_else(|| panic!("{}: file name is not UTF-8", path.display()))
                .to_owned();
            ShippedRule { name, id, path }
        })
        .collect()
}

/// The events of an NDJSON golden file, with their line numbers.
fn golden_events(path: &Path) -> Vec<(usize, Value)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
            assert!(
                value.is_object(),
                "{}:{}: an event is a JSON object",
                path.display(),
                i + 1
            );
            assert!(
                value.pointer("/vigie/logsource").is_some(),
                "{}:{}: a golden event carries its vigie.logsource tags",
                path.display(),
                i + 1
            );
            (i + 1, value)
        })
        .collect()
}

fn matched_ids(set: &RuleSet, event: &Value) -> BTreeSet<String> {
    set.evaluate_value(event)
        .iter()
        .map(|r| r.id.clone())
        .collect()
}

/// One-rule pack from YAML text, loaded with the shipped mappings.
fn one_rule(yaml: &str) -> RuleSet {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = dir.path().join("rule.yml");
    std::fs::write(&file, yaml).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let (set, report) =
        RuleSet::load(&[file], &options()).unwrap_or_else(|e| panic!("rule does not load: {e}"));
    assert!(report.rejected.is_empty(), "{:#?}", report.rejected);
    assert_eq!(set.len(), 1);
    set
}

#[test]
fn every_mapping_file_loads() {
    let files = yaml_files(&mappings_dir());
    assert!(
        files.len() >= 7,
        "expected the linux, auditd, windows, okta, aws, github and teleport mappings, found {files:?}"
    );
    for file in &files {
        let pipeline =
            load_mapping_file(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!pipeline.name.is_empty(), "{} has no name", file.display());
        assert!(
            !pipeline.transformations.is_empty(),
            "{} maps nothing",
            file.display()
        );
        // Each file says what it maps and where the ECS names come from.
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text.starts_with('#'),
            "{} starts without its header comment",
            file.display()
        );
    }
    assert_eq!(
        load_mapping_dir(&mappings_dir()).unwrap().len(),
        files.len()
    );
}

#[test]
fn sigmahq_image_endswith_matches_ecs_and_raw_events() {
    let set = one_rule(
        "title: Netcat started
id: 3f0e1c52-8a4b-4d2e-9c61-0b7a5e2d4f18
logsource: {product: linux, category: process_creation}
detection:
    selection:
        Image|endswith: '/nc'
    condition: selection
",
    );
    let tags = json!({"logsource": {"product": "linux", "category": "process_creation"}});
    let ecs = json!({"process": {"executable": "/usr/bin/nc", "command_line": "nc -lvp 4444"},
                     "vigie": tags});
    let raw = json!({"Image": "/usr/bin/nc", "CommandLine": "nc -lvp 4444", "vigie": tags});
    let other = json!({"process": {"executable": "/usr/bin/ncat"}, "vigie": tags});
    assert_eq!(
        set.evaluate_value(&ecs).len(),
        1,
        "ECS event (process.executable)"
    );
    assert_eq!(set.evaluate_value(&raw).len(), 1, "raw event (Image)");
    assert!(set.evaluate_value(&other).is_empty());
    // The mapping is per logsource: a network_connection event is not routed to the rule.
    let network = json!({"process": {"executable": "/usr/bin/nc"},
        "vigie": {"logsource": {"product": "linux", "category": "network_connection"}}});
    assert!(set.evaluate_value(&network).is_empty());
}

#[test]
fn mappings_reach_the_ecs_names_of_each_source() {
    // (logsource, SigmaHQ field, value, event as Elastic's integration normalizes it).
    let cases = [
        (
            "{product: linux, service: auditd}",
            "exe",
            "/usr/bin/nmap",
            json!({"process": {"executable": "/usr/bin/nmap"}, "auditd": {"log": {"key": "net"}}}),
            json!({"product": "linux", "service": "auditd"}),
        ),
        (
            "{product: linux, service: auditd}",
            "key",
            "network_connect_4",
            json!({"auditd": {"log": {"key": "network_connect_4"}}}),
            json!({"product": "linux", "service": "auditd"}),
        ),
        (
            "{product: linux, category: network_connection}",
            "DestinationPort",
            "4444",
            json!({"destination": {"port": 4444}}),
            json!({"product": "linux", "category": "network_connection"}),
        ),
        (
            "{product: linux, category: file_event}",
            "TargetFilename",
            "/etc/cron.d/x",
            json!({"file": {"path": "/etc/cron.d/x"}}),
            json!({"product": "linux", "category": "file_event"}),
        ),
        (
            "{product: okta, service: okta}",
            "eventType",
            "user.mfa.factor.deactivate",
            json!({"okta": {"event_type": "user.mfa.factor.deactivate"}}),
            json!({"product": "okta", "service": "okta"}),
        ),
        (
            "{product: okta, service: okta}",
            "target.displayName",
            "Okta Admin Console",
            json!({"okta": {"target": [{"type": "AppInstance", "display_name": "Okta Admin Console"}]}}),
            json!({"product": "okta", "service": "okta"}),
        ),
        (
            "{product: aws, service: cloudtrail}",
            "eventName",
            "ConsoleLogin",
            json!({"event": {"action": "ConsoleLogin", "provider": "signin.amazonaws.com"}}),
            json!({"product": "aws", "service": "cloudtrail"}),
        ),
        (
            "{product: aws, service: cloudtrail}",
            "userIdentity.type",
            "Root",
            json!({"aws": {"cloudtrail": {"user_identity": {"type": "Root"}}}}),
            json!({"product": "aws", "service": "cloudtrail"}),
        ),
        (
            "{product: github, service: audit}",
            "action",
            "org.add_member",
            json!({"event": {"action": "org.add_member"}, "user": {"name": "github-actor"}}),
            json!({"product": "github", "service": "audit"}),
        ),
        (
            "{product: windows, category: process_creation}",
            "OriginalFileName",
            "psexec.c",
            json!({"process": {"pe": {"original_file_name": "psexec.c"}}}),
            json!({"product": "windows", "category": "process_creation"}),
        ),
        (
            "{product: windows, category: registry_set}",
            "TargetObject",
            "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\x",
            json!({"registry": {"path": "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\x"}}),
            json!({"product": "windows", "category": "registry_set"}),
        ),
        (
            "{product: teleport, service: audit}",
            "event",
            "session.start",
            json!({"event": {"action": "session.start", "kind": "event"}}),
            json!({"product": "teleport", "service": "audit"}),
        ),
    ];
    for (logsource, field, value, mut ecs, tags) in cases {
        let set = one_rule(&format!(
            "title: mapped {field}
id: 7c1d9e2f-4b6a-4c8d-9e0f-{:012x}
logsource: {logsource}
detection:
    selection:
        {field}: '{value}'
    condition: selection
",
            field.len()
        ));
        ecs["vigie"] = json!({"logsource": tags});
        assert_eq!(
            set.evaluate_value(&ecs).len(),
            1,
            "{logsource} {field}: the ECS-shaped event does not match"
        );
        // The same value under the rule's own (raw) name still matches.
        let mut raw = json!({"vigie": {"logsource": tags}});
        raw[field] = json!(value);
        assert_eq!(
            set.evaluate_value(&raw).len(),
            1,
            "{logsource} {field}: the raw event does not match"
        );
    }
}

#[test]
fn shipped_rules_load_without_rejection() {
    let rules = shipped_rules();
    assert!(!rules.is_empty(), "no rule in {}", sigma_dir().display());
    let (set, report) = RuleSet::load(&[sigma_dir()], &options()).unwrap();
    assert!(report.rejected.is_empty(), "{:#?}", report.rejected);
    assert_eq!(report.files, rules.len());
    assert_eq!(report.detection_rules, rules.len());
    let mut ids = BTreeSet::new();
    for rule in &rules {
        assert!(ids.insert(rule.id.clone()), "duplicate id {}", rule.id);
        let loaded = set
            .rule(&rule.id)
            .unwrap_or_else(|| panic!("{} ({}) is not in the set", rule.name, rule.id));
        assert_eq!(loaded.file, rule.path);
    }
}

#[test]
fn every_rule_has_golden_tests_and_every_test_folder_has_a_rule() {
    let tests = sigma_dir().join("tests");
    let rules = shipped_rules();
    for rule in &rules {
        for file in ["positive.ndjson", "negative.ndjson"] {
            let path = tests.join(&rule.name).join(file);
            assert!(path.is_file(), "{} is missing", path.display());
            assert!(
                !golden_events(&path).is_empty(),
                "{} has no event",
                path.display()
            );
        }
    }
    let names: BTreeSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    for entry in std::fs::read_dir(&tests).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            names.contains(name.as_str()),
            "{} tests a rule that does not exist",
            entry.path().display()
        );
    }
}

#[test]
fn golden_events_trigger_exactly_their_rule() {
    let (set, report) = RuleSet::load(&[sigma_dir()], &options()).unwrap();
    assert!(report.rejected.is_empty(), "{:#?}", report.rejected);
    let tests = sigma_dir().join("tests");
    let mut failures = Vec::new();
    for rule in shipped_rules() {
        let dir = tests.join(&rule.name);
        for (line, event) in golden_events(&dir.join("positive.ndjson")) {
            let ids = matched_ids(&set, &event);
            if ids != BTreeSet::from([rule.id.clone()]) {
                failures.push(format!(
                    "{}/positive.ndjson:{line}: expected exactly {}, matched {ids:?}",
                    rule.name, rule.id
                ));
            }
        }
        for (line, event) in golden_events(&dir.join("negative.ndjson")) {
            if matched_ids(&set, &event).contains(&rule.id) {
                failures.push(format!(
                    "{}/negative.ndjson:{line}: matched {}",
                    rule.name, rule.id
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn golden_events_are_routed_by_their_logsource() {
    // A positive event retagged with another logsource no longer reaches its rule: the rule
    // fires because the parser said what the event is, not by accident of field names.
    let (set, _) = RuleSet::load(&[sigma_dir()], &options()).unwrap();
    let tests = sigma_dir().join("tests");
    for rule in shipped_rules() {
        for (line, mut event) in golden_events(&tests.join(&rule.name).join("positive.ndjson")) {
            event["vigie"]["logsource"] = json!({"product": "macos", "category": "file_event"});
            assert!(
                !matched_ids(&set, &event).contains(&rule.id),
                "{}/positive.ndjson:{line}: matched under another logsource",
                rule.name
            );
        }
    }
}

#[test]
fn sigmahq_corpus_loads_the_same_with_the_shipped_mappings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/sigmahq");
    if !root.is_dir() {
        eprintln!("skipped: {} is absent (public test data)", root.display());
        return;
    }
    let paths: Vec<PathBuf> = ["rules", "rules-emerging-threats", "rules-threat-hunting"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    let (plain, plain_report) = RuleSet::load(&paths, &LoadOptions::default()).unwrap();
    let (mapped, mapped_report) = RuleSet::load(&paths, &options()).unwrap();
    let reasons = |r: &vigie_detect::LoadReport| -> BTreeSet<(PathBuf, String)> {
        r.rejected
            .iter()
            .map(|x| (x.file.clone(), x.reason.clone()))
            .collect()
    };
    assert_eq!(
        reasons(&mapped_report),
        reasons(&plain_report),
        "the mappings change which SigmaHQ rules load"
    );
    assert_eq!(mapped.len(), plain.len());
}

/// Regression: with the mappings, `Image: null` must still mean "no image under either name";
/// when the original name was an alternative in the rule, the filter dropped every event.
#[test]
fn null_checks_on_mapped_fields_keep_their_meaning() {
    let set = one_rule(
        "
title: whoami with an image
id: 7d1f0c2a-1b3e-4c5d-8e9f-0a1b2c3d4e5f
logsource: {product: linux, category: process_creation}
detection:
  sel: {CommandLine|contains: whoami}
  no_image: {Image: null}
  condition: sel and not no_image
",
    );
    let tags = json!({"product": "linux", "category": "process_creation"});
    let ecs = json!({"process": {"executable": "/usr/bin/whoami", "command_line": "whoami"}, "vigie": {"logsource": tags}});
    let raw =
        json!({"Image": "/usr/bin/whoami", "CommandLine": "whoami", "vigie": {"logsource": tags}});
    let no_image = json!({"process": {"command_line": "whoami"}, "vigie": {"logsource": tags}});
    assert_eq!(matched_ids(&set, &ecs).len(), 1);
    assert_eq!(matched_ids(&set, &raw).len(), 1);
    assert!(matched_ids(&set, &no_image).is_empty());
}

/// Regression: the pack version is a function of the files, not of hash-map order.
#[test]
fn pack_version_is_stable_across_loads() {
    let versions: BTreeSet<String> = (0..4)
        .map(|_| {
            RuleSet::load(&[sigma_dir()], &options())
                .unwrap()
                .0
                .version()
                .to_owned()
        })
        .collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
}
