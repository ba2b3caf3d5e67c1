"""How Python values become the bytes the library stores, and back.

Every stored value starts with one tag byte saying which form it is in, so ``get`` returns the
type that was ``set``: ``bytes`` and ``str`` are stored raw (tag ``B`` / ``S`` + the bytes / UTF-8),
anything else goes through the cache's serializer: pickle (the default), JSON, or a custom object
with ``dumps(obj) -> bytes`` and ``loads(bytes) -> obj``.

The ``raw`` serializer adds no tag at all: it stores bytes exactly as given and returns whatever
bytes are stored, so values pass unchanged to and from programs in other languages (the C and
Go APIs store plain bytes). docs/value-format.md describes every form.

Pickle needs no extra tag: every pickle of protocol 2 or later begins with the PROTO opcode
``0x80``, which no other tag uses, so a pickled value is stored exactly as pickle produced it
(no concatenation copy on set) and handed to ``pickle.loads`` straight from the library's
buffer on get (no copy at all).
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Protocol, Union, cast, runtime_checkable

from ._native import SZ_TAG_JSON
from .errors import SerializationError

TAG_PICKLE = 0x80  # pickle's own PROTO opcode (protocol >= 2)
TAG_BYTES = ord("B")
TAG_STR = ord("S")
TAG_JSON = SZ_TAG_JSON  # 'J', shared with sz_cache_set_json / sz_cache_get_json
TAG_CUSTOM = ord("C")

_B = b"B"
_S = b"S"
_J = bytes([TAG_JSON])
_C = b"C"


@runtime_checkable
class Serializer(Protocol):
    """A custom serializer: anything with these two methods (e.g. a module such as ``marshal``)."""

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


SerializerSpec = Union[str, Serializer]


class Codec:
    """Encodes and decodes values for one cache, according to its serializer choice."""

    __slots__ = ("name", "_custom", "_allow_pickle", "_raw")

    def __init__(self, serializer: SerializerSpec = "pickle") -> None:
        if isinstance(serializer, str):
            if serializer not in ("pickle", "json", "raw"):
                raise ValueError(
                    f"serializer must be 'pickle', 'json', 'raw' or an object with dumps/loads, "
                    f"not {serializer!r}")
            self.name = serializer
            self._custom = None
        elif callable(getattr(serializer, "dumps", None)) and callable(
                getattr(serializer, "loads", None)):
            self.name = "custom"
            self._custom = serializer
        else:
            raise TypeError("serializer must be 'pickle', 'json', 'raw' or an object with dumps() "
                            f"and loads(), not {type(serializer).__name__}")
        # A cache told to use json/custom must not unpickle what it finds: choosing a
        # non-pickle serializer is how a user keeps untrusted stores from running pickle code.
        self._allow_pickle = self.name == "pickle"
        self._raw = self.name == "raw"

    def encode(self, value: Any) -> bytes:
        t = type(value)
        if self._raw:
            return _raw_bytes(value)
        if t is bytes:
            return _B + cast(bytes, value)
        if t is str:
            try:
                return _S + cast(str, value).encode("utf-8")
            except UnicodeEncodeError:
                pass  # lone surrogates: not UTF-8, let the serializer keep them exactly
        try:
            if self.name == "pickle":
                return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            if self.name == "json":
                return _J + json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                                       allow_nan=True).encode("utf-8", "surrogatepass")
            assert self._custom is not None
            data = self._custom.dumps(value)
        except SerializationError:
            raise
        except Exception as e:  # pickle raises PicklingError, TypeError, AttributeError, ...
            raise SerializationError(
                f"cannot serialize a value of type {t.__module__}.{t.__qualname__} with "
                f"{self.name}: {type(e).__name__}: {e}") from e
        if not isinstance(data, (bytes, bytearray)):
            raise SerializationError(
                f"the custom serializer's dumps() returned {type(data).__name__}, not bytes")
        return _C + bytes(data)

    def decode(self, buf: Union[bytes, memoryview]) -> Any:
        """The value stored in ``buf`` (a view of the library's bytes; not kept after return)."""
        if self._raw:
            return bytes(buf)
        if not len(buf):
            raise SerializationError("stored value is empty: it was not written by smartcache's "
                                     "Python binding")
        tag = buf[0]
        try:
            if tag == TAG_PICKLE:
                if not self._allow_pickle:
                    raise SerializationError(
                        f"stored value is a pickle, but this cache uses the {self.name} "
                        "serializer and does not unpickle")
                return pickle.loads(buf)
            if tag == TAG_BYTES:
                return bytes(buf[1:])
            if tag == TAG_STR:
                return str(buf[1:], "utf-8")
            if tag == TAG_JSON:
                return json.loads(str(buf[1:], "utf-8", "surrogatepass"))
            if tag == TAG_CUSTOM:
                if self._custom is None:
                    raise SerializationError(
                        "stored value was written by a custom serializer; open the cache with "
                        "the same serializer to read it")
                return self._custom.loads(bytes(buf[1:]))
        except SerializationError:
            raise
        except Exception as e:
            raise SerializationError(f"cannot decode stored value (tag {tag:#04x}): "
                                     f"{type(e).__name__}: {e}") from e
        raise SerializationError(f"stored value has unknown tag {tag:#04x}: it was not written by "
                                 "smartcache's Python binding")


def _raw_bytes(value: Any) -> bytes:
    """What the raw serializer stores for ``value``: its bytes, unchanged. Anything that is not
    bytes-like is refused rather than converted, because a guessed conversion (str to UTF-8,
    int to text) would be read back as bytes and silently differ from what was set."""
    if type(value) is bytes:
        return value  # narrowed to bytes by the check above
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    t = type(value)
    raise SerializationError(
        f"the raw serializer stores bytes only (bytes, bytearray or memoryview), not "
        f"{t.__module__}.{t.__qualname__}: encode the value first, or open the cache with "
        "serializer='json' or 'pickle'")
