//! Copying core's wire answer onto `http` responses. Every status, header value and body comes
//! from `sitequest-auth`; this module only puts them on a response.

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use sitequest_auth::{Denial, Realm, UnixTime};

/// A JSON response with the given status and static body.
pub(crate) fn json_response<B: From<&'static str>>(
    status: StatusCode,
    body: &'static str,
) -> Response<B> {
    let mut res = Response::new(B::from(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The full response for a denial: status, JSON body, and its headers, all as core renders them.
pub(crate) fn denial_response<B: From<&'static str>>(
    denial: &Denial,
    realm: &Realm,
    now: UnixTime,
) -> Response<B> {
    let mut res = json_response(denial.status_code(), denial.body());
    denial.insert_headers(realm, now, res.headers_mut());
    res
}

/// The response for a handler that asked for the key on a route without the layer.
#[cfg(feature = "axum")]
pub(crate) fn missing_layer<B: From<&'static str>>() -> Response<B> {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        sitequest_auth::ErrorCode::Internal.json(),
    )
}
