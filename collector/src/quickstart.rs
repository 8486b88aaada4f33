//! `vigie-collector quickstart`: Vigie's main job on embedded defaults.
//!
//! In one process: a collector on a loopback port with a fresh CA, a real
//! agent (the vigie-agent library) enrolled with a one-time token over the
//! real enrollment endpoint, shipping over mTLS the sample logs bundled in
//! this binary (an auth.log with an SSH brute force, a Teleport audit log, an
//! nginx access log). The collector runs Vigie's own Sigma rules and correlations
//! (`rules/sigma`, `rules/correlations`, when run from a source checkout) and serves them to
//! the agent, which runs them at the edge. It prints how many events arrived per source, the
//! alerts raised, and the curl commands to query them, then runs until Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::config::CollectorConfig;
use crate::init::{init, InitOptions};
use crate::server;
use crate::store::parse_query;

/// The bundled samples: (file name, agent source name, format).
const SAMPLES: [(&str, &str, &str, &str); 3] = [
    (
        "auth.log",
        "auth",
        "linux_auth",
        include_str!("../samples/auth.log"),
    ),
    (
        "teleport-audit.log",
        "teleport",
        "teleport",
        include_str!("../samples/teleport-audit.log"),
    ),
    (
        "nginx-access.log",
        "nginx",
        "nginx_access",
        include_str!("../samples/nginx-access.log"),
    ),
];

/// Runs the demo.
pub async fn run(dir: Option<PathBuf>, exit_after_replay: bool) -> Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("vigie-quickstart-{}", std::process::id())),
    };
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let collector_dir = dir.join("collector");
    let agent_dir = dir.join("agent");
    let logs_dir = dir.join("logs");
    std::fs::create_dir_all(&logs_dir)
        .with_context(|| format!("cannot create {}", logs_dir.display()))?;

    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on loopback")?;
    let addr = listener.local_addr()?;
    let config_path = collector_dir.join("collector.toml");
    if !config_path.exists() {
        init(&InitOptions {
            data_dir: collector_dir.clone(),
            listen: addr,
            hostnames: vec!["localhost".into(), "127.0.0.1".into()],
            server_cert_days: 825,
        })?;
    }
    let mut cfg = CollectorConfig::load(&config_path)?;
    cfg.storage.commit_interval_ms = 200;
    // Central detection with Vigie's rules and correlations (from a source checkout); a short
    // lateness so correlation alerts show before the summary.
    if let Some((rules, mappings)) = shipped_rules() {
        let correlations = rules.with_file_name("correlations");
        cfg.detection.rules = vec![rules, correlations];
        cfg.detection.mappings = vec![mappings];
        cfg.detection.correlation.lateness_secs = 1;
    }
    let running = server::start(cfg, Some(listener)).await?;
    let url = format!("https://127.0.0.1:{}", addr.port());
    let ca_path = collector_dir.join("pki/ca.pem");

    let mut expected = 0usize;
    for (file, _, _, text) in SAMPLES {
        let path = logs_dir.join(file);
        if !path.exists() {
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        expected += text.lines().filter(|l| !l.trim().is_empty()).count();
    }
    let before = count(&running, "").await?;

    if !agent_dir.join("identity.json").exists() {
        let token = running.state.db.create_enrollment_token(
            1,
            Some(Duration::from_secs(600)),
            "quickstart",
        )?;
        let id =
            vigie_agent::enroll::enroll(&url, &ca_path, &token, &agent_dir, "quickstart-agent")
                .await
                .context("enrolling the local agent")?;
        println!("agent enrolled as {} over {url}", id.agent_id);
    }
    let agent_toml = agent_config(&agent_dir, &url, &ca_path, &logs_dir);
    let agent_cfg_path = agent_dir.join("agent.toml");
    std::fs::write(&agent_cfg_path, &agent_toml)?;
    let agent_cfg = vigie_agent::config::AgentConfig::load(&agent_cfg_path)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent =
        tokio::spawn(async move { vigie_agent::run::run(agent_cfg, stop_rx).await.map(|_| ()) });

    println!(
        "replaying {expected} sample lines from {} ...",
        logs_dir.display()
    );
    let started = Instant::now();
    let mut total = before;
    // On a re-run with the same --dir the samples were shipped already: the
    // agent's checkpoints say so, and nothing new is expected.
    let target = before.max(expected as u64);
    while started.elapsed() < Duration::from_secs(60) {
        total = count(&running, "").await?;
        if total >= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let arrived = total.saturating_sub(before);
    println!(
        "{arrived} events arrived in {:.1}s (stored in total: {total})",
        started.elapsed().as_secs_f64()
    );
    for (_, source, format, _) in SAMPLES {
        let n = count(&running, &format!("vigie.source:{source}")).await?;
        println!("  {source:<9} ({format}): {n}");
    }
    let brute = count(&running, "vigie.source:auth AND \"Failed password\"").await?;
    println!("  SSH failed passwords in auth.log: {brute}");
    // Correlation windows close once the stragglers' lateness has passed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    print_alerts(&running).await;
    let token_path = collector_dir.join("admin.token");
    println!();
    println!("Query them (the API token is in {}):", token_path.display());
    println!(
        "  curl -s --cacert {ca} -H \"Authorization: Bearer $(cat {tok})\" '{url}/api/v1/events?q=%22Failed%20password%22&limit=5'",
        ca = ca_path.display(),
        tok = token_path.display()
    );
    println!(
        "  curl -s --cacert {ca} -H \"Authorization: Bearer $(cat {tok})\" '{url}/api/v1/alerts?sort=urgency'",
        ca = ca_path.display(),
        tok = token_path.display()
    );
    println!(
        "  curl -s --cacert {ca} -H \"Authorization: Bearer $(cat {tok})\" '{url}/api/v1/agents'",
        ca = ca_path.display(),
        tok = token_path.display()
    );
    println!(
        "Append lines to {}/*.log and they arrive too.",
        logs_dir.display()
    );

    if !exit_after_replay {
        println!("Running until Ctrl-C. Data stays in {}.", dir.display());
        server::wait_for_signal().await;
    }
    let _ = stop_tx.send(true);
    match agent.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("agent stopped with an error: {e:#}"),
        Err(e) => eprintln!("agent task failed: {e}"),
    }
    running.stop().await;
    if total < expected as u64 {
        anyhow::bail!("only {total} of {expected} sample events arrived within 60 s");
    }
    Ok(())
}

