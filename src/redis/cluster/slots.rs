//! Redis Cluster hash slots: CRC16 (XMODEM) of the key, or of its `{hash tag}`, modulo 16384.
//!
//! The slot is computed over the full Redis key, prefix included, exactly as the server does:
//! a different answer would send every such key to the wrong node. The cache's prefix holds no
//! braces (the derived one never does and a `redis_key_prefix` with one is refused in cluster
//! mode, see `check_prefix`), so the first `{...}` of a user's key is the tag: keys that share a
//! tag share a slot, and a key without one is spread by its whole name.

/// Slots in a Redis Cluster.
pub const SLOTS: usize = 16384;

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster specifies.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The part of `key` that is hashed: the bytes between the first `{` and the first `}` after
/// it when there are any, else the whole key (an empty `{}` does not count as a tag).
pub fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The hash slot of a full Redis key.
pub fn slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) % SLOTS as u16
}

/// A key prefix usable with a cluster: one with a brace would pin every key to one slot, or
/// turn half of a user's tag into part of the prefix's.
pub fn check_prefix(prefix: &[u8]) -> std::result::Result<(), String> {
    if prefix.iter().any(|&b| b == b'{' || b == b'}') {
        return Err(
            "must not contain '{' or '}' with a redis+cluster:// URL (a hash tag in the \
                    prefix would put every key in one slot; put tags in keys instead)"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_cluster_specification() {
        // The check value of CRC16/XMODEM and the example of the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"123456789"), 12739);
        // Values `CLUSTER KEYSLOT` returns.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b""), 0);
    }

    #[test]
    fn hash_tags_follow_the_server_rules() {
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"sc:abc:{user1000}.followers"), slot(b"user1000"));
        // The first '{' and the first '}' after it.
        assert_eq!(hashed_part(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashed_part(b"foo{bar}{zap}"), b"bar");
        // An empty tag or an unclosed one: the whole key.
        assert_eq!(hashed_part(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hashed_part(b"foo{bar"), b"foo{bar");
        assert_eq!(hashed_part(b"}foo{"), b"}foo{");
    }

    #[test]
    fn prefixes_with_braces_are_refused() {
        assert!(check_prefix(b"sc:0123:").is_ok());
        assert!(check_prefix(b"app{1}:").is_err());
        assert!(check_prefix(b"app}").is_err());
    }
}
