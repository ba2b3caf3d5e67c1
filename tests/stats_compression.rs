//! Compression through the coordinator (every tier stores the frame, gets decode it once),
//! analytics that add up under concurrency, latency percentiles, and the Prometheus rendering.

mod common;

use common::TempDir;
use smartcache::disk::DiskTier;
use smartcache::ffi::*;
use smartcache::latency::{Op, TierId};
use smartcache::tier::flags;
use smartcache::{Cache, Config, Error};
use std::sync::Arc;
use std::time::Duration;

fn config(pairs: &[(&str, &str)]) -> Config {
    let mut c = Config::default();
    c.set("auto_expire_interval", "0").unwrap();
    c.set("memory_capacity", "100000").unwrap();
    for (k, v) in pairs {
        c.set(k, v).unwrap();
    }
    c
}

/// JSON-like text: compresses well, as cached API responses do.
fn text(n: usize) -> Vec<u8> {
    let unit =
        b"{\"id\": 1234, \"name\": \"user\", \"roles\": [\"admin\", \"dev\"], \"ok\": true}, ";
    unit.iter().cycle().take(n).copied().collect()
}

fn get(c: &Cache, k: &[u8]) -> Option<Vec<u8>> {
    c.get(k).unwrap().map(|b| b.value().to_vec())
}

#[test]
fn every_size_round_trips_around_the_threshold_and_up_to_a_mebibyte() {
    let c = Cache::open(config(&[("compression_min_size", "256")])).unwrap();
    let sizes = (0..=600usize)
        .chain((10..=20).map(|s| 1usize << s))
        .chain([(1 << 20) - 3]);
    for n in sizes {
        let key = format!("k{n}");
        let v = text(n);
        c.set(key.as_bytes(), &v, None).unwrap();
        assert_eq!(
            get(&c, key.as_bytes()).as_deref(),
            Some(&v[..]),
            "get of {n} bytes"
        );
        let mut buf = vec![0u8; n];
        assert_eq!(
            c.get_copy(key.as_bytes(), &mut buf).unwrap(),
            Some(n),
            "get_copy {n}"
        );
        assert_eq!(buf, v);
        if n > 0 {
            let mut short = vec![0u8; n - 1];
            // The length needed is the plain one, not the stored frame's.
            assert_eq!(
                c.get_copy(key.as_bytes(), &mut short),
                Err(Error::BufferTooSmall(n))
            );
        }
    }
    let s = c.stats();
    assert!(s.compression_ratio > 5.0, "ratio {}", s.compression_ratio);
    assert_eq!(s.memory_errors, 0);
}

#[test]
fn compressed_values_take_less_memory_and_incompressible_ones_are_kept_plain() {
    let on = Cache::open(config(&[("compression_min_size", "1024")])).unwrap();
    let off = Cache::open(config(&[("compression_enabled", "false")])).unwrap();
    for i in 0..200u32 {
        let k = i.to_le_bytes();
        on.set(&k, &text(8192), None).unwrap();
        off.set(&k, &text(8192), None).unwrap();
    }
    let (a, b) = (on.stats(), off.stats());
    assert!(
        a.memory.bytes * 5 < b.memory.bytes,
        "{} vs {}",
        a.memory.bytes,
        b.memory.bytes
    );
    assert_eq!(b.compression_ratio, 1.0);

    let mut x = 99u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let c = Cache::open(config(&[("compression_min_size", "16")])).unwrap();
    c.set(b"noise", &noise, None).unwrap();
    let pinned = c.get(b"noise").unwrap().unwrap();
    assert_eq!(pinned.value(), &noise[..]);
    assert_eq!(
        pinned.entry_flags() & flags::COMPRESSED,
        0,
        "kept compressed without a saving"
    );
    assert!((c.stats().compression_ratio - 1.0).abs() < 1e-9);
}

