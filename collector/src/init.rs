//! `vigie-collector init`: a new data directory.
//!
//! Creates, with tight modes, `DIR/collector.toml`, the CA and the server
//! certificate under `DIR/pki/`, the SQLite database, and an admin API token
//! in `DIR/admin.token` (0600; only its hash is stored in the database).
//! Refuses to overwrite an existing setup.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vigie_wire::pki;

use crate::db::Db;

/// What `init` needs to know.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Names and addresses the server certificate is valid for.
    pub hostnames: Vec<String>,
    pub server_cert_days: u32,
}

/// What `init` made.
#[derive(Debug, Clone)]
pub struct InitOutcome {
    pub config_path: PathBuf,
    pub ca_path: PathBuf,
    pub admin_token: String,
}

/// The names a server certificate gets when none are given.
pub fn default_hostnames() -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let h = vigie_agent::config::system_hostname();
    if !names.contains(&h) {
        names.push(h);
    }
    names
}

/// Writes a file that must not exist yet, with `mode`.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `path` atomically (temp file with `mode`, fsync, rename, fsync of
/// the directory), replacing what was there.
pub fn write_replace(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, contents, mode)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(())
}

/// Issues a new server certificate from the collector's CA for `hostnames`
/// and replaces `tls.cert_file` and `tls.key_file` (agents trust the CA, so
/// nothing changes for them). The running collector uses it after a restart.
pub fn renew_server_cert(
    cfg: &crate::config::CollectorConfig,
    hostnames: &[String],
    days: u32,
) -> Result<()> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let ca = pki::CertifiedKey {
        cert_pem: read(&cfg.tls.ca_file)?,
        key_pem: read(&cfg.tls.ca_key_file)?,
    };
    let server =
        pki::issue_server_cert(&ca, hostnames, days).context("issuing the server certificate")?;
    write_replace(&cfg.tls.key_file, server.key_pem.as_bytes(), 0o600)?;
    write_replace(&cfg.tls.cert_file, server.cert_pem.as_bytes(), 0o644)
}

/// Creates a new data directory.
pub fn init(opts: &InitOptions) -> Result<InitOutcome> {
    let dir = &opts.data_dir;
    let config_path = dir.join("collector.toml");
    if config_path.exists() || dir.join("pki").exists() || dir.join("vigie.db").exists() {
        bail!(
            "{} already holds a Vigie collector setup; refusing to overwrite it (use another --data-dir, or remove it first)",
            dir.display()
        );
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let pki_dir = dir.join("pki");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&pki_dir)
        .with_context(|| format!("cannot create {}", pki_dir.display()))?;

    let ca_name = opts
        .hostnames
        .first()
        .cloned()
        .unwrap_or_else(|| "collector".into());
    let ca = pki::create_ca(&ca_name).context("creating the CA")?;
    let server = pki::issue_server_cert(&ca, &opts.hostnames, opts.server_cert_days)
        .context("issuing the server certificate")?;
    let ca_path = pki_dir.join("ca.pem");
    write_new(&ca_path, ca.cert_pem.as_bytes(), 0o644)?;
    write_new(&pki_dir.join("ca.key"), ca.key_pem.as_bytes(), 0o600)?;
    write_new(
        &pki_dir.join("server.pem"),
        server.cert_pem.as_bytes(),
        0o644,
    )?;
    write_new(
        &pki_dir.join("server.key"),
        server.key_pem.as_bytes(),
        0o600,
    )?;

    let db = Db::open(&dir.join("vigie.db")).context("creating the database")?;
    let admin_token = format!("vga_{}", hex::encode(rand::random::<[u8; 24]>()));
    db.add_api_token("admin", &admin_token)
        .context("storing the admin token")?;
    write_new(
        &dir.join("admin.token"),
        format!("{admin_token}\n").as_bytes(),
        0o600,
    )?;

    let config = render_config(opts);
    write_new(&config_path, config.as_bytes(), 0o640)?;
    Ok(InitOutcome {
        config_path,
        ca_path,
        admin_token,
    })
}

