"""The two foreign-function layers: the compiled cffi module, and ctypes as the fallback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest

import smartcache
from smartcache import SmartCache, SmartCacheConfig, _backend

ROUND_TRIP = """
import smartcache
from smartcache import SmartCache, SmartCacheConfig
with SmartCache(SmartCacheConfig(disk_enabled=False)) as c:
    c.set("k", {"v": [1, 2]})
    c.set("big", b"x" * 100_000)
    assert c.get("k") == {"v": [1, 2]} and len(c.get("big")) == 100_000
    assert c.exists("k") and c.delete("k") and not c.exists("k") and c.get("k", 7) == 7
print(smartcache.backend())
"""


def _run(code: str, *, backend: Optional[str], pythonpath: Optional[Path] = None,
         cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """`code` in a new interpreter; with `pythonpath`, one that imports the package from there
    only (-S: no site-packages, so no editable install's finder supplies the checkout's
    modules; the package itself needs nothing from site-packages on ctypes)."""
    env: Dict[str, str] = dict(os.environ, SMARTCACHE_LIB=str(Path(smartcache.lib_path).resolve()))
    env.pop("SMARTCACHE_BACKEND", None)
    if backend is not None:
        env["SMARTCACHE_BACKEND"] = backend
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    flags = ["-S"] if pythonpath is not None else []
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=60)


def _package_without_cffi_module(tmp_path: Path) -> Path:
    """A copy of the package that lacks the compiled cffi module (a build without a C
    compiler), outside the repository."""
    shutil.copytree(Path(smartcache.__file__).parent, tmp_path / "smartcache",
                    ignore=shutil.ignore_patterns("_sz_cffi*", "libsmartcache.so*",
                                                  "__pycache__"))
    return tmp_path


def test_backend_in_use_is_the_one_asked_for() -> None:
    asked = os.environ.get("SMARTCACHE_BACKEND", "")
    assert smartcache.backend() in ("cffi", "ctypes")
    if asked in ("cffi", "ctypes"):
        assert smartcache.backend() == asked


def test_installed_package_uses_its_compiled_cffi_module() -> None:
    """A package built with a C compiler (a wheel, an editable install) carries the module,
    and it is what a plain import picks."""
    r = _run(ROUND_TRIP, backend=None)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["cffi"]


def test_forcing_ctypes_serves_every_call_through_ctypes() -> None:
    r = _run(ROUND_TRIP, backend="ctypes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ctypes"]


def test_package_without_the_cffi_module_falls_back_to_ctypes(tmp_path: Path) -> None:
    root = _package_without_cffi_module(tmp_path)
    r = _run(ROUND_TRIP + "from smartcache import _backend; print(_backend.FALLBACK_REASON)",
             backend=None, pythonpath=root, cwd=root)
    assert r.returncode == 0, r.stderr
    name, reason = r.stdout.split("\n", 1)
    assert name == "ctypes"
    assert "cffi module does not load" in reason


def test_asking_for_cffi_without_the_module_is_an_import_error(tmp_path: Path) -> None:
    root = _package_without_cffi_module(tmp_path)
    r = _run("import smartcache", backend="cffi", pythonpath=root, cwd=root)
    assert r.returncode != 0
    assert "SMARTCACHE_BACKEND=cffi, but the cffi module does not load" in r.stderr


def test_unknown_backend_name_is_an_import_error() -> None:
    r = _run("import smartcache", backend="cython")
    assert r.returncode != 0
    assert "SMARTCACHE_BACKEND='cython'" in r.stderr


def test_values_written_through_one_backend_read_through_the_other(tmp_path: Path) -> None:
    """Both layers call the same library on the same stored bytes: a disk tier written by a
    process on one is read back by a process on the other."""
    cfg = f"SmartCacheConfig(memory_capacity=1, disk_enabled=True, disk_path={str(tmp_path / 'd')!r})"
    write = (f"from smartcache import SmartCache, SmartCacheConfig\n"
             f"with SmartCache({cfg}) as c:\n"
             f"    c.set('shared', {{'n': 42}}); c.set('gone', 1); c.delete('gone')\n")
    read = (f"from smartcache import SmartCache, SmartCacheConfig\n"
            f"with SmartCache({cfg}) as c:\n"
            f"    assert c.get('shared') == {{'n': 42}} and not c.exists('gone')\n")
    for writer, reader in (("cffi", "ctypes"), ("ctypes", "cffi")):
        for code, backend in ((write, writer), (read, reader)):
            r = _run(code, backend=backend)
            assert r.returncode == 0, (backend, r.stderr)


def test_cache_works_under_the_backend_in_use(tmp_path: Path) -> None:
    with SmartCache(SmartCacheConfig(memory_capacity=2, disk_enabled=True,
                                     disk_path=str(tmp_path / "d"))) as c:
        for i in range(50):
            c.set(f"k{i}", i)
        assert [c.get(f"k{i}") for i in range(50)] == list(range(50))  # most from disk
        assert c.delete("k3") and c.get("k3") is None
    assert _backend.NAME == smartcache.backend()
