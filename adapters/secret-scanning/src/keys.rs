//! GitHub's signing keys, read from the answer of `GET /meta/public_keys/secret_scanning`, and the
//! check of a request's signature against them.

use core::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;

/// The most keys a public keys file may list (GitHub lists a handful).
pub const MAX_KEYS: usize = 64;

/// The longest signature header accepted, in base64 characters, checked before decoding.
///
/// A DER-encoded P-256 signature is at most 72 bytes, 96 characters of base64.
pub const MAX_SIGNATURE_LEN: usize = 200;

/// The request header naming the key GitHub signed with (`Github-Public-Key-Identifier`),
/// lowercase as HTTP/2 sends it and `http::HeaderName::from_static` wants it.
pub const KEY_IDENTIFIER_HEADER: &str = "github-public-key-identifier";

/// The request header holding the base64 of the DER-encoded ECDSA P-256 / SHA-256 signature
/// over the raw request body (`Github-Public-Key-Signature`), lowercase.
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// The shape of GitHub's answer; other fields (`is_current`) are ignored.
#[derive(Deserialize)]
struct KeysFile {
    public_keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
struct KeyEntry {
    key_identifier: String,
    key: String,
}

#[derive(Clone)]
struct PartnerKey {
    identifier: String,
    key: VerifyingKey,
}

/// GitHub's secret scanning signing keys, by key identifier.
///
/// Every listed key is accepted, current or not: GitHub names the key it signed with, and a
/// request signed with a key that has just been superseded is still genuine. When a request names
/// an identifier that is not here ([`SignatureError::UnknownKeyIdentifier`]), the host may fetch
/// the file again (rate-limited) and retry once.
///
/// Nothing here is secret: the keys are public and the identifiers are compared as plain strings.
#[derive(Clone)]
pub struct PartnerKeys {
    keys: Vec<PartnerKey>,
}

impl PartnerKeys {
    /// Reads GitHub's public keys file: `{"public_keys": [{"key_identifier": "…", "key":
    /// "-----BEGIN PUBLIC KEY-----\n…", "is_current": true}]}`. Unknown fields are ignored.
    ///
    /// # Errors
    ///
    /// [`KeysFileError`]: the bytes are not JSON of that shape, the list is empty or longer than
    /// [`MAX_KEYS`], an identifier is listed twice, or a key is not a P-256 public key in PEM
    /// (the error names its identifier).
    pub fn from_json(bytes: &[u8]) -> Result<Self, KeysFileError> {
        let file: KeysFile = serde_json::from_slice(bytes).map_err(KeysFileError::NotJson)?;
        if file.public_keys.is_empty() {
            return Err(KeysFileError::NoKeys);
        }
        if file.public_keys.len() > MAX_KEYS {
            return Err(KeysFileError::TooManyKeys {
                found: file.public_keys.len(),
                max: MAX_KEYS,
            });
        }
        let mut keys: Vec<PartnerKey> = Vec::with_capacity(file.public_keys.len());
        for entry in file.public_keys {
            if keys.iter().any(|k| k.identifier == entry.key_identifier) {
                return Err(KeysFileError::DuplicateKeyIdentifier {
                    key_identifier: entry.key_identifier,
                });
            }
            match VerifyingKey::from_public_key_pem(entry.key.trim()) {
                Ok(key) => keys.push(PartnerKey {
                    identifier: entry.key_identifier,
                    key,
                }),
                Err(error) => {
                    return Err(KeysFileError::NotP256Pem {
                        key_identifier: entry.key_identifier,
                        reason: error.to_string(),
                    })
                }
            }
        }
        Ok(Self { keys })
    }

    /// Checks a request: `key_identifier` and `signature_b64` are the values of the
    /// [`KEY_IDENTIFIER_HEADER`] and [`SIGNATURE_HEADER`] headers, `body` the raw request body,
    /// byte for byte as received (before any JSON parsing).
    ///
    /// # Errors
    ///
    /// [`SignatureError`]: the identifier is not a listed key, the signature is longer than
    /// [`MAX_SIGNATURE_LEN`], not base64, not a DER-encoded ECDSA signature, or does not verify.
    /// On any error the host answers 401 and changes nothing.
    pub fn verify(
        &self,
        key_identifier: &str,
        signature_b64: &str,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.identifier == key_identifier)
            .ok_or(SignatureError::UnknownKeyIdentifier)?;
        let signature_b64 = signature_b64.trim();
        if signature_b64.len() > MAX_SIGNATURE_LEN {
            return Err(SignatureError::TooLong {
                max: MAX_SIGNATURE_LEN,
            });
        }
        let der = STANDARD
            .decode(signature_b64)
            .map_err(|_| SignatureError::NotBase64)?;
        let signature = DerSignature::from_bytes(&der).map_err(|_| SignatureError::NotDer)?;
        key.key
            .verify(body, &signature)
            .map_err(|_| SignatureError::Mismatch)
    }

    /// The identifiers of the keys, in the file's order.
    pub fn key_identifiers(&self) -> impl Iterator<Item = &str> + '_ {
        self.keys.iter().map(|k| k.identifier.as_str())
    }
}

impl fmt::Debug for PartnerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartnerKeys")
            .field(
                "key_identifiers",
                &self.key_identifiers().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// GitHub's public keys file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    /// The bytes are not JSON, or not an object with a `public_keys` list of objects with string
    /// `key_identifier` and `key` fields.
    #[error(
        "the public keys file is not JSON with a `public_keys` list of `key_identifier` and \
         `key` strings: {0}"
    )]
    NotJson(serde_json::Error),
    /// The `public_keys` list is empty.
    #[error("the public keys file lists no keys")]
    NoKeys,
    /// The `public_keys` list is longer than [`MAX_KEYS`].
    #[error("the public keys file lists {found} keys; at most {max} are accepted")]
    TooManyKeys {
        /// How many keys the file lists.
        found: usize,
        /// The most accepted ([`MAX_KEYS`]).
        max: usize,
    },
    /// Two keys have the same identifier.
    #[error("the public keys file lists key identifier {key_identifier:?} more than once")]
    DuplicateKeyIdentifier {
        /// The repeated identifier.
        key_identifier: String,
    },
    /// A key is not a P-256 (`prime256v1`) public key in PEM (`-----BEGIN PUBLIC KEY-----`).
    #[error("key {key_identifier:?} is not a P-256 public key in PEM: {reason}")]
    NotP256Pem {
        /// The identifier of the key.
        key_identifier: String,
        /// What the decoder said.
        reason: String,
    },
}

/// A request's signature was not accepted: the host answers 401 and changes nothing.
///
/// The messages never repeat the request's header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The key identifier header names no listed key (the keys file may be stale).
    #[error("the request's key identifier is not among GitHub's public keys")]
    UnknownKeyIdentifier,
    /// The signature header is longer than any real signature.
    #[error("the signature header is longer than {max} characters")]
    TooLong {
        /// The longest accepted ([`MAX_SIGNATURE_LEN`]).
        max: usize,
    },
    /// The signature header is not standard, padded base64.
    #[error("the signature header is not base64")]
    NotBase64,
    /// The decoded signature is not a DER-encoded ECDSA P-256 signature.
    #[error("the signature is not a DER-encoded ECDSA P-256 signature")]
    NotDer,
    /// The signature does not verify against the body with the named key.
    #[error("the signature does not verify against the request body")]
    Mismatch,
}
