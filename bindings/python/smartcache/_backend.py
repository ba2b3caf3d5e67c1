"""The foreign-function layer of the per-operation calls: cffi's compiled module, else ctypes.

``get``, ``set``, ``delete`` and ``exists`` cross into the library once per call, so what the
crossing costs is most of what the binding adds to a memory hit. The cffi modules
(``smartcache._sz_cffi`` and ``_sz_cffi_hit``, built with the package, see
``_cffi_build.py``) call the C functions from compiled code. They are used when they import;
ctypes is the fallback (a Python without cffi, a package built without a C compiler, PyPy)
and can be forced with ``SMARTCACHE_BACKEND=ctypes``; ``SMARTCACHE_BACKEND=cffi`` makes
missing cffi modules an ImportError instead. ``smartcache.backend()`` says which one is in
use.

Both call the one library ``smartcache._lib`` loaded. Opening, configuration, batches,
stats and health always go through ctypes: they run once per cache or per batch, where the
crossing's cost does not show.

What the two differ in, and what this module gives ``cache.py`` so that one body of
get/set/delete/exists serves both:

- the call arguments: ``LENGTHS[n]`` (n < 1024) or ``length(n)`` for a size_t, ``ttl(ms)``
  for a uint64 (ctypes wants ready-made ctypes objects, which skip its conversions; cffi takes
  ints), ``cache_arg(handle)`` for the cache pointer, and a receive buffer's ``ref``;
- nothing about the GIL: on both, the two gets keep it (a memory hit is cheaper under the GIL
  than with a release and reacquire around it) and hand the library the interpreter's own
  functions, in the receive buffer, to release it while a get waits on Redis or the disk;
  set, delete and exists release it for the whole call.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Callable, Optional, Tuple

from . import _native
from ._lib import lib

_CHOICE = os.environ.get("SMARTCACHE_BACKEND", "").strip().lower()
if _CHOICE not in ("", "auto", "cffi", "ctypes"):
    raise ImportError(f"smartcache: SMARTCACHE_BACKEND={_CHOICE!r}: expected 'cffi', 'ctypes' "
                      f"or 'auto'")


def _import_cffi() -> Tuple[Any, Any, str]:
    """The compiled cffi modules (calls releasing the GIL, gets keeping it), or Nones and why
    they are not used."""
    if _CHOICE == "ctypes":
        return None, None, "SMARTCACHE_BACKEND=ctypes"
    try:
        from . import _sz_cffi, _sz_cffi_hit  # type: ignore[attr-defined]
    except ImportError as e:
        if _CHOICE == "cffi":
            raise ImportError(f"smartcache: SMARTCACHE_BACKEND=cffi, but the cffi module does "
                              f"not load: {e}") from e
        return None, None, f"the cffi module does not load: {e}"
    return _sz_cffi, _sz_cffi_hit, ""


_cffi_module, _cffi_hit_module, FALLBACK_REASON = _import_cffi()

#: "cffi" or "ctypes": the layer the per-operation calls go through.
NAME = "ctypes" if _cffi_module is None else "cffi"


def _address(function: Any) -> int:
    """The address of a C function of the interpreter (never NULL: it is linked in)."""
    address = ctypes.cast(function, ctypes.c_void_p).value
    if address is None:
        raise ImportError(f"smartcache: {function} has no address")
    return address


# What a receive buffer's release / reacquire hooks point at: the interpreter's own.
_SAVE_THREAD = _address(ctypes.pythonapi.PyEval_SaveThread)
_RESTORE_THREAD = _address(ctypes.pythonapi.PyEval_RestoreThread)

_SMALL = 1024  # lengths below this are looked up in LENGTHS instead of constructed

if _cffi_module is not None:
    _ffi, _clib = _cffi_module.ffi, _cffi_module.lib

    get_buffered = _cffi_hit_module.lib.sz_cache_get_buffered
    get_memory = _cffi_hit_module.lib.sz_cache_get_memory
    set = _clib.sz_cache_set  # noqa: A001 (the C function's name)
    delete = _clib.sz_cache_delete
    exists = _clib.sz_cache_exists
    LENGTHS: Tuple[Any, ...] = tuple(range(_SMALL))
    length: Callable[[int], Any] = int
    ttl: Callable[[int], Any] = int
    TTL_DEFAULT: Any = 0

    def cache_arg(handle: Optional[Any]) -> Any:
        """The cache pointer as the calls here take it."""
        address = ctypes.cast(handle, ctypes.c_void_p).value if handle else None
        return _ffi.cast("sz_cache *", address or 0)

    def new_get_buffer() -> Tuple[Any, Any]:
        """A zeroed sz_get_buffer and the argument that passes it: a pointer to it."""
        st = _ffi.new("sz_get_buffer *")
        st.release = _ffi.cast("sz_release_fn", _SAVE_THREAD)
        st.reacquire = _ffi.cast("sz_reacquire_fn", _RESTORE_THREAD)
        st.pin_larger = 1
        return st, st

    def point(st: Any, raw: bytearray) -> Any:
        """Points the buffer at `raw`; returns what must stay alive while it does."""
        data = _ffi.from_buffer("uint8_t[]", raw)
        st.data = data
        st.cap = len(raw)
        st.len = 0
        return data

    def attach(st: Any, handle: Optional[Any]) -> None:
        """Sets which cache a receive buffer reads (None: none, so the library refuses it)."""
        st.cache = cache_arg(handle)

    def take_value(v: Any) -> bytes:
        """The bytes of a pinned sz_value (one copy), and the pin released."""
        try:
            data = _ffi.cast("char *", _clib.sz_value_data(v))
            return bytes(_ffi.buffer(data, _clib.sz_value_len(v)))
        finally:
            _clib.sz_value_release(v)

else:
    def _untyped(name: str) -> Any:
        """A second function object for `name` with the generated restype but no argtypes:
        ctypes spends ~0.3us per call converting and checking arguments against argtypes,
        and these receive ready-made ctypes objects built exactly per the generated
        prototype (a test checks them against _native.FUNCTIONS), so nothing is converted."""
        fn = lib._FuncPtr((name, lib))
        fn.restype = _native.FUNCTIONS[name][0]
        return fn

    def _keeping_gil(name: str) -> Any:
        """`name` called without releasing the GIL (a PyDLL function): the library releases
        it through the receive buffer's hooks only when a get leaves the memory tier."""
        pylib = ctypes.PyDLL(lib._name, handle=lib._handle)
        fn = pylib._FuncPtr((name, pylib))
        fn.restype = _native.FUNCTIONS[name][0]
        return fn

    _RELEASE_GIL = _native.sz_release_fn(_SAVE_THREAD)
    _REACQUIRE_GIL = _native.sz_reacquire_fn(_RESTORE_THREAD)

    get_buffered = _keeping_gil("sz_cache_get_buffered")
    get_memory = _keeping_gil("sz_cache_get_memory")
    set = _untyped("sz_cache_set")  # noqa: A001 (the C function's name)
    delete = _untyped("sz_cache_delete")
    exists = _untyped("sz_cache_exists")
    LENGTHS = tuple(ctypes.c_size_t(i) for i in range(_SMALL))
    length = ctypes.c_size_t
    ttl = ctypes.c_uint64
    TTL_DEFAULT = ctypes.c_uint64(0)

    def cache_arg(handle: Optional[Any]) -> Any:
        """The cache pointer as the calls here take it."""
        return ctypes.cast(handle, ctypes.c_void_p) if handle else ctypes.c_void_p(None)

    def new_get_buffer() -> Tuple[Any, Any]:
        """A zeroed sz_get_buffer and the argument that passes it: byref of it."""
        st = _native.sz_get_buffer(release=_RELEASE_GIL, reacquire=_REACQUIRE_GIL,
                                   pin_larger=1)
        return st, ctypes.byref(st)

    def point(st: Any, raw: bytearray) -> Any:
        """Points the buffer at `raw`; returns what must stay alive while it does."""
        data = (ctypes.c_char * len(raw)).from_buffer(raw)
        st.data = ctypes.addressof(data)
        st.cap = len(raw)
        st.len = 0
        return data

    def attach(st: Any, handle: Optional[Any]) -> None:
        """Sets which cache a receive buffer reads (None: none, so the library refuses it)."""
        st.cache = handle

    def take_value(v: Any) -> bytes:
        """The bytes of a pinned sz_value (one copy), and the pin released."""
        return copy_out(v)


def copy_out(v: Any) -> bytes:
    """The bytes of a pinned sz_value handed out by a ctypes call (one copy), and the pin
    released."""
    try:
        return ctypes.string_at(lib.sz_value_data(v), lib.sz_value_len(v))
    finally:
        lib.sz_value_release(v)
