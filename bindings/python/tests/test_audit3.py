"""Third audit, written from docs/guide.md ("Using the cache", "Python", "Prometheus") and
bindings/python/README.md only: SmartCache.get under threads and a racing close(), get() re-entered
from inside unpickling, values of many sizes through one thread's receive buffers, and the new
get_many / set_many / stats_prometheus."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional

import pytest

from smartcache import (CacheClosedError, InvalidArgumentError, KeyTooLargeError,
                        SmartCache, SmartCacheConfig, TooLargeError, ValueTooLargeError)

from .conftest import redis_url_or_fail

KIB = 1024
MIB = 1024 * 1024
SIZES = [0, 1, 4095, 4096, 4097, MIB, 3 * MIB]
# Up, down, and up again, so the receive buffer grows and shrinks while in use.
SIZE_SEQUENCE = [3 * MIB, 0, 1, MIB, 4097, 4095, 4096, 3 * MIB, 1, MIB, 0, 4097, 3 * MIB, 4095]


def payload(n: int, seed: int, compressible: bool = False) -> bytes:
    """n bytes, different per seed; compressible or not (LZ4 runs on values >= 1 KiB)."""
    if compressible:
        unit = f"<{seed}>".encode()
        return (unit * (n // len(unit) + 1))[:n]
    rnd = random.Random(seed)
    return rnd.randbytes(n)


def text_payload(n: int, seed: int) -> str:
    """A str of n characters, with non-ASCII ones (so its UTF-8 is longer than n)."""
    alphabet = "abcdefghij\u00e9\u4e2d\U0001F600"
    r = seed % len(alphabet)
    unit = alphabet[r:] + alphabet[:r] + str(seed)
    return (unit * (n // len(unit) + 1))[:n]


@pytest.fixture
def big_cache() -> Iterator[SmartCache]:
    c = SmartCache(SmartCacheConfig(memory_capacity=10_000))
    yield c
    c.close()


# ---------------------------------------------------------------------------------------------
# Values of many sizes in sequence through the same thread.
# README: "bytes and str are stored raw; anything else is pickled ... so get returns the type
# that was set." Guide: the library zeroes the bytes after a value in the receive buffer; the
# binding must still return exactly the value, never a longer or shorter one.


@pytest.mark.parametrize("compressible", [False, True])
def test_bytes_of_many_sizes_in_sequence(big_cache: SmartCache, compressible: bool) -> None:
    values = {n: payload(n, n + 1, compressible) for n in SIZES}
    for n, v in values.items():
        big_cache.set(f"b{n}", v)
    for _ in range(2):
        for n in SIZE_SEQUENCE:
            got = big_cache.get(f"b{n}")
            assert type(got) is bytes
            assert len(got) == n, (n, len(got))
            assert got == values[n], n


def test_str_of_many_sizes_in_sequence(big_cache: SmartCache) -> None:
    values = {n: text_payload(n, n) for n in SIZES}
    for n, v in values.items():
        big_cache.set(f"s{n}", v)
    for n in SIZE_SEQUENCE:
        got = big_cache.get(f"s{n}")
        assert type(got) is str
        assert len(got) == n, (n, len(got))
        assert got == values[n], n
    # A str that ends in NUL characters is returned with them (the zeroed tail is not the value).
    big_cache.set("nul", "abc\x00\x00")
    big_cache.get("s4097")
    assert big_cache.get("nul") == "abc\x00\x00"
    big_cache.set("bnul", b"\x00" * 10)
    big_cache.get("b3145728")
    assert big_cache.get("bnul") == b"\x00" * 10


def test_pickled_values_of_many_sizes_in_sequence(big_cache: SmartCache) -> None:
    values: Dict[int, Any] = {}
    for n in SIZES:
        values[n] = {"n": n, "blob": payload(n, n + 7), "list": list(range(n % 50))}
        big_cache.set(f"p{n}", values[n])
    # pickles of exactly 0/1/4095/4096/4097 stored bytes are not reachable with a dict; use
    # tuples of bytes too, whose pickles span those sizes around the boundary.
    for n in (4080, 4085, 4090, 4095, 4100):
        values[-n] = (payload(n, n),)
        big_cache.set(f"p{-n}", values[-n])
    order = SIZE_SEQUENCE + [-4080, 3 * MIB, -4085, 0, -4090, -4095, MIB, -4100, 1]
    for n in order:
        assert big_cache.get(f"p{n}") == values[n], n


def test_none_and_empty_values(big_cache: SmartCache) -> None:
    big_cache.set("none", None)
    big_cache.set("empty-bytes", b"")
    big_cache.set("empty-str", "")
    big_cache.set("big", payload(MIB, 3))
    for _ in range(3):
        assert big_cache.get("big") == payload(MIB, 3)
        assert big_cache.get("none", default="missing") is None  # stored None, not a miss
        assert big_cache.get("empty-bytes", default="missing") == b""
        assert type(big_cache.get("empty-bytes")) is bytes
        assert big_cache.get("empty-str", default="missing") == ""
        assert type(big_cache.get("empty-str")) is str
        assert big_cache.get("absent", default="missing") == "missing"
        assert big_cache.get("absent") is None


def test_many_sizes_from_disk_tier(tmp_path: Any) -> None:
    """The same sequence answered by the disk tier (a get that leaves the memory tier and
    releases the GIL), then by memory after promotion."""
    cfg = SmartCacheConfig(disk_enabled=True, disk_path=str(tmp_path / "d"),
                           disk_max_size="64M", memory_capacity=10_000)
    values = {n: payload(n, n + 11) for n in SIZES}
    with SmartCache(cfg) as c:
        for n, v in values.items():
            c.set(f"d{n}", v)
            c.set(f"t{n}", text_payload(n, n))
    with SmartCache(cfg) as c:
        for n in SIZE_SEQUENCE:
            assert c.get(f"d{n}") == values[n], n
            assert c.get(f"t{n}") == text_payload(n, n), n
        assert c.raw_stats().disk_hits >= len(SIZES)
        for n in reversed(SIZE_SEQUENCE):
            assert c.get(f"d{n}") == values[n], n


# ---------------------------------------------------------------------------------------------
# get() re-entered from inside unpickling.

_REENTRANT_CACHE: Optional[SmartCache] = None


class Reentrant:
    """An object whose unpickling reads other entries of the cache (a lazy reference)."""

    def __init__(self, ref: str, depth: int = 0) -> None:
        self.ref = ref
        self.depth = depth
        self.loaded: Any = None

    def __getstate__(self) -> Dict[str, Any]:
        return {"ref": self.ref, "depth": self.depth}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.ref = state["ref"]
        self.depth = state["depth"]
        assert _REENTRANT_CACHE is not None
        self.loaded = _REENTRANT_CACHE.get(self.ref)


class ReentrantMany:
    def __init__(self, refs: List[str]) -> None:
        self.refs = refs
        self.loaded: Any = None

    def __getstate__(self) -> Dict[str, Any]:
        return {"refs": self.refs}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.refs = state["refs"]
        assert _REENTRANT_CACHE is not None
        self.loaded = _REENTRANT_CACHE.get_many(self.refs)


@pytest.fixture
def reentrant_cache() -> Iterator[SmartCache]:
    global _REENTRANT_CACHE
    c = SmartCache(SmartCacheConfig(memory_capacity=10_000))
    _REENTRANT_CACHE = c
    yield c
    _REENTRANT_CACHE = None
    c.close()


def test_get_reentered_from_unpickling(reentrant_cache: SmartCache) -> None:
    c = reentrant_cache
    inner_big = payload(200 * KIB, 5)
    c.set("inner-big", inner_big)
    c.set("inner-small", b"tiny")
    c.set("inner-text", "some text " * 500)
    # The outer value: data before and after the re-entrant object, so if the inner get
    # overwrote the buffer the outer unpickling is reading, the rest would come out wrong.
    head = payload(50 * KIB, 6)
    tail = payload(70 * KIB, 7)
    outer = [head, Reentrant("inner-big"), "middle" * 100, Reentrant("inner-small"),
             Reentrant("inner-text"), Reentrant("inner-missing"), tail, {"k": list(range(300))}]
    c.set("outer", outer)
    for _ in range(5):
        got = c.get("outer")
        assert got[0] == head
        assert got[1].loaded == inner_big
        assert got[2] == "middle" * 100
        assert got[3].loaded == b"tiny"
        assert got[4].loaded == "some text " * 500
        assert got[5].loaded is None
        assert got[6] == tail
        assert got[7] == {"k": list(range(300))}


def test_get_reentered_nested_chain(reentrant_cache: SmartCache) -> None:
    """Each level's unpickling gets the next level, which is itself re-entrant."""
    c = reentrant_cache
    depth = 8
    c.set("level-end", ["end", payload(3 * KIB, 99)])
    for d in range(depth - 1, -1, -1):
        nxt = "level-end" if d == depth - 1 else f"level-{d + 1}"
        c.set(f"level-{d}", [payload(1000 + 500 * d, d), Reentrant(nxt, d), f"after-{d}"])
    got = c.get("level-0")
    for d in range(depth):
        assert got[0] == payload(1000 + 500 * d, d), d
        assert got[2] == f"after-{d}", d
        got = got[1].loaded
    assert got == ["end", payload(3 * KIB, 99)]


