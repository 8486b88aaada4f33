//! Alerts in SQLite: raising (with similarity grouping), listing, reading and updating.
//!
//! Grouping: a detection joins the open or in-progress alert of the same rule and grouping
//! key (`occurrences` + 1, `last_seen` moves); when there is none, a new alert is raised,
//! linked (`similar_to`) to the latest closed alert of that rule and key. Each detection
//! (agent, event id, rule) is linked to its alert once (`alert_events`), so a detection
//! received twice (an agent's fast-lane copy and its spooled original) counts once.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::{fmt_time, parse_time, Db, DbError};

/// A detection to turn into an alert.
#[derive(Debug, Clone)]
pub struct NewDetection {
    pub agent_id: String,
    /// The event's id (`event.id`, or a digest of the event).
    pub event_id: String,
    pub rule_id: String,
    pub rule_title: String,
    pub rule_level: String,
    /// The entity values that group similar detections (JSON text).
    pub group_key: String,
    /// Entities shown on the alert (JSON object text).
    pub entities: String,
    /// `edge`, `collector`, `correlation`, `threat_intel` or `external`.
    pub origin: &'static str,
    pub urgency: i64,
    /// When the event happened.
    pub at: DateTime<Utc>,
}

/// What raising did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Raised {
    /// New alerts.
    pub created: u64,
    /// Detections added to an existing alert.
    pub grouped: u64,
    /// Detections already linked (a second copy).
    pub already: u64,
}

/// One alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub rule_id: String,
    pub rule_title: String,
    pub rule_level: String,
    pub entities: String,
    pub origin: String,
    pub status: String,
    pub verdict: Option<String>,
    pub urgency: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub occurrences: i64,
    pub similar_to: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One change of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRow {
    pub at: String,
    pub actor: String,
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub status: Option<String>,
    pub rule_id: Option<String>,
    pub urgency_min: Option<i64>,
    pub urgency_max: Option<i64>,
    /// `last_seen` at or after.
    pub from: Option<DateTime<Utc>>,
    /// `last_seen` before.
    pub to: Option<DateTime<Utc>>,
    /// An entity value (host, user, IP) the alert carries.
    pub entity: Option<String>,
    /// `last_seen` (default), `first_seen`, `urgency` or `occurrences`, newest/highest first.
    pub sort: AlertSort,
    pub limit: usize,
    pub offset: usize,
}

/// Sort order of a listing (descending).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AlertSort {
    #[default]
    LastSeen,
    FirstSeen,
    Urgency,
    Occurrences,
}

const COLUMNS: &str = "id, rule_id, rule_title, rule_level, entities, origin, status, verdict,
    urgency, first_seen, last_seen, occurrences, similar_to, created_at, updated_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(AlertRow, [String; 4])> {
    Ok((
        AlertRow {
            id: r.get(0)?,
            rule_id: r.get(1)?,
            rule_title: r.get(2)?,
            rule_level: r.get(3)?,
            entities: r.get(4)?,
            origin: r.get(5)?,
            status: r.get(6)?,
            verdict: r.get(7)?,
            urgency: r.get(8)?,
            first_seen: DateTime::<Utc>::MIN_UTC,
            last_seen: DateTime::<Utc>::MIN_UTC,
            occurrences: r.get(11)?,
            similar_to: r.get(12)?,
            created_at: DateTime::<Utc>::MIN_UTC,
            updated_at: DateTime::<Utc>::MIN_UTC,
        },
        [r.get(9)?, r.get(10)?, r.get(13)?, r.get(14)?],
    ))
}

fn finish((mut a, times): (AlertRow, [String; 4])) -> Result<AlertRow, DbError> {
    a.first_seen = parse_time(&times[0])?;
    a.last_seen = parse_time(&times[1])?;
    a.created_at = parse_time(&times[2])?;
    a.updated_at = parse_time(&times[3])?;
    Ok(a)
}

