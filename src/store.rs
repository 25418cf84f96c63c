//! The concurrent in-memory key store.

use core::fmt;
use core::net::IpAddr;
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;

use crate::address::IpAllowlist;
use crate::digest::{KeyDigest, KeyId};
use crate::id_hasher::IdBuildHasher;
use crate::key::Last4;
use crate::new_key::{IssuedKey, NewKey};
use crate::policy::KeyPolicy;
use crate::quota::Quota;
use crate::record::{InvalidRecord, KeyRecord, KeyStatus, MAX_TIME};
use crate::scope::Scopes;
use crate::time::UnixTime;

/// A rotation: the replacement key and the old key's record with its shortened expiry.
///
/// [`KeyStore::rotate`] plans and applies one at once. A host that saves changes before it
/// applies them plans one with [`Rotation::plan`], saves both records, then
/// [`insert`](KeyStore::insert)s them.
#[derive(Debug)]
#[non_exhaustive]
pub struct Rotation {
    /// The replacement key: same name, scopes, expiry and rate limit.
    pub new: IssuedKey,
    /// The old key's record, expiring `grace` after `now` (or at its own expiry, if sooner).
    pub old: KeyRecord,
}

impl Rotation {
    /// Plans the rotation of `old` at `now`: a new key with its settings, and `old` expiring
    /// `grace` later (in whole seconds, capped at [`MAX_TIME`]) unless it expires sooner. Nothing
    /// is stored.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotActive`] for a revoked or expired key.
    pub fn plan(old: &KeyRecord, grace: Duration, now: UnixTime) -> Result<Self, StoreError> {
        if old.status(now) != KeyStatus::Active {
            return Err(StoreError::NotActive);
        }
        let new = old
            .replacement()
            .generate(now)
            .map_err(|_| StoreError::NotActive)?;
        let grace_end = (now + grace).min(MAX_TIME);
        let mut old = old.clone();
        old.expires_at = Some(old.expires_at.map_or(grace_end, |t| t.min(grace_end)));
        Ok(Self { new, old })
    }
}

/// A store operation named a key that is not there or cannot be used for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No key has this id.
    #[error("no key with this id")]
    NotFound,
    /// The key is revoked or expired, so it cannot be rotated.
    #[error("key is revoked or expired")]
    NotActive,
}

/// A stored key, compact: 104 bytes plus its name, and [`Extra`] for the keys that need it.
struct Entry {
    digest: KeyDigest,
    /// Shared with every grant, so a host can name the key without a second lookup.
    name: Arc<str>,
    created_at: u64,
    /// `NEVER` when the key has no expiry.
    expires_at: u64,
    /// `NEVER` while the key is not revoked.
    revoked_at: u64,
    /// Zero until first use.
    last_used_at: AtomicU64,
    rate_limit: Option<Quota>,
    scopes: Scopes,
    last4: Last4,
    /// What few keys have: an allowlist, a window shared with a rotated key.
    extra: Option<Box<Extra>>,
}

struct Extra {
    allowed_ips: IpAllowlist,
    allowed_ips_changed_at: Option<UnixTime>,
    shares_limit_with: Option<KeyId>,
}

const NEVER: u64 = u64::MAX;

fn opt(t: u64) -> Option<UnixTime> {
    (t != NEVER).then_some(UnixTime::from_secs(t))
}

impl Entry {
    fn from_record(r: KeyRecord) -> Self {
        Self {
            digest: r.digest,
            name: Arc::from(r.name),
            created_at: r.created_at.as_secs(),
            expires_at: r.expires_at.map_or(NEVER, UnixTime::as_secs),
            revoked_at: r.revoked_at.map_or(NEVER, UnixTime::as_secs),
            last_used_at: AtomicU64::new(r.last_used_at.map_or(0, UnixTime::as_secs)),
            rate_limit: r.rate_limit,
            scopes: r.scopes,
            last4: r.last4,
            extra: (!r.allowed_ips.is_empty()
                || r.allowed_ips_changed_at.is_some()
                || r.shares_limit_with.is_some())
            .then(|| {
                Box::new(Extra {
                    allowed_ips: r.allowed_ips,
                    allowed_ips_changed_at: r.allowed_ips_changed_at,
                    shares_limit_with: r.shares_limit_with,
                })
            }),
        }
    }

