//! `vigie-agent`: the command line.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
//! Errors are one line on stderr saying what is wrong and what to do.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use vigie_agent::config::{system_hostname, AgentConfig, SourceKind};
use vigie_agent::enroll::{self, IdentityFiles};

#[derive(Parser)]
#[command(
    name = "vigie-agent",
    version,
    about = "Vigie agent: tails logs and journald, ships them to the collector over mTLS"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, global = true, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Enroll with a collector: generate a key, send a CSR with the token, store the certificate.
    Enroll {
        /// The collector's URL, e.g. https://collector.example:8443
        #[arg(long)]
        collector: String,
        /// The collector's CA certificate (the only one trusted).
        #[arg(long)]
        ca: PathBuf,
        /// The enrollment token from `vigie-collector token create` (or @FILE to read it from a file).
        #[arg(long)]
        token: String,
        /// Where to store the key and certificate.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Run the agent.
    Run {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a configuration file and report what the agent would do.
    Check {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check and test Sigma rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Load rule files or directories and print the load report (exit 1 if any is rejected).
    Check {
        /// Rule files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Field-mapping files or directories (e.g. rules/mappings).
        #[arg(long)]
        mappings: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run rules on events and print one JSON object per match.
    Test {
        /// Rule files or directories.
        #[arg(long, required = true, num_args = 1..)]
        rules: Vec<PathBuf>,
        /// Events: NDJSON, or raw lines with --format.
        #[arg(long)]
        events: PathBuf,
        /// Read raw lines with this format: a codec (json, syslog, plain) or a parser
        /// (linux_auth, teleport, nginx_access, ...).
        #[arg(long)]
        format: Option<String>,
        /// Field-mapping files or directories (e.g. rules/mappings).
        #[arg(long)]
        mappings: Vec<PathBuf>,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("vigie-agent: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, (u8, anyhow::Error)> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(|e| (1, e.into()))
}

fn run(command: Command) -> Result<(), (u8, anyhow::Error)> {
    match command {
        Command::Enroll {
            collector,
            ca,
            token,
            data_dir,
        } => {
            let token = match token.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| (2, anyhow::anyhow!("cannot read the token file {path}: {e}")))?,
                None => token,
            };
            let id = runtime()?
                .block_on(enroll::enroll(
                    &collector,
                    &ca,
                    &token,
                    &data_dir,
                    &system_hostname(),
                ))
                .map_err(|e| (1, e))?;
            println!(
                "enrolled as {} (group {}), certificate valid until {}",
                id.agent_id, id.group, id.not_after
            );
            Ok(())
        }
        Command::Run { config } => {
            let cfg = AgentConfig::load(&config).map_err(|e| (2, e.into()))?;
            IdentityFiles::in_dir(&cfg.data_dir)
                .load()
                .map_err(|e| (2, e))?;
            let rt = runtime()?;
            rt.block_on(async move {
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    wait_for_signal().await;
                    vigie_agent::sd_notify::notify("STOPPING=1");
                    let _ = stop_tx.send(true);
                });
                let mut cfg = cfg;
                loop {
                    with_saved_central_sources(&mut cfg);
                    match vigie_agent::run::run(cfg, stop_rx.clone()).await? {
                        vigie_agent::run::RunEnd::Stopped => return Ok(()),
                        vigie_agent::run::RunEnd::Reload => {
                            // The file may have changed too: read it again.
                            cfg = AgentConfig::load(&config)?;
                        }
                    }
                }
            })
            .map_err(|e| (1, e))
        }
        Command::Check { config } => {
            let cfg = AgentConfig::load(&config).map_err(|e| (2, e.into()))?;
            println!("{}: configuration is valid", config.display());
            println!(
                "  collector: {} (CA {})",
                cfg.collector.url,
                cfg.collector.ca_file.display()
            );
            if !cfg.collector.ca_file.exists() {
                println!("  warning: the CA file does not exist yet");
            }
            match IdentityFiles::in_dir(&cfg.data_dir).load() {
                Ok((id, _, _)) => println!(
                    "  enrolled as {} (certificate valid until {})",
                    id.agent_id, id.not_after
                ),
                Err(_) => println!(
                    "  not enrolled yet: run `vigie-agent enroll` before `vigie-agent run`"
                ),
            }
            for s in &cfg.sources {
                match &s.kind {
                    SourceKind::File(o) => println!(
                        "  source {:?}: file, format {}, include {:?}",
                        s.name,
                        s.format.name(),
                        o.include
                    ),
                    SourceKind::Journald(o) => {
                        println!("  source {:?}: journald, units {:?}", s.name, o.units)
                    }
                }
            }
            if cfg.collector.central_sources {
                match vigie_agent::central_config::load_saved(&cfg.data_dir) {
                    Some(doc) => println!(
                        "  central sources: from the collector (saved version {})",
                        doc.version
                    ),
                    None => println!("  central sources: from the collector (none received yet)"),
                }
            }
            if cfg.detect.is_on() && !cfg.detect.enabled() {
                println!(
                    "  detect: rules from the collector (GET /v1/rulepack, every {} s)",
                    cfg.detect.reload_interval_secs
                );
            }
            if cfg.detect.enabled() {
                let (set, report) =
                    vigie_agent::detect::load_pack(&cfg.detect).map_err(|e| (2, e))?;
                println!(
                    "  detect: rule pack {} ({} loaded, {} rejected)",
                    set.version(),
                    report.loaded,
                    report.rejected.len()
                );
                for r in &report.rejected {
                    println!(
                        "  warning: rule rejected: {} ({}): {}",
                        r.file.display(),
                        r.id.as_deref().unwrap_or("no id"),
                        r.reason.replace('\n', " ")
                    );
                }
            }
            Ok(())
        }
        Command::Rules { command } => rules(command),
    }
}

fn rules(command: RulesCommand) -> Result<(), (u8, anyhow::Error)> {
    use vigie_agent::rules_cli;
    match command {
        RulesCommand::Check {
            paths,
            mappings,
            json,
        } => match rules_cli::check(&paths, &mappings, json) {
            Ok(true) => Ok(()),
            Ok(false) => Err((1, anyhow::anyhow!("some rules were rejected"))),
            Err(e) => Err((2, e)),
        },
        RulesCommand::Test {
            rules,
            events,
            format,
            mappings,
        } => {
            let format = format
                .map(|f| rules_cli::LineFormat::parse(&f))
                .transpose()
                .map_err(|e| (2, anyhow::anyhow!("--format: {e}")))?;
            rules_cli::test(&rules, &mappings, &events, format)
                .map(|_| ())
                .map_err(|e| (2, e))
        }
    }
}

/// Adds the last good central sources (see `vigie_agent::central_config`), when asked for.
fn with_saved_central_sources(cfg: &mut AgentConfig) {
    if !cfg.collector.central_sources {
        return;
    }
    let Some(doc) = vigie_agent::central_config::load_saved(&cfg.data_dir) else {
        return;
    };
    let checked = vigie_agent::central_config::check(&doc, &cfg.local_source_names())
        .and_then(|sources| cfg.add_central_sources(&doc.version, sources));
    match checked {
        Ok(()) => tracing::info!(version = %doc.version, "running the saved central sources"),
        Err(e) => {
            tracing::error!(version = %doc.version, error = %e, "the saved central sources no longer pass the checks; running the local sources only")
        }
    }
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
