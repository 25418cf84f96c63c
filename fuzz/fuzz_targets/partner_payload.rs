//! GitHub secret scanning input from arbitrary bytes: neither the payload parser nor the keys-file
//! parser panics; every parsed report's token hash is 64 lowercase hex digits, and a report's key
//! is the token it was hashed from; no made-up signature verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use sitequest_auth_secret_scanning::{
    parse_payload, PartnerKeys, MAX_ENTRIES, MAX_KEYS, MAX_SIGNATURE_LEN,
};

fuzz_target!(|data: &[u8]| {
    match parse_payload(data) {
        Ok(reports) => {
            assert!(reports.len() <= MAX_ENTRIES);
            for report in &reports {
                assert_eq!(report.token_hash.len(), 64);
                assert!(report
                    .token_hash
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
                if let Some(key) = &report.key {
                    let text = key.expose_secret();
                    assert_eq!(
                        report.token_hash,
                        hex::encode(Sha256::digest(text.as_bytes()))
                    );
                    // Debug shows the key's public id, never its secret digits.
                    assert!(!format!("{report:?}").contains(&text[8..]));
                }
                let verdict = report.verdict(report.key.is_some());
                assert_eq!(verdict.token_hash, report.token_hash);
                assert_eq!(verdict.token_type, report.token_type);
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }

    match PartnerKeys::from_json(data) {
        Ok(keys) => {
            let ids: Vec<&str> = keys.key_identifiers().collect();
            assert!(!ids.is_empty() && ids.len() <= MAX_KEYS);
            // GitHub's documented sample signature is over a body that is no keys file, so it
            // never verifies over one; an oversized signature is refused before decoding.
            let foreign = "MEUCIQDKZokqnCjrRtw0tni+2Ltvl/uiMJ1EGumEsp1BsNr32AIgQY1YXD2nlj+XNfGK4rBfkMJ1JDOQcYXxa2sY8FNkrKc=";
            assert!(keys.verify(ids[0], foreign, data).is_err());
            assert!(keys
                .verify(ids[0], &"A".repeat(MAX_SIGNATURE_LEN + 1), data)
                .is_err());
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
