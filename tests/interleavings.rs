//! The memory tier's pin reference counts, the write log and the disk-to-Redis copy fence
//! under the `shuttle` schedule checker: each model runs the real code (through
//! `smartcache::sync`, which is shuttle's under the `shuttle` feature) in threads that shuttle
//! interleaves at every atomic access and lock, over thousands of schedules, and checks a
//! property after each. Run with `make test-interleavings` (this file needs the feature).
//!
//! A failing schedule is printed by shuttle and can be replayed with `shuttle::replay`.

use shuttle::scheduler::{PctScheduler, RandomScheduler, Scheduler};
use shuttle::{thread, Config, Runner};
use smartcache::coherence::write_log::checked::CheckedFile;
use smartcache::coherence::write_log::Change;
use smartcache::memory::{MemoryOptions, MemoryTier};
use smartcache::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Schedules tried per model and scheduler; `SHUTTLE_ITERATIONS` overrides.
fn iterations() -> usize {
    std::env::var("SHUTTLE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000)
}

/// Runs `model` under a random scheduler and under PCT (which finds bugs needing a few
/// preemptions at chosen points with a known probability), each for `iterations()` schedules.
fn check(model: impl Fn() + Send + Sync + 'static) {
    let model = Arc::new(model);
    let schedulers: [Box<dyn Scheduler + Send>; 2] = [
        Box::new(RandomScheduler::new_from_seed(0x5eed, iterations())),
        Box::new(PctScheduler::new(3, iterations())),
    ];
    for scheduler in schedulers {
        let mut config = Config::new();
        config.silence_warnings = true;
        let model = Arc::clone(&model);
        Runner::new(scheduler, config).run(move || model());
    }
}

// ---- Freed memory, made visible -------------------------------------------------------------

/// The system allocator, except that while `QUARANTINE` is on, blocks of the sizes of the pin
/// model's entries are not returned: they are overwritten with `POISON` and kept, so a read of
/// a freed entry sees poison instead of whatever reused the memory, and a second free of the
/// same block finds it poisoned already and is counted in `DOUBLE_FREES`.
struct Quarantine;

static QUARANTINE: AtomicBool = AtomicBool::new(false);
/// Sizes quarantined: the entry blocks of the model (their header is larger under shuttle).
static QUARANTINED: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static DOUBLE_FREES: AtomicUsize = AtomicUsize::new(0);
const POISON: u8 = 0xdb;
/// Where poison starts in a quarantined block: after the entry header, so the header's
/// atomics stay intact and a pin that outlived its block fails on its key and value (set by
/// the model to the header's size, larger under shuttle).
static POISON_FROM: AtomicUsize = AtomicUsize::new(usize::MAX);

// SAFETY: every call is forwarded to System with the same arguments, except quarantined
// deallocations, which keep the block allocated (leaked) after overwriting its bytes: the
// caller gave up the block, so no one else reads or writes it through a live reference.
unsafe impl GlobalAlloc for Quarantine {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let size = layout.size();
        let from = POISON_FROM.load(Ordering::Relaxed);
        if QUARANTINE.load(Ordering::Relaxed)
            && size > from
            && QUARANTINED
                .iter()
                .any(|q| q.load(Ordering::Relaxed) == size)
        {
            // SAFETY: ptr is a block of `size` bytes from alloc, never returned to System
            // while quarantined, so it is still ours to read and write.
            unsafe {
                let body = std::slice::from_raw_parts_mut(ptr.add(from), size - from);
                if body.iter().all(|&b| b == POISON) {
                    DOUBLE_FREES.fetch_add(1, Ordering::Relaxed);
                } else {
                    body.fill(POISON);
                }
            }
            return;
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Quarantine = Quarantine;

/// The quarantine is process-wide: one pin model at a time.
static PIN_MODELS: Mutex<()> = Mutex::new(());

/// True when the entry block at `addr` (of `size` bytes) was freed: quarantined blocks stay
/// mapped, and a live entry's key and value are never all poison.
fn freed(addr: usize, size: usize) -> bool {
    let from = POISON_FROM.load(Ordering::Relaxed);
    // SAFETY: the block was allocated by the model and, if freed, quarantined (never given
    // back), so its bytes are readable either way; reading them races nothing, as every model
    // thread has been joined.
    let body = unsafe { std::slice::from_raw_parts((addr + from) as *const u8, size - from) };
    body.iter().all(|&b| b == POISON)
}

// ---- The memory tier's pin reference count --------------------------------------------------

fn memory_tier() -> MemoryTier {
    MemoryTier::new(MemoryOptions {
        max_items: 16,
        max_bytes: 0,
        jemalloc: false,
        count_stats: true,
    })
    .expect("a small memory tier")
}

/// Reads a pinned value a few times, each a chance for the other threads to run: it must stay
/// one of the values written, never freed memory.
fn read_pinned(pin: &smartcache::memory::blob::Blob) {
    for _ in 0..3 {
        assert_eq!(
            pin.key(),
            b"key",
            "a pinned entry's key changed: its block was freed"
        );
        assert!(
            [&b"first"[..], b"second"].contains(&pin.value()),
            "a pinned value was freed while a reader held it: {:?}",
            pin.value()
        );
        thread::yield_now();
    }
}

#[test]
fn a_pinned_entry_is_never_freed_while_a_reader_holds_it_and_is_freed_exactly_once() {
    let _one = PIN_MODELS.lock().unwrap_or_else(|e| e.into_inner());
    smartcache::clock::now(); // calibrated outside the model: it sleeps
    let first_block = Arc::new(AtomicUsize::new(0));
    let block = Arc::clone(&first_block);
    let size = smartcache::memory::blob::Blob::block_size(3, 5, false);
    POISON_FROM.store(
        smartcache::memory::blob::Blob::block_size(0, 0, false),
        Ordering::Relaxed,
    );
    QUARANTINED[0].store(size, Ordering::Relaxed);
    QUARANTINED[1].store(
        smartcache::memory::blob::Blob::block_size(3, 6, false),
        Ordering::Relaxed,
    );
    QUARANTINE.store(true, Ordering::Relaxed);
    check(move || {
        let tier = Arc::new(memory_tier());
        tier.insert(b"key", b"first", 0, None).unwrap();
        let pin = tier.get(b"key").expect("just set");
        let raw = pin.into_raw();
        block.store(raw as usize, Ordering::Relaxed);
        // SAFETY: taking back the reference into_raw gave out, once.
        drop(unsafe { smartcache::memory::blob::Blob::from_raw(raw) });

        let reader = {
            let tier = Arc::clone(&tier);
            thread::spawn(move || {
                if let Some(pin) = tier.get(b"key") {
                    read_pinned(&pin);
                }
            })
        };
        // A pin handed to C as a raw handle and released later from another thread.
        let handed_out = tier.get(b"key").map(|p| p.into_raw() as usize);
        let releaser = thread::spawn(move || {
            if let Some(raw) = handed_out {
                // SAFETY: the one reference into_raw gave out, taken back once.
                let pin = unsafe { smartcache::memory::blob::Blob::from_raw(raw as *const u8) };
                read_pinned(&pin);
            }
        });
        let writer = {
            let tier = Arc::clone(&tier);
            thread::spawn(move || {
                tier.insert(b"key", b"second", 0, None).unwrap();
                tier.delete(b"key");
            })
        };
        for t in [reader, releaser, writer] {
            t.join().unwrap();
        }
        assert!(tier.get(b"key").is_none(), "deleted");
        drop(tier);
        assert!(
            freed(raw as usize, size),
            "the replaced entry was never freed once every pin was released"
        );
        assert_eq!(
            DOUBLE_FREES.load(Ordering::Relaxed),
            0,
            "an entry was freed twice"
        );
    });
    QUARANTINE.store(false, Ordering::Relaxed);
    assert_ne!(first_block.load(Ordering::Relaxed), 0);
}

// ---- The write log --------------------------------------------------------------------------

/// Catches `log` up and returns what it was told.
fn changes(log: &smartcache::coherence::write_log::WriteLog) -> Vec<Change> {
    let mut seen = Vec::new();
    log.catch_up(|c| seen.push(c));
    seen
}

/// True when `seen` holds every key of `wanted`, in order, or `Change::All` (the reader dropped
/// everything: always correct).
fn told_of(seen: &[Change], wanted: &[u64]) -> bool {
    if seen.contains(&Change::All) {
        return true;
    }
    let keys: Vec<u64> = seen
        .iter()
        .map(|c| match c {
            Change::Key(h) => *h,
            Change::All => unreachable!(),
        })
        .collect();
    let mut at = 0;
    wanted
        .iter()
        .all(|w| match keys[at..].iter().position(|k| k == w) {
            Some(i) => {
                at += i + 1;
                true
            }
            None => false,
        })
}

#[test]
fn every_write_another_handle_recorded_reaches_a_reader_in_order_or_as_everything() {
    check(|| {
        // A ring of 4 entries and 5 writes: writers lap it while the reader reads.
        let file = CheckedFile::new(4);
        let reader = Arc::new(file.open());
        let (w1, w2) = (Arc::new(file.open()), Arc::new(file.open()));
        let writers = [
            (Arc::clone(&w1), vec![1, 2, 3]),
            (Arc::clone(&w2), vec![10, 11]),
        ]
        .into_iter()
        .map(|(log, keys)| {
            thread::spawn(move || {
                for k in keys {
                    log.record(Change::Key(k));
                }
            })
        })
        .collect::<Vec<_>>();
        let during = {
            let reader = Arc::clone(&reader);
            thread::spawn(move || changes(&reader))
        };
        writers.into_iter().for_each(|t| t.join().unwrap());
        let mut seen = during.join().unwrap();
        seen.extend(changes(&reader));
        assert!(!reader.is_behind(), "caught up after the writers finished");
        assert!(told_of(&seen, &[1, 2, 3]), "missed a write of w1: {seen:?}");
        assert!(told_of(&seen, &[10, 11]), "missed a write of w2: {seen:?}");
        // A writer applied its own writes already: it is told only of the other's.
        let own = changes(&w1);
        assert!(
            own.contains(&Change::All) || own == [Change::Key(10), Change::Key(11)],
            "w1 was told {own:?}"
        );
    });
}

// ---- The copy fence -------------------------------------------------------------------------

const DELETED: u64 = 0;
const OLD: u64 = 7;

#[test]
fn a_delete_returns_only_after_every_copy_of_the_old_value_into_redis_is_gone() {
    check(|| {
        let file = CheckedFile::new(8);
        let (reading, deleting) = (file.open(), file.open());
        // The key's value on disk and in Redis, as `Inner::fill` and the write path see them.
        let disk = Arc::new(AtomicU64::new(OLD));
        let redis = Arc::new(AtomicU64::new(DELETED));
        let hash = 42;
        let copier = {
            let (disk, redis) = (Arc::clone(&disk), Arc::clone(&redis));
            thread::spawn(move || {
                // `Inner::copy_in_flight`, then `Inner::fill`: marked before the source is read.
                let _in_flight = reading.copying(hash);
                let hit = disk.load(SeqCst);
                let still_in_source = || disk.load(SeqCst) == hit;
                if hit == DELETED || !still_in_source() {
                    return;
                }
                if redis.compare_exchange(DELETED, hit, SeqCst, SeqCst).is_ok()
                    && !still_in_source()
                {
                    let _ = redis.compare_exchange(hit, DELETED, SeqCst, SeqCst);
                    // withdraw
                }
            })
        };
        // `Inner::write(Mutation::Delete)`: the lower tiers bottom up, then the fence.
        disk.store(DELETED, SeqCst);
        redis.store(DELETED, SeqCst);
        deleting.wait_for_copies(Some(hash), Duration::from_secs(60));
        assert_eq!(
            redis.load(SeqCst),
            DELETED,
            "the delete returned while Redis served the value it deleted"
        );
        copier.join().unwrap();
        assert_eq!(
            redis.load(SeqCst),
            DELETED,
            "a copy left the deleted value in Redis"
        );
    });
}
