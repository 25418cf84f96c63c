//! One test per line of the product spec (shared/spec/sitequest-authorization.txt).

use std::sync::Arc;
use std::time::Duration;

use sitequest_auth::{
    ApiKey, AuthRequest, Authorizer, BearerError, Decision, Denial, DenialReason, ErrorCode,
    InvalidRealm, KeyParseError, KeyStore, NewKey, Preset, Quota, RateLimit, Realm, Scopes,
    UnixTime,
};

/// The start of a minute (1_800_000_000 is a multiple of 60).
const T0: UnixTime = UnixTime::from_secs(1_800_000_000);

fn setup(preset: Preset) -> (Authorizer, String) {
    let store = Arc::new(KeyStore::new());
    let issued = store.issue(&NewKey::new("test", preset), T0).unwrap();
    let header = format!("Bearer {}", &*issued.key.expose_secret());
    (Authorizer::new(store), header)
}

fn unauthorized(auth: &Authorizer, header: Option<&[u8]>, now: UnixTime) -> DenialReason {
    let d = auth
        .authorize(&AuthRequest::new(header, Scopes::VPS_READ, now))
        .into_result()
        .unwrap_err();
    assert_eq!(d.status(), 401);
    assert_eq!(d.code(), ErrorCode::Unauthorized);
    assert_eq!(
        d.body(),
        r#"{"error":"Invalid or missing API key","code":"UNAUTHORIZED","status":401}"#
    );
    // Every 401 looks the same: no rate-limit headers, one Bearer challenge (RFC 6750 §3),
    // naming the error only when credentials were sent.
    let challenge = if header.is_none() {
        r#"Bearer realm="sitequest""#
    } else {
        r#"Bearer realm="sitequest", error="invalid_token""#
    };
    assert_eq!(
        d.headers(auth.realm(), now),
        vec![("WWW-Authenticate", challenge.to_string())]
    );
    assert_eq!(d.rate_limit(), None);
    d.reason()
}

#[test]
fn keys_are_sq_live_and_64_hex_characters() {
    let key = ApiKey::generate();
    let text = key.expose_secret();
    assert_eq!(&text[..8], "sq_live_");
    assert_eq!(text.len() - 8, 64);
    assert!(text[8..].chars().all(|c| c.is_ascii_hexdigit()));
}

