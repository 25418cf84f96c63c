//! The dashboard: "Settings › API / MCP", where the account owner creates, uses, rotates and
//! revokes keys in a browser.
//!
//! Pages are askama templates checked at compile time; the CSS, the little JS and the icon are
//! embedded in the binary (`rust-embed`), so the page needs no network but the server. The
//! server is the only judge of a new key's settings: the form is checked by the same store and
//! policy as the admin API, and errors are shown next to their field.
//!
//! Security: a sign-in with the admin token opens a session (an `HttpOnly`, `SameSite=Strict`
//! cookie on `/dashboard`, `Secure` behind an `https` public URL, 12 hours); every state-changing
//! request needs the session's CSRF token and an `Origin` of this server (or, where the browser
//! sends `Origin: null` because of the no-referrer policy, `Sec-Fetch-Site: same-origin`); every
//! page is sent with
//! a strict `Content-Security-Policy` (no inline script or style), `X-Content-Type-Options:
//! nosniff`, `Referrer-Policy: no-referrer`, `frame-ancestors 'none'` and `Cache-Control:
//! no-store`. A new key is shown once: it is kept in the session only until the page that shows
//! it is served, never in a URL, a cookie, browser storage or a log line.

pub mod session;

use std::time::Duration;

use askama::Template;
use axum::body::Body;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use sitequest_auth::{
    InvalidRecord, KeyId, KeyRecord, KeyStatus, NewKey, Preset, Scopes, UnixTime,
};
use zeroize::Zeroizing;

use crate::http::state::AppState;
use crate::service::{ActivityRead, ChangeError, Source};
use session::Reveal;

/// The settings page.
pub const SETTINGS: &str = "/dashboard/settings/api";
const LOGIN: &str = "/dashboard/login";

/// The dashboard's static files, in the binary.
#[derive(rust_embed::RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The dashboard's routes (and `/`, which leads there).
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to(SETTINGS) }))
        .route("/dashboard", get(home))
        .route(LOGIN, get(login_page).post(login))
        .route("/dashboard/logout", post(logout))
        .route(SETTINGS, get(settings))
        .route("/dashboard/settings/api/keys", post(create))
        .route("/dashboard/settings/api/created", get(created))
        .route(
            "/dashboard/settings/api/keys/{id}/revoke",
            get(revoke_page).post(revoke),
        )
        .route(
            "/dashboard/settings/api/keys/{id}/rotate",
            get(rotate_page).post(rotate),
        )
        .route(
            "/dashboard/settings/api/keys/{id}/usage.svg",
            get(usage_svg),
        )
        .route("/dashboard/assets/{file}", get(asset))
        .with_state(state)
}

fn page(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => ([(CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response()
        }
    }
}

fn page_with(status: StatusCode, t: &impl Template) -> Response {
    let mut res = page(t);
    *res.status_mut() = status;
    res
}

/// The session cookie's value, if the request has one.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == session::COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| v.len() == 64)
}

/// The signed-in session: (cookie, CSRF token).
fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<(String, String)> {
    let c = cookie(headers)?;
    let csrf = state.dashboard.sessions.csrf(&c, state.now())?;
    Some((c, csrf))
}

/// The origin pages of this server are served from: the public URL's, else `http://<Host>`.
fn own_origin(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if let Some(url) = &state.dashboard.public_url {
        return Some(url.trim_end_matches('/').to_owned());
    }
    let host = headers.get(HOST)?.to_str().ok()?;
    Some(format!("http://{host}"))
}

/// Whether a state-changing request comes from a page of this server: its `Origin` is this
/// server's. Pages are sent with `Referrer-Policy: no-referrer`, under which browsers send
/// `Origin: null` for a form post; then the browser's Fetch Metadata must say the request is
/// `same-origin` (`Sec-Fetch-Site`, which a page cannot set). A request with neither is refused.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match value(ORIGIN.as_str()) {
        Some("null") | None => value("sec-fetch-site") == Some("same-origin"),
        Some(origin) => own_origin(state, headers).is_some_and(|own| own == origin),
    }
}

