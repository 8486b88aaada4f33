//! The collector's own counters, served at `GET /metrics` in the Prometheus
//! text format. One place: each ingest outcome is counted here and nowhere
//! else, so the numbers on `/metrics` and in the logs agree.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters (monotonic unless named `_pending`).
#[derive(Debug, Default)]
pub struct Metrics {
    pub batches_received: AtomicU64,
    pub batches_duplicate: AtomicU64,
    /// Alerts raised, and detections grouped into an existing alert.
    pub alerts_created: AtomicU64,
    pub alerts_grouped: AtomicU64,
    /// Detections muted by alert filters.
    pub alerts_muted: AtomicU64,
    /// Edge detections received a second time (fast lane, then spool) and not stored again.
    pub edge_duplicates: AtomicU64,
    pub batches_rejected: AtomicU64,
    pub events_stored: AtomicU64,
    pub events_rejected: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_decompressed: AtomicU64,
    pub commits: AtomicU64,
    pub commit_errors: AtomicU64,
    pub events_pending: AtomicU64,
    pub enrollments: AtomicU64,
    pub enrollments_refused: AtomicU64,
    /// Agent certificates renewed through `/v1/renew`.
    pub certificates_renewed: AtomicU64,
    pub api_requests: AtomicU64,
    pub api_unauthorized: AtomicU64,
    /// Batches refused with `429` by the agent's own quota.
    pub batches_throttled_agent: AtomicU64,
    /// Batches refused with `429` by the global ingest limit.
    pub batches_throttled_global: AtomicU64,
    pub stats_reports: AtomicU64,
    pub stats_refused: AtomicU64,
    /// Events the collector ran its rule pack on (not evaluated at the edge with it).
    pub events_evaluated_central: AtomicU64,
    /// Events evaluated at the edge with the collector's pack version, not evaluated again.
    pub events_trusted_edge: AtomicU64,
    /// Central rule matches added to events.
    pub detections_central: AtomicU64,
    /// Push-intake requests, those refused, and the events they stored.
    pub intake_requests: AtomicU64,
    pub intake_refused: AtomicU64,
    pub intake_events: AtomicU64,
    /// Events stored from pull connectors.
    pub connector_events: AtomicU64,
}

/// One labelled sample: (label value, value).
pub type Sample<'a> = (&'a str, f64);

