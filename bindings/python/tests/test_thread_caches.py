"""L1 entry blocks come from a per-thread jemalloc thread cache, created on a thread's first use
and destroyed when the thread exits: values stay correct through many short-lived Python
threads, and pinned values (through the C ABI, ctypes) stay valid until released, "Safe from any
thread, and after the cache that returned it was closed"."""

from __future__ import annotations

import ctypes
import random
import threading
import time
from typing import List, Optional, Tuple

import smartcache
from smartcache import SmartCache, SmartCacheConfig

from .conftest import keyed_payload


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
                cache.set(own, keyed_payload(tid, la))
                got = cache.get(own)
                if got != keyed_payload(tid, la):
                    failures.append(f"{own}: read back {len(got or b'')} bytes, set {la}")
                cache.set(own, keyed_payload(tid, lb))
                got = cache.get(own)
                if got != keyed_payload(tid, lb):
                    failures.append(f"{own}: after overwrite {len(got or b'')} bytes, set {lb}")
                if not cache.delete(own) or cache.get(own) is not None:
                    failures.append(f"{own}: delete")
                k = rnd.randrange(64)
                cache.set(f"sh-{k}", keyed_payload(10_000 + k, rnd.randint(1, 4096)))
                k2 = rnd.randrange(64)
                v = cache.get(f"sh-{k2}")
                if v is not None and v != keyed_payload(10_000 + k2, len(v)):
                    failures.append(f"sh-{k2}: foreign or torn value ({len(v)} bytes)")
            for r in range(2):
                cache.set(f"keep-{tid}-{r}", keyed_payload(100_000 + tid * 2 + r, 1 + (tid * 7 + r * 977) % 4096))
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
            if cache.get(f"keep-{tid}-{r}") != keyed_payload(100_000 + tid * 2 + r,
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
            raw.set(c, f"p-{i}".encode(), keyed_payload(i, n))
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
            raw.set(c, f"q-{tid}-{i}".encode(), keyed_payload(50_000 + i, n))
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
            if raw.bytes_of(v) != keyed_payload(i, n):
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
        return (f"{k:04d}|".encode() * (n // 5 + 1))[:n] if n % 2 else keyed_payload(k, n)

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
