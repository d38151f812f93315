#!/usr/bin/env bash
# The main job: the whole nsegress story in a lab of network namespaces.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$("$ROOT/scripts/build.sh")"
exec "$BUILD/tests/lab/nsegress-demo" "$@"
