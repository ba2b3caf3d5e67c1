//! How a value is stored in Redis: a 13-byte header, a MAC when signed, then the payload.
//!
//! ```text
//! offset  size  field
//!      0     3  magic  0xFF 'S' 'C'   (0xFF: no UTF-8 text starts with it, so a string some
//!                                      other program stored under our prefix is not misread)
//!      3     1  version: 1 = unsigned, 2 = signed
//!      4     1  flags (tier::flags; only COMPRESSED is defined — other bits are refused)
//!      5     8  expiry, absolute, unix milliseconds, little endian; 0 = no expiry
//!     13    32  version 2 only: HMAC-SHA256 (see crate::sign, domain "redis") over the whole
//!               Redis key (prefix included), flags, expiry and payload
//!  13/45     …  payload (LZ4 frame when COMPRESSED)
//! ```
//!
//! With `value_secret` set, frames are written as version 2, and a version 1 frame or a
//! version 2 frame whose MAC verifies with neither secret reads as a miss, counted as
//! tampered. Without a secret, frames are written as version 1 and both versions are read
//! (the MAC is then not checked: such a reader trusts Redis, as it always did).
//!
//! The absolute expiry lets a GET report the remaining lifetime without a PTTL round trip. It
//! is written with the writer's clock; Redis's own PX expiry (set alongside) is what reclaims
//! the key. A frame whose expiry has passed reads as a miss, so clock skew between hosts can
//! shorten an entry's life but never serve it past the writer's deadline.

use crate::sign::{Domain, Signed, Signer, Verdict, MAC_LEN};
use crate::tier::flags;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) const MAGIC: [u8; 3] = [0xFF, b'S', b'C'];
pub(crate) const VERSION: u8 = 1;
pub(crate) const VERSION_SIGNED: u8 = 2;
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

/// Frames `payload`; `expires_at_ms` is absolute unix ms, 0 = never. With a signer the frame
/// is version 2 and its MAC binds it to `redis_key` (the full key, prefix included).
pub fn encode(
    payload: &[u8],
    flags: u8,
    expires_at_ms: u64,
    signer: Option<(&Signer, &[u8])>,
) -> Vec<u8> {
    let mac_len = if signer.is_some() { MAC_LEN } else { 0 };
    let mut out = Vec::with_capacity(HEADER_LEN + mac_len + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(if signer.is_some() {
        VERSION_SIGNED
    } else {
        VERSION
    });
    out.push(flags);
    out.extend_from_slice(&expires_at_ms.to_le_bytes());
    if let Some((s, redis_key)) = signer {
        out.extend_from_slice(&s.sign(
            Domain::Redis,
            &Signed {
                key: redis_key,
                flags,
                expires_ms: expires_at_ms,
                value: payload,
            },
        ));
    }
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
    /// Signing is on and the frame's MAC is missing or wrong: see `sign::Verdict`.
    Tampered(Verdict),
    /// A payload longer than max_value_size (length, limit).
    TooLarge(usize, usize),
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Foreign::TooShort(n) => write!(f, "value of {n} bytes is shorter than a frame header"),
            Foreign::BadMagic => write!(f, "value does not start with the SmartCache magic"),
            Foreign::Version(v) => write!(f, "unknown frame version {v}"),
            Foreign::Flags(b) => write!(f, "unknown frame flags {b:#04x}"),
            Foreign::Tampered(v) => write!(f, "refused as tampered: {}", v.reason()),
            Foreign::TooLarge(n, max) => {
                write!(f, "value of {n} bytes is over max_value_size {max}")
            }
        }
    }
}

