"""get() and get_many() re-entered from inside unpickling (nested, in threads), and close()
called from inside unpickling or while another thread unpickles: no deadlock, no crash, a clear
CacheClosedError."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest

from smartcache import CacheClosedError, SmartCache, SmartCacheConfig

from .conftest import KIB, payload


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
