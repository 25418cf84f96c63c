//! Parsing of the raw `Authorization: Bearer <key>` header value.

use crate::digest::KeyDigest;
use crate::key::{ApiKey, KeyParseError};

/// Why an `Authorization` value was not a usable bearer key. No variant carries any of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BearerError {
    /// The scheme is not `Bearer` (or nothing follows it).
    #[error("authorization scheme is not Bearer")]
    NotBearer,
    /// `Bearer` is followed by no token.
    #[error("bearer token is missing")]
    MissingToken,
    /// The token is not a well-formed key.
    #[error("bearer token is not a valid key: {0}")]
    InvalidKey(#[source] KeyParseError),
}

const SCHEME: &[u8; 6] = b"bearer";

/// Parses a raw `Authorization` header value, which may not be UTF-8, into a key.
///
/// Accepted: optional leading whitespace, the scheme `Bearer` in any letter case, one or more
/// spaces, the key, optional trailing spaces or tabs (RFC 9110 §11.4, RFC 6750 §2.1).
///
/// ```
/// use sitequest_auth::{parse_bearer, BearerError};
/// let key = "sq_live_0000000000000000000000000000000000000000000000000000000000000001";
/// assert!(parse_bearer(format!("bearer  {key} ").as_bytes()).is_ok());
/// assert_eq!(parse_bearer(b"Basic dXNlcjpwYXNz").unwrap_err(), BearerError::NotBearer);
/// ```
///
/// # Errors
///
/// [`BearerError`] for any other shape.
#[inline]
pub fn parse_bearer(value: &[u8]) -> Result<ApiKey, BearerError> {
    ApiKey::parse_bytes(bearer_token(value)?).map_err(BearerError::InvalidKey)
}

/// [`parse_bearer`] and the key's digest in one step, for the authorizer's hot path: the key is
/// hashed in the frame that parsed it. Moved out of the parser's result first, it was copied in
/// other widths than it was written and read back from the copy (store-forwarding stalls that
/// cost a tenth of a grant).
#[inline(always)]
pub(crate) fn bearer_digest(value: &[u8]) -> Result<KeyDigest, BearerError> {
    match ApiKey::parse_bytes(bearer_token(value)?) {
        Ok(key) => Ok(key.digest()),
        Err(e) => Err(BearerError::InvalidKey(e)),
    }
}

/// The token of a raw `Bearer` `Authorization` value, whatever the token is: the one parser of
/// the scheme, for hosts with bearer tokens of their own (an admin token, say) as well as for
/// [`parse_bearer`].
///
/// ```
/// use sitequest_auth::{bearer_token, BearerError};
/// assert_eq!(bearer_token(b" BEARER  admin-token\t"), Ok(&b"admin-token"[..]));
/// assert_eq!(bearer_token(b"Bearer"), Err(BearerError::MissingToken));
/// ```
///
/// # Errors
///
/// [`BearerError::NotBearer`] or [`BearerError::MissingToken`].
#[inline]
pub fn bearer_token(value: &[u8]) -> Result<&[u8], BearerError> {
    let value = trim_ows(value);
    let Some(head) = value.first_chunk::<8>() else {
        // Too short for a token; tell "Bearer" alone from anything else.
        return Err(if value.eq_ignore_ascii_case(SCHEME) {
            BearerError::MissingToken
        } else {
            BearerError::NotBearer
        });
    };
    // The scheme, case-insensitively, with one word compare: setting bit 5 lowercases ASCII
    // letters, and only 'B'/'b', 'E'/'e', 'A'/'a' and 'R'/'r' map onto "bearer".
    if (u64::from_le_bytes(*head) | CASE_BITS) & SCHEME_MASK != SCHEME_WORD {
        return Err(BearerError::NotBearer);
    }
    if head[6] != b' ' {
        // As in "Bearerx ...": another scheme that starts with the same letters.
        return Err(BearerError::NotBearer);
    }
    let rest = &value[SCHEME.len()..];
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    if token.is_empty() {
        return Err(BearerError::MissingToken);
    }
    Ok(token)
}

/// `bearer` as the low six bytes of a little-endian word.
const SCHEME_WORD: u64 = u64::from_le_bytes(*b"bearer\0\0");
/// The low six bytes.
const SCHEME_MASK: u64 = 0x0000_ffff_ffff_ffff;
/// Bit 5 of each of the low six bytes.
const CASE_BITS: u64 = 0x0000_2020_2020_2020;

/// Strips spaces and horizontal tabs at both ends.
#[inline]
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sq_live_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn accepted_forms() {
        for v in [
            format!("Bearer {KEY}"),
            format!("bearer {KEY}"),
            format!("BEARER {KEY}"),
            format!("bEaReR {KEY}"),
            format!("Bearer    {KEY}"),
            format!("Bearer {KEY}  \t"),
            format!(" \tBearer {KEY}"),
        ] {
            let key = parse_bearer(v.as_bytes()).unwrap_or_else(|e| panic!("{v:?}: {e}"));
            assert_eq!(&*key.expose_secret(), KEY);
        }
    }

    #[test]
    fn refused_forms() {
        let cases: Vec<(Vec<u8>, BearerError)> = vec![
            (b"".to_vec(), BearerError::NotBearer),
            (b"Bearer".to_vec(), BearerError::MissingToken),
            (b"Bearer   ".to_vec(), BearerError::MissingToken),
            (format!("Basic {KEY}").into_bytes(), BearerError::NotBearer),
            (
                format!("Bearer\t{KEY}").into_bytes(),
                BearerError::NotBearer,
            ),
            (
                format!("Bearerx {KEY}").into_bytes(),
                BearerError::NotBearer,
            ),
            (KEY.as_bytes().to_vec(), BearerError::NotBearer),
            (
                format!("Bearer {KEY} extra").into_bytes(),
                BearerError::InvalidKey(KeyParseError::WrongLength { found: 78 }),
            ),
            (
                format!("Bearer {KEY},").into_bytes(),
                BearerError::InvalidKey(KeyParseError::WrongLength { found: 73 }),
            ),
            (
                b"Bearer sq_test_x".to_vec(),
                BearerError::InvalidKey(KeyParseError::WrongPrefix),
            ),
            (
                b"Bearer \xff\xfe".to_vec(),
                BearerError::InvalidKey(KeyParseError::WrongPrefix),
            ),
        ];
        for (v, want) in cases {
            assert_eq!(
                parse_bearer(&v).unwrap_err(),
                want,
                "{:?}",
                String::from_utf8_lossy(&v)
            );
        }
    }
}
