//! Central detection in SQLite: rules posted through the API (one row per rule, its YAML
//! document), the ids an analyst disabled (API or file rules), the history of rule-pack
//! versions (a revision number per version ever served) and the saved correlation state.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{fmt_time, parse_time, Db, DbError};

/// A rule posted through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRule {
    pub id: String,
    pub yaml: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Db {
    /// Every API rule, by id.
    pub fn api_rules(&self) -> Result<Vec<ApiRule>, DbError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, yaml, created_by, created_at, updated_at FROM rules ORDER BY id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, yaml, created_by, c, u)| {
                Ok(ApiRule {
                    id,
                    yaml,
                    created_by,
                    created_at: parse_time(&c)?,
                    updated_at: parse_time(&u)?,
                })
            })
            .collect()
    }

    /// Stores API rules (`(id, yaml)`), replacing those with the same ids, in one transaction.
    pub fn put_api_rules(
        &self,
        rules: &[(String, String)],
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for (id, yaml) in rules {
            tx.execute(
                "INSERT INTO rules (id, yaml, created_by, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (id) DO UPDATE SET yaml = excluded.yaml, updated_at = excluded.updated_at",
                params![id, yaml, actor, fmt_time(now)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes an API rule; whether it existed.
    pub fn delete_api_rule(&self, id: &str) -> Result<bool, DbError> {
        let conn = self.lock();
        let n = conn.execute("DELETE FROM rules WHERE id = ?1", params![id])?;
        conn.execute("DELETE FROM rules_disabled WHERE id = ?1", params![id])?;
        Ok(n > 0)
    }

    /// The ids disabled by analysts.
    pub fn disabled_rules(&self) -> Result<Vec<String>, DbError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT id FROM rules_disabled ORDER BY id")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    /// Disables (or enables again) a rule; whether that changed anything.
    pub fn set_rule_disabled(
        &self,
        id: &str,
        disabled: bool,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let conn = self.lock();
        let n = if disabled {
            conn.execute(
                "INSERT OR IGNORE INTO rules_disabled (id, disabled_by, disabled_at) VALUES (?1, ?2, ?3)",
                params![id, actor, fmt_time(now)],
            )?
        } else {
            conn.execute("DELETE FROM rules_disabled WHERE id = ?1", params![id])?
        };
        Ok(n > 0)
    }

    /// The revision number of a pack version, recording it when it is new.
    pub fn rulepack_revision(
        &self,
        version: &str,
        rules: usize,
        correlations: usize,
        now: DateTime<Utc>,
    ) -> Result<i64, DbError> {
        let conn = self.lock();
        let known: Option<i64> = conn
            .query_row(
                "SELECT revision FROM rulepacks WHERE version = ?1",
                params![version],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(rev) = known {
            return Ok(rev);
        }
        conn.execute(
            "INSERT INTO rulepacks (version, rules, correlations, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                version,
                i64::try_from(rules).unwrap_or(i64::MAX),
                i64::try_from(correlations).unwrap_or(i64::MAX),
                fmt_time(now)
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Saves the correlation state (replacing the previous one).
    pub fn save_correlation_state(&self, state: &str, now: DateTime<Utc>) -> Result<(), DbError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO correlation_state (id, state, saved_at) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, saved_at = excluded.saved_at",
            params![state, fmt_time(now)],
        )?;
        Ok(())
    }

    /// The saved correlation state, if any.
    pub fn correlation_state(&self) -> Result<Option<String>, DbError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT state FROM correlation_state WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }
}
