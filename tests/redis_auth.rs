//! Logging in and choosing the database: requirepass, ACL users, SELECT, unix sockets, URLs.

mod support;

use smartcache::redis::RedisTier;
use smartcache::Config;
use support::redis_server::RedisServer;

fn config(url: String) -> Config {
    Config {
        redis_enabled: true,
        redis_url: url,
        redis_timeout_ms: 500,
        redis_key_prefix: Some("a:".into()),
        ..Config::default()
    }
}

#[test]
fn requirepass_with_right_and_wrong_password() {
    let server = RedisServer::start_with(&["--requirepass", "s3cr@t pw"]);
    let url = format!("redis://:s3cr%40t%20pw@127.0.0.1:{}/0", server.port());
    let tier = RedisTier::open(&config(url)).unwrap();
    assert!(tier.is_up());
    tier.set(b"k", b"v", 0, None).unwrap();
    assert_eq!(tier.get(b"k").unwrap().unwrap().value, b"v");
    assert!(server.cmd(&[b"EXISTS", b"a:k"]).int() == 1);
    let stats = tier.stats();
    assert!(!stats.url.contains("s3cr"), "{}", stats.url);
    assert!(stats.url.contains("***"), "{}", stats.url);

    // Wrong password: open still succeeds, the tier is down and says why.
    let url = format!("redis://:wrong@127.0.0.1:{}/0", server.port());
    let tier = RedisTier::open(&config(url)).unwrap();
    assert!(!tier.is_up());
    let s = tier.stats();
    assert_eq!(s.tier.errors, 1);
    let why = s.tier.last_error.unwrap();
    assert!(why.contains("AUTH") && why.contains("WRONGPASS"), "{why}");
    assert!(!why.contains("wrong@"), "{why}");
    assert!(tier.get(b"k").is_err(), "skipped while down");

    // No password at all: NOAUTH on the first command counts as an error.
    let tier = RedisTier::open(&config(server.url(0))).unwrap();
    let e = tier.get(b"k").unwrap_err();
    assert!(e.to_string().contains("NOAUTH"), "{e}");
}

#[test]
fn acl_user_logs_in_with_auth_user_pass() {
    let server = RedisServer::start_with(&["--requirepass", "adminpw"]);
    server
        .cmd_str(&["ACL", "SETUSER", "app", "on", ">apppw", "~app:*", "+@all"])
        .assert_ok();
    let mut cfg = config(format!("redis://app:apppw@127.0.0.1:{}/0", server.port()));
    cfg.redis_key_prefix = Some("app:".into());
    let tier = RedisTier::open(&cfg).unwrap();
    assert!(tier.is_up(), "{:?}", tier.stats());
    tier.set(b"k", b"v", 0, None).unwrap();
    assert_eq!(tier.get(b"k").unwrap().unwrap().value, b"v");
    tier.clear().unwrap();
    assert_eq!(tier.get(b"k").unwrap(), None);
    assert_eq!(
        tier.stats().url,
        format!("redis://app:***@127.0.0.1:{}/0", server.port())
    );

    // The ACL is enforced: the same user under a prefix it may not touch gets error replies.
    cfg.redis_key_prefix = Some("other:".into());
    let tier = RedisTier::open(&cfg).unwrap();
    let e = tier.set(b"k", b"v", 0, None).unwrap_err();
    assert!(e.to_string().contains("NOPERM"), "{e}");
    assert!(tier.is_up(), "an error reply does not open the breaker");
}

#[test]
fn select_isolates_databases() {
    let server = RedisServer::start();
    let db0 = RedisTier::open(&config(server.url(0))).unwrap();
    let db5 = RedisTier::open(&config(server.url(5))).unwrap();
    db5.set(b"k", b"in five", 0, None).unwrap();
    assert_eq!(db0.get(b"k").unwrap(), None);
    assert_eq!(db5.get(b"k").unwrap().unwrap().value, b"in five");
    server.cmd_str(&["SELECT", "5"]).assert_ok();
    assert_eq!(
        server.cmd_str(&["DBSIZE"]).int(),
        0,
        "fresh connection is db 0"
    );
    db0.clear().unwrap();
    assert!(db5.get(b"k").unwrap().is_some(), "clear stays in its db");
    db5.clear().unwrap();
    assert_eq!(db5.get(b"k").unwrap(), None);
}

#[test]
fn unix_socket_with_db_and_password() {
    let server = RedisServer::start_with(&["--requirepass", "pw"]);
    let url = format!("unix://{}?db=3&password=pw", server.socket_path().display());
    let tier = RedisTier::open(&config(url)).unwrap();
    assert!(tier.is_up(), "{:?}", tier.stats());
    tier.set(b"k", b"over unix", 0, None).unwrap();
    assert_eq!(tier.get(b"k").unwrap().unwrap().value, b"over unix");
    // It went to db 3.
    let tcp = RedisTier::open(&config(format!(
        "redis://:pw@127.0.0.1:{}/3",
        server.port()
    )))
    .unwrap();
    assert_eq!(tcp.get(b"k").unwrap().unwrap().value, b"over unix");
    assert!(!tier.stats().url.contains("=pw"));

    // A socket path that does not exist: down, not an error of open.
    let tier = RedisTier::open(&config("unix:///nonexistent/redis.sock".into())).unwrap();
    assert!(!tier.is_up());
    assert!(tier
        .stats()
        .tier
        .last_error
        .unwrap()
        .contains("/nonexistent/redis.sock"));
}

#[test]
fn bad_urls_are_config_errors() {
    for url in [
        "http://127.0.0.1:6390/0",
        "redis://127.0.0.1:0/0",
        "redis://127.0.0.1:65536/0",
        "redis://127.0.0.1:6390/db",
        "redis://user@127.0.0.1:6390/0",
        "redis:///0",
        "unix://relative/path.sock",
        "unix:///tmp/x.sock?database=1",
    ] {
        let e = RedisTier::open(&config(url.into()))
            .err()
            .unwrap_or_else(|| panic!("{url} accepted"));
        assert_eq!(e.code(), smartcache::error::status::SZ_ERR_CONFIG, "{url}");
        assert!(e.to_string().contains("redis_url"), "{url}: {e}");
    }
}
