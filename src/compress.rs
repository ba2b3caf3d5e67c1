//! LZ4 compression of values (through lz4-sys), kept only when it saves space.
//!
//! A compressed value is stored as a frame: the original length (u32, little endian) followed by
//! one LZ4 block. The entry's `flags::COMPRESSED` bit (in L1, and in the L2/L3 frames) says a
//! value is framed this way; everything else is stored as given.

use crate::error::{Error, Result};
use std::ffi::{c_char, c_int};

const LEN_PREFIX: usize = 4;

/// Compresses `value` when `enabled`, the value is at least `min_size` bytes and compression
/// saves at least one byte; None means "store it as it is".
pub fn compress(value: &[u8], enabled: bool, min_size: usize) -> Option<Vec<u8>> {
    if !enabled || value.len() < min_size || value.is_empty() || value.len() > c_int::MAX as usize {
        return None;
    }
    let src_len = value.len() as c_int;
    // SAFETY: LZ4_compressBound only computes a size.
    let bound = unsafe { lz4_sys::LZ4_compressBound(src_len) };
    if bound <= 0 {
        return None;
    }
    // Anything not smaller than the input is useless; cap the output there so LZ4 gives up
    // early on incompressible data.
    let cap = (bound as usize).min(value.len() - 1);
    let mut out = vec![0u8; LEN_PREFIX + cap];
    out[..LEN_PREFIX].copy_from_slice(&(value.len() as u32).to_le_bytes());
    // SAFETY: src is valid for src_len bytes; dst has `cap` writable bytes after the prefix and
    // LZ4 writes at most maxDestSize bytes.
    let n = unsafe {
        lz4_sys::LZ4_compress_default(
            value.as_ptr() as *const c_char,
            out[LEN_PREFIX..].as_mut_ptr() as *mut c_char,
            src_len,
            cap as c_int,
        )
    };
    if n <= 0 || LEN_PREFIX + n as usize >= value.len() {
        return None;
    }
    out.truncate(LEN_PREFIX + n as usize);
    out.shrink_to_fit();
    Some(out)
}

/// The original length recorded in a compressed frame, refused above `limit` (the largest
/// value the cache accepts): a damaged prefix must not make us allocate gigabytes. Over the
/// limit is `TooLarge`, not corruption: another cache with a larger max_value_size may have
/// stored it, and it is whole for that cache.
pub fn original_len(frame: &[u8], limit: usize) -> Result<usize> {
    let prefix: [u8; LEN_PREFIX] = frame
        .get(..LEN_PREFIX)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| corrupt("frame shorter than its length prefix"))?;
    let len = u32::from_le_bytes(prefix) as usize;
    if len > limit {
        return Err(Error::TooLarge(format!(
            "value of {len} bytes is over max_value_size {limit}"
        )));
    }
    Ok(len)
}

/// Decompresses a frame into `dst`, which must be exactly the frame's original length.
/// Corrupt input is an error, never a crash or a partial value.
pub fn decompress_into(frame: &[u8], dst: &mut [u8]) -> Result<()> {
    let want = original_len(frame, usize::MAX)?;
    if dst.len() != want || want > c_int::MAX as usize {
        return Err(corrupt("length prefix does not match the destination"));
    }
    let body = &frame[LEN_PREFIX..];
    if body.len() > c_int::MAX as usize {
        return Err(corrupt("frame too large"));
    }
    // SAFETY: src is valid for body.len() bytes, dst for want bytes; LZ4_decompress_safe never
    // reads or writes outside those bounds, whatever the input.
    let n = unsafe {
        lz4_sys::LZ4_decompress_safe(
            body.as_ptr() as *const c_char,
            dst.as_mut_ptr() as *mut c_char,
            body.len() as c_int,
            want as c_int,
        )
    };
    if n < 0 || n as usize != want {
        return Err(corrupt("LZ4 block does not decode to its recorded length"));
    }
    Ok(())
}

fn corrupt(why: &str) -> Error {
    Error::Internal(format!("corrupt compressed value: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decompresses a frame of at most `limit` original bytes into a new vector.
    pub fn decompress(frame: &[u8], limit: usize) -> Result<Vec<u8>> {
        let mut out = vec![0u8; original_len(frame, limit)?];
        decompress_into(frame, &mut out)?;
        Ok(out)
    }

    fn text(n: usize) -> Vec<u8> {
        b"{\"user\": 12, \"name\": \"Ada\", \"tags\": [\"a\", \"b\"]}, "
            .iter()
            .cycle()
            .take(n)
            .copied()
            .collect()
    }

    #[test]
    fn round_trips_every_size_around_the_threshold_and_up_to_a_mebibyte() {
        let min = 64;
        let sizes = (0..=4 * min)
            .chain((1..=20).map(|s| 1usize << s))
            .chain([(1 << 20) - 1]);
        for n in sizes {
            let v = text(n);
            match compress(&v, true, min) {
                Some(frame) => {
                    assert!(n >= min, "{n} compressed below the threshold");
                    assert!(frame.len() < n, "kept a frame that saves nothing at {n}");
                    assert_eq!(decompress(&frame, 1 << 20).unwrap(), v, "size {n}");
                }
                None => assert!(n < min || n < 16, "repetitive {n} bytes not compressed"),
            }
        }
    }

    #[test]
    fn incompressible_data_is_left_alone() {
        let mut x = 0x1234_5678u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(compress(&noise, true, 1).is_none());
    }

    #[test]
    fn disabled_or_short_values_are_not_compressed() {
        assert!(compress(&text(4096), false, 1).is_none());
        assert!(compress(&text(100), true, 101).is_none());
    }

    #[test]
    fn corrupt_frames_are_errors_not_crashes() {
        let frame = compress(&text(10_000), true, 1).unwrap();
        assert!(decompress(&frame[..2], 1 << 20).is_err());
        assert!(decompress(&frame[..frame.len() / 2], 1 << 20).is_err());
        let mut lying = frame.clone();
        lying[..4].copy_from_slice(&20_000u32.to_le_bytes());
        assert!(decompress(&lying, 1 << 20).is_err());
        let mut x = 7u64;
        for i in 0..200 {
            let mut bad = frame.clone();
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = LEN_PREFIX + (x >> 33) as usize % (bad.len() - LEN_PREFIX);
            bad[at] ^= 1 << (i % 8);
            // Either detected, or decodes to some bytes of the right length: never a crash.
            if let Ok(v) = decompress(&bad, 1 << 20) {
                assert_eq!(v.len(), 10_000);
            }
        }
        let mut huge_claim = frame.clone();
        huge_claim[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            decompress(&huge_claim, 16 << 20).is_err(),
            "a lying prefix is not allocated"
        );
        let mut small = [0u8; 3];
        assert!(decompress_into(&frame, &mut small).is_err());
    }
}
