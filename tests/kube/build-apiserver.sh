#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager v1.20.2 from Debian 12's own
# source package `kubernetes`, once, and caches the binaries outside the source
# tree. Prints the directory holding the binaries.
#
# The deb-src entry is derived at run time from the machine's existing apt
# sources (Debian archive entries only), in a private apt state directory: the
# system's apt configuration is not touched.
set -euo pipefail

CACHE="${NSEGRESS_KUBE_CACHE:-/var/cache/nsegress-kube}"
BIN="$CACHE/bin"
VERSION="1.20.5+really1.20.2-1.1+deb12u1"
if [[ -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" ]]; then
  echo "$BIN"
  exit 0
fi

log() { echo "build-apiserver: $*" >&2; }
export DEBIAN_FRONTEND=noninteractive
need=()
for p in golang-1.19-go golang-github-modern-go-reflect2-dev rsync make dpkg-dev etcd-server; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

WORK="$CACHE/work"
APT="$WORK/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/etc/sources.list.d" "$WORK/src"

# deb-src entries for the Debian archives the machine already uses.
: >"$APT/etc/sources.list"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [[ -f "$f" ]] || continue
  grep -E '^deb\s' "$f" | grep -E '/debian(-security)?/?\s' | sed -E 's/^deb(\s)/deb-src\1/' >>"$APT/etc/sources.list" || true
done
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -f "$f" ]] || continue
  # deb822: keep stanzas whose URIs are Debian archives; make them deb-src.
  awk -v RS= -v ORS='\n\n' '/URIs:[^\n]*\/debian(-security)?\/?([ \n]|$)/ {
      gsub(/Types:[^\n]*/, "Types: deb-src"); print }' "$f" >>"$APT/etc/sources.list.d/debian-src.sources"
done
APTOPTS=(-o "Dir::Etc::SourceList=$APT/etc/sources.list" -o "Dir::Etc::SourceParts=$APT/etc/sources.list.d"
  -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "Debug::NoLocking=1")
log "fetching the source of kubernetes $VERSION"
apt-get "${APTOPTS[@]}" update -qq
SRC="$WORK/src/kubernetes-1.20.2"
if [[ ! -d "$SRC" ]]; then
  (cd "$WORK/src" && apt-get "${APTOPTS[@]}" source -qq --download-only "kubernetes=$VERSION" >/dev/null &&
    dpkg-source -x --no-check kubernetes_*.dsc "$SRC" >/dev/null)
fi

# reflect2 v1.0.1 crashes at run time under Go >= 1.18: use Debian's 1.0.2.
R2="$SRC/vendor/github.com/modern-go/reflect2"
if ! grep -q "reflect2 v1.0.2" "$SRC/vendor/modules.txt"; then
  log "replacing vendored reflect2 v1.0.1 with Debian's 1.0.2"
  rm -rf "$R2"
  mkdir -p "$R2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2/. "$R2/"
  sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#' "$SRC/go.mod" "$SRC/vendor/modules.txt"
  sed -i '/github.com\/modern-go\/reflect2 v1.0.1/d' "$SRC/go.sum" 2>/dev/null || true
fi

export PATH="/usr/lib/go-1.19/bin:$PATH"
export GOPATH="$WORK/gopath" GO111MODULE=off GOFLAGS= GOCACHE="$WORK/gocache"
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$SRC" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"
if [[ ! -f pkg/generated/openapi/zz_generated.openapi.go ]]; then
  log "make generated_files (a few minutes)"
  make generated_files >"$WORK/generated.log" 2>&1 || { tail -30 "$WORK/generated.log" >&2; exit 1; }
fi
mkdir -p "$BIN"
for cmd in kube-apiserver kube-controller-manager; do
  log "go build $cmd (several minutes on 2 cores)"
  go build -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
  mv "$BIN/$cmd.tmp" "$BIN/$cmd"
done
echo "$BIN"
