"""Builds ``smartcache._sz_cffi``: cffi's out-of-line API-mode module over the library's C ABI.

The compiled module calls the library's functions directly from C: no libffi, no per-call
argument conversion tables, about half what a ctypes call costs. ``smartcache._backend`` uses
it for the per-operation calls when it imports, and ctypes otherwise.

The declarations are ``_cdef.h``, generated from ``include/smartcache.h`` by
``scripts/gen_ffi.py`` (so they cannot drift from the library; ``make check-generated``
checks them), and they double as the C source's declarations, so building needs no header
file beside the package.

The module is not linked against libsmartcache: its ``sz_*`` references are resolved when it
is imported, from the library ``smartcache._lib`` has already loaded with ``RTLD_GLOBAL``.
So both backends always call the one library instance ``_lib`` found (a wheel's own copy,
``$SMARTCACHE_LIB``, a checkout's build, or the system's), and a module built once works
with any of them.

Built by setup.py (``cffi_modules``): into the package of a wheel or an sdist install, and in
place in a checkout by an editable install (``pip install -e bindings/python``, which
``make test-python`` runs).
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

_HERE = Path(__file__).resolve().parent
CDEF = (_HERE / "_cdef.h").read_text(encoding="utf-8")

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "smartcache._sz_cffi",
    "#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n" + CDEF,
    # A package built where compiling fails (no C compiler, no Python headers) installs
    # without the module and runs on ctypes: setuptools warns instead of failing.
    optional=True,
)
