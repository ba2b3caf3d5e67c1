//! The stats as a JSON document (what `Cache::stats_json` and sz_cache_stats_json return),
//! serialised by serde_json from views of `CacheStats` and `Health` shaped as the document.
//!
//! The views borrow the stats and rename nothing that bindings read: each field name here is
//! a key of the documented document (docs/c-api.md), so a rename is a visible change.

use super::CacheStats;
use crate::disk::DiskStats;
use crate::latency::{TierId, OPS};
use crate::redis::invalidation::InvalidationStats;
use crate::tier::{TierHealth, TierSnapshot};
use crate::tiered::Health;
use serde::Serialize;

/// The whole document.
#[derive(Serialize)]
struct Document<'a> {
    hits: u64,
    misses: u64,
    #[serde(serialize_with = "number")]
    hit_ratio: f64,
    sets: u64,
    deletes: u64,
    evictions: u64,
    expirations: u64,
    size: u64,
    capacity: u64,
    memory_usage_bytes: u64,
    memory_max_bytes: u64,
    #[serde(serialize_with = "number")]
    ops_per_second: f64,
    #[serde(serialize_with = "number")]
    compression_ratio: f64,
    allocator: &'a str,
    uptime_ms: u64,
    tiers: Tiers<'a>,
}

#[derive(Serialize)]
struct Tiers<'a> {
    memory: MemoryTier,
    redis: LowerTier<'a>,
    disk: LowerTier<'a>,
}

/// The memory tier's object. It is always on and always up.
#[derive(Serialize)]
struct MemoryTier {
    enabled: bool,
    up: bool,
    hits: u64,
    misses: u64,
    sets: u64,
    deletes: u64,
    invalidations: u64,
    errors: u64,
    size: u64,
    bytes: u64,
    index_bytes: u64,
    shards: u64,
    latency: Latency,
}

/// Redis's or the disk's object: health, the tier's own counters, latency, and for the disk
/// the file's figures.
#[derive(Serialize)]
struct LowerTier<'a> {
    enabled: bool,
    up: bool,
    #[serde(flatten)]
    counters: TierSnapshot,
    latency: Latency,
    #[serde(flatten)]
    file: Option<DiskFile<'a>>,
    /// Redis's `invalidation`: null with `redis_invalidation` off, else the listener's
    /// figures. The disk's object has no such key (the outer None).
    #[serde(skip_serializing_if = "Option::is_none")]
    invalidation: Option<Option<&'a InvalidationStats>>,
}

/// The disk file's figures, shared by every process using it.
#[derive(Serialize)]
struct DiskFile<'a> {
    entries: u64,
    bytes_used: u64,
    capacity: u64,
    corruptions: u64,
    skipped: u64,
    /// Shown lossily when the path is not UTF-8: the document is text.
    path: std::borrow::Cow<'a, str>,
}

/// `{"get":{..},"set":{..},"delete":{..}}` of one tier.
#[derive(Serialize)]
struct Latency {
    get: Percentiles,
    set: Percentiles,
    delete: Percentiles,
}

/// Percentiles in microseconds.
#[derive(Serialize)]
struct Percentiles {
    samples: u64,
    #[serde(serialize_with = "number")]
    p50_us: f64,
    #[serde(serialize_with = "number")]
    p99_us: f64,
}

/// The stats and health as the JSON document.
pub fn render(s: &CacheStats, h: &Health) -> String {
    let document = Document {
        hits: s.hits,
        misses: s.misses,
        hit_ratio: finite(s.hit_ratio()),
        sets: s.sets,
        deletes: s.deletes,
        evictions: s.evictions,
        expirations: s.expirations,
        size: s.memory.size,
        capacity: s.memory.capacity,
        memory_usage_bytes: s.memory.bytes,
        memory_max_bytes: s.memory.max_bytes,
        ops_per_second: finite(s.ops_per_second),
        compression_ratio: finite(s.compression_ratio),
        allocator: s.memory.allocator,
        uptime_ms: u64::try_from(s.uptime.as_millis()).unwrap_or(u64::MAX),
        tiers: Tiers {
            memory: MemoryTier {
                enabled: true,
                up: true,
                hits: s.memory.hits,
                misses: s.memory.misses,
                sets: s.memory.sets,
                deletes: s.memory.deletes,
                invalidations: s.memory.invalidations,
                errors: s.memory_errors,
                size: s.memory.size,
                bytes: s.memory.bytes,
                index_bytes: s.memory.index_bytes,
                shards: s.memory.shards,
                latency: latency(s, TierId::Memory),
            },
            redis: LowerTier {
                invalidation: Some(s.redis_invalidation.as_ref()),
                ..lower(s, TierId::Redis, &s.redis, &h.redis, None)
            },
            disk: lower(s, TierId::Disk, &s.disk, &h.disk, s.disk_file.as_ref()),
        },
    };
    // Serialising plain structs of numbers, bools and strings into a String cannot fail.
    serde_json::to_string(&document).expect("the stats document serialises")
}

