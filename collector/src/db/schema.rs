//! The control database schema: migrations applied in order, tracked by
//! `PRAGMA user_version` (`MIGRATIONS[i]` upgrades version `i` to `i + 1`).
//! Append new migrations; never edit one that has shipped.

use rusqlite::{Connection, TransactionBehavior};

use super::DbError;

/// Schema migrations; `MIGRATIONS[i]` upgrades `user_version` `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "
    CREATE TABLE enrollment_tokens (
        token_sha256 TEXT PRIMARY KEY,
        grp          TEXT NOT NULL,
        uses_total   INTEGER NOT NULL,
        uses_left    INTEGER NOT NULL,
        created_at   TEXT NOT NULL,
        expires_at   TEXT
    );
    CREATE TABLE api_tokens (
        token_sha256 TEXT PRIMARY KEY,
        name         TEXT NOT NULL UNIQUE,
        created_at   TEXT NOT NULL
    );
    CREATE TABLE agents (
        id             TEXT PRIMARY KEY,
        hostname       TEXT NOT NULL,
        grp            TEXT NOT NULL,
        version        TEXT,
        enrolled_at    TEXT NOT NULL,
        last_seen      TEXT,
        cert_serial    TEXT NOT NULL,
        cert_not_after TEXT NOT NULL,
        stats          TEXT
    );
    CREATE TABLE certificates (
        serial     TEXT PRIMARY KEY,
        agent_id   TEXT NOT NULL,
        not_after  TEXT NOT NULL,
        issued_at  TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE INDEX certificates_by_agent ON certificates(agent_id);
    CREATE TABLE batches (
        agent_id    TEXT NOT NULL,
        stream      TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        events      INTEGER NOT NULL,
        received_at TEXT NOT NULL,
        PRIMARY KEY (agent_id, stream, seq)
    ) WITHOUT ROWID;
    CREATE INDEX batches_by_time ON batches(received_at);
    CREATE TABLE dead_letters (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        agent_id    TEXT NOT NULL,
        stream      TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        line_no     INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        line        TEXT NOT NULL,
        received_at TEXT NOT NULL
    );
    ",
    // 2: commit groups. `open_group` is set before a group of batches is
    // written to the event store and cleared, with the batch ids recorded,
    // once the store committed it; found set at start, the group's events
    // are removed from the store (its batches were never acknowledged).
    "
    CREATE TABLE ingest_state (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        last_group INTEGER NOT NULL,
        open_group INTEGER
    );
    INSERT INTO ingest_state (id, last_group, open_group) VALUES (1, 0, NULL);
    ",
    // 3: when the agent's latest statistics report (`agents.stats`, from
    // `POST /v1/stats`) was received.
    "
    ALTER TABLE agents ADD COLUMN stats_at TEXT;
    ",
    // 4: edge detections stored, by the agent's `event.id`. A tagged event reaches the
    // collector twice (the agent's fast lane, then its spool, in two different batches): the
    // second copy is recognised here and not stored again.
    "
    CREATE TABLE edge_events (
        agent_id  TEXT NOT NULL,
        event_id  TEXT NOT NULL,
        stored_at TEXT NOT NULL,
        PRIMARY KEY (agent_id, event_id)
    ) WITHOUT ROWID;
    CREATE INDEX edge_events_stored_at ON edge_events (stored_at);
    ",
    // 5: alerts. One row per alert; `alert_events` links each detection (agent, event,
    // rule) to its alert once, so a detection received twice is counted once;
    // `alert_history` records who changed what.
    "
    CREATE TABLE alerts (
        id          INTEGER PRIMARY KEY,
        rule_id     TEXT NOT NULL,
        rule_title  TEXT NOT NULL,
        rule_level  TEXT NOT NULL,
        group_key   TEXT NOT NULL,
        entities    TEXT NOT NULL,
        origin      TEXT NOT NULL,
        status      TEXT NOT NULL DEFAULT 'open',
        verdict     TEXT,
        urgency     INTEGER NOT NULL,
        first_seen  TEXT NOT NULL,
        last_seen   TEXT NOT NULL,
        occurrences INTEGER NOT NULL,
        similar_to  INTEGER REFERENCES alerts (id),
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE INDEX alerts_grouping ON alerts (rule_id, group_key, status);
    CREATE INDEX alerts_last_seen ON alerts (last_seen);
    CREATE TABLE alert_events (
        agent_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        rule_id  TEXT NOT NULL,
        alert_id INTEGER NOT NULL REFERENCES alerts (id),
        seen_at  TEXT NOT NULL,
        PRIMARY KEY (agent_id, event_id, rule_id)
    ) WITHOUT ROWID;
    CREATE INDEX alert_events_alert ON alert_events (alert_id);
    CREATE TABLE alert_history (
        alert_id INTEGER NOT NULL REFERENCES alerts (id),
        at       TEXT NOT NULL,
        actor    TEXT NOT NULL,
        field    TEXT NOT NULL,
        old      TEXT,
        new      TEXT
    );
    CREATE INDEX alert_history_alert ON alert_history (alert_id);
    ",
    // 6: alert filters: Sigma-style conditions that mute matching detections (a known false
    // positive), optionally for one rule and until an expiry; `muted` counts what they muted.
    "
    CREATE TABLE alert_filters (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL,
        rule_id    TEXT,
        detection  TEXT NOT NULL,
        expires_at TEXT,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        muted      INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE alert_muted (
        filter_id INTEGER NOT NULL,
        agent_id  TEXT NOT NULL,
        event_id  TEXT NOT NULL,
        rule_id   TEXT NOT NULL,
        PRIMARY KEY (filter_id, agent_id, event_id, rule_id)
    ) WITHOUT ROWID;
    ",
    // 7: central detection: rules posted through the API, rules disabled by an analyst
    // (either origin), the history of rule-pack versions, the saved correlation state.
    "
    CREATE TABLE rules (
        id         TEXT PRIMARY KEY,
        yaml       TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE rules_disabled (
        id          TEXT PRIMARY KEY,
        disabled_by TEXT NOT NULL,
        disabled_at TEXT NOT NULL
    );
    CREATE TABLE rulepacks (
        revision     INTEGER PRIMARY KEY AUTOINCREMENT,
        version      TEXT NOT NULL UNIQUE,
        rules        INTEGER NOT NULL,
        correlations INTEGER NOT NULL,
        created_at   TEXT NOT NULL
    );
    CREATE TABLE correlation_state (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        state    TEXT NOT NULL,
        saved_at TEXT NOT NULL
    );
    ",
    // 8: push intakes (a key, stored hashed, bound to a parser) and pull-connector cursors.
    "
    CREATE TABLE intakes (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        format     TEXT NOT NULL,
        key_sha256 TEXT NOT NULL UNIQUE,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        events     INTEGER NOT NULL DEFAULT 0,
        last_seen  TEXT
    );
    CREATE TABLE connector_cursors (
        name     TEXT PRIMARY KEY,
        cursor   TEXT NOT NULL,
        saved_at TEXT NOT NULL
    );
    ",
    // 9: identities seen: users, and (user, source address) pairs of successful logins, for
    // `vigie.novelty.*` marks.
    "
    CREATE TABLE first_seen (
        kind     TEXT NOT NULL,
        key      TEXT NOT NULL,
        first_at TEXT NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;
    ",
    // 10: when an agent's reports last showed new drops (fleet status `degraded`).
    "
    ALTER TABLE agents ADD COLUMN last_drop_at TEXT;
    ",
];

/// Applies the migrations the file has not seen yet, in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if found > supported {
        return Err(DbError::SchemaTooNew { found, supported });
    }
    for (version, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.execute_batch(sql)?;
        let next = i64::try_from(version + 1).unwrap_or(i64::MAX);
        tx.pragma_update(None, "user_version", next)?;
    }
    tx.commit()?;
    Ok(())
}