def test_get_many_reentered_from_unpickling(reentrant_cache: SmartCache) -> None:
    c = reentrant_cache
    c.set_many({"m1": payload(10 * KIB, 1), "m2": "two", "m3": None})
    c.set("holder", [payload(20 * KIB, 2), ReentrantMany(["m1", "m2", "m3", "mx"]), "end"])
    got = c.get("holder")
    assert got[0] == payload(20 * KIB, 2)
    assert got[1].loaded == {"m1": payload(10 * KIB, 1), "m2": "two", "m3": None}
    assert got[2] == "end"
    # And get_many whose own values re-enter get.
    c.set("r1", Reentrant("m1"))
    c.set("r2", [Reentrant("m2"), payload(5 * KIB, 5)])
    many = c.get_many(["r1", "r2", "absent"])
    assert set(many) == {"r1", "r2"}
    assert many["r1"].loaded == payload(10 * KIB, 1)
    assert many["r2"][0].loaded == "two" and many["r2"][1] == payload(5 * KIB, 5)


def test_reentrant_unpickling_in_threads(reentrant_cache: SmartCache) -> None:
    c = reentrant_cache
    for i in range(20):
        c.set(f"leaf-{i}", payload(1000 * (i + 1), i))
        c.set(f"node-{i}", [payload(300 * i, i + 100), Reentrant(f"leaf-{i}"), i])
    errors: List[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for j in range(300):
                i = (seed * 7 + j) % 20
                got = c.get(f"node-{i}")
                assert got[0] == payload(300 * i, i + 100)
                assert got[1].loaded == payload(1000 * (i + 1), i)
                assert got[2] == i
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]


