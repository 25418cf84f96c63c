//! A tower layer that guards HTTP services with [`sitequest_auth`]: API keys, scopes and per-key
//! rate limits, with the spec's headers and JSON errors. Works with axum, hyper and tonic.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use axum::{extract::ConnectInfo, routing::get, Router};
//! use sitequest_auth::{Authorizer, KeyStore, Scopes};
//! use sitequest_auth_tower::{AuthLayer, AuthenticatedKey, ClientIp};
//!
//! async fn list_servers(key: AuthenticatedKey) -> String {
//!     format!("hello {}", key.name)
//! }
//!
//! let auth = Arc::new(Authorizer::new(Arc::new(KeyStore::new())));
//! // The client's address, for key allowlists and the quota of requests without a valid key:
//! // serve with `app.into_make_service_with_connect_info::<SocketAddr>()`.
//! let peer: ClientIp = |ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
//! let app: Router = Router::new().route(
//!     "/v1/servers",
//!     get(list_servers).layer(AuthLayer::new(auth.clone(), Scopes::VPS_READ).with_client_ip(peer)),
//! );
//! # let _ = app;
//! ```
//!
//! Without [`AuthLayer::with_client_ip`] no client address is known: requests without a valid
//! key are not counted per address (their 401s carry no rate-limit fields) and keys with an
//! address allowlist are refused.
//!
//! Every response for a known key (2xx, 403, 429) carries `X-RateLimit-Limit`,
//! `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds), and the IETF fields
//! `RateLimit-Policy: "default";q=60;w=60` and `RateLimit: "default";r=<remaining>;t=<seconds>`
//! (draft-ietf-httpapi-ratelimit-headers-10). A 429 adds `Retry-After`. Denials are
//! `application/json` bodies `{"error": ..., "code": ..., "status": ...}`.
//!
//! [`AuthLayer::with_observer`] tells a callback about every decision (an [`Outcome`]: granted,
//! denied with its reason, or unavailable), for metrics, without tying this crate to a metrics
//! library.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod extract;
mod future;
mod headers;
mod layer;
mod limit;

pub use extract::AuthenticatedKey;
pub use future::ResponseFuture;
pub use layer::{system_clock, AuthLayer, AuthService, ClientIp, Clock};
pub use limit::{AsyncLimiter, LimitFuture, LimiterUnavailable};
pub use sitequest_auth::SystemClock;
pub use sitequest_auth::TimeProvider;
pub use sitequest_auth::TrustedProxies;
pub use sitequest_auth::{Observer, Outcome};
