//! RedisTier against a real redis-server: round trips, TTLs, prefixes, batches, foreign values.

mod support;

use smartcache::redis::{RedisTier, SetItem};
use smartcache::tier::flags;
use smartcache::Config;
use std::time::Duration;
use support::redis_server::{RedisServer, Resp};

fn config(server: &RedisServer, prefix: &str) -> Config {
    Config {
        redis_enabled: true,
        redis_url: server.url(0),
        redis_timeout_ms: 500,
        redis_pool_size: 4,
        redis_key_prefix: Some(prefix.to_string()),
        ..Config::default()
    }
}

fn full_key(prefix: &str, key: &[u8]) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    k.extend_from_slice(key);
    k
}

#[test]
fn binary_keys_and_values_round_trip() {
    let server = RedisServer::start();
    let tier = RedisTier::open(&config(&server, "t:")).unwrap();
    assert!(tier.is_up());
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"plain".to_vec(), b"value".to_vec()),
        (b"empty-value".to_vec(), Vec::new()),
        (
            b"\x00key\x00with\r\nnul".to_vec(),
            b"\x00\x01\x00\xff\r\n".to_vec(),
        ),
        (vec![0xff, 0xfe, 0x80], b"non-utf8 key".to_vec()),
        (b"one-mebibyte".to_vec(), big),
    ];
    for (k, v) in &cases {
        tier.set(k, v, 0, None).unwrap();
    }
    for (k, v) in &cases {
        let hit = tier.get(k).unwrap().expect("hit");
        assert_eq!(&hit.value, v, "key {k:?}");
        assert_eq!(hit.flags, 0);
        assert_eq!(hit.remaining(), None);
        // Stored under prefix + exact key bytes, framed.
        let raw = server.cmd(&[b"GET", &full_key("t:", k)]).bulk().unwrap();
        assert_eq!(raw.len(), v.len() + 13);
        assert_eq!(&raw[..3], b"\xffSC");
    }
    // Flags survive.
    tier.set(b"c", b"lz4bytes", flags::COMPRESSED, None)
        .unwrap();
    assert_eq!(tier.get(b"c").unwrap().unwrap().flags, flags::COMPRESSED);
    assert_eq!(tier.get(b"absent").unwrap(), None);
    let s = tier.stats();
    assert_eq!(s.tier.sets, 6);
    assert_eq!(s.tier.hits, 6);
    assert_eq!(s.tier.misses, 1);
    assert_eq!(s.tier.errors, 0);
}

