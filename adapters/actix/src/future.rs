//! The response future of [`AuthService`](crate::AuthService): a state machine, as the tower
//! layer's, so that nothing but the outside limiter's own future is boxed and the wrapped
//! service is called only once the request is granted.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::rt::time::Sleep;
use actix_web::Error;
use pin_project_lite::pin_project;
use sitequest_auth::{poll_limit, LimitFuture, RateLimit, UnixTime};

use crate::middleware::{after_limit, Waiting};
use crate::response::insert_rate_limit;

pin_project! {
    /// Either the wrapped service's response with the rate-limit headers added, or the denial,
    /// after the outside limiter's answer when there is one.
    pub struct ResponseFuture<S, B>
    where
        S: Service<ServiceRequest>,
    {
        #[pin]
        state: State<S>,
        body: PhantomData<B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S>
    where
        S: Service<ServiceRequest>,
    {
        Limiting {
            limit: LimitFuture<'static>,
            // The limiter's deadline: past it the request is answered with core's 503.
            #[pin]
            deadline: Sleep,
            waiting: Option<Waiting<S>>,
        },
        Granted { #[pin] future: S::Future, rate: RateLimit, now: UnixTime },
        Denied { response: Option<ServiceResponse<&'static str>> },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<ServiceRequest>,
{
    fn new(state: State<S>) -> Self {
        Self {
            state,
            body: PhantomData,
        }
    }

    pub(crate) fn granted(future: S::Future, rate: RateLimit, now: UnixTime) -> Self {
        Self::new(State::Granted { future, rate, now })
    }

    pub(crate) fn denied(response: ServiceResponse<&'static str>) -> Self {
        Self::new(State::Denied {
            response: Some(response),
        })
    }

    pub(crate) fn limiting(
        limit: LimitFuture<'static>,
        deadline: Sleep,
        waiting: Waiting<S>,
    ) -> Self {
        Self::new(State::Limiting {
            limit,
            deadline,
            waiting: Some(waiting),
        })
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Output = Result<ServiceResponse<EitherBody<B, &'static str>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Limiting {
                    limit,
                    deadline,
                    waiting,
                } => {
                    let answer = ready!(poll_limit(limit, deadline, cx));
                    let w = waiting
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let now = w.pending.now();
                    match after_limit(w, answer) {
                        Ok((future, rate)) => state.set(State::Granted { future, rate, now }),
                        Err(response) => return Poll::Ready(Ok(response.map_into_right_body())),
                    }
                }
                StateProj::Granted { future, rate, now } => {
                    let mut res = ready!(future.poll(cx))?;
                    insert_rate_limit(res.headers_mut(), rate, *now);
                    return Poll::Ready(Ok(res.map_into_left_body()));
                }
                StateProj::Denied { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map_into_right_body()));
                }
            }
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<ServiceRequest>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
