//! The eviction policy against the anchors, on seeded synthetic traces from the eviction papers'
//! parameters: Zipf 0.8 and 0.99 (the skews of the TinyLFU and S3-FIFO evaluations), Zipf
//! interrupted by one-pass scans, a loop slightly larger than the cache (LIRS/ARC's loop
//! pattern, where LRU and FIFO hit nothing), and a working set that shifts.
//!
//! Every cache sees the same requests and inserts on a miss. The anchors (moka, quick_cache, a
//! textbook LRU and Belady's OPT, the bound no online policy reaches) are computed in the same
//! run, so the assertion compares like with like. `cargo test --release --test hit_ratio --
//! --nocapture` prints the table docs/BENCHMARKS.md copies.

use smartcache::memory::{MemoryOptions, MemoryTier};
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[path = "support/workload.rs"]
mod workload;
use workload::{Rng, Zipf};

/// How far below the best online anchor SmartCache may fall on a trace: a tenth of a point,
/// well under the differences between policies and above moka's own run-to-run wobble.
const TOLERANCE: f64 = 0.001;

/// A textbook LRU: recency stamps in a BTreeMap.
struct Lru {
    cap: usize,
    stamp: u64,
    by_key: HashMap<u64, u64>,
    by_stamp: BTreeMap<u64, u64>,
}

impl Lru {
    fn new(cap: usize) -> Lru {
        Lru {
            cap,
            stamp: 0,
            by_key: HashMap::new(),
            by_stamp: BTreeMap::new(),
        }
    }

    fn access(&mut self, key: u64) -> bool {
        self.stamp += 1;
        let hit = match self.by_key.insert(key, self.stamp) {
            Some(old) => {
                self.by_stamp.remove(&old);
                true
            }
            None => false,
        };
        self.by_stamp.insert(self.stamp, key);
        if self.by_key.len() > self.cap {
            let (&s, &k) = self.by_stamp.iter().next().unwrap();
            self.by_stamp.remove(&s);
            self.by_key.remove(&k);
        }
        hit
    }
}

/// Zipf(`skew`) requests over `keys` keys.
fn zipf(requests: usize, keys: usize, skew: f64, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(keys, skew);
    let mut rng = Rng(seed);
    (0..requests).map(|_| zipf.sample(&mut rng)).collect()
}

/// Zipf(0.99) requests over `keys` keys; every `scan_every` requests a scan of `scan_len` keys
/// never seen before (a report, a crawler, a batch job).
fn zipf_with_scans(requests: usize, keys: usize, scan_every: usize, scan_len: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(requests * 2);
    let mut next_scan_key = 1u64 << 40;
    for (i, k) in zipf(requests, keys, 0.99, 0x5EED).into_iter().enumerate() {
        out.push(k);
        if i % scan_every == scan_every - 1 {
            for _ in 0..scan_len {
                out.push(next_scan_key);
                next_scan_key += 1;
            }
        }
    }
    out
}

/// `passes` passes over the keys 0..`len` in order.
fn repeated_loop(len: u64, passes: usize) -> Vec<u64> {
    (0..passes).flat_map(|_| 0..len).collect()
}

/// Zipf(0.9) over `keys` keys whose popular end moves to fresh keys every `phase` requests.
fn shifting(requests: usize, keys: usize, phase: usize) -> Vec<u64> {
    zipf(requests, keys, 0.9, 0xD1F7)
        .into_iter()
        .enumerate()
        .map(|(i, k)| k + (i / phase) as u64 * keys as u64 / 2)
        .collect()
}

/// Hit ratios of one trace, one field per cache.
struct Ratios {
    smartcache: f64,
    moka: f64,
    quick_cache: f64,
    lru: f64,
    opt: f64,
}

impl Ratios {
    /// The better of the two libraries an application would pick instead. LRU and OPT are
    /// printed for scale only: LRU wins the shifting trace (recency is all that matters there)
    /// and loses the loop outright, and OPT needs the future.
    fn best_anchor(&self) -> f64 {
        self.moka.max(self.quick_cache)
    }
}

fn ratio(trace: &[u64], mut access: impl FnMut(u64) -> bool) -> f64 {
    let hits = trace.iter().filter(|&&k| access(k)).count();
    hits as f64 / trace.len() as f64
}

/// The hit ratio of a cache that is asked first and filled on a miss, as an application would.
fn insert_on_miss_ratio(trace: &[u64], hit: impl Fn(u64) -> bool, insert: impl Fn(u64)) -> f64 {
    ratio(trace, |k| {
        let found = hit(k);
        if !found {
            insert(k);
        }
        found
    })
}

fn smartcache_ratio(trace: &[u64], capacity: usize) -> f64 {
    let cache = MemoryTier::new(MemoryOptions {
        max_items: capacity,
        max_bytes: 0,
        jemalloc: true,
        count_stats: false,
    })
    .expect("memory tier");
    insert_on_miss_ratio(
        trace,
        |k| cache.get(&k.to_le_bytes()).is_some(),
        |k| cache.insert(&k.to_le_bytes(), b"v", 0, None).unwrap(),
    )
}

