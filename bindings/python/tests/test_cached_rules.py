"""@cached rules: which cache it uses, function identity in every key, methods and
classmethods, cancellation, refresh-ahead, and signatures kept for mypy --strict."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest

from smartcache import SmartCache, SmartCacheConfig, cached
from smartcache.decorators import CachedFunction

from .conftest import open_or_skip, redis_url_or_fail
from .test_async_api import completes_without_suspending

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent


def run_python(code: str, **env: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(PYTHON_DIR), **env})
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_first_cache_opened_is_the_default_and_gets_every_tier(tmp_path: Path,
                                                                unique_prefix: str) -> None:
    """The guide's flow in a fresh process: configure a multi-tier cache, then decorate; the
    results land in Redis and on disk, where a later process finds them."""
    code = f"""
from smartcache import SmartCache, SmartCacheConfig, cached, get_default_cache
calls = []
app_cache = SmartCache(SmartCacheConfig(redis_enabled=True, redis_url={redis_url_or_fail()!r},
    redis_key_prefix={unique_prefix!r}, disk_enabled=True, disk_path={str(tmp_path)!r}))
other = SmartCache()  # opened later: not the default

@cached(ttl=600, key_prefix="user_data")
def get_user_data(user_id: int) -> dict:
    calls.append(user_id)
    return {{"id": user_id}}

assert get_default_cache() is app_cache
assert get_user_data(1) == {{"id": 1}} and get_user_data(1) == {{"id": 1}} and calls == [1]
assert not other.exists(get_user_data.cache_key(1))
print(get_user_data.cache_key(1))
"""
    key = run_python(code)
    # Each tier on its own, from this process: Redis only, then disk only.
    redis_only = SmartCacheConfig(redis_enabled=True, redis_url=redis_url_or_fail(),
                                  redis_key_prefix=unique_prefix)
    with open_or_skip(redis_only) as c:
        assert c.get(key) == {"id": 1}
    with open_or_skip(SmartCacheConfig(disk_enabled=True, disk_path=str(tmp_path))) as c:
        assert c.get(key) == {"id": 1}


def test_default_follows_the_first_cache_still_open() -> None:
    code = """
from smartcache import SmartCache, cached, get_default_cache, set_default_cache
first, second = SmartCache(), SmartCache()
assert get_default_cache() is first
first.close()
assert get_default_cache() is second
chosen = SmartCache()
set_default_cache(chosen)
assert get_default_cache() is chosen
set_default_cache(None)
assert get_default_cache() is second
print("ok")
"""
    assert run_python(code) == "ok"


def test_same_key_prefix_never_shares_entries(default_cache: SmartCache) -> None:
    @cached(key_prefix="math")
    def double(x: int) -> int:
        return 2 * x

    @cached(key_prefix="math")
    def triple(x: int) -> int:
        return 3 * x

    assert double(4) == 8
    assert triple(4) == 12
    assert double.cache_key(4) != triple.cache_key(4)
    assert double.cache_key(4).startswith("math:")


def make_price(rate: float) -> "CachedFunction[[int], float]":
    @cached(ttl=60)
    def price(amount: int) -> float:
        return amount * rate
    return price


def test_closures_from_one_factory_never_share_entries(default_cache: SmartCache) -> None:
    discount, other = make_price(0.9), make_price(0.8)
    assert discount(100) == 90.0
    assert other(100) == 80.0
    assert discount.cache_key(100) != other.cache_key(100)
    # The same factory with the same captured values is the same function: the same entry.
    assert make_price(0.9).cache_key(100) == discount.cache_key(100)


def test_lambdas_never_share_entries(default_cache: SmartCache) -> None:
    double = cached(ttl=60)(lambda x: x * 2)
    triple = cached(ttl=60)(lambda x: x * 3)
    assert double(5) == 10
    assert triple(5) == 15
    assert double.cache_key(5) != triple.cache_key(5)


def test_closure_over_a_value_without_stable_form_is_never_shared(
        default_cache: SmartCache) -> None:
    def make(connection: object) -> "CachedFunction[[int], int]":
        @cached(ttl=60)
        def lookup(n: int) -> int:
            return n + id(connection) % 1000
        return lookup

    shared = object()
    first, second = make(shared), make(shared)
    assert first.cache_key(1) != second.cache_key(1)
    assert first(1) == 1 + id(shared) % 1000


def test_closure_keys_are_the_same_in_every_process(tmp_path: Path) -> None:
    (tmp_path / "pricing.py").write_text(
        "from smartcache import cached\n"
        "def make_price(rate):\n"
        "    @cached(ttl=60)\n"
        "    def price(amount):\n"
        "        return amount * rate\n"
        "    return price\n")
    code = ("import pricing; print(pricing.make_price(0.9).cache_key(100), "
            "pricing.make_price(0.8).cache_key(100))")
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{PYTHON_DIR}"}
    first = run_python(code, **env).split()
    assert first == run_python(code, **env).split()
    assert first[0] != first[1]


def test_a_forked_worker_uses_the_first_cache_it_opens() -> None:
    """The guide's pre-fork flow: the master opened a cache before forking, the worker opens
    its own (a post_fork hook); the worker's @cached results go to the worker's cache. Until
    it opens one, the master's cache (usable after fork) stays the default."""
    code = """
import os
from smartcache import SmartCache, SmartCacheConfig, cached, get_default_cache

@cached(ttl=60)
def f(x):
    return x

master = SmartCache(SmartCacheConfig(memory_capacity=100))
pid = os.fork()
if pid == 0:
    if get_default_cache() is not master:
        os._exit(2)
    worker = SmartCache(SmartCacheConfig(memory_capacity=100))
    ok = f(1) == 1 and worker.exists(f.cache_key(1)) and not master.exists(f.cache_key(1))
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
f(2)
print(os.waitstatus_to_exitcode(status), master.exists(f.cache_key(2)))
"""
    assert run_python(code) == "0 True"


