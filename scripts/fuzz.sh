#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ on the stable toolchain and runs each for a bounded time.
#
# usage: scripts/fuzz.sh SECONDS [TARGET...]     (default: every target in fuzz/fuzz_targets)
#
# libFuzzer (libfuzzer-sys) drives each target; coverage comes from LLVM's sanitizer-coverage
# instrumentation, switched on with the same stable codegen flags cargo-fuzz passes (no nightly
# -Z flag, so no AddressSanitizer: memory errors in Rust are caught by the checks safe code and
# debug assertions make, in the bundled C code only when they crash). New inputs go to
# build/fuzz/corpus/<target> (the committed seeds in fuzz/corpus/<target> are read, never
# written); a crash leaves its input in build/fuzz/artifacts/<target>/ and fails the run.
# Prints each target's executions per second and coverage (libFuzzer's final `cov:` line).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:?usage: fuzz.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$root"/fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

host=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps these flags off build scripts; --cfg fuzzing is what libfuzzer-sys and
# cargo-fuzz set for code that wants to know.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions \
-Coverflow-checks"
export CARGO_TARGET_DIR="$root/build/fuzz/target"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --release --manifest-path "$root/fuzz/Cargo.toml" --target "$host" "${bins[@]}"

failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="$root/build/fuzz/corpus/$t"
  artifacts="$root/build/fuzz/artifacts/$t"
  log="$root/build/fuzz/$t.log"
  mkdir -p "$corpus" "$artifacts" "$root/fuzz/corpus/$t"
  echo "== fuzz $t for ${seconds}s"
  # -rss_limit_mb: a reply or option that makes us allocate gigabytes is a finding.
  # -timeout: one input running for 10 s is a hang.
  if "$CARGO_TARGET_DIR/$host/release/$t" -max_total_time="$seconds" -rss_limit_mb=2048 \
      -timeout=10 -max_len=8192 -print_final_stats=1 -artifact_prefix="$artifacts/" \
      "$corpus" "$root/fuzz/corpus/$t" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
    tail -40 "$log" >&2
  fi
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\) .*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\) .*/\1/p' <<<"$last")
  summary+=("$(printf '%-16s %-6s runs %-9s exec/s %-7s cov %-6s ft %-6s corpus %s' \
    "$t" "$status" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
done
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${failed[*]} failed; inputs in build/fuzz/artifacts/<target>/, logs in build/fuzz/" >&2
  exit 1
fi
