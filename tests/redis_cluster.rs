//! Redis Cluster against the real thing: 3 masters with a replica each, started by the test
//! on free loopback ports (`redis-server --cluster-enabled yes` + `redis-cli --cluster
//! create`), and fake nodes that send bad slot tables and redirections.
//!
//! Under load from several threads every read is checked against what was written: a value
//! must be its own key's, never one not yet written, and (while no master has died: Redis
//! replicates asynchronously, so a failover may lose acknowledged writes) never older than
//! the last acknowledged write. Each scenario starts its own cluster (about 3 s); the file
//! runs in about 30 s.

mod support;

use smartcache::redis::cluster::slots;
use smartcache::redis::RedisTier;
use smartcache::Config;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::redis_cluster::RedisCluster;
use support::redis_server::Resp;

const PREFIX: &str = "t:";

fn config(url: String, timeout_ms: u64) -> Config {
    Config {
        redis_enabled: true,
        redis_url: url,
        redis_timeout_ms: timeout_ms,
        redis_pool_size: 8,
        redis_key_prefix: Some(PREFIX.into()),
        ..Config::default()
    }
}

fn full(key: &str) -> Vec<u8> {
    format!("{PREFIX}{key}").into_bytes()
}

/// Is `key` (without the prefix) stored on `cluster.nodes[i]`? Asked raw, with READONLY
/// semantics not needed: only masters are asked.
fn stored_on(cluster: &RedisCluster, i: usize, key: &str) -> bool {
    matches!(cluster.nodes[i].cmd(&[b"EXISTS", &full(key)]), Resp::Int(1))
}

#[test]
fn slots_hash_tags_batches_and_clear_route_to_the_right_masters() {
    let cluster = RedisCluster::start(3);
    // One seed: the rest of the cluster is discovered from its slot table.
    let tier = RedisTier::open(&config(cluster.url(1), 2000)).unwrap();
    assert!(tier.is_up(), "{:?}", tier.stats());

    // Our slot function agrees with the server's, prefix and tags included.
    for key in [
        "plain",
        "{user42}:a",
        "x{user42}y",
        "{}{tag}",
        "a{b",
        "é{ü}",
    ] {
        assert_eq!(
            slots::slot(&full(key)),
            cluster.keyslot(&full(key)),
            "{key}"
        );
    }

    // Plain keys spread over every master, each stored where its slot lives.
    let mut used = std::collections::HashSet::new();
    for i in 0..60 {
        let key = format!("k{i}");
        tier.set(key.as_bytes(), key.as_bytes(), 0, None).unwrap();
        let owner = cluster.owner_of(cluster.keyslot(&full(&key)));
        assert!(stored_on(&cluster, owner, &key), "{key} not on its master");
        used.insert(owner);
    }
    assert_eq!(used.len(), 3, "60 untagged keys should reach all 3 masters");

    // Keys sharing a hash tag share a slot, whatever the prefix: one master holds them all.
    let tagged = ["{user42}:a", "{user42}:b", "x{user42}y"];
    for k in tagged {
        tier.set(k.as_bytes(), b"v", 0, None).unwrap();
    }
    let owner = cluster.owner_of(cluster.keyslot(b"user42"));
    for k in tagged {
        assert!(stored_on(&cluster, owner, k), "{k} not with its tag");
    }

    // set_many / get_many across slots and masters, with misses mixed in.
    let keys: Vec<String> = (0..100).map(|i| format!("batch{i}")).collect();
    let values: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| format!("value of {k}").into_bytes())
        .collect();
    let items: Vec<_> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| {
            (
                k.as_bytes(),
                v.as_slice(),
                0u8,
                Some(Duration::from_secs(60)),
            )
        })
        .collect();
    tier.set_many(&items).unwrap();
    let mut asked: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    asked.push(b"never-written");
    asked.insert(7, b"{user42}:missing");
    let hits = tier.get_many(&asked).unwrap();
    assert_eq!(hits.len(), asked.len());
    for (k, hit) in asked.iter().zip(&hits) {
        let k = std::str::from_utf8(k).unwrap();
        match k.strip_prefix("batch") {
            Some(_) => assert_eq!(
                hit.as_ref().unwrap().value,
                format!("value of {k}").as_bytes()
            ),
            None => assert!(hit.is_none(), "{k}"),
        }
    }
    assert_eq!(tier.stats().tier.errors, 0, "{:?}", tier.stats());

    // Batches reuse each master's pooled connections: no new connection per call.
    let masters = cluster.masters();
    let connections = || -> i64 {
        masters
            .iter()
            .map(|&m| {
                let info =
                    support::redis_cluster::text(&cluster.nodes[m].cmd_str(&["INFO", "stats"]));
                info.lines()
                    .find_map(|l| l.strip_prefix("total_connections_received:"))
                    .unwrap()
                    .trim()
                    .parse::<i64>()
                    .unwrap()
            })
            .sum()
    };
    let before = connections();
    let t = Instant::now();
    for _ in 0..50 {
        tier.get_many(&asked).unwrap();
    }
    let took = t.elapsed() / 50;
    // Each INFO opens one connection of its own.
    let opened = connections() - before - masters.len() as i64;
    eprintln!(
        "get_many of {} keys over 3 masters: {took:?} each",
        asked.len()
    );
    assert!(
        opened <= 0,
        "{opened} connections opened by 50 get_many calls"
    );

    // clear: SCAN + UNLINK on every master; keys outside the prefix stay.
    let foreign = b"other:keep";
    let foreign_owner = cluster.owner_of(cluster.keyslot(foreign));
    cluster.nodes[foreign_owner]
        .cmd(&[b"SET", foreign, b"x"])
        .assert_ok();
    tier.clear().unwrap();
    for m in cluster.masters() {
        let Resp::Array(Some(left)) = cluster.nodes[m].cmd_str(&["KEYS", "t:*"]) else {
            panic!("KEYS")
        };
        assert!(left.is_empty(), "node {m} kept {} keys", left.len());
    }
    assert_eq!(
        cluster.nodes[foreign_owner].cmd(&[b"GET", foreign]).bulk(),
        Some(b"x".to_vec())
    );
    assert!(tier.get(b"batch1").unwrap().is_none());
}

