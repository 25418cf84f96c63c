//! Points in time: [`UnixTime`], whole seconds since the Unix epoch.

use core::fmt;
use core::ops::{Add, Sub};
use core::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time, in whole seconds since 1970-01-01T00:00:00Z.
///
/// Every time the crate takes or returns is one of these, so a time cannot be passed where a
/// length of time is expected, or the other way round: a grace period is a [`Duration`]. The
/// crate never reads a clock; the host passes the current time (rustls's `UnixTime` is the
/// model). Arithmetic saturates at both ends instead of wrapping or panicking.
///
/// ```
/// use std::time::Duration;
/// use sitequest_auth::UnixTime;
/// let now = UnixTime::from_secs(1_800_000_000);
/// assert_eq!((now + Duration::from_secs(60)).as_secs(), 1_800_000_060);
/// assert_eq!(now.to_string(), "1800000000");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct UnixTime(u64);

impl UnixTime {
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: Self = Self(0);

    /// The time `secs` seconds after the epoch.
    #[must_use]
    #[inline]
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }

    /// Seconds since the epoch.
    #[must_use]
    #[inline]
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// `time`, truncated to whole seconds; [`UnixTime::EPOCH`] for a time before it. A
    /// conversion only: the host reads the clock (`UnixTime::from_system_time(SystemTime::now())`).
    #[must_use]
    pub fn from_system_time(time: SystemTime) -> Self {
        Self(time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    /// This time plus `secs` seconds, saturating.
    #[must_use]
    #[inline]
    pub const fn plus_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// This time minus `secs` seconds, saturating at the epoch.
    #[must_use]
    #[inline]
    pub const fn minus_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_sub(secs))
    }

    /// Whole seconds from `earlier` to this time; zero if `earlier` is later.
    #[must_use]
    #[inline]
    pub const fn secs_since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Where a host reads the current time: the system clock, or one a test or simulation moves.
///
/// The crate itself never reads a clock; adapters read one through this trait and pass the time
/// to the authorizer (rustls's `TimeProvider` is the model). Any `Fn() -> UnixTime` closure is
/// one:
///
/// ```
/// use sitequest_auth::{TimeProvider, UnixTime};
/// let fixed = || UnixTime::from_secs(1_800_000_000);
/// assert_eq!(fixed.now().as_secs(), 1_800_000_000);
/// ```
pub trait TimeProvider: Send + Sync {
    /// The current time.
    fn now(&self) -> UnixTime;
}

impl<F: Fn() -> UnixTime + Send + Sync> TimeProvider for F {
    fn now(&self) -> UnixTime {
        self()
    }
}

/// The system clock, for adapters to read (the crate's own code never does): the one
/// definition both framework adapters and the demo use.
///
/// ```
/// use sitequest_auth::{SystemClock, TimeProvider};
/// assert!(SystemClock.now().as_secs() > 1_700_000_000);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl TimeProvider for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_system_time(std::time::SystemTime::now())
    }
}

impl Add<Duration> for UnixTime {
    type Output = Self;

    /// Adds the whole seconds of `d`, saturating.
    #[inline]
    fn add(self, d: Duration) -> Self {
        self.plus_secs(d.as_secs())
    }
}

impl Sub<Duration> for UnixTime {
    type Output = Self;

    /// Subtracts the whole seconds of `d`, saturating at the epoch.
    #[inline]
    fn sub(self, d: Duration) -> Self {
        self.minus_secs(d.as_secs())
    }
}

impl UnixTime {
    /// This time as a [`SystemTime`]; `None` when the platform cannot represent it.
    #[must_use]
    pub fn to_system_time(self) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::from_secs(self.0))
    }
}

impl fmt::Display for UnixTime {
    /// The seconds since the epoch, as in `X-RateLimit-Reset`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = UnixTime::from_secs(10);
        assert_eq!(t.minus_secs(11), UnixTime::EPOCH);
        assert_eq!(
            UnixTime::from_secs(u64::MAX).plus_secs(1).as_secs(),
            u64::MAX
        );
        assert_eq!(t + Duration::from_millis(1_999), UnixTime::from_secs(11));
        assert_eq!(t - Duration::from_secs(3), UnixTime::from_secs(7));
        assert_eq!(t.secs_since(UnixTime::from_secs(4)), 6);
        assert_eq!(UnixTime::from_secs(4).secs_since(t), 0);
    }

    #[test]
    fn system_time_round_trip() {
        let t = UnixTime::from_secs(1_800_000_000);
        assert_eq!(UnixTime::from_system_time(t.to_system_time().unwrap()), t);
        let before = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(UnixTime::from_system_time(before), UnixTime::EPOCH);
    }
}
