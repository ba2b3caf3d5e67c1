//! Signed values (value_secret) against the real thing: a real redis-server where a second raw
//! client forges frames under the cache's prefix, and a real disk file rewritten by hand. A
//! record whose MAC is missing or wrong is a miss counted as tampered, never a value; rotation
//! through value_secret_previous keeps old values readable; values over max_value_size found in
//! either tier are misses.

mod common;
mod support;

use common::TempDir;
use smartcache::disk::format::record_crc;
use smartcache::{Cache, Config};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use support::redis_server::RedisServer;

/// A record's fixed header, in bytes (docs/disk-format.md).
const RECORD_HEADER: usize = 32;
const SECRET: &str = "fleet-secret-2026-12";
const NEXT_SECRET: &str = "fleet-secret-2027-01";

fn config(redis: Option<&RedisServer>, disk: Option<&TempDir>, secret: &str) -> Config {
    let mut c = Config {
        redis_enabled: redis.is_some(),
        redis_url: redis.map_or(String::new(), |r| r.url(0)),
        redis_key_prefix: Some("signed:".into()),
        disk_enabled: disk.is_some(),
        disk_max_size: 1 << 20,
        auto_expire_interval: 0,
        ..Config::default()
    };
    if let Some(d) = disk {
        c.disk_path = d.path().to_path_buf();
    }
    if redis.is_none() {
        c.redis_url = Config::default().redis_url;
    }
    c.set("value_secret", secret).unwrap();
    c
}

fn get(cache: &Cache, key: &[u8]) -> Option<Vec<u8>> {
    cache.get(key).unwrap().map(|b| b.value().to_vec())
}

fn redis_tampered(cache: &Cache) -> u64 {
    cache.stats().redis.unwrap().tampered
}

fn disk_tampered(cache: &Cache) -> u64 {
    cache.stats().disk.unwrap().tampered
}

