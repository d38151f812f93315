#!/usr/bin/env bash
# Every C++ file in the repository is formatted as .clang-format says
# (CI runs this as the `format` test; fix with clang-format -i).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
mapfile -t files < <(git ls-files '*.cc' '*.h' 2>/dev/null || find . -name '*.cc' -o -name '*.h')
((${#files[@]})) || { echo "no sources found" >&2; exit 1; }
clang-format --dry-run --Werror "${files[@]}"
echo "format: ${#files[@]} files clean"
