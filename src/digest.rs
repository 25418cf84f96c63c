//! The stored form of a key (SHA-256 of its secret bytes), its constant-time equality, and the
//! public key id derived from it.

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::key::{load8, ApiKey, SECRET_LEN};

/// One SHA-256 input block.
type Block = sha2::digest::generic_array::GenericArray<u8, sha2::digest::consts::U64>;

/// The SHA-256 initial hash value (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// SHA-256 of a key's 32 secret bytes: what a store keeps instead of the key.
///
/// `digest = SHA-256(secret)`, where `secret` is the 32 bytes that the key's 64 hex digits
/// encode (not the 72-character text). That is one SHA-256 compression per presented key.
///
/// # Security
///
/// Equality (`==`) compares all 32 bytes in constant time with [`subtle`]; the result becomes a
/// `bool` only at the end. A digest does not let anyone recover or present the key, but treat it
/// as confidential anyway: it is the verifier for a credential.
// Aligned to eight bytes, so that it is copied and read a word at a time: at a byte alignment it
// sat at odd offsets in the results that carry it, was copied in mixed widths and read back
// wider than it was written (a store-forwarding stall on every lookup).
#[derive(Clone, Copy)]
#[repr(align(8))]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Hashes the 32 secret bytes of a key: standard SHA-256 of those 32 bytes.
    ///
    /// A 32-byte message fits one 64-byte block with its padding, so this builds the padded
    /// block directly and runs the SHA-256 compression function once on it, skipping the
    /// streaming hasher's buffering. The result is identical to `Sha256::digest(secret)`.
    #[must_use]
    #[inline]
    pub fn of_secret(secret: &[u8; SECRET_LEN]) -> Self {
        let mut words = crate::key::words_of(secret);
        let digest = Self::of_words(&words);
        words.zeroize();
        digest
    }

    /// As [`KeyDigest::of_secret`], for the secret as four little-endian words.
    #[inline]
    pub(crate) fn of_words(secret: &[u64; 4]) -> Self {
        let mut block = Block::default();
        for (chunk, word) in block[..SECRET_LEN].chunks_exact_mut(8).zip(secret) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        block[SECRET_LEN] = 0x80;
        // Message length in bits, big-endian, in the last 8 bytes: 256 = 0x0100.
        block[62] = 0x01;
        let mut state = SHA256_IV;
        sha2::compress256(&mut state, core::slice::from_ref(&block));
        // Clear the stack copy of the secret. `black_box` keeps the stores from being removed;
        // a byte-wise volatile zeroize here would cost more than the compression.
        block.fill(0);
        core::hint::black_box(&block);
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        Self(out)
    }

    /// Wraps 32 bytes previously obtained from [`KeyDigest::as_bytes`].
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 digest bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lowercase hex digits, the form used for export.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits produced by [`KeyDigest::to_hex`].
    ///
    /// # Errors
    ///
    /// [`DigestParseError`] when the text is not exactly 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, DigestParseError> {
        if text.len() != 64 {
            return Err(DigestParseError);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| DigestParseError)?;
        Ok(Self(bytes))
    }

    /// The public id of the key with this digest.
    #[must_use]
    #[inline]
    pub fn id(&self) -> KeyId {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        KeyId(u64::from_be_bytes(head))
    }
}

impl ApiKey {
    /// The stored form of this key: SHA-256 of its 32 secret bytes.
    #[must_use]
    pub fn digest(&self) -> KeyDigest {
        KeyDigest::of_words(self.words())
    }
}

impl ConstantTimeEq for KeyDigest {
    /// Compares all 32 bytes as four 64-bit words, each with `subtle`, combining the results as
    /// `Choice`s: no branch or early exit depends on the data.
    #[inline]
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        let mut eq = subtle::Choice::from(1);
        for (a, b) in self.0.chunks_exact(8).zip(other.0.chunks_exact(8)) {
            eq &= load8(a).ct_eq(&load8(b));
        }
        eq
    }
}

