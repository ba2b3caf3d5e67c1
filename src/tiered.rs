//! The coordinator: one cache over the enabled tiers.
//!
//! get reads L1, then the lower tiers in order, and copies a lower-tier hit into the tiers
//! above it with the entry's *remaining* lifetime; set writes through to every enabled tier
//! (an explicit ttl applies to all, otherwise each tier's default); delete and clear reach
//! every tier. A lower tier that fails degrades to a miss or a skipped write, counted in its
//! stats and shown in health; it never fails the call.

use crate::config::{Config, MAX_KEY_LEN};
use crate::disk::DiskTier;
use crate::error::{Error, Result};
use crate::flight::SingleFlight;
use crate::memory::{Blob, MemoryOptions, MemoryTier};
use crate::redis::RedisTier;
use crate::stats::{CacheStats, RateWindow};
use crate::tier::ttl_from_secs;
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
    expirer: Option<Expirer>,
}

struct Inner {
    config: Config,
    l1: MemoryTier,
    memory_ttl: Option<Duration>,
    /// L2, when redis_enabled. Its failures never fail a call here: the tier counts them (and
    /// its breaker skips a dead Redis), the coordinator sees a miss or a skipped write.
    l2: Option<RedisTier>,
    l3: Option<DiskTier>,
    disk_ttl: Option<Duration>,
    flights: SingleFlight<Blob>,
    started: Instant,
    rate: RateWindow,
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
    /// Fraction of disk_max_size in use.
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
        let l1 = MemoryTier::new(MemoryOptions {
            max_items: config.memory_capacity,
            max_bytes: config.memory_max_bytes,
            jemalloc: config.jemalloc_enabled,
            count_stats: config.enable_stats,
        });
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
            disk_ttl: ttl_from_secs(config.disk_ttl),
            flights: SingleFlight::default(),
            started,
            rate: RateWindow::new(started),
            config,
        });
        let expirer = match inner.config.auto_expire_interval {
            0 => None,
            secs => Some(Expirer::start(
                Arc::clone(&inner),
                Duration::from_secs(secs),
            )?),
        };
        Ok(Cache { inner, expirer })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The live value of `key`, pinned: valid for as long as the returned handle is held.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Result<Option<Blob>> {
        self.inner.check_key(key)?;
        if let Some(blob) = self.inner.l1.get(key) {
            return Ok(Some(blob));
        }
        Ok(self.inner.get_lower(key))
    }

    /// Copies the value of `key` into `buf`; returns its length. When `buf` is too small,
    /// Err(BufferTooSmall(len)) says how much is needed.
    pub fn get_copy(&self, key: &[u8], buf: &mut [u8]) -> Result<Option<usize>> {
        self.inner.check_key(key)?;
        let copied = match self.inner.l1.get_with(key, |b| copy_into(b, buf)) {
            Some(r) => Some(r),
            None => self.inner.get_lower(key).map(|b| copy_into(&b, buf)),
        };
        copied.transpose()
    }

    /// Stores `value` under `key` in every tier. `ttl` None = each tier's default.
    pub fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.inner.check_key(key)?;
        self.inner.check_value(value)?;
        let in_l1 = self
            .inner
            .l1
            .insert(key, value, 0, ttl.or(self.inner.memory_ttl));
        self.inner.set_lower(key, value, ttl);
        match in_l1 {
            // Too large for memory's byte budget but kept by a lower tier: served from there.
            Err(Error::TooLarge(_)) if self.inner.l2.is_some() || self.inner.l3.is_some() => Ok(()),
            other => other,
        }
    }

    /// Removes `key` from every tier; true if any tier had it.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.inner.check_key(key)?;
        let in_l1 = self.inner.l1.delete(key);
        // A failing lower-tier delete is counted by that tier; the entry then lives out its TTL.
        let in_l2 = self
            .inner
            .l2
            .as_ref()
            .is_some_and(|l2| l2.delete(key).unwrap_or(false));
        let in_l3 = self
            .inner
            .l3
            .as_ref()
            .is_some_and(|l3| l3.delete(key).unwrap_or(false));
        Ok(in_l1 || in_l2 || in_l3)
    }

    /// True if some tier has a live entry for `key` (no promotion, no access recorded).
    pub fn exists(&self, key: &[u8]) -> Result<bool> {
        self.inner.check_key(key)?;
        if self.inner.l1.contains(key) {
            return Ok(true);
        }
        let in_l2 = || {
            self.inner
                .l2
                .as_ref()
                .is_some_and(|l2| matches!(l2.get(key), Ok(Some(_))))
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
        self.inner.l1.clear();
        if let Some(l2) = &self.inner.l2 {
            // Only keys under this cache's prefix; a failure is counted by the tier.
            let _ = l2.clear();
        }
        if let Some(l3) = &self.inner.l3 {
            // Counted in the disk tier's errors when it fails; clear of L1 still happened.
            let _ = l3.clear();
        }
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
            // Someone may have stored it between our miss and taking the flight.
            if let Some(v) = self.get(key)? {
                return Ok(v);
            }
            let value = compute()?;
            self.inner.check_value(&value)?;
            let blob = self
                .inner
                .l1
                .make_blob(key, &value, 0, ttl.or(self.inner.memory_ttl))?;
            self.inner.l1.insert_blob(blob.clone())?;
            self.inner.set_lower(key, &value, ttl);
            Ok(blob)
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
            memory: TierHealth {
                enabled: true,
                up: true,
                errors: 0,
                last_error: None,
            },
            ..Default::default()
        };
        if let Some(l3) = &self.inner.l3 {
            let s = l3.stats();
            // The file stays mapped once open, so the tier is up; its failures (a writer lock
            // that could not be taken) show as errors and last_error.
            h.disk = TierHealth {
                enabled: true,
                up: true,
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

    /// L1 missed: ask L2, then L3, and copy a hit into the tiers above it for what is left of
    /// its lifetime (capped by each tier's own TTL), never a fresh full TTL.
    fn get_lower(&self, key: &[u8]) -> Option<Blob> {
        // Err = the tier failed or its breaker skipped it: counted by the tier, a miss here.
        let from_l2 = self.l2.as_ref().and_then(|l2| l2.get(key).ok().flatten());
        let (hit, from_l3) = match from_l2 {
            Some(hit) => (hit, false),
            None => (self.l3.as_ref()?.get(key).ok().flatten()?, true),
        };
        if hit.flags != 0 {
            // This build writes only plain values (compression is not wired in yet); a
            // compressed value from another writer must not be handed out as if plain.
            return None;
        }
        if from_l3 {
            if let Some(l2) = &self.l2 {
                let _ = l2.set(key, &hit.value, 0, capped(hit.remaining, l2.default_ttl()));
            }
        }
        let blob = self
            .l1
            .make_blob(key, &hit.value, 0, capped(hit.remaining, self.memory_ttl))
            .ok()?;
        // A promotion L1 cannot take is not the caller's failure: the value is still served.
        let _ = self.l1.insert_blob(blob.clone());
        Some(blob)
    }

    /// Write-through below L1; an explicit ttl applies to every tier, otherwise each tier's own.
    fn set_lower(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) {
        if let Some(l2) = &self.l2 {
            // A failed or skipped write is counted by the tier; L1 still has the value.
            let _ = l2.set(key, value, 0, ttl.or(l2.default_ttl()));
        }
        if let Some(l3) = &self.l3 {
            // A failed disk write must not leave an older value there to resurface after L1
            // evicts the new one, so the key is removed instead.
            if l3.set(key, value, 0, ttl.or(self.disk_ttl)).is_err() {
                let _ = l3.delete(key);
            }
        }
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
        CacheStats {
            hits: memory.hits + lower_hits,
            misses: memory.misses.saturating_sub(lower_hits),
            sets: memory.sets,
            deletes: memory.deletes,
            evictions: memory.evictions,
            expirations: memory.expirations,
            ops_per_second: self.rate.rate(now, total_ops),
            compression_ratio: 1.0,
            memory,
            redis,
            disk,
            disk_file,
            uptime: now.duration_since(self.started),
        }
    }
}

/// A promoted entry's lifetime: what it has left, and no more than the receiving tier's TTL.
fn capped(remaining: Option<Duration>, tier_ttl: Option<Duration>) -> Option<Duration> {
    match (remaining, tier_ttl) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Copies a value into the caller's buffer, or says how large it must be.
fn copy_into(b: &Blob, buf: &mut [u8]) -> Result<usize> {
    let v = b.value();
    match buf.get_mut(..v.len()) {
        Some(dst) => {
            dst.copy_from_slice(v);
            Ok(v.len())
        }
        None => Err(Error::BufferTooSmall(v.len())),
    }
}

/// The background expiry thread: one bounded step every interval, stopped and joined on close.
struct Expirer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Expirer {
    fn start(inner: Arc<Inner>, every: Duration) -> Result<Expirer> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("smartcache-expire".into())
            .spawn(move || {
                let (lock, cv) = &*stop2;
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*stopped {
                    let (guard, timeout) = cv
                        .wait_timeout(stopped, every)
                        .unwrap_or_else(|e| e.into_inner());
                    stopped = guard;
                    if *stopped || !timeout.timed_out() {
                        continue;
                    }
                    drop(stopped);
                    // A panic here must not kill the host; the next tick tries again.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        inner.expire_step();
                        inner.stats();
                    }));
                    stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the expiry thread: {e}")))?;
        Ok(Expirer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Expirer {
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
        self.expirer.take();
        if let Some(l3) = &self.inner.l3 {
            // Nothing to report a failure to at close; other processes still see the data.
            let _ = l3.flush();
        }
    }
}