#[test]
fn pinned_decompressed_value_outlives_the_entry() {
    let c = Cache::open(config(&[("compression_min_size", "64")])).unwrap();
    c.set(b"k", &text(5000), None).unwrap();
    let pinned = c.get(b"k").unwrap().unwrap();
    c.delete(b"k").unwrap();
    c.clear().unwrap();
    drop(c);
    assert_eq!(pinned.value(), &text(5000)[..]);
}

#[test]
fn compressed_frames_survive_the_disk_tier_and_promote_compressed() {
    let dir = TempDir::new("compress-disk");
    let cfg = config(&[
        ("compression_min_size", "128"),
        ("disk_enabled", "true"),
        ("disk_path", dir.path().to_str().unwrap()),
        ("disk_max_size", "8M"),
    ]);
    {
        let c = Cache::open(cfg.clone()).unwrap();
        c.set(b"doc", &text(50_000), None).unwrap();
    }
    // The file holds the frame, not the plain bytes.
    {
        let d = DiskTier::open(dir.path(), 8 << 20, 16 << 20).unwrap();
        let hit = d.get(b"doc").unwrap().unwrap();
        assert_eq!(hit.flags & flags::COMPRESSED, flags::COMPRESSED);
        assert!(hit.value.len() < 5_000, "{} bytes on disk", hit.value.len());
    }
    let c = Cache::open(cfg).unwrap();
    assert_eq!(
        get(&c, b"doc").as_deref(),
        Some(&text(50_000)[..]),
        "from disk"
    );
    assert_eq!(
        get(&c, b"doc").as_deref(),
        Some(&text(50_000)[..]),
        "promoted"
    );
    let s = c.stats();
    assert_eq!((s.disk.unwrap().hits, s.memory.hits), (1, 1));
    assert!(
        s.memory.bytes < 10_000,
        "promoted entry kept compressed: {}",
        s.memory.bytes
    );
}

#[test]
fn corrupt_compressed_data_is_a_miss_and_a_counted_error() {
    let dir = TempDir::new("compress-corrupt");
    {
        // Another writer left a frame that claims to be LZ4 but is not.
        let d = DiskTier::open(dir.path(), 4 << 20, 1 << 20).unwrap();
        let mut bogus = 100_000u32.to_le_bytes().to_vec();
        bogus.extend_from_slice(&[0xff; 64]);
        d.set(b"bad", &bogus, flags::COMPRESSED, None).unwrap();
        d.set(b"short", &[1, 2], flags::COMPRESSED, None).unwrap();
        // A prefix claiming 4 GiB: refused by its length, never allocated.
        let mut huge = u32::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0x10; 32]);
        d.set(b"huge", &huge, flags::COMPRESSED, None).unwrap();
    }
    let c = Cache::open(config(&[
        ("disk_enabled", "true"),
        ("disk_path", dir.path().to_str().unwrap()),
        ("disk_max_size", "4M"),
        ("max_value_size", "1M"),
    ]))
    .unwrap();
    // A length over max_value_size is a counted miss, not corruption (a cache with a larger
    // limit may read it); asked first, so the last error below is a damaged frame's.
    assert!(c.get(b"huge").unwrap().is_none());
    assert!(c.get(b"bad").unwrap().is_none());
    let mut buf = [0u8; 16];
    assert_eq!(c.get_copy(b"short", &mut buf).unwrap(), None);
    let s = c.stats();
    assert_eq!(s.memory_errors, 3);
    let h = c.health();
    assert_eq!(h.memory.errors, 3);
    // The damaged frames were dropped from the disk too: not promoted and counted again.
    assert!(c.get(b"bad").unwrap().is_none());
    assert_eq!(c.stats().memory_errors, 3);
    assert!(!c.exists(b"bad").unwrap());
    assert!(h
        .memory
        .last_error
        .unwrap()
        .contains("corrupt compressed value"));
}

