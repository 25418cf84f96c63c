//! Key changes shared between instances: a Redis hash of every record plus a pub/sub channel,
//! every entry signed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sitequest_auth::{KeyId, KeyRecord, KeyStore, Throttle, UnixTime};
use zeroize::Zeroizing;

use crate::link::{self, Link};

/// Writes an entry only if the hash still holds what the writer merged with, then announces it.
/// It also refuses, as a second line behind the writer's own merge, an entry that would loosen
/// the one it replaces: a removed key stays removed, a key's fixed part stays as created, a
/// revocation or an expiry only moves earlier, and an allowlist is replaced only by one set
/// later. Signatures are checked by the instances, not
/// here: Redis holds no secret.
/// KEYS: hash. ARGV: channel (not a key, so that an ACL need not grant it as one), key id,
/// expected current entry ('' for none), new entry, '1' if the writer found the current entry's
/// signature invalid (it is then replaced as it is).
/// Returns 1 when written, 0 when the hash changed meanwhile (merge again and retry).
pub(crate) const PUBLISH_SCRIPT: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if (cur or '') ~= ARGV[3] then
  return 0
end
if cur and ARGV[5] ~= '1' then
  local old = cjson.decode(string.sub(cur, 66))
  local new = cjson.decode(string.sub(ARGV[4], 66))
  local function later(a, b)
    -- whether b moves the time a later (or clears it)
    if a == cjson.null or a == nil then return false end
    return b == cjson.null or b == nil or b > a
  end
  if old.kind == 'removed' then
    if new.kind ~= 'removed' or new.removed_at > old.removed_at then
      return redis.error_reply('sync entry would restore a removed key')
    end
  elseif new.kind == 'record' then
    local o, n = old.record, new.record
    local same = o.digest == n.digest and o.name == n.name and o.created_at == n.created_at
      and o.last4 == n.last4 and cjson.encode(o.scopes) == cjson.encode(n.scopes)
    if o.rate_limit == cjson.null or n.rate_limit == cjson.null then
      same = same and o.rate_limit == n.rate_limit
    else
      same = same and o.rate_limit.limit == n.rate_limit.limit
        and o.rate_limit.period_secs == n.rate_limit.period_secs
    end
    same = same and o.shares_limit_with == n.shares_limit_with
    if not same then
      return redis.error_reply('sync entry would change a key once created')
    end
    if later(o.revoked_at, n.revoked_at) or later(o.expires_at, n.expires_at) then
      return redis.error_reply('sync entry would loosen a key')
    end
    -- The allowlist set later wins; on a tie, the one whose ranges joined by commas sort first.
    local function stamp(r)
      if r.allowed_ips_changed_at == cjson.null or r.allowed_ips_changed_at == nil then
        return -1
      end
      return r.allowed_ips_changed_at
    end
    local function joined(r)
      if r.allowed_ips == cjson.null or r.allowed_ips == nil then return '' end
      return table.concat(r.allowed_ips, ',')
    end
    -- Byte order, as Rust and SQLite compare; Lua's `<` on strings follows the locale.
    local function bytes_after(a, b)
      local n = math.min(#a, #b)
      for i = 1, n do
        local x, y = string.byte(a, i), string.byte(b, i)
        if x ~= y then return x > y end
      end
      return #a > #b
    end
    if stamp(n) < stamp(o) or (stamp(n) == stamp(o) and bytes_after(joined(n), joined(o))) then
      return redis.error_reply('sync entry would undo a newer allowlist')
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
redis.call('PUBLISH', ARGV[1], ARGV[4])
return 1
";

/// Publishes in flight at once when a backlog drains.
const PUBLISH_CONCURRENCY: usize = 64;

/// Domain separation of the signatures: an HMAC made for anything else never verifies here.
const SIGNING_CONTEXT: &[u8] = b"sitequest-auth key sync v1\n";

/// The secret that signs every shared key change: not the Redis password, so that whoever can
/// write to Redis still cannot create or change a key.
///
/// Its `Debug` never shows it, and it is zeroized on drop.
#[derive(Clone)]
pub struct SyncSecret(Zeroizing<Vec<u8>>);

/// A sync secret that is too short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeakSyncSecret {
    /// Its length in bytes.
    pub len: usize,
}

