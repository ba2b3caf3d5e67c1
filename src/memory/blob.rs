//! One L1 entry in one allocation: a 12-byte header, the key bytes, the value bytes, and for an
//! entry that expires, its deadline (8 bytes, unaligned) after the value.
//!
//! The header is as small as the entry's immutable facts allow, because at the common sizes it
//! decides the allocator's size class: a 16-byte key and a 100-byte value make a 128-byte block
//! (a jemalloc class) where the former 24-byte header, with the deadline and footprint inside,
//! made 140 bytes and took a 160-byte block. What moved out: the deadline, which most entries
//! do not have, to the end of the block; the block's size class, recomputed from the lengths
//! when the policy needs it (`footprint`), which is off the get path.
//!
//! A `Blob` is reference counted. The shard holds one reference while the entry is resident;
//! every pinned value handed to a caller (`sz_value`) holds another, so the bytes stay valid
//! after the entry is overwritten, deleted, expired, evicted or cleared, until released.
//! The C handle `sz_value *` is the blob pointer itself: pinning costs one atomic increment and
//! no allocation.

use super::arena::{Allocator, ALIGN};
use crate::clock::Ticks;
use crate::sync::atomic::{self, AtomicU32, AtomicU8, Ordering};
use std::ptr::NonNull;

#[repr(C)]
struct Header {
    refs: AtomicU32,
    val_len: u32,
    key_len: u16,
    /// Immutable after creation: `flags::COMPRESSED` etc., which allocator owns the block, and
    /// whether a deadline follows the value.
    flags: u8,
    /// Policy state, see the `STATE_*` bits. Frequency is bumped under the shard's read lock;
    /// the other bits change only under its write lock.
    state: AtomicU8,
}

const HEADER: usize = std::mem::size_of::<Header>();
// 12 bytes with std's atomics; the schedule checker's carry bookkeeping (see `crate::sync`).
#[cfg(not(feature = "shuttle"))]
const _: () = assert!(HEADER == 12);
const _: () = assert!(ALIGN % std::mem::align_of::<Header>() == 0);
/// Bytes of the deadline stored after the value of an entry that expires.
const DEADLINE: usize = std::mem::size_of::<Ticks>();

/// Set in `Header::flags` (above the entry flags of `tier::flags`) for jemalloc blocks.
const FLAG_JEMALLOC: u8 = 0x80;
/// Set in `Header::flags` when the block ends with a deadline.
const FLAG_DEADLINE: u8 = 0x40;
/// Entry flags shared with the other tiers live in the low bits.
const ENTRY_FLAGS_MASK: u8 = 0x3f;

/// S3-FIFO access frequency, saturating at 3.
pub const STATE_FREQ_MASK: u8 = 0b11;
/// The entry entered main through a ghost hit and has not been hit there yet.
pub const STATE_FROM_GHOST: u8 = 0x20;
/// The entry lives in the main queue (else the small one).
pub const STATE_IN_MAIN: u8 = 0x40;
/// The entry was removed from the index; its queue slot is a tombstone.
pub const STATE_DEAD: u8 = 0x80;

/// An owned reference to a blob.
pub struct Blob(NonNull<Header>);

// SAFETY: the header's mutable fields are atomics and the bytes are immutable while shared
// (`overwrite_with` writes only a block nobody else holds), so a blob may be shared and
// released from any thread.
unsafe impl Send for Blob {}
// SAFETY: as above.
unsafe impl Sync for Blob {}

impl Blob {
    /// Total bytes of the block holding `key_len` + `val_len` bytes, and a deadline if asked.
    pub fn block_size(key_len: usize, val_len: usize, expires: bool) -> usize {
        HEADER + key_len + val_len + if expires { DEADLINE } else { 0 }
    }

    /// Copies key and value into a new block with one reference. None when out of memory.
    /// Callers have checked key.len() <= u16::MAX and value.len() <= u32::MAX.
    pub fn new(
        alloc: Allocator,
        key: &[u8],
        value: &[u8],
        entry_flags: u8,
        deadline: Option<Ticks>,
    ) -> Option<Blob> {
        let blob = Self::with_value_len(alloc, key, value.len(), entry_flags, deadline)?;
        // SAFETY: the block has room for exactly value.len() bytes after the key, and nobody
        // else can see it yet.
        unsafe {
            let dst = blob.0.as_ptr().cast::<u8>().add(HEADER + key.len());
            std::ptr::copy_nonoverlapping(value.as_ptr(), dst, value.len());
        }
        Some(blob)
    }

