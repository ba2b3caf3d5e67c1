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

/// One thread sets `key` to versions 1, 2, 3..., deleting it after each, and publishes each step
/// once it has returned; readers (on `readers`' handles) check that a get started after a set
/// or delete returned never sees an older version. A get that misses memory while the key is
/// deleted reads the lower tier, racing the delete: that is where a replaced value could slip
/// back into memory.
fn readers_never_go_back(writer: Arc<Cache>, readers: Vec<Arc<Cache>>, run_for: Duration) {
    let key = b"versioned";
    // 2v: version v was set; 2v + 1: then deleted.
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (i, cache) in readers.into_iter().enumerate() {
        let (published, stop) = (Arc::clone(&published), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            let (mut checks, mut seen) = (0u64, 0u64);
            while !stop.load(SeqCst) {
                let step = published.load(SeqCst);
                // The oldest version a get may still return: the one set, or after its delete
                // only a newer one.
                let oldest = step / 2 + step % 2;
                if let Some(got) = version(&cache, key) {
                    assert!(
                        got >= oldest,
                        "reader {i}: got version {got} after step {step} returned"
                    );
                    seen += 1;
                }
                checks += 1;
            }
            (checks, seen)
        }));
    }
    let deadline = Instant::now() + run_for;
    let mut v = 0u64;
    while Instant::now() < deadline {
        v += 1;
        writer.set(key, &v.to_le_bytes(), None).unwrap();
        published.store(2 * v, SeqCst);
        writer.delete(key).unwrap();
        published.store(2 * v + 1, SeqCst);
    }
    stop.store(true, SeqCst);
    for t in threads {
        let (checks, seen) = t.join().unwrap();
        assert!(
            checks > 1000 && seen > 100,
            "only {checks} reads were checked, {seen} found a value"
        );
    }
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
