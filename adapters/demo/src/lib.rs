//! The Sitequest API demo server: a mock of the API guarded by `sitequest-auth`, with an admin
//! API for keys and an embedded SQLite data file.
//!
//! The binary `sitequest-demo` is a thin command line over [`Demo`]; tests use [`Demo`] directly
//! with their own clock.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod dashboard;
pub mod db;
pub mod health;
pub mod leaks;
pub mod mcp;
pub mod metrics;
pub mod operations;
pub mod scan;
pub mod server;
pub mod service;
pub mod token;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use sitequest_auth::{
    AddressLimiter, Authorizer, KeyPolicy, KeyRecord, KeyStore, Quota, TrustedProxies, UnixTime,
};
use sitequest_auth_redis::{
    FailurePolicy, KeyChange, KeySync, KeySyncConfig, RedisLimiter, RedisLimiterConfig, SyncSecret,
};
use sitequest_auth_secret_scanning::PartnerKeys;
use sitequest_auth_tower::{AsyncLimiter, Clock};

/// Largest request body accepted, in bytes.
pub const MAX_BODY: usize = 16 * 1024;
/// Longest time a request may take, headers included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How to run the server.
#[derive(Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The SQLite data file.
    pub data: PathBuf,
    /// Requests per window for keys without their own limit.
    pub rate_limit: Quota,
    /// The admin token; `None` to read or create the token file beside the data file.
    pub admin_token: Option<String>,
    /// Where the time comes from.
    pub clock: Clock,
    /// Redis URL: count requests and share key changes with the other instances through it.
    pub redis: Option<String>,
    /// What to do when Redis cannot be reached, or key changes cannot be confirmed in sync.
    pub redis_policy: FailurePolicy,
    /// Signs and checks the key changes shared through Redis; required with `redis`.
    pub sync_secret: Option<SyncSecret>,
    /// Longest time without confirming that key changes are in sync before this instance stops
    /// vouching for revocations (see [`FailurePolicy`]).
    pub max_sync_age: Duration,
    /// How many connections may be open and how long they may stay silent.
    pub limits: server::ConnectionLimits,
    /// Admin changes that may wait for the data file before more are refused with a 503.
    pub db_queue: usize,
    /// Serve `/metrics`, `/healthz` and `/readyz` on this address only (with the same
    /// connection limits), instead of on [`Config::listen`].
    pub metrics_listen: Option<SocketAddr>,
    /// What every new key must satisfy (`--max-key-lifetime`), however it is created.
    pub key_policy: KeyPolicy,
    /// Proxies whose `X-Forwarded-For` is believed (`--trusted-proxy`).
    pub trusted_proxies: TrustedProxies,
    /// Requests without a valid key allowed per client address (`--unauthenticated-limit`).
    pub unauthenticated_limit: Quota,
    /// Requests to `POST /v1/keys/revoke` allowed per client address (`--revoke-limit`).
    pub revoke_limit: Quota,
    /// GitHub's public keys, to serve the secret scanning partner endpoint
    /// (`--github-scanning-keys`).
    pub github_scanning_keys: Option<PartnerKeys>,
    /// `Host` values `/mcp` accepts besides the loopback names and the listen address
    /// (`--mcp-allowed-host`): the names clients reach this server by.
    pub mcp_allowed_hosts: Vec<String>,
    /// The URL people reach the server by (`--public-url`), as `https://keys.example.com`: the
    /// dashboard's origin, and `Secure` session cookies when it is `https`.
    pub public_url: Option<String>,
    /// How many MCP sessions may be open (`--mcp-max-sessions`,
    /// `--mcp-max-sessions-per-key`), and when a silent one closes.
    pub mcp_sessions: mcp::SessionLimits,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data", &self.data)
            .field("rate_limit", &self.rate_limit)
            .field("redis", &self.redis.as_deref().map(redact_url))
            .field("limits", &self.limits)
            .field("metrics_listen", &self.metrics_listen)
            .field("key_policy", &self.key_policy)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The defaults of the command line, with the system clock.
    #[must_use]
    pub fn new(listen: SocketAddr, data: PathBuf, rate_limit: Quota) -> Self {
        Self {
            listen,
            data,
            rate_limit,
            admin_token: None,
            clock: Arc::new(sitequest_auth_tower::SystemClock),
            redis: None,
            redis_policy: FailurePolicy::FailClosed,
            sync_secret: None,
            max_sync_age: DEFAULT_MAX_SYNC_AGE,
            limits: server::ConnectionLimits::DEFAULT,
            db_queue: db::QUEUE_CAPACITY,
            metrics_listen: None,
            key_policy: KeyPolicy::default(),
            trusted_proxies: TrustedProxies::default(),
            unauthenticated_limit: Quota::SPEC,
            revoke_limit: DEFAULT_REVOKE_LIMIT,
            github_scanning_keys: None,
            mcp_allowed_hosts: Vec::new(),
            public_url: None,
            mcp_sessions: mcp::SessionLimits::DEFAULT,
        }
    }
}

