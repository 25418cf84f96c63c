//! The concurrent in-memory key store.

use core::fmt;
use core::net::IpAddr;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::address::IpAllowlist;
use crate::digest::{KeyDigest, KeyId};
use crate::key::Last4;
use crate::limiter::RateLimiter;
use crate::name::KeyName;
use crate::new_key::{IssuedKey, NewKey};
use crate::policy::KeyPolicy;
use crate::quota::Quota;
use crate::rate_limit::{LimitDecision, RateLimit};
use crate::record::{InvalidRecord, KeyRecord, KeyStatus, MAX_TIME};
use crate::scope::Scopes;
use crate::table::{self, Table};
use crate::time::UnixTime;

use std::collections::HashMap;

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

/// What a request reads of a stored key, with its rate-limit window: one cache line.
#[repr(C, align(64))]
struct Hot {
    digest: KeyDigest,
    /// The key's rate-limit window as [`Authorizer::authorize`](crate::Authorizer::authorize)
    /// counts it for a key with a quota of its own or under a one-minute default quota (see
    /// [`ENTRY_PERIOD_SECS`]): the end of the window (seconds, saturated to `u32`) in the high half, the
    /// requests counted in it in the low half; zero before the first.
    window: AtomicU64,
    /// `NEVER` when the key has no expiry.
    expires_at: u64,
    rate_limit: Option<Quota>,
    /// The second of the last use, saturated to `u32` (zero before the first): a request
    /// writes the exact time in the cold part only when this second has passed.
    used_at: AtomicU32,
    scopes: Scopes,
    /// [`USED`], [`REVOKED`], [`EXTRA`].
    flags: u8,
}

/// The slot holds a key.
const USED: u8 = 1;
/// The key is revoked.
const REVOKED: u8 = 2;
/// The key has an allowlist or shares a window: see [`Extra`].
const EXTRA: u8 = 4;

const _: () = assert!(core::mem::size_of::<Hot>() == 64);

impl table::Hot for Hot {
    fn vacant() -> Self {
        Self {
            digest: KeyDigest::from_bytes([0; 32]),
            window: AtomicU64::new(0),
            expires_at: 0,
            rate_limit: None,
            used_at: AtomicU32::new(0),
            scopes: Scopes::empty(),
            flags: 0,
        }
    }

    #[inline(always)]
    fn is_used(&self) -> bool {
        self.flags & USED != 0
    }

    #[inline(always)]
    fn id(&self) -> u64 {
        self.digest.id().as_u64()
    }
}

