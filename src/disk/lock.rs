//! The writer lock: one writer at a time across every thread and process using the file.
//!
//! Two layers, because flock(2) excludes open file descriptions, not threads: threads sharing
//! one DiskTier (one descriptor) would all "hold" the same flock. A process-local mutex orders
//! the threads, then flock(LOCK_EX) on the cache file orders the processes. The kernel drops a
//! flock when its holder dies, so a writer killed mid-write cannot leave the lock held.
//! After fork() the child shares the parent's open file description, and with it the parent's
//! flock: `after_fork` gives the child a description of its own under the same descriptor
//! number.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

pub struct WriterLock {
    local: Mutex<()>,
    /// A forked child could not get a description of its own (`after_fork`): locking would
    /// share the parent's flock, so every write is refused instead.
    shared_with_parent: AtomicBool,
}

/// Held while writing; dropping it releases the file lock, then the mutex.
pub struct WriterGuard<'a> {
    file: &'a File,
    _local: MutexGuard<'a, ()>,
}

impl Default for WriterLock {
    fn default() -> Self {
        Self::new()
    }
}

impl WriterLock {
    pub fn new() -> WriterLock {
        WriterLock {
            local: Mutex::new(()),
            shared_with_parent: AtomicBool::new(false),
        }
    }

    /// Held by the thread about to fork (see `crate::fork`): no thread of this process holds
    /// the flock at the instant of the fork.
    pub fn hold_for_fork(&self) -> MutexGuard<'_, ()> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// In a forked child: points `file`'s descriptor number at a new open file description of
    /// `path`, so the child's flock excludes its parent's (a shared description would let both
    /// write at once). The mapping is untouched.
    pub fn after_fork(&self, file: &File, path: &Path) {
        let reopened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .ok()
            // SAFETY: both descriptors are open for the call (`reopened` and `file` own them);
            // dup3 atomically makes file's number refer to reopened's description, keeping
            // close-on-exec, and `reopened` then closes its own number only.
            .filter(
                |f| unsafe { libc::dup3(f.as_raw_fd(), file.as_raw_fd(), libc::O_CLOEXEC) } >= 0,
            );
        self.shared_with_parent.store(reopened.is_none(), Relaxed);
    }

    /// Blocks until this thread is the only writer on `file` host-wide.
    pub fn lock<'a>(&'a self, file: &'a File) -> Result<WriterGuard<'a>> {
        // A thread that panicked while writing left at worst an unreferenced partial record:
        // the file's own invariants do not depend on the mutex, so poisoning is ignored.
        let local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if self.shared_with_parent.load(Relaxed) {
            return Err(Error::io(
                "after fork() the cache file could not be reopened for this process's lock",
            ));
        }
        flock(file, libc::LOCK_EX)?;
        Ok(WriterGuard {
            file,
            _local: local,
        })
    }
}

/// Returns Ok(false) only for LOCK_NB when another description holds the lock.
fn flock(file: &File, op: libc::c_int) -> Result<bool> {
    loop {
        // SAFETY: flock only reads the descriptor number, which `file` keeps open for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(false),
            _ => return Err(Error::io(format!("flock on the cache file failed: {err}"))),
        }
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        // Unlock cannot meaningfully fail on a valid descriptor; closing it would release too.
        let _ = flock(self.file, libc::LOCK_UN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn temp_file(name: &str) -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!(
            "smartcache-lock-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let f = File::create(&path).unwrap();
        (path, f)
    }

    #[test]
    fn excludes_other_open_descriptions_until_dropped() {
        let (path, f) = temp_file("desc");
        let other = File::open(&path).unwrap();
        let lock = WriterLock::new();
        let g = lock.lock(&f).unwrap();
        assert!(!flock(&other, libc::LOCK_EX | libc::LOCK_NB).unwrap());
        drop(g);
        assert!(flock(&other, libc::LOCK_EX | libc::LOCK_NB).unwrap());
        flock(&other, libc::LOCK_UN).unwrap();
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn excludes_threads_sharing_one_descriptor() {
        let (path, f) = temp_file("threads");
        let shared = Arc::new((WriterLock::new(), f, AtomicBool::new(false)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = Arc::clone(&shared);
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _g = s.0.lock(&s.1).unwrap();
                        assert!(!s.2.swap(true, Ordering::SeqCst), "two writers at once");
                        std::hint::spin_loop();
                        s.2.store(false, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        std::fs::remove_file(path).unwrap();
    }
}
