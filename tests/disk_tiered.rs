//! The coordinator with the disk tier enabled: L3 behind L1, promotion with the remaining
//! lifetime, write-through, delete/clear reaching the file, and stats/health reporting it.

mod common;

use common::TempDir;
use smartcache::{Cache, Config, Error};
use std::time::{Duration, Instant};

fn config(dir: &TempDir) -> Config {
    let mut c = Config::default();
    c.set("disk_enabled", "true").unwrap();
    c.set("disk_path", dir.path().to_str().unwrap()).unwrap();
    c.set("disk_max_size", "4M").unwrap();
    c.set("max_value_size", "65536").unwrap();
    c.set("auto_expire_interval", "0").unwrap();
    c
}

#[test]
fn a_second_cache_finds_the_first_ones_values_on_disk_and_promotes_them() {
    let dir = TempDir::new("tiered-promote");
    // 60 s, far beyond any stall of a busy machine, so the entry is surely live when read back;
    // the check that it keeps its deadline uses the time since the set instead.
    let ttl = Duration::from_secs(60);
    let after_set;
    {
        let a = Cache::open(config(&dir)).unwrap();
        a.set(b"forever", b"v1", None).unwrap();
        a.set(b"short", b"v2", Some(ttl)).unwrap();
        after_set = Instant::now();
    }
    let b = Cache::open(config(&dir)).unwrap();
    let blob = b.get(b"forever").unwrap().expect("served from L3");
    assert_eq!(blob.value(), b"v1");
    let before_get = Instant::now();
    let blob = b.get(b"short").unwrap().expect("served from L3");
    let left = Cache::remaining(&blob).expect("keeps its deadline");
    // The deadline was fixed before `after_set`, so at the get at most ttl - (before_get -
    // after_set) was left (plus the disk tier's millisecond rounding).
    let aged = before_get - after_set;
    assert!(
        left <= ttl && left <= ttl - aged + Duration::from_millis(2),
        "promoted with a fresh TTL: {left:?} after {aged:?}"
    );
    let s = b.stats();
    let disk = s.disk.clone().expect("disk stats");
    assert_eq!(disk.hits, 2);
    // Second read is an L1 hit: L3 is not asked again.
    assert_eq!(b.get(b"forever").unwrap().unwrap().value(), b"v1");
    assert_eq!(b.stats().disk.unwrap().hits, 2);
    assert_eq!(b.stats().hits, 3);
    assert_eq!(b.stats().misses, 0, "L1 misses answered by L3 are hits");
    assert!(b.get(b"absent").unwrap().is_none());
    assert_eq!(b.stats().misses, 1);
    let mut buf = [0u8; 8];
    let c = Cache::open(config(&dir)).unwrap();
    assert_eq!(c.get_copy(b"forever", &mut buf).unwrap(), Some(2));
    assert_eq!(&buf[..2], b"v1");
    assert!(c.exists(b"short").unwrap());
}

#[test]
fn delete_and_clear_reach_the_disk() {
    let dir = TempDir::new("tiered-delete");
    let a = Cache::open(config(&dir)).unwrap();
    a.set(b"k1", b"v", None).unwrap();
    a.set(b"k2", b"v", None).unwrap();
    assert!(a.delete(b"k1").unwrap());
    let b = Cache::open(config(&dir)).unwrap();
    assert!(b.get(b"k1").unwrap().is_none());
    assert!(b.exists(b"k2").unwrap());
    a.clear().unwrap();
    let c = Cache::open(config(&dir)).unwrap();
    assert!(c.get(b"k2").unwrap().is_none());
}

