//! The spool stages of `vigie-agent run`: sealed batches go to disk, and
//! from disk to the collector.
//!
//! - [`write`] gzips each sealed batch and appends it to the [`Spool`],
//!   saving the source positions after the batch as pending on the record's
//!   seq just before: they take effect at the next start only if the record
//!   is in the spool, so lines are neither read again nor skipped.
//!   When the spool is full in `block` mode it waits for acknowledgements,
//!   and the pipeline (then the sources) wait behind it: file positions hold.
//!   In `drop_oldest` mode every drop is counted and reported as a
//!   data-loss event.
//! - [`dispatch`] reads records back from disk, oldest first, and ships up to
//!   `max_in_flight` of them at once with the id `stream/seq`; an
//!   acknowledged (or definitively refused) record is acknowledged in the
//!   spool, which reclaims its segment once all of it is done.
//!
//! The fast lane ([`Shared::send_fast`]) carries data-loss reports ahead of
//! the backlog, so a report is not itself dropped by a full spool, and a copy
//! of each edge detection ([`Shared::send_fast_copy`]), so that it reaches
//! the SOC ahead of a backlog; the spooled original is the one that counts
//! for delivery, and the collector stores each detection's `event.id` once.
//!
//! The stream id lives in the spool directory (`stream`) and changes only
//! when the spool starts over (no seq history): seqs never repeat within a
//! stream, so a record sent again after a crash carries the id the collector
//! already knows and is answered as a duplicate, not stored twice.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::checkpoint::{write_file_atomic, CheckpointStore, Checkpoints, PendingCheckpoint};
use crate::client::CollectorClient;
use crate::loss::{self, LossSender};
use crate::pipeline::{apply_position, SealedBatch};
use crate::recycle::Recycler;
use crate::shipper::{compress, ship, Backoff, Outgoing, ShipStats, Shipped};
use crate::spool::{Append, FsyncPolicy, OpenReport, Spool, SpoolConfig, SpoolError};

/// Most batches on the fast lane before detection copies are skipped.
pub const MAX_FAST_COPIES: usize = 256;

/// The next thing the dispatcher sends.
#[derive(Debug)]
enum Next {
    Fast(Outgoing),
    Spooled(crate::spool::Record),
    Nothing,
}

/// The spool shared by the writer, the dispatcher and the stats reporter.
pub struct Shared {
    spool: Mutex<Spool>,
    /// The fast lane: small batches shipped ahead of the spool's backlog
    /// (data-loss reports), in memory only.
    fast: Mutex<std::collections::VecDeque<Outgoing>>,
    fast_stream: String,
    fast_seq: std::sync::atomic::AtomicU64,
    /// A record was appended (wakes the dispatcher).
    appended: Notify,
    /// A record was acknowledged (wakes a writer waiting for room).
    freed: Notify,
    pub stream: String,
    /// See [`crate::spool::OpenReport::written_end`].
    pub written_end: u64,
}

impl Shared {
    /// Opens the spool in `cfg.dir` and logs what recovery found.
    pub fn open(cfg: &SpoolConfig, default_dir: &Path) -> Result<Arc<Shared>, SpoolError> {
        let dir = cfg.dir.clone().unwrap_or_else(|| default_dir.to_owned());
        let (spool, report) = Spool::open(&dir, cfg)?;
        log_open(&dir, &report);
        let stream = stream_id(&dir, report.next_seq <= 1).map_err(|e| SpoolError::Write {
            path: dir.join("stream"),
            source: e,
        })?;
        let fast_stream = format!("f{}", chrono::Utc::now().timestamp_millis());
        Ok(Arc::new(Shared {
            spool: Mutex::new(spool),
            fast: Mutex::new(std::collections::VecDeque::new()),
            fast_stream,
            fast_seq: std::sync::atomic::AtomicU64::new(0),
            appended: Notify::new(),
            freed: Notify::new(),
            stream,
            written_end: report.written_end,
        }))
    }

    /// The spool, even if a thread panicked while holding it (its state is
    /// on disk and every call leaves it consistent).
    pub fn lock(&self) -> MutexGuard<'_, Spool> {
        self.spool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues events on the fast lane: shipped before any spooled batch,
    /// never dropped by a full spool, but lost if the agent dies first (a
    /// stream of its own per run, so the collector still deduplicates
    /// retries).
    pub fn send_fast(&self, events: &[vigie_event::Event]) {
        let mut body = Vec::new();
        for ev in events {
            if serde_json::to_writer(&mut body, ev.as_map()).is_ok() {
                body.push(b'\n');
            }
        }
        let seq = self.fast_seq.fetch_add(1, Ordering::Relaxed);
        let out = Outgoing::new(
            &self.fast_stream,
            seq,
            Bytes::from(vigie_wire::gzip(&body, 6)),
            events.len(),
        );
        self.fast
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(out);
        self.appended.notify_one();
    }

