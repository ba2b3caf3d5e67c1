"""Values every language reads (docs/value-format.md): Python writes, C and Go read; C and Go
write, Python reads. Each language runs in its own process against one shared tier: the disk
tier's file (a shared disk_path) or the private redis-server of scripts/with-redis.sh, with
each process's memory tier its own. Run by `make test-interop`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from smartcache import SerializationError, SmartCache, SmartCacheConfig

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LIBDIR = Path(os.environ.get("SMARTCACHE_LIBDIR", ROOT / "build" / "lib"))

PY_JSON = {"name": "Ada", "n": [1, 2.5, None], "u": "é", "nested": {"ok": True}}
PY_RAW = b"py\x00raw\xff"
WRITTEN_JSON = {"n": [1, 2.5, None], "u": "é"}
WRITTEN_RAW = {"c": b"c\x00raw\xff", "go": b"go\x00raw\xff"}


def _run(cmd: List[str], cwd: Path, env: Dict[str, str]) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """The C and Go readers/writers, built against the library in LIBDIR."""
    out = tmp_path_factory.mktemp("interop-bin")
    env = dict(os.environ)
    c_bin = out / "interop_c"
    _run([os.environ.get("CC", "cc"), "-std=c11", "-Wall", "-Wextra", "-Werror",
          f"-I{ROOT / 'include'}", str(HERE / "interop.c"), "-o", str(c_bin), f"-L{LIBDIR}",
          "-lsmartcache", f"-Wl,-rpath,{LIBDIR}"], HERE, env)
    go_bin = out / "interop_go"
    # The Go binding finds the library through pkg-config: make lib writes this smartcache.pc
    # (the checkout's include/ and build/lib, with an rpath).
    env["PKG_CONFIG_PATH"] = str(Path(LIBDIR).parent / "pkgconfig")
    assert shutil.which("go"), "go is not installed: run `make deps`"
    _run(["go", "build", "-o", str(go_bin), "."], HERE / "go", env)
    return {"c": c_bin, "go": go_bin}


@pytest.fixture(params=["disk", "redis"])
def shared_tier(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Dict[str, str]]:
    """Options (as sz_config_set takes them) that make every process share one tier."""
    if request.param == "disk":
        yield {"disk_enabled": "true", "disk_path": str(tmp_path), "disk_max_size": "8M"}
        return
    url = os.environ.get("SMARTCACHE_TEST_REDIS_URL")
    if not url:
        pytest.fail("SMARTCACHE_TEST_REDIS_URL is not set: run through `make test-interop` "
                    "(scripts/with-redis.sh starts a private redis-server)")
    yield {"redis_enabled": "true", "redis_url": url,
           "redis_key_prefix": f"interop-{uuid.uuid4().hex[:12]}:"}


def _python_cache(options: Dict[str, str], serializer: str) -> SmartCache:
    # The options in Python's types: "true" is a bool field; the rest take the text as is.
    typed = {k: True if v == "true" else v for k, v in options.items()}
    return SmartCache(SmartCacheConfig(**typed), serializer=serializer)  # type: ignore[arg-type]


def _lines(out: str) -> Dict[str, str]:
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_python_c_and_go_read_each_others_json_and_raw_values(
        programs: Dict[str, Path], shared_tier: Dict[str, str]) -> None:
    with _python_cache(shared_tier, "json") as cache:
        cache.set("py:json", PY_JSON)
    with _python_cache(shared_tier, "raw") as cache:
        cache.set("py:raw", PY_RAW)

    options = [f"{k}={v}" for k, v in shared_tier.items()]
    for lang, binary in programs.items():
        done = subprocess.run([str(binary), lang, *options], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, f"{lang}: {done.stderr}"
        seen = _lines(done.stdout)
        assert json.loads(seen["json"]) == PY_JSON, lang
        assert bytes.fromhex(seen["raw"]) == PY_RAW, lang
        # A value in another form is refused by the JSON helpers, not misread.
        assert seen["raw-as-json"] == {"c": "-1", "go": "true"}[lang], seen

    with _python_cache(shared_tier, "json") as cache:
        for lang in programs:
            assert cache.get(f"{lang}:json") == dict(WRITTEN_JSON, **{"from": lang})
            # An untagged value is an error for a tagging serializer, never a wrong value.
            with pytest.raises(SerializationError):
                cache.get(f"{lang}:raw")
    with _python_cache(shared_tier, "raw") as cache:
        for lang in programs:
            assert cache.get(f"{lang}:raw") == WRITTEN_RAW[lang]
            stored = cache.get(f"{lang}:json")
            assert stored[:1] == b"J", stored
            assert json.loads(stored[1:]) == dict(WRITTEN_JSON, **{"from": lang})
