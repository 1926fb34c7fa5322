#!/usr/bin/env bash
# Bounded load comparison: `weft serve` vs `wasmtime serve` 48.0.8 on the same guest, driven
# by the same wrk settings on 127.0.0.1, alternating rounds. Prints a markdown table of req/s,
# p50, p99 and the weft/wasmtime ratio. Everything stops by itself.
#
#   bash benches/load.sh                 # P2 hello and P3 hello, 3 rounds x 10 s each
#   ROUNDS=1 DURATION=5 bash benches/load.sh
#   CASES=p2 ROUNDS=5 bash benches/load.sh                      # only the P2 guest
#   WEFT_ARGS="--allocator on-demand" WASMTIME_ARGS="-W epoch-interruption" bash benches/load.sh
#   NO_BUILD=1 bash benches/load.sh      # use the weft binary already in $CARGO_TARGET_DIR
#   WEFT=/tmp/weft bash benches/load.sh  # benchmark a copy of the binary (others may rebuild)
#   WEFT=/tmp/weft-new BASELINE=/tmp/weft-old bash benches/load.sh
#                                        # A/B: another weft binary in wasmtime's place (a
#                                        # refactor's "no speed lost"; wasmtime is not needed)
#
# Raw per-round lines go to stderr (and to $RESULTS if set) as
# "guest server round req/s p50_ms p99_ms cpu_us_per_req" (server CPU time, user + system,
# per request, from /proc/PID/stat).
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
CASES="${CASES:-p2 p3}"
WEFT_ARGS="${WEFT_ARGS:-}"
WASMTIME_ARGS="${WASMTIME_ARGS:-}"
export WEFT_CACHE_DIR="$cache_root/bench-cache"
# With RUST_BACKTRACE=1 in the environment, wasmtime serve captures a std backtrace for an
# internal error built on every store drop (~8% of its CPU on P2 hello); weft does not. Both
# servers run without it so the comparison measures the servers, not the shell's settings.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
# A guest fixture being edited elsewhere must not stop the benchmark if the two guests it
# needs are already built.
if ! bash tests/fixtures/build-guests.sh "$guests" >&2; then
  if [ -f "$guests/http-hello.wasm" ] && [ -f "$guests/p3-service.wasm" ]; then
    echo "warning: build-guests.sh failed; using the existing http-hello.wasm and p3-service.wasm in $guests" >&2
  else
    exit 1
  fi
fi
BASELINE="${BASELINE:-}"
if [ -n "$BASELINE" ]; then
  [ -x "$BASELINE" ] || { echo "BASELINE=$BASELINE is not an executable weft binary" >&2; exit 1; }
elif ! "$wasmtime_root/bin/wasmtime" --version 2>/dev/null | grep -q "48.0.8"; then
  echo "installing wasmtime-cli 48.0.8 into $wasmtime_root (one-off, several minutes)" >&2
  cargo install wasmtime-cli --version 48.0.8 --locked --root "$wasmtime_root" >&2
fi
# WEFT=/path/to/weft benchmarks that binary (no build); NO_BUILD=1 uses the one in the target dir.
if [ -z "${WEFT:-}" ] && [ -z "${NO_BUILD:-}" ]; then cargo build --release --locked -p weft >&2; fi
weft="${WEFT:-$CARGO_TARGET_DIR/release/weft}"
wasmtime="$wasmtime_root/bin/wasmtime"

# Servers are started from the main shell (not from a $(...) subshell) so that they are jobs
# of this shell: `wait` works and the EXIT trap can stop them.
server_pid=""
start_server() { # name component port log -> sets server_pid
  local name=$1 comp=$2 port=$3 log=$4
  case "$name" in
    # shellcheck disable=SC2086
    weft) "$weft" serve --addr "127.0.0.1:$port" --no-logging-prefix $WEFT_ARGS "$comp" 2>"$log" >/dev/null & ;;
    # shellcheck disable=SC2086
    baseline) "$BASELINE" serve --addr "127.0.0.1:$port" --no-logging-prefix $WEFT_ARGS "$comp" 2>"$log" >/dev/null & ;;
    # shellcheck disable=SC2086
    wasmtime-p2) "$wasmtime" serve $WASMTIME_ARGS --addr "127.0.0.1:$port" "$comp" 2>"$log" >/dev/null & ;;
    # shellcheck disable=SC2086
    wasmtime-p3) "$wasmtime" serve -Wcomponent-model-async -Sp3,http $WASMTIME_ARGS --addr "127.0.0.1:$port" "$comp" 2>"$log" >/dev/null & ;;
  esac
  server_pid=$!
  for _ in $(seq 1 600); do
    grep -q "http://" "$log" 2>/dev/null && return
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "server $name did not start:" >&2; cat "$log" >&2; kill "$server_pid" 2>/dev/null; exit 1
}

