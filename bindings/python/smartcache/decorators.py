"""``@cached``: function-result caching with stable keys and single-flight.

Keys. A call's key is ``<key_prefix>:(<canonical arguments>)`` where key_prefix defaults to
``module.qualname`` and the arguments are bound to the signature (``inspect.signature(f).bind``
+ ``apply_defaults``), so ``f(1, b=2)``, ``f(a=1, b=2)`` and ``f(1)`` (when b defaults to 2) are
the same entry. Values are encoded canonically (dicts and sets sorted, type-tagged: ``1`` and
``"1"`` differ) without ``hash()``, which is salted per process for str/bytes: the same call
gets the same key in every process, so entries in a shared tier (Redis, disk) are reused.
Keys longer than 200 bytes become ``<key_prefix>:sha256:<hex of the arguments>``.

Arguments must have a stable text form: None, bool, int, float, str, bytes, tuple, list, dict,
set, frozenset, Enum members, objects whose class defines ``__repr__`` without an address in
it (dataclasses, datetime, Decimal, UUID, ...), or objects with a ``__cache_key__()`` method.
Anything else (e.g. a plain object whose repr is ``<Foo object at 0x7f...>``) raises TypeError
rather than silently caching per memory address.

Single-flight. Ten threads calling a cached function with the same missing arguments run it
once: the first becomes the leader, the others wait on its Event and receive its result (or
its exception). Coroutine functions get the same with per-key asyncio futures.

Clearing. ``f.cache_clear()`` deletes the entries this wrapper wrote, from a registry of the
keys it stored (per cache, held in this process). The alternative, a per-function generation
number inside the key, was rejected: a generation held in memory restarts at 0 with the
process, so after a restart a persistent tier (disk, Redis) would serve entries that were
cleared before it; and a per-process random generation would break the stable cross-process
keys. The registry's limit: entries that *other processes* wrote into a shared tier are not
reached (the C ABI has no delete-by-prefix); use ``f.invalidate(...)`` for a specific call,
which computes the key and so works for every process's entry.

The default cache. With ``cache=None`` the wrapper uses the module-level default cache at
call time: created on first use as ``SmartCache(SmartCacheConfig())`` (memory tier only,
library defaults: 1000 items, 300 s TTL), replaceable with ``set_default_cache(cache)``.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import inspect
import json
import threading
import warnings
import weakref
from typing import Any, Callable, Dict, MutableMapping, Optional, Set, Tuple, TypeVar, Union, cast

from .cache import SmartCache
from .config import SmartCacheConfig
from .errors import SmartCacheError

F = TypeVar("F", bound=Callable[..., Any])

_MISSING = object()
_HASH_OVER = 200

_default_cache: Optional[SmartCache] = None
_default_lock = threading.Lock()


def get_default_cache() -> SmartCache:
    """The cache ``@cached`` uses when given none; created on first use (memory tier only,
    library defaults)."""
    global _default_cache
    cache = _default_cache
    if cache is None or cache.closed:
        with _default_lock:
            if _default_cache is None or _default_cache.closed:
                _default_cache = SmartCache(SmartCacheConfig())
            cache = _default_cache
    return cache


def set_default_cache(cache: Optional[SmartCache]) -> Optional[SmartCache]:
    """Replaces the default cache of ``@cached`` (None = create a fresh one on next use).
    Returns the previous one; the caller decides whether to close it."""
    global _default_cache
    if cache is not None and not isinstance(cache, SmartCache):
        raise TypeError(f"expected a SmartCache or None, not {type(cache).__name__}")
    with _default_lock:
        previous, _default_cache = _default_cache, cache
    return previous


# --- canonical argument text ------------------------------------------------------------------
def _canon(obj: Any) -> str:
    t = type(obj)
    if obj is None:
        return "N"
    if t is bool:
        return "T" if obj else "F"
    if t is int:
        return f"i{obj}"
    if t is float:
        return f"f{obj!r}"
    if t is str:
        return "s" + str(json.dumps(obj))
    if t is bytes:
        return "b" + cast(bytes, obj).hex()
    if t is tuple:
        return "(" + ",".join(map(_canon, obj)) + ")"
    if t is list:
        return "[" + ",".join(map(_canon, obj)) + "]"
    if t is dict:
        items = sorted((_canon(k), _canon(v)) for k, v in obj.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if t is set or t is frozenset:
        return ("<" if t is set else "<<") + ",".join(sorted(map(_canon, obj))) + ">"
    name = f"{t.__module__}.{t.__qualname__}"
    key_method = getattr(obj, "__cache_key__", None)
    if callable(key_method):
        return f"k{name}:" + _canon(key_method())
    if isinstance(obj, enum.Enum):
        return f"e{name}.{obj.name}"
    if getattr(t, "__repr__") is not object.__repr__:
        text = repr(obj)
        if " at 0x" not in text:
            return f"r{name}:{json.dumps(text)}"
    raise TypeError(
        f"@cached cannot build a stable key from an argument of type {name}: its repr has no "
        "stable text. Give the class a __repr__ or a __cache_key__() method, or pass a "
        "primitive (id, name) instead.")


class _Flight:
    """One in-progress computation that concurrent callers of the same key wait for."""

    __slots__ = ("event", "result", "error", "leader")

    def __init__(self, leader: int) -> None:
        self.event = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.leader = leader


class _CachedFunction:
    """State shared by the sync and async wrappers of one decorated function."""

    def __init__(self, func: Callable[..., Any], ttl: Optional[float], key_prefix: Optional[str],
                 cache: Optional[SmartCache]) -> None:
        self.func = func
        self.ttl = ttl
        self.prefix = key_prefix if key_prefix is not None else \
            f"{func.__module__}.{func.__qualname__}"
        self.explicit_cache = cache
        self.signature = inspect.signature(func)
        self.lock = threading.Lock()
        self.flights: Dict[str, _Flight] = {}
        self.async_flights: Dict[Tuple[int, str], "asyncio.Future[Any]"] = {}
        # Keys written, per cache (weak: a closed and dropped cache takes its set with it).
        self.written: MutableMapping[SmartCache, Set[str]] = weakref.WeakKeyDictionary()

    def cache(self) -> SmartCache:
        return self.explicit_cache if self.explicit_cache is not None else get_default_cache()

    def key(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        parts = []
        for name, value in bound.arguments.items():
            kind = self.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                parts.append(f"*{name}={_canon(tuple(value))}")
            elif kind is inspect.Parameter.VAR_KEYWORD:
                parts.append(f"**{name}={_canon(dict(value))}")
            else:
                parts.append(f"{name}={_canon(value)}")
        text = "(" + ",".join(parts) + ")"
        full = f"{self.prefix}:{text}"
        if len(full.encode("utf-8", "surrogatepass")) > _HASH_OVER:
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
            return f"{self.prefix}:sha256:{digest}"
        return full

    def store(self, cache: SmartCache, key: str, value: Any) -> None:
        """Caches a result. A result that cannot be cached (unpicklable, too large) is still
        returned to the callers, with a warning: caching is an optimisation, the call worked."""
        try:
            cache.set(key, value, ttl=self.ttl)
        except (SmartCacheError, ValueError, TypeError) as e:
            warnings.warn(f"@cached {self.prefix}: result not cached: {e}", RuntimeWarning,
                          stacklevel=4)
            return
        with self.lock:
            keys = self.written.get(cache)
            if keys is None:
                keys = self.written[cache] = set()
            keys.add(key)

    # -- sync -------------------------------------------------------------------------------
    def call(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        key = self.key(args, kwargs)
        cache = self.cache()
        value = cache.get(key, _MISSING)
        if value is not _MISSING:
            return value
        me = threading.get_ident()
        with self.lock:
            flight = self.flights.get(key)
            leader = flight is None
            if leader:
                flight = self.flights[key] = _Flight(me)
        assert flight is not None
        if not leader:
            if flight.leader == me:  # the leader re-entered itself with the same arguments
                return self.func(*args, **kwargs)
            flight.event.wait()
            if flight.error is not None:
                raise flight.error
            return flight.result
        try:
            # The previous leader may have stored it between our miss and our flight. exists()
            # first: our get above already counted this call's miss, and a second get would
            # count another.
            value = cache.get(key, _MISSING) if cache.exists(key) else _MISSING
            if value is _MISSING:
                value = self.func(*args, **kwargs)
                self.store(cache, key, value)
            flight.result = value
            return value
        except BaseException as e:
            flight.error = e
            raise
        finally:
            with self.lock:
                del self.flights[key]
            flight.event.set()

    # -- async ------------------------------------------------------------------------------
    async def acall(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        key = self.key(args, kwargs)
        cache = self.cache()
        value = cache.get(key, _MISSING)
        if value is not _MISSING:
            return value
        loop = asyncio.get_running_loop()
        fkey = (id(loop), key)
        with self.lock:
            fut = self.async_flights.get(fkey)
            leader = fut is None
            if leader:
                fut = self.async_flights[fkey] = loop.create_future()
        assert fut is not None
        if not leader:
            # shield: a waiter being cancelled must not cancel the leader's shared future.
            return await asyncio.shield(fut)
        try:
            # As in call(): exists() does not count a second miss.
            value = cache.get(key, _MISSING) if cache.exists(key) else _MISSING
            if value is _MISSING:
                value = await self.func(*args, **kwargs)
                self.store(cache, key, value)
            fut.set_result(value)
            return value
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved: with no waiters asyncio would log it as lost
            raise
        finally:
            with self.lock:
                del self.async_flights[fkey]

    # -- management -------------------------------------------------------------------------
    def invalidate(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bool:
        key = self.key(args, kwargs)
        cache = self.cache()
        with self.lock:
            keys = self.written.get(cache)
            if keys is not None:
                keys.discard(key)
        return cache.delete(key)

    def clear(self) -> int:
        with self.lock:
            snapshot = [(c, list(keys)) for c, keys in self.written.items()]
            self.written.clear()
        removed = 0
        for cache, keys in snapshot:
            if cache.closed:
                continue
            for key in keys:
                removed += cache.delete(key)
        return removed


def cached(ttl: Union[float, None, Callable[..., Any]] = None, key_prefix: Optional[str] = None,
           cache: Optional[SmartCache] = None) -> Any:
    """Caches a function's results in a SmartCache (``ttl`` seconds; None = tier defaults).

    Usable as ``@cached(ttl=600, key_prefix="user_data")`` or bare ``@cached``. Works on plain
    and ``async def`` functions. The wrapper gains:

    - ``cache_clear()``: removes the entries it wrote (returns how many existed);
    - ``invalidate(*args, **kwargs)``: removes the entry of that call (True if it existed);
    - ``cache_key(*args, **kwargs)``: the key of that call, for inspection.

    A result of None is cached like any other value.
    """
    if callable(ttl) and key_prefix is None and cache is None:  # bare @cached
        return cached()(ttl)
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            raise ValueError(f"@cached ttl must be a positive number of seconds or None, "
                             f"got {ttl!r}")
    if key_prefix is not None and not isinstance(key_prefix, str):
        raise TypeError(f"key_prefix must be a str, not {type(key_prefix).__name__}")
    if cache is not None and not isinstance(cache, SmartCache):
        raise TypeError(f"cache must be a SmartCache or None, not {type(cache).__name__}")

    def decorate(func: F) -> F:
        state = _CachedFunction(func, ttl, key_prefix, cache)
        wrapper: Any
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await state.acall(args, kwargs)
            wrapper = async_wrapper
        else:
            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                return state.call(args, kwargs)
            wrapper = sync_wrapper
        wrapper.cache_clear = state.clear
        wrapper.invalidate = lambda *a, **kw: state.invalidate(a, kw)
        wrapper.cache_key = lambda *a, **kw: state.key(a, kw)
        wrapper.cache_info = lambda: {"key_prefix": state.prefix, "ttl": state.ttl,
                                      "cache": state.cache()}
        return cast(F, wrapper)

    return decorate
