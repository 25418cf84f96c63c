//! The quota of requests without a valid key, per client address: [`AddressLimiter`].

use core::fmt;
use core::hash::BuildHasher;
use core::net::IpAddr;
use core::sync::atomic::{AtomicU64, Ordering};
use std::collections::hash_map::RandomState;

use crate::quota::Quota;
use crate::rate_limit::{LimitDecision, LimitPolicy, RateLimit};
use crate::time::UnixTime;

/// Slots looked at for one address, from the one its hash names: 128 bytes, two cache lines.
const PROBE: usize = 8;
/// Bits of a slot's state that hold the count; the others hold the window's end.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// The latest window end a slot's state holds.
const MAX_END: u64 = (1 << (64 - COUNT_BITS)) - 1;

/// Counts requests that carry no valid key (missing, malformed, unknown, revoked or expired)
/// per client address, in fixed windows of one [`Quota`], with bounded memory.
///
/// An IPv6 client is counted by its /64 network, the block one subscriber usually holds, so
/// that cycling through the addresses of one network gains nothing.
///
/// # Cost
///
/// A check is one keyed hash of the address (a 64×64→128-bit multiply, keyed at random when
/// the limiter is made, so addresses cannot be chosen to collide), a look at up to eight slots
/// in two cache lines, and one compare-and-swap; no lock, no allocation, and no division (the
/// current window is cached and recomputed only when it ends).
///
/// # Memory
///
/// A fixed table of [`AddressLimiter::max_addresses`] slots of 16 bytes, allocated when the
/// limiter is made. An address takes a free slot among the eight its hash names, else one whose
/// window has ended, else the first of them, which starts over for it. A flood of spoofed or
/// distinct addresses therefore costs no memory, and does not refuse anyone for someone else's
/// requests (but for the few in flight while a slot changes hands).
///
/// An address gets no more than the quota while the table tracks it. Past the table's capacity
/// (more addresses with requests in one window than the table holds, or than the eight slots of
/// a hash hold) addresses push each other out, and one pushed out starts over when it returns:
/// the flood's addresses are then not limited. Handing a newcomer the count it pushes out
/// instead would refuse a newcomer that never sent a request (someone reporting a leaked key,
/// say) for as long as the flood lasts, while the quota of requests without a valid key
/// protects little a flood could take: [`Authorizer`](crate::Authorizer) looks a key up whatever
/// its address's quota, so a request past it costs the same, and gets a 429 in place of a 401.
/// Size the table above the addresses expected in one window.
///
/// # Time
///
/// A slot counts in one window. A time in that window or in the one just before it counts
/// there (two requests that read the clock either side of a window's end do not start it
/// again); a later time starts a new window; an earlier one is a corrected clock, and counting
/// starts again in its window.
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
    /// The limit, at most what a slot can count.
    limit: u64,
    /// Keys of the hash, drawn at random.
    seeds: [u64; 2],
    /// Shift that keeps the hash's top bits as a slot index.
    shift: u32,
    slots: Box<[Slot]>,
    /// The end of the window last seen, in seconds: a check within it divides nothing.
    window_end: AtomicU64,
}

/// One tracked address: its tag (the address's hash, never 0) and its state (the window's end
/// in the high bits, the count in the low [`COUNT_BITS`]).
struct Slot {
    tag: AtomicU64,
    state: AtomicU64,
}

#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    #[allow(clippy::cast_possible_truncation)] // the two halves, folded
    let folded = (full as u64) ^ ((full >> 64) as u64);
    folded
}

impl AddressLimiter {
    /// Default bound on tracked addresses: 65,536 (1 MiB).
    pub const DEFAULT_MAX_ADDRESSES: usize = 65_536;

    /// Counts each address under `quota`, tracking up to [`Self::DEFAULT_MAX_ADDRESSES`].
    #[must_use]
    pub fn new(quota: Quota) -> Self {
        Self::with_max_addresses(quota, Self::DEFAULT_MAX_ADDRESSES)
    }