/// What the load threads wrote and read.
#[derive(Default)]
struct Tally {
    ops: AtomicU64,
    errors: AtomicU64,
    /// A value of another key, garbage, or a version not yet written.
    wrong: AtomicU64,
    /// Older than the last acknowledged write (allowed only after a failover).
    stale: AtomicU64,
    /// Errors seen per 100 ms since the start, to judge when service resumed.
    error_times: Mutex<Vec<Duration>>,
}

/// A load run's shared state: stop flag, whether stale reads count as wrong, the tally.
#[derive(Clone)]
struct Run {
    stop: Arc<AtomicBool>,
    /// No failover yet: a read older than the last acknowledged write is wrong.
    strict: Arc<AtomicBool>,
    tally: Arc<Tally>,
    start: Instant,
}

impl Run {
    fn new() -> Run {
        Run {
            stop: Arc::new(AtomicBool::new(false)),
            strict: Arc::new(AtomicBool::new(true)),
            tally: Arc::new(Tally::default()),
            start: Instant::now(),
        }
    }
}

/// Runs `threads` threads of set/get on their own keys (`key_of(thread, i)`) until stopped.
fn load(
    tier: &Arc<RedisTier>,
    threads: usize,
    keys: usize,
    key_of: fn(usize, usize) -> String,
    run: &Run,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|t| {
            let tier = Arc::clone(tier);
            let Run {
                stop,
                strict,
                tally,
                start,
            } = run.clone();
            std::thread::spawn(move || {
                let names: Vec<String> = (0..keys).map(|i| key_of(t, i)).collect();
                // Per key: last version attempted, last acknowledged.
                let mut attempted = vec![0u64; keys];
                let mut acked = vec![0u64; keys];
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let i = (n * 7919 + t) % keys;
                    let name = &names[i];
                    tally.ops.fetch_add(1, Ordering::Relaxed);
                    let failed = if n % 3 == 0 {
                        let v = attempted[i] + 1;
                        attempted[i] = v;
                        let value = format!("{name}={v}");
                        match tier.set(name.as_bytes(), value.as_bytes(), 0, None) {
                            Ok(()) => {
                                acked[i] = v;
                                false
                            }
                            Err(_) => true,
                        }
                    } else {
                        match tier.get(name.as_bytes()) {
                            Ok(hit) => {
                                let got = hit.map(|h| String::from_utf8(h.value).unwrap_or_default());
                                let version = match &got {
                                    None => Some(0),
                                    Some(s) => s
                                        .strip_prefix(name.as_str())
                                        .and_then(|r| r.strip_prefix('='))
                                        .and_then(|v| v.parse::<u64>().ok()),
                                };
                                match version {
                                    Some(v) if v <= attempted[i] => {
                                        if v < acked[i] {
                                            tally.stale.fetch_add(1, Ordering::Relaxed);
                                            if strict.load(Ordering::Relaxed) {
                                                tally.wrong.fetch_add(1, Ordering::Relaxed);
                                                eprintln!("{name}: read version {v} after {} was acknowledged", acked[i]);
                                            }
                                        }
                                    }
                                    _ => {
                                        tally.wrong.fetch_add(1, Ordering::Relaxed);
                                        eprintln!("{name}: read {got:?}, last written {}", attempted[i]);
                                    }
                                }
                                false
                            }
                            Err(_) => true,
                        }
                    };
                    if failed {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        tally.error_times.lock().unwrap().push(start.elapsed());
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            })
        })
        .collect()
}

