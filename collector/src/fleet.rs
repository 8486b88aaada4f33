//! Fleet status: what `GET /api/v1/agents` says of each agent.
//!
//! An agent is `revoked` (its certificate is), else `offline` (not heard from
//! for `offline_after_secs`), else `degraded` when its latest report shows a
//! problem, else `online`. Degraded reasons, each a short sentence in
//! `status_reasons`:
//! - the spool is at least `spool_degraded_percent` full;
//! - events were dropped (a report showed more drops than the one before)
//!   within the last `drop_window_secs`;
//! - the sources lag: more than `lag_bytes_degraded` bytes written to the
//!   files and not read yet;
//! - the backlog is not moving: events wait in the spool and nothing was
//!   acknowledged for `stale_ack_secs`;
//! - the agent refused its group's central sources (`config_error`).
//!
//! `[fleet.sources]` also names each group's central sources file, served by
//! `GET /v1/config` ([`central_config`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vigie_wire::AgentStats;

use crate::db::AgentRow;

/// `[fleet]` in collector.toml.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// Silence after which an agent is offline.
    #[serde(default = "default_offline_after_secs")]
    pub offline_after_secs: u64,
    /// A spool this full (percent of its `max_bytes`) makes an agent degraded.
    #[serde(default = "default_spool_degraded_percent")]
    pub spool_degraded_percent: u8,
    /// Drops this recent make an agent degraded.
    #[serde(default = "default_drop_window_secs")]
    pub drop_window_secs: u64,
    /// Unread bytes in an agent's files above which it is lagging.
    #[serde(default = "default_lag_bytes_degraded")]
    pub lag_bytes_degraded: u64,
    /// Events in the spool and no acknowledgement for this long: lagging.
    #[serde(default = "default_stale_ack_secs")]
    pub stale_ack_secs: u64,
    /// Central sources per agent group (`[fleet.sources] <group> = "file.toml"`): a file of
    /// `[[sources]]` tables that the group's agents with `central_sources = true` pull from
    /// `GET /v1/config`. Read at each request, so an edit reaches the agents without a restart.
    #[serde(default)]
    pub sources: std::collections::BTreeMap<String, std::path::PathBuf>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            offline_after_secs: default_offline_after_secs(),
            spool_degraded_percent: default_spool_degraded_percent(),
            drop_window_secs: default_drop_window_secs(),
            lag_bytes_degraded: default_lag_bytes_degraded(),
            stale_ack_secs: default_stale_ack_secs(),
            sources: Default::default(),
        }
    }
}

fn default_offline_after_secs() -> u64 {
    300
}
fn default_spool_degraded_percent() -> u8 {
    80
}
fn default_drop_window_secs() -> u64 {
    900
}
fn default_lag_bytes_degraded() -> u64 {
    64 << 20
}
fn default_stale_ack_secs() -> u64 {
    300
}

/// An agent's status and, when degraded, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub status: &'static str,
    pub reasons: Vec<String>,
}

/// Whether `new` shows events dropped since `old` (the previous report of the
/// same agent; a restarted process starts its counters again).
pub fn dropped_since(old: Option<&AgentStats>, new: &AgentStats) -> bool {
    let total = |s: &AgentStats| {
        s.dropped
            .refused
            .saturating_add(s.dropped.spool_full)
            .saturating_add(s.dropped.rate_limit)
    };
    match old {
        Some(old) if old.started_unix_secs == new.started_unix_secs => total(new) > total(old),
        _ => total(new) > 0,
    }
}

/// The status of `agent` at `now`.
pub fn status(cfg: &FleetConfig, agent: &AgentRow, now: DateTime<Utc>) -> Status {
    let fixed = |status| Status {
        status,
        reasons: Vec::new(),
    };
    if agent.revoked {
        return fixed("revoked");
    }
    let silent = agent.last_seen.is_none_or(|t| {
        (now - t).num_seconds() > i64::try_from(cfg.offline_after_secs).unwrap_or(i64::MAX)
    });
    if silent {
        return fixed("offline");
    }
    let mut reasons = Vec::new();
    let stats: Option<AgentStats> = agent
        .stats
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    if let Some(s) = &stats {
        // No spool (max 0): nothing to fill.
        if let Some(percent) = s
            .spool_bytes
            .saturating_mul(100)
            .checked_div(s.spool_max_bytes)
        {
            if percent >= u64::from(cfg.spool_degraded_percent) {
                reasons.push(format!("spool {percent}% full"));
            }
        }
        let lag: u64 = s.sources.iter().map(|x| x.lag_bytes).sum();
        if lag > cfg.lag_bytes_degraded {
            reasons.push(format!("sources lagging: {lag} bytes not read yet"));
        }
        let ack_age = u64::try_from(now.timestamp())
            .unwrap_or(0)
            .saturating_sub(s.last_ack_unix_secs);
        if s.spool_events > 0 && ack_age > cfg.stale_ack_secs {
            reasons.push(format!(
                "{} events waiting, nothing acknowledged for {ack_age} s",
                s.spool_events
            ));
        }
    }
    if let Some(s) = stats.as_ref().filter(|s| !s.config_error.is_empty()) {
        reasons.push(format!("central configuration refused: {}", s.config_error));
    }
    if let Some(t) = agent.last_drop_at {
        if (now - t).num_seconds() <= i64::try_from(cfg.drop_window_secs).unwrap_or(i64::MAX) {
            let by = stats.map_or_else(String::new, |s| {
                format!(
                    " (since start: {} refused, {} spool full, {} rate limit)",
                    s.dropped.refused, s.dropped.spool_full, s.dropped.rate_limit
                )
            });
            reasons.push(format!("dropping events{by}"));
        }
    }
    if reasons.is_empty() {
        fixed("online")
    } else {
        Status {
            status: "degraded",
            reasons,
        }
    }
}

