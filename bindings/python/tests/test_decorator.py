"""@cached: keys, None results, single-flight (threads and asyncio), clearing, defaults."""

from __future__ import annotations

import asyncio
import enum
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from smartcache import SmartCache, SmartCacheConfig, cached, get_default_cache, set_default_cache


def test_results_are_cached_and_wraps_metadata(default_cache: SmartCache) -> None:
    calls: List[int] = []

    @cached(ttl=60)
    def square(x: int) -> int:
        """Squares x."""
        calls.append(x)
        return x * x

    assert [square(3), square(3), square(4)] == [9, 9, 16]
    assert calls == [3, 4]
    assert square.__name__ == "square" and square.__doc__ == "Squares x."
    assert square.__wrapped__(5) == 25  # type: ignore[attr-defined]
    assert square.__qualname__.endswith("square")


def test_positional_keyword_and_default_forms_share_an_entry(default_cache: SmartCache) -> None:
    calls = 0

    @cached(key_prefix="forms")
    def f(a: int, b: int = 2, *, c: str = "x") -> str:
        nonlocal calls
        calls += 1
        return f"{a}{b}{c}"

    assert f(1) == f(1, 2) == f(a=1, b=2) == f(1, b=2, c="x") == f(b=2, a=1) == "12x"
    assert calls == 1
    assert f.cache_key(1) == f.cache_key(a=1, b=2, c="x")  # type: ignore[attr-defined]
    assert f(1, 3) == "13x" and calls == 2


def test_none_results_are_cached(default_cache: SmartCache) -> None:
    calls = 0

    @cached()
    def lookup(x: int) -> Optional[int]:
        nonlocal calls
        calls += 1
        return None

    assert lookup(1) is None and lookup(1) is None
    assert calls == 1


def test_key_canonical_form_and_type_sensitivity(default_cache: SmartCache) -> None:
    class Color(enum.Enum):
        RED = 1

    @dataclass
    class Query:
        text: str

    @cached(key_prefix="canon")
    def g(*args: Any, **kwargs: Any) -> int:
        return 0

    key = g.cache_key  # type: ignore[attr-defined]
    assert key({"b": 1, "a": 2}) == key({"a": 2, "b": 1})  # dict order does not matter
    assert key({3, 1, 2}) == key({1, 2, 3})
    assert key(1) != key("1") != key(1.0) and key(True) != key(1)
    assert key([1]) != key((1,))
    assert key(x=1, y=2) == key(y=2, x=1)
    assert key(Color.RED) != key(1)
    assert key(Query("a")) == key(Query("a")) != key(Query("b"))
    # key_prefix is a namespace in front of the function's identity, which is always there
    # (a local function's identity ends with a discriminator of its code and closure).
    prefix = key(1).split(":(")[0]
    assert re.fullmatch(f"canon:{re.escape(f'{__name__}.{g.__qualname__}')}@[0-9a-f]{{16}}",
                        prefix), prefix
    assert key(1) == f"{prefix}:(*args=(i1),**kwargs={{}})"
    long_key = key("x" * 500)
    assert long_key.startswith(f"{prefix}:sha256:")
    assert len(long_key) == len(f"{prefix}:sha256:") + 64


def test_unstable_arguments_are_refused(default_cache: SmartCache) -> None:
    class Opaque:
        pass

    @cached()
    def h(o: Any) -> int:
        return 1

    with pytest.raises(TypeError, match="stable key"):
        h(Opaque())

    class WithKey:
        def __cache_key__(self) -> str:
            return "id-7"

    assert h(WithKey()) == 1


def test_default_prefix_is_module_and_qualname(default_cache: SmartCache) -> None:
    @cached()
    def named(x: int) -> int:
        return x

    assert re.match(  # a local function: its identity then its discriminator
        re.escape(f"{__name__}.test_default_prefix_is_module_and_qualname.<locals>.named@")
        + "[0-9a-f]{16}:\\(", named.cache_key(1))


def test_keys_are_stable_across_processes(tmp_path: Path) -> None:
    script = (
        "from smartcache import cached\n"
        "@cached(key_prefix='p')\n"
        "def f(a, b=None, *rest, **kw): return 1\n"
        "print(f.cache_key('s', {'z': b'\\x00', 'a': {1.5, 2}}, 3, flag=True))\n"
    )
    outs = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=env, check=True)
        outs.add(r.stdout.strip())
    assert len(outs) == 1, outs


