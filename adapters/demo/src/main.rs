//! `sitequest-demo`: the Sitequest API mock guarded by sitequest-auth.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use sitequest_auth::{KeyId, KeyStore, NewKey, Preset, Quota, Scopes};
use sitequest_auth_redis::FailurePolicy;
use sitequest_demo::{db::Db, Config, Demo};

/// A mock of the Sitequest API, guarded by sitequest-auth: API keys, scopes and per-key rate
/// limits, with a key-management admin API. Keys persist in an SQLite file.
///
/// The admin API takes `Authorization: Bearer <token>` with the token from the environment
/// variable SITEQUEST_ADMIN_TOKEN; if it is unset, a token is generated on first start, printed
/// once, and kept (mode 0600) in `<data>.admin-token`.
#[derive(Parser, Debug)]
#[command(name = "sitequest-demo", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// SQLite data file holding the keys (digests and metadata, never plaintext keys).
    #[arg(long, value_name = "PATH", default_value = "./sitequest-demo.db")]
    data: PathBuf,
    /// Requests allowed per key per window, as N/SECONDS.
    #[arg(long, value_name = "N/SECONDS", default_value = "60/60", value_parser = parse_quota)]
    rate_limit: Quota,
    /// Redis URL (redis://host:port/): share rate limits and key changes with every instance
    /// using the same Redis. Without it everything stays in this process.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// With --redis: what to do when Redis cannot be reached. `closed` answers 503; `open`
    /// serves the request without the shared limit.
    #[arg(long, value_name = "closed|open", default_value = "closed", value_parser = parse_policy)]
    redis_failure: FailurePolicy,
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
    },
    /// List keys (no secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key id (kid_...).
        id: String,
    },
}

fn parse_policy(s: &str) -> Result<FailurePolicy, String> {
    match s {
        "closed" => Ok(FailurePolicy::FailClosed),
        "open" => Ok(FailurePolicy::FailOpen),
        _ => Err("expected closed or open".to_owned()),
    }
}

fn parse_quota(s: &str) -> Result<Quota, String> {
    Quota::parse(s).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(Command::Keys(cmd)) = cli.command {
        return keys(&cli.data, cmd);
    }
    let mut config = Config::new(cli.listen, cli.data, cli.rate_limit);
    config.admin_token = std::env::var("SITEQUEST_ADMIN_TOKEN").ok();
    config.redis = cli.redis;
    config.redis_policy = cli.redis_failure;
    let demo = Demo::bind(config).await?;
    if let Some(token) = demo.state().admin.created() {
        println!("admin token (shown once, kept in its 0600 file): {token}");
    }
    let addr = demo.local_addr()?;
    println!("listening on http://{addr}");
    tracing::info!(%addr, "sitequest-demo ready");
    demo.serve(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn keys(data: &std::path::Path, cmd: KeysCommand) -> Result<()> {
    let mut db = Db::open(data)?;
    let now = sitequest_auth_tower::system_clock();
    match cmd {
        KeysCommand::Create {
            name,
            scopes,
            preset,
            expires_at,
        } => {
            let scopes = match (scopes, preset) {
                (Some(s), _) => Scopes::parse_list(&s)?,
                (None, Some(p)) => Preset::from_name(&p)?.scopes(),
                (None, None) => bail!("give --scopes or --preset"),
            };
            let mut new = NewKey::new(name, scopes);
            if let Some(t) = expires_at {
                new = new.expires_at(t);
            }
            let existing = KeyStore::new();
            db.load_into(&existing)?;
            let issued = existing.prepare(&new, now)?;
            db.upsert(&[&issued.record])?;
            println!("id:  {}", issued.record.id());
            println!("key: {}", &*issued.key.expose_secret());
        }
        KeysCommand::List => {
            for r in db.load()? {
                let state = match r.status(now) {
                    sitequest_auth::KeyStatus::Active => "active",
                    sitequest_auth::KeyStatus::Revoked => "revoked",
                    sitequest_auth::KeyStatus::Expired => "expired",
                };
                println!(
                    "{}  {:<8} …{}  {}  [{}]",
                    r.id(),
                    state,
                    r.last4,
                    r.name,
                    r.scopes
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let id: KeyId = id.parse().context("not a key id")?;
            if !db.revoke(id, now)? {
                bail!("no key with id {id}");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}
