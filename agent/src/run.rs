//! `vigie-agent run`: sources → pipeline → shipper → checkpoints.
//!
//! Tasks and their bounds:
//! - each file source runs a tailer thread that sends lines into a bounded
//!   channel (full channel = reading pauses, positions hold);
//! - each journald source runs journalctl and sends records the same way;
//! - the pipeline task normalizes and batches (and turns drop reports into
//!   data-loss events, see `loss.rs`);
//! - with the spool (default), the spool writer appends sealed batches to
//!   disk (a full spool in block mode stops the pipeline, then the sources)
//!   and the spool dispatcher ships them from disk, up to
//!   `batch.max_in_flight` at once (see `spooler.rs`); without it, the
//!   dispatcher ships sealed batches from memory;
//! - with `[detect] source = "collector"`, the rule-pack poller asks the
//!   collector for its pack (see `rulepack.rs`) and hands each new valid one
//!   to the pipeline task, which swaps it in between two chunks of events;
//! - the checkpoint task applies positions in order and saves them: a
//!   batch's positions once it is durable in the spool (without a spool: once
//!   the collector acknowledged it).
//!
//! On stop, sources stop first and the open batch is sealed. With the spool
//! it is written to disk, in-flight batches get a grace period, and the rest
//! is sent from the spool at the next start. Without it, sealed batches are
//! shipped within the grace period; what is not acknowledged then is read
//! again from the sources at the next start (its checkpoint did not move).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use tokio::sync::{mpsc, watch, Semaphore};
use vigie_event::Event;

use crate::checkpoint::CheckpointStore;
use crate::client::CollectorClient;
use crate::config::{AgentConfig, SourceKind};
use crate::detect::{EdgeDetector, Verdict};
use crate::enroll::IdentityFiles;
use crate::loss::{self, LossSender};
use crate::pipeline::{
    BatchBuilder, CheckpointTracker, Normalizer, Position, SealedBatch, SourceInfo,
};
use crate::ratelimit::SourceLimiter;
use crate::rulepack::{Poller, ServedPack};

/// How long a starting agent without a saved rule pack waits for the collector's.
const FIRST_PACK_WAIT: Duration = Duration::from_secs(5);
use crate::shipper::{compress, ship, Backoff, Outgoing, ShipStats, Shipped};
use crate::sources::file::{self, RawLine};
use crate::sources::journald::{self, JournalRecord};
use crate::spooler;
use crate::stats::StatsSources;

/// Turns a drop report into a data-loss event: on the fast lane with the
/// spool, else into the open batch (returned if that sealed it).
fn route_loss(
    loss: &loss::Loss,
    normalizer: &Normalizer,
    shipping: &Shipping,
    builder: &mut BatchBuilder,
) -> Option<SealedBatch> {
    let ev = normalizer.agent_event(loss::loss_event(loss, chrono::Utc::now()));
    match shipping {
        Shipping::Spool { shared, .. } => {
            shared.send_fast(&[ev]);
            None
        }
        Shipping::Memory { .. } => builder.push(&ev, None),
    }
}

/// Gives a detected event an `event.id` that a restart reproduces, so that the collector
/// stores each detection once whether it arrives on the fast lane, from the spool, or both:
/// from the audit serial for an assembled audit event, else from the line's position.
/// Returns whether the event has an id.
fn tag_edge_id(ev: &mut Event, pos: Option<&Position>) -> bool {
    if ev.contains("event.id") {
        return true;
    }
    let key = if let Some(seq) = ev.get("auditd.log.sequence") {
        format!(
            "a\u{1}{}\u{1}{seq}\u{1}{}\u{1}{}",
            ev.get_str("vigie.source").unwrap_or(""),
            ev.get_str("@timestamp").unwrap_or(""),
            ev.get_str("host.name").unwrap_or("")
        )
    } else {
        match pos {
            Some(Position::File {
                source,
                fingerprint,
                offset,
                ..
            }) => format!("f\u{1}{source}\u{1}{fingerprint}\u{1}{offset}"),
            Some(Position::Journal { source, cursor }) => {
                format!("j\u{1}{source}\u{1}{cursor}")
            }
            None => return false,
        }
    };
    let id = xxhash_rust::xxh3::xxh3_128(key.as_bytes());
    ev.set("event.id", format!("{id:032x}"));
    true
}

