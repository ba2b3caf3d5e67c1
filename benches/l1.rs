//! L1 beside moka and quick_cache in one run: pure-hit get at 1 and 2 threads, and a Zipf(0.99)
//! 90% get / 10% set mix over 1,000,000 keys with 100,000 capacity (time per operation here;
//! hit ratios are printed by `cargo bench --bench l1_mix`).

mod common;

use common::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RESIDENT: u64 = 100_000;

/// Key indices in a seeded random order, so gets do not walk memory sequentially.
fn stream(n: usize, seed: u64, keys: u64) -> Vec<[u8; 16]> {
    let mut rng = Rng(seed);
    (0..n).map(|_| key(rng.next_u64() % keys)).collect()
}

/// Runs `threads` copies of `op` at once, each for `iters` operations; returns the wall time,
/// which criterion divides by `iters`: the time of one operation while `threads` threads run.
fn run_threads<F: Fn(&[u8]) -> Option<u8> + Sync>(
    threads: usize,
    iters: u64,
    keys: &[[u8; 16]],
    op: &F,
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut i = t * 7919;
                for _ in 0..iters {
                    i += 1;
                    if i >= keys.len() {
                        i = 0;
                    }
                    black_box(op(&keys[i]));
                }
            });
        }
    });
    start.elapsed()
}

fn hits(c: &mut Criterion) {
    let value = [7u8; VALUE_LEN];
    let smart = Smart::open(RESIDENT as usize * 2, true);
    let quick = quick(RESIDENT as usize * 2);
    let moka = moka(RESIDENT as usize * 2);
    for i in 0..RESIDENT {
        let k = key(i);
        smart.set(&k, &value);
        quick.insert(k.into(), Arc::from(&value[..]));
        moka.insert(k.into(), Arc::from(&value[..]));
    }
    moka.run_pending_tasks();
    let keys = stream(1 << 16, 1, RESIDENT);
    assert!(smart.get(&keys[0]).is_some() && quick_get(&quick, &keys[0]).is_some());

    for threads in [1usize, 2] {
        let mut g = c.benchmark_group(format!("get_hit_{threads}t"));
        g.bench_function(BenchmarkId::new("smartcache_c_abi_pinned", threads), |b| {
            b.iter_custom(|n| run_threads(threads, n, &keys, &|k| smart.get(k)))
        });
        g.bench_function(BenchmarkId::new("quick_cache", threads), |b| {
            b.iter_custom(|n| run_threads(threads, n, &keys, &|k| quick_get(&quick, k)))
        });
        g.bench_function(BenchmarkId::new("moka", threads), |b| {
            b.iter_custom(|n| run_threads(threads, n, &keys, &|k| moka_get(&moka, k)))
        });
        g.finish();
    }
}

fn zipf_mix(c: &mut Criterion) {
    const KEYS: usize = 1_000_000;
    const CAPACITY: usize = 100_000;
    let zipf = Zipf::new(KEYS, 0.99);
    let mut rng = Rng(42);
    // (key, is_set): 90% get / 10% set.
    let ops: Vec<([u8; 16], bool)> = (0..1 << 20)
        .map(|_| (key(zipf.sample(&mut rng)), rng.next_u64() % 10 == 0))
        .collect();
    let value = [3u8; VALUE_LEN];
    let shared: Arc<[u8]> = Arc::from(&value[..]);

    let smart = Smart::open(CAPACITY, true);
    let quick = quick(CAPACITY);
    let moka = moka(CAPACITY);
    let mut g = c.benchmark_group("zipf_0.99_90get_10set_1M_keys_100K_cap");
    let mut i = 0usize;
    g.bench_function("smartcache_c_abi", |b| {
        b.iter(|| {
            i = (i + 1) & (ops.len() - 1);
            let (k, set) = &ops[i];
            if *set || smart.get(k).is_none() {
                smart.set(k, &value);
            }
        })
    });
    g.bench_function("quick_cache", |b| {
        b.iter(|| {
            i = (i + 1) & (ops.len() - 1);
            let (k, set) = &ops[i];
            if *set || quick_get(&quick, k).is_none() {
                quick.insert(Box::from(&k[..]), shared.clone());
            }
        })
    });
    g.bench_function("moka", |b| {
        b.iter(|| {
            i = (i + 1) & (ops.len() - 1);
            let (k, set) = &ops[i];
            if *set || moka_get(&moka, k).is_none() {
                moka.insert(Box::from(&k[..]), shared.clone());
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = hits, zipf_mix
}
criterion_main!(benches);
