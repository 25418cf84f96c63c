//! The spec's security tips as behaviour of the library: rotation that keeps its quota, per-key
//! address allowlists, and the quota of requests without a valid key.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use sitequest_auth::{
    AddressLimiter, AuthRequest, Authorizer, Decision, DenialReason, ErrorCode, IpAllowlist,
    KeyStore, LimitPolicy, NewKey, Preset, Quota, Scopes, UnixTime,
};

/// The start of a minute.
const T0: UnixTime = UnixTime::from_secs(1_800_000_000);

fn header(key: &sitequest_auth::ApiKey) -> String {
    format!("Bearer {}", &*key.expose_secret())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ask(auth: &Authorizer, header: &str, from: Option<IpAddr>, now: UnixTime) -> Decision {
    let mut request = AuthRequest::new(Some(header.as_bytes()), Scopes::VPS_READ, now);
    if let Some(ip) = from {
        request = request.with_client_ip(ip);
    }
    auth.authorize(&request)
}

#[test]
fn a_rotated_key_and_its_replacement_share_one_window() {
    let store = Arc::new(KeyStore::new());
    let old = store.issue(&NewKey::new("ci", Preset::Full), T0).unwrap();
    let auth = Authorizer::new(store.clone());
    let old_h = header(&old.key);
    for _ in 0..10 {
        assert!(ask(&auth, &old_h, None, T0).is_granted());
    }
    let rotation = store
        .rotate(old.record.id(), Duration::from_secs(3600), T0)
        .unwrap();
    assert_eq!(rotation.new.record.shares_limit_with, Some(old.record.id()));
    let new_h = header(&rotation.new.key);
    // 40 with the old key in all, then 20 with the new one: one window of 60.
    for _ in 0..30 {
        assert!(ask(&auth, &old_h, None, T0).is_granted());
    }
    for i in 0..20 {
        let Decision::Granted(g) = ask(&auth, &new_h, None, T0) else {
            panic!("request {i} of the new key was refused");
        };
        assert_eq!(g.rate_limit.remaining, 19 - i);
        assert_eq!(g.key_id, rotation.new.record.id());
    }
    for h in [&old_h, &new_h] {
        let d = ask(&auth, h, None, T0).into_result().unwrap_err();
        assert_eq!(d.status(), 429);
    }
    // A rotation of the replacement still counts in the first key's window.
    let again = store
        .rotate(rotation.new.record.id(), Duration::ZERO, T0)
        .unwrap();
    assert_eq!(again.new.record.shares_limit_with, Some(old.record.id()));
    let newest = header(&again.new.key);
    assert_eq!(
        ask(&auth, &newest, None, T0)
            .into_result()
            .unwrap_err()
            .status(),
        429
    );
    // After the grace, the newest key alone: a fresh window next minute.
    assert!(ask(&auth, &newest, None, T0.plus_secs(60)).is_granted());
    assert!(!ask(&auth, &new_h, None, T0.plus_secs(60)).is_granted());
}

#[test]
fn an_allowlist_refuses_other_addresses_without_counting() {
    let store = Arc::new(KeyStore::new());
    let list = IpAllowlist::parse("203.0.113.0/24, 2001:db8::/32").unwrap();
    let issued = store
        .issue(&NewKey::new("office", Preset::Full).allowed_ips(list), T0)
        .unwrap();
    assert_eq!(issued.record.allowed_ips_changed_at, Some(T0));
    let auth = Authorizer::new(store.clone()).with_quota(Quota::per_minute(2));
    let h = header(&issued.key);
    for from in [Some(ip("198.51.100.1")), None, Some(ip("2001:db9::1"))] {
        for _ in 0..5 {
            let d = ask(&auth, &h, from, T0).into_result().unwrap_err();
            assert_eq!(d.status(), 403);
            assert_eq!(d.code(), ErrorCode::IpNotAllowed);
            assert_eq!(
                d.reason(),
                DenialReason::AddressNotAllowed(issued.record.id())
            );
            assert_eq!(
                d.body(),
                r#"{"error":"API key not allowed from this address","code":"IP_NOT_ALLOWED","status":403}"#
            );
        }
    }
    // Refusals from elsewhere did not use the owner's quota, nor count as a use.
    assert_eq!(store.get(issued.record.id()).unwrap().last_used_at, None);
    for from in ["203.0.113.9", "::ffff:203.0.113.10"] {
        let Decision::Granted(g) = ask(&auth, &h, Some(ip(from)), T0) else {
            panic!("refused from {from}");
        };
        assert_eq!(g.rate_limit.policy, LimitPolicy::Key);
    }
    // An update applies at once; an empty list allows any address.
    store
        .set_allowed_ips(issued.record.id(), IpAllowlist::default(), T0)
        .unwrap();
    assert!(ask(&auth, &h, None, T0.plus_secs(60)).is_granted());
    let record = store.get(issued.record.id()).unwrap();
    assert!(record.allowed_ips.is_empty());
    assert_eq!(record.allowed_ips_changed_at, Some(T0.plus_secs(1)));
}

#[test]
fn requests_without_a_valid_key_count_per_address() {
    let store = Arc::new(KeyStore::new());
    let good = store.issue(&NewKey::new("ok", Preset::Full), T0).unwrap();
    let auth = Authorizer::new(store);
    let bad = format!("Bearer sq_live_{}", "0".repeat(64));
    let a = ip("192.0.2.1");
    for i in 0..60u32 {
        let d = ask(&auth, &bad, Some(a), T0).into_result().unwrap_err();
        assert_eq!(d.status(), 401);
        let r = d
            .rate_limit()
            .expect("a 401 from a known address carries its window");
        assert_eq!((r.limit, r.remaining), (60, 59 - i));
        assert_eq!(r.policy, LimitPolicy::Unauthenticated);
        let headers = d.headers(auth.realm(), T0);
        assert_eq!(headers[0], ("X-RateLimit-Limit", "60".to_string()));
        assert_eq!(headers[1], ("X-RateLimit-Remaining", (59 - i).to_string()));
        assert_eq!(headers[2], ("X-RateLimit-Reset", "1800000060".to_string()));
        assert_eq!(
            headers[3],
            (
                "RateLimit-Policy",
                "\"unauthenticated\";q=60;w=60".to_string()
            )
        );
        assert_eq!(
            headers[4],
            (
                "RateLimit",
                format!("\"unauthenticated\";r={};t=60", 59 - i)
            )
        );
    }
    // The 61st refusal: a 429 with Retry-After, whatever the bad credential.
    for h in [bad.as_str(), "Bearer nonsense", "Basic x", ""] {
        let d = ask(&auth, h, Some(a), T0.plus_secs(15))
            .into_result()
            .unwrap_err();
        assert_eq!(d.reason(), DenialReason::AddressRateLimited);
        assert_eq!(d.status(), 429);
        assert_eq!(d.retry_after(), Some(45));
        assert_eq!(
            d.body(),
            r#"{"error":"Too many requests","code":"RATE_LIMITED","status":429}"#
        );
    }
    // A live key from that address is still served, in its own window, and not counted in the
    // address's (issue 18: anyone sharing a NAT could deny the key's owner service).
    for n in 1..=3u32 {
        let Decision::Granted(g) = ask(&auth, &header(&good.key), Some(a), T0.plus_secs(15)) else {
            panic!("a live key refused because its address's quota of refusals is used up");
        };
        assert_eq!(g.rate_limit.remaining, 60 - n);
        assert_eq!(g.rate_limit.policy, LimitPolicy::Key);
    }
    assert_eq!(
        auth.address_limiter()
            .unwrap()
            .peek(a, T0.plus_secs(15))
            .remaining,
        0
    );
    // Another address is unaffected, and so is a request without a known address.
    let d = ask(&auth, &bad, Some(ip("192.0.2.2")), T0)
        .into_result()
        .unwrap_err();
    assert_eq!(d.rate_limit().unwrap().remaining, 59);
    let d = ask(&auth, &bad, None, T0).into_result().unwrap_err();
    assert_eq!(d.rate_limit(), None);
    // A valid key from another address is counted in its own window only.
    let Decision::Granted(g) = ask(&auth, &header(&good.key), Some(ip("192.0.2.3")), T0) else {
        panic!("refused");
    };
    // Its fourth request of the window (three came from the exhausted address above).
    assert_eq!(g.rate_limit.remaining, 56);
    assert_eq!(
        auth.address_limiter()
            .unwrap()
            .peek(ip("192.0.2.3"), T0)
            .remaining,
        60
    );
    // The next window starts over.
    assert_eq!(
        ask(&auth, &bad, Some(a), T0.plus_secs(60))
            .into_result()
            .unwrap_err()
            .status(),
        401
    );
    // Counting can be turned off or set.
    let off = Authorizer::new(Arc::new(KeyStore::new())).with_address_limiter(None);
    assert_eq!(
        ask(&off, &bad, Some(a), T0)
            .into_result()
            .unwrap_err()
            .rate_limit(),
        None
    );
    let two = Authorizer::new(Arc::new(KeyStore::new()))
        .with_address_limiter(Some(AddressLimiter::new(Quota::new(2, 10).unwrap())));
    for _ in 0..2 {
        assert_eq!(ask(&two, &bad, Some(a), T0).status(), 401);
    }
    assert_eq!(ask(&two, &bad, Some(a), T0).status(), 429);
}

#[test]
fn the_key_revocation_window_has_a_name_of_its_own() {
    let limiter =
        AddressLimiter::new(Quota::per_minute(10)).with_policy(LimitPolicy::KeyRevocation);
    let r = limiter.check(ip("192.0.2.1"), T0).rate_limit();
    let fields: Vec<(&str, String)> = r.headers(T0);
    assert_eq!(
        fields[3],
        (
            "RateLimit-Policy",
            "\"key-revocation\";q=10;w=60".to_string()
        )
    );
    assert_eq!(
        fields[4],
        ("RateLimit", "\"key-revocation\";r=9;t=60".to_string())
    );
    assert!(std::mem::size_of::<LimitPolicy>() == 1);
}

#[test]
fn names_cannot_hide_behind_bidirectional_overrides() {
    for name in ["ci\u{202E}gpj.exe", "a\u{2066}b", "\u{200F}x", "tab\there"] {
        assert_eq!(
            NewKey::new(name, Preset::Full).generate(T0).unwrap_err(),
            sitequest_auth::InvalidRecord::ControlCharacter,
            "{name:?}"
        );
    }
    assert!(NewKey::new("ünïcode déploy", Preset::Full)
        .generate(T0)
        .is_ok());
}
