//! Failures: 429 and 5xx retries, abandoned polls, sink errors, bad bodies,
//! caps, and next links to another host.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use vigie_connect::MemoryCursorStore;

use crate::mock::{connector, start, wait_until, MockServer, Reply, Seen, TestSink};

fn simple(server: &MockServer, extra: &str) -> vigie_connect::Connector {
    connector(&format!(
        "name = \"s\"\ntype = \"http_json\"\nurl = \"{}/x\"\ntime_field = \"ts\"\nid_field = \"id\"\n{extra}",
        server.base()
    ))
}

fn records() -> serde_json::Value {
    let ts = (Utc::now() - chrono::TimeDelta::seconds(30)).to_rfc3339();
    json!([{"id": "a", "ts": ts}, {"id": "b", "ts": ts}, {"id": "c", "ts": ts}])
}

/// Answers `first(n)` for the first `k` requests, then the records.
fn flaky(
    k: usize,
    first: impl Fn(usize) -> Reply + Send + Sync + 'static,
) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    let count = AtomicUsize::new(0);
    let body = records();
    move |_req: &Seen| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        if n < k {
            first(n)
        } else {
            Reply::json(&body)
        }
    }
}

async fn deliver_once(server: &MockServer, extra: &str) -> vigie_connect::ConnectorStats {
    let c = simple(server, extra);
    let stats = c.stats();
    let sink = TestSink::new();
    let store = Arc::new(MemoryCursorStore::new());
    let running = start(vec![c], store, sink.clone());
    wait_until("3 records", || sink.records().len() >= 3).await;
    let polls = stats.snapshot().polls;
    wait_until("one more poll", || stats.snapshot().polls > polls + 1).await;
    running.stop().await;
    assert_eq!(sink.ids("id"), ["a", "b", "c"]);
    stats.snapshot()
}

#[tokio::test]
async fn http_429_with_retry_after_then_success() {
    let server = MockServer::start(flaky(1, |_| {
        Reply::status(429, "slow down").header("retry-after", "0")
    }))
    .await;
    let s = deliver_once(&server, "").await;
    assert_eq!(s.rate_limited, 1);
    assert_eq!(s.retries, 1);
    assert_eq!(s.failed_polls, 0, "the retry happened inside the poll");
}

#[tokio::test]
async fn http_429_with_okta_rate_limit_reset_then_success() {
    let reset = (Utc::now().timestamp() - 1).to_string();
    let server = MockServer::start(flaky(1, move |_| {
        Reply::status(429, "").header("x-rate-limit-reset", &reset)
    }))
    .await;
    let s = deliver_once(&server, "").await;
    assert_eq!((s.rate_limited, s.retries, s.failed_polls), (1, 1, 0));
}

#[tokio::test]
async fn http_429_asking_for_a_long_wait_ends_the_poll() {
    let server =
        MockServer::start(|_: &Seen| Reply::status(429, "").header("retry-after", "3600")).await;
    let mut c = simple(&server, "");
    c.retry.max_retry_after = std::time::Duration::from_secs(5);
    let stats = c.stats();
    let sink = TestSink::new();
    let store = Arc::new(MemoryCursorStore::new());
    let running = start(vec![c], store.clone(), sink.clone());
    wait_until("a failed poll", || stats.snapshot().failed_polls >= 1).await;
    // Polling every 10 ms otherwise; the server asked for an hour.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    running.stop().await;
    assert_eq!(server.requests().len(), 1);
    let s = stats.snapshot();
    assert!(s.last_error.unwrap().contains("429"));
    assert!(sink.calls.lock().unwrap().is_empty());
    assert_eq!(store.get("s"), None);
}

#[tokio::test]
async fn http_500_is_retried_within_the_poll() {
    let server = MockServer::start(flaky(2, |n| Reply::status(500 + n as u16, "oops"))).await;
    let s = deliver_once(&server, "").await;
    assert_eq!(s.retries, 2);
    assert_eq!(s.failed_polls, 0);
    assert!(s.errors >= 2);
}

