"""A Redis that refuses or does not answer: health says so, and one caller waiting on a silent
Redis does not stall the other threads."""

from __future__ import annotations

import threading
import time
from typing import List

import pytest

from smartcache import SmartCache, SmartCacheConfig


@pytest.fixture
def redis_with_password(tmp_path):  # type: ignore[no-untyped-def]
    """A private redis-server that requires a password (started and stopped by pid here)."""
    import shutil
    import socket
    import subprocess

    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (scripts/ensure-deps.sh installs it)")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--requirepass", "pw", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def test_health_reports_redis_down_when_every_command_is_refused(redis_with_password: int) -> None:
    """Guide, Failure behaviour: a tier that fails "degrades to a miss or a skipped write, counted in
    its error stats and shown by health"; header: sz_tier_health.up is "1 when its last use
    succeeded", healthy "1 when every enabled tier is up". The bug: with a URL lacking the
    server's password every SET is refused (NOAUTH) and counted as an error, yet health_check()
    says redis up and the cache healthy, so a /health endpoint hides a Redis tier that stores
    nothing (the same happens for any command-level refusal)."""
    url = f"redis://127.0.0.1:{redis_with_password}/0"  # no password: every command is refused
    with SmartCache(SmartCacheConfig(redis_enabled=True, redis_url=url,
                                     redis_key_prefix="refused:")) as c:
        for i in range(5):
            c.set(f"k{i}", "v")
        h = c.health_check()
        redis = h["tiers"]["redis"]
        assert redis["errors"] > 0 and redis["last_error"]  # the failures were seen...
        assert redis["up"] is False                         # ...and health must show them
        assert h["healthy"] is False


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