#[test]
fn ttl_is_set_with_px_and_remaining_comes_back() {
    let server = RedisServer::start();
    let tier = RedisTier::open(&config(&server, "ttl:")).unwrap();
    let before_set = std::time::Instant::now();
    tier.set(b"k", b"v", 0, Some(Duration::from_secs(10)))
        .unwrap();
    let pttl = server.cmd(&[b"PTTL", b"ttl:k"]).int();
    assert!(pttl > 0 && pttl <= 10_000, "PTTL {pttl}");
    let rem = tier
        .get(b"k")
        .unwrap()
        .unwrap()
        .remaining()
        .expect("has expiry");
    // At least what the time since the set leaves (Redis counts in whole milliseconds), however
    // long a busy machine stalled between the set and the get.
    let aged = before_set.elapsed();
    assert!(
        rem + aged + Duration::from_millis(2) >= Duration::from_secs(10)
            && rem <= Duration::from_secs(10),
        "{rem:?} after {aged:?}"
    );
    // No TTL: no expiry on the Redis key, and overwriting a TTL'd key clears it.
    tier.set(b"k", b"v2", 0, None).unwrap();
    assert_eq!(server.cmd(&[b"PTTL", b"ttl:k"]).int(), -1);
    // A short TTL really expires.
    tier.set(b"short", b"v", 0, Some(Duration::from_millis(50)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(tier.get(b"short").unwrap(), None);
    assert_eq!(server.cmd(&[b"EXISTS", b"ttl:short"]).int(), 0);
}

#[test]
fn clear_removes_only_our_prefix_and_delete_reports_existence() {
    let server = RedisServer::start();
    // A prefix full of glob metacharacters must match only itself.
    let tier = RedisTier::open(&config(&server, "app[1]*?:")).unwrap();
    for i in 0..1200 {
        tier.set(format!("k{i}").as_bytes(), b"v", 0, None).unwrap();
    }
    server
        .cmd_str(&["SET", "foreign:key", "keep me"])
        .assert_ok();
    server
        .cmd_str(&["SET", "app1x:k1", "glob lookalike"])
        .assert_ok();
    server
        .cmd_str(&["SET", "app[1]*?", "prefix without colon"])
        .assert_ok();
    assert!(tier.delete(b"k0").unwrap());
    assert!(!tier.delete(b"k0").unwrap());
    tier.clear().unwrap();
    assert_eq!(server.cmd_str(&["DBSIZE"]).int(), 3);
    assert_eq!(
        server.cmd_str(&["GET", "foreign:key"]).bulk().unwrap(),
        b"keep me"
    );
    assert_eq!(tier.get(b"k5").unwrap(), None);
}

/// With a small max_value_size a SCAN batch is held to a small budget, so clear asks for few
/// keys per batch: every key goes however long the keys are, and nothing else.
#[test]
fn clear_with_a_tiny_max_value_size_removes_every_long_key_in_small_batches() {
    let server = RedisServer::start();
    let mut c = config(&server, "tiny:");
    c.max_value_size = 1;
    let tier = RedisTier::open(&c).unwrap();
    let long = vec![b'x'; smartcache::config::MAX_KEY_LEN - 8];
    for i in 0..200u32 {
        let mut k = long.clone();
        k.extend_from_slice(&i.to_be_bytes());
        tier.set(&k, b"v", 0, None).unwrap();
    }
    server.cmd_str(&["SET", "other:key", "keep"]).assert_ok();
    assert_eq!(server.cmd_str(&["DBSIZE"]).int(), 201);
    tier.clear().unwrap();
    assert_eq!(server.cmd_str(&["DBSIZE"]).int(), 1);
    assert_eq!(
        server.cmd_str(&["GET", "other:key"]).bulk().unwrap(),
        b"keep"
    );
}

#[test]
fn two_tiers_with_one_prefix_share_entries_other_prefixes_do_not() {
    let server = RedisServer::start();
    let a = RedisTier::open(&config(&server, "shared:")).unwrap();
    let b = RedisTier::open(&config(&server, "shared:")).unwrap();
    let other = RedisTier::open(&config(&server, "other:")).unwrap();
    a.set(b"k", b"from a", 0, None).unwrap();
    assert_eq!(b.get(b"k").unwrap().unwrap().value, b"from a");
    assert_eq!(other.get(b"k").unwrap(), None);
    other.clear().unwrap();
    assert!(b.get(b"k").unwrap().is_some(), "other's clear left ours");

    // Derived prefixes: same disk_path shares, a different one does not.
    let derived = |path: &str| {
        let mut c = config(&server, "");
        c.redis_key_prefix = None;
        c.disk_path = path.into();
        RedisTier::open(&c).unwrap()
    };
    let (w1, w2, app2) = (
        derived("/srv/app1/cache"),
        derived("/srv/app1/cache/"),
        derived("/srv/app2/cache"),
    );
    let want = smartcache::redis::derived_prefix(std::path::Path::new("/srv/app1/cache"));
    assert_eq!(w1.key_prefix(), want.as_bytes());
    w1.set(b"page", b"html", 0, None).unwrap();
    assert_eq!(w2.get(b"page").unwrap().unwrap().value, b"html");
    assert_eq!(app2.get(b"page").unwrap(), None);
}

/// With prefixes made of the path as text, `/x` gave `sc:/x:` and `/x:y` gave `sc:/x:y:`: the
/// first cache's key `y:k` was the second's `k`, and the first's clear deleted the second's.
#[test]
fn derived_prefixes_of_x_and_x_colon_y_share_no_keys() {
    let server = RedisServer::start();
    let open = |path: &str| {
        let mut c = config(&server, "");
        c.redis_key_prefix = None;
        c.disk_path = path.into();
        RedisTier::open(&c).unwrap()
    };
    let (x, xy) = (open("/x"), open("/x:y"));
    x.set(b"y:k", b"from /x", 0, None).unwrap();
    xy.set(b"k", b"from /x:y", 0, None).unwrap();
    assert_eq!(server.cmd(&[b"DBSIZE"]).int(), 2, "two distinct Redis keys");
    assert_eq!(x.get(b"y:k").unwrap().unwrap().value, b"from /x");
    assert_eq!(xy.get(b"k").unwrap().unwrap().value, b"from /x:y");
    assert_eq!(xy.get(b"y:k").unwrap(), None);

    x.clear().unwrap();
    assert_eq!(x.get(b"y:k").unwrap(), None);
    assert_eq!(
        xy.get(b"k").unwrap().unwrap().value,
        b"from /x:y",
        "x's clear left x:y's key"
    );
    x.set(b"y:k", b"again", 0, None).unwrap();
    xy.clear().unwrap();
    assert_eq!(
        x.get(b"y:k").unwrap().unwrap().value,
        b"again",
        "x:y's clear left x's key"
    );
}

#[test]
fn get_many_is_one_mget_and_set_many_pipelines() {
    let server = RedisServer::start();
    let tier = RedisTier::open(&config(&server, "b:")).unwrap();
    let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("key{i}").into_bytes()).collect();
    let vals: Vec<Vec<u8>> = (0..100).map(|i| vec![i as u8; i]).collect();
    let items: Vec<SetItem<'_>> = keys
        .iter()
        .zip(&vals)
        .enumerate()
        .map(|(i, (k, v))| {
            let ttl = (i % 2 == 0).then(|| Duration::from_secs(60));
            (k.as_slice(), v.as_slice(), 0, ttl)
        })
        .collect();
    tier.set_many(&items).unwrap();
    assert_eq!(tier.stats().tier.sets, 100);
    assert!(server.cmd(&[b"PTTL", b"b:key0"]).int() > 0);
    assert_eq!(server.cmd(&[b"PTTL", b"b:key1"]).int(), -1);

    let before = stat(&server, "total_commands_processed");
    let mut query: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    query.push(b"missing");
    let got = tier.get_many(&query).unwrap();
    let after = stat(&server, "total_commands_processed");
    // One MGET, plus the INFO call that read `before`.
    assert_eq!(after - before, 2, "get_many must be a single command");
    assert_eq!(got.len(), 101);
    for (i, g) in got.iter().take(100).enumerate() {
        let hit = g.as_ref().expect("hit");
        assert_eq!(hit.value, vals[i]);
        assert_eq!(hit.remaining().is_some(), i % 2 == 0);
    }
    assert_eq!(got[100], None);
    assert_eq!(tier.get_many(&[]).unwrap(), vec![]);
}

fn stat(server: &RedisServer, field: &str) -> u64 {
    let info = server.cmd_str(&["INFO", "stats"]).bulk().unwrap();
    let info = String::from_utf8(info).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} not in INFO"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn foreign_values_under_the_prefix_are_misses_and_errors() {
    let server = RedisServer::start();
    let tier = RedisTier::open(&config(&server, "f:")).unwrap();
    server
        .cmd_str(&["SET", "f:text", "hello world, not framed"])
        .assert_ok();
    server.cmd_str(&["SET", "f:short", "x"]).assert_ok();
    server
        .cmd(&[
            b"SET",
            b"f:badver",
            b"\xffSC\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00data",
        ])
        .assert_ok();
    server.cmd_str(&["RPUSH", "f:list", "a"]);
    tier.set(b"good", b"fine", 0, None).unwrap();
    assert_eq!(tier.get(b"text").unwrap(), None);
    assert_eq!(tier.get(b"short").unwrap(), None);
    assert_eq!(tier.get(b"badver").unwrap(), None);
    let s = tier.stats();
    assert_eq!(s.tier.errors, 3);
    assert!(
        s.tier
            .last_error
            .as_deref()
            .unwrap()
            .contains("frame version"),
        "{s:?}"
    );
    // A wrong-type key is an error reply: an Err, counted, but Redis is fine.
    let e = tier.get(b"list").unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    assert!(tier.is_up());
    // In a batch, the foreign ones are misses and the good one a hit.
    let got = tier
        .get_many(&[b"text".as_slice(), b"good", b"short"])
        .unwrap();
    assert_eq!(got[0], None);
    assert_eq!(got[1].as_ref().unwrap().value, b"fine");
    assert_eq!(got[2], None);
    assert_eq!(tier.stats().tier.errors, 6);
    assert_eq!(
        server.cmd_str(&["GET", "f:text"]),
        Resp::Bulk(Some(b"hello world, not framed".to_vec())),
        "a foreign value is never overwritten by a read"
    );
}