impl fmt::Display for WeakSyncSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the sync secret must be at least {} bytes long (found {})",
            SyncSecret::MIN_LEN,
            self.len
        )
    }
}

impl std::error::Error for WeakSyncSecret {}

impl SyncSecret {
    /// Shortest secret accepted, in bytes (for example 32 random characters, or `openssl rand
    /// -hex 32`).
    pub const MIN_LEN: usize = 32;

    /// A secret from its bytes; surrounding whitespace (a file's final newline) is not part of
    /// it.
    ///
    /// # Errors
    ///
    /// [`WeakSyncSecret`] when shorter than [`SyncSecret::MIN_LEN`] bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, WeakSyncSecret> {
        let bytes = bytes.trim_ascii();
        if bytes.len() < Self::MIN_LEN {
            return Err(WeakSyncSecret { len: bytes.len() });
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// A 32-byte key for another use, derived from the secret with HMAC-SHA-256 under `label`
    /// (never equal to a signature of a shared entry, whose input starts with another context),
    /// so that every instance given the secret derives the same key.
    #[must_use]
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"sitequest derived key\0");
        mac.update(label.as_bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&mac.finalize().into_bytes());
        key
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(SIGNING_CONTEXT);
        mac
    }

    /// `hex(HMAC-SHA256(secret, context || body)) || "." || body`.
    fn sign(&self, body: &str) -> String {
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut out = hex::encode(tag);
        out.push('.');
        out.push_str(body);
        out
    }

    /// The body of a signed entry, if its signature is this secret's (checked in constant
    /// time).
    fn verify<'a>(&self, signed: &'a str) -> Option<&'a str> {
        let (tag, body) = signed.split_at_checked(64)?;
        let body = body.strip_prefix('.')?;
        let tag = hex::decode(tag).ok()?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&tag).ok()?;
        Some(body)
    }
}

impl fmt::Debug for SyncSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SyncSecret(<redacted>)")
    }
}

/// What is shared about a key: its record, or that it was removed (a tombstone, so an instance
/// that still has the record cannot bring it back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Entry {
    Record { record: KeyRecord },
    Removed { id: KeyId, removed_at: UnixTime },
}

impl Entry {
    fn id(&self) -> KeyId {
        match self {
            Self::Record { record } => record.id(),
            Self::Removed { id, .. } => *id,
        }
    }

    /// This entry (already held) merged with `other`, so that changes only tighten a key.
    /// `None` when `other` is a different key under the same id (forged or tampered).
    fn merged_with(&self, other: &Entry) -> Option<Entry> {
        Some(match (self, other) {
            (Self::Removed { id, removed_at: a }, Self::Removed { removed_at: b, .. }) => {
                Self::Removed {
                    id: *id,
                    removed_at: (*a).min(*b),
                }
            }
            (Self::Removed { .. }, Self::Record { .. }) => self.clone(),
            (Self::Record { .. }, Self::Removed { .. }) => other.clone(),
            (Self::Record { record: held }, Self::Record { record: new }) => {
                if held.conflicts_with(new) {
                    return None;
                }
                Self::Record {
                    record: held.merged_with(new),
                }
            }
        })
    }
}

/// A change that a [`KeySync`] applied to the local store, for the host to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyChange {
    /// The key's record is now this (new, or tightened).
    Upserted(KeyRecord),
    /// The key was removed: keep the tombstone (and give it back with
    /// [`KeySync::remember_removed`] at the next start), so a replayed record cannot revive it.
    Removed {
        /// The key.
        id: KeyId,
        /// When it was removed, Unix seconds.
        removed_at: UnixTime,
    },
}

/// Settings of a [`KeySync`].
#[derive(Debug)]
#[non_exhaustive]
pub struct KeySyncConfig {
    /// Names the hash `{prefix}:records` and the channel `{prefix}:changes`.
    pub prefix: String,
    /// Signs and checks every entry.
    pub secret: SyncSecret,
    /// Longest wait for one Redis command.
    pub timeout: Duration,
    /// Longest wait for one page of a resynchronization (`HSCAN` of [`KeySyncConfig::page`]
    /// entries).
    pub page_timeout: Duration,
    /// Entries asked for per `HSCAN` page.
    pub page: usize,
    /// How often both connections are pinged; a connection failing twice in a row is replaced.
    pub health_interval: Duration,
    /// How often the whole hash is merged again, as a backstop for lost messages.
    pub resync_interval: Duration,
    /// How long a revoked or expired key's record is kept after it stopped working; a resync
    /// then replaces it with a tombstone (which stays), so the hash and the stores do not grow
    /// with dead keys forever. `None` keeps every record.
    pub retention: Option<Duration>,
}