class Catalog:
    """A plain service object: no stable repr, no __cache_key__ (instances share entries)."""

    calls: List[Any] = []

    @cached(ttl=60)
    def price(self, item: str) -> int:
        Catalog.calls.append(("price", item))
        return len(item)

    @classmethod
    @cached(ttl=60)
    def currency(cls, country: str) -> str:
        Catalog.calls.append((cls.__name__, country))
        return f"{cls.__name__}:{country}"

    @cached(ttl=60)
    @classmethod
    def region(cls, country: str) -> str:
        Catalog.calls.append(("region", cls.__name__, country))
        return f"eu:{country}"

    @cached(ttl=60)
    @staticmethod
    def tax(rate: int) -> int:
        Catalog.calls.append(("tax", rate))
        return rate * 2


class EuroCatalog(Catalog):
    pass


class Account:
    """State that changes results: __cache_key__ puts it in the key."""

    def __init__(self, owner: str) -> None:
        self.owner = owner

    def __cache_key__(self) -> str:
        return self.owner

    @cached(ttl=60)
    def greeting(self, word: str) -> str:
        return f"{word}, {self.owner}"


def test_methods_and_classmethods(default_cache: SmartCache) -> None:
    Catalog.calls.clear()
    a, b = Catalog(), Catalog()
    assert a.price("apple") == 5 and b.price("apple") == 5 and a.price("kiwi") == 4
    assert Catalog.calls == [("price", "apple"), ("price", "kiwi")]  # self left out
    assert Catalog.currency("FR") == "Catalog:FR" and a.currency("FR") == "Catalog:FR"
    assert EuroCatalog.currency("FR") == "EuroCatalog:FR"  # cls is in the key
    assert Catalog.region("DE") == Catalog.region("DE") == "eu:DE"
    assert Catalog.tax(3) == Catalog.tax(3) == 6
    assert Catalog.calls[2:] == [("Catalog", "FR"), ("EuroCatalog", "FR"),
                                 ("region", "Catalog", "DE"), ("tax", 3)]
    assert Account("ada").greeting("hi") == "hi, ada"
    assert Account("bob").greeting("hi") == "hi, bob"


def test_cancelling_the_leader_does_not_cancel_the_waiters(default_cache: SmartCache) -> None:
    calls = 0

    @cached(ttl=60)
    async def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return x * 10

    async def main() -> None:
        leader = asyncio.ensure_future(slow(1))
        await asyncio.sleep(0.02)  # the leader's computation is running
        waiters = [asyncio.ensure_future(slow(1)) for _ in range(3)]
        await asyncio.sleep(0.02)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        assert await asyncio.gather(*waiters) == [10, 10, 10]
        assert await slow(1) == 10  # and it was cached
        # Every caller cancelled: the computation still finishes and is cached.
        lone = asyncio.ensure_future(slow(2))
        await asyncio.sleep(0.02)
        lone.cancel()
        await asyncio.sleep(0.3)
        assert calls == 2 and await slow(2) == 20 and calls == 2

    asyncio.run(main())


