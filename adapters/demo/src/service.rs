//! The key service: the one owner of every change to keys.
//!
//! Every surface (the admin API, the dashboard, MCP, the leak endpoints, and the `keys`
//! subcommands through the running server) creates, revokes, rotates and changes allowlists here
//! and nowhere else. The service saves a change through [`Storage`] (the data file, which records
//! the activity list in the same transaction), applies it to the key store, and, with Redis, has
//! it confirmed by [`Sharing`] before it acknowledges a change that takes access away.
//!
//! # The guarantee
//!
//! A revocation (and an allowlist change, which can narrow access) is acknowledged only once
//! it is saved here **and** confirmed written to the shared hash in Redis, from where every
//! instance applies it (at once through the change channel, or at its next resync; an instance
//! that cannot confirm being in sync for `--max-sync-age` stops vouching for any key under the
//! default `--redis-failure closed`). When that confirmation does not come within
//! [`CONFIRM_DEADLINE`], the answer is [`ChangeError::NotShared`] (the surfaces answer 503
//! `SERVICE_UNAVAILABLE` with `Retry-After`): the key is refused here already, the change stays
//! saved and queued, and it is published again every half second until Redis takes it. Asking
//! again is safe: it answers success once the change is shared.
//!
//! Whoever presents a leaked key (or GitHub's secret scanning) gets a success only once every
//! key presented that this instance knows is confirmed in Redis, live or not: a key revoked
//! here a moment ago by another request, by the CLI or by a rotation may not be enforced
//! elsewhere yet.
//!
//! A rotation with a grace under a minute ([`AT_ONCE`]) stops the old key at once, so it is a
//! revocation: it is made only when Redis answers at that moment, and if the old key's end is
//! then not confirmed in time the answer is not a success (the new key is still shown, since it
//! exists). New keys, and rotations with a longer grace, are answered at once: a key unknown
//! elsewhere is refused there, never granted, and an old key's later end is shared in the
//! background like any change, counted in `sitequest_key_changes_unshared` until it is.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sitequest_auth::{
    ApiKey, IpAllowlist, IssuedKey, KeyId, KeyRecord, KeyStatus, KeyStore, NewKey, UnixTime,
};
use sitequest_auth_redis::KeySync;

use crate::db::DbHandle;
pub use crate::db::{Action, Activity, ActivityRead, ChangeError, DbError, Event, Rotated, Source};

/// Longest wait for Redis to confirm a revocation before the answer is a 503.
pub const CONFIRM_DEADLINE: Duration = Duration::from_secs(2);
/// The `Retry-After` of a change saved here but not yet shared, in seconds.
pub const RETRY_UNSHARED_SECS: u64 = 2;
/// A rotation with a grace shorter than this stops the old key at once: a revocation.
pub const AT_ONCE: Duration = Duration::from_secs(60);

/// A rotation made.
#[derive(Debug)]
#[non_exhaustive]
pub struct Rotation {
    /// The new key (to show once) and the old key's record.
    pub rotated: Rotated,
    /// False only when the rotation stopped the old key at once ([`AT_ONCE`]) and Redis did not
    /// confirm it in time: the old key is refused here, and may still be granted elsewhere
    /// until the change is shared (it is retried).
    pub old_key_shared: bool,
}

/// A boxed future, for the object-safe storage traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where keys are kept: each change is durable, with its activity entry, before it is applied
/// to the key store and answered. The data file ([`DbHandle`]) is the one implementation today;
/// a shared database would be another.
pub trait Storage: Send + Sync + 'static {
    /// Saves a new key's record, then puts it in the store.
    fn create(&self, record: KeyRecord, source: Source) -> BoxFuture<'_, Result<(), ChangeError>>;
    /// Revokes a key (keeping its first revocation time) and returns its record.
    fn revoke(
        &self,
        id: KeyId,
        now: UnixTime,
        source: Source,
    ) -> BoxFuture<'_, Result<KeyRecord, ChangeError>>;
    /// Issues a replacement for an active key; the old one expires after `grace`.
    fn rotate(
        &self,
        id: KeyId,
        grace: Duration,
        now: UnixTime,
        source: Source,
    ) -> BoxFuture<'_, Result<Rotated, ChangeError>>;
    /// Sets an active key's allowlist and returns its record.
    fn set_allowed_ips(
        &self,
        id: KeyId,
        list: IpAllowlist,
        now: UnixTime,
        source: Source,
    ) -> BoxFuture<'_, Result<KeyRecord, ChangeError>>;
    /// Reads the activity list.
    fn activity(&self, read: ActivityRead) -> BoxFuture<'_, Result<Activity, DbError>>;
    /// Records last-use times.
    fn touch(&self, used: Vec<(KeyId, UnixTime)>) -> BoxFuture<'_, Result<(), DbError>>;
}

