//! A key's rate-limit window across removals and rotations: the same decisions whether the
//! windows are counted in the store's entries (the default) or in a separate `RateLimiter`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use sitequest_auth::{
    AuthRequest, Authorizer, IssuedKey, KeyStore, NewKey, Preset, Quota, RateLimiter, Scopes,
    UnixTime,
};

/// The start of a minute (1_800_000_000 is a multiple of 60).
const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> UnixTime {
    UnixTime::from_secs(secs)
}

fn header(key: &IssuedKey) -> String {
    format!("Bearer {}", key.key.expose_secret().as_str())
}

/// How many of `n` requests with `key` at `now` are granted.
fn granted(auth: &Authorizer, key: &IssuedKey, n: u32, now: u64) -> u32 {
    let header = header(key);
    (0..n)
        .map(|_| {
            let request = AuthRequest::new(Some(header.as_bytes()), Scopes::VPS_READ, at(now));
            u32::from(auth.authorize(&request).is_granted())
        })
        .sum()
}

/// An authorizer over `store`, counting in the store's entries or in a separate limiter.
fn authorizer(store: &Arc<KeyStore>, separate_limiter: bool) -> Authorizer {
    let auth = Authorizer::new(store.clone());
    if separate_limiter {
        auth.with_limiter(RateLimiter::new())
    } else {
        auth
    }
}

/// The replacement of `key`, rotated at `now` with `grace_secs` of grace.
fn rotate(store: &KeyStore, key: &IssuedKey, grace_secs: u64, now: u64) -> IssuedKey {
    store
        .rotate(key.record.id(), Duration::from_secs(grace_secs), at(now))
        .unwrap()
        .new
}

/// A key without a quota of its own.
fn read_only(store: &KeyStore) -> IssuedKey {
    store
        .issue(&NewKey::new("a", Preset::ReadOnly), at(T0))
        .unwrap()
}

fn three_a_minute(store: &KeyStore) -> IssuedKey {
    let new = NewKey::new("ci", Preset::ReadOnly).rate_limit(Quota::per_minute(3));
    store.issue(&new, at(T0)).unwrap()
}

#[test]
fn removing_the_rotated_key_does_not_give_its_replacement_a_fresh_quota() {
    for separate_limiter in [false, true] {
        let store = Arc::new(KeyStore::new());
        let old = three_a_minute(&store);
        let auth = authorizer(&store, separate_limiter);
        let new = rotate(&store, &old, 5, T0);
        assert_eq!(granted(&auth, &old, 2, T0 + 1), 2);
        assert_eq!(granted(&auth, &new, 1, T0 + 2), 1);
        // The old key is gone (deleted after its grace, or pruned from the shared records):
        // the replacement still counts in the window the two shared, which is full.
        store.remove(old.record.id()).unwrap();
        let record = store.get(new.record.id()).unwrap();
        assert_eq!(auth.window(&record, at(T0 + 10)).remaining, 0);
        assert_eq!(
            granted(&auth, &new, 5, T0 + 10),
            0,
            "separate limiter: {separate_limiter}"
        );
        // The next window is the replacement's whole quota.
        assert_eq!(auth.window(&record, at(T0 + 60)).remaining, 3);
        assert_eq!(granted(&auth, &new, 5, T0 + 60), 3);
    }
}

#[test]
fn two_replacements_of_a_removed_key_share_one_window() {
    for separate_limiter in [false, true] {
        let store = Arc::new(KeyStore::new());
        let a = three_a_minute(&store);
        let auth = authorizer(&store, separate_limiter);
        let b = rotate(&store, &a, 1, T0);
        store.remove(a.record.id()).unwrap();
        // `b` rotated in turn: `c` shares the window `b` counts in, `a`'s.
        let c = rotate(&store, &b, 3600, T0 + 120);
        let both = (0..3)
            .map(|_| granted(&auth, &b, 1, T0 + 130) + granted(&auth, &c, 1, T0 + 130))
            .sum::<u32>();
        assert_eq!(both, 3, "separate limiter: {separate_limiter}");
    }
}

#[test]
fn a_removed_key_stored_again_gets_its_window_back() {
    for separate_limiter in [false, true] {
        let store = Arc::new(KeyStore::new());
        let key = three_a_minute(&store);
        let auth = authorizer(&store, separate_limiter);
        assert_eq!(granted(&auth, &key, 2, T0 + 1), 2);
        let record = store.remove(key.record.id()).unwrap();
        assert_eq!(auth.window(&record, at(T0 + 2)).remaining, 1);
        store.insert(record).unwrap();
        assert_eq!(
            granted(&auth, &key, 5, T0 + 2),
            1,
            "separate limiter: {separate_limiter}"
        );
    }
}

