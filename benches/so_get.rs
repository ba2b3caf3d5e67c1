//! What an application pays for a hit, beside the anchors in one run: SmartCache through
//! `libsmartcache.so` loaded at run time (dlopen via libloading: the exported symbols called
//! through the dynamic linker, as an application calls them, with no LTO into this program),
//! quick_cache and moka, doing the same workload: uniform random gets over 100,000 resident
//! keys (16-byte keys, 100-byte values, capacity 200,000), 1.5 million gets per thread, at 1
//! and 2 threads. A SmartCache get is `sz_cache_get` + `sz_value_data` + `sz_value_len` +
//! `sz_value_release`; a quick_cache or moka get clones the stored `Arc<[u8]>` and reads it.
//! Then the set path: a replacing set of a 100-byte value through the .so and through the crate,
//! beside a quick_cache insert of an `Arc<[u8]>` copy of the same bytes.
//!
//! ```sh
//! make bench-so                      # builds build/lib/libsmartcache.so, runs this and the C bench
//! SO_GET_GETS=300000 cargo bench --bench so_get   # shorter; SMARTCACHE_LIB=path picks the .so
//! # instructions and cache misses per operation (one thread):
//! valgrind --tool=callgrind --cache-sim=yes --callgrind-out-file=/dev/null \
//!   --toggle-collect='so_get::measured_*' target/release/deps/so_get-* callgrind so_get 200000
//! ```
//! `callgrind` takes one of: so_get, quick_get, moka_get, so_set, crate_set, quick_insert.

mod common;

use common::{moka, quick, Moka, Quick, Smart, VALUE_LEN};
use libloading::Library;
use std::ffi::{c_char, c_int, c_void, CString};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

const RESIDENT: u32 = 100_000;
const CAPACITY: usize = 200_000;
const DEFAULT_GETS: usize = 1_500_000;
/// Rounds per figure: every cache runs once per round, interleaved, and the median is printed.
const ROUNDS: usize = 3;

type Key = [u8; 16];

/// The 16-byte keys "key:" + 12 digits, as the C bench (benches/c/so_get.c) builds them.
fn keys() -> Vec<Key> {
    (0..RESIDENT as u64).map(common::key).collect()
}

/// xorshift64*, as in the C bench: a uniform index below RESIDENT per call.
struct Pick(u64);

impl Pick {
    #[inline]
    fn next(&mut self) -> usize {
        let s = &mut self.0;
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        (((s.wrapping_mul(2685821657736338717) >> 32) * RESIDENT as u64) >> 32) as usize
    }
}

type ConfigNew = unsafe extern "C" fn() -> *mut c_void;
type ConfigSet = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> c_int;
type ConfigFree = unsafe extern "C" fn(*mut c_void);
type Open = unsafe extern "C" fn(*const c_void, *mut *mut c_void) -> c_int;
type Close = unsafe extern "C" fn(*mut c_void);
type Get = unsafe extern "C" fn(*mut c_void, *const c_void, usize, *mut *mut c_void) -> c_int;
type Set =
    unsafe extern "C" fn(*mut c_void, *const c_void, usize, *const c_void, usize, u64) -> c_int;
type ValueData = unsafe extern "C" fn(*const c_void) -> *const u8;
type ValueLen = unsafe extern "C" fn(*const c_void) -> usize;
type ValueRelease = unsafe extern "C" fn(*mut c_void);

/// A cache opened through the loaded library, and the entry points the bench calls.
struct SoCache {
    cache: *mut c_void,
    get: Get,
    set: Set,
    data: ValueData,
    len: ValueLen,
    release: ValueRelease,
    close: Close,
    _lib: Library,
}

// SAFETY: a sz_cache handle may be used from many threads at once (the C ABI's contract), and
// the function pointers stay valid while `_lib` keeps the library loaded.
unsafe impl Send for SoCache {}
// SAFETY: as above.
unsafe impl Sync for SoCache {}

impl SoCache {
    fn open(path: &str) -> SoCache {
        // SAFETY: loading libsmartcache runs no initialisers with preconditions; each symbol is
        // read with the signature include/smartcache.h declares for it.
        unsafe {
            let lib = Library::new(path).unwrap_or_else(|e| panic!("loading {path}: {e}"));
            let config_new = *lib.get::<ConfigNew>(b"sz_config_new\0").unwrap();
            let config_set = *lib.get::<ConfigSet>(b"sz_config_set\0").unwrap();
            let config_free = *lib.get::<ConfigFree>(b"sz_config_free\0").unwrap();
            let open = *lib.get::<Open>(b"sz_cache_open\0").unwrap();
            let cfg = config_new();
            let (name, capacity) = (
                CString::new("memory_capacity").unwrap(),
                CString::new(CAPACITY.to_string()).unwrap(),
            );
            assert_eq!(config_set(cfg, name.as_ptr(), capacity.as_ptr()), 0);
            let mut cache = std::ptr::null_mut();
            assert_eq!(open(cfg, &mut cache), 0, "sz_cache_open");
            config_free(cfg);
            SoCache {
                cache,
                get: *lib.get::<Get>(b"sz_cache_get\0").unwrap(),
                set: *lib.get::<Set>(b"sz_cache_set\0").unwrap(),
                data: *lib.get::<ValueData>(b"sz_value_data\0").unwrap(),
                len: *lib.get::<ValueLen>(b"sz_value_len\0").unwrap(),
                release: *lib.get::<ValueRelease>(b"sz_value_release\0").unwrap(),
                close: *lib.get::<Close>(b"sz_cache_close\0").unwrap(),
                _lib: lib,
            }
        }
    }

