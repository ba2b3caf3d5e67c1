//! The tiers below memory as `LowerTier`s: Redis as it is, the disk file with the coordinator's
//! own state around it (its default TTL, and whether its writes are failing).

use crate::clock;
use crate::disk::DiskTier;
use crate::error::{Error, Result};
use crate::latency::TierId;
use crate::redis::RedisTier;
use crate::tier::{Entry, Hit, LowerTier, TierHealth};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

impl LowerTier for RedisTier {
    fn id(&self) -> TierId {
        TierId::Redis
    }

    fn get(&self, key: &[u8]) -> Result<Option<Hit>> {
        RedisTier::get(self, key)
    }

    /// One MGET: one round trip.
    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Hit>>> {
        RedisTier::get_many(self, keys)
    }

    fn peek(&self, key: &[u8]) -> Result<Option<Hit>> {
        RedisTier::peek(self, key)
    }

    /// One SET, or the batch pipelined in one round trip.
    fn set_many(&self, entries: &[Entry<'_>], ttl: Option<Duration>) -> Result<()> {
        let ttl = ttl.or(self.default_ttl());
        match entries {
            [(key, stored, flags)] => self.set(key, stored, *flags, ttl),
            _ => {
                let batch: Vec<_> = entries.iter().map(|&(k, v, f)| (k, v, f, ttl)).collect();
                RedisTier::set_many(self, &batch)
            }
        }
    }

    fn fill_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u8,
        expires_ns: Option<u64>,
    ) -> Result<Option<Vec<u8>>> {
        let tier_limit = self
            .default_ttl()
            .map(|t| clock::unix_ns().saturating_add(t.as_nanos() as u64));
        self.promote(key, value, flags, earliest(expires_ns, tier_limit))
    }

    /// Compare-and-delete in one script; a Redis that refuses scripts fails here, and the
    /// caller then deletes the key outright.
    fn withdraw(&self, key: &[u8], token: &[u8]) -> Result<bool> {
        RedisTier::withdraw(self, key, token)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        RedisTier::delete(self, key)
    }

    /// Only the keys under this cache's prefix.
    fn clear(&self) -> Result<()> {
        RedisTier::clear(self)
    }

    fn report(&self) -> TierHealth {
        let s = self.stats();
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
    }

    fn hits(&self) -> u64 {
        self.stats().tier.hits
    }
}

/// Index slots each expiry step visits in the disk tier. The step holds the cross-process writer
/// lock (a few ms at most at this size); a 256 MiB file's ~1M slots take 64 steps per lap.
/// Expired entries are never served meanwhile: this only returns their slots and stats.
const DISK_EXPIRE_BUDGET: usize = 16_384;

/// The disk tier with its default TTL (`disk_ttl`), and whether its last write failed.
pub struct DiskLayer {
    pub file: DiskTier,
    ttl: Option<Duration>,
    /// The last write failed (file full of unreclaimable data, lock or I/O error): health shows
    /// the tier down until a write succeeds again.
    failing: AtomicBool,
}

impl DiskLayer {
    pub fn new(file: DiskTier, ttl: Option<Duration>) -> DiskLayer {
        DiskLayer {
            file,
            ttl,
            failing: AtomicBool::new(false),
        }
    }

    /// A failed write must not leave an older value to resurface after memory evicts the new
    /// one, so the key is removed instead.
    fn set(&self, key: &[u8], stored: &[u8], flags: u8, ttl: Option<Duration>) -> Result<()> {
        let written = self.file.set(key, stored, flags, ttl);
        if written.is_err() {
            let _ = self.file.delete(key);
        }
        // A value too large for a segment says nothing about the tier; an I/O failure does.
        let failing = matches!(written, Err(Error::Io(_) | Error::Internal(_)));
        if self.failing.load(Relaxed) != failing {
            self.failing.store(failing, Relaxed);
        }
        written
    }
}

impl LowerTier for DiskLayer {
    fn id(&self) -> TierId {
        TierId::Disk
    }

    fn get(&self, key: &[u8]) -> Result<Option<Hit>> {
        self.file.get(key)
    }

    fn peek(&self, key: &[u8]) -> Result<Option<Hit>> {
        self.file.peek(key)
    }

    fn set_many(&self, entries: &[Entry<'_>], ttl: Option<Duration>) -> Result<()> {
        let ttl = ttl.or(self.ttl);
        let mut first_error = None;
        for &(key, stored, flags) in entries {
            if let Err(e) = self.set(key, stored, flags, ttl) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The disk is the last tier: nothing below it is ever copied into it.
    fn fill_if_absent(&self, _: &[u8], _: &[u8], _: u8, _: Option<u64>) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    fn withdraw(&self, _: &[u8], _: &[u8]) -> Result<bool> {
        Ok(false)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        self.file.delete(key)
    }

    fn clear(&self) -> Result<()> {
        self.file.clear()
    }

    /// The file stays mapped once open, so reads keep working; the tier is down while its
    /// writes fail, and every failure shows in errors and last_error.
    fn report(&self) -> TierHealth {
        let s = self.file.stats();
        TierHealth {
            enabled: true,
            up: !self.failing.load(Relaxed),
            errors: s.counters.errors,
            last_error: s.counters.last_error,
        }
    }

    fn hits(&self) -> u64 {
        self.file.stats().counters.hits
    }

    fn expire_step(&self) -> usize {
        self.file.expire_step(DISK_EXPIRE_BUDGET).unwrap_or(0)
    }
}

/// The earlier of two deadlines (None = never): a copy keeps its source's deadline and gets no
/// more than the receiving tier's TTL.
pub fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
