//! L1: the in-memory tier. Sharded by key hash; each shard is an index plus S3-FIFO policy
//! behind a read-write lock, padded to its own cache lines; counters per CPU (`counters`).
//!
//! The hit path takes only the shard's read lock, bumps the entry's 2-bit frequency, and
//! returns a pinned reference (one atomic increment). Expired entries are never returned: the
//! deadline is checked on every read with the cheap clock of `clock.rs`.

pub mod arena;
pub mod blob;
pub mod counters;
pub mod policy;
pub mod shard;

use crate::clock::{self, Ticks};
use crate::error::{Error, Result};
use crate::latency::{Histogram, LatencySnapshot, MEMORY_SAMPLE_EVERY};
use crate::sync::atomic::{AtomicIsize, AtomicU64, Ordering::Relaxed};
use crate::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use arena::Allocator;
pub use blob::Blob;
use counters::Counters;
use crossbeam_utils::CachePadded;
use shard::{Lookup, Shard};
use std::hash::BuildHasher;
use std::time::Duration;

/// Above this many items the index is grown on demand instead of allocated up front, so a huge
/// memory_capacity does not cost its full index before it is used.
const PREALLOCATE_MAX_ITEMS: usize = 1 << 22;

/// A key's write count when a get missed memory (see `MemoryTier::promote`).
#[derive(Debug, Clone, Copy)]
pub struct WriteMark {
    hash: u64,
    epoch: u32,
}

impl WriteMark {
    /// The key's `key_hash`, computed when the mark was taken.
    pub fn key_hash(&self) -> u64 {
        self.hash
    }
}

#[derive(Clone, Copy)]
enum Store {
    /// A set, with the key's `key_hash` when the caller has it already.
    Set(Option<u64>),
    Promote(WriteMark),
}

/// Bounds and allocator of the memory tier.
#[derive(Debug, Clone, Copy)]
pub struct MemoryOptions {
    pub max_items: usize,
    /// 0 = bounded by items only.
    pub max_bytes: usize,
    pub jemalloc: bool,
    pub count_stats: bool,
}

struct ShardSlot {
    shard: RwLock<Shard>,
}

/// A consistent-enough copy of the tier's counters and sizes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemoryStats {
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    pub deletes: u64,
    pub evictions: u64,
    pub expirations: u64,
    /// Entries dropped because another process set, deleted or cleared them (see
    /// `coherence::write_log`).
    pub invalidations: u64,
    pub size: u64,
    pub capacity: u64,
    pub max_bytes: u64,
    /// Bytes held by entries, in allocator sizes.
    pub bytes: u64,
    /// Bytes of the index and queues.
    pub index_bytes: u64,
    pub shards: u64,
    pub allocator: &'static str,
}

pub struct MemoryTier {
    shards: Box<[CachePadded<ShardSlot>]>,
    /// Latency of a sample of gets (see `latency`).
    get_latency: Histogram,
    /// Live entries in all shards. memory_capacity bounds this total, not each shard: with
    /// per-shard bounds alone, a cache of N items filled with N keys would evict the few
    /// percent that hash to fuller shards.
    live: CachePadded<AtomicIsize>,
    /// Hits, misses, sets...: per CPU, not per shard (see `counters`).
    counters: Counters,
    /// Seeded per cache, or per disk_path when the write log shares hashes between processes.
    hasher: foldhash::fast::FixedState,
    alloc: Allocator,
    opts: MemoryOptions,
}

impl MemoryTier {
    /// A tier hashing keys with a seed of its own. `Error::NoMem` when the shards' tables
    /// cannot be allocated.
    pub fn new(opts: MemoryOptions) -> Result<MemoryTier> {
        let seed = std::collections::hash_map::RandomState::new().hash_one(0u64);
        MemoryTier::with_hash_seed(opts, seed)
    }