fn lower<'a>(
    s: &CacheStats,
    tier: TierId,
    counters: &Option<TierSnapshot>,
    health: &TierHealth,
    file: Option<&'a DiskStats>,
) -> LowerTier<'a> {
    LowerTier {
        enabled: health.enabled,
        up: health.up,
        counters: counters.clone().unwrap_or_default(),
        latency: latency(s, tier),
        file: file.map(|d| DiskFile {
            entries: d.entries,
            bytes_used: d.bytes_used,
            capacity: d.capacity,
            corruptions: d.corruptions,
            skipped: d.skipped,
            path: d.path.to_string_lossy(),
        }),
        invalidation: None,
    }
}

fn latency(s: &CacheStats, tier: TierId) -> Latency {
    let [get, set, delete] = OPS.map(|(op, _)| {
        let l = s.latency[tier as usize][op as usize];
        Percentiles {
            samples: l.samples,
            p50_us: l.p50_ns as f64 / 1e3,
            p99_us: l.p99_ns as f64 / 1e3,
        }
    });
    Latency { get, set, delete }
}

/// NaN and the infinities are not JSON numbers (serde_json would write null): 0 instead.
fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// A figure as the shortest JSON number that reads back as the same value: a whole number
/// without a fraction (`100`, not `100.0`), as the document has always written them, so a
/// reader that decodes a whole percentile into an integer keeps working.
fn number<S: serde::Serializer>(x: &f64, out: S) -> Result<S::Ok, S::Error> {
    const EXACT: f64 = (1u64 << 53) as f64;
    if x.fract() == 0.0 && x.abs() < EXACT {
        out.serialize_i64(*x as i64)
    } else {
        out.serialize_f64(*x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &CacheStats) -> serde_json::Value {
        serde_json::from_str(&render(s, &Health::default())).expect("valid JSON")
    }

    #[test]
    fn the_disk_object_carries_the_file_figures_and_the_others_do_not() {
        let s = CacheStats {
            disk: Some(TierSnapshot {
                hits: 4,
                ..Default::default()
            }),
            disk_file: Some(DiskStats {
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
        let doc = parsed(&s);
        let disk = &doc["tiers"]["disk"];
        assert_eq!(disk["hits"], 4);
        assert_eq!(disk["entries"], 7);
        assert_eq!(disk["bytes_used"], 4096);
        assert_eq!(disk["capacity"], 1 << 20);
        assert_eq!(disk["corruptions"], 2);
        assert_eq!(disk["skipped"], 3);
        assert_eq!(disk["path"], "/var/cache/\"x\"/smartcache.l3");
        assert!(doc["tiers"]["redis"].get("corruptions").is_none());
        assert!(parsed(&CacheStats::default())["tiers"]["disk"]
            .get("corruptions")
            .is_none());
    }

    #[test]
    fn whole_figures_are_written_without_a_fraction_and_non_finite_ones_as_zero() {
        let s = CacheStats {
            hits: 1,
            compression_ratio: f64::NAN,
            ops_per_second: f64::INFINITY,
            ..Default::default()
        };
        let text = render(&s, &Health::default());
        assert!(text.contains("\"hit_ratio\":1,"), "{text}");
        assert!(text.contains("\"compression_ratio\":0,"), "{text}");
        assert!(text.contains("\"ops_per_second\":0,"), "{text}");
        assert!(text.contains("\"p50_us\":0,"), "{text}");
    }

    #[test]
    fn an_error_message_with_quotes_and_control_characters_stays_one_string() {
        let s = CacheStats {
            redis: Some(TierSnapshot {
                last_error: Some("bad \"reply\"\n\u{1}".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            parsed(&s)["tiers"]["redis"]["last_error"],
            "bad \"reply\"\n\u{1}"
        );
    }
}
