//! Central detection measured on one core, as the collector runs it: about 500 detection
//! rules and 20 correlations, on a stream of parsed sshd / Linux syslog events.
//!
//! `cargo run --release -p vigie-detect --example central_load [EVENTS]`
//!
//! Needs the public test data in `../shared/data` (SigmaHQ rules, loghub samples); without it
//! it says so and exits. The pack: SigmaHQ's `rules/linux`, `rules/web` and `rules/cloud`
//! folders, Vigie's `rules/sigma` and `rules/correlations` (6 correlations), plus 14
//! generated correlations (event_count / value_count over the sshd building blocks, grouped
//! by address, user, pid or port as SOC correlations are) to reach 20, all with Vigie's
//! mappings. (rsigma 0.23 alone costs a value_count the window's size per event; Vigie
//! counts plain value_counts incrementally, see `src/distinct.rs`.) The events: loghub's
//! OpenSSH and Linux 2k samples parsed with the `linux_auth` parser (as agents ship them),
//! replayed with timestamps 10 ms apart. Per event: the pack's rules (logsource-routed),
//! then the correlations (reorder buffer, windows). Prints events/s and what fired.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Map, Value};
use vigie_detect::{load_mapping_dir, Correlator, CorrelatorConfig, LoadOptions, RuleSet};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// 14 generated correlations over the sshd building blocks.
fn generated_correlations() -> String {
    let mut out = String::new();
    let kinds = [
        ("vigie_ssh_login_failure", "source.ip", 20, "1m"),
        ("vigie_ssh_login_failure", "user.name", 30, "10m"),
        ("vigie_ssh_login_failure", "source.ip", 100, "1h"),
        ("vigie_ssh_login_success", "user.name", 10, "1h"),
        ("vigie_ssh_login_success", "source.ip", 10, "1h"),
        ("vigie_ssh_login_failure", "process.pid", 5, "1m"),
        ("vigie_ssh_login_failure", "source.port", 3, "1m"),
    ];
    for (i, (rule, group, n, span)) in kinds.iter().enumerate() {
        out.push_str(&format!(
            "---\ntitle: generated count {i}\nid: 00000000-0000-4000-8000-0000000001{i:02}\ncorrelation:\n  type: event_count\n  rules: [{rule}]\n  group-by: [{group}]\n  timespan: {span}\n  condition: {{gte: {n}}}\nlevel: low\n"
        ));
        out.push_str(&format!(
            "---\ntitle: generated distinct {i}\nid: 00000000-0000-4000-8000-0000000002{i:02}\ncorrelation:\n  type: value_count\n  rules: [{rule}]\n  group-by: [{group}]\n  timespan: {span}\n  condition: {{gte: {n}, field: user.name}}\nlevel: low\n"
        ));
    }
    out
}

fn events(data: &Path) -> Vec<Map<String, Value>> {
    let registry = vigie_parse::Registry::shared();
    let parser = registry.get("linux_auth").expect("linux_auth parser");
    let ctx = vigie_parse::Context::new(chrono::Utc::now());
    let mut out = Vec::new();
    for file in ["OpenSSH/OpenSSH_2k.log", "Linux/Linux_2k.log"] {
        let text = std::fs::read_to_string(data.join("loghub").join(file)).expect("loghub");
        for line in text.lines() {
            out.push(parser.parse(line.as_bytes(), &ctx).into_map());
        }
    }
    out
}

fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let data = repo().join("../shared/data");
    if !data.is_dir() {
        println!(
            "central_load: no public test data at {} (a user's clone has none); nothing measured",
            data.display()
        );
        return;
    }
    let sigmahq = data.join("sigmahq/rules");
    let opts = LoadOptions {
        mappings: load_mapping_dir(&repo().join("rules/mappings")).expect("mappings"),
        ..LoadOptions::default()
    };
    let mut sources = vigie_detect::read_sources(&[
        sigmahq.join("linux"),
        sigmahq.join("web"),
        sigmahq.join("cloud"),
        repo().join("rules/sigma"),
        repo().join("rules/correlations"),
    ])
    .expect("rules");
    sources.push(("generated.yml".into(), generated_correlations()));
    let started = Instant::now();
    let (set, report) = RuleSet::load_sources(&sources, &opts);
    println!(
        "pack: {} detection rules, {} correlations ({} rejected), loaded in {:.2}s",
        set.len(),
        set.correlations().len(),
        report.rejected.len(),
        started.elapsed().as_secs_f64()
    );
    let mut corr = Correlator::new(
        &set,
        CorrelatorConfig {
            lateness_secs: 10,
            max_group_entries: std::env::var("VIGIE_MAX_GROUP_ENTRIES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(CorrelatorConfig::default().max_group_entries),
            ..CorrelatorConfig::default()
        },
    )
    .expect("correlator");
    let stream = events(&data);
    // VIGIE_NO_CORRELATIONS=1 measures the rules alone.
    let skip_correlations = std::env::var_os("VIGIE_NO_CORRELATIONS").is_some();
    let t0: i64 = 1_795_687_200;
    let mut matched = 0u64;
    let mut fired = 0u64;
    let started = Instant::now();
    for i in 0..total {
        let ev = &stream[i % stream.len()];
        let ts = t0 + (i as i64) / 100;
        let ids: Vec<String> = set.evaluate_map(ev).iter().map(|r| r.id.clone()).collect();
        if !ids.is_empty() && !skip_correlations {
            matched += 1;
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            fired += corr.push(ev, &refs, ts, ts).len() as u64;
        }
        if i % 100 == 0 {
            fired += corr.advance(ts).len() as u64;
        }
    }
    fired += corr.drain().len() as u64;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{total} events in {secs:.2}s: {:.0} events/s on one core; {matched} matched a rule, {fired} correlation firings, {} window states, stats {:?}",
        total as f64 / secs,
        corr.states(),
        corr.stats()
    );
}
