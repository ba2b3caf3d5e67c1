"""SmartCacheConfig: the guide's configuration object, with the library's defaults.

Every field maps one-to-one onto an option of ``sz_config_set`` (same name). Defaults are the
library's defaults (src/config.rs; a test compares them with ``sz_config_get``). Bad values are
rejected when the object is built, naming the field: first by Python type checks (so a typo
such as ``memory_ttl="5m"`` is a TypeError/ValueError at the call site, not later at open), then
by handing every option to the library's own parser, which owns the rules for ranges and
formats (e.g. size suffixes) so they are never duplicated here.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Optional, Tuple, Union, cast

from . import _native
from ._lib import last_error, lib
from .errors import ConfigError, error_for

PathLike = Union[str, "os.PathLike[str]"]
Size = Union[int, str]

_BOOL_FIELDS = frozenset({
    "compression_enabled", "jemalloc_enabled", "redis_enabled", "redis_invalidation",
    "disk_enabled", "enable_stats",
})
_SECONDS_FIELDS = frozenset({"memory_ttl", "redis_ttl", "disk_ttl", "auto_expire_interval"})
_COUNT_FIELDS = frozenset({"memory_capacity", "redis_timeout_ms", "redis_pool_size"})
_SECRET_FIELDS = frozenset({"value_secret", "value_secret_previous"})
_TLS_FIELDS = frozenset({
    "redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file", "redis_tls_server_name",
})
_SIZE_FIELDS = frozenset({
    "memory_max_bytes", "compression_min_size", "disk_max_size", "max_value_size",
})


def default_disk_path() -> str:
    """The library's default disk_path for the effective user: ``$XDG_CACHE_HOME/smartcache``,
    else ``$HOME/.cache/smartcache``, else ``/tmp/smartcache-<euid>`` (relative or empty
    variables are ignored). Mirrors src/config.rs; a test compares the two."""
    for var, tail in (("XDG_CACHE_HOME", "smartcache"), ("HOME", ".cache/smartcache")):
        base = os.environ.get(var, "")
        if os.path.isabs(base):
            return os.path.join(base, tail)
    return f"/tmp/smartcache-{os.geteuid()}"


@dataclass
class SmartCacheConfig:
    """Options of a SmartCache (the guide's ``SmartCacheConfig``, plus deployment options).

    TTLs and intervals are whole seconds (0 = no expiry / off); sizes are bytes, as an int or a
    string with a K, M or G suffix (``"64M"``). The memory tier is always on; the Redis (L2) and
    disk (L3) tiers are turned on with ``redis_enabled`` / ``disk_enabled``.
    """

    # --- the guide's fields ---
    #: L1 bound in items.
    memory_capacity: int = 1000
    #: L1 default TTL, seconds (0 = none).
    memory_ttl: int = 300
    #: Compress values of compression_min_size bytes or more with LZ4.
    compression_enabled: bool = True
    #: Store L1 entries in a dedicated jemalloc arena.
    jemalloc_enabled: bool = True
    #: Enable the Redis tier (L2).
    redis_enabled: bool = False
    #: redis://[user:password@]host:port/db, rediss://... (TLS),
    #: redis+sentinel://host:port[,host:port]/master-name[/db] (also rediss+sentinel://),
    #: a Redis Cluster's redis+cluster://[user:password@]host:port,host:port/ (seed nodes;
    #: also rediss+cluster://), or unix:///path?db=N
    redis_url: str = "redis://localhost:6379/0"
    #: L2 default TTL, seconds.
    redis_ttl: int = 1800
    #: Enable the disk tier (L3).
    disk_enabled: bool = False
    #: A directory; the disk tier keeps one file in it. Default: private to this user (see
    #: default_disk_path); it must belong to this user and not be writable by others.
    disk_path: PathLike = field(default_factory=default_disk_path)
    #: L3 default TTL, seconds.
    disk_ttl: int = 3600
    #: Count hits/misses/etc. (get_stats() is all zeros without it).
    enable_stats: bool = True
    #: Seconds between background expiry passes (0 = off; expiry on read is always exact).
    auto_expire_interval: int = 60

    # --- deployment options of the library (src/config.rs) ---
    #: L1 bound in bytes of key + value (0 = bounded by items only; else at least 4096).
    memory_max_bytes: Size = 0
    #: Smallest value, in bytes, that compression is tried on.
    compression_min_size: Size = 1024
    #: Bound on one whole Redis call (pool wait, connect, command), milliseconds.
    redis_timeout_ms: int = 100
    #: Redis connections per cache (1..1024).
    redis_pool_size: int = 4
    #: Prefix of every Redis key; None = derived by the library as "sc:" + 32 hex digits of
    #: SHA-256(canonical disk_path) + ":", so caches with the same disk_path share Redis
    #: entries and others do not.
    redis_key_prefix: Optional[str] = None
    #: For rediss:// URLs: PEM file of the CA certificates that verify the server ("" = the
    #: system's trust store).
    redis_tls_ca_file: str = ""
    #: For rediss:// URLs: PEM client certificate, with redis_tls_key_file ("" = none).
    redis_tls_cert_file: str = ""
    #: For rediss:// URLs: PEM private key of redis_tls_cert_file ("" = none).
    redis_tls_key_file: str = ""
    #: For rediss:// URLs: the name the server's certificate must carry ("" = the URL's host).
    redis_tls_server_name: str = ""
    #: Keep the memory tier coherent with other hosts: Redis reports the keys under this
    #: cache's prefix that anyone changes (CLIENT TRACKING ... BCAST) and they are dropped from
    #: memory; while that connection is down, memory holds nothing. Needs redis_enabled and
    #: Redis 6 or later. See docs/coherence.md, "Other hosts".
    redis_invalidation: bool = False
    #: The most the disk tier's file grows to, laid out when it is created (it starts with a
    #: few MiB on disk; an existing file keeps its layout).
    disk_max_size: Size = 256 << 20
    #: Largest value set() accepts, bytes.
    max_value_size: Size = 16 << 20
    #: Signs every value written to Redis and disk (HMAC-SHA256); values found there without a
    #: valid signature are misses, counted as ``tampered``. "" = off; else 16 to 4096 bytes,
    #: the same on every process sharing the cache. Never shown by repr() or to_dict().
    value_secret: str = field(default="", repr=False)
    #: The secret before the current one, accepted when reading only (for rotating the
    #: secret across a fleet). "" = none.
    value_secret_previous: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self.validate()

    # -- validation ----------------------------------------------------------------------
    def validate(self) -> None:
        """Checks every field; raises TypeError (wrong type) or ConfigError (a ValueError;
        bad value, as judged by the library's parser), both naming the field."""
        for f in dataclasses.fields(self):
            self._check_type(f.name, getattr(self, f.name))
        cfg = self._to_native()
        lib.sz_config_free(cfg)

    @staticmethod
    def _check_type(name: str, value: Any) -> None:
        if name in _BOOL_FIELDS:
            if not isinstance(value, bool):
                raise TypeError(f"SmartCacheConfig.{name} must be a bool, not {type(value).__name__}")
        elif name in _SECONDS_FIELDS or name in _COUNT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"SmartCacheConfig.{name} must be an int, not {type(value).__name__}")
            if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
                raise ConfigError(
                    f"SmartCacheConfig.{name} must be a whole number, got {value!r}", field=name)
            if value < 0:
                raise ConfigError(f"SmartCacheConfig.{name} must not be negative, got {value!r}",
                                  field=name)
        elif name in _SIZE_FIELDS:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise TypeError(
                    f"SmartCacheConfig.{name} must be an int or a size string such as '64M', "
                    f"not {type(value).__name__}")
            if isinstance(value, int) and value < 0:
                raise ConfigError(f"SmartCacheConfig.{name} must not be negative, got {value!r}",
                                  field=name)
        elif name == "redis_key_prefix":
            if value is not None and not isinstance(value, str):
                raise TypeError(f"SmartCacheConfig.{name} must be a str or None, "
                                f"not {type(value).__name__}")
        elif name == "disk_path":
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"SmartCacheConfig.{name} must be a str or path, "
                                f"not {type(value).__name__}")
        elif name in _SECRET_FIELDS:
            if not isinstance(value, str):
                raise TypeError(f"SmartCacheConfig.{name} must be a str, not {type(value).__name__}")
        elif name == "redis_url" or name in _TLS_FIELDS:
            if not isinstance(value, str):
                raise TypeError(f"SmartCacheConfig.{name} must be a str, not {type(value).__name__}")

    # -- conversion to the library -------------------------------------------------------
    def options(self) -> Iterator[Tuple[str, str]]:
        """(name, text) of every option, in the form ``sz_config_set`` takes."""
        for f in dataclasses.fields(self):
            yield f.name, _text(getattr(self, f.name))

    def _to_native(self) -> "ctypes._Pointer[_native.sz_config]":
        """A new sz_config holding these options; the caller frees it with sz_config_free."""
        cfg = lib.sz_config_new()
        if not cfg:
            raise MemoryError("sz_config_new failed")
        for name, text in self.options():
            try:
                value = text.encode("utf-8")
            except UnicodeEncodeError as e:
                lib.sz_config_free(cfg)
                raise ConfigError(f"SmartCacheConfig.{name}: {e}", field=name) from None
            if b"\0" in value:
                lib.sz_config_free(cfg)
                raise ConfigError(f"SmartCacheConfig.{name} contains a NUL character", field=name)
            rc = lib.sz_config_set(cfg, name.encode(), value)
            if rc != _native.SZ_OK:
                msg = last_error()  # thread-local in the library: read it before anything else
                lib.sz_config_free(cfg)
                err = error_for(rc, f"SmartCacheConfig.{name}: {msg}")
                if isinstance(err, ConfigError):
                    err.field = name
                raise err
        return cast("ctypes._Pointer[_native.sz_config]", cfg)

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a plain dict (e.g. for logging or JSON); a set secret shows as "***"."""
        d = dataclasses.asdict(self)
        d["disk_path"] = os.fspath(self.disk_path)
        for name in _SECRET_FIELDS:
            if d[name]:
                d[name] = "***"
        return d


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value))
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    return str(value)


def library_defaults() -> Dict[str, str]:
    """Every option's default as the library reports it (``sz_config_get`` on a new config)."""
    cfg = lib.sz_config_new()
    out: Dict[str, str] = {}
    try:
        for f in dataclasses.fields(SmartCacheConfig):
            p = ctypes.c_void_p()
            rc = lib.sz_config_get(cfg, f.name.encode(), ctypes.byref(p))
            if rc != _native.SZ_OK:
                raise error_for(rc, last_error())
            try:
                out[f.name] = ctypes.string_at(p.value).decode() if p.value else ""
            finally:
                lib.sz_string_free(p)
    finally:
        lib.sz_config_free(cfg)
    return out
