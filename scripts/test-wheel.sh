#!/usr/bin/env bash
# Installs a wheel into a fresh venv outside the repository and runs the Python test suite
# against it, as a user of the wheel would: from a directory of its own, with no environment
# beyond PATH, HOME and the private Redis's URL, so nothing can find the checkout.
#
#   scripts/test-wheel.sh WHEEL
#
# Run under scripts/with-redis.sh (the tests read SMARTCACHE_TEST_REDIS_URL). Tests marked
# `checkout` check files of the repository (header, generated declarations, examples), which an
# installed package does not have; they are left out here and run by `make test-python`.
set -euo pipefail
wheel=$(readlink -f "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
: "${SMARTCACHE_TEST_REDIS_URL:?run under scripts/with-redis.sh}"

dir=$(mktemp -d /tmp/smartcache-wheel.XXXXXX)
trap 'rm -rf "$dir"' EXIT
python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install -q --disable-pip-version-check "$wheel" \
  -r "$root/bindings/python/tests/requirements.txt"
cp -r "$root/bindings/python/tests" "$dir/tests"

clean_env=(env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$HOME"
           SMARTCACHE_TEST_REDIS_URL="$SMARTCACHE_TEST_REDIS_URL")
cd "$dir"
# The package must be the installed one, with the library and the cffi module inside it.
"${clean_env[@]}" "$dir/venv/bin/python" - "$dir/venv" <<'PY'
import os, sys
import smartcache
venv = os.path.realpath(sys.argv[1])
where, lib = os.path.realpath(smartcache.__file__), os.path.realpath(smartcache.lib_path)
pkg = os.path.dirname(where)
assert where.startswith(venv + os.sep), f"smartcache imported from {where}, not the venv {venv}"
assert os.path.dirname(lib) == pkg, f"library {lib} is not the one in the package {pkg}"
# The wheel carries the compiled cffi module, and a plain import uses it.
assert smartcache.backend() == "cffi", smartcache._backend.FALLBACK_REASON
print(f"test-wheel: smartcache {smartcache.__version__} from {pkg}, library {lib}, "
      f"{smartcache.backend()} backend")
PY
"${clean_env[@]}" "$dir/venv/bin/pytest" -q -p no:cacheprovider --rootdir "$dir" \
  -m "not checkout" "$dir/tests"