    fn to_record(&self) -> KeyRecord {
        let last_used = self.last_used_at.load(Ordering::Relaxed);
        let record = KeyRecord::new(
            self.digest,
            &*self.name,
            self.scopes,
            UnixTime::from_secs(self.created_at),
            self.last4,
        )
        .with_expires_at(opt(self.expires_at))
        .with_revoked_at(opt(self.revoked_at))
        .with_rate_limit(self.rate_limit)
        .with_last_used_at((last_used != 0).then_some(UnixTime::from_secs(last_used)));
        match &self.extra {
            None => record,
            Some(x) => record
                .with_allowed_ips(x.allowed_ips.clone(), x.allowed_ips_changed_at)
                .with_shared_limit(x.shares_limit_with),
        }
    }
}

/// What the hot path learns about a presented digest.
pub(crate) enum Lookup {
    Unknown,
    Revoked(KeyId),
    Expired(KeyId),
    AddressNotAllowed(KeyId),
    Active {
        id: KeyId,
        limit_id: KeyId,
        name: Arc<str>,
        scopes: Scopes,
        rate_limit: Option<Quota>,
    },
}

/// A concurrent in-memory store of key records, indexed by key id.
///
/// Lookups take a shard read lock; issuing, revoking and removing take a shard write lock, so
/// readers on other shards never wait and every reader sees a change as soon as the call that
/// made it returns. The table hashes the already-uniform key id with one multiply.
///
/// # Security
///
/// A presented key is found by its id (the first 64 bits of its digest) and then accepted only if
/// all 32 digest bytes match, compared in constant time. The time a lookup takes can depend on
/// whether a stored digest shares those first 64 bits; learning that requires finding a secret
/// whose SHA-256 matches 64 bits of a stored digest and tells nothing about the other 192 bits.
pub struct KeyStore {
    map: DashMap<KeyId, Box<Entry>, IdBuildHasher>,
    policy: KeyPolicy,
}