#[test]
fn a_killed_master_is_replaced_by_its_replica_and_load_resumes_with_no_wrong_values() {
    let cluster = RedisCluster::start(3);
    let tier = Arc::new(RedisTier::open(&config(cluster.url(6), 300)).unwrap());
    let run = Run::new();
    let Run {
        stop,
        strict,
        tally,
        start,
    } = run.clone();
    let workers = load(&tier, 4, 64, |t, i| format!("w{t}:{i}"), &run);

    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        tally.errors.load(Ordering::Relaxed),
        0,
        "errors before any fault"
    );
    let before = tally.ops.load(Ordering::Relaxed);
    assert!(before > 100, "only {before} operations in 1.5 s");

    // Kill the master of slot 0's range; its replica is promoted within a few seconds.
    let victim = cluster.owner_of(0);
    // Acknowledged writes the replica had not received yet may be lost now: Redis's choice.
    strict.store(false, Ordering::Relaxed);
    let killed_at = start.elapsed();
    let mut cluster = cluster;
    cluster.nodes[victim].stop();
    let t = Instant::now();
    while cluster.owner_of(0) == victim {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no replica was promoted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.wait_until_ok(Duration::from_secs(30));
    let promoted_at = start.elapsed();

    // The tier learns the new table (refresh on the dead node's failures) and resumes.
    std::thread::sleep(Duration::from_millis(3000));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let errors = tally.error_times.lock().unwrap().clone();
    let last_error = errors.last().copied();
    eprintln!(
        "killed at {killed_at:?}, cluster ok at {promoted_at:?}, {} errors, last at \
         {last_error:?}, {} ops, {} stale reads after the failover",
        errors.len(),
        tally.ops.load(Ordering::Relaxed),
        tally.stale.load(Ordering::Relaxed),
    );
    assert_eq!(tally.wrong.load(Ordering::Relaxed), 0, "wrong values read");
    // Errors only while the master was gone, ending within 2 s of the promotion.
    assert!(errors.iter().all(|&t| t >= killed_at));
    if let Some(last) = last_error {
        assert!(
            last < promoted_at + Duration::from_secs(2),
            "errors went on until {last:?}, the replica was promoted at {promoted_at:?}"
        );
    }
    // Every slot, the dead master's included, is served again: read-your-writes holds.
    for i in 0..200 {
        let key = format!("after{i}");
        tier.set(key.as_bytes(), key.as_bytes(), 0, None).unwrap();
        assert_eq!(
            tier.get(key.as_bytes()).unwrap().unwrap().value,
            key.as_bytes()
        );
    }
    assert!(tier.is_up(), "{:?}", tier.stats());
}

#[test]
fn a_slot_migrated_mid_load_keeps_every_value_through_ask_and_moved() {
    let cluster = RedisCluster::start(3);
    let tier = Arc::new(RedisTier::open(&config(cluster.url(3), 2000)).unwrap());
    // Every key of the hot threads shares the slot of "{mig}", the one moved.
    let slot = cluster.keyslot(&full("{mig}"));
    let run = Run::new();
    let (stop, tally) = (Arc::clone(&run.stop), Arc::clone(&run.tally));
    let mut workers = load(&tier, 3, 40, |t, i| format!("{{mig}}:{t}:{i}"), &run);
    workers.extend(load(&tier, 1, 64, |t, i| format!("spread{t}:{i}"), &run));
    std::thread::sleep(Duration::from_millis(700));

    let from = cluster.owner_of(slot);
    let to = cluster.masters().into_iter().find(|&m| m != from).unwrap();
    // 10 keys per MIGRATE, 30 ms apart: the slot stays half moved (ASK) for a while.
    cluster.migrate_slot(slot, to, Duration::from_millis(30));
    assert_eq!(cluster.owner_of(slot), to);
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let ops = tally.ops.load(Ordering::Relaxed);
    eprintln!("{ops} ops, {} errors", tally.errors.load(Ordering::Relaxed));
    assert_eq!(tally.wrong.load(Ordering::Relaxed), 0, "wrong values read");
    assert_eq!(
        tally.errors.load(Ordering::Relaxed),
        0,
        "{:?}",
        tier.stats()
    );
    // The moved keys are on the new master, and the tier reads them there.
    assert!(stored_on(&cluster, to, "{mig}:0:0") || tier.get(b"{mig}:0:0").unwrap().is_none());
    tier.set(b"{mig}:after", b"x", 0, None).unwrap();
    assert!(stored_on(&cluster, to, "{mig}:after"));
    assert_eq!(tier.get(b"{mig}:after").unwrap().unwrap().value, b"x");
}

