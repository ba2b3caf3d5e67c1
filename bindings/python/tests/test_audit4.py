"""Fourth audit, from docs/guide.md, include/smartcache.h and this binding's README only.

1. Redis host names (guide, "L2 — Redis"): "Host names are looked up by the system resolver on a
   thread of the library's own, and a call waits for the answer only within `redis_timeout_ms`
   [...]". Run against the private redis-server of scripts/with-redis.sh
   (SMARTCACHE_TEST_REDIS_URL, bound to 127.0.0.1), addressed as "localhost".
2. L1 entry blocks from a per-thread jemalloc thread cache, created on a thread's first use and
   destroyed when the thread exits: values stay correct through many short-lived Python threads,
   and pinned values (through the C ABI, ctypes) stay valid until released, "Safe from any
   thread, and after the cache that returned it was closed".
"""

from __future__ import annotations

import ctypes
import random
import threading
import time
import uuid
from typing import Callable, List, Optional, Tuple, TypeVar
from urllib.parse import urlparse

import smartcache
from smartcache import SmartCache, SmartCacheConfig

from .conftest import redis_url_or_fail

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
    return f"audit4-py-{uuid.uuid4().hex[:10]}:"


def payload(key_id: int, n: int) -> bytes:
    """Bytes that are a function of (key id, length): any writer's value verifies."""
    return random.Random(key_id * 1_000_003 + n).randbytes(n)


# --- 1. Redis host names -------------------------------------------------------------------------

def test_redis_localhost_url_end_to_end() -> None:
    """redis://localhost:<port>/0: set through one handle, read through another whose memory
    never held the value (same redis_key_prefix), and through a memory_capacity=1 handle."""
    url, p = localhost_url(), prefix()
    # 5 s: the first call looks "localhost" up on the library's resolver thread and connects
    # within this budget; on a busy machine that thread alone can wait longer than 500 ms to
    # run, and the subject here is the round trip, not the timeout.
    cfg = SmartCacheConfig(redis_enabled=True, redis_url=url, redis_key_prefix=p,
                           redis_timeout_ms=5000)
    value = payload(1, 3000)
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
            c.set(f"cap1-{i}", payload(100 + i, 100 + i), ttl=60)
        for i in range(8):
            assert c.get(f"cap1-{i}") == payload(100 + i, 100 + i)
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


# --- 2. Memory tier through short-lived threads --------------------------------------------------

