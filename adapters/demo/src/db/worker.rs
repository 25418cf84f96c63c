//! The data file's own thread: every SQLite call of a running server is made here, so a slow
//! disk, an fsync or a lock held by another process delays only the jobs that need the file,
//! never the async runtime answering API requests.
//!
//! Jobs arrive through a bounded queue and are answered through a oneshot channel each. The
//! thread takes every job waiting (up to [`MAX_BATCH`]) and runs them in one transaction, each
//! inside its own savepoint so that one failing statement fails only its job: one fsync covers
//! the whole batch. Between batches, and at least every [`WorkerOptions::poll`], it asks SQLite
//! whether another connection (the `keys` subcommands, another process) committed, and if so
//! merges the file's records into the key store.

use std::fmt;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{Connection, TransactionBehavior};
use sitequest_auth::{
    InvalidRecord, IpAllowlist, IssuedKey, KeyId, KeyRecord, KeyStore, Rotation, UnixTime,
};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use super::{Action, Db, Event, Source};

/// Default number of jobs that may wait for the data file before new ones are refused.
pub const QUEUE_CAPACITY: usize = 256;
/// Default time between two looks for changes committed by other connections.
pub const DATA_VERSION_POLL: Duration = Duration::from_millis(250);
/// Most jobs run in one transaction.
const MAX_BATCH: usize = 64;
/// How often a background job retries while the queue is full.
const RETRY_WHEN_FULL: Duration = Duration::from_millis(50);

/// The data file could not do a job.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The queue is full: the file is slow or locked, and the job was not queued.
    #[error("the data file is busy")]
    Busy,
    /// The worker thread is gone.
    #[error("the data file worker has stopped")]
    Stopped,
    /// SQLite failed (a lock held past the busy timeout, a full disk, ...). The message names
    /// tables and columns, never a key.
    #[error("data file error: {0:#}")]
    Failed(Arc<anyhow::Error>),
}

impl DbError {
    fn failed(e: impl Into<anyhow::Error>) -> Self {
        Self::Failed(Arc::new(e.into()))
    }
}

/// A change to a key was refused or could not be saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// Neither the data file nor the store has this key.
    #[error("no key with this id")]
    NotFound,
    /// The key is revoked or expired (as the data file or the store knows it), so it cannot be
    /// rotated or have its allowlist changed.
    #[error("key is revoked or expired")]
    NotActive,
    /// The record was refused by the store's rules.
    #[error(transparent)]
    Invalid(#[from] InvalidRecord),
    /// The data file could not do it; nothing was changed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The change is saved and in force on this instance, but the other instances could not be
    /// told in time (Redis did not confirm it); it is retried until they are.
    #[error("the change is saved here but not yet shared with the other instances")]
    NotShared,
}

/// A successful rotation.
#[derive(Debug)]
#[non_exhaustive]
pub struct Rotated {
    /// The replacement key, to show once.
    pub new: IssuedKey,
    /// The old key's record, with its shortened expiry.
    pub old: KeyRecord,
}

/// How the worker runs.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// Jobs that may wait before new ones are refused with [`DbError::Busy`].
    pub queue: usize,
    /// Longest time between two looks for changes made by other connections.
    pub poll: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            queue: QUEUE_CAPACITY,
            poll: DATA_VERSION_POLL,
        }
    }
}

/// What goes through the queue.
enum Message {
    Job(Box<dyn Job>),
    /// Run the jobs queued before, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// A cloneable handle on the data-file thread. The thread ends after [`DbHandle::close`], or when
/// the last handle is dropped, after finishing the jobs already queued.
#[derive(Clone)]
pub struct DbHandle {
    jobs: SyncSender<Message>,
}

impl fmt::Debug for DbHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbHandle").finish_non_exhaustive()
    }
}

