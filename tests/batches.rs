//! `set_many` is all or nothing: every entry is checked against every limit (on the stored,
//! compressed size where the limit is on what is stored) before any is stored.

mod common;

use common::{Rng, TempDir};
use smartcache::{Cache, Config, Error};

/// A memory-only cache whose single shard holds entries of up to 1 MiB.
fn memory_only() -> Config {
    let mut c = Config::default();
    c.set("memory_max_bytes", "1M").unwrap();
    c.set("auto_expire_interval", "0").unwrap();
    c
}

fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next() as u8).collect()
}

#[test]
fn a_batch_with_one_entry_over_the_memory_budget_stores_nothing() {
    let cache = Cache::open(memory_only()).unwrap();
    cache.set(b"a", b"old", None).unwrap();
    let huge = incompressible(2 << 20, 7);
    let items: [(&[u8], &[u8]); 3] = [(b"a", b"new"), (b"b", b"2"), (b"c", &huge)];
    let err = cache.set_many(&items, None).unwrap_err();
    assert!(matches!(err, Error::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("vals[2]"), "{err}");
    assert_eq!(cache.get(b"a").unwrap().unwrap().value(), b"old");
    assert!(cache.get(b"b").unwrap().is_none());
    assert!(cache.get(b"c").unwrap().is_none());
    let s = cache.stats();
    assert_eq!(s.sets, 1, "only the single set before the batch counts");
}

#[test]
fn a_batch_with_an_over_long_key_or_value_stores_nothing() {
    let dir = TempDir::new("batch-limits");
    let mut config = memory_only();
    config.set("disk_enabled", "true").unwrap();
    config
        .set("disk_path", dir.path().to_str().unwrap())
        .unwrap();
    config.set("disk_max_size", "4M").unwrap();
    config.set("max_value_size", "1000").unwrap();
    let cache = Cache::open(config).unwrap();
    let long_key = vec![b'k'; 100_000];
    let long_value = vec![b'v'; 1001];
    let bad_key: [(&[u8], &[u8]); 2] = [(b"x", b"1"), (&long_key, b"2")];
    assert!(matches!(
        cache.set_many(&bad_key, None),
        Err(Error::TooLarge(_))
    ));
    let bad_value: [(&[u8], &[u8]); 2] = [(b"x", b"1"), (b"y", &long_value)];
    assert!(matches!(
        cache.set_many(&bad_value, None),
        Err(Error::TooLarge(_))
    ));
    // Neither batch left anything in any tier, this process's memory or the shared file.
    assert!(!cache.exists(b"x").unwrap());
    drop(cache);
    let mut fresh = memory_only();
    fresh.set("disk_enabled", "true").unwrap();
    fresh
        .set("disk_path", dir.path().to_str().unwrap())
        .unwrap();
    fresh.set("disk_max_size", "4M").unwrap();
    let reopened = Cache::open(fresh).unwrap();
    assert!(reopened.get(b"x").unwrap().is_none());
}

#[test]
fn the_memory_budget_applies_to_the_compressed_size() {
    let cache = Cache::open(memory_only()).unwrap();
    // 2 MiB that compresses to a few KiB: over the budget as given, well within it as stored.
    let doc: Vec<u8> = b"{\"id\": 1, \"tags\": [\"a\"]} "
        .iter()
        .copied()
        .cycle()
        .take(2 << 20)
        .collect();
    let items: [(&[u8], &[u8]); 2] = [(b"doc", &doc), (b"small", b"s")];
    cache.set_many(&items, None).unwrap();
    assert_eq!(cache.get(b"doc").unwrap().unwrap().value(), &doc[..]);
    assert_eq!(cache.get(b"small").unwrap().unwrap().value(), b"s");
}
