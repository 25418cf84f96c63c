//! Key records in an embedded SQLite file: digests and metadata, never a plaintext key.
//!
//! [`Db`] is the file opened on the calling thread, for the `keys` subcommands and for loading at
//! start. A running server hands it to a [`DbHandle`]: from then on one thread of its own makes
//! every SQLite call, so a slow disk or a file locked by another process never stalls the async
//! runtime that answers API requests.

mod worker;

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension, Row, Statement, TransactionBehavior};
use serde::Serialize;
use sitequest_auth::{
    IpAllowlist, KeyDigest, KeyId, KeyRecord, KeyStore, Last4, Quota, Scopes, UnixTime,
};

pub use worker::{
    Activity, ActivityRead, ChangeError, DbError, DbHandle, Rotated, WorkerOptions,
    DATA_VERSION_POLL, QUEUE_CAPACITY,
};

/// Longest wait for a lock held by another connection before a statement fails.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open data file.
#[derive(Debug)]
pub struct Db {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keys (
    id            TEXT PRIMARY KEY,
    digest        TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER,
    rate_limit    TEXT,
    last_used_at  INTEGER,
    last4         TEXT NOT NULL,
    -- The key's allowlist, ranges joined by commas ('' for any address), and when it was set.
    allowed_ips   TEXT NOT NULL DEFAULT '',
    allowed_ips_changed_at INTEGER,
    -- A rotation's replacement: the id whose rate-limit window it shares.
    shares_limit_with TEXT
);
-- What happened to keys, and who did it: the activity list.
CREATE TABLE IF NOT EXISTS events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    key_id        TEXT NOT NULL,
    action        TEXT NOT NULL,
    source        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_key ON events (key_id, seq);
-- Which key each rotation replaced (this data file's rotations), for the lists' labels.
CREATE TABLE IF NOT EXISTS rotations (
    new_id        TEXT PRIMARY KEY,
    old_id        TEXT NOT NULL
);
-- Keys removed on another instance: kept so that a replayed record cannot bring one back.
CREATE TABLE IF NOT EXISTS removed_keys (
    id            TEXT PRIMARY KEY,
    removed_at    INTEGER NOT NULL
);
-- Secrets the server makes once and keeps (the OAuth client ids' signing key).
CREATE TABLE IF NOT EXISTS secrets (
    name          TEXT PRIMARY KEY,
    value         BLOB NOT NULL
);";

/// Columns added after the first version of the file, added to an older file when it is opened.
const ADDED_COLUMNS: [(&str, &str); 3] = [
    ("allowed_ips", "TEXT NOT NULL DEFAULT ''"),
    ("allowed_ips_changed_at", "INTEGER"),
    ("shares_limit_with", "TEXT"),
];

/// The columns [`record`] reads, in its order.
const COLUMNS: &str = "digest, name, scopes, created_at, expires_at, revoked_at, rate_limit, \
                       last_used_at, last4, allowed_ips, allowed_ips_changed_at, \
                       shares_limit_with";

/// The start of every statement that stores a whole record; [`execute`] binds its parameters.
const INSERT: &str = "INSERT INTO keys (id, digest, name, scopes, created_at, expires_at,
                                        revoked_at, rate_limit, last_used_at, last4,
                                        allowed_ips, allowed_ips_changed_at, shares_limit_with)
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// Who made a change to a key, as the activity list names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The admin API.
    AdminApi,
    /// The `keys` subcommands.
    Cli,
    /// Someone who presented the key to `POST /v1/keys/revoke`.
    Presentation,
    /// GitHub's secret scanning, through the partner endpoint.
    GithubSecretScanning,
    /// The dashboard.
    Dashboard,
    /// An MCP client's OAuth authorization, approved in the dashboard.
    OAuth,
}

impl Source {
    /// The name stored and shown: `admin_api`, `cli`, `presentation`,
    /// `github_secret_scanning`, `dashboard`, `oauth`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AdminApi => "admin_api",
            Self::Cli => "cli",
            Self::Presentation => "presentation",
            Self::GithubSecretScanning => "github_secret_scanning",
            Self::Dashboard => "dashboard",
            Self::OAuth => "oauth",
        }
    }
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The key was created.
    Created,
    /// The key was revoked.
    Revoked,
    /// The key was replaced by a rotation (this event names the old key).
    Rotated,
    /// The key's allowlist was set.
    AllowlistChanged,
}

impl Action {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Revoked => "revoked",
            Self::Rotated => "rotated",
            Self::AllowlistChanged => "allowlist_changed",
        }
    }
}

