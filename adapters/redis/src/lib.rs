//! Redis backend for `sitequest-auth`: the same per-key limit, and instant revocation, across
//! many server instances.
//!
//! - [`RedisLimiter`]: the core limiter's fixed windows, counted in Redis with one atomic round
//!   trip per check, with a failure policy and a local pre-check for exhausted keys. It is an
//!   [`AsyncLimiter`](sitequest_auth_tower::AsyncLimiter), so
//!   [`AuthLayer::with_limiter`](sitequest_auth_tower::AuthLayer::with_limiter) takes it.
//! - [`KeySync`]: key records shared through a Redis hash and a pub/sub channel, so a key issued,
//!   revoked or rotated on one instance is honoured by every other at once.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod limiter;
mod sync;
#[cfg(feature = "test-support")]
pub mod testing;

pub use limiter::{FailurePolicy, LimiterStats, RedisLimiter, RedisLimiterConfig};
pub use sync::{KeySync, SyncError};

/// Opens a client and a reconnecting connection whose connects and responses time out after
/// `timeout`. Gives up if Redis cannot be reached within four timeouts.
async fn connect(
    url: &str,
    timeout: std::time::Duration,
) -> redis::RedisResult<(redis::Client, redis::aio::ConnectionManager)> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_max_delay(std::time::Duration::from_millis(500));
    let conn = tokio::time::timeout(
        timeout * 4,
        client.get_connection_manager_with_config(config),
    )
    .await
    .map_err(|_| {
        redis::RedisError::from((redis::ErrorKind::Io, "timed out connecting to Redis"))
    })??;
    Ok((client, conn))
}
