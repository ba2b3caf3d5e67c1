"""Redis host names (guide, "L2 — Redis"): "Host names are looked up by the system resolver on a
thread of the library's own, and a call waits for the answer only within `redis_timeout_ms`
[...]". Run against the private redis-server of scripts/with-redis.sh (SMARTCACHE_TEST_REDIS_URL,
bound to 127.0.0.1), addressed as "localhost"."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Callable, List, TypeVar
from urllib.parse import urlparse

from smartcache import SmartCache, SmartCacheConfig

from .conftest import keyed_payload, redis_url_or_fail


CALL_BOUND_S = 2.0  # redis_timeout_ms (100) plus generous slack


T = TypeVar("T")


def timed(label: str, fn: Callable[[], T]) -> T:
    t0 = time.monotonic()
    out = fn()
    dt = time.monotonic() - t0
    assert dt < CALL_BOUND_S, f"{label} took {dt * 1000:.0f} ms (bound {CALL_BOUND_S} s)"
    return out


def localhost_url() -> str:
    port = urlparse(redis_url_or_fail()).port
    assert port, "SMARTCACHE_TEST_REDIS_URL has no port"
    return f"redis://localhost:{port}/0"


def prefix() -> str:
    return f"hostnames-py-{uuid.uuid4().hex[:10]}:"


def test_redis_localhost_url_end_to_end() -> None:
    """redis://localhost:<port>/0: set through one handle, read through another whose memory
    never held the value (same redis_key_prefix), and through a memory_capacity=1 handle."""
    url, p = localhost_url(), prefix()
    # 5 s: the first call looks "localhost" up on the library's resolver thread and connects
    # within this budget; on a busy machine that thread alone can wait longer than 500 ms to
    # run, and the subject here is the round trip, not the timeout.
    cfg = SmartCacheConfig(redis_enabled=True, redis_url=url, redis_key_prefix=p,
                           redis_timeout_ms=5000)
    value = keyed_payload(1, 3000)
    with SmartCache(cfg) as a, SmartCache(cfg) as b:
        a.set(b"lh", value, ttl=60)
        assert a.health_check()["tiers"]["redis"]["up"] is True
        assert b.get(b"lh") == value
        s = b.get_stats()
        assert s.tier_stats["redis"]["hits"] == 1 and s.tier_stats["redis"]["errors"] == 0
    small = SmartCacheConfig(redis_enabled=True, redis_url=url, redis_key_prefix=p,
                             redis_timeout_ms=5000, memory_capacity=1)
    with SmartCache(small) as c:
        for i in range(8):
            c.set(f"cap1-{i}", keyed_payload(100 + i, 100 + i), ttl=60)
        for i in range(8):
            assert c.get(f"cap1-{i}") == keyed_payload(100 + i, 100 + i)
        s = c.get_stats()
        assert s.tier_stats["redis"]["hits"] >= 6, s.tier_stats  # memory held at most one
        h = c.health_check()
        assert h["healthy"] is True and h["tiers"]["redis"]["up"] is True
        c.clear()


def test_redis_unresolvable_host_never_hangs() -> None:
    """redis://no-such-host.invalid: open and every call return within redis_timeout_ms plus
    slack; gets of what memory lacks miss; set still stores in memory; health says Redis is down
    and names the host."""
    cfg = SmartCacheConfig(redis_enabled=True, redis_url="redis://no-such-host.invalid:6379/0",
                           redis_timeout_ms=100, redis_key_prefix=prefix())
    cache = timed("open", lambda: SmartCache(cfg))
    try:
        for i in range(5):
            timed("set", lambda: cache.set(f"k{i}", {"i": i}))
            assert timed("get (memory)", lambda: cache.get(f"k{i}")) == {"i": i}
            assert timed("get (miss)", lambda: cache.get("absent")) is None
            assert timed("exists", lambda: cache.exists("absent")) is False
            assert timed("delete", lambda: cache.delete(f"k{i}")) is True
            timed("set_many", lambda: cache.set_many({"a": 1, "b": 2}))
            assert timed("get_many", lambda: cache.get_many(["a", "zz"])) == {"a": 1}
        h = timed("health_check", cache.health_check)
        assert h["healthy"] is False and h["status"] == "degraded"
        r = h["tiers"]["redis"]
        assert r["enabled"] is True and r["up"] is False
        assert "no-such-host.invalid" in (r["last_error"] or ""), r
        timed("clear", cache.clear)
    finally:
        timed("close", cache.close)


def test_redis_unresolvable_host_many_threads() -> None:
    """The same from 8 threads at once: no call waits on DNS past the bound."""
    cfg = SmartCacheConfig(redis_enabled=True, redis_url="redis://no-such-host.invalid/0",
                           redis_timeout_ms=100)
    errors: List[str] = []
    with SmartCache(cfg) as cache:
        def worker(n: int) -> None:
            try:
                for i in range(50):
                    timed("set", lambda: cache.set(f"t{n}-{i}", b"x" * i))
                    assert timed("get", lambda: cache.get(f"t{n}-{i}")) == b"x" * i
                    assert timed("get miss", lambda: cache.get(f"nope-{n}-{i}")) is None
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
        ts = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert not errors, errors[:3]
