//! The circuit breaker and its background probe.
//!
//! Policy: after `FAILURE_THRESHOLD` consecutive transport failures (connect error, timeout,
//! closed connection, garbage reply) the breaker opens. While open, calls do not touch the
//! network: they return at once (counted as `skipped`, not as errors). A probe thread dials a
//! fresh connection and PINGs every `PROBE_INTERVAL` (each attempt bounded by the tier's
//! timeout); the first PONG closes the breaker. One success resets the failure count, so
//! sporadic failures never open it. Redis *error replies* (WRONGTYPE, OOM…) prove the server is
//! alive and do not count toward opening.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

pub(crate) const FAILURE_THRESHOLD: u32 = 3;
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// The breaker's state as stats report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go to Redis.
    Closed,
    /// Calls are skipped; the probe is waiting for Redis to come back.
    Open,
}

pub struct Breaker {
    open: AtomicBool,
    failures: AtomicU32,
    threshold: u32,
    times_opened: AtomicU64,
    /// Guards the probe thread's stop flag; the condvar wakes it on open and on stop.
    control: Mutex<bool>,
    wake: Condvar,
}

impl Breaker {
    pub fn new(threshold: u32) -> Breaker {
        Breaker {
            open: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            threshold: threshold.max(1),
            times_opened: AtomicU64::new(0),
            control: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    /// May a call go to Redis now?
    #[inline]
    pub fn allows(&self) -> bool {
        !self.open.load(Ordering::Acquire)
    }

    pub fn state(&self) -> BreakerState {
        if self.allows() {
            BreakerState::Closed
        } else {
            BreakerState::Open
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    pub fn times_opened(&self) -> u64 {
        self.times_opened.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn success(&self) {
        // Read first: the common case (already 0) then writes nothing, so concurrent
        // successes do not bounce the cache line between cores.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records a transport failure; true when this one opened the breaker.
    pub fn failure(&self) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        n >= self.threshold && self.trip()
    }

    /// Opens the breaker now (e.g. Redis unreachable at open); true if it was closed.
    pub fn trip(&self) -> bool {
        if self.open.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.times_opened.fetch_add(1, Ordering::Relaxed);
        // Notify under the lock so the probe cannot miss it between its check and its wait.
        let _g = self.control.lock().unwrap_or_else(|p| p.into_inner());
        self.wake.notify_all();
        true
    }

    fn close(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open.store(false, Ordering::Release);
    }

    /// Held by the thread about to fork (see `crate::fork`).
    pub fn hold_for_fork(&self) -> MutexGuard<'_, bool> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the probe thread. `probe` returns true when Redis answered; `on_close` runs just
    /// before the breaker closes (the tier drops stale pooled connections there).
    pub fn spawn_probe(
        self: &Arc<Self>,
        interval: Duration,
        probe: impl FnMut() -> bool + Send + 'static,
        on_close: impl Fn() + Send + 'static,
    ) -> std::io::Result<ProbeThread> {
        self.spawn_probe_watching(interval, probe, on_close, None)
    }

    /// As `spawn_probe`; while the breaker is closed the thread also runs `watch`'s closure
    /// every `watch`'s interval (the Sentinel check of where the master is).
    pub fn spawn_probe_watching(
        self: &Arc<Self>,
        interval: Duration,
        mut probe: impl FnMut() -> bool + Send + 'static,
        on_close: impl Fn() + Send + 'static,
        mut watch: Option<Watch>,
    ) -> std::io::Result<ProbeThread> {
        let breaker = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("smartcache-redis-probe".into())
            .spawn(move || {
                let mut stop = breaker.control.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if *stop {
                        return;
                    }
                    if breaker.allows() {
                        let Some((every, check)) = watch.as_mut() else {
                            stop = breaker.wake.wait(stop).unwrap_or_else(|p| p.into_inner());
                            continue;
                        };
                        stop = breaker
                            .wake
                            .wait_timeout(stop, *every)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                        if *stop || !breaker.allows() {
                            continue;
                        }
                        drop(stop);
                        check();
                        stop = breaker.control.lock().unwrap_or_else(|p| p.into_inner());
                        continue;
                    }
                    // Open: give Redis an interval, then ask it.
                    stop = breaker
                        .wake
                        .wait_timeout(stop, interval)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    if *stop || breaker.allows() {
                        continue;
                    }
                    drop(stop);
                    if probe() {
                        on_close();
                        breaker.close();
                    }
                    stop = breaker.control.lock().unwrap_or_else(|p| p.into_inner());
                }
            })?;
        Ok(ProbeThread {
            breaker: Arc::clone(self),
            handle: Some(handle),
        })
    }
}

/// A check the probe thread runs every interval while the breaker is closed.
pub type Watch = (Duration, Box<dyn FnMut() + Send>);

/// Owns the probe thread: dropping it stops and joins the thread.
pub struct ProbeThread {
    breaker: Arc<Breaker>,
    handle: Option<JoinHandle<()>>,
}

impl ProbeThread {
    /// In a forked child, where the thread does not exist: lets go of it without stopping or
    /// joining it (see `crate::fork::abandon`).
    pub fn abandon(mut self) {
        if let Some(h) = self.handle.take() {
            crate::fork::abandon(h);
        }
    }
}

impl Drop for ProbeThread {
    fn drop(&mut self) {
        if self.handle.is_none() {
            return; // abandoned
        }
        {
            let mut stop = self
                .breaker
                .control
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *stop = true;
            self.breaker.wake.notify_all();
        }
        if let Some(h) = self.handle.take() {
            // A probe in flight ends within the tier's timeout; a panic in it is already
            // reported by the thread itself and must not propagate out of a destructor.
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    #[test]
    fn opens_after_threshold_consecutive_failures_only() {
        let b = Breaker::new(3);
        assert!(!b.failure());
        assert!(!b.failure());
        b.success();
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(b.allows());
        assert!(b.failure(), "third consecutive failure opens");
        assert!(!b.allows());
        assert!(!b.failure(), "already open");
        assert_eq!(b.times_opened(), 1);
    }

    #[test]
    fn probe_closes_the_breaker_and_thread_joins_on_drop() {
        let b = Arc::new(Breaker::new(1));
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        // Fails twice, then succeeds.
        let probe = b
            .spawn_probe(
                Duration::from_millis(10),
                move || c.fetch_add(1, Ordering::SeqCst) >= 2,
                || {},
            )
            .unwrap();
        assert!(b.trip());
        let t = Instant::now();
        while !b.allows() {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "probe never closed it"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let t = Instant::now();
        drop(probe);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "join took {:?}",
            t.elapsed()
        );
    }
}
