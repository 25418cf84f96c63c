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
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::Stream;
use rmcp::model::ServerJsonRpcMessage;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ClientJsonRpcMessage,
    Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    Tool,
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
use sitequest_auth::{ErrorCode, LimitDecision, Quota, RateLimit, RateLimiter, Scopes, UnixTime};
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
        // The list depends on the caller's key: only its own client may cache it.
        Ok(ListToolsResult::with_all_items(tools).with_cache_scope(CacheScope::Private))
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
    let guard = Arc::new(MessageGuard {
        owners: owners.clone(),
        tool_limits: state.mcp.tool_limits.clone(),
        usage: state.core.usage.clone(),
        clock: state.core.clock.clone(),
        realm: state.core.auth.realm().clone(),
    });
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
    // Outermost first: the challenges' metadata link, the key, then the session's owner, the
    // scope named by the headers, the JSON-RPC shape and the tool's quota, then MCP.
    Router::new()
        .route_service(PATH, service)
        .layer(axum::middleware::from_fn(move |req, next| {
            guard_messages(guard.clone(), req, next)
        }))
        .layer(crate::api::guard(state, Scopes::empty()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            link_metadata,
        ))
}

/// Quotas of single tools, per key, inside the key's own window (`--mcp-tool-limit`): a call of
/// a limited tool counts in both, and the tool's window is the one its answer shows.
pub struct ToolLimits {
    tools: Vec<(&'static str, Quota, RateLimiter)>,
}

impl std::fmt::Debug for ToolLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(|(name, quota, _)| (name, quota)))
            .finish()
    }
}

impl ToolLimits {
    /// The quotas of `limits` (tool name, quota); names of no tool are left out (the command
    /// line refuses them).
    #[must_use]
    pub fn new(limits: &[(String, Quota)]) -> Self {
        Self {
            tools: limits
                .iter()
                .filter_map(|(name, quota)| {
                    by_tool(name).map(|op| (op.tool, *quota, RateLimiter::with_stripes(64)))
                })
                .collect(),
        }
    }

    /// Counts a call of `tool` by `key`, when the tool has a quota.
    #[must_use]
    pub fn check(
        &self,
        tool: &str,
        key: sitequest_auth::KeyId,
        now: UnixTime,
    ) -> Option<LimitDecision> {
        self.tools
            .iter()
            .find(|(name, _, _)| *name == tool)
            .map(|(_, quota, limiter)| limiter.check(key, *quota, now))
    }
}

/// The window of a tool with its own quota, put on its answer by [`guard_messages`] and written
/// over the key's by [`link_metadata`], outside the auth layer.
#[derive(Debug, Clone, Copy)]
struct ToolWindow(RateLimit, UnixTime);

/// Outside the auth layer: the 401 and 403 challenges of `/mcp` name the protected resource
/// metadata (RFC 9728 §5.1), so that OAuth clients find the authorization server, and a 401 the
/// scopes to ask for first; a tool's own
/// window replaces the key's in the rate-limit headers; and answers, which depend on the key,
/// are private to caches.
async fn link_metadata(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Only the Host is kept: the base URL is worked out for the answers that name it.
    let host = req.headers().get(axum::http::header::HOST).cloned();
    let mut res = next.run(req).await;
    if let Some(ToolWindow(window, now)) = res.extensions().get::<ToolWindow>().copied() {
        window.insert_headers(now, res.headers_mut());
    }
    // The auth layer's challenges (every 401, and a 403 of a missing scope) name the metadata;
    // a 401 also names the scopes to ask for first, the narrowest preset (MCP clients ask for
    // what the challenge names), so an OAuth client starts with Read only and asks for more
    // when a tool needs it.
    let challenge = res
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let base = || crate::http::oauth::base_url_of(&state, host.as_ref());
    if let Some((challenge, base)) = challenge.and_then(|c| Some((c, base()?))) {
        let url = crate::http::oauth::resource_metadata_url(&base);
        let scope = if res.status() == StatusCode::UNAUTHORIZED {
            ", scope=\"vps:read domains:read\""
        } else {
            ""
        };
        let value = format!("{challenge}{scope}, resource_metadata=\"{url}\"");
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
    }
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store, private"));
    res
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
/// The 2026-07-28 revision's headers naming a request's method and target (SEP-2243).
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";
/// JSON-RPC error of headers that do not match the body (the 2026-07-28 revision).
const HEADER_MISMATCH: i64 = -32020;

/// What [`guard_messages`] reads.
struct MessageGuard {
    owners: Arc<SessionOwners>,
    tool_limits: Arc<ToolLimits>,
    usage: Arc<crate::http::usage::Usage>,
    clock: sitequest_auth_tower::Clock,
    realm: sitequest_auth::Realm,
}

/// The tool a `tools/call` names in its `Mcp-Name` header (plain, or `=?base64?…?=` as the
/// revision encodes values that are not plain ASCII), when the `Mcp-Method` header says
/// `tools/call`. `Err` for a value that cannot be read.
fn header_tool(headers: &axum::http::HeaderMap) -> Result<Option<String>, &'static str> {
    let method = headers.get(METHOD_HEADER).map(|v| v.as_bytes());
    if method != Some(b"tools/call".as_slice()) {
        return Ok(None);
    }
    let Some(value) = headers.get(NAME_HEADER) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| "Mcp-Name header is not ASCII")?;
    if value.len() > 1024 {
        return Err("Mcp-Name header is too long");
    }
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(encoded) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| "Mcp-Name header is not valid Base64")?;
            String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| "Mcp-Name header is not UTF-8")
        }
        None => Ok(Some(value.to_owned())),
    }
}

