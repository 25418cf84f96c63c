//! The receiving side of GitHub's secret scanning partner program for Sitequest API keys, sans
//! IO: when GitHub finds something that looks like a Sitequest key in a public repository, gist
//! or package, it posts it to an endpoint of ours, and we revoke it if it is a live key.
//!
//! The host does the HTTP and the storage; this crate does the rest:
//!
//! 1. **Keys.** The host fetches GitHub's signing keys (`GET
//!    https://api.github.com/meta/public_keys/secret_scanning`) and reads them with
//!    [`PartnerKeys::from_json`]; it fetches them again, at most now and then, when a request
//!    names a key identifier it does not know.
//! 2. **Verify.** On a `POST`, the host reads the raw body (with a size limit of its own) and the
//!    headers [`KEY_IDENTIFIER_HEADER`] and [`SIGNATURE_HEADER`] (`Github-Public-Key-Identifier`,
//!    `Github-Public-Key-Signature`) and calls [`PartnerKeys::verify`]: an ECDSA P-256 /
//!    SHA-256 signature over the body, byte for byte. **If it fails, the host answers 401 and
//!    changes nothing**: anyone can post to the endpoint, and an unsigned report must never
//!    revoke a key.
//! 3. **Parse.** [`parse_payload`] reads the list of reported tokens (at most [`MAX_ENTRIES`]);
//!    each [`ReportedToken`] holds the SHA-256 of the token, its type, where it was found, and
//!    the [`ApiKey`](sitequest_auth::ApiKey) it spells, if it is a well-formed key. The token
//!    text itself is not kept. A payload that does not parse gets a 400.
//! 4. **Look up and revoke.** For each report with a key, the host looks the key up by its
//!    [`digest`](sitequest_auth::ApiKey::digest). If it is a live key, the host revokes it (and
//!    tells its owner, naming the place it was found, [`ReportedToken::url`]); that report was a
//!    true positive. Anything else (not a key, an unknown key, a key already revoked) is a false
//!    positive.
//! 5. **Answer.** The host answers 200 with the JSON list of [`Verdict`]s, one per report, made
//!    by [`ReportedToken::verdict`]:
//!    `[{"token_hash":"…","token_type":"…","label":"true_positive"}]`.
//!
//! # The pattern GitHub scans for
//!
//! The partner program is given this regular expression ([`TOKEN_PATTERN`]):
//!
//! ```text
//! \bsq_live_[0-9a-f]{64}\b
//! ```
//!
//! # Example
//!
//! ```
//! use sitequest_auth::ApiKey;
//! use sitequest_auth_secret_scanning::{parse_payload, PartnerKeys, Verdict};
//!
//! /// The status and body of the answer to one request from GitHub. `revoke_if_live` looks
//! /// the key up, revokes it if it is live, and says whether it was.
//! fn handle(
//!     keys: &PartnerKeys,
//!     key_identifier: &str,
//!     signature: &str,
//!     body: &[u8],
//!     mut revoke_if_live: impl FnMut(&ApiKey) -> bool,
//! ) -> (u16, Vec<u8>) {
//!     if keys.verify(key_identifier, signature, body).is_err() {
//!         return (401, Vec::new());
//!     }
//!     let Ok(reports) = parse_payload(body) else {
//!         return (400, Vec::new());
//!     };
//!     let verdicts: Vec<Verdict> = reports
//!         .iter()
//!         .map(|report| {
//!             let live = match &report.key {
//!                 Some(key) => revoke_if_live(key),
//!                 None => false,
//!             };
//!             report.verdict(live)
//!         })
//!         .collect();
//!     match serde_json::to_vec(&verdicts) {
//!         Ok(json) => (200, json),
//!         Err(_) => (500, Vec::new()),
//!     }
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod keys;
mod payload;

pub use keys::{
    KeysFileError, PartnerKeys, SignatureError, KEY_IDENTIFIER_HEADER, MAX_KEYS, MAX_SIGNATURE_LEN,
    SIGNATURE_HEADER,
};
pub use payload::{
    parse_payload, Label, PayloadError, ReportedToken, Verdict, MAX_ENTRIES, MAX_TOKEN_LEN,
};

