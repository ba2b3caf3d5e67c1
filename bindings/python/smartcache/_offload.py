"""The worker threads the async API hands blocking calls to (Redis, disk).

One bounded thread pool per process, shared by every cache and event loop, created on first
use. A call waiting on Redis or the disk holds no GIL (the library releases it), so a worker
costs the loop nothing while it waits; the loop only receives the completion
(``run_in_executor`` posts it with ``call_soon_threadsafe``).

Size: the calls are I/O-bound, and every worker waiting on Redis holds one of a cache's
``redis_pool_size`` connections at most, so more threads than a few pools' worth only queue in
the library. ``SMARTCACHE_ASYNC_WORKERS`` overrides the default of 32.

Batching. ``batched(fn, item)`` queues `item` and answers with its result from one ``fn(items)``
call covering every item queued on the same event loop in the same loop iteration (at most
BATCH_MAX per call). The async get uses it so that a burst of memory misses becomes a few
``get_many`` calls (one Redis MGET round trip each) instead of a thread hop and a round trip
per key: fewer completions for the loop to take in, and no queue of single gets waiting for
the pool's connections.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

T = TypeVar("T")

_DEFAULT_WORKERS = 32
BATCH_MAX = 256
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


class Raised:
    """A result slot of a batch whose item failed: its caller receives `error`."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def outcome(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args), or Raised(the exception it raised): one item's result within a batch."""
    try:
        return fn(*args)
    except Exception as e:
        return Raised(e)


BatchFn = Callable[[List[Any]], List[Any]]
Waiting = List[Tuple[Any, "asyncio.Future[Any]"]]
# Items queued per (loop, batch function), until the loop's next iteration flushes them.
_queued: Dict[Tuple[asyncio.AbstractEventLoop, BatchFn], Waiting] = {}


async def batched(fn: BatchFn, item: Any) -> Any:
    """`item`'s result from a call ``fn(items)`` on a worker thread that serves every item
    queued on this loop in this iteration; fn returns one result per item, in order (a
    Raised result fails that item's caller only)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    key = (loop, fn)
    waiting = _queued.get(key)
    if waiting is None:
        waiting = _queued[key] = []
        loop.call_soon(_flush, key)
    waiting.append((item, fut))
    return await fut


def _flush(key: Tuple[asyncio.AbstractEventLoop, BatchFn]) -> None:
    loop, fn = key
    waiting = _queued.pop(key, [])
    for i in range(0, len(waiting), BATCH_MAX):
        chunk = waiting[i:i + BATCH_MAX]
        done = asyncio.wrap_future(executor().submit(fn, [item for item, _ in chunk]), loop=loop)
        done.add_done_callback(functools.partial(_deliver, chunk))


def _deliver(chunk: Waiting, done: "asyncio.Future[List[Any]]") -> None:
    error = asyncio.CancelledError() if done.cancelled() else done.exception()
    results = [None] * len(chunk) if error is not None else done.result()
    for (_, fut), result in zip(chunk, results):
        if fut.done():  # its caller was cancelled
            continue
        if error is not None:
            fut.set_exception(error)
        elif isinstance(result, Raised):
            fut.set_exception(result.error)
        else:
            fut.set_result(result)


def _forget_after_fork() -> None:
    # A forked child has none of the parent's worker threads: a pool object that believes it
    # has them would queue work nobody runs. The child makes its own on first use.
    global _executor, _lock
    _executor = None
    _lock = threading.Lock()
    _queued.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
