//! The per-key fixed-window rate limiter, lock-striped.
//!
//! Windows are aligned to the Unix epoch: with a period of `p` seconds, the window holding `now`
//! is `now / p`, and it resets at `(now / p + 1) * p`. Each key may have its own [`Quota`].

use core::fmt;
use std::collections::HashMap;

use parking_lot::Mutex;

use crate::digest::KeyId;
use crate::id_hasher::IdBuildHasher;
use crate::quota::Quota;
use crate::rate_limit::{LimitDecision, RateLimit};
use crate::time::UnixTime;

/// Per-key state: 16 bytes with its key in the table.
#[derive(Clone, Copy)]
struct Slot {
    /// Unix time at which this slot's window ends (seconds, saturated to `u32`).
    reset_at: u32,
    /// Requests counted in that window.
    count: u32,
}

/// A stripe: a table behind its own lock, aligned so two stripes never share a cache line.
#[repr(align(128))]
struct Stripe {
    inner: Mutex<StripeState>,
}

struct StripeState {
    slots: HashMap<KeyId, Slot, IdBuildHasher>,
    /// No slot of this stripe ends before this time; the next sweep of the stripe is due then.
    sweep_due: u32,
    /// The latest time this stripe has seen. Times up to a window earlier are treated as this
    /// one, so a slot dropped by a sweep can never be counted again by a clock that went back a
    /// little; see [`StripeState::effective`].
    latest: u64,
    /// The last window computed, as (period, start, end): the next check in the same window
    /// reuses its end instead of dividing (a 64-bit division costs more than the rest of a
    /// check).
    window: (u32, u64, u64),
}

/// A per-key fixed-window rate limiter.
///
/// Keys are spread over a power-of-two number of stripes, each a small hash table behind its own
/// [`parking_lot::Mutex`] on its own cache line, chosen from the high bits of the key id. A check
/// takes one stripe lock for a few nanoseconds, so different keys rarely contend, and a key can
/// never be allowed more than its quota per window, whatever the interleaving of threads.
///
/// # Time
///
/// `now` is Unix time in seconds, passed by the caller. Each stripe remembers the latest time it
/// has seen and treats a `now` at most one window earlier as that time, so keys keep counting
/// against the latest window and a small clock step back grants nothing (nor panics). A step
/// back by more than a window is a correction of a clock that ran ahead: counting resumes at the
/// corrected time, so a quota is never frozen until the clock catches up, and the key gains at
/// most one extra window (the one counted while the clock was ahead).
/// Window ends are stored as `u32` seconds, which covers times up to 2106-02-07; later times
/// saturate, which makes the limiter refuse rather than allow.
///
/// # Memory
///
/// One 16-byte slot per key that made a request in its current window. Slots of ended windows
/// are reclaimed when the key comes back, when their stripe is next used after they end (at most
/// one pass over a stripe per second), and by [`RateLimiter::sweep`].
pub struct RateLimiter {
    stripes: Box<[Stripe]>,
    shift: u32,
}

impl RateLimiter {
    /// Default number of stripes: 4,096 (512 KiB of stripes). Threads contend only when their
    /// keys share a stripe, so many stripes let distinct keys scale across cores; a host with
    /// few keys or little memory can choose fewer with [`RateLimiter::with_stripes`].
    pub const DEFAULT_STRIPES: usize = 4096;

    /// A limiter with [`RateLimiter::DEFAULT_STRIPES`] stripes.
    #[must_use]
    pub fn new() -> Self {
        Self::with_stripes(Self::DEFAULT_STRIPES)
    }

    /// A limiter with `stripes` stripes, rounded up to a power of two between 1 and 65,536.
    #[must_use]
    pub fn with_stripes(stripes: usize) -> Self {
        let n = stripes.clamp(1, 1 << 16).next_power_of_two();
        let stripes = (0..n)
            .map(|_| Stripe {
                inner: Mutex::new(StripeState {
                    slots: HashMap::default(),
                    sweep_due: u32::MAX,
                    latest: 0,
                    window: (0, 0, 0),
                }),
            })
            .collect();
        Self {
            stripes,
            shift: 64 - n.trailing_zeros(),
        }
    }

