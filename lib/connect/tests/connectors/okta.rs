//! Okta System Log: `since` (inclusive) + `sortOrder=ASCENDING` + `limit`,
//! Link rel="next" (always present, also on empty pages, as Okta does),
//! `Authorization: SSWS <token>`.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{json, Value};
use vigie_connect::MemoryCursorStore;

use crate::mock::{connector, start, wait_until, MockServer, Reply, Seen, TestSink};

type Log = Arc<Mutex<Vec<Value>>>;

fn event(i: usize, t: DateTime<Utc>) -> Value {
    json!({
        "uuid": format!("u{i}"),
        "published": t.to_rfc3339_opts(SecondsFormat::Millis, true),
        "eventType": "user.session.start",
    })
}

fn published(e: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(e["published"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// Okta's /api/v1/logs over `log`.
pub fn okta_api(log: Log) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |req: &Seen| {
        if req.path != "/api/v1/logs" {
            return Reply::status(404, "not found");
        }
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != "SSWS tok-test-secret" {
            return Reply::status(
                401,
                &format!(
                    r#"{{"errorCode":"E0000011","errorSummary":"Invalid token provided: {auth}"}}"#
                ),
            );
        }
        assert_eq!(req.param("sortOrder"), Some("ASCENDING"));
        let limit: usize = req.param("limit").unwrap().parse().unwrap();
        let events = log.lock().unwrap();
        let start = match (req.param("after"), req.param("since")) {
            (Some(a), _) => a.parse().unwrap(),
            (None, Some(s)) => {
                let since = DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
                events
                    .iter()
                    .position(|e| published(e) >= since)
                    .unwrap_or(events.len())
            }
            (None, None) => 0,
        };
        let start = start.min(events.len());
        let end = (start + limit).min(events.len());
        let host = req.headers["host"].to_str().unwrap();
        Reply::json(&Value::Array(events[start..end].to_vec()))
            .header("link", &format!("<http://{host}/api/v1/logs?limit={limit}&sortOrder=ASCENDING>; rel=\"self\""))
            .header(
                "link",
                &format!("<http://{host}/api/v1/logs?after={end}&limit={limit}&sortOrder=ASCENDING>; rel=\"next\""),
            )
    }
}

fn okta_connector(server: &MockServer, max_pages: u32) -> vigie_connect::Connector {
    okta_connector_with(server, max_pages, "token_env = \"TEST_TOKEN\"")
}

fn okta_connector_with(
    server: &MockServer,
    max_pages: u32,
    token: &str,
) -> vigie_connect::Connector {
    connector(&format!(
        "name = \"okta\"\ntype = \"okta\"\nbase_url = \"{}\"\n{token}\npage_size = 3\nmax_pages_per_poll = {max_pages}\n",
        server.base()
    ))
}

/// Run, stop, add events, run again with the same cursor store: exactly the
/// new events arrive, once, including one published at the very millisecond
/// of the cursor (Okta's `since` is inclusive).
async fn restart_resumes_without_gap_or_duplicate(max_pages: u32) {
    let base = Utc::now() - TimeDelta::minutes(10);
    let ms = |n: i64| base + TimeDelta::milliseconds(n);
    let log: Log = Arc::new(Mutex::new(vec![
        event(0, ms(0)),
        event(1, ms(1)),
        event(2, ms(2)),
        event(3, ms(3)),
        event(4, ms(4)),
        event(5, ms(5)),
        event(6, ms(5)),
    ]));
    let server = MockServer::start(okta_api(log.clone())).await;
    let store = Arc::new(MemoryCursorStore::new());

    let sink = TestSink::new();
    let c = okta_connector(&server, max_pages);
    let stats = c.stats();
    let running = start(vec![c], store.clone(), sink.clone());
    wait_until("the first 7 events", || sink.records().len() >= 7).await;
    let polls = stats.snapshot().polls;
    wait_until("two more polls", || stats.snapshot().polls >= polls + 2).await;
    running.stop().await;
    assert_eq!(sink.ids("uuid"), ["u0", "u1", "u2", "u3", "u4", "u5", "u6"]);
    assert!(sink
        .pages
        .lock()
        .unwrap()
        .iter()
        .all(|p| p.format == "okta" && p.connector == "okta"));
    let s = stats.snapshot();
    assert!(s.pages >= 3, "{s:?}");
    assert_eq!(s.events, 7);
    assert!(s.last_success.is_some());
    assert!(store.get("okta").is_some());

    let first = &server.requests()[0];
    assert_eq!(first.param("limit"), Some("3"));
    assert!(first.param("since").is_some(), "{first:?}");

    // New events while stopped, one at the cursor's millisecond.
    {
        let mut l = log.lock().unwrap();
        l.push(event(7, ms(5)));
        l.push(event(8, ms(6)));
        l.push(event(9, ms(7)));
        l.push(event(10, ms(7)));
    }
    let sink2 = TestSink::new();
    let c = okta_connector(&server, max_pages);
    let stats2 = c.stats();
    let running = start(vec![c], store.clone(), sink2.clone());
    wait_until("the 4 new events", || sink2.records().len() >= 4).await;
    let polls = stats2.snapshot().polls;
    wait_until("two more polls", || stats2.snapshot().polls >= polls + 2).await;
    running.stop().await;
    assert_eq!(sink2.ids("uuid"), ["u7", "u8", "u9", "u10"]);
}

#[tokio::test]
async fn okta_restart_from_time_cursor() {
    restart_resumes_without_gap_or_duplicate(100).await;
}

#[tokio::test]
async fn okta_one_page_per_poll_resumes_from_saved_next_link() {
    restart_resumes_without_gap_or_duplicate(1).await;
}

#[tokio::test]
async fn okta_bad_token_is_reported_without_the_token() {
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let server = MockServer::start(okta_api(log)).await;
    let c = okta_connector_with(&server, 10, "token = \"tok-wrong-secret\"");
    let stats = c.stats();
    let sink = TestSink::new();
    let store = Arc::new(MemoryCursorStore::new());
    let running = start(vec![c], store.clone(), sink.clone());
    wait_until("a failed poll", || stats.snapshot().failed_polls >= 1).await;
    running.stop().await;
    let s = stats.snapshot();
    let e = s.last_error.unwrap();
    assert!(
        e.contains("401") && e.contains("Invalid token provided"),
        "{e}"
    );
    assert!(!e.contains("tok-wrong-secret"), "{e}");
    assert_eq!(s.retries, 0, "a 401 is not retried");
    assert!(sink.records().is_empty());
    assert_eq!(store.get("okta"), None);
}