fn forbidden() -> Response {
    page_with(
        StatusCode::FORBIDDEN,
        &MessagePage {
            signed_in: false,
            csrf: String::new(),
            heading: "Request refused",
            text: "This form is stale or was sent from another site. Go back, reload the page and try again.",
            back: SETTINGS,
        },
    )
}

/// The session of a state-changing request, checked: the `Origin` is this server's and the form
/// carries the session's CSRF token. Otherwise the answer to send (403, or 401 without a
/// session).
fn authorize_post(
    state: &AppState,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<String, Refused> {
    if !same_origin(state, headers) {
        return Err(Refused::Forbidden);
    }
    let Some(c) = cookie(headers) else {
        return Err(Refused::SignIn);
    };
    if state.dashboard.sessions.csrf(&c, state.now()).is_none() {
        return Err(Refused::SignIn);
    }
    match csrf {
        Some(token) if state.dashboard.sessions.check_csrf(&c, token, state.now()) => Ok(c),
        _ => Err(Refused::Forbidden),
    }
}

/// Why a state-changing request was refused.
enum Refused {
    /// 403: a stale form, or a request from another site.
    Forbidden,
    /// 401: no live session.
    SignIn,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::Forbidden => forbidden(),
            Self::SignIn => unauthorized(),
        }
    }
}

fn unauthorized() -> Response {
    page_with(
        StatusCode::UNAUTHORIZED,
        &MessagePage {
            signed_in: false,
            csrf: String::new(),
            heading: "Please sign in",
            text: "Your session has ended or you are not signed in.",
            back: LOGIN,
        },
    )
}

fn to_login() -> Response {
    Redirect::to(LOGIN).into_response()
}

/// A form's fields, in order (a name may repeat, as the scope checkboxes do).
type Fields = Vec<(String, String)>;

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Template)]
#[template(path = "dashboard/message.html")]
struct MessagePage {
    signed_in: bool,
    csrf: String,
    heading: &'static str,
    text: &'static str,
    back: &'static str,
}

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginPage {
    signed_in: bool,
    csrf: String,
    error: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "dashboard/home.html")]
struct HomePage {
    signed_in: bool,
    csrf: String,
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers) {
        Some((_, csrf)) => page(&HomePage {
            signed_in: true,
            csrf,
        }),
        None => to_login(),
    }
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers).is_some() {
        return Redirect::to(SETTINGS).into_response();
    }
    page(&LoginPage {
        signed_in: false,
        csrf: String::new(),
        error: None,
    })
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    if !same_origin(&state, &headers) {
        return forbidden();
    }
    // The token is compared first, so that nobody sharing the admin's address (or a proxy that
    // is not trusted) can lock the admin out; only wrong tokens count in the address's quota of
    // requests without a valid key, and past it they are refused before being compared.
    let now = state.now();
    let token = Zeroizing::new(field(&fields, "token").unwrap_or("").to_owned());
    let header = Zeroizing::new(format!("Bearer {}", token.as_str()));
    if !state.admin.check(Some(header.as_bytes())) {
        let refusals = crate::http::client::Refusals::of(
            &state.core,
            crate::http::client::client_address(&state.core, &headers, Some(peer)),
            now,
        );
        if refusals.exhausted().is_some() {
            return page_with(
                StatusCode::TOO_MANY_REQUESTS,
                &LoginPage {
                    signed_in: false,
                    csrf: String::new(),
                    error: Some(
                        "Too many attempts from this address: wait a minute and try again.",
                    ),
                },
            );
        }
        tracing::debug!("dashboard sign-in refused");
        return refusals.count(page_with(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                signed_in: false,
                csrf: String::new(),
                error: Some("That is not the admin token."),
            },
        ));
    }
    let c = state.dashboard.sessions.open(now);
    let secure = if state
        .dashboard
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
    {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={c}; HttpOnly; SameSite=Strict; Path=/dashboard; Max-Age={}{secure}",
        session::COOKIE,
        session::LIFETIME_SECS
    );
    let mut res = Redirect::to(SETTINGS).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(SET_COOKIE, v);
    }
    res
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let c = match authorize_post(&state, &headers, field(&fields, "csrf")) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    state.dashboard.sessions.close(&c);
    let mut res = Redirect::to(LOGIN).into_response();
    res.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static(
            "sq_dashboard=; HttpOnly; SameSite=Strict; Path=/dashboard; Max-Age=0",
        ),
    );
    res
}

