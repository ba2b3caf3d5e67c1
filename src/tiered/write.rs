//! The write path: every mutation (set, set_many, delete, clear) goes through `Inner::write`,
//! which states the write order once. Promotions (copies of a lower tier's hit, `read.rs`) go
//! the same way up: lower tiers from the bottom, memory last.

use super::Inner;
use crate::error::Result;
use crate::latency::Op;
use crate::memory::Blob;
use crate::tier::{clamp_ttl, Entry};
use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// An entry checked against every limit, ready for every tier (see `Inner::prepare`).
pub(super) struct Prepared<'v> {
    pub key: &'v [u8],
    /// Length of the value given to set.
    given: usize,
    /// What the tiers store for it (its LZ4 frame when compressed).
    stored: Cow<'v, [u8]>,
    entry_flags: u8,
    /// Memory's entry for it.
    pub blob: Blob,
}

/// One mutation of the cache.
pub(super) enum Mutation<'a> {
    /// Entries for `ttl` (None: each tier's default).
    Set(&'a [Prepared<'a>], Option<Duration>),
    Delete(&'a [u8]),
    Clear,
}

impl Inner {
    /// Stores `value` in every tier (compressed when that pays) for `ttl` (None = each tier's
    /// default; clamped to MAX_TTL); returns the entry as stored in memory.
    pub(super) fn store(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<Blob> {
        let ttl = ttl.map(clamp_ttl);
        let entry = self.prepare(key, value, ttl)?;
        self.write(Mutation::Set(std::slice::from_ref(&entry), ttl))?;
        Ok(entry.blob)
    }

    /// Encodes `value` for `key` and builds its memory entry, checking every limit a write
    /// could fail on, so that `write` cannot fail half way through a batch.
    pub(super) fn prepare<'v>(
        &self,
        key: &'v [u8],
        value: &'v [u8],
        ttl: Option<Duration>,
    ) -> Result<Prepared<'v>> {
        self.check_value(value)?;
        let (stored, entry_flags) = self.encode(value);
        let blob = self
            .l1
            .make_blob(key, &stored, entry_flags, ttl.or(self.memory_ttl))?;
        // Too large for memory's byte budget but kept by a lower tier: served from there.
        if !self.has_lower_tiers() {
            self.l1.check_fits(&blob)?;
        }
        Ok(Prepared {
            key,
            given: value.len(),
            stored,
            entry_flags,
            blob,
        })
    }

    /// The one write path. The order, and why:
    /// 1. the lower tiers from the bottom up (disk, then Redis): a copy from a lower tier into
    ///    a higher one (`Inner::fill`) then either finds the new value or is replaced by it;
    /// 2. after a delete or clear, wait for the copies other readers started from the old
    ///    value (`wait_for_copies`);
    /// 3. memory: a get that missed memory and read the lower tiers before this write reached
    ///    them holds an older value, and memory's write count refuses it only if the count
    ///    moves after the lower tiers have the new one (see `Inner::promote`);
    /// 4. tell the other processes on the disk_path, once every tier they read has it.
    ///
    /// A lower tier's failure is counted by that tier, and the tier makes sure what it failed
    /// to replace is never read from it (see `RedisLayer`); it fails only a clear, which would
    /// otherwise report done while other processes could still read cleared entries. A delete
    /// returns whether any tier had the key.
    pub(super) fn write(&self, mutation: Mutation<'_>) -> Result<bool> {
        let mut found = false;
        let mut unfinished = None;
        if let Mutation::Set(entries, _) = &mutation {
            if self.config.enable_stats {
                for e in entries.iter() {
                    self.bytes_given.fetch_add(e.given as u64, Relaxed);
                    self.bytes_stored.fetch_add(e.stored.len() as u64, Relaxed);
                }
            }
        }
        for tier in self.lower.iter().rev() {
            match &mutation {
                Mutation::Set(entries, ttl) => {
                    let batch: Vec<Entry<'_>> = entries
                        .iter()
                        .map(|e| (e.key, &e.stored[..], e.entry_flags))
                        .collect();
                    let _ = self.timed(tier.id(), Op::Set, || tier.set_many(&batch, *ttl));
                }
                Mutation::Delete(key) => {
                    let had = self.timed(tier.id(), Op::Delete, || tier.delete(key));
                    found |= had.unwrap_or(false);
                }
                Mutation::Clear => {
                    if let Err(e) = tier.clear() {
                        unfinished.get_or_insert(e);
                    }
                }
            }
        }
        match &mutation {
            Mutation::Set(..) => {}
            Mutation::Delete(key) => self.wait_for_copies(Some(key)),
            Mutation::Clear => self.wait_for_copies(None),
        }
        match &mutation {
            Mutation::Set(entries, _) => {
                for e in entries.iter() {
                    // Checked by `prepare`: only a blob too large for memory's budget fails
                    // here, and then only with a lower tier holding it.
                    let _ = self.timed_memory(Op::Set, || self.l1.insert_blob(e.blob.clone()));
                    self.forget_own_write(e.key);
                }
            }
            Mutation::Delete(key) => found |= self.timed_memory(Op::Delete, || self.l1.delete(key)),
            Mutation::Clear => {
                self.l1.clear();
            }
        }
        match &mutation {
            Mutation::Set(entries, _) => entries.iter().for_each(|e| self.tell_others(Some(e.key))),
            Mutation::Delete(key) => self.tell_others(Some(key)),
            Mutation::Clear => self.tell_others(None),
        }
        unfinished.map_or(Ok(found), Err)
    }

    /// After a delete (of `key` and the others of its group; None: a clear) has reached the
    /// lower tiers, waits for the copies between lower tiers that may have read the old value,
    /// in every process on this disk_path (see `Inner::fill`): each has then either been
    /// deleted by us or seen the delete and withdrawn itself. A copy takes at most three calls
    /// to the tier it fills.
    fn wait_for_copies(&self, key: Option<&[u8]>) {
        if let (2.., Some(log)) = (self.lower.len(), &self.writes) {
            let timeout = Duration::from_millis(self.config.redis_timeout_ms);
            let hash = key.map(|k| self.l1.key_hash(k));
            log.wait_for_copies(hash, timeout * 3 + Duration::from_millis(100));
        }
    }
}
