//! The layer and the service.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use sitequest_auth::{
    AuthRequest, Authorizer, Decision, Denial, Grant, LimitDecision, LimiterUnavailable, RateLimit,
    Scopes, SystemClock, Throttle, TimeProvider, TrustedProxies, UnixTime, LIMITER_TIMEOUT,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::extract::AuthenticatedKey;
use crate::future::{ResponseFuture, Waiting};
use crate::headers::denial_response;
use crate::limit::AsyncLimiter;
use sitequest_auth::{Finish, Observer, Step};

/// A shared [`TimeProvider`], as the layer and the demo server hold one.
pub type Clock = Arc<dyn TimeProvider>;

/// The system clock's time (the epoch if the clock is before 1970).
#[must_use]
pub fn system_clock() -> UnixTime {
    SystemClock.now()
}

/// Where the layer finds the connection's peer address in a request's extensions, which the
/// server put there. With axum served `into_make_service_with_connect_info::<SocketAddr>()`:
///
/// ```
/// use std::net::SocketAddr;
/// use axum::extract::ConnectInfo;
/// use sitequest_auth_tower::ClientIp;
/// let peer: ClientIp = |ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
/// # let _ = peer;
/// ```
pub type ClientIp = fn(&http::Extensions) -> Option<IpAddr>;

const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// The "rate limiter unavailable" warnings of this process: while an outside limiter is down every
/// request makes one, and logging each would let a flood of requests fill the disk and slow the
/// server. At most one a second, with the count of those held back.
static UNAVAILABLE_LOG: Throttle = Throttle::new(Duration::from_secs(1));

/// The "extractor on a route without the layer" errors of this process, at most one a second.
#[cfg(feature = "axum")]
pub(crate) static MISSING_LAYER_LOG: Throttle = Throttle::new(Duration::from_secs(1));

/// Authorizes every request with an [`Authorizer`], requiring the given scopes.
///
/// Put one on each route (or group of routes) with the scopes it needs. Granted requests reach
/// the inner service with an [`AuthenticatedKey`] in their extensions and leave with the
/// rate-limit headers; refused ones are answered by the layer with the spec's JSON body.
#[derive(Clone)]
pub struct AuthLayer {
    /// One reference count for the whole configuration: axum clones a route's service for
    /// every request.
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    auth: Arc<Authorizer>,
    required: Scopes,
    clock: Clock,
    limiter: Option<Arc<dyn AsyncLimiter>>,
    limiter_timeout: Duration,
    observer: Option<Observer>,
    client_ip: Option<ClientIp>,
    proxies: TrustedProxies,
}

impl AuthLayer {
    /// A layer requiring `required` (all of them) on the routes it wraps.
    #[must_use]
    pub fn new(auth: Arc<Authorizer>, required: Scopes) -> Self {
        Self {
            shared: Arc::new(Shared {
                auth,
                required,
                clock: Arc::new(SystemClock),
                limiter: None,
                limiter_timeout: LIMITER_TIMEOUT,
                observer: None,
                client_ip: None,
                proxies: TrustedProxies::default(),
            }),
        }
    }

    fn config(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// Reads the connection's peer address with `client_ip` (see [`ClientIp`] for axum's
    /// `ConnectInfo`) and passes the client's address to the authorizer with each request
    /// (see [`AuthRequest::client_ip`]): what key allowlists and the quota of requests without a
    /// valid key are checked against.
    #[must_use]
    pub fn with_client_ip(mut self, client_ip: ClientIp) -> Self {
        self.config().client_ip = Some(client_ip);
        self
    }

    /// Believes `X-Forwarded-For` from these proxies: when the peer read by
    /// [`AuthLayer::with_client_ip`] is one of them, the client is found in the header with
    /// [`TrustedProxies::client_address`]. Without trusted proxies (the default) the header is
    /// ignored, since any client can send it.
    #[must_use]
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.config().proxies = proxies;
        self
    }

