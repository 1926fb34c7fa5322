#!/usr/bin/env bash
# Bounded load: the cost of `weft up`'s ingress + routing. Serves the P2 hello component with
#   (a) `weft serve hello.wasm`                      (no routing)
#   (b) `weft up` with 10 workloads deployed (all the same hello component on hosts
#       w0..w9.localhost), requests to w7.localhost
# and drives both with the same wrk settings on 127.0.0.1, alternating rounds.
# Prints a table of req/s, p50, p99 and (b)/(a).
#
#   bash benches/ingress.sh            # 3 rounds x 10 s
#   ROUNDS=1 DURATION=5 bash benches/ingress.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
guests="${WEFT_GUESTS_DIR:-$cache_root/guests}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"
export WEFT_CACHE_DIR="$cache_root/bench-cache"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
bash tests/fixtures/build-guests.sh "$guests" >&2
cargo build --release --locked -p weft >&2
weft="$CARGO_TARGET_DIR/release/weft"
hello="$guests/http-hello.wasm"

tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
for i in $(seq 0 9); do
  cat >"$tmp/w$i.yaml" <<YAML
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: w$i }
spec:
  components:
    - { name: app, image: $hello }
  hostInterfaces:
    - { namespace: wasi, package: http, interfaces: [incoming-handler], config: { host: w$i.localhost, path: / } }
YAML
done

wait_banner() { # log pid
  for _ in $(seq 1 600); do
    grep -q "Admin API on\|Serving HTTP on http://" "$1" 2>/dev/null && grep -q "http://" "$1" && return 0
    sleep 0.1
  done
  echo "server did not start:" >&2; cat "$1" >&2; exit 1
}

measure() { # port host-header -> "rps p50 p99"
  local port=$1 host=$2 out
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -H "Host: $host" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: $host" "http://127.0.0.1:$port/")
  python3 - "$out" <<'PY'
import re, sys
t = sys.argv[1]
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if bad: print(f"warning: {bad.group(1)} non-2xx responses", file=sys.stderr)
print(f"{rps:.0f} {p50:.3f} {p99:.3f}")
PY
}

results="$tmp/results"
port=18600
for round in $(seq 1 "$ROUNDS"); do
  port=$((port + 1))
  rm -f "$tmp/serve.log" "$tmp/up.log"   # a stale banner must not count as a start
  "$weft" serve --addr "127.0.0.1:$port" --no-logging-prefix "$hello" 2>"$tmp/serve.log" >/dev/null &
  pid=$!; wait_banner "$tmp/serve.log"
  echo "serve $(measure "$port" "w7.localhost")" | tee -a "$results" >&2
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true

  port=$((port + 1)); admin=$((port + 1000))
  rm -rf "$tmp/data"
  "$weft" up --data-dir "$tmp/data" --http-addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$admin" \
    "$tmp"/w*.yaml 2>"$tmp/up.log" >/dev/null &
  pid=$!; wait_banner "$tmp/up.log"
  n=$(grep -c '^deployed ' "$tmp/up.log" || true)
  [ "$n" = 10 ] || { echo "expected 10 workloads deployed, got $n" >&2; cat "$tmp/up.log" >&2; exit 1; }
  echo "up10 $(measure "$port" "w7.localhost")" | tee -a "$results" >&2
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
done

python3 - "$results" "$ROUNDS" "$DURATION" "$CONNECTIONS" "$THREADS" <<'PY'
import statistics, sys, collections
path, rounds, dur, conns, threads = sys.argv[1:]
rows = collections.defaultdict(list)
for line in open(path):
    name, rps, p50, p99 = line.split()
    rows[name].append((float(rps), float(p50), float(p99)))
med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in rows.items()}
print(f"\nwrk -t{threads} -c{conns} -d{dur}s, median of {rounds} alternating rounds, 127.0.0.1, P2 hello\n")
print("| setup | req/s | p50 ms | p99 ms | vs weft serve |")
print("|---|---:|---:|---:|---:|")
for k, label in [("serve", "weft serve hello.wasm"), ("up10", "weft up, 10 workloads, routed by Host")]:
    if k in med:
        r = med[k]
        rel = f"{r[0] / med['serve'][0]:.2f}x" if k != "serve" and "serve" in med else ""
        print(f"| {label} | {r[0]:.0f} | {r[1]:.2f} | {r[2]:.2f} | {rel} |")
PY
