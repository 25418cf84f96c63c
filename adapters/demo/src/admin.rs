//! The key-management admin API, authenticated by the admin token.
//!
//! - `POST /admin/v1/keys` creates a key; the plaintext is in this response only.
//! - `GET /admin/v1/keys` lists keys (no secrets).
//! - `DELETE /admin/v1/keys/{id}` revokes a key.
//! - `POST /admin/v1/keys/{id}/rotate` issues a replacement; the old key expires after a grace.
//!
//! Every change is durable in the data file before the response is sent.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header::AUTHORIZATION, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sitequest_auth::{
    ErrorCode, IssuedKey, KeyId, KeyRecord, KeyStatus, NewKey, Preset, Scopes, MAX_TIME,
};

use crate::{AppState, MAX_BODY};

/// The admin routes, behind the admin-token check.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/admin/v1/keys", post(create).get(list))
        .route("/admin/v1/keys/{id}", delete(revoke))
        .route("/admin/v1/keys/{id}/rotate", post(rotate))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
        .with_state(state)
}

/// A JSON error `{"error": message, "code": code, "status": status}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": message, "code": code, "status": status.as_u16()})),
    )
        .into_response()
}

fn invalid(message: impl std::fmt::Display) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        &message.to_string(),
    )
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", "No key with this id")
}

fn internal(e: &anyhow::Error) -> Response {
    tracing::error!(error = %e, "data file write failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "Could not save the change",
    )
}

