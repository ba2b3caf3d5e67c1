//! The tiers below memory as `LowerTier`s: Redis with the invalidations that could not reach it
//! (replayed before it is read again), the disk file with its default TTL and whether its
//! writes are failing.

use crate::clock;
use crate::disk::DiskTier;
use crate::error::{Error, Result};
use crate::latency::TierId;
use crate::redis::RedisTier;
use crate::tier::{Entry, Hit, LowerTier, TierHealth};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Keys whose invalidation could not reach Redis that are remembered one by one; past this, a
/// whole clear of the prefix is remembered instead (an outage long enough to overflow costs
/// Redis's entries of this cache, never a stale read).
const MAX_PENDING_KEYS: usize = 10_000;

/// Invalidations that could not reach Redis (breaker open, timeout, error): Redis may still
/// hold what they replaced. Replayed before this process reads Redis again.
#[derive(Default)]
struct Pending {
    keys: HashSet<Vec<u8>>,
    /// A clear, or an overflowed queue: every key under the prefix is to go.
    clear: bool,
}

/// The Redis tier, with the invalidations that could not reach it: a set, delete or clear that
/// failed in Redis is remembered, and reads skip Redis (a miss, so the disk serves) until they
/// have been replayed — by the next Redis read, or by the background thread within a second of
/// Redis answering again.
pub struct RedisLayer {
    pub tier: Arc<RedisTier>,
    /// Something is pending: the one atomic load a read pays while nothing is.
    dirty: AtomicBool,
    pending: Mutex<Pending>,
}

impl RedisLayer {
    pub fn new(tier: Arc<RedisTier>) -> RedisLayer {
        RedisLayer {
            tier,
            dirty: AtomicBool::new(false),
            pending: Mutex::new(Pending::default()),
        }
    }

    /// Notes `keys` whose write did not reach Redis (or may not have: a timeout).
    fn remember<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        let mut p = lock(&self.pending);
        if !p.clear {
            p.keys.extend(keys.into_iter().map(<[u8]>::to_vec));
            if p.keys.len() > MAX_PENDING_KEYS {
                p.keys = HashSet::new();
                p.clear = true;
            }
        }
        self.dirty.store(true, Release);
    }

    fn remember_clear(&self) {
        let mut p = lock(&self.pending);
        p.keys = HashSet::new();
        p.clear = true;
        self.dirty.store(true, Release);
    }

    /// Takes this layer's locks for `crate::fork`: the pending invalidations before the
    /// connections (`settle` holds the one while using the other).
    pub fn hold_for_fork<'a>(&'a self, held: &mut Vec<Box<dyn crate::fork::Held + 'a>>) {
        held.push(Box::new(lock(&self.pending)));
        self.tier.hold_for_fork(held);
    }

    /// In a forked child: the child keeps the invalidations pending in its parent. Redis may
    /// still hold what they replaced for the child as much as for the parent, so the child too
    /// skips Redis until it has replayed them. Both replaying them costs at most a second
    /// delete of a key (a miss later, never a stale read); dropping them could serve a value
    /// the parent deleted. `dirty` and the queue agree, as both are written under the lock
    /// `hold_for_fork` held.
    pub fn after_fork(&self) {
        self.tier.after_fork();
    }

    /// Replays what is pending. Ok once nothing is (Redis may serve reads); Err while Redis
    /// may still hold a replaced value, or while another thread is replaying.
    pub fn settle(&self) -> Result<()> {
        if !self.dirty.load(Acquire) {
            return Ok(());
        }
        let Ok(mut p) = self.pending.try_lock() else {
            return Err(Error::backend(
                "redis: invalidations pending from an outage",
            ));
        };
        if p.clear {
            self.tier.clear()?;
            p.clear = false;
        }
        while let Some(key) = p.keys.iter().next().cloned() {
            self.tier.delete(&key)?;
            p.keys.remove(&key);
        }
        self.dirty.store(false, Release);
        Ok(())
    }
}

impl LowerTier for RedisLayer {
    fn id(&self) -> TierId {
        TierId::Redis
    }

    fn get(&self, key: &[u8]) -> Result<Option<Hit>> {
        self.settle()?;
        self.tier.get(key)
    }

    /// One MGET: one round trip.
    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Hit>>> {
        self.settle()?;
        self.tier.get_many(keys)
    }

    fn peek(&self, key: &[u8]) -> Result<Option<Hit>> {
        self.settle()?;
        self.tier.peek(key)
    }

    /// One SET, or the batch pipelined in one round trip.
    fn set_many(&self, entries: &[Entry<'_>], ttl: Option<Duration>) -> Result<()> {
        let ttl = ttl.or(self.tier.default_ttl());
        let written = match entries {
            [(key, stored, flags)] => self.tier.set(key, stored, *flags, ttl),
            _ => {
                let batch: Vec<_> = entries.iter().map(|&(k, v, f)| (k, v, f, ttl)).collect();
                self.tier.set_many(&batch)
            }
        };
        if written.is_err() {
            self.remember(entries.iter().map(|e| e.0));
        }
        written
    }

    fn fill_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u8,
        expires_ns: Option<u64>,
    ) -> Result<Option<Vec<u8>>> {
        self.settle()?;
        let tier_limit = self
            .tier
            .default_ttl()
            .map(|t| clock::unix_ns().saturating_add(t.as_nanos() as u64));
        self.tier
            .promote(key, value, flags, earliest(expires_ns, tier_limit))
    }

    /// Compare-and-delete in one script; a Redis that refuses scripts fails here, and the
    /// caller then deletes the key outright.
    fn withdraw(&self, key: &[u8], token: &[u8]) -> Result<bool> {
        self.tier.withdraw(key, token)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        let deleted = self.tier.delete(key);
        if deleted.is_err() {
            self.remember([key]);
        }
        deleted
    }

    /// Only the keys under this cache's prefix. A clear that could not finish is remembered
    /// and replayed before this process reads Redis again. It fails the call only while Redis
    /// is up (a stall past the timeout, an error): other processes can read the entries it
    /// left. A Redis that is down (breaker open) serves nobody; it is cleared when it returns,
    /// as a delete missed during an outage is.
    fn clear(&self) -> Result<()> {
        let cleared = self.tier.clear();
        if cleared.is_err() {
            self.remember_clear();
            if !self.tier.is_up() {
                return Ok(());
            }
        }
        cleared
    }

    fn report(&self) -> TierHealth {
        let s = self.tier.stats();
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
        self.tier.stats().tier.hits
    }

    /// Replays pending invalidations once Redis answers again, so other processes do not wait
    /// for this one's next read of Redis.
    fn tick(&self) {
        let _ = self.settle();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only whole-value updates happen under this lock: poisoning cannot leave it torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
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
