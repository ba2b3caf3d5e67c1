//! `Cache::stats_json` and `Cache::stats_prometheus` read back by real parsers (serde_json,
//! prometheus-parse) after known operations on all three tiers against a real redis-server:
//! every figure in the texts is the count of what was done, and both texts agree.

mod common;
mod support;

use common::TempDir;
use prometheus_parse::{Scrape, Value};
use smartcache::stats::prometheus::{Kind, Series, METRICS, PREFIX};
use smartcache::{Cache, Config};
use support::redis_server::RedisServer;

fn config(server: &RedisServer, dir: &TempDir) -> Config {
    Config {
        redis_enabled: true,
        redis_url: server.url(0),
        redis_timeout_ms: 1000,
        disk_enabled: true,
        disk_path: dir.path().into(),
        disk_max_size: 4 << 20,
        auto_expire_interval: 0,
        ..Config::default()
    }
}

/// Three sets, one memory hit, one key no tier holds, one delete: the figures each tier counts.
fn known_operations(cache: &Cache) {
    for k in [&b"a"[..], b"b", b"c"] {
        cache.set(k, b"value", None).unwrap();
    }
    assert!(cache.get(b"a").unwrap().is_some());
    assert!(cache.get(b"nowhere").unwrap().is_none());
    assert!(cache.delete(b"b").unwrap());
}

/// One sample of a scrape: labels sorted by name, value with the type the text declared.
struct Parsed {
    metric: String,
    labels: Vec<(String, String)>,
    value: f64,
    kind: Kind,
}

fn samples(scrape: &Scrape) -> Vec<Parsed> {
    scrape
        .samples
        .iter()
        .map(|s| {
            let mut labels: Vec<_> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let (value, kind) = match s.value {
                Value::Counter(v) => (v, Kind::Counter),
                Value::Gauge(v) => (v, Kind::Gauge),
                ref other => panic!("{} is neither a counter nor a gauge: {other:?}", s.metric),
            };
            Parsed {
                metric: s.metric.clone(),
                labels,
                value,
                kind,
            }
        })
        .collect()
}

fn value(scrape: &Scrape, metric: &str, tier: Option<&str>) -> f64 {
    let found: Vec<f64> = samples(scrape)
        .into_iter()
        .filter(|s| {
            s.metric == metric
                && match tier {
                    None => s.labels.is_empty(),
                    Some(t) => s.labels == [("tier".to_string(), t.to_string())],
                }
        })
        .map(|s| s.value)
        .collect();
    assert_eq!(found.len(), 1, "{metric} {tier:?}: {found:?}");
    found[0]
}

