//! The agents' side of the API (`/v1/*`): enrollment, certificate
//! renewal, batches and statistics reports.
//!
//! Batches and reports need the agent's client certificate, checked by
//! [`authenticate_agent`] (issued by this CA — the TLS layer verified it —,
//! agent enrolled, certificate not revoked). A batch is checked in this
//! order: identity, `Vigie-Batch` id, already stored (answered as a
//! duplicate at once, before decoding, so a retried batch spends no quota),
//! decoding and size limits (`413`), then the ingest quotas
//! ([`crate::quota`]: `429` with `Retry-After`, nothing stored), then the
//! indexer, whose answer comes once the batch is durable.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde_json::{json, Value};
use vigie_wire::pki;
use vigie_wire::{
    Ack, AgentStats, BatchId, EnrollRequest, EnrollResponse, RenewRequest, RenewResponse,
    BATCH_HEADER,
};

use super::{error, AppState, Shared};
use crate::db::DbError;
use crate::ingest::{decode_batch, BatchError, IndexOutcome};
use crate::listener::Peer;
use crate::metrics::add;
use crate::quota::{Decision, Limit};

/// Largest `POST /v1/stats` body (`413` above).
pub const STATS_MAX_BODY_BYTES: usize = 64 << 10;

/// Longest agent version kept from a statistics report.
const MAX_VERSION_CHARS: usize = 64;

pub(super) async fn enroll(State(st): Shared, body: Bytes) -> Response {
    let req: EnrollRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            add(&st.metrics.enrollments_refused, 1);
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("enrollment request: {e}"),
            );
        }
    };
    let now = Utc::now();
    let group = match st.db.consume_enrollment_token(&req.token, now) {
        Ok(g) => g,
        Err(e) => {
            add(&st.metrics.enrollments_refused, 1);
            tracing::warn!(hostname = %req.hostname, reason = %e, "enrollment refused");
            let (code, msg) = match e {
                DbError::TokenUnknown => ("invalid_token", "unknown enrollment token"),
                DbError::TokenExpired => ("token_expired", "enrollment token has expired"),
                DbError::TokenExhausted => ("token_exhausted", "enrollment token has no uses left"),
                other => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        other.to_string(),
                    )
                }
            };
            return error(StatusCode::UNAUTHORIZED, code, msg);
        }
    };
    let agent_id = new_agent_id();
    let days = st.cfg.enrollment.cert_validity_days;
    let signed = match pki::sign_csr(&st.ca, &req.csr_pem, &agent_id, days) {
        Ok(s) => s,
        Err(e) => {
            add(&st.metrics.enrollments_refused, 1);
            return error(StatusCode::BAD_REQUEST, "bad_csr", e.to_string());
        }
    };
    let hostname: String = req.hostname.chars().take(255).collect();
    if let Err(e) = st.db.register_agent(
        &agent_id,
        &hostname,
        &group,
        &signed.serial_hex,
        signed.not_after,
        now,
    ) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
    }
    add(&st.metrics.enrollments, 1);
    tracing::info!(agent = %agent_id, hostname = %hostname, group = %group, "agent enrolled");
    Json(EnrollResponse {
        agent_id,
        cert_pem: signed.cert_pem,
        ca_pem: st.ca.cert_pem.clone(),
        not_after: signed.not_after.to_rfc3339(),
        group,
    })
    .into_response()
}

/// `POST /v1/renew`: a new certificate for the agent presenting a valid,
/// unrevoked one, signed for the key of the CSR sent; same agent id.
pub(super) async fn renew(
    State(st): Shared,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Response {
    let agent_id = match authenticate_agent(&st, &peer) {
        Ok(id) => id,
        Err(refusal) => {
            tracing::warn!(reason = ?refusal, "certificate renewal refused");
            return refusal.into_response();
        }
    };
    let req: RenewRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("renewal request: {e}"),
            )
        }
    };
    let days = st.cfg.enrollment.cert_validity_days;
    let signed = match pki::sign_csr(&st.ca, &req.csr_pem, &agent_id, days) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_csr", e.to_string()),
    };
    if let Err(e) =
        st.db
            .renew_agent_cert(&agent_id, &signed.serial_hex, signed.not_after, Utc::now())
    {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
    }
    add(&st.metrics.certificates_renewed, 1);
    tracing::info!(agent = %agent_id, serial = %signed.serial_hex, not_after = %signed.not_after.to_rfc3339(), "agent certificate renewed");
    Json(RenewResponse {
        cert_pem: signed.cert_pem,
        not_after: signed.not_after.to_rfc3339(),
    })
    .into_response()
}

