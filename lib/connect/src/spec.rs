//! Validated connector definitions: what [`crate::config::ConnectorConfig`]
//! becomes once checked, with durations, parsed URLs and resolved secrets.
//!
//! Every connector kind is reduced to one [`Endpoint`]: a URL polled with a
//! time window (`since`/`until` query parameters), a dotted path to the
//! records in the JSON answer, an optional time field and id field that drive
//! the cursor, and a pagination rule. Okta is a preset of this model.
//! Fields are public so that embedders and tests can adjust timings (for
//! example millisecond backoffs in tests) after validation.

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use http::Uri;
use serde_json::Value;

use crate::secret::Secret;
use crate::stats::StatsHandle;

/// One validated connector, ready for [`crate::run`].
#[derive(Debug, Clone)]
pub struct Connector {
    /// Unique name; the cursor is stored under it.
    pub name: String,
    /// Name of the vigie parser that normalizes the records.
    pub format: String,
    /// Time between the end of one poll and the start of the next.
    pub interval: Duration,
    /// On the first run (no cursor yet), how far back the first window starts.
    pub start_lookback: Duration,
    /// Request, size and page limits.
    pub limits: Limits,
    /// Retry and backoff policy.
    pub retry: RetryPolicy,
    /// What to request and how to read the answer.
    pub endpoint: Endpoint,
    pub(crate) stats: StatsHandle,
}

impl Connector {
    /// A handle on this connector's counters; clone it before handing the
    /// connector to [`crate::run`] to read them while it runs.
    pub fn stats(&self) -> StatsHandle {
        self.stats.clone()
    }
}

/// Limits applied to each connector.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests per minute allowed by the local rate limiter (GCRA).
    pub max_requests_per_minute: NonZeroU32,
    /// Pages fetched at most in one poll; the rest waits for the next poll.
    pub max_pages_per_poll: u32,
    /// Timeout of one request, answer body included.
    pub timeout: Duration,
    /// Largest answer body read.
    pub max_response_bytes: usize,
    /// Largest number of records accepted in one page.
    pub max_records_per_page: usize,
}

/// Retries inside one poll, and backoff between failed polls.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request (network errors, 5xx, 429) before the poll is
    /// abandoned; at least 1.
    pub max_attempts: u32,
    /// First backoff delay; doubled at each attempt, with jitter.
    pub initial_backoff: Duration,
    /// Largest backoff delay between two attempts.
    pub max_backoff: Duration,
    /// Largest server-requested wait (429 `Retry-After`, `X-Rate-Limit-Reset`)
    /// slept inside a poll; a longer one abandons the poll and delays the next.
    pub max_retry_after: Duration,
    /// Largest delay between polls after consecutive failed polls (the delay
    /// doubles from `interval` at each failure).
    pub error_backoff_max: Duration,
}

/// HTTP method of the poll request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
}

/// How times are written in the `since`/`until` query parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T12:00:00.000Z`.
    Rfc3339,
    /// Seconds since the Unix epoch.
    EpochSecs,
    /// Milliseconds since the Unix epoch.
    EpochMs,
}

impl TimeFormat {
    /// Formats `t` for a query parameter. Sub-unit precision is truncated,
    /// which can only widen the window (duplicates are then dropped).
    pub(crate) fn format(self, t: DateTime<Utc>) -> String {
        match self {
            TimeFormat::Rfc3339 => t.to_rfc3339_opts(SecondsFormat::Millis, true),
            TimeFormat::EpochSecs => t.timestamp().to_string(),
            TimeFormat::EpochMs => t.timestamp_millis().to_string(),
        }
    }

    /// Reads a record's time value: RFC 3339 strings, or numbers (seconds,
    /// or milliseconds with [`TimeFormat::EpochMs`]), also as numeric strings.
    pub(crate) fn parse_value(self, v: &Value) -> Option<DateTime<Utc>> {
        let number = match v {
            Value::String(s) => {
                if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                    return Some(t.with_timezone(&Utc));
                }
                s.parse::<f64>().ok()?
            }
            Value::Number(n) => n.as_f64()?,
            _ => return None,
        };
        let ms = match self {
            TimeFormat::EpochMs => number,
            TimeFormat::Rfc3339 | TimeFormat::EpochSecs => number * 1000.0,
        };
        if !ms.is_finite() {
            return None;
        }
        // Float to integer: saturating cast, then checked by chrono.
        DateTime::from_timestamp_millis(ms.floor() as i64)
    }
}

/// How the next page of a poll is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pagination {
    /// One page per poll.
    None,
    /// RFC 8288 `Link` header with `rel="next"`.
    Link,
    /// A value in the body: a URL (absolute or relative) to follow, or a
    /// token sent back in `cursor_param`.
    NextField {
        /// Where the value is in the answer body.
        path: JsonPath,
        /// Query parameter that carries a token value back.
        cursor_param: Option<String>,
    },
}

/// A dotted path into a JSON document (`data.items`); empty means the root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonPath(Vec<String>);

impl JsonPath {
    /// Parses `a.b.c`; an empty string is the root.
    pub fn parse(s: &str) -> Self {
        if s.is_empty() {
            return Self(Vec::new());
        }
        Self(s.split('.').map(str::to_owned).collect())
    }

    /// True for the root path.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The value at this path, if any.
    pub fn get<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        let mut cur = v;
        for seg in &self.0 {
            cur = cur.get(seg.as_str())?;
        }
        Some(cur)
    }

    /// Like [`JsonPath::get`], moving the value out.
    pub(crate) fn take(&self, mut v: Value) -> Option<Value> {
        for seg in &self.0 {
            v = match v {
                Value::Object(mut m) => m.remove(seg.as_str())?,
                _ => return None,
            };
        }
        Some(v)
    }
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// What to request and how to read the answer.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The URL of the first page (static query parameters included).
    pub url: Uri,
    /// Method of every request.
    pub method: Method,
    /// Extra headers, authentication included; values are secrets.
    pub headers: Vec<(http::HeaderName, Secret)>,
    /// Path to the records array in the body; root = the body is the array.
    pub records: JsonPath,
    /// Field of each record that advances the time cursor.
    pub time_field: Option<JsonPath>,
    /// Field of each record that identifies it (dedup at the cursor time);
    /// without it a hash of the record is used.
    pub id_field: Option<JsonPath>,
    /// Query parameter carrying the window start.
    pub since_param: Option<String>,
    /// Query parameter carrying the window end (the poll's start time).
    pub until_param: Option<String>,
    /// How `since`/`until` and numeric record times are written.
    pub time_format: TimeFormat,
    /// How the next page is found.
    pub pagination: Pagination,
    /// Every secret value, to scrub from error excerpts.
    pub(crate) secrets: Vec<Secret>,
}