/// The rest of a stored key, read to name it, list it or export it, and by requests of keys
/// with an [`Extra`].
struct Cold {
    name: KeyName,
    created_at: u64,
    /// `NEVER` while the key is not revoked.
    revoked_at: u64,
    /// Zero until first use.
    last_used_at: AtomicU64,
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

/// Seconds saturated to `u32`.
#[inline(always)]
fn secs32(t: u64) -> u32 {
    u32::try_from(t).unwrap_or(u32::MAX)
}

/// A stored key's two parts, made from its record.
fn entry(r: KeyRecord) -> (Hot, Cold) {
    let last_used = r.last_used_at.map_or(0, UnixTime::as_secs);
    let extra = (!r.allowed_ips.is_empty()
        || r.allowed_ips_changed_at.is_some()
        || r.shares_limit_with.is_some())
    .then(|| {
        Box::new(Extra {
            allowed_ips: r.allowed_ips,
            allowed_ips_changed_at: r.allowed_ips_changed_at,
            shares_limit_with: r.shares_limit_with,
        })
    });
    let flags = USED
        | if r.revoked_at.is_some() { REVOKED } else { 0 }
        | if extra.is_some() { EXTRA } else { 0 };
    let hot = Hot {
        digest: r.digest,
        window: AtomicU64::new(0),
        expires_at: r.expires_at.map_or(NEVER, UnixTime::as_secs),
        rate_limit: r.rate_limit,
        used_at: AtomicU32::new(secs32(last_used)),
        scopes: r.scopes,
        flags,
    };
    let cold = Cold {
        name: KeyName::from(r.name),
        created_at: r.created_at.as_secs(),
        revoked_at: r.revoked_at.map_or(NEVER, UnixTime::as_secs),
        last_used_at: AtomicU64::new(last_used),
        last4: r.last4,
        extra,
    };
    (hot, cold)
}

/// The record of a stored key.
fn record(hot: &Hot, cold: &Cold) -> KeyRecord {
    let last_used = cold.last_used_at.load(Ordering::Relaxed);
    let record = KeyRecord::new(
        hot.digest,
        cold.name.as_str(),
        hot.scopes,
        UnixTime::from_secs(cold.created_at),
        cold.last4,
    )
    .with_expires_at(opt(hot.expires_at))
    .with_revoked_at(opt(cold.revoked_at))
    .with_rate_limit(hot.rate_limit)
    .with_last_used_at((last_used != 0).then_some(UnixTime::from_secs(last_used)));
    match &cold.extra {
        None => record,
        Some(x) => record
            .with_allowed_ips(x.allowed_ips.clone(), x.allowed_ips_changed_at)
            .with_shared_limit(x.shares_limit_with),
    }
}

/// Replaces a stored key's parts with those of `r`, keeping its window (a record says nothing
/// of it).
fn replace(slot: (&mut Hot, &mut Cold), r: KeyRecord) {
    let window = slot.0.window.load(Ordering::Relaxed);
    let (hot, cold) = entry(r);
    hot.window.store(window, Ordering::Relaxed);
    *slot.0 = hot;
    *slot.1 = cold;
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
        scopes: Scopes,
        rate_limit: Option<Quota>,
    },
}

/// A concurrent in-memory store of key records, indexed by key id.
///
/// Lookups take a shard read lock; issuing, revoking and removing take a shard write lock, so
/// readers on other shards never wait and every reader sees a change as soon as the call that
/// made it returns. What a request reads of a key, with its rate-limit window, is one 64-byte
/// slot of an open-addressed table indexed by the key's already-uniform id: authorizing a
/// request of a key without an allowlist reads that line and nothing else of the store. The
/// key's name and the rest of its record are kept beside it, read to name, list or export it.
///
/// # Security
///
/// A presented key is found by its id (the first 64 bits of its digest) and then accepted only if
/// all 32 digest bytes match, compared in constant time. The time a lookup takes can depend on
/// whether a stored digest shares those first 64 bits; learning that requires finding a secret
/// whose SHA-256 matches 64 bits of a stored digest and tells nothing about the other 192 bits.
pub struct KeyStore {
    map: Table<Hot, Cold>,
    policy: KeyPolicy,
    retired: parking_lot::RwLock<Retired>,
    /// The windows of keys without a quota of their own under a default quota whose period is
    /// not [`ENTRY_PERIOD_SECS`], one limiter per period (see [`KeyStore::windows_of_period`]).
    period_windows: parking_lot::Mutex<Vec<(u32, Arc<RateLimiter>)>>,
}

/// The period of the default quotas whose windows are kept in the keys' entries: the spec's
/// minute. A key's entry holds one window, so only one period can count there for keys without
/// a quota of their own (two periods in one window would reset each other's and neither would
/// limit); keys with a quota of their own always count in their entry.
pub(crate) const ENTRY_PERIOD_SECS: u32 = Quota::SPEC.period_secs();

/// Stripes of the limiter the store keeps for another period (see
/// [`KeyStore::windows_of_period`]).
const PERIOD_STRIPES: usize = 1024;

/// The rate-limit windows of removed keys, while they may still be counted in: by a replacement
/// that shares the removed key's window (it keeps counting there after the key is gone), or by
/// the same key stored again (its window comes back with it). A window that has ended is the
/// same as none and is dropped, a minute after its end (so a request whose clock was read just
/// before the end still finds it).
#[derive(Default)]
struct Retired {
    windows: HashMap<u64, AtomicU64>,
    /// The latest time the ended windows were dropped at.
    pruned_at: u64,
}

