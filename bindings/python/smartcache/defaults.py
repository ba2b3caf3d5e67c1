"""Which SmartCache ``@cached`` (and the middleware) use when given none.

The rule, in order:

1. the cache passed to ``set_default_cache(cache)``, while it is open;
2. else the first SmartCache opened in this process that is still open (so an application that
   configures its multi-tier cache and then decorates functions gets that cache, every tier);
3. else a memory-only cache with the library defaults, created on first use (and replaced by
   rule 2 as soon as the application opens a cache of its own).

Opened caches are tracked weakly: tracking never keeps a cache alive.
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
# Caches opened by the application, in opening order (the fallback is not one of them).
_opened: List["weakref.ref[SmartCache]"] = []
_fallback: Optional["SmartCache"] = None


def cache_opened(cache: "SmartCache") -> None:
    """Called by SmartCache once it is open: remembers it as a default candidate."""
    with _lock:
        _opened.append(weakref.ref(cache))


def _first_open() -> Optional["SmartCache"]:
    """The earliest-opened cache still open; forgets those closed or collected before it."""
    while _opened:
        cache = _opened[0]()
        if cache is not None and not cache.closed:
            return cache
        del _opened[0]
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


def set_default_cache(cache: Optional["SmartCache"]) -> Optional["SmartCache"]:
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
    # by one of them at fork time.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
