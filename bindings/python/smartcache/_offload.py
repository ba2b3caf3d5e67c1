"""How the async API runs calls that may wait on Redis or the disk without the loop waiting.

The library's own worker threads (Rust, holding no GIL) run them. Each event loop has one
completion queue (``sz_queue``): a call is submitted with a token and a future; the library
signals the queue's descriptor when calls finish, and the loop, which watches it with
``add_reader``, drains up to DRAIN_MAX completions per wake-up in one native call and
finishes their futures there (decoding values on the loop). No Python thread exists to
contend for the GIL with the loop thread; the loop thread only runs the submit and the drain.
Gets are submitted in bursts: ``submit_get`` only notes the key, and once per loop iteration
every get noted meanwhile is submitted in one native call (``sz_queue_submit_many``), which
wakes one library worker per 256 gets; gets of one cache queued together run as one
``get_many`` in the library (one Redis MGET round trip).

A cancelled caller's future is skipped when its completion arrives; the call itself still
runs to its end in the library, and its value is released at the next drain. The queue is
closed when its loop is garbage-collected; closing never waits for calls in flight.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import os
import weakref
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

from . import _native
from ._lib import last_error, lib
from .errors import error_for

#: Completions taken per loop wake-up: the loop finishes at most this many futures before it
#: turns again (the descriptor stays readable while more wait), so a burst of completions is
#: spread over iterations instead of holding other tasks up.
DRAIN_MAX = 64

# (status, data address, length, error message) -> the caller's result, or raises.
Finish = Callable[[int, Optional[int], int, Optional[bytes]], Any]

_OK = _native.SZ_OK
_queue_open = lib.sz_queue_open
_queue_fd = lib.sz_queue_fd
_queue_close = lib.sz_queue_close
_queue_submit = lib.sz_queue_submit
_queue_submit_set_many = lib.sz_queue_submit_set_many
_queue_submit_many = lib.sz_queue_submit_many
_queue_drain = lib.sz_queue_drain
_QueuePtr = ctypes.POINTER(_native.sz_queue)
_VoidPtrArray = ctypes.POINTER(ctypes.c_void_p)


class Submitter(Protocol):
    """What a burst of gets is submitted for (a SmartCache): its handle, marked in flight
    (``enter``, then ``leave``), or an exception when it was closed meanwhile."""

    def _enter(self) -> Any:
        ...

    def _leave(self) -> None:
        ...


class LoopQueue:
    """One event loop's completion queue and the futures waiting on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        q = _QueuePtr()
        rc = _queue_open(ctypes.byref(q))
        if rc != _OK:
            raise error_for(rc, last_error())
        self._q: Optional["ctypes._Pointer[_native.sz_queue]"] = q
        self._loop = weakref.ref(loop)
        self._waiting: Dict[int, Tuple["asyncio.Future[Any]", Finish]] = {}
        self._tokens = itertools.count(1).__next__
        self._out = (_native.sz_completion * DRAIN_MAX)()
        # Gets noted this iteration, by cache (submitted together by _submit_gets).
        self._gets: Dict[int, Tuple[Submitter, List[bytes], List[int]]] = {}
        # Closes the queue when the loop goes away (not before: its futures live there).
        self.close = weakref.finalize(loop, _queue_close, q)
        loop.add_reader(_queue_fd(q), self._drain)

    def submit(self, h: Any, op: int, key: Optional[bytes], value: Optional[bytes],
               ttl_ms: int, finish: Finish) -> "asyncio.Future[Any]":
        """A future for ``op`` on cache handle ``h``, finished on this loop by ``finish``."""
        loop = self._loop()
        assert loop is not None
        token = self._tokens()
        rc = _queue_submit(self._q, h, op, key, len(key) if key else 0, value,
                           len(value) if value else 0, ttl_ms, token)
        return self._waiting_on(loop, rc, token, finish)

    def submit_set_many(self, h: Any, arrays: Tuple[Any, ...], ttl_ms: int,
                        finish: Finish) -> "asyncio.Future[Any]":
        """A future for a queued set_many on cache handle ``h``; ``arrays`` are
        sz_cache_set_many's (keys, key_lens, vals, val_lens, n)."""
        loop = self._loop()
        assert loop is not None
        token = self._tokens()
        rc = _queue_submit_set_many(self._q, h, *arrays, ttl_ms, token)
        return self._waiting_on(loop, rc, token, finish)

    def submit_get(self, cache: Submitter, key: bytes,
                   finish: Finish) -> "asyncio.Future[Any]":
        """A future for a get of ``key`` on ``cache``, submitted with every other get noted
        in this loop iteration (the cache is looked up again then: it may be closed by
        then)."""
        loop = self._loop()
        assert loop is not None
        if not self._gets:
            loop.call_soon(self._submit_gets)
        token = self._tokens()
        noted = self._gets.get(id(cache))
        if noted is None:
            noted = self._gets[id(cache)] = (cache, [], [])
        noted[1].append(key)
        noted[2].append(token)
        fut = loop.create_future()
        self._waiting[token] = (fut, finish)
        return fut

    def _submit_gets(self) -> None:
        noted, self._gets = self._gets, {}
        for cache, keys, tokens in noted.values():
            self._submit_gets_of(cache, keys, tokens)

    def _submit_gets_of(self, cache: Submitter, keys: List[bytes], tokens: List[int]) -> None:
        """Submits one cache's noted gets in one call; if that fails (the cache was closed
        meanwhile), their futures receive the error."""
        n = len(keys)
        try:
            h = cache._enter()
            try:
                rc = _queue_submit_many(self._q, h, _native.SZ_OP_GET,
                                        ctypes.cast((ctypes.c_char_p * n)(*keys), _VoidPtrArray),
                                        (ctypes.c_size_t * n)(*map(len, keys)),
                                        (ctypes.c_uint64 * n)(*tokens), n)
            finally:
                cache._leave()
            if rc != _OK:
                raise error_for(rc, last_error())
        except Exception as e:
            for token in tokens:
                fut, _ = self._waiting.pop(token)
                if not fut.done():
                    fut.set_exception(e)

    def _waiting_on(self, loop: asyncio.AbstractEventLoop, rc: int, token: int,
                    finish: Finish) -> "asyncio.Future[Any]":
        if rc != _OK:
            raise error_for(rc, last_error())
        fut = loop.create_future()
        self._waiting[token] = (fut, finish)
        return fut

    def _drain(self) -> None:
        if self._q is None:  # closed in a forked child (see _forget_after_fork)
            return
        out = self._out
        n = _queue_drain(self._q, out, DRAIN_MAX)
        if n < 0:  # only a queue of another process (after fork) is refused
            loop = self._loop()
            if loop is not None:
                loop.remove_reader(_queue_fd(self._q))
            return
        waiting = self._waiting
        for i in range(n):
            c = out[i]
            entry = waiting.pop(c.token, None)
            if entry is None:
                continue
            fut, finish = entry
            if fut.done():  # its caller was cancelled
                continue
            try:
                fut.set_result(finish(c.status, c.data, c.len, c.error))
            except Exception as e:
                fut.set_exception(e)


_queues: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopQueue]" = (
    weakref.WeakKeyDictionary())


def queue() -> LoopQueue:
    """The running loop's completion queue, opened on first use."""
    loop = asyncio.get_running_loop()
    q = _queues.get(loop)
    if q is None:
        _let_closed_loops_go()
        q = _queues[loop] = LoopQueue(loop)
    return q


def _let_closed_loops_go() -> None:
    """Forgets the queues of loops closed with calls still in flight: their waiting futures
    (which hold the loop) would otherwise keep the loop and its queue alive for ever."""
    for loop, q in list(_queues.items()):
        if loop.is_closed():
            del _queues[loop]
            q._waiting.clear()
            q._gets.clear()
            q._q = None
            q.close()


def _forget_after_fork() -> None:
    # A forked child must not drain its parent's queues (their workers and descriptors are the
    # parent's): it closes them, which never waits, and opens its own on first use.
    # A loop still watching the old descriptor number (a fork inside a running loop) then
    # finds a dead queue, not a freed one.
    for q in list(_queues.values()):
        q._q = None
        q.close()
    _queues.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
