//! Tests of the event store and its query language, on temporary directories.

use std::collections::HashSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Map, Value};
use tempfile::TempDir;

use super::*;

fn cfg() -> StoreConfig {
    StoreConfig {
        writer_memory_bytes: 2 * MIN_MEMORY_PER_THREAD_BYTES,
        retention_days: 30,
        writer_threads: 1,
    }
}

fn open(dir: &TempDir) -> Store {
    Store::open(dir.path(), cfg()).expect("open store")
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn at(ts: &str, mut fields: Value) -> Map<String, Value> {
    fields["@timestamp"] = json!(ts);
    obj(fields)
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test time")
        .with_timezone(&Utc)
}

fn q(s: &str) -> Query {
    parse_query(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn ids(r: &SearchResult) -> Vec<i64> {
    r.events
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect()
}

fn search_ids(store: &Store, query: &str) -> Vec<i64> {
    let mut v = ids(&store
        .search(&q(query), None, None, 1000, 0)
        .expect("search"));
    v.sort_unstable();
    v
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
}

#[test]
fn added_event_comes_back_identical() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    let event = json!({
        "@timestamp": "2024-03-01T10:00:00.123456Z",
        "message": "Failed password for root from 10.0.0.1 port 22 ssh2",
        "event": {"original": "<38>Mar  1 10:00:00 web-1 sshd[42]: Failed password", "outcome": "failure", "category": ["authentication"]},
        "host": {"name": "web-1"},
        "process": {"pid": 42, "name": "sshd"},
        "source.ip": "10.0.0.1",
        "ratio": 0.25,
        "big": 18446744073709551615u64,
        "neg": -7,
        "ok": true,
        "nothing": null,
        "unicode": "héllo ☃",
        "nested": [{"a": 1}, {"a": "two"}, []],
    });
    store.add(vec![obj(event.clone())]).expect("add");
    store.commit().expect("commit");
    let r = store
        .search(&Query::All, None, None, 10, 0)
        .expect("search");
    assert_eq!(r.total, 1);
    assert_eq!(r.events, vec![event]);
}

#[test]
fn uncommitted_events_are_invisible_until_commit() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    store
        .add(vec![at("2024-03-01T10:00:00Z", json!({"id": 1}))])
        .expect("add");
    assert_eq!(store.count(&Query::All, None, None).expect("count"), 0);
    assert_eq!(store.stats().docs, 0);
    store.commit().expect("commit");
    assert_eq!(store.count(&Query::All, None, None).expect("count"), 1);
    // A commit with nothing new is harmless.
    store.commit().expect("commit");
    assert_eq!(store.stats().docs, 1);
}

#[test]
fn days_get_their_own_index_and_time_ranges_select_them() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    store
        .add(vec![
            at("2024-03-01T23:59:59.999999Z", json!({"id": 1})),
            at("2024-03-02T00:00:00Z", json!({"id": 2})),
            at("2024-03-02T12:00:00+02:00", json!({"id": 3})),
        ])
        .expect("add");
    store.commit().expect("commit");
    assert_eq!(store.days(), vec!["2024-03-01", "2024-03-02"]);
    assert!(dir.path().join("2024-03-01/meta.json").exists());
    assert!(dir.path().join("2024-03-02/meta.json").exists());

    let range = |from: Option<&str>, to: Option<&str>| {
        let r = store
            .search(&Query::All, from.map(t), to.map(t), 10, 0)
            .expect("search");
        assert_eq!(r.total as usize, r.events.len());
        ids(&r)
    };
    assert_eq!(range(None, None), vec![3, 2, 1]);
    assert_eq!(range(Some("2024-03-02T00:00:00Z"), None), vec![3, 2]);
    assert_eq!(range(None, Some("2024-03-02T00:00:00Z")), vec![1]);
    // Bounds inside a day filter by time; `to` is exclusive.
    assert_eq!(
        range(Some("2024-03-02T00:00:00Z"), Some("2024-03-02T10:00:00Z")),
        vec![2]
    );
    assert_eq!(
        range(
            Some("2024-03-01T23:59:59Z"),
            Some("2024-03-02T00:00:00.000001Z")
        ),
        vec![2, 1]
    );
    assert_eq!(range(Some("2024-03-03T00:00:00Z"), None), Vec::<i64>::new());
    assert_eq!(
        range(Some("2024-03-02T00:00:00Z"), Some("2024-03-01T00:00:00Z")),
        Vec::<i64>::new()
    );
}

