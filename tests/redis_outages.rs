//! A set, delete or clear that could not reach Redis (paused with SIGSTOP, so every call times
//! out) never lets Redis serve the replaced value later: not in the process that wrote, not in
//! a new process once the writer has replayed what it missed (within a second or so of Redis
//! answering again), and a clear that could not finish in Redis reports an error.

mod common;
mod support;

use common::TempDir;
use smartcache::{Cache, Config, Error};
use std::process::Command;
use std::time::{Duration, Instant};
use support::redis_server::RedisServer;

const PREFIX: &str = "outage:";

fn config(server_url: String, dir: &str) -> Config {
    Config {
        redis_enabled: true,
        redis_url: server_url,
        redis_timeout_ms: 100,
        redis_key_prefix: Some(PREFIX.into()),
        disk_enabled: true,
        disk_path: dir.into(),
        disk_max_size: 8 << 20,
        auto_expire_interval: 0,
        ..Config::default()
    }
}

/// Redis still holds `key` (under our prefix), as a raw client sees it.
fn redis_has(server: &RedisServer, key: &str) -> bool {
    let full = format!("{PREFIX}{key}");
    server.cmd(&[b"EXISTS", full.as_bytes()]).int() == 1
}

fn wait_until(what: &str, max: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < max, "{what}: not within {max:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `keys` in a new process with a fresh cache (nothing in its memory) and prints them.
fn read_in_a_new_process(url: &str, dir: &str, keys: &[&str]) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "reader_child", "--nocapture", "--test-threads=1"])
        .env("SC_OUTAGE_URL", url)
        .env("SC_OUTAGE_DIR", dir)
        .env("SC_OUTAGE_KEYS", keys.join(","))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // The harness's "test reader_child ... " may precede the first line.
    stdout
        .lines()
        .filter_map(|l| l.find("read ").map(|at| &l[at..]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The child side of `read_in_a_new_process` (does nothing when run as a test on its own).
#[test]
fn reader_child() {
    let (Ok(url), Ok(dir), Ok(keys)) = (
        std::env::var("SC_OUTAGE_URL"),
        std::env::var("SC_OUTAGE_DIR"),
        std::env::var("SC_OUTAGE_KEYS"),
    ) else {
        return;
    };
    let cache = Cache::open(config(url, &dir)).unwrap();
    for key in keys.split(',') {
        let got = cache.get(key.as_bytes()).unwrap();
        let shown = got.map_or("miss".to_string(), |v| {
            String::from_utf8_lossy(v.value()).into_owned()
        });
        println!("read {key}={shown}");
    }
}

fn get(cache: &Cache, key: &str) -> Option<String> {
    let got = cache.get(key.as_bytes()).unwrap();
    got.map(|v| String::from_utf8_lossy(v.value()).into_owned())
}

#[test]
fn writes_that_missed_a_paused_redis_are_not_undone_when_it_returns() {
    let server = RedisServer::start();
    let dir = TempDir::new("outage-writes");
    let dir = dir.path().to_str().unwrap().to_string();
    let url = server.url(0);
    let cache = Cache::open(config(url.clone(), &dir)).unwrap();
    cache.set(b"k1", b"v1-old", None).unwrap();
    cache.set(b"k2", b"v1-old", None).unwrap();
    assert!(redis_has(&server, "k1") && redis_has(&server, "k2"));

    server.pause();
    cache.delete(b"k2").unwrap();
    cache.set(b"k1", b"v2-new", None).unwrap();
    server.resume();
    // Redis is back with the old values of both keys; this process must not serve them.
    assert_eq!(get(&cache, "k2"), None);
    assert_eq!(get(&cache, "k1").as_deref(), Some("v2-new"));
    // The writer replays the deletes as soon as Redis answers again (its next read of Redis,
    // or its background tick once its breaker's probe finds Redis back); a new process then
    // sees the current values.
    wait_until(
        "pending invalidations replayed",
        Duration::from_secs(10),
        || {
            let _ = cache.get(b"k2");
            !redis_has(&server, "k1") && !redis_has(&server, "k2")
        },
    );
    assert_eq!(
        read_in_a_new_process(&url, &dir, &["k1", "k2"]),
        "read k1=v2-new\nread k2=miss"
    );
}

#[test]
fn a_clear_that_could_not_finish_in_redis_is_an_error_and_nothing_cleared_is_read() {
    let server = RedisServer::start();
    let dir = TempDir::new("outage-clear");
    let dir = dir.path().to_str().unwrap().to_string();
    let url = server.url(0);
    let cache = Cache::open(config(url.clone(), &dir)).unwrap();
    let keys: Vec<String> = (0..20_000).map(|i| format!("key-{i}")).collect();
    for chunk in keys.chunks(1000) {
        let items: Vec<(&[u8], &[u8])> = chunk.iter().map(|k| (k.as_bytes(), &b"v"[..])).collect();
        cache.set_many(&items, None).unwrap();
    }
    assert_eq!(server.cmd_str(&["DBSIZE"]).int(), 20_000);

    // A clear against a Redis that stalls past the timeout cannot finish there: an error.
    server.pause();
    let resumer = std::thread::spawn({
        let pid = server.pid();
        move || {
            std::thread::sleep(Duration::from_millis(300));
            // SAFETY: SIGCONT to our own child redis-server.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
        }
    });
    let cleared = cache.clear();
    resumer.join().unwrap();
    assert!(matches!(cleared, Err(Error::Backend(_))), "{cleared:?}");
    // Redis still holds them for now, but no get of this process reads them.
    for key in keys.iter().step_by(97) {
        assert_eq!(get(&cache, key), None, "{key} read back after the clear");
    }
    // The clear is finished in Redis before long, and then nobody reads them either.
    wait_until(
        "the clear finished in Redis",
        Duration::from_secs(10),
        || {
            let _ = cache.get(b"key-0");
            server.cmd_str(&["DBSIZE"]).int() == 0
        },
    );
    assert_eq!(
        read_in_a_new_process(&url, &dir, &["key-0", "key-19999"]),
        "read key-0=miss\nread key-19999=miss"
    );

    // A clear that reaches a live Redis is SZ_OK only with every key gone.
    for chunk in keys.chunks(1000) {
        let items: Vec<(&[u8], &[u8])> = chunk.iter().map(|k| (k.as_bytes(), &b"v"[..])).collect();
        cache.set_many(&items, None).unwrap();
    }
    cache.clear().unwrap();
    assert_eq!(server.cmd_str(&["DBSIZE"]).int(), 0);
}

#[test]
fn writes_that_missed_redis_are_not_read_from_it_by_another_process() {
    let server = RedisServer::start();
    let dir = TempDir::new("outage-other-process");
    let dir = dir.path().to_str().unwrap().to_string();
    let url = server.url(0);
    let writer = Cache::open(config(url.clone(), &dir)).unwrap();
    writer.set(b"k1", b"v1-old", None).unwrap();
    writer.set(b"k2", b"v1-old", None).unwrap();
    let raw = |key: &str| {
        let full = format!("{PREFIX}{key}");
        server.cmd(&[b"GET", full.as_bytes()]).bulk().unwrap()
    };
    let old_frames = [("k1", raw("k1")), ("k2", raw("k2"))];
    server.pause();
    writer.delete(b"k2").unwrap();
    writer.set(b"k1", b"v2-new", None).unwrap();
    // The writer goes away before Redis returns: it cannot replay anything itself. What it
    // owes is in the write log file, for every process of the disk_path.
    drop(writer);
    server.resume();
    // The timed-out commands may still land once Redis runs again (they wait on its sockets);
    // whether they did or not (a dropped connection loses them), Redis may hold the old
    // values: put them back as they were.
    std::thread::sleep(Duration::from_millis(100));
    for (key, frame) in &old_frames {
        let full = format!("{PREFIX}{key}");
        server.cmd(&[b"SET", full.as_bytes(), frame]).assert_ok();
    }
    assert!(redis_has(&server, "k1") && redis_has(&server, "k2"));
    assert_eq!(
        read_in_a_new_process(&url, &dir, &["k1", "k2"]),
        "read k1=v2-new\nread k2=miss"
    );
    // The reader paid the writer's debts before it read Redis.
    assert!(!redis_has(&server, "k2"), "the delete was not replayed");
    // k1 was dropped, then copied from disk again by the reader's miss: the new value.
    assert_ne!(
        raw("k1"),
        old_frames[0].1,
        "the replaced value was not dropped"
    );
}

#[test]
fn a_clear_that_redis_missed_while_down_is_finished_before_another_process_reads_it() {
    let mut server = RedisServer::start();
    let dir = TempDir::new("outage-clear-other-process");
    let dir = dir.path().to_str().unwrap().to_string();
    let url = server.url(0);
    let writer = Cache::open(config(url.clone(), &dir)).unwrap();
    writer.set(b"k1", b"v1-old", None).unwrap();
    // Redis stops answering: the writer's calls time out until its breaker opens.
    server.pause();
    for _ in 0..10 {
        let _ = writer.get(b"other");
        let _ = writer.set(b"other", b"x", None);
    }
    // A clear while Redis is down is Ok (it is owed, and Redis serves nobody meanwhile)
    // or an error; either way nothing cleared may be read from Redis afterwards.
    let _ = writer.clear();
    drop(writer);
    server.resume();
    assert!(redis_has(&server, "k1"));
    assert_eq!(read_in_a_new_process(&url, &dir, &["k1"]), "read k1=miss");
    assert!(
        !redis_has(&server, "k1"),
        "the clear was not finished in Redis"
    );
    let _ = &mut server;
}
