//! The key store's table: lock-striped and open-addressed, with what a request reads of an entry
//! in one cache line of its own.
//!
//! 128 shards, chosen by the top 7 bits of a 64-bit id, each a linear-probing table behind its
//! own [`parking_lot::RwLock`]. A shard holds two arrays with the same indices: the hot parts of
//! its entries, 64 bytes each and aligned to a cache line, and pointers to their cold parts.
//! A lookup probes the hot array only, which is at most half full, so a miss stops at an unused
//! slot within a few probes and a hit reads one line beyond the shard's lock. Ids must be
//! uniform (the store's are the first 64 bits of a SHA-256): the slot is taken from the low bits
//! without further hashing.

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The part of an entry a lookup reads.
pub(crate) trait Hot {
    /// An unused slot.
    fn vacant() -> Self;
    /// Whether the slot holds an entry.
    fn is_used(&self) -> bool;
    /// The entry's id (meaningful only if used).
    fn id(&self) -> u64;
}

/// A shard's entries: a power of two of slots (or none before the first insert), at most half
/// used.
pub(crate) struct Slots<H, C> {
    hot: Box<[H]>,
    cold: Box<[Option<Box<C>>]>,
    len: usize,
}

/// A shard's lock, on lines of its own.
#[repr(align(128))]
struct Shard<H, C>(RwLock<Slots<H, C>>);

const SHARD_BITS: u32 = 7;
const SHARDS: usize = 1 << SHARD_BITS;
/// The fewest slots a shard allocates.
const MIN_SLOTS: usize = 8;

/// A lock-striped open-addressed table of entries split into a hot part `H` and a cold `C`.
pub(crate) struct Table<H, C> {
    shards: Box<[Shard<H, C>; SHARDS]>,
}

impl<H: Hot, C> Table<H, C> {
    /// A table with room for `capacity` entries before any shard grows.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        let slots = if per_shard == 0 {
            0
        } else {
            (per_shard * 2).next_power_of_two().max(MIN_SLOTS)
        };
        Self {
            shards: Box::new(core::array::from_fn(|_| {
                Shard(RwLock::new(Slots::with_slots(slots)))
            })),
        }
    }

    #[inline(always)]
    fn shard(&self, id: u64) -> &RwLock<Slots<H, C>> {
        &self.shards[(id >> (64 - SHARD_BITS)) as usize].0
    }

    /// The shard of `id`, for reading.
    #[inline(always)]
    pub(crate) fn read(&self, id: u64) -> RwLockReadGuard<'_, Slots<H, C>> {
        self.shard(id).read()
    }

    /// The shard of `id`, for writing.
    pub(crate) fn write(&self, id: u64) -> RwLockWriteGuard<'_, Slots<H, C>> {
        self.shard(id).write()
    }

    /// Calls `f` on every entry, one shard at a time.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&H, &C)) {
        for shard in self.shards.iter() {
            let slots = shard.0.read();
            for (h, c) in slots.hot.iter().zip(slots.cold.iter()) {
                if let Some(c) = c {
                    f(h, c);
                }
            }
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.read().len).sum()
    }
}

impl<H: Hot, C> Slots<H, C> {
    fn with_slots(n: usize) -> Self {
        Self {
            hot: (0..n).map(|_| H::vacant()).collect(),
            cold: (0..n).map(|_| None).collect(),
            len: 0,
        }
    }

