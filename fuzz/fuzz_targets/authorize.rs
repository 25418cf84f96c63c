//! The whole decision against a small store, with arbitrary headers, required scopes and times.
//! Asserts what a client may rely on: only active keys with the required scopes are granted,
//! never more than the limit per window, every 401 identical, and the headers match the outcome.
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sitequest_auth::{
    ApiKey, AuthRequest, Authorizer, Decision, ErrorCode, KeyRecord, KeyStore, Last4, Quota,
    RateLimiter, Scopes, UnixTime,
};

const T0: u64 = 1_800_000_000;
const LIMIT: u32 = 3;
const PERIOD: u64 = 10;

#[derive(Arbitrary, Debug)]
enum Header {
    Missing,
    Raw(Vec<u8>),
    /// One of the store's keys, with a chosen scheme spelling and padding.
    Known {
        key: u8,
        scheme: u8,
        spaces: u8,
        trailing: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Request {
    header: Header,
    required: u8,
    /// Seconds to move the clock, forwards or backwards.
    dt: i8,
}

/// Secrets of the store's keys: full, read only, revoked, expiring at T0 + 100.
const SECRETS: [[u8; 32]; 4] = [[1; 32], [2; 32], [3; 32], [4; 32]];

fn key_text(i: usize) -> String {
    let mut text = String::from("sq_live_");
    for b in SECRETS[i] {
        text.push_str(&format!("{b:02x}"));
    }
    text
}

fn store() -> Arc<KeyStore> {
    let store = Arc::new(KeyStore::new());
    let settings = [
        (Scopes::FULL, None, None),
        (Scopes::READ_ONLY, None, None),
        (Scopes::FULL, None, Some(T0)),
        (
            Scopes::VPS_WRITE | Scopes::DOMAINS_READ,
            Some(T0 + 100),
            None,
        ),
    ];
    for (i, (scopes, expires_at, revoked_at)) in settings.into_iter().enumerate() {
        let key = ApiKey::parse(&key_text(i)).unwrap();
        store
            .insert(
                KeyRecord::new(
                    key.digest(),
                    format!("key {i}"),
                    scopes,
                    UnixTime::from_secs(T0 - 1000),
                    Last4::new(&key_text(i)[68..]).unwrap(),
                )
                .with_expires_at(expires_at.map(UnixTime::from_secs))
                .with_revoked_at(revoked_at.map(UnixTime::from_secs)),
            )
            .unwrap();
    }
    store
}

fuzz_target!(|requests: Vec<Request>| {
    let store = store();
    let ids: Vec<_> = (0..4)
        .map(|i| ApiKey::parse(&key_text(i)).unwrap().digest().id())
        .collect();
    let auth = Authorizer::new(store)
        .with_quota(Quota::new(LIMIT, PERIOD as u32).unwrap())
        .with_limiter(RateLimiter::with_stripes(4));
    let mut now = T0 + 50;
    let mut latest = now;
    let mut counted: HashMap<(usize, u64), u32> = HashMap::new();
    for req in requests.iter().take(500) {
        // The clock may step back, but by at most a window: a longer step back is a clock
        // correction, which grants up to one window more (the `limiter_diff` target and the
        // property tests cover those); here the limit per window must hold exactly.
        now = now
            .saturating_add_signed(i64::from(req.dt))
            .max(latest - PERIOD);
        latest = latest.max(now);
        let header: Option<Vec<u8>> = match &req.header {
            Header::Missing => None,
            Header::Raw(bytes) => Some(bytes.clone()),
            Header::Known {
                key,
                scheme,
                spaces,
                trailing,
            } => {
                let schemes = ["Bearer", "bearer", "BEARER", "Basic", "Bearer:", ""];
                let mut v = schemes[usize::from(*scheme) % schemes.len()]
                    .as_bytes()
                    .to_vec();
                v.extend(std::iter::repeat(b' ').take(usize::from(*spaces % 4)));
                v.extend_from_slice(key_text(usize::from(*key % 4)).as_bytes());
                v.extend(std::iter::repeat(b'\t').take(usize::from(*trailing % 3)));
                Some(v)
            }
        };
        let required = Scopes::from_bits_truncate(req.required);
        let at = UnixTime::from_secs(now);
        let decision = auth.authorize(&AuthRequest::new(header.as_deref(), required, at));
        match &decision {
            Decision::Granted(g) => {
                let k = ids
                    .iter()
                    .position(|id| *id == g.key_id)
                    .expect("granted an unknown key");
                assert!(k != 2, "granted a revoked key");
                assert!(k != 3 || now < T0 + 100, "granted an expired key");
                assert!(g.scopes.contains(required));
                // Grants and scope refusals both count against the window.
                let n = counted
                    .entry((k, g.rate_limit.reset_at.as_secs()))
                    .or_default();
                *n += 1;
                assert!(*n <= LIMIT, "more than the limit in one window");
                assert_eq!(g.rate_limit.remaining, LIMIT - *n);
                assert_eq!(decision.headers(auth.realm(), at).len(), 5);
            }
            Decision::Denied(d) => {
                match d.code() {
                    ErrorCode::Unauthorized => {
                        assert_eq!(d.status(), 401);
                        assert_eq!(d.rate_limit(), None);
                        let challenge = if header.is_none() {
                            r#"Bearer realm="sitequest""#
                        } else {
                            r#"Bearer realm="sitequest", error="invalid_token""#
                        };
                        assert_eq!(
                            d.headers(auth.realm(), at),
                            vec![("WWW-Authenticate", challenge.to_string())]
                        );
                    }
                    ErrorCode::InsufficientScope => {
                        assert_eq!(d.status(), 403);
                        assert_eq!(d.retry_after(), None);
                        let id = d.reason().key_id().unwrap();
                        let k = ids.iter().position(|i| *i == id).unwrap();
                        assert!(k != 2 && (k != 3 || now < T0 + 100));
                        let r = d.rate_limit().unwrap();
                        let n = counted.entry((k, r.reset_at.as_secs())).or_default();
                        *n += 1;
                        assert!(*n <= LIMIT, "more than the limit in one window");
                        assert_eq!(r.remaining, LIMIT - *n);
                    }
                    ErrorCode::RateLimited => {
                        assert_eq!(d.status(), 429);
                        let r = d.rate_limit().unwrap();
                        assert_eq!(r.remaining, 0);
                        assert!(d.retry_after().unwrap() >= 1);
                        assert!(now + d.retry_after().unwrap() >= r.reset_at.as_secs());
                    }
                    _ => unreachable!(),
                }
                let v = d.body();
                assert!(
                    v.starts_with("{\"error\":\"")
                        && v.ends_with(&format!("\"status\":{}}}", d.status()))
                );
            }
        }
    }
});