/// The most windows kept for removed keys: past it (removals of used keys faster than their
/// windows end) the windows that end first are forgotten to make room.
const MAX_RETIRED: usize = 1 << 16;

/// How many windows make room at once when [`MAX_RETIRED`] are kept.
const RETIRED_EVICTED: usize = MAX_RETIRED / 8;

/// How long after its end a kept window is dropped.
const RETIRED_MARGIN_SECS: u64 = 60;

impl Retired {
    /// Drops the windows that ended more than [`RETIRED_MARGIN_SECS`] before `now`, at most
    /// once per second the clock reads (a clock stepped ahead and then corrected prunes again
    /// at the corrected time).
    fn prune(&mut self, now: u64) {
        if now != self.pruned_at {
            self.pruned_at = now;
            self.windows.retain(|_, w| {
                (w.load(Ordering::Relaxed) >> 32).saturating_add(RETIRED_MARGIN_SECS) > now
            });
        }
    }

    /// Makes room for one more window when [`MAX_RETIRED`] are kept, by dropping the eighth
    /// that end first (the least likely to be counted in again): one scan per
    /// [`RETIRED_EVICTED`] windows kept past the bound, so a flood of removals pays a few
    /// nanoseconds each rather than a scan each.
    fn make_room(&mut self) {
        if self.windows.len() < MAX_RETIRED {
            return;
        }
        let mut by_end: Vec<(u64, u64)> = self
            .windows
            .iter()
            .map(|(&id, w)| (w.load(Ordering::Relaxed) >> 32, id))
            .collect();
        by_end.select_nth_unstable(RETIRED_EVICTED - 1);
        for &(_, id) in &by_end[..RETIRED_EVICTED] {
            self.windows.remove(&id);
        }
    }

