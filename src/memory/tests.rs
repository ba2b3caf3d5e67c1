use super::*;
use std::sync::Arc;

fn tier(max_items: usize, max_bytes: usize) -> MemoryTier {
    MemoryTier::new(MemoryOptions {
        max_items,
        max_bytes,
        jemalloc: true,
        count_stats: true,
    })
    .expect("memory tier")
}

#[test]
fn set_get_delete_exists_clear() {
    let t = tier(100, 0);
    t.insert(b"k", b"v", 0, None).unwrap();
    assert_eq!(t.get(b"k").unwrap().value(), b"v");
    assert!(t.contains(b"k"));
    assert!(t.delete(b"k"));
    assert!(!t.delete(b"k"));
    assert!(t.get(b"k").is_none());
    t.insert(b"a", b"1", 0, None).unwrap();
    t.insert(b"b", b"2", 0, None).unwrap();
    assert_eq!(t.clear(), 2);
    assert!(!t.contains(b"a"));
    let s = t.stats();
    assert_eq!(
        (s.hits, s.misses, s.sets, s.deletes, s.size),
        (1, 1, 3, 1, 0)
    );
    assert_eq!(s.allocator, "jemalloc");
}

#[test]
fn expired_entry_is_never_returned() {
    let t = tier(100, 0);
    t.insert(b"long", b"v", 0, Some(Duration::from_secs(60)))
        .unwrap();
    // 30 ms; should a busy machine stall this thread past it between the insert and the get
    // (the entry then rightly expired, and that read reclaimed it), again with a longer ttl.
    let mut ttl = Duration::from_millis(30);
    let mut expired_reads = 0;
    loop {
        let before = std::time::Instant::now();
        t.insert(b"short", b"v", 0, Some(ttl)).unwrap();
        if t.get(b"short").is_some() {
            break;
        }
        assert!(before.elapsed() >= ttl, "a live entry missed");
        expired_reads += 1;
        ttl *= 4;
    }
    std::thread::sleep(ttl + Duration::from_millis(5));
    assert!(t.get(b"short").is_none());
    assert!(!t.contains(b"short"));
    assert!(t.get(b"long").is_some());
    let s = t.stats();
    assert_eq!(
        (s.expirations, s.size),
        (1 + expired_reads, 1),
        "the expired read reclaimed the entry"
    );
}

#[test]
fn remaining_lifetime_is_reported() {
    let t = tier(10, 0);
    let before = std::time::Instant::now();
    t.insert(b"k", b"v", 0, Some(Duration::from_secs(10)))
        .unwrap();
    let left = MemoryTier::remaining(&t.get(b"k").unwrap()).unwrap();
    // At least what the time since the insert leaves (less the clock's 0.1% early rounding),
    // however long a busy machine stalled between the insert and the read.
    let aged = before.elapsed();
    assert!(
        left <= Duration::from_secs(10)
            && left + aged + Duration::from_millis(11) >= Duration::from_secs(10),
        "{left:?} after {aged:?}"
    );
    t.insert(b"forever", b"v", 0, None).unwrap();
    assert_eq!(MemoryTier::remaining(&t.get(b"forever").unwrap()), None);
}

#[test]
fn expire_step_reclaims_memory() {
    let t = tier(10_000, 0);
    for i in 0..1000u32 {
        t.insert(
            &i.to_le_bytes(),
            &[1u8; 200],
            0,
            Some(Duration::from_millis(20)),
        )
        .unwrap();
    }
    let before = t.stats().bytes;
    std::thread::sleep(Duration::from_millis(25));
    let mut reclaimed = 0;
    while reclaimed < 1000 {
        let n = t.expire_step(64);
        assert!(n > 0, "stalled at {reclaimed}");
        reclaimed += n;
    }
    let s = t.stats();
    assert_eq!((s.size, s.expirations), (0, 1000));
    assert!(
        s.bytes < before / 100,
        "{} of {before} bytes still held",
        s.bytes
    );
}

#[test]
fn bounded_by_items_exactly() {
    let t = tier(1000, 0);
    for i in 0..20_000u32 {
        t.insert(&i.to_le_bytes(), b"v", 0, None).unwrap();
    }
    let s = t.stats();
    assert!(s.size <= 1000 && s.size > 900, "{}", s.size);
    assert_eq!(s.evictions, 20_000 - s.size);
}

#[test]
fn capacity_is_cache_wide_so_n_keys_fit_a_cache_of_n() {
    // The guide's benchmark: memory_capacity=1000, 1000 sets, then 1000 gets that must all hit.
    for cap in [1000usize, 5000, 100_000] {
        let t = tier(cap, 0);
        for i in 0..cap as u32 {
            t.insert(&i.to_le_bytes(), b"v", 0, None).unwrap();
        }
        let hits = (0..cap as u32)
            .filter(|i| t.get(&i.to_le_bytes()).is_some())
            .count();
        assert_eq!(hits, cap, "capacity {cap}");
        assert_eq!(t.stats().evictions, 0);
        // One more key evicts exactly one entry.
        t.insert(b"one more", b"v", 0, None).unwrap();
        let s = t.stats();
        assert_eq!((s.size, s.evictions), (cap as u64, 1));
    }
}

#[test]
fn bounded_by_bytes() {
    let t = tier(1_000_000, 4 << 20);
    for i in 0..50_000u32 {
        t.insert(&i.to_le_bytes(), &[0u8; 1000], 0, None).unwrap();
    }
    let s = t.stats();
    assert!(s.bytes <= 4 << 20, "{}", s.bytes);
    assert!(s.bytes > 3 << 20, "{}", s.bytes);
}

