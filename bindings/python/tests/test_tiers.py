"""The Redis (L2) and disk (L3) tiers, tested against their contract.

These tiers land on main after the memory tier. Each test opens its tier first and skips
ONLY when the library answers SZ_ERR_CONFIG "... not available in this build"; once a tier is
built, its tests run (and must pass) with no change here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from smartcache import SmartCache, SmartCacheConfig

from .conftest import open_or_skip, redis_url_for_config, redis_url_or_fail


def disk_config(path: Path, **kw: object) -> SmartCacheConfig:
    return SmartCacheConfig(disk_enabled=True, disk_path=str(path), **kw)  # type: ignore[arg-type]


def redis_config(prefix: str, **kw: object) -> SmartCacheConfig:
    return SmartCacheConfig(redis_enabled=True, redis_url=redis_url_for_config(),
                            redis_key_prefix=prefix, **kw)  # type: ignore[arg-type]


# --- disk (L3) --------------------------------------------------------------------------------
def test_disk_values_survive_close_and_reopen(tmp_path: Path) -> None:
    values = {"bytes": b"\x00\x01raw", "text": "héllo", "obj": {"n": [1, 2, None]},
              "none": None}
    cache = open_or_skip(disk_config(tmp_path))
    for k, v in values.items():
        cache.set(k, v, ttl=600)
    cache.close()
    with open_or_skip(disk_config(tmp_path)) as again:
        missing = object()
        for k, v in values.items():
            assert again.get(k, missing) == v, k
        s = again.get_stats()
        assert s.tier_stats["disk"]["enabled"] is True and s.tier_stats["disk"]["hits"] >= 4
        h = again.health_check()
        assert h["tiers"]["disk"]["enabled"] and h["tiers"]["disk"]["up"]
        assert h["disk_path"] and 0.0 <= h["disk_fill"] <= 1.0


def test_disk_ttl_and_delete_persist(tmp_path: Path) -> None:
    cache = open_or_skip(disk_config(tmp_path))
    cache.set("short", 1, ttl=0.2)
    cache.set("gone", 2)
    cache.set("kept", 3)
    assert cache.delete("gone")
    cache.close()
    time.sleep(0.3)
    with open_or_skip(disk_config(tmp_path)) as again:
        assert again.get("short") is None
        assert again.get("gone") is None
        assert again.get("kept") == 3


def test_disk_two_caches_share_a_path(tmp_path: Path) -> None:
    a = open_or_skip(disk_config(tmp_path))
    with a, open_or_skip(disk_config(tmp_path)) as b:
        a.set("shared", {"from": "a"})
        assert b.get("shared") == {"from": "a"}


# --- Redis (L2) -------------------------------------------------------------------------------
def test_redis_caches_with_same_prefix_share_entries(unique_prefix: str) -> None:
    a = open_or_skip(redis_config(unique_prefix))
    redis_url_or_fail()
    with a, SmartCache(redis_config(unique_prefix)) as b, \
            SmartCache(redis_config(unique_prefix + "other:")) as c:
        a.set("user:1", {"name": "Ada"}, ttl=60)
        a.set(b"raw", b"bytes")
        assert b.get("user:1") == {"name": "Ada"}
        assert b.get(b"raw") == b"bytes"
        assert b.exists("user:1")
        assert c.get("user:1") is None  # another prefix is another namespace
        c.set("mine", 1)
        a.clear()  # only a's prefix
        assert c.get("mine") == 1
        s = b.get_stats()
        assert s.tier_stats["redis"]["enabled"] is True and s.tier_stats["redis"]["hits"] >= 2
        h = b.health_check()
        assert h["tiers"]["redis"] == {"enabled": True, "up": True, "errors": 0,
                                       "last_error": None}


def test_redis_ttl_applies(unique_prefix: str) -> None:
    a = open_or_skip(redis_config(unique_prefix))
    redis_url_or_fail()
    with a, SmartCache(redis_config(unique_prefix)) as b:
        a.set("short", "x", ttl=0.2)
        time.sleep(0.35)
        assert b.get("short") is None


def test_redis_down_degrades_to_misses(unique_prefix: str) -> None:
    cfg = SmartCacheConfig(redis_enabled=True, redis_url="redis://127.0.0.1:1/0",
                           redis_key_prefix=unique_prefix, redis_timeout_ms=50)
    with open_or_skip(cfg) as cache:
        cache.set("k", 1)  # memory still takes it
        assert cache.get("k") == 1
        h = cache.health_check()
        assert h["tiers"]["redis"]["enabled"] and h["healthy"] is False
        assert h["tiers"]["redis"]["last_error"]


def _resp(port: int, *args: bytes) -> bytes:
    """One raw RESP command to the private test Redis (no client library needed)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), 2) as s:
        s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        return s.recv(4096)


def test_promotion_from_redis_does_not_outlive_the_redis_entry() -> None:
    """Guide, TTL and promotion: "A hit in a lower tier is copied into the tiers above it with the
    entry's *remaining* lifetime (never a fresh full TTL: that would serve stale data past its
    expiry)." L2 is the tier shared by several hosts. The bug: the remaining lifetime of an L2
    hit is computed from the absolute expiry the *writer* put in the frame, read with the
    *reader's* clock; when the writer's clock runs ahead (here 10 minutes), an entry whose Redis
    lifetime is 1 s is promoted into L1 for 10 minutes and served long after Redis dropped it.
    The frame below is exactly what a writer 10 minutes ahead stores for set(k, b"v", ttl=1)
    (layout: src/redis/frame.rs); Redis's PTTL is the lifetime all hosts agree on."""
    import os
    import struct

    from .conftest import redis_url_or_fail

    url = redis_url_or_fail()
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    prefix = f"promotion-skew-{os.getpid()}:"
    ahead_ms = 600_000
    with SmartCache(SmartCacheConfig(redis_enabled=True, redis_url=url,
                                     redis_key_prefix=prefix)) as c:
        # The Redis lifetime is 1 s; should a busy machine stall the test past it between the
        # SET and the get (the entry then rightly gone), again with a longer one.
        for px_ms in (1000, 4000, 16000):
            key = f"k{px_ms}"
            expiry = int(time.time() * 1000) + ahead_ms + px_ms
            frame = b"\xffSC\x01\x00" + struct.pack("<Q", expiry) + b"Bv"
            t0 = time.monotonic()
            assert _resp(port, b"SET", f"{prefix}{key}".encode(), frame, b"PX",
                         str(px_ms).encode()).startswith(b"+OK")
            got = c.get(key)  # an L2 hit, promoted into L1
            if got == b"v":
                break
            assert got is None and time.monotonic() - t0 >= px_ms / 1000, got
        else:
            pytest.fail("the entry was never read back within its Redis lifetime")
        # The promoted copy's lifetime is at most the PTTL read at the get, so it has passed
        # half a second after the get whatever the load.
        time.sleep(px_ms / 1000 + 0.5)
        assert _resp(port, b"EXISTS", f"{prefix}{key}".encode()).startswith(b":0")  # dropped
        assert c.get(key) is None