    /// A tier hashing keys with `seed`: tiers with one seed give every key the same
    /// `key_hash`, which is what lets the write log name keys by hash across processes.
    pub fn with_hash_seed(opts: MemoryOptions, seed: u64) -> Result<MemoryTier> {
        let max_items = opts.max_items.max(1);
        let n = shard_count(max_items, opts.max_bytes);
        let preallocate = max_items <= PREALLOCATE_MAX_ITEMS;
        let shards = (0..n)
            .map(|i| {
                // Spread the remainder so the shard bounds add up to exactly max_items.
                let items = max_items / n + usize::from(i < max_items % n);
                let bytes = opts.max_bytes / n;
                Ok(CachePadded::new(ShardSlot {
                    shard: RwLock::new(Shard::new(items, bytes, preallocate)?),
                }))
            })
            .collect::<Result<_>>()?;
        Ok(MemoryTier {
            shards,
            get_latency: Histogram::new(),
            live: CachePadded::new(AtomicIsize::new(0)),
            counters: Counters::default(),
            hasher: foldhash::fast::FixedState::with_seed(seed),
            alloc: Allocator::choose(opts.jemalloc),
            opts: MemoryOptions { max_items, ..opts },
        })
    }

    pub fn allocator(&self) -> Allocator {
        self.alloc
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The hash `key` is filed under (see `with_hash_seed`).
    pub fn key_hash(&self, key: &[u8]) -> u64 {
        self.hash(key)
    }

    #[inline]
    fn slot(&self, hash: u64) -> &ShardSlot {
        // Bits 24..56 pick the shard; hashbrown uses the lowest bits for the bucket and the top 7
        // for its tag, so these stay independent of both.
        let i = (((hash >> 24) as u32 as u64 * self.shards.len() as u64) >> 32) as usize;
        &self.shards[i]
    }

    #[inline]
    fn count(&self, c: &AtomicU64) {
        if self.opts.count_stats {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Runs `f` on the live entry of `key` under the shard's read lock (no pin taken).
    #[inline]
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&Blob) -> R) -> Option<R> {
        let count = self.opts.count_stats;
        self.lookup(key, count, count, f)
    }

    /// A pinned reference to the live value of `key`, not counted as a hit or miss: for a
    /// caller that already counted this get (the re-check of a single-flight).
    pub fn peek(&self, key: &[u8]) -> Option<Blob> {
        self.lookup(key, false, false, Blob::clone)
    }

    /// `get_with` that counts a hit but not a miss: for a memory-only probe whose miss the
    /// caller follows with a full get, which counts that miss (once).
    #[inline]
    pub fn probe_with<R>(&self, key: &[u8], f: impl FnOnce(&Blob) -> R) -> Option<R> {
        self.lookup(key, self.opts.count_stats, false, f)
    }

    #[inline]
    fn lookup<R>(
        &self,
        key: &[u8],
        count_hit: bool,
        count_miss: bool,
        f: impl FnOnce(&Blob) -> R,
    ) -> Option<R> {
        let hash = self.hash(key);
        let slot = self.slot(hash);
        let now = clock::now();
        let expired = {
            let shard = read(&slot.shard);
            match shard.get(hash, key, now) {
                Lookup::Hit(b) => {
                    let r = f(b);
                    drop(shard);
                    if count_hit {
                        let seen = self.counters.here().hits.fetch_add(1, Relaxed);
                        self.sample_latency(seen, now);
                    }
                    return Some(r);
                }
                Lookup::Expired => true,
                Lookup::Miss => false,
            }
        };
        if count_miss {
            let seen = self.counters.here().misses.fetch_add(1, Relaxed);
            self.sample_latency(seen, now);
        }
        if expired {
            self.reclaim_expired(slot, hash, key, now);
        }
        None
    }

    /// A pinned reference to the live value of `key`.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<Blob> {
        self.get_with(key, Blob::clone)
    }

    /// True when `key` has a live entry. Does not count as an access for eviction.
    pub fn contains(&self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        let now = clock::now();
        let shard = read(&self.slot(hash).shard);
        matches!(shard.get(hash, key, now), Lookup::Hit(_))
    }

    /// Records this get's latency for one in `MEMORY_SAMPLE_EVERY` gets of a shard, picked by
    /// the shard's hit (or miss) count this get just incremented: exact, and free.
    #[inline]
    fn sample_latency(&self, seen: u64, start: Ticks) {
        if seen % MEMORY_SAMPLE_EVERY as u64 == 0 {
            self.record_latency(start);
        }
    }

