//! Every option set to extreme values, then a cache opened: nothing aborts or hangs; each value
//! is either refused by `set` with a config error naming the option, or the cache opens, or
//! open fails with a config or out-of-memory error and a message. Walks `OPTION_NAMES`, so
//! options added later are covered too.

mod common;

use common::TempDir;
use smartcache::config::{limit_of, Limit, OPTION_NAMES};
use smartcache::error::status::{SZ_ERR_CONFIG, SZ_ERR_IO, SZ_ERR_NOMEM};
use smartcache::{Cache, Config};

/// The values tried for `name`: generic extremes plus its own bounds and one past them.
fn extremes(name: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "0",
        "1",
        "-1",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "",
        "nonsense",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("9".repeat(1 << 20));
    v.push("a".repeat(1 << 20));
    match limit_of(name) {
        Some(Limit::Count { min, max, .. }) | Some(Limit::Bytes { min, max, .. }) => {
            for n in [min.saturating_sub(1), min, max, max.saturating_add(1)] {
                v.push(n.to_string());
            }
        }
        Some(Limit::Text { max, .. }) => {
            v.push(format!("/{}", "p".repeat(max - 1)));
            v.push(format!("/{}", "p".repeat(max)));
        }
        Some(Limit::Secret { min, max }) => {
            for n in [min - 1, min, max, max + 1] {
                v.push("s".repeat(n));
            }
        }
        _ => {}
    }
    v
}

/// A config with the disk tier on, small and private.
fn base(dir: &TempDir) -> Config {
    Config {
        disk_enabled: true,
        disk_path: dir.path().join("cache"),
        disk_max_size: 1 << 20,
        auto_expire_interval: 0,
        ..Config::default()
    }
}

#[test]
fn every_option_at_its_extremes_opens_or_fails_with_a_message() {
    let dir = TempDir::new("extremes");
    // A disk_path extreme such as "0" or "-1" is a relative directory: made inside the temporary
    // directory, not in the checkout. The other test in this binary opens nothing.
    std::env::set_current_dir(dir.path()).unwrap();
    let (mut refused, mut opened, mut failed) = (0, 0, 0);
    for name in OPTION_NAMES {
        for value in extremes(name) {
            let mut cfg = base(&dir);
            let shown = &value[..value.len().min(40)];
            if let Err(e) = cfg.set(name, &value) {
                assert_eq!(e.code(), SZ_ERR_CONFIG, "{name}={shown}: {e}");
                assert!(e.to_string().contains(name), "{name}={shown}: {e}");
                assert!(e.to_string().len() < 400, "{name}: message too long: {e}");
                refused += 1;
                continue;
            }
            // The disk tier at its largest would reserve 256 GiB of this machine's disk: what
            // open does with a size is covered by the disk tests; here the tier is then off.
            if cfg.disk_max_size > 64 << 20 {
                cfg.disk_enabled = false;
            }
            // A disk_path the filesystem cannot hold (a component over 255 bytes) is an I/O
            // error of the directory, not a config error.
            let io_allowed = *name == "disk_path";
            match Cache::open(cfg) {
                Ok(c) => {
                    c.set(b"k", b"v", None)
                        .unwrap_or_else(|e| panic!("{name}={shown}: {e}"));
                    opened += 1;
                }
                Err(e) => {
                    assert!(
                        [SZ_ERR_CONFIG, SZ_ERR_NOMEM].contains(&e.code())
                            || (io_allowed && e.code() == SZ_ERR_IO),
                        "{name}={shown}: {e}"
                    );
                    assert!(!e.to_string().is_empty());
                    failed += 1;
                }
            }
        }
    }
    eprintln!("refused at set: {refused}, opened: {opened}, refused at open: {failed}");
    assert!(refused > 0 && opened > 0);
}

#[test]
fn a_value_past_each_bound_is_refused_and_the_bound_itself_accepted() {
    for name in OPTION_NAMES {
        let mut c = Config::default();
        let Some(limit) = limit_of(name) else {
            // An option that checks its own value (a secret): at least no text of any length.
            assert!(c.set(name, &"s".repeat(1 << 20)).is_err(), "{name}");
            continue;
        };
        match limit {
            Limit::Count { min, max, zero, .. } | Limit::Bytes { min, max, zero } => {
                c.set(name, &min.to_string()).unwrap();
                c.set(name, &max.to_string()).unwrap();
                assert!(c.set(name, &(max + 1).to_string()).is_err(), "{name}");
                if min > 0 && zero.is_none() {
                    assert!(c.set(name, &(min - 1).to_string()).is_err(), "{name}");
                }
            }
            Limit::Text { max, .. } => {
                let long = format!("redis://h/{}", "0".repeat(max));
                assert!(c.set(name, &long).is_err(), "{name}");
            }
            Limit::Boolean => assert!(c.set(name, "2").is_err(), "{name}"),
            Limit::Secret { min, max } => {
                c.set(name, &"s".repeat(min)).unwrap();
                c.set(name, &"s".repeat(max)).unwrap();
                for n in [min - 1, max + 1] {
                    let e = c.set(name, &"s".repeat(n)).unwrap_err().to_string();
                    assert!(!e.contains(&"s".repeat(min - 1)), "{name}: quoted: {e}");
                }
            }
        }
    }
}
