//! `/api/v1/hunts`: retro-hunts, one Sigma detection rule run over the stored events of a
//! time range as a background job (see [`crate::hunts`] for how the rule is loaded and the
//! events scanned).
//!
//! - `POST /api/v1/hunts` with `{"rule_id": "…"}` (a rule of the pack, enabled or disabled)
//!   or `{"rule": "<YAML text of one detection rule>"}`, plus `"from"` and `"to"` (RFC 3339 or
//!   relative like `now-7d`; `to` defaults to `now`; the range is `from <= time < to`), an
//!   optional `"query"` (a pre-filter in the events search syntax: only the events it matches
//!   are evaluated) and an optional `"max_matches"` (default 1000, at most 10000)
//!   → `202 {"id": "hunt_…", "status": "running"}`. `400` names what is wrong: an unknown rule
//!   id, a rule text the loader rejects (with its reason), a correlation or a text holding
//!   several rules ("a retro-hunt runs one detection rule"), a bad time, `from` after `to`, a
//!   bad query or `max_matches`. `429` when 2 hunts are running already.
//! - `GET /api/v1/hunts/{id}` → `{"id", "status": "running"|"done"|"failed"|"cancelled",
//!   "rule": {id, title, level}, "from", "to", "query", "max_matches", "scanned", "total"
//!   (events in range, counted at the start), "matches_total", "truncated", "matches"
//!   (the matching events as stored, newest first, at most `max_matches`),
//!   "cancel_requested", "started_at", "finished_at", "error"}`; progress moves every 1000
//!   events scanned.
//! - `GET /api/v1/hunts` → `{"items": [hunt…]}`, newest first, without `matches`.
//! - `DELETE /api/v1/hunts/{id}` asks a running hunt to stop (`202` and the hunt; it ends
//!   `cancelled` at its next progress update) or forgets an ended one (`204`).
//!
//! Hunts are kept in memory only, the last 50 of them: a restart forgets them.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::{error, parse_time, Shared};
use crate::hunts::{
    load_rule, HuntError, HuntRule, HuntSpec, Removal, DEFAULT_MAX_MATCHES, MAX_MATCHES,
};
use crate::store::parse_query;

/// The body of `POST /api/v1/hunts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewHunt {
    /// A rule of the pack, by id.
    #[serde(default)]
    rule_id: Option<String>,
    /// The YAML text of one detection rule.
    #[serde(default)]
    rule: Option<String>,
    /// Start of the range (included).
    from: String,
    /// End of the range (excluded); default `now`.
    #[serde(default)]
    to: Option<String>,
    /// Pre-filter, in the events search syntax.
    #[serde(default)]
    query: Option<String>,
    /// Matching events kept.
    #[serde(default)]
    max_matches: Option<usize>,
}

fn bad(code: &str, message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, code, message)
}

fn hunt_error(e: HuntError) -> Response {
    let code = match e {
        HuntError::UnknownRule(_) => "unknown_rule",
        HuntError::NotOneRule(_) => "not_one_rule",
        HuntError::Rejected(_) => "invalid_rule",
        HuntError::Busy => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_hunts",
                e.to_string(),
            )
        }
    };
    bad(code, e.to_string())
}

pub(super) async fn create_hunt(State(st): Shared, body: Bytes) -> Response {
    let req: NewHunt = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad(
                "bad_body",
                format!("expected {{rule_id | rule, from, to?, query?, max_matches?}}: {e}"),
            )
        }
    };
    let rule = match (req.rule_id, req.rule) {
        (Some(id), None) => HuntRule::Id(id),
        (None, Some(yaml)) => HuntRule::Yaml(yaml),
        _ => {
            return bad(
                "bad_rule",
                "give either rule_id (a rule of the pack) or rule (the YAML text of one rule)",
            )
        }
    };
    let now = Utc::now();
    // `Err` carries the message of the 400.
    let time = |name: &str, t: &str| {
        parse_time(t, now).ok_or_else(|| {
            format!("{name}={t:?} is not an RFC 3339 time or a relative time like now-7d")
        })
    };
    let from = match time("from", &req.from) {
        Ok(t) => t,
        Err(m) => return bad("bad_time", m),
    };
    let to = match time("to", req.to.as_deref().unwrap_or("now")) {
        Ok(t) => t,
        Err(m) => return bad("bad_time", m),
    };
    if from > to {
        return bad("bad_time", format!("from ({from}) is after to ({to})"));
    }
    let query_text = req.query.filter(|q| !q.trim().is_empty());
    let query = match parse_query(query_text.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return bad("bad_query", format!("query: {e}")),
    };
    let max_matches = req.max_matches.unwrap_or(DEFAULT_MAX_MATCHES);
    if !(1..=MAX_MATCHES).contains(&max_matches) {
        return bad(
            "bad_max_matches",
            format!("max_matches must be 1 to {MAX_MATCHES}"),
        );
    }
    // Loading a rule of the pack reads the whole pack: off the async threads.
    let pack = st.central.pack();
    let loaded = tokio::task::spawn_blocking(move || load_rule(&pack, &rule)).await;
    let (set, rule) = match loaded {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return hunt_error(e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    let spec = HuntSpec {
        rule,
        set,
        query_text,
        query,
        from,
        to,
        max_matches,
    };
    let hunt = match st.hunts.register(spec) {
        Ok(h) => h,
        Err(e) => return hunt_error(e),
    };
    let (worker, store) = (hunt.clone(), st.store.clone());
    let watcher = hunt.clone();
    tokio::spawn(async move {
        let res = tokio::task::spawn_blocking(move || worker.run(&store)).await;
        if let Err(e) = res {
            tracing::error!(hunt = %watcher.id(), error = %e, "retro-hunt worker died");
            watcher.fail(format!("the hunt stopped unexpectedly: {e}"));
        }
    });
    (
        StatusCode::ACCEPTED,
        Json(json!({"id": hunt.id(), "status": "running"})),
    )
        .into_response()
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no hunt {id} (hunts are kept in memory: the last 50, until a restart)"),
    )
}

pub(super) async fn get_hunt(State(st): Shared, Path(id): Path<String>) -> Response {
    match st.hunts.get(&id) {
        Some(h) => Json(h.to_json(true)).into_response(),
        None => not_found(&id),
    }
}

pub(super) async fn list_hunts(State(st): Shared) -> Response {
    let items: Vec<_> = st.hunts.list().iter().map(|h| h.to_json(false)).collect();
    Json(json!({"items": items})).into_response()
}

pub(super) async fn delete_hunt(State(st): Shared, Path(id): Path<String>) -> Response {
    match st.hunts.cancel_or_forget(&id) {
        Some(Removal::Cancelling(h)) => {
            (StatusCode::ACCEPTED, Json(h.to_json(false))).into_response()
        }
        Some(Removal::Forgotten) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(&id),
    }
}