#[tokio::test]
async fn persistent_500_abandons_the_poll_without_saving() {
    let server = MockServer::start(|_: &Seen| Reply::status(503, "maintenance")).await;
    let c = simple(&server, "retry_max_attempts = 3\n");
    let stats = c.stats();
    let sink = TestSink::new();
    let store = Arc::new(MemoryCursorStore::new());
    let running = start(vec![c], store.clone(), sink.clone());
    wait_until("a failed poll", || stats.snapshot().failed_polls >= 1).await;
    running.stop().await;
    let s = stats.snapshot();
    let e = s.last_error.unwrap();
    assert!(e.contains("503") && e.contains("maintenance"), "{e}");
    assert!(server.requests().len() >= 3);
    assert!(s.retries >= 2);
    assert_eq!(store.get("s"), None);
    assert!(sink.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn sink_failure_keeps_the_cursor_and_refetches_the_page() {
    let body = records();
    let server = MockServer::start(move |_: &Seen| Reply::json(&body)).await;
    let store = Arc::new(MemoryCursorStore::new());
    let sink = TestSink::with(1, Some(store.clone()));
    let c = simple(&server, "");
    let stats = c.stats();
    let running = start(vec![c], store.clone(), sink.clone());
    wait_until("an acknowledged page", || !sink.records().is_empty()).await;
    let polls = stats.snapshot().polls;
    wait_until("two more polls", || stats.snapshot().polls >= polls + 2).await;
    running.stop().await;

    let calls = sink.calls.lock().unwrap().clone();
    assert!(calls.len() >= 2);
    let (failed_page, cursor_then, failed) = &calls[0];
    assert!(*failed);
    assert_eq!(*cursor_then, None);
    let (retried_page, cursor_then, failed) = &calls[1];
    assert!(!*failed);
    assert_eq!(
        *cursor_then, None,
        "the failed page did not move the cursor"
    );
    assert_eq!(
        failed_page.records, retried_page.records,
        "the same page came again"
    );
    // Later polls return the same records: all dropped as duplicates.
    assert_eq!(calls.len(), 2, "no page after the acknowledged one");
    assert_eq!(sink.ids("id"), ["a", "b", "c"]);
    let cursor = store.get("s").unwrap();
    assert!(cursor.contains(r#""ids":["a","b","c"]"#), "{cursor}");
    let s = stats.snapshot();
    assert_eq!(s.failed_polls, 1);
    assert!(s.last_error.unwrap().contains("disk full"));
    assert_eq!(s.events, 3);
}

async fn fails_with(reply: impl Fn() -> Reply + Send + Sync + 'static, extra: &str) -> String {
    let server = MockServer::start(move |_: &Seen| reply()).await;
    let c = simple(&server, extra);
    let stats = c.stats();
    let sink = TestSink::new();
    let store = Arc::new(MemoryCursorStore::new());
    let running = start(vec![c], store.clone(), sink.clone());
    wait_until("a failed poll", || stats.snapshot().failed_polls >= 1).await;
    running.stop().await;
    assert!(sink.calls.lock().unwrap().is_empty());
    assert_eq!(store.get("s"), None);
    stats.snapshot().last_error.unwrap()
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_clear_error() {
    let e = fails_with(
        || Reply::status(200, "<html>Service Unavailable</html>"),
        "",
    )
    .await;
    assert!(e.contains("not JSON") && e.contains("<html>Service"), "{e}");
}

#[tokio::test]
async fn response_size_and_record_count_are_capped() {
    let e = fails_with(
        || Reply::status(200, &format!("[\"{}\"]", "x".repeat(5000))),
        "max_response_bytes = 1024\nretry_max_attempts = 1\n",
    )
    .await;
    assert!(e.contains("larger than max_response_bytes (1024)"), "{e}");

    let e = fails_with(|| Reply::json(&records()), "max_records_per_page = 2\n").await;
    assert!(
        e.contains("3 records, more than max_records_per_page (2)"),
        "{e}"
    );

    let e = fails_with(|| Reply::json(&json!({"a": 1})), "").await;
    assert!(e.contains("not an array"), "{e}");
}

#[tokio::test]
async fn next_link_to_another_host_is_refused() {
    let e = fails_with(
        || Reply::json(&records()).header("link", "<https://evil.example.net/steal>; rel=\"next\""),
        "pagination = \"link\"\ntoken = \"tok-abcdef\"\n",
    )
    .await;
    assert!(e.contains("refusing to send the token"), "{e}");
}
