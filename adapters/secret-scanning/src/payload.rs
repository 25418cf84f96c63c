//! The reported tokens (the request body, once its signature is checked) and the verdicts that
//! answer them.

use core::cell::Cell;
use core::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sitequest_auth::ApiKey;
use zeroize::Zeroizing;

/// The most token reports one payload may hold.
pub const MAX_ENTRIES: usize = 1000;

/// The longest reported token accepted, in bytes (a Sitequest key is 72).
pub const MAX_TOKEN_LEN: usize = 1024;

/// One token GitHub found in public, with the token itself already reduced to its hash and, when
/// it is one, the Sitequest key it spells.
///
/// The token text is not kept. `Debug` prints the hash, type, location and the key's public id
/// ([`KeyId`](sitequest_auth::KeyId)), never the token.
pub struct ReportedToken {
    /// SHA-256 of the token's bytes, 64 lowercase hex digits: the `token_hash` GitHub expects
    /// back in the verdict.
    pub token_hash: String,
    /// The `type` GitHub gave the token (the secret type name agreed with GitHub), echoed back in
    /// the verdict.
    pub token_type: String,
    /// Where the token was found (`url`), if GitHub said.
    pub url: Option<String>,
    /// What kind of place it was found in (`source`: `content`, `commit`, `npm`, …), if GitHub
    /// said.
    pub source: Option<String>,
    /// The key the token spells, if it is exactly `sq_live_` and 64 lowercase hex digits. Look
    /// it up by [`ApiKey::digest`]; the key is zeroized on drop.
    pub key: Option<ApiKey>,
}

impl ReportedToken {
    /// The answer for this token: `live` is whether it was a working Sitequest key when reported
    /// (found in the store and not yet revoked, before this report revoked it).
    #[must_use]
    pub fn verdict(&self, live: bool) -> Verdict {
        Verdict {
            token_hash: self.token_hash.clone(),
            token_type: self.token_type.clone(),
            label: if live {
                Label::TruePositive
            } else {
                Label::FalsePositive
            },
        }
    }
}

impl fmt::Debug for ReportedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportedToken")
            .field("token_hash", &self.token_hash)
            .field("token_type", &self.token_type)
            .field("url", &self.url)
            .field("source", &self.source)
            .field("key_id", &self.key.as_ref().map(|key| key.digest().id()))
            .finish()
    }
}

/// One entry of the answer: the host sends the list of verdicts, as JSON, with status 200.
///
/// Serializes as `{"token_hash":"…","token_type":"…","label":"true_positive"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The reported token's hash, as in [`ReportedToken::token_hash`].
    pub token_hash: String,
    /// The reported token's type, as GitHub sent it.
    pub token_type: String,
    /// Whether the token was a live key.
    pub label: Label,
}

/// The label of a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// `"true_positive"`: the token was a working Sitequest key.
    TruePositive,
    /// `"false_positive"`: it was not (not a key, unknown, or already revoked).
    FalsePositive,
}

/// The payload could not be read. The host answers 400 (the signature was good, so GitHub sent
/// it) and changes nothing.
///
/// The messages never repeat any part of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The body is not JSON (or not UTF-8).
    #[error("the payload is not JSON (line {line}, column {column})")]
    NotJson {
        /// Line of the first error, from 1.
        line: usize,
        /// Column of the first error, from 1.
        column: usize,
    },
    /// The body is JSON but not a list of objects with string `token` and `type` fields.
    #[error(
        "the payload is not a list of token reports with string `token` and `type` fields \
         (line {line}, column {column})"
    )]
    WrongShape {
        /// Line of the first error, from 1.
        line: usize,
        /// Column of the first error, from 1.
        column: usize,
    },
    /// The list is longer than [`MAX_ENTRIES`].
    #[error("the payload reports more than {max} tokens")]
    TooManyEntries {
        /// The most accepted ([`MAX_ENTRIES`]).
        max: usize,
    },
    /// A token is longer than [`MAX_TOKEN_LEN`] bytes.
    #[error("token report {entry} (counting from 0) has a token longer than {max} bytes")]
    TokenTooLong {
        /// The position of the report in the list, from 0.
        entry: usize,
        /// The longest accepted ([`MAX_TOKEN_LEN`]).
        max: usize,
    },
}

