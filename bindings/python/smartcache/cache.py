"""SmartCache: the guide's cache object over one ``sz_cache`` handle."""

from __future__ import annotations

import asyncio
import ctypes
import json
import math
import os
import pickle
import sys
import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple,
                    Union, cast)

from . import _backend, _native, _offload, defaults
from ._lib import last_error, lib
from .config import SmartCacheConfig
from .errors import (
    CacheClosedError,
    InvalidArgumentError,
    SecurityWarning,
    SmartCacheError,
    error_for,
)
from .serializers import TAG_PICKLE, Codec, SerializerSpec

Key = Union[str, bytes]

_OK = _native.SZ_OK
_NOT_FOUND = _native.SZ_NOT_FOUND
_MB = 1024.0 * 1024.0

# get() copies values into reused receive buffers (one C call); a buffer starts at
# _BUFFER_INITIAL bytes and grows to fit, up to _BUFFER_MAX. Bigger values are read through a
# pinned handle instead, so no buffer stays huge.
_BUFFER_INITIAL = 4096
_BUFFER_MAX = 1 << 20

# Bound functions, looked up once: attribute lookups on the CDLL cost ~50ns per call.
_sz_get = lib.sz_cache_get
_sz_value_data = lib.sz_value_data
_sz_value_len = lib.sz_value_len
_sz_value_release = lib.sz_value_release

# The per-operation calls and their argument forms, from the cffi or the ctypes layer (see
# _backend): get() keeps the GIL over a memory hit under ctypes, and cffi releases it.
_fast_get_buffered = _backend.get_buffered
# The same, memory tier only (never blocks on I/O): the async API's inline first try.
_fast_get_memory = _backend.get_memory
_fast_set = _backend.set
_fast_delete = _backend.delete
_fast_exists = _backend.exists
# Ready-made length arguments for short lengths (keys): indexing beats constructing.
_SMALL_LEN = _backend.LENGTHS
_c_size_t = _backend.length
_c_uint64 = _backend.ttl
_TTL_DEFAULT = _backend.TTL_DEFAULT  # ttl_ms 0 = each tier's default TTL
# What the memory-only get returns on a miss: a fresh object no stored value can be.
_MEMORY_MISS = object()
_loads = pickle.loads
_TAG_PICKLE = TAG_PICKLE
_string_at = ctypes.string_at
_ValuePtr = ctypes.POINTER(_native.sz_value)
_VoidPtrArray = ctypes.POINTER(ctypes.c_void_p)
_CachePtr = ctypes.POINTER(_native.sz_cache)
_copy_out = _backend.copy_out


def _key_bytes(key: Any) -> bytes:
    t = type(key)
    if t is str:
        try:
            return cast(str, key).encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidArgumentError(f"key is not valid UTF-8 text: {e}",
                                       _native.SZ_ERR_INVALID) from None
    if t is bytes:
        return cast(bytes, key)
    if isinstance(key, (str, bytes)):  # subclasses
        return _key_bytes(str(key) if isinstance(key, str) else bytes(key))
    raise TypeError(f"cache keys must be str or bytes, not {t.__name__}")


_MAX_TTL_MS = 2**63 - 1


def _ttl_ms(ttl: Optional[float]) -> int:
    if ttl is None:
        return 0
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds or None, not {type(ttl).__name__}")
    if not ttl > 0 or math.isinf(ttl):
        raise ValueError(f"ttl must be a positive, finite number of seconds (None = the tiers' "
                         f"default TTLs), got {ttl!r}")
    # The library stores TTLs over 100 years as 100 years; cap here so the uint64 argument
    # cannot wrap around to a short TTL.
    return min(max(1, math.ceil(ttl * 1000)), _MAX_TTL_MS)


class _Buffer:
    """A receive buffer for sz_cache_get_buffered: a bytearray, and the sz_get_buffer struct
    that describes it and the cache to the library, with the argument that passes it (see
    _backend). get() takes one off the cache's free list and puts it back after decoding, so
    nothing else writes into it meanwhile: no other thread, and no get nested inside a decode
    (an unpickled __setstate__ may call get)."""

    __slots__ = ("raw", "cbuf", "view", "st", "ref")

    def __init__(self, cap: int) -> None:
        self.st, self.ref = _backend.new_get_buffer()
        self.resize(cap)

    def resize(self, cap: int) -> None:
        """A fresh, zeroed bytearray of `cap` bytes (an exported bytearray cannot be resized).
        The library keeps it zeroed after each value from then on."""
        self.raw = bytearray(cap)
        self.cbuf = _backend.point(self.st, self.raw)
        self.view = memoryview(self.raw)


