//! The middleware (an actix `Transform`) and the service it wraps around a scope or resource.

use std::fmt;
use std::future::{ready, Ready};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::EitherBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{AUTHORIZATION, X_FORWARDED_FOR};
use actix_web::{Error, HttpMessage};
use sitequest_auth::{
    AsyncLimiter, AuthRequest, Authorizer, Decision, Denial, Finish, Grant, LimitDecision,
    LimiterUnavailable, Observer, Pending, RateLimit, Scopes, Step, Throttle, TrustedProxies,
    UnixTime, LIMITER_TIMEOUT,
};

use crate::clock::{Clock, SystemClock};
use crate::extract::AuthenticatedKey;
use crate::future::ResponseFuture;
use crate::response::denial_response;

/// The "rate limiter unavailable" warnings of this process: while an outside limiter is down every
/// request makes one, and logging each would let a flood of requests fill the disk and slow the
/// server. At most one a second, with the count of those held back.
static UNAVAILABLE_LOG: Throttle = Throttle::new(Duration::from_secs(1));

/// The "extractor on a route without the middleware" errors of this process, at most one a
/// second.
pub(crate) static MISSING_MIDDLEWARE_LOG: Throttle = Throttle::new(Duration::from_secs(1));

/// Authorizes every request with an [`Authorizer`], requiring the given scopes.
///
/// Wrap each scope or resource with one, with the scopes it needs
/// (`web::scope("/v1/servers").wrap(AuthMiddleware::new(auth, Scopes::VPS_READ))`). Granted
/// requests reach the wrapped service with an [`AuthenticatedKey`] in their extensions and leave
/// with the rate-limit headers; refused ones are answered by the middleware with the spec's JSON
/// body, and the wrapped service is not called.
#[derive(Clone)]
pub struct AuthMiddleware {
    auth: Arc<Authorizer>,
    required: Scopes,
    clock: Clock,
    limiter: Option<Arc<dyn AsyncLimiter>>,
    limiter_timeout: Duration,
    proxies: TrustedProxies,
    observer: Option<Observer>,
    mark_sensitive: bool,
}

impl AuthMiddleware {
    /// A middleware requiring `required` (all of them) on what it wraps.
    #[must_use]
    pub fn new(auth: Arc<Authorizer>, required: Scopes) -> Self {
        Self {
            auth,
            required,
            clock: Arc::new(SystemClock),
            limiter: None,
            limiter_timeout: LIMITER_TIMEOUT,
            proxies: TrustedProxies::default(),
            observer: None,
            mark_sensitive: true,
        }
    }

    /// Whether a granted request's `Authorization` value is marked sensitive (the default), so
    /// that its `Debug` and header-logging middleware inside print `Sensitive`, not the key.
    ///
    /// Marking changes the request's headers through `ServiceRequest::headers_mut`, which
    /// panics when a middleware outside this one holds a clone of the `HttpRequest` across the
    /// call. If one of yours wraps the same resource outside this one, does so, and cannot read
    /// the request from the response instead, turn marking off. (Around a scope or the whole
    /// app, actix's own routing panics on such a request before it gets here.)
    #[must_use]
    pub fn with_sensitive_header(mut self, mark: bool) -> Self {
        self.mark_sensitive = mark;
        self
    }

    /// Tells `observer` about every decision, once per request, as soon as it is made (before
    /// the wrapped service runs): a grant, a denial with its reason, or an outside limiter that
    /// could not decide. The same [`Observer`] as the tower layer's, for metrics.
    #[must_use]
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Believes `X-Forwarded-For` from these proxies: when the connection's peer is one of them,
    /// the client's address (what key allowlists and the quota of requests without a valid key
    /// are checked against) is found in the header with [`TrustedProxies::client_address`].
    /// Without trusted proxies (the default) the header is ignored, since any client can send
    /// it, and the client is the peer.
    #[must_use]
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// Counts requests in `limiter` (for example one shared by several servers through Redis)
    /// instead of the authorizer's own. When it cannot decide, or has not answered within the
    /// limiter timeout, the middleware answers core's 503.
    #[must_use]
    pub fn with_limiter(mut self, limiter: Arc<dyn AsyncLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// How long to wait for the outside limiter before answering the 503
    /// ([`LIMITER_TIMEOUT`], one second, unless set). A request whose client has gone is
    /// otherwise kept until the limiter answers.
    #[must_use]
    pub fn with_limiter_timeout(mut self, timeout: Duration) -> Self {
        self.limiter_timeout = timeout;
        self
    }

    /// Reads the time from `clock` instead of the system clock (for tests and simulations).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

impl fmt::Debug for AuthMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthMiddleware")
            .field("required", &self.required)
            .field("shared_limiter", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, B> Transform<S, ServiceRequest> for AuthMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<EitherBody<B, &'static str>>;
    type Error = Error;
    type Transform = AuthService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AuthService {
            inner: Rc::new(service),
            config: Rc::new(self.clone()),
        }))
    }
}

/// The service made by [`AuthMiddleware`].
///
/// The wrapped service is shared by `Rc` (actix services are called through `&self`), so that a
/// request waiting for an outside limiter can call it once granted.
pub struct AuthService<S> {
    inner: Rc<S>,
    config: Rc<AuthMiddleware>,
}

