//! The agent's counters: reported to the collector, and served locally.
//!
//! [`StatsSources`] gathers the counters of the pipeline, the shipper, the
//! file tailers and the spool into one [`AgentStats`] (the wire contract in
//! `vigie_wire::stats`). [`report`] sends it to the collector every
//! `collector.stats_interval_secs` (`POST /v1/stats`), so the fleet API shows
//! each agent's drops, backlog and last acknowledgement; [`serve`] answers
//! any `GET` on `[metrics] listen` (loopback by default, off unless
//! `enabled`) with the same counters in Prometheus text format.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde::Deserialize;
use tokio::sync::watch;
use vigie_wire::{AgentStats, Drops, SourceStats, STATS_PATH};

use crate::client::CollectorClient;
use crate::shipper::ShipStats;
use crate::sources::file::TailerStatsHandle;
use crate::spooler::Shared;

/// `[metrics]`: the local Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve the counters over HTTP (no TLS, no authentication: keep it on
    /// loopback or a management network).
    #[serde(default)]
    pub enabled: bool,
    /// Address of the endpoint.
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            enabled: false,
            listen: default_metrics_listen(),
        }
    }
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

/// Where the counters come from.
#[derive(Clone)]
pub struct StatsSources {
    pub ship: Arc<ShipStats>,
    pub tailers: Vec<(Arc<str>, TailerStatsHandle)>,
    /// Journald sources and their records read.
    pub journald: Vec<(Arc<str>, Arc<std::sync::atomic::AtomicU64>)>,
    /// The spool's `max_bytes` (0: no spool).
    pub spool_max_bytes: u64,
    /// Central sources in use, and the latest refusal.
    pub config: Arc<std::sync::Mutex<crate::central_config::ConfigStatus>>,
    pub spool: Option<Arc<Shared>>,
    pub started_unix_secs: u64,
    /// Edge detection counters, when detection is on.
    pub detect: Option<Arc<std::sync::Mutex<vigie_wire::DetectStats>>>,
}

impl StatsSources {
    /// The counters now.
    pub fn snapshot(&self) -> AgentStats {
        let s = &self.ship;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let bytes_read = self.tailers.iter().map(|(_, t)| t.get().bytes_read).sum();
        let (spool_bytes, spool_events) = match &self.spool {
            Some(shared) => {
                let spool = shared.lock();
                (spool.disk_bytes(), spool.events())
            }
            None => (0, 0),
        };
        AgentStats {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_unix_secs: self.started_unix_secs,
            lines_read: get(&s.lines_read),
            bytes_read,
            events_shipped: get(&s.events_acked),
            batches_shipped: get(&s.batches_acked),
            bytes_sent: get(&s.bytes_sent),
            retries: get(&s.retries),
            duplicates: get(&s.duplicates),
            events_rejected: get(&s.events_rejected),
            dropped: Drops {
                refused: get(&s.events_dropped),
                spool_full: get(&s.spool_dropped_events),
                rate_limit: get(&s.rate_limited_events),
            },
            spool_bytes,
            spool_events,
            last_ack_unix_secs: get(&s.last_ack_unix_secs),
            detect: self
                .detect
                .as_ref()
                .map(|d| d.lock().unwrap_or_else(|e| e.into_inner()).clone())
                .unwrap_or_default(),
            config_version: self.config_status().version,
            config_error: self.config_status().error,
            os: os_description(),
            spool_max_bytes: self.spool_max_bytes,
            sources: self.per_source(),
        }
    }

    fn config_status(&self) -> crate::central_config::ConfigStatus {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn per_source(&self) -> Vec<SourceStats> {
        let files = self.tailers.iter().map(|(name, t)| {
            let t = t.get();
            SourceStats {
                name: name.to_string(),
                kind: "file".into(),
                files: t.files_watched,
                lines_read: t.lines_read,
                bytes_read: t.bytes_read,
                lines_truncated: t.lines_truncated,
                read_errors: t.read_errors,
                lag_bytes: t.lag_bytes,
            }
        });
        let journals = self.journald.iter().map(|(name, n)| SourceStats {
            name: name.to_string(),
            kind: "journald".into(),
            lines_read: n.load(Ordering::Relaxed),
            ..SourceStats::default()
        });
        files.chain(journals).collect()
    }
}

/// `PRETTY_NAME` of `/etc/os-release` (else the OS family) and the architecture.
pub fn os_description() -> String {
    static OS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OS.get_or_init(|| {
        let pretty = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim().trim_matches('"').to_owned())
                })
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| std::env::consts::OS.to_owned());
        format!("{pretty} {}", std::env::consts::ARCH)
    })
    .clone()
}