def _buffered_get(c_get: Any) -> Callable[..., Any]:
    """SmartCache.get over the C get `c_get` (sz_cache_get_buffered, or sz_cache_get_memory for
    the async API's inline memory-tier try): one body, so both decode alike. The two share
    one code object, which _GET_CODES relies on."""

    def get(self: "SmartCache", key: Key, default: Any = None) -> Any:
        try:
            kb = key.encode() if type(key) is str else _key_bytes(key)
        except UnicodeEncodeError:
            kb = _key_bytes(key)  # raises InvalidArgumentError naming the problem
        free = self._free_buffers
        try:
            buf = free.pop()
        except IndexError:
            buf = self._new_buffer()
        try:
            # Checked although the library refuses a retired buffer anyway: without it, a
            # thread calling get() in a loop would keep reusing its still-live buffer and
            # close() would wait for it forever.
            if self._h is None:
                raise CacheClosedError("this SmartCache is closed; open a new one")
            n = len(kb)
            rc = c_get(buf.ref, kb, _SMALL_LEN[n] if n < 1024 else _c_size_t(n))
            if rc == _OK:
                raw = buf.raw
                # Fast path: unpickle the whole buffer in place, no length, no slice (~150 ns
                # less). The library keeps every byte after the value zero (see sz_get_buffer),
                # and a zero byte is no pickle opcode: loads either meets the value's STOP
                # opcode or fails, so it decodes exactly what a slice of the value would.
                if raw[0] == self._pickle_tag:
                    try:
                        return _loads(raw)
                    except Exception:
                        pass  # the codec below reports it as a SerializationError
                return self._codec.decode(buf.view[:buf.st.len])
            if rc == _NOT_FOUND:
                return default
            return self._get_uncommon(rc, buf)
        finally:
            free.append(buf)

    return get


@dataclass
class CacheStats:
    """A snapshot of a cache's counters (``SmartCache.get_stats()``).

    Field names follow the guide (``stats.hit_ratio``, ``stats.memory_usage`` in MB, ...);
    ``tier_stats`` has one dict per tier ("memory", "redis", "disk") as the library reports
    them in ``sz_cache_stats_json``.
    """

    hits: int
    misses: int
    hit_ratio: float
    ops_per_second: float
    #: Bytes held by memory-tier entries, in MB (2**20 bytes).
    memory_usage: float
    memory_bytes: int
    memory_max_bytes: int
    capacity: int
    size: int
    compression_ratio: float
    sets: int
    deletes: int
    evictions: int
    expirations: int
    allocator: str
    uptime_ms: int
    tier_stats: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    @property
    def jemalloc_active(self) -> bool:
        """True when memory entries come from the dedicated jemalloc arena."""
        return self.allocator == "jemalloc"

    def to_dict(self) -> Dict[str, Any]:
        """The snapshot as a plain dict (JSON-serialisable)."""
        return dict(self.__dict__)


_UNSIGNED_PICKLE = (
    "SmartCache opened with the pickle serializer, the Redis tier on and no value_secret: "
    "anyone who can write to that Redis (or sit on the network path to it) can store a pickle "
    "that runs code in this process on the next get(). Set SmartCacheConfig.value_secret "
    "(values are then signed and unsigned ones refused), or use serializer='json'.")


