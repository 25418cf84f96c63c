//! Creating keys: [`NewKey`], the settings of a key to be created, and [`IssuedKey`], the new
//! key with its plaintext, shown once.

use crate::address::IpAllowlist;
use crate::digest::KeyId;
use crate::key::ApiKey;
use crate::quota::Quota;
use crate::record::{InvalidRecord, KeyRecord};
use crate::scope::Scopes;
use crate::time::UnixTime;

/// The settings of a key to be created.
///
/// ```
/// use sitequest_auth::{NewKey, Preset, Quota, UnixTime};
/// let new = NewKey::new("ci deploy", Preset::ReadOnly)
///     .expires_at(UnixTime::from_secs(1_900_000_000))
///     .rate_limit(Quota::per_minute(120));
/// # let _ = new;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewKey {
    name: String,
    scopes: Scopes,
    expires_at: Option<UnixTime>,
    rate_limit: Option<Quota>,
    allowed_ips: IpAllowlist,
    shares_limit_with: Option<KeyId>,
}

impl NewKey {
    /// A key named `name` holding `scopes` (a [`Preset`](crate::Preset) or a [`Scopes`] set).
    pub fn new(name: impl Into<String>, scopes: impl Into<Scopes>) -> Self {
        Self {
            name: name.into(),
            scopes: scopes.into(),
            expires_at: None,
            rate_limit: None,
            allowed_ips: IpAllowlist::default(),
            shares_limit_with: None,
        }
    }

    /// Limits the key to client addresses in `list` (the default, an empty list, allows any).
    #[must_use]
    pub fn allowed_ips(mut self, list: IpAllowlist) -> Self {
        self.allowed_ips = list;
        self
    }

    /// Makes the key expire at `at`.
    #[must_use]
    pub fn expires_at(mut self, at: UnixTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// When the key will expire, if it will.
    #[must_use]
    pub fn expiry(&self) -> Option<UnixTime> {
        self.expires_at
    }

    /// Gives the key its own rate limit instead of the default.
    #[must_use]
    pub fn rate_limit(mut self, quota: Quota) -> Self {
        self.rate_limit = Some(quota);
        self
    }

    /// Generates the key and its record without storing them, for hosts that persist the record
    /// before putting it in the store with [`KeyStore::insert`](crate::KeyStore::insert).
    ///
    /// # Errors
    ///
    /// [`InvalidRecord`] for an empty, overlong or control-character name, an empty scope set, an
    /// expiry time not after `now`, or a time after [`MAX_TIME`](crate::MAX_TIME).
    pub fn generate(&self, now: UnixTime) -> Result<IssuedKey, InvalidRecord> {
        self.generate_with(&mut rand::rngs::OsRng, now)
    }

    /// As [`NewKey::generate`], drawing the key from `rng` (for reproducible tests and
    /// benchmarks; use a cryptographically secure generator for real keys).
    ///
    /// # Errors
    ///
    /// As for [`NewKey::generate`].
    pub fn generate_with<R: rand::RngCore + rand::CryptoRng>(
        &self,
        rng: &mut R,
        now: UnixTime,
    ) -> Result<IssuedKey, InvalidRecord> {
        if self.expires_at.is_some_and(|t| t <= now) {
            return Err(InvalidRecord::ExpiryNotInFuture);
        }
        let key = ApiKey::generate_with(rng);
        let record = KeyRecord::new(
            key.digest(),
            self.name.clone(),
            self.scopes,
            now,
            key.last4(),
        )
        .with_expires_at(self.expires_at)
        .with_rate_limit(self.rate_limit)
        .with_shared_limit(self.shares_limit_with);
        let changed = (!self.allowed_ips.is_empty()).then_some(now);
        let record = record.with_allowed_ips(self.allowed_ips.clone(), changed);
        // The same rules as for stored records (name, scopes, time range).
        record.validate()?;
        Ok(IssuedKey { key, record })
    }
}

/// A newly created key: the plaintext (shown once) and its record.
#[derive(Debug)]
#[non_exhaustive]
pub struct IssuedKey {
    /// The key itself. Show [`ApiKey::expose_secret`] to its owner once; it is not kept.
    pub key: ApiKey,
    /// The record as stored.
    pub record: KeyRecord,
}

impl KeyRecord {
    /// The settings of a replacement for this key: same name, scopes, expiry, rate limit and
    /// allowlist, counting in this key's rate-limit window.
    #[must_use]
    pub fn replacement(&self) -> NewKey {
        NewKey {
            name: self.name.clone(),
            scopes: self.scopes,
            expires_at: self.expires_at,
            rate_limit: self.rate_limit,
            allowed_ips: self.allowed_ips.clone(),
            shares_limit_with: Some(self.limit_id()),
        }
    }
}
