//! Agent statistics: what an agent reports about itself.
//!
//! The agent sends its counters every `collector.stats_interval_secs` with
//! `POST /v1/stats` (mTLS; the agent id comes from the certificate), body
//! [`AgentStats`] as JSON, answered `204`. The collector keeps the latest
//! report per agent and shows it as `stats` in `GET /api/v1/agents`. The
//! same counters are on the agent's optional local Prometheus endpoint.
//!
//! Counters are totals since the agent process started (`started_unix_secs`
//! tells a restart); gauges (`spool_*`) are current values. Unknown fields
//! are ignored on both sides so either can add counters first.

use serde::{Deserialize, Serialize};

/// `POST /v1/stats` path.
pub const STATS_PATH: &str = "/v1/stats";

/// Events dropped, by reason. Every drop is also shipped as a data-loss
/// event (`event.action:data-loss`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drops {
    /// Batches the collector refused for good (`413`, malformed).
    #[serde(default)]
    pub refused: u64,
    /// The spool was full with `when_full = "drop_oldest"`.
    #[serde(default)]
    pub spool_full: u64,
    /// A source's rate limit in drop mode.
    #[serde(default)]
    pub rate_limit: u64,
}

/// One agent's report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStats {
    /// The agent's version.
    #[serde(default)]
    pub version: String,
    /// When the agent process started (Unix seconds).
    #[serde(default)]
    pub started_unix_secs: u64,
    /// Lines (and journald entries) read from sources.
    #[serde(default)]
    pub lines_read: u64,
    /// Bytes read from files.
    #[serde(default)]
    pub bytes_read: u64,
    /// Events acknowledged by the collector.
    #[serde(default)]
    pub events_shipped: u64,
    /// Batches acknowledged by the collector.
    #[serde(default)]
    pub batches_shipped: u64,
    /// Compressed bytes acknowledged by the collector.
    #[serde(default)]
    pub bytes_sent: u64,
    /// Send attempts that failed and were retried.
    #[serde(default)]
    pub retries: u64,
    /// Batches the collector already had (sent again after a lost answer).
    #[serde(default)]
    pub duplicates: u64,
    /// Lines the collector sent to its dead-letter store.
    #[serde(default)]
    pub events_rejected: u64,
    /// Events dropped, by reason.
    #[serde(default)]
    pub dropped: Drops,
    /// Bytes of the spool's segment files now.
    #[serde(default)]
    pub spool_bytes: u64,
    /// Events waiting in the spool now.
    #[serde(default)]
    pub spool_events: u64,
    /// Last acknowledgement from the collector (Unix seconds; 0: none yet).
    #[serde(default)]
    pub last_ack_unix_secs: u64,
    /// Edge detection: the rule pack in use and what it did.
    #[serde(default)]
    pub detect: DetectStats,
    /// The operating system and architecture (e.g. `Debian GNU/Linux 12 (bookworm) x86_64`).
    #[serde(default)]
    pub os: String,
    /// The spool's `max_bytes` (0: no spool).
    #[serde(default)]
    pub spool_max_bytes: u64,
    /// Counters per source, in configuration order.
    #[serde(default)]
    pub sources: Vec<SourceStats>,
    /// Version of the central source configuration in use (empty: none).
    #[serde(default)]
    pub config_version: String,
    /// Why the latest central configuration was refused (empty: it was not).
    #[serde(default)]
    pub config_error: String,
}

/// One source's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStats {
    /// The source's name.
    pub name: String,
    /// Its type (`file`, `journald`).
    #[serde(default)]
    pub kind: String,
    /// Files tracked now (file sources).
    #[serde(default)]
    pub files: u64,
    /// Lines read.
    #[serde(default)]
    pub lines_read: u64,
    /// Bytes read.
    #[serde(default)]
    pub bytes_read: u64,
    /// Lines cut at `max_line_bytes`.
    #[serde(default)]
    pub lines_truncated: u64,
    /// Failed stat, open or read attempts.
    #[serde(default)]
    pub read_errors: u64,
    /// Bytes in the source's files not read yet (a gauge).
    #[serde(default)]
    pub lag_bytes: u64,
}

/// What edge detection did since the agent started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectStats {
    /// Version of the rule pack in use (empty: detection off).
    #[serde(default)]
    pub rulepack: String,
    /// Detection rules loaded.
    #[serde(default)]
    pub rules: u64,
    /// Events evaluated.
    #[serde(default)]
    pub events_evaluated: u64,
    /// Events tagged with at least one detection.
    #[serde(default)]
    pub events_tagged: u64,
    /// Events dropped by filter rules, per rule id. Deliberate noise filtering: counted
    /// here, not reported as data loss.
    #[serde(default)]
    pub filtered: std::collections::BTreeMap<String, u64>,
    /// Rule-pack reloads that failed (the previous pack stayed in use).
    #[serde(default)]
    pub reload_failures: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_missing_fields_are_tolerated() {
        let s: AgentStats =
            serde_json::from_str(r#"{"lines_read":5,"dropped":{"spool_full":2},"future":1}"#)
                .expect("parse");
        assert_eq!(s.lines_read, 5);
        assert_eq!(s.dropped.spool_full, 2);
        assert_eq!(s.events_shipped, 0);
    }
}
