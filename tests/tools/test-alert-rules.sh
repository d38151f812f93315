#!/usr/bin/env bash
# Checks and unit-tests deploy/prometheus/alerts.yaml with promtool. promtool
# is taken from Debian 12's `prometheus` package without installing it (so no
# Prometheus service is started on this machine): the .deb is downloaded and
# unpacked once into /var/cache/nsegress-tools (override: NSEGRESS_TOOLS_CACHE).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${NSEGRESS_TOOLS_CACHE:-/var/cache/nsegress-tools}"
PROMTOOL="$CACHE/prometheus/usr/bin/promtool"
if [[ ! -x "$PROMTOOL" ]]; then
  mkdir -p "$CACHE"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 ||
                  { apt-get update -qq && apt-get download prometheus >/dev/null; }; })
  rm -rf "$CACHE/prometheus"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$CACHE/prometheus"
fi
cd "$ROOT/deploy/prometheus"
"$PROMTOOL" check rules alerts.yaml
"$PROMTOOL" test rules alerts_test.yaml
