"""SmartCache for Python: a multi-tier cache (memory L1, Redis L2, disk L3) in a native library.

    from smartcache import SmartCache, SmartCacheConfig, cached

    cache = SmartCache(SmartCacheConfig(memory_capacity=1000, memory_ttl=300))
    cache.set("user:1", {"name": "Ada"}, ttl=60)
    cache.get("user:1")            # {'name': 'Ada'}

    @cached(ttl=600, key_prefix="user_data")
    def get_user_data(user_id: int) -> dict: ...

The library is found via $SMARTCACHE_LIB, a copy in this package, the repository's build/lib,
or the system loader (see smartcache._lib).
"""

from . import _native
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

__all__ = [
    "SmartCache", "SmartCacheConfig", "CacheStats", "cached", "get_default_cache",
    "set_default_cache", "library_defaults", "library_version", "lib_path", "Serializer",
    "SmartCacheError", "InvalidArgumentError", "TooLargeError", "KeyTooLargeError",
    "ValueTooLargeError", "OutOfMemoryError", "DiskIOError", "BackendError", "ConfigError",
    "TierUnavailableError", "InternalError", "SerializationError", "CacheClosedError",
    "SecurityWarning",
    "__version__",
]
