//! One shard of L1: the index (key -> blob) and its S3-FIFO policy, within item and byte
//! bounds. A shard takes no lock itself; `MemoryTier` wraps each in a read-write lock, and
//! only `get` runs under the shared (read) side.

use super::blob::Blob;
use super::policy::{Evicted, S3Fifo};
use crate::clock::Ticks;
use crate::error::{Error, Result};
use hashbrown::HashTable;

/// Keys of a shard fall into this many groups (by hash) for counting writes.
const WRITE_EPOCH_GROUPS: usize = 64;

pub struct Shard {
    index: HashTable<Blob>,
    policy: S3Fifo,
    max_items: usize,
    /// 0 = no byte bound.
    max_bytes: usize,
    sweep_cursor: usize,
    /// Sets, deletes and clears seen by each group of keys. A get that missed memory notes its
    /// key's count before asking a lower tier and stores the answer only if the count has not
    /// moved: otherwise a set or delete that finished meanwhile would be overwritten by the
    /// older value the lower tier gave. Groups, not keys, so the count needs no entry to live
    /// in; a write to another key of the group only costs a promotion, never correctness.
    write_epochs: [u32; WRITE_EPOCH_GROUPS],
}

/// What a lookup found.
pub enum Lookup<'a> {
    Hit(&'a Blob),
    /// Present but past its deadline: a miss, and worth removing under the write lock.
    Expired,
    Miss,
}

/// What an insert displaced, for the caller to count and drop outside the lock.
#[derive(Default)]
pub struct Displaced {
    pub evicted: Evictions,
    pub replaced: Option<Blob>,
}

/// The entries one insert evicted. Nearly always none or one (a full cache makes room for one
/// newcomer), so the first is kept inline: a plain Vec would cost an insert into a full cache
/// a heap allocation and free (~300 instructions, callgrind) just to carry one pointer.
#[derive(Default)]
pub struct Evictions {
    first: Option<Blob>,
    more: Vec<Blob>,
}

impl Evictions {
    pub fn push(&mut self, blob: Blob) {
        if self.first.is_none() {
            self.first = Some(blob);
        } else {
            self.more.push(blob);
        }
    }

    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

impl Shard {
    /// A shard for `max_items`; with `preallocate` its index is sized now. Allocation failure
    /// is `Error::NoMem`, never an abort.
    pub fn new(max_items: usize, max_bytes: usize, preallocate: bool) -> Result<Shard> {
        let max_items = max_items.max(1);
        let mut index = HashTable::new();
        if preallocate {
            // The table is empty, so nothing is rehashed and the hash function is never called.
            index.try_reserve(max_items, |_: &Blob| 0).map_err(|_| {
                Error::NoMem(format!(
                    "memory tier: cannot allocate an index for {max_items} items"
                ))
            })?;
        }
        Ok(Shard {
            index,
            policy: S3Fifo::new(max_items)?,
            max_items,
            max_bytes,
            sweep_cursor: 0,
            write_epochs: [0; WRITE_EPOCH_GROUPS],
        })
    }

    /// The write count of `hash`'s group (see `write_epochs`).
    pub fn write_epoch(&self, hash: u64) -> u32 {
        self.write_epochs[hash as usize % WRITE_EPOCH_GROUPS]
    }

    /// Counts a set or delete of a key of `hash`'s group, whether or not the key was here.
    pub fn count_write(&mut self, hash: u64) {
        let e = &mut self.write_epochs[hash as usize % WRITE_EPOCH_GROUPS];
        *e = e.wrapping_add(1);
    }

    /// Live entries (expired ones not yet removed included).
    pub fn entries(&self) -> usize {
        self.index.len()
    }

    /// Bytes held by this shard's blobs, in their allocator's sizes.
    pub fn bytes(&self) -> usize {
        self.policy.bytes()
    }

    /// Heap bytes of the index and queues themselves (the per-entry overhead beyond blobs).
    pub fn index_bytes(&self) -> usize {
        self.index.capacity() * (std::mem::size_of::<Blob>() + 1)
    }

    #[inline]
    pub fn get(&self, hash: u64, key: &[u8], now: Ticks) -> Lookup<'_> {
        match self.index.find(hash, |b| b.key_is(key)) {
            Some(b) if b.is_expired_at(now) => Lookup::Expired,
            Some(b) => {
                b.touch();
                Lookup::Hit(b)
            }
            None => Lookup::Miss,
        }
    }

    /// True if the blob could ever fit this shard's byte bound.
    pub fn fits(&self, blob: &Blob) -> bool {
        self.max_bytes == 0 || blob.footprint() <= self.max_bytes
    }

