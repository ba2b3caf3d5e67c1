"""SmartCache operations: types, keys, TTLs, errors, stats, health, lifecycle."""

from __future__ import annotations

import datetime
import decimal
import json
import marshal
import pickle
import threading
import time
from dataclasses import dataclass
from typing import Any, List

import pytest

import smartcache
from smartcache import (CacheClosedError, InvalidArgumentError, KeyTooLargeError,
                        SerializationError, SmartCache, SmartCacheConfig, SmartCacheError,
                        ValueTooLargeError)
from smartcache._lib import lib


@dataclass
class Point:
    x: int
    y: int


VALUES: List[Any] = [
    b"raw bytes", b"", "text", "", "ünïcødé ✓", 0, -7, 2**100, 3.25, float("inf"), True, None,
    [1, "a", None], (1, 2), {"k": [1, {"n": None}]}, {1, 2, 3}, frozenset({"x"}),
    bytearray(b"ba"), Point(1, 2), datetime.date(2024, 1, 2), decimal.Decimal("1.10"),
    "\udcff lone surrogate", b"\x80pickle-looking bytes", "B looks like a tag",
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:30] for v in VALUES])
def test_values_round_trip_with_their_type(cache: SmartCache, value: Any) -> None:
    cache.set("k", value)
    got = cache.get("k", default=KeyError)
    assert got == value and type(got) is type(value)
    assert cache.get_pinned("k") == value


def test_stored_none_is_distinguishable_from_missing(cache: SmartCache) -> None:
    missing = object()
    cache.set("none", None)
    assert cache.get("none", missing) is None
    assert cache.get("absent", missing) is missing
    assert cache.get("absent") is None
    assert cache.exists("none") and not cache.exists("absent")


def test_str_and_bytes_keys(cache: SmartCache) -> None:
    cache.set("ключ", 1)
    assert cache.get("ключ".encode()) == 1  # str keys are their UTF-8 bytes
    cache.set(b"\xff\x00binary", 2)
    assert cache.get(b"\xff\x00binary") == 2
    assert "ключ" in cache


@pytest.mark.parametrize("key", [1, None, 2.5, ("t",), bytearray(b"x"), ["l"]])
def test_wrong_key_types_are_type_errors(cache: SmartCache, key: Any) -> None:
    for op in (cache.get, cache.delete, cache.exists):
        with pytest.raises(TypeError, match="str or bytes"):
            op(key)
    with pytest.raises(TypeError, match="str or bytes"):
        cache.set(key, 1)


def test_bad_keys_give_clear_errors(cache: SmartCache) -> None:
    with pytest.raises(InvalidArgumentError, match="empty"):
        cache.set("", 1)
    with pytest.raises(InvalidArgumentError, match="empty"):
        cache.get(b"")
    with pytest.raises(KeyTooLargeError, match="65535") as info:
        cache.set("k" * 65536, 1)
    assert info.value.code == smartcache._native.SZ_ERR_TOO_LARGE
    assert isinstance(info.value, ValueError) and isinstance(info.value, SmartCacheError)
    with pytest.raises(KeyTooLargeError):
        cache.get(b"k" * 70000)
    cache.set("k" * 65535, "longest allowed key")
    assert cache.get("k" * 65535) == "longest allowed key"
    with pytest.raises(InvalidArgumentError, match="UTF-8"):
        cache.set("\udcff", 1)


def test_values_over_max_value_size() -> None:
    with SmartCache(SmartCacheConfig(max_value_size=1024)) as cache:
        cache.set("fits", b"x" * 1000)
        with pytest.raises(ValueTooLargeError, match="max_value_size") as info:
            cache.set("big", b"x" * 2000)
        assert "value of 2001 bytes" in info.value.message  # 1 tag byte + the value
        assert not cache.exists("big")


def test_unpicklable_values(cache: SmartCache) -> None:
    for value in (threading.Lock(), lambda: 1, (x for x in range(3))):
        with pytest.raises(SerializationError, match="cannot serialize") as info:
            cache.set("u", value)
        assert isinstance(info.value, TypeError)
    assert not cache.exists("u")