class SlowToUnpickle:
    """Unpickling it signals that a get() is decoding, then takes a while."""
    inside = threading.Event()

    def __getstate__(self) -> Dict[str, Any]:
        return {}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        SlowToUnpickle.inside.set()
        time.sleep(0.3)


CLOSE_FROM_UNPICKLING = r"""
import sys, threading
from smartcache import CacheClosedError, SmartCache, SmartCacheConfig

cache = SmartCache(SmartCacheConfig(memory_capacity=100))

class ClosesTheCache:
    # Unpickling it closes the cache it is being read from, then reads the cache again.
    def __getstate__(self):
        return {}
    def __setstate__(self, state):
        cache.close()
        try:
            cache.get("other")
            self.after_close = "returned"
        except CacheClosedError:
            self.after_close = "closed"

cache.set("other", "x")
cache.set("closer", [bytes(range(256)) * SIZE, ClosesTheCache(), "tail"])
try:
    r = cache.get("closer")
    assert r[0] == bytes(range(256)) * SIZE and r[2] == "tail", "outer value damaged"
    assert r[1].after_close == "closed", r[1].after_close
    print("returned")
except CacheClosedError:
    print("closed")
try:
    cache.get("other")
    print("get after close returned")
except CacheClosedError:
    print("ok")
"""