// ---- Fake nodes: what a node sends is untrusted. ----

/// Reads one command (an array of bulk strings); None once the client closed.
fn read_command(r: &mut impl BufRead) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut b = vec![0; len + 2];
        r.read_exact(&mut b).ok()?;
        b.truncate(len);
        args.push(b);
    }
    Some(args)
}

/// A fake cluster node on a free loopback port: `answer(port, command)` gives the raw reply.
fn fake_node(answer: fn(u16, &[Vec<u8>]) -> Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w: TcpStream = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                while let Some(cmd) = read_command(&mut r) {
                    if w.write_all(&answer(port, &cmd)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A slot table giving every slot to 127.0.0.1:`port`.
fn all_slots_to(port: u16) -> Vec<u8> {
    format!("*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$2\r\nid\r\n")
        .into_bytes()
}

fn common(port: u16, cmd: &[Vec<u8>]) -> Option<Vec<u8>> {
    match cmd[0].to_ascii_uppercase().as_slice() {
        b"CLUSTER" => Some(all_slots_to(port)),
        b"PING" => Some(b"+PONG\r\n".to_vec()),
        _ => None,
    }
}

/// Calls end within the deadline with an error that says what happened.
fn assert_clear_error(tier: &RedisTier, words: &str) {
    let t = Instant::now();
    let e = tier.get(b"k").unwrap_err().to_string();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(e.contains(words), "{e}");
    let e = tier.set(b"k", b"v", 0, None).unwrap_err().to_string();
    assert!(e.contains(words), "{e}");
}

#[test]
fn a_redirect_loop_ends_after_a_bounded_number_of_hops() {
    let port = fake_node(|port, cmd| {
        common(port, cmd).unwrap_or_else(|| format!("-MOVED 5 127.0.0.1:{port}\r\n").into_bytes())
    });
    let tier = RedisTier::open(&config(format!("redis+cluster://127.0.0.1:{port}/"), 500)).unwrap();
    assert_clear_error(&tier, "redirections");
}

#[test]
fn a_redirect_to_an_address_the_cluster_never_announced_is_refused() {
    let port = fake_node(|port, cmd| {
        common(port, cmd).unwrap_or_else(|| b"-MOVED 5 10.255.255.1:6379\r\n".to_vec())
    });
    let tier = RedisTier::open(&config(format!("redis+cluster://127.0.0.1:{port}/"), 500)).unwrap();
    assert_clear_error(&tier, "does not announce");
}

#[test]
fn a_bad_slot_table_leaves_the_tier_down_with_a_clear_error() {
    let port = fake_node(|_, cmd| match cmd[0].to_ascii_uppercase().as_slice() {
        // A range past the last slot.
        b"CLUSTER" => b"*1\r\n*3\r\n:0\r\n:20000\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n".to_vec(),
        _ => b"+PONG\r\n".to_vec(),
    });
    let tier = RedisTier::open(&config(format!("redis+cluster://127.0.0.1:{port}/"), 500)).unwrap();
    assert!(!tier.is_up());
    let stats = tier.stats();
    let last = stats.tier.last_error.clone().unwrap_or_default();
    assert!(last.contains("20000"), "{stats:?}");
    assert_clear_error(&tier, "no node serves slot");
}

#[test]
fn a_cluster_url_with_a_braced_prefix_is_a_config_error() {
    let cfg = Config {
        redis_key_prefix: Some("app{1}:".into()),
        ..config("redis+cluster://127.0.0.1:1/".into(), 100)
    };
    let e = RedisTier::open(&cfg).err().expect("must fail");
    assert!(e.to_string().contains("redis_key_prefix"), "{e}");
    let e = RedisTier::open(&config("redis+cluster://127.0.0.1:1/3".into(), 100))
        .err()
        .expect("must fail");
    assert!(e.to_string().contains("redis_url"), "{e}");
}
