//! What is known about a key except its secret: [`KeyRecord`], its status, and the rules a
//! record must follow.

use crate::address::IpAllowlist;
use crate::digest::{KeyDigest, KeyId};
use crate::key::Last4;
use crate::quota::Quota;
use crate::scope::Scopes;
use crate::time::UnixTime;

/// Longest key name accepted, in characters (Unicode scalar values, as a person counts them in
/// a form field; at most four bytes each).
pub const MAX_NAME_LEN: usize = 128;

/// Latest time a record may hold (9999-12-31T23:59:59Z). Keeping times well below 2^53 seconds
/// lets every JSON implementation carry them exactly.
pub const MAX_TIME: UnixTime = UnixTime::from_secs(253_402_300_799);

/// Everything known about a key except its secret: what a host persists and lists.
///
/// Build one from your database to [`KeyStore::load`](crate::KeyStore::load) it; get them back with
/// [`KeyStore::export`](crate::KeyStore::export). The key's id is derived from its digest ([`KeyRecord::id`]).
///
/// The fields are public to read; build one with [`KeyRecord::new`] and the `with_*` methods, so
/// that adding a field later breaks no host.
///
/// ```
/// use sitequest_auth::{KeyDigest, KeyRecord, Last4, Preset, UnixTime};
/// let record = KeyRecord::new(
///     KeyDigest::from_bytes([7; 32]),
///     "ci deploy",
///     Preset::ReadOnly,
///     UnixTime::from_secs(1_800_000_000),
///     Last4::new("beef").unwrap(),
/// )
/// .with_expires_at(Some(UnixTime::from_secs(1_900_000_000)));
/// assert_eq!(record.revoked_at, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct KeyRecord {
    /// SHA-256 of the key's secret bytes (see [`KeyDigest`]).
    pub digest: KeyDigest,
    /// The name given at creation.
    pub name: String,
    /// The scopes the key holds; never empty.
    pub scopes: Scopes,
    /// When the key was created.
    pub created_at: UnixTime,
    /// From when the key is expired; `None` for a key that never expires.
    pub expires_at: Option<UnixTime>,
    /// When the key was revoked; `None` while it is not.
    pub revoked_at: Option<UnixTime>,
    /// This key's own rate limit; `None` uses the authorizer's default.
    pub rate_limit: Option<Quota>,
    /// When the last request was made with the key, if ever.
    pub last_used_at: Option<UnixTime>,
    /// The last four characters of the key, for display.
    pub last4: Last4,
    /// The addresses the key may be used from; empty for any.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "IpAllowlist::is_empty")
    )]
    pub allowed_ips: IpAllowlist,
    /// When `allowed_ips` was last set, if ever: of two versions of a key, the later setting
    /// wins.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub allowed_ips_changed_at: Option<UnixTime>,
    /// For the replacement made by a rotation: the id whose rate-limit window this key shares
    /// (the rotated key's, or the one that key shared), so that rotating never doubles a
    /// client's allowance. Fixed at creation.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub shares_limit_with: Option<KeyId>,
}

impl KeyRecord {
    /// The record of a key with the given fixed part, active, never used, with no expiry and the
    /// default rate limit. Nothing is checked here; the store checks records it takes.
    #[must_use]
    pub fn new(
        digest: KeyDigest,
        name: impl Into<String>,
        scopes: impl Into<Scopes>,
        created_at: UnixTime,
        last4: Last4,
    ) -> Self {
        Self {
            digest,
            name: name.into(),
            scopes: scopes.into(),
            created_at,
            expires_at: None,
            revoked_at: None,
            rate_limit: None,
            last_used_at: None,
            last4,
            allowed_ips: IpAllowlist::default(),
            allowed_ips_changed_at: None,
            shares_limit_with: None,
        }
    }

    /// Limits the key to the addresses in `list` (empty: any address), as set at `changed_at`.
    #[must_use]
    pub fn with_allowed_ips(mut self, list: IpAllowlist, changed_at: Option<UnixTime>) -> Self {
        self.allowed_ips = list;
        self.allowed_ips_changed_at = changed_at;
        self
    }

    /// This record with its allowlist replaced by `list` at `now`: the change is stamped later
    /// than the one it replaces (by a second, if the clock has not moved past it), so that it
    /// wins when versions of the key meet.
    #[must_use]
    pub fn allowlist_changed(&self, list: IpAllowlist, now: UnixTime) -> Self {
        let at = match self.allowed_ips_changed_at {
            Some(prev) if prev >= now => prev.plus_secs(1),
            _ => now,
        };
        self.clone().with_allowed_ips(list, Some(at.min(MAX_TIME)))
    }

    /// Makes the key count its requests in `id`'s window (see
    /// [`KeyRecord::shares_limit_with`]).
    #[must_use]
    pub fn with_shared_limit(mut self, id: Option<KeyId>) -> Self {
        self.shares_limit_with = id;
        self
    }

    /// The id whose rate-limit window the key counts in: [`KeyRecord::shares_limit_with`], or its
    /// own.
    #[must_use]
    pub fn limit_id(&self) -> KeyId {
        self.shares_limit_with.unwrap_or_else(|| self.id())
    }

    /// Sets when the key expires (`None`: never).
    #[must_use]
    pub fn with_expires_at(mut self, at: Option<UnixTime>) -> Self {
        self.expires_at = at;
        self
    }

    /// Sets when the key was revoked (`None`: it is not).
    #[must_use]
    pub fn with_revoked_at(mut self, at: Option<UnixTime>) -> Self {
        self.revoked_at = at;
        self
    }

    /// Sets the key's own rate limit (`None`: the authorizer's default).
    #[must_use]
    pub fn with_rate_limit(mut self, quota: Option<Quota>) -> Self {
        self.rate_limit = quota;
        self
    }

