//! One poll of one connector: fetch pages from the cursor on, hand the new
//! records of each page to the sink, and save the cursor after each
//! acknowledged page.
//!
//! Two cursor modes:
//! - **time** (a `time_field` is set, Okta): a poll opens a window that
//!   starts at the high-water mark (`since`, inclusive) and, with
//!   `until_param`, ends at the poll's start. Pages are followed until one is
//!   empty or has no next link; then the window is closed and the next poll
//!   opens a new one at the new high-water mark. Records older than the
//!   window start, or at the window start / high-water time with an id
//!   already delivered, are dropped. When `max_pages_per_poll` stops a window
//!   early, its next link is saved and the next poll (or a restart) goes on
//!   from there.
//! - **link only** (no time field): the cursor is the next link, or the URL
//!   of the last page when there is none; the ids of that page's records are
//!   kept to drop them when it is fetched again.

use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use governor::DefaultDirectRateLimiter;
use http::Uri;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::cursor::{CursorState, CursorStore, StoreError, MAX_IDS};
use crate::http::{excerpt, FetchError, Fetcher, HttpClient};
use crate::sink::{Page, Sink, SinkError};
use crate::spec::{Connector, Endpoint, Pagination};
use crate::url::{link_next, resolve_same_origin, with_params};

/// Why a poll failed. The cursor stays where the last acknowledged page left it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PollError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Cursor(String),
    #[error("{0}")]
    Answer(String),
}

/// What a successful poll did.
#[derive(Debug, Default)]
pub(crate) struct PollSummary {
    pub pages: u32,
    pub events: usize,
}

/// The state of one connector across polls.
pub(crate) struct Poller<S> {
    pub connector: Connector,
    pub client: HttpClient,
    pub limiter: DefaultDirectRateLimiter,
    pub store: Arc<dyn CursorStore>,
    pub sink: Arc<S>,
    /// The cursor as last acknowledged; `None` until loaded from the store.
    pub state: Option<CursorState>,
}

impl<S: Sink> Poller<S> {
    /// Runs one poll. Cancellation interrupts waits and requests, never a
    /// sink call or the cursor save that follows it.
    pub async fn poll_once(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<PollSummary, PollError> {
        let now = Utc::now();
        let mut state = match &self.state {
            Some(s) => s.clone(),
            None => {
                let s = self.load_state(now)?;
                self.state = Some(s.clone());
                s
            }
        };
        let ep = &self.connector.endpoint;
        let timed = ep.time_field.is_some();
        if state.next.is_none() {
            state.window_start = state.since;
            state.window_ids = state.ids.clone();
            state.until = ep.until_param.as_ref().map(|_| truncate_ms(now));
        }
        let mut uri = match &state.next {
            Some(n) => resolve_same_origin(&ep.url, n).map_err(PollError::Cursor)?,
            None => with_params(&ep.url, &window_params(ep, &state)).map_err(PollError::Cursor)?,
        };
        let stats = self.connector.stats.clone();
        let fetcher = Fetcher {
            client: &self.client,
            limiter: &self.limiter,
            connector: &self.connector,
            stats: &stats,
        };
        let mut summary = PollSummary::default();
        for _ in 0..self.connector.limits.max_pages_per_poll {
            let answer = fetcher.fetch(&uri, cancel).await?;
            summary.pages += 1;
            stats.update(|s| s.pages += 1);
            let body: Value = serde_json::from_slice(&answer.body).map_err(|e| {
                PollError::Answer(format!(
                    "answer is not JSON ({e}); body starts with: {}",
                    excerpt(&answer.body, &ep.secrets)
                ))
            })?;
            let next_raw = match &ep.pagination {
                Pagination::None => None,
                Pagination::Link => link_next(&answer.headers),
                Pagination::NextField { path, .. } => path.get(&body).and_then(value_text),
            };
            let records = extract_records(ep, self.connector.limits.max_records_per_page, body)
                .map_err(PollError::Answer)?;
            let raw_count = records.len();
            let next_uri = next_raw
                .map(|n| next_uri(ep, &state, &n))
                .transpose()
                .map_err(PollError::Answer)?;

            let mut new_state = state.clone();
            let mut fresh = Vec::with_capacity(records.len());
            let mut page_ids = Vec::new();
            let (mut dups, mut untimed) = (0u64, 0u64);
            for rec in records {
                let time = ep
                    .time_field
                    .as_ref()
                    .and_then(|p| p.get(&rec))
                    .and_then(|v| ep.time_format.parse_value(v));
                if timed && time.is_none() {
                    untimed += 1;
                }
                let id = record_id(ep, &rec);
                let seen = new_state.already_seen(time, &id, timed);
                if timed {
                    if !seen {
                        new_state.observe(time, id);
                    }
                } else if page_ids.len() < MAX_IDS {
                    page_ids.push(id);
                }
                if seen {
                    dups += 1;
                } else {
                    fresh.push(rec);
                }
            }
            if untimed > 0 {
                tracing::warn!(
                    connector = %self.connector.name,
                    records = untimed,
                    "records without a readable time field: delivered, but they do not move the cursor"
                );
            }
            if !timed && raw_count > 0 {
                new_state.ids = page_ids;
            }
            let complete = raw_count == 0 || next_uri.is_none();
            match (&next_uri, complete, timed) {
                (Some(n), false, _) => new_state.next = Some(n.to_string()),
                (_, _, true) => {
                    new_state.next = None;
                    new_state.window_start = None;
                    new_state.window_ids.clear();
                    new_state.until = None;
                }
                (n, _, false) => {
                    new_state.next = Some(n.as_ref().unwrap_or(&uri).to_string());
                }
            }

            if !fresh.is_empty() {
                let n = fresh.len();
                self.sink
                    .store(Page {
                        connector: self.connector.name.clone(),
                        format: self.connector.format.clone(),
                        records: fresh,
                    })
                    .await?;
                summary.events += n;
                stats.update(|s| s.events += n as u64);
            }
            stats.update(|s| s.duplicates_dropped += dups);
            if new_state != state {
                if let Err(e) = self.store.save(&self.connector.name, &new_state.encode()) {
                    // The records are stored; keep going from memory, and
                    // the next save carries the cursor. A restart before
                    // then fetches these records again (duplicates, no loss).
                    let msg = format!("saving the cursor failed: {e}");
                    stats.error(&msg);
                    tracing::warn!(connector = %self.connector.name, error = %msg, "cursor not saved");
                }
            }
            state = new_state;
            self.state = Some(state.clone());
            match next_uri {
                Some(n) if !complete => uri = n,
                _ => break,
            }
        }
        Ok(summary)
    }

    fn load_state(&self, now: DateTime<Utc>) -> Result<CursorState, PollError> {
        match self.store.load(&self.connector.name)? {
            Some(text) => CursorState::decode(&text).map_err(PollError::Cursor),
            None => {
                let timed = self.connector.endpoint.time_field.is_some();
                let lookback =
                    TimeDelta::from_std(self.connector.start_lookback).unwrap_or(TimeDelta::MAX);
                let start = now
                    .checked_sub_signed(lookback)
                    .unwrap_or(DateTime::UNIX_EPOCH);
                Ok(CursorState::initial(timed.then(|| truncate_ms(start))))
            }
        }
    }
}

fn truncate_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}

