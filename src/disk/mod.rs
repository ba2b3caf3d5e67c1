//! L3: the memory-mapped disk tier (see docs/architecture.md and docs/disk-format.md).
//!
//! One file, `<disk_path>/smartcache.l3`, mapped shared by every process that opens the
//! directory. Readers take no lock: they copy a record out of the mapping and trust the copy only
//! after checking that the ring head did not reclaim its segment meanwhile (a seqlock on the
//! head), that the record names its own position and key, and that its crc32 matches. Writers
//! serialise on [`lock::WriterLock`] (mutex + flock), append the complete record, advance the
//! head, and only then point the index at the record, so a writer killed at any instant leaves
//! at worst an unreferenced partial record.

pub(crate) mod file;
pub mod format;
mod grow;
pub mod index;
pub mod lock;
pub mod ring;

use crate::config::MAX_KEY_LEN;
use crate::error::{Error, Result};
use crate::sign::{Domain, Signed, Signer, Verdict, MAC_LEN};
use crate::tier::{shown_key, Hit, TierCounters, TierSnapshot};
use file::io_err;
use format::{
    header_version, key_hash, record_crc, record_len, Geometry, RecordHeader, HEADER_LEN, HEAD_OFF,
    INDEX_RESERVED_OFF, RECORD_ALIGN, RECORD_HEADER, SEGTAB_ENTRY_BYTES,
};
use index::{tag_of, Index, Slot};
use lock::WriterLock;
use memmap2::{MmapMut, MmapOptions};
use ring::{Loc, Ring};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file's name inside disk_path.
pub const FILE_NAME: &str = "smartcache.l3";

/// How many times a reader retries a bucket whose record was reclaimed under it before it gives
/// up with a miss (each retry sees a newer head, so one is nearly always enough).
const READ_RETRIES: usize = 3;

/// The disk tier's view of its counters, for the coordinator's stats and health.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiskStats {
    /// Calls served by this process (hits, misses, sets, deletes, errors, last_error).
    pub counters: TierSnapshot,
    /// Records this process found damaged (checksum, framing, position), plus 1 if the file was
    /// found truncated at open. A damaged record is a miss, never returned.
    pub corruptions: u64,
    /// Live entries in the file (all processes), including expired ones not yet reclaimed.
    pub entries: u64,
    /// Bytes of live records (all processes).
    pub bytes_used: u64,
    /// Bytes of the data ring.
    pub capacity: u64,
    /// Writes by this process not stored because the record is larger than one of the file's
    /// segments: the file was laid out (disk_max_size too small for two segments of the
    /// largest record, or an older, smaller max_value_size) with segments that cannot hold it.
    pub skipped: u64,
    pub path: PathBuf,
}

pub struct DiskTier {
    map: MmapMut,
    /// Start of `map`; kept as a raw pointer because readers and writers in other processes
    /// change the mapped bytes under us, so no `&[u8]` over the data region may be held.
    base: *mut u8,
    geo: Geometry,
    ring: Ring,
    index: Index,
    file: File,
    lock: WriterLock,
    max_value_size: usize,
    /// Signs records written and checks records read (None: `value_secret` unset).
    signer: Option<Signer>,
    counters: TierCounters,
    corruptions: AtomicU64,
    /// See [`DiskStats::skipped`].
    skipped: AtomicU64,
    /// Next index slot expire_step examines (per process; any starting point is correct).
    expire_cursor: AtomicU64,
    /// Bytes at the start of the ring this process knows are reserved on disk (grow.rs).
    ring_reserved: AtomicU64,
    path: PathBuf,
}

// SAFETY: `base` points into `map`, which DiskTier owns and never remaps, so it is valid for the
// tier's lifetime on any thread. Shared mutable words (head, segment table, index) are accessed
// only through atomics; record bytes are written only under the writer lock and read by copying
// and then validating the copy, never through references held across the validation.
unsafe impl Send for DiskTier {}
// SAFETY: see Send: every &self method is either atomic, lock-protected, or copy-then-validate.
unsafe impl Sync for DiskTier {}

/// What one index slot led to.
enum Probe {
    Hit(Hit),
    Expired,
    /// The slot is stale, or belongs to another key.
    Other,
    /// The record's segment was reclaimed while we copied it: the copy means nothing.
    Raced,
    Corrupt,
    /// Intact, but its MAC is missing or wrong while a secret is set.
    Tampered(Verdict),
    /// Intact, but its value is longer than this cache's max_value_size.
    TooLarge(usize),
}

