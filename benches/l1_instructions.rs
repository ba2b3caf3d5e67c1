//! A fixed hit workload for instruction counting: run under callgrind with
//! `--toggle-collect=l1_instructions::gets_*` to compare the hot paths of SmartCache (through its
//! C ABI) and quick_cache exactly, since times on this machine vary by tens of percent:
//!
//! `smartcache_sets` counts sets instead (`--toggle-collect='l1_instructions::sets_*'`): 200,000
//! over a full cache of 100,000, half replacing a resident key, half inserting and evicting.
//!
//! `smartcache_disk_sets` counts the same sets on a cache with the disk tier enabled.
//!
//! `smartcache_disk` is the same workload on a cache with the disk tier enabled (every get
//! still a memory hit): the difference is what keeping memory in step with the other processes
//! sharing the disk file (the write log check) costs a hit. `smartcache_disk_signed` adds
//! value_secret: signing is done by the disk and Redis tiers only, so it must count the same.
//!
//! `smartcache_redis` and `smartcache_redis_invalidation` (a redis-server started here) count
//! the same memory hits with the Redis tier on, without and with `redis_invalidation`: the hit
//! path must cost the same (the option adds nothing to it, see src/tiered/coherent.rs).
//!
//! ```sh
//! cargo bench --bench l1_instructions --no-run
//! for c in smartcache smartcache_disk smartcache_disk_signed smartcache_redis \
//!   smartcache_redis_invalidation quick_cache moka; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!   --toggle-collect='l1_instructions::gets_*' target/release/deps/l1_instructions-* $c; done
//! ```

mod common;
#[path = "../tests/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use common::*;
use std::hint::black_box;
use std::sync::Arc;

const RESIDENT: u64 = 100_000;
const GETS: usize = 200_000;
/// Keys of the Redis variants.
const REDIS_RESIDENT: u64 = 20_000;

#[inline(never)]
fn gets_smartcache(c: &Smart, keys: &[[u8; 16]]) -> u64 {
    keys.iter().map(|k| c.get(k).unwrap_or(0) as u64).sum()
}

/// Sets over a full cache: half replace a resident key, half insert a new one (and evict).
#[inline(never)]
fn sets_smartcache(c: &Smart, keys: &[[u8; 16]], value: &[u8]) -> u64 {
    keys.iter().for_each(|k| c.set(k, value));
    keys.len() as u64
}

#[inline(never)]
fn gets_quick_cache(c: &Quick, keys: &[[u8; 16]]) -> u64 {
    keys.iter()
        .map(|k| quick_get(c, k).unwrap_or(0) as u64)
        .sum()
}

#[inline(never)]
fn gets_moka(c: &Moka, keys: &[[u8; 16]]) -> u64 {
    keys.iter()
        .map(|k| moka_get(c, k).unwrap_or(0) as u64)
        .sum()
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let value = [7u8; VALUE_LEN];
    let mut rng = Rng(1);
    let keys: Vec<[u8; 16]> = (0..GETS).map(|_| key(rng.next_u64() % RESIDENT)).collect();
    let sum = match which.as_str() {
        "smartcache" => {
            let c = Smart::open(RESIDENT as usize * 2, true);
            (0..RESIDENT).for_each(|i| c.set(&key(i), &value));
            gets_smartcache(&c, &keys)
        }
        "smartcache_sets" => {
            let c = Smart::open(RESIDENT as usize, true);
            (0..RESIDENT).for_each(|i| c.set(&key(i), &value));
            let keys: Vec<[u8; 16]> = (0..GETS)
                .map(|_| key(rng.next_u64() % (2 * RESIDENT)))
                .collect();
            sets_smartcache(&c, &keys, &value);
            // Every key read is then one that was set: the sum check below holds.
            (0..GETS).map(|_| 7u64).sum()
        }
        "smartcache_disk" | "smartcache_disk_signed" => {
            let dir = std::env::temp_dir().join(format!("sc-l1-instr-{}", std::process::id()));
            let path = dir.to_str().unwrap();
            let mut extra = vec![("disk_enabled", "true"), ("disk_path", path)];
            if which == "smartcache_disk_signed" {
                extra.push(("value_secret", "instructions-secret-0123"));
            }
            let c = Smart::open_with(RESIDENT as usize * 2, true, &extra);
            (0..RESIDENT).for_each(|i| c.set(&key(i), &value));
            let sum = gets_smartcache(&c, &keys);
            let _ = std::fs::remove_dir_all(&dir);
            sum
        }
        "smartcache_disk_sets" => {
            // Sets with the disk tier: what a write costs besides its memory insert (the disk
            // record, the write log entries, the writes-in-flight count).
            let dir = std::env::temp_dir().join(format!("sc-l1-sets-{}", std::process::id()));
            let path = dir.to_str().unwrap();
            let extra = [("disk_enabled", "true"), ("disk_path", path)];
            let c = Smart::open_with(RESIDENT as usize, true, &extra);
            (0..RESIDENT).for_each(|i| c.set(&key(i), &value));
            let keys: Vec<[u8; 16]> = (0..GETS)
                .map(|_| key(rng.next_u64() % (2 * RESIDENT)))
                .collect();
            sets_smartcache(&c, &keys, &value);
            let _ = std::fs::remove_dir_all(&dir);
            (0..GETS).map(|_| 7u64).sum()
        }
        "smartcache_redis" | "smartcache_redis_invalidation" => {
            // Fewer keys than the memory-only cases (each set is a Redis round trip, slow under
            // valgrind); the same gets. Both variants alike, so they compare with each other.
            let server = redis_server::RedisServer::start();
            let url = server.url(0);
            let invalidation = which == "smartcache_redis_invalidation";
            let extra = [
                ("redis_enabled", "true"),
                ("redis_url", url.as_str()),
                ("redis_key_prefix", "l1-instr:"),
                ("redis_timeout_ms", "5000"),
                (
                    "redis_invalidation",
                    if invalidation { "true" } else { "false" },
                ),
            ];
            let c = Smart::open_with(REDIS_RESIDENT as usize * 2, true, &extra);
            (0..REDIS_RESIDENT).for_each(|i| c.set(&key(i), &value));
            // With invalidation on, each set's own report comes back and drops the fresh entry:
            // read every key until memory holds them all (gets write nothing to Redis, so
            // nothing drops them again), so the gets counted below are all memory hits in both
            // variants.
            while c.memory_size() < REDIS_RESIDENT {
                std::thread::sleep(std::time::Duration::from_millis(100));
                (0..REDIS_RESIDENT).for_each(|i| {
                    c.get(&key(i));
                });
            }
            let keys: Vec<[u8; 16]> = (0..GETS)
                .map(|_| key(rng.next_u64() % REDIS_RESIDENT))
                .collect();
            gets_smartcache(&c, &keys)
        }
        "quick_cache" => {
            let c = quick(RESIDENT as usize * 2);
            (0..RESIDENT).for_each(|i| c.insert(key(i).into(), Arc::from(&value[..])));
            gets_quick_cache(&c, &keys)
        }
        "moka" => {
            let c = moka(RESIDENT as usize * 2);
            (0..RESIDENT).for_each(|i| c.insert(key(i).into(), Arc::from(&value[..])));
            c.run_pending_tasks();
            gets_moka(&c, &keys)
        }
        // `cargo bench` runs every bench binary with --bench: nothing to count then.
        _ => return,
    };
    assert_eq!(black_box(sum), 7 * GETS as u64, "every get must hit");
    println!("{which}: {GETS} gets");
}
