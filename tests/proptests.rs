//! Properties of the parsers and the limiter over generated inputs.

use std::collections::HashMap;
use std::net::IpAddr;

use proptest::prelude::*;
use sitequest_auth::{
    parse_bearer, ApiKey, Cidr, CidrParseError, IpAllowlist, KeyId, LimitDecision, LimitPolicy,
    Quota, RateLimit, RateLimiter, Scopes, UnixTime,
};

fn any_secret() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

proptest! {
    /// The allocation-free renderer writes exactly what `format!` writes, including the
    /// values it serves from its static table and the spec's static policy.
    #[test]
    fn rate_limit_fields_render_like_format(
        limit in prop_oneof![Just(60u32), 0u32..2000, any::<u32>()],
        remaining in prop_oneof![0u32..1001, any::<u32>()],
        period in prop_oneof![Just(60u32), 1u32..4000, any::<u32>()],
        reset in any::<u64>(),
        now in any::<u64>(),
    ) {
        let r = RateLimit { limit, remaining, reset_at: at(reset), period_secs: period, policy: LimitPolicy::Key };
        let expected = vec![
            ("X-RateLimit-Limit", limit.to_string()),
            ("X-RateLimit-Remaining", remaining.to_string()),
            ("X-RateLimit-Reset", reset.to_string()),
            ("RateLimit-Policy", format!("\"default\";q={limit};w={period}")),
            ("RateLimit", format!("\"default\";r={remaining};t={}", reset.saturating_sub(now))),
        ];
        prop_assert_eq!(r.headers(at(now)), expected);
    }

    #[test]
    fn generate_print_parse_round_trip(secret in any_secret()) {
        let text = format!("sq_live_{}", hex::encode(secret));
        let key = ApiKey::parse(&text).unwrap();
        prop_assert_eq!(&*key.expose_secret(), &text);
        let again = ApiKey::parse(&key.expose_secret()).unwrap();
        prop_assert_eq!(again.digest(), key.digest());
        prop_assert_eq!(key.last4().to_string(), &text[68..]);
        // The header form parses to the same key.
        let header = format!("Bearer {text}");
        prop_assert_eq!(parse_bearer(header.as_bytes()).unwrap().digest(), key.digest());
    }

    #[test]
    fn digest_is_standard_sha256_of_the_secret(secret in any_secret()) {
        use sha2::{Digest, Sha256};
        let text = format!("sq_live_{}", hex::encode(secret));
        let want: [u8; 32] = Sha256::digest(secret).into();
        let digest = ApiKey::parse(&text).unwrap().digest();
        prop_assert_eq!(digest.as_bytes(), &want);
    }

    #[test]
    fn parsing_arbitrary_strings_never_panics(s in ".*") {
        let _ = ApiKey::parse(&s);
        let _ = parse_bearer(s.as_bytes());
        let _ = Scopes::parse_list(&s);
        let _ = Quota::parse(&s);
        let _ = s.parse::<KeyId>();
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = ApiKey::parse_bytes(&b);
        let _ = parse_bearer(&b);
    }

    #[test]
    fn near_miss_keys_are_refused(secret in any_secret(), pos in 0usize..72, byte in any::<u8>()) {
        let text = format!("sq_live_{}", hex::encode(secret));
        let mut bytes = text.clone().into_bytes();
        prop_assume!(bytes[pos] != byte);
        bytes[pos] = byte;
        let still_valid = pos >= 8 && matches!(byte, b'0'..=b'9' | b'a'..=b'f');
        prop_assert_eq!(ApiKey::parse_bytes(&bytes).is_ok(), still_valid);
        // Errors never repeat any of the key.
        if let Err(e) = ApiKey::parse_bytes(&bytes) {
            prop_assert!(!e.to_string().contains(&text[8..16]));
        }
    }

    #[test]
    fn bearer_whitespace_variants(secret in any_secret(), lead in "[ \t]{0,3}", mid in " {1,4}", trail in "[ \t]{0,3}", upper in any::<[bool; 6]>()) {
        let scheme: String = "bearer".chars().zip(upper).map(|(c, u)| if u { c.to_ascii_uppercase() } else { c }).collect();
        let text = format!("sq_live_{}", hex::encode(secret));
        let header = format!("{lead}{scheme}{mid}{text}{trail}");
        prop_assert_eq!(&*parse_bearer(header.as_bytes()).unwrap().expose_secret(), &text);
    }

    #[test]
    fn scope_list_round_trip(bits in 1u8..64, sep in prop_oneof![Just(","), Just(" "), Just(", "), Just("\t")]) {
        let scopes = Scopes::from_bits_truncate(bits);
        let list: Vec<&str> = scopes.names().collect();
        let text = list.join(sep);
        prop_assert_eq!(Scopes::parse_list(&text).unwrap(), scopes);
        prop_assert_eq!(Scopes::parse_list(&scopes.to_string()).unwrap(), scopes);
    }

    /// For any sequence of (key, time) events, each key gets exactly min(n, limit) requests per
    /// window, where time never goes backwards within the sequence.
    #[test]
    fn limiter_allows_exactly_min_n_limit(
        limit in 1u32..8,
        period in 1u32..120,
        events in proptest::collection::vec((0u64..6, 0u64..30), 1..400),
        stripes in 1usize..8,
    ) {
        let quota = Quota::new(limit, period).unwrap();
        let limiter = RateLimiter::with_stripes(stripes);
        let mut now = 1_700_000_000u64;
        let mut counts: HashMap<(u64, u64), u32> = HashMap::new();
        for (key, dt) in events {
            now += dt;
            let id = KeyId::from_u64(key.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let window = now / u64::from(period);
            let used = counts.entry((key, window)).or_default();
            let expect_allowed = *used < limit;
            let d = limiter.check(id, quota, at(now));
            prop_assert_eq!(d.is_allowed(), expect_allowed);
            if expect_allowed { *used += 1; }
            let r = d.rate_limit();
            prop_assert_eq!(r.limit, limit);
            prop_assert_eq!(r.remaining, limit - *used);
            prop_assert_eq!(r.reset_at, at((window + 1) * u64::from(period)));
            prop_assert!(matches!(d, LimitDecision::Allowed(_) | LimitDecision::Limited(_)));
        }
    }

    /// With arbitrary (also backwards) times, a key is allowed at most the limit in any window
    /// (counted by the window the limiter reports), plus at most one more window's worth for
    /// each correction: a time more than a window behind the latest time presented.
    #[test]
    fn limiter_grants_at_most_one_extra_window_per_clock_correction(
        events in proptest::collection::vec((0u64..3, 0u64..400, any::<bool>()), 1..400),
    ) {
        let quota = Quota::new(3, 60).unwrap();
        let limiter = RateLimiter::with_stripes(2);
        let mut per_window: HashMap<(u64, u64), u32> = HashMap::new();
        let mut latest = 0;
        let mut corrections = 0;
        for (key, t, sweep) in events {
            let now = 1_700_000_000 + t;
            if now + 60 < latest {
                corrections += 1;
            }
            latest = latest.max(now);
            if sweep {
                let _ = limiter.sweep(at(now));
                continue;
            }
            let id = KeyId::from_u64(key << 62);
            if let LimitDecision::Allowed(r) = limiter.check(id, quota, at(now)) {
                let n = per_window.entry((key, r.reset_at.as_secs())).or_default();
                *n += 1;
                prop_assert!(*n <= 3 * (1 + corrections), "{} in one window", n);
            }
        }
    }

    /// Whatever the clock did before, from any time `s` on a quota is never frozen: a request
    /// two windows later is allowed, and after a correction back by more than a window, a key
    /// that made no request at the corrected time gets the whole limit at once.
    #[test]
    fn a_clock_that_jumps_both_ways_never_freezes_a_quota(
        history in proptest::collection::vec((0u64..2, 0u64..100_000), 0..60),
        s in 0u64..100_000,
        period in 1u32..300,
    ) {
        let quota = Quota::new(2, period).unwrap();
        let limiter = RateLimiter::with_stripes(1);
        let key = KeyId::from_u64(1);
        let base = 1_700_000_000u64;
        // The stripe's latest time: it follows the clock forward, and back on a correction.
        let mut latest = 0;
        for (k, t) in history {
            // Other keys of the same stripe move its clock; `key` itself has no history.
            let _ = limiter.check(KeyId::from_u64(k + 2), quota, at(base + t));
            let t = base + t;
            if t >= latest || latest - t > u64::from(period) {
                latest = t;
            }
        }
        let now = base + s;
        let first = limiter.check(key, quota, at(now));
        if now + u64::from(period) < latest {
            // A correction: the key's window at `now` starts with this request.
            prop_assert!(first.is_allowed());
            prop_assert_eq!(first.rate_limit().reset_at, quota.window_end(at(now)));
        }
        let later = now + 2 * u64::from(period);
        prop_assert!(limiter.check(key, quota, at(later)).is_allowed());
    }
}

/// The decision over any mix of valid, revoked, expiring and unknown keys, required scopes and
/// clock moves: what the `authorize` fuzz target checks, with inputs a byte fuzzer rarely builds
/// (well-formed keys that are in the store).
mod decision {
    use std::collections::HashMap;
    use std::sync::Arc;

    use proptest::prelude::*;
    use sitequest_auth::{
        AuthRequest, Authorizer, Decision, ErrorCode, KeyStore, NewKey, Preset, Quota, Scopes,
    };

    use super::at;

    const T0: u64 = 1_800_000_000;

    proptest! {
        #[test]
        fn only_active_keys_with_the_scopes_get_in_and_never_over_the_limit(
            requests in proptest::collection::vec((0usize..5, any::<u8>(), -3i64..20), 1..200),
            // The minute counts in the keys' entries, another period in the store's limiter
            // for it.
            period in prop_oneof![Just(30u32), Just(60u32)],
        ) {
            let store = Arc::new(KeyStore::new());
            let keys = [
                store.issue(&NewKey::new("full", Preset::Full), at(T0)).unwrap(),
                store.issue(&NewKey::new("ro", Preset::ReadOnly), at(T0)).unwrap(),
                store.issue(&NewKey::new("revoked", Preset::Full), at(T0)).unwrap(),
                store.issue(&NewKey::new("ci", Preset::Full).expires_at(at(T0 + 60)), at(T0)).unwrap(),
            ];
            store.revoke(keys[2].record.id(), at(T0)).unwrap();
            let unknown = format!("Bearer sq_live_{}", "ab".repeat(32));
            let headers: Vec<String> = keys
                .iter()
                .map(|k| format!("Bearer {}", &*k.key.expose_secret()))
                .chain(std::iter::once(unknown))
                .collect();
            let auth = Authorizer::new(store).with_quota(Quota::new(4, period).unwrap());
            let mut now = T0;
            let mut counted: HashMap<(usize, u64), u32> = HashMap::new();
            for (k, bits, dt) in requests {
                now = now.saturating_add_signed(dt);
                let required = Scopes::from_bits_truncate(bits);
                let d = auth.authorize(&AuthRequest::new(Some(headers[k].as_bytes()), required, at(now)));
                let rate = match &d {
                    Decision::Granted(g) => {
                        prop_assert!(k == 0 || k == 1 || (k == 3 && now < T0 + 60));
                        prop_assert!(g.scopes.contains(required));
                        Some(g.rate_limit)
                    }
                    Decision::Denied(denial) => match denial.code() {
                        ErrorCode::Unauthorized => {
                            prop_assert!(k == 2 || k == 4 || (k == 3 && now >= T0 + 60));
                            None
                        }
                        ErrorCode::InsufficientScope => {
                            prop_assert_eq!(k, 1);
                            denial.rate_limit()
                        }
                        _ => {
                            prop_assert_eq!(denial.rate_limit().unwrap().remaining, 0);
                            None
                        }
                    },
                };
                if let Some(r) = rate {
                    let n = counted.entry((k, r.reset_at.as_secs())).or_default();
                    *n += 1;
                    prop_assert!(*n <= 4);
                    prop_assert_eq!(r.remaining, 4 - *n);
                }
            }
        }
    }
}

proptest! {
    /// An IPv4 range holds exactly the addresses that share its first `prefix` bits, whether
    /// written as IPv4 or as IPv4-mapped IPv6; its text parses back to it.
    #[test]
    fn ipv4_ranges_match_by_prefix(net in any::<u32>(), prefix in 0u8..=32, probe in any::<u32>()) {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
        let text = format!("{}/{prefix}", std::net::Ipv4Addr::from(net & mask));
        let cidr = Cidr::parse(&text).unwrap();
        prop_assert_eq!(cidr.to_string(), text.clone());
        prop_assert_eq!(Cidr::parse(&cidr.to_string()).unwrap(), cidr);
        let inside = probe & mask == net & mask;
        let v4 = std::net::Ipv4Addr::from(probe);
        prop_assert_eq!(cidr.contains(IpAddr::V4(v4)), inside);
        prop_assert_eq!(cidr.contains(IpAddr::V6(v4.to_ipv6_mapped())), inside);
        // Host bits past the prefix are refused, not silently dropped.
        if net & !mask != 0 {
            let host = format!("{}/{prefix}", std::net::Ipv4Addr::from(net));
            prop_assert!(Cidr::parse(&host).is_err());
        }
    }

    /// The same for IPv6, and no IPv6 range outside the mapped block holds an IPv4 address.
    #[test]
    fn ipv6_ranges_match_by_prefix(net in any::<u128>(), prefix in 0u8..=128, probe in any::<u128>()) {
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
        let addr = std::net::Ipv6Addr::from(net & mask);
        let text = format!("{addr}/{prefix}");
        let Ok(cidr) = Cidr::parse(&text) else {
            // Only a mapped range is rewritten (as IPv4), never refused.
            return Err(TestCaseError::fail(format!("{text} refused")));
        };
        let p = std::net::Ipv6Addr::from(probe);
        let inside = probe & mask == net & mask;
        if addr.to_ipv4_mapped().is_none() || prefix < 96 {
            prop_assert_eq!(cidr.contains(IpAddr::V6(p)), inside);
            prop_assert_eq!(cidr.to_string(), text);
        }
        if prefix >= 1 && addr.to_ipv4_mapped().is_none() {
            prop_assert!(!cidr.contains(IpAddr::V4(std::net::Ipv4Addr::from(probe as u32))));
        }
    }

    /// Allowlists: never more than the limit, and an address is allowed exactly when one of the
    /// ranges holds it.
    #[test]
    fn allowlists_allow_what_a_range_holds(nets in proptest::collection::vec((any::<u32>(), 8u8..=32), 0..40), probe in any::<u32>()) {
        let texts: Vec<String> = nets
            .iter()
            .map(|&(n, p)| format!("{}/{p}", std::net::Ipv4Addr::from(n & (u32::MAX << (32 - u32::from(p))))))
            .collect();
        match IpAllowlist::parse_list(texts.iter().map(String::as_str)) {
            Ok(list) => {
                prop_assert!(texts.len() <= 32);
                let ip = IpAddr::V4(probe.into());
                let any = texts.iter().any(|t| Cidr::parse(t).unwrap().contains(ip));
                prop_assert_eq!(list.allows(Some(ip)), texts.is_empty() || any);
                prop_assert_eq!(IpAllowlist::parse(&list.joined()).unwrap(), list);
            }
            Err(e) => {
                prop_assert!(texts.len() > 32);
                prop_assert_eq!(e, CidrParseError::TooMany);
            }
        }
    }
}

fn at(secs: u64) -> UnixTime {
    UnixTime::from_secs(secs)
}
