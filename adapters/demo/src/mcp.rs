//! The Model Context Protocol endpoint, `/mcp`: the mock API's operations as tools, over MCP's
//! Streamable HTTP transport (the official Rust SDK, `rmcp`), guarded by the same keys, scopes and
//! per-key window as the REST routes.
//!
//! Every HTTP request to `/mcp` (`POST`, and `GET`/`DELETE` as the transport defines them) goes
//! through the same [`AuthLayer`](sitequest_auth_tower::AuthLayer) as a REST route, requiring no
//! particular scope: a missing, malformed, unknown, revoked or expired key is the spec's 401 before
//! any MCP processing, each request counts once in the key's window (shared with REST), and an
//! exhausted window is the spec's 429. Inside, the key's scopes decide what the agent sees:
//! `tools/list` lists only the tools its scopes allow, and calling another is a tool error
//! (`isError: true`) carrying `INSUFFICIENT_SCOPE` and the missing scope, with nothing run.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientJsonRpcMessage, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value};
use sitequest_auth::{ErrorCode, Scopes};
use sitequest_auth_tower::AuthenticatedKey;
use tower::ServiceExt;

use crate::operations::{by_tool, Operation, OPERATIONS};
use crate::AppState;

/// The path of the endpoint.
pub const PATH: &str = "/mcp";
/// Largest JSON-RPC request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// Most MCP sessions whose key is remembered; past it the oldest is forgotten (and its session
/// then answers 404, as an unknown one).
pub const MAX_SESSIONS: usize = 10_000;

/// The tools, for one session. What a call may do is read from the key of the HTTP request that
/// carried it, so a change to the key (a revocation) holds from the next request. Calls refused
/// for a missing scope are counted in the key's usage record, as the REST API's 403s are.
#[derive(Clone)]
pub struct Tools {
    usage: Arc<crate::dashboard::usage::Usage>,
    clock: sitequest_auth_tower::Clock,
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tools").finish_non_exhaustive()
    }
}

/// The key that sent the HTTP request carrying this MCP request: (id, scopes).
fn key(context: &RequestContext<RoleServer>) -> Result<(sitequest_auth::KeyId, Scopes), ErrorData> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<AuthenticatedKey>())
        .map(|key| (key.id, key.scopes))
        .ok_or_else(|| ErrorData::internal_error("no authenticated key on this request", None))
}

fn tool(op: &Operation) -> Tool {
    Tool::new(op.tool, op.description, Arc::new(op.input_schema()))
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "sitequest-demo",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "The Sitequest API's VPS and domain operations. You see the tools your API key's \
                 scopes allow.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let (_, scopes) = key(&context)?;
        let tools = OPERATIONS
            .iter()
            .filter(|op| scopes.contains(op.scope))
            .map(tool)
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (key_id, scopes) = key(&context)?;
        let Some(op) = by_tool(&request.name) else {
            let shown: String = request.name.chars().take(64).collect();
            return Err(ErrorData::invalid_params(
                format!("unknown tool {shown:?}"),
                None,
            ));
        };
        if !scopes.contains(op.scope) {
            self.usage.record(
                key_id,
                crate::dashboard::usage::Kind::Forbidden,
                self.clock.now(),
            );
            let code = ErrorCode::InsufficientScope;
            return Ok(CallToolResult::structured_error(json!({
                "error": code.message(),
                "code": code.as_str(),
                "status": code.status(),
                "missing_scopes": op.scope.difference(scopes),
            }))
            .into());
        }
        let arg = op
            .argument(request.arguments.as_ref())
            .map_err(|message| ErrorData::invalid_params(message, None))?;
        Ok(CallToolResult::structured(op.answer(arg)).into())
    }
}

/// The `/mcp` route, behind the auth layer of [`crate::api::guard`] with no required scope.
/// `hosts` are the `Host` values accepted (DNS-rebinding protection), and requests that carry an
/// `Origin` must come from one of them.
pub fn routes(state: &AppState, hosts: Vec<String>) -> Router {
    let origins: Vec<String> = hosts.iter().flat_map(|h| origins_of(h)).collect();
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .with_max_request_body_bytes(MAX_BODY);
    let tools = Tools {
        usage: state.usage.clone(),
        clock: state.clock.clone(),
    };
    let service: StreamableHttpService<Tools, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let service =
        ServiceExt::<axum::http::Request<Body>>::map_response(service, |res| res.map(Body::new));
    let owners = Arc::new(SessionOwners::default());
    // Outermost first: the key, then the session's owner and the JSON-RPC shape, then MCP.
    Router::new()
        .route_service(PATH, service)
        .layer(axum::middleware::from_fn(move |req, next| {
            guard_messages(owners.clone(), req, next)
        }))
        .layer(crate::api::guard(state, Scopes::empty()))
}

/// The browser origins of a `Host` value (a name or address, with or without a port), any port
/// unless it names one.
fn origins_of(host: &str) -> Vec<String> {
    let (host, port) = if host.parse::<std::net::Ipv6Addr>().is_ok() {
        (format!("[{host}]"), ":*")
    } else if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        (host.to_owned(), "")
    } else {
        (host.to_owned(), ":*")
    };
    vec![
        format!("http://{host}{port}"),
        format!("https://{host}{port}"),
    ]
}

/// Which key opened each MCP session: a session answers only the key that opened it. Looked up
/// on every request that names a session, so by hash; the queue remembers the order of opening,
/// to forget the oldest past [`MAX_SESSIONS`].
#[derive(Default)]
struct SessionOwners(parking_lot::Mutex<Owners>);

