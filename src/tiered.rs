//! The coordinator: one cache over the enabled tiers.
//!
//! get reads L1, then the lower tiers in order, and copies a lower-tier hit into the tiers
//! above it with the entry's *absolute* deadline; set writes through to every enabled tier
//! (an explicit ttl applies to all, otherwise each tier's default); delete and clear reach
//! every tier. A lower tier that fails degrades to a miss or a skipped write, counted in its
//! stats and shown in health; it never fails the call.

use crate::clock;
use crate::compress;
use crate::config::{Config, MAX_KEY_LEN};
use crate::disk::write_log::{Change, WriteLog};
use crate::disk::DiskTier;
use crate::error::{Error, Result};
use crate::flight::SingleFlight;
use crate::latency::{self, Latencies, Op, TierId};
use crate::memory::{Blob, MemoryOptions, MemoryTier, WriteMark};
use crate::redis::RedisTier;
use crate::stats::{CacheStats, RateWindow};
use crate::tier::{clamp_ttl, flags, ttl_from_secs, Hit, TierCounters};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Slots each expiry step visits per shard: small enough that a shard's write lock is held for
/// microseconds, so a concurrent get never stalls behind the sweep.
const EXPIRE_BUDGET_PER_SHARD: usize = 256;
/// Index slots each expiry step visits in the disk tier. The step holds the cross-process writer
/// lock (a few ms at most at this size); a 256 MiB file's ~1M slots take 64 steps per lap.
/// Expired entries are never served meanwhile: this only returns their slots and stats.
const DISK_EXPIRE_BUDGET: usize = 16_384;

pub struct Cache {
    inner: Arc<Inner>,
    background: Option<Background>,
}

struct Inner {
    config: Config,
    l1: MemoryTier,
    memory_ttl: Option<Duration>,
    /// L2, when redis_enabled. Its failures never fail a call here: the tier counts them (and
    /// its breaker skips a dead Redis), the coordinator sees a miss or a skipped write.
    l2: Option<RedisTier>,
    l3: Option<DiskTier>,
    /// With the disk tier: how sets, deletes and clears of the other processes sharing the
    /// file reach this one's memory tier (and this one's reach theirs).
    writes: Option<WriteLog>,
    disk_ttl: Option<Duration>,
    flights: SingleFlight<Blob>,
    started: Instant,
    rate: RateWindow,
    latency: Latencies,
    /// Value bytes given to set, and the bytes stored for them (after compression).
    bytes_given: AtomicU64,
    bytes_stored: AtomicU64,
    /// The memory tier's own failures: compressed values that would not decode.
    memory_errors: TierCounters,
    /// The last write to the disk tier failed (file full of unreclaimable data, lock or I/O
    /// error): health shows the tier down until a write succeeds again.
    disk_failing: AtomicBool,
}

/// Up/down state and last error of one tier.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TierHealth {
    pub enabled: bool,
    pub up: bool,
    pub errors: u64,
    pub last_error: Option<String>,
}

/// What `sz_cache_health` and `health_check()` report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    pub healthy: bool,
    pub memory: TierHealth,
    pub redis: TierHealth,
    pub disk: TierHealth,
    pub disk_path: Option<String>,
    /// Fraction of the disk file's data space holding live records.
    pub disk_fill: f64,
}

