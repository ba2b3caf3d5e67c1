//! The eviction policy against LRU on a Zipf workload interrupted by sequential scans: the trace
//! where scan resistance matters. Both caches see the same requests and insert on a miss.

use smartcache::memory::{MemoryOptions, MemoryTier};
use std::collections::{BTreeMap, HashMap};

#[path = "support/workload.rs"]
mod workload;
use workload::{Rng, Zipf};

/// A textbook LRU: recency stamps in a BTreeMap.
struct Lru {
    cap: usize,
    stamp: u64,
    by_key: HashMap<u64, u64>,
    by_stamp: BTreeMap<u64, u64>,
}
impl Lru {
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

/// Zipf(0.99) requests over `keys` keys; every `scan_every` requests a scan of `scan_len` keys
/// never seen before (a report, a crawler, a batch job).
fn trace(requests: usize, keys: usize, scan_every: usize, scan_len: usize) -> Vec<u64> {
    let zipf = Zipf::new(keys, 0.99);
    let mut rng = Rng(0x5EED);
    let mut out = Vec::with_capacity(requests * 2);
    let mut next_scan_key = 1u64 << 40;
    for i in 0..requests {
        out.push(zipf.sample(&mut rng));
        if i % scan_every == scan_every - 1 {
            for _ in 0..scan_len {
                out.push(next_scan_key);
                next_scan_key += 1;
            }
        }
    }
    out
}

fn hit_ratios(trace: &[u64], capacity: usize) -> (f64, f64) {
    let cache = MemoryTier::new(MemoryOptions {
        max_items: capacity,
        max_bytes: 0,
        jemalloc: true,
        count_stats: false,
    })
    .expect("memory tier");
    let mut lru = Lru {
        cap: capacity,
        stamp: 0,
        by_key: HashMap::new(),
        by_stamp: BTreeMap::new(),
    };
    let (mut ours, mut theirs) = (0usize, 0usize);
    for &k in trace {
        let key = k.to_le_bytes();
        if cache.get(&key).is_some() {
            ours += 1;
        } else {
            cache.insert(&key, b"v", 0, None).unwrap();
        }
        theirs += lru.access(k) as usize;
    }
    (
        ours as f64 / trace.len() as f64,
        theirs as f64 / trace.len() as f64,
    )
}

#[test]
fn beats_lru_on_zipf_with_scans() {
    let t = trace(300_000, 100_000, 20_000, 5_000);
    let (s3, lru) = hit_ratios(&t, 5_000);
    println!("zipf + scans: policy {:.4}, LRU {:.4}", s3, lru);
    assert!(
        s3 > lru + 0.05,
        "policy {s3:.4} does not beat LRU {lru:.4} by 5 points"
    );
}

#[test]
fn no_worse_than_lru_on_plain_zipf() {
    let t = trace(300_000, 100_000, usize::MAX, 0);
    let (s3, lru) = hit_ratios(&t, 5_000);
    println!("plain zipf: policy {:.4}, LRU {:.4}", s3, lru);
    assert!(s3 >= lru - 0.005, "policy {s3:.4} well below LRU {lru:.4}");
}