impl KeySyncConfig {
    /// Defaults around `secret`: prefix `sitequest:keys`, 250 ms command timeout, 2 s per page of
    /// 1,000 entries, a ping every second, a full resync every minute, dead keys' records kept
    /// 30 days.
    #[must_use]
    pub fn new(secret: SyncSecret) -> Self {
        Self {
            prefix: "sitequest:keys".to_owned(),
            secret,
            timeout: Duration::from_millis(250),
            page_timeout: Duration::from_secs(2),
            page: 1000,
            health_interval: Duration::from_secs(1),
            resync_interval: Duration::from_secs(60),
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// Counters of what a [`KeySync`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncStats {
    /// Entries (messages or hash entries) that changed the local store.
    pub applied: u64,
    /// Entries ignored because their signature was missing or wrong.
    pub rejected_signature: u64,
    /// Validly signed entries ignored because they would change a key's fixed part or restore
    /// a removed key, or were filed under another key's id.
    pub rejected_conflict: u64,
    /// Completed resynchronizations.
    pub resyncs: u64,
    /// Duration of the last completed resynchronization, in milliseconds.
    pub last_resync_ms: u64,
    /// Times a stalled or lost connection (command or pub/sub) was replaced.
    pub reconnects: u64,
}

#[derive(Default)]
struct Counters {
    applied: AtomicU64,
    rejected_signature: AtomicU64,
    rejected_conflict: AtomicU64,
    resyncs: AtomicU64,
    last_resync_ms: AtomicU64,
    resubscribes: AtomicU64,
}

/// Shares key changes between instances through Redis.
///
/// [`KeySync::publish`] stores a record in the hash `{prefix}:records` and announces it on the
/// channel `{prefix}:changes`; [`KeySync::spawn`] follows the channel and applies every change to
/// a local [`KeyStore`].
///
/// # Trust
///
/// Redis is a trust boundary. Every entry in the hash and every message is signed with
/// HMAC-SHA256 under the [`SyncSecret`]; an unsigned or badly signed one is ignored and counted
/// ([`SyncStats::rejected_signature`]). Merging only tightens a key: its digest, name, scopes,
/// rate limit and creation time are fixed once created, and only revocation, expiry and last
/// use change, revocation and expiry only ever earlier. A removal is a signed tombstone that
/// stays in the hash, so a resync cannot bring the key back.
///
/// # Staying in sync
///
/// Both connections have TCP keepalive and are pinged every
/// [`KeySyncConfig::health_interval`]; one that fails twice in a row is replaced, and a
/// resync follows (after the subscription is made again, for the pub/sub connection). The
/// whole hash is merged again every [`KeySyncConfig::resync_interval`] too.
/// [`KeySync::sync_age`] says how long ago the instance last confirmed it was in sync
/// (subscribed, resynced since subscribing, both connections answering): a host that cannot
/// confirm it for long can no longer vouch for revocations made elsewhere (see
/// [`RedisLimiter::guard_with`](crate::RedisLimiter::guard_with)).
///
/// Resynchronization reads the hash in `HSCAN` pages, each under its own deadline, while
/// messages keep being applied; what a merge did not change is neither saved nor announced. A
/// change that could not be published is kept and published again every half second.
pub struct KeySync {
    link: Arc<Link>,
    config: KeySyncConfig,
    script: redis::Script,
    hash: String,
    channel: String,
    /// Changes waiting to be published, with when the first of them was queued.
    pending: Mutex<HashMap<KeyId, (Entry, Instant)>>,
    /// Keys this instance knows to be removed, with the time: records for them are ignored,
    /// and a resync that finds one in the hash puts the tombstone back.
    removed: Mutex<HashMap<KeyId, UnixTime>>,
    confirmed: Mutex<Option<Instant>>,
    counters: Counters,
    /// Messages on the channel that fail the signature check: one line per interval, however
    /// many arrive.
    unsigned_message_log: Throttle,
    /// Hash entries that fail the signature check: one summary line per resync at most, and
    /// at most one a minute.
    unsigned_entry_log: Throttle,
}

impl fmt::Debug for KeySync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySync")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// A change could not be shared.
#[derive(Debug)]
pub struct SyncError {
    reason: String,
    /// Whether publishing again later may succeed.
    retry: bool,
}

impl SyncError {
    fn unavailable(reason: impl fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
            retry: true,
        }
    }

    fn refused(reason: &str) -> Self {
        Self {
            reason: reason.to_owned(),
            retry: false,
        }
    }

    /// Whether publishing again may succeed (Redis did not answer in time), as opposed to a
    /// change refused for good (the key was removed, or another key is shared under its id).
    #[must_use]
    pub fn can_retry(&self) -> bool {
        self.retry
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key change not shared: {}", self.reason)
    }
}

impl std::error::Error for SyncError {}

/// Why an entry from Redis was not applied.
enum Rejected {
    Signature,
    Conflict,
}

impl KeySync {
    /// Connects to Redis at `url`.
    ///
    /// # Errors
    ///
    /// When the URL is invalid or Redis cannot be reached now.
    pub async fn connect(url: &str, config: KeySyncConfig) -> redis::RedisResult<Self> {
        let link = Link::connect(url, config.timeout, config.health_interval).await?;
        Ok(Self {
            link,
            script: redis::Script::new(PUBLISH_SCRIPT),
            hash: format!("{}:records", config.prefix),
            channel: format!("{}:changes", config.prefix),
            config,
            pending: Mutex::new(HashMap::new()),
            removed: Mutex::new(HashMap::new()),
            confirmed: Mutex::new(None),
            counters: Counters::default(),
            unsigned_message_log: Throttle::new(Duration::from_secs(10)),
            unsigned_entry_log: Throttle::new(Duration::from_secs(60)),
        })
    }