/// Default quota of `POST /v1/keys/revoke` per client address: 10 a minute.
pub const DEFAULT_REVOKE_LIMIT: Quota = Quota::per_minute(10);

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// Authorizes API requests.
    pub auth: Arc<Authorizer>,
    /// The one owner of key changes: every surface creates, revokes, rotates and changes
    /// allowlists through it.
    pub keys: Arc<service::KeyService>,
    /// The data file's thread (for closing it at shutdown; changes go through `keys`).
    db: db::DbHandle,
    /// Checks the admin token.
    pub admin: Arc<token::AdminToken>,
    /// Where the time comes from.
    pub clock: Clock,
    /// The shared limiter, with `--redis`.
    pub limiter: Option<Arc<dyn AsyncLimiter>>,
    /// The shared key-change channel, with `--redis`.
    pub sync: Option<Arc<KeySync>>,
    /// The staleness bound of `sync`: past it the instance is not ready.
    pub max_sync_age: Duration,
    /// The metrics served at `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Counts `POST /v1/keys/revoke` per client address.
    pub revoke_limiter: Arc<AddressLimiter>,
    /// GitHub's public keys, when the secret scanning endpoint is served.
    pub scanning_keys: Option<Arc<PartnerKeys>>,
    /// `Host` values `/mcp` accepts.
    pub mcp_hosts: Vec<String>,
    /// The dashboard's sessions.
    pub sessions: Arc<dashboard::session::Sessions>,
    /// Each key's requests of the last hour, for the dashboard's charts.
    pub usage: Arc<dashboard::usage::Usage>,
    /// The URL people reach the server by, if configured.
    pub public_url: Option<String>,
    /// The open MCP sessions and the keys that opened them.
    pub mcp_sessions: Arc<mcp::SessionOwners>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("auth", &self.auth)
            .field("shared", &self.sync.is_some())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The current time.
    #[must_use]
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The key store.
    #[must_use]
    pub fn store(&self) -> &Arc<KeyStore> {
        self.auth.store()
    }
}

/// A bound, loaded server, ready to serve.
pub struct Demo {
    state: AppState,
    listener: tokio::net::TcpListener,
    metrics_listener: Option<tokio::net::TcpListener>,
    limits: server::ConnectionLimits,
    admin_token_created: bool,
    follower: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("addr", &self.listener.local_addr().ok())
            .field(
                "metrics_addr",
                &self.metrics_listener.as_ref().map(|l| l.local_addr().ok()),
            )
            .finish_non_exhaustive()
    }
}

