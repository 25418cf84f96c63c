//! A key's usage of the last hour: the chart in the list (SVG), and a page of its own with the
//! detailed chart (axes, readable labels) and the totals.

use super::*;

pub(super) async fn usage_svg(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    svg_of(&state, &headers, &id, crate::http::usage::chart)
}

pub(super) async fn usage_detail_svg(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    svg_of(&state, &headers, &id, crate::http::usage::detail_chart)
}

/// The key's last hour drawn by `draw`, for a signed-in session.
fn svg_of(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    draw: fn(&[[u32; 3]], &str) -> String,
) -> Response {
    if signed_in(state, headers).is_none() {
        return unauthorized();
    }
    let Some(r) = find(state, id) else {
        return not_found();
    };
    let svg = draw(&state.core.usage.last_hour(r.id(), state.now()), &r.name);
    ([(CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

#[derive(Template)]
#[template(path = "dashboard/usage.html")]
pub(super) struct UsagePage {
    signed_in: bool,
    csrf: String,
    name: String,
    id: String,
    last4: String,
    granted: u64,
    forbidden: u64,
    limited: u64,
    window: String,
    chart_url: String,
}

/// `GET /dashboard/settings/api/keys/{id}/usage`: the key's last hour, readable.
pub(super) async fn usage_page(
    State(state): State<AppState>,
    SignedIn { csrf, .. }: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let Some(r) = find(&state, &id) else {
        return not_found();
    };
    let now = state.now();
    let [granted, forbidden, limited] =
        crate::http::usage::totals(&state.core.usage.last_hour(r.id(), now));
    page(&UsagePage {
        signed_in: true,
        csrf,
        name: r.name.clone(),
        id: r.id().to_string(),
        last4: r.last4.as_str().to_owned(),
        granted,
        forbidden,
        limited,
        window: window_text(&state, &r, now),
        chart_url: format!("/dashboard/settings/api/keys/{}/usage-detail.svg", r.id()),
    })
}