/// Reads a payload: a JSON list of `{"token": "…", "type": "…", "url": "…", "source": "…"}`
/// (`url` and `source` optional, other fields ignored), at most [`MAX_ENTRIES`] of them.
///
/// Call it only on a body whose signature [`PartnerKeys::verify`](crate::PartnerKeys::verify)
/// accepted. Each token is hashed and tried as a key as it is read, straight from `body` (or,
/// for a token written with JSON escapes, from the parser's scratch buffer); no copy of it is
/// kept. Never panics, whatever the bytes.
///
/// # Errors
///
/// [`PayloadError`]: not JSON, not a list of token reports, more than [`MAX_ENTRIES`] of them, or
/// a token longer than [`MAX_TOKEN_LEN`] bytes.
pub fn parse_payload(body: &[u8]) -> Result<Vec<ReportedToken>, PayloadError> {
    let state = State {
        entry: Cell::new(0),
        overflow: Cell::new(None),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = ListSeed(&state)
        .deserialize(&mut deserializer)
        .and_then(|reports| deserializer.end().map(|()| reports));
    parsed.map_err(|error| match state.overflow.get() {
        Some(Overflow::Entries) => PayloadError::TooManyEntries { max: MAX_ENTRIES },
        Some(Overflow::TokenLen { entry }) => PayloadError::TokenTooLong {
            entry,
            max: MAX_TOKEN_LEN,
        },
        None if error.is_data() => PayloadError::WrongShape {
            line: error.line(),
            column: error.column(),
        },
        None => PayloadError::NotJson {
            line: error.line(),
            column: error.column(),
        },
    })
}

/// Which bound a payload broke, recorded beside serde's error so it can be reported typed.
#[derive(Clone, Copy)]
enum Overflow {
    Entries,
    TokenLen { entry: usize },
}

/// Shared by the visitors of one parse.
struct State {
    /// The position of the report being read.
    entry: Cell<usize>,
    overflow: Cell<Option<Overflow>>,
}

/// The fields of a report; any other is skipped.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Token,
    Type,
    Url,
    Source,
    #[serde(other)]
    Other,
}

/// The list of reports, stopping at the first one past [`MAX_ENTRIES`].
#[derive(Clone, Copy)]
struct ListSeed<'s>(&'s State);

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = Vec<ReportedToken>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = Vec<ReportedToken>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of token reports")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut reports = Vec::new();
        loop {
            self.0.entry.set(reports.len());
            if reports.len() == MAX_ENTRIES {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    self.0.overflow.set(Some(Overflow::Entries));
                    return Err(de::Error::custom("too many token reports"));
                }
                return Ok(reports);
            }
            match seq.next_element_seed(ReportSeed(self.0))? {
                Some(report) => reports.push(report),
                None => return Ok(reports),
            }
        }
    }
}

/// One report: an object (not the array form serde also accepts for structs).
#[derive(Clone, Copy)]
struct ReportSeed<'s>(&'s State);

impl<'de> DeserializeSeed<'de> for ReportSeed<'_> {
    type Value = ReportedToken;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ReportSeed<'_> {
    type Value = ReportedToken;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a token report object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut token: Option<HashedToken> = None;
        let mut token_type: Option<String> = None;
        let mut url: Option<Option<String>> = None;
        let mut source: Option<Option<String>> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Token => {
                    if token.is_some() {
                        return Err(de::Error::duplicate_field("token"));
                    }
                    token = Some(map.next_value_seed(TokenSeed(self.0))?);
                }
                Field::Type => {
                    if token_type.is_some() {
                        return Err(de::Error::duplicate_field("type"));
                    }
                    token_type = Some(map.next_value()?);
                }
                Field::Url => {
                    if url.is_some() {
                        return Err(de::Error::duplicate_field("url"));
                    }
                    url = Some(map.next_value()?);
                }
                Field::Source => {
                    if source.is_some() {
                        return Err(de::Error::duplicate_field("source"));
                    }
                    source = Some(map.next_value()?);
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let token = token.ok_or_else(|| de::Error::missing_field("token"))?;
        let token_type = token_type.ok_or_else(|| de::Error::missing_field("type"))?;
        Ok(ReportedToken {
            token_hash: token.hash,
            token_type,
            url: url.flatten(),
            source: source.flatten(),
            key: token.key,
        })
    }
}

/// What is kept of a token: its hash, and the key it spells.
struct HashedToken {
    hash: String,
    key: Option<ApiKey>,
}

/// A token string, hashed and parsed where serde hands it over, never copied.
#[derive(Clone, Copy)]
struct TokenSeed<'s>(&'s State);

impl<'de> DeserializeSeed<'de> for TokenSeed<'_> {
    type Value = HashedToken;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for TokenSeed<'_> {
    type Value = HashedToken;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a token string")
    }

    fn visit_str<E: de::Error>(self, token: &str) -> Result<Self::Value, E> {
        if token.len() > MAX_TOKEN_LEN {
            self.0.overflow.set(Some(Overflow::TokenLen {
                entry: self.0.entry.get(),
            }));
            return Err(E::custom("token too long"));
        }
        Ok(HashedToken {
            hash: hex::encode(Sha256::digest(token.as_bytes())),
            key: ApiKey::parse(token).ok(),
        })
    }

    fn visit_string<E: de::Error>(self, token: String) -> Result<Self::Value, E> {
        let token = Zeroizing::new(token);
        self.visit_str(token.as_str())
    }
}
