//! The quota of requests without a valid key, per client address: [`AddressLimiter`].

use core::fmt;
use core::hash::BuildHasher;
use core::net::IpAddr;
use core::sync::atomic::{AtomicU64, Ordering};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;

use parking_lot::Mutex;

use crate::quota::Quota;
use crate::rate_limit::{LimitDecision, LimitPolicy, RateLimit};
use crate::time::UnixTime;

const STRIPES: usize = 64;

/// Counts requests that carry no valid key (missing, malformed, unknown, revoked or expired)
/// per client address, in fixed windows of one [`Quota`], with bounded memory.
///
/// An IPv6 client is counted by its /64 network, the block one subscriber usually holds, so
/// that cycling through the addresses of one network gains nothing.
///
/// # Memory
///
/// At most [`AddressLimiter::max_addresses`] addresses are tracked (64 bytes or less each).
/// When a new address finds its share of the table full, windows that have ended are reclaimed
/// first; if none has, one tracked address is dropped and starts over. A flood of spoofed or
/// distinct addresses therefore costs bounded memory, and each of its addresses gets no more
/// than the quota.
///
/// ```
/// use sitequest_auth::{AddressLimiter, Quota, UnixTime};
/// let limiter = AddressLimiter::new(Quota::per_minute(2));
/// let (ip, now) = ("192.0.2.1".parse().unwrap(), UnixTime::from_secs(1_800_000_000));
/// assert!(limiter.check(ip, now).is_allowed());
/// assert!(limiter.check(ip, now).is_allowed());
/// assert!(!limiter.check(ip, now).is_allowed());
/// assert_eq!(limiter.peek(ip, now).remaining, 0);
/// ```
pub struct AddressLimiter {
    quota: Quota,
    policy: LimitPolicy,
    per_stripe: usize,
    /// Odd multiplier choosing a stripe, drawn at random like the tables' hash keys.
    spread: u64,
    stripes: Box<[Stripe]>,
}

struct Stripe {
    table: Mutex<HashMap<u128, Slot, RandomState>>,
    /// The end of the latest window in which an address of this stripe used up its quota:
    /// until then [`AddressLimiter::exhausted`] must look, and after it need not take the lock.
    blocked_until: AtomicU64,
}

#[derive(Clone, Copy)]
struct Slot {
    reset_at: u64,
    count: u32,
}

impl AddressLimiter {
    /// Default bound on tracked addresses: 65,536.
    pub const DEFAULT_MAX_ADDRESSES: usize = 65_536;

    /// Counts each address under `quota`, tracking up to [`Self::DEFAULT_MAX_ADDRESSES`].
    #[must_use]
    pub fn new(quota: Quota) -> Self {
        Self::with_max_addresses(quota, Self::DEFAULT_MAX_ADDRESSES)
    }

