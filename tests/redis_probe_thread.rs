//! The breaker's probe thread is joined when the tier is dropped: none is left behind, whether
//! Redis was up, down, or paused mid-probe. Alone in its own binary so no other test's tiers
//! are counted.

mod support;

use smartcache::redis::RedisTier;
use smartcache::Config;
use std::time::{Duration, Instant};
use support::redis_server::{free_port, RedisServer};

/// Threads of this process named like the probe (comm is cut to 15 bytes).
fn probe_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "smartcache-redi")
        .count()
}

/// Waits for the count to settle: a new thread names itself once it runs, and a joined one
/// leaves /proc a moment later; on a busy machine either can take a while, so the wait is long
/// (a leaked or missing thread never settles).
fn expect_probe_threads(n: usize) {
    let t = Instant::now();
    while probe_threads() != n {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{} probe threads, expected {n}",
            probe_threads()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn config(url: String) -> Config {
    Config {
        redis_enabled: true,
        redis_url: url,
        redis_timeout_ms: 100,
        redis_key_prefix: Some("thr:".into()),
        ..Config::default()
    }
}

#[test]
fn probe_threads_are_joined_on_drop() {
    assert_eq!(probe_threads(), 0);
    let server = RedisServer::start();
    let up = RedisTier::open(&config(server.url(0))).unwrap();
    let down = RedisTier::open(&config(format!("redis://127.0.0.1:{}/0", free_port()))).unwrap();
    assert!(up.is_up() && !down.is_up());
    expect_probe_threads(2);

    // A tier whose probe is blocked on a paused server when it is dropped.
    let paused = RedisTier::open(&config(server.url(0))).unwrap();
    server.pause();
    for _ in 0..3 {
        let _ = paused.get(b"k");
    }
    assert!(!paused.is_up());
    std::thread::sleep(Duration::from_millis(300)); // the first probe is now in flight
    expect_probe_threads(3);

    // Each drop joins its probe at once, or after at most the in-flight probe's timeout
    // (100 ms); one that slept out the probe interval (250 ms) or hung would be slower. A busy
    // machine can stall any one drop, so the tight bound is on the median of the three, and
    // each alone must only not hang.
    let mut took: Vec<Duration> = [up, down, paused]
        .into_iter()
        .map(|tier| {
            let t = Instant::now();
            drop(tier);
            t.elapsed()
        })
        .collect();
    assert!(
        took.iter().all(|d| *d < Duration::from_secs(2)),
        "drops took {took:?}"
    );
    took.sort();
    assert!(took[1] < Duration::from_millis(200), "drops took {took:?}");
    server.resume();
    // Joined threads vanish from /proc a moment after join returns; a leaked one never would.
    expect_probe_threads(0);
}
