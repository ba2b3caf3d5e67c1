"""Many threads on one cache: no crash, no torn or foreign values, clean close."""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable, List

import pytest

from smartcache import CacheClosedError, SmartCache, SmartCacheConfig

from .conftest import payload


def value_for(key: str, version: int) -> dict:
    return {"key": key, "version": version, "pad": key * 20}


def test_threads_hammering_get_set_delete_clear() -> None:
    cache = SmartCache(SmartCacheConfig(memory_capacity=500))
    keys = [f"key-{i}" for i in range(200)]
    errors: List[BaseException] = []
    stop = time.monotonic() + 1.0
    ops = [0] * 8

    def worker(n: int) -> None:
        rnd = random.Random(n)
        # A second of mixed traffic, longer for a thread a busy machine starved of CPU, until
        # it has done enough to mean something (up to 30 s).
        give_up = stop + 29.0
        try:
            while time.monotonic() < stop or (ops[n] <= 100 and time.monotonic() < give_up):
                k = rnd.choice(keys)
                r = rnd.random()
                if r < 0.5:
                    v = cache.get(k)
                    # str "k" and bytes b"k" are one key: the bytes branch below writes it too
                    assert v is None or isinstance(v, bytes) or (
                        v["key"] == k and v["pad"] == k * 20), v
                elif r < 0.85:
                    cache.set(k, value_for(k, rnd.randrange(1000)),
                              ttl=rnd.choice([None, 0.01, 5]))
                elif r < 0.97:
                    cache.delete(k)
                    cache.exists(k)
                elif r < 0.99:
                    cache.set(k.encode(), b"x" * rnd.randrange(1, 20000))  # resizes buffers
                    v = cache.get(k)
                    assert v is None or isinstance(v, (bytes, dict))
                else:
                    cache.clear()
                ops[n] += 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert all(n > 100 for n in ops), ops
    stats = cache.get_stats()
    assert stats.size <= 500
    assert stats.hits + stats.misses > 0
    cache.close()


def close_while_calling(cache: SmartCache, call: Callable[[int], None]) -> None:
    """Four threads run call(n) in a loop until the cache, closed under them after 0.1 s,
    raises CacheClosedError in each: nothing else may happen to any of them."""
    started = threading.Barrier(5)
    outcomes: List[str] = []

    def worker(n: int) -> None:
        started.wait()
        try:
            while True:
                call(n)
        except CacheClosedError:
            outcomes.append("closed")
        except BaseException as e:  # pragma: no cover
            outcomes.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.1)
    cache.close()
    for t in threads:
        t.join(5)
    assert outcomes == ["closed"] * 4


def test_close_while_other_threads_are_calling() -> None:
    cache = SmartCache()

    def set_then_get(n: int) -> None:
        cache.set(f"k{n}", n)
        assert cache.get(f"k{n}") == n

    close_while_calling(cache, set_then_get)


def test_close_while_other_threads_only_read() -> None:
    """Readers racing close() see values or CacheClosedError, never a freed cache: close
    waits for gets holding a receive buffer, and buffers taken afterwards are refused."""
    cache = SmartCache()
    for n in range(4):
        cache.set(f"k{n}", {"n": n, "pad": "x" * n * 1000})

    def read_all(_: int) -> None:
        for m in range(4):
            assert cache.get(f"k{m}") == {"n": m, "pad": "x" * m * 1000}

    close_while_calling(cache, read_all)
    with pytest.raises(CacheClosedError):
        cache.get("k0")


def test_other_threads_run_while_a_get_waits_for_redis() -> None:
    """A get runs memory hits under the GIL but lets go of it before asking Redis: against a
    server that accepts connections and never answers, other threads keep running for the
    whole redis_timeout_ms wait."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes connections; nobody ever reads or replies
    port = silent.getsockname()[1]
    cache = SmartCache(SmartCacheConfig(redis_enabled=True, redis_timeout_ms=1000,
                                        redis_url=f"redis://127.0.0.1:{port}/0"))
    spins = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal spins
        while not stop.is_set():
            spins += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.05)
        # The spinner's rate, over a measured 200 ms (a sleep may overrun on a busy machine):
        # a GIL held through the 1 s wait would allow about one switch interval's worth (5 ms)
        # of spins before and after it; released, about 1 s worth.
        before, t0 = spins, time.perf_counter()
        time.sleep(0.2)
        per_50ms = (spins - before) * 0.05 / (time.perf_counter() - t0)
        before, t0 = spins, time.perf_counter()
        assert cache.get("never-stored") is None
        waited = time.perf_counter() - t0
        during = spins - before
    finally:
        stop.set()
        spinner.join()
        cache.close()
        silent.close()
    assert waited >= 0.9, waited  # it really waited for Redis
    assert during >= 2 * per_50ms, (during, per_50ms)


def versioned(key: str, version: int) -> Any:
    n = [0, 1, 100, 4095, 4096, 4097, 20000, 70000][version % 8]
    kind = version % 3
    body = (key + ":" + str(version) + ":").encode() + payload(n, version)
    if kind == 0:
        return body
    if kind == 1:
        return {"key": key, "version": version, "body": body}
    return body.hex()


def check_versioned(key: str, v: Any) -> None:
    if isinstance(v, dict):
        assert v["key"] == key
        assert v == versioned(key, v["version"])
        return
    raw = v if isinstance(v, bytes) else bytes.fromhex(v)
    k, ver, _ = raw.split(b":", 2)
    assert k.decode() == key, (key, raw[:40])
    assert v == versioned(key, int(ver)), key


def test_get_under_threads_with_writers() -> None:
    cache = SmartCache(SmartCacheConfig(memory_capacity=10_000))
    keys = [f"key-{i}" for i in range(40)]
    for k in keys:
        cache.set(k, versioned(k, 0))
    errors: List[BaseException] = []
    done = threading.Event()

    def reader(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for _ in range(1500):
                k = rnd.choice(keys)
                v = cache.get(k)
                if v is not None:
                    check_versioned(k, v)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    def writer(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            version = 1
            while not done.is_set():
                k = rnd.choice(keys)
                if rnd.random() < 0.1:
                    cache.delete(k)
                else:
                    cache.set(k, versioned(k, version))
                version += 1
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    readers = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    writers = [threading.Thread(target=writer, args=(100 + i,)) for i in range(2)]
    for t in readers + writers:
        t.start()
    for t in readers:
        t.join(60)
    done.set()
    for t in writers:
        t.join(60)
    assert not any(t.is_alive() for t in readers + writers)
    assert not errors, errors[:3]
    cache.close()