#[test]
fn an_expired_disk_entry_is_never_served_and_is_reclaimed() {
    let dir = TempDir::new("tiered-expire");
    {
        let a = Cache::open(config(&dir)).unwrap();
        a.set(b"k", b"v", Some(Duration::from_millis(50))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(80));
    let b = Cache::open(config(&dir)).unwrap();
    assert!(b.get(b"k").unwrap().is_none());
    assert!(
        b.expire_now() >= 1,
        "the disk entry is reclaimed by the expiry step"
    );
}

#[test]
fn a_write_the_disk_refuses_does_not_fail_the_call_or_leave_the_old_value() {
    let dir = TempDir::new("tiered-refused");
    let mut cfg = config(&dir);
    // 4 MiB file with max_value_size 2 MiB: segments are smaller than the largest value.
    cfg.set("max_value_size", "2097152").unwrap();
    // Stored as given, so the value really is larger than a segment.
    cfg.set("compression_enabled", "false").unwrap();
    let a = Cache::open(cfg.clone()).unwrap();
    a.set(b"k", b"old", None).unwrap();
    let big = vec![1u8; 2_000_000];
    a.set(b"k", &big, None).unwrap();
    assert_eq!(a.get(b"k").unwrap().unwrap().value(), &big[..]);
    let b = Cache::open(cfg).unwrap();
    assert!(
        b.get(b"k").unwrap().is_none(),
        "the stale disk value was removed"
    );
}

#[test]
fn stats_and_health_show_the_disk_tier() {
    let dir = TempDir::new("tiered-health");
    let a = Cache::open(config(&dir)).unwrap();
    a.set(b"k", &[0u8; 1000], None).unwrap();
    let h = a.health();
    assert!(h.disk.enabled && h.disk.up);
    assert_eq!(h.disk.errors, 0);
    assert_eq!(h.disk_path.as_deref(), Some(dir.file().to_str().unwrap()));
    assert!(h.disk_fill > 0.0 && h.disk_fill < 0.01, "{}", h.disk_fill);
    assert_eq!(a.stats().disk.unwrap().sets, 1);
    let file = a.stats().disk_file.expect("disk file figures");
    assert_eq!((file.entries, file.corruptions), (1, 0));
    assert!(
        file.bytes_used > 1000 && file.capacity > 3 << 20,
        "{file:?}"
    );
    assert_eq!(file.path, dir.file());
}

#[test]
fn a_foreign_file_at_disk_path_fails_the_open_with_io() {
    let dir = TempDir::new("tiered-foreign");
    std::fs::write(dir.file(), b"someone else's file").unwrap();
    let e = Cache::open(config(&dir)).err().expect("refused");
    assert!(matches!(e, Error::Io(_)), "{e}");
    assert_eq!(e.code(), -4);
    assert_eq!(std::fs::read(dir.file()).unwrap(), b"someone else's file");
}

#[test]
fn get_many_falls_back_to_disk_per_key() {
    let dir = TempDir::new("tiered-many");
    {
        let a = Cache::open(config(&dir)).unwrap();
        a.set_many(&[(b"a", b"1"), (b"b", b"2"), (b"c", b"3")], None)
            .unwrap();
    }
    let b = Cache::open(config(&dir)).unwrap();
    b.set(b"b", b"fresh", None).unwrap();
    let got = b.get_many(&[b"a", b"b", b"c", b"zz"]).unwrap();
    let got: Vec<Option<Vec<u8>>> = got
        .into_iter()
        .map(|v| v.map(|b| b.value().to_vec()))
        .collect();
    assert_eq!(
        got,
        vec![
            Some(b"1".to_vec()),
            Some(b"fresh".to_vec()),
            Some(b"3".to_vec()),
            None
        ]
    );
    assert_eq!(b.stats().disk.unwrap().hits, 2);
}

/// A file laid out with segments smaller than max_value_size allows (64 KiB of disk for values
/// up to 2 GiB) still opens; a value too large for its segments is kept by memory, not stored on
/// disk, counted as skipped there (not as an error of the tier), and gone from the file.
#[test]
fn a_value_too_large_for_the_disk_segments_is_skipped_on_disk_and_counted() {
    let dir = TempDir::new("tiered-geometry");
    let mut c = config(&dir);
    c.set("disk_max_size", "64K").unwrap();
    c.set("max_value_size", "2G").unwrap();
    c.set("compression_enabled", "false").unwrap();
    let a = Cache::open(c.clone()).unwrap();
    a.set(b"small", b"fits", None).unwrap();
    let big = vec![7u8; 64 << 10];
    a.set(b"big", b"old, small enough", None).unwrap();
    a.set(b"big", &big, None).unwrap();
    assert_eq!(
        a.get(b"big").unwrap().unwrap().value(),
        &big[..],
        "memory keeps it"
    );
    let s = a.stats();
    let disk = s.disk_file.expect("disk figures");
    assert_eq!(disk.skipped, 1, "{disk:?}");
    assert_eq!(
        disk.counters.errors, 0,
        "not a failure of the tier: {disk:?}"
    );
    drop(a);
    let b = Cache::open(c).unwrap();
    assert_eq!(b.get(b"small").unwrap().unwrap().value(), b"fits");
    assert!(b.get(b"big").unwrap().is_none(), "neither value is on disk");
}
