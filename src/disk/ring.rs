//! The data region as a FIFO ring of segments, in log positions.
//!
//! A record's position is an absolute, ever-growing byte offset into an endless log; the ring
//! maps it onto the file by `pos % ring_bytes`. The segment sequence number `pos / seg_size` tells
//! how old a record is: only the segment holding the log head and the `seg_count - 1` before it
//! are live. Entering a new segment therefore reclaims the oldest one with no data movement and
//! no index scan: every index slot pointing into it stops being live at that instant, because the
//! liveness test compares against the head that every reader loads.

/// Ring arithmetic for one file's geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ring {
    seg_size: u64,
    seg_count: u64,
}

/// Where the writer puts a record of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The record's log position.
    pub pos: u64,
    /// The head once the record is written.
    pub end: u64,
}

/// A log position resolved once, so the lock-free read path checks liveness with compares and
/// a multiply instead of the several 64-bit divisions `is_live` costs (a visible share of a hit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub pos: u64,
    /// Offset within its segment.
    off: u64,
    /// The first head value at which the record's segment is reused.
    dies_at: u64,
    /// Byte offset within the data region.
    pub physical: u64,
}

impl Ring {
    pub fn locate(&self, pos: u64) -> Loc {
        let seq = pos / self.seg_size;
        let off = pos - seq * self.seg_size;
        Loc {
            pos,
            off,
            dies_at: (seq + self.seg_count).saturating_mul(self.seg_size),
            physical: (seq % self.seg_count) * self.seg_size + off,
        }
    }

    /// `is_live` for a located position.
    pub fn live_at(&self, loc: &Loc, len: u64, head: u64) -> bool {
        loc.pos.checked_add(len).is_some_and(|end| end <= head)
            && head < loc.dies_at
            && loc.off + len <= self.seg_size
    }

    /// After a record was seen live: is its segment still unreclaimed at `head`?
    pub fn not_reclaimed(&self, loc: &Loc, head: u64) -> bool {
        head < loc.dies_at
    }

    pub fn new(seg_size: u64, seg_count: u64) -> Ring {
        debug_assert!(seg_size > 0 && seg_count >= 2);
        Ring {
            seg_size,
            seg_count,
        }
    }

    pub fn seg_size(&self) -> u64 {
        self.seg_size
    }

    pub fn seq(&self, pos: u64) -> u64 {
        pos / self.seg_size
    }

    /// Index of the physical segment a log position falls in.
    pub fn slot_of_seq(&self, seq: u64) -> usize {
        (seq % self.seg_count) as usize
    }

    /// Byte offset within the data region.
    pub fn physical(&self, pos: u64) -> u64 {
        pos % (self.seg_size * self.seg_count)
    }

    /// A record at `pos` of `len` bytes is readable while the head is at `head`: written before
    /// the head, and its segment not yet reused by the head's lap.
    pub fn is_live(&self, pos: u64, len: u64, head: u64) -> bool {
        match pos.checked_add(len) {
            Some(end) => {
                end <= head
                    && self.seq(pos) + self.seg_count > self.seq(head)
                    && self.fits_in_segment(pos, len)
            }
            None => false,
        }
    }

    /// Records never straddle a segment boundary, so a reclaimed segment never cuts one in two.
    pub fn fits_in_segment(&self, pos: u64, len: u64) -> bool {
        pos % self.seg_size + len <= self.seg_size
    }

    /// Places a record at the head, or at the start of the next segment when the rest of the
    /// current one is too short. None when the record is bigger than a segment, or the log
    /// position would overflow (after 16 EiB written; treated as a full disk).
    pub fn place(&self, head: u64, len: u64) -> Option<Placement> {
        if len > self.seg_size || len == 0 {
            return None;
        }
        let pos = if self.fits_in_segment(head, len) {
            head
        } else {
            (self.seq(head) + 1).checked_mul(self.seg_size)?
        };
        Some(Placement {
            pos,
            end: pos.checked_add(len)?,
        })
    }