/// `GET /v1/config`'s document for `group`: `Ok(None)` when the group has no central sources.
/// The file is read at each call (capped); a document the collector's own checks refuse is
/// still served (the agents decide, and report it) but logged.
pub fn central_config(
    cfg: &FleetConfig,
    group: &str,
) -> Result<Option<vigie_wire::CentralConfig>, String> {
    let Some(path) = cfg.sources.get(group) else {
        return Ok(None);
    };
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > vigie_wire::MAX_CONFIG_BYTES as u64 {
        return Err(format!(
            "{} is larger than {} bytes",
            path.display(),
            vigie_wire::MAX_CONFIG_BYTES
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let version = vigie_wire::config_version(&text);
    // Checked once per version (every agent of the group asks every minute): a bad
    // document is logged once, not at each request.
    static CHECKED: std::sync::Mutex<std::collections::BTreeMap<String, String>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    if checked.get(group) != Some(&version) {
        if let Err(e) = vigie_agent::config::parse_sources_text(&text, path) {
            tracing::warn!(group, version = %version, error = %e, "central sources fail the agent checks; agents will refuse them");
        }
        checked.insert(group.to_owned(), version.clone());
    }
    Ok(Some(vigie_wire::CentralConfig {
        version,
        sources_toml: text,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use vigie_wire::{Drops, SourceStats};

    fn agent(stats: Option<AgentStats>, seen_ago: i64, now: DateTime<Utc>) -> AgentRow {
        AgentRow {
            id: "agt_1".into(),
            hostname: "h".into(),
            group: "default".into(),
            version: None,
            enrolled_at: now,
            last_seen: Some(now - chrono::Duration::seconds(seen_ago)),
            cert_serial: "40".into(),
            cert_not_after: now,
            revoked: false,
            stats: stats.map(|s| serde_json::to_value(s).unwrap()),
            stats_at: Some(now),
            last_drop_at: None,
        }
    }

    #[test]
    fn statuses_and_reasons() {
        let cfg = FleetConfig::default();
        let now = Utc::now();
        let healthy = AgentStats {
            spool_max_bytes: 1000,
            spool_bytes: 100,
            last_ack_unix_secs: now.timestamp() as u64,
            ..AgentStats::default()
        };
        assert_eq!(
            status(&cfg, &agent(Some(healthy.clone()), 10, now), now).status,
            "online"
        );
        assert_eq!(status(&cfg, &agent(None, 301, now), now).status, "offline");
        let mut revoked = agent(None, 1, now);
        revoked.revoked = true;
        assert_eq!(status(&cfg, &revoked, now).status, "revoked");

        let full = AgentStats {
            spool_bytes: 850,
            ..healthy.clone()
        };
        let s = status(&cfg, &agent(Some(full), 10, now), now);
        assert_eq!(
            (s.status, s.reasons),
            ("degraded", vec!["spool 85% full".to_string()])
        );

        let lagging = AgentStats {
            sources: vec![SourceStats {
                name: "app".into(),
                lag_bytes: 100 << 20,
                ..SourceStats::default()
            }],
            ..healthy.clone()
        };
        let s = status(&cfg, &agent(Some(lagging), 10, now), now);
        assert!(s.reasons[0].starts_with("sources lagging"), "{s:?}");

        let stuck = AgentStats {
            spool_events: 5000,
            last_ack_unix_secs: (now.timestamp() - 600) as u64,
            ..healthy.clone()
        };
        let s = status(&cfg, &agent(Some(stuck), 10, now), now);
        assert!(s.reasons[0].contains("5000 events waiting"), "{s:?}");

        let mut dropping = agent(Some(healthy.clone()), 10, now);
        dropping.last_drop_at = Some(now - chrono::Duration::seconds(60));
        assert_eq!(status(&cfg, &dropping, now).status, "degraded");
        dropping.last_drop_at = Some(now - chrono::Duration::seconds(3600));
        assert_eq!(
            status(&cfg, &dropping, now).status,
            "online",
            "an old drop is forgotten"
        );
    }

    #[test]
    fn drops_are_new_when_the_totals_grow_or_a_restarted_agent_has_any() {
        let with = |started, rate_limit| AgentStats {
            started_unix_secs: started,
            dropped: Drops {
                rate_limit,
                ..Drops::default()
            },
            ..AgentStats::default()
        };
        assert!(!dropped_since(None, &with(1, 0)));
        assert!(dropped_since(None, &with(1, 3)));
        assert!(!dropped_since(Some(&with(1, 3)), &with(1, 3)));
        assert!(dropped_since(Some(&with(1, 3)), &with(1, 4)));
        assert!(dropped_since(Some(&with(1, 3)), &with(2, 1)), "restarted");
        assert!(!dropped_since(Some(&with(1, 3)), &with(2, 0)));
    }
}
