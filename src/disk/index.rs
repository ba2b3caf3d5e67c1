//! The index region: buckets of 8 slots, each slot a (tag, log position) pair of atomics that
//! lives in the shared mapping.
//!
//! Readers in any process read slots without a lock, so a slot may be seen mid-update (tag of
//! one key, position of another). That is harmless by construction: a slot only ever holds the
//! position of a complete record or 0, and the reader verifies the record it copies (its own
//! position, key and checksum) before trusting it. The index is therefore a hint, and the record
//! is the truth.
//!
//! The index region is reserved on disk chunk by chunk as keys land in it (`disk::grow`); a
//! chunk not yet reserved is a hole of the sparse file, which reads as empty buckets here and
//! is never touched through the mapping (on tmpfs even a read of a hole allocates a page, and a
//! store into one on a full disk is a SIGBUS).

use super::format::{BUCKET_SLOTS, INDEX_CHUNKS_MAX, SLOT_BYTES};
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
    /// The header's bitmap of reserved chunks (format::INDEX_RESERVED_WORDS words).
    reserved: *const AtomicU64,
    /// log2 of the buckets per chunk.
    chunk_shift: u32,
}

// SAFETY: Index only hands out shared references to `Slot`s, which are atomics; the region it
// points at lives as long as the owning DiskTier's mapping, which owns the Index.
unsafe impl Send for Index {}
// SAFETY: as above: all access to the shared slots goes through atomic operations.
unsafe impl Sync for Index {}

impl Index {
    /// # Safety
    /// `slots` must point at `buckets * BUCKET_SLOTS` slots, 8-byte aligned, and `reserved` at
    /// `INDEX_RESERVED_WORDS` 8-byte aligned words, all of which stay mapped and are only
    /// accessed atomically for the lifetime of the returned Index. `buckets >> chunk_shift` must
    /// be below `INDEX_CHUNKS_MAX`.
    pub unsafe fn new(
        slots: *const u8,
        buckets: u64,
        reserved: *const u8,
        chunk_shift: u32,
    ) -> Index {
        debug_assert!(slots as usize % 8 == 0 && reserved as usize % 8 == 0 && buckets > 0);
        debug_assert!(((buckets - 1) >> chunk_shift) < INDEX_CHUNKS_MAX);
        Index {
            slots: slots.cast(),
            buckets,
            reserved: reserved.cast(),
            chunk_shift,
        }
    }

    /// The bucket a key hash lives in (multiply-shift: any bucket count, no modulo bias worth
    /// noting, and uses the hash's well-mixed high bits).
    pub fn bucket_of(&self, hash: u64) -> u64 {
        ((hash as u128 * self.buckets as u128) >> 64) as u64
    }

    /// The bucket's slots; none while its chunk is not reserved on disk (it holds no key then).
    pub fn bucket(&self, b: u64) -> &[Slot] {
        assert!(b < self.buckets, "bucket {b} out of {}", self.buckets);
        if !self.chunk_reserved(self.chunk_of(b)) {
            return &[];
        }
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

    /// The chunk (unit of reservation) a bucket lies in.
    pub fn chunk_of(&self, b: u64) -> u64 {
        b >> self.chunk_shift
    }

    pub fn chunks(&self) -> u64 {
        self.buckets.div_ceil(1 << self.chunk_shift)
    }

    /// The first bucket of a chunk and how many it holds.
    pub fn chunk_buckets(&self, c: u64) -> (u64, u64) {
        let first = c << self.chunk_shift;
        (first, (1u64 << self.chunk_shift).min(self.buckets - first))
    }

    fn reserved_word(&self, c: u64) -> &AtomicU64 {
        assert!(c < INDEX_CHUNKS_MAX, "chunk {c} out of {INDEX_CHUNKS_MAX}");
        // SAFETY: c / 64 < INDEX_RESERVED_WORDS, which the constructor's contract guarantees
        // are mapped, aligned and only accessed atomically.
        unsafe { &*self.reserved.add((c / 64) as usize) }
    }

    /// True once the chunk's blocks are reserved. Acquire: pairs with `mark_reserved`, so the
    /// slots are read only after the blocks under them exist.
    pub fn chunk_reserved(&self, c: u64) -> bool {
        self.reserved_word(c).load(Ordering::Acquire) & (1 << (c % 64)) != 0
    }

    /// Records that the chunk's blocks are reserved (callers reserved them first).
    pub fn mark_reserved(&self, c: u64) {
        self.reserved_word(c)
            .fetch_or(1 << (c % 64), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::INDEX_RESERVED_WORDS;
    use super::*;

    /// An index of `buckets` buckets, one chunk per bucket, every chunk reserved.
    fn with_index<R>(buckets: u64, f: impl FnOnce(&Index) -> R) -> R {
        let mut mem = vec![0u64; buckets as usize * BUCKET_SLOTS * 2];
        let bitmap = vec![u64::MAX; INDEX_RESERVED_WORDS];
        // SAFETY: `mem` holds exactly buckets * BUCKET_SLOTS zeroed, 8-aligned slots and
        // `bitmap` INDEX_RESERVED_WORDS words; both outlive the Index, which does not escape `f`.
        let idx = unsafe {
            Index::new(
                mem.as_mut_ptr() as *const u8,
                buckets,
                bitmap.as_ptr() as *const u8,
                0,
            )
        };
        f(&idx)
    }

    #[test]
    fn buckets_of_unreserved_chunks_are_empty_until_marked() {
        let mut mem = vec![0u64; 8 * BUCKET_SLOTS * 2];
        let bitmap = vec![0u64; INDEX_RESERVED_WORDS];
        // SAFETY: as in with_index: 8 buckets of slots, a full bitmap, both outliving `idx`.
        let idx = unsafe {
            Index::new(
                mem.as_mut_ptr() as *const u8,
                8,
                bitmap.as_ptr() as *const u8,
                2,
            )
        };
        assert_eq!(idx.chunks(), 2);
        assert_eq!(idx.chunk_of(5), 1);
        assert_eq!(idx.chunk_buckets(1), (4, 4));
        assert!(idx.bucket(5).is_empty());
        idx.mark_reserved(1);
        assert_eq!(idx.bucket(5).len(), BUCKET_SLOTS);
        assert!(idx.bucket(3).is_empty(), "chunk 0 is still unreserved");
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
