#!/usr/bin/env bash
# Are we fast yet: Weft against its peers on this machine, one JSON record per run.
#
#   bash benches/awfy.sh                  # the full suite (~8 min after the builds); appends a
#                                         # record to docs/awfy/history.jsonl, regenerates
#                                         # docs/awfy/history.js, prints the ratios
#   AWFY_SHORT=1 bash benches/awfy.sh     # what CI runs: one short round per server, no
#                                         # criterion, prints the ratios, records nothing
#   AWFY_NOTE="shared machine: ..." bash benches/awfy.sh   # a note kept in the record
#   AWFY_RECORD=0 bash benches/awfy.sh    # full suite, print only
#   WEFT=/tmp/weft NATIVE=/tmp/native-hello bash benches/awfy.sh   # benchmark copies (no build)
#
# Figures (docs/observability.md, "Are we fast yet", has the record format):
#   - P2 hello (`http-hello.wasm`) and P3 hello with instance reuse (`p3-service.wasm`):
#     req/s and p99 of `weft serve`, `wasmtime serve` 48.0.8 and a native hyper hello
#     (benches/native-hello), wrk on 127.0.0.1, servers alternating round by round;
#   - RSS (VmHWM) of each server after the P2 load;
#   - cold start: process start until the first 200 response, for weft with an empty compile
#     cache, weft with a warm cache, and wasmtime serve (which compiles at every start);
#   - one call across components, composed vs linked vs single (criterion, benches/linking.rs;
#     full run only).
#   - messaging: the msg-transform guest as a stream transform against the same transform in
#     native Rust on the in-process bus (crates/weft-runtime/tests/messaging_bench.rs, release;
#     full run only).
# Lattice figures (issue 15) will add keys to "figures".
#
# This is a report, never a timed assertion: it fails only if something cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
guests="${WEFT_GUESTS_DIR:-$cache_root/guests}"
# wasmtime-cli 48.0.8: the newest 48.x CLI on crates.io (the 48.0.9/48.0.10 security releases
# published the library crates weft builds on, not the CLI), installed in the same place as
# benches/load.sh's so one install serves both.
wasmtime_version="${WASMTIME_VERSION:-48.0.8}"
wasmtime_root="${WASMTIME_ROOT:-$cache_root/wasmtime-cli}"
short="${AWFY_SHORT:-0}"
if [ "$short" = 1 ]; then
  ROUNDS="${ROUNDS:-1}" DURATION="${DURATION:-3}" WARMUP="${WARMUP:-1}" COLD_RUNS="${COLD_RUNS:-3}"
  record="${AWFY_RECORD:-0}"
else
  ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-10}" WARMUP="${WARMUP:-2}" COLD_RUNS="${COLD_RUNS:-7}"
  record="${AWFY_RECORD:-1}"
fi
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"
history="${AWFY_HISTORY:-$repo/docs/awfy/history.jsonl}"
# Same fairness rule as benches/load.sh: no backtrace capture in either server.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

say() { printf 'awfy: %s\n' "$*" >&2; }
loud() { printf '\n!!!!!!!! awfy: %s !!!!!!!!\n' "$*" >&2; }

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
if ! bash tests/fixtures/build-guests.sh "$guests" >&2; then
  if [ -f "$guests/http-hello.wasm" ] && [ -f "$guests/p3-service.wasm" ]; then
    say "warning: build-guests.sh failed; using the existing http-hello.wasm and p3-service.wasm"
  else
    exit 1
  fi
fi

# wasmtime-cli $wasmtime_version (the wasmtime release weft itself is built on), installed once
# into $wasmtime_root. Another process may be installing it right now: wait rather than race it.
wasmtime="$wasmtime_root/bin/wasmtime"
have_wasmtime() { "$wasmtime" --version 2>/dev/null | grep -qF "$wasmtime_version"; }
if ! have_wasmtime; then
  for _ in $(seq 1 120); do
    pgrep -f "cargo install wasmtime-cli.*--root $wasmtime_root" >/dev/null || break
    say "another process is installing wasmtime-cli into $wasmtime_root; waiting"
    sleep 10
  done
fi
if ! have_wasmtime; then
  if [ "$short" = 1 ] && [ "${AWFY_INSTALL_WASMTIME:-0}" != 1 ]; then
    loud "wasmtime-cli $wasmtime_version is not installed in $wasmtime_root: the short run compares weft with native only (the full run, or AWFY_INSTALL_WASMTIME=1, installs it: several minutes)"
    wasmtime=""
  else
    say "installing wasmtime-cli $wasmtime_version into $wasmtime_root (one-off, several minutes)"
    cargo install wasmtime-cli --version "$wasmtime_version" --locked --root "$wasmtime_root" >&2
  fi