/// What the create form held, and what was wrong with it.
#[derive(Debug, Default)]
struct CreateForm {
    name: String,
    expiry: String,
    expiry_date: String,
    access: String,
    scopes: Vec<String>,
    errors: FieldErrors,
}

#[derive(Debug, Default)]
struct FieldErrors {
    name: Option<String>,
    expiry: Option<String>,
    access: Option<String>,
}

impl CreateForm {
    fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

impl FieldErrors {
    fn any(&self) -> bool {
        self.name.is_some() || self.expiry.is_some() || self.access.is_some()
    }
}

struct ScopeChoice {
    name: &'static str,
    id: &'static str,
    description: &'static str,
}

struct ScopeGroup {
    title: &'static str,
    scopes: [ScopeChoice; 3],
}

const SCOPE_GROUPS: [ScopeGroup; 2] = [
    ScopeGroup {
        title: "VPS",
        scopes: [
            ScopeChoice {
                name: "vps:read",
                id: "vps-read",
                description: "List servers, view status and metrics",
            },
            ScopeChoice {
                name: "vps:write",
                id: "vps-write",
                description: "Start, stop, reboot, reinstall, mount ISO, SSH execution",
            },
            ScopeChoice {
                name: "vps:manage",
                id: "vps-manage",
                description: "Create, upgrade, and delete servers",
            },
        ],
    },
    ScopeGroup {
        title: "Domains",
        scopes: [
            ScopeChoice {
                name: "domains:read",
                id: "domains-read",
                description: "List domains and view DNS records",
            },
            ScopeChoice {
                name: "domains:write",
                id: "domains-write",
                description: "Edit DNS records and domain settings",
            },
            ScopeChoice {
                name: "domains:manage",
                id: "domains-manage",
                description: "Register, transfer, and delete domains",
            },
        ],
    },
];

const EXPIRY_CHOICES: [(&str, &str); 4] = [
    ("none", "No expiry"),
    ("30d", "30 days"),
    ("90d", "90 days"),
    ("1y", "1 year"),
];

const GRACES: [(&str, &str); 4] = [
    ("0", "None: the old key stops at once"),
    ("3600", "1 hour"),
    ("86400", "24 hours"),
    ("604800", "7 days"),
];

/// A key as the list shows it.
struct KeyRow {
    id: String,
    name: String,
    last4: String,
    scopes: Vec<&'static str>,
    created_rel: String,
    created_exact: String,
    created_iso: String,
    expires_rel: Option<String>,
    expires_exact: String,
    last_used_rel: String,
    status: &'static str,
    revoked_by: Option<String>,
    window: String,
    chart_url: String,
}

struct EventRow {
    iso: String,
    exact: String,
    key_id: String,
    action: String,
    source: String,
}

#[derive(Template)]
#[template(path = "dashboard/api.html")]
struct ApiPage<'a> {
    signed_in: bool,
    csrf: String,
    form: &'a CreateForm,
    expiry_choices: &'a [(&'a str, &'a str)],
    scope_groups: &'a [ScopeGroup],
    keys: Vec<KeyRow>,
    sort: &'a str,
    activity: Vec<EventRow>,
    mcp_url: String,
    quota: String,
    lifetime_note: Option<String>,
}

#[derive(Deserialize, Default)]
struct SortQuery {
    sort: Option<String>,
}

async fn settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SortQuery>,
) -> Response {
    let Some((_, csrf)) = signed_in(&state, &headers) else {
        return to_login();
    };
    // With a maximum lifetime, "No expiry" would only be refused: start from 30 days.
    let expiry = match state.store().policy().max_lifetime {
        None => "none",
        Some(max) if max >= Duration::from_secs(30 * DAY) => "30d",
        Some(_) => "date",
    };
    let form = CreateForm {
        expiry: expiry.into(),
        access: "read_only".into(),
        ..CreateForm::default()
    };
    settings_page(
        &state,
        &headers,
        csrf,
        &form,
        query.sort.as_deref(),
        StatusCode::OK,
    )
    .await
}

