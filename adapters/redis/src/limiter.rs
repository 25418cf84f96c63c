//! The distributed fixed-window limiter: one Redis round trip per check.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use sitequest_auth::{
    AsyncLimiter, KeyId, LimitDecision, LimitFuture, LimiterUnavailable, Quota, RateLimit,
    RateLimiter, Throttle, UnixTime,
};

use crate::link::Link;
use crate::sync::KeySync;

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

/// The fail-open warnings of this process: while Redis is down every check makes one, and logging
/// each would let a flood of requests fill the disk and slow the server. At most one a second,
/// with the count of those held back.
static FAIL_OPEN_LOG: Throttle = Throttle::new(Duration::from_secs(1));

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
    /// How often the connection is pinged; after two failures in a row it is replaced.
    pub health_interval: Duration,
}

impl Default for RedisLimiterConfig {
    fn default() -> Self {
        Self {
            prefix: "sitequest:rl".to_owned(),
            timeout: Duration::from_millis(250),
            policy: FailurePolicy::FailClosed,
            local_precheck: true,
            health_interval: Duration::from_secs(1),
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
    /// Requests refused under [`FailurePolicy::FailClosed`] because the key sync given to
    /// [`RedisLimiter::guard_with`] could not confirm it was in sync (counted in
    /// `fail_closed` too).
    pub stale_refusals: u64,
    /// Times the stalled connection was replaced.
    pub reconnects: u64,
}

#[derive(Default)]
struct Counters {
    redis_checks: AtomicU64,
    local_refusals: AtomicU64,
    fail_open: AtomicU64,
    fail_closed: AtomicU64,
    stale_refusals: AtomicU64,
}

/// A key sync the limiter answers for: past `max_age` without a confirmation, revocations made
/// elsewhere may be missing here.
struct Guard {
    sync: Arc<KeySync>,
    max_age: Duration,
    /// The "not in sync" errors under fail-open: one every five seconds.
    stale_log: Throttle,
}

/// A fixed-window limiter shared by every server connected to the same Redis.
///
/// The semantics are those of [`RateLimiter`]: windows aligned to the epoch
/// (`window = now / period`), the same limit, remaining and reset values, per-key quotas, and a
/// refused request does not count. Each check is one atomic server-side script on the key
/// `{prefix}:{key id}:{window number}` (`INCR`, with the expiry set on the first hit only).
/// Like the in-memory limiter, it treats a time at most a window earlier than the latest it has
/// seen (for keys with windows of that length) as that time, so a clock stepping back grants
/// nothing extra, and a time more than a window earlier as a correction of a clock that ran
/// ahead: counting resumes at it.
///
/// The connection heals by itself: it is pinged every
/// [`RedisLimiterConfig::health_interval`], and replaced after two failures in a row, stalled
/// or dropped. While Redis is unreachable each check gives up after
/// [`RedisLimiterConfig::timeout`] and applies the [`FailurePolicy`].
pub struct RedisLimiter {
    link: Arc<Link>,
    guard: Option<Guard>,
    script: redis::Script,
    config: RedisLimiterConfig,
    latest: Mutex<HashMap<u64, u64>>,
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
        let link = Link::connect(url, config.timeout, config.health_interval).await?;
        Ok(Self {
            link,
            guard: None,
            script: redis::Script::new(CHECK_SCRIPT),
            config,
            latest: Mutex::new(HashMap::new()),
            exhausted: Mutex::new(HashMap::new()),
            shadow: RateLimiter::new(),
            counters: Counters::default(),
        })
    }

    /// Makes the limiter answer for `sync` too: when it has not confirmed being in sync for
    /// longer than `max_age` (see [`KeySync::sync_age`]), this instance can no longer vouch for
    /// revocations made on others. Under [`FailurePolicy::FailClosed`] every check is then
    /// unavailable (the layer answers 503) until the sync is confirmed again; under
    /// [`FailurePolicy::FailOpen`] checks go on and an error is logged every few seconds.
    #[must_use]
    pub fn guard_with(mut self, sync: Arc<KeySync>, max_age: Duration) -> Self {
        self.guard = Some(Guard {
            sync,
            max_age,
            stale_log: Throttle::new(Duration::from_secs(5)),
        });
        self
    }

    /// What the limiter has done so far.
    #[must_use]
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            redis_checks: self.counters.redis_checks.load(Ordering::Relaxed),
            local_refusals: self.counters.local_refusals.load(Ordering::Relaxed),
            fail_open: self.counters.fail_open.load(Ordering::Relaxed),
            fail_closed: self.counters.fail_closed.load(Ordering::Relaxed),
            stale_refusals: self.counters.stale_refusals.load(Ordering::Relaxed),
            reconnects: self.link.rebuilds(),
        }
    }

    /// Refuses a check when the guarded sync is stale and the policy is fail-closed.
    fn check_guard(&self) -> Result<(), LimiterUnavailable> {
        let Some(guard) = &self.guard else {
            return Ok(());
        };
        if guard.sync.is_in_sync(guard.max_age) {
            return Ok(());
        }
        let age = guard.sync.sync_age();
        match self.config.policy {
            FailurePolicy::FailClosed => {
                self.counters.fail_closed.fetch_add(1, Ordering::Relaxed);
                self.counters.stale_refusals.fetch_add(1, Ordering::Relaxed);
                Err(LimiterUnavailable {
                    reason: "key changes are not confirmed in sync".to_owned(),
                })
            }
            FailurePolicy::FailOpen => {
                if let Some(suppressed) = guard.stale_log.allow(Instant::now()) {
                    tracing::error!(
                        unconfirmed_for = ?age,
                        suppressed,
                        bound = ?guard.max_age,
                        "key changes not confirmed in sync: revocations made on other instances \
                         may not be honoured here (--redis-failure open)"
                    );
                }
                Ok(())
            }
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
        now: UnixTime,
    ) -> Result<LimitDecision, LimiterUnavailable> {
        self.check_guard()?;
        let period = u64::from(quota.period_secs());
        let now = self.effective_time(now.as_secs(), period);
        let reset_at = quota.window_end(UnixTime::from_secs(now)).as_secs();
        let snapshot = |remaining| RateLimit {
            limit: quota.limit(),
            remaining,
            reset_at: UnixTime::from_secs(reset_at),
            period_secs: quota.period_secs(),
            policy: sitequest_auth::LimitPolicy::Key,
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
        let answer: redis::RedisResult<(u8, u64)> = self
            .link
            .run(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await;
        let (allowed, count) = match answer {
            Ok(v) => v,
            Err(e) => return self.unavailable(key, quota, now, &e.to_string()),
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

    /// The time to count at: the latest time seen for a step back of at most a window, else
    /// `now` (a correction, which must not freeze counting until the clock catches up).
    fn effective_time(&self, now: u64, period: u64) -> u64 {
        // One latest time per window length: a correction seen by keys with short windows must
        // not move the clock of keys with long ones (whose counters are keyed by window number).
        let mut latest = self.latest.lock();
        let seen = latest.entry(period).or_insert(0);
        if now < *seen && *seen - now <= period {
            return *seen;
        }
        *seen = now;
        now
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
                if let Some(suppressed) = FAIL_OPEN_LOG.allow(Instant::now()) {
                    tracing::warn!(
                        key_id = %key,
                        reason,
                        suppressed,
                        "Redis unavailable: using the per-process limit"
                    );
                }
                Ok(self.shadow.check(key, quota, UnixTime::from_secs(now)))
            }
        }
    }
}

impl AsyncLimiter for RedisLimiter {
    fn check(self: Arc<Self>, key: KeyId, quota: Quota, now: UnixTime) -> LimitFuture<'static> {
        Box::pin(async move { RedisLimiter::check(&self, key, quota, now).await })
    }
}
