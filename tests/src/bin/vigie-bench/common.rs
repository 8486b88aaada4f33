//! What every measurement shares: the machine description, the load gate,
//! `/proc` readers (CPU time, RSS), figures with min/median, and the small
//! harness extensions the benchmarks need (a collector with its default
//! commit interval, a count loop that polls faster than `wait_count`).
//!
//! CPU time is `utime + stime` of `/proc/PID/stat` (every thread of the
//! process), in clock ticks (`getconf CLK_TCK`, 100 on Linux). Memory is
//! `VmRSS` (now) and `VmHWM` (peak resident) of `/proc/PID/status`, in KiB.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use vigie_e2e::Collector;

/// The collector's default `commit_interval_ms` (the harness lowers it to 100 for tests).
pub const DEFAULT_COMMIT_MS: u64 = 500;

/// One line describing the machine, printed before any figure.
pub fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, v)| v.trim())
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = field_kib(&meminfo, "MemTotal:").unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // The agent runs with its unit's environment (vigie_e2e::unit_environment), as packaged.
    let agent_env: Vec<String> = vigie_e2e::unit_environment("vigie-agent")
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "machine: nproc={nproc} model=\"{model}\" mem={:.1} GiB kernel={}\nagent environment (systemd/vigie-agent.service): {}",
        mem_kib as f64 / 1048576.0,
        kernel.trim(),
        agent_env.join(" ")
    )
}

/// The 1-minute load average.
pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Waits for a quiet machine before a measured run.
#[derive(Debug, Clone)]
pub struct LoadGate {
    /// Highest acceptable 1-minute load average.
    pub max_load: f64,
    /// Give up waiting after this long (and measure anyway, saying so).
    pub max_wait: Duration,
    /// Pause between checks.
    pub poll: Duration,
}

impl LoadGate {
    /// Waits until the 1-minute load is at most `max_load` (or `max_wait`
    /// passed); returns the load measured right before the run.
    pub fn wait(&self, what: &str) -> f64 {
        let start = Instant::now();
        loop {
            let l = load1();
            if l <= self.max_load {
                eprintln!("[{what}] load {l:.2}: measuring");
                return l;
            }
            if start.elapsed() >= self.max_wait {
                eprintln!(
                    "[{what}] load {l:.2} still above {:.2} after {} s: measuring anyway (figures may be polluted)",
                    self.max_load,
                    start.elapsed().as_secs()
                );
                return l;
            }
            eprintln!(
                "[{what}] load {l:.2} > {:.2}: waiting {} s",
                self.max_load,
                self.poll.as_secs()
            );
            std::thread::sleep(self.poll);
        }
    }
}

/// Clock ticks per second for `/proc/PID/stat` times.
pub fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// `utime + stime` of a process, in seconds.
pub fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3,
    // utime field 14 and stime field 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Result<u64> {
        Ok(f.get(i)
            .ok_or_else(|| anyhow!("short /proc/{pid}/stat"))?
            .parse()?)
    };
    Ok((num(11)? + num(12)?) as f64 / clk_tck() as f64)
}

/// Resident memory now and at its peak.
#[derive(Debug, Clone, Copy)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn mem(pid: u32) -> Result<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(Mem {
        rss_kib: field_kib(&status, "VmRSS:").ok_or_else(|| anyhow!("no VmRSS"))?,
        hwm_kib: field_kib(&status, "VmHWM:").ok_or_else(|| anyhow!("no VmHWM"))?,
    })
}

fn field_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// One figure over repetitions.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub values: Vec<f64>,
}

impl Figure {
    pub fn new(name: &str, unit: &str) -> Self {
        Figure {
            name: name.to_owned(),
            unit: unit.to_owned(),
            values: Vec::new(),
        }
    }

    pub fn push(&mut self, v: f64) {
        self.values.push(v);
    }

    /// `RESULT <name>: min=… median=… max=… <unit> (n=…) runs=[…]`.
    pub fn line(&self) -> String {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        let fmt = |x: f64| {
            if x.abs() >= 100.0 {
                format!("{x:.0}")
            } else if x.abs() >= 1.0 {
                format!("{x:.2}")
            } else {
                format!("{x:.4}")
            }
        };
        let median = if v.is_empty() {
            f64::NAN
        } else if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        let runs: Vec<String> = self.values.iter().map(|x| fmt(*x)).collect();
        format!(
            "RESULT {}: min={} median={} max={} {} (n={}) runs=[{}]",
            self.name,
            fmt(v.first().copied().unwrap_or(f64::NAN)),
            fmt(median),
            fmt(v.last().copied().unwrap_or(f64::NAN)),
            self.unit,
            v.len(),
            runs.join(", ")
        )
    }
}

