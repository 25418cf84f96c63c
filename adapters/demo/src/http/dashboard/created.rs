//! The page that shows a new key, once.

use super::*;

#[derive(Template)]
#[template(path = "dashboard/created.html")]
pub(super) struct CreatedPage {
    signed_in: bool,
    csrf: String,
    keys: Vec<Reveal>,
    base_url: String,
    /// Set after a rotation without grace whose old key's end Redis did not confirm in time.
    old_key_not_shared: bool,
}

#[derive(Deserialize, Default)]
pub(super) struct CreatedQuery {
    old_key: Option<String>,
}

pub(super) async fn created(
    State(state): State<AppState>,
    headers: HeaderMap,
    SignedIn { cookie: c, csrf }: SignedIn,
    Query(query): Query<CreatedQuery>,
) -> Response {
    // Shown once: a reload finds nothing and goes back to the list.
    let keys = state.dashboard.sessions.take_reveals(&c, state.now());
    if keys.is_empty() {
        return Redirect::to(SETTINGS).into_response();
    }
    let old_key_not_shared = query.old_key.as_deref() == Some("not_shared");
    let mut res = page(&CreatedPage {
        signed_in: true,
        csrf,
        keys,
        base_url: own_origin(&state, &headers).unwrap_or_default(),
        old_key_not_shared,
    });
    if old_key_not_shared {
        // Not a success: the old key may still be accepted elsewhere.
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        res.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(crate::service::RETRY_UNSHARED_SECS),
        );
    }
    res
}