    #[inline]
    fn set(&self, k: &[u8], v: &[u8]) {
        // SAFETY: live handle, valid slices.
        let rc = unsafe {
            (self.set)(
                self.cache,
                k.as_ptr().cast(),
                k.len(),
                v.as_ptr().cast(),
                v.len(),
                0,
            )
        };
        assert_eq!(rc, 0, "sz_cache_set");
    }

    /// One get as an application does it: the first byte plus the length, or None.
    #[inline]
    fn get(&self, k: &[u8]) -> Option<usize> {
        let mut v = std::ptr::null_mut();
        // SAFETY: live handle, valid key and out pointer; v is released once, after its last use.
        unsafe {
            if (self.get)(self.cache, k.as_ptr().cast(), k.len(), &mut v) != 0 {
                return None;
            }
            let n = *(self.data)(v) as usize + (self.len)(v);
            (self.release)(v);
            Some(n)
        }
    }
}

impl Drop for SoCache {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once.
        unsafe { (self.close)(self.cache) }
    }
}

/// What every get must add up to: the value's first byte plus its length.
fn expected(n: usize, first: u8) -> usize {
    n * (first as usize + VALUE_LEN)
}

#[inline(never)]
fn measured_so_get(c: &SoCache, keys: &[Key], seed: u64, n: usize) -> usize {
    let mut p = Pick(seed);
    (0..n)
        .map(|_| c.get(&keys[p.next()]).expect("resident"))
        .sum()
}

#[inline(never)]
fn measured_quick_get(c: &Quick, keys: &[Key], seed: u64, n: usize) -> usize {
    let mut p = Pick(seed);
    (0..n)
        .map(|_| {
            let v = c.get(&keys[p.next()][..]).expect("resident");
            v[0] as usize + v.len()
        })
        .sum()
}

#[inline(never)]
fn measured_moka_get(c: &Moka, keys: &[Key], seed: u64, n: usize) -> usize {
    let mut p = Pick(seed);
    (0..n)
        .map(|_| {
            let v = c.get(&keys[p.next()][..]).expect("resident");
            v[0] as usize + v.len()
        })
        .sum()
}

#[inline(never)]
fn measured_so_set(c: &SoCache, keys: &[Key], value: &[u8], seed: u64, n: usize) -> usize {
    let mut p = Pick(seed);
    (0..n).for_each(|_| c.set(&keys[p.next()], value));
    n
}

#[inline(never)]
fn measured_crate_set(c: &Smart, keys: &[Key], value: &[u8], seed: u64, n: usize) -> usize {
    let mut p = Pick(seed);
    (0..n).for_each(|_| c.set(&keys[p.next()], value));
    n
}

/// quick_cache's insert of the same bytes: an `Arc<[u8]>` copy made per set (a stored value
/// is the cache's own, as SmartCache's copy is) and a boxed key, replacing the resident entry.
#[inline(never)]
fn measured_quick_insert(c: &Quick, keys: &[Key], value: &[u8], seed: u64, n: usize) -> usize {
    let mut p = Pick(seed);
    (0..n).for_each(|_| c.insert(keys[p.next()].into(), Arc::from(value)));
    n
}

/// The caches under test, filled with the same 100,000 keys and values. A callgrind run fills
/// only the one it counts: the others' memory would crowd its data out of the simulated caches.
struct Caches {
    so: Option<SoCache>,
    krate: Option<Smart>,
    quick: Option<Quick>,
    moka: Option<Moka>,
    keys: Vec<Key>,
    value: [u8; VALUE_LEN],
}

