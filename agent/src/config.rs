//! `agent.toml`: the agent's configuration.
//!
//! Parsed strictly (`deny_unknown_fields` everywhere), then validated into
//! [`AgentConfig`]. A source's type-specific keys are read by the source's own
//! options struct (file: `FileSourceOptions`, journald: `JournaldOptions`),
//! which also refuses unknown keys. Every error names the file, the line and
//! the key, and says what would be valid.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use vigie_parse::Codec;

use crate::detect::DetectSection;
use crate::ratelimit::{RateLimit, WhenLimited};
use crate::sources::file::FileSourceOptions;
use crate::sources::journald::JournaldOptions;
use crate::spool::SpoolConfig;
use crate::stats::MetricsSection;

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the key, the certificate, checkpoints and state live.
    pub data_dir: PathBuf,
    /// `host.name` of events that do not carry one (default: this machine's hostname).
    pub host_name: String,
    pub collector: CollectorSection,
    pub batch: BatchSection,
    /// `[spool]`, with `dir` resolved (default `<data_dir>/spool`).
    pub spool: SpoolConfig,
    /// `[metrics]`: the local Prometheus endpoint.
    pub metrics: MetricsSection,
    /// `[detect]`: edge detection (paths resolved).
    pub detect: DetectSection,
    /// The local sources, then the central ones (see [`AgentConfig::add_central_sources`]).
    pub sources: Vec<SourceConfig>,
    /// How many of `sources` are local.
    pub local_sources: usize,
    /// Version of the central sources added, if any.
    pub central_version: Option<String>,
}

/// `[collector]`: where to ship.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSection {
    /// The collector's URL, e.g. `https://collector.example:8443`.
    pub url: String,
    /// The CA certificate of the collector (the only one the agent trusts).
    pub ca_file: PathBuf,
    /// Time allowed for one batch request, in seconds.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// First retry delay after a failed send, in milliseconds (doubles up to `max_backoff_secs`, with jitter).
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest retry delay, in seconds.
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// How often the agent reports its counters to the collector, in seconds.
    #[serde(default = "default_stats_interval_secs")]
    pub stats_interval_secs: u64,
    /// Renew the client certificate this many seconds before it ends
    /// (default: at two thirds of its lifetime).
    #[serde(default)]
    pub renew_before_secs: Option<u64>,
    /// Also run the `[[sources]]` the collector holds for this agent's group
    /// (`GET /v1/config`), kept on disk once checked.
    #[serde(default)]
    pub central_sources: bool,
    /// How often the central sources are checked for a change, in seconds.
    #[serde(default = "default_config_interval_secs")]
    pub config_interval_secs: u64,
}

fn default_config_interval_secs() -> u64 {
    60
}

/// `[batch]`: how events are grouped before shipping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSection {
    /// Most events in one batch.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most bytes (NDJSON, before compression) in one batch.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Longest a non-empty batch waits for more events, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Gzip level, 1 (fast) to 9 (small).
    #[serde(default = "default_compression_level")]
    pub compression_level: u32,
    /// Batches sent concurrently (acknowledged out of order, checkpoints still advance in order).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

impl Default for BatchSection {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            timeout_ms: default_timeout_ms(),
            compression_level: default_compression_level(),
            max_in_flight: default_max_in_flight(),
        }
    }
}

fn default_request_timeout_secs() -> u64 {
    30
}
fn default_initial_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_secs() -> u64 {
    60
}
fn default_stats_interval_secs() -> u64 {
    30
}
fn default_max_events() -> usize {
    5000
}
fn default_max_bytes() -> usize {
    1 << 20
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_compression_level() -> u32 {
    1
}
fn default_max_in_flight() -> usize {
    // The collector acknowledges after a group commit: with 4 in flight a
    // backlog drained at ~33k events/s, with 8 at ~43k (vigie-bench backlog).
    8
}

/// How a source's lines become events (`format = "…"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// `json`, `syslog` or `plain`.
    Codec(Codec),
    /// A declarative parser by name (`linux_auth`, ... from `rules/parsers/`).
    Parser(String),
    /// `auditd`: audit.log records assembled into one event per audit serial.
    Auditd,
}

