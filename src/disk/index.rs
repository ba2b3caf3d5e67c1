//! The index region: buckets of 8 slots, each slot a (tag, log position) pair of atomics that
//! lives in the shared mapping.
//!
//! Readers in any process read slots without a lock, so a slot may be seen mid-update (tag of
//! one key, position of another). That is harmless by construction: a slot only ever holds the
//! position of a complete record or 0, and the reader verifies the record it copies (its own
//! position, key and checksum) before trusting it. The index is therefore a hint, and the record
//! is the truth.

use super::format::{BUCKET_SLOTS, SLOT_BYTES};
use std::sync::atomic::{AtomicU64, Ordering};

/// One index slot. `tag == 0` means empty.
#[repr(C)]
pub struct Slot {
    tag: AtomicU64,
    pos: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_BYTES as usize);

/// The stored form of a key hash: never 0, which marks an empty slot.
pub fn tag_of(hash: u64) -> u64 {
    hash | 1
}

impl Slot {
    pub fn tag(&self) -> u64 {
        self.tag.load(Ordering::Acquire)
    }

    pub fn pos(&self) -> u64 {
        self.pos.load(Ordering::Acquire)
    }

    /// Points the slot at a record. Callers hold the writer lock; the record is already complete.
    pub fn publish(&self, tag: u64, pos: u64) {
        if self.tag.load(Ordering::Relaxed) != tag {
            // Empty the slot first so a reader never pairs the new tag with the old position.
            self.tag.store(0, Ordering::Release);
        }
        self.pos.store(pos, Ordering::Release);
        self.tag.store(tag, Ordering::Release);
    }

    /// Empties the slot. The position is left as it was: a reader that read the old tag just
    /// before may still pair it with the position it reads now, and that must be a position
    /// this key was published at (the value deleted, which a get racing the delete may
    /// return), not 0, which is the position of the file's first record, as old as it gets.
    pub fn clear(&self) {
        self.tag.store(0, Ordering::Release);
    }
}

/// A view of the index region of the mapping.
pub struct Index {
    slots: *const Slot,
    buckets: u64,
}

// SAFETY: Index only hands out shared references to `Slot`s, which are atomics; the region it
// points at lives as long as the owning DiskTier's mapping, which owns the Index.
unsafe impl Send for Index {}
// SAFETY: as above: all access to the shared slots goes through atomic operations.
unsafe impl Sync for Index {}

impl Index {
    /// # Safety
    /// `slots` must point at `buckets * BUCKET_SLOTS` slots, 8-byte aligned, that stay mapped and
    /// are only accessed atomically for the lifetime of the returned Index.
    pub unsafe fn new(slots: *const u8, buckets: u64) -> Index {
        debug_assert!(slots as usize % 8 == 0 && buckets > 0);
        Index {
            slots: slots.cast(),
            buckets,
        }
    }

    /// The bucket a key hash lives in (multiply-shift: any bucket count, no modulo bias worth
    /// noting, and uses the hash's well-mixed high bits).
    pub fn bucket_of(&self, hash: u64) -> u64 {
        ((hash as u128 * self.buckets as u128) >> 64) as u64
    }

    pub fn bucket(&self, b: u64) -> &[Slot] {
        assert!(b < self.buckets, "bucket {b} out of {}", self.buckets);
        // SAFETY: b < buckets, and the constructor's contract guarantees buckets * BUCKET_SLOTS
        // valid, aligned slots; Slot is all atomics, so shared references to it are sound even
        // while other threads and processes update it.
        unsafe {
            std::slice::from_raw_parts(self.slots.add(b as usize * BUCKET_SLOTS), BUCKET_SLOTS)
        }
    }

    pub fn buckets(&self) -> u64 {
        self.buckets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_index<R>(buckets: u64, f: impl FnOnce(&Index) -> R) -> R {
        let mut mem = vec![0u64; buckets as usize * BUCKET_SLOTS * 2];
        // SAFETY: `mem` holds exactly buckets * BUCKET_SLOTS zeroed, 8-aligned slots and outlives
        // the Index, which does not escape `f`.
        let idx = unsafe { Index::new(mem.as_mut_ptr() as *const u8, buckets) };
        f(&idx)
    }

    #[test]
    fn bucket_of_stays_in_range_and_spreads() {
        with_index(7, |idx| {
            let mut seen = [0u32; 7];
            for i in 0..7000u64 {
                let b = idx.bucket_of(super::super::format::key_hash(&i.to_le_bytes()));
                seen[b as usize] += 1;
            }
            assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
            assert_eq!(idx.bucket_of(u64::MAX), 6);
            assert_eq!(idx.bucket_of(0), 0);
        })
    }

    #[test]
    fn publish_and_clear_update_both_words() {
        with_index(2, |idx| {
            let s = &idx.bucket(1)[3];
            assert_eq!((s.tag(), s.pos()), (0, 0));
            s.publish(tag_of(42), 4096);
            assert_eq!((s.tag(), s.pos()), (43, 4096));
            s.publish(tag_of(42), 8192);
            assert_eq!((s.tag(), s.pos()), (43, 8192));
            s.publish(tag_of(7), 16);
            assert_eq!((s.tag(), s.pos()), (7, 16));
            s.clear();
            assert_eq!((s.tag(), s.pos()), (0, 16));
            // Neighbouring slots untouched.
            assert_eq!(idx.bucket(1)[2].tag(), 0);
            assert_eq!(idx.bucket(0)[7].tag(), 0);
        })
    }

    #[test]
    fn tags_are_never_zero() {
        assert_eq!(tag_of(0), 1);
        assert_eq!(tag_of(2), 3);
        assert_eq!(tag_of(u64::MAX), u64::MAX);
    }

    #[test]
    #[should_panic(expected = "out of")]
    fn bucket_out_of_range_panics_rather_than_reading_past_the_region() {
        with_index(2, |idx| {
            idx.bucket(2);
        });
    }
}
