#!/usr/bin/env bash
# The whole test suite: unit, privileged (real kernel, network namespaces),
# e2e (the demo) and kube (a real kube-apiserver built from Debian's source
# package, cached after the first build), then scripts/sanitize.sh (the unit
# and privileged suites under ASan+UBSan, and the fuzzers over their corpora).
# Installs what is missing, builds, runs, and removes lab namespaces of
# crashed earlier runs before and after. Arguments go to ctest (and skip the
# sanitizer pass).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$("$ROOT/scripts/build.sh")"
# The API server for the `kube` tests: built once (about 15 minutes on 2
# cores), then taken from the cache. A failed build fails the kube tests.
if KUBE_BIN="$("$ROOT/tests/kube/build-apiserver.sh")"; then
  export NSEGRESS_KUBE_BIN="$KUBE_BIN"
else
  echo "test.sh: building kube-apiserver failed; the kube tests will fail" >&2
fi
"$BUILD/tests/privileged/privileged_tests" --cleanup >/dev/null
trap '"$BUILD/tests/privileged/privileged_tests" --cleanup >/dev/null' EXIT
(cd "$BUILD" && ctest -j"$(nproc)" --output-on-failure --timeout 600 "$@")
# Then the unit and privileged suites again under ASan+UBSan, and every fuzz
# target over its corpus (a clang tree of its own: build-sanitize/).
# NSEGRESS_SKIP_SANITIZE=1 skips this part (local iterations only; CI runs it).
if [[ "${NSEGRESS_SKIP_SANITIZE:-0}" != 1 && $# -eq 0 ]]; then
  "$ROOT/scripts/sanitize.sh"
fi
