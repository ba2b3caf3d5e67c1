//! `redis+sentinel://` against real processes: a master, a replica and three Sentinels on
//! loopback ports. Under load, `SENTINEL FAILOVER` promotes the replica, then the new master
//! is killed and the Sentinels promote the old one back: the cache follows each time, with
//! no wrong value read and errors only around the switches.

mod support;

use smartcache::redis::RedisTier;
use smartcache::Config;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::redis_server::{RedisServer, Resp};
use support::sentinel::{try_cmd, Sentinel};

const MASTER: &str = "mymaster";

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    eprintln!("waiting for: {what}");
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

fn role(port: u16) -> Option<String> {
    match try_cmd(port, &["ROLE"])? {
        Resp::Array(Some(parts)) => String::from_utf8(parts.first()?.bulk()?).ok(),
        _ => None,
    }
}

/// The value written for `key` at `version`: names its key, so a value read under another
/// key, or a damaged one, is caught.
fn value_for(key: &str, version: u64) -> Vec<u8> {
    format!("{key}={version};{}", "x".repeat(64)).into_bytes()
}

fn version_of(key: &str, value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let (k, rest) = text.split_once('=')?;
    let (v, pad) = rest.split_once(';')?;
    (k == key && pad == "x".repeat(64)).then(|| v.parse().ok())?
}

#[derive(Default)]
struct Load {
    stop: AtomicBool,
    ok: AtomicU64,
    /// Calls that went to Redis and failed.
    errors: AtomicU64,
    /// Calls not sent: the breaker was open.
    skipped: AtomicU64,
    wrong: AtomicU64,
    /// Reads that returned an older version than the thread last wrote and had read back:
    /// an acknowledged write the old master lost when it was demoted (Redis replicates
    /// asynchronously). Reported, not a wrong value.
    older: AtomicU64,
}