/// The detect stage for one chunk of records: runs the edge rules on each event, batches what
/// is kept, and remembers the detections for the fast lane.
#[derive(Default)]
struct Stage {
    detected: bool,
    fast: Vec<Event>,
}

impl Stage {
    /// One event and the position it moves its source to.
    fn admit(
        &mut self,
        edge: Option<&EdgeDetector>,
        builder: &mut BatchBuilder,
        mut ev: Event,
        pos: Option<Position>,
    ) -> Option<SealedBatch> {
        match edge.map_or(Verdict::Pass, |d| d.apply(&mut ev)) {
            Verdict::Drop => {
                if let Some(p) = pos {
                    builder.keep_position(p);
                }
                return None;
            }
            Verdict::Tagged => {
                self.detected = true;
                if tag_edge_id(&mut ev, pos.as_ref()) {
                    self.fast.push(ev.clone());
                }
            }
            Verdict::Pass => {}
        }
        builder.push(&ev, pos)
    }

    /// The events an assembling source completed; the position goes with the last one.
    fn admit_assembled(
        &mut self,
        edge: Option<&EdgeDetector>,
        builder: &mut BatchBuilder,
        done: crate::pipeline::Assembled,
    ) -> Vec<SealedBatch> {
        let mut sealed = Vec::new();
        let n = done.events.len();
        if n == 0 {
            if let Some(p) = done.position {
                builder.keep_position(p);
            }
            return sealed;
        }
        let mut position = done.position;
        for (k, ev) in done.events.into_iter().enumerate() {
            let pos = if k + 1 == n { position.take() } else { None };
            sealed.extend(self.admit(edge, builder, ev, pos));
        }
        sealed
    }

    /// Ends the chunk: detections go on the fast lane and the batch is sealed at once.
    fn finish(&mut self, shipping: &Shipping, builder: &mut BatchBuilder) -> Option<SealedBatch> {
        send_fast_copies(shipping, &self.fast);
        self.fast.clear();
        std::mem::take(&mut self.detected)
            .then(|| builder.seal())
            .flatten()
    }
}

/// With the spool, queues a copy of the detections on the fast lane (see
/// [`spooler::Shared::send_fast_copy`]).
fn send_fast_copies(shipping: &Shipping, events: &[Event]) {
    if let (Shipping::Spool { shared, .. }, false) = (shipping, events.is_empty()) {
        if !shared.send_fast_copy(events) {
            tracing::debug!(
                events = events.len(),
                "fast lane full: detections go through the spool only"
            );
        }
    }
}

/// Counts and reports what each source's rate limit dropped since the last call.
fn report_rate_drops(
    limiters: &[(Arc<str>, Arc<SourceLimiter>)],
    stats: &ShipStats,
    losses: &LossSender,
) {
    for (source, l) in limiters {
        let n = l.take_new_drops();
        if n > 0 {
            stats.rate_limited_events.fetch_add(n, Ordering::Relaxed);
            tracing::warn!(source = %source, events = n, "rate limit (when_limited = \"drop\"): events dropped");
            losses.report(loss::Loss {
                reason: loss::RATE_LIMIT,
                events: n,
                detail: format!("source {source} was over its max_events_per_second"),
            });
        }
    }
}

/// How often drops by rate limits are counted and reported.
const RATE_DROP_REPORT: Duration = Duration::from_secs(5);

