//! `sitequest-demo`: the Sitequest API mock guarded by sitequest-auth.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use sitequest_auth::{Cidr, IpAllowlist, KeyId, NewKey, Preset, Quota, Scopes};
use sitequest_auth_redis::{FailurePolicy, SyncSecret};
use sitequest_demo::db::Db;
use sitequest_demo::server::{self, ConnectionLimits};
use sitequest_demo::service::{ChangeError, Source};
use sitequest_demo::{Config, Demo};

/// A mock of the Sitequest API, guarded by sitequest-auth: API keys, scopes and per-key rate
/// limits, with a key-management admin API. Keys persist in an SQLite file.
///
/// The admin API takes `Authorization: Bearer <token>` with the token from the environment
/// variable SITEQUEST_ADMIN_TOKEN; if it is unset, a token is generated on first start, printed
/// once, and kept (mode 0600) in `<data>.admin-token`.
///
/// For operators, with no key or token: GET /metrics (Prometheus text format), GET /healthz
/// (200 while the process serves) and GET /readyz (200 when ready; 503 with the reason when,
/// with --redis, key changes are not confirmed in sync within --max-sync-age).
#[derive(Parser, Debug)]
#[command(name = "sitequest-demo", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve /metrics, /healthz and /readyz on this address only (with the same connection
    /// limits) instead of on --listen, where they then answer 404.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// SQLite data file holding the keys (digests and metadata, never plaintext keys).
    #[arg(long, value_name = "PATH", default_value = "./sitequest-demo.db")]
    data: PathBuf,
    /// Requests allowed per key per window, as N/SECONDS.
    #[arg(long, value_name = "N/SECONDS", default_value = "60/60", value_parser = parse_quota)]
    rate_limit: Quota,
    /// Redis URL (redis://[:PASSWORD@]host:port/): share rate limits and key changes with every
    /// instance using the same Redis. Without it everything stays in this process. A URL with a
    /// password is better passed through the environment or --redis-url-file than on the
    /// command line, where other users can read it; logs and errors show it without the
    /// password.
    #[arg(
        long,
        value_name = "URL",
        env = "SITEQUEST_REDIS_URL",
        hide_env_values = true
    )]
    redis: Option<String>,
    /// Read the Redis URL from this file instead (surrounding whitespace is ignored). Takes
    /// precedence over SITEQUEST_REDIS_URL; cannot be combined with --redis.
    #[arg(long, value_name = "PATH")]
    redis_url_file: Option<PathBuf>,
    /// With --redis: what to do when Redis cannot be reached, or key changes cannot be confirmed
    /// in sync for longer than --max-sync-age. `closed` answers 503; `open` serves the request
    /// with a per-process limit and the local view of the keys, and logs an error every few
    /// seconds while out of sync.
    #[arg(long, value_name = "closed|open", default_value = "closed", value_parser = parse_policy)]
    redis_failure: FailurePolicy,
    /// With --redis: a file holding the secret (at least 32 bytes) that signs every key change
    /// shared through Redis, the same on every instance, and not the Redis password. Like the
    /// admin token file it must belong to the server's user with no group or other permission
    /// (chmod 600), or the server refuses to start. The environment variable
    /// SITEQUEST_SYNC_SECRET may hold it instead.
    #[arg(long, value_name = "PATH")]
    sync_secret_file: Option<PathBuf>,
    /// With --redis: seconds without confirming that key changes are in sync after which this
    /// instance no longer vouches for revocations made on others (see --redis-failure).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    max_sync_age: u64,
    /// Most connections open at once; more wait in the listen backlog until one closes.
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::DEFAULT.max_connections, value_parser = parse_cap)]
    max_connections: usize,
    /// Most connections open at once from one client address (IPv6: one /64); more are closed
    /// at once.
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::DEFAULT.max_connections_per_ip, value_parser = parse_cap)]
    max_connections_per_ip: usize,
    /// Close a connection that sends nothing for this many seconds after connecting.
    #[arg(long, value_name = "SECONDS", default_value_t = ConnectionLimits::DEFAULT.first_byte_timeout.as_secs(), value_parser = parse_seconds)]
    first_byte_timeout: u64,
    /// Close a connection with no request in flight for this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = ConnectionLimits::DEFAULT.idle_timeout.as_secs(), value_parser = parse_seconds)]
    idle_timeout: u64,
    /// Close a connection when a response to one of its requests has not been sent completely
    /// this many seconds after the request arrived (a client that stops reading, or sets an
    /// HTTP/2 window of zero).
    #[arg(long, value_name = "SECONDS", default_value_t = ConnectionLimits::DEFAULT.response_timeout.as_secs(), value_parser = parse_seconds)]
    response_timeout: u64,
    /// Require every new key to expire, at most this long after it is created (as 90d, 12h,
    /// 30m or 3600s), whether it is created through the admin API or `keys create`. Without it
    /// keys may have no expiry.
    #[arg(long, value_name = "LIFETIME", value_parser = parse_lifetime)]
    max_key_lifetime: Option<std::time::Duration>,
    /// Believe X-Forwarded-For from proxies in this range (repeatable; as 10.0.0.0/8 or
    /// 2001:db8::/32): the client address that key allowlists and the quota of requests without
    /// a valid key use is then the last address in the header that is not a trusted proxy.
    /// Without it the header is ignored and the client is the connection's peer.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = parse_cidr)]
    trusted_proxies: Vec<Cidr>,
    /// Requests without a valid key (missing, malformed, unknown, revoked or expired, or refused
    /// by the key's allowlist) allowed per client address (IPv6: per /64) per window, as
    /// N/SECONDS; past it, such requests get a 429 in place of the 401 (a valid key from that
    /// address is still served). Every 401 carries this window's rate-limit headers. Behind a reverse proxy,
    /// set --trusted-proxy, or every client counts as the proxy.
    #[arg(long, value_name = "N/SECONDS", default_value = "60/60", value_parser = parse_quota)]
    unauthenticated_limit: Quota,
    /// Requests to POST /v1/keys/revoke allowed per client address per window, as N/SECONDS.
    #[arg(long, value_name = "N/SECONDS", default_value = "10/60", value_parser = parse_quota)]
    revoke_limit: Quota,
    /// Serve GitHub's secret scanning partner endpoint, POST /v1/secret-scanning/github, checking
    /// signatures against the public keys in this file: GitHub's answer to
    /// GET https://api.github.com/meta/public_keys/secret_scanning, saved as it is.
    #[arg(long, value_name = "PATH")]
    github_scanning_keys: Option<PathBuf>,
    /// Accept this `Host` at /mcp (repeatable; a name, or name:port), besides localhost,
    /// 127.0.0.1, ::1 and the --listen address: the names MCP clients reach the server by. Other
    /// hosts are refused, against DNS rebinding.
    #[arg(long = "mcp-allowed-host", value_name = "HOST")]
    mcp_allowed_hosts: Vec<String>,
    /// The URL people reach this server by, as https://keys.example.com (behind a proxy that
    /// ends TLS): the dashboard checks form posts come from it and, for https, marks its
    /// session cookie Secure; /mcp accepts its host. Without it, the dashboard trusts the Host
    /// header over plain http.
    #[arg(long, value_name = "URL", value_parser = parse_public_url)]
    public_url: Option<String>,
    /// Most MCP sessions open at once; past it new sessions are refused (503), open ones are
    /// never closed to make room. A session closes when its client ends it or after 5 minutes
    /// without a request.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = parse_cap)]
    mcp_max_sessions: usize,
    /// Most MCP sessions one key may have open; past it that key's new sessions are refused
    /// (429).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = parse_cap)]
    mcp_max_sessions_per_key: usize,
    /// Give an MCP tool its own quota per key, inside the key's window (repeatable), as
    /// ssh_exec=10 (10 a minute) or ssh_exec=10/60 (N/SECONDS): past it a call of the tool is
    /// the spec's 429, whose rate-limit headers describe the tool's window.
    #[arg(long = "mcp-tool-limit", value_name = "TOOL=N[/SECONDS]", value_parser = parse_tool_limit)]
    mcp_tool_limits: Vec<(String, Quota)>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage keys directly in the data file, without the HTTP admin API. A server running on
    /// the same file applies these changes within a second.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create a key and print it (the only time the plaintext is shown).
    Create {
        /// The key's name.
        #[arg(long)]
        name: String,
        /// Scopes, comma separated (vps:read,domains:read,...).
        #[arg(long, conflicts_with = "preset", required_unless_present = "preset")]
        scopes: Option<String>,
        /// full or read_only.
        #[arg(long)]
        preset: Option<String>,
        /// Expiry time, Unix seconds.
        #[arg(long)]
        expires_at: Option<u64>,
        /// Allow the key only from this address or CIDR range (repeatable; at most 32).
        #[arg(long = "allow-ip", value_name = "CIDR")]
        allow_ips: Vec<String>,
    },
    /// List keys (no secrets), with their age and last use.
    List {
        /// Only the keys unused for at least this long (as 30d; a key never used counts from
        /// its creation): the spec's "revoke unused ones".
        #[arg(long, value_name = "LIFETIME", value_parser = parse_lifetime)]
        unused_since: Option<std::time::Duration>,
    },
    /// Revoke a key by id, in the data file (a server running on it shares the revocation
    /// within a second), or with --server through that running server, which answers only once
    /// every instance enforces the revocation.
    Revoke {
        /// The key id (kid_...).
        id: String,
        /// Revoke through the server running at this URL (http://HOST:PORT) with the admin token
        /// (SITEQUEST_ADMIN_TOKEN, else the token file beside --data): exits 0 once every
        /// instance enforces the revocation, 75 when the server saved it but could not share it
        /// yet (run it again), 1 on any other refusal.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
    /// The latest key changes (created, revoked, rotated, allowlist set), newest first, with
    /// who made each: admin_api, cli, presentation (POST /v1/keys/revoke) or
    /// github_secret_scanning.
    Activity,
    /// Find keys (sq_live_ and 64 hex digits) in files and directories (recursively, skipping
    /// .git and binary files), print where each is (shown as sq_live_…last4, never whole) and
    /// whether it is live in the data file, and exit with status 1 if any was found: a
    /// pre-commit hook or a CI step. The data file is only read, unless --revoke.
    Scan {
        /// Files or directories to scan.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Revoke every live key found, in the data file.
        #[arg(long)]
        revoke: bool,
    },
}

