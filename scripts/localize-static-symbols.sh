#!/usr/bin/env bash
# Makes libsmartcache.a define only the sz_* API as global symbols.
#
# usage: localize-static-symbols.sh HEADER IN.a OUT.a
#
# cargo's staticlib is a plain archive of every object it links: our crate, Rust's std, and the
# bundled C libraries (LZ4/LZ4F/XXH from lz4-sys, hiredis with its sds, jemalloc). Their names are
# global, so an application that links its own liblz4 (or hiredis, or jemalloc) would silently get
# ours, or fail with duplicate symbols. We link every member into one relocatable object
# (`ld -r`, which resolves the references between members), then turn every defined global except
# the API functions named in the header into a local symbol (`objcopy --keep-global-symbols`), and
# archive that one object. Undefined references (libc, libgcc_s) stay as they were, so the
# system libraries an application links (Makefile STATIC_LIBS, pkg-config Libs.private) are
# unchanged. The embedded LLVM bitcode section is dropped: nothing links it, and binutils' LLVM
# plugin cannot read the bitcode of a newer rustc.
set -euo pipefail
header=$1 in=$2 out=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The exported API: every function the header declares (`sz_name(`).
grep -o '\bsz_[a-z0-9_]*(' "$header" | tr -d '(' | sort -u >"$work/api.txt"
[ -s "$work/api.txt" ] || { echo "no sz_* functions found in $header" >&2; exit 1; }

ld -r --whole-archive "$in" -o "$work/joined.o"
objcopy --keep-global-symbols="$work/api.txt" \
  --remove-section=.llvmbc --remove-section=.llvmcmd "$work/joined.o" "$work/smartcache.o"
rm -f "$work/out.a"
ar rcs "$work/out.a" "$work/smartcache.o"
# Renamed over, like the .so, so a reader never sees a half-written archive.
cp -f "$work/out.a" "$out.new"
mv -f "$out.new" "$out"
