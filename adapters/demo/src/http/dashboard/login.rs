//! Sign-in with the admin token, sign-out, and `/dashboard`.

use super::*;

#[derive(Template)]
#[template(path = "dashboard/login.html")]
pub(super) struct LoginPage {
    signed_in: bool,
    csrf: String,
    error: Option<&'static str>,
    /// Where to go once signed in (a consent page of this server), if not the settings.
    next: Option<String>,
}

/// Where a sign-in continues: an OAuth consent page of this server (the only page that sends
/// people to sign in with somewhere to come back to), else the settings. Anything else is
/// ignored, so the field cannot send anyone off the server.
pub(super) fn next_page(next: Option<&str>) -> Option<String> {
    next.filter(|n| {
        n.len() <= 8 * 1024
            && n.strip_prefix(crate::http::oauth::AUTHORIZE)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('?'))
            && n.bytes().all(|b| b.is_ascii_graphic())
            && !n.contains('\\')
    })
    .map(str::to_owned)
}

#[derive(Template)]
#[template(path = "dashboard/home.html")]
pub(super) struct HomePage {
    signed_in: bool,
    csrf: String,
}

pub(super) async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers) {
        Some((_, csrf)) => page(&HomePage {
            signed_in: true,
            csrf,
        }),
        None => to_login(),
    }
}

pub(super) async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let next = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(name, _)| name == "next")
            .and_then(|(_, v)| next_page(Some(&v)))
    });
    if signed_in(&state, &headers).is_some() {
        return Redirect::to(next.as_deref().unwrap_or(SETTINGS)).into_response();
    }
    page(&LoginPage {
        signed_in: false,
        csrf: String::new(),
        error: None,
        next,
    })
}

pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    if !same_origin(&state, &headers) {
        return forbidden();
    }
    // The token is compared first, so that nobody sharing the admin's address (or a proxy that
    // is not trusted) can lock the admin out: the right token always signs in, and only wrong
    // tokens count in the address's quota of requests without a valid key (past it they are
    // answered 429). Guessing gains nothing from this: a token has at least 16 characters, and
    // a generated one 256 random bits.
    let now = state.now();
    let next = next_page(field(&fields, "next"));
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
                    next,
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
                next,
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
    let mut res = Redirect::to(next.as_deref().unwrap_or(SETTINGS)).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(SET_COOKIE, v);
    }
    res
}

pub(super) async fn logout(State(state): State<AppState>, form: CheckedForm) -> Response {
    state.dashboard.sessions.close(&form.cookie);
    let mut res = Redirect::to(LOGIN).into_response();
    res.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static(
            "sq_dashboard=; HttpOnly; SameSite=Strict; Path=/dashboard; Max-Age=0",
        ),
    );
    res
}
