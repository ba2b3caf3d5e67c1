//! How values are stored and handed back: LZ4 compression when it pays, decoding a stored
//! entry once per get, and copying into a caller's buffer.

use super::write::Mutation;
use super::Inner;
use crate::compress;
use crate::error::{Error, Result};
use crate::memory::Blob;
use crate::tier::flags;
use std::borrow::Cow;

impl Inner {
    /// What to store for `value`: its LZ4 frame when compression is on and pays, else itself.
    pub(super) fn encode<'v>(&self, value: &'v [u8]) -> (Cow<'v, [u8]>, u8) {
        let c = &self.config;
        match compress::compress(value, c.compression_enabled, c.compression_min_size) {
            Some(frame) => (Cow::Owned(frame), flags::COMPRESSED),
            None => (Cow::Borrowed(value), 0),
        }
    }

    /// The plain value of a stored entry: the entry itself, or its decompressed copy in a
    /// handle of its own (decompressed once per get). None when the frame does not decode.
    #[inline]
    pub(super) fn decode(&self, stored: Blob) -> Option<Blob> {
        if stored.entry_flags() & flags::COMPRESSED == 0 {
            return Some(stored);
        }
        self.decompress(stored)
    }

    #[cold]
    fn decompress(&self, stored: Blob) -> Option<Blob> {
        match self.decompressed(&stored) {
            Ok(plain) => Some(plain),
            Err(e @ Error::TooLarge(_)) => {
                self.too_large(stored.key(), &e.to_string());
                None
            }
            Err(e) => {
                self.undecodable(stored.key(), &e.to_string());
                None
            }
        }
    }

    /// The decompressed copy of a compressed entry, in a handle of its own; touches no tier.
    pub(super) fn decompressed(&self, stored: &Blob) -> Result<Blob> {
        let len = compress::original_len(stored.value(), self.config.max_value_size)?;
        let mut plain = self.l1.make_detached(len, stored)?;
        compress::decompress_into(stored.value(), plain.value_mut())?;
        Ok(plain)
    }

    /// Counts a value that decodes to more than this cache's max_value_size: a miss here, but
    /// whole for a cache with a larger limit that shares the lower tiers, so it is dropped from
    /// this process's memory only, never deleted from Redis or disk.
    #[cold]
    pub(super) fn too_large(&self, key: &[u8], why: &str) {
        self.memory_errors.error(why);
        self.l1.delete(key);
    }

    /// Counts a value that would not decode and drops it from memory so it is not met again.
    #[cold]
    pub(super) fn undecodable(&self, key: &[u8], why: &str) {
        self.memory_errors.error(why);
        // Every tier holds the same frame: left below, it would be promoted again on each get.
        let _ = self.write(Mutation::Delete(key));
    }
}

/// What a copying get made of a value: its length, copied into the caller's buffer; or the
/// value itself, pinned, because it did not fit and the caller asked for that.
pub enum Copied {
    Into(usize),
    Pinned(Blob),
}

/// `copy_into`, or with `pin_larger` the stored value pinned when it does not fit.
pub(super) fn copy_or_pin(
    b: &Blob,
    buf: &mut [u8],
    limit: usize,
    pin_larger: bool,
) -> Result<Copied> {
    match copy_into(b, buf, limit) {
        Err(Error::BufferTooSmall(_)) if pin_larger => Ok(Copied::Pinned(b.clone())),
        copied => copied.map(Copied::Into),
    }
}

/// Copies a value into the caller's buffer (decompressing a compressed one straight into it),
/// or says how large the buffer must be.
fn copy_into(b: &Blob, buf: &mut [u8], limit: usize) -> Result<usize> {
    let v = b.value();
    if b.entry_flags() & flags::COMPRESSED != 0 {
        let len = compress::original_len(v, limit)?;
        let dst = buf.get_mut(..len).ok_or(Error::BufferTooSmall(len))?;
        compress::decompress_into(v, dst)?;
        return Ok(len);
    }
    match buf.get_mut(..v.len()) {
        Some(dst) => {
            dst.copy_from_slice(v);
            Ok(v.len())
        }
        None => Err(Error::BufferTooSmall(v.len())),
    }
}