#[test]
fn the_window_of_a_removed_key_ends_with_its_period() {
    let store = Arc::new(KeyStore::new());
    let key = three_a_minute(&store);
    let auth = authorizer(&store, false);
    assert_eq!(granted(&auth, &key, 3, T0 + 1), 3);
    let record = store.remove(key.record.id()).unwrap();
    // A key issued in the next minute drops the ended window; the key stored again starts afresh.
    three_a_minute(&store);
    store
        .issue(&NewKey::new("later", Preset::ReadOnly), at(T0 + 61))
        .unwrap();
    store.insert(record).unwrap();
    assert_eq!(granted(&auth, &key, 5, T0 + 61), 3);
}

#[test]
fn authorizers_over_one_store_with_one_default_quota_count_a_key_in_one_window() {
    let store = Arc::new(KeyStore::new());
    let key = three_a_minute(&store);
    let (api, mcp) = (
        Authorizer::new(store.clone()),
        Authorizer::new(store.clone()),
    );
    assert_eq!(granted(&api, &key, 2, T0 + 1), 2);
    assert_eq!(granted(&mcp, &key, 2, T0 + 1), 1);
    // With limiters of their own, each has its own windows.
    let (api, mcp) = (authorizer(&store, true), authorizer(&store, true));
    assert_eq!(granted(&api, &key, 3, T0 + 61), 3);
    assert_eq!(granted(&mcp, &key, 3, T0 + 61), 3);
}

fn per_hour(store: &Arc<KeyStore>, limit: u32) -> Authorizer {
    Authorizer::new(store.clone()).with_quota(Quota::new(limit, 3600).unwrap())
}

#[test]
fn authorizers_with_one_default_quota_share_a_window_whatever_order_they_are_built_in() {
    let store = Arc::new(KeyStore::new());
    let key = read_only(&store);
    // Both built with the spec's quota first, then both given another one.
    let (api, mcp) = (
        Authorizer::new(store.clone()),
        Authorizer::new(store.clone()),
    );
    let hourly = Quota::new(2, 3600).unwrap();
    let (api, mcp) = (api.with_quota(hourly), mcp.with_quota(hourly));
    let total: u32 = (0..10)
        .map(|i| granted(&api, &key, 1, T0 + 1 + i) + granted(&mcp, &key, 1, T0 + 1 + i))
        .sum();
    assert_eq!(total, 2);
}

#[test]
fn authorizers_with_different_periods_are_each_limited_and_share_with_their_own_period() {
    let store = Arc::new(KeyStore::new());
    let key = read_only(&store);
    let per_minute = Authorizer::new(store.clone()).with_quota(Quota::new(2, 60).unwrap());
    let hour = per_hour(&store, 2);
    // In one window the two periods would reset each other's and neither would limit.
    let (mut minute, mut hourly) = (0, 0);
    for i in 0..20 {
        minute += granted(&per_minute, &key, 1, T0 + 1 + i);
        hourly += granted(&hour, &key, 1, T0 + 1 + i);
    }
    assert_eq!((minute, hourly), (2, 2));
    // A per-hour authorizer built later, once the per-minute one is gone, counts in the same
    // hourly window as the first: nothing left this hour.
    drop(per_minute);
    let again = per_hour(&store, 2);
    assert_eq!(granted(&again, &key, 5, T0 + 30), 0);
    assert_eq!(granted(&hour, &key, 5, T0 + 30), 0);
    // The next hour has room for two, whichever authorizer counts them.
    assert_eq!(granted(&again, &key, 1, T0 + 3600), 1);
    assert_eq!(granted(&hour, &key, 5, T0 + 3600), 1);
}

#[test]
fn a_key_with_its_own_quota_counts_in_one_window_under_every_authorizer() {
    let store = Arc::new(KeyStore::new());
    let key = three_a_minute(&store);
    let (minute, hour) = (Authorizer::new(store.clone()), per_hour(&store, 100));
    // Its quota is its own whatever the authorizer's default: three a minute in all.
    let total: u32 = (0..5)
        .map(|_| granted(&minute, &key, 1, T0 + 1) + granted(&hour, &key, 1, T0 + 1))
        .sum();
    assert_eq!(total, 3);
    let window = hour.window(&key.record, at(T0 + 1));
    assert_eq!((window.limit, window.remaining), (3, 0));
}

