//! Memory tiers kept coherent across hosts (`redis_invalidation`): a listener per cache that
//! hears from Redis which keys under the cache's prefix changed, and tells the memory tier.
//!
//! **The connection.** One connection of the listener's own (outside the pool), set up as:
//! 1. `CLIENT ID`, then `CLIENT TRACKING on REDIRECT <its own id> BCAST PREFIX <key prefix>`:
//!    Redis reports every change of a key under the prefix, by any client (set, delete,
//!    UNLINK of a clear, expiry, eviction), and a FLUSHDB/FLUSHALL as a null;
//! 2. `SUBSCRIBE __redis__:invalidate`: on RESP2, reports to a redirect target arrive as
//!    messages of that channel. Redirecting to the connection itself ties the tracking to the
//!    connection: when it dies, no tracking client is left reporting to a dead id.
//!
//! **NOLOOP and this process's own writes.** NOLOOP hides only the changes made by the
//! tracking connection itself, which writes nothing: the cache writes over pooled connections.
//! Nor can the cache's own writes be told apart otherwise: a message names keys, not writers,
//! and a message about a key this process just wrote may be another host's later write of it.
//! So every change is applied, own writes included, and a set here leaves nothing in its own
//! memory (the cache drops the entry at once rather than racing its report: see
//! `tiered::coherent`); the next get reads the key back from Redis. Never stale, at the cost of
//! one Redis read per write that is read again.
//!
//! **Trust.** Memory is trusted only while the listener is subscribed ([`Coherence`]). Before
//! the subscription is confirmed, and from the moment the connection fails (an error, EOF, a
//! `CLIENT KILL`, no answer to the heartbeat PING within `redis_timeout_ms`), the listener is
//! down: memory is emptied, and what a copy from Redis puts there meanwhile is dropped again
//! at once by the caller (`Coherence::is_listening` after the insert). Back up:
//! subscribed first, memory emptied once more, then trusted. The listener reconnects with
//! backoff (25 ms doubling to 2 s).
//!
//! **Staleness bound.** A write another host finished (Redis answered it) at time t is gone
//! from this memory tier by t + the delivery time of one message from Redis (Redis writes the
//! report to this socket before its reply to the writer). If the path from Redis stops
//! delivering without the connection failing (a silent network fault, Redis paused), the
//! heartbeat notices: after `HEARTBEAT` without a byte, a PING not answered within
//! `redis_timeout_ms` takes the listener down, so memory serves nothing older than
//! `HEARTBEAT + redis_timeout_ms` past the last byte heard.
//!
//! Anything Redis sends is untrusted: a reply of any other shape takes the connection down
//! (memory emptied, reconnect), keys not under the prefix are ignored, and replies are held to
//! a budget sized for keys, not values.

use super::conn::{Conn, Reply};
use super::RedisTier;
use crate::config::MAX_KEY_LEN;
use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The channel Redis reports changes on (RESP2 redirection).
const CHANNEL: &[u8] = b"__redis__:invalidate";

/// Without a byte from Redis for this long, the listener PINGs; see the staleness bound.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Reconnect backoff: the first wait, doubled per failure up to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(25);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The reply budget of one message, in values of the largest key plus frame slack (about
/// 128 KiB each, so about 9 MiB with the overhead): Redis batches the keys changed in one
/// event-loop pass into one message. A larger batch is refused like any oversized reply: the
/// connection goes down, memory is emptied, and the listener reconnects.
const KEYS_PER_MESSAGE_BUDGET: usize = 64;

/// What the listener tells: the memory tier's side.
pub trait Sink: Send + Sync {
    /// `key` (the cache's key, prefix removed) was changed by someone.
    fn key_changed(&self, key: &[u8]);
    /// Anything may have changed: a flush, or the listener going up or down.
    fn all_changed(&self);
}

