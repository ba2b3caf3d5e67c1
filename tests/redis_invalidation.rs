//! `redis_invalidation`: several "hosts" (caches with their own memory tiers, disk paths and
//! Redis connections, sharing one key prefix) on one real redis-server started by the test.
//! A delete, set or clear on one reaches the others' memory tiers; while a host's invalidation
//! connection is down (killed with CLIENT KILL TYPE pubsub, Redis killed or paused) its memory
//! serves nothing another host may have replaced; once it is back, memory caches again; and a
//! forked child listens with a connection of its own.

mod common;
mod support;

use common::TempDir;
use smartcache::tiered::Copied;
use smartcache::{Cache, Config};
use std::time::{Duration, Instant};
use support::redis_server::RedisServer;

const PREFIX: &str = "inval:";

/// How long a change may take to reach another host here: the documented bound is one
/// message's delivery (sub-millisecond on loopback, see docs/BENCHMARKS-redis.md); this is
/// generous for a loaded CI machine.
const DELIVERY: Duration = Duration::from_millis(500);

/// A host that lost its connection silently: the heartbeat (1 s) plus redis_timeout_ms, and
/// slack.
const SILENT_FAULT: Duration = Duration::from_millis(3000);

fn host(server: &RedisServer, dir: &TempDir) -> Cache {
    let cfg = Config {
        redis_enabled: true,
        redis_url: server.url(0),
        redis_timeout_ms: 100,
        redis_key_prefix: Some(PREFIX.into()),
        redis_invalidation: true,
        disk_enabled: true,
        disk_path: dir.path().into(),
        disk_max_size: 8 << 20,
        auto_expire_interval: 0,
        ..Config::default()
    };
    let cache = Cache::open(cfg).expect("open");
    // Open waits up to redis_timeout_ms for the subscription; a loaded machine may need longer.
    wait_until("the listener subscribed", Duration::from_secs(5), || {
        listening(&cache)
    });
    cache
}

fn listening(cache: &Cache) -> bool {
    cache
        .stats()
        .redis_invalidation
        .expect("redis_invalidation is on")
        .listening
}

/// What `cache`'s memory tier alone holds for `key` (no lower tier asked).
fn in_memory(cache: &Cache, key: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    match cache
        .get_copy_memory(key.as_bytes(), &mut buf, true)
        .unwrap()
    {
        Some(Copied::Into(n)) => Some(buf[..n].to_vec()),
        Some(Copied::Pinned(b)) => Some(b.value().to_vec()),
        None => None,
    }
}

fn get(cache: &Cache, key: &str) -> Option<Vec<u8>> {
    cache
        .get(key.as_bytes())
        .unwrap()
        .map(|b| b.value().to_vec())
}

