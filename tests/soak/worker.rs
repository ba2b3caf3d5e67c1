//! A soak worker process: the soak's test binary run again with `SOAK_WORKER` set. Its threads
//! do random operations on a cache with all three tiers until `SOAK_UNTIL` (a CLOCK_MONOTONIC
//! time) and log each one (history.rs).

use crate::history::{key_name, now_ns, value_for, Kind, Logger, KEYS};
use crate::workload::Rng;
use smartcache::{Cache, Config};
use std::path::PathBuf;
use std::sync::Arc;

/// What a worker process does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Reads and writes; never killed, so it is the one checked.
    Mixed,
    /// Only writes (set, set_many, delete, clear); the one the fault injector SIGKILLs. A
    /// process killed while copying a disk hit into Redis may leave a replaced value there
    /// until its Redis expiry (a gap docs/coherence.md states), so killed processes do not read.
    Writer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Mixed => "mixed",
            Role::Writer => "writer",
        }
    }
}

pub const THREADS: u32 = 3;

/// The environment a worker process reads.
pub struct WorkerEnv {
    pub id: u32,
    pub role: Role,
    pub disk_path: PathBuf,
    pub redis_url: String,
    pub log_dir: PathBuf,
    pub until_ns: u64,
}

impl WorkerEnv {
    pub fn from_env() -> Option<WorkerEnv> {
        let var = |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("{n} not set"));
        let id = std::env::var("SOAK_WORKER").ok()?.parse().unwrap();
        Some(WorkerEnv {
            id,
            role: if var("SOAK_ROLE") == "writer" {
                Role::Writer
            } else {
                Role::Mixed
            },
            disk_path: var("SOAK_DISK_PATH").into(),
            redis_url: var("SOAK_REDIS_URL"),
            log_dir: var("SOAK_LOG_DIR").into(),
            until_ns: var("SOAK_UNTIL").parse().unwrap(),
        })
    }

    /// The variables for `Command::envs`.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SOAK_WORKER", self.id.to_string()),
            ("SOAK_ROLE", self.role.name().to_string()),
            ("SOAK_DISK_PATH", self.disk_path.display().to_string()),
            ("SOAK_REDIS_URL", self.redis_url.clone()),
            ("SOAK_LOG_DIR", self.log_dir.display().to_string()),
            ("SOAK_UNTIL", self.until_ns.to_string()),
        ]
    }
}

pub fn log_path(log_dir: &std::path::Path, worker: u32, thread: u32) -> PathBuf {
    log_dir.join(format!("w{worker}-t{thread}.log"))
}

/// Every tier on: memory, the soak's redis-server, the shared disk_path. A short Redis timeout
/// so a paused server opens the breaker quickly.
pub fn config(disk_path: &std::path::Path, redis_url: &str) -> Config {
    let mut c = Config::default();
    for (name, value) in [
        ("disk_enabled", "true"),
        ("disk_path", disk_path.to_str().unwrap()),
        ("disk_max_size", "4M"),
        ("max_value_size", "4096"),
        ("memory_capacity", "1000"),
        ("redis_enabled", "true"),
        ("redis_url", redis_url),
        ("redis_timeout_ms", "50"),
    ] {
        c.set(name, value)
            .unwrap_or_else(|e| panic!("{name}={value}: {e}"));
    }
    c
}

pub fn run(env: WorkerEnv) {
    let cache = Arc::new(Cache::open(config(&env.disk_path, &env.redis_url)).expect("open cache"));
    let env = Arc::new(env);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (cache, env) = (Arc::clone(&cache), Arc::clone(&env));
            std::thread::spawn(move || thread_ops(&cache, &env, t))
        })
        .collect();
    threads
        .into_iter()
        .for_each(|t| t.join().expect("worker thread"));
}

fn pick_kind(role: Role, rng: &mut Rng) -> Kind {
    let r = rng.below(1000);
    match role {
        Role::Mixed => match r {
            0..=449 => Kind::Get,
            450..=599 => Kind::GetMany,
            600..=799 => Kind::Set,
            800..=879 => Kind::Delete,
            880..=997 => Kind::SetMany,
            _ => Kind::Clear,
        },
        Role::Writer => match r {
            0..=549 => Kind::Set,
            550..=749 => Kind::Delete,
            750..=992 => Kind::SetMany,
            _ => Kind::Clear,
        },
    }
}

fn thread_ops(cache: &Cache, env: &WorkerEnv, thread: u32) {
    let mut log = Logger::create(&log_path(&env.log_dir, env.id, thread));
    let stream = (u64::from(env.id) << 32) | u64::from(thread);
    let mut rng = Rng(stream.wrapping_mul(0x9E37_79B9).wrapping_add(now_ns()) | 1);
    let names: Vec<String> = (0..KEYS).map(key_name).collect();
    let mut seq = 0u64;
    while now_ns() < env.until_ns {
        seq += 1;
        let kind = pick_kind(env.role, &mut rng);
        let keys: Vec<usize> = match kind {
            Kind::Get | Kind::Set | Kind::Delete => vec![rng.below(KEYS as u64) as usize],
            Kind::GetMany | Kind::SetMany => {
                let mut ks: Vec<usize> = (0..2 + rng.below(4))
                    .map(|_| rng.below(KEYS as u64) as usize)
                    .collect();
                ks.sort_unstable();
                ks.dedup();
                ks
            }
            Kind::Clear => Vec::new(),
        };
        let values: Vec<String> = keys
            .iter()
            .map(|&k| value_for(env.id, thread, seq, k))
            .collect();
        log.begin(seq, kind, &keys);
        match kind {
            Kind::Get => {
                let r = cache.get(names[keys[0]].as_bytes());
                let found = r.as_ref().ok().and_then(|b| b.as_ref());
                log.end(seq, r.is_ok(), &[found.map(|b| b.value())]);
            }
            Kind::GetMany => {
                let ks: Vec<&[u8]> = keys.iter().map(|&k| names[k].as_bytes()).collect();
                match cache.get_many(&ks) {
                    Ok(bs) => {
                        let found: Vec<Option<&[u8]>> =
                            bs.iter().map(|b| b.as_ref().map(|b| b.value())).collect();
                        log.end(seq, true, &found);
                    }
                    Err(_) => log.end(seq, false, &[]),
                }
            }
            Kind::Set => {
                let r = cache.set(names[keys[0]].as_bytes(), values[0].as_bytes(), None);
                log.end(seq, r.is_ok(), &[]);
            }
            Kind::SetMany => {
                let items: Vec<(&[u8], &[u8])> = keys
                    .iter()
                    .zip(&values)
                    .map(|(&k, v)| (names[k].as_bytes(), v.as_bytes()))
                    .collect();
                let r = cache.set_many(&items, None);
                log.end(seq, r.is_ok(), &[]);
            }
            Kind::Delete => {
                let r = cache.delete(names[keys[0]].as_bytes());
                log.end(seq, r.is_ok(), &[]);
            }
            Kind::Clear => {
                let r = cache.clear();
                log.end(seq, r.is_ok(), &[]);
            }
        }
    }
}
