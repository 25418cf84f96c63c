//! The server of the adapter's load test (`bash scripts/load.sh`): one trivial handler served
//! four ways, in one process, so that a load generator compares them in the same run.
//!
//! | route | what runs |
//! |---|---|
//! | `GET /plain` | the handler alone |
//! | `GET /plain-headers` | the handler alone, answering with the five rate-limit fields as fixed strings of the spec's lengths: what sending the spec's headers costs by itself |
//! | `GET /noop` | the handler behind a layer that does nothing (`tower`'s `Identity`): what axum itself costs for any layer on a route |
//! | `GET /auth` | the handler behind an `AuthLayer` (a store of `--store-keys` keys, the spec's quota of 60 a minute, and a clock that moves one window ahead every 60 requests, so that a key never runs out and every response carries the spec's header values): every request with a valid key is granted |
//! | `GET /auth-huge` | the same keys with a quota of 4,294,967,295 a minute on the system clock (in a store of their own: a key's window belongs to its store, and two clocks a window apart would start it again each time): every number in the headers is ten digits long, the most expensive to render |
//! | `GET /auth401` | the same layer: requests without a valid key are refused with a 401 |
//!
//! The runtime is tokio's current-thread one, so the server does all its work on one thread;
//! the script pins the process to one core (`taskset -c 0`) and the load generator to another.
//!
//! ```text
//! cargo build --release -p sitequest-auth-tower --example load_server
//! target/release/examples/load_server [--port N] [--store-keys N] [--keys-out PATH] [--key-count N]
//! ```
//!
//! It writes `--key-count` valid keys (default 16) to `--keys-out`, one per line (mode 0600;
//! they are throwaway keys of this process), then prints `listening on http://ADDR` when it
//! accepts connections.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::{HeaderName, HeaderValue};
use axum::routing::get;
use axum::Router;
use sitequest_auth::{Authorizer, KeyStore, NewKey, Quota, Scopes, UnixTime};
use sitequest_auth_tower::{AuthLayer, TimeProvider};

/// A clock that moves one 60-second window ahead every 60 readings: the layer reads it once a
/// request, so one key's 60 requests a window never run out however fast the load comes.
struct WindowPerSixty {
    start: u64,
    readings: AtomicU64,
}

impl TimeProvider for WindowPerSixty {
    fn now(&self) -> UnixTime {
        let n = self.readings.fetch_add(1, Ordering::Relaxed);
        UnixTime::from_secs(self.start + n / 60 * 60)
    }
}

/// The same handler for every route.
async fn ok() -> &'static str {
    "ok"
}

/// The handler with the five rate-limit fields of a granted request, as fixed strings.
async fn ok_with_headers() -> ([(HeaderName, HeaderValue); 5], &'static str) {
    const FIELDS: [(&str, &str); 5] = [
        ("x-ratelimit-limit", "60"),
        ("x-ratelimit-remaining", "59"),
        ("x-ratelimit-reset", "1800000060"),
        ("ratelimit-policy", "\"default\";q=60;w=60"),
        ("ratelimit", "\"default\";r=59;t=60"),
    ];
    (
        FIELDS.map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v))),
        "ok",
    )
}

#[derive(Debug)]
struct Args {
    port: u16,
    store_keys: usize,
    keys_out: Option<PathBuf>,
    key_count: usize,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let mut args = Self {
            port: 0,
            store_keys: 1_000,
            keys_out: None,
            key_count: 16,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--port" => args.port = number(&flag, &value)?,
                "--store-keys" => args.store_keys = number::<usize>(&flag, &value)?.max(1),
                "--key-count" => args.key_count = number(&flag, &value)?,
                "--keys-out" => args.keys_out = Some(PathBuf::from(value)),
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        args.key_count = args.key_count.min(args.store_keys);
        Ok(args)
    }
}

/// The value of a numeric flag.
fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: not a number: {value}"))
}

/// Writes the keys, one per line, to a file only this user can read.
fn write_keys(path: &Path, keys: &[String]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    for key in keys {
        writeln!(file, "{key}")?;
    }
    file.sync_all()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse()?;
    let now = UnixTime::from_system_time(SystemTime::now());

    // The keys: read only (the routes require `vps:read`), no expiry.
    let store = Arc::new(KeyStore::with_capacity(args.store_keys));
    let new = NewKey::new("load", Scopes::READ_ONLY);
    let mut shown = Vec::with_capacity(args.key_count);
    while store.len() < args.store_keys {
        let issued = new.generate(now)?;
        // Two keys sharing an id (a 2^-64 chance): draw another.
        if store.insert(issued.record).is_err() {
            continue;
        }
        if shown.len() < args.key_count {
            shown.push(issued.key.expose_secret().as_str().to_owned());
        }
    }
    if let Some(path) = &args.keys_out {
        write_keys(path, &shown)?;
    }

    // A quota no load test can exhaust: the test measures the grant path, not the 429. Its
    // routes read the system clock, so they count in a store of their own with the same keys:
    // a key's window belongs to the store, and counted on two clocks a window apart it would
    // start again at each change of clock.
    let huge = Quota::new(u32::MAX, 60).ok_or("quota")?;
    let system_clock_store = Arc::new(KeyStore::with_capacity(args.store_keys));
    system_clock_store
        .load(store.export())
        .map_err(|(_, e)| e.to_string())?;
    let spec = Arc::new(Authorizer::new(store));
    let auth = Arc::new(Authorizer::new(system_clock_store).with_quota(huge));
    let clock = Arc::new(WindowPerSixty {
        start: now.as_secs() - now.as_secs() % 60,
        readings: AtomicU64::new(0),
    });
    let app: Router = Router::new()
        .route("/plain", get(ok))
        .route("/plain-headers", get(ok_with_headers))
        .route("/noop", get(ok).layer(tower::layer::util::Identity::new()))
        .route(
            "/auth",
            get(ok).layer(AuthLayer::new(spec, Scopes::VPS_READ).with_clock(clock)),
        )
        .route(
            "/auth-huge",
            get(ok).layer(AuthLayer::new(auth.clone(), Scopes::VPS_READ)),
        )
        .route(
            "/auth401",
            get(ok).layer(AuthLayer::new(auth, Scopes::VPS_READ)),
        );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", listener.local_addr()?)?;
        out.flush()?;
        drop(out);
        axum::serve(listener, app).await
    })?;
    Ok(())
}
