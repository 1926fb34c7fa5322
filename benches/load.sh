#!/usr/bin/env bash
# Bounded load comparison: `weft serve` vs `wasmtime serve` 48.0.8 on the same guest, driven
# by the same wrk settings on 127.0.0.1, alternating rounds. Prints a markdown table of req/s,
# p50, p99 and the weft/wasmtime ratio. Everything stops by itself.
#
#   bash benches/load.sh                 # P2 hello and P3 hello, 3 rounds x 10 s each
#   ROUNDS=1 DURATION=5 bash benches/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
guests="${WEFT_GUESTS_DIR:-$cache_root/guests}"
wasmtime_root="$cache_root/wasmtime-cli"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"
export WEFT_CACHE_DIR="$cache_root/bench-cache"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
bash tests/fixtures/build-guests.sh "$guests" >&2
if ! "$wasmtime_root/bin/wasmtime" --version 2>/dev/null | grep -q "48.0.8"; then
  echo "installing wasmtime-cli 48.0.8 into $wasmtime_root (one-off, several minutes)" >&2
  cargo install wasmtime-cli --version 48.0.8 --locked --root "$wasmtime_root" >&2
fi
cargo build --release --locked -p weft >&2
weft="$CARGO_TARGET_DIR/release/weft"
wasmtime="$wasmtime_root/bin/wasmtime"

start_server() { # name component port -> pid
  local name=$1 comp=$2 port=$3 log=$4
  case "$name" in
    weft) "$weft" serve --addr "127.0.0.1:$port" --no-logging-prefix "$comp" 2>"$log" >/dev/null & ;;
    wasmtime-p2) "$wasmtime" serve --addr "127.0.0.1:$port" "$comp" 2>"$log" >/dev/null & ;;
    wasmtime-p3) "$wasmtime" serve -Wcomponent-model-async -Sp3,http --addr "127.0.0.1:$port" "$comp" 2>"$log" >/dev/null & ;;
  esac
  local pid=$!
  for _ in $(seq 1 600); do
    grep -q "http://" "$log" 2>/dev/null && { echo "$pid"; return; }
    sleep 0.1
  done
  echo "server $name did not start:" >&2; cat "$log" >&2; kill "$pid"; exit 1
}

run_wrk() { # port -> "rps p50_ms p99_ms"
  local port=$1 out
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/")
  python3 - "$out" <<'PY'
import re, sys
text = sys.argv[1]
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errs:
    print(f"warning: {errs.group(1)} non-2xx responses", file=sys.stderr)
print(f"{rps:.0f} {p50:.3f} {p99:.3f}")
PY
}

tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
results="$tmp/results"
port=18400
for case in "p2:$guests/http-hello.wasm:wasmtime-p2" "p3:$guests/p3-service.wasm:wasmtime-p3"; do
  IFS=: read -r label comp wt <<<"$case"
  for round in $(seq 1 "$ROUNDS"); do
    for server in weft "$wt"; do
      port=$((port + 1))
      pid=$(start_server "$server" "$comp" "$port" "$tmp/$server-$port.log")
      line=$(run_wrk "$port")
      kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
      echo "$label ${server%%-*} $round $line" | tee -a "$results" >&2
    done
  done
done

python3 - "$results" "$ROUNDS" "$DURATION" "$CONNECTIONS" "$THREADS" <<'PY'
import statistics, sys, collections
path, rounds, dur, conns, threads = sys.argv[1:]
rows = collections.defaultdict(list)
for line in open(path):
    label, server, _round, rps, p50, p99 = line.split()
    rows[(label, server)].append((float(rps), float(p50), float(p99)))
print(f"\nwrk -t{threads} -c{conns} -d{dur}s, median of {rounds} alternating rounds, 127.0.0.1\n")
print("| guest | server | req/s | p50 ms | p99 ms | weft/wasmtime req/s |")
print("|---|---|---:|---:|---:|---:|")
for label in ["p2", "p3"]:
    med = {}
    for server in ["weft", "wasmtime"]:
        vals = rows.get((label, server))
        if not vals:
            continue
        med[server] = tuple(statistics.median(v[i] for v in vals) for i in range(3))
    for server in ["weft", "wasmtime"]:
        if server not in med:
            continue
        rps, p50, p99 = med[server]
        ratio = f"{med['weft'][0] / med['wasmtime'][0]:.2f}x" if server == "weft" and "wasmtime" in med else ""
        print(f"| {label} hello | {server} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {ratio} |")
PY
