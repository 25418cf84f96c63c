//! API keys: the `sq_live_` format, generation, strict parsing and the redacted secret type.

use core::fmt;

use rand::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

/// The prefix every Sitequest API key starts with.
pub const KEY_PREFIX: &str = "sq_live_";

/// Length of a key's text form: the prefix plus 64 hex digits.
pub const KEY_LEN: usize = KEY_PREFIX.len() + 2 * SECRET_LEN;

/// Number of random bytes behind a key (256 bits).
pub const SECRET_LEN: usize = 32;

/// An API key: 32 secret bytes, shown to people as `sq_live_` followed by 64 lowercase hex digits.
///
/// # Security
///
/// The bytes are zeroized when the value is dropped. `Debug` and `Display` print only the prefix
/// and the last four characters (`sq_live_…1a2b`); the full text is available only through
/// [`ApiKey::expose_secret`], so it cannot reach a log by accident. The type is deliberately not
/// `Clone`.
pub struct ApiKey {
    /// The 32 secret bytes as four little-endian words (bytes `8i..8i+8` in word `i`), so that
    /// parsing, hashing and zeroizing work a word at a time.
    secret: [u64; 4],
}

impl ApiKey {
    /// Generates a new key from the operating system's CSPRNG.
    #[must_use]
    pub fn generate() -> Self {
        Self::generate_with(&mut rand::rngs::OsRng)
    }

    /// Generates a new key from the given cryptographically secure generator.
    #[must_use]
    pub fn generate_with<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = Zeroizing::new([0u8; SECRET_LEN]);
        rng.fill_bytes(&mut bytes[..]);
        Self {
            secret: words_of(&bytes),
        }
    }

    /// Parses a presented key, strictly: the exact prefix `sq_live_`, then exactly 64 lowercase
    /// hex digits, nothing before or after.
    ///
    /// # Errors
    ///
    /// [`KeyParseError`] says what is wrong (prefix, length, or the position of the first bad
    /// character) without repeating any part of the input.
    pub fn parse(text: &str) -> Result<Self, KeyParseError> {
        Self::parse_bytes(text.as_bytes())
    }

    /// Parses a presented key from raw bytes, which need not be UTF-8.
    ///
    /// # Errors
    ///
    /// As for [`ApiKey::parse`].
    // Always inlined: returned through memory from a call, an error was read back wider than it
    // was written, and every refusal stalled on a store-forwarding miss.
    #[inline(always)]
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, KeyParseError> {
        if bytes.len() != KEY_LEN {
            // A wrong prefix is the more useful message when the input is not a key at all.
            let n = bytes.len().min(KEY_PREFIX.len());
            if bytes[..n] != KEY_PREFIX.as_bytes()[..n] {
                return Err(KeyParseError::WrongPrefix);
            }
            return Err(KeyParseError::WrongLength { found: bytes.len() });
        }
        let (prefix, digits) = bytes.split_at(KEY_PREFIX.len());
        if prefix != KEY_PREFIX.as_bytes() {
            return Err(KeyParseError::WrongPrefix);
        }
        // Every digit is checked first, in a loop the compiler turns into vector compares, so a
        // forged key is refused before any decoding; the first bad character's position is
        // then found eight flags at a time.
        let Ok(digits) = <&[u8; 64]>::try_from(digits) else {
            return Err(KeyParseError::WrongLength { found: bytes.len() });
        };
        let mut flags = [0u8; 64];
        for (flag, &b) in flags.iter_mut().zip(digits) {
            let digit = b.wrapping_sub(b'0') < 10;
            let letter = b.wrapping_sub(b'a') < 6;
            *flag = u8::from(!(digit | letter));
        }
        if flags.iter().fold(0u8, |any, &f| any | f) != 0 {
            let offset = flags
                .chunks_exact(8)
                .enumerate()
                .find_map(|(i, eight)| {
                    let w = load8(eight);
                    (w != 0).then(|| i * 8 + w.trailing_zeros() as usize / 8)
                })
                .unwrap_or(0);
            return Err(KeyParseError::BadCharacter {
                position: KEY_PREFIX.len() + offset,
            });
        }
        let mut secret = [0u64; 4];
        for (word, sixteen) in secret.iter_mut().zip(digits.chunks_exact(16)) {
            let lo = decode8(load8(&sixteen[..8]));
            let hi = decode8(load8(&sixteen[8..]));
            *word = u64::from(lo) | (u64::from(hi) << 32);
        }
        Ok(Self { secret })
    }

    /// Returns the full key text, `sq_live_` + 64 hex digits, in a buffer zeroized on drop.
    ///
    /// This is the only way to see the plaintext. Show it to its owner once, at creation, and
    /// store only [`ApiKey::digest`](crate::ApiKey::digest).
    #[must_use]
    pub fn expose_secret(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(KEY_LEN));
        text.push_str(KEY_PREFIX);
        let bytes = self.bytes();
        let mut digits = Zeroizing::new([0u8; 2 * SECRET_LEN]);
        // Encoding into a slice of the right size cannot fail.
        let _ = hex::encode_to_slice(&bytes[..], &mut digits[..]);
        for &d in digits.iter() {
            text.push(char::from(d));
        }
        text
    }

    /// The secret as four little-endian words, for [`ApiKey::digest`](crate::ApiKey::digest).
    pub(crate) fn words(&self) -> &[u64; 4] {
        &self.secret
    }

    /// The last four characters of the key text, safe to display to help people tell keys apart.
    #[must_use]
    pub fn last4(&self) -> Last4 {
        let [.., a, b] = self.secret[3].to_le_bytes();
        let mut digits = [0u8; 4];
        let _ = hex::encode_to_slice([a, b], &mut digits);
        Last4(digits)
    }

    /// The secret bytes, in a buffer zeroized on drop.
    fn bytes(&self) -> Zeroizing<[u8; SECRET_LEN]> {
        let mut bytes = Zeroizing::new([0u8; SECRET_LEN]);
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(self.secret) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }
}