    /// Stores `blob` under its key, replacing any entry of that key, then evicts down to the
    /// bounds: at most `limit` live entries (the caller's share of the cache-wide item bound),
    /// and the shard's byte budget. The caller has checked `fits`.
    pub fn insert(
        &mut self,
        hash: u64,
        blob: Blob,
        limit: usize,
        hash_of: impl Fn(&[u8]) -> u64,
    ) -> Displaced {
        let mut out = Displaced::default();
        match self.index.find_mut(hash, |b| b.key_is(blob.key())) {
            // Index and queue hold the resident block's only references: it takes the new
            // value in place, keeping its queue slot and frequency (see `overwrite_with`).
            Some(slot) if slot.overwrite_with(&blob, 2) => return out,
            Some(slot) => {
                let queued = blob.clone();
                let old = std::mem::replace(slot, blob);
                let state = old.state();
                S3Fifo::bury(&old);
                self.policy.readmit(queued, state);
                out.replaced = Some(old);
            }
            None => {
                let queued = blob.clone();
                self.index.insert_unique(hash, blob, |b| hash_of(b.key()));
                self.policy.admit(queued, hash);
            }
        }
        // Live entries count against max_items; tombstones of overwritten or deleted entries do
        // not (they would shrink the cache under a write-heavy load) but are bounded too, so
        // their memory is returned within one more queue's worth of inserts.
        let limit = limit.max(1);
        while self.index.len() > limit
            || self.policy.queued() > 2 * limit.max(self.max_items)
            || (self.max_bytes != 0 && self.policy.bytes() > self.max_bytes)
        {
            match self.policy.evict(&hash_of) {
                Some(Evicted::Victim(v)) => {
                    self.unindex(&v, &hash_of);
                    out.evicted.push(v);
                }
                Some(Evicted::Reclaimed) => {}
                None => break,
            }
        }
        out
    }

    /// Evicts one live entry by the policy (dropping tombstones on the way); None when empty.
    pub fn evict_one(&mut self, hash_of: impl Fn(&[u8]) -> u64) -> Option<Blob> {
        loop {
            if let Evicted::Victim(v) = self.policy.evict(&hash_of)? {
                self.unindex(&v, &hash_of);
                return Some(v);
            }
        }
    }

    /// Takes an evicted blob out of the index.
    fn unindex(&mut self, victim: &Blob, hash_of: impl Fn(&[u8]) -> u64) {
        if let Ok(e) = self
            .index
            .find_entry(hash_of(victim.key()), |b| b.same(victim))
        {
            e.remove();
        }
    }

    /// Removes the entry of `key`; returns it if it was there.
    pub fn remove(&mut self, hash: u64, key: &[u8]) -> Option<Blob> {
        let (blob, _) = self
            .index
            .find_entry(hash, |b| b.key_is(key))
            .ok()?
            .remove();
        S3Fifo::bury(&blob);
        Some(blob)
    }

    /// Removes every entry whose key hashes to `hash`, whatever the key (the caller knows only
    /// the hash); returns them.
    pub fn remove_hashed(&mut self, hash: u64, hash_of: impl Fn(&[u8]) -> u64) -> Vec<Blob> {
        let mut removed = Vec::new();
        while let Ok(e) = self.index.find_entry(hash, |b| hash_of(b.key()) == hash) {
            let (blob, _) = e.remove();
            S3Fifo::bury(&blob);
            removed.push(blob);
        }
        removed
    }

    /// Removes the entry of `key` if it is expired at `now`; true if it did.
    pub fn remove_if_expired(&mut self, hash: u64, key: &[u8], now: Ticks) -> bool {
        match self.index.find_entry(hash, |b| b.key_is(key)) {
            Ok(e) if e.get().is_expired_at(now) => {
                S3Fifo::bury(&e.remove().0);
                true
            }
            _ => false,
        }
    }

    /// Reclaims expired entries among the next `budget` queue slots; returns how many. Bounded
    /// work per call so the write lock is held briefly.
    pub fn expire_step(
        &mut self,
        now: Ticks,
        budget: usize,
        hash_of: impl Fn(&[u8]) -> u64,
    ) -> Vec<Blob> {
        let (next, taken) = self
            .policy
            .sweep(self.sweep_cursor, budget, |b| b.is_expired_at(now));
        self.sweep_cursor = next;
        for blob in &taken {
            if let Ok(e) = self.index.find_entry(hash_of(blob.key()), |b| b.same(blob)) {
                e.remove();
            }
        }
        taken
    }

