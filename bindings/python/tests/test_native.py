"""The generated declarations, the loaded library and the loader's error report."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import smartcache
from smartcache import _backend, _native, cache as cache_mod
from smartcache._lib import lib

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.checkout
def test_generated_declarations_are_current() -> None:
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_ffi.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.checkout
def test_generator_is_deterministic_and_rejects_unknown_constructs(tmp_path: Path) -> None:
    gen = REPO / "scripts" / "gen_ffi.py"
    out1, out2 = tmp_path / "a.py", tmp_path / "b.py"
    for out in (out1, out2):
        subprocess.run([sys.executable, str(gen), "--out", str(out)], check=True)
    assert out1.read_bytes() == out2.read_bytes()
    bad = tmp_path / "bad.h"
    bad.write_text((REPO / "include" / "smartcache.h").read_text()
                   + "\nunion sz_weird { int a; float b; };\n")
    r = subprocess.run([sys.executable, str(gen), "--header", str(bad), "--out",
                        str(tmp_path / "c.py")], capture_output=True, text=True)
    assert r.returncode == 1 and "sz_weird" in r.stderr


def test_header_constants_match_library() -> None:
    assert smartcache.library_version == _native.SZ_VERSION
    assert _native.SZ_VERSION_NUMBER == (_native.SZ_VERSION_MAJOR * 10000
                                         + _native.SZ_VERSION_MINOR * 100
                                         + _native.SZ_VERSION_PATCH)
    lib = cache_mod.lib
    assert lib.sz_status_str(_native.SZ_NOT_FOUND) == b"not found"
    assert lib.sz_status_str(_native.SZ_ERR_CONFIG) == b"configuration error"


def test_every_prototype_is_bound() -> None:
    for name, (restype, argtypes, names) in _native.FUNCTIONS.items():
        fn = getattr(cache_mod.lib, name)
        assert fn.restype is restype and list(fn.argtypes) == argtypes, name
        assert len(names) == len(argtypes)


def test_struct_sizes_round_trip(cache: smartcache.SmartCache) -> None:
    raw = cache.raw_stats()
    assert raw.struct_size == ctypes.sizeof(_native.sz_stats)
    h = _native.sz_health()
    h.struct_size = ctypes.sizeof(h)
    assert cache_mod.lib.sz_cache_health(cache._h, ctypes.byref(h)) == _native.SZ_OK
    assert h.struct_size == ctypes.sizeof(_native.sz_health)


def test_hot_path_arguments_follow_the_generated_prototypes() -> None:
    """Under ctypes, get()/set() call sz_cache_get_buffered/sz_cache_set without argtypes
    (speed), passing ctypes objects: their types must be the ones the header declares. Under
    cffi, the compiled module's prototypes must be the header's."""
    if _backend.NAME == "cffi":
        ffi = _backend._ffi
        for name, c_type in [
            ("get_buffered", "int(*)(sz_get_buffer *, const void *, size_t)"),
            ("get_memory", "int(*)(sz_get_buffer *, const void *, size_t)"),
            ("set", "int(*)(sz_cache *, const void *, size_t, const void *, size_t, uint64_t)"),
            ("delete", "int(*)(sz_cache *, const void *, size_t)"),
            ("exists", "int(*)(sz_cache *, const void *, size_t)"),
        ]:
            assert ffi.typeof(getattr(_backend, name)) is ffi.typeof(c_type), name
        assert cache_mod._SMALL_LEN == tuple(range(1024))
        return
    _, get_args, _ = _native.FUNCTIONS["sz_cache_get_buffered"]
    _, set_args, _ = _native.FUNCTIONS["sz_cache_set"]
    assert get_args[0]._type_ is _native.sz_get_buffer  # byref(sz_get_buffer)
    assert get_args[1] is ctypes.c_void_p and get_args[2] is ctypes.c_size_t
    assert set_args[2] is ctypes.c_size_t and set_args[4] is ctypes.c_size_t
    assert set_args[5] is ctypes.c_uint64
    assert cache_mod._fast_get_buffered.restype is ctypes.c_int
    assert cache_mod._fast_set.restype is ctypes.c_int
    assert all(type(v) is ctypes.c_size_t and v.value == i
               for i, v in enumerate(cache_mod._SMALL_LEN))


def test_missing_library_lists_every_place_tried(tmp_path: Path) -> None:
    _package_copy(tmp_path, with_library=False)
    env = dict(os.environ, SMARTCACHE_LIB=str(tmp_path / "nope" / "libsmartcache.so"),
               LD_LIBRARY_PATH="", PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", "import smartcache"], capture_output=True,
                       text=True, env=env, cwd=tmp_path)
    assert r.returncode != 0
    err = r.stderr
    assert "ImportError: smartcache: cannot load libsmartcache" in err
    for where in ("$SMARTCACHE_LIB", "package directory", "repository build output",
                  "find_library", "system dynamic loader"):
        assert where in err, where
    assert str(tmp_path / "nope" / "libsmartcache.so") in err


def _package_copy(tmp_path: Path, with_library: bool) -> Path:
    """A copy of the package outside the repository (so its build output is not found),
    holding the loaded library as libsmartcache.so or no library at all."""
    pkg = tmp_path / "smartcache"
    shutil.copytree(Path(smartcache.__file__).parent, pkg,
                    ignore=shutil.ignore_patterns("libsmartcache.so*", "__pycache__"))
    if with_library:
        shutil.copyfile(Path(smartcache.lib_path).resolve(), pkg / "libsmartcache.so")
    return pkg


def _loaded_library(tmp_path: Path, lib_env: str) -> str:
    env = dict(os.environ, SMARTCACHE_LIB=lib_env, PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", "import smartcache; print(smartcache.lib_path)"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    return r.stdout.strip()


def test_library_env_var_is_used_when_the_package_directory_has_none(tmp_path: Path) -> None:
    _package_copy(tmp_path, with_library=False)
    real = str(Path(smartcache.lib_path).resolve())
    assert _loaded_library(tmp_path, real) == real


def test_library_in_the_package_directory_comes_before_the_env_var(tmp_path: Path) -> None:
    """An installed wheel uses the library built with it, whatever SMARTCACHE_LIB says."""
    pkg = _package_copy(tmp_path, with_library=True)
    other = str(Path(smartcache.lib_path).resolve())
    assert _loaded_library(tmp_path, other) == str(pkg / "libsmartcache.so")


@pytest.mark.checkout
@pytest.mark.parametrize("symbol", ["sz_cache_get_many", "sz_cache_set_many"])
def test_c_abi_exports_the_batch_calls(symbol: str) -> None:
    """Issue 5 (L2), Deliver item 2: "Batch calls in the C ABI: `sz_cache_get_many` /
    `sz_cache_set_many` using MGET and pipelining, falling back per tier." docs/guide.md (L2):
    "MGET and pipelining for batches". The bug: the Redis tier has get_many/set_many
    internally (src/redis/mod.rs, benches/redis.rs), but neither the C ABI nor
    include/smartcache.h offers them: a caller cannot batch at all."""
    assert hasattr(lib, symbol), f"libsmartcache does not export {symbol}"
    header = open(__file__.rsplit("/bindings/", 1)[0] + "/include/smartcache.h").read()
    assert f"{symbol}(" in header, f"include/smartcache.h does not declare {symbol}"
