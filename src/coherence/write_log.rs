//! The write log: how a set, delete or clear in one process reaches the memory tier of every
//! other process sharing the disk_path.
//!
//! Each process keeps its own memory tier in front of the shared disk file, so without this a
//! worker would go on serving a value another worker had replaced or deleted until its memory
//! copy expired. `<disk_path>/smartcache.writes` is a ring of what was written lately, by every
//! process: the memory-tier hash of each key set or deleted, or "everything" for a clear. Each
//! cache handle remembers how far it has read the ring and, before any read of its memory tier,
//! catches up: it drops the entries others wrote. When nothing was written that costs one
//! shared load and a compare.
//!
//! A handle that fell more than a ring behind, or meets an entry it cannot trust (overwritten
//! while it read it, or reserved by a writer that died before filling it in), drops its whole
//! memory tier instead: always correct, only slower.
//!
//! Layout (docs/disk-format.md): a 4 KiB header page, the outage table (`super::outage`,
//! 16 KiB), then `len` entries of 32 bytes. Writers reserve a position with one atomic add on
//! `next` and fill the entry in; an entry's `stamp` is its position + 1 once it is complete.

use super::outage::{self, Outage};
use crate::disk::file::{self, io_err};
use crate::error::{Error, Result};
use crate::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use crate::sync::atomic::{self, AtomicU64};
use crate::sync::{yield_now, Mutex, MutexGuard};
use memmap2::MmapOptions;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The file's name inside disk_path.
pub const FILE_NAME: &str = "smartcache.writes";

const MAGIC: [u8; 8] = *b"SCWRITES";
/// 2: the outage table (and its counters in the header page) before the entries.
const VERSION: u32 = 2;
const HEADER_LEN: u64 = 4096;
/// Bytes 0..24 (magic, version, len, seed) are covered by a crc32 stored at 24.
const CHECKED_LEN: usize = 24;
/// `next`, the position the next write takes; on a cache line of its own.
const NEXT_OFF: usize = 128;
/// Copies from disk into Redis in flight, by group of keys: `COPY_GROUPS` pairs of (count,
/// last start in unix ms), in the header page after `next`.
const COPIES_OFF: usize = 512;
pub(crate) const COPY_GROUPS: usize = 128;
/// The outage table's counters (`outage::HEADER_WORDS`), after the copy fence; its slots fill
/// the `outage::TABLE_BYTES` after the header page.
const OUTAGE_OFF: usize = COPIES_OFF + COPY_GROUPS * 16;
const ENTRIES_OFF: u64 = HEADER_LEN + outage::TABLE_BYTES as u64;
/// Sets and deletes in flight, by group of keys: `WRITE_GROUPS` pairs of (count, last start in
/// unix ms), in the header page after the outage counters.
const WRITES_OFF: usize = 3072;
const WRITE_GROUPS: usize = 64;
const ENTRY_BYTES: u64 = 32;
/// Entries in a new file: a handle may fall this many writes behind (by all processes) between
/// two of its reads before it must drop its whole memory tier. 2 MiB.
const DEFAULT_LEN: u64 = 1 << 16;
const MAX_LEN: u64 = 1 << 24;
/// How long a reader waits for a writer to finish an entry it has reserved (it is a few stores
/// away, unless it was preempted or died) before treating the entry as unknown, which costs the
/// reader its whole memory tier. Long enough for a writer preempted on a busy machine to be
/// scheduled again; a dead writer costs each cache this wait once.
const UNFINISHED_WAIT: Duration = Duration::from_millis(20);

const KIND_KEY: u64 = 1;
const KIND_ALL: u64 = 2;

/// One write, as the other handles must apply it to their memory tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Keys with this memory-tier hash were set or deleted.
    Key(u64),
    /// Everything was cleared, or the handle cannot tell what changed.
    All,
}

#[repr(C)]
struct Entry {
    stamp: AtomicU64,
    hash: AtomicU64,
    writer: AtomicU64,
    kind: AtomicU64,
}

/// Copies of one group of keys from disk into Redis in flight.
#[repr(C)]
struct Copies {
    count: AtomicU64,
    last_start_ms: AtomicU64,
}

/// A copy from disk into Redis, in flight until dropped (see `WriteLog::copying`).
pub struct CopyInFlight<'a>(&'a Copies);

impl Drop for CopyInFlight<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, SeqCst);
    }
}