impl Cache {
    /// Opens a cache over the enabled tiers.
    pub fn open(config: Config) -> Result<Cache> {
        config.validate()?;
        // A disk_path holding a file that is not ours fails the open (SZ_ERR_IO): silently
        // running without the configured tier would hide the problem.
        let l3 = match config.disk_enabled {
            true => Some(DiskTier::open(
                &config.disk_path,
                config.disk_max_size,
                config.max_value_size,
            )?),
            false => None,
        };
        let writes = match config.disk_enabled {
            true => Some(WriteLog::open(&config.disk_path)?),
            false => None,
        };
        let l1_options = MemoryOptions {
            max_items: config.memory_capacity,
            max_bytes: config.memory_max_bytes,
            jemalloc: config.jemalloc_enabled,
            count_stats: config.enable_stats,
        };
        // Hashed alike in every process of the disk_path, so the write log's hashes name keys.
        let l1 = match &writes {
            Some(log) => MemoryTier::with_hash_seed(l1_options, log.seed()),
            None => MemoryTier::new(l1_options),
        };
        // A bad redis_url is a config error; Redis being down is not (the tier starts down).
        let l2 = match config.redis_enabled {
            true => Some(RedisTier::open(&config)?),
            false => None,
        };
        let started = Instant::now();
        let inner = Arc::new(Inner {
            memory_ttl: ttl_from_secs(config.memory_ttl),
            l1,
            l2,
            l3,
            writes,
            disk_ttl: ttl_from_secs(config.disk_ttl),
            flights: SingleFlight::default(),
            started,
            rate: RateWindow::new(started),
            latency: Latencies::default(),
            bytes_given: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(0),
            memory_errors: TierCounters::default(),
            disk_failing: AtomicBool::new(false),
            config,
        });
        let expire_every = ttl_from_secs(inner.config.auto_expire_interval);
        let background = match (expire_every, inner.config.enable_stats) {
            (None, false) => None,
            _ => Some(Background::start(Arc::clone(&inner), expire_every)?),
        };
        Ok(Cache { inner, background })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The live value of `key`, pinned: valid for as long as the returned handle is held.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Result<Option<Blob>> {
        let inner = &*self.inner;
        inner.check_key(key)?;
        inner.sync_memory();
        let stored = match inner.l1.get(key) {
            Some(blob) => blob,
            None => match inner.get_lower(key) {
                Some(blob) => blob,
                None => return Ok(None),
            },
        };
        Ok(inner.decode(stored))
    }

    /// Copies the value of `key` into `buf`; returns its length. When `buf` is too small,
    /// Err(BufferTooSmall(len)) says how much is needed.
    pub fn get_copy(&self, key: &[u8], buf: &mut [u8]) -> Result<Option<usize>> {
        match self.get_copy_yielding(key, buf, false, || ())? {
            Some(Copied::Into(n)) => Ok(Some(n)),
            Some(Copied::Pinned(v)) => Err(Error::BufferTooSmall(v.value().len())),
            None => Ok(None),
        }
    }

    /// `get_copy` for a caller that keeps a buffer across gets (the C ABI's sz_get_buffer):
    /// - with `pin_larger`, a value too big for `buf` comes back pinned instead of as
    ///   BufferTooSmall, so one lookup (one hit, one read of a lower tier) serves any size;
    /// - `before_blocking` is called before the first step that may block (asking Redis or
    ///   the disk tier, deleting an undecodable value from them, decompressing a value too big
    ///   for `buf`) and what it returns is kept until the end of the call. A memory hit that
    ///   fits never calls it. The C ABI passes a caller's "let go of my global lock" here
    ///   (Python's GIL), so that lock is held across memory hits only.
    pub fn get_copy_yielding<G>(
        &self,
        key: &[u8],
        buf: &mut [u8],
        pin_larger: bool,
        before_blocking: impl FnOnce() -> G,
    ) -> Result<Option<Copied>> {
        let inner = &*self.inner;
        inner.check_key(key)?;
        inner.sync_memory();
        let limit = inner.config.max_value_size;
        let mut yielded = None;
        let mut before_blocking = Some(before_blocking);
        let mut block = || {
            if let Some(f) = before_blocking.take().filter(|_| inner.has_lower_tiers()) {
                yielded = Some(f());
            }
        };
        let copied = match inner
            .l1
            .get_with(key, |b| copy_or_pin(b, buf, limit, pin_larger))
        {
            Some(r) => Some(r),
            None => {
                block();
                inner
                    .get_lower(key)
                    .map(|b| copy_or_pin(&b, buf, limit, pin_larger))
            }
        };
        match copied {
            Some(Ok(Copied::Pinned(stored))) => {
                if stored.entry_flags() & flags::COMPRESSED != 0 {
                    block();
                }
                // None: it did not decode, and decode counted and dropped it: a miss.
                Ok(inner.decode(stored).map(Copied::Pinned))
            }
            Some(Err(Error::Internal(why))) => {
                // A compressed value that does not decode: a miss, counted, and dropped.
                block();
                inner.undecodable(key, &why);
                Ok(None)
            }
            other => other.transpose(),
        }
    }

    /// `get` for many keys at once: L1 for each, then the keys still missing from Redis in one
    /// MGET round trip, then from disk. Misses are None, in the keys' order.
    pub fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Blob>>> {
        let inner = &*self.inner;
        for (i, key) in keys.iter().enumerate() {
            inner
                .check_key(key)
                .map_err(|e| e.about(&format!("keys[{i}]")))?;
        }
        inner.sync_memory();
        let mut found: Vec<Option<Blob>> = keys.iter().map(|k| inner.l1.get(k)).collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
        if !missing.is_empty() {
            let wanted: Vec<&[u8]> = missing.iter().map(|&i| keys[i]).collect();
            let marks: Vec<WriteMark> = wanted.iter().map(|k| inner.l1.write_mark(k)).collect();
            let from_l2 = inner.l2.as_ref().and_then(|l2| {
                inner
                    .timed(TierId::Redis, Op::Get, || l2.get_many(&wanted))
                    .ok()
            });
            for (j, &i) in missing.iter().enumerate() {
                found[i] = match from_l2
                    .as_ref()
                    .and_then(|hits| hits.get(j).cloned().flatten())
                {
                    Some(hit) => inner.promote(keys[i], hit, false, marks[j]),
                    None => inner.get_l3(keys[i], marks[j]),
                };
            }
        }
        Ok(found
            .into_iter()
            .map(|b| b.and_then(|b| inner.decode(b)))
            .collect())
    }

    /// `set` for many entries at once, all for `ttl`: Redis gets them pipelined in one round
    /// trip. Every key and value is checked against every limit (after compression, where the
    /// limit is on what is stored) before anything is stored: an error means nothing stored.
    pub fn set_many(&self, items: &[(&[u8], &[u8])], ttl: Option<Duration>) -> Result<()> {
        let inner = &*self.inner;
        let ttl = ttl.map(clamp_ttl);
        let mut entries = Vec::with_capacity(items.len());
        for (i, (key, value)) in items.iter().enumerate() {
            inner
                .check_key(key)
                .map_err(|e| e.about(&format!("keys[{i}]")))?;
            let entry = inner
                .prepare(key, value, ttl)
                .map_err(|e| e.about(&format!("vals[{i}]")))?;
            entries.push(entry);
        }
        inner.write(&entries, ttl);
        Ok(())
    }

    /// Stores `value` under `key` in every tier. `ttl` None = each tier's default.
    pub fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let inner = &*self.inner;
        inner.check_key(key)?;
        inner.store(key, value, ttl).map(drop)
    }