async fn settings_page(
    state: &AppState,
    headers: &HeaderMap,
    csrf: String,
    form: &CreateForm,
    sort: Option<&str>,
    status: StatusCode,
) -> Response {
    let now = state.now();
    let activity = state
        .core
        .keys
        .activity(ActivityRead::Both)
        .await
        .unwrap_or_default();
    let mut records = state.store().list();
    let sort = match sort {
        Some("last_used") => {
            // Never used first, then the longest unused: the keys to revoke come first.
            records.sort_by_key(|r| (r.last_used_at, r.created_at));
            "last_used"
        }
        Some("name") => {
            records.sort_by_key(|r| r.name.to_lowercase());
            "name"
        }
        _ => {
            records.sort_by_key(|r| std::cmp::Reverse(r.created_at));
            "created"
        }
    };
    let keys = records
        .iter()
        .map(|r| key_row(state, r, activity.revoked_by.get(&r.id()), now))
        .collect();
    let events = activity
        .events
        .iter()
        .take(50)
        .map(|e| EventRow {
            iso: iso(e.at),
            exact: exact(e.at),
            key_id: e.key_id.to_string(),
            action: e.action.replace('_', " "),
            source: e.source.replace('_', " "),
        })
        .collect();
    let base = own_origin(state, headers).unwrap_or_default();
    page_with(
        status,
        &ApiPage {
            signed_in: true,
            csrf,
            form,
            expiry_choices: &EXPIRY_CHOICES,
            scope_groups: &SCOPE_GROUPS,
            keys,
            sort,
            activity: events,
            mcp_url: format!("{base}{}", crate::http::mcp::PATH),
            quota: quota_text(state.core.auth.quota()),
            lifetime_note: state.store().policy().max_lifetime.map(|max| {
                format!(
                    "This server requires every key to expire, at most {} after it is created.",
                    sitequest_auth::Lifetime(max)
                )
            }),
        },
    )
}

fn key_row(state: &AppState, r: &KeyRecord, revoked_by: Option<&String>, now: UnixTime) -> KeyRow {
    let status = match r.status(now) {
        KeyStatus::Active => "active",
        KeyStatus::Revoked => "revoked",
        KeyStatus::Expired => "expired",
    };
    let quota = r.rate_limit.unwrap_or(state.core.auth.quota());
    let window = if state.core.limiter.is_none() {
        let w = state.core.auth.limiter().peek(r.limit_id(), quota, now);
        format!("{} / {}", w.limit - w.remaining, w.limit)
    } else {
        // Counted in Redis: what this instance served this minute.
        let m = state.core.usage.last_hour(r.id(), now);
        let last = m.last().copied().unwrap_or([0; 3]);
        format!("{} / {} here", last[0] + last[1], quota.limit())
    };
    KeyRow {
        id: r.id().to_string(),
        name: r.name.clone(),
        last4: r.last4.as_str().to_owned(),
        scopes: r.scopes.names().collect(),
        created_rel: relative(r.created_at, now),
        created_exact: exact(r.created_at),
        created_iso: iso(r.created_at),
        expires_rel: r.expires_at.map(|t| relative(t, now)),
        expires_exact: r.expires_at.map(exact).unwrap_or_default(),
        last_used_rel: r
            .last_used_at
            .map_or_else(|| "never".to_owned(), |t| relative(t, now)),
        status,
        revoked_by: r.revoked_at.and(revoked_by).map(|s| s.replace('_', " ")),
        window,
        chart_url: format!("/dashboard/settings/api/keys/{}/usage.svg", r.id()),
    }
}

const DAY: u64 = 86_400;

/// When the expiry choice says the key expires, or the message for the field.
fn expiry_of(fields: &Fields, now: UnixTime) -> Result<Option<UnixTime>, String> {
    match field(fields, "expiry").unwrap_or("none") {
        "none" => Ok(None),
        "30d" => Ok(Some(now.plus_secs(30 * DAY))),
        "90d" => Ok(Some(now.plus_secs(90 * DAY))),
        "1y" => Ok(Some(now.plus_secs(365 * DAY))),
        "date" => {
            let text = field(fields, "expiry_date").unwrap_or("");
            // The key works through the chosen day (UTC).
            parse_date(text)
                .map(|day| Some(UnixTime::from_secs((day + 1) * DAY)))
                .ok_or_else(|| "Pick a date, as 2027-01-31.".to_owned())
        }
        _ => Err("Choose when the key expires.".to_owned()),
    }
}