/// `GET /v1/config`: the central sources of the agent's group (`ETag`, `304`), `404` when it
/// has none.
pub(super) async fn get_config(
    State(st): Shared,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let group = match authenticate_agent_group(&st, &peer) {
        Ok((_, group)) => group,
        Err(refusal) => return refusal.into_response(),
    };
    let st2 = st.clone();
    let g = group.clone();
    let doc =
        tokio::task::spawn_blocking(move || crate::fleet::central_config(&st2.cfg.fleet, &g)).await;
    let doc = match doc {
        Ok(Ok(Some(doc))) => doc,
        Ok(Ok(None)) => {
            return error(
                StatusCode::NOT_FOUND,
                "no_central_config",
                format!("no central sources for group {group}"),
            )
        }
        Ok(Err(e)) => {
            tracing::error!(group = %group, error = %e, "central sources cannot be served");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e);
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    let etag = format!("\"{}\"", doc.version);
    if let Some(not_modified) = super::not_modified(&headers, &etag) {
        return not_modified;
    }
    (StatusCode::OK, [(header::ETAG, etag)], Json(doc)).into_response()
}

fn new_agent_id() -> String {
    let bytes: [u8; 8] = rand::random();
    format!("agt_{}", hex::encode(bytes))
}

/// Why an agent request was refused (see [`authenticate_agent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentRefusal {
    /// No client certificate was presented (`401`).
    NoCertificate,
    /// The certificate names no agent (`401`).
    BadCertificate(String),
    /// The agent, or this certificate, has been revoked (`403`).
    Revoked,
    /// No agent with this id is enrolled here (`403`).
    Unknown,
    /// The database failed (`500`).
    Internal(String),
}

