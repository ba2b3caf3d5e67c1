//! A copy of an entry in another tier never outlives the entry's deadline in the tier it came
//! from: disk hits promoted into memory, Redis hits promoted into memory, and disk hits copied
//! into Redis. Each test runs thousands of millisecond-scale TTL trials and reads the copy
//! until it is gone; a read that began after the deadline and still returned the value fails.
//!
//! The deadline is counted from just after the set returned, the latest instant the writer can
//! have fixed it at, so a writer preempted inside the set only makes the check looser; a reader
//! preempted after noting its start time only makes the value older when it is checked.

mod common;
mod support;

use common::TempDir;
use smartcache::redis::RedisTier;
use smartcache::{Cache, Config};
use std::time::{Duration, Instant};
use support::redis_server::RedisServer;

const TRIALS: usize = 2000;

/// A read still returning the value this long after the deadline is a copy that never expires:
/// the trial stops there (and fails) instead of spinning for good.
const GIVE_UP_AFTER: Duration = Duration::from_secs(2);

fn disk_config(dir: &TempDir) -> Config {
    let mut c = Config::default();
    c.set("disk_enabled", "true").unwrap();
    c.set("disk_path", dir.path().to_str().unwrap()).unwrap();
    c.set("disk_max_size", "16M").unwrap();
    c.set("auto_expire_interval", "0").unwrap();
    c.set("memory_capacity", "100000").unwrap();
    c
}

fn with_redis(mut c: Config, server: &RedisServer) -> Config {
    c.redis_enabled = true;
    c.redis_url = server.url(0);
    c.redis_timeout_ms = 2000;
    c.redis_key_prefix = Some("exact:".into());
    c
}

/// Runs the trials: `set` stores key `i` for a TTL of 1 to 3 ms, `copy` makes the copy under
/// test, `read` reads it (true: the value came back). Returns how late each late read began,
/// by trial.
fn late_reads(
    mut set: impl FnMut(&[u8], Duration),
    mut copy: impl FnMut(&[u8]),
    mut read: impl FnMut(&[u8]) -> bool,
) -> Vec<(usize, Duration)> {
    let mut late = Vec::new();
    for i in 0..TRIALS {
        let key = format!("trial-{i}");
        let ttl = Duration::from_millis(1 + (i % 3) as u64);
        set(key.as_bytes(), ttl);
        let deadline = Instant::now() + ttl;
        copy(key.as_bytes());
        loop {
            let began = Instant::now();
            if !read(key.as_bytes()) {
                break;
            }
            if began >= deadline {
                late.push((i, began - deadline));
                if began - deadline > GIVE_UP_AFTER {
                    break;
                }
            }
        }
    }
    late
}

fn assert_none_late(what: &str, late: &[(usize, Duration)]) {
    let worst = late.iter().map(|(_, d)| *d).max();
    assert!(
        late.is_empty(),
        "{what}: {} reads in {TRIALS} trials returned a value after its deadline, the worst {:?} \
         late (first trials: {:?})",
        late.len(),
        worst,
        &late[..late.len().min(5)]
    );
}

#[test]
fn disk_hits_promoted_into_memory_never_outlive_their_deadline() {
    let dir = TempDir::new("exact-disk-memory");
    let writer = Cache::open(disk_config(&dir)).unwrap();
    // Another handle on the same file: its memory misses, reads the disk and promotes.
    let reader = Cache::open(disk_config(&dir)).unwrap();
    let late = late_reads(
        |k, ttl| writer.set(k, b"v", Some(ttl)).unwrap(),
        // The reader's first get promotes.
        |_| {},
        |k| reader.get(k).unwrap().is_some(),
    );
    assert_none_late("disk -> memory", &late);
}

#[test]
fn redis_hits_promoted_into_memory_never_outlive_their_deadline() {
    let server = RedisServer::start();
    let redis_only = || {
        let mut c = with_redis(Config::default(), &server);
        c.auto_expire_interval = 0;
        c.memory_capacity = 100_000;
        c
    };
    let writer = Cache::open(redis_only()).unwrap();
    // A second handle (another worker): its memory misses, reads Redis and promotes.
    let reader = Cache::open(redis_only()).unwrap();
    let late = late_reads(
        |k, ttl| writer.set(k, b"v", Some(ttl)).unwrap(),
        // The reader's first get promotes.
        |_| {},
        |k| reader.get(k).unwrap().is_some(),
    );
    assert_none_late("redis -> memory", &late);
}

#[test]
fn disk_hits_copied_into_redis_never_outlive_their_deadline() {
    let server = RedisServer::start();
    let dir = TempDir::new("exact-disk-redis");
    // The writer reaches the disk only, so Redis gets the entry from the reader's copy.
    let writer = Cache::open(disk_config(&dir)).unwrap();
    let reader = Cache::open(with_redis(disk_config(&dir), &server)).unwrap();
    let redis = RedisTier::open(&with_redis(disk_config(&dir), &server)).unwrap();
    let late = late_reads(
        |k, ttl| writer.set(k, b"v", Some(ttl)).unwrap(),
        // Memory misses, Redis misses, the disk hits: copied into Redis (and memory).
        |k| drop(reader.get(k).unwrap()),
        |k| redis.get(k).unwrap().is_some(),
    );
    assert_none_late("disk -> redis", &late);
}