fi

# The full run measures release builds. The short run (CI) uses the dev-profile binaries that
# `cargo test` has already built (weft's own crates unoptimised, dependencies at opt-level 1),
# so it adds no build: its ratios are a smoke report, not the published figures.
profile="${AWFY_PROFILE:-release}"
[ "$short" = 1 ] && profile="${AWFY_PROFILE:-debug}"
if [ -z "${WEFT:-}" ] || [ -z "${NATIVE:-}" ]; then
  if [ "$profile" = release ]; then
    cargo build --release --locked -p weft -p native-hello >&2
  else
    cargo build --locked -p weft -p native-hello >&2
  fi
fi
weft="${WEFT:-$CARGO_TARGET_DIR/$profile/weft}"
native="${NATIVE:-$CARGO_TARGET_DIR/$profile/native-hello}"
[ "$profile" = release ] || loud "weft and native-hello are $profile builds: the ratios below are a smoke report, not the published figures (bash benches/awfy.sh measures release builds)"

tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
export WEFT_CACHE_DIR="$tmp/weft-cache"

# Every server binds 127.0.0.1:0 and prints "Serving HTTP on http://ADDR/"; the port is read from
# that banner, so runs of this script and other helpers' benchmarks never collide on a port.
server_pid="" server_port=""
start_server() { # system component log -> sets server_pid, server_port
  local system=$1 comp=$2 log=$3
  : >"$log"
  case "$system" in
    weft) "$weft" serve --addr 127.0.0.1:0 --no-logging-prefix "$comp" 2>"$log" >/dev/null & ;;
    wasmtime-p2) "$wasmtime" serve --addr 127.0.0.1:0 "$comp" 2>"$log" >/dev/null & ;;
    wasmtime-p3) "$wasmtime" serve -Wcomponent-model-async -Sp3,http --addr 127.0.0.1:0 "$comp" 2>"$log" >/dev/null & ;;
    native) "$native" 127.0.0.1:0 2>"$log" >/dev/null & ;;
    *) say "unknown system $system"; exit 1 ;;
  esac
  server_pid=$!
  for _ in $(seq 1 600); do
    server_port=$(sed -n 's|.*http://[^/]*:\([0-9][0-9]*\)/.*|\1|p' "$log" | head -1)
    [ -n "$server_port" ] && [ "$server_port" != 0 ] && return
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  say "server $system did not start:"; cat "$log" >&2; exit 1
}

stop_server() { # pid
  local pid=$1
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

measure() { # port pid -> "rps p50_ms p99_ms cpu_us_per_req rss_mib"
  local port=$1 pid=$2 out before after rss
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/")
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  rss=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  python3 - "$out" "$((after - before))" "$(getconf CLK_TCK)" "$rss" <<'PY'
import re, sys
text, ticks, hz, rss_kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errs:
    sys.exit(f"awfy: {errs.group(1)} non-2xx responses: the server is failing, not slow")
total = int(re.search(r"(\d+) requests in", text).group(1))
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {ticks / hz * 1e6 / max(total, 1):.1f} {rss_kib / 1024:.1f}")
PY
}

results="$tmp/results"
: >"$results"
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
for case in p2 p3; do
  case "$case" in
    p2) comp="$guests/http-hello.wasm" wt=wasmtime-p2 ;;
    p3) comp="$guests/p3-service.wasm" wt=wasmtime-p3 ;;
  esac
  systems="weft native"
  [ -n "$wasmtime" ] && systems="weft $wt native"
  for round in $(seq 1 "$ROUNDS"); do
    for system in $systems; do
      start_server "$system" "$comp" "$tmp/$system.log"
      line=$(measure "$server_port" "$server_pid")
      stop_server "$server_pid"
      echo "load $case ${system%%-*} $round $line" | tee -a "$results" >&2
    done
  done
done

# Cold start: from exec until the first 200, polled every millisecond by a raw-socket client.
cat >"$tmp/first.py" <<'PY'
import os, re, socket, subprocess, sys, time
# first.py LOG CMD... -> milliseconds from exec to the first 200 response
log, cmd = sys.argv[1], sys.argv[2:]
start = time.monotonic()
with open(log, "wb") as err:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
try:
    port = None
    while port is None:
        if proc.poll() is not None or time.monotonic() - start > 60:
            sys.exit(f"awfy: {cmd[0]} exited or took over 60 s before its banner: " + open(log).read())
        m = re.search(r"http://[^/\s]*:(\d+)/", open(log).read())
        if m and m.group(1) != "0":
            port = int(m.group(1))
        else:
            time.sleep(0.001)
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                head = s.recv(64)
            if head.startswith(b"HTTP/1.1 200"):
                break
        except OSError:
            pass
        if time.monotonic() - start > 60:
            sys.exit(f"awfy: no 200 from {cmd[0]} within 60 s")
        time.sleep(0.001)
    print(f"{(time.monotonic() - start) * 1000:.1f}")