impl Drop for ApiKey {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({KEY_PREFIX}…{})", self.last4())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_PREFIX}…{}", self.last4())
    }
}

/// The four little-endian words of 32 secret bytes.
pub(crate) fn words_of(bytes: &[u8; SECRET_LEN]) -> [u64; 4] {
    let mut words = [0u64; 4];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *word = load8(chunk);
    }
    words
}

/// Eight bytes as a little-endian word.
#[inline(always)]
pub(crate) fn load8(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(w)
}

/// Each byte of a word set to `b`.
const fn splat(b: u8) -> u64 {
    b as u64 * 0x0101_0101_0101_0101
}

/// Decodes eight lowercase hex characters (a little-endian word, all valid)
/// into four bytes (a little-endian `u32`) with plain integer arithmetic.
#[inline(always)]
fn decode8(w: u64) -> u32 {
    // '0'..='9' is 0x30..=0x39 (low nibble is the value); 'a'..='f' is 0x61..=0x66 (low nibble
    // plus 9), and only letters have bit 6 set.
    let v = (w & splat(0x0f)) + ((w >> 6) & splat(0x01)) * 9;
    // Byte 2k of `t` is (v[2k] << 4) | v[2k + 1]; gather bytes 0, 2, 4 and 6.
    let t = (v << 4) | (v >> 8);
    let packed =
        (t & 0xff) | ((t >> 8) & 0xff00) | ((t >> 16) & 0xff_0000) | ((t >> 24) & 0xff00_0000);
    packed as u32
}

/// Value of each byte as a lowercase hex digit, or `0xff` for any other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

#[inline]
fn hex_value(b: u8) -> u8 {
    HEX_VALUE[usize::from(b)]
}

/// The last four hex characters of a key, kept for display ("…1a2b").
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Last4([u8; 4]);