    #[cold]
    fn record_latency(&self, start: Ticks) {
        let ticks = clock::now().saturating_sub(start);
        self.get_latency
            .record(clock::duration_of(ticks).as_nanos() as u64);
    }

    /// Percentiles of the sampled gets.
    pub fn get_latency(&self) -> LatencySnapshot {
        self.get_latency.snapshot()
    }

    #[cold]
    fn reclaim_expired(&self, slot: &ShardSlot, hash: u64, key: &[u8], now: Ticks) {
        if self.tracking_live(&mut write(&slot.shard), |s| {
            s.remove_if_expired(hash, key, now)
        }) {
            self.count(&self.counters.here().expirations);
        }
    }

    /// Builds the entry for `key` (None ttl = never expires); the blob can then be stored with
    /// `insert_blob` and also handed out pinned.
    pub fn make_blob(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u8,
        ttl: Option<Duration>,
    ) -> Result<Blob> {
        Blob::new(self.alloc, key, value, flags, clock::deadline_after(ttl))
            .ok_or_else(|| no_memory(value.len()))
    }

    /// `make_blob` expiring at `deadline` (memory clock ticks; None = never): an entry copied
    /// from a lower tier keeps that tier's absolute deadline, not a duration counted anew.
    pub fn make_blob_until(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u8,
        deadline: Option<clock::Ticks>,
    ) -> Result<Blob> {
        Blob::new(self.alloc, key, value, flags, deadline).ok_or_else(|| no_memory(value.len()))
    }

    /// A keyless block of `val_len` bytes for the caller to fill, expiring with `like`: the
    /// decompressed copy of a stored entry, handed out pinned but never stored.
    pub fn make_detached(&self, val_len: usize, like: &Blob) -> Result<Blob> {
        let deadline = Some(like.deadline()).filter(|&d| d != 0);
        Blob::with_value_len(self.alloc, &[], val_len, 0, deadline)
            .ok_or_else(|| no_memory(val_len))
    }

    /// Stores `value` under `key` for `ttl` (None = never expires).
    pub fn insert(&self, key: &[u8], value: &[u8], flags: u8, ttl: Option<Duration>) -> Result<()> {
        self.insert_blob(self.make_blob(key, value, flags, ttl)?)
    }

    /// Stores a blob made by `make_blob*`, counted as a set.
    pub fn insert_blob(&self, blob: Blob) -> Result<()> {
        self.store(blob, Store::Set(None)).map(drop)
    }

    /// `insert_blob` for a caller that has the key's `key_hash` already (a write that told
    /// the other processes of it): the key is not hashed again.
    pub fn insert_blob_hashed(&self, blob: Blob, hash: u64) -> Result<()> {
        debug_assert_eq!(hash, self.hash(blob.key()));
        self.store(blob, Store::Set(Some(hash))).map(drop)
    }

    /// Notes the write count of `key`'s group, for a get that missed memory and is about to ask
    /// a lower tier: see `promote`.
    pub fn write_mark(&self, key: &[u8]) -> WriteMark {
        let hash = self.hash(key);
        let epoch = read(&self.slot(hash).shard).write_epoch(hash);
        WriteMark { hash, epoch }
    }

    /// Stores a copy of a lower tier's entry, not counted as a set, unless a set, delete or
    /// clear of its key (or of its group) came after `mark` was taken: then the copy may be
    /// older than what that write left, and false says it was not stored.
    pub fn promote(&self, blob: Blob, mark: WriteMark) -> Result<bool> {
        debug_assert_eq!(mark.hash, self.hash(blob.key()));
        self.store(blob, Store::Promote(mark))
    }

    /// Err(TooLarge) when `blob` could never be stored (over the per-shard byte budget), so a
    /// batch can be checked whole before any of it is stored.
    pub fn check_fits(&self, blob: &Blob) -> Result<()> {
        if self.opts.max_bytes == 0 {
            // No byte budget: every blob fits (and no shard lock is needed to say so).
            return Ok(());
        }
        let hash = self.hash(blob.key());
        match read(&self.slot(hash).shard).fits(blob) {
            true => Ok(()),
            false => Err(self.too_large(blob)),
        }
    }

