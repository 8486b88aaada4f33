//! Cursors: where a connector resumes, stored as a small JSON string through
//! a [`CursorStore`] (the collector keeps them in SQLite).
//!
//! Format (version 1), every field but `v` optional:
//! ```json
//! {"v":1,
//!  "since":"2024-05-01T12:00:00.123Z", "ids":["uuid-a","uuid-b"],
//!  "next":"https://example.okta.com/api/v1/logs?after=…",
//!  "window_start":"2024-05-01T11:59:00.000Z", "window_ids":["uuid-z"],
//!  "until":"2024-05-01T12:00:05.000Z"}
//! ```
//! - `since`: the latest record time delivered (the high-water mark), and
//!   `ids`: the ids of the records delivered at exactly that time. APIs
//!   whose `since` is inclusive (Okta) send those records again; they are
//!   dropped.
//! - `next`: the URL of the next page of a window in progress (or, for
//!   connectors without a time field, where to resume polling).
//! - `window_start`/`window_ids`/`until`: the bounds of the window in
//!   progress, so that a restart finishes it with the same query.
//!
//! A cursor is saved only after the sink acknowledged the records it covers.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Ids kept per timestamp; beyond this, duplicates at that exact time may
/// be delivered again (never lost).
pub(crate) const MAX_IDS: usize = 1000;

/// A cursor store failed.
#[derive(Debug, thiserror::Error)]
#[error("cursor store: {0}")]
pub struct StoreError(pub String);

/// Durable storage of cursors, one opaque string per connector name.
///
/// `save` must be durable when it returns `Ok`. Calls are synchronous and
/// short (one row); they run on the connector's task.
pub trait CursorStore: Send + Sync {
    /// The cursor saved for `connector`, if any.
    fn load(&self, connector: &str) -> Result<Option<String>, StoreError>;
    /// Replaces the cursor of `connector`.
    fn save(&self, connector: &str, cursor: &str) -> Result<(), StoreError>;
}

/// A [`CursorStore`] in memory, for tests and dry runs.
#[derive(Debug, Default)]
pub struct MemoryCursorStore {
    cursors: Mutex<HashMap<String, String>>,
}

impl MemoryCursorStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current cursor of `connector`.
    pub fn get(&self, connector: &str) -> Option<String> {
        self.cursors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(connector)
            .cloned()
    }
}

impl CursorStore for MemoryCursorStore {
    fn load(&self, connector: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get(connector))
    }

    fn save(&self, connector: &str, cursor: &str) -> Result<(), StoreError> {
        self.cursors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(connector.to_owned(), cursor.to_owned());
        Ok(())
    }
}

/// The decoded cursor (see the module docs for the format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct CursorState {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub window_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl CursorState {
    /// The state of a first run: the window starts at `since`.
    pub fn initial(since: Option<DateTime<Utc>>) -> Self {
        Self {
            v: 1,
            since,
            ..Self::default()
        }
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        let s: Self = serde_json::from_str(text).map_err(|e| {
            format!(
                "saved cursor is not valid ({e}); delete it to restart from start_lookback_secs"
            )
        })?;
        if s.v != 1 {
            return Err(format!("saved cursor has unknown version {}", s.v));
        }
        Ok(s)
    }

    pub fn encode(&self) -> String {
        // A struct of strings and times always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether a record at `time` with `id` was already delivered.
    pub fn already_seen(&self, time: Option<DateTime<Utc>>, id: &str, timed: bool) -> bool {
        if !timed {
            return self.ids.iter().any(|i| i == id);
        }
        let Some(t) = time else { return false };
        if self.window_start.is_some_and(|ws| t < ws) {
            return true;
        }
        (Some(t) == self.window_start && self.window_ids.iter().any(|i| i == id))
            || (Some(t) == self.since && self.ids.iter().any(|i| i == id))
    }

    /// Records a delivered record (time mode): moves the high-water mark.
    pub fn observe(&mut self, time: Option<DateTime<Utc>>, id: String) {
        let Some(t) = time else { return };
        match self.since {
            Some(s) if t < s => {}
            Some(s) if t == s => {
                if self.ids.len() < MAX_IDS && !self.ids.contains(&id) {
                    self.ids.push(id);
                }
            }
            _ => {
                self.since = Some(t);
                self.ids = vec![id];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn roundtrip_and_compact() {
        let mut s = CursorState::initial(Some(t("2024-05-01T12:00:00.123Z")));
        s.ids = vec!["a".into()];
        let text = s.encode();
        assert_eq!(
            text,
            r#"{"v":1,"since":"2024-05-01T12:00:00.123Z","ids":["a"]}"#
        );
        assert_eq!(CursorState::decode(&text).unwrap(), s);
        assert!(CursorState::decode("{").unwrap_err().contains("delete it"));
        assert!(CursorState::decode(r#"{"v":2}"#).is_err());
    }

    #[test]
    fn observe_and_seen() {
        let mut s = CursorState::initial(Some(t("2024-05-01T12:00:00Z")));
        s.window_start = s.since;
        s.observe(Some(t("2024-05-01T12:00:01Z")), "a".into());
        s.observe(Some(t("2024-05-01T12:00:01Z")), "b".into());
        s.observe(Some(t("2024-05-01T12:00:00.5Z")), "c".into());
        assert_eq!(s.since, Some(t("2024-05-01T12:00:01Z")));
        assert_eq!(s.ids, vec!["a", "b"]);
        assert!(s.already_seen(Some(t("2024-05-01T12:00:01Z")), "a", true));
        assert!(!s.already_seen(Some(t("2024-05-01T12:00:01Z")), "z", true));
        // Older than the window start: already covered by an earlier window.
        assert!(s.already_seen(Some(t("2024-05-01T11:00:00Z")), "q", true));
        assert!(!s.already_seen(None, "a", true));
    }
}
