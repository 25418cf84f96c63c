//! The public error codes of the spec and their JSON bodies.

use core::fmt;

/// The error codes a client can receive, with their HTTP status and JSON body.
///
/// Every body has exactly the spec's shape, `{"error": ..., "code": ..., "status": ...}`:
///
/// ```
/// use sitequest_auth::ErrorCode;
/// assert_eq!(
///     ErrorCode::Unauthorized.json(),
///     r#"{"error":"Invalid or missing API key","code":"UNAUTHORIZED","status":401}"#
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 401: missing, invalid, revoked, or expired API key.
    Unauthorized,
    /// 403: the API key lacks the required scope(s).
    InsufficientScope,
    /// 429: too many requests.
    RateLimited,
    /// 403: the key may not be used from the client's address (its allowlist).
    IpNotAllowed,
    /// 503: the rate limiter (an [`AsyncLimiter`](crate::AsyncLimiter) outside the process)
    /// could not decide, and the host fails closed.
    ServiceUnavailable,
    /// 500: the host is set up wrong. An adapter answers it when a handler asks for the
    /// authenticated key on a route its middleware does not guard.
    Internal,
}

impl ErrorCode {
    /// The HTTP status code.
    #[must_use]
    pub const fn status(self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::InsufficientScope => 403,
            Self::RateLimited => 429,
            Self::IpNotAllowed => 403,
            Self::ServiceUnavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The `code` field: `UNAUTHORIZED`, `INSUFFICIENT_SCOPE`, `RATE_LIMITED`,
    /// `IP_NOT_ALLOWED`, `SERVICE_UNAVAILABLE` or `INTERNAL`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "UNAUTHORIZED",
            Self::InsufficientScope => "INSUFFICIENT_SCOPE",
            Self::RateLimited => "RATE_LIMITED",
            Self::IpNotAllowed => "IP_NOT_ALLOWED",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }

    /// The `error` field, a message for people. The same for every 401, whatever its cause.
    #[must_use]
    pub const fn message(self) -> &'static str {
        match self {
            Self::Unauthorized => "Invalid or missing API key",
            Self::InsufficientScope => "API key lacks the required scope(s)",
            Self::RateLimited => "Too many requests",
            Self::IpNotAllowed => "API key not allowed from this address",
            Self::ServiceUnavailable => "Rate limiter unavailable",
            Self::Internal => "Authentication layer missing on this route",
        }
    }

    /// The whole JSON body, compact, with the fields in the spec's order.
    #[must_use]
    pub const fn json(self) -> &'static str {
        match self {
            Self::Unauthorized => {
                r#"{"error":"Invalid or missing API key","code":"UNAUTHORIZED","status":401}"#
            }
            Self::InsufficientScope => {
                r#"{"error":"API key lacks the required scope(s)","code":"INSUFFICIENT_SCOPE","status":403}"#
            }
            Self::RateLimited => {
                r#"{"error":"Too many requests","code":"RATE_LIMITED","status":429}"#
            }
            Self::IpNotAllowed => {
                r#"{"error":"API key not allowed from this address","code":"IP_NOT_ALLOWED","status":403}"#
            }
            Self::ServiceUnavailable => {
                r#"{"error":"Rate limiter unavailable","code":"SERVICE_UNAVAILABLE","status":503}"#
            }
            Self::Internal => {
                r#"{"error":"Authentication layer missing on this route","code":"INTERNAL","status":500}"#
            }
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body must be what `json` says it is, field for field.
    #[test]
    fn json_bodies_match_their_parts() {
        for code in [
            ErrorCode::Unauthorized,
            ErrorCode::InsufficientScope,
            ErrorCode::RateLimited,
            ErrorCode::IpNotAllowed,
            ErrorCode::ServiceUnavailable,
            ErrorCode::Internal,
        ] {
            let v: serde_json::Value = serde_json::from_str(code.json()).unwrap();
            assert_eq!(
                v,
                serde_json::json!({
                    "error": code.message(),
                    "code": code.as_str(),
                    "status": code.status(),
                })
            );
            assert_eq!(v.as_object().unwrap().len(), 3);
        }
    }

    #[test]
    fn spec_example_body() {
        let v: serde_json::Value = serde_json::from_str(ErrorCode::Unauthorized.json()).unwrap();
        let spec: serde_json::Value = serde_json::from_str(
            "{\n\"error\": \"Invalid or missing API key\",\n\"code\": \"UNAUTHORIZED\",\n\"status\": 401\n}",
        )
        .unwrap();
        assert_eq!(v, spec);
        assert_eq!(ErrorCode::InsufficientScope.status(), 403);
        assert_eq!(ErrorCode::RateLimited.as_str(), "RATE_LIMITED");
    }
}
