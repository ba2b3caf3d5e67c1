"""get_many / set_many (one library call, one Redis round trip) and the Prometheus export."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

from smartcache import (CacheClosedError, InvalidArgumentError, SerializationError, SmartCache,
                        SmartCacheConfig, SmartCacheError)

from .conftest import redis_url_or_fail
from .test_tiers import disk_config, redis_config


def test_round_trip_leaves_missing_keys_out(cache: SmartCache) -> None:
    values: Dict[Any, Any] = {"a": {"n": 1}, b"b\x00in": b"raw", "text": "t", "none": None,
                              "empty": b""}
    cache.set_many(values)
    got = cache.get_many(["a", b"b\x00in", "missing", "text", "none", "empty"])
    assert got == values  # "missing" is absent, a stored None is present
    assert cache.get("a") == {"n": 1}  # set_many stored them as set() would


def test_str_and_bytes_name_the_same_key(cache: SmartCache) -> None:
    cache.set_many({"k": 1})
    assert cache.get_many([b"k"]) == {b"k": 1}
    assert cache.get_many(["k", b"k", "k"]) == {"k": 1, b"k": 1}


def test_empty_inputs(cache: SmartCache) -> None:
    assert cache.get_many([]) == {}
    cache.set_many({})
    assert cache.get_many(iter(())) == {}


def test_bad_keys_name_their_index_and_store_nothing(cache: SmartCache) -> None:
    with pytest.raises(InvalidArgumentError, match=r"keys\[1\]"):
        cache.get_many(["ok", ""])
    with pytest.raises(InvalidArgumentError, match=r"keys\[2\]"):
        cache.set_many({"x": 1, "y": 2, "": 3})
    assert cache.get_many(["x", "y"]) == {}
    with pytest.raises(SmartCacheError):
        cache.set_many({"x": 1, "k" * 70_000: 2})
    assert not cache.exists("x")
    with pytest.raises(TypeError):
        cache.get_many([1])  # type: ignore[list-item]


def test_an_unpicklable_value_stores_nothing(cache: SmartCache) -> None:
    with pytest.raises(SerializationError):
        cache.set_many({"fine": 1, "lock": threading.Lock()})
    assert cache.get_many(["fine", "lock"]) == {}


def test_large_values_and_ttl(cache: SmartCache) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB
    cache.set_many({"big": big, "small": 1}, ttl=60)
    assert cache.get_many(["big", "small"]) == {"big": big, "small": 1}
    with pytest.raises(ValueError):
        cache.set_many({"k": 1}, ttl=-1)


def test_closed_cache() -> None:
    cache = SmartCache()
    cache.close()
    with pytest.raises(CacheClosedError):
        cache.get_many(["k"])
    with pytest.raises(CacheClosedError):
        cache.set_many({"k": 1})
    with pytest.raises(CacheClosedError):
        cache.stats_prometheus()


def test_lower_tiers_answer_and_promote(tmp_path: Path, unique_prefix: str) -> None:
    redis_url_or_fail()
    writer = SmartCache(redis_config(unique_prefix))
    reader = SmartCache(redis_config(unique_prefix, memory_capacity=1))
    with writer, reader:
        values = {f"user:{i}": {"id": i} for i in range(50)}
        writer.set_many(values, ttl=60)
        assert reader.get_many(list(values) + ["absent"]) == values
        assert reader.get_stats().tier_stats["redis"]["hits"] >= 49
    with SmartCache(disk_config(tmp_path / "d")) as w, \
            SmartCache(disk_config(tmp_path / "d", memory_capacity=1)) as r:
        w.set_many({"a": 1, "b": [2]})
        assert r.get_many(["a", "b", "c"]) == {"a": 1, "b": [2]}


def test_threads_share_batches(cache: SmartCache) -> None:
    errors: List[BaseException] = []

    def worker(t: int) -> None:
        try:
            for round_ in range(200):
                batch = {f"t{t}:{i}": (t, round_, i) for i in range(20)}
                cache.set_many(batch)
                got = cache.get_many(batch)
                assert got == batch, (t, round_)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []


def test_stats_prometheus_counts_what_happened(cache: SmartCache) -> None:
    cache.set("k", 1)
    for _ in range(3):
        cache.get("k")
    cache.get("missing")
    text = cache.stats_prometheus()
    assert "# TYPE smartcache_hits_total counter" in text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines()
                 if line and not line.startswith("#"))
    assert float(lines["smartcache_hits_total"]) == 3
    assert float(lines["smartcache_misses_total"]) == 1
    assert float(lines["smartcache_sets_total"]) == 1
