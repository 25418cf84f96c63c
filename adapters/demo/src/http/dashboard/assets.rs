//! The CSS, JS and icon, embedded in the binary.

use super::*;

/// The dashboard's static files, in the binary.
#[derive(rust_embed::RustEmbed)]
#[folder = "assets/"]
pub(super) struct Assets;

pub(super) async fn asset(Path(file): Path<String>) -> Response {
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
