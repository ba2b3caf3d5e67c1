#!/usr/bin/env bash
# Instructions and cache misses per operation through libsmartcache.so, beside quick_cache and
# moka (make bench-so; docs/BENCHMARKS.md). Each workload runs once under callgrind with its
# cache simulation, counting only the measured loop (--toggle-collect), one thread:
#   c_so get / set      benches/c/so_get.c, the C program linked against the .so
#   rust_so get / set   benches/so_get.rs calling the .so it loaded (libloading)
#   quick_cache get / insert, moka get   the same workload in benches/so_get.rs
# The simulated caches are this machine's (EPYC: 32 KiB 8-way L1, 32 MiB 16-way L3) so
# that "LL misses" means trips to memory. Usage: so-get-callgrind.sh C_BIN RUST_BIN OPS
set -euo pipefail
c_bin=$1 rust_bin=$2 ops=${3:-200000}
caches=(--I1=32768,8,64 --D1=32768,8,64 --LL=33554432,16,64)

# count LABEL TOGGLE CMD...: runs CMD under callgrind and prints per-operation figures.
count() {
  local label=$1 toggle=$2
  shift 2
  local line
  line=$(valgrind --tool=callgrind --cache-sim=yes "${caches[@]}" --callgrind-out-file=/dev/null \
    --toggle-collect="$toggle" "$@" 2>&1 | grep 'Collected :') ||
    { echo "$label: callgrind run failed" >&2; return 1; }
  # Collected : Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
  awk -v label="$label" -v n="$ops" '{
    printf "%-28s %8.1f instructions %6.2f D1 misses %6.3f LL misses per operation\n",
      label, $4 / n, ($8 + $9) / n, ($11 + $12) / n }' <<<"$line"
}

count "c_so get (.so)" measured_gets "$c_bin" callgrind gets "$ops"
count "c_so set (.so, replacing)" measured_sets "$c_bin" callgrind sets "$ops"
for w in so_get quick_get moka_get so_set crate_set quick_insert; do
  count "rust $w" 'so_get::measured_*' "$rust_bin" callgrind "$w" "$ops"
done
