//! Sharing through Redis, beside the data file on the bottom floor: the limiter and the key-change
//! channel connected with the server's settings, changes from other instances applied and saved,
//! and this instance's changes published.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sitequest_auth::{KeyRecord, KeyStore};
use sitequest_auth_redis::{
    FailurePolicy, KeyChange, KeySync, KeySyncConfig, RedisLimiter, RedisLimiterConfig, SyncSecret,
};

use crate::db;

/// Prefix of the Redis counter keys.
pub const REDIS_LIMITER_PREFIX: &str = "sitequest:rl";
/// Prefix of the Redis key-change hash and channel.
pub const REDIS_SYNC_PREFIX: &str = "sitequest:keys";
/// Longest wait for Redis.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// Default longest time without confirming that key changes are in sync.
pub const DEFAULT_MAX_SYNC_AGE: Duration = Duration::from_secs(10);

pub(crate) async fn connect_redis(
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
pub(crate) fn follow_changes(
    db: &db::DbHandle,
    store: &Arc<KeyStore>,
    sync: Arc<KeySync>,
) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<KeyChange>>();
    let db = db.clone();
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
    let follower = sync.spawn(store.clone(), move |batch| {
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
pub(crate) fn share_changes(sync: Arc<KeySync>) -> tokio::sync::mpsc::UnboundedSender<KeyRecord> {
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