impl DbHandle {
    /// Loads the file's records into `store`, then moves `db` to a thread of its own. Returns the
    /// handle and the number of records loaded.
    ///
    /// Changes made through the handle are saved first and then applied to `store`; changes
    /// committed to the file by other connections are merged into `store` within
    /// [`WorkerOptions::poll`] (see [`KeyStore::insert`]: they can only tighten a key). Every
    /// record whose stored version changed either way is sent to `changes`, if given.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, holds an invalid record, or the thread cannot be started.
    pub fn start(
        db: Db,
        store: Arc<KeyStore>,
        changes: Option<UnboundedSender<KeyRecord>>,
        options: WorkerOptions,
    ) -> anyhow::Result<(Self, usize)> {
        // Read before loading: a commit made after this read changes the value, so it is seen.
        let seen = super::data_version(&db.conn)?;
        let loaded = db.load_into(&store)?;
        let (jobs, rx) = mpsc::sync_channel(options.queue);
        let worker = Worker {
            db,
            rx,
            applier: Applier { store, changes },
            poll: options.poll,
            seen,
            last_poll: Instant::now(),
        };
        std::thread::Builder::new()
            .name("sitequest-db".into())
            .spawn(move || worker.run())
            .context("cannot start the data file thread")?;
        Ok((Self { jobs }, loaded))
    }

    /// Saves a new key's record, then puts it in the store.
    ///
    /// # Errors
    ///
    /// [`ChangeError::Db`] when it could not be saved (nothing changed), and
    /// [`ChangeError::Invalid`] when the store refuses it after it was saved.
    pub async fn create(&self, record: KeyRecord, source: Source) -> Result<(), ChangeError> {
        self.submit(|reply| {
            Box::new(Create {
                record,
                source,
                reply,
            })
        })
        .await?
    }

    /// Revokes a key in the file, then in the store, and returns its record. Revoking a revoked
    /// key keeps its first revocation time.
    ///
    /// # Errors
    ///
    /// [`ChangeError::NotFound`] when neither the file nor the store has the key;
    /// [`ChangeError::Db`] when it could not be saved.
    pub async fn revoke(
        &self,
        id: KeyId,
        now: UnixTime,
        source: Source,
    ) -> Result<KeyRecord, ChangeError> {
        self.submit(|reply| {
            Box::new(Revoke {
                id,
                now,
                source,
                reply,
                outcome: None,
            })
        })
        .await?
    }

    /// Sets a key's allowlist in the file, then in the store, and returns its record.
    ///
    /// # Errors
    ///
    /// [`ChangeError::NotFound`] when neither the file nor the store has the key,
    /// [`ChangeError::NotActive`] for a revoked or expired key, [`ChangeError::Db`] when it could
    /// not be saved.
    pub async fn set_allowed_ips(
        &self,
        id: KeyId,
        list: IpAllowlist,
        now: UnixTime,
        source: Source,
    ) -> Result<KeyRecord, ChangeError> {
        self.submit(|reply| {
            Box::new(SetAllowedIps {
                id,
                list,
                now,
                source,
                reply,
                outcome: None,
            })
        })
        .await?
    }

    /// What `read` asks of the activity list: the latest events, newest first (see
    /// [`Db::events`]), and who revoked each revoked key; what is not asked is left empty.
    ///
    /// # Errors
    ///
    /// When the worker is busy or stopped, or SQLite failed.
    pub async fn activity(&self, read: ActivityRead) -> Result<Activity, DbError> {
        self.submit(|reply| {
            Box::new(Read {
                read,
                reply,
                outcome: None,
            })
        })
        .await?
    }

    /// Issues a replacement for an active key and makes the old one expire `grace` after
    /// `now` (or at its own expiry, if sooner): saved in one transaction that first re-reads the
    /// key, so a revocation committed before it, by this server or any other connection, is
    /// honoured.
    ///
    /// # Errors
    ///
    /// [`ChangeError::NotFound`], [`ChangeError::NotActive`] for a key revoked or expired in the
    /// file or in the store, [`ChangeError::Db`] when it could not be saved.
    pub async fn rotate(
        &self,
        id: KeyId,
        grace: Duration,
        now: UnixTime,
        source: Source,
    ) -> Result<Rotated, ChangeError> {
        self.submit(|reply| {
            Box::new(Rotate {
                id,
                grace,
                now,
                source,
                reply,
                outcome: None,
                found: None,
            })
        })
        .await?
    }

