//! A key's usage chart of the last hour, as SVG.

use super::*;

pub(super) async fn usage_svg(
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
