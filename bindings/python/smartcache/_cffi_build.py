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

Built by setup.py (``cffi_modules``) into wheels and sdist installs, and in place for a
checkout with ``python smartcache/_cffi_build.py`` (``make python-ext``).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from cffi import FFI

_HERE = Path(__file__).resolve().parent
CDEF = (_HERE / "_cdef.h").read_text(encoding="utf-8")

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "smartcache._sz_cffi",
    "#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n" + CDEF,
)

if __name__ == "__main__":
    # In place, beside this file: what a checkout imports (PYTHONPATH or an editable install).
    # The generated C and object files stay in a scratch directory.
    with tempfile.TemporaryDirectory() as scratch:
        built = Path(ffibuilder.compile(tmpdir=scratch, verbose="-v" in sys.argv))
        target = _HERE / built.name
        shutil.copyfile(built, target.with_suffix(".new"))
        target.with_suffix(".new").replace(target)  # a running process keeps the old mapping
    print(f"built {target}")