    /// Counts each address under `quota`, tracking at most `max` of them (rounded up to a power
    /// of two, at least 64). A quota above 16,777,215 requests a window, the most a slot counts,
    /// is lowered to that (and [`AddressLimiter::quota`] says so), so the windows reported are
    /// the ones enforced.
    #[must_use]
    pub fn with_max_addresses(quota: Quota, max: usize) -> Self {
        let len = max.clamp(64, 1 << 30).next_power_of_two();
        let random = RandomState::new();
        #[allow(clippy::cast_possible_truncation)] // COUNT_MASK fits in 24 bits
        let quota =
            Quota::new(quota.limit().min(COUNT_MASK as u32), quota.period_secs()).unwrap_or(quota);
        Self {
            quota,
            policy: LimitPolicy::Unauthenticated,
            limit: u64::from(quota.limit()),
            seeds: [random.hash_one(0x5eed_u64), random.hash_one(0xfeed_u64) | 1],
            shift: 64 - len.trailing_zeros(),
            slots: (0..len)
                .map(|_| Slot {
                    tag: AtomicU64::new(0),
                    state: AtomicU64::new(0),
                })
                .collect(),
            window_end: AtomicU64::new(0),
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
        self.slots.len()
    }

    /// The address's hash (never 0): IPv4 (also mapped into IPv6) by its 32 bits, IPv6 by its
    /// /64 network, with a bit no IPv4 address has.
    #[inline(always)]
    fn hash(&self, ip: IpAddr) -> u64 {
        let (hi, lo) = match ip {
            IpAddr::V4(v4) => (0, u64::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (0, u64::from(u32::from(v4))),
                None => (1, (u128::from(v6) >> 64) as u64),
            },
        };
        folded_multiply(lo ^ self.seeds[0], hi ^ self.seeds[1]) | 1
    }

    /// The end of the window holding `now`, in seconds; divides only when a window has ended.
    #[inline(always)]
    fn window_end(&self, now: UnixTime) -> u64 {
        let now = now.as_secs();
        let end = self.window_end.load(Ordering::Relaxed);
        if now < end && now >= end - u64::from(self.quota.period_secs()).min(end) {
            return end;
        }
        // Past 2^40 seconds (year 36812) the windows of a slot's state run out: all one.
        let end = self.quota.window_end_secs(now).min(MAX_END);
        self.window_end.store(end, Ordering::Relaxed);
        end
    }

    #[inline(always)]
    fn rate_limit(&self, count: u64, reset_at: u64) -> RateLimit {
        #[allow(clippy::cast_possible_truncation)] // at most the limit, a u32
        let count = count as u32;
        RateLimit {
            limit: self.quota.limit(),
            remaining: self.quota.limit().saturating_sub(count),
            reset_at: UnixTime::from_secs(reset_at),
            period_secs: self.quota.period_secs(),
            policy: self.policy,
        }
    }

    /// The window a slot holding `state` counts in when the window of the time read ends at
    /// `end`: its end and count. The slot's window while it has not ended, also when it lies up
    /// to one window ahead (the time was read just before the end of the window before it);
    /// else a new window, (`end`, 0).
    #[inline(always)]
    fn held(&self, state: u64, end: u64) -> (u64, u64) {
        let held_end = state >> COUNT_BITS;
        // One compare in the common case; the wrapping difference is large when the slot's
        // window is behind.
        if held_end == end || held_end.wrapping_sub(end) <= u64::from(self.quota.period_secs()) {
            (held_end, state & COUNT_MASK)
        } else {
            (end, 0)
        }
    }

    #[inline(always)]
    fn slot(&self, base: usize, probe: usize) -> &Slot {
        &self.slots[(base + probe) & (self.slots.len() - 1)]
    }

    /// The slot of the address with hash `tag`, if it is tracked.
    #[inline(always)]
    fn find(&self, tag: u64) -> Option<&Slot> {
        let base = (tag >> self.shift) as usize;
        (0..PROBE)
            .map(|p| self.slot(base, p))
            .find(|s| s.tag.load(Ordering::Acquire) == tag)
    }

    /// The window of `ip` at `now`, without counting a request.
    #[must_use]
    pub fn peek(&self, ip: IpAddr, now: UnixTime) -> RateLimit {
        let end = self.window_end(now);
        let (end, count) = self.find(self.hash(ip)).map_or((end, 0), |s| {
            self.held(s.state.load(Ordering::Acquire), end)
        });
        self.rate_limit(count, end)
    }

    /// The window of `ip` if it has no room left at `now`, without counting. [`Self::check`]
    /// answers the same in its refusal, so a caller that counts needs only that.
    #[must_use]
    #[inline]
    pub fn exhausted(&self, ip: IpAddr, now: UnixTime) -> Option<RateLimit> {
        let window = self.peek(ip, now);
        (window.remaining == 0).then_some(window)
    }

    /// Counts one request from `ip` at `now`, if its window has room. A refused request is not
    /// counted.
    #[inline(always)]
    pub fn check(&self, ip: IpAddr, now: UnixTime) -> LimitDecision {
        let tag = self.hash(ip);
        let end = self.window_end(now);
        let slot = match self.find(tag) {
            Some(slot) => slot,
            None => match self.claim(tag, end) {
                Some(slot) => slot,
                // Lost every race for a slot: count it nowhere, as a first request.
                None => return LimitDecision::Allowed(self.rate_limit(1, end)),
            },
        };
        let mut state = slot.state.load(Ordering::Acquire);
        loop {
            let (end, count) = self.held(state, end);
            if count >= self.limit {
                return LimitDecision::Limited(self.rate_limit(count, end));
            }
            let next = (end << COUNT_BITS) | (count + 1);
            match slot
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return LimitDecision::Allowed(self.rate_limit(count + 1, end)),
                Err(now_state) => state = now_state,
            }
        }
    }