impl Storage for DbHandle {
    fn create(&self, record: KeyRecord, source: Source) -> BoxFuture<'_, Result<(), ChangeError>> {
        Box::pin(DbHandle::create(self, record, source))
    }
    fn revoke(
        &self,
        id: KeyId,
        now: UnixTime,
        source: Source,
    ) -> BoxFuture<'_, Result<KeyRecord, ChangeError>> {
        Box::pin(DbHandle::revoke(self, id, now, source))
    }
    fn rotate(
        &self,
        id: KeyId,
        grace: Duration,
        now: UnixTime,
        source: Source,
    ) -> BoxFuture<'_, Result<Rotated, ChangeError>> {
        Box::pin(DbHandle::rotate(self, id, grace, now, source))
    }
    fn set_allowed_ips(
        &self,
        id: KeyId,
        list: IpAllowlist,
        now: UnixTime,
        source: Source,
    ) -> BoxFuture<'_, Result<KeyRecord, ChangeError>> {
        Box::pin(DbHandle::set_allowed_ips(self, id, list, now, source))
    }
    fn activity(&self, read: ActivityRead) -> BoxFuture<'_, Result<Activity, DbError>> {
        Box::pin(DbHandle::activity(self, read))
    }
    fn touch(&self, used: Vec<(KeyId, UnixTime)>) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(DbHandle::touch(self, used))
    }
}

/// How changes reach the other instances. Redis ([`KeySync`]) is the one implementation.
pub trait Sharing: Send + Sync + 'static {
    /// Writes `record` where every instance reads it; `Ok` once it is there (or something
    /// stronger is, such as the key's removal). A change not written is kept and published
    /// again by the sharing's own retry loop.
    fn confirm(&self, record: &KeyRecord) -> BoxFuture<'_, Result<(), String>>;
    /// Whether this instance knows every key the others do (it is in sync), so that a key it
    /// does not know is unknown everywhere.
    fn vouches(&self) -> bool {
        true
    }
}

/// Redis's key sync as [`Sharing`], vouching for the keys it does not know while it was
/// confirmed in sync within `max_age` (`--max-sync-age`).
#[derive(Debug)]
pub struct SyncSharing {
    /// The key sync.
    pub sync: std::sync::Arc<KeySync>,
    /// The staleness bound.
    pub max_age: Duration,
}

impl Sharing for SyncSharing {
    fn confirm(&self, record: &KeyRecord) -> BoxFuture<'_, Result<(), String>> {
        let record = record.clone();
        Box::pin(async move {
            match self.sync.publish(&record).await {
                Ok(_) => Ok(()),
                // Removed, or another key under this id: nothing to share, and nothing stronger
                // can be had by retrying.
                Err(e) if !e.can_retry() => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
    }
    fn vouches(&self) -> bool {
        self.sync.is_in_sync(self.max_age)
    }
}

/// The one owner of key changes (see the module's documentation).
pub struct KeyService {
    store: Arc<KeyStore>,
    storage: Arc<dyn Storage>,
    sharing: Option<Arc<dyn Sharing>>,
    /// Keys revoked here whose revocation is not yet saved or not yet confirmed shared: a
    /// reporter presenting one again is answered as for a live key, and the change is retried.
    unconfirmed: Mutex<HashSet<KeyId>>,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("shared", &self.sharing.is_some())
            .field("unconfirmed", &self.unconfirmed.lock().len())
            .finish_non_exhaustive()
    }
}

impl KeyService {
    /// A service over `store`, saving through `storage` and, if given, sharing through
    /// `sharing`.
    #[must_use]
    pub fn new(
        store: Arc<KeyStore>,
        storage: Arc<dyn Storage>,
        sharing: Option<Arc<dyn Sharing>>,
    ) -> Self {
        Self {
            store,
            storage,
            sharing,
            unconfirmed: Mutex::default(),
        }
    }

