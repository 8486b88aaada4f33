//! The generic `http_json` poller: a time-window API with next tokens in
//! the body, and a Link-paginated API without any time field.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use serde_json::{json, Value};
use vigie_connect::MemoryCursorStore;

use crate::mock::{connector, start, wait_until, MockServer, Reply, Seen, TestSink};

type Items = Arc<Mutex<Vec<Value>>>;

/// `GET /events?from=EPOCH&to=EPOCH[&cursor=N]` (inclusive bounds, seconds),
/// two items a page, `{"data":{"items":[…]},"paging":{"cursor":"N"|null}}`.
fn window_api(items: Items) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |req: &Seen| {
        if req.headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("tok-test-secret") {
            return Reply::status(403, "forbidden");
        }
        let from: i64 = req.param("from").unwrap().parse().unwrap();
        let to: i64 = req.param("to").unwrap().parse().unwrap();
        let start: usize = req.param("cursor").map_or(0, |c| c.parse().unwrap());
        let items = items.lock().unwrap();
        let in_window: Vec<&Value> = items
            .iter()
            .filter(|i| {
                let t = DateTime::parse_from_rfc3339(i["ts"].as_str().unwrap())
                    .unwrap()
                    .timestamp();
                from <= t && t <= to
            })
            .collect();
        let end = (start + 2).min(in_window.len());
        let next = (end < in_window.len()).then(|| end.to_string());
        Reply::json(&json!({
            "data": {"items": in_window[start.min(end)..end]},
            "paging": {"cursor": next},
        }))
    }
}

fn item(id: &str, t: DateTime<Utc>) -> Value {
    json!({"id": id, "ts": t.to_rfc3339_opts(SecondsFormat::Millis, true), "kind": "audit"})
}

fn window_connector(server: &MockServer) -> vigie_connect::Connector {
    connector(&format!(
        r#"name = "vendor"
type = "http_json"
url = "{}/events"
format = "vendor_audit"
token_env = "TEST_TOKEN"
auth = "header"
auth_header = "X-Api-Key"
records = "data.items"
time_field = "ts"
id_field = "id"
since_param = "from"
until_param = "to"
time_format = "epoch_secs"
pagination = "next_field"
next_field = "paging.cursor"
cursor_param = "cursor"
"#,
        server.base()
    ))
}

#[tokio::test]
async fn time_window_with_next_tokens_resumes_after_restart() {
    // All in one second: the epoch-seconds `from` re-covers them at every
    // poll, and only the cursor's time + ids keep them from coming back.
    let base = (Utc::now() - TimeDelta::seconds(100))
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap();
    let ms = |n: i64| base + TimeDelta::milliseconds(n);
    let items: Items = Arc::new(Mutex::new(
        (0..5).map(|i| item(&format!("e{i}"), ms(i))).collect(),
    ));
    let server = MockServer::start(window_api(items.clone())).await;
    let store = Arc::new(MemoryCursorStore::new());

    let sink = TestSink::new();
    let c = window_connector(&server);
    let stats = c.stats();
    let running = start(vec![c], store.clone(), sink.clone());
    wait_until("5 items", || sink.records().len() >= 5).await;
    let polls = stats.snapshot().polls;
    wait_until("two more polls", || stats.snapshot().polls >= polls + 2).await;
    running.stop().await;
    assert_eq!(sink.ids("id"), ["e0", "e1", "e2", "e3", "e4"]);
    assert!(sink
        .pages
        .lock()
        .unwrap()
        .iter()
        .all(|p| p.format == "vendor_audit"));
    assert!(stats.snapshot().duplicates_dropped > 0);
    let reqs = server.requests();
    assert!(
        reqs.iter().any(|r| r.param("cursor") == Some("2")),
        "follows next tokens"
    );
    assert!(reqs.iter().all(|r| r.param("to").is_some()));

    {
        let mut l = items.lock().unwrap();
        l.push(item("e5", ms(4)));
        l.push(item("e6", ms(1000)));
        l.push(item("e7", ms(1001)));
    }
    let sink2 = TestSink::new();
    let c = window_connector(&server);
    let stats2 = c.stats();
    let running = start(vec![c], store.clone(), sink2.clone());
    wait_until("3 new items", || sink2.records().len() >= 3).await;
    let polls = stats2.snapshot().polls;
    wait_until("two more polls", || stats2.snapshot().polls >= polls + 2).await;
    running.stop().await;
    assert_eq!(sink2.ids("id"), ["e5", "e6", "e7"]);
}

/// `GET /items?page=N`: the body is the array, two items a page, a relative
/// Link rel="next" while more pages exist.
fn link_api(items: Items) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |req: &Seen| {
        let page: usize = req.param("page").map_or(0, |p| p.parse().unwrap());
        let items = items.lock().unwrap();
        let start = (page * 2).min(items.len());
        let end = (start + 2).min(items.len());
        let mut r = Reply::json(&Value::Array(items[start..end].to_vec()));
        if end < items.len() {
            r = r.header("link", &format!("</items?page={}>; rel=\"next\"", page + 1));
        }
        r
    }
}

#[tokio::test]
async fn link_pagination_without_time_field_resumes_on_last_page() {
    let items: Items = Arc::new(Mutex::new((0..5).map(|n| json!({"n": n})).collect()));
    let server = MockServer::start(link_api(items.clone())).await;
    let store = Arc::new(MemoryCursorStore::new());
    let entry = format!(
        "name = \"pages\"\ntype = \"http_json\"\nurl = \"{}/items\"\npagination = \"link\"\n",
        server.base()
    );
    let numbers = |sink: &TestSink| -> Vec<i64> {
        sink.records()
            .iter()
            .map(|r| r["n"].as_i64().unwrap())
            .collect()
    };

    let sink = TestSink::new();
    let c = connector(&entry);
    let stats = c.stats();
    let running = start(vec![c], store.clone(), sink.clone());
    wait_until("5 items", || sink.records().len() >= 5).await;
    let polls = stats.snapshot().polls;
    wait_until("two more polls", || stats.snapshot().polls >= polls + 2).await;
    running.stop().await;
    assert_eq!(numbers(&sink), [0, 1, 2, 3, 4]);
    assert!(stats.snapshot().pages >= 3);
    assert!(server
        .requests()
        .iter()
        .any(|r| r.param("page") == Some("2")));

    items
        .lock()
        .unwrap()
        .extend([json!({"n": 5}), json!({"n": 6})]);
    let sink2 = TestSink::new();
    let c = connector(&entry);
    let stats2 = c.stats();
    let running = start(vec![c], store, sink2.clone());
    wait_until("2 new items", || sink2.records().len() >= 2).await;
    let polls = stats2.snapshot().polls;
    wait_until("two more polls", || stats2.snapshot().polls >= polls + 2).await;
    running.stop().await;
    assert_eq!(numbers(&sink2), [5, 6]);
}
