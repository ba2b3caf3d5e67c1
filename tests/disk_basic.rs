//! L3 disk tier against real files: round trips, expiry, persistence, refusing foreign files.

mod common;

use common::TempDir;
use smartcache::disk::{format::Geometry, DiskTier};
use smartcache::tier::flags::COMPRESSED;
use smartcache::Error;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const MB: u64 = 1 << 20;

#[test]
fn binary_keys_and_values_round_trip() {
    let dir = TempDir::new("basic-rt");
    let t = DiskTier::open(dir.path(), 4 * MB, 64 << 10).unwrap();
    let keys: Vec<Vec<u8>> = vec![
        vec![0],
        vec![0, 0, 0],
        vec![0xff; 9],
        b"plain".to_vec(),
        (0..=255u8).collect(),
    ];
    for (i, k) in keys.iter().enumerate() {
        let v: Vec<u8> = (0..i * 1000).map(|j| (j * 31 + i) as u8).collect();
        t.set(k, &v, (i % 2) as u8, None).unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        let hit = t.get(k).unwrap().expect("present");
        let v: Vec<u8> = (0..i * 1000).map(|j| (j * 31 + i) as u8).collect();
        assert_eq!(hit.value, v, "key {k:?}");
        assert_eq!(hit.flags, (i % 2) as u8);
        assert_eq!(hit.remaining(), None);
    }
    assert_eq!(t.get(b"absent").unwrap(), None);
    let s = t.stats();
    assert_eq!(
        (s.counters.hits, s.counters.misses, s.counters.sets),
        (5, 1, 5)
    );
    assert_eq!(s.entries, 5);
    assert!(s.bytes_used >= 10_000 && s.bytes_used < 12_000, "{s:?}");
    assert!(s.capacity > 3 * MB && s.capacity < 4 * MB);
    assert_eq!(s.path, dir.file());
    assert_eq!(s.corruptions, 0);
}

#[test]
fn the_longest_key_and_the_largest_value_fit_and_bigger_ones_are_refused() {
    let dir = TempDir::new("basic-limits");
    let t = DiskTier::open(dir.path(), 4 * MB, 100_000).unwrap();
    let key = vec![0xabu8; 65_535];
    let value = vec![7u8; 100_000];
    t.set(&key, &value, 0, None).unwrap();
    assert_eq!(t.get(&key).unwrap().unwrap().value, value);
    let e = t.set(b"k", &vec![0u8; 100_001], 0, None).unwrap_err();
    assert!(matches!(e, Error::TooLarge(_)), "{e}");
    let e = t.set(&vec![1u8; 65_536], b"v", 0, None).unwrap_err();
    assert!(matches!(e, Error::TooLarge(_)), "{e}");
    // A value within max_value_size but bigger than a segment of a small file.
    let small = TempDir::new("basic-limits-small");
    let t = DiskTier::open(small.path(), 256 << 10, 1 << 20).unwrap();
    let seg = t.geometry().seg_size as usize;
    let e = t.set(b"k", &vec![0u8; seg], 0, None).unwrap_err();
    assert!(
        matches!(e, Error::TooLarge(ref m) if m.contains("segment")),
        "{e}"
    );
    assert_eq!(
        t.stats().counters.errors,
        0,
        "refused input is not a tier failure"
    );
}