def test_async_function_uses_the_async_path(tmp_path: Path, unique_prefix: str) -> None:
    """A miss suspends the caller (Redis is asked off the loop, other tasks run meanwhile);
    a hit completes on the loop without suspending."""
    config = SmartCacheConfig(redis_enabled=True, redis_url=redis_url_or_fail(),
                              redis_key_prefix=unique_prefix)
    with open_or_skip(config) as cache:
        @cached(ttl=60, cache=cache)
        async def value(x: int) -> int:
            return x + 1

        async def main() -> None:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            t = asyncio.ensure_future(ticker())
            await asyncio.sleep(0)
            assert await value(1) == 2
            t.cancel()
            assert ticks > 1  # the loop ran the ticker while the miss was served

        asyncio.run(main())
        assert completes_without_suspending(value(1)) == 2


def test_refresh_ahead_sync(default_cache: SmartCache) -> None:
    calls: List[float] = []
    # The recomputation waits at this gate, so "served at once from the cache" does not depend
    # on how fast a busy machine runs the background refresh.
    gate = threading.Event()

    @cached(ttl=2, refresh_ahead=0.5)
    def stamp() -> int:
        calls.append(time.time())
        if len(calls) > 1:
            gate.wait(10)
        return len(calls)

    assert stamp() == 1
    assert stamp() == 1 and len(calls) == 1  # young entry: no refresh
    time.sleep(1.1)  # past 50% of 2 s
    results = [stamp() for _ in range(5)]
    assert results == [1] * 5  # served at once from the cache while the refresh waits
    gate.set()
    deadline = time.time() + 5
    while stamp() != 2 and time.time() < deadline:
        time.sleep(0.02)
    assert stamp() == 2 and len(calls) == 2  # one background recomputation, not five


def test_refresh_ahead_async(default_cache: SmartCache) -> None:
    calls = 0

    @cached(ttl=2, refresh_ahead=0.5)
    async def stamp() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return calls

    async def main() -> None:
        assert await stamp() == 1
        await asyncio.sleep(1.1)
        assert await asyncio.gather(*(stamp() for _ in range(5))) == [1] * 5
        await asyncio.sleep(0.3)
        assert await stamp() == 2 and calls == 2

    asyncio.run(main())


def test_refresh_ahead_needs_a_ttl_and_a_fraction() -> None:
    with pytest.raises(ValueError, match="ttl"):
        cached(refresh_ahead=0.8)
    for bad in (0, 1, 1.5, -0.1, True):
        with pytest.raises(ValueError):
            cached(ttl=10, refresh_ahead=bad)


@pytest.mark.checkout  # type-checks the repository's package sources and example
def test_mypy_strict_keeps_the_signatures() -> None:
    mypy = Path(sys.executable).with_name("mypy")
    if not mypy.exists():
        pytest.fail("mypy is not installed in the venv: run scripts/ensure-deps.sh")
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR), MYPYPATH=str(PYTHON_DIR))

    def check(*paths: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(mypy), "--strict", "--no-incremental", "--follow-imports=silent",
                               *map(str, paths)], capture_output=True, text=True,
                              env=env, timeout=300, cwd=str(PYTHON_DIR))

    # The sample, the decorator example of the docs and the package's own modules.
    package = sorted((PYTHON_DIR / "smartcache").glob("*.py"))
    example = PYTHON_DIR.parent.parent / "examples" / "python" / "cached_decorator.py"
    good = check(HERE / "typed" / "cached_sample.py", *package, example)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = check(HERE / "typed" / "cached_errors.py")
    assert bad.returncode == 1, bad.stdout
    assert 'incompatible type "str"; expected "int"' in bad.stdout
    assert "Incompatible types in assignment" in bad.stdout
    assert 'Argument 1 to "invalidate" of "CachedFunction" has incompatible type' in bad.stdout
    assert 'Unexpected keyword argument "c" for "cache_key"' in bad.stdout
