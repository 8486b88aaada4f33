//! Shipping one sealed batch until the collector takes it.
//!
//! The body is gzipped once ([`compress`]); the same bytes and the same `Vigie-Batch` id
//! are sent on every retry, so the collector recognises a retry after a lost
//! acknowledgement. Retries back off exponentially with full jitter (so 750
//! agents coming back after an outage do not hit the collector in step) and
//! honour `Retry-After`. A batch is given up only when the collector says it
//! can never take it (`413`); that loss is counted and logged as an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use rand::Rng;
use vigie_wire::{Ack, BatchId, BATCH_HEADER};

use crate::client::CollectorClient;
use crate::recycle::Recycler;

/// Counters of the shipper, shared with the rest of the agent.
#[derive(Debug, Default)]
pub struct ShipStats {
    /// Lines and journald entries taken from sources by the pipeline.
    pub lines_read: AtomicU64,
    /// Events dropped by a source's rate limit in drop mode.
    pub rate_limited_events: AtomicU64,
    pub batches_acked: AtomicU64,
    pub events_acked: AtomicU64,
    pub events_rejected: AtomicU64,
    /// Events of batches the collector refused for good.
    pub events_dropped: AtomicU64,
    /// Events dropped by the spool (`when_full = "drop_oldest"`).
    pub spool_dropped_events: AtomicU64,
    /// Times the spool was found full in block mode (sources paused).
    pub spool_full_waits: AtomicU64,
    /// Spool reads and writes that failed (retried).
    pub spool_errors: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub retries: AtomicU64,
    pub duplicates: AtomicU64,
    pub last_ack_unix_secs: AtomicU64,
}

/// Retry timing.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based): full jitter over an
    /// exponentially growing window.
    pub fn delay(&self, attempt: u32) -> Duration {
        let window = self
            .initial
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max);
        let ms = window.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
    }
}

/// How a batch ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Shipped {
    /// Stored (or already stored): its positions may be checkpointed.
    Delivered,
    /// The collector can never take it; its events are counted as dropped.
    Refused,
    /// The agent is stopping; the batch was not delivered.
    Cancelled,
}

/// A batch ready to send: its id and its gzip'ed body, the same bytes on
/// every retry.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `Vigie-Batch` value, `stream/seq`.
    pub id: String,
    pub body: Bytes,
    pub events: usize,
}

impl Outgoing {
    pub fn new(stream: &str, sequence: u64, body: Bytes, events: usize) -> Self {
        Outgoing {
            id: BatchId::new(stream, sequence).header_value(),
            body,
            events,
        }
    }
}

/// Gzips a batch body off the async threads, with the recycler's compressor
/// and buffers (the raw body goes back to it). `None` only when the runtime
/// is shutting down.
pub async fn compress(raw: Vec<u8>, level: u32, recycler: Arc<Recycler>) -> Option<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let gzipped = recycler.gzip(&raw, level);
        recycler.give_body(raw);
        gzipped
    })
    .await
    .ok()
}

/// Sends `out` until it is delivered, refused for good, or `stop` fires.
pub async fn ship(
    client: &CollectorClient,
    out: &Outgoing,
    backoff: Backoff,
    stats: &ShipStats,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Shipped {
    let (id, body) = (&out.id, &out.body);
    let headers = [
        (BATCH_HEADER, id.clone()),
        ("content-type", vigie_wire::batch::NDJSON.to_owned()),
        ("content-encoding", "gzip".to_owned()),
        (
            vigie_wire::batch::AGENT_VERSION_HEADER,
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ];
    let mut attempt = 0u32;
    loop {
        if *stop.borrow() {
            return Shipped::Cancelled;
        }
        let result = client
            .send(Method::POST, "/v1/batches", &headers, body.clone())
            .await;
        let mut wait = None;
        match result {
            Ok(a) if a.status == StatusCode::OK => {
                let ack: Option<Ack> = serde_json::from_slice(&a.body).ok();
                if ack.as_ref().is_some_and(|a| a.duplicate) {
                    stats.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                delivered(stats, out, 0);
                return Shipped::Delivered;
            }
            Ok(a) if a.status == StatusCode::BAD_REQUEST => {
                // Either some lines were rejected (the rest is stored: done), or
                // the request itself is malformed (a bug: retrying cannot help).
                let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
                let rejected = v
                    .get("rejected_lines")
                    .and_then(|r| r.as_array())
                    .map_or(0, Vec::len);
                if rejected > 0 {
                    tracing::error!(batch = %id, rejected, "collector rejected lines of a batch to its dead-letter store");
                    delivered(stats, out, rejected as u64);
                    return Shipped::Delivered;
                }
                tracing::error!(batch = %id, events = out.events, answer = %String::from_utf8_lossy(&a.body), "collector refused the batch as malformed; events dropped");
                stats
                    .events_dropped
                    .fetch_add(out.events as u64, Ordering::Relaxed);
                return Shipped::Refused;
            }
            Ok(a) if a.status == StatusCode::PAYLOAD_TOO_LARGE => {
                tracing::error!(batch = %id, events = out.events, bytes = body.len(), "collector refused the batch as too large; events dropped (lower batch.max_bytes)");
                stats
                    .events_dropped
                    .fetch_add(out.events as u64, Ordering::Relaxed);
                return Shipped::Refused;
            }
            Ok(a) => {
                wait = retry_after(&a.headers);
                let level =
                    if a.status.is_server_error() || a.status == StatusCode::TOO_MANY_REQUESTS {
                        tracing::Level::WARN
                    } else {
                        tracing::Level::ERROR
                    };
                if level == tracing::Level::ERROR {
                    tracing::error!(batch = %id, status = %a.status, answer = %String::from_utf8_lossy(&a.body), "collector refused the batch; will retry");
                } else {
                    tracing::warn!(batch = %id, status = %a.status, "collector busy; will retry");
                }
            }
            Err(e) => {
                tracing::warn!(batch = %id, error = %e, attempt, "sending failed; will retry");
            }
        }
        stats.retries.fetch_add(1, Ordering::Relaxed);
        let delay = wait
            .unwrap_or_else(|| backoff.delay(attempt))
            .min(backoff.max.max(Duration::from_secs(1)));
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {}
        }
    }
}

fn delivered(stats: &ShipStats, out: &Outgoing, rejected: u64) {
    let events = out.events as u64;
    stats.batches_acked.fetch_add(1, Ordering::Relaxed);
    stats
        .events_acked
        .fetch_add(events - rejected.min(events), Ordering::Relaxed);
    stats.events_rejected.fetch_add(rejected, Ordering::Relaxed);
    stats
        .bytes_sent
        .fetch_add(out.body.len() as u64, Ordering::Relaxed);
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    stats.last_ack_unix_secs.store(now, Ordering::Relaxed);
}

fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Shared handle type for stats.
pub type SharedStats = Arc<ShipStats>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for _ in 0..50 {
            let d0 = b.delay(0);
            assert!(
                d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100),
                "{d0:?}"
            );
            let d10 = b.delay(10);
            assert!(
                d10 >= Duration::from_secs(1) && d10 <= Duration::from_secs(2),
                "{d10:?}"
            );
        }
    }

    #[test]
    fn retry_after_seconds_is_read() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("7"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    }
}