#[test]
fn shared_across_threads() {
    let server = RedisServer::start();
    let mut cfg = config(&server, "mt:");
    cfg.redis_pool_size = 3;
    let tier = RedisTier::open(&cfg).unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let tier = &tier;
            s.spawn(move || {
                for i in 0..200 {
                    let k = format!("{t}:{i}");
                    tier.set(k.as_bytes(), k.as_bytes(), 0, None).unwrap();
                    assert_eq!(tier.get(k.as_bytes()).unwrap().unwrap().value, k.as_bytes());
                }
            });
        }
    });
    let s = tier.stats();
    assert_eq!((s.tier.sets, s.tier.hits, s.tier.errors), (1600, 1600, 0));
    assert!(s.open_connections <= 3, "{s:?}");
}

#[test]
fn pool_lends_at_most_size_connections_and_drops_broken_ones() {
    use smartcache::redis::conn::ConnErrorKind;
    use smartcache::redis::pool::Pool;
    use smartcache::redis::RedisUrl;
    use std::time::Instant;

    let server = RedisServer::start();
    let timeout = Duration::from_millis(100);
    let pool = Pool::new(RedisUrl::parse(&server.url(0)).unwrap(), timeout, 1);
    let held = pool.get(Instant::now() + timeout).unwrap();
    assert!(!held.reused);
    // The wait for a free connection lasts until the deadline: never less, and not much more.
    // A busy machine can stall any one wait past "not much more", so that bound need only
    // hold for one of three waits (a wait that overruns its deadline does so every time).
    let mut waits = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let e = pool
            .get(Instant::now() + timeout)
            .err()
            .expect("only one connection");
        let took = t.elapsed();
        assert_eq!(e.kind, ConnErrorKind::PoolBusy, "{e}");
        assert!(took >= timeout - Duration::from_millis(5), "{took:?}");
        waits.push(took);
        if took < timeout * 2 {
            break;
        }
    }
    assert!(waits.iter().any(|w| *w < timeout * 2), "{waits:?}");
    drop(held);
    let mut again = pool.get(Instant::now() + timeout).unwrap();
    assert!(again.reused, "a healthy connection goes back to the pool");
    again.mark_broken();
    drop(again);
    assert_eq!(pool.open_connections(), 0, "a broken connection is dropped");
    let fresh = pool.get(Instant::now() + timeout).unwrap();
    assert!(!fresh.reused, "and replaced lazily by a new dial");
}