/// How long in-flight batches may take to finish once the agent is asked to stop.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// `stop` turned true.
    Stopped,
    /// New central sources were saved: run again with them (see
    /// [`crate::central_config`]).
    Reload,
}

/// Asks a running pipeline to stop cleanly so that it starts again.
#[derive(Clone)]
pub struct Reloader {
    stop: Arc<watch::Sender<bool>>,
    asked: Arc<AtomicBool>,
}

impl Reloader {
    pub fn reload(&self) {
        self.asked.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
    }
}

/// Runs the agent until `stop` turns true (or new central sources ask for a
/// restart of the pipeline: everything stops as on a stop, then the caller
/// runs it again).
pub async fn run(cfg: AgentConfig, stop: watch::Receiver<bool>) -> Result<RunEnd> {
    let (inner_tx, inner_rx) = watch::channel(*stop.borrow());
    let inner_tx = Arc::new(inner_tx);
    let reloader = Reloader {
        stop: inner_tx.clone(),
        asked: Arc::new(AtomicBool::new(false)),
    };
    let forward = {
        let (tx, mut stop) = (inner_tx.clone(), stop.clone());
        tokio::spawn(async move {
            while !*stop.borrow_and_update() {
                if stop.changed().await.is_err() {
                    return;
                }
            }
            let _ = tx.send(true);
        })
    };
    let result = run_pipeline(cfg, inner_rx, reloader.clone()).await;
    forward.abort();
    result?;
    Ok(
        if reloader.asked.load(Ordering::SeqCst) && !*stop.borrow() {
            RunEnd::Reload
        } else {
            RunEnd::Stopped
        },
    )
}

