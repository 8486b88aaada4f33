//! Control data in SQLite: enrollment and API tokens, agents, certificate
//! serials, batch ids seen (exactly-once ingest), edge detections seen (their fast-lane
//! copy) and dead letters.
//!
//! One connection behind a mutex; every method takes `&self`, so a `Db` is
//! shared as `Arc<Db>`. The file is created with mode 0600 and opened in WAL
//! mode with `synchronous=FULL` (an acknowledged batch id must survive a power
//! loss, or a retried batch would be stored twice) and a 5 s busy timeout.
//! The schema is versioned with `PRAGMA user_version`: `MIGRATIONS[i]` moves
//! version `i` to `i + 1`, all in one transaction; a database newer than this
//! binary is refused.
//!
//! Tokens are never stored in clear: the tables hold the SHA-256 (hex) of the
//! token, and lookups are by that hash. Times are stored as RFC 3339 UTC text
//! with millisecond precision (`2024-05-01T12:00:00.000Z`), which sorts in time
//! order and reads well in the `sqlite3` shell.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Prefix of enrollment tokens, so they are recognisable in logs and configs.
pub const ENROLLMENT_TOKEN_PREFIX: &str = "vgt_";

/// Longest dead-letter line kept, in bytes (the rest is cut at a character
/// boundary).
pub const DEAD_LETTER_LINE_MAX_BYTES: usize = 1024;

/// How long a writer waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong with the control database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The database file could not be created or opened.
    #[error("cannot open the database {path}: {reason}")]
    Open {
        /// The database path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file was written by a newer Vigie.
    #[error("the database schema is version {found}, newer than this collector supports ({supported}); upgrade the collector")]
    SchemaTooNew {
        /// `user_version` found in the file.
        found: i64,
        /// Latest version this binary knows.
        supported: i64,
    },
    /// No enrollment token has this value.
    #[error("unknown enrollment token")]
    TokenUnknown,
    /// The enrollment token is past its expiry.
    #[error("enrollment token has expired; create a new one")]
    TokenExpired,
    /// Every use of the enrollment token has been consumed.
    #[error("enrollment token has already been used up; create a new one")]
    TokenExhausted,
    /// An enrollment token must allow at least one use.
    #[error("an enrollment token needs at least 1 use")]
    InvalidUses,
    /// The token time-to-live is too large to represent.
    #[error("enrollment token time-to-live is too large")]
    InvalidTtl,
    /// An API token with this name already exists.
    #[error("an API token named `{0}` already exists")]
    ApiTokenNameTaken(String),
    /// No agent has this id.
    #[error("unknown agent `{0}`")]
    AgentUnknown(String),
    /// A number does not fit SQLite's signed 64-bit integers.
    #[error("{0} is too large to store")]
    OutOfRange(&'static str),
    /// A stored value could not be read back (edited by hand?).
    #[error("corrupt value in the database: {0}")]
    Corrupt(String),
    /// Any other SQLite failure.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// An enrolled agent, as shown by the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRow {
    /// Agent id (assigned at enrollment; also the certificate CN).
    pub id: String,
    /// Hostname the agent reported at enrollment.
    pub hostname: String,
    /// Group from the enrollment token.
    pub group: String,
    /// Agent version, from its last report.
    pub version: Option<String>,
    /// When the agent enrolled (first time, kept across re-enrollments).
    pub enrolled_at: DateTime<Utc>,
    /// Last time the agent was heard from.
    pub last_seen: Option<DateTime<Utc>>,
    /// Serial (hex) of the agent's current certificate.
    pub cert_serial: String,
    /// End of validity of the current certificate.
    pub cert_not_after: DateTime<Utc>,
    /// Whether the current certificate is revoked.
    pub revoked: bool,
    /// Last statistics the agent reported (JSON; `vigie_wire::AgentStats`
    /// when they came from `POST /v1/stats`).
    pub stats: Option<serde_json::Value>,
    /// When those statistics were received.
    pub stats_at: Option<DateTime<Utc>>,
    /// When a report last showed events dropped since the one before.
    pub last_drop_at: Option<DateTime<Utc>>,
}

/// Events dropped by agents, by reason: the sum over agents of their latest
/// reports (each a total since that agent's process started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FleetDrops {
    /// Batches the collector refused for good.
    pub refused: u64,
    /// Spool full in `drop_oldest` mode.
    pub spool_full: u64,
    /// A source's rate limit in drop mode.
    pub rate_limit: u64,
    /// Agents that have reported statistics.
    pub reporting_agents: u64,
}

