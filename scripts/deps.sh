#!/usr/bin/env bash
# Install the Debian 12 packages nsegress needs to build, test and run its demo.
# Idempotent: installs only what is missing. Run as root.
set -euo pipefail

PKGS=(
  # toolchain
  build-essential cmake pkg-config clang-format
  # sanitizers and libFuzzer (scripts/sanitize.sh)
  clang libclang-rt-14-dev
  # kernel-facing libraries (netlink/ only)
  libnl-3-dev libnl-route-3-dev libmnl-dev libnftnl-dev libnetfilter-conntrack-dev
  # control plane
  libboost-dev libboost-system-dev libssl-dev nlohmann-json3-dev libyaml-cpp-dev
  libsqlite3-dev libspdlog-dev libfmt-dev libcli11-dev prometheus-cpp-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev
  # lab tooling: inspection in tests/demo, peers in benchmarks
  iproute2 nftables iptables conntrack procps curl
)
# `kubectl kustomize` renders manifests/ in the tests: Debian's kubectl, unless
# a kubectl is already installed (another package may own /usr/bin/kubectl).
command -v kubectl >/dev/null || PKGS+=(kubernetes-client)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# apt with retries: a mirror's DNS or network hiccup is not a failed build.
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  local try
  for try in 1 2 3; do
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
      return 0
    fi
    echo "deps: apt failed (try $try of 3), retrying in $((try * 10)) s" >&2
    sleep $((try * 10))
  done
  return 1
}

if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  apt_install "${missing[@]}"
fi

# Headless Chromium for the web page's browser test (tests/e2e/web-page.sh).
# Best effort: if apt cannot fetch it, that one test reports itself SKIPPED
# (said so in ctest's output) and everything else goes on.
OPTIONAL=(chromium fonts-dejavu-core)
opt_missing=()
for p in "${OPTIONAL[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    opt_missing+=("$p")
  fi
done
if ((${#opt_missing[@]})); then
  echo "deps: installing ${opt_missing[*]} (optional: the browser test)" >&2
  apt_install "${opt_missing[@]}" ||
    echo "deps: WARNING: could not install ${opt_missing[*]}; e2e_web_page will be skipped" >&2
fi
