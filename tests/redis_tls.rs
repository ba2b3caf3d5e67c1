//! `rediss://` against a real redis-server listening with `--tls-port`, with certificates made
//! by the test: verification, host names, expiry, client certificates, a plain client on the
//! TLS port, deadlines that hold while a TLS peer stalls, and a Redis Cluster over TLS
//! (`rediss+cluster://`).

mod support;

use smartcache::error::status::SZ_ERR_CONFIG;
use smartcache::redis::RedisTier;
use smartcache::Config;
use std::net::TcpListener;
use std::time::{Duration, Instant};
use support::redis_cluster::RedisCluster;
use support::redis_server::{free_port, RedisServer, Resp};
use support::tls_certs::{path_str, start_tls_redis, tls_server_args, TestCa};

const TIMEOUT_MS: u64 = 300;

fn config(url: String, prefix: &str) -> Config {
    Config {
        redis_enabled: true,
        redis_url: url,
        redis_timeout_ms: TIMEOUT_MS,
        redis_pool_size: 2,
        redis_key_prefix: Some(prefix.to_string()),
        ..Config::default()
    }
}

fn with_ca(mut cfg: Config, ca: &TestCa) -> Config {
    cfg.redis_tls_ca_file = Some(path_str(&ca.ca_file));
    cfg
}

/// Opens the tier and expects it down, its error containing `expected`.
fn assert_refused(cfg: &Config, expected: &str) -> String {
    let tier = RedisTier::open(cfg).unwrap();
    assert!(!tier.is_up(), "the tier must not come up");
    let e = tier.stats().tier.last_error.expect("an error is kept");
    assert!(e.contains(expected), "expected '{expected}' in: {e}");
    e
}

#[test]
fn verified_tls_round_trip_with_ca_file() {
    let ca = TestCa::new("ok");
    let cert = ca.issue("server", &["127.0.0.1", "localhost"]);
    let r = start_tls_redis(&ca, &cert, false);
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("rediss://{host}:{}/0", r.tls_port);
        let tier = RedisTier::open(&with_ca(config(url.clone(), "tls:"), &ca)).unwrap();
        assert!(tier.is_up(), "{:?}", tier.stats());
        assert_eq!(tier.stats().url, url);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        tier.set(b"k", b"over tls", 0, None).unwrap();
        tier.set(b"big", &big, 0, None).unwrap();
        assert_eq!(tier.get(b"k").unwrap().unwrap().value, b"over tls");
        assert_eq!(tier.get(b"big").unwrap().unwrap().value, big);
        let many = tier.get_many(&[b"k", b"missing", b"big"]).unwrap();
        assert!(many[1].is_none());
        assert_eq!(many[2].as_ref().unwrap().value, big);
    }
    // What went over TLS is in the server (checked over its plain port).
    let raw = r.server.cmd(&[b"GET", b"tls:k"]).bulk().unwrap();
    assert!(raw.ends_with(b"over tls"));
}

#[test]
fn server_name_option_verifies_a_name_the_url_does_not_carry() {
    let ca = TestCa::new("sni");
    let cert = ca.issue("server", &["redis.test"]);
    let r = start_tls_redis(&ca, &cert, false);
    let url = format!("rediss://127.0.0.1:{}/0", r.tls_port);
    let mut cfg = with_ca(config(url, "sni:"), &ca);
    // By address alone the certificate does not match.
    assert_refused(&cfg, "not valid for name");
    cfg.redis_tls_server_name = Some("redis.test".into());
    let tier = RedisTier::open(&cfg).unwrap();
    assert!(tier.is_up(), "{:?}", tier.stats());
    tier.set(b"a", b"b", 0, None).unwrap();
    assert_eq!(tier.get(b"a").unwrap().unwrap().value, b"b");
}

#[test]
fn wrong_ca_is_refused() {
    let ca = TestCa::new("real");
    let other = TestCa::new("other");
    let cert = ca.issue("server", &["127.0.0.1"]);
    let r = start_tls_redis(&ca, &cert, false);
    let url = format!("rediss://127.0.0.1:{}/0", r.tls_port);
    let e = assert_refused(&with_ca(config(url.clone(), "x:"), &other), "UnknownIssuer");
    assert!(e.contains("certificate"), "{e}");
    // The system store does not know the test CA either.
    assert_refused(&config(url, "x:"), "certificate");
}

#[test]
fn wrong_host_name_is_refused() {
    let ca = TestCa::new("name");
    let cert = ca.issue("server", &["cache.example"]);
    let r = start_tls_redis(&ca, &cert, false);
    let url = format!("rediss://127.0.0.1:{}/0", r.tls_port);
    assert_refused(&with_ca(config(url, "x:"), &ca), "not valid for name");
}

#[test]
fn expired_certificate_is_refused() {
    let ca = TestCa::new("expired");
    let cert = ca.issue_expired("server", &["127.0.0.1"]);
    let r = start_tls_redis(&ca, &cert, false);
    let url = format!("rediss://127.0.0.1:{}/0", r.tls_port);
    assert_refused(&with_ca(config(url, "x:"), &ca), "certificate expired");
}

