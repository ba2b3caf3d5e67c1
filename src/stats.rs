//! Cache-wide statistics: the snapshot every binding reads, its two text renderings (JSON in
//! `json`, Prometheus in `prometheus`), and the recent-throughput window.

use crate::disk::DiskStats;
use crate::latency::LatencySnapshot;
use crate::memory::MemoryStats;
use crate::redis::invalidation::InvalidationStats;
use crate::tier::TierSnapshot;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod json;
pub mod prometheus;

pub use json::render as render_json;
pub use prometheus::render as render_prometheus;

/// Everything `sz_cache_stats`, the JSON and the bindings report.
#[derive(Debug, Default, Clone)]
pub struct CacheStats {
    /// Gets answered by any tier.
    pub hits: u64,
    /// Gets no tier could answer.
    pub misses: u64,
    pub sets: u64,
    pub deletes: u64,
    pub evictions: u64,
    pub expirations: u64,
    /// Operations per second over the last few seconds (not a lifetime average).
    pub ops_per_second: f64,
    /// Bytes before compression / bytes stored; 1.0 when nothing was compressed.
    pub compression_ratio: f64,
    /// Compressed values in memory that would not decode (served as misses).
    pub memory_errors: u64,
    /// Latency percentiles, indexed `[tier][op]` as in `latency::TIERS` and `latency::OPS`.
    pub latency: [[LatencySnapshot; 3]; 3],
    pub memory: MemoryStats,
    pub redis: Option<TierSnapshot>,
    /// The invalidation listener's figures, with `redis_invalidation` on.
    pub redis_invalidation: Option<InvalidationStats>,
    pub disk: Option<TierSnapshot>,
    /// The disk tier's file-level figures (entries, bytes, capacity, corruptions, path).
    pub disk_file: Option<DiskStats>,
    pub uptime: Duration,
}

impl CacheStats {
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// Turns a growing operation count into a recent rate: samples are kept for `WINDOW` and the
/// rate is measured between the oldest kept sample and now.
pub struct RateWindow {
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

const WINDOW: Duration = Duration::from_secs(5);

impl RateWindow {
    pub fn new(start: Instant) -> RateWindow {
        RateWindow {
            samples: Mutex::new(VecDeque::from([(start, 0)])),
        }
    }

    /// Held by the thread about to fork (see `crate::fork`).
    pub fn hold_for_fork(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, u64)>> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `total_ops` at `now` and returns operations per second over the window.
    pub fn rate(&self, now: Instant, total_ops: u64) -> f64 {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        // Keep one sample older than the window so the rate always spans at least the window
        // when the history allows.
        while s.len() >= 2 && now.duration_since(s[1].0) >= WINDOW {
            s.pop_front();
        }
        let (t0, ops0) = *s.front().expect("never empty");
        if s.back()
            .is_some_and(|&(t, _)| now.duration_since(t) >= Duration::from_millis(100))
        {
            s.push_back((now, total_ops));
        }
        let dt = now.duration_since(t0).as_secs_f64();
        if dt <= 0.0 {
            0.0
        } else {
            total_ops.saturating_sub(ops0) as f64 / dt
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_recent_not_lifetime() {
        let t0 = Instant::now();
        let w = RateWindow::new(t0);
        // 1000 ops/s for 20 s, then idle for 10 s: a lifetime average would say ~667.
        for s in 1..=20u64 {
            w.rate(t0 + Duration::from_secs(s), s * 1000);
        }
        let busy = w.rate(t0 + Duration::from_secs(20), 20_000);
        assert!((busy - 1000.0).abs() < 1.0, "{busy}");
        for s in 21..=30u64 {
            w.rate(t0 + Duration::from_secs(s), 20_000);
        }
        let idle = w.rate(t0 + Duration::from_secs(30), 20_000);
        assert!(idle < 1.0, "{idle}");
    }

    #[test]
    fn hit_ratio_handles_zero() {
        let mut s = CacheStats::default();
        assert_eq!(s.hit_ratio(), 0.0);
        s.hits = 3;
        s.misses = 1;
        assert_eq!(s.hit_ratio(), 0.75);
    }
}
