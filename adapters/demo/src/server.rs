//! The accept loop: HTTP/1.1 and HTTP/2 with header limits, header timeouts, bounded
//! connections and graceful shutdown.
//!
//! Every connection costs a file descriptor and a task, and a client that opens one and then says
//! nothing costs them for as long as the server lets it. So the loop bounds how many
//! connections are open ([`ConnectionLimits::max_connections`] overall,
//! [`ConnectionLimits::max_connections_per_ip`] per client), how long each may stay silent
//! ([`ConnectionLimits::first_byte_timeout`], then [`ConnectionLimits::idle_timeout`]), and how
//! long a response may wait for its client to take it ([`ConnectionLimits::response_timeout`]).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{bail, Result};
use axum::body::{Body, Bytes, HttpBody};
use axum::response::Response;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::gauge::Gauge;
use sitequest_auth::Throttle;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

/// Largest request head (request line and headers) accepted, in bytes; bigger ones get a 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Longest time a client may take to send the request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for requests in flight at shutdown, and for a connection closed for idleness or
/// for a response not taken in time to say goodbye (an HTTP/2 GOAWAY exchange); then it is
/// dropped.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a connection closed for idleness (no request in flight) to say goodbye:
/// it has nothing left to finish, so a client that ignores the GOAWAY is dropped soon.
pub const IDLE_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an HTTP/2 connection with no frames from the client is pinged, so a client that
/// vanished in the middle of a request is noticed.
pub const HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long an HTTP/2 ping may go unanswered before the connection is closed.
pub const HTTP2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause after a failed `accept` (out of file descriptors and the like), so the loop does not
/// spin while the cause lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Fewest seconds between two "accept failed" warnings; the ones in between are counted.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// How many connections may be open, and how long they may stay silent.
///
/// A connection over [`max_connections`](Self::max_connections) is not refused: it waits in the
/// kernel's listen backlog until another connection closes. A connection over
/// [`max_connections_per_ip`](Self::max_connections_per_ip) is closed at once, so one client
/// cannot take the whole server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// Most connections open at once, from all clients. Default 10,000.
    pub max_connections: usize,
    /// Most connections open at once from one client address. IPv6 clients are counted per /64,
    /// since one machine usually holds a whole /64. Default 256.
    pub max_connections_per_ip: usize,
    /// A connection that sends no byte within this time is closed. Default 10 s.
    pub first_byte_timeout: Duration,
    /// A connection with no request in flight for this long is closed (gracefully: HTTP/1 at
    /// once, HTTP/2 with a GOAWAY, dropped [`IDLE_DRAIN_TIMEOUT`] later if the client does not
    /// close). This is what closes a connection stuck half-way through the HTTP/2 preface and
    /// an HTTP/2 session kept open by its pings alone. Default 10 s, as HTTP/1's wait for a
    /// request head ([`HEADER_TIMEOUT`]), so a silent connection is closed within 12 s either
    /// way.
    pub idle_timeout: Duration,
    /// A request whose response has not been sent completely this long after the request
    /// arrived no longer keeps its connection open: the connection is closed as an idle one is
    /// (a client that stops reading, or sets an HTTP/2 flow-control window of zero, could
    /// otherwise hold it for ever). Producing a response is bounded by
    /// [`REQUEST_TIMEOUT`](crate::REQUEST_TIMEOUT) already, so this leaves the client the rest
    /// to take it. Default 30 s.
    pub response_timeout: Duration,
}

impl ConnectionLimits {
    /// The defaults: 10,000 connections, 256 per client, 10 s to the first byte, 10 s idle, 30 s
    /// to send a response.
    pub const DEFAULT: Self = Self {
        max_connections: 10_000,
        max_connections_per_ip: 256,
        first_byte_timeout: Duration::from_secs(10),
        idle_timeout: HEADER_TIMEOUT,
        response_timeout: Duration::from_secs(30),
    };