#[test]
fn expiry_is_exact_on_read_and_remaining_counts_down() {
    let dir = TempDir::new("basic-ttl");
    let t = DiskTier::open(dir.path(), MB, 1024).unwrap();
    // A busy machine may stall this thread between the set and the get for longer than the
    // short TTL: the lower bound on `remaining` is what the time since the set leaves (less
    // the tier's millisecond rounding), and the hit itself is only required while it can be.
    let before_short = Instant::now();
    t.set(b"short", b"v", 0, Some(Duration::from_millis(50)))
        .unwrap();
    let before_long = Instant::now();
    t.set(b"long", b"v", 0, Some(Duration::from_secs(100)))
        .unwrap();
    t.set(b"zero", b"v", 0, Some(Duration::ZERO)).unwrap();
    let hit = t.get(b"short").unwrap();
    let since_short = before_short.elapsed();
    match hit {
        Some(hit) => {
            let r = hit.remaining().unwrap();
            assert!(
                r <= Duration::from_millis(50)
                    && r + since_short + Duration::from_millis(2) >= Duration::from_millis(50),
                "{r:?} after {since_short:?}"
            );
        }
        None => assert!(
            since_short >= Duration::from_millis(49),
            "a 50 ms entry gone after {since_short:?}"
        ),
    }
    assert_eq!(t.get(b"zero").unwrap(), None);
    std::thread::sleep(Duration::from_millis(70));
    assert_eq!(t.get(b"short").unwrap(), None);
    let r = t.get(b"long").unwrap().unwrap().remaining().unwrap();
    let since_long = before_long.elapsed();
    assert!(
        r + since_long + Duration::from_millis(2) >= Duration::from_secs(100)
            && r <= Duration::from_secs(100),
        "{r:?} after {since_long:?}"
    );
    // Expired entries stay counted until the background step reclaims them.
    assert_eq!(t.stats().entries, 3);
    let total = t.geometry().buckets as usize * 8;
    assert_eq!(t.expire_step(total).unwrap(), 2);
    assert_eq!(t.stats().entries, 1);
    assert_eq!(t.expire_step(total).unwrap(), 0);
    // Deleting an expired entry removes it but reports it absent, as get did.
    t.set(b"gone", b"v", 0, Some(Duration::ZERO)).unwrap();
    assert!(!t.delete(b"gone").unwrap());
    assert_eq!(t.stats().entries, 1);
}

#[test]
fn entries_survive_close_and_reopen_with_their_deadline() {
    let dir = TempDir::new("basic-reopen");
    // Taken before the 30 s entry is set: its `remaining` after the reopen is at least 30 s less
    // the time since then, however long a busy machine takes over the 500 sets and the reopen.
    let before_ttl;
    {
        let t = DiskTier::open(dir.path(), 2 * MB, 4096).unwrap();
        for i in 0..500u32 {
            t.set(
                &i.to_be_bytes(),
                &common::make_value(&i.to_be_bytes(), 1, 100),
                COMPRESSED,
                None,
            )
            .unwrap();
        }
        before_ttl = Instant::now();
        t.set(b"ttl", b"v", 0, Some(Duration::from_secs(30)))
            .unwrap();
        t.set(b"gone", b"v", 0, Some(Duration::from_millis(30)))
            .unwrap();
        assert!(t.delete(&7u32.to_be_bytes()).unwrap());
        t.flush().unwrap();
    }
    std::thread::sleep(Duration::from_millis(40));
    let t = DiskTier::open(dir.path(), 2 * MB, 4096).unwrap();
    for i in 0..500u32 {
        let got = t.get(&i.to_be_bytes()).unwrap();
        if i == 7 {
            assert_eq!(got, None);
        } else {
            let hit = got.unwrap();
            assert_eq!(common::check_value(&i.to_be_bytes(), &hit.value), Some(1));
            assert_eq!(hit.flags, COMPRESSED);
        }
    }
    let r = t.get(b"ttl").unwrap().unwrap().remaining().unwrap();
    let since = before_ttl.elapsed();
    assert!(
        r < Duration::from_secs(30)
            && r + since + Duration::from_millis(2) >= Duration::from_secs(30),
        "{r:?} after {since:?}"
    );
    assert_eq!(t.get(b"gone").unwrap(), None);
    assert_eq!(t.stats().entries, 501);
}

