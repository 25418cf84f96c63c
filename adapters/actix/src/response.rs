//! Copying core's wire answer onto actix responses. Every status, header value and body comes
//! from `sitequest-auth`; this module only puts them on a response (actix-web 4 speaks `http`
//! 0.2, so core's `http` feature, which is `http` 1, does not apply here).

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use sitequest_auth::{Denial, ErrorCode, RateLimit, RateLimitField, Realm, UnixTime};

/// The actix name of a rate-limit field.
fn field_name(field: RateLimitField) -> HeaderName {
    HeaderName::from_static(match field {
        RateLimitField::Limit => "x-ratelimit-limit",
        RateLimitField::Remaining => "x-ratelimit-remaining",
        RateLimitField::Reset => "x-ratelimit-reset",
        RateLimitField::Policy => "ratelimit-policy",
        _ => "ratelimit",
    })
}

/// Sets the five rate-limit fields of a grant, rendered by core without allocating.
pub(crate) fn insert_rate_limit(headers: &mut HeaderMap, rate: &RateLimit, now: UnixTime) {
    rate.for_each_field(now, |field, value| {
        let value = match value.as_static() {
            Some(s) => Ok(HeaderValue::from_static(s)),
            None => HeaderValue::from_bytes(value.as_bytes()),
        };
        // Core renders printable ASCII only, so the conversion succeeds.
        if let Ok(value) = value {
            headers.insert(field_name(field), value);
        }
    });
}

/// A JSON response with the given status and static body.
fn json_response(status: u16, body: &'static str) -> HttpResponse<&'static str> {
    // Core's statuses are all valid.
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = HttpResponse::with_body(status, body);
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The full response for a denial: status, JSON body, and its headers, all as core renders them.
pub(crate) fn denial_response(
    denial: &Denial,
    realm: &Realm,
    now: UnixTime,
) -> HttpResponse<&'static str> {
    let mut res = json_response(denial.status(), denial.body());
    for (name, value) in denial.headers(realm, now) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::try_from(value),
        ) {
            res.headers_mut().insert(name, value);
        }
    }
    res
}

/// The response for a handler that asked for the key on a route without the middleware.
pub(crate) fn missing_middleware() -> HttpResponse<&'static str> {
    let code = ErrorCode::Internal;
    json_response(code.status(), code.json())
}
