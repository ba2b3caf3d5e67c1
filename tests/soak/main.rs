//! Consistency soak: several worker processes, each with several threads doing random
//! operations (get, get_many, set, set_many, delete, now and then clear) on a small key space,
//! on caches with all three tiers (memory, a private redis-server, one shared disk_path), while
//! a fault injector pauses Redis (SIGSTOP/SIGCONT), kills and restarts it, and SIGKILLs writer
//! processes (starting new ones). Afterwards every hit is checked against the logged history
//! (history.rs) for the same-host guarantee of docs/coherence.md.
//!
//! `make soak` (SOAK_SECONDS, default 300) and `make soak-quick` (30 s without faults, in
//! `make test`) run it: `cargo test --release --test soak -- --ignored`. SOAK_REDIS_FAULTS=0
//! leaves Redis alone, SOAK_WRITER_KILLS=0 the writers.

#[path = "../common/mod.rs"]
mod common;
mod history;
#[path = "../support/mod.rs"]
mod support;
mod worker;
#[path = "../support/workload.rs"]
mod workload;

use common::TempDir;
use history::now_ns;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::redis_server::RedisServer;
use worker::{Role, WorkerEnv};
use workload::Rng;

const MIXED_WORKERS: u32 = 3;
const WRITER_WORKERS: u32 = 2;

/// A fault the injector made, for the report and for placing violations in time.
struct Fault {
    start: u64,
    end: u64,
    what: &'static str,
}

#[derive(Default)]
struct FaultCounts {
    redis_pauses: u64,
    redis_kills: u64,
    writer_kills: u64,
}

fn spawn_worker(env: &WorkerEnv) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "consistency_soak", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .envs(env.vars())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
    // async-signal-safe: a worker dies with the soak instead of running on orphaned.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().expect("spawn soak worker")
}

fn seconds_from_env() -> u64 {
    std::env::var("SOAK_SECONDS")
        .ok()
        .map(|s| s.parse().expect("SOAK_SECONDS: a number of seconds"))
        .unwrap_or(60)
}

