//! Key changes shared between instances: a Redis hash of every record plus a pub/sub channel.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use std::collections::HashMap;

use parking_lot::Mutex;
use sitequest_auth::{KeyId, KeyRecord, KeyStore};

/// Stores the merged record in the hash and publishes it, in one atomic step, so that two
/// instances changing the same key at once cannot lose a revocation or an expiry.
/// KEYS: hash, channel. ARGV: key id, record JSON. Returns the merged JSON.
const PUBLISH_SCRIPT: &str = r"
local new = cjson.decode(ARGV[2])
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local old = cjson.decode(cur)
  if old.revoked_at ~= cjson.null and (new.revoked_at == cjson.null or old.revoked_at < new.revoked_at) then
    new.revoked_at = old.revoked_at
  end
  if old.expires_at ~= cjson.null and (new.expires_at == cjson.null or old.expires_at < new.expires_at) then
    new.expires_at = old.expires_at
  end
  if old.last_used_at ~= cjson.null and (new.last_used_at == cjson.null or old.last_used_at > new.last_used_at) then
    new.last_used_at = old.last_used_at
  end
end
local merged = cjson.encode(new)
redis.call('HSET', KEYS[1], ARGV[1], merged)
redis.call('PUBLISH', KEYS[2], merged)
return merged
";

/// Shares key changes between instances through Redis.
///
/// [`KeySync::publish`] stores a record in the hash `{prefix}:records` and announces it on the
/// channel `{prefix}:changes`; [`KeySync::spawn`] follows the channel and applies every change to
/// a local [`KeyStore`]. On every (re)connection it first subscribes, then merges the whole hash
/// with the local store both ways, so changes made while an instance was cut off are not lost.
/// A change that could not be published is kept and published again every half second until it
/// goes through.
///
/// Versions of a record are merged with [`KeyRecord::merged_with`], here, in the store and in
/// the server-side script, so changes only tighten a key.
pub struct KeySync {
    client: redis::Client,
    pending: Mutex<HashMap<KeyId, KeyRecord>>,
    conn: ConnectionManager,
    script: redis::Script,
    hash: String,
    channel: String,
    timeout: Duration,
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
pub struct SyncError(String);

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key change not shared: {}", self.0)
    }
}

impl std::error::Error for SyncError {}

impl KeySync {
    /// Connects to Redis at `url`, using keys and channels named with `prefix`.
    ///
    /// # Errors
    ///
    /// When the URL is invalid or Redis cannot be reached now.
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> redis::RedisResult<Self> {
        let (client, conn) = crate::connect(url, timeout).await?;
        Ok(Self {
            client,
            pending: Mutex::new(HashMap::new()),
            conn,
            script: redis::Script::new(PUBLISH_SCRIPT),
            hash: format!("{prefix}:records"),
            channel: format!("{prefix}:changes"),
            timeout,
        })
    }

    /// Shares a new or changed record with every instance. Returns the record as merged with
    /// what other instances had published for the same key.
    ///
    /// # Errors
    ///
    /// [`SyncError`] when Redis does not answer in time. The change is then kept and published
    /// again by the follower started with [`KeySync::spawn`].
    pub async fn publish(&self, record: &KeyRecord) -> Result<KeyRecord, SyncError> {
        let id = record.id();
        let outgoing = {
            let mut pending = self.pending.lock();
            let merged = match pending.get(&id) {
                Some(waiting) => waiting.merged_with(record),
                None => record.clone(),
            };
            pending.insert(id, merged.clone());
            merged
        };
        let result = self.send(&outgoing).await;
        if result.is_ok() {
            let mut pending = self.pending.lock();
            if pending.get(&id) == Some(&outgoing) {
                pending.remove(&id);
            }
        }
        result
    }

    /// Number of changes waiting to be published again.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.lock().len()
    }

    async fn send(&self, record: &KeyRecord) -> Result<KeyRecord, SyncError> {
        let json = serde_json::to_string(record).map_err(|e| SyncError(e.to_string()))?;
        let mut invocation = self.script.key(&self.hash);
        invocation
            .key(&self.channel)
            .arg(record.id().to_string())
            .arg(json);
        let mut conn = self.conn.clone();
        let merged: String = tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| SyncError("timed out".into()))?
            .map_err(|e| SyncError(e.to_string()))?;
        serde_json::from_str(&merged).map_err(|e| SyncError(e.to_string()))
    }

    /// Publishes again every change that could not be published.
    async fn retry_pending(&self) {
        let waiting: Vec<KeyRecord> = self.pending.lock().values().cloned().collect();
        for record in waiting {
            if let Err(e) = self.publish(&record).await {
                tracing::debug!(key_id = %record.id(), error = %e, "key change still not shared");
            }
        }
    }

    /// Follows the change channel in the background, applying every change to `store` and then
    /// calling `on_change` with the record as stored (to persist it, for example). Reconnects by
    /// itself.
    pub fn spawn<F>(
        self: Arc<Self>,
        store: Arc<KeyStore>,
        on_change: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(&KeyRecord) + Send + Sync + 'static,
    {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.follow(&store, &on_change).await {
                    tracing::warn!(error = %e, "key change channel lost; reconnecting");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    /// One connection's worth of following: subscribe, resynchronize, then apply messages until
    /// the connection ends.
    async fn follow<F>(&self, store: &KeyStore, on_change: &F) -> redis::RedisResult<()>
    where
        F: Fn(&KeyRecord),
    {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(&self.channel).await?;
        self.resync(store, on_change).await?;
        tracing::info!(channel = %self.channel, "following key changes");
        let mut messages = pubsub.into_on_message();
        let mut retry = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else { return Ok(()) };
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    match serde_json::from_str::<KeyRecord>(&payload) {
                        Ok(record) => {
                            apply(store, record, on_change);
                        }
                        Err(e) => tracing::warn!(error = %e, "ignoring a malformed key change"),
                    }
                }
                _ = retry.tick() => self.retry_pending().await,
            }
        }
    }

    /// Merges the shared hash and the local store both ways.
    async fn resync<F>(&self, store: &KeyStore, on_change: &F) -> redis::RedisResult<()>
    where
        F: Fn(&KeyRecord),
    {
        let mut conn = self.conn.clone();
        let shared: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&self.hash)
            .query_async(&mut conn)
            .await?;
        let mut seen = std::collections::HashSet::new();
        for (_, json) in shared {
            match serde_json::from_str::<KeyRecord>(&json) {
                Ok(record) => {
                    seen.insert(record.id());
                    let local = store.get(record.id());
                    let merged = apply(store, record.clone(), on_change);
                    if local.is_some() && merged != record {
                        // This instance knew more (a change made while cut off): share it.
                        if let Err(e) = self.publish(&merged).await {
                            tracing::warn!(error = %e, "could not share a local change");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed shared record"),
            }
        }
        for record in store.export() {
            if !seen.contains(&record.id()) {
                if let Err(e) = self.publish(&record).await {
                    tracing::warn!(error = %e, "could not share a local key");
                }
            }
        }
        Ok(())
    }
}

/// Applies a shared record to the store, which merges it with the local version atomically.
/// Returns what is stored.
fn apply<F: Fn(&KeyRecord)>(store: &KeyStore, incoming: KeyRecord, on_change: &F) -> KeyRecord {
    let id = incoming.id();
    if let Err(e) = store.insert(incoming.clone()) {
        tracing::warn!(key_id = %id, error = %e, "ignoring a shared record");
        return incoming;
    }
    let stored = store.get(id).unwrap_or(incoming);
    on_change(&stored);
    stored
}