#[test]
fn json_figures_are_the_counts_of_the_operations_done() {
    let server = RedisServer::start();
    let dir = TempDir::new("stats-json");
    let cache = Cache::open(config(&server, &dir)).unwrap();
    known_operations(&cache);
    let doc: serde_json::Value = serde_json::from_str(&cache.stats_json()).expect("valid JSON");

    assert_eq!(doc["hits"], 1);
    assert_eq!(doc["misses"], 1);
    assert_eq!(doc["hit_ratio"], 0.5);
    assert_eq!(doc["sets"], 3);
    assert_eq!(doc["deletes"], 1);
    assert_eq!(doc["size"], 2, "a and c stay in memory");
    assert_eq!(doc["capacity"], 1000);
    assert!(doc["memory_usage_bytes"].as_u64().unwrap() > 0);
    assert!(doc["uptime_ms"].is_u64());
    let memory = &doc["tiers"]["memory"];
    assert_eq!(
        (memory["hits"].clone(), memory["misses"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(memory["enabled"], true);
    assert_eq!(
        memory["latency"]["get"]["samples"].as_u64().map(|_| ()),
        Some(())
    );
    for tier in ["redis", "disk"] {
        let t = &doc["tiers"][tier];
        assert_eq!(t["enabled"], true, "{tier}");
        assert_eq!(t["up"], true, "{tier}");
        assert_eq!(t["sets"], 3, "{tier}: every set is written through");
        assert_eq!(t["hits"], 0, "{tier}");
        assert_eq!(t["misses"], 1, "{tier}: the memory miss went on down");
        assert_eq!(t["errors"], 0, "{tier}");
        assert_eq!(t["last_error"], serde_json::Value::Null, "{tier}");
        assert!(
            t["latency"]["set"]["samples"].as_u64().unwrap() >= 3,
            "{tier}: every lower-tier call is timed"
        );
    }
    let disk = &doc["tiers"]["disk"];
    assert_eq!(disk["entries"], 2);
    assert_eq!(
        disk["path"].as_str().unwrap(),
        dir.path().join("smartcache.l3").to_string_lossy()
    );
    assert!(
        doc["tiers"]["redis"].get("entries").is_none(),
        "file figures are the disk's"
    );
}

#[test]
fn prometheus_text_parses_and_agrees_with_the_json() {
    let server = RedisServer::start();
    let dir = TempDir::new("stats-prometheus");
    let cache = Cache::open(config(&server, &dir)).unwrap();
    known_operations(&cache);
    let text = cache.stats_prometheus();
    let doc: serde_json::Value = serde_json::from_str(&cache.stats_json()).unwrap();
    let scrape =
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses as Prometheus text");
    // The parser skips lines it cannot read: every sample line must have become a sample.
    let sample_lines = text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(scrape.samples.len(), sample_lines, "{text}");

    // Every metric of the table is documented and typed as the table says, and nothing else.
    let listed: Vec<String> = METRICS
        .iter()
        .map(|m| format!("{PREFIX}{}", m.name))
        .collect();
    for m in METRICS {
        let name = format!("{PREFIX}{}", m.name);
        assert_eq!(
            scrape.docs.get(&name).map(String::as_str),
            Some(m.help),
            "{name}"
        );
        assert!(
            text.contains(&format!("# TYPE {name} {}\n", m.kind.as_str())),
            "{name}"
        );
    }
    for Parsed {
        metric,
        labels,
        kind,
        ..
    } in samples(&scrape)
    {
        let row = METRICS
            .iter()
            .find(|m| format!("{PREFIX}{}", m.name) == metric)
            .unwrap_or_else(|| panic!("{metric} is not in the table ({listed:?})"));
        assert_eq!(kind, row.kind, "{metric}");
        let names: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        let want: &[&str] = match row.series {
            Series::Cache | Series::DiskOnly => &[],
            Series::Tiers(_) => &["tier"],
            Series::Latency => &["op", "quantile", "tier"],
        };
        assert_eq!(names, want, "{metric}");
    }

    for (metric, json) in [
        ("hits_total", &doc["hits"]),
        ("misses_total", &doc["misses"]),
        ("sets_total", &doc["sets"]),
        ("deletes_total", &doc["deletes"]),
        ("hit_ratio", &doc["hit_ratio"]),
        ("size", &doc["size"]),
        ("capacity", &doc["capacity"]),
        ("memory_bytes", &doc["memory_usage_bytes"]),
    ] {
        let v = value(&scrape, &format!("{PREFIX}{metric}"), None);
        assert_eq!(Some(v), json.as_f64(), "{metric}");
    }
    assert_eq!(value(&scrape, "smartcache_hits_total", None), 1.0);
    assert_eq!(value(&scrape, "smartcache_sets_total", None), 3.0);
    for tier in ["memory", "redis", "disk"] {
        let t = &doc["tiers"][tier];
        assert_eq!(
            value(&scrape, "smartcache_tier_up", Some(tier)),
            1.0,
            "{tier}"
        );
        for (metric, field) in [
            ("smartcache_tier_hits_total", "hits"),
            ("smartcache_tier_misses_total", "misses"),
            ("smartcache_tier_errors_total", "errors"),
        ] {
            let v = value(&scrape, metric, Some(tier));
            assert_eq!(Some(v), t[field].as_f64(), "{metric} {tier}");
        }
    }
    assert_eq!(
        value(&scrape, "smartcache_tier_misses_total", Some("disk")),
        1.0
    );
    assert_eq!(
        value(&scrape, "smartcache_tampered_total", Some("redis")),
        0.0
    );
    let fill = value(&scrape, "smartcache_disk_fill_ratio", None);
    assert!(fill > 0.0 && fill < 1.0, "{fill}");

    // Lower-tier calls are all timed: a p50 and a p99 for each operation kind that ran.
    let p99 = samples(&scrape)
        .into_iter()
        .find(|s| {
            s.metric == "smartcache_latency_seconds"
                && s.labels.contains(&("tier".into(), "redis".into()))
                && s.labels.contains(&("op".into(), "set".into()))
                && s.labels.contains(&("quantile".into(), "0.99".into()))
        })
        .expect("redis set p99");
    let json_p99_us = doc["tiers"]["redis"]["latency"]["set"]["p99_us"]
        .as_f64()
        .unwrap();
    assert!(
        (p99.value * 1e6 - json_p99_us).abs() < 1e-6,
        "{} s vs {json_p99_us} us",
        p99.value
    );
}

#[test]
fn a_cache_without_lower_tiers_reports_only_memory() {
    let cache = Cache::open(Config {
        auto_expire_interval: 0,
        ..Config::default()
    })
    .unwrap();
    cache.set(b"k", b"v", None).unwrap();
    let scrape =
        Scrape::parse(cache.stats_prometheus().lines().map(|l| Ok(l.to_string()))).unwrap();
    let tiers: Vec<String> = scrape
        .samples
        .iter()
        .filter_map(|s| s.labels.get("tier").map(str::to_string))
        .collect();
    assert!(
        !tiers.is_empty() && tiers.iter().all(|t| t == "memory"),
        "{tiers:?}"
    );
    assert!(
        !scrape
            .samples
            .iter()
            .any(|s| s.metric == "smartcache_disk_fill_ratio"),
        "no disk, no fill ratio"
    );
    let doc: serde_json::Value = serde_json::from_str(&cache.stats_json()).unwrap();
    assert_eq!(doc["tiers"]["disk"]["enabled"], false);
    assert!(doc["tiers"]["disk"].get("path").is_none());
}
