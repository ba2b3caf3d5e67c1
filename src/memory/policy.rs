//! S3-FIFO eviction (Yang et al., SOSP 2023) for one shard: a small FIFO for new entries, a main
//! FIFO for entries that proved popular, and a ghost of recently evicted newcomers' hashes.
//!
//! Why S3-FIFO: a hit only bumps a 2-bit counter in the entry (no list node moves, no exclusive
//! lock), and a one-pass scan flows through the small queue without displacing the main queue,
//! which is where LRU loses its working set.
//!
//! Two changes from the paper, both measured in tests/hit_ratio.rs against moka and quick_cache:
//! the small queue is 1% of the shard (quick_cache's 3% and the paper's 10% both lost hits on
//! every trace there), and a ghost hit enters main only for the share of key hashes that
//! `GhostGate` currently admits. On a loop a little larger than the cache, every key comes back
//! through the ghost and each admission pushes out a resident that would have hit: plain S3-FIFO
//! churns main and hits 0.59 where OPT hits 0.81. The gate watches what its admissions did (hit
//! in main before leaving it, or not) and narrows when too few paid off; because the share is a
//! range of hash values, the same keys keep being admitted, so a stable part of the loop stays.
//!
//! The queues own one reference to every blob they hold. A deleted or overwritten entry leaves
//! a tombstone (marked `STATE_DEAD`) that is dropped when it reaches the head; an entry reclaimed
//! by the expiry sweep is taken out of its slot at once (`None`) so its memory is freed then.

use super::blob::{Blob, STATE_DEAD, STATE_FREQ_MASK, STATE_FROM_GHOST, STATE_IN_MAIN};
use crate::error::{Error, Result};
use std::alloc::{self, Layout};
use std::collections::VecDeque;

pub struct S3Fifo {
    small: VecDeque<Option<Blob>>,
    main: VecDeque<Option<Blob>>,
    ghost: Ghost,
    gate: GhostGate,
    /// The small queue's share of the shard: 1% of its items (see the module comment).
    small_target: usize,
    /// Footprint of every blob held by the queues, tombstones included (memory really held).
    bytes: usize,
}

/// What one eviction step took out of the queues.
pub enum Evicted {
    /// A live entry: the caller must remove it from the index.
    Victim(Blob),
    /// A tombstone or an emptied slot: memory released, the index is unaffected.
    Reclaimed,
}

impl S3Fifo {
    /// The queues grow on demand rather than being sized up front: while a cache fills, every
    /// entry sits in the small queue, and in steady state 90% sit in main, so sizing both for
    /// the capacity would hold twice the memory that is ever used.
    ///
    /// The ghost is sized now, from the capacity; an allocation that fails is `Error::NoMem`.
    pub fn new(item_capacity: usize) -> Result<S3Fifo> {
        let item_capacity = item_capacity.max(1);
        let small_target = (item_capacity / 100).max(1);
        Ok(S3Fifo {
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: Ghost::new(item_capacity * 9 / 10)?,
            gate: GhostGate::new(),
            small_target,
            bytes: 0,
        })
    }