    /// Checks that every limit lets at least something through.
    ///
    /// # Errors
    ///
    /// When a cap is zero or over 2³² − 1, or a timeout is zero.
    pub fn validate(&self) -> Result<()> {
        let caps = [
            ("max connections", self.max_connections),
            ("max connections per IP", self.max_connections_per_ip),
        ];
        for (name, cap) in caps {
            if cap == 0 || u32::try_from(cap).is_err() {
                bail!("{name} must be between 1 and {}", u32::MAX);
            }
        }
        if self.first_byte_timeout.is_zero()
            || self.idle_timeout.is_zero()
            || self.response_timeout.is_zero()
        {
            bail!("connection timeouts must be longer than zero");
        }
        Ok(())
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Raises this process's open-file soft limit to its hard limit, and returns the new soft limit
/// (`None`: unlimited).
///
/// Each connection holds a file descriptor, and distributions often start services with a soft
/// limit of 1,024, far below [`ConnectionLimits::max_connections`]; past it `accept` fails and
/// no new client is served at all.
///
/// # Errors
///
/// When the system refuses the new limit; the old one then stays in force.
pub fn raise_open_file_limit() -> std::io::Result<Option<u64>> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit)?;
    }
    Ok(limit.current)
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then drains the open
/// connections (up to [`DRAIN_TIMEOUT`]). `open_connections` counts the connections open, from
/// their accept to their end (several listeners may share it). Connections from `trusted`
/// proxies are not held to [`ConnectionLimits::max_connections_per_ip`]: every client behind a
/// proxy arrives from its address (they still count in
/// [`ConnectionLimits::max_connections`]).
///
/// # Errors
///
/// When `limits` does not [validate](ConnectionLimits::validate). Failed `accept`s are logged (at
/// most once a second) and retried, never returned.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    trusted: sitequest_auth::TrustedProxies,
    open_connections: Gauge,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    limits.validate()?;
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(HTTP2_KEEP_ALIVE_TIMEOUT)
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::new(limits.max_connections_per_ip, trusted));
    let (stop, stopped) = watch::channel(());
    let accept_log = Throttle::new(ACCEPT_LOG_INTERVAL);
    tokio::pin!(shutdown);
    loop {
        // The permit comes first: with every slot taken, new connections wait in the backlog
        // instead of being accepted into a server that cannot serve them.
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if let Some(suppressed) = accept_log.allow(Instant::now().into_std()) {
                        tracing::warn!(error = %e, suppressed, "accept failed");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = per_ip.try_acquire(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: too many from this client");
            continue;
        };
        let conn = Conn {
            builder: builder.clone(),
            app: app.clone(),
            limits,
            stopped: stopped.clone(),
            _permit: permit,
            _slot: slot,
            _counted: Counted::new(&open_connections),
        };
        tokio::spawn(conn.run(stream, peer));
    }
    drop(listener);
    let _ = stop.send(());
    if open.available_permits() < limits.max_connections {
        tracing::info!("shutting down: finishing requests in flight");
    }
    // Every connection holds a permit until its task ends, so holding them all means none is left.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, open.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time");
    }
    Ok(())
}

/// One accepted connection and what it holds while it is open.
struct Conn {
    builder: Builder<TokioExecutor>,
    app: Router,
    limits: ConnectionLimits,
    stopped: watch::Receiver<()>,
    _permit: OwnedSemaphorePermit,
    _slot: IpSlot,
    _counted: Counted,
}

/// One connection counted in the open-connections gauge; uncounted on drop.
#[derive(Debug)]
struct Counted(Gauge);

impl Counted {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Conn {
    async fn run(mut self, stream: TcpStream, peer: SocketAddr) {
        // Peeking leaves the byte for hyper; it only tells whether the client has spoken.
        let mut first = [0u8; 1];
        tokio::select! {
            peeked = tokio::time::timeout(self.limits.first_byte_timeout, stream.peek(&mut first)) => match peeked {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return,
                Err(_) => {
                    tracing::debug!(%peer, "connection closed: nothing sent in time");
                    return;
                }
            },
            _ = self.stopped.changed() => return,
        }

        let activity = Arc::new(Activity::new(Instant::now()));
        let tracked = activity.clone();
        // The peer's address, for the handlers and the auth layer (axum's `ConnectInfo`).
        let app = ServiceExt::<Request<Incoming>>::map_request(
            self.app.clone(),
            move |mut req: Request<Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        );
        let service = ServiceExt::<Request<Incoming>>::map_future(app, move |response| {
            let request = InFlight::begin(&tracked);
            async move {
                let response: Result<Response, Infallible> = response.await;
                // The request stays in flight until its body has been sent (or dropped).
                response.map(|r| {
                    r.map(|body| {
                        Body::new(TrackedBody {
                            body,
                            _request: request,
                        })
                    })
                })
            }
        });
        let conn = self
            .builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        tokio::pin!(conn);
        let mut close_by: Option<Instant> = None;
        loop {
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                why = activity.expired(self.limits.idle_timeout, self.limits.response_timeout), if close_by.is_none() => {
                    let drain = match why {
                        Expired::Idle => {
                            tracing::debug!(%peer, "closing an idle connection");
                            IDLE_DRAIN_TIMEOUT
                        }
                        Expired::ResponseNotTaken => {
                            tracing::debug!(
                                %peer,
                                "closing a connection: a response was not taken in time"
                            );
                            DRAIN_TIMEOUT
                        }
                    };
                    conn.as_mut().graceful_shutdown();
                    close_by = Some(Instant::now() + drain);
                }
                _ = self.stopped.changed(), if close_by.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    close_by = Some(Instant::now() + DRAIN_TIMEOUT);
                }
                () = tokio::time::sleep_until(close_by.unwrap_or_else(Instant::now)), if close_by.is_some() => {
                    tracing::debug!(%peer, "connection dropped: it did not close in time");
                    return;
                }
            }
        }
    }
}