impl Format {
    /// The name used in configurations.
    pub fn name(&self) -> &str {
        match self {
            Format::Codec(c) => c.name(),
            Format::Parser(p) => p,
            Format::Auditd => "auditd",
        }
    }

    /// Reads a format name.
    pub fn parse(name: &str) -> Result<Format, String> {
        if let Ok(c) = Codec::from_str(name) {
            return Ok(Format::Codec(c));
        }
        if name == "auditd" {
            return Ok(Format::Auditd);
        }
        let registry = vigie_parse::Registry::shared();
        if registry.get(name).is_some() {
            return Ok(Format::Parser(name.to_owned()));
        }
        let mut names: Vec<String> = Codec::ALL.iter().map(|c| c.name().to_owned()).collect();
        names.push("auditd".into());
        names.extend(registry.names().into_iter().map(str::to_owned));
        Err(format!(
            "unknown format {name:?} (known: {})",
            names.join(", ")
        ))
    }
}

/// One `[[sources]]` entry, validated.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Unique name; it is also `vigie.source` on events and part of checkpoint keys.
    pub name: String,
    /// `event.dataset` given to events that the codec did not classify (default: the name).
    pub dataset: String,
    /// How lines are read: a codec, a parser, or the auditd assembler.
    pub format: Format,
    /// `logsource = {product = "…", category = "…", service = "…"}`: the Sigma logsource
    /// tags (`vigie.logsource.*`) given to events whose parser set none, so that edge rules
    /// are routed for sources read with a plain codec.
    pub logsource: Vec<(String, String)>,
    /// `max_events_per_second`, `burst_events`, `when_limited`.
    pub rate: Option<RateLimit>,
    pub kind: SourceKind,
}

/// The type-specific part of a source.
#[derive(Debug, Clone)]
pub enum SourceKind {
    File(FileSourceOptions),
    Journald(JournaldOptions),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: PathBuf,
    #[serde(default)]
    host_name: Option<String>,
    collector: CollectorSection,
    #[serde(default)]
    batch: BatchSection,
    #[serde(default)]
    spool: SpoolConfig,
    #[serde(default)]
    metrics: MetricsSection,
    #[serde(default)]
    detect: DetectSection,
    #[serde(default)]
    sources: Vec<toml::Table>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    At {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl AgentConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates configuration text; `path` is used in messages and to resolve
    /// relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::At {
            path: path.to_owned(),
            line: line_of(text, e.span().map(|s| s.start)),
            message: e.message().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut collector = raw.collector;
        if !collector.url.starts_with("https://") {
            return Err(invalid(format!(
                "collector.url must be an https:// URL, got {:?}",
                collector.url
            )));
        }
        if collector.stats_interval_secs == 0 {
            return Err(invalid("collector.stats_interval_secs must be > 0".into()));
        }
        if collector.ca_file.is_relative() {
            collector.ca_file = base.join(&collector.ca_file);
        }
        let b = &raw.batch;
        if b.max_events == 0 || b.max_bytes < 1024 || b.timeout_ms == 0 {
            return Err(invalid(
                "batch.max_events and batch.timeout_ms must be > 0, batch.max_bytes >= 1024".into(),
            ));
        }
        if !(1..=9).contains(&b.compression_level) {
            return Err(invalid(
                "batch.compression_level must be between 1 and 9".into(),
            ));
        }
        if !(1..=64).contains(&b.max_in_flight) {
            return Err(invalid(
                "batch.max_in_flight must be between 1 and 64".into(),
            ));
        }
        if collector.config_interval_secs == 0 {
            return Err(invalid("collector.config_interval_secs must be > 0".into()));
        }
        let sources = parse_source_tables(raw.sources, text, path)?;
        let data_dir = if raw.data_dir.is_relative() {
            base.join(&raw.data_dir)
        } else {
            raw.data_dir
        };
        let mut spool = raw.spool;
        spool.validate().map_err(&invalid)?;
        // A batch must fit in a segment, with room for a few.
        if spool.enabled && spool.segment_bytes < 2 * b.max_bytes as u64 {
            return Err(invalid(format!(
                "spool.segment_bytes ({}) must be at least twice batch.max_bytes ({})",
                spool.segment_bytes, b.max_bytes
            )));
        }
        spool.dir = Some(match spool.dir.take() {
            Some(d) if d.is_relative() => base.join(d),
            Some(d) => d,
            None => data_dir.join("spool"),
        });
        let mut detect = raw.detect;
        detect
            .validate()
            .map_err(|(key, message)| ConfigError::At {
                path: path.to_owned(),
                line: detect_line(text, key),
                message,
            })?;
        detect.resolve(base);
        Ok(AgentConfig {
            data_dir,
            host_name: raw
                .host_name
                .filter(|h| !h.is_empty())
                .unwrap_or_else(system_hostname),
            collector,
            batch: raw.batch,
            spool,
            metrics: raw.metrics,
            detect,
            local_sources: sources.len(),
            sources,
            central_version: None,
        })
    }
}

