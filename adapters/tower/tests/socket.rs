//! The layer in an axum app on a real socket, driven by an HTTP client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use reqwest::StatusCode;
use sitequest_auth::{Authorizer, KeyStore, NewKey, Preset, Quota, Scopes, UnixTime};
use sitequest_auth_tower::{AuthLayer, AuthenticatedKey};

const T0: UnixTime = UnixTime::from_secs(1_800_000_000);

struct App {
    base: String,
    store: Arc<KeyStore>,
    clock: Arc<AtomicU64>,
    client: reqwest::Client,
}

async fn whoami(key: AuthenticatedKey) -> String {
    format!("{} {} {}", key.id, key.name, key.scopes)
}

async fn start(quota: Quota) -> App {
    let store = Arc::new(KeyStore::new());
    let auth = Arc::new(Authorizer::new(store.clone()).with_quota(quota));
    let clock = Arc::new(AtomicU64::new(T0.plus_secs(10).as_secs()));
    let c = clock.clone();
    let layer = |s: Scopes| {
        let c = c.clone();
        AuthLayer::new(auth.clone(), s).with_clock(Arc::new(move || {
            UnixTime::from_secs(c.load(Ordering::SeqCst))
        }))
    };
    let app = Router::new()
        .route("/read", get(whoami).layer(layer(Scopes::VPS_READ)))
        .route(
            "/write",
            get(whoami).post(whoami).layer(layer(Scopes::VPS_WRITE)),
        )
        .route("/unguarded", get(whoami))
        .route(
            "/sensitive",
            get(|headers: axum::http::HeaderMap| async move {
                headers["authorization"].is_sensitive().to_string()
            })
            .layer(layer(Scopes::VPS_READ)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    App {
        base: format!("http://{addr}"),
        store,
        clock,
        client: reqwest::Client::new(),
    }
}

impl App {
    fn key(&self, preset: Preset) -> (String, String) {
        let issued = self
            .store
            .issue(&NewKey::new("test key", preset), T0)
            .unwrap();
        (
            issued.record.id().to_string(),
            format!("Bearer {}", &*issued.key.expose_secret()),
        )
    }

    async fn get(&self, path: &str, auth: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().await.unwrap()
    }
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn json(res: reqwest::Response) -> serde_json::Value {
    assert_eq!(header(&res, "content-type"), Some("application/json"));
    serde_json::from_str(&res.text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn grant_carries_all_rate_limit_headers_and_the_key() {
    let app = start(Quota::SPEC).await;
    let (id, bearer) = app.key(Preset::ReadOnly);
    let res = app.get("/read", Some(&bearer)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-ratelimit-limit"), Some("60"));
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("59"));
    assert_eq!(header(&res, "x-ratelimit-reset"), Some("1800000060"));
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some("\"default\";q=60;w=60")
    );
    assert_eq!(header(&res, "ratelimit"), Some("\"default\";r=59;t=50"));
    assert_eq!(header(&res, "retry-after"), None);
    assert_eq!(
        res.text().await.unwrap(),
        format!("{id} test key vps:read domains:read")
    );
}

#[tokio::test]
async fn the_key_reaches_handlers_marked_sensitive() {
    let app = start(Quota::SPEC).await;
    let (_, bearer) = app.key(Preset::ReadOnly);
    let res = app.get("/sensitive", Some(&bearer)).await;
    assert_eq!(res.text().await.unwrap(), "true");
}

#[tokio::test]
async fn every_401_is_the_same() {
    let app = start(Quota::SPEC).await;
    let (id, revoked) = app.key(Preset::Full);
    app.store.revoke(id.parse().unwrap(), T0).unwrap();
    let unknown = format!("Bearer sq_live_{}", "ab".repeat(32));
    let cases: [Option<&str>; 6] = [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer"),
        Some("Bearer sq_live_short"),
        Some(&unknown),
        Some(&revoked),
    ];
    for auth in cases {
        let res = app.get("/read", auth).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let challenge = if auth.is_none() {
            r#"Bearer realm="sitequest""#
        } else {
            r#"Bearer realm="sitequest", error="invalid_token""#
        };
        assert_eq!(
            header(&res, "www-authenticate"),
            Some(challenge),
            "{auth:?}"
        );
        assert_eq!(header(&res, "x-ratelimit-limit"), None);
        assert_eq!(header(&res, "ratelimit"), None);
        assert_eq!(
            json(res).await,
            serde_json::json!({"error": "Invalid or missing API key", "code": "UNAUTHORIZED", "status": 401})
        );
    }
}

#[tokio::test]
async fn non_utf8_and_duplicate_authorization_headers_are_401() {
    let app = start(Quota::SPEC).await;
    let (_, bearer) = app.key(Preset::Full);
    let res = app
        .client
        .get(format!("{}/read", app.base))
        .header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .client
        .get(format!("{}/read", app.base))
        .header("authorization", &bearer)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn missing_scope_is_403_with_headers() {
    let app = start(Quota::SPEC).await;
    let (_, bearer) = app.key(Preset::ReadOnly);
    let res = app.get("/write", Some(&bearer)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("59"));
    assert_eq!(header(&res, "ratelimit"), Some("\"default\";r=59;t=50"));
    assert_eq!(header(&res, "retry-after"), None);
    assert_eq!(
        json(res).await,
        serde_json::json!({"error": "API key lacks the required scope(s)", "code": "INSUFFICIENT_SCOPE", "status": 403})
    );
}

#[tokio::test]
async fn over_the_limit_is_429_with_retry_after_then_resets() {
    let app = start(Quota::new(3, 60).unwrap()).await;
    let (_, bearer) = app.key(Preset::Full);
    for left in ["2", "1", "0"] {
        let res = app.get("/read", Some(&bearer)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "x-ratelimit-remaining"), Some(left));
    }
    app.clock
        .store(T0.plus_secs(45).as_secs(), Ordering::SeqCst);
    let res = app.get("/read", Some(&bearer)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "x-ratelimit-limit"), Some("3"));
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&res, "x-ratelimit-reset"), Some("1800000060"));
    assert_eq!(header(&res, "retry-after"), Some("15"));
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some("\"default\";q=3;w=60")
    );
    assert_eq!(header(&res, "ratelimit"), Some("\"default\";r=0;t=15"));
    assert_eq!(
        json(res).await,
        serde_json::json!({"error": "Too many requests", "code": "RATE_LIMITED", "status": 429})
    );
    app.clock
        .store(T0.plus_secs(60).as_secs(), Ordering::SeqCst);
    let res = app.get("/read", Some(&bearer)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("2"));
    assert_eq!(header(&res, "x-ratelimit-reset"), Some("1800000120"));
}

