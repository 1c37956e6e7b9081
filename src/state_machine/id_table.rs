//! A fixed-capacity hash table from a u128 id to a u32 value: open addressing with linear
//! probing, at most half full, allocated once. Deletion (only ever used to roll back a linked
//! chain) shifts later entries back, so the table needs no tombstones and never degrades.
//!
//! The hash is a fixed function of the id — no random seed — because every replica must build
//! byte-identical state from the same log. Ids are chosen by clients, so an adversarial client
//! could make its own ids collide; that costs it probe time, never correctness.

/// One slot: an id of 0 marks an empty slot (0 is never a valid id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    id: u128,
    value: u32,
}

/// A map from non-zero u128 ids to u32 values with a capacity fixed at construction.
pub struct IdTable {
    entries: Vec<Entry>,
    shift: u32,
    count: usize,
    count_max: usize,
}

impl IdTable {
    /// A table that can hold `count_max` ids.
    pub fn new(count_max: usize) -> IdTable {
        let slots = (count_max * 2).max(16).next_power_of_two();
        IdTable {
            entries: vec![Entry::default(); slots],
            shift: 64 - slots.trailing_zeros(),
            count: 0,
            count_max,
        }
    }

    /// The number of ids held.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The most ids the table may hold.
    pub fn count_max(&self) -> usize {
        self.count_max
    }

    #[inline]
    fn slot(&self, id: u128) -> usize {
        let lo = id as u64;
        let hi = (id >> 64) as u64;
        let mut x = lo ^ hi.rotate_left(29).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 32;
        x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        x ^= x >> 32;
        x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        (x >> self.shift) as usize
    }

    #[inline]
    fn next(&self, slot: usize) -> usize {
        (slot + 1) & (self.entries.len() - 1)
    }

    /// The value of `id`, if present.
    #[inline]
    pub fn get(&self, id: u128) -> Option<u32> {
        if id == 0 {
            return None;
        }
        let mut slot = self.slot(id);
        loop {
            let entry = &self.entries[slot];
            if entry.id == id {
                return Some(entry.value);
            }
            if entry.id == 0 {
                return None;
            }
            slot = self.next(slot);
        }
    }

    /// Writes every page of the table so that its memory is committed now.
    pub fn prefault(&mut self) {
        let size = self.entries.len() * core::mem::size_of::<Entry>();
        super::advise_huge_pages(self.entries.as_ptr().cast(), size);
        let step = 4096 / core::mem::size_of::<Entry>();
        for index in (0..self.entries.len()).step_by(step) {
            // A volatile write of the value already there: the compiler may not elide it.
            let entry = self.entries[index];
            // SAFETY: `index` is in bounds; the pointer is valid and aligned.
            unsafe { core::ptr::write_volatile(&mut self.entries[index], entry) };
        }
    }

    /// Hints the CPU to load the slot of `id`, so that a later `get` or `insert` does not wait
    /// for memory. Costs nothing when the table fits in cache.
    #[inline]
    pub fn prefetch(&self, id: u128) {
        prefetch(self.entries.as_ptr().wrapping_add(self.slot(id)));
    }

    /// Inserts `id`, which must not be present, with `value`.
    pub fn insert(&mut self, id: u128, value: u32) {
        assert!(id != 0);
        assert!(self.count < self.count_max, "id table full: capacity is checked before a batch");
        let mut slot = self.slot(id);
        loop {
            let entry = &mut self.entries[slot];
            assert!(entry.id != id, "id inserted twice");
            if entry.id == 0 {
                *entry = Entry { id, value };
                self.count += 1;
                return;
            }
            slot = self.next(slot);
        }
    }

    /// Replaces the value of `id`, which must be present.
    pub fn update(&mut self, id: u128, value: u32) {
        let mut slot = self.slot(id);
        loop {
            let entry = &mut self.entries[slot];
            assert!(entry.id != 0, "updated id is not present");
            if entry.id == id {
                entry.value = value;
                return;
            }
            slot = self.next(slot);
        }
    }

    /// Removes `id`, which must be present.
    pub fn remove(&mut self, id: u128) {
        let mut hole = self.slot(id);
        loop {
            assert!(self.entries[hole].id != 0, "removed id is not present");
            if self.entries[hole].id == id {
                break;
            }
            hole = self.next(hole);
        }
        // Backward-shift deletion: move each later entry of the probe run into the hole unless
        // its home slot lies cyclically after the hole (then it must stay where probes find it).
        let mask = self.entries.len() - 1;
        let mut slot = hole;
        loop {
            slot = self.next(slot);
            let entry = self.entries[slot];
            if entry.id == 0 {
                break;
            }
            let home = self.slot(entry.id);
            if (slot.wrapping_sub(home) & mask) >= (slot.wrapping_sub(hole) & mask) {
                self.entries[hole] = entry;
                hole = slot;
            }
        }
        self.entries[hole] = Entry::default();
        self.count -= 1;
    }
}

/// Hints the CPU to load the cache line at `pointer`; a hint only, valid for any address.
#[inline]
pub fn prefetch<T>(pointer: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch(pointer.cast::<i8>(), core::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = pointer;
}

#[cfg(test)]
mod tests {
    use super::IdTable;
    use crate::prng::Prng;
    use std::collections::HashMap;

    #[test]
    fn matches_a_hash_map_under_inserts_updates_and_removes() {
        let mut prng = Prng::new(7);
        let mut table = IdTable::new(300);
        let mut model: HashMap<u128, u32> = HashMap::new();
        let mut ids: Vec<u128> = Vec::new();
        for step in 0..20_000u32 {
            // Small id space: many collisions and long probe runs, including wrap-around.
            let id = u128::from(prng.range_inclusive(1, 600)) << (64 * (step % 2));
            match prng.below(3) {
                0 if model.len() < 300 && !model.contains_key(&id) => {
                    table.insert(id, step);
                    model.insert(id, step);
                    ids.push(id);
                }
                1 if !ids.is_empty() => {
                    let index = prng.below(ids.len() as u64) as usize;
                    let id = ids.swap_remove(index);
                    table.remove(id);
                    model.remove(&id);
                }
                _ if model.contains_key(&id) => {
                    table.update(id, step);
                    model.insert(id, step);
                }
                _ => {}
            }
            assert_eq!(table.count(), model.len());
            assert_eq!(table.get(id), model.get(&id).copied());
        }
        for (id, value) in &model {
            assert_eq!(table.get(*id), Some(*value));
        }
        assert_eq!(table.get(0), None);
    }
}