impl IntoResponse for AgentRefusal {
    fn into_response(self) -> Response {
        match self {
            AgentRefusal::NoCertificate => error(
                StatusCode::UNAUTHORIZED,
                "client_certificate_required",
                "this route needs the agent's client certificate (enroll the agent first)",
            ),
            AgentRefusal::BadCertificate(e) => {
                error(StatusCode::UNAUTHORIZED, "bad_certificate", e)
            }
            AgentRefusal::Revoked => error(
                StatusCode::FORBIDDEN,
                "revoked",
                "this agent has been revoked",
            ),
            AgentRefusal::Unknown => error(
                StatusCode::FORBIDDEN,
                "unknown_agent",
                "this agent is not enrolled here",
            ),
            AgentRefusal::Internal(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
        }
    }
}

/// The agent behind an agent request: its client certificate (already
/// verified against this CA by the TLS layer) names an enrolled agent whose
/// certificate is not revoked. Returns the agent id. Batches and statistics
/// reports both go through here.
pub fn authenticate_agent(st: &AppState, peer: &Peer) -> Result<String, AgentRefusal> {
    authenticate_agent_group(st, peer).map(|(id, _)| id)
}

/// [`authenticate_agent`], also returning the agent's group.
pub fn authenticate_agent_group(
    st: &AppState,
    peer: &Peer,
) -> Result<(String, String), AgentRefusal> {
    let cert = peer.cert_der.as_ref().ok_or(AgentRefusal::NoCertificate)?;
    let (agent_id, serial) =
        pki::agent_identity(cert).map_err(|e| AgentRefusal::BadCertificate(e.to_string()))?;
    match st.db.agent(&agent_id) {
        Ok(Some(a)) if !a.revoked && !st.db.is_serial_revoked(&serial).unwrap_or(true) => {
            Ok((agent_id, a.group))
        }
        Ok(Some(_)) => {
            tracing::warn!(agent = %agent_id, serial = %serial, "request with a revoked certificate refused");
            Err(AgentRefusal::Revoked)
        }
        Ok(None) => Err(AgentRefusal::Unknown),
        Err(e) => Err(AgentRefusal::Internal(e.to_string())),
    }
}

pub(super) async fn post_batch(
    State(st): Shared,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    add(&st.metrics.batches_received, 1);
    add(&st.metrics.bytes_received, body.len() as u64);
    let (agent_id, group) = match authenticate_agent_group(&st, &peer) {
        Ok(found) => found,
        Err(refusal) => {
            add(&st.metrics.batches_rejected, 1);
            return refusal.into_response();
        }
    };
    let batch = match headers
        .get(BATCH_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(BatchId::parse)
    {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            add(&st.metrics.batches_rejected, 1);
            return error(StatusCode::BAD_REQUEST, "bad_batch_id", e.to_string());
        }
        None => {
            add(&st.metrics.batches_rejected, 1);
            return error(
                StatusCode::BAD_REQUEST,
                "bad_batch_id",
                "missing Vigie-Batch header",
            );
        }
    };
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        None | Some("identity") => false,
        Some("gzip") => true,
        Some(other) => {
            add(&st.metrics.batches_rejected, 1);
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("Content-Encoding {other:?} is not supported (use gzip)"),
            );
        }
    };
    let version = headers
        .get(vigie_wire::batch::AGENT_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = st
        .db
        .touch_agent(&agent_id, Utc::now(), version.as_deref(), None);
    // A batch already stored is answered before it costs anything (decoding,
    // quota). One pending in the indexer's current group is not seen here:
    // it is decoded and charged, then answered as a duplicate by the indexer.
    if let Ok(true) = st.db.batch_seen(&agent_id, &batch.stream, batch.sequence) {
        add(&st.metrics.batches_duplicate, 1);
        return Json(Ack {
            accepted: None,
            duplicate: true,
            rejected_lines: vec![],
        })
        .into_response();
    }
    let st2 = st.clone();
    let aid = agent_id.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        decode_batch(&body, gzip, &st2.cfg.ingest, &aid, Utc::now()).map(|mut d| {
            let counts = st2.central.evaluate(&mut d.events, Some(&group));
            count_central(&st2, counts);
            d
        })
    })
    .await;
    let decoded = match decoded {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            add(&st.metrics.batches_rejected, 1);
            tracing::warn!(agent = %agent_id, batch = %batch.header_value(), error = %e, "batch refused");
            let status = match e {
                BatchError::Decompress(vigie_wire::DecompressError::Corrupt(_)) => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::PAYLOAD_TOO_LARGE,
            };
            return error(status, "bad_batch", e.to_string());
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    add(
        &st.metrics.bytes_decompressed,
        decoded.decompressed_bytes as u64,
    );
    let cost = decoded.events.len() + decoded.rejected.len();
    if let Some(resp) = enforce_quotas(&st, &agent_id, &batch, cost) {
        return resp;
    }
    let rejected = decoded.rejected;
    let outcome = store_and_alert(&st, agent_id.clone(), batch.clone(), decoded.events).await;
    match outcome {
        Ok(IndexOutcome::Duplicate) => Json(Ack {
            accepted: None,
            duplicate: true,
            rejected_lines: vec![],
        })
        .into_response(),
        Ok(IndexOutcome::Stored(n)) if rejected.is_empty() => Json(Ack {
            accepted: Some(n),
            duplicate: false,
            rejected_lines: vec![],
        })
        .into_response(),
        Ok(IndexOutcome::Stored(n)) => {
            add(&st.metrics.events_rejected, rejected.len() as u64);
            let lines: Vec<usize> = rejected.iter().map(|r| r.0).collect();
            tracing::warn!(agent = %agent_id, batch = %batch.header_value(), rejected = lines.len(), "lines rejected to the dead-letter store");
            let _ = st.db.add_dead_letters(
                &agent_id,
                &batch.stream,
                batch.sequence,
                &rejected,
                Utc::now(),
            );
            let body = json!({
                "error": {"code": "invalid_lines", "message": format!("{} line(s) are not JSON objects; the other lines were stored", lines.len())},
                "accepted": n,
                "duplicate": false,
                "rejected_lines": lines,
            });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
    }
}

/// Counts what central detection did to a batch.
pub(crate) fn count_central(st: &AppState, counts: crate::central::EvalCounts) {
    add(&st.metrics.events_evaluated_central, counts.evaluated);
    add(&st.metrics.events_trusted_edge, counts.trusted);
    add(&st.metrics.detections_central, counts.matches);
}

/// Stores events durably (as batch `batch` of `source_id`), then alerts on their detections,
/// leaving out those of events the indexer dropped as edge duplicates. Shared by agent
/// batches, push intakes and pull connectors.
pub(crate) async fn store_and_alert(
    st: &std::sync::Arc<AppState>,
    source_id: String,
    batch: BatchId,
    events: Vec<serde_json::Map<String, serde_json::Value>>,
) -> Result<IndexOutcome, crate::ingest::IndexError> {
    // The detections, with a copy of their events for the alert filters (few).
    let found = crate::alerts::detections_grouped(&source_id, &events, &|r| st.central.group_by(r));
    let positions: Vec<usize> = found.iter().map(|(i, _)| *i).collect();
    let (detections, kept_events) = crate::alerts::with_events(found, &events);
    let submitted = st.indexer.submit_detailed(source_id, batch, events).await?;
    if matches!(submitted.outcome, IndexOutcome::Stored(_)) && !detections.is_empty() {
        let detections =
            crate::alerts::without_positions(detections, &positions, &submitted.dropped);
        after_store(st, detections, kept_events).await;
    }
    Ok(submitted.outcome)
}

/// What follows the durable store of events with detections: the correlations are fed, and
/// the detections that raise alerts of their own (and the correlations that fired) go
/// through the alert filters, then become or join alerts.
pub(crate) async fn after_store(
    st: &std::sync::Arc<AppState>,
    detections: Vec<(usize, crate::db::NewDetection)>,
    events: Vec<serde_json::Map<String, serde_json::Value>>,
) {
    let st2 = st.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut by_event: Vec<Vec<&str>> = vec![Vec::new(); events.len()];
        for (i, d) in &detections {
            if d.origin != "external" {
                if let Some(v) = by_event.get_mut(*i) {
                    v.push(d.rule_id.as_str());
                }
            }
        }
        let feed: Vec<_> = events
            .iter()
            .zip(by_event)
            .filter(|(_, r)| !r.is_empty())
            .collect();
        let fired = st2.central.correlate(&feed, Utc::now());
        let mut own: Vec<(usize, crate::db::NewDetection)> = detections
            .into_iter()
            .filter(|(_, d)| d.origin == "external" || st2.central.alerts_on(&d.rule_id))
            .collect();
        let mut events = events;
        for d in fired {
            own.push((events.len(), d.clone()));
            events.push(crate::alerts::entity_event(&d));
        }
        (own, events)
    })
    .await;
    let Ok((detections, events)) = joined else {
        tracing::error!("alert processing failed; the events are stored");
        return;
    };
    filter_and_raise(st, detections, events).await;
}