#[test]
fn clear_removes_everything_and_the_tier_stays_usable() {
    let dir = TempDir::new("basic-clear");
    let t = DiskTier::open(dir.path(), MB, 1024).unwrap();
    for i in 0..100u32 {
        t.set(&i.to_le_bytes(), b"value", 0, None).unwrap();
    }
    t.clear().unwrap();
    assert_eq!(t.stats().entries, 0);
    assert_eq!(t.stats().bytes_used, 0);
    for i in 0..100u32 {
        assert_eq!(t.get(&i.to_le_bytes()).unwrap(), None);
    }
    t.set(b"after", b"clear", 0, None).unwrap();
    assert_eq!(t.get(b"after").unwrap().unwrap().value, b"clear");
    // A second handle on the same file sees the clear (it is the file's state, not the handle's).
    let t2 = DiskTier::open(dir.path(), MB, 1024).unwrap();
    assert_eq!(t2.get(&5u32.to_le_bytes()).unwrap(), None);
    assert_eq!(t2.get(b"after").unwrap().unwrap().value, b"clear");
}

#[test]
fn creates_a_private_directory_and_file() {
    let dir = TempDir::new("basic-perms");
    let sub = dir.path().join("nested").join("cache");
    let t = DiskTier::open(&sub, MB, 1024).unwrap();
    t.set(b"k", b"v", 0, None).unwrap();
    let dmode = std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
    let fmode = std::fs::metadata(sub.join("smartcache.l3"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dmode & 0o077, 0, "dir mode {dmode:o}");
    assert_eq!(fmode, 0o600, "file mode {fmode:o}");
    // Which of the file's blocks are reserved, and when, is tests/disk_growth.rs's subject.
    // No temporary files left behind by the create-then-link dance.
    let names: Vec<_> = std::fs::read_dir(&sub)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["smartcache.l3"]);
}

#[test]
fn an_existing_file_keeps_its_own_geometry() {
    let dir = TempDir::new("basic-geometry");
    let g = {
        let t = DiskTier::open(dir.path(), 2 * MB, 1024).unwrap();
        t.set(b"k", b"v", 0, None).unwrap();
        t.geometry()
    };
    let t = DiskTier::open(dir.path(), 64 * MB, 1024).unwrap();
    assert_eq!(t.geometry(), g);
    assert_eq!(std::fs::metadata(dir.file()).unwrap().len(), g.file_size);
    assert_eq!(t.get(b"k").unwrap().unwrap().value, b"v");
}

fn assert_refused_untouched(dir: &TempDir, content: &[u8], needle: &str) {
    std::fs::write(dir.file(), content).unwrap();
    let err = match DiskTier::open(dir.path(), MB, 1024) {
        Ok(_) => panic!("opened a foreign file"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(matches!(err, Error::Io(_)), "{msg}");
    assert!(msg.contains(&dir.file().display().to_string()), "{msg}");
    assert!(msg.contains(needle), "{msg} lacks {needle}");
    assert_eq!(std::fs::read(dir.file()).unwrap(), content, "file modified");
}

#[test]
fn foreign_files_are_refused_with_io_and_left_untouched() {
    let dir = TempDir::new("basic-foreign");
    let mut text = b"important user data, not a cache\n".repeat(2000);
    assert_refused_untouched(&dir, &text, "wrong magic");
    text.truncate(100);
    assert_refused_untouched(&dir, &text, "too short");
    assert_refused_untouched(&dir, b"", "too short");

    // Our magic but a future version.
    let g = Geometry::for_size(MB, 1024).unwrap();
    let mut file = vec![0u8; g.file_size as usize];
    g.encode(&mut file[..4096]);
    file[8] = 3;
    assert_refused_untouched(&dir, &file, "format version 3");

    // Our magic and version, geometry damaged.
    g.encode(&mut file[..4096]);
    file[40] ^= 0x10;
    assert_refused_untouched(&dir, &file, "checksum");
}

#[test]
fn a_directory_in_place_of_the_file_is_refused() {
    let dir = TempDir::new("basic-isdir");
    std::fs::create_dir(dir.file()).unwrap();
    let e = DiskTier::open(dir.path(), MB, 1024).err().expect("refused");
    assert!(matches!(e, Error::Io(_)), "{e}");
}

#[test]
fn bad_sizes_are_config_errors() {
    let dir = TempDir::new("basic-size");
    let e = DiskTier::open(dir.path(), 1000, 10).err().expect("refused");
    assert!(matches!(e, Error::Config(_)), "{e}");
    assert!(!dir.file().exists());
}
