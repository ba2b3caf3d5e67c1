//! The write log over memory of this process, for the schedule checker (`crate::sync`,
//! tests/interleavings.rs): its atomics carry bookkeeping and cannot be laid over a mapped
//! file, so a `CheckedFile` holds the words the file would hold, and each `open` is a handle
//! on them as `WriteLog::open` is a process's handle on the file. Every method of the handle
//! is the real one.

use super::super::outage;
use super::{Copies, Entry, Shared, WriteLog, COPY_GROUPS, WRITE_GROUPS};
use crate::sync::atomic::AtomicU64;
use std::sync::Arc;

/// The shared words of a write log file: `next`, the copy counters and the entries.
struct Words {
    next: AtomicU64,
    copies: Box<[Copies]>,
    entries: Box<[Entry]>,
    writes: Box<[Copies]>,
    /// The outage table's counters and slots (std atomics: not under the checker).
    outage: Box<[std::sync::atomic::AtomicU64]>,
}

/// A write log "file" of `len` entries, shared by the handles `open` makes.
pub struct CheckedFile {
    words: Arc<Words>,
    len: u64,
}

impl CheckedFile {
    /// A new, empty log of `len` entries (len > 0).
    pub fn new(len: u64) -> CheckedFile {
        assert!(len > 0, "a write log has entries");
        let zero = || AtomicU64::new(0);
        CheckedFile {
            words: Arc::new(Words {
                next: zero(),
                copies: (0..COPY_GROUPS)
                    .map(|_| Copies {
                        count: zero(),
                        last_start_ms: zero(),
                    })
                    .collect(),
                writes: (0..WRITE_GROUPS)
                    .map(|_| Copies {
                        count: zero(),
                        last_start_ms: zero(),
                    })
                    .collect(),
                outage: (0..outage::HEADER_WORDS + outage::SLOTS * outage::SLOT_WORDS)
                    .map(|_| std::sync::atomic::AtomicU64::new(0))
                    .collect(),
                entries: (0..len)
                    .map(|_| Entry {
                        stamp: zero(),
                        hash: zero(),
                        writer: zero(),
                        kind: zero(),
                    })
                    .collect(),
            }),
            len,
        }
    }

    /// A handle on this log, as a process opening the file gets.
    pub fn open(&self) -> WriteLog {
        let w = &self.words;
        // The handle keeps the words alive (its Arc), and boxed slices never move.
        let outage = w.outage.as_ptr() as *const u8;
        let at = Shared {
            next: &w.next,
            copies: w.copies.as_ptr(),
            entries: w.entries.as_ptr(),
            writes: w.writes.as_ptr(),
            // SAFETY: the slots follow the HEADER_WORDS counters inside the same boxed slice.
            outage: (outage, unsafe { outage.add(outage::HEADER_WORDS * 8) }),
        };
        WriteLog::over(Arc::new(Arc::clone(w)), at, self.len, 0)
    }
}