/// Unframes a stored value, taking ownership so the payload is moved, not copied twice.
/// With a signer, the MAC must verify for `redis_key`.
pub fn decode(
    mut stored: Vec<u8>,
    now_ms: u64,
    signer: Option<(&Signer, &[u8])>,
) -> Result<Decoded, Foreign> {
    if stored.len() < HEADER_LEN {
        return Err(Foreign::TooShort(stored.len()));
    }
    if stored[..3] != MAGIC {
        return Err(Foreign::BadMagic);
    }
    let body = match stored[3] {
        VERSION => HEADER_LEN,
        VERSION_SIGNED if stored.len() >= HEADER_LEN + MAC_LEN => HEADER_LEN + MAC_LEN,
        VERSION_SIGNED => return Err(Foreign::TooShort(stored.len())),
        v => return Err(Foreign::Version(v)),
    };
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
    if let Some((s, redis_key)) = signer {
        let record = Signed {
            key: redis_key,
            flags: fl,
            expires_ms: expires_at,
            value: &stored[body..],
        };
        let mac = (body > HEADER_LEN).then(|| &stored[HEADER_LEN..body]);
        match s.verify(Domain::Redis, &record, mac) {
            Verdict::Valid => {}
            refused => return Err(Foreign::Tampered(refused)),
        }
    }
    stored.drain(..body);
    Ok(Decoded::Live(stored, fl, remaining))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_and_without_expiry() {
        let f = encode(b"\x00payload\x00", flags::COMPRESSED, 10_500, None);
        assert_eq!(f.len(), HEADER_LEN + 9);
        assert_eq!(
            decode(f, 10_000, None),
            Ok(Decoded::Live(
                b"\x00payload\x00".to_vec(),
                flags::COMPRESSED,
                Some(Duration::from_millis(500))
            ))
        );
        assert_eq!(
            decode(encode(b"", 0, 0, None), 123, None),
            Ok(Decoded::Live(vec![], 0, None))
        );
        assert_eq!(
            decode(encode(b"x", 0, 5, None), 5, None),
            Ok(Decoded::Expired)
        );
    }

    #[test]
    fn foreign_values_are_refused() {
        assert_eq!(
            decode(b"hello".to_vec(), 0, None),
            Err(Foreign::TooShort(5))
        );
        assert_eq!(
            decode(b"plain text value!".to_vec(), 0, None),
            Err(Foreign::BadMagic)
        );
        let mut f = encode(b"x", 0, 0, None);
        f[3] = 3;
        assert_eq!(decode(f, 0, None), Err(Foreign::Version(3)));
        let mut f = encode(b"x", 0, 0, None);
        f[4] = 0x80;
        assert_eq!(decode(f, 0, None), Err(Foreign::Flags(0x80)));
    }

    fn signer(secret: &str) -> Signer {
        let mut cfg = crate::Config::default();
        cfg.set("value_secret", secret).unwrap();
        Signer::from_config(&cfg).unwrap()
    }

    #[test]
    fn signed_frames_verify_only_under_their_key_and_secret() {
        let s = signer("frame-secret-0123456");
        let key: &[u8] = b"sc:/x:k";
        let f = encode(b"value", 0, 0, Some((&s, key)));
        assert_eq!(f[3], VERSION_SIGNED);
        assert_eq!(f.len(), HEADER_LEN + MAC_LEN + 5);
        assert_eq!(
            decode(f.clone(), 0, Some((&s, key))),
            Ok(Decoded::Live(b"value".to_vec(), 0, None))
        );
        // A reader without a secret trusts Redis and takes signed frames as they are.
        assert_eq!(
            decode(f.clone(), 0, None),
            Ok(Decoded::Live(b"value".to_vec(), 0, None))
        );
        let mismatch = Err(Foreign::Tampered(Verdict::Mismatch));
        assert_eq!(decode(f.clone(), 0, Some((&s, b"sc:/x:j"))), mismatch);
        let other = signer("another-secret-0123456");
        assert_eq!(decode(f.clone(), 0, Some((&other, key))), mismatch);
        for at in [4, 5, HEADER_LEN, f.len() - 1] {
            let mut bad = f.clone();
            bad[at] ^= 1;
            let got = decode(bad, 0, Some((&s, key)));
            assert!(
                matches!(got, Err(Foreign::Tampered(_)) | Err(Foreign::Flags(_))),
                "{at}: {got:?}"
            );
        }
        assert_eq!(
            decode(encode(b"value", 0, 0, None), 0, Some((&s, key))),
            Err(Foreign::Tampered(Verdict::Unsigned))
        );
        assert_eq!(
            decode(f[..HEADER_LEN + 3].to_vec(), 0, Some((&s, key))),
            Err(Foreign::TooShort(HEADER_LEN + 3))
        );
    }

    #[test]
    fn ttl_rounds_up_to_whole_ms() {
        assert_eq!(ttl_ms(Duration::from_micros(1)), 1);
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_ms(Duration::from_secs(3)), 3000);
    }
}
