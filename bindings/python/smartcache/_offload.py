"""The worker threads the async API hands blocking calls to (Redis, disk).

One bounded thread pool per process, shared by every cache and event loop, created on first
use. A call waiting on Redis or the disk holds no GIL (the library releases it), so a worker
costs the loop nothing while it waits; the loop only receives the completion
(``run_in_executor`` posts it with ``call_soon_threadsafe``).

Size: the calls are I/O-bound, and every worker waiting on Redis holds one of a cache's
``redis_pool_size`` connections at most, so more threads than a few pools' worth only queue in
the library. ``SMARTCACHE_ASYNC_WORKERS`` overrides the default of 32.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")

_DEFAULT_WORKERS = 32
_lock = threading.Lock()
_executor: Optional[ThreadPoolExecutor] = None


def worker_count() -> int:
    text = os.environ.get("SMARTCACHE_ASYNC_WORKERS", "")
    try:
        n = int(text) if text else _DEFAULT_WORKERS
    except ValueError:
        n = _DEFAULT_WORKERS
    return max(1, min(n, 1024))


def executor() -> ThreadPoolExecutor:
    """The process's pool, created on first use."""
    global _executor
    ex = _executor
    if ex is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=worker_count(),
                                               thread_name_prefix="smartcache-io")
            ex = _executor
    return ex


async def run(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a worker thread; the calling coroutine waits without blocking its loop.
    Cancelling the caller does not stop a call already running (it finishes in its thread)."""
    return await asyncio.get_running_loop().run_in_executor(executor(), fn, *args)


def _forget_after_fork() -> None:
    # A forked child has none of the parent's worker threads: a pool object that believes it
    # has them would queue work nobody runs. The child makes its own on first use.
    global _executor, _lock
    _executor = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