/// The sync secret from `--sync-secret-file`, else from `SITEQUEST_SYNC_SECRET`.
fn sync_secret(file: Option<&Path>) -> Result<SyncSecret> {
    let bytes = match file {
        // Private to this server, as the admin token file: with write access to Redis, the
        // secret signs keys of any scope.
        Some(path) => sitequest_demo::token::read_private_file(path, "sync secret")?,
        None => zeroize::Zeroizing::new(
            std::env::var("SITEQUEST_SYNC_SECRET")
                .map(String::into_bytes)
                .map_err(|_| {
                    anyhow::anyhow!(
                        "--redis needs a sync secret: --sync-secret-file PATH or \
                         SITEQUEST_SYNC_SECRET"
                    )
                })?,
        ),
    };
    Ok(SyncSecret::new(&bytes)?)
}

fn parse_policy(s: &str) -> Result<FailurePolicy, String> {
    match s {
        "closed" => Ok(FailurePolicy::FailClosed),
        "open" => Ok(FailurePolicy::FailOpen),
        _ => Err("expected closed or open".to_owned()),
    }
}

fn parse_lifetime(s: &str) -> Result<std::time::Duration, String> {
    sitequest_auth::KeyPolicy::parse_lifetime(s).map_err(|e| e.to_string())
}

