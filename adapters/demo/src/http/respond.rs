//! The answers every surface shares: the spec's JSON errors, the refusals of a key change, the
//! 429 of a client address past its quota, the JSON 404 and 405, and the security headers of
//! every answer.

use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sitequest_auth::{ErrorCode, RateLimit, UnixTime};

use crate::service::{ChangeError, DbError};

/// A JSON error `{"error": message, "code": code, "status": status}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": message, "code": code, "status": status.as_u16()})),
    )
        .into_response()
}

/// A 400 `INVALID_REQUEST` with `message`.
pub(crate) fn invalid(message: impl std::fmt::Display) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        &message.to_string(),
    )
}

/// The 404 of a key id that names no key.
pub(crate) fn no_such_key() -> Response {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", "No key with this id")
}

/// The answer to a key change the service refused, or could not save or share.
pub(crate) fn change_refused(e: ChangeError) -> Response {
    match e {
        ChangeError::NotFound => no_such_key(),
        ChangeError::NotActive => error(
            StatusCode::CONFLICT,
            "KEY_NOT_ACTIVE",
            "The key is revoked or expired",
        ),
        ChangeError::Invalid(e) => invalid(e),
        ChangeError::Db(DbError::Busy) => {
            tracing::warn!("admin change refused: the data file queue is full");
            let mut res = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "The data file is busy; try again",
            );
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
        ChangeError::NotShared => not_shared(),
        ChangeError::Db(e) => {
            tracing::error!(error = %e, "data file write failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Could not save the change",
            )
        }
    }
}

/// The 503 of a change saved and in force on this instance but not yet confirmed shared with
/// the others: `Retry-After` says when asking again may succeed.
pub(crate) fn not_shared() -> Response {
    let mut res = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
        "The change is saved on this instance but the other instances could not be told yet; \
         it is retried until they are: send it again",
    );
    res.headers_mut().insert(
        RETRY_AFTER,
        HeaderValue::from(crate::service::RETRY_UNSHARED_SECS),
    );
    res
}

/// The spec's 429 for a client address past its window, with the window's headers and
/// `Retry-After`.
pub fn too_many(window: &RateLimit, now: UnixTime) -> Response {
    let mut res = with_window(
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("content-type", "application/json")],
            ErrorCode::RateLimited.json(),
        )
            .into_response(),
        window,
        now,
    );
    let wait = window.seconds_to_reset(now).max(1);
    res.headers_mut()
        .insert("retry-after", HeaderValue::from(wait));
    res
}

pub(crate) fn with_window(mut res: Response, window: &RateLimit, now: UnixTime) -> Response {
    window.insert_headers(now, res.headers_mut());
    res
}

/// The JSON 404 for paths that match no route.
pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", "No such route")
}

/// The JSON 405 for a route that exists with other methods.
pub async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "Method not allowed on this route",
    )
}

/// The headers of every response of the server (the dashboard's pages need them; the JSON of the
/// API and the 404s and 405s of paths under `/dashboard` are none the worse for them).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // A page that sets its own policy (the OAuth consent page, whose form may answer with a
    // redirect to the client) keeps it.
    if !h.contains_key("content-security-policy") {
        h.insert(
            "content-security-policy",
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                 connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
        );
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}