    /// Sets when the key was last used (`None`: never).
    #[must_use]
    pub fn with_last_used_at(mut self, at: Option<UnixTime>) -> Self {
        self.last_used_at = at;
        self
    }

    /// The key's public id.
    #[must_use]
    pub fn id(&self) -> KeyId {
        self.digest.id()
    }

    /// Whether the key is usable at `now`, or why not.
    #[must_use]
    pub fn status(&self, now: UnixTime) -> KeyStatus {
        status(self.revoked_at.is_some(), self.expires_at, now)
    }

    /// Whether the key has gone unused since `since`: last used before then, or never used and
    /// created before then (the spec's tip "revoke unused ones", as a filter).
    #[must_use]
    pub fn unused_since(&self, since: UnixTime) -> bool {
        self.last_used_at.unwrap_or(self.created_at) < since
    }

    /// Combines this record, the version already held, with another version of the same key so
    /// that changes only ever tighten it: the earliest revocation and the earliest expiry win,
    /// and the latest use is kept. What a key is (digest, name, scopes, rate limit, creation
    /// time, last four characters, shared window) is fixed when it is created and is taken from
    /// `self`, so a tampered version can neither widen a key nor rename it. The allowlist is the
    /// one exception, since its owner may widen it: the version set later wins (on a tie, the
    /// list whose ranges joined by commas sort first bytewise, so that every holder settles on
    /// the same one); a replayed old version loses to the newer one.
    #[must_use]
    pub fn merged_with(&self, other: &KeyRecord) -> KeyRecord {
        fn earliest(a: Option<UnixTime>, b: Option<UnixTime>) -> Option<UnixTime> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        let mut merged = self.clone();
        merged.revoked_at = earliest(self.revoked_at, other.revoked_at);
        merged.expires_at = earliest(self.expires_at, other.expires_at);
        merged.last_used_at = self.last_used_at.max(other.last_used_at);
        let theirs_wins = match other
            .allowed_ips_changed_at
            .cmp(&self.allowed_ips_changed_at)
        {
            core::cmp::Ordering::Greater => true,
            core::cmp::Ordering::Equal => other.allowed_ips.joined() < self.allowed_ips.joined(),
            core::cmp::Ordering::Less => false,
        };
        if theirs_wins {
            merged.allowed_ips = other.allowed_ips.clone();
            merged.allowed_ips_changed_at = other.allowed_ips_changed_at;
        }
        merged
    }

    /// Whether `other` is this key with a different fixed part (digest, name, scopes, rate
    /// limit, creation time, last four characters or shared window): a version that
    /// [`KeyRecord::merged_with`]
    /// would not take, and that a host receiving records from elsewhere should count as
    /// tampered.
    #[must_use]
    pub fn conflicts_with(&self, other: &KeyRecord) -> bool {
        self.digest != other.digest
            || self.name != other.name
            || self.scopes != other.scopes
            || self.rate_limit != other.rate_limit
            || self.created_at != other.created_at
            || self.last4 != other.last4
            || self.shares_limit_with != other.shares_limit_with
    }

    pub(crate) fn validate(&self) -> Result<(), InvalidRecord> {
        validate_name(&self.name)?;
        if self.scopes.is_empty() {
            return Err(InvalidRecord::EmptyScopes);
        }
        let times = [
            Some(self.created_at),
            self.expires_at,
            self.revoked_at,
            self.last_used_at,
            self.allowed_ips_changed_at,
        ];
        if times.into_iter().flatten().any(|t| t > MAX_TIME) {
            return Err(InvalidRecord::TimeOutOfRange);
        }
        Ok(())
    }
}

fn status(revoked: bool, expires_at: Option<UnixTime>, now: UnixTime) -> KeyStatus {
    if revoked {
        KeyStatus::Revoked
    } else if expires_at.is_some_and(|t| now >= t) {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    }
}

pub(crate) fn validate_name(name: &str) -> Result<(), InvalidRecord> {
    if name.trim().is_empty() {
        return Err(InvalidRecord::EmptyName);
    }
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return Err(InvalidRecord::NameTooLong { len });
    }
    if name.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(InvalidRecord::ControlCharacter);
    }
    Ok(())
}

/// Unicode's bidirectional formatting characters (embeddings, overrides, isolates and marks):
/// in a name they can make a list show one key's name as another's.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Whether a key can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyStatus {
    /// Neither revoked nor expired.
    Active,
    /// Revoked; revocation is permanent.
    Revoked,
    /// Past its expiry time.
    Expired,
}

/// A record or key settings were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRecord {
    /// The name is empty or only whitespace.
    #[error("key name is empty")]
    EmptyName,
    /// The name is longer than [`MAX_NAME_LEN`] characters.
    #[error("key name is {len} characters long, the most is 128")]
    NameTooLong {
        /// Length of the name in characters.
        len: usize,
    },
    /// The name contains a control character or a bidirectional formatting character (such as
    /// U+202E, which would let one name be shown as another).
    #[error("key name contains a control or bidirectional formatting character")]
    ControlCharacter,
    /// The scope set is empty.
    #[error("a key must hold at least one scope")]
    EmptyScopes,
    /// The expiry time is not after the creation time.
    #[error("expiry time must be in the future")]
    ExpiryNotInFuture,
    /// Another key in the store has the same id (its first 64 digest bits).
    #[error("another key already has this id")]
    IdCollision,
    /// A time is later than [`MAX_TIME`](crate::MAX_TIME) (the end of year 9999).
    #[error("time is out of range (after the year 9999)")]
    TimeOutOfRange,
    /// The store's [`KeyPolicy`](crate::KeyPolicy) refuses the new key.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
}
