#!/usr/bin/env bash
# Builds and runs every example: examples/c/*.c, the commands under examples/go, and
# examples/python/*.py when that folder exists. Fails if any example fails to build or exits
# non-zero. An example that needs a tier this build lacks, or Redis when
# SMARTCACHE_TEST_REDIS_URL is unset, prints a note and exits 0 by itself.
# Needs the library built first (make lib); `make test-examples` runs this with a private
# redis-server.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
lib=$root/build/lib
out=$root/build/examples
if [ ! -e "$lib/libsmartcache.so" ]; then
  echo "run-all: $lib/libsmartcache.so is missing; run 'make lib' first" >&2
  exit 1
fi
mkdir -p "$out/c" "$out/go"

failed=()
ran=0
# run NAME CMD...: runs one example with a time limit, recording a failure.
run() {
  local name=$1
  shift
  echo "== $name"
  ran=$((ran + 1))
  if ! timeout 60 "$@"; then
    echo "!! $name failed" >&2
    failed+=("$name")
  fi
}

for src in examples/c/*.c; do
  [ -e "$src" ] || continue
  name=$(basename "$src" .c)
  # demo.c is built as `make demo` builds it; the other examples must be warning-free.
  strict=(-Wpedantic -Werror)
  [ "$name" = demo ] && strict=()
  if ${CC:-cc} -std=c11 -O2 -Wall -Wextra "${strict[@]}" -Iinclude "$src" -o "$out/c/$name" \
      -L"$lib" -lsmartcache -Wl,-rpath,"$lib"; then
    run "c/$name" "$out/c/$name"
  else
    failed+=("c/$name (build)")
  fi
done

if [ -f examples/go/go.mod ]; then
  if ! command -v go >/dev/null; then
    failed+=("go (no go toolchain; run scripts/ensure-deps.sh)")
  elif (cd examples/go && GOPROXY=off PKG_CONFIG_PATH="$root/build/pkgconfig" \
        go build -o "$out/go/" ./...); then
    for dir in examples/go/*/; do
      name=$(basename "$dir")
      run "go/$name" "$out/go/$name"
    done
  else
    failed+=("go (build)")
  fi
fi

if [ -d examples/python ]; then
  for py in examples/python/*.py; do
    [ -e "$py" ] || continue
    run "python/$(basename "$py")" env PYTHONPATH="$root/bindings/python" \
      SMARTCACHE_LIB="$lib/libsmartcache.so" "$root/build/venv/bin/python" "$py"
  done
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "run-all: ${#failed[@]} failed: ${failed[*]}" >&2
  exit 1
fi
echo "run-all: all $ran examples passed"