    /// A block for `key` with `val_len` value bytes left for the caller to fill through
    /// `value_mut` before sharing it (used to decompress or copy straight into the block).
    pub fn with_value_len(
        alloc: Allocator,
        key: &[u8],
        val_len: usize,
        entry_flags: u8,
        deadline: Option<Ticks>,
    ) -> Option<Blob> {
        debug_assert!(key.len() <= u16::MAX as usize && val_len <= u32::MAX as usize);
        // A deadline of 0 means "never" everywhere, so it needs no bytes either.
        let deadline = deadline.filter(|&d| d != 0);
        let size = Self::block_size(key.len(), val_len, deadline.is_some());
        let ptr = NonNull::new(alloc.alloc(size))?.cast::<Header>();
        let mut flags = entry_flags & ENTRY_FLAGS_MASK;
        if alloc == Allocator::Jemalloc {
            flags |= FLAG_JEMALLOC;
        }
        if deadline.is_some() {
            flags |= FLAG_DEADLINE;
        }
        // SAFETY: ptr is a fresh, 8-aligned block of `size` bytes: the header, key.len() key
        // bytes, val_len value bytes (left for the caller) and, with a deadline, 8 more.
        unsafe {
            ptr.as_ptr().write(Header {
                refs: AtomicU32::new(1),
                val_len: val_len as u32,
                key_len: key.len() as u16,
                flags,
                state: AtomicU8::new(0),
            });
            let key_dst = ptr.as_ptr().cast::<u8>().add(HEADER);
            std::ptr::copy_nonoverlapping(key.as_ptr(), key_dst, key.len());
            if let Some(d) = deadline {
                let at = ptr.as_ptr().cast::<u8>().add(HEADER + key.len() + val_len);
                at.cast::<Ticks>().write_unaligned(d);
            }
        }
        Some(Blob(ptr))
    }

