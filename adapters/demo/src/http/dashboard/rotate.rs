//! Rotating a key, with a grace for the old one.

use super::*;

pub(super) const GRACES: [(&str, &str); 4] = [
    (
        "0",
        "None: the old key stops at once (for a key that leaked)",
    ),
    ("3600", "1 hour"),
    ("86400", "24 hours"),
    ("604800", "7 days"),
];

/// The grace chosen unless the person picks another: a day, so that clients still on the old
/// key keep working while they are moved to the new one.
pub(super) const DEFAULT_GRACE: &str = "86400";

#[derive(Template)]
#[template(path = "dashboard/rotate.html")]
pub(super) struct RotatePage<'a> {
    signed_in: bool,
    csrf: String,
    key: KeyRecord,
    graces: &'a [(&'a str, &'a str)],
    default_grace: &'a str,
}

pub(super) async fn rotate_page(
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
            default_grace: DEFAULT_GRACE,
        }),
        Err(res) => *res,
    }
}

pub(super) async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CheckedForm { cookie: c, fields }: CheckedForm,
) -> Response {
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
        Ok(rotation) => {
            let rotated = rotation.rotated;
            state.dashboard.sessions.set_reveal(
                &c,
                Reveal {
                    key: rotated.new.key.expose_secret(),
                    id: rotated.new.record.id().to_string(),
                    name: rotated.new.record.name.clone(),
                },
                state.now(),
            );
            if rotation.old_key_shared {
                Redirect::to("/dashboard/settings/api/created").into_response()
            } else {
                Redirect::to("/dashboard/settings/api/created?old_key=not_shared").into_response()
            }
        }
        Err(e) => change_failed(e),
    }
}