#[test]
fn client_certificate_required_and_given() {
    let ca = TestCa::new("mtls");
    let cert = ca.issue("server", &["127.0.0.1"]);
    let client = ca.issue("client", &["smartcache-client"]);
    let r = start_tls_redis(&ca, &cert, true);
    let url = format!("rediss://127.0.0.1:{}/0", r.tls_port);
    // Without one the server refuses. In TLS 1.3 the client's side of the handshake is
    // over before the server has checked it, so the refusal (an alert) is what the first
    // command reads.
    let tier = RedisTier::open(&with_ca(config(url.clone(), "m:"), &ca)).unwrap();
    let e = tier.set(b"k", b"v", 0, None).unwrap_err().to_string();
    assert!(e.contains("CertificateRequired"), "{e}");
    let mut cfg = with_ca(config(url, "m:"), &ca);
    cfg.redis_tls_cert_file = Some(path_str(&client.cert_file));
    cfg.redis_tls_key_file = Some(path_str(&client.key_file));
    let tier = RedisTier::open(&cfg).unwrap();
    assert!(tier.is_up(), "{:?}", tier.stats());
    tier.set(b"mtls", b"yes", 0, None).unwrap();
    assert_eq!(tier.get(b"mtls").unwrap().unwrap().value, b"yes");
}

