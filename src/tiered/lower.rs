//! The tiers below memory as `LowerTier`s: Redis with the invalidations that could not reach it
//! (paid by any process of the host before it reads Redis again: `coherence::outage`), the
//! disk file with its default TTL and whether its writes are failing.

use crate::clock;
use crate::coherence::outage::{Outage, Payer};
use crate::disk::DiskTier;
use crate::error::{Error, Result};
use crate::latency::TierId;
use crate::redis::RedisTier;
use crate::tier::{Entry, Hit, LowerTier, TierHealth};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The Redis tier, with the invalidations that could not reach it: a set, delete or clear that
/// failed in Redis (or timed out, and may still land) is owed in the outage table, and every
/// process sharing the table skips Redis (a miss, so the disk serves) until the debts are paid
/// — by the next Redis read of any of them, or by a background thread within a second of Redis
/// answering again.
pub struct RedisLayer {
    pub tier: Arc<RedisTier>,
    /// Shared with the other processes of the disk_path (in the write log file), or this
    /// process's own without a disk tier.
    outage: Outage,
    /// One payer per process at a time; the others skip Redis meanwhile.
    paying: Mutex<()>,
}

impl Payer for RedisTier {
    fn round_trip(&self) -> Result<()> {
        RedisTier::round_trip(self)
    }
    fn delete(&self, key: &[u8]) -> Result<()> {
        self.delete_after_round_trip(key)
    }
    fn clear(&self) -> Result<()> {
        RedisTier::clear(self)
    }
}

impl RedisLayer {
    pub fn new(tier: Arc<RedisTier>, outage: Outage) -> RedisLayer {
        RedisLayer {
            tier,
            outage,
            paying: Mutex::new(()),
        }
    }

    /// Notes `keys` whose write did not reach Redis (or may not have: a timeout).
    fn remember<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        for key in keys {
            self.outage.owe(key);
        }
    }

    /// Takes this layer's locks for `crate::fork`: the payment's before the connections
    /// (`settle` holds the one while using the other).
    pub fn hold_for_fork<'a>(&'a self, held: &mut Vec<Box<dyn crate::fork::Held + 'a>>) {
        held.push(Box::new(lock(&self.paying)));
        self.tier.hold_for_fork(held);
    }

    /// In a forked child: the debts are the host's (or, without a disk tier, the child's copy
    /// of its parent's): the child too skips Redis until they are paid.
    pub fn after_fork(&self) {
        self.tier.after_fork();
    }

    /// Pays what is owed. Ok once nothing is (Redis may serve reads); Err while Redis may still
    /// hold a replaced value, or while another thread of this process is paying.
    pub fn settle(&self) -> Result<()> {
        if self.outage.trusted() {
            return Ok(());
        }
        let Ok(_one) = self.paying.try_lock() else {
            return Err(Error::backend(
                "redis: invalidations pending from an outage",
            ));
        };
        self.outage.pay(self.tier.as_ref())?;
        if self.outage.trusted() {
            Ok(())
        } else {
            Err(Error::backend(
                "redis: invalidations pending from an outage",
            ))
        }
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
        let filled = self
            .tier
            .promote(key, value, flags, earliest(expires_ns, tier_limit));
        if filled.is_err() {
            // A SET NX that timed out may land later, when the value it copies is replaced.
            self.remember([key]);
        }
        filled
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
            self.outage.owe_clear();
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

    /// The disk served `key` while Redis was down or owed: Redis may hold an older value
    /// (a writer killed between its disk and Redis steps owes nothing), so it is owed too.
    fn served_below(&self, key: &[u8]) {
        self.remember([key]);
    }

    /// Pays the debts once Redis answers again, so that no process waits for its next read.
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
