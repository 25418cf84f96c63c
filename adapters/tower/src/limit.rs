//! Limiters that live outside the process, such as one shared by several servers.

use std::future::Future;
use std::pin::Pin;

use sitequest_auth::{KeyId, LimitDecision, Quota};

/// The future returned by [`AsyncLimiter::check`].
pub type LimitFuture<'a> =
    Pin<Box<dyn Future<Output = Result<LimitDecision, LimiterUnavailable>> + Send + 'a>>;

/// A rate limiter that answers asynchronously, with the semantics of
/// [`RateLimiter::check`](sitequest_auth::RateLimiter::check): count one request of `key` under
/// `quota` at `now` if its window has room.
pub trait AsyncLimiter: Send + Sync + 'static {
    /// Counts one request, or says the limiter cannot be reached (the layer then answers 503).
    fn check(&self, key: KeyId, quota: Quota, now: u64) -> LimitFuture<'_>;
}

/// The limiter could not decide (for example its backend is down and it fails closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limiter unavailable: {reason}")]
pub struct LimiterUnavailable {
    /// What went wrong, for logs.
    pub reason: String,
}