/// Prints every figure's summary line.
pub fn print_figures(figures: &[&Figure]) {
    for f in figures {
        println!("{}", f.line());
    }
}

/// The collector process id.
pub fn collector_pid(c: &Collector) -> Result<u32> {
    c.proc
        .as_ref()
        .map(|p| p.child.id())
        .ok_or_else(|| anyhow!("collector not running"))
}

/// Per-agent and global ingest quotas, off in benchmarks.
pub const QUOTAS_OFF: [&str; 2] = ["agent_events_per_second = 0", "max_events_per_second = 0"];

/// Starts a collector (harness `Collector::start`), then restores the
/// default `commit_interval_ms` (or sets `commit_ms`), applies `overrides`
/// (`key = value` lines replacing the line of the same key in
/// collector.toml) and restarts it, so that benchmarks measure the
/// configuration users run unless told otherwise, with one exception: the
/// ingest quotas are off ([`QUOTAS_OFF`]), since the benchmarks send from
/// one agent on purpose to measure capacity (override them to measure
/// their effect).
pub fn start_collector(root: &Path, commit_ms: u64, overrides: &[String]) -> Result<Collector> {
    let mut c = Collector::start(root)?;
    let path = c.config_path();
    let mut text = std::fs::read_to_string(&path)?;
    let commit = format!("commit_interval_ms = {commit_ms}");
    let quotas_off = QUOTAS_OFF.map(str::to_owned);
    for set in std::iter::once(&commit).chain(&quotas_off).chain(overrides) {
        let key = set.split('=').next().unwrap_or("").trim();
        let Some(line) = text.lines().find(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        }) else {
            bail!("no `{key}` line in {} to replace", path.display());
        };
        text = text.replacen(line, set, 1);
    }
    std::fs::write(&path, text)?;
    if let Some(mut p) = c.proc.take() {
        if p.terminate(Duration::from_secs(30)).is_none() {
            p.kill();
        }
    }
    c.serve()?;
    Ok(c)
}

/// Polls the event count every `poll` until it reaches `n`; returns the
/// time it was first seen at or above `n` (measured from `t0`) and the count.
/// `progress` gets (elapsed, count) every poll.
pub fn wait_total(
    c: &Collector,
    n: u64,
    t0: Instant,
    poll: Duration,
    timeout: Duration,
    mut progress: impl FnMut(Duration, u64),
) -> Result<(Duration, u64)> {
    loop {
        let count = c.count("")?;
        let at = t0.elapsed();
        progress(at, count);
        if count >= n {
            return Ok((at, count));
        }
        if at > timeout {
            bail!("only {count} of {n} events after {} s", at.as_secs());
        }
        std::thread::sleep(poll);
    }
}

/// The last `n` lines of a process log, for error messages.
pub fn log_tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// CPU seconds of every thread of `pid`, by thread id, with its name.
pub fn thread_cpu(pid: u32) -> Vec<(u32, String, f64)> {
    let tck = clk_tck() as f64;
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let name = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map_or("?", |(n, _)| n)
            .to_owned();
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.push((tid, name, (ticks(11) + ticks(12)) as f64 / tck));
    }
    out
}

/// CPU used per thread name between two [`thread_cpu`] samples, largest
/// first, as `name=seconds`; `exited=` is what the process used (`total`)
/// beyond the threads still alive at the second sample.
pub fn thread_delta(
    before: &[(u32, String, f64)],
    after: &[(u32, String, f64)],
    total: f64,
) -> String {
    let mut by_name: Vec<(String, f64)> = Vec::new();
    for (tid, name, secs) in after {
        let prev = before
            .iter()
            .find(|(t, _, _)| t == tid)
            .map_or(0.0, |b| b.2);
        match by_name.iter_mut().find(|(n, _)| n == name) {
            Some(e) => e.1 += secs - prev,
            None => by_name.push((name.clone(), secs - prev)),
        }
    }
    let alive: f64 = by_name.iter().map(|e| e.1).sum();
    by_name.push(("exited".to_owned(), (total - alive).max(0.0)));
    by_name.retain(|e| e.1 >= 0.005);
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_name
        .iter()
        .map(|(n, s)| format!("{}={s:.2}s", n.replace(' ', "_")))
        .collect::<Vec<_>>()
        .join(" ")
}
