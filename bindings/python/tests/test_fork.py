"""A cache made before os.fork() (at import time, as with gunicorn --preload) and used in the
children as it is, never reopened: every process reads only current values, though each
child's memory tier starts as a copy of the parent's, and the children talk to Redis over
sockets of their own while a parent thread goes on using its own."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Optional

from smartcache import SmartCache, SmartCacheConfig

from .conftest import redis_url_or_fail

WORKERS = 4
KEYS = 200
ROUNDS = 5


def kept(i: int) -> bool:
    """After the workers, every other key of a worker's share holds its final value; the
    rest are deleted."""
    return (i // WORKERS) % 2 == 0


def final(i: int) -> Optional[str]:
    return f"new{i}-by-{i % WORKERS}" if kept(i) else None


def stale_reads(cache: SmartCache) -> list[str]:
    return [f"k{i}={cache.get(f'k{i}')!r}" for i in range(KEYS) if cache.get(f"k{i}") != final(i)]


def work(cache: SmartCache, w: int, ready: int, go: int) -> int:
    """A worker's life; returns its exit status (0: every read was current)."""
    wrong = 0
    for i in range(w, KEYS, WORKERS):
        key = f"k{i}"
        cache.delete(key)
        wrong += cache.get(key) is not None
        for r in range(ROUNDS):
            cache.set(key, f"w{w}-r{r}-{i}")
            wrong += cache.get(key) != f"w{w}-r{r}-{i}"
        if kept(i):
            cache.set(key, final(i))
        else:
            cache.delete(key)
    os.write(ready, b"r")
    os.read(go, 1)
    wrong += len(stale_reads(cache))
    hits = cache.get_stats().tier_stats["memory"]["hits"]
    cache.close()
    return 0 if wrong == 0 and hits > 0 else 1


def test_a_cache_made_before_fork_serves_every_process_current_values(tmp_path: Path) -> None:
    cache = SmartCache(SmartCacheConfig(
        disk_enabled=True, disk_path=str(tmp_path), redis_enabled=True,
        redis_url=redis_url_or_fail(), redis_key_prefix=f"fork-{uuid.uuid4().hex}:",
        auto_expire_interval=1))
    for i in range(KEYS):
        cache.set(f"k{i}", f"old{i}")
        assert cache.get(f"k{i}") == f"old{i}"

    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            cache.set(f"churn{n % 64}", n)
            cache.get(f"churn{n % 64}")
            if n % 3 == 0:
                cache.delete(f"churn{n % 64}")
            n += 1

    churner = threading.Thread(target=churn)
    churner.start()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    try:
        for w in range(WORKERS):
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    status = work(cache, w, ready_w, go_r)
                finally:
                    os._exit(status)
            pids.append(pid)
        for _ in range(WORKERS):
            assert os.read(ready_r, 1) == b"r", "a worker died before it was done"
        assert stale_reads(cache) == [], "the parent served values its children replaced"
        os.write(go_w, b"g" * WORKERS)
        statuses = [os.waitpid(pid, 0)[1] for pid in pids]
        assert statuses == [0] * WORKERS, "a worker read a value that was not current"
    finally:
        stop.set()
        churner.join()
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
    assert stale_reads(cache) == []
    cache.close()
    fresh = SmartCache(SmartCacheConfig(disk_enabled=True, disk_path=str(tmp_path)))
    assert stale_reads(fresh) == []
    fresh.close()
