#!/usr/bin/env bash
# Removes nsegress's release finalizer (nsegress.io/release) from every
# namespace: after uninstalling the controller, or when a namespace hangs in
# Terminating because no controller runs. Each removal is a JSON patch that
# tests the finalizer is still at the index read, so it never removes
# anything else. Uses kubectl (its current context, or KUBECTL="kubectl
# --kubeconfig …"). Prints each namespace it changed.
#
# Removing the finalizer while a controller runs is harmless but skips the
# wait for the release: the controller still quarantines the address when it
# sees the namespace gone.
set -euo pipefail
KUBECTL="${KUBECTL:-kubectl}"
tmpl='{{range .items}}{{$n := .metadata.name}}{{range $i, $f := .metadata.finalizers}}{{if eq $f "nsegress.io/release"}}{{$n}} {{$i}}{{"\n"}}{{end}}{{end}}{{end}}'
for pass in 1 2 3 4 5; do
  found=0
  # Highest index first within a namespace, so earlier indices stay valid.
  while read -r ns idx; do
    [[ -z "$ns" ]] && continue
    found=1
    patch="[{\"op\":\"test\",\"path\":\"/metadata/finalizers/$idx\",\"value\":\"nsegress.io/release\"},{\"op\":\"remove\",\"path\":\"/metadata/finalizers/$idx\"}]"
    if $KUBECTL patch namespace "$ns" --type=json -p "$patch" >/dev/null 2>&1; then
      echo "$ns"
    fi
  done < <($KUBECTL get namespaces -o go-template="$tmpl" | sort -k1,1 -k2,2nr)
  ((found)) || exit 0
done
echo "remove-release-finalizers: namespaces still carry the finalizer after 5 passes" >&2
exit 1
