#!/usr/bin/env bash
# Hostile-input checks, run by scripts/test.sh after the main suite:
#  1. a clang tree with AddressSanitizer + UndefinedBehaviorSanitizer (any
#     report fails the run) and the libFuzzer targets;
#  2. the unit and privileged suites under those sanitizers;
#  3. each fuzz target over its committed corpus (tests/fuzz/corpus/<target>)
#     for NSEGRESS_FUZZ_SECONDS (default 30) seconds. New inputs go to a
#     scratch directory, never into the repository; a crash leaves its input
#     in $BUILD/fuzz-crashes/ and fails the run (turn it into a regression
#     test and add it to the corpus as crash-<what>).
# Alone: scripts/sanitize.sh [fuzz-seconds]. Longer runs: docs/fuzzing.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/deps.sh"
BUILD="${NSEGRESS_SANITIZE_BUILD_DIR:-$ROOT/build-sanitize}"
SECONDS_PER_TARGET="${1:-${NSEGRESS_FUZZ_SECONDS:-30}}"

CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DNSEGRESS_SANITIZE=ON -DNSEGRESS_FUZZ=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)" -- --no-print-directory >/dev/null

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

"$BUILD/tests/privileged/privileged_tests" --cleanup >/dev/null
trap '"$BUILD/tests/privileged/privileged_tests" --cleanup >/dev/null' EXIT
# format and alert_rules check files, not code: the main suite ran them.
if ! (cd "$BUILD" && ctest -j"$(nproc)" --output-on-failure --timeout 600 \
  -L 'unit|privileged' -E '^(format|alert_rules)$' >"$BUILD/ctest-sanitized.log" 2>&1); then
  grep -v ' Passed ' "$BUILD/ctest-sanitized.log" | tail -n 150 >&2
  echo "sanitize.sh: a test failed under ASan+UBSan (log: $BUILD/ctest-sanitized.log)" >&2
  exit 1
fi
grep -E 'tests passed|Total Test time' "$BUILD/ctest-sanitized.log" | sed 's/^/sanitized: /'

mkdir -p "$BUILD/fuzz-crashes"
for target in manifests desired_state kube_objects http peer_wire ct_sync_wire credentials flow_log; do
  scratch="$(mktemp -d)"
  log="$BUILD/fuzz-$target.log"
  if ! "$BUILD/tests/fuzz/fuzz_$target" -max_total_time="$SECONDS_PER_TARGET" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$BUILD/fuzz-crashes/$target-" \
      "$scratch" "$ROOT/tests/fuzz/corpus/$target" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    rm -rf "$scratch"
    echo "sanitize.sh: fuzz_$target failed; input in $BUILD/fuzz-crashes/" >&2
    exit 1
  fi
  rm -rf "$scratch"
  echo "fuzz_$target: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" |
    grep -o '[0-9]*$') runs in ${SECONDS_PER_TARGET}s, no crash"
done