/// The regular expression to register with GitHub's secret scanning partner program: a
/// Sitequest key, `sq_live_` and 64 lowercase hex digits, as a whole word.
pub const TOKEN_PATTERN: &str = r"\bsq_live_[0-9a-f]{64}\b";

#[cfg(test)]
mod tests {
    use super::*;

    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::{DerSignature, SigningKey};
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};
    use rand_core::OsRng;
    use sha2::{Digest, Sha256};
    use sitequest_auth::ApiKey;

    const KEY_ID: &str = "test-key-1";

    /// A fresh signing key, and a keys file in GitHub's shape that lists its public key.
    fn signer_and_keys() -> (SigningKey, PartnerKeys) {
        let signing_key = SigningKey::random(&mut OsRng);
        let pem = signing_key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("PEM encoding");
        // GitHub serves the PEM without a trailing newline.
        let file = serde_json::json!({
            "public_keys": [
                { "key_identifier": KEY_ID, "key": pem.trim_end(), "is_current": true }
            ]
        });
        let keys = PartnerKeys::from_json(file.to_string().as_bytes()).expect("keys file");
        (signing_key, keys)
    }

    fn sign(signing_key: &SigningKey, body: &[u8]) -> String {
        let signature: DerSignature = signing_key.sign(body);
        STANDARD.encode(signature.as_bytes())
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn real_looking_key() -> String {
        format!("sq_live_{}", "0123456789abcdef".repeat(4))
    }

    #[test]
    fn a_signed_body_verifies() {
        let (signing_key, keys) = signer_and_keys();
        let body = br#"[{"token":"x","type":"sitequest_api_key"}]"#;
        let signature = sign(&signing_key, body);
        assert_eq!(keys.verify(KEY_ID, &signature, body), Ok(()));
        assert_eq!(keys.key_identifiers().collect::<Vec<_>>(), [KEY_ID]);
    }

    #[test]
    fn a_changed_body_does_not_verify() {
        let (signing_key, keys) = signer_and_keys();
        let signature = sign(&signing_key, br#"[{"token":"x","type":"t"}]"#);
        assert_eq!(
            keys.verify(KEY_ID, &signature, br#"[{"token":"y","type":"t"}]"#),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn another_signers_signature_does_not_verify() {
        let (_, keys) = signer_and_keys();
        let (other, _) = signer_and_keys();
        let body = b"[]";
        assert_eq!(
            keys.verify(KEY_ID, &sign(&other, body), body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn an_unknown_key_identifier_is_refused() {
        let (signing_key, keys) = signer_and_keys();
        let body = b"[]";
        assert_eq!(
            keys.verify("some-other-key", &sign(&signing_key, body), body),
            Err(SignatureError::UnknownKeyIdentifier)
        );
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let (_, keys) = signer_and_keys();
        let body = b"[]";
        assert_eq!(
            keys.verify(KEY_ID, "not base64 at all!", body),
            Err(SignatureError::NotBase64)
        );
        assert_eq!(keys.verify(KEY_ID, "", body), Err(SignatureError::NotDer));
        // Base64, but of bytes that are no DER signature.
        assert_eq!(
            keys.verify(KEY_ID, &STANDARD.encode(b"hello, world"), body),
            Err(SignatureError::NotDer)
        );
        assert_eq!(
            keys.verify(KEY_ID, &"A".repeat(MAX_SIGNATURE_LEN + 4), body),
            Err(SignatureError::TooLong {
                max: MAX_SIGNATURE_LEN
            })
        );
    }

    /// The key, body and signature of the validation sample in GitHub's partner program
    /// documentation.
    #[test]
    fn githubs_documented_sample_verifies() {
        let key_id = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";
        let pem = "-----BEGIN PUBLIC KEY-----\n\
                   MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq\n\
                   kCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==\n\
                   -----END PUBLIC KEY-----";
        let file = serde_json::json!({
            "public_keys": [{ "key_identifier": key_id, "key": pem, "is_current": true }]
        });
        let keys = PartnerKeys::from_json(file.to_string().as_bytes()).expect("keys file");
        let body = br#"[{"token":"some_token","type":"some_type","url":"some_url"}]"#;
        let signature = "MEUCIQDKZokqnCjrRtw0tni+2Ltvl/uiMJ1EGumEsp1BsNr32AIgQY1YXD2nlj+XNfGK4rBfkMJ1JDOQcYXxa2sY8FNkrKc=";
        assert_eq!(keys.verify(key_id, signature, body), Ok(()));
        assert_eq!(
            keys.verify(
                key_id,
                signature,
                br#"[{"token":"some_token","type":"some_type"}]"#
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn bad_keys_files_are_refused() {
        assert!(matches!(
            PartnerKeys::from_json(b"not json"),
            Err(KeysFileError::NotJson(_))
        ));
        assert!(matches!(
            PartnerKeys::from_json(br#"{"keys": []}"#),
            Err(KeysFileError::NotJson(_))
        ));
        assert!(matches!(
            PartnerKeys::from_json(br#"{"public_keys": []}"#),
            Err(KeysFileError::NoKeys)
        ));

        let error = PartnerKeys::from_json(
            br#"{"public_keys": [{"key_identifier": "abc123", "key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}]}"#,
        )
        .expect_err("not a key");
        assert!(
            matches!(&error, KeysFileError::NotP256Pem { key_identifier, .. } if key_identifier == "abc123")
        );
        assert!(error.to_string().contains("\"abc123\""), "{error}");

        let (signing_key, _) = signer_and_keys();
        let pem = signing_key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("PEM encoding");
        let entry = |id: usize| serde_json::json!({ "key_identifier": id.to_string(), "key": pem.as_str() });
        let many: Vec<_> = (0..=MAX_KEYS).map(entry).collect();
        let file = serde_json::json!({ "public_keys": many });
        assert!(matches!(
            PartnerKeys::from_json(file.to_string().as_bytes()),
            Err(KeysFileError::TooManyKeys { found, max: MAX_KEYS }) if found == MAX_KEYS + 1
        ));
        let file = serde_json::json!({ "public_keys": [entry(7), entry(7)] });
        assert!(matches!(
            PartnerKeys::from_json(file.to_string().as_bytes()),
            Err(KeysFileError::DuplicateKeyIdentifier { key_identifier }) if key_identifier == "7"
        ));
        let file =
            serde_json::json!({ "public_keys": (0..MAX_KEYS).map(entry).collect::<Vec<_>>() });
        assert!(PartnerKeys::from_json(file.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn a_payload_yields_hashes_and_keys() {
        let key_text = real_looking_key();
        let body = serde_json::json!([
            {
                "token": key_text.as_str(),
                "type": "sitequest_api_key",
                "url": "https://github.com/octocat/hello/blob/abc/.env",
                "source": "content",
                "extra": {"ignored": [1, 2, 3]}
            },
            { "token": "ghp_notoursatall", "type": "sitequest_api_key" }
        ])
        .to_string();
        let reports = parse_payload(body.as_bytes()).expect("payload");
        assert_eq!(reports.len(), 2);

        let expected = ApiKey::parse(&key_text).expect("a well-formed key");
        let first = &reports[0];
        assert_eq!(first.token_hash, sha256_hex(key_text.as_bytes()));
        assert_eq!(first.token_type, "sitequest_api_key");
        assert_eq!(
            first.url.as_deref(),
            Some("https://github.com/octocat/hello/blob/abc/.env")
        );
        assert_eq!(first.source.as_deref(), Some("content"));
        let key = first.key.as_ref().expect("the first token is a key");
        assert_eq!(key.digest().id(), expected.digest().id());

        let second = &reports[1];
        assert!(second.key.is_none());
        assert_eq!(second.token_hash, sha256_hex(b"ghp_notoursatall"));
        assert_eq!(second.url, None);
        assert_eq!(second.source, None);

        // Debug shows the public id, never the token.
        let debug = format!("{reports:?}");
        assert!(!debug.contains(&key_text[8..]), "{debug}");
        assert!(!debug.contains("ghp_notoursatall"), "{debug}");
        assert!(
            debug.contains(&expected.digest().id().to_string()),
            "{debug}"
        );
    }

    #[test]
    fn an_escaped_token_reads_the_same() {
        let key_text = real_looking_key();
        // `\u0030` is the first digit, `0`, written as a JSON escape.
        let body = format!(
            r#"[{{"token":"sq_live_\u0030{}","type":"t"}}]"#,
            &key_text[9..]
        );
        let reports = parse_payload(body.as_bytes()).expect("payload");
        assert_eq!(reports[0].token_hash, sha256_hex(key_text.as_bytes()));
        assert!(reports[0].key.is_some());
    }

    #[test]
    fn the_number_of_reports_is_bounded() {
        let entry = r#"{"token":"x","type":"t"}"#;
        let list = |n: usize| format!("[{}]", vec![entry; n].join(","));
        assert_eq!(
            parse_payload(list(MAX_ENTRIES).as_bytes()).map(|r| r.len()),
            Ok(MAX_ENTRIES)
        );
        assert_eq!(
            parse_payload(list(MAX_ENTRIES + 1).as_bytes()).map(|r| r.len()),
            Err(PayloadError::TooManyEntries { max: MAX_ENTRIES })
        );
        assert_eq!(parse_payload(b"[]").map(|r| r.len()), Ok(0));
    }

    #[test]
    fn the_token_length_is_bounded() {
        let fits = "a".repeat(MAX_TOKEN_LEN);
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        let body = serde_json::json!([
            { "token": fits.as_str(), "type": "t" },
            { "token": long.as_str(), "type": "t" }
        ])
        .to_string();
        assert_eq!(
            parse_payload(body.as_bytes()).map(|r| r.len()),
            Err(PayloadError::TokenTooLong {
                entry: 1,
                max: MAX_TOKEN_LEN
            })
        );
    }

    #[test]
    fn malformed_payloads_are_refused() {
        for body in [
            &b""[..],
            b"[",
            b"[{\"token\":\"x\",",
            b"\xff\xfe",
            b"[] []",
            b"nul",
        ] {
            assert!(
                matches!(parse_payload(body), Err(PayloadError::NotJson { .. })),
                "{body:?}"
            );
        }
        let key_text = real_looking_key();
        for body in [
            r#"{"token":"x","type":"t"}"#.to_owned(),
            r#"[{"type":"t"}]"#.to_owned(),
            r#"[{"token":"x"}]"#.to_owned(),
            r#"[{"token":7,"type":"t"}]"#.to_owned(),
            r#"[{"token":"x","type":"t","token":"y"}]"#.to_owned(),
            r#"[["x","t"]]"#.to_owned(),
            format!(r#"["{key_text}"]"#),
        ] {
            let error = parse_payload(body.as_bytes()).map(|r| r.len());
            assert!(
                matches!(error, Err(PayloadError::WrongShape { .. })),
                "{body}: {error:?}"
            );
            // The message never repeats the payload.
            if let Err(error) = error {
                assert!(!error.to_string().contains(&key_text[8..]));
            }
        }
    }

    #[test]
    fn a_verdict_serializes_as_github_expects() {
        let body =
            serde_json::json!([{ "token": real_looking_key(), "type": "sitequest_api_key" }])
                .to_string();
        let reports = parse_payload(body.as_bytes()).expect("payload");
        let hash = sha256_hex(real_looking_key().as_bytes());
        assert_eq!(
            serde_json::to_string(&reports[0].verdict(true)).expect("JSON"),
            format!(
                r#"{{"token_hash":"{hash}","token_type":"sitequest_api_key","label":"true_positive"}}"#
            )
        );
        assert_eq!(
            serde_json::to_string(&[reports[0].verdict(false)]).expect("JSON"),
            format!(
                r#"[{{"token_hash":"{hash}","token_type":"sitequest_api_key","label":"false_positive"}}]"#
            )
        );
    }

    #[test]
    fn the_pattern_is_the_registered_one() {
        assert_eq!(TOKEN_PATTERN, r"\bsq_live_[0-9a-f]{64}\b");
        assert_eq!(real_looking_key().len(), sitequest_auth::KEY_LEN);
    }
}