    /// Number of stripes.
    #[must_use]
    pub fn stripe_count(&self) -> usize {
        self.stripes.len()
    }

    #[inline]
    fn stripe(&self, key: KeyId) -> &Stripe {
        // `checked_shr` handles the single-stripe case (a shift by 64).
        let i = key.as_u64().checked_shr(self.shift).unwrap_or(0) as usize;
        &self.stripes[i]
    }

    /// Counts one request of `key` under `quota` at time `now`, if the window has room.
    ///
    /// A request refused with [`LimitDecision::Limited`] does not use up quota.
    #[inline]
    pub fn check(&self, key: KeyId, quota: Quota, now: UnixTime) -> LimitDecision {
        let now = now.as_secs();
        let limit = quota.limit();
        let period = quota.period_secs();
        let mut stripe = self.stripe(key).inner.lock();
        let now = stripe.advance(now, period);
        let end = clamp32(stripe.window_end(now, quota));
        if now >= u64::from(stripe.sweep_due) {
            stripe.sweep(now);
        }
        let state = &mut *stripe;
        let slot = state.slots.entry(key).or_insert(Slot {
            reset_at: end,
            count: 0,
        });
        // A new window when the old one is over, or when the slot's window lies more than one
        // window ahead: it was counted while the clock ran ahead, and the clock was corrected.
        if slot.reset_at < end || slot.reset_at - end > period {
            *slot = Slot {
                reset_at: end,
                count: 0,
            };
        }
        let reset_at = slot.reset_at;
        let decision = if slot.count < limit {
            slot.count += 1;
            LimitDecision::Allowed(RateLimit::of_key(quota, slot.count, reset_at))
        } else {
            LimitDecision::Limited(RateLimit::of_key(quota, limit, reset_at))
        };
        if reset_at < state.sweep_due {
            state.sweep_due = reset_at;
        }
        decision
    }

    /// The state of `key`'s window at `now` without counting a request.
    #[must_use]
    pub fn peek(&self, key: KeyId, quota: Quota, now: UnixTime) -> RateLimit {
        let now = now.as_secs();
        let period = quota.period_secs();
        let stripe = self.stripe(key).inner.lock();
        let end = clamp32(quota.window_end_secs(stripe.effective(now, period)));
        let (count, reset_at) = match stripe.slots.get(&key) {
            Some(slot) if slot.reset_at >= end && slot.reset_at - end <= period => {
                (slot.count, slot.reset_at)
            }
            _ => (0, end),
        };
        RateLimit::of_key(quota, count, reset_at)
    }

    /// Forgets `key`'s current window, as when a key is removed.
    pub fn forget(&self, key: KeyId) {
        self.stripe(key).inner.lock().slots.remove(&key);
    }

    /// Drops every slot whose window ended at or before `now`, returning how many were dropped.
    ///
    /// Checks reclaim stale slots as they go; a host may also call this periodically, for example
    /// once a minute, to return memory after a burst of keys.
    pub fn sweep(&self, now: UnixTime) -> usize {
        self.stripes
            .iter()
            .map(|s| s.inner.lock().sweep(now.as_secs()))
            .sum()
    }

