"""The async API's off-loop path: the library's worker threads and the loop's completion queue
(smartcache._offload over sz_queue_*). No Python thread serves it; a burst of gets reaches
Redis as a few MGETs; closing the cache or cancelling callers with calls in flight neither
hangs nor leaks; a forked child runs async calls on a queue of its own."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest
import redis

from smartcache import CacheClosedError, SerializationError, SmartCache, SmartCacheConfig
from smartcache import _offload

from .conftest import open_or_skip, redis_url_or_fail
from .delay_proxy import DelayProxy, redis_host_port


def config(prefix: str, url: str = "", **kw: Any) -> SmartCacheConfig:
    return SmartCacheConfig(redis_enabled=True, redis_url=url or redis_url_or_fail(),
                            redis_key_prefix=prefix, redis_timeout_ms=5000, **kw)


def redis_calls(command: str) -> int:
    stats: Dict[str, Any] = redis.Redis.from_url(redis_url_or_fail()).info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_no_python_thread_serves_lower_tier_calls(tmp_path: Path, unique_prefix: str) -> None:
    with open_or_skip(config(unique_prefix, disk_enabled=True,
                             disk_path=str(tmp_path / "d"))) as cache:
        before = {t.name for t in threading.enumerate()}

        async def main() -> None:
            await cache.aset_many({f"k{i}": i for i in range(50)})
            await asyncio.gather(*(cache.aset(f"s{i}", i) for i in range(50)))
            assert await cache.aexists("k1") and await cache.adelete("k1")

        asyncio.run(main())
        assert {t.name for t in threading.enumerate()} == before


def test_a_burst_of_agets_reaches_redis_as_a_few_mgets(unique_prefix: str) -> None:
    n = 600
    with open_or_skip(config(unique_prefix)) as writer:
        writer.set_many({f"k{i}": i for i in range(n)})
    with open_or_skip(config(unique_prefix)) as cache:  # empty memory tier
        gets, mgets = redis_calls("get"), redis_calls("mget")

        async def main() -> List[Any]:
            return list(await asyncio.gather(*(cache.aget(f"k{i}") for i in range(n))))

        assert asyncio.run(main()) == list(range(n))
        assert redis_calls("get") == gets  # no get of its own per key
        # One MGET per 256 keys a worker takes; a worker that wakes while the burst is still
        # being queued takes a smaller share, so a few more than the minimum of 3.
        assert 3 <= redis_calls("mget") - mgets <= 12


def test_a_value_that_does_not_decode_fails_only_its_caller(unique_prefix: str) -> None:
    with open_or_skip(config(unique_prefix)) as writer:  # pickle
        writer.set("pickled", {1, 2})
    with open_or_skip(config(unique_prefix), serializer="json") as writer:
        writer.set_many({f"j{i}": [i] for i in range(20)})
    with open_or_skip(config(unique_prefix), serializer="json") as cache:
        async def main() -> List[Any]:
            return list(await asyncio.gather(
                cache.aget("pickled"), *(cache.aget(f"j{i}") for i in range(20)),
                return_exceptions=True))

        results = asyncio.run(main())
        assert isinstance(results[0], SerializationError)
        assert results[1:] == [[i] for i in range(20)]


def test_closing_the_cache_with_calls_in_flight(unique_prefix: str) -> None:
    """Closed from the loop while 300 gets and 100 sets wait on a slow Redis: every call ends
    (its value, or CacheClosedError), none hangs, and later calls are refused."""
    host, port = redis_host_port(redis_url_or_fail())
    with DelayProxy(host, port, 0.1) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        with open_or_skip(config(unique_prefix)) as writer:
            writer.set_many({f"k{i}": i for i in range(300)})
        cache = open_or_skip(config(unique_prefix, url))

        async def main() -> List[Any]:
            calls = [cache.aget(f"k{i}") for i in range(300)]
            calls += [cache.aset(f"n{i}", i) for i in range(100)]
            pending = asyncio.gather(*calls, return_exceptions=True)
            await asyncio.sleep(0.02)
            cache.close()
            return list(await asyncio.wait_for(pending, 30))

        results = asyncio.run(main())
        for i, r in enumerate(results[:300]):
            assert r == i or isinstance(r, CacheClosedError), r
        assert all(r is None or isinstance(r, CacheClosedError) for r in results[300:])
        with pytest.raises(CacheClosedError):
            asyncio.run(cache.aget("k1"))


def test_cancelling_callers_leaves_the_others_their_values(unique_prefix: str) -> None:
    host, port = redis_host_port(redis_url_or_fail())
    with DelayProxy(host, port, 0.05) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        with open_or_skip(config(unique_prefix)) as writer:
            writer.set_many({f"k{i}": i for i in range(400)})
        with open_or_skip(config(unique_prefix, url)) as cache:
            async def main() -> int:
                tasks = [asyncio.ensure_future(cache.aget(f"k{i}")) for i in range(400)]
                await asyncio.sleep(0.01)
                for t in tasks[::2]:
                    t.cancel()
                done = await asyncio.gather(*tasks, return_exceptions=True)
                for i, r in enumerate(done):
                    if i % 2:
                        assert r == i
                    else:
                        assert isinstance(r, asyncio.CancelledError)
                # Every call's completion came back and was let go: nothing waits any more.
                waiting = len(_offload.queue()._waiting)
                assert await cache.aget("k0") == 0  # from memory now, or Redis again
                return waiting

            assert asyncio.run(main()) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_runs_async_calls_on_its_own_queue(unique_prefix: str) -> None:
    with open_or_skip(config(unique_prefix)) as cache:
        cache.set("before-fork", "parent")

        async def use(key: str, value: str) -> Any:
            await cache.aset(key, value)
            await cache.adelete("before-fork-copy")
            return await cache.aget(key)

        assert asyncio.run(use("p", "parent")) == "parent"  # the parent has a queue now
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            ok = False
            try:
                ok = asyncio.run(use("c", "child")) == "child"
            finally:
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert cache.get("c") == "child"
        assert asyncio.run(use("p2", "parent again")) == "parent again"


def test_a_loop_closed_with_calls_in_flight_is_let_go(unique_prefix: str) -> None:
    """A loop closed while its gets still wait on a slow Redis: the next loop's first call
    lets the closed loop's queue go, so neither stays alive."""
    import gc
    import weakref

    host, port = redis_host_port(redis_url_or_fail())
    with DelayProxy(host, port, 0.2) as proxy:
        with open_or_skip(config(unique_prefix, f"redis://127.0.0.1:{proxy.port}/0")) as cache:
            loop = asyncio.new_event_loop()

            async def start() -> None:
                for i in range(10):
                    asyncio.ensure_future(cache.aget(f"k{i}"))
                await asyncio.sleep(0.01)  # submitted, not answered

            loop.run_until_complete(start())
            loop.close()
            gone = weakref.ref(loop)
            del loop
            assert asyncio.run(cache.aget("other", 1)) == 1
            gc.collect()
            assert gone() is None
