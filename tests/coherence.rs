//! What a get may return once a set or delete has returned: never the value it replaced, in the
//! same cache handle (a get that missed memory and is promoting an older value from a lower tier
//! must not overwrite a newer set) and in another handle on the same disk_path (another worker
//! process of a pre-fork server: its memory tier must not keep serving what was replaced).

mod common;
mod support;

use common::TempDir;
use smartcache::{Cache, Config};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::redis_server::RedisServer;

fn config(dir: &TempDir, memory_capacity: usize) -> Config {
    let mut c = Config::default();
    c.set("disk_enabled", "true").unwrap();
    c.set("disk_path", dir.path().to_str().unwrap()).unwrap();
    c.set("disk_max_size", "4M").unwrap();
    c.set("max_value_size", "4096").unwrap();
    c.set("memory_capacity", &memory_capacity.to_string())
        .unwrap();
    c.set("auto_expire_interval", "0").unwrap();
    c
}

fn version(cache: &Cache, key: &[u8]) -> Option<u64> {
    let blob = cache.get(key).unwrap()?;
    Some(u64::from_le_bytes(blob.value().try_into().unwrap()))
}

/// One thread sets `key` to versions 1, 2, 3..., deleting it after each, and publishes each
/// step once it has returned; readers (on `readers`' handles) check that a get
/// started after a set or delete returned never sees an older version. A get that misses
/// memory (while the key is deleted, or just invalidated by another handle's write) reads the
/// lower tiers, racing the writes: that is where a replaced value could slip back into memory
/// or Redis. Runs for `run_for`, and on until every reader has made enough checks.
fn readers_never_go_back(writer: Arc<Cache>, readers: Vec<Arc<Cache>>, run_for: Duration) {
    const ENOUGH_CHECKS: u64 = 1000;
    const ENOUGH_FOUND: u64 = 100;
    let key = b"versioned";
    // 2v: version v was set; 2v + 1: then deleted.
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Per reader: gets checked, and gets that found a value.
    let progress: Arc<Vec<[AtomicU64; 2]>> =
        Arc::new(readers.iter().map(|_| Default::default()).collect());
    let threads: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(i, cache)| {
            let (published, stop, progress) = (
                Arc::clone(&published),
                Arc::clone(&stop),
                Arc::clone(&progress),
            );
            std::thread::spawn(move || {
                let [checks, found] = &progress[i];
                while !stop.load(SeqCst) {
                    let step = published.load(SeqCst);
                    // The oldest version a get may still return: the one set, or after its
                    // delete only a newer one.
                    let oldest = step / 2 + step % 2;
                    if let Some(got) = version(&cache, key) {
                        assert!(
                            got >= oldest,
                            "reader {i}: got version {got} after step {step} returned"
                        );
                        found.fetch_add(1, SeqCst);
                    }
                    checks.fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    let enough = || {
        progress
            .iter()
            .all(|[c, f]| c.load(SeqCst) >= ENOUGH_CHECKS && f.load(SeqCst) >= ENOUGH_FOUND)
    };
    // A busy machine may starve a reader: the writer goes on until each has done its share.
    let deadline = Instant::now() + run_for;
    let give_up = deadline + Duration::from_secs(60);
    let mut v = 0u64;
    while Instant::now() < deadline || (!enough() && Instant::now() < give_up) {
        v += 1;
        writer.set(key, &v.to_le_bytes(), None).unwrap();
        published.store(2 * v, SeqCst);
        writer.delete(key).unwrap();
        published.store(2 * v + 1, SeqCst);
    }
    stop.store(true, SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    assert!(enough(), "too few reads were checked");
}

#[test]
fn a_promotion_never_overwrites_a_newer_set_in_the_same_cache() {
    let dir = TempDir::new("coherence-promote");
    let cache = Arc::new(Cache::open(config(&dir, 2)).unwrap());
    let readers = vec![Arc::clone(&cache), Arc::clone(&cache)];
    readers_never_go_back(cache, readers, Duration::from_secs(2));
}

#[test]
fn a_promotion_from_redis_never_overwrites_a_newer_set() {
    let server = RedisServer::start();
    let cache = Cache::open(Config {
        redis_enabled: true,
        redis_url: server.url(0),
        redis_timeout_ms: 2000,
        auto_expire_interval: 0,
        ..Config::default()
    })
    .unwrap();
    let cache = Arc::new(cache);
    let readers = vec![Arc::clone(&cache), Arc::clone(&cache)];
    readers_never_go_back(cache, readers, Duration::from_secs(2));
}

#[test]
fn another_handle_on_the_disk_path_sees_each_set_delete_and_clear_at_once() {
    let dir = TempDir::new("coherence-handles");
    // Two workers of one pre-fork server, each with its own memory tier.
    let a = Cache::open(config(&dir, 1000)).unwrap();
    let b = Cache::open(config(&dir, 1000)).unwrap();
    let got = |c: &Cache, k: &[u8]| c.get(k).unwrap().map(|v| v.value().to_vec());
    let copied = |c: &Cache, k: &[u8]| {
        let mut buf = [0u8; 16];
        c.get_copy(k, &mut buf).unwrap().map(|n| buf[..n].to_vec())
    };

    a.set(b"user:1", b"alice", None).unwrap();
    assert_eq!(got(&b, b"user:1").as_deref(), Some(&b"alice"[..]));
    // Now in b's memory: served from there until a's next write.
    assert_eq!(got(&b, b"user:1").as_deref(), Some(&b"alice"[..]));
    let disk_hits = b.stats().disk.unwrap().hits;

    a.set(b"user:1", b"alicia", None).unwrap();
    assert_eq!(copied(&b, b"user:1").as_deref(), Some(&b"alicia"[..]));
    assert_eq!(
        b.stats().disk.unwrap().hits,
        disk_hits + 1,
        "read again from disk"
    );
    assert_eq!(b.stats().memory.invalidations, 1, "b's copy was dropped");
    assert_eq!(
        a.stats().memory.invalidations,
        0,
        "nothing dropped by its own write"
    );

    a.delete(b"user:1").unwrap();
    assert!(!b.exists(b"user:1").unwrap());
    assert_eq!(got(&b, b"user:1"), None);

    a.set_many(&[(b"x", b"1"), (b"y", b"1")], None).unwrap();
    assert_eq!(
        b.get_many(&[b"x", b"y"]).unwrap().iter().flatten().count(),
        2
    );
    a.set_many(&[(b"x", b"2"), (b"y", b"2")], None).unwrap();
    let many = b.get_many(&[b"x", b"y"]).unwrap();
    assert!(many.iter().all(|v| v.as_ref().unwrap().value() == b"2"));

    b.set(b"z", b"from b", None).unwrap();
    assert_eq!(got(&a, b"z").as_deref(), Some(&b"from b"[..]));
    a.clear().unwrap();
    for k in [&b"x"[..], b"y", b"z"] {
        assert_eq!(got(&b, k), None);
    }

    // A writer's own memory is not dropped by its own writes.
    a.set(b"own", b"v", None).unwrap();
    let a_disk_hits = a.stats().disk.unwrap().hits;
    assert_eq!(got(&a, b"own").as_deref(), Some(&b"v"[..]));
    assert_eq!(a.stats().disk.unwrap().hits, a_disk_hits, "a memory hit");
}

#[test]
fn readers_in_other_handles_never_go_back() {
    let dir = TempDir::new("coherence-cross");
    let writer = Arc::new(Cache::open(config(&dir, 1000)).unwrap());
    let readers = (0..2)
        .map(|_| Arc::new(Cache::open(config(&dir, 1000)).unwrap()))
        .collect();
    readers_never_go_back(writer, readers, Duration::from_secs(2));
}

#[test]
fn readers_in_other_handles_never_go_back_with_redis_and_disk() {
    let server = RedisServer::start();
    let dir = TempDir::new("coherence-all-tiers");
    let open = || {
        let mut c = config(&dir, 1000);
        c.redis_enabled = true;
        c.redis_url = server.url(0);
        c.redis_timeout_ms = 2000;
        Arc::new(Cache::open(c).unwrap())
    };
    let writer = open();
    let readers = (0..2).map(|_| open()).collect();
    readers_never_go_back(writer, readers, Duration::from_secs(2));
}

/// The two Redis steps a copy from disk takes (see `readers_never_go_back` with all tiers):
/// it is stored only into an absent key, and withdrawn only while it is still what is there.
#[test]
fn a_copy_promoted_into_redis_never_replaces_nor_withdraws_a_newer_value() {
    use smartcache::redis::RedisTier;
    let server = RedisServer::start();
    let tier = RedisTier::open(&Config {
        redis_enabled: true,
        redis_url: server.url(0),
        redis_timeout_ms: 2000,
        redis_key_prefix: Some("p:".into()),
        ..Config::default()
    })
    .unwrap();
    let value = |t: &RedisTier| t.get(b"k").unwrap().map(|h| h.value);
    // A deadline a minute ahead, absolute as a lower tier's hit carries it.
    let ttl = Some(smartcache::clock::unix_ns() + 60_000_000_000);

    let copy = tier.promote(b"k", b"from disk", 0, ttl).unwrap();
    let copy = copy.expect("stored into an absent key");
    assert_eq!(value(&tier).as_deref(), Some(&b"from disk"[..]));
    assert_eq!(tier.promote(b"k", b"another copy", 0, ttl).unwrap(), None);
    assert_eq!(value(&tier).as_deref(), Some(&b"from disk"[..]));
    assert!(tier.withdraw(b"k", &copy).unwrap());
    assert_eq!(value(&tier), None);

    let copy = tier.promote(b"k", b"from disk", 0, None).unwrap().unwrap();
    tier.set(b"k", b"newer", 0, None).unwrap();
    assert!(!tier.withdraw(b"k", &copy).unwrap(), "a newer value stays");
    assert_eq!(value(&tier).as_deref(), Some(&b"newer"[..]));
    assert!(!tier.withdraw(b"absent", &copy).unwrap());
}
