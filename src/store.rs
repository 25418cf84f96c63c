//! The concurrent in-memory key store.

use core::fmt;
use core::net::IpAddr;
use core::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::address::IpAllowlist;
use crate::digest::{KeyDigest, KeyId};
use crate::key::Last4;
use crate::name::KeyName;
use crate::new_key::{IssuedKey, NewKey};
use crate::policy::KeyPolicy;
use crate::quota::Quota;
use crate::rate_limit::{LimitDecision, LimitPolicy, RateLimit};
use crate::record::{InvalidRecord, KeyRecord, KeyStatus, MAX_TIME};
use crate::scope::Scopes;
use crate::table::{Keyed, Table};
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

/// A stored key, inline in its table slot (at most 128 bytes with the slot's tag), with its
/// rate-limit window beside the fields the hot path reads, and [`Extra`] for the keys that need
/// it.
struct Entry {
    digest: KeyDigest,
    /// The key's rate-limit window as [`Authorizer::authorize`](crate::Authorizer::authorize)
    /// counts it: the end of the window (seconds, saturated to `u32`) in the high half, the
    /// requests counted in it in the low half; zero before the first.
    window: AtomicU64,
    /// Zero until first use.
    last_used_at: AtomicU64,
    /// `NEVER` when the key has no expiry.
    expires_at: u64,
    /// `NEVER` while the key is not revoked.
    revoked_at: u64,
    created_at: u64,
    /// Copied into every grant: inline up to 23 bytes (see [`KeyName`]).
    name: KeyName,
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
            window: AtomicU64::new(0),
            last_used_at: AtomicU64::new(r.last_used_at.map_or(0, UnixTime::as_secs)),
            expires_at: r.expires_at.map_or(NEVER, UnixTime::as_secs),
            revoked_at: r.revoked_at.map_or(NEVER, UnixTime::as_secs),
            created_at: r.created_at.as_secs(),
            name: KeyName::from(r.name),
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
            self.name.as_str(),
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
        name: KeyName,
        scopes: Scopes,
        rate_limit: Option<Quota>,
    },
}

impl Keyed for Entry {
    #[inline(always)]
    fn id(&self) -> u64 {
        self.digest.id().as_u64()
    }
}

const _: () = assert!(core::mem::size_of::<Option<Entry>>() <= 128);

/// A concurrent in-memory store of key records, indexed by key id.
///
/// Lookups take a shard read lock; issuing, revoking and removing take a shard write lock, so
/// readers on other shards never wait and every reader sees a change as soon as the call that
/// made it returns. Each key is stored inline in its own 128-byte slot of an open-addressed
/// table indexed by its already-uniform id, with its rate-limit window: authorizing a request
/// reads that slot and nothing else of the store.
///
/// # Security
///
/// A presented key is found by its id (the first 64 bits of its digest) and then accepted only if
/// all 32 digest bytes match, compared in constant time. The time a lookup takes can depend on
/// whether a stored digest shares those first 64 bits; learning that requires finding a secret
/// whose SHA-256 matches 64 bits of a stored digest and tells nothing about the other 192 bits.
pub struct KeyStore {
    map: Table<Entry>,
    policy: KeyPolicy,
}

