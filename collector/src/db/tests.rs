//! Tests of the control database, each on a fresh file in a temp directory.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use super::{Db, DbError, DEAD_LETTER_LINE_MAX_BYTES, ENROLLMENT_TOKEN_PREFIX};

fn open() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("vigie.db")).unwrap();
    (dir, db)
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

/// Every byte SQLite wrote: the main file plus its WAL.
fn file_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(dir.join("vigie.db")).unwrap();
    if let Ok(wal) = std::fs::read(dir.join("vigie.db-wal")) {
        bytes.extend(wal);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn unknown_token_is_refused() {
    let (_dir, db) = open();
    db.create_enrollment_token(1, None, "default").unwrap();
    let err = db
        .consume_enrollment_token("vgt_0000", Utc::now())
        .unwrap_err();
    assert!(matches!(err, DbError::TokenUnknown), "{err:?}");
}

#[test]
fn expired_token_is_refused() {
    let (_dir, db) = open();
    let token = db
        .create_enrollment_token(5, Some(Duration::from_secs(3600)), "web")
        .unwrap();
    let now = Utc::now();
    assert_eq!(
        db.consume_enrollment_token(&token, now + chrono::Duration::minutes(59))
            .unwrap(),
        "web"
    );
    let err = db
        .consume_enrollment_token(&token, now + chrono::Duration::minutes(61))
        .unwrap_err();
    assert!(matches!(err, DbError::TokenExpired), "{err:?}");
}

#[test]
fn one_time_token_cannot_be_used_twice() {
    let (_dir, db) = open();
    let token = db.create_enrollment_token(1, None, "default").unwrap();
    assert!(token.starts_with(ENROLLMENT_TOKEN_PREFIX));
    assert_eq!(token.len(), ENROLLMENT_TOKEN_PREFIX.len() + 64);
    assert_eq!(
        db.consume_enrollment_token(&token, Utc::now()).unwrap(),
        "default"
    );
    let err = db.consume_enrollment_token(&token, Utc::now()).unwrap_err();
    assert!(matches!(err, DbError::TokenExhausted), "{err:?}");
    assert!(err.to_string().contains("used up"));
}

#[test]
fn multi_use_token_counts_uses() {
    let (_dir, db) = open();
    let token = db.create_enrollment_token(3, None, "servers").unwrap();
    let other = db.create_enrollment_token(1, None, "laptops").unwrap();
    for _ in 0..3 {
        assert_eq!(
            db.consume_enrollment_token(&token, Utc::now()).unwrap(),
            "servers"
        );
    }
    assert!(matches!(
        db.consume_enrollment_token(&token, Utc::now()),
        Err(DbError::TokenExhausted)
    ));
    // Uses are counted per token.
    assert_eq!(
        db.consume_enrollment_token(&other, Utc::now()).unwrap(),
        "laptops"
    );
    assert!(matches!(
        db.create_enrollment_token(0, None, "x"),
        Err(DbError::InvalidUses)
    ));
}

#[test]
fn concurrent_consumers_share_the_uses() {
    let (_dir, db) = open();
    let db = std::sync::Arc::new(db);
    let token = db.create_enrollment_token(4, None, "g").unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            let token = token.clone();
            std::thread::spawn(move || db.consume_enrollment_token(&token, Utc::now()).is_ok())
        })
        .collect();
    let ok = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(ok, 4);
}

#[test]
fn tokens_are_not_stored_in_clear() {
    let (dir, db) = open();
    let enroll = db.create_enrollment_token(2, None, "default").unwrap();
    db.add_api_token("admin", "vga_supersecretadmintoken")
        .unwrap();
    drop(db);
    let bytes = file_bytes(dir.path());
    assert!(!contains(&bytes, enroll.as_bytes()));
    assert!(!contains(&bytes, &enroll.as_bytes()["vgt_".len()..]));
    assert!(!contains(&bytes, b"vga_supersecretadmintoken"));
    // The name is there (the search would have found a clear token too).
    assert!(contains(&bytes, b"admin"));
}

#[cfg(unix)]
#[test]
fn database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, db) = open();
    db.create_enrollment_token(1, None, "default").unwrap();
    for name in ["vigie.db", "vigie.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
    }
}

#[test]
fn api_token_check() {
    let (_dir, db) = open();
    db.add_api_token("admin", "secret-1").unwrap();
    db.add_api_token("ci", "secret-2").unwrap();
    assert_eq!(
        db.check_api_token("secret-1").unwrap().as_deref(),
        Some("admin")
    );
    assert_eq!(
        db.check_api_token("secret-2").unwrap().as_deref(),
        Some("ci")
    );
    assert_eq!(db.check_api_token("secret-3").unwrap(), None);
    assert_eq!(db.check_api_token("").unwrap(), None);
    assert!(matches!(
        db.add_api_token("admin", "secret-4"),
        Err(DbError::ApiTokenNameTaken(name)) if name == "admin"
    ));
    // The same secret under a second name is refused too.
    assert!(db.add_api_token("other", "secret-1").is_err());
    assert_eq!(
        db.check_api_token("secret-1").unwrap().as_deref(),
        Some("admin")
    );
}