class SmartCache:
    """A multi-tier cache (memory L1, Redis L2, disk L3) in the native library.

    Safe to share between threads. Keys are ``str`` (stored as UTF-8, so ``"a"`` and ``b"a"``
    are the same key) or ``bytes``, 1..65535 bytes long. Values of any picklable type (or
    per ``serializer``: "pickle", "json", "raw" or a custom object; see docs/value-format.md);
    ``bytes`` and ``str`` are stored with a one-byte tag. Close it with ``close()`` or a
    ``with`` block; a cache that is garbage-collected is closed then too.
    """

    def __init__(self, config: Optional[SmartCacheConfig] = None, *,
                 serializer: SerializerSpec = "pickle", _track: bool = True) -> None:
        if config is None:
            config = SmartCacheConfig()
        elif not isinstance(config, SmartCacheConfig):
            raise TypeError(f"config must be a SmartCacheConfig, not {type(config).__name__}")
        self.config: SmartCacheConfig = config
        self._codec = Codec(serializer)
        config.validate()
        if self._codec.name == "pickle" and config.redis_enabled and not config.value_secret:
            warnings.warn(_UNSIGNED_PICKLE, SecurityWarning, stacklevel=2)
        cfg = config._to_native()
        handle = _CachePtr()
        try:
            rc = lib.sz_cache_open(cfg, ctypes.byref(handle))
            if rc != _OK:
                raise error_for(rc, last_error())
        finally:
            lib.sz_config_free(cfg)
        self._h: Optional["ctypes._Pointer[_native.sz_cache]"] = handle
        # The same handle as a c_void_p, the form the untyped hot-path calls take.
        self._hv: Any = _backend.cache_arg(handle)
        # get() unpickles in place when the tag byte equals this; -1 never matches a byte, so
        # a json/custom cache sends pickles to Codec.decode, which refuses them.
        self._pickle_tag = _TAG_PICKLE if self._codec.name == "pickle" else -1
        # Calls in flight, so close() can wait for them: sz_cache_close must not race a call
        # on the same handle. list.append/pop are atomic, which keeps the fast path lock-free.
        self._inflight: List[None] = []
        self._close_lock = threading.Lock()
        # get()'s receive buffers: those not in use, and every one made (for close()). A get
        # in progress holds its buffer, which doubles as its in-flight mark.
        self._free_buffers: List[_Buffer] = []
        self._all_buffers: List[_Buffer] = []
        self._finalizer = weakref.finalize(self, lib.sz_cache_close, handle)
        # With Redis or disk on, a get may wait on I/O: the async API sends those off the loop.
        self._has_lower_tiers = bool(config.redis_enabled or config.disk_enabled)
        if _track:  # the first cache opened becomes @cached's default (see defaults.py)
            defaults.cache_opened(self)
        _OPEN_CACHES.add(self)

    def _after_fork_in_child(self) -> None:
        """In a child of os.fork(), where only the forking thread exists: the calls and gets
        the parent's other threads had in progress never finish here, so they no longer count
        as in flight (close() would wait for them for ever), their receive buffers are free,
        and a close lock one of them held is replaced. The library rebuilds its own state."""
        self._inflight.clear()
        self._free_buffers[:] = self._all_buffers
        self._close_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Closes the cache (flushes the disk tier, stops background threads). Idempotent.
        Waits for calls other threads have in progress; calls made afterwards raise
        CacheClosedError."""
        with self._close_lock:
            if self._h is None:
                return
            self._h = None
            self._hv = None
            self._retire_buffers()
            while self._inflight:
                time.sleep(0.0005)
            self._finalizer()

    def _retire_buffers(self) -> None:
        """Clears the cache pointer in every receive buffer, each as soon as no get holds it
        (waiting for gets in progress), so a get that takes one later is refused by the
        library (NULL cache, reported as CacheClosedError) instead of using a closed cache.
        Buffers made from now on start cleared: _new_buffer registers a buffer before it
        reads the handle, which close() cleared before calling this."""
        for buf in self._buffers_held_up_this_stack():
            _backend.attach(buf.st, None)
        retired: List[_Buffer] = []
        while any(b.st.cache for b in self._all_buffers):
            try:
                buf = self._free_buffers.pop()
            except IndexError:
                time.sleep(0.0005)  # the rest are in gets still running
                continue
            _backend.attach(buf.st, None)
            retired.append(buf)
        self._free_buffers.extend(retired)

    def _buffers_held_up_this_stack(self) -> List[_Buffer]:
        """Receive buffers held by gets of this cache further up this thread's stack: close()
        called from inside their decode (an unpickled __setstate__, a custom loads). Python
        code runs there only after the get's library call, and the get makes no other, so
        their buffers can be retired at once; waiting for them would wait forever."""
        held: List[_Buffer] = []
        frame: Any = sys._getframe(1)
        while frame is not None:
            if frame.f_code in _GET_CODES and frame.f_locals.get("self") is self:
                buf = frame.f_locals.get("buf")
                if isinstance(buf, _Buffer):
                    held.append(buf)
            frame = frame.f_back
        return held

    @property
    def closed(self) -> bool:
        return self._h is None

    def __enter__(self) -> "SmartCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._h is None else "open"
        return f"<SmartCache {state} serializer={self._codec.name} config={self.config!r}>"

    def _closed(self) -> CacheClosedError:
        self._inflight.pop()
        return CacheClosedError("this SmartCache is closed; open a new one")

    # -- operations -----------------------------------------------------------------------
    if TYPE_CHECKING:
        def get(self, key: Key, default: Any = None) -> Any:
            ...

        def _get_memory(self, key: Key, default: Any = None) -> Any:
            ...
    else:
        get = _buffered_get(_fast_get_buffered)
        # get() that consults the memory tier only, answering `default` on a memory miss.
        _get_memory = _buffered_get(_fast_get_memory)
    get.__doc__ = """The value stored under ``key``, or ``default`` when there is none (missing or
        expired). A stored ``None`` is returned as ``None``; pass a sentinel ``default`` to
        tell the two apart.

        The value is copied once, by sz_cache_get_buffered into a reused receive buffer, and
        decoded from there (pickle stops at its STOP opcode, so it reads the buffer in place).
        That measured faster than a pinned sz_cache_get handle, which costs four C calls plus
        string_at (see docs/BENCHMARKS-python.md)."""

    def _new_buffer(self) -> _Buffer:
        buf = _Buffer(_BUFFER_INITIAL)
        self._all_buffers.append(buf)  # before reading the handle: see _retire_buffers
        _backend.attach(buf.st, self._h)
        return buf

    def _get_uncommon(self, rc: int, buf: _Buffer) -> Any:
        """The rest of get() after neither a hit that fit in buf nor a miss: a value too big
        for buf (handed over pinned: sz_get_buffer.pin_larger), the cache closed, or an
        error."""
        v = buf.st.value
        if v:
            data = _backend.take_value(v)
            if len(data) <= _BUFFER_MAX:
                buf.resize(max(len(data), 2 * len(buf.raw)))  # so the next one fits
            return self._codec.decode(memoryview(data))
        if not buf.st.cache:
            raise CacheClosedError("this SmartCache is closed; open a new one")
        raise error_for(rc, last_error())

    def get_pinned(self, key: Key, default: Any = None) -> Any:
        """Same as get(), always through a pinned ``sz_value`` handle (for benchmarks)."""
        kb = _key_bytes(key)
        self._inflight.append(None)
        h = self._h
        if h is None:
            raise self._closed()
        try:
            v = _ValuePtr()
            rc = _sz_get(h, kb, len(kb), ctypes.byref(v))
            if rc == _NOT_FOUND:
                return default
            if rc != _OK:
                raise error_for(rc, last_error())
            data = _copy_out(v)
        finally:
            self._inflight.pop()
        # Decoded after the call is over, so a decode that closes the cache does not wait
        # for itself.
        return self._codec.decode(memoryview(data))

    def set(self, key: Key, value: Any, ttl: Optional[float] = None) -> None:
        """Stores ``value`` under ``key`` in every enabled tier for ``ttl`` seconds (int or
        float; None = each tier's configured default TTL)."""
        try:
            kb = key.encode() if type(key) is str else _key_bytes(key)
        except UnicodeEncodeError:
            kb = _key_bytes(key)  # raises InvalidArgumentError naming the problem
        ms = 0 if ttl is None else _ttl_ms(ttl)
        data = self._codec.encode(value)
        self._inflight.append(None)
        hv = self._hv
        if hv is None:
            raise self._closed()
        try:
            nk, nv = len(kb), len(data)
            rc = _fast_set(hv, kb, _SMALL_LEN[nk] if nk < 1024 else _c_size_t(nk),
                           data, _SMALL_LEN[nv] if nv < 1024 else _c_size_t(nv),
                           _TTL_DEFAULT if ms == 0 else _c_uint64(ms))
            if rc != _OK:
                raise error_for(rc, last_error())
        finally:
            self._inflight.pop()

    def get_many(self, keys: Iterable[Key]) -> Dict[Key, Any]:
        """The values of many keys in one library call: memory first, then the keys still
        missing from Redis in one round trip (MGET), then the disk tier. Returns a dict of
        the keys found (as given) to their values; missing keys are left out, like Django's
        ``cache.get_many``."""
        keys = list(keys)
        kbs = [_key_bytes(k) for k in keys]
        if not kbs:
            return {}
        n = len(kbs)
        key_ptrs = (ctypes.c_char_p * n)(*kbs)
        key_lens = (ctypes.c_size_t * n)(*map(len, kbs))
        out = (_ValuePtr * n)()
        self._call(lib.sz_cache_get_many, ctypes.cast(key_ptrs, _VoidPtrArray), key_lens,
                   n, out)
        # Copy every value out and unpin it before decoding, so a decode error cannot leak a
        # pin: one copy per value (string_at), decoded from there.
        found: List[Tuple[Key, bytes]] = []
        try:
            for key, v in zip(keys, out):
                if v:
                    found.append((key, _string_at(_sz_value_data(v), _sz_value_len(v))))
        finally:
            for v in out:
                if v:
                    _sz_value_release(v)
        return {key: self._codec.decode(memoryview(data)) for key, data in found}

    def set_many(self, mapping: Mapping[Key, Any], ttl: Optional[float] = None) -> None:
        """Stores every item of ``mapping`` in every enabled tier, all for ``ttl`` seconds
        (None = each tier's default), in one library call: Redis receives them pipelined in
        one round trip. Every key and value is encoded and checked before anything is
        stored, so a bad one stores nothing."""
        arrays, ms = self._set_many_args(mapping, ttl)
        if arrays:
            self._call(lib.sz_cache_set_many, *arrays, ms)

    def _set_many_args(self, mapping: Mapping[Key, Any],
                       ttl: Optional[float]) -> Tuple[Tuple[Any, ...], int]:
        """set_many's (keys, key_lens, vals, val_lens, n) C arrays, () for no items, and its
        ttl in ms. Every key and value is encoded (and so checked) first."""
        items = list(mapping.items())
        kbs = [_key_bytes(k) for k, _ in items]
        ms = 0 if ttl is None else _ttl_ms(ttl)
        data = [self._codec.encode(v) for _, v in items]
        n = len(items)
        if not n:
            return (), ms
        return (ctypes.cast((ctypes.c_char_p * n)(*kbs), _VoidPtrArray),
                (ctypes.c_size_t * n)(*map(len, kbs)),
                ctypes.cast((ctypes.c_char_p * n)(*data), _VoidPtrArray),
                (ctypes.c_size_t * n)(*map(len, data)), n), ms

    def delete(self, key: Key) -> bool:
        """Removes ``key`` from every tier; True if some tier had it."""
        return self._found(_fast_delete, key)

    def exists(self, key: Key) -> bool:
        """True if some tier holds a live entry for ``key`` (does not count as an access)."""
        return self._found(_fast_exists, key)

    def _found(self, call: Any, key: Key) -> bool:
        """Runs a keyed call answering SZ_OK (found) or SZ_NOT_FOUND."""
        kb = _key_bytes(key)
        self._inflight.append(None)
        hv = self._hv
        if hv is None:
            raise self._closed()
        try:
            n = len(kb)
            rc = call(hv, kb, _SMALL_LEN[n] if n < 1024 else _c_size_t(n))
            if rc == _OK:
                return True
            if rc == _NOT_FOUND:
                return False
            raise error_for(rc, last_error())
        finally:
            self._inflight.pop()

    __contains__ = exists

    def clear(self) -> None:
        """Removes this cache's entries from every tier (in Redis only its own prefix)."""
        self._call(lib.sz_cache_clear)

    def expire_now(self) -> int:
        """Runs one bounded expiry pass now; returns the number of entries reclaimed. (Expired
        entries are never returned by get() even without it; this reclaims their memory.)"""
        return self._call(lib.sz_cache_expire_now)

    def _call(self, fn: Any, *args: Any) -> int:
        self._inflight.append(None)
        h = self._h
        if h is None:
            raise self._closed()
        try:
            rc = fn(h, *args)
            if rc < 0:
                raise error_for(rc, last_error())
            return int(rc)
        finally:
            self._inflight.pop()

    # -- async API (Django-style: the sync calls' arguments and results) ---------------------
    # A memory hit is answered inline, on the loop, without a thread hop: sz_cache_get_memory
    # never waits on I/O. Everything that may wait on Redis or the disk is submitted to the
    # library's worker threads through the loop's completion queue (_offload), whose
    # completions the loop collects from a descriptor it watches: the loop never waits on I/O
    # and no Python thread competes with it for the GIL. A cache with neither tier does no I/O
    # at all and answers every call inline.
    async def aget(self, key: Key, default: Any = None) -> Any:
        """``get`` for coroutines."""
        if not self._has_lower_tiers:
            return self.get(key, default)
        value = self._get_memory(key, _MEMORY_MISS)
        if value is not _MEMORY_MISS:
            return value
        found = await _offload.queue().submit_get(self, _key_bytes(key), self._got)
        return default if found is _MEMORY_MISS else found

    async def aget_many(self, keys: Iterable[Key]) -> Dict[Key, Any]:
        """``get_many`` for coroutines: the keys in memory inline, the rest off the loop (one
        library call, one Redis round trip, for the lot)."""
        keys = list(keys)
        if not self._has_lower_tiers:
            return self.get_many(keys)
        found: Dict[Key, Any] = {}
        missing: List[Tuple[Key, bytes]] = []
        for key in keys:
            value = self._get_memory(key, _MEMORY_MISS)
            if value is _MEMORY_MISS:
                missing.append((key, _key_bytes(key)))
            else:
                found[key] = value
        if missing:
            q = _offload.queue()
            values = await asyncio.gather(*(q.submit_get(self, kb, self._got)
                                            for _, kb in missing))
            found.update((k, v) for (k, _), v in zip(missing, values) if v is not _MEMORY_MISS)
        return found

    async def aset(self, key: Key, value: Any, ttl: Optional[float] = None) -> None:
        """``set`` for coroutines."""
        if not self._has_lower_tiers:
            return self.set(key, value, ttl)
        kb = _key_bytes(key)
        ms = 0 if ttl is None else _ttl_ms(ttl)
        await self._submit(_native.SZ_OP_SET, kb, self._codec.encode(value), ms, self._done)

    async def aset_many(self, mapping: Mapping[Key, Any], ttl: Optional[float] = None) -> None:
        """``set_many`` for coroutines."""
        if not self._has_lower_tiers:
            return self.set_many(mapping, ttl)
        arrays, ms = self._set_many_args(mapping, ttl)
        if not arrays:
            return
        h = self._enter()
        try:
            fut = _offload.queue().submit_set_many(h, arrays, ms, self._done)
        finally:
            self._leave()
        await fut

    async def adelete(self, key: Key) -> bool:
        """``delete`` for coroutines."""
        if not self._has_lower_tiers:
            return self.delete(key)
        return bool(await self._submit(_native.SZ_OP_DELETE, _key_bytes(key), None, 0,
                                       self._yes))

    async def aexists(self, key: Key) -> bool:
        """``exists`` for coroutines."""
        if not self._has_lower_tiers:
            return self.exists(key)
        return bool(await self._submit(_native.SZ_OP_EXISTS, _key_bytes(key), None, 0,
                                       self._yes))

    async def aclear(self) -> None:
        """``clear`` for coroutines."""
        if not self._has_lower_tiers:
            return self.clear()
        await self._submit(_native.SZ_OP_CLEAR, None, None, 0, self._done)

    def _enter(self) -> Any:
        """This cache's handle, marked in flight until _leave(), or CacheClosedError."""
        self._inflight.append(None)
        h = self._h
        if h is None:
            raise self._closed()
        return h

    def _leave(self) -> None:
        self._inflight.pop()

    def _submit(self, op: int, kb: Optional[bytes], value: Optional[bytes], ttl_ms: int,
                finish: "_offload.Finish") -> "asyncio.Future[Any]":
        """A future for one queued call on this cache (see _offload)."""
        h = self._enter()
        try:
            return _offload.queue().submit(h, op, kb, value, ttl_ms, finish)
        finally:
            self._leave()

    def _failed(self, status: int, message: Optional[bytes]) -> SmartCacheError:
        """The exception of a queued call that answered a negative status."""
        if self._h is None:
            return CacheClosedError("this SmartCache is closed; open a new one")
        return error_for(status, (message or b"").decode("utf-8", "replace"))

    def _got(self, status: int, data: Optional[int], n: int, message: Optional[bytes]) -> Any:
        """A queued get's value (decoded here, on the loop), or _MEMORY_MISS."""
        if status == _OK:
            return self._codec.decode(memoryview(_string_at(data, n) if data else b""))
        if status == _NOT_FOUND:
            return _MEMORY_MISS
        raise self._failed(status, message)

    def _yes(self, status: int, data: Optional[int], n: int, message: Optional[bytes]) -> bool:
        """A queued delete's or exists' answer."""
        if status < 0:
            raise self._failed(status, message)
        return status == _OK

    def _done(self, status: int, data: Optional[int], n: int, message: Optional[bytes]) -> None:
        """A queued set's, set_many's or clear's outcome."""
        if status < 0:
            raise self._failed(status, message)

    # -- observability --------------------------------------------------------------------
    def get_stats(self) -> CacheStats:
        """Counters and per-tier details, from one library snapshot (sz_cache_stats_json)."""
        doc = json.loads(self._library_string(lib.sz_cache_stats_json, "sz_cache_stats_json"))
        mem_bytes = int(doc.get("memory_usage_bytes", 0))
        return CacheStats(
            hits=int(doc["hits"]),
            misses=int(doc["misses"]),
            hit_ratio=float(doc["hit_ratio"]),
            ops_per_second=float(doc["ops_per_second"]),
            memory_usage=mem_bytes / _MB,
            memory_bytes=mem_bytes,
            memory_max_bytes=int(doc.get("memory_max_bytes", 0)),
            capacity=int(doc["capacity"]),
            size=int(doc["size"]),
            compression_ratio=float(doc["compression_ratio"]),
            sets=int(doc.get("sets", 0)),
            deletes=int(doc.get("deletes", 0)),
            evictions=int(doc.get("evictions", 0)),
            expirations=int(doc.get("expirations", 0)),
            allocator=str(doc.get("allocator", "")),
            uptime_ms=int(doc.get("uptime_ms", 0)),
            tier_stats={name: dict(t) for name, t in doc.get("tiers", {}).items()},
        )

    def stats_prometheus(self) -> str:
        """The stats in the Prometheus text exposition format (0.0.4), ready to serve as a
        /metrics endpoint's body (content type ``text/plain; version=0.0.4``)."""
        return self._library_string(lib.sz_cache_stats_prometheus, "sz_cache_stats_prometheus")

    def _library_string(self, fn: Any, name: str) -> str:
        """The text of a string the library returns for this cache (and frees)."""
        self._inflight.append(None)
        h = self._h
        if h is None:
            raise self._closed()
        try:
            p = fn(h)
            if not p:
                raise error_for(_native.SZ_ERR_INTERNAL, last_error() or f"{name} failed")
            try:
                return ctypes.string_at(p).decode("utf-8")
            finally:
                lib.sz_string_free(p)
        finally:
            self._inflight.pop()

    def raw_stats(self) -> _native.sz_stats:
        """The ``sz_stats`` struct exactly as the library fills it (no JSON parsing)."""
        out = _native.sz_stats()
        out.struct_size = ctypes.sizeof(out)
        self._call(lib.sz_cache_stats, ctypes.byref(out))
        return out

    def health_check(self) -> Dict[str, Any]:
        """Each tier's state: ``{"healthy": bool, "status": "healthy"|"degraded", "tiers":
        {"memory"|"redis"|"disk": {"enabled", "up", "errors", "last_error"}}, "disk_fill",
        "disk_path", "library_version"}``. JSON-serialisable, for a /health endpoint."""
        out = _native.sz_health()
        out.struct_size = ctypes.sizeof(out)
        self._call(lib.sz_cache_health, ctypes.byref(out))

        def tier(t: _native.sz_tier_health) -> Dict[str, Any]:
            return {
                "enabled": bool(t.enabled),
                "up": bool(t.up),
                "errors": int(t.errors),
                "last_error": t.last_error.decode("utf-8", "replace") or None,
            }

        healthy = bool(out.healthy)
        return {
            "healthy": healthy,
            "status": "healthy" if healthy else "degraded",
            "tiers": {"memory": tier(out.memory), "redis": tier(out.redis),
                      "disk": tier(out.disk)},
            "disk_fill": float(out.disk_fill),
            "disk_path": out.disk_path.decode("utf-8", "replace"),
            "library_version": lib.sz_version().decode(),
        }


# Every open SmartCache, for the fork handler below.
_OPEN_CACHES: "weakref.WeakSet[SmartCache]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_OPEN_CACHES):
        if not cache.closed:
            cache._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)

# The frames whose local `buf` is a receive buffer in use (see _buffers_held_up_this_stack).
_GET_CODES = (SmartCache.get.__code__, SmartCache._get_uncommon.__code__)
assert SmartCache._get_memory.__code__ is SmartCache.get.__code__

__all__ = ["SmartCache", "CacheStats", "SmartCacheError"]