    /// Removes `key` from every tier; true if any tier had it.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.inner.check_key(key)?;
        Ok(self.inner.delete_everywhere(key))
    }

    /// True if some tier has a live entry for `key` (no promotion, no access recorded).
    pub fn exists(&self, key: &[u8]) -> Result<bool> {
        self.inner.check_key(key)?;
        self.inner.sync_memory();
        if self.inner.l1.contains(key) {
            return Ok(true);
        }
        let in_l2 = || {
            self.inner
                .l2
                .as_ref()
                .is_some_and(|l2| l2.contains(key).unwrap_or(false))
        };
        let in_l3 = || {
            self.inner
                .l3
                .as_ref()
                .is_some_and(|l3| l3.contains(key).unwrap_or(false))
        };
        Ok(in_l2() || in_l3())
    }

    /// Removes this cache's entries from every tier.
    pub fn clear(&self) -> Result<()> {
        // Disk before Redis, as in `write`.
        if let Some(l3) = &self.inner.l3 {
            // Counted in the disk tier's errors when it fails; memory is still cleared.
            let _ = l3.clear();
        }
        if let Some(l2) = &self.inner.l2 {
            // Only keys under this cache's prefix; a failure is counted by the tier.
            let _ = l2.clear();
        }
        self.inner.wait_for_copies_to_redis(None);
        // Memory last, as in `write`.
        self.inner.l1.clear();
        self.inner.tell_others(None);
        Ok(())
    }

    /// The value of `key`; on a miss, runs `compute` once however many callers ask at the same
    /// time (the others wait for its result), stores the result for `ttl` and returns it.
    pub fn get_or_compute(
        &self,
        key: &[u8],
        ttl: Option<Duration>,
        compute: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Blob> {
        if let Some(v) = self.get(key)? {
            return Ok(v);
        }
        self.inner.flights.run(key, || {
            // Someone may have stored it between our miss and taking the flight. Our get above
            // already counted the miss, so this look does not count again.
            self.inner.sync_memory();
            if let Some(stored) = self.inner.l1.peek(key) {
                if let Some(v) = self.inner.decode(stored) {
                    return Ok(v);
                }
            }
            let inner = &*self.inner;
            let value = compute()?;
            let stored = inner.store(key, &value, ttl)?;
            if stored.entry_flags() == 0 {
                return Ok(stored);
            }
            // The caller gets the plain bytes it computed, not the stored frame.
            inner.l1.make_blob(key, &value, 0, None)
        })
    }

    /// Runs one bounded expiry pass over every tier now; returns entries reclaimed.
    pub fn expire_now(&self) -> usize {
        self.inner.expire_step()
    }

    pub fn stats(&self) -> CacheStats {
        self.inner.stats()
    }

    pub fn health(&self) -> Health {
        let redis = self.inner.l2.as_ref().map(|l2| {
            let s = l2.stats();
            TierHealth {
                enabled: true,
                up: s.up,
                errors: s.tier.errors,
                // While down, the probe's latest reason is the freshest news.
                last_error: if s.up {
                    s.tier.last_error
                } else {
                    s.last_probe_error.or(s.tier.last_error)
                },
            }
        });
        let mut h = Health {
            healthy: redis.as_ref().map_or(true, |r| r.up),
            redis: redis.unwrap_or_default(),
            memory: {
                let m = self.inner.memory_errors.snapshot();
                TierHealth {
                    enabled: true,
                    up: true,
                    errors: m.errors,
                    last_error: m.last_error,
                }
            },
            ..Default::default()
        };
        if let Some(l3) = &self.inner.l3 {
            let s = l3.stats();
            // The file stays mapped once open, so reads keep working; the tier is down while its
            // writes fail, and every failure shows in errors and last_error.
            h.disk = TierHealth {
                enabled: true,
                up: !self.inner.disk_failing.load(Relaxed),
                errors: s.counters.errors,
                last_error: s.counters.last_error,
            };
            h.disk_path = Some(s.path.display().to_string());
            h.healthy &= h.disk.up;
            h.disk_fill = if s.capacity == 0 {
                0.0
            } else {
                s.bytes_used as f64 / s.capacity as f64
            };
        }
        h
    }

    /// Largest value `set` accepts.
    pub fn max_value_size(&self) -> usize {
        self.inner.config.max_value_size
    }

    /// The remaining lifetime of a value returned by `get`.
    pub fn remaining(blob: &Blob) -> Option<Duration> {
        MemoryTier::remaining(blob)
    }
}

