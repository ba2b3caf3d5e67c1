//! L2 Redis tier benchmarks against a redis-server this bench starts on a free loopback port.
//!
//! Run: `cargo bench --bench redis` (needs redis-server on PATH or $REDIS_SERVER).
//! Measures, in one run:
//! 1. a 100-byte GET hit through RedisTier vs a raw hiredis GET via hiredis-sys (same server,
//!    same value; the raw side also copies the value out, as any caller must);
//! 2. get_many of 100 keys (one MGET) vs 100 sequential gets, and checks the MGET is one
//!    command on the server;
//! 3. a 1 KiB GET hit of a signed frame (value_secret: MAC verified) vs an unsigned one, through
//!    two tiers on the same server, interleaved (bound: +1.5 us per hit);
//! 4. with Redis down and the breaker open, the latency percentiles of a get (custom loop,
//!    printed to stdout);
//! 5. a 100-byte GET hit over TLS (`rediss://`, pooled connections reused) vs the same hit in
//!    plain TCP, same server (its TLS and plain ports), interleaved (target: TLS <= 1.3x).
//! 6. a 100-byte GET hit through a Redis Cluster (3 masters + 3 replicas started by the bench,
//!    `redis+cluster://`) vs the same hit on a single node, interleaved (target ≤ 1.15x), and
//!    the commands each master counts for one get_many of 100 keys spread over the slots.

#[path = "../tests/support/redis_cluster.rs"]
#[allow(dead_code)]
mod redis_cluster;
#[path = "../tests/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;
#[path = "../tests/support/tls_certs.rs"]
#[allow(dead_code)]
mod tls_certs;

use criterion::{criterion_group, criterion_main, Criterion};
use redis_server::RedisServer;
use smartcache::redis::{frame, RedisTier};
use smartcache::sign::Signer;
use smartcache::Config;
use std::ffi::CString;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn config(url: String) -> Config {
    Config {
        redis_enabled: true,
        redis_url: url,
        redis_timeout_ms: 500,
        redis_pool_size: 4,
        redis_key_prefix: Some("bench:".into()),
        ..Config::default()
    }
}

/// A raw hiredis connection: the baseline the tier is compared against.
struct RawHiredis(*mut hiredis_sys::redisContext);

impl RawHiredis {
    fn connect(port: u16) -> RawHiredis {
        let host = CString::new("127.0.0.1").unwrap();
        // SAFETY: host is a valid C string for the duration of the call; the returned context
        // is owned by RawHiredis and freed once in Drop.
        let ctx = unsafe { hiredis_sys::redisConnect(host.as_ptr(), i32::from(port)) };
        // SAFETY: ctx is either NULL (checked first) or a valid context.
        assert!(
            !ctx.is_null() && unsafe { (*ctx).err } == 0,
            "raw connect failed"
        );
        RawHiredis(ctx)
    }

    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let mut argv = [b"GET".as_ptr().cast(), key.as_ptr().cast()];
        let lens = [3usize, key.len()];
        // SAFETY: argv/lens describe two valid buffers that outlive the call; the context is
        // live and used by this thread only.
        let reply =
            unsafe { hiredis_sys::redisCommandArgv(self.0, 2, argv.as_mut_ptr(), lens.as_ptr()) }
                as *mut hiredis_sys::redisReply;
        assert!(!reply.is_null(), "raw GET failed");
        // SAFETY: a non-NULL reply from redisCommandArgv is a valid reply tree, freed once
        // below after its bytes are copied.
        unsafe {
            let r = &*reply;
            let out = (r.kind == hiredis_sys::REDIS_REPLY_STRING).then(|| {
                std::slice::from_raw_parts(r.string as *const u8, r.len as usize).to_vec()
            });
            hiredis_sys::freeReplyObject(reply.cast());
            out
        }
    }
}

impl Drop for RawHiredis {
    fn drop(&mut self) {
        // SAFETY: the context came from redisConnect and is freed exactly once.
        unsafe { hiredis_sys::redisFree(self.0) }
    }
}

fn percentiles(mut ns: Vec<u64>) -> (u64, u64, u64, u64) {
    ns.sort_unstable();
    let p = |q: f64| ns[((ns.len() as f64 - 1.0) * q) as usize];
    (p(0.5), p(0.99), p(0.999), *ns.last().unwrap())
}

