//! How the L3 file grows: it is created sparse, at its full geometry size, with only the header
//! page and the segment table reserved; the ring and the index get their blocks reserved
//! (fallocate) just before a writer first stores into them. A cache with a few entries therefore
//! takes a few MiB on disk (`du`), however large `disk_max_size` is.
//!
//! Every process maps the whole geometry from the start, so no one remaps when the file grows:
//! "following the growth" is reading the shared words that say what is reserved. The ring is
//! written from its start, lap after lap, so the head tells how much of it is in use; the
//! index fills in random places, so the header keeps a bitmap of its reserved chunks.
//!
//! The invariant: nothing in the mapping is read or written unless its blocks are reserved.
//! A store into a hole needs a block at page-fault time and a full disk then kills the process
//! with SIGBUS (on tmpfs, even a read of a hole allocates). Reserving first turns a full disk
//! into an `Error::Io` from the set that needed the space, counted as a tier error; the file
//! and every other entry stay usable.

use super::file::{self, io_err};
use super::format::{Geometry, HEADER_LEN, VERSION_FULLY_RESERVED};
use super::DiskTier;
use crate::error::Result;
use std::sync::atomic::Ordering;

/// The ring grows by this much at a time (and its last step to its end).
pub(crate) const RING_STEP: u64 = 1 << 20;

/// The (offset, length) ranges a new file reserves: the header page and the segment table.
pub(super) fn reserved_at_creation(geo: &Geometry) -> Vec<(u64, u64)> {
    vec![
        (0, HEADER_LEN),
        (geo.segtab_off, geo.data_off - geo.segtab_off),
    ]
}

impl DiskTier {
    /// Reserves the blocks a record needs before the writer stores it: the ring up to the
    /// record's end (`end`, the head after it) and the chunk of the index holding `bucket`.
    /// Callers hold the writer lock.
    pub(super) fn reserve_for_write(&self, end: u64, bucket: u64) -> Result<()> {
        self.reserve_ring(end)?;
        let chunk = self.index.chunk_of(bucket);
        if !self.index.chunk_reserved(chunk) {
            self.reserve_index_chunks(chunk, chunk + 1)?;
            self.index.mark_reserved(chunk);
        }
        Ok(())
    }

    /// Makes sure the ring's first `min(head, ring_bytes)` bytes are reserved, growing it in
    /// `RING_STEP`s. `ring_reserved` is this process's lower bound of what is reserved (another
    /// process may have grown the file further; reserving again is harmless and cheap).
    fn reserve_ring(&self, head: u64) -> Result<()> {
        let ring_bytes = self.geo.ring_bytes();
        let need = head.min(ring_bytes);
        let have = self.ring_reserved.load(Ordering::Relaxed);
        if need <= have {
            return Ok(());
        }
        let target = need
            .div_ceil(RING_STEP)
            .saturating_mul(RING_STEP)
            .min(ring_bytes);
        file::reserve_range(&self.file, self.geo.data_off + have, target - have).map_err(|e| {
            io_err(
                &self.path,
                &format!("cannot grow the file to hold {target} bytes of data (disk full?)"),
                e,
            )
        })?;
        self.ring_reserved.store(target, Ordering::Relaxed);
        Ok(())
    }

    /// Reserves the index chunks `from .. to`.
    fn reserve_index_chunks(&self, from: u64, to: u64) -> Result<()> {
        let geo = &self.geo;
        let start = self.index.chunk_buckets(from).0 * super::format::BUCKET_BYTES;
        let end =
            (self.index.chunk_buckets(to).0 * super::format::BUCKET_BYTES).min(geo.index_bytes());
        file::reserve_range(&self.file, geo.index_off + start, end - start)
            .map_err(|e| io_err(&self.path, "cannot grow the file's index (disk full?)", e))
    }

    /// At open: reserves again everything the file says is in use, so the invariant holds
    /// whatever happened while no one had it open (truncated and extended back, or mutable
    /// header words damaged into claiming more). Already reserved blocks cost nothing. A
    /// version 1 file was reserved whole at creation, and every part of it counts as in use.
    pub(super) fn reserve_what_is_recorded(&self, version: u32) -> Result<()> {
        for (off, len) in reserved_at_creation(&self.geo) {
            file::reserve_range(&self.file, off, len)
                .map_err(|e| io_err(&self.path, "cannot reserve the header", e))?;
        }
        if version == VERSION_FULLY_RESERVED {
            for c in 0..self.index.chunks() {
                self.index.mark_reserved(c);
            }
            self.reserve_ring(u64::MAX)?;
        } else {
            self.reserve_ring(self.head().load(Ordering::Acquire))?;
        }
        let mut c = 0;
        while c < self.index.chunks() {
            if !self.index.chunk_reserved(c) {
                c += 1;
                continue;
            }
            let run_start = c;
            while c < self.index.chunks() && self.index.chunk_reserved(c) {
                c += 1;
            }
            self.reserve_index_chunks(run_start, c)?;
        }
        Ok(())
    }
}