@pytest.mark.parametrize("size", [1, 40])  # 256 B (fits the first buffer) and 10 KiB
def test_close_from_inside_unpickling(size: int) -> None:
    """close() called by the very get() that is decoding (from __setstate__, on the same
    thread): no hang; the nested get after close raises CacheClosedError; the outer get returns
    its value or raises CacheClosedError; later gets raise CacheClosedError. Run in a child
    process, so a hang fails this test instead of the whole run."""
    script = CLOSE_FROM_UNPICKLING.replace("SIZE", str(size))
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=5, env=dict(os.environ))
    except subprocess.TimeoutExpired:
        pytest.fail("get() -> __setstate__ -> cache.close() on the same thread hung "
                    "(still running after 5 s)")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split()
    assert lines[0] in ("returned", "closed") and lines[1] == "ok", out.stdout


def test_close_while_another_thread_is_unpickling(reentrant_cache: SmartCache) -> None:
    c = reentrant_cache
    SlowToUnpickle.inside.clear()
    c.set("slow", [payload(20 * KIB, 2), SlowToUnpickle(), "tail"])
    result: List[Any] = []

    def run() -> None:
        try:
            result.append(c.get("slow"))
        except CacheClosedError as e:
            result.append(e)
        except BaseException as e:  # pragma: no cover
            result.append(("unexpected", e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert SlowToUnpickle.inside.wait(20)
    closer = threading.Thread(target=c.close, daemon=True)
    closer.start()
    closer.join(20)
    t.join(20)
    assert not closer.is_alive(), "close() hung while another thread was decoding a value"
    assert not t.is_alive()
    r = result[0]
    assert isinstance(r, (list, CacheClosedError)), r
    if isinstance(r, list):
        assert r[0] == payload(20 * KIB, 2) and r[2] == "tail"
    with pytest.raises(CacheClosedError):
        c.get("slow")


# ---------------------------------------------------------------------------------------------
# Threads. Guide: "a SmartCache is shared freely between threads".


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


def _close_race(cfg: SmartCacheConfig, value_size: int) -> None:
    """Threads get() in a loop while the main thread closes the cache: every get returns the
    value or raises CacheClosedError; after close every get raises CacheClosedError; no crash,
    no hang, no other exception."""
    for round_ in range(5):
        cache = SmartCache(cfg)
        value = payload(value_size, round_)
        for i in range(20):
            cache.set(f"k{i}", value)
        started = threading.Barrier(7)
        outcome: Dict[int, str] = {}
        errors: List[BaseException] = []

        def worker(n: int) -> None:
            gets = 0
            try:
                started.wait(30)
                while True:
                    key = f"k{(n + gets) % 25}"  # k20..k24 are misses
                    v = cache.get(key)
                    assert v is None or v == value
                    gets += 1
                    if gets > 5_000_000:  # pragma: no cover - never closed
                        outcome[n] = "never closed"
                        return
            except CacheClosedError:
                outcome[n] = "closed"
                # Once closed, every further call raises it too.
                try:
                    cache.get("k0")
                    errors.append(AssertionError("get after CacheClosedError returned"))
                except CacheClosedError:
                    pass
            except BaseException as e:  # pragma: no cover
                errors.append(e)
                outcome[n] = repr(e)

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(6)]
        for t in threads:
            t.start()
        started.wait(30)
        time.sleep(0.02 * (round_ + 1))
        cache.close()
        for t in threads:
            t.join(30)
        hung = [t for t in threads if t.is_alive()]
        assert not hung, f"{len(hung)} threads still in get() 30 s after close()"
        assert not errors, errors[:3]
        assert outcome == {i: "closed" for i in range(6)}, outcome
        with pytest.raises(CacheClosedError):
            cache.get("k0")
        cache.close()  # a second close is harmless


def test_close_races_gets_memory_only() -> None:
    _close_race(SmartCacheConfig(memory_capacity=10_000), 5000)


def test_close_races_gets_disk_tier(tmp_path: Any) -> None:
    # memory_capacity 10: most gets leave memory for the disk (and release the GIL).
    _close_race(SmartCacheConfig(memory_capacity=10, disk_enabled=True,
                                 disk_path=str(tmp_path / "d"), disk_max_size="16M"), 3000)


def test_close_races_gets_redis_tier() -> None:
    prefix = f"audit3-close-{uuid.uuid4().hex[:8]}:"
    _close_race(SmartCacheConfig(memory_capacity=10, redis_enabled=True,
                                 redis_url=redis_url_or_fail(), redis_key_prefix=prefix,
                                 redis_timeout_ms=1000), 2000)


def test_close_races_get_many_and_set_many() -> None:
    cache = SmartCache(SmartCacheConfig(memory_capacity=10_000))
    cache.set_many({f"k{i}": i for i in range(10)})
    errors: List[BaseException] = []
    closed: List[int] = []
    barrier = threading.Barrier(5)

    def worker(n: int) -> None:
        try:
            barrier.wait(30)
            while True:
                if n % 2:
                    got = cache.get_many([f"k{i}" for i in range(12)])
                    assert all(got[f"k{i}"] == i for i in range(10)) and len(got) == 10
                else:
                    cache.set_many({f"k{i}": i for i in range(10)})
        except CacheClosedError:
            closed.append(n)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    barrier.wait(30)
    time.sleep(0.05)
    cache.close()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]
    assert sorted(closed) == [0, 1, 2, 3]