def test_large_values_beyond_the_thread_buffer(cache: SmartCache) -> None:
    for n in (4095, 4096, 70_000, 1 << 20, 3 << 20):
        blob = bytes(range(256)) * (n // 256) + b"e" * (n % 256)
        cache.set(f"v{n}", blob)
        assert cache.get(f"v{n}") == blob
    # after a big read, small ones still work (buffer replaced, not corrupted)
    cache.set("small", {"a": 1})
    assert cache.get("small") == {"a": 1}


class Reentrant:
    """Unpickling it reads another key from the same cache on the same thread."""

    cache: "SmartCache | None" = None

    def __init__(self, inner_key: str) -> None:
        self.inner_key = inner_key
        self.inner: Any = None

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        assert Reentrant.cache is not None
        self.inner = Reentrant.cache.get(self.inner_key)


def test_get_reentered_during_unpickling(cache: SmartCache) -> None:
    Reentrant.cache = cache
    cache.set("inner", {"payload": list(range(50))})
    cache.set("outer", Reentrant("inner"))
    got = cache.get("outer")
    assert got.inner == {"payload": list(range(50))} and got.inner_key == "inner"


def test_json_and_custom_serializers() -> None:
    with SmartCache(serializer="json") as cache:
        cache.set("j", {"a": [1, 2.5, None, "x"]})
        assert cache.get("j") == {"a": [1, 2.5, None, "x"]}
        cache.set("b", b"bytes stay bytes")
        assert cache.get("b") == b"bytes stay bytes"
        with pytest.raises(SerializationError, match="json"):
            cache.set("bad", {1, 2})
        # a pickle in the store (written by another cache) is refused, not unpickled
        other_writer = smartcache.cache._fast_set
        data = pickle.dumps(Point(1, 2), protocol=5)
        kb = b"p"
        assert other_writer(cache._hv, kb, smartcache.cache._c_size_t(1), data,
                            smartcache.cache._c_size_t(len(data)),
                            smartcache.cache._c_uint64(0)) == 0
        with pytest.raises(SerializationError, match="does not unpickle"):
            cache.get("p")
    with SmartCache(serializer=marshal) as cache:
        cache.set("m", {"a": (1, 2)})
        assert cache.get("m") == {"a": (1, 2)}
    with pytest.raises(ValueError, match="serializer"):
        SmartCache(serializer="yaml")
    with pytest.raises(TypeError, match="dumps"):
        SmartCache(serializer=json.dumps)  # type: ignore[arg-type]


def test_foreign_values_are_reported_not_misread(cache: SmartCache) -> None:
    from smartcache.cache import _c_size_t, _c_uint64, _fast_set
    data = b"\x00written by C"
    _fast_set(cache._hv, b"c", _c_size_t(1), data, _c_size_t(len(data)), _c_uint64(0))
    with pytest.raises(SerializationError, match="unknown tag"):
        cache.get("c")


def test_truncated_foreign_pickle_never_reads_an_earlier_value(cache: SmartCache) -> None:
    """get() unpickles its receive buffer in place, past the value's end: the bytes there
    must never be an earlier value's. A foreign writer's truncated copy of a pickle that was
    just read through the same buffer is an error, not the earlier object."""
    from smartcache.cache import _c_size_t, _c_uint64, _fast_set
    whole = {"text": "s" * 300, "numbers": list(range(200))}
    cache.set("whole", whole)
    assert cache.get("whole") == whole  # the buffer now holds its pickle
    data = pickle.dumps(whole, protocol=5)
    for cut in (2, 20, len(data) // 2, len(data) - 1):  # inside opcodes and their arguments
        _fast_set(cache._hv, b"cut", _c_size_t(3), data[:cut], _c_size_t(cut), _c_uint64(0))
        with pytest.raises(SerializationError):
            cache.get("cut")
        assert cache.get("whole") == whole


def test_delete_exists_clear(cache: SmartCache) -> None:
    for i in range(10):
        cache.set(f"k{i}", i)
    assert cache.delete("k3") is True and cache.delete("k3") is False
    assert not cache.exists("k3") and cache.exists("k4")
    cache.clear()
    assert all(cache.get(f"k{i}") is None for i in range(10))
    assert cache.get_stats().size == 0


def test_explicit_ttl_expires(cache: SmartCache) -> None:
    t0 = time.monotonic()
    cache.set("short", "x", ttl=0.05)
    cache.set("long", "y", ttl=30)
    got = cache.get("short")
    # A busy machine may stall this thread past the 50 ms between the set and the get (the
    # entry then rightly expired); only a get that surely began within the ttl must hit.
    if time.monotonic() - t0 < 0.049:
        assert got == "x"
    else:
        assert got in ("x", None)
    time.sleep(0.12)
    assert cache.get("short") is None and not cache.exists("short")
    assert cache.get("long") == "y"


def test_tier_default_ttl_applies_when_ttl_is_none() -> None:
    with SmartCache(SmartCacheConfig(memory_ttl=1)) as cache:
        cache.set("d", 1)
        cache.set("explicit", 2, ttl=60)
        time.sleep(1.15)
        assert cache.get("d") is None
        assert cache.get("explicit") == 2


@pytest.mark.parametrize("ttl,exc", [(0, ValueError), (-1, ValueError), (float("nan"), ValueError),
                                     (float("inf"), ValueError), ("10", TypeError),
                                     (True, TypeError)])
def test_bad_ttls(cache: SmartCache, ttl: Any, exc: type) -> None:
    with pytest.raises(exc, match="ttl"):
        cache.set("k", 1, ttl=ttl)


def test_expire_now_reclaims(cache: SmartCache) -> None:
    for i in range(20):
        cache.set(f"e{i}", i, ttl=0.01)
    time.sleep(0.05)
    reclaimed = cache.expire_now()
    assert reclaimed == 20
    assert cache.get_stats().expirations >= 20


def test_stats_content(cache: SmartCache) -> None:
    cache.set("a", "x" * 1000)
    cache.set("b", 2)
    cache.get("a"), cache.get("a"), cache.get("b"), cache.get("zz")
    cache.delete("b")
    s = cache.get_stats()
    assert (s.hits, s.misses, s.sets, s.deletes) == (3, 1, 2, 1)
    assert s.hit_ratio == pytest.approx(0.75)
    assert s.size == 1 and s.capacity == 10_000
    assert s.memory_bytes >= 1000 and s.memory_usage == pytest.approx(s.memory_bytes / 2**20)
    assert s.ops_per_second >= 0 and s.compression_ratio == pytest.approx(1.0)
    assert set(s.tier_stats) == {"memory", "redis", "disk"}
    assert s.tier_stats["memory"]["hits"] == 3 and s.tier_stats["memory"]["size"] == 1
    assert s.jemalloc_active and s.uptime_ms >= 0
    raw = cache.raw_stats()
    assert (raw.hits, raw.misses, raw.size, raw.capacity) == (3, 1, 1, 10_000)
    json.dumps(s.to_dict())


def test_stats_disabled_counts_nothing() -> None:
    with SmartCache(SmartCacheConfig(enable_stats=False)) as cache:
        cache.set("a", 1)
        cache.get("a")
        assert cache.get_stats().hits == 0


def test_evictions_keep_capacity() -> None:
    with SmartCache(SmartCacheConfig(memory_capacity=100)) as cache:
        for i in range(1000):
            cache.set(f"k{i}", i)
        s = cache.get_stats()
        assert s.size <= 100 and s.evictions >= 900


def test_health_content(cache: SmartCache) -> None:
    h = cache.health_check()
    assert h["healthy"] is True and h["status"] == "healthy"
    assert h["tiers"]["memory"] == {"enabled": True, "up": True, "errors": 0, "last_error": None}
    assert h["tiers"]["redis"]["enabled"] is False and h["tiers"]["disk"]["enabled"] is False
    assert h["disk_path"] == "" and h["disk_fill"] == 0.0
    assert h["library_version"] == smartcache.library_version
    json.dumps(h)


def test_close_is_idempotent_and_later_calls_fail_clearly() -> None:
    cache = SmartCache()
    cache.set("k", 1)
    cache.close()
    cache.close()
    assert cache.closed
    for call in (lambda: cache.get("k"), lambda: cache.set("k", 1), lambda: cache.delete("k"),
                 lambda: cache.exists("k"), cache.clear, cache.get_stats, cache.health_check,
                 cache.expire_now, lambda: cache.get_pinned("k")):
        with pytest.raises(CacheClosedError, match="closed"):
            call()
    assert "closed" in repr(cache)


def test_context_manager_closes() -> None:
    with SmartCache() as cache:
        cache.set("k", 1)
    assert cache.closed


def test_cache_rejects_non_config() -> None:
    with pytest.raises(TypeError, match="SmartCacheConfig"):
        SmartCache({"memory_capacity": 5})  # type: ignore[arg-type]


def _raw_set(cache: SmartCache, key: bytes, value: bytes) -> None:
    """Stores bytes exactly as another writer of the same cache would (the C ABI, the Go binding,
    a process sharing the disk tier or the Redis prefix): no Python tag byte."""
    assert lib.sz_cache_set(cache._h, key, len(key), value, len(value), 0) == 0


@pytest.mark.parametrize("raw", [b"", b"\x80"], ids=["empty", "pickle-tag-only"])
def test_get_never_returns_the_previous_keys_value(cache: SmartCache, raw: bytes) -> None:
    """Guide: ``get(key)`` returns the value stored under *key* (or None). The bug: get()
    copies into a reused per-thread buffer and looked at ``raw[0]`` / unpickled the whole buffer
    without bounding it by the returned length, so a short or empty stored value (written by the
    C ABI or the Go binding into a shared tier) decoded the *previous* get's leftovers: the
    value of a different key came back."""
    secret = {"user": "alice", "token": "s3cr3t"}
    cache.set("other", secret)
    assert cache.get("other") == secret  # leaves its pickle in this thread's buffer
    _raw_set(cache, b"short", raw)
    try:
        got = cache.get("short")
    except SerializationError:
        return  # refusing a value the binding did not write is fine
    assert got != secret


@pytest.mark.parametrize("ttl", [18446744073709552, 2 ** 70], ids=["wraps-to-384ms", "wraps-to-0"])
def test_huge_ttl_is_not_silently_wrapped(ttl: int) -> None:
    """Guide: ``set(key, value, ttl=)`` stores for *ttl* seconds. The bug: the ttl in ms
    was passed as ctypes.c_uint64(ms), which silently wraps modulo 2**64, so a ttl of ~584
    million years expired after 384 ms, and 2**70 s became 0 = "the tiers' default TTL". Either
    refuse it (ValueError/OverflowError) or keep the entry (at least) well past memory_ttl."""
    with SmartCache(SmartCacheConfig(memory_ttl=1)) as c:
        try:
            c.set("k", "v", ttl=ttl)
        except (ValueError, OverflowError):
            return
        time.sleep(1.3)
        assert c.get("k") == "v"