#[test]
fn agents_register_list_touch_and_revoke() {
    let (_dir, db) = open();
    db.register_agent("b-agent", "web-2", "web", "AB01", t(86_400), t(0))
        .unwrap();
    db.register_agent("a-agent", "web-1", "web", "cd02", t(86_400), t(10))
        .unwrap();

    let a = db.agent("a-agent").unwrap().unwrap();
    assert_eq!(a.hostname, "web-1");
    assert_eq!(a.group, "web");
    assert_eq!(a.enrolled_at, t(10));
    assert_eq!(a.last_seen, None);
    assert_eq!(a.version, None);
    assert_eq!(a.cert_serial, "cd02");
    assert_eq!(a.cert_not_after, t(86_400));
    assert!(!a.revoked);
    assert_eq!(db.agent("nobody").unwrap(), None);

    let ids: Vec<_> = db.agents().unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(ids, ["a-agent", "b-agent"]);

    let stats = json!({"events_sent": 12, "spool_bytes": 0});
    db.touch_agent("a-agent", t(20), Some("0.1.0"), Some(&stats))
        .unwrap();
    // Without version/stats, only last_seen moves.
    db.touch_agent("a-agent", t(30), None, None).unwrap();
    let a = db.agent("a-agent").unwrap().unwrap();
    assert_eq!(a.last_seen, Some(t(30)));
    assert_eq!(a.version.as_deref(), Some("0.1.0"));
    assert_eq!(a.stats, Some(stats));
    assert!(matches!(
        db.touch_agent("nobody", t(30), None, None),
        Err(DbError::AgentUnknown(_))
    ));

    // Serials are compared case-insensitively.
    assert!(!db.is_serial_revoked("ab01").unwrap());
    db.revoke_agent("b-agent", t(40)).unwrap();
    assert!(db.is_serial_revoked("ab01").unwrap());
    assert!(db.is_serial_revoked("AB01").unwrap());
    assert!(!db.is_serial_revoked("cd02").unwrap());
    assert!(!db.is_serial_revoked("unknown").unwrap());
    assert!(db.agent("b-agent").unwrap().unwrap().revoked);

    // Re-enrolling with a new certificate: the old serial stays revoked,
    // the agent is usable again, enrolled_at is kept.
    db.register_agent("b-agent", "web-2b", "web", "ef03", t(90_000), t(50))
        .unwrap();
    let b = db.agent("b-agent").unwrap().unwrap();
    assert!(!b.revoked);
    assert_eq!(b.hostname, "web-2b");
    assert_eq!(b.enrolled_at, t(0));
    assert!(db.is_serial_revoked("ab01").unwrap());

    // Serialises for the API.
    let v = serde_json::to_value(&b).unwrap();
    assert_eq!(v["id"], "b-agent");
    assert_eq!(v["revoked"], false);
}

#[test]
fn batches_are_seen_after_record_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigie.db");
    {
        let db = Db::open(&path).unwrap();
        assert!(!db.batch_seen("a1", "files", 7).unwrap());
        db.record_batches(
            &[
                ("a1".to_string(), "files".to_string(), 7, 100),
                ("a1".to_string(), "journald".to_string(), 7, 3),
                ("a2".to_string(), "files".to_string(), 1, 1),
            ],
            t(0),
        )
        .unwrap();
        // Recording again is harmless.
        db.record_batches(&[("a1".to_string(), "files".to_string(), 7, 100)], t(1))
            .unwrap();
        assert!(db.batch_seen("a1", "files", 7).unwrap());
    }
    let db = Db::open(&path).unwrap();
    assert!(db.batch_seen("a1", "files", 7).unwrap());
    assert!(db.batch_seen("a1", "journald", 7).unwrap());
    assert!(db.batch_seen("a2", "files", 1).unwrap());
    assert!(!db.batch_seen("a1", "files", 8).unwrap());
    assert!(!db.batch_seen("a2", "files", 7).unwrap());
    assert!(matches!(
        db.batch_seen("a1", "files", u64::MAX),
        Err(DbError::OutOfRange(_))
    ));

    db.record_batches(&[("a3".to_string(), "files".to_string(), 1, 1)], t(100))
        .unwrap();
    assert_eq!(db.prune_batches(t(50)).unwrap(), 3);
    assert!(!db.batch_seen("a1", "files", 7).unwrap());
    assert!(db.batch_seen("a3", "files", 1).unwrap());
}