@pytest.mark.parametrize("op", ["get", "get_many", "set"])
def test_silent_redis_does_not_stall_other_threads(op: str) -> None:
    """Guide: "get() keeps the GIL while it reads the memory tier ... and releases it before it
    asks Redis or the disk tier, so a slow or silent Redis never stalls the other threads;
    set() and the other calls release it for their whole call." A Redis that accepts
    connections and never answers: while one thread waits in get() for it, the main thread
    runs Python code and memory-tier gets."""
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)  # connections complete in the backlog; nothing ever answers
    port = srv.getsockname()[1]
    try:
        # 2 s of waiting for Redis: the main thread's 150 ms pause and 1000 gets must fit in it
        # even when a busy machine stalls them.
        cache = SmartCache(SmartCacheConfig(redis_enabled=True,
                                            redis_url=f"redis://127.0.0.1:{port}/0",
                                            redis_timeout_ms=2000, redis_key_prefix="silent:"))
        cache.set("local", "in memory")  # memory has it whatever Redis does
        entered = threading.Event()
        done: List[float] = []

        def blocked() -> None:
            entered.set()
            t0 = time.monotonic()
            if op == "get":
                cache.get("not-in-memory")
            elif op == "get_many":
                cache.get_many(["not-in-memory", "neither"])
            else:
                cache.set("to-redis", "v")
            done.append(time.monotonic() - t0)

        t = threading.Thread(target=blocked, daemon=True)
        t.start()
        assert entered.wait(10)
        time.sleep(0.15)  # let it reach Redis
        for _ in range(1000):
            assert cache.get("local") == "in memory"
        progressed_while_blocked = t.is_alive()
        t.join(30)
        assert not t.is_alive()
        # The premise: the call did wait for Redis (the breaker was not open yet).
        assert done and done[0] >= 1.0, done
        assert progressed_while_blocked, (
            f"the main thread could not run while another thread's {op}() waited "
            f"{done[0] if done else '?'} s for a silent Redis")
        cache.close()
    finally:
        srv.close()


# ---------------------------------------------------------------------------------------------
# get_many / set_many. README: "cache.set_many({"a": 1, "b": 2}, ttl=60)  # one call; Redis
# gets one pipelined round trip"; "cache.get_many(["a", "b", "c"])  # {'a': 1, 'b': 2}: missing
# keys left out (one MGET)". Header, sz_cache_set_many: "Every key and value is checked before
# anything is stored."