/// The `[[sources]]` of a document, checked one by one, names unique.
fn parse_source_tables(
    tables: Vec<toml::Table>,
    text: &str,
    path: &Path,
) -> Result<Vec<SourceConfig>, ConfigError> {
    let mut sources: Vec<SourceConfig> = Vec::new();
    for (i, table) in tables.into_iter().enumerate() {
        let s = parse_source(i, table).map_err(|message| ConfigError::At {
            path: path.to_owned(),
            line: source_line(text, i, &message),
            message,
        })?;
        if sources.iter().any(|o| o.name == s.name) {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: format!("two sources are named {:?}; names must be unique", s.name),
            });
        }
        sources.push(s);
    }
    Ok(sources)
}

/// A central source document: `[[sources]]` tables and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesDoc {
    #[serde(default)]
    sources: Vec<toml::Table>,
}

/// Checks a central source document (`[[sources]]` only, as in agent.toml);
/// `name` says where it came from in messages.
pub fn parse_sources_text(text: &str, name: &Path) -> Result<Vec<SourceConfig>, ConfigError> {
    let doc: SourcesDoc = toml::from_str(text).map_err(|e| ConfigError::At {
        path: name.to_owned(),
        line: line_of(text, e.span().map(|s| s.start)),
        message: e.message().to_owned(),
    })?;
    parse_source_tables(doc.sources, text, name)
}

impl AgentConfig {
    /// The names of the local sources.
    pub fn local_source_names(&self) -> Vec<String> {
        self.sources[..self.local_sources.min(self.sources.len())]
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// Adds central sources (of document `version`) to the local ones; a
    /// central source may not take a local source's name.
    pub fn add_central_sources(
        &mut self,
        version: &str,
        central: Vec<SourceConfig>,
    ) -> Result<(), String> {
        check_central_names(&self.local_source_names(), &central)?;
        self.sources.truncate(self.local_sources);
        self.sources.extend(central);
        self.central_version = Some(version.to_owned());
        Ok(())
    }
}

/// A central source may not take a local source's name.
pub fn check_central_names(local: &[String], central: &[SourceConfig]) -> Result<(), String> {
    match central.iter().find(|s| local.contains(&s.name)) {
        Some(s) => Err(format!(
            "central source {:?} has the name of a local source",
            s.name
        )),
        None => Ok(()),
    }
}

fn parse_source(i: usize, mut table: toml::Table) -> Result<SourceConfig, String> {
    let at = |key: &str| format!("sources[{i}].{key}");
    let take_str = |table: &mut toml::Table, key: &str| -> Result<Option<String>, String> {
        match table.remove(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!(
                "{}: expected a string, found {}",
                at(key),
                other.type_str()
            )),
        }
    };
    let name = take_str(&mut table, "name")?
        .ok_or_else(|| format!("{}: missing (every source needs a unique name)", at("name")))?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(format!(
            "{}: {name:?} must be non-empty and use only letters, digits, '_', '-', '.'",
            at("name")
        ));
    }
    let kind = take_str(&mut table, "type")?
        .ok_or_else(|| format!("{}: missing (\"file\" or \"journald\")", at("type")))?;
    let format = take_str(&mut table, "format")?;
    let dataset = take_str(&mut table, "dataset")?.unwrap_or_else(|| name.clone());
    let logsource = take_logsource(&mut table, &at)?;
    let rate = take_rate(&mut table, &at)?;
    let format = match &format {
        Some(f) => Format::parse(f).map_err(|e| format!("{}: {e}", at("format")))?,
        None if kind == "journald" => Format::Codec(Codec::Plain),
        None => {
            return Err(format!(
                "{}: missing (json, syslog, plain, auditd or a parser such as linux_auth)",
                at("format")
            ))
        }
    };
    if kind != "file" && format == Format::Auditd {
        return Err(format!(
            "{}: \"auditd\" reads /var/log/audit/audit.log: use it with type = \"file\"",
            at("format")
        ));
    }
    let kind = match kind.as_str() {
        "file" => {
            let opts: FileSourceOptions = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| format!("sources[{i}] ({name}): {}", e.message()))?;
            opts.validate()
                .map_err(|e| format!("sources[{i}] ({name}): {e}"))?;
            SourceKind::File(opts)
        }
        "journald" => {
            let opts: JournaldOptions = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| format!("sources[{i}] ({name}): {}", e.message()))?;
            SourceKind::Journald(opts)
        }
        other => {
            return Err(format!(
                "{}: unknown source type {other:?} (use \"file\" or \"journald\")",
                at("type")
            ))
        }
    };
    Ok(SourceConfig {
        name,
        dataset,
        logsource,
        format,
        rate,
        kind,
    })
}