    /// A slot for an address not tracked yet: a free one of its eight, else one whose window
    /// has ended, else the first, which starts over for it.
    #[cold]
    fn claim(&self, tag: u64, end: u64) -> Option<&Slot> {
        let base = (tag >> self.shift) as usize;
        for _ in 0..2 {
            let mut pick = None;
            for p in 0..PROBE {
                let s = self.slot(base, p);
                let t = s.tag.load(Ordering::Acquire);
                if t == tag {
                    return Some(s);
                }
                let free = t == 0;
                let ended = s.state.load(Ordering::Acquire) >> COUNT_BITS < end;
                match pick {
                    _ if free => {
                        pick = Some((s, t));
                        break;
                    }
                    None if ended => pick = Some((s, t)),
                    _ => {}
                }
            }
            let (s, old) = pick.unwrap_or_else(|| {
                let s = self.slot(base, 0);
                (s, s.tag.load(Ordering::Acquire))
            });
            if s.tag
                .compare_exchange(old, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // A new owner starts with an empty window: never refused for the requests of
                // the address it pushed out (see the type's Memory section).
                s.state.store(end << COUNT_BITS, Ordering::Release);
                // Two first requests of one address may claim two slots at once: the first of
                // them in probe order (the one `find` returns) is kept, so the count is never
                // split.
                if let Some(first) = self.find(tag) {
                    if !core::ptr::eq(first, s) {
                        let _ = s
                            .tag
                            .compare_exchange(tag, 0, Ordering::AcqRel, Ordering::Acquire);
                        return Some(first);
                    }
                }
                return Some(s);
            }
        }
        None
    }

    /// Number of addresses tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.tag.load(Ordering::Relaxed) != 0)
            .count()
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
    fn threads_racing_on_one_address_share_one_count() {
        for round in 0..50u32 {
            let l = std::sync::Arc::new(AddressLimiter::new(Quota::per_minute(100)));
            let a = IpAddr::V4((0xc000_0200 + round).into());
            let allowed: u32 = (0..4)
                .map(|_| {
                    let l = l.clone();
                    std::thread::spawn(move || {
                        (0..100).filter(|_| l.check(a, NOW).is_allowed()).count() as u32
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .sum();
            assert_eq!(allowed, 100, "round {round}");
            assert_eq!(l.len(), 1);
        }
    }

    #[test]
    fn times_past_the_states_range_count_in_one_window() {
        let l = AddressLimiter::new(Quota::per_minute(2));
        let far = UnixTime::from_secs(u64::MAX - 5);
        let a = ip("192.0.2.1");
        assert!(l.check(a, far).is_allowed());
        assert!(l.check(a, far).is_allowed());
        assert!(!l.check(a, far).is_allowed());
    }

    #[test]
    fn a_flood_past_the_tables_capacity_never_refuses_a_new_address() {
        let l = AddressLimiter::with_max_addresses(Quota::per_minute(2), 64);
        for i in 0..1_000u32 {
            for _ in 0..3 {
                let _ = l.check(IpAddr::V4(i.into()), NOW);
            }
        }
        // Every slot is in use by an address past its quota; a newcomer's first requests are
        // its own, and `peek` says what `check` does.
        for i in 0..100u32 {
            let newcomer = IpAddr::V4((1_000_000 + i).into());
            assert_eq!(l.peek(newcomer, NOW).remaining, 2);
            assert!(l.check(newcomer, NOW).is_allowed(), "{newcomer}");
        }
        assert!(l.len() <= 64);
    }

    #[test]
    fn a_time_read_before_the_windows_end_counts_in_the_current_window() {
        let l = AddressLimiter::new(Quota::per_minute(3));
        let a = ip("192.0.2.1");
        let (before, current) = (NOW.plus_secs(59), NOW.plus_secs(60));
        let allowed = (0..40)
            .filter(|i| {
                let now = if i % 4 == 3 { before } else { current };
                l.check(a, now).is_allowed()
            })
            .count();
        assert_eq!(allowed, 3);
        assert_eq!(l.peek(a, before).remaining, 0);
        assert_eq!(l.peek(a, before).reset_at, NOW.plus_secs(120));
        // More than a window behind: a corrected clock, counted from there.
        assert!(l.check(a, NOW.plus_secs(58).minus_secs(60)).is_allowed());
    }

    #[test]
    fn a_quota_past_what_a_slot_counts_is_lowered_to_it() {
        let l = AddressLimiter::new(Quota::new(u32::MAX, 60).unwrap());
        assert_eq!(u64::from(l.quota().limit()), COUNT_MASK);
        let a = ip("192.0.2.1");
        assert!(l.check(a, NOW).is_allowed());
        // One request short of what a slot counts.
        let end = l.window_end(NOW);
        let slot = l.find(l.hash(a)).unwrap();
        slot.state
            .store((end << COUNT_BITS) | (COUNT_MASK - 1), Ordering::Release);
        assert_eq!(
            l.check(a, NOW),
            LimitDecision::Allowed(l.rate_limit(COUNT_MASK, end))
        );
        // Refused, and the refusal, `peek` and `exhausted` all say there is no room.
        let LimitDecision::Limited(window) = l.check(a, NOW) else {
            panic!("a full window allowed a request");
        };
        assert_eq!(window.remaining, 0);
        assert_eq!(l.peek(a, NOW).remaining, 0);
        assert_eq!(l.exhausted(a, NOW), Some(window));
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
