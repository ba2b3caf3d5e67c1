//! What the tiers share: the shape of a hit in a lower tier, entry flags, per-tier counters, and
//! `LowerTier`, the interface of every tier below memory.
//!
//! The memory tier stays a concrete type (its hit path is the hot path); the tiers below it
//! (Redis, disk) are `LowerTier`s that the coordinator in `tiered/` holds in read order. Lifetimes cross tiers as *absolute* deadlines
//! (rounded down), so a promoted entry never outlives its deadline in the tier it came from: a
//! duration would be counted again from a later instant by the receiving tier.

use crate::error::Result;
use crate::latency::TierId;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Bits stored with every entry in every tier.
pub mod flags {
    /// The stored bytes are LZ4-compressed; the original length is in the compressed frame.
    pub const COMPRESSED: u8 = 1;
}

/// A value found in a lower tier (L2 or L3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The stored bytes (still compressed when `flags & COMPRESSED`).
    pub value: Vec<u8>,
    pub flags: u8,
    /// When the entry expires in the tier it was read from, in unix nanoseconds (wall clock),
    /// never later than that tier's own deadline; None = no expiry.
    pub expires_ns: Option<u64>,
}

impl Hit {
    /// Time left before the entry expires (rounded down, zero once passed); None = no expiry.
    pub fn remaining(&self) -> Option<Duration> {
        self.expires_ns
            .map(|at| Duration::from_nanos(at.saturating_sub(crate::clock::unix_ns())))
    }
}

/// Up/down state and last error of one tier.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TierHealth {
    pub enabled: bool,
    pub up: bool,
    pub errors: u64,
    pub last_error: Option<String>,
}

/// An entry for `LowerTier::set_many`: key, stored bytes, entry flags.
pub type Entry<'a> = (&'a [u8], &'a [u8], u8);

/// A tier below memory, as the coordinator's read and write paths use it. Every call may fail
/// (Err: an I/O error, a timeout, an open breaker); the tier counts its own hits, misses, sets,
/// deletes and errors, and the coordinator treats a failure as a miss or a skipped write.
///
/// Adding a tier means implementing this and adding it to the coordinator's list (see
/// `tiered::stack`): the read order is the list's, the write order its reverse.
pub trait LowerTier: Send + Sync {
    /// Which tier this is, for latency stats.
    fn id(&self) -> TierId;
    /// The live entry of `key` (counted as a hit or a miss).
    fn get(&self, key: &[u8]) -> Result<Option<Hit>>;
    /// `get` for many keys, in their order.
    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Hit>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }
    /// What `get` would return, not counted (a re-check, or `exists`).
    fn peek(&self, key: &[u8]) -> Result<Option<Hit>>;
    /// Stores entries written by the caller for `ttl` (None: this tier's default).
    fn set_many(&self, entries: &[Entry<'_>], ttl: Option<Duration>) -> Result<()>;
    /// Stores a copy of an entry found in a tier below, expiring at `expires_ns` (unix ns, None
    /// = never, capped by this tier's default TTL), only if `key` is absent: a value a writer
    /// stored meanwhile is newer and stays. Some(token) when stored, for `withdraw`.
    fn fill_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u8,
        expires_ns: Option<u64>,
    ) -> Result<Option<Vec<u8>>>;
    /// Removes the copy `fill_if_absent` stored (its `token`) if it is still what `key` holds.
    fn withdraw(&self, key: &[u8], token: &[u8]) -> Result<bool>;
    /// Removes `key`; true if it was there.
    fn delete(&self, key: &[u8]) -> Result<bool>;
    /// Removes every entry of this cache.
    fn clear(&self) -> Result<()>;
    /// Health and errors, for `health` and stats.
    fn report(&self) -> TierHealth;
    /// Hits counted so far (they turn memory misses into hits in the cache-wide stats).
    fn hits(&self) -> u64;
    /// One bounded step of reclaiming expired entries; how many were reclaimed.
    fn expire_step(&self) -> usize {
        0
    }
    /// Upkeep the background thread runs about once a second.
    fn tick(&self) {}
    /// A tier below this one served `key` while this one could not be asked (down, or not
    /// trusted): this tier may hold an older value of it, which must not be served once the
    /// newer one has been (a write killed between the tiers leaves them so).
    fn served_below(&self, _key: &[u8]) {}
}

/// Counters of one lower tier. Relaxed atomics: these tiers cost microseconds per call, so one
/// shared counter per kind is not the bottleneck it would be on the L1 hit path.
#[derive(Debug, Default)]
pub struct TierCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub sets: AtomicU64,
    pub deletes: AtomicU64,
    pub errors: AtomicU64,
    /// Records refused because their MAC did not verify, or was missing (see `sign`).
    pub tampered: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A copy of a tier's counters at one instant. Serialised as they appear in the stats JSON.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TierSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    pub deletes: u64,
    pub errors: u64,
    pub tampered: u64,
    pub last_error: Option<String>,
}

impl TierCounters {
    pub fn hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }
    pub fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }
    pub fn set(&self) {
        self.sets.fetch_add(1, Relaxed);
    }
    pub fn delete(&self) {
        self.deletes.fetch_add(1, Relaxed);
    }
    /// Counts an error and keeps its message for health reports.
    pub fn error(&self, message: &str) {
        self.errors.fetch_add(1, Relaxed);
        self.keep_last_error(message);
    }
    /// Counts a record refused by signature checking and keeps why for health reports (it is
    /// not a transport error, so `errors` is not counted).
    pub fn tampered(&self, message: &str) {
        self.tampered.fetch_add(1, Relaxed);
        self.keep_last_error(message);
    }
    fn keep_last_error(&self, message: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message.to_string());
        }
    }
    /// Held by the thread about to fork (see `crate::fork`).
    pub fn hold_for_fork(&self) -> MutexGuard<'_, Option<String>> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn snapshot(&self) -> TierSnapshot {
        TierSnapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            sets: self.sets.load(Relaxed),
            deletes: self.deletes.load(Relaxed),
            errors: self.errors.load(Relaxed),
            tampered: self.tampered.load(Relaxed),
            last_error: self.last_error.lock().ok().and_then(|l| l.clone()),
        }
    }
}

/// A key as shown in messages: at most its first 64 bytes, non-printable bytes escaped.
pub fn shown_key(key: &[u8]) -> String {
    key.iter()
        .take(64)
        .flat_map(|b| b.escape_ascii())
        .map(char::from)
        .collect()
}

/// A TTL in seconds from the config as an optional duration (0 = no expiry).
pub fn ttl_from_secs(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| clamp_ttl(Duration::from_secs(secs)))
}

/// TTLs longer than this are stored as this: every tier must be able to hold the deadline
/// (Redis refuses a PX whose deadline overflows its clock), and a century is "forever" for a
/// cache.
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A TTL as every tier can store it (see MAX_TTL).
pub fn clamp_ttl(ttl: Duration) -> Duration {
    ttl.min(MAX_TTL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_snapshot_and_keep_last_error() {
        let c = TierCounters::default();
        c.hit();
        c.miss();
        c.miss();
        c.error("first");
        c.error("second");
        let s = c.snapshot();
        assert_eq!((s.hits, s.misses, s.errors), (1, 2, 2));
        assert_eq!(s.last_error.as_deref(), Some("second"));
    }

    #[test]
    fn zero_ttl_means_none() {
        assert_eq!(ttl_from_secs(0), None);
        assert_eq!(ttl_from_secs(5), Some(Duration::from_secs(5)));
    }
}
