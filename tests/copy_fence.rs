//! The copy fence of the write log (src/coherence/write_log.rs): a delete waits for the copies from
//! disk into Redis in flight in its group of keys. A process killed in the middle of a copy
//! leaves its group's in-flight count raised for ever; no delete may then wait longer than the
//! bound it is given, under steady copy traffic, nor when the file's start times lie.
//!
//! The copiers are this test binary re-executed with SMARTCACHE_COPIER_DIR set, running the
//! ignored `copier_child` entry point: it holds a copy of every group in flight, over and over,
//! until it is SIGKILLed at a random moment.

mod common;
mod support;

use common::{Rng, TempDir};
use smartcache::coherence::write_log::{WriteLog, FILE_NAME};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Groups of keys in the file (docs/disk-format.md): in-flight counts and start times as
/// pairs of u64 from byte 512 of the header page.
const GROUPS: u64 = 128;
const COPIES_OFF: u64 = 512;
/// The bound the deletes are given (the library passes 3 x redis_timeout_ms + 100 ms).
const BOUND: Duration = Duration::from_millis(400);
/// What "within the bound" allows for a busy machine: the bound plus a second.
const SLACK: Duration = Duration::from_secs(1);

#[test]
#[ignore = "child process of the copy fence test; started by it with SMARTCACHE_COPIER_DIR set"]
fn copier_child() {
    let Ok(dir) = std::env::var("SMARTCACHE_COPIER_DIR") else {
        panic!("run only as the copy fence test's child");
    };
    let log = WriteLog::open(Path::new(&dir)).unwrap();
    println!("copying");
    loop {
        let in_flight: Vec<_> = (0..GROUPS).map(|g| log.copying(g)).collect();
        drop(in_flight);
    }
}

/// In-flight counts left raised in the file, per group.
fn raised_counts(dir: &Path) -> Vec<u64> {
    let header = std::fs::read(dir.join(FILE_NAME)).unwrap();
    (0..GROUPS as usize)
        .map(|g| {
            let at = COPIES_OFF as usize + 16 * g;
            u64::from_le_bytes(header[at..at + 8].try_into().unwrap())
        })
        .collect()
}

fn kill_a_copier_mid_copy(dir: &Path, rng: &mut Rng) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "copier_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SMARTCACHE_COPIER_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The random moment counts from when the child runs our loop.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        if line.contains("copying") {
            break;
        }
    }
    std::thread::sleep(Duration::from_micros(rng.below(3_000)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Times one wait for copies; asserts it ended within the bound (plus slack).
fn timed_wait(log: &WriteLog, hash: Option<u64>) -> Duration {
    let started = Instant::now();
    log.wait_for_copies(hash, BOUND);
    let waited = started.elapsed();
    assert!(
        waited < BOUND + SLACK,
        "a wait for copies of {hash:?} took {waited:?}, the bound is {BOUND:?}"
    );
    waited
}

#[test]
fn after_copiers_killed_mid_copy_no_delete_waits_past_its_bound() {
    let dir = TempDir::new("copy-fence");
    let log = Arc::new(WriteLog::open(dir.path()).unwrap());
    let (mut rng, seed) = Rng::seeded_from_time();
    eprintln!("seed {seed}");
    for _ in 0..30 {
        kill_a_copier_mid_copy(dir.path(), &mut rng);
    }
    let raised = raised_counts(dir.path());
    let leaked = raised.iter().filter(|&&n| n > 0).count();
    assert!(
        leaked > 0,
        "no kill landed mid-copy: the test proved nothing"
    );

    // Steady copy traffic in every group, as other readers would make it: each group's latest
    // start time stays fresh, so the leaked counts look like copies in flight.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for g in 0..GROUPS {
                    let _copy = log.copying(g);
                }
            }
        })
    };
    let mut longest = Duration::ZERO;
    // Every eighth group: each wait may take the whole bound.
    for g in (0..GROUPS).step_by(8) {
        longest = longest.max(timed_wait(&log, Some(g)));
    }
    longest = longest.max(timed_wait(&log, None)); // a clear waits for every group
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    eprintln!("{leaked} groups with leaked counts; longest wait under traffic {longest:?}");

    // Start times in the future (a wall clock stepped back, a damaged file): not waited for.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(FILE_NAME))
        .unwrap();
    let hour_ahead = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 3_600_000;
    for (g, _) in raised.iter().enumerate().filter(|(_, n)| **n > 0) {
        let at = COPIES_OFF + 16 * g as u64 + 8;
        file.write_all_at(&hour_ahead.to_le_bytes(), at).unwrap();
        timed_wait(&log, Some(g as u64));
    }
    timed_wait(&log, None);
}

#[test]
fn a_set_waits_for_the_copies_in_flight_of_its_key() {
    // A copy from disk into Redis of the key's older value, in flight in another process (here
    // held in every group): its SET NX may land once the set's own value has left Redis (a
    // concurrent delete or clear), and is withdrawn only when the copy re-reads the disk. The
    // set must not return before that.
    let server = support::redis_server::RedisServer::start();
    let dir = TempDir::new("copy-fence-set");
    let mut config = smartcache::Config {
        redis_enabled: true,
        redis_url: server.url(0),
        disk_enabled: true,
        disk_path: dir.path().to_str().unwrap().into(),
        disk_max_size: 8 << 20,
        auto_expire_interval: 0,
        ..smartcache::Config::default()
    };
    config.redis_timeout_ms = 100; // the bound: 3 x 100 + 100 ms
    let cache = smartcache::Cache::open(config).unwrap();
    let copier = WriteLog::open(dir.path()).unwrap();
    let started = Instant::now();
    cache.set(b"k", b"v1", None).unwrap();
    let alone = started.elapsed();
    let in_flight: Vec<_> = (0..GROUPS).map(|g| copier.copying(g)).collect();
    let release_after = Duration::from_millis(150);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(release_after);
            drop(in_flight);
        });
        cache.set(b"k", b"v2", None).unwrap();
    });
    let waited = started.elapsed();
    assert!(
        waited >= release_after,
        "the set returned after {waited:?}, before the copy in flight ended ({alone:?} alone)"
    );
    assert!(waited < Duration::from_millis(400) + SLACK, "{waited:?}");
}