/// A line rejected at ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterRow {
    /// Row id, increasing with insertion.
    pub id: i64,
    /// Agent that sent the batch.
    pub agent_id: String,
    /// Stream of the batch.
    pub stream: String,
    /// Sequence number of the batch.
    pub seq: u64,
    /// Line number in the batch (1-based as given by the caller).
    pub line_no: u64,
    /// Why the line was rejected.
    pub reason: String,
    /// The start of the line (at most 1 KiB).
    pub line: String,
    /// When it was rejected.
    pub received_at: DateTime<Utc>,
}

/// The control database. `Send + Sync`; share it as `Arc<Db>`.
pub struct Db {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (creating with mode 0600 if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let open_err = |reason: String| DbError::Open {
            path: path.display().to_string(),
            reason,
        };
        create_private_file(path).map_err(|e| open_err(e.to_string()))?;
        let mut conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(format!(
                "cannot switch to WAL journal mode (got `{mode}`)"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        schema::migrate(&mut conn)?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    /// Creates an enrollment token for `uses` enrollments into `group`,
    /// expiring after `ttl` (never when `None`). Returns the clear token
    /// (`vgt_` + 64 hex digits); only its hash is stored.
    pub fn create_enrollment_token(
        &self,
        uses: u32,
        ttl: Option<Duration>,
        group: &str,
    ) -> Result<String, DbError> {
        if uses == 0 {
            return Err(DbError::InvalidUses);
        }
        let now = Utc::now();
        let expires_at = match ttl {
            Some(ttl) => {
                let ttl = chrono::Duration::from_std(ttl).map_err(|_| DbError::InvalidTtl)?;
                Some(fmt_time(
                    now.checked_add_signed(ttl).ok_or(DbError::InvalidTtl)?,
                ))
            }
            None => None,
        };
        let secret: [u8; 32] = rand::random();
        let token = format!("{ENROLLMENT_TOKEN_PREFIX}{}", hex::encode(secret));
        self.lock().execute(
            "INSERT INTO enrollment_tokens
                 (token_sha256, grp, uses_total, uses_left, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
            params![sha256_hex(&token), group, uses, fmt_time(now), expires_at],
        )?;
        Ok(token)
    }

    /// Checks the token and consumes one use, atomically; returns its group.
    pub fn consume_enrollment_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<String, DbError> {
        let hash = sha256_hex(token.trim());
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(String, i64, Option<String>)> = tx
            .query_row(
                "SELECT grp, uses_left, expires_at FROM enrollment_tokens WHERE token_sha256 = ?1",
                [&hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (group, uses_left, expires_at) = row.ok_or(DbError::TokenUnknown)?;
        if let Some(expires_at) = expires_at {
            if parse_time(&expires_at)? <= now {
                return Err(DbError::TokenExpired);
            }
        }
        if uses_left <= 0 {
            return Err(DbError::TokenExhausted);
        }
        tx.execute(
            "UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE token_sha256 = ?1",
            [&hash],
        )?;
        tx.commit()?;
        Ok(group)
    }

    /// Stores an admin API (bearer) token under `name`, hashed.
    pub fn add_api_token(&self, name: &str, clear_token: &str) -> Result<(), DbError> {
        let result = self.lock().execute(
            "INSERT INTO api_tokens (token_sha256, name, created_at) VALUES (?1, ?2, ?3)",
            params![sha256_hex(clear_token), name, fmt_time(Utc::now())],
        );
        match result {
            Ok(_) => Ok(()),
            // The name column is UNIQUE; the token hash is the PRIMARY KEY
            // (reusing a token under another name stays a plain error).
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                Err(DbError::ApiTokenNameTaken(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The name of the API token with this value, if any.
    pub fn check_api_token(&self, clear_token: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT name FROM api_tokens WHERE token_sha256 = ?1",
                [sha256_hex(clear_token)],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records an enrolled agent and its certificate (serial stored in
    /// lowercase hex). Re-registering an
    /// existing id replaces hostname, group and current certificate and keeps
    /// `enrolled_at`.
    pub fn register_agent(
        &self,
        agent_id: &str,
        hostname: &str,
        group: &str,
        cert_serial: &str,
        cert_not_after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let cert_serial = cert_serial.to_ascii_lowercase();
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO agents (id, hostname, grp, enrolled_at, cert_serial, cert_not_after)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET hostname = excluded.hostname, grp = excluded.grp,
                 cert_serial = excluded.cert_serial, cert_not_after = excluded.cert_not_after",
            params![
                agent_id,
                hostname,
                group,
                fmt_time(now),
                cert_serial,
                fmt_time(cert_not_after)
            ],
        )?;
        record_certificate(&tx, &cert_serial, agent_id, cert_not_after, now)?;
        tx.commit()?;
        Ok(())
    }

    /// One agent by id.
    pub fn agent(&self, id: &str) -> Result<Option<AgentRow>, DbError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("{AGENT_SELECT} WHERE a.id = ?1"))?;
        let raw = stmt.query_row([id], RawAgent::from_row).optional()?;
        raw.map(RawAgent::into_row).transpose()
    }

    /// Every agent, ordered by id.
    pub fn agents(&self) -> Result<Vec<AgentRow>, DbError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("{AGENT_SELECT} ORDER BY a.id"))?;
        let raws = stmt
            .query_map([], RawAgent::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        raws.into_iter().map(RawAgent::into_row).collect()
    }

    /// Marks the agent as seen at `now`, and updates its version when
    /// given; given stats replace the stored ones, received at `now`.
    /// Fails with `AgentUnknown` for an id never registered.
    pub fn touch_agent(
        &self,
        id: &str,
        now: DateTime<Utc>,
        version: Option<&str>,
        stats: Option<&serde_json::Value>,
    ) -> Result<(), DbError> {
        let stats = stats.map(serde_json::Value::to_string);
        let changed = self.lock().execute(
            "UPDATE agents SET last_seen = ?2, version = COALESCE(?3, version),
                 stats = COALESCE(?4, stats),
                 stats_at = CASE WHEN ?4 IS NULL THEN stats_at ELSE ?2 END
             WHERE id = ?1",
            params![id, fmt_time(now), version, stats],
        )?;
        if changed == 0 {
            return Err(DbError::AgentUnknown(id.to_string()));
        }
        Ok(())
    }

    /// Records that the agent's latest report showed new drops.
    pub fn record_agent_drop(&self, id: &str, now: DateTime<Utc>) -> Result<(), DbError> {
        self.lock().execute(
            "UPDATE agents SET last_drop_at = ?2 WHERE id = ?1",
            params![id, fmt_time(now)],
        )?;
        Ok(())
    }

    /// Events dropped by the fleet, by reason, from each agent's latest
    /// statistics report. Numbers that are not non-negative integers count
    /// as 0.
    pub fn fleet_drops(&self) -> Result<FleetDrops, DbError> {
        let conn = self.lock();
        // TOTAL (a float) cannot overflow, unlike SUM.
        let sums: (f64, f64, f64, i64) = conn.query_row(
            "SELECT
                 TOTAL(CASE WHEN json_type(stats, '$.dropped.refused') = 'integer'
                     THEN MAX(json_extract(stats, '$.dropped.refused'), 0) END),
                 TOTAL(CASE WHEN json_type(stats, '$.dropped.spool_full') = 'integer'
                     THEN MAX(json_extract(stats, '$.dropped.spool_full'), 0) END),
                 TOTAL(CASE WHEN json_type(stats, '$.dropped.rate_limit') = 'integer'
                     THEN MAX(json_extract(stats, '$.dropped.rate_limit'), 0) END),
                 COUNT(stats_at)
             FROM agents WHERE stats IS NOT NULL AND json_valid(stats)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        // Float to integer casts saturate.
        let n = |v: f64| v as u64;
        Ok(FleetDrops {
            refused: n(sums.0),
            spool_full: n(sums.1),
            rate_limit: n(sums.2),
            reporting_agents: u64::try_from(sums.3).unwrap_or(0),
        })
    }

    /// Records a renewed certificate: it becomes the agent's current one; the
    /// previous ones stay valid until they expire (an agent that did not get
    /// the answer retries with its old certificate). Fails with
    /// `AgentUnknown` for an unknown id.
    pub fn renew_agent_cert(
        &self,
        agent_id: &str,
        cert_serial: &str,
        cert_not_after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let cert_serial = cert_serial.to_ascii_lowercase();
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE agents SET cert_serial = ?2, cert_not_after = ?3 WHERE id = ?1",
            params![agent_id, cert_serial, fmt_time(cert_not_after)],
        )?;
        if changed == 0 {
            return Err(DbError::AgentUnknown(agent_id.to_string()));
        }
        record_certificate(&tx, &cert_serial, agent_id, cert_not_after, now)?;
        tx.commit()?;
        Ok(())
    }

    /// Every revoked certificate not yet expired, oldest revocation first (the CRL's content).
    pub fn revoked_serials(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<vigie_wire::pki::RevokedSerial>, DbError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT serial, revoked_at, not_after FROM certificates
             WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (serial_hex, revoked_at, not_after) = row?;
            if parse_time(&not_after)? < now {
                continue;
            }
            out.push(vigie_wire::pki::RevokedSerial {
                serial_hex,
                revoked_at: parse_time(&revoked_at)?,
            });
        }
        Ok(out)
    }

    /// Revokes every certificate issued to the agent (the ingest path checks
    /// [`Db::is_serial_revoked`]). Fails with `AgentUnknown` for an unknown id.
    pub fn revoke_agent(&self, id: &str, now: DateTime<Utc>) -> Result<(), DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let known: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM agents WHERE id = ?1)",
            [id],
            |r| r.get(0),
        )?;
        if !known {
            return Err(DbError::AgentUnknown(id.to_string()));
        }
        tx.execute(
            "UPDATE certificates SET revoked_at = ?2 WHERE agent_id = ?1 AND revoked_at IS NULL",
            params![id, fmt_time(now)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Whether the certificate with this serial (hex, any case) has been
    /// revoked. A serial never recorded is not revoked.
    pub fn is_serial_revoked(&self, serial_hex: &str) -> Result<bool, DbError> {
        Ok(self.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM certificates
                 WHERE serial = ?1 AND revoked_at IS NOT NULL)",
            [serial_hex.to_ascii_lowercase()],
            |r| r.get(0),
        )?)
    }

    /// Whether the batch `(agent_id, stream, seq)` was already recorded.
    pub fn batch_seen(&self, agent_id: &str, stream: &str, seq: u64) -> Result<bool, DbError> {
        Ok(self.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM batches
                 WHERE agent_id = ?1 AND stream = ?2 AND seq = ?3)",
            params![agent_id, stream, to_i64(seq, "batch sequence")?],
            |r| r.get(0),
        )?)
    }

    /// The commit group left open by a crash (its events may be partly in
    /// the event store, its batches were never acknowledged), and the last
    /// group number used.
    pub fn ingest_groups(&self) -> Result<(Option<u64>, u64), DbError> {
        let (open, last): (Option<i64>, i64) = self.lock().query_row(
            "SELECT open_group, last_group FROM ingest_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((
            open.map(|g| u64::try_from(g).unwrap_or(0)),
            u64::try_from(last).unwrap_or(0),
        ))
    }

    /// Marks `group` open: set (durably) before any of its events may reach
    /// the event store.
    pub fn open_group(&self, group: u64) -> Result<(), DbError> {
        let g = to_i64(group, "commit group")?;
        self.lock().execute(
            "UPDATE ingest_state SET open_group = ?1, last_group = MAX(last_group, ?1) WHERE id = 1",
            params![g],
        )?;
        Ok(())
    }

    /// Clears the open group after its events were removed from the store.
    pub fn abandon_group(&self) -> Result<(), DbError> {
        self.lock()
            .execute("UPDATE ingest_state SET open_group = NULL WHERE id = 1", [])?;
        Ok(())
    }

    /// Records the batch ids `(agent_id, stream, seq, events)` of a
    /// committed group and closes the group, in ONE transaction (one fsync
    /// per group commit). Ids already recorded are left as they were.
    pub fn record_batches(
        &self,
        ids: &[(String, String, u64, u64)],
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        self.close_group(ids, &[], now, None)
    }

    /// [`Db::record_batches`], opening group `next` in the same transaction
    /// (so the next group costs no fsync of its own).
    pub fn close_group(
        &self,
        ids: &[(String, String, u64, u64)],
        edge_events: &[(String, String)],
        now: DateTime<Utc>,
        next: Option<u64>,
    ) -> Result<(), DbError> {
        let now = fmt_time(now);
        let next = next.map(|g| to_i64(g, "commit group")).transpose()?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE ingest_state SET open_group = ?1,
                 last_group = MAX(last_group, COALESCE(?1, last_group)) WHERE id = 1",
            params![next],
        )?;
        {
            let mut stmt = tx.prepare(
                "INSERT OR IGNORE INTO batches (agent_id, stream, seq, events, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (agent_id, stream, seq, events) in ids {
                stmt.execute(params![
                    agent_id,
                    stream,
                    to_i64(*seq, "batch sequence")?,
                    to_i64(*events, "batch event count")?,
                    now
                ])?;
            }
        }
        if !edge_events.is_empty() {
            let mut stmt = tx.prepare(
                "INSERT OR IGNORE INTO edge_events (agent_id, event_id, stored_at)
                 VALUES (?1, ?2, ?3)",
            )?;
            for (agent_id, event_id) in edge_events {
                stmt.execute(params![agent_id, event_id, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether an edge detection with this `event.id` from this agent is already stored
    /// (its other copy, from the fast lane or the spool, came first).
    pub fn edge_event_seen(&self, agent_id: &str, event_id: &str) -> Result<bool, DbError> {
        Ok(self.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM edge_events WHERE agent_id = ?1 AND event_id = ?2)",
            params![agent_id, event_id],
            |r| r.get(0),
        )?)
    }

    /// Forgets batch ids recorded before `before`; returns how many. A batch
    /// retried after that would be stored again, so keep well over the
    /// agents' longest retry horizon.
    pub fn prune_batches(&self, before: DateTime<Utc>) -> Result<usize, DbError> {
        let conn = self.lock();
        let before = fmt_time(before);
        conn.execute("DELETE FROM edge_events WHERE stored_at < ?1", [&before])?;
        Ok(conn.execute("DELETE FROM batches WHERE received_at < ?1", [&before])?)
    }

    /// Stores the lines of batch `(agent_id, stream, seq)` rejected at ingest:
    /// `(line number, reason, start of the line)`. Lines are cut to
    /// [`DEAD_LETTER_LINE_MAX_BYTES`].
    pub fn add_dead_letters(
        &self,
        agent_id: &str,
        stream: &str,
        seq: u64,
        lines: &[(usize, String, String)],
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let now = fmt_time(now);
        let seq = to_i64(seq, "batch sequence")?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO dead_letters (agent_id, stream, seq, line_no, reason, line, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (line_no, reason, line) in lines {
                let line_no =
                    i64::try_from(*line_no).map_err(|_| DbError::OutOfRange("line number"))?;
                stmt.execute(params![
                    agent_id,
                    stream,
                    seq,
                    line_no,
                    reason,
                    truncate_at_char(line, DEAD_LETTER_LINE_MAX_BYTES),
                    now
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The most recent dead letters, newest first, at most `limit`.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetterRow>, DbError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, agent_id, stream, seq, line_no, reason, line, received_at
             FROM dead_letters ORDER BY id DESC LIMIT ?1",
        )?;
        let raws = stmt
            .query_map([limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        raws.into_iter()
            .map(
                |(id, agent_id, stream, seq, line_no, reason, line, received_at)| {
                    Ok(DeadLetterRow {
                        id,
                        agent_id,
                        stream,
                        seq: to_u64(seq, "dead letter sequence")?,
                        line_no: to_u64(line_no, "dead letter line number")?,
                        reason,
                        line,
                        received_at: parse_time(&received_at)?,
                    })
                },
            )
            .collect()
    }

    /// The connection. A panic while it was held cannot leave a transaction
    /// open (rusqlite rolls back on drop), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const AGENT_SELECT: &str = "SELECT a.id, a.hostname, a.grp, a.version, a.enrolled_at, a.last_seen,
        a.cert_serial, a.cert_not_after, a.stats, a.stats_at,
        EXISTS (SELECT 1 FROM certificates c
                WHERE c.serial = a.cert_serial AND c.revoked_at IS NOT NULL),
        a.last_drop_at
    FROM agents a";

/// An agents row as stored, before its text columns are parsed.
struct RawAgent {
    id: String,
    hostname: String,
    group: String,
    version: Option<String>,
    enrolled_at: String,
    last_seen: Option<String>,
    cert_serial: String,
    cert_not_after: String,
    stats: Option<String>,
    stats_at: Option<String>,
    revoked: bool,
    last_drop_at: Option<String>,
}

impl RawAgent {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawAgent> {
        Ok(RawAgent {
            id: r.get(0)?,
            hostname: r.get(1)?,
            group: r.get(2)?,
            version: r.get(3)?,
            enrolled_at: r.get(4)?,
            last_seen: r.get(5)?,
            cert_serial: r.get(6)?,
            cert_not_after: r.get(7)?,
            stats: r.get(8)?,
            stats_at: r.get(9)?,
            revoked: r.get(10)?,
            last_drop_at: r.get(11)?,
        })
    }

    fn into_row(self) -> Result<AgentRow, DbError> {
        let stats = match self.stats {
            Some(s) => Some(
                serde_json::from_str(&s)
                    .map_err(|e| DbError::Corrupt(format!("stats of agent {}: {e}", self.id)))?,
            ),
            None => None,
        };
        Ok(AgentRow {
            hostname: self.hostname,
            group: self.group,
            version: self.version,
            enrolled_at: parse_time(&self.enrolled_at)?,
            last_seen: self.last_seen.as_deref().map(parse_time).transpose()?,
            cert_serial: self.cert_serial,
            cert_not_after: parse_time(&self.cert_not_after)?,
            revoked: self.revoked,
            stats,
            stats_at: self.stats_at.as_deref().map(parse_time).transpose()?,
            last_drop_at: self.last_drop_at.as_deref().map(parse_time).transpose()?,
            id: self.id,
        })
    }
}

/// Creates the file with mode 0600 if it does not exist yet (SQLite gives its
/// `-wal` and `-shm` files the same mode).
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Records a certificate issued to `agent_id` (kept for revocation and the CRL).
fn record_certificate(
    tx: &rusqlite::Transaction<'_>,
    serial: &str,
    agent_id: &str,
    not_after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO certificates (serial, agent_id, not_after, issued_at)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT(serial) DO NOTHING",
        params![serial, agent_id, fmt_time(not_after), fmt_time(now)],
    )?;
    Ok(())
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, DbError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| DbError::Corrupt(format!("time `{s}`: {e}")))
}

fn to_i64(v: u64, what: &'static str) -> Result<i64, DbError> {
    i64::try_from(v).map_err(|_| DbError::OutOfRange(what))
}

fn to_u64(v: i64, what: &str) -> Result<u64, DbError> {
    u64::try_from(v).map_err(|_| DbError::Corrupt(format!("negative {what} {v}")))
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

mod alert_filters;
mod alerts;
mod intakes;
mod rules;
mod schema;

pub use alert_filters::FilterRow;
pub use alerts::{AlertFilter, AlertRow, AlertSort, HistoryRow, NewDetection, Raised};
pub use intakes::{IntakeError, IntakeRow, INTAKE_KEY_PREFIX};
pub use rules::ApiRule;
#[cfg(test)]
mod tests;
