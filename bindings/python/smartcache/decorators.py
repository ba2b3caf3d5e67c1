"""``@cached``: function-result caching with stable keys, single-flight and refresh-ahead.

Which cache. ``@cached(cache=c)`` uses ``c``. Without it the wrapper looks the default up at
each call (``smartcache.defaults``): the cache given to ``set_default_cache()``, else the
first SmartCache the process opened that is still open, else a memory-only cache created on
first use. So the guide's flow (configure a multi-tier SmartCache, then decorate) stores
results in every tier that cache has.

Keys. A call's key is ``[<key_prefix>:]<module>.<qualname>:(<canonical arguments>)``. The
function's identity is always in it, so two functions never share entries; ``key_prefix`` is
only a namespace in front (e.g. per application or per deployment, so a ``clear`` by prefix
or a Redis key pattern can find them). The arguments are bound to the signature
(``inspect.signature(f).bind`` + ``apply_defaults``), so ``f(1, b=2)``, ``f(a=1, b=2)`` and
``f(1)`` (when b defaults to 2) are the same entry. Values are encoded canonically (dicts and
sets sorted, type-tagged: ``1`` and ``"1"`` differ) without ``hash()``, which is salted per
process for str/bytes: the same call gets the same key in every process, so entries in a
shared tier (Redis, disk) are reused. Keys longer than 200 bytes become
``<prefix>:sha256:<hex of the arguments>``.

Closures and lambdas. Functions made by one factory (``make_price(0.9)`` and
``make_price(0.8)``) or two lambdas share a qualified name (``make_price.<locals>.price``,
``<lambda>``), so for a qualified name containing ``<locals>`` or ``<lambda>`` the identity
gains ``@<discriminator>``: a hash of the code object (file, first line, bytecode, names,
constants) and of the values the closure captured, encoded like arguments, read once when the
function is decorated. The same closure over the same values gets the same key in every
process. When a captured value has no stable form (a connection, another function, a cell
not yet filled) the discriminator is random, unique to that decoration: its entries are never
shared with another function, nor across processes.

Arguments must have a stable text form: None, bool, int, float, str, bytes, tuple, list, dict,
set, frozenset, Enum members, objects whose class defines ``__repr__`` without an address in
it (dataclasses, datetime, Decimal, UUID, ...), or objects with a ``__cache_key__()`` method.
Anything else (e.g. a plain object whose repr is ``<Foo object at 0x7f...>``) raises TypeError
rather than silently caching per memory address.

Methods. A function defined in a class whose first parameter is named ``self`` or ``cls`` is
a method, and that first argument is keyed by this rule:

- ``cls`` (classmethods): the class's module and qualified name, so subclasses get entries
  of their own;
- ``self``: its ``__cache_key__()`` when it defines one, else its stable ``repr`` (a
  dataclass, ...) when it has one, else nothing: an object with neither (a service, client
  or repository object) counts as stateless, and every instance shares the entries. Give a
  class whose methods' results depend on its state a ``__cache_key__()``.

Single-flight. Ten threads calling a cached function with the same missing arguments run it
once: the first becomes the leader, the others wait on its Event and receive its result (or
its exception). Coroutine functions run the computation in a task of its own that every
caller awaits through ``asyncio.shield``: cancelling any caller, the one that started it
included, leaves the computation running for the others (and its result is still cached).
A call made inside the computation of its own key (recursion with the same arguments) runs
the body again rather than wait for itself: sync by the leader's thread identity, async by
``_computing``, a context variable naming the keys being computed, which tasks inherit.

Unstorable results. A result the serializer refuses is returned but not cached; the first
one per decorated function raises a RuntimeWarning naming it.

Async. ``async def`` functions read and write the cache through the async API (``aget`` /
``aset``): a memory hit is answered on the loop, Redis and disk work off it.

Refresh-ahead. With ``refresh_ahead=0.8`` (needs a ``ttl``), a caller that finds an entry past
80% of its lifetime gets the cached value at once and one background recomputation starts
(a thread for plain functions, a task for coroutine functions; at most one per key at a time,
and none while a computation of that key is running). Its entries then hold the value in an
envelope with the time it was written and its ttl, ``{"__smartcache_cached__": 1, "t": <unix
time>, "ttl": <seconds>, "v": <value>}``, which every serializer can carry; an entry that is
not such an envelope (written before refresh-ahead was turned on) counts as a miss.

Clearing. ``f.cache_clear()`` deletes the entries this wrapper wrote, from a registry of the
keys it stored (per cache, held in this process). The alternative, a per-function generation
number inside the key, was rejected: a generation held in memory restarts at 0 with the
process, so after a restart a persistent tier (disk, Redis) would serve entries that were
cleared before it; and a per-process random generation would break the stable cross-process
keys. The registry's limit: entries that *other processes* wrote into a shared tier are not
reached (the C ABI has no delete-by-prefix); use ``f.invalidate(...)`` for a specific call,
which computes the key and so works for every process's entry.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import functools
import hashlib
import inspect
import json
import logging
import threading
import time
import uuid
import warnings
import weakref
from typing import (TYPE_CHECKING, Any, Callable, Dict, FrozenSet, MutableMapping, Optional,
                    Protocol, Set, Tuple, TypeVar, Union, cast, overload)

try:
    from typing import ParamSpec
except ImportError:  # Python 3.8/3.9: P appears only in annotations, which are never evaluated
    ParamSpec = TypeVar  # type: ignore[misc,assignment]

from .cache import SmartCache
from .defaults import get_default_cache, set_default_cache
from .errors import SmartCacheError

if TYPE_CHECKING:
    from typing import Concatenate

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")


class CachedFunction(Protocol[P, R_co]):
    """The type of a ``@cached`` function, for type checkers: it is called like the function
    (same parameters, same result; a coroutine function's result is its coroutine) and has
    the management methods. Accessed on an instance (a method), it is the bound method, a
    plain callable; reach ``invalidate``/``cache_key`` through the class,
    ``Repo.name.invalidate(repo, 3)``."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Removes the entry of that call; True if it existed."""

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key of that call."""

    def cache_clear(self) -> int:
        """Removes the entries this wrapper wrote; returns how many existed."""

    def cache_info(self) -> Dict[str, Any]:
        """key_prefix, ttl, refresh_ahead and the cache in use."""

    @overload
    def __get__(self, instance: None, owner: Optional[type] = None) -> "CachedFunction[P, R_co]":
        ...

    @overload
    def __get__(self: "CachedFunction[Concatenate[S, P2], R_co]", instance: S,
                owner: Optional[type] = None) -> "Callable[P2, R_co]": ...

_MISSING = object()
_HASH_OVER = 200
_ENVELOPE = "__smartcache_cached__"
_log = logging.getLogger("smartcache")
# The (wrapper state id, key) pairs whose async computation the current context is inside.
# A task inherits its creator's context, so a call made from inside a computation (directly
# or through other awaits and tasks it starts) sees the keys being computed above it.
_computing: "contextvars.ContextVar[FrozenSet[Tuple[int, str]]]" = contextvars.ContextVar(
    "smartcache_cached_computing", default=frozenset())


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


def _code_text(code: Any) -> str:
    """A code object's stable text: where it is, its bytecode, names and constants."""
    consts = ",".join(_code_text(c) if inspect.iscode(c) else _canon(c) for c in code.co_consts)
    return "|".join((code.co_filename, str(code.co_firstlineno), code.co_code.hex(),
                     ",".join(code.co_names), consts))


def _local_discriminator(func: Callable[..., Any]) -> str:
    """What tells apart functions that share a qualified name (closures made by one factory,
    lambdas): a hash of the code object and the values the closure captured, encoded like
    call arguments, so the same closure gets the same key in every process. When a captured
    value has no stable form (or the code cannot be read) the discriminator is random, unique
    to this decoration: such a function's entries are never shared, not even across
    processes, rather than risking another closure's results."""
    try:
        parts = [_code_text(getattr(func, "__code__"))]
        for cell in getattr(func, "__closure__", None) or ():
            parts.append(_canon(cell.cell_contents))  # ValueError: an empty cell
    except (AttributeError, TypeError, ValueError):
        return "local-" + uuid.uuid4().hex
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:16]


