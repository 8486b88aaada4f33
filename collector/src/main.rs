//! `vigie-collector`: the command line.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error. Errors
//! are one line on stderr saying what is wrong.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use vigie_collector::config::CollectorConfig;
use vigie_collector::db::Db;
use vigie_collector::{init, quickstart, server};

#[derive(Parser)]
#[command(
    name = "vigie-collector",
    version,
    about = "Vigie collector: enrolls agents, ingests and stores their events, serves the SOC's API"
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
    /// Create a data directory: config, CA, server certificate, admin API token.
    Init {
        /// The data directory to create.
        #[arg(long)]
        data_dir: PathBuf,
        /// Address and port of the TLS listener.
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// A DNS name or IP address the server certificate is valid for (repeatable;
        /// default: localhost, 127.0.0.1, ::1 and this machine's hostname).
        #[arg(long = "hostname")]
        hostnames: Vec<String>,
    },
    /// Run the collector.
    Serve {
        /// The configuration file (DATA_DIR/collector.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Enrollment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Issue a new server certificate from the collector's CA (replaces
    /// tls.cert_file and tls.key_file; restart the collector to use it).
    ServerCert {
        /// The configuration file (DATA_DIR/collector.toml).
        #[arg(long)]
        config: PathBuf,
        /// A DNS name or IP address the certificate is valid for (repeatable;
        /// default: localhost, 127.0.0.1, ::1 and this machine's hostname).
        #[arg(long = "hostname")]
        hostnames: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Enrolled agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// The demo: a collector and a local agent on loopback, replaying sample logs.
    Quickstart {
        /// Where to keep the demo's data (default: a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Replay the samples and exit instead of running until Ctrl-C.
        #[arg(long)]
        exit_after_replay: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new enrollment token on stdout.
    Create {
        /// The configuration file (DATA_DIR/collector.toml).
        #[arg(long)]
        config: PathBuf,
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it stays valid (e.g. 1h, 7d); default: enrollment.token_ttl_secs.
        #[arg(long)]
        ttl: Option<humantime::Duration>,
        /// The agent group enrolled agents join.
        #[arg(long, default_value = "default")]
        group: String,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Revoke an agent: its certificates are refused from now on (also by a
    /// running collector) and the CRL beside the CA is rewritten.
    Revoke {
        /// The configuration file (DATA_DIR/collector.toml).
        #[arg(long)]
        config: PathBuf,
        /// The agent id (`agt_…`, see GET /api/v1/agents).
        id: String,
    },
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A failure and the exit code it maps to.
enum Failure {
    Config(anyhow::Error),
    Runtime(anyhow::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own summary; keep its log to warnings unless asked.
    let default_level = match cli.command {
        Command::Quickstart { .. } => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("vigie-collector: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("vigie-collector: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load(path: &std::path::Path) -> Result<CollectorConfig, Failure> {
    CollectorConfig::load(path).map_err(|e| Failure::Config(e.into()))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Init {
            data_dir,
            listen,
            hostnames,
        } => {
            let hostnames = if hostnames.is_empty() {
                init::default_hostnames()
            } else {
                hostnames
            };
            let out = init::init(&init::InitOptions {
                data_dir,
                listen,
                hostnames,
                server_cert_days: 825,
            })
            .map_err(Failure::Config)?;
            println!("created {}", out.config_path.display());
            println!("CA certificate for agents: {}", out.ca_path.display());
            println!(
                "admin API token: stored in {}",
                out.config_path.with_file_name("admin.token").display()
            );
            println!(
                "next: vigie-collector serve --config {}",
                out.config_path.display()
            );
            Ok(())
        }
        Command::Serve { config } => {
            let cfg = load(&config)?;
            runtime()?
                .block_on(server::serve(cfg))
                .map_err(Failure::Runtime)
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    config,
                    uses,
                    ttl,
                    group,
                },
        } => {
            let cfg = load(&config)?;
            if uses == 0 {
                return Err(Failure::Config(anyhow::anyhow!(
                    "--uses must be at least 1"
                )));
            }
            let ttl = ttl
                .map(Into::into)
                .unwrap_or(std::time::Duration::from_secs(
                    cfg.enrollment.token_ttl_secs,
                ));
            let db = Db::open(&cfg.db_path()).map_err(|e| Failure::Runtime(e.into()))?;
            let token = db
                .create_enrollment_token(uses, Some(ttl), &group)
                .map_err(|e| Failure::Runtime(e.into()))?;
            println!("{token}");
            Ok(())
        }
        Command::ServerCert {
            config,
            hostnames,
            days,
        } => {
            let cfg = load(&config)?;
            let hostnames = if hostnames.is_empty() {
                init::default_hostnames()
            } else {
                hostnames
            };
            init::renew_server_cert(&cfg, &hostnames, days).map_err(Failure::Runtime)?;
            println!(
                "new server certificate for {} in {} (restart the collector to use it)",
                hostnames.join(", "),
                cfg.tls.cert_file.display()
            );
            Ok(())
        }
        Command::Agent {
            command: AgentCommand::Revoke { config, id },
        } => {
            let cfg = load(&config)?;
            let db = Db::open(&cfg.db_path()).map_err(|e| Failure::Runtime(e.into()))?;
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p).map_err(|e| {
                    Failure::Config(anyhow::anyhow!("cannot read {}: {e}", p.display()))
                })
            };
            let ca = vigie_wire::pki::CertifiedKey {
                cert_pem: read(&cfg.tls.ca_file)?,
                key_pem: read(&cfg.tls.ca_key_file)?,
            };
            match vigie_collector::revoke::revoke(&cfg, &db, &ca, &id, chrono::Utc::now()) {
                Ok(crl) => {
                    println!("revoked {id}; CRL written to {}", crl.display());
                    Ok(())
                }
                Err(e @ vigie_collector::revoke::RevokeError::UnknownAgent(_)) => {
                    Err(Failure::Config(e.into()))
                }
                Err(e) => Err(Failure::Runtime(e.into())),
            }
        }
        Command::Quickstart {
            dir,
            exit_after_replay,
        } => runtime()?
            .block_on(quickstart::run(dir, exit_after_replay))
            .map_err(Failure::Runtime),
    }
}
