//! `vigie-bench`: Vigie's benchmarks, run on loopback with the real binaries.
//!
//! Subcommands: `e2e` (a syslog file to the collector, against rsyslog over
//! TLS), `agent-idle` (agent memory once quiet), `agent-cpu` (agent CPU at a
//! steady 2,000 lines/s), `ingest` (collector ingest from prebuilt batches),
//! `all` (the four, in that order), `fleet` (N simulated agents with their
//! own certificates at a set total rate), plus the helpers `tls-sink` (the line
//! counting TLS listener `bench/rsyslog.sh` forwards to) and `gen` (writes
//! the benchmark's syslog lines to a file). Every figure is printed as one
//! `RESULT name: min=… median=… max=… unit (n=…) runs=[…]` line, after a
//! `machine:` line; progress and load waits go to stderr. bench/README.md
//! describes the method.
//!
//! The binaries are those of the target directory this program was built
//! into (`target/release/` with `--release`), found by the `vigie-e2e`
//! harness. The harness looks for them in the parent of the directory of the
//! running executable (made for test binaries in `target/<profile>/deps/`),
//! so this program first re-executes itself from a hard link in `deps/`.

mod agent_load;
mod backlog;
mod common;
mod e2e;
mod fleet;
mod gen;
mod ingest;
mod sink;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::common::LoadGate;

const REEXEC_ENV: &str = "VIGIE_BENCH_REEXEC";

#[derive(Parser, Debug)]
#[command(
    name = "vigie-bench",
    about = "Vigie benchmarks (loopback, real binaries)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Repetitions of every measurement (figures report min and median).
    #[arg(long, global = true, default_value_t = 3)]
    reps: usize,
    /// Working directory (generated files, collector and agent data).
    #[arg(long, global = true, default_value = "/tmp/vigie-bench")]
    work: PathBuf,
    /// Wait before each measured run until the 1-minute load is at most this.
    #[arg(long, global = true, default_value_t = 0.7)]
    max_load: f64,
    /// Longest wait for a quiet machine before each run (then measure anyway).
    #[arg(long, global = true, default_value_t = 600)]
    max_wait_secs: u64,
    /// Pause between load checks.
    #[arg(long, global = true, default_value_t = 30)]
    load_poll_secs: u64,
    /// The collector's `storage.commit_interval_ms` (its default is 500).
    #[arg(long, global = true, default_value_t = common::DEFAULT_COMMIT_MS)]
    commit_ms: u64,
    /// A line of the agent's `[batch]` section, e.g. `max_in_flight = 8`
    /// (repeatable; none = the defaults).
    #[arg(long, global = true)]
    agent_batch: Vec<String>,
    /// A `key = value` line replacing the line of that key in the
    /// collector's collector.toml, e.g. `writer_threads = 2` (repeatable).
    #[arg(long, global = true)]
    collector_set: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// A syslog file read from the beginning until the collector holds every
    /// line, then the same file forwarded by rsyslog over TLS.
    E2e(E2eArgs),
    /// The spool: the agent reads a file while the collector is down, then
    /// the backlog drains.
    Backlog {
        #[arg(long, default_value_t = 300_000)]
        lines: u64,
    },
    /// Agent VmRSS / VmHWM after catching up with four files and a quiet period.
    AgentIdle(IdleArgs),
    /// Agent CPU while a writer appends lines at a steady rate.
    AgentCpu(CpuArgs),
    /// Collector ingest of prebuilt gzip NDJSON batches from concurrent senders.
    Ingest(IngestArgs),
    /// N simulated agents (distinct certificates, one mTLS connection each)
    /// sending batches at a set total rate to one collector.
    Fleet(FleetArgs),
    /// e2e, agent-idle, agent-cpu and ingest with their defaults.
    All,
    /// A TLS listener on 127.0.0.1 that counts lines (used by bench/rsyslog.sh).
    TlsSink(SinkArgs),
    /// Writes the benchmark's syslog lines to a file.
    Gen {
        #[arg(long, default_value_t = 300_000)]
        lines: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0x5eed)]
        seed: u64,
    },
}

