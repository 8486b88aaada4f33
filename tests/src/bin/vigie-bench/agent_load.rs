//! The agent's footprint: `agent-idle` (memory once caught up and quiet)
//! and `agent-cpu` (CPU while a writer appends at a steady rate).
//!
//! `agent-idle`: four files (auth.log, syslog, kern.log, daemon.log; 50,000
//! lines in all) are read from their beginning; once the collector holds
//! them all, nothing is written for `idle_secs`; then `VmRSS` and `VmHWM`
//! are read, and the CPU used during the quiet period.
//!
//! `agent-cpu`: the agent follows one file (read from its beginning, a
//! hundred lines to start with); once those arrived and the agent has been
//! quiet for 2 s, a writer appends `burst` lines every `interval_ms` for
//! `secs` (2,000 lines/s by default), at fixed instants so the rate does not
//! drift. CPU% = Δ(utime+stime) over the writing window / wall time of the
//! window, as a percentage of one core. Every line is then checked to have
//! arrived.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use chrono::Local;
use vigie_e2e::{Agent, Collector};

use crate::common::{self, Figure, LoadGate};
use crate::gen;

/// Options shared by both subcommands.
#[derive(Debug, Clone)]
pub struct LoadOpts {
    pub reps: usize,
    pub work: std::path::PathBuf,
    pub commit_ms: u64,
    /// `key = value` lines replacing those of collector.toml.
    pub collector_set: Vec<String>,
    pub batch: String,
    pub idle_secs: u64,
    pub rate_burst: u64,
    pub rate_interval_ms: u64,
    pub rate_secs: u64,
}

fn start_agent(root: &Path, c: &Collector, o: &LoadOpts, include: &str) -> Result<Agent> {
    let mut a = Agent::enroll(root, "agent", c)?;
    let sources = format!(
        "[[sources]]\nname = \"logs\"\ntype = \"file\"\nformat = \"syslog\"\ninclude = [{include:?}]\nread_from = \"beginning\"\n"
    );
    a.configure(c, &o.batch, &sources)?;
    a.start()?;
    Ok(a)
}

fn agent_pid(a: &Agent) -> Result<u32> {
    a.proc
        .as_ref()
        .map(|p| p.child.id())
        .ok_or_else(|| anyhow!("agent not started"))
}

fn wait_all(c: &Collector, a: &Agent, n: u64) -> Result<()> {
    let t0 = Instant::now();
    if let Err(e) = common::wait_total(
        c,
        n,
        t0,
        Duration::from_millis(200),
        Duration::from_secs(300),
        |_, _| {},
    ) {
        let log = a.proc.as_ref().map(|p| p.log_text()).unwrap_or_default();
        bail!("{e}; agent log:\n{}", common::log_tail(&log, 20));
    }
    Ok(())
}

pub fn idle(o: &LoadOpts, gate: &LoadGate) -> Result<()> {
    std::fs::create_dir_all(&o.work)?;
    let mut rss = Figure::new("agent idle VmRSS", "MiB");
    let mut hwm = Figure::new("agent idle VmHWM", "MiB");
    let mut cpu = Figure::new("agent idle cpu", "% of a core");
    let mut loads = Figure::new("agent-idle load average before runs", "load1");
    let files: [(&str, u64); 4] = [
        ("auth.log", 20_000),
        ("syslog", 20_000),
        ("kern.log", 5_000),
        ("daemon.log", 5_000),
    ];
    let total: u64 = files.iter().map(|f| f.1).sum();
    for rep in 1..=o.reps {
        loads.push(gate.wait(&format!("agent-idle {rep}/{}", o.reps)));
        let tmp = tempfile::Builder::new()
            .prefix("agent-idle-")
            .tempdir_in(&o.work)?;
        let logs = tmp.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        for (i, (name, n)) in files.iter().enumerate() {
            gen::write_file(&logs.join(name), 100 + i as u64, *n)?;
        }
        let c = common::start_collector(tmp.path(), o.commit_ms, &o.collector_set)?;
        let a = start_agent(tmp.path(), &c, o, &format!("{}/*", logs.to_string_lossy()))?;
        let pid = agent_pid(&a)?;
        wait_all(&c, &a, total)?;
        let cpu0 = common::cpu_secs(pid)?;
        let threads0 = common::thread_cpu(pid);
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs(o.idle_secs));
        let used = common::cpu_secs(pid)? - cpu0;
        let threads = common::thread_delta(&threads0, &common::thread_cpu(pid), used);
        let m = common::mem(pid)?;
        let pct = used / t.elapsed().as_secs_f64() * 100.0;
        println!(
            "agent-idle rep {rep}: caught up with {total} lines in 4 files, then {} s without new lines: VmRSS={} KiB VmHWM={} KiB cpu={pct:.2}% of a core (threads: {threads})",
            o.idle_secs, m.rss_kib, m.hwm_kib
        );
        rss.push(m.rss_kib as f64 / 1024.0);
        hwm.push(m.hwm_kib as f64 / 1024.0);
        cpu.push(pct);
    }
    common::print_figures(&[&rss, &hwm, &cpu, &loads]);
    Ok(())
}