/// Whether memory may be trusted, and what the listener has heard; shared by the cache and
/// every listener it starts (a forked child starts its own).
#[derive(Default)]
pub struct Coherence {
    listening: AtomicBool,
    messages: AtomicU64,
    keys: AtomicU64,
    flushes: AtomicU64,
    connects: AtomicU64,
    disconnects: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A snapshot of [`Coherence`] for stats (the stats JSON's `tiers.redis.invalidation`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InvalidationStats {
    /// Subscribed: memory is trusted.
    pub listening: bool,
    /// Invalidation messages received.
    pub messages: u64,
    /// Keys they named.
    pub keys: u64,
    /// Flush messages (FLUSHDB/FLUSHALL) received.
    pub flushes: u64,
    /// Subscriptions established (the first one included).
    pub connects: u64,
    /// Times the listener went down after being up.
    pub disconnects: u64,
    /// Why the latest connection failed or could not be made.
    pub last_error: Option<String>,
}

impl Coherence {
    /// True while subscribed. Read (SeqCst) after putting an entry into memory: false means
    /// nobody would report its replacement, and the entry must be dropped again. The listener
    /// stores false before emptying memory, so either that emptying sees the entry or the
    /// caller sees false.
    #[inline]
    pub fn is_listening(&self) -> bool {
        self.listening.load(SeqCst)
    }

    /// In a forked child: the parent's listener does not exist here; nothing is trusted until
    /// the child's own is subscribed. The caller empties memory.
    pub fn forget_listener(&self) {
        self.listening.store(false, SeqCst);
    }

    /// Waits up to `timeout` for the listener to be subscribed; true if it is.
    pub fn wait_listening(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while !self.is_listening() {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    pub fn snapshot(&self) -> InvalidationStats {
        InvalidationStats {
            listening: self.is_listening(),
            messages: self.messages.load(Relaxed),
            keys: self.keys.load(Relaxed),
            flushes: self.flushes.load(Relaxed),
            connects: self.connects.load(Relaxed),
            disconnects: self.disconnects.load(Relaxed),
            last_error: lock(&self.last_error).clone(),
        }
    }

    /// Takes the lock for `crate::fork`.
    pub fn hold_for_fork<'a>(&'a self, held: &mut Vec<Box<dyn crate::fork::Held + 'a>>) {
        held.push(Box::new(lock(&self.last_error)));
    }

    fn go_up(&self, sink: &dyn Sink) {
        sink.all_changed();
        self.connects.fetch_add(1, Relaxed);
        self.listening.store(true, SeqCst);
    }

    fn go_down(&self, sink: &dyn Sink) {
        if self.listening.swap(false, SeqCst) {
            self.disconnects.fetch_add(1, Relaxed);
        }
        sink.all_changed();
    }

    fn failed(&self, why: String) {
        *lock(&self.last_error) = Some(why);
    }
}

/// The listener thread; dropping this stops and joins it (within about `redis_timeout_ms`).
pub struct Listener {
    stop: Arc<AtomicBool>,
    /// Written to on stop, to wake the thread from its wait.
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Starts listening for `tier`'s prefix; `coherence` says when memory may be trusted.
    pub fn start(
        tier: Arc<RedisTier>,
        coherence: Arc<Coherence>,
        sink: Arc<dyn Sink>,
    ) -> Result<Listener> {
        let (woken, wake) = pipe()?;
        let stop = Arc::new(AtomicBool::new(false));
        let session = Session {
            tier,
            coherence,
            sink,
            stop: Arc::clone(&stop),
            woken,
        };
        let thread = std::thread::Builder::new()
            .name("smartcache-inval".into())
            .spawn(move || session.run())
            .map_err(|e| Error::Internal(format!("cannot start the invalidation listener: {e}")))?;
        Ok(Listener {
            stop,
            wake,
            thread: Some(thread),
        })
    }