/// An unsigned (version 1) frame as an older or secret-less writer stores it.
fn unsigned_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xFF, b'S', b'C', 1, 0];
    f.extend_from_slice(&0u64.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn forged_redis_frames_are_misses_counted_as_tampered() {
    let server = RedisServer::start();
    let cache = Cache::open(config(Some(&server), None, SECRET)).unwrap();
    cache.set(b"real", b"signed value", None).unwrap();
    let stored = server.cmd(&[b"GET", b"signed:real"]).bulk().unwrap();
    assert_eq!(stored[3], 2, "written as a signed frame");
    assert_eq!(stored.len(), 13 + 32 + b"signed value".len());

    // A second client that can write to Redis stores its own frames under our prefix.
    let mut forged_mac = stored[..13].to_vec();
    forged_mac.extend_from_slice(&[0x5A; 32]);
    forged_mac.extend_from_slice(b"attacker value");
    let mut flipped = stored.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let cases: [(&[u8], Vec<u8>); 4] = [
        (b"unsigned", unsigned_frame(b"attacker value")),
        (b"forged-mac", forged_mac),
        (b"bit-flipped", flipped),
        // A genuine frame moved to another key: the MAC binds it to the key it was set under.
        (b"moved", stored.clone()),
    ];
    for (i, (key, frame)) in cases.iter().enumerate() {
        let full = [b"signed:".as_slice(), key].concat();
        server.cmd(&[b"SET", &full, frame]).assert_ok();
        assert_eq!(get(&cache, key), None, "{}", String::from_utf8_lossy(key));
        assert_eq!(redis_tampered(&cache), i as u64 + 1);
        assert!(!cache.exists(key).unwrap());
    }
    let health = cache.health();
    let last = health.redis.last_error.unwrap_or_default();
    assert!(
        last.contains("tampered") && last.contains("moved"),
        "{last}"
    );
    assert_eq!(
        cache.stats().redis.unwrap().errors,
        0,
        "tampering is not a transport error"
    );
    // The genuine value still reads, and no forged one reached memory.
    assert_eq!(get(&cache, b"real").as_deref(), Some(&b"signed value"[..]));
    let fresh = Cache::open(config(Some(&server), None, SECRET)).unwrap();
    assert_eq!(get(&fresh, b"real").as_deref(), Some(&b"signed value"[..]));
    assert_eq!(get(&fresh, b"forged-mac"), None);
}

#[test]
fn rotation_reads_the_previous_secret_and_an_unrelated_secret_reads_nothing() {
    let server = RedisServer::start();
    let dir = TempDir::new("signed-rotation");
    let old = Cache::open(config(Some(&server), Some(&dir), SECRET)).unwrap();
    for i in 0..10u32 {
        old.set(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), None)
            .unwrap();
    }
    drop(old);

    let mut rotated_cfg = config(Some(&server), Some(&dir), NEXT_SECRET);
    rotated_cfg.set("value_secret_previous", SECRET).unwrap();
    let rotated = Cache::open(rotated_cfg.clone()).unwrap();
    for i in 0..10u32 {
        let want = format!("v{i}").into_bytes();
        assert_eq!(get(&rotated, format!("k{i}").as_bytes()), Some(want));
    }
    assert_eq!(redis_tampered(&rotated), 0);
    // Only Redis was asked (it hit); now the disk copies, read without Redis.
    let mut disk_only = rotated_cfg;
    disk_only.redis_enabled = false;
    let from_disk = Cache::open(disk_only).unwrap();
    assert_eq!(get(&from_disk, b"k3").as_deref(), Some(&b"v3"[..]));
    assert_eq!(disk_tampered(&from_disk), 0);
    // New writes are signed with the new secret only.
    rotated.set(b"new", b"by the new secret", None).unwrap();

    let unrelated =
        Cache::open(config(Some(&server), Some(&dir), "someone-else's-secret")).unwrap();
    for key in [&b"k1"[..], b"k2", b"new"] {
        assert_eq!(get(&unrelated, key), None);
    }
    // Each get refused the Redis frame and then the disk record.
    assert_eq!(redis_tampered(&unrelated), 3);
    assert_eq!(disk_tampered(&unrelated), 3);
    let h = unrelated.health();
    let last = h.disk.last_error.unwrap();
    assert!(
        last.contains("tampered") && last.contains("MAC does not verify"),
        "{last}"
    );
    // And a reader whose previous secret is gone no longer reads the old values.
    let moved_on = Cache::open(config(Some(&server), Some(&dir), NEXT_SECRET)).unwrap();
    assert_eq!(get(&moved_on, b"k1"), None);
    assert_eq!(
        get(&moved_on, b"new").as_deref(),
        Some(&b"by the new secret"[..])
    );
}

/// Offset of a record's header in the file: the key is stored right after it, once.
fn record_offset(file: &std::fs::File, key: &[u8]) -> u64 {
    let len = file.metadata().unwrap().len() as usize;
    let mut all = vec![0u8; len];
    file.read_exact_at(&mut all, 0).unwrap();
    let hits: Vec<usize> = all
        .windows(key.len())
        .enumerate()
        .filter(|(_, w)| *w == key)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "the key is stored once");
    (hits[0] - RECORD_HEADER) as u64
}

/// Rewrites a record's stored value (MAC included) and fixes its crc, as someone who can write
/// the file would: the crc is no protection, only the MAC is.
fn rewrite_record(
    file: &std::fs::File,
    key: &[u8],
    edit: impl FnOnce(&mut [u8; 32], &mut Vec<u8>),
) {
    let at = record_offset(file, key);
    let mut hb = [0u8; RECORD_HEADER];
    file.read_exact_at(&mut hb, at).unwrap();
    let vlen = u32::from_le_bytes(hb[8..12].try_into().unwrap()) as usize;
    let mut value = vec![0u8; vlen];
    file.read_exact_at(&mut value, at + (RECORD_HEADER + key.len()) as u64)
        .unwrap();
    edit(&mut hb, &mut value);
    hb[8..12].copy_from_slice(&(value.len() as u32).to_le_bytes());
    let crc = record_crc(&hb, key, &[&value]);
    hb[0..4].copy_from_slice(&crc.to_le_bytes());
    file.write_all_at(&hb, at).unwrap();
    file.write_all_at(&value, at + (RECORD_HEADER + key.len()) as u64)
        .unwrap();
}