/// Times `f` `n` times and returns the per-call nanoseconds.
fn sample(n: usize, mut f: impl FnMut()) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as u64
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let mut server = RedisServer::start();
    let tier = RedisTier::open(&config(server.url(0))).unwrap();
    let value = vec![b'v'; 100];
    tier.set(b"hot", &value, 0, None).unwrap();
    let mut raw = RawHiredis::connect(server.port());
    assert_eq!(tier.get(b"hot").unwrap().unwrap().value, value);
    assert_eq!(
        raw.get(b"bench:hot").unwrap().len(),
        100 + 13,
        "framed value"
    );

    let mut g = c.benchmark_group("redis_get_hit_100B");
    g.bench_function("tier", |b| {
        b.iter(|| black_box(tier.get(black_box(b"hot")).unwrap()))
    });
    g.bench_function("raw_hiredis", |b| {
        b.iter(|| black_box(raw.get(black_box(b"bench:hot"))))
    });
    g.finish();

    // Same comparison in a custom loop, interleaved so drift hits both sides equally.
    let (mut t_ns, mut r_ns) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        t_ns.extend(sample(1000, || {
            black_box(tier.get(b"hot").unwrap());
        }));
        r_ns.extend(sample(1000, || {
            black_box(raw.get(b"bench:hot"));
        }));
    }
    let (tp50, tp99, _, _) = percentiles(t_ns.clone());
    let (rp50, rp99, _, _) = percentiles(r_ns.clone());
    let tmean = t_ns.iter().sum::<u64>() as f64 / t_ns.len() as f64;
    let rmean = r_ns.iter().sum::<u64>() as f64 / r_ns.len() as f64;
    println!(
        "get hit 100B, 20000 calls each: tier mean {:.1} µs p50 {:.1} p99 {:.1} | raw hiredis mean {:.1} µs p50 {:.1} p99 {:.1} | ratio mean {:.3} p50 {:.3}",
        tmean / 1e3,
        tp50 as f64 / 1e3,
        tp99 as f64 / 1e3,
        rmean / 1e3,
        rp50 as f64 / 1e3,
        rp99 as f64 / 1e3,
        tmean / rmean,
        tp50 as f64 / rp50 as f64
    );

    signed_vs_unsigned_get(c, &server);
    tls_vs_plain_get(c);
    cluster_vs_single_get(c, &server);

    let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("many{i}").into_bytes()).collect();
    for k in &keys {
        tier.set(k, &value, 0, None).unwrap();
    }
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let commands = |s: &RedisServer| -> u64 {
        let info = String::from_utf8(s.cmd_str(&["INFO", "stats"]).bulk().unwrap()).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let before = commands(&server);
    assert!(tier.get_many(&refs).unwrap().iter().all(Option::is_some));
    let after = commands(&server);
    println!(
        "get_many(100 keys): {} command(s) on the server (INFO itself counts 1)",
        after - before - 1
    );
    let mut g = c.benchmark_group("redis_100_keys");
    g.bench_function("get_many", |b| {
        b.iter(|| black_box(tier.get_many(&refs).unwrap()))
    });
    g.bench_function("100_sequential_gets", |b| {
        b.iter(|| {
            for k in &refs {
                black_box(tier.get(k).unwrap());
            }
        })
    });
    g.finish();

    // Redis down: the breaker opens after a few failures, then calls must be near free.
    server.stop();
    let t = Instant::now();
    while tier.is_up() {
        let _ = tier.get(b"hot");
        assert!(t.elapsed() < Duration::from_secs(2), "breaker never opened");
    }
    let down = sample(200_000, || {
        black_box(tier.get(b"hot").is_err());
    });
    let (p50, p99, p999, max) = percentiles(down);
    println!(
        "get with redis down, breaker open, 200000 calls: p50 {:.3} µs p99 {:.3} µs p99.9 {:.3} µs max {:.1} µs",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3,
        p999 as f64 / 1e3,
        max as f64 / 1e3
    );
    let mut g = c.benchmark_group("redis_down");
    g.bench_function("get_breaker_open", |b| {
        b.iter(|| black_box(tier.get(b"hot").is_err()))
    });
    g.finish();
}

