//! Route tests, in process: the real router, database, store and indexer,
//! called with `tower::ServiceExt::oneshot`; the TLS layer's part (the
//! verified client certificate) is the `Peer` extension it would insert.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tower::ServiceExt;
use vigie_wire::pki::{self, CertifiedKey};

use super::{parse_time, router, AppState, STATS_MAX_BODY_BYTES};
use crate::config::{CollectorConfig, EnrollmentConfig, IngestConfig, StorageConfig, TlsConfig};
use crate::db::Db;
use crate::ingest::Indexer;
use crate::listener::Peer;
use crate::quota::{Quotas, MAX_RETRY_AFTER_SECS};
use crate::store::{Store, StoreConfig};

pub(super) const TOKEN: &str = "vga_test_admin_token";

pub(super) struct Harness {
    _dir: tempfile::TempDir,
    pub(super) app: Router,
    pub(super) state: Arc<AppState>,
    ca: CertifiedKey,
}

/// Quotas for the tests: batches of at most 10 events.
fn ingest(agent_rate: u32, agent_burst: u32, rate: u32, burst: u32) -> IngestConfig {
    IngestConfig {
        max_batch_events: 10,
        agent_events_per_second: agent_rate,
        agent_burst_events: agent_burst,
        max_events_per_second: rate,
        burst_events: burst,
        ..IngestConfig::default()
    }
}

pub(super) fn harness(ingest: IngestConfig) -> Harness {
    harness_with(ingest, |_| Default::default())
}

/// [`harness`] with the `[detection]` that `detection` makes (given the data directory, to
/// write rule files into).
pub(super) fn harness_with(
    ingest: IngestConfig,
    detection: impl FnOnce(&std::path::Path) -> crate::config::DetectionConfig,
) -> Harness {
    ingest.validate_quotas().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let detection = detection(&data);
    let cfg = CollectorConfig {
        data_dir: data.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: TlsConfig {
            ca_file: data.join("unused"),
            ca_key_file: data.join("unused"),
            cert_file: data.join("unused"),
            key_file: data.join("unused"),
        },
        storage: StorageConfig::default(),
        ingest,
        enrollment: EnrollmentConfig::default(),
        fleet: Default::default(),
        detection,
        connectors: Vec::new(),
    };
    let db = Arc::new(Db::open(&cfg.db_path()).unwrap());
    db.add_api_token("admin", TOKEN).unwrap();
    let store = Arc::new(
        Store::open(
            &cfg.events_dir(),
            StoreConfig {
                writer_memory_bytes: 32 << 20,
                retention_days: 0,
                writer_threads: 1,
            },
        )
        .unwrap(),
    );
    let metrics = Arc::default();
    let (indexer, _join) = Indexer::spawn(
        store.clone(),
        db.clone(),
        Arc::clone(&metrics),
        &cfg.storage,
    )
    .unwrap();
    let ca = pki::create_ca("test").unwrap();
    let alert_filters = crate::alert_filters::AlertFilters::load(&db).unwrap();
    let central = Arc::new(crate::central::Central::start(&cfg.detection, db.clone()).unwrap());
    let state = Arc::new(AppState {
        central,
        connectors: Vec::new(),
        quotas: Quotas::new(&cfg.ingest),
        cfg,
        db,
        store,
        indexer,
        metrics,
        ca: ca.clone(),
        started: Instant::now(),
        alert_filters,
        hunts: Default::default(),
    });
    Harness {
        _dir: dir,
        app: router(state.clone()),
        state,
        ca,
    }
}

impl Harness {
    /// A client certificate (DER) for `id`, enrolled here unless `enrolled`
    /// is false.
    pub(super) fn agent(&self, id: &str, enrolled: bool) -> Peer {
        self.agent_in(id, enrolled, "default")
    }

    /// [`Harness::agent`] in agent group `group`.
    pub(super) fn agent_in(&self, id: &str, enrolled: bool, group: &str) -> Peer {
        let (csr, _key) = pki::generate_csr().unwrap();
        let signed = pki::sign_csr(&self.ca, &csr, id, 30).unwrap();
        if enrolled {
            self.state
                .db
                .register_agent(
                    id,
                    &format!("host-{id}"),
                    group,
                    &signed.serial_hex,
                    signed.not_after,
                    Utc::now(),
                )
                .unwrap();
        }
        let der = pki::parse_cert_pem(&signed.cert_pem).unwrap()[0].to_vec();
        Peer {
            addr: None,
            cert_der: Some(Arc::new(der)),
        }
    }

