//! A tower layer that guards HTTP services with [`sitequest_auth`]: API keys, scopes and per-key
//! rate limits, with the spec's headers and JSON errors. Works with axum, hyper and tonic.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use sitequest_auth::{Authorizer, KeyStore, Scopes};
//! use sitequest_auth_tower::{AuthLayer, AuthenticatedKey};
//!
//! async fn list_servers(key: AuthenticatedKey) -> String {
//!     format!("hello {}", key.name)
//! }
//!
//! let auth = Arc::new(Authorizer::new(Arc::new(KeyStore::new())));
//! let app: Router = Router::new().route(
//!     "/v1/servers",
//!     get(list_servers).layer(AuthLayer::new(auth.clone(), Scopes::VPS_READ)),
//! );
//! # let _ = app;
//! ```
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