/// The `since`/`until` query parameters of the window in `state`.
fn window_params<'a>(ep: &'a Endpoint, state: &CursorState) -> Vec<(&'a str, String)> {
    let mut params = Vec::new();
    if let (Some(p), Some(t)) = (&ep.since_param, state.window_start) {
        params.push((p.as_str(), ep.time_format.format(t)));
    }
    if let (Some(p), Some(t)) = (&ep.until_param, state.until) {
        params.push((p.as_str(), ep.time_format.format(t)));
    }
    params
}

/// The URI of the next page from a Link target or a `next_field` value.
fn next_uri(ep: &Endpoint, state: &CursorState, raw: &str) -> Result<Uri, String> {
    let looks_like_url = raw.starts_with("http://")
        || raw.starts_with("https://")
        || raw.starts_with('/')
        || raw.starts_with('?');
    match &ep.pagination {
        Pagination::NextField {
            cursor_param: Some(param),
            ..
        } if !looks_like_url => {
            let mut params = window_params(ep, state);
            params.push((param.as_str(), raw.to_owned()));
            with_params(&ep.url, &params)
        }
        Pagination::NextField {
            cursor_param: None,
            path,
        } if !looks_like_url => Err(format!(
            "`next_field` ({path}) holds a token, not a URL; set `cursor_param` to send it back"
        )),
        _ => resolve_same_origin(&ep.url, raw),
    }
}

/// A next value as text: non-empty strings and numbers; null/false/"" end.
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The records array of a page; a missing or null array is an empty page.
fn extract_records(ep: &Endpoint, max: usize, body: Value) -> Result<Vec<Value>, String> {
    let found = if ep.records.is_root() {
        Some(body)
    } else {
        ep.records.take(body)
    };
    match found {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) if a.len() > max => Err(format!(
            "page has {} records, more than max_records_per_page ({max})",
            a.len()
        )),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(format!(
            "`records` ({}) is {}, not an array of records",
            if ep.records.is_root() {
                "the body".to_owned()
            } else {
                ep.records.to_string()
            },
            kind(&other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The record's id: `id_field` when it is a string or number, else a hash
/// of the record.
fn record_id(ep: &Endpoint, rec: &Value) -> String {
    if let Some(v) = ep.id_field.as_ref().and_then(|p| p.get(rec)) {
        if let Some(s) = value_text(v) {
            return s;
        }
    }
    let bytes = serde_json::to_vec(rec).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    format!("h:{}", hex::encode(&digest[..16]))
}