    /// Keeps `window`, the window of the removed key `id`, if it counted anything.
    fn keep(&mut self, id: u64, window: u64) {
        if window != 0 {
            self.make_room();
            self.windows.insert(id, AtomicU64::new(window));
        }
    }
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
            retired: parking_lot::RwLock::new(Retired::default()),
            period_windows: parking_lot::Mutex::new(Vec::new()),
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
        self.retired.write().prune(now.as_secs());
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
        self.retired.write().prune(now.as_secs());
        loop {
            let issued = new.generate(now)?;
            let id = issued.record.id().as_u64();
            if self.map.read(id).find(id).is_none() {
                return Ok(issued);
            }
        }
    }

    fn insert_new(&self, record: &KeyRecord) -> Result<(), InvalidRecord> {
        let id = record.id().as_u64();
        let mut shard = self.map.write(id);
        if shard.find(id).is_some() {
            return Err(InvalidRecord::IdCollision);
        }
        let (hot, cold) = entry(record.clone());
        shard.insert_new(self.with_retired_window(hot), cold);
        Ok(())
    }

    /// `hot`, with the window its key had when it was removed, if that is kept (called under
    /// the key's shard's write lock, so no request counts in between).
    fn with_retired_window(&self, hot: Hot) -> Hot {
        if self.retired.read().windows.is_empty() {
            return hot;
        }
        let mut retired = self.retired.write();
        if let Some(window) = retired.windows.remove(&table::Hot::id(&hot)) {
            hot.window.store(window.into_inner(), Ordering::Relaxed);
        }
        hot
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
        let Some((hot, cold)) = shard.get_mut(id) else {
            let (hot, cold) = entry(record.clone());
            shard.insert_new(self.with_retired_window(hot), cold);
            return Ok(Some(record));
        };
        if hot.digest != record.digest {
            return Err(InvalidRecord::IdCollision);
        }
        let held = self::record(hot, cold);
        let merged = held.merged_with(&record);
        if merged == held {
            return Ok(None);
        }
        replace((hot, cold), merged.clone());
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
        self.map.for_each(|hot, cold| all.push(record(hot, cold)));
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
        self.map
            .read(id)
            .get(id)
            .map(|(hot, cold)| record(hot, cold))
    }

    /// The name of the key with this id (a [`Grant`](crate::Grant) does not carry it: see
    /// [`KeyName`]).
    #[must_use]
    pub fn name(&self, id: KeyId) -> Option<KeyName> {
        let id = id.as_u64();
        self.map.read(id).get(id).map(|(_, cold)| cold.name.clone())
    }

    /// Revokes the key: it is refused from the moment this returns. Revoking a revoked key keeps
    /// its first revocation time.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if no key has this id.
    pub fn revoke(&self, id: KeyId, now: UnixTime) -> Result<KeyRecord, StoreError> {
        let mut shard = self.map.write(id.as_u64());
        let (hot, cold) = shard.get_mut(id.as_u64()).ok_or(StoreError::NotFound)?;
        if cold.revoked_at == NEVER {
            cold.revoked_at = now.as_secs();
            hot.flags |= REVOKED;
        }
        Ok(record(hot, cold))
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
        let (hot, cold) = shard.get_mut(id.as_u64()).ok_or(StoreError::NotFound)?;
        let updated = record(hot, cold).allowlist_changed(list, now);
        replace((hot, cold), updated.clone());
        Ok(updated)
    }

    /// Deletes the key's record. Its rate-limit window is kept while it lasts: a replacement
    /// that shares it ([`KeyStore::rotate`]) keeps counting there, and the key stored again
    /// gets it back, so removing a key never hands out a fresh quota within a window.
    pub fn remove(&self, id: KeyId) -> Option<KeyRecord> {
        let id = id.as_u64();
        let mut shard = self.map.write(id);
        let (hot, cold) = shard.remove(id)?;
        self.retired
            .write()
            .keep(id, hot.window.load(Ordering::Relaxed));
        drop(shard);
        Some(record(&hot, &cold))
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
        self.retired.write().prune(now.as_secs());
        let mut plan = Rotation::plan(&template, grace, now)?;
        // A replacement whose id a stored key has (a 2^-64 chance): plan another.
        while self.insert_new(&plan.new.record).is_err() {
            plan = Rotation::plan(&template, grace, now)?;
        }
        let mut shard = self.map.write(id.as_u64());
        let outcome = match shard.get_mut(id.as_u64()) {
            // Revoked (or expired) by another call meanwhile: no replacement for it.
            Some((hot, cold)) if record(hot, cold).status(now) != KeyStatus::Active => {
                Err(StoreError::NotActive)
            }
            Some((hot, cold)) => {
                hot.expires_at = hot
                    .expires_at
                    .min(plan.old.expires_at.map_or(NEVER, UnixTime::as_secs));
                plan.old = record(hot, cold);
                Ok(())
            }
            // Removed by another call meanwhile.
            None => Err(StoreError::NotFound),
        };
        drop(shard);
        match outcome {
            Ok(()) => Ok(plan),
            Err(e) => {
                // Keep the store as the other call left it. The replacement was never
                // returned, so nothing counted in its window.
                self.map
                    .write(plan.new.record.id().as_u64())
                    .remove(plan.new.record.id().as_u64());
                Err(e)
            }
        }
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
        let secs = now.as_secs();
        let id = digest.id();
        let shard = self.map.read(id.as_u64());
        let Some(i) = shard.find(id.as_u64()) else {
            return Lookup::Unknown;
        };
        let hot = shard.hot(i);
        let limit_id = match check(hot, &shard, i, digest, secs, client) {
            Ok(limit_id) => limit_id,
            Err(refused) => return refused,
        };
        Lookup::Active {
            id,
            limit_id,
            scopes: hot.scopes,
            rate_limit: hot.rate_limit,
        }
    }
}

