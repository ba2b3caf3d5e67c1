//! Cross-host invalidation latency (`redis_invalidation`), against a redis-server this bench
//! starts on a free loopback port.
//!
//! Run: `cargo bench --bench invalidation` (needs redis-server on PATH or $REDIS_SERVER).
//! Two "hosts" (caches with their own memory tiers and connections, one key prefix): for each
//! trial host B first holds the key in its memory tier; then host A deletes it (or sets a new
//! value) and B polls its memory tier (memory only, `get_copy_memory`) until the old value is
//! gone. Printed: the distribution of that time, from the start of A's call and from its
//! return (Redis has answered A), over TRIALS trials per operation. Target: p99 <= 5 ms.

#[path = "../tests/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use redis_server::RedisServer;
use smartcache::tiered::Copied;
use smartcache::{Cache, Config};
use std::time::{Duration, Instant};

const TRIALS: usize = 2000;

fn host(server: &RedisServer) -> Cache {
    Cache::open(Config {
        redis_enabled: true,
        redis_url: server.url(0),
        redis_key_prefix: Some("bench-inval:".into()),
        redis_invalidation: true,
        ..Config::default()
    })
    .expect("open")
}

fn in_memory(cache: &Cache, key: &[u8]) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        cache.get_copy_memory(key, &mut buf, false),
        Ok(Some(Copied::Into(_)))
    )
}

/// Puts `key` in B's memory: a get copies it up from Redis (a retry covers A's own write
/// being reported back to B only after B's first read).
fn cached(b: &Cache, key: &[u8]) {
    let t = Instant::now();
    while !in_memory(b, key) {
        b.get(key).unwrap().expect("in Redis");
        assert!(t.elapsed() < Duration::from_secs(5), "never cached");
    }
}

fn percentiles(name: &str, mut us: Vec<f64>) {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() as f64 * q) as usize).min(us.len() - 1)];
    println!(
        "{name}: n={} p50={:.0} us p90={:.0} us p99={:.0} us p99.9={:.0} us max={:.0} us",
        us.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        us[us.len() - 1]
    );
}

fn main() {
    // `cargo bench` passes --bench; anything else (e.g. `cargo test --benches`) runs nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let server = RedisServer::start();
    let (a, b) = (host(&server), host(&server));
    for op in ["delete", "set"] {
        let (mut from_start, mut from_return) = (Vec::new(), Vec::new());
        for i in 0..TRIALS {
            let key = format!("k{i}");
            let key = key.as_bytes();
            a.set(key, b"old", None).unwrap();
            cached(&b, key);
            let start = Instant::now();
            match op {
                "delete" => drop(a.delete(key).unwrap()),
                _ => a.set(key, b"new", None).unwrap(),
            }
            let returned = Instant::now();
            while in_memory(&b, key) {
                std::hint::spin_loop();
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "never invalidated"
                );
            }
            let gone = Instant::now();
            from_start.push(gone.duration_since(start).as_secs_f64() * 1e6);
            from_return.push(gone.saturating_duration_since(returned).as_secs_f64() * 1e6);
        }
        percentiles(
            &format!("{op} on A -> gone from B's memory (from A's call)"),
            from_start,
        );
        percentiles(
            &format!("{op} on A -> gone from B's memory (from A's return)"),
            from_return,
        );
    }
}
