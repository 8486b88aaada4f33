//! `vigie-agent run`: sources → pipeline → shipper → checkpoints.
//!
//! Tasks and their bounds:
//! - each file source runs a tailer thread that sends lines into a bounded
//!   channel (full channel = reading pauses, positions hold);
//! - each journald source runs journalctl and sends records the same way;
//! - the pipeline task normalizes and batches;
//! - the dispatcher ships up to `batch.max_in_flight` batches at once;
//! - the checkpoint task applies acknowledged positions in order and saves.
//!
//! On stop, sources stop first, the open batch is sealed and shipped, and
//! in-flight batches get a grace period; what is not acknowledged then is
//! read again at the next start (its checkpoint did not move).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, watch, Semaphore};
use vigie_event::Event;

use crate::checkpoint::CheckpointStore;
use crate::client::CollectorClient;
use crate::config::{AgentConfig, SourceKind};
use crate::enroll::IdentityFiles;
use crate::pipeline::{
    BatchBuilder, CheckpointTracker, Normalizer, Position, SealedBatch, SourceInfo,
};
use crate::shipper::{ship, Backoff, ShipStats, Shipped};
use crate::sources::file::{self, RawLine};
use crate::sources::journald::{self, JournalRecord};

/// How long in-flight batches may take to finish once the agent is asked to stop.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs the agent until `stop` turns true.
pub async fn run(cfg: AgentConfig, mut stop: watch::Receiver<bool>) -> Result<()> {
    let (identity, cert, key) = IdentityFiles::in_dir(&cfg.data_dir).load()?;
    let ca = std::fs::read_to_string(&cfg.collector.ca_file)
        .with_context(|| format!("cannot read {}", cfg.collector.ca_file.display()))?;
    let client = CollectorClient::new(
        &cfg.collector.url,
        &ca,
        Some((&cert, &key)),
        Duration::from_secs(cfg.collector.request_timeout_secs),
    )?;
    let (cp_store, checkpoints, existed) = CheckpointStore::open(&cfg.data_dir)?;
    tracing::info!(agent = %identity.agent_id, collector = %cfg.collector.url, sources = cfg.sources.len(), "agent starting");

    let stop_sources = Arc::new(AtomicBool::new(false));
    let (src_stop_tx, src_stop_rx) = watch::channel(false);
    let (file_tx, mut file_rx) = mpsc::channel::<Vec<RawLine>>(4);
    let (journal_tx, mut journal_rx) = mpsc::channel::<(Arc<str>, Vec<JournalRecord>)>(4);
    let mut infos = HashMap::new();
    let mut tailers = Vec::new();
    let mut tailer_stats = Vec::new();
    for s in &cfg.sources {
        let name: Arc<str> = Arc::from(s.name.as_str());
        infos.insert(
            name.clone(),
            SourceInfo {
                codec: s.codec,
                dataset: s.dataset.clone(),
            },
        );
        match &s.kind {
            SourceKind::File(opts) => {
                let started = file::Tailer::new(&s.name, opts.clone(), &checkpoints, !existed)
                    .and_then(|t| {
                        let stats = t.stats_handle();
                        file::spawn_tailer(t, file_tx.clone(), stop_sources.clone())
                            .map(|h| (h, stats))
                    });
                match started {
                    Ok((h, stats)) => {
                        tailers.push(h);
                        tailer_stats.push((name.clone(), stats));
                    }
                    Err(e) => {
                        tracing::error!(source = %s.name, error = %e, "file source cannot start; other sources keep running")
                    }
                }
            }
            SourceKind::Journald(opts) => {
                let (tx, mut rx) = mpsc::channel::<Vec<JournalRecord>>(4);
                let cursor = checkpoints.journald.get(&s.name).cloned();
                let fwd = journal_tx.clone();
                let n = name.clone();
                tokio::spawn(async move {
                    while let Some(recs) = rx.recv().await {
                        if fwd.send((n.clone(), recs)).await.is_err() {
                            return;
                        }
                    }
                });
                let host = Some(cfg.host_name.clone());
                let src = s.name.clone();
                let opts = opts.clone();
                let stop_rx = src_stop_rx.clone();
                tokio::spawn(async move {
                    if let Err(e) =
                        journald::run(src.clone(), opts, cursor, host, tx, stop_rx).await
                    {
                        tracing::error!(source = %src, error = %e, "journald source stopped; other sources keep running");
                    }
                });
            }
        }
    }
    drop(file_tx);
    drop(journal_tx);

    let stream = format!("r{}", chrono::Utc::now().timestamp_millis());
    let stats = Arc::new(ShipStats::default());
    let (sealed_tx, sealed_rx) = mpsc::channel::<SealedBatch>(1);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<(u64, Vec<Position>)>();
    let (abort_tx, abort_rx) = watch::channel(false);
    let dispatcher = tokio::spawn(dispatch(
        sealed_rx,
        ack_tx,
        client,
        stream,
        cfg.batch.compression_level,
        Backoff {
            initial: Duration::from_millis(cfg.collector.initial_backoff_ms),
            max: Duration::from_secs(cfg.collector.max_backoff_secs),
        },
        stats.clone(),
        cfg.batch.max_in_flight,
        abort_rx,
    ));
    let saver = tokio::spawn(save_checkpoints(ack_rx, cp_store, checkpoints));

    let normalizer = Normalizer::new(cfg.host_name.clone(), infos);
    let mut builder = BatchBuilder::new(cfg.batch.clone(), 0);
    let mut report = tokio::time::interval(Duration::from_secs(60));
    report.tick().await;
    // A closed channel answers at once: guard each branch so a source kind
    // that is absent (or ended) does not make the loop spin.
    let mut sources_open = true;
    let mut journal_open = true;
    loop {
        let deadline = builder.deadline();
        tokio::select! {
            _ = stop.changed() => break,
            lines = file_rx.recv(), if sources_open => match lines {
                Some(lines) => {
                    let ctx = normalizer.context();
                    for line in lines {
                        let ev = normalizer.file_line(&line, &ctx);
                        let pos = Position::File {
                            source: line.source.clone(),
                            fingerprint: line.fingerprint,
                            path: line.path.clone(),
                            offset: line.end_offset,
                        };
                        if let Some(b) = builder.push(&ev, Some(pos)) {
                            if sealed_tx.send(b).await.is_err() { break; }
                        }
                    }
                }
                None => sources_open = false,
            },
            recs = journal_rx.recv(), if journal_open => match recs {
                Some((source, recs)) => {
                    for r in recs {
                        let ev: Event = normalizer.journal_event(&source, r.event);
                        // An empty cursor is no position: nothing to checkpoint.
                        let pos = (!r.cursor.is_empty())
                            .then(|| Position::Journal { source: source.clone(), cursor: r.cursor });
                        if let Some(b) = builder.push(&ev, pos) {
                            if sealed_tx.send(b).await.is_err() { break; }
                        }
                    }
                }
                None => journal_open = false,
            },
            _ = sleep_until(deadline) => {
                if let Some(b) = builder.seal() {
                    if sealed_tx.send(b).await.is_err() { break; }
                }
            }
            _ = report.tick() => {
                for (source, st) in &tailer_stats {
                    let t = st.get();
                    tracing::info!(
                        source = %source,
                        files = t.files_watched,
                        lines_read = t.lines_read,
                        bytes_read = t.bytes_read,
                        lines_truncated = t.lines_truncated,
                        read_errors = t.read_errors,
                        "file source stats"
                    );
                }
                tracing::info!(
                    events_acked = stats.events_acked.load(Ordering::Relaxed),
                    batches_acked = stats.batches_acked.load(Ordering::Relaxed),
                    bytes_sent = stats.bytes_sent.load(Ordering::Relaxed),
                    retries = stats.retries.load(Ordering::Relaxed),
                    dropped = stats.events_dropped.load(Ordering::Relaxed),
                    "agent stats"
                );
            }
        }
        if *stop.borrow() {
            break;
        }
    }

    tracing::info!("agent stopping");
    stop_sources.store(true, Ordering::Relaxed);
    let _ = src_stop_tx.send(true);
    // Lines already read but not batched are simply read again next time:
    // their positions were never checkpointed.
    if let Some(b) = builder.seal() {
        let _ = sealed_tx.send(b).await;
    }
    drop(sealed_tx);
    drop(file_rx);
    let mut dispatcher = dispatcher;
    if tokio::time::timeout(STOP_GRACE, &mut dispatcher)
        .await
        .is_err()
    {
        tracing::warn!("in-flight batches not acknowledged within the grace period; they will be sent again at the next start");
        let _ = abort_tx.send(true);
        let _ = dispatcher.await;
    }
    let _ = saver.await;
    for t in tailers {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    mut sealed: mpsc::Receiver<SealedBatch>,
    acks: mpsc::UnboundedSender<(u64, Vec<Position>)>,
    client: CollectorClient,
    stream: String,
    level: u32,
    backoff: Backoff,
    stats: Arc<ShipStats>,
    max_in_flight: usize,
    abort: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(mut batch) = sealed.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (client, stream, stats, acks) =
            (client.clone(), stream.clone(), stats.clone(), acks.clone());
        let mut abort = abort.clone();
        tasks.spawn(async move {
            let outcome = ship(
                &client, &stream, &mut batch, level, backoff, &stats, &mut abort,
            )
            .await;
            drop(permit);
            if outcome != Shipped::Cancelled {
                let _ = acks.send((batch.sequence, batch.positions));
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

async fn save_checkpoints(
    mut acks: mpsc::UnboundedReceiver<(u64, Vec<Position>)>,
    store: CheckpointStore,
    mut cp: crate::checkpoint::Checkpoints,
) {
    let store = Arc::new(store);
    let mut tracker = CheckpointTracker::new(0);
    while let Some((seq, positions)) = acks.recv().await {
        let mut changed = tracker.acked(seq, positions, &mut cp);
        // Coalesce acknowledgements that arrived together into one save.
        while let Ok((seq, positions)) = acks.try_recv() {
            changed |= tracker.acked(seq, positions, &mut cp);
        }
        if changed {
            let (s, snapshot) = (store.clone(), cp.clone());
            match tokio::task::spawn_blocking(move || s.save(&snapshot)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "saving checkpoints failed; lines may be sent again after a restart")
                }
                Err(e) => tracing::error!(error = %e, "checkpoint save task failed"),
            }
        }
    }
}
