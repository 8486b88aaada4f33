//! The scheduler: one tokio task per connector, polling at its interval,
//! backing off after failed polls, until shutdown.
//!
//! After a successful poll the next starts `interval` later. After a failed
//! poll the delay doubles from `interval` at each consecutive failure, up to
//! `error_backoff_max` (and at least what a 429 asked for). On shutdown the
//! tasks stop at their next wait or request; a page being stored is finished
//! (sink acknowledgement and cursor save) first.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use governor::{Quota, RateLimiter};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cursor::CursorStore;
use crate::http::{build_client, FetchError, HttpClient};
use crate::poll::{PollError, Poller};
use crate::sink::Sink;
use crate::spec::Connector;

/// Why [`run`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Two connectors share a name (they would share a cursor).
    #[error("connector name {0:?} is used more than once")]
    DuplicateName(String),
    /// The TLS client could not be set up.
    #[error("TLS client setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// Polls every connector on its schedule until `shutdown` completes, then
/// waits for the connector tasks to stop.
///
/// Records go to `sink` page by page; each connector's cursor is saved in
/// `store` after the sink acknowledged the page it covers. Read progress with
/// [`Connector::stats`] (take the handles before calling `run`).
pub async fn run<S: Sink>(
    connectors: Vec<Connector>,
    store: Arc<dyn CursorStore>,
    sink: Arc<S>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let mut names = HashSet::new();
    for c in &connectors {
        if !names.insert(c.name.clone()) {
            return Err(RunError::DuplicateName(c.name.clone()));
        }
    }
    let client = build_client()?;
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for connector in connectors {
        tracing::info!(
            connector = %connector.name,
            format = %connector.format,
            interval_secs = connector.interval.as_secs(),
            "connector started"
        );
        tasks.spawn(connector_loop(
            connector,
            client.clone(),
            store.clone(),
            sink.clone(),
            cancel.clone(),
        ));
    }
    shutdown.await;
    cancel.cancel();
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            tracing::error!(error = %e, "a connector task panicked");
        }
    }
    Ok(())
}

async fn connector_loop<S: Sink>(
    connector: Connector,
    client: HttpClient,
    store: Arc<dyn CursorStore>,
    sink: Arc<S>,
    cancel: CancellationToken,
) {
    let stats = connector.stats.clone();
    let name = connector.name.clone();
    let interval = connector.interval;
    let max_backoff = connector.retry.error_backoff_max.max(interval);
    let mut poller = Poller {
        limiter: RateLimiter::direct(Quota::per_minute(connector.limits.max_requests_per_minute)),
        connector,
        client,
        store,
        sink,
        state: None,
    };
    let mut failures = 0u32;
    while !cancel.is_cancelled() {
        stats.update(|s| s.polls += 1);
        let delay = match poller.poll_once(&cancel).await {
            Ok(summary) => {
                failures = 0;
                stats.update(|s| s.last_success = Some(Utc::now()));
                tracing::debug!(
                    connector = %name,
                    pages = summary.pages,
                    events = summary.events,
                    "poll done"
                );
                interval
            }
            Err(PollError::Fetch(FetchError::Cancelled)) => break,
            Err(e) => {
                failures = failures.saturating_add(1);
                let message = e.to_string();
                stats.update(|s| s.failed_polls += 1);
                // Fetch errors were already counted where they happened.
                if !matches!(e, PollError::Fetch(_)) {
                    stats.error(&message);
                }
                let factor = 1u32
                    .checked_shl(failures.saturating_sub(1))
                    .unwrap_or(u32::MAX);
                let mut delay = interval.saturating_mul(factor).min(max_backoff);
                if let PollError::Fetch(FetchError::RateLimited(wait)) = e {
                    delay = delay.max(wait);
                }
                tracing::warn!(
                    connector = %name,
                    error = %message,
                    consecutive_failures = failures,
                    next_poll_in_ms = delay.as_millis() as u64,
                    "poll failed; the cursor stays at the last stored page"
                );
                delay
            }
        };
        if sleep_or_cancel(delay, &cancel).await {
            break;
        }
    }
    tracing::info!(connector = %name, "connector stopped");
}

/// Sleeps `d`; true when cancelled first.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