    pub(super) async fn call(
        &self,
        req: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, body)
    }

    /// Posts batch `stream/seq` of `events` JSON lines as `peer`.
    async fn batch(
        &self,
        peer: &Peer,
        id: &str,
        events: usize,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let body: String = (0..events)
            .map(|i| format!("{{\"message\":\"{id} line {i}\"}}\n"))
            .collect();
        let req = Request::post("/v1/batches")
            .header(vigie_wire::BATCH_HEADER, id)
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .extension(peer.clone())
            .body(Body::from(body))
            .unwrap();
        self.call(req).await
    }

    async fn stats(&self, peer: Peer, body: impl Into<Body>) -> (StatusCode, Value) {
        let req = Request::post(vigie_wire::STATS_PATH)
            .header(header::CONTENT_TYPE, "application/json")
            .extension(peer)
            .body(body.into())
            .unwrap();
        let (status, _, body) = self.call(req).await;
        (status, body)
    }

    pub(super) async fn get(&self, path: &str) -> Value {
        let req = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = self.call(req).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    pub(super) async fn metrics(&self) -> String {
        let req = Request::get("/metrics").body(Body::empty()).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn seen(&self, agent: &str, stream: &str, seq: u64) -> bool {
        self.state.db.batch_seen(agent, stream, seq).unwrap()
    }
}

fn retry_after(headers: &axum::http::HeaderMap) -> u64 {
    headers
        .get(header::RETRY_AFTER)
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_over_its_quota_gets_429_and_nothing_is_stored() {
    // 1 event/s, bursts of 10 = one full batch.
    let h = harness(ingest(1, 10, 0, 0));
    let a = h.agent("agt_a", true);
    let (status, _, body) = h.batch(&a, "files/1", 10).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 10);

    let (status, headers, body) = h.batch(&a, "files/2", 10).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "over_quota");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("agt_a"), "{msg}");
    let secs = retry_after(&headers);
    assert!((1..=MAX_RETRY_AFTER_SECS).contains(&secs), "{secs}");
    assert!(
        !h.seen("agt_a", "files", 2),
        "a refused batch is not stored"
    );

    // A batch already stored is still answered as a duplicate: it costs
    // no quota, so the empty bucket does not matter.
    let (status, _, body) = h.batch(&a, "files/1", 10).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], true);

    // Another agent has its own quota.
    let b = h.agent("agt_b", true);
    let (status, _, body) = h.batch(&b, "files/1", 10).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let text = h.metrics().await;
    assert!(
        text.contains("vigie_batches_throttled_total{reason=\"agent\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("vigie_batches_throttled_total{reason=\"global\"} 0\n"),
        "{text}"
    );
    assert!(text.contains("vigie_batches_duplicate_total 1\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_limit_answers_overloaded() {
    let h = harness(ingest(0, 0, 1, 12));
    let a = h.agent("agt_a", true);
    let b = h.agent("agt_b", true);
    let (status, _, body) = h.batch(&a, "files/1", 10).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, headers, body) = h.batch(&b, "files/1", 5).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "overloaded");
    assert!((1..=MAX_RETRY_AFTER_SECS).contains(&retry_after(&headers)));
    assert!(!h.seen("agt_b", "files", 1));
    // What is left of the burst still serves a smaller batch.
    let (status, _, body) = h.batch(&b, "files/1", 2).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(h
        .metrics()
        .await
        .contains("vigie_batches_throttled_total{reason=\"global\"} 1\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_reports_are_stored_and_shown_in_the_fleet_view() {
    let h = harness(IngestConfig::default());
    let a = h.agent("agt_a", true);
    let _quiet = h.agent("agt_quiet", true);
    let report = json!({
        "version": "0.3.0",
        "started_unix_secs": 1_700_000_000u64,
        "lines_read": 1200,
        "events_shipped": 1100,
        "dropped": {"spool_full": 3, "rate_limit": 2},
        "spool_bytes": 4096,
        "a_counter_from_a_newer_agent": 1,
    });
    let before = Utc::now();
    let (status, body) = h.stats(a.clone(), report.to_string()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(body, Value::Null);

    let agent = h.get("/api/v1/agents/agt_a").await;
    let stats = &agent["stats"];
    assert_eq!(stats["lines_read"], 1200);
    assert_eq!(stats["events_shipped"], 1100);
    assert_eq!(stats["dropped"]["spool_full"], 3);
    assert_eq!(stats["dropped"]["refused"], 0, "missing counters are 0");
    assert_eq!(stats["spool_bytes"], 4096);
    assert!(stats.get("a_counter_from_a_newer_agent").is_none());
    let reported = stats["reported_at"].as_str().unwrap();
    let reported = DateTime::parse_from_rfc3339(reported).unwrap();
    assert!(reported >= before - chrono::Duration::milliseconds(1));
    assert_eq!(agent["version"], "0.3.0");
    // A sign of life (not offline), with drops since the agent started.
    assert_eq!(agent["status"], "degraded", "{agent}");
    assert!(
        agent["status_reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("dropping events"),
        "{agent}"
    );

    // A newer report replaces it.
    let (status, _) = h
        .stats(
            a,
            json!({"lines_read": 1300, "dropped": {"spool_full": 4}}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let list = h.get("/api/v1/agents").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], "agt_a");
    assert_eq!(items[0]["stats"]["lines_read"], 1300);
    assert_eq!(items[0]["stats"]["dropped"]["rate_limit"], 0);
    assert_eq!(items[1]["id"], "agt_quiet");
    assert_eq!(items[1]["stats"], Value::Null);

    let text = h.metrics().await;
    assert!(
        text.contains("vigie_fleet_dropped_events{reason=\"spool_full\"} 4\n"),
        "{text}"
    );
    assert!(text.contains("vigie_agents_reporting_stats 1\n"), "{text}");
    assert!(
        text.contains("vigie_agent_stats_reports_total 2\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_need_an_enrolled_unrevoked_agent_certificate() {
    let h = harness(IngestConfig::default());
    let report = json!({"lines_read": 1}).to_string();

    let (status, body) = h.stats(Peer::default(), report.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "client_certificate_required");

    let stranger = h.agent("agt_stranger", false);
    let (status, body) = h.stats(stranger, report.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "unknown_agent");

    let a = h.agent("agt_a", true);
    h.state.db.revoke_agent("agt_a", Utc::now()).unwrap();
    let (status, body) = h.stats(a.clone(), report.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "revoked");
    // Batches are refused the same way.
    let (status, _, body) = h.batch(&a, "files/1", 1).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "revoked");
    assert_eq!(h.state.db.agent("agt_a").unwrap().unwrap().stats, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_oversized_stats_are_refused() {
    let h = harness(IngestConfig::default());
    let a = h.agent("agt_a", true);

    let (status, body) = h.stats(a.clone(), "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");

    let (status, body) = h.stats(a.clone(), "[1, 2]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = h.stats(a.clone(), r#"{"lines_read": "many"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let big = format!("{{\"version\":\"{}\"}}", "x".repeat(STATS_MAX_BODY_BYTES));
    let (status, body) = h.stats(a.clone(), big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "too_large");

    assert_eq!(h.state.db.agent("agt_a").unwrap().unwrap().stats, None);
    assert!(h
        .metrics()
        .await
        .contains("vigie_agent_stats_refused_total 4\n"));
}

#[test]
fn times_accept_rfc3339_and_relative() {
    let now = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(parse_time("now", now), Some(now));
    assert_eq!(
        parse_time("now-15m", now).unwrap().to_rfc3339(),
        "2026-11-26T11:45:00+00:00"
    );
    assert_eq!(
        parse_time("2026-11-26T10:00:00+01:00", now)
            .unwrap()
            .to_rfc3339(),
        "2026-11-26T09:00:00+00:00"
    );
    assert_eq!(parse_time("yesterday", now), None);
}

impl Harness {
    pub(super) async fn lines(&self, peer: &Peer, id: &str, body: String) -> (StatusCode, Value) {
        let req = Request::post("/v1/batches")
            .header(vigie_wire::BATCH_HEADER, id)
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .extension(peer.clone())
            .body(Body::from(body))
            .unwrap();
        let (status, _, body) = self.call(req).await;
        (status, body)
    }

    pub(super) async fn send_json(
        &self,
        method: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, _, body) = self.call(req).await;
        (status, body)
    }
}

/// Detections in a batch become grouped alerts, unless an alert filter mutes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detections_raise_alerts_and_filters_mute_them() {
    let h = harness(IngestConfig::default());
    let peer = h.agent("agt_a", true);
    let (status, f) = h
        .send_json(
            "POST",
            "/api/v1/alert-filters",
            json!({"name": "noisy pids", "rule_id": "r1",
                   "detection": "sel:\n  process.pid|gte: 2500\ncondition: sel", "expires_at": "now+30d"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{f}");
    let body: String = (0..10)
        .map(|i| {
            json!({"message": format!("m{i}"), "host": {"name": "h1"}, "process": {"pid": 2000 + 100 * i},
                   "event": {"id": format!("e{i}")},
                   "vigie": {"detections": [{"rule_id": "r1", "title": "R1", "level": "high"}]}})
            .to_string()
                + "\n"
        })
        .collect();
    let (status, ack) = h.lines(&peer, "s1/1", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    // The same detections again (an agent's fast-lane copy): counted once, muted once.
    let (status, ack) = h.lines(&peer, "f1/0", body).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let alerts = h.get("/api/v1/alerts").await;
    assert_eq!(alerts["total"], 1, "{alerts}");
    // pids 2000..2400 raise, 2500..2900 are muted.
    assert_eq!(alerts["items"][0]["occurrences"], 5, "{alerts}");
    let filters = h.get("/api/v1/alert-filters").await;
    assert_eq!(filters["items"][0]["muted"], 5, "{filters}");
    let (status, _) = h
        .send_json("DELETE", "/api/v1/alert-filters/1", json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .send_json("DELETE", "/api/v1/alert-filters/1", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