    /// Saves records already in the store (changes learned from other instances), merging them
    /// with the stored versions, and deletes the records of keys removed elsewhere (keeping their tombstones), in one
    /// transaction. Waits for room in the queue rather than failing when it is full.
    ///
    /// # Errors
    ///
    /// When the worker stopped or SQLite failed.
    pub async fn save(
        &self,
        records: Vec<KeyRecord>,
        removed: Vec<(KeyId, UnixTime)>,
    ) -> Result<(), DbError> {
        self.submit_waiting(move |reply| {
            Box::new(Save {
                records: records.clone(),
                removed: removed.clone(),
                reply,
            })
        })
        .await
    }

    /// Records last-use times. Waits for room in the queue rather than failing when it is full.
    ///
    /// # Errors
    ///
    /// When the worker stopped or SQLite failed.
    pub async fn touch(&self, used: Vec<(KeyId, UnixTime)>) -> Result<(), DbError> {
        self.submit_waiting(move |reply| {
            Box::new(Touch {
                used: used.clone(),
                reply,
            })
        })
        .await
    }

    /// Runs the jobs already queued, then closes the data file (SQLite then checkpoints the WAL
    /// into the file and, if no other connection is open, removes the `-wal` and `-shm` files).
    /// Jobs queued after this fail with [`DbError::Stopped`]. Waits for room in the queue.
    ///
    /// # Errors
    ///
    /// [`DbError::Stopped`] if the thread had already stopped.
    pub async fn close(&self) -> Result<(), DbError> {
        loop {
            match self.send(Message::Close).await {
                Err(DbError::Busy) => tokio::time::sleep(RETRY_WHEN_FULL).await,
                other => return other,
            }
        }
    }