def test_ten_threads_single_flight(default_cache: SmartCache) -> None:
    calls = 0
    lock = threading.Lock()

    @cached(ttl=60)
    def slow(x: int) -> Dict[str, int]:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.2)
        return {"x": x}

    barrier = threading.Barrier(10)
    results: List[Any] = []

    def run() -> None:
        barrier.wait()
        results.append(slow(42))

    threads = [threading.Thread(target=run) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert results == [{"x": 42}] * 10


def test_single_flight_shares_exceptions_and_caches_nothing(default_cache: SmartCache) -> None:
    calls = 0

    calling = threading.Semaphore(0)

    @cached()
    def boom(x: int) -> int:
        nonlocal calls
        calls += 1
        # The failure must come while all five callers are in the flight: wait until each is
        # about to call, then long enough for them to join it. (A fixed 0.1 s after a barrier
        # let a caller that a busy machine stalled that long start a flight of its own.)
        for _ in range(5):
            assert calling.acquire(timeout=30)
        time.sleep(0.5)
        raise RuntimeError("backend down")

    errors: List[str] = []
    barrier = threading.Barrier(5)

    def run() -> None:
        barrier.wait()
        calling.release()
        try:
            boom(1)
        except RuntimeError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=run) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == ["backend down"] * 5 and calls == 1
    for _ in range(5):
        calling.release()  # the lone call below waits for five callers too
    with pytest.raises(RuntimeError):
        boom(1)
    assert calls == 2  # failures are not cached


def test_async_single_flight(default_cache: SmartCache) -> None:
    calls = 0

    @cached(ttl=60, key_prefix="async")
    async def fetch(city: str) -> Dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return {"city": city, "temperature": 72}

    async def main() -> List[Dict[str, Any]]:
        first = await asyncio.gather(*(fetch("Oslo") for _ in range(10)))
        again = await fetch(city="Oslo")
        return first + [again]

    results = asyncio.run(main())
    assert calls == 1
    assert results == [{"city": "Oslo", "temperature": 72}] * 11
    assert asyncio.iscoroutinefunction(fetch)


def test_async_exceptions_and_cancellation(default_cache: SmartCache) -> None:
    calls = 0

    @cached()
    async def fails(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        raise ValueError("nope")

    @cached()
    async def slow(x: int) -> int:
        await asyncio.sleep(0.1)
        return x

    async def main() -> None:
        res = await asyncio.gather(*(fails(1) for _ in range(4)), return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in res) and calls == 1
        leader = asyncio.ensure_future(slow(7))
        await asyncio.sleep(0)
        waiter = asyncio.ensure_future(slow(7))
        await asyncio.sleep(0.01)
        waiter.cancel()  # a cancelled waiter must not cancel the shared computation
        assert await leader == 7

    asyncio.run(main())


def test_cache_clear_and_invalidate(default_cache: SmartCache) -> None:
    calls: List[int] = []

    @cached()
    def f(x: int) -> int:
        calls.append(x)
        return x

    @cached()
    def other(x: int) -> int:
        return -x

    for i in range(5):
        f(i)
    other(1)
    assert f.invalidate(2) is True and f.invalidate(2) is False  # type: ignore[attr-defined]
    f(2)
    assert calls == [0, 1, 2, 3, 4, 2]
    assert f.cache_clear() == 5  # type: ignore[attr-defined]
    f(0)
    assert calls[-1] == 0 and len(calls) == 7
    assert default_cache.exists(other.cache_key(1))  # type: ignore[attr-defined]


def test_explicit_cache_and_ttl() -> None:
    with SmartCache() as mine:
        calls = 0

        # A 50 ms ttl; should a busy machine stall the test past it before the second call
        # (the entry then rightly expired), again with a longer one.
        for ttl in (0.05, 0.4, 3.2):
            calls = 0
            mine.clear()

            @cached(ttl=ttl, cache=mine)
            def f() -> str:
                nonlocal calls
                calls += 1
                return "v"

            t0 = time.monotonic()
            f(), f()
            present = mine.exists(f.cache_key())  # type: ignore[attr-defined]
            if time.monotonic() - t0 < ttl - 0.001:
                assert calls == 1 and present
                break
        else:
            pytest.fail("never two calls within the ttl")
        time.sleep(ttl * 2)
        f()
        assert calls == 2


def test_set_default_cache_chooses_until_closed() -> None:
    previous = set_default_cache(None)
    try:
        @cached
        def bare(x: int) -> int:
            return x + 1

        chosen = SmartCache()
        assert set_default_cache(chosen) is None
        assert get_default_cache() is chosen
        assert bare(1) == 2
        assert chosen.exists(bare.cache_key(1))  # type: ignore[attr-defined]
        replacement = SmartCache()
        assert set_default_cache(replacement) is chosen
        assert not replacement.exists(bare.cache_key(1))  # type: ignore[attr-defined]
        bare(1)
        assert replacement.exists(bare.cache_key(1))  # type: ignore[attr-defined]
        chosen.close()
        replacement.close()
        # A closed choice no longer counts: the first cache still open, or a fresh one.
        assert get_default_cache() not in (chosen, replacement)
        assert not get_default_cache().closed
        with pytest.raises(TypeError):
            set_default_cache("nope")  # type: ignore[arg-type]
    finally:
        set_default_cache(previous)


def test_uncacheable_results_are_returned_with_a_warning(default_cache: SmartCache) -> None:
    @cached()
    def lock_factory() -> Any:
        return threading.Lock()

    with pytest.warns(RuntimeWarning, match="not cached"):
        assert lock_factory() is not None


def test_bad_decorator_arguments() -> None:
    with pytest.raises(ValueError, match="ttl"):
        cached(ttl=0)
    with pytest.raises(TypeError, match="key_prefix"):
        cached(key_prefix=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cache"):
        cached(cache="x")  # type: ignore[arg-type]


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
