//! The mock Sitequest API: every route guarded by the scope the spec's table gives, answering
//! canned JSON from a small in-memory model.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sitequest_auth::Scopes;
use sitequest_auth_tower::AuthLayer;

use crate::admin::error;
use crate::AppState;

const ACTIONS: [&str; 5] = ["start", "stop", "reboot", "reinstall", "mount-iso"];

/// The API routes. Each handler is wrapped in an [`AuthLayer`] requiring its scope, whose
/// decisions are counted in the state's metrics.
pub fn routes(state: &AppState) -> Router {
    let clock = state.clock.clone();
    let auth = state.auth.clone();
    let limiter = state.limiter.clone();
    let observer = state.metrics.observer();
    let proxies = state.trusted_proxies.clone();
    let guard = move |scope: Scopes| {
        let layer = AuthLayer::new(auth.clone(), scope)
            .with_clock(clock.clone())
            .with_observer(observer.clone())
            .with_client_ip(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
            .with_trusted_proxies(proxies.clone());
        match &limiter {
            Some(l) => layer.with_limiter(l.clone()),
            None => layer,
        }
    };
    let read = guard(Scopes::VPS_READ);
    let write = guard(Scopes::VPS_WRITE);
    let manage = guard(Scopes::VPS_MANAGE);
    let dread = guard(Scopes::DOMAINS_READ);
    let dwrite = guard(Scopes::DOMAINS_WRITE);
    let dmanage = guard(Scopes::DOMAINS_MANAGE);
    Router::new()
        .route(
            "/v1/servers",
            get(list_servers.layer(read.clone())).post(create_server.layer(manage.clone())),
        )
        .route(
            "/v1/servers/{id}",
            get(get_server.layer(read.clone())).delete(delete_server.layer(manage.clone())),
        )
        .route("/v1/servers/{id}/metrics", get(metrics.layer(read)))
        .route(
            "/v1/servers/{id}/actions/{action}",
            post(server_action.layer(write.clone())),
        )
        .route("/v1/servers/{id}/ssh", post(ssh.layer(write)))
        .route("/v1/servers/{id}/upgrade", post(upgrade.layer(manage)))
        .route(
            "/v1/domains",
            get(list_domains.layer(dread.clone())).post(register_domain.layer(dmanage.clone())),
        )
        .route(
            "/v1/domains/{domain}",
            axum::routing::delete(delete_domain.layer(dmanage.clone())),
        )
        .route(
            "/v1/domains/{domain}/dns",
            get(get_dns.layer(dread)).put(put_dns.layer(dwrite.clone())),
        )
        .route(
            "/v1/domains/{domain}/settings",
            axum::routing::patch(patch_settings.layer(dwrite)),
        )
        .route(
            "/v1/domains/{domain}/transfer",
            post(transfer.layer(dmanage)),
        )
}

/// The JSON 404 for paths that match no route.
pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", "No such route")
}

fn server(id: &str) -> Value {
    let (name, status) = match id {
        "srv-1001" => ("web-1", "running"),
        "srv-1002" => ("db-1", "stopped"),
        _ => ("server", "running"),
    };
    json!({"id": id, "name": name, "status": status, "plan": "vps-2", "region": "eu-central"})
}

fn domain(name: &str) -> Value {
    json!({"domain": name, "status": "active", "auto_renew": true})
}

async fn list_servers() -> Json<Value> {
    Json(json!({"servers": [server("srv-1001"), server("srv-1002")]}))
}

async fn get_server(Path(id): Path<String>) -> Json<Value> {
    Json(server(&id))
}

async fn metrics(Path(id): Path<String>) -> Json<Value> {
    Json(json!({"id": id, "cpu_percent": 12.5, "memory_percent": 41.0, "disk_percent": 63.2}))
}

async fn server_action(Path((id, action)): Path<(String, String)>) -> Response {
    if !ACTIONS.contains(&action.as_str()) {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "No such action");
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "action": action, "status": "accepted"})),
    )
        .into_response()
}

async fn ssh(Path(id): Path<String>) -> Json<Value> {
    Json(json!({"id": id, "exit_code": 0, "stdout": "ok\n", "stderr": ""}))
}

async fn create_server() -> Response {
    (StatusCode::CREATED, Json(server("srv-1003"))).into_response()
}

async fn upgrade(Path(id): Path<String>) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "upgrading"})),
    )
        .into_response()
}

async fn delete_server(Path(id): Path<String>) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "deleting"})),
    )
        .into_response()
}

async fn list_domains() -> Json<Value> {
    Json(json!({"domains": [domain("example.com"), domain("example.org")]}))
}

async fn get_dns(Path(name): Path<String>) -> Json<Value> {
    Json(json!({"domain": name, "records": [
        {"type": "A", "name": "@", "value": "203.0.113.10", "ttl": 3600},
        {"type": "MX", "name": "@", "value": "mail.example.com", "ttl": 3600, "priority": 10}
    ]}))
}

async fn put_dns(Path(name): Path<String>) -> Json<Value> {
    Json(json!({"domain": name, "status": "updated"}))
}

async fn patch_settings(Path(name): Path<String>) -> Json<Value> {
    Json(json!({"domain": name, "status": "updated"}))
}

async fn register_domain() -> Response {
    (StatusCode::CREATED, Json(domain("example.net"))).into_response()
}

async fn transfer(Path(name): Path<String>) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"domain": name, "status": "transfer_pending"})),
    )
        .into_response()
}

async fn delete_domain(Path(name): Path<String>) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"domain": name, "status": "deleting"})),
    )
        .into_response()
}