#[test]
fn plain_url_to_tls_port_and_tls_url_to_plain_port_fail_cleanly() {
    let ca = TestCa::new("mix");
    let cert = ca.issue("server", &["127.0.0.1"]);
    let r = start_tls_redis(&ca, &cert, false);
    let t = Instant::now();
    let plain_to_tls = config(format!("redis://127.0.0.1:{}/0", r.tls_port), "x:");
    let tier = RedisTier::open(&plain_to_tls).unwrap();
    // The TCP connection opens; the server drops it on the first bytes that are not TLS.
    let e = tier.get(b"k").unwrap_err().to_string();
    assert!(e.contains("closed the connection"), "{e}");
    assert_eq!(tier.stats().tier.last_error.unwrap(), e);
    let tls_to_plain = with_ca(
        config(format!("rediss://127.0.0.1:{}/0", r.server.port()), "x:"),
        &ca,
    );
    let tier = RedisTier::open(&tls_to_plain).unwrap();
    assert!(!tier.is_up());
    // A plain server reads the ClientHello as the start of a command line and waits.
    let e = tier.stats().tier.last_error.unwrap();
    assert!(e.contains("during the TLS handshake"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn stalled_tls_peers_are_bounded_by_the_timeout() {
    // A peer that accepts and never answers the ClientHello.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let ca = TestCa::new("stall");
    let url = format!(
        "rediss://127.0.0.1:{}/0",
        silent.local_addr().unwrap().port()
    );
    let t = Instant::now();
    let tier = RedisTier::open(&with_ca(config(url, "x:"), &ca)).unwrap();
    let took = t.elapsed();
    assert!(!tier.is_up());
    let e = tier.stats().tier.last_error.unwrap();
    assert!(e.contains(&format!("no reply in {TIMEOUT_MS} ms")), "{e}");
    assert!(took < Duration::from_millis(TIMEOUT_MS + 400), "{took:?}");

    // A real TLS server that stops answering after the handshake (SIGSTOP).
    let cert = ca.issue("server", &["127.0.0.1"]);
    let r = start_tls_redis(&ca, &cert, false);
    let url = format!("rediss://127.0.0.1:{}/0", r.tls_port);
    let tier = RedisTier::open(&with_ca(config(url, "x:"), &ca)).unwrap();
    tier.set(b"k", b"v", 0, None).unwrap();
    r.server.pause();
    for _ in 0..3 {
        let t = Instant::now();
        let e = tier.get(b"k").unwrap_err().to_string();
        let took = t.elapsed();
        assert!(e.contains(&format!("no reply in {TIMEOUT_MS} ms")), "{e}");
        assert!(took >= Duration::from_millis(TIMEOUT_MS - 5), "{took:?}");
        assert!(took < Duration::from_millis(TIMEOUT_MS + 400), "{took:?}");
    }
    r.server.resume();
}

#[test]
fn bad_tls_files_are_config_errors_at_open() {
    let ca = TestCa::new("files");
    let cert = ca.issue("client", &["c"]);
    let url = "rediss://127.0.0.1:1/0".to_string();
    let missing = Config {
        redis_tls_ca_file: Some("/nonexistent/ca.pem".into()),
        ..config(url.clone(), "x:")
    };
    let not_pem = Config {
        redis_tls_ca_file: Some(path_str(&cert.key_file)),
        ..config(url.clone(), "x:")
    };
    let cert_without_key = Config {
        redis_tls_cert_file: Some(path_str(&cert.cert_file)),
        ..with_ca(config(url.clone(), "x:"), &ca)
    };
    let key_not_matching = Config {
        redis_tls_cert_file: Some(path_str(&cert.cert_file)),
        redis_tls_key_file: Some(path_str(&ca.issue("other", &["o"]).key_file)),
        ..with_ca(config(url, "x:"), &ca)
    };
    for (what, cfg, expected) in [
        ("missing CA file", missing, "redis_tls_ca_file"),
        (
            "CA file without a certificate",
            not_pem,
            "redis_tls_ca_file",
        ),
        (
            "certificate without key",
            cert_without_key,
            "redis_tls_key_file",
        ),
        (
            "key of another certificate",
            key_not_matching,
            "redis_tls_cert_file",
        ),
    ] {
        let e = RedisTier::open(&cfg)
            .err()
            .unwrap_or_else(|| panic!("{what} opened"));
        assert_eq!(e.code(), SZ_ERR_CONFIG, "{what}: {e}");
        assert!(e.to_string().contains(expected), "{what}: {e}");
    }
}

#[test]
fn tls_options_are_set_and_read_back_by_name() {
    let mut cfg = Config::default();
    for name in [
        "redis_tls_ca_file",
        "redis_tls_cert_file",
        "redis_tls_key_file",
        "redis_tls_server_name",
    ] {
        assert_eq!(cfg.get(name).unwrap(), "");
        cfg.set(name, "/etc/x.pem").unwrap();
        assert_eq!(cfg.get(name).unwrap(), "/etc/x.pem");
        cfg.set(name, "").unwrap();
        assert_eq!(cfg.get(name).unwrap(), "");
    }
    cfg.set("redis_url", "rediss://:pw@h:6380/1").unwrap();
}

/// Three cluster-enabled masters, each with a plain port (the test's own checks) and a TLS
/// port that serves clients and the TLS cluster bus (`tls-cluster yes`, so `CLUSTER SLOTS`
/// names the TLS ports to TLS clients), joined by `redis-cli --tls`. Returns the cluster and
/// the TLS ports.
fn start_tls_cluster(ca: &TestCa) -> (RedisCluster, Vec<u16>) {
    let cert = ca.issue("node", &["127.0.0.1"]);
    let tls_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let nodes: Vec<RedisServer> = tls_ports
        .iter()
        .map(|&p| {
            let mut args = tls_server_args(ca, &cert, p, false);
            // tls-cluster: the cluster bus speaks TLS, and CLUSTER SLOTS names the TLS
            // ports to TLS clients.
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "1000",
                    "--tls-cluster",
                    "yes",
                ]
                .map(String::from),
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            RedisServer::start_with(&args)
        })
        .collect();
    let addrs: Vec<String> = tls_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let cli = ["--tls", "--cacert", &path_str(&ca.ca_file)].map(String::from);
    (RedisCluster::join(nodes, &addrs, &cli, 0), tls_ports)
}

#[test]
fn cluster_over_tls_routes_every_slot_through_verified_tls() {
    let ca = TestCa::new("cluster");
    let (cluster, tls_ports) = start_tls_cluster(&ca);
    let seeds: Vec<String> = tls_ports
        .iter()
        .take(2)
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let url = format!("rediss+cluster://{}/", seeds.join(","));

    let tier = RedisTier::open(&with_ca(config(url.clone(), "tlsc:"), &ca)).unwrap();
    assert!(tier.is_up(), "{:?}", tier.stats());
    assert_eq!(tier.stats().url, url);
    let keys: Vec<Vec<u8>> = (0..60).map(|i| format!("k{i}").into_bytes()).collect();
    for (i, k) in keys.iter().enumerate() {
        tier.set(k, format!("v{i}").as_bytes(), 0, None).unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            tier.get(k).unwrap().unwrap().value,
            format!("v{i}").into_bytes()
        );
    }
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let many = tier.get_many(&refs).unwrap();
    assert!(many.iter().all(Option::is_some), "{many:?}");

    // Every key sits on exactly one master (read over the plain ports), and the keys are
    // spread over all three: each was routed, over TLS, to the node that owns its slot.
    let mut per_node = [0usize; 3];
    for k in &keys {
        let full = [b"tlsc:".as_slice(), k].concat();
        let holders: Vec<usize> = (0..3)
            .filter(|&n| matches!(cluster.nodes[n].cmd(&[b"GET", &full]), Resp::Bulk(Some(_))))
            .collect();
        assert_eq!(holders.len(), 1, "{}", String::from_utf8_lossy(k));
        per_node[holders[0]] += 1;
    }
    assert!(per_node.iter().all(|&n| n > 0), "{per_node:?}");

    // Not silently plaintext: with another CA the certificates are refused, and a plain
    // cluster URL on the TLS ports does not come up.
    let other = TestCa::new("cluster-other");
    let untrusted = RedisTier::open(&with_ca(config(url, "tlsc:"), &other)).unwrap();
    assert!(!untrusted.is_up(), "{:?}", untrusted.stats());
    let plain = format!("redis+cluster://{}/", seeds.join(","));
    let plain = RedisTier::open(&with_ca(config(plain, "tlsc:"), &ca)).unwrap();
    assert!(!plain.is_up(), "{:?}", plain.stats());
}
