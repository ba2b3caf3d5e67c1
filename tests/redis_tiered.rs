//! The coordinator with L2 enabled, against a real redis-server: write-through, promotion with
//! the remaining lifetime, delete/clear reaching Redis, and a dead Redis degrading to L1 only.

mod support;

use smartcache::{Cache, Config};
use std::time::{Duration, Instant};
use support::redis_server::RedisServer;

/// The Redis key under which a cache on `disk_path` with the derived prefix stores `key`.
fn stored(disk_path: &str, key: &str) -> Vec<u8> {
    let prefix = smartcache::redis::derived_prefix(std::path::Path::new(disk_path));
    format!("{prefix}{key}").into_bytes()
}

fn config(server: &RedisServer, disk_path: &str) -> Config {
    Config {
        redis_enabled: true,
        redis_url: server.url(0),
        redis_timeout_ms: 100,
        redis_ttl: 600,
        memory_ttl: 300,
        disk_path: disk_path.into(),
        auto_expire_interval: 0,
        ..Config::default()
    }
}

#[test]
fn writes_go_through_and_lower_hits_are_promoted_with_remaining_ttl() {
    let server = RedisServer::start();
    let a = Cache::open(config(&server, "/srv/app")).unwrap();
    let b = Cache::open(config(&server, "/srv/app")).unwrap(); // a second worker
    a.set(b"page", b"<html>", Some(Duration::from_secs(20)))
        .unwrap();
    // Derived prefix from disk_path; explicit ttl applies to Redis too.
    let pttl = server.cmd(&[b"PTTL", &stored("/srv/app", "page")]).int();
    assert!(pttl > 0 && pttl <= 20_000, "{pttl}");
    a.set(b"default-ttl", b"x", None).unwrap();
    let pttl = server
        .cmd(&[b"PTTL", &stored("/srv/app", "default-ttl")])
        .int();
    assert!(
        pttl > 590_000 && pttl <= 600_000,
        "redis_ttl applies: {pttl}"
    );

    // b's L1 misses, L2 hits, and the promoted entry keeps the remaining 20 s, not 300 s.
    let v = b.get(b"page").unwrap().expect("from redis");
    assert_eq!(v.value(), b"<html>");
    let rem = Cache::remaining(&v).expect("has a deadline");
    assert!(
        rem <= Duration::from_secs(20) && rem > Duration::from_secs(15),
        "{rem:?}"
    );
    assert_eq!(b.stats().redis.as_ref().unwrap().hits, 1);
    // Now in b's L1: a second get does not ask Redis.
    b.get(b"page").unwrap().unwrap();
    assert_eq!(b.stats().redis.unwrap().hits, 1);

    let mut buf = [0u8; 16];
    let other = Cache::open(config(&server, "/srv/app")).unwrap();
    assert_eq!(other.get_copy(b"page", &mut buf).unwrap(), Some(6));
    assert_eq!(&buf[..6], b"<html>");
    assert!(Cache::open(config(&server, "/srv/app"))
        .unwrap()
        .exists(b"page")
        .unwrap());

    // delete reaches Redis; clear stays inside the prefix.
    assert!(a.delete(b"default-ttl").unwrap());
    assert_eq!(
        server
            .cmd(&[b"EXISTS", &stored("/srv/app", "default-ttl")])
            .int(),
        0
    );
    server.cmd_str(&["SET", "unrelated", "keep"]).assert_ok();
    let elsewhere = Cache::open(config(&server, "/srv/other")).unwrap();
    elsewhere.set(b"page", b"theirs", None).unwrap();
    a.clear().unwrap();
    assert_eq!(
        server.cmd(&[b"EXISTS", &stored("/srv/app", "page")]).int(),
        0
    );
    assert_eq!(server.cmd_str(&["EXISTS", "unrelated"]).int(), 1);
    assert_eq!(elsewhere.get(b"page").unwrap().unwrap().value(), b"theirs");

    let h = a.health();
    assert!(h.healthy && h.redis.enabled && h.redis.up, "{h:?}");
}

#[test]
fn dead_redis_degrades_to_l1_and_shows_in_health() {
    let mut server = RedisServer::start();
    let cache = Cache::open(config(&server, "/srv/deg")).unwrap();
    cache.set(b"k", b"v", None).unwrap();
    server.stop();
    let t = Instant::now();
    for i in 0..20 {
        let k = format!("k{i}");
        cache.set(k.as_bytes(), b"v", None).unwrap();
        assert_eq!(cache.get(k.as_bytes()).unwrap().unwrap().value(), b"v");
        assert!(cache.get(b"absent").unwrap().is_none());
    }
    // 60 calls: waiting out the 100 ms timeout on each would take 6 s; without the wait they
    // take well under a millisecond each, so 3 s leaves a busy machine room to stall.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let h = cache.health();
    assert!(!h.healthy && h.redis.enabled && !h.redis.up, "{h:?}");
    assert!(h.redis.errors >= 3);
    assert!(
        h.redis
            .last_error
            .as_deref()
            .unwrap()
            .contains(&server.port().to_string()),
        "{h:?}"
    );
    server.restart();
    let t = Instant::now();
    while !cache.health().redis.up {
        // The probe runs every 250 ms; 30 s only spares a busy machine.
        assert!(t.elapsed() < Duration::from_secs(30), "never came back");
        std::thread::sleep(Duration::from_millis(10));
    }
    cache.set(b"after", b"back", None).unwrap();
    assert_eq!(
        server.cmd(&[b"EXISTS", &stored("/srv/deg", "after")]).int(),
        1
    );
}

