//! A fixed workload for instruction-level profiling of the hot path:
//! `cargo build --release --example authorize_loop` then
//! `valgrind --tool=callgrind target/release/examples/authorize_loop`.
//! Authorizes 200,000 requests spread over 1,000 keys.

use std::sync::Arc;

use rand::SeedableRng;
use sitequest_auth::{AuthRequest, Authorizer, KeyStore, NewKey, Quota, Scopes, UnixTime};

fn main() {
    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let store = Arc::new(KeyStore::new());
    let mut headers = Vec::new();
    for _ in 0..1_000 {
        let issued = NewKey::new("profile", Scopes::FULL)
            .generate_with(&mut rng, NOW)
            .expect("valid settings");
        store.insert(issued.record).expect("distinct keys");
        let key = issued.key;
        headers.push(format!("Bearer {}", &*key.expose_secret()));
    }
    let auth = Authorizer::new(store).with_quota(Quota::new(u32::MAX, 60).expect("non-zero"));
    let mut granted = 0u32;
    for i in 0..200_000 {
        let h = headers[(i * 7919) % headers.len()].as_bytes();
        granted += u32::from(
            auth.authorize(&AuthRequest::new(Some(h), Scopes::VPS_READ, NOW))
                .is_granted(),
        );
    }
    println!("{granted} granted");
}
