//! `vigie-collector serve`: wires storage, the indexer, the HTTP routes and
//! the TLS listener together, and shuts them down in order (stop accepting,
//! last commit, close) so nothing acknowledged is lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vigie_wire::pki::{self, CertifiedKey};

use crate::api::{router, AppState};
use crate::config::CollectorConfig;
use crate::db::Db;
use crate::ingest::Indexer;
use crate::listener;
use crate::metrics::Metrics;
use crate::quota::Quotas;
use crate::store::{Store, StoreConfig};

/// A running collector.
pub struct Running {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: CancellationToken,
    serve: tokio::task::JoinHandle<()>,
    indexer: std::thread::JoinHandle<()>,
}

fn read(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Opens everything and starts listening. `listener` overrides `cfg.listen`.
pub async fn start(cfg: CollectorConfig, listener: Option<TcpListener>) -> Result<Running> {
    let db = Arc::new(Db::open(&cfg.db_path()).context("opening the database")?);
    let store = Arc::new(
        Store::open(
            &cfg.events_dir(),
            StoreConfig {
                writer_memory_bytes: cfg.storage.writer_memory_bytes,
                retention_days: cfg.storage.retention_days,
                writer_threads: cfg.storage.writer_threads,
            },
        )
        .context("opening the event store")?,
    );
    let ca = CertifiedKey {
        cert_pem: read(&cfg.tls.ca_file)?,
        key_pem: read(&cfg.tls.ca_key_file)?,
    };
    // Keeps the CRL's nextUpdate ahead; revocations themselves are in the database.
    if let Err(e) = crate::revoke::write_crl(&cfg, &db, &ca, chrono::Utc::now()) {
        tracing::warn!(error = %e, "cannot refresh the CRL");
    }
    let tls = pki::server_tls_config(
        &read(&cfg.tls.cert_file)?,
        &read(&cfg.tls.key_file)?,
        &ca.cert_pem,
    )
    .context("building the TLS configuration")?;
    let metrics = Arc::new(Metrics::default());
    let (indexer, indexer_join) =
        Indexer::spawn(store.clone(), db.clone(), metrics.clone(), &cfg.storage)
            .context("starting the indexer")?;
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?,
    };
    let addr = listener.local_addr()?;
    let alert_filters =
        crate::alert_filters::AlertFilters::load(&db).context("loading the alert filters")?;
    let central = Arc::new(
        crate::central::Central::start(&cfg.detection, db.clone())
            .context("loading the rule pack ([detection])")?,
    );
    {
        let pack = central.pack();
        tracing::info!(version = %pack.version(), revision = pack.revision, rules = pack.set.len(), correlations = pack.set.correlations().len(), rejected = pack.report.rejected.len(), "rule pack loaded");
    }
    let connectors =
        crate::connectors::validate(&cfg.connectors).context("invalid [[connectors]]")?;
    let state = Arc::new(AppState {
        connectors: connectors
            .iter()
            .map(|c| (c.name.clone(), c.format.clone(), c.stats()))
            .collect(),
        central,
        quotas: Quotas::new(&cfg.ingest),
        cfg,
        db: db.clone(),
        store: store.clone(),
        indexer,
        metrics,
        ca,
        started: Instant::now(),
        alert_filters,
        hunts: Default::default(),
    });
    let shutdown = CancellationToken::new();
    spawn_retention(store, db.clone(), shutdown.clone());
    spawn_correlation_clock(state.clone(), shutdown.clone());
    if !connectors.is_empty() {
        let cursors = Arc::new(crate::connectors::DbCursors(db.clone()));
        let sink = Arc::new(crate::connectors::StoreSink(state.clone()));
        let stop = shutdown.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(e) = vigie_connect::run(connectors, cursors, sink, stop).await {
                tracing::error!(error = %e, "pull connectors stopped");
            }
        });
    }
    let serve = tokio::spawn(listener::serve(
        listener,
        Arc::new(tls),
        router(state.clone()),
        shutdown.clone(),
    ));
    tracing::info!(addr = %addr, "collector listening");
    Ok(Running {
        addr,
        state,
        shutdown,
        serve,
        indexer: indexer_join,
    })
}

/// Moves the correlation watermark with the clock every second (a window closes even when no
/// new detection arrives), raising what fired, and saves the correlation state.
fn spawn_correlation_clock(state: Arc<AppState>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut last_save = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let st = state.clone();
            let fired = tokio::task::spawn_blocking(move || st.central.tick(Utc::now()))
                .await
                .unwrap_or_default();
            if !fired.is_empty() {
                let events: Vec<_> = fired.iter().map(crate::alerts::entity_event).collect();
                let detections: Vec<_> = fired.into_iter().enumerate().collect();
                crate::api::agent::filter_and_raise(&state, detections, events).await;
            }
            if last_save.elapsed() >= state.central.save_interval() {
                last_save = Instant::now();
                save_correlations(&state).await;
            }
        }
        save_correlations(&state).await;
    });
}

async fn save_correlations(state: &Arc<AppState>) {
    let st = state.clone();
    match tokio::task::spawn_blocking(move || st.central.save_state()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot save the correlation state"),
        Err(e) => tracing::warn!(error = %e, "cannot save the correlation state"),
    }
}

/// How long batch ids are remembered for duplicate detection. An agent
/// retrying a batch older than this (after a two-week outage) would store it
/// again; the spool's own limits make that unlikely.
const BATCH_ID_RETENTION_DAYS: i64 = 14;

fn spawn_retention(store: Arc<Store>, db: Arc<Db>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let before = Utc::now() - chrono::Duration::days(BATCH_ID_RETENTION_DAYS);
            let d = db.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || d.prune_batches(before)).await {
                tracing::warn!(error = %e, "pruning old batch ids failed");
            }
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.apply_retention(Utc::now())).await {
                Ok(Ok(days)) if !days.is_empty() => {
                    tracing::info!(days = ?days, "retention removed old day indexes")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
                _ => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        }
    });
}

impl Running {
    /// Stops accepting, commits what is pending and waits for the indexer.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.serve.await;
        save_correlations(&self.state).await;
        // The router (and so the indexer handle) lives in connection tasks
        // that end with the shutdown; the state holds the last handle.
        drop(self.state);
        let join = self.indexer;
        let waited = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || join.join()),
        )
        .await;
        if waited.is_err() {
            tracing::warn!("indexer did not stop within 30 s");
        }
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn serve(cfg: CollectorConfig) -> Result<()> {
    let running = start(cfg, None).await?;
    vigie_agent::sd_notify::notify("READY=1");
    vigie_agent::sd_notify::spawn_watchdog();
    wait_for_signal().await;
    tracing::info!("shutting down");
    vigie_agent::sd_notify::notify("STOPPING=1");
    running.stop().await;
    Ok(())
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