/// The checks of a lookup that found `hot` in slot `i` of `shard`: the whole digest, revoked,
/// expired, the allowlist; then the use recorded. The id whose window the key counts in, or
/// the refusal.
#[inline(always)]
fn check(
    hot: &Hot,
    shard: &table::Slots<Hot, Cold>,
    i: usize,
    digest: &KeyDigest,
    secs: u64,
    client: Option<IpAddr>,
) -> Result<KeyId, Lookup> {
    let id = digest.id();
    if hot.digest != *digest {
        return Err(Lookup::Unknown);
    }
    if hot.flags & REVOKED != 0 {
        return Err(Lookup::Revoked(id));
    }
    if secs >= hot.expires_at {
        return Err(Lookup::Expired(id));
    }
    let mut limit_id = id;
    if hot.flags & EXTRA != 0 {
        if let Some(x) = shard.cold(i).and_then(|c| c.extra.as_deref()) {
            if !x.allowed_ips.allows(client) {
                return Err(Lookup::AddressNotAllowed(id));
            }
            limit_id = x.shares_limit_with.unwrap_or(id);
        }
    }
    // The exact time is written once a second at most; `u32::MAX` is every time from 2106.
    let now32 = secs32(secs);
    if hot.used_at.load(Ordering::Relaxed) < now32 || now32 == u32::MAX {
        hot.used_at.fetch_max(now32, Ordering::Relaxed);
        if let Some(cold) = shard.cold(i) {
            cold.last_used_at.fetch_max(secs, Ordering::Relaxed);
        }
    }
    Ok(limit_id)
}

/// What [`KeyStore::lookup_counting`] learns: the key's refusal, or its grant-to-be with the
/// window's answer.
pub(crate) enum Counted {
    Refused(Lookup),
    Active {
        id: KeyId,
        limit_id: KeyId,
        scopes: Scopes,
        quota: Quota,
        limit: LimitDecision,
    },
}

impl KeyStore {
    /// [`KeyStore::lookup`], and for an active key one request counted in its window, kept in
    /// its entry (`default` is the quota of keys without their own, counted in
    /// `default_windows` when given: see [`KeyStore::windows_of_period`]). A key that shares the
    /// window of the key it replaced counts in that key's entry, or in the window the store
    /// keeps for it once that key is removed.
    #[inline(always)]
    pub(crate) fn lookup_counting(
        &self,
        digest: &KeyDigest,
        now: UnixTime,
        client: Option<IpAddr>,
        default: Quota,
        default_windows: Option<&RateLimiter>,
    ) -> Counted {
        let secs = now.as_secs();
        let id = digest.id();
        let shard = self.map.read(id.as_u64());
        let Some(i) = shard.find(id.as_u64()) else {
            return Counted::Refused(Lookup::Unknown);
        };
        let hot = shard.hot(i);
        let limit_id = match check(hot, &shard, i, digest, secs, client) {
            Ok(limit_id) => limit_id,
            Err(refused) => return Counted::Refused(refused),
        };
        let scopes = hot.scopes;
        let quota = match (hot.rate_limit, default_windows) {
            (Some(own), _) => own,
            (None, None) => default,
            // A default quota of another period than the entries' counts in the store's limiter
            // for that period.
            (None, Some(limiter)) => {
                drop(shard);
                return Counted::Active {
                    id,
                    limit_id,
                    scopes,
                    quota: default,
                    limit: limiter.check(limit_id, default, now),
                };
            }
        };
        if limit_id == id {
            return Counted::Active {
                id,
                limit_id,
                scopes,
                quota,
                limit: count_in(&hot.window, quota, secs),
            };
        }
        // The other entry may be on this shard: this one's lock is let go first.
        drop(shard);
        let limit = self.count_shared(limit_id, quota, secs);
        Counted::Active {
            id,
            limit_id,
            scopes,
            quota,
            limit,
        }
    }

    /// Where keys without a quota of their own count under a default quota of `period` seconds:
    /// in their entries (`None`) for [`ENTRY_PERIOD_SECS`], else in the store's limiter for that
    /// period, one for every authorizer with that period whatever the order they were built in.
    /// A period's limiter is kept for the store's life ([`PERIOD_STRIPES`] stripes, 128 KiB,
    /// and 16 bytes per key counting in a current window), so that an authorizer built again
    /// finds its windows.
    pub(crate) fn windows_of_period(&self, period: u32) -> Option<Arc<RateLimiter>> {
        if period == ENTRY_PERIOD_SECS {
            return None;
        }
        let mut limiters = self.period_windows.lock();
        if let Some((_, limiter)) = limiters.iter().find(|(p, _)| *p == period) {
            return Some(limiter.clone());
        }
        let limiter = Arc::new(RateLimiter::with_stripes(PERIOD_STRIPES));
        limiters.push((period, limiter.clone()));
        Some(limiter)
    }