#[test]
fn stats_add_up_under_four_threads() {
    let c = Arc::new(Cache::open(config(&[("memory_capacity", "1000000")])).unwrap());
    const PER: u64 = 20_000;
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                let (mut hits, mut misses) = (0u64, 0u64);
                for i in 0..PER {
                    let k = (t * PER + i).to_le_bytes();
                    c.set(&k, b"v", None).unwrap();
                    // Every key exists once set: a hit; the +1M key never does: a miss.
                    match c.get(&k).unwrap() {
                        Some(_) => hits += 1,
                        None => misses += 1,
                    }
                    if c.get(&(1_000_000 + i).to_le_bytes()).unwrap().is_none() {
                        misses += 1;
                    }
                    if i % 4 == 0 {
                        assert!(c.delete(&k).unwrap());
                    }
                }
                (hits, misses)
            })
        })
        .collect();
    let (mut hits, mut misses) = (0, 0);
    for t in threads {
        let (h, m) = t.join().unwrap();
        hits += h;
        misses += m;
    }
    let s = c.stats();
    assert_eq!((s.hits, s.misses), (hits, misses));
    assert_eq!((hits, misses), (4 * PER, 4 * PER));
    assert_eq!(s.sets, 4 * PER);
    assert_eq!(s.deletes, PER);
    assert_eq!(s.memory.size, 3 * PER);
    assert!((s.hit_ratio() - 0.5).abs() < 1e-9);
    // About 1 in 64 memory gets is sampled for latency (picked by clock bits, so not exactly).
    let get = s.latency[TierId::Memory as usize][Op::Get as usize];
    let expected = 2 * 4 * PER / 64;
    assert!(
        get.samples > expected / 2 && get.samples < expected * 2,
        "{get:?}"
    );
    assert!(get.p50_ns > 0 && get.p99_ns >= get.p50_ns);
}

#[test]
fn stats_off_counts_nothing() {
    let c = Cache::open(config(&[("enable_stats", "false")])).unwrap();
    for i in 0..1000u32 {
        c.set(&i.to_le_bytes(), &text(4096), None).unwrap();
        c.get(&i.to_le_bytes()).unwrap();
    }
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.sets), (0, 0, 0));
    assert_eq!(s.latency[0][0].samples, 0);
    assert_eq!(s.compression_ratio, 1.0);
    assert_eq!(s.memory.size, 1000, "sizes are still reported");
}

#[test]
fn disk_latency_is_recorded_for_every_call() {
    let dir = TempDir::new("latency-disk");
    let c = Cache::open(config(&[
        ("disk_enabled", "true"),
        ("disk_path", dir.path().to_str().unwrap()),
        ("disk_max_size", "4M"),
    ]))
    .unwrap();
    for i in 0..100u32 {
        c.set(&i.to_le_bytes(), b"value", None).unwrap();
    }
    c.clear().unwrap();
    for i in 0..100u32 {
        let _ = c.get(&i.to_le_bytes()).unwrap();
    }
    let s = c.stats();
    let set = s.latency[TierId::Disk as usize][Op::Set as usize];
    let get = s.latency[TierId::Disk as usize][Op::Get as usize];
    assert_eq!((set.samples, get.samples), (100, 100));
    assert!(set.p99_ns >= set.p50_ns && set.p50_ns > 0);
}

fn c_string(p: *mut std::ffi::c_char) -> String {
    assert!(!p.is_null());
    // SAFETY: a NUL-terminated string from the library, freed right after.
    let s = unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: returned by the library, freed once.
    unsafe { sz_string_free(p) };
    s
}