fn parse_cap(s: &str) -> Result<usize, String> {
    match s.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n as usize),
        _ => Err(format!("expected a number from 1 to {}", u32::MAX)),
    }
}

fn parse_seconds(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a whole number of seconds, at least 1".to_owned()),
    }
}

fn parse_public_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or("expected http://HOST[:PORT] or https://HOST[:PORT]")?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err(
            "expected a scheme and a host, without a path, as https://keys.example.com".into(),
        );
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    Cidr::parse(s).map_err(|e| e.to_string())
}

fn parse_quota(s: &str) -> Result<Quota, String> {
    Quota::parse(s).map_err(|e| e.to_string())
}

fn parse_tool_limit(s: &str) -> Result<(String, Quota), String> {
    let (tool, quota) = s
        .split_once('=')
        .ok_or_else(|| "expected TOOL=N or TOOL=N/SECONDS, as ssh_exec=10".to_owned())?;
    let op = sitequest_demo::operations::by_tool(tool).ok_or_else(|| {
        let names: Vec<&str> = sitequest_demo::operations::OPERATIONS
            .iter()
            .map(|o| o.tool)
            .collect();
        format!(
            "no tool is named {tool:?}; the tools are {}",
            names.join(", ")
        )
    })?;
    let quota = if quota.contains('/') {
        parse_quota(quota)?
    } else {
        parse_quota(&format!("{quota}/60"))?
    };
    Ok((op.tool.to_owned(), quota))
}