impl KeyStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty store with room for `capacity` keys.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            map: Table::with_capacity(capacity),
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
            let id = issued.record.id().as_u64();
            if self.map.read(id).get(id).is_none() {
                return Ok(issued);
            }
        }
    }

    fn insert_new(&self, record: &KeyRecord) -> Result<(), InvalidRecord> {
        let id = record.id().as_u64();
        let mut shard = self.map.write(id);
        if shard.get(id).is_some() {
            return Err(InvalidRecord::IdCollision);
        }
        shard.insert_new(Entry::from_record(record.clone()));
        Ok(())
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
        let id = record.id().as_u64();
        let mut shard = self.map.write(id);
        let Some(e) = shard.get_mut(id) else {
            shard.insert_new(Entry::from_record(record.clone()));
            return Ok(Some(record));
        };
        if e.digest != record.digest {
            return Err(InvalidRecord::IdCollision);
        }
        let held = e.to_record();
        let merged = held.merged_with(&record);
        if merged == held {
            return Ok(None);
        }
        // The record says nothing of the window: it is kept.
        let window = e.window.load(Ordering::Relaxed);
        *e = Entry::from_record(merged.clone());
        e.window.store(window, Ordering::Relaxed);
        Ok(Some(merged))
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
        let mut all = Vec::with_capacity(self.len());
        self.map.for_each(|e| all.push(e.to_record()));
        all
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
        let id = id.as_u64();
        self.map.read(id).get(id).map(Entry::to_record)
    }

    /// Revokes the key: it is refused from the moment this returns. Revoking a revoked key keeps
    /// its first revocation time.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if no key has this id.
    pub fn revoke(&self, id: KeyId, now: UnixTime) -> Result<KeyRecord, StoreError> {
        let mut shard = self.map.write(id.as_u64());
        let e = shard.get_mut(id.as_u64()).ok_or(StoreError::NotFound)?;
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
        let mut shard = self.map.write(id.as_u64());
        let e = shard.get_mut(id.as_u64()).ok_or(StoreError::NotFound)?;
        let updated = e.to_record().allowlist_changed(list, now);
        let (last_used, window) = (
            e.last_used_at.load(Ordering::Relaxed),
            e.window.load(Ordering::Relaxed),
        );
        *e = Entry::from_record(updated.clone());
        e.last_used_at.store(last_used, Ordering::Relaxed);
        e.window.store(window, Ordering::Relaxed);
        Ok(updated)
    }

    /// Deletes the key's record.
    pub fn remove(&self, id: KeyId) -> Option<KeyRecord> {
        let id = id.as_u64();
        self.map.write(id).remove(id).map(|e| e.to_record())
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
        let mut shard = self.map.write(id.as_u64());
        match shard.get_mut(id.as_u64()) {
            Some(e) => {
                e.expires_at = e
                    .expires_at
                    .min(plan.old.expires_at.map_or(NEVER, UnixTime::as_secs));
                plan.old = e.to_record();
            }
            None => {
                // Removed by another thread meanwhile: keep the store as that thread left it.
                drop(shard);
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
        self.map.len() == 0
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
        let shard = self.map.read(id.as_u64());
        let Some(e) = shard.get(id.as_u64()) else {
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

/// What [`KeyStore::lookup_counting`] learns: the key's refusal, or its grant-to-be with the
/// window's answer.
pub(crate) enum Counted {
    Refused(Lookup),
    Active {
        id: KeyId,
        limit_id: KeyId,
        name: KeyName,
        scopes: Scopes,
        quota: Quota,
        limit: LimitDecision,
    },
}

impl KeyStore {
    /// [`KeyStore::lookup`], and for an active key one request counted in its window, kept in
    /// its entry (`default` is the quota of keys without their own). A key that shares the
    /// window of the key it replaced counts in that key's entry (its own when that one is gone).
    #[inline(always)]
    pub(crate) fn lookup_counting(
        &self,
        digest: &KeyDigest,
        now: UnixTime,
        client: Option<IpAddr>,
        default: Quota,
    ) -> Counted {
        let secs = now.as_secs();
        let id = digest.id();
        let shard = self.map.read(id.as_u64());
        let Some(e) = shard.get(id.as_u64()) else {
            return Counted::Refused(Lookup::Unknown);
        };
        if e.digest != *digest {
            return Counted::Refused(Lookup::Unknown);
        }
        if e.revoked_at != NEVER {
            return Counted::Refused(Lookup::Revoked(id));
        }
        if secs >= e.expires_at {
            return Counted::Refused(Lookup::Expired(id));
        }
        let limit_id = match &e.extra {
            None => id,
            Some(x) if x.allowed_ips.allows(client) => x.shares_limit_with.unwrap_or(id),
            Some(_) => return Counted::Refused(Lookup::AddressNotAllowed(id)),
        };
        if e.last_used_at.load(Ordering::Relaxed) < secs {
            e.last_used_at.fetch_max(secs, Ordering::Relaxed);
        }
        let quota = e.rate_limit.unwrap_or(default);
        if limit_id == id {
            return Counted::Active {
                id,
                limit_id,
                name: e.name.clone(),
                scopes: e.scopes,
                quota,
                limit: count_in(&e.window, quota, secs),
            };
        }
        let (name, scopes) = (e.name.clone(), e.scopes);
        let limit = {
            // The other entry may be on this shard: this one's lock is let go first.
            drop(shard);
            let other = self.map.read(limit_id.as_u64());
            match other.get(limit_id.as_u64()) {
                Some(shared) => count_in(&shared.window, quota, secs),
                None => {
                    drop(other);
                    match self.map.read(id.as_u64()).get(id.as_u64()) {
                        Some(own) => count_in(&own.window, quota, secs),
                        None => return Counted::Refused(Lookup::Unknown),
                    }
                }
            }
        };
        Counted::Active {
            id,
            limit_id,
            name,
            scopes,
            quota,
            limit,
        }
    }

    /// The state of the window kept in `id`'s entry under `quota` at `now`, without counting;
    /// an empty window when no key has this id.
    pub(crate) fn peek_window(&self, id: KeyId, quota: Quota, now: UnixTime) -> RateLimit {
        let secs = now.as_secs();
        let end = window_end(quota, secs);
        let held = self
            .map
            .read(id.as_u64())
            .get(id.as_u64())
            .map_or(0, |e| e.window.load(Ordering::Relaxed));
        let (reset_at, count) = ((held >> 32) as u32, held as u32);
        if reset_at >= end && reset_at - end <= quota.period_secs() {
            window_state(quota, count, reset_at)
        } else {
            window_state(quota, 0, end)
        }
    }
}

/// The end of the window of `quota` holding `now`, saturated to `u32` (a 60-second period, the
/// spec's, divides by a constant).
#[inline(always)]
fn window_end(quota: Quota, now: u64) -> u32 {
    let period = u64::from(quota.period_secs());
    let start = if period == 60 { now / 60 } else { now / period };
    u32::try_from(start.saturating_add(1).saturating_mul(period)).unwrap_or(u32::MAX)
}

#[inline(always)]
fn window_state(quota: Quota, count: u32, reset_at: u32) -> RateLimit {
    RateLimit {
        limit: quota.limit(),
        remaining: quota.limit().saturating_sub(count),
        reset_at: UnixTime::from_secs(u64::from(reset_at)),
        period_secs: quota.period_secs(),
        policy: LimitPolicy::Key,
    }
}

/// Counts one request in the window held in `cell` under `quota` at `now`, if it has room, with
/// the [`RateLimiter`](crate::RateLimiter)'s rules: a new window when the held one is over, or
/// when it lies more than one window ahead (counted while the clock ran ahead, and the clock
/// was corrected); a time up to one window behind counts in the held window; a refused request
/// is not counted.
#[inline(always)]
fn count_in(cell: &AtomicU64, quota: Quota, now: u64) -> LimitDecision {
    let (limit, period) = (quota.limit(), quota.period_secs());
    let end = window_end(quota, now);
    let mut current = cell.load(Ordering::Relaxed);
    loop {
        let (mut reset_at, mut count) = ((current >> 32) as u32, current as u32);
        if reset_at < end || reset_at - end > period {
            (reset_at, count) = (end, 0);
        }
        if count >= limit {
            return LimitDecision::Limited(window_state(quota, limit, reset_at));
        }
        let next = (u64::from(reset_at) << 32) | u64::from(count + 1);
        match cell.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return LimitDecision::Allowed(window_state(quota, count + 1, reset_at)),
            Err(seen) => current = seen,
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
            .field("keys", &self.len())
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
    fn windows_in_entries_survive_merges_and_are_shared_by_replacements() {
        let store = KeyStore::new();
        let quota = Quota::per_minute(2);
        let issued = store
            .issue(&NewKey::new("ci", Preset::ReadOnly).rate_limit(quota), NOW)
            .unwrap();
        let digest = issued.key.digest();
        let count =
            |d: &KeyDigest, t: UnixTime| match store.lookup_counting(d, t, None, Quota::SPEC) {
                Counted::Active { limit, .. } => limit.is_allowed(),
                Counted::Refused(_) => panic!("the key is active"),
            };
        assert!(count(&digest, NOW));
        // A record merged in (as from the data file or another instance) keeps the window.
        let later = issued
            .record
            .clone()
            .with_last_used_at(Some(NOW.plus_secs(1)));
        assert!(store.merge(later).unwrap().is_some());
        assert!(count(&digest, NOW.plus_secs(1)));
        assert!(!count(&digest, NOW.plus_secs(2)));
        store
            .set_allowed_ips(issued.record.id(), IpAllowlist::default(), NOW.plus_secs(2))
            .unwrap();
        assert!(!count(&digest, NOW.plus_secs(3)));
        assert_eq!(
            store
                .peek_window(issued.record.id(), quota, NOW.plus_secs(3))
                .remaining,
            0
        );
        // The replacement counts in the replaced key's window, full until the next window.
        let rotation = store
            .rotate(
                issued.record.id(),
                Duration::from_secs(3600),
                NOW.plus_secs(3),
            )
            .unwrap();
        assert!(!count(&rotation.new.key.digest(), NOW.plus_secs(4)));
        let next = UnixTime::from_secs((NOW.as_secs() / 60 + 1) * 60);
        assert!(count(&rotation.new.key.digest(), next));
        assert!(count(&digest, next));
        assert!(!count(&rotation.new.key.digest(), next));
        // A clock one window ahead, then corrected: counting resumes at the corrected time.
        let ahead = next.plus_secs(600);
        assert!(count(&digest, ahead));
        assert!(count(&digest, next.plus_secs(1)));
    }

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