    #[cold]
    fn too_large(&self, blob: &Blob) -> Error {
        Error::TooLarge(format!(
            "a {} byte entry exceeds the memory tier's per-shard byte budget of {} \
             (memory_max_bytes / {} shards)",
            blob.footprint(),
            self.opts.max_bytes / self.shards.len(),
            self.shards.len()
        ))
    }

    fn store(&self, blob: Blob, how: Store) -> Result<bool> {
        let hash = match how {
            Store::Set(Some(hash)) => hash,
            Store::Set(None) => self.hash(blob.key()),
            Store::Promote(mark) => mark.hash,
        };
        let slot = self.slot(hash);
        let displaced = {
            let mut shard = write(&slot.shard);
            match how {
                Store::Promote(mark) if shard.write_epoch(hash) != mark.epoch => return Ok(false),
                Store::Promote(_) => {}
                Store::Set(_) => shard.count_write(hash),
            }
            if !shard.fits(&blob) {
                return Err(self.too_large(&blob));
            }
            let before = shard.entries() as isize;
            // Room left in the whole cache, given to this shard: it evicts its own entries once
            // the cache is full, so the total stays at memory_capacity.
            let room = self.opts.max_items as isize - self.live.load(Relaxed);
            let limit = (before + room).max(0) as usize;
            let mut displaced = shard.insert(hash, blob, limit, |k| self.hash(k));
            let delta = shard.entries() as isize - before;
            if delta != 0 {
                let total = self.live.fetch_add(delta, Relaxed) + delta;
                // A concurrent insert in another shard took the same room; the atomic add tells
                // exactly one of the two that it went over, and that one gives it back.
                if delta > 0 && total > self.opts.max_items as isize {
                    if let Some(v) = shard.evict_one(|k| self.hash(k)) {
                        self.live.fetch_sub(1, Relaxed);
                        displaced.evicted.push(v);
                    }
                }
            }
            displaced
        };
        if matches!(how, Store::Set(_)) {
            self.count(&self.counters.here().sets);
        }
        if self.opts.count_stats && !displaced.evicted.is_empty() {
            self.counters
                .here()
                .evictions
                .fetch_add(displaced.evicted.len() as u64, Relaxed);
        }
        // `displaced` drops here, outside the lock: freeing memory is not the shard's business.
        Ok(true)
    }

    /// Runs a change to a locked shard and carries its change of live entries into `live`.
    fn tracking_live<R>(&self, shard: &mut Shard, change: impl FnOnce(&mut Shard) -> R) -> R {
        let before = shard.entries() as isize;
        let out = change(shard);
        let delta = shard.entries() as isize - before;
        if delta != 0 {
            self.live.fetch_add(delta, Relaxed);
        }
        out
    }

    /// Removes `key`; true if a live entry was there.
    pub fn delete(&self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        let slot = self.slot(hash);
        let removed = self.tracking_live(&mut write(&slot.shard), |s| {
            s.count_write(hash);
            s.remove(hash, key)
        });
        let Some(blob) = removed else { return false };
        let live = !blob.is_expired_at(clock::now());
        if live {
            self.count(&self.counters.here().deletes);
        }
        live
    }

    /// Drops the entries of every key that hashes to `hash`: some other process set or deleted
    /// one of them. Counts as a write of them for promotions in flight (see `promote`), not as
    /// a delete.
    pub fn invalidate(&self, hash: u64) {
        let slot = self.slot(hash);
        let dropped = self.tracking_live(&mut write(&slot.shard), |s| {
            s.count_write(hash);
            s.remove_hashed(hash, |k| self.hash(k))
        });
        if self.opts.count_stats && !dropped.is_empty() {
            self.counters
                .here()
                .invalidations
                .fetch_add(dropped.len() as u64, Relaxed);
        }
        // Freed here, outside the lock.
        drop(dropped);
    }

    /// `clear`, because another process cleared the cache or this one cannot tell what others
    /// changed: counted as invalidations, not as deletes.
    pub fn invalidate_all(&self) {
        for slot in self.shards.iter() {
            let n = self.tracking_live(&mut write(&slot.shard), Shard::clear);
            if self.opts.count_stats {
                self.counters
                    .here()
                    .invalidations
                    .fetch_add(n as u64, Relaxed);
            }
        }
    }