    /// Shares a new or changed record with every instance. Returns the record as merged with
    /// what other instances had published for the same key.
    ///
    /// # Errors
    ///
    /// [`SyncError`] when Redis does not answer in time, or the key was removed or is another
    /// key under the same id. A change not shared for lack of an answer is kept and published
    /// again by the follower started with [`KeySync::spawn`].
    pub async fn publish(&self, record: &KeyRecord) -> Result<KeyRecord, SyncError> {
        match self
            .publish_entry(Entry::Record {
                record: record.clone(),
            })
            .await?
        {
            Entry::Record { record } => Ok(record),
            Entry::Removed { .. } => Err(SyncError::refused("the key was removed")),
        }
    }

    /// Shares the removal of a key: a tombstone that every instance applies (removing the key
    /// from its store) and that later resyncs respect.
    ///
    /// # Errors
    ///
    /// As [`KeySync::publish`].
    pub async fn publish_removal(&self, id: KeyId, now: UnixTime) -> Result<(), SyncError> {
        self.removed.lock().entry(id).or_insert(now);
        self.publish_entry(Entry::Removed {
            id,
            removed_at: now,
        })
        .await
        .map(drop)
    }

    /// Tells the sync which keys were removed before this start (tombstones the host kept, for
    /// example in its database). Records for them are then ignored, and a resync puts their
    /// tombstones back if the hash lost them or holds an older record instead, so a replayed
    /// record cannot bring a removed key back. Call it before [`KeySync::spawn`].
    pub fn remember_removed(&self, removed: impl IntoIterator<Item = (KeyId, UnixTime)>) {
        let mut known = self.removed.lock();
        for (id, at) in removed {
            let t = known.entry(id).or_insert(at);
            *t = (*t).min(at);
        }
    }

    /// The hash entry [`KeySync::publish`] would write for a new key: `hex(HMAC) "." JSON`.
    /// For hosts that bulk-load many keys into `{prefix}:records` (with pipelined `HSET`s under
    /// the key id) rather than publishing them one by one.
    ///
    /// # Errors
    ///
    /// When the record cannot be serialized.
    pub fn signed_entry(&self, record: &KeyRecord) -> Result<String, SyncError> {
        self.encode(&Entry::Record {
            record: record.clone(),
        })
    }

