//! The invalidation listener facing a server that does not speak pub/sub as Redis does: every
//! malformed, oversized or unexpected push takes the listener down (memory untrusted, the
//! reason kept as its last error) and it reconnects; nothing crashes or hangs, and once the
//! server behaves the listener is subscribed again and answers its heartbeat.

mod support;

use smartcache::{Cache, Config};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::fake_redis::fake_server;

const SUBSCRIBED: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n";
const MESSAGE: &str = "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n";

/// What the server pushes after the subscription, one per listener connection, in order.
fn hostile(i: usize) -> Option<String> {
    let push = match i {
        0 => format!("{MESSAGE}:5\r\n"), // payload neither keys nor null
        1 => format!("{MESSAGE}*1\r\n*1\r\n$1\r\nx\r\n"), // nested deeper than any reply
        2 => format!("{MESSAGE}*99999999\r\n"), // an array too long to allocate
        3 => format!("{MESSAGE}*1\r\n:1\r\n"), // a key that is not a string
        4 => "*3\r\n$7\r\nmessage\r\n$3\r\nfoo\r\n*0\r\n".into(), // another channel
        5 => "+OK\r\n".into(),           // not a push at all
        6 => "-ERR boom\r\n".into(),     // an error
        7 => "hello there\r\n".into(),   // not RESP
        8 => "$999999999999\r\n".into(), // a string of a terabyte
        9 => format!("{MESSAGE}*1\r\n${}\r\n", 1u64 << 40), // a key of a terabyte
        _ => return None,
    };
    Some(push)
}

const HOSTILE: usize = 10;

static LISTENERS: AtomicUsize = AtomicUsize::new(0);

fn answer(mut c: TcpStream) {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match std::io::Read::read(&mut c, &mut buf) {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        let got = String::from_utf8_lossy(&buf[..n]).to_string();
        let reply: Vec<u8> = if got.contains("SUBSCRIBE") {
            let mut r = SUBSCRIBED.to_vec();
            if let Some(push) = hostile(LISTENERS.fetch_add(1, Ordering::SeqCst)) {
                r.extend_from_slice(push.as_bytes());
            }
            r
        } else if got.contains("TRACKING") {
            b"+OK\r\n".to_vec()
        } else if got.contains("ID") {
            b":7\r\n".to_vec()
        } else if got.contains("PING") {
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n".to_vec()
        } else {
            b"-ERR not in this fake\r\n".to_vec()
        };
        if c.write_all(&reply).is_err() {
            return;
        }
    }
}

#[test]
fn hostile_pushes_take_the_listener_down_and_it_recovers() {
    let port = fake_server(answer);
    let dir = std::env::temp_dir().join(format!("sc-inval-hostile-{}", std::process::id()));
    let cache = Cache::open(Config {
        redis_enabled: true,
        redis_url: format!("redis://127.0.0.1:{port}/0"),
        redis_key_prefix: Some("hostile:".into()),
        redis_invalidation: true,
        redis_timeout_ms: 200,
        disk_path: dir,
        ..Config::default()
    })
    .expect("open");
    let stats = || cache.stats().redis_invalidation.unwrap();
    let t = Instant::now();
    while LISTENERS.load(Ordering::SeqCst) <= HOSTILE || !stats().listening {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "not recovered: {:?}",
            stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = stats();
    assert!(s.disconnects >= HOSTILE as u64, "{s:?}");
    assert!(s.connects > HOSTILE as u64, "{s:?}");
    assert!(s.last_error.is_some(), "{s:?}");
    // Quiet past the heartbeat: the PING is answered and the listener stays up.
    std::thread::sleep(Duration::from_millis(1500));
    let after = stats();
    assert!(after.listening, "{after:?}");
    assert_eq!(after.disconnects, s.disconnects, "{after:?}");
    let t = Instant::now();
    drop(cache);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "close took {:?}",
        t.elapsed()
    );
}