impl<S> fmt::Debug for AuthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for AuthService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<EitherBody<B, &'static str>>;
    type Error = Error;
    type Future = ResponseFuture<S, B>;

    forward_ready!(inner);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let config = &self.config;
        let auth = &config.auth;
        let now = config.clock.now();
        let fields = req.headers().get_all(AUTHORIZATION).map(|v| v.as_bytes());
        let mut request = AuthRequest::from_fields(fields, config.required, now);
        if let Some(peer) = req.peer_addr() {
            let client = if config.proxies.contains(peer.ip()) {
                // Rare (a proxy's request), so the fields may be gathered to be read backwards.
                let forwarded: Vec<&[u8]> = req
                    .headers()
                    .get_all(X_FORWARDED_FOR)
                    .map(|v| v.as_bytes())
                    .collect();
                config.proxies.client_address(peer.ip(), forwarded)
            } else {
                peer.ip().to_canonical()
            };
            request = request.with_client_ip(client);
        }
        // Core's request steps, the same for every adapter: decided here, or counted outside.
        match auth.begin(&request, config.limiter.is_some(), config.observer.as_ref()) {
            Step::Decided(Decision::Granted(grant)) => {
                let rate = admit(config, grant, &mut req);
                ResponseFuture::granted(self.inner.call(req), rate, now)
            }
            Step::Decided(Decision::Denied(denial)) => {
                ResponseFuture::denied(refuse(auth, &denial, req, now))
            }
            Step::Count(pending) => {
                let limiter = config
                    .limiter
                    .clone()
                    .expect("core asks to count outside only with an outside limiter");
                let limit = limiter.check(pending.limit_id(), pending.quota(), now);
                let waiting = Waiting {
                    inner: Rc::clone(&self.inner),
                    config: Rc::clone(&self.config),
                    req,
                    pending,
                };
                let deadline = actix_web::rt::time::sleep(config.limiter_timeout);
                ResponseFuture::limiting(limit, deadline, waiting)
            }
        }
    }
}

/// What a request waiting for the outside limiter keeps: the wrapped service, the request, and
/// what authentication found.
pub(crate) struct Waiting<S> {
    inner: Rc<S>,
    config: Rc<AuthMiddleware>,
    req: ServiceRequest,
    pub(crate) pending: Pending,
}

/// Finishes a request that waited for the outside limiter: the wrapped service's future and the
/// headers for its response for a grant, else the refusal.
pub(crate) fn after_limit<S>(
    w: Waiting<S>,
    answer: Result<LimitDecision, LimiterUnavailable>,
) -> Result<(S::Future, RateLimit), ServiceResponse<&'static str>>
where
    S: Service<ServiceRequest>,
{
    let Waiting {
        inner,
        config,
        mut req,
        pending,
    } = w;
    let auth = &config.auth;
    let (key_id, now) = (pending.key_id(), pending.now());
    match pending.finish(auth, answer, config.observer.as_ref()) {
        Finish::Decided(Decision::Granted(grant)) => {
            let rate = admit(&config, grant, &mut req);
            Ok((inner.call(req), rate))
        }
        Finish::Decided(Decision::Denied(denial)) => Err(refuse(auth, &denial, req, now)),
        Finish::Unavailable(denial, e) => {
            if let Some(suppressed) = UNAVAILABLE_LOG.allow(Instant::now()) {
                tracing::warn!(
                    key_id = %key_id,
                    error = %e,
                    suppressed,
                    "rate limiter unavailable"
                );
            }
            Err(req.into_response(denial_response(&denial, auth.realm(), now)))
        }
    }
}

/// Puts the [`AuthenticatedKey`] in the request's extensions (the key's name read from the store),
/// marks its `Authorization` value sensitive (so the request's `Debug` and header-logging
/// middleware inside print `Sensitive`, not the key), and returns the window for the response's
/// headers.
///
/// Marking goes through `ServiceRequest::headers_mut`, which relies on the invariant actix's own
/// routing and `NormalizePath` rely on: a request passed down the chain is not also held by a
/// middleware outside (actix panics on such a request when it routes it); hosts that break it
/// turn marking off ([`AuthMiddleware::with_sensitive_header`]).
fn admit(config: &AuthMiddleware, grant: Grant, req: &mut ServiceRequest) -> RateLimit {
    let auth = &config.auth;
    if config.mark_sensitive {
        if let Some(value) = req.headers_mut().get_mut(AUTHORIZATION) {
            value.set_sensitive(true);
        }
    }
    tracing::debug!(key_id = %grant.key_id, remaining = grant.rate_limit.remaining, "request granted");
    let rate = grant.rate_limit;
    req.extensions_mut().insert(AuthenticatedKey {
        id: grant.key_id,
        // Removed since it was granted (a race with an admin call): no name to give.
        name: auth.store().name(grant.key_id).unwrap_or_default(),
        scopes: grant.scopes,
        rate_limit: rate,
    });
    rate
}

/// Logs a denial (key id and reason, never the key) and builds its response.
///
/// At debug level: refusals are what a flood of bad requests is made of, and logging each at
/// info would let any client fill the disk and slow the server.
fn refuse(
    auth: &Authorizer,
    denial: &Denial,
    req: ServiceRequest,
    now: UnixTime,
) -> ServiceResponse<&'static str> {
    let reason = denial.reason();
    // The key id is recorded when there is one (a `None` field is left out).
    tracing::debug!(
        key_id = reason.key_id().map(tracing::field::display),
        reason = reason.label(),
        status = denial.status(),
        "request refused"
    );
    req.into_response(denial_response(denial, auth.realm(), now))
}