impl Load {
    fn run(&self, tier: &RedisTier, thread: usize) {
        let keys: Vec<String> = (0..50).map(|i| format!("t{thread}k{i}")).collect();
        let mut version = 0u64;
        let mut i = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            let key = &keys[i % keys.len()];
            i += 1;
            version += 1;
            match tier.set(key.as_bytes(), &value_for(key, version), 0, None) {
                Ok(()) => {}
                Err(e) => {
                    self.failed(&e);
                    continue;
                }
            }
            match tier.get(key.as_bytes()) {
                Ok(Some(hit)) => match version_of(key, &hit.value) {
                    Some(v) if v == version => {
                        self.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(v) if v < version => {
                        self.older.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        eprintln!(
                            "WRONG value for {key}: {:?}",
                            String::from_utf8_lossy(&hit.value)
                        );
                        self.wrong.fetch_add(1, Ordering::Relaxed);
                    }
                },
                Ok(None) => {
                    self.older.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self.failed(&e),
            }
        }
    }

    /// Counts a failed call; a call skipped by the open breaker returns at once, so the
    /// thread pauses a little instead of spinning.
    fn failed(&self, e: &smartcache::Error) {
        if e.to_string().contains("circuit open") {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn progress_after(&self, what: &str, n: u64) {
        let start = self.ok.load(Ordering::Relaxed);
        let took = wait_until(what, Duration::from_secs(30), || {
            self.ok.load(Ordering::Relaxed) >= start + n
        });
        eprintln!("{what}: {n} good round trips in {took:?} ({self:?})");
    }
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn sentinel_failover_under_load_is_followed_without_wrong_values() {
    let first = RedisServer::start();
    let second_port = first.port().to_string();
    let mut second = RedisServer::start_with(&["--replicaof", "127.0.0.1", &second_port]);
    let sentinels: Vec<Sentinel> = (0..3)
        .map(|_| Sentinel::start(MASTER, first.port()))
        .collect();
    // The failover needs a replica the Sentinels know, and the kill needs them to know each
    // other (a quorum of 2 and a leader elected by a majority).
    wait_until(
        "sentinels know the replica and each other",
        Duration::from_secs(30),
        || {
            sentinels.iter().all(|s| {
                let info = match s.cmd(&["SENTINEL", "master", MASTER]) {
                    Resp::Array(Some(fields)) => fields,
                    _ => return false,
                };
                let field = |name: &str| {
                    info.chunks(2)
                        .find(|kv| kv[0] == Resp::Bulk(Some(name.as_bytes().to_vec())))
                        .and_then(|kv| kv[1].bulk())
                        .map(|v| String::from_utf8_lossy(&v).into_owned())
                };
                field("num-slaves").as_deref() == Some("1")
                    && field("num-other-sentinels").as_deref() == Some("2")
            })
        },
    );
    let hosts: Vec<String> = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let url = format!("redis+sentinel://{}/{MASTER}", hosts.join(","));
    let cfg = Config {
        redis_enabled: true,
        redis_url: url.clone(),
        redis_timeout_ms: 300,
        redis_pool_size: 4,
        redis_key_prefix: Some("sent:".into()),
        ..Config::default()
    };
    let tier = RedisTier::open(&cfg).unwrap();
    assert!(tier.is_up(), "{:?}", tier.stats());
    assert_eq!(tier.stats().url, format!("{url}/0"));
    tier.set(b"where", b"first", 0, None).unwrap();
    assert!(first.cmd(&[b"GET", b"sent:where"]).bulk().is_some());

    let load = Load::default();
    std::thread::scope(|s| {
        // A failed wait below must stop the load, or the scope would wait for it forever.
        let _stop = StopOnDrop(&load.stop);
        for t in 0..4 {
            let (tier, load) = (&tier, &load);
            s.spawn(move || load.run(tier, t));
        }
        load.progress_after("load runs", 200);

        // 1. An ordered failover: the replica is promoted, the old master demoted.
        let t = Instant::now();
        wait_until(
            "SENTINEL FAILOVER accepted",
            Duration::from_secs(20),
            || sentinels[0].cmd(&["SENTINEL", "FAILOVER", MASTER]) == Resp::Simple("OK".into()),
        );
        wait_until(
            "sentinels name the new master",
            Duration::from_secs(30),
            || {
                sentinels
                    .iter()
                    .all(|s| s.master_port(MASTER) == Some(second.port()))
            },
        );
        wait_until("the new master is master", Duration::from_secs(30), || {
            role(second.port()).as_deref() == Some("master")
        });
        // The tier asks the Sentinels every 500 ms: its writes move to the new master soon
        // after the Sentinels name it, before the old master is even reconfigured.
        let followed = wait_until(
            "writes go to the new master",
            Duration::from_secs(5),
            || {
                tier.set(b"where", b"second", 0, None).is_ok()
                    && second
                        .cmd(&[b"GET", b"sent:where"])
                        .bulk()
                        .is_some_and(|v| v.ends_with(b"second"))
            },
        );
        load.progress_after("load goes on after the failover", 500);
        eprintln!(
            "followed the failover in {:?} ({followed:?} after the Sentinels named the new \
             master): {load:?}",
            t.elapsed()
        );

        // 2. The new master dies: the Sentinels agree it is down and promote the old one,
        // which by now replicates from it.
        wait_until(
            "the old master replicates the new one",
            Duration::from_secs(30),
            || {
                role(first.port()).as_deref() == Some("slave")
                    && sentinels.iter().all(|s| {
                        matches!(s.cmd(&["SENTINEL", "replicas", MASTER]),
                        Resp::Array(Some(r)) if r.len() == 1)
                    })
            },
        );
        // Let the old master catch up before the kill, so what the load wrote is there.
        std::thread::sleep(Duration::from_millis(1500));
        let t = Instant::now();
        second.stop();
        let promoted = wait_until(
            "sentinels promote the old master",
            Duration::from_secs(60),
            || {
                sentinels
                    .iter()
                    .all(|s| s.master_port(MASTER) == Some(first.port()))
                    && role(first.port()).as_deref() == Some("master")
            },
        );
        load.progress_after("load goes on after the kill", 500);
        let outage = t.elapsed();
        eprintln!("followed the kill in {outage:?} (promotion took {promoted:?})");
        // Down for the Sentinels' own detection and election (down-after 1 s), then back
        // within a few probe intervals.
        assert!(
            outage < promoted + Duration::from_secs(3),
            "{outage:?} vs {promoted:?}"
        );
        load.stop.store(true, Ordering::Relaxed);
    });
    eprintln!("{load:?}, stats {:?}", tier.stats());
    assert_eq!(load.wrong.load(Ordering::Relaxed), 0, "wrong values read");
    let ok = load.ok.load(Ordering::Relaxed);
    let errors = load.errors.load(Ordering::Relaxed);
    // Errors only around the two switches: a few calls fail until the breaker opens (3 in a
    // row per thread at most, plus the probe's), then calls are skipped until it closes.
    assert!(errors <= 50, "{errors} errors for {ok} good round trips");
    assert!(tier.is_up());
    tier.set(b"where", b"first again", 0, None).unwrap();
    assert!(first
        .cmd(&[b"GET", b"sent:where"])
        .bulk()
        .is_some_and(|v| v.ends_with(b"first again")));
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok {} errors {} skipped {} wrong {} older {}",
            self.ok.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.wrong.load(Ordering::Relaxed),
            self.older.load(Ordering::Relaxed)
        )
    }
}

#[test]
fn sentinel_that_does_not_know_the_master_is_a_clear_error() {
    let master = RedisServer::start();
    let sentinel = Sentinel::start(MASTER, master.port());
    let cfg = Config {
        redis_enabled: true,
        redis_url: format!("redis+sentinel://127.0.0.1:{}/othermaster", sentinel.port),
        redis_timeout_ms: 300,
        ..Config::default()
    };
    let tier = RedisTier::open(&cfg).unwrap();
    assert!(!tier.is_up());
    let e = tier.stats().tier.last_error.unwrap();
    assert!(e.contains("othermaster") && e.contains("nil"), "{e}");
    // No Sentinel answering at all: bounded, and says which.
    let dead = support::redis_server::free_port();
    let cfg = Config {
        redis_url: format!("redis+sentinel://127.0.0.1:{dead}/{MASTER}"),
        ..cfg
    };
    let t = Instant::now();
    let tier = RedisTier::open(&cfg).unwrap();
    assert!(t.elapsed() < Duration::from_secs(2));
    let e = tier.stats().tier.last_error.unwrap();
    assert!(
        e.contains("no Sentinel") && e.contains(&dead.to_string()),
        "{e}"
    );
}