/// The scopes the access choice gives, or the message for the field.
fn scopes_of(fields: &Fields) -> Result<Scopes, String> {
    match field(fields, "access").unwrap_or("") {
        "full" => Ok(Preset::Full.scopes()),
        "read_only" => Ok(Preset::ReadOnly.scopes()),
        "custom" => {
            let mut scopes = Scopes::empty();
            for (_, name) in fields.iter().filter(|(n, _)| n == "scope") {
                scopes |= Scopes::parse_name(name).map_err(|e| capitalized(&e.to_string()))?;
            }
            if scopes.is_empty() {
                return Err("Pick at least one scope.".to_owned());
            }
            Ok(scopes)
        }
        _ => Err("Choose Full access, Read only or Custom.".to_owned()),
    }
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let c = match authorize_post(&state, &headers, field(&fields, "csrf")) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let now = state.now();
    let mut form = CreateForm {
        name: field(&fields, "name").unwrap_or("").to_owned(),
        expiry: field(&fields, "expiry").unwrap_or("none").to_owned(),
        expiry_date: field(&fields, "expiry_date").unwrap_or("").to_owned(),
        access: field(&fields, "access").unwrap_or("").to_owned(),
        scopes: fields
            .iter()
            .filter(|(n, _)| n == "scope")
            .map(|(_, v)| v.clone())
            .collect(),
        errors: FieldErrors::default(),
    };
    // Every field is judged, so that every error shows at once, each next to its field; then the
    // store, with the operator's policy, is the one judge of the new key.
    let policy = state.store().policy();
    let expiry = match expiry_of(&fields, now) {
        Ok(Some(t)) if t <= now => Err("Expiry time must be in the future.".to_owned()),
        Ok(t) => policy
            .check(t, now)
            .map(|()| t)
            .map_err(|e| capitalized(&e.to_string())),
        Err(e) => Err(e),
    };
    let expiry = expiry
        .map_err(|e| form.errors.expiry = Some(e))
        .ok()
        .flatten();
    let scopes = scopes_of(&fields)
        .map_err(|e| form.errors.access = Some(e))
        .ok();
    if let Err(e) = NewKey::new(form.name.clone(), Scopes::VPS_READ).generate(now) {
        form.errors.name = Some(capitalized(&e.to_string()));
    }
    let mut issued = None;
    if let (Some(scopes), false) = (scopes, form.errors.any()) {
        let mut new = NewKey::new(form.name.clone(), scopes);
        if let Some(t) = expiry {
            new = new.expires_at(t);
        }
        match state.core.keys.create(&new, now, Source::Dashboard).await {
            Ok(i) => issued = Some(i),
            Err(ChangeError::Invalid(e)) => {
                let message = capitalized(&e.to_string());
                match e {
                    InvalidRecord::EmptyName
                    | InvalidRecord::NameTooLong { .. }
                    | InvalidRecord::ControlCharacter => form.errors.name = Some(message),
                    InvalidRecord::EmptyScopes => form.errors.access = Some(message),
                    _ => form.errors.expiry = Some(message),
                }
            }
            Err(e) => return change_failed(e),
        }
    }
    let Some(issued) = issued else {
        let csrf = state.dashboard.sessions.csrf(&c, now).unwrap_or_default();
        return settings_page(&state, &headers, csrf, &form, None, StatusCode::BAD_REQUEST).await;
    };
    state.dashboard.sessions.set_reveal(
        &c,
        Reveal {
            key: issued.key.expose_secret(),
            id: issued.record.id().to_string(),
            name: issued.record.name.clone(),
        },
        now,
    );
    Redirect::to("/dashboard/settings/api/created").into_response()
}

/// `60 per minute`, `100 per 30 seconds`.
fn quota_text(q: sitequest_auth::Quota) -> String {
    if q.period_secs() == 60 {
        format!("{} per minute", q.limit())
    } else {
        format!("{} per {} seconds", q.limit(), q.period_secs())
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>() + ".",
        None => String::new(),
    }
}