/// The counters in Prometheus text format.
pub fn prometheus(s: &AgentStats) -> String {
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "vigie_agent_lines_read_total",
        "counter",
        "Lines and journald entries read from sources.",
        s.lines_read,
    );
    metric(
        "vigie_agent_bytes_read_total",
        "counter",
        "Bytes read from files.",
        s.bytes_read,
    );
    metric(
        "vigie_agent_events_shipped_total",
        "counter",
        "Events acknowledged by the collector.",
        s.events_shipped,
    );
    metric(
        "vigie_agent_batches_shipped_total",
        "counter",
        "Batches acknowledged by the collector.",
        s.batches_shipped,
    );
    metric(
        "vigie_agent_bytes_sent_total",
        "counter",
        "Compressed bytes acknowledged by the collector.",
        s.bytes_sent,
    );
    metric(
        "vigie_agent_retries_total",
        "counter",
        "Sends that failed and were retried.",
        s.retries,
    );
    metric(
        "vigie_agent_duplicates_total",
        "counter",
        "Batches the collector already had.",
        s.duplicates,
    );
    metric(
        "vigie_agent_events_rejected_total",
        "counter",
        "Lines the collector sent to its dead-letter store.",
        s.events_rejected,
    );
    metric(
        "vigie_agent_spool_bytes",
        "gauge",
        "Bytes of the spool's segment files.",
        s.spool_bytes,
    );
    metric(
        "vigie_agent_spool_events",
        "gauge",
        "Events waiting in the spool.",
        s.spool_events,
    );
    metric(
        "vigie_agent_last_ack_timestamp_seconds",
        "gauge",
        "Last acknowledgement from the collector (Unix time; 0: none).",
        s.last_ack_unix_secs,
    );
    let _ = writeln!(
        out,
        "# HELP vigie_agent_dropped_events_total Events dropped, by reason (each also shipped as a data-loss event).\n# TYPE vigie_agent_dropped_events_total counter"
    );
    for (reason, n) in [
        ("refused", s.dropped.refused),
        ("spool_full", s.dropped.spool_full),
        ("rate_limit", s.dropped.rate_limit),
    ] {
        let _ = writeln!(
            out,
            "vigie_agent_dropped_events_total{{reason=\"{reason}\"}} {n}"
        );
    }
    out
}

/// Sends the counters to the collector every `interval` until `stop`.
pub async fn report(
    client: CollectorClient,
    sources: StatsSources,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let src = sources.clone();
        let Ok(snapshot) = tokio::task::spawn_blocking(move || src.snapshot()).await else {
            return;
        };
        let Ok(body) = serde_json::to_vec(&snapshot) else {
            continue;
        };
        let headers = [("content-type", "application/json".to_owned())];
        match client
            .send(Method::POST, STATS_PATH, &headers, Bytes::from(body))
            .await
        {
            Ok(a) if a.status.is_success() => warned = false,
            Ok(a) => {
                if !warned {
                    tracing::warn!(status = %a.status, "collector did not take the agent's stats");
                    warned = true;
                }
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "cannot send the agent's stats; will retry");
                    warned = true;
                }
            }
        }
    }
}

/// Serves the counters in Prometheus format on `listen` until `stop`.
pub async fn serve(
    listen: SocketAddr,
    sources: StatsSources,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(listen = %listen, "metrics endpoint listening");
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return Ok(()),
        };
        let src = sources.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let src = src.clone();
                    async move {
                        let (status, body) = if req.method() == Method::GET {
                            let text =
                                tokio::task::spawn_blocking(move || prometheus(&src.snapshot()))
                                    .await
                                    .unwrap_or_default();
                            (http::StatusCode::OK, text)
                        } else {
                            (http::StatusCode::METHOD_NOT_ALLOWED, String::new())
                        };
                        http::Response::builder()
                            .status(status)
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(http_body_util::Full::new(Bytes::from(body)))
                    }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_counter_and_drop_reason() {
        let s = AgentStats {
            lines_read: 10,
            dropped: Drops {
                refused: 1,
                spool_full: 2,
                rate_limit: 3,
            },
            spool_bytes: 4096,
            ..AgentStats::default()
        };
        let text = prometheus(&s);
        assert!(text.contains("vigie_agent_lines_read_total 10\n"));
        assert!(text.contains("vigie_agent_spool_bytes 4096\n"));
        assert!(text.contains("vigie_agent_dropped_events_total{reason=\"spool_full\"} 2\n"));
        assert!(text.contains("vigie_agent_dropped_events_total{reason=\"rate_limit\"} 3\n"));
        assert!(text.contains("# TYPE vigie_agent_spool_bytes gauge"));
    }
}