#[test]
fn a_host_name_is_looked_up_and_its_addresses_tried_in_turn() {
    use smartcache::redis::conn::Reply;
    use smartcache::redis::pool::Pool;
    use smartcache::redis::RedisUrl;
    use std::time::Instant;

    // "localhost" may resolve to ::1 first, where this server (bound to 127.0.0.1) refuses:
    // the pool then goes on to the next address.
    let server = RedisServer::start();
    let url = format!("redis://localhost:{}/0", server.port());
    let timeout = Duration::from_millis(500);
    let pool = Pool::new(RedisUrl::parse(&url).unwrap(), timeout, 1);
    let mut conn = pool.get(Instant::now() + timeout).unwrap();
    let named = format!("localhost:{} (127.0.0.1:{})", server.port(), server.port());
    assert_eq!(conn.peer(), named);
    let pong = conn.command(&[b"PING"], Instant::now() + timeout).unwrap();
    assert_eq!(pong, Reply::Status(b"PONG".to_vec()));
}

#[test]
fn a_refused_connection_names_the_host_and_the_address_tried() {
    use smartcache::redis::conn::ConnErrorKind;
    use smartcache::redis::pool::Pool;
    use smartcache::redis::RedisUrl;
    use std::time::Instant;

    let port = support::redis_server::free_port();
    let url = format!("redis://localhost:{port}/0");
    let timeout = Duration::from_millis(200);
    let pool = Pool::new(RedisUrl::parse(&url).unwrap(), timeout, 1);
    let e = pool
        .get(Instant::now() + timeout)
        .err()
        .expect("nobody listens");
    assert_eq!(e.kind, ConnErrorKind::Connect, "{e}");
    assert!(
        e.message
            .contains(&format!("cannot connect to localhost:{port} (")),
        "{e}"
    );
}

/// The derived prefix names the directory the disk tier opened: `lnk/../y` with `lnk -> a/b`
/// is `a/y` to the kernel (`..` climbs from the link's target), so it must share `a/y`'s
/// Redis keys, not those of the unrelated `y` beside the link.
#[test]
fn a_derived_prefix_follows_dot_dot_after_a_symlink_like_the_kernel() {
    let server = RedisServer::start();
    let base = std::env::temp_dir().join(format!("sc-redis-dotdot-{}", std::process::id()));
    for d in ["a/b", "a/y", "y"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    std::os::unix::fs::symlink(base.join("a/b"), base.join("lnk")).unwrap();
    let cache = smartcache::Cache::open(Config {
        disk_enabled: true,
        disk_path: base.join("lnk/../y"),
        disk_max_size: 1 << 20,
        auto_expire_interval: 0,
        redis_key_prefix: None,
        ..config(&server, "")
    })
    .unwrap();
    cache.set(b"k", b"v", None).unwrap();
    assert!(
        base.join("a/y/smartcache.l3").exists(),
        "the kernel's directory"
    );
    assert!(!base.join("y/smartcache.l3").exists());
    let expect = |dir: &str| {
        let p = smartcache::redis::derived_prefix(&base.join(dir));
        server.cmd(&[b"EXISTS", &full_key(&p, b"k")]).int()
    };
    assert_eq!(expect("a/y"), 1);
    assert_eq!(expect("y"), 0);
    drop(cache);
    std::fs::remove_dir_all(&base).unwrap();
}
