//! The Redis limiter against the in-memory one, in the same groups and run: latency of one
//! check, and throughput with 64 checks in flight (the multiplexed connection pipelines them).
//! Needs `redis-server` on PATH: `cargo bench -p sitequest-auth-redis`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::future::join_all;
use sitequest_auth::{KeyId, Quota, RateLimiter, UnixTime};
use sitequest_auth_redis::testing::RedisServer;
use sitequest_auth_redis::{FailurePolicy, RedisLimiter, RedisLimiterConfig};

const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);
const HUGE: Quota = match Quota::new(u32::MAX, 60) {
    Some(q) => q,
    None => panic!(),
};
const IN_FLIGHT: usize = 64;

fn benches(c: &mut Criterion) {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = RedisLimiterConfig {
        prefix: "bench".to_owned(),
        timeout: Duration::from_secs(1),
        policy: FailurePolicy::FailClosed,
        local_precheck: true,
        ..RedisLimiterConfig::default()
    };
    let shared = rt
        .block_on(RedisLimiter::connect(&redis.url(), config))
        .unwrap();
    let local = RateLimiter::new();
    let keys: Vec<KeyId> = (0..1024u64)
        .map(|i| KeyId::from_u64(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();

    let mut g = c.benchmark_group("redis_latency");
    let mut i = 0usize;
    g.bench_function("in_memory", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            local.check(keys[i], HUGE, NOW)
        })
    });
    g.bench_function("redis", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % keys.len();
            shared.check(keys[i], HUGE, NOW)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("redis_throughput");
    g.throughput(Throughput::Elements(IN_FLIGHT as u64));
    g.bench_function("in_memory", |b| {
        b.iter(|| {
            for k in &keys[..IN_FLIGHT] {
                let _ = local.check(*k, HUGE, NOW);
            }
        })
    });
    g.bench_function("redis_64_in_flight", |b| {
        b.to_async(&rt).iter(|| {
            join_all(
                keys[..IN_FLIGHT]
                    .iter()
                    .map(|k| shared.check(*k, HUGE, NOW)),
            )
        })
    });
    g.finish();
}

criterion_group!(redis_benches, benches);
criterion_main!(redis_benches);
