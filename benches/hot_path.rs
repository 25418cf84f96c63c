//! The hot path measured against its unavoidable cost and against its peers, in the same groups
//! and the same run. `bash benches/report.sh` runs this and prints the ratio table.

use std::collections::HashMap;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parking_lot::Mutex;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use sitequest_auth::{
    parse_bearer, AuthRequest, Authorizer, KeyId, KeyStore, NewKey, Quota, RateLimiter, Scopes,
    UnixTime,
};

/// A fixed time at the start of a window, so the benches never cross a window boundary.
const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);
/// A quota no bench can exhaust: the benches measure the grant path.
const HUGE: Quota = match Quota::new(u32::MAX, 60) {
    Some(q) => q,
    None => panic!(),
};
const HEADER_LEN: usize = 7 + 72;

/// A store of `n` keys and their `Authorization` header values, back to back in one buffer.
struct Keys {
    auth: Authorizer,
    headers: Vec<u8>,
    order: Vec<u32>,
}

impl Keys {
    fn new(n: usize, seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let store = Arc::new(KeyStore::with_capacity(n));
        let mut headers = Vec::with_capacity(n * HEADER_LEN);
        let new = NewKey::new("bench", Scopes::FULL);
        for _ in 0..n {
            let issued = new.generate_with(&mut rng, NOW).unwrap();
            if store.insert(issued.record).is_err() {
                continue;
            }
            headers.extend_from_slice(b"Bearer ");
            headers.extend_from_slice(issued.key.expose_secret().as_bytes());
        }
        let count = headers.len() / HEADER_LEN;
        let mut order: Vec<u32> = (0..count as u32).collect();
        order.shuffle(&mut rng);
        let auth = Authorizer::new(store).with_quota(HUGE);
        Self {
            auth,
            headers,
            order,
        }
    }

    fn header(&self, i: usize) -> &[u8] {
        let k = self.order[i % self.order.len()] as usize;
        &self.headers[k * HEADER_LEN..(k + 1) * HEADER_LEN]
    }
}

fn authorize(c: &mut Criterion) {
    let mut g = c.benchmark_group("authorize");
    let secret: [u8; 32] = rand::thread_rng().gen();
    g.bench_function("sha256_32_bytes", |b| {
        b.iter(|| Sha256::digest(black_box(&secret)))
    });
    // Where the time goes, step by step, on the same 1,000-key store.
    let keys = Keys::new(1_000, 1_000);
    let mut i = 0usize;
    g.bench_function("step_parse_bearer", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            parse_bearer(keys.header(i)).is_ok()
        })
    });
    let parsed = parse_bearer(keys.header(0)).unwrap();
    g.bench_function("step_key_digest", |b| {
        b.iter(|| black_box(&parsed).digest())
    });
    g.bench_function("step_authenticate", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            keys.auth
                .authenticate(&AuthRequest::new(
                    Some(keys.header(i)),
                    Scopes::empty(),
                    NOW,
                ))
                .is_ok()
        })
    });
    drop(keys);
    for n in [1_000usize, 1_000_000] {
        let keys = Keys::new(n, n as u64);
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("authorize", n), |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let d = keys.auth.authorize(&AuthRequest::new(
                    Some(keys.header(i)),
                    Scopes::VPS_READ,
                    NOW,
                ));
                assert!(d.is_granted());
                d
            })
        });
    }
    g.finish();
}

/// The simplest correct fixed-window limiter: one lock around one map.
struct MutexWindow {
    map: Mutex<HashMap<u64, (u64, u32)>>,
}

impl MutexWindow {
    fn check(&self, key: u64, limit: u32, period: u64, now: u64) -> bool {
        let window = now / period;
        let mut map = self.map.lock();
        let slot = map.entry(key).or_insert((window, 0));
        if slot.0 != window {
            *slot = (window, 0);
        }
        if slot.1 < limit {
            slot.1 += 1;
            true
        } else {
            false
        }
    }
}

