"""@cached re-entered on its own key (sync and async, directly and through other calls), arguments
with no finite text form, and results that cannot be stored."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any, Dict, List

import pytest

from smartcache import SmartCache, SmartCacheConfig, cached


@pytest.fixture
def cache() -> Any:
    c = SmartCache(SmartCacheConfig(memory_capacity=1000))
    yield c
    c.close()


def test_async_function_awaiting_its_own_key_runs_the_body_again_like_sync(
        cache: SmartCache) -> None:
    runs = {"n": 0}

    @cached(ttl=60, cache=cache)
    async def f(x: int) -> str:
        runs["n"] += 1
        if runs["n"] > 2:
            return "done"
        return await f(x)  # same arguments: same key

    async def main() -> List[str]:
        first = await asyncio.wait_for(f(1), 5)
        second = await asyncio.wait_for(f(1), 5)  # the key is not stuck: a plain hit
        return [first, second]

    assert asyncio.run(main()) == ["done", "done"]
    assert runs["n"] == 3  # body re-entered twice, then one cached hit


def test_sync_function_calling_its_own_key_runs_the_body_again(cache: SmartCache) -> None:
    runs = {"n": 0}

    @cached(ttl=60, cache=cache)
    def f(x: int) -> str:
        runs["n"] += 1
        return "done" if runs["n"] > 2 else f(x)

    assert f(1) == "done" and f(1) == "done" and runs["n"] == 3


def test_async_recursion_through_another_function_and_a_task_does_not_hang(
        cache: SmartCache) -> None:
    runs = {"n": 0}

    async def middle(x: int) -> str:
        return await asyncio.create_task(outer(x))  # a task of its own: inherits the context

    @cached(ttl=60, cache=cache)
    async def outer(x: int) -> str:
        runs["n"] += 1
        if runs["n"] > 1:
            return "inner"
        return "outer(" + await middle(x) + ")"

    assert asyncio.run(asyncio.wait_for(outer(7), 5)) == "outer(inner)"
    assert asyncio.run(asyncio.wait_for(outer(7), 5)) == "outer(inner)"


def test_concurrent_callers_still_share_one_flight_after_the_recursion_fix(
        cache: SmartCache) -> None:
    runs = {"n": 0}

    @cached(ttl=60, cache=cache)
    async def slow(x: int) -> int:
        runs["n"] += 1
        await asyncio.sleep(0.05)
        return x * 2

    async def main() -> List[int]:
        return list(await asyncio.gather(*(slow(3) for _ in range(10))))

    assert asyncio.run(main()) == [6] * 10
    assert runs["n"] == 1


def test_async_flight_that_failed_leaves_no_stuck_key(cache: SmartCache) -> None:
    runs = {"n": 0}

    @cached(ttl=60, cache=cache)
    async def flaky(x: int) -> int:
        runs["n"] += 1
        if runs["n"] == 1:
            raise RuntimeError("first run fails")
        return x

    async def main() -> int:
        with pytest.raises(RuntimeError):
            await flaky(1)
        return await asyncio.wait_for(flaky(1), 5)

    assert asyncio.run(main()) == 1


def test_self_referencing_argument_raises_type_error(cache: SmartCache) -> None:
    @cached(ttl=60, cache=cache)
    def f(x: Any) -> str:
        return "never"

    loop: List[Any] = []
    loop.append(loop)
    looping_dict: Dict[str, Any] = {}
    looping_dict["self"] = looping_dict
    for arg in (loop, looping_dict):
        with pytest.raises(TypeError, match="self-referencing or nested too deeply"):
            f(arg)
        with pytest.raises(TypeError):
            f.cache_key(arg)


def test_very_deeply_nested_argument_raises_type_error(cache: SmartCache) -> None:
    @cached(ttl=60, cache=cache)
    def f(x: Any) -> str:
        return "never"

    deep: List[Any] = []
    cur = deep
    for _ in range(100000):
        nxt: List[Any] = []
        cur.append(nxt)
        cur = nxt
    with pytest.raises(TypeError, match="nested too deeply"):
        f(deep)


def test_unpicklable_result_is_returned_not_cached_and_warned_once(cache: SmartCache) -> None:
    runs = {"n": 0}

    @cached(ttl=60, cache=cache)
    def make_closure(x: int) -> Any:
        runs["n"] += 1
        return lambda: x

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert make_closure(1)() == 1
        assert make_closure(1)() == 1
        assert make_closure(2)() == 2
    assert runs["n"] == 3  # not cached: the body runs at every call
    unstored = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(unstored) == 1
    assert "make_closure" in str(unstored[0].message)
    assert "not cached" in str(unstored[0].message)
    assert not cache.exists(make_closure.cache_key(1))


def test_unpicklable_async_result_is_warned_once(cache: SmartCache) -> None:
    @cached(ttl=60, cache=cache)
    async def make_closure(x: int) -> Any:
        return lambda: x

    async def main() -> None:
        for i in range(3):
            assert (await make_closure(i))() == i

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(main())
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)
                and "make_closure" in str(w.message)]) == 1