#[test]
fn bearer_header_grants_with_rate_limit_headers() {
    let (auth, header) = setup(Preset::Full);
    let grant = auth
        .authorize(&AuthRequest::new(
            Some(header.as_bytes()),
            Scopes::VPS_READ,
            T0.plus_secs(5),
        ))
        .into_result()
        .unwrap();
    assert_eq!(grant.scopes, Scopes::FULL);
    // The grant carries the key's id; its name is the store's, asked for when wanted.
    let again = auth
        .authorize(&AuthRequest::new(
            Some(header.as_bytes()),
            Scopes::VPS_READ,
            T0.plus_secs(5),
        ))
        .into_result()
        .unwrap();
    assert_eq!(again.key_id, grant.key_id);
    assert_eq!(auth.store().name(grant.key_id).unwrap(), "test");
    assert_eq!(
        grant.headers(T0.plus_secs(5)),
        vec![
            ("X-RateLimit-Limit", "60".to_string()),
            ("X-RateLimit-Remaining", "59".to_string()),
            ("X-RateLimit-Reset", (T0.plus_secs(60)).to_string()),
            ("RateLimit-Policy", r#""default";q=60;w=60"#.to_string()),
            ("RateLimit", r#""default";r=59;t=55"#.to_string()),
        ]
    );
}

#[test]
fn each_401_cause_has_the_same_public_answer() {
    let store = Arc::new(KeyStore::new());
    let live = store.issue(&NewKey::new("live", Preset::Full), T0).unwrap();
    let revoked = store
        .issue(&NewKey::new("revoked", Preset::Full), T0)
        .unwrap();
    let expiring = store
        .issue(
            &NewKey::new("ci", Preset::Full).expires_at(T0.plus_secs(30)),
            T0,
        )
        .unwrap();
    store.revoke(revoked.record.id(), T0.plus_secs(1)).unwrap();
    let auth = Authorizer::new(store);
    let bearer = |k: &ApiKey| format!("Bearer {}", &*k.expose_secret());

    assert_eq!(unauthorized(&auth, None, T0), DenialReason::MissingHeader);
    assert_eq!(
        unauthorized(&auth, Some(b"Basic abc"), T0),
        DenialReason::Malformed(BearerError::NotBearer)
    );
    assert_eq!(
        unauthorized(&auth, Some(b"Bearer sq_live_123"), T0),
        DenialReason::Malformed(BearerError::InvalidKey(KeyParseError::WrongLength {
            found: 11
        }))
    );
    let unknown = ApiKey::generate();
    assert_eq!(
        unauthorized(&auth, Some(bearer(&unknown).as_bytes()), T0),
        DenialReason::UnknownKey
    );
    assert_eq!(
        unauthorized(
            &auth,
            Some(bearer(&revoked.key).as_bytes()),
            T0.plus_secs(2)
        ),
        DenialReason::Revoked(revoked.record.id())
    );
    // Valid before the expiry time, refused from it on.
    assert!(auth
        .authorize(&AuthRequest::new(
            Some(bearer(&expiring.key).as_bytes()),
            Scopes::VPS_READ,
            T0.plus_secs(29)
        ))
        .is_granted());
    assert_eq!(
        unauthorized(
            &auth,
            Some(bearer(&expiring.key).as_bytes()),
            T0.plus_secs(30)
        ),
        DenialReason::Expired(expiring.record.id())
    );
    // None of the refused keys used up quota; the live key still works.
    assert!(auth
        .authorize(&AuthRequest::new(
            Some(bearer(&live.key).as_bytes()),
            Scopes::VPS_READ,
            T0.plus_secs(31)
        ))
        .is_granted());
}

#[test]
fn read_only_preset_is_vps_read_and_domains_read() {
    let (auth, header) = setup(Preset::ReadOnly);
    let h = Some(header.as_bytes());
    assert!(auth
        .authorize(&AuthRequest::new(h, Scopes::VPS_READ, T0))
        .is_granted());
    assert!(auth
        .authorize(&AuthRequest::new(h, Scopes::DOMAINS_READ, T0))
        .is_granted());
    for scope in [
        Scopes::VPS_WRITE,
        Scopes::VPS_MANAGE,
        Scopes::DOMAINS_WRITE,
        Scopes::DOMAINS_MANAGE,
    ] {
        let d = auth
            .authorize(&AuthRequest::new(h, scope, T0))
            .into_result()
            .unwrap_err();
        assert_eq!(d.status(), 403);
        assert_eq!(
            d.body(),
            r#"{"error":"API key lacks the required scope(s)","code":"INSUFFICIENT_SCOPE","status":403}"#
        );
    }
}

#[test]
fn full_preset_holds_every_scope() {
    let (auth, header) = setup(Preset::Full);
    for scope in Scopes::FULL.iter() {
        assert!(auth
            .authorize(&AuthRequest::new(Some(header.as_bytes()), scope, T0))
            .is_granted());
    }
    assert!(auth
        .authorize(&AuthRequest::new(Some(header.as_bytes()), Scopes::FULL, T0))
        .is_granted());
}

#[test]
fn custom_preset_holds_exactly_its_scopes() {
    let custom = Preset::custom(Scopes::VPS_WRITE | Scopes::DOMAINS_MANAGE).unwrap();
    let (auth, header) = setup(custom);
    let h = Some(header.as_bytes());
    assert!(auth
        .authorize(&AuthRequest::new(h, Scopes::VPS_WRITE, T0))
        .is_granted());
    assert!(auth
        .authorize(&AuthRequest::new(h, Scopes::DOMAINS_MANAGE, T0))
        .is_granted());
    let d = auth
        .authorize(&AuthRequest::new(
            h,
            Scopes::VPS_WRITE | Scopes::VPS_READ,
            T0,
        ))
        .into_result()
        .unwrap_err();
    assert_eq!(
        d.reason(),
        DenialReason::InsufficientScope {
            key_id: d.reason().key_id().unwrap(),
            missing: Scopes::VPS_READ
        }
    );
    assert!(Preset::custom(Scopes::empty()).is_err());
}

#[test]
fn sixty_requests_per_minute_then_429_with_headers() {
    let (auth, header) = setup(Preset::Full);
    let h = Some(header.as_bytes());
    for i in 0..60u32 {
        let g = auth
            .authorize(&AuthRequest::new(h, Scopes::VPS_READ, T0.plus_secs(10)))
            .into_result()
            .unwrap();
        assert_eq!(g.rate_limit.remaining, 59 - i);
    }
    let d = auth
        .authorize(&AuthRequest::new(h, Scopes::VPS_READ, T0.plus_secs(15)))
        .into_result()
        .unwrap_err();
    assert_eq!(d.status(), 429);
    assert_eq!(
        d.body(),
        r#"{"error":"Too many requests","code":"RATE_LIMITED","status":429}"#
    );
    assert_eq!(d.retry_after(), Some(45));
    assert_eq!(
        d.headers(auth.realm(), T0.plus_secs(15)),
        vec![
            ("X-RateLimit-Limit", "60".to_string()),
            ("X-RateLimit-Remaining", "0".to_string()),
            ("X-RateLimit-Reset", (T0.plus_secs(60)).to_string()),
            ("RateLimit-Policy", r#""default";q=60;w=60"#.to_string()),
            ("RateLimit", r#""default";r=0;t=45"#.to_string()),
            ("Retry-After", "45".to_string()),
        ]
    );
    // The window resets at X-RateLimit-Reset.
    let g = auth
        .authorize(&AuthRequest::new(h, Scopes::VPS_READ, T0.plus_secs(60)))
        .into_result()
        .unwrap();
    assert_eq!(
        g.rate_limit,
        RateLimit {
            limit: 60,
            remaining: 59,
            reset_at: T0.plus_secs(120),
            period_secs: 60,
            policy: sitequest_auth::LimitPolicy::Key,
        }
    );
}

#[test]
fn scope_refusals_count_and_429s_do_not() {
    let store = Arc::new(KeyStore::new());
    let issued = store
        .issue(&NewKey::new("ro", Preset::ReadOnly), T0)
        .unwrap();
    let header = format!("Bearer {}", &*issued.key.expose_secret());
    let auth = Authorizer::new(store).with_quota(Quota::new(3, 60).unwrap());
    let h = Some(header.as_bytes());
    let d = auth
        .authorize(&AuthRequest::new(h, Scopes::VPS_WRITE, T0))
        .into_result()
        .unwrap_err();
    assert_eq!(d.status(), 403);
    assert_eq!(d.rate_limit().unwrap().remaining, 2);
    assert_eq!(
        d.headers(auth.realm(), T0),
        vec![
            ("X-RateLimit-Limit", "3".to_string()),
            ("X-RateLimit-Remaining", "2".to_string()),
            ("X-RateLimit-Reset", (T0.plus_secs(60)).to_string()),
            ("RateLimit-Policy", r#""default";q=3;w=60"#.to_string()),
            ("RateLimit", r#""default";r=2;t=60"#.to_string()),
            (
                "WWW-Authenticate",
                r#"Bearer realm="sitequest", error="insufficient_scope", scope="vps:write""#
                    .to_string()
            ),
        ]
    );
    assert!(auth
        .authorize(&AuthRequest::new(h, Scopes::VPS_READ, T0))
        .is_granted());
    assert!(auth
        .authorize(&AuthRequest::new(h, Scopes::VPS_READ, T0))
        .is_granted());
    for _ in 0..5 {
        assert_eq!(
            auth.authorize(&AuthRequest::new(h, Scopes::VPS_READ, T0))
                .status(),
            429
        );
    }
    let snapshot = auth.window(&issued.record, T0);
    assert_eq!(snapshot.remaining, 0);
    // Counted in the key's store entry, not in the striped limiter.
    assert!(auth.limiter().is_empty());
}

#[test]
fn per_key_override_replaces_the_default() {
    let store = Arc::new(KeyStore::new());
    let issued = store
        .issue(
            &NewKey::new("bulk", Preset::Full).rate_limit(Quota::new(2, 10).unwrap()),
            T0,
        )
        .unwrap();
    let header = format!("Bearer {}", &*issued.key.expose_secret());
    let auth = Authorizer::new(store);
    let h = Some(header.as_bytes());
    let g = auth
        .authorize(&AuthRequest::new(h, Scopes::VPS_READ, T0.plus_secs(3)))
        .into_result()
        .unwrap();
    assert_eq!(g.rate_limit.limit, 2);
    assert_eq!(g.rate_limit.reset_at, T0.plus_secs(10));
    assert!(auth
        .authorize(&AuthRequest::new(h, Scopes::VPS_READ, T0.plus_secs(3)))
        .is_granted());
    assert_eq!(
        auth.authorize(&AuthRequest::new(h, Scopes::VPS_READ, T0.plus_secs(3)))
            .status(),
        429
    );
    assert!(auth
        .authorize(&AuthRequest::new(h, Scopes::VPS_READ, T0.plus_secs(10)))
        .is_granted());
}

#[test]
fn revocation_and_rotation_take_effect_at_once() {
    let store = Arc::new(KeyStore::new());
    let issued = store.issue(&NewKey::new("a", Preset::Full), T0).unwrap();
    let auth = Authorizer::new(store.clone());
    let old = format!("Bearer {}", &*issued.key.expose_secret());
    let rot = store
        .rotate(issued.record.id(), Duration::from_secs(30), T0.plus_secs(1))
        .unwrap();
    let new = format!("Bearer {}", &*rot.new.key.expose_secret());
    assert!(auth
        .authorize(&AuthRequest::new(
            Some(old.as_bytes()),
            Scopes::VPS_READ,
            T0.plus_secs(30)
        ))
        .is_granted());
    assert_eq!(
        auth.authorize(&AuthRequest::new(
            Some(old.as_bytes()),
            Scopes::VPS_READ,
            T0.plus_secs(31)
        ))
        .status(),
        401
    );
    assert!(auth
        .authorize(&AuthRequest::new(
            Some(new.as_bytes()),
            Scopes::VPS_READ,
            T0.plus_secs(31)
        ))
        .is_granted());
    store.revoke(rot.new.record.id(), T0.plus_secs(32)).unwrap();
    assert_eq!(
        auth.authorize(&AuthRequest::new(
            Some(new.as_bytes()),
            Scopes::VPS_READ,
            T0.plus_secs(32)
        ))
        .status(),
        401
    );
}

#[test]
fn decision_headers_follow_the_outcome() {
    let (auth, header) = setup(Preset::ReadOnly);
    let d = auth.authorize(&AuthRequest::new(
        Some(header.as_bytes()),
        Scopes::VPS_READ,
        T0,
    ));
    assert!(matches!(d, Decision::Granted(_)));
    assert_eq!(d.status(), 200);
    assert_eq!(d.headers(auth.realm(), T0).len(), 5);
    let d = auth.authorize(&AuthRequest::new(None, Scopes::VPS_READ, T0));
    assert_eq!(d.status(), 401);
    // Another realm, where the host names one.
    let auth = auth.with_realm(Realm::new("example api").unwrap());
    let d = auth.authorize(&AuthRequest::new(None, Scopes::VPS_READ, T0));
    assert_eq!(
        d.headers(auth.realm(), T0),
        vec![(
            "WWW-Authenticate",
            r#"Bearer realm="example api""#.to_string()
        )]
    );
    assert_eq!(Realm::new("with \"quote\""), Err(InvalidRealm));
    assert_eq!(Realm::new(""), Err(InvalidRealm));
    assert_eq!(Realm::new("tab\there"), Err(InvalidRealm));
}

#[cfg(feature = "http")]
#[test]
fn http_header_map() {
    let (auth, header) = setup(Preset::ReadOnly);
    let d = auth.authorize(&AuthRequest::new(
        Some(header.as_bytes()),
        Scopes::VPS_MANAGE,
        T0,
    ));
    let map = d.header_map(auth.realm(), T0);
    assert_eq!(map["x-ratelimit-limit"], "60");
    assert_eq!(map["x-ratelimit-remaining"], "59");
    assert_eq!(
        map["x-ratelimit-reset"],
        (T0.plus_secs(60)).to_string().as_str()
    );
    assert_eq!(
        map["www-authenticate"],
        r#"Bearer realm="sitequest", error="insufficient_scope", scope="vps:manage""#
    );
    let Decision::Denied(denial) = d else {
        panic!()
    };
    assert_eq!(denial.status_code(), http::StatusCode::FORBIDDEN);
}

#[test]
fn secrets_never_appear_in_debug_or_display() {
    let store = KeyStore::new();
    let issued = store.issue(&NewKey::new("a", Preset::Full), T0).unwrap();
    let text = issued.key.expose_secret().to_string();
    let secret_part = &text[8..68];
    for shown in [
        format!("{issued:?}"),
        format!("{:?}", issued.key),
        issued.key.to_string(),
        format!("{:?}", store.list()),
        format!("{store:?}"),
    ] {
        assert!(!shown.contains(secret_part), "{shown}");
    }
    // What is shown is the prefix and the last four characters.
    assert_eq!(issued.key.to_string(), format!("sq_live_…{}", &text[68..]));
}

#[test]
fn authenticate_then_decide_with_an_outside_limiter() {
    use sitequest_auth::{LimitDecision, RateLimiter};
    let store = Arc::new(KeyStore::new());
    let q = Quota::new(2, 10).unwrap();
    let issued = store
        .issue(&NewKey::new("ro", Preset::ReadOnly).rate_limit(q), T0)
        .unwrap();
    let header = format!("Bearer {}", &*issued.key.expose_secret());
    let auth = Authorizer::new(store);
    let key = auth
        .authenticate(&AuthRequest::new(
            Some(header.as_bytes()),
            Scopes::empty(),
            T0,
        ))
        .unwrap();
    assert_eq!(key.key_id, issued.record.id());
    assert_eq!(key.quota, q);
    assert_eq!(key.scopes, Scopes::READ_ONLY);
    assert_eq!(
        auth.authenticate(&AuthRequest::new(None, Scopes::empty(), T0))
            .unwrap_err()
            .reason(),
        DenialReason::MissingHeader
    );

    // Any limiter will do; here a separate one stands in for a shared backend.
    let outside = RateLimiter::new();
    let d = auth.decide(
        key.clone(),
        outside.check(key.key_id, key.quota, T0),
        Scopes::VPS_READ,
        T0,
    );
    assert_eq!(d.into_result().unwrap().rate_limit.remaining, 1);
    let d = auth.decide(
        key.clone(),
        outside.check(key.key_id, key.quota, T0),
        Scopes::VPS_MANAGE,
        T0,
    );
    assert_eq!(d.status(), 403);
    let limited = outside.check(key.key_id, key.quota, T0.plus_secs(3));
    assert!(matches!(limited, LimitDecision::Limited(_)));
    let d = auth.decide(key.clone(), limited, Scopes::VPS_READ, T0.plus_secs(3));
    let denial = d.into_result().unwrap_err();
    assert_eq!(denial.status(), 429);
    assert_eq!(denial.retry_after(), Some(7));
    // The authorizer's own windows were never used.
    assert!(auth.limiter().is_empty());
    assert_eq!(auth.window(&issued.record, T0).remaining, q.limit());

    // An outside limiter that cannot decide: the host fails closed with core's 503.
    let unavailable = Denial::limiter_unavailable(&key);
    assert_eq!(unavailable.status(), 503);
    assert_eq!(
        unavailable.body(),
        r#"{"error":"Rate limiter unavailable","code":"SERVICE_UNAVAILABLE","status":503}"#
    );
    assert_eq!(
        unavailable.headers(auth.realm(), T0),
        vec![("Retry-After", "1".to_string())]
    );
    assert_eq!(
        unavailable.reason(),
        DenialReason::LimiterUnavailable(key.key_id)
    );
    assert_eq!(unavailable.reason().label(), "limiter_unavailable");
    assert_eq!(unavailable.reason().key_id(), Some(key.key_id));
}
