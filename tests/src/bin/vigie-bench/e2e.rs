//! `e2e`: a syslog file, already written, all the way to its destination —
//! Vigie (agent → mTLS → collector, counted through the search API) against
//! rsyslog (imfile → omfwd over TLS → `tls-sink`, via `bench/rsyslog.sh`).
//!
//! Both durations run from the start of the sending process (`vigie-agent
//! run`, `rsyslogd -n`) to the moment the last line is counted: for Vigie,
//! the first poll of `GET /api/v1/events?limit=0` (every `poll_ms`) whose
//! `total` reaches N (so it includes the collector's durable commit and up
//! to one poll interval); for rsyslog, the sink's count of the N-th `\n`.
//! The repetitions alternate (Vigie, rsyslog, Vigie, …), each one on a
//! fresh collector or a fresh rsyslog work directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use vigie_e2e::Agent;

use crate::common::{self, Figure, LoadGate};
use crate::gen;

/// What `e2e` needs.
#[derive(Debug, Clone)]
pub struct E2eOpts {
    pub lines: u64,
    pub reps: usize,
    pub work: PathBuf,
    /// TOML lines for the agent's `[batch]` section (empty: defaults).
    pub batch: String,
    pub commit_ms: u64,
    /// `key = value` lines replacing those of collector.toml.
    pub collector_set: Vec<String>,
    pub poll: Duration,
    pub rsyslog: bool,
    pub rsyslog_auth: String,
    pub script: PathBuf,
    pub bench_exe: PathBuf,
}

/// The figures of one Vigie repetition.
struct VigieRun {
    secs: f64,
    count: u64,
    agent_cpu_s: f64,
    agent_hwm_kib: u64,
    collector_cpu_s: f64,
    collector_hwm_kib: u64,
    agent_threads: String,
    collector_threads: String,
}

pub fn run(o: &E2eOpts, gate: &LoadGate) -> Result<()> {
    std::fs::create_dir_all(&o.work)?;
    let file = o.work.join("e2e-syslog.log");
    let bytes = gen::write_file(&file, 0x5eed, o.lines)?;
    println!(
        "e2e: {} lines, {} bytes ({:.0} bytes/line avg incl. newline) in {}; agent [batch] {}; collector commit_interval_ms={} {:?}",
        o.lines,
        bytes,
        bytes as f64 / o.lines as f64,
        file.display(),
        if o.batch.trim().is_empty() { "defaults".to_owned() } else { o.batch.replace('\n', "; ") },
        o.commit_ms,
        o.collector_set
    );
    let mut f = Figures::new();
    for rep in 1..=o.reps {
        let load = gate.wait(&format!("e2e vigie {rep}/{}", o.reps));
        let v = vigie(o, &file, rep).with_context(|| format!("vigie repetition {rep}"))?;
        println!(
            "e2e vigie rep {rep}: load={load:.2} {:.2} s {:.0} lines/s count={} agent cpu={:.2} s ({:.1} us/line, {:.0}% of a core) hwm={} KiB; collector cpu={:.2} s ({:.0}% of a core) hwm={} KiB\n  agent threads: {}\n  collector threads: {}",
            v.secs,
            o.lines as f64 / v.secs,
            v.count,
            v.agent_cpu_s,
            v.agent_cpu_s * 1e6 / o.lines as f64,
            v.agent_cpu_s / v.secs * 100.0,
            v.agent_hwm_kib,
            v.collector_cpu_s,
            v.collector_cpu_s / v.secs * 100.0,
            v.collector_hwm_kib,
            v.agent_threads,
            v.collector_threads
        );
        f.vigie_rate.push(o.lines as f64 / v.secs);
        f.vigie_secs.push(v.secs);
        f.agent_us.push(v.agent_cpu_s * 1e6 / o.lines as f64);
        f.agent_hwm.push(v.agent_hwm_kib as f64 / 1024.0);
        f.collector_us
            .push(v.collector_cpu_s * 1e6 / o.lines as f64);
        f.collector_hwm.push(v.collector_hwm_kib as f64 / 1024.0);
        f.loads.push(load);
        if o.rsyslog {
            let load = gate.wait(&format!("e2e rsyslog {rep}/{}", o.reps));
            let r = rsyslog(o, &file, rep).with_context(|| format!("rsyslog repetition {rep}"))?;
            println!("e2e rsyslog rep {rep}: load={load:.2} {r}");
            let field = |k: &str| -> Result<f64> {
                r.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                    .ok_or_else(|| anyhow!("no {k} in {r:?}"))?
                    .parse()
                    .map_err(|e| anyhow!("{k}: {e}"))
            };
            let secs = field("elapsed_s")?;
            f.rsyslog_rate.push(o.lines as f64 / secs);
            f.rsyslog_secs.push(secs);
            f.rsyslog_us.push(field("cpu_s")? * 1e6 / o.lines as f64);
            f.rsyslog_hwm.push(field("hwm_kib")? / 1024.0);
            f.loads.push(load);
        }
    }
    f.print(o.rsyslog);
    Ok(())
}

