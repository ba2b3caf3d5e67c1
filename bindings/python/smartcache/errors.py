"""Exceptions: one class per library status code, under a common SmartCacheError.

Subclasses also derive from the matching builtin (ValueError, MemoryError, OSError, ...) so
that code which already catches those keeps working, while ``except SmartCacheError`` catches
everything this package raises on purpose.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

from . import _native


class SecurityWarning(UserWarning):
    """A cache was opened in a way that lets others run code or change values in this process
    (see docs/guide.md, "Trust model")."""


class SmartCacheError(Exception):
    """Base of every error from the library or this binding.

    ``code`` is the library status (``SZ_ERR_*``), ``message`` the library's own text
    (``sz_last_error()``) or the binding's explanation.
    """

    def __init__(self, message: str, code: int = _native.SZ_ERR_INTERNAL) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        name = _native.STATUS_NAMES.get(self.code, str(self.code))
        return f"{self.message} [{name}]"


class InvalidArgumentError(SmartCacheError, ValueError):
    """SZ_ERR_INVALID: an empty key, a NULL, text that is not UTF-8."""


class TooLargeError(SmartCacheError, ValueError):
    """SZ_ERR_TOO_LARGE: a key or value over its limit."""


class KeyTooLargeError(TooLargeError):
    """A key over 65535 bytes."""


class ValueTooLargeError(TooLargeError):
    """A value over max_value_size or the memory tier's byte budget."""


class OutOfMemoryError(SmartCacheError, MemoryError):
    """SZ_ERR_NOMEM."""


class DiskIOError(SmartCacheError, OSError):
    """SZ_ERR_IO: the disk tier's file cannot be used, or is not a SmartCache file."""


class BackendError(SmartCacheError):
    """SZ_ERR_BACKEND: the Redis tier failed."""


class ConfigError(SmartCacheError, ValueError):
    """SZ_ERR_CONFIG, or a SmartCacheConfig field with a bad type/value (``field`` names it)."""

    def __init__(self, message: str, code: int = _native.SZ_ERR_CONFIG,
                 field: Optional[str] = None) -> None:
        super().__init__(message, code)
        self.field = field


class TierUnavailableError(ConfigError):
    """A tier that the library does not provide was enabled. Kept for compatibility: libraries
    from before the Redis and disk tiers landed raised it; the current one has every tier and
    does not."""


class InternalError(SmartCacheError):
    """SZ_ERR_INTERNAL: a bug in the library. Please report it with the message."""


class SerializationError(SmartCacheError, TypeError):
    """A value could not be serialised (e.g. unpicklable) or a stored value not decoded."""

    def __init__(self, message: str) -> None:
        super().__init__(message, _native.SZ_ERR_INVALID)


class CacheClosedError(SmartCacheError, RuntimeError):
    """The cache was used after close()."""

    def __init__(self, message: str = "the cache is closed") -> None:
        super().__init__(message, _native.SZ_ERR_INVALID)


_BY_CODE: Dict[int, Type[SmartCacheError]] = {
    _native.SZ_ERR_INVALID: InvalidArgumentError,
    _native.SZ_ERR_TOO_LARGE: TooLargeError,
    _native.SZ_ERR_NOMEM: OutOfMemoryError,
    _native.SZ_ERR_IO: DiskIOError,
    _native.SZ_ERR_BACKEND: BackendError,
    _native.SZ_ERR_CONFIG: ConfigError,
    _native.SZ_ERR_INTERNAL: InternalError,
}

#: The phrase older libraries used for a tier not yet implemented (no tier is missing now).
TIER_UNAVAILABLE_PHRASE = "not available in this build"


def error_for(code: int, message: str) -> SmartCacheError:
    """The exception for a failing status ``code`` with the library's ``message``."""
    if code == _native.SZ_ERR_TOO_LARGE:
        # The library says "too large: key of N bytes ..." or "... value of N bytes ...".
        if "key of" in message:
            return KeyTooLargeError(message, code)
        return ValueTooLargeError(message, code)
    if code == _native.SZ_ERR_CONFIG and TIER_UNAVAILABLE_PHRASE in message:
        return TierUnavailableError(message, code)
    cls = _BY_CODE.get(code, SmartCacheError)
    return cls(message or f"status {code}", code)