#[test]
fn bad_redis_url_fails_open_as_config_error() {
    let server = RedisServer::start();
    let mut cfg = config(&server, "/srv/x");
    cfg.redis_url = "redis://host:notaport/0".into();
    let e = Cache::open(cfg).err().expect("refused");
    assert_eq!(e.code(), smartcache::error::status::SZ_ERR_CONFIG);
    assert!(e.to_string().contains("redis_url"), "{e}");
}

#[test]
fn compressed_values_travel_through_redis_as_frames() {
    let server = RedisServer::start();
    let mut cfg = config(&server, "/srv/compress");
    cfg.compression_min_size = 256;
    let a = Cache::open(cfg.clone()).unwrap();
    let doc: Vec<u8> = b"{\"user\": 1, \"items\": [1, 2, 3]} "
        .iter()
        .cycle()
        .take(20_000)
        .copied()
        .collect();
    a.set(b"doc", &doc, Some(Duration::from_secs(30))).unwrap();
    let raw = server
        .cmd(&[b"STRLEN", &stored("/srv/compress", "doc")])
        .int();
    assert!(raw > 0 && raw < 2_000, "stored {raw} bytes for 20000");
    // Another worker misses in L1, reads the frame from Redis, decodes it once.
    let b = Cache::open(cfg).unwrap();
    let v = b.get(b"doc").unwrap().expect("from redis");
    assert_eq!(v.value(), &doc[..]);
    let rem = Cache::remaining(&v).expect("the decoded copy keeps the deadline");
    assert!(
        rem <= Duration::from_secs(30) && rem > Duration::from_secs(25),
        "{rem:?}"
    );
    assert!(b.stats().compression_ratio >= 1.0);
}

#[test]
fn batches_take_one_round_trip_and_fall_back_per_tier() {
    let server = RedisServer::start();
    let a = Cache::open(config(&server, "/srv/batch")).unwrap();
    let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("user:{i}").into_bytes()).collect();
    let vals: Vec<Vec<u8>> = (0..100)
        .map(|i| format!("value {i}").into_bytes())
        .collect();
    let items: Vec<(&[u8], &[u8])> = keys
        .iter()
        .zip(&vals)
        .map(|(k, v)| (&k[..], &v[..]))
        .collect();
    server.cmd(&[b"CONFIG", b"RESETSTAT"]).assert_ok();
    a.set_many(&items, Some(Duration::from_secs(60))).unwrap();
    let pttl = server
        .cmd(&[b"PTTL", &stored("/srv/batch", "user:7")])
        .int();
    assert!(pttl > 55_000 && pttl <= 60_000, "{pttl}");

    // A second worker: L1 empty, so the batch goes to Redis: one MGET for 99 keys (one is
    // already in its L1) plus one key nobody wrote.
    let b = Cache::open(config(&server, "/srv/batch")).unwrap();
    b.set(b"user:0", b"local", None).unwrap();
    let mut wanted: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    wanted.push(b"nobody");
    let calls_before = mget_calls(&server);
    let found = b.get_many(&wanted).unwrap();
    assert_eq!(
        mget_calls(&server) - calls_before,
        1,
        "one round trip for the batch"
    );
    assert_eq!(found[0].as_ref().unwrap().value(), b"local");
    for i in 1..100 {
        assert_eq!(found[i].as_ref().unwrap().value(), &vals[i][..], "key {i}");
    }
    assert!(found[100].is_none());
    // Promoted: asking again costs Redis nothing.
    let calls = mget_calls(&server);
    assert!(b
        .get_many(&wanted[..100])
        .unwrap()
        .iter()
        .all(Option::is_some));
    assert_eq!(mget_calls(&server), calls);

    // Bad input names its index and stores nothing.
    let bad: Vec<(&[u8], &[u8])> = vec![(b"ok", b"v"), (b"", b"v")];
    let e = a.set_many(&bad, None).unwrap_err();
    assert!(e.to_string().contains("keys[1]"), "{e}");
    assert!(!a.exists(b"ok").unwrap());
}

fn mget_calls(server: &RedisServer) -> i64 {
    let info = server.cmd(&[b"INFO", b"commandstats"]).bulk().unwrap();
    let info = String::from_utf8(info).unwrap();
    info.lines()
        .find(|l| l.starts_with("cmdstat_mget:"))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|r| r.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}
