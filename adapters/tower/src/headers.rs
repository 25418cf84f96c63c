//! Response headers and JSON error responses.

use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use sitequest_auth::{Denial, ErrorCode, RateLimit};

const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

fn number(n: impl Into<u64>) -> HeaderValue {
    HeaderValue::from(n.into())
}

/// Inserts the rate-limit fields of a known key into `headers`:
/// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`,
/// `RateLimit-Policy: "default";q=<limit>;w=<period>` and
/// `RateLimit: "default";r=<remaining>;t=<seconds to reset>`.
pub fn insert_rate_limit_headers(headers: &mut HeaderMap, r: &RateLimit, now: u64) {
    headers.insert(X_RATELIMIT_LIMIT, number(r.limit));
    headers.insert(X_RATELIMIT_REMAINING, number(r.remaining));
    headers.insert(X_RATELIMIT_RESET, number(r.reset_at));
    // Structured fields (RFC 8941): a string item with integer parameters. Only digits are
    // interpolated, so the values are always valid.
    let policy = format!("\"default\";q={};w={}", r.limit, r.period_secs);
    let state = format!(
        "\"default\";r={};t={}",
        r.remaining,
        r.seconds_to_reset(now)
    );
    if let Ok(v) = HeaderValue::from_str(&policy) {
        headers.insert(RATELIMIT_POLICY, v);
    }
    if let Ok(v) = HeaderValue::from_str(&state) {
        headers.insert(RATELIMIT, v);
    }
}

/// A JSON response with the given status and static body.
pub fn json_response<B: From<&'static str>>(status: StatusCode, body: &'static str) -> Response<B> {
    let mut res = Response::new(B::from(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The full response for a denial: status, JSON body, and its headers.
pub(crate) fn denial_response<B: From<&'static str>>(denial: &Denial, now: u64) -> Response<B> {
    let status = denial.status_code();
    let mut res = json_response(status, denial.body());
    let headers = res.headers_mut();
    if let Some(r) = denial.rate_limit() {
        insert_rate_limit_headers(headers, &r, now);
    }
    if let Some(secs) = denial.retry_after() {
        headers.insert(RETRY_AFTER, number(secs));
    }
    if denial.code() == ErrorCode::Unauthorized {
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}

/// The body of a 503 answered when the shared rate limiter cannot be reached.
pub const UNAVAILABLE: &str = ErrorCode::ServiceUnavailable.json();