fn change_failed(e: ChangeError) -> Response {
    let text = match e {
        ChangeError::NotFound => "There is no key with this id.",
        ChangeError::NotActive => "The key is revoked or expired.",
        ChangeError::Invalid(_) => "The key could not be saved.",
        ChangeError::Db(_) => "The data file is busy; try again in a moment.",
        ChangeError::NotShared => {
            "The change is in force on this server, but the other servers could not be told \
             yet. It is retried until they are; send it again to be sure."
        }
    };
    let status = match e {
        ChangeError::NotFound => StatusCode::NOT_FOUND,
        ChangeError::NotActive => StatusCode::CONFLICT,
        ChangeError::Invalid(_) => StatusCode::BAD_REQUEST,
        ChangeError::Db(_) | ChangeError::NotShared => StatusCode::SERVICE_UNAVAILABLE,
    };
    page_with(
        status,
        &MessagePage {
            signed_in: false,
            csrf: String::new(),
            heading: "Not done",
            text,
            back: SETTINGS,
        },
    )
}

#[derive(Template)]
#[template(path = "dashboard/created.html")]
struct CreatedPage {
    signed_in: bool,
    csrf: String,
    keys: Vec<Reveal>,
    base_url: String,
}

async fn created(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some((c, csrf)) = signed_in(&state, &headers) else {
        return to_login();
    };
    // Shown once: a reload finds nothing and goes back to the list.
    let keys = state.dashboard.sessions.take_reveals(&c, state.now());
    if keys.is_empty() {
        return Redirect::to(SETTINGS).into_response();
    }
    page(&CreatedPage {
        signed_in: true,
        csrf,
        keys,
        base_url: own_origin(&state, &headers).unwrap_or_default(),
    })
}

#[derive(Template)]
#[template(path = "dashboard/revoke.html")]
struct RevokePage {
    signed_in: bool,
    csrf: String,
    key: KeyRecord,
}

#[derive(Template)]
#[template(path = "dashboard/rotate.html")]
struct RotatePage<'a> {
    signed_in: bool,
    csrf: String,
    key: KeyRecord,
    graces: &'a [(&'a str, &'a str)],
}

fn find(state: &AppState, id: &str) -> Option<KeyRecord> {
    state.store().get(id.parse::<KeyId>().ok()?)
}

fn not_found() -> Response {
    change_failed(ChangeError::NotFound)
}

/// The signed-in session's CSRF token and the active key with this id, for the pages that act
/// on one; else the answer (to sign in, 404, or 409 for a revoked or expired key).
fn active_key(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(String, KeyRecord), Box<Response>> {
    let Some((_, csrf)) = signed_in(state, headers) else {
        return Err(Box::new(to_login()));
    };
    let Some(r) = find(state, id) else {
        return Err(Box::new(not_found()));
    };
    if r.status(state.now()) != KeyStatus::Active {
        return Err(Box::new(change_failed(ChangeError::NotActive)));
    }
    Ok((csrf, r))
}

async fn revoke_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match active_key(&state, &headers, &id) {
        Ok((csrf, key)) => page(&RevokePage {
            signed_in: true,
            csrf,
            key,
        }),
        Err(res) => *res,
    }
}

async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(fields): Form<Fields>,
) -> Response {
    if let Err(refused) = authorize_post(&state, &headers, field(&fields, "csrf")) {
        return refused.into_response();
    }
    let Ok(id) = id.parse::<KeyId>() else {
        return not_found();
    };
    match state
        .core
        .keys
        .revoke(id, state.now(), Source::Dashboard)
        .await
    {
        Ok(_) => Redirect::to(SETTINGS).into_response(),
        Err(e) => change_failed(e),
    }
}

async fn rotate_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match active_key(&state, &headers, &id) {
        Ok((csrf, key)) => page(&RotatePage {
            signed_in: true,
            csrf,
            key,
            graces: &GRACES,
        }),
        Err(res) => *res,
    }
}