/// One entry of the activity list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When.
    pub at: UnixTime,
    /// The key.
    pub key_id: KeyId,
    /// What happened (`created`, `revoked`, `rotated`, `allowlist_changed`).
    pub action: String,
    /// Who did it (see [`Source::as_str`]).
    pub source: String,
}

/// Most events one activity query returns.
pub const MAX_EVENTS: usize = 1000;

fn to_sql(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

fn from_sql(t: i64) -> UnixTime {
    UnixTime::from_secs(u64::try_from(t).unwrap_or(0))
}

impl Db {
    /// Opens (creating if needed) the data file. Every write is durable when it returns
    /// (`synchronous = FULL`); a write waits up to [`BUSY_TIMEOUT`] for a lock held by another
    /// connection.
    ///
    /// # Security
    ///
    /// A new data file is created with mode 0600 before SQLite opens it, so SQLite creates its
    /// `-wal` and `-shm` files with the same mode. Group and other access is taken away from an
    /// existing file, `-wal` or `-shm` (a stricter mode is kept). The file holds digests, not
    /// keys, but the names and scopes are nobody else's business, and anyone who can write it
    /// can mint keys.
    ///
    /// # Errors
    ///
    /// When the file cannot be created, made private or opened, or is not a valid data file.
    pub fn open(path: &Path) -> Result<Self> {
        make_private(path)?;
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open data file {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(SCHEMA)?;
        add_columns(&conn)?;
        Ok(Self { conn })
    }

    /// The 32-byte secret stored under `name`, made (from the system's random source) and
    /// stored the first time it is asked for.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or written.
    pub fn secret(&mut self, name: &str) -> Result<zeroize::Zeroizing<[u8; 32]>> {
        let stored: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM secrets WHERE name = ?1", [name], |row| {
                row.get(0)
            })
            .optional()?;
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        match stored {
            Some(mut value) if value.len() == 32 => {
                secret.copy_from_slice(&value);
                zeroize::Zeroize::zeroize(&mut value);
            }
            Some(_) => anyhow::bail!("the secret {name:?} in the data file is not 32 bytes"),
            None => {
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, secret.as_mut());
                self.conn.execute(
                    "INSERT INTO secrets (name, value) VALUES (?1, ?2)",
                    rusqlite::params![name, secret.as_slice()],
                )?;
            }
        }
        Ok(secret)
    }

    /// Every stored record.
    pub fn load(&self) -> Result<Vec<KeyRecord>> {
        load(&self.conn)
    }

    /// The tombstones of keys removed on other instances: (id, removal time).
    pub fn removed(&self) -> Result<Vec<(KeyId, UnixTime)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, removed_at FROM removed_keys ORDER BY id")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, at) = row?;
            out.push((
                id.parse().context("corrupt key id in data file")?,
                from_sql(at),
            ));
        }
        Ok(out)
    }

    /// Puts every stored record in `store`, returning how many there were.
    pub fn load_into(&self, store: &KeyStore) -> Result<usize> {
        store
            .load(self.load()?)
            .map_err(|(i, e)| anyhow::anyhow!("record {i} of the data file is invalid: {e}"))
    }

    /// Inserts records, or merges them into the stored ones so that a revocation or an expiry is
    /// never undone or pushed back, all in one transaction.
    pub fn upsert(&mut self, records: &[&KeyRecord]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        upsert(&tx, records)?;
        tx.commit()?;
        Ok(())
    }

    /// Marks a key revoked (keeping an earlier revocation time), recording who did it if it was
    /// not revoked yet. Returns whether the key exists.
    pub fn revoke(&mut self, id: KeyId, now: UnixTime, source: Source) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let newly = tx.execute(
            "UPDATE keys SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
            params![to_sql(now), id.to_string()],
        )?;
        if newly > 0 {
            record_event(&tx, now, id, Action::Revoked, source)?;
        }
        let exists = contains(&tx, id)?;
        tx.commit()?;
        Ok(exists)
    }

    /// Records that `source` did `action` to the key `id` at `at`.
    pub fn record_event(
        &self,
        at: UnixTime,
        id: KeyId,
        action: Action,
        source: Source,
    ) -> Result<()> {
        record_event(&self.conn, at, id, action, source)
    }

    /// The latest events, newest first, at most [`MAX_EVENTS`].
    pub fn events(&self) -> Result<Vec<Event>> {
        events(&self.conn)
    }

    /// Who revoked each revoked key that has a recorded revocation.
    pub fn revoked_by(&self) -> Result<std::collections::HashMap<KeyId, String>> {
        revoked_by(&self.conn)
    }

    /// Whether a key with this id is stored.
    pub fn contains(&self, id: KeyId) -> Result<bool> {
        contains(&self.conn, id)
    }

    /// Records last-use times, in one transaction.
    pub fn touch(&mut self, used: &[(KeyId, UnixTime)]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        touch(&tx, used)?;
        tx.commit()?;
        Ok(())
    }
}

