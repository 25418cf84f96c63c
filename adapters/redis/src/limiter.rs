//! The distributed fixed-window limiter: one Redis round trip per check.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use sitequest_auth::{KeyId, LimitDecision, Quota, RateLimit, RateLimiter};
use sitequest_auth_tower::{AsyncLimiter, LimitFuture, LimiterUnavailable};

/// Counts a request if the window has room, atomically. The expiry is set on the first hit
/// only, so a key lives one window (plus a little slack) after its first request.
/// Returns `{allowed (0 or 1), count}`.
const CHECK_SCRIPT: &str = r"
local limit = tonumber(ARGV[1])
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= limit then
  return {0, n}
end
n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return {1, n}
";

/// Seconds a window's counter outlives the window, for clocks of different servers that are a
/// little apart.
const EXPIRY_SLACK: u64 = 5;

/// What to do when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailurePolicy {
    /// Refuse the request: the layer answers 503 `SERVICE_UNAVAILABLE`.
    FailClosed,
    /// Keep serving, with a per-process limit instead of the shared one (so a key gets at most
    /// the limit per window on each instance), and count each such check in
    /// [`LimiterStats::fail_open`].
    FailOpen,
}

/// Settings of a [`RedisLimiter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisLimiterConfig {
    /// Prefix of the counter keys: `{prefix}:{key id}:{window number}`.
    pub prefix: String,
    /// Longest wait for Redis on a check (also used to connect).
    pub timeout: Duration,
    /// What to do when Redis does not answer in time.
    pub policy: FailurePolicy,
    /// Once a key is known to be exhausted for the current window, refuse locally until the
    /// window ends, without a round trip.
    pub local_precheck: bool,
}

impl Default for RedisLimiterConfig {
    fn default() -> Self {
        Self {
            prefix: "sitequest:rl".to_owned(),
            timeout: Duration::from_millis(250),
            policy: FailurePolicy::FailClosed,
            local_precheck: true,
        }
    }
}

/// Counters of what a [`RedisLimiter`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimiterStats {
    /// Checks answered by Redis.
    pub redis_checks: u64,
    /// Requests refused locally because the key was known to be exhausted.
    pub local_refusals: u64,
    /// Checks decided by the per-process limit under [`FailurePolicy::FailOpen`].
    pub fail_open: u64,
    /// Requests refused because Redis was unavailable under [`FailurePolicy::FailClosed`].
    pub fail_closed: u64,
}

#[derive(Default)]
struct Counters {
    redis_checks: AtomicU64,
    local_refusals: AtomicU64,
    fail_open: AtomicU64,
    fail_closed: AtomicU64,
}

