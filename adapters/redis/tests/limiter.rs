//! The Redis limiter against a real `redis-server`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use sitequest_auth::{KeyId, LimitDecision, Quota, RateLimiter};
use sitequest_auth_redis::testing::RedisServer;
use sitequest_auth_redis::{FailurePolicy, RedisLimiter, RedisLimiterConfig};

const T0: u64 = 1_800_000_000;

fn config(prefix: &str, policy: FailurePolicy) -> RedisLimiterConfig {
    RedisLimiterConfig {
        prefix: prefix.to_owned(),
        timeout: Duration::from_millis(300),
        policy,
        local_precheck: true,
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
            now += rng.gen_range(0..4);
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
        let now = T0 + window * 60 + 5;
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
        let r = limiter.check(key, Quota::SPEC, T0 + 1).await;
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
        if let Ok(d) = limiter.check(key, Quota::SPEC, T0 + 2).await {
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
        let _ = limiter.check(key, q, T0 + 1).await;
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
    let _ = limiter.check(key, Quota::SPEC, T0 + 30).await.unwrap();
    let name = limiter.counter_key(key, T0 / 60);
    assert_eq!(name, format!("names:kid_00000000000000ab:{}", T0 / 60));
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
