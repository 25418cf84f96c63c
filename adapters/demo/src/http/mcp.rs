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
use futures_util::Stream;
use rmcp::model::ServerJsonRpcMessage;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientJsonRpcMessage, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::common::server_side_http::{ServerSseMessage, SessionId};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value};
use sitequest_auth::{ErrorCode, Scopes};
use sitequest_auth_tower::AuthenticatedKey;
use tower::ServiceExt;

pub use crate::http::mcp_sessions::{SessionLimits, SessionOwners, SessionRefusal};
use crate::http::state::AppState;
use crate::operations::{by_tool, Operation, OPERATIONS};

/// The path of the endpoint.
pub const PATH: &str = "/mcp";
/// Largest JSON-RPC request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The tools, for one session. What a call may do is read from the key of the HTTP request that
/// carried it, so a change to the key (a revocation) holds from the next request. Calls refused
/// for a missing scope are counted in the key's usage record, as the REST API's 403s are.
#[derive(Clone)]
pub struct Tools {
    usage: Arc<crate::http::usage::Usage>,
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
                crate::http::usage::Kind::Forbidden,
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
        usage: state.core.usage.clone(),
        clock: state.core.clock.clone(),
    };
    let owners = state.mcp.sessions.clone();
    let mut local = LocalSessionManager::default();
    local.session_config.keep_alive = Some(owners.limits.idle);
    let sessions = OwnedSessions {
        local,
        owners: owners.clone(),
    };
    let service: StreamableHttpService<Tools, OwnedSessions> =
        StreamableHttpService::new(move || Ok(tools.clone()), Arc::new(sessions), config);
    let service =
        ServiceExt::<axum::http::Request<Body>>::map_response(service, |res| res.map(Body::new));
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

tokio::task_local! {
    /// The key of the request being served, for the session manager that opens its session.
    static OPENING_KEY: sitequest_auth::KeyId;
}

/// An error of the MCP endpoint's session manager.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    /// Refused by a limit.
    #[error(transparent)]
    Refused(#[from] SessionRefusal),
    /// From rmcp's session manager.
    #[error(transparent)]
    Local(#[from] LocalSessionManagerError),
}

/// rmcp's in-memory session manager, with each session bound to the key that opened it and
/// counted in [`SessionLimits`]; an ended session (closed, idle or failed) leaves the table.
struct OwnedSessions {
    local: LocalSessionManager,
    owners: Arc<SessionOwners>,
}

impl SessionManager for OwnedSessions {
    type Error = SessionsError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let key = OPENING_KEY
            .try_with(|k| *k)
            .map_err(|_| SessionRefusal::NoKey)?;
        self.owners.reserve(key)?;
        match self.local.create_session().await {
            Ok((id, transport)) => {
                self.owners.bind(id.to_string(), key);
                Ok((id, transport))
            }
            Err(e) => {
                self.owners.release(key);
                Err(e.into())
            }
        }
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        Ok(self.local.initialize_session(id, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        Ok(self.local.has_session(id).await?)
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.owners.remove(id);
        Ok(self.local.close_session(id).await?)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.local.create_stream(id, message).await?)
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        Ok(self.local.accept_message(id, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.local.create_standalone_stream(id).await?)
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.local.resume(id, last_event_id).await?)
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
            Ok((req, opens)) => {
                // A new session past a limit is refused here, with its reason; the session
                // manager holds the limit exactly.
                if opens && session.is_none() {
                    if let Err(refused) =
                        key.map_or(Err(SessionRefusal::NoKey), |k| owners.room_for(k))
                    {
                        return json_rpc_error(
                            refused.status(),
                            Value::Null,
                            -32000,
                            &refused.to_string(),
                        );
                    }
                }
                req
            }
            Err(refusal) => return *refusal,
        }
    } else {
        req
    };
    let mut res = match key {
        Some(key) => OPENING_KEY.scope(key, next.run(req)).await,
        None => next.run(req).await,
    };
    if method == Method::DELETE && res.status().is_success() {
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

/// The request again, and whether it is an `initialize` (which opens a session), when its body
/// is one JSON-RPC message of MCP's; else the JSON-RPC error
/// to answer (`-32700` for text that is not JSON, `-32600` for JSON that is not such a message,
/// HTTP 400; a body over [`MAX_BODY`] is a 413), before the transport sees it.
async fn one_message(req: Request) -> Result<(Request, bool), Box<Response>> {
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
    let opens = value.get("method").and_then(Value::as_str) == Some("initialize");
    Ok((Request::from_parts(parts, Body::from(bytes)), opens))
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
}
