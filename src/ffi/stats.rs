//! Stats and health as C structs (grown behind `struct_size`) and as JSON text.

use crate::error::{Error, Result};
use crate::latency::{Op, TierId, OPS, TIERS};
use crate::stats::CacheStats;
use crate::tier::TierSnapshot;
use crate::tiered::{Health, TierHealth};
use std::ffi::c_char;
use std::fmt::Write;

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

/// The stats as a JSON object (what sz_cache_stats_json returns).
pub(crate) fn stats_json(s: &CacheStats, h: &Health) -> String {
    let mut j = String::with_capacity(1024);
    let _ = write!(
        j,
        "{{\"hits\":{},\"misses\":{},\"hit_ratio\":{},\"sets\":{},\"deletes\":{},\
         \"evictions\":{},\"expirations\":{},\"size\":{},\"capacity\":{},\
         \"memory_usage_bytes\":{},\"memory_max_bytes\":{},\"ops_per_second\":{},\
         \"compression_ratio\":{},\"allocator\":\"{}\",\"uptime_ms\":{},\"tiers\":{{",
        s.hits,
        s.misses,
        num(s.hit_ratio()),
        s.sets,
        s.deletes,
        s.evictions,
        s.expirations,
        s.memory.size,
        s.memory.capacity,
        s.memory.bytes,
        s.memory.max_bytes,
        num(s.ops_per_second),
        num(s.compression_ratio),
        s.memory.allocator,
        s.uptime.as_millis()
    );
    let _ = write!(
        j,
        "\"memory\":{{\"enabled\":true,\"up\":true,\"hits\":{},\"misses\":{},\"sets\":{},\
         \"deletes\":{},\"invalidations\":{},\"errors\":{},\"size\":{},\"bytes\":{},\
         \"index_bytes\":{},\"shards\":{},\"latency\":{}}}",
        s.memory.hits,
        s.memory.misses,
        s.memory.sets,
        s.memory.deletes,
        s.memory.invalidations,
        s.memory_errors,
        s.memory.size,
        s.memory.bytes,
        s.memory.index_bytes,
        s.memory.shards,
        latency_json(s, TierId::Memory)
    );
    for (name, tier, snap, health) in [
        ("redis", TierId::Redis, &s.redis, &h.redis),
        ("disk", TierId::Disk, &s.disk, &h.disk),
    ] {
        let t = snap.clone().unwrap_or_default();
        let file = match (name, &s.disk_file) {
            ("disk", Some(d)) => format!(
                ",\"entries\":{},\"bytes_used\":{},\"capacity\":{},\"corruptions\":{},\
                 \"skipped\":{},\"path\":{}",
                d.entries,
                d.bytes_used,
                d.capacity,
                d.corruptions,
                d.skipped,
                quote(&d.path.display().to_string())
            ),
            ("redis", _) => format!(",\"invalidation\":{}", invalidation_json(s)),
            _ => String::new(),
        };
        let _ = write!(
            j,
            ",\"{name}\":{{\"enabled\":{},\"up\":{},\"hits\":{},\"misses\":{},\"sets\":{},\
             \"deletes\":{},\"errors\":{},\"tampered\":{},\"last_error\":{},\"latency\":{}{file}}}",
            health.enabled,
            health.up,
            t.hits,
            t.misses,
            t.sets,
            t.deletes,
            t.errors,
            t.tampered,
            t.last_error.as_deref().map_or("null".into(), quote),
            latency_json(s, tier)
        );
    }
    j.push_str("}}");
    j
}

/// The redis object's `invalidation`: null with `redis_invalidation` off, else the listener's
/// figures (see `redis::invalidation::InvalidationStats`).
fn invalidation_json(s: &CacheStats) -> String {
    let Some(i) = &s.redis_invalidation else {
        return "null".into();
    };
    format!(
        "{{\"listening\":{},\"messages\":{},\"keys\":{},\"flushes\":{},\"connects\":{},\
         \"disconnects\":{},\"last_error\":{}}}",
        i.listening,
        i.messages,
        i.keys,
        i.flushes,
        i.connects,
        i.disconnects,
        i.last_error.as_deref().map_or("null".into(), quote)
    )
}

