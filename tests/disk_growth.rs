//! The L3 file starts small on disk and grows as it is used: a few entries take a few MiB
//! whatever disk_max_size says, growth happens in steps, another process follows it without
//! reopening, and a full filesystem fails the set that needed the space (Error::Io, counted)
//! instead of killing the process.
//!
//! The other-process and full-filesystem cases re-run this test binary as a child, with
//! SMARTCACHE_GROW_* variables naming what it should do.

mod common;

use common::{check_value, make_value, TempDir};
use smartcache::disk::DiskTier;
use smartcache::Error;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MB: u64 = 1 << 20;
const SIZE: u64 = 256 * MB;
const MAX_VALUE: usize = 64 << 10;

/// Bytes the file takes on disk (what `du` shows), not its apparent length.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn key(i: u64) -> Vec<u8> {
    format!("grow-{i}").into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    make_value(&key(i), i, 16 << 10)
}

#[test]
fn a_few_entries_take_a_few_mib_whatever_the_maximum() {
    let dir = TempDir::new("grow-small");
    let t = DiskTier::open(dir.path(), SIZE, MAX_VALUE).unwrap();
    for i in 0..4 {
        t.set(&key(i), &value(i), 0, None).unwrap();
    }
    let used = allocated(&dir.file());
    assert!(
        used <= 4 * MB,
        "4 entries take {used} bytes of a {SIZE}-byte file"
    );
    assert_eq!(
        std::fs::metadata(dir.file()).unwrap().len(),
        t.geometry().file_size
    );
    for i in 0..4 {
        assert_eq!(t.get(&key(i)).unwrap().unwrap().value, value(i));
    }
}

#[test]
fn the_file_grows_in_steps_as_data_arrives_and_keeps_every_entry() {
    let dir = TempDir::new("grow-steps");
    let t = DiskTier::open(dir.path(), SIZE, MAX_VALUE).unwrap();
    let mut sizes = vec![allocated(&dir.file())];
    // 16 KiB values: 64 of them are a 1 MiB growth step of the ring.
    for round in 0..6u64 {
        for i in round * 64..(round + 1) * 64 {
            t.set(&key(i), &value(i), 0, None).unwrap();
        }
        sizes.push(allocated(&dir.file()));
    }
    assert!(
        sizes.windows(2).all(|w| w[0] < w[1]),
        "each MiB of data grows the file: {sizes:?}"
    );
    let grown = sizes[6] - sizes[0];
    assert!(
        (6 * MB..=6 * MB + 2 * MB + 2 * 512 * 1024).contains(&grown),
        "6 MiB of records grew the file by {grown} bytes: {sizes:?}"
    );
    for i in 0..6 * 64 {
        assert_eq!(t.get(&key(i)).unwrap().unwrap().value, value(i), "key {i}");
    }
    // Reopened, the file is as it was: nothing is reserved twice, nothing lost.
    drop(t);
    let t = DiskTier::open(dir.path(), SIZE, MAX_VALUE).unwrap();
    assert_eq!(allocated(&dir.file()), sizes[6]);
    for i in 0..6 * 64 {
        assert_eq!(t.get(&key(i)).unwrap().unwrap().value, value(i), "key {i}");
    }
}

#[test]
fn a_ring_that_wraps_stays_within_its_maximum() {
    let dir = TempDir::new("grow-wrap");
    let t = DiskTier::open(dir.path(), 8 * MB, MAX_VALUE).unwrap();
    for i in 0..2000 {
        t.set(&key(i), &value(i), 0, None).unwrap();
    }
    let g = t.geometry();
    // Fully reserved by now; a filesystem may add a few blocks of its own (extent metadata).
    let used = allocated(&dir.file());
    assert!(
        used <= g.file_size + 256 * 1024,
        "{used} bytes for a {}-byte file",
        g.file_size
    );
    assert!(
        used >= g.file_size - g.index_bytes(),
        "the wrapped ring is all reserved"
    );
    for i in 1990..2000 {
        assert_eq!(t.get(&key(i)).unwrap().unwrap().value, value(i), "key {i}");
    }
}

/// What a child process does, by SMARTCACHE_GROW_ROLE.
#[test]
#[ignore = "child process of the growth tests; started by them with SMARTCACHE_GROW_ROLE set"]
fn grow_child() {
    let role = std::env::var("SMARTCACHE_GROW_ROLE").expect("run only as a growth test's child");
    let dir = PathBuf::from(std::env::var("SMARTCACHE_GROW_DIR").unwrap());
    match role.as_str() {
        "follower" => follow_growth(&dir),
        "full" => fill_the_filesystem(&dir),
        other => panic!("unknown role {other}"),
    }
}

