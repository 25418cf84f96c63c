//! An actix-web middleware that guards routes with [`sitequest_auth`]: API keys, scopes and
//! per-key rate limits, with the spec's headers and JSON errors, and an extractor for the key.
//!
//! ```
//! use std::sync::Arc;
//! use actix_web::{web, App};
//! use sitequest_auth::{Authorizer, KeyStore, Scopes};
//! use sitequest_auth_actix::{AuthMiddleware, AuthenticatedKey};
//!
//! async fn list_servers(key: AuthenticatedKey) -> String {
//!     format!("hello {}", key.name)
//! }
//!
//! let auth = Arc::new(Authorizer::new(Arc::new(KeyStore::new())));
//! let app = App::new().service(
//!     web::scope("/v1/servers")
//!         .wrap(AuthMiddleware::new(auth.clone(), Scopes::VPS_READ))
//!         .route("", web::get().to(list_servers)),
//! );
//! # let _ = app;
//! ```
//!
//! It answers exactly as the tower layer (`sitequest-auth-tower`) does, and both are tested
//! against one table of cases (`tests/data/adapter_conformance.json` at the repository root).
//! Every header and body of an answer is rendered by core ([`Decision::headers`],
//! [`Denial::body`]); the middleware only copies them onto actix's response:
//!
//! - a granted request reaches the wrapped service with an [`AuthenticatedKey`] in its
//!   extensions, and its response leaves with the rate-limit fields;
//! - a refused one is answered by the middleware (the wrapped service is never called) with
//!   core's status, its `application/json` body and its headers;
//! - two `Authorization` fields in one request are refused as a malformed credential.
//!
//! [`Decision::headers`]: sitequest_auth::Decision::headers
//! [`Denial::body`]: sitequest_auth::Denial::body
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod clock;
mod extract;
mod future;
mod middleware;
mod response;

pub use clock::{Clock, SystemClock};
pub use extract::AuthenticatedKey;
pub use future::ResponseFuture;
pub use middleware::{AuthMiddleware, AuthService};
pub use sitequest_auth::{
    AsyncLimiter, LimitFuture, LimiterUnavailable, TimeProvider, TrustedProxies,
};
pub use sitequest_auth::{Observer, Outcome};
