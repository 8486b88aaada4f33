//! Push intakes: SaaS tools (or a script) send their events to a URL that holds a secret key.
//!
//! - `POST /api/v1/intakes` `{"name":…, "format":…}` (admin token) creates an intake bound
//!   to a parser: `201 {"id", "key", "name", "format", "url"}`. The key is shown only here
//!   (stored hashed); whoever holds it can send events as this intake.
//! - `GET /api/v1/intakes` lists them (never their keys), with the events each stored;
//!   `DELETE /api/v1/intakes/{id}` revokes one.
//! - `POST /api/v1/intake/{key}` (no token: the key is the credential) takes a JSON object, a
//!   JSON array of objects or NDJSON, gzip (`Content-Encoding: gzip` or the gzip magic bytes)
//!   or not: `200 {"accepted": N}` once durably stored. Unknown key: `401`; a body that
//!   cannot be read: `400` saying why (nothing stored); over `ingest.max_body_bytes`, over
//!   `ingest.max_decompressed_bytes` once inflated, or over 100,000 records: `413`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::alerts::Actor;
use super::{error, Shared};
use crate::db::IntakeError;
use crate::intake::{normalize, split_records, Format, MAX_RECORDS};
use crate::metrics::add;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewIntake {
    name: String,
    format: String,
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

pub(super) async fn create_intake(
    State(st): Shared,
    Extension(actor): Extension<Actor>,
    body: Bytes,
) -> Response {
    let new: NewIntake = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("expected {{\"name\": …, \"format\": …}}: {e}"),
            )
        }
    };
    let name = new.name.trim().to_owned();
    let valid = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_name",
            "name must be 1 to 100 letters, digits, '-', '_' or '.'",
        );
    }
    if let Err(reason) = Format::resolve(&new.format) {
        return error(StatusCode::BAD_REQUEST, "bad_format", reason);
    }
    let db = st.db.clone();
    let res = tokio::task::spawn_blocking(move || {
        db.create_intake(&name, &new.format, &actor.0, Utc::now())
    })
    .await;
    match res {
        Ok(Ok((row, key))) => {
            tracing::info!(intake = %row.id, name = %row.name, format = %row.format, "intake created");
            let body = json!({
                "id": row.id, "key": key, "name": row.name, "format": row.format,
                "url": format!("/api/v1/intake/{key}"),
            });
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Ok(Err(IntakeError::NameTaken(n))) => error(
            StatusCode::CONFLICT,
            "name_taken",
            format!("an intake named {n:?} already exists"),
        ),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

pub(super) async fn list_intakes(State(st): Shared) -> Response {
    let db = st.db.clone();
    match tokio::task::spawn_blocking(move || db.intakes()).await {
        Ok(Ok(items)) => Json(json!({"items": items})).into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

pub(super) async fn delete_intake(State(st): Shared, Path(id): Path<String>) -> Response {
    let db = st.db.clone();
    let iid = id.clone();
    match tokio::task::spawn_blocking(move || db.delete_intake(&iid)).await {
        Ok(Ok(true)) => {
            tracing::info!(intake = %id, "intake deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Ok(false)) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no intake {id}"),
        ),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

/// `POST /api/v1/intake/{key}`.
pub(super) async fn post_intake(
    State(st): Shared,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    add(&st.metrics.intake_requests, 1);
    let refuse = |status: StatusCode, code: &str, message: String| {
        add(&st.metrics.intake_refused, 1);
        error(status, code, message)
    };
    let db = st.db.clone();
    let intake = match tokio::task::spawn_blocking(move || db.intake_by_key(&key)).await {
        Ok(Ok(Some(i))) => i,
        Ok(Ok(None)) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "unknown_key",
                "no intake has this key (it may have been deleted)".into(),
            )
        }
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    };
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "bad_body"
            };
            return refuse(
                status,
                code,
                format!("cannot read the body: {}", rejection.body_text()),
            );
        }
    };
    let gzip_header = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let gzip = gzip_header || body.starts_with(&[0x1f, 0x8b]);
    let format = match Format::resolve(&intake.format) {
        Ok(f) => f,
        Err(reason) => return internal(reason),
    };
    let max_inflated = st.cfg.ingest.max_decompressed_bytes;
    let source = format!("intake:{}", intake.name);
    let parsed = tokio::task::spawn_blocking(move || {
        let raw = if gzip {
            vigie_wire::gunzip_capped(&body, max_inflated).map_err(|e| match e {
                vigie_wire::DecompressError::Corrupt(m) => (
                    StatusCode::BAD_REQUEST,
                    "bad_gzip",
                    format!("the gzip body is corrupt: {m}"),
                ),
                other => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    other.to_string(),
                ),
            })?
        } else {
            body.to_vec()
        };
        let records = split_records(&raw, MAX_RECORDS).map_err(|e| match e {
            crate::intake::BodyError::TooMany { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_records",
                e.to_string(),
            ),
            other => (StatusCode::BAD_REQUEST, "bad_body", other.to_string()),
        })?;
        Ok::<_, (StatusCode, &'static str, String)>(normalize(records, format, &source, Utc::now()))
    })
    .await;
    let events = match parsed {
        Ok(Ok(events)) => events,
        Ok(Err((status, code, message))) => return refuse(status, code, message),
        Err(e) => return internal(e),
    };
    let n = events.len() as u64;
    match crate::intake::store(&st, &format!("intake:{}", intake.id), events).await {
        Ok(stored) => {
            add(&st.metrics.intake_events, stored);
            let db = st.db.clone();
            let id = intake.id.clone();
            let _ =
                tokio::task::spawn_blocking(move || db.intake_seen(&id, stored, Utc::now())).await;
            Json(json!({"accepted": n})).into_response()
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
    }
}
