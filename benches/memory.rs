//! Bytes per stored key record and per active limiter entry at 1,000,000 keys, counted by an
//! instrumented global allocator. Run with `cargo bench --bench memory`.

use std::alloc::System;

use rand::{Rng, SeedableRng};
use sitequest_auth::{KeyId, KeyRecord, KeyStore, NewKey, Quota, RateLimiter, Scopes, UnixTime};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: usize = 1_000_000;
const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

fn net(region: &Region<'_, System>) -> isize {
    let c = region.change();
    c.bytes_allocated as isize - c.bytes_deallocated as isize + c.bytes_reallocated
}

fn main() {
    // Bench harness flags (such as --bench) are ignored.
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let records: Vec<KeyRecord> = (0..N)
        .map(|_| {
            let new = NewKey::new("k", Scopes::READ_ONLY).expires_at(NOW.plus_secs(3600));
            new.generate_with(&mut rng, NOW).unwrap().record
        })
        .collect();

    let region = Region::new(GLOBAL);
    let store = KeyStore::new();
    for r in records {
        store.insert(r).unwrap();
    }
    // The input Vec is freed inside the region: add it back so only the store counts. The names
    // were allocated before the region and move into the store as they are, so they are not
    // counted (the figure excludes them, as the target does).
    let vec_bytes = N * std::mem::size_of::<KeyRecord>();
    let store_bytes = net(&region) + vec_bytes as isize;
    let per_record = store_bytes as f64 / N as f64;
    println!(
        "key store: {} keys, {store_bytes} bytes, {per_record:.1} bytes per record (name excluded)",
        store.len()
    );

    let ids: Vec<u64> = (0..N).map(|_| rng.gen()).collect();
    let region = Region::new(GLOBAL);
    let limiter = RateLimiter::new();
    for &id in &ids {
        let _ = limiter.check(KeyId::from_u64(id), Quota::SPEC, NOW);
    }
    let limiter_bytes = net(&region);
    println!(
        "limiter: {} active keys, {limiter_bytes} bytes, {:.1} bytes per entry",
        limiter.len(),
        limiter_bytes as f64 / N as f64
    );
}