#[test]
fn rewritten_disk_records_are_misses_counted_as_tampered() {
    let dir = TempDir::new("signed-disk");
    let writer = Cache::open(config(None, Some(&dir), SECRET)).unwrap();
    for key in [
        &b"flipped-key"[..],
        b"forged-key",
        b"stripped-key",
        b"intact-key",
    ] {
        writer.set(key, b"the genuine value", None).unwrap();
    }
    drop(writer);
    // An unsigned record, as a cache without the secret writes it.
    let mut unsigned_cfg = config(None, Some(&dir), "");
    unsigned_cfg.value_secret = Default::default();
    Cache::open(unsigned_cfg)
        .unwrap()
        .set(b"unsigned-key", b"written without the secret", None)
        .unwrap();

    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.file())
        .unwrap();
    rewrite_record(&file, b"flipped-key", |_, v| *v.last_mut().unwrap() ^= 1);
    rewrite_record(&file, b"forged-key", |_, v| {
        v[..32].copy_from_slice(&[0xA5; 32]);
        v.truncate(32);
        v.extend_from_slice(b"the forged value!");
    });
    // The MAC removed and the header marked unsigned: as if written without a secret.
    rewrite_record(&file, b"stripped-key", |h, v| {
        h[12] = 0;
        v.drain(..32);
    });

    let reader = Cache::open(config(None, Some(&dir), SECRET)).unwrap();
    let keys = [
        &b"flipped-key"[..],
        b"forged-key",
        b"stripped-key",
        b"unsigned-key",
    ];
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(get(&reader, key), None, "{}", String::from_utf8_lossy(key));
        assert_eq!(disk_tampered(&reader), i as u64 + 1);
    }
    let s = reader.stats();
    assert_eq!(
        s.disk_file.unwrap().corruptions,
        0,
        "the crcs were fixed: only the MAC catches it"
    );
    assert!(reader
        .health()
        .disk
        .last_error
        .unwrap()
        .contains("carries no MAC"));
    assert_eq!(
        get(&reader, b"intact-key").as_deref(),
        Some(&b"the genuine value"[..])
    );
    // A reader without a secret trusts the file: it reads what was written unsigned.
    let mut trusting = config(None, Some(&dir), "");
    trusting.value_secret = Default::default();
    let trusting = Cache::open(trusting).unwrap();
    assert_eq!(
        get(&trusting, b"unsigned-key").as_deref(),
        Some(&b"written without the secret"[..])
    );
    assert_eq!(
        get(&trusting, b"intact-key").as_deref(),
        Some(&b"the genuine value"[..])
    );
}

#[test]
fn disk_hits_promoted_into_redis_are_signed_for_redis() {
    let server = RedisServer::start();
    let dir = TempDir::new("signed-promote");
    let both = Cache::open(config(Some(&server), Some(&dir), SECRET)).unwrap();
    both.set(b"page", b"<html>", None).unwrap();
    server.cmd(&[b"DEL", b"signed:page"]);
    // A fresh cache misses memory and Redis, hits disk and copies the value up into Redis.
    let fresh = Cache::open(config(Some(&server), Some(&dir), SECRET)).unwrap();
    assert_eq!(get(&fresh, b"page").as_deref(), Some(&b"<html>"[..]));
    let frame = server
        .cmd(&[b"GET", b"signed:page"])
        .bulk()
        .expect("promoted");
    assert_eq!(frame[3], 2, "the copy is signed");
    let redis_only = Cache::open(config(Some(&server), None, SECRET)).unwrap();
    assert_eq!(get(&redis_only, b"page").as_deref(), Some(&b"<html>"[..]));
    assert_eq!(redis_tampered(&redis_only), 0);
}

