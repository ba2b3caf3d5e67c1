//! The write log over memory of this process, for the schedule checker (`crate::sync`,
//! tests/interleavings.rs): its atomics carry bookkeeping and cannot be laid over a mapped
//! file, so a `CheckedFile` holds the words the file would hold, and each `open` is a handle
//! on them as `WriteLog::open` is a process's handle on the file. Every method of the handle
//! is the real one.

use super::{Copies, Entry, WriteLog, COPY_GROUPS};
use crate::sync::atomic::AtomicU64;
use std::sync::Arc;

/// The shared words of a write log file: `next`, the copy counters and the entries.
struct Words {
    next: AtomicU64,
    copies: Box<[Copies]>,
    entries: Box<[Entry]>,
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
        WriteLog::over(
            Box::new(Arc::clone(w)),
            &w.next,
            w.copies.as_ptr(),
            w.entries.as_ptr(),
            self.len,
            0,
        )
    }
}