    /// The physical segments whose previous contents die when the head moves from `from` to
    /// `to`: one per segment sequence entered, at most every segment once.
    pub fn entered(&self, from: u64, to: u64) -> impl Iterator<Item = usize> + '_ {
        let (a, b) = (self.seq(from), self.seq(to));
        let n = b.saturating_sub(a).min(self.seg_count);
        (b + 1 - n..=b).map(|s| self.slot_of_seq(s))
    }

    /// Bytes from the start of the oldest live segment up to the head.
    pub fn bytes_in_use(&self, head: u64) -> u64 {
        let oldest = self.seq(head).saturating_sub(self.seg_count - 1);
        head - oldest * self.seg_size
    }

    pub fn capacity(&self) -> u64 {
        self.seg_size * self.seg_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_within_a_segment_or_skips_to_the_next() {
        let r = Ring::new(100, 4);
        assert_eq!(r.place(0, 40), Some(Placement { pos: 0, end: 40 }));
        assert_eq!(r.place(40, 60), Some(Placement { pos: 40, end: 100 }));
        assert_eq!(r.place(70, 40), Some(Placement { pos: 100, end: 140 }));
        assert_eq!(r.place(0, 101), None);
        assert_eq!(r.place(u64::MAX - 10, 50), None);
    }

    #[test]
    fn liveness_follows_the_head_lap() {
        let r = Ring::new(100, 4);
        // Written, head in the same segment.
        assert!(r.is_live(0, 40, 40));
        // Not yet written (beyond head).
        assert!(!r.is_live(40, 40, 60));
        // Head in segment 3: segments 0..=3 live.
        assert!(r.is_live(0, 40, 399));
        // Head enters segment 4, which reuses segment 0's space: records of seq 0 die.
        assert!(!r.is_live(0, 40, 400));
        assert!(r.is_live(100, 40, 400));
        // A record claiming to straddle a boundary is never live (corrupt length).
        assert!(!r.is_live(90, 20, 399));
        assert!(!r.is_live(u64::MAX, 2, u64::MAX));
    }

    #[test]
    fn located_checks_agree_with_the_plain_ones() {
        let r = Ring::new(100, 4);
        for pos in (0..1200).step_by(7).chain([u64::MAX - 5, u64::MAX / 2]) {
            let loc = r.locate(pos);
            assert_eq!(loc.physical, r.physical(pos), "pos {pos}");
            for len in [1, 8, 40, 99, 100, 101] {
                for head in (0..1400).step_by(13).chain([u64::MAX]) {
                    let (fast, plain) = (r.live_at(&loc, len, head), r.is_live(pos, len, head));
                    if pos < 1 << 62 {
                        assert_eq!(fast, plain, "pos {pos} len {len} head {head}");
                    } else {
                        // Where (seq + count) * seg_size overflows, the located check
                        // conservatively says "reclaimed" (a miss); heads never get there.
                        assert!(!fast || plain, "pos {pos} len {len} head {head}");
                    }
                }
            }
        }
    }

    #[test]
    fn physical_wraps_around_the_ring() {
        let r = Ring::new(100, 4);
        assert_eq!(r.physical(0), 0);
        assert_eq!(r.physical(399), 399);
        assert_eq!(r.physical(400), 0);
        assert_eq!(r.physical(1234), 34);
    }

    #[test]
    fn entered_lists_each_new_segment_once() {
        let r = Ring::new(100, 4);
        assert_eq!(r.entered(10, 90).count(), 0);
        assert_eq!(r.entered(90, 140).collect::<Vec<_>>(), vec![1]);
        assert_eq!(r.entered(90, 300).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(r.entered(390, 400).collect::<Vec<_>>(), vec![0]);
        // A jump over more than a lap reclaims every segment exactly once.
        let mut all: Vec<_> = r.entered(0, 10_000).collect();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3]);
    }

    #[test]
    fn bytes_in_use_grows_then_stays_within_capacity() {
        let r = Ring::new(100, 4);
        assert_eq!(r.bytes_in_use(0), 0);
        assert_eq!(r.bytes_in_use(250), 250);
        assert_eq!(r.bytes_in_use(400), 300);
        assert_eq!(r.bytes_in_use(450), 350);
        for head in (0..5000).step_by(7) {
            assert!(r.bytes_in_use(head) <= r.capacity());
        }
    }
}
