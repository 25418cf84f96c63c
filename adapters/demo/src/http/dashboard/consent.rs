//! The OAuth consent page, the authorization endpoint of MCP clients
//! ([`crate::http::oauth::AUTHORIZE`]): the signed-in person sees which client asks, picks the
//! key's name, access and expiry as on the create form, and approves or denies. Approving sends
//! the client a code it exchanges for that key ([`crate::oauth`]).
//!
//! A request that names no client of this server, or a redirect URI the client did not
//! register, is answered here with an error page and never redirected (RFC 6749 §4.1.2.1).
//! Other errors of the request are shown on an error page too, with a link that takes the
//! person back to the client with OAuth's `error`, `state` and `iss` (RFC 9207): anyone may
//! register a client, so an automatic redirect would make this server a bounce to any address
//! (RFC 9700 §4.11.2). Only the person's own decision (approve or deny) redirects at once.

use super::*;

use crate::http::oauth::{base_url, issuer, names_resource};
use crate::oauth::{challenge_is_valid, redirect_matches, Client, Grant};

/// Longest query or form the consent page reads.
const MAX_REQUEST: usize = 8 * 1024;

#[derive(Template)]
#[template(path = "dashboard/consent.html")]
pub(super) struct ConsentPage {
    signed_in: bool,
    csrf: String,
    client_name: String,
    redirect_to: String,
    request: AuthorizeRequest,
    form: CreateForm,
    expiry_choices: &'static [(&'static str, &'static str)],
    scope_groups: &'static [ScopeGroup],
    lifetime_note: Option<String>,
}

/// The parameters of an authorization request, each at most once.
#[derive(Debug, Clone)]
pub(super) struct AuthorizeRequest {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    /// Whether the request named its redirect URI (the form carries it along).
    redirect_uri_given: bool,
}

impl AuthorizeRequest {
    fn parse(pairs: &[(String, String)]) -> Result<Self, String> {
        let mut r = Self {
            response_type: None,
            client_id: None,
            redirect_uri: None,
            state: None,
            code_challenge: None,
            code_challenge_method: None,
            scope: None,
            resource: None,
            redirect_uri_given: true,
        };
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "response_type" => &mut r.response_type,
                "client_id" => &mut r.client_id,
                "redirect_uri" => &mut r.redirect_uri,
                "state" => &mut r.state,
                "code_challenge" => &mut r.code_challenge,
                "code_challenge_method" => &mut r.code_challenge_method,
                "scope" => &mut r.scope,
                "resource" => &mut r.resource,
                _ => continue,
            };
            if slot.is_some() {
                return Err(format!("The parameter {name} is given more than once."));
            }
            *slot = Some(value.clone());
        }
        Ok(r)
    }
}

#[derive(Template)]
#[template(path = "dashboard/consent_error.html")]
struct ErrorPage {
    signed_in: bool,
    csrf: String,
    text: String,
    /// Back to the application, with the error, when it can be told.
    back: Option<String>,
}

fn error_page(text: String) -> Response {
    page_with(
        StatusCode::BAD_REQUEST,
        &ErrorPage {
            signed_in: false,
            csrf: String::new(),
            text,
            back: None,
        },
    )
}

/// The client and the redirect URI of a request, when both are this server's to answer to.
fn client_of(state: &AppState, r: &AuthorizeRequest) -> Result<(Client, String), Box<Response>> {
    let client = r
        .client_id
        .as_deref()
        .and_then(|id| state.oauth.client(id))
        .ok_or_else(|| {
            Box::new(error_page(
                "The application asking for access is not registered with this server. Start \
                 the connection again from the application."
                    .to_owned(),
            ))
        })?;
    let redirect =
        match r.redirect_uri.as_deref() {
            Some(uri)
                if client
                    .redirect_uris
                    .iter()
                    .any(|u| redirect_matches(u, uri)) =>
            {
                uri.to_owned()
            }
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            _ => return Err(Box::new(error_page(
                "The application asked to be answered at an address it did not register. Nothing \
                 was sent to it."
                    .to_owned(),
            ))),
        };
    Ok((client, redirect))
}

/// The client's redirect URI with `params`, `state` and `iss`.
fn client_url(
    redirect_uri: &str,
    params: &[(&str, &str)],
    r: &AuthorizeRequest,
    iss: &str,
) -> Option<url::Url> {
    let mut url = url::Url::parse(redirect_uri).ok()?;
    {
        let mut q = url.query_pairs_mut();
        for (name, value) in params {
            q.append_pair(name, value);
        }
        if let Some(s) = &r.state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", iss);
    }
    Some(url)
}

