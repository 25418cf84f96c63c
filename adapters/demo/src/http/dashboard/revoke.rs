//! Revoking a key, with a confirmation page.

use super::*;

#[derive(Template)]
#[template(path = "dashboard/revoke.html")]
pub(super) struct RevokePage {
    signed_in: bool,
    csrf: String,
    key: KeyRecord,
}

pub(super) async fn revoke_page(
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

pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: CheckedForm,
) -> Response {
    let Ok(id) = id.parse::<KeyId>() else {
        return not_found();
    };
    match state
        .core
        .keys
        .revoke(id, state.now(), Source::Dashboard)
        .await
    {
        // To the list, at the revoked key's row, with a confirmation above the list.
        Ok(_) => Redirect::to(&format!("{SETTINGS}?revoked={id}#key-{id}")).into_response(),
        Err(e) => change_failed(e),
    }
}
