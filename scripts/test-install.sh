#!/usr/bin/env bash
# Builds programs OUTSIDE the checkout against `make install PREFIX=<tmp>`, through pkg-config
# only, the way a user of the installed library does, and runs them:
#   - examples/c/memory.c, linked shared (pkg-config --cflags --libs) and static (the .a with
#     pkg-config --static --libs), the static one checked to need no libsmartcache.so;
#   - a Go module importing github.com/smartcache/smartcache-go with no CGO_* variables: the
#     binding's source is copied next to it (as a vendored or downloaded copy would be) and
#     named by a replace directive, since no Go module proxy is used here.
# A prefix outside the linker's default paths needs PKG_CONFIG_PATH to build and
# LD_LIBRARY_PATH to run; /usr/local or /usr need neither. Needs `make lib` first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

make -s -C "$root" install PREFIX="$prefix" >/dev/null
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
pkg-config --exists --print-errors smartcache
echo "test-install: smartcache $(pkg-config --modversion smartcache) installed in $prefix"

# C, shared.
mkdir -p "$work/c"
cp "$root/examples/c/memory.c" "$work/c/app.c"
cd "$work/c"
# shellcheck disable=SC2046 # pkg-config output is a list of flags
${CC:-cc} -std=c11 -Wall -Wextra -Werror app.c -o app-shared $(pkg-config --cflags --libs smartcache)
LD_LIBRARY_PATH=$prefix/lib ./app-shared >/dev/null
echo "test-install: C program linked to libsmartcache.so: ok"

# C, static: the archive itself, then what it needs from the system (Libs.private). With
# --as-needed the -lsmartcache pkg-config also prints adds no dependency, the archive having
# defined everything.
libdir=$(pkg-config --variable=libdir smartcache)
# shellcheck disable=SC2046
${CC:-cc} -std=c11 -Wall -Wextra -Werror app.c -o app-static $(pkg-config --cflags smartcache) \
  "$libdir/libsmartcache.a" -Wl,--as-needed $(pkg-config --static --libs smartcache)
if readelf -d app-static | grep -q 'libsmartcache'; then
  echo "test-install: the static program still needs libsmartcache.so" >&2
  exit 1
fi
./app-static >/dev/null
echo "test-install: C program linked to libsmartcache.a: ok"

# Go.
if ! command -v go >/dev/null; then
  echo "test-install: no go toolchain (scripts/ensure-deps.sh installs golang-go)" >&2
  exit 1
fi
mkdir -p "$work/go/smartcache-go" "$work/go/app"
cp "$root"/bindings/go/go.mod "$root"/bindings/go/*.go "$root"/bindings/go/*.c \
  "$root"/bindings/go/*.h "$work/go/smartcache-go/"
rm -f "$work"/go/smartcache-go/*_test.go
cp "$root/examples/go/memory/main.go" "$work/go/app/"
cat >"$work/go/app/go.mod" <<'MOD'
module example.com/app

go 1.19

require github.com/smartcache/smartcache-go v0.1.0

replace github.com/smartcache/smartcache-go => ../smartcache-go
MOD
cd "$work/go/app"
env -u CGO_CFLAGS -u CGO_LDFLAGS GOPROXY=off GOFLAGS=-mod=mod GOPATH="$work/gopath" \
  GOCACHE="${GOCACHE:-$(go env GOCACHE)}" go build -o app .
LD_LIBRARY_PATH=$prefix/lib ./app >/dev/null
echo "test-install: Go module outside the checkout, built through pkg-config: ok"
