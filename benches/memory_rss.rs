//! Bytes per entry by RSS: how much a process grows per entry stored, beyond the entry's own
//! key and value bytes, at 1,000,000 entries (16-byte keys, 100-byte values), SmartCache beside
//! quick_cache and moka in the same run.
//!
//! Each cache is measured in a child process of its own (this binary, re-run with `--child
//! NAME`), so memory one cache freed and the allocator kept cannot count for the next. A child
//! reads its resident set (/proc/self/statm) before opening the cache and after the last
//! insert; overhead per entry = growth / entries - 116. SmartCache is driven through its C ABI
//! (`sz_cache_set`, which copies the bytes), with its default jemalloc arena; quick_cache and
//! moka store `Box<[u8]>` keys and `Arc<[u8]>` values, allocated per insert as a caller would.
//!
//! `make bench-memory` (or `cargo bench --bench memory_rss`) prints a markdown table.

mod common;

use common::*;
use std::process::Command;
use std::sync::Arc;

const ENTRIES: u64 = 1_000_000;
const PAYLOAD: u64 = 16 + VALUE_LEN as u64;
const CACHES: [&str; 3] = ["smartcache", "quick_cache", "moka"];

/// Resident bytes of this process.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm's resident field");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Fills one cache and prints "growth_bytes resident_entries" for the parent.
fn child(name: &str) {
    let value = [5u8; VALUE_LEN];
    let n = ENTRIES as usize;
    // Keys are made one at a time (`key(i)` on the stack), so the only heap that grows is the
    // cache's, plus whatever the caller hands it.
    let before = rss();
    let (after, resident) = match name {
        "smartcache" => {
            let c = Smart::open(n, true);
            (0..ENTRIES).for_each(|i| c.set(&key(i), &value));
            let after = rss();
            let resident = (0..ENTRIES).filter(|&i| c.get(&key(i)).is_some()).count();
            (after, resident)
        }
        "quick_cache" => {
            let c = quick(n);
            (0..ENTRIES).for_each(|i| c.insert(Box::from(&key(i)[..]), Arc::from(&value[..])));
            let after = rss();
            (after, c.len())
        }
        "moka" => {
            let c = moka(n);
            (0..ENTRIES).for_each(|i| c.insert(Box::from(&key(i)[..]), Arc::from(&value[..])));
            c.run_pending_tasks();
            let after = rss();
            (after, c.entry_count() as usize)
        }
        other => panic!("unknown cache {other}"),
    };
    println!("{} {resident}", after - before);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1]);
    }
    let exe = std::env::current_exe().expect("own path");
    println!("## Bytes per entry by RSS at 1,000,000 entries (16 B key + 100 B value)\n");
    println!("| cache | RSS growth | resident entries | bytes/entry over the 116-byte payload |");
    println!("|---|---|---|---|");
    for name in CACHES {
        let out = Command::new(&exe)
            .args(["--child", name])
            .output()
            .expect("run a child");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().unwrap());
        let (growth, resident) = (fields.next().unwrap(), fields.next().unwrap());
        let per_entry = growth as f64 / ENTRIES as f64 - PAYLOAD as f64;
        println!(
            "| {name} | {:.1} MiB | {resident} | {per_entry:.1} |",
            growth as f64 / (1 << 20) as f64
        );
    }
}