#[test]
fn events_without_timestamp_use_ingested_time_then_now() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    store
        .add(vec![
            obj(json!({"id": 1, "@timestamp": "not a time", "event": {"ingested": "2024-05-05T05:05:05Z"}})),
            obj(json!({"id": 2, "event.ingested": "2024-05-06T00:00:00Z"})),
            obj(json!({"id": 3})),
        ])
        .expect("add");
    store.commit().expect("commit");
    let today = day_name(day_of(Utc::now().timestamp_micros())).expect("today");
    let mut expected = vec!["2024-05-05".to_owned(), "2024-05-06".to_owned(), today];
    expected.sort();
    assert_eq!(store.days(), expected);
    let r = store
        .search(
            &Query::All,
            Some(t("2024-05-05T05:05:05Z")),
            Some(t("2024-05-05T05:05:06Z")),
            10,
            0,
        )
        .expect("search");
    assert_eq!(ids(&r), vec![1]);
}

#[test]
fn results_are_newest_first_and_page_across_days() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    let base = Utc
        .with_ymd_and_hms(2024, 3, 1, 20, 0, 0)
        .single()
        .expect("time");
    // 30 events, one every 20 minutes, spanning two days, added out of order.
    let mut events: Vec<_> = (0..30)
        .map(|i| {
            let ts = (base + Duration::minutes(20 * i)).to_rfc3339();
            at(&ts, json!({"id": i, "even": i % 2 == 0}))
        })
        .collect();
    events.reverse();
    events.swap(3, 17);
    store.add(events).expect("add");
    store.commit().expect("commit");
    assert_eq!(store.days().len(), 2);

    let page = |limit, offset| {
        let r = store
            .search(&Query::All, None, None, limit, offset)
            .expect("search");
        assert_eq!(r.total, 30);
        ids(&r)
    };
    let all: Vec<i64> = (0..30).rev().collect();
    assert_eq!(page(100, 0), all);
    assert_eq!(page(10, 0), all[..10].to_vec());
    assert_eq!(page(10, 10), all[10..20].to_vec());
    // The page straddling midnight (ids 11 and below are on 2024-03-01).
    assert_eq!(page(7, 15), all[15..22].to_vec());
    assert_eq!(page(10, 25), all[25..].to_vec());
    assert_eq!(page(10, 30), Vec::<i64>::new());
    assert_eq!(page(0, 0), Vec::<i64>::new());
    // A huge offset is just past the end (no allocation in proportion).
    assert_eq!(page(10, usize::MAX / 2), Vec::<i64>::new());

    let r = store
        .search(&q("even:true"), None, None, 3, 1)
        .expect("search");
    assert_eq!(r.total, 15);
    assert_eq!(ids(&r), vec![26, 24, 22]);
}

fn query_fixture(dir: &TempDir) -> Store {
    let store = open(dir);
    let events = vec![
        json!({"id": 1, "message": "Failed password for root from 10.0.0.1 port 22 ssh2",
               "user": {"name": "root"}, "host": {"name": "web-1"}, "source": {"ip": "10.0.0.1"},
               "event": {"outcome": "failure", "category": ["authentication"], "original": "<38>sshd[42]: Failed password for root"},
               "process": {"pid": 42, "name": "sshd"}}),
        json!({"id": 2, "message": "Accepted publickey for admin from 10.0.0.2 port 22 ssh2",
               "user": {"name": "admin"}, "host": {"name": "web-1-prod"},
               "event": {"outcome": "success", "category": ["authentication", "session"]},
               "process": {"pid": "42", "name": "sshd"}}),
        json!({"id": 3, "message": "password changed for administrator",
               "user.name": "administrator", "host.name": "db-prod",
               "event.outcome": "success", "process.pid": 7, "log": {"file": {"path": "/var/log/auth.log"}}}),
        json!({"id": 4, "message": "Connection closed by Failed host",
               "host": {"name": "WEB-1"}, "labels": {"env": "Prod Env"}, "ratio": 1.5, "count": 3.0}),
    ];
    let events = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| at(&format!("2024-03-01T10:00:0{i}Z"), e))
        .collect();
    store.add(events).expect("add");
    store.commit().expect("commit");
    store
}