impl Last4 {
    /// Builds the value from four lowercase hex characters.
    ///
    /// # Errors
    ///
    /// [`Last4Error`] when the text is not exactly four lowercase hex digits.
    pub fn new(text: &str) -> Result<Self, Last4Error> {
        let bytes = text.as_bytes();
        if bytes.len() != 4 || bytes.iter().any(|&b| hex_value(b) > 0x0f) {
            return Err(Last4Error);
        }
        Ok(Self([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// The four characters as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII hex digits.
        core::str::from_utf8(&self.0).unwrap_or("????")
    }
}

impl fmt::Debug for Last4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Last4({})", self.as_str())
    }
}

impl fmt::Display for Last4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for Last4 {
    type Err = Last4Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// The text given for [`Last4`] is not four lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("last4 must be exactly four lowercase hex digits")]
pub struct Last4Error;

/// Why a presented key was refused by [`ApiKey::parse`]. No variant carries any of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyParseError {
    /// The text does not start with `sq_live_`.
    #[error("key does not start with the prefix sq_live_")]
    WrongPrefix,
    /// The text is not 72 characters long.
    #[error("key is {found} bytes long, expected 72 (sq_live_ and 64 hex digits)")]
    WrongLength {
        /// Length of the presented text, in bytes.
        found: usize,
    },
    /// A character after the prefix is not a lowercase hex digit.
    #[error("key has a character that is not a lowercase hex digit at position {position}")]
    BadCharacter {
        /// Zero-based byte offset of the first offending character in the key text.
        position: usize,
    },
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::Last4;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    impl Serialize for Last4 {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.as_str())
        }
    }

    impl<'de> Deserialize<'de> for Last4 {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            // Owned, so records also deserialize from readers and `serde_json::Value`s.
            let text = String::deserialize(d)?;
            Last4::new(&text).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "sq_live_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn generated_key_has_the_spec_format() {
        let key = ApiKey::generate();
        let text = key.expose_secret();
        assert_eq!(text.len(), 72);
        assert!(text.starts_with("sq_live_"));
        assert!(text[8..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn two_generated_keys_differ() {
        assert_ne!(
            *ApiKey::generate().expose_secret(),
            *ApiKey::generate().expose_secret()
        );
    }

    #[test]
    fn parse_round_trips() {
        let key = ApiKey::parse(SAMPLE).unwrap();
        assert_eq!(&*key.expose_secret(), SAMPLE);
        assert_eq!(key.last4().as_str(), "eeff");
    }

    #[test]
    fn parse_errors_are_specific() {
        assert_eq!(
            ApiKey::parse(
                "sq_test_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
            )
            .unwrap_err(),
            KeyParseError::WrongPrefix
        );
        assert_eq!(
            ApiKey::parse("Bearer").unwrap_err(),
            KeyParseError::WrongPrefix
        );
        assert_eq!(
            ApiKey::parse("").unwrap_err(),
            KeyParseError::WrongLength { found: 0 }
        );
        assert_eq!(
            ApiKey::parse(&SAMPLE[..71]).unwrap_err(),
            KeyParseError::WrongLength { found: 71 }
        );
        assert_eq!(
            ApiKey::parse(&format!("{SAMPLE}0")).unwrap_err(),
            KeyParseError::WrongLength { found: 73 }
        );
        let mut upper = SAMPLE.to_owned();
        upper.replace_range(30..31, "A");
        assert_eq!(
            ApiKey::parse(&upper).unwrap_err(),
            KeyParseError::BadCharacter { position: 30 }
        );
        let mut odd = SAMPLE.as_bytes().to_vec();
        odd[71] = 0xff;
        assert_eq!(
            ApiKey::parse_bytes(&odd).unwrap_err(),
            KeyParseError::BadCharacter { position: 71 }
        );
    }

    #[test]
    fn error_messages_never_echo_the_input() {
        let mut bad = SAMPLE.to_owned();
        bad.replace_range(71..72, "z");
        let err = ApiKey::parse(&bad).unwrap_err().to_string();
        assert_eq!(
            err,
            "key has a character that is not a lowercase hex digit at position 71"
        );
        assert!(!err.contains("00112233"));
    }

    #[test]
    fn word_decoder_matches_the_table_on_every_byte() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut chars = *b"0123abcd";
                chars[pos] = b;
                let w = u64::from_le_bytes(chars);
                // A whole key made of these eight characters: refused at the first bad one.
                let text: Vec<u8> = KEY_PREFIX.bytes().chain(chars.repeat(8)).collect();
                let first_bad = chars.iter().position(|&c| hex_value(c) > 0x0f);
                match (ApiKey::parse_bytes(&text), first_bad) {
                    (Ok(_), None) => {}
                    (Err(KeyParseError::BadCharacter { position }), Some(i)) => {
                        assert_eq!(position, KEY_PREFIX.len() + i, "byte {b:#x} at {pos}");
                    }
                    (other, _) => panic!("byte {b:#x} at {pos}: {other:?}"),
                }
                if first_bad.is_none() {
                    let value = decode8(w);
                    let mut want = [0u8; 4];
                    hex::decode_to_slice(chars, &mut want).unwrap();
                    assert_eq!(value.to_le_bytes(), want);
                }
            }
        }
    }

    #[test]
    fn debug_and_display_redact() {
        let key = ApiKey::parse(SAMPLE).unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(sq_live_…eeff)");
        assert_eq!(key.to_string(), "sq_live_…eeff");
    }

    #[test]
    fn last4_validation() {
        assert_eq!(Last4::new("a1b2").unwrap().to_string(), "a1b2");
        assert_eq!(Last4::new("A1B2"), Err(Last4Error));
        assert_eq!(Last4::new("abc"), Err(Last4Error));
    }
}