    /// Queue slots in use, tombstones included: what the item bound counts.
    pub fn queued(&self) -> usize {
        self.small.len() + self.main.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues a new entry: into main if its key was evicted recently from small (it came back,
    /// so it is popular) and the gate admits it, else into small.
    pub fn admit(&mut self, blob: Blob, hash: u64) {
        self.bytes += blob.footprint();
        if self.ghost.take(hash) && self.gate.admits(hash) {
            blob.set_state(STATE_IN_MAIN | STATE_FROM_GHOST);
            self.main.push_back(Some(blob));
        } else {
            blob.set_state(0);
            self.small.push_back(Some(blob));
        }
    }

    /// Queues an entry that replaces a resident one, keeping its queue and its frequency: an
    /// overwrite is not a sign of popularity, but it should not cost the key its standing.
    pub fn readmit(&mut self, blob: Blob, previous_state: u8) {
        self.bytes += blob.footprint();
        let state = previous_state & (STATE_IN_MAIN | STATE_FREQ_MASK);
        blob.set_state(state);
        if state & STATE_IN_MAIN != 0 {
            self.main.push_back(Some(blob));
        } else {
            self.small.push_back(Some(blob));
        }
    }

    /// Marks a blob removed from the index; its slot is dropped when it reaches the head.
    pub fn bury(blob: &Blob) {
        blob.set_state(blob.state() | STATE_DEAD);
    }

    /// One eviction step, or None when the queues are empty. `hash_of` gives a key's hash for
    /// the ghost.
    pub fn evict(&mut self, hash_of: impl Fn(&[u8]) -> u64) -> Option<Evicted> {
        loop {
            let from_small = self.small.len() > self.small_target || self.main.is_empty();
            let slot = if from_small {
                self.small.pop_front()?
            } else {
                self.main.pop_front()?
            };
            let Some(blob) = slot else {
                return Some(Evicted::Reclaimed);
            };
            let state = blob.state();
            if state & STATE_DEAD != 0 {
                self.bytes -= blob.footprint();
                return Some(Evicted::Reclaimed);
            }
            let freq = state & STATE_FREQ_MASK;
            if from_small {
                if freq > 0 {
                    blob.set_state(STATE_IN_MAIN);
                    self.main.push_back(Some(blob));
                    continue;
                }
                self.ghost.remember(hash_of(blob.key()));
            } else if freq > 0 {
                if state & STATE_FROM_GHOST != 0 {
                    self.gate.record(true);
                }
                blob.set_state((state - 1) & !STATE_FROM_GHOST);
                self.main.push_back(Some(blob));
                continue;
            } else if state & STATE_FROM_GHOST != 0 {
                self.gate.record(false);
            }
            self.bytes -= blob.footprint();
            blob.set_state(state | STATE_DEAD);
            return Some(Evicted::Victim(blob));
        }
    }

    /// Visits up to `budget` slots from `cursor` on (small queue first, then main) and takes out
    /// those for which `reclaim` says yes, freeing them now. Returns the next cursor (wrapping to
    /// 0 at the end) and the blobs taken out.
    pub fn sweep(
        &mut self,
        cursor: usize,
        budget: usize,
        mut reclaim: impl FnMut(&Blob) -> bool,
    ) -> (usize, Vec<Blob>) {
        let total = self.queued();
        let mut taken = Vec::new();
        let mut pos = if cursor >= total { 0 } else { cursor };
        for _ in 0..budget.min(total) {
            let small_len = self.small.len();
            let slot = if pos < small_len {
                &mut self.small[pos]
            } else {
                &mut self.main[pos - small_len]
            };
            if let Some(blob) = slot {
                if blob.state() & STATE_DEAD == 0 && reclaim(blob) {
                    let blob = slot.take().expect("slot checked above");
                    self.bytes -= blob.footprint();
                    blob.set_state(blob.state() | STATE_DEAD);
                    taken.push(blob);
                }
            }
            pos += 1;
            if pos >= total {
                pos = 0;
            }
        }
        (pos, taken)
    }

    /// Empties the queues and the ghost.
    pub fn clear(&mut self) {
        self.small.clear();
        self.main.clear();
        self.ghost.clear();
        self.gate = GhostGate::new();
        self.bytes = 0;
    }
}

/// Which ghost hits may enter main: those whose hash falls in the first `share` 1024ths of the
/// hash space. Every `WINDOW` admissions that left main, the share narrows by a quarter when
/// fewer than `NARROW_BELOW` of them were hit there, and widens when more than `WIDEN_ABOVE`
/// were. On the Zipf traces 40-60% of admissions pay off and the gate stays open; on a loop
/// fewer than a third do, and it closes down to `MIN_SHARE`.
struct GhostGate {
    share: u32,
    paid: u32,
    wasted: u32,
}

impl GhostGate {
    const ALL: u32 = 1024;
    /// Never closed completely, so it notices when admissions start paying off again.
    const MIN_SHARE: u32 = 32;
    const WINDOW: u32 = 64;
    /// In percent of a window.
    const NARROW_BELOW: u32 = 35;
    const WIDEN_ABOVE: u32 = 40;

    fn new() -> GhostGate {
        GhostGate {
            share: Self::ALL,
            paid: 0,
            wasted: 0,
        }
    }

    #[inline]
    fn admits(&self, hash: u64) -> bool {
        // Bits 0..10: the shard is picked by bits 24..56 and the ghost slot by 16..48, so within
        // a shard these are uniform and unrelated to whether the ghost remembered the key.
        (hash as u32 & (Self::ALL - 1)) < self.share
    }

    /// Notes whether an entry admitted through the ghost was hit in main before leaving it.
    fn record(&mut self, paid: bool) {
        if paid {
            self.paid += 1;
        } else {
            self.wasted += 1;
        }
        let seen = self.paid + self.wasted;
        if seen < Self::WINDOW {
            return;
        }
        if self.paid * 100 < Self::NARROW_BELOW * seen {
            self.share = (self.share * 3 / 4).max(Self::MIN_SHARE);
        } else if self.paid * 100 > Self::WIDEN_ABOVE * seen {
            self.share = (self.share * 5 / 4 + 1).min(Self::ALL);
        }
        self.paid = 0;
        self.wasted = 0;
    }
}

/// Hashes of entries recently evicted from the small queue, in a direct-mapped table of 32-bit
/// fingerprints: 4 bytes per slot instead of a hash set's ~20, at the price of occasional
/// collisions, which only cost an entry its place in the wrong queue.
struct Ghost {
    slots: Box<[u32]>,
}

impl Ghost {
    /// Zeroed slots from the allocator's zeroed path (pages the kernel hands out lazily, so a
    /// large ghost costs nothing until used), failing with `Error::NoMem` instead of aborting.
    fn new(len: usize) -> Result<Ghost> {
        let len = len.max(1);
        let no_memory = || {
            Error::NoMem(format!(
                "memory tier: cannot allocate the eviction ghost of {len} slots \
                 (lower memory_capacity)"
            ))
        };
        let layout = Layout::array::<u32>(len).map_err(|_| no_memory())?;
        // SAFETY: the layout has a non-zero size (len >= 1, u32 is 4 bytes).
        let ptr = unsafe { alloc::alloc_zeroed(layout) }.cast::<u32>();
        if ptr.is_null() {
            return Err(no_memory());
        }
        // SAFETY: ptr is a fresh allocation from the global allocator with the layout of
        // [u32; len], fully zeroed (a valid u32 each), owned by nobody else; Box<[u32]> frees
        // it with that same layout.
        let slots = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) };
        Ok(Ghost { slots })
    }

