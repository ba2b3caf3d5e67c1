//! Where finished jobs wait for their caller: a list of completions and an eventfd that is
//! readable while the list is not empty, so an event loop can watch it (Python's
//! `loop.add_reader`, epoll, poll) instead of blocking or polling.

use super::Done;
use crate::error::{Error, Result};
use crate::fork;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The completions of one caller (one event loop).
pub struct Sink {
    ready: Mutex<Ready>,
    /// Readable (counter above zero) exactly while `ready.done` is not empty.
    fd: OwnedFd,
    /// The fork generation this sink was made in: a child must not wait on a lock a parent
    /// thread held at the fork, nor share the parent's eventfd, so it makes its own sink.
    generation: u64,
}

struct Ready {
    done: VecDeque<Done>,
    /// Whether the eventfd's counter is above zero (written once per empty-to-nonempty turn).
    signalled: bool,
}

impl Sink {
    pub fn new() -> Result<Sink> {
        // SAFETY: eventfd takes no pointers; a negative result is checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(Error::Io(format!(
                "eventfd: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Sink {
            ready: Mutex::new(Ready {
                done: VecDeque::new(),
                signalled: false,
            }),
            // SAFETY: `raw` is a descriptor eventfd just opened and nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            generation: fork::generation(),
        })
    }

    /// The descriptor to watch for readability.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Err in a forked child for a sink its parent made.
    pub fn check_process(&self) -> Result<()> {
        if self.generation == fork::generation() {
            Ok(())
        } else {
            Err(Error::invalid(
                "this queue was opened before fork(): open a new one in the child",
            ))
        }
    }

    /// Adds a completion and makes the descriptor readable.
    pub fn push(&self, done: Done) {
        let mut ready = self.lock();
        ready.done.push_back(done);
        if !ready.signalled {
            ready.signalled = true;
            self.signal(1);
        }
    }

    /// Up to `max` completions, oldest first. The descriptor stays readable while more wait.
    pub fn take(&self, max: usize) -> Vec<Done> {
        let mut ready = self.lock();
        let n = max.min(ready.done.len());
        let out: Vec<Done> = ready.done.drain(..n).collect();
        if ready.done.is_empty() && ready.signalled {
            ready.signalled = false;
            self.reset();
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, Ready> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn signal(&self, n: u64) {
        let bytes = n.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local array to our own descriptor. It cannot
        // fail with the counter this low (one write per empty-to-nonempty turn, each undone by
        // `reset` before the next); a failure would only delay the loop's wake-up.
        let _ = unsafe { libc::write(self.fd(), bytes.as_ptr().cast(), bytes.len()) };
    }

    fn reset(&self) {
        let mut bytes = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live local array from our own non-blocking
        // descriptor; EAGAIN (already zero) is harmless.
        let _ = unsafe { libc::read(self.fd(), bytes.as_mut_ptr().cast(), bytes.len()) };
    }
}