/// Where a handle's shared words are.
struct Shared {
    next: *const AtomicU64,
    copies: *const Copies,
    entries: *const Entry,
    writes: *const Copies,
    outage: (*const u8, *const u8),
}

pub struct WriteLog {
    /// Owns the memory the pointers below point into: the mapped file (or, under the schedule
    /// checker, the words of a `checked::CheckedFile`). Shared with the outage table.
    words: Arc<dyn std::any::Any + Send + Sync>,
    /// Sets and deletes in flight by group (`WRITE_GROUPS` pairs).
    writes: *const Copies,
    /// The outage table: its counters and its slots (std atomics: `super::outage` is not
    /// under the schedule checker).
    outage: (*const u8, *const u8),
    next: *const AtomicU64,
    copies: *const Copies,
    entries: *const Entry,
    len: u64,
    seed: u64,
    /// Tells this handle's entries from others' (it has applied its own writes already).
    /// Renewed in a forked child (`after_fork`): parent and child are different writers.
    writer: AtomicU64,
    /// Position up to which this handle's memory tier has applied the log. Advanced by
    /// `catch_up`, and by `record` past this handle's own entry when it is the next one.
    applied: AtomicU64,
    /// Makes catching up one thread's job while the handle's other readers wait for it.
    catching_up: Mutex<()>,
}

// SAFETY: `next`, `copies` and `entries` point into `_words`, which the log owns and never
// remaps, so they are valid on any thread for the log's lifetime; the shared words are only
// accessed as atomics.
unsafe impl Send for WriteLog {}
// SAFETY: see Send; every &self method uses atomics or the `catching_up` mutex.
unsafe impl Sync for WriteLog {}

/// Wall-clock milliseconds from the coarse clock (a few ms of resolution; the start times it
/// stamps are judged against bounds of 100 ms and more): cheap enough for every set.
fn unix_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1000) + ts.tv_nsec as u64 / 1_000_000
}

fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), Instant::now()))
}

fn header(len: u64, seed: u64) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    h[16..24].copy_from_slice(&seed.to_le_bytes());
    let crc = crc32fast::hash(&h[..CHECKED_LEN]);
    h[CHECKED_LEN..CHECKED_LEN + 4].copy_from_slice(&crc.to_le_bytes());
    h
}

/// (len, seed) of a header, or why it is not ours.
fn parse_header(h: &[u8]) -> std::result::Result<(u64, u64), String> {
    if h.len() < CHECKED_LEN + 4 || h[0..8] != MAGIC {
        return Err("not a SmartCache write log (bad magic)".into());
    }
    let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
    let version = u32_at(8);
    if version != VERSION {
        // Processes of another build share nothing they would both honour: refused, and the
        // file left alone (it holds no data, only coordination state).
        return Err(format!(
            "write log version {version}, this build reads {VERSION} (stop the processes of \
             the other build on this disk_path, then remove the file)"
        ));
    }
    if u32_at(CHECKED_LEN) != crc32fast::hash(&h[..CHECKED_LEN]) {
        return Err("write log header checksum mismatch".into());
    }
    let len = u64::from(u32_at(12));
    if len == 0 || len > MAX_LEN {
        return Err(format!("write log of {len} entries"));
    }
    let seed = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    Ok((len, seed))
}

impl WriteLog {
    /// Opens or creates `<dir>/smartcache.writes` (mode 0600). A file that is not ours is
    /// refused with `Error::Io` and left untouched, as for the L3 file.
    pub fn open(dir: &Path) -> Result<WriteLog> {
        Self::open_with_len(dir, DEFAULT_LEN)
    }

