#!/usr/bin/env bash
# Installs missing Debian packages, configures and builds. Used by demo.sh and
# test.sh; safe to run repeatedly (incremental).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/deps.sh"
BUILD="${NSEGRESS_BUILD_DIR:-$ROOT/build}"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" -- --no-print-directory >/dev/null
echo "$BUILD"
