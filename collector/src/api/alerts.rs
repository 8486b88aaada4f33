//! `/api/v1/alerts`: list (filters, sorting, paging), read one with its events and history,
//! and change its status, verdict or comments.
//!
//! - `GET /api/v1/alerts?status=&rule=&urgency_min=&urgency_max=&from=&to=&entity=&sort=&limit=&offset=`
//!   → `{"total":N,"items":[Alert…]}`; `sort` is `last_seen` (default), `first_seen`,
//!   `urgency` or `occurrences`, highest first; `from` / `to` bound `last_seen`.
//! - `GET /api/v1/alerts/{id}` → the alert, plus `events` (the stored events of its first
//!   detections, at most 100) and `history`.
//! - `PATCH /api/v1/alerts/{id}` with `{"status":…, "verdict":…, "comment":…}` (any of them):
//!   status `open` / `in_progress` / `closed`; verdict `true_positive`, `false_positive`,
//!   `benign` or `null`. Each change is recorded with the API token's name and the time.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, parse_time, Shared};
use crate::alerts::alert_json;
use crate::db::{AlertFilter, AlertSort};

/// Most alerts a page returns.
const MAX_ALERTS: usize = 1000;
/// Most events an alert shows.
const ALERT_EVENTS: usize = 100;

const STATUSES: [&str; 3] = ["open", "in_progress", "closed"];
const VERDICTS: [&str; 3] = ["true_positive", "false_positive", "benign"];

/// The API token's name, set by the token check, for the history.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    status: Option<String>,
    rule: Option<String>,
    urgency_min: Option<i64>,
    urgency_max: Option<i64>,
    from: Option<String>,
    to: Option<String>,
    entity: Option<String>,
    sort: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// The answer to a blocking database task: `ok` of its value, or a `500` saying what failed.
fn answer<T>(
    res: Result<Result<T, crate::db::DbError>, tokio::task::JoinError>,
    ok: impl FnOnce(T) -> Response,
) -> Response {
    match res {
        Ok(Ok(v)) => ok(v),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// An alert's JSON, or `404` when there is no alert `id`.
fn alert_or_404(body: Option<Value>, id: i64) -> Response {
    match body {
        Some(body) => Json(body).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", format!("no alert {id}")),
    }
}

fn bad(code: &str, message: String) -> Response {
    error(StatusCode::BAD_REQUEST, code, message)
}

pub(super) async fn list_alerts(State(st): Shared, Query(p): Query<ListParams>) -> Response {
    let now = Utc::now();
    if let Some(s) = p.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return bad(
            "bad_status",
            format!("status {s:?} is not one of {STATUSES:?}"),
        );
    }
    // `Err` carries the message of the 400.
    let time = |name: &str, v: &Option<String>| match v {
        None => Ok(None),
        Some(t) => parse_time(t, now).map(Some).ok_or_else(|| {
            format!("{name}={t:?} is not an RFC 3339 time or a relative time like now-1h")
        }),
    };
    let from = match time("from", &p.from) {
        Ok(t) => t,
        Err(m) => return bad("bad_time", m),
    };
    let to = match time("to", &p.to) {
        Ok(t) => t,
        Err(m) => return bad("bad_time", m),
    };
    let sort = match p.sort.as_deref() {
        None | Some("last_seen") => AlertSort::LastSeen,
        Some("first_seen") => AlertSort::FirstSeen,
        Some("urgency") => AlertSort::Urgency,
        Some("occurrences") => AlertSort::Occurrences,
        Some(other) => {
            return bad(
                "bad_sort",
                format!("sort {other:?} is not last_seen, first_seen, urgency or occurrences"),
            )
        }
    };
    let limit = p.limit.unwrap_or(100);
    if limit > MAX_ALERTS {
        return bad("bad_limit", format!("limit must be at most {MAX_ALERTS}"));
    }
    let filter = AlertFilter {
        status: p.status,
        rule_id: p.rule,
        urgency_min: p.urgency_min,
        urgency_max: p.urgency_max,
        from,
        to,
        entity: p.entity,
        sort,
        limit,
        offset: p.offset.unwrap_or(0),
    };
    let db = st.db.clone();
    let res = tokio::task::spawn_blocking(move || {
        let (total, rows) = db.list_alerts(&filter)?;
        let mut items = Vec::with_capacity(rows.len());
        for a in &rows {
            items.push(alert_json(a, &db.alert_events(a.id, ALERT_EVENTS)?));
        }
        Ok::<_, crate::db::DbError>((total, items))
    })
    .await;
    answer(res, |(total, items)| {
        Json(json!({"total": total, "items": items})).into_response()
    })
}

pub(super) async fn get_alert(State(st): Shared, Path(id): Path<i64>) -> Response {
    let (db, store) = (st.db.clone(), st.store.clone());
    let res = tokio::task::spawn_blocking(move || {
        let Some(a) = db.get_alert(id)? else {
            return Ok(None);
        };
        let ids = db.alert_events(id, ALERT_EVENTS)?;
        let history = db.alert_history(id)?;
        let mut events = Vec::new();
        for (agent, event_id) in &ids {
            if event_id.starts_with("sha256-") {
                continue; // an event without an id cannot be looked up
            }
            let q = format!("event.id:\"{}\" AND agent.id:\"{}\"", event_id, agent);
            if let Ok(query) = crate::store::parse_query(&q) {
                if let Ok(found) = store.search(&query, None, None, 1, 0) {
                    events.extend(found.events);
                }
            }
        }
        let mut body = alert_json(&a, &ids);
        body["events"] = Value::Array(events);
        body["history"] = serde_json::to_value(history).unwrap_or(Value::Null);
        Ok::<_, crate::db::DbError>(Some(body))
    })
    .await;
    answer(res, |body| alert_or_404(body, id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    status: Option<String>,
    /// Absent: unchanged; `null`: cleared.
    #[serde(default, deserialize_with = "some_or_null")]
    verdict: Option<Option<String>>,
    comment: Option<String>,
}

fn some_or_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::<String>::deserialize(d)?))
}

