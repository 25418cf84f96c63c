//! `Authorization` header parsing from arbitrary bytes: never panics, and an accepted value is
//! `Bearer` (any case), spaces, and exactly the key, with only whitespace around.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sitequest_auth::parse_bearer;

fn is_ows(b: &u8) -> bool {
    *b == b' ' || *b == b'\t'
}

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = parse_bearer(data) {
        let text = key.expose_secret();
        let start = data.iter().position(|b| !is_ows(b)).unwrap();
        let end = data.len() - data.iter().rev().position(|b| !is_ows(b)).unwrap();
        let value = &data[start..end];
        assert!(value[..6].eq_ignore_ascii_case(b"bearer"));
        assert!(value.ends_with(text.as_bytes()));
        let middle = &value[6..value.len() - text.len()];
        assert!(!middle.is_empty() && middle.iter().all(|&b| b == b' '));
    }
});