def test_short_lived_threads_set_get_overwrite_delete() -> None:
    """2000 threading.Threads, 4 at a time, each with a set / get / overwrite / delete cycle on
    one shared cache, values 1..4096 bytes checked byte for byte, and two values left behind that
    must read back after every writer is gone."""
    total = 2000
    cache = SmartCache(SmartCacheConfig(memory_capacity=20_000, compression_enabled=False))
    assert cache.raw_stats().jemalloc == 1  # jemalloc_enabled defaults to true
    failures: List[str] = []

    def worker(tid: int) -> None:
        rnd = random.Random(tid)
        try:
            own = f"own-{tid}"
            for _ in range(2):
                la, lb = rnd.randint(1, 4096), rnd.randint(1, 4096)
                cache.set(own, payload(tid, la))
                got = cache.get(own)
                if got != payload(tid, la):
                    failures.append(f"{own}: read back {len(got or b'')} bytes, set {la}")
                cache.set(own, payload(tid, lb))
                got = cache.get(own)
                if got != payload(tid, lb):
                    failures.append(f"{own}: after overwrite {len(got or b'')} bytes, set {lb}")
                if not cache.delete(own) or cache.get(own) is not None:
                    failures.append(f"{own}: delete")
                k = rnd.randrange(64)
                cache.set(f"sh-{k}", payload(10_000 + k, rnd.randint(1, 4096)))
                k2 = rnd.randrange(64)
                v = cache.get(f"sh-{k2}")
                if v is not None and v != payload(10_000 + k2, len(v)):
                    failures.append(f"sh-{k2}: foreign or torn value ({len(v)} bytes)")
            for r in range(2):
                cache.set(f"keep-{tid}-{r}", payload(100_000 + tid * 2 + r, 1 + (tid * 7 + r * 977) % 4096))
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(repr(e))

    t0 = time.monotonic()
    for start in range(0, total, 4):
        ts = [threading.Thread(target=worker, args=(tid,)) for tid in range(start, start + 4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    elapsed = time.monotonic() - t0
    assert not failures, (len(failures), failures[:5])
    lost = [tid for tid in range(total) for r in range(2)
            if cache.get(f"keep-{tid}-{r}") != payload(100_000 + tid * 2 + r,
                                                       1 + (tid * 7 + r * 977) % 4096)]
    assert not lost, f"{len(lost)} values written by exited threads are wrong or missing"
    assert cache.raw_stats().evictions == 0
    cache.close()
    assert elapsed < 20


class _Raw:
    """The C ABI through ctypes, on the library the package loaded (same process image)."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(smartcache.lib_path)
        P, S, C = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
        for name, res, args in [
            ("sz_config_new", P, []), ("sz_config_set", ctypes.c_int, [P, C, C]),
            ("sz_config_free", None, [P]), ("sz_cache_open", ctypes.c_int, [P, ctypes.POINTER(P)]),
            ("sz_cache_close", None, [P]),
            ("sz_cache_set", ctypes.c_int, [P, C, S, C, S, ctypes.c_uint64]),
            ("sz_cache_get", ctypes.c_int, [P, C, S, ctypes.POINTER(P)]),
            ("sz_cache_delete", ctypes.c_int, [P, C, S]), ("sz_cache_clear", ctypes.c_int, [P]),
            ("sz_value_data", P, [P]), ("sz_value_len", S, [P]), ("sz_value_release", None, [P]),
        ]:
            f = getattr(lib, name)
            f.restype, f.argtypes = res, args
        self.lib = lib

    def open(self, **opts: str) -> int:
        cfg = self.lib.sz_config_new()
        for k, v in opts.items():
            assert self.lib.sz_config_set(cfg, k.encode(), v.encode()) == 0, k
        out = ctypes.c_void_p()
        assert self.lib.sz_cache_open(cfg, ctypes.byref(out)) == 0
        self.lib.sz_config_free(cfg)
        return out.value  # type: ignore[return-value]

    def set(self, c: int, key: bytes, val: bytes) -> None:
        assert self.lib.sz_cache_set(c, key, len(key), val, len(val), 0) == 0

    def pin(self, c: int, key: bytes) -> Optional[int]:
        v = ctypes.c_void_p()
        rc = self.lib.sz_cache_get(c, key, len(key), ctypes.byref(v))
        return v.value if rc == 0 else None

    def bytes_of(self, v: int) -> bytes:
        n = self.lib.sz_value_len(v)
        return ctypes.string_at(self.lib.sz_value_data(v), n) if n else b""


def test_pins_from_exited_python_threads_released_by_others() -> None:
    """Pinned values (sz_cache_get) taken on Python threads that then exit stay intact through
    overwrite, delete, eviction and more thread churn, and are released by other threads, the
    last ones after the cache is closed."""
    raw = _Raw()
    c = raw.open(memory_capacity="64", compression_enabled="false")
    pins: List[Tuple[int, int, int]] = []  # (value, key id, length)
    lock = threading.Lock()

    def taker(base: int) -> None:
        for i in range(base, base + 32):
            n = 0 if i % 5 == 0 else 1 + (i * 389) % 4096
            raw.set(c, f"p-{i}".encode(), payload(i, n))
            v = raw.pin(c, f"p-{i}".encode())
            assert v is not None
            with lock:
                pins.append((v, i, n))

    for base in range(0, 256, 32):  # eight takers, one after another, each exiting
        t = threading.Thread(target=taker, args=(base,))
        t.start()
        t.join()
    assert len(pins) == 256

    def churn(tid: int) -> None:
        for i in range(64):
            n = 1 + (tid * 31 + i * 17) % 4096
            raw.set(c, f"q-{tid}-{i}".encode(), payload(50_000 + i, n))
            if i % 3 == 0:
                raw.lib.sz_cache_delete(c, f"p-{(tid + i) % 256}".encode(), len(f"p-{(tid + i) % 256}"))
            if i % 3 == 1:
                raw.set(c, f"p-{(tid + i) % 256}".encode(), b"overwritten")
    for tid in range(200):
        t = threading.Thread(target=churn, args=(tid,))
        t.start()
        t.join()
    assert raw.lib.sz_cache_clear(c) == 0

    bad: List[int] = []

    def release(part: List[Tuple[int, int, int]]) -> None:
        for v, i, n in part:
            if raw.bytes_of(v) != payload(i, n):
                bad.append(i)
            raw.lib.sz_value_release(v)
    t = threading.Thread(target=release, args=(pins[:128],))
    t.start()
    t.join()
    raw.lib.sz_cache_close(c)
    t = threading.Thread(target=release, args=(pins[128:],))
    t.start()
    t.join()
    assert not bad, f"{len(bad)} pinned values changed: {bad[:10]}"


def test_threads_with_compression_and_shared_keys() -> None:
    """Compressible values (decompressed into each pin) and raw ones from 600 short-lived threads,
    8 at a time, all on 32 shared keys: every value read is whole and belongs to its key."""
    cache = SmartCache(SmartCacheConfig(memory_capacity=1000))
    failures: List[str] = []

    def value_for(k: int, n: int) -> bytes:
        return (f"{k:04d}|".encode() * (n // 5 + 1))[:n] if n % 2 else payload(k, n)

    def worker(tid: int) -> None:
        rnd = random.Random(tid)
        try:
            for _ in range(20):
                k = rnd.randrange(32)
                n = rnd.randint(1, 4096)
                cache.set(f"s{k}", value_for(k, n))
                k2 = rnd.randrange(32)
                v: Optional[bytes] = cache.get(f"s{k2}")
                if v is not None and v != value_for(k2, len(v)):
                    failures.append(f"s{k2}: {len(v)} bytes not its own")
        except BaseException as e:  # noqa: BLE001
            failures.append(repr(e))

    for start in range(0, 600, 8):
        ts = [threading.Thread(target=worker, args=(tid,)) for tid in range(start, start + 8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    cache.close()
    assert not failures, failures[:5]


