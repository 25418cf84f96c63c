//! Copying core's wire answer onto `http` responses. Every header value and body comes from
//! `sitequest-auth`; this module only converts them.

use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use sitequest_auth::{header, Denial, ErrorCode, Header, RateLimit, Realm, UnixTime};

/// The `http` name of a header core renders, without parsing the common ones.
fn name(n: &'static str) -> Option<HeaderName> {
    Some(match n {
        header::X_RATELIMIT_LIMIT => HeaderName::from_static("x-ratelimit-limit"),
        header::X_RATELIMIT_REMAINING => HeaderName::from_static("x-ratelimit-remaining"),
        header::X_RATELIMIT_RESET => HeaderName::from_static("x-ratelimit-reset"),
        header::RATELIMIT_POLICY => HeaderName::from_static("ratelimit-policy"),
        header::RATELIMIT => HeaderName::from_static("ratelimit"),
        header::RETRY_AFTER => RETRY_AFTER,
        header::WWW_AUTHENTICATE => WWW_AUTHENTICATE,
        other => return HeaderName::from_bytes(other.as_bytes()).ok(),
    })
}

/// Inserts headers rendered by core into `headers`.
pub fn insert_headers(headers: &mut HeaderMap, rendered: Vec<Header>) {
    for (n, value) in rendered {
        // Core renders printable ASCII only, so both conversions succeed.
        if let (Some(n), Ok(v)) = (name(n), HeaderValue::try_from(value)) {
            headers.insert(n, v);
        }
    }
}

/// Inserts the rate-limit fields of a known key into `headers` (see
/// [`RateLimit::headers`](sitequest_auth::RateLimit::headers)).
pub fn insert_rate_limit_headers(headers: &mut HeaderMap, r: &RateLimit, now: UnixTime) {
    insert_headers(headers, r.headers(now));
}

/// A JSON response with the given status and static body.
pub fn json_response<B: From<&'static str>>(status: StatusCode, body: &'static str) -> Response<B> {
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
    insert_headers(res.headers_mut(), denial.headers(realm, now));
    res
}

/// The body of a 503 answered when the shared rate limiter cannot be reached.
pub const UNAVAILABLE: &str = ErrorCode::ServiceUnavailable.json();