impl Inner {
    #[inline]
    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::invalid("key is empty"));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(Error::TooLarge(format!(
                "key of {} bytes (the limit is {MAX_KEY_LEN})",
                key.len()
            )));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.config.max_value_size {
            return Err(Error::TooLarge(format!(
                "value of {} bytes (max_value_size is {})",
                value.len(),
                self.config.max_value_size
            )));
        }
        Ok(())
    }

    /// Brings memory up to date with the other processes' writes (see `WriteLog`) before it is
    /// read: a get that starts after their set or delete returned must not see what it replaced.
    #[inline]
    fn sync_memory(&self) {
        if let Some(log) = &self.writes {
            if log.is_behind() {
                self.catch_up(log);
            }
        }
    }

    #[cold]
    fn catch_up(&self, log: &WriteLog) {
        log.catch_up(|change| match change {
            Change::Key(hash) => self.l1.invalidate(hash),
            Change::All => self.l1.invalidate_all(),
        });
    }

    /// Records a write of `key` (None: a clear) for the other processes' memory tiers, once it
    /// has reached the tiers they read.
    fn tell_others(&self, key: Option<&[u8]>) {
        if let Some(log) = &self.writes {
            let change = key.map_or(Change::All, |k| Change::Key(self.l1.key_hash(k)));
            if log.record(change) {
                self.catch_up(log);
            }
        }
    }

    fn has_lower_tiers(&self) -> bool {
        self.l2.is_some() || self.l3.is_some()
    }

    /// L1 missed: ask L2, then L3, and copy a hit into the tiers above it for what is left of
    /// its lifetime (capped by each tier's own TTL), never a fresh full TTL.
    fn get_lower(&self, key: &[u8]) -> Option<Blob> {
        let mark = self.l1.write_mark(key);
        // Err = the tier failed or its breaker skipped it: counted by the tier, a miss here.
        let from_l2 = self.l2.as_ref().and_then(|l2| {
            self.timed(TierId::Redis, Op::Get, || l2.get(key))
                .ok()
                .flatten()
        });
        match from_l2 {
            Some(hit) => self.promote(key, hit, false, mark),
            None => self.get_l3(key, mark),
        }
    }

    /// L1 and L2 missed: ask L3.
    fn get_l3(&self, key: &[u8], mark: WriteMark) -> Option<Blob> {
        let l3 = self.l3.as_ref()?;
        // A hit is copied into Redis; deletes of the key wait for the copy (see
        // `promote_to_redis`), which must be marked in flight before the disk is read.
        let _copy = match (&self.l2, &self.writes) {
            (Some(_), Some(log)) => Some(log.copying(mark.key_hash())),
            _ => None,
        };
        let hit = self
            .timed(TierId::Disk, Op::Get, || l3.get(key))
            .ok()
            .flatten()?;
        self.promote(key, hit, true, mark)
    }

    /// Copies a lower tier's hit into the tiers above it (L2 too when it came from L3) and
    /// returns it as stored (still compressed if it was: decoded once per get, like L1 hits).
    /// `mark` was taken before the lower tier was asked: memory keeps the copy only if no set
    /// or delete of the key finished meanwhile (the copy would be older than what it left).
    fn promote(&self, key: &[u8], hit: Hit, from_l3: bool, mark: WriteMark) -> Option<Blob> {
        // The source's absolute deadline on memory's clock, rounded early. None: it expired
        // between the tier's check and now, nothing left to serve or promote.
        let deadline = match hit.expires_ns {
            Some(at) => Some(clock::deadline_at_unix_ns(at)?),
            None => None,
        };
        if hit.flags & !flags::COMPRESSED != 0 {
            // Flags this build does not know: a newer writer's format, not to be misread.
            return None;
        }
        if from_l3 {
            if let Some(l2) = &self.l2 {
                self.promote_to_redis(l2, key, &hit);
            }
        }
        let deadline = earliest(deadline, clock::deadline_after(self.memory_ttl));
        let blob = self
            .l1
            .make_blob_until(key, &hit.value, hit.flags, deadline)
            .ok()?;
        // A promotion L1 cannot take (or must not) is not the caller's failure: the value is
        // still served, as a get that ran before the write would have served it.
        let _ = self.l1.promote(blob.clone(), mark);
        Some(blob)
    }

    /// Copies a disk hit up into Redis, where every host reads it, without leaving there a
    /// value that a set or delete finished meanwhile replaced:
    /// - the copy is stored only into an absent key, so a writer's newer value stays; writers
    ///   update disk before Redis, so a set racing the copy either finds it and replaces it, or
    ///   was there first and keeps it;
    /// - a delete leaves nothing for `SET NX` to find, so the disk entry is read again before
    ///   the copy (a delete already done: no copy) and after it (a delete done meanwhile: the
    ///   copy is withdrawn, unless something newer replaced it);
    /// - and a delete does not return before such copies are done (`wait_for_copies_to_redis`):
    ///   the caller of `get_l3` marks the copy in flight before it reads the disk.
    fn promote_to_redis(&self, l2: &RedisTier, key: &[u8], hit: &Hit) {
        let Some(l3) = &self.l3 else { return };
        let still_on_disk = || {
            matches!(
                l3.peek(key),
                Ok(Some(now)) if now.value == hit.value && now.flags == hit.flags
            )
        };
        if !still_on_disk() {
            return;
        }
        let tier_limit = l2
            .default_ttl()
            .map(|t| clock::unix_ns().saturating_add(t.as_nanos() as u64));
        let expires_ns = earliest(hit.expires_ns, tier_limit);
        let stored = self.timed(TierId::Redis, Op::Set, || {
            l2.promote(key, &hit.value, hit.flags, expires_ns)
        });
        let Ok(Some(frame)) = stored else { return };
        // A Redis that refuses scripts gets a plain delete: at worst a newer value is dropped
        // (a miss), never a replaced one kept.
        if !still_on_disk() && l2.withdraw(key, &frame).is_err() {
            let _ = l2.delete(key);
        }
    }

    /// After a delete (of `key` and the others of its group; None: a clear) has reached disk
    /// and Redis, waits for the copies from disk into Redis that may have read the old value,
    /// in every process on this disk_path (see `promote_to_redis`): each has then either been
    /// deleted by us or seen the delete and withdrawn itself. A copy takes at most three Redis
    /// calls.
    fn wait_for_copies_to_redis(&self, key: Option<&[u8]>) {
        if let (Some(_), Some(_), Some(log)) = (&self.l2, &self.l3, &self.writes) {
            let timeout = Duration::from_millis(self.config.redis_timeout_ms);
            let hash = key.map(|k| self.l1.key_hash(k));
            log.wait_for_copies(hash, timeout * 3 + Duration::from_millis(100));
        }
    }

    /// Stores `value` in every tier (compressed when that pays) for `ttl` (None = each tier's
    /// default; clamped to MAX_TTL); returns the entry as stored in memory.
    fn store(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<Blob> {
        let ttl = ttl.map(clamp_ttl);
        let entry = self.prepare(key, value, ttl)?;
        self.write(std::slice::from_ref(&entry), ttl);
        Ok(entry.blob)
    }

    /// Encodes `value` for `key` and builds its memory entry, checking every limit a write
    /// could fail on, so that `write` cannot fail half way through a batch.
    fn prepare<'v>(
        &self,
        key: &'v [u8],
        value: &'v [u8],
        ttl: Option<Duration>,
    ) -> Result<Prepared<'v>> {
        self.check_value(value)?;
        let (stored, entry_flags) = self.encode(value);
        let blob = self
            .l1
            .make_blob(key, &stored, entry_flags, ttl.or(self.memory_ttl))?;
        // Too large for memory's byte budget but kept by a lower tier: served from there.
        if !self.has_lower_tiers() {
            self.l1.check_fits(&blob)?;
        }
        Ok(Prepared {
            key,
            given: value.len(),
            stored,
            entry_flags,
            blob,
        })
    }

    /// Stores prepared entries in every tier: disk, then Redis (see `promote_to_redis`), then
    /// memory, then tells the other processes. Memory last: a get that missed memory and read
    /// the lower tiers before this write reached them holds an older value, and memory's write
    /// count refuses it only if the count moves after the lower tiers have the new one (see
    /// `promote`). A lower tier's failure is counted by that tier, never the caller's.
    fn write(&self, entries: &[Prepared<'_>], ttl: Option<Duration>) {
        if self.config.enable_stats {
            for e in entries {
                self.bytes_given.fetch_add(e.given as u64, Relaxed);
                self.bytes_stored.fetch_add(e.stored.len() as u64, Relaxed);
            }
        }
        if let Some(l3) = &self.l3 {
            let ttl = ttl.or(self.disk_ttl);
            for e in entries {
                self.set_l3(l3, e.key, &e.stored, e.entry_flags, ttl);
            }
        }
        if let Some(l2) = &self.l2 {
            let ttl = ttl.or(l2.default_ttl());
            let _ = self.timed(TierId::Redis, Op::Set, || match entries {
                [e] => l2.set(e.key, &e.stored, e.entry_flags, ttl),
                _ => {
                    let batch: Vec<_> = entries
                        .iter()
                        .map(|e| (e.key, &e.stored[..], e.entry_flags, ttl))
                        .collect();
                    l2.set_many(&batch)
                }
            });
        }
        for e in entries {
            // Checked by `prepare`: only a blob too large for memory's budget fails here, and
            // then only with a lower tier holding it.
            let _ = self.timed_memory(Op::Set, || self.l1.insert_blob(e.blob.clone()));
            self.tell_others(Some(e.key));
        }
    }

    /// Writes through to the disk tier. A failed disk write must not leave an older value there
    /// to resurface after L1 evicts the new one, so the key is removed instead.
    fn set_l3(&self, l3: &DiskTier, key: &[u8], stored: &[u8], flags: u8, ttl: Option<Duration>) {
        let written = self.timed(TierId::Disk, Op::Set, || l3.set(key, stored, flags, ttl));
        if written.is_err() {
            let _ = l3.delete(key);
        }
        // A value too large for a segment says nothing about the tier; an I/O failure does.
        let failing = matches!(written, Err(Error::Io(_) | Error::Internal(_)));
        if self.disk_failing.load(Relaxed) != failing {
            self.disk_failing.store(failing, Relaxed);
        }
    }

    /// What to store for `value`: its LZ4 frame when compression is on and pays, else itself.
    fn encode<'v>(&self, value: &'v [u8]) -> (Cow<'v, [u8]>, u8) {
        let c = &self.config;
        match compress::compress(value, c.compression_enabled, c.compression_min_size) {
            Some(frame) => (Cow::Owned(frame), flags::COMPRESSED),
            None => (Cow::Borrowed(value), 0),
        }
    }

    /// The plain value of a stored entry: the entry itself, or its decompressed copy in a
    /// handle of its own (decompressed once per get). None when the frame does not decode.
    #[inline]
    fn decode(&self, stored: Blob) -> Option<Blob> {
        if stored.entry_flags() & flags::COMPRESSED == 0 {
            return Some(stored);
        }
        self.decompress(stored)
    }

    #[cold]
    fn decompress(&self, stored: Blob) -> Option<Blob> {
        let limit = self.config.max_value_size;
        let decoded = compress::original_len(stored.value(), limit).and_then(|len| {
            let mut plain = self.l1.make_detached(len, &stored)?;
            compress::decompress_into(stored.value(), plain.value_mut())?;
            Ok(plain)
        });
        match decoded {
            Ok(plain) => Some(plain),
            Err(e) => {
                self.undecodable(stored.key(), &e.to_string());
                None
            }
        }
    }

    /// Counts a value that would not decode and drops it from memory so it is not met again.
    #[cold]
    fn undecodable(&self, key: &[u8], why: &str) {
        self.memory_errors.error(why);
        // Every tier holds the same frame: left below, it would be promoted again on each get.
        self.delete_everywhere(key);
    }

    /// Removes `key` from every tier; true if any tier had it.
    fn delete_everywhere(&self, key: &[u8]) -> bool {
        // A failing lower-tier delete is counted by that tier; the entry then lives out its TTL.
        // Disk before Redis: see `promote_to_redis`.
        let in_l3 = self.l3.as_ref().is_some_and(|l3| {
            self.timed(TierId::Disk, Op::Delete, || l3.delete(key))
                .unwrap_or(false)
        });
        let in_l2 = self.l2.as_ref().is_some_and(|l2| {
            self.timed(TierId::Redis, Op::Delete, || l2.delete(key))
                .unwrap_or(false)
        });
        self.wait_for_copies_to_redis(Some(key));
        // Memory last, as in `write`.
        let in_l1 = self.timed_memory(Op::Delete, || self.l1.delete(key));
        self.tell_others(Some(key));
        in_l1 || in_l2 || in_l3
    }

    /// Runs a lower-tier call, timing it into that tier's histogram when stats are on.
    fn timed<T>(&self, tier: TierId, op: Op, f: impl FnOnce() -> T) -> T {
        if !self.config.enable_stats {
            return f();
        }
        let start = crate::clock::now();
        let out = f();
        let ns = crate::clock::duration_of(crate::clock::now().saturating_sub(start));
        self.latency.record(tier, op, ns.as_nanos() as u64);
        out
    }

    /// `timed` for the memory tier, on a sample of calls (see `latency`).
    #[inline]
    fn timed_memory<T>(&self, op: Op, f: impl FnOnce() -> T) -> T {
        if self.config.enable_stats && latency::sample_memory_op() {
            self.timed(TierId::Memory, op, f)
        } else {
            f()
        }
    }

    /// Records the operation count for ops_per_second.
    fn sample_rate(&self) {
        self.rate.rate(Instant::now(), self.l1.op_count());
    }

    fn expire_step(&self) -> usize {
        let disk = match &self.l3 {
            Some(l3) => l3.expire_step(DISK_EXPIRE_BUDGET).unwrap_or(0),
            None => 0,
        };
        self.l1.expire_step(EXPIRE_BUDGET_PER_SHARD) + disk
    }

    fn stats(&self) -> CacheStats {
        let memory = self.l1.stats();
        let redis = self.l2.as_ref().map(|l2| l2.stats().tier);
        let disk_file = self.l3.as_ref().map(|l3| l3.stats());
        let disk = disk_file.as_ref().map(|d| d.counters.clone());
        // Every L1 miss of a get goes on down, so a lower-tier hit turns one of them into a hit.
        let lower_hits = redis.as_ref().map_or(0, |r| r.hits) + disk.as_ref().map_or(0, |d| d.hits);
        let total_ops = memory.hits + memory.misses + memory.sets + memory.deletes;
        let now = Instant::now();
        // Reading records a sample too, so a rate is there before the first background tick.
        CacheStats {
            hits: memory.hits + lower_hits,
            misses: memory.misses.saturating_sub(lower_hits),
            sets: memory.sets,
            deletes: memory.deletes,
            evictions: memory.evictions,
            expirations: memory.expirations,
            ops_per_second: self.rate.rate(now, total_ops),
            compression_ratio: match self.bytes_stored.load(Relaxed) {
                0 => 1.0,
                stored => self.bytes_given.load(Relaxed) as f64 / stored as f64,
            },
            memory_errors: self.memory_errors.snapshot().errors,
            latency: latency::TIERS.map(|(t, _)| {
                latency::OPS.map(|(o, _)| match (t, o) {
                    // Memory gets are sampled inside the tier, from its expiry clock reading.
                    (TierId::Memory, Op::Get) => self.l1.get_latency(),
                    _ => self.latency.snapshot(t, o),
                })
            }),
            memory,
            redis,
            disk,
            disk_file,
            uptime: now.duration_since(self.started),
        }
    }
}