/// `{"get":{"samples":..,"p50_us":..,"p99_us":..},"set":..,"delete":..}` for one tier.
fn latency_json(s: &CacheStats, tier: TierId) -> String {
    let mut j = String::from("{");
    for (i, (op, name)) in OPS.iter().enumerate() {
        let l = s.latency[tier as usize][*op as usize];
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(
            j,
            "{sep}\"{name}\":{{\"samples\":{},\"p50_us\":{},\"p99_us\":{}}}",
            l.samples,
            num(l.p50_ns as f64 / 1e3),
            num(l.p99_ns as f64 / 1e3)
        );
    }
    j.push('}');
    j
}

/// The stats in the Prometheus text exposition format (what sz_cache_stats_prometheus returns).
pub(crate) fn stats_prometheus(s: &CacheStats, h: &Health) -> String {
    let mut p = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(
            p,
            "# HELP smartcache_{name} {help}\n# TYPE smartcache_{name} {kind}"
        );
        for (labels, v) in samples {
            let _ = writeln!(p, "smartcache_{name}{labels} {}", num(*v));
        }
    };
    let whole_cache: [(&str, &str, &str, f64); 13] = [
        (
            "hits_total",
            "counter",
            "Gets answered by any tier.",
            s.hits as f64,
        ),
        (
            "misses_total",
            "counter",
            "Gets no tier could answer.",
            s.misses as f64,
        ),
        (
            "sets_total",
            "counter",
            "Values stored by set, set_many (one per entry) and get_or_compute.",
            s.sets as f64,
        ),
        (
            "deletes_total",
            "counter",
            "Live entries removed from memory by delete.",
            s.deletes as f64,
        ),
        (
            "evictions_total",
            "counter",
            "Entries evicted from memory.",
            s.evictions as f64,
        ),
        (
            "expirations_total",
            "counter",
            "Expired entries reclaimed from memory.",
            s.expirations as f64,
        ),
        (
            "invalidations_total",
            "counter",
            "Memory entries dropped because another process on the disk_path wrote them.",
            s.memory.invalidations as f64,
        ),
        (
            "hit_ratio",
            "gauge",
            "hits / (hits + misses).",
            s.hit_ratio(),
        ),
        (
            "ops_per_second",
            "gauge",
            "Operations per second over the last few seconds.",
            s.ops_per_second,
        ),
        (
            "size",
            "gauge",
            "Live entries in memory.",
            s.memory.size as f64,
        ),
        (
            "capacity",
            "gauge",
            "memory_capacity in items.",
            s.memory.capacity as f64,
        ),
        (
            "memory_bytes",
            "gauge",
            "Bytes held by memory entries.",
            s.memory.bytes as f64,
        ),
        (
            "compression_ratio",
            "gauge",
            "Bytes before compression / bytes stored.",
            s.compression_ratio,
        ),
    ];
    for (name, kind, help, v) in whole_cache {
        metric(name, kind, help, &[(String::new(), v)]);
    }
    let tiers: [TierRow; 3] = [
        (
            "memory",
            &h.memory,
            s.memory.hits,
            s.memory.misses,
            s.memory_errors,
        ),
        (
            "redis",
            &h.redis,
            snap(&s.redis).hits,
            snap(&s.redis).misses,
            snap(&s.redis).errors,
        ),
        (
            "disk",
            &h.disk,
            snap(&s.disk).hits,
            snap(&s.disk).misses,
            snap(&s.disk).errors,
        ),
    ];
    let enabled = tiers.iter().filter(|t| t.1.enabled);
    let per_tier = |f: &dyn Fn(&TierRow) -> f64| -> Vec<(String, f64)> {
        enabled
            .clone()
            .map(|t| (format!("{{tier=\"{}\"}}", t.0), f(t)))
            .collect()
    };
    metric(
        "tier_up",
        "gauge",
        "1 when the tier is up.",
        &per_tier(&|t| t.1.up as u8 as f64),
    );
    metric(
        "tier_hits_total",
        "counter",
        "Gets answered by the tier.",
        &per_tier(&|t| t.2 as f64),
    );
    metric(
        "tier_misses_total",
        "counter",
        "Gets the tier could not answer.",
        &per_tier(&|t| t.3 as f64),
    );
    metric(
        "tier_errors_total",
        "counter",
        "Failed calls to the tier.",
        &per_tier(&|t| t.4 as f64),
    );
    let tampered: Vec<(String, f64)> = [("redis", &h.redis, &s.redis), ("disk", &h.disk, &s.disk)]
        .into_iter()
        .filter(|t| t.1.enabled)
        .map(|(name, _, t)| (format!("{{tier=\"{name}\"}}"), snap(t).tampered as f64))
        .collect();
    metric(
        "tampered_total",
        "counter",
        "Records refused because value_secret is set and their MAC was missing or wrong.",
        &tampered,
    );
    let mut quantiles = Vec::new();
    for (tier, tname) in TIERS {
        if !tiers[tier as usize].1.enabled {
            continue;
        }
        for (op, oname) in OPS {
            let l = s.latency[tier as usize][op as usize];
            if l.samples == 0 {
                continue;
            }
            for (q, ns) in [("0.5", l.p50_ns), ("0.99", l.p99_ns)] {
                quantiles.push((
                    format!("{{tier=\"{tname}\",op=\"{oname}\",quantile=\"{q}\"}}"),
                    ns as f64 / 1e9,
                ));
            }
        }
    }
    metric(
        "latency_seconds",
        "gauge",
        "Operation latency percentiles (memory: sampled 1 in 64).",
        &quantiles,
    );
    if h.disk.enabled {
        metric(
            "disk_fill_ratio",
            "gauge",
            "Fraction of the disk file's data space holding live records.",
            &[(String::new(), h.disk_fill)],
        );
    }
    p
}

