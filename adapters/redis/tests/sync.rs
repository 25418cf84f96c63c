//! Key changes shared through a real `redis-server`.

use std::sync::Arc;

use rand::SeedableRng;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use sitequest_auth::{KeyStatus, KeyStore, NewKey, Preset, Scopes, UnixTime};
use sitequest_auth_redis::testing::{FreezingProxy, RedisServer};
use sitequest_auth_redis::{KeyChange, KeySync, KeySyncConfig, SyncSecret};

const T0: UnixTime = UnixTime::from_secs(1_800_000_000);
const SECRET: &[u8] = b"sync-test-secret-0123456789abcdef0123";

fn config(secret: &[u8]) -> KeySyncConfig {
    let mut config = KeySyncConfig::new(SyncSecret::new(secret).unwrap());
    config.prefix = "sync-test".to_owned();
    config.timeout = Duration::from_millis(300);
    config.health_interval = Duration::from_millis(250);
    config
}

async fn instance(url: &str) -> (Arc<KeyStore>, Arc<KeySync>) {
    instance_with(url, config(SECRET), Arc::new(KeyStore::new())).await
}

async fn instance_with(
    url: &str,
    config: KeySyncConfig,
    store: Arc<KeyStore>,
) -> (Arc<KeyStore>, Arc<KeySync>) {
    let sync = Arc::new(KeySync::connect(url, config).await.unwrap());
    sync.clone().spawn(store.clone(), |_| {});
    (store, sync)
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_and_revoke_propagate_within_a_second() {
    let redis = RedisServer::start();
    let (a, sync_a) = instance(&redis.url()).await;
    let (b, _sync_b) = instance(&redis.url()).await;
    // Let both subscribe.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let issued = a.issue(&NewKey::new("shared", Preset::Full), T0).unwrap();
    let id = issued.record.id();
    // Propagation is timed from the start of the publishing call to the change on b.
    let start = Instant::now();
    sync_a.publish(&issued.record).await.unwrap();
    wait_for("issue on b", Duration::from_secs(1), || b.get(id).is_some()).await;
    let issue_time = start.elapsed();
    assert_eq!(b.get(id).unwrap().digest, issued.record.digest);

    let start = Instant::now();
    let revoked = a.revoke(id, T0.plus_secs(5)).unwrap();
    sync_a.publish(&revoked).await.unwrap();
    wait_for("revocation on b", Duration::from_secs(1), || {
        b.get(id).unwrap().status(T0.plus_secs(6)) == KeyStatus::Revoked
    })
    .await;
    let revoke_time = start.elapsed();
    assert!(issue_time < Duration::from_secs(1) && revoke_time < Duration::from_secs(1));
    println!("propagation: issue {issue_time:?}, revoke {revoke_time:?}");

    // A stale copy published later cannot undo the revocation.
    sync_a.publish(&issued.record).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.get(id).unwrap().revoked_at, Some(T0.plus_secs(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_during_an_outage_reaches_the_others_after_it() {
    let mut redis = RedisServer::start();
    let (a, sync_a) = instance(&redis.url()).await;
    let (b, _sync_b) = instance(&redis.url()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let issued = a.issue(&NewKey::new("k", Preset::ReadOnly), T0).unwrap();
    let id = issued.record.id();
    sync_a.publish(&issued.record).await.unwrap();
    wait_for("issue on b", Duration::from_secs(1), || b.get(id).is_some()).await;

    redis.stop();
    let revoked = a.revoke(id, T0.plus_secs(1)).unwrap();
    assert!(sync_a.publish(&revoked).await.is_err());
    redis.restart();
    // On reconnection a pushes what it knows; b pulls it.
    wait_for(
        "revocation on b after the outage",
        Duration::from_secs(10),
        || b.get(id).unwrap().revoked_at.is_some(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_tampered_entries_change_nothing() {
    let redis = RedisServer::start();
    let (a, sync_a) = instance(&redis.url()).await;
    let (b, sync_b) = instance(&redis.url()).await;
    wait_for("both in sync", Duration::from_secs(5), || {
        sync_a.is_in_sync(Duration::from_secs(1)) && sync_b.is_in_sync(Duration::from_secs(1))
    })
    .await;
    let issued = a.issue(&NewKey::new("ro", Preset::ReadOnly), T0).unwrap();
    let id = issued.record.id();
    sync_a.publish(&issued.record).await.unwrap();
    wait_for("issue on b", Duration::from_secs(1), || b.get(id).is_some()).await;
    let mut conn = redis_conn(&redis.url()).await;
    let signed: String = conn
        .hget("sync-test:records", id.to_string())
        .await
        .unwrap();

    // Tampered: the genuine entry with its scopes raised and its signature kept.
    let tampered = signed.replace(
        r#""scopes":["vps:read","domains:read"]"#,
        r#""scopes":["vps:read","vps:write","vps:manage","domains:read","domains:write","domains:manage"]"#,
    );
    assert_ne!(tampered, signed, "the test must change the scopes");
    // Forged: a key whose plaintext the attacker chose, with a made-up signature, and one
    // signed with another secret.
    let mine = NewKey::new("attacker", Preset::Full).generate(T0).unwrap();
    let other = KeySync::connect(&redis.url(), config(b"not-the-secret-0123456789abcdef0123"))
        .await
        .unwrap();
    let forged_unsigned = format!(
        "{}.{}",
        "0".repeat(64),
        &other.signed_entry(&mine.record).unwrap()[65..]
    );
    let forged_other_secret = other.signed_entry(&mine.record).unwrap();
    for raw in [&tampered, &forged_unsigned, &forged_other_secret] {
        let () = conn.publish("sync-test:changes", raw).await.unwrap();
    }
    let () = conn
        .hset("sync-test:records", id.to_string(), &tampered)
        .await
        .unwrap();
    let () = conn
        .hset(
            "sync-test:records",
            mine.record.id().to_string(),
            &forged_other_secret,
        )
        .await
        .unwrap();
    wait_for(
        "the rejections to be counted",
        Duration::from_secs(2),
        || sync_b.stats().rejected_signature >= 3,
    )
    .await;
    // A resync reads the hash too (a new instance does one at once).
    let (c, sync_c) = instance(&redis.url()).await;
    wait_for("c in sync", Duration::from_secs(5), || {
        sync_c.is_in_sync(Duration::from_secs(1))
    })
    .await;
    assert!(
        sync_c.stats().rejected_signature >= 2,
        "{:?}",
        sync_c.stats()
    );
    for store in [&a, &b, &c] {
        assert!(
            store.get(mine.record.id()).is_none(),
            "a forged key was created"
        );
    }
    for store in [&a, &b] {
        assert_eq!(store.get(id).unwrap().scopes, Scopes::READ_ONLY);
    }
    // c never got a valid copy of the key: the hash holds only the tampered one.
    assert!(c.get(id).is_none());
    // A genuine publish replaces the tampered entry.
    sync_a.publish(&issued.record).await.unwrap();
    wait_for("the genuine key on c", Duration::from_secs(1), || {
        c.get(id).is_some_and(|r| r.scopes == Scopes::READ_ONLY)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_change_to_a_keys_fixed_part_is_refused() {
    let redis = RedisServer::start();
    let (a, sync_a) = instance(&redis.url()).await;
    let (b, _sync_b) = instance(&redis.url()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let issued = a.issue(&NewKey::new("ro", Preset::ReadOnly), T0).unwrap();
    let id = issued.record.id();
    sync_a.publish(&issued.record).await.unwrap();
    wait_for("issue on b", Duration::from_secs(1), || b.get(id).is_some()).await;
    let mut wider = issued.record.clone();
    wider.scopes = Scopes::FULL;
    wider.name = "renamed".into();
    assert!(sync_a.publish(&wider).await.is_err());
    assert_eq!(sync_a.pending(), 0, "a refused change is not retried");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let on_b = b.get(id).unwrap();
    assert_eq!((on_b.scopes, on_b.name.as_str()), (Scopes::READ_ONLY, "ro"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_is_a_tombstone_that_resyncs_respect() {
    let redis = RedisServer::start();
    let changes = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (a, sync_a) = instance(&redis.url()).await;
    let b = Arc::new(KeyStore::new());
    let sync_b = Arc::new(
        KeySync::connect(&redis.url(), config(SECRET))
            .await
            .unwrap(),
    );
    let seen = changes.clone();
    sync_b
        .clone()
        .spawn(b.clone(), move |batch| seen.lock().extend(batch));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let issued = a.issue(&NewKey::new("gone", Preset::Full), T0).unwrap();
    let id = issued.record.id();
    sync_a.publish(&issued.record).await.unwrap();
    wait_for("issue on b", Duration::from_secs(1), || b.get(id).is_some()).await;

    a.remove(id);
    sync_a.publish_removal(id, T0.plus_secs(5)).await.unwrap();
    wait_for("removal on b", Duration::from_secs(1), || {
        b.get(id).is_none()
    })
    .await;
    assert!(changes.lock().contains(&KeyChange::Removed {
        id,
        removed_at: T0.plus_secs(5)
    }));

    // An instance that was away still has the record: its resync must not bring it back, and
    // it removes the key itself.
    let stale = Arc::new(KeyStore::new());
    stale.insert(issued.record.clone()).unwrap();
    let (stale, sync_stale) = instance_with(&redis.url(), config(SECRET), stale).await;
    wait_for(
        "removal on the returning instance",
        Duration::from_secs(5),
        || stale.get(id).is_none() && sync_stale.is_in_sync(Duration::from_secs(1)),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(b.get(id).is_none() && a.get(id).is_none());
    // A genuine, signed record of the removed key published again is refused too.
    assert!(sync_stale.publish(&issued.record).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_link_is_replaced_and_a_revocation_arrives_within_the_bound() {
    let redis = RedisServer::start();
    let proxy = FreezingProxy::start(redis.port).await;
    let (a, sync_a) = instance(&proxy.url()).await;
    let (b, sync_b) = instance(&redis.url()).await;
    wait_for("both in sync", Duration::from_secs(5), || {
        sync_a.is_in_sync(Duration::from_secs(1)) && sync_b.is_in_sync(Duration::from_secs(1))
    })
    .await;
    let issued = b.issue(&NewKey::new("k", Preset::Full), T0).unwrap();
    let id = issued.record.id();
    sync_b.publish(&issued.record).await.unwrap();
    wait_for("issue on a", Duration::from_secs(1), || a.get(id).is_some()).await;

    // Every connection a has is now frozen: open, silent. New connections work.
    proxy.freeze();
    let revoked = b.revoke(id, T0.plus_secs(1)).unwrap();
    sync_b.publish(&revoked).await.unwrap();
    let took = wait_for("the revocation on a", Duration::from_secs(10), || {
        a.get(id).unwrap().revoked_at.is_some()
    })
    .await;
    println!("revocation reached the frozen instance after {took:?}");
    assert!(sync_a.stats().reconnects >= 1, "{:?}", sync_a.stats());
    wait_for("a confirmed in sync again", Duration::from_secs(5), || {
        sync_a.is_in_sync(Duration::from_millis(500))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_records_resync_in_under_five_seconds() {
    const N: usize = 200_000;
    let redis = RedisServer::start();
    let (a, sync_a) = instance(&redis.url()).await;
    // Fill the hash as a bulk import would, with signed entries.
    let mut conn = redis_conn(&redis.url()).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let template = NewKey::new("bulk", Preset::ReadOnly);
    for chunk in 0..N / 10_000 {
        let mut pipe = redis::pipe();
        for _ in 0..10_000 {
            let record = template.generate_with(&mut rng, T0).unwrap().record;
            pipe.hset(
                sync_a.hash_name(),
                record.id().to_string(),
                sync_a.signed_entry(&record).unwrap(),
            )
            .ignore();
        }
        let () = pipe.query_async(&mut conn).await.unwrap();
        let _ = chunk;
    }

    let b = Arc::new(KeyStore::new());
    let started = Instant::now();
    let (b, sync_b) = instance_with(&redis.url(), config(SECRET), b).await;
    // A change made while b resynchronizes reaches it within a second.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let issued = a.issue(&NewKey::new("during", Preset::Full), T0).unwrap();
    let id = issued.record.id();
    let sent = Instant::now();
    sync_a.publish(&issued.record).await.unwrap();
    let during = wait_for("a change during the resync", Duration::from_secs(1), || {
        b.get(id).is_some()
    })
    .await;
    let resync = wait_for("the resync", Duration::from_secs(5), || {
        sync_b.stats().resyncs >= 1
    })
    .await;
    let total = started.elapsed();
    assert!(b.len() > N, "{} keys", b.len());
    assert!(sent.elapsed() < Duration::from_secs(5));
    println!(
        "{N} records: resync done {total:?} after start ({} ms measured), change during it {during:?}",
        sync_b.stats().last_resync_ms
    );
    assert!(total < Duration::from_secs(5), "{total:?}");
    let _ = resync;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_keys_are_pruned_after_the_retention_and_tombstones_stay() {
    let redis = RedisServer::start();
    let now = UnixTime::from_system_time(std::time::SystemTime::now());
    let day = 24 * 3600;
    let store = Arc::new(KeyStore::new());
    let old = NewKey::new("old", Preset::Full)
        .generate(now.minus_secs(50 * day))
        .unwrap()
        .record;
    let recent = NewKey::new("recent", Preset::Full)
        .generate(now.minus_secs(50 * day))
        .unwrap()
        .record;
    let live = NewKey::new("live", Preset::Full)
        .generate(now.minus_secs(50 * day))
        .unwrap()
        .record;
    for r in [&old, &recent, &live] {
        store.insert(r.clone()).unwrap();
    }
    store.revoke(old.id(), now.minus_secs(31 * day)).unwrap();
    store.revoke(recent.id(), now.minus_secs(day)).unwrap();
    let removed = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sync = Arc::new(
        KeySync::connect(&redis.url(), config(SECRET))
            .await
            .unwrap(),
    );
    let seen = removed.clone();
    sync.clone().spawn(store.clone(), move |batch| {
        seen.lock()
            .extend(batch.into_iter().filter_map(|c| match c {
                KeyChange::Removed { id, .. } => Some(id),
                _ => None,
            }))
    });
    wait_for("the old key pruned", Duration::from_secs(5), || {
        store.get(old.id()).is_none()
    })
    .await;
    assert_eq!(*removed.lock(), vec![old.id()]);
    assert!(store.get(recent.id()).is_some() && store.get(live.id()).is_some());
    let mut conn = redis_conn(&redis.url()).await;
    let entry: String = conn
        .hget("sync-test:records", old.id().to_string())
        .await
        .unwrap();
    assert!(entry[65..].starts_with(r#"{"kind":"removed""#), "{entry}");
    // Another instance that still has the old record does not bring it back.
    let other = Arc::new(KeyStore::new());
    other.insert(old.clone()).unwrap();
    let (other, sync_other) = instance_with(&redis.url(), config(SECRET), other).await;
    wait_for(
        "the returning instance in sync",
        Duration::from_secs(5),
        || sync_other.is_in_sync(Duration::from_secs(1)) && other.get(old.id()).is_none(),
    )
    .await;
    assert!(other.get(recent.id()).is_some());
}

/// The README's ACL line, as an operator would paste it.
fn readme_acl() -> Vec<String> {
    let readme = include_str!("../../../README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("ACL SETUSER sitequest "))
        .expect("the README gives the ACL");
    line.split_whitespace().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_acl_is_enough_for_an_instance_and_no_more() {
    use sitequest_auth::{KeyId, Quota};
    use sitequest_auth_redis::{RedisLimiter, RedisLimiterConfig};
    let redis = RedisServer::start();
    let mut admin = redis_conn(&redis.url()).await;
    let mut acl = redis::cmd(&readme_acl()[0]);
    for arg in &readme_acl()[1..] {
        acl.arg(arg);
    }
    let () = acl.query_async(&mut admin).await.unwrap();
    let url = format!("redis://sitequest:CHANGE-ME@127.0.0.1:{}/", redis.port);

    // Everything an instance does works under that user.
    let limiter = RedisLimiter::connect(&url, RedisLimiterConfig::default())
        .await
        .unwrap();
    let d = limiter
        .check(KeyId::from_u64(1), Quota::SPEC, T0)
        .await
        .unwrap();
    assert_eq!(d.rate_limit().remaining, 59);
    // The default names, which the ACL is written for.
    let default_names = || {
        let mut c = config(SECRET);
        c.prefix = KeySyncConfig::new(SyncSecret::new(SECRET).unwrap()).prefix;
        c
    };
    let (a, sync_a) = instance_with(&url, default_names(), Arc::new(KeyStore::new())).await;
    let (b, sync_b) = instance_with(&url, default_names(), Arc::new(KeyStore::new())).await;
    wait_for("both in sync", Duration::from_secs(5), || {
        sync_a.is_in_sync(Duration::from_secs(1)) && sync_b.is_in_sync(Duration::from_secs(1))
    })
    .await;
    let issued = a.issue(&NewKey::new("acl", Preset::Full), T0).unwrap();
    sync_a.publish(&issued.record).await.unwrap();
    wait_for("the key on b", Duration::from_secs(1), || {
        b.get(issued.record.id()).is_some()
    })
    .await;

    // And nothing else: other keys, other commands.
    let mut user = redis_conn(&url).await;
    let e = redis::cmd("SET")
        .arg("other:key")
        .arg("x")
        .query_async::<()>(&mut user)
        .await
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("noperm"), "{e}");
    let e = redis::cmd("FLUSHALL")
        .query_async::<()>(&mut user)
        .await
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("noperm"), "{e}");
    let e = redis::cmd("DEL")
        .arg("sitequest:keys:records")
        .query_async::<()>(&mut user)
        .await
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("noperm"), "{e}");
}

/// A config that resyncs every `every`, for the tests of what a resync repairs.
fn resyncing(every: Duration) -> KeySyncConfig {
    let mut c = config(SECRET);
    c.resync_interval = every;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_over_a_revoked_key_is_repaired_by_the_instance_that_knows() {
    let redis = RedisServer::start();
    let (a, sync_a) = instance_with(
        &redis.url(),
        resyncing(Duration::from_millis(500)),
        Arc::new(KeyStore::new()),
    )
    .await;
    let issued = a.issue(&NewKey::new("k", Preset::Full), T0).unwrap();
    let id = issued.record.id();
    sync_a.publish(&issued.record).await.unwrap();
    let revoked = a.revoke(id, T0.plus_secs(1)).unwrap();
    sync_a.publish(&revoked).await.unwrap();
    // Garbage over the revoked record; then an instance returns that still has the key active.
    let mut conn = redis_conn(&redis.url()).await;
    let () = conn
        .hset("sync-test:records", id.to_string(), "garbage")
        .await
        .unwrap();
    let stale = Arc::new(KeyStore::new());
    stale.insert(issued.record.clone()).unwrap();
    let (b, _sync_b) = instance_with(&redis.url(), config(SECRET), stale).await;
    wait_for(
        "the revocation on the returning instance",
        Duration::from_secs(5),
        || b.get(id).unwrap().revoked_at == Some(T0.plus_secs(1)),
    )
    .await;
    let entry: String = conn
        .hget("sync-test:records", id.to_string())
        .await
        .unwrap();
    assert!(entry.contains(r#""revoked_at":1800000001"#), "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_record_cannot_revive_a_removed_key() {
    let redis = RedisServer::start();
    let (a, sync_a) = instance(&redis.url()).await;
    let issued = a.issue(&NewKey::new("gone", Preset::Full), T0).unwrap();
    let id = issued.record.id();
    sync_a.publish(&issued.record).await.unwrap();
    let mut conn = redis_conn(&redis.url()).await;
    let genuine: String = conn
        .hget("sync-test:records", id.to_string())
        .await
        .unwrap();
    a.remove(id);
    sync_a.publish_removal(id, T0.plus_secs(5)).await.unwrap();
    // The attacker puts the old, genuinely signed record back over the tombstone.
    let () = conn
        .hset("sync-test:records", id.to_string(), &genuine)
        .await
        .unwrap();

    // An instance that kept the tombstone (its host gives it back at start) ignores the
    // record and puts the tombstone back.
    let keeper = KeySync::connect(&redis.url(), resyncing(Duration::from_millis(500)))
        .await
        .unwrap();
    keeper.remember_removed([(id, T0.plus_secs(5))]);
    let keeper = Arc::new(keeper);
    let kept = Arc::new(KeyStore::new());
    keeper.clone().spawn(kept.clone(), |_| {});
    wait_for(
        "the tombstone back in the hash",
        Duration::from_secs(5),
        || kept.get(id).is_none() && keeper.pending() == 0 && keeper.stats().resyncs >= 1,
    )
    .await;
    let entry: String = conn
        .hget("sync-test:records", id.to_string())
        .await
        .unwrap();
    assert!(entry[65..].starts_with(r#"{"kind":"removed""#), "{entry}");
    assert!(kept.get(id).is_none());
    // A new instance with no memory of the key no longer finds it.
    let (fresh, sync_fresh) = instance(&redis.url()).await;
    wait_for("the fresh instance in sync", Duration::from_secs(5), || {
        sync_fresh.is_in_sync(Duration::from_secs(1))
    })
    .await;
    assert!(fresh.get(id).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_backlog_is_published_without_losing_sync() {
    const N: usize = 20_000;
    let redis = RedisServer::start();
    let store = Arc::new(KeyStore::new());
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let template = NewKey::new("local", Preset::ReadOnly);
    for _ in 0..N {
        store
            .insert(template.generate_with(&mut rng, T0).unwrap().record)
            .unwrap();
    }
    // A new instance whose keys are not in the hash: all of them are queued at its resync.
    let (_store, sync) = instance_with(&redis.url(), config(SECRET), store).await;
    wait_for("in sync", Duration::from_secs(5), || {
        sync.is_in_sync(Duration::from_secs(1))
    })
    .await;
    let mut conn = redis_conn(&redis.url()).await;
    let started = Instant::now();
    loop {
        // Pings and confirmations go on while the backlog drains.
        assert!(
            sync.is_in_sync(Duration::from_millis(800)),
            "sync lost while publishing: {:?}",
            sync.sync_age()
        );
        let n: usize = conn.hlen("sync-test:records").await.unwrap();
        if n == N {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{n} of {N} published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{N} keys published in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_use_alone_is_not_republished_at_a_resync() {
    let redis = RedisServer::start();
    let (a, sync_a) = instance(&redis.url()).await;
    let issued = a.issue(&NewKey::new("used", Preset::Full), T0).unwrap();
    let id = issued.record.id();
    sync_a.publish(&issued.record).await.unwrap();
    let mut conn = redis_conn(&redis.url()).await;
    let before: String = conn
        .hget("sync-test:records", id.to_string())
        .await
        .unwrap();
    // b has used the key since; its resyncs leave the shared entry alone.
    let mut used = issued.record.clone();
    used.last_used_at = Some(T0.plus_secs(30));
    let b_store = Arc::new(KeyStore::new());
    b_store.insert(used).unwrap();
    let (_b, sync_b) =
        instance_with(&redis.url(), resyncing(Duration::from_millis(200)), b_store).await;
    wait_for("three resyncs", Duration::from_secs(5), || {
        sync_b.stats().resyncs >= 3
    })
    .await;
    assert_eq!(sync_b.pending(), 0);
    let after: String = conn
        .hget("sync-test:records", id.to_string())
        .await
        .unwrap();
    assert_eq!(after, before);
}
