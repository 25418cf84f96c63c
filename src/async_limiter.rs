//! Limiters that live outside the process, such as one shared by several servers: the trait a
//! backend implements, so that it depends on this crate alone.
//!
//! Nothing here needs a runtime: a check returns a boxed future that the host's runtime polls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::digest::KeyId;
use crate::quota::Quota;
use crate::rate_limit::LimitDecision;
use crate::time::UnixTime;

/// How long an adapter waits for an [`AsyncLimiter`] before it answers the 503 of
/// [`Denial::limiter_unavailable`](crate::Denial::limiter_unavailable), unless the host sets
/// another deadline: one second.
pub const LIMITER_TIMEOUT: Duration = Duration::from_secs(1);

/// The future returned by [`AsyncLimiter::check`].
pub type LimitFuture<'a> =
    Pin<Box<dyn Future<Output = Result<LimitDecision, LimiterUnavailable>> + Send + 'a>>;

/// A rate limiter that answers asynchronously, with the semantics of
/// [`RateLimiter::check`](crate::RateLimiter::check): count one request of `key` under `quota`
/// at `now` if its window has room.
///
/// A host authenticates with [`Authorizer::authenticate`](crate::Authorizer::authenticate),
/// awaits the check, and finishes with [`Authorizer::decide`](crate::Authorizer::decide), or
/// refuses with [`Denial::limiter_unavailable`](crate::Denial::limiter_unavailable) when the
/// limiter cannot answer.
///
/// # Bounded time
///
/// A check must finish in bounded time: a backend that waits on the network answers
/// [`LimiterUnavailable`] once its own deadline passes (as `sitequest-auth-redis`'s limiter does
/// after 250 ms). The adapters of this project also stop waiting after a deadline of their own
/// ([`LIMITER_TIMEOUT`] unless the host sets another) and answer the 503, so a limiter that
/// never answers cannot hold requests, connections and file descriptors forever.
pub trait AsyncLimiter: Send + Sync + 'static {
    /// Counts one request, or says the limiter cannot decide. The limiter comes by `Arc` so the
    /// future owns what it needs: an adapter can keep it in its own response future, without
    /// boxing anything else or borrowing from the limiter.
    fn check(self: Arc<Self>, key: KeyId, quota: Quota, now: UnixTime) -> LimitFuture<'static>;
}

/// Polls an outside limiter's answer against a deadline: the answer when it is ready, else
/// [`LimiterUnavailable`] once `deadline` (any future that completes when the time is up, such
/// as the host runtime's sleep) has completed. The one rule every adapter applies, without a
/// runtime of its own.
///
/// ```
/// use std::future::{pending, ready, Future};
/// use std::pin::pin;
/// use std::task::{Context, Poll, Waker};
/// use sitequest_auth::{poll_limit, LimitFuture};
/// let mut cx = Context::from_waker(Waker::noop());
/// let mut never: LimitFuture<'static> = Box::pin(pending());
/// // The deadline has not passed: still waiting.
/// assert!(poll_limit(&mut never, pin!(pending::<()>()), &mut cx).is_pending());
/// // It has: the limiter is unavailable.
/// assert!(matches!(poll_limit(&mut never, pin!(ready(())), &mut cx), Poll::Ready(Err(_))));
/// ```
pub fn poll_limit(
    limit: &mut LimitFuture<'_>,
    deadline: Pin<&mut impl Future<Output = ()>>,
    cx: &mut Context<'_>,
) -> Poll<Result<LimitDecision, LimiterUnavailable>> {
    if let Poll::Ready(answer) = limit.as_mut().poll(cx) {
        return Poll::Ready(answer);
    }
    match deadline.poll(cx) {
        Poll::Ready(()) => Poll::Ready(Err(LimiterUnavailable {
            reason: "no answer before the deadline".to_owned(),
        })),
        Poll::Pending => Poll::Pending,
    }
}

/// The limiter could not decide (for example its backend is down and it fails closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limiter unavailable: {reason}")]
pub struct LimiterUnavailable {
    /// What went wrong, for logs. Never sent to the client.
    pub reason: String,
}
