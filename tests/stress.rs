//! Many threads against one limiter and one authorizer: never more than the limit per window.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use sitequest_auth::{
    AuthRequest, Authorizer, KeyId, KeyStore, NewKey, Preset, Quota, RateLimiter, Scopes, UnixTime,
};

/// The start of a minute (1_800_000_000 is a multiple of 60).
const T0: u64 = 1_800_000_000;
const THREADS: usize = 8;

#[test]
fn threads_hammering_one_key_get_exactly_the_limit() {
    let limiter = Arc::new(RateLimiter::new());
    let allowed = Arc::new(AtomicU32::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let key = KeyId::from_u64(0xdead_beef_0000_0001);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (limiter, allowed, barrier) = (limiter.clone(), allowed.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for i in 0..2_000u64 {
                    // All inside one window, with some threads' clocks a little behind.
                    let now = T0 + (i + t as u64) % 50;
                    if limiter.check(key, Quota::SPEC, at(now)).is_allowed() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(allowed.load(Ordering::Relaxed), 60);
}

#[test]
fn threads_over_many_keys_and_windows_never_exceed_the_limit() {
    const KEYS: u64 = 500;
    const WINDOWS: u64 = 3;
    let limiter = Arc::new(RateLimiter::with_stripes(16));
    let quota = Quota::new(7, 60).unwrap();
    let counts: Arc<Vec<AtomicU32>> =
        Arc::new((0..KEYS * WINDOWS).map(|_| AtomicU32::new(0)).collect());
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (limiter, counts, barrier) = (limiter.clone(), counts.clone(), barrier.clone());
            thread::spawn(move || {
                for w in 0..WINDOWS {
                    // Threads move from window to window together: a time more than a window
                    // behind the latest is taken as a clock correction (see the limiter's docs),
                    // which real threads reading one clock never present.
                    barrier.wait();
                    for round in 0..10u64 {
                        for k in 0..KEYS {
                            let k = (k + t as u64 * 37 + round) % KEYS;
                            let id = KeyId::from_u64(k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                            let now = T0 + w * 60 + round;
                            if let sitequest_auth::LimitDecision::Allowed(r) =
                                limiter.check(id, quota, at(now))
                            {
                                let window = (r.reset_at.as_secs() - T0) / 60 - 1;
                                counts[(window * KEYS + k) as usize]
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    if t == 0 {
                        let _ = limiter.sweep(at(T0 + w * 60));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for (i, c) in counts.iter().enumerate() {
        assert!(c.load(Ordering::Relaxed) <= 7, "key/window {i}");
    }
    // Every key got its full quota in the first window: 8 threads x 10 rounds > 7.
    assert!(counts[..KEYS as usize]
        .iter()
        .all(|c| c.load(Ordering::Relaxed) == 7));
}

#[test]
fn authorizer_under_concurrent_issue_and_revoke() {
    let store = Arc::new(KeyStore::new());
    let keep = store
        .issue(&NewKey::new("keep", Preset::Full), at(T0))
        .unwrap();
    let header = format!("Bearer {}", &*keep.key.expose_secret());
    let auth = Arc::new(Authorizer::new(store.clone()).with_quota(Quota::new(1000, 60).unwrap()));
    let granted = Arc::new(AtomicU32::new(0));
    let barrier = Arc::new(Barrier::new(5));
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (auth, granted, barrier, header) = (
            auth.clone(),
            granted.clone(),
            barrier.clone(),
            header.clone(),
        );
        handles.push(thread::spawn(move || {
            barrier.wait();
            for _ in 0..500 {
                if auth
                    .authorize(&AuthRequest::new(
                        Some(header.as_bytes()),
                        Scopes::VPS_READ,
                        at(T0 + 1),
                    ))
                    .is_granted()
                {
                    granted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let writer = {
        let store = store.clone();
        thread::spawn(move || {
            barrier.wait();
            for i in 0..300 {
                let k = store
                    .issue(&NewKey::new(format!("churn {i}"), Preset::ReadOnly), at(T0))
                    .unwrap();
                store.revoke(k.record.id(), at(T0)).unwrap();
                if i % 2 == 0 {
                    store.remove(k.record.id());
                }
            }
        })
    };
    for h in handles {
        h.join().unwrap();
    }
    writer.join().unwrap();
    assert_eq!(granted.load(Ordering::Relaxed), 1000);
    assert_eq!(store.len(), 1 + 150);
}

fn at(secs: u64) -> UnixTime {
    UnixTime::from_secs(secs)
}