/// The rate-limit keys of a source (common to every type).
fn take_logsource(
    table: &mut toml::Table,
    at: &dyn Fn(&str) -> String,
) -> Result<Vec<(String, String)>, String> {
    let Some(value) = table.remove("logsource") else {
        return Ok(Vec::new());
    };
    let toml::Value::Table(t) = value else {
        return Err(format!(
            "{}: expected a table like {{ product = \"linux\", service = \"sshd\" }}",
            at("logsource")
        ));
    };
    let mut out = Vec::new();
    for (k, v) in t {
        if !matches!(k.as_str(), "product" | "category" | "service") {
            return Err(format!(
                "{}: unknown key {k:?} (product, category or service)",
                at("logsource")
            ));
        }
        match v {
            toml::Value::String(s) if !s.trim().is_empty() => out.push((k, s)),
            _ => {
                return Err(format!(
                    "{}: expected a non-empty string",
                    at(&format!("logsource.{k}"))
                ))
            }
        }
    }
    Ok(out)
}

fn take_rate(
    table: &mut toml::Table,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<RateLimit>, String> {
    let mut take_u32 = |key: &str| -> Result<Option<u32>, String> {
        match table.remove(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) => u32::try_from(n)
                .map(Some)
                .map_err(|_| format!("{}: must be between 0 and {}", at(key), u32::MAX)),
            Some(other) => Err(format!(
                "{}: expected an integer, found {}",
                at(key),
                other.type_str()
            )),
        }
    };
    let rate = take_u32("max_events_per_second")?.unwrap_or(0);
    let burst = take_u32("burst_events")?;
    let when_limited = match table.remove("when_limited") {
        None => WhenLimited::default(),
        Some(toml::Value::String(s)) => match s.as_str() {
            "block" => WhenLimited::Block,
            "drop" => WhenLimited::Drop,
            other => {
                return Err(format!(
                    "{}: unknown value {other:?} (use \"block\" or \"drop\")",
                    at("when_limited")
                ))
            }
        },
        Some(other) => {
            return Err(format!(
                "{}: expected a string, found {}",
                at("when_limited"),
                other.type_str()
            ))
        }
    };
    let Some(events_per_second) = NonZeroU32::new(rate) else {
        if burst.is_some() {
            return Err(format!(
                "{}: needs max_events_per_second",
                at("burst_events")
            ));
        }
        return Ok(None);
    };
    // Default burst: one second's worth.
    let burst = NonZeroU32::new(burst.unwrap_or(rate))
        .ok_or_else(|| format!("{}: must be > 0", at("burst_events")))?;
    Ok(Some(RateLimit {
        events_per_second,
        burst,
        when_limited,
    }))
}

