//! The response future of [`AuthService`](crate::AuthService).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{HeaderMap, Response};
use pin_project_lite::pin_project;

/// The whole answer of a request decided with an outside limiter.
type BoxedResponse<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

pin_project! {
    /// Either the inner service's response with the rate-limit headers added, or the denial.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Granted { #[pin] future: F, headers: Option<HeaderMap> },
        Denied { response: Option<Response<B>> },
        Boxed { future: BoxedResponse<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn granted(future: F, headers: HeaderMap) -> Self {
        Self {
            kind: Kind::Granted {
                future,
                headers: Some(headers),
            },
        }
    }

    pub(crate) fn denied(response: Response<B>) -> Self {
        Self {
            kind: Kind::Denied {
                response: Some(response),
            },
        }
    }

    pub(crate) fn boxed(future: BoxedResponse<B, E>) -> Self {
        Self {
            kind: Kind::Boxed { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Granted { future, headers } => {
                let mut res = ready!(future.poll(cx))?;
                if let Some(h) = headers.take() {
                    res.headers_mut().extend(h);
                }
                Poll::Ready(Ok(res))
            }
            KindProj::Denied { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, B, E> std::fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
