"""The async API: same arguments and results as the sync calls; a memory hit completes without
suspending (no thread hop); a get that waits on Redis leaves the event loop running."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Coroutine, List

import pytest

from smartcache import CacheClosedError, SmartCache, SmartCacheConfig

from .conftest import open_or_skip, redis_url_or_fail
from .delay_proxy import DelayProxy, redis_host_port


def tiered_config(prefix: str, tmp_path: Path, url: str = "", **kw: Any) -> SmartCacheConfig:
    return SmartCacheConfig(redis_enabled=True, redis_url=url or redis_url_or_fail(),
                            redis_key_prefix=prefix, disk_enabled=True,
                            disk_path=str(tmp_path / "disk"), **kw)


def completes_without_suspending(coro: Coroutine[Any, Any, Any]) -> Any:
    """Runs a coroutine one step: its result if it finished in that step (it never yielded to
    the loop, so no thread or I/O wait was involved); fails the test if it suspended."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    pytest.fail("the coroutine suspended (it left the event loop)")


@pytest.mark.parametrize("tiers", ["memory", "redis+disk"])
def test_async_calls_match_the_sync_calls(tiers: str, tmp_path: Path, unique_prefix: str) -> None:
    config = (SmartCacheConfig() if tiers == "memory"
              else tiered_config(unique_prefix, tmp_path))
    cache = open_or_skip(config)

    async def main() -> None:
        missing = object()
        assert await cache.aget("k") is None
        assert await cache.aget("k", missing) is missing
        await cache.aset("k", {"v": [1, 2]}, ttl=60)
        assert await cache.aget("k") == cache.get("k") == {"v": [1, 2]}
        await cache.aset("none", None)
        assert await cache.aget("none", missing) is None
        assert await cache.aexists("k") and not await cache.aexists("nope")
        await cache.aset_many({"a": 1, b"b": "two"}, ttl=60)
        assert await cache.aget_many(["a", b"b", "zz"]) == {"a": 1, b"b": "two"}
        assert await cache.adelete("a") is True and await cache.adelete("a") is False
        with pytest.raises(TypeError):
            await cache.aget(3)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await cache.aset("k", 1, ttl=-1)
        await cache.aclear()
        assert await cache.aget("k") is None

    try:
        asyncio.run(main())
    finally:
        cache.close()
    with pytest.raises(CacheClosedError):
        asyncio.run(cache.aget("k"))


def test_memory_hit_completes_without_leaving_the_loop(tmp_path: Path,
                                                        unique_prefix: str) -> None:
    with open_or_skip(tiered_config(unique_prefix, tmp_path)) as cache:
        cache.set("hot", [1, 2, 3])
        before = threading.active_count()
        assert completes_without_suspending(cache.aget("hot")) == [1, 2, 3]
        assert completes_without_suspending(cache.aget_many(["hot"])) == {"hot": [1, 2, 3]}
        assert threading.active_count() == before  # no worker thread was started for it
        stats = cache.get_stats()
        assert stats.hits == 2 and stats.misses == 0


def test_lower_tier_hit_goes_off_the_loop_and_counts_once(tmp_path: Path,
                                                          unique_prefix: str) -> None:
    config = tiered_config(unique_prefix, tmp_path)
    with open_or_skip(config) as writer:
        writer.set("cold", "from redis")
    with open_or_skip(config) as cache:  # empty memory tier; Redis and disk hold "cold"
        async def main() -> Any:
            task = asyncio.ensure_future(cache.aget("cold"))
            await asyncio.sleep(0)
            return await task

        assert asyncio.run(main()) == "from redis"
        stats = cache.get_stats()
        assert stats.hits == 1 and stats.misses == 0
        assert asyncio.run(cache.aget("absent", 7)) == 7
        assert cache.get_stats().misses == 1  # the memory probe's miss is not counted twice


def test_slow_redis_does_not_stall_the_loop(tmp_path: Path, unique_prefix: str) -> None:
    """Redis answering in 200 ms; 40 concurrent agets of keys in Redis only: a probe task
    ticking every 10 ms is never held up for anything near a Redis round trip."""
    delay = 0.2
    host, port = redis_host_port(redis_url_or_fail())
    with DelayProxy(host, port, delay) as proxy:
        config = SmartCacheConfig(redis_enabled=True, redis_url=f"redis://127.0.0.1:{proxy.port}/0",
                                  redis_key_prefix=unique_prefix, redis_timeout_ms=5000,
                                  redis_pool_size=8)
        with open_or_skip(config) as writer:
            writer.set_many({f"k{i}": i for i in range(40)})
        with open_or_skip(config) as cache:
            async def main() -> List[float]:
                lags: List[float] = []
                stop = False

                async def probe() -> None:
                    while not stop:
                        t = time.perf_counter()
                        await asyncio.sleep(0.01)
                        lags.append(time.perf_counter() - t - 0.01)

                prober = asyncio.ensure_future(probe())
                await asyncio.sleep(0.05)
                values = await asyncio.gather(*(cache.aget(f"k{i}") for i in range(40)))
                stop = True
                await prober
                assert values == list(range(40))
                return lags

            lags = asyncio.run(main())
    assert lags and max(lags) < delay / 2, f"loop stalled {max(lags) * 1000:.0f} ms"


def test_cancelled_aget_leaves_the_cache_usable(tmp_path: Path, unique_prefix: str) -> None:
    host, port = redis_host_port(redis_url_or_fail())
    with DelayProxy(host, port, 0.2) as proxy:
        config = SmartCacheConfig(redis_enabled=True, redis_url=f"redis://127.0.0.1:{proxy.port}/0",
                                  redis_key_prefix=unique_prefix, redis_timeout_ms=5000)
        with open_or_skip(config) as writer:
            writer.set("k", "v")
        with open_or_skip(config) as cache:
            async def main() -> Any:
                task = asyncio.ensure_future(cache.aget("k"))
                await asyncio.sleep(0.05)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                return await cache.aget("k")

            assert asyncio.run(main()) == "v"