/// A redirect to the client with `params`, `state` and `iss`: the answer to the person's
/// decision.
fn to_client(
    redirect_uri: &str,
    params: &[(&str, &str)],
    r: &AuthorizeRequest,
    iss: &str,
) -> Response {
    match client_url(redirect_uri, params, r, iss) {
        Some(url) => Redirect::to(url.as_str()).into_response(),
        None => error_page("The application's address is not a URL.".to_owned()),
    }
}

/// The person's refusal (or a refusal after their decision), sent to the client at once.
fn refuse(
    redirect_uri: &str,
    r: &AuthorizeRequest,
    iss: &str,
    error: &str,
    description: &str,
) -> Response {
    to_client(
        redirect_uri,
        &[("error", error), ("error_description", description)],
        r,
        iss,
    )
}

/// An invalid request of a registered client: a page saying what is wrong, with a link back to
/// the application carrying the error (never an automatic redirect: see the module's note).
fn invalid(
    redirect_uri: &str,
    r: &AuthorizeRequest,
    iss: &str,
    error: &str,
    description: &str,
) -> Response {
    let back = client_url(
        redirect_uri,
        &[("error", error), ("error_description", description)],
        r,
        iss,
    )
    .map(String::from);
    page_with(
        StatusCode::BAD_REQUEST,
        &ErrorPage {
            signed_in: false,
            csrf: String::new(),
            text: format!("The application's request cannot be served: {description}."),
            back,
        },
    )
}

/// What the request is wrong about, as OAuth's error and description, after its client and
/// redirect URI are known good.
fn check(base: &str, r: &AuthorizeRequest) -> Result<Scopes, (&'static str, &'static str)> {
    if r.response_type.as_deref() != Some("code") {
        return Err((
            "unsupported_response_type",
            "this server answers response_type=code only",
        ));
    }
    if !r.code_challenge.as_deref().is_some_and(challenge_is_valid)
        || r.code_challenge_method.as_deref() != Some("S256")
    {
        return Err((
            "invalid_request",
            "PKCE is required: code_challenge (S256) and code_challenge_method=S256",
        ));
    }
    if r.resource
        .as_deref()
        .is_some_and(|res| !names_resource(base, res))
    {
        return Err((
            "invalid_target",
            "resource must name this server's MCP endpoint",
        ));
    }
    let mut scopes = Scopes::empty();
    for name in r.scope.as_deref().unwrap_or("").split_ascii_whitespace() {
        scopes |= Scopes::parse_name(name).map_err(|_| {
            (
                "invalid_scope",
                "scope names one that this server does not have",
            )
        })?;
    }
    Ok(scopes)
}

/// The scheme and host a redirect URI sends to, for the logs.
fn host_of(redirect_uri: &str) -> String {
    url::Url::parse(redirect_uri)
        .ok()
        .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")))
        .unwrap_or_default()
}

/// A request found good: its client, the redirect URI to answer at, the issuer and the scopes
/// asked for.
struct Checked {
    client: Client,
    redirect_uri: String,
    iss: String,
    scopes: Scopes,
}

/// Checks a request as the page and its form both do; else the answer: an error page, with a
/// link back to the client once the client and redirect URI are known good.
fn checked(
    state: &AppState,
    headers: &HeaderMap,
    r: &AuthorizeRequest,
) -> Result<Checked, Box<Response>> {
    let (client, redirect_uri) = client_of(state, r)?;
    let Some(base) = base_url(state, headers) else {
        return Err(Box::new(error_page(
            "This server does not answer for this address.".to_owned(),
        )));
    };
    let iss = issuer(&base);
    match check(&base, r) {
        Ok(scopes) => Ok(Checked {
            client,
            redirect_uri,
            iss,
            scopes,
        }),
        Err((error, description)) => Err(Box::new(invalid(
            &redirect_uri,
            r,
            &iss,
            error,
            description,
        ))),
    }
}

/// The consent page's policy: the defaults, and the client's redirect origin allowed as a form
/// target (approving answers with a redirect to it, which the browser checks against
/// `form-action`).
fn with_policy(mut res: Response, redirect_uri: &str) -> Response {
    let target = url::Url::parse(redirect_uri)
        .ok()
        .map(|u| match u.scheme() {
            "http" | "https" => u.origin().ascii_serialization(),
            scheme => format!("{scheme}:"),
        })
        .unwrap_or_default();
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self' {target}; base-uri 'none'; frame-ancestors 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&policy) {
        res.headers_mut().insert("content-security-policy", v);
    }
    res
}

