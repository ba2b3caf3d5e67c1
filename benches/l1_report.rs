//! Hit ratios, throughput and bytes of overhead per entry, L1 beside moka and quick_cache, in
//! one run. Prints a markdown table (docs/BENCHMARKS.md holds a copy).
//!
//! Overhead: a counting global allocator measures the heap each cache holds for 1,000,000
//! entries (16-byte key, 100-byte value, each in its own allocation as a caller would make
//! them), minus the 116 payload bytes. SmartCache runs on the system allocator for this, so
//! every byte passes through the counter; its jemalloc footprint (size classes included) comes
//! from its own stats.

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

struct Counting;
static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HELD.fetch_add(l.size() as isize, Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HELD.fetch_sub(l.size() as isize, Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        HELD.fetch_add(new as isize - l.size() as isize, Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PAYLOAD: usize = 16 + VALUE_LEN;

fn overhead<C>(n: u64, build: impl FnOnce() -> C, insert: impl Fn(&C, [u8; 16])) -> f64 {
    let before = HELD.load(Relaxed);
    let cache = build();
    for i in 0..n {
        insert(&cache, key(i));
    }
    let held = HELD.load(Relaxed) - before;
    drop(cache);
    held as f64 / n as f64 - PAYLOAD as f64
}

fn mix(name: &str, get: impl Fn(&[u8]) -> bool, set: impl Fn(&[u8])) -> (String, f64, f64) {
    const KEYS: usize = 1_000_000;
    let zipf = Zipf::new(KEYS, 0.99);
    let mut rng = Rng(42);
    let ops: Vec<([u8; 16], bool)> = (0..3_000_000)
        .map(|_| (key(zipf.sample(&mut rng)), rng.next_u64() % 10 == 0))
        .collect();
    // The first third warms the cache; hits are counted over the rest.
    let (warm, measured) = ops.split_at(1_000_000);
    for (k, is_set) in warm {
        if *is_set || !get(k) {
            set(k);
        }
    }
    let (mut hits, mut gets) = (0u64, 0u64);
    let start = Instant::now();
    for (k, is_set) in measured {
        if *is_set {
            set(k);
        } else {
            gets += 1;
            if get(k) {
                hits += 1;
            } else {
                set(k);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    (
        name.to_string(),
        hits as f64 / gets as f64,
        measured.len() as f64 / secs,
    )
}

fn main() {
    // `cargo bench` passes --bench; any other argument filters nothing here.
    let value = [5u8; VALUE_LEN];
    println!("## Zipf(0.99), 90% get / 10% set, 1,000,000 keys, capacity 100,000\n");
    println!("| cache | hit ratio | ops/s (1 thread) |\n|---|---|---|");
    let cap = 100_000usize;
    let smart = Smart::open(cap, true);
    let q = quick(cap);
    let m = moka(cap);
    let rows = [
        mix(
            "smartcache (C ABI)",
            |k| smart.get(k).is_some(),
            |k| smart.set(k, &value),
        ),
        mix(
            "quick_cache",
            |k| quick_get(&q, k).is_some(),
            |k| q.insert(Box::from(k), Arc::from(&value[..])),
        ),
        mix(
            "moka",
            |k| moka_get(&m, k).is_some(),
            |k| m.insert(Box::from(k), Arc::from(&value[..])),
        ),
    ];
    for (name, ratio, ops) in &rows {
        println!("| {name} | {:.4} | {:.0} |", ratio, ops);
    }
    drop((smart, q, m));

    const N: u64 = 1_000_000;
    println!("\n## Bytes of overhead per entry at 1,000,000 entries (16 B key + 100 B value)\n");
    println!("| cache | overhead bytes/entry |\n|---|---|");
    let ours = overhead(
        N,
        || Smart::open(N as usize, false),
        |c, k| c.set(&k, &value),
    );
    println!("| smartcache (system allocator, requested bytes) | {ours:.1} |");
    let q = overhead(
        N,
        || quick(N as usize),
        |c, k| c.insert(Box::from(&k[..]), Arc::from(&value[..])),
    );
    println!("| quick_cache (requested bytes) | {q:.1} |");
    let m = overhead(
        N,
        || moka(N as usize),
        |c, k| c.insert(Box::from(&k[..]), Arc::from(&value[..])),
    );
    println!("| moka (requested bytes) | {m:.1} |");
    let smart = Smart::open(N as usize, true);
    for i in 0..N {
        smart.set(&key(i), &value);
    }
    let mut s = smartcache::ffi::sz_stats {
        struct_size: std::mem::size_of::<smartcache::ffi::sz_stats>(),
        ..Default::default()
    };
    // SAFETY: live handle and a sized stats struct.
    unsafe { smartcache::ffi::sz_cache_stats(smart.0, &mut s) };
    let json_ptr = unsafe { smartcache::ffi::sz_cache_stats_json(smart.0) };
    // SAFETY: a NUL-terminated string from the library, freed below.
    let json = unsafe { std::ffi::CStr::from_ptr(json_ptr) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: returned by sz_cache_stats_json.
    unsafe { smartcache::ffi::sz_string_free(json_ptr) };
    let index_bytes: f64 = json
        .split("\"index_bytes\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    let jem = (s.memory_bytes as f64 + index_bytes) / s.size as f64 - PAYLOAD as f64;
    println!("| smartcache (jemalloc arena, size classes included) | {jem:.1} |");
}
