//! How many requests a key may make per window: [`Quota`].

use core::fmt;
use core::num::NonZeroU32;

use crate::time::UnixTime;

/// How many requests a key may make per window, and the window's length.
///
/// ```
/// use sitequest_auth::Quota;
/// const SPEC: Quota = Quota::per_minute(60);
/// assert_eq!(SPEC, Quota::default());
/// assert_eq!((SPEC.limit(), SPEC.period_secs()), (60, 60));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: NonZeroU32,
    period: NonZeroU32,
}

impl Quota {
    /// The spec's quota: 60 requests per minute.
    pub const SPEC: Self = Self::per_minute(60);

    /// `limit` requests per `period_secs` seconds; `None` if either is zero.
    #[must_use]
    pub const fn new(limit: u32, period_secs: u32) -> Option<Self> {
        match (NonZeroU32::new(limit), NonZeroU32::new(period_secs)) {
            (Some(limit), Some(period)) => Some(Self { limit, period }),
            _ => None,
        }
    }

    /// `limit` requests per 60 seconds.
    ///
    /// # Panics
    ///
    /// If `limit` is zero (at compile time when used in a `const`).
    #[must_use]
    pub const fn per_minute(limit: u32) -> Self {
        match Self::new(limit, 60) {
            Some(q) => q,
            None => panic!("a quota needs a limit of at least 1"),
        }
    }

    /// Requests allowed per window.
    #[must_use]
    pub const fn limit(self) -> u32 {
        self.limit.get()
    }

    /// Length of a window in seconds.
    #[must_use]
    pub const fn period_secs(self) -> u32 {
        self.period.get()
    }

    /// The time at which the window holding `now` ends.
    #[must_use]
    #[inline]
    pub const fn window_end(self, now: UnixTime) -> UnixTime {
        UnixTime::from_secs(self.window_end_secs(now.as_secs()))
    }

    /// [`Quota::window_end`] in seconds.
    #[inline]
    pub(crate) const fn window_end_secs(self, now: u64) -> u64 {
        let p = self.period.get() as u64;
        (now / p).saturating_add(1).saturating_mul(p)
    }

    /// Parses `N/SECONDS` (as in `60/60`).
    ///
    /// # Errors
    ///
    /// [`QuotaParseError`] when the text is not two positive integers around a `/`.
    pub fn parse(text: &str) -> Result<Self, QuotaParseError> {
        let (limit, period) = text.split_once('/').ok_or(QuotaParseError)?;
        let limit = limit.parse().map_err(|_| QuotaParseError)?;
        let period = period.parse().map_err(|_| QuotaParseError)?;
        Self::new(limit, period).ok_or(QuotaParseError)
    }
}

impl Default for Quota {
    fn default() -> Self {
        Self::SPEC
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quota({}/{}s)", self.limit, self.period)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.limit, self.period)
    }
}

impl core::str::FromStr for Quota {
    type Err = QuotaParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A rate-limit text was not `N/SECONDS` with both numbers positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit must be N/SECONDS with both numbers positive, as in 60/60")]
pub struct QuotaParseError;

#[cfg(feature = "serde")]
mod serde_impls {
    use super::Quota;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serialized as `{"limit": 60, "period_secs": 60}`.
    #[derive(Serialize, Deserialize)]
    struct Repr {
        limit: u32,
        period_secs: u32,
    }

    impl Serialize for Quota {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            Repr {
                limit: self.limit(),
                period_secs: self.period_secs(),
            }
            .serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for Quota {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let r = Repr::deserialize(d)?;
            Quota::new(r.limit, r.period_secs)
                .ok_or_else(|| serde::de::Error::custom(super::QuotaParseError))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        assert_eq!(Quota::SPEC.window_end_secs(0), 60);
        assert_eq!(Quota::SPEC.window_end_secs(59), 60);
        assert_eq!(Quota::SPEC.window_end_secs(60), 120);
        assert_eq!(Quota::new(10, 1).unwrap().window_end_secs(5), 6);
    }

    #[test]
    fn quota_parsing() {
        assert_eq!(Quota::parse("60/60"), Ok(Quota::SPEC));
        assert_eq!(Quota::parse("5/1"), Ok(Quota::new(5, 1).unwrap()));
        for bad in ["", "60", "0/60", "60/0", "-1/60", "60/60/60", " 60/60"] {
            assert_eq!(Quota::parse(bad), Err(QuotaParseError), "{bad:?}");
        }
        assert_eq!(Quota::SPEC.to_string(), "60/60");
    }
}
