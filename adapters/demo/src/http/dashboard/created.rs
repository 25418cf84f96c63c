//! The page that shows a new key, once.

use super::*;

#[derive(Template)]
#[template(path = "dashboard/created.html")]
pub(super) struct CreatedPage {
    signed_in: bool,
    csrf: String,
    keys: Vec<Reveal>,
    base_url: String,
}

pub(super) async fn created(
    State(state): State<AppState>,
    headers: HeaderMap,
    SignedIn { cookie: c, csrf }: SignedIn,
) -> Response {
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