impl KeyStore {
    /// Number of shards. Many shards keep readers on different keys from sharing a lock's
    /// cache line, which each read lock writes.
    const SHARDS: usize = 128;

    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty store with room for `capacity` keys.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            map: DashMap::with_capacity_and_hasher_and_shard_amount(
                capacity,
                IdBuildHasher::default(),
                Self::SHARDS,
            ),
            policy: KeyPolicy::default(),
        }
    }

    /// Checks every key issued from now on ([`KeyStore::issue`], [`KeyStore::prepare`]) against
    /// `policy`. Records stored with [`insert`](KeyStore::insert) or
    /// [`load`](KeyStore::load) are not checked: they were created already.
    #[must_use]
    pub fn with_policy(mut self, policy: KeyPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The policy new keys are checked against.
    #[must_use]
    pub fn policy(&self) -> KeyPolicy {
        self.policy
    }

    /// Creates a key, stores its record and returns both. The plaintext exists only in the
    /// returned [`IssuedKey`].
    ///
    /// # Errors
    ///
    /// As for [`NewKey::generate`], and [`InvalidRecord::Policy`] for a key the store's
    /// [`KeyPolicy`] refuses.
    pub fn issue(&self, new: &NewKey, now: UnixTime) -> Result<IssuedKey, InvalidRecord> {
        self.policy.check(new.expiry(), now)?;
        loop {
            let issued = new.generate(now)?;
            match self.insert_new(&issued.record) {
                // Two keys whose digests share 64 bits: draw another key.
                Err(InvalidRecord::IdCollision) => continue,
                Err(e) => return Err(e),
                Ok(()) => return Ok(issued),
            }
        }
    }

    /// Generates a key whose id no stored key has, without storing it: for hosts that persist
    /// the record first and then [`insert`](KeyStore::insert) it. (Only a key stored by another
    /// thread in between could take the id, a 2^-64 chance; `insert` then reports
    /// [`InvalidRecord::IdCollision`].)
    ///
    /// # Errors
    ///
    /// As for [`KeyStore::issue`].
    pub fn prepare(&self, new: &NewKey, now: UnixTime) -> Result<IssuedKey, InvalidRecord> {
        self.policy.check(new.expiry(), now)?;
        loop {
            let issued = new.generate(now)?;
            if !self.map.contains_key(&issued.record.id()) {
                return Ok(issued);
            }
        }
    }

    fn insert_new(&self, record: &KeyRecord) -> Result<(), InvalidRecord> {
        match self.map.entry(record.id()) {
            MapEntry::Occupied(_) => Err(InvalidRecord::IdCollision),
            MapEntry::Vacant(v) => {
                v.insert(Box::new(Entry::from_record(record.clone())));
                Ok(())
            }
        }
    }

    /// Stores a record. If the store already has this key, the two versions are merged with
    /// [`KeyRecord::merged_with`]: a revocation or an expiry is never undone or pushed back, and
    /// the key's fixed part (name, scopes, rate limit, creation time) stays as first stored, so
    /// records arriving late, out of order or altered (from a database, or from other
    /// instances) can neither revive a key nor widen it.
    ///
    /// # Errors
    ///
    /// [`InvalidRecord`] for an empty, overlong or control-character name or empty scopes, and
    /// [`InvalidRecord::IdCollision`] if a key with a different digest has the same id.
    pub fn insert(&self, record: KeyRecord) -> Result<(), InvalidRecord> {
        self.merge(record).map(drop)
    }

    /// Stores a record as [`KeyStore::insert`] does, and returns the record as now stored if
    /// that changed the store, or `None` if the store already knew everything it says (so a
    /// host need not save or announce it again).
    ///
    /// # Errors
    ///
    /// As [`KeyStore::insert`].
    pub fn merge(&self, record: KeyRecord) -> Result<Option<KeyRecord>, InvalidRecord> {
        record.validate()?;
        match self.map.entry(record.id()) {
            MapEntry::Occupied(mut o) => {
                if o.get().digest != record.digest {
                    return Err(InvalidRecord::IdCollision);
                }
                let held = o.get().to_record();
                let merged = held.merged_with(&record);
                if merged == held {
                    return Ok(None);
                }
                **o.get_mut() = Entry::from_record(merged.clone());
                Ok(Some(merged))
            }
            MapEntry::Vacant(v) => {
                v.insert(Box::new(Entry::from_record(record.clone())));
                Ok(Some(record))
            }
        }
    }

    /// Stores every record (see [`KeyStore::insert`]), returning how many were stored.
    ///
    /// # Errors
    ///
    /// Stops at the first invalid record and returns its position with the reason; the records
    /// before it are stored.
    pub fn load(
        &self,
        records: impl IntoIterator<Item = KeyRecord>,
    ) -> Result<usize, (usize, InvalidRecord)> {
        let mut n = 0;
        for record in records {
            self.insert(record).map_err(|e| (n, e))?;
            n += 1;
        }
        Ok(n)
    }

    /// Every record, in no particular order: the form to persist. Never contains a plaintext key.
    #[must_use]
    pub fn export(&self) -> Vec<KeyRecord> {
        self.map.iter().map(|e| e.value().to_record()).collect()
    }

    /// Every record, sorted by creation time then id.
    #[must_use]
    pub fn list(&self) -> Vec<KeyRecord> {
        let mut all = self.export();
        all.sort_by_key(|r| (r.created_at, r.id()));
        all
    }

    /// The record of the key with this id.
    #[must_use]
    pub fn get(&self, id: KeyId) -> Option<KeyRecord> {
        self.map.get(&id).map(|e| e.to_record())
    }

    /// Revokes the key: it is refused from the moment this returns. Revoking a revoked key keeps
    /// its first revocation time.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if no key has this id.
    pub fn revoke(&self, id: KeyId, now: UnixTime) -> Result<KeyRecord, StoreError> {
        let mut e = self.map.get_mut(&id).ok_or(StoreError::NotFound)?;
        if e.revoked_at == NEVER {
            e.revoked_at = now.as_secs();
        }
        Ok(e.to_record())
    }

    /// Limits the key to client addresses in `list` (empty: any address) from the moment this
    /// returns, stamped as changed at `now` (see [`KeyRecord::allowlist_changed`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if no key has this id.
    pub fn set_allowed_ips(
        &self,
        id: KeyId,
        list: IpAllowlist,
        now: UnixTime,
    ) -> Result<KeyRecord, StoreError> {
        let mut e = self.map.get_mut(&id).ok_or(StoreError::NotFound)?;
        let updated = e.to_record().allowlist_changed(list, now);
        let last_used = e.last_used_at.load(Ordering::Relaxed);
        let fresh = Entry::from_record(updated.clone());
        fresh.last_used_at.store(last_used, Ordering::Relaxed);
        **e = fresh;
        Ok(updated)
    }

    /// Deletes the key's record.
    pub fn remove(&self, id: KeyId) -> Option<KeyRecord> {
        self.map.remove(&id).map(|(_, e)| e.to_record())
    }

    /// Issues a replacement for an active key, with the same name, scopes, expiry, rate limit
    /// and allowlist, and makes the old key expire `grace` after `now` (or at its own expiry, if
    /// sooner). The replacement counts its requests in the old key's rate-limit window, so that
    /// during the grace both keys together get one quota.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id and [`StoreError::NotActive`] for a revoked or
    /// expired key.
    pub fn rotate(
        &self,
        id: KeyId,
        grace: Duration,
        now: UnixTime,
    ) -> Result<Rotation, StoreError> {
        let template = self.get(id).ok_or(StoreError::NotFound)?;
        let mut plan = Rotation::plan(&template, grace, now)?;
        // A replacement whose id a stored key has (a 2^-64 chance): plan another.
        while self.insert_new(&plan.new.record).is_err() {
            plan = Rotation::plan(&template, grace, now)?;
        }
        match self.map.get_mut(&id) {
            Some(mut e) => {
                e.expires_at = e
                    .expires_at
                    .min(plan.old.expires_at.map_or(NEVER, UnixTime::as_secs));
                plan.old = e.to_record();
            }
            None => {
                // Removed by another thread meanwhile: keep the store as that thread left it.
                self.remove(plan.new.record.id());
                return Err(StoreError::NotFound);
            }
        }
        Ok(plan)
    }

    /// Number of stored keys, revoked and expired ones included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store holds no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Finds the key with this digest and reports its state at `now` for a request from
    /// `client`, recording the use of an active key allowed from there.
    #[inline]
    pub(crate) fn lookup(
        &self,
        digest: &KeyDigest,
        now: UnixTime,
        client: Option<IpAddr>,
    ) -> Lookup {
        let now = now.as_secs();
        let id = digest.id();
        let Some(e) = self.map.get(&id) else {
            return Lookup::Unknown;
        };
        if e.digest != *digest {
            return Lookup::Unknown;
        }
        if e.revoked_at != NEVER {
            return Lookup::Revoked(id);
        }
        if now >= e.expires_at {
            return Lookup::Expired(id);
        }
        let mut limit_id = id;
        if let Some(x) = &e.extra {
            if !x.allowed_ips.allows(client) {
                return Lookup::AddressNotAllowed(id);
            }
            limit_id = x.shares_limit_with.unwrap_or(id);
        }
        if e.last_used_at.load(Ordering::Relaxed) < now {
            e.last_used_at.fetch_max(now, Ordering::Relaxed);
        }
        Lookup::Active {
            id,
            limit_id,
            name: e.name.clone(),
            scopes: e.scopes,
            rate_limit: e.rate_limit,
        }
    }
}