    /// The name of the hash holding every entry, `{prefix}:records`.
    #[must_use]
    pub fn hash_name(&self) -> &str {
        &self.hash
    }

    /// The name of the change channel, `{prefix}:changes`.
    #[must_use]
    pub fn channel_name(&self) -> &str {
        &self.channel
    }

    /// Number of changes waiting to be published again.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.lock().len()
    }

    /// Number of changes waiting to be published for longer than `age`: a change in flight is
    /// waiting for a moment, one Redis cannot take waits longer.
    #[must_use]
    pub fn pending_longer_than(&self, age: Duration) -> usize {
        self.pending
            .lock()
            .values()
            .filter(|(_, since)| since.elapsed() > age)
            .count()
    }

    /// What the sync has done so far.
    #[must_use]
    pub fn stats(&self) -> SyncStats {
        let c = &self.counters;
        SyncStats {
            applied: c.applied.load(Ordering::Relaxed),
            rejected_signature: c.rejected_signature.load(Ordering::Relaxed),
            rejected_conflict: c.rejected_conflict.load(Ordering::Relaxed),
            resyncs: c.resyncs.load(Ordering::Relaxed),
            last_resync_ms: c.last_resync_ms.load(Ordering::Relaxed),
            reconnects: c.resubscribes.load(Ordering::Relaxed) + self.link.rebuilds(),
        }
    }

    /// How long ago this instance last confirmed it was in sync: subscribed, resynchronized
    /// since subscribing, and both connections answering a ping. `None` if it never was.
    #[must_use]
    pub fn sync_age(&self) -> Option<Duration> {
        self.confirmed.lock().map(|t| t.elapsed())
    }

    /// Whether the sync was confirmed within `max_age`.
    #[must_use]
    pub fn is_in_sync(&self, max_age: Duration) -> bool {
        self.sync_age().is_some_and(|age| age <= max_age)
    }

    fn encode(&self, entry: &Entry) -> Result<String, SyncError> {
        let body = serde_json::to_string(entry).map_err(SyncError::unavailable)?;
        Ok(self.config.secret.sign(&body))
    }

    /// Checks the signature of a raw entry and parses it.
    fn decode(&self, raw: &str) -> Result<Entry, Rejected> {
        let Some(body) = self.config.secret.verify(raw) else {
            self.counters
                .rejected_signature
                .fetch_add(1, Ordering::Relaxed);
            return Err(Rejected::Signature);
        };
        serde_json::from_str(body).map_err(|_| {
            // Signed but unreadable: written by a newer or broken version.
            self.counters
                .rejected_conflict
                .fetch_add(1, Ordering::Relaxed);
            Rejected::Conflict
        })
    }

    async fn publish_entry(&self, entry: Entry) -> Result<Entry, SyncError> {
        let id = entry.id();
        let outgoing = self.queue(entry);
        let result = self.send(&outgoing).await;
        let mut pending = self.pending.lock();
        // Done, or refused for good (another key under this id), where retrying cannot help.
        if (result.is_ok() || result.as_ref().is_err_and(|e| !e.retry))
            && pending.get(&id).map(|(e, _)| e) == Some(&outgoing)
        {
            pending.remove(&id);
        }
        result
    }

    /// Merges `entry` with the hash's current entry and writes the result if it adds anything,
    /// retrying when another writer got there first.
    async fn send(&self, entry: &Entry) -> Result<Entry, SyncError> {
        let id = entry.id().to_string();
        for _ in 0..8 {
            let hash = self.hash.clone();
            let field = id.clone();
            let current: Option<String> = self
                .link
                .run(|mut c| async move {
                    redis::cmd("HGET")
                        .arg(hash)
                        .arg(field)
                        .query_async(&mut c)
                        .await
                })
                .await
                .map_err(SyncError::unavailable)?;
            let held = current.as_deref().and_then(|raw| match self.decode(raw) {
                Ok(e) if e.id() == entry.id() => Some(e),
                // A forged or misfiled entry is replaced by ours.
                _ => None,
            });
            let replace_invalid = current.is_some() && held.is_none();
            let merged = match &held {
                Some(h) => h
                    .merged_with(entry)
                    .ok_or_else(|| SyncError::refused("another key is shared under this id"))?,
                None => entry.clone(),
            };
            if held.as_ref() == Some(&merged) {
                return Ok(merged);
            }
            let signed = self.encode(&merged)?;
            let mut invocation = self.script.key(&self.hash);
            invocation
                .arg(&self.channel)
                .arg(&id)
                .arg(current.unwrap_or_default())
                .arg(signed)
                .arg(if replace_invalid { "1" } else { "0" });
            let written: i64 = self
                .link
                .run(|mut c| async move { invocation.invoke_async(&mut c).await })
                .await
                .map_err(SyncError::unavailable)?;
            if written == 1 {
                return Ok(merged);
            }
        }
        Err(SyncError::unavailable("the shared entry kept changing"))
    }