pub fn cpu(o: &LoadOpts, gate: &LoadGate) -> Result<()> {
    std::fs::create_dir_all(&o.work)?;
    let bursts = o.rate_secs * 1000 / o.rate_interval_ms.max(1);
    let rate = o.rate_burst as f64 * 1000.0 / o.rate_interval_ms.max(1) as f64;
    let mut agent_pct = Figure::new(&format!("agent cpu at {rate:.0} lines/s"), "% of a core");
    let mut agent_us = Figure::new(
        &format!("agent cpu per line at {rate:.0} lines/s"),
        "us/line",
    );
    let mut coll_pct = Figure::new(
        &format!("collector cpu at {rate:.0} lines/s"),
        "% of a core",
    );
    let mut rss = Figure::new(&format!("agent VmRSS after {rate:.0} lines/s"), "MiB");
    let mut loads = Figure::new("agent-cpu load average before runs", "load1");
    for rep in 1..=o.reps {
        loads.push(gate.wait(&format!("agent-cpu {rep}/{}", o.reps)));
        let tmp = tempfile::Builder::new()
            .prefix("agent-cpu-")
            .tempdir_in(&o.work)?;
        let logs = tmp.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let path = logs.join("app.log");
        gen::write_file(&path, 7, 100)?;
        let c = common::start_collector(tmp.path(), o.commit_ms, &o.collector_set)?;
        let a = start_agent(tmp.path(), &c, o, &path.to_string_lossy())?;
        let pid = agent_pid(&a)?;
        let c_pid = common::collector_pid(&c)?;
        wait_all(&c, &a, 100)?;
        std::thread::sleep(Duration::from_secs(2));
        // Lines are made before the window so the writer only writes.
        let mut payload = Vec::with_capacity(bursts as usize);
        let mut r = gen::Rng::new(rep as u64);
        for _ in 0..bursts {
            let mut buf = String::new();
            for _ in 0..o.rate_burst {
                buf.push_str(&gen::line(&mut r, Local::now()));
                buf.push('\n');
            }
            payload.push(buf);
        }
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        let (cpu0, ccpu0) = (common::cpu_secs(pid)?, common::cpu_secs(c_pid)?);
        let threads0 = common::thread_cpu(pid);
        let t0 = Instant::now();
        for (k, buf) in payload.iter().enumerate() {
            let at = t0 + Duration::from_millis(k as u64 * o.rate_interval_ms);
            if let Some(d) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            file.write_all(buf.as_bytes())?;
        }
        let end = t0 + Duration::from_millis(bursts * o.rate_interval_ms);
        if let Some(d) = end.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let wall = t0.elapsed().as_secs_f64();
        let used = common::cpu_secs(pid)? - cpu0;
        let cused = common::cpu_secs(c_pid)? - ccpu0;
        let threads = common::thread_delta(&threads0, &common::thread_cpu(pid), used);
        let written = bursts * o.rate_burst;
        wait_all(&c, &a, 100 + written)?;
        let m = common::mem(pid)?;
        println!(
            "agent-cpu rep {rep}: {written} lines in {wall:.2} s ({:.0} lines/s, {} every {} ms): agent cpu={used:.2} s = {:.2}% of a core ({:.2} us/line), VmRSS={} KiB VmHWM={} KiB; collector cpu={:.2}% of a core; agent threads: {threads}",
            written as f64 / wall,
            o.rate_burst,
            o.rate_interval_ms,
            used / wall * 100.0,
            used * 1e6 / written as f64,
            m.rss_kib,
            m.hwm_kib,
            cused / wall * 100.0
        );
        agent_pct.push(used / wall * 100.0);
        agent_us.push(used * 1e6 / written as f64);
        coll_pct.push(cused / wall * 100.0);
        rss.push(m.rss_kib as f64 / 1024.0);
    }
    common::print_figures(&[&agent_pct, &agent_us, &coll_pct, &rss, &loads]);
    Ok(())
}
