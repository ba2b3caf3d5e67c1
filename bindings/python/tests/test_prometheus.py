"""stats_prometheus: counters and gauges that match the operations made (one get is one hit,
batches count each key), per enabled tier (disk, Redis)."""

from __future__ import annotations

import re
import uuid
from typing import Any, Dict

import pytest

from smartcache import SmartCache, SmartCacheConfig

from .conftest import KIB, MIB, payload, redis_url_or_fail


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse_prometheus(text: str) -> Dict[str, Any]:
    types: Dict[str, str] = {}
    samples: Dict[str, float] = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "untyped", "summary", "histogram"), line
            assert name not in types, f"duplicate TYPE for {name}"
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    for key in samples:
        name = key.split("{")[0]
        assert name in types, f"sample {key} has no TYPE line"
    return {"types": types, "samples": samples}


COUNTERS = ["hits_total", "misses_total", "sets_total", "deletes_total", "evictions_total",
            "expirations_total"]


GAUGES = ["hit_ratio", "ops_per_second", "size", "capacity", "memory_bytes", "compression_ratio"]


def test_prometheus_counters_match_operations() -> None:
    cache = SmartCache(SmartCacheConfig(memory_capacity=100))
    text = cache.stats_prometheus()
    assert isinstance(text, str) and text.endswith("\n")
    p = parse_prometheus(text)
    for name in COUNTERS:
        assert p["types"]["smartcache_" + name] == "counter", name
        assert p["samples"]["smartcache_" + name] == 0, name
    for name in GAUGES:
        assert p["types"]["smartcache_" + name] == "gauge", name
    for i in range(7):
        cache.set(f"k{i}", i)           # 7 sets
    for i in range(5):
        assert cache.get(f"k{i}") == i  # 5 hits
    for i in range(3):
        assert cache.get(f"nope{i}") is None  # 3 misses
    assert cache.delete("k0")          # 1 delete
    s = parse_prometheus(cache.stats_prometheus())["samples"]
    assert s["smartcache_sets_total"] == 7
    assert s["smartcache_hits_total"] == 5
    assert s["smartcache_misses_total"] == 3
    assert s["smartcache_deletes_total"] == 1
    assert s["smartcache_size"] == 6
    assert s["smartcache_capacity"] == 100
    assert s["smartcache_hit_ratio"] == pytest.approx(5 / 8)
    assert s['smartcache_tier_hits_total{tier="memory"}'] == 5
    assert s['smartcache_tier_misses_total{tier="memory"}'] == 3
    assert s['smartcache_tier_up{tier="memory"}'] == 1
    # Only the memory tier is enabled.
    assert not any('tier="redis"' in k or 'tier="disk"' in k for k in s), sorted(s)
    assert "smartcache_disk_fill_ratio" not in s
    # Agrees with get_stats().
    st = cache.get_stats()
    assert st.hits == 5 and st.misses == 3
    cache.close()


def test_one_get_of_a_large_value_counts_one_hit() -> None:
    """One get() is one get: sz_stats.hits is "Gets answered by any tier", and the Prometheus
    hits_total / tier_hits_total count gets. A value larger than the binding's current receive
    buffer must not count twice (the binding's internal retry is not a second get)."""
    sizes = [4097, 64 * KIB, MIB, 3 * MIB, 8 * MIB, 15 * MIB]
    cache = SmartCache(SmartCacheConfig(memory_capacity=100))
    for n in sizes:
        cache.set(f"v{n}", payload(n, n))
    gets = 0
    for n in sizes:
        assert cache.get(f"v{n}") == payload(n, n)
        gets += 1
    st = cache.raw_stats()
    s = parse_prometheus(cache.stats_prometheus())["samples"]
    assert (st.hits, st.memory_hits) == (gets, gets), \
        f"{gets} get() calls counted as {st.hits} hits ({st.memory_hits} memory hits)"
    assert s["smartcache_hits_total"] == gets
    assert s['smartcache_tier_hits_total{tier="memory"}'] == gets
    cache.close()


def test_one_get_from_disk_counts_one_hit(tmp_path: Any) -> None:
    """A large value answered by the disk tier: one get(), one hit (a disk hit), not a disk hit
    plus a memory hit."""
    cfg = SmartCacheConfig(disk_enabled=True, disk_path=str(tmp_path / "d"), disk_max_size="64M")
    with SmartCache(cfg) as c:
        c.set("big", payload(6 * MIB, 1))
    with SmartCache(cfg) as c:
        assert c.get("big") == payload(6 * MIB, 1)
        st = c.raw_stats()
        got = (st.hits, st.disk_hits, st.memory_hits, st.misses)
        assert got == (1, 1, 0, 0), f"one get() from disk counted as (hits, disk_hits, " \
                                    f"memory_hits, misses) = {got}"
        s = parse_prometheus(c.stats_prometheus())["samples"]
        assert s["smartcache_hits_total"] == 1


def test_prometheus_counts_batch_operations() -> None:
    cache = SmartCache(SmartCacheConfig(memory_capacity=100))
    cache.set_many({"a": 1, "b": 2, "c": 3})
    assert cache.get_many(["a", "b", "x"]) == {"a": 1, "b": 2}
    s = parse_prometheus(cache.stats_prometheus())["samples"]
    st = cache.raw_stats()
    assert s["smartcache_hits_total"] == st.hits == 2
    assert s["smartcache_misses_total"] == st.misses == 1
    assert s["smartcache_sets_total"] == st.sets == 3
    cache.close()