    /// The slot of the entry with this id.
    #[inline(always)]
    pub(crate) fn find(&self, id: u64) -> Option<usize> {
        let mask = self.hot.len().checked_sub(1)?;
        let mut i = id as usize & mask;
        loop {
            let h = &self.hot[i];
            if !h.is_used() {
                return None;
            }
            if h.id() == id {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The hot part of the entry in slot `i` (from [`Slots::find`]).
    #[inline(always)]
    pub(crate) fn hot(&self, i: usize) -> &H {
        &self.hot[i]
    }

    /// The cold part of the entry in slot `i`.
    pub(crate) fn cold(&self, i: usize) -> Option<&C> {
        self.cold[i].as_deref()
    }

    /// Both parts of the entry with this id.
    pub(crate) fn get(&self, id: u64) -> Option<(&H, &C)> {
        let i = self.find(id)?;
        Some((&self.hot[i], self.cold[i].as_deref()?))
    }

    /// Both parts of the entry with this id, to change them (never the id).
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<(&mut H, &mut C)> {
        let i = self.find(id)?;
        Some((&mut self.hot[i], self.cold[i].as_deref_mut()?))
    }

    /// Stores an entry whose id no entry has (checked by the caller under the same lock).
    pub(crate) fn insert_new(&mut self, hot: H, cold: C) {
        debug_assert!(hot.is_used() && self.find(hot.id()).is_none());
        if (self.len + 1) * 2 > self.hot.len() {
            self.grow();
        }
        self.place(hot, Box::new(cold));
        self.len += 1;
    }

    fn place(&mut self, hot: H, cold: Box<C>) {
        let mask = self.hot.len() - 1;
        let mut i = hot.id() as usize & mask;
        while self.hot[i].is_used() {
            i = (i + 1) & mask;
        }
        self.hot[i] = hot;
        self.cold[i] = Some(cold);
    }

    fn grow(&mut self) {
        let n = (self.hot.len() * 2).max(MIN_SLOTS);
        let hot = core::mem::replace(&mut self.hot, (0..n).map(|_| H::vacant()).collect());
        let cold = core::mem::replace(&mut self.cold, (0..n).map(|_| None).collect());
        for (h, c) in hot.into_vec().into_iter().zip(cold.into_vec()) {
            if let Some(c) = c {
                self.place(h, c);
            }
        }
    }

    /// Takes out the entry with this id, moving back the entries after it that probed past its
    /// slot, so that every lookup still ends at the first unused slot.
    pub(crate) fn remove(&mut self, id: u64) -> Option<(H, Box<C>)> {
        let mut hole = self.find(id)?;
        let taken = (
            core::mem::replace(&mut self.hot[hole], H::vacant()),
            self.cold[hole].take()?,
        );
        self.len -= 1;
        let mask = self.hot.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            if !self.hot[j].is_used() {
                return Some(taken);
            }
            let home = self.hot[j].id() as usize & mask;
            // The entry at `j` may move to the hole unless its home lies cyclically in
            // (hole, j]: then a lookup from its home would no longer pass the hole.
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.hot.swap(hole, j);
                self.cold.swap(hole, j);
                hole = j;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct H(Option<u64>);

    impl Hot for H {
        fn vacant() -> Self {
            Self(None)
        }
        fn is_used(&self) -> bool {
            self.0.is_some()
        }
        fn id(&self) -> u64 {
            self.0.unwrap_or(0)
        }
    }

    proptest! {
        /// Inserts and removes, with ids crowded into few home slots (same low bits) so probe
        /// runs wrap and cross: the table agrees with a `HashMap` after every step.
        #[test]
        fn agrees_with_a_hash_map(ops in proptest::collection::vec((any::<bool>(), 0u64..64, any::<u32>()), 0..400)) {
            let mut slots: Slots<H, u32> = Slots::with_slots(0);
            let mut model: HashMap<u64, u32> = HashMap::new();
            for (insert, k, v) in ops {
                let id = (k << 58) | (k % 5) | 6;
                if insert {
                    if slots.find(id).is_none() {
                        slots.insert_new(H(Some(id)), v);
                        model.insert(id, v);
                    }
                } else {
                    prop_assert_eq!(slots.remove(id).map(|(_, c)| *c), model.remove(&id));
                }
                prop_assert_eq!(slots.len, model.len());
                prop_assert!(slots.len * 2 <= slots.hot.len());
                for (&id, &v) in &model {
                    prop_assert_eq!(slots.get(id).map(|(h, c)| (h.id(), *c)), Some((id, v)));
                }
            }
        }
    }

    #[test]
    fn shards_split_by_the_top_bits() {
        let table: Table<H, u32> = Table::with_capacity(0);
        for i in 0..1000u64 {
            let id = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut shard = table.write(id);
            if shard.find(id).is_none() {
                shard.insert_new(H(Some(id)), i as u32);
            }
        }
        assert_eq!(table.len(), 1000);
        let mut n = 0;
        table.for_each(|_, _| n += 1);
        assert_eq!(n, 1000);
        let id = 7u64.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        assert_eq!(table.read(id).get(id).map(|(_, c)| *c), Some(7));
        assert_eq!(table.write(id).remove(id).map(|(_, c)| *c), Some(7));
        assert_eq!(table.len(), 999);
        assert!(table.read(id).find(id).is_none());
    }
}
