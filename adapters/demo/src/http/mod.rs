//! The HTTP surfaces, the top floor: each reads requests, asks the key service
//! ([`crate::service`]) or the key store, and answers. They share [`respond`] (every JSON
//! error), [`client`] (who is asking, and the count of refusals per address) and the auth layer
//! of [`api::guard`].
//!
//! - [`api`]: the mock Sitequest API, each route behind its scope ([`operations`] is the table
//!   it shares with [`mcp`]).
//! - [`admin`]: the admin API (`/admin/v1/...`).
//! - [`dashboard`]: Settings › API / MCP.
//! - [`mcp`]: the MCP endpoint.
//! - [`oauth`]: OAuth for MCP clients (metadata, registration, tokens; the consent page is the
//!   dashboard's).
//! - [`leaks`]: revocation by whoever finds a key, and GitHub's secret scanning.
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`.

pub mod admin;
pub mod api;
pub mod client;
pub mod dashboard;
pub mod health;
pub mod leaks;
pub mod mcp;
pub mod mcp_sessions;
pub mod oauth;
pub mod operations;
pub mod respond;
pub mod session;
pub mod state;
pub mod usage;

use std::net::SocketAddr;

use axum::Router;

use crate::{metrics, AppState, MAX_BODY, REQUEST_TIMEOUT};

/// The whole application on one listener: admin API, mock API, metrics and health, limits and
/// timeouts.
pub fn router(state: AppState) -> Router {
    limited(timed(&state, admin_and_api(&state)).merge(health::routes(state.ops)))
}

/// The application without metrics and health (served by [`health_router`] on a listener of
/// their own): their paths are a JSON 404 here.
pub fn api_router(state: AppState) -> Router {
    limited(timed(&state, admin_and_api(&state)))
}

/// Metrics and health alone, for a listener of their own; any other path is a JSON 404.
pub fn health_router(state: AppState) -> Router {
    limited(health::routes(state.ops).fallback(respond::not_found))
}

/// What `/mcp` accepts as `Host`: the loopback names, the listen address when it is a specific
/// one, and the names the operator gave.
pub(crate) fn mcp_hosts(
    listen: SocketAddr,
    extra: Vec<String>,
    public_url: Option<&str>,
) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    if !listen.ip().is_unspecified() {
        hosts.push(listen.ip().to_string());
    }
    hosts.extend(extra);
    if let Some(host) = public_url
        .and_then(|u| u.split_once("://"))
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
    {
        hosts.push(host.to_owned());
    }
    hosts
}

fn admin_and_api(state: &AppState) -> Router {
    admin::routes(state.clone())
        .merge(dashboard::routes(state.clone()))
        .merge(leaks::routes(state.clone()))
        .merge(mcp::routes(state, state.mcp.hosts.clone()))
        .merge(oauth::routes(state.clone()))
        .merge(api::routes(state))
        .fallback(respond::not_found)
        .method_not_allowed_fallback(respond::method_not_allowed)
        .layer(axum::middleware::from_fn(respond::security_headers))
}

/// Times every request of `router`, its JSON 404s included.
fn timed(state: &AppState, router: Router) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        state.ops.metrics.clone(),
        metrics::time_requests,
    ))
}

fn limited(router: Router) -> Router {
    router
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}