    /// Publishes again every change that could not be published.
    /// Many at a time on the multiplexed connection, so a large backlog (a new instance with
    /// many keys, or Redis that lost its data) drains at the pipeline's pace.
    async fn retry_pending(&self) {
        let waiting: Vec<Entry> = self
            .pending
            .lock()
            .values()
            .map(|(e, _)| e.clone())
            .collect();
        futures_util::stream::iter(waiting)
            .for_each_concurrent(PUBLISH_CONCURRENCY, |entry| async move {
                if let Err(e) = self.publish_entry(entry.clone()).await {
                    tracing::debug!(key_id = %entry.id(), error = %e, "key change still not shared");
                }
            })
            .await;
    }

    /// Follows the change channel in the background, applying every change to `store` and then
    /// calling `on_change` with each batch of changes (to persist them in one transaction, for
    /// example). Reconnects by itself.
    pub fn spawn<F>(
        self: Arc<Self>,
        store: Arc<KeyStore>,
        on_change: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Vec<KeyChange>) + Send + Sync + 'static,
    {
        // Publishing runs beside the follower, so a large backlog never delays pings, messages
        // or the confirmation of being in sync.
        let publisher = Arc::downgrade(&self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let Some(sync) = publisher.upgrade() else {
                    return;
                };
                sync.retry_pending().await;
            }
        });
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.follow(&store, &on_change).await {
                    tracing::warn!(error = %e, "key change channel lost; reconnecting");
                }
                self.counters.resubscribes.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    /// One subscription's worth of following: subscribe, then apply messages while resyncing,
    /// pinging both connections, and publishing what is pending, until a connection fails.
    async fn follow<F>(&self, store: &KeyStore, on_change: &F) -> redis::RedisResult<()>
    where
        F: Fn(Vec<KeyChange>),
    {
        let timeout = self.config.timeout;
        let client = self.link.client().clone();
        let pubsub = tokio::time::timeout(timeout * 4, async move {
            let mut p = client.get_async_pubsub().await?;
            p.subscribe(&self.channel).await?;
            Ok::<_, redis::RedisError>(p)
        })
        .await
        .map_err(|_| link::timed_out())??;
        let (mut sink, mut messages) = pubsub.split();
        tracing::info!(channel = %self.channel, "following key changes");

        let mut synced_since_subscribe = false;
        let mut failed_pings = 0;
        let mut link_rebuilds = self.link.rebuilds();
        let mut health = tokio::time::interval(self.config.health_interval);
        let mut backstop = tokio::time::interval(self.config.resync_interval);
        backstop.tick().await;
        let resync = self.resync(store, on_change);
        tokio::pin!(resync);
        let mut resyncing = true;
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else {
                        return Err(redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "the subscription ended",
                        )));
                    };
                    if let Ok(raw) = msg.get_payload::<String>() {
                        match self.apply_raw(store, &raw, None) {
                            Ok((_, Some(change))) => on_change(vec![change]),
                            Err(Rejected::Signature) => {
                                if let Some(held_back) = self.unsigned_message_log.allow(Instant::now()) {
                                    tracing::warn!(
                                        held_back,
                                        "ignoring key changes on the channel that are not signed \
                                         with the sync secret"
                                    );
                                }
                            }
                            _ => {}
                        }
                    }
                }
                result = &mut resync, if resyncing => {
                    resyncing = false;
                    result?;
                    synced_since_subscribe = true;
                    self.confirm_if(synced_since_subscribe);
                }
                _ = backstop.tick(), if !resyncing => {
                    resync.set(self.resync(store, on_change));
                    resyncing = true;
                }
                _ = health.tick() => {
                    let pubsub_ok = matches!(
                        tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await,
                        Ok(Ok(_))
                    );
                    if pubsub_ok {
                        failed_pings = 0;
                    } else {
                        failed_pings += 1;
                        if failed_pings >= Link::FAILURES_TO_REBUILD {
                            return Err(link::timed_out());
                        }
                    }
                    if pubsub_ok && self.link.ping().await {
                        self.confirm_if(synced_since_subscribe);
                    }
                    // The command connection was replaced: whatever it failed to read or write
                    // meanwhile is caught up by a resync.
                    let rebuilds = self.link.rebuilds();
                    if rebuilds != link_rebuilds && !resyncing {
                        link_rebuilds = rebuilds;
                        resync.set(self.resync(store, on_change));
                        resyncing = true;
                    }
                }
            }
        }
    }

    fn confirm_if(&self, synced: bool) {
        if synced {
            *self.confirmed.lock() = Some(Instant::now());
        }
    }

    /// Verifies and applies one raw entry; `field` is the hash field it was filed under, if it
    /// came from the hash. Returns the entry and the change it made to the store, if any.
    fn apply_raw(
        &self,
        store: &KeyStore,
        raw: &str,
        field: Option<&str>,
    ) -> Result<(Entry, Option<KeyChange>), Rejected> {
        // Not logged here: a flood of forged entries would be a flood of lines. The callers
        // log one line per interval, or one per resync.
        let entry = self.decode(raw)?;
        if field.is_some_and(|f| f != entry.id().to_string()) {
            self.counters
                .rejected_conflict
                .fetch_add(1, Ordering::Relaxed);
            return Err(Rejected::Conflict);
        }
        match self.apply(store, entry.clone()) {
            Ok(change) => Ok((entry, change)),
            Err(_) => {
                self.counters
                    .rejected_conflict
                    .fetch_add(1, Ordering::Relaxed);
                Err(Rejected::Conflict)
            }
        }
    }

    /// Applies a verified entry to the store. `Ok(None)` when it changed nothing.
    fn apply(&self, store: &KeyStore, entry: Entry) -> Result<Option<KeyChange>, Rejected> {
        let change = match entry {
            Entry::Removed { id, removed_at } => {
                let mut known = self.removed.lock();
                let t = known.entry(id).or_insert(removed_at);
                *t = (*t).min(removed_at);
                drop(known);
                store
                    .remove(id)
                    .map(|_| KeyChange::Removed { id, removed_at })
            }
            Entry::Record { record } => {
                let id = record.id();
                if self.removed.lock().contains_key(&id) {
                    return Ok(None);
                }
                if store
                    .get(id)
                    .is_some_and(|held| held.conflicts_with(&record))
                {
                    tracing::warn!(key_id = %id, "ignoring a shared change to a key's fixed part");
                    return Err(Rejected::Conflict);
                }
                match store.merge(record) {
                    Ok(changed) => changed.map(KeyChange::Upserted),
                    Err(e) => {
                        tracing::warn!(key_id = %id, error = %e, "ignoring a shared record");
                        return Err(Rejected::Conflict);
                    }
                }
            }
        };
        if change.is_some() {
            self.counters.applied.fetch_add(1, Ordering::Relaxed);
        }
        Ok(change)
    }

    /// Merges the shared hash and the local store both ways, a page at a time. What the local
    /// store knew better, or alone, is queued for publishing.
    async fn resync<F>(&self, store: &KeyStore, on_change: &F) -> redis::RedisResult<()>
    where
        F: Fn(Vec<KeyChange>),
    {
        let started = Instant::now();
        let now = unix_now();
        let mut seen = HashSet::new();
        // Entries skipped: not signed with the sync secret, or signed but not applicable.
        let (mut unsigned, mut misfiled) = (0_u64, 0_u64);
        let mut cursor: u64 = 0;
        loop {
            let (hash, page) = (self.hash.clone(), self.config.page);
            let (next, entries): (u64, Vec<(String, String)>) = self
                .link
                .run_for(self.config.page_timeout, |mut c| async move {
                    redis::cmd("HSCAN")
                        .arg(hash)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(page)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let mut changes = Vec::new();
            for (field, raw) in entries {
                let Ok(id) = field.parse::<KeyId>() else {
                    self.counters
                        .rejected_conflict
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                // An entry that does not verify counts as missing: what this instance knows of
                // the key (below) is published over it.
                let (shared, change) = match self.apply_raw(store, &raw, Some(&field)) {
                    Ok(applied) => applied,
                    Err(Rejected::Signature) => {
                        unsigned += 1;
                        continue;
                    }
                    Err(Rejected::Conflict) => {
                        misfiled += 1;
                        continue;
                    }
                };
                seen.insert(id);
                changes.extend(change);
                let removed_at = self.removed.lock().get(&id).copied();
                match (shared, store.get(id), removed_at) {
                    // A record of a key known to be removed (replayed, or the tombstone lost).
                    (Entry::Record { .. }, _, Some(removed_at)) => {
                        self.queue(Entry::Removed { id, removed_at });
                    }
                    (Entry::Record { record: shared }, Some(local), None) => {
                        if self.past_retention(&local, now) {
                            self.queue(Entry::Removed {
                                id,
                                removed_at: now,
                            });
                        } else if tighter(&local, &shared) {
                            // This instance knew more (a change made while cut off, or an older
                            // version replayed into the hash): share it. Last use alone is not
                            // worth a write per key per resync.
                            self.queue(Entry::Record { record: local });
                        }
                    }
                    _ => {}
                }
            }
            if !changes.is_empty() {
                on_change(changes);
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let removed = self.removed.lock().clone();
        for (&id, &removed_at) in &removed {
            if !seen.contains(&id) {
                self.queue(Entry::Removed { id, removed_at });
            }
        }
        for record in store.export() {
            let id = record.id();
            if seen.contains(&id) || removed.contains_key(&id) {
                continue;
            }
            if self.past_retention(&record, now) {
                self.queue(Entry::Removed {
                    id,
                    removed_at: now,
                });
            } else {
                self.queue(Entry::Record { record });
            }
        }
        if unsigned + misfiled > 0 {
            if let Some(held_back) = self.unsigned_entry_log.allow(Instant::now()) {
                tracing::warn!(
                    unsigned,
                    rejected = misfiled,
                    resyncs_not_logged = held_back,
                    hash = %self.hash,
                    "skipped shared key entries that are not signed with the sync secret or \
                     cannot be applied (see sitequest_key_changes_rejected)"
                );
            }
        }
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.counters.last_resync_ms.store(ms, Ordering::Relaxed);
        self.counters.resyncs.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(entries = seen.len(), ms, "key changes resynchronized");
        Ok(())
    }

    /// Whether a key stopped working (revoked or expired) longer than the retention ago.
    fn past_retention(&self, record: &KeyRecord, now: UnixTime) -> bool {
        let Some(retention) = self.config.retention else {
            return false;
        };
        let dead_since = match (record.revoked_at, record.expires_at) {
            (Some(r), Some(e)) => r.min(e),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return false,
        };
        dead_since + retention <= now
    }

    /// Queues an entry for publishing (merged with one already waiting for the same key) and
    /// returns what now waits: the retry loop publishes it unless a caller does first.
    fn queue(&self, entry: Entry) -> Entry {
        let id = entry.id();
        let mut pending = self.pending.lock();
        let (merged, since) = match pending.get(&id) {
            Some((waiting, since)) => (waiting.merged_with(&entry).unwrap_or(entry), *since),
            None => (entry, Instant::now()),
        };
        pending.insert(id, (merged.clone(), since));
        merged
    }
}

/// The system clock in Unix seconds, for the retention of dead keys only: decisions never read
/// it.
fn unix_now() -> UnixTime {
    UnixTime::from_system_time(std::time::SystemTime::now())
}

/// Whether `local` revokes or expires the key earlier than `shared` says.
fn tighter(local: &KeyRecord, shared: &KeyRecord) -> bool {
    let earlier = |a: Option<UnixTime>, b: Option<UnixTime>| match (a, b) {
        (Some(a), Some(b)) => a < b,
        (Some(_), None) => true,
        (None, _) => false,
    };
    earlier(local.revoked_at, shared.revoked_at) || earlier(local.expires_at, shared.expires_at)
}
