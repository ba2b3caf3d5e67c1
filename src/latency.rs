//! Latency percentiles per tier and operation kind, in log-linear histograms of atomics.
//!
//! Every lower-tier call (microseconds of I/O) is timed. Memory-tier operations take tens of
//! nanoseconds, where two clock reads and a shared counter would be a visible cost, so only one
//! in `MEMORY_SAMPLE_EVERY` of them is timed; percentiles of a sample are the percentiles of the
//! whole for any stationary workload. Memory gets choose their sample by the shard counter they
//! increment anyway, so deciding costs nothing.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Which tier an operation ran in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierId {
    Memory = 0,
    Redis = 1,
    Disk = 2,
}

/// What kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get = 0,
    Set = 1,
    Delete = 2,
}

pub const TIERS: [(TierId, &str); 3] = [
    (TierId::Memory, "memory"),
    (TierId::Redis, "redis"),
    (TierId::Disk, "disk"),
];
pub const OPS: [(Op, &str); 3] = [(Op::Get, "get"), (Op::Set, "set"), (Op::Delete, "delete")];

/// One in this many memory-tier operations per thread is timed (a power of two).
pub const MEMORY_SAMPLE_EVERY: u32 = 64;

/// 4 sub-buckets per power of two: a reported percentile is within 25% of the true value.
const BUCKETS: usize = 252;

/// Counts of durations in log-linear buckets.
pub struct Histogram {
    counts: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn record(&self, ns: u64) {
        self.counts[bucket(ns)].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let at = |q: f64| -> u64 {
            if total == 0 {
                return 0;
            }
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            for (i, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return bucket_midpoint(i);
                }
            }
            bucket_midpoint(BUCKETS - 1)
        };
        LatencySnapshot {
            samples: total,
            p50_ns: at(0.50),
            p99_ns: at(0.99),
        }
    }
}

/// The bucket of a duration in nanoseconds: exact below 8, then 4 per power of two.
fn bucket(ns: u64) -> usize {
    if ns < 8 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros() as usize;
    let sub = ((ns >> (exp - 2)) & 3) as usize;
    (exp - 1) * 4 + sub
}

fn bucket_midpoint(i: usize) -> u64 {
    if i < 8 {
        return i as u64;
    }
    let (exp, sub) = (i / 4 + 1, (i % 4) as u64);
    let width = 1u64 << (exp - 2);
    ((4 + sub) << (exp - 2)) + width / 2
}

/// Percentiles of one tier's operation kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LatencySnapshot {
    pub samples: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
}

/// Histograms for every tier x operation kind.
pub struct Latencies {
    hists: Vec<Histogram>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            hists: (0..TIERS.len() * OPS.len())
                .map(|_| Histogram::new())
                .collect(),
        }
    }
}

impl Latencies {
    pub fn record(&self, tier: TierId, op: Op, ns: u64) {
        self.hists[tier as usize * OPS.len() + op as usize].record(ns);
    }

    pub fn snapshot(&self, tier: TierId, op: Op) -> LatencySnapshot {
        self.hists[tier as usize * OPS.len() + op as usize].snapshot()
    }
}

thread_local! {
    static MEMORY_OPS: Cell<u32> = const { Cell::new(0) };
}

/// True for one in `MEMORY_SAMPLE_EVERY` calls on this thread.
#[inline]
pub fn sample_memory_op() -> bool {
    MEMORY_OPS.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n & (MEMORY_SAMPLE_EVERY - 1) == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_within_a_quarter() {
        let mut last = 0;
        for ns in (0..10_000u64)
            .chain((14..40).map(|s| 1u64 << s))
            .chain([u64::MAX])
        {
            let b = bucket(ns);
            assert!(b >= last && b < BUCKETS, "{ns} -> {b}");
            last = b;
            if ns >= 8 {
                let mid = bucket_midpoint(b) as f64;
                assert!((mid - ns as f64).abs() <= ns as f64 * 0.25, "{ns} -> {mid}");
            }
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let l = Latencies::default();
        for _ in 0..98 {
            l.record(TierId::Disk, Op::Get, 1_000);
        }
        l.record(TierId::Disk, Op::Get, 50_000);
        l.record(TierId::Disk, Op::Get, 1_000_000);
        let s = l.snapshot(TierId::Disk, Op::Get);
        assert_eq!(s.samples, 100);
        assert!((900..=1100).contains(&s.p50_ns), "{s:?}");
        assert!((40_000..=60_000).contains(&s.p99_ns), "{s:?}");
        assert_eq!(
            l.snapshot(TierId::Disk, Op::Set),
            LatencySnapshot::default()
        );
    }

    #[test]
    fn sampling_is_one_in_n_per_thread() {
        let n = (0..MEMORY_SAMPLE_EVERY * 10)
            .filter(|_| sample_memory_op())
            .count();
        assert_eq!(n, 10);
    }
}