/// An entry checked against every limit, ready for every tier (see `Inner::prepare`).
struct Prepared<'v> {
    key: &'v [u8],
    /// Length of the value given to set.
    given: usize,
    /// What the tiers store for it (its LZ4 frame when compressed).
    stored: Cow<'v, [u8]>,
    entry_flags: u8,
    /// Memory's entry for it.
    blob: Blob,
}

/// The earlier of two deadlines (None = never): a promoted entry keeps its source's deadline
/// and gets no more than the receiving tier's TTL.
fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Copies a value into the caller's buffer (decompressing a compressed one straight into it),
/// or says how large the buffer must be.
/// What a copying get made of a value: its length, copied into the caller's buffer; or the
/// value itself, pinned, because it did not fit and the caller asked for that.
pub enum Copied {
    Into(usize),
    Pinned(Blob),
}

/// `copy_into`, or with `pin_larger` the stored value pinned when it does not fit.
fn copy_or_pin(b: &Blob, buf: &mut [u8], limit: usize, pin_larger: bool) -> Result<Copied> {
    match copy_into(b, buf, limit) {
        Err(Error::BufferTooSmall(_)) if pin_larger => Ok(Copied::Pinned(b.clone())),
        copied => copied.map(Copied::Into),
    }
}

fn copy_into(b: &Blob, buf: &mut [u8], limit: usize) -> Result<usize> {
    let v = b.value();
    if b.entry_flags() & flags::COMPRESSED != 0 {
        let len = compress::original_len(v, limit)?;
        let dst = buf.get_mut(..len).ok_or(Error::BufferTooSmall(len))?;
        compress::decompress_into(v, dst)?;
        return Ok(len);
    }
    match buf.get_mut(..v.len()) {
        Some(dst) => {
            dst.copy_from_slice(v);
            Ok(v.len())
        }
        None => Err(Error::BufferTooSmall(v.len())),
    }
}