    #[inline]
    fn header(&self) -> &Header {
        // SAFETY: we hold a reference, so the block is alive.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    pub fn key(&self) -> &[u8] {
        let h = self.header();
        // SAFETY: the key_len bytes after the header were written at creation and never change.
        unsafe {
            std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>().add(HEADER), h.key_len as usize)
        }
    }

    /// True when this entry's key is `key`. Short keys (most cache keys) are compared in two
    /// overlapping 8-byte words instead of through a call to memcmp.
    #[inline]
    pub fn key_is(&self, key: &[u8]) -> bool {
        let mine = self.key();
        if mine.len() != key.len() {
            return false;
        }
        let n = key.len();
        if (8..=16).contains(&n) {
            let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().unwrap());
            return word(mine, 0) == word(key, 0) && word(mine, n - 8) == word(key, n - 8);
        }
        mine == key
    }

    #[inline]
    pub fn value(&self) -> &[u8] {
        let h = self.header();
        // SAFETY: the val_len bytes after the key are initialised before the blob is shared.
        unsafe {
            std::slice::from_raw_parts(
                self.0
                    .as_ptr()
                    .cast::<u8>()
                    .add(HEADER + h.key_len as usize),
                h.val_len as usize,
            )
        }
    }

    /// The value bytes, writable while this is the only reference (freshly created).
    pub fn value_mut(&mut self) -> &mut [u8] {
        assert_eq!(
            self.header().refs.load(Ordering::Relaxed),
            1,
            "blob is shared"
        );
        let h = self.header();
        let (off, len) = (HEADER + h.key_len as usize, h.val_len as usize);
        // SAFETY: we hold the only reference, so no one else reads these bytes.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_ptr().cast::<u8>().add(off), len) }
    }

    #[inline]
    pub fn entry_flags(&self) -> u8 {
        self.header().flags & ENTRY_FLAGS_MASK
    }

    /// 0 = never expires.
    #[inline]
    pub fn deadline(&self) -> Ticks {
        let h = self.header();
        if h.flags & FLAG_DEADLINE == 0 {
            return 0;
        }
        // SAFETY: FLAG_DEADLINE says the block ends with the 8 deadline bytes, right after the
        // value, written at creation (or by `overwrite_with`, when nobody else can read them).
        unsafe {
            self.0
                .as_ptr()
                .cast::<u8>()
                .add(HEADER + h.key_len as usize + h.val_len as usize)
                .cast::<Ticks>()
                .read_unaligned()
        }
    }

    #[inline]
    pub fn is_expired_at(&self, now: Ticks) -> bool {
        let d = self.deadline();
        d != 0 && now >= d
    }

    /// Bytes of the block as allocated (before the allocator's rounding).
    #[inline]
    fn size(&self) -> usize {
        let h = self.header();
        Self::block_size(
            h.key_len as usize,
            h.val_len as usize,
            h.flags & FLAG_DEADLINE != 0,
        )
    }

    /// Bytes this block occupies in its allocator (its size class): recomputed rather than
    /// stored, which would take 4 more header bytes and a larger size class for common entries.
    #[inline]
    pub fn footprint(&self) -> usize {
        self.allocator().usable_size(self.size())
    }

    fn allocator(&self) -> Allocator {
        if self.header().flags & FLAG_JEMALLOC != 0 {
            Allocator::Jemalloc
        } else {
            Allocator::System
        }
    }

    #[inline]
    pub fn state(&self) -> u8 {
        self.header().state.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn set_state(&self, s: u8) {
        self.header().state.store(s, Ordering::Relaxed)
    }

    /// Records an access: frequency + 1, saturating at 3. A racing bump may be lost, which
    /// costs the policy nothing measurable; skipping the store once saturated keeps hot
    /// entries' cache lines shared between cores.
    #[inline]
    pub fn touch(&self) {
        let s = self.state();
        if s & STATE_FREQ_MASK != STATE_FREQ_MASK {
            self.set_state(s + 1);
        }
    }

    /// Gives up ownership of this reference as the raw handle handed to C.
    pub fn into_raw(self) -> *const u8 {
        let p = self.0.as_ptr() as *const u8;
        std::mem::forget(self);
        p
    }

    /// Takes back a reference given out by `into_raw`.
    ///
    /// # Safety
    /// `p` came from `into_raw` and this reference has not been taken back before.
    pub unsafe fn from_raw(p: *const u8) -> Blob {
        // SAFETY: per the contract p is a live, non-null blob pointer.
        Blob(unsafe { NonNull::new_unchecked(p as *mut Header) })
    }

    /// The value of a raw handle without taking ownership.
    ///
    /// # Safety
    /// `p` is a live handle from `into_raw`; the slice must not outlive that handle.
    pub unsafe fn raw_value<'a>(p: *const u8) -> &'a [u8] {
        // SAFETY: per the contract the handle's reference keeps the block alive.
        let blob = std::mem::ManuallyDrop::new(unsafe { Blob::from_raw(p) });
        // SAFETY: the slice points into the block, which outlives 'a per the contract.
        unsafe { std::slice::from_raw_parts(blob.value().as_ptr(), blob.value().len()) }
    }

    /// Writes `new`'s value, entry flags and deadline over this block in place, keeping this
    /// block's policy state, and returns true; or returns false and changes nothing unless
    /// both blocks have the same key and value lengths and allocator and `holders` is every
    /// reference to this block there is. A replacing set then reuses the resident block
    /// instead of leaving it as a queue tombstone: a workload of overwrites otherwise
    /// allocates fresh memory on every set while up to two queues' worth of dead blocks wait
    /// for the head (callgrind: 3.0 memory misses per replacing set).
    ///
    /// The caller holds the shard's write lock and `holders` of the references (the index's and
    /// the queue's): no get can pin this block meanwhile, and with no pin outstanding nobody
    /// else can be reading its bytes.
    pub fn overwrite_with(&self, new: &Blob, holders: u32) -> bool {
        let (h, n) = (self.header(), new.header());
        let same_shape = h.key_len == n.key_len
            && h.val_len == n.val_len
            && (h.flags ^ n.flags) & (FLAG_JEMALLOC | FLAG_DEADLINE) == 0;
        // Acquire: a pin released just before (Release) has finished reading the bytes.
        if !same_shape || h.refs.load(Ordering::Acquire) != holders {
            return false;
        }
        let (flags, deadline, value) = (n.flags, new.deadline(), new.value());
        let at = self.0.as_ptr();
        // SAFETY: per the contract no other thread can read or write this block now (the
        // references are all the caller's, under the shard's write lock), and no reference to
        // its header is live here; `value` is `new`'s, a different block of the same length,
        // and both blocks carry a deadline after the value or neither does (same size).
        unsafe {
            std::ptr::addr_of_mut!((*at).flags).write(flags);
            let dst = at.cast::<u8>().add(HEADER + n.key_len as usize);
            std::ptr::copy_nonoverlapping(value.as_ptr(), dst, value.len());
            if flags & FLAG_DEADLINE != 0 {
                dst.add(value.len())
                    .cast::<Ticks>()
                    .write_unaligned(deadline);
            }
        }
        true
    }

    /// True when both refer to the same block.
    #[inline]
    pub fn same(&self, other: &Blob) -> bool {
        self.0 == other.0
    }
}

