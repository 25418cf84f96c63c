//! OAuth for MCP clients, the routes outside the dashboard: the protected resource's metadata
//! (RFC 9728), the authorization server's metadata (RFC 8414), dynamic client registration
//! (RFC 7591) and the token endpoint (authorization code with PKCE, OAuth 2.1). The person
//! approves a client on the dashboard's consent page ([`AUTHORIZE`]); the token answered is a
//! new `sq_live_` key ([`crate::oauth`]).
//!
//! Errors of the registration and token endpoints are OAuth's JSON (`{"error": ...,
//! "error_description": ...}`, RFC 6749 §5.2 and RFC 7591 §3.2.2), which OAuth clients read;
//! refusals count in the client address's quota of requests without a valid key, as the API's
//! 401s do, and past it are the spec's 429.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::HOST;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sitequest_auth::Scopes;
use zeroize::Zeroizing;

use crate::http::client::{client_ip, Refusals};
use crate::http::respond;
use crate::http::state::AppState;
use crate::service::{ChangeError, Source};

/// The consent page, the authorization endpoint (in the dashboard, where the person signs in).
pub const AUTHORIZE: &str = "/dashboard/oauth/authorize";
/// The token endpoint.
pub const TOKEN: &str = "/oauth/token";
/// The registration endpoint.
pub const REGISTER: &str = "/oauth/register";
/// The protected resource metadata of the server (RFC 9728 §3).
pub const RESOURCE_METADATA: &str = "/.well-known/oauth-protected-resource";
/// The authorization server metadata (RFC 8414 §3).
pub const SERVER_METADATA: &str = "/.well-known/oauth-authorization-server";

/// Largest registration body.
pub const MAX_REGISTRATION_BODY: usize = 16 * 1024;
/// Largest token request body.
pub const MAX_TOKEN_BODY: usize = 8 * 1024;

/// The routes, open to pages of any origin (CORS): none of them reads a cookie, and browser-based
/// MCP clients need them.
pub fn routes(state: AppState) -> Router {
    use axum::http::{header, Method};
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            axum::http::HeaderName::from_static("mcp-protocol-version"),
        ])
        .max_age(std::time::Duration::from_secs(3600));
    // Preflights are answered by the CORS layer; the routes take OPTIONS so that it sees them.
    let preflight = || async { StatusCode::NO_CONTENT };
    Router::new()
        .route(RESOURCE_METADATA, get(resource_metadata).options(preflight))
        .route(
            &format!("{RESOURCE_METADATA}{}", crate::http::mcp::PATH),
            get(resource_metadata).options(preflight),
        )
        .route(SERVER_METADATA, get(server_metadata).options(preflight))
        .route(REGISTER, post(register).options(preflight))
        .route(TOKEN, post(token).options(preflight))
        .layer(cors)
        .with_state(state)
}

/// The URL clients reach this server by: `--public-url`, else `http://<Host>` when the `Host`
/// is one `/mcp` accepts (so a forged `Host` cannot put another server in the metadata).
#[must_use]
pub fn base_url(state: &AppState, headers: &HeaderMap) -> Option<String> {
    base_url_of(state, headers.get(HOST))
}

/// [`base_url`] from the request's `Host` value alone, for callers that keep only it.
#[must_use]
pub fn base_url_of(state: &AppState, host: Option<&HeaderValue>) -> Option<String> {
    if let Some(url) = &state.dashboard.public_url {
        return Some(url.trim_end_matches('/').to_owned());
    }
    let host = host?.to_str().ok()?.to_ascii_lowercase();
    let name = host_name(&host)?;
    state
        .mcp
        .hosts
        .iter()
        .any(|h| {
            // The configured names may be IPv6 addresses without brackets.
            h.eq_ignore_ascii_case(&host)
                || h.eq_ignore_ascii_case(name)
                || host_name(h).is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .then(|| format!("http://{host}"))
}

/// The name part of a `Host` value (without the port or an IPv6 address's brackets); `None`
/// when it has characters a host cannot have, or a port that is not a number.
fn host_name(host: &str) -> Option<&str> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        // Only a port may follow the brackets, and only an IPv6 address is in them.
        if !(after.is_empty() || after.starts_with(':')) || !name.contains(':') {
            return None;
        }
        (name, after.strip_prefix(':'))
    } else if host.matches(':').count() > 1 {
        // An IPv6 address in a Host header has brackets (RFC 9110 §7.2).
        return None;
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    (port_ok && name_ok).then_some(name)
}

/// The issuer: the base URL with its slash, as clients normalize it and as `iss` names it.
#[must_use]
pub fn issuer(base: &str) -> String {
    format!("{base}/")
}

/// The resource clients ask tokens for: the MCP endpoint.
#[must_use]
pub fn resource(base: &str) -> String {
    format!("{base}{}", crate::http::mcp::PATH)
}

/// The URL of the MCP endpoint's protected resource metadata, named by its challenges.
#[must_use]
pub fn resource_metadata_url(base: &str) -> String {
    format!("{base}{RESOURCE_METADATA}{}", crate::http::mcp::PATH)
}

/// Whether a `resource` parameter (RFC 8707) names this server's MCP endpoint (or the server).
#[must_use]
pub fn names_resource(base: &str, requested: &str) -> bool {
    let requested = requested.trim_end_matches('/');
    requested == resource(base) || requested == base
}

/// Every scope name, in the spec's order.
fn scope_names() -> Vec<&'static str> {
    Scopes::all().names().collect()
}