/// The background thread: samples the operation count every second (so ops_per_second covers
/// the last few seconds whenever it is read) and runs one bounded expiry step every
/// auto_expire_interval. Stopped and joined on close.
struct Background {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// How often the operation count is sampled for ops_per_second.
const RATE_SAMPLE_EVERY: Duration = Duration::from_secs(1);

impl Background {
    fn start(inner: Arc<Inner>, expire_every: Option<Duration>) -> Result<Background> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop2 = Arc::clone(&stop);
        let tick = match (inner.config.enable_stats, expire_every) {
            (true, Some(e)) => e.min(RATE_SAMPLE_EVERY),
            (true, None) => RATE_SAMPLE_EVERY,
            (false, e) => e.unwrap_or(RATE_SAMPLE_EVERY),
        };
        let thread = std::thread::Builder::new()
            .name("smartcache-bg".into())
            .spawn(move || {
                let (lock, cv) = &*stop2;
                let mut last_expiry = Instant::now();
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*stopped {
                    let (guard, _) = cv
                        .wait_timeout(stopped, tick)
                        .unwrap_or_else(|e| e.into_inner());
                    stopped = guard;
                    if *stopped {
                        break;
                    }
                    drop(stopped);
                    // A panic here must not kill the host; the next tick tries again.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        if inner.config.enable_stats {
                            inner.sample_rate();
                        }
                        if expire_every.is_some_and(|e| last_expiry.elapsed() >= e) {
                            last_expiry = Instant::now();
                            inner.expire_step();
                        }
                    }));
                    stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the background thread: {e}")))?;
        Ok(Background {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // Stop the background thread before the tiers go away.
        self.background.take();
        if let Some(l3) = &self.inner.l3 {
            // Nothing to report a failure to at close; other processes still see the data.
            let _ = l3.flush();
        }
    }
}
