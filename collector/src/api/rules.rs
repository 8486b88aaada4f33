//! `/api/v1/rules`: the collector's rule pack, and `/v1/rulepack`: the same pack for agents.
//!
//! - `POST /api/v1/rules` with a YAML body (`Content-Type: application/yaml`; one or more
//!   documents separated by `---`, detection or correlation rules, each with an `id`) checks
//!   the rules against the whole pack (syntax, mappings, duplicate ids, correlation
//!   references), then stores them (replacing API rules with the same ids) and reloads the
//!   pack: `201 {"ids":[…], "version":…, "revision":…}`, or `400` naming each problem.
//! - `GET /api/v1/rules` → `{"version", "revision", "items":[{id, title, level, kind, origin,
//!   enabled, alerts}], "rejected":[{file, id, reason}]}`; `GET /api/v1/rules/{id}` adds the
//!   rule's YAML (its file's text for a file rule).
//! - `POST /api/v1/rules/{id}/disable` and `/enable` (any origin); `DELETE /api/v1/rules/{id}`
//!   removes an API rule (a file rule is removed from its file: `409`).
//! - `GET /v1/rulepack` (agent certificate): `{version, revision, rules:[{name, text}],
//!   mappings:[{name, text}], placeholders, disabled}` with `ETag: "<version>"`; a request
//!   with `If-None-Match` of the current version gets `304`.
//!
//! Every change makes a new pack version (a digest of the texts and options), recorded with
//! an increasing revision number.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde_json::{json, Value};

use super::alerts::Actor;
use super::{error, Shared};
use crate::central::{api_source_name, CentralError, Pack};
use crate::listener::Peer;
use vigie_wire::{NamedText, Rulepack};

/// Largest rule body accepted (a rule is a few KiB).
pub const MAX_RULES_BODY_BYTES: usize = vigie_detect::MAX_RULE_FILE_BYTES as usize;

fn internal(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

fn pack_json(pack: &Pack) -> Value {
    json!({
        "version": pack.version(),
        "revision": pack.revision,
        "items": pack.list(),
        "rejected": pack.report.rejected,
    })
}

pub(super) async fn list_rules(State(st): Shared) -> Response {
    let mut body = pack_json(&st.central.pack());
    let groups: serde_json::Map<String, Value> = st
        .central
        .group_packs()
        .iter()
        .map(|(name, p)| {
            let ids: Vec<String> = p
                .list()
                .into_iter()
                .filter(|r| r.enabled)
                .map(|r| r.id)
                .collect();
            (
                name.clone(),
                json!({"version": p.version(), "rules": ids, "disabled": p.disabled}),
            )
        })
        .collect();
    if let Some(obj) = body.as_object_mut() {
        obj.insert("groups".into(), Value::Object(groups));
    }
    Json(body).into_response()
}

pub(super) async fn get_rule(State(st): Shared, Path(id): Path<String>) -> Response {
    let pack = st.central.pack();
    let Some(info) = pack.list().into_iter().find(|r| r.id == id) else {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no rule {id}"));
    };
    let source = if info.origin == "api" {
        api_source_name(&id)
    } else {
        info.origin.clone()
    };
    let yaml = pack
        .sources
        .iter()
        .find(|(name, _)| *name == source)
        .map(|(_, text)| text.clone());
    let mut body = serde_json::to_value(&info).unwrap_or_else(|_| json!({}));
    if let Some(obj) = body.as_object_mut() {
        obj.insert("yaml".into(), yaml.map_or(Value::Null, Value::String));
        obj.insert("version".into(), Value::String(pack.version().to_owned()));
    }
    Json(body).into_response()
}

/// The documents of a YAML text, each with its own text (the analyst's formatting kept).
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
            continue;
        }
        if let Some(last) = docs.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// The `id` of one document, or why it cannot be taken.
