"""get_many / set_many (one library call, one Redis round trip) and the Prometheus export."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest

from smartcache import (CacheClosedError, InvalidArgumentError, KeyTooLargeError,
                        SerializationError, SmartCache, SmartCacheConfig, SmartCacheError,
                        TooLargeError, ValueTooLargeError)

from .conftest import KIB, SIZES, payload, redis_url_or_fail
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


def test_get_many_set_many_documented_example(cache: SmartCache) -> None:
    assert cache.set_many({"a": 1, "b": 2}, ttl=60) is None
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    assert cache.get("a") == 1 and cache.get("b") == 2


def test_get_many_types_and_sizes(cache: SmartCache) -> None:
    items: Dict[str, Any] = {
        "none": None, "empty-bytes": b"", "empty-str": "", "str": "h\u00e9llo",
        "bytes": b"\x00\x01\xff", "dict": {"x": [1, 2, 3]}, "int": 7,
    }
    for n in SIZES:
        items[f"size-{n}"] = payload(n, n)
    cache.set_many(items)
    keys = list(items) + ["missing-1", "missing-2"]
    got = cache.get_many(keys)
    assert got == items
    assert "missing-1" not in got and "missing-2" not in got
    assert "none" in got and got["none"] is None  # a stored None is present, not missing
    assert type(got["empty-bytes"]) is bytes and type(got["empty-str"]) is str
    for k, v in items.items():  # get agrees with get_many
        assert cache.get(k, default="missing") == v, k
    assert cache.get_many([]) == {}
    assert cache.get_many(["missing-1"]) == {}


def test_get_many_bytes_and_str_keys(cache: SmartCache) -> None:
    cache.set_many({b"bin\x00key": "binary", "text": b"raw"})
    got = cache.get_many([b"bin\x00key", "text"])
    assert got == {b"bin\x00key": "binary", "text": b"raw"}
    assert cache.get_many([b"text"]) == {b"text": b"raw"}  # "k" and b"k" are one key


def test_set_many_empty_is_a_no_op(cache: SmartCache) -> None:
    cache.set_many({})
    assert cache.raw_stats().sets == 0


class Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("this object refuses to be pickled")


@pytest.mark.parametrize("bad_position", ["first", "middle", "last"])
@pytest.mark.parametrize("bad_kind", ["empty key", "long key", "big value", "unpicklable",
                                      "key type"])
def test_set_many_stores_nothing_if_any_item_is_bad(bad_position: str, bad_kind: str) -> None:
    cache = SmartCache(SmartCacheConfig(memory_capacity=10_000, max_value_size="64K"))
    good = {f"good-{i}": f"value-{i}" for i in range(5)}
    bad_key: Any = {"empty key": "", "long key": "k" * 65536, "big value": "bad",
                    "unpicklable": "bad", "key type": 12345}[bad_kind]
    bad_value: Any = {"big value": b"x" * (65 * KIB), "unpicklable": Unpicklable()}.get(
        bad_kind, "v")
    pairs = list(good.items())
    at = {"first": 0, "middle": 2, "last": len(pairs)}[bad_position]
    pairs.insert(at, (bad_key, bad_value))
    expected = {
        "empty key": InvalidArgumentError, "long key": KeyTooLargeError,
        # README: SerializationError derives from TypeError; which of the two an unpicklable
        # value raises is not documented.
        "big value": ValueTooLargeError, "unpicklable": TypeError,
        "key type": TypeError,
    }[bad_kind]
    with pytest.raises(expected):
        cache.set_many(dict(pairs))
    assert cache.get_many(list(good)) == {}, "set_many stored part of a failing batch"
    for k in good:
        assert not cache.exists(k), k
    assert cache.raw_stats().sets == 0
    cache.close()


def test_set_many_bad_item_does_not_overwrite_existing(cache: SmartCache) -> None:
    cache.set("keep", "old")
    with pytest.raises(InvalidArgumentError):
        cache.set_many({"keep": "new", "": "bad"})
    assert cache.get("keep") == "old"


def test_get_many_errors(cache: SmartCache) -> None:
    with pytest.raises(InvalidArgumentError):
        cache.get_many(["a", ""])
    with pytest.raises(TooLargeError):
        cache.get_many(["a", "k" * 65536])
    with pytest.raises(TypeError):
        cache.get_many(["a", 3])  # type: ignore[list-item]


def test_many_after_close() -> None:
    c = SmartCache(SmartCacheConfig())
    c.close()
    with pytest.raises(CacheClosedError):
        c.get_many(["a"])
    with pytest.raises(CacheClosedError):
        c.set_many({"a": 1})
    with pytest.raises(CacheClosedError):
        c.stats_prometheus()


def test_set_many_ttl(cache: SmartCache) -> None:
    t0 = time.monotonic()
    cache.set_many({"short-1": 1, "short-2": 2}, ttl=0.3)
    cache.set_many({"long": 3}, ttl=60)
    got = cache.get_many(["short-1", "short-2", "long"])
    # The short entries must be there only if the get surely began within their 0.3 s (a busy
    # machine can stall this thread longer between the calls).
    if time.monotonic() - t0 < 0.299:
        assert got == {"short-1": 1, "short-2": 2, "long": 3}
    else:
        assert got["long"] == 3 and set(got) <= {"short-1", "short-2", "long"}, got
    time.sleep(1.0)
    assert cache.get_many(["short-1", "short-2", "long"]) == {"long": 3}


def test_many_through_redis() -> None:
    prefix = f"many-{uuid.uuid4().hex[:8]}:"
    cfg = SmartCacheConfig(redis_enabled=True, redis_url=redis_url_or_fail(),
                           redis_key_prefix=prefix, redis_timeout_ms=1000)
    with SmartCache(cfg) as a, SmartCache(cfg) as b:
        items = {f"r{i}": payload(i * 997, i) for i in range(30)}
        items["none"] = None
        items["text"] = "t" * 5000
        a.set_many(items, ttl=60)
        # b's memory is empty: its values come from Redis.
        got = b.get_many(list(items) + ["absent"])
        assert got == items
        s = b.raw_stats()
        assert s.redis_hits == len(items) and s.memory_hits == 0
        # promoted: now memory hits
        assert b.get_many(list(items)) == items
        assert b.raw_stats().memory_hits == len(items)
        a.clear()


def test_get_many_from_disk(tmp_path: Any) -> None:
    cfg = SmartCacheConfig(disk_enabled=True, disk_path=str(tmp_path / "d"), disk_max_size="64M")
    items = {f"d{n}": payload(n, n) for n in SIZES}
    with SmartCache(cfg) as c:
        c.set_many(items)
    with SmartCache(cfg) as c:
        assert c.get_many(list(items) + ["nope"]) == items
        assert c.raw_stats().disk_hits == len(items)