    /// `open`, laying a new file out with `new_len` entries (an existing file keeps its own).
    fn open_with_len(dir: &Path, new_len: u64) -> Result<WriteLog> {
        let (file, path) = file::open_or_create(dir, FILE_NAME, || {
            let size = ENTRIES_OFF + new_len * ENTRY_BYTES;
            Ok(file::NewFile {
                size,
                reserved: vec![(0, size)],
                header: header(new_len, random_u64()),
            })
        })?;
        let mut hdr = [0u8; CHECKED_LEN + 4];
        let got =
            file::read_prefix(&file, &mut hdr).map_err(|e| io_err(&path, "cannot read", e))?;
        let (len, seed) = parse_header(&hdr[..got])
            .map_err(|m| Error::io(format!("{}: refusing to use: {m}", path.display())))?;
        let size = ENTRIES_OFF + len * ENTRY_BYTES;
        let have = file
            .metadata()
            .map_err(|e| io_err(&path, "cannot stat", e))?
            .len();
        if have < size {
            // Truncated while closed: the lost entries read as unfinished, which readers treat
            // as "anything may have changed".
            file::reserve(&file, size)
                .map_err(|e| io_err(&path, "cannot restore the truncated file's length", e))?;
        }
        // SAFETY: the file is at least `size` bytes (checked or extended just above) and is
        // never shrunk by this crate; other processes change it concurrently, and every access
        // to the mapped words after the header is atomic.
        let mut map = unsafe { MmapOptions::new().len(size as usize).map_mut(&file) }
            .map_err(|e| io_err(&path, "cannot map", e))?;
        let base = map.as_mut_ptr();
        // SAFETY: NEXT_OFF + 8, COPIES_OFF + COPY_GROUPS * 16 (both within the header page)
        // and ENTRIES_OFF + len * 32 lie inside the mapping, which is page-aligned, so all three
        // regions are 8-aligned for AtomicU64.
        // SAFETY (also): WRITES_OFF + WRITE_GROUPS * 16 and OUTAGE_OFF + HEADER_WORDS * 8 end
        // inside the header page (asserted at the end of this file); the outage slots fill
        // HEADER_LEN..ENTRIES_OFF.
        let (next, copies, entries, writes, outage) = unsafe {
            (
                base.add(NEXT_OFF) as *const AtomicU64,
                base.add(COPIES_OFF) as *const Copies,
                base.add(ENTRIES_OFF as usize) as *const Entry,
                base.add(WRITES_OFF) as *const Copies,
                (
                    base.add(OUTAGE_OFF) as *const u8,
                    base.add(HEADER_LEN as usize) as *const u8,
                ),
            )
        };
        let shared = Shared {
            next,
            copies,
            entries,
            writes,
            outage,
        };
        Ok(Self::over(Arc::new(map), shared, len, seed))
    }

    /// A handle over shared words that `words` owns (and never moves): see `Shared`.
    fn over(
        words: Arc<dyn std::any::Any + Send + Sync>,
        at: Shared,
        len: u64,
        seed: u64,
    ) -> WriteLog {
        let Shared {
            next,
            copies,
            entries,
            writes,
            outage,
        } = at;
        let log = WriteLog {
            words,
            writes,
            outage,
            next,
            copies,
            entries,
            len,
            seed,
            writer: AtomicU64::new(random_u64() | 1),
            applied: AtomicU64::new(0),
            catching_up: Mutex::new(()),
        };
        // A new handle's memory tier is empty: nothing written so far concerns it.
        log.applied.store(log.next().load(Acquire), Release);
        log
    }

    /// The outage table in this file, shared by every process of the disk_path.
    pub fn outage(&self) -> Outage {
        // SAFETY: `outage` points at HEADER_WORDS and SLOTS * SLOT_WORDS 8-aligned words (see
        // `open`, or `checked::CheckedFile`) that `words` keeps alive; they are only used
        // atomically, as std atomics.
        unsafe {
            Outage::shared(
                self.outage.0 as *const std::sync::atomic::AtomicU64,
                self.outage.1 as *const std::sync::atomic::AtomicU64,
                Arc::clone(&self.words),
            )
        }
    }

    /// The seed every process's memory tier hashes keys with, so hashes in the log mean the
    /// same keys to all of them.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Held by the thread about to fork (see `crate::fork`): no catch-up is half done then.
    pub fn hold_for_fork(&self) -> MutexGuard<'_, ()> {
        self.catching_up.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// In a forked child: the child writes as a writer of its own, so that its parent and its
    /// siblings apply its entries (and it applies theirs, the parent's included). Its memory
    /// tier and `applied` are the parent's, which agree with each other; the parent's own
    /// entries it then applies again cost at most needless invalidations.
    pub fn after_fork(&self) {
        self.writer.store(random_u64() | 1, Relaxed);
    }

    fn next(&self) -> &AtomicU64 {
        // SAFETY: see `open`: points at an aligned word inside the mapping we own.
        unsafe { &*self.next }
    }

    fn copies_of(&self, hash: u64) -> &Copies {
        // SAFETY: COPY_GROUPS pairs of words from COPIES_OFF end before HEADER_LEN, inside the
        // mapping (see `open`).
        unsafe { &*self.copies.add(hash as usize % COPY_GROUPS) }
    }