/// Opens the file while it is small, tells the parent, waits until the parent has grown it by
/// several steps, then reads every entry the parent wrote and writes some of its own.
fn follow_growth(dir: &Path) {
    let t = DiskTier::open(dir, SIZE, MAX_VALUE).unwrap();
    let small = allocated(&dir.join(smartcache::disk::FILE_NAME));
    std::fs::write(dir.join("follower-open"), small.to_string()).unwrap();
    let grown = dir.join("parent-grew");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !grown.exists() {
        assert!(Instant::now() < deadline, "the parent never grew the file");
        std::thread::sleep(Duration::from_millis(10));
    }
    let n: u64 = std::fs::read_to_string(&grown).unwrap().parse().unwrap();
    for i in 0..n {
        let hit = t
            .get(&key(i))
            .unwrap()
            .unwrap_or_else(|| panic!("key {i} missing"));
        assert_eq!(check_value(&key(i), &hit.value), Some(i), "key {i}");
    }
    for i in n..n + 200 {
        t.set(&key(i), &value(i), 0, None).unwrap();
    }
}

#[test]
fn another_process_follows_the_growth_without_reopening() {
    let dir = TempDir::new("grow-follow");
    let t = DiskTier::open(dir.path(), SIZE, MAX_VALUE).unwrap();
    t.set(&key(0), &value(0), 0, None).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "grow_child", "--ignored", "--nocapture"])
        .env("SMARTCACHE_GROW_ROLE", "follower")
        .env("SMARTCACHE_GROW_DIR", dir.path())
        .spawn()
        .unwrap();
    let opened = dir.path().join("follower-open");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !opened.exists() {
        assert!(
            Instant::now() < deadline,
            "the follower never opened the file"
        );
        assert!(child.try_wait().unwrap().is_none(), "the follower died");
        std::thread::sleep(Duration::from_millis(10));
    }
    let small = allocated(&dir.file());
    // 600 values of 16 KiB: the ring grows by ~10 steps and most of the index's chunks
    // get reserved, all after the follower mapped the file.
    let n = 600;
    for i in 1..n {
        t.set(&key(i), &value(i), 0, None).unwrap();
    }
    assert!(allocated(&dir.file()) >= small + 8 * MB);
    std::fs::write(dir.path().join("parent-grew"), n.to_string()).unwrap();
    assert!(child.wait().unwrap().success(), "the follower failed");
    for i in n..n + 200 {
        let hit = t
            .get(&key(i))
            .unwrap()
            .unwrap_or_else(|| panic!("key {i} missing"));
        assert_eq!(check_value(&key(i), &hit.value), Some(i), "key {i}");
    }
}

/// On a filesystem of a few MiB, sets a 256 MiB cache until the disk is full: the set that
/// needed the space fails with Error::Io and is counted; what was stored stays readable and
/// deletes still work.
fn fill_the_filesystem(dir: &Path) {
    let t = DiskTier::open(&dir.join("cache"), SIZE, MAX_VALUE).unwrap();
    let mut stored = 0;
    let err = loop {
        match t.set(&key(stored), &value(stored), 0, None) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 10_000, "a 4 MiB filesystem never filled up");
    };
    assert!(matches!(err, Error::Io(_)), "{err}");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(stored >= 10, "only {stored} entries fitted");
    assert_eq!(t.stats().counters.errors, 1);
    for i in 0..stored {
        assert_eq!(t.get(&key(i)).unwrap().unwrap().value, value(i), "key {i}");
    }
    assert!(t.delete(&key(0)).unwrap());
    // The same set fails the same way, again without harm.
    assert!(matches!(
        t.set(&key(stored), &value(stored), 0, None),
        Err(Error::Io(_))
    ));
}

#[test]
fn a_full_filesystem_fails_the_set_with_io_and_does_not_crash() {
    // A 4 MiB tmpfs, mounted in a private mount namespace (as root, or as a mapped root in a
    // user namespace), so nothing outside the child sees it.
    let dir = TempDir::new("grow-full");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = "mount -t tmpfs -o size=4m smartcache-test \"$SMARTCACHE_GROW_DIR\" && \
                  exec \"$0\" --exact grow_child --ignored --nocapture";
    let mut ran = false;
    for unshare in [
        &["--mount"][..],
        &["--user", "--map-root-user", "--mount"][..],
    ] {
        let Ok(out) = Command::new("unshare")
            .args(unshare)
            .args(["sh", "-c", script])
            .arg(&exe)
            .env("SMARTCACHE_GROW_ROLE", "full")
            .env("SMARTCACHE_GROW_DIR", &mnt)
            .output()
        else {
            break;
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !stderr.contains("test result") {
            // unshare or mount refused (no privilege): try the next way.
            eprintln!("unshare {unshare:?}: {stderr}");
            continue;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "child did not run:\n{stdout}");
        ran = true;
        break;
    }
    if !ran {
        // Without a way to mount a small filesystem there is nothing to fill; say so loudly.
        eprintln!("SKIPPED: cannot mount a small tmpfs here (needs root or user namespaces)");
    }
}