    /// Queues a job without waiting for room: a full queue is [`DbError::Busy`] at once.
    async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<T>) -> Box<dyn Job>,
    ) -> Result<T, DbError> {
        self.send(|reply| Message::Job(job(reply))).await
    }

    /// Queues a message without waiting for room, and waits for its answer.
    async fn send<T>(
        &self,
        message: impl FnOnce(oneshot::Sender<T>) -> Message,
    ) -> Result<T, DbError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.try_send(message(reply)).map_err(|e| match e {
            TrySendError::Full(_) => DbError::Busy,
            TrySendError::Disconnected(_) => DbError::Stopped,
        })?;
        answer.await.map_err(|_| DbError::Stopped)
    }

    /// Queues a job, retrying while the queue is full.
    async fn submit_waiting(
        &self,
        job: impl Fn(oneshot::Sender<Result<(), DbError>>) -> Box<dyn Job>,
    ) -> Result<(), DbError> {
        loop {
            match self.submit(&job).await {
                Err(DbError::Busy) => tokio::time::sleep(RETRY_WHEN_FULL).await,
                Ok(result) => return result,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Applies committed changes to the in-memory store and passes on what changed.
struct Applier {
    store: Arc<KeyStore>,
    changes: Option<UnboundedSender<KeyRecord>>,
}

impl Applier {
    /// Merges `record` into the store and returns the stored version, sending it to `changes`
    /// if it differs from what the store had.
    fn apply(&self, record: KeyRecord) -> Result<KeyRecord, InvalidRecord> {
        self.apply_changed(record).map(|(stored, _)| stored)
    }

    /// As [`Applier::apply`], also telling whether the store's version changed.
    fn apply_changed(&self, record: KeyRecord) -> Result<(KeyRecord, bool), InvalidRecord> {
        let id = record.id();
        let before = self.store.get(id);
        self.store.insert(record.clone())?;
        let after = self.store.get(id).unwrap_or(record);
        let changed = before.as_ref() != Some(&after);
        if changed {
            if let Some(changes) = &self.changes {
                // Closed only when the server is shutting down.
                let _ = changes.send(after.clone());
            }
        }
        Ok((after, changed))
    }
}

/// One unit of work for the data file.
trait Job: Send {
    /// Runs inside the batch's transaction, in a savepoint of its own that is rolled back if
    /// this returns an error. A refusal (unknown or inactive key) is kept for
    /// [`finish`](Job::finish), not returned.
    fn run(&mut self, conn: &Connection, store: &KeyStore) -> anyhow::Result<()>;

    /// Called once the batch is committed (`Ok`) or has failed: applies the change to the store
    /// if it was committed, and answers the caller.
    fn finish(self: Box<Self>, committed: Result<(), DbError>, applier: &Applier);
}

/// The key as the data file and the store know it together: the stored row merged with the
/// in-memory record, so a change known to only one of them (a revocation made by the CLI not
/// yet reloaded, one learned from another instance not yet saved) counts.
fn current(conn: &Connection, store: &KeyStore, id: KeyId) -> anyhow::Result<Option<KeyRecord>> {
    let row = super::get(conn, id)?;
    Ok(match (row, store.get(id)) {
        (Some(row), Some(mem)) if row.digest == mem.digest => Some(mem.merged_with(&row)),
        (Some(row), _) => Some(row),
        (None, mem) => mem,
    })
}

/// The answer to a job whose outcome was never set: only possible if the batch failed first.
fn not_run<T>() -> Result<T, ChangeError> {
    Err(DbError::failed(anyhow::anyhow!("the job did not run")).into())
}

struct Create {
    record: KeyRecord,
    source: Source,
    reply: oneshot::Sender<Result<(), ChangeError>>,
}

impl Job for Create {
    fn run(&mut self, conn: &Connection, _: &KeyStore) -> anyhow::Result<()> {
        super::insert(conn, &self.record)?;
        let r = &self.record;
        super::record_event(conn, r.created_at, r.id(), Action::Created, self.source)
    }

    fn finish(self: Box<Self>, committed: Result<(), DbError>, applier: &Applier) {
        let answer = match committed {
            Ok(()) => applier
                .apply(self.record)
                .map(drop)
                .map_err(ChangeError::from),
            Err(e) => Err(e.into()),
        };
        let _ = self.reply.send(answer);
    }
}

struct Revoke {
    id: KeyId,
    now: UnixTime,
    source: Source,
    reply: oneshot::Sender<Result<KeyRecord, ChangeError>>,
    outcome: Option<Result<KeyRecord, ChangeError>>,
}

impl Job for Revoke {
    fn run(&mut self, conn: &Connection, store: &KeyStore) -> anyhow::Result<()> {
        let Some(mut record) = current(conn, store, self.id)? else {
            self.outcome = Some(Err(ChangeError::NotFound));
            return Ok(());
        };
        // Recorded once, when the file learns of it (the store may have been told first).
        let in_file = super::get(conn, self.id)?.is_some_and(|row| row.revoked_at.is_some());
        record.revoked_at.get_or_insert(self.now);
        if !in_file {
            super::record_event(conn, self.now, self.id, Action::Revoked, self.source)?;
        }
        super::upsert(conn, &[&record])?;
        self.outcome = Some(Ok(record));
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), DbError>, applier: &Applier) {
        let answer = match (committed, self.outcome) {
            (Err(e), _) => Err(e.into()),
            (Ok(()), Some(Ok(record))) => match applier.apply(record.clone()) {
                Ok(stored) => Ok(stored),
                Err(e) => {
                    // Saved, but refused by the store's rules: still refuse the key there.
                    tracing::warn!(key_id = %self.id, error = %e, "the store refused a revoked record");
                    let _ = applier.store.revoke(self.id, self.now);
                    Ok(record)
                }
            },
            (Ok(()), Some(Err(e))) => Err(e),
            (Ok(()), None) => not_run(),
        };
        let _ = self.reply.send(answer);
    }
}

struct Rotate {
    id: KeyId,
    grace: Duration,
    now: UnixTime,
    source: Source,
    reply: oneshot::Sender<Result<Rotated, ChangeError>>,
    outcome: Option<Result<Rotated, ChangeError>>,
    /// The key as found when it could not be rotated, for the store to learn from.
    found: Option<KeyRecord>,
}

impl Rotate {
    fn refuse(&mut self, e: ChangeError) -> anyhow::Result<()> {
        self.outcome = Some(Err(e));
        Ok(())
    }
}

impl Job for Rotate {
    fn run(&mut self, conn: &Connection, store: &KeyStore) -> anyhow::Result<()> {
        let Some(old) = current(conn, store, self.id)? else {
            return self.refuse(ChangeError::NotFound);
        };
        let Rotation { new, old, .. } = loop {
            let plan = match Rotation::plan(&old, self.grace, self.now) {
                Ok(plan) => plan,
                Err(_) => {
                    self.found = Some(old);
                    return self.refuse(ChangeError::NotActive);
                }
            };
            // An id no key has, in the file or in the store (a 2^-64 chance otherwise).
            let id = plan.new.record.id();
            if store.get(id).is_none() && !super::contains(conn, id)? {
                break plan;
            }
        };
        super::insert(conn, &new.record)?;
        super::upsert(conn, &[&old])?;
        super::record_event(conn, self.now, self.id, Action::Rotated, self.source)?;
        super::record_event(
            conn,
            self.now,
            new.record.id(),
            Action::Created,
            self.source,
        )?;
        super::record_rotation(conn, new.record.id(), self.id)?;
        self.outcome = Some(Ok(Rotated { new, old }));
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), DbError>, applier: &Applier) {
        let answer = match (committed, self.outcome) {
            (Err(e), _) => Err(e.into()),
            (Ok(()), Some(Ok(Rotated { new, old }))) => applier
                .apply(new.record.clone())
                .and_then(|_| applier.apply(old))
                .map(|old| Rotated { new, old })
                .map_err(ChangeError::from),
            (Ok(()), Some(Err(e))) => {
                if let Some(found) = self.found {
                    // What made the key inactive may be news to the store.
                    let _ = applier.apply(found);
                }
                Err(e)
            }
            (Ok(()), None) => not_run(),
        };
        let _ = self.reply.send(answer);
    }
}

struct SetAllowedIps {
    id: KeyId,
    list: IpAllowlist,
    now: UnixTime,
    source: Source,
    reply: oneshot::Sender<Result<KeyRecord, ChangeError>>,
    outcome: Option<Result<KeyRecord, ChangeError>>,
}

impl Job for SetAllowedIps {
    fn run(&mut self, conn: &Connection, store: &KeyStore) -> anyhow::Result<()> {
        let Some(record) = current(conn, store, self.id)? else {
            self.outcome = Some(Err(ChangeError::NotFound));
            return Ok(());
        };
        if record.status(self.now) != sitequest_auth::KeyStatus::Active {
            self.outcome = Some(Err(ChangeError::NotActive));
            return Ok(());
        }
        let record = record.allowlist_changed(self.list.clone(), self.now);
        super::upsert(conn, &[&record])?;
        super::record_event(
            conn,
            self.now,
            self.id,
            Action::AllowlistChanged,
            self.source,
        )?;
        self.outcome = Some(Ok(record));
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), DbError>, applier: &Applier) {
        let answer = match (committed, self.outcome) {
            (Err(e), _) => Err(e.into()),
            (Ok(()), Some(Ok(record))) => applier.apply(record).map_err(ChangeError::from),
            (Ok(()), Some(Err(e))) => Err(e),
            (Ok(()), None) => not_run(),
        };
        let _ = self.reply.send(answer);
    }
}

