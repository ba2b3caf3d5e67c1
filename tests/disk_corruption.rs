//! Damage to the file while closed (bit flips, a zeroed page, truncation) gives misses and
//! counted corruptions, never a wrong value or a crash.

mod common;

use common::{check_value, make_value, TempDir};
use smartcache::disk::{format::Geometry, DiskTier};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

const N: u32 = 400;

fn key(i: u32) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

/// Fills a fresh file with N self-checking values and returns its geometry.
fn populate(dir: &TempDir) -> Geometry {
    let t = DiskTier::open(dir.path(), 2 << 20, 4096).unwrap();
    for i in 0..N {
        t.set(
            &key(i),
            &make_value(&key(i), i as u64, 200 + i as usize),
            0,
            None,
        )
        .unwrap();
    }
    t.geometry()
}

/// Reads every key back: each is either its exact value or a miss. Returns the miss count.
fn misses_after_damage(t: &DiskTier) -> u32 {
    let mut misses = 0;
    for i in 0..N {
        match t.get(&key(i)).unwrap() {
            Some(hit) => assert_eq!(check_value(&key(i), &hit.value), Some(i as u64), "key {i}"),
            None => misses += 1,
        }
    }
    misses
}

#[test]
fn bit_flips_in_records_are_misses_and_counted() {
    let dir = TempDir::new("corrupt-flip");
    let g = populate(&dir);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.file())
        .unwrap();
    // One flipped bit every 1000 bytes over the records written (header, key, value or padding).
    let written = N as u64 * 300;
    let mut flips = 0;
    for off in (500..written).step_by(1000) {
        let mut b = [0u8];
        f.read_at(&mut b, g.data_off + off).unwrap();
        b[0] ^= 1 << (off % 8);
        f.write_at(&b, g.data_off + off).unwrap();
        flips += 1;
    }
    drop(f);
    let t = DiskTier::open(dir.path(), 2 << 20, 4096).unwrap();
    let misses = misses_after_damage(&t);
    let s = t.stats();
    assert!(
        misses > 0 && misses <= flips,
        "{misses} misses for {flips} flips"
    );
    assert_eq!(
        s.corruptions, misses as u64,
        "each damaged record read once"
    );
    assert_eq!(s.counters.hits, (N - misses) as u64);
}

#[test]
fn a_zeroed_data_page_is_misses_and_counted() {
    let dir = TempDir::new("corrupt-zero");
    let g = populate(&dir);
    let f = OpenOptions::new().write(true).open(dir.file()).unwrap();
    f.write_at(&[0u8; 4096], g.data_off + 8192).unwrap();
    drop(f);
    let t = DiskTier::open(dir.path(), 2 << 20, 4096).unwrap();
    let misses = misses_after_damage(&t);
    // 4096 bytes over records of ~300 bytes: at least 12 records touched.
    assert!(misses >= 12, "{misses}");
    assert_eq!(t.stats().corruptions, misses as u64);
    // The damaged keys can be written again.
    for i in 0..N {
        t.set(&key(i), &make_value(&key(i), 99, 50), 0, None)
            .unwrap();
    }
    for i in 0..N {
        assert_eq!(
            check_value(&key(i), &t.get(&key(i)).unwrap().unwrap().value),
            Some(99)
        );
    }
}

#[test]
fn a_zeroed_index_page_loses_entries_but_returns_nothing_wrong() {
    let dir = TempDir::new("corrupt-index");
    let g = populate(&dir);
    let f = OpenOptions::new().write(true).open(dir.file()).unwrap();
    f.write_at(&[0u8; 4096], g.index_off).unwrap();
    drop(f);
    let t = DiskTier::open(dir.path(), 2 << 20, 4096).unwrap();
    let misses = misses_after_damage(&t);
    assert!(misses > 0 && misses < N, "{misses}");
}