impl Demo {
    /// Opens the data file, reads or creates the admin token, connects to Redis, loads the keys
    /// and starts the data file's thread, and binds (the metrics listener too, if any).
    ///
    /// # Errors
    ///
    /// When the connection limits let nothing through, the data file or the token file cannot
    /// be used, Redis cannot be reached, or the address cannot be bound.
    pub async fn bind(config: Config) -> Result<Self> {
        config.limits.validate()?;
        let file = db::Db::open(&config.data)?;
        let (admin, admin_token_created) = match config.admin_token {
            Some(t) => (token::AdminToken::new(&t)?, false),
            None => token::AdminToken::from_file(&token_path(&config.data))?,
        };
        let (limiter, sync) = match &config.redis {
            Some(url) => {
                let secret = config.sync_secret.clone().context(
                    "--redis needs a sync secret: --sync-secret-file PATH or SITEQUEST_SYNC_SECRET",
                )?;
                let (limiter, sync) =
                    connect_redis(url, config.redis_policy, secret, config.max_sync_age).await?;
                (Some(limiter), Some(sync))
            }
            None => (None, None),
        };
        let store = Arc::new(KeyStore::new().with_policy(config.key_policy));
        let options = db::WorkerOptions {
            queue: config.db_queue,
            ..db::WorkerOptions::default()
        };
        if let Some(sync) = &sync {
            // Removals learned before this start: a replayed record must not revive them.
            sync.remember_removed(file.removed()?);
        }
        let changes = sync.clone().map(share_changes);
        let (db, n) = db::DbHandle::start(file, store.clone(), changes, options)?;
        tracing::info!(keys = n, data = %config.data.display(), "loaded keys");
        let keys = Arc::new(service::KeyService::new(
            store.clone(),
            Arc::new(db.clone()),
            sync.clone().map(|s| s as Arc<dyn service::Sharing>),
        ));
        let auth = Authorizer::new(store)
            .with_quota(config.rate_limit)
            .with_address_limiter(Some(AddressLimiter::new(config.unauthenticated_limit)));
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for metrics on {addr}"))?,
            ),
            None => None,
        };
        let shared = match (&limiter, &sync) {
            (Some(limiter), Some(sync)) => Some(metrics::Shared {
                limiter: limiter.clone(),
                sync: sync.clone(),
                max_sync_age: config.max_sync_age,
            }),
            _ => None,
        };
        let mut demo = Self {
            state: AppState {
                auth: Arc::new(auth),
                keys,
                db,
                admin: Arc::new(admin),
                clock: config.clock,
                limiter: limiter.map(|l| l as Arc<dyn AsyncLimiter>),
                sync,
                max_sync_age: config.max_sync_age,
                metrics: Arc::new(metrics::Metrics::new(shared)),
                trusted_proxies: config.trusted_proxies,
                revoke_limiter: Arc::new(
                    AddressLimiter::new(config.revoke_limit).with_policy(leaks::REVOKE_POLICY),
                ),
                scanning_keys: config.github_scanning_keys.map(Arc::new),
                mcp_hosts: mcp_hosts(
                    config.listen,
                    config.mcp_allowed_hosts,
                    config.public_url.as_deref(),
                ),
                sessions: Arc::default(),
                usage: Arc::default(),
                public_url: config.public_url.clone(),
                mcp_sessions: Arc::new(mcp::SessionOwners::new(config.mcp_sessions)),
            },
            listener,
            metrics_listener,
            limits: config.limits,
            admin_token_created,
            follower: None,
        };
        if let Some(sync) = demo.state.sync.clone() {
            demo.follower = Some(follow_changes(&demo.state, sync.clone()));
            // Serve once in sync, so the first requests are not refused as unconfirmed; give up
            // waiting after the bound, and let the failure policy decide.
            let waited = Instant::now();
            while !sync.is_in_sync(config.max_sync_age) && waited.elapsed() < config.max_sync_age {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if !sync.is_in_sync(config.max_sync_age) {
                tracing::error!("key changes not in sync with Redis at start");
            }
        }
        Ok(demo)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The address `/metrics`, `/healthz` and `/readyz` are served on, when not the main one.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>> {
        Ok(match &self.metrics_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        })
    }

    /// The handlers' state.
    #[must_use]
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Whether the admin token was generated by this start (and so should be shown once).
    #[must_use]
    pub fn admin_token_created(&self) -> bool {
        self.admin_token_created
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight, saves the
    /// last-use times and closes the data file.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let flusher = tokio::spawn(admin::flush_last_used_periodically(self.state.clone()));
        let open = self.state.metrics.open_connections();
        let trusted = self.state.trusted_proxies.clone();
        let result = match self.metrics_listener {
            None => {
                let app = router(self.state.clone());
                server::serve(self.listener, app, self.limits, trusted, open, shutdown).await
            }
            Some(metrics_listener) => {
                // One shutdown for both listeners.
                let (stop, stopped) = tokio::sync::watch::channel(());
                let closed = |mut stopped: tokio::sync::watch::Receiver<()>| async move {
                    let _ = stopped.changed().await;
                };
                let main = server::serve(
                    self.listener,
                    api_router(self.state.clone()),
                    self.limits,
                    trusted.clone(),
                    open.clone(),
                    closed(stopped.clone()),
                );
                let side = server::serve(
                    metrics_listener,
                    health_router(self.state.clone()),
                    self.limits,
                    trusted,
                    open,
                    closed(stopped),
                );
                let signal = async move {
                    shutdown.await;
                    let _ = stop.send(());
                };
                let (main, side, ()) = tokio::join!(main, side, signal);
                main.and(side)
            }
        };
        flusher.abort();
        if let Some(f) = self.follower {
            f.abort();
        }
        // Closed whether or not the flush worked: the file is complete when this returns.
        let flushed = admin::flush_last_used(&self.state).await;
        let closed = self.state.db.close().await;
        flushed?;
        closed?;
        result
    }
}