impl Clone for Blob {
    #[inline]
    fn clone(&self) -> Blob {
        let old = self.header().refs.fetch_add(1, Ordering::Relaxed);
        // A count this high means pins are leaking by the billion; wrapping would free live
        // memory, so stop as Arc does.
        if old > i32::MAX as u32 {
            std::process::abort();
        }
        Blob(self.0)
    }
}

impl Drop for Blob {
    #[inline]
    fn drop(&mut self) {
        if self.header().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        self.free();
    }
}

impl Blob {
    /// Returns the block to its allocator. Out of line so the drop of a pin on the hit path
    /// (releasing a value the cache still holds) stays a decrement inlined at the call site.
    #[inline(never)]
    #[cold]
    fn free(&mut self) {
        atomic::fence(Ordering::Acquire);
        let size = self.size();
        let alloc = self.allocator();
        // SAFETY: the count reached zero, so this was the last reference; the block came from
        // `alloc` with exactly this size.
        unsafe { alloc.free(self.0.as_ptr().cast(), size) }
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("key_len", &self.key().len())
            .field("val_len", &self.value().len())
            .field("deadline", &self.deadline())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_key_value_flags_deadline() {
        for alloc in [Allocator::choose(true), Allocator::System] {
            let b = Blob::new(alloc, b"k\0ey", b"v\xffalue", 1, Some(42)).unwrap();
            assert_eq!(b.key(), b"k\0ey");
            assert_eq!(b.value(), b"v\xffalue");
            assert_eq!(b.entry_flags(), 1);
            assert_eq!(b.deadline(), 42);
            assert!(!b.is_expired_at(41) && b.is_expired_at(42));
            assert!(b.footprint() >= Blob::block_size(4, 6, true));
        }
    }

    #[test]
    fn key_is_compares_every_length_exactly() {
        for n in 0..40usize {
            let key: Vec<u8> = (0..n as u8).collect();
            let b = Blob::new(Allocator::System, &key, b"v", 0, None).unwrap();
            assert!(b.key_is(&key), "{n}");
            for i in 0..n {
                let mut other = key.clone();
                other[i] ^= 0x40;
                assert!(!b.key_is(&other), "{n} differs at {i}");
            }
            assert!(!b.key_is(&key[..n.saturating_sub(1)]) || n == 0);
        }
    }

    #[test]
    fn the_common_entry_fills_a_128_byte_size_class_and_a_deadline_costs_8_bytes() {
        let plain = Blob::new(Allocator::choose(true), &[1; 16], &[2; 100], 0, None).unwrap();
        assert_eq!((plain.footprint(), plain.deadline()), (128, 0));
        let timed = Blob::new(Allocator::System, &[1; 16], &[2; 100], 1, Some(7)).unwrap();
        assert_eq!(timed.size(), 12 + 116 + 8);
        assert_eq!((timed.value(), timed.deadline()), (&[2u8; 100][..], 7));
        assert_eq!(timed.entry_flags(), 1);
        let zero = Blob::new(Allocator::System, b"k", b"v", 0, Some(0)).unwrap();
        assert_eq!((zero.size(), zero.deadline()), (14, 0));
    }

    #[test]
    fn empty_key_and_value_and_never_expiring() {
        let b = Blob::new(Allocator::System, b"", b"", 0, None).unwrap();
        assert!(b.key().is_empty() && b.value().is_empty());
        assert!(!b.is_expired_at(u64::MAX));
    }

    #[test]
    fn raw_handle_outlives_other_references() {
        let b = Blob::new(Allocator::choose(true), b"key", &[7u8; 1000], 0, None).unwrap();
        let raw = b.clone().into_raw();
        drop(b);
        // SAFETY: raw is a live handle we own.
        assert_eq!(unsafe { Blob::raw_value(raw) }, &[7u8; 1000][..]);
        // SAFETY: taking back the one reference we gave out.
        drop(unsafe { Blob::from_raw(raw) });
    }

    #[test]
    fn touch_saturates_and_keeps_other_bits() {
        let b = Blob::new(Allocator::System, b"k", b"v", 0, None).unwrap();
        b.set_state(STATE_IN_MAIN);
        for _ in 0..10 {
            b.touch();
        }
        assert_eq!(b.state(), STATE_IN_MAIN | 3);
    }

    #[test]
    fn value_mut_fills_a_fresh_block() {
        let mut b = Blob::with_value_len(Allocator::System, b"k", 3, 0, None).unwrap();
        b.value_mut().copy_from_slice(b"abc");
        assert_eq!(b.value(), b"abc");
    }

    #[test]
    fn shared_across_threads() {
        let b = Blob::new(Allocator::choose(true), b"k", b"shared", 0, None).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let d = c.clone();
                        assert_eq!(d.value(), b"shared");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