fn limiter(c: &mut Criterion) {
    let mut g = c.benchmark_group("limiter");
    let ids: Vec<u64> = {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        (0..1_000_000).map(|_| rng.gen()).collect()
    };
    let hot = ids[0];
    let ours = RateLimiter::new();
    let governor = governor::RateLimiter::keyed(governor::Quota::per_minute(
        NonZeroU32::new(u32::MAX).unwrap(),
    ));
    let plain = MutexWindow {
        map: Mutex::new(HashMap::new()),
    };
    g.bench_function("ours/hot_key", |b| {
        b.iter(|| ours.check(KeyId::from_u64(black_box(hot)), HUGE, NOW))
    });
    g.bench_function("governor/hot_key", |b| {
        b.iter(|| governor.check_key(black_box(&hot)).is_ok())
    });
    g.bench_function("mutex_hashmap/hot_key", |b| {
        b.iter(|| plain.check(black_box(hot), u32::MAX, 60, NOW.as_secs()))
    });
    // Warm every table with all the keys, then visit them in random order.
    for &k in &ids {
        let _ = ours.check(KeyId::from_u64(k), HUGE, NOW);
        let _ = governor.check_key(&k);
        plain.check(k, u32::MAX, 60, NOW.as_secs());
    }
    let mut i = 0usize;
    g.bench_function("ours/1M_keys", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            ours.check(KeyId::from_u64(ids[i]), HUGE, NOW)
        })
    });
    g.bench_function("governor/1M_keys", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            governor.check_key(&ids[i]).is_ok()
        })
    });
    g.bench_function("mutex_hashmap/1M_keys", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            plain.check(ids[i], u32::MAX, 60, NOW.as_secs())
        })
    });
    g.finish();
}

fn reject(c: &mut Criterion) {
    let mut g = c.benchmark_group("reject");
    let keys = Keys::new(1_000, 3);
    let secret: [u8; 32] = rand::thread_rng().gen();
    let unknown = format!(
        "Bearer sq_live_{}",
        hex::encode(rand::thread_rng().gen::<[u8; 32]>())
    );
    g.bench_function("sha256_32_bytes", |b| {
        b.iter(|| Sha256::digest(black_box(&secret)))
    });
    // The floor of any refusal: building and returning the decision.
    g.bench_function("missing_header", |b| {
        b.iter(|| {
            keys.auth
                .authorize(&AuthRequest::new(black_box(None), Scopes::VPS_READ, NOW))
        })
    });
    g.bench_function("malformed_header", |b| {
        b.iter(|| {
            keys.auth.authorize(&AuthRequest::new(
                Some(black_box(b"Basic dXNlcjpwYXNzd29yZA==")),
                Scopes::VPS_READ,
                NOW,
            ))
        })
    });
    // The parsing alone, without building a decision.
    g.bench_function("malformed_parse_only", |b| {
        b.iter(|| parse_bearer(black_box(b"Basic dXNlcjpwYXNzd29yZA==")).is_err())
    });
    g.bench_function("unknown_key", |b| {
        b.iter(|| {
            keys.auth.authorize(&AuthRequest::new(
                Some(black_box(unknown.as_bytes())),
                Scopes::VPS_READ,
                NOW,
            ))
        })
    });
    g.finish();
}

/// Runs `iters` authorizations (or, without `limit`, authentications) split over `threads`
/// threads, each on its own keys.
fn run_parallel(keys: &Keys, threads: usize, iters: u64, limit: bool) -> Duration {
    let per_thread = keys.order.len() / threads;
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                let base = t * per_thread;
                for i in 0..iters / threads as u64 {
                    let h = keys.header(base + (i as usize % per_thread));
                    if limit {
                        let d =
                            keys.auth
                                .authorize(&AuthRequest::new(Some(h), Scopes::VPS_READ, NOW));
                        assert!(black_box(d).is_granted());
                    } else {
                        assert!(black_box(keys.auth.authenticate(&AuthRequest::new(
                            Some(h),
                            Scopes::empty(),
                            NOW
                        )))
                        .is_ok());
                    }
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn parallel(c: &mut Criterion) {
    let mut g = c.benchmark_group("parallel");
    let keys = Keys::new(2_000, 11);
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 2] {
        g.bench_function(BenchmarkId::new("authorize_threads", threads), |b| {
            b.iter_custom(|iters| run_parallel(&keys, threads, iters.max(threads as u64), true))
        });
    }
    for threads in [1usize, 2] {
        g.bench_function(BenchmarkId::new("authenticate_threads", threads), |b| {
            b.iter_custom(|iters| run_parallel(&keys, threads, iters.max(threads as u64), false))
        });
    }
    g.finish();
}

criterion_group!(benches, authorize, limiter, reject, parallel);
criterion_main!(benches);