#[test]
fn values_over_max_value_size_in_redis_or_on_disk_are_misses() {
    let server = RedisServer::start();
    let dir = TempDir::new("signed-oversize");
    let mut big_cfg = config(Some(&server), Some(&dir), "");
    big_cfg.value_secret = Default::default();
    big_cfg.compression_enabled = false;
    let writer = Cache::open(big_cfg.clone()).unwrap();
    writer.set(b"big", &vec![7u8; 40_000], None).unwrap();
    // Another client stores a 2 MiB value under our prefix, bypassing max_value_size.
    server
        .cmd(&[b"SET", b"signed:huge", &unsigned_frame(&vec![1u8; 2 << 20])])
        .assert_ok();

    let mut small_cfg = big_cfg;
    small_cfg.max_value_size = 16 << 10;
    let reader = Cache::open(small_cfg.clone()).unwrap();
    assert_eq!(get(&reader, b"huge"), None);
    let redis = reader.stats().redis.unwrap();
    assert_eq!((redis.hits, redis.errors), (0, 1));
    assert!(redis.last_error.unwrap().contains("max_value_size"));
    // "big" is over the limit in Redis, then on disk: a miss in both, each counted.
    assert_eq!(get(&reader, b"big"), None);
    let s = reader.stats();
    assert_eq!(s.redis.unwrap().errors, 2);
    let disk = s.disk.unwrap();
    assert_eq!((disk.hits, disk.errors), (0, 1));
    assert!(disk.last_error.unwrap().contains("max_value_size 16384"));
    // The same bytes within the limit are served.
    writer.set(b"fits", &vec![7u8; 16 << 10], None).unwrap();
    assert_eq!(get(&reader, b"fits").map(|v| v.len()), Some(16 << 10));
}

#[test]
fn a_compressed_value_over_this_caches_limit_is_a_miss_and_stays_for_the_others() {
    let server = RedisServer::start();
    let dir = TempDir::new("oversize-compressed");
    let mut big_cfg = config(Some(&server), Some(&dir), "");
    big_cfg.value_secret = Default::default();
    big_cfg.max_value_size = 8 << 20;
    big_cfg.disk_max_size = 64 << 20;
    let writer = Cache::open(big_cfg.clone()).unwrap();
    // 6 MiB of zeros compresses to a few KiB: within any limit stored, over 1 MiB decoded.
    let zeros = vec![0u8; 6 << 20];
    writer.set(b"zeros", &zeros, None).unwrap();

    let mut small_cfg = big_cfg.clone();
    small_cfg.max_value_size = 1 << 20;
    let reader = Cache::open(small_cfg).unwrap();
    assert_eq!(get(&reader, b"zeros"), None);
    assert_eq!(get(&reader, b"zeros"), None);
    // The reader neither deleted it from Redis nor from disk: other caches still read it.
    let fresh_writer = Cache::open(big_cfg.clone()).unwrap();
    assert_eq!(get(&fresh_writer, b"zeros").map(|v| v.len()), Some(6 << 20));
    let mut disk_only = big_cfg;
    disk_only.redis_enabled = false;
    let from_disk = Cache::open(disk_only).unwrap();
    assert_eq!(get(&from_disk, b"zeros").map(|v| v.len()), Some(6 << 20));
}

#[test]
fn the_option_fuzz_target_takes_secrets_without_reading_them_back() {
    // The config fuzz target checks that what `get` shows is accepted by `set`; a secret shows
    // as a placeholder instead, which the target must allow (and check).
    smartcache::fuzzing::config_options(
        b"value_secret=fuzz-seed-secret-0001\nvalue_secret_previous=fuzz-seed-secret-0000\n\
          value_secret=\nvalue_secret=short\n20=another-secret-000001",
    );
}
