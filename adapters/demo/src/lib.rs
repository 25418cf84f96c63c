//! The Sitequest API demo server: a mock of the API guarded by `sitequest-auth`, with an admin
//! API for keys and an embedded SQLite data file.
//!
//! The binary `sitequest-demo` is a thin command line over [`Demo`]; tests use [`Demo`] directly
//! with their own clock.
#![forbid(unsafe_code)]

pub mod db;
pub mod http;
pub mod metrics;
pub mod oauth;
pub mod scan;
pub mod server;
pub mod service;
pub mod shared;
pub mod token;

pub use http::state::{self, AppState};
pub use http::{
    admin, api, api_router, dashboard, health, health_router, leaks, mcp, operations, router,
};
pub use shared::{
    redact_url, DEFAULT_MAX_SYNC_AGE, REDIS_LIMITER_PREFIX, REDIS_SYNC_PREFIX, REDIS_TIMEOUT,
};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sitequest_auth::{AddressLimiter, Authorizer, KeyPolicy, KeyStore, Quota, TrustedProxies};
use sitequest_auth_redis::{FailurePolicy, SyncSecret};
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
    /// Quotas of single MCP tools per key (`--mcp-tool-limit ssh_exec=10`), inside the key's
    /// own window.
    pub mcp_tool_limits: Vec<(String, Quota)>,
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
            mcp_tool_limits: Vec::new(),
        }
    }
}

/// Default quota of `POST /v1/keys/revoke` per client address: 10 a minute.
pub const DEFAULT_REVOKE_LIMIT: Quota = Quota::per_minute(10);

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
        let mut file = db::Db::open(&config.data)?;
        // Instances sharing keys through Redis share the sync secret, and so the key that signs
        // client ids: a client registered with one is known to all.
        let oauth = oauth::OAuthServer::new(match &config.sync_secret {
            Some(secret) if config.redis.is_some() => secret.derive(oauth::SECRET_NAME),
            _ => file.secret(oauth::SECRET_NAME)?,
        });
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
                    shared::connect_redis(url, config.redis_policy, secret, config.max_sync_age)
                        .await?;
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
        let changes = sync.clone().map(shared::share_changes);
        let (db, n) = db::DbHandle::start(file, store.clone(), changes, options)?;
        tracing::info!(keys = n, data = %config.data.display(), "loaded keys");
        let keys = Arc::new(service::KeyService::new(
            store.clone(),
            Arc::new(db.clone()),
            sync.clone().map(|sync| {
                Arc::new(service::SyncSharing {
                    sync,
                    max_age: config.max_sync_age,
                }) as Arc<dyn service::Sharing>
            }),
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
                core: state::Core {
                    auth: Arc::new(auth),
                    keys,
                    clock: config.clock,
                    limiter: limiter.map(|l| l as Arc<dyn AsyncLimiter>),
                    trusted_proxies: config.trusted_proxies,
                    usage: Arc::default(),
                },
                admin: Arc::new(admin),
                ops: state::Ops {
                    metrics: Arc::new(metrics::Metrics::new(shared)),
                    sync,
                    max_sync_age: config.max_sync_age,
                },
                leaks: state::Leaks {
                    revoke_limiter: Arc::new(
                        AddressLimiter::new(config.revoke_limit).with_policy(leaks::REVOKE_POLICY),
                    ),
                    scanning_keys: config.github_scanning_keys.map(Arc::new),
                },
                dashboard: state::Dashboard {
                    sessions: Arc::default(),
                    public_url: config.public_url.clone(),
                },
                mcp: state::Mcp {
                    hosts: http::mcp_hosts(
                        config.listen,
                        config.mcp_allowed_hosts,
                        config.public_url.as_deref(),
                    ),
                    sessions: Arc::new(mcp::SessionOwners::new(config.mcp_sessions)),
                    tool_limits: Arc::new(mcp::ToolLimits::new(&config.mcp_tool_limits)),
                },
                oauth: Arc::new(oauth),
                db,
            },
            listener,
            metrics_listener,
            limits: config.limits,
            admin_token_created,
            follower: None,
        };
        if let Some(sync) = demo.state.ops.sync.clone() {
            demo.follower = Some(shared::follow_changes(
                &demo.state.db,
                demo.state.store(),
                sync.clone(),
            ));
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
        let open = self.state.ops.metrics.open_connections();
        let trusted = self.state.core.trusted_proxies.clone();
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

/// The key service over the data file alone, without a server: what the `keys` subcommands
/// change keys through. Close the returned handle when done, so that every change is on disk.
///
/// # Errors
///
/// When the data file cannot be opened or read.
pub fn offline_keys(
    data: &Path,
    policy: KeyPolicy,
) -> Result<(Arc<service::KeyService>, db::DbHandle)> {
    let file = db::Db::open(data)?;
    let store = Arc::new(KeyStore::new().with_policy(policy));
    let (handle, _) = db::DbHandle::start(file, store.clone(), None, db::WorkerOptions::default())?;
    let keys = service::KeyService::new(store, Arc::new(handle.clone()), None);
    Ok((Arc::new(keys), handle))
}

/// Where the generated admin token is kept: beside the data file, `<data>.admin-token`.
#[must_use]
pub fn token_path(data: &Path) -> PathBuf {
    let mut name = data.file_name().unwrap_or_default().to_os_string();
    name.push(".admin-token");
    data.with_file_name(name)
}
