"""Builds the cffi backend: out-of-line API-mode modules over the library's C ABI.

The compiled modules call the library's functions directly from C: no libffi, no per-call
argument conversion tables. ``smartcache._backend`` uses them when they import, and ctypes
otherwise.

Two modules, because cffi releases the GIL around every call it makes:

- ``smartcache._sz_cffi``: every function but the two below, called with the GIL released
  (sets, deletes and the rest may wait on Redis or the disk);
- ``smartcache._sz_cffi_hit``: ``sz_cache_get_buffered`` and ``sz_cache_get_memory``, called
  holding the GIL. A memory hit then costs what a dict lookup does, without a release and
  reacquire around it (most of a cffi call's cost); the library itself releases the GIL
  through the receive buffer's hooks (``PyEval_SaveThread`` / ``PyEval_RestoreThread``) before
  a get leaves the memory tier for Redis or the disk, and ``sz_cache_get_memory`` never does.
  This is what the ctypes path does with a ``PyDLL`` function. It shares the first module's
  types (``ffi.include``), so a buffer made by one is accepted by the other.

The declarations are ``_cdef.h``, generated from ``include/smartcache.h`` by
``scripts/gen_ffi.py`` (so they cannot drift from the library; ``make check-generated``
checks them), one declaration per line; they double as the C source's declarations, so
building needs no header file beside the package.

The modules are not linked against libsmartcache: their ``sz_*`` references are resolved when
they are imported, from the library ``smartcache._lib`` has already loaded with
``RTLD_GLOBAL``. So both backends always call the one library instance ``_lib`` found (a
wheel's own copy, ``$SMARTCACHE_LIB``, a checkout's build, or the system's), and modules built
once work with any of them.

Built by setup.py (``cffi_modules``): into the package of a wheel or an sdist install, and in
place in a checkout by an editable install (``pip install -e bindings/python``, which
``make test-python`` runs).
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

_HERE = Path(__file__).resolve().parent
CDEF = (_HERE / "_cdef.h").read_text(encoding="utf-8")
HIT_FUNCTIONS = ("sz_cache_get_buffered", "sz_cache_get_memory")
_PRELUDE = "#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n" + CDEF


def _declares(line: str, names: tuple[str, ...]) -> bool:
    return any(line.startswith(f"int {name}(") for name in names)


_hit_lines = [line for line in CDEF.splitlines() if _declares(line, HIT_FUNCTIONS)]
if len(_hit_lines) != len(HIT_FUNCTIONS):
    raise RuntimeError(f"smartcache: _cdef.h does not declare {HIT_FUNCTIONS} as expected")

ffibuilder = FFI()
ffibuilder.cdef("\n".join(line for line in CDEF.splitlines()
                          if not _declares(line, HIT_FUNCTIONS)))
ffibuilder.set_source(
    "smartcache._sz_cffi",
    _PRELUDE,
    # A package built where compiling fails (no C compiler, no Python headers) installs
    # without the modules and runs on ctypes: setuptools warns instead of failing.
    optional=True,
)

hit_ffibuilder = FFI()
hit_ffibuilder.include(ffibuilder)
hit_ffibuilder.cdef("\n".join(_hit_lines))
hit_ffibuilder.set_source(
    "smartcache._sz_cffi_hit",
    _PRELUDE + """
/* cffi wraps each call in Py_BEGIN_ALLOW_THREADS / Py_END_ALLOW_THREADS; in this module they
   open and close a plain block, so the calls keep the GIL (see _cffi_build.py). */
#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define Py_BEGIN_ALLOW_THREADS {
#define Py_END_ALLOW_THREADS }
""",
    optional=True,
)
