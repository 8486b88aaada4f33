//! `collector.toml`: the collector's configuration.
//!
//! Parsed into a raw `deny_unknown_fields` struct (every field documented
//! here is user documentation), then validated. Relative paths are resolved
//! against the directory holding the config file, so a data directory made by
//! `vigie-collector init` can be moved as a whole. Errors name the file, the
//! key and the line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vigie_agent::config::line_of;

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Where events (`events/`), control data (`vigie.db`) and the PKI live.
    pub data_dir: PathBuf,
    /// The one TLS listener: agents (mTLS), enrollment, the API.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Certificates and keys.
    pub tls: TlsConfig,
    /// Event storage.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Limits applied to agent batches.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Enrollment of agents.
    #[serde(default)]
    pub enrollment: EnrollmentConfig,
    /// When agents show as offline or degraded (`GET /api/v1/agents`).
    #[serde(default)]
    pub fleet: crate::fleet::FleetConfig,
    /// Central detection: the rule pack (also served to agents) and correlations.
    #[serde(default)]
    pub detection: DetectionConfig,
    /// Pull connectors polling SaaS APIs (`[[connectors]]`, see `lib/connect/README.md`).
    #[serde(default, skip_serializing)]
    pub connectors: Vec<vigie_connect::ConnectorConfig>,
}

/// `[detection]`: the rule pack the collector runs and serves to agents (`GET /v1/rulepack`).
///
/// The pack is the rule files below plus the rules posted through `POST /api/v1/rules`,
/// minus the rules disabled through the API. Events that an agent already evaluated with the
/// same pack version are not evaluated again; the others (SaaS intakes, connectors, agents on
/// another pack or without detection) are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionConfig {
    /// Sigma rule files or directories (walked for `*.yml` / `*.yaml`).
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// Field-mapping files or directories (pySigma pipelines, as in `rules/mappings/`).
    #[serde(default)]
    pub mappings: Vec<PathBuf>,
    /// Values of `%name%` placeholders (rules with the `expand` modifier).
    #[serde(default)]
    pub placeholders: std::collections::BTreeMap<String, Vec<String>>,
    /// Correlation windows and state.
    #[serde(default)]
    pub correlation: CorrelationConfig,
    /// Per agent group (`[detection.groups.<group>]`): what that group's pack adds to and
    /// removes from the pack above. Agents of the group are served that pack, and their
    /// events are judged by it.
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, GroupPackConfig>,
}

/// `[detection.groups.<group>]`: one agent group's changes to the pack.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupPackConfig {
    /// More rule files or directories, for this group only.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// Rule ids left out for this group.
    #[serde(default)]
    pub disabled: Vec<String>,
}

/// `[detection.correlation]`: bounds of the correlation state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationConfig {
    /// How late (event time) a detection may arrive and still count in its window. Correlation
    /// alerts wait this long for stragglers.
    #[serde(default = "default_lateness_secs")]
    pub lateness_secs: u64,
    /// Detections waiting to be put in event-time order, at most.
    #[serde(default = "default_max_pending_events")]
    pub max_pending_events: usize,
    /// Window states (one per correlation and group-by value) kept, at most; beyond, the
    /// stalest are evicted and counted (`vigie_correlation_state_evicted_total`).
    #[serde(default = "default_max_state_entries")]
    pub max_state_entries: usize,
    /// Entries (events, values) kept per window state, at most; the oldest go first. It bounds
    /// the work per event (rsigma counts distinct values over the whole window): a threshold
    /// above it can never be reached.
    #[serde(default = "default_max_group_entries")]
    pub max_group_entries: usize,
    /// How often the correlation state is saved to the database (it is also saved at a clean
    /// stop), so a restart resumes the open windows.
    #[serde(default = "default_state_save_interval_secs")]
    pub state_save_interval_secs: u64,
}

fn default_lateness_secs() -> u64 {
    10
}
fn default_max_pending_events() -> usize {
    100_000
}
fn default_max_state_entries() -> usize {
    100_000
}
fn default_max_group_entries() -> usize {
    1_000
}
fn default_state_save_interval_secs() -> u64 {
    5
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        CorrelationConfig {
            lateness_secs: default_lateness_secs(),
            max_pending_events: default_max_pending_events(),
            max_state_entries: default_max_state_entries(),
            max_group_entries: default_max_group_entries(),
            state_save_interval_secs: default_state_save_interval_secs(),
        }
    }
}

