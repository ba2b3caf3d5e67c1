#!/usr/bin/env bash
# Fails unless libsmartcache.so and libsmartcache.a define, as global symbols, exactly the sz_*
# API the header declares (Rust-mangled names would be tolerated: they cannot collide). Any other
# global -- a bundled LZ4_*, XXH*, hiredis redis*/sds*, jemalloc or Rust runtime name -- would
# clash with, or silently replace, the same name in the application linking us.
#
# usage: check-exported-symbols.sh HEADER LIB.so LIB.a
set -euo pipefail
header=$1 so=$2 a=$3
api=$(grep -o '\bsz_[a-z0-9_]*(' "$header" | tr -d '(' | sort -u)
mangled='^(_ZN|_R)'
status=0

check() { # what, list of defined global names
  local what=$1 names=$2 bad missing
  bad=$(grep -v -x -F -f <(printf '%s\n' "$api") <<<"$names" | grep -E -v "$mangled" || true)
  missing=$(grep -v -x -F -f <(printf '%s\n' "$names") <<<"$api" || true)
  if [ -n "$bad" ]; then
    echo "$what defines $(wc -l <<<"$bad") global symbol(s) outside the sz_* API, e.g.:" >&2
    head -20 <<<"$bad" | sed 's/^/  /' >&2
    status=1
  fi
  if [ -n "$missing" ]; then
    echo "$what does not define these API functions:" >&2
    sed 's/^/  /' <<<"$missing" >&2
    status=1
  fi
  [ -n "$bad$missing" ] || echo "$what: only the $(wc -l <<<"$api") sz_* functions are global"
}

# readelf, not nm: nm hands objects to binutils' LLVM plugin, which cannot read newer bitcode.
defined_globals() {
  readelf -s --wide "$@" | awk '($5 == "GLOBAL" || $5 == "WEAK" || $5 == "GNU_UNIQUE") &&
    $7 != "UND" && $8 != "" { sub(/@.*/, "", $8); print $8 }' | sort -u
}
check "$so (dynamic symbols)" "$(readelf --dyn-syms --wide "$so" | awk '($5 == "GLOBAL" ||
  $5 == "WEAK" || $5 == "GNU_UNIQUE") && $7 != "UND" && $8 != "" { sub(/@.*/, "", $8); print $8 }' | sort -u)"
check "$a" "$(defined_globals "$a")"
exit $status
