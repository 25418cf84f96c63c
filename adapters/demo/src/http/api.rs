//! The mock Sitequest API: every route guarded by the scope the spec's table gives, answering
//! canned JSON. Routes, scopes and answers come from [`crate::operations`], the table the MCP
//! tools read too.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, post, MethodFilter, MethodRouter};
use axum::{Json, Router};
use sitequest_auth::Scopes;
use sitequest_auth_tower::AuthLayer;

use crate::http::respond::error;
use crate::http::state::AppState;
use crate::operations::{Input, Operation, OPERATIONS};

/// The auth layer every guarded route of this server uses, requiring `scope`: the state's
/// authorizer, clock, metrics, outside limiter, and the client's address behind the trusted
/// proxies.
pub fn guard(state: &AppState, scope: Scopes) -> AuthLayer {
    let metrics = state.ops.metrics.observer();
    let usage = state.core.usage.clone();
    let clock = state.core.clock.clone();
    let observer: sitequest_auth_tower::Observer = std::sync::Arc::new(move |outcome| {
        metrics(outcome);
        usage.record_outcome(outcome, clock.now());
    });
    let layer = AuthLayer::new(state.core.auth.clone(), scope)
        .with_clock(state.core.clock.clone())
        .with_observer(observer)
        .with_client_ip(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
        .with_trusted_proxies(state.core.trusted_proxies.clone());
    match &state.core.limiter {
        Some(l) => layer.with_limiter(l.clone()),
        None => layer,
    }
}

fn method(op: &Operation) -> MethodFilter {
    match op.method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "PATCH" => MethodFilter::PATCH,
        _ => MethodFilter::DELETE,
    }
}

fn answer(op: &'static Operation, arg: &str) -> Response {
    let status = StatusCode::from_u16(op.status).unwrap_or(StatusCode::OK);
    (status, Json(op.answer(arg))).into_response()
}

/// The route of one operation, behind its scope.
fn route(state: &AppState, op: &'static Operation) -> MethodRouter {
    let layer = guard(state, op.scope);
    match op.input {
        Input::None => on(
            method(op),
            (move || async move { answer(op, "") }).layer(layer),
        ),
        Input::ServerId | Input::Domain | Input::ServerCommand => on(
            method(op),
            (move |Path(arg): Path<String>| async move { answer(op, &arg) }).layer(layer),
        ),
    }
}

/// The API routes. Each handler is wrapped in an [`AuthLayer`] requiring its scope, whose
/// decisions are counted in the state's metrics.
pub fn routes(state: &AppState) -> Router {
    let mut router = Router::new();
    for op in &OPERATIONS {
        router = router.route(op.path, route(state, op));
    }
    // Any other action: a 404 once the key may act on servers.
    router.route(
        "/v1/servers/{id}/actions/{action}",
        post(
            (|| async { error(StatusCode::NOT_FOUND, "NOT_FOUND", "No such action") })
                .layer(guard(state, Scopes::VPS_WRITE)),
        ),
    )
}