    /// Counts requests in `limiter` (for example one shared by several servers through Redis)
    /// instead of the authorizer's own. When it is unavailable, or has not answered within the
    /// limiter timeout, the layer answers core's 503.
    ///
    /// The deadline is a `tokio` timer: with an outside limiter the layer runs on a tokio
    /// runtime with its time driver enabled (axum's and hyper's usual one).
    #[must_use]
    pub fn with_limiter(mut self, limiter: Arc<dyn AsyncLimiter>) -> Self {
        self.config().limiter = Some(limiter);
        self
    }

    /// How long to wait for the outside limiter before answering the 503
    /// ([`LIMITER_TIMEOUT`], one second, unless set).
    #[must_use]
    pub fn with_limiter_timeout(mut self, timeout: Duration) -> Self {
        self.config().limiter_timeout = timeout;
        self
    }

    /// Tells `observer` about every decision, once per request, as soon as it is made (before
    /// the inner service runs for a grant): for example to count decisions by
    /// [`Outcome::label`](sitequest_auth::Outcome::label) and [`Outcome::reason`](sitequest_auth::Outcome::reason) in metrics. It runs on the request's path, so
    /// it should only count; the layer itself allocates nothing for it.
    #[must_use]
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.config().observer = Some(observer);
        self
    }

    /// Reads the time from `clock` instead of the system clock (for tests and simulations).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.config().clock = clock;
        self
    }
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("required", &self.shared.required)
            .field("shared_limiter", &self.shared.limiter.is_some())
            .field("observed", &self.shared.observer.is_some())
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
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<&'static str>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let layer = &*self.layer.shared;
        let now = layer.clock.now();
        let fields = req.headers().get_all(AUTHORIZATION).iter();
        let mut request =
            AuthRequest::from_fields(fields.map(http::HeaderValue::as_bytes), layer.required, now);
        if let Some(peer) = layer.client_ip.and_then(|f| f(req.extensions())) {
            let forwarded = req.headers().get_all(X_FORWARDED_FOR).iter();
            let client = layer
                .proxies
                .client_address(peer, forwarded.map(http::HeaderValue::as_bytes));
            request = request.with_client_ip(client);
        }
        let auth = &layer.auth;
        // Core's request steps, the same for every adapter: decided here, or counted outside.
        match auth.begin(&request, layer.limiter.is_some(), layer.observer.as_ref()) {
            Step::Decided(Decision::Granted(grant)) => {
                let rate = admit(auth, grant, &mut req);
                // The service polled ready is called at once, so no clone is needed.
                ResponseFuture::granted(self.inner.call(req), rate, now)
            }
            Step::Decided(Decision::Denied(denial)) => {
                ResponseFuture::denied(refuse(auth, &denial, now))
            }
            Step::Count(pending) => {
                let limiter = layer
                    .limiter
                    .clone()
                    .expect("core asks to count outside only with an outside limiter");
                let limit = limiter.check(pending.limit_id(), pending.quota(), now);
                let deadline = tokio::time::sleep(layer.limiter_timeout);
                let waiting = Waiting {
                    layer: self.layer.clone(),
                    inner: self.take_ready(),
                    req,
                    pending,
                };
                ResponseFuture::limiting(limit, deadline, waiting)
            }
        }
    }
}