impl Db {
    /// Raises or groups alerts for `detections`, in one transaction.
    pub fn raise_alerts(
        &self,
        detections: &[NewDetection],
        now: DateTime<Utc>,
    ) -> Result<Raised, DbError> {
        let now_s = fmt_time(now);
        let mut out = Raised::default();
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for d in detections {
            let linked: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM alert_events
                     WHERE agent_id = ?1 AND event_id = ?2 AND rule_id = ?3)",
                params![d.agent_id, d.event_id, d.rule_id],
                |r| r.get(0),
            )?;
            if linked {
                out.already += 1;
                continue;
            }
            let at = fmt_time(d.at);
            let open: Option<i64> = tx
                .query_row(
                    "SELECT id FROM alerts WHERE rule_id = ?1 AND group_key = ?2
                         AND status IN ('open', 'in_progress') ORDER BY id DESC LIMIT 1",
                    params![d.rule_id, d.group_key],
                    |r| r.get(0),
                )
                .optional()?;
            let alert_id = match open {
                Some(id) => {
                    tx.execute(
                        "UPDATE alerts SET occurrences = occurrences + 1,
                             first_seen = MIN(first_seen, ?2), last_seen = MAX(last_seen, ?2),
                             urgency = MAX(urgency, ?3), updated_at = ?4 WHERE id = ?1",
                        params![id, at, d.urgency, now_s],
                    )?;
                    out.grouped += 1;
                    id
                }
                None => {
                    let similar: Option<i64> = tx
                        .query_row(
                            "SELECT id FROM alerts WHERE rule_id = ?1 AND group_key = ?2
                                 AND status = 'closed' ORDER BY id DESC LIMIT 1",
                            params![d.rule_id, d.group_key],
                            |r| r.get(0),
                        )
                        .optional()?;
                    tx.execute(
                        "INSERT INTO alerts (rule_id, rule_title, rule_level, group_key, entities,
                             origin, urgency, first_seen, last_seen, occurrences, similar_to,
                             created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 1, ?9, ?10, ?10)",
                        params![
                            d.rule_id,
                            d.rule_title,
                            d.rule_level,
                            d.group_key,
                            d.entities,
                            d.origin,
                            d.urgency,
                            at,
                            similar,
                            now_s
                        ],
                    )?;
                    out.created += 1;
                    tx.last_insert_rowid()
                }
            };
            tx.execute(
                "INSERT INTO alert_events (agent_id, event_id, rule_id, alert_id, seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![d.agent_id, d.event_id, d.rule_id, alert_id, now_s],
            )?;
        }
        tx.commit()?;
        Ok(out)
    }

    /// The alerts `f` selects (newest first), and how many there are in all.
    pub fn list_alerts(&self, f: &AlertFilter) -> Result<(u64, Vec<AlertRow>), DbError> {
        let mut clauses: Vec<&str> = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        use rusqlite::types::Value as V;
        if let Some(s) = &f.status {
            clauses.push("status = ?");
            args.push(V::Text(s.clone()));
        }
        if let Some(r) = &f.rule_id {
            clauses.push("rule_id = ?");
            args.push(V::Text(r.clone()));
        }
        if let Some(u) = f.urgency_min {
            clauses.push("urgency >= ?");
            args.push(V::Integer(u));
        }
        if let Some(u) = f.urgency_max {
            clauses.push("urgency <= ?");
            args.push(V::Integer(u));
        }
        if let Some(t) = f.from {
            clauses.push("last_seen >= ?");
            args.push(V::Text(fmt_time(t)));
        }
        if let Some(t) = f.to {
            clauses.push("last_seen < ?");
            args.push(V::Text(fmt_time(t)));
        }
        if let Some(e) = &f.entity {
            clauses.push("EXISTS (SELECT 1 FROM json_each(alerts.entities) WHERE value = ?)");
            args.push(V::Text(e.clone()));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let order = match f.sort {
            AlertSort::LastSeen => "last_seen DESC, id DESC",
            AlertSort::FirstSeen => "first_seen DESC, id DESC",
            AlertSort::Urgency => "urgency DESC, last_seen DESC",
            AlertSort::Occurrences => "occurrences DESC, last_seen DESC",
        };
        let conn = self.lock();
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM alerts {filter}"),
            rusqlite::params_from_iter(args.iter()),
            |r| r.get(0),
        )?;
        let mut page = args;
        page.push(V::Integer(i64::try_from(f.limit).unwrap_or(i64::MAX)));
        page.push(V::Integer(i64::try_from(f.offset).unwrap_or(i64::MAX)));
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM alerts {filter} ORDER BY {order} LIMIT ? OFFSET ?"
        ))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(page.iter()), row)?
            .collect::<Result<Vec<_>, _>>()?;
        let items = rows.into_iter().map(finish).collect::<Result<_, _>>()?;
        Ok((u64::try_from(total).unwrap_or(0), items))
    }

    /// One alert.
    pub fn get_alert(&self, id: i64) -> Result<Option<AlertRow>, DbError> {
        let r = self
            .lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM alerts WHERE id = ?1"),
                [id],
                row,
            )
            .optional()?;
        r.map(finish).transpose()
    }

    /// The `(agent, event id)` of an alert's detections, oldest first, at most `limit`.
    pub fn alert_events(&self, id: i64, limit: usize) -> Result<Vec<(String, String)>, DbError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT agent_id, event_id FROM alert_events WHERE alert_id = ?1
             ORDER BY seen_at, event_id LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![id, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Who changed what on an alert, oldest first.
    pub fn alert_history(&self, id: i64) -> Result<Vec<HistoryRow>, DbError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT at, actor, field, old, new FROM alert_history WHERE alert_id = ?1
             ORDER BY rowid",
        )?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(HistoryRow {
                    at: r.get(0)?,
                    actor: r.get(1)?,
                    field: r.get(2)?,
                    old: r.get(3)?,
                    new: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Changes an alert's status and verdict (`Some(None)` clears the verdict) and adds a
    /// comment, recording each change in its history. `None` when there is no such alert.
    pub fn update_alert(
        &self,
        id: i64,
        status: Option<&str>,
        verdict: Option<Option<&str>>,
        comment: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<AlertRow>, DbError> {
        let now_s = fmt_time(now);
        {
            let mut conn = self.lock();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<(String, Option<String>)> = tx
                .query_row(
                    "SELECT status, verdict FROM alerts WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((old_status, old_verdict)) = current else {
                return Ok(None);
            };
            let history = |field: &str, old: Option<&str>, new: Option<&str>| {
                tx.execute(
                    "INSERT INTO alert_history (alert_id, at, actor, field, old, new)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, now_s, actor, field, old, new],
                )
            };
            if let Some(s) = status.filter(|s| *s != old_status) {
                history("status", Some(&old_status), Some(s))?;
            }
            if let Some(v) = verdict.filter(|v| *v != old_verdict.as_deref()) {
                history("verdict", old_verdict.as_deref(), v)?;
            }
            if let Some(c) = comment {
                history("comment", None, Some(c))?;
            }
            tx.execute(
                "UPDATE alerts SET status = COALESCE(?2, status),
                     verdict = CASE WHEN ?3 THEN ?4 ELSE verdict END, updated_at = ?5
                 WHERE id = ?1",
                params![id, status, verdict.is_some(), verdict.flatten(), now_s],
            )?;
            tx.commit()?;
        }
        self.get_alert(id)
    }
}

#[cfg(test)]
#[path = "alerts_tests.rs"]
mod tests;