/// `path` with `suffix` appended to its file name (`demo.db` → `demo.db-wal`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates the data file with mode 0600 if it does not exist, and takes group and other access
/// away from it and from its `-wal` and `-shm` files if they exist.
fn make_private(path: &Path) -> Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot create data file {}", path.display()))
        }
    }
    for file in [
        path.to_owned(),
        sibling(path, "-wal"),
        sibling(path, "-shm"),
    ] {
        let mode = match fs::metadata(&file) {
            Ok(m) => m.permissions().mode(),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", file.display())),
        };
        if mode & 0o077 != 0 {
            fs::set_permissions(&file, fs::Permissions::from_mode(mode & 0o700))
                .with_context(|| format!("cannot make {} private (mode 0600)", file.display()))?;
        }
    }
    Ok(())
}

/// Adds the columns an older data file lacks.
fn add_columns(conn: &Connection) -> Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('keys')")?;
    let have: Vec<String> = stmt
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, kind) in ADDED_COLUMNS {
        if !have.iter().any(|h| h == name) {
            conn.execute_batch(&format!("ALTER TABLE keys ADD COLUMN {name} {kind}"))?;
        }
    }
    Ok(())
}

fn record_event(
    conn: &Connection,
    at: UnixTime,
    id: KeyId,
    action: Action,
    source: Source,
) -> Result<()> {
    conn.prepare_cached("INSERT INTO events (at, key_id, action, source) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![
            to_sql(at),
            id.to_string(),
            action.as_str(),
            source.as_str()
        ])?;
    Ok(())
}

fn events(conn: &Connection) -> Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, key_id, action, source FROM events ORDER BY seq DESC LIMIT ?1",
    )?;
    let limit = i64::try_from(MAX_EVENTS).unwrap_or(i64::MAX);
    let rows = stmt.query_map([limit], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (at, id, action, source) = row?;
        out.push(Event {
            at: from_sql(at),
            key_id: id.parse().context("corrupt key id in the events")?,
            action,
            source,
        });
    }
    Ok(out)
}

/// Records that `new` replaced `old` by a rotation.
pub(crate) fn record_rotation(conn: &Connection, new: KeyId, old: KeyId) -> Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO rotations (new_id, old_id) VALUES (?1, ?2)")?
        .execute(params![new.to_string(), old.to_string()])?;
    Ok(())
}

/// Which key each rotation of this data file replaced: new id → old id.
fn rotations(conn: &Connection) -> Result<std::collections::HashMap<KeyId, KeyId>> {
    let mut stmt = conn.prepare_cached("SELECT new_id, old_id FROM rotations")?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (new, old) = row?;
        if let (Ok(new), Ok(old)) = (new.parse(), old.parse()) {
            out.insert(new, old);
        }
    }
    Ok(out)
}

fn revoked_by(conn: &Connection) -> Result<std::collections::HashMap<KeyId, String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT key_id, source FROM events WHERE action = 'revoked' ORDER BY seq",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (id, source) = row?;
        if let Ok(id) = id.parse() {
            // The first revocation is the one that counts.
            out.entry(id).or_insert(source);
        }
    }
    Ok(out)
}

/// A row of `SELECT {COLUMNS}` as a record.
fn record(row: &Row<'_>) -> Result<KeyRecord> {
    let digest: String = row.get(0)?;
    let scopes: String = row.get(2)?;
    let rate: Option<String> = row.get(6)?;
    let last4: String = row.get(8)?;
    let record = KeyRecord::new(
        KeyDigest::from_hex(&digest).context("corrupt digest in data file")?,
        row.get::<_, String>(1)?,
        Scopes::parse_list(&scopes).context("corrupt scopes in data file")?,
        from_sql(row.get(3)?),
        Last4::new(&last4).context("corrupt last4 in data file")?,
    )
    .with_expires_at(row.get::<_, Option<i64>>(4)?.map(from_sql))
    .with_revoked_at(row.get::<_, Option<i64>>(5)?.map(from_sql))
    .with_rate_limit(
        rate.map(|r| Quota::parse(&r))
            .transpose()
            .context("corrupt rate limit in data file")?,
    )
    .with_last_used_at(row.get::<_, Option<i64>>(7)?.map(from_sql))
    .with_allowed_ips(
        IpAllowlist::parse(&row.get::<_, String>(9)?).context("corrupt allowlist in data file")?,
        row.get::<_, Option<i64>>(10)?.map(from_sql),
    )
    .with_shared_limit(
        row.get::<_, Option<String>>(11)?
            .map(|id| id.parse())
            .transpose()
            .context("corrupt shared window in data file")?,
    );
    Ok(record)
}

