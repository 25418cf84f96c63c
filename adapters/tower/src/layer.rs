//! The layer and the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::{HeaderMap, Request, Response};
use sitequest_auth::{Authorizer, Decision, Denial, Grant, Scopes};
use tower_layer::Layer;
use tower_service::Service;

use crate::extract::AuthenticatedKey;
use crate::future::ResponseFuture;
use crate::headers::{denial_response, insert_rate_limit_headers, unavailable_response};
use crate::limit::AsyncLimiter;

/// Where the layer reads the current Unix time, in seconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock as Unix seconds (zero if the clock is before 1970).
#[must_use]
pub fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Authorizes every request with an [`Authorizer`], requiring the given scopes.
///
/// Put one on each route (or group of routes) with the scopes it needs. Granted requests reach
/// the inner service with an [`AuthenticatedKey`] in their extensions and leave with the
/// rate-limit headers; refused ones are answered by the layer with the spec's JSON body.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authorizer>,
    required: Scopes,
    clock: Clock,
    limiter: Option<Arc<dyn AsyncLimiter>>,
}

impl AuthLayer {
    /// A layer requiring `required` (all of them) on the routes it wraps.
    #[must_use]
    pub fn new(auth: Arc<Authorizer>, required: Scopes) -> Self {
        Self {
            auth,
            required,
            clock: Arc::new(system_clock),
            limiter: None,
        }
    }

    /// Counts requests in `limiter` (for example one shared by several servers through Redis)
    /// instead of the authorizer's own. When it is unavailable the layer answers 503.
    #[must_use]
    pub fn with_limiter(mut self, limiter: Arc<dyn AsyncLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Reads the time from `clock` instead of the system clock (for tests and simulations).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("required", &self.required)
            .field("shared_limiter", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S> fmt::Debug for AuthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let now = (self.layer.clock)();
        let mut values = req.headers().get_all(AUTHORIZATION).iter();
        let header = match (values.next(), values.next()) {
            (None, _) => None,
            (Some(v), None) => Some(v.as_bytes()),
            // Two Authorization fields are ambiguous: refuse as malformed.
            (Some(_), Some(_)) => Some(&[][..]),
        };
        let auth = self.layer.auth.clone();
        let required = self.layer.required;
        // The service that was made ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(limiter) = self.layer.limiter.clone() else {
            return match auth.authorize(header, required, now) {
                Decision::Granted(grant) => {
                    let headers = admit(&auth, &grant, &mut req, now);
                    ResponseFuture::granted(inner.call(req), headers)
                }
                Decision::Denied(denial) => ResponseFuture::denied(refuse(&denial, now)),
            };
        };
        let key = match auth.authenticate(header, now) {
            Ok(key) => key,
            Err(denial) => return ResponseFuture::denied(refuse(&denial, now)),
        };
        ResponseFuture::boxed(Box::pin(async move {
            let limit = match limiter.check(key.key_id, key.quota, now).await {
                Ok(limit) => limit,
                Err(e) => {
                    tracing::warn!(key_id = %key.key_id, error = %e, "rate limiter unavailable");
                    return Ok(unavailable_response());
                }
            };
            match auth.decide(&key, limit, required, now) {
                Decision::Granted(grant) => {
                    let headers = admit(&auth, &grant, &mut req, now);
                    let mut res = inner.call(req).await?;
                    res.headers_mut().extend(headers);
                    Ok(res)
                }
                Decision::Denied(denial) => Ok(refuse(&denial, now)),
            }
        }))
    }
}

/// Puts the [`AuthenticatedKey`] in the request, marks its `Authorization` value sensitive (so
/// header-logging layers inside print `Sensitive`, not the key), and returns the headers for
/// its response.
fn admit<B>(auth: &Authorizer, grant: &Grant, req: &mut Request<B>, now: u64) -> HeaderMap {
    if let Some(value) = req.headers_mut().get_mut(AUTHORIZATION) {
        value.set_sensitive(true);
    }
    let name = auth
        .store()
        .get(grant.key_id)
        .map(|r| r.name)
        .unwrap_or_default();
    tracing::debug!(key_id = %grant.key_id, remaining = grant.rate_limit.remaining, "request granted");
    req.extensions_mut().insert(AuthenticatedKey {
        id: grant.key_id,
        name,
        scopes: grant.scopes,
        rate_limit: grant.rate_limit,
    });
    let mut headers = HeaderMap::with_capacity(5);
    insert_rate_limit_headers(&mut headers, &grant.rate_limit, now);
    headers
}

/// Logs a denial (key id and reason, never the key) and builds its response.
///
/// At debug level: refusals are what a flood of bad requests is made of, and logging each at
/// info would let any client fill the disk and slow the server.
fn refuse<B: From<&'static str>>(denial: &Denial, now: u64) -> Response<B> {
    let reason = denial.reason();
    match reason.key_id() {
        Some(id) => tracing::debug!(
            key_id = %id,
            reason = reason.label(),
            status = denial.status(),
            "request refused"
        ),
        None => tracing::debug!(
            reason = reason.label(),
            status = denial.status(),
            "request refused"
        ),
    }
    denial_response(denial, now)
}