impl<S: Clone> AuthService<S> {
    /// The service that was made ready, which is the one that must be called; a clone stays.
    fn take_ready(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

/// Finishes a request that waited for the outside limiter: the inner service's future and the
/// response headers for a grant, else the response.
pub(crate) fn after_limit<S, R, B>(
    w: Waiting<S, R>,
    answer: Result<LimitDecision, LimiterUnavailable>,
) -> Result<(S::Future, RateLimit), Response<B>>
where
    S: Service<Request<R>, Response = Response<B>>,
    B: From<&'static str>,
{
    let Waiting {
        mut inner,
        mut req,
        pending,
        layer,
    } = w;
    let layer = &*layer.shared;
    let auth = &layer.auth;
    let (key_id, now) = (pending.key_id(), pending.now());
    match pending.finish(auth, answer, layer.observer.as_ref()) {
        Finish::Decided(Decision::Granted(grant)) => {
            let rate = admit(auth, grant, &mut req);
            Ok((inner.call(req), rate))
        }
        Finish::Decided(Decision::Denied(denial)) => Err(refuse(auth, &denial, now)),
        Finish::Unavailable(denial, e) => {
            if let Some(suppressed) = UNAVAILABLE_LOG.allow(Instant::now()) {
                tracing::warn!(
                    key_id = %key_id,
                    error = %e,
                    suppressed,
                    "rate limiter unavailable"
                );
            }
            Err(denial_response(&denial, auth.realm(), now))
        }
    }
}

/// Puts the [`AuthenticatedKey`] in the request (the key's name read from the store), marks its
/// `Authorization` value sensitive (so header-logging layers inside print `Sensitive`, not the
/// key), and returns the window for the response's headers.
fn admit<B>(auth: &Authorizer, grant: Grant, req: &mut Request<B>) -> RateLimit {
    if let Some(value) = req.headers_mut().get_mut(AUTHORIZATION) {
        value.set_sensitive(true);
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
fn refuse<B: From<&'static str>>(auth: &Authorizer, denial: &Denial, now: UnixTime) -> Response<B> {
    let reason = denial.reason();
    // The key id is recorded when there is one (a `None` field is left out).
    tracing::debug!(
        key_id = reason.key_id().map(tracing::field::display),
        reason = reason.label(),
        status = denial.status(),
        "request refused"
    );
    denial_response(denial, auth.realm(), now)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use sitequest_auth::{KeyId, KeyStore, NewKey, Preset, Quota};
    use tower::{service_fn, ServiceExt};

    use super::*;
    use crate::LimitFuture;

    const T0: UnixTime = UnixTime::from_secs(1_800_000_000);

    /// (label, reason, status, limiter checked) of each outcome, in order.
    type Seen = Arc<Mutex<Vec<(&'static str, &'static str, u16, bool)>>>;

    fn recorder() -> (Seen, Observer) {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let observer: Observer = Arc::new(move |o: &sitequest_auth::Outcome<'_>| {
            log.lock()
                .unwrap()
                .push((o.label(), o.reason(), o.status(), o.limiter_checked()));
        });
        (seen, observer)
    }

    /// An outside limiter that cannot be reached.
    struct Down;

    impl AsyncLimiter for Down {
        fn check(self: Arc<Self>, _: KeyId, _: Quota, _: UnixTime) -> LimitFuture<'static> {
            Box::pin(async {
                Err(LimiterUnavailable {
                    reason: "down".to_owned(),
                })
            })
        }
    }

    /// An outside limiter that counts in memory.
    struct Shared(sitequest_auth::RateLimiter);

    impl AsyncLimiter for Shared {
        fn check(self: Arc<Self>, key: KeyId, quota: Quota, now: UnixTime) -> LimitFuture<'static> {
            let decision = self.0.check(key, quota, now);
            Box::pin(async move { Ok(decision) })
        }
    }

