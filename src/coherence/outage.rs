//! Redis invalidations that could not be made: what every process of the host must know before
//! it trusts a Redis read again.
//!
//! A set, delete or clear whose Redis step failed (breaker open, timeout, error) leaves Redis
//! holding the value it replaced, and a timed-out command may even land later, after newer
//! writes. Any process reading Redis would serve it. So the failing process records a *debt*
//! here before its call returns: the key (or "everything", for a clear, a key too long for a
//! slot, or a full table), then bumps `owed`. Every process trusts Redis only while
//! `owed == paid` (two loads of one shared cache line, on Redis reads only: the memory hit
//! path never looks). Any process pays the debts when Redis answers again: one round trip
//! first (so that every command another process sent before its debt was recorded has been
//! executed: Redis answers a round trip only after handling what was already waiting on its
//! sockets), then `DEL` of each key owed, or a clear of the prefix; only then `paid = owed`
//! as read before the slots were collected.
//!
//! With a disk tier the table lives in the write log file (`smartcache.writes`), shared by
//! every process of the disk_path; without one, in this process's memory (the other processes
//! share nothing with it but Redis, like other hosts).
//!
//! A crash at any step leaves a debt unpaid (Redis distrusted until someone pays it, a miss,
//! never a stale read), a slot filled but not yet owed (paid with the next debt), or a slot
//! held busy (freed by a payer once `ABANDONED_MS` old): never a replaced value trusted.

use crate::error::{Error, Result};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::Arc;

/// Debt slots: keys remembered one by one. Past this, a debt is a clear of the prefix.
pub(crate) const SLOTS: usize = 64;
/// Words per slot: the ticket, the key's length, then the key.
pub(crate) const SLOT_WORDS: usize = 32;
/// Longest key a slot holds; a longer one is owed as a clear.
pub(crate) const SLOT_KEY_BYTES: usize = (SLOT_WORDS - 2) * 8;
/// Shared counters: owed, paid, clears owed, clears done, the ticket counter.
pub(crate) const HEADER_WORDS: usize = 5;
/// Bytes of the slot table in a file.
pub(crate) const TABLE_BYTES: usize = SLOTS * SLOT_WORDS * 8;

const OWED: usize = 0;
const PAID: usize = 1;
const CLEARS_OWED: usize = 2;
const CLEARS_DONE: usize = 3;
const TICKETS: usize = 4;

/// A slot's ticket: 0 free; BUSY | unix ms while a process fills it in; otherwise the unique
/// ticket of the debt it holds.
const BUSY: u64 = 1 << 63;
/// A slot busy for longer than this was left by a process that died filling it in.
const ABANDONED_MS: u64 = 10_000;