    /// Counts one request in the window of the replaced key `limit_id`: in its entry, or among
    /// the retired windows once it is removed (one window for every key that shares it).
    #[inline(never)]
    fn count_shared(&self, limit_id: KeyId, quota: Quota, secs: u64) -> LimitDecision {
        let id = limit_id.as_u64();
        // The shard's lock is held while the retired windows are read, as `remove` and the
        // inserts do, so the window cannot move between the two meanwhile.
        let shard = self.map.read(id);
        if let Some(i) = shard.find(id) {
            return count_in(&shard.hot(i).window, quota, secs);
        }
        if let Some(cell) = self.retired.read().windows.get(&id) {
            return count_in(cell, quota, secs);
        }
        // The first request since the window was dropped (or since the key was removed before
        // it counted anything): a new cell, where the requests of every key that shares it
        // count; ended ones are dropped meanwhile.
        let mut retired = self.retired.write();
        if let Some(cell) = retired.windows.get(&id) {
            return count_in(cell, quota, secs);
        }
        retired.prune(secs);
        retired.make_room();
        let cell = retired
            .windows
            .entry(id)
            .or_insert_with(|| AtomicU64::new(0));
        count_in(cell, quota, secs)
    }

    /// The quota of its own the stored key `id` has (`Some(None)` for none), `None` if it is
    /// not stored.
    pub(crate) fn stored_rate_limit(&self, id: KeyId) -> Option<Option<Quota>> {
        let shard = self.map.read(id.as_u64());
        shard.find(id.as_u64()).map(|i| shard.hot(i).rate_limit)
    }