def test_get_many_set_many_documented_example(big_cache: SmartCache) -> None:
    assert big_cache.set_many({"a": 1, "b": 2}, ttl=60) is None
    assert big_cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    assert big_cache.get("a") == 1 and big_cache.get("b") == 2


def test_get_many_types_and_sizes(big_cache: SmartCache) -> None:
    items: Dict[str, Any] = {
        "none": None, "empty-bytes": b"", "empty-str": "", "str": "h\u00e9llo",
        "bytes": b"\x00\x01\xff", "dict": {"x": [1, 2, 3]}, "int": 7,
    }
    for n in SIZES:
        items[f"size-{n}"] = payload(n, n)
    big_cache.set_many(items)
    keys = list(items) + ["missing-1", "missing-2"]
    got = big_cache.get_many(keys)
    assert got == items
    assert "missing-1" not in got and "missing-2" not in got
    assert "none" in got and got["none"] is None  # a stored None is present, not missing
    assert type(got["empty-bytes"]) is bytes and type(got["empty-str"]) is str
    for k, v in items.items():  # get agrees with get_many
        assert big_cache.get(k, default="missing") == v, k
    assert big_cache.get_many([]) == {}
    assert big_cache.get_many(["missing-1"]) == {}


def test_get_many_bytes_and_str_keys(big_cache: SmartCache) -> None:
    big_cache.set_many({b"bin\x00key": "binary", "text": b"raw"})
    got = big_cache.get_many([b"bin\x00key", "text"])
    assert got == {b"bin\x00key": "binary", "text": b"raw"}
    assert big_cache.get_many([b"text"]) == {b"text": b"raw"}  # "k" and b"k" are one key


def test_set_many_empty_is_a_no_op(big_cache: SmartCache) -> None:
    big_cache.set_many({})
    assert big_cache.raw_stats().sets == 0


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


def test_set_many_bad_item_does_not_overwrite_existing(big_cache: SmartCache) -> None:
    big_cache.set("keep", "old")
    with pytest.raises(InvalidArgumentError):
        big_cache.set_many({"keep": "new", "": "bad"})
    assert big_cache.get("keep") == "old"


def test_get_many_errors(big_cache: SmartCache) -> None:
    with pytest.raises(InvalidArgumentError):
        big_cache.get_many(["a", ""])
    with pytest.raises(TooLargeError):
        big_cache.get_many(["a", "k" * 65536])
    with pytest.raises(TypeError):
        big_cache.get_many(["a", 3])  # type: ignore[list-item]


def test_many_after_close() -> None:
    c = SmartCache(SmartCacheConfig())
    c.close()
    with pytest.raises(CacheClosedError):
        c.get_many(["a"])
    with pytest.raises(CacheClosedError):
        c.set_many({"a": 1})
    with pytest.raises(CacheClosedError):
        c.stats_prometheus()


def test_set_many_ttl(big_cache: SmartCache) -> None:
    t0 = time.monotonic()
    big_cache.set_many({"short-1": 1, "short-2": 2}, ttl=0.3)
    big_cache.set_many({"long": 3}, ttl=60)
    got = big_cache.get_many(["short-1", "short-2", "long"])
    # The short entries must be there only if the get surely began within their 0.3 s (a busy
    # machine can stall this thread longer between the calls).
    if time.monotonic() - t0 < 0.299:
        assert got == {"short-1": 1, "short-2": 2, "long": 3}
    else:
        assert got["long"] == 3 and set(got) <= {"short-1", "short-2", "long"}, got
    time.sleep(1.0)
    assert big_cache.get_many(["short-1", "short-2", "long"]) == {"long": 3}


def test_many_through_redis() -> None:
    prefix = f"audit3-many-{uuid.uuid4().hex[:8]}:"
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


