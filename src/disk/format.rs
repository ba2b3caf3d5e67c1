//! The byte layout of the L3 file: header geometry, record framing and the key hash.
//!
//! Everything here is part of the on-disk format (docs/disk-format.md): changing a constant, a
//! field offset or the hash function means bumping `VERSION`, because files written by another
//! build are shared by every process on the host and survive upgrades.

use crate::config::MAX_KEY_LEN;
use crate::sign::MAC_LEN;

pub(crate) const MAGIC: [u8; 8] = *b"SCACHEL3";
/// Version 2: the file is sparse and grows as it is used (`disk::grow`); the header gains the
/// bitmap of reserved index chunks. Version 1 files (reserved whole at creation) are still read:
/// every part of them counts as reserved.
pub(crate) const VERSION: u32 = 2;
/// The fully reserved layout, still opened.
pub(crate) const VERSION_FULLY_RESERVED: u32 = 1;
/// The header occupies the whole first page so the mutable fields never share a page with data.
pub(crate) const HEADER_LEN: u64 = 4096;
/// Bytes of the header covered by the geometry checksum (stored right after them).
const GEOMETRY_LEN: usize = 72;
const GEOMETRY_CRC_OFF: usize = 72;
/// Absolute log position of the next record (mutable, own cache line).
pub(crate) const HEAD_OFF: usize = 128;
/// Bitmap of the index chunks whose blocks are reserved (mutable; bit `c % 64` of word `c / 64`).
pub(crate) const INDEX_RESERVED_OFF: usize = 1024;
pub(crate) const INDEX_RESERVED_WORDS: usize = 64;
/// Index chunks the bitmap can describe; a chunk is at least a page of buckets.
pub(crate) const INDEX_CHUNKS_MAX: u64 = INDEX_RESERVED_WORDS as u64 * 64;

/// Slots per index bucket: a key lives in one of the 8 slots of the bucket its hash selects, so a
/// probe is bounded by two cache lines and never needs tombstones.
pub(crate) const BUCKET_SLOTS: usize = 8;
pub(crate) const SLOT_BYTES: u64 = 16;
pub(crate) const BUCKET_BYTES: u64 = SLOT_BYTES * BUCKET_SLOTS as u64;
/// Per-segment accounting: live entry count and live bytes, two u64 each.
pub(crate) const SEGTAB_ENTRY_BYTES: u64 = 16;

pub(crate) const RECORD_HEADER: usize = 32;
pub(crate) const RECORD_ALIGN: u64 = 8;

/// Smallest max_size we lay out; below this the index and two segments do not fit sensibly.
pub(crate) const MIN_FILE_SIZE: u64 = 64 * 1024;
const PAGE: u64 = 4096;
/// Segments per file we aim for: fewer means each reclaim drops a larger share of the cache.
const TARGET_SEGMENTS: u64 = 64;
/// One index slot per this many data bytes (slot load stays low for records of >= 100 bytes).
const DATA_BYTES_PER_SLOT: u64 = 256;