/// The line of the key an error message names within the `i`-th `[[sources]]`
/// entry, else the line of that entry's header.
fn source_line(text: &str, i: usize, message: &str) -> usize {
    let headers: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[sources]]"))
        .map(|(n, _)| n)
        .collect();
    let Some(&start) = headers.get(i) else {
        return 0;
    };
    let end = headers.get(i + 1).copied().unwrap_or(usize::MAX);
    let key = message
        .split('`')
        .nth(1)
        .or_else(|| {
            message
                .split_once('.')
                .and_then(|(_, r)| r.split(':').next())
        })
        .unwrap_or("");
    if !key.is_empty() {
        for (n, l) in text
            .lines()
            .enumerate()
            .skip(start)
            .take(end.saturating_sub(start))
        {
            let t = l.trim_start();
            if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
                return n + 1;
            }
        }
    }
    start + 1
}

/// The line of `key` in the `[detect]` table (or of its `[detect.key]` table), else of the
/// `[detect]` header; 0 when there is none.
fn detect_line(text: &str, key: &str) -> usize {
    let sub = format!("[detect.{key}]");
    let mut header = 0;
    let mut inside = false;
    for (n, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            if t == sub {
                return n + 1;
            }
            inside = t == "[detect]";
            if inside {
                header = n + 1;
            }
        } else if inside
            && t.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        {
            return n + 1;
        }
    }
    header
}

/// The 1-based line of a byte offset.
pub fn line_of(text: &str, offset: Option<usize>) -> usize {
    match offset {
        Some(o) => {
            text.as_bytes()[..o.min(text.len())]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1
        }
        None => 0,
    }
}

/// This machine's hostname, or "localhost".
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
data_dir = "/var/lib/vigie-agent"

[collector]
url = "https://collector.example:8443"
ca_file = "/etc/vigie-agent/ca.pem"

[[sources]]
name = "auth"
type = "file"
include = ["/var/log/auth.log*"]
exclude = ["*.gz"]
format = "syslog"
read_from = "beginning"

