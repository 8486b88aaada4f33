//! The collector's HTTP routes.
//!
//! - `/v1/*` is the agents' side ([`agent`]): enrollment (token + CSR),
//!   batches and statistics reports (client certificate required).
//! - `/api/v1/*` is the people's side: `Authorization: Bearer <token>` on
//!   every route but `/api/v1/health`.
//! - `/metrics` is the Prometheus text format.
//!
//! Errors are `{"error":{"code":"…","message":"…"}}` with a fitting status.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use vigie_wire::pki::CertifiedKey;
use vigie_wire::STATS_PATH;

use crate::config::CollectorConfig;
use crate::db::Db;
use crate::ingest::Indexer;
use crate::metrics::{add, render_labelled, Metrics};
use crate::quota::Quotas;
use crate::store::{parse_query, Store};

pub mod agent;
pub mod alerts;
pub mod hunts;
pub mod intakes;
pub mod rules;

pub use agent::{authenticate_agent, AgentRefusal, STATS_MAX_BODY_BYTES};
use agent::{enroll, post_batch, post_stats};

/// Everything the handlers share.
pub struct AppState {
    pub cfg: CollectorConfig,
    pub db: Arc<Db>,
    pub store: Arc<Store>,
    pub indexer: Indexer,
    pub metrics: Arc<Metrics>,
    /// Per-agent and global ingest limits.
    pub quotas: Quotas,
    pub ca: CertifiedKey,
    pub started: Instant,
    /// Alert filters in force.
    pub alert_filters: crate::alert_filters::AlertFilters,
    /// Central detection: the rule pack and the correlations.
    pub central: Arc<crate::central::Central>,
    /// The pull connectors running: name, format and their counters.
    pub connectors: Vec<(String, String, vigie_connect::StatsHandle)>,
    /// Retro-hunts, running and finished (in memory).
    pub hunts: crate::hunts::Hunts,
}

type Shared = State<Arc<AppState>>;

/// Most events a search page returns.
pub const MAX_LIMIT: usize = 10_000;

/// The router with every route.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.cfg.ingest.max_body_bytes;
    let api = Router::new()
        .route("/events", get(search_events))
        .route("/events/export", get(export_events))
        .route("/agents", get(list_agents))
        .route("/agents/{id}", get(get_agent))
        .route("/agents/{id}/revoke", post(revoke_agent))
        .route("/dead-letters", get(dead_letters))
        .route("/alerts", get(alerts::list_alerts))
        .route(
            "/alert-filters",
            get(alerts::list_filters).post(alerts::create_filter),
        )
        .route(
            "/alert-filters/{id}",
            axum::routing::delete(alerts::delete_filter),
        )
        .route(
            "/alerts/{id}",
            get(alerts::get_alert).patch(alerts::patch_alert),
        )
        .route(
            "/rules",
            get(rules::list_rules)
                .post(rules::post_rules)
                .layer(DefaultBodyLimit::max(rules::MAX_RULES_BODY_BYTES + 1)),
        )
        .route(
            "/rules/{id}",
            get(rules::get_rule).delete(rules::delete_rule),
        )
        .route(
            "/intakes",
            get(intakes::list_intakes).post(intakes::create_intake),
        )
        .route(
            "/intakes/{id}",
            axum::routing::delete(intakes::delete_intake),
        )
        .route("/connectors", get(list_connectors))
        .route("/hunts", get(hunts::list_hunts).post(hunts::create_hunt))
        .route(
            "/hunts/{id}",
            get(hunts::get_hunt).delete(hunts::delete_hunt),
        )
        .route("/rules/{id}/enable", post(rules::enable_rule))
        .route("/rules/{id}/disable", post(rules::disable_rule))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route("/health", get(health))
        .route("/intake/{key}", post(intakes::post_intake));
    Router::new()
        .route("/v1/enroll", post(enroll))
        .route("/v1/batches", post(post_batch))
        .route(vigie_wire::RENEW_PATH, post(agent::renew))
        .route(vigie_wire::CONFIG_PATH, get(agent::get_config))
        .route(vigie_wire::RULEPACK_PATH, get(rules::get_rulepack))
        .route(
            STATS_PATH,
            post(post_stats).layer(DefaultBodyLimit::max(STATS_MAX_BODY_BYTES)),
        )
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn list_connectors(State(st): Shared) -> Response {
    Json(crate::connectors::stats_json(&st.connectors)).into_response()
}

/// `304` with the `ETag` when `If-None-Match` names `etag` (a quoted version), else `None`.
fn not_modified(headers: &axum::http::HeaderMap, etag: &str) -> Option<Response> {
    let current = headers
        .get(axum::http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    current.then(|| {
        (
            StatusCode::NOT_MODIFIED,
            [(axum::http::header::ETAG, etag.to_owned())],
        )
            .into_response()
    })
}

/// An error answer.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into()}});
    (status, Json(body)).into_response()
}