fn load(conn: &Connection) -> Result<Vec<KeyRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM keys ORDER BY created_at, id"
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(record(row)?);
    }
    Ok(out)
}

/// The stored record of the key with this id.
fn get(conn: &Connection, id: KeyId) -> Result<Option<KeyRecord>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM keys WHERE id = ?1"))?;
    let mut rows = stmt.query([id.to_string()])?;
    rows.next()?.map(record).transpose()
}

fn contains(conn: &Connection, id: KeyId) -> Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM keys WHERE id = ?1", [id.to_string()], |_| {
            Ok(())
        })
        .optional()?
        .is_some())
}

/// `PRAGMA data_version`: on one connection, the value changes exactly when another connection
/// (in this process or another) has committed since this one last read it, and costs no more
/// than a look at the shared-memory index.
fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |row| row.get(0))?)
}

/// Runs an [`INSERT`]-based statement for one record.
fn execute(stmt: &mut Statement<'_>, r: &KeyRecord) -> rusqlite::Result<usize> {
    stmt.execute(params![
        r.id().to_string(),
        r.digest.to_hex(),
        r.name,
        r.scopes.to_string(),
        to_sql(r.created_at),
        r.expires_at.map(to_sql),
        r.revoked_at.map(to_sql),
        r.rate_limit.map(|q| q.to_string()),
        r.last_used_at.map(to_sql),
        r.last4.as_str(),
        r.allowed_ips.joined(),
        r.allowed_ips_changed_at.map(to_sql),
        r.shares_limit_with.map(|id| id.to_string()),
    ])
}

/// Stores a new record; fails if its id or digest is taken.
fn insert(conn: &Connection, r: &KeyRecord) -> Result<()> {
    execute(&mut *conn.prepare_cached(INSERT)?, r)?;
    Ok(())
}

/// Whether the incoming row's allowlist replaces the stored one (`KeyRecord::merged_with`).
const NEWER_ALLOWLIST: &str = "COALESCE(excluded.allowed_ips_changed_at, -1)
        > COALESCE(keys.allowed_ips_changed_at, -1)
    OR (COALESCE(excluded.allowed_ips_changed_at, -1) = COALESCE(keys.allowed_ips_changed_at, -1)
        AND excluded.allowed_ips < keys.allowed_ips)";

fn upsert(conn: &Connection, records: &[&KeyRecord]) -> Result<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "{INSERT}
         ON CONFLICT(id) DO UPDATE SET
            -- Like KeyRecord::merged_with: what the key is (name, scopes, rate limit,
            -- creation time) stays as first saved; revocation and expiry only ever tighten.
            expires_at = COALESCE(MIN(keys.expires_at, excluded.expires_at),
                                  keys.expires_at, excluded.expires_at),
            revoked_at = COALESCE(MIN(keys.revoked_at, excluded.revoked_at),
                                  keys.revoked_at, excluded.revoked_at),
            last_used_at = COALESCE(MAX(keys.last_used_at, excluded.last_used_at),
                                    keys.last_used_at, excluded.last_used_at),
            -- The allowlist set later wins; on a tie, the text that sorts first.
            allowed_ips = CASE WHEN {NEWER_ALLOWLIST} THEN excluded.allowed_ips
                               ELSE keys.allowed_ips END,
            allowed_ips_changed_at = CASE WHEN {NEWER_ALLOWLIST}
                                          THEN excluded.allowed_ips_changed_at
                                          ELSE keys.allowed_ips_changed_at END"
    ))?;
    for r in records {
        execute(&mut stmt, r)?;
    }
    Ok(())
}

fn touch(conn: &Connection, used: &[(KeyId, UnixTime)]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?1) WHERE id = ?2",
    )?;
    for (id, t) in used {
        stmt.execute(params![to_sql(*t), id.to_string()])?;
    }
    Ok(())
}

/// Deletes the records of keys removed on another instance, keeping their tombstones.
fn remove(conn: &Connection, removed: &[(KeyId, UnixTime)]) -> Result<()> {
    let mut delete = conn.prepare_cached("DELETE FROM keys WHERE id = ?1")?;
    let mut keep = conn.prepare_cached(
        "INSERT INTO removed_keys (id, removed_at) VALUES (?1, ?2)
         ON CONFLICT(id) DO UPDATE SET removed_at = MIN(removed_at, excluded.removed_at)",
    )?;
    for (id, at) in removed {
        delete.execute([id.to_string()])?;
        keep.execute(params![id.to_string(), to_sql(*at)])?;
    }
    Ok(())
}