#[tokio::main]
async fn main() -> Result<()> {
    // Log lines go through a queue to a writer thread, so a slow or blocked stderr (a full pipe,
    // a stalled terminal) never stalls request handling; lines are dropped if the queue fills.
    // The guard flushes the queue when main returns.
    let (stderr, _flush_on_exit) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(
            // rmcp logs each MCP session id at info: a bearer of access to that session.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rmcp=warn".into()),
        )
        .with_writer(stderr)
        .init();
    let matches = Cli::command().get_matches();
    let cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    let redis_on_command_line = matches.value_source("redis") == Some(ValueSource::CommandLine);
    if let Some(Command::Keys(cmd)) = cli.command {
        return keys(&cli.data, key_policy(cli.max_key_lifetime), cmd).await;
    }
    // A start-up error (a short admin token, a port in use, a bad file) is one clear line and
    // exit status 2, never a backtrace.
    let demo = match start(cli, redis_on_command_line).await {
        Ok(demo) => demo,
        Err(e) => {
            eprintln!("sitequest-demo: {e:#}");
            std::process::exit(2);
        }
    };
    // Installed before "listening" is printed, so a SIGTERM right after it shuts down cleanly
    // rather than killing the process with the default action.
    let shutdown = shutdown_signal()?;
    if let Some(token) = demo.state().admin.created() {
        announce(format_args!(
            "admin token (shown once, kept in its 0600 file): {token}"
        ));
    }
    let addr = demo.local_addr()?;
    if let Some(metrics) = demo.metrics_addr()? {
        announce(format_args!("metrics and health on http://{metrics}"));
    }
    announce(format_args!(
        "dashboard: http://{addr}/dashboard (sign in with the admin token)"
    ));
    // Last: scripts wait for this line, and may stop reading after it.
    announce(format_args!("listening on http://{addr}"));
    tracing::info!(%addr, "sitequest-demo ready");
    demo.serve(shutdown).await
}