/// Certificates and keys (PEM files).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The CA certificate: agents' client certificates must chain to it.
    pub ca_file: PathBuf,
    /// The CA private key, used to sign agent certificates at enrollment (mode 0600).
    pub ca_key_file: PathBuf,
    /// The server certificate presented to agents and API clients.
    pub cert_file: PathBuf,
    /// The server private key (mode 0600).
    pub key_file: PathBuf,
}

/// Event storage (tantivy, one index per UTC day).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Days of events kept; older day indexes are deleted whole. 0 keeps everything.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Memory of the index writer before it flushes a segment.
    #[serde(default = "default_writer_memory_bytes")]
    pub writer_memory_bytes: usize,
    /// Indexing threads.
    #[serde(default = "default_writer_threads")]
    pub writer_threads: usize,
    /// Longest wait before pending batches are committed (and acknowledged).
    /// Batches arriving together share one commit.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// Shortest gap between two commits. When no more batches are waiting,
    /// pending ones are committed at once (not after `commit_interval_ms`),
    /// but never sooner than this after the previous commit started: a busy
    /// collector makes few, large commits, a quiet one answers fast. Values
    /// above `commit_interval_ms` act as `commit_interval_ms`.
    #[serde(default = "default_commit_min_interval_ms")]
    pub commit_min_interval_ms: u64,
    /// Commit early once this many events are pending.
    #[serde(default = "default_commit_max_events")]
    pub commit_max_events: usize,
}

/// Limits applied to every agent batch: a batch over a size limit gets
/// `413`; an agent over its quota, or a collector over its global limit,
/// gets `429` with `Retry-After` (the agent sends the same batch again
/// later). Quotas count events: a batch costs its number of lines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest compressed body accepted.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest body after decompression (the gzip-bomb cap).
    #[serde(default = "default_max_decompressed_bytes")]
    pub max_decompressed_bytes: usize,
    /// Most events in one batch.
    #[serde(default = "default_max_batch_events")]
    pub max_batch_events: usize,
    /// Longest accepted event line; longer lines go to the dead-letter store.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Sustained events per second one agent may send (its quota); above
    /// it, and once its burst is spent, its batches get `429`
    /// (`over_quota`). 0: no per-agent limit.
    #[serde(default = "default_agent_events_per_second")]
    pub agent_events_per_second: u32,
    /// Events one agent may send at once above its sustained rate (after a
    /// quiet time, e.g. an agent catching up after an outage). At least
    /// `max_batch_events` when the per-agent limit is on: a batch larger
    /// than the burst could never be accepted.
    #[serde(default = "default_agent_burst_events")]
    pub agent_burst_events: u32,
    /// Sustained events per second accepted from all agents together;
    /// above it batches get `429` (`overloaded`). 0: no global limit.
    #[serde(default = "default_max_events_per_second")]
    pub max_events_per_second: u32,
    /// Events accepted at once above the global rate. At least
    /// `max_batch_events` when the global limit is on.
    #[serde(default = "default_burst_events")]
    pub burst_events: u32,
}

