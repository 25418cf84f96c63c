//! What is known about a key except its secret: [`KeyRecord`], its status, and the rules a
//! record must follow.

use crate::digest::{KeyDigest, KeyId};
use crate::key::Last4;
use crate::quota::Quota;
use crate::scope::Scopes;

/// Longest key name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Latest time a record may hold, in Unix seconds (9999-12-31T23:59:59Z). Keeping times well
/// below 2^53 lets every JSON implementation carry them exactly.
pub const MAX_TIME: u64 = 253_402_300_799;

/// Everything known about a key except its secret: what a host persists and lists.
///
/// Build one from your database to [`KeyStore::load`](crate::KeyStore::load) it; get them back with
/// [`KeyStore::export`](crate::KeyStore::export). The key's id is derived from its digest ([`KeyRecord::id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KeyRecord {
    /// SHA-256 of the key's secret bytes (see [`KeyDigest`]).
    pub digest: KeyDigest,
    /// The name given at creation.
    pub name: String,
    /// The scopes the key holds; never empty.
    pub scopes: Scopes,
    /// Unix time of creation, in seconds.
    pub created_at: u64,
    /// Unix time from which the key is expired; `None` for a key that never expires.
    pub expires_at: Option<u64>,
    /// Unix time at which the key was revoked; `None` while it is not.
    pub revoked_at: Option<u64>,
    /// This key's own rate limit; `None` uses the authorizer's default.
    pub rate_limit: Option<Quota>,
    /// Unix time of the last request made with the key, if any.
    pub last_used_at: Option<u64>,
    /// The last four characters of the key, for display.
    pub last4: Last4,
}

impl KeyRecord {
    /// The key's public id.
    #[must_use]
    pub fn id(&self) -> KeyId {
        self.digest.id()
    }

    /// Whether the key is usable at `now`, or why not.
    #[must_use]
    pub fn status(&self, now: u64) -> KeyStatus {
        status(self.revoked_at.is_some(), self.expires_at, now)
    }

    /// Combines this record, the version already held, with another version of the same key so
    /// that changes only ever tighten it: the earliest revocation and the earliest expiry win,
    /// and the latest use is kept. What a key is (digest, name, scopes, rate limit, creation
    /// time, last four characters) is fixed when it is created and is taken from `self`, so a
    /// forged or tampered version can neither widen a key nor rename it.
    #[must_use]
    pub fn merged_with(&self, other: &KeyRecord) -> KeyRecord {
        fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        let mut merged = self.clone();
        merged.revoked_at = earliest(self.revoked_at, other.revoked_at);
        merged.expires_at = earliest(self.expires_at, other.expires_at);
        merged.last_used_at = self.last_used_at.max(other.last_used_at);
        merged
    }

    /// Whether `other` is this key with a different fixed part (digest, name, scopes, rate
    /// limit, creation time or last four characters): a version that [`KeyRecord::merged_with`]
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
        ];
        if times.into_iter().flatten().any(|t| t > MAX_TIME) {
            return Err(InvalidRecord::TimeOutOfRange);
        }
        Ok(())
    }
}

fn status(revoked: bool, expires_at: Option<u64>, now: u64) -> KeyStatus {
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
    if name.len() > MAX_NAME_LEN {
        return Err(InvalidRecord::NameTooLong { len: name.len() });
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidRecord::ControlCharacter);
    }
    Ok(())
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
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("key name is {len} bytes long, the most is 128")]
    NameTooLong {
        /// Length of the name in bytes.
        len: usize,
    },
    /// The name contains a control character.
    #[error("key name contains a control character")]
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
}