    /// Takes every shard's write lock, for `crate::fork`: no get or write of another thread
    /// is half done at the instant of the fork.
    pub fn hold_for_fork<'a>(&'a self, held: &mut Vec<Box<dyn crate::fork::Held + 'a>>) {
        for slot in self.shards.iter() {
            held.push(Box::new(write(&slot.shard)));
        }
    }

    /// Drops every entry; returns how many there were. Pinned values stay valid.
    pub fn clear(&self) -> usize {
        self.shards
            .iter()
            .map(|s| self.tracking_live(&mut write(&s.shard), Shard::clear))
            .sum()
    }

    /// Reclaims expired entries, visiting at most `budget_per_shard` slots of each shard under
    /// its write lock at a time. Returns how many were reclaimed.
    pub fn expire_step(&self, budget_per_shard: usize) -> usize {
        let now = clock::now();
        let mut total = 0;
        for slot in self.shards.iter() {
            let taken = self.tracking_live(&mut write(&slot.shard), |s| {
                s.expire_step(now, budget_per_shard, |k| self.hash(k))
            });
            if self.opts.count_stats {
                self.counters
                    .here()
                    .expirations
                    .fetch_add(taken.len() as u64, Relaxed);
            }
            total += taken.len();
        }
        total
    }

    /// Gets, sets and deletes counted so far (no shard lock taken: for sampling the rate).
    pub fn op_count(&self) -> u64 {
        let t = self.counters.totals();
        t.hits + t.misses + t.sets + t.deletes
    }

    pub fn stats(&self) -> MemoryStats {
        let mut s = MemoryStats {
            capacity: self.opts.max_items as u64,
            max_bytes: self.opts.max_bytes as u64,
            shards: self.shards.len() as u64,
            allocator: self.alloc.name(),
            ..Default::default()
        };
        let t = self.counters.totals();
        (s.hits, s.misses, s.sets, s.deletes) = (t.hits, t.misses, t.sets, t.deletes);
        (s.evictions, s.expirations, s.invalidations) =
            (t.evictions, t.expirations, t.invalidations);
        for slot in self.shards.iter() {
            let shard = read(&slot.shard);
            s.size += shard.entries() as u64;
            s.bytes += shard.bytes() as u64;
            s.index_bytes += shard.index_bytes() as u64;
        }
        s
    }

    /// Time left of an entry handed out by this tier (None = never expires).
    pub fn remaining(blob: &Blob) -> Option<Duration> {
        match blob.deadline() {
            0 => None,
            d => Some(clock::remaining(d)),
        }
    }
}

/// The shard count: enough shards that a few threads rarely meet on one lock, few enough that
/// each shard keeps a useful queue (S3-FIFO's small queue is 10% of a shard), and sized so each
/// shard's index sits just under a power-of-two bucket count at 7/8 load (hashbrown's maximum)
/// instead of just above it, which would double the index's memory.
fn shard_count(max_items: usize, max_bytes: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
    let mut n = (cpus * 8).next_power_of_two().min(256);
    n = n.min((max_items / 64).max(1));
    if max_bytes > 0 {
        // Keep per-shard byte budgets of at least 1 MiB so ordinary values fit a shard.
        n = n.min((max_bytes >> 20).max(1));
    }
    let per_shard = max_items.div_ceil(n);
    if per_shard >= 64 {
        let buckets = (per_shard * 8 / 7).next_power_of_two() / 2;
        let fill = (buckets * 7 / 8).max(1);
        if fill * 2 > per_shard {
            // Use enough shards that each holds at most `fill` entries.
            let candidate = max_items.div_ceil(fill);
            if candidate <= n * 2 {
                n = candidate;
            }
        }
    }
    n.max(1)
}

#[cold]
fn no_memory(val_len: usize) -> Error {
    Error::NoMem(format!("memory tier: no memory for a {val_len} byte value"))
}

#[inline]
fn read(l: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    // A panic under the lock is a bug we already reported; the shard itself stays usable.
    l.read().unwrap_or_else(|e| e.into_inner())
}

#[inline]
fn write(l: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