/// Passes detections (each pointing at its event in `events`) through the alert filters,
/// counts what they muted, and raises alerts for the rest.
pub(crate) async fn filter_and_raise(
    st: &std::sync::Arc<AppState>,
    detections: Vec<(usize, crate::db::NewDetection)>,
    events: Vec<serde_json::Map<String, serde_json::Value>>,
) {
    if detections.is_empty() {
        return;
    }
    let (detections, muted) = st.alert_filters.apply(detections, &events, Utc::now());
    if !muted.is_empty() {
        let db = st.db.clone();
        match tokio::task::spawn_blocking(move || db.add_muted(&muted)).await {
            Ok(Ok(n)) => add(&st.metrics.alerts_muted, n),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot count what alert filters muted"),
            Err(e) => tracing::warn!(error = %e, "cannot count what alert filters muted"),
        }
    }
    if !detections.is_empty() {
        raise_alerts(st, detections).await;
    }
}

/// Raises (or groups) the alerts of a stored batch's detections.
pub(crate) async fn raise_alerts(st: &AppState, detections: Vec<crate::db::NewDetection>) {
    let db = st.db.clone();
    let n = detections.len();
    match tokio::task::spawn_blocking(move || db.raise_alerts(&detections, Utc::now())).await {
        Ok(Ok(r)) => {
            add(&st.metrics.alerts_created, r.created);
            add(&st.metrics.alerts_grouped, r.grouped);
            if r.created > 0 {
                tracing::info!(created = r.created, grouped = r.grouped, "alerts raised");
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, detections = n, "alerts could not be raised; the events are stored")
        }
        Err(e) => {
            tracing::error!(error = %e, detections = n, "alerts could not be raised; the events are stored")
        }
    }
}