impl PartialEq for KeyDigest {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for KeyDigest {}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The id is enough to tell digests apart in a log.
        write!(f, "KeyDigest({}…)", self.id())
    }
}

/// The text is not a digest: exactly 64 hex digits are expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("digest must be exactly 64 hex digits")]
pub struct DigestParseError;

/// The public id of a key: safe to log, to show, and to put in URLs.
///
/// The id is the first 64 bits of the key's [`KeyDigest`], printed as `kid_` and 16 hex digits.
/// It is not part of the secret and reveals nothing usable about it (finding a key for an id is
/// a SHA-256 preimage search). Because it is already uniformly distributed, stores and the limiter
/// use it as its own hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(u64);

impl KeyId {
    /// The prefix of an id's text form.
    pub const PREFIX: &'static str = "kid_";

    /// Wraps a raw id value.
    #[must_use]
    pub const fn from_u64(value: u64) -> Self {
        Self(value)
    }

    /// The raw id value.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:016x}", Self::PREFIX, self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl core::str::FromStr for KeyId {
    type Err = KeyIdParseError;

    /// Parses `kid_` followed by exactly 16 lowercase hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix(Self::PREFIX).ok_or(KeyIdParseError)?;
        if digits.len() != 16
            || !digits
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(KeyIdParseError);
        }
        u64::from_str_radix(digits, 16)
            .map(Self)
            .map_err(|_| KeyIdParseError)
    }
}

/// The text is not a key id: `kid_` and 16 lowercase hex digits are expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("key id must be kid_ followed by 16 lowercase hex digits")]
pub struct KeyIdParseError;

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{KeyDigest, KeyId};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    impl Serialize for KeyId {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    impl<'de> Deserialize<'de> for KeyId {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            text.parse().map_err(serde::de::Error::custom)
        }
    }

    impl Serialize for KeyDigest {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&self.to_hex())
        }
    }

    impl<'de> Deserialize<'de> for KeyDigest {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            KeyDigest::from_hex(&text).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha256_of_the_secret_bytes() {
        // SHA-256 of 32 zero bytes, a published test value.
        let d = KeyDigest::of_secret(&[0u8; 32]);
        assert_eq!(
            d.to_hex(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        assert_eq!(d.id().to_string(), "kid_66687aadf862bd77");
    }

    #[test]
    fn one_block_compression_is_standard_sha256() {
        use sha2::{Digest as _, Sha256};
        for seed in 0u8..=255 {
            let secret = [seed; 32];
            let mut varied = secret;
            varied[usize::from(seed) % 32] ^= 0x5a;
            for s in [secret, varied] {
                let want: [u8; 32] = Sha256::digest(s).into();
                assert_eq!(KeyDigest::of_secret(&s).as_bytes(), &want);
            }
        }
    }

    #[test]
    fn equality_compares_every_byte() {
        let a = KeyDigest::from_bytes([7; 32]);
        for i in 0..32 {
            let mut other = [7; 32];
            other[i] ^= 1;
            assert_ne!(a, KeyDigest::from_bytes(other));
        }
        assert_eq!(a, KeyDigest::from_bytes([7; 32]));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let d = KeyDigest::from_bytes([0xab; 32]);
        assert_eq!(KeyDigest::from_hex(&d.to_hex()).unwrap(), d);
        assert_eq!(KeyDigest::from_hex("ab"), Err(DigestParseError));
        assert_eq!(KeyDigest::from_hex(&"zz".repeat(32)), Err(DigestParseError));
    }

    #[test]
    fn key_id_text_form() {
        let id: KeyId = "kid_00000000000000ff".parse().unwrap();
        assert_eq!(id.as_u64(), 255);
        assert_eq!(id.to_string(), "kid_00000000000000ff");
        assert!("kid_ff".parse::<KeyId>().is_err());
        assert!("kid_00000000000000FF".parse::<KeyId>().is_err());
        assert!("key_00000000000000ff".parse::<KeyId>().is_err());
        assert!("kid_+0000000000000ff".parse::<KeyId>().is_err());
    }
}
