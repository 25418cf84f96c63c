//! A Redis command connection that notices when it stalls and replaces itself.
//!
//! A connection can freeze without being closed (a proxy or a NAT that stops forwarding, a
//! half-dead peer): every command then times out while the socket stays open, and a connection
//! that only reconnects on "connection dropped" errors never recovers. A [`Link`] counts the
//! timeouts and errors of its commands and of a regular `PING`, and after
//! [`Link::FAILURES_TO_REBUILD`] failures in a row opens a new connection in place of the old.
//! Every socket also has TCP keepalive and a TCP user timeout, so the kernel gives up on a dead
//! peer by itself.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;
use redis::aio::MultiplexedConnection;
use redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use redis::{IntoConnectionInfo, RedisError, RedisResult};

/// A command connection to Redis that heals itself.
pub(crate) struct Link {
    client: redis::Client,
    conn: RwLock<MultiplexedConnection>,
    timeout: Duration,
    failures: AtomicU32,
    rebuilds: AtomicU64,
    rebuilding: tokio::sync::Mutex<()>,
}

/// The error of a command that did not complete.
pub(crate) fn timed_out() -> RedisError {
    RedisError::from((redis::ErrorKind::Io, "timed out waiting for Redis"))
}

/// A client whose sockets have TCP keepalive and a user timeout, so the kernel notices a peer
/// that stopped answering even while no command is waiting.
pub(crate) fn client(url: &str, timeout: Duration) -> RedisResult<redis::Client> {
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(2))
        .with_retries(3);
    let tcp = TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
        .set_user_timeout(timeout.max(Duration::from_secs(5)));
    let info = url.into_connection_info()?.set_tcp_settings(tcp);
    redis::Client::open(info)
}

async fn open(client: &redis::Client, timeout: Duration) -> RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    tokio::time::timeout(
        timeout * 4,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| timed_out())?
}

impl Link {
    /// Failures in a row (timeouts or errors of commands or pings) after which the connection is
    /// replaced.
    pub(crate) const FAILURES_TO_REBUILD: u32 = 2;

    /// Connects, and starts a task that pings the connection every `health_interval` and
    /// replaces it when it stalls. The task ends when the link is dropped.
    pub(crate) async fn connect(
        url: &str,
        timeout: Duration,
        health_interval: Duration,
    ) -> RedisResult<Arc<Self>> {
        let client = client(url, timeout)?;
        let conn = open(&client, timeout).await?;
        let link = Arc::new(Self {
            client,
            conn: RwLock::new(conn),
            timeout,
            failures: AtomicU32::new(0),
            rebuilds: AtomicU64::new(0),
            rebuilding: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(watch(Arc::downgrade(&link), health_interval));
        Ok(link)
    }

    /// The client the link connects with (for a pub/sub connection with the same settings).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// How many times the connection was replaced.
    pub(crate) fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }

    /// Runs one exchange on the current connection under the link's timeout, and counts its
    /// failure towards a rebuild.
    pub(crate) async fn run<T, F, Fut>(&self, exchange: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run_for(self.timeout, exchange).await
    }

    /// As [`Link::run`], with its own time limit (for a long scan page).
    pub(crate) async fn run_for<T, F, Fut>(&self, limit: Duration, exchange: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = self.conn.read().clone();
        let result = match tokio::time::timeout(limit, exchange(conn)).await {
            Ok(r) => r,
            Err(_) => Err(timed_out()),
        };
        match &result {
            Ok(_) => self.failures.store(0, Ordering::Relaxed),
            Err(e) if counts_as_link_failure(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        result
    }

    /// `PING` under the timeout; whether it was answered.
    pub(crate) async fn ping(&self) -> bool {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .is_ok()
    }

    /// Replaces the connection if the last [`Link::FAILURES_TO_REBUILD`] exchanges failed.
    async fn heal(&self) {
        if self.failures.load(Ordering::Relaxed) < Self::FAILURES_TO_REBUILD {
            return;
        }
        let Ok(_guard) = self.rebuilding.try_lock() else {
            return;
        };
        match open(&self.client, self.timeout).await {
            Ok(conn) => {
                *self.conn.write() = conn;
                self.failures.store(0, Ordering::Relaxed);
                self.rebuilds.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("Redis connection stalled; replaced it");
            }
            Err(e) => {
                tracing::warn!(error = %e, "Redis connection stalled and cannot be replaced yet");
            }
        }
    }
}

/// Timeouts and I/O-level errors say the connection may be dead; a script or type error does
/// not.
fn counts_as_link_failure(e: &RedisError) -> bool {
    e.is_timeout() || e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

async fn watch(link: Weak<Link>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(link) = link.upgrade() else { return };
        if !link.ping().await {
            link.heal().await;
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("failures", &self.failures.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