/// A record examined under the writer lock.
enum Held {
    Live(RecordHeader),
    Stale,
    Corrupt,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl DiskTier {
    /// Opens or creates `<dir>/smartcache.l3` (file mode 0600; `dir` is created 0700 if missing).
    ///
    /// `max_size` lays out a *new* file. An existing file keeps the geometry in its header
    /// whatever `max_size` says now: resizing would invalidate every other process's mapping, so
    /// to change the size, delete the file while no process has it open.
    ///
    /// A file that is not ours (wrong magic or version, shorter than a header, inconsistent
    /// geometry) is refused with `Error::Io` naming the path and the problem, and left untouched.
    /// Our own file found shorter than its geometry (truncated while closed) is extended back
    /// with zeroes; the lost records then read as corrupt misses, and one corruption is counted.
    pub fn open(dir: &Path, max_size: u64, max_value_size: usize) -> Result<DiskTier> {
        let (file, path) = file::open_or_create(dir, FILE_NAME, || {
            let geo = Geometry::for_size(max_size, max_value_size).map_err(Error::config)?;
            let mut header = vec![0u8; HEADER_LEN as usize];
            geo.encode(&mut header);
            Ok(file::NewFile {
                size: geo.file_size,
                reserved: grow::reserved_at_creation(&geo),
                header,
            })
        })?;
        let mut hdr = vec![0u8; HEADER_LEN as usize];
        let got =
            file::read_prefix(&file, &mut hdr).map_err(|e| io_err(&path, "cannot read", e))?;
        let geo = Geometry::decode(&hdr[..got])
            .map_err(|m| Error::io(format!("{}: refusing to use: {m}", path.display())))?;
        let mut corruptions = 0;
        let len = file
            .metadata()
            .map_err(|e| io_err(&path, "cannot stat", e))?
            .len();
        if len < geo.file_size {
            // Mapping past EOF would SIGBUS on first touch; restoring the length makes the lost
            // tail read as zeroes, which every record check rejects (its blocks are reserved
            // again below, with everything else the file says is in use).
            file.set_len(geo.file_size)
                .map_err(|e| io_err(&path, "cannot restore the truncated file's length", e))?;
            corruptions = 1;
        }
        // SAFETY: the file is at least geo.file_size bytes (checked or extended just above) and
        // is only ever grown, never shrunk, by this crate. Other processes modify it
        // concurrently; all access goes through atomics or copy-then-validate (see DiskTier).
        let mut map = unsafe {
            MmapOptions::new()
                .len(geo.file_size as usize)
                .map_mut(&file)
        }
        .map_err(|e| io_err(&path, "cannot map", e))?;
        let base = map.as_mut_ptr();
        // SAFETY: decode() checked that the index region [index_off, index_off + buckets * 128)
        // lies inside file_size and is page-aligned; the reserved-chunks bitmap lies inside the
        // header page at an 8-aligned offset; the chunk shift comes from the same geometry.
        // Both are only accessed through atomics.
        let index = unsafe {
            Index::new(
                base.add(geo.index_off as usize),
                geo.buckets,
                base.add(INDEX_RESERVED_OFF),
                geo.index_chunk_shift(),
            )
        };
        let tier = DiskTier {
            map,
            base,
            geo,
            ring: Ring::new(geo.seg_size, geo.seg_count),
            index,
            file,
            lock: WriterLock::new(),
            max_value_size,
            signer: None,
            counters: TierCounters::default(),
            corruptions: AtomicU64::new(corruptions),
            skipped: AtomicU64::new(0),
            expire_cursor: AtomicU64::new(0),
            ring_reserved: AtomicU64::new(0),
            path,
        };
        tier.check_head()?;
        tier.reserve_what_is_recorded(header_version(&hdr))?;
        Ok(tier)
    }

    /// Signs every record this tier writes, and serves only records whose MAC verifies (see
    /// `crate::sign` and docs/disk-format.md). None: records are written unsigned and every
    /// intact record is served.
    pub fn with_signer(mut self, signer: Option<Signer>) -> DiskTier {
        self.signer = signer;
        self
    }

    /// The head is the one mutable header word the geometry crc cannot cover. Any value is safe
    /// to read records against (they verify their own position), but one near u64::MAX would
    /// refuse every write for lack of log space, so such a damaged head restarts the log at 0:
    /// old slots then point beyond the head and read as misses.
    fn check_head(&self) -> Result<()> {
        const SANE: u64 = 1 << 62;
        if self.head().load(Ordering::Acquire) <= SANE {
            return Ok(());
        }
        let _g = self.locked()?;
        if self.head().load(Ordering::Relaxed) > SANE {
            self.head().store(0, Ordering::Release);
            for s in 0..self.geo.seg_count as usize {
                let (count, bytes) = self.seg_account(s);
                count.store(0, Ordering::Relaxed);
                bytes.store(0, Ordering::Relaxed);
            }
            self.corruptions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// None when absent, expired, reclaimed or corrupt (corruption is counted, never returned).
    pub fn get(&self, key: &[u8]) -> Result<Option<Hit>> {
        let found = self.lookup(key)?;
        if found.is_some() {
            self.counters.hit();
        } else {
            self.counters.miss();
        }
        Ok(found)
    }

    /// True when `key` has a live entry; not counted as a hit or miss (for `exists`, which
    /// must not skew the hit ratio).
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.lookup(key)?.is_some())
    }

    /// What `get` would return, not counted as a hit or miss (a re-check by the coordinator).
    pub fn peek(&self, key: &[u8]) -> Result<Option<Hit>> {
        self.lookup(key)
    }

    fn lookup(&self, key: &[u8]) -> Result<Option<Hit>> {
        check_key(key)?;
        let hash = key_hash(key);
        let tag = tag_of(hash);
        let bucket = self.index.bucket(self.index.bucket_of(hash));
        for _ in 0..READ_RETRIES {
            let mut raced = false;
            for slot in bucket {
                if slot.tag() != tag {
                    continue;
                }
                match self.probe(slot.pos(), key) {
                    Probe::Hit(hit) => return Ok(Some(hit)),
                    Probe::Expired => return Ok(None),
                    Probe::Other => {}
                    Probe::Raced => raced = true,
                    Probe::Corrupt => {
                        self.corruptions.fetch_add(1, Ordering::Relaxed);
                    }
                    Probe::Tampered(v) => {
                        let why = format!("as tampered: {}", v.reason());
                        self.counters.tampered(&self.refusal(key, &why));
                        return Ok(None);
                    }
                    Probe::TooLarge(n) => {
                        let why = format!(
                            "value of {n} bytes is over max_value_size {}",
                            self.max_value_size
                        );
                        self.counters.error(&self.refusal(key, &why));
                        return Ok(None);
                    }
                }
            }
            if !raced {
                break;
            }
        }
        Ok(None)
    }

    /// Why a record of `key` was refused, for last_error.
    #[cold]
    fn refusal(&self, key: &[u8], why: &str) -> String {
        Error::io(format!(
            "key '{}' in {} refused: {why}",
            shown_key(key),
            self.path.display()
        ))
        .to_string()
    }

    /// Stores a value. ttl None = never expires; the deadline is stored as absolute unix ms so
    /// it holds across restarts and processes.
    pub fn set(&self, key: &[u8], value: &[u8], flags: u8, ttl: Option<Duration>) -> Result<()> {
        check_key(key)?;
        if value.len() > self.max_value_size {
            return Err(Error::TooLarge(format!(
                "value of {} bytes exceeds max_value_size {}",
                value.len(),
                self.max_value_size
            )));
        }
        let mac_len = if self.signer.is_some() { MAC_LEN } else { 0 };
        let len = record_len(key.len(), value.len() + mac_len);
        if len > self.geo.seg_size || value.len() + mac_len > u32::MAX as usize {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return Err(Error::TooLarge(format!(
                "record of {len} bytes exceeds the disk segment size {}",
                self.geo.seg_size
            )));
        }
        let expires_ms = match ttl {
            // max(1): 0 means "never", and a zero TTL must still expire.
            Some(d) => now_ms()
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .max(1),
            None => 0,
        };
        let r = self.write(key, value, flags, expires_ms);
        match &r {
            Ok(()) => self.counters.set(),
            Err(e) => self.counters.error(&e.to_string()),
        }
        r
    }

    /// Removes a key; true when it had a live, unexpired entry (an expired one is removed too,
    /// but reported as absent, as get would have).
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        check_key(key)?;
        let _g = self.locked()?;
        let head = self.head().load(Ordering::Relaxed);
        let hash = key_hash(key);
        let bucket = self.index.bucket(self.index.bucket_of(hash));
        let found = self.find_held(bucket, tag_of(hash), key, head);
        let mut live = false;
        if let Some((i, old_pos, old)) = found {
            bucket[i].clear();
            self.account(old_pos, old.record_len(), -1);
            live = old.expires_ms == 0 || now_ms() < old.expires_ms;
        }
        self.counters.delete();
        Ok(live)
    }

