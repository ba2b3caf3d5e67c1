"""SmartCache for Python: a multi-tier cache (memory L1, Redis L2, disk L3) in a native library.

    from smartcache import SmartCache, SmartCacheConfig, cached

    cache = SmartCache(SmartCacheConfig(memory_capacity=1000, memory_ttl=300))
    cache.set("user:1", {"name": "Ada"}, ttl=60)
    cache.get("user:1")            # {'name': 'Ada'}

    @cached(ttl=600, key_prefix="user_data")
    def get_user_data(user_id: int) -> dict: ...

The library is found via $SMARTCACHE_LIB, a copy in this package, the repository's build/lib,
or the system loader (see smartcache._lib). Calls cross into it through the package's compiled
cffi module, or through ctypes where that module is missing (see ``backend()``).
"""

from . import _backend, _native
from ._lib import lib_path, library_version
from .cache import CacheStats, SmartCache
from .config import SmartCacheConfig, library_defaults
from .decorators import cached, get_default_cache, set_default_cache
from .errors import (
    BackendError,
    CacheClosedError,
    ConfigError,
    DiskIOError,
    InternalError,
    InvalidArgumentError,
    KeyTooLargeError,
    OutOfMemoryError,
    SecurityWarning,
    SerializationError,
    SmartCacheError,
    TierUnavailableError,
    TooLargeError,
    ValueTooLargeError,
)
from .serializers import Serializer

__version__ = _native.SZ_VERSION


def backend() -> str:
    """Which layer get/set/delete/exists cross into the library through: ``"cffi"`` (the
    package's compiled module, the faster) or ``"ctypes"`` (the fallback: no cffi module, or
    ``SMARTCACHE_BACKEND=ctypes``). ``SMARTCACHE_BACKEND=cffi`` makes a missing cffi module an
    ImportError instead of a fallback."""
    return _backend.NAME


__all__ = [
    "SmartCache", "SmartCacheConfig", "CacheStats", "cached", "get_default_cache",
    "set_default_cache", "library_defaults", "backend", "library_version", "lib_path", "Serializer",
    "SmartCacheError", "InvalidArgumentError", "TooLargeError", "KeyTooLargeError",
    "ValueTooLargeError", "OutOfMemoryError", "DiskIOError", "BackendError", "ConfigError",
    "TierUnavailableError", "InternalError", "SerializationError", "CacheClosedError",
    "SecurityWarning",
    "__version__",
]