    /// Counts each address under `quota`, tracking at most `max` of them (at least 64).
    #[must_use]
    pub fn with_max_addresses(quota: Quota, max: usize) -> Self {
        let hasher = RandomState::new();
        Self {
            quota,
            policy: LimitPolicy::Unauthenticated,
            per_stripe: max.max(STRIPES) / STRIPES,
            spread: hasher.hash_one(0x5eed_u64) | 1,
            stripes: (0..STRIPES)
                .map(|_| Stripe {
                    table: Mutex::new(HashMap::with_hasher(hasher.clone())),
                    blocked_until: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// Names the windows this limiter reports (by default
    /// [`LimitPolicy::Unauthenticated`]), for a limiter that counts something else per address.
    #[must_use]
    pub fn with_policy(mut self, policy: LimitPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The quota of each address.
    #[must_use]
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// The most addresses tracked at once.
    #[must_use]
    pub fn max_addresses(&self) -> usize {
        self.per_stripe * STRIPES
    }

    fn slot_key(ip: IpAddr) -> u128 {
        match ip.to_canonical() {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            // The /64 network, with a bit no IPv4 key has.
            IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 64),
        }
    }

    #[inline]
    fn stripe(&self, key: u128) -> &Stripe {
        #[allow(clippy::cast_possible_truncation)] // folding the key's halves
        let folded = (key as u64) ^ ((key >> 64) as u64);
        // The top six bits of a multiply by a random odd number.
        &self.stripes[(folded.wrapping_mul(self.spread) >> 58) as usize]
    }

    fn rate_limit(&self, count: u32, reset_at: u64) -> RateLimit {
        RateLimit {
            limit: self.quota.limit(),
            remaining: self.quota.limit().saturating_sub(count),
            reset_at: UnixTime::from_secs(reset_at),
            period_secs: self.quota.period_secs(),
            policy: self.policy,
        }
    }

    /// The window of `ip` at `now`, without counting a request.
    #[must_use]
    pub fn peek(&self, ip: IpAddr, now: UnixTime) -> RateLimit {
        let key = Self::slot_key(ip);
        self.window(self.stripe(key), key, now)
    }

    /// The window of the address `key` in `stripe` at `now`, without counting.
    fn window(&self, stripe: &Stripe, key: u128, now: UnixTime) -> RateLimit {
        let end = self.quota.window_end(now).as_secs();
        let count = match stripe.table.lock().get(&key) {
            Some(s) if s.reset_at == end => s.count,
            _ => 0,
        };
        self.rate_limit(count, end)
    }

    /// The window of `ip` if it has no room left at `now`: the check to make before the work a
    /// request costs (hashing a key), so that a client past its quota costs nothing more. While
    /// no address of its stripe is at its limit, this is one atomic load, without a lock.
    #[must_use]
    #[inline]
    pub fn exhausted(&self, ip: IpAddr, now: UnixTime) -> Option<RateLimit> {
        let key = Self::slot_key(ip);
        let stripe = self.stripe(key);
        if now.as_secs() >= stripe.blocked_until.load(Ordering::Relaxed) {
            return None;
        }
        let window = self.window(stripe, key, now);
        (window.remaining == 0).then_some(window)
    }

    /// Counts one request from `ip` at `now`, if its window has room. A refused request is not
    /// counted.
    pub fn check(&self, ip: IpAddr, now: UnixTime) -> LimitDecision {
        let key = Self::slot_key(ip);
        let end = self.quota.window_end(now).as_secs();
        let limit = self.quota.limit();
        let stripe = self.stripe(key);
        let mut table = stripe.table.lock();
        if !table.contains_key(&key) && table.len() >= self.per_stripe {
            table.retain(|_, s| s.reset_at > now.as_secs());
            if table.len() >= self.per_stripe {
                if let Some(victim) = table.keys().next().copied() {
                    table.remove(&victim);
                }
            }
        }
        let slot = table.entry(key).or_insert(Slot {
            reset_at: end,
            count: 0,
        });
        if slot.reset_at != end {
            *slot = Slot {
                reset_at: end,
                count: 0,
            };
        }
        let decision = if slot.count < limit {
            slot.count += 1;
            LimitDecision::Allowed(self.rate_limit(slot.count, end))
        } else {
            LimitDecision::Limited(self.rate_limit(slot.count, end))
        };
        if slot.count >= limit {
            stripe.blocked_until.fetch_max(end, Ordering::Relaxed);
        }
        decision
    }

    /// Number of addresses tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.stripes.iter().map(|s| s.table.lock().len()).sum()
    }

    /// Whether no address is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for AddressLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddressLimiter")
            .field("quota", &self.quota)
            .field("max_addresses", &self.max_addresses())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_each_address_in_its_window() {
        let l = AddressLimiter::new(Quota::per_minute(3));
        let a = ip("192.0.2.1");
        for left in [2, 1, 0] {
            assert_eq!(
                l.check(a, NOW),
                LimitDecision::Allowed(l.rate_limit(3 - left, 1_800_000_060))
            );
        }
        assert!(!l.check(a, NOW).is_allowed());
        assert!(l.check(ip("192.0.2.2"), NOW).is_allowed());
        assert!(!l.check(a, NOW.plus_secs(59)).is_allowed());
        assert!(l.check(a, NOW.plus_secs(60)).is_allowed());
        assert_eq!(l.peek(a, NOW.plus_secs(60)).remaining, 2);
        assert_eq!(l.peek(a, NOW).policy, LimitPolicy::Unauthenticated);
        assert_eq!(l.exhausted(a, NOW.plus_secs(60)), None);
        assert_eq!(l.exhausted(ip("192.0.2.2"), NOW), None);
        let _ = l.check(a, NOW.plus_secs(60));
        let _ = l.check(a, NOW.plus_secs(60));
        assert_eq!(
            l.exhausted(a, NOW.plus_secs(61)),
            Some(l.rate_limit(3, 1_800_000_120))
        );
    }

    #[test]
    fn ipv6_counts_by_network_and_mapped_ipv4_as_ipv4() {
        let l = AddressLimiter::new(Quota::per_minute(2));
        assert!(l.check(ip("2001:db8:1:2::1"), NOW).is_allowed());
        assert!(l.check(ip("2001:db8:1:2::ffff"), NOW).is_allowed());
        assert!(!l.check(ip("2001:db8:1:2:3::9"), NOW).is_allowed());
        assert!(l.check(ip("2001:db8:1:3::1"), NOW).is_allowed());
        assert!(l.check(ip("192.0.2.9"), NOW).is_allowed());
        assert!(l.check(ip("::ffff:192.0.2.9"), NOW).is_allowed());
        assert!(!l.check(ip("192.0.2.9"), NOW).is_allowed());
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_addresses() {
        let l = AddressLimiter::with_max_addresses(Quota::per_minute(60), 1024);
        for i in 0..100_000u32 {
            let _ = l.check(IpAddr::V4(i.into()), NOW);
        }
        assert!(l.len() <= 1024, "{}", l.len());
        // Ended windows are reclaimed before live ones.
        let later = NOW.plus_secs(120);
        for i in 0..10u32 {
            let _ = l.check(IpAddr::V4((1_000_000 + i).into()), later);
        }
        assert!(l.len() <= 1024);
    }
}
