//! The write path: every mutation (set, set_many, delete, clear) goes through `Inner::write`,
//! which states the write order once. Promotions (copies of a lower tier's hit, `read.rs`) go
//! the same way up: lower tiers from the bottom, memory last.

use super::Inner;
use crate::coherence::write_log::{Change, CopyInFlight, WriteLog};
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

/// The writes in flight of an announced mutation (see `Inner::announce`), until dropped: the
/// first held inline, so a single set allocates nothing for it.
#[derive(Default)]
struct Announced<'a> {
    /// The keys' memory-tier hashes, for the final entries and the copy fence (empty without
    /// a disk tier: nobody to tell).
    hashes: SmallHashes,
    first: Option<CopyInFlight<'a>>,
    rest: Vec<CopyInFlight<'a>>,
}

/// Hashes, the first held inline.
#[derive(Default)]
struct SmallHashes {
    first: Option<u64>,
    rest: Vec<u64>,
}

impl SmallHashes {
    fn push(&mut self, h: u64) {
        match self.first {
            None => self.first = Some(h),
            Some(_) => self.rest.push(h),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &u64> {
        self.first.iter().chain(&self.rest)
    }
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
    /// 2. wait for the copies other readers started from the old value (`wait_for_copies`);
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
        let announced = self.announce(&mutation);
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
            Mutation::Clear => self.wait_for_copies(None),
            _ => self.wait_for_copies(Some(&announced.hashes)),
        }
        match &mutation {
            Mutation::Set(entries, _) => {
                // The hashes the announcement computed, in the entries' order (none without a
                // disk tier). Checked by `prepare`: only a blob too large for memory's budget
                // fails here, and then only with a lower tier holding it.
                match announced.hashes.first {
                    None => entries.iter().for_each(|e| {
                        let _ = self.timed_memory(Op::Set, || self.l1.insert_blob(e.blob.clone()));
                        self.forget_own_write(e.key);
                    }),
                    Some(_) => entries
                        .iter()
                        .zip(announced.hashes.iter())
                        .for_each(|(e, &h)| {
                            let blob = e.blob.clone();
                            let _ =
                                self.timed_memory(Op::Set, || self.l1.insert_blob_hashed(blob, h));
                            self.forget_own_write(e.key);
                        }),
                }
            }
            Mutation::Delete(key) => found |= self.timed_memory(Op::Delete, || self.l1.delete(key)),
            Mutation::Clear => {
                self.l1.clear();
            }
        }
        match &mutation {
            Mutation::Clear => self.tell_others(None),
            _ => announced
                .hashes
                .iter()
                .for_each(|&h| self.tell_others(Some(h))),
        }
        unfinished.map_or(Ok(found), Err)
    }

    /// After a write has reached the lower tiers, waits for the copies between lower tiers
    /// (see `Inner::fill`) of its keys' groups (`hashes`; None: every group, for a clear) that
    /// may have read the old value, in every process on this disk_path: each has then either
    /// been deleted by us or seen the write and withdrawn itself. A set waits too: its value in
    /// Redis can be deleted (by a concurrent delete or clear, or by Redis itself) before a copy
    /// of the older value lands there with SET NX, which is then withdrawn only when the copy
    /// re-reads the disk; the set must not return before that. A copy takes at most three
    /// calls to the tier it fills.
    fn wait_for_copies(&self, hashes: Option<&SmallHashes>) {
        if let Some(log) = self.copy_fence() {
            match hashes {
                Some(hashes) => log.wait_for_copies_of(hashes.iter().copied(), self.copy_bound()),
                None => log.wait_for_copies(None, self.copy_bound()),
            }
        }
    }

    /// Before a set or delete touches any tier: marks it in flight in its keys' groups and
    /// records an entry for each key, so that the other processes drop their memory copies
    /// now and copy nothing of the group into memory until the returned guards drop (after the
    /// entries `tell_others` records at the end). A writer killed between the lower tiers and
    /// those final entries then leaves no memory tier with a value older than what the lower
    /// tiers serve. A clear is not announced: a clear killed half way leaves entries missing,
    /// which a reader sees as misses, never as older values.
    fn announce(&self, mutation: &Mutation<'_>) -> Announced<'_> {
        let mut announced = Announced::default();
        let Some(log) = self.writes.as_ref().filter(|_| self.has_lower_tiers()) else {
            return announced;
        };
        let mut announce = |key: &[u8]| {
            let hash = self.l1.key_hash(key);
            let guard = log.writing(hash);
            log.record(Change::Key(hash));
            announced.hashes.push(hash);
            match announced.first {
                None => announced.first = Some(guard),
                Some(_) => announced.rest.push(guard),
            }
        };
        match mutation {
            Mutation::Set(entries, _) => entries.iter().for_each(|e| announce(e.key)),
            Mutation::Delete(key) => announce(key),
            Mutation::Clear => {}
        }
        announced
    }

    /// True when a set or delete of `hash`'s group may be in flight in some process (see
    /// `announce`): a lower tier's value of it is then served but not copied into memory.
    pub(super) fn writing_in(&self, hash: u64) -> bool {
        self.writes
            .as_ref()
            .is_some_and(|log| log.writing_in(hash, self.copy_bound()))
    }

    /// The write log, when copies between lower tiers happen (more than one lower tier).
    fn copy_fence(&self) -> Option<&WriteLog> {
        match (self.lower.len(), &self.writes) {
            (2.., Some(log)) => Some(log),
            _ => None,
        }
    }

    fn copy_bound(&self) -> Duration {
        Duration::from_millis(self.config.redis_timeout_ms) * 3 + Duration::from_millis(100)
    }
}