    /// Drops every entry; returns how many live ones there were. Counts as a write of every key.
    pub fn clear(&mut self) -> usize {
        let n = self.index.len();
        self.index.clear();
        self.policy.clear();
        self.sweep_cursor = 0;
        for e in &mut self.write_epochs {
            *e = e.wrapping_add(1);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evictions_keep_the_first_inline_and_count_every_one() {
        let mut e = Evictions::default();
        assert!(e.is_empty());
        assert_eq!(e.len(), 0);
        let blob = |k: &[u8]| {
            Blob::new(crate::memory::arena::Allocator::System, k, b"v", 0, None).unwrap()
        };
        e.push(blob(b"a"));
        assert!(!e.is_empty() && e.len() == 1 && e.more.capacity() == 0);
        e.push(blob(b"b"));
        e.push(blob(b"c"));
        assert_eq!(e.len(), 3);
    }
    use crate::memory::arena::Allocator;

    fn h(k: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        static HASHER: once_cell::sync::Lazy<hashbrown::DefaultHashBuilder> =
            once_cell::sync::Lazy::new(Default::default);
        HASHER.hash_one(k)
    }
    fn put(s: &mut Shard, k: &[u8], v: &[u8], deadline: Option<Ticks>) -> Displaced {
        let b = Blob::new(Allocator::System, k, v, 0, deadline).unwrap();
        let limit = s.max_items;
        s.insert(h(k), b, limit, h)
    }
    fn get(s: &Shard, k: &[u8]) -> Option<Vec<u8>> {
        match s.get(h(k), k, 1) {
            Lookup::Hit(b) => Some(b.value().to_vec()),
            _ => None,
        }
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut s = Shard::new(100, 0, true).unwrap();
        put(&mut s, b"a", b"1", None);
        assert_eq!(get(&s, b"a").as_deref(), Some(&b"1"[..]));
        let d = put(&mut s, b"a", b"22", None);
        assert_eq!(d.replaced.unwrap().value(), b"1");
        assert_eq!(get(&s, b"a").as_deref(), Some(&b"22"[..]));
        assert_eq!(s.entries(), 1);
        assert_eq!(s.remove(h(b"a"), b"a").unwrap().value(), b"22");
        assert_eq!(get(&s, b"a"), None);
        assert!(s.remove(h(b"a"), b"a").is_none());
    }

    #[test]
    fn a_same_size_overwrite_reuses_the_unpinned_block_and_spares_a_pinned_one() {
        // Same size: same key and value lengths, and a deadline in both or in neither.
        let mut s = Shard::new(100, 0, true).unwrap();
        put(&mut s, b"k", b"one", Some(77));
        let resident = |s: &Shard| match s.get(h(b"k"), b"k", 1) {
            Lookup::Hit(b) => b.clone(),
            _ => panic!("k is resident"),
        };
        // Unpinned: the new value is written into the resident block, deadline included, and
        // no tombstone is queued.
        let before = (resident(&s), s.policy.queued());
        drop(before.0);
        let d = put(&mut s, b"k", b"two", Some(88));
        assert!(d.replaced.is_none() && d.evicted.is_empty());
        let now = resident(&s);
        assert_eq!((now.value(), now.deadline()), (&b"two"[..], 88));
        assert_eq!(s.policy.queued(), before.1);
        // Pinned: the pin keeps its bytes, the index takes a new block.
        let pin = now;
        let d = put(&mut s, b"k", b"333", Some(88));
        assert_eq!(d.replaced.unwrap().value(), b"two");
        assert_eq!(pin.value(), b"two");
        assert_eq!(get(&s, b"k").as_deref(), Some(&b"333"[..]));
        assert_eq!(s.entries(), 1);
    }

    #[test]
    fn item_bound_holds_under_overwrites_and_deletes() {
        let mut s = Shard::new(50, 0, false).unwrap();
        for i in 0..10_000u32 {
            let k = (i % 80).to_le_bytes();
            put(&mut s, &k, &i.to_le_bytes(), None);
            if i % 3 == 0 {
                s.remove(h(&k), &k);
            }
            assert!(s.entries() <= 50);
            assert!(s.policy.queued() <= 100);
        }
    }

    #[test]
    fn byte_bound_holds() {
        let mut s = Shard::new(1_000_000, 64 * 1024, false).unwrap();
        for i in 0..5000u32 {
            put(&mut s, &i.to_le_bytes(), &[0u8; 300], None);
            assert!(s.bytes() <= 64 * 1024);
        }
        assert!(s.entries() > 100);
    }

    #[test]
    fn expired_is_not_a_hit_and_sweep_frees_it() {
        let mut s = Shard::new(100, 0, true).unwrap();
        put(&mut s, b"old", b"x", Some(5));
        put(&mut s, b"new", b"y", Some(1000));
        assert!(matches!(s.get(h(b"old"), b"old", 5), Lookup::Expired));
        assert!(matches!(s.get(h(b"new"), b"new", 5), Lookup::Hit(_)));
        let before = s.bytes();
        let taken = s.expire_step(5, 10, h);
        assert_eq!(taken.len(), 1);
        assert_eq!(s.entries(), 1);
        assert!(s.bytes() < before);
        assert!(!s.remove_if_expired(h(b"new"), b"new", 5));
        assert!(s.remove_if_expired(h(b"new"), b"new", 1000));
    }

    #[test]
    fn clear_empties() {
        let mut s = Shard::new(100, 0, true).unwrap();
        for i in 0..10u8 {
            put(&mut s, &[i], b"v", None);
        }
        assert_eq!(s.clear(), 10);
        assert_eq!((s.entries(), s.bytes()), (0, 0));
    }
}
