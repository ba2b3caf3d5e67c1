//! The stats in the Prometheus text exposition format, version 0.0.4 (what
//! `Cache::stats_prometheus` and sz_cache_stats_prometheus return), rendered from one table:
//! [`METRICS`] names every metric once with its help, type, series and where its value is
//! read, and [`render`] writes whatever the table says. Adding a metric is adding a row.

use super::CacheStats;
use crate::latency::{Op, TierId, OPS, TIERS};
use crate::tier::{TierHealth, TierSnapshot};
use crate::tiered::Health;
use std::fmt::Write;

/// Every metric name starts with this.
pub const PREFIX: &str = "smartcache_";

/// A metric's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Which samples a metric has, and so which labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// One sample without labels.
    Cache,
    /// One sample without labels, when the disk tier is on.
    DiskOnly,
    /// One sample per enabled tier of these, labelled `tier`.
    Tiers(&'static [TierId]),
    /// Per enabled tier and operation kind that has timed samples, the 0.5 and 0.99 quantiles,
    /// labelled `tier`, `op` and `quantile`.
    Latency,
}

/// The sample a value is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Cache,
    Tier(TierId),
    Quantile(TierId, Op, Quantile),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantile {
    P50,
    P99,
}

impl Quantile {
    const ALL: [Quantile; 2] = [Quantile::P50, Quantile::P99];

    fn label(self) -> &'static str {
        match self {
            Quantile::P50 => "0.5",
            Quantile::P99 => "0.99",
        }
    }
}

/// One row of the table.
pub struct Metric {
    /// Without [`PREFIX`].
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub series: Series,
    /// The value of one sample; None leaves the sample out.
    value: fn(&Figures, At) -> Option<f64>,
}

/// What the values are read from.
struct Figures<'a> {
    stats: &'a CacheStats,
    health: &'a Health,
}

impl Figures<'_> {
    fn health(&self, tier: TierId) -> &TierHealth {
        match tier {
            TierId::Memory => &self.health.memory,
            TierId::Redis => &self.health.redis,
            TierId::Disk => &self.health.disk,
        }
    }

    /// A tier's counters; the memory tier's come from the memory stats and its decode errors.
    fn counters(&self, tier: TierId) -> TierSnapshot {
        let s = self.stats;
        let lower = |t: &Option<TierSnapshot>| t.clone().unwrap_or_default();
        match tier {
            TierId::Memory => TierSnapshot {
                hits: s.memory.hits,
                misses: s.memory.misses,
                sets: s.memory.sets,
                deletes: s.memory.deletes,
                errors: s.memory_errors,
                ..Default::default()
            },
            TierId::Redis => lower(&s.redis),
            TierId::Disk => lower(&s.disk),
        }
    }
}

const ALL_TIERS: &[TierId] = &[TierId::Memory, TierId::Redis, TierId::Disk];
const LOWER_TIERS: &[TierId] = &[TierId::Redis, TierId::Disk];

/// A whole-cache metric read from the stats.
macro_rules! cache {
    ($name:literal, $kind:ident, $help:literal, |$s:ident| $value:expr) => {
        Metric {
            name: $name,
            help: $help,
            kind: Kind::$kind,
            series: Series::Cache,
            value: |f, _| {
                let $s = f.stats;
                Some($value as f64)
            },
        }
    };
}

/// A per-tier counter read from the tier's counters.
macro_rules! per_tier {
    ($name:literal, $tiers:expr, $help:literal, $field:ident) => {
        Metric {
            name: $name,
            help: $help,
            kind: Kind::Counter,
            series: Series::Tiers($tiers),
            value: |f, at| match at {
                At::Tier(t) => Some(f.counters(t).$field as f64),
                _ => None,
            },
        }
    };
}

/// Every metric, in the order written.
pub const METRICS: &[Metric] = &[
    cache!("hits_total", Counter, "Gets answered by any tier.", |s| s
        .hits),
    cache!("misses_total", Counter, "Gets no tier could answer.", |s| s
        .misses),
    cache!(
        "sets_total",
        Counter,
        "Values stored by set, set_many (one per entry) and get_or_compute.",
        |s| s.sets
    ),
    cache!(
        "deletes_total",
        Counter,
        "Live entries removed from memory by delete.",
        |s| s.deletes
    ),
    cache!(
        "evictions_total",
        Counter,
        "Entries evicted from memory.",
        |s| s.evictions
    ),
    cache!(
        "expirations_total",
        Counter,
        "Expired entries reclaimed from memory.",
        |s| s.expirations
    ),
    cache!(
        "invalidations_total",
        Counter,
        "Memory entries dropped because another process on the disk_path wrote them.",
        |s| s.memory.invalidations
    ),
    cache!("hit_ratio", Gauge, "hits / (hits + misses).", |s| s
        .hit_ratio()),
    cache!(
        "ops_per_second",
        Gauge,
        "Operations per second over the last few seconds.",
        |s| s.ops_per_second
    ),
    cache!("size", Gauge, "Live entries in memory.", |s| s.memory.size),
    cache!("capacity", Gauge, "memory_capacity in items.", |s| s
        .memory
        .capacity),
    cache!(
        "memory_bytes",
        Gauge,
        "Bytes held by memory entries.",
        |s| s.memory.bytes
    ),
    cache!(
        "compression_ratio",
        Gauge,
        "Bytes before compression / bytes stored.",
        |s| s.compression_ratio
    ),
    Metric {
        name: "tier_up",
        help: "1 when the tier is up.",
        kind: Kind::Gauge,
        series: Series::Tiers(ALL_TIERS),
        value: |f, at| match at {
            At::Tier(t) => Some(f64::from(u8::from(f.health(t).up))),
            _ => None,
        },
    },
    per_tier!(
        "tier_hits_total",
        ALL_TIERS,
        "Gets answered by the tier.",
        hits
    ),
    per_tier!(
        "tier_misses_total",
        ALL_TIERS,
        "Gets the tier could not answer.",
        misses
    ),
    per_tier!(
        "tier_errors_total",
        ALL_TIERS,
        "Failed calls to the tier.",
        errors
    ),
    per_tier!(
        "tampered_total",
        LOWER_TIERS,
        "Records refused because value_secret is set and their MAC was missing or wrong.",
        tampered
    ),
    Metric {
        name: "latency_seconds",
        help: "Operation latency percentiles (memory: sampled 1 in 64).",
        kind: Kind::Gauge,
        series: Series::Latency,
        value: |f, at| match at {
            At::Quantile(t, op, q) => {
                let l = f.stats.latency[t as usize][op as usize];
                let ns = match q {
                    Quantile::P50 => l.p50_ns,
                    Quantile::P99 => l.p99_ns,
                };
                (l.samples > 0).then_some(ns as f64 / 1e9)
            }
            _ => None,
        },
    },
    Metric {
        name: "disk_fill_ratio",
        help: "Fraction of the disk file's data space holding live records.",
        kind: Kind::Gauge,
        series: Series::DiskOnly,
        value: |f, _| Some(f.health.disk_fill),
    },
];