fn wait_until(what: &str, max: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < max, "{what}: not within {max:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `key` read through `cache` until it sits in its memory tier (a host's own write is dropped
/// from its memory when Redis reports it back, so the read that copies it up may need a retry).
fn cached(cache: &Cache, key: &str, want: &[u8]) {
    wait_until(&format!("{key} cached in memory"), DELIVERY, || {
        assert_eq!(get(cache, key).as_deref(), Some(want));
        in_memory(cache, key).as_deref() == Some(want)
    });
}

#[test]
fn delete_set_and_clear_on_one_host_reach_the_others_memory() {
    let server = RedisServer::start();
    let dirs = [
        TempDir::new("inv-a"),
        TempDir::new("inv-b"),
        TempDir::new("inv-c"),
    ];
    let [a, b, c] = [0, 1, 2].map(|i| host(&server, &dirs[i]));

    a.set(b"k", b"v1", None).unwrap();
    cached(&b, "k", b"v1");
    cached(&c, "k", b"v1");

    a.delete(b"k").unwrap();
    for other in [&b, &c] {
        wait_until("the delete reaches memory", DELIVERY, || {
            in_memory(other, "k").is_none()
        });
        assert_eq!(get(other, "k"), None, "nothing left in any tier");
    }

    a.set(b"k", b"v2", None).unwrap();
    cached(&b, "k", b"v2");
    a.set(b"k", b"v3", None).unwrap();
    wait_until("the set reaches memory", DELIVERY, || {
        in_memory(&b, "k").is_none()
    });
    assert_eq!(get(&b, "k").as_deref(), Some(&b"v3"[..]));

    for i in 0..20 {
        a.set(format!("m{i}").as_bytes(), b"x", None).unwrap();
    }
    for i in 0..20 {
        cached(&c, &format!("m{i}"), b"x");
    }
    a.clear().unwrap();
    wait_until("the clear reaches memory", DELIVERY, || {
        (0..20).all(|i| in_memory(&c, &format!("m{i}")).is_none())
    });
    assert_eq!(get(&c, "m0"), None);

    // A FLUSHDB by anyone is reported as a flush: memory emptied.
    a.set(b"f", b"1", None).unwrap();
    cached(&b, "f", b"1");
    server.cmd_str(&["FLUSHDB"]).assert_ok();
    wait_until("the flush reaches memory", DELIVERY, || {
        in_memory(&b, "f").is_none()
    });
    let stats = b.stats().redis_invalidation.unwrap();
    assert!(stats.flushes >= 1 && stats.keys >= 4, "{stats:?}");
}

#[test]
fn a_killed_subscriber_connection_empties_memory_until_it_is_back() {
    let server = RedisServer::start();
    let (da, db) = (TempDir::new("kill-a"), TempDir::new("kill-b"));
    let (a, b) = (host(&server, &da), host(&server, &db));
    a.set(b"k", b"old", None).unwrap();
    cached(&b, "k", b"old");

    assert!(listening(&a) && listening(&b));
    let killed = server.cmd_str(&["CLIENT", "KILL", "TYPE", "pubsub"]).int();
    assert_eq!(killed, 2, "both hosts' listeners");
    wait_until(
        "memory emptied once the connection is gone",
        DELIVERY,
        || in_memory(&b, "k").is_none(),
    );

    // While B is not told, what B reads from Redis is served but not kept in memory.
    a.set(b"k", b"new", None).unwrap();
    assert_eq!(get(&b, "k").as_deref(), Some(&b"new"[..]));
    if !listening(&b) {
        assert_eq!(
            in_memory(&b, "k"),
            None,
            "kept in memory while not listening"
        );
    }

    wait_until("the listener reconnects", SILENT_FAULT, || listening(&b));
    assert!(b.stats().redis_invalidation.unwrap().disconnects >= 1);
    cached(&b, "k", b"new");
    a.delete(b"k").unwrap();
    wait_until("changes reach memory again", DELIVERY, || {
        in_memory(&b, "k").is_none()
    });
}

#[test]
fn a_paused_redis_is_noticed_by_the_heartbeat() {
    let server = RedisServer::start();
    let dir = TempDir::new("pause-b");
    let b = host(&server, &dir);
    b.set(b"k", b"v", None).unwrap();
    cached(&b, "k", b"v");

    server.pause();
    let paused = Instant::now();
    wait_until(
        "a silent Redis takes the listener down",
        SILENT_FAULT,
        || !listening(&b),
    );
    assert!(
        paused.elapsed() >= Duration::from_millis(900),
        "down after {:?}: before the heartbeat was due",
        paused.elapsed()
    );
    assert_eq!(in_memory(&b, "k"), None, "memory emptied");
    server.resume();
    wait_until("back once Redis answers", SILENT_FAULT, || listening(&b));
    cached(&b, "k", b"v");
}

#[test]
fn a_killed_redis_empties_memory_and_a_restarted_one_restores_caching() {
    let mut server = RedisServer::start();
    let dir = TempDir::new("restart-b");
    let b = host(&server, &dir);
    b.set(b"k", b"v", None).unwrap();
    cached(&b, "k", b"v");

    server.stop();
    wait_until("EOF takes the listener down", DELIVERY, || !listening(&b));
    assert_eq!(in_memory(&b, "k"), None);
    // Served from disk while Redis is gone, never kept in memory.
    assert_eq!(get(&b, "k").as_deref(), Some(&b"v"[..]));
    assert_eq!(in_memory(&b, "k"), None);

    server.restart();
    wait_until("the listener is back", Duration::from_secs(10), || {
        listening(&b)
    });
    b.set(b"k", b"w", None).unwrap();
    cached(&b, "k", b"w");
}

#[test]
fn a_forked_child_listens_on_a_connection_of_its_own() {
    let server = RedisServer::start();
    let dir = TempDir::new("fork-b");
    let b = host(&server, &dir);
    b.set(b"k", b"v", None).unwrap();
    cached(&b, "k", b"v");

    // SAFETY: the child only uses the cache (built for fork, see smartcache::fork), std
    // and the raw test client, then leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_eq!(
                in_memory(&b, "k"),
                None,
                "the parent's memory is not trusted"
            );
            // The first slow call starts the child's listener.
            assert_eq!(get(&b, "k").as_deref(), Some(&b"v"[..]));
            wait_until("the child's listener", Duration::from_secs(5), || {
                listening(&b)
            });
            cached(&b, "k", b"v");
            let full = format!("{PREFIX}k");
            server.cmd(&[b"SET", full.as_bytes(), b"other"]).assert_ok();
            wait_until("a write reaches the child's memory", DELIVERY, || {
                in_memory(&b, "k").is_none()
            });
        }));
        // SAFETY: _exit ends the child without running the parent's destructors or harness.
        unsafe { libc::_exit(if ok.is_ok() { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {status}"
    );
    // The parent's listener was not disturbed by the child's.
    assert!(listening(&b));
    assert_eq!(
        server.cmd_str(&["CLIENT", "KILL", "TYPE", "pubsub"]).int(),
        1
    );
}

#[test]
fn redis_invalidation_without_redis_is_a_config_error() {
    let cfg = Config {
        redis_invalidation: true,
        ..Config::default()
    };
    let err = Cache::open(cfg).err().expect("refused");
    assert!(err.to_string().contains("redis_invalidation"), "{err}");
}

#[test]
fn closing_a_cache_whose_redis_is_paused_does_not_hang() {
    let server = RedisServer::start();
    let dir = TempDir::new("close-b");
    let b = host(&server, &dir);
    server.pause();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    drop(b);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "close took {:?}",
        t.elapsed()
    );
    server.resume();
}