stop_server() { # pid: SIGINT, then SIGKILL after 10 s; always reaped before the next round
  local pid=$1
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cpu_ticks() { # pid -> utime+stime of the process (all threads), in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

run_wrk() { # port pid -> "rps p50_ms p99_ms cpu_us_per_req"
  local port=$1 pid=$2 out before after
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  before=$(cpu_ticks "$pid")
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/")
  after=$(cpu_ticks "$pid")
  python3 - "$out" "$((after - before))" "$(getconf CLK_TCK)" <<'PY'
import re, sys
text, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errs:
    print(f"warning: {errs.group(1)} non-2xx responses", file=sys.stderr)
# Server CPU time (user + system, all threads) per request: less sensitive than req/s to
# other load on the machine, since it does not count time the server was not running.
total = int(re.search(r"(\d+) requests in", text).group(1))
cpu_us = ticks / hz * 1e6 / max(total, 1)
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {cpu_us:.1f}")
PY
}

tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
results="${RESULTS:-$tmp/results}"
: >"$results"
port=18400
for label in $CASES; do
  case "$label" in
    p2) comp="$guests/http-hello.wasm" wt=wasmtime-p2 ;;
    p3) comp="$guests/p3-service.wasm" wt=wasmtime-p3 ;;
    *) echo "unknown case $label (expected p2 or p3)" >&2; exit 1 ;;
  esac
  [ -n "$BASELINE" ] && wt=baseline
  for round in $(seq 1 "$ROUNDS"); do
    for server in weft "$wt"; do
      port=$((port + 1))
      start_server "$server" "$comp" "$port" "$tmp/$server-$port.log"
      line=$(run_wrk "$port" "$server_pid")
      stop_server "$server_pid"
      echo "$label ${server%%-*} $round $line" | tee -a "$results" >&2
    done
  done
done

python3 - "$results" "$ROUNDS" "$DURATION" "$CONNECTIONS" "$THREADS" "${BASELINE:+baseline}" <<'PY'
import statistics, sys, collections
path, rounds, dur, conns, threads, base = sys.argv[1:]
other = base or "wasmtime"
rows = collections.defaultdict(list)
for line in open(path):
    label, server, _round, rps, p50, p99, cpu = line.split()
    rows[(label, server)].append((float(rps), float(p50), float(p99), float(cpu)))
names = {"p2": "P2 http-hello", "p3": "P3 p3-service"}
print(f"\nwrk -t{threads} -c{conns} -d{dur}s, median of {rounds} alternating rounds, 127.0.0.1\n")
print(f"| guest | server | req/s | req/s min-max | p50 ms | p99 ms | server CPU us/req | weft/{other} req/s | weft/{other} p99 | weft/{other} CPU/req |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for label in ["p2", "p3"]:
    med, spread = {}, {}
    for server in ["weft", other]:
        vals = rows.get((label, server))
        if not vals:
            continue
        med[server] = tuple(statistics.median(v[i] for v in vals) for i in range(4))
        spread[server] = (min(v[0] for v in vals), max(v[0] for v in vals))
    for server in ["weft", other]:
        if server not in med:
            continue
        rps, p50, p99, cpu = med[server]
        both = server == "weft" and other in med
        ratio = f"{rps / med[other][0]:.2f}x" if both else ""
        p99r = f"{p99 / med[other][2]:.2f}x" if both else ""
        cpur = f"{cpu / med[other][3]:.2f}x" if both else ""
        lo, hi = spread[server]
        print(f"| {names[label]} | {server} | {rps:.0f} | {lo:.0f}-{hi:.0f} | {p50:.2f} | {p99:.2f} | {cpu:.1f} | {ratio} | {p99r} | {cpur} |")
PY