/// A fixed-window limiter shared by every server connected to the same Redis.
///
/// The semantics are those of [`RateLimiter`]: windows aligned to the epoch
/// (`window = now / period`), the same limit, remaining and reset values, per-key quotas, and a
/// refused request does not count. Each check is one atomic server-side script on the key
/// `{prefix}:{key id}:{window number}` (`INCR`, with the expiry set on the first hit only).
/// Like the in-memory limiter, it treats a time earlier than the latest it has seen as that
/// time, so a clock stepping back grants nothing extra.
///
/// The connection reconnects by itself; while Redis is unreachable each check gives up after
/// [`RedisLimiterConfig::timeout`] and applies the [`FailurePolicy`].
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: redis::Script,
    config: RedisLimiterConfig,
    latest: AtomicU64,
    exhausted: Mutex<HashMap<KeyId, u64>>,
    shadow: RateLimiter,
    counters: Counters,
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Connects to Redis at `url` (`redis://host:port/db`).
    ///
    /// # Errors
    ///
    /// When the URL is invalid or Redis cannot be reached now.
    pub async fn connect(url: &str, config: RedisLimiterConfig) -> redis::RedisResult<Self> {
        let (_, conn) = crate::connect(url, config.timeout).await?;
        Ok(Self {
            conn,
            script: redis::Script::new(CHECK_SCRIPT),
            config,
            latest: AtomicU64::new(0),
            exhausted: Mutex::new(HashMap::new()),
            shadow: RateLimiter::new(),
            counters: Counters::default(),
        })
    }

    /// What the limiter has done so far.
    #[must_use]
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            redis_checks: self.counters.redis_checks.load(Ordering::Relaxed),
            local_refusals: self.counters.local_refusals.load(Ordering::Relaxed),
            fail_open: self.counters.fail_open.load(Ordering::Relaxed),
            fail_closed: self.counters.fail_closed.load(Ordering::Relaxed),
        }
    }

    /// The Redis key counting `key`'s requests in window number `window`.
    #[must_use]
    pub fn counter_key(&self, key: KeyId, window: u64) -> String {
        format!("{}:{key}:{window}", self.config.prefix)
    }

    /// Counts one request of `key` under `quota` at `now` if its window has room.
    ///
    /// # Errors
    ///
    /// [`LimiterUnavailable`] when Redis does not answer in time and the policy is
    /// [`FailurePolicy::FailClosed`].
    pub async fn check(
        &self,
        key: KeyId,
        quota: Quota,
        now: u64,
    ) -> Result<LimitDecision, LimiterUnavailable> {
        let now = self.latest.fetch_max(now, Ordering::Relaxed).max(now);
        let period = u64::from(quota.period_secs());
        let reset_at = quota.window_end(now);
        let snapshot = |remaining| RateLimit {
            limit: quota.limit(),
            remaining,
            reset_at,
            period_secs: quota.period_secs(),
        };
        if self.config.local_precheck {
            let mut exhausted = self.exhausted.lock();
            match exhausted.get(&key) {
                Some(&until) if now < until && until == reset_at => {
                    self.counters.local_refusals.fetch_add(1, Ordering::Relaxed);
                    return Ok(LimitDecision::Limited(snapshot(0)));
                }
                Some(_) => {
                    exhausted.remove(&key);
                }
                None => {}
            }
        }
        let mut invocation = self.script.key(self.counter_key(key, now / period));
        invocation
            .arg(quota.limit())
            .arg(reset_at - now + EXPIRY_SLACK);
        let mut conn = self.conn.clone();
        let answer: Result<redis::RedisResult<(u8, u64)>, _> =
            tokio::time::timeout(self.config.timeout, invocation.invoke_async(&mut conn)).await;
        let (allowed, count) = match answer {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return self.unavailable(key, quota, now, &e.to_string()),
            Err(_) => return self.unavailable(key, quota, now, "timed out"),
        };
        self.counters.redis_checks.fetch_add(1, Ordering::Relaxed);
        let remaining = u64::from(quota.limit()).saturating_sub(count);
        let remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
        if allowed == 1 {
            Ok(LimitDecision::Allowed(snapshot(remaining)))
        } else {
            if self.config.local_precheck {
                let mut exhausted = self.exhausted.lock();
                if exhausted.len() > 100_000 {
                    exhausted.retain(|_, until| *until > now);
                }
                exhausted.insert(key, reset_at);
            }
            Ok(LimitDecision::Limited(snapshot(0)))
        }
    }

    fn unavailable(
        &self,
        key: KeyId,
        quota: Quota,
        now: u64,
        reason: &str,
    ) -> Result<LimitDecision, LimiterUnavailable> {
        match self.config.policy {
            FailurePolicy::FailClosed => {
                self.counters.fail_closed.fetch_add(1, Ordering::Relaxed);
                Err(LimiterUnavailable {
                    reason: reason.to_owned(),
                })
            }
            FailurePolicy::FailOpen => {
                self.counters.fail_open.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key_id = %key, reason, "Redis unavailable: using the per-process limit");
                Ok(self.shadow.check(key, quota, now))
            }
        }
    }
}

impl AsyncLimiter for RedisLimiter {
    fn check(&self, key: KeyId, quota: Quota, now: u64) -> LimitFuture<'_> {
        Box::pin(RedisLimiter::check(self, key, quota, now))
    }
}