    /// Queues a copy of edge detections on the fast lane, unless it already holds
    /// [`MAX_FAST_COPIES`] batches: the copy only saves time (the events also go through the
    /// spool, and the collector stores each `event.id` once), so it is skipped, not queued,
    /// when a noisy rule floods it. Returns whether it was queued.
    pub fn send_fast_copy(&self, events: &[vigie_event::Event]) -> bool {
        let queued = self
            .fast
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        if queued >= MAX_FAST_COPIES {
            return false;
        }
        self.send_fast(events);
        true
    }

    /// What to send next: the fast lane first, then the oldest spooled
    /// record not handed out yet. `None` when the runtime is stopping.
    async fn next_outgoing(self: &Arc<Self>) -> Option<Result<Next, SpoolError>> {
        let fast = self
            .fast
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front();
        if let Some(out) = fast {
            return Some(Ok(Next::Fast(out)));
        }
        let next = self.blocking(|s| s.next_unsent()).await?;
        Some(next.map(|r| r.map_or(Next::Nothing, Next::Spooled)))
    }

    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> Option<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&mut me.lock()))
            .await
            .ok()
    }
}

fn log_open(dir: &Path, r: &OpenReport) {
    tracing::info!(
        dir = %dir.display(),
        records = r.records,
        events = r.events,
        bytes = r.bytes,
        next_seq = r.next_seq,
        "spool opened"
    );
    for c in &r.corruptions {
        if c.torn {
            // Expected after a kill or a crash: the record's lines were never
            // counted as spooled, so they are read again from their source.
            tracing::warn!(
                file = %c.path.display(),
                offset = c.offset,
                bytes = c.bytes,
                reason = %c.reason,
                "spool: last record incomplete (unclean stop) cut off; its lines are read again"
            );
            continue;
        }
        tracing::error!(
            file = %c.path.display(),
            offset = c.offset,
            bytes = c.bytes,
            truncated = c.truncated,
            reason = %c.reason,
            "spool: corrupt or torn data cut off at start"
        );
    }
}