/// Renders one metric family with a single label, e.g.
/// `name{reason="agent"} 3`.
pub fn render_labelled(
    out: &mut String,
    (name, help, kind): (&str, &str, &str),
    label: &str,
    samples: &[Sample<'_>],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (value, v) in samples {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {v}");
    }
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// Renders every counter, plus the gauges given by the caller.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let counters: [(&str, &str, &AtomicU64); 27] = [
            (
                "vigie_intake_requests_total",
                "Push-intake requests (POST /api/v1/intake/{key})",
                &self.intake_requests,
            ),
            (
                "vigie_intake_refused_total",
                "Push-intake requests refused (unknown key, unreadable or oversize body)",
                &self.intake_refused,
            ),
            (
                "vigie_intake_events_total",
                "Events stored from push intakes",
                &self.intake_events,
            ),
            (
                "vigie_connector_events_total",
                "Events stored from pull connectors",
                &self.connector_events,
            ),
            (
                "vigie_events_evaluated_central_total",
                "Events the collector ran its rule pack on (not evaluated at the edge with the same pack)",
                &self.events_evaluated_central,
            ),
            (
                "vigie_events_trusted_edge_total",
                "Events evaluated at the edge with the collector's pack version, not evaluated again",
                &self.events_trusted_edge,
            ),
            (
                "vigie_detections_central_total",
                "Rule matches found by the collector (central detection)",
                &self.detections_central,
            ),
            (
                "vigie_alerts_muted_total",
                "Detections muted by alert filters",
                &self.alerts_muted,
            ),
            (
                "vigie_alerts_created_total",
                "Alerts raised",
                &self.alerts_created,
            ),
            (
                "vigie_alerts_grouped_total",
                "Detections grouped into an open alert (its occurrences)",
                &self.alerts_grouped,
            ),
            (
                "vigie_edge_detections_duplicate_total",
                "Edge detections received again (fast lane, then spool) and not stored twice",
                &self.edge_duplicates,
            ),
            (
                "vigie_batches_received_total",
                "Agent batches received",
                &self.batches_received,
            ),
            (
                "vigie_batches_duplicate_total",
                "Batches already stored, answered as duplicates",
                &self.batches_duplicate,
            ),
            (
                "vigie_batches_rejected_total",
                "Batches refused (bad header, too large, corrupt)",
                &self.batches_rejected,
            ),
            (
                "vigie_events_stored_total",
                "Events durably stored",
                &self.events_stored,
            ),
            (
                "vigie_events_rejected_total",
                "Event lines sent to the dead-letter store",
                &self.events_rejected,
            ),
            (
                "vigie_bytes_received_total",
                "Compressed batch bytes received",
                &self.bytes_received,
            ),
            (
                "vigie_bytes_decompressed_total",
                "Batch bytes after decompression",
                &self.bytes_decompressed,
            ),
            (
                "vigie_commits_total",
                "Store commits (each acknowledges the batches it holds)",
                &self.commits,
            ),
            (
                "vigie_commit_errors_total",
                "Store commits that failed (their batches were not acknowledged)",
                &self.commit_errors,
            ),
            (
                "vigie_enrollments_total",
                "Agents enrolled",
                &self.enrollments,
            ),
            (
                "vigie_enrollments_refused_total",
                "Enrollment requests refused",
                &self.enrollments_refused,
            ),
            (
                "vigie_certificates_renewed_total",
                "Agent certificates renewed",
                &self.certificates_renewed,
            ),
            (
                "vigie_api_requests_total",
                "API requests",
                &self.api_requests,
            ),
            (
                "vigie_api_unauthorized_total",
                "API requests refused for a missing or wrong token",
                &self.api_unauthorized,
            ),
            (
                "vigie_agent_stats_reports_total",
                "Agent statistics reports stored (POST /v1/stats)",
                &self.stats_reports,
            ),
            (
                "vigie_agent_stats_refused_total",
                "Agent statistics reports refused (no or revoked certificate, bad JSON, too large)",
                &self.stats_refused,
            ),
        ];
        let mut out = String::with_capacity(4096);
        for (name, help, c) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", c.load(Ordering::Relaxed));
        }
        render_labelled(
            &mut out,
            (
                "vigie_batches_throttled_total",
                "Batches refused with 429 (not stored; the agent sends them again), by the limit that refused them",
                "counter",
            ),
            "reason",
            &[
                ("agent", self.batches_throttled_agent.load(Ordering::Relaxed) as f64),
                ("global", self.batches_throttled_global.load(Ordering::Relaxed) as f64),
            ],
        );
        let pending = self.events_pending.load(Ordering::Relaxed) as f64;
        let all_gauges = std::iter::once((
            "vigie_events_pending",
            "Events waiting for the next commit",
            pending,
        ))
        .chain(gauges.iter().copied());
        for (name, help, v) in all_gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        add(&m.events_stored, 5);
        let text = m.render(&[("vigie_agents", "Enrolled agents", 2.0)]);
        assert!(text
            .contains("# TYPE vigie_events_stored_total counter\nvigie_events_stored_total 5\n"));
        assert!(text.contains("vigie_agents 2\n"));
    }

    #[test]
    fn throttled_batches_are_labelled_by_reason() {
        let m = Metrics::default();
        add(&m.batches_throttled_agent, 3);
        add(&m.batches_throttled_global, 1);
        let text = m.render(&[]);
        assert!(text.contains("# TYPE vigie_batches_throttled_total counter\n"));
        assert!(text.contains("vigie_batches_throttled_total{reason=\"agent\"} 3\n"));
        assert!(text.contains("vigie_batches_throttled_total{reason=\"global\"} 1\n"));
    }
}