fn render(
    state: &AppState,
    csrf: String,
    client: &Client,
    redirect_uri: &str,
    request: AuthorizeRequest,
    form: CreateForm,
    status: StatusCode,
) -> Response {
    let redirect_to = url::Url::parse(redirect_uri)
        .ok()
        .map(|u| match u.host_str() {
            Some(host) => format!("{}://{host}", u.scheme()),
            None => format!("{}:", u.scheme()),
        })
        .unwrap_or_default();
    let res = page_with(
        status,
        &ConsentPage {
            signed_in: true,
            csrf,
            client_name: client.name.clone(),
            redirect_to,
            request,
            form,
            expiry_choices: &EXPIRY_CHOICES,
            scope_groups: &SCOPE_GROUPS,
            lifetime_note: lifetime_note(state),
        },
    );
    with_policy(res, redirect_uri)
}

pub(super) async fn consent_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if query.len() > MAX_REQUEST {
        return error_page(format!("The request is longer than {MAX_REQUEST} bytes."));
    }
    let Some((_, csrf)) = signed_in(&state, &headers) else {
        let next: String = url::form_urlencoded::byte_serialize(
            format!("{}?{query}", crate::http::oauth::AUTHORIZE).as_bytes(),
        )
        .collect();
        return Redirect::to(&format!("{LOGIN}?next={next}")).into_response();
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let r = match AuthorizeRequest::parse(&pairs) {
        Ok(r) => r,
        Err(e) => return error_page(e),
    };
    let Checked {
        client,
        redirect_uri,
        scopes,
        ..
    } = match checked(&state, &headers, &r) {
        Ok(c) => c,
        Err(res) => return *res,
    };
    // The client's requested scopes are ticked; without any, Read only (the narrowest preset).
    let form = if scopes.is_empty() || scopes == Preset::ReadOnly.scopes() {
        CreateForm::fresh(&state, "read_only", Vec::new())
    } else if scopes == Preset::Full.scopes() {
        CreateForm::fresh(&state, "full", Vec::new())
    } else {
        CreateForm::fresh(
            &state,
            "custom",
            scopes.names().map(str::to_owned).collect(),
        )
    }
    .named(client.name.clone())
    .expiring_in_30_days(&state);
    // The form carries the redirect URI used, and whether the request named it (the exchange
    // must then name it again).
    let r = AuthorizeRequest {
        redirect_uri_given: r.redirect_uri.is_some(),
        redirect_uri: Some(redirect_uri.clone()),
        ..r
    };
    render(
        &state,
        csrf,
        &client,
        &redirect_uri,
        r,
        form,
        StatusCode::OK,
    )
}

pub(super) async fn consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    CheckedForm { cookie: c, fields }: CheckedForm,
) -> Response {
    let now = state.now();
    // The scope checkboxes are the key's, not the request's.
    let request_fields: Vec<(String, String)> = fields
        .iter()
        .filter(|(n, _)| n != "scope")
        .cloned()
        .collect();
    let r = match AuthorizeRequest::parse(&request_fields) {
        Ok(r) => AuthorizeRequest {
            // Checked when the page was shown; the form carries only what the answer needs.
            response_type: Some("code".to_owned()),
            code_challenge_method: Some("S256".to_owned()),
            ..r
        },
        Err(e) => return error_page(e),
    };
    let Checked {
        client,
        redirect_uri,
        iss,
        ..
    } = match checked(&state, &headers, &r) {
        Ok(c) => c,
        Err(res) => return *res,
    };
    if field(&fields, "decision") != Some("approve") {
        tracing::info!(client = ?client.name, redirect = %host_of(&redirect_uri), "OAuth authorization denied in the dashboard");
        return refuse(
            &redirect_uri,
            &r,
            &iss,
            "access_denied",
            "the account owner denied the request",
        );
    }
    let (form, new) = judge(&state, &fields, now);
    let Some(key) = new else {
        let csrf = state.dashboard.sessions.csrf(&c, now).unwrap_or_default();
        return render(
            &state,
            csrf,
            &client,
            &redirect_uri,
            r,
            form,
            StatusCode::BAD_REQUEST,
        );
    };
    let grant = Grant {
        client_id: r.client_id.clone().unwrap_or_default(),
        redirect_uri: redirect_uri.clone(),
        redirect_uri_given: field(&fields, "redirect_uri_given") != Some("false"),
        challenge: r.code_challenge.clone().unwrap_or_default(),
        key,
    };
    match state.oauth.approve(grant, now) {
        Ok(code) => {
            tracing::info!(client = ?client.name, redirect = %host_of(&redirect_uri), "OAuth authorization approved in the dashboard");
            to_client(&redirect_uri, &[("code", code.as_str())], &r, &iss)
        }
        Err(e) => refuse(
            &redirect_uri,
            &r,
            &iss,
            "temporarily_unavailable",
            &e.to_string(),
        ),
    }
}
