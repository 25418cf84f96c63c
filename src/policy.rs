//! What an operator requires of every new key, as data: [`KeyPolicy`].

use core::fmt;
use core::time::Duration;

use crate::time::UnixTime;

/// What every new key must satisfy, checked when a key is issued ([`KeyStore::issue`] and
/// [`KeyStore::prepare`] of a store built [`with_policy`](crate::KeyStore::with_policy)). The
/// default requires nothing.
///
/// The spec's advice "set an expiry date for keys used in CI/CD pipelines" as a rule: with a
/// maximum lifetime, a key must have an expiry, at most that far from its creation.
///
/// ```
/// use std::time::Duration;
/// use sitequest_auth::{KeyPolicy, PolicyError, UnixTime};
/// let now = UnixTime::from_secs(1_800_000_000);
/// let ninety_days = KeyPolicy::parse_lifetime("90d").unwrap();
/// let policy = KeyPolicy::default().with_max_lifetime(ninety_days);
/// assert_eq!(policy.check(Some(now + Duration::from_secs(86_400)), now), Ok(()));
/// assert!(matches!(policy.check(None, now), Err(PolicyError::ExpiryRequired { .. })));
/// assert_eq!(
///     policy.check(None, now).unwrap_err().to_string(),
///     "this server requires keys to expire: give an expiry at most 90 days away"
/// );
/// ```
///
/// [`KeyStore::issue`]: crate::KeyStore::issue
/// [`KeyStore::prepare`]: crate::KeyStore::prepare
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyPolicy {
    /// The longest a new key may live; `None` allows keys that never expire.
    pub max_lifetime: Option<Duration>,
}

impl KeyPolicy {
    /// Requires every new key to expire at most `lifetime` after it is created.
    #[must_use]
    pub const fn with_max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = Some(lifetime);
        self
    }

    /// Checks a new key's expiry (`None`: it never expires) at its creation time `now`.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] when the policy requires an expiry and there is none, or the expiry is
    /// further away than the policy allows.
    pub fn check(&self, expires_at: Option<UnixTime>, now: UnixTime) -> Result<(), PolicyError> {
        let Some(max) = self.max_lifetime else {
            return Ok(());
        };
        let max = Lifetime(max);
        match expires_at {
            None => Err(PolicyError::ExpiryRequired { max }),
            Some(t) if t > now + max.0 => Err(PolicyError::ExpiryTooFar { max }),
            Some(_) => Ok(()),
        }
    }

    /// Parses a lifetime as a number and a unit: `90d` (days), `12h` (hours), `30m` (minutes) or
    /// `3600s` (seconds; a bare number is seconds too).
    ///
    /// # Errors
    ///
    /// [`LifetimeParseError`] for anything else, zero, or more than 100 years.
    pub fn parse_lifetime(text: &str) -> Result<Duration, LifetimeParseError> {
        let text = text.trim();
        let (digits, unit) = match text.as_bytes().last() {
            Some(b'd') => (&text[..text.len() - 1], 86_400),
            Some(b'h') => (&text[..text.len() - 1], 3_600),
            Some(b'm') => (&text[..text.len() - 1], 60),
            Some(b's') => (&text[..text.len() - 1], 1),
            _ => (text, 1),
        };
        if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LifetimeParseError);
        }
        let n: u64 = digits.parse().map_err(|_| LifetimeParseError)?;
        let secs = n.checked_mul(unit).ok_or(LifetimeParseError)?;
        if secs == 0 || secs > 100 * 366 * 86_400 {
            return Err(LifetimeParseError);
        }
        Ok(Duration::from_secs(secs))
    }
}

/// A lifetime, displayed in the largest whole unit (`90 days`, `12 hours`, `3600 seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime(pub Duration);

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (n, unit) = match secs {
            s if s % 86_400 == 0 => (s / 86_400, "day"),
            s if s % 3_600 == 0 => (s / 3_600, "hour"),
            s if s % 60 == 0 => (s / 60, "minute"),
            s => (s, "second"),
        };
        write!(f, "{n} {unit}{}", if n == 1 { "" } else { "s" })
    }
}

/// A new key does not satisfy the [`KeyPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The key has no expiry, and the policy requires one.
    #[error("this server requires keys to expire: give an expiry at most {max} away")]
    ExpiryRequired {
        /// The policy's maximum lifetime.
        max: Lifetime,
    },
    /// The key expires further away than the policy allows.
    #[error("expiry is too far away: this server allows keys to live at most {max}")]
    ExpiryTooFar {
        /// The policy's maximum lifetime.
        max: Lifetime,
    },
}

/// A lifetime that [`KeyPolicy::parse_lifetime`] does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a lifetime is a positive number with a unit, d, h, m or s (as in 90d), of at most 100 years"
)]
pub struct LifetimeParseError;

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    #[test]
    fn lifetimes_parse_and_print() {
        for (text, secs, shown) in [
            ("90d", 90 * 86_400, "90 days"),
            ("1d", 86_400, "1 day"),
            ("12h", 43_200, "12 hours"),
            ("30m", 1_800, "30 minutes"),
            ("3600s", 3_600, "1 hour"),
            ("61", 61, "61 seconds"),
        ] {
            let d = KeyPolicy::parse_lifetime(text).unwrap();
            assert_eq!(d.as_secs(), secs, "{text}");
            assert_eq!(Lifetime(d).to_string(), shown);
        }
        for bad in [
            "",
            "d",
            "0d",
            "-1d",
            "1.5d",
            "90 days",
            "1w",
            "99999999999999d",
            "36601d",
        ] {
            assert_eq!(
                KeyPolicy::parse_lifetime(bad),
                Err(LifetimeParseError),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_policy_requires_and_caps_expiry() {
        let open = KeyPolicy::default();
        assert_eq!(open.check(None, NOW), Ok(()));
        let policy = open.with_max_lifetime(Duration::from_secs(90 * 86_400));
        let max = Lifetime(Duration::from_secs(90 * 86_400));
        assert_eq!(
            policy.check(None, NOW),
            Err(PolicyError::ExpiryRequired { max })
        );
        assert_eq!(policy.check(Some(NOW.plus_secs(90 * 86_400)), NOW), Ok(()));
        assert_eq!(
            policy.check(Some(NOW.plus_secs(90 * 86_400 + 1)), NOW),
            Err(PolicyError::ExpiryTooFar { max })
        );
        assert_eq!(
            PolicyError::ExpiryTooFar { max }.to_string(),
            "expiry is too far away: this server allows keys to live at most 90 days"
        );
    }
}