#[test]
fn garbage_index_slots_never_read_outside_the_file() {
    let dir = TempDir::new("corrupt-slots");
    let g = populate(&dir);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.file())
        .unwrap();
    // Overwrite every slot's position with a spread of hostile values, keeping the tags.
    let slots = g.buckets * 8;
    let hostile = [
        1u64,
        7,
        u64::MAX,
        u64::MAX - 31,
        1 << 40,
        g.seg_size - 8,
        4096 + 4,
    ];
    for s in 0..slots {
        let v = hostile[(s % hostile.len() as u64) as usize];
        f.write_at(&v.to_le_bytes(), g.index_off + s * 16 + 8)
            .unwrap();
    }
    drop(f);
    let t = DiskTier::open(dir.path(), 2 << 20, 4096).unwrap();
    let misses = misses_after_damage(&t);
    assert!(misses >= N - 10, "{misses}");
}

#[test]
fn truncation_while_closed_is_repaired_to_misses_and_counted() {
    let dir = TempDir::new("corrupt-trunc");
    let g = populate(&dir);
    // Cut the file in the middle of the records.
    let cut = g.data_off + N as u64 * 150;
    OpenOptions::new()
        .write(true)
        .open(dir.file())
        .unwrap()
        .set_len(cut)
        .unwrap();
    let t = DiskTier::open(dir.path(), 2 << 20, 4096).unwrap();
    assert_eq!(std::fs::metadata(dir.file()).unwrap().len(), g.file_size);
    let misses = misses_after_damage(&t);
    assert!(misses >= N / 3, "{misses}");
    assert_eq!(
        t.stats().corruptions,
        1 + misses as u64,
        "truncation itself counts once"
    );
    t.set(b"new", b"value", 0, None).unwrap();
    assert_eq!(t.get(b"new").unwrap().unwrap().value, b"value");
}

#[test]
fn truncation_into_the_index_or_header() {
    let dir = TempDir::new("corrupt-trunc-index");
    let g = populate(&dir);
    OpenOptions::new()
        .write(true)
        .open(dir.file())
        .unwrap()
        .set_len(g.index_off + 100)
        .unwrap();
    let t = DiskTier::open(dir.path(), 2 << 20, 4096).unwrap();
    assert_eq!(misses_after_damage(&t), N);
    drop(t);
    // Shorter than a header: no longer recognisable, refused and left as is.
    OpenOptions::new()
        .write(true)
        .open(dir.file())
        .unwrap()
        .set_len(1000)
        .unwrap();
    let e = DiskTier::open(dir.path(), 2 << 20, 4096)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("too short"), "{e}");
    assert_eq!(std::fs::metadata(dir.file()).unwrap().len(), 1000);
}

#[test]
fn a_damaged_head_costs_entries_but_never_returns_wrong_values() {
    for bad_head in [u64::MAX - 3, 1 << 63, 12_345 * 8, 0] {
        let dir = TempDir::new("corrupt-head");
        populate(&dir);
        let f = OpenOptions::new().write(true).open(dir.file()).unwrap();
        f.write_at(&bad_head.to_le_bytes(), 128).unwrap();
        drop(f);
        let t = DiskTier::open(dir.path(), 2 << 20, 4096).unwrap();
        misses_after_damage(&t);
        // Writing works again and old keys never come back wrong, even as the head moves over
        // the positions the stale slots name.
        for round in 0..20u64 {
            for i in 0..N {
                let k = key(i);
                if i % 3 == 0 {
                    t.set(&k, &make_value(&k, 1000 + round, 100), 0, None)
                        .unwrap();
                }
                if let Some(hit) = t.get(&k).unwrap() {
                    assert!(check_value(&k, &hit.value).is_some(), "key {i}");
                }
            }
        }
        for i in (0..N).step_by(3) {
            let hit = t.get(&key(i)).unwrap().expect("rewritten");
            assert_eq!(check_value(&key(i), &hit.value), Some(1019));
        }
    }
}
