//! Key parsing from arbitrary bytes: never panics; whatever parses prints back to the same text,
//! and the `&str` and byte parsers agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sitequest_auth::{ApiKey, KeyParseError, KEY_LEN};

fuzz_target!(|data: &[u8]| {
    let parsed = ApiKey::parse_bytes(data);
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(ApiKey::parse(text).is_ok(), parsed.is_ok());
    }
    match parsed {
        Ok(key) => {
            assert_eq!(key.expose_secret().as_bytes(), data);
            assert_eq!(key.last4().as_str().as_bytes(), &data[KEY_LEN - 4..]);
            // Redacted forms never hold the secret part.
            assert!(!format!("{key:?}{key}").contains(std::str::from_utf8(&data[8..68]).unwrap()));
        }
        Err(KeyParseError::WrongLength { found }) => assert_eq!(found, data.len()),
        Err(KeyParseError::BadCharacter { position }) => {
            assert_eq!(data.len(), KEY_LEN);
            assert!(position >= 8 && position < KEY_LEN);
            assert!(!matches!(data[position], b'0'..=b'9' | b'a'..=b'f'));
        }
        Err(e) => {
            // The message never repeats the input.
            let _ = e.to_string();
        }
    }
});
