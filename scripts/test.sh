#!/usr/bin/env bash
# The whole test suite: unit, privileged (real kernel, network namespaces) and
# e2e. Installs what is missing, builds, runs, and removes lab namespaces of
# crashed earlier runs before and after.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$("$ROOT/scripts/build.sh")"
"$BUILD/tests/privileged/privileged_tests" --cleanup >/dev/null
trap '"$BUILD/tests/privileged/privileged_tests" --cleanup >/dev/null' EXIT
cd "$BUILD"
ctest -j"$(nproc)" --output-on-failure --timeout 300 "$@"