    fn writes_of(&self, hash: u64) -> &Copies {
        // SAFETY: `writes` points at WRITE_GROUPS pairs of words (see `open`, or
        // `checked::CheckedFile`) that `words` keeps alive.
        unsafe { &*self.writes.add(hash as usize % WRITE_GROUPS) }
    }

    /// Marks a set or delete of a key of `hash` as in flight until the guard drops: from
    /// before its first tier is written until after its entry is recorded. Meanwhile no
    /// process copies a lower tier's value of the group into its memory (`writing_in`): a
    /// writer killed between the lower tiers and its entry would leave the copy there, older
    /// than what the lower tiers serve.
    pub fn writing(&self, hash: u64) -> CopyInFlight<'_> {
        let w = self.writes_of(hash);
        w.last_start_ms.store(unix_ms(), Relaxed);
        w.count.fetch_add(1, SeqCst);
        CopyInFlight(w)
    }

    /// True when a set or delete of `hash`'s group may be in flight (see `writing`): call it
    /// after reading the lower tiers, before copying the value into memory. A count left by a
    /// writer that died is believed for `max_wait` after the group's latest start (a living
    /// writer judged dead only costs a copy that its entry drops).
    pub fn writing_in(&self, hash: u64, max_wait: Duration) -> bool {
        atomic::fence(SeqCst);
        let w = self.writes_of(hash);
        w.count.load(SeqCst) > 0 && {
            let started = w.last_start_ms.load(Relaxed);
            let now = unix_ms();
            started <= now && now - started < max_wait.as_millis() as u64
        }
    }

    /// Marks a copy of a key of `hash` from disk into Redis as in flight until the returned
    /// guard drops. Take it before reading the disk: a delete that then waits for the copies
    /// of its key (`wait_for_copies`) knows that every copy which may have read the value it
    /// deleted has finished (and withdrawn itself if it came too late).
    pub fn copying(&self, hash: u64) -> CopyInFlight<'_> {
        let c = self.copies_of(hash);
        // The start before the count: a waiter that sees the count sees this start with it.
        c.last_start_ms.store(unix_ms(), Relaxed);
        // SeqCst, with the fence in wait_for_copies: the count is seen by any write whose
        // disk write this copy's disk read did not see.
        c.count.fetch_add(1, SeqCst);
        CopyInFlight(c)
    }

    /// Waits until no copy from disk into Redis of a key of `hash`'s group (`None`: of any
    /// key) is in flight, for at most `max_wait` in all, measured on this process's monotonic
    /// clock. A group whose latest copy started more than `max_wait` ago, or in the future (a
    /// wall clock stepped back, a damaged file), holds only counts of copiers that died and is
    /// not waited for at all. Nothing in the file can stretch the wait past `max_wait`: a
    /// copier killed in flight leaves its count raised for ever, and under steady copy traffic
    /// its group's start time never grows old.
    pub fn wait_for_copies(&self, hash: Option<u64>, max_wait: Duration) {
        match hash {
            Some(h) => self.wait_for_copies_of([h], max_wait),
            None => self.wait_for_groups(0..COPY_GROUPS as u64, max_wait),
        }
    }

    /// `wait_for_copies` for the groups of several keys (a `set_many`), within one `max_wait`.
    /// Costs a fence and one load per key when no copy is in flight.
    pub fn wait_for_copies_of(&self, hashes: impl IntoIterator<Item = u64>, max_wait: Duration) {
        let groups = hashes.into_iter().map(|h| h % COPY_GROUPS as u64);
        self.wait_for_groups(groups, max_wait);
    }

    fn wait_for_groups(&self, groups: impl Iterator<Item = u64>, max_wait: Duration) {
        atomic::fence(SeqCst);
        let mut deadline = None;
        let max_ms = max_wait.as_millis() as u64;
        let live = |c: &Copies| {
            // The count first (it carries its copy's start, see `copying`), then the start,
            // then the clock: a copy starting meanwhile is not "in the future".
            c.count.load(SeqCst) > 0 && {
                let started = c.last_start_ms.load(Relaxed);
                let now = unix_ms();
                started <= now && now - started < max_ms
            }
        };
        for c in groups.map(|g| self.copies_of(g)) {
            while live(c)
                && Instant::now() < *deadline.get_or_insert_with(|| Instant::now() + max_wait)
            {
                yield_now();
            }
        }
    }

    fn entry(&self, pos: u64) -> &Entry {
        // SAFETY: pos % len < len entries lie inside the mapping (see `open`).
        unsafe { &*self.entries.add((pos % self.len) as usize) }
    }

    /// True when some handle wrote since this one last caught up: call `catch_up` before
    /// reading memory.
    #[inline]
    pub fn is_behind(&self) -> bool {
        self.next().load(Acquire) != self.applied.load(Acquire)
    }

    /// Tells every handle of this file (this one excepted) that `change` happened. Call it
    /// after the change has reached the shared tiers, so that a handle that applies it and
    /// then misses memory reads the new state.
    ///
    /// True when this handle should `catch_up` now: a quarter of the ring is unapplied, and a
    /// handle that only writes (a bulk load) must not let the ring lap it, which would cost it
    /// its whole memory tier on its next read.
    pub fn record(&self, change: Change) -> bool {
        let pos = self.next().fetch_add(1, AcqRel);
        let e = self.entry(pos);
        let (kind, hash) = match change {
            Change::Key(h) => (KIND_KEY, h),
            Change::All => (KIND_ALL, 0),
        };
        e.hash.store(hash, Release);
        e.writer.store(self.writer.load(Relaxed), Release);
        e.kind.store(kind, Release);
        e.stamp.store(pos.wrapping_add(1), Release);
        // Nothing unapplied before our own entry: step over it, so a handle that writes alone
        // never needs to catch up at all.
        let _ = self
            .applied
            .compare_exchange(pos, pos.wrapping_add(1), AcqRel, Relaxed);
        self.next()
            .load(Relaxed)
            .wrapping_sub(self.applied.load(Relaxed))
            > self.len / 4
    }

    /// Applies every change other handles recorded since this one last caught up, in order.
    /// Returns once `is_behind` would have been false at the moment it started.
    pub fn catch_up(&self, mut apply: impl FnMut(Change)) {
        let _one_at_a_time = self.catching_up.lock().unwrap_or_else(|e| e.into_inner());
        let start = self.applied.load(Acquire);
        let target = self.next().load(Acquire);
        // More than a ring behind (or `next` went backwards: the file was damaged).
        let mut all = target.wrapping_sub(start) > self.len;
        let mut pos = start;
        let me = self.writer.load(Relaxed);
        while !all && pos != target {
            match self.read(pos) {
                Some((writer, _)) if writer == me => {}
                Some((_, Change::Key(h))) => apply(Change::Key(h)),
                Some((_, Change::All)) | None => all = true,
            }
            pos = pos.wrapping_add(1);
        }
        // A writer that lapped the ring while we read may have changed entries under us.
        all |= self.next().load(Acquire).wrapping_sub(start) > self.len;
        if all {
            apply(Change::All);
            // Exactly `target`, even below where we were: a `next` that went backwards (a
            // damaged file) must not leave this handle behind for ever, dropping its memory
            // on every read. At worst own entries past `target` are looked at again.
            self.applied.store(target, Release);
        } else {
            // Max: `record` may have stepped over an own entry beyond `target` meanwhile.
            self.applied.fetch_max(target, AcqRel);
        }
    }

    /// The entry at `pos` as (writer, change), or None when it cannot be trusted.
    fn read(&self, pos: u64) -> Option<(u64, Change)> {
        let e = self.entry(pos);
        let want = pos.wrapping_add(1);
        let mut waited_since = None;
        loop {
            let stamp = e.stamp.load(Acquire);
            if stamp == want {
                break;
            }
            if stamp.wrapping_sub(want) < u64::MAX / 2 {
                return None; // a later lap's entry: ours was overwritten
            }
            // Reserved but not filled in yet.
            let since = *waited_since.get_or_insert_with(Instant::now);
            if since.elapsed() > UNFINISHED_WAIT {
                return None;
            }
            yield_now();
        }
        let (hash, writer, kind) = (
            e.hash.load(Acquire),
            e.writer.load(Acquire),
            e.kind.load(Acquire),
        );
        if e.stamp.load(Acquire) != want {
            return None;
        }
        match kind {
            KIND_KEY => Some((writer, Change::Key(hash))),
            KIND_ALL => Some((writer, Change::All)),
            _ => None,
        }
    }

    /// Reserves a position and leaves it unfinished, as a writer that died mid-record would.
    #[cfg(test)]
    fn reserve_and_die(&self) {
        self.next().fetch_add(1, AcqRel);
    }
}

