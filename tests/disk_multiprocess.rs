//! Several processes (like pre-fork web server workers) open one directory at once: every read
//! in every process is one of the values written for that key, and writes from all processes
//! are visible to all.
//!
//! Workers are this test binary re-executed with SMARTCACHE_MP_DIR set, running the ignored
//! `mp_worker` entry point. A worker that sees a wrong value panics and exits non-zero.

mod common;

use common::{check_value, make_value, Rng, TempDir};
use smartcache::disk::DiskTier;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEYS: u64 = 48;
/// Small enough that the ring wraps many times during the test, so readers race reclaims.
const SIZE: u64 = 1 << 20;
const MAX_VALUE: usize = 16 << 10;
const WORKERS: u64 = 4;

fn key(i: u64) -> Vec<u8> {
    format!("mp-{i}").into_bytes()
}

#[test]
#[ignore = "worker process of the multi-process test; started by it with SMARTCACHE_MP_DIR set"]
fn mp_worker() {
    let Ok(dir) = std::env::var("SMARTCACHE_MP_DIR") else {
        panic!("run only as the multi-process test's worker");
    };
    let id: u64 = std::env::var("SMARTCACHE_MP_ID").unwrap().parse().unwrap();
    let t = DiskTier::open(Path::new(&dir), SIZE, MAX_VALUE).unwrap();
    let mut rng = Rng::new(id * 1_000_003 + 17);
    let (mut hits, mut sets, mut foreign_hits) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut version = 0;
    while Instant::now() < deadline {
        let k = rng.below(KEYS);
        if rng.below(3) == 0 {
            version += 1;
            // The version names the writer, so readers can tell their own writes from others'.
            let v = (id << 48) | version;
            let big = rng.below(10) == 0;
            let len = 16 + rng.below(if big { 12_000 } else { 600 }) as usize;
            t.set(&key(k), &make_value(&key(k), v, len), 0, None)
                .unwrap();
            sets += 1;
            if sets == 1 {
                if let Some(ready) = std::env::var_os("SMARTCACHE_MP_READY") {
                    // Tells the parent this worker has written (see the creation test).
                    std::fs::write(Path::new(&ready).join(id.to_string()), b"").unwrap();
                }
            }
        } else if let Some(hit) = t.get(&key(k)).unwrap() {
            let v = check_value(&key(k), &hit.value)
                .unwrap_or_else(|| panic!("worker {id}: wrong value for key {k}"));
            assert!(
                v >> 48 < WORKERS,
                "worker {id}: version {v:x} never written"
            );
            hits += 1;
            if v >> 48 != id {
                foreign_hits += 1;
            }
        }
        if rng.below(200) == 0 {
            t.delete(&key(k)).unwrap();
        }
    }
    assert_eq!(t.stats().corruptions, 0);
    println!("RESULT {hits} {sets} {foreign_hits}");
}

#[test]
fn processes_sharing_a_file_read_only_written_values() {
    let dir = TempDir::new("multiprocess");
    // One process creates the file first so the workers race on use, not on creation (creation
    // races are covered by the next test).
    DiskTier::open(dir.path(), SIZE, MAX_VALUE).unwrap();
    let children: Vec<_> = (0..WORKERS)
        .map(|id| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "mp_worker",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("SMARTCACHE_MP_DIR", dir.path())
                .env("SMARTCACHE_MP_ID", id.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut hits, mut sets, mut foreign) = (0, 0, 0);
    for (id, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "worker {id} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // libtest may print "test mp_worker ... " on the same line before the result.
        let at = stdout.find("RESULT ").expect("result line");
        let line = stdout[at + 7..].lines().next().unwrap();
        let n: Vec<u64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        hits += n[0];
        sets += n[1];
        foreign += n[2];
    }
    eprintln!(
        "multiprocess: {sets} sets, {hits} hits, {foreign} of them written by another process"
    );
    assert!(
        sets > 1000 && hits > 1000,
        "workers did too little: {sets} sets, {hits} hits"
    );
    // How much the workers overlap depends on scheduling (a loaded CI machine may run them
    // nearly one after another), so require only that they did see each other's writes.
    assert!(foreign > 0, "processes must see each other's writes");
    // The parent sees the workers' final state, every value intact. (The last worker to finish
    // may have rewritten every key alone, so no claim about who wrote them.)
    let t = DiskTier::open(dir.path(), SIZE, MAX_VALUE).unwrap();
    let mut present = 0;
    for k in 0..KEYS {
        if let Some(hit) = t.get(&key(k)).unwrap() {
            let v = check_value(&key(k), &hit.value).expect("intact value");
            assert!(v >> 48 < WORKERS);
            present += 1;
        }
    }
    assert!(present > 0);
    assert_eq!(t.stats().corruptions, 0);
}

#[test]
fn processes_creating_the_file_at_once_agree_on_one_file() {
    for attempt in 0..5 {
        let dir = TempDir::new("multiprocess-create");
        // Outside `dir`, whose only file must be the cache's.
        let ready = TempDir::new("multiprocess-create-ready");
        let mut children: Vec<_> = (0..WORKERS)
            .map(|id| {
                Command::new(std::env::current_exe().unwrap())
                    .args(["mp_worker", "--exact", "--ignored", "--nocapture"])
                    .env("SMARTCACHE_MP_DIR", dir.path())
                    .env("SMARTCACHE_MP_ID", id.to_string())
                    .env("SMARTCACHE_MP_READY", ready.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // Let them create and start writing, then stop them; only the file's state matters.
        // Each worker reports its first write: a fixed pause is not enough on a busy machine,
        // where starting the processes alone can take longer, leaving nothing written.
        let t = Instant::now();
        while std::fs::read_dir(ready.path()).unwrap().count() < WORKERS as usize {
            for (id, c) in children.iter_mut().enumerate() {
                if let Some(status) = c.try_wait().unwrap() {
                    assert!(
                        ready.path().join(id.to_string()).exists(),
                        "attempt {attempt}: worker {id} exited before writing: {status}"
                    );
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "attempt {attempt}: workers never wrote"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["smartcache.l3"], "attempt {attempt}");
        let t = DiskTier::open(dir.path(), SIZE, MAX_VALUE).unwrap();
        let hits = (0..KEYS)
            .filter_map(|k| t.get(&key(k)).unwrap().map(|h| (k, h)))
            .inspect(|(k, h)| assert!(check_value(&key(*k), &h.value).is_some()))
            .count();
        assert!(
            hits > 0,
            "attempt {attempt}: the workers' writes landed in one shared file"
        );
    }
}
