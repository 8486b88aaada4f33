//! Per-connector counters, shared between the polling task and readers (the
//! collector's API and metrics). A snapshot is a plain struct.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Counters and last outcomes of one connector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConnectorStats {
    /// Polls started.
    pub polls: u64,
    /// Polls that failed (the next one resumes from the last saved cursor).
    pub failed_polls: u64,
    /// Pages fetched successfully.
    pub pages: u64,
    /// Records handed to the sink and acknowledged.
    pub events: u64,
    /// Records dropped because they were already delivered (cursor overlap).
    pub duplicates_dropped: u64,
    /// Request attempts retried (network errors, 5xx, 429).
    pub retries: u64,
    /// HTTP 429 answers received.
    pub rate_limited: u64,
    /// Errors of any kind, retried ones included.
    pub errors: u64,
    /// The last error, one line, secrets scrubbed.
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_at: Option<DateTime<Utc>>,
    /// When the last poll completed successfully.
    pub last_success: Option<DateTime<Utc>>,
}

/// A shared, cheaply cloned handle on a connector's [`ConnectorStats`].
#[derive(Debug, Clone, Default)]
pub struct StatsHandle(Arc<Mutex<ConnectorStats>>);

impl StatsHandle {
    /// A copy of the current counters.
    pub fn snapshot(&self) -> ConnectorStats {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut ConnectorStats)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn error(&self, message: &str) {
        self.update(|s| {
            s.errors += 1;
            s.last_error = Some(message.to_owned());
            s.last_error_at = Some(Utc::now());
        });
    }
}