/// Where each region of the file is; immutable once the file is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub file_size: u64,
    pub index_off: u64,
    pub buckets: u64,
    pub segtab_off: u64,
    pub data_off: u64,
    pub seg_size: u64,
    pub seg_count: u64,
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// The format version a header claims (the caller has checked it is at least 12 bytes).
pub fn header_version(hdr: &[u8]) -> u32 {
    le_u32(hdr, 8)
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

impl Geometry {
    /// Lays out a new file of at most `max_size` bytes. Segments are made large enough for the
    /// biggest record the config allows (longest key plus max_value_size) when the file is big
    /// enough for two of them; otherwise larger values are refused at set time as TooLarge.
    pub fn for_size(max_size: u64, max_value_size: usize) -> Result<Geometry, String> {
        if max_size < MIN_FILE_SIZE {
            return Err(format!(
                "disk_max_size {max_size} is below the minimum of {MIN_FILE_SIZE} bytes"
            ));
        }
        let budget = max_size - HEADER_LEN;
        let buckets = (budget / (DATA_BYTES_PER_SLOT + SLOT_BYTES) / BUCKET_SLOTS as u64).max(1);
        let index_bytes = round_up(buckets * BUCKET_BYTES, PAGE);
        let rest = budget
            .checked_sub(index_bytes)
            .ok_or_else(|| "disk_max_size too small for the index".to_string())?;
        // A signed record stores its MAC with the value.
        let biggest = record_len(MAX_KEY_LEN, max_value_size.saturating_add(MAC_LEN));
        let mut seg_size = (rest / TARGET_SEGMENTS / PAGE * PAGE).max(round_up(biggest, PAGE));
        let mut seg_count = 0;
        let mut segtab_bytes = 0;
        // The segment table shrinks as segments grow; settle on a count that fits with it.
        for count in (2..=rest / seg_size).rev() {
            let tab = round_up(count * SEGTAB_ENTRY_BYTES, PAGE);
            if count * seg_size + tab <= rest {
                seg_count = count;
                segtab_bytes = tab;
                break;
            }
        }
        if seg_count == 0 {
            segtab_bytes = PAGE;
            seg_size = (rest - PAGE) / 2 / PAGE * PAGE;
            seg_count = 2;
        }
        if seg_size < PAGE {
            return Err(format!("disk_max_size {max_size} leaves no room for data"));
        }
        let index_off = HEADER_LEN;
        let segtab_off = index_off + index_bytes;
        let data_off = segtab_off + segtab_bytes;
        Ok(Geometry {
            file_size: data_off + seg_size * seg_count,
            index_off,
            buckets,
            segtab_off,
            data_off,
            seg_size,
            seg_count,
        })
    }

    /// log2 of the buckets in one index chunk, the unit in which the index is reserved: a page
    /// at least, and few enough chunks for the header's bitmap.
    pub fn index_chunk_shift(&self) -> u32 {
        let per_chunk = self
            .buckets
            .div_ceil(INDEX_CHUNKS_MAX)
            .max(PAGE / BUCKET_BYTES)
            .next_power_of_two();
        per_chunk.trailing_zeros()
    }

    /// The index region's bytes, page-rounded (the segment table starts at or after its end).
    pub fn index_bytes(&self) -> u64 {
        round_up(self.buckets * BUCKET_BYTES, PAGE)
    }

    pub fn ring_bytes(&self) -> u64 {
        self.seg_size * self.seg_count
    }

    /// Writes magic, version, geometry and its checksum into the first bytes of a header page.
    pub fn encode(&self, hdr: &mut [u8]) {
        hdr[0..8].copy_from_slice(&MAGIC);
        hdr[8..12].copy_from_slice(&VERSION.to_le_bytes());
        hdr[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        let fields = [
            self.file_size,
            self.index_off,
            self.buckets,
            self.segtab_off,
            self.data_off,
            self.seg_size,
            self.seg_count,
        ];
        for (i, v) in fields.iter().enumerate() {
            hdr[16 + 8 * i..24 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&hdr[..GEOMETRY_LEN]);
        hdr[GEOMETRY_CRC_OFF..GEOMETRY_CRC_OFF + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Reads and checks a header. The error says what is wrong, for a message naming the file.
    pub fn decode(hdr: &[u8]) -> Result<Geometry, String> {
        if hdr.len() < HEADER_LEN as usize {
            return Err(format!(
                "too short to be a SmartCache L3 file ({} bytes, the header alone is {HEADER_LEN})",
                hdr.len()
            ));
        }
        if hdr[0..8] != MAGIC {
            return Err("not a SmartCache L3 file (wrong magic)".into());
        }
        let version = header_version(hdr);
        if version != VERSION && version != VERSION_FULLY_RESERVED {
            return Err(format!(
                "format version {version}, this build reads version {VERSION}"
            ));
        }
        if le_u32(hdr, GEOMETRY_CRC_OFF) != crc32fast::hash(&hdr[..GEOMETRY_LEN]) {
            return Err("header checksum mismatch (corrupt geometry)".into());
        }
        let g = Geometry {
            file_size: le_u64(hdr, 16),
            index_off: le_u64(hdr, 24),
            buckets: le_u64(hdr, 32),
            segtab_off: le_u64(hdr, 40),
            data_off: le_u64(hdr, 48),
            seg_size: le_u64(hdr, 56),
            seg_count: le_u64(hdr, 64),
        };
        if le_u32(hdr, 12) as u64 != HEADER_LEN || !g.is_consistent() {
            return Err(format!("inconsistent geometry {g:?}"));
        }
        Ok(g)
    }

    /// Regions in order, aligned, non-overlapping and exactly filling file_size: everything the
    /// mapping code relies on to stay in bounds.
    fn is_consistent(&self) -> bool {
        let index_end = self
            .buckets
            .checked_mul(BUCKET_BYTES)
            .and_then(|b| b.checked_add(self.index_off));
        let segtab_end = self
            .seg_count
            .checked_mul(SEGTAB_ENTRY_BYTES)
            .and_then(|b| b.checked_add(self.segtab_off));
        let data_end = self
            .seg_count
            .checked_mul(self.seg_size)
            .and_then(|b| b.checked_add(self.data_off));
        self.index_off >= HEADER_LEN
            && self.index_off % PAGE == 0
            && self.segtab_off % PAGE == 0
            && self.data_off % PAGE == 0
            && self.buckets >= 1
            && self.seg_count >= 2
            && self.seg_size >= PAGE
            && self.seg_size % RECORD_ALIGN == 0
            && self.seg_size <= u32::MAX as u64
            && index_end.is_some_and(|e| e <= self.segtab_off)
            && segtab_end.is_some_and(|e| e <= self.data_off)
            && data_end == Some(self.file_size)
            && usize::try_from(self.file_size).is_ok()
    }
}

/// Bytes a record takes in the ring, padded so the next record header stays 8-aligned.
pub fn record_len(key_len: usize, value_len: usize) -> u64 {
    round_up(
        RECORD_HEADER as u64 + key_len as u64 + value_len as u64,
        RECORD_ALIGN,
    )
}

/// A record's fixed header. `pos` is the record's own absolute log position, so an index slot
/// that points at a record from another lap of the ring (or at garbage) is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub crc: u32,
    pub flags: u8,
    pub key_len: u16,
    /// Bytes of the stored value, the MAC included when `mac_len` is not 0.
    pub value_len: u32,
    /// 0 = unsigned; MAC_LEN = the stored value starts with an HMAC-SHA256 (crate::sign,
    /// domain "disk") over key, flags, expiry and the rest of the value.
    pub mac_len: u8,
    pub pos: u64,
    /// Absolute wall-clock deadline in unix milliseconds; 0 = never expires.
    pub expires_ms: u64,
}

/// Marks byte 5 of every record so a zeroed or foreign region never parses as one.
const RECORD_MARK: u8 = 0xA5;

impl RecordHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER] {
        let mut b = [0u8; RECORD_HEADER];
        b[0..4].copy_from_slice(&self.crc.to_le_bytes());
        b[4] = self.flags;
        b[5] = RECORD_MARK;
        b[6..8].copy_from_slice(&self.key_len.to_le_bytes());
        b[8..12].copy_from_slice(&self.value_len.to_le_bytes());
        b[12] = self.mac_len;
        b[16..24].copy_from_slice(&self.pos.to_le_bytes());
        b[24..32].copy_from_slice(&self.expires_ms.to_le_bytes());
        b
    }

    /// None when the bytes cannot be a record header at all. (Builds from before signing
    /// required bytes 12..16 to be zero, so they read a signed record as damage, never as a
    /// value with a MAC glued to its front.)
    pub fn decode(b: &[u8; RECORD_HEADER]) -> Option<RecordHeader> {
        let mac_len = b[12];
        if b[5] != RECORD_MARK
            || b[13..16] != [0, 0, 0]
            || !(mac_len == 0 || mac_len as usize == MAC_LEN)
            || le_u32(b, 8) < mac_len as u32
        {
            return None;
        }
        Some(RecordHeader {
            crc: le_u32(b, 0),
            flags: b[4],
            key_len: u16::from_le_bytes([b[6], b[7]]),
            value_len: le_u32(b, 8),
            mac_len,
            pos: le_u64(b, 16),
            expires_ms: le_u64(b, 24),
        })
    }

    pub fn record_len(&self) -> u64 {
        record_len(self.key_len as usize, self.value_len as usize)
    }
}

/// The checksum a record stores: over header bytes 4..32 (everything but the crc), key, and
/// the stored value, given in parts (a signed record's MAC, then its value).
pub fn record_crc(header: &[u8; RECORD_HEADER], key: &[u8], value: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[4..]);
    h.update(key);
    for part in value {
        h.update(part);
    }
    h.finalize()
}

/// The key hash stored in index slots. It must be identical in every process and every build
/// that reads the file, so it is spelled out here rather than taken from a std or crate hasher
/// whose output may change between versions or be seeded per process.
pub fn key_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (key.len() as u64).wrapping_mul(K) ^ 0x5851_F42D_4C95_7F2D;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        let mut b = [0u8; 8];
        b[..rem.len()].copy_from_slice(rem);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K).rotate_left(29);
    }
    // murmur3 fmix64: spreads every input bit over the high bits the bucket choice uses.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_round_trips_and_fits_max_size() {
        for (size, maxv) in [
            (64 << 10, 1024),
            (1 << 20, 4096),
            (256 << 20, 16 << 20),
            (2 << 30, 1 << 20),
        ] {
            let g = Geometry::for_size(size, maxv).unwrap();
            assert!(g.file_size <= size, "{g:?} exceeds {size}");
            assert!(g.is_consistent(), "{g:?}");
            let mut hdr = vec![0u8; HEADER_LEN as usize];
            g.encode(&mut hdr);
            assert_eq!(Geometry::decode(&hdr).unwrap(), g);
        }
    }

    #[test]
    fn segments_hold_the_biggest_record_when_room_allows() {
        let g = Geometry::for_size(256 << 20, 16 << 20).unwrap();
        assert!(g.seg_size >= record_len(MAX_KEY_LEN, 16 << 20));
        assert!(g.seg_count >= 2);
        let small = Geometry::for_size(64 << 20, 1024).unwrap();
        assert!(small.seg_count >= 32, "{small:?}");
    }

    #[test]
    fn index_chunks_are_whole_pages_and_fit_the_bitmap() {
        for size in [64 << 10, 1 << 20, 256 << 20, 16 << 30] {
            let g = Geometry::for_size(size, 1024).unwrap();
            let per_chunk = 1u64 << g.index_chunk_shift();
            assert_eq!(per_chunk * BUCKET_BYTES % PAGE, 0, "{g:?}");
            assert!(g.buckets.div_ceil(per_chunk) <= INDEX_CHUNKS_MAX, "{g:?}");
        }
    }

    #[test]
    fn too_small_sizes_are_refused() {
        assert!(Geometry::for_size(4096, 10).is_err());
        assert!(Geometry::for_size(MIN_FILE_SIZE - 1, 10).is_err());
    }

    #[test]
    fn decode_names_each_problem() {
        let g = Geometry::for_size(1 << 20, 100).unwrap();
        let mut hdr = vec![0u8; HEADER_LEN as usize];
        g.encode(&mut hdr);
        assert!(Geometry::decode(&hdr[..100])
            .unwrap_err()
            .contains("too short"));
        let mut bad = hdr.clone();
        bad[0] = b'X';
        assert!(Geometry::decode(&bad).unwrap_err().contains("magic"));
        let mut bad = hdr.clone();
        bad[8] = 9;
        assert!(Geometry::decode(&bad).unwrap_err().contains("version 9"));
        // Version 1 (reserved whole at creation) is still read.
        let mut old = hdr.clone();
        old[8] = 1;
        let crc = crc32fast::hash(&old[..GEOMETRY_LEN]);
        old[GEOMETRY_CRC_OFF..GEOMETRY_CRC_OFF + 4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Geometry::decode(&old).unwrap(), g);
        let mut bad = hdr.clone();
        bad[60] ^= 1;
        assert!(Geometry::decode(&bad).unwrap_err().contains("checksum"));
        // A consistent checksum over inconsistent fields is still refused.
        let mut bad = g;
        bad.file_size += 4096;
        let mut b = vec![0u8; HEADER_LEN as usize];
        bad.encode(&mut b);
        assert!(Geometry::decode(&b).unwrap_err().contains("inconsistent"));
    }

    #[test]
    fn record_header_round_trips_and_rejects_zeroes() {
        let h = RecordHeader {
            crc: 0xdead_beef,
            flags: 1,
            key_len: 65535,
            value_len: 123_456,
            mac_len: MAC_LEN as u8,
            pos: 1 << 40,
            expires_ms: 1_700_000_000_000,
        };
        assert_eq!(RecordHeader::decode(&h.encode()), Some(h));
        assert_eq!(RecordHeader::decode(&[0u8; RECORD_HEADER]), None);
        // A MAC length other than 0 or MAC_LEN, or longer than the value, is not a record.
        for (at, v) in [(12, 16u8), (13, 1), (15, 1)] {
            let mut b = h.encode();
            b[at] = v;
            assert_eq!(RecordHeader::decode(&b), None, "byte {at} = {v}");
        }
        let short = RecordHeader {
            value_len: MAC_LEN as u32 - 1,
            ..h
        };
        assert_eq!(RecordHeader::decode(&short.encode()), None);
        assert_eq!(h.record_len() % RECORD_ALIGN, 0);
        assert_eq!(record_len(1, 1), 40);
    }

    #[test]
    fn crc_covers_header_key_and_value() {
        let h = RecordHeader {
            crc: 0,
            flags: 0,
            key_len: 1,
            value_len: 1,
            mac_len: 0,
            pos: 0,
            expires_ms: 0,
        }
        .encode();
        let base = record_crc(&h, b"k", &[b"v"]);
        assert_ne!(base, record_crc(&h, b"k", &[b"w"]));
        assert_ne!(base, record_crc(&h, b"j", &[b"v"]));
        let mut h2 = h;
        h2[24] = 1;
        assert_ne!(base, record_crc(&h2, b"k", &[b"v"]));
        let mut h3 = h;
        h3[0] = 0xff; // the crc field itself is not covered
        assert_eq!(base, record_crc(&h3, b"k", &[b"v"]));
    }

    #[test]
    fn key_hash_is_fixed_and_spreads() {
        // Pinned values: a change here breaks every existing file and needs a version bump.
        assert_eq!(
            [
                key_hash(b""),
                key_hash(b"smartcache"),
                key_hash(&[0xff; 17])
            ],
            [2757052693204669760, 567874362271168220, 2187347381271848752]
        );
        assert_ne!(key_hash(b"a"), key_hash(b"a\0"));
        assert_ne!(key_hash(b"12345678"), key_hash(b"12345679"));
        let mut buckets = [0u32; 16];
        for i in 0..16_000u32 {
            buckets[(key_hash(&i.to_le_bytes()) >> 60) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (800..1200).contains(&n)),
            "{buckets:?}"
        );
    }
}