/// Enrollment of agents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentConfig {
    /// Lifetime of agent client certificates.
    #[serde(default = "default_cert_validity_days")]
    pub cert_validity_days: u32,
    /// Default lifetime of enrollment tokens (`token create --ttl` overrides).
    #[serde(default = "default_token_ttl_secs")]
    pub token_ttl_secs: u64,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_retention_days() -> u32 {
    30
}
fn default_writer_memory_bytes() -> usize {
    64 << 20
}
fn default_writer_threads() -> usize {
    2
}
fn default_commit_interval_ms() -> u64 {
    500
}
fn default_commit_min_interval_ms() -> u64 {
    100
}
fn default_commit_max_events() -> usize {
    100_000
}
fn default_max_body_bytes() -> usize {
    16 << 20
}
fn default_max_decompressed_bytes() -> usize {
    64 << 20
}
fn default_max_batch_events() -> usize {
    50_000
}
fn default_max_event_bytes() -> usize {
    1 << 20
}
fn default_agent_events_per_second() -> u32 {
    5_000
}
fn default_agent_burst_events() -> u32 {
    100_000
}
fn default_max_events_per_second() -> u32 {
    60_000
}
fn default_burst_events() -> u32 {
    200_000
}
fn default_cert_validity_days() -> u32 {
    30
}
fn default_token_ttl_secs() -> u64 {
    7 * 24 * 3600
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            retention_days: default_retention_days(),
            writer_memory_bytes: default_writer_memory_bytes(),
            writer_threads: default_writer_threads(),
            commit_interval_ms: default_commit_interval_ms(),
            commit_min_interval_ms: default_commit_min_interval_ms(),
            commit_max_events: default_commit_max_events(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            max_decompressed_bytes: default_max_decompressed_bytes(),
            max_batch_events: default_max_batch_events(),
            max_event_bytes: default_max_event_bytes(),
            agent_events_per_second: default_agent_events_per_second(),
            agent_burst_events: default_agent_burst_events(),
            max_events_per_second: default_max_events_per_second(),
            burst_events: default_burst_events(),
        }
    }
}

impl Default for EnrollmentConfig {
    fn default() -> Self {
        Self {
            cert_validity_days: default_cert_validity_days(),
            token_ttl_secs: default_token_ttl_secs(),
        }
    }
}

/// A configuration that cannot be used, with where and why (shared with the agent).
pub use vigie_agent::config::ConfigError;

impl IngestConfig {
    /// Checks that every batch allowed by `max_batch_events` fits in the
    /// bursts of the limits that are on.
    pub fn validate_quotas(&self) -> Result<(), String> {
        if self.max_batch_events == 0 {
            return Err("ingest.max_batch_events must be at least 1".into());
        }
        let checks = [
            (
                "agent_burst_events",
                "agent_events_per_second",
                self.agent_burst_events,
                self.agent_events_per_second,
            ),
            (
                "burst_events",
                "max_events_per_second",
                self.burst_events,
                self.max_events_per_second,
            ),
        ];
        for (burst_key, rate_key, burst, rate) in checks {
            if rate > 0 && (burst as usize) < self.max_batch_events {
                return Err(format!(
                    "ingest.{burst_key} ({burst}) must be at least ingest.max_batch_events ({max}): \
                     a batch costs one unit per event, and a batch larger than the burst could \
                     never be accepted (raise ingest.{burst_key}, lower ingest.max_batch_events, \
                     or set ingest.{rate_key} = 0 to turn this limit off)",
                    max = self.max_batch_events
                ));
            }
        }
        Ok(())
    }
}

impl CollectorConfig {
    /// Reads, parses and validates a config file; relative paths are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg: CollectorConfig = toml::from_str(&text).map_err(|e| ConfigError::At {
            path: path.to_owned(),
            line: line_of(&text, e.span().map(|s| s.start)),
            message: e.message().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve(base);
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(cfg)
    }

    fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        fix(&mut self.tls.ca_file);
        fix(&mut self.tls.ca_key_file);
        fix(&mut self.tls.cert_file);
        fix(&mut self.tls.key_file);
        for p in self
            .detection
            .rules
            .iter_mut()
            .chain(self.detection.mappings.iter_mut())
            .chain(
                self.detection
                    .groups
                    .values_mut()
                    .flat_map(|g| g.rules.iter_mut()),
            )
            .chain(self.fleet.sources.values_mut())
        {
            fix(p);
        }
    }

    fn validate(&self) -> Result<(), String> {
        let s = &self.storage;
        if s.writer_memory_bytes < 16 << 20 {
            return Err("storage.writer_memory_bytes must be at least 16777216 (16 MiB)".into());
        }
        if !(1..=8).contains(&s.writer_threads) {
            return Err("storage.writer_threads must be between 1 and 8".into());
        }
        if s.commit_interval_ms == 0 || s.commit_interval_ms > 60_000 {
            return Err("storage.commit_interval_ms must be between 1 and 60000".into());
        }
        let i = &self.ingest;
        if i.max_body_bytes == 0 || i.max_decompressed_bytes < i.max_body_bytes {
            return Err(
                "ingest.max_decompressed_bytes must be at least ingest.max_body_bytes (> 0)".into(),
            );
        }
        i.validate_quotas()?;
        let c = &self.detection.correlation;
        if c.max_state_entries == 0 || c.max_pending_events == 0 || c.max_group_entries == 0 {
            return Err("detection.correlation: max_state_entries, max_pending_events and max_group_entries must be at least 1".into());
        }
        if c.lateness_secs > 86_400 {
            return Err("detection.correlation.lateness_secs must be at most 86400 (a day)".into());
        }
        if self.enrollment.cert_validity_days == 0 {
            return Err("enrollment.cert_validity_days must be at least 1".into());
        }
        Ok(())
    }

    /// The directory of the event indexes.
    pub fn events_dir(&self) -> PathBuf {
        self.data_dir.join("events")
    }

    /// The SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("vigie.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("collector.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    const MINIMAL: &str = r#"
