#!/usr/bin/env bash
# The lattice on one machine with the default timings (heartbeat 1 s, host timeout 3 s, lease
# TTL 3 s): a real nats-server -js on a free loopback port, three `weft up --lattice` hosts, a
# WorkloadDeployment `web` of 2 replicas. In order:
#   1. forwarded ingress: wrk against the host without a replica (each request forwarded over
#      NATS) and against a host with one (served locally), same load, alternating rounds;
#   2. convergence: DEPLOYMENTS (default 200) more deployments of 1 replica, time until every
#      one reports a running replica;
#   3. failover: ROUNDS times (default 5) kill -9 a host that runs a `web` replica and does not
#      lead, time until the spare host serves it from a replica of its own, then start the
#      killed host again (it becomes the next spare); the median;
#   4. a quiet minute: no placement changes, no host lost (no flapping).
#
#   bash benches/lattice.sh            # uses target/release/weft if built, else debug
#   ROUNDS=5 DEPLOYMENTS=200 WEFT_BIN=path/to/weft bash benches/lattice.sh
#   PARTS="forward converge" bash benches/lattice.sh   # only some parts (forward converge failover quiet)
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
# Served by a replica on that host: `weft-forwarded` keeps a host from forwarding the probe.
serves() { curl -sf -m 2 -H 'Host: web.localhost' -H 'weft-forwarded: probe' "http://127.0.0.1:${port[$1]}/" >/dev/null 2>&1; }
PARTS="${PARTS:-forward converge failover quiet}"
part() { [[ " $PARTS " == *" $1 "* ]]; }
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

if part forward; then
  command -v wrk >/dev/null || { echo "wrk is needed for the forwarding figures (apt-get install wrk)" >&2; exit 1; }
  json="$(hosts_json)"
  local_host="$(python3 -c 'import json,sys; hs=json.loads(sys.argv[1]); print(next(h["name"] for h in hs if "web" in h["replicas"]))' "$json")"
  spare="$(python3 -c 'import json,sys; hs=json.loads(sys.argv[1]); print(next(h["name"] for h in hs if "web" not in h["replicas"]))' "$json")"
  for _ in $(seq 100); do curl -sf -m 2 -H 'Host: web.localhost' "http://127.0.0.1:${port[$spare]}/" >/dev/null && break; sleep 0.1; done
  FDUR="${FORWARD_DURATION:-10}"; FROUNDS="${FORWARD_ROUNDS:-3}"; FCONN="${FORWARD_CONNECTIONS:-16}"
  echo "forwarded ingress: wrk -t1 -c$FCONN -d${FDUR}s, $FROUNDS alternating rounds; local = $local_host (a replica), forwarded = $spare (none)"
  for r in $(seq "$FROUNDS"); do
    for kind in local forwarded; do
      h="$local_host"; [ "$kind" = forwarded ] && h="$spare"
      out="$(wrk -t1 -c"$FCONN" -d"${FDUR}s" --latency -H 'Host: web.localhost' "http://127.0.0.1:${port[$h]}/" 2>&1)"
      rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
      p50="$(awk '$1=="50%" {print $2}' <<<"$out")"; p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
      non2xx="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
      echo "forward round $r $kind: $rps req/s, p50 $p50, p99 $p99${non2xx:+, non-2xx $non2xx}"
    done
  done
fi

if part converge; then
  N="${DEPLOYMENTS:-200}"
  mkdir -p "$work/many"
  for i in $(seq "$N"); do
    cat >"$work/many/d$i.yaml" <<YAML
apiVersion: weft.dev/v1alpha1
kind: WorkloadDeployment
metadata:
  name: d$i
spec:
  replicas: 1
  components:
    - name: app
      image: ../hello.wasm
  hostInterfaces:
    - namespace: wasi
      package: http
      interfaces: [incoming-handler]
      config: { host: d$i.localhost, path: / }
YAML
  done
  t0=$(date +%s.%N)
  "$WEFT" deploy --lattice "$url" "$work"/many/d*.yaml >/dev/null
  t1=$(date +%s.%N)
  running() { "$WEFT" get workloads --lattice "$url" -o json | python3 -c 'import json,sys; print(sum(1 for w in json.load(sys.stdin) if w["name"].startswith("d") and w["running"] >= 1))'; }
  ok=0
  for _ in $(seq 600); do [ "$(running)" -ge "$N" ] && { ok=1; break; }; sleep 0.1; done
  t2=$(date +%s.%N)
  [ "$ok" = 1 ] || { echo "only $(running) of $N deployments running after 60 s" >&2; exit 1; }
  python3 -c "print(f'convergence: $N deployments of 1 replica on 3 hosts: deploy command {$t1-$t0:.2f} s, all running {$t2-$t1:.2f} s after it returned ({$t2-$t0:.2f} s in all)')"
fi

times=()
part failover || ROUNDS=0
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
if [ "${#times[@]}" -gt 0 ]; then
median="$(printf '%s\n' "${times[@]}" | sort -n | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print(f"{v[len(v)//2]:.2f}")')"
echo "failover (kill -9 of a host -> replica serving elsewhere), default timings: median $median s of ${#times[@]} (${times[*]})"
fi
part quiet || exit 0

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
