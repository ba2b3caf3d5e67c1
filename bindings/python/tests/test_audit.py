"""Regression tests from the pre-review audit. Each encodes a promise of DESIGN.md or the guide
(``reference/smartcache-guide.rst``) that the binding broke when the test was written."""

from __future__ import annotations

import time

import pytest

from smartcache import SerializationError, SmartCache, SmartCacheConfig, cached
from smartcache._lib import lib


def _raw_set(cache: SmartCache, key: bytes, value: bytes) -> None:
    """Stores bytes exactly as another writer of the same cache would (the C ABI, the Go binding,
    a process sharing the disk tier or the Redis prefix): no Python tag byte."""
    assert lib.sz_cache_set(cache._h, key, len(key), value, len(value), 0) == 0


@pytest.mark.parametrize("raw", [b"", b"\x80"], ids=["empty", "pickle-tag-only"])
def test_get_never_returns_the_previous_keys_value(cache: SmartCache, raw: bytes) -> None:
    """Guide/DESIGN: ``get(key)`` returns the value stored under *key* (or None). The bug: get()
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


def test_cached_miss_then_hit_is_a_fifty_percent_hit_ratio() -> None:
    """Guide, Cache Analytics: ``stats.hit_ratio`` / ``stats.misses`` are the cache's hit/miss
    ratios. One @cached call that computes (one miss) and one that is served (one hit) is 1 hit,
    1 miss, 50%. The bug: the decorator's single-flight re-check ran a second get() on the
    cache, so every computed call counted two misses and the ratio read 33%."""
    with SmartCache(SmartCacheConfig()) as c:
        @cached(ttl=600, key_prefix="user_data", cache=c)
        def get_user_data(user_id: int) -> dict:
            return {"user_id": user_id}

        get_user_data(1)
        get_user_data(1)
        stats = c.get_stats()
        assert (stats.hits, stats.misses) == (1, 1)
        assert f"{stats.hit_ratio:.2%}" == "50.00%"


@pytest.mark.parametrize("ttl", [18446744073709552, 2 ** 70], ids=["wraps-to-384ms", "wraps-to-0"])
def test_huge_ttl_is_not_silently_wrapped(ttl: int) -> None:
    """DESIGN/guide: ``set(key, value, ttl=)`` stores for *ttl* seconds. The bug: the ttl in ms
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
