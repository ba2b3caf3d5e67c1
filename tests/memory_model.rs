//! L1 against a plain HashMap-with-expiry model: random operation sequences must give the same
//! answers, the only allowed difference being that the cache evicted an entry (a miss where the
//! model has a value) — never a wrong value, never an expired one, never a resurrection.

use smartcache::memory::{MemoryOptions, MemoryTier};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[path = "support/workload.rs"]
mod workload;
use workload::Rng;

/// When an entry set with a TTL expires, as far as the test can know: the cache takes its
/// deadline somewhere inside the insert call, so it lies between the TTL counted from just before
/// the call and the TTL counted from just after it. A busy machine can stretch that window by
/// milliseconds (the thread is preempted mid-insert), so each check uses the bound that makes it
/// safe: "must still be live" the early one, "must have expired" the late one.
#[derive(Clone, Copy)]
struct Deadline {
    earliest: Instant,
    latest: Instant,
}

struct Model {
    map: HashMap<Vec<u8>, (Vec<u8>, Option<Deadline>)>,
}

impl Model {
    /// The value if the cache must still hold it at `now` (barring eviction).
    fn surely_live(&self, k: &[u8], now: Instant) -> Option<&Vec<u8>> {
        match self.map.get(k) {
            Some((v, None)) => Some(v),
            Some((v, Some(dl))) if now < dl.earliest => Some(v),
            _ => None,
        }
    }
}

fn run(seed: u64, ops: usize, capacity: usize, keys: u64) {
    let mut rng = Rng(seed | 1);
    let cache = MemoryTier::new(MemoryOptions {
        max_items: capacity,
        max_bytes: 0,
        jemalloc: seed % 2 == 0,
        count_stats: true,
    })
    .expect("memory tier");
    let mut model = Model {
        map: HashMap::new(),
    };
    // The cache's eviction count when each key was last set: a miss on a key the model holds
    // is allowed only if the cache has evicted something since.
    let mut evictions_at_set: HashMap<Vec<u8>, u64> = HashMap::new();
    let evicted_since =
        |cache: &MemoryTier, at: Option<&u64>| at.is_some_and(|&at| cache.stats().evictions > at);
    for step in 0..ops {
        let key = format!("k{}", rng.below(keys)).into_bytes();
        match rng.below(100) {
            0..=29 => {
                let value =
                    format!("{}:{}", String::from_utf8_lossy(&key), rng.next_u64()).into_bytes();
                let ttl = match rng.below(4) {
                    0 => Some(Duration::from_millis(1 + rng.below(5))),
                    1 => Some(Duration::from_secs(60)),
                    _ => None,
                };
                // Counted before the insert: the insert itself may evict the new entry.
                let evictions_before = cache.stats().evictions;
                let before_insert = Instant::now();
                cache.insert(&key, &value, 0, ttl).unwrap();
                let after_insert = Instant::now();
                let deadline = ttl.map(|d| Deadline {
                    earliest: before_insert + d,
                    latest: after_insert + d,
                });
                model.map.insert(key.clone(), (value, deadline));
                evictions_at_set.insert(key.clone(), evictions_before);
            }
            30..=39 => {
                let before = Instant::now();
                let had = cache.delete(&key);
                let model_had = model.surely_live(&key, before).is_some();
                if had {
                    assert!(
                        model.map.contains_key(&key),
                        "seed {seed} step {step}: deleted a key never set"
                    );
                }
                if model_had && !had && !evicted_since(&cache, evictions_at_set.get(&key)) {
                    // Only expiry racing the two clocks can explain it; check it is expired now.
                    // The margin covers the cache's clock erring early, as for get.
                    let later = Instant::now() + Duration::from_millis(1);
                    assert!(
                        model.surely_live(&key, later).is_none(),
                        "seed {seed} step {step}: delete missed a live key"
                    );
                }
                model.map.remove(&key);
            }
            40..=41 if rng.below(50) == 0 => {
                cache.clear();
                model.map.clear();
            }
            _ => {
                let before_read = Instant::now();
                let got = cache.get(&key).map(|b| b.value().to_vec());
                let after = Instant::now();
                match got {
                    Some(v) => {
                        let (want, _) = model.map.get(&key).unwrap_or_else(|| {
                            panic!("seed {seed} step {step}: value for a key not in the model")
                        });
                        assert_eq!(&v, want, "seed {seed} step {step}: wrong value");
                        // The cache's clock never errs late, so a value read after the
                        // latest possible deadline is an expired value handed out.
                        if let Some((_, Some(dl))) = model.map.get(&key) {
                            assert!(
                                before_read < dl.latest,
                                "seed {seed} step {step}: value returned {:?} past its deadline",
                                before_read - dl.latest
                            );
                        }
                    }
                    None => {
                        // Live a little after the read means live at the read. The margin
                        // covers the cache's clock erring early (it never errs late).
                        if model
                            .surely_live(&key, after + Duration::from_millis(1))
                            .is_some()
                        {
                            assert!(
                                evicted_since(&cache, evictions_at_set.get(&key)),
                                "seed {seed} step {step}: a live key missed with no eviction"
                            );
                        }
                    }
                }
            }
        }
        if step % 64 == 0 {
            assert!(cache.stats().size as usize <= capacity);
        }
    }
}

#[test]
fn model_small_capacity_many_keys() {
    for seed in 1..=20 {
        run(seed, 5_000, 64, 200);
    }
}

#[test]
fn model_large_capacity_no_eviction_means_exact_answers() {
    for seed in 100..110 {
        run(seed, 5_000, 10_000, 300);
    }
}

#[test]
fn model_single_shard_edge() {
    for seed in 200..210 {
        run(seed, 3_000, 1, 5);
    }
}
