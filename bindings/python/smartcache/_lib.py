"""Finds and loads libsmartcache, and binds the generated declarations to it.

Lookup order (first hit wins), so that a wheel, a developer and a system install all work:

1. a copy shipped inside this package directory (``smartcache/libsmartcache.so*``): what a
   wheel installs, so an installed package always uses the library built with it;
2. ``SMARTCACHE_LIB``: an explicit path (tests and CI point it at ``build/lib`` for a checkout,
   whose package directory holds no library);
3. the repository's own build output, ``<repo>/build/lib/libsmartcache.so``, when the package
   is imported from a checkout (editable install or ``PYTHONPATH=bindings/python``);
4. the system: ``ctypes.util.find_library("smartcache")``, then ``libsmartcache.so.0`` through
   the dynamic loader (``ld.so.conf``, ``LD_LIBRARY_PATH``).

A miss raises ImportError listing every place that was tried and why it failed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path
from typing import List, Optional, Tuple

from . import _native

#: What a process needs in its environment to dlopen a library built with jemalloc's
#: initial-exec TLS (see the ImportError below). Read by glibc at process start only.
TLS_TUNABLE = "glibc.rtld.optional_static_tls=16384"

_PKG_DIR = Path(__file__).resolve().parent
# bindings/python/smartcache -> repo root is three levels up.
_REPO_ROOT = _PKG_DIR.parent.parent.parent


def _candidates() -> List[Tuple[str, str]]:
    """(description, path-or-name) pairs in lookup order."""
    out: List[Tuple[str, str]] = []
    for name in ("libsmartcache.so", f"libsmartcache.so.{_native.SZ_VERSION_MAJOR}"):
        out.append(("package directory", str(_PKG_DIR / name)))
    env = os.environ.get("SMARTCACHE_LIB")
    if env:
        out.append(("$SMARTCACHE_LIB", env))
    out.append(("repository build output", str(_REPO_ROOT / "build" / "lib" / "libsmartcache.so")))
    found = ctypes.util.find_library("smartcache")
    if found:
        out.append(("ctypes.util.find_library('smartcache')", found))
    else:
        out.append(("ctypes.util.find_library('smartcache')", ""))
    out.append(("system dynamic loader", f"libsmartcache.so.{_native.SZ_VERSION_MAJOR}"))
    return out


def _load() -> Tuple[ctypes.CDLL, str]:
    tried: List[str] = []
    for where, path in _candidates():
        if not path:
            tried.append(f"  {where}: no match")
            continue
        is_file = os.sep in path
        if is_file and not os.path.exists(path):
            tried.append(f"  {where}: {path} (no such file)")
            continue
        try:
            # RTLD_GLOBAL: the cffi backend's module resolves its sz_* references against
            # this very library when it is imported (see _cffi_build.py). Only sz_* names are
            # global in the library, so nothing else it holds can clash with another's.
            lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            hint = ""
            if "static TLS" in str(e):
                hint = (" -- the library uses initial-exec TLS (jemalloc), which glibc can only "
                        "dlopen with room reserved at process start: run Python with "
                        f"GLIBC_TUNABLES={TLS_TUNABLE} or LD_PRELOAD={path}")
            tried.append(f"  {where}: {path} ({e}){hint}")
            continue
        missing = _native.bind(lib)
        if missing:
            tried.append(f"  {where}: {path} (lacks {', '.join(missing)}: older than the header)")
            continue
        return lib, path
    raise ImportError(
        "smartcache: cannot load libsmartcache. Build it with `make lib` or set SMARTCACHE_LIB "
        "to its path. Looked in:\n" + "\n".join(tried)
    )


lib, lib_path = _load()

#: Version the loaded library reports (may differ from the header's SZ_VERSION in patch level).
library_version: str = lib.sz_version().decode()
if library_version.split(".")[0] != str(_native.SZ_VERSION_MAJOR):
    raise ImportError(
        f"smartcache: {lib_path} is version {library_version}, but these bindings were generated "
        f"for {_native.SZ_VERSION} (major versions differ)"
    )


def last_error() -> str:
    """This thread's last error message from the library (read it right after the failure:
    the library keeps it per thread, and ctypes calls run on the calling thread)."""
    msg: Optional[bytes] = lib.sz_last_error()
    return msg.decode("utf-8", "replace") if msg else ""