/// The stats and health as Prometheus text: for each metric of [`METRICS`] its HELP and TYPE
/// lines and its samples.
pub fn render(stats: &CacheStats, health: &Health) -> String {
    let f = Figures { stats, health };
    let mut out = String::with_capacity(4096);
    for m in METRICS {
        if m.series == Series::DiskOnly && !health.disk.enabled {
            continue;
        }
        let _ = writeln!(out, "# HELP {PREFIX}{} {}", m.name, m.help);
        let _ = writeln!(out, "# TYPE {PREFIX}{} {}", m.name, m.kind.as_str());
        for (labels, at) in samples(&f, m.series) {
            if let Some(v) = (m.value)(&f, at) {
                let _ = writeln!(out, "{PREFIX}{}{labels} {}", m.name, number(v));
            }
        }
    }
    out
}

/// The label set (`{..}` or empty) and value address of each sample a series may have.
fn samples(f: &Figures, series: Series) -> Vec<(String, At)> {
    let enabled = |tiers: &'static [TierId]| {
        TIERS
            .into_iter()
            .filter(move |(t, _)| tiers.contains(t) && f.health(*t).enabled)
    };
    match series {
        Series::Cache | Series::DiskOnly => vec![(String::new(), At::Cache)],
        Series::Tiers(tiers) => enabled(tiers)
            .map(|(t, name)| (format!("{{tier=\"{name}\"}}"), At::Tier(t)))
            .collect(),
        Series::Latency => enabled(ALL_TIERS)
            .flat_map(|(t, tier)| {
                OPS.into_iter().flat_map(move |(op, op_name)| {
                    Quantile::ALL.into_iter().map(move |q| {
                        (
                            format!(
                                "{{tier=\"{tier}\",op=\"{op_name}\",quantile=\"{}\"}}",
                                q.label()
                            ),
                            At::Quantile(t, op, q),
                        )
                    })
                })
            })
            .collect(),
    }
}

/// A sample value: the shortest text that reads back as the same f64 (integers without a
/// fraction). NaN and the infinities, which no figure here should be, are written as 0.
fn number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "0".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::LatencySnapshot;

    fn health(redis: bool, disk: bool) -> Health {
        let on = TierHealth {
            enabled: true,
            up: true,
            ..Default::default()
        };
        Health {
            memory: on.clone(),
            redis: TierHealth {
                enabled: redis,
                ..on.clone()
            },
            disk: TierHealth {
                enabled: disk,
                ..on
            },
            disk_fill: 0.25,
            ..Default::default()
        }
    }

    #[test]
    fn every_metric_is_named_once_in_the_table() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
    }

    #[test]
    fn per_tier_samples_are_written_for_enabled_tiers_only() {
        let text = render(&CacheStats::default(), &health(true, false));
        assert!(text.contains("smartcache_tier_up{tier=\"memory\"} 1\n"));
        assert!(text.contains("smartcache_tampered_total{tier=\"redis\"} 0\n"));
        assert!(!text.contains("tier=\"disk\""), "{text}");
        assert!(!text.contains("disk_fill_ratio"), "no disk tier, no fill");
        assert!(
            !text.contains("tampered_total{tier=\"memory\"}"),
            "memory is never signed"
        );
        let text = render(&CacheStats::default(), &health(false, true));
        assert!(
            text.contains("\nsmartcache_disk_fill_ratio 0.25\n"),
            "{text}"
        );
    }

    #[test]
    fn latency_quantiles_are_written_for_operations_that_were_timed() {
        let mut s = CacheStats::default();
        s.latency[TierId::Disk as usize][Op::Delete as usize] = LatencySnapshot {
            samples: 2,
            p50_ns: 1_500,
            p99_ns: 2_000_000,
        };
        let text = render(&s, &health(true, true));
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("smartcache_latency_seconds"))
            .collect();
        assert_eq!(
            lines,
            [
                "smartcache_latency_seconds{tier=\"disk\",op=\"delete\",quantile=\"0.5\"} 0.0000015",
                "smartcache_latency_seconds{tier=\"disk\",op=\"delete\",quantile=\"0.99\"} 0.002",
            ]
        );
    }
}