/// A tier's name, health, hits, misses and errors, for the per-tier metrics.
type TierRow<'a> = (&'a str, &'a TierHealth, u64, u64, u64);

fn snap(t: &Option<TierSnapshot>) -> TierSnapshot {
    t.clone().unwrap_or_default()
}

/// A finite JSON number (NaN and infinities are not JSON).
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "0".into()
    }
}

/// A JSON string literal.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_carries_the_disk_file_figures() {
        let s = CacheStats {
            disk: Some(TierSnapshot {
                hits: 4,
                ..Default::default()
            }),
            disk_file: Some(crate::disk::DiskStats {
                entries: 7,
                bytes_used: 4096,
                capacity: 1 << 20,
                corruptions: 2,
                skipped: 3,
                path: "/var/cache/\"x\"/smartcache.l3".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let h = Health::default();
        let j = stats_json(&s, &h);
        let disk = &j[j.find("\"disk\":").expect("disk object")..];
        for want in [
            "\"hits\":4",
            "\"entries\":7",
            "\"bytes_used\":4096",
            "\"capacity\":1048576",
            "\"corruptions\":2",
            "\"skipped\":3",
            "\"path\":\"/var/cache/\\\"x\\\"/smartcache.l3\"}",
        ] {
            assert!(disk.contains(want), "{want} missing from {disk}");
        }
        assert!(j.ends_with("}}}"), "{j}");
        // Without a disk tier the object keeps its plain shape.
        let plain = stats_json(&CacheStats::default(), &h);
        assert!(!plain.contains("corruptions"));
    }

    #[test]
    fn quote_escapes() {
        assert_eq!(quote("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }

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
