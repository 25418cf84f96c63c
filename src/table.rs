//! The key store's table: lock-striped, open-addressed, each entry inline in a slot of its own
//! two cache lines.
//!
//! 128 shards, chosen by the top 7 bits of a 64-bit id, each a linear-probing table behind its
//! own [`parking_lot::RwLock`]; a shard is at most half full, so a lookup that misses stops at an
//! empty slot within a few probes. An entry is found where it is stored: no control bytes, no
//! bucket pointing elsewhere, so a lookup at a million keys reads one slot (two adjacent lines)
//! beyond the shard's lock. Ids must be uniform (the store's are the first 64 bits of a
//! SHA-256): the slot is taken from the low bits without further hashing.

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// What a table holds: anything with a uniform 64-bit id.
pub(crate) trait Keyed {
    /// The entry's id.
    fn id(&self) -> u64;
}

/// One entry, or none, on two cache lines of its own.
#[repr(align(128))]
struct Slot<T>(Option<T>);

/// A shard's slots: a power of two of them (or none before the first insert), at most half
/// used.
pub(crate) struct Slots<T> {
    slots: Box<[Slot<T>]>,
    len: usize,
}

/// A shard's lock, on a line of its own.
#[repr(align(128))]
struct Shard<T>(RwLock<Slots<T>>);

const SHARD_BITS: u32 = 7;
const SHARDS: usize = 1 << SHARD_BITS;
/// The fewest slots a shard allocates.
const MIN_SLOTS: usize = 8;

/// A lock-striped open-addressed table.
pub(crate) struct Table<T> {
    shards: Box<[Shard<T>; SHARDS]>,
}

impl<T: Keyed> Table<T> {
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
    fn shard(&self, id: u64) -> &RwLock<Slots<T>> {
        &self.shards[(id >> (64 - SHARD_BITS)) as usize].0
    }

    /// The shard of `id`, for reading.
    #[inline(always)]
    pub(crate) fn read(&self, id: u64) -> RwLockReadGuard<'_, Slots<T>> {
        self.shard(id).read()
    }

    /// The shard of `id`, for writing.
    pub(crate) fn write(&self, id: u64) -> RwLockWriteGuard<'_, Slots<T>> {
        self.shard(id).write()
    }

    /// Calls `f` on every entry, one shard at a time.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&T)) {
        for shard in self.shards.iter() {
            shard
                .0
                .read()
                .slots
                .iter()
                .flat_map(|s| &s.0)
                .for_each(&mut f);
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.read().len).sum()
    }
}

impl<T: Keyed> Slots<T> {
    fn with_slots(n: usize) -> Self {
        Self {
            slots: (0..n).map(|_| Slot(None)).collect(),
            len: 0,
        }
    }

    /// The slot of the entry with this id.
    #[inline(always)]
    fn find(&self, id: u64) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = id as usize & mask;
        loop {
            match &self.slots[i].0 {
                None => return None,
                Some(e) if e.id() == id => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// The entry with this id.
    #[inline(always)]
    pub(crate) fn get(&self, id: u64) -> Option<&T> {
        self.find(id).and_then(|i| self.slots[i].0.as_ref())
    }

    /// The entry with this id, to change it (never its id).
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        self.find(id).and_then(|i| self.slots[i].0.as_mut())
    }

    /// Stores `entry`, whose id no entry has (checked by the caller under the same lock).
    pub(crate) fn insert_new(&mut self, entry: T) {
        debug_assert!(self.find(entry.id()).is_none());
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.place(entry);
        self.len += 1;
    }

    fn place(&mut self, entry: T) {
        let mask = self.slots.len() - 1;
        let mut i = entry.id() as usize & mask;
        while self.slots[i].0.is_some() {
            i = (i + 1) & mask;
        }
        self.slots[i].0 = Some(entry);
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = core::mem::replace(&mut self.slots, (0..n).map(|_| Slot(None)).collect());
        for slot in old.into_vec() {
            if let Some(e) = slot.0 {
                self.place(e);
            }
        }
    }

    /// Takes out the entry with this id, moving back the entries after it that probed past its
    /// slot, so that every lookup still ends at the first empty slot.
    pub(crate) fn remove(&mut self, id: u64) -> Option<T> {
        let mut hole = self.find(id)?;
        let taken = self.slots[hole].0.take();
        self.len -= 1;
        let mask = self.slots.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some(e) = &self.slots[j].0 else {
                return taken;
            };
            let home = e.id() as usize & mask;
            // The entry at `j` may move to the hole unless its home lies cyclically in
            // (hole, j]: then a lookup from its home would no longer pass the hole.
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole].0 = self.slots[j].0.take();
                hole = j;
            }
        }
    }

    /// Number of entries in this shard.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct E(u64, u32);

    impl Keyed for E {
        fn id(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn slots_hold_one_entry_each_on_their_own_lines() {
        assert_eq!(core::mem::size_of::<Slot<E>>(), 128);
        assert_eq!(core::mem::align_of::<Slot<E>>(), 128);
    }

    proptest! {
        /// Inserts and removes, with ids crowded into few home slots (low bits masked) so
        /// probe runs wrap and cross: the table agrees with a `HashMap` after every step.
        #[test]
        fn agrees_with_a_hash_map(ops in proptest::collection::vec((any::<bool>(), 0u64..64, any::<u32>()), 0..400)) {
            let mut slots: Slots<E> = Slots::with_slots(0);
            let mut model: HashMap<u64, u32> = HashMap::new();
            for (insert, k, v) in ops {
                // Same low bits for many ids, and ids near the wrap of a small table.
                let id = (k << 58) | (k % 5) | 6;
                if insert {
                    if slots.get(id).is_none() {
                        slots.insert_new(E(id, v));
                        model.insert(id, v);
                    }
                } else {
                    prop_assert_eq!(slots.remove(id).map(|e| e.1), model.remove(&id));
                }
                prop_assert_eq!(slots.len(), model.len());
                prop_assert!(slots.len * 2 <= slots.slots.len());
                for (&id, &v) in &model {
                    prop_assert_eq!(slots.get(id).map(|e| e.1), Some(v));
                }
            }
        }
    }

    #[test]
    fn shards_split_by_the_top_bits() {
        let table: Table<E> = Table::with_capacity(0);
        for i in 0..1000u64 {
            let id = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut shard = table.write(id);
            if shard.get(id).is_none() {
                shard.insert_new(E(id, i as u32));
            }
        }
        assert_eq!(table.len(), 1000);
        let mut n = 0;
        table.for_each(|_| n += 1);
        assert_eq!(n, 1000);
        let id = 7u64.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        assert_eq!(table.read(id).get(id), Some(&E(id, 7)));
        assert_eq!(table.write(id).remove(id), Some(E(id, 7)));
        assert_eq!(table.len(), 999);
    }
}
