//! Alerts in SQLite: grouping, a new alert after close, detections counted once, changes
//! recorded, listing filters.

use chrono::{DateTime, TimeZone, Utc};

use super::*;

fn open() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("vigie.db")).unwrap();
    (dir, db)
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn det(event: &str, rule: &str, host: &str, at: i64) -> NewDetection {
    NewDetection {
        agent_id: "agt_1".into(),
        event_id: event.into(),
        rule_id: rule.into(),
        rule_title: format!("title of {rule}"),
        rule_level: "high".into(),
        group_key: format!(r#"["{host}",null,null,null]"#),
        entities: format!(r#"{{"host.name":"{host}"}}"#),
        origin: "edge",
        urgency: 75,
        at: t(at),
    }
}

fn all(db: &Db) -> Vec<AlertRow> {
    db.list_alerts(&AlertFilter {
        limit: 100,
        ..AlertFilter::default()
    })
    .unwrap()
    .1
}

#[test]
fn detections_group_by_rule_and_entities_and_count_once() {
    let (_d, db) = open();
    let r = db
        .raise_alerts(
            &[
                det("e1", "r1", "web-1", 10),
                det("e2", "r1", "web-1", 5),
                det("e3", "r1", "web-2", 20),
                det("e1", "r2", "web-1", 10),
            ],
            t(30),
        )
        .unwrap();
    assert_eq!(
        r,
        Raised {
            created: 3,
            grouped: 1,
            already: 0
        }
    );
    // The same detection again (an agent's fast-lane copy, then its spooled original).
    let again = db
        .raise_alerts(&[det("e2", "r1", "web-1", 5)], t(40))
        .unwrap();
    assert_eq!(again.already, 1);
    let alerts = all(&db);
    assert_eq!(alerts.len(), 3);
    let web1 = alerts
        .iter()
        .find(|a| a.rule_id == "r1" && a.entities.contains("web-1"))
        .unwrap();
    assert_eq!(web1.occurrences, 2);
    assert_eq!((web1.first_seen, web1.last_seen), (t(5), t(10)));
    assert_eq!(db.alert_events(web1.id, 10).unwrap().len(), 2);
}

#[test]
fn after_close_a_new_alert_is_raised_and_linked_as_similar() {
    let (_d, db) = open();
    db.raise_alerts(&[det("e1", "r1", "web-1", 1)], t(2))
        .unwrap();
    let first = all(&db)[0].clone();
    // In progress: still grouped.
    db.update_alert(first.id, Some("in_progress"), None, None, "alice", t(3))
        .unwrap();
    db.raise_alerts(&[det("e2", "r1", "web-1", 4)], t(5))
        .unwrap();
    assert_eq!(db.get_alert(first.id).unwrap().unwrap().occurrences, 2);
    // Closed: the next one is a new alert, similar to the first.
    db.update_alert(
        first.id,
        Some("closed"),
        Some(Some("true_positive")),
        Some("contained"),
        "alice",
        t(6),
    )
    .unwrap();
    db.raise_alerts(&[det("e3", "r1", "web-1", 7)], t(8))
        .unwrap();
    let alerts = all(&db);
    assert_eq!(alerts.len(), 2);
    let new = alerts.iter().find(|a| a.id != first.id).unwrap();
    assert_eq!(new.similar_to, Some(first.id));
    assert_eq!(new.status, "open");
    assert_eq!(new.occurrences, 1);
    let history = db.alert_history(first.id).unwrap();
    let fields: Vec<(&str, Option<&str>, Option<&str>)> = history
        .iter()
        .map(|h| (h.field.as_str(), h.old.as_deref(), h.new.as_deref()))
        .collect();
    assert_eq!(
        fields,
        [
            ("status", Some("open"), Some("in_progress")),
            ("status", Some("in_progress"), Some("closed")),
            ("verdict", None, Some("true_positive")),
            ("comment", None, Some("contained")),
        ]
    );
    assert!(history.iter().all(|h| h.actor == "alice"));
    let closed = db.get_alert(first.id).unwrap().unwrap();
    assert_eq!(closed.verdict.as_deref(), Some("true_positive"));
    // A verdict is cleared with Some(None); an unknown alert is None.
    let cleared = db
        .update_alert(first.id, None, Some(None), None, "bob", t(9))
        .unwrap()
        .unwrap();
    assert_eq!(cleared.verdict, None);
    assert!(db
        .update_alert(999, Some("closed"), None, None, "bob", t(9))
        .unwrap()
        .is_none());
}

#[test]
fn listing_filters_and_sorts() {
    let (_d, db) = open();
    let mut low = det("e1", "r-low", "web-1", 10);
    low.urgency = 25;
    db.raise_alerts(
        &[
            low,
            det("e2", "r1", "web-2", 20),
            det("e3", "r1", "web-2", 21),
        ],
        t(30),
    )
    .unwrap();
    let list = |f: AlertFilter| db.list_alerts(&AlertFilter { limit: 100, ..f }).unwrap();
    assert_eq!(list(AlertFilter::default()).0, 2);
    let high = list(AlertFilter {
        urgency_min: Some(50),
        ..AlertFilter::default()
    });
    assert_eq!((high.0, high.1[0].rule_id.as_str()), (1, "r1"));
    let by_entity = list(AlertFilter {
        entity: Some("web-1".into()),
        ..AlertFilter::default()
    });
    assert_eq!(by_entity.1[0].rule_id, "r-low");
    let by_rule = list(AlertFilter {
        rule_id: Some("r1".into()),
        status: Some("open".into()),
        ..AlertFilter::default()
    });
    assert_eq!(by_rule.1[0].occurrences, 2);
    let recent = list(AlertFilter {
        from: Some(t(15)),
        ..AlertFilter::default()
    });
    assert_eq!(recent.0, 1);
    let by_occ = list(AlertFilter {
        sort: AlertSort::Occurrences,
        ..AlertFilter::default()
    });
    assert_eq!(by_occ.1[0].rule_id, "r1");
    let page = db
        .list_alerts(&AlertFilter {
            limit: 1,
            offset: 1,
            ..AlertFilter::default()
        })
        .unwrap();
    assert_eq!((page.0, page.1.len()), (2, 1));
}