/// The spec's 403 for a tool the key's scopes do not allow, decided from the headers before the
/// body is read, with the challenge naming the missing scope.
fn insufficient_scope(missing: Scopes, realm: &sitequest_auth::Realm) -> Response {
    let names: Vec<&str> = missing.names().collect();
    let challenge = format!(
        "Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"{}\"",
        realm.as_str(),
        names.join(" ")
    );
    let mut res = (
        StatusCode::FORBIDDEN,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        ErrorCode::InsufficientScope.json(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    res
}

/// Around the transport: a session is used only by the key that opened it (another key, or a
/// session this server does not know, gets the transport's 404); a `POST` body must be one
/// JSON-RPC message of MCP's; the transport's plain-text errors become JSON-RPC error objects;
/// and ending a session answers `204`.
/// With the 2026-07-28 revision's headers, a `tools/call` of a tool the key's scopes do not allow
/// is the spec's 403 before the body is read, and a body naming another tool than the headers is
/// a JSON-RPC error (`-32020`, HTTP 400). A call of a tool with its own quota
/// ([`ToolLimits`]) past that quota is the spec's 429 with the tool's window.
async fn guard_messages(guard: Arc<MessageGuard>, req: Request, next: Next) -> Response {
    let owners = &guard.owners;
    let authenticated = req
        .extensions()
        .get::<AuthenticatedKey>()
        .map(|k| (k.id, k.scopes));
    let key = authenticated.map(|(id, _)| id);
    let revision_with_headers = req
        .headers()
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= "2026-07-28");
    let named = match header_tool(req.headers()) {
        Ok(named) => named,
        Err(message) => {
            return json_rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                HEADER_MISMATCH,
                message,
            )
        }
    };
    if let (Some(tool), Some((id, scopes))) = (&named, authenticated) {
        if let Some(op) = by_tool(tool) {
            if !scopes.contains(op.scope) {
                let now = guard.clock.now();
                guard
                    .usage
                    .record(id, crate::http::usage::Kind::Forbidden, now);
                return insufficient_scope(op.scope.difference(scopes), &guard.realm);
            }
        }
    }
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
    let mut tool_window = None;
    let req = if method == Method::POST {
        match one_message(req).await {
            Ok((req, opens, called, id)) => {
                if let (Some(header), Some(body)) = (&named, &called) {
                    if header != body {
                        return json_rpc_error(
                            StatusCode::BAD_REQUEST,
                            id,
                            HEADER_MISMATCH,
                            "Mcp-Name header does not match the tool the body calls",
                        );
                    }
                }
                // A call the key's scopes allow counts in the tool's quota (another is refused
                // by the tool without running, and spends nothing).
                let allowed = |tool: &str| {
                    by_tool(tool).is_some_and(|op| {
                        authenticated.is_some_and(|(_, scopes)| scopes.contains(op.scope))
                    })
                };
                // Under the 2026-07-28 revision a call without its Mcp-Method and Mcp-Name
                // headers is refused by the transport: it spends nothing either.
                let refused_by_transport = revision_with_headers && named.is_none();
                if let (Some(tool), Some(key), false) = (
                    called.as_deref().filter(|t| allowed(t)),
                    key,
                    refused_by_transport,
                ) {
                    let now = guard.clock.now();
                    match guard.tool_limits.check(tool, key, now) {
                        Some(LimitDecision::Limited(window)) => {
                            guard
                                .usage
                                .record(key, crate::http::usage::Kind::Limited, now);
                            let mut res = crate::http::respond::too_many(&window, now);
                            res.extensions_mut().insert(ToolWindow(window, now));
                            return res;
                        }
                        Some(LimitDecision::Allowed(window)) => {
                            tool_window = Some(ToolWindow(window, now));
                        }
                        None => {}
                    }
                }
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
    if let Some(window) = tool_window {
        res.extensions_mut().insert(window);
    }
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

/// The request again, whether it is an `initialize` (which opens a session), the tool it calls
/// (a `tools/call`) and its id, when its body is one JSON-RPC message of MCP's; else the JSON-RPC
/// error
/// to answer (`-32700` for text that is not JSON, `-32600` for JSON that is not such a message,
/// HTTP 400; a body over [`MAX_BODY`] is a 413), before the transport sees it.
async fn one_message(
    req: Request,
) -> Result<(Request, bool, Option<String>, Value), Box<Response>> {
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
    let id = match value.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    };
    if serde_json::from_value::<ClientJsonRpcMessage>(value.clone()).is_err() {
        return Err(Box::new(json_rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            -32600,
            "Invalid Request: not a JSON-RPC message of MCP",
        )));
    }
    let method = value.get("method").and_then(Value::as_str);
    let opens = method == Some("initialize");
    let called = (method == Some("tools/call"))
        .then(|| value.pointer("/params/name").and_then(Value::as_str))
        .flatten()
        .map(str::to_owned);
    Ok((
        Request::from_parts(parts, Body::from(bytes)),
        opens,
        called,
        id,
    ))
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