fn unknown_host() -> Response {
    respond::error(
        StatusCode::MISDIRECTED_REQUEST,
        "MISDIRECTED_REQUEST",
        "This server does not answer for this Host; start it with --public-url or \
         --mcp-allowed-host",
    )
}

/// The metadata of the MCP endpoint (`…/mcp`), and of the server as a whole at the root
/// well-known URL, whose resource is then the server's URL (RFC 9728 §3.3: the resource into
/// which the well-known path was inserted).
async fn resource_metadata(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let Some(base) = base_url(&state, &headers) else {
        return unknown_host();
    };
    let resource = if uri.path() == RESOURCE_METADATA {
        format!("{base}/")
    } else {
        resource(&base)
    };
    Json(json!({
        "resource": resource,
        "authorization_servers": [issuer(&base)],
        "scopes_supported": scope_names(),
        "bearer_methods_supported": ["header"],
        "resource_name": "Sitequest API",
    }))
    .into_response()
}

async fn server_metadata(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(base) = base_url(&state, &headers) else {
        return unknown_host();
    };
    Json(json!({
        "issuer": issuer(&base),
        "authorization_endpoint": format!("{base}{AUTHORIZE}"),
        "token_endpoint": format!("{base}{TOKEN}"),
        "registration_endpoint": format!("{base}{REGISTER}"),
        "scopes_supported": scope_names(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "token_endpoint_auth_methods_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

/// An OAuth error answer.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// What a registration may say (RFC 7591 §2); other members are ignored.
#[derive(Deserialize)]
struct Registration {
    #[serde(default)]
    redirect_uris: Vec<String>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
}

async fn register(State(state): State<AppState>, req: Request) -> Response {
    let now = state.now();
    let ip = client_ip(&state.core, &req);
    let refusals = Refusals::of(&state.core, ip, now);
    if let Some(window) = refusals.exhausted() {
        return respond::too_many(&window, now);
    }
    let refused = |res: Response| refusals.count(res);
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_REGISTRATION_BODY).await else {
        return refused(oauth_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_client_metadata",
            &format!("the registration is larger than {MAX_REGISTRATION_BODY} bytes"),
        ));
    };
    let Ok(r) = serde_json::from_slice::<Registration>(&body) else {
        return refused(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "the body must be a JSON object of client metadata (RFC 7591)",
        ));
    };
    if let Some(method) = r.token_endpoint_auth_method.as_deref() {
        // Public clients with PKCE: a client asking for a secret is registered without one,
        // as RFC 7591 §3.2.1 allows, and the answer says so.
        tracing::debug!(requested = %method.chars().take(32).collect::<String>(), "client registered as public");
    }
    if r.grant_types
        .as_ref()
        .is_some_and(|g| !g.iter().any(|g| g == "authorization_code"))
        || r.response_types
            .as_ref()
            .is_some_and(|t| !t.iter().any(|t| t == "code"))
    {
        return refused(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "this server grants authorization codes only (grant type authorization_code, \
             response type code)",
        ));
    }
    match state
        .oauth
        .register(r.client_name.as_deref(), &r.redirect_uris, now)
    {
        Ok((id, client)) => (
            StatusCode::CREATED,
            Json(json!({
                "client_id": id,
                "client_id_issued_at": client.issued_at,
                "client_name": client.name,
                "redirect_uris": client.redirect_uris,
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            })),
        )
            .into_response(),
        Err(e) => refused(oauth_error(StatusCode::BAD_REQUEST, e.code, &e.description)),
    }
}

/// The token request's parameters, each at most once (RFC 6749 §3.2).
#[derive(Default)]
struct TokenRequest {
    grant_type: Option<String>,
    code: Option<Zeroizing<String>>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    code_verifier: Option<Zeroizing<String>>,
    resource: Option<String>,
}

fn parse_token_request(body: &[u8]) -> Result<TokenRequest, String> {
    let mut t = TokenRequest::default();
    for (name, value) in url::form_urlencoded::parse(body) {
        let slot: &mut Option<String> = match name.as_ref() {
            "grant_type" => &mut t.grant_type,
            "redirect_uri" => &mut t.redirect_uri,
            "client_id" => &mut t.client_id,
            "resource" => &mut t.resource,
            "code" | "code_verifier" => {
                let slot = if name == "code" {
                    &mut t.code
                } else {
                    &mut t.code_verifier
                };
                if slot.is_some() {
                    return Err(format!("{name} is given more than once"));
                }
                *slot = Some(Zeroizing::new(value.into_owned()));
                continue;
            }
            _ => continue,
        };
        if slot.is_some() {
            return Err(format!("{name} is given more than once"));
        }
        *slot = Some(value.into_owned());
    }
    Ok(t)
}

async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = state.now();
    let ip = crate::http::client::client_address(&state.core, &headers, Some(peer));
    let refusals = Refusals::of(&state.core, ip, now);
    if let Some(window) = refusals.exhausted() {
        return respond::too_many(&window, now);
    }
    let refused = |status: StatusCode, error: &str, description: &str| {
        refusals.count(oauth_error(status, error, description))
    };
    let Some(base) = base_url(&state, &headers) else {
        return unknown_host();
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_TOKEN_BODY).await else {
        return refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            &format!("the request is larger than {MAX_TOKEN_BODY} bytes"),
        );
    };
    let t = match parse_token_request(&body) {
        Ok(t) => t,
        Err(e) => return refused(StatusCode::BAD_REQUEST, "invalid_request", &e),
    };
    match t.grant_type.as_deref() {
        Some("authorization_code") => {}
        Some(_) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "this server grants authorization codes only",
            )
        }
        None => {
            return refused(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing",
            )
        }
    }
    let (Some(code), Some(client_id), Some(verifier)) = (&t.code, &t.client_id, &t.code_verifier)
    else {
        return refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code, client_id and code_verifier are required (and redirect_uri when the \
             authorization request named it)",
        );
    };
    if state.oauth.client(client_id).is_none() {
        return refused(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "this server registered no such client",
        );
    }
    if let Some(requested) = &t.resource {
        if !names_resource(&base, requested) {
            return refused(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "resource must name this server's MCP endpoint",
            );
        }
    }
    let grant =
        match state
            .oauth
            .exchange(code, client_id, t.redirect_uri.as_deref(), verifier, now)
        {
            Ok(grant) => grant,
            // Every way a code fails is OAuth's invalid_grant, with its own description.
            Err(e) => return refused(StatusCode::BAD_REQUEST, "invalid_grant", &e.to_string()),
        };
    let issued = match state.core.keys.create(&grant.key, now, Source::OAuth).await {
        Ok(issued) => issued,
        Err(ChangeError::Invalid(e)) => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, "key of an OAuth grant not saved");
            let mut res = oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the key could not be saved; authorize again",
            );
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(1));
            return res;
        }
    };
    tracing::info!(key_id = %issued.record.id(), client = ?issued.record.name, "key issued to an OAuth client");
    let mut answer = json!({
        "access_token": issued.key.expose_secret().as_str(),
        "token_type": "Bearer",
        "scope": issued.record.scopes.names().collect::<Vec<_>>().join(" "),
    });
    if let Some(expires) = issued.record.expires_at {
        answer["expires_in"] = Value::from(expires.as_secs().saturating_sub(now.as_secs()));
    }
    let mut res = Json(answer).into_response();
    res.headers_mut()
        .insert("pragma", HeaderValue::from_static("no-cache"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("127.0.0.1:8080"), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:8080"), Some("::1"));
        assert_eq!(host_name("::1"), None);
        assert_eq!(host_name("keys.example.com"), Some("keys.example.com"));
        assert_eq!(host_name("127.0.0.1:\"x"), None);
        assert_eq!(host_name("a\"b"), None);
        assert_eq!(host_name("127.0.0.1:"), None);
        assert_eq!(host_name("[::1]@evil.com"), None);
        assert_eq!(host_name("[::1]x"), None);
        assert_eq!(host_name("[127.0.0.1]"), None);
        assert_eq!(host_name("[::1]\", error=\"x"), None);
    }

    #[test]
    fn token_parameters_are_taken_once() {
        assert!(parse_token_request(b"code=a&code=b").is_err());
        assert!(parse_token_request(b"grant_type=a&grant_type=b").is_err());
        let t = parse_token_request(b"grant_type=authorization_code&code=x&other=1").unwrap();
        assert_eq!(t.grant_type.as_deref(), Some("authorization_code"));
        assert_eq!(t.code.as_deref().map(String::as_str), Some("x"));
    }
}