/// The activity list as the data file has it.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    /// The latest events, newest first.
    pub events: Vec<Event>,
    /// Who revoked each revoked key that has a recorded revocation.
    pub revoked_by: std::collections::HashMap<KeyId, String>,
    /// Which key each rotation replaced: new id → old id (read with [`ActivityRead::Both`]).
    pub replaces: std::collections::HashMap<KeyId, KeyId>,
}

/// The parts of the activity list a reader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityRead {
    /// The latest events.
    Events,
    /// Who revoked each key.
    RevokedBy,
    /// Both.
    Both,
}

struct Read {
    read: ActivityRead,
    reply: oneshot::Sender<Result<Activity, DbError>>,
    outcome: Option<Activity>,
}

impl Job for Read {
    fn run(&mut self, conn: &Connection, _: &KeyStore) -> anyhow::Result<()> {
        let mut activity = Activity::default();
        if self.read != ActivityRead::RevokedBy {
            activity.events = super::events(conn)?;
        }
        if self.read != ActivityRead::Events {
            activity.revoked_by = super::revoked_by(conn)?;
        }
        if self.read == ActivityRead::Both {
            activity.replaces = super::rotations(conn)?;
        }
        self.outcome = Some(activity);
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), DbError>, _: &Applier) {
        let answer = match (committed, self.outcome) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(activity)) => Ok(activity),
            (Ok(()), None) => Err(DbError::failed(anyhow::anyhow!("the job did not run"))),
        };
        let _ = self.reply.send(answer);
    }
}

