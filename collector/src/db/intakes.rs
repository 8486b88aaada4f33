//! Push intakes and pull-connector cursors in SQLite. An intake's key is shown once, when it
//! is created; the table holds its SHA-256 (hex), and requests are matched by that hash.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{fmt_time, parse_time, Db, DbError};

/// Prefix of intake keys, so they are recognisable in logs and configs.
pub const INTAKE_KEY_PREFIX: &str = "vgi_";

/// One intake as stored (never its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntakeRow {
    pub id: String,
    pub name: String,
    pub format: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Events stored through it.
    pub events: i64,
    pub last_seen: Option<DateTime<Utc>>,
}

fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

type Raw = (String, String, String, String, String, i64, Option<String>);

fn intake(raw: Raw) -> Result<IntakeRow, DbError> {
    let (id, name, format, created_by, created_at, events, last_seen) = raw;
    Ok(IntakeRow {
        id,
        name,
        format,
        created_by,
        created_at: parse_time(&created_at)?,
        events,
        last_seen: last_seen.as_deref().map(parse_time).transpose()?,
    })
}

const COLUMNS: &str = "id, name, format, created_by, created_at, events, last_seen";

/// Why an intake could not be created.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("an intake named {0:?} already exists")]
    NameTaken(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Db {
    /// Creates an intake; returns it and its key (the only time the key is known).
    pub fn create_intake(
        &self,
        name: &str,
        format: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(IntakeRow, String), IntakeError> {
        let id = format!("int_{}", hex::encode(rand::random::<[u8; 8]>()));
        let key = format!(
            "{INTAKE_KEY_PREFIX}{}",
            hex::encode(rand::random::<[u8; 24]>())
        );
        let conn = self.lock();
        let taken: bool = conn
            .query_row(
                "SELECT 1 FROM intakes WHERE name = ?1",
                params![name],
                |_| Ok(()),
            )
            .optional()
            .map_err(DbError::from)?
            .is_some();
        if taken {
            return Err(IntakeError::NameTaken(name.to_owned()));
        }
        conn.execute(
            "INSERT INTO intakes (id, name, format, key_sha256, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, name, format, key_hash(&key), actor, fmt_time(now)],
        )
        .map_err(DbError::from)?;
        let row = IntakeRow {
            id,
            name: name.to_owned(),
            format: format.to_owned(),
            created_by: actor.to_owned(),
            created_at: now,
            events: 0,
            last_seen: None,
        };
        Ok((row, key))
    }

    /// The intake a key opens, if any.
    pub fn intake_by_key(&self, key: &str) -> Result<Option<IntakeRow>, DbError> {
        let conn = self.lock();
        let raw = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM intakes WHERE key_sha256 = ?1"),
                params![key_hash(key)],
                row,
            )
            .optional()?;
        drop(conn);
        raw.map(intake).transpose()
    }

    /// Every intake, by name.
    pub fn intakes(&self) -> Result<Vec<IntakeRow>, DbError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM intakes ORDER BY name"))?;
        let raws = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter().map(intake).collect()
    }

    /// Deletes an intake (its key stops working); whether it existed.
    pub fn delete_intake(&self, id: &str) -> Result<bool, DbError> {
        let conn = self.lock();
        Ok(conn.execute("DELETE FROM intakes WHERE id = ?1", params![id])? > 0)
    }

    /// Counts events stored through an intake.
    pub fn intake_seen(&self, id: &str, events: u64, now: DateTime<Utc>) -> Result<(), DbError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE intakes SET events = events + ?2, last_seen = ?3 WHERE id = ?1",
            params![id, i64::try_from(events).unwrap_or(i64::MAX), fmt_time(now)],
        )?;
        Ok(())
    }

    /// A pull connector's saved cursor.
    pub fn connector_cursor(&self, name: &str) -> Result<Option<String>, DbError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT cursor FROM connector_cursors WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Saves a pull connector's cursor.
    pub fn save_connector_cursor(
        &self,
        name: &str,
        cursor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO connector_cursors (name, cursor, saved_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, saved_at = excluded.saved_at",
            params![name, cursor, fmt_time(now)],
        )?;
        Ok(())
    }
}

impl Db {
    /// Records a successful login of `user` from `source`: whether the pair is new, and
    /// whether the user was known before this call.
    pub fn first_seen_login(
        &self,
        user: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<(bool, bool), DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = fmt_time(now);
        let user_known = tx.execute(
            "INSERT OR IGNORE INTO first_seen (kind, key, first_at) VALUES ('user', ?1, ?2)",
            params![user, at],
        )? == 0;
        let pair_new = tx.execute(
            "INSERT OR IGNORE INTO first_seen (kind, key, first_at) VALUES ('user_source_ip', ?1, ?2)",
            params![format!("{user}\u{1}{source}"), at],
        )? > 0;
        tx.commit()?;
        Ok((pair_new, user_known))
    }
}