struct Figures {
    vigie_rate: Figure,
    vigie_secs: Figure,
    agent_us: Figure,
    agent_hwm: Figure,
    collector_us: Figure,
    collector_hwm: Figure,
    rsyslog_rate: Figure,
    rsyslog_secs: Figure,
    rsyslog_us: Figure,
    rsyslog_hwm: Figure,
    loads: Figure,
}

impl Figures {
    fn new() -> Self {
        Figures {
            vigie_rate: Figure::new("e2e vigie throughput", "lines/s"),
            vigie_secs: Figure::new("e2e vigie duration", "s"),
            agent_us: Figure::new("e2e vigie agent cpu per line", "us/line"),
            agent_hwm: Figure::new("e2e vigie agent VmHWM", "MiB"),
            collector_us: Figure::new("e2e vigie collector cpu per line", "us/line"),
            collector_hwm: Figure::new("e2e vigie collector VmHWM", "MiB"),
            rsyslog_rate: Figure::new("e2e rsyslog throughput", "lines/s"),
            rsyslog_secs: Figure::new("e2e rsyslog duration", "s"),
            rsyslog_us: Figure::new("e2e rsyslog cpu per line", "us/line"),
            rsyslog_hwm: Figure::new("e2e rsyslog VmHWM", "MiB"),
            loads: Figure::new("e2e load average before runs", "load1"),
        }
    }

    fn print(&self, rsyslog: bool) {
        let mut all = vec![
            &self.vigie_rate,
            &self.vigie_secs,
            &self.agent_us,
            &self.agent_hwm,
            &self.collector_us,
            &self.collector_hwm,
        ];
        if rsyslog {
            all.extend([
                &self.rsyslog_rate,
                &self.rsyslog_secs,
                &self.rsyslog_us,
                &self.rsyslog_hwm,
            ]);
        }
        all.push(&self.loads);
        common::print_figures(&all);
    }
}

fn vigie(o: &E2eOpts, file: &Path, rep: usize) -> Result<VigieRun> {
    let tmp = tempfile::Builder::new()
        .prefix("e2e-vigie-")
        .tempdir_in(&o.work)?;
    let c = common::start_collector(tmp.path(), o.commit_ms, &o.collector_set)?;
    let mut a = Agent::enroll(tmp.path(), "agent", &c)?;
    let sources = format!(
        "[[sources]]\nname = \"auth\"\ntype = \"file\"\nformat = \"syslog\"\ninclude = [{:?}]\nread_from = \"beginning\"\n",
        file.to_string_lossy()
    );
    a.configure(&c, &o.batch, &sources)?;
    let c_pid = common::collector_pid(&c)?;
    let c_cpu0 = common::cpu_secs(c_pid)?;
    let c_threads0 = common::thread_cpu(c_pid);
    let t0 = Instant::now();
    a.start()?;
    let a_pid = a
        .proc
        .as_ref()
        .map(|p| p.child.id())
        .ok_or_else(|| anyhow!("agent not started"))?;
    let mut next_report = Duration::from_secs(5);
    let waited = common::wait_total(
        &c,
        o.lines,
        t0,
        o.poll,
        Duration::from_secs(900),
        |at, n| {
            if at >= next_report {
                eprintln!("[e2e vigie {rep}] {:.1} s: {n} events", at.as_secs_f64());
                next_report += Duration::from_secs(5);
            }
        },
    );
    let (at, count) = match waited {
        Ok(v) => v,
        Err(e) => {
            let log = a.proc.as_ref().map(|p| p.log_text()).unwrap_or_default();
            bail!("{e}; agent log:\n{}", common::log_tail(&log, 20));
        }
    };
    let agent_cpu_s = common::cpu_secs(a_pid)?;
    let agent_threads = common::thread_delta(&[], &common::thread_cpu(a_pid), agent_cpu_s);
    let agent_hwm_kib = common::mem(a_pid)?.hwm_kib;
    let collector_cpu_s = common::cpu_secs(c_pid)? - c_cpu0;
    let collector_threads =
        common::thread_delta(&c_threads0, &common::thread_cpu(c_pid), collector_cpu_s);
    let collector_hwm_kib = common::mem(c_pid)?.hwm_kib;
    Ok(VigieRun {
        secs: at.as_secs_f64(),
        count,
        agent_cpu_s,
        agent_hwm_kib,
        collector_cpu_s,
        collector_hwm_kib,
        agent_threads,
        collector_threads,
    })
}

fn rsyslog(o: &E2eOpts, file: &Path, rep: usize) -> Result<String> {
    let work = o.work.join(format!("e2e-rsyslog-{rep}"));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    let out = Command::new("bash")
        .arg(&o.script)
        .arg(file)
        .arg(o.lines.to_string())
        .arg(&work)
        .env("VIGIE_BENCH", &o.bench_exe)
        .env("RSYSLOG_AUTH", &o.rsyslog_auth)
        .output()
        .with_context(|| format!("running {}", o.script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            o.script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("rsyslog:"))
        .ok_or_else(|| anyhow!("no result line from {}: {stdout}", o.script.display()))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(line.trim_start_matches("rsyslog:").trim().to_owned())
}
