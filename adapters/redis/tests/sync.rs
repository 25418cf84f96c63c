//! Key changes shared through a real `redis-server`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sitequest_auth::{KeyStatus, KeyStore, NewKey, Preset};
use sitequest_auth_redis::testing::RedisServer;
use sitequest_auth_redis::KeySync;

const T0: u64 = 1_800_000_000;

async fn instance(url: &str) -> (Arc<KeyStore>, Arc<KeySync>) {
    let store = Arc::new(KeyStore::new());
    let sync = Arc::new(
        KeySync::connect(url, "sync-test", Duration::from_millis(300))
            .await
            .unwrap(),
    );
    sync.clone().spawn(store.clone(), |_| {});
    (store, sync)
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
    let revoked = a.revoke(id, T0 + 5).unwrap();
    sync_a.publish(&revoked).await.unwrap();
    wait_for("revocation on b", Duration::from_secs(1), || {
        b.get(id).unwrap().status(T0 + 6) == KeyStatus::Revoked
    })
    .await;
    let revoke_time = start.elapsed();
    assert!(issue_time < Duration::from_secs(1) && revoke_time < Duration::from_secs(1));
    println!("propagation: issue {issue_time:?}, revoke {revoke_time:?}");

    // A stale copy published later cannot undo the revocation.
    sync_a.publish(&issued.record).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.get(id).unwrap().revoked_at, Some(T0 + 5));
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
    let revoked = a.revoke(id, T0 + 1).unwrap();
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
