#!/usr/bin/env bash
# Runs the benchmarks (as root) and writes bench/results/*.md (tables) and
# *.json (raw numbers). Usage: bench/run.sh [conn_rate|cold_start|cache_memory|gateway_view|kube_burst|steering|failover|feeds|ct_events]...
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$("$ROOT/scripts/build.sh")"
cd "$ROOT"
which=("$@")
((${#which[@]})) || which=(conn_rate cold_start cache_memory gateway_view kube_burst steering failover feeds ct_events)
for b in "${which[@]}"; do
  case "$b" in
    conn_rate) "$BUILD/bench/bench_conn_rate" --rounds 5 --seconds 0.5 --out bench/results ;;
    cold_start) "$BUILD/bench/bench_cold_start" --runs 3 --out bench/results ;;
    cache_memory) "$BUILD/bench/bench_cache_memory" --pods 100000 --out bench/results ;;
    gateway_view) "$BUILD/bench/bench_gateway_view" --pods 100000 --namespaces 10000 --out bench/results ;;
    kube_burst)
      NSEGRESS_KUBE_BIN="$("$ROOT/tests/kube/build-apiserver.sh")" \
        "$BUILD/bench/bench_kube_burst" --namespaces 1000 --out bench/results ;;
    steering) "$BUILD/bench/bench_steering" --rounds 3 --out bench/results ;;
    failover) "$BUILD/bench/bench_failover" --cycles 50 --nosync-cycles 10 --out bench/results ;;
    feeds) "$BUILD/bench/bench_feeds" --clients 1000 --namespaces 20000 --seconds 5 --out bench/results ;;
    ct_events) "$BUILD/bench/bench_ct_events" --flows 200000 --rounds 3 --out bench/results ;;
    *) echo "unknown benchmark $b" >&2; exit 2 ;;
  esac
done
