//! The hasher of the tables keyed by [`KeyId`](crate::KeyId): the ids are already uniform, so
//! one multiply replaces SipHash.

use core::hash::{BuildHasherDefault, Hasher};

/// Hasher for already-uniform 64-bit ids: one multiply, so both the table's bucket bits (low)
/// and tag bits (high) depend on every bit of the id.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than `u64`; fold them in so the hasher stays correct.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) type IdBuildHasher = BuildHasherDefault<IdHasher>;