fn moka_ratio(trace: &[u64], capacity: usize) -> f64 {
    // A fixed hasher (SipHash with zero keys): moka's frequency sketch is seeded from the
    // cache's hasher, and with a random seed its loop figure moved from 0.62 to 0.76 between
    // runs, too wide to compare against.
    let cache = moka::sync::Cache::builder()
        .max_capacity(capacity as u64)
        .build_with_hasher(std::hash::BuildHasherDefault::<
            std::collections::hash_map::DefaultHasher,
        >::default());
    insert_on_miss_ratio(trace, |k| cache.get(&k).is_some(), |k| cache.insert(k, ()))
}

fn quick_cache_ratio(trace: &[u64], capacity: usize) -> f64 {
    let cache = quick_cache::sync::Cache::<u64, ()>::new(capacity);
    insert_on_miss_ratio(trace, |k| cache.get(&k).is_some(), |k| cache.insert(k, ()))
}

/// Belady's OPT: on a miss with the cache full, evict the key used again furthest ahead.
fn opt_ratio(trace: &[u64], capacity: usize) -> f64 {
    let mut next_use = vec![usize::MAX; trace.len()];
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (i, &k) in trace.iter().enumerate().rev() {
        if let Some(j) = seen.insert(k, i) {
            next_use[i] = j;
        }
    }
    let mut resident: HashMap<u64, usize> = HashMap::new();
    let mut by_next: BTreeSet<(usize, u64)> = BTreeSet::new();
    let mut hits = 0usize;
    for (i, &k) in trace.iter().enumerate() {
        if let Some(old) = resident.insert(k, next_use[i]) {
            hits += 1;
            by_next.remove(&(old, k));
        } else if resident.len() > capacity {
            let far = by_next.pop_last().expect("cache is full");
            resident.remove(&far.1);
        }
        by_next.insert((next_use[i], k));
    }
    hits as f64 / trace.len() as f64
}

fn measure(name: &str, trace: &[u64], capacity: usize) -> Ratios {
    let mut lru = Lru::new(capacity);
    let r = Ratios {
        smartcache: smartcache_ratio(trace, capacity),
        moka: moka_ratio(trace, capacity),
        quick_cache: quick_cache_ratio(trace, capacity),
        lru: ratio(trace, |k| lru.access(k)),
        opt: opt_ratio(trace, capacity),
    };
    println!(
        "| {name} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
        trace.len(),
        r.smartcache,
        r.moka,
        r.quick_cache,
        r.lru,
        r.opt
    );
    r
}

fn assert_at_least_best_anchor(name: &str, r: &Ratios) {
    assert!(
        r.smartcache >= r.best_anchor() - TOLERANCE,
        "{name}: SmartCache {:.4} below the best anchor {:.4} (moka {:.4}, quick_cache {:.4})",
        r.smartcache,
        r.best_anchor(),
        r.moka,
        r.quick_cache
    );
}

/// One test for every trace, so the table prints in one piece and the whole run stays bounded
/// (3 s in release on the quiet 2-core machine, 18 s with both cores busy).
#[test]
fn at_or_above_the_best_anchor_on_every_trace() {
    println!("| trace | requests | smartcache | moka | quick_cache | LRU | OPT |");
    println!("|---|---|---|---|---|---|---|");
    let traces: [(&str, Vec<u64>, usize); 5] = [
        (
            "Zipf 0.8, 100,000 keys, capacity 10,000",
            zipf(500_000, 100_000, 0.8, 0x0808),
            10_000,
        ),
        (
            "Zipf 0.99, 100,000 keys, capacity 10,000",
            zipf(500_000, 100_000, 0.99, 0x0999),
            10_000,
        ),
        (
            "Zipf 0.99 + 5,000-key scans every 20,000, capacity 5,000",
            zipf_with_scans(300_000, 100_000, 20_000, 5_000),
            5_000,
        ),
        (
            "loop of 12,000 keys, capacity 10,000",
            repeated_loop(12_000, 30),
            10_000,
        ),
        (
            "Zipf 0.9, hot set moves every 100,000, capacity 10,000",
            shifting(500_000, 100_000, 100_000),
            10_000,
        ),
    ];
    // Every row is measured and printed before any assertion, so a failure shows the table.
    let rows: Vec<(&str, Ratios)> = traces
        .iter()
        .map(|(name, trace, capacity)| (*name, measure(name, trace, *capacity)))
        .collect();
    for (name, r) in &rows {
        assert!(
            r.smartcache <= r.opt + 1e-9,
            "{name}: above OPT, so miscounted"
        );
        assert_at_least_best_anchor(name, r);
    }
}

#[test]
fn beats_lru_on_zipf_with_scans_by_five_points() {
    let t = zipf_with_scans(300_000, 100_000, 20_000, 5_000);
    let s3 = smartcache_ratio(&t, 5_000);
    let mut lru = Lru::new(5_000);
    let lru = ratio(&t, |k| lru.access(k));
    assert!(
        s3 > lru + 0.05,
        "policy {s3:.4} does not beat LRU {lru:.4} by 5 points"
    );
}