/// Takes a batch of `cost` events from the quotas; the `429` (or `413`) to
/// send when it does not fit.
fn enforce_quotas(st: &AppState, agent_id: &str, batch: &BatchId, cost: usize) -> Option<Response> {
    let (limit, secs) = match st.quotas.check(agent_id, cost) {
        Decision::Allow => return None,
        Decision::Throttle {
            limit,
            retry_after_secs,
        } => (limit, retry_after_secs),
        Decision::TooLarge { limit, burst } => {
            add(&st.metrics.batches_rejected, 1);
            return Some(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_events",
                format!(
                    "a batch of {cost} events is larger than the {} burst ({burst} events)",
                    limit.label()
                ),
            ));
        }
    };
    let i = &st.cfg.ingest;
    let (counter, message) = match limit {
        Limit::Agent => (
            &st.metrics.batches_throttled_agent,
            format!(
                "agent {agent_id} is over its quota of {} events/s (bursts of {}); send this batch again in {secs} s",
                i.agent_events_per_second, i.agent_burst_events
            ),
        ),
        Limit::Global => (
            &st.metrics.batches_throttled_global,
            format!(
                "the collector is over its ingest limit of {} events/s from all agents; send this batch again in {secs} s",
                i.max_events_per_second
            ),
        ),
    };
    add(counter, 1);
    if st.quotas.should_warn(limit, agent_id) {
        tracing::warn!(agent = %agent_id, batch = %batch.header_value(), events = cost, reason = limit.label(), retry_after_secs = secs,
            "batch refused with 429 (not stored; the agent sends it again); more of these are logged at debug for a minute");
    } else {
        tracing::debug!(agent = %agent_id, batch = %batch.header_value(), events = cost, reason = limit.label(), retry_after_secs = secs, "batch refused with 429");
    }
    let mut resp = error(StatusCode::TOO_MANY_REQUESTS, limit.code(), message);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    Some(resp)
}

/// `POST /v1/stats`: an agent's latest counters ([`AgentStats`] as a JSON
/// object), stored for the fleet view; `204`.
pub(super) async fn post_stats(
    State(st): Shared,
    Extension(peer): Extension<Peer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let agent_id = match authenticate_agent(&st, &peer) {
        Ok(id) => id,
        Err(refusal) => {
            add(&st.metrics.stats_refused, 1);
            return refusal.into_response();
        }
    };
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            add(&st.metrics.stats_refused, 1);
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "bad_request"
            };
            return error(
                status,
                code,
                format!(
                    "statistics report: {} (at most {STATS_MAX_BODY_BYTES} bytes)",
                    rejection.body_text()
                ),
            );
        }
    };
    // A JSON object only: serde would also read a struct from an array.
    let parsed = match serde_json::from_slice::<Value>(&body) {
        Ok(v @ Value::Object(_)) => {
            serde_json::from_value::<AgentStats>(v).map_err(|e| e.to_string())
        }
        Ok(_) => Err("expected a JSON object".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    let stats = match parsed {
        Ok(s) => s,
        Err(msg) => {
            add(&st.metrics.stats_refused, 1);
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("statistics report: {msg}"),
            );
        }
    };
    // Stored as the contract's fields only: what an agent adds first is not
    // kept until the collector knows it.
    let value = match serde_json::to_value(&stats) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    let previous = st
        .db
        .agent(&agent_id)
        .ok()
        .flatten()
        .and_then(|a| a.stats)
        .and_then(|v| serde_json::from_value::<AgentStats>(v).ok());
    if crate::fleet::dropped_since(previous.as_ref(), &stats) {
        let _ = st.db.record_agent_drop(&agent_id, Utc::now());
    }
    let version: String = stats.version.chars().take(MAX_VERSION_CHARS).collect();
    let version = Some(version.as_str()).filter(|v| !v.is_empty());
    if let Err(e) = st
        .db
        .touch_agent(&agent_id, Utc::now(), version, Some(&value))
    {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
    }
    add(&st.metrics.stats_reports, 1);
    StatusCode::NO_CONTENT.into_response()
}
