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
use crate::stats::{CacheStats, RateWindow};
use crate::tier::ttl_from_secs;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Slots each expiry step visits per shard: small enough that a shard's write lock is held for
/// microseconds, so a concurrent get never stalls behind the sweep.
const EXPIRE_BUDGET_PER_SHARD: usize = 256;
/// Index slots each expiry step visits in the disk tier: the step holds the cross-process writer
/// lock, so it is kept to well under a millisecond.
const DISK_EXPIRE_BUDGET: usize = 4096;

pub struct Cache {
    inner: Arc<Inner>,
    expirer: Option<Expirer>,
}

struct Inner {
    config: Config,
    l1: MemoryTier,
    memory_ttl: Option<Duration>,
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
    /// Opens a cache. A tier that this build does not provide yet is refused here rather than
    /// silently ignored.
    pub fn open(config: Config) -> Result<Cache> {
        config.validate()?;
        if config.redis_enabled {
            return Err(Error::config(
                "redis_enabled: the Redis tier (L2) is not available in this build",
            ));
        }
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
        let started = Instant::now();
        let inner = Arc::new(Inner {
            memory_ttl: ttl_from_secs(config.memory_ttl),
            l1,
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
        match self.inner.l1.get(key) {
            Some(b) => Ok(Some(b)),
            None => self.inner.read_lower(key),
        }
    }

    /// Copies the value of `key` into `buf`; returns its length. When `buf` is too small,
    /// Err(BufferTooSmall(len)) says how much is needed.
    pub fn get_copy(&self, key: &[u8], buf: &mut [u8]) -> Result<Option<usize>> {
        self.inner.check_key(key)?;
        let copied = self.inner.l1.get_with(key, |b| {
            let v = b.value();
            match buf.get_mut(..v.len()) {
                Some(dst) => {
                    dst.copy_from_slice(v);
                    Ok(v.len())
                }
                None => Err(Error::BufferTooSmall(v.len())),
            }
        });
        if copied.is_none() {
            if let Some(b) = self.inner.read_lower(key)? {
                let v = b.value();
                return match buf.get_mut(..v.len()) {
                    Some(dst) => {
                        dst.copy_from_slice(v);
                        Ok(Some(v.len()))
                    }
                    None => Err(Error::BufferTooSmall(v.len())),
                };
            }
        }
        copied.transpose()
    }

    /// Stores `value` under `key` in every tier. `ttl` None = each tier's default.
    pub fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.inner.check_key(key)?;
        self.inner.check_value(value)?;
        let r = self
            .inner
            .l1
            .insert(key, value, 0, ttl.or(self.inner.memory_ttl));
        self.inner.write_lower(key, value, 0, ttl);
        r
    }

    /// Removes `key` from every tier; true if any tier had it.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.inner.check_key(key)?;
        let in_l1 = self.inner.l1.delete(key);
        // A disk failure is counted in the tier's stats; the key is then at worst still on disk.
        let in_l3 = match &self.inner.l3 {
            Some(l3) => l3.delete(key).unwrap_or(false),
            None => false,
        };
        Ok(in_l1 || in_l3)
    }

    /// True if some tier has a live entry for `key` (no promotion, no access recorded).
    pub fn exists(&self, key: &[u8]) -> Result<bool> {
        self.inner.check_key(key)?;
        Ok(self.inner.l1.contains(key)
            || self
                .inner
                .l3
                .as_ref()
                .is_some_and(|l3| l3.contains(key).unwrap_or(false)))
    }

    /// Removes this cache's entries from every tier.
    pub fn clear(&self) -> Result<()> {
        self.inner.l1.clear();
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
            self.inner.write_lower(key, &value, 0, ttl);
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
        let mut h = Health {
            healthy: true,
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

    fn expire_step(&self) -> usize {
        let disk = match &self.l3 {
            Some(l3) => l3.expire_step(DISK_EXPIRE_BUDGET).unwrap_or(0),
            None => 0,
        };
        self.l1.expire_step(EXPIRE_BUDGET_PER_SHARD) + disk
    }

    /// A miss in L1: asks the disk tier, and copies a hit into L1 for no longer than the entry
    /// has left (and no longer than L1's own TTL).
    fn read_lower(&self, key: &[u8]) -> Result<Option<Blob>> {
        let Some(l3) = &self.l3 else {
            return Ok(None);
        };
        // get fails only for keys check_key already refused; anything else is a miss.
        let Ok(Some(hit)) = l3.get(key) else {
            return Ok(None);
        };
        let ttl = match (hit.remaining, self.memory_ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let blob = self.l1.make_blob(key, &hit.value, hit.flags, ttl)?;
        // A promotion L1 cannot take is not the caller's failure: the value is still served.
        let _ = self.l1.insert_blob(blob.clone());
        Ok(Some(blob))
    }

    /// Writes through to the disk tier. A failed write (counted in the tier's stats) must not
    /// leave an older value there to resurface after L1 evicts the new one, so the key is
    /// removed instead.
    fn write_lower(&self, key: &[u8], value: &[u8], flags: u8, ttl: Option<Duration>) {
        if let Some(l3) = &self.l3 {
            if l3.set(key, value, flags, ttl.or(self.disk_ttl)).is_err() {
                let _ = l3.delete(key);
            }
        }
    }

    fn stats(&self) -> CacheStats {
        let memory = self.l1.stats();
        let disk = self.l3.as_ref().map(|l3| l3.stats().counters);
        // Every L1 miss of a get goes on to L3, so an L3 hit turns one of them into a hit.
        let disk_hits = disk.as_ref().map_or(0, |d| d.hits);
        let total_ops = memory.hits + memory.misses + memory.sets + memory.deletes;
        let now = Instant::now();
        CacheStats {
            hits: memory.hits + disk_hits,
            misses: memory.misses.saturating_sub(disk_hits),
            sets: memory.sets,
            deletes: memory.deletes,
            evictions: memory.evictions,
            expirations: memory.expirations,
            ops_per_second: self.rate.rate(now, total_ops),
            compression_ratio: 1.0,
            memory,
            redis: None,
            disk,
            uptime: now.duration_since(self.started),
        }
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