#[test]
fn a_set_leaves_nothing_in_the_writers_own_memory() {
    let server = RedisServer::start();
    let dir = TempDir::new("own-a");
    let a = host(&server, &dir);
    a.set(b"k", b"v", None).unwrap();
    assert_eq!(
        in_memory(&a, "k"),
        None,
        "dropped at once, not left to race its report"
    );
    assert_eq!(a.stats().memory.sets, 1, "still counted as a set");
    cached(&a, "k", b"v");
}

/// Two hosts writing and reading the same few keys from several threads: once they stop and
/// the last reports are delivered, no memory tier holds anything but what Redis holds (a
/// replaced value kept in memory would be served until memory_ttl).
#[test]
fn racing_writers_and_readers_leave_no_memory_behind_redis() {
    let server = RedisServer::start();
    let (da, db) = (TempDir::new("race-a"), TempDir::new("race-b"));
    let hosts = [host(&server, &da), host(&server, &db)];
    let keys: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
    let until = Instant::now() + Duration::from_millis(1500);
    std::thread::scope(|s| {
        for (h, cache) in hosts.iter().enumerate() {
            for t in 0..3 {
                let keys = &keys;
                s.spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < until {
                        let key = keys[(n as usize * 7 + t) % keys.len()].as_bytes();
                        if n % 3 == 0 {
                            let v = format!("h{h}t{t}n{n}");
                            cache.set(key, v.as_bytes(), None).unwrap();
                        } else {
                            let _ = cache.get(key).unwrap();
                        }
                        n += 1;
                    }
                });
            }
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    for (h, cache) in hosts.iter().enumerate() {
        for key in &keys {
            let Some(mem) = in_memory(cache, key) else {
                continue;
            };
            let full = format!("{PREFIX}{key}");
            let stored = server
                .cmd(&[b"GET", full.as_bytes()])
                .bulk()
                .expect("in Redis");
            assert!(
                stored.ends_with(&mem) && stored.len() == mem.len() + 13,
                "host {h} memory holds {:?} for {key}, Redis {:?}",
                String::from_utf8_lossy(&mem),
                String::from_utf8_lossy(&stored)
            );
        }
    }
}