/// A cluster hit against a single-node hit: same value, same machine, interleaved.
fn cluster_vs_single_get(c: &mut Criterion, server: &RedisServer) {
    let cluster = redis_cluster::RedisCluster::start(3);
    let single = RedisTier::open(&config(server.url(0))).unwrap();
    let clustered = RedisTier::open(&config(cluster.url(3))).unwrap();
    let value = vec![b'c'; 100];
    single.set(b"hot100", &value, 0, None).unwrap();
    clustered.set(b"hot100", &value, 0, None).unwrap();
    assert_eq!(clustered.get(b"hot100").unwrap().unwrap().value, value);

    let mut g = c.benchmark_group("redis_cluster_get_hit_100B");
    g.bench_function("single_node", |b| {
        b.iter(|| black_box(single.get(black_box(b"hot100")).unwrap()))
    });
    g.bench_function("cluster", |b| {
        b.iter(|| black_box(clustered.get(black_box(b"hot100")).unwrap()))
    });
    g.finish();

    let (mut s_ns, mut c_ns) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        s_ns.extend(sample(1000, || {
            black_box(single.get(b"hot100").unwrap());
        }));
        c_ns.extend(sample(1000, || {
            black_box(clustered.get(b"hot100").unwrap());
        }));
    }
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len() as f64;
    let (smean, cmean) = (mean(&s_ns), mean(&c_ns));
    let (sp50, sp99, _, _) = percentiles(s_ns);
    let (cp50, cp99, _, _) = percentiles(c_ns);
    println!(
        "get hit 100B, 20000 interleaved calls each: cluster mean {:.1} µs p50 {:.1} p99 {:.1} | single node mean {:.1} µs p50 {:.1} p99 {:.1} | ratio mean {:.3} p50 {:.3}",
        cmean / 1e3,
        cp50 as f64 / 1e3,
        cp99 as f64 / 1e3,
        smean / 1e3,
        sp50 as f64 / 1e3,
        sp99 as f64 / 1e3,
        cmean / smean,
        cp50 as f64 / sp50 as f64
    );

    // get_many of 100 keys over 3 masters: one pipeline per master.
    let keys: Vec<Vec<u8>> = (0..100)
        .map(|i| format!("spread{i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let items: Vec<_> = refs.iter().map(|k| (*k, &value[..], 0u8, None)).collect();
    clustered.set_many(&items).unwrap();
    single.set_many(&items).unwrap();
    let calls = |n: &RedisServer| -> u64 {
        let info = String::from_utf8(n.cmd_str(&["INFO", "commandstats"]).bulk().unwrap()).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
            .and_then(|r| r.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    let masters = cluster.masters();
    let before: Vec<u64> = masters.iter().map(|&m| calls(&cluster.nodes[m])).collect();
    assert!(clustered
        .get_many(&refs)
        .unwrap()
        .iter()
        .all(Option::is_some));
    let after: Vec<u64> = masters.iter().map(|&m| calls(&cluster.nodes[m])).collect();
    let per_master: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    println!("cluster get_many(100 keys): GETs per master {per_master:?} (one pipeline each)");
    let mut g = c.benchmark_group("redis_cluster_100_keys");
    g.bench_function("single_node_get_many", |b| {
        b.iter(|| black_box(single.get_many(&refs).unwrap()))
    });
    g.bench_function("cluster_get_many", |b| {
        b.iter(|| black_box(clustered.get_many(&refs).unwrap()))
    });
    g.finish();
}

/// A signed 1 KiB hit against an unsigned one: two tiers, same server, same value.
fn signed_vs_unsigned_get(c: &mut Criterion, server: &RedisServer) {
    let value = vec![b'w'; 1024];
    let plain = RedisTier::open(&config(server.url(0))).unwrap();
    let mut signed_cfg = Config {
        redis_key_prefix: Some("bench-signed:".into()),
        ..config(server.url(0))
    };
    signed_cfg
        .set("value_secret", "bench-secret-0123456789")
        .unwrap();
    let signed = RedisTier::open(&signed_cfg).unwrap();
    plain.set(b"kib", &value, 0, None).unwrap();
    signed.set(b"kib", &value, 0, None).unwrap();
    assert_eq!(signed.get(b"kib").unwrap().unwrap().value, value);

    let mut g = c.benchmark_group("redis_get_hit_1KiB");
    g.bench_function("unsigned", |b| {
        b.iter(|| black_box(plain.get(black_box(b"kib")).unwrap()))
    });
    g.bench_function("signed", |b| {
        b.iter(|| black_box(signed.get(black_box(b"kib")).unwrap()))
    });
    g.finish();

    // One call of each in turn, so both medians see the same load; a round trip varies by
    // more than the MAC costs, so the median difference is the figure to read.
    let (mut p_ns, mut s_ns) = (Vec::new(), Vec::new());
    for _ in 0..20_000 {
        p_ns.extend(sample(1, || {
            black_box(plain.get(b"kib").unwrap());
        }));
        s_ns.extend(sample(1, || {
            black_box(signed.get(b"kib").unwrap());
        }));
    }
    let (pp50, _, _, _) = percentiles(p_ns);
    let (sp50, _, _, _) = percentiles(s_ns);
    // The client-side work that differs, without the network: unframing the stored 1 KiB
    // frame, MAC verified or not (best of 50 rounds of 2,000).
    let stored_plain = server.cmd(&[b"GET", b"bench:kib"]).bulk().unwrap();
    let stored_signed = server.cmd(&[b"GET", b"bench-signed:kib"]).bulk().unwrap();
    let signer = Signer::from_config(&signed_cfg).unwrap();
    let key: &[u8] = b"bench-signed:kib";
    let best = |stored: &[u8], signer: Option<(&Signer, &[u8])>| {
        (0..50)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..2_000 {
                    black_box(frame::decode(stored.to_vec(), 1, signer).unwrap());
                }
                t.elapsed().as_nanos() as f64 / 2_000.0
            })
            .fold(f64::MAX, f64::min)
    };
    let (dp, ds) = (
        best(&stored_plain, None),
        best(&stored_signed, Some((&signer, key))),
    );
    println!(
        "get hit 1KiB, 20000 alternating calls each: signed p50 {:.2} µs, unsigned p50 {:.2} µs, difference {:.2} µs | unframe alone: signed {ds:.0} ns, unsigned {dp:.0} ns, difference {:.0} ns",
        sp50 as f64 / 1e3,
        pp50 as f64 / 1e3,
        (sp50 as f64 - pp50 as f64) / 1e3,
        ds - dp
    );
    assert_eq!(signed.stats().tier.tampered, 0);
}

/// The same 100-byte hit over a TLS port and over the plain port of one redis-server.
fn tls_vs_plain_get(c: &mut Criterion) {
    let ca = tls_certs::TestCa::new("bench");
    let cert = ca.issue("server", &["127.0.0.1"]);
    let tls_certs::TlsRedis { server, tls_port } = tls_certs::start_tls_redis(&ca, &cert, false);
    let ca_s = tls_certs::path_str(&ca.ca_file);
    let plain = RedisTier::open(&config(server.url(0))).unwrap();
    let tls = RedisTier::open(&Config {
        redis_tls_ca_file: Some(ca_s.clone()),
        ..config(format!("rediss://127.0.0.1:{tls_port}/0"))
    })
    .unwrap();
    let value = vec![b'v'; 100];
    plain.set(b"hot", &value, 0, None).unwrap();
    assert_eq!(tls.get(b"hot").unwrap().unwrap().value, value);

    let mut g = c.benchmark_group("redis_get_hit_tls_100B");
    g.bench_function("plain", |b| {
        b.iter(|| black_box(plain.get(black_box(b"hot")).unwrap()))
    });
    g.bench_function("tls", |b| {
        b.iter(|| black_box(tls.get(black_box(b"hot")).unwrap()))
    });
    g.finish();

    let (mut p_ns, mut t_ns) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        p_ns.extend(sample(1000, || {
            black_box(plain.get(b"hot").unwrap());
        }));
        t_ns.extend(sample(1000, || {
            black_box(tls.get(b"hot").unwrap());
        }));
    }
    let pmean = p_ns.iter().sum::<u64>() as f64 / p_ns.len() as f64;
    let tmean = t_ns.iter().sum::<u64>() as f64 / t_ns.len() as f64;
    let (pp50, pp99, _, _) = percentiles(p_ns);
    let (tp50, tp99, _, _) = percentiles(t_ns);
    println!(
        "get hit 100B, 20000 calls each: tls mean {:.1} µs p50 {:.1} p99 {:.1} | plain mean {:.1} µs p50 {:.1} p99 {:.1} | ratio mean {:.3} p50 {:.3} (target <= 1.3)",
        tmean / 1e3,
        tp50 as f64 / 1e3,
        tp99 as f64 / 1e3,
        pmean / 1e3,
        pp50 as f64 / 1e3,
        pp99 as f64 / 1e3,
        tmean / pmean,
        tp50 as f64 / pp50 as f64
    );
    // Connections were reused: the pool never dialled past its size.
    assert!(tls.stats().open_connections <= 4);
}

criterion_group! {
    name = redis;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = benches
}
criterion_main!(redis);