/// Prints the alerts the agent's edge rules raised.
async fn print_alerts(running: &server::Running) {
    if shipped_rules().is_none() {
        println!(
            "(no rules/ folder next to this binary's sources: edge detection is off in this demo)"
        );
        return;
    }
    let db = running.state.db.clone();
    let filter = crate::db::AlertFilter {
        sort: crate::db::AlertSort::Urgency,
        limit: 20,
        ..crate::db::AlertFilter::default()
    };
    match tokio::task::spawn_blocking(move || db.list_alerts(&filter)).await {
        Ok(Ok((total, alerts))) => {
            println!("{total} alert(s) raised by Vigie's rules (rules/sigma at the edge and the collector, rules/correlations at the collector):");
            for a in alerts {
                println!(
                    "  urgency {:>3}  {:<11} {:<56} x{:<3} {}",
                    a.urgency, a.origin, a.rule_title, a.occurrences, a.entities
                );
            }
        }
        Ok(Err(e)) => println!("alerts cannot be read: {e}"),
        Err(e) => println!("alerts cannot be read: {e}"),
    }
}

async fn count(running: &server::Running, q: &str) -> Result<u64> {
    let store = running.state.store.clone();
    let query = parse_query(q)?;
    let n = tokio::task::spawn_blocking(move || store.count(&query, None, None)).await??;
    Ok(n)
}

/// Vigie's own rules and mappings, when the quickstart runs from a source checkout.
fn shipped_rules() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let (rules, mappings) = (root.join("sigma"), root.join("mappings"));
    (rules.is_dir() && mappings.is_dir()).then_some((rules, mappings))
}

fn agent_config(agent_dir: &Path, url: &str, ca: &Path, logs: &Path) -> String {
    let mut s = format!(
        "# Written by vigie-collector quickstart.\ndata_dir = {:?}\n\n[collector]\nurl = {url:?}\nca_file = {:?}\n\n[batch]\ntimeout_ms = 200\n",
        agent_dir.display().to_string(),
        ca.display().to_string()
    );
    if shipped_rules().is_some() {
        // The collector's pack (rules/sigma + rules/correlations), run at the edge too: the
        // events it evaluated are stamped with its version and not evaluated again.
        s.push_str("\n[detect]\nsource = \"collector\"\n");
    }
    for (file, source, format, _) in SAMPLES {
        s.push_str(&format!(
            "\n[[sources]]\nname = {source:?}\ntype = \"file\"\ninclude = [{:?}]\nformat = {format:?}\nread_from = \"beginning\"\n",
            logs.join(file).display().to_string()
        ));
    }
    s
}
