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

/// The tools, for one session. Stateless: what a call may do is read from the key of the HTTP
/// request that carried it, so a change to the key (a revocation) holds from the next request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tools;

/// The scopes of the key that sent the HTTP request carrying this MCP request.
fn scopes(context: &RequestContext<RoleServer>) -> Result<Scopes, ErrorData> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<AuthenticatedKey>())
        .map(|key| key.scopes)
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
        let scopes = scopes(&context)?;
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
        let scopes = scopes(&context)?;
        let Some(op) = by_tool(&request.name) else {
            let shown: String = request.name.chars().take(64).collect();
            return Err(ErrorData::invalid_params(
                format!("unknown tool {shown:?}"),
                None,
            ));
        };
        if !scopes.contains(op.scope) {
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
/// `hosts` are the `Host` values accepted (DNS-rebinding protection): the loopback names, and
/// the host of the server's public URL when it has one.
pub fn routes(state: &AppState, hosts: Vec<String>) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_max_request_body_bytes(MAX_BODY);
    let service: StreamableHttpService<Tools, LocalSessionManager> = StreamableHttpService::new(
        || Ok(Tools),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let service =
        ServiceExt::<axum::http::Request<Body>>::map_response(service, |res| res.map(Body::new));
    // Outermost first: the key, then the JSON-RPC shape, then MCP.
    Router::new()
        .route_service(PATH, service)
        .layer(axum::middleware::from_fn(json_rpc_only))
        .layer(crate::api::guard(state, Scopes::empty()))
}

/// A JSON-RPC error object for a message that could not be taken.
fn json_rpc_error(status: StatusCode, id: Value, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// Answers a `POST` whose body is not one JSON-RPC message of MCP's with a JSON-RPC error
/// (`-32700` for text that is not JSON, `-32600` for JSON that is not such a message, HTTP 400),
/// and one over [`MAX_BODY`] with a 413, before the transport sees it (it would answer those
/// with plain text).
async fn json_rpc_only(req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return json_rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            Value::Null,
            -32600,
            &format!("Invalid Request: the body is larger than {MAX_BODY} bytes"),
        );
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => {
            return json_rpc_error(StatusCode::BAD_REQUEST, Value::Null, -32700, "Parse error")
        }
    };
    if serde_json::from_value::<ClientJsonRpcMessage>(value.clone()).is_err() {
        let id = match value.get("id") {
            Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
            _ => Value::Null,
        };
        return json_rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            -32600,
            "Invalid Request: not a JSON-RPC message of MCP",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