/// The requests a connection has in flight, since when each is, and since when it has had none.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
    /// Woken at every request begun or ended, since either may bring the deadline closer.
    changed: Notify,
}

#[derive(Debug)]
struct ActivityState {
    /// When each request in flight began, by order of arrival (so the first is the oldest).
    in_flight: BTreeMap<u64, Instant>,
    next: u64,
    idle_since: Instant,
}

/// Why a connection is to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    /// No request in flight for the idle timeout.
    Idle,
    /// A request still in flight (its response not yet sent) for the response timeout.
    ResponseNotTaken,
}

impl Activity {
    fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(ActivityState {
                in_flight: BTreeMap::new(),
                next: 0,
                idle_since: now,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // The state stays consistent whatever panicked while holding the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Completes once the connection has had no request in flight for `idle`, or one request
    /// has been in flight for `response` (a response the client does not take, say through an
    /// HTTP/2 window of zero, must not keep the connection for ever).
    ///
    /// Bytes do not count as activity: HTTP/2 keep-alive pings and a client trickling the
    /// preface one byte at a time would otherwise keep a connection open for ever.
    async fn expired(&self, idle: Duration, response: Duration) -> Expired {
        loop {
            // Registered before the state is read, so a change in between is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (at, why) = {
                let s = self.state();
                match s.in_flight.values().next() {
                    Some(&oldest) => (oldest + response, Expired::ResponseNotTaken),
                    None => (s.idle_since + idle, Expired::Idle),
                }
            };
            if at <= Instant::now() {
                return why;
            }
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = changed => {}
            }
        }
    }
}

/// One request in flight on a connection, from the call of the service until its response body
/// is finished or dropped.
#[derive(Debug)]
struct InFlight {
    activity: Arc<Activity>,
    id: u64,
}

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        let id = {
            let mut s = activity.state();
            let id = s.next;
            s.next += 1;
            // Read under the lock, so arrival order is also the order of the start times.
            s.in_flight.insert(id, Instant::now());
            id
        };
        activity.changed.notify_waiters();
        Self {
            activity: activity.clone(),
            id,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut s = self.activity.state();
            s.in_flight.remove(&self.id);
            s.idle_since = Instant::now();
        }
        self.activity.changed.notify_waiters();
    }
}