    /// Issues a key as `new` asks, saves it and returns it (its plaintext, once).
    ///
    /// # Errors
    ///
    /// [`ChangeError::Invalid`] when the store's rules or policy refuse it, else as
    /// [`Storage::create`].
    pub async fn create(
        &self,
        new: &NewKey,
        now: UnixTime,
        source: Source,
    ) -> Result<IssuedKey, ChangeError> {
        let issued = self.store.prepare(new, now)?;
        self.storage.create(issued.record.clone(), source).await?;
        tracing::info!(key_id = %issued.record.id(), name = %issued.record.name, source = source.as_str(), "key created");
        Ok(issued)
    }

    /// Revokes a key everywhere: saved, refused here, and confirmed shared before this returns
    /// `Ok`. Revoking a revoked key keeps its first time and confirms it is shared.
    ///
    /// # Errors
    ///
    /// [`ChangeError::NotFound`]; [`ChangeError::Db`] when it could not be saved (nothing was
    /// changed); [`ChangeError::NotShared`] when it is saved and in force here but not yet
    /// confirmed shared (retried in the background; asking again is safe).
    pub async fn revoke(
        &self,
        id: KeyId,
        now: UnixTime,
        source: Source,
    ) -> Result<KeyRecord, ChangeError> {
        let record = self.storage.revoke(id, now, source).await?;
        tracing::info!(key_id = %id, source = source.as_str(), "key revoked");
        self.confirmed(id, &record).await?;
        Ok(record)
    }

