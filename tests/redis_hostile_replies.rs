//! A hostile server cannot make the client hold more than about max_value_size + 1 MiB per
//! connection: a bulk announced as ~1 TB and then streamed, a status line that never ends, an
//! array of a billion elements, an array within the length limit whose elements never stop,
//! arrays nested deeper than any reply of ours, and an honest-looking value over
//! max_value_size. Each call returns within the timeout, its error is counted, and the
//! process's peak RSS (VmHWM) grows by less than 64 MiB over all of them (with a 4 MiB
//! max_value_size; the probe thread's connection is attacked too, and the allocator may copy a
//! growing buffer, so a few budgets' worth is expected; unbounded, the first case alone
//! reached 2 GB).

mod support;

use smartcache::redis::RedisTier;
use smartcache::Config;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::fake_redis::{fake_server, read_some};

const TIMEOUT_MS: u64 = 3000;

/// Writes `head`, then `chunk` until the client hangs up.
fn stream(mut c: TcpStream, head: &[u8], chunk: &[u8]) {
    if !read_some(&mut c) || c.write_all(head).is_err() {
        return;
    }
    while c.write_all(chunk).is_ok() {}
}

fn huge_bulk(c: TcpStream) {
    stream(c, b"$999999999999\r\n", &[b'x'; 65536]);
}

fn endless_status(c: TcpStream) {
    stream(c, b"+", &[b'y'; 65536]);
}

fn billion_elements(c: TcpStream) {
    stream(c, b"*1000000000\r\n", &b":1\r\n".repeat(16384));
}

fn endless_elements(c: TcpStream) {
    stream(c, b"*1048576\r\n", &b"$7\r\nelement\r\n".repeat(4096));
}

fn deep_nesting(c: TcpStream) {
    stream(c, &b"*1\r\n".repeat(7), &b"*1\r\n".repeat(16384));
}

/// An honest header for a 3 MiB value: over the 1 MiB max_value_size of that case.
fn over_max_value_size(c: TcpStream) {
    stream(c, b"$3145728\r\n", &[b'z'; 65536]);
}

/// Peak resident memory of this process, bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn hostile_replies_are_refused_within_the_timeout_and_bounded_memory() {
    type Answer = fn(TcpStream);
    let cases: [(&str, Answer, usize, &str); 6] = [
        ("huge bulk", huge_bulk, 4 << 20, "reply larger than"),
        (
            "endless status",
            endless_status,
            4 << 20,
            "a line of more than",
        ),
        (
            "billion elements",
            billion_elements,
            4 << 20,
            "1000000000 elements refused",
        ),
        (
            "endless elements",
            endless_elements,
            4 << 20,
            "reply larger than",
        ),
        ("deep nesting", deep_nesting, 4 << 20, "nested deeper"),
        (
            "over max_value_size",
            over_max_value_size,
            1 << 20,
            "max_value_size plus",
        ),
    ];
    // Resets VmHWM to the current RSS where the kernel allows it (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss();
    for (name, answer, max_value_size, why) in cases {
        let port = fake_server(answer);
        let tier = RedisTier::open(&Config {
            redis_enabled: true,
            redis_url: format!("redis://127.0.0.1:{port}/0"),
            redis_timeout_ms: TIMEOUT_MS,
            redis_pool_size: 1,
            redis_key_prefix: Some("hostile:".into()),
            max_value_size,
            ..Config::default()
        })
        .unwrap();
        type Call<'a> = Box<dyn Fn() -> smartcache::Result<()> + 'a>;
        let calls: [(&str, Call); 2] = [
            ("get", Box::new(|| tier.get(b"k").map(|_| ()))),
            (
                "get_many",
                Box::new(|| tier.get_many(&[b"a".as_slice(), b"b"]).map(|_| ())),
            ),
        ];
        for (op, call) in calls {
            let errors = tier.stats().tier.errors;
            let t = Instant::now();
            let outcome = call();
            let took = t.elapsed();
            let e = outcome.expect_err(&format!("{name} {op}: no error"));
            assert!(
                took < Duration::from_millis(TIMEOUT_MS + 1000),
                "{name} {op}: took {took:?}"
            );
            let s = tier.stats();
            assert_eq!(s.tier.errors, errors + 1, "{name} {op}: error not counted");
            let last = s.tier.last_error.unwrap_or_default();
            assert!(
                e.to_string().contains(why) && last.contains(why),
                "{name} {op}: {e} / {last}"
            );
        }
        drop(tier);
        let grown = peak_rss().saturating_sub(before);
        eprintln!("{name}: peak RSS grown by {} KiB so far", grown >> 10);
        assert!(grown < 64 << 20, "{name}: peak RSS grew by {grown} bytes");
    }
}
