"""Which SmartCache ``@cached`` (and the middleware) use when given none.

The rule, in order:

1. the cache passed to ``set_default_cache(cache)``, while it is open;
2. else the first SmartCache opened in this process that is still open (so an application that
   configures its multi-tier cache and then decorates functions gets that cache, every tier);
3. else a memory-only cache with the library defaults, created on first use (and replaced by
   rule 2 as soon as the application opens a cache of its own).

Opened caches are tracked weakly: tracking never keeps a cache alive. After ``os.fork()``, rule
2 prefers the caches the child opens: the first cache a pre-forked worker opens is its default,
and until it opens one the first still open of those its parent opened is.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:
    from .cache import SmartCache

_lock = threading.Lock()
_chosen: Optional["SmartCache"] = None
# Caches opened by the application in this process, in opening order (the fallback is not
# one of them); and those opened before a fork by the parent (or its ancestors), which come
# after: a forked worker's own first cache is its default.
_opened: List["weakref.ref[SmartCache]"] = []
_inherited: List["weakref.ref[SmartCache]"] = []
_fallback: Optional["SmartCache"] = None


def cache_opened(cache: "SmartCache") -> None:
    """Called by SmartCache once it is open: remembers it as a default candidate."""
    with _lock:
        _opened.append(weakref.ref(cache))


def _first_open() -> Optional["SmartCache"]:
    """The earliest cache this process opened that is still open, else the earliest one
    inherited through fork; forgets those closed or collected before it."""
    for candidates in (_opened, _inherited):
        while candidates:
            cache = candidates[0]()
            if cache is not None and not cache.closed:
                return cache
            del candidates[0]
    return None


def get_default_cache() -> "SmartCache":
    """The cache ``@cached`` uses when given none (see the module's rule)."""
    global _fallback
    chosen = _chosen
    if chosen is not None and not chosen.closed:
        return chosen
    with _lock:
        if _chosen is not None and not _chosen.closed:
            return _chosen
        first = _first_open()
        if first is not None:
            return first
        if _fallback is None or _fallback.closed:
            from .cache import SmartCache
            from .config import SmartCacheConfig
            _fallback = SmartCache(SmartCacheConfig(), _track=False)
        return _fallback


def set_default_cache(cache: Optional["SmartCache"] = None) -> Optional["SmartCache"]:
    """Makes ``cache`` the default of ``@cached`` (None: back to the first cache opened, see
    the module's rule). Returns the cache previously chosen this way (None if none was); the
    caller decides whether to close it."""
    global _chosen
    from .cache import SmartCache
    if cache is not None and not isinstance(cache, SmartCache):
        raise TypeError(f"expected a SmartCache or None, not {type(cache).__name__}")
    with _lock:
        previous, _chosen = _chosen, cache
    return previous


def _forget_after_fork() -> None:
    # The child inherits the parent's objects but not its threads; the lock may have been held
    # by one of them at fork time. The caches the parent opened rank after the ones this
    # child opens: a pre-forked worker that opens its own (a post_fork hook) gets it as its
    # default; one that opens none keeps the parent's (usable after fork, e.g. with gunicorn
    # --preload). A cache chosen with set_default_cache() stays chosen: an explicit choice.
    global _lock
    _lock = threading.Lock()
    _inherited[:0] = _opened
    _opened.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