[[sources]]
name = "journal"
type = "journald"
"#;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(text, Path::new("/etc/vigie-agent/agent.toml"))
    }

    #[test]
    fn the_documented_shape_loads() {
        let cfg = parse(GOOD).unwrap();
        assert_eq!(cfg.sources.len(), 2);
        assert_eq!(cfg.sources[0].format, Format::Codec(Codec::Syslog));
        assert_eq!(cfg.sources[0].dataset, "auth");
        assert!(matches!(cfg.sources[1].kind, SourceKind::Journald(_)));
        assert_eq!(cfg.batch.max_events, 5000);
    }

    #[test]
    fn rate_limits_spool_and_metrics_are_read_and_checked() {
        let text = GOOD
            .replace(
                "read_from = \"beginning\"",
                "read_from = \"beginning\"\nmax_events_per_second = 200\nwhen_limited = \"drop\"",
            )
            .replacen(
                "[collector]",
                "[spool]\nwhen_full = \"drop_oldest\"\n\n[metrics]\nenabled = true\n\n[collector]",
                1,
            );
        let cfg = parse(&text).unwrap();
        let rate = cfg.sources[0].rate.expect("rate limit");
        assert_eq!(rate.events_per_second.get(), 200);
        assert_eq!(rate.burst.get(), 200, "default burst: one second");
        assert_eq!(rate.when_limited, WhenLimited::Drop);
        assert!(cfg.sources[1].rate.is_none());
        assert_eq!(cfg.spool.when_full, crate::spool::WhenFull::DropOldest);
        assert_eq!(
            cfg.spool.dir.as_deref(),
            Some(Path::new("/var/lib/vigie-agent/spool"))
        );
        assert!(cfg.metrics.enabled);
        assert_eq!(cfg.metrics.listen.to_string(), "127.0.0.1:9464");

        let bad = GOOD.replace(
            "read_from = \"beginning\"",
            "read_from = \"beginning\"\nburst_events = 5",
        );
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("sources[0].burst_events: needs max_events_per_second"),
            "{err}"
        );
        let bad = GOOD.replace(
            "read_from = \"beginning\"",
            "read_from = \"beginning\"\nmax_events_per_second = 5\nwhen_limited = \"slow\"",
        );
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("when_limited"), "{err}");
    }

    #[test]
    fn unknown_top_level_key_names_line_and_key() {
        let text = GOOD.replace("[collector]", "colector_url = 1\n[collector]");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("agent.toml:4:"), "{err}");
        assert!(err.contains("colector_url"), "{err}");
    }

    #[test]
    fn unknown_source_key_names_line_and_key() {
        let text = GOOD.replace("read_from = \"beginning\"", "read_fom = \"beginning\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("read_fom"), "{err}");
        assert!(err.contains("agent.toml:14:"), "{err}");
    }

    #[test]
    fn logsource_tags_are_read_and_checked() {
        let ok = parse(&GOOD.replace(
            "format = \"syslog\"",
            "format = \"json\"\nlogsource = { product = \"teleport\", service = \"audit\" }",
        ))
        .unwrap();
        assert_eq!(
            ok.sources[0].logsource,
            [
                ("product".into(), "teleport".into()),
                ("service".into(), "audit".into())
            ]
        );
        let err = parse(&GOOD.replace(
            "format = \"syslog\"",
            "format = \"json\"\nlogsource = { vendor = \"x\" }",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("sources[0].logsource") && err.contains("vendor"),
            "{err}"
        );
    }

    #[test]
    fn parsers_and_auditd_are_formats() {
        let auth = parse(&GOOD.replace("format = \"syslog\"", "format = \"linux_auth\"")).unwrap();
        assert_eq!(auth.sources[0].format, Format::Parser("linux_auth".into()));
        let audit = parse(&GOOD.replace("format = \"syslog\"", "format = \"auditd\"")).unwrap();
        assert_eq!(audit.sources[0].format, Format::Auditd);
        let err = parse(&GOOD.replace("format = \"syslog\"", "format = \"sislog\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("linux_auth") && err.contains("auditd"),
            "{err}"
        );
    }

    #[test]
    fn unknown_format_lists_valid_ones() {
        let text = GOOD.replace("format = \"syslog\"", "format = \"sislog\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("sources[0].format"), "{err}");
        assert!(err.contains("agent.toml:13:"), "{err}");
    }

    #[test]
    fn bad_value_type_is_reported() {
        let text = GOOD.replace("url = \"https://collector.example:8443\"", "url = 8443");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("agent.toml:5:"), "{err}");
    }

    #[test]
    fn plain_http_is_refused() {
        let text = GOOD.replace("https://", "http://");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("https://"), "{err}");
    }

    #[test]
    fn the_packaged_config_is_valid() {
        let cfg = parse(include_str!("../../packaging/agent.toml")).unwrap();
        assert_eq!(cfg.sources.len(), 3);
    }

    #[test]
    fn detect_source_collector_takes_no_local_rules() {
        let collector = GOOD.replacen(
            "[collector]",
            "[detect]\nsource = \"collector\"\ndrop_rules = [\"noisy\"]\n\n[collector]",
            1,
        );
        let cfg = parse(&collector).unwrap();
        assert_eq!(cfg.detect.source, crate::detect::PackSource::Collector);
        assert!(cfg.detect.is_on() && !cfg.detect.enabled());
        assert_eq!(cfg.detect.reload_interval_secs, 10);
        assert_eq!(cfg.detect.drop_rules, ["noisy"]);
        let files = parse(&GOOD.replacen(
            "[collector]",
            "[detect]\nrules = [\"rules\"]\n\n[collector]",
            1,
        ))
        .unwrap();
        assert_eq!(files.detect.source, crate::detect::PackSource::Files);
        assert!(files.detect.enabled());

        let err = parse(&collector.replace(
            "drop_rules = [\"noisy\"]",
            "drop_rules = []\nrules = [\"/etc/vigie-agent/rules\"]",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("agent.toml:7:"), "{err}");
        assert!(
            err.contains("detect.rules must be empty") && err.contains("source = \"collector\""),
            "{err}"
        );
        let err = parse(&collector.replace(
            "drop_rules = [\"noisy\"]",
            "[detect.placeholders]\nadmins = [\"root\"]",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("agent.toml:6:") && err.contains("detect.placeholders"),
            "{err}"
        );
        let err = parse(&collector.replace("\"collector\"", "\"collecter\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("agent.toml:5:") && err.contains("collecter"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let text = GOOD.replace("name = \"journal\"", "name = \"auth\"");
        assert!(parse(&text).unwrap_err().to_string().contains("unique"));
    }
}