    /// In a forked child, where the thread does not exist: lets go of it without waking or
    /// joining it (the pipe is shared with the parent: writing to it would wake the parent's
    /// thread). Only this process's copies of the pipe's descriptors are closed.
    pub fn abandon(mut self) {
        if let Some(t) = self.thread.take() {
            crate::fork::abandon(t);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let Some(t) = self.thread.take() else {
            return; // abandoned
        };
        self.stop.store(true, SeqCst);
        // SAFETY: `wake` is the pipe's write end, owned by this Listener; one byte from a
        // live buffer. A full pipe (EAGAIN) already wakes the thread.
        unsafe { libc::write(self.wake.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        let _ = t.join();
    }
}

/// What the listener thread owns.
struct Session {
    tier: Arc<RedisTier>,
    coherence: Arc<Coherence>,
    sink: Arc<dyn Sink>,
    stop: Arc<AtomicBool>,
    /// The pipe's read end: readable once `Listener::drop` asks the thread to stop.
    woken: OwnedFd,
}

/// Why a wait ended.
enum Woken {
    Readable,
    Stop,
    TimedOut,
}

impl Session {
    fn run(self) {
        let mut failures = 0u32;
        while !self.stopping() {
            let mut was_up = false;
            let Err(why) = self.listen(&mut was_up) else {
                // Closing: memory is going away with the cache, nothing to empty.
                self.coherence.listening.store(false, SeqCst);
                return;
            };
            self.coherence.go_down(&*self.sink);
            self.coherence.failed(why);
            failures = if was_up {
                0
            } else {
                failures.saturating_add(1)
            };
            if let Ok(Woken::Stop) = self.wait(None, Instant::now() + backoff(failures)) {
                return;
            }
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(SeqCst)
    }

    /// One connection's life: Ok when asked to stop, Err(why) when it failed.
    fn listen(&self, was_up: &mut bool) -> std::result::Result<(), String> {
        let timeout = self.tier.timeout();
        let deadline = Instant::now() + timeout;
        let mut conn = self.tier.dial_dedicated(deadline).map_err(|e| e.message)?;
        // Its replies carry keys, never values.
        conn.set_max_value_size(MAX_KEY_LEN);
        self.subscribe(&mut conn, deadline)?;
        self.coherence.go_up(&*self.sink);
        *was_up = true;
        let mut last_heard = Instant::now();
        loop {
            if self.stopping() {
                return Ok(());
            }
            if !conn.has_buffered_input() {
                match self.wait(Some(conn.as_raw_fd()), last_heard + HEARTBEAT)? {
                    Woken::Stop => return Ok(()),
                    Woken::Readable => {}
                    Woken::TimedOut => {
                        // The next reply is the PONG or a message sent before it: either
                        // proves the stream up to now arrived.
                        conn.expect_values(KEYS_PER_MESSAGE_BUDGET);
                        let reply = conn
                            .command(&[b"PING"], Instant::now() + timeout)
                            .map_err(|e| format!("heartbeat: {}", e.message))?;
                        self.apply(reply)?;
                        last_heard = Instant::now();
                        continue;
                    }
                }
            }
            conn.expect_values(KEYS_PER_MESSAGE_BUDGET);
            let reply = conn
                .receive(Instant::now() + timeout)
                .map_err(|e| e.message)?;
            self.apply(reply)?;
            last_heard = Instant::now();
        }
    }

    /// Tracking for the prefix, redirected to this connection, and the subscription.
    fn subscribe(&self, conn: &mut Conn, deadline: Instant) -> std::result::Result<(), String> {
        let peer = conn.peer().to_string();
        let id = match conn.command(&[b"CLIENT", b"ID"], deadline) {
            Ok(Reply::Integer(id)) => id.to_string(),
            Ok(other) => return Err(format!("{peer} answered CLIENT ID with {other:?}")),
            Err(e) => return Err(e.message),
        };
        let tracking: [&[u8]; 8] = [
            b"CLIENT",
            b"TRACKING",
            b"on",
            b"REDIRECT",
            id.as_bytes(),
            b"BCAST",
            b"PREFIX",
            self.tier.key_prefix(),
        ];
        match conn.command(&tracking, deadline) {
            Ok(Reply::Status(s)) if s == b"OK" => {}
            Ok(Reply::Error(e)) => {
                return Err(format!(
                    "{peer} refused CLIENT TRACKING: {e} (redis_invalidation needs Redis 6 or \
                     later, and a user allowed CLIENT and SUBSCRIBE)"
                ))
            }
            Ok(other) => return Err(format!("{peer} answered CLIENT TRACKING with {other:?}")),
            Err(e) => return Err(e.message),
        }
        match conn.command(&[b"SUBSCRIBE", CHANNEL], deadline) {
            Ok(Reply::Array(a))
                if matches!(a.as_slice(), [Reply::Bulk(kind), Reply::Bulk(chan), Reply::Integer(_)]
                    if kind == b"subscribe" && chan == CHANNEL) =>
            {
                Ok(())
            }
            Ok(other) => Err(format!("{peer} answered SUBSCRIBE with {other:?}")),
            Err(e) => Err(e.message),
        }
    }

    /// Applies one reply of the subscribed connection; Err for anything that is not one.
    fn apply(&self, reply: Reply) -> std::result::Result<(), String> {
        let items = match reply {
            Reply::Array(items) => items,
            Reply::Error(e) => return Err(format!("Redis sent an error: {e}")),
            other => return Err(format!("unexpected reply {other:?}")),
        };
        match items.as_slice() {
            [Reply::Bulk(kind), Reply::Bulk(chan), payload]
                if kind == b"message" && chan == CHANNEL =>
            {
                self.coherence.messages.fetch_add(1, Relaxed);
                match payload {
                    Reply::Array(keys) => self.keys_changed(keys),
                    // FLUSHDB / FLUSHALL.
                    Reply::Nil => {
                        self.coherence.flushes.fetch_add(1, Relaxed);
                        self.sink.all_changed();
                        Ok(())
                    }
                    other => Err(format!("invalidation message carrying {other:?}")),
                }
            }
            [Reply::Bulk(kind), ..] if kind == b"pong" => Ok(()),
            _ => Err(format!("unexpected message {items:?}")),
        }
    }

    fn keys_changed(&self, keys: &[Reply]) -> std::result::Result<(), String> {
        let prefix = self.tier.key_prefix();
        for k in keys {
            let Reply::Bulk(k) = k else {
                return Err(format!("invalidation message naming {k:?}"));
            };
            self.coherence.keys.fetch_add(1, Relaxed);
            // Keys not under the prefix, or that no cache key maps to, are no entry of ours.
            match k.strip_prefix(prefix) {
                Some(key) if !key.is_empty() && key.len() <= MAX_KEY_LEN => {
                    self.sink.key_changed(key)
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Waits until `socket` (if any) is readable, a stop is asked, or `until`.
    fn wait(&self, socket: Option<RawFd>, until: Instant) -> std::result::Result<Woken, String> {
        loop {
            if self.stopping() {
                return Ok(Woken::Stop);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Woken::TimedOut);
            }
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            let mut fds = [
                libc::pollfd {
                    fd: self.woken.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    // A negative descriptor is ignored by poll.
                    fd: socket.unwrap_or(-1),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a live array of two pollfd entries for the whole call.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll: {e}"));
            }
            if fds[0].revents != 0 {
                return Ok(Woken::Stop);
            }
            // Readable, or hung up / in error: the read that follows says which.
            if fds[1].revents != 0 {
                return Ok(Woken::Readable);
            }
        }
    }
}

/// The wait before reconnecting after `failures` failed attempts in a row (0: the connection
/// had been up), with up to a quarter more at random so that hosts cut off together do not
/// all reconnect in the same instant.
fn backoff(failures: u32) -> Duration {
    let base = BACKOFF_FIRST
        .saturating_mul(1 << failures.min(16))
        .min(BACKOFF_MAX);
    let jitter = crate::clock::unix_ns() % (base.as_nanos() as u64 / 4 + 1);
    base + Duration::from_nanos(jitter)
}

/// A close-on-exec, non-blocking pipe: (read end, write end).
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::Internal(format!(
            "cannot create the invalidation listener's pipe: {e}"
        )));
    }
    // SAFETY: pipe2 succeeded: both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_bounded_jitter() {
        assert!(backoff(0) >= BACKOFF_FIRST && backoff(0) <= BACKOFF_FIRST * 5 / 4);
        assert!(backoff(2) >= BACKOFF_FIRST * 4);
        for n in [7, 30, u32::MAX] {
            assert!(backoff(n) >= BACKOFF_MAX && backoff(n) <= BACKOFF_MAX * 5 / 4);
        }
    }
}