/// The server's configuration from the command line and the environment, bound and loaded.
async fn start(cli: Cli, redis_on_command_line: bool) -> Result<Demo> {
    let mut config = Config::new(cli.listen, cli.data, cli.rate_limit);
    config.metrics_listen = cli.metrics_listen;
    config.key_policy = key_policy(cli.max_key_lifetime);
    config.trusted_proxies = sitequest_auth::TrustedProxies::new(cli.trusted_proxies);
    config.unauthenticated_limit = cli.unauthenticated_limit;
    config.revoke_limit = cli.revoke_limit;
    config.mcp_allowed_hosts = cli.mcp_allowed_hosts;
    for (i, (tool, _)) in cli.mcp_tool_limits.iter().enumerate() {
        if cli.mcp_tool_limits[..i].iter().any(|(t, _)| t == tool) {
            anyhow::bail!("--mcp-tool-limit gives {tool} a quota twice; give each tool one");
        }
    }
    config.mcp_tool_limits = cli.mcp_tool_limits;
    config.public_url = cli.public_url;
    config.mcp_sessions = sitequest_demo::mcp::SessionLimits {
        total: cli.mcp_max_sessions,
        per_key: cli.mcp_max_sessions_per_key,
        ..sitequest_demo::mcp::SessionLimits::DEFAULT
    };
    if let Some(path) = &cli.github_scanning_keys {
        config.github_scanning_keys = Some(read_scanning_keys(path)?);
    }
    config.admin_token = std::env::var("SITEQUEST_ADMIN_TOKEN").ok();
    // Command line, then file, then environment: an explicit flag beats a variable set for the
    // whole service, but two explicit sources are a mistake.
    config.redis = match (cli.redis, cli.redis_url_file) {
        (Some(_), Some(_)) if redis_on_command_line => {
            bail!("give either --redis or --redis-url-file, not both")
        }
        (_, Some(path)) => Some(read_redis_url(&path)?),
        (url, None) => url,
    };
    config.redis_policy = cli.redis_failure;
    config.max_sync_age = Duration::from_secs(cli.max_sync_age);
    if config.redis.is_some() {
        config.sync_secret = Some(sync_secret(cli.sync_secret_file.as_deref())?);
    }
    let mut limits = ConnectionLimits::DEFAULT;
    limits.max_connections = cli.max_connections;
    limits.max_connections_per_ip = cli.max_connections_per_ip;
    limits.first_byte_timeout = Duration::from_secs(cli.first_byte_timeout);
    limits.idle_timeout = Duration::from_secs(cli.idle_timeout);
    limits.response_timeout = Duration::from_secs(cli.response_timeout);
    config.limits = limits;
    raise_file_limit(&limits);
    Demo::bind(config).await
}

/// Prints a start-up line. A closed standard output (a supervisor that stopped reading) must not
/// stop the server, so a failed write is ignored.
fn announce(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Reads `--github-scanning-keys`.
fn read_scanning_keys(path: &Path) -> Result<sitequest_auth_secret_scanning::PartnerKeys> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read GitHub's public keys from {}", path.display()))?;
    sitequest_auth_secret_scanning::PartnerKeys::from_json(&bytes)
        .with_context(|| format!("{} is not GitHub's public keys answer", path.display()))
}

/// Reads `--redis-url-file`. The error names the file, never its contents.
fn read_redis_url(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the Redis URL from {}", path.display()))?;
    let url = text.trim();
    if url.is_empty() {
        bail!("{} is empty: it should hold the Redis URL", path.display());
    }
    Ok(url.to_owned())
}