async fn require_token(State(st): Shared, mut req: Request, next: Next) -> Response {
    add(&st.metrics.api_requests, 1);
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        add(&st.metrics.api_unauthorized, 1);
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing 'Authorization: Bearer <token>' (the admin token is in DATA_DIR/admin.token)",
        );
    };
    match st.db.check_api_token(token) {
        Ok(Some(name)) => {
            req.extensions_mut().insert(alerts::Actor(name));
            next.run(req).await
        }
        Ok(None) => {
            add(&st.metrics.api_unauthorized, 1);
            error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown API token",
            )
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn health(State(st): Shared) -> Response {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": st.started.elapsed().as_secs(),
    }))
    .into_response()
}

async fn metrics(State(st): Shared) -> Response {
    let stats = st.store.stats();
    let pack = st.central.pack();
    let (corr, states, pending) = st.central.correlation_stats();
    let agents = st.db.agents().map(|a| a.len()).unwrap_or(0);
    let mut text = st.metrics.render(&[
        ("vigie_agents", "Enrolled agents", agents as f64),
        ("vigie_store_days", "Day indexes on disk", stats.days as f64),
        (
            "vigie_store_docs",
            "Events stored (committed)",
            stats.docs as f64,
        ),
        (
            "vigie_store_bytes",
            "Bytes of the event indexes on disk",
            stats.bytes as f64,
        ),
        (
            "vigie_quota_tracked_agents",
            "Agents whose ingest quota state is held in memory",
            st.quotas.tracked_agents() as f64,
        ),
        (
            "vigie_rules",
            "Detection rules in the collector's pack",
            pack.set.len() as f64,
        ),
        (
            "vigie_rulepack_revision",
            "Revision of the collector's rule pack",
            pack.revision as f64,
        ),
        (
            "vigie_correlation_states",
            "Correlation window states held (one per correlation and group)",
            states as f64,
        ),
        (
            "vigie_correlation_pending_events",
            "Detections waiting to be fed to correlations in event-time order",
            pending as f64,
        ),
        (
            "vigie_correlation_fired_total",
            "Correlations fired",
            corr.fired as f64,
        ),
        (
            "vigie_correlation_late_dropped_total",
            "Detections too late for the correlation windows (beyond the lateness), left out",
            corr.late_dropped as f64,
        ),
        (
            "vigie_correlation_state_evicted_total",
            "Correlation window states evicted because max_state_entries was reached",
            corr.state_evicted as f64,
        ),
    ]);
    match st.db.fleet_drops() {
        Ok(drops) => {
            render_labelled(
                &mut text,
                (
                    "vigie_fleet_dropped_events",
                    "Events dropped by agents, by reason: sum of each agent's latest report (totals since each agent started)",
                    "gauge",
                ),
                "reason",
                &[
                    ("refused", drops.refused as f64),
                    ("spool_full", drops.spool_full as f64),
                    ("rate_limit", drops.rate_limit as f64),
                ],
            );
            text.push_str(&format!(
                "# HELP vigie_agents_reporting_stats Agents that have reported statistics\n\
                 # TYPE vigie_agents_reporting_stats gauge\nvigie_agents_reporting_stats {}\n",
                drops.reporting_agents
            ));
        }
        Err(e) => tracing::warn!(error = %e, "cannot sum the agents' drops for /metrics"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Query parameters of the events routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    offset: Option<usize>,
}

struct Parsed {
    query: crate::store::Query,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

/// A `400` to send back: (code, message).
type BadRequest = (&'static str, String);

fn bad_request((code, message): BadRequest) -> Response {
    error(StatusCode::BAD_REQUEST, code, message)
}

fn parse_params(p: &EventsParams) -> Result<Parsed, BadRequest> {
    let query =
        parse_query(p.q.as_deref().unwrap_or("")).map_err(|e| ("bad_query", e.to_string()))?;
    let time = |name: &str, v: &Option<String>| -> Result<Option<DateTime<Utc>>, BadRequest> {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_time(s, Utc::now()).ok_or_else(|| {
                    (
                        "bad_time",
                        format!("{name}={s:?}: use RFC 3339 (2026-11-26T10:00:00Z) or now-15m"),
                    )
                })
            })
            .transpose()
    };
    Ok(Parsed {
        query,
        from: time("from", &p.from)?,
        to: time("to", &p.to)?,
    })
}

/// Reads an RFC 3339 time, `now`, or `now-<duration>` (`now-15m`, `now-2h`, `now-7d`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s == "now" {
        return Some(now);
    }
    if let Some(d) = s.strip_prefix("now-") {
        let d = humantime::parse_duration(d).ok()?;
        return chrono::Duration::from_std(d).ok().map(|d| now - d);
    }
    if let Some(d) = s.strip_prefix("now+") {
        let d = humantime::parse_duration(d).ok()?;
        return chrono::Duration::from_std(d).ok().map(|d| now + d);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

async fn search_events(State(st): Shared, Query(p): Query<EventsParams>) -> Response {
    let parsed = match parse_params(&p) {
        Ok(x) => x,
        Err(e) => return bad_request(e),
    };
    let limit = p.limit.unwrap_or(100);
    if limit > MAX_LIMIT {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            format!("limit must be at most {MAX_LIMIT}; use /api/v1/events/export for more"),
        );
    }
    let offset = p.offset.unwrap_or(0);
    let store = st.store.clone();
    let res = tokio::task::spawn_blocking(move || {
        store.search(&parsed.query, parsed.from, parsed.to, limit, offset)
    })
    .await;
    match res {
        Ok(Ok(r)) => Json(json!({"total": r.total, "events": r.events})).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn export_events(State(st): Shared, Query(p): Query<EventsParams>) -> Response {
    if p.limit.is_some() || p.offset.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "export streams every match: limit and offset do not apply",
        );
    }
    let parsed = match parse_params(&p) {
        Ok(x) => x,
        Err(e) => return bad_request(e),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let store = st.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(64 << 10);
        let mut sink = |v: Value| -> bool {
            if serde_json::to_writer(&mut buf, &v).is_err() {
                return false;
            }
            buf.push(b'\n');
            if buf.len() >= 60 << 10 {
                let chunk = Bytes::from(std::mem::replace(&mut buf, Vec::with_capacity(64 << 10)));
                return tx.blocking_send(chunk).is_ok();
            }
            true
        };
        let r = store.export(&parsed.query, parsed.from, parsed.to, &mut sink);
        if let Err(e) = r {
            tracing::error!(error = %e, "export failed midway");
            return;
        }
        if !buf.is_empty() {
            let _ = tx.blocking_send(Bytes::from(buf));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn list_agents(State(st): Shared) -> Response {
    match st.db.agents() {
        Ok(agents) => {
            let items: Vec<Value> = agents
                .iter()
                .map(|a| agent_json(a, &st.cfg.fleet))
                .collect();
            Json(json!({"items": items})).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn get_agent(State(st): Shared, Path(id): Path<String>) -> Response {
    match st.db.agent(&id) {
        Ok(Some(a)) => Json(agent_json(&a, &st.cfg.fleet)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", format!("no agent {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `POST /api/v1/agents/{id}/revoke`: refuses the agent's certificates from
/// now on and rewrites the CRL (see [`crate::revoke`]).
async fn revoke_agent(State(st): Shared, Path(id): Path<String>) -> Response {
    let st2 = st.clone();
    let id2 = id.clone();
    let done = tokio::task::spawn_blocking(move || {
        crate::revoke::revoke(&st2.cfg, &st2.db, &st2.ca, &id2, Utc::now())
    })
    .await;
    match done {
        Ok(Ok(crl)) => match st.db.agent(&id) {
            Ok(Some(a)) => {
                let mut body = agent_json(&a, &st.cfg.fleet);
                body["crl"] = json!(crl.display().to_string());
                Json(body).into_response()
            }
            Ok(None) => error(StatusCode::NOT_FOUND, "not_found", format!("no agent {id}")),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        },
        Ok(Err(crate::revoke::RevokeError::UnknownAgent(_))) => {
            error(StatusCode::NOT_FOUND, "not_found", format!("no agent {id}"))
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

fn agent_json(a: &crate::db::AgentRow, fleet: &crate::fleet::FleetConfig) -> Value {
    let status = crate::fleet::status(fleet, a, Utc::now());
    json!({
        "id": a.id,
        "hostname": a.hostname,
        "group": a.group,
        "version": a.version,
        "enrolled_at": a.enrolled_at,
        "last_seen": a.last_seen,
        "status": status.status,
        "status_reasons": status.reasons,
        "cert_not_after": a.cert_not_after,
        "stats": stats_json(a),
    })
}

/// The agent's latest report with `reported_at`, or null.
fn stats_json(a: &crate::db::AgentRow) -> Value {
    match &a.stats {
        Some(Value::Object(map)) => {
            let mut map = map.clone();
            map.insert("reported_at".into(), json!(a.stats_at));
            Value::Object(map)
        }
        Some(other) => json!({"value": other, "reported_at": a.stats_at}),
        None => Value::Null,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterParams {
    #[serde(default)]
    limit: Option<usize>,
}

async fn dead_letters(State(st): Shared, Query(p): Query<DeadLetterParams>) -> Response {
    match st.db.dead_letters(p.limit.unwrap_or(100).min(MAX_LIMIT)) {
        Ok(rows) => Json(json!({"items": rows})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

#[cfg(test)]
mod hunts_tests;
#[cfg(test)]
mod intakes_tests;
#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod tests;