/// What the words live in: the write log's mapping, or this process's heap.
enum Owner {
    Shared(#[allow(dead_code)] Arc<dyn std::any::Any + Send + Sync>),
    Heap(#[allow(dead_code)] Box<[AtomicU64]>),
}

/// The debts to Redis of every process sharing it (see the module comment).
pub struct Outage {
    header: *const AtomicU64,
    slots: *const AtomicU64,
    _owner: Owner,
}

// SAFETY: `header` and `slots` point into memory `_owner` keeps alive (a mapping that is never
// remapped, or a boxed slice never moved), and every access to it is atomic.
unsafe impl Send for Outage {}
// SAFETY: see Send.
unsafe impl Sync for Outage {}

/// How a payer reaches Redis.
pub trait Payer {
    /// One round trip (PING).
    fn round_trip(&self) -> Result<()>;
    fn delete(&self, key: &[u8]) -> Result<()>;
    /// Every key under the prefix.
    fn clear(&self) -> Result<()>;
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Outage {
    /// A table for this process only.
    pub fn in_process() -> Outage {
        let words: Box<[AtomicU64]> = (0..HEADER_WORDS + SLOTS * SLOT_WORDS)
            .map(|_| AtomicU64::new(0))
            .collect();
        let header = words.as_ptr();
        // SAFETY: the slice holds HEADER_WORDS + SLOTS * SLOT_WORDS words.
        let slots = unsafe { header.add(HEADER_WORDS) };
        Outage {
            header,
            slots,
            _owner: Owner::Heap(words),
        }
    }

    /// A table in shared memory.
    ///
    /// # Safety
    /// `header` must point at HEADER_WORDS and `slots` at SLOTS * SLOT_WORDS 8-aligned words
    /// that stay mapped while `owner` lives and are only ever accessed atomically.
    pub unsafe fn shared(
        header: *const AtomicU64,
        slots: *const AtomicU64,
        owner: Arc<dyn std::any::Any + Send + Sync>,
    ) -> Outage {
        Outage {
            header,
            slots,
            _owner: Owner::Shared(owner),
        }
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < HEADER_WORDS);
        // SAFETY: i < HEADER_WORDS, inside the header (see `shared` / `in_process`).
        unsafe { &*self.header.add(i) }
    }

    fn slot(&self, s: usize) -> &[AtomicU64] {
        debug_assert!(s < SLOTS);
        // SAFETY: s < SLOTS, so its SLOT_WORDS words lie inside the table.
        unsafe { std::slice::from_raw_parts(self.slots.add(s * SLOT_WORDS), SLOT_WORDS) }
    }

    /// True while no debt is owed: Redis may be read (and filled).
    #[inline]
    pub fn trusted(&self) -> bool {
        self.word(OWED).load(Acquire) == self.word(PAID).load(Acquire)
    }

    /// Records that `key`'s invalidation did not reach Redis (or may land late). Returns once
    /// every process distrusts Redis until it is paid.
    pub fn owe(&self, key: &[u8]) {
        if key.len() > SLOT_KEY_BYTES || !self.remember(key) {
            self.word(CLEARS_OWED).fetch_add(1, SeqCst);
        }
        self.word(OWED).fetch_add(1, SeqCst);
    }

    /// Records that a clear did not finish in Redis.
    pub fn owe_clear(&self) {
        self.word(CLEARS_OWED).fetch_add(1, SeqCst);
        self.word(OWED).fetch_add(1, SeqCst);
    }

    /// Puts `key` in a slot with a fresh ticket: the slot already holding it (a payer that read
    /// the old ticket then leaves it for the next payment) or a free one. False: table full.
    fn remember(&self, key: &[u8]) -> bool {
        let ticket = self.word(TICKETS).fetch_add(1, Relaxed).wrapping_add(1) & !BUSY;
        let ticket = ticket.max(1);
        for s in 0..SLOTS {
            let slot = self.slot(s);
            let t = slot[0].load(Acquire);
            if t != 0
                && t & BUSY == 0
                && read_key(slot).as_deref() == Some(key)
                && slot[0].compare_exchange(t, ticket, SeqCst, Relaxed).is_ok()
            {
                return true;
            }
        }
        for s in 0..SLOTS {
            let slot = self.slot(s);
            if slot[0]
                .compare_exchange(0, BUSY | unix_ms(), SeqCst, Relaxed)
                .is_ok()
            {
                write_key(slot, key);
                slot[0].store(ticket, Release);
                return true;
            }
        }
        false
    }

    /// Pays every debt owed when it starts: Ok once Redis may be trusted for them (others owed
    /// meanwhile are the next payment's). Err when Redis failed, the debts stay.
    pub fn pay(&self, redis: &dyn Payer) -> Result<()> {
        let owed = self.word(OWED).load(SeqCst);
        if owed == self.word(PAID).load(SeqCst) {
            return Ok(());
        }
        let clears = self.word(CLEARS_OWED).load(SeqCst);
        let mut keys: Vec<(usize, u64, Vec<u8>)> = Vec::new();
        for s in 0..SLOTS {
            let slot = self.slot(s);
            let t = slot[0].load(Acquire);
            if t == 0 {
                continue;
            }
            if t & BUSY != 0 {
                // Being filled in (its debt is not in `owed` yet), or abandoned by a process
                // that died doing so.
                if unix_ms().saturating_sub(t & !BUSY) > ABANDONED_MS {
                    let _ = slot[0].compare_exchange(t, 0, SeqCst, Relaxed);
                }
                continue;
            }
            match read_key(slot) {
                Some(key) if slot[0].load(Acquire) == t => keys.push((s, t, key)),
                // Changed under us: paid by another process, or owed again (after `owed`).
                Some(_) => {}
                // Damaged: owed as a clear.
                None => {
                    self.word(CLEARS_OWED).fetch_add(1, SeqCst);
                    let _ = slot[0].compare_exchange(t, 0, SeqCst, Relaxed);
                    return Err(Error::backend("redis: a damaged outage slot, clearing"));
                }
            }
        }
        redis.round_trip()?;
        if clears != self.word(CLEARS_DONE).load(SeqCst) {
            // A clear covers every key collected above.
            redis.clear()?;
            self.word(CLEARS_DONE).store(clears, SeqCst);
        } else {
            for (_, _, key) in &keys {
                redis.delete(key)?;
            }
        }
        for (s, t, _) in keys {
            let _ = self.slot(s)[0].compare_exchange(t, 0, SeqCst, Relaxed);
        }
        // A store, not a max: a slower payer that writes an older count only makes Redis
        // distrusted until the next payment; a damaged count is repaired.
        self.word(PAID).store(owed, SeqCst);
        Ok(())
    }

    /// Debts not yet paid (for stats and tests): 0 when Redis is trusted.
    pub fn owed(&self) -> u64 {
        self.word(OWED)
            .load(Acquire)
            .wrapping_sub(self.word(PAID).load(Acquire))
    }
}

fn write_key(slot: &[AtomicU64], key: &[u8]) {
    slot[1].store(key.len() as u64, Relaxed);
    for (i, chunk) in key.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        slot[2 + i].store(u64::from_le_bytes(w), Relaxed);
    }
}

/// The key in `slot`, or None when its length is impossible (damage).
fn read_key(slot: &[AtomicU64]) -> Option<Vec<u8>> {
    let len = usize::try_from(slot[1].load(Relaxed)).ok()?;
    if len == 0 || len > SLOT_KEY_BYTES {
        return None;
    }
    let mut key = Vec::with_capacity(len.next_multiple_of(8));
    for w in &slot[2..2 + len.div_ceil(8)] {
        key.extend_from_slice(&w.load(Relaxed).to_le_bytes());
    }
    key.truncate(len);
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct FakeRedis {
        down: bool,
        calls: RefCell<Vec<String>>,
    }

    impl Payer for FakeRedis {
        fn round_trip(&self) -> Result<()> {
            self.call("PING".into())
        }
        fn delete(&self, key: &[u8]) -> Result<()> {
            self.call(format!("DEL {}", String::from_utf8_lossy(key)))
        }
        fn clear(&self) -> Result<()> {
            self.call("CLEAR".into())
        }
    }

    impl FakeRedis {
        fn call(&self, c: String) -> Result<()> {
            if self.down {
                return Err(Error::backend("down"));
            }
            self.calls.borrow_mut().push(c);
            Ok(())
        }
        fn taken(&self) -> Vec<String> {
            self.calls.take()
        }
    }

    #[test]
    fn a_debt_makes_redis_untrusted_until_paid_after_a_round_trip() {
        let o = Outage::in_process();
        assert!(o.trusted());
        o.owe(b"k1");
        o.owe(b"k2");
        o.owe(b"k1");
        assert!(!o.trusted());
        assert_eq!(o.owed(), 3);
        let down = FakeRedis {
            down: true,
            ..Default::default()
        };
        assert!(o.pay(&down).is_err());
        assert!(!o.trusted(), "a failed payment leaves the debts");
        let up = FakeRedis::default();
        o.pay(&up).unwrap();
        assert!(o.trusted());
        let mut calls = up.taken();
        assert_eq!(calls.remove(0), "PING", "the round trip comes first");
        calls.sort();
        assert_eq!(calls, ["DEL k1", "DEL k2"], "one slot per key");
        o.pay(&up).unwrap();
        assert!(up.taken().is_empty(), "nothing owed, nothing done");
    }

    #[test]
    fn a_long_key_a_full_table_or_a_clear_is_owed_as_a_clear() {
        let up = FakeRedis::default();
        let owes: [&dyn Fn(&Outage); 3] = [
            &|o| o.owe(&[b'x'; SLOT_KEY_BYTES + 1]),
            &|o| o.owe_clear(),
            &|o| (0..=SLOTS).for_each(|i| o.owe(format!("key{i}").as_bytes())),
        ];
        for owe in owes {
            let o = Outage::in_process();
            owe(&o);
            assert!(!o.trusted());
            o.pay(&up).unwrap();
            assert_eq!(up.taken(), ["PING", "CLEAR"]);
            assert!(o.trusted());
            o.owe(b"again");
            o.pay(&up).unwrap();
            assert_eq!(up.taken(), ["PING", "DEL again"], "the slots were freed");
        }
    }

    #[test]
    fn a_key_of_exactly_a_slot_is_kept_whole() {
        let o = Outage::in_process();
        let key: Vec<u8> = (0..SLOT_KEY_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
        o.owe(&key);
        let up = FakeRedis::default();
        o.pay(&up).unwrap();
        assert_eq!(
            up.taken()[1],
            format!("DEL {}", String::from_utf8_lossy(&key))
        );
    }

    #[test]
    fn a_slot_abandoned_busy_is_freed_and_a_damaged_one_costs_a_clear() {
        let o = Outage::in_process();
        o.slot(3)[0].store(BUSY | (unix_ms() - ABANDONED_MS - 1), SeqCst);
        o.slot(4)[0].store(77, SeqCst);
        o.slot(4)[1].store(u64::MAX, SeqCst);
        o.owe(b"k");
        let up = FakeRedis::default();
        assert!(o.pay(&up).is_err(), "the damaged slot is reported");
        o.pay(&up).unwrap();
        assert_eq!(up.taken(), ["PING", "CLEAR"]);
        assert_eq!(o.slot(3)[0].load(SeqCst), 0);
        assert_eq!(o.slot(4)[0].load(SeqCst), 0);
        assert!(o.trusted());
    }

    #[test]
    fn a_debt_owed_during_a_payment_is_left_for_the_next() {
        struct Racing<'a>(&'a Outage, FakeRedis);
        impl Payer for Racing<'_> {
            fn round_trip(&self) -> Result<()> {
                // Another process owes a key between collection and the deletes.
                self.0.owe(b"late");
                self.1.round_trip()
            }
            fn delete(&self, key: &[u8]) -> Result<()> {
                self.1.delete(key)
            }
            fn clear(&self) -> Result<()> {
                self.1.clear()
            }
        }
        let o = Outage::in_process();
        o.owe(b"early");
        let r = Racing(&o, FakeRedis::default());
        o.pay(&r).unwrap();
        assert!(!o.trusted(), "the late debt is still owed");
        assert_eq!(r.1.taken(), ["PING", "DEL early"]);
        let up = FakeRedis::default();
        o.pay(&up).unwrap();
        assert_eq!(up.taken(), ["PING", "DEL late"]);
        assert!(o.trusted());
    }
}
