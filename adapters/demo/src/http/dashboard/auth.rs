//! Who may use the dashboard: the session cookie, the signed-in extractor, and the checks of
//! every state-changing form (its `Origin` and CSRF token) as an extractor.

use super::*;

/// The session cookie's value, if the request has one.
pub(super) fn cookie(headers: &HeaderMap) -> Option<String> {
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
pub(super) fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<(String, String)> {
    let c = cookie(headers)?;
    let csrf = state.dashboard.sessions.csrf(&c, state.now())?;
    Some((c, csrf))
}

/// The origin pages of this server are served from: the public URL's, else `http://<Host>`.
pub(super) fn own_origin(state: &AppState, headers: &HeaderMap) -> Option<String> {
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
pub(super) fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match value(ORIGIN.as_str()) {
        Some("null") | None => value("sec-fetch-site") == Some("same-origin"),
        Some(origin) => own_origin(state, headers).is_some_and(|own| own == origin),
    }
}

pub(super) fn forbidden() -> Response {
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
pub(super) fn authorize_post(
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
pub(super) enum Refused {
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

pub(super) fn unauthorized() -> Response {
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

pub(super) fn to_login() -> Response {
    Redirect::to(LOGIN).into_response()
}

/// A signed-in session, as an extractor: the cookie and the page's CSRF token. Without one, the
/// request is sent to the sign-in page.
pub(super) struct SignedIn {
    /// The session cookie's value.
    pub(super) cookie: String,
    /// The session's CSRF token, for the page's forms.
    pub(super) csrf: String,
}

impl axum::extract::FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        match signed_in(state, &parts.headers) {
            Some((cookie, csrf)) => Ok(Self { cookie, csrf }),
            None => Err(to_login()),
        }
    }
}

/// A state-changing form, as an extractor: its fields, once its `Origin` is this server's and it
/// carries the session's CSRF token; the session's cookie. Otherwise [`Refused`]'s answer.
pub(super) struct CheckedForm {
    /// The session cookie's value.
    pub(super) cookie: String,
    /// The form's fields.
    pub(super) fields: Fields,
}

impl axum::extract::FromRequest<AppState> for CheckedForm {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let Form(fields) = Form::<Fields>::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let cookie = authorize_post(state, &headers, field(&fields, "csrf"))
            .map_err(IntoResponse::into_response)?;
        Ok(Self { cookie, fields })
    }
}
