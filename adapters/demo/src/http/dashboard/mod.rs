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

mod assets;
mod auth;
mod chart;
mod consent;
mod created;
mod dates;
mod login;
mod revoke;
mod rotate;
mod settings;

use assets::*;
use auth::*;
use chart::*;
use consent::*;
use created::*;
use dates::*;
use login::*;
use revoke::*;
use rotate::*;
use settings::*;

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

use crate::http::session::{self, Reveal};
use crate::http::state::AppState;
use crate::service::{ActivityRead, ChangeError, Source};

/// The settings page.
pub const SETTINGS: &str = "/dashboard/settings/api";

const LOGIN: &str = "/dashboard/login";

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
        .route(
            "/dashboard/settings/api/keys/{id}/usage-detail.svg",
            get(usage_detail_svg),
        )
        .route("/dashboard/settings/api/keys/{id}/usage", get(usage_page))
        .route("/dashboard/settings/api/windows", get(windows))
        .route("/dashboard/assets/{file}", get(asset))
        .route(
            crate::http::oauth::AUTHORIZE,
            get(consent_page).post(consent),
        )
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
    let retry = match e {
        ChangeError::NotShared => Some(crate::service::RETRY_UNSHARED_SECS),
        ChangeError::Db(_) => Some(1),
        _ => None,
    };
    let mut res = page_with(
        status,
        &MessagePage {
            signed_in: false,
            csrf: String::new(),
            heading: "Not done",
            text,
            back: SETTINGS,
        },
    );
    if let Some(secs) = retry {
        res.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
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
