//! Address ranges, allowlists and X-Forwarded-For chains from arbitrary bytes: never panic, what
//! parses prints back to the same value, and a client address is always the peer or an entry
//! of the header.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use sitequest_auth::{Cidr, IpAllowlist, TrustedProxies, MAX_ALLOWED_RANGES};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = Cidr::parse(text) {
            assert_eq!(Cidr::parse(&c.to_string()).unwrap(), c);
            assert!(c.contains(c.network()));
        }
        if let Ok(list) = IpAllowlist::parse(text) {
            assert!(list.ranges().len() <= MAX_ALLOWED_RANGES);
            assert_eq!(IpAllowlist::parse(&list.joined()).unwrap(), list);
            for r in list.ranges() {
                assert!(list.allows(Some(r.network())));
            }
        }
    }
    let proxies = TrustedProxies::parse_list(["10.0.0.0/8", "::1/128"]).unwrap();
    let peer: IpAddr = "10.0.0.1".parse().unwrap();
    let fields: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let client = proxies.client_address(peer, fields.iter().copied());
    if client != peer {
        // Anything else came from the header.
        let named = fields
            .iter()
            .flat_map(|f| f.split(|&b| b == b','))
            .any(|entry| {
                let Ok(text) = std::str::from_utf8(entry.trim_ascii()) else {
                    return false;
                };
                let ip = text
                    .parse::<IpAddr>()
                    .or_else(|_| text.parse::<std::net::SocketAddr>().map(|a| a.ip()));
                ip.is_ok_and(|ip| ip.to_canonical() == client)
            });
        assert!(named, "{client} is neither the peer nor in the header");
    }
});
