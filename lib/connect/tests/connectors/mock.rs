//! Test fixtures: a mock HTTP API on loopback (hyper server), a recording
//! sink, and helpers to build and run connectors with millisecond timings.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use vigie_connect::{
    run, validate_connectors_with, Connector, ConnectorConfig, MemoryCursorStore, Page, Sink,
    SinkError,
};

/// A request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the mock answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(body: &Value) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A mock API server; stops when dropped.
pub struct MockServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockServer {
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let handler: Handler = Arc::new(handler);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let handler = handler.clone();
                        let seen = seen.clone();
                        async move {
                            let s = Seen {
                                path: req.uri().path().to_owned(),
                                query: parse_query(req.uri().query().unwrap_or("")),
                                headers: req.headers().clone(),
                            };
                            seen.lock().unwrap().push(s.clone());
                            let reply = handler(&s);
                            let mut resp = Response::builder().status(reply.status);
                            for (k, v) in &reply.headers {
                                resp = resp.header(k, v);
                            }
                            Ok::<_, Infallible>(
                                resp.body(Full::new(Bytes::from(reply.body))).unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut kv = p.splitn(2, '=');
            (
                decode(kv.next().unwrap_or("")),
                decode(kv.next().unwrap_or("")),
            )
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A sink that records pages, can fail its first calls, and notes the cursor
/// that was saved when each call arrived.
pub struct TestSink {
    pub pages: Mutex<Vec<Page>>,
    pub calls: Mutex<Vec<(Page, Option<String>, bool)>>,
    pub fail_next: AtomicUsize,
    pub store: Option<Arc<MemoryCursorStore>>,
}

impl TestSink {
    pub fn new() -> Arc<Self> {
        Self::with(0, None)
    }

    pub fn with(fail_next: usize, store: Option<Arc<MemoryCursorStore>>) -> Arc<Self> {
        Arc::new(Self {
            pages: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            fail_next: AtomicUsize::new(fail_next),
            store,
        })
    }

    /// Every acknowledged record, in order.
    pub fn records(&self) -> Vec<Value> {
        self.pages
            .lock()
            .unwrap()
            .iter()
            .flat_map(|p| p.records.clone())
            .collect()
    }

    /// The `field` of every acknowledged record, as strings.
    pub fn ids(&self, field: &str) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| r[field].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Sink for TestSink {
    async fn store(&self, page: Page) -> Result<(), SinkError> {
        let cursor = self.store.as_ref().and_then(|s| s.get(&page.connector));
        let fail = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        self.calls
            .lock()
            .unwrap()
            .push((page.clone(), cursor, fail));
        if fail {
            return Err(SinkError("disk full (test)".into()));
        }
        self.pages.lock().unwrap().push(page);
        Ok(())
    }
}

/// Parses and validates one connector, then sets test timings.
pub fn connector(toml_entry: &str) -> Connector {
    #[derive(serde::Deserialize)]
    struct File {
        connectors: Vec<ConnectorConfig>,
    }
    let file: File = toml::from_str(&format!("[[connectors]]\n{toml_entry}")).unwrap();
    let env = |v: &str| (v == "TEST_TOKEN").then(|| "tok-test-secret".to_owned());
    let mut c = validate_connectors_with(&file.connectors, &env)
        .unwrap()
        .remove(0);
    c.interval = Duration::from_millis(10);
    c.retry.initial_backoff = Duration::from_millis(1);
    c.retry.max_backoff = Duration::from_millis(5);
    c.retry.error_backoff_max = Duration::from_millis(20);
    c.limits.max_requests_per_minute = std::num::NonZeroU32::new(1_000_000).unwrap();
    c
}

/// A running [`run`], stopped by [`Running::stop`].
pub struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

pub fn start<S: Sink>(
    connectors: Vec<Connector>,
    store: Arc<MemoryCursorStore>,
    sink: Arc<S>,
) -> Running {
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        run(connectors, store, sink, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running { stop, task }
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("run stops on shutdown")
            .unwrap();
    }
}

/// Waits until `cond` holds; the timeout only bounds the wait.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
