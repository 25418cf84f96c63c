//! Test support: a real `redis-server` on a free loopback port, stopped on drop.

use std::net::TcpStream;

/// The server-side script that writes the key-change hash: it checks that an entry only
/// tightens the one it replaces (the Lua copy of `KeyRecord::merged_with`), for tests that run
/// the shared table of merge cases against it. KEYS: hash. ARGV: channel, key id, expected
/// current entry, new entry, `'1'` to skip the check.
pub const PUBLISH_SCRIPT: &str = crate::sync::PUBLISH_SCRIPT;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process.
#[derive(Debug)]
pub struct RedisServer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// Starts `redis-server`.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not installed (tests that need it fail, never skip: run
    /// `bash scripts/install-redis.sh`, as the test script does) or does not start.
    #[must_use]
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.restart();
        server
    }

    /// Its URL, `redis://127.0.0.1:PORT/`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server (as if it crashed) and waits until the port is closed.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Wait until the port no longer answers.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "redis-server did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts (again) on the same port.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}); these tests need it: \
                     run `bash scripts/install-redis.sh`"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TCP proxy in front of a server that can freeze: the connections open at that moment stay
/// open but no longer forward a byte either way, while new connections work normally. This is
/// how a stalled link looks to a client (a proxy or NAT that dropped its state, a half-dead
/// peer), and what a plain reconnect-on-error client never notices.
///
/// [`FreezingProxy::cut`] makes a partition instead: open connections freeze and new ones are
/// accepted but never reach the server, until [`FreezingProxy::heal`].
#[derive(Debug)]
pub struct FreezingProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    listener: tokio::task::JoinHandle<()>,
}

impl FreezingProxy {
    /// Starts a proxy to `127.0.0.1:target`. Needs a Tokio runtime.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(target: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let current = generation.clone();
        let partitioned = cut.clone();
        let listener = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if partitioned.load(Ordering::SeqCst) {
                    // Accepted, then nothing: what a client sees across a partition.
                    tokio::spawn(async move {
                        use tokio::io::AsyncReadExt;
                        let mut client = client;
                        let mut buf = [0u8; 1024];
                        while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
                    });
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let born = current.load(Ordering::SeqCst);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, current.clone(), born));
                tokio::spawn(pipe(sr, cw, current.clone(), born));
            }
        });
        Self {
            port,
            generation,
            cut,
            listener,
        }
    }

    /// Its URL, `redis://127.0.0.1:PORT/`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Freezes every connection open now; later connections are not affected.
    pub fn freeze(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Cuts the link: every open connection freezes, and new ones are accepted but never
    /// connected to the server, until [`FreezingProxy::heal`].
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        self.freeze();
    }

    /// Heals a [`FreezingProxy::cut`]: new connections reach the server again (the frozen ones
    /// stay frozen, as after a real partition).
    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Copies bytes until the proxy freezes this connection's generation; then holds both halves
/// open, forwarding nothing, until the peer closes.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    born: u64,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if generation.load(std::sync::atomic::Ordering::SeqCst) != born {
            // Frozen: swallow everything from now on, keep the socket open.
            while matches!(from.read(&mut buf).await, Ok(n) if n > 0) {}
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