# ---------------------------------------------------------------------------------------------
# stats_prometheus. Guide: "the same snapshot in the Prometheus text exposition format (0.0.4)
# ... Metrics, all prefixed smartcache_: hits_total, misses_total, sets_total, deletes_total,
# evictions_total, expirations_total (counters); hit_ratio, ops_per_second, size, capacity,
# memory_bytes, compression_ratio (gauges); per enabled tier, labelled {tier="..."}: tier_up,
# tier_hits_total, tier_misses_total, tier_errors_total; latency_seconds{tier,op,quantile}
# ...; disk_fill_ratio when the disk tier is on."

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse_prometheus(text: str) -> Dict[str, Any]:
    types: Dict[str, str] = {}
    samples: Dict[str, float] = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "untyped", "summary", "histogram"), line
            assert name not in types, f"duplicate TYPE for {name}"
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    for key in samples:
        name = key.split("{")[0]
        assert name in types, f"sample {key} has no TYPE line"
    return {"types": types, "samples": samples}


COUNTERS = ["hits_total", "misses_total", "sets_total", "deletes_total", "evictions_total",
            "expirations_total"]
GAUGES = ["hit_ratio", "ops_per_second", "size", "capacity", "memory_bytes", "compression_ratio"]


def test_prometheus_counters_match_operations() -> None:
    cache = SmartCache(SmartCacheConfig(memory_capacity=100))
    text = cache.stats_prometheus()
    assert isinstance(text, str) and text.endswith("\n")
    p = parse_prometheus(text)
    for name in COUNTERS:
        assert p["types"]["smartcache_" + name] == "counter", name
        assert p["samples"]["smartcache_" + name] == 0, name
    for name in GAUGES:
        assert p["types"]["smartcache_" + name] == "gauge", name
    for i in range(7):
        cache.set(f"k{i}", i)           # 7 sets
    for i in range(5):
        assert cache.get(f"k{i}") == i  # 5 hits
    for i in range(3):
        assert cache.get(f"nope{i}") is None  # 3 misses
    assert cache.delete("k0")          # 1 delete
    s = parse_prometheus(cache.stats_prometheus())["samples"]
    assert s["smartcache_sets_total"] == 7
    assert s["smartcache_hits_total"] == 5
    assert s["smartcache_misses_total"] == 3
    assert s["smartcache_deletes_total"] == 1
    assert s["smartcache_size"] == 6
    assert s["smartcache_capacity"] == 100
    assert s["smartcache_hit_ratio"] == pytest.approx(5 / 8)
    assert s['smartcache_tier_hits_total{tier="memory"}'] == 5
    assert s['smartcache_tier_misses_total{tier="memory"}'] == 3
    assert s['smartcache_tier_up{tier="memory"}'] == 1
    # Only the memory tier is enabled.
    assert not any('tier="redis"' in k or 'tier="disk"' in k for k in s), sorted(s)
    assert "smartcache_disk_fill_ratio" not in s
    # Agrees with get_stats().
    st = cache.get_stats()
    assert st.hits == 5 and st.misses == 3
    cache.close()


def test_one_get_of_a_large_value_counts_one_hit() -> None:
    """One get() is one get: sz_stats.hits is "Gets answered by any tier", and the Prometheus
    hits_total / tier_hits_total count gets. A value larger than the binding's current receive
    buffer must not count twice (the binding's internal retry is not a second get)."""
    sizes = [4097, 64 * KIB, MIB, 3 * MIB, 8 * MIB, 15 * MIB]
    cache = SmartCache(SmartCacheConfig(memory_capacity=100))
    for n in sizes:
        cache.set(f"v{n}", payload(n, n))
    gets = 0
    for n in sizes:
        assert cache.get(f"v{n}") == payload(n, n)
        gets += 1
    st = cache.raw_stats()
    s = parse_prometheus(cache.stats_prometheus())["samples"]
    assert (st.hits, st.memory_hits) == (gets, gets), \
        f"{gets} get() calls counted as {st.hits} hits ({st.memory_hits} memory hits)"
    assert s["smartcache_hits_total"] == gets
    assert s['smartcache_tier_hits_total{tier="memory"}'] == gets
    cache.close()