fn render_config(opts: &InitOptions) -> String {
    format!(
        r#"# vigie-collector configuration, written by `vigie-collector init`.
# Relative paths are relative to this file's directory. Every key is documented in the README.

data_dir = "."
listen = "{listen}"

[tls]
ca_file = "pki/ca.pem"
ca_key_file = "pki/ca.key"
cert_file = "pki/server.pem"
key_file = "pki/server.key"

[storage]
retention_days = 30
writer_memory_bytes = 67108864
writer_threads = 2
commit_interval_ms = 500
commit_min_interval_ms = 100
commit_max_events = 100000

[ingest]
max_body_bytes = 16777216
max_decompressed_bytes = 67108864
max_batch_events = 50000
max_event_bytes = 1048576
agent_events_per_second = 5000
agent_burst_events = 100000
max_events_per_second = 60000
burst_events = 200000

[enrollment]
cert_validity_days = 30
token_ttl_secs = 604800

# Fleet status (GET /api/v1/agents) and central sources per agent group, pulled by
# agents with `central_sources = true` (a file of [[sources]] tables, as in agent.toml):
#[fleet]
#offline_after_secs = 300
#spool_degraded_percent = 80
#[fleet.sources]
#workstations = "/etc/vigie-collector/sources/workstations.toml"

# Per agent group: more rules, or rule ids left out, in that group's pack:
#[detection.groups.bastions]
#rules = ["/etc/vigie-collector/rules/bastions"]
#disabled = []

# Central detection: the rule pack the collector runs and serves to agents with
# `[detect] source = "collector"`. Packages install Vigie's rules in /usr/share/vigie/rules;
# from a source checkout, point at its rules/ folder.
#[detection]
#rules = ["/usr/share/vigie/rules/sigma", "/usr/share/vigie/rules/correlations"]
#mappings = ["/usr/share/vigie/rules/mappings"]

# Pull connectors (all keys: lib/connect/README.md), e.g. Okta's System Log:
#[[connectors]]
#name = "okta"
#type = "okta"
#base_url = "https://example.okta.com"
#token_env = "OKTA_API_TOKEN"
"#,
        listen = opts.listen
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::CollectorConfig;

    fn opts(dir: &Path) -> InitOptions {
        InitOptions {
            data_dir: dir.to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            hostnames: default_hostnames(),
            server_cert_days: 365,
        }
    }

    #[test]
    fn init_makes_a_loadable_setup_with_tight_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let out = init(&opts(&dir)).unwrap();
        let cfg = CollectorConfig::load(&out.config_path).unwrap();
        assert!(cfg.tls.ca_key_file.exists());
        // Every key is written out, with the default value.
        let defaults = crate::config::IngestConfig::default();
        assert_eq!(
            cfg.ingest.agent_events_per_second,
            defaults.agent_events_per_second
        );
        assert_eq!(cfg.ingest.agent_burst_events, defaults.agent_burst_events);
        assert_eq!(
            cfg.ingest.max_events_per_second,
            defaults.max_events_per_second
        );
        assert_eq!(cfg.ingest.burst_events, defaults.burst_events);
        let text = std::fs::read_to_string(&out.config_path).unwrap();
        assert!(text.contains("\nagent_events_per_second = 5000\n"));
        for (f, mode) in [
            ("pki/ca.key", 0o600),
            ("pki/server.key", 0o600),
            ("admin.token", 0o600),
        ] {
            let m = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode, "{f}");
        }
        let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
        assert_eq!(token.trim(), out.admin_token);
        let db = Db::open(&dir.join("vigie.db")).unwrap();
        assert!(db.check_api_token(&out.admin_token).unwrap().is_some());
    }

    #[test]
    fn init_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        init(&opts(tmp.path())).unwrap();
        let err = init(&opts(tmp.path())).unwrap_err().to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
    }
}
