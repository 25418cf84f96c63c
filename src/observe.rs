//! Watching an adapter's decisions, for metrics: one [`Outcome`] type and one [`Observer`] for
//! every framework adapter.

use std::sync::Arc;

use crate::async_limiter::LimiterUnavailable;
use crate::decision::{Denial, Grant};
use crate::rate_limit::{LimitPolicy, RateLimit};

/// Told about every decision of a framework adapter (the tower layer's and the actix
/// middleware's `with_observer`).
///
/// It is called on the request's path, once per request, before the response is sent: it
/// should only count (an atomic add, a lookup in a small table), never block or wait.
pub type Observer = Arc<dyn Fn(&Outcome<'_>) + Send + Sync>;

/// What a framework adapter decided for one request.
///
/// Borrowed from the layer's own values, so telling an [`Observer`] costs no allocation. Holds
/// no secret: a key appears only by its public id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome<'a> {
    /// Granted: the request goes on to the inner service.
    Granted(&'a Grant),
    /// Refused with a 401, 403 or 429.
    Denied(&'a Denial),
    /// The [`AsyncLimiter`](crate::AsyncLimiter) could not decide; the adapter answered 503.
    Unavailable(&'a LimiterUnavailable),
}

impl Outcome<'_> {
    /// `granted`, `denied` or `unavailable`.
    #[must_use]
    pub const fn label(&self) -> &'static str {
        match self {
            Self::Granted(_) => "granted",
            Self::Denied(_) => "denied",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// Why, as a short stable label: `none` for a grant, the
    /// [`DenialReason::label`](crate::DenialReason::label) of a denial (`missing`,
    /// `malformed`, `unknown`, `revoked`, `expired`, `insufficient_scope`, `rate_limited`,
    /// `ip_not_allowed`, `address_rate_limited`), and
    /// `limiter_unavailable` for a 503.
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Granted(_) => "none",
            Self::Denied(d) => d.reason().label(),
            Self::Unavailable(_) => "limiter_unavailable",
        }
    }

    /// The status the layer gives the request: 200 for a grant (the inner service may answer
    /// another), 401, 403 or 429 for a denial, 503 when the limiter is unavailable.
    #[must_use]
    pub const fn status(&self) -> u16 {
        match self {
            Self::Granted(_) => 200,
            Self::Denied(d) => d.status(),
            Self::Unavailable(_) => 503,
        }
    }

    /// Whether a rate limiter was asked about this request: the key was found active, so the
    /// outcome is a grant, a 403, a 429 or a 503. Refusals of a missing, malformed, unknown,
    /// revoked or expired key are decided before any limiter work.
    #[must_use]
    pub const fn limiter_checked(&self) -> bool {
        match self {
            Self::Granted(_) | Self::Unavailable(_) => true,
            // Only a key found active gets a window of its own; the window of a 401 (or an
            // allowlist's 403) is the client address's.
            Self::Denied(d) => matches!(
                d.rate_limit(),
                Some(RateLimit {
                    policy: LimitPolicy::Key,
                    ..
                })
            ),
        }
    }
}

/// Tells `observer`, if any, about `outcome`: what adapters call at each decision.
#[inline]
pub fn observe(observer: Option<&Observer>, outcome: Outcome<'_>) {
    if let Some(o) = observer {
        o(&outcome);
    }
}
