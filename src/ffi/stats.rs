//! Stats and health as C structs, grown behind `struct_size`. The JSON and Prometheus texts
//! are rendered by `crate::stats` (`Cache::stats_json`, `Cache::stats_prometheus`).

use crate::error::{Error, Result};
use crate::latency::{Op, TierId};
use crate::stats::CacheStats;
use crate::tier::TierSnapshot;
use crate::tiered::{Health, TierHealth};
use std::ffi::c_char;

/// Counters of a cache. The caller sets `struct_size = sizeof(sz_stats)` before
/// sz_cache_stats; the library fills the fields that fit in that size (so a program built
/// against an older, shorter sz_stats keeps working) and sets struct_size to what it wrote.
/// New fields are only ever appended.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sz_stats {
    pub struct_size: usize,
    /// Gets answered by any tier / by none.
    pub hits: u64,
    pub misses: u64,
    /// Values stored by sz_cache_set, sz_cache_set_many (one per entry) and
    /// sz_cache_get_or_compute (promotions from a lower tier are not counted).
    pub sets: u64,
    /// Live entries removed from memory by sz_cache_delete.
    pub deletes: u64,
    /// Entries dropped from memory to stay within memory_capacity / memory_max_bytes.
    pub evictions: u64,
    /// Entries reclaimed from memory because their TTL passed.
    pub expirations: u64,
    /// Live entries in memory, and memory_capacity.
    pub size: u64,
    pub capacity: u64,
    /// Bytes held by memory entries (allocator sizes), and memory_max_bytes (0 = unbounded).
    pub memory_bytes: u64,
    pub memory_max_bytes: u64,
    /// hits / (hits + misses), 0 when there were no gets.
    pub hit_ratio: f64,
    /// Operations per second over the last few seconds.
    pub ops_per_second: f64,
    /// Bytes before compression / bytes stored (1.0 = nothing compressed).
    pub compression_ratio: f64,
    /// 1 when memory entries come from the dedicated jemalloc arena, 0 for the system allocator.
    pub jemalloc: u32,
    pub _reserved: u32,
    pub memory_hits: u64,
    pub memory_misses: u64,
    pub redis_hits: u64,
    pub redis_misses: u64,
    pub redis_errors: u64,
    pub disk_hits: u64,
    pub disk_misses: u64,
    pub disk_errors: u64,
    pub uptime_ms: u64,
    /* Added in 0.1 with compression and latency stats; present when struct_size covers them. */
    /// Compressed values in memory that would not decode (served as misses).
    pub memory_errors: u64,
    /// Latency percentiles in nanoseconds (0 until the tier saw such an operation; memory
    /// operations are sampled 1 in 64).
    pub memory_get_p50_ns: u64,
    pub memory_get_p99_ns: u64,
    pub memory_set_p50_ns: u64,
    pub memory_set_p99_ns: u64,
    pub redis_get_p50_ns: u64,
    pub redis_get_p99_ns: u64,
    pub redis_set_p50_ns: u64,
    pub redis_set_p99_ns: u64,
    pub disk_get_p50_ns: u64,
    pub disk_get_p99_ns: u64,
    pub disk_set_p50_ns: u64,
    pub disk_set_p99_ns: u64,
    /* Added with value_secret; present when struct_size covers them. */
    /// Records refused as a miss because value_secret is set and their MAC was missing or did
    /// not verify (forged, damaged, or signed with another secret), in Redis / the disk file.
    pub redis_tampered: u64,
    pub disk_tampered: u64,
}

/// Health of one tier.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sz_tier_health {
    /// 1 when the tier is configured on.
    pub enabled: i32,
    /// 1 when its last use succeeded (always 1 for memory).
    pub up: i32,
    pub errors: u64,
    /// NUL-terminated; "" when there was no error.
    pub last_error: [c_char; 256],
}

/// Health of a cache; struct_size as for sz_stats.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sz_health {
    pub struct_size: usize,
    /// 1 when every enabled tier is up.
    pub healthy: i32,
    pub _reserved: i32,
    pub memory: sz_tier_health,
    pub redis: sz_tier_health,
    pub disk: sz_tier_health,
    /// Fraction of the disk file's data space holding live records (0 when the tier is off).
    /// The data space is the file less its header and index, sized when the file was created.
    pub disk_fill: f64,
    /// The disk tier's file, NUL-terminated ("" when off).
    pub disk_path: [c_char; 1024],
}

