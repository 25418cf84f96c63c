//! The key-management admin API, authenticated by the admin token.
//!
//! - `POST /admin/v1/keys` creates a key; the plaintext is in this response only.
//! - `GET /admin/v1/keys` lists keys (no secrets).
//! - `PATCH /admin/v1/keys/{id}` with `{"allowed_ips": [...]}` sets a key's address allowlist.
//! - `DELETE /admin/v1/keys/{id}` revokes a key.
//! - `POST /admin/v1/keys/{id}/rotate` issues a replacement; the old key expires after a grace,
//!   and until then both count in one rate-limit window.
//! - `GET /admin/v1/activity` lists the latest key changes, with who made each.
//!
//! Every change is made by the data file's thread (through [`KeyService`](crate::service::KeyService)), one
//! after another, and is durable in the data file before it is applied to the key store and
//! before the response is sent. The handlers only wait for that thread's answer, so a slow or
//! locked file never holds up the runtime; when too many changes are already waiting, a new one
//! is refused at once with a 503.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sitequest_auth::{
    AuthRequest, ErrorCode, IpAllowlist, IssuedKey, KeyId, KeyPolicy, KeyRecord, NewKey, Preset,
    Scopes, UnixTime,
};

use crate::http::client::{client_ip, Refusals};
use crate::http::respond::{change_refused, error, invalid, no_such_key, too_many};
use crate::service::{ActivityRead, Source};
use crate::{AppState, MAX_BODY};

/// The admin routes, behind the admin-token check.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/admin/v1/keys", post(create).get(list))
        .route(
            "/admin/v1/keys/{id}",
            axum::routing::delete(revoke).patch(update),
        )
        .route("/admin/v1/keys/{id}/rotate", post(rotate))
        .route("/admin/v1/activity", get(activity))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
        .with_state(state)
}

/// Lets through requests with the admin token. Refusals count in the client address's quota of
/// requests without a valid key (the authorizer's) and carry its window; past it they are a 429.
/// The token is compared first (a constant-time comparison costs next to nothing), so that a
/// flood of wrong tokens from an address never locks the admin out.
async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let now = state.now();
    let refusals = Refusals::of(&state.core, client_ip(&state.core, &req), now);
    // The one rule for Authorization fields: two of them are no credential.
    let fields = req
        .headers()
        .get_all(AUTHORIZATION)
        .iter()
        .map(|v| v.as_bytes());
    let header = AuthRequest::from_fields(fields, Scopes::empty(), now).authorization;
    if state.admin.check(header) {
        return next.run(req).await;
    }
    // Debug, not info: anyone can send these, as fast as they like.
    tracing::debug!(path = %req.uri().path(), "admin request refused");
    if let Some(window) = refusals.exhausted() {
        return too_many(&window, now);
    }
    refusals.count(error(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized.as_str(),
        "Invalid or missing admin token",
    ))
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
    /// Read as a value first, then as [`Scopes`] by core's serde implementation: that way a scope
    /// error is core's message alone (`unknown scope "vps:admin"`), without a JSON position.
    #[serde(default)]
    scopes: Option<serde_json::Value>,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    expires_at: Option<u64>,
    /// Read as a value first, like `scopes`, so that a malformed range is named alone.
    #[serde(default)]
    allowed_ips: Option<serde_json::Value>,
}

/// An `allowed_ips` list as core reads it; the error is the 400 message, naming the range.
fn allowed_ips(list: &serde_json::Value) -> Result<IpAllowlist, String> {
    let Some(items) = list.as_array() else {
        return Err("allowed_ips must be a list of IP addresses or CIDR ranges".into());
    };
    let mut texts = Vec::with_capacity(items.len().min(sitequest_auth::MAX_ALLOWED_RANGES + 1));
    for item in items {
        let Some(text) = item.as_str() else {
            return Err("allowed_ips must be a list of IP addresses or CIDR ranges".into());
        };
        texts.push(text);
    }
    IpAllowlist::parse_list(texts).map_err(|e| format!("allowed_ips: {e}"))
}

/// A `scopes` list as core reads it; the error is the 400 message: core's for a list of names,
/// a JSON error for anything else.
fn scopes(list: &serde_json::Value) -> Result<Scopes, String> {
    Scopes::deserialize(list).map_err(|e| {
        let names = list
            .as_array()
            .is_some_and(|a| a.iter().all(serde_json::Value::is_string));
        if names {
            e.to_string()
        } else {
            format!("invalid JSON body: {e}")
        }
    })
}

impl CreateRequest {
    /// The key settings; the error is the 400 message.
    fn new_key(&self) -> Result<NewKey, String> {
        let scopes = match (&self.scopes, &self.preset) {
            (Some(list), None) => scopes(list)?,
            (None, Some(p)) => Preset::from_name(p).map_err(|e| e.to_string())?.scopes(),
            (Some(_), Some(_)) => return Err("give either scopes or preset, not both".into()),
            (None, None) => return Err("scopes or preset is required".into()),
        };
        let mut new = NewKey::new(self.name.clone(), scopes);
        if let Some(t) = self.expires_at {
            new = new.expires_at(UnixTime::from_secs(t));
        }
        if let Some(list) = &self.allowed_ips {
            new = new.allowed_ips(allowed_ips(list)?);
        }
        Ok(new)
    }
}

