//! How a value is stored in Redis: a 13-byte header, then the payload.
//!
//! ```text
//! offset  size  field
//!      0     3  magic  0xFF 'S' 'C'   (0xFF: no UTF-8 text starts with it, so a string some
//!                                      other program stored under our prefix is not misread)
//!      3     1  version (1)
//!      4     1  flags (tier::flags; only COMPRESSED is defined — other bits are refused)
//!      5     8  expiry, absolute, unix milliseconds, little endian; 0 = no expiry
//!     13     …  payload (LZ4 frame when COMPRESSED)
//! ```
//!
//! The absolute expiry lets a GET report the remaining lifetime without a PTTL round trip. It
//! is written with the writer's clock; Redis's own PX expiry (set alongside) is what reclaims
//! the key. A frame whose expiry has passed reads as a miss, so clock skew between hosts can
//! shorten an entry's life but never serve it past the writer's deadline.

use crate::tier::flags;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) const MAGIC: [u8; 3] = [0xFF, b'S', b'C'];
pub(crate) const VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 13;
const KNOWN_FLAGS: u8 = flags::COMPRESSED;

/// Milliseconds since the unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A TTL in whole milliseconds as Redis's PX takes it: rounded up, at least 1 (PX 0 is an
/// error, and rounding down could expire an entry early).
pub fn ttl_ms(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    ms.clamp(1, u64::MAX as u128) as u64
}

/// Frames `payload`; `expires_at_ms` is absolute unix ms, 0 = never.
pub fn encode(payload: &[u8], flags: u8, expires_at_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(flags);
    out.extend_from_slice(&expires_at_ms.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A value read back.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Ours and live: payload, flags, remaining lifetime (None = no expiry).
    Live(Vec<u8>, u8, Option<Duration>),
    /// Ours, but its expiry has passed (Redis has not reclaimed it yet).
    Expired,
}

/// Why stored bytes are not one of our frames.
#[derive(Debug, PartialEq, Eq)]
pub enum Foreign {
    TooShort(usize),
    BadMagic,
    Version(u8),
    Flags(u8),
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Foreign::TooShort(n) => write!(f, "value of {n} bytes is shorter than a frame header"),
            Foreign::BadMagic => write!(f, "value does not start with the SmartCache magic"),
            Foreign::Version(v) => write!(f, "unknown frame version {v}"),
            Foreign::Flags(b) => write!(f, "unknown frame flags {b:#04x}"),
        }
    }
}

/// Unframes a stored value, taking ownership so the payload is moved, not copied twice.
pub fn decode(mut stored: Vec<u8>, now_ms: u64) -> Result<Decoded, Foreign> {
    if stored.len() < HEADER_LEN {
        return Err(Foreign::TooShort(stored.len()));
    }
    if stored[..3] != MAGIC {
        return Err(Foreign::BadMagic);
    }
    if stored[3] != VERSION {
        return Err(Foreign::Version(stored[3]));
    }
    let fl = stored[4];
    if fl & !KNOWN_FLAGS != 0 {
        return Err(Foreign::Flags(fl));
    }
    let mut exp = [0u8; 8];
    exp.copy_from_slice(&stored[5..13]);
    let expires_at = u64::from_le_bytes(exp);
    let remaining = if expires_at == 0 {
        None
    } else if expires_at <= now_ms {
        return Ok(Decoded::Expired);
    } else {
        Some(Duration::from_millis(expires_at - now_ms))
    };
    stored.drain(..HEADER_LEN);
    Ok(Decoded::Live(stored, fl, remaining))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_and_without_expiry() {
        let f = encode(b"\x00payload\x00", flags::COMPRESSED, 10_500);
        assert_eq!(f.len(), HEADER_LEN + 9);
        assert_eq!(
            decode(f, 10_000),
            Ok(Decoded::Live(
                b"\x00payload\x00".to_vec(),
                flags::COMPRESSED,
                Some(Duration::from_millis(500))
            ))
        );
        assert_eq!(
            decode(encode(b"", 0, 0), 123),
            Ok(Decoded::Live(vec![], 0, None))
        );
        assert_eq!(decode(encode(b"x", 0, 5), 5), Ok(Decoded::Expired));
    }

    #[test]
    fn foreign_values_are_refused() {
        assert_eq!(decode(b"hello".to_vec(), 0), Err(Foreign::TooShort(5)));
        assert_eq!(
            decode(b"plain text value!".to_vec(), 0),
            Err(Foreign::BadMagic)
        );
        let mut f = encode(b"x", 0, 0);
        f[3] = 2;
        assert_eq!(decode(f, 0), Err(Foreign::Version(2)));
        let mut f = encode(b"x", 0, 0);
        f[4] = 0x80;
        assert_eq!(decode(f, 0), Err(Foreign::Flags(0x80)));
    }

    #[test]
    fn ttl_rounds_up_to_whole_ms() {
        assert_eq!(ttl_ms(Duration::from_micros(1)), 1);
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_ms(Duration::from_secs(3)), 3000);
    }
}