    async fn send(layer: &AuthLayer, auth: Option<&str>) -> u16 {
        let inner = service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        });
        let mut req = Request::new(String::new());
        if let Some(a) = auth {
            req.headers_mut().insert(AUTHORIZATION, a.parse().unwrap());
        }
        let res = layer.layer(inner).oneshot(req).await.unwrap();
        res.status().as_u16()
    }

    fn bearer(store: &KeyStore, preset: Preset) -> String {
        let issued = store.issue(&NewKey::new("k", preset), T0).unwrap();
        format!("Bearer {}", &*issued.key.expose_secret())
    }

    #[tokio::test]
    async fn the_observer_sees_every_decision_once_with_its_reason() {
        let store = Arc::new(KeyStore::new());
        let auth = Arc::new(Authorizer::new(store.clone()).with_quota(Quota::per_minute(1)));
        let (seen, observer) = recorder();
        let clock: Clock = Arc::new(|| T0.plus_secs(10));
        let read = AuthLayer::new(auth.clone(), Scopes::VPS_READ)
            .with_clock(clock.clone())
            .with_observer(observer.clone());
        let write = AuthLayer::new(auth.clone(), Scopes::VPS_WRITE)
            .with_clock(clock.clone())
            .with_observer(observer.clone());
        let key = bearer(&store, Preset::ReadOnly);
        let other = bearer(&store, Preset::ReadOnly);
        let statuses = [
            send(&read, None).await,
            send(&read, Some("Bearer nope")).await,
            send(&read, Some(&key)).await,
            send(&read, Some(&key)).await,
            send(&write, Some(&other)).await,
        ];
        assert_eq!(statuses, [401, 401, 200, 429, 403]);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                ("denied", "missing", 401, false),
                ("denied", "malformed", 401, false),
                ("granted", "none", 200, true),
                ("denied", "rate_limited", 429, true),
                ("denied", "insufficient_scope", 403, true),
            ]
        );

        // The same through an outside limiter, and a 503 from one that cannot decide.
        seen.lock().unwrap().clear();
        let guard = |scopes, limiter: Arc<dyn AsyncLimiter>| {
            AuthLayer::new(auth.clone(), scopes)
                .with_clock(clock.clone())
                .with_limiter(limiter)
                .with_observer(observer.clone())
        };
        let shared: Arc<dyn AsyncLimiter> = Arc::new(Shared(sitequest_auth::RateLimiter::new()));
        let read = guard(Scopes::VPS_READ, shared.clone());
        let write = guard(Scopes::VPS_WRITE, shared);
        let down = guard(Scopes::VPS_READ, Arc::new(Down));
        let (key, other, third) = (
            bearer(&store, Preset::ReadOnly),
            bearer(&store, Preset::ReadOnly),
            bearer(&store, Preset::ReadOnly),
        );
        let statuses = [
            send(&read, None).await,
            send(&read, Some(&key)).await,
            send(&read, Some(&key)).await,
            send(&write, Some(&other)).await,
            send(&down, Some(&third)).await,
        ];
        assert_eq!(statuses, [401, 200, 429, 403, 503]);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                ("denied", "missing", 401, false),
                ("granted", "none", 200, true),
                ("denied", "rate_limited", 429, true),
                ("denied", "insufficient_scope", 403, true),
                ("unavailable", "limiter_unavailable", 503, true),
            ]
        );
    }

    /// A service that is neither `Send` nor `'static` (it holds an `Rc` and borrows a local)
    /// works behind the layer, with or without an outside limiter, and the inner service is
    /// called only for a grant: the response future is a state machine, not a boxed future.
    #[tokio::test]
    async fn services_need_not_be_send_and_are_called_only_once_granted() {
        let store = Arc::new(KeyStore::new());
        let auth = Arc::new(Authorizer::new(store.clone()));
        let clock: Clock = Arc::new(|| T0.plus_secs(10));
        let calls = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let body = String::from("ok");
        let local = &body;
        let counted = calls.clone();
        let inner = service_fn(move |_req: Request<String>| {
            counted.set(counted.get() + 1);
            let reply = local.clone();
            async move { Ok::<_, Infallible>(Response::new(reply)) }
        });
        let key = bearer(&store, Preset::ReadOnly);
        let shared: Arc<dyn AsyncLimiter> = Arc::new(Shared(sitequest_auth::RateLimiter::new()));
        for layer in [
            AuthLayer::new(auth.clone(), Scopes::VPS_READ).with_clock(clock.clone()),
            AuthLayer::new(auth.clone(), Scopes::VPS_READ)
                .with_clock(clock.clone())
                .with_limiter(shared),
        ] {
            let svc = layer.layer(inner.clone());
            let mut req = Request::new(String::new());
            req.headers_mut()
                .insert(AUTHORIZATION, key.parse().unwrap());
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["x-ratelimit-limit"], "60");
            assert_eq!(res.into_body(), "ok");
            let refused = svc.oneshot(Request::new(String::new())).await.unwrap();
            assert_eq!(refused.status(), 401);
        }
        assert_eq!(calls.get(), 2);
    }
}