#[test]
fn entry_over_shard_budget_is_refused() {
    let t = tier(1000, 1 << 20);
    let e = t.insert(b"big", &vec![0u8; 2 << 20], 0, None).unwrap_err();
    assert_eq!(e.code(), crate::error::status::SZ_ERR_TOO_LARGE);
}

#[test]
fn pinned_value_survives_overwrite_delete_eviction_and_clear() {
    let t = tier(64, 0);
    t.insert(b"k", b"first", 0, None).unwrap();
    let pinned = t.get(b"k").unwrap();
    t.insert(b"k", b"second", 0, None).unwrap();
    t.delete(b"k");
    for i in 0..10_000u32 {
        t.insert(&i.to_le_bytes(), &[9u8; 64], 0, None).unwrap();
    }
    t.clear();
    assert_eq!(pinned.value(), b"first");
}

#[test]
fn system_allocator_when_jemalloc_off() {
    let t = MemoryTier::new(MemoryOptions {
        max_items: 10,
        max_bytes: 0,
        jemalloc: false,
        count_stats: true,
    })
    .expect("memory tier");
    t.insert(b"k", b"v", 0, None).unwrap();
    assert_eq!(t.stats().allocator, "system");
}

#[test]
fn stats_off_counts_nothing() {
    let t = MemoryTier::new(MemoryOptions {
        max_items: 10,
        max_bytes: 0,
        jemalloc: true,
        count_stats: false,
    })
    .expect("memory tier");
    t.insert(b"k", b"v", 0, None).unwrap();
    t.get(b"k");
    t.get(b"x");
    let s = t.stats();
    assert_eq!((s.hits, s.misses, s.sets, s.size), (0, 0, 0, 1));
}

#[test]
fn shard_counts_are_sane() {
    for items in [1usize, 10, 63, 64, 1000, 100_000, 1_000_000, 10_000_000] {
        let n = shard_count(items, 0);
        assert!((1..=512).contains(&n), "{items} -> {n}");
        assert!(n <= items.max(1));
    }
    // 1M items: each shard's index just under a power of two at 7/8 load.
    let n = shard_count(1_000_000, 0);
    let per = 1_000_000usize.div_ceil(n);
    assert!(
        per * 8 / 7 <= (per * 8 / 7).next_power_of_two()
            && per as f64 / ((per * 8 / 7).next_power_of_two() as f64) > 0.8
    );
}

#[test]
fn four_threads_hammer_one_small_cache() {
    let t = Arc::new(tier(256, 0));
    let threads: Vec<_> = (0..4u32)
        .map(|id| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                for i in 0..50_000u32 {
                    let k = ((i * 7 + id) % 512).to_le_bytes();
                    match i % 10 {
                        0 => {
                            t.delete(&k);
                        }
                        1..=3 => t.insert(&k, &k, 0, None).unwrap(),
                        9 if i % 1000 == 9 => {
                            t.clear();
                        }
                        _ => {
                            if let Some(b) = t.get(&k) {
                                assert_eq!(b.value(), &k, "value of another key returned");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert!(t.stats().size <= 256);
}

#[test]
fn capacity_holds_exactly_when_threads_insert_at_once() {
    for round in 0..5u32 {
        let t = Arc::new(tier(2000, 0));
        let threads: Vec<_> = (0..4u32)
            .map(|id| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        let k = (round, id, i);
                        t.insert(format!("{k:?}").as_bytes(), b"v", 0, None)
                            .unwrap();
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        let s = t.stats();
        assert!(
            s.size <= 2000,
            "round {round}: {} entries in a cache of 2000",
            s.size
        );
        assert!(s.size >= 1990, "round {round}: only {} entries", s.size);
        assert_eq!(s.size + s.evictions, 80_000);
    }
}

#[test]
fn a_promotion_is_refused_after_a_write_of_its_key_and_kept_otherwise() {
    let t = tier(1000, 0);
    let copy = |k: &[u8], v: &[u8]| t.make_blob(k, v, 0, None).unwrap();

    // Nothing wrote the key since the mark: stored, and not counted as a set.
    let mark = t.write_mark(b"k");
    assert!(t.promote(copy(b"k", b"old"), mark).unwrap());
    assert_eq!(t.get(b"k").unwrap().value(), b"old");
    assert_eq!(t.stats().sets, 0);

    // A set, a delete (even of an absent key) or a clear after the mark: refused, and what the
    // write left stays.
    let mark = t.write_mark(b"k");
    t.insert(b"k", b"new", 0, None).unwrap();
    assert!(!t.promote(copy(b"k", b"old"), mark).unwrap());
    assert_eq!(t.get(b"k").unwrap().value(), b"new");

    let mark = t.write_mark(b"gone");
    assert!(!t.delete(b"gone"));
    assert!(!t.promote(copy(b"gone", b"old"), mark).unwrap());
    assert!(t.get(b"gone").is_none());

    let mark = t.write_mark(b"k");
    t.clear();
    assert!(!t.promote(copy(b"k", b"old"), mark).unwrap());
    assert!(t.get(b"k").is_none());

    // Writes to keys of other groups do not refuse it. Only some keys share a group, so most of
    // these promotions must be kept.
    let marks: Vec<_> = (0..100u32)
        .map(|i| t.write_mark(format!("p{i}").as_bytes()))
        .collect();
    t.insert(b"unrelated", b"x", 0, None).unwrap();
    let kept = (0..100u32)
        .filter(|&i| {
            let key = format!("p{i}");
            t.promote(copy(key.as_bytes(), b"v"), marks[i as usize])
                .unwrap()
        })
        .count();
    assert!(kept >= 90, "only {kept} of 100 promotions kept");
}
