//! A per-thread bound on the Redis wait of the calls a thread makes (`sz_thread_redis_timeout`):
//! a caller with a deadline of its own (a Go `context.Context`, a request budget) shortens the
//! configured `redis_timeout_ms` for its calls without reopening the cache. Calls made on the
//! cache's own threads (the probe) are not affected.

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    static LIMIT: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// Bounds this thread's later Redis calls to `limit` (None: the configured timeout alone).
pub fn set_for_this_thread(limit: Option<Duration>) {
    LIMIT.with(|l| l.set(limit));
}

/// When a Redis exchange starting at `now` must end: `configured` later, or sooner if this
/// thread asked for less.
pub fn deadline(now: Instant, configured: Duration) -> Instant {
    let limit = LIMIT
        .with(Cell::get)
        .map_or(configured, |l| l.min(configured));
    now + limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_limit_shortens_only_that_threads_deadlines() {
        let now = Instant::now();
        let configured = Duration::from_millis(500);
        assert_eq!(deadline(now, configured), now + configured);
        set_for_this_thread(Some(Duration::from_millis(20)));
        assert_eq!(deadline(now, configured), now + Duration::from_millis(20));
        let other = std::thread::spawn(move || deadline(now, configured))
            .join()
            .unwrap();
        assert_eq!(
            other,
            now + configured,
            "another thread keeps the configured timeout"
        );
        // A limit above the configured timeout never lengthens it.
        set_for_this_thread(Some(Duration::from_secs(60)));
        assert_eq!(deadline(now, configured), now + configured);
        set_for_this_thread(None);
        assert_eq!(deadline(now, configured), now + configured);
    }
}
