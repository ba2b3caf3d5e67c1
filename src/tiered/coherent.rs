//! `redis_invalidation`: memory kept coherent with other hosts' writes. The listener
//! (`redis::invalidation`) hears the changed keys from Redis; this side drops them from memory,
//! and keeps memory empty while the listener is not subscribed.
//!
//! Memory's hit path pays nothing for this: instead of checking trust on every hit, memory is
//! emptied when trust ends, and the two ways entries enter memory drop theirs again: a copy of
//! a Redis hit while the listener is not subscribed, a set always (see `forget_own_write`).

use super::Inner;
use crate::error::Result;
use crate::redis::invalidation::{Listener, Sink};
use std::sync::{Arc, Weak};

/// The listener's view of a cache: its memory tier. Weak, so the listener's thread never keeps
/// a closed cache alive; `Cache::drop` stops the thread before letting go of the Inner, so the
/// thread's momentary strong reference is never the last.
struct MemorySink(Weak<Inner>);

impl Sink for MemorySink {
    fn key_changed(&self, key: &[u8]) {
        if let Some(inner) = self.0.upgrade() {
            // Counted as a write of the key for promotions in flight: a get that read Redis
            // before the change cannot put the old value back (see `MemoryTier::promote`).
            inner.l1.invalidate(inner.l1.key_hash(key));
        }
    }

    fn all_changed(&self) {
        if let Some(inner) = self.0.upgrade() {
            inner.l1.invalidate_all();
        }
    }
}

impl Inner {
    /// Starts this process's listener when `redis_invalidation` is on; with `wait`, waits up
    /// to redis_timeout_ms for it to be subscribed (at open, so memory caches from the first
    /// set when Redis answers; a Redis that does not is no error, as for the tier itself).
    pub(super) fn start_listener(&self, wait: bool) -> Result<()> {
        let (Some(coherence), Some(redis), Some(me)) =
            (&self.coherence, &self.redis, self.me.upgrade())
        else {
            return Ok(());
        };
        let sink: Arc<dyn Sink> = Arc::new(MemorySink(Arc::downgrade(&me)));
        drop(me);
        let listener = Listener::start(Arc::clone(&redis.tier), Arc::clone(coherence), sink)?;
        *super::lock(&self.listener) = Some(listener);
        if wait {
            coherence.wait_listening(redis.tier.timeout());
        }
        Ok(())
    }

    /// In a forked child: the parent's listener does not run here, so memory, which it vouched
    /// for, is emptied and untrusted until the child's own listener (started on its first slow
    /// call, `adopt_process`) is subscribed.
    pub(super) fn forget_listener(&self) {
        if let Some(c) = &self.coherence {
            c.forget_listener();
            self.l1.invalidate_all();
        }
    }

    /// After a set put `key` into memory: with `redis_invalidation` on, the entry is dropped
    /// again at once. Redis reports every write to every listener, this cache's own included
    /// (a message names keys, not writers), so the report of this very write drops the entry
    /// anyway, a moment later. Keeping it until then would be a race, not a saving: another
    /// host's write landing in Redis between ours and our memory insert can be reported, and
    /// applied, before the insert, which would then keep our older value with nobody left to
    /// drop it. (A copy from Redis, `promote`, has no such race: the write count it checks
    /// moves with every drop the listener makes.)
    #[inline]
    pub(super) fn forget_own_write(&self, key: &[u8]) {
        if self.coherence.is_some() {
            self.l1.invalidate(self.l1.key_hash(key));
        }
    }

    /// After a copy of a Redis hit was put into memory: while nobody would report its
    /// replacement, it is dropped again. Never on the hit path.
    #[inline]
    pub(super) fn unless_listening_forget(&self, key: &[u8]) {
        if let Some(c) = &self.coherence {
            if !c.is_listening() {
                self.l1.invalidate(self.l1.key_hash(key));
            }
        }
    }
}