data_dir = "."
listen = "127.0.0.1:8443"
[tls]
ca_file = "pki/ca.pem"
ca_key_file = "pki/ca.key"
cert_file = "pki/server.pem"
key_file = "pki/server.key"
"#;

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CollectorConfig::load(&write(dir.path(), MINIMAL)).unwrap();
        assert_eq!(cfg.storage.retention_days, 30);
        assert_eq!(cfg.tls.ca_file, dir.path().join("pki/ca.pem"));
        assert_eq!(cfg.events_dir(), dir.path().join("./events"));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{MINIMAL}\n[storage]\nretention = 3\n");
        let err = CollectorConfig::load(&write(dir.path(), &text))
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention"), "{err}");
        assert!(err.contains(":11:"), "{err}");
    }

    #[test]
    fn quota_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CollectorConfig::load(&write(dir.path(), MINIMAL)).unwrap();
        let i = &cfg.ingest;
        assert_eq!(i.agent_events_per_second, 5_000);
        assert_eq!(i.agent_burst_events, 100_000);
        assert_eq!(i.max_events_per_second, 60_000);
        assert_eq!(i.burst_events, 200_000);
        assert!(i.agent_burst_events as usize >= i.max_batch_events);
    }

    #[test]
    fn burst_below_batch_size_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{MINIMAL}\n[ingest]\nagent_burst_events = 1000\n");
        let err = CollectorConfig::load(&write(dir.path(), &text))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingest.agent_burst_events (1000)"), "{err}");
        assert!(err.contains("ingest.max_batch_events (50000)"), "{err}");

        let text = format!("{MINIMAL}\n[ingest]\nmax_batch_events = 500\nburst_events = 499\n");
        let err = CollectorConfig::load(&write(dir.path(), &text))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingest.burst_events (499)"), "{err}");
        assert!(err.contains("max_events_per_second = 0"), "{err}");
    }

    #[test]
    fn a_limit_turned_off_ignores_its_burst() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{MINIMAL}\n[ingest]\nagent_events_per_second = 0\nagent_burst_events = 1\n\
             max_events_per_second = 0\nburst_events = 1\n"
        );
        let cfg = CollectorConfig::load(&write(dir.path(), &text)).unwrap();
        assert_eq!(cfg.ingest.agent_events_per_second, 0);
        assert_eq!(cfg.ingest.max_events_per_second, 0);
    }

    #[test]
    fn quota_keys_are_checked_for_type_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{MINIMAL}\n[ingest]\nagent_events_per_second = -1\n");
        let err = CollectorConfig::load(&write(dir.path(), &text))
            .unwrap_err()
            .to_string();
        assert!(err.contains(":11:"), "{err}");
        let text = format!("{MINIMAL}\n[ingest]\nagent_events_per_sec = 10\n");
        let err = CollectorConfig::load(&write(dir.path(), &text))
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent_events_per_sec"), "{err}");
    }

    #[test]
    fn invalid_value_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{MINIMAL}\n[storage]\nwriter_threads = 0\n");
        let err = CollectorConfig::load(&write(dir.path(), &text))
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.writer_threads"), "{err}");
    }
}
