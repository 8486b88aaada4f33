//! Alert filters in SQLite: created, listed, deleted, and the count of what each muted.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::Serialize;

use super::{fmt_time, parse_time, Db, DbError};

/// One alert filter as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterRow {
    pub id: i64,
    pub name: String,
    /// Only detections of this rule (any rule when absent).
    pub rule_id: Option<String>,
    /// The Sigma `detection:` block (YAML) that a muted event matches.
    pub detection: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Detections muted so far.
    pub muted: i64,
}

impl Db {
    /// Stores a filter; returns its id.
    pub fn create_alert_filter(
        &self,
        name: &str,
        rule_id: Option<&str>,
        detection: &str,
        expires_at: Option<DateTime<Utc>>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, DbError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO alert_filters (name, rule_id, detection, expires_at, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![name, rule_id, detection, expires_at.map(fmt_time), actor, fmt_time(now)],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Every filter, oldest first.
    pub fn list_alert_filters(&self) -> Result<Vec<FilterRow>, DbError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, name, rule_id, detection, expires_at, created_by, created_at, muted
             FROM alert_filters ORDER BY id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(
                |(id, name, rule_id, detection, expires_at, created_by, created_at, muted)| {
                    Ok(FilterRow {
                        id,
                        name,
                        rule_id,
                        detection,
                        expires_at: expires_at.as_deref().map(parse_time).transpose()?,
                        created_by,
                        created_at: parse_time(&created_at)?,
                        muted,
                    })
                },
            )
            .collect()
    }

    /// Deletes a filter; `false` when there was none.
    pub fn delete_alert_filter(&self, id: i64) -> Result<bool, DbError> {
        let conn = self.lock();
        conn.execute("DELETE FROM alert_muted WHERE filter_id = ?1", [id])?;
        Ok(conn.execute("DELETE FROM alert_filters WHERE id = ?1", [id])? > 0)
    }

    /// Records detections a filter muted, `(filter id, detection)`: each (agent, event, rule)
    /// counts once per filter, however many copies of it arrive. Returns how many were new.
    pub fn add_muted(&self, muted: &[(i64, super::NewDetection)]) -> Result<u64, DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut new = 0;
        for (id, d) in muted {
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO alert_muted (filter_id, agent_id, event_id, rule_id)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id, d.agent_id, d.event_id, d.rule_id],
            )?;
            if inserted > 0 {
                tx.execute(
                    "UPDATE alert_filters SET muted = muted + 1 WHERE id = ?1",
                    [id],
                )?;
                new += 1;
            }
        }
        tx.commit()?;
        Ok(new)
    }
}