#[derive(clap::Args, Debug, Clone)]
struct E2eArgs {
    #[arg(long, default_value_t = 300_000)]
    lines: u64,
    /// How often the API count is polled during the Vigie run.
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// Skip the rsyslog half.
    #[arg(long)]
    no_rsyslog: bool,
    /// rsyslog's StreamDriverAuthMode: x509/certvalid or anon.
    #[arg(long, default_value = "x509/certvalid")]
    rsyslog_auth: String,
    /// The rsyslog runner.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/rsyslog.sh"))]
    rsyslog_script: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
struct IdleArgs {
    /// Quiet period before memory is read.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
}

#[derive(clap::Args, Debug, Clone)]
struct CpuArgs {
    /// Lines per burst.
    #[arg(long, default_value_t = 200)]
    burst: u64,
    /// Time between bursts.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Length of the measured window.
    #[arg(long, default_value_t = 30)]
    secs: u64,
}

#[derive(clap::Args, Debug, Clone)]
struct IngestArgs {
    #[arg(long, default_value_t = 500_000)]
    events: u64,
    #[arg(long, default_value_t = 5_000)]
    batch_events: u64,
    /// Concurrent senders (one mTLS connection each).
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Remove this field (dotted path) from every event before it is
    /// sent, e.g. `event.original` (repeatable; an experiment, not the
    /// agent's shape).
    #[arg(long)]
    drop_field: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
struct FleetArgs {
    #[arg(long, default_value_t = 750)]
    agents: usize,
    /// Events per second, all agents together (1,650 is ~1 billion a week).
    #[arg(long, default_value_t = 1650.0)]
    rate: f64,
    /// Each agent sends one batch this often.
    #[arg(long, default_value_t = 5.0)]
    interval_secs: f64,
    /// Length of the measured run.
    #[arg(long, default_value_t = 60)]
    secs: u64,
}

#[derive(clap::Args, Debug, Clone)]
struct SinkArgs {
    /// Exit once this many lines arrived.
    #[arg(long)]
    lines: u64,
    /// 0 picks a free port (see --port-file).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// ca.pem, server.pem and server.key (created when absent).
    #[arg(long)]
    pki_dir: PathBuf,
    /// Written with the listening port once the sink is ready.
    #[arg(long)]
    port_file: Option<PathBuf>,
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

/// A subcommand's arguments with every default (for `all`).
fn defaults<T: Args>() -> T {
    #[derive(Parser)]
    struct Only<T: Args> {
        #[command(flatten)]
        args: T,
    }
    Only::<T>::parse_from(["vigie-bench"]).args
}

/// Re-executes this program from `deps/` (see the module doc), once.
fn reexec_from_deps() -> Result<()> {
    if std::env::var_os(REEXEC_ENV).is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let Some(dir) = exe.parent() else {
        return Ok(());
    };
    if dir.file_name().is_some_and(|n| n == "deps") {
        return Ok(());
    }
    for bin in ["vigie-agent", "vigie-collector"] {
        if !dir.join(bin).exists() {
            bail!(
                "{} not found next to {}: build with `cargo build --release -p vigie-e2e -p vigie-agent -p vigie-collector`",
                dir.join(bin).display(),
                exe.display()
            );
        }
    }
    let link = dir.join("deps").join("vigie-bench-run");
    std::fs::create_dir_all(dir.join("deps"))?;
    let _ = std::fs::remove_file(&link);
    if std::fs::hard_link(&exe, &link).is_err() {
        std::fs::copy(&exe, &link).with_context(|| format!("copying to {}", link.display()))?;
    }
    let err = std::process::Command::new(&link)
        .args(std::env::args_os().skip(1))
        .env(REEXEC_ENV, "1")
        .exec();
    Err(err).with_context(|| format!("re-executing {}", link.display()))
}

fn e2e_opts(cli: &Cli, a: &E2eArgs, batch: &str) -> Result<e2e::E2eOpts> {
    Ok(e2e::E2eOpts {
        lines: a.lines,
        reps: cli.reps,
        work: cli.work.clone(),
        batch: batch.to_owned(),
        commit_ms: cli.commit_ms,
        collector_set: cli.collector_set.clone(),
        poll: Duration::from_millis(a.poll_ms),
        rsyslog: !a.no_rsyslog,
        rsyslog_auth: a.rsyslog_auth.clone(),
        script: a.rsyslog_script.clone(),
        bench_exe: std::env::current_exe()?,
    })
}

fn load_opts(cli: &Cli, batch: &str, idle: &IdleArgs, cpu: &CpuArgs) -> agent_load::LoadOpts {
    agent_load::LoadOpts {
        reps: cli.reps,
        work: cli.work.clone(),
        commit_ms: cli.commit_ms,
        collector_set: cli.collector_set.clone(),
        batch: batch.to_owned(),
        idle_secs: idle.idle_secs,
        rate_burst: cpu.burst,
        rate_interval_ms: cpu.interval_ms,
        rate_secs: cpu.secs,
    }
}

fn ingest_opts(cli: &Cli, a: &IngestArgs) -> ingest::IngestOpts {
    ingest::IngestOpts {
        events: a.events,
        batch_events: a.batch_events,
        senders: a.senders,
        reps: cli.reps,
        work: cli.work.clone(),
        commit_ms: cli.commit_ms,
        collector_set: cli.collector_set.clone(),
        drop_fields: a.drop_field.clone(),
    }
}

fn run(cli: Cli) -> Result<()> {
    match &cli.cmd {
        Cmd::TlsSink(a) => {
            return sink::run(&sink::SinkOpts {
                lines: a.lines,
                port: a.port,
                pki_dir: a.pki_dir.clone(),
                port_file: a.port_file.clone(),
                timeout: Duration::from_secs(a.timeout_secs),
            })
        }
        Cmd::Gen { lines, out, seed } => {
            let bytes = gen::write_file(out, *seed, *lines)?;
            println!("gen: {lines} lines, {bytes} bytes in {}", out.display());
            return Ok(());
        }
        _ => reexec_from_deps()?,
    }
    println!("{}", common::machine());
    let gate = LoadGate {
        max_load: cli.max_load,
        max_wait: Duration::from_secs(cli.max_wait_secs),
        poll: Duration::from_secs(cli.load_poll_secs.max(1)),
    };
    let batch = cli.agent_batch.join("\n");
    let idle: IdleArgs = defaults();
    let cpu: CpuArgs = defaults();
    match &cli.cmd {
        Cmd::E2e(a) => e2e::run(&e2e_opts(&cli, a, &batch)?, &gate),
        Cmd::Backlog { lines } => backlog::run(
            &backlog::BacklogOpts {
                lines: *lines,
                reps: cli.reps,
                work: cli.work.clone(),
                batch: batch.clone(),
                commit_ms: cli.commit_ms,
                collector_set: cli.collector_set.clone(),
            },
            &gate,
        ),
        Cmd::AgentIdle(a) => agent_load::idle(&load_opts(&cli, &batch, a, &cpu), &gate),
        Cmd::AgentCpu(a) => agent_load::cpu(&load_opts(&cli, &batch, &idle, a), &gate),
        Cmd::Ingest(a) => ingest::run(&ingest_opts(&cli, a), &gate),
        Cmd::Fleet(a) => fleet::run(
            &fleet::FleetOpts {
                agents: a.agents,
                rate: a.rate,
                interval_secs: a.interval_secs,
                secs: a.secs,
                work: cli.work.clone(),
                commit_ms: cli.commit_ms,
                collector_set: cli.collector_set.clone(),
            },
            &gate,
        ),
        Cmd::All => {
            e2e::run(&e2e_opts(&cli, &defaults(), &batch)?, &gate)?;
            let o = load_opts(&cli, &batch, &idle, &cpu);
            agent_load::idle(&o, &gate)?;
            agent_load::cpu(&o, &gate)?;
            ingest::run(&ingest_opts(&cli, &defaults()), &gate)
        }
        Cmd::TlsSink(_) | Cmd::Gen { .. } => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigie-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