/// Prefix of the Redis counter keys.
pub const REDIS_LIMITER_PREFIX: &str = "sitequest:rl";
/// Prefix of the Redis key-change hash and channel.
pub const REDIS_SYNC_PREFIX: &str = "sitequest:keys";
/// Longest wait for Redis.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// Default longest time without confirming that key changes are in sync.
pub const DEFAULT_MAX_SYNC_AGE: Duration = Duration::from_secs(10);

async fn connect_redis(
    url: &str,
    policy: FailurePolicy,
    secret: SyncSecret,
    max_sync_age: Duration,
) -> Result<(Arc<RedisLimiter>, Arc<KeySync>)> {
    // The URL may hold a password: only its redacted form goes into errors and logs.
    let shown = redact_url(url);
    let mut sync_config = KeySyncConfig::new(secret);
    sync_config.prefix = REDIS_SYNC_PREFIX.to_owned();
    sync_config.timeout = REDIS_TIMEOUT;
    let sync = Arc::new(
        KeySync::connect(url, sync_config)
            .await
            .with_context(|| format!("cannot connect to Redis at {shown}"))?,
    );
    let config = RedisLimiterConfig {
        prefix: REDIS_LIMITER_PREFIX.to_owned(),
        timeout: REDIS_TIMEOUT,
        policy,
        ..RedisLimiterConfig::default()
    };
    let limiter = RedisLimiter::connect(url, config)
        .await
        .with_context(|| format!("cannot connect to Redis at {shown}"))?
        .guard_with(sync.clone(), max_sync_age);
    tracing::info!(
        url = %shown,
        ?policy,
        "sharing rate limits and key changes through Redis"
    );
    Ok((Arc::new(limiter), sync))
}

/// A Redis URL without its password, for logs and errors: `redis://user:secret@host/` becomes
/// `redis://user:***@host/`, and `redis+unix:///path?pass=secret` becomes
/// `redis+unix:///path?pass=***`.
///
/// The userinfo ends at the last `@` after `scheme://`, so a password holding `/`, `?`, `#` or
/// `@` is hidden whole (a user name cannot hold `/`, `?` or `#`, so an `@` after one of those is
/// in the path or query instead). Query parameters `pass` and `password`, in any case and
/// percent-encoded or not, have their values hidden, in every scheme (redis-rs reads the password
/// of a Unix-socket URL from `pass`). Where an `@` could end either the userinfo or lie in the
/// query, more is hidden, never less.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // `unix:/path?pass=...` has no authority, only a path and a query.
        return redact_query(url);
    };
    let userinfo_end = rest.rfind('@').filter(|&at| {
        let user = rest[..at].split(':').next().unwrap_or_default();
        !user.contains(['/', '?', '#'])
    });
    match userinfo_end {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let host_and_path = redact_query(&rest[at + 1..]);
            format!("{scheme}://{user}:***@{host_and_path}")
        }
        None => format!("{scheme}://{}", redact_query(rest)),
    }
}