#[tokio::test]
async fn extractor_without_the_layer_is_a_500() {
    let app = start(Quota::SPEC).await;
    let res = app.get("/unguarded", None).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json(res).await["code"], "INTERNAL");
}

#[tokio::test]
async fn concurrent_requests_on_one_key_get_exactly_the_limit() {
    let app = Arc::new(start(Quota::SPEC).await);
    let (_, bearer) = app.key(Preset::Full);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (app, bearer) = (app.clone(), bearer.clone());
            tokio::spawn(async move { app.get("/read", Some(&bearer)).await.status() })
        })
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, limited), (60, 40));
}

/// An outside limiter: the core limiter behind an async interface, or one that is down.
struct Outside {
    inner: sitequest_auth::RateLimiter,
    down: std::sync::atomic::AtomicBool,
}

impl sitequest_auth_tower::AsyncLimiter for Outside {
    fn check(
        self: Arc<Self>,
        key: sitequest_auth::KeyId,
        quota: Quota,
        now: UnixTime,
    ) -> sitequest_auth_tower::LimitFuture<'static> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            if self.down.load(Ordering::SeqCst) {
                return Err(sitequest_auth_tower::LimiterUnavailable {
                    reason: "backend down".into(),
                });
            }
            Ok(self.inner.check(key, quota, now))
        })
    }
}

#[tokio::test]
async fn outside_limiter_decides_and_its_outage_is_a_503() {
    let store = Arc::new(KeyStore::new());
    let auth = Arc::new(Authorizer::new(store.clone()).with_quota(Quota::new(2, 60).unwrap()));
    let outside = Arc::new(Outside {
        inner: sitequest_auth::RateLimiter::new(),
        down: false.into(),
    });
    let layer = |s: Scopes| {
        AuthLayer::new(auth.clone(), s)
            .with_clock(Arc::new(|| T0.plus_secs(10)))
            .with_limiter(outside.clone())
    };
    let app = Router::new()
        .route("/read", get(whoami).layer(layer(Scopes::VPS_READ)))
        .route("/write", get(whoami).layer(layer(Scopes::VPS_WRITE)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let issued = store
        .issue(&NewKey::new("shared", Preset::ReadOnly), T0)
        .unwrap();
    let bearer = format!("Bearer {}", &*issued.key.expose_secret());
    let client = reqwest::Client::new();
    let get = |path: &'static str, auth: Option<String>| {
        let mut req = client.get(format!("{base}{path}"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };

    let res = get("/read", Some(bearer.clone())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("1"));
    assert_eq!(header(&res, "ratelimit"), Some("\"default\";r=1;t=50"));
    assert!(res
        .text()
        .await
        .unwrap()
        .ends_with("shared vps:read domains:read"));
    let res = get("/write", Some(bearer.clone())).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("0"));
    let res = get("/read", Some(bearer.clone())).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), Some("50"));
    // The authorizer's own windows are not used.
    assert!(auth.limiter().is_empty());
    let record = auth.store().list().pop().unwrap();
    assert_eq!(
        auth.window(&record, T0).remaining,
        record.rate_limit.unwrap_or(auth.quota()).limit()
    );
    // Unknown keys are refused before the outside limiter is asked.
    let res = get("/read", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    outside.down.store(true, Ordering::SeqCst);
    let res = get("/read", Some(bearer)).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&res, "retry-after"), Some("1"));
    assert_eq!(
        json(res).await,
        serde_json::json!({"error": "Rate limiter unavailable", "code": "SERVICE_UNAVAILABLE", "status": 503})
    );
}
