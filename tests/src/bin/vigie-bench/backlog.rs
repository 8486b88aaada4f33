//! `backlog`: the spool at work. The collector is down while the agent reads
//! a syslog file into its spool (fsync per batch, the default), then comes
//! back and the backlog drains.
//!
//! Reported per repetition: the fill rate (lines/s from `vigie-agent run`
//! until its metrics endpoint shows every event waiting in the spool: the
//! agent's throughput with the spool on, no network), the agent's VmHWM
//! during the fill (memory stays flat: the backlog is on disk), the spool's
//! size, and the drain rate (events/s from the first events stored after
//! `serve` until the API counts every line: the agents' retries back off
//! while the collector is down, so the first seconds are waiting, printed
//! apart).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use vigie_e2e::{free_port, Agent};

use crate::common::{self, Figure, LoadGate};
use crate::gen;

/// What `backlog` needs.
#[derive(Debug, Clone)]
pub struct BacklogOpts {
    pub lines: u64,
    pub reps: usize,
    pub work: std::path::PathBuf,
    pub batch: String,
    pub commit_ms: u64,
    pub collector_set: Vec<String>,
}

pub fn run(o: &BacklogOpts, gate: &LoadGate) -> Result<()> {
    std::fs::create_dir_all(&o.work)?;
    let file = o.work.join("backlog-syslog.log");
    gen::write_file(&file, 0x5eed, o.lines)?;
    let mut fill = Figure::new("backlog spool fill (agent, collector down)", "lines/s");
    let mut drain = Figure::new("backlog drain", "events/s");
    let mut hwm = Figure::new("backlog agent VmHWM during the fill", "MiB");
    let mut spool = Figure::new("backlog spool size", "MiB");
    for rep in 1..=o.reps {
        let load = gate.wait(&format!("backlog {rep}/{}", o.reps));
        let (f, d, h, s) = once(o, &file).with_context(|| format!("backlog repetition {rep}"))?;
        println!(
            "backlog rep {rep}: load={load:.2} fill {f:.0} lines/s, drain {d:.0} events/s, agent VmHWM {h:.1} MiB, spool {s:.1} MiB"
        );
        fill.push(f);
        drain.push(d);
        hwm.push(h);
        spool.push(s);
    }
    common::print_figures(&[&fill, &drain, &hwm, &spool]);
    Ok(())
}

fn once(o: &BacklogOpts, file: &Path) -> Result<(f64, f64, f64, f64)> {
    let tmp = tempfile::Builder::new()
        .prefix("backlog-")
        .tempdir_in(&o.work)?;
    let mut c = common::start_collector(tmp.path(), o.commit_ms, &o.collector_set)?;
    let mut a = Agent::enroll(tmp.path(), "agent", &c)?;
    let port = free_port();
    let batch = format!(
        "{}\n\n[metrics]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n",
        o.batch
    );
    let sources = format!(
        "[[sources]]\nname = \"auth\"\ntype = \"file\"\nformat = \"syslog\"\ninclude = [{:?}]\nread_from = \"beginning\"\n",
        file.to_string_lossy()
    );
    a.configure(&c, &batch, &sources)?;
    if let Some(mut p) = c.proc.take() {
        p.kill();
    }
    let http = reqwest::blocking::Client::new();
    let metric = |name: &str| -> Option<u64> {
        let text = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .ok()?
            .text()
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    let t0 = Instant::now();
    a.start()?;
    let pid = a
        .proc
        .as_ref()
        .map(|p| p.child.id())
        .ok_or_else(|| anyhow!("agent not started"))?;
    loop {
        if metric("vigie_agent_spool_events ") == Some(o.lines) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("the spool never held {} events", o.lines);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let fill_secs = t0.elapsed().as_secs_f64();
    let hwm_kib = common::mem(pid)?.hwm_kib;
    let spool_bytes = metric("vigie_agent_spool_bytes ").unwrap_or(0);
    c.serve()?;
    // The drain rate counts from the first events stored (the agent's
    // retries were backing off while the collector was down).
    let t1 = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    let (at, _) = common::wait_total(
        &c,
        o.lines,
        t1,
        Duration::from_millis(100),
        Duration::from_secs(900),
        |_, n| {
            if n > 0 && first.is_none() {
                first = Some((Instant::now(), n));
            }
        },
    )?;
    let (t_first, n_first) = first.unwrap_or((t1, 0));
    let drain_secs = (t1 + at).saturating_duration_since(t_first).as_secs_f64();
    let drained = o.lines.saturating_sub(n_first);
    println!(
        "backlog: first events stored {:.2} s after the collector started; drain of the remaining {drained} measured over {drain_secs:.2} s",
        t_first.duration_since(t1).as_secs_f64()
    );
    Ok((
        o.lines as f64 / fill_secs,
        drained as f64 / drain_secs.max(1e-3),
        hwm_kib as f64 / 1024.0,
        spool_bytes as f64 / (1024.0 * 1024.0),
    ))
}