impl Default for KeyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.map.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::ApiKey;
    use crate::scope::Preset;

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    #[test]
    fn issue_get_list_revoke_remove() {
        let store = KeyStore::new();
        let issued = store
            .issue(
                &NewKey::new("ci", Preset::ReadOnly).expires_at(NOW.plus_secs(10)),
                NOW,
            )
            .unwrap();
        let id = issued.record.id();
        assert_eq!(issued.key.digest(), issued.record.digest);
        assert_eq!(issued.record.last4, issued.key.last4());
        assert_eq!(store.get(id).unwrap(), issued.record);
        assert_eq!(store.list(), vec![issued.record.clone()]);
        assert_eq!(store.get(id).unwrap().status(NOW), KeyStatus::Active);
        assert_eq!(
            store.get(id).unwrap().status(NOW.plus_secs(10)),
            KeyStatus::Expired
        );

        let revoked = store.revoke(id, NOW.plus_secs(1)).unwrap();
        assert_eq!(revoked.revoked_at, Some(NOW.plus_secs(1)));
        assert_eq!(
            store.revoke(id, NOW.plus_secs(5)).unwrap().revoked_at,
            Some(NOW.plus_secs(1))
        );
        assert!(matches!(
            store.lookup(&issued.record.digest, NOW.plus_secs(2), None),
            Lookup::Revoked(_)
        ));

        assert_eq!(store.remove(id).unwrap().id(), id);
        assert!(store.get(id).is_none());
        assert_eq!(store.revoke(id, NOW), Err(StoreError::NotFound));
        assert!(store.is_empty());
    }

    #[test]
    fn names_are_counted_in_characters() {
        let store = KeyStore::new();
        // 128 characters of four bytes each: 512 bytes, accepted.
        assert!(store
            .issue(&NewKey::new("🔑".repeat(128), Preset::Full), NOW)
            .is_ok());
        assert_eq!(
            store
                .issue(&NewKey::new("x".repeat(100_000), Preset::Full), NOW)
                .unwrap_err()
                .to_string(),
            "key name is 100000 characters long, the most is 128"
        );
    }

    #[test]
    fn new_key_validation() {
        let store = KeyStore::new();
        let cases = [
            (NewKey::new("", Preset::Full), InvalidRecord::EmptyName),
            (NewKey::new("  ", Preset::Full), InvalidRecord::EmptyName),
            (
                NewKey::new("x".repeat(129), Preset::Full),
                InvalidRecord::NameTooLong { len: 129 },
            ),
            // Counted in characters, as a person counts them: 129 two-byte letters.
            (
                NewKey::new("é".repeat(129), Preset::Full),
                InvalidRecord::NameTooLong { len: 129 },
            ),
            (
                NewKey::new("a\nb", Preset::Full),
                InvalidRecord::ControlCharacter,
            ),
            (
                NewKey::new("a", Scopes::empty()),
                InvalidRecord::EmptyScopes,
            ),
            (
                NewKey::new("a", Preset::Full).expires_at(NOW),
                InvalidRecord::ExpiryNotInFuture,
            ),
        ];
        for (new, err) in cases {
            assert_eq!(store.issue(&new, NOW).unwrap_err(), err);
        }
        assert!(store.is_empty());
    }

    #[test]
    fn lookup_outcomes_and_last_used() {
        let store = KeyStore::new();
        let issued = store.issue(&NewKey::new("a", Preset::Full), NOW).unwrap();
        let d = issued.record.digest;
        assert!(matches!(
            store.lookup(&d, NOW.plus_secs(3), None),
            Lookup::Active { .. }
        ));
        assert!(matches!(
            store.lookup(&d, NOW.plus_secs(1), None),
            Lookup::Active { .. }
        ));
        assert_eq!(
            store.get(d.id()).unwrap().last_used_at,
            Some(NOW.plus_secs(3))
        );

        // Same id, different digest: unknown.
        let mut other = *d.as_bytes();
        other[31] ^= 1;
        assert!(matches!(
            store.lookup(&KeyDigest::from_bytes(other), NOW, None),
            Lookup::Unknown
        ));
        assert!(matches!(
            store.lookup(&ApiKey::generate().digest(), NOW, None),
            Lookup::Unknown
        ));
    }

    #[test]
    fn rotate_keeps_settings_and_shortens_the_old_expiry() {
        let store = KeyStore::new();
        let q = Quota::per_minute(5);
        let old = store
            .issue(
                &NewKey::new("deploy", Scopes::VPS_WRITE)
                    .expires_at(NOW.plus_secs(1000))
                    .rate_limit(q),
                NOW,
            )
            .unwrap();
        let r = store
            .rotate(old.record.id(), Duration::from_secs(60), NOW.plus_secs(1))
            .unwrap();
        assert_eq!(r.old.expires_at, Some(NOW.plus_secs(61)));
        assert_eq!(r.new.record.name, "deploy");
        assert_eq!(r.new.record.scopes, Scopes::VPS_WRITE);
        assert_eq!(r.new.record.expires_at, Some(NOW.plus_secs(1000)));
        assert_eq!(r.new.record.rate_limit, Some(q));
        assert_eq!(r.new.record.created_at, NOW.plus_secs(1));
        assert_ne!(r.new.record.digest, old.record.digest);
        assert_eq!(store.len(), 2);
        assert!(matches!(
            store.lookup(&old.record.digest, NOW.plus_secs(60), None),
            Lookup::Active { .. }
        ));
        assert!(matches!(
            store.lookup(&old.record.digest, NOW.plus_secs(61), None),
            Lookup::Expired(_)
        ));

        // A long grace never extends the old key's own expiry.
        let r2 = store
            .rotate(
                r.new.record.id(),
                Duration::from_secs(10_000),
                NOW.plus_secs(2),
            )
            .unwrap();
        assert_eq!(r2.old.expires_at, Some(NOW.plus_secs(1000)));

        store.revoke(r2.new.record.id(), NOW.plus_secs(3)).unwrap();
        assert_eq!(
            store
                .rotate(r2.new.record.id(), Duration::from_secs(0), NOW.plus_secs(4))
                .unwrap_err(),
            StoreError::NotActive
        );
        assert_eq!(
            store
                .rotate(KeyId::from_u64(1), Duration::from_secs(0), NOW)
                .unwrap_err(),
            StoreError::NotFound
        );
    }

    #[test]
    fn the_policy_checks_new_keys_only() {
        let day = Duration::from_secs(86_400);
        let store = KeyStore::new().with_policy(KeyPolicy::default().with_max_lifetime(day));
        let never = NewKey::new("a", Preset::Full);
        let late = NewKey::new("a", Preset::Full).expires_at(NOW.plus_secs(86_401));
        for new in [&never, &late] {
            assert!(matches!(
                store.issue(new, NOW),
                Err(InvalidRecord::Policy(_))
            ));
            assert!(matches!(
                store.prepare(new, NOW),
                Err(InvalidRecord::Policy(_))
            ));
        }
        assert!(store.is_empty());
        let ok = NewKey::new("a", Preset::Full).expires_at(NOW.plus_secs(86_400));
        assert!(store.issue(&ok, NOW).is_ok());
        // A record created elsewhere (or before the policy) is stored as it is.
        let old = never.generate(NOW).unwrap().record;
        assert_eq!(store.insert(old), Ok(()));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn prepare_generates_without_storing() {
        let store = KeyStore::new();
        let new = NewKey::new("a", Preset::ReadOnly);
        let prepared = store.prepare(&new, NOW).unwrap();
        assert!(store.is_empty());
        assert_eq!(prepared.record.scopes, Scopes::READ_ONLY);
        store.insert(prepared.record.clone()).unwrap();
        assert_eq!(store.get(prepared.record.id()).unwrap(), prepared.record);
        assert_eq!(
            store
                .prepare(&NewKey::new("", Preset::Full), NOW)
                .unwrap_err(),
            InvalidRecord::EmptyName
        );
    }

    #[test]
    fn insert_never_loosens_a_key() {
        let store = KeyStore::new();
        let issued = store
            .issue(
                &NewKey::new("a", Preset::Full).expires_at(NOW.plus_secs(100)),
                NOW,
            )
            .unwrap();
        let stale = issued.record.clone();
        let id = stale.id();
        store.revoke(id, NOW.plus_secs(5)).unwrap();
        // A stale copy (not revoked, later expiry) arrives afterwards.
        let mut later = stale.clone();
        later.expires_at = Some(NOW.plus_secs(1000));
        later.name = "renamed".into();
        later.scopes = Scopes::FULL;
        later.rate_limit = Some(Quota::per_minute(1000));
        assert!(stale.conflicts_with(&later));
        store.insert(later).unwrap();
        let now = store.get(id).unwrap();
        assert_eq!(now.revoked_at, Some(NOW.plus_secs(5)));
        assert_eq!(now.expires_at, Some(NOW.plus_secs(100)));
        // What the key is stays as created.
        assert_eq!(now.name, "a");
        assert_eq!(now.scopes, Scopes::FULL);
        assert_eq!(now.rate_limit, None);
        assert!(!stale.conflicts_with(&now));
        // Nothing new: nothing to save or announce.
        assert_eq!(store.merge(now.clone()), Ok(None));
        let mut used = now.clone();
        used.last_used_at = Some(NOW.plus_secs(7));
        assert_eq!(store.merge(used.clone()), Ok(Some(used)));
        // An earlier revocation time does win.
        let mut earlier = stale;
        earlier.revoked_at = Some(NOW.plus_secs(1));
        store.insert(earlier).unwrap();
        assert_eq!(store.get(id).unwrap().revoked_at, Some(NOW.plus_secs(1)));
    }

    #[test]
    fn times_past_the_year_9999_are_refused() {
        let store = KeyStore::new();
        assert_eq!(
            store
                .issue(
                    &NewKey::new("a", Preset::Full).expires_at(MAX_TIME.plus_secs(1)),
                    NOW
                )
                .unwrap_err(),
            InvalidRecord::TimeOutOfRange
        );
        let mut r = NewKey::new("a", Preset::Full).generate(NOW).unwrap().record;
        r.last_used_at = Some(UnixTime::from_secs(u64::MAX));
        assert_eq!(store.insert(r), Err(InvalidRecord::TimeOutOfRange));
        assert!(store
            .issue(&NewKey::new("a", Preset::Full).expires_at(MAX_TIME), NOW)
            .is_ok());
    }

    #[test]
    fn export_and_load_round_trip() {
        let a = KeyStore::new();
        for i in 0..20 {
            a.issue(
                &NewKey::new(format!("k{i}"), Preset::Full),
                NOW.plus_secs(i),
            )
            .unwrap();
        }
        a.revoke(a.list()[3].id(), NOW.plus_secs(50)).unwrap();
        let b = KeyStore::new();
        assert_eq!(b.load(a.export()), Ok(20));
        assert_eq!(a.list(), b.list());

        let mut bad = a.list()[0].clone();
        bad.scopes = Scopes::empty();
        assert_eq!(b.load([bad]), Err((0, InvalidRecord::EmptyScopes)));

        let mut clash = a.list()[1].clone();
        let mut bytes = *clash.digest.as_bytes();
        bytes[20] ^= 0xff;
        clash.digest = KeyDigest::from_bytes(bytes);
        assert_eq!(b.insert(clash), Err(InvalidRecord::IdCollision));
    }
}