async fn run_pipeline(
    cfg: AgentConfig,
    mut stop: watch::Receiver<bool>,
    reloader: Reloader,
) -> Result<()> {
    let (identity, cert, key) = IdentityFiles::in_dir(&cfg.data_dir).load()?;
    let ca = std::fs::read_to_string(&cfg.collector.ca_file)
        .with_context(|| format!("cannot read {}", cfg.collector.ca_file.display()))?;
    let client = CollectorClient::new(
        &cfg.collector.url,
        &ca,
        Some((&cert, &key)),
        Duration::from_secs(cfg.collector.request_timeout_secs),
    )?;
    let (cp_store, mut checkpoints, existed) = CheckpointStore::open(&cfg.data_dir)?;
    let spool = if cfg.spool.enabled {
        let shared = spooler::Shared::open(&cfg.spool, &cfg.data_dir.join("spool"))
            .context("cannot open the spool")?;
        if checkpoints.pending.is_some() {
            if checkpoints.resolve_pending(shared.written_end) {
                tracing::info!("positions of the last spooled batch applied");
            } else {
                tracing::info!("the last batch never reached the spool; its lines are read again");
            }
            // Settled once: a later start must not judge them again against a spool whose
            // seqs have moved on (past a torn record, say).
            cp_store
                .save(&checkpoints)
                .context("cannot save the checkpoints")?;
        }
        Some(shared)
    } else {
        checkpoints.pending = None;
        None
    };
    tracing::info!(agent = %identity.agent_id, collector = %cfg.collector.url, sources = cfg.sources.len(), "agent starting");

    // A pack that cannot be read stops the start: running without the rules asked for would
    // let through what they were meant to catch or filter.
    let mut edge =
        EdgeDetector::start(&cfg.detect, &cfg.data_dir).context("cannot load the rule pack")?;
    let mut reload = tokio::time::interval(
        edge.as_ref()
            .and_then(EdgeDetector::reload_interval)
            .unwrap_or(Duration::from_secs(3600)),
    );
    reload.tick().await;
    let reload_on = edge
        .as_ref()
        .and_then(EdgeDetector::reload_interval)
        .is_some();

    let stop_sources = Arc::new(AtomicBool::new(false));
    let (src_stop_tx, src_stop_rx) = watch::channel(false);
    let (file_tx, mut file_rx) = mpsc::channel::<Vec<RawLine>>(4);
    let (journal_tx, mut journal_rx) = mpsc::channel::<(Arc<str>, Vec<JournalRecord>)>(4);
    let mut infos = HashMap::new();
    let mut tailers = Vec::new();
    let mut tailer_stats = Vec::new();
    let mut journald_counts: Vec<(Arc<str>, Arc<std::sync::atomic::AtomicU64>)> = Vec::new();
    let mut limiters: Vec<(Arc<str>, Arc<SourceLimiter>)> = Vec::new();
    for s in &cfg.sources {
        let name: Arc<str> = Arc::from(s.name.as_str());
        let limiter = s.rate.map(|r| Arc::new(SourceLimiter::new(r)));
        if let Some(l) = &limiter {
            limiters.push((name.clone(), l.clone()));
        }
        infos.insert(
            name.clone(),
            SourceInfo {
                decoder: crate::pipeline::Decoder::new(&s.format),
                logsource: s.logsource.clone(),
                dataset: s.dataset.clone(),
            },
        );
        match &s.kind {
            SourceKind::File(opts) => {
                let started = file::Tailer::new(&s.name, opts.clone(), &checkpoints, !existed)
                    .and_then(|t| {
                        let stats = t.stats_handle();
                        file::spawn_tailer(
                            t,
                            file_tx.clone(),
                            stop_sources.clone(),
                            limiter.clone(),
                        )
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
                journald_counts.push((name.clone(), Arc::default()));
                let (tx, mut rx) = mpsc::channel::<Vec<JournalRecord>>(4);
                let cursor = checkpoints.journald.get(&s.name).cloned();
                let fwd = journal_tx.clone();
                let n = name.clone();
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    while let Some(mut recs) = rx.recv().await {
                        if let Some(l) = &limiter {
                            l.filter(&mut recs);
                            l.wait(recs.len()).await;
                        }
                        if !recs.is_empty() && fwd.send((n.clone(), recs)).await.is_err() {
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

    let stats = Arc::new(ShipStats::default());
    let (losses, mut loss_rx) = LossSender::channel();
    let (sealed_tx, sealed_rx) = mpsc::channel::<SealedBatch>(1);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<(u64, Vec<Position>)>();
    let (abort_tx, abort_rx) = watch::channel(false);
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let backoff = Backoff {
        initial: Duration::from_millis(cfg.collector.initial_backoff_ms),
        max: Duration::from_secs(cfg.collector.max_backoff_secs),
    };
    let stats_client = client.clone();
    let pack_client = client.clone();
    let renew_client = client.clone();
    let config_client = client.clone();
    let config_status = Arc::new(std::sync::Mutex::new(crate::central_config::ConfigStatus {
        version: cfg.central_version.clone().unwrap_or_default(),
        error: String::new(),
    }));
    let stats_spool = spool.clone();
    let recycler = Arc::new(crate::recycle::Recycler::default());
    let shipping = if let Some(shared) = spool {
        drop((ack_tx, ack_rx));
        let writer = tokio::spawn(spooler::write(
            sealed_rx,
            shared.clone(),
            cfg.batch.compression_level,
            spooler::fsync_interval(&cfg.spool),
            cp_store,
            checkpoints,
            stats.clone(),
            losses.clone(),
            recycler.clone(),
            src_stop_rx.clone(),
        ));
        let dispatcher = tokio::spawn(spooler::dispatch(
            shared.clone(),
            client,
            backoff,
            stats.clone(),
            cfg.batch.max_in_flight,
            stopping_rx,
            abort_rx,
            losses.clone(),
        ));
        Shipping::Spool {
            shared,
            writer,
            dispatcher,
        }
    } else {
        // Without a spool, a stream is one run: sequences restart at 0.
        let stream = format!("r{}", chrono::Utc::now().timestamp_millis());
        let dispatcher = tokio::spawn(dispatch(
            sealed_rx,
            ack_tx,
            client,
            stream,
            cfg.batch.compression_level,
            backoff,
            stats.clone(),
            cfg.batch.max_in_flight,
            abort_rx,
            losses.clone(),
            recycler.clone(),
        ));
        let saver = tokio::spawn(save_checkpoints(ack_rx, cp_store, checkpoints));
        Shipping::Memory { dispatcher, saver }
    };

    let sources = StatsSources {
        ship: stats.clone(),
        tailers: tailer_stats.clone(),
        journald: journald_counts.clone(),
        config: config_status.clone(),
        spool_max_bytes: if cfg.spool.enabled {
            cfg.spool.max_bytes
        } else {
            0
        },
        spool: stats_spool,
        started_unix_secs: chrono::Utc::now().timestamp().max(0) as u64,
        detect: edge.as_ref().map(EdgeDetector::stats),
    };
    tokio::spawn(crate::renew::run(
        renew_client,
        IdentityFiles::in_dir(&cfg.data_dir),
        identity.agent_id.clone(),
        cfg.collector.renew_before_secs.map(Duration::from_secs),
        src_stop_rx.clone(),
    ));
    tokio::spawn(crate::stats::report(
        stats_client,
        sources.clone(),
        Duration::from_secs(cfg.collector.stats_interval_secs),
        src_stop_rx.clone(),
    ));
    // With `[detect] source = "collector"`, the pack comes from the collector; new packs
    // reach the pipeline loop, which swaps them in between two events.
    let (pack_tx, mut pack_rx) = mpsc::channel::<ServedPack>(1);
    let mut packs_open = false;
    if let Some(d) = edge.as_ref().filter(|d| d.from_collector()) {
        let poller = Poller::new(
            &cfg.data_dir,
            d.config().drop_rule_set(),
            d.version().map(str::to_owned),
            d.stats(),
        );
        tokio::spawn(crate::rulepack::poll(
            poller,
            pack_client,
            d.config().reload_interval(),
            pack_tx,
            src_stop_rx.clone(),
        ));
        packs_open = true;
        // Without a saved pack, give the collector a moment to answer before the first
        // events go through the pipeline, so they are evaluated (and stamped) here rather
        // than all sent for the collector to evaluate.
        if edge.as_ref().is_some_and(|d| d.version().is_none()) {
            match tokio::time::timeout(FIRST_PACK_WAIT, pack_rx.recv()).await {
                Ok(Some(pack)) => {
                    if let Some(d) = edge.as_mut() {
                        d.install(pack);
                    }
                }
                Ok(None) => packs_open = false,
                Err(_) => tracing::info!(
                    wait_secs = FIRST_PACK_WAIT.as_secs(),
                    "no rule pack from the collector yet; events go unstamped until one arrives"
                ),
            }
        }
    } else {
        drop((pack_tx, pack_client));
    }
    let metrics_server = cfg.metrics.enabled.then(|| {
        let (listen, stop_rx) = (cfg.metrics.listen, src_stop_rx.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::stats::serve(listen, sources, stop_rx).await {
                tracing::error!(listen = %listen, error = %e, "metrics endpoint cannot start; the agent runs without it");
            }
        })
    });
    if cfg.collector.central_sources {
        let poller = crate::central_config::Poller {
            client: config_client,
            data_dir: cfg.data_dir.clone(),
            local: cfg.local_source_names(),
            current: cfg.central_version.clone(),
            interval: Duration::from_secs(cfg.collector.config_interval_secs),
            status: config_status.clone(),
        };
        tokio::spawn(crate::central_config::poll(
            poller,
            reloader,
            src_stop_rx.clone(),
        ));
    }

    // Sources, spool and shipper are running: tell systemd (Type=notify), and ping its
    // watchdog while the runtime lives.
    crate::sd_notify::notify("READY=1");
    crate::sd_notify::spawn_watchdog();
    let normalizer = Normalizer::new(cfg.host_name.clone(), infos);
    let mut builder = BatchBuilder::new(cfg.batch.clone(), 0, recycler);
    let mut report = tokio::time::interval(Duration::from_secs(60));
    report.tick().await;
    let assembling = normalizer.has_assembled();
    let mut assembly_flush = tokio::time::interval(Duration::from_secs(1));
    let mut drop_check = tokio::time::interval(RATE_DROP_REPORT);
    drop_check.tick().await;
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
                    stats.lines_read.fetch_add(lines.len() as u64, Ordering::Relaxed);
                    let ctx = normalizer.context();
                    let mut stage = Stage::default();
                    for line in lines {
                        let pos = Position::File {
                            source: line.source.clone(),
                            fingerprint: line.fingerprint,
                            path: line.path.clone(),
                            offset: line.end_offset,
                        };
                        if normalizer.is_assembled(&line.source) {
                            let done = normalizer.assemble(&line, &ctx, pos);
                            for b in stage.admit_assembled(edge.as_ref(), &mut builder, done) {
                                if sealed_tx.send(b).await.is_err() { break; }
                            }
                            continue;
                        }
                        let ev = normalizer.file_line(&line, &ctx);
                        if let Some(b) = stage.admit(edge.as_ref(), &mut builder, ev, Some(pos)) {
                            if sealed_tx.send(b).await.is_err() { break; }
                        }
                    }
                    // A detection does not wait for the batch timeout, nor behind the backlog.
                    if let Some(b) = stage.finish(&shipping, &mut builder) {
                        if sealed_tx.send(b).await.is_err() { break; }
                    }
                }
                None => sources_open = false,
            },
            recs = journal_rx.recv(), if journal_open => match recs {
                Some((source, recs)) => {
                    stats.lines_read.fetch_add(recs.len() as u64, Ordering::Relaxed);
                    if let Some((_, n)) = journald_counts.iter().find(|(n, _)| *n == source) {
                        n.fetch_add(recs.len() as u64, Ordering::Relaxed);
                    }
                    let mut stage = Stage::default();
                    for r in recs {
                        let ev: Event = normalizer.journal_event(&source, r.event);
                        // An empty cursor is no position: nothing to checkpoint.
                        let pos = (!r.cursor.is_empty())
                            .then(|| Position::Journal { source: source.clone(), cursor: r.cursor });
                        if let Some(b) = stage.admit(edge.as_ref(), &mut builder, ev, pos) {
                            if sealed_tx.send(b).await.is_err() { break; }
                        }
                    }
                    if let Some(b) = stage.finish(&shipping, &mut builder) {
                        if sealed_tx.send(b).await.is_err() { break; }
                    }
                }
                None => journal_open = false,
            },
            loss = loss_rx.recv() => {
                // `losses` is held here, so this channel never closes.
                if let Some(b) = loss.and_then(|l| route_loss(&l, &normalizer, &shipping, &mut builder)) {
                    if sealed_tx.send(b).await.is_err() { break; }
                }
            }
            _ = sleep_until(deadline) => {
                if let Some(b) = builder.seal() {
                    if sealed_tx.send(b).await.is_err() { break; }
                }
            }
            _ = assembly_flush.tick(), if assembling => {
                let ctx = normalizer.context();
                let mut stage = Stage::default();
                for done in normalizer.flush_assembled(&ctx) {
                    for b in stage.admit_assembled(edge.as_ref(), &mut builder, done) {
                        if sealed_tx.send(b).await.is_err() { break; }
                    }
                }
                if let Some(b) = stage.finish(&shipping, &mut builder) {
                    if sealed_tx.send(b).await.is_err() { break; }
                }
            }
            _ = reload.tick(), if reload_on => {
                if let Some(d) = edge.as_mut() { d.reload_if_changed(); }
            }
            pack = pack_rx.recv(), if packs_open => match pack {
                Some(pack) => if let Some(d) = edge.as_mut() { d.install(pack); },
                None => packs_open = false,
            },
            _ = drop_check.tick(), if !limiters.is_empty() => {
                report_rate_drops(&limiters, &stats, &losses);
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
                    dropped_refused = stats.events_dropped.load(Ordering::Relaxed),
                    dropped_spool = stats.spool_dropped_events.load(Ordering::Relaxed),
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
    // their positions were never checkpointed. Drops not reported yet are.
    report_rate_drops(&limiters, &stats, &losses);
    while let Ok(loss) = loss_rx.try_recv() {
        if let Some(b) = route_loss(&loss, &normalizer, &shipping, &mut builder) {
            let _ = sealed_tx.send(b).await;
        }
    }
    if let Some(b) = builder.seal() {
        let _ = sealed_tx.send(b).await;
    }
    drop(sealed_tx);
    drop(file_rx);
    match shipping {
        Shipping::Memory {
            mut dispatcher,
            saver,
        } => {
            if tokio::time::timeout(STOP_GRACE, &mut dispatcher)
                .await
                .is_err()
            {
                tracing::warn!("in-flight batches not acknowledged within the grace period; they will be read and sent again at the next start");
                let _ = abort_tx.send(true);
                let _ = dispatcher.await;
            }
            let _ = saver.await;
        }
        Shipping::Spool {
            shared,
            writer,
            mut dispatcher,
        } => {
            // Everything sealed goes to disk; what is not acknowledged
            // within the grace period is sent from the spool next time.
            let _ = writer.await;
            let _ = stopping_tx.send(true);
            if tokio::time::timeout(STOP_GRACE, &mut dispatcher)
                .await
                .is_err()
            {
                tracing::warn!("in-flight batches not acknowledged within the grace period; they stay in the spool");
                let _ = abort_tx.send(true);
                let _ = dispatcher.await;
            }
            let closed = tokio::task::spawn_blocking(move || shared.lock().sync()).await;
            if let Ok(Err(e)) = closed {
                tracing::error!(error = %e, "spool: last fsync failed");
            }
        }
    }
    for t in tailers {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    // Its port must be free again if the pipeline restarts.
    if let Some(m) = metrics_server {
        let _ = tokio::time::timeout(Duration::from_secs(5), m).await;
    }
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Where sealed batches go.
enum Shipping {
    /// `spool.enabled = false`: batches wait in memory until acknowledged;
    /// the saver checkpoints acknowledged positions.
    Memory {
        dispatcher: tokio::task::JoinHandle<()>,
        saver: tokio::task::JoinHandle<()>,
    },
    Spool {
        shared: Arc<spooler::Shared>,
        writer: tokio::task::JoinHandle<()>,
        dispatcher: tokio::task::JoinHandle<()>,
    },
}

/// Ships batches straight from memory (no spool): positions are
/// checkpointed once the collector acknowledged the batch.
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
    losses: LossSender,
    recycler: Arc<crate::recycle::Recycler>,
) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(batch) = sealed.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let Some(body) = compress(batch.body, level, recycler.clone()).await else {
            break;
        };
        let out = Outgoing::new(&stream, batch.sequence, Bytes::from(body), batch.events);
        let (sequence, positions) = (batch.sequence, batch.positions);
        let (client, stats, acks, losses) =
            (client.clone(), stats.clone(), acks.clone(), losses.clone());
        let mut abort = abort.clone();
        tasks.spawn(async move {
            let outcome = ship(&client, &out, backoff, &stats, &mut abort).await;
            drop(permit);
            if outcome == Shipped::Refused {
                losses.report(loss::Loss {
                    reason: loss::REFUSED,
                    events: out.events as u64,
                    detail: format!("the collector refused batch {} for good", out.id),
                });
            }
            if outcome != Shipped::Cancelled {
                let _ = acks.send((sequence, positions));
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
