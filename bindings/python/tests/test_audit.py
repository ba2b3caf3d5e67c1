"""Regression tests from the pre-review audit. Each encodes a promise of the documented contract
(docs/guide.md, docs/c-api.md) that the binding broke when the test was written."""

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


def test_async_cached_miss_then_hit_is_a_fifty_percent_hit_ratio() -> None:
    """As above, for a coroutine function (guide: @cached covers sync and async functions):
    its single-flight path also re-reads the cache and counts a second miss."""
    import asyncio

    with SmartCache(SmartCacheConfig()) as c:
        @cached(ttl=600, key_prefix="user_data_async", cache=c)
        async def get_user_data(user_id: int) -> dict:
            return {"user_id": user_id}

        async def main() -> None:
            await get_user_data(1)
            await get_user_data(1)

        asyncio.run(main())
        stats = c.get_stats()
        assert (stats.hits, stats.misses) == (1, 1)


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


@pytest.fixture
def redis_with_password(tmp_path):  # type: ignore[no-untyped-def]
    """A private redis-server that requires a password (started and stopped by pid here)."""
    import shutil
    import socket
    import subprocess

    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (scripts/ensure-deps.sh installs it)")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--requirepass", "pw", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def test_health_reports_redis_down_when_every_command_is_refused(redis_with_password: int) -> None:
    """Guide, Failure behaviour: a tier that fails "degrades to a miss or a skipped write, counted in
    its error stats and shown by health"; header: sz_tier_health.up is "1 when its last use
    succeeded", healthy "1 when every enabled tier is up". The bug: with a URL lacking the
    server's password every SET is refused (NOAUTH) and counted as an error, yet health_check()
    says redis up and the cache healthy, so a /health endpoint hides a Redis tier that stores
    nothing (the same happens for any command-level refusal)."""
    url = f"redis://127.0.0.1:{redis_with_password}/0"  # no password: every command is refused
    with SmartCache(SmartCacheConfig(redis_enabled=True, redis_url=url,
                                     redis_key_prefix="audit:")) as c:
        for i in range(5):
            c.set(f"k{i}", "v")
        h = c.health_check()
        redis = h["tiers"]["redis"]
        assert redis["errors"] > 0 and redis["last_error"]  # the failures were seen...
        assert redis["up"] is False                         # ...and health must show them
        assert h["healthy"] is False


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
    prefix = f"audit-skew-{os.getpid()}:"
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