#[derive(Default)]
struct Owners {
    by_session: std::collections::HashMap<String, sitequest_auth::KeyId>,
    /// Sessions in the order they were opened; ended ones are skipped when they come up.
    opened: std::collections::VecDeque<String>,
}

impl SessionOwners {
    fn owner(&self, session: &str) -> Option<sitequest_auth::KeyId> {
        self.0.lock().by_session.get(session).copied()
    }

    fn insert(&self, session: String, key: sitequest_auth::KeyId) {
        let mut owners = self.0.lock();
        while owners.by_session.len() >= MAX_SESSIONS {
            let Some(oldest) = owners.opened.pop_front() else {
                break;
            };
            owners.by_session.remove(&oldest);
        }
        // Ended sessions leave their place in the queue; drop those before it grows past twice
        // the bound.
        if owners.opened.len() >= 2 * MAX_SESSIONS {
            let Owners { by_session, opened } = &mut *owners;
            opened.retain(|s| by_session.contains_key(s));
        }
        owners.opened.push_back(session.clone());
        owners.by_session.insert(session, key);
    }

    fn remove(&self, session: &str) {
        self.0.lock().by_session.remove(session);
    }
}

const SESSION_HEADER: &str = "mcp-session-id";

/// Around the transport: a session is used only by the key that opened it (another key, or a
/// session this server does not know, gets the transport's 404); a `POST` body must be one
/// JSON-RPC message of MCP's; the transport's plain-text errors become JSON-RPC error objects;
/// and ending a session answers `204`.
async fn guard_messages(owners: Arc<SessionOwners>, req: Request, next: Next) -> Response {
    let key = req.extensions().get::<AuthenticatedKey>().map(|k| k.id);
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(session) = &session {
        if key.is_none() || owners.owner(session) != key {
            return json_rpc_error(
                StatusCode::NOT_FOUND,
                Value::Null,
                -32600,
                "Session not found",
            );
        }
    }
    let method = req.method().clone();
    let req = if method == Method::POST {
        match one_message(req).await {
            Ok(req) => req,
            Err(refusal) => return *refusal,
        }
    } else {
        req
    };
    let mut res = next.run(req).await;
    if let (Some(opened), Some(key)) = (res.headers().get(SESSION_HEADER), key) {
        if session.is_none() {
            if let Ok(opened) = opened.to_str() {
                owners.insert(opened.to_owned(), key);
            }
        }
    }
    if method == Method::DELETE && res.status().is_success() {
        if let Some(session) = &session {
            owners.remove(session);
        }
        *res.status_mut() = StatusCode::NO_CONTENT;
        *res.body_mut() = Body::empty();
        return res;
    }
    let plain = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t.starts_with("text/plain"));
    if (res.status().is_client_error() || res.status().is_server_error()) && plain {
        let status = res.status();
        let text = axum::body::to_bytes(std::mem::take(res.body_mut()), 1024)
            .await
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .chars()
                    .take(200)
                    .collect::<String>()
            })
            .unwrap_or_default();
        let message = if text.is_empty() {
            status.canonical_reason().unwrap_or("Error").to_owned()
        } else {
            text
        };
        return json_rpc_error(status, Value::Null, -32600, &message);
    }
    res
}

/// A JSON-RPC error object for a message that could not be taken.
fn json_rpc_error(status: StatusCode, id: Value, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// The request again, when its body is one JSON-RPC message of MCP's; else the JSON-RPC error
/// to answer (`-32700` for text that is not JSON, `-32600` for JSON that is not such a message,
/// HTTP 400; a body over [`MAX_BODY`] is a 413), before the transport sees it.
async fn one_message(req: Request) -> Result<Request, Box<Response>> {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return Err(Box::new(json_rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            Value::Null,
            -32600,
            &format!("Invalid Request: the body is larger than {MAX_BODY} bytes"),
        )));
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => {
            return Err(Box::new(json_rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                -32700,
                "Parse error",
            )))
        }
    };
    if serde_json::from_value::<ClientJsonRpcMessage>(value.clone()).is_err() {
        let id = match value.get("id") {
            Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
            _ => Value::Null,
        };
        return Err(Box::new(json_rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            -32600,
            "Invalid Request: not a JSON-RPC message of MCP",
        )));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_follow_the_hosts() {
        assert_eq!(
            origins_of("127.0.0.1"),
            ["http://127.0.0.1:*", "https://127.0.0.1:*"]
        );
        assert_eq!(origins_of("::1"), ["http://[::1]:*", "https://[::1]:*"]);
        assert_eq!(
            origins_of("keys.example.com:8443"),
            [
                "http://keys.example.com:8443",
                "https://keys.example.com:8443"
            ]
        );
        assert_eq!(
            origins_of("[::1]:8080"),
            ["http://[::1]:8080", "https://[::1]:8080"]
        );
    }

    #[test]
    fn session_owners_are_found_and_bounded() {
        let owners = SessionOwners::default();
        let k = |n| sitequest_auth::KeyId::from_u64(n);
        for i in 0..(MAX_SESSIONS as u64 + 5) {
            owners.insert(format!("s{i}"), k(i));
        }
        assert_eq!(owners.owner("s0"), None);
        assert_eq!(
            owners.owner(&format!("s{}", MAX_SESSIONS + 4)),
            Some(k(MAX_SESSIONS as u64 + 4))
        );
        owners.remove("s10");
        assert_eq!(owners.owner("s10"), None);
        for i in 0..(3 * MAX_SESSIONS as u64) {
            owners.insert(format!("t{i}"), k(i));
            owners.remove(&format!("t{i}"));
        }
        let inner = owners.0.lock();
        assert!(inner.opened.len() <= 2 * MAX_SESSIONS);
        assert!(inner.by_session.len() <= MAX_SESSIONS);
    }
}