    #[inline]
    fn index_and_tag(&self, hash: u64) -> (usize, u32) {
        // Bits 0..32 pick the shard and hashbrown's bucket; use the others here.
        let idx = (((hash >> 16) as u32 as u64 * self.slots.len() as u64) >> 32) as usize;
        (idx, (hash >> 40) as u32 | 1)
    }

    fn remember(&mut self, hash: u64) {
        let (i, tag) = self.index_and_tag(hash);
        self.slots[i] = tag;
    }

    /// True (and forgets it) when `hash` was remembered and not overwritten since.
    fn take(&mut self, hash: u64) -> bool {
        let (i, tag) = self.index_and_tag(hash);
        let hit = self.slots[i] == tag;
        if hit {
            self.slots[i] = 0;
        }
        hit
    }

    fn clear(&mut self) {
        self.slots.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::arena::Allocator;

    fn blob(k: u32) -> Blob {
        Blob::new(Allocator::System, &k.to_le_bytes(), b"v", 0, None).unwrap()
    }
    fn hash(key: &[u8]) -> u64 {
        (u32::from_le_bytes(key.try_into().unwrap()) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn key_of(b: &Blob) -> u32 {
        u32::from_le_bytes(b.key().try_into().unwrap())
    }
    fn victim(p: &mut S3Fifo) -> u32 {
        loop {
            match p.evict(hash).expect("not empty") {
                Evicted::Victim(b) => return key_of(&b),
                Evicted::Reclaimed => continue,
            }
        }
    }

    #[test]
    fn unaccessed_newcomers_leave_first_in_fifo_order() {
        let mut p = S3Fifo::new(10).unwrap();
        for k in 0..10 {
            p.admit(blob(k), hash(&k.to_le_bytes()));
        }
        assert_eq!(victim(&mut p), 0);
        assert_eq!(victim(&mut p), 1);
    }

    #[test]
    fn accessed_newcomer_moves_to_main_and_survives_a_scan() {
        let mut p = S3Fifo::new(10).unwrap();
        let hot = blob(1000);
        p.admit(hot.clone(), hash(&1000u32.to_le_bytes()));
        hot.touch();
        for k in 0..50 {
            p.admit(blob(k), hash(&k.to_le_bytes()));
            while p.queued() > 10 {
                if let Evicted::Victim(b) = p.evict(hash).unwrap() {
                    assert_ne!(key_of(&b), 1000, "scan evicted the hot entry");
                }
            }
        }
        assert!(hot.state() & STATE_IN_MAIN != 0);
    }

    #[test]
    fn ghost_hit_admits_into_main() {
        let mut p = S3Fifo::new(10).unwrap();
        p.admit(blob(7), hash(&7u32.to_le_bytes()));
        assert_eq!(victim(&mut p), 7);
        let again = blob(7);
        p.admit(again.clone(), hash(&7u32.to_le_bytes()));
        assert!(again.state() & STATE_IN_MAIN != 0);
    }

    #[test]
    fn ghost_gate_narrows_when_admissions_are_wasted_and_reopens_when_they_pay() {
        let mut g = GhostGate::new();
        let admitted = |g: &GhostGate| (0..1024u64).filter(|&h| g.admits(h)).count();
        assert_eq!(admitted(&g), 1024);
        for _ in 0..20 * GhostGate::WINDOW {
            g.record(false);
        }
        assert_eq!(admitted(&g), GhostGate::MIN_SHARE as usize);
        // The same hashes stay admitted while it is narrow: a stable part of a loop.
        assert!((0..GhostGate::MIN_SHARE as u64).all(|h| g.admits(h)));
        for _ in 0..20 * GhostGate::WINDOW {
            g.record(true);
        }
        assert_eq!(admitted(&g), 1024);
    }

    #[test]
    fn tombstones_are_reclaimed_and_bytes_return_to_zero() {
        let mut p = S3Fifo::new(10).unwrap();
        let b = blob(1);
        p.admit(b.clone(), 1);
        S3Fifo::bury(&b);
        assert!(p.bytes() > 0);
        assert!(matches!(p.evict(hash), Some(Evicted::Reclaimed)));
        assert_eq!(p.bytes(), 0);
        assert!(p.evict(hash).is_none());
    }

    #[test]
    fn sweep_takes_out_matching_entries_and_wraps() {
        let mut p = S3Fifo::new(100).unwrap();
        for k in 0..20 {
            p.admit(blob(k), hash(&k.to_le_bytes()));
        }
        let (next, taken) = p.sweep(0, 15, |b| key_of(b) % 2 == 0);
        assert_eq!(next, 15);
        assert_eq!(taken.len(), 8);
        let (next, taken) = p.sweep(next, 10, |b| key_of(b) % 2 == 0);
        assert_eq!((next, taken.len()), (5, 2));
        assert_eq!(p.bytes(), 10 * blob(0).footprint());
    }
}