/// Longest comment kept.
const MAX_COMMENT_BYTES: usize = 4096;

pub(super) async fn patch_alert(
    State(st): Shared,
    Extension(actor): Extension<Actor>,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Response {
    let patch: Patch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return bad(
                "bad_body",
                format!("expected {{status, verdict, comment}}: {e}"),
            )
        }
    };
    if let Some(s) = patch.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return bad(
            "bad_status",
            format!("status {s:?} is not one of {STATUSES:?}"),
        );
    }
    if let Some(Some(v)) = patch
        .verdict
        .as_ref()
        .filter(|v| v.as_deref().is_some_and(|v| !VERDICTS.contains(&v)))
    {
        return bad(
            "bad_verdict",
            format!("verdict {v:?} is not one of {VERDICTS:?} or null"),
        );
    }
    if patch
        .comment
        .as_ref()
        .is_some_and(|c| c.len() > MAX_COMMENT_BYTES)
    {
        return bad(
            "bad_comment",
            format!("a comment is at most {MAX_COMMENT_BYTES} bytes"),
        );
    }
    if patch.status.is_none() && patch.verdict.is_none() && patch.comment.is_none() {
        return bad(
            "bad_body",
            "nothing to change: give status, verdict or comment".into(),
        );
    }
    let db = st.db.clone();
    let res = tokio::task::spawn_blocking(move || {
        let updated = db.update_alert(
            id,
            patch.status.as_deref(),
            patch.verdict.as_ref().map(|v| v.as_deref()),
            patch.comment.as_deref(),
            &actor.0,
            Utc::now(),
        )?;
        match updated {
            Some(a) => Ok(Some(alert_json(&a, &db.alert_events(id, ALERT_EVENTS)?))),
            None => Ok::<_, crate::db::DbError>(None),
        }
    })
    .await;
    answer(res, |body| alert_or_404(body, id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewFilter {
    name: String,
    /// Only detections of this rule.
    rule_id: Option<String>,
    /// The Sigma `detection:` block, as YAML text.
    detection: String,
    /// Until when it mutes (RFC 3339, or relative like `now+30d`); absent: no expiry.
    expires_at: Option<String>,
}

pub(super) async fn create_filter(
    State(st): Shared,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> Response {
    let f: NewFilter = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return bad(
                "bad_body",
                format!("expected {{name, rule_id?, detection, expires_at?}}: {e}"),
            )
        }
    };
    if f.name.trim().is_empty() || f.name.len() > 200 {
        return bad("bad_name", "name must be 1 to 200 characters".into());
    }
    if let Err(reason) = crate::alert_filters::compile(&f.detection) {
        return bad("bad_detection", reason);
    }
    let now = Utc::now();
    let expires_at = match f.expires_at.as_deref() {
        None => None,
        Some(t) => match parse_time(t, now) {
            Some(t) => Some(t),
            None => {
                return bad(
                    "bad_time",
                    format!(
                        "expires_at={t:?} is not an RFC 3339 time or a relative time like now+30d"
                    ),
                )
            }
        },
    };
    // Stored, then the compiled set replaced, off the async threads.
    let state = st.clone();
    let res = tokio::task::spawn_blocking(move || {
        let db = &state.db;
        let id = db.create_alert_filter(
            &f.name,
            f.rule_id.as_deref(),
            &f.detection,
            expires_at,
            &actor.0,
            now,
        )?;
        state.alert_filters.reload(db)?;
        Ok(db.list_alert_filters()?.into_iter().find(|r| r.id == id))
    })
    .await;
    answer(res, |row| {
        (StatusCode::CREATED, Json(json!(row))).into_response()
    })
}

pub(super) async fn list_filters(State(st): Shared) -> Response {
    let db = st.db.clone();
    let res = tokio::task::spawn_blocking(move || db.list_alert_filters()).await;
    answer(res, |rows| Json(json!({"items": rows})).into_response())
}

pub(super) async fn delete_filter(State(st): Shared, Path(id): Path<i64>) -> Response {
    let state = st.clone();
    let res = tokio::task::spawn_blocking(move || {
        let deleted = state.db.delete_alert_filter(id)?;
        if deleted {
            state.alert_filters.reload(&state.db)?;
        }
        Ok(deleted)
    })
    .await;
    answer(res, |deleted| {
        if deleted {
            StatusCode::NO_CONTENT.into_response()
        } else {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no alert filter {id}"),
            )
        }
    })
}
