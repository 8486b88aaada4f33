//! Novelty marks: what the collector has never seen before, for rules that need history
//! (`vigie: {scope: central}` rules such as "Teleport login from a source never seen for the
//! user").
//!
//! A successful authentication (`event.category` holds `authentication`, `event.outcome` is
//! `success`) with `user.name` and `source.ip` records the pair in `first_seen`; when the pair
//! is new and the user was already known (so a fresh deployment, or a new user, does not
//! flood), the event gets `vigie.novelty.user_source_ip: true`. Pairs already seen are kept
//! in memory (up to a cap, then the cache starts over), so a known login costs no database
//! access.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use vigie_event::get_path;

use crate::db::Db;

/// Pairs kept in memory, at most.
const CACHE_CAP: usize = 500_000;

/// The novelty marker.
pub struct Novelty {
    db: Arc<Db>,
    seen: Mutex<HashSet<String>>,
}

fn is_login_success(ev: &Map<String, Value>) -> bool {
    let auth = match get_path(ev, "event.category") {
        Some(Value::Array(items)) => items.iter().any(|v| v == "authentication"),
        Some(Value::String(s)) => s == "authentication",
        _ => false,
    };
    auth && get_path(ev, "event.outcome").and_then(Value::as_str) == Some("success")
}

impl Novelty {
    pub fn new(db: Arc<Db>) -> Self {
        Novelty {
            db,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Marks the events that are new; the number marked.
    pub fn mark(&self, events: &mut [Map<String, Value>], now: DateTime<Utc>) -> u64 {
        let mut marked = 0;
        for ev in events.iter_mut() {
            if !is_login_success(ev) {
                continue;
            }
            let (Some(user), Some(ip)) = (
                get_path(ev, "user.name").and_then(Value::as_str),
                get_path(ev, "source.ip").and_then(Value::as_str),
            ) else {
                continue;
            };
            let key = format!("{user}\u{1}{ip}");
            {
                let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                if seen.contains(&key) {
                    continue;
                }
            }
            let (pair_new, user_known) = match self.db.first_seen_login(user, ip, now) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record a login for novelty marks");
                    continue;
                }
            };
            {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                if seen.len() >= CACHE_CAP {
                    seen.clear();
                }
                seen.insert(key);
            }
            if pair_new && user_known {
                let mut e = vigie_event::Event::from_map(std::mem::take(ev));
                e.set("vigie.novelty.user_source_ip", true);
                *ev = e.into_map();
                marked += 1;
            }
        }
        marked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn login(user: &str, ip: &str, outcome: &str) -> Map<String, Value> {
        json!({"event": {"category": ["authentication"], "outcome": outcome},
               "user": {"name": user}, "source": {"ip": ip}})
        .as_object()
        .cloned()
        .unwrap_or_default()
    }

    fn novel(ev: &Map<String, Value>) -> bool {
        get_path(ev, "vigie.novelty.user_source_ip") == Some(&Value::Bool(true))
    }

    #[test]
    fn a_known_user_from_a_new_address_is_marked_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = Arc::new(Db::open(&dir.path().join("vigie.db")).unwrap_or_else(|e| panic!("{e}")));
        let n = Novelty::new(db.clone());
        let now = Utc::now();
        // First ever login of alice: not marked (nothing to compare with).
        let mut evs = vec![login("alice", "198.51.100.1", "success")];
        assert_eq!(n.mark(&mut evs, now), 0);
        // Same address again: known. A failure from a new address: not a login.
        let mut evs = vec![
            login("alice", "198.51.100.1", "success"),
            login("alice", "203.0.113.9", "failure"),
        ];
        assert_eq!(n.mark(&mut evs, now), 0);
        // A new address: marked, once (a second process sees it in the database).
        let mut evs = vec![login("alice", "203.0.113.9", "success")];
        assert_eq!(n.mark(&mut evs, now), 1);
        assert!(novel(&evs[0]));
        let again = Novelty::new(db);
        let mut evs = vec![login("alice", "203.0.113.9", "success")];
        assert_eq!(again.mark(&mut evs, now), 0);
        assert!(!novel(&evs[0]));
    }
}