/// The stream id kept in `dir/stream`; a new one when `fresh` (the spool has
/// no seq history, so its seqs start again) or when the file is missing.
fn stream_id(dir: &Path, fresh: bool) -> std::io::Result<String> {
    let path = dir.join("stream");
    if !fresh {
        match std::fs::read_to_string(&path) {
            Ok(s) if valid_stream(s.trim()) => return Ok(s.trim().to_owned()),
            Ok(_) => {
                tracing::warn!(file = %path.display(), "invalid stream id; starting a new stream")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let id = format!(
        "s{}{:04x}",
        chrono::Utc::now().timestamp_millis(),
        rand::random::<u16>()
    );
    write_file_atomic(&path, format!("{id}\n").as_bytes(), 0o600)?;
    Ok(id)
}

fn valid_stream(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Appends sealed batches to the spool until `sealed` closes, moving the
/// source checkpoints with them: before each append, the positions after
/// the batch are saved as pending on the record's seq (see
/// [`crate::checkpoint::PendingCheckpoint`]), so a crash at any point
/// neither re-reads spooled lines nor skips unspooled ones.
#[allow(clippy::too_many_arguments)]
pub async fn write(
    mut sealed: mpsc::Receiver<SealedBatch>,
    shared: Arc<Shared>,
    level: u32,
    fsync_interval: Option<Duration>,
    cp_store: CheckpointStore,
    mut cp: Checkpoints,
    stats: Arc<ShipStats>,
    losses: LossSender,
    recycler: Arc<Recycler>,
    mut stop: watch::Receiver<bool>,
) {
    let cp_store = Arc::new(cp_store);
    let mut tick = tokio::time::interval(fsync_interval.unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let batch = tokio::select! {
            b = sealed.recv() => match b {
                Some(b) => b,
                None => break,
            },
            _ = tick.tick(), if fsync_interval.is_some() => {
                sync(&shared).await;
                continue;
            }
        };
        let Some(body) = compress(batch.body, level, recycler.clone()).await else {
            return;
        };
        let mut after = None;
        if !batch.positions.is_empty() {
            let mut next = cp.clone();
            let now = chrono::Utc::now().timestamp();
            for p in batch.positions {
                apply_position(&mut next, p, now);
            }
            let seq = shared.lock().next_seq();
            let mut saved = cp.clone();
            saved.pending = Some(PendingCheckpoint {
                spool_seq: seq,
                files: next.files.clone(),
                journald: next.journald.clone(),
            });
            let store = cp_store.clone();
            match tokio::task::spawn_blocking(move || store.save(&saved)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "saving checkpoints failed; lines may be sent again after a restart")
                }
                Err(_) => return,
            }
            after = Some(next);
        }
        let body = Arc::new(body);
        let appended = append(&shared, batch.events, &body, &stats, &losses, &mut stop).await;
        // On disk now (or dropped): the dispatcher reads the record back from the spool.
        if let Ok(body) = Arc::try_unwrap(body) {
            recycler.give_gzipped(body);
        }
        match appended {
            Appended::Stored => shared.appended.notify_one(),
            // Counted and reported.
            Appended::Dropped => {}
            // Not written: its lines are read again at the next start (the
            // pending positions name a seq the spool never reached).
            Appended::Stopped => break,
        }
        if let Some(next) = after {
            cp = next;
        }
    }
    sync(&shared).await;
}

enum Appended {
    Stored,
    /// The record can never fit (counted as dropped and reported).
    Dropped,
    /// The agent stops while the spool is full or failing.
    Stopped,
}

/// Appends one record, waiting while the spool is full (block mode) and
/// retrying while the disk fails, until `stop` fires.
async fn append(
    shared: &Arc<Shared>,
    events: usize,
    body: &Arc<Vec<u8>>,
    stats: &ShipStats,
    losses: &LossSender,
    stop: &mut watch::Receiver<bool>,
) -> Appended {
    let mut full_since: Option<tokio::time::Instant> = None;
    loop {
        let b = body.clone();
        let n = u32::try_from(events).unwrap_or(u32::MAX);
        if *stop.borrow() && full_since.is_some() {
            return Appended::Stopped;
        }
        let Some(result) = shared.blocking(move |s| s.append(n, &b)).await else {
            return Appended::Stopped;
        };
        match result {
            Ok(Append::Stored { dropped, .. }) => {
                if full_since.is_some() {
                    tracing::info!("spool has room again; sources resume");
                }
                if !dropped.is_empty() {
                    stats
                        .spool_dropped_events
                        .fetch_add(dropped.events, Ordering::Relaxed);
                    tracing::error!(
                        events = dropped.events,
                        batches = dropped.records,
                        bytes = dropped.bytes,
                        "spool full (when_full = \"drop_oldest\"): oldest batches dropped"
                    );
                    losses.report(loss::Loss {
                        reason: loss::SPOOL_FULL,
                        events: dropped.events,
                        detail: format!(
                            "the agent's spool was full: {} oldest batches ({} bytes) dropped",
                            dropped.records, dropped.bytes
                        ),
                    });
                }
                return Appended::Stored;
            }
            Ok(Append::Full) => {
                if full_since.is_none() {
                    stats.spool_full_waits.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("spool full (when_full = \"block\"): sources paused until the collector acknowledges batches");
                    full_since = Some(tokio::time::Instant::now());
                }
                // A missed wake-up only costs the timeout.
                tokio::select! {
                    _ = shared.freed.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(SpoolError::TooLarge { bytes, limit, .. }) => {
                stats
                    .spool_dropped_events
                    .fetch_add(events as u64, Ordering::Relaxed);
                tracing::error!(
                    events,
                    bytes,
                    limit,
                    "batch larger than the whole spool; dropped"
                );
                losses.report(loss::Loss {
                    reason: loss::SPOOL_FULL,
                    events: events as u64,
                    detail: format!("a batch of {bytes} bytes cannot fit a spool of {limit} bytes"),
                });
                return Appended::Dropped;
            }
            Err(e) => {
                stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "cannot write to the spool; retrying in 1 s (sources paused)");
                full_since.get_or_insert_with(tokio::time::Instant::now);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

async fn sync(shared: &Arc<Shared>) {
    let synced = shared
        .blocking(|s| if s.needs_sync() { s.sync() } else { Ok(()) })
        .await;
    match synced {
        Some(Ok(())) => shared.appended.notify_one(),
        Some(Err(e)) => tracing::error!(error = %e, "spool fsync failed"),
        None => {}
    }
}

/// The fsync period the writer must drive, if any.
pub fn fsync_interval(cfg: &SpoolConfig) -> Option<Duration> {
    (cfg.fsync == FsyncPolicy::Interval).then(|| Duration::from_millis(cfg.fsync_interval_ms))
}

/// Ships spooled records until `stopping` turns true (then waits for the
/// batches in flight, which `abort` cancels).
#[allow(clippy::too_many_arguments)]
pub async fn dispatch(
    shared: Arc<Shared>,
    client: CollectorClient,
    backoff: Backoff,
    stats: Arc<ShipStats>,
    max_in_flight: usize,
    mut stopping: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
    losses: LossSender,
) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        if *stopping.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopping.changed() => break,
        };
        let record = match shared.next_outgoing().await {
            Some(Ok(Next::Fast(out))) => {
                let (client, stats) = (client.clone(), stats.clone());
                let mut abort = abort.clone();
                tasks.spawn(async move {
                    let outcome = ship(&client, &out, backoff, &stats, &mut abort).await;
                    drop(permit);
                    if outcome == Shipped::Refused {
                        tracing::error!(batch = %out.id, "the collector refused a fast-lane batch");
                    }
                });
                continue;
            }
            Some(Ok(Next::Spooled(r))) => r,
            Some(Ok(Next::Nothing)) => {
                drop(permit);
                tokio::select! {
                    _ = shared.appended.notified() => {}
                    // Also covers records synced by the spool itself.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopping.changed() => {}
                }
                continue;
            }
            Some(Err(e)) => {
                drop(permit);
                tracing::error!(error = %e, "cannot read the spool; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            None => break,
        };
        let out = Outgoing::new(
            &shared.stream,
            record.seq,
            Bytes::from(record.payload),
            record.events as usize,
        );
        let (client, stats, shared, losses) = (
            client.clone(),
            stats.clone(),
            shared.clone(),
            losses.clone(),
        );
        let mut abort = abort.clone();
        let seq = record.seq;
        tasks.spawn(async move {
            let outcome = ship(&client, &out, backoff, &stats, &mut abort).await;
            drop(permit);
            if outcome == Shipped::Cancelled {
                // Still in the spool (sent at the next start), unless a full
                // spool dropped it meanwhile: then it is lost now.
                let lost = shared.blocking(move |s| s.abandon(seq)).await.unwrap_or_default();
                if !lost.is_empty() {
                    stats
                        .spool_dropped_events
                        .fetch_add(lost.events, Ordering::Relaxed);
                    tracing::error!(events = lost.events, batch = %out.id, "batch dropped by the full spool was not delivered before the agent stopped");
                }
                return;
            }
            if outcome == Shipped::Refused {
                losses.report(loss::Loss {
                    reason: loss::REFUSED,
                    events: out.events as u64,
                    detail: format!("the collector refused batch {} for good", out.id),
                });
            }
            if let Some(Err(e)) = shared.blocking(move |s| s.ack(seq)).await {
                tracing::error!(error = %e, seq, "spool acknowledgement not saved; the batch may be sent again after a restart")
            }
            shared.freed.notify_one();
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_event::Event;

    #[tokio::test]
    async fn the_fast_lane_goes_ahead_of_the_backlog() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = SpoolConfig::default();
        let shared = Shared::open(&cfg, dir.path()).expect("open");
        for i in 0..3u8 {
            let stored = shared.lock().append(1, &[i]).expect("append");
            assert!(matches!(stored, Append::Stored { .. }));
        }
        let mut ev = Event::new();
        ev.set("event.action", "data-loss");
        shared.send_fast(&[ev]);
        let first = shared
            .next_outgoing()
            .await
            .expect("running")
            .expect("read");
        let Next::Fast(out) = first else {
            panic!("fast lane first, got {first:?}");
        };
        assert!(out.id.starts_with('f'), "{}", out.id);
        assert_eq!(out.events, 1);
        let mut seqs = Vec::new();
        while let Some(Ok(Next::Spooled(r))) = shared.next_outgoing().await {
            seqs.push(r.seq);
        }
        assert_eq!(seqs, vec![1, 2, 3], "then the backlog, oldest first");
        // The stream id survives a restart of the spool, with its seqs.
        let stream = shared.stream.clone();
        drop(shared);
        let again = Shared::open(&cfg, dir.path()).expect("reopen");
        assert_eq!(again.stream, stream);
    }
}