    /// Drops every entry of this file (the index and its accounting; record bytes become
    /// unreachable and are overwritten as the ring turns).
    pub fn clear(&self) -> Result<()> {
        let _g = self.locked()?;
        for b in 0..self.index.buckets() {
            for slot in self.index.bucket(b) {
                if slot.tag() != 0 {
                    slot.clear();
                }
            }
        }
        for s in 0..self.geo.seg_count as usize {
            let (count, bytes) = self.seg_account(s);
            count.store(0, Ordering::Relaxed);
            bytes.store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Examines at most `max_entries` index slots, continuing where the previous call stopped,
    /// and removes the expired entries among them (stale slots of reclaimed segments are cleared
    /// too, uncounted). Returns how many expired entries were removed.
    pub fn expire_step(&self, max_entries: usize) -> Result<usize> {
        let _g = self.locked()?;
        let head = self.head().load(Ordering::Relaxed);
        let total = self.index.buckets() * format::BUCKET_SLOTS as u64;
        let now = now_ms();
        let mut cursor = self.expire_cursor.load(Ordering::Relaxed) % total;
        let mut reclaimed = 0;
        for _ in 0..(max_entries as u64).min(total) {
            let bucket = self.index.bucket(cursor / 8);
            let at = (cursor % 8) as usize;
            cursor = (cursor + 1) % total;
            // A bucket of an unreserved chunk is empty (and its slots are not to be touched).
            let Some(slot) = bucket.get(at) else {
                continue;
            };
            if slot.tag() == 0 {
                continue;
            }
            let pos = slot.pos();
            match self.held(pos, head) {
                Held::Live(h) if h.expires_ms != 0 && now >= h.expires_ms => {
                    slot.clear();
                    self.account(pos, h.record_len(), -1);
                    reclaimed += 1;
                }
                Held::Live(_) => {}
                Held::Stale => slot.clear(),
                Held::Corrupt => {
                    slot.clear();
                    self.corruptions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.expire_cursor.store(cursor, Ordering::Relaxed);
        Ok(reclaimed)
    }

    /// Takes this tier's locks for `crate::fork` (the writer lock before the counters', as a
    /// failing write takes them).
    pub fn hold_for_fork<'a>(&'a self, held: &mut Vec<Box<dyn crate::fork::Held + 'a>>) {
        held.push(Box::new(self.lock.hold_for_fork()));
        held.push(Box::new(self.counters.hold_for_fork()));
    }

    /// In a forked child: a writer lock of the child's own (see `WriterLock::after_fork`).
    pub fn after_fork(&self) {
        self.lock.after_fork(&self.file, &self.path);
    }

    /// Forces the mapping to disk (msync). Not needed for other processes to see writes, which
    /// share the page cache; needed to survive a machine crash.
    pub fn flush(&self) -> Result<()> {
        self.map
            .flush()
            .map_err(|e| io_err(&self.path, "msync failed", e))
    }

    pub fn stats(&self) -> DiskStats {
        // The segment table lives in the shared file, so its words may be anything: sums
        // saturate, and are capped at what the index and the ring can hold.
        let (mut entries, mut bytes_used) = (0u64, 0u64);
        for s in 0..self.geo.seg_count as usize {
            let (count, bytes) = self.seg_account(s);
            entries = entries.saturating_add(count.load(Ordering::Relaxed));
            bytes_used = bytes_used.saturating_add(bytes.load(Ordering::Relaxed));
        }
        let slots = self.geo.buckets.saturating_mul(format::BUCKET_SLOTS as u64);
        DiskStats {
            counters: self.counters.snapshot(),
            corruptions: self.corruptions.load(Ordering::Relaxed),
            entries: entries.min(slots),
            bytes_used: bytes_used.min(self.ring.capacity()),
            capacity: self.ring.capacity(),
            skipped: self.skipped.load(Ordering::Relaxed),
            path: self.path.clone(),
        }
    }

    /// The file's geometry (fixed when the file was created).
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    // ---- internals ----

    fn locked(&self) -> Result<lock::WriterGuard<'_>> {
        self.lock.lock(&self.file).map_err(|e| {
            self.counters.error(&e.to_string());
            e
        })
    }

    fn head(&self) -> &AtomicU64 {
        // SAFETY: HEAD_OFF is 8-aligned inside the header page, which is inside the mapping;
        // the word is shared between processes and only accessed atomically.
        unsafe { &*(self.base.add(HEAD_OFF) as *const AtomicU64) }
    }

    /// (live entry count, live bytes) of one physical segment.
    fn seg_account(&self, seg: usize) -> (&AtomicU64, &AtomicU64) {
        assert!(seg < self.geo.seg_count as usize);
        let off = self.geo.segtab_off as usize + seg * SEGTAB_ENTRY_BYTES as usize;
        // SAFETY: seg < seg_count and decode() checked the segment table fits before data_off;
        // entries are 16-byte aligned words accessed only atomically.
        unsafe {
            (
                &*(self.base.add(off) as *const AtomicU64),
                &*(self.base.add(off + 8) as *const AtomicU64),
            )
        }
    }

    /// Adds (+1) or removes (-1) a record from its segment's accounting. Saturating: after a
    /// crash between a reclaim and the head store, counts may be slightly off, never negative.
    fn account(&self, pos: u64, len: u64, dir: i8) {
        let (count, bytes) = self.seg_account(self.ring.slot_of_seq(self.ring.seq(pos)));
        if dir > 0 {
            count.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(len, Ordering::Relaxed);
        } else {
            count.store(
                count.load(Ordering::Relaxed).saturating_sub(1),
                Ordering::Relaxed,
            );
            bytes.store(
                bytes.load(Ordering::Relaxed).saturating_sub(len),
                Ordering::Relaxed,
            );
        }
    }

    /// Pointer to a log position's bytes. Callers check that the record they access fits in its
    /// segment (Ring::is_live / fits_in_segment), which keeps every access inside the mapping.
    fn data_ptr(&self, pos: u64) -> *mut u8 {
        let off = self.geo.data_off + self.ring.physical(pos);
        // SAFETY: physical(pos) < ring_bytes, and data_off + ring_bytes == file_size == map len.
        unsafe { self.base.add(off as usize) }
    }

    /// The lock-free read of one candidate record.
    fn probe(&self, pos: u64, key: &[u8]) -> Probe {
        let head = self.head().load(Ordering::Acquire);
        let loc = self.ring.locate(pos);
        if !self.ring.live_at(&loc, RECORD_HEADER as u64, head) {
            return Probe::Other;
        }
        if pos % RECORD_ALIGN != 0 {
            return Probe::Corrupt;
        }
        // SAFETY: loc.physical < ring bytes, and data_off + ring bytes == the mapping's length.
        let at = unsafe { self.base.add((self.geo.data_off + loc.physical) as usize) };
        let mut hb = [0u8; RECORD_HEADER];
        // SAFETY: is_live checked the header lies inside one segment of the mapping. The bytes
        // may be changing under us (another process reclaiming the segment); we copy them and
        // validate the copy below before using it.
        unsafe { ptr::copy_nonoverlapping(at, hb.as_mut_ptr(), RECORD_HEADER) };
        let h = match RecordHeader::decode(&hb) {
            Some(h) if self.ring.live_at(&loc, h.record_len(), head) => h,
            _ => return self.settle(&loc, Probe::Corrupt),
        };
        let vlen = h.value_len as usize;
        // SAFETY: is_live(pos, h.record_len()) put the key inside the record's segment; a
        // concurrent reclaim while comparing is detected by settle() below.
        let same_key =
            h.key_len as usize == key.len() && unsafe { key_matches(at.add(RECORD_HEADER), key) };
        if !same_key {
            return self.foreign(&loc, at, &hb, &h);
        }
        let mut value = Vec::with_capacity(vlen);
        // SAFETY: the value lies inside the record (bounds as above); `value` has capacity vlen
        // and every byte is initialised by the copy before set_len.
        unsafe {
            ptr::copy_nonoverlapping(at.add(RECORD_HEADER + key.len()), value.as_mut_ptr(), vlen);
            value.set_len(vlen);
        }
        if let Probe::Raced = self.settle(&loc, Probe::Other) {
            return Probe::Raced;
        }
        // The copy is now known to be what the writer wrote (or what the disk damaged).
        if h.pos != pos || record_crc(&hb, key, &[&value]) != h.crc {
            return Probe::Corrupt;
        }
        let mac_len = h.mac_len as usize;
        if vlen - mac_len > self.max_value_size {
            return Probe::TooLarge(vlen - mac_len);
        }
        // The clock is read only for entries that expire: it is a measurable share of a hit.
        let expires_ns = match h.expires_ms {
            0 => None,
            deadline if deadline > now_ms() => Some(deadline.saturating_mul(1_000_000)),
            _ => return Probe::Expired,
        };
        if let Some(signer) = &self.signer {
            let record = Signed {
                key,
                flags: h.flags,
                expires_ms: h.expires_ms,
                value: &value[mac_len..],
            };
            match signer.verify(
                Domain::Disk,
                &record,
                (mac_len > 0).then(|| &value[..mac_len]),
            ) {
                Verdict::Valid => {}
                refused => return Probe::Tampered(refused),
            }
        }
        value.drain(..mac_len);
        Probe::Hit(Hit {
            value,
            flags: h.flags,
            expires_ns,
        })
    }

    /// A slot whose tag matched led to a record of another key. With 64-bit tags that is
    /// nearly always damage (a flipped key byte or length), but it is also what a reader sees
    /// when it pairs a slot's old tag with a new position mid-update; the record's own checksum
    /// tells the two apart. Rare path, so the extra copy is fine.
    fn foreign(
        &self,
        loc: &Loc,
        at: *const u8,
        hb: &[u8; RECORD_HEADER],
        h: &RecordHeader,
    ) -> Probe {
        let body_len = h.key_len as usize + h.value_len as usize;
        let mut body = vec![0u8; body_len];
        // SAFETY: the caller checked is_live(pos, h.record_len()), so the body lies in one segment.
        unsafe { ptr::copy_nonoverlapping(at.add(RECORD_HEADER), body.as_mut_ptr(), body_len) };
        if let Probe::Raced = self.settle(loc, Probe::Other) {
            return Probe::Raced;
        }
        let (k, v) = body.split_at(h.key_len as usize);
        if h.pos == loc.pos && record_crc(hb, k, &[v]) == h.crc {
            Probe::Other
        } else {
            Probe::Corrupt
        }
    }

    /// Seqlock validation: if the head moved into the record's segment while we were copying,
    /// the writer may have overwritten the bytes we read, so the verdict is void. The acquire
    /// fence pairs with the writer's release fence between moving the head and writing.
    fn settle(&self, loc: &Loc, verdict: Probe) -> Probe {
        fence(Ordering::Acquire);
        let head = self.head().load(Ordering::Relaxed);
        if self.ring.not_reclaimed(loc, head) {
            verdict
        } else {
            Probe::Raced
        }
    }

    /// Reads a record header with the writer lock held (no writer can change live records).
    fn held(&self, pos: u64, head: u64) -> Held {
        if !self.ring.is_live(pos, RECORD_HEADER as u64, head) {
            return Held::Stale;
        }
        if pos % RECORD_ALIGN != 0 {
            return Held::Corrupt;
        }
        let mut hb = [0u8; RECORD_HEADER];
        // SAFETY: is_live bounds the header inside the mapping; under the writer lock no one
        // writes live records.
        unsafe { ptr::copy_nonoverlapping(self.data_ptr(pos), hb.as_mut_ptr(), RECORD_HEADER) };
        match RecordHeader::decode(&hb) {
            Some(h) if h.pos == pos && self.ring.is_live(pos, h.record_len(), head) => {
                Held::Live(h)
            }
            _ => Held::Corrupt,
        }
    }

    /// The slot of `bucket` holding `key`'s live record, with the writer lock held.
    fn find_held(
        &self,
        bucket: &[Slot],
        tag: u64,
        key: &[u8],
        head: u64,
    ) -> Option<(usize, u64, RecordHeader)> {
        bucket.iter().enumerate().find_map(|(i, slot)| {
            if slot.tag() != tag {
                return None;
            }
            let pos = slot.pos();
            match self.held(pos, head) {
                Held::Live(h) if h.key_len as usize == key.len() => {
                    // SAFETY: held() checked the record (key included) lies in one live segment.
                    let same = unsafe { key_matches(self.data_ptr(pos).add(RECORD_HEADER), key) };
                    same.then_some((i, pos, h))
                }
                _ => None,
            }
        })
    }

    fn write(&self, key: &[u8], value: &[u8], flags: u8, expires_ms: u64) -> Result<()> {
        // Signed outside the lock: it costs about a microsecond per KiB.
        let mac = self.signer.as_ref().map(|s| {
            s.sign(
                Domain::Disk,
                &Signed {
                    key,
                    flags,
                    expires_ms,
                    value,
                },
            )
        });
        let mac: &[u8] = mac.as_ref().map_or(&[], |m| m.as_slice());
        let _g = self.locked()?;
        let len = record_len(key.len(), mac.len() + value.len());
        let head = self.head().load(Ordering::Relaxed);
        let place = self
            .ring
            .place(head, len)
            .ok_or_else(|| io_err(&self.path, "cannot place a record", "log position overflow"))?;
        let hash = key_hash(key);
        let bucket_no = self.index.bucket_of(hash);
        // Before any store: a full disk fails this set, with the file as it was.
        self.reserve_for_write(place.end, bucket_no)?;
        if self.ring.seq(place.pos) != self.ring.seq(head) {
            // Entering a segment kills its previous lap: publish that before overwriting it, so
            // a reader that copies any new byte is certain to see the head move (settle()).
            self.reclaim(head, place.pos);
            self.head().store(place.pos, Ordering::Relaxed);
            fence(Ordering::Release);
        }
        let mut h = RecordHeader {
            crc: 0,
            flags,
            key_len: key.len() as u16,
            value_len: (mac.len() + value.len()) as u32,
            mac_len: mac.len() as u8,
            pos: place.pos,
            expires_ms,
        };
        h.crc = record_crc(&h.encode(), key, &[mac, value]);
        let hb = h.encode();
        let at = self.data_ptr(place.pos);
        // SAFETY: place() keeps the record inside one segment of the mapping; the space from the
        // head to the end of its segment holds only dead records, and we hold the writer lock.
        unsafe {
            ptr::copy_nonoverlapping(hb.as_ptr(), at, RECORD_HEADER);
            ptr::copy_nonoverlapping(key.as_ptr(), at.add(RECORD_HEADER), key.len());
            let at_value = at.add(RECORD_HEADER + key.len());
            ptr::copy_nonoverlapping(mac.as_ptr(), at_value, mac.len());
            ptr::copy_nonoverlapping(value.as_ptr(), at_value.add(mac.len()), value.len());
        }
        self.reclaim(place.pos, place.end);
        // Release: a reader that sees the new head, or the slot published after it, sees the
        // complete record.
        self.head().store(place.end, Ordering::Release);

        let tag = tag_of(hash);
        let bucket = self.index.bucket(bucket_no);
        let target = match self.find_held(bucket, tag, key, place.end) {
            Some((i, old_pos, old)) => {
                self.account(old_pos, old.record_len(), -1);
                i
            }
            None => self.free_slot(bucket, place.end),
        };
        self.account(place.pos, len, 1);
        bucket[target].publish(tag, place.pos);
        Ok(())
    }

    /// An empty or stale slot of the bucket, or else its oldest entry, evicted.
    fn free_slot(&self, bucket: &[Slot], head: u64) -> usize {
        let mut oldest: Option<(usize, u64, u64)> = None;
        for (i, slot) in bucket.iter().enumerate() {
            if slot.tag() == 0 {
                return i;
            }
            let pos = slot.pos();
            match self.held(pos, head) {
                Held::Live(h) => {
                    if oldest.map_or(true, |(_, p, _)| pos < p) {
                        oldest = Some((i, pos, h.record_len()));
                    }
                }
                Held::Stale | Held::Corrupt => return i,
            }
        }
        let (i, pos, len) = oldest.expect("a full bucket has a live slot");
        self.account(pos, len, -1);
        i
    }

    /// Zeroes the accounting of every segment the head enters between `from` and `to`.
    fn reclaim(&self, from: u64, to: u64) {
        for seg in self.ring.entered(from, to) {
            let (count, bytes) = self.seg_account(seg);
            count.store(0, Ordering::Relaxed);
            bytes.store(0, Ordering::Relaxed);
        }
    }
}

/// Compares mapped bytes with `key` through small stack copies, so no Rust reference is ever
/// formed over bytes another process may be rewriting (the copy is validated afterwards).
///
/// # Safety
/// `at .. at + key.len()` must lie inside the mapping.
unsafe fn key_matches(at: *const u8, key: &[u8]) -> bool {
    let mut buf = [0u8; 256];
    for (i, chunk) in key.chunks(buf.len()).enumerate() {
        // SAFETY: chunk i covers bytes [i * 256, i * 256 + chunk.len()) of the key, inside the
        // caller's range; buf holds at least chunk.len() bytes.
        unsafe { ptr::copy_nonoverlapping(at.add(i * buf.len()), buf.as_mut_ptr(), chunk.len()) };
        if buf[..chunk.len()] != *chunk {
            return false;
        }
    }
    true
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("empty key"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::TooLarge(format!(
            "key of {} bytes exceeds {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;

    /// A fresh directory name under the system temp dir (not created), for the disk modules'
    /// unit tests.
    pub(crate) fn temp_dir(name: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "smartcache-disk-unit-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    /// A get that starts after a set or delete returned sees that write or a later one, never
    /// an older version, even racing the next writes (reader and writer on separate handles,
    /// as two processes would be).
    #[test]
    fn a_get_never_returns_a_version_older_than_the_last_finished_write() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let d = temp_dir("versions");
        let writer = DiskTier::open(&d, 4 << 20, 64).unwrap();
        let reader = DiskTier::open(&d, 4 << 20, 64).unwrap();
        // 2v: version v was set; 2v + 1: then deleted.
        let step = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let checker = {
            let (step, stop) = (Arc::clone(&step), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut found = 0;
                while !stop.load(Ordering::SeqCst) {
                    let at = step.load(Ordering::SeqCst);
                    let oldest = at / 2 + at % 2;
                    if let Some(hit) = reader.get(b"k").unwrap() {
                        let got = u64::from_le_bytes(hit.value.try_into().unwrap());
                        assert!(got >= oldest, "version {got} read after step {at}");
                        found += 1;
                    }
                }
                found
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_millis(1500);
        let mut v = 0u64;
        while std::time::Instant::now() < deadline {
            v += 1;
            writer.set(b"k", &v.to_le_bytes(), 0, None).unwrap();
            step.store(2 * v, Ordering::SeqCst);
            writer.delete(b"k").unwrap();
            step.store(2 * v + 1, Ordering::SeqCst);
        }
        stop.store(true, Ordering::SeqCst);
        assert!(checker.join().unwrap() > 100, "too few reads found a value");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn set_get_delete_round_trip() {
        let d = temp_dir("rt");
        let t = DiskTier::open(&d, 1 << 20, 4096).unwrap();
        t.set(b"k", b"v1", 1, None).unwrap();
        let hit = t.get(b"k").unwrap().unwrap();
        assert_eq!(
            (hit.value.as_slice(), hit.flags, hit.remaining()),
            (&b"v1"[..], 1, None)
        );
        t.set(b"k", b"v2", 0, Some(Duration::from_secs(60)))
            .unwrap();
        let hit = t.get(b"k").unwrap().unwrap();
        assert_eq!(hit.value, b"v2");
        assert!(hit.remaining().unwrap() > Duration::from_secs(58));
        assert_eq!(t.stats().entries, 1);
        let before = t.stats().counters;
        assert!(t.contains(b"k").unwrap());
        assert!(!t.contains(b"other").unwrap());
        assert_eq!(t.stats().counters, before, "contains is not counted");
        assert!(t.delete(b"k").unwrap());
        assert!(!t.delete(b"k").unwrap());
        assert_eq!(t.get(b"k").unwrap(), None);
        assert_eq!(t.stats().entries, 0);
        assert_eq!(t.stats().bytes_used, 0);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_full_bucket_evicts_its_oldest_entry() {
        let d = temp_dir("bucket");
        // The smallest file has few buckets; 8 * buckets + 1 keys must overflow some bucket.
        let t = DiskTier::open(&d, 64 << 10, 64).unwrap();
        let buckets = t.geometry().buckets;
        let n = buckets * 8 + 1;
        for i in 0..n {
            t.set(&i.to_le_bytes(), &i.to_be_bytes(), 0, None).unwrap();
        }
        let present = (0..n)
            .filter(|i| {
                let got = t.get(&i.to_le_bytes()).unwrap();
                if let Some(h) = &got {
                    assert_eq!(h.value, i.to_be_bytes());
                }
                got.is_some()
            })
            .count() as u64;
        assert!(present < n);
        assert_eq!(t.stats().entries, present);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn expire_step_is_bounded_and_resumes() {
        let d = temp_dir("expire");
        let t = DiskTier::open(&d, 1 << 20, 64).unwrap();
        for i in 0..50u32 {
            t.set(&i.to_le_bytes(), b"x", 0, Some(Duration::ZERO))
                .unwrap();
        }
        t.set(b"keep", b"x", 0, None).unwrap();
        assert_eq!(t.stats().entries, 51);
        let total = t.geometry().buckets as usize * 8;
        let mut reclaimed = 0;
        let mut steps = 0;
        while reclaimed < 50 {
            let n = t.expire_step(total / 4 + 1).unwrap();
            assert!(n <= total / 4 + 1);
            reclaimed += n;
            steps += 1;
            assert!(steps <= 5, "one lap of the index reclaims everything");
        }
        assert_eq!(t.stats().entries, 1);
        assert!(t.get(b"keep").unwrap().is_some());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn orphaned_temp_files_of_dead_creators_are_removed() {
        let d = temp_dir("orphans");
        fs::create_dir_all(&d).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let prefix = file::temp_prefix(FILE_NAME);
        let orphan = d.join(format!("{prefix}{dead}.1"));
        let ours = d.join(format!("{prefix}{}.2", std::process::id()));
        let other = d.join("unrelated.tmp");
        for f in [&orphan, &ours, &other] {
            fs::write(f, b"x").unwrap();
        }
        DiskTier::open(&d, 1 << 20, 64).unwrap();
        assert!(!orphan.exists());
        assert!(ours.exists() && other.exists());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn invalid_keys_are_refused() {
        let d = temp_dir("keys");
        let t = DiskTier::open(&d, 1 << 20, 64).unwrap();
        assert_eq!(t.get(b"").unwrap_err().code(), -1);
        assert_eq!(t.set(b"", b"v", 0, None).unwrap_err().code(), -1);
        let long = vec![7u8; MAX_KEY_LEN + 1];
        assert_eq!(t.set(&long, b"v", 0, None).unwrap_err().code(), -2);
        assert_eq!(t.get(&long).unwrap_err().code(), -2);
        fs::remove_dir_all(d).unwrap();
    }
}