impl From<&CacheStats> for sz_stats {
    fn from(s: &CacheStats) -> sz_stats {
        let tier = |t: &Option<TierSnapshot>| {
            t.as_ref()
                .map_or((0, 0, 0), |t| (t.hits, t.misses, t.errors))
        };
        let (redis_hits, redis_misses, redis_errors) = tier(&s.redis);
        let (disk_hits, disk_misses, disk_errors) = tier(&s.disk);
        let lat = |t: TierId, o: Op| s.latency[t as usize][o as usize];
        sz_stats {
            struct_size: std::mem::size_of::<sz_stats>(),
            hits: s.hits,
            misses: s.misses,
            sets: s.sets,
            deletes: s.deletes,
            evictions: s.evictions,
            expirations: s.expirations,
            size: s.memory.size,
            capacity: s.memory.capacity,
            memory_bytes: s.memory.bytes,
            memory_max_bytes: s.memory.max_bytes,
            hit_ratio: s.hit_ratio(),
            ops_per_second: s.ops_per_second,
            compression_ratio: s.compression_ratio,
            jemalloc: u32::from(s.memory.allocator == "jemalloc"),
            _reserved: 0,
            memory_hits: s.memory.hits,
            memory_misses: s.memory.misses,
            redis_hits,
            redis_misses,
            redis_errors,
            disk_hits,
            disk_misses,
            disk_errors,
            uptime_ms: s.uptime.as_millis() as u64,
            memory_errors: s.memory_errors,
            memory_get_p50_ns: lat(TierId::Memory, Op::Get).p50_ns,
            memory_get_p99_ns: lat(TierId::Memory, Op::Get).p99_ns,
            memory_set_p50_ns: lat(TierId::Memory, Op::Set).p50_ns,
            memory_set_p99_ns: lat(TierId::Memory, Op::Set).p99_ns,
            redis_get_p50_ns: lat(TierId::Redis, Op::Get).p50_ns,
            redis_get_p99_ns: lat(TierId::Redis, Op::Get).p99_ns,
            redis_set_p50_ns: lat(TierId::Redis, Op::Set).p50_ns,
            redis_set_p99_ns: lat(TierId::Redis, Op::Set).p99_ns,
            disk_get_p50_ns: lat(TierId::Disk, Op::Get).p50_ns,
            disk_get_p99_ns: lat(TierId::Disk, Op::Get).p99_ns,
            disk_set_p50_ns: lat(TierId::Disk, Op::Set).p50_ns,
            disk_set_p99_ns: lat(TierId::Disk, Op::Set).p99_ns,
            redis_tampered: snap(&s.redis).tampered,
            disk_tampered: snap(&s.disk).tampered,
        }
    }
}

fn fill_text<const N: usize>(dst: &mut [c_char; N], s: &str) {
    // Truncate on a char boundary so the C string stays valid UTF-8.
    let mut end = s.len().min(N - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    for (d, b) in dst.iter_mut().zip(s[..end].bytes()) {
        *d = b as c_char;
    }
    dst[end] = 0;
}

impl From<&TierHealth> for sz_tier_health {
    fn from(t: &TierHealth) -> sz_tier_health {
        let mut out = sz_tier_health {
            enabled: t.enabled as i32,
            up: t.up as i32,
            errors: t.errors,
            last_error: [0; 256],
        };
        fill_text(&mut out.last_error, t.last_error.as_deref().unwrap_or(""));
        out
    }
}

impl From<&Health> for sz_health {
    fn from(h: &Health) -> sz_health {
        let mut out = sz_health {
            struct_size: std::mem::size_of::<sz_health>(),
            healthy: h.healthy as i32,
            _reserved: 0,
            memory: (&h.memory).into(),
            redis: (&h.redis).into(),
            disk: (&h.disk).into(),
            disk_fill: h.disk_fill,
            disk_path: [0; 1024],
        };
        fill_text(&mut out.disk_path, h.disk_path.as_deref().unwrap_or(""));
        out
    }
}

/// Copies `full` into `*dst` up to the caller's struct_size (so an older, shorter struct keeps
/// working) and sets struct_size to what was written. Fails on NULL, or on a struct_size that
/// cannot even hold struct_size itself; `name` is the C type, for the message.
///
/// # Safety
/// `dst` is NULL or points to at least `(*dst).struct_size` writable bytes.
pub(crate) unsafe fn write_sized<T: Copy>(dst: *mut T, full: &T, name: &str) -> Result<()> {
    if dst.is_null() {
        return Err(Error::invalid("out is NULL"));
    }
    // SAFETY: the first field of every sized struct is a usize struct_size the caller set.
    let caller_size = unsafe { *(dst as *const usize) };
    let n = caller_size.min(std::mem::size_of::<T>());
    if n < std::mem::size_of::<usize>() {
        return Err(Error::invalid(format!(
            "out->struct_size is too small; set it to sizeof({name})"
        )));
    }
    // SAFETY: dst has caller_size >= n writable bytes; full is a T of size_of::<T>() >= n.
    unsafe {
        std::ptr::copy_nonoverlapping(full as *const T as *const u8, dst as *mut u8, n);
        *(dst as *mut usize) = n;
    }
    Ok(())
}

fn snap(t: &Option<TierSnapshot>) -> TierSnapshot {
    t.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_truncated_and_terminated() {
        let mut buf = [1 as c_char; 4];
        fill_text(&mut buf, "abcdef");
        assert_eq!(buf, [b'a' as c_char, b'b' as c_char, b'c' as c_char, 0]);
    }

    #[test]
    fn sized_write_respects_a_shorter_caller_struct() {
        let full = sz_stats {
            hits: 5,
            misses: 6,
            ..Default::default()
        };
        // An old caller whose struct ends after `hits`.
        let mut old = [0u64; 3];
        old[0] = 16;
        old[2] = 0xdead;
        // SAFETY: old has 24 writable bytes and claims 16.
        assert!(
            unsafe { write_sized(old.as_mut_ptr() as *mut sz_stats, &full, "sz_stats") }.is_ok()
        );
        assert_eq!(old, [16, 5, 0xdead]);
    }
}