/// `s` with the values of its query parameters `pass` and `password` replaced by `***`.
fn redact_query(s: &str) -> String {
    let Some(start) = s.find('?') else {
        return s.to_owned();
    };
    let (head, tail) = s.split_at(start + 1);
    let (query, fragment) = tail.split_at(tail.find('#').unwrap_or(tail.len()));
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_password_parameter(name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{head}{}{fragment}", pairs.join("&"))
}

/// Whether a query parameter name is `pass` or `password` once decoded as redis-rs decodes it
/// (`application/x-www-form-urlencoded`), in any case.
fn is_password_parameter(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                decoded.push(b);
                i += 3;
            }
            (b'+', _) => {
                decoded.push(b' ');
                i += 1;
            }
            (b, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    decoded.eq_ignore_ascii_case(b"pass") || decoded.eq_ignore_ascii_case(b"password")
}

/// Applies key changes from the other instances and saves them in this instance's data file,
/// each batch in one transaction.
fn follow_changes(state: &AppState, sync: Arc<KeySync>) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<KeyChange>>();
    let db = state.db.clone();
    let saver = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // Whatever arrived meanwhile goes in the same job.
            let mut batch = first;
            while let Ok(more) = rx.try_recv() {
                batch.extend(more);
            }
            let mut records = Vec::new();
            let mut removed = Vec::new();
            for change in batch {
                match change {
                    KeyChange::Upserted(r) => records.push(r),
                    KeyChange::Removed { id, removed_at } => removed.push((id, removed_at)),
                    _ => {}
                }
            }
            if let Err(e) = db.save(records, removed).await {
                tracing::warn!(error = %e, "could not save shared key changes");
            }
        }
    });
    let follower = sync.spawn(state.store().clone(), move |batch| {
        let _ = tx.send(batch);
    });
    tokio::spawn(async move {
        let _ = follower.await;
        saver.abort();
    })
}

/// Shares with the other instances every key change the data file's thread applies to the store:
/// the admin API's, and those committed to the file by another connection (the `keys`
/// subcommands). Returns the sender to give that thread.
fn share_changes(sync: Arc<KeySync>) -> tokio::sync::mpsc::UnboundedSender<KeyRecord> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<KeyRecord>();
    tokio::spawn(async move {
        while let Some(record) = rx.recv().await {
            share(&sync, &record).await;
        }
    });
    tx
}

/// Publishes one changed record. A change that cannot be shared now is kept by [`KeySync`] and
/// published again until it goes through.
async fn share(sync: &KeySync, record: &KeyRecord) {
    if let Err(e) = sync.publish(record).await {
        tracing::warn!(key_id = %record.id(), error = %e, "key change not shared yet");
    }
}

/// Where the generated admin token is kept: beside the data file, `<data>.admin-token`.
#[must_use]
pub fn token_path(data: &Path) -> PathBuf {
    let mut name = data.file_name().unwrap_or_default().to_os_string();
    name.push(".admin-token");
    data.with_file_name(name)
}

/// The whole application on one listener: admin API, mock API, metrics and health, limits and
/// timeouts.
pub fn router(state: AppState) -> Router {
    limited(timed(&state, admin_and_api(&state)).merge(health::routes(state)))
}

/// The application without metrics and health (served by [`health_router`] on a listener of
/// their own): their paths are a JSON 404 here.
pub fn api_router(state: AppState) -> Router {
    limited(timed(&state, admin_and_api(&state)))
}

/// Metrics and health alone, for a listener of their own; any other path is a JSON 404.
pub fn health_router(state: AppState) -> Router {
    limited(health::routes(state).fallback(api::not_found))
}