def test_one_get_from_disk_counts_one_hit(tmp_path: Any) -> None:
    """A large value answered by the disk tier: one get(), one hit (a disk hit), not a disk hit
    plus a memory hit."""
    cfg = SmartCacheConfig(disk_enabled=True, disk_path=str(tmp_path / "d"), disk_max_size="64M")
    with SmartCache(cfg) as c:
        c.set("big", payload(6 * MIB, 1))
    with SmartCache(cfg) as c:
        assert c.get("big") == payload(6 * MIB, 1)
        st = c.raw_stats()
        got = (st.hits, st.disk_hits, st.memory_hits, st.misses)
        assert got == (1, 1, 0, 0), f"one get() from disk counted as (hits, disk_hits, " \
                                    f"memory_hits, misses) = {got}"
        s = parse_prometheus(c.stats_prometheus())["samples"]
        assert s["smartcache_hits_total"] == 1


def test_prometheus_counts_batch_operations() -> None:
    cache = SmartCache(SmartCacheConfig(memory_capacity=100))
    cache.set_many({"a": 1, "b": 2, "c": 3})
    assert cache.get_many(["a", "b", "x"]) == {"a": 1, "b": 2}
    s = parse_prometheus(cache.stats_prometheus())["samples"]
    st = cache.raw_stats()
    assert s["smartcache_hits_total"] == st.hits == 2
    assert s["smartcache_misses_total"] == st.misses == 1
    assert s["smartcache_sets_total"] == st.sets == 3
    cache.close()


def test_prometheus_with_disk_tier(tmp_path: Any) -> None:
    cfg = SmartCacheConfig(disk_enabled=True, disk_path=str(tmp_path / "d"), disk_max_size="16M")
    with SmartCache(cfg) as c:
        c.set("k", payload(500, 1))
    with SmartCache(cfg) as c:
        assert c.get("k") == payload(500, 1)      # disk hit
        assert c.get("absent") is None            # memory miss, disk miss
        p = parse_prometheus(c.stats_prometheus())
        s = p["samples"]
        assert s['smartcache_tier_hits_total{tier="disk"}'] == 1
        assert s['smartcache_tier_misses_total{tier="disk"}'] == 1
        assert s['smartcache_tier_up{tier="disk"}'] == 1
        assert s['smartcache_tier_errors_total{tier="disk"}'] == 0
        assert s["smartcache_hits_total"] == 1 and s["smartcache_misses_total"] == 1
        assert 0 < s["smartcache_disk_fill_ratio"] <= 1
        assert p["types"]["smartcache_disk_fill_ratio"] == "gauge"
        assert not any('tier="redis"' in k for k in s)
        # Disk operations are all timed: a get latency for the disk tier, in seconds.
        lat = {k: v for k, v in s.items() if k.startswith("smartcache_latency_seconds{")}
        disk_get = [v for k, v in lat.items() if 'tier="disk"' in k and 'op="get"' in k]
        assert len(disk_get) == 2, sorted(lat)  # quantile 0.5 and 0.99
        assert all(0 < v < 10 for v in disk_get)
        assert p["types"]["smartcache_latency_seconds"] == "gauge"


def test_prometheus_with_redis_tier() -> None:
    prefix = f"audit3-prom-{uuid.uuid4().hex[:8]}:"
    cfg = SmartCacheConfig(redis_enabled=True, redis_url=redis_url_or_fail(),
                           redis_key_prefix=prefix, redis_timeout_ms=1000)
    with SmartCache(cfg) as a, SmartCache(cfg) as b:
        a.set("k", "v")
        assert b.get("k") == "v"          # redis hit
        assert b.get("absent") is None    # redis miss
        s = parse_prometheus(b.stats_prometheus())["samples"]
        assert s['smartcache_tier_hits_total{tier="redis"}'] == 1
        assert s['smartcache_tier_misses_total{tier="redis"}'] == 1
        assert s['smartcache_tier_up{tier="redis"}'] == 1
        assert not any('tier="disk"' in k for k in s)
        a.clear()
