//! The read path below memory: the lower tiers in read order, and a hit copied into every tier
//! above the one it came from (the copies are writes too: see `write` for why they are safe).

use super::lower::earliest;
use super::Inner;
use crate::clock;
use crate::coherence::write_log::CopyInFlight;
use crate::latency::Op;
use crate::memory::{Blob, WriteMark};
use crate::tier::{flags, Hit, LowerTier};

impl Inner {
    /// Memory missed: ask the lower tiers in read order (Redis, then disk); the first hit is
    /// copied up (see `promote`). A tier that fails is a miss here (it counts the failure).
    pub(super) fn get_lower(&self, key: &[u8]) -> Option<Blob> {
        let mark = self.l1.write_mark(key);
        let mut failed = None;
        for (i, tier) in self.lower.iter().enumerate() {
            let _copy = self.copy_in_flight(i, mark.key_hash());
            match self.timed(tier.id(), Op::Get, || tier.get(key)) {
                Ok(Some(hit)) => {
                    self.served_below(failed, i, key);
                    return self.promote(key, hit, i, mark);
                }
                Ok(None) => {}
                Err(_) => failed = failed.or(Some(i)),
            }
        }
        None
    }

    /// `get_lower` for the keys of a `get_many` that memory missed (`found[i]` None): each tier
    /// is asked once for all the keys still missing (Redis: one MGET).
    pub(super) fn get_many_lower(&self, keys: &[&[u8]], found: &mut [Option<Blob>]) {
        let mut missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
        let marks: Vec<Option<WriteMark>> = (0..keys.len())
            .map(|i| found[i].is_none().then(|| self.l1.write_mark(keys[i])))
            .collect();
        let mut failed = None;
        for (t, tier) in self.lower.iter().enumerate() {
            if missing.is_empty() {
                return;
            }
            let wanted: Vec<&[u8]> = missing.iter().map(|&i| keys[i]).collect();
            let _copies: Vec<_> = missing
                .iter()
                .filter_map(|&i| marks[i].and_then(|m| self.copy_in_flight(t, m.key_hash())))
                .collect();
            let hits = match self.timed(tier.id(), Op::Get, || tier.get_many(&wanted)) {
                Ok(hits) => hits,
                Err(_) => {
                    failed = failed.or(Some(t));
                    Vec::new()
                }
            };
            let mut still_missing = Vec::new();
            for (j, &i) in missing.iter().enumerate() {
                match (hits.get(j).cloned().flatten(), marks[i]) {
                    (Some(hit), Some(mark)) => {
                        self.served_below(failed, t, keys[i]);
                        found[i] = self.promote(keys[i], hit, t, mark);
                    }
                    _ => still_missing.push(i),
                }
            }
            missing = still_missing;
        }
    }

    /// Tier `source` served `key` after tiers above it failed (`failed`: the first of them):
    /// each is told (`LowerTier::served_below`). Only on an outage's path.
    fn served_below(&self, failed: Option<usize>, source: usize, key: &[u8]) {
        if let Some(first) = failed {
            for tier in &self.lower[first..source] {
                tier.served_below(key);
            }
        }
    }

    /// Reading tier `source` for a key whose hit would be copied into lower tiers above it:
    /// the copy is marked in flight (in the write log, for every process on the disk_path)
    /// before the read, and a delete waits for it (see `fill`).
    fn copy_in_flight(&self, source: usize, key_hash: u64) -> Option<CopyInFlight<'_>> {
        match (source, &self.writes) {
            (1.., Some(log)) => Some(log.copying(key_hash)),
            _ => None,
        }
    }

    /// Copies tier `source`'s hit into every tier above it (the lower tiers above it, then
    /// memory) and returns it as stored (still compressed if it was: decoded once per get,
    /// like memory hits). Each copy keeps the source's absolute deadline, rounded down, so it
    /// never outlives the source entry. `mark` was taken before any lower tier was asked:
    /// memory keeps the copy only if no set or delete of the key finished meanwhile (the copy
    /// would be older than what it left).
    pub(super) fn promote(
        &self,
        key: &[u8],
        hit: Hit,
        source: usize,
        mark: WriteMark,
    ) -> Option<Blob> {
        // The source's deadline on memory's clock, rounded early. None: it expired between the
        // tier's check and now, nothing left to serve or copy.
        let deadline = match hit.expires_ns {
            Some(at) => Some(clock::deadline_at_unix_ns(at)?),
            None => None,
        };
        if hit.flags & !flags::COMPRESSED != 0 {
            // Flags this build does not know: a newer writer's format, not to be misread.
            return None;
        }
        // From the nearest tier up, as writes go.
        for target in self.lower[..source].iter().rev() {
            self.fill(target.as_ref(), self.lower[source].as_ref(), key, &hit);
        }
        let deadline = earliest(deadline, clock::deadline_after(self.memory_ttl));
        let blob = self
            .l1
            .make_blob_until(key, &hit.value, hit.flags, deadline)
            .ok()?;
        // A promotion memory cannot take (or must not) is not the caller's failure: the value
        // is still served, as a get that ran before the write would have served it.
        if !self.writing_in(mark.key_hash()) {
            let _ = self.l1.promote(blob.clone(), mark);
            self.unless_listening_forget(key);
        }
        Some(blob)
    }

    /// Copies `source`'s hit into `target` (a lower tier above it, e.g. disk into Redis, where
    /// every host reads it) without leaving there a value that a set or delete finished
    /// meanwhile replaced:
    /// - the copy is stored only into an absent key, so a writer's newer value stays; writers
    ///   update the tiers from the bottom up, so a set racing the copy either finds it and
    ///   replaces it, or was there first and keeps it;
    /// - a delete leaves nothing for fill-if-absent to find, so the source is read again before
    ///   the copy (a delete already done: no copy) and after it (a delete done meanwhile: the
    ///   copy is withdrawn, unless something newer replaced it);
    /// - and a delete does not return before such copies are done (`wait_for_copies`): the
    ///   reader marks the copy in flight before it reads the source (`copy_in_flight`).
    fn fill(&self, target: &dyn LowerTier, source: &dyn LowerTier, key: &[u8], hit: &Hit) {
        let still_in_source = || {
            matches!(
                source.peek(key),
                Ok(Some(now)) if now.value == hit.value && now.flags == hit.flags
            )
        };
        if !still_in_source() {
            return;
        }
        let stored = self.timed(target.id(), Op::Set, || {
            target.fill_if_absent(key, &hit.value, hit.flags, hit.expires_ns)
        });
        let Ok(Some(token)) = stored else { return };
        // A tier that cannot compare-and-delete gets a plain delete: at worst a newer value is
        // dropped (a miss), never a replaced one kept.
        if !still_in_source() && target.withdraw(key, &token).is_err() {
            let _ = target.delete(key);
        }
    }
}