def test_prometheus_with_disk_tier(tmp_path: Any) -> None:
    cfg = SmartCacheConfig(disk_enabled=True, disk_path=str(tmp_path / "d"), disk_max_size="16M")
    with SmartCache(cfg) as c:
        c.set("k", payload(500, 1))
    with SmartCache(cfg) as c:
        assert c.get("k") == payload(500, 1)      # disk hit
        assert c.get("absent") is None            # memory miss, disk miss
        p = parse_prometheus(c.stats_prometheus())
        s = p["samples"]
        assert s['smartcache_tier_hits_total{tier="disk"}'] == 1
        assert s['smartcache_tier_misses_total{tier="disk"}'] == 1
        assert s['smartcache_tier_up{tier="disk"}'] == 1
        assert s['smartcache_tier_errors_total{tier="disk"}'] == 0
        assert s["smartcache_hits_total"] == 1 and s["smartcache_misses_total"] == 1
        assert 0 < s["smartcache_disk_fill_ratio"] <= 1
        assert p["types"]["smartcache_disk_fill_ratio"] == "gauge"
        assert not any('tier="redis"' in k for k in s)
        # Disk operations are all timed: a get latency for the disk tier, in seconds.
        lat = {k: v for k, v in s.items() if k.startswith("smartcache_latency_seconds{")}
        disk_get = [v for k, v in lat.items() if 'tier="disk"' in k and 'op="get"' in k]
        assert len(disk_get) == 2, sorted(lat)  # quantile 0.5 and 0.99
        assert all(0 < v < 10 for v in disk_get)
        assert p["types"]["smartcache_latency_seconds"] == "gauge"


def test_prometheus_with_redis_tier() -> None:
    prefix = f"prom-{uuid.uuid4().hex[:8]}:"
    cfg = SmartCacheConfig(redis_enabled=True, redis_url=redis_url_or_fail(),
                           redis_key_prefix=prefix, redis_timeout_ms=1000)
    with SmartCache(cfg) as a, SmartCache(cfg) as b:
        a.set("k", "v")
        assert b.get("k") == "v"          # redis hit
        assert b.get("absent") is None    # redis miss
        s = parse_prometheus(b.stats_prometheus())["samples"]
        assert s['smartcache_tier_hits_total{tier="redis"}'] == 1
        assert s['smartcache_tier_misses_total{tier="redis"}'] == 1
        assert s['smartcache_tier_up{tier="redis"}'] == 1
        assert not any('tier="disk"' in k for k in s)
        a.clear()


def test_prometheus_text_reads_back_with_prometheus_client(tmp_path: Any) -> None:
    """The text read by prometheus_client's own parser (what a Python exporter re-serving it
    would use), on all three tiers: every family has the declared type and documentation, and
    the samples are the counts of the operations made."""
    from prometheus_client.parser import text_string_to_metric_families

    cfg = SmartCacheConfig(redis_enabled=True, redis_url=redis_url_or_fail(),
                           redis_key_prefix=f"prom-{uuid.uuid4().hex}:",
                           disk_enabled=True, disk_path=str(tmp_path / "d"), disk_max_size="16M")
    with SmartCache(cfg, serializer="json") as c:
        for i in range(4):
            c.set(f"k{i}", i)               # 4 sets, through to Redis and disk
        assert c.get("k1") == 1             # 1 memory hit
        assert c.get("absent") is None      # 1 miss, asked of every tier
        assert c.delete("k0")               # 1 delete
        text = c.stats_prometheus()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # prometheus_client names a counter family without its _total suffix.
    hits = families["smartcache_hits"]
    assert hits.type == "counter" and hits.documentation == "Gets answered by any tier."
    assert [s.value for s in hits.samples] == [1]
    assert [s.value for s in families["smartcache_misses"].samples] == [1]
    assert [s.value for s in families["smartcache_sets"].samples] == [4]
    assert [s.value for s in families["smartcache_deletes"].samples] == [1]
    assert families["smartcache_hit_ratio"].type == "gauge"
    assert families["smartcache_hit_ratio"].samples[0].value == pytest.approx(0.5)

    def per_tier(family: str) -> Dict[str, float]:
        return {s.labels["tier"]: s.value for s in families[family].samples}

    assert per_tier("smartcache_tier_up") == {"memory": 1, "redis": 1, "disk": 1}
    assert per_tier("smartcache_tier_hits") == {"memory": 1, "redis": 0, "disk": 0}
    assert per_tier("smartcache_tier_misses") == {"memory": 1, "redis": 1, "disk": 1}
    assert per_tier("smartcache_tier_errors") == {"memory": 0, "redis": 0, "disk": 0}
    assert per_tier("smartcache_tampered") == {"redis": 0, "disk": 0}
    latency = families["smartcache_latency_seconds"]
    assert latency.type == "gauge"
    quantiles = {(s.labels["tier"], s.labels["op"], s.labels["quantile"]) for s in latency.samples}
    for tier in ("redis", "disk"):
        assert {(tier, "set", "0.5"), (tier, "set", "0.99")} <= quantiles, sorted(quantiles)
    assert 0 < families["smartcache_disk_fill_ratio"].samples[0].value < 1