class _Flight:
    """One in-progress computation that concurrent callers of the same key wait for."""

    __slots__ = ("event", "result", "error", "leader")

    def __init__(self, leader: int) -> None:
        self.event = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.leader = leader


def _receiver_rule(func: Callable[..., Any]) -> Optional[str]:
    """"self" or "cls" when `func` is a method by the module's rule, else None."""
    params = list(inspect.signature(func).parameters.values())
    owner, _, _ = func.__qualname__.rpartition(".")
    if not params or not owner or owner.endswith("<locals>"):
        return None
    first = params[0]
    if first.name in ("self", "cls") and first.kind in (
            inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        return first.name
    return None


def _receiver_text(value: Any) -> str:
    """The key text of a method's self/cls argument (see the module's rule)."""
    if isinstance(value, type):
        return f"c{value.__module__}.{value.__qualname__}"
    if callable(getattr(value, "__cache_key__", None)):
        return _canon(value)
    try:
        return _canon(value)
    except TypeError:
        return "-"  # no stable form: a stateless object, its instances share entries


class _CachedFunction:
    """State shared by the sync and async wrappers of one decorated function."""

    def __init__(self, func: Callable[..., Any], ttl: Optional[float], key_prefix: Optional[str],
                 cache: Optional[SmartCache], refresh_ahead: Optional[float]) -> None:
        self.func = func
        self.ttl = ttl
        self.refresh_ahead = refresh_ahead
        identity = f"{func.__module__}.{func.__qualname__}"
        if "<locals>" in func.__qualname__ or "<lambda>" in func.__qualname__:
            identity += f"@{_local_discriminator(func)}"
        self.prefix = f"{key_prefix}:{identity}" if key_prefix else identity
        self.explicit_cache = cache
        self.signature = inspect.signature(func)
        self.receiver = _receiver_rule(func)
        self.lock = threading.Lock()
        self.flights: Dict[str, _Flight] = {}
        self.refreshing: Set[str] = set()
        self.warned_unstored = False
        self.async_flights: Dict[Tuple[int, str], "asyncio.Task[Any]"] = {}
        # Keys written, per cache (weak: a closed and dropped cache takes its set with it).
        self.written: MutableMapping[SmartCache, Set[str]] = weakref.WeakKeyDictionary()

    def cache(self) -> SmartCache:
        return self.explicit_cache if self.explicit_cache is not None else get_default_cache()

    def key(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
        try:
            return self._key(args, kwargs)
        except RecursionError:
            # A self-referencing or very deeply nested argument: no stable text exists (or
            # none that is worth building), which is the documented TypeError case.
            raise TypeError(
                f"@cached {self.prefix} cannot build a key: an argument is self-referencing "
                "or nested too deeply") from None

    def _key(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        parts = []
        for name, value in bound.arguments.items():
            kind = self.signature.parameters[name].kind
            if name == self.receiver:
                parts.append(f"{name}={_receiver_text(value)}")
            elif kind is inspect.Parameter.VAR_POSITIONAL:
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

    # -- what is stored ---------------------------------------------------------------------
    def wrap(self, value: Any) -> Any:
        """What is stored for a result: the result, or with refresh-ahead its envelope."""
        if self.refresh_ahead is None:
            return value
        return {_ENVELOPE: 1, "t": time.time(), "ttl": self.ttl, "v": value}

    def unwrap(self, entry: Any) -> Tuple[Any, bool]:
        """(result, due for a refresh) of a stored entry; result _MISSING when the entry is not
        what this function stores (see the module's refresh-ahead notes)."""
        if self.refresh_ahead is None:
            return entry, False
        if not (isinstance(entry, dict) and entry.get(_ENVELOPE) == 1 and "v" in entry):
            return _MISSING, False
        written, ttl = entry.get("t"), entry.get("ttl")
        if not isinstance(written, (int, float)) or not isinstance(ttl, (int, float)):
            return _MISSING, False
        return entry["v"], time.time() - written >= self.refresh_ahead * ttl

    def failed_to_store(self, error: Exception) -> None:
        """A result that cannot be cached (unpicklable, too large) is still returned to the
        callers, with a warning (once per decorated function, not at every call): caching is
        an optimisation, the call worked; the function runs again at each call."""
        with self.lock:
            if self.warned_unstored:
                return
            self.warned_unstored = True
        warnings.warn(f"@cached {self.prefix}: result not cached (the function runs again at "
                      f"every call with these arguments): {error}", RuntimeWarning, stacklevel=5)

    def remember(self, cache: SmartCache, key: str) -> None:
        with self.lock:
            keys = self.written.get(cache)
            if keys is None:
                keys = self.written[cache] = set()
            keys.add(key)

    def store(self, cache: SmartCache, key: str, value: Any) -> None:
        try:
            cache.set(key, self.wrap(value), ttl=self.ttl)
        except (SmartCacheError, ValueError, TypeError) as e:
            self.failed_to_store(e)
            return
        self.remember(cache, key)

    async def astore(self, cache: SmartCache, key: str, value: Any) -> None:
        try:
            await cache.aset(key, self.wrap(value), ttl=self.ttl)
        except (SmartCacheError, ValueError, TypeError) as e:
            self.failed_to_store(e)
            return
        self.remember(cache, key)

    def recheck(self, cache: SmartCache, key: str) -> Any:
        """The result a leader that finished meanwhile stored (it stored it in memory too), or
        _MISSING. Memory only: never waits on I/O, and counts no second miss."""
        return self.unwrap(cache._get_memory(key, _MISSING))[0]

    # -- sync -------------------------------------------------------------------------------
    def call(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        key = self.key(args, kwargs)
        cache = self.cache()
        value, due = self.unwrap(cache.get(key, _MISSING))
        if value is not _MISSING:
            if due:
                self.refresh_in_thread(cache, key, args, kwargs)
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
            value = self.recheck(cache, key)
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

    def refresh_in_thread(self, cache: SmartCache, key: str, args: Tuple[Any, ...],
                          kwargs: Dict[str, Any]) -> None:
        """Starts one background recomputation of `key` unless one is already running."""
        with self.lock:
            if key in self.refreshing or key in self.flights:
                return
            self.refreshing.add(key)

        def refresh() -> None:
            try:
                self.store(cache, key, self.func(*args, **kwargs))
            except Exception:
                _log.exception("@cached %s: refresh-ahead failed; the cached value stays until "
                               "it expires", self.prefix)
            finally:
                with self.lock:
                    self.refreshing.discard(key)

        threading.Thread(target=refresh, name="smartcache-refresh", daemon=True).start()

    # -- async ------------------------------------------------------------------------------
    async def acall(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        key = self.key(args, kwargs)
        cache = self.cache()
        value, due = self.unwrap(await cache.aget(key, _MISSING))
        if value is not _MISSING:
            if due:
                self.flight(cache, key, args, kwargs, recheck=False)
            return value
        if (id(self), key) in _computing.get():
            # Called from inside the computation of this very key (recursion, direct or
            # through other calls): joining the flight would await itself forever. Run the
            # body directly, as a re-entered sync function does.
            return await self.func(*args, **kwargs)
        # shield: cancelling this caller (whichever started the task) leaves it running for
        # the other callers.
        return await asyncio.shield(self.flight(cache, key, args, kwargs, recheck=True))

    def flight(self, cache: SmartCache, key: str, args: Tuple[Any, ...], kwargs: Dict[str, Any],
               recheck: bool) -> "asyncio.Task[Any]":
        """The task computing `key` on this loop: the running one, or a new one."""
        loop = asyncio.get_running_loop()
        fkey = (id(loop), key)
        with self.lock:
            task = self.async_flights.get(fkey)
            if task is None:
                task = loop.create_task(self.acompute(cache, key, args, kwargs, recheck))
                self.async_flights[fkey] = task
                task.add_done_callback(functools.partial(self.landed, fkey, recheck))
        return task

    async def acompute(self, cache: SmartCache, key: str, args: Tuple[Any, ...],
                       kwargs: Dict[str, Any], recheck: bool) -> Any:
        value = self.recheck(cache, key) if recheck else _MISSING
        if value is _MISSING:
            # This task runs in a copy of its creator's context: the mark stays in it.
            _computing.set(_computing.get() | {(id(self), key)})
            value = await self.func(*args, **kwargs)
            await self.astore(cache, key, value)
        return value

    def landed(self, fkey: Tuple[int, str], awaited: bool, task: "asyncio.Task[Any]") -> None:
        with self.lock:
            if self.async_flights.get(fkey) is task:
                del self.async_flights[fkey]
        # Retrieved here so a flight nobody awaits any more (all callers cancelled, or a
        # refresh) is not reported as "exception never retrieved"; callers still get it.
        error = None if task.cancelled() else task.exception()
        if error is not None and not awaited:
            _log.error("@cached %s: refresh-ahead failed; the cached value stays until it "
                       "expires", self.prefix, exc_info=error)

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


def _check_arguments(ttl: Optional[float], key_prefix: Optional[str],
                     cache: Optional[SmartCache], refresh_ahead: Optional[float]) -> None:
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            raise ValueError(f"@cached ttl must be a positive number of seconds or None, "
                             f"got {ttl!r}")
    if key_prefix is not None and not isinstance(key_prefix, str):
        raise TypeError(f"key_prefix must be a str, not {type(key_prefix).__name__}")
    if cache is not None and not isinstance(cache, SmartCache):
        raise TypeError(f"cache must be a SmartCache or None, not {type(cache).__name__}")
    if refresh_ahead is not None:
        if isinstance(refresh_ahead, bool) or not isinstance(refresh_ahead, (int, float)) \
                or not 0 < refresh_ahead < 1:
            raise ValueError(f"refresh_ahead must be a fraction of the ttl between 0 and 1 "
                             f"(e.g. 0.8), got {refresh_ahead!r}")
        if ttl is None:
            raise ValueError("refresh_ahead needs a ttl: it is a fraction of the entry's "
                             "lifetime")


class _Decorator(Protocol):
    """What ``@cached(...)`` returns. A function whose first parameter is a class (a
    classmethod's ``cls``) keeps a plain callable type: type checkers bind ``cls`` only for
    plain callables under ``@classmethod``."""

    @overload
    def __call__(self, func: "Callable[Concatenate[type[S], P], R]",
                 /) -> "Callable[Concatenate[type[S], P], R]": ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def cached(ttl: "Callable[Concatenate[type[S], P], R]",
           /) -> "Callable[Concatenate[type[S], P], R]": ...


@overload
def cached(ttl: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def cached(ttl: Optional[float] = None, key_prefix: Optional[str] = None,
           cache: Optional[SmartCache] = None, refresh_ahead: Optional[float] = None
           ) -> _Decorator: ...


def cached(ttl: Union[float, None, Callable[..., Any]] = None, key_prefix: Optional[str] = None,
           cache: Optional[SmartCache] = None, refresh_ahead: Optional[float] = None) -> Any:
    """Caches a function's results in a SmartCache (``ttl`` seconds; None = tier defaults).

    Usable as ``@cached(ttl=600, key_prefix="user_data")`` or bare ``@cached``. Works on plain
    and ``async def`` functions, methods and classmethods (either order with
    ``@classmethod``/``@staticmethod``), and keeps the function's signature for type checkers.
    See the module documentation for the cache used, the keys, the self/cls rule,
    single-flight and ``refresh_ahead``. The wrapper gains:

    - ``cache_clear()``: removes the entries it wrote (returns how many existed);
    - ``invalidate(*args, **kwargs)``: removes the entry of that call (True if it existed);
    - ``cache_key(*args, **kwargs)``: the key of that call, for inspection.

    A result of None is cached like any other value.
    """
    if callable(ttl) or isinstance(ttl, (classmethod, staticmethod)):  # bare @cached
        if key_prefix is not None or cache is not None or refresh_ahead is not None:
            raise TypeError("@cached takes ttl, key_prefix, cache and refresh_ahead as keywords "
                            "when it is given any")
        return cached()(ttl)
    _check_arguments(ttl, key_prefix, cache, refresh_ahead)

    def decorate(func: Any) -> Any:
        if isinstance(func, (classmethod, staticmethod)):  # @cached above @classmethod
            return type(func)(decorate(func.__func__))
        state = _CachedFunction(func, ttl, key_prefix, cache, refresh_ahead)
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
                                      "refresh_ahead": state.refresh_ahead,
                                      "cache": state.cache()}
        return wrapper

    return decorate


__all__ = ["CachedFunction", "cached", "get_default_cache", "set_default_cache"]