/// What `/mcp` accepts as `Host`: the loopback names, the listen address when it is a specific
/// one, and the names the operator gave.
fn mcp_hosts(listen: SocketAddr, extra: Vec<String>, public_url: Option<&str>) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    if !listen.ip().is_unspecified() {
        hosts.push(listen.ip().to_string());
    }
    hosts.extend(extra);
    if let Some(host) = public_url
        .and_then(|u| u.split_once("://"))
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
    {
        hosts.push(host.to_owned());
    }
    hosts
}

fn admin_and_api(state: &AppState) -> Router {
    admin::routes(state.clone())
        .merge(dashboard::routes(state.clone()))
        .merge(leaks::routes(state.clone()))
        .merge(mcp::routes(state, state.mcp_hosts.clone()))
        .merge(api::routes(state))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn(dashboard::security_headers))
}

/// Times every request of `router`, its JSON 404s included.
fn timed(state: &AppState, router: Router) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        state.metrics.clone(),
        metrics::time_requests,
    ))
}

fn limited(router: Router) -> Router {
    router
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redis_passwords_are_not_shown() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(
            redact_url("redis://:s3cret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact_url("rediss://app:p@ss@host/"),
            "rediss://app:***@host/"
        );
        assert_eq!(redact_url("redis://app@host"), "redis://app:***@host");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn passwords_with_slashes_question_marks_or_hashes_are_not_shown() {
        assert_eq!(
            redact_url("redis://user:Ab/Cd+Ef==@host/"),
            "redis://user:***@host/"
        );
        assert_eq!(
            redact_url("redis://:a?b#c/d@host:6379/2"),
            "redis://:***@host:6379/2"
        );
        assert_eq!(
            redact_url("rediss://app:x@y/z?w#v@host/0?protocol=3"),
            "rediss://app:***@host/0?protocol=3"
        );
        // A user name cannot hold `/`, `?` or `#`: an `@` after one is not the userinfo's.
        assert_eq!(
            redact_url("redis://host/0?protocol=3#a@b"),
            "redis://host/0?protocol=3#a@b"
        );
        // An `@` that may end the userinfo or lie in the query: more is hidden, never less.
        assert_eq!(redact_url("redis://u:p@host/?x=a@b"), "redis://u:***@b");
    }

    #[test]
    fn password_query_parameters_are_not_shown() {
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?pass=SECRET"),
            "redis+unix:///run/redis.sock?pass=***"
        );
        assert_eq!(
            redact_url("unix:///run/redis.sock?db=2&user=app&Pass=S1&PASSWORD=S2&password=S3#f"),
            "unix:///run/redis.sock?db=2&user=app&Pass=***&PASSWORD=***&password=***#f"
        );
        // Percent-encoded names are decoded before they are used, so before they are compared.
        assert_eq!(
            redact_url("redis+unix:///s?p%61ss=S1&%50ASSWORD=S2&pa%2Bss=x&pas%s=y"),
            "redis+unix:///s?p%61ss=***&%50ASSWORD=***&pa%2Bss=x&pas%s=y"
        );
        // An `@` or `:` in the value does not make it a userinfo.
        assert_eq!(
            redact_url("redis+unix:///s?pass=a:b@c&db=1"),
            "redis+unix:///s?pass=***&db=1"
        );
        // A parameter without a value, and one named only like a password, stay as they are.
        assert_eq!(
            redact_url("redis+unix:///s?pass&passwd=x&db=1"),
            "redis+unix:///s?pass&passwd=x&db=1"
        );
        // Without `//` (`unix:/path`, which redis-rs accepts too).
        assert_eq!(
            redact_url("unix:/run/redis.sock?pass=SECRET"),
            "unix:/run/redis.sock?pass=***"
        );
        // In a TCP URL too, with a userinfo password.
        assert_eq!(
            redact_url("redis://u:p@host/?password=SECRET"),
            "redis://u:***@host/?password=***"
        );
    }
}