#[test]
fn default_quotas_of_one_period_count_a_key_together_each_with_its_limit() {
    let store = Arc::new(KeyStore::new());
    let key = read_only(&store);
    let generous = Authorizer::new(store.clone()).with_quota(Quota::new(1000, 60).unwrap());
    let strict = Authorizer::new(store.clone()).with_quota(Quota::new(10, 60).unwrap());
    assert_eq!(granted(&generous, &key, 10, T0 + 1), 10);
    // The key's ten requests this minute are all the strict authorizer allows.
    assert_eq!(granted(&strict, &key, 1, T0 + 2), 0);
    let window = strict.window(&key.record, at(T0 + 2));
    assert_eq!((window.limit, window.remaining), (10, 0));
    assert_eq!(granted(&generous, &key, 5, T0 + 2), 5);
    assert_eq!(granted(&strict, &key, 3, T0 + 60), 3);
}

#[test]
fn a_default_quota_of_another_period_is_peeked_where_it_counts() {
    let store = Arc::new(KeyStore::new());
    let key = read_only(&store);
    let hour = per_hour(&store, 5);
    assert_eq!(granted(&hour, &key, 2, T0 + 1), 2);
    let window = hour.window(&key.record, at(T0 + 1));
    assert_eq!((window.limit, window.remaining), (5, 3));
    // A copy of the record that says otherwise about its quota: the stored one decides, as it
    // does for `authorize`.
    let mut copy = key.record.clone();
    copy.rate_limit = Some(Quota::per_minute(100));
    let window = hour.window(&copy, at(T0 + 1));
    assert_eq!((window.limit, window.remaining), (5, 3));
}

#[test]
fn a_rotation_under_a_default_quota_of_another_period_keeps_the_window() {
    let store = Arc::new(KeyStore::new());
    let old = read_only(&store);
    let hour = per_hour(&store, 3);
    assert_eq!(granted(&hour, &old, 2, T0 + 1), 2);
    let new = rotate(&store, &old, 600, T0 + 2);
    assert_eq!(granted(&hour, &new, 5, T0 + 3), 1);
    store.remove(old.record.id()).unwrap();
    assert_eq!(granted(&hour, &new, 5, T0 + 700), 0);
    assert_eq!(granted(&hour, &new, 5, T0 + 3600), 3);
}

#[test]
fn removing_and_storing_again_the_replaced_key_while_both_keys_count_never_over_grants() {
    let store = Arc::new(KeyStore::new());
    let new = NewKey::new("ci", Preset::ReadOnly).rate_limit(Quota::per_minute(50));
    let old = Arc::new(store.issue(&new, at(T0)).unwrap());
    let new = Arc::new(rotate(&store, &old, 3600, T0));
    let auth = Arc::new(Authorizer::new(store.clone()));
    let total = Arc::new(AtomicU32::new(0));
    let start = Arc::new(Barrier::new(4));
    let mut threads: Vec<_> = [old.clone(), new.clone(), new.clone()]
        .into_iter()
        .map(|key| {
            let (auth, total, start) = (auth.clone(), total.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..1_000 {
                    // All in one window.
                    let n = granted(&auth, &key, 1, T0 + 1 + i % 50);
                    total.fetch_add(n, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let (store2, old_id) = (store.clone(), old.record.id());
    threads.push(thread::spawn(move || {
        start.wait();
        for _ in 0..500 {
            if let Some(record) = store2.remove(old_id) {
                store2.insert(record).unwrap();
            }
        }
    }));
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(total.load(Ordering::Relaxed), 50);
}

#[test]
fn a_rotation_racing_a_revocation_never_replaces_a_revoked_key() {
    let store = Arc::new(KeyStore::new());
    let mut replacements = 0;
    // Five sweeps of the revocation's delay across the rotation's duration.
    for round in 0..1_000 {
        let key = store
            .issue(&NewKey::new("ci", Preset::ReadOnly), at(T0))
            .unwrap();
        let id = key.record.id();
        let start = Arc::new(Barrier::new(2));
        let revoker = {
            let (store, start) = (store.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                // Later each round, so that some revocations land while the rotation is
                // generating the replacement.
                for _ in 0..(round % 200) * 20 {
                    std::hint::spin_loop();
                }
                store.revoke(id, at(T0 + 1)).unwrap();
            })
        };
        start.wait();
        let rotated = store.rotate(id, Duration::from_secs(60), at(T0 + 1));
        revoker.join().unwrap();
        if let Ok(rotation) = rotated {
            // The rotation took effect before the revocation: its view of the old key is
            // active, and the replacement stays.
            assert_eq!(rotation.old.revoked_at, None, "round {round}");
            assert!(store.get(rotation.new.record.id()).is_some());
            replacements += 1;
        }
        // A refused rotation left no replacement behind.
        store.remove(id);
        assert_eq!(store.len(), replacements, "round {round}");
    }
}
