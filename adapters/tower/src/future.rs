//! The response future of [`AuthService`](crate::AuthService): a state machine, as tower-http's
//! `AsyncRequireAuthorization`, so that nothing but the outside limiter's own future is boxed
//! and the inner service is called only once the request is granted.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use sitequest_auth::{poll_limit, LimitFuture, Pending, RateLimit, UnixTime};
use tokio::time::Sleep;
use tower_service::Service;

use crate::layer::AuthLayer;

/// What a request waiting for the outside limiter keeps: the service made ready for it, the
/// request, and what authentication found.
pub(crate) struct Waiting<S, R> {
    pub(crate) inner: S,
    pub(crate) req: Request<R>,
    pub(crate) pending: Pending,
    pub(crate) layer: AuthLayer,
}

pin_project! {
    /// Either the inner service's response with the rate-limit headers added, or the denial,
    /// after the outside limiter's answer when there is one.
    pub struct ResponseFuture<S, R, B>
    where
        S: Service<Request<R>>,
    {
        #[pin]
        kind: Kind<S, R, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, R, B>
    where
        S: Service<Request<R>>,
    {
        Limiting {
            limit: LimitFuture<'static>,
            // The limiter's deadline: past it the request is answered with core's 503.
            #[pin]
            deadline: Sleep,
            waiting: Option<Waiting<S, R>>,
        },
        Granted { #[pin] future: S::Future, rate: RateLimit, now: UnixTime },
        Denied { response: Option<Response<B>> },
    }
}

impl<S, R, B> ResponseFuture<S, R, B>
where
    S: Service<Request<R>>,
{
    pub(crate) fn granted(future: S::Future, rate: RateLimit, now: UnixTime) -> Self {
        Self {
            kind: Kind::Granted { future, rate, now },
        }
    }

    pub(crate) fn denied(response: Response<B>) -> Self {
        Self {
            kind: Kind::Denied {
                response: Some(response),
            },
        }
    }

    pub(crate) fn limiting(
        limit: LimitFuture<'static>,
        deadline: Sleep,
        waiting: Waiting<S, R>,
    ) -> Self {
        Self {
            kind: Kind::Limiting {
                limit,
                deadline,
                waiting: Some(waiting),
            },
        }
    }
}

impl<S, R, B> Future for ResponseFuture<S, R, B>
where
    S: Service<Request<R>, Response = Response<B>>,
    B: From<&'static str>,
{
    type Output = Result<Response<B>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            match kind.as_mut().project() {
                KindProj::Limiting {
                    limit,
                    deadline,
                    waiting,
                } => {
                    let answer = ready!(poll_limit(limit, deadline, cx));
                    let w = waiting
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let now = w.pending.now();
                    match crate::layer::after_limit(w, answer) {
                        Ok((future, rate)) => kind.set(Kind::Granted { future, rate, now }),
                        Err(response) => return Poll::Ready(Ok(response)),
                    }
                }
                KindProj::Granted { future, rate, now } => {
                    let mut res = ready!(future.poll(cx))?;
                    // Core renders the fields straight into the response's own map.
                    rate.insert_headers(*now, res.headers_mut());
                    return Poll::Ready(Ok(res));
                }
                KindProj::Denied { response } => {
                    return Poll::Ready(Ok(response
                        .take()
                        .expect("ResponseFuture polled after completion")))
                }
            }
        }
    }
}

impl<S, R, B> std::fmt::Debug for ResponseFuture<S, R, B>
where
    S: Service<Request<R>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