struct Save {
    records: Vec<KeyRecord>,
    removed: Vec<(KeyId, UnixTime)>,
    reply: oneshot::Sender<Result<(), DbError>>,
}

impl Job for Save {
    fn run(&mut self, conn: &Connection, _: &KeyStore) -> anyhow::Result<()> {
        super::upsert(conn, &self.records.iter().collect::<Vec<_>>())?;
        super::remove(conn, &self.removed)
    }

    fn finish(self: Box<Self>, committed: Result<(), DbError>, _: &Applier) {
        let _ = self.reply.send(committed);
    }
}

struct Touch {
    used: Vec<(KeyId, UnixTime)>,
    reply: oneshot::Sender<Result<(), DbError>>,
}

impl Job for Touch {
    fn run(&mut self, conn: &Connection, _: &KeyStore) -> anyhow::Result<()> {
        super::touch(conn, &self.used)
    }

    fn finish(self: Box<Self>, committed: Result<(), DbError>, _: &Applier) {
        let _ = self.reply.send(committed);
    }
}

/// The thread's state.
struct Worker {
    db: Db,
    rx: Receiver<Message>,
    applier: Applier,
    poll: Duration,
    /// The last `PRAGMA data_version` acted upon.
    seen: i64,
    last_poll: Instant,
}