#[test]
fn field_terms_are_exact_and_case_sensitive() {
    let dir = TempDir::new().expect("tempdir");
    let store = query_fixture(&dir);
    assert_eq!(search_ids(&store, "host.name:web-1"), vec![1]);
    assert_eq!(search_ids(&store, "host.name:WEB-1"), vec![4]);
    assert_eq!(search_ids(&store, "event.outcome:failure"), vec![1]);
    // Nested and dotted keys are the same field.
    assert_eq!(search_ids(&store, "event.outcome:success"), vec![2, 3]);
    assert_eq!(search_ids(&store, "user.name:administrator"), vec![3]);
    // Arrays match on any element.
    assert_eq!(search_ids(&store, "event.category:session"), vec![2]);
    assert_eq!(
        search_ids(&store, "event.category:authentication"),
        vec![1, 2]
    );
    assert_eq!(
        search_ids(&store, "log.file.path:/var/log/auth.log"),
        vec![3]
    );
    assert_eq!(search_ids(&store, "source.ip:10.0.0.1"), vec![1]);
    assert_eq!(search_ids(&store, r#"labels.env:"Prod Env""#), vec![4]);
    assert_eq!(search_ids(&store, "labels.env:Prod"), Vec::<i64>::new());
    assert_eq!(search_ids(&store, "no.such.field:x"), Vec::<i64>::new());
}

#[test]
fn numbers_match_as_numbers_and_strings() {
    let dir = TempDir::new().expect("tempdir");
    let store = query_fixture(&dir);
    // Event 1 has the number 42, event 2 the string "42".
    assert_eq!(search_ids(&store, "process.pid:42"), vec![1, 2]);
    assert_eq!(search_ids(&store, "process.pid:42.0"), vec![1]);
    assert_eq!(search_ids(&store, "process.pid:7"), vec![3]);
    assert_eq!(search_ids(&store, "ratio:1.5"), vec![4]);
    assert_eq!(search_ids(&store, "count:3"), vec![4]);
    assert_eq!(search_ids(&store, "id:4"), vec![4]);
}

#[test]
fn phrases_and_bare_words_search_full_text() {
    let dir = TempDir::new().expect("tempdir");
    let store = query_fixture(&dir);
    assert_eq!(search_ids(&store, r#"message:"Failed password""#), vec![1]);
    assert_eq!(search_ids(&store, r#""failed PASSWORD""#), vec![1]);
    assert_eq!(search_ids(&store, "password"), vec![1, 3]);
    assert_eq!(search_ids(&store, "PASSWORD"), vec![1, 3]);
    assert_eq!(search_ids(&store, "failed"), vec![1, 4]);
    assert_eq!(search_ids(&store, "failed password"), vec![1]);
    // Words are in any order; phrases are not.
    assert_eq!(search_ids(&store, "password failed"), vec![1]);
    assert_eq!(
        search_ids(&store, r#""password failed""#),
        Vec::<i64>::new()
    );
    // event.original is not searched when the event has a message (ECS
    // does not index it; its header is in keyword fields).
    assert_eq!(search_ids(&store, "sshd"), Vec::<i64>::new());
    assert_eq!(search_ids(&store, "process.name:sshd"), vec![1, 2]);
    // A bare word with separators is a phrase of its tokens.
    assert_eq!(search_ids(&store, "10.0.0.2"), vec![2]);
    // Full-text fields are not keywords, but `field:*` finds them.
    assert_eq!(search_ids(&store, "event.original:*"), vec![1]);
    assert_eq!(search_ids(&store, "message:*"), vec![1, 2, 3, 4]);
}

#[test]
fn original_is_full_text_when_there_is_no_message() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    let events = vec![
        at(
            "2024-03-01T10:00:00Z",
            json!({"id": 1, "event": {"original": "{\"action\":\"login\",\"user\":\"alice\"}"}}),
        ),
        at(
            "2024-03-01T10:00:01Z",
            json!({"id": 2, "message": "hello", "event.original": "bob said hello"}),
        ),
    ];
    store.add(events).expect("add");
    store.commit().expect("commit");
    assert_eq!(search_ids(&store, "alice"), vec![1]);
    assert_eq!(search_ids(&store, "event.original:login"), vec![1]);
    assert_eq!(search_ids(&store, "hello"), vec![2]);
    assert_eq!(search_ids(&store, "bob"), Vec::<i64>::new());
    assert_eq!(search_ids(&store, "event.original:*"), vec![1, 2]);
}

#[test]
fn wildcards_match_keywords_and_words() {
    let dir = TempDir::new().expect("tempdir");
    let store = query_fixture(&dir);
    assert_eq!(search_ids(&store, "user.name:adm*"), vec![2, 3]);
    assert_eq!(search_ids(&store, "host.name:*-prod"), vec![2, 3]);
    assert_eq!(search_ids(&store, "host.name:*eb*"), vec![1, 2]);
    assert_eq!(search_ids(&store, "host.name:w*1"), vec![1]);
    assert_eq!(search_ids(&store, "host.name:w*1*"), vec![1, 2]);
    assert_eq!(search_ids(&store, r"host.name:web\-1"), vec![1]);
    assert_eq!(search_ids(&store, "passw*"), vec![1, 3]);
    assert_eq!(search_ids(&store, "message:*ministrat*"), vec![3]);
    assert_eq!(search_ids(&store, "*"), vec![1, 2, 3, 4]);
}

#[test]
fn exists_matches_fields_and_objects() {
    let dir = TempDir::new().expect("tempdir");
    let store = query_fixture(&dir);
    assert_eq!(search_ids(&store, "user.name:*"), vec![1, 2, 3]);
    assert_eq!(search_ids(&store, "source.ip:*"), vec![1]);
    assert_eq!(search_ids(&store, "labels:*"), vec![4]);
    assert_eq!(search_ids(&store, "log.file:*"), vec![3]);
    assert_eq!(search_ids(&store, "process.pid:*"), vec![1, 2, 3]);
    assert_eq!(search_ids(&store, "@timestamp:*"), vec![1, 2, 3, 4]);
    assert_eq!(search_ids(&store, "user.nam:*"), Vec::<i64>::new());
    assert_eq!(search_ids(&store, "NOT user.name:*"), vec![4]);
}

#[test]
fn boolean_operators_and_parentheses_combine() {
    let dir = TempDir::new().expect("tempdir");
    let store = query_fixture(&dir);
    assert_eq!(
        search_ids(&store, "event.outcome:success AND host.name:db-prod"),
        vec![3]
    );
    assert_eq!(
        search_ids(&store, "event.outcome:success host.name:db-prod"),
        vec![3]
    );
    assert_eq!(
        search_ids(&store, "user.name:root OR user.name:admin"),
        vec![1, 2]
    );
    assert_eq!(search_ids(&store, "NOT event.outcome:success"), vec![1, 4]);
    assert_eq!(search_ids(&store, "-event.outcome:success"), vec![1, 4]);
    assert_eq!(search_ids(&store, "password -failed"), vec![3]);
    assert_eq!(
        search_ids(
            &store,
            "(user.name:root OR user.name:admin) AND NOT process.pid:42"
        ),
        Vec::<i64>::new()
    );
    assert_eq!(
        search_ids(
            &store,
            "(user.name:root OR user.name:administrator) AND NOT failed"
        ),
        vec![3]
    );
    // AND binds tighter than OR.
    assert_eq!(
        search_ids(
            &store,
            "user.name:root OR user.name:admin AND host.name:db-prod"
        ),
        vec![1]
    );
    assert_eq!(search_ids(&store, "user.name:(root OR admin)"), vec![1, 2]);
    assert_eq!(search_ids(&store, "NOT (id:1 OR id:2) NOT id:3"), vec![4]);
}

#[test]
fn timestamp_terms_match_exact_times() {
    let dir = TempDir::new().expect("tempdir");
    let store = query_fixture(&dir);
    assert_eq!(
        search_ids(&store, "@timestamp:2024-03-01T10:00:02Z"),
        vec![3]
    );
    assert_eq!(
        search_ids(&store, r#"@timestamp:"2024-03-01T12:00:01+02:00""#),
        vec![2]
    );
}

#[test]
fn query_errors_give_positions() {
    let cases: &[(&str, usize, &str)] = &[
        ("host.name:web-1 )", 16, "unexpected ')'"),
        ("(a OR b", 0, "missing ')'"),
        ("a AND", 5, "unexpected end of query"),
        ("a OR OR b", 5, "expected a term after 'OR'"),
        ("NOT", 3, "unexpected end of query"),
        ("\"unterminated", 0, "unterminated quoted phrase"),
        ("a () b", 2, "empty parentheses"),
        ("host.name: x", 0, "missing value after 'host.name:'"),
        ("host.name:", 0, "missing value after 'host.name:'"),
        ("AND a", 0, "unexpected 'AND'"),
        ("ab\\", 2, "dangling"),
        ("@timestamp:yesterday", 11, "RFC 3339"),
        ("é OR )", 5, "expected a term after 'OR'"),
    ];
    for (input, pos, msg) in cases {
        let e = parse_query(input).expect_err(input);
        assert_eq!(e.position, *pos, "{input:?}: {e}");
        assert!(e.message.contains(msg), "{input:?}: {e}");
        assert!(e.to_string().ends_with(&format!(" at {pos}")), "{e}");
    }
    assert_eq!(
        parse_query("(user.name:root OR x) )")
            .expect_err("extra paren")
            .to_string(),
        "unexpected ')' at 22"
    );
}

#[test]
fn queries_parse_into_the_expected_tree() {
    let term = |f: Option<&str>, m: Match| Query::Term {
        field: f.map(str::to_owned),
        value: m,
    };
    let word = |s: &str| Match::Word(s.to_owned());
    assert_eq!(q(""), Query::All);
    assert_eq!(q("   "), Query::All);
    assert_eq!(q("*"), Query::All);
    assert_eq!(
        q("source.ip:fe80::1"),
        term(Some("source.ip"), word("fe80::1"))
    );
    assert_eq!(
        q("url:http://x/a?b"),
        term(Some("url"), word("http://x/a?b"))
    );
    assert_eq!(q(r"a\:b"), term(None, word("a:b")));
    assert_eq!(q("x:AND"), term(Some("x"), word("AND")));
    assert_eq!(q("x:-1"), term(Some("x"), word("-1")));
    assert_eq!(
        q(r#"x:"a \"b\" *""#),
        term(Some("x"), Match::Phrase("a \"b\" *".into()))
    );
    assert_eq!(
        q("x:a**b*"),
        term(
            Some("x"),
            Match::Wildcard(vec!["a".into(), "b".into(), "".into()])
        )
    );
    assert_eq!(q(r"x:a\*"), term(Some("x"), word("a*")));
    assert_eq!(q("x:*"), term(Some("x"), Match::Exists));
    assert_eq!(
        q("a b OR c"),
        Query::Or(vec![
            Query::And(vec![term(None, word("a")), term(None, word("b"))]),
            term(None, word("c")),
        ])
    );
    assert_eq!(
        q("-a NOT b"),
        Query::And(vec![
            Query::Not(Box::new(term(None, word("a")))),
            Query::Not(Box::new(term(None, word("b")))),
        ])
    );
    assert_eq!(
        q("f:(a OR g:b)"),
        Query::Or(vec![term(Some("f"), word("a")), term(Some("g"), word("b"))])
    );
    // Display renders a query that parses back to the same tree.
    for s in [
        "a b OR c",
        "-x:y* NOT (p:\"q r\" OR s:*)",
        r"a\:b x:AND",
        "f:(a OR b)",
    ] {
        let parsed = q(s);
        assert_eq!(q(&parsed.to_string()), parsed, "{s} -> {parsed}");
    }
}

#[test]
fn export_streams_every_match_newest_first() {
    let dir = TempDir::new().expect("tempdir");
    let mut store = open(&dir);
    store.export_page_docs = 1_000;
    let base = Utc
        .with_ymd_and_hms(2024, 3, 1, 22, 0, 0)
        .single()
        .expect("time");
    // 25,000 events over two days; 3,000 of them share one microsecond
    // (more than a page, so they stream unsorted).
    let n = 25_000i64;
    let events: Vec<_> = (0..n)
        .map(|i| {
            let ts = if (10_000..13_000).contains(&i) {
                base + Duration::seconds(10_000)
            } else {
                base + Duration::seconds(i)
            };
            at(
                &ts.to_rfc3339(),
                json!({"id": i, "kind": if i % 5 == 0 { "five" } else { "other" }}),
            )
        })
        .collect();
    for chunk in events.chunks(5_000) {
        store.add(chunk.to_vec()).expect("add");
    }
    store.commit().expect("commit");
    assert_eq!(store.days().len(), 2);

    let mut seen = HashSet::new();
    let mut last: Option<DateTime<Utc>> = None;
    let mut sink = |e: Value| {
        let ts = t(e["@timestamp"].as_str().expect("ts"));
        assert!(
            last.is_none_or(|l| ts <= l),
            "not newest first: {ts} after {last:?}"
        );
        last = Some(ts);
        assert!(seen.insert(e["id"].as_i64().expect("id")), "duplicate {e}");
        true
    };
    let sent = store
        .export(&Query::All, None, None, &mut sink)
        .expect("export");
    assert_eq!(sent, n as u64);
    assert_eq!(seen.len(), n as usize);

    // A query and a time range, and an early stop.
    let from = t("2024-03-02T00:00:00Z");
    let mut count = 0u64;
    let sent = store
        .export(&q("kind:five"), Some(from), None, &mut |e| {
            assert_eq!(e["kind"], "five");
            count += 1;
            true
        })
        .expect("export");
    assert_eq!(sent, count);
    assert_eq!(
        sent,
        store
            .count(&q("kind:five"), Some(from), None)
            .expect("count")
    );
    let mut taken = 0;
    let sent = store
        .export(&Query::All, None, None, &mut |_| {
            taken += 1;
            taken < 1_234
        })
        .expect("export");
    assert_eq!(sent, 1_234);
}

#[test]
fn retention_deletes_only_old_days() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    store
        .add(vec![
            at("2024-01-01T12:00:00Z", json!({"id": 1})),
            at("2024-01-10T23:59:59Z", json!({"id": 2})),
            at("2024-01-11T00:00:00Z", json!({"id": 3})),
            at("2024-02-10T08:00:00Z", json!({"id": 4})),
        ])
        .expect("add");
    store.commit().expect("commit");
    let removed = store
        .apply_retention(t("2024-02-10T23:00:00Z"))
        .expect("retention");
    assert_eq!(removed, vec!["2024-01-01", "2024-01-10"]);
    assert_eq!(store.days(), vec!["2024-01-11", "2024-02-10"]);
    assert!(!dir.path().join("2024-01-01").exists());
    assert!(dir.path().join("2024-01-11").exists());
    assert_eq!(search_ids(&store, "*"), vec![3, 4]);
    assert!(store
        .apply_retention(t("2024-02-10T23:00:00Z"))
        .expect("retention")
        .is_empty());

    let forever = TempDir::new().expect("tempdir");
    let keep = Store::open(
        forever.path(),
        StoreConfig {
            retention_days: 0,
            ..cfg()
        },
    )
    .expect("open");
    keep.add(vec![at("2000-01-01T00:00:00Z", json!({"id": 1}))])
        .expect("add");
    keep.commit().expect("commit");
    assert!(keep
        .apply_retention(Utc::now())
        .expect("retention")
        .is_empty());
    assert_eq!(keep.days(), vec!["2000-01-01"]);
}

#[test]
fn reopening_keeps_committed_events_only() {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(&dir);
        store
            .add(vec![
                at("2024-03-01T10:00:00Z", json!({"id": 1})),
                at("2024-03-02T10:00:00Z", json!({"id": 2})),
            ])
            .expect("add");
        store.commit().expect("commit");
        store
            .add(vec![at("2024-03-02T11:00:00Z", json!({"id": 3}))])
            .expect("add");
    }
    std::fs::create_dir_all(dir.path().join("not-a-day")).expect("mkdir");
    // A retention delete interrupted by a crash is finished at open.
    std::fs::create_dir_all(dir.path().join(".expired-2024-01-01/x")).expect("mkdir");
    let store = open(&dir);
    assert!(!dir.path().join(".expired-2024-01-01").exists());
    assert!(dir.path().join("not-a-day").exists());
    assert_eq!(store.days(), vec!["2024-03-01", "2024-03-02"]);
    assert_eq!(search_ids(&store, "*"), vec![1, 2]);
    // And it can write again to a reopened day.
    store
        .add(vec![at("2024-03-02T12:00:00Z", json!({"id": 4}))])
        .expect("add");
    store.commit().expect("commit");
    assert_eq!(search_ids(&store, "*"), vec![1, 2, 4]);
    let stats = store.stats();
    assert_eq!((stats.days, stats.docs), (2, 3));
    assert!(stats.bytes > 0);
}

#[test]
fn many_days_interleaved_stay_invisible_until_commit() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    // Five days written round-robin: writers get evicted (and committed
    // early) all along, yet nothing shows before commit().
    for round in 0..4 {
        for day in 1..=5 {
            let ts = format!("2024-04-0{day}T0{round}:00:00Z");
            store
                .add(vec![at(&ts, json!({"id": day * 10 + round}))])
                .expect("add");
            assert!(store.writers.read().expect("lock").open.len() <= MAX_OPEN_WRITERS);
        }
    }
    assert_eq!(store.count(&Query::All, None, None).expect("count"), 0);
    store.commit().expect("commit");
    assert_eq!(store.count(&Query::All, None, None).expect("count"), 20);
    assert_eq!(store.days().len(), 5);
    // Idle late writers are closed at the next commit; the newest stays.
    store.commit().expect("commit");
    let open: Vec<i64> = store
        .writers
        .read()
        .expect("lock")
        .open
        .keys()
        .copied()
        .collect();
    assert_eq!(open, vec![parse_day_name("2024-04-05").expect("day")]);
}

#[test]
fn invalid_config_is_rejected() {
    let dir = TempDir::new().expect("tempdir");
    let small = StoreConfig {
        writer_memory_bytes: 1 << 20,
        ..cfg()
    };
    assert!(matches!(
        Store::open(dir.path(), small),
        Err(StoreError::Config(_))
    ));
    let threads = StoreConfig {
        writer_threads: 0,
        ..cfg()
    };
    assert!(matches!(
        Store::open(dir.path(), threads),
        Err(StoreError::Config(_))
    ));
    let parsed: StoreConfig = serde_json::from_value(json!({"retention_days": 7})).expect("config");
    assert_eq!(
        parsed,
        StoreConfig {
            retention_days: 7,
            ..StoreConfig::default()
        }
    );
    assert!(serde_json::from_value::<StoreConfig>(json!({"retention": 7})).is_err());
}