#[test]
#[ignore = "minutes long: run by `make soak` / `make soak-quick`"]
fn consistency_soak() {
    if let Some(env) = WorkerEnv::from_env() {
        worker::run(env);
        return;
    }
    let seconds = seconds_from_env();
    let redis_faults = std::env::var("SOAK_REDIS_FAULTS").map_or(true, |v| v != "0");
    let writer_kills = std::env::var("SOAK_WRITER_KILLS").map_or(true, |v| v != "0");
    let disk = TempDir::new("soak-disk");
    let logs = TempDir::new("soak-logs");
    let mut redis = RedisServer::start();
    let until = now_ns() + seconds * 1_000_000_000;
    // Same port after a restart, so one URL for the whole run.
    let redis_url = redis.url(0);
    let env_for = |id, role| WorkerEnv {
        id,
        role,
        disk_path: disk.path().to_path_buf(),
        redis_url: redis_url.clone(),
        log_dir: logs.path().to_path_buf(),
        until_ns: until,
    };
    // (id, role, process); killed ones leave, their replacements come with new ids.
    let mut workers: Vec<(u32, Role, Child)> = (0..MIXED_WORKERS + WRITER_WORKERS)
        .map(|id| {
            let role = if id < MIXED_WORKERS {
                Role::Mixed
            } else {
                Role::Writer
            };
            (id, role, spawn_worker(&env_for(id, role)))
        })
        .collect();
    let mut all_ids: Vec<u32> = workers.iter().map(|w| w.0).collect();
    let mut next_id = MIXED_WORKERS + WRITER_WORKERS;
    let mut death_ns: HashMap<u32, u64> = HashMap::new();
    let mut faults: Vec<Fault> = Vec::new();
    let mut counts = FaultCounts::default();
    let mut rng = Rng(now_ns() | 1);
    let sleep_ms = |ms: u64| std::thread::sleep(Duration::from_millis(ms));

    // Faults until two seconds before the end, so the last ones finish inside the run.
    while now_ns() + 2_000_000_000 < until {
        sleep_ms(300 + rng.below(1500));
        for (id, _, child) in workers.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("soak worker {id} exited early: {status}");
            }
        }
        if !redis_faults && !writer_kills {
            continue;
        }
        let start = now_ns();
        let what = match rng.below(if redis_faults { 3 } else { 1 }) {
            0 => {
                let writers: Vec<usize> = (0..workers.len())
                    .filter(|&i| workers[i].1 == Role::Writer)
                    .collect();
                let (id, _, mut child) =
                    workers.remove(writers[rng.below(writers.len() as u64) as usize]);
                child.kill().expect("SIGKILL a writer");
                child.wait().expect("reap a writer");
                death_ns.insert(id, now_ns());
                let env = env_for(next_id, Role::Writer);
                workers.push((next_id, Role::Writer, spawn_worker(&env)));
                all_ids.push(next_id);
                next_id += 1;
                counts.writer_kills += 1;
                "writer SIGKILLed, another started"
            }
            1 => {
                redis.pause();
                sleep_ms(100 + rng.below(1500));
                redis.resume();
                counts.redis_pauses += 1;
                "Redis paused (SIGSTOP .. SIGCONT)"
            }
            _ => {
                redis.stop();
                sleep_ms(rng.below(1000));
                redis.restart();
                counts.redis_kills += 1;
                "Redis SIGKILLed, restarted empty"
            }
        };
        faults.push(Fault {
            start,
            end: now_ns(),
            what,
        });
    }
    for (id, _, mut child) in workers {
        let status = child.wait().expect("wait for a soak worker");
        assert!(status.success(), "soak worker {id} failed: {status}");
    }

    let mut ops = Vec::new();
    for &id in &all_ids {
        for t in 0..worker::THREADS {
            ops.extend(history::read_log(
                &worker::log_path(logs.path(), id, t),
                id,
                t,
            ));
        }
    }
    let report = history::check(&ops, &death_ns);
    let mut kinds: Vec<_> = report.ops_by_kind.iter().collect();
    kinds.sort();
    eprintln!(
        "soak: {seconds} s, {} worker processes ({MIXED_WORKERS} mixed and {WRITER_WORKERS} \
         writers at a time, {} threads each), Redis faults {}",
        all_ids.len(),
        worker::THREADS,
        if redis_faults { "on" } else { "off" }
    );
    eprintln!(
        "soak: ops by kind {kinds:?}; errors by kind {:?}",
        report.errors_by_kind
    );
    eprintln!(
        "soak: calls cut short by SIGKILL {} (writes of them seen by a read {}); hits checked \
         {}, misses {}",
        report.killed_calls, report.killed_writes_seen, report.hits_checked, report.misses
    );
    eprintln!(
        "soak: faults: Redis pauses {}, Redis kills {}, writer SIGKILLs {}",
        counts.redis_pauses, counts.redis_kills, counts.writer_kills
    );
    eprintln!("soak: violations {}", report.violations.len());
    if !report.violations.is_empty() {
        for f in &faults {
            eprintln!("  fault [{} .. {}] {}", f.start, f.end, f.what);
        }
        // Which fault, if any, came last before each violation.
        let mut after: HashMap<&str, u64> = HashMap::new();
        for v in &report.violations {
            let last = faults.iter().rev().find(|f| f.start < v.read_start);
            *after
                .entry(last.map_or("no fault yet", |f| f.what))
                .or_default() += 1;
        }
        eprintln!("soak: violations by the latest fault before the read: {after:?}");
        for v in report.violations.iter().take(20) {
            let last = faults.iter().rev().find(|f| f.start < v.read_start);
            if let Some(f) = last {
                eprintln!(
                    "after \"{}\" [{} .. {}], read began {} ms after it ended:",
                    f.what,
                    f.start,
                    f.end,
                    (v.read_start as i64 - f.end as i64) / 1_000_000
                );
            }
            eprint!("{}", v.text);
        }
        panic!(
            "{} reads returned a replaced value (logs kept in {})",
            report.violations.len(),
            logs.path().display()
        );
    }
    assert!(
        report.hits_checked > 1000 && report.misses > 0,
        "too little checked: {} hits, {} misses",
        report.hits_checked,
        report.misses
    );
}
