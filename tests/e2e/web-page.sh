#!/usr/bin/env bash
# The firewall team's page in headless Chromium (Debian's `chromium`): a
# standalone controller on loopback with a pool that asks for the
# decommission handshake, two namespaces, one of them then removed; the
# page's DOM is checked against the ledger as the JSON API reports it, and a
# screenshot is kept as a test artifact.
#   web-page.sh BUILD_DIR ARTIFACT_DIR
# Exit 77 (ctest: skipped, said loudly) only when chromium is not installed
# (scripts/deps.sh installs it; an apt outage may leave it out).
set -euo pipefail
BUILD="$1"
ART="$2"
CHROMIUM="$(command -v chromium || true)"
if [[ -z "$CHROMIUM" ]]; then
  echo "web-page.sh: SKIPPED: chromium is not installed (apt-get install chromium)" >&2
  exit 77
fi
work="$(mktemp -d)"
ctl_pid=""
cleanup() {
  [[ -n "$ctl_pid" ]] && kill "$ctl_pid" 2>/dev/null && wait "$ctl_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/manifests" "$work/state" "$ART"
cat >"$work/manifests/pools.yaml" <<'YAML'
apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: payments}
spec:
  addresses: ["203.0.113.10-203.0.113.12"]
  acknowledgeRemoval: true
---
apiVersion: v1
kind: Node
metadata: {name: gw-a}
YAML
cat >"$work/manifests/ns.yaml" <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: shop, annotations: {nsegress.io/pool: payments}}
---
apiVersion: v1
kind: Namespace
metadata: {name: legacy, annotations: {nsegress.io/pool: payments}}
YAML
port=$((20000 + RANDOM % 20000))
"$BUILD/controller/nsegress-controller" --manifests "$work/manifests" --ledger "$work/ledger.db" \
  --init-ledger --gateway-state-dir "$work/state" --listen "127.0.0.1:$port" \
  --manifest-settle-ms 0 --log-level warn &
ctl_pid=$!
api="http://127.0.0.1:$port"
wait_for() {  # wait_for DESCRIPTION COMMAND...
  local what="$1"; shift
  for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "web-page.sh: timed out waiting for $what" >&2
  exit 1
}
wait_for "two assignments" bash -c "curl -sf $api/api/v1/addresses | grep -c Assigned | grep -q 2"
held_at="$(date -u +%s)"  # legacy holds 203.0.113.11 now
sleep 1.1
# legacy is decommissioned: its address waits for the firewall's ack.
cat >"$work/manifests/ns.yaml" <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: shop, annotations: {nsegress.io/pool: payments}}
YAML
wait_for "the pending cleanup" bash -c "curl -sf $api/api/v1/addresses | grep -q PendingFirewallCleanup"

render() {  # render URL OUTPUT.html [SCREENSHOT.png]
  local args=(--headless=new --no-sandbox --disable-gpu --no-first-run --disable-extensions
              --user-data-dir="$work/profile" --window-size=1280,1400)
  "$CHROMIUM" "${args[@]}" --dump-dom "$1" >"$2" 2>"$work/chromium.log"
  if [[ $# -ge 3 ]]; then
    (cd "$work" && "$CHROMIUM" "${args[@]}" --screenshot="$3" "$1" >/dev/null 2>>"$work/chromium.log")
  fi
}
render "$api/ui" "$work/page.html" "$ART/web-page.png"
pending_ip="$(curl -sf "$api/api/v1/pending" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["firewallCleanup"][0]["ip"])')"
render "$api/ui?ip=$pending_ip&at=$held_at" "$work/who.html"

# The DOM against the ledger: every Assigned address of the JSON API is in
# the pool's allowlist table, the pending one is in the waiting table only.
python3 - "$work/page.html" "$work/who.html" "$api" <<'PY'
import html.parser, json, sys, urllib.request
page, who, api = sys.argv[1], sys.argv[2], sys.argv[3]

class Cells(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.table = None; self.cells = {}; self.td = False; self.scripts = 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table": self.table = a.get("data-pool") or a.get("id")
        if tag == "td" and a.get("class") == "ip": self.td = True
        if tag == "script": self.scripts += 1
    def handle_endtag(self, tag):
        if tag == "td": self.td = False
    def handle_data(self, d):
        if self.td: self.cells.setdefault(self.table, []).append(d.strip())

p = Cells(); p.feed(open(page).read())
ledger = json.load(urllib.request.urlopen(api + "/api/v1/addresses"))
assigned = sorted(r["ip"] for r in ledger if r["state"] == "Assigned")
pending = sorted(r["ip"] for r in ledger if r["state"] == "PendingFirewallCleanup")
errors = []
if sorted(p.cells.get("payments", [])) != assigned:
    errors.append(f"allowlist {p.cells.get('payments')} != ledger's assigned {assigned}")
if sorted(p.cells.get("pending", [])) != pending:
    errors.append(f"waiting table {p.cells.get('pending')} != ledger's pending {pending}")
if not pending or not assigned:
    errors.append("the scenario did not produce both an assigned and a pending address")
if p.scripts:
    errors.append("the page has a script element")
w = open(who).read()
if "namespace <b>legacy</b>" not in w:
    errors.append("who-was-behind did not name legacy for its released address")
for e in errors: print("web-page.sh:", e, file=sys.stderr)
print(f"web-page.sh: DOM matches the ledger: {len(assigned)} assigned, {len(pending)} pending")
sys.exit(1 if errors else 0)
PY
[[ -s "$ART/web-page.png" ]] || { echo "web-page.sh: no screenshot" >&2; cat "$work/chromium.log" >&2; exit 1; }
echo "web-page.sh: screenshot $ART/web-page.png"