impl Caches {
    /// Every cache, or with `only` (an operation name) the one that operation uses.
    fn new(so_path: &str, only: Option<&str>) -> Caches {
        let keys = keys();
        let value = [b'v'; VALUE_LEN];
        let wanted = |prefix: &str| only.map_or(true, |op| op.starts_with(prefix));
        let so = wanted("so_").then(|| SoCache::open(so_path));
        let krate = wanted("crate_").then(|| Smart::open(CAPACITY, true));
        let quick = wanted("quick_").then(|| quick(CAPACITY));
        let moka = wanted("moka_").then(|| moka(CAPACITY));
        for k in &keys {
            so.iter().for_each(|c| c.set(k, &value));
            krate.iter().for_each(|c| c.set(k, &value));
            quick
                .iter()
                .for_each(|c| c.insert(k[..].into(), Arc::from(&value[..])));
            moka.iter()
                .for_each(|c| c.insert(k[..].into(), Arc::from(&value[..])));
        }
        moka.iter().for_each(|c| c.run_pending_tasks());
        Caches {
            so,
            krate,
            quick,
            moka,
            keys,
            value,
        }
    }

    /// Runs operation `which` for `n` per thread and returns its check sum.
    fn run(&self, which: &str, seed: u64, n: usize) -> usize {
        let (k, v) = (&self.keys[..], &self.value[..]);
        let (so, krate) = (self.so.as_ref(), self.krate.as_ref());
        let (quick, moka) = (self.quick.as_ref(), self.moka.as_ref());
        match which {
            "so_get" => measured_so_get(so.unwrap(), k, seed, n),
            "quick_get" => measured_quick_get(quick.unwrap(), k, seed, n),
            "moka_get" => measured_moka_get(moka.unwrap(), k, seed, n),
            "so_set" => measured_so_set(so.unwrap(), k, v, seed, n),
            "crate_set" => measured_crate_set(krate.unwrap(), k, v, seed, n),
            "quick_insert" => measured_quick_insert(quick.unwrap(), k, v, seed, n),
            other => panic!("unknown operation {other}"),
        }
    }

    /// Mean over `threads` threads (started together) of each one's ns per operation.
    fn timed(&self, which: &str, threads: usize, n: usize) -> f64 {
        let start = Barrier::new(threads);
        let per_thread: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let start = &start;
                    s.spawn(move || {
                        let seed = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(t as u64 + 1);
                        start.wait();
                        let t0 = Instant::now();
                        let sum = black_box(self.run(which, seed, n));
                        let ns = t0.elapsed().as_nanos() as f64 / n as f64;
                        if which.ends_with("_get") {
                            assert_eq!(sum, expected(n, b'v'), "{which}: every get must hit");
                        }
                        ns
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        per_thread.iter().sum::<f64>() / threads as f64
    }

    /// Median over ROUNDS interleaved rounds of each operation in `ops`.
    fn medians(&self, ops: &[&str], threads: usize, n: usize) -> Vec<f64> {
        let mut samples = vec![Vec::new(); ops.len()];
        for _ in 0..ROUNDS {
            for (i, op) in ops.iter().enumerate() {
                samples[i].push(self.timed(op, threads, n));
            }
        }
        samples
            .into_iter()
            .map(|mut s| {
                s.sort_by(f64::total_cmp);
                s[s.len() / 2]
            })
            .collect()
    }
}

fn default_so() -> String {
    std::env::var("SMARTCACHE_LIB").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/build/lib/libsmartcache.so").into()
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let so_path = default_so();
    if args.first().map(String::as_str) == Some("callgrind") {
        let (which, n) = (&args[1], args[2].parse().expect("operation count"));
        let caches = Caches::new(&so_path, Some(which));
        let sum = caches.run(which, 7, n);
        if which.ends_with("_get") {
            assert_eq!(sum, expected(n, b'v'), "every get must hit");
        }
        println!("so_get callgrind {which}: {n} operations");
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we act on either way.
    let n = std::env::var("SO_GET_GETS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_GETS);
    println!("so_get: {so_path}, {RESIDENT} resident keys, {n} operations per thread, median of {ROUNDS} rounds");
    let caches = Caches::new(&so_path, None);
    caches.run("so_get", 1, n / 10); // warm up: every page touched once
    for threads in [1, 2] {
        let m = caches.medians(&["so_get", "quick_get", "moka_get"], threads, n);
        println!(
            "get threads={threads}: smartcache(.so) {:.1} ns, quick_cache {:.1} ns, moka {:.1} ns; \
             smartcache/quick_cache {:.2}x, smartcache/moka {:.2}x",
            m[0],
            m[1],
            m[2],
            m[0] / m[1],
            m[0] / m[2]
        );
    }
    let m = caches.medians(&["so_set", "crate_set", "quick_insert"], 1, n);
    println!(
        "replacing set threads=1: smartcache(.so) {:.1} ns, smartcache(crate) {:.1} ns, \
         quick_cache insert(Arc copy) {:.1} ns; .so/quick_cache {:.2}x, crate/quick_cache {:.2}x",
        m[0],
        m[1],
        m[2],
        m[0] / m[2],
        m[1] / m[2]
    );
}