    /// The state of the window kept in `id`'s entry (or kept for it since it was removed) under
    /// `quota` at `now`, without counting; an empty window when there is none.
    pub(crate) fn peek_window(&self, id: KeyId, quota: Quota, now: UnixTime) -> RateLimit {
        let secs = now.as_secs();
        let end = window_end(quota, secs);
        let shard = self.map.read(id.as_u64());
        let held = match shard.find(id.as_u64()) {
            Some(i) => shard.hot(i).window.load(Ordering::Relaxed),
            None => self
                .retired
                .read()
                .windows
                .get(&id.as_u64())
                .map_or(0, |w| w.load(Ordering::Relaxed)),
        };
        let (reset_at, count) = held_window(held, end, quota.period_secs());
        RateLimit::of_key(quota, count, reset_at)
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

/// The window a cell holding `held` stands for when the current one ends at `end`: its end and
/// count, or a new window (`end`, 0) when the held one is over or lies more than one window
/// ahead.
#[inline(always)]
fn held_window(held: u64, end: u32, period: u32) -> (u32, u32) {
    let (reset_at, count) = ((held >> 32) as u32, held as u32);
    if reset_at < end || reset_at - end > period {
        (end, 0)
    } else {
        (reset_at, count)
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
        let (reset_at, count) = held_window(current, end, period);
        if count >= limit {
            return LimitDecision::Limited(RateLimit::of_key(quota, limit, reset_at));
        }
        let next = (u64::from(reset_at) << 32) | u64::from(count + 1);
        match cell.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return LimitDecision::Allowed(RateLimit::of_key(quota, count + 1, reset_at)),
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
            |d: &KeyDigest, t: UnixTime| match store.lookup_counting(d, t, None, Quota::SPEC, None)
            {
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
    fn windows_of_removed_keys_are_kept_only_while_they_last() {
        let store = KeyStore::new();
        let used = store
            .issue(&NewKey::new("used", Preset::ReadOnly), NOW)
            .unwrap();
        let unused = store
            .issue(&NewKey::new("unused", Preset::ReadOnly), NOW)
            .unwrap();
        let _ = store.lookup_counting(&used.key.digest(), NOW, None, Quota::SPEC, None);
        store.remove(used.record.id()).unwrap();
        store.remove(unused.record.id()).unwrap();
        // Only a window that counted something is kept, and it goes back with its key.
        assert_eq!(store.retired.read().windows.len(), 1);
        store.insert(used.record.clone()).unwrap();
        assert!(store.retired.read().windows.is_empty());
        store.remove(used.record.id()).unwrap();
        assert_eq!(store.retired.read().windows.len(), 1);
        // Within its window, and a minute past its end (for requests whose clock was read
        // before it), it is kept; then the next call that knows the time drops it.
        let next = NewKey::new("next", Preset::ReadOnly);
        store.issue(&next, NOW.plus_secs(59)).unwrap();
        assert_eq!(store.retired.read().windows.len(), 1);
        store.issue(&next, NOW.plus_secs(60 + 59)).unwrap();
        assert_eq!(store.retired.read().windows.len(), 1);
        store.issue(&next, NOW.plus_secs(60 + 60)).unwrap();
        assert!(store.retired.read().windows.is_empty());
        // Bounded by MAX_RETIRED: past it, the windows that end first make room for the newest.
        let mut retired = Retired::default();
        for id in 0..MAX_RETIRED as u64 + 10 {
            retired.keep(id, ((1_000 + id) << 32) | 1);
        }
        // The first past it made room by dropping the eighth that end first.
        let evicted = RETIRED_EVICTED as u64;
        assert_eq!(retired.windows.len(), MAX_RETIRED - RETIRED_EVICTED + 10);
        assert!(!retired.windows.contains_key(&(evicted - 1)));
        assert!(retired.windows.contains_key(&evicted));
        assert!(retired.windows.contains_key(&(MAX_RETIRED as u64 + 9)));
    }

    #[test]
    fn a_clock_stepped_ahead_and_back_does_not_stop_the_pruning() {
        let mut retired = Retired::default();
        retired.prune(NOW.as_secs() + 100_000);
        let end = NOW.as_secs() + 60;
        retired.keep(1, (end << 32) | 1);
        // Back at the right time, a minute past the window's end: dropped.
        retired.prune(end + RETIRED_MARGIN_SECS);
        assert!(retired.windows.is_empty());
    }

    #[test]
    fn preparing_keys_prunes_the_windows_of_removed_keys() {
        let store = KeyStore::new();
        let new = NewKey::new("used", Preset::ReadOnly);
        let used = store.prepare(&new, NOW).unwrap();
        store.insert(used.record.clone()).unwrap();
        let _ = store.lookup_counting(&used.key.digest(), NOW, None, Quota::SPEC, None);
        store.remove(used.record.id()).unwrap();
        assert_eq!(store.retired.read().windows.len(), 1);
        // A host that prepares keys (and inserts them itself) prunes with the time it passes.
        store.prepare(&new, NOW.plus_secs(180)).unwrap();
        assert!(store.retired.read().windows.is_empty());
    }

    #[test]
    fn the_window_a_replacement_opens_for_a_removed_key_is_bounded_too() {
        let store = KeyStore::new();
        let old = store
            .issue(&NewKey::new("old", Preset::ReadOnly), NOW)
            .unwrap();
        let rotation = store
            .rotate(old.record.id(), Duration::from_secs(600), NOW)
            .unwrap();
        // Removed before it counted anything: no window kept for it.
        store.remove(old.record.id()).unwrap();
        {
            let mut retired = store.retired.write();
            retired.pruned_at = NOW.as_secs();
            let end = NOW.as_secs() + 60;
            for id in 0..MAX_RETIRED as u64 {
                retired.windows.insert(id, AtomicU64::new((end << 32) | 1));
            }
        }
        let digest = rotation.new.key.digest();
        match store.lookup_counting(&digest, NOW, None, Quota::SPEC, None) {
            Counted::Active { limit, .. } => assert!(limit.is_allowed()),
            Counted::Refused(_) => panic!("the replacement is active"),
        }
        let retired = store.retired.read();
        assert_eq!(retired.windows.len(), MAX_RETIRED - RETIRED_EVICTED + 1);
        assert!(retired.windows.contains_key(&old.record.id().as_u64()));
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
