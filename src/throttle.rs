//! Letting one of a flood of events through per interval: [`Throttle`].

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::OnceLock;
use std::time::Instant;

/// Lets an event through at most once per interval, from any thread without a lock, and counts
/// the ones held back.
///
/// For log lines that a flood of requests would otherwise repeat (an outside limiter that is
/// down, say): logging each would let any client fill the disk and slow the server. The
/// throttle is sans-IO like the rest of the crate: the caller passes the time (`Instant::now()`
/// in a server); it never reads a clock.
///
/// ```
/// use std::time::{Duration, Instant};
/// use sitequest_auth::Throttle;
/// static LOG: Throttle = Throttle::new(Duration::from_secs(1));
/// let t0 = Instant::now();
/// assert_eq!(LOG.allow(t0), Some(0)); // let through, nothing held back before it
/// assert_eq!(LOG.allow(t0 + Duration::from_millis(10)), None); // held back
/// assert_eq!(LOG.allow(t0 + Duration::from_secs(1)), Some(1)); // let through: one held back
/// ```
#[derive(Debug)]
pub struct Throttle {
    interval_ms: u64,
    /// The time of the first event: the others are counted in milliseconds from it.
    origin: OnceLock<Instant>,
    /// The time from which the next event may go, in milliseconds from `origin`.
    next: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    /// At most one event per `interval`.
    #[must_use]
    pub const fn new(interval: Duration) -> Self {
        let ms = interval.as_millis();
        Self {
            interval_ms: if ms > u64::MAX as u128 {
                u64::MAX
            } else {
                ms as u64
            },
            origin: OnceLock::new(),
            next: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(events held back since the last one let through)` when the event at `now` may go,
    /// else `None` (and it is counted as held back).
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let origin = *self.origin.get_or_init(|| now);
        let elapsed = now.saturating_duration_since(origin).as_millis();
        self.allow_at(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    fn allow_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next.load(Ordering::Relaxed);
        let due = now_ms >= next
            && self
                .next
                .compare_exchange(
                    next,
                    now_ms.saturating_add(self.interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if due {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn one_per_interval_with_the_count_held_back() {
        let log = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(log.allow(t0), Some(0));
        assert_eq!(log.allow(t0 + Duration::from_millis(999)), None);
        assert_eq!(log.allow(t0 + Duration::from_secs(1)), Some(1));
        // A time before the first one counts as the first.
        let log = Throttle::new(Duration::from_secs(1));
        assert_eq!(log.allow(t0 + Duration::from_secs(5)), Some(0));
        assert_eq!(log.allow(t0), None);

        let log = Throttle::new(Duration::from_secs(1));
        assert_eq!(log.allow_at(0), Some(0));
        assert_eq!(log.allow_at(10), None);
        assert_eq!(log.allow_at(999), None);
        assert_eq!(log.allow_at(1000), Some(2));
        assert_eq!(log.allow_at(1500), None);
        assert_eq!(log.allow_at(5000), Some(1));
        assert_eq!(log.allow_at(5000), None);
    }

    #[test]
    fn threads_let_exactly_one_through_per_interval() {
        let log = Arc::new(Throttle::new(Duration::from_secs(1)));
        let through: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let log = log.clone();
                    s.spawn(move || (0..1000).filter(|_| log.allow_at(20_000).is_some()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(through, 1);
        assert_eq!(log.allow_at(21_000), Some(7999));
    }
}
