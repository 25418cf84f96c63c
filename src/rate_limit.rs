//! What a rate-limit check reports: [`RateLimit`], the window's state for the `X-RateLimit-*`
//! headers, and [`LimitDecision`], allowed or limited.

use crate::time::UnixTime;

/// The state of a key's current window, as reported in the `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Requests allowed per window (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Requests left in the current window (`X-RateLimit-Remaining`).
    pub remaining: u32,
    /// When the window resets (`X-RateLimit-Reset`).
    pub reset_at: UnixTime,
    /// Length of the key's windows in seconds.
    pub period_secs: u32,
    /// Whose window this is: a key's, or a client address's for requests without a valid key.
    pub policy: LimitPolicy,
}

/// Whose window a [`RateLimit`] describes, named in the `RateLimit-Policy` and `RateLimit`
/// fields. One byte, so that a refusal carrying a window stays as small as it was without one
/// (every refusal is returned by value on the hot path).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitPolicy {
    /// A key's window: `"default"`.
    #[default]
    Key,
    /// A client address's window for requests that carry no valid key: `"unauthenticated"`.
    Unauthenticated,
    /// A client address's window of requests that revoke keys by presenting them:
    /// `"key-revocation"`.
    KeyRevocation,
}

impl LimitPolicy {
    /// The policy's name in the IETF fields.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Key => "default",
            Self::Unauthenticated => "unauthenticated",
            Self::KeyRevocation => "key-revocation",
        }
    }
}

impl RateLimit {
    /// A key's window under `quota` holding `count` requests and ending at `reset_at` (32-bit
    /// seconds, as the limiters keep it).
    #[inline(always)]
    pub(crate) fn of_key(quota: crate::Quota, count: u32, reset_at: u32) -> Self {
        Self {
            limit: quota.limit(),
            remaining: quota.limit().saturating_sub(count),
            reset_at: UnixTime::from_secs(u64::from(reset_at)),
            period_secs: quota.period_secs(),
            policy: LimitPolicy::Key,
        }
    }

    /// Seconds from `now` until the window resets (zero if it already has).
    #[must_use]
    pub const fn seconds_to_reset(&self, now: UnixTime) -> u64 {
        self.reset_at.secs_since(now)
    }
}

/// The limiter's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "a rate-limit check must be acted on"]
pub enum LimitDecision {
    /// The request fits in the window and was counted.
    Allowed(RateLimit),
    /// The window is used up; the request was not counted.
    Limited(RateLimit),
}

impl LimitDecision {
    /// The window's state after this check.
    #[must_use]
    pub const fn rate_limit(&self) -> RateLimit {
        match self {
            Self::Allowed(r) | Self::Limited(r) => *r,
        }
    }

    /// Whether the request was allowed.
    #[must_use]
    pub const fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed(_))
    }
}