async fn rotate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(fields): Form<Fields>,
) -> Response {
    let c = match authorize_post(&state, &headers, field(&fields, "csrf")) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let Ok(id) = id.parse::<KeyId>() else {
        return not_found();
    };
    let grace = match field(&fields, "grace").and_then(|g| GRACES.iter().find(|(v, _)| *v == g)) {
        Some((v, _)) => Duration::from_secs(v.parse().unwrap_or(0)),
        None => {
            return page_with(
                StatusCode::BAD_REQUEST,
                &MessagePage {
                    signed_in: false,
                    csrf: String::new(),
                    heading: "Not done",
                    text: "Choose a grace period for the old key.",
                    back: SETTINGS,
                },
            )
        }
    };
    match state
        .core
        .keys
        .rotate(id, grace, state.now(), Source::Dashboard)
        .await
    {
        Ok(rotated) => {
            state.dashboard.sessions.set_reveal(
                &c,
                Reveal {
                    key: rotated.new.key.expose_secret(),
                    id: rotated.new.record.id().to_string(),
                    name: rotated.new.record.name.clone(),
                },
                state.now(),
            );
            Redirect::to("/dashboard/settings/api/created").into_response()
        }
        Err(e) => change_failed(e),
    }
}

async fn usage_svg(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if signed_in(&state, &headers).is_none() {
        return unauthorized();
    }
    let Some(r) = find(&state, &id) else {
        return not_found();
    };
    let svg = crate::http::usage::chart(&state.core.usage.last_hour(r.id(), state.now()), &r.name);
    ([(CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some(content) = Assets::get(&file) else {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    };
    let kind = match file.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    (
        [(CONTENT_TYPE, kind), (CACHE_CONTROL, "public, max-age=300")],
        Body::from(content.data.into_owned()),
    )
        .into_response()
}

/// Days since the epoch of a `YYYY-MM-DD` date.
fn parse_date(text: &str) -> Option<u64> {
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1970..=9998).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Refuse dates that do not exist (2027-02-30).
    (civil_from_days(days) == (y, m, d))
        .then(|| u64::try_from(days).ok())
        .flatten()
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-11-27 14:05 UTC`.
fn exact(t: UnixTime) -> String {
    let secs = t.as_secs();
    let (y, m, d) = civil_from_days(i64::try_from(secs / DAY).unwrap_or(0));
    let rem = secs % DAY;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// `2026-11-27T14:05:00Z`.
fn iso(t: UnixTime) -> String {
    let secs = t.as_secs();
    let (y, m, d) = civil_from_days(i64::try_from(secs / DAY).unwrap_or(0));
    let rem = secs % DAY;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `3 hours ago`, `in 29 days`, `just now`.
fn relative(t: UnixTime, now: UnixTime) -> String {
    let (secs, future) = if t > now {
        (t.secs_since(now), true)
    } else {
        (now.secs_since(t), false)
    };
    // Rounded to the nearest unit: a key created a few seconds ago for 30 days expires "in 30
    // days", not 29.
    let amount = match secs {
        0..=59 => {
            return if future {
                "in under a minute".into()
            } else {
                "just now".into()
            }
        }
        60..=3569 => plural((secs + 30) / 60, "minute"),
        3570..=84_599 => plural((secs + 1800) / 3600, "hour"),
        _ => plural((secs + DAY / 2) / DAY, "day"),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_read_as_people_write_them() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2027-01-31"), Some(20_849));
        assert_eq!(parse_date("2027-02-30"), None);
        assert_eq!(parse_date("27-01-31"), None);
        assert_eq!(parse_date("nonsense"), None);
        let t = UnixTime::from_secs(1_800_000_000);
        assert_eq!(exact(t), "2027-01-15 08:00 UTC");
        assert_eq!(iso(t), "2027-01-15T08:00:00Z");
        assert_eq!(relative(t, t.plus_secs(7200)), "2 hours ago");
        assert_eq!(relative(t.plus_secs(30 * DAY), t), "in 30 days");
        assert_eq!(relative(t.plus_secs(30 * DAY - 5), t), "in 30 days");
        assert_eq!(relative(t, t.plus_secs(3599)), "1 hour ago");
        assert_eq!(relative(t, t.plus_secs(10)), "just now");
    }
}
