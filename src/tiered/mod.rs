//! The coordinator: one cache over the enabled tiers.
//!
//! Memory (a concrete `MemoryTier`: its hit path is the hot path, with no dynamic dispatch)
//! sits in front of the lower tiers, held in read order as `LowerTier`s (Redis, then disk). A
//! get reads memory, then the lower tiers in order (`read.rs`), and copies a hit into every
//! tier above it with the entry's *absolute* deadline; every mutation goes through one write
//! path (`write.rs`), the lower tiers from the bottom up, then memory, then the other
//! processes. An explicit ttl applies to every tier, otherwise each tier's default. A lower
//! tier that fails degrades to a miss or a skipped write, counted in its stats and shown in
//! health; it never fails the call.

mod background;
mod codec;
mod coherent;
mod lower;
mod read;
mod report;
mod write;

pub use crate::tier::TierHealth;
pub use codec::Copied;

use crate::coherence::outage::Outage;
use crate::coherence::write_log::{Change, WriteLog};
use crate::config::{Config, MAX_KEY_LEN};
use crate::disk::DiskTier;
use crate::error::{Error, Result};
use crate::flight::SingleFlight;
use crate::fork::{self, ForkAware, Held};
use crate::latency::{self, Latencies, Op, TierId};
use crate::memory::{Blob, MemoryOptions, MemoryTier};
use crate::redis::invalidation::{Coherence, Listener};
use crate::redis::RedisTier;
use crate::sign::Signer;
use crate::stats::{CacheStats, RateWindow};
use crate::tier::{clamp_ttl, flags, ttl_from_secs, LowerTier, TierCounters};
use background::Background;
use codec::copy_or_pin;
use lower::{DiskLayer, RedisLayer};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use write::Mutation;

pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    l1: MemoryTier,
    memory_ttl: Option<Duration>,
    /// The tiers below memory, in read order (Redis, then disk); writes go in reverse.
    lower: Vec<Arc<dyn LowerTier>>,
    /// The same tiers by type, for what only they report (stats, the disk file's fill).
    redis: Option<Arc<RedisLayer>>,
    disk: Option<Arc<DiskLayer>>,
    /// With the disk tier: how sets, deletes and clears of the other processes sharing the
    /// file reach this one's memory tier (and this one's reach theirs).
    writes: Option<WriteLog>,
    flights: SingleFlight<Blob>,
    started: Instant,
    rate: RateWindow,
    latency: Latencies,
    /// Value bytes given to set, and the bytes stored for them (after compression).
    bytes_given: AtomicU64,
    bytes_stored: AtomicU64,
    /// The memory tier's own failures: compressed values that would not decode.
    memory_errors: TierCounters,
    /// The expiry, rate-sampling and Redis-replay thread. Here rather than in `Cache` so that
    /// a forked child can replace it (`adopt_process`); `Cache::drop` takes it out, which ends
    /// the cycle of the thread holding this Inner.
    background: Mutex<Option<Background>>,
    /// With `redis_invalidation`: whether memory may be trusted (see `coherent`).
    coherence: Option<Arc<Coherence>>,
    /// The invalidation listener's thread; taken out by `Cache::drop` (before the Inner goes)
    /// and replaced in a forked child (`adopt_process`).
    listener: Mutex<Option<Listener>>,
    /// The fork generation (`crate::fork`) the background threads were started in.
    generation: AtomicU64,
    /// This Inner, for restarting the background thread (which holds it) in a forked child.
    me: Weak<Inner>,
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
        let disk = match config.disk_enabled {
            true => Some(Arc::new(DiskLayer::new(
                DiskTier::open(
                    &config.disk_path,
                    config.disk_max_size,
                    config.max_value_size,
                )?
                .with_signer(Signer::from_config(&config)),
                ttl_from_secs(config.disk_ttl),
            ))),
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
            Some(log) => MemoryTier::with_hash_seed(l1_options, log.seed())?,
            None => MemoryTier::new(l1_options)?,
        };
        // A bad redis_url is a config error; Redis being down is not (the tier starts down).
        // The debts to Redis: shared by the processes of the disk_path, else this one's.
        let redis = match config.redis_enabled {
            true => Some(Arc::new(RedisLayer::new(
                Arc::new(RedisTier::open(&config)?),
                writes
                    .as_ref()
                    .map_or_else(Outage::in_process, WriteLog::outage),
            ))),
            false => None,
        };
        // The read order; adding a tier means adding it here, where it is read.
        let mut lower: Vec<Arc<dyn LowerTier>> = Vec::new();
        if let Some(r) = &redis {
            lower.push(Arc::clone(r) as Arc<dyn LowerTier>);
        }
        if let Some(d) = &disk {
            lower.push(Arc::clone(d) as Arc<dyn LowerTier>);
        }
        let started = Instant::now();
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            memory_ttl: ttl_from_secs(config.memory_ttl),
            l1,
            lower,
            redis,
            disk,
            writes,
            flights: SingleFlight::default(),
            started,
            rate: RateWindow::new(started),
            latency: Latencies::default(),
            bytes_given: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(0),
            memory_errors: TierCounters::default(),
            background: Mutex::new(None),
            coherence: config
                .redis_invalidation
                .then(|| Arc::new(Coherence::default())),
            listener: Mutex::new(None),
            generation: AtomicU64::new(fork::generation()),
            config,
        });
        *lock(&inner.background) = Background::start(&inner)?;
        inner.start_listener(true)?;

        // Weak: a cache closed is not kept alive by the fork handlers.
        let weak = Arc::downgrade(&inner);
        fork::register(weak);
        Ok(Cache { inner })
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
        match inner.l1.get(key) {
            Some(stored) => Ok(inner.decode(stored)),
            None => Ok(inner.get_missed(key)),
        }
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
                    .in_this_process()
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
            Some(Err(e @ Error::TooLarge(_))) => {
                // Whole, but over this cache's max_value_size: a miss, counted.
                inner.too_large(key, &e.to_string());
                Ok(None)
            }
            other => other.transpose(),
        }
    }

    /// `get_copy_yielding` restricted to the memory tier: never asks Redis or the disk tier and
    /// never writes to them, so it never blocks on I/O (an async caller runs it on its event
    /// loop and sends only a miss to a thread). A miss is not counted: the caller follows it
    /// with a full get that counts it. A value that would need a lower tier's help (one that
    /// does not decode, which the full get drops from every tier) is reported as a miss too.
    pub fn get_copy_memory(
        &self,
        key: &[u8],
        buf: &mut [u8],
        pin_larger: bool,
    ) -> Result<Option<Copied>> {
        let inner = &*self.inner;
        inner.check_key(key)?;
        inner.sync_memory();
        let limit = inner.config.max_value_size;
        match inner
            .l1
            .probe_with(key, |b| copy_or_pin(b, buf, limit, pin_larger))
        {
            None | Some(Err(Error::Internal(_))) => Ok(None),
            Some(Ok(Copied::Pinned(stored))) if stored.entry_flags() & flags::COMPRESSED != 0 => {
                Ok(inner.decompressed(&stored).ok().map(Copied::Pinned))
            }
            other => other.transpose(),
        }
    }

    /// `get` for many keys at once: L1 for each, then the keys still missing from Redis in one
    /// MGET round trip, then from disk. Misses are None, in the keys' order.
    pub fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Blob>>> {
        let inner = self.inner.in_this_process();
        for (i, key) in keys.iter().enumerate() {
            inner
                .check_key(key)
                .map_err(|e| e.about(&format!("keys[{i}]")))?;
        }
        inner.sync_memory();
        let mut found: Vec<Option<Blob>> = keys.iter().map(|k| inner.l1.get(k)).collect();
        inner.get_many_lower(keys, &mut found);
        Ok(found
            .into_iter()
            .map(|b| b.and_then(|b| inner.decode(b)))
            .collect())
    }

    /// `set` for many entries at once, all for `ttl`: Redis gets them pipelined in one round
    /// trip. Every key and value is checked against every limit (after compression, where the
    /// limit is on what is stored) before anything is stored: an error means nothing stored.
    pub fn set_many(&self, items: &[(&[u8], &[u8])], ttl: Option<Duration>) -> Result<()> {
        let inner = self.inner.in_this_process();
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
        inner.write(Mutation::Set(&entries, ttl)).map(drop)
    }

    /// Stores `value` under `key` in every tier. `ttl` None = each tier's default.
    pub fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let inner = self.inner.in_this_process();
        inner.check_key(key)?;
        inner.store(key, value, ttl).map(drop)
    }

    /// Removes `key` from every tier; true if any tier had it.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.inner.check_key(key)?;
        self.inner.in_this_process().write(Mutation::Delete(key))
    }

    /// True if some tier has a live entry for `key` (no promotion, no access recorded).
    pub fn exists(&self, key: &[u8]) -> Result<bool> {
        self.inner.check_key(key)?;
        self.inner.in_this_process().sync_memory();
        if self.inner.l1.contains(key) {
            return Ok(true);
        }
        let in_lower = |t: &Arc<dyn LowerTier>| t.peek(key).is_ok_and(|hit| hit.is_some());
        Ok(self.inner.lower.iter().any(in_lower))
    }

    /// Removes this cache's entries from every tier. Err when a lower tier could not finish
    /// (Redis down or too slow for redis_timeout_ms): memory and the other tiers are cleared,
    /// and this process reads Redis again only after it has finished the clear there.
    pub fn clear(&self) -> Result<()> {
        self.inner
            .in_this_process()
            .write(Mutation::Clear)
            .map(drop)
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
        self.inner.in_this_process().expire_step()
    }

    pub fn stats(&self) -> CacheStats {
        self.inner.in_this_process().stats()
    }

    /// The stats and each tier's health and details as one JSON object, the document
    /// `sz_cache_stats_json` returns (its keys are listed in docs/c-api.md).
    ///
    /// ```
    /// use smartcache::{Cache, Config};
    ///
    /// let cache = Cache::open(Config::default())?;
    /// cache.set(b"greeting", b"hello", None)?;
    /// assert!(cache.get(b"greeting")?.is_some());
    /// let stats: serde_json::Value = serde_json::from_str(&cache.stats_json()).unwrap();
    /// assert_eq!(stats["sets"], 1);
    /// assert_eq!(stats["tiers"]["memory"]["hits"], 1);
    /// assert_eq!(stats["tiers"]["redis"]["enabled"], false);
    /// # Ok::<(), smartcache::Error>(())
    /// ```
    pub fn stats_json(&self) -> String {
        crate::stats::render_json(&self.stats(), &self.health())
    }

    /// The stats in the Prometheus text exposition format (version 0.0.4), ready to serve on
    /// a /metrics endpoint: the metrics of [`crate::stats::prometheus::METRICS`], each named
    /// `smartcache_*`, per-tier ones labelled `tier`. What `sz_cache_stats_prometheus` returns.
    ///
    /// ```
    /// use smartcache::{Cache, Config};
    ///
    /// let cache = Cache::open(Config::default())?;
    /// cache.set(b"greeting", b"hello", None)?;
    /// cache.get(b"greeting")?;
    /// let text = cache.stats_prometheus();
    /// assert!(text.contains("# TYPE smartcache_hits_total counter\n"));
    /// assert!(text.contains("\nsmartcache_hits_total 1\n"));
    /// assert!(text.contains("\nsmartcache_tier_up{tier=\"memory\"} 1\n"));
    /// # Ok::<(), smartcache::Error>(())
    /// ```
    pub fn stats_prometheus(&self) -> String {
        crate::stats::render_prometheus(&self.stats(), &self.health())
    }

    pub fn health(&self) -> Health {
        self.inner.in_this_process().health()
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

impl ForkAware for Inner {
    /// In the order the code nests them: the background slot before the Redis probe's and the
    /// listener's (`adopt_process`), the write log's catch-up before the memory shards
    /// (`catch_up`), a tier's own locks before its counters'. In all: background slot,
    /// listener slot, write log, disk, flights, memory shards, Redis (its pending
    /// invalidations before its connections: a replay holds the one while using the other),
    /// the listener's last error, counters, rate. The lower tiers are named
    /// here by type rather than walked in `lower`'s read order, because memory sits between
    /// them in this order: a tier added to `lower` must be added here too.
    fn hold_locks<'a>(&'a self, held: &mut Vec<Box<dyn Held + 'a>>) {
        held.push(Box::new(lock(&self.background)));
        held.push(Box::new(lock(&self.listener)));
        if let Some(log) = &self.writes {
            held.push(Box::new(log.hold_for_fork()));
        }
        if let Some(disk) = &self.disk {
            disk.file.hold_for_fork(held);
        }
        held.push(Box::new(self.flights.hold_for_fork()));
        self.l1.hold_for_fork(held);
        if let Some(redis) = &self.redis {
            redis.hold_for_fork(held);
        }
        if let Some(c) = &self.coherence {
            c.hold_for_fork(held);
        }
        held.push(Box::new(self.memory_errors.hold_for_fork()));
        held.push(Box::new(self.rate.hold_for_fork()));
    }

    /// The memory tier is kept: with a disk tier, the write log (position and all) came along
    /// with it, and the child, now a writer of its own, applies what its parent and siblings
    /// write from here on; without one, processes share nothing to be coherent with. Redis's
    /// pending invalidations are kept too (see `RedisLayer::after_fork`).
    fn in_child(&self) {
        if let Some(log) = &self.writes {
            log.after_fork();
        }
        if let Some(disk) = &self.disk {
            disk.file.after_fork();
        }
        if let Some(redis) = &self.redis {
            redis.after_fork();
        }
        self.flights.after_fork();
        self.forget_listener();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Restarts the background threads if this is a forked child that has not yet (they do
    /// not survive a fork). On slow paths only: one load of a process-wide counter.
    #[inline]
    fn in_this_process(&self) -> &Inner {
        if self.generation.load(Relaxed) != fork::generation() {
            self.adopt_process(true);
        }
        self
    }

    /// In a forked child: lets go of the parent's threads, and starts this process's own when
    /// `restart` (false when closing).
    #[cold]
    fn adopt_process(&self, restart: bool) {
        let mut background = lock(&self.background);
        let now = fork::generation();
        if self.generation.load(Relaxed) == now {
            return;
        }
        if let Some(parents) = background.take() {
            parents.abandon();
        }
        // A thread that cannot start costs expiry sweeps, rate samples and the prompt replay
        // of Redis invalidations (the next Redis read still replays them first), not
        // correctness: expired entries are never served anyway. The next call does not try
        // again.
        if let Some(me) = self.me.upgrade().filter(|_| restart) {
            *background = Background::start(&me).ok().flatten();
        }
        if let Some(redis) = &self.redis {
            redis.tier.abandon_probe();
            if restart {
                let _ = redis.tier.restart_probe();
            }
        }
        if let Some(parents) = lock(&self.listener).take() {
            parents.abandon();
        }
        if restart {
            // Not waited for: memory stays empty (every get reads Redis) until it listens.
            // One that cannot start leaves memory untrusted, never stale.
            let _ = self.start_listener(false);
        }
        self.generation.store(now, Relaxed);
        drop(background);
    }

    #[inline]
    fn check_key(&self, key: &[u8]) -> Result<()> {
        match key.len() {
            1..=MAX_KEY_LEN => Ok(()),
            _ => Err(bad_key(key)),
        }
    }

    /// `get` after memory missed: the lower tiers, out of line so that a memory hit's path
    /// through the C ABI stays one straight function.
    #[inline(never)]
    fn get_missed(&self, key: &[u8]) -> Option<Blob> {
        let stored = self.in_this_process().get_lower(key)?;
        self.decode(stored)
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

    /// Records a write of the keys of memory-tier hash `hash` (None: a clear) for the other
    /// processes' memory tiers, once it has reached the tiers they read.
    fn tell_others(&self, hash: Option<u64>) {
        if let Some(log) = &self.writes {
            let change = hash.map_or(Change::All, Change::Key);
            if log.record(change) {
                self.catch_up(log);
            }
        }
    }

    fn has_lower_tiers(&self) -> bool {
        !self.lower.is_empty()
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
}

/// Why `key` is refused (empty or over MAX_KEY_LEN).
#[cold]
fn bad_key(key: &[u8]) -> Error {
    if key.is_empty() {
        return Error::invalid("key is empty");
    }
    Error::TooLarge(format!(
        "key of {} bytes (the limit is {MAX_KEY_LEN})",
        key.len()
    ))
}

impl Drop for Cache {
    fn drop(&mut self) {
        // A child that never adopted its process holds its parent's threads: let go of them
        // rather than join them.
        if self.inner.generation.load(Relaxed) != fork::generation() {
            self.inner.adopt_process(false);
        }
        // The listener first: its thread may hold the Inner for a moment (see `coherent`).
        let listener = lock(&self.inner.listener).take();
        drop(listener);
        // Stop the background thread before the tiers go away (this also ends the cycle of
        // the thread holding the Inner).
        let background = lock(&self.inner.background).take();
        drop(background);
        if let Some(disk) = &self.inner.disk {
            // Nothing to report a failure to at close; other processes still see the data.
            let _ = disk.file.flush();
        }
    }
}