/// A new key as the admin API shows it, once.
fn issued_json(issued: &IssuedKey) -> Value {
    let r = &issued.record;
    json!({
        "id": r.id(),
        "key": &*issued.key.expose_secret(),
        "name": r.name,
        "scopes": r.scopes,
        "created_at": r.created_at,
        "expires_at": r.expires_at,
        "allowed_ips": r.allowed_ips,
    })
}

fn created(issued: &IssuedKey) -> Response {
    (StatusCode::CREATED, Json(issued_json(issued))).into_response()
}

async fn create(State(state): State<AppState>, body: Body) -> Response {
    let new = match json_body::<CreateRequest>(body)
        .await
        .and_then(|r| r.new_key())
    {
        Ok(n) => n,
        Err(message) => return invalid(message),
    };
    match state
        .core
        .keys
        .create(&new, state.now(), Source::AdminApi)
        .await
    {
        Ok(issued) => created(&issued),
        Err(e) => change_refused(e),
    }
}

/// A key as the list shows it; `revoked_by` names who revoked it, when recorded.
fn listed(r: &KeyRecord, revoked_by: Option<&str>) -> Value {
    json!({
        "id": r.id(),
        "name": r.name,
        "scopes": r.scopes,
        "created_at": r.created_at,
        "expires_at": r.expires_at,
        "revoked": r.revoked_at.is_some(),
        "revoked_at": r.revoked_at,
        "revoked_by": revoked_by,
        "last4": r.last4,
        "last_used_at": r.last_used_at,
        "allowed_ips": r.allowed_ips,
        "shares_limit_with": r.shares_limit_with,
    })
}

/// `GET /admin/v1/keys[?unused_since=30d]`: every key, or those unused for that long (never
/// used counts from creation).
async fn list(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let mut unused_for = None;
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("unused_since", value)) => match KeyPolicy::parse_lifetime(value) {
                Ok(d) => unused_for = Some(d),
                Err(e) => return invalid(format!("unused_since: {e}")),
            },
            _ => return invalid("the only query parameter is unused_since"),
        }
    }
    let since = unused_for.map(|d| state.now() - d);
    let activity = match state.core.keys.activity(ActivityRead::RevokedBy).await {
        Ok(a) => a,
        Err(e) => return change_refused(e.into()),
    };
    let keys: Vec<Value> = state
        .store()
        .list()
        .iter()
        .filter(|r| since.is_none_or(|t| r.unused_since(t)))
        .map(|r| {
            let by = r
                .revoked_at
                .and(activity.revoked_by.get(&r.id()).map(String::as_str));
            listed(r, by)
        })
        .collect();
    Json(json!({ "keys": keys })).into_response()
}

/// `GET /admin/v1/activity`: the latest key changes, newest first.
async fn activity(State(state): State<AppState>) -> Response {
    match state.core.keys.activity(ActivityRead::Events).await {
        Ok(a) => Json(json!({ "events": a.events })).into_response(),
        Err(e) => change_refused(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    allowed_ips: serde_json::Value,
}

/// `PATCH /admin/v1/keys/{id}` with `{"allowed_ips": [...]}`: the key's new allowlist (an empty
/// list allows any address), in force when the answer is sent.
async fn update(State(state): State<AppState>, Path(id): Path<String>, body: Body) -> Response {
    let Ok(id) = id.parse::<KeyId>() else {
        return no_such_key();
    };
    let list = match json_body::<UpdateRequest>(body)
        .await
        .and_then(|r| allowed_ips(&r.allowed_ips))
    {
        Ok(list) => list,
        Err(message) => return invalid(message),
    };
    match state
        .core
        .keys
        .set_allowed_ips(id, list, state.now(), Source::AdminApi)
        .await
    {
        Ok(record) => Json(listed(&record, None)).into_response(),
        Err(e) => change_refused(e),
    }
}

async fn revoke(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<KeyId>() else {
        return no_such_key();
    };
    match state
        .core
        .keys
        .revoke(id, state.now(), Source::AdminApi)
        .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => change_refused(e),
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
        return no_such_key();
    };
    let req: RotateRequest = match json_body(body).await {
        Ok(r) => r,
        Err(message) => return invalid(message),
    };
    // The key is checked inside the data file's transaction, so a revocation committed first
    // (through this server or the `keys` subcommands) is a 409, never a live replacement.
    match state
        .core
        .keys
        .rotate(
            id,
            Duration::from_secs(req.grace_seconds),
            state.now(),
            Source::AdminApi,
        )
        .await
    {
        Ok(r) if r.old_key_shared => created(&r.rotated.new),
        // The old key was stopped here, but the other instances could not be told in time: not
        // a success, yet the new key exists and must not be lost, so it is in this answer.
        Ok(r) => {
            let mut body = issued_json(&r.rotated.new);
            body["error"] = json!(ROTATED_NOT_SHARED);
            body["code"] = json!("SERVICE_UNAVAILABLE");
            body["status"] = json!(503);
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        Err(e) => change_refused(e),
    }
}

/// The error of a rotation without grace whose old key's end Redis did not confirm in time.
pub const ROTATED_NOT_SHARED: &str =
    "The key was rotated and the old key is refused here, but the other \
     instances could not be told yet (it is retried until they are): they may accept the old key \
     until then. The new key is in this answer.";

/// Writes the keys' last-use times to the data file.
pub async fn flush_last_used(state: &AppState) -> anyhow::Result<()> {
    Ok(state.core.keys.flush_last_used().await?)
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
