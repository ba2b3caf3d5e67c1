"""close() racing gets, get_many and set_many on other threads (memory only, disk tier, Redis
tier): every call returns a correct value or CacheClosedError, never a crash or a wrong value."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Dict, List

import pytest

from smartcache import CacheClosedError, SmartCache, SmartCacheConfig

from .conftest import payload, redis_url_or_fail


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
    prefix = f"close-race-{uuid.uuid4().hex[:8]}:"
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