    /// Number of keys with a slot (active in a current window or not yet reclaimed).
    #[must_use]
    pub fn len(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| s.inner.lock().slots.len())
            .sum()
    }

    /// Whether no key has a slot.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StripeState {
    /// The time to count `now` at, for windows of `period` seconds: the latest time seen when
    /// `now` is at most one window earlier (a small step back grants nothing), else `now` itself
    /// (a correction of a clock that ran ahead, which must not freeze quotas until the clock
    /// catches up again).
    #[inline]
    fn effective(&self, now: u64, period: u32) -> u64 {
        if now >= self.latest || self.latest - now > u64::from(period) {
            now
        } else {
            self.latest
        }
    }

    /// The end of the window of `quota` holding `now`, from the last one computed when `now` is
    /// in it.
    #[inline]
    fn window_end(&mut self, now: u64, quota: Quota) -> u64 {
        let (period, start, end) = self.window;
        if period == quota.period_secs() && now >= start && now < end {
            return end;
        }
        let period = u64::from(quota.period_secs());
        let start = now - now % period;
        let end = start.saturating_add(period);
        self.window = (quota.period_secs(), start, end);
        end
    }

    /// Moves this stripe's clock to the effective time of `now` and returns it.
    #[inline]
    fn advance(&mut self, now: u64, period: u32) -> u64 {
        self.latest = self.effective(now, period);
        self.latest
    }

    fn sweep(&mut self, now: u64) -> usize {
        // Only moves the clock forward: a time far behind the latest is taken as a correction by
        // the next check, which knows the window length.
        self.latest = self.latest.max(now);
        let before = self.slots.len();
        let now32 = clamp32(now);
        let mut due = u32::MAX;
        self.slots.retain(|_, slot| {
            // A saturated window end (beyond 2106) never expires, so it keeps refusing.
            let keep = slot.reset_at > now32 || slot.reset_at == u32::MAX;
            if keep {
                due = due.min(slot.reset_at);
            }
            keep
        });
        // At most one pass per second per stripe, however the windows are staggered.
        self.sweep_due = due.max(now32.saturating_add(1));
        if self.slots.capacity() > 64 && self.slots.len() < self.slots.capacity() / 4 {
            self.slots.shrink_to_fit();
        }
        before - self.slots.len()
    }
}

