//! Redis backend for `sitequest-auth`: the same per-key limit, and instant revocation, across
//! many server instances.
//!
//! - [`RedisLimiter`]: the core limiter's fixed windows, counted in Redis with one atomic round
//!   trip per check, with a failure policy and a local pre-check for exhausted keys. It is an
//!   [`AsyncLimiter`](sitequest_auth::AsyncLimiter), the trait core defines, so any adapter
//!   that takes one (the tower layer's `AuthLayer::with_limiter`, for example) takes it. This
//!   crate depends on `sitequest-auth` alone.
//! - [`KeySync`]: key records shared through a Redis hash and a pub/sub channel, each entry
//!   signed with a [`SyncSecret`], so a key issued, revoked or rotated on one instance is
//!   honoured by every other at once, and whoever can write to Redis cannot forge one.
//!
//! Connections heal by themselves: TCP keepalive, a ping every second, and a stalled connection
//! (one that stays open but no longer answers) replaced after two failures in a row.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod limiter;
mod link;
mod sync;
#[cfg(feature = "test-support")]
pub mod testing;

pub use limiter::{FailurePolicy, LimiterStats, RedisLimiter, RedisLimiterConfig};
pub use sync::{
    KeyChange, KeySync, KeySyncConfig, SyncError, SyncSecret, SyncStats, WeakSyncSecret,
};
