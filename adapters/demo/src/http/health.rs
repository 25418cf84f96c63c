//! The operator's routes, open to anyone (no API key, no admin token, nothing counted against
//! a key): served on the main listener, or only on `--metrics-listen`'s when it is given.
//!
//! - `GET /healthz`: 200 `{"status":"ok"}` while the process serves.
//! - `GET /readyz`: 200 `{"status":"ready"}` when this instance can vouch for its keys, else 503
//!   `{"status":"not_ready","reason":...}`; see [`readiness`].
//! - `GET /metrics`: every metric in the Prometheus text format (see [`crate::metrics`]).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::http::state::Ops;

/// The three routes.
pub fn routes(state: Ops) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Whether this instance is ready for traffic, or why not.
///
/// The data file is loaded before any listener is bound, so only the shared keys can make it
/// unready: with Redis, key changes must have been confirmed in sync within the staleness bound
/// (`--max-sync-age`), or revocations made on other instances may be missing here; and every key
/// change saved here must have been written to Redis, or other instances may still grant a key
/// revoked here (the change is retried every half second). Under
/// `--redis-failure open` such an instance still serves requests with its own view of the keys;
/// this is where it says so.
///
/// # Errors
///
/// The reason it is not ready, for the 503's body and the logs.
pub fn readiness(state: &Ops) -> Result<(), String> {
    let Some(sync) = &state.sync else {
        return Ok(());
    };
    // A change in flight waits for a moment; one waiting past the revocation deadline is one
    // Redis did not take.
    let unshared = sync.pending_longer_than(crate::service::CONFIRM_DEADLINE);
    if unshared > 0 && sync.is_in_sync(state.max_sync_age) {
        return Err(format!(
            "{unshared} key changes saved here not yet shared with the other instances"
        ));
    }
    if sync.is_in_sync(state.max_sync_age) {
        return Ok(());
    }
    Err(match sync.sync_age() {
        Some(age) => format!(
            "key changes not confirmed in sync for {}s (bound {}s)",
            age.as_secs(),
            state.max_sync_age.as_secs()
        ),
        None => "key changes never confirmed in sync".to_owned(),
    })
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<Ops>) -> Response {
    match readiness(&state) {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Ops>) -> Response {
    (
        [(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}
