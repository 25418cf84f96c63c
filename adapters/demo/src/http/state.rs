//! The handlers' state, one part per concern, each an axum sub-state ([`FromRef`]) so that a
//! handler takes only the part it reads: `State<Core>`, `State<Ops>`, or the whole
//! [`AppState`] where it needs several.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use sitequest_auth::{AddressLimiter, Authorizer, KeyStore, TrustedProxies, UnixTime};
use sitequest_auth_redis::KeySync;
use sitequest_auth_secret_scanning::PartnerKeys;
use sitequest_auth_tower::{AsyncLimiter, Clock};

use crate::http::mcp_sessions::SessionOwners;
use crate::http::session::Sessions;
use crate::http::usage::Usage;
use crate::service::KeyService;
use crate::{db, metrics, token};

/// What every surface needs: who may do what, the one owner of key changes, and the time.
#[derive(Clone)]
pub struct Core {
    /// Authorizes API requests.
    pub auth: Arc<Authorizer>,
    /// The one owner of key changes: every surface creates, revokes, rotates and changes
    /// allowlists through it.
    pub keys: Arc<KeyService>,
    /// Where the time comes from.
    pub clock: Clock,
    /// The shared limiter, with `--redis`.
    pub limiter: Option<Arc<dyn AsyncLimiter>>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Each key's requests of the last hour (the dashboard's charts).
    pub usage: Arc<Usage>,
}

impl Core {
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

/// What operators read: metrics and the state of the key sync.
#[derive(Clone)]
pub struct Ops {
    /// The metrics served at `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// The shared key-change channel, with `--redis`.
    pub sync: Option<Arc<KeySync>>,
    /// The staleness bound of `sync`: past it the instance is not ready.
    pub max_sync_age: Duration,
}

/// The leak endpoints' own state.
#[derive(Clone)]
pub struct Leaks {
    /// Counts `POST /v1/keys/revoke` per client address.
    pub revoke_limiter: Arc<AddressLimiter>,
    /// GitHub's public keys, when the secret scanning endpoint is served.
    pub scanning_keys: Option<Arc<PartnerKeys>>,
}

/// The dashboard's own state.
#[derive(Clone)]
pub struct Dashboard {
    /// Its sign-in sessions.
    pub sessions: Arc<Sessions>,
    /// The URL people reach the server by, if configured.
    pub public_url: Option<String>,
}

/// The MCP endpoint's own state.
#[derive(Clone)]
pub struct Mcp {
    /// `Host` values `/mcp` accepts.
    pub hosts: Vec<String>,
    /// The open sessions and the keys that opened them.
    pub sessions: Arc<SessionOwners>,
    /// The quotas of single tools, per key.
    pub tool_limits: Arc<crate::http::mcp::ToolLimits>,
}

/// The whole state: its parts, and the admin token.
#[derive(Clone)]
pub struct AppState {
    /// What every surface needs.
    pub core: Core,
    /// Checks the admin token.
    pub admin: Arc<token::AdminToken>,
    /// Metrics and sync state.
    pub ops: Ops,
    /// The leak endpoints' state.
    pub leaks: Leaks,
    /// The dashboard's state.
    pub dashboard: Dashboard,
    /// The MCP endpoint's state.
    pub mcp: Mcp,
    /// The OAuth authorization server of MCP clients.
    pub oauth: Arc<crate::oauth::OAuthServer>,
    /// The data file's thread (for closing it at shutdown; changes go through `core.keys`).
    pub(crate) db: db::DbHandle,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("auth", &self.core.auth)
            .field("shared", &self.ops.sync.is_some())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The current time.
    #[must_use]
    pub fn now(&self) -> UnixTime {
        self.core.now()
    }

    /// The key store.
    #[must_use]
    pub fn store(&self) -> &Arc<KeyStore> {
        self.core.store()
    }
}

macro_rules! opaque_debug {
    ($($ty:ty),*) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty)).finish_non_exhaustive()
            }
        }
    )*};
}

opaque_debug!(Core, Ops, Leaks, Dashboard, Mcp);

macro_rules! sub_state {
    ($($part:ident: $ty:ty),*) => {$(
        impl FromRef<AppState> for $ty {
            fn from_ref(state: &AppState) -> Self {
                state.$part.clone()
            }
        }
    )*};
}

sub_state!(core: Core, ops: Ops, leaks: Leaks, dashboard: Dashboard, mcp: Mcp);