async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    if state.admin.check(header) {
        next.run(req).await
    } else {
        // Debug, not info: anyone can send these, as fast as they like.
        tracing::debug!(path = %req.uri().path(), "admin request refused");
        error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized.as_str(),
            "Invalid or missing admin token",
        )
    }
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes; the error is the 400 message.
async fn json_body<T: for<'de> Deserialize<'de>>(body: Body) -> Result<T, String> {
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| format!("request body is larger than {MAX_BODY} bytes"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("invalid JSON body: {e}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    expires_at: Option<u64>,
}

impl CreateRequest {
    /// The key settings; the error is the 400 message.
    fn new_key(&self) -> Result<NewKey, String> {
        let scopes = match (&self.scopes, &self.preset) {
            (Some(list), None) => {
                if list.is_empty() {
                    return Err("scopes must not be empty".into());
                }
                let mut set = Scopes::empty();
                for name in list {
                    set |= Scopes::parse_name(name).map_err(|e| e.to_string())?;
                }
                set
            }
            (None, Some(p)) => Preset::from_name(p).map_err(|e| e.to_string())?.scopes(),
            (Some(_), Some(_)) => return Err("give either scopes or preset, not both".into()),
            (None, None) => return Err("scopes or preset is required".into()),
        };
        let mut new = NewKey::new(self.name.clone(), scopes);
        if let Some(t) = self.expires_at {
            new = new.expires_at(t);
        }
        Ok(new)
    }
}

fn created(issued: &IssuedKey) -> Response {
    let r = &issued.record;
    (
        StatusCode::CREATED,
        Json(json!({
            "id": r.id(),
            "key": &*issued.key.expose_secret(),
            "name": r.name,
            "scopes": r.scopes,
            "created_at": r.created_at,
            "expires_at": r.expires_at,
        })),
    )
        .into_response()
}

async fn create(State(state): State<AppState>, body: Body) -> Response {
    let new = match json_body::<CreateRequest>(body)
        .await
        .and_then(|r| r.new_key())
    {
        Ok(n) => n,
        Err(message) => return invalid(message),
    };
    let now = state.now();
    let mut db = state.db.lock().await;
    let issued = match state.store().prepare(&new, now) {
        Ok(i) => i,
        Err(e) => return invalid(e),
    };
    if let Err(e) = db.upsert(&[&issued.record]) {
        return internal(&e);
    }
    if let Err(e) = state.store().insert(issued.record.clone()) {
        return invalid(e);
    }
    drop(db);
    share(&state, &[&issued.record]).await;
    tracing::info!(key_id = %issued.record.id(), name = %issued.record.name, "key created");
    created(&issued)
}

fn listed(r: &KeyRecord) -> Value {
    json!({
        "id": r.id(),
        "name": r.name,
        "scopes": r.scopes,
        "created_at": r.created_at,
        "expires_at": r.expires_at,
        "revoked": r.revoked_at.is_some(),
        "last4": r.last4,
        "last_used_at": r.last_used_at,
    })
}

async fn list(State(state): State<AppState>) -> Response {
    let keys: Vec<Value> = state.store().list().iter().map(listed).collect();
    Json(json!({ "keys": keys })).into_response()
}

async fn revoke(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<KeyId>() else {
        return not_found();
    };
    let now = state.now();
    let db = state.db.lock().await;
    match db.revoke(id, now) {
        Ok(true) => {}
        Ok(false) => return not_found(),
        Err(e) => return internal(&e),
    }
    let result = state.store().revoke(id, now);
    drop(db);
    match result {
        Ok(record) => {
            share(&state, &[&record]).await;
            tracing::info!(key_id = %id, "key revoked");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(_) => not_found(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    #[serde(default)]
    grace_seconds: u64,
}

async fn rotate(State(state): State<AppState>, Path(id): Path<String>, body: Body) -> Response {
    let Ok(id) = id.parse::<KeyId>() else {
        return not_found();
    };
    let req: RotateRequest = match json_body(body).await {
        Ok(r) => r,
        Err(message) => return invalid(message),
    };
    let now = state.now();
    let mut db = state.db.lock().await;
    let Some(old) = state.store().get(id) else {
        return not_found();
    };
    if old.status(now) != KeyStatus::Active {
        return error(
            StatusCode::CONFLICT,
            "KEY_NOT_ACTIVE",
            "The key is revoked or expired",
        );
    }
    let new = match state.store().prepare(&old.replacement(), now) {
        Ok(i) => i,
        Err(e) => return invalid(e),
    };
    let mut old = old;
    let grace_end = now.saturating_add(req.grace_seconds).min(MAX_TIME);
    old.expires_at = Some(old.expires_at.map_or(grace_end, |t| t.min(grace_end)));
    // Saved first, then applied: nothing is live before it is durable.
    if let Err(e) = db.upsert(&[&new.record, &old]) {
        return internal(&e);
    }
    let applied = state
        .store()
        .insert(new.record.clone())
        .and_then(|()| state.store().insert(old.clone()));
    if let Err(e) = applied {
        return invalid(e);
    }
    drop(db);
    share(&state, &[&new.record, &old]).await;
    tracing::info!(old = %id, new = %new.record.id(), grace = req.grace_seconds, "key rotated");
    created(&new)
}

/// Shares changed records with the other instances (with `--redis`). A change that cannot be
/// shared now is kept by [`KeySync`](sitequest_auth_redis::KeySync) and published again until
/// it goes through.
async fn share(state: &AppState, records: &[&KeyRecord]) {
    let Some(sync) = &state.sync else {
        return;
    };
    for record in records {
        if let Err(e) = sync.publish(record).await {
            tracing::warn!(key_id = %record.id(), error = %e, "key change not shared yet");
        }
    }
}

/// Writes the keys' last-use times to the data file.
pub async fn flush_last_used(state: &AppState) -> anyhow::Result<()> {
    let used: Vec<(KeyId, u64)> = state
        .store()
        .export()
        .into_iter()
        .filter_map(|r| r.last_used_at.map(|t| (r.id(), t)))
        .collect();
    if used.is_empty() {
        return Ok(());
    }
    state.db.lock().await.touch(&used)
}

/// Flushes last-use times every 30 seconds.
pub async fn flush_last_used_periodically(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = flush_last_used(&state).await {
            tracing::warn!(error = %e, "could not save last-use times");
        }
    }
}
