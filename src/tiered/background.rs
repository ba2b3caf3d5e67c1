//! The background thread: the ops_per_second samples and the bounded expiry steps.

use super::Inner;
use crate::error::{Error, Result};
use crate::fork;
use crate::tier::ttl_from_secs;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The background thread: samples the operation count every second (so ops_per_second covers
/// the last few seconds whenever it is read) and runs one bounded expiry step every
/// auto_expire_interval. Stopped and joined on close.
pub(super) struct Background {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// How often the operation count is sampled for ops_per_second.
const RATE_SAMPLE_EVERY: Duration = Duration::from_secs(1);

impl Background {
    /// Starts the thread, unless the config gives it nothing to do: no expiry interval, stats
    /// off and no Redis (whose pending invalidations it replays).
    pub(super) fn start(inner: &Arc<Inner>) -> Result<Option<Background>> {
        let expire_every = ttl_from_secs(inner.config.auto_expire_interval);
        // Stats sample, and Redis replays what an outage left pending, once a second.
        let every_second = inner.config.enable_stats || inner.config.redis_enabled;
        if expire_every.is_none() && !every_second {
            return Ok(None);
        }
        let inner = Arc::clone(inner);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop2 = Arc::clone(&stop);
        let tick = match (every_second, expire_every) {
            (true, Some(e)) => e.min(RATE_SAMPLE_EVERY),
            (true, None) => RATE_SAMPLE_EVERY,
            (false, e) => e.unwrap_or(RATE_SAMPLE_EVERY),
        };
        let thread = std::thread::Builder::new()
            .name("smartcache-bg".into())
            .spawn(move || {
                let (lock, cv) = &*stop2;
                let mut last_expiry = Instant::now();
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*stopped {
                    let (guard, _) = cv
                        .wait_timeout(stopped, tick)
                        .unwrap_or_else(|e| e.into_inner());
                    stopped = guard;
                    if *stopped {
                        break;
                    }
                    drop(stopped);
                    // A panic here must not kill the host; the next tick tries again.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        if inner.config.enable_stats {
                            inner.sample_rate();
                        }
                        inner.tick();
                        if expire_every.is_some_and(|e| last_expiry.elapsed() >= e) {
                            last_expiry = Instant::now();
                            inner.expire_step();
                        }
                    }));
                    stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the background thread: {e}")))?;
        Ok(Some(Background {
            stop,
            thread: Some(thread),
        }))
    }

    /// In a forked child, where the thread does not exist: lets go of it without stopping or
    /// joining it (see `crate::fork::abandon`).
    pub(super) fn abandon(mut self) {
        if let Some(t) = self.thread.take() {
            fork::abandon(t);
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let Some(t) = self.thread.take() else {
            return; // abandoned
        };
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        let _ = t.join();
    }
}
