#!/usr/bin/env bash
# Lattice failover time with the default timings (heartbeat 1 s, host timeout 3 s, lease TTL
# 3 s): a real nats-server -js on a free loopback port, three `weft up --lattice` hosts, a
# WorkloadDeployment of 2 replicas; ROUNDS times (default 5): kill -9 a host that runs a replica
# and does not lead, time until the spare host answers for the workload over HTTP, then start
# the killed host again (it becomes the next spare). Prints each time and the median.
#
#   bash benches/lattice.sh            # uses target/release/weft if built, else debug
#   ROUNDS=5 WEFT_BIN=path/to/weft bash benches/lattice.sh
#
# Everything listens on 127.0.0.1; every wait is bounded (60 s).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/nats.sh
nats_install
target="${CARGO_TARGET_DIR:-$HOME/.cache/weft/target}"
WEFT="${WEFT_BIN:-}"
if [ -z "$WEFT" ]; then
  if [ -x "$target/release/weft" ]; then WEFT="$target/release/weft"; else WEFT="$target/debug/weft"; fi
fi
[ -x "$WEFT" ] || { echo "no weft binary at $WEFT: cargo build -p weft first" >&2; exit 1; }
GUEST="${WEFT_GUESTS_DIR:-$HOME/.cache/weft/guests}/http-hello.wasm"
[ -f "$GUEST" ] || { echo "no $GUEST: bash tests/fixtures/build-guests.sh DIR and export WEFT_GUESTS_DIR" >&2; exit 1; }
ROUNDS="${ROUNDS:-5}"

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

nport="$(free_port)"
"$WEFT_NATS_SERVER" -js -sd "$work/js" -a 127.0.0.1 -p "$nport" >"$work/nats.log" 2>&1 &
pids+=($!)
disown "$!"
url="nats://127.0.0.1:$nport"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null && break; sleep 0.1; done

declare -A port pid
start_host() { # NAME
  local n="$1"
  [ -n "${port[$n]:-}" ] || port[$n]="$(free_port)"
  "$WEFT" up --http-addr "127.0.0.1:${port[$n]}" --admin-addr 127.0.0.1:0 --data-dir "$work/$n" \
    --lattice "$url" --host-name "$n" --label tier=web >"$work/$n.log" 2>&1 &
  pid[$n]=$!
  pids+=($!)
  disown "$!"
  for _ in $(seq 600); do grep -q "^Admin API on" "$work/$n.log" && return 0; sleep 0.1; done
  echo "host $n did not start: $(cat "$work/$n.log")" >&2; exit 1
}
serves() { curl -sf -m 2 -H 'Host: web.localhost' "http://127.0.0.1:${port[$1]}/" >/dev/null 2>&1; }
hosts_json() { "$WEFT" get hosts --lattice "$url" -o json; }

for n in h1 h2 h3; do start_host "$n"; done
cp "$GUEST" "$work/hello.wasm"
cat >"$work/web.yaml" <<YAML
apiVersion: weft.dev/v1alpha1
kind: WorkloadDeployment
metadata:
  name: web
spec:
  replicas: 2
  hostSelector: { tier: web }
  components:
    - name: app
      image: ./hello.wasm
  hostInterfaces:
    - namespace: wasi
      package: http
      interfaces: [incoming-handler]
      config: { host: web.localhost, path: / }
YAML
"$WEFT" deploy --lattice "$url" "$work/web.yaml"
count() { local c=0; for n in h1 h2 h3; do serves "$n" && c=$((c+1)); done; echo $c; }
for _ in $(seq 600); do [ "$(count)" = 2 ] && break; sleep 0.1; done
[ "$(count)" = 2 ] || { echo "web not on 2 hosts" >&2; exit 1; }

times=()
for r in $(seq "$ROUNDS"); do
  json="$(hosts_json)"
  victim="$(python3 -c 'import json,sys; hs=json.loads(sys.argv[1]); print(next(h["name"] for h in hs if "web" in h["replicas"] and not h["leader"]))' "$json")"
  spare="$(python3 -c 'import json,sys; hs=json.loads(sys.argv[1]); print(next(h["name"] for h in hs if h["status"]=="ready" and "web" not in h["replicas"]))' "$json")"
  t0=$(date +%s.%N)
  kill -9 "${pid[$victim]}"
  ok=0
  for _ in $(seq 1200); do serves "$spare" && { ok=1; break; }; sleep 0.05; done
  t1=$(date +%s.%N)
  [ "$ok" = 1 ] || { echo "round $r: $spare never served" >&2; exit 1; }
  t="$(python3 -c "print(f'{$t1-$t0:.2f}')")"
  times+=("$t")
  echo "round $r: killed $victim, replica serving on $spare after $t s"
  start_host "$victim"
  sleep 4 # the restarted host registers and is seen by everyone before the next kill
done
median="$(printf '%s\n' "${times[@]}" | sort -n | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print(f"{v[len(v)//2]:.2f}")')"
echo "failover (kill -9 of a host -> replica serving elsewhere), default timings: median $median s of ${#times[@]} (${times[*]})"

# A quiet minute after the last recovery: no placement written, no host marked lost.
QUIET="${QUIET_SECONDS:-60}"
commands() { cat "$work"/h?.log | grep -cE "weft_lattice::agent: (place|update|remove) |host lost" || true; }
c0="$(commands)"; h0="$(hosts_json | python3 -c 'import json,sys; print(sorted((h["name"],h["status"],sorted(h["replicas"])) for h in json.load(sys.stdin)))')"
sleep "$QUIET"
c1="$(commands)"; h1="$(hosts_json | python3 -c 'import json,sys; print(sorted((h["name"],h["status"],sorted(h["replicas"])) for h in json.load(sys.stdin)))')"
if [ "$c0" = "$c1" ] && [ "$h0" = "$h1" ]; then
  echo "quiet ${QUIET} s after recovery: no placement changed, no host marked lost (no flapping)"
else
  echo "quiet ${QUIET} s after recovery: $((c1 - c0)) scheduler actions; hosts before $h0 after $h1" >&2
  exit 1
fi