const _: () = assert!(OUTAGE_OFF + outage::HEADER_WORDS * 8 <= WRITES_OFF);
const _: () = assert!(WRITES_OFF + WRITE_GROUPS * 16 <= HEADER_LEN as usize);

#[cfg(feature = "shuttle")]
#[path = "write_log_checked.rs"]
pub mod checked;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::tests::temp_dir;
    use std::sync::Arc;

    fn changes(log: &WriteLog) -> Vec<Change> {
        let mut seen = Vec::new();
        if log.is_behind() {
            log.catch_up(|c| seen.push(c));
        }
        assert!(!log.is_behind());
        seen
    }

    #[test]
    fn others_see_each_write_in_order_and_the_writer_skips_its_own() {
        let d = temp_dir("order");
        let (a, b) = (WriteLog::open(&d).unwrap(), WriteLog::open(&d).unwrap());
        assert_eq!(a.seed(), b.seed(), "one seed per file");
        assert!(changes(&b).is_empty());
        a.record(Change::Key(7));
        a.record(Change::Key(9));
        b.record(Change::Key(11));
        assert_eq!(changes(&b), vec![Change::Key(7), Change::Key(9)]);
        assert_eq!(changes(&a), vec![Change::Key(11)]);
        a.record(Change::All);
        assert_eq!(changes(&b), vec![Change::All]);
        // A handle opened later owes nothing for what came before it.
        let c = WriteLog::open(&d).unwrap();
        assert!(changes(&c).is_empty());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_handle_that_only_writes_never_falls_behind_and_one_that_lags_is_told() {
        let d = temp_dir("own");
        let a = WriteLog::open_with_len(&d, 64).unwrap();
        for h in 0..1000 {
            assert!(!a.record(Change::Key(h)), "own entries are stepped over");
        }
        assert!(!a.is_behind());
        let b = WriteLog::open(&d).unwrap();
        // Interleaved with b's writes, a's entries are no longer next in line: a must catch up
        // before a quarter of the ring is unapplied.
        let mut told = None;
        for i in 0..64u64 {
            b.record(Change::Key(i));
            if a.record(Change::Key(i)) {
                told = Some(i);
                break;
            }
        }
        assert_eq!(
            told,
            Some(8),
            "told once more than a quarter of the 64 entries were unapplied"
        );
        assert_eq!(changes(&a).len(), 9, "b's nine writes, none of a's own");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_reader_more_than_a_ring_behind_drops_everything() {
        let d = temp_dir("lapped");
        let a = WriteLog::open_with_len(&d, 64).unwrap();
        let b = WriteLog::open(&d).unwrap();
        assert_eq!(b.len, 64, "the file's own length wins");
        for h in 0..64 {
            a.record(Change::Key(h));
        }
        assert_eq!(
            changes(&b).len(),
            64,
            "exactly a ring behind is still exact"
        );
        for h in 0..65 {
            a.record(Change::Key(h));
        }
        assert_eq!(changes(&b), vec![Change::All]);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn an_entry_its_writer_never_finished_counts_as_everything() {
        let d = temp_dir("unfinished");
        let (a, b) = (WriteLog::open(&d).unwrap(), WriteLog::open(&d).unwrap());
        a.record(Change::Key(1));
        a.reserve_and_die();
        a.record(Change::Key(2));
        let started = Instant::now();
        assert_eq!(changes(&b), vec![Change::Key(1), Change::All]);
        assert!(started.elapsed() >= UNFINISHED_WAIT);
        assert!(changes(&b).is_empty(), "passed once, not waited on again");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn no_write_is_lost_under_concurrent_writers() {
        // A writer stalled longer than UNFINISHED_WAIT between reserving and stamping (a busy
        // machine) makes the reader drop everything, which is correct but proves nothing about
        // the entries: such a round is run again.
        for _round in 0..5 {
            if let Some(seen) = concurrent_writers_round() {
                assert!(seen.iter().all(|&s| s), "a write was never seen");
                return;
            }
        }
        panic!("every round met an unfinished entry");
    }

    /// Three handles write 5,000 keys each while a fourth catches up; which keys it was told
    /// of, or None if it was told "everything" instead.
    fn concurrent_writers_round() -> Option<Vec<bool>> {
        let d = temp_dir("concurrent");
        let reader = WriteLog::open(&d).unwrap();
        let writers: Vec<_> = (0..3)
            .map(|_| Arc::new(WriteLog::open(&d).unwrap()))
            .collect();
        let per_writer = 5_000u64;
        let threads: Vec<_> = writers
            .iter()
            .enumerate()
            .map(|(w, log)| {
                let log = Arc::clone(log);
                std::thread::spawn(move || {
                    for i in 0..per_writer {
                        log.record(Change::Key(w as u64 * per_writer + i));
                    }
                })
            })
            .collect();
        let mut seen = vec![false; 3 * per_writer as usize];
        let mut everything = false;
        let mut apply = |c| match c {
            Change::Key(h) => seen[h as usize] = true,
            Change::All => everything = true,
        };
        while !threads.iter().all(|t| t.is_finished()) {
            reader.catch_up(&mut apply);
        }
        threads.into_iter().for_each(|t| t.join().unwrap());
        reader.catch_up(&mut apply);
        std::fs::remove_dir_all(d).unwrap();
        (!everything).then_some(seen)
    }

    #[test]
    fn a_delete_waits_for_copies_in_flight_of_its_group_and_not_for_a_dead_copier() {
        let d = temp_dir("copies");
        let (a, b) = (
            WriteLog::open(&d).unwrap(),
            Arc::new(WriteLog::open(&d).unwrap()),
        );
        let long = Duration::from_secs(60);
        let started = Instant::now();
        a.wait_for_copies(Some(5), long);
        a.wait_for_copies(None, long);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "nothing in flight"
        );

        // Another process's copy: waited for until its guard drops, by deletes of its group only.
        let (held_tx, held) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let copier = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                let copy = b.copying(5);
                held_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                drop(copy);
            })
        };
        held.recv().unwrap();
        let started = Instant::now();
        a.wait_for_copies(Some(6), long);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waited on another group"
        );
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            release.send(()).unwrap();
        });
        let started = Instant::now();
        a.wait_for_copies(Some(5 + COPY_GROUPS as u64), long);
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "did not wait for the copy"
        );
        copier.join().unwrap();
        releaser.join().unwrap();

        // A copier that died in flight holds the count: waited for only until max_wait after
        // its start.
        std::mem::forget(b.copying(9));
        let started = Instant::now();
        a.wait_for_copies(None, Duration::from_millis(300));
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(30),
            "waited for ever: {waited:?}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_write_counter_that_went_backwards_costs_one_drop_not_one_per_read() {
        let d = temp_dir("backwards");
        let (a, b) = (WriteLog::open(&d).unwrap(), WriteLog::open(&d).unwrap());
        for h in 0..10 {
            a.record(Change::Key(h));
        }
        assert_eq!(changes(&b).len(), 10);
        a.next().store(3, Release); // damage
        assert_eq!(changes(&b), vec![Change::All]);
        assert!(changes(&b).is_empty(), "caught up with the damaged counter");
        a.record(Change::Key(42));
        assert_eq!(changes(&b), vec![Change::Key(42)]);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_file_that_is_not_ours_is_refused_and_left_alone() {
        let d = temp_dir("foreign");
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join(FILE_NAME);
        for content in [&b"hello, not a log"[..], &header(64, 1)[..20]] {
            std::fs::write(&path, content).unwrap();
            let err = WriteLog::open(&d).err().expect("refused");
            assert!(matches!(err, Error::Io(_)), "{err:?}");
            assert!(err.to_string().contains(FILE_NAME), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), content);
        }
        let mut bad_crc = header(64, 1);
        bad_crc[16] ^= 1;
        std::fs::write(&path, &bad_crc).unwrap();
        assert!(WriteLog::open(&d).is_err());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_truncated_file_is_extended_and_its_lost_entries_count_as_everything() {
        let d = temp_dir("truncated");
        let a = WriteLog::open_with_len(&d, 64).unwrap();
        let b = WriteLog::open(&d).unwrap();
        a.record(Change::Key(3));
        drop(a);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join(FILE_NAME))
            .unwrap();
        f.set_len(ENTRIES_OFF).unwrap();
        drop(f);
        let c = WriteLog::open(&d).unwrap();
        assert_eq!(c.seed(), b.seed());
        // b had not read the entry the truncation zeroed: it cannot know what it was.
        assert_eq!(changes(&b), vec![Change::All]);
        std::fs::remove_dir_all(d).unwrap();
    }
}