/// Raises the open-file limit for the connections, and warns when it is still too low for them
/// (each needs a descriptor, and the data file, Redis and the runtime need a few more).
fn raise_file_limit(limits: &ConnectionLimits) {
    const SPARE: u64 = 64;
    match server::raise_open_file_limit() {
        Ok(Some(n)) if n < limits.max_connections as u64 + SPARE => tracing::warn!(
            open_files = n,
            max_connections = limits.max_connections,
            "the open-file limit is below --max-connections: new connections will fail once it \
             is reached; raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower --max-connections"
        ),
        Ok(n) => tracing::debug!(open_files = ?n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

/// Completes on Ctrl-C or SIGTERM. The handlers are registered when this is called, not when
/// the future is first polled.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
}

/// A length of time for people: whole days, else hours, else minutes, else seconds.
fn days(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The key policy of `--max-key-lifetime`.
fn key_policy(max_lifetime: Option<std::time::Duration>) -> sitequest_auth::KeyPolicy {
    match max_lifetime {
        Some(max) => sitequest_auth::KeyPolicy::default().with_max_lifetime(max),
        None => sitequest_auth::KeyPolicy::default(),
    }
}

async fn keys(data: &Path, policy: sitequest_auth::KeyPolicy, cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Scan { paths, revoke } => return scan(data, policy, &paths, revoke).await,
        KeysCommand::Revoke {
            id,
            server: Some(server),
        } => return revoke_through(data, &server, &id).await,
        _ => {}
    }
    let db = Db::open(data)?;
    let now = sitequest_auth_tower::system_clock();
    match cmd {
        KeysCommand::Create {
            name,
            scopes,
            preset,
            expires_at,
            allow_ips,
        } => {
            let scopes = match (scopes, preset) {
                (Some(s), _) => Scopes::parse_list(&s)?,
                (None, Some(p)) => Preset::from_name(&p)?.scopes(),
                (None, None) => bail!("give --scopes or --preset"),
            };
            let mut new = NewKey::new(name, scopes);
            if let Some(t) = expires_at {
                new = new.expires_at(sitequest_auth::UnixTime::from_secs(t));
            }
            if !allow_ips.is_empty() {
                new = new.allowed_ips(IpAllowlist::parse_list(
                    allow_ips.iter().map(String::as_str),
                )?);
            }
            drop(db);
            let (service, handle) = sitequest_demo::offline_keys(data, policy)?;
            let issued = service.create(&new, now, Source::Cli).await;
            handle.close().await?;
            let issued = issued.map_err(|e| match e {
                ChangeError::Invalid(e) => anyhow::Error::new(e),
                e => anyhow::Error::new(e),
            })?;
            out(0, format_args!("id:  {}", issued.record.id()));
            out(0, format_args!("key: {}", &*issued.key.expose_secret()));
        }
        KeysCommand::List { unused_since } => {
            let since = unused_since.map(|d| now - d);
            let revoked_by = db.revoked_by()?;
            for r in db.load()? {
                if since.is_some_and(|t| !r.unused_since(t)) {
                    continue;
                }
                let state = match r.status(now) {
                    sitequest_auth::KeyStatus::Active => "active".to_owned(),
                    sitequest_auth::KeyStatus::Revoked => match revoked_by.get(&r.id()) {
                        Some(by) => format!("revoked by {}", by.replace('_', " ")),
                        None => "revoked".to_owned(),
                    },
                    sitequest_auth::KeyStatus::Expired => "expired".to_owned(),
                };
                let from = if r.allowed_ips.is_empty() {
                    String::new()
                } else {
                    format!("  from {}", r.allowed_ips)
                };
                let last_used = match r.last_used_at {
                    Some(t) => format!("last used {} ago", days(now.secs_since(t))),
                    None => "never used".to_owned(),
                };
                out(
                    0,
                    format_args!(
                        "{}  {:<8} …{}  {}  [{}]  created {} ago, {last_used}{from}",
                        r.id(),
                        state,
                        r.last4,
                        r.name,
                        r.scopes,
                        days(now.secs_since(r.created_at)),
                    ),
                );
            }
        }
        KeysCommand::Revoke { id, server: None } => {
            let id: KeyId = id.parse().context("not a key id")?;
            drop(db);
            let (service, handle) = sitequest_demo::offline_keys(data, policy)?;
            let revoked = service.revoke(id, now, Source::Cli).await;
            handle.close().await?;
            match revoked {
                Ok(_) => {
                    out(0, format_args!("revoked {id}"));
                    eprintln!(
                        "revoked in the data file: a server running on it shares the revocation \
                         within a second, but this command cannot tell when every instance \
                         enforces it; `keys revoke {id} --server URL` waits for that"
                    );
                }
                Err(ChangeError::NotFound) => bail!("no key with id {id}"),
                Err(e) => return Err(e.into()),
            }
        }
        KeysCommand::Activity => {
            for e in db.events()? {
                out(
                    0,
                    format_args!(
                        "{}  {}  {:<17}  by {}",
                        e.at.as_secs(),
                        e.key_id,
                        e.action,
                        e.source
                    ),
                );
            }
        }
        KeysCommand::Scan { .. }
        | KeysCommand::Revoke {
            server: Some(_), ..
        } => {
            unreachable!("handled above")
        }
    }
    Ok(())
}

/// Prints a line on standard output; a closed pipe (as in `keys list | head`) ends the command
/// quietly with status `code` instead of a panic.
fn out(code: i32, line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if writeln!(std::io::stdout().lock(), "{line}").is_err() {
        std::process::exit(code);
    }
}

/// `keys scan`: exits with status 1 when a key was found.
async fn scan(
    data: &Path,
    policy: sitequest_auth::KeyPolicy,
    paths: &[PathBuf],
    revoke: bool,
) -> Result<()> {
    use sitequest_demo::scan;
    for path in paths {
        if !scan::exists(path) {
            bail!("{}: no such file or directory", path.display());
        }
    }
    let result = scan::scan(paths);
    for (path, why) in &result.skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    if result.found.is_empty() {
        eprintln!("no keys found");
        return Ok(());
    }
    // Without a data file there is nothing to look keys up in (and none is created).
    let records = if data.exists() {
        Db::open(data)?.load()?
    } else {
        Vec::new()
    };
    let service = if revoke && data.exists() {
        Some(sitequest_demo::offline_keys(data, policy)?)
    } else {
        None
    };
    let now = sitequest_auth_tower::system_clock();
    let mut live = 0;
    for found in &result.found {
        let digest = found.key.digest();
        let id = digest.id();
        let record = records.iter().find(|r| r.digest == digest);
        let state = match record.map(|r| r.status(now)) {
            Some(sitequest_auth::KeyStatus::Active) => {
                live += 1;
                if revoke {
                    if let Some((service, _)) = &service {
                        service.revoke(id, now, Source::Cli).await?;
                    }
                    format!("LIVE, now revoked ({id})")
                } else {
                    format!("LIVE ({id})")
                }
            }
            Some(sitequest_auth::KeyStatus::Revoked) => format!("revoked ({id})"),
            Some(sitequest_auth::KeyStatus::Expired) => format!("expired ({id})"),
            None => "not in the data file".to_owned(),
        };
        out(
            1,
            format_args!(
                "{}:{}: {}  {state}",
                found.path.display(),
                found.line,
                scan::shown(&found.key)
            ),
        );
    }
    if let Some((_, handle)) = service {
        handle.close().await?;
    }
    eprintln!(
        "found {} key(s), {live} live{}",
        result.found.len(),
        if revoke && live > 0 { ", revoked" } else { "" }
    );
    std::process::exit(1);
}

/// `keys revoke ID --server URL`: the revocation through the running server's admin API, which
/// answers 204 only once every instance enforces it.
async fn revoke_through(data: &Path, server: &str, id: &str) -> Result<()> {
    use http_body_util::BodyExt;
    let id: KeyId = id.parse().context("not a key id")?;
    let token = match std::env::var("SITEQUEST_ADMIN_TOKEN") {
        Ok(t) => zeroize::Zeroizing::new(t),
        Err(_) => {
            let path = sitequest_demo::token_path(data);
            let bytes = sitequest_demo::token::read_private_file(&path, "admin token")?;
            zeroize::Zeroizing::new(
                String::from_utf8(bytes.to_vec()).context("the admin token file is not text")?,
            )
        }
    };
    let authority = server
        .strip_prefix("http://")
        .context("--server must be an http:// URL (the admin API on an address you trust)")?
        .trim_end_matches('/');
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(authority),
    )
    .await
    .with_context(|| format!("cannot reach {server}"))?
    .with_context(|| format!("cannot reach {server}"))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = hyper::Request::delete(format!("/admin/v1/keys/{id}"))
        .header("host", authority)
        .header("authorization", format!("Bearer {}", token.trim()))
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())?;
    let response = tokio::time::timeout(Duration::from_secs(30), send.send_request(request))
        .await
        .context("the server did not answer in 30 s")??;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
    match status.as_u16() {
        204 => {
            out(0, format_args!("revoked {id}: every instance enforces it"));
            Ok(())
        }
        503 => {
            eprintln!("not yet: {message}");
            std::process::exit(75);
        }
        code => bail!("the server refused ({code}): {message}"),
    }
}
