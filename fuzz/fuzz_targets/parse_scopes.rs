//! Scope lists, quotas and key ids from arbitrary text: never panic, and what parses prints back
//! to something that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sitequest_auth::{KeyId, Quota, ScopeParseError, Scopes};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Scopes::parse_list(text) {
        Ok(scopes) => {
            assert!(!scopes.is_empty());
            assert_eq!(Scopes::parse_list(&scopes.to_string()).unwrap(), scopes);
        }
        Err(ScopeParseError::Unknown { name }) => {
            assert!(name.len() <= 64);
            assert!(text.contains(name.as_str()));
        }
        Err(_) => {}
    }
    if let Ok(q) = Quota::parse(text) {
        assert_eq!(Quota::parse(&q.to_string()).unwrap(), q);
    }
    if let Ok(id) = text.parse::<KeyId>() {
        assert_eq!(id.to_string(), text);
    }
});