/// A response body that keeps its request in flight until it is done.
struct TrackedBody {
    body: Body,
    _request: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Open connections per client, capped; trusted proxies are not counted.
#[derive(Debug)]
struct PerIp {
    cap: usize,
    exempt: sitequest_auth::TrustedProxies,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection counted against its client (unless `client` is `None`: a trusted proxy);
/// uncounted on drop.
#[derive(Debug)]
struct IpSlot {
    table: Arc<PerIp>,
    client: Option<IpAddr>,
}

impl PerIp {
    fn new(cap: usize, exempt: sitequest_auth::TrustedProxies) -> Self {
        Self {
            cap,
            exempt,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a connection from `ip`, or returns `None` when its client already has `cap` open.
    fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        if self.exempt.contains(ip) {
            return Some(IpSlot {
                table: self.clone(),
                client: None,
            });
        }
        let client = client_of(ip);
        let mut open = self.open();
        let n = open.entry(client).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            client: Some(client),
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some(client) = self.client else {
            return;
        };
        let mut open = self.table.open();
        if let Some(n) = open.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                open.remove(&client);
            }
        }
    }
}

/// The client an address belongs to: IPv4 as is (also when mapped into IPv6), IPv6 by its /64.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_slots_are_capped_and_given_back() {
        let table = Arc::new(PerIp::new(2, sitequest_auth::TrustedProxies::default()));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = table.try_acquire(a).unwrap();
        let _second = table.try_acquire(a).unwrap();
        assert!(table.try_acquire(a).is_none());
        // The same address mapped into IPv6 is the same client.
        assert!(table
            .try_acquire("::ffff:192.0.2.1".parse().unwrap())
            .is_none());
        let _other = table.try_acquire(b).unwrap();
        drop(first);
        let _third = table.try_acquire(a).unwrap();
        assert!(table.try_acquire(a).is_none());
        drop((_second, _third, _other));
        assert!(table.open().is_empty());
    }

    #[test]
    fn trusted_proxies_are_not_capped() {
        let proxies =
            sitequest_auth::TrustedProxies::new([
                sitequest_auth::Cidr::parse("10.0.0.0/8").unwrap()
            ]);
        let table = Arc::new(PerIp::new(1, proxies));
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let held: Vec<IpSlot> = (0..5).map(|_| table.try_acquire(proxy).unwrap()).collect();
        assert!(table.open().is_empty());
        let _client = table.try_acquire("192.0.2.1".parse().unwrap()).unwrap();
        assert!(table.try_acquire("192.0.2.1".parse().unwrap()).is_none());
        drop(held);
        assert_eq!(table.open().len(), 1);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let table = Arc::new(PerIp::new(1, sitequest_auth::TrustedProxies::default()));
        let _one = table
            .try_acquire("2001:db8:1:2::1".parse().unwrap())
            .unwrap();
        assert!(table
            .try_acquire("2001:db8:1:2:ffff::9".parse().unwrap())
            .is_none());
        assert!(table
            .try_acquire("2001:db8:1:3::1".parse().unwrap())
            .is_some());
    }

    #[test]
    fn limits_that_let_nothing_through_are_refused() {
        assert!(ConnectionLimits::default().validate().is_ok());
        for bad in [
            ConnectionLimits {
                max_connections: 0,
                ..ConnectionLimits::DEFAULT
            },
            ConnectionLimits {
                max_connections_per_ip: 0,
                ..ConnectionLimits::DEFAULT
            },
            ConnectionLimits {
                idle_timeout: Duration::ZERO,
                ..ConnectionLimits::DEFAULT
            },
            ConnectionLimits {
                first_byte_timeout: Duration::ZERO,
                ..ConnectionLimits::DEFAULT
            },
            ConnectionLimits {
                response_timeout: Duration::ZERO,
                ..ConnectionLimits::DEFAULT
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_without_requests_in_flight() {
        let start = Instant::now();
        let activity = Arc::new(Activity::new(start));
        let idle = Duration::from_secs(60);
        let response = Duration::from_secs(600);
        let request = InFlight::begin(&activity);
        // Long past the idle timeout with a request in flight: still not idle.
        assert!(
            tokio::time::timeout(Duration::from_secs(300), activity.expired(idle, response))
                .await
                .is_err()
        );
        drop(request);
        let ended = Instant::now();
        assert_eq!(activity.expired(idle, response).await, Expired::Idle);
        assert_eq!(Instant::now() - ended, idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_past_the_response_timeout_expires_the_connection() {
        let start = Instant::now();
        let activity = Arc::new(Activity::new(start));
        let idle = Duration::from_secs(60);
        let response = Duration::from_secs(30);
        let waiter = {
            let activity = activity.clone();
            tokio::spawn(async move {
                let why = activity.expired(idle, response).await;
                (why, Instant::now())
            })
        };
        // The waiter sleeps towards the idle deadline (60 s) when the first request begins at
        // 10 s; the response deadline (40 s) is sooner, and is the one kept.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let first = InFlight::begin(&activity);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let second = InFlight::begin(&activity);
        // Requests that begin and end meanwhile do not move the oldest one's deadline.
        drop(InFlight::begin(&activity));
        let (why, at) = waiter.await.unwrap();
        assert_eq!(why, Expired::ResponseNotTaken);
        assert_eq!(at - start, Duration::from_secs(40));
        // With the oldest done, the next one's deadline counts from its own start (15 s).
        drop(first);
        assert_eq!(
            activity.expired(idle, response).await,
            Expired::ResponseNotTaken
        );
        assert_eq!(Instant::now() - start, Duration::from_secs(45));
        drop(second);
        let ended = Instant::now();
        assert_eq!(activity.expired(idle, response).await, Expired::Idle);
        assert_eq!(Instant::now() - ended, idle);
    }
}
