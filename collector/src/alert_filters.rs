//! Alert filters: exclusions written as Sigma detections, so that a known false positive is
//! muted (for one rule or all, until an expiry) instead of reaching the analysts.
//!
//! A filter holds a `detection:` block (`selection`s and a `condition`, as in a Sigma rule);
//! a detection whose event matches it (and whose rule is the filter's, when it names one) is
//! not turned into an alert, and the filter's `muted` counter grows. Expired filters mute
//! nothing. Filters are compiled when created and when the collector starts; the compiled
//! set is replaced as a whole when one is added or deleted.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use vigie_detect::{LoadOptions, RuleSet};

use crate::db::{Db, DbError, NewDetection};

/// One compiled filter.
struct Compiled {
    id: i64,
    rule_id: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    set: RuleSet,
}

/// The filters in force.
#[derive(Default)]
pub struct AlertFilters {
    compiled: RwLock<Arc<Vec<Compiled>>>,
}

/// Compiles a filter's `detection:` block; the error says what is wrong with it.
pub fn compile(detection: &str) -> Result<RuleSet, String> {
    if detection.len() > 64 * 1024 {
        return Err("a filter's detection is at most 64 KiB".into());
    }
    let indented: String = detection.lines().map(|l| format!("  {l}\n")).collect();
    let text =
        format!("title: alert filter\nid: alert-filter\nlogsource: {{}}\ndetection:\n{indented}");
    let (set, report) = RuleSet::load_str("alert filter", &text, &LoadOptions::default());
    if let Some(r) = report.rejected.first() {
        return Err(r.reason.replace('\n', " "));
    }
    if set.is_empty() {
        return Err("the detection holds no usable selection and condition".into());
    }
    Ok(set)
}

impl AlertFilters {
    /// Compiles the stored filters; one that no longer compiles is skipped (and logged).
    pub fn load(db: &Db) -> Result<Self, DbError> {
        let f = AlertFilters::default();
        f.reload(db)?;
        Ok(f)
    }

    /// Compiles the stored filters again (after one was added or deleted).
    pub fn reload(&self, db: &Db) -> Result<(), DbError> {
        let mut out = Vec::new();
        for row in db.list_alert_filters()? {
            match compile(&row.detection) {
                Ok(set) => out.push(Compiled {
                    id: row.id,
                    rule_id: row.rule_id,
                    expires_at: row.expires_at,
                    set,
                }),
                Err(e) => {
                    tracing::warn!(filter = row.id, error = %e, "alert filter does not compile; it mutes nothing")
                }
            }
        }
        *self.compiled.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(out);
        Ok(())
    }

    /// Keeps the detections no filter mutes; returns them, and the muted ones with their filter.
    pub fn apply(
        &self,
        detections: Vec<(usize, NewDetection)>,
        events: &[Map<String, Value>],
        now: DateTime<Utc>,
    ) -> (Vec<NewDetection>, Vec<(i64, NewDetection)>) {
        let filters = self
            .compiled
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut muted: Vec<(i64, NewDetection)> = Vec::new();
        let mut kept = Vec::with_capacity(detections.len());
        for (idx, d) in detections {
            let hit = filters.iter().find(|f| {
                f.expires_at.is_none_or(|t| t > now)
                    && f.rule_id.as_ref().is_none_or(|r| *r == d.rule_id)
                    && events.get(idx).is_some_and(|ev| {
                        !f.set.evaluate_value(&Value::Object(ev.clone())).is_empty()
                    })
            });
            match hit {
                Some(f) => muted.push((f.id, d)),
                None => kept.push(d),
            }
        }
        (kept, muted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn det(rule: &str) -> NewDetection {
        NewDetection {
            agent_id: "agt_1".into(),
            event_id: "e".into(),
            rule_id: rule.into(),
            rule_title: "t".into(),
            rule_level: "high".into(),
            group_key: "[]".into(),
            entities: "{}".into(),
            origin: "edge",
            urgency: 75,
            at: Utc::now(),
        }
    }

    #[test]
    fn a_filter_mutes_what_it_matches_for_its_rule_until_it_expires() {
        let set = compile("sel:\n  process.pid|gte: 2500\ncondition: sel").unwrap();
        let now = Utc::now();
        let f = AlertFilters::default();
        *f.compiled.write().unwrap() = Arc::new(vec![Compiled {
            id: 7,
            rule_id: Some("r1".into()),
            expires_at: Some(now + chrono::Duration::days(30)),
            set,
        }]);
        let events = vec![
            json!({"process": {"pid": 2600}, "message": "x"})
                .as_object()
                .unwrap()
                .clone(),
            json!({"process": {"pid": 2400}, "message": "x"})
                .as_object()
                .unwrap()
                .clone(),
        ];
        let (kept, muted) = f.apply(
            vec![(0, det("r1")), (1, det("r1")), (0, det("r2"))],
            &events,
            now,
        );
        assert_eq!(kept.len(), 2);
        assert_eq!(muted.len(), 1);
        assert_eq!((muted[0].0, muted[0].1.rule_id.as_str()), (7, "r1"));
        // Expired: nothing muted.
        let (kept, muted) = f.apply(
            vec![(0, det("r1"))],
            &events,
            now + chrono::Duration::days(31),
        );
        assert_eq!((kept.len(), muted.len()), (1, 0));
        assert!(compile("sel:\n  a: b\ncondition: sel and nope").is_err());
    }
}
