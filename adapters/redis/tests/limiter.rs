//! The Redis limiter against a real `redis-server`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use sitequest_auth::{KeyId, LimitDecision, Quota, RateLimiter, UnixTime};
use sitequest_auth_redis::testing::{FreezingProxy, RedisServer};
use sitequest_auth_redis::{FailurePolicy, RedisLimiter, RedisLimiterConfig};

const T0: UnixTime = UnixTime::from_secs(1_800_000_000);

fn config(prefix: &str, policy: FailurePolicy) -> RedisLimiterConfig {
    RedisLimiterConfig {
        prefix: prefix.to_owned(),
        timeout: Duration::from_millis(300),
        policy,
        local_precheck: true,
        ..RedisLimiterConfig::default()
    }
}

#[tokio::test]
async fn same_decisions_as_the_in_memory_limiter() {
    let redis = RedisServer::start();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for (round, precheck) in [(0, true), (1, false)] {
        let mut cfg = config(&format!("eq{round}"), FailurePolicy::FailClosed);
        cfg.local_precheck = precheck;
        let shared = RedisLimiter::connect(&redis.url(), cfg).await.unwrap();
        let local = RateLimiter::new();
        let quotas = [
            Quota::new(3, 10).unwrap(),
            Quota::new(5, 60).unwrap(),
            Quota::new(1, 1).unwrap(),
        ];
        let mut now = T0;
        for _ in 0..1500 {
            now = now.plus_secs(rng.gen_range(0..4));
            let k: u64 = rng.gen_range(0..6);
            let key = KeyId::from_u64(k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let quota = quotas[(k % 3) as usize];
            let want = local.check(key, quota, now);
            let got = shared.check(key, quota, now).await.unwrap();
            assert_eq!(got, want, "key {k} at {now}");
        }
        let stats = shared.stats();
        assert!(stats.redis_checks > 0);
        assert_eq!(stats.local_refusals > 0, precheck);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_many_tasks_one_key_never_exceed_the_limit() {
    let redis = RedisServer::start();
    let a = Arc::new(
        RedisLimiter::connect(&redis.url(), config("pair", FailurePolicy::FailClosed))
            .await
            .unwrap(),
    );
    let b = Arc::new(
        RedisLimiter::connect(&redis.url(), config("pair", FailurePolicy::FailClosed))
            .await
            .unwrap(),
    );
    let key = KeyId::from_u64(7);
    let quota = Quota::SPEC;
    for window in 0..2u64 {
        let now = T0.plus_secs(window * 60 + 5);
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(
                    async move { limiter.check(key, quota, now).await.unwrap().is_allowed() },
                )
            })
            .collect();
        let mut allowed = 0;
        for t in tasks {
            allowed += u32::from(t.await.unwrap());
        }
        assert_eq!(allowed, 60, "window {window}");
    }
}

#[tokio::test]
async fn outage_fail_closed_then_recovery() {
    let mut redis = RedisServer::start();
    let limiter = RedisLimiter::connect(&redis.url(), config("outage", FailurePolicy::FailClosed))
        .await
        .unwrap();
    let key = KeyId::from_u64(1);
    assert!(limiter
        .check(key, Quota::SPEC, T0)
        .await
        .unwrap()
        .is_allowed());
    redis.stop();
    for _ in 0..3 {
        let start = Instant::now();
        let r = limiter.check(key, Quota::SPEC, T0.plus_secs(1)).await;
        assert!(r.is_err(), "{r:?}");
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
    }
    assert!(limiter.stats().fail_closed >= 3);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(d) = limiter.check(key, Quota::SPEC, T0.plus_secs(2)).await {
            // A fresh server: the window starts over.
            assert!(d.is_allowed());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn outage_fail_open_serves_and_counts() {
    let mut redis = RedisServer::start();
    let limiter = RedisLimiter::connect(&redis.url(), config("open", FailurePolicy::FailOpen))
        .await
        .unwrap();
    let key = KeyId::from_u64(2);
    let q = Quota::new(2, 60).unwrap();
    redis.stop();
    // Without Redis the per-process limit applies: 2 served, then refused.
    for expect_allowed in [true, true, false, false] {
        let start = Instant::now();
        let d = limiter.check(key, q, T0).await.unwrap();
        assert_eq!(matches!(d, LimitDecision::Allowed(_)), expect_allowed);
        assert!(start.elapsed() < Duration::from_millis(1500));
    }
    assert_eq!(limiter.stats().fail_open, 4);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while limiter.stats().redis_checks == 0 {
        let _ = limiter.check(key, q, T0.plus_secs(1)).await;
        assert!(
            Instant::now() < deadline,
            "did not recover after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn counters_are_named_by_prefix_id_and_window_and_expire() {
    let redis = RedisServer::start();
    let limiter = RedisLimiter::connect(&redis.url(), config("names", FailurePolicy::FailClosed))
        .await
        .unwrap();
    let key = KeyId::from_u64(0xab);
    let _ = limiter
        .check(key, Quota::SPEC, T0.plus_secs(30))
        .await
        .unwrap();
    let name = limiter.counter_key(key, T0.as_secs() / 60);
    assert_eq!(
        name,
        format!("names:kid_00000000000000ab:{}", T0.as_secs() / 60)
    );
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let count: u64 = redis::cmd("GET")
        .arg(&name)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&name)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((30..=35).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn a_clock_corrected_back_by_more_than_a_window_does_not_freeze_the_quota() {
    let redis = RedisServer::start();
    let limiter = RedisLimiter::connect(&redis.url(), config("step", FailurePolicy::FailClosed))
        .await
        .unwrap();
    let key = KeyId::from_u64(99);
    let q = Quota::SPEC;
    assert!(limiter
        .check(key, q, T0.plus_secs(3600))
        .await
        .unwrap()
        .is_allowed());
    for i in 0..60 {
        let d = limiter.check(key, q, T0.plus_secs(1)).await.unwrap();
        assert!(d.is_allowed(), "request {i} after the correction");
        assert_eq!(d.rate_limit().reset_at, T0.plus_secs(60));
    }
    assert!(!limiter
        .check(key, q, T0.plus_secs(2))
        .await
        .unwrap()
        .is_allowed());
    // A small step back is held to the latest time: nothing extra.
    assert!(!limiter.check(key, q, T0).await.unwrap().is_allowed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_connection_is_replaced() {
    let redis = RedisServer::start();
    let proxy = FreezingProxy::start(redis.port).await;
    let mut cfg = config("frozen", FailurePolicy::FailClosed);
    cfg.health_interval = Duration::from_millis(200);
    let limiter = RedisLimiter::connect(&proxy.url(), cfg).await.unwrap();
    let key = KeyId::from_u64(5);
    assert!(limiter
        .check(key, Quota::SPEC, T0)
        .await
        .unwrap()
        .is_allowed());
    proxy.freeze();
    assert!(limiter.check(key, Quota::SPEC, T0).await.is_err());
    let start = std::time::Instant::now();
    loop {
        if let Ok(d) = limiter.check(key, Quota::SPEC, T0).await {
            assert_eq!(d.rate_limit().remaining, 58);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the stalled connection was never replaced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(limiter.stats().reconnects >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_staleness_bound_fail_closed_refuses_and_fail_open_serves() {
    use sitequest_auth_redis::{KeySync, KeySyncConfig, SyncSecret};
    let redis = RedisServer::start();
    let proxy = FreezingProxy::start(redis.port).await;
    let secret = || SyncSecret::new(b"limiter-test-secret-0123456789abcdef").unwrap();
    let mut sync_config = KeySyncConfig::new(secret());
    sync_config.health_interval = Duration::from_millis(200);
    // The sync goes through the proxy; the limiters do not, so only the sync stalls.
    let sync = std::sync::Arc::new(KeySync::connect(&proxy.url(), sync_config).await.unwrap());
    sync.clone()
        .spawn(std::sync::Arc::new(sitequest_auth::KeyStore::new()), |_| {});
    let bound = Duration::from_millis(600);
    let closed = RedisLimiter::connect(&redis.url(), config("st-c", FailurePolicy::FailClosed))
        .await
        .unwrap()
        .guard_with(sync.clone(), bound);
    let open = RedisLimiter::connect(&redis.url(), config("st-o", FailurePolicy::FailOpen))
        .await
        .unwrap()
        .guard_with(sync.clone(), bound);
    let key = KeyId::from_u64(6);
    let start = std::time::Instant::now();
    while !sync.is_in_sync(bound) {
        assert!(start.elapsed() < Duration::from_secs(5), "never in sync");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed.check(key, Quota::SPEC, T0).await.is_ok());
    // Hold the proxy frozen and stop the sync from healing: freeze every new connection too.
    let refreeze = {
        let proxy = std::sync::Arc::new(proxy);
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                p.freeze();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let start = std::time::Instant::now();
    while sync.is_in_sync(bound) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the stall was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = closed.check(key, Quota::SPEC, T0).await.unwrap_err();
    assert!(e.to_string().contains("not confirmed in sync"), "{e}");
    assert_eq!(closed.stats().stale_refusals, 1);
    assert!(open.check(key, Quota::SPEC, T0).await.unwrap().is_allowed());
    refreeze.abort();
}

#[tokio::test]
async fn a_correction_for_short_windows_does_not_move_the_clock_of_long_ones() {
    let redis = RedisServer::start();
    let limiter = RedisLimiter::connect(&redis.url(), config("mixed", FailurePolicy::FailClosed))
        .await
        .unwrap();
    let minute = KeyId::from_u64(61);
    let second = KeyId::from_u64(62);
    let t = T0.plus_secs(10);
    for _ in 0..60 {
        assert!(limiter
            .check(minute, Quota::SPEC, t)
            .await
            .unwrap()
            .is_allowed());
    }
    // 25 s back: a correction for a key with 1 s windows, a small step back for a minute.
    let one_per_second = Quota::new(1, 1).unwrap();
    assert!(limiter
        .check(second, one_per_second, t.minus_secs(25))
        .await
        .unwrap()
        .is_allowed());
    let d = limiter
        .check(minute, Quota::SPEC, t.minus_secs(25))
        .await
        .unwrap();
    assert!(!d.is_allowed(), "{d:?}");
    assert_eq!(d.rate_limit().reset_at, T0.plus_secs(60));
}
