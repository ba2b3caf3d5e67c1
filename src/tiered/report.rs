//! What the cache reports about itself: stats, health, and the bounded expiry step.

use super::{Health, Inner, TierHealth};
use crate::latency::{self, Op, TierId};
use crate::stats::CacheStats;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// Slots each expiry step visits per shard: small enough that a shard's write lock is held for
/// microseconds, so a concurrent get never stalls behind the sweep.
const EXPIRE_BUDGET_PER_SHARD: usize = 256;

impl Inner {
    /// Records the operation count for ops_per_second.
    pub(super) fn sample_rate(&self) {
        self.rate.rate(Instant::now(), self.l1.op_count());
    }

    /// The lower tiers' upkeep, about once a second (see `LowerTier::tick`).
    pub(super) fn tick(&self) {
        self.lower.iter().for_each(|t| t.tick());
    }

    pub(super) fn expire_step(&self) -> usize {
        let lower: usize = self.lower.iter().map(|t| t.expire_step()).sum();
        self.l1.expire_step(EXPIRE_BUDGET_PER_SHARD) + lower
    }

    pub(super) fn health(&self) -> Health {
        let m = self.memory_errors.snapshot();
        let mut h = Health {
            memory: TierHealth {
                enabled: true,
                up: true,
                errors: m.errors,
                last_error: m.last_error,
            },
            ..Default::default()
        };
        for tier in &self.lower {
            let report = tier.report();
            match tier.id() {
                TierId::Redis => h.redis = report,
                TierId::Disk => h.disk = report,
                TierId::Memory => {}
            }
        }
        h.healthy = self.lower.iter().all(|t| t.report().up);
        if let Some(disk) = &self.disk {
            let s = disk.file.stats();
            h.disk_path = Some(s.path.display().to_string());
            h.disk_fill = if s.capacity == 0 {
                0.0
            } else {
                s.bytes_used as f64 / s.capacity as f64
            };
        }
        h
    }

    pub(super) fn stats(&self) -> CacheStats {
        let memory = self.l1.stats();
        let redis = self.redis.as_ref().map(|r| r.tier.stats().tier);
        let disk_file = self.disk.as_ref().map(|d| d.file.stats());
        let disk = disk_file.as_ref().map(|d| d.counters.clone());
        // Every memory miss of a get goes on down, so a lower-tier hit turns one of them into
        // a hit.
        let lower_hits: u64 = self.lower.iter().map(|t| t.hits()).sum();
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
            redis_invalidation: self.coherence.as_ref().map(|c| c.snapshot()),
            disk,
            disk_file,
            uptime: now.duration_since(self.started),
        }
    }
}