    /// Revokes each of `keys` that is live here (or whose revocation is not yet confirmed), and
    /// returns which were: for whoever presents leaked keys, who learns nothing of other keys.
    /// Every presented key this instance knows, live or not, must be confirmed shared before
    /// `Ok`: a key revoked or stopped here moments ago (by another request, the CLI, a rotation
    /// without grace) may not be enforced elsewhere yet, and a success would say it is.
    ///
    /// # Errors
    ///
    /// [`ChangeError::Db`] when a revocation could not be saved: the key is refused by this
    /// process at once anyway and remembered, so that the reporter's next attempt saves it (the
    /// other keys are still revoked); [`ChangeError::NotShared`] as for [`KeyService::revoke`].
    pub async fn revoke_presented(
        &self,
        keys: &[&ApiKey],
        now: UnixTime,
        source: Source,
    ) -> Result<Vec<bool>, ChangeError> {
        let mut live = Vec::with_capacity(keys.len());
        let mut known = Vec::new();
        let mut failed = None;
        let mut unvouched = false;
        // Every live key is revoked here first, so that none waits for another's confirmation.
        for key in keys {
            let digest = key.digest();
            let id = digest.id();
            let Some(record) = self.store.get(id).filter(|r| r.digest == digest) else {
                // Unknown here: unknown everywhere only while this instance is in sync (a key
                // made elsewhere during a partition may be live there).
                unvouched |= self.sharing.as_ref().is_some_and(|s| !s.vouches());
                live.push(false);
                continue;
            };
            let unconfirmed = self.unconfirmed.lock().contains(&id);
            if record.status(now) != KeyStatus::Active && !unconfirmed {
                live.push(false);
                known.push((id, record));
                continue;
            }
            live.push(true);
            match self.storage.revoke(id, now, source).await {
                Ok(record) => known.push((id, record)),
                Err(e) => {
                    tracing::error!(key_id = %id, error = %e, "could not save a revocation");
                    // Refused by this process at once; saved when the report comes again.
                    let _ = self.store.revoke(id, now);
                    self.unconfirmed.lock().insert(id);
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let started = Instant::now();
        for (id, record) in &known {
            let left = CONFIRM_DEADLINE.saturating_sub(started.elapsed());
            self.confirmed_within(*id, record, left).await?;
        }
        if unvouched {
            return Err(self.unconfirmed_unknown());
        }
        Ok(live)
    }

    /// Issues a replacement for an active key; the old key expires `grace` after `now`, and
    /// until then both share one rate-limit window.
    ///
    /// A rotation with a grace under a minute stops the old key at once, so it is a revocation:
    /// with Redis, it is made only when Redis answers now (else [`ChangeError::NotShared`],
    /// nothing changed), and [`Rotation::old_key_shared`] says whether the old key's end was
    /// confirmed shared afterwards (the new key must be shown either way).
    ///
    /// # Errors
    ///
    /// As [`Storage::rotate`].
    pub async fn rotate(
        &self,
        id: KeyId,
        grace: Duration,
        now: UnixTime,
        source: Source,
    ) -> Result<Rotation, ChangeError> {
        let at_once = grace < AT_ONCE;
        if at_once && self.sharing.is_some() {
            if let Some(current) = self.store.get(id) {
                // Redis must answer before the old key is stopped here.
                self.confirmed_within(id, &current, CONFIRM_DEADLINE)
                    .await?;
            }
        }
        let rotated = self.storage.rotate(id, grace, now, source).await?;
        tracing::info!(old = %id, new = %rotated.new.record.id(), grace = grace.as_secs(), source = source.as_str(), "key rotated");
        let old_key_shared = if at_once {
            self.confirmed_within(id, &rotated.old, CONFIRM_DEADLINE)
                .await
                .is_ok()
        } else {
            true
        };
        Ok(Rotation {
            rotated,
            old_key_shared,
        })
    }

    /// Sets an active key's allowlist (empty: any address), confirmed shared before `Ok`.
    ///
    /// # Errors
    ///
    /// As [`Storage::set_allowed_ips`], and [`ChangeError::NotShared`] as for
    /// [`KeyService::revoke`].
    pub async fn set_allowed_ips(
        &self,
        id: KeyId,
        list: IpAllowlist,
        now: UnixTime,
        source: Source,
    ) -> Result<KeyRecord, ChangeError> {
        let record = self.storage.set_allowed_ips(id, list, now, source).await?;
        tracing::info!(key_id = %id, allowed_ips = %record.allowed_ips, source = source.as_str(), "key allowlist set");
        self.confirmed(id, &record).await?;
        Ok(record)
    }

    /// The activity list (`read` says which parts).
    ///
    /// # Errors
    ///
    /// When the data file cannot be read now.
    pub async fn activity(&self, read: ActivityRead) -> Result<Activity, DbError> {
        self.storage.activity(read).await
    }

    /// Saves the keys' last-use times.
    ///
    /// # Errors
    ///
    /// When the data file cannot save them.
    pub async fn flush_last_used(&self) -> Result<(), DbError> {
        let used: Vec<(KeyId, UnixTime)> = self
            .store
            .export()
            .into_iter()
            .filter_map(|r| r.last_used_at.map(|t| (r.id(), t)))
            .collect();
        if used.is_empty() {
            return Ok(());
        }
        self.storage.touch(used).await
    }

    /// The refusal of a presented key this instance does not know while it cannot vouch that
    /// no other instance knows it.
    fn unconfirmed_unknown(&self) -> ChangeError {
        tracing::warn!("a presented key is unknown here, and this instance is not in sync");
        ChangeError::NotShared
    }

    /// Waits until `record` is confirmed shared, within the deadline; without sharing it is at
    /// once. While it is not, the key is remembered as unconfirmed.
    async fn confirmed(&self, id: KeyId, record: &KeyRecord) -> Result<(), ChangeError> {
        self.confirmed_within(id, record, CONFIRM_DEADLINE).await
    }

    /// [`KeyService::confirmed`] within `deadline` (at least one attempt).
    async fn confirmed_within(
        &self,
        id: KeyId,
        record: &KeyRecord,
        deadline: Duration,
    ) -> Result<(), ChangeError> {
        let Some(sharing) = &self.sharing else {
            self.unconfirmed.lock().remove(&id);
            return Ok(());
        };
        let started = Instant::now();
        // At least one short attempt, even when a batch used the deadline up.
        let deadline = deadline.max(Duration::from_millis(50));
        let mut last = String::from("no answer from Redis");
        loop {
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, sharing.confirm(record)).await {
                Ok(Ok(())) => {
                    self.unconfirmed.lock().remove(&id);
                    return Ok(());
                }
                Ok(Err(e)) => last = e,
                Err(_) => break,
            }
            let pause =
                Duration::from_millis(100).min(CONFIRM_DEADLINE.saturating_sub(started.elapsed()));
            tokio::time::sleep(pause).await;
        }
        self.unconfirmed.lock().insert(id);
        tracing::warn!(key_id = %id, reason = %last, "key change saved here, not yet shared with the other instances");
        Err(ChangeError::NotShared)
    }
}