#[test]
fn prometheus_and_json_render_every_figure() {
    let dir = TempDir::new("prom");
    let cfg = sz_config_new();
    let set = |n: &str, v: &str| {
        let (n, v) = (
            std::ffi::CString::new(n).unwrap(),
            std::ffi::CString::new(v).unwrap(),
        );
        // SAFETY: live config and NUL-terminated strings.
        assert_eq!(unsafe { sz_config_set(cfg, n.as_ptr(), v.as_ptr()) }, SZ_OK);
    };
    set("disk_enabled", "true");
    set("disk_path", dir.path().to_str().unwrap());
    set("disk_max_size", "4M");
    set("compression_min_size", "100");
    let mut c = std::ptr::null_mut();
    // SAFETY: live config, valid out pointer; closed below.
    unsafe {
        assert_eq!(sz_cache_open(cfg, &mut c), SZ_OK);
        sz_config_free(cfg);
        let v = text(10_000);
        for i in 0..200u32 {
            let k = format!("key{i}");
            assert_eq!(
                sz_cache_set(c, k.as_ptr().cast(), k.len(), v.as_ptr().cast(), v.len(), 0),
                SZ_OK
            );
            let mut out = std::ptr::null_mut();
            assert_eq!(sz_cache_get(c, k.as_ptr().cast(), k.len(), &mut out), SZ_OK);
            assert_eq!(sz_value_len(out), v.len());
            sz_value_release(out);
        }
        let prom = c_string(sz_cache_stats_prometheus(c));
        for needle in [
            "# TYPE smartcache_hits_total counter",
            "smartcache_hits_total 200",
            "smartcache_sets_total 200",
            "smartcache_tier_up{tier=\"disk\"} 1",
            "smartcache_latency_seconds{tier=\"disk\",op=\"set\",quantile=\"0.99\"}",
            "smartcache_disk_fill_ratio",
        ] {
            assert!(prom.contains(needle), "missing {needle} in\n{prom}");
        }
        assert!(
            !prom.contains("tier=\"redis\""),
            "a disabled tier is not rendered"
        );
        let ratio: f64 = prom
            .lines()
            .find(|l| l.starts_with("smartcache_compression_ratio "))
            .and_then(|l| l.split(' ').nth(1))
            .unwrap()
            .parse()
            .unwrap();
        assert!(ratio > 5.0, "{ratio}");
        let json = c_string(sz_cache_stats_json(c));
        assert!(
            json.contains("\"latency\":{\"get\":{\"samples\":"),
            "{json}"
        );
        let mut s = sz_stats {
            struct_size: std::mem::size_of::<sz_stats>(),
            ..Default::default()
        };
        assert_eq!(sz_cache_stats(c, &mut s), SZ_OK);
        assert!(
            s.compression_ratio > 5.0
                && s.disk_set_p50_ns > 0
                && s.disk_set_p99_ns >= s.disk_set_p50_ns
        );
        assert!(sz_cache_stats_prometheus(std::ptr::null_mut()).is_null());
        sz_cache_close(c);
    }
}

#[test]
fn expiry_thread_reclaims_in_the_background_and_stops_on_close() {
    let c = Cache::open(config(&[("auto_expire_interval", "1")])).unwrap();
    for i in 0..5000u32 {
        c.set(
            &i.to_le_bytes(),
            &[0u8; 100],
            Some(Duration::from_millis(50)),
        )
        .unwrap();
    }
    let before = c.stats().memory.bytes;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while c.stats().memory.size > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "background expiry did not reclaim"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = c.stats();
    assert_eq!(s.expirations, 5000);
    assert!(s.memory.bytes < before / 100);
    let t = std::time::Instant::now();
    drop(c);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "close took {:?}",
        t.elapsed()
    );
    // Whether close waits for the thread's sleep shows only with an interval far longer than
    // any stall of a busy machine: with 1 s it would cost at most 1 s, which a preempted test
    // cannot tell from a prompt close. With 60 s a close that waits cannot pass.
    let c = Cache::open(config(&[("auto_expire_interval", "60")])).unwrap();
    c.set(b"k", b"v", Some(Duration::from_millis(50))).unwrap();
    let t = std::time::Instant::now();
    drop(c);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "close waited for the interval: {:?}",
        t.elapsed()
    );
}