#[inline]
fn clamp32(t: u64) -> u32 {
    u32::try_from(t).unwrap_or(u32::MAX)
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("stripes", &self.stripes.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::LimitPolicy;

    fn at(secs: u64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    const K: KeyId = KeyId::from_u64(0x0123_4567_89ab_cdef);

    #[test]
    fn sixty_per_minute_then_limited_until_the_reset() {
        let l = RateLimiter::new();
        let q = Quota::SPEC;
        let t0 = 1_700_000_000 - 1_700_000_000 % 60; // start of a window
        for i in 0..60u32 {
            let d = l.check(K, q, at(t0 + 30));
            assert_eq!(
                d,
                LimitDecision::Allowed(RateLimit {
                    limit: 60,
                    remaining: 59 - i,
                    reset_at: at(t0 + 60),
                    period_secs: 60,
                    policy: LimitPolicy::Key,
                })
            );
        }
        let d = l.check(K, q, at(t0 + 59));
        assert_eq!(
            d,
            LimitDecision::Limited(RateLimit {
                limit: 60,
                remaining: 0,
                reset_at: at(t0 + 60),
                period_secs: 60,
                policy: LimitPolicy::Key,
            })
        );
        // A refused request does not count: the next window starts fresh.
        let d = l.check(K, q, at(t0 + 60));
        assert_eq!(d.rate_limit().remaining, 59);
        assert_eq!(d.rate_limit().reset_at, at(t0 + 120));
    }

    #[test]
    fn clock_going_backwards_grants_nothing_extra() {
        let l = RateLimiter::new();
        let q = Quota::new(2, 60).unwrap();
        assert!(l.check(K, q, at(120)).is_allowed());
        assert!(l.check(K, q, at(121)).is_allowed());
        // Back into the previous window, by less than a window: still counted against the
        // latest one.
        let d = l.check(K, q, at(62));
        assert_eq!(
            d,
            LimitDecision::Limited(RateLimit {
                limit: 2,
                remaining: 0,
                reset_at: at(180),
                period_secs: 60,
                policy: LimitPolicy::Key,
            })
        );
        assert_eq!(l.check(K, q, at(121)).rate_limit().reset_at, at(180));
        assert!(!l.check(K, q, at(179)).is_allowed());
        assert!(l.check(K, q, at(180)).is_allowed());
    }

    #[test]
    fn a_clock_corrected_back_by_more_than_a_window_does_not_freeze_the_quota() {
        // One request while the clock is an hour ahead, then the real time again.
        let l = RateLimiter::new();
        let q = Quota::SPEC;
        let t = 1_800_000_000;
        assert!(l.check(K, q, at(t + 3600)).is_allowed());
        for i in 0..60 {
            let d = l.check(K, q, at(t + 1));
            assert!(d.is_allowed(), "request {i} after the correction");
            assert_eq!(d.rate_limit().reset_at, at(t + 60));
        }
        assert!(!l.check(K, q, at(t + 2)).is_allowed());
        assert_eq!(l.peek(K, q, at(t + 2)).remaining, 0);
        // The corrected clock now counts as the latest: a small step back is held to it.
        assert!(!l.check(K, q, at(t)).is_allowed());
        assert!(l.check(K, q, at(t + 60)).is_allowed());
    }

    #[test]
    fn a_correction_is_seen_by_every_key_of_a_stripe_and_by_sweeps() {
        let l = RateLimiter::with_stripes(1);
        let other = KeyId::from_u64(7);
        let q = Quota::new(1, 60).unwrap();
        let t = 1_800_000_000;
        assert!(l.check(K, q, at(t)).is_allowed());
        // Two hours ahead: K's window looks over and is reclaimed.
        assert!(l.check(other, q, at(t + 7200)).is_allowed());
        // Back at the real time: at most one extra window for K, a fresh one for the other key.
        assert!(l.check(K, q, at(t + 1)).is_allowed());
        assert!(!l.check(K, q, at(t + 2)).is_allowed());
        assert!(l.check(other, q, at(t + 1)).is_allowed());
        assert!(!l.check(other, q, at(t + 2)).is_allowed());
        // A sweep at the real time keeps the current windows.
        assert_eq!(l.sweep(at(t + 3)), 0);
        assert!(!l.check(K, q, at(t + 3)).is_allowed());
        assert!(l.check(K, q, at(t + 60)).is_allowed());
    }

    #[test]
    fn keys_are_independent_and_overrides_apply() {
        let l = RateLimiter::with_stripes(1);
        let other = KeyId::from_u64(1);
        let one = Quota::new(1, 60).unwrap();
        assert!(l.check(K, one, at(0)).is_allowed());
        assert!(!l.check(K, one, at(1)).is_allowed());
        assert!(l.check(other, Quota::SPEC, at(1)).is_allowed());
        assert_eq!(l.peek(other, Quota::SPEC, at(2)).remaining, 59);
        assert_eq!(l.peek(K, Quota::SPEC, at(2)).remaining, 59);
    }

    #[test]
    fn stale_slots_are_reclaimed() {
        let l = RateLimiter::with_stripes(4);
        for i in 0..1000u64 {
            let _ = l.check(
                KeyId::from_u64(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                Quota::SPEC,
                at(10),
            );
        }
        assert_eq!(l.len(), 1000);
        assert_eq!(l.sweep(at(59)), 0);
        assert_eq!(l.sweep(at(60)), 1000);
        assert!(l.is_empty());

        // Also reclaimed on access once the window is over.
        for i in 0..1000u64 {
            let _ = l.check(
                KeyId::from_u64(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                Quota::SPEC,
                at(70),
            );
        }
        let _ = l.check(K, Quota::SPEC, at(130));
        assert!(l.len() < 1000, "{}", l.len());
    }

    #[test]
    fn far_future_times_do_not_panic_and_refuse() {
        let l = RateLimiter::new();
        let q = Quota::new(1, 60).unwrap();
        assert!(l.check(K, q, at(u64::MAX)).is_allowed());
        assert!(!l.check(K, q, at(u64::MAX)).is_allowed());
        assert!(!l.check(K, q, at(u64::MAX - 100_000)).is_allowed());
        let _ = l.sweep(at(u64::MAX));
    }
}
