//! API-key authentication, permission scopes and per-key rate limiting for the Sitequest API.
//!
//! The crate is sans-IO: it opens no socket or file, starts no task and never reads the clock.
//! The host passes the raw `Authorization` header value and the current Unix time, and gets back
//! a [`Decision`] that says everything needed to answer the request.
//!
//! ```
//! use std::sync::Arc;
//! use sitequest_auth::{AuthRequest, Authorizer, Decision, KeyStore, NewKey, Preset, Scopes, UnixTime};
//!
//! let now = UnixTime::from_secs(1_800_000_000); // from the host's clock
//! let store = Arc::new(KeyStore::new());
//! let issued = store.issue(&NewKey::new("ci deploy", Preset::ReadOnly), now).unwrap();
//! // Show the plaintext once; only its digest is kept.
//! let header = format!("Bearer {}", &*issued.key.expose_secret());
//!
//! let auth = Authorizer::new(store);
//! match auth.authorize(&AuthRequest::new(Some(header.as_bytes()), Scopes::VPS_READ, now)) {
//!     Decision::Granted(grant) => {
//!         assert_eq!(grant.rate_limit.remaining, 59);
//!         assert_eq!(grant.headers(now)[0], ("X-RateLimit-Limit", "60".to_string()));
//!     }
//!     Decision::Denied(denial) => unreachable!("{:?}", denial.reason()),
//! }
//!
//! // The key is read only: a write is refused with the spec's 403 body.
//! let denial = auth
//!     .authorize(&AuthRequest::new(Some(header.as_bytes()), Scopes::VPS_WRITE, now))
//!     .into_result()
//!     .unwrap_err();
//! assert_eq!(denial.status(), 403);
//! assert_eq!(
//!     denial.body(),
//!     r#"{"error":"API key lacks the required scope(s)","code":"INSUFFICIENT_SCOPE","status":403}"#
//! );
//! ```
//!
//! # Features
//!
//! - `serde`: (de)serialize [`Scopes`] (as a list of names), [`KeyId`], [`KeyDigest`],
//!   [`Quota`], [`Last4`] and [`KeyRecord`].
//! - `http`: the `http` crate's types: `Decision::header_map`, `RateLimit::insert_headers`,
//!   `Grant::insert_headers`, `Denial::insert_headers` and `Denial::status_code`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod address;
mod address_limiter;
mod async_limiter;
mod authorize;
mod bearer;
mod decision;
mod digest;
mod error;
mod gate;
mod id_hasher;
mod key;
mod limiter;
mod name;
mod new_key;
mod observe;
mod policy;
mod quota;
mod rate_limit;
mod record;
mod request;
mod response;
mod scope;
mod store;
mod table;
mod throttle;
mod time;

pub use address::{
    Cidr, CidrParseError, IpAllowlist, TrustedProxies, MAX_ALLOWED_RANGES, MAX_FORWARDED_HOPS,
};
pub use address_limiter::AddressLimiter;
pub use async_limiter::{
    poll_limit, AsyncLimiter, LimitFuture, LimiterUnavailable, LIMITER_TIMEOUT,
};
pub use authorize::Authorizer;
pub use bearer::{bearer_token, parse_bearer, BearerError};
pub use decision::{Authenticated, Decision, Denial, DenialReason, Grant};
pub use digest::{DigestParseError, KeyDigest, KeyId, KeyIdParseError};
pub use error::ErrorCode;
pub use gate::{Finish, Pending, Step};
pub use key::{ApiKey, KeyParseError, Last4, Last4Error, KEY_LEN, KEY_PREFIX, SECRET_LEN};
pub use limiter::RateLimiter;
pub use name::KeyName;
pub use new_key::{IssuedKey, NewKey};
pub use observe::{observe, Observer, Outcome};
pub use policy::{KeyPolicy, Lifetime, LifetimeParseError, PolicyError};
pub use quota::{Quota, QuotaParseError};
pub use rate_limit::{LimitDecision, LimitPolicy, RateLimit};
pub use record::{InvalidRecord, KeyRecord, KeyStatus, MAX_NAME_LEN, MAX_TIME};
pub use request::AuthRequest;
pub use response::{header, FieldValue, Header, InvalidRealm, RateLimitField, Realm};
pub use scope::{CustomScopes, EmptyScopes, Preset, ScopeParseError, Scopes, UnknownPreset};
pub use store::{KeyStore, Rotation, StoreError};
pub use throttle::Throttle;
pub use time::{SystemClock, TimeProvider, UnixTime};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