impl Worker {
    fn run(mut self) {
        let closed = loop {
            let wait = self.poll.saturating_sub(self.last_poll.elapsed());
            let mut batch = Vec::new();
            let mut close = None;
            match self.rx.recv_timeout(wait) {
                Ok(Message::Job(job)) => batch.push(job),
                Ok(Message::Close(reply)) => close = Some(reply),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break None,
            }
            while close.is_none() && !batch.is_empty() && batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(Message::Job(job)) => batch.push(job),
                    Ok(Message::Close(reply)) => close = Some(reply),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.run_batch(batch);
            }
            if close.is_some() {
                break close;
            }
            if self.last_poll.elapsed() >= self.poll {
                self.follow_other_writers();
                self.last_poll = Instant::now();
            }
        };
        // Jobs queued after a close are dropped unanswered with the queue: their callers get
        // `DbError::Stopped`.
        drop(self.rx);
        if let Err((_, e)) = self.db.conn.close() {
            tracing::warn!(error = %e, "closing the data file failed");
        }
        if let Some(reply) = closed {
            let _ = reply.send(());
        }
    }

    /// Runs `jobs` in one transaction, then answers each.
    fn run_batch(&mut self, jobs: Vec<Box<dyn Job>>) {
        let store = &self.applier.store;
        // IMMEDIATE takes the write lock first (waiting up to the busy timeout), so what a job
        // reads cannot change before it writes.
        let mut tx = match self
            .db
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => {
                let e = DbError::failed(e);
                tracing::error!(error = %e, jobs = jobs.len(), "cannot write to the data file");
                for job in jobs {
                    job.finish(Err(e.clone()), &self.applier);
                }
                return;
            }
        };
        let mut ran = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            let result = tx
                .savepoint()
                .map_err(anyhow::Error::from)
                .and_then(|savepoint| {
                    // Dropped without commit, a savepoint rolls back.
                    job.run(&savepoint, store)?;
                    savepoint.commit()?;
                    Ok(())
                })
                .map_err(DbError::failed);
            ran.push((job, result));
        }
        let committed = tx.commit().map_err(DbError::failed);
        if let Err(e) = &committed {
            tracing::error!(error = %e, jobs = ran.len(), "cannot commit to the data file");
        }
        for (job, result) in ran {
            job.finish(result.and(committed.clone()), &self.applier);
        }
    }

    /// Merges into the store whatever other connections committed since the last look.
    fn follow_other_writers(&mut self) {
        let version = match super::data_version(&self.db.conn) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the data file for outside changes");
                return;
            }
        };
        if version == self.seen {
            return;
        }
        let records = match self.db.load() {
            Ok(records) => records,
            Err(e) => {
                // Not marked as seen: tried again at the next look.
                tracing::warn!(error = %e, "cannot reload the data file");
                return;
            }
        };
        self.seen = version;
        let mut changed = 0;
        for record in records {
            let id = record.id();
            match self.applier.apply_changed(record) {
                Ok((_, true)) => {
                    changed += 1;
                    tracing::info!(key_id = %id, "applied a change made to the data file by another connection");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(key_id = %id, error = %e, "ignoring an invalid record in the data file")
                }
            }
        }
        tracing::debug!(changed, "reloaded the data file");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sitequest_auth::{KeyStatus, NewKey, Preset};

    use super::*;

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    fn record(name: &str) -> KeyRecord {
        NewKey::new(name, Preset::Full)
            .generate(NOW)
            .unwrap()
            .record
    }

    fn start(path: &Path, poll: Duration) -> (DbHandle, Arc<KeyStore>) {
        let store = Arc::new(KeyStore::new());
        let options = WorkerOptions {
            poll,
            ..WorkerOptions::default()
        };
        let (db, _) =
            DbHandle::start(Db::open(path).unwrap(), store.clone(), None, options).unwrap();
        (db, store)
    }

    /// Never looks for outside changes during a test.
    const NEVER: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn removals_keep_their_tombstones_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let (db, _) = start(&path, NEVER);
        let (gone, kept) = (record("gone"), record("kept"));
        db.create(gone.clone(), Source::AdminApi).await.unwrap();
        db.create(kept.clone(), Source::AdminApi).await.unwrap();
        db.save(Vec::new(), vec![(gone.id(), NOW.plus_secs(5))])
            .await
            .unwrap();
        // Learned again, earlier: the earliest removal time stays.
        db.save(Vec::new(), vec![(gone.id(), NOW.plus_secs(3))])
            .await
            .unwrap();
        db.close().await.unwrap();
        let file = Db::open(&path).unwrap();
        assert_eq!(file.load().unwrap(), vec![kept]);
        assert_eq!(file.removed().unwrap(), vec![(gone.id(), NOW.plus_secs(3))]);
    }

    #[tokio::test]
    async fn rotation_reads_the_key_in_its_own_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let (db, store) = start(&path, NEVER);
        let key = record("k");
        db.create(key.clone(), Source::AdminApi).await.unwrap();
        // Revoked by another connection; the store has not looked and still sees it active.
        assert!(Db::open(&path)
            .unwrap()
            .revoke(key.id(), NOW.plus_secs(1), Source::Cli)
            .unwrap());
        assert_eq!(
            store.get(key.id()).unwrap().status(NOW.plus_secs(2)),
            KeyStatus::Active
        );

        let refused = db
            .rotate(
                key.id(),
                Duration::from_secs(60),
                NOW.plus_secs(2),
                Source::AdminApi,
            )
            .await;
        assert!(
            matches!(refused, Err(ChangeError::NotActive)),
            "{refused:?}"
        );
        // The store learned the revocation, and no replacement was saved.
        assert_eq!(
            store.get(key.id()).unwrap().revoked_at,
            Some(NOW.plus_secs(1))
        );
        assert_eq!(store.len(), 1);
        assert_eq!(Db::open(&path).unwrap().load().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn revocations_and_rotations_of_unknown_keys_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = start(&dir.path().join("k.db"), NEVER);
        let id = record("k").id();
        assert!(matches!(
            db.revoke(id, NOW, Source::Cli).await,
            Err(ChangeError::NotFound)
        ));
        assert!(matches!(
            db.rotate(id, Duration::from_secs(0), NOW, Source::AdminApi)
                .await,
            Err(ChangeError::NotFound)
        ));
    }

    #[tokio::test]
    async fn a_failing_job_fails_alone_in_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let (db, store) = start(&path, NEVER);
        let existing = record("existing");
        db.create(existing.clone(), Source::AdminApi).await.unwrap();

        // Hold the write lock so that the jobs below queue up and run as one batch.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let first = tokio::spawn({
            let db = db.clone();
            async move { db.create(record("first"), Source::AdminApi).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let duplicate = tokio::spawn({
            let (db, existing) = (db.clone(), existing.clone());
            async move { db.create(existing, Source::AdminApi).await }
        });
        let fine = record("fine");
        let after = tokio::spawn({
            let (db, fine) = (db.clone(), fine.clone());
            async move { db.create(fine, Source::AdminApi).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        other.execute_batch("COMMIT").unwrap();

        first.await.unwrap().unwrap();
        let e = duplicate.await.unwrap().unwrap_err();
        assert!(matches!(e, ChangeError::Db(DbError::Failed(_))), "{e:?}");
        assert!(e.to_string().contains("UNIQUE constraint failed"), "{e}");
        after.await.unwrap().unwrap();
        assert!(store.get(fine.id()).is_some());
        let names: Vec<String> = Db::open(&path)
            .unwrap()
            .load()
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&"fine".to_owned()), "{names:?}");
    }

    #[tokio::test]
    async fn close_finishes_and_closes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let (db, store) = start(&path, NEVER);
        let key = record("k");
        let create = db.create(key.clone(), Source::AdminApi);
        let close = db.close();
        let (created, closed) = tokio::join!(create, close);
        created.unwrap();
        closed.unwrap();
        assert!(store.get(key.id()).is_some());
        // The last connection checkpointed and removed the WAL.
        assert!(!dir.path().join("k.db-wal").exists());
        let late = db.create(record("late"), Source::AdminApi).await;
        assert!(
            matches!(late, Err(ChangeError::Db(DbError::Stopped))),
            "{late:?}"
        );
        assert_eq!(Db::open(&path).unwrap().load().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn changes_made_by_other_connections_are_merged_and_passed_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let kept = record("kept");
        let gone = record("gone");
        Db::open(&path).unwrap().upsert(&[&kept, &gone]).unwrap();
        let store = Arc::new(KeyStore::new());
        let (changes, mut changed) = tokio::sync::mpsc::unbounded_channel();
        let options = WorkerOptions {
            poll: Duration::from_millis(20),
            ..WorkerOptions::default()
        };
        let (_db, loaded) = DbHandle::start(
            Db::open(&path).unwrap(),
            store.clone(),
            Some(changes),
            options,
        )
        .unwrap();
        assert_eq!(loaded, 2);

        let added = record("added");
        let mut other = Db::open(&path).unwrap();
        other.upsert(&[&added]).unwrap();
        assert!(other
            .revoke(gone.id(), NOW.plus_secs(5), Source::Cli)
            .unwrap());

        let mut seen = Vec::new();
        while seen.len() < 2 {
            let record = tokio::time::timeout(Duration::from_secs(2), changed.recv())
                .await
                .expect("changes not passed on")
                .unwrap();
            seen.push(record);
        }
        seen.sort_by_key(|r| r.name.clone());
        assert_eq!(seen[0].id(), added.id());
        assert_eq!(
            (seen[1].id(), seen[1].revoked_at),
            (gone.id(), Some(NOW.plus_secs(5)))
        );
        assert_eq!(
            store.get(gone.id()).unwrap().revoked_at,
            Some(NOW.plus_secs(5))
        );
        assert!(store.get(added.id()).is_some());
        assert_eq!(store.get(kept.id()).unwrap(), kept);
        assert!(
            changed.try_recv().is_err(),
            "an unchanged record was passed on"
        );
    }
}