fn document_id(doc: &str, n: usize) -> Result<String, String> {
    let value: yaml_serde::Value =
        yaml_serde::from_str(doc).map_err(|e| format!("document {n}: not YAML: {e}"))?;
    let Some(map) = value.as_mapping() else {
        return Err(format!("document {n}: not a YAML mapping"));
    };
    match map.get("action").and_then(|a| a.as_str()) {
        None | Some("correlation") => {}
        Some(other) => {
            return Err(format!(
            "document {n}: `action: {other}` collections are not taken here; post each rule whole"
        ))
        }
    }
    let id = map
        .get("id")
        .and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("document {n}: a rule needs an `id` to be managed"))?;
    let valid = id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(format!(
            "document {n}: id {id:?} must be 1 to 200 letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(id.to_owned())
}

pub(super) async fn post_rules(
    State(st): Shared,
    Extension(actor): Extension<Actor>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.contains("yaml") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the rules as YAML (Content-Type: application/yaml), not {ctype:?}"),
        );
    }
    if body.len() > MAX_RULES_BODY_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("rules are limited to {MAX_RULES_BODY_BYTES} bytes per request"),
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad_body", "the body is not UTF-8");
    };
    let mut rules: Vec<(String, String)> = Vec::new();
    let mut problems: Vec<Value> = Vec::new();
    for (n, doc) in documents(text).into_iter().enumerate() {
        match document_id(&doc, n + 1) {
            Ok(id) if rules.iter().any(|(i, _)| *i == id) => problems
                .push(json!({"id": id, "reason": format!("document {}: id given twice", n + 1)})),
            Ok(id) => rules.push((id, doc)),
            Err(reason) => problems.push(json!({"id": null, "reason": reason})),
        }
    }
    if rules.is_empty() && problems.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "no_rules",
            "the body holds no rule",
        );
    }
    if !problems.is_empty() {
        return rejected(problems);
    }
    let state = st.clone();
    type Stored = (Vec<String>, String, i64);
    let res = tokio::task::spawn_blocking(move || -> Result<Result<Stored, Vec<Value>>, CentralError> {
        let candidate = state.central.try_pack(&rules)?;
        let mut problems = Vec::new();
        for (id, _) in &rules {
            for r in candidate.rejections_of(&api_source_name(id)) {
                problems.push(json!({"id": r.id.clone().unwrap_or_else(|| id.clone()), "reason": r.reason}));
            }
        }
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        state.db.put_api_rules(&rules, &actor.0, Utc::now())?;
        let pack = state.central.reload()?;
        tracing::info!(actor = %actor.0, ids = ?rules.iter().map(|(i, _)| i).collect::<Vec<_>>(), version = %pack.version(), "rules stored");
        let ids = rules.into_iter().map(|(i, _)| i).collect();
        Ok(Ok((ids, pack.version().to_owned(), pack.revision)))
    })
    .await;
    match res {
        Ok(Ok(Ok((ids, version, revision)))) => (
            StatusCode::CREATED,
            Json(json!({"ids": ids, "version": version, "revision": revision})),
        )
            .into_response(),
        Ok(Ok(Err(problems))) => rejected(problems),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

fn rejected(problems: Vec<Value>) -> Response {
    let message = problems
        .iter()
        .map(|p| {
            let id = p.get("id").and_then(Value::as_str).unwrap_or("?");
            let reason = p.get("reason").and_then(Value::as_str).unwrap_or("");
            format!("{id}: {reason}")
        })
        .collect::<Vec<_>>()
        .join("; ");
    let body =
        json!({"error": {"code": "invalid_rules", "message": message}, "rejected": problems});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

pub(super) async fn disable_rule(
    st: Shared,
    actor: Extension<Actor>,
    id: Path<String>,
) -> Response {
    set_enabled(st, actor, id, false).await
}

pub(super) async fn enable_rule(st: Shared, actor: Extension<Actor>, id: Path<String>) -> Response {
    set_enabled(st, actor, id, true).await
}

async fn set_enabled(
    State(st): Shared,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    enabled: bool,
) -> Response {
    let known = st.central.pack().list().iter().any(|r| r.id == id);
    if !known {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no rule {id}"));
    }
    let state = st.clone();
    let rid = id.clone();
    let res = tokio::task::spawn_blocking(move || -> Result<String, CentralError> {
        let changed = state
            .db
            .set_rule_disabled(&rid, !enabled, &actor.0, Utc::now())?;
        if changed {
            tracing::info!(actor = %actor.0, id = %rid, enabled, "rule enabled state changed");
            return Ok(state.central.reload()?.version().to_owned());
        }
        Ok(state.central.pack().version().to_owned())
    })
    .await;
    match res {
        Ok(Ok(version)) => {
            Json(json!({"id": id, "enabled": enabled, "version": version})).into_response()
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

pub(super) async fn delete_rule(
    State(st): Shared,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    let pack = st.central.pack();
    if !pack.api_ids.contains(&id) {
        return match pack.list().into_iter().find(|r| r.id == id) {
            Some(r) => error(
                StatusCode::CONFLICT,
                "file_rule",
                format!("rule {id} comes from {}: remove it from the file, or disable it (POST /api/v1/rules/{id}/disable)", r.origin),
            ),
            None => error(StatusCode::NOT_FOUND, "not_found", format!("no rule {id}")),
        };
    }
    let state = st.clone();
    let res = tokio::task::spawn_blocking(move || -> Result<(), CentralError> {
        state.db.delete_api_rule(&id)?;
        state.central.reload()?;
        tracing::info!(actor = %actor.0, id = %id, "rule deleted");
        Ok(())
    })
    .await;
    match res {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

/// `GET /v1/rulepack`: the pack for an agent, unless it already has this version.
pub(super) async fn get_rulepack(
    State(st): Shared,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let group = match super::agent::authenticate_agent_group(&st, &peer) {
        Ok((_, group)) => group,
        Err(refusal) => return refusal.into_response(),
    };
    let pack = st.central.pack_for(Some(&group));
    let etag = format!("\"{}\"", pack.version());
    if let Some(not_modified) = super::not_modified(&headers, &etag) {
        return not_modified;
    }
    let named = |list: &[(String, String)]| -> Vec<NamedText> {
        list.iter()
            .map(|(name, text)| NamedText {
                name: name.clone(),
                text: text.clone(),
            })
            .collect()
    };
    let body = Rulepack {
        version: pack.version().to_owned(),
        revision: pack.revision,
        rules: named(&pack.sources),
        mappings: named(&pack.mappings),
        placeholders: pack.placeholders.clone(),
        disabled: pack.disabled.clone(),
    };
    (StatusCode::OK, [(header::ETAG, etag)], Json(body)).into_response()
}
