//! What an authorization decides: a [`Grant`] or a [`Denial`] with its [`DenialReason`], and
//! the [`Authenticated`] key between the two steps of a decision made with an outside limiter.

use crate::bearer::BearerError;
use crate::digest::KeyId;
use crate::error::ErrorCode;
use crate::quota::Quota;
use crate::rate_limit::RateLimit;
use crate::scope::Scopes;

/// An active key, found by [`Authorizer::authenticate`](crate::Authorizer::authenticate).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authenticated {
    /// The key's id.
    pub key_id: KeyId,
    /// All the scopes the key holds.
    pub scopes: Scopes,
    /// The key's quota: its own, or the authorizer's default.
    pub quota: Quota,
    /// The id whose window the key's requests count in: its own, or, for the replacement made
    /// by a rotation, the rotated key's, so that both draw from one window. Pass it to a
    /// limiter of the host's own.
    pub limit_id: KeyId,
}

/// The outcome of [`Authorizer::authorize`](crate::Authorizer::authorize).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request must be refused unless it was granted"]
pub enum Decision {
    /// Serve the request.
    Granted(Grant),
    /// Refuse it with [`Denial::status`] and [`Denial::body`].
    Denied(Denial),
}

impl Decision {
    /// `Ok` for a grant, `Err` for a denial.
    pub fn into_result(self) -> Result<Grant, Denial> {
        match self {
            Self::Granted(g) => Ok(g),
            Self::Denied(d) => Err(d),
        }
    }

    /// Whether the request was granted.
    #[must_use]
    pub fn is_granted(&self) -> bool {
        matches!(self, Self::Granted(_))
    }

    /// The HTTP status: 200 for a grant (the handler may choose another 2xx), else the denial's.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::Granted(_) => 200,
            Self::Denied(d) => d.status(),
        }
    }
}

/// A granted request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The key that made the request.
    pub key_id: KeyId,
    /// All the scopes the key holds.
    pub scopes: Scopes,
    /// The key's window after counting this request.
    pub rate_limit: RateLimit,
}

/// Why a request was refused: for the host's logs and metrics, never for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenialReason {
    /// No `Authorization` header.
    MissingHeader,
    /// The header is not `Bearer` and a well-formed key.
    Malformed(BearerError),
    /// A well-formed key that is not in the store.
    UnknownKey,
    /// A revoked key.
    Revoked(KeyId),
    /// An expired key.
    Expired(KeyId),
    /// The key lacks some required scopes.
    InsufficientScope {
        /// The key.
        key_id: KeyId,
        /// The required scopes it does not hold.
        missing: Scopes,
    },
    /// The key's window is used up.
    RateLimited(KeyId),
    /// The key is valid, but the outside rate limiter could not decide.
    LimiterUnavailable(KeyId),
    /// The key is valid, but its allowlist does not hold the client's address (or the host did
    /// not name it). Not counted against the key's window.
    AddressNotAllowed(KeyId),
    /// The client's address used up its quota of requests without a valid key; refused before
    /// any hashing.
    AddressRateLimited,
}

impl DenialReason {
    /// A short stable label for logs and metrics: `missing`, `malformed`, `unknown`, `revoked`,
    /// `expired`, `insufficient_scope`, `rate_limited`, `limiter_unavailable`,
    /// `ip_not_allowed` or `address_rate_limited`.
    #[must_use]
    pub const fn label(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing",
            Self::Malformed(_) => "malformed",
            Self::UnknownKey => "unknown",
            Self::Revoked(_) => "revoked",
            Self::Expired(_) => "expired",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::RateLimited(_) => "rate_limited",
            Self::LimiterUnavailable(_) => "limiter_unavailable",
            Self::AddressNotAllowed(_) => "ip_not_allowed",
            Self::AddressRateLimited => "address_rate_limited",
        }
    }

    /// The id of the key, when the key was found in the store.
    #[must_use]
    pub const fn key_id(&self) -> Option<KeyId> {
        match *self {
            Self::Revoked(id)
            | Self::Expired(id)
            | Self::RateLimited(id)
            | Self::LimiterUnavailable(id)
            | Self::AddressNotAllowed(id) => Some(id),
            Self::InsufficientScope { key_id, .. } => Some(key_id),
            Self::MissingHeader
            | Self::Malformed(_)
            | Self::UnknownKey
            | Self::AddressRateLimited => None,
        }
    }
}

/// A refused request: everything needed to answer the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    pub(crate) reason: DenialReason,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) retry_after: Option<u64>,
}

impl Denial {
    /// The refusal of an authenticated request whose outside limiter (an
    /// [`AsyncLimiter`](crate::AsyncLimiter)) could not decide: `503 SERVICE_UNAVAILABLE` with
    /// `Retry-After: 1`, for hosts that fail closed.
    #[must_use]
    pub const fn limiter_unavailable(key: &Authenticated) -> Self {
        Self {
            reason: DenialReason::LimiterUnavailable(key.key_id),
            rate_limit: None,
            retry_after: Some(1),
        }
    }

    /// The internal reason, for logs and metrics. Never send it to the client.
    #[must_use]
    pub const fn reason(&self) -> DenialReason {
        self.reason
    }

    /// The public error code.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self.reason {
            DenialReason::InsufficientScope { .. } => ErrorCode::InsufficientScope,
            DenialReason::RateLimited(_) | DenialReason::AddressRateLimited => {
                ErrorCode::RateLimited
            }
            DenialReason::AddressNotAllowed(_) => ErrorCode::IpNotAllowed,
            DenialReason::LimiterUnavailable(_) => ErrorCode::ServiceUnavailable,
            _ => ErrorCode::Unauthorized,
        }
    }

    /// The HTTP status: 401, 403, 429 or 503.
    #[must_use]
    pub const fn status(&self) -> u16 {
        self.code().status()
    }

    /// The `error` message of the body.
    #[must_use]
    pub const fn message(&self) -> &'static str {
        self.code().message()
    }

    /// The JSON body, `{"error": ..., "code": ..., "status": ...}`.
    #[must_use]
    pub const fn body(&self) -> &'static str {
        self.code().json()
    }

    /// The window reported with the refusal: the key's for a 403 `INSUFFICIENT_SCOPE` or a
    /// 429 of the key; the client address's (policy `"unauthenticated"`) for a 401, a 403
    /// `IP_NOT_ALLOWED` or a 429 of the address, when the authorizer counts addresses and the
    /// host named the client's; else `None`.
    #[must_use]
    pub const fn rate_limit(&self) -> Option<RateLimit> {
        self.rate_limit
    }

    /// Seconds the client should wait, for a 429 or a 503.
    #[must_use]
    pub const fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }
}

#[cfg(feature = "http")]
mod http_impls {
    use super::Denial;

    impl Denial {
        /// The status as an [`http::StatusCode`].
        #[must_use]
        pub fn status_code(&self) -> http::StatusCode {
            http::StatusCode::from_u16(self.status()).unwrap_or(http::StatusCode::UNAUTHORIZED)
        }
    }
}