#[test]
fn dead_letters_newest_first_and_capped() {
    let (_dir, db) = open();
    let long = "é".repeat(1000); // 2000 bytes
    db.add_dead_letters(
        "a1",
        "files",
        3,
        &[
            (2, "not a JSON object".to_string(), "[1,2]".to_string()),
            (5, "invalid JSON".to_string(), long),
        ],
        t(0),
    )
    .unwrap();
    db.add_dead_letters(
        "a2",
        "journald",
        9,
        &[(1, "invalid JSON".to_string(), "{".to_string())],
        t(5),
    )
    .unwrap();

    let rows = db.dead_letters(10).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].agent_id, "a2");
    assert_eq!(rows[0].seq, 9);
    assert_eq!(rows[0].line, "{");
    assert_eq!(rows[0].received_at, t(5));
    assert_eq!(rows[1].line_no, 5);
    assert!(rows[1].line.len() <= DEAD_LETTER_LINE_MAX_BYTES);
    assert_eq!(rows[1].line.len(), DEAD_LETTER_LINE_MAX_BYTES); // 512 whole "é"
    assert_eq!(rows[2].reason, "not a JSON object");
    assert_eq!(rows[2].stream, "files");
    assert_eq!(db.dead_letters(1).unwrap().len(), 1);
}

#[test]
fn schema_version_is_recorded_and_newer_files_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigie.db");
    drop(Db::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, super::schema::MIGRATIONS.len() as i64);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    let err = Db::open(&path).unwrap_err();
    assert!(
        matches!(err, DbError::SchemaTooNew { found: 999, .. }),
        "{err:?}"
    );
}

#[test]
fn open_in_missing_directory_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("vigie.db");
    let err = Db::open(&path).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn stats_reports_replace_the_previous_one_and_record_when() {
    let (_dir, db) = open();
    db.register_agent("a1", "ws-1", "default", "01", t(86_400), t(0))
        .unwrap();
    db.register_agent("a2", "ws-2", "default", "02", t(86_400), t(0))
        .unwrap();
    let a = db.agent("a1").unwrap().unwrap();
    assert_eq!((a.stats, a.stats_at), (None, None));

    let first = json!({"lines_read": 10, "dropped": {"spool_full": 1}});
    db.touch_agent("a1", t(30), Some("0.2.0"), Some(&first))
        .unwrap();
    let second = json!({"lines_read": 20, "dropped": {"spool_full": 4, "refused": 2}});
    db.touch_agent("a1", t(60), None, Some(&second)).unwrap();
    let a = db.agent("a1").unwrap().unwrap();
    assert_eq!(a.stats, Some(second.clone()));
    assert_eq!(a.stats_at, Some(t(60)));
    assert_eq!(a.last_seen, Some(t(60)));
    assert_eq!(a.version.as_deref(), Some("0.2.0"));

    // A batch (no stats) moves last_seen, not the report or its time.
    db.touch_agent("a1", t(90), None, None).unwrap();
    let a = db.agent("a1").unwrap().unwrap();
    assert_eq!(a.stats, Some(second));
    assert_eq!(a.stats_at, Some(t(60)));
    assert_eq!(a.last_seen, Some(t(90)));

    // Listed with the stats too.
    let listed = db.agents().unwrap();
    assert_eq!(listed[0].stats_at, Some(t(60)));
    assert_eq!(listed[1].stats_at, None);
}

#[test]
fn fleet_drops_sum_the_latest_reports() {
    let (_dir, db) = open();
    assert_eq!(db.fleet_drops().unwrap(), super::FleetDrops::default());
    for id in ["a1", "a2", "a3"] {
        db.register_agent(id, id, "default", id, t(86_400), t(0))
            .unwrap();
    }
    db.touch_agent(
        "a1",
        t(1),
        None,
        Some(&json!({"dropped": {"spool_full": 5, "refused": 1}})),
    )
    .unwrap();
    // Only the latest report of an agent counts.
    db.touch_agent(
        "a2",
        t(1),
        None,
        Some(&json!({"dropped": {"spool_full": 100}})),
    )
    .unwrap();
    db.touch_agent(
        "a2",
        t(2),
        None,
        Some(&json!({"dropped": {"spool_full": 7, "rate_limit": 3}})),
    )
    .unwrap();
    // Missing or odd values count as 0.
    db.touch_agent(
        "a3",
        t(2),
        None,
        Some(&json!({"dropped": {"spool_full": "lots", "refused": -4}})),
    )
    .unwrap();
    let drops = db.fleet_drops().unwrap();
    assert_eq!(
        drops,
        super::FleetDrops {
            refused: 1,
            spool_full: 12,
            rate_limit: 3,
            reporting_agents: 3,
        }
    );
}

#[test]
fn a_version_2_database_is_migrated_keeping_its_agents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigie.db");
    {
        // The schema as version 2 left it, with one agent.
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &super::schema::MIGRATIONS[..2] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", 2).unwrap();
        tx.execute(
            "INSERT INTO agents (id, hostname, grp, enrolled_at, cert_serial, cert_not_after, stats)
             VALUES ('a1', 'ws-1', 'g', '2026-01-01T00:00:00.000Z', '01',
                     '2027-01-01T00:00:00.000Z', '{\"lines_read\":1}')",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let db = Db::open(&path).unwrap();
    let a = db.agent("a1").unwrap().unwrap();
    assert_eq!(a.stats, Some(json!({"lines_read": 1})));
    assert_eq!(a.stats_at, None);
    db.touch_agent("a1", t(5), None, Some(&json!({"lines_read": 2})))
        .unwrap();
    assert_eq!(db.agent("a1").unwrap().unwrap().stats_at, Some(t(5)));
}