finally:
    proc.terminate()
    proc.wait()
PY
hello="$guests/http-hello.wasm"
for i in $(seq 1 "$COLD_RUNS"); do
  rm -rf "$tmp/cold-cache"
  echo "cold weft $i $(WEFT_CACHE_DIR="$tmp/cold-cache" python3 "$tmp/first.py" "$tmp/cold.log" "$weft" serve --addr 127.0.0.1:0 "$hello")" | tee -a "$results" >&2
  echo "cold weft_cached $i $(WEFT_CACHE_DIR="$tmp/cold-cache" python3 "$tmp/first.py" "$tmp/cold.log" "$weft" serve --addr 127.0.0.1:0 "$hello")" | tee -a "$results" >&2
  if [ -n "$wasmtime" ]; then
    echo "cold wasmtime $i $(python3 "$tmp/first.py" "$tmp/cold.log" "$wasmtime" serve --addr 127.0.0.1:0 "$hello")" | tee -a "$results" >&2
  fi
done

# One call across components (criterion; full run only: it needs the bench build).
if [ "$short" != 1 ] && [ "${AWFY_CRITERION:-1}" = 1 ]; then
  say "criterion: benches/linking.rs, callee add, default engine"
  WEFT_GUESTS_DIR="$guests" cargo bench --locked -p weft-runtime --bench linking -- \
    --warm-up-time 1 --measurement-time 3 '^cross-component-call/add/(composed|linked|single)$' >&2
  for shape in composed linked single; do
    est=$(find "$CARGO_TARGET_DIR/criterion" -path "*cross-component-call*add/$shape/new/estimates.json" | head -1)
    [ -n "$est" ] || { say "no criterion estimate for $shape"; exit 1; }
    # An iteration is 10 000 calls (benches/linking.rs, CALLS).
    # (No nested quotes in an f-string: Debian's python3 is 3.11.)
    python3 -c 'import json,sys; e = json.load(open(sys.argv[1])); print("call", sys.argv[2], 1, "%.2f" % (e["median"]["point_estimate"] / 10000))' "$est" "$shape" | tee -a "$results" >&2
  done
fi
# Messaging (full run only: a release build of the bench).
if [ "$short" != 1 ] && [ "${AWFY_MESSAGING:-1}" = 1 ]; then
  say "messaging: crates/weft-runtime/tests/messaging_bench.rs, in-process bus, release"
  WEFT_GUESTS_DIR="$guests" cargo test --locked --release -p weft-runtime --test messaging_bench \
    -- --nocapture >"$tmp/msg.log" 2>&1 || { cat "$tmp/msg.log" >&2; say "messaging bench failed"; exit 1; }
  # "native consumer: 123 msg/s, round trip p50 1.2ms p99 3.4ms" (Rust Debug durations).
  python3 - "$tmp/msg.log" <<'PY' | tee -a "$results" >&2
import re, sys
units = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
def ms(d):
    m = re.fullmatch(r"([0-9.]+)(ns|µs|us|ms|s)", d)
    if not m:
        sys.exit(f"awfy: cannot read the duration {d!r}")
    return float(m.group(1)) * units[m.group(2)]
seen = 0
for line in open(sys.argv[1], encoding="utf-8"):
    m = re.match(r"(native consumer|wasm transform):\s+([0-9.]+) msg/s, round trip p50 (\S+) p99 (\S+)", line)
    if m:
        system = "native" if m.group(1) == "native consumer" else "weft"
        print(f"msg {system} {m.group(2)} {ms(m.group(4)):.3f}")
        seen += 1
if seen != 2:
    sys.exit("awfy: the messaging bench printed no figures")
PY
fi
loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)

wasmtime_version=""
[ -n "$wasmtime" ] && wasmtime_version=$("$wasmtime" --version | awk '{print $2}')
python3 benches/awfy_record.py \
  --results "$results" --history "$history" --record "$record" --short "$short" \
  --rounds "$ROUNDS" --duration "$DURATION" --connections "$CONNECTIONS" --threads "$THREADS" \
  --cold-runs "$COLD_RUNS" --wasmtime-version "$wasmtime_version" --profile "$profile" \
  --loadavg-start "$loadavg_start" --loadavg-end "$loadavg_end" --note "${AWFY_NOTE:-}"
